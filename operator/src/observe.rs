//! The metrics observer: its own watches on AgentRuns and ApprovalGates (within the watch
//! namespace, if any) that turn what it sees into the run and gate metrics of
//! [`crate::metrics`], leaving the controllers untouched.
//!
//! It keeps only a small record per object (uid → labels, last phase or state, first-seen and
//! queued-since instants; about 150 bytes per run), never the object itself. Gauges are kept
//! in step with those records (an object leaving the cluster leaves the gauges). Histograms and
//! counters are observed on transitions seen live, i.e. after the initial list: objects listed
//! at start-up only seed the records, so a restart does not count a finished run twice. An
//! object first seen live was created "now" (the operator's monotonic clock); one from a list
//! falls back to its `creationTimestamp`.

use crate::controller::agentrun::build::pool_name;
use crate::metrics::{Labels, Metrics};
use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use paddock_crds::condition::find_condition;
use paddock_crds::{AgentRun, ApprovalGate, GateState, Phase};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How an event was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// In the first list after start-up: seeds the records, observes nothing.
    FirstList,
    /// In a later re-list (after a watch gap): transitions count, new objects date from their
    /// `creationTimestamp`.
    Relist,
    /// A watch event: transitions count, new objects were created now.
    Live,
}

/// Runs the observer until the process ends: one watcher on AgentRuns, one on ApprovalGates.
/// Watch errors are logged and retried with the default backoff.
pub async fn run(client: Client, namespace: Option<String>, state: Arc<crate::context::State>, namespace_label: bool) {
    let runs: Api<AgentRun> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let gates: Api<ApprovalGate> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client),
    };
    let m = &state.metrics;
    let mut run_tracker = RunTracker::new(namespace_label);
    let mut gate_tracker = GateTracker::new(namespace_label);
    let run_loop = watcher(runs, watcher::Config::default().any_semantic())
        .default_backoff()
        .for_each(|ev| {
            match ev {
                Ok(ev) => run_tracker.handle(m, ev, Instant::now(), Timestamp::now()),
                Err(e) => tracing::warn!(error = %e, "metrics observer: AgentRun watch failed"),
            }
            futures::future::ready(())
        });
    let gate_loop = watcher(gates, watcher::Config::default().any_semantic())
        .default_backoff()
        .for_each(|ev| {
            match ev {
                Ok(ev) => gate_tracker.handle(m, ev, Instant::now(), Timestamp::now()),
                Err(e) => tracing::warn!(error = %e, "metrics observer: ApprovalGate watch failed"),
            }
            futures::future::ready(())
        });
    tokio::join!(run_loop, gate_loop);
}

/// The instant `ts` (a wall-clock time in the past) corresponds to, given that `now` is `wall`.
fn instant_at(ts: Option<&Timestamp>, now: Instant, wall: Timestamp) -> Instant {
    let ago_ms = ts
        .map(|t| (wall.as_millisecond() - t.as_millisecond()).max(0))
        .unwrap_or(0);
    now.checked_sub(Duration::from_millis(ago_ms as u64)).unwrap_or(now)
}

fn secs(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64()
}

/// A phase's name as written in the CRD.
pub fn phase_str(p: Phase) -> &'static str {
    match p {
        Phase::Pending => "Pending",
        Phase::Queued => "Queued",
        Phase::AwaitingApproval => "AwaitingApproval",
        Phase::Running => "Running",
        Phase::Succeeded => "Succeeded",
        Phase::Failed => "Failed",
        Phase::Cancelled => "Cancelled",
        Phase::TimedOut => "TimedOut",
        Phase::Rejected => "Rejected",
    }
}

fn state_str(s: GateState) -> &'static str {
    match s {
        GateState::Pending => "Pending",
        GateState::Approved => "Approved",
        GateState::Rejected => "Rejected",
        GateState::Expired => "Expired",
        GateState::Withdrawn => "Withdrawn",
    }
}

