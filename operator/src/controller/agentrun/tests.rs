//! Tests of the AgentRun reconcile through a fake API server, and of its pure helpers.
use super::decide::pod::*;
use super::queue::*;
use super::status::attempt_of;
use super::*;
use k8s_openapi::api::core::v1::Pod;
use paddock_crds::{QueuePolicy, RunnerPool};
use std::collections::HashSet;

fn run(name: &str, created: i64, phase: Option<Phase>, pod: bool) -> Arc<AgentRun> {
    let mut r = AgentRun::new(
        name,
        serde_json::from_value(
            serde_json::json!({"repo": {"url": "https://x/r.git"}, "agent": {"name": "shell"}, "prompt": "p"}),
        )
        .unwrap(),
    );
    r.metadata.namespace = Some("ns".into());
    r.metadata.uid = Some(format!("uid-{name}"));
    r.metadata.creation_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::from_second(created).unwrap()));
    r.status = Some(AgentRunStatus {
        phase,
        pod_name: pod.then(|| format!("{name}-1")),
        ..Default::default()
    });
    Arc::new(r)
}

#[test]
fn a_pool_change_wakes_only_its_runs_still_waiting_for_a_pod() {
    let spec = serde_json::json!({"template": {"image": "localhost/paddock/runner:dev"}});
    let mut pool = RunnerPool::new("default", serde_json::from_value(spec).unwrap());
    pool.metadata.namespace = Some("ns".into());
    let mut elsewhere = (*run("elsewhere", 1, None, false)).clone();
    elsewhere.metadata.namespace = Some("other".into());
    let mut other_pool = (*run("other-pool", 1, None, false)).clone();
    other_pool.spec.runner_pool_ref = Some(serde_json::from_value(serde_json::json!({"name": "big"})).unwrap());
    let runs = vec![
        run("new", 1, None, false),
        run("pending", 1, Some(Phase::Pending), false),
        run("queued", 1, Some(Phase::Queued), false),
        run("running", 1, Some(Phase::Running), true),
        run("starting", 1, Some(Phase::Pending), true),
        run("done", 1, Some(Phase::Succeeded), false),
        run("failed", 1, Some(Phase::Failed), true),
        Arc::new(elsewhere),
        Arc::new(other_pool),
    ];
    let woken: Vec<String> = runs_waiting_for_pool(&runs, &pool)
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(woken, ["new", "pending", "queued"]);
}

/// A run the cache shows Running on pod `r-1`, whose spec changed since the operator last
/// wrote its status (generation 2, observedGeneration 1), and the pod, ended.
fn ended_pod_and_stale_run() -> (AgentRun, serde_json::Value) {
    let run: AgentRun = serde_json::from_value(serde_json::json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": "r", "namespace": "ns", "uid": "u", "generation": 2},
        "spec": {"repo": {"url": "https://x/r.git"}, "agent": {"name": "shell"}, "prompt": "p"},
        "status": {"phase": "Running", "podName": "r-1", "attempt": 1, "observedGeneration": 1},
    }))
    .unwrap();
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "r-1", "namespace": "ns", "ownerReferences": [{"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "name": "r", "uid": "u"}]},
        "status": {"phase": "Failed", "reason": "DeadlineExceeded"}});
    (run, pod)
}

/// Issue 17: a pod `<run>-1` left by an earlier run of the same name (orphaned) is not
/// adopted: the new run neither ends from it nor takes its start for its own.
#[tokio::test]
async fn a_pod_of_an_earlier_run_of_the_same_name_is_not_adopted() {
    let run: AgentRun = serde_json::from_value(serde_json::json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": "r", "namespace": "ns", "uid": "new", "generation": 1},
        "spec": {"repo": {"url": "https://example.com/r.git"}, "agent": {"name": "shell"}, "prompt": "x",
                 "approvals": {"beforeStart": {}}}
    }))
    .unwrap();
    let old_pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "r-1", "namespace": "ns"},
        "status": {"phase": "Running", "containerStatuses": [
            {"name": "agent", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
             "state": {"running": {}}}]}});
    let (ctx, other) = crate::context::test_context_with(vec![("/api/v1/namespaces/ns/pods/r-1".into(), old_pod)]);
    reconcile(Arc::new(run), Arc::new(ctx)).await.ok();
    let other = other.lock().unwrap().clone();
    // It looks for its pool next (not answered here): it did not treat r-1 as its pod.
    assert!(
        other.iter().any(|r| r.contains("runnerpools/default")),
        "the run went on to start its own pod: {other:?}"
    );
    assert!(!other.iter().any(|r| r.contains("pods/r-1/log")), "{other:?}");
}

