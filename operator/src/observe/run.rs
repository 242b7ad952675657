//! AgentRuns: the run gauges, queue wait, start latency and completions.

use super::tracker::{add, instant_at, record_ns, secs, At, Kind, Seen};
use crate::controller::agentrun::build::pool_name;
use crate::metrics::{Labels, Metrics};
use paddock_crds::condition::find_condition;
use paddock_crds::{AgentRun, Phase, Reason};
use std::time::Instant;

/// The AgentRun [`Kind`].
pub struct Runs;

/// What the observer remembers of one AgentRun.
#[derive(Debug)]
pub struct RunSeen {
    /// Namespace, only when the namespace label is on (else empty, no allocation).
    ns: String,
    pool: String,
    agent: &'static str,
    phase: Phase,
    /// When the run was created (first seen live, else its creationTimestamp).
    created: Instant,
    /// When it entered Queued, while Queued.
    queued_since: Option<Instant>,
    /// Whether its start was observed, or cannot be any more.
    started: bool,
    /// Whether its completion was counted, or was before the operator watched.
    done: bool,
}

impl RunSeen {
    fn ns(&self, namespace_label: bool) -> Option<&str> {
        namespace_label.then_some(self.ns.as_str())
    }
}

impl Kind for Runs {
    type Object = AgentRun;
    type Record = RunSeen;

    fn gauges(m: &Metrics, namespace_label: bool, seen: &RunSeen, delta: i64) {
        let ns = seen.ns(namespace_label);
        let runs = Labels::new()
            .with_namespace(ns)
            .with("pool", seen.pool.as_str())
            .with("agent", seen.agent)
            .with("phase", seen.phase.as_str());
        add(&m.runs, &runs, delta, namespace_label);
        if seen.phase == Phase::Queued {
            let q = Labels::new().with_namespace(ns).with("pool", seen.pool.as_str());
            add(&m.queue_depth, &q, delta, namespace_label);
        }
    }

    fn record(m: &Metrics, namespace_label: bool, prev: Option<&RunSeen>, r: &AgentRun, at: At) -> RunSeen {
        let At { how, now, wall } = at;
        let phase = r.status.as_ref().and_then(|s| s.phase).unwrap_or(Phase::Pending);
        let observe = at.observes();
        let mut seen = RunSeen {
            ns: record_ns(r, namespace_label),
            pool: pool_name(r).to_string(),
            agent: r.spec.agent.name.as_str(),
            phase,
            created: match prev {
                Some(p) => p.created,
                None => at.created(r.metadata.creation_timestamp.as_ref().map(|t| &t.0)),
            },
            queued_since: prev.and_then(|p| p.queued_since),
            started: prev.is_some_and(|p| p.started),
            done: prev.is_some_and(|p| p.done),
        };
        let ns = seen.ns(namespace_label).map(str::to_string);
        let ns = ns.as_deref();

        // Queue: entering starts the clock; leaving observes the wait.
        if phase == Phase::Queued {
            if seen.queued_since.is_none() {
                seen.queued_since = Some(match (prev, how) {
                    (None, Seen::FirstList | Seen::Relist) => {
                        // Already queued when listed: since the Queued condition turned True.
                        let since = r
                            .status
                            .as_ref()
                            .and_then(|s| find_condition(&s.conditions, "Queued"))
                            .map(|c| &c.last_transition_time.0);
                        instant_at(since, now, wall)
                    }
                    _ => now,
                });
            }
        } else if let Some(q) = seen.queued_since.take() {
            if observe {
                m.queue_wait
                    .get_or_create(&Labels::new().with_namespace(ns).with("pool", seen.pool.as_str()))
                    .observe(secs(q, now));
            }
        }

        // Start: created → agent container running, once: when the AgentRun reconcile first saw
        // it (this process's, when it leads), else now, as the status says so. A run that ended
        // before its status said so counts when the reconcile saw its agent, if it did.
        if !seen.started && (agent_running(r) || phase.is_terminal()) {
            let saw = r.metadata.uid.as_deref().and_then(|u| m.agent_starts.take(u));
            if observe && (agent_running(r) || saw.is_some()) {
                let at = saw.filter(|t| *t <= now).unwrap_or(now);
                m.run_start
                    .get_or_create(
                        &Labels::new()
                            .with_namespace(ns)
                            .with("pool", seen.pool.as_str())
                            .with("agent", seen.agent)
                            .with("start", start_kind(r)),
                    )
                    .observe(secs(seen.created, at));
            }
            seen.started = true;
        }

        // Completion: counted once, when seen turning terminal.
        if phase.is_terminal() && !seen.done {
            if observe {
                record_completion(m, r, &seen, ns, phase);
            }
            seen.done = true;
        }
        seen
    }
}

/// Whether the run's agent container runs: phase Running with condition `Running` True,
/// reason `AgentRunning` (phase Running alone also covers the pod starting).
fn agent_running(r: &AgentRun) -> bool {
    let Some(st) = &r.status else { return false };
    st.phase == Some(Phase::Running)
        && find_condition(&st.conditions, "Running").is_some_and(|c| c.status == "True" && Reason::AgentRunning.is(c))
}

/// `cold` or `warm`: whether the run's pod was created for it or claimed from a warm pool
/// (`status.warmStart`).
fn start_kind(r: &AgentRun) -> &'static str {
    if r.status.as_ref().and_then(|s| s.warm_start) == Some(true) {
        "warm"
    } else {
        "cold"
    }
}

/// Counts a run that ended: completions, duration, tokens and cost.
fn record_completion(m: &Metrics, r: &AgentRun, seen: &RunSeen, ns: Option<&str>, phase: Phase) {
    let st = r.status.clone().unwrap_or_default();
    let reason = find_condition(&st.conditions, "Succeeded")
        .map(|c| c.reason.clone())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "Unknown".into());
    let base = Labels::new()
        .with_namespace(ns)
        .with("pool", seen.pool.as_str())
        .with("agent", seen.agent)
        .with("phase", phase.as_str());
    m.run_completions
        .get_or_create(&base.clone().with("reason", reason))
        .inc();
    if let (Some(s), Some(e)) = (&st.start_time, &st.completion_time) {
        let secs = (e.0.as_millisecond() - s.0.as_millisecond()).max(0) as f64 / 1000.0;
        m.run_durations.get_or_create(&base).observe(secs);
    }
    if let Some(u) = &st.usage {
        let model = r
            .spec
            .agent
            .model
            .as_deref()
            .filter(|m| !m.is_empty())
            .unwrap_or("default");
        let l = Labels::new()
            .with_namespace(ns)
            .with("agent", seen.agent)
            .with("model", model);
        m.model_tokens
            .get_or_create(&l.clone().with("direction", "input"))
            .inc_by(u.input_tokens);
        m.model_tokens
            .get_or_create(&l.clone().with("direction", "output"))
            .inc_by(u.output_tokens);
        if let Some(usd) = u.cost_usd.filter(|c| c.is_finite() && *c > 0.0) {
            m.model_cost_usd.get_or_create(&l).inc_by(usd);
        }
    }
}
