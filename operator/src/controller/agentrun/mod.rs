//! The AgentRun controller. One reconcile reads like a table of contents:
//! finished? → cancel? → resolve (pool, prompt) → approval gate → queue admission →
//! build + apply the pod → status from the pod → artifacts → patch status on change.

pub mod approvals;
pub mod artifacts;
pub mod build;
pub mod follow;
pub mod status;

use crate::context::{Context, MANAGER_AGENTRUN};
use crate::error::{Error, Result};
use build::{build_gate, build_pod, gate_name, pod_name, pool_name, timeout_secs};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use paddock_crds::{AgentRun, AgentRunStatus, ApprovalGate, GateState, Phase, ResultStatus, RunnerPool};
use status::{classify_pod, format_duration, set_phase, PodState};
use std::sync::Arc;
use std::time::Duration;

/// Controller name used in metrics and logs.
pub const CONTROLLER: &str = "agentrun";
/// How often a queued run re-checks its pool's capacity (from the cache, no API calls).
const QUEUE_RECHECK: Duration = Duration::from_secs(2);
/// Grace the operator gives the kubelet's own `activeDeadlineSeconds` before it ends a run as
/// TimedOut itself.
const DEADLINE_GRACE_SECS: i64 = 15;

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Most runner events turned into Kubernetes Events when a run ends without its follower
/// having reported them.
const CATCH_UP_EVENTS: usize = 20;

/// The attempt this version runs (retries come later; pods are named `<run>-<attempt>`).
const ATTEMPT: u32 = 1;

/// What one pass decided: the status to write, Events to publish, and when to look again.
struct Outcome {
    status: AgentRunStatus,
    events: Vec<(EventType, String, String)>,
    action: Action,
}

/// Reconciles one AgentRun.
///
/// # Errors
/// Transient API errors; the controller retries them with backoff ([`error_policy`]).
pub async fn reconcile(run: Arc<AgentRun>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.state.metrics.reconcile(CONTROLLER);
    let ns = run
        .metadata
        .namespace
        .clone()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = run.metadata.name.clone().ok_or(Error::MissingField("metadata.name"))?;
    let old = run.status.clone().unwrap_or_default();
    if old.phase.is_some_and(Phase::is_terminal) {
        if let Some(uid) = &run.metadata.uid {
            follow::stop_follower(&ctx, uid).await;
        }
        return Ok(Action::await_change());
    }

    let mut out = Outcome {
        status: old.clone(),
        events: vec![],
        action: Action::await_change(),
    };
    out.status.observed_generation = run.metadata.generation;
    step(&run, &ctx, &ns, &mut out).await?;

    // Duration column: set once, when the run ends (a running run's age is the Age column;
    // writing the clock every pass would make status churn).
    if let (Some(start), Some(end)) = (&out.status.start_time, &out.status.completion_time) {
        out.status.duration = Some(format_duration(end.0.as_second() - start.0.as_second()));
    }

    let mut new_status = out.status.clone();
    let mut old_cmp = old.clone();
    // status.progress belongs to the log follower's field manager.
    new_status.progress = None;
    old_cmp.progress = None;
    if new_status != old_cmp {
        let api: Api<AgentRun> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = serde_json::json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "status": new_status});
        api.patch_status(
            &name,
            &PatchParams::apply(MANAGER_AGENTRUN).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    }
    for (t, reason, note) in out.events {
        ctx.publish(run.as_ref(), t, &reason, note).await;
    }
    Ok(out.action)
}

/// Moves `out.status` to `phase` and queues an Event when the phase or reason changed.
fn transition(run: &AgentRun, out: &mut Outcome, phase: Phase, reason: &str, message: &str) {
    let before = (out.status.phase, succeeded_reason(&out.status));
    set_phase(&mut out.status, phase, reason, message, run.metadata.generation, &now());
    if phase.is_terminal() && out.status.completion_time.is_none() {
        out.status.completion_time = Some(now());
    }
    if before != (Some(phase), succeeded_reason(&out.status)) {
        let t = match phase {
            Phase::Failed | Phase::TimedOut | Phase::Rejected => EventType::Warning,
            _ => EventType::Normal,
        };
        out.events.push((t, reason.to_string(), message.to_string()));
    }
}