#[tokio::test]
async fn a_run_already_ended_on_the_server_is_not_ended_again_from_a_stale_cache() {
    let (run, pod) = ended_pod_and_stale_run();
    let mut ended = serde_json::to_value(&run).unwrap();
    ended["status"]["phase"] = "Succeeded".into();
    ended["status"]["observedGeneration"] = 2.into();
    let (ctx, other) = crate::context::test_context_with(vec![
        ("/api/v1/namespaces/ns/pods/r-1".into(), pod),
        ("/apis/paddock.dev/v1alpha1/namespaces/ns/agentruns/r".into(), ended),
    ]);
    reconcile(Arc::new(run), Arc::new(ctx)).await.unwrap();
    // No log fetch, no artifacts, no status write (which would put the stale Running back),
    // no Event: only the two GETs, which the fake answered.
    assert_eq!(*other.lock().unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn a_run_still_running_on_the_server_is_ended_from_its_pod() {
    let (run, pod) = ended_pod_and_stale_run();
    let fresh = serde_json::to_value(&run).unwrap();
    let (ctx, other) = crate::context::test_context_with(vec![
        ("/api/v1/namespaces/ns/pods/r-1".into(), pod),
        ("/apis/paddock.dev/v1alpha1/namespaces/ns/agentruns/r".into(), fresh),
    ]);
    // The fake refuses the ending's writes, so the reconcile fails after it tried them.
    let _ = reconcile(Arc::new(run), Arc::new(ctx)).await;
    let other = other.lock().unwrap();
    assert!(
        other.contains(&"GET /api/v1/namespaces/ns/pods/r-1/log".to_string()),
        "{other:?}"
    );
}

/// A run with `spec.retry.limit` 1 that the cache shows Running attempt 1 on pod `r-1`, and
/// that pod, its agent failed with `ModelUnavailable` (a retryable cause).
fn model_unavailable_pod_and_run() -> (AgentRun, serde_json::Value) {
    let run: AgentRun = serde_json::from_value(serde_json::json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": "r", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": {"repo": {"url": "https://x/r.git"}, "agent": {"name": "shell"}, "prompt": "p",
                 "retry": {"limit": 1}},
        "status": {"phase": "Running", "podName": "r-1", "attempt": 1, "observedGeneration": 1,
                   "startTime": "2026-11-22T10:00:00Z"},
    }))
    .unwrap();
    let result = r#"{"outcome":"Failed","reason":"ModelUnavailable","failedStep":"agent","message":"claude exited with exit code 1 (the model endpoint answered HTTP 503 to the last call)","branch":"paddock/r"}"#;
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "r-1", "namespace": "ns", "ownerReferences": [{"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "name": "r", "uid": "u"}]},
        "status": {"phase": "Failed", "containerStatuses": [
            {"name": "agent", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": result,
                                      "finishedAt": "2026-11-22T10:01:00Z"}}}]}});
    (run, pod)
}

/// The run as the API server has it once the operator retried attempt 1: attempt 1 recorded
/// with its real cause, attempt 2 waiting for its backoff.
fn retried_on_the_server(run: &AgentRun) -> serde_json::Value {
    let mut fresh = serde_json::to_value(run).unwrap();
    fresh["status"] = serde_json::json!({"phase": "Pending", "attempt": 2, "observedGeneration": 1,
        "nextAttemptAt": "2099-01-01T00:00:00Z",
        "attempts": [{"attempt": 1, "podName": "r-1", "startTime": "2026-11-22T10:00:00Z",
                      "completionTime": "2026-11-22T10:01:00Z", "reason": "ModelUnavailable",
                      "message": "step agent failed: the model endpoint answered HTTP 503"}]});
    fresh
}

#[tokio::test]
async fn a_retried_pod_going_away_is_not_recorded_as_deleted_from_a_stale_cache() {
    // Issue 16: the operator retried attempt 1 (ModelUnavailable) and deleted its pod; the
    // pod's deletion woke a reconcile whose cached run still showed attempt 1 Running.
    let (run, mut pod) = model_unavailable_pod_and_run();
    let fresh = retried_on_the_server(&run);
    // Terminating: the cache shows the deletion before the run's status write.
    pod["metadata"]["deletionTimestamp"] = "2026-11-22T10:01:01Z".into();
    let (ctx, other) = crate::context::test_context_with(vec![
        ("/api/v1/namespaces/ns/pods/r-1".into(), pod),
        ("/apis/paddock.dev/v1alpha1/namespaces/ns/agentruns/r".into(), fresh),
    ]);
    let result = reconcile(Arc::new(run), Arc::new(ctx)).await;
    // No log fetch, no second attempt log, no delete, no status write (which would replace
    // attempt 1's ModelUnavailable with PodDeleted), no Event: only the two GETs.
    assert_eq!(*other.lock().unwrap(), Vec::<String>::new());
    result.unwrap();
}

