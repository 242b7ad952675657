//! Live progress: while a runner pod runs, a follower task streams its `agent` container log,
//! turns the runner's notable events into Kubernetes Events on the AgentRun (at a bounded rate)
//! and keeps `status.progress` up to date (at most every [`PROGRESS_INTERVAL`]).
//!
//! A follower is an optimisation for latency, not a source of truth: the final status and the
//! stored log are computed from the finished pod. After an operator restart the follower starts
//! again and skips events already counted in `status.progress.events`. The run's final status
//! carries the final counts ([`summary`]), so a follower whose log ended with the runner's
//! result leaves its last write to it ([`last_write_needed`]): a run shorter than
//! [`PROGRESS_INTERVAL`] gets no progress write of its own.

use crate::context::{Context, MANAGER_PROGRESS};
use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use paddock_crds::events::{parse_line, truncate, EventLine, RunnerEvent, StepStatus};
use paddock_crds::{AgentRun, Progress};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Least time between two `status.progress` writes.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// Token bucket for agent Events: burst size.
const EVENT_BURST: f64 = 10.0;
/// Token bucket for agent Events: tokens per second.
const EVENT_RATE: f64 = 1.0;

/// The Kubernetes Event (type, reason, note) a runner event becomes, if any. Pure.
pub fn event_for(ev: &RunnerEvent) -> Option<(EventType, &'static str, String)> {
    Some(match ev {
        RunnerEvent::AgentStarted { agent, model, .. } => (
            EventType::Normal,
            "AgentStarted",
            format!(
                "{agent} started{}",
                model.as_deref().map(|m| format!(" with model {m}")).unwrap_or_default()
            ),
        ),
        RunnerEvent::ToolCall { name, input, .. } => (
            EventType::Normal,
            "ToolCall",
            format!("{name}: {}", truncate(input, 400)),
        ),
        RunnerEvent::PermissionDenied { name, input } => (
            EventType::Warning,
            "PermissionDenied",
            format!("{name} refused: {}", truncate(input, 400)),
        ),
        RunnerEvent::Error { message } => (EventType::Warning, "AgentError", truncate(message, 800)),
        RunnerEvent::EgressDenied { host, port } => (
            EventType::Warning,
            "EgressDenied",
            format!(
                "the gateway refused a connection to {}:{port}: not in the run's egress allowlist (spec.network.egress)",
                truncate(host, 253)
            ),
        ),
        RunnerEvent::Step {
            step,
            status: StepStatus::Failed,
            message,
        } => (
            EventType::Warning,
            "StepFailed",
            format!("{}: {}", step.as_str(), truncate(message, 800)),
        ),
        RunnerEvent::Step {
            step,
            status: StepStatus::Succeeded,
            ..
        } => (
            EventType::Normal,
            "StepSucceeded",
            format!("{} succeeded", step.as_str()),
        ),
        _ => return None,
    })
}