fn succeeded_reason(st: &AgentRunStatus) -> Option<String> {
    paddock_crds::condition::find_condition(&st.conditions, status::COND_SUCCEEDED).map(|c| c.reason.clone())
}

async fn step(run: &AgentRun, ctx: &Arc<Context>, ns: &str, out: &mut Outcome) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let pod_name = pod_name(run, ATTEMPT);
    let pod = pods.get_opt(&pod_name).await?;

    // Cancel: stop the pod (after keeping its log) and end the run.
    if run.spec.cancel {
        if let Some(p) = &pod {
            finish_from_pod(run, ctx, p, out, Some(Phase::Cancelled)).await?;
            pods.delete(&pod_name, &DeleteParams::default())
                .await
                .map(|_| ())
                .or_else(ignore_not_found)?;
        } else {
            transition(
                run,
                out,
                Phase::Cancelled,
                "Cancelled",
                "spec.cancel was set before the run started",
            );
        }
        return Ok(());
    }

    if let Some(pod) = pod {
        return observe_pod(run, ctx, &pods, &pod, out).await;
    }
    if out.status.pod_name.is_some() {
        transition(
            run,
            out,
            Phase::Failed,
            "PodLost",
            &format!("runner pod {pod_name} disappeared before the run ended"),
        );
        return Ok(());
    }

    // Resolve: the pool and the prompt must exist.
    let pool_name = pool_name(run).to_string();
    let pools: Api<RunnerPool> = Api::namespaced(ctx.client.clone(), ns);
    let Some(pool) = pools.get_opt(&pool_name).await? else {
        transition(
            run,
            out,
            Phase::Pending,
            "PoolNotFound",
            &format!("RunnerPool {pool_name} does not exist in namespace {ns}"),
        );
        out.action = Action::requeue(Duration::from_secs(30));
        return Ok(());
    };
    if let Some(from) = &run.spec.prompt_from {
        let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
        let has_key = cms
            .get_opt(&from.name)
            .await?
            .and_then(|cm| cm.data)
            .is_some_and(|d| d.contains_key(&from.key));
        if !has_key {
            transition(
                run,
                out,
                Phase::Pending,
                "PromptNotFound",
                &format!("ConfigMap {} has no key {}", from.name, from.key),
            );
            out.action = Action::requeue(Duration::from_secs(15));
            return Ok(());
        }
    }

    // Approval before start.
    if let Some(policy) = run.spec.approvals.as_ref().and_then(|a| a.before_start.as_ref()) {
        let gates: Api<ApprovalGate> = Api::namespaced(ctx.client.clone(), ns);
        let gname = gate_name(run);
        let gate = match gates.get_opt(&gname).await? {
            Some(g) => g,
            // Created, never re-applied: humans own spec.decisions.
            None => match gates
                .create(
                    &PostParams {
                        field_manager: Some(MANAGER_AGENTRUN.into()),
                        ..Default::default()
                    },
                    &build_gate(run, policy),
                )
                .await
            {
                Ok(g) => g,
                Err(kube::Error::Api(e)) if e.code == 409 => gates.get(&gname).await?,
                Err(e) => return Err(e.into()),
            },
        };
        out.status.gate_name = Some(gname.clone());
        let approve_on_expiry = gate.spec.on_timeout == Some(paddock_crds::TimeoutAction::Approve);
        match gate.status.as_ref().and_then(|s| s.state) {
            Some(GateState::Approved) => {}
            Some(GateState::Expired) if approve_on_expiry => {}
            Some(GateState::Expired) => {
                transition(
                    run,
                    out,
                    Phase::Rejected,
                    "GateExpired",
                    &format!("ApprovalGate {gname} expired without a decision (onTimeout Reject)"),
                );
                return Ok(());
            }
            Some(GateState::Rejected) => {
                let by = gate
                    .status
                    .as_ref()
                    .and_then(|s| s.decided_by.clone())
                    .unwrap_or_default();
                transition(
                    run,
                    out,
                    Phase::Rejected,
                    "Rejected",
                    &format!("ApprovalGate {gname} was rejected by {by}"),
                );
                return Ok(());
            }
            _ => {
                transition(
                    run,
                    out,
                    Phase::AwaitingApproval,
                    "GatePending",
                    &format!("waiting for a decision on ApprovalGate {gname} (stage BeforeStart)"),
                );
                return Ok(());
            }
        }
    }

    // Queue: respect the pool's maxConcurrentRuns, in creation order.
    let mut admissions = ctx.admissions.lock().await;
    let key = format!("{ns}/{}", run.metadata.name.as_deref().unwrap_or_default());
    if let Some(max) = pool.spec.max_concurrent_runs {
        let runs = ctx.runs.state();
        admissions.retain(|k| {
            runs.iter()
                .any(|r| key_of(r) == *k && r.status.as_ref().is_none_or(|s| s.pod_name.is_none()))
        });
        if let Some(position) = queue_position(&runs, &admissions, run, &pool_name, max) {
            drop(admissions);
            out.status.queue_position = Some(position);
            transition(
                run,
                out,
                Phase::Queued,
                "WaitingForCapacity",
                &format!("position {position} in the queue of RunnerPool {pool_name} (maxConcurrentRuns {max})"),
            );
            out.action = Action::requeue(QUEUE_RECHECK);
            return Ok(());
        }
    }

    // Build and create the pod.
    let pod = match build_pod(run, &pool, ATTEMPT) {
        Ok(p) => p,
        Err(e) => {
            transition(run, out, Phase::Failed, "InvalidSpec", &e.to_string());
            return Ok(());
        }
    };
    let mut value = serde_json::to_value(&pod)?;
    value["apiVersion"] = "v1".into();
    value["kind"] = "Pod".into();
    pods.patch(
        &pod_name,
        &PatchParams::apply(MANAGER_AGENTRUN).force(),
        &Patch::Apply(&value),
    )
    .await?;
    admissions.insert(key);
    drop(admissions);
    out.status.pod_name = Some(pod_name.clone());
    out.status.queue_position = None;
    out.status.start_time = Some(now());
    transition(
        run,
        out,
        Phase::Running,
        "PodCreated",
        &format!("created runner pod {pod_name} in pool {pool_name}"),
    );
    out.action = Action::requeue(Duration::from_secs(
        timeout_secs(run).unwrap_or(build::DEFAULT_TIMEOUT_SECS),
    ));
    Ok(())
}