#[tokio::test]
async fn a_retried_pod_gone_is_not_recorded_as_lost_from_a_stale_cache() {
    // As above, the pod already gone: the cache no longer has it, the API server answers 404.
    let (run, _) = model_unavailable_pod_and_run();
    let fresh = retried_on_the_server(&run);
    let (ctx, other) = crate::context::test_context_with(vec![(
        "/apis/paddock.dev/v1alpha1/namespaces/ns/agentruns/r".into(),
        fresh,
    )]);
    let result = reconcile(Arc::new(run), Arc::new(ctx)).await;
    // Only the pod's GET (the 404): no PodLost retry written over attempt 1's cause.
    assert_eq!(*other.lock().unwrap(), ["GET /api/v1/namespaces/ns/pods/r-1"]);
    result.unwrap();
}

#[tokio::test]
async fn a_retry_writes_the_attempts_end_before_it_deletes_the_pod() {
    let (run, pod) = model_unavailable_pod_and_run();
    let fresh = serde_json::to_value(&run).unwrap();
    // The gateway saw the 503 (the operator trusts only its word for ModelUnavailable).
    let gateway_log = "{\"type\":\"gateway_model_status\",\"route\":\"anthropic\",\"status\":503,\"calls\":1}\n";
    let (ctx, other) = crate::context::test_context_with(vec![
        ("/api/v1/namespaces/ns/pods/r-1".into(), pod),
        ("/api/v1/namespaces/ns/pods/r-1/log#gateway".into(), gateway_log.into()),
        ("/apis/paddock.dev/v1alpha1/namespaces/ns/agentruns/r".into(), fresh),
    ]);
    // The fake refuses the status write: the pod must still be there for the next try,
    // which then sees the attempt's real cause again, not its deletion.
    assert!(reconcile(Arc::new(run), Arc::new(ctx)).await.is_err());
    let other = other.lock().unwrap();
    assert_eq!(
        other.last().map(String::as_str),
        Some("PATCH /apis/paddock.dev/v1alpha1/namespaces/ns/agentruns/r/status"),
        "{other:?}"
    );
    assert!(!other.iter().any(|r| r.starts_with("DELETE")), "{other:?}");
}

#[test]
fn a_retried_attempt_keeps_the_longer_of_the_fetched_and_the_followed_log() {
    let clone_only = "{\"type\":\"step\",\"step\":\"clone\"}\n";
    let followed = format!("{clone_only}{{\"type\":\"message\",\"text\":\"attempt-started\"}}\n");
    assert_eq!(
        attempt_log_text(clone_only, Some(followed.clone())),
        Some(followed.clone())
    );
    assert_eq!(
        attempt_log_text(&followed, Some(clone_only.into())),
        Some(followed.clone())
    );
    assert_eq!(attempt_log_text("", None), None);
    assert_eq!(
        attempt_log_text(" \n", Some(clone_only.into())).as_deref(),
        Some(clone_only)
    );
}