/// Whether an Event [`event_for`] made is published: failures (Warning) always, the runner's
/// progress steps (Normal: `AgentStarted`, `ToolCall`, `StepSucceeded`) only with
/// `--step-events` (`step_events`). The event log keeps every step either way. Pure.
pub fn published(event: &(EventType, &'static str, String), step_events: bool) -> bool {
    step_events || event.0 == EventType::Warning
}

/// One-line description of an event for `status.progress.lastEvent`. Pure.
pub fn describe(ev: &RunnerEvent) -> String {
    let s = match ev {
        RunnerEvent::Message { text } => format!("message: {text}"),
        RunnerEvent::ToolCall { name, input, .. } => format!("tool_call {name}: {input}"),
        RunnerEvent::Log { stream, text } => format!("{stream}: {text}"),
        RunnerEvent::Error { message } => format!("error: {message}"),
        RunnerEvent::Final { text, .. } => format!("final: {text}"),
        RunnerEvent::ToolResult { is_error, .. } => format!("tool_result{}", if *is_error { " (error)" } else { "" }),
        RunnerEvent::Step { step, status, .. } => format!("step {} {:?}", step.as_str(), status).to_lowercase(),
        other => other.type_name().to_string(),
    };
    truncate(&s.replace('\n', " "), 256)
}

/// The counts of a whole event log for `status.progress` of pod `pod`: `last_seq` (the highest
/// sequence number, chunks included), the tool calls among `events` and the last of them
/// described, as the follower counts them. Pure.
pub fn summary(events: &[EventLine], last_seq: u64, pod: &str) -> Progress {
    Progress {
        pod: Some(pod.to_string()),
        events: last_seq,
        tool_calls: events
            .iter()
            .filter(|e| matches!(e.event, RunnerEvent::ToolCall { .. }))
            .count() as u32,
        last_event: events
            .iter()
            .rev()
            .find(|e| !matches!(e.event, RunnerEvent::Patch { .. } | RunnerEvent::Session { .. }))
            .map(|e| describe(&e.event))
            .unwrap_or_default(),
    }
}

/// Whether a follower whose log ended writes its last counts (`dirty`: some are not written).
/// Not when it read the runner's result (`finished`), no event it read since its last write is
/// one the run's end would publish as an Event (`notable`: the end publishes those after the
/// last written count), and the run has no `spec.verify` (`verifies`: its end waits for the
/// checks): the run's end is then written next, from the pod, with the final counts
/// ([`summary`]). Pure.
pub fn last_write_needed(dirty: bool, finished: bool, notable: bool, verifies: bool) -> bool {
    dirty && (!finished || notable || verifies)
}

/// Starts a follower for `run`'s pod unless one is already running.
pub async fn ensure_follower(ctx: &Arc<Context>, run: &AgentRun, pod: &str) {
    let Some(uid) = run.metadata.uid.clone() else { return };
    let mut followers = ctx.followers.tasks.lock().await;
    if followers.get(&uid).is_some_and(|h| !h.is_finished()) {
        return;
    }
    // A follower that read the runner's result has read the whole log: starting another would
    // read it again (and write the same progress) while the pod is winding down.
    if ctx.followers.done().contains(&uid) {
        return;
    }
    // At most --max-log-followers at once; without a slot the run's events are read from its
    // log when it ends (a later reconcile may find a free slot). A run with in-run approvals is
    // always followed: its gates are raised from the followed log, and the runner waits on them.
    let slot = ctx.followers.slots.clone().try_acquire_owned().ok();
    if slot.is_none() && !super::approvals::has_in_run_gates(run) {
        return;
    }
    let ctx2 = ctx.clone();
    let run2 = run.clone();
    let pod = pod.to_string();
    followers.insert(
        uid,
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = follow(ctx2, run2, pod).await {
                tracing::debug!(error = %e, "log follower ended");
            }
        }),
    );
}

/// How long the end of an attempt waits for its follower to read the rest of the log
/// ([`finish_follower`]).
pub const FOLLOWER_GRACE: Duration = Duration::from_secs(1);

/// Lets the follower of the run with `uid` finish reading, for at most `grace`, then stops it:
/// the attempt ended, so its log is complete, and a follower that reads it to the `result` line
/// spares the end a second read of it (docs/performance.md, log reads). A follower that is
/// still reading after `grace` (a stream the API server is slow to serve) is stopped; the end
/// then reads the log itself.
pub async fn finish_follower(ctx: &Context, uid: &str, grace: Duration) {
    let task = ctx.followers.tasks.lock().await.remove(uid);
    if let Some(mut task) = task {
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
        }
    }
    ctx.followers.done().remove(uid);
}

/// Stops the follower of the run with `uid`, if any.
pub async fn stop_follower(ctx: &Context, uid: &str) {
    if let Some(h) = ctx.followers.tasks.lock().await.remove(uid) {
        h.abort();
    }
    ctx.followers.done().remove(uid);
}

