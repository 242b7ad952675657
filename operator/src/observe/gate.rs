//! ApprovalGates: the pending gauge and the wait for a decision.

use super::tracker::{add, record_ns, secs, At, Kind};
use crate::metrics::{Labels, Metrics};
use paddock_crds::{ApprovalGate, GateState};
use std::time::Instant;

/// The ApprovalGate [`Kind`].
pub struct Gates;

/// What the observer remembers of one ApprovalGate.
#[derive(Debug)]
pub struct GateSeen {
    ns: String,
    stage: &'static str,
    pending: bool,
    created: Instant,
}

impl GateSeen {
    fn pending_labels(&self, namespace_label: bool) -> Labels {
        Labels::new()
            .with_namespace(namespace_label.then_some(self.ns.as_str()))
            .with("stage", self.stage)
    }
}

impl Kind for Gates {
    type Object = ApprovalGate;
    type Record = GateSeen;

    fn gauges(m: &Metrics, namespace_label: bool, seen: &GateSeen, delta: i64) {
        if seen.pending {
            add(
                &m.approval_gates_pending,
                &seen.pending_labels(namespace_label),
                delta,
                namespace_label,
            );
        }
    }

    /// Observes the wait when the gate is seen decided.
    fn record(m: &Metrics, namespace_label: bool, prev: Option<&GateSeen>, g: &ApprovalGate, at: At) -> GateSeen {
        let state = g.status.as_ref().and_then(|s| s.state).unwrap_or(GateState::Pending);
        let seen = GateSeen {
            ns: record_ns(g, namespace_label),
            stage: g.spec.stage.as_str(),
            pending: state == GateState::Pending,
            created: match prev {
                Some(p) => p.created,
                None => at.created(g.metadata.creation_timestamp.as_ref().map(|t| &t.0)),
            },
        };
        let was_pending = match prev {
            Some(p) => p.pending,
            // New to us: a decided gate from the first list was decided before we watched.
            None => at.observes(),
        };
        if !seen.pending && was_pending && at.observes() && state != GateState::Withdrawn {
            // A withdrawn gate was never decided: it leaves the gauge without a wait observed.
            m.approval_wait
                .get_or_create(&seen.pending_labels(namespace_label).with("state", state.as_str()))
                .observe(secs(seen.created, at.now));
        }
        seen
    }
}