#[tokio::test]
async fn a_model_unavailable_the_gateway_did_not_see_is_not_retried() {
    // The agent wrote .paddock/model-status itself: its runner reports ModelUnavailable, but
    // the gateway's log has no 429/5xx. The attempt ends (a status write), no retry (no
    // delete of the pod for a next attempt).
    let (run, pod) = model_unavailable_pod_and_run();
    let fresh = serde_json::to_value(&run).unwrap();
    let (ctx, written) = crate::context::test_context_recording(vec![
        ("/api/v1/namespaces/ns/pods/r-1".into(), pod),
        ("/apis/paddock.dev/v1alpha1/namespaces/ns/agentruns/r".into(), fresh),
    ]);
    let _ = reconcile(Arc::new(run), Arc::new(ctx)).await;
    let written = written.lock().unwrap();
    assert!(!written.iter().any(|(m, _, _)| m == "DELETE"), "{written:?}");
    let status = written
        .iter()
        .find(|(m, p, _)| m == "PATCH" && p.ends_with("/agentruns/r/status"))
        .map(|(_, _, b)| b.clone())
        .expect("the run's status is written");
    assert_eq!(status["status"]["phase"], "Failed", "{status}");
    let conditions = status["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let succeeded = conditions.iter().find(|c| c["type"] == "Succeeded").expect("Succeeded");
    assert_eq!(succeeded["reason"], "AgentFailed", "{succeeded}");
    assert!(
        status["status"]["attempts"].as_array().is_none_or(|a| a.is_empty()),
        "{status}"
    );
}

/// Issue 17: the run's conditions name the gate that was decided, and how. Here the run
/// waited on its BeforeStart gate, which alice approved; the reconcile that sees it (and
/// then waits for the run's pool) records that approval, naming the gate.
#[tokio::test]
async fn the_awaited_gate_is_named_once_decided() {
    let created = k8s_openapi::jiff::Timestamp::now().to_string();
    let run: AgentRun = serde_json::from_value(serde_json::json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": "r", "namespace": "ns", "uid": "u", "generation": 1, "creationTimestamp": created},
        "spec": {"repo": {"url": "https://x/r.git"}, "agent": {"name": "shell"}, "prompt": "p",
                 "approvals": {"beforeStart": {}}},
        "status": {"phase": "AwaitingApproval", "gateName": "r-before-start", "observedGeneration": 1,
                   "conditions": [{"type": "AwaitingApproval", "status": "True", "reason": "GatePending",
                                   "message": "waiting", "lastTransitionTime": "2026-11-22T10:00:00Z"}]},
    }))
    .unwrap();
    let gate = serde_json::json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "ApprovalGate",
        "metadata": {"name": "r-before-start", "namespace": "ns"},
        "spec": {"runRef": {"name": "r", "uid": "u"}, "stage": "BeforeStart", "request": {"summary": "s"},
                 "quorum": 1, "decisions": [{"approver": "alice", "decision": "Approve"}]},
        "status": {"state": "Approved", "approvals": 1, "decidedBy": "alice"}});
    let run_path = "/apis/paddock.dev/v1alpha1/namespaces/ns/agentruns/r";
    let (ctx, written) = crate::context::test_context_recording(vec![
        (
            "/apis/paddock.dev/v1alpha1/namespaces/ns/approvalgates/r-before-start".into(),
            gate,
        ),
        (run_path.into(), serde_json::to_value(&run).unwrap()),
    ]);
    reconcile(Arc::new(run), Arc::new(ctx)).await.unwrap();
    let written = written.lock().unwrap().clone();
    let (_, _, body) = written
        .iter()
        .find(|(m, p, _)| m == "PATCH" && p == &format!("{run_path}/status"))
        .unwrap_or_else(|| panic!("no status write: {written:?}"));
    let conditions = body["status"]["conditions"].as_array().unwrap();
    let awaiting = conditions.iter().find(|c| c["type"] == "AwaitingApproval").unwrap();
    assert_eq!(awaiting["status"], "False");
    assert_eq!(awaiting["reason"], "Approved");
    assert_eq!(
        awaiting["message"],
        "ApprovalGate r-before-start (stage BeforeStart) was approved by alice"
    );
}

