use super::gate::Gates;
use super::run::Runs;
use super::tracker::Tracker;
use crate::metrics::Metrics;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher;
use paddock_crds::{AgentRun, ApprovalGate};
use serde_json::json;
use std::time::{Duration, Instant};

type RunTracker = Tracker<Runs>;
type GateTracker = Tracker<Gates>;

const T0: &str = "2026-01-01T00:00:00Z";

fn wall(offset_secs: i64) -> Timestamp {
    T0.parse::<Timestamp>().unwrap() + k8s_openapi::jiff::SignedDuration::from_secs(offset_secs)
}

fn cond(type_: &str, status: &str, reason: &str, at: &str) -> serde_json::Value {
    json!({"type": type_, "status": status, "reason": reason, "message": "", "lastTransitionTime": at})
}

/// An AgentRun created at T0 with `status`.
fn run(uid: &str, ns: &str, pool: Option<&str>, status: serde_json::Value) -> AgentRun {
    let mut spec = json!({"repo": {"url": "git://x/r.git"}, "agent": {"name": "shell", "model": "m1"}, "prompt": "p"});
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
    assert_eq!(t.records.len(), 0);
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
    assert_eq!(t.records.len(), 1);
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
    assert_eq!(t.records.len(), 2);
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

/// Issue 23: a run's status says its agent runs only once it ran a while (or never, for a run
/// that ends sooner); the start latency ends when the AgentRun reconcile first saw the agent.
#[test]
fn the_start_ends_when_the_reconcile_saw_the_agent() {
    let m = Metrics::default();
    let mut t = RunTracker::new(false);
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    t.handle(&m, watcher::Event::Init, t0, wall(0));
    t.handle(&m, watcher::Event::InitDone, t0, wall(0));
    let count = |m: &Metrics| {
        sample(
            m,
            r#"paddock_run_start_seconds_count{pool="p",agent="shell",start="cold"}"#,
        )
    };
    let sum = |m: &Metrics| {
        sample(
            m,
            r#"paddock_run_start_seconds_sum{pool="p",agent="shell",start="cold"}"#,
        )
    };
    for uid in ["long", "short", "unseen"] {
        t.handle(&m, ev(run(uid, "a", Some("p"), json!({}))), ms(0), wall(0));
        t.handle(&m, ev(run(uid, "a", Some("p"), pod_starting())), ms(100), wall(0));
    }
    // A long run: seen running at 1.2 s, its status says so at 3.5 s.
    m.agent_starts.saw("long", ms(1200));
    m.agent_starts.saw("long", ms(1300));
    t.handle(&m, ev(run("long", "a", Some("p"), pod_starting())), ms(1500), wall(1));
    assert_eq!(count(&m), None, "not before the status says so");
    t.handle(&m, ev(run("long", "a", Some("p"), agent_running())), ms(3500), wall(3));
    assert_eq!((count(&m), sum(&m)), (Some(1.0), Some(1.2)));
    // A short run: seen running at 0.7 s, ended before its status said so.
    m.agent_starts.saw("short", ms(700));
    t.handle(
        &m,
        ev(run("short", "a", Some("p"), finished("Succeeded", "Succeeded"))),
        ms(2000),
        wall(2),
    );
    assert_eq!((count(&m), sum(&m)), (Some(2.0), Some(1.9)));
    // A run whose agent nobody saw run (it failed to start): no sample, as before.
    t.handle(
        &m,
        ev(run("unseen", "a", Some("p"), finished("Failed", "PodStartFailed"))),
        ms(2000),
        wall(2),
    );
    assert_eq!(count(&m), Some(2.0));
    assert_eq!(m.agent_starts.take("long"), None, "taken once");
}