/// Whether the run's agent container runs: phase Running with condition `Running` True,
/// reason `AgentRunning` (phase Running alone also covers the pod starting).
fn agent_running(r: &AgentRun) -> bool {
    let Some(st) = &r.status else { return false };
    st.phase == Some(Phase::Running)
        && find_condition(&st.conditions, "Running").is_some_and(|c| c.status == "True" && c.reason == "AgentRunning")
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

/// What the observer remembers of one AgentRun.
#[derive(Debug)]
struct RunSeen {
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

/// AgentRun records and the transitions between them.
#[derive(Debug, Default)]
pub struct RunTracker {
    namespace_label: bool,
    runs: HashMap<String, RunSeen>,
    /// uids listed since the current list began, while a list is under way.
    listing: Option<HashSet<String>>,
    /// Whether the first list is done.
    synced: bool,
}

impl RunTracker {
    /// An empty tracker; `namespace_label` adds `namespace` to the metrics.
    pub fn new(namespace_label: bool) -> Self {
        RunTracker {
            namespace_label,
            ..Default::default()
        }
    }

    fn ns<'a>(&self, seen: &'a RunSeen) -> Option<&'a str> {
        self.namespace_label.then_some(seen.ns.as_str())
    }

    /// Handles one watcher event; `now` and `wall` are the monotonic and wall clocks.
    pub fn handle(&mut self, m: &Metrics, ev: watcher::Event<AgentRun>, now: Instant, wall: Timestamp) {
        match ev {
            watcher::Event::Init => self.listing = Some(HashSet::new()),
            watcher::Event::InitApply(r) => {
                if let (Some(l), Some(uid)) = (&mut self.listing, &r.metadata.uid) {
                    l.insert(uid.clone());
                }
                let how = if self.synced { Seen::Relist } else { Seen::FirstList };
                self.apply(m, &r, how, now, wall);
            }
            watcher::Event::InitDone => {
                if let Some(listed) = self.listing.take() {
                    let gone: Vec<String> = self.runs.keys().filter(|k| !listed.contains(*k)).cloned().collect();
                    for uid in gone {
                        self.forget(m, &uid);
                    }
                }
                self.synced = true;
            }
            watcher::Event::Apply(r) => self.apply(m, &r, Seen::Live, now, wall),
            watcher::Event::Delete(r) => {
                if let Some(uid) = &r.metadata.uid {
                    self.forget(m, uid);
                }
            }
        }
    }

    /// Adds (`delta` 1) or removes (-1) a record's share of the gauges.
    fn gauges(&self, m: &Metrics, seen: &RunSeen, delta: i64) {
        let ns = self.ns(seen);
        let runs = Labels::new()
            .with_namespace(ns)
            .with("pool", seen.pool.as_str())
            .with("agent", seen.agent)
            .with("phase", phase_str(seen.phase));
        add(&m.runs, &runs, delta, self.namespace_label);
        if seen.phase == Phase::Queued {
            let q = Labels::new().with_namespace(ns).with("pool", seen.pool.as_str());
            add(&m.queue_depth, &q, delta, self.namespace_label);
        }
    }

    fn forget(&mut self, m: &Metrics, uid: &str) {
        if let Some(seen) = self.runs.remove(uid) {
            self.gauges(m, &seen, -1);
        }
    }

    /// Records the run's new state and observes the transitions from the old one.
    pub fn apply(&mut self, m: &Metrics, r: &AgentRun, how: Seen, now: Instant, wall: Timestamp) {
        let Some(uid) = r.metadata.uid.clone() else { return };
        let phase = r.status.as_ref().and_then(|s| s.phase).unwrap_or(Phase::Pending);
        let prev = self.runs.remove(&uid);
        if let Some(p) = &prev {
            self.gauges(m, p, -1);
        }
        let observe = how != Seen::FirstList;
        let created = match (&prev, how) {
            (Some(p), _) => p.created,
            (None, Seen::Live) => now,
            (None, _) => instant_at(r.metadata.creation_timestamp.as_ref().map(|t| &t.0), now, wall),
        };
        let mut seen = RunSeen {
            ns: if self.namespace_label {
                r.metadata.namespace.clone().unwrap_or_default()
            } else {
                String::new()
            },
            pool: pool_name(r).to_string(),
            agent: r.spec.agent.name.as_str(),
            phase,
            created,
            queued_since: prev.as_ref().and_then(|p| p.queued_since),
            started: prev.as_ref().is_some_and(|p| p.started),
            done: prev.as_ref().is_some_and(|p| p.done),
        };
        let ns = self.ns(&seen).map(str::to_string);
        let ns = ns.as_deref();

        // Queue: entering starts the clock; leaving observes the wait.
        if phase == Phase::Queued {
            if seen.queued_since.is_none() {
                seen.queued_since = Some(match (&prev, how) {
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

        // Start: created → agent container running, once.
        if !seen.started {
            if agent_running(r) {
                if observe {
                    m.run_start
                        .get_or_create(
                            &Labels::new()
                                .with_namespace(ns)
                                .with("pool", seen.pool.as_str())
                                .with("agent", seen.agent)
                                .with("start", start_kind(r)),
                        )
                        .observe(secs(seen.created, now));
                }
                seen.started = true;
            } else if phase.is_terminal() {
                // Ended without us seeing the agent run (or before we watched): no sample.
                seen.started = true;
            }
        }

        // Completion: counted once, when seen turning terminal.
        if phase.is_terminal() && !seen.done {
            if observe {
                record_completion(m, r, &seen, ns, phase);
            }
            seen.done = true;
        }

        self.gauges(m, &seen, 1);
        self.runs.insert(uid, seen);
    }
}

/// Adds `delta` to the gauge `labels`; with `prune` (namespace labels, whose values come and
/// go) a gauge back at 0 is removed rather than kept as a 0 series.
fn add(family: &crate::metrics::GaugeFamily, labels: &Labels, delta: i64, prune: bool) {
    let v = family.get_or_create(labels).inc_by(delta) + delta;
    if prune && v == 0 {
        family.remove(labels);
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
        .with("phase", phase_str(phase));
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

/// What the observer remembers of one ApprovalGate.
#[derive(Debug)]
struct GateSeen {
    ns: String,
    stage: &'static str,
    pending: bool,
    created: Instant,
}

/// ApprovalGate records and their decisions.
#[derive(Debug, Default)]
pub struct GateTracker {
    namespace_label: bool,
    gates: HashMap<String, GateSeen>,
    listing: Option<HashSet<String>>,
    synced: bool,
}

impl GateTracker {
    /// An empty tracker; `namespace_label` adds `namespace` to the metrics.
    pub fn new(namespace_label: bool) -> Self {
        GateTracker {
            namespace_label,
            ..Default::default()
        }
    }

    /// Handles one watcher event; `now` and `wall` are the monotonic and wall clocks.
    pub fn handle(&mut self, m: &Metrics, ev: watcher::Event<ApprovalGate>, now: Instant, wall: Timestamp) {
        match ev {
            watcher::Event::Init => self.listing = Some(HashSet::new()),
            watcher::Event::InitApply(g) => {
                if let (Some(l), Some(uid)) = (&mut self.listing, &g.metadata.uid) {
                    l.insert(uid.clone());
                }
                let how = if self.synced { Seen::Relist } else { Seen::FirstList };
                self.apply(m, &g, how, now, wall);
            }
            watcher::Event::InitDone => {
                if let Some(listed) = self.listing.take() {
                    let gone: Vec<String> = self.gates.keys().filter(|k| !listed.contains(*k)).cloned().collect();
                    for uid in gone {
                        self.forget(m, &uid);
                    }
                }
                self.synced = true;
            }
            watcher::Event::Apply(g) => self.apply(m, &g, Seen::Live, now, wall),
            watcher::Event::Delete(g) => {
                if let Some(uid) = &g.metadata.uid {
                    self.forget(m, uid);
                }
            }
        }
    }

    fn pending_labels(&self, seen: &GateSeen) -> Labels {
        Labels::new()
            .with_namespace(self.namespace_label.then_some(seen.ns.as_str()))
            .with("stage", seen.stage)
    }

    fn forget(&mut self, m: &Metrics, uid: &str) {
        if let Some(seen) = self.gates.remove(uid) {
            if seen.pending {
                add(
                    &m.approval_gates_pending,
                    &self.pending_labels(&seen),
                    -1,
                    self.namespace_label,
                );
            }
        }
    }

    /// Records the gate's new state; observes the wait when it is seen decided.
    pub fn apply(&mut self, m: &Metrics, g: &ApprovalGate, how: Seen, now: Instant, wall: Timestamp) {
        let Some(uid) = g.metadata.uid.clone() else { return };
        let state = g.status.as_ref().and_then(|s| s.state).unwrap_or(GateState::Pending);
        let prev = self.gates.remove(&uid);
        let seen = GateSeen {
            ns: if self.namespace_label {
                g.metadata.namespace.clone().unwrap_or_default()
            } else {
                String::new()
            },
            stage: g.spec.stage.as_str(),
            pending: state == GateState::Pending,
            created: match (&prev, how) {
                (Some(p), _) => p.created,
                (None, Seen::Live) => now,
                (None, _) => instant_at(g.metadata.creation_timestamp.as_ref().map(|t| &t.0), now, wall),
            },
        };
        let was_pending = match &prev {
            Some(p) => p.pending,
            // New to us: a decided gate from the first list was decided before we watched.
            None => how != Seen::FirstList,
        };
        if let Some(p) = &prev {
            if p.pending {
                add(
                    &m.approval_gates_pending,
                    &self.pending_labels(p),
                    -1,
                    self.namespace_label,
                );
            }
        }
        if seen.pending {
            add(
                &m.approval_gates_pending,
                &self.pending_labels(&seen),
                1,
                self.namespace_label,
            );
        } else if was_pending && how != Seen::FirstList && state != GateState::Withdrawn {
            // A withdrawn gate was never decided: it leaves the gauge without a wait observed.
            m.approval_wait
                .get_or_create(&self.pending_labels(&seen).with("state", state_str(state)))
                .observe(secs(seen.created, now));
        }
        self.gates.insert(uid, seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: &str = "2026-01-01T00:00:00Z";

    fn wall(offset_secs: i64) -> Timestamp {
        T0.parse::<Timestamp>().unwrap() + k8s_openapi::jiff::SignedDuration::from_secs(offset_secs)
    }

    fn cond(type_: &str, status: &str, reason: &str, at: &str) -> serde_json::Value {
        json!({"type": type_, "status": status, "reason": reason, "message": "", "lastTransitionTime": at})
    }

    /// An AgentRun created at T0 with `status`.
    fn run(uid: &str, ns: &str, pool: Option<&str>, status: serde_json::Value) -> AgentRun {
        let mut spec =
            json!({"repo": {"url": "git://x/r.git"}, "agent": {"name": "shell", "model": "m1"}, "prompt": "p"});
        if let Some(p) = pool {
            spec["runnerPoolRef"] = json!({"name": p});
        }
        serde_json::from_value(json!({
            "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
            "metadata": {"name": format!("run-{uid}"), "namespace": ns, "uid": uid, "creationTimestamp": T0},
            "spec": spec,
            "status": status,
        }))
        .unwrap()
    }

    fn queued() -> serde_json::Value {
        json!({"phase": "Queued", "conditions": [cond("Queued", "True", "PoolFull", T0)]})
    }
    fn pod_starting() -> serde_json::Value {
        json!({"phase": "Running", "conditions": [cond("Running", "True", "PodCreated", T0)]})
    }
    fn agent_running() -> serde_json::Value {
        json!({"phase": "Running", "conditions": [cond("Running", "True", "AgentRunning", T0)]})
    }
    fn finished(phase: &str, reason: &str) -> serde_json::Value {
        json!({
            "phase": phase,
            "conditions": [cond("Succeeded", if phase == "Succeeded" { "True" } else { "False" }, reason, T0)],
            "startTime": "2026-01-01T00:00:10Z", "completionTime": "2026-01-01T00:01:40Z",
            "usage": {"inputTokens": 100, "outputTokens": 7, "turns": 1, "costUsd": 0.25},
        })
    }

    /// The sample `series` (name with labels, as rendered) in the registry's text.
    fn sample(m: &Metrics, series: &str) -> Option<f64> {
        let text = m.render();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .map(|v| v.split(' ').next().unwrap().parse().unwrap())
    }

    fn ev(r: AgentRun) -> watcher::Event<AgentRun> {
        watcher::Event::Apply(r)
    }

    #[test]
    fn live_run_lifecycle_observes_each_transition_once() {
        let m = Metrics::default();
        let mut t = RunTracker::new(false);
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        t.handle(&m, watcher::Event::Init, t0, wall(0));
        t.handle(&m, watcher::Event::InitDone, t0, wall(0));
        t.handle(&m, ev(run("u1", "a", Some("p"), json!({}))), ms(0), wall(0));
        assert_eq!(
            sample(&m, r#"paddock_runs{pool="p",agent="shell",phase="Pending"}"#),
            Some(1.0)
        );
        t.handle(&m, ev(run("u1", "a", Some("p"), queued())), ms(100), wall(0));
        assert_eq!(
            sample(&m, r#"paddock_runs{pool="p",agent="shell",phase="Pending"}"#),
            Some(0.0)
        );
        assert_eq!(sample(&m, r#"paddock_queue_depth{pool="p"}"#), Some(1.0));
        // Still queued: no new clock start.
        t.handle(&m, ev(run("u1", "a", Some("p"), queued())), ms(900), wall(0));
        t.handle(&m, ev(run("u1", "a", Some("p"), pod_starting())), ms(1600), wall(1));
        assert_eq!(sample(&m, r#"paddock_queue_depth{pool="p"}"#), Some(0.0));
        assert_eq!(sample(&m, r#"paddock_queue_wait_seconds_count{pool="p"}"#), Some(1.0));
        assert_eq!(sample(&m, r#"paddock_queue_wait_seconds_sum{pool="p"}"#), Some(1.5));
        // The pod starting is not the agent running.
        assert_eq!(
            sample(
                &m,
                r#"paddock_run_start_seconds_count{pool="p",agent="shell",start="cold"}"#
            ),
            None
        );
        t.handle(&m, ev(run("u1", "a", Some("p"), agent_running())), ms(2250), wall(2));
        t.handle(&m, ev(run("u1", "a", Some("p"), agent_running())), ms(3000), wall(3));
        assert_eq!(
            sample(
                &m,
                r#"paddock_run_start_seconds_sum{pool="p",agent="shell",start="cold"}"#
            ),
            Some(2.25)
        );
        assert_eq!(
            sample(
                &m,
                r#"paddock_run_start_seconds_count{pool="p",agent="shell",start="cold"}"#
            ),
            Some(1.0)
        );
        for _ in 0..2 {
            t.handle(
                &m,
                ev(run("u1", "a", Some("p"), finished("Succeeded", "Succeeded"))),
                ms(5000),
                wall(100),
            );
        }
        assert_eq!(
            sample(
                &m,
                r#"paddock_runs_completed_total{pool="p",agent="shell",phase="Succeeded",reason="Succeeded"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &m,
                r#"paddock_run_duration_seconds_sum{pool="p",agent="shell",phase="Succeeded"}"#
            ),
            Some(90.0)
        );
        assert_eq!(
            sample(
                &m,
                r#"paddock_model_tokens_total{agent="shell",model="m1",direction="input"}"#
            ),
            Some(100.0)
        );
        assert_eq!(
            sample(
                &m,
                r#"paddock_model_tokens_total{agent="shell",model="m1",direction="output"}"#
            ),
            Some(7.0)
        );
        assert_eq!(
            sample(&m, r#"paddock_model_cost_usd_total{agent="shell",model="m1"}"#),
            Some(0.25)
        );
        assert_eq!(
            sample(&m, r#"paddock_runs{pool="p",agent="shell",phase="Succeeded"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&m, r#"paddock_runs{pool="p",agent="shell",phase="Running"}"#),
            Some(0.0)
        );
        // Deleted: it leaves the gauges and the records.
        t.handle(
            &m,
            watcher::Event::Delete(run("u1", "a", Some("p"), finished("Succeeded", "Succeeded"))),
            ms(6000),
            wall(101),
        );
        assert_eq!(
            sample(&m, r#"paddock_runs{pool="p",agent="shell",phase="Succeeded"}"#),
            Some(0.0)
        );
        assert_eq!(t.runs.len(), 0);
    }

    #[test]
    fn first_list_seeds_without_counting_and_dates_from_creation() {
        let m = Metrics::default();
        let mut t = RunTracker::new(false);
        let now = Instant::now();
        t.handle(&m, watcher::Event::Init, now, wall(60));
        // Finished before the operator started: in the gauge, not counted again.
        t.handle(
            &m,
            watcher::Event::InitApply(run("done", "a", None, finished("Failed", "AgentFailed"))),
            now,
            wall(60),
        );
        // Pending since T0 (60 s ago).
        t.handle(
            &m,
            watcher::Event::InitApply(run("old", "a", None, json!({"phase": "Pending"}))),
            now,
            wall(60),
        );
        // Queued since T0 (by its condition).
        t.handle(
            &m,
            watcher::Event::InitApply(run("q", "a", None, queued())),
            now,
            wall(60),
        );
        t.handle(&m, watcher::Event::InitDone, now, wall(60));
        assert_eq!(
            sample(&m, r#"paddock_runs{pool="default",agent="shell",phase="Failed"}"#),
            Some(1.0)
        );
        assert_eq!(sample(&m, r#"paddock_queue_depth{pool="default"}"#), Some(1.0));
        assert_eq!(
            sample(
                &m,
                r#"paddock_runs_completed_total{pool="default",agent="shell",phase="Failed",reason="AgentFailed"}"#
            ),
            None
        );
        let later = now + Duration::from_secs(5);
        t.handle(
            &m,
            ev(run("done", "a", None, finished("Failed", "AgentFailed"))),
            later,
            wall(65),
        );
        t.handle(&m, ev(run("old", "a", None, agent_running())), later, wall(65));
        t.handle(&m, ev(run("q", "a", None, pod_starting())), later, wall(65));
        assert_eq!(
            sample(
                &m,
                r#"paddock_runs_completed_total{pool="default",agent="shell",phase="Failed",reason="AgentFailed"}"#
            ),
            None
        );
        let start = sample(
            &m,
            r#"paddock_run_start_seconds_sum{pool="default",agent="shell",start="cold"}"#,
        )
        .unwrap();
        assert!((start - 65.0).abs() < 0.01, "start from creationTimestamp: {start}");
        let wait = sample(&m, r#"paddock_queue_wait_seconds_sum{pool="default"}"#).unwrap();
        assert!((wait - 65.0).abs() < 0.01, "wait from the Queued condition: {wait}");
        // A run turning terminal after the list is counted.
        t.handle(
            &m,
            ev(run("old", "a", None, finished("Succeeded", "Succeeded"))),
            later,
            wall(70),
        );
        assert_eq!(
            sample(
                &m,
                r#"paddock_runs_completed_total{pool="default",agent="shell",phase="Succeeded",reason="Succeeded"}"#
            ),
            Some(1.0)
        );
    }

    #[test]
    fn relist_counts_what_finished_in_the_gap_and_drops_the_deleted() {
        let m = Metrics::default();
        let mut t = RunTracker::new(false);
        let now = Instant::now();
        t.handle(&m, watcher::Event::Init, now, wall(0));
        t.handle(
            &m,
            watcher::Event::InitApply(run("a", "n", None, agent_running())),
            now,
            wall(0),
        );
        t.handle(
            &m,
            watcher::Event::InitApply(run("b", "n", None, agent_running())),
            now,
            wall(0),
        );
        t.handle(&m, watcher::Event::InitDone, now, wall(0));
        assert_eq!(
            sample(&m, r#"paddock_runs{pool="default",agent="shell",phase="Running"}"#),
            Some(2.0)
        );
        // Watch gap: `a` finished, `b` was deleted.
        t.handle(&m, watcher::Event::Init, now, wall(9));
        t.handle(
            &m,
            watcher::Event::InitApply(run("a", "n", None, finished("Succeeded", "Succeeded"))),
            now,
            wall(9),
        );
        t.handle(&m, watcher::Event::InitDone, now, wall(9));
        assert_eq!(
            sample(&m, r#"paddock_runs{pool="default",agent="shell",phase="Running"}"#),
            Some(0.0)
        );
        assert_eq!(
            sample(&m, r#"paddock_runs{pool="default",agent="shell",phase="Succeeded"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &m,
                r#"paddock_runs_completed_total{pool="default",agent="shell",phase="Succeeded",reason="Succeeded"}"#
            ),
            Some(1.0)
        );
        assert_eq!(t.runs.len(), 1);
    }

    #[test]
    fn namespace_label_is_optional_and_pruned() {
        let m = Metrics::default();
        let mut t = RunTracker::new(true);
        let now = Instant::now();
        t.handle(&m, watcher::Event::InitDone, now, wall(0));
        t.handle(&m, ev(run("x", "team-a", None, queued())), now, wall(0));
        assert_eq!(
            sample(
                &m,
                r#"paddock_runs{namespace="team-a",pool="default",agent="shell",phase="Queued"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&m, r#"paddock_queue_depth{namespace="team-a",pool="default"}"#),
            Some(1.0)
        );
        t.handle(
            &m,
            watcher::Event::Delete(run("x", "team-a", None, queued())),
            now,
            wall(0),
        );
        assert!(!m.render().contains("team-a"), "{}", m.render());
        // Without the flag, no namespace anywhere.
        let m2 = Metrics::default();
        let mut t2 = RunTracker::new(false);
        t2.handle(
            &m2,
            ev(run("x", "team-a", None, finished("Failed", "AgentFailed"))),
            now,
            wall(0),
        );
        assert!(!m2.render().contains("namespace"));
        assert!(m2.render().contains(
            r#"paddock_runs_completed_total{pool="default",agent="shell",phase="Failed",reason="AgentFailed"} 1"#
        ));
    }

    fn gate(uid: &str, state: Option<&str>) -> ApprovalGate {
        let mut status = json!({});
        if let Some(s) = state {
            status["state"] = json!(s);
        }
        serde_json::from_value(json!({
            "apiVersion": "paddock.dev/v1alpha1", "kind": "ApprovalGate",
            "metadata": {"name": format!("g-{uid}"), "namespace": "n", "uid": uid, "creationTimestamp": T0},
            "spec": {"runRef": {"name": "r"}, "stage": "BeforeStart", "request": {"summary": "s"},
                     "approvers": {"users": ["alice"]}, "quorum": 1},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn gates_pending_and_wait() {
        let m = Metrics::default();
        let mut t = GateTracker::new(false);
        let t0 = Instant::now();
        t.handle(&m, watcher::Event::Init, t0, wall(30));
        t.handle(
            &m,
            watcher::Event::InitApply(gate("old-decided", Some("Approved"))),
            t0,
            wall(30),
        );
        t.handle(
            &m,
            watcher::Event::InitApply(gate("old-pending", Some("Pending"))),
            t0,
            wall(30),
        );
        t.handle(&m, watcher::Event::InitDone, t0, wall(30));
        assert_eq!(
            sample(&m, r#"paddock_approval_gates_pending{stage="BeforeStart"}"#),
            Some(1.0)
        );
        t.handle(&m, watcher::Event::Apply(gate("new", None)), t0, wall(30));
        assert_eq!(
            sample(&m, r#"paddock_approval_gates_pending{stage="BeforeStart"}"#),
            Some(2.0)
        );
        let t1 = t0 + Duration::from_millis(4500);
        t.handle(&m, watcher::Event::Apply(gate("new", Some("Rejected"))), t1, wall(34));
        t.handle(&m, watcher::Event::Apply(gate("new", Some("Rejected"))), t1, wall(35));
        t.handle(
            &m,
            watcher::Event::Apply(gate("old-decided", Some("Approved"))),
            t1,
            wall(35),
        );
        t.handle(
            &m,
            watcher::Event::Apply(gate("old-pending", Some("Expired"))),
            t1,
            wall(35),
        );
        assert_eq!(
            sample(&m, r#"paddock_approval_gates_pending{stage="BeforeStart"}"#),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &m,
                r#"paddock_approval_wait_seconds_sum{stage="BeforeStart",state="Rejected"}"#
            ),
            Some(4.5)
        );
        assert_eq!(
            sample(
                &m,
                r#"paddock_approval_wait_seconds_count{stage="BeforeStart",state="Rejected"}"#
            ),
            Some(1.0)
        );
        // The one pending since T0 (30 s before the list) waited 34.5 s.
        let expired = sample(
            &m,
            r#"paddock_approval_wait_seconds_sum{stage="BeforeStart",state="Expired"}"#,
        )
        .unwrap();
        assert!((expired - 34.5).abs() < 0.01, "{expired}");
        assert_eq!(
            sample(
                &m,
                r#"paddock_approval_wait_seconds_count{stage="BeforeStart",state="Approved"}"#
            ),
            None
        );
        t.handle(
            &m,
            watcher::Event::Delete(gate("old-pending", Some("Expired"))),
            t1,
            wall(35),
        );
        assert_eq!(t.gates.len(), 2);
    }

    /// A gate withdrawn because its run ended leaves the pending gauge, and no wait is observed:
    /// nobody decided it.
    #[test]
    fn withdrawn_gates_are_not_decisions() {
        let m = Metrics::default();
        let mut t = GateTracker::new(false);
        let t0 = Instant::now();
        t.handle(&m, watcher::Event::Init, t0, wall(30));
        t.handle(&m, watcher::Event::InitDone, t0, wall(30));
        t.handle(&m, watcher::Event::Apply(gate("w", Some("Pending"))), t0, wall(30));
        assert_eq!(
            sample(&m, r#"paddock_approval_gates_pending{stage="BeforeStart"}"#),
            Some(1.0)
        );
        let t1 = t0 + Duration::from_secs(60);
        t.handle(&m, watcher::Event::Apply(gate("w", Some("Withdrawn"))), t1, wall(90));
        assert_eq!(
            sample(&m, r#"paddock_approval_gates_pending{stage="BeforeStart"}"#),
            Some(0.0)
        );
        assert!(!m.render().contains(r#"state="Withdrawn""#), "{}", m.render());
    }
}