/// Reconciles a run that just created pod `r-1` (phase Running, condition Running/PodCreated),
/// with the pod in `pod_status`; returns the requests the fake API did not answer.
async fn reconcile_fresh_pod(pod_status: serde_json::Value) -> Vec<String> {
    let t = "2026-11-22T10:00:00Z";
    let run: AgentRun = serde_json::from_value(serde_json::json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": "r", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": {"repo": {"url": "https://x/r.git"}, "agent": {"name": "shell"}, "prompt": "p"},
        "status": {"phase": "Running", "podName": "r-1", "attempt": 1, "observedGeneration": 1,
                   "startTime": now(), "conditions": [{"type": "Running", "status": "True",
                   "reason": "PodCreated", "message": "created runner pod r-1", "observedGeneration": 1,
                   "lastTransitionTime": t}]},
    }))
    .unwrap();
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "r-1", "namespace": "ns", "ownerReferences": [{"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "name": "r", "uid": "u"}]}, "status": pod_status});
    let (ctx, other) = crate::context::test_context_with(vec![("/api/v1/namespaces/ns/pods/r-1".into(), pod)]);
    reconcile(Arc::new(run), Arc::new(ctx)).await.ok();
    let other = other.lock().unwrap().clone();
    other
}

#[tokio::test]
async fn a_freshly_created_pending_pod_writes_no_status() {
    let other = reconcile_fresh_pod(serde_json::json!({"phase": "Pending"})).await;
    assert_eq!(other, Vec::<String>::new());
    let waiting = |reason: &str| {
        serde_json::json!({"phase": "Pending", "containerStatuses": [
        {"name": "agent", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
         "state": {"waiting": {"reason": reason}}}]})
    };
    // Containers waiting for their turn or their creation: what PodCreated says already.
    for reason in ["PodInitializing", "ContainerCreating"] {
        assert_eq!(
            reconcile_fresh_pod(waiting(reason)).await,
            Vec::<String>::new(),
            "{reason}"
        );
    }
    // Waiting for another reason is news: PodStarting, with the reasons, is written.
    assert_eq!(
        reconcile_fresh_pod(waiting("ImagePullBackOff")).await,
        ["PATCH /apis/paddock.dev/v1alpha1/namespaces/ns/agentruns/r/status"]
    );
}

#[test]
fn only_pools_with_a_limit_admit_one_run_at_a_time() {
    let pool = |extra: serde_json::Value| {
        let mut spec = serde_json::json!({"template": {"image": "localhost/paddock/runner:dev"}});
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        RunnerPool::new("p", serde_json::from_value(spec).unwrap())
    };
    assert!(!serializes_admission(&pool(serde_json::json!({}))));
    assert!(serializes_admission(&pool(serde_json::json!({"maxConcurrentRuns": 4}))));
    // Warm claims are concurrent: the pod's resourceVersion guards each claim.
    assert!(!serializes_admission(&pool(
        serde_json::json!({"warm": {"replicas": 2}})
    )));
    assert!(serializes_admission(&pool(
        serde_json::json!({"warm": {"replicas": 2}, "maxConcurrentRuns": 4})
    )));
}

#[test]
fn only_failures_outside_the_agent_are_retried() {
    for r in ["PodDeleted", "PodLost", "PodEvicted", "ModelUnavailable"] {
        assert!(retryable(r, ""), "{r}");
    }
    assert!(retryable(
        "PodStartFailed",
        "container agent: ImagePullBackOff: back-off"
    ));
    assert!(retryable("PodStartFailed", "container clone: ErrImagePull: not found"));
    assert!(!retryable(
        "PodStartFailed",
        "container agent: CreateContainerConfigError: secret"
    ));
    for r in [
        "AgentFailed",
        "CommitFailed",
        "PushFailed",
        "Terminated",
        "OOMKilled",
        "RunnerFailed",
        "Rejected",
    ] {
        assert!(!retryable(r, "ImagePullBackOff"), "{r}");
    }
}

#[test]
fn a_pod_has_finished_when_all_its_containers_have() {
    let pod = |states: serde_json::Value| -> Pod {
        serde_json::from_value(serde_json::json!({"status": {"containerStatuses": states}})).unwrap()
    };
    let done = |at: &str| {
        serde_json::json!({"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "finishedAt": at}}})
    };
    let running = serde_json::json!({"name": "g", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
        "state": {"running": {}}});
    let both = pod(serde_json::json!([
        done("2026-11-22T10:00:05Z"),
        done("2026-11-22T10:00:03Z")
    ]));
    assert_eq!(
        pod_finished_at(&both).map(|t| t.0.to_string()),
        Some("2026-11-22T10:00:05Z".to_string())
    );
    assert_eq!(
        pod_finished_at(&pod(serde_json::json!([done("2026-11-22T10:00:05Z"), running]))),
        None
    );
    assert_eq!(pod_finished_at(&Pod::default()), None);
}

#[test]
fn backoff_doubles_up_to_ten_minutes() {
    let mut r = (*run("r", 1, None, false)).clone();
    assert_eq!(backoff_secs(&r, 2), 10);
    assert_eq!(backoff_secs(&r, 3), 20);
    r.spec.retry = Some(paddock_crds::RetrySpec {
        limit: 5,
        backoff: Some("1m".into()),
    });
    assert_eq!((backoff_secs(&r, 2), backoff_secs(&r, 4)), (60, 240));
    assert_eq!(backoff_secs(&r, 6), 600);
    assert_eq!(
        (attempt_of("r-3"), attempt_of("my-run-12"), attempt_of("x")),
        (3, 12, 1)
    );
}

#[test]
fn queue_positions() {
    let runs = vec![
        run("a", 1, Some(Phase::Running), true),
        run("b", 2, Some(Phase::Queued), false),
        run("c", 3, Some(Phase::Queued), false),
        run("done", 0, Some(Phase::Succeeded), true),
    ];
    let none = HashSet::new();
    // One slot, taken by a: b is first in line, c second.
    assert_eq!(
        queue_position(&runs, &none, &runs[1], "default", 1, QueuePolicy::Fifo),
        Some(1)
    );
    assert_eq!(
        queue_position(&runs, &none, &runs[2], "default", 1, QueuePolicy::Fifo),
        Some(2)
    );
    // Two slots: b starts, c waits first in line.
    assert_eq!(
        queue_position(&runs, &none, &runs[1], "default", 2, QueuePolicy::Fifo),
        None
    );
    assert_eq!(
        queue_position(&runs, &none, &runs[2], "default", 2, QueuePolicy::Fifo),
        Some(1)
    );
    // b was just admitted but the cache does not show its pod yet: c still waits.
    let admitted: HashSet<String> = ["ns/b".to_string()].into();
    assert_eq!(
        queue_position(&runs, &admitted, &runs[2], "default", 2, QueuePolicy::Fifo),
        Some(1)
    );
    // A new run not in the cache yet queues by its creation time.
    let new = run("d", 0, None, false);
    assert_eq!(
        queue_position(&runs, &none, &new, "default", 1, QueuePolicy::Fifo),
        Some(1)
    );
    // Another pool's runs do not count.
    assert_eq!(
        queue_position(&runs, &none, &runs[1], "other", 1, QueuePolicy::Fifo),
        None
    );
}

#[test]
fn priority_reorders_the_queue_and_ties_keep_creation_order() {
    let with_priority = |name: &str, created: i64, p: Option<i32>| {
        let mut r = (*run(name, created, Some(Phase::Queued), false)).clone();
        r.spec.priority = p;
        Arc::new(r)
    };
    let runs = vec![
        run("a", 1, Some(Phase::Running), true),
        with_priority("b", 2, None),
        with_priority("c", 3, Some(10)),
        with_priority("d", 4, Some(10)),
        with_priority("e", 5, Some(-5)),
    ];
    let none = HashSet::new();
    let pos = |i: usize, policy| queue_position(&runs, &none, &runs[i], "default", 1, policy);
    // FIFO ignores priority.
    assert_eq!(
        [1, 2, 3, 4].map(|i| pos(i, QueuePolicy::Fifo)),
        [Some(1), Some(2), Some(3), Some(4)]
    );
    // Priority: c and d (10, by creation), then b (0), then e (-5).
    assert_eq!(
        [1, 2, 3, 4].map(|i| pos(i, QueuePolicy::Priority)),
        [Some(3), Some(1), Some(2), Some(4)]
    );
    // A priority raised on the object being reconciled counts even if the cache is older.
    let mut bumped = (*runs[4]).clone();
    bumped.spec.priority = Some(100);
    assert_eq!(
        queue_position(&runs, &none, &bumped, "default", 1, QueuePolicy::Priority),
        Some(1)
    );
}

/// Replaces every RFC 3339 timestamp written "now" (not the fixture's) by `<now>`, so a body
/// can be compared whole.
fn without_clock(mut v: serde_json::Value, fixture: &[&str]) -> serde_json::Value {
    fn walk(v: &mut serde_json::Value, fixture: &[&str]) {
        match v {
            serde_json::Value::String(s)
                if !fixture.contains(&s.as_str())
                    && s.len() >= 20
                    && s.as_bytes()[4] == b'-'
                    && s.as_bytes()[10] == b'T'
                    && s.parse::<k8s_openapi::jiff::Timestamp>().is_ok() =>
            {
                *s = "<now>".into()
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| walk(x, fixture)),
            serde_json::Value::Object(o) => o.values_mut().for_each(|x| walk(x, fixture)),
            _ => {}
        }
    }
    walk(&mut v, fixture);
    v
}

/// One pass over a run whose pod ended well, as the API server sees it: the reads (the pod,
/// the run itself, the logs), then exactly two writes — the event log ConfigMap and the
/// status — with these bodies (as linkerd's status tests and controller-rs' verifier assert
/// what is written, not only that something was).
#[tokio::test]
async fn a_pod_that_ended_well_writes_exactly_its_log_and_its_status() {
    let start = "2026-11-22T10:00:00Z";
    let end = "2026-11-22T10:00:42Z";
    let run: AgentRun = serde_json::from_value(serde_json::json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": "r", "namespace": "ns", "uid": "u", "generation": 1,
                     "finalizers": [paddock_crds::evidence::FINALIZER]},
        "spec": {"repo": {"url": "https://x/r.git"}, "agent": {"name": "shell"}, "prompt": "p"},
        "status": {"phase": "Running", "podName": "r-1", "attempt": 1, "observedGeneration": 1,
                   "startTime": start, "warmStart": false,
                   "conditions": [
                       {"type": "Succeeded", "status": "Unknown", "reason": "Running", "message": "the agent is running", "lastTransitionTime": start},
                       {"type": "Running", "status": "True", "reason": "AgentRunning", "message": "the agent is running", "lastTransitionTime": start}]},
    }))
    .unwrap();
    let result = r#"{"outcome":"Succeeded","reason":"Succeeded","branch":"paddock/r","filesChanged":0,"insertions":0,"deletions":0}"#;
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "r-1", "namespace": "ns", "labels": {"paddock.dev/attempt": "1"},
                     "ownerReferences": [{"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "name": "r", "uid": "u"}]},
        "status": {"phase": "Succeeded",
                   "initContainerStatuses": [{"name": "gateway", "state": {"terminated": {"exitCode": 0}}}],
                   "containerStatuses": [{"name": "agent", "state": {"terminated": {"exitCode": 0, "message": result, "finishedAt": end}}}]}});
    let run_path = "/apis/paddock.dev/v1alpha1/namespaces/ns/agentruns/r";
    let (ctx, written) = crate::context::test_context_recording(vec![
        ("/api/v1/namespaces/ns/pods/r-1".into(), pod),
        (run_path.into(), serde_json::to_value(&run).unwrap()),
    ]);
    reconcile(Arc::new(run), Arc::new(ctx)).await.unwrap();
    let written = written.lock().unwrap().clone();
    let writes: Vec<(String, String, serde_json::Value)> = written
        .iter()
        .filter(|(m, _, _)| m != "GET")
        .map(|(m, p, b)| (m.clone(), p.clone(), without_clock(b.clone(), &[start, end])))
        .collect();
    let paths: Vec<(&str, &str)> = writes.iter().map(|(m, p, _)| (m.as_str(), p.as_str())).collect();
    assert_eq!(
        paths,
        [
            ("PATCH", "/api/v1/namespaces/ns/configmaps/r-log"),
            ("PATCH", "/apis/paddock.dev/v1alpha1/namespaces/ns/agentruns/r/status"),
            ("POST", "/apis/events.k8s.io/v1/namespaces/ns/events"),
        ],
        "{:#}",
        serde_json::Value::Array(writes.iter().map(|w| w.2.clone()).collect())
    );
    let owner = serde_json::json!([{"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "name": "r", "uid": "u",
        "controller": true, "blockOwnerDeletion": true}]);
    assert_eq!(
        writes[0].2,
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "r-log", "namespace": "ns",
                         "labels": {"app.kubernetes.io/managed-by": "paddock", "paddock.dev/run": "r", "paddock.dev/artifact": "log"},
                         "ownerReferences": owner},
            "data": {"events.jsonl": "\n"}})
    );
    assert_eq!(
        writes[1].2,
        serde_json::json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "status": {
            "phase": "Succeeded", "podName": "r-1", "attempt": 1, "observedGeneration": 1, "warmStart": false,
            "startTime": start, "completionTime": end, "duration": "42s",
            "conditions": [
                {"type": "Succeeded", "status": "True", "reason": "Succeeded",
                 "message": "the agent finished without changing any file", "lastTransitionTime": end, "observedGeneration": 1},
                {"type": "Running", "status": "False", "reason": "Succeeded", "message": "the runner pod finished",
                 "lastTransitionTime": end, "observedGeneration": 1}],
            "usage": {"inputTokens": 0, "outputTokens": 0, "turns": 0},
            "result": {"outcome": "Succeeded", "reason": "Succeeded", "message": "", "branch": "paddock/r",
                       "filesChanged": 0, "insertions": 0, "deletions": 0, "pushed": false,
                       "patchBytes": 0, "patchTruncated": false, "usage": {"inputTokens": 0, "outputTokens": 0, "turns": 0},
                       "diffstat": "+0/-0", "logRef": "r-log"}}}),
        "{:#}",
        writes[1].2
    );
    // The run's end as an Event: its reason, type and note, regarding the run.
    let event = &writes[2].2;
    assert_eq!(
        (
            &event["reason"],
            &event["type"],
            &event["note"],
            &event["regarding"]["name"]
        ),
        (
            &serde_json::json!("Succeeded"),
            &serde_json::json!("Normal"),
            &serde_json::json!("the agent finished without changing any file"),
            &serde_json::json!("r")
        ),
        "{event:#}"
    );
}