async fn follow(ctx: Arc<Context>, run: AgentRun, pod: String) -> anyhow::Result<()> {
    let ns = run.metadata.namespace.clone().unwrap_or_default();
    let name = run.metadata.name.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let runs: Api<AgentRun> = Api::namespaced(ctx.client.clone(), &ns);
    // Counts from an earlier attempt's pod start again at zero.
    let mut progress = run
        .status
        .as_ref()
        .and_then(|s| s.progress.clone())
        .filter(|p| p.pod.as_deref().is_none_or(|p| p == pod))
        .unwrap_or_default();
    progress.pod = Some(pod.clone());
    let already = progress.events;
    let attempt = run.status.as_ref().and_then(|s| s.attempt).unwrap_or(1);
    let lp = LogParams {
        container: Some("agent".into()),
        follow: true,
        ..Default::default()
    };
    let mut lines = pods.log_stream(&pod, &lp).await?.lines();
    // The stream starts from the first line: rebuild the kept copy from scratch.
    let log_key = format!("{ns}/{pod}");
    ctx.followers.take_log(&log_key);
    let mut tokens = EVENT_BURST;
    let mut last_refill = Instant::now();
    // The first write waits one interval too: a run shorter than that gets a single write, when
    // its log ends.
    let mut last_write = Instant::now();
    let mut dirty = false;
    // Since the last write: an event the run's end would publish (failures; steps with
    // --step-events); and whether the runner's result was read.
    let (mut notable, mut finished) = (false, false);
    while let Some(line) = lines.try_next().await? {
        ctx.followers.append_log(&log_key, &line);
        let Some(ev) = parse_line(&line) else { continue };
        // An approval request is handed to the reconcile (which raises its gate, idempotently)
        // even when progress.events already counts it: the request lived in this process's
        // memory only, and a restarted operator (or a new leader) must not lose it while the
        // runner waits. Not rate-limited: the runner waits for this gate.
        if let RunnerEvent::ApprovalRequested {
            id,
            stage,
            summary,
            tool,
            input,
            commit,
            diffstat,
            question,
            options,
            plan,
        } = &ev.event
        {
            if super::approvals::valid_id(id) {
                let req = super::approvals::Request {
                    id: id.clone(),
                    stage: stage.clone(),
                    summary: summary.clone(),
                    tool: tool.clone(),
                    input: input.clone(),
                    commit: commit.clone(),
                    diffstat: diffstat.clone(),
                    question: question.clone(),
                    options: options.clone(),
                    plan: plan.clone(),
                };
                ctx.requests.raise(&run, &pod, req);
            } else {
                tracing::warn!(id, "ignoring an approval request with an invalid id");
            }
        }
        // A message the runner handed to the agent: the RunMessage controller records it. Like
        // a request, it is handed over again after a restart (the record is idempotent).
        if let RunnerEvent::MessageDelivered { id, turn } = &ev.event {
            // When the follower read it: the runner's own timestamp is agent-reported.
            let delivery = crate::inflight::Delivery {
                turn: *turn,
                attempt,
                at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
            };
            ctx.deliveries
                .record(run.metadata.uid.as_deref().unwrap_or_default(), id, delivery);
        }
        if ev.seq <= already {
            continue;
        }
        progress.events = ev.seq;
        if matches!(ev.event, RunnerEvent::Result(_)) {
            finished = true;
            if let Some(uid) = &run.metadata.uid {
                ctx.followers.done().insert(uid.clone());
            }
        }
        if matches!(ev.event, RunnerEvent::ToolCall { .. }) {
            progress.tool_calls += 1;
        }
        if !matches!(ev.event, RunnerEvent::Patch { .. } | RunnerEvent::Session { .. }) {
            progress.last_event = describe(&ev.event);
        }
        dirty = true;
        tokens = (tokens + last_refill.elapsed().as_secs_f64() * EVENT_RATE).min(EVENT_BURST);
        last_refill = Instant::now();
        if let Some((t, reason, note)) = event_for(&ev.event).filter(|e| published(e, ctx.step_events)) {
            notable = true;
            if tokens >= 1.0 {
                tokens -= 1.0;
                ctx.publish(&run, t, reason, note).await;
            }
        }
        if last_write.elapsed() >= PROGRESS_INTERVAL {
            write_progress(&runs, &name, &progress).await;
            last_write = Instant::now();
            (dirty, notable) = (false, false);
        }
        if finished {
            // The runner prints its result last: the log is read whole. The stream (which a
            // node may hold open until the pod is gone) and the follower's slot are let go now.
            break;
        }
    }
    if last_write_needed(dirty, finished, notable, run.spec.verify.is_some()) {
        write_progress(&runs, &name, &progress).await;
    }
    // The kept copy waits for the reconcile that ends the attempt; a run deleted meanwhile is
    // never reconciled again, so drop its copy here rather than hold it for the process's life.
    let current = runs.get_opt(&name).await?;
    if current.is_none_or(|r| r.metadata.uid != run.metadata.uid) {
        ctx.followers.take_log(&log_key);
    }
    Ok(())
}