fn key_of(r: &AgentRun) -> String {
    format!(
        "{}/{}",
        r.metadata.namespace.as_deref().unwrap_or_default(),
        r.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Position (1-based) of `run` in its pool's queue, or `None` when it may start now. Pure over
/// the cache: active runs are those with a pod (or admitted and not yet visible in the cache);
/// waiting runs are ordered by creation time, then name.
pub fn queue_position(
    runs: &[Arc<AgentRun>],
    admitted: &std::collections::HashSet<String>,
    run: &AgentRun,
    pool: &str,
    max: u32,
) -> Option<u32> {
    let ns = run.metadata.namespace.as_deref();
    let same_pool = |r: &&Arc<AgentRun>| {
        r.metadata.namespace.as_deref() == ns && pool_name(r) == pool && r.metadata.deletion_timestamp.is_none()
    };
    let terminal = |r: &AgentRun| r.status.as_ref().and_then(|s| s.phase).is_some_and(Phase::is_terminal);
    let active = runs
        .iter()
        .filter(same_pool)
        .filter(|r| {
            !terminal(r) && (r.status.as_ref().is_some_and(|s| s.pod_name.is_some()) || admitted.contains(&key_of(r)))
        })
        .count() as u32;
    let mut waiting: Vec<Arc<AgentRun>> = runs
        .iter()
        .filter(same_pool)
        .filter(|r| {
            !terminal(r)
                && !r.spec.cancel
                && r.status.as_ref().is_none_or(|s| s.pod_name.is_none())
                && !admitted.contains(&key_of(r))
        })
        .filter(|r| {
            let phase = r.status.as_ref().and_then(|s| s.phase);
            let gated = r.spec.approvals.as_ref().is_some_and(|a| a.before_start.is_some());
            matches!(phase, Some(Phase::Queued)) || (!gated && matches!(phase, None | Some(Phase::Pending)))
        })
        .cloned()
        .collect();
    let key = |r: &AgentRun| {
        (
            r.metadata.creation_timestamp.clone().map(|t| t.0),
            r.metadata.name.clone(),
        )
    };
    if !waiting.iter().any(|r| r.metadata.uid == run.metadata.uid) {
        // Not in the cache yet (just created) or just approved: it queues at its creation time.
        waiting.push(Arc::new(run.clone()));
    }
    waiting.sort_by_key(|r| key(r));
    let index = waiting
        .iter()
        .position(|r| r.metadata.uid == run.metadata.uid)
        .unwrap_or(0) as u32;
    let free = max.saturating_sub(active);
    (index >= free).then(|| index - free + 1)
}

async fn observe_pod(run: &AgentRun, ctx: &Arc<Context>, pods: &Api<Pod>, pod: &Pod, out: &mut Outcome) -> Result<()> {
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    out.status.pod_name = Some(pod_name.clone());
    if out.status.start_time.is_none() {
        out.status.start_time = pod.metadata.creation_timestamp.clone();
    }
    match classify_pod(pod) {
        PodState::Finished { .. } => finish_from_pod(run, ctx, pod, out, None).await,
        state => {
            if state == PodState::Running {
                follow::ensure_follower(ctx, run, &pod_name).await;
            }
            let message = match &state {
                PodState::Starting { message } => message.clone(),
                _ => "the agent is running".into(),
            };
            let reason = if state == PodState::Running {
                "AgentRunning"
            } else {
                "PodStarting"
            };
            // In-run approvals: hand decided verdicts to the pod; show a pending gate.
            let in_run_gates = run
                .spec
                .approvals
                .as_ref()
                .is_some_and(|a| a.before_push.is_some() || a.tool_use.is_some());
            let pending = if in_run_gates && state == PodState::Running {
                approvals::sync_verdicts(ctx, run, pod).await?
            } else {
                None
            };
            if let Some(g) = pending {
                let gname = g.metadata.name.clone().unwrap_or_default();
                let what = g.spec.request.summary.lines().next().unwrap_or_default().to_string();
                out.status.gate_name = Some(gname.clone());
                transition(
                    run,
                    out,
                    Phase::AwaitingApproval,
                    "GatePending",
                    &format!(
                        "waiting for a decision on ApprovalGate {gname} (stage {}): {}",
                        g.spec.stage.as_str(),
                        paddock_crds::events::truncate(&what, 200)
                    ),
                );
            } else {
                // Keep the creation Event; record the agent start as its own transition.
                set_phase(
                    &mut out.status,
                    Phase::Running,
                    reason,
                    &message,
                    run.metadata.generation,
                    &now(),
                );
            }
            // The operator's own deadline, in case the kubelet's activeDeadlineSeconds did not fire.
            let limit = timeout_secs(run).unwrap_or(build::DEFAULT_TIMEOUT_SECS) as i64;
            let started = out
                .status
                .start_time
                .as_ref()
                .map(|t| t.0.as_second())
                .unwrap_or_else(|| now().0.as_second());
            let left = started + limit + DEADLINE_GRACE_SECS - now().0.as_second();
            if left <= 0 {
                finish_from_pod(run, ctx, pod, out, Some(Phase::TimedOut)).await?;
                pods.delete(&pod_name, &DeleteParams::default())
                    .await
                    .map(|_| ())
                    .or_else(ignore_not_found)?;
                return Ok(());
            }
            out.action = Action::requeue(Duration::from_secs(left as u64));
            Ok(())
        }
    }
}

/// Ends the run from its pod: keeps the log and patch, copies the result, sets the terminal
/// phase. `forced` overrides the phase the pod's state implies (cancel, operator deadline).
async fn finish_from_pod(
    run: &AgentRun,
    ctx: &Arc<Context>,
    pod: &Pod,
    out: &mut Outcome,
    forced: Option<Phase>,
) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(
        ctx.client.clone(),
        run.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    if let Some(uid) = &run.metadata.uid {
        follow::stop_follower(ctx, uid).await;
    }
    let log = artifacts::fetch_pod_log(&pods, &pod_name).await;
    let parsed = artifacts::parse_log(&log);
    let (log_ref, patch_ref) = artifacts::apply_artifacts(&ctx.client, run, &parsed).await?;
    // A short run can end before its log follower starts: publish the notable events it did not
    // report (after the last one counted in status.progress), bounded, before the final Event.
    // The Recorder folds an identical repeat into the existing Event (its count), not a new one.
    let seen = run
        .status
        .as_ref()
        .and_then(|s| s.progress.as_ref())
        .map_or(0, |p| p.events);
    let missed = parsed
        .events
        .iter()
        .filter(|e| e.seq > seen)
        .filter_map(|e| follow::event_for(&e.event));
    out.events.extend(
        missed
            .take(CATCH_UP_EVENTS)
            .map(|(t, reason, note)| (t, reason.to_string(), note)),
    );
    let state = classify_pod(pod);
    let (phase, reason, message, result) = match (forced, state) {
        (Some(Phase::Cancelled), _) => (
            Phase::Cancelled,
            "Cancelled".to_string(),
            "spec.cancel was set; the runner pod was stopped".to_string(),
            parsed.result.clone(),
        ),
        (Some(Phase::TimedOut), _) => (
            Phase::TimedOut,
            "TimedOut".to_string(),
            "spec.budget.timeout passed; the runner pod was stopped".to_string(),
            parsed.result.clone(),
        ),
        (
            _,
            PodState::Finished {
                phase,
                reason,
                message,
                result,
            },
        ) => (phase, reason, message, result.map(|r| *r).or(parsed.result.clone())),
        (_, _) => (
            Phase::Failed,
            "RunnerFailed".to_string(),
            "the runner pod ended without a result".to_string(),
            parsed.result.clone(),
        ),
    };
    if let Some(r) = result {
        out.status.usage = Some(r.usage.clone());
        out.status.result = Some(ResultStatus {
            diffstat: format!("+{}/-{}", r.insertions, r.deletions),
            run: r,
            patch_ref,
            log_ref: Some(log_ref),
        });
    } else {
        out.status.result = None;
    }
    transition(run, out, phase, &reason, &message);
    Ok(())
}

fn ignore_not_found(e: kube::Error) -> Result<()> {
    match e {
        kube::Error::Api(ae) if ae.code == 404 => Ok(()),
        e => Err(e.into()),
    }
}

/// Requeues failed reconciles with a short backoff and counts them.
pub fn error_policy(run: Arc<AgentRun>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(run = run.metadata.name.as_deref().unwrap_or_default(), error = %error, "reconcile failed");
    ctx.state.metrics.error(CONTROLLER, error.reason());
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn queue_positions() {
        let runs = vec![
            run("a", 1, Some(Phase::Running), true),
            run("b", 2, Some(Phase::Queued), false),
            run("c", 3, Some(Phase::Queued), false),
            run("done", 0, Some(Phase::Succeeded), true),
        ];
        let none = HashSet::new();
        // One slot, taken by a: b is first in line, c second.
        assert_eq!(queue_position(&runs, &none, &runs[1], "default", 1), Some(1));
        assert_eq!(queue_position(&runs, &none, &runs[2], "default", 1), Some(2));
        // Two slots: b starts, c waits first in line.
        assert_eq!(queue_position(&runs, &none, &runs[1], "default", 2), None);
        assert_eq!(queue_position(&runs, &none, &runs[2], "default", 2), Some(1));
        // b was just admitted but the cache does not show its pod yet: c still waits.
        let admitted: HashSet<String> = ["ns/b".to_string()].into();
        assert_eq!(queue_position(&runs, &admitted, &runs[2], "default", 2), Some(1));
        // A new run not in the cache yet queues by its creation time.
        let new = run("d", 0, None, false);
        assert_eq!(queue_position(&runs, &none, &new, "default", 1), Some(1));
        // Another pool's runs do not count.
        assert_eq!(queue_position(&runs, &none, &runs[1], "other", 1), None);
    }
}