mod happy;
/// The API server's copy of a new run `r` (uid `u`) with `prompt` and `spec` merged in, its
/// pool `default` (uid `pu`, `warm` replicas), and the cache's copy of the run (no prompt).
fn run_pool_and_cached(prompt: &str, spec: serde_json::Value, warm: u32) -> (serde_json::Value, RunnerPool, AgentRun) {
    let mut server = serde_json::json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": "r", "namespace": "ns", "uid": "u", "generation": 1, "creationTimestamp": "2027-01-15T08:00:00Z"},
        "spec": {"repo": {"url": "https://x/r.git"}, "agent": {"name": "shell"}, "prompt": prompt}});
    for (k, v) in spec.as_object().unwrap() {
        server["spec"][k] = v.clone();
    }
    let pool: RunnerPool = serde_json::from_value(serde_json::json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "RunnerPool",
        "metadata": {"name": "default", "namespace": "ns", "uid": "pu"},
        "spec": {"template": {"image": "runner:dev"}, "warm": {"replicas": warm}}}))
    .unwrap();
    let mut cached: AgentRun = serde_json::from_value(server.clone()).unwrap();
    paddock_crds::cache::slim_agent_run(&mut cached);
    (server, pool, cached)
}

const RUN_PATH: &str = "/apis/paddock.dev/v1alpha1/namespaces/ns/agentruns/r";
const POOL_PATH: &str = "/apis/paddock.dev/v1alpha1/namespaces/ns/runnerpools/default";