async fn write_progress(runs: &Api<AgentRun>, name: &str, progress: &Progress) {
    let patch = serde_json::json!({
        "apiVersion": "paddock.dev/v1alpha1",
        "kind": "AgentRun",
        "status": { "progress": progress },
    });
    if let Err(e) = runs
        .patch_status(
            name,
            &PatchParams::apply(MANAGER_PROGRESS).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        tracing::debug!(run = name, error = %e, "progress write failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_crds::events::Step;

    #[test]
    fn notable_events_become_kubernetes_events() {
        let call = RunnerEvent::ToolCall {
            id: "1".into(),
            name: "Write".into(),
            input: "{\"file_path\":\"a\"}".into(),
        };
        assert_eq!(
            event_for(&call).map(|e| (e.1, e.2)),
            Some(("ToolCall", "Write: {\"file_path\":\"a\"}".to_string()))
        );
        let failed = RunnerEvent::Step {
            step: Step::Push,
            status: StepStatus::Failed,
            message: "denied".into(),
        };
        assert_eq!(
            event_for(&failed).map(|e| (e.0, e.1)),
            Some((EventType::Warning, "StepFailed"))
        );
        // By default only failures are published; the steps with --step-events.
        let call = event_for(&call).unwrap();
        let failed = event_for(&failed).unwrap();
        assert_eq!((published(&call, false), published(&failed, false)), (false, true));
        assert_eq!((published(&call, true), published(&failed, true)), (true, true));
        assert!(event_for(&RunnerEvent::Message { text: "x".into() }).is_none());
        assert!(event_for(&RunnerEvent::Log {
            stream: "stderr".into(),
            text: "x".into()
        })
        .is_none());
    }

    fn run(uid: &str, in_run_gates: bool) -> AgentRun {
        let mut spec = serde_json::json!({"repo": {"url": "https://example.com/r.git"},
                                          "agent": {"name": "shell"}, "prompt": "x"});
        if in_run_gates {
            spec["approvals"] = serde_json::json!({"beforePush": {}});
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
            "metadata": {"name": uid, "namespace": "ns", "uid": uid}, "spec": spec
        }))
        .unwrap()
    }

    async fn followed_uids(ctx: &Context) -> Vec<String> {
        let f = ctx.followers.tasks.lock().await;
        let mut v: Vec<String> = f
            .iter()
            .filter(|(_, h)| !h.is_finished())
            .map(|(k, _)| k.clone())
            .collect();
        v.sort();
        v
    }

    /// Waits (at most 5 s) until a follower slot is free: an aborted follower gives its slot
    /// back when its task is dropped.
    async fn free_slot(ctx: &Context) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while ctx.followers.slots.available_permits() == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the stopped follower's slot comes back");
    }

    /// A node (kwok's log server, say) can hold a log stream open after the container's last
    /// line: the follower stops at the runner's result all the same, with the whole log kept.
    #[tokio::test]
    async fn a_follower_stops_at_the_result_even_when_the_stream_stays_open() {
        let log = concat!(
            r#"{"v":1,"seq":1,"ts":"2026-12-07T00:00:00.000Z","type":"step","step":"agent","status":"started","message":"shell"}"#,
            "\n",
            r#"{"v":1,"seq":2,"ts":"2026-12-07T00:00:01.000Z","type":"result","outcome":"Succeeded","reason":"Succeeded","message":"ok"}"#,
            "\n"
        );
        use futures::StreamExt as _;
        type Frames =
            futures::stream::BoxStream<'static, Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>>;
        // Any other request is the follower's GET of the run at its end.
        let stored: &'static [u8] = serde_json::to_vec(&run("r", false)).unwrap().leak();
        let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| async move {
            let frame = |b: &'static [u8]| -> Result<_, std::convert::Infallible> {
                Ok(hyper::body::Frame::data(bytes::Bytes::from_static(b)))
            };
            let frames: Frames = if req.uri().path().ends_with("/log") {
                // The lines, then a stream that never ends.
                futures::stream::iter([frame(log.as_bytes())])
                    .chain(futures::stream::pending())
                    .boxed()
            } else {
                futures::stream::iter([frame(stored)]).boxed()
            };
            let body = http_body_util::StreamBody::new(frames);
            Ok::<_, std::convert::Infallible>(http::Response::builder().status(200).body(body).unwrap())
        });
        let (store, _writer) = kube::runtime::reflector::store::<AgentRun>();
        let ctx = Arc::new(crate::context::Context::new(
            kube::Client::new(svc, "default"),
            Arc::default(),
            store,
            "test".into(),
        ));
        let r = run("r", false);
        tokio::time::timeout(Duration::from_secs(5), follow(ctx.clone(), r, "pod-r".into()))
            .await
            .expect("the follower ended at the result")
            .unwrap();
        let kept = ctx.followers.take_log("ns/pod-r").expect("the log it read");
        assert!(kept.whole(), "{kept:?}");
    }

    #[tokio::test]
    async fn the_end_lets_a_follower_finish_reading_but_not_forever() {
        let ctx = crate::context::test_context();
        // A follower about to read its last line: the end waits for it.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        ctx.followers.tasks.lock().await.insert(
            "reading".into(),
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = tx.send(());
            }),
        );
        finish_follower(&ctx, "reading", Duration::from_secs(5)).await;
        assert!(rx.await.is_ok(), "it finished reading, not aborted");
        // A follower whose stream never ends is stopped after the grace.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        ctx.followers.tasks.lock().await.insert(
            "stuck".into(),
            tokio::spawn(async move {
                std::future::pending::<()>().await;
                let _ = tx.send(());
            }),
        );
        let t0 = std::time::Instant::now();
        finish_follower(&ctx, "stuck", Duration::from_millis(50)).await;
        assert!(t0.elapsed() < Duration::from_secs(2));
        assert!(rx.await.is_err(), "aborted: its task was dropped");
        assert!(ctx.followers.tasks.lock().await.is_empty());
    }

    #[tokio::test]
    async fn followers_are_capped_except_runs_with_in_run_gates() {
        let mut ctx = crate::context::test_context();
        ctx.followers = crate::inflight::Followers::new(1);
        let ctx = Arc::new(ctx);
        let (a, b, gated) = (run("a", false), run("b", false), run("gated", true));
        assert!(super::super::approvals::has_in_run_gates(&gated));

        ensure_follower(&ctx, &a, "pod-a").await;
        // No slot left for `b`; `gated` is followed without one.
        ensure_follower(&ctx, &b, "pod-b").await;
        ensure_follower(&ctx, &gated, "pod-gated").await;
        // Let the followers start: each then waits on its log request, which is never answered.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(followed_uids(&ctx).await, ["a", "gated"]);
        assert_eq!(ctx.followers.slots.available_permits(), 0);

        // Stopping a follower gives its slot back, and a later reconcile of `b` gets it.
        stop_follower(&ctx, "a").await;
        free_slot(&ctx).await;
        ensure_follower(&ctx, &b, "pod-b").await;
        assert_eq!(followed_uids(&ctx).await, ["b", "gated"]);

        // A run whose follower already read the runner's result is not followed again, even
        // with a slot free.
        stop_follower(&ctx, "b").await;
        free_slot(&ctx).await;
        ctx.followers.done().insert("a".into());
        ensure_follower(&ctx, &a, "pod-a").await;
        assert_eq!(followed_uids(&ctx).await, ["gated"]);
    }

    #[test]
    fn a_whole_log_counts_as_the_follower_does() {
        let line = |seq, event| EventLine {
            v: 1,
            seq,
            ts: "t".into(),
            event,
        };
        let call = |id: &str| RunnerEvent::ToolCall {
            id: id.into(),
            name: "Bash".into(),
            input: "ls".into(),
        };
        // Patch chunks (seq 4) are counted in `events` but are not events of the parsed log.
        let events = [
            line(1, RunnerEvent::Message { text: "hi".into() }),
            line(2, call("1")),
            line(3, call("2")),
            line(5, RunnerEvent::Message { text: "done".into() }),
        ];
        assert_eq!(
            summary(&events, 5, "r-1"),
            Progress {
                pod: Some("r-1".into()),
                events: 5,
                tool_calls: 2,
                last_event: "message: done".into(),
            }
        );
        assert_eq!(summary(&[], 0, "r-1").last_event, "");
    }

    #[test]
    fn the_runs_end_carries_the_last_counts_of_a_finished_log() {
        // (dirty, finished, notable, verifies) → write.
        let table = [
            ((false, false, false, false), false, "nothing new"),
            (
                (true, false, false, false),
                true,
                "the log ended without a result: the pod was stopped",
            ),
            ((true, true, false, false), false, "the end carries them"),
            (
                (true, true, true, false),
                true,
                "a failure Event was read: the end must not publish it again",
            ),
            ((true, true, false, true), true, "the end waits for the checks"),
        ];
        for ((dirty, finished, notable, verifies), want, why) in table {
            assert_eq!(last_write_needed(dirty, finished, notable, verifies), want, "{why}");
        }
    }

    #[test]
    fn describe_is_one_bounded_line() {
        let d = describe(&RunnerEvent::Message {
            text: format!("a\nb{}", "x".repeat(1000)),
        });
        assert!(d.starts_with("message: a b"), "{d}");
        assert!(!d.contains('\n'));
        let log = RunnerEvent::Log {
            stream: "stdout".into(),
            text: "step 3".into(),
        };
        assert_eq!(describe(&log), "stdout: step 3");
        assert!(d.len() <= 256);
    }
}
