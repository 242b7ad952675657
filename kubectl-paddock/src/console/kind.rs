//! What the console's watches report ([`Kind`]), below the modules that use it.

/// What a watch of the console reports, to the `/live/<kind>` streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// AgentRuns.
    Runs,
    /// ApprovalGates.
    Gates,
    /// RunnerPools.
    Pools,
}

impl Kind {
    /// The SSE event name (`runs`, `gates`, `pools`).
    pub fn event_name(self) -> &'static str {
        match self {
            Kind::Runs => "runs",
            Kind::Gates => "gates",
            Kind::Pools => "pools",
        }
    }
}