fn uplink() -> build::PodUplink {
    build::PodUplink {
        proxy: "http://10.0.0.9:3128".into(),
        token: "t".into(),
    }
}

/// The agent container's `PADDOCK_PROMPT` in a pod's JSON.
fn prompt_in(pod: &serde_json::Value) -> Option<String> {
    let agent = pod["spec"]["containers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == "agent")?;
    let env = agent["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == paddock_crds::runner::vars::PROMPT)?;
    env["value"].as_str().map(String::from)
}

#[tokio::test]
async fn a_cold_pod_gets_the_prompt_read_from_the_api_server_not_the_cache() {
    let (server, pool, cached) = run_pool_and_cached("the real prompt", serde_json::json!({}), 0);
    let (ctx, seen) = crate::context::test_context_recording_reads(vec![
        (RUN_PATH.into(), server),
        (POOL_PATH.into(), serde_json::to_value(&pool).unwrap()),
    ]);
    crate::controller::egress::assume_ready(&ctx, &pool, uplink());
    // The fake refuses the pod's apply: the reconcile fails after it tried it.
    let _ = reconcile(Arc::new(cached), Arc::new(ctx)).await;
    let seen = seen.lock().unwrap().clone();
    let calls: Vec<String> = seen.iter().map(|(m, p, _)| format!("{m} {p}")).collect();
    assert_eq!(
        calls,
        [
            "GET /api/v1/namespaces/ns/pods/r-1".to_string(),
            format!("GET {POOL_PATH}"),
            format!("GET {RUN_PATH}"),
            "PATCH /api/v1/namespaces/ns/pods/r-1".to_string(),
        ],
        "one GET of the run, right before the pod's start"
    );
    assert_eq!(prompt_in(&seen[3].2).as_deref(), Some("the real prompt"));
}

#[tokio::test]
async fn a_warm_claim_carries_the_prompt_read_from_the_api_server() {
    let (server, pool, cached) = run_pool_and_cached("the real prompt", serde_json::json!({}), 1);
    // An idle warm pod of the pool, ready, built with the operator's key and the pool's uplink.
    let signer = Arc::new(paddock_crds::verdict::Signer::generate().unwrap());
    let mut idle = warm::build_warm_pod(&pool, &signer.public_key_b64(), Some(&uplink()));
    idle.metadata.name = Some("default-warm-a".into());
    idle.metadata.resource_version = Some("1".into());
    idle.status = Some(warm::pod_status("Running", true));
    let list = serde_json::json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [idle]});
    let (mut ctx, seen) = crate::context::test_context_recording_reads(vec![
        (RUN_PATH.into(), server),
        (POOL_PATH.into(), serde_json::to_value(&pool).unwrap()),
        ("/api/v1/namespaces/ns/pods".into(), list),
    ]);
    ctx.signer = signer;
    crate::controller::egress::assume_ready(&ctx, &pool, uplink());
    let _ = reconcile(Arc::new(cached), Arc::new(ctx)).await;
    let seen = seen.lock().unwrap().clone();
    let run_reads = seen.iter().filter(|(m, p, _)| m == "GET" && p == RUN_PATH).count();
    assert_eq!(run_reads, 1, "{seen:?}");
    let claim = seen
        .iter()
        .find(|(m, p, _)| m == "PATCH" && p == "/api/v1/namespaces/ns/pods/default-warm-a")
        .map(|(_, _, body)| body["metadata"]["annotations"][paddock_crds::ANNOTATION_CLAIM].clone())
        .expect("the warm pod was claimed");
    let claim = paddock_crds::runner::Claim::decode(claim.as_str().unwrap()).unwrap();
    assert_eq!(
        claim.agent.get(paddock_crds::runner::vars::PROMPT).map(String::as_str),
        Some("the real prompt")
    );
}

#[tokio::test]
async fn a_run_waiting_for_its_gate_reads_no_prompt() {
    let (server, pool, cached) = run_pool_and_cached(
        "the real prompt",
        serde_json::json!({"approvals": {"beforeStart": {"approvers": {"users": ["alice"]}}}}),
        0,
    );
    let gate = serde_json::json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "ApprovalGate",
        "metadata": {"name": "r-before-start", "namespace": "ns"},
        "spec": {"runRef": {"name": "r", "uid": "u"}, "stage": "BeforeStart", "request": {"summary": "start?"},
                 "approvers": {"users": ["alice"]}, "quorum": 1},
        "status": {"state": "Pending"}});
    let (ctx, seen) = crate::context::test_context_recording_reads(vec![
        (RUN_PATH.into(), server),
        (POOL_PATH.into(), serde_json::to_value(&pool).unwrap()),
        (
            "/apis/paddock.dev/v1alpha1/namespaces/ns/approvalgates/r-before-start".into(),
            gate,
        ),
    ]);
    crate::controller::egress::assume_ready(&ctx, &pool, uplink());
    let _ = reconcile(Arc::new(cached), Arc::new(ctx)).await;
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|(m, p, _)| m == "PATCH" && p == &format!("{RUN_PATH}/status")),
        "the run waits (status written): {seen:?}"
    );
    assert!(
        !seen.iter().any(|(_, p, _)| p == RUN_PATH),
        "no read of the run: {seen:?}"
    );
}
