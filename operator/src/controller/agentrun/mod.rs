//! The AgentRun controller. One reconcile reads like a table of contents:
//! finished? → cancel? → resolve (pool, prompt) → approval gate → queue admission →
//! build + apply the pod → status from the pod → artifacts → patch status on change.

pub mod approvals;
pub mod artifacts;
pub mod build;
pub mod evidence;
pub mod follow;
pub mod gateway;
pub mod kueue;
pub mod pullrequest;
pub mod status;
pub mod verify;
pub mod warm;

use crate::context::{Context, MANAGER_AGENTRUN};
use crate::controller::agentrunset;
use crate::error::{Error, Result};
use build::{build_gate, build_pod, gate_name, pod_name, pool_name, timeout_secs};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use paddock_crds::{
    AgentRun, AgentRunStatus, ApprovalGate, GateState, Phase, QueuePolicy, ResultStatus, RunnerPool, VerificationResult,
};
use status::{classify_pod, format_duration, set_phase, PodState};
use std::sync::Arc;
use std::time::Duration;

/// Controller name used in metrics and logs.
pub const CONTROLLER: &str = "agentrun";
/// How often a queued run re-checks its pool's capacity (from the cache, no API calls).
const QUEUE_RECHECK: Duration = Duration::from_secs(2);
/// How long after its creation a run waits for a missing RunnerPool before it fails with reason
/// `PoolNotFound` (seconds); a pool deleted later fails its waiting runs at once.
pub const POOL_WAIT_SECS: i64 = 300;
/// Grace the operator gives the kubelet's own `activeDeadlineSeconds` before it ends a run as
/// TimedOut itself.
const DEADLINE_GRACE_SECS: i64 = 15;

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Most runner events turned into Kubernetes Events when a run ends without its follower
/// having reported them.
const CATCH_UP_EVENTS: usize = 20;

/// Default wait before a retry (doubled after each one), when `spec.retry.backoff` is unset.
const DEFAULT_BACKOFF_SECS: u64 = 10;
/// Longest wait before a retry.
const MAX_BACKOFF_SECS: u64 = 600;

/// What one pass decided: the status to write, Events to publish, a pod to delete once the
/// status is written, and when to look again.
struct Outcome {
    status: AgentRunStatus,
    events: Vec<(EventType, String, String)>,
    /// A retried attempt's pod: deleted only after the status recording the attempt's end is
    /// written, so its deletion (a pod watch event) never wakes a reconcile that finds the pod
    /// going away while the API server still shows the attempt running.
    delete_pod: Option<String>,
    action: Action,
}

/// Reconciles one AgentRun.
///
/// # Errors
/// Transient API errors; the controller retries them with backoff ([`error_policy`]).
#[tracing::instrument(
    name = "reconcile",
    skip_all,
    err(Display),
    fields(
        controller = CONTROLLER,
        namespace = run.metadata.namespace.as_deref().unwrap_or_default(),
        name = run.metadata.name.as_deref().unwrap_or_default(),
        run = run.metadata.name.as_deref().unwrap_or_default(),
    )
)]
pub async fn reconcile(run: Arc<AgentRun>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.state.metrics.reconcile(CONTROLLER);
    let ns = run
        .metadata
        .namespace
        .clone()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = run.metadata.name.clone().ok_or(Error::MissingField("metadata.name"))?;
    // Deleted while holding the evidence finalizer: archive what there is, then let it go.
    if run.metadata.deletion_timestamp.is_some() {
        if let Some(uid) = &run.metadata.uid {
            follow::stop_follower(&ctx, uid).await;
        }
        return evidence::on_delete(&run, &ctx).await;
    }
    let old = run.status.clone().unwrap_or_default();
    if old.phase.is_some_and(Phase::is_terminal) {
        if let Some(uid) = &run.metadata.uid {
            follow::stop_follower(&ctx, uid).await;
        }
        // Idempotent: covers an operator that stopped between the run's end and this.
        finish_workload(&ctx, &run, &old).await?;
        // The pull request from the pushed branch (spec.output.pullRequest), then the evidence
        // and the TTL.
        let pr_retry = pullrequest::ensure(&run, &ctx).await?;
        let settled = evidence::settle(&run, &ctx).await?;
        return Ok(pr_retry.map(Action::requeue).unwrap_or(settled));
    }
    evidence::ensure_finalizer(&run, &ctx).await?;

    let mut out = Outcome {
        status: old.clone(),
        events: vec![],
        delete_pod: None,
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
    if out.status.phase.is_some_and(Phase::is_terminal) {
        finish_workload(&ctx, &run, &out.status).await?;
    }
    if let Some(pod_name) = &out.delete_pod {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        pods.delete(pod_name, &DeleteParams::default())
            .await
            .map(|_| ())
            .or_else(ignore_not_found)?;
    }
    Ok(out.action)
}

/// Releases the Kueue quota of an ended run (its Workload `Finished`).
async fn finish_workload(ctx: &Arc<Context>, run: &AgentRun, st: &AgentRunStatus) -> Result<()> {
    if !ctx.kueue || kueue::queue_name(run).is_none() {
        return Ok(());
    }
    let (ok, message) = paddock_crds::condition::find_condition(&st.conditions, status::COND_SUCCEEDED)
        .map(|c| (c.status == "True", format!("{}: {}", c.reason, c.message)))
        .unwrap_or((false, "the run ended".into()));
    kueue::finish(ctx, run, ok, &message).await
}

/// Moves `out.status` to `phase` and queues an Event when the phase or reason changed.
/// A terminal transition happens at `status.completionTime` when it is already known (the
/// pod's end, see [`pod_finished_at`]), so a reconcile that finishes the run again from a stale
/// cache writes the same times instead of later ones.
fn transition(run: &AgentRun, out: &mut Outcome, phase: Phase, reason: &str, message: &str) {
    let before = (out.status.phase, succeeded_reason(&out.status));
    let at = match &out.status.completion_time {
        Some(t) if phase.is_terminal() => t.clone(),
        _ => now(),
    };
    set_phase(&mut out.status, phase, reason, message, run.metadata.generation, &at);
    if phase.is_terminal() && out.status.completion_time.is_none() {
        out.status.completion_time = Some(at);
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
    let attempt = out.status.attempt.unwrap_or(1);
    // The current attempt's pod: the one recorded (created or claimed from the warm pool), else
    // the name a cold pod gets.
    let pod_name = out.status.pod_name.clone().unwrap_or_else(|| pod_name(run, attempt));
    // The cache first; a miss (a pod not created yet, or created moments ago and not seen yet)
    // asks the API server, so a pod is never taken for lost because the cache lags.
    let cached = ctx
        .pods
        .as_ref()
        .and_then(|s| s.get(&ObjectRef::<Pod>::new(&pod_name).within(ns)));
    let pod = match cached {
        Some(p) => Some(Pod::clone(&p)),
        None => pods.get_opt(&pod_name).await?,
    };
    // A pod of that name that this run does not own (an earlier run of the same name, deleted
    // with --cascade=orphan) is not this run's: adopting it would skip this run's approvals.
    let (pod, foreign_pod) = match pod {
        Some(p) if !owned_by_run(&p, run) => (None, Some(pod_name.clone())),
        other => (other, None),
    };
    // The pod the status names is gone: a cached status older than the end (or retry) this
    // operator wrote before deleting the pod would take it for lost (or cancelled before it
    // started). Ask the API server before ending anything.
    if pod.is_none() && out.status.pod_name.is_some() && moved_past(run, ctx, &pod_name).await? {
        keep_cached(run, out);
        return Ok(());
    }

    // The gate the run waited on was decided: the AwaitingApproval condition says which gate
    // and how, before any transition below moves the run on.
    settle_awaited_gate(run, ctx, ns, out).await?;

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

    // The agent's pod ended and its change is being verified (issue 19): the checks' pod,
    // then the run's end.
    if out.status.result.is_some()
        && out
            .status
            .verification
            .as_ref()
            .is_some_and(|v| v.result == VerificationResult::Running && v.attempt == attempt)
        && pod
            .as_ref()
            .is_none_or(|p| matches!(classify_pod(p), PodState::Finished { .. }))
    {
        return verify_after_end(run, ctx, out).await;
    }
    if let Some(pod) = pod {
        return observe_pod(run, ctx, &pods, &pod, out).await;
    }
    if out.status.pod_name.is_some() {
        // Deleted, or lost with its node: what the log follower read is all that is left.
        let message = format!("runner pod {pod_name} disappeared before the run ended");
        let kept = ctx.take_follow_log(&format!("{ns}/{pod_name}"));
        if retry(run, ctx, out, attempt, "PodLost", &message, None, kept).await? {
            return Ok(());
        }
        transition(run, out, Phase::Failed, "PodLost", &message);
        return Ok(());
    }
    // A retry waits out its backoff before it queues again.
    if let Some(at) = &out.status.next_attempt_at {
        // The retried attempt's pod is deleted after the status write; a delete that failed
        // then is done again here (the cache still shows the pod, not going away).
        if let (Some(store), Some(prev)) = (&ctx.pods, out.status.attempts.last()) {
            if store
                .get(&ObjectRef::<Pod>::new(&prev.pod_name).within(ns))
                .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
            {
                out.delete_pod = Some(prev.pod_name.clone());
            }
        }
        let wait_ms = at.0.as_millisecond() - now().0.as_millisecond();
        if wait_ms > 0 {
            out.action = Action::requeue(Duration::from_millis(wait_ms as u64));
            return Ok(());
        }
    }

    // Resolve: the pool and the prompt must exist.
    let pool_name = pool_name(run).to_string();
    let pools: Api<RunnerPool> = Api::namespaced(ctx.client.clone(), ns);
    let Some(live_pool) = pools.get_opt(&pool_name).await? else {
        // GitOps may apply the run before its pool: wait, but not forever (counted from the
        // run's creation, so a run whose pool is deleted after that fails at once).
        let waited = run
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| now().0.as_second() - t.0.as_second());
        if waited >= POOL_WAIT_SECS {
            transition(
                run,
                out,
                Phase::Failed,
                "PoolNotFound",
                &format!("RunnerPool {pool_name} does not exist in namespace {ns} (waited {waited}s)"),
            );
            return Ok(());
        }
        transition(
            run,
            out,
            Phase::Pending,
            "PoolNotFound",
            &format!(
                "RunnerPool {pool_name} does not exist in namespace {ns}; the run fails if it does not appear within {POOL_WAIT_SECS}s of the run's creation"
            ),
        );
        out.action = Action::requeue(Duration::from_secs((POOL_WAIT_SECS - waited).clamp(1, 30) as u64));
        return Ok(());
    };
    // A started run keeps the policy it was admitted under: a retry is built from the pool
    // spec its snapshot recorded, not from the pool as edited since. The pool's own objects
    // (its egress gateway) follow the live pool.
    let pool = evidence::pool_as_admitted(&live_pool, out.status.policy.as_ref());
    let mut prompt_text = run.spec.prompt.clone().unwrap_or_default();
    if let Some(from) = &run.spec.prompt_from {
        let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
        let value = cms
            .get_opt(&from.name)
            .await?
            .and_then(|cm| cm.data)
            .and_then(|mut d| d.remove(&from.key));
        if let Some(v) = value {
            prompt_text = v;
        } else {
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
        let mut gname = gate_name(run);
        let mut found = gates.get_opt(&gname).await?;
        // A gate of an earlier run of the same name (deleted with --cascade=orphan) decides
        // nothing for this one: this run asks under a name of its own.
        if found.as_ref().is_some_and(|g| !build::owned_by(g, run)) {
            gname = build::of_uid(&gname, run);
            found = gates.get_opt(&gname).await?;
        }
        let gate = match found {
            Some(g) => g,
            // Created, never re-applied: humans own spec.decisions.
            None => match gates
                .create(
                    &PostParams {
                        field_manager: Some(MANAGER_AGENTRUN.into()),
                        ..Default::default()
                    },
                    &build_gate(run, policy, &gname),
                )
                .await
            {
                Ok(g) => g,
                Err(kube::Error::Api(e)) if e.code == 409 => gates.get(&gname).await?,
                Err(e) => return Err(e.into()),
            },
        };
        out.status.gate_name = Some(gname.clone());
        // Decided between settle_awaited_gate's read and this one: the condition says how from
        // this read, the one the run acts on (else it said GateClosed; seen by make envtest).
        status::set_gate_decided(&mut out.status, &gate, run.metadata.generation, &now());
        let approve_on_expiry = gate.spec.on_timeout == Some(paddock_crds::TimeoutAction::Approve);
        match gate.status.as_ref().and_then(|s| s.state) {
            Some(GateState::Approved) => {}
            Some(GateState::Expired) if approve_on_expiry => {}
            // Withdrawn only for a run that ended or is gone; should this run still see it, it
            // was not approved.
            Some(GateState::Withdrawn) => {
                transition(
                    run,
                    out,
                    Phase::Rejected,
                    "GateWithdrawn",
                    &format!("ApprovalGate {gname} was withdrawn without a decision"),
                );
                return Ok(());
            }
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

    // Resume: the earlier run must have ended and saved its CLI session.
    let resume = match &run.spec.resume_from {
        None => None,
        Some(src) => match resume_source(run, ctx, ns, &src.name).await? {
            ResumeSource::Ready { session_cm, revision } => Some((session_cm, revision)),
            ResumeSource::Wait(reason, message) => {
                transition(run, out, Phase::Pending, reason, &message);
                out.action = Action::requeue(Duration::from_secs(10));
                return Ok(());
            }
            ResumeSource::Fail(reason, message) => {
                transition(run, out, Phase::Failed, reason, &message);
                return Ok(());
            }
        },
    };

    // Build the pod (this also checks the run against the pool, so a refused override fails
    // before the run waits anywhere).
    let mut pod = match build_pod(run, &pool, attempt, &ctx.verdict_key()) {
        Ok(mut p) => {
            if let Some((cm, revision)) = &resume {
                build::apply_resume(&mut p, cm, revision.as_deref());
            }
            p
        }
        Err(e @ build::BuildError::OverrideNotAllowed { .. }) => {
            transition(run, out, Phase::Failed, "OverrideNotAllowed", &e.to_string());
            return Ok(());
        }
        Err(e @ build::BuildError::BranchNotAllowed { .. }) => {
            transition(run, out, Phase::Failed, "BranchNotAllowed", &e.to_string());
            return Ok(());
        }
        Err(e) => {
            transition(run, out, Phase::Failed, "InvalidSpec", &e.to_string());
            return Ok(());
        }
    };

    // The pod's only way out: the pool's egress gateway (applied here too, so the first run of a
    // new pool need not wait for the pool's own reconcile).
    use crate::controller::runnerpool::egress::{reconcile_egress_state, Egress};
    let uplink = match reconcile_egress_state(&live_pool, ctx).await? {
        Egress::Ready(u) => Some(u),
        Egress::NameTaken(why) => {
            transition(run, out, Phase::Pending, "EgressNameTaken", &why);
            out.action = Action::requeue(Duration::from_secs(30));
            return Ok(());
        }
        Egress::NotReady => None,
    };
    let Some(uplink) = uplink else {
        transition(
            run,
            out,
            Phase::Pending,
            "WaitingForEgressGateway",
            &format!(
                "the egress gateway of pool {pool_name} (Deployment {}) has no available pod yet",
                paddock_crds::egress::gateway_name(&pool_name)
            ),
        );
        out.action = Action::requeue(Duration::from_secs(2));
        return Ok(());
    };
    build::apply_uplink(&mut pod, &uplink);

    // Kueue: a run with a LocalQueue starts only once Kueue admits its Workload.
    let mut warm_allowed = true;
    if let Some(queue) = kueue::queue_name(run) {
        if !ctx.kueue {
            transition(
                run,
                out,
                Phase::Failed,
                "KueueNotEnabled",
                &format!(
                    "the run asks for Kueue LocalQueue {queue} (label {}) but the operator runs without --kueue (chart: kueue.enabled=true)",
                    kueue::QUEUE_LABEL
                ),
            );
            return Ok(());
        }
        match kueue::admission(ctx, run, queue, &pod).await? {
            kueue::Admission::Waiting(message) => {
                out.status.queue_position = None;
                transition(
                    run,
                    out,
                    Phase::Queued,
                    "WaitingForKueue",
                    &format!(
                        "Workload {} in LocalQueue {queue}: {message}",
                        kueue::workload_name(run)
                    ),
                );
                // The Workload's changes wake the run (owned watch); this is a safety net.
                out.action = Action::requeue(Duration::from_secs(30));
                return Ok(());
            }
            kueue::Admission::Admitted(flavors) => {
                let before = pod
                    .spec
                    .as_ref()
                    .map(|s| (s.node_selector.clone(), s.tolerations.clone()));
                kueue::apply_flavors(ctx, &flavors, &mut pod).await?;
                let after = pod
                    .spec
                    .as_ref()
                    .map(|s| (s.node_selector.clone(), s.tolerations.clone()));
                warm_allowed = before == after;
            }
        }
    }

    // Queue: respect the pool's maxConcurrentRuns, in creation order. The count comes from the
    // controller's cache, which a (re)started operator fills in one go when its initial list is
    // done (kube-runtime's reflector applies InitApply events at InitDone) while reconciles of
    // the listed runs already start: counting before that sees an empty pool and admits every
    // waiting run (the crash drill saw 8 pods in a pool of 4).
    if pool.spec.max_concurrent_runs.is_some() && ctx.runs.wait_until_ready().await.is_err() {
        out.action = Action::requeue(Duration::from_secs(1));
        return Ok(());
    }
    // Serialize admission per pool only where it matters: a limit to keep, or warm pods to
    // claim one at a time. Other pools create their pods concurrently.
    let pool_lock = ctx.pool_lock(&format!("{ns}/{pool_name}"));
    let _admitting = if serializes_admission(&pool) {
        Some(pool_lock.lock().await)
    } else {
        None
    };
    let key = key_of(run);
    if let Some(max) = pool.spec.max_concurrent_runs {
        let mut admissions = ctx.admissions.lock().await;
        let runs = ctx.runs.state();
        admissions.retain(|k| {
            runs.iter()
                .any(|r| key_of(r) == *k && r.status.as_ref().is_none_or(|s| s.pod_name.is_none()))
        });
        let policy = pool.spec.queue.as_ref().map(|q| q.policy).unwrap_or_default();
        if let Some(position) = queue_position(&runs, &admissions, run, &pool_name, max, policy) {
            drop(admissions);
            out.status.queue_position = Some(position);
            transition(
                run,
                out,
                Phase::Queued,
                "WaitingForCapacity",
                &format!(
                    "position {position} in the {} queue of RunnerPool {pool_name} (maxConcurrentRuns {max})",
                    match policy {
                        QueuePolicy::Fifo => "FIFO",
                        QueuePolicy::Priority => "Priority",
                    }
                ),
            );
            out.action = Action::requeue(QUEUE_RECHECK);
            return Ok(());
        }
    }

    // The cold pod's name is taken by a pod this run does not own: wait, saying so (creating
    // it would patch that pod instead).
    if let Some(taken) = &foreign_pod {
        transition(
            run,
            out,
            Phase::Pending,
            "PodNameTaken",
            &format!(
                "pod {taken} belongs to another object (an earlier run of the same name, deleted with --cascade=orphan?); delete it and this run starts"
            ),
        );
        out.action = Action::requeue(Duration::from_secs(30));
        return Ok(());
    }

    // Claim a warm pod, or create this one.
    let claimed = if warm_allowed {
        warm::claim(ctx, run, &pool, attempt, &prompt_text, &uplink).await?
    } else {
        warm::Claimed::Cold(Some("Kueue's flavor places the pod on other nodes".into()))
    };
    let (pod_name, reason, message) = match claimed {
        warm::Claimed::Pod(name) => {
            out.status.warm_start = Some(true);
            let message = format!("claimed warm pod {name} of pool {pool_name}");
            (name, "PodClaimed", message)
        }
        warm::Claimed::Cold(why) => {
            let mut value = serde_json::to_value(&pod)?;
            value["apiVersion"] = "v1".into();
            value["kind"] = "Pod".into();
            pods.patch(
                &pod_name,
                &PatchParams::apply(MANAGER_AGENTRUN).force(),
                &Patch::Apply(&value),
            )
            .await?;
            out.status.warm_start = Some(false);
            let why = why.map(|w| format!(" (cold start: {w})")).unwrap_or_default();
            let message = format!("created runner pod {pod_name} in pool {pool_name}{why}");
            (pod_name, "PodCreated", message)
        }
    };
    if pool.spec.max_concurrent_runs.is_some() {
        // Counted until the cache shows the pod name (pruned by the next admission above).
        ctx.admissions.lock().await.insert(key);
    }
    if out.status.policy.is_none() {
        out.status.policy = Some(evidence::snapshot(run, &pool, &pod, now()));
    }
    out.status.pod_name = Some(pod_name);
    out.status.attempt = Some(attempt);
    out.status.next_attempt_at = None;
    out.status.queue_position = None;
    out.status.start_time = Some(now());
    transition(run, out, Phase::Running, reason, &message);
    out.action = Action::requeue(Duration::from_secs(
        timeout_secs(run).unwrap_or(build::DEFAULT_TIMEOUT_SECS),
    ));
    Ok(())
}

/// While the run waits on a gate (condition `AwaitingApproval` True, `status.gateName`): once
/// that gate of this run is no longer pending, records how it was decided
/// ([`status::set_gate_decided`]).
async fn settle_awaited_gate(run: &AgentRun, ctx: &Arc<Context>, ns: &str, out: &mut Outcome) -> Result<()> {
    let waiting = paddock_crds::condition::find_condition(&out.status.conditions, status::COND_AWAITING_APPROVAL)
        .is_some_and(|c| c.status == paddock_crds::condition::TRUE);
    let Some(gname) = out.status.gate_name.clone().filter(|_| waiting) else {
        return Ok(());
    };
    let gates: Api<ApprovalGate> = Api::namespaced(ctx.client.clone(), ns);
    if let Some(gate) = gates.get_opt(&gname).await?.filter(|g| build::owned_by(g, run)) {
        status::set_gate_decided(&mut out.status, &gate, run.metadata.generation, &now());
    }
    Ok(())
}

/// Where a run's `spec.resumeFrom` stands.
enum ResumeSource {
    /// Resume from this session ConfigMap, on this revision (the earlier run's pushed commit).
    Ready {
        session_cm: String,
        revision: Option<String>,
    },
    /// Not yet: (reason, message).
    Wait(&'static str, String),
    /// Never: (reason, message).
    Fail(&'static str, String),
}

/// Looks up the run `name` that `run` resumes. It must exist (a missing one is waited for up to
/// [`POOL_WAIT_SECS`] from `run`'s creation, as GitOps may apply both at once), have ended,
/// use the same agent, and have saved its session (`status.result.sessionRef`).
async fn resume_source(run: &AgentRun, ctx: &Arc<Context>, ns: &str, name: &str) -> Result<ResumeSource> {
    let runs: Api<AgentRun> = Api::namespaced(ctx.client.clone(), ns);
    let Some(src) = runs.get_opt(name).await? else {
        let waited = run
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| now().0.as_second() - t.0.as_second());
        let message = format!("spec.resumeFrom names AgentRun {name}, which does not exist in namespace {ns}");
        return Ok(if waited >= POOL_WAIT_SECS {
            ResumeSource::Fail("ResumeNotPossible", format!("{message} (waited {waited}s)"))
        } else {
            ResumeSource::Wait(
                "WaitingForResumeSource",
                format!(
                    "{message}; the run fails if it does not appear within {POOL_WAIT_SECS}s of the run's creation"
                ),
            )
        });
    };
    if src.spec.agent.name != run.spec.agent.name {
        return Ok(ResumeSource::Fail(
            "ResumeNotPossible",
            format!(
                "AgentRun {name} ran agent {}, this run agent {}: a session resumes in the same CLI only",
                src.spec.agent.name.as_str(),
                run.spec.agent.name.as_str()
            ),
        ));
    }
    let status = src.status.clone().unwrap_or_default();
    let ended = matches!(
        status.phase,
        Some(Phase::Succeeded | Phase::Failed | Phase::Cancelled | Phase::TimedOut | Phase::Rejected)
    );
    if !ended {
        return Ok(ResumeSource::Wait(
            "WaitingForResumeSource",
            format!(
                "waiting for AgentRun {name} (phase {}) to end before resuming its session",
                status
                    .phase
                    .map(|p| format!("{p:?}"))
                    .unwrap_or_else(|| "unknown".into())
            ),
        ));
    }
    let Some(result) = status.result else {
        return Ok(ResumeSource::Fail(
            "ResumeNotPossible",
            format!("AgentRun {name} ended without a result, so no session was saved"),
        ));
    };
    let Some(session_cm) = result.session_ref else {
        return Ok(ResumeSource::Fail(
            "ResumeNotPossible",
            format!("AgentRun {name} saved no CLI session (its agent reported none, or it was too large)"),
        ));
    };
    let revision = if result.run.pushed {
        result.run.commit.clone()
    } else {
        None
    };
    Ok(ResumeSource::Ready { session_cm, revision })
}

/// What the pod cache keeps of a runner pod: metadata without managed fields and without the
/// warm claim annotation (up to 64 KiB), and the status; not the spec, which the reconciler
/// never reads from a pod.
pub fn slim_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    if let Some(a) = pod.metadata.annotations.as_mut() {
        a.remove(paddock_crds::ANNOTATION_CLAIM);
    }
    pod.spec = None;
}

/// Whether runs of `pool` are admitted one at a time (under the pool's lock): only when the
/// pool has a `maxConcurrentRuns` to keep or warm pods to claim. Other pools' runs create their
/// pods concurrently.
pub fn serializes_admission(pool: &RunnerPool) -> bool {
    pool.spec.max_concurrent_runs.is_some() || pool.spec.warm.as_ref().is_some_and(|w| w.replicas > 0)
}

/// The runs a change of `pool` wakes: its runs (same namespace, `spec.runnerPoolRef` or the
/// `default` pool) that have not ended and have no pod yet, pending or queued. Running runs are
/// left alone: a pool's status changes about once a second under load, and waking every running
/// run with it made 30 reconciles per run in the benchmark (10 without).
pub fn runs_waiting_for_pool(runs: &[Arc<AgentRun>], pool: &RunnerPool) -> Vec<ObjectRef<AgentRun>> {
    let pname = pool.metadata.name.as_deref().unwrap_or_default();
    runs.iter()
        .filter(|r| r.metadata.namespace == pool.metadata.namespace && pool_name(r) == pname)
        .filter(|r| !r.status.as_ref().and_then(|s| s.phase).is_some_and(Phase::is_terminal))
        .filter(|r| r.status.as_ref().is_none_or(|s| s.pod_name.is_none()))
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
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
/// waiting runs are ordered by creation time, then name (`FIFO`), or first by `spec.priority`,
/// highest first (`Priority`).
pub fn queue_position(
    runs: &[Arc<AgentRun>],
    admitted: &std::collections::HashSet<String>,
    run: &AgentRun,
    pool: &str,
    max: u32,
    policy: QueuePolicy,
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
        // Runs still waiting for Kueue's admission are not in the pool's line yet.
        .filter(|r| {
            r.status.as_ref().is_none_or(|s| {
                paddock_crds::condition::find_condition(&s.conditions, status::COND_QUEUED)
                    .is_none_or(|c| c.reason != "WaitingForKueue")
            })
        })
        .filter(|r| {
            let phase = r.status.as_ref().and_then(|s| s.phase);
            let gated = r.spec.approvals.as_ref().is_some_and(|a| a.before_start.is_some());
            matches!(phase, Some(Phase::Queued)) || (!gated && matches!(phase, None | Some(Phase::Pending)))
        })
        .cloned()
        .collect();
    let key = |r: &AgentRun| {
        let priority = match policy {
            QueuePolicy::Fifo => 0,
            QueuePolicy::Priority => r.spec.priority.unwrap_or(0),
        };
        (
            std::cmp::Reverse(priority),
            r.metadata.creation_timestamp.clone().map(|t| t.0),
            r.metadata.name.clone(),
        )
    };
    // The run as this reconcile sees it (its priority may have changed since the cache saw it).
    waiting.retain(|r| r.metadata.uid != run.metadata.uid);
    waiting.push(Arc::new(run.clone()));
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
    // A pod created (or claimed) just before the operator crashed, before the status said so:
    // adopted here with its attempt (the pod's label; the crash drill found runs without it).
    if out.status.attempt.is_none() {
        out.status.attempt = Some(attempt_label(pod).unwrap_or_else(|| attempt_of(&pod_name)));
        // Likewise whether it was a warm start (a claimed warm pod keeps its `paddock.dev/warm`
        // label): the same status also comes from a cache older than the pod's creation (a
        // short run ending before the watch brought that write), which would drop it.
        if out.status.warm_start.is_none() {
            let warm = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(paddock_crds::LABEL_WARM));
            out.status.warm_start = Some(warm.is_some_and(|w| w == "claimed"));
        }
    }
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
            // A held push's verification (issue 19): its pod's result, once it has one.
            if verify::holds_push(run) && state == PodState::Running {
                held_verification(run, ctx, out).await?;
                // Until its result is in, look again: a verification pod made by someone else
                // carries no label the pod watch sees, so no event would wake this run.
                if out
                    .status
                    .verification
                    .as_ref()
                    .is_none_or(|v| v.result == VerificationResult::Running)
                {
                    out.action = Action::requeue(std::time::Duration::from_secs(5));
                }
            }
            // A set's candidate (issue 19): its push waits for the set's selection.
            let selection = if verify::holds_push(run) && state == PodState::Running {
                agentrunset::selection_of(ctx, run).await?
            } else {
                agentrunset::Selection::NotACandidate
            };
            // In-run approvals: hand decided verdicts to the pod; show a pending gate.
            let pending = if approvals::has_in_run_gates(run) && state == PodState::Running {
                approvals::sync_verdicts(ctx, run, pod, out.status.verification.as_ref(), &selection).await?
            } else {
                None
            };
            let verified = out.status.verification.as_ref().is_some_and(|v| {
                v.attempt == out.status.attempt.unwrap_or(1) && v.result != VerificationResult::Running
            });
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
            } else if selection == agentrunset::Selection::Waiting && verified {
                let (set, _) = agentrunset::owner_set(run).unwrap_or_default();
                set_phase(
                    &mut out.status,
                    Phase::Running,
                    "AwaitingSelection",
                    &format!(
                        "its change's verification has ended; its push waits for AgentRunSet {set} to select a winner"
                    ),
                    run.metadata.generation,
                    &now(),
                );
            } else if matches!(&state, PodState::Starting { message } if message == "pod Pending")
                && out
                    .status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Running" && matches!(c.reason.as_str(), "PodCreated" | "PodClaimed"))
            {
                // A pod just created or claimed is Pending until the kubelet takes it up: the
                // PodCreated/PodClaimed condition says as much (a status write fewer per run).
                // Waiting containers (image pulls, ...) still show as PodStarting.
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
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    // The cache may not show yet the end (or retry) this operator wrote moments ago (a
    // reconcile woken by that very write, or by the retried pod's deletion): ask the API server
    // before doing the ending's work again.
    if moved_past(run, ctx, &pod_name).await? {
        keep_cached(run, out);
        return Ok(());
    }
    if let Some(uid) = &run.metadata.uid {
        follow::stop_follower(ctx, uid).await;
    }
    let log = artifacts::fetch_pod_log(&pods, &pod_name).await;
    let kept = ctx.take_follow_log(&format!("{ns}/{pod_name}"));
    // The gateway (trusted) states the branch's facts, the patch and what the model endpoint
    // answered; the agent's log gives the events (and its own report, which is not trusted for
    // those).
    let gateway_log = artifacts::with_termination_facts(
        artifacts::parse_gateway_log(&artifacts::fetch_gateway_log(&pods, &pod_name).await),
        pod,
    );
    // An attempt that ended for a reason outside the agent's control may be retried.
    if forced.is_none() {
        let (reason, message, exit_code) = match classify_pod(pod) {
            _ if pod.metadata.deletion_timestamp.is_some() => (
                "PodDeleted".to_string(),
                format!("runner pod {pod_name} was deleted while the run was going on"),
                None,
            ),
            PodState::Finished {
                phase: Phase::Failed,
                reason,
                message,
                result,
            } => (reason, message, result.and_then(|r| r.exit_code)),
            _ => (String::new(), String::new(), None),
        };
        let (reason, message) = artifacts::confirmed_reason(reason, message, &gateway_log);
        let text = attempt_log_text(&log, kept);
        if retryable(&reason, &message)
            // The pod's attempt label (a warm pod's name says nothing of it), else its name.
            && retry(run, ctx, out, attempt_label(pod).unwrap_or_else(|| attempt_of(&pod_name)), &reason, &message, exit_code, text).await?
        {
            return Ok(());
        }
    }
    let mut parsed = artifacts::parse_log(&log);
    parsed.patch_gz = gateway_log.branch().patch_gz.clone();
    let refs = artifacts::apply_artifacts(&ctx.client, run, &parsed).await?;
    artifacts::apply_transcript(&ctx.client, run, &gateway_log).await?;
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
    // Someone else deleted the pod (not a cancel or our deadline): say so, whatever the runner
    // reported when it was stopped.
    let (phase, reason, message) =
        if forced.is_none() && pod.metadata.deletion_timestamp.is_some() && phase != Phase::Succeeded {
            (
                Phase::Failed,
                "PodDeleted".to_string(),
                format!("runner pod {pod_name} was deleted while the run was going on"),
            )
        } else {
            let (reason, message) = artifacts::confirmed_reason(reason, message, &gateway_log);
            (phase, reason, message)
        };
    let result = result.map(|r| artifacts::with_trusted_facts(r, &gateway_log));
    let message = match &result {
        Some(r) if phase == Phase::Succeeded && reason == "Succeeded" => status::succeeded_message(r),
        _ => message,
    };
    if let Some(r) = result {
        // The gateway's metering is authoritative for tokens and USD; the CLI's count of
        // turns is kept when the gateway saw none.
        out.status.usage = Some(match &gateway_log.usage {
            Some(g) if g.turns > 0 => paddock_crds::events::Usage {
                turns: r.usage.turns.max(g.turns),
                ..g.clone()
            },
            _ => r.usage.clone(),
        });
        out.status.result = Some(ResultStatus {
            diffstat: format!("+{}/-{}", r.insertions, r.deletions),
            run: r,
            patch_ref: refs.patch,
            log_ref: Some(refs.log),
            session_ref: refs.session,
            pull_request: None,
        });
    } else {
        out.status.result = None;
    }
    // Verification (issue 19): a change that ended well is verified before the run ends; a
    // required verification that did not pass fails the run (its push was held and refused).
    let (phase, reason, message) = match (forced, run.spec.verify.as_ref()) {
        (None, Some(spec)) => {
            let attempt = out.status.attempt.unwrap_or(1);
            let current = out.status.verification.clone().filter(|v| v.attempt == attempt);
            match current {
                None if phase == Phase::Succeeded => {
                    let facts = gateway_log.branch().facts.clone().unwrap_or_default();
                    let inputs = verify::inputs(
                        &facts,
                        gateway_log.branch().patch_gz.as_deref(),
                        out.status.result.as_ref().and_then(|r| r.patch_ref.clone()),
                    );
                    let mut v = verify::started(attempt, &inputs.base, None, now());
                    v.commit = inputs.commit.clone();
                    v.diffstat = inputs.diffstat.clone();
                    v.patch_sha256 = inputs.patch_sha256.clone();
                    match inputs.refuse {
                        // Too large to verify: never `Passed` (checking part of a change would
                        // approve the rest unseen).
                        Some(why) => {
                            v.result = VerificationResult::Error;
                            v.reason = "PatchTooLarge".into();
                            v.message = why;
                            conclude_verification(run, out, v);
                        }
                        None => start_verifying(run, out, v),
                    }
                    return Ok(());
                }
                Some(v) if v.result == VerificationResult::Running && phase == Phase::Succeeded => {
                    start_verifying(run, out, v);
                    return Ok(());
                }
                // The run ended otherwise while its held push was being verified: the
                // verification ends with it.
                Some(mut v) if v.result == VerificationResult::Running => {
                    v.result = VerificationResult::Error;
                    v.reason = "VerificationPodFailed".into();
                    v.message = format!("the run ended ({reason}) before its verification did");
                    let t = now();
                    verify::set_condition(&mut out.status, &v, run.metadata.generation, &t);
                    out.status.verification = Some(v);
                    (phase, reason, message)
                }
                Some(v)
                    if spec.required
                        && !matches!(v.result, VerificationResult::Passed | VerificationResult::Running) =>
                {
                    (
                        Phase::Failed,
                        "VerificationFailed".to_string(),
                        verification_message(&v),
                    )
                }
                _ => (phase, reason, message),
            }
        }
        _ => (phase, reason, message),
    };
    // A set's candidate whose push the set refused (another won): its work is done and kept.
    let (phase, reason, message) = if forced.is_none() && phase == Phase::Rejected && agentrunset::is_candidate(run) {
        match agentrunset::selection_of(ctx, run).await? {
            agentrunset::Selection::Loser(why) => (
                Phase::Succeeded,
                "NotSelected".to_string(),
                format!("not pushed: {why}; the change is kept (kubectl paddock diff)"),
            ),
            _ => (phase, reason, message),
        }
    } else {
        (phase, reason, message)
    };
    if forced.is_none() && out.status.completion_time.is_none() {
        out.status.completion_time = pod_finished_at(pod);
    }
    transition(run, out, phase, &reason, &message);
    Ok(())
}

/// `verification <reason>: <message> (<summary>)`.
fn verification_message(v: &paddock_crds::VerificationStatus) -> String {
    let summary = v.summary.as_deref().map(|s| format!(" ({s})")).unwrap_or_default();
    format!("verification {}: {}{summary}", v.reason, v.message)
}

/// The run's agent is done and its change goes to verification: phase `Running`, reason
/// `Verifying`, condition `Verified` Unknown; the next reconcile creates the checks' pod.
fn start_verifying(run: &AgentRun, out: &mut Outcome, v: paddock_crds::VerificationStatus) {
    let t = now();
    verify::set_condition(&mut out.status, &v, run.metadata.generation, &t);
    out.status.verification = Some(v);
    out.status.completion_time = None;
    transition(
        run,
        out,
        Phase::Running,
        "Verifying",
        "the agent finished; its change is being verified (spec.verify)",
    );
    out.action = Action::requeue(Duration::from_secs(1));
}

/// Ends a run whose verification is done: condition `Verified`, then `Failed` with reason
/// `VerificationFailed` when it was required and did not pass, else `Succeeded` (the agent's
/// work ended well, or verification would not have run).
fn conclude_verification(run: &AgentRun, out: &mut Outcome, v: paddock_crds::VerificationStatus) {
    let t = now();
    verify::set_condition(&mut out.status, &v, run.metadata.generation, &t);
    out.status.verification = Some(v.clone());
    let required = run.spec.verify.as_ref().is_some_and(|s| s.required);
    let what = verification_message(&v);
    let (phase, reason, message) = if required && v.result != VerificationResult::Passed {
        (Phase::Failed, "VerificationFailed", what)
    } else {
        let done = out
            .status
            .result
            .as_ref()
            .map(|r| status::succeeded_message(&r.run))
            .unwrap_or_default();
        (Phase::Succeeded, "Succeeded", format!("{done}; {what}"))
    };
    out.status.completion_time = None;
    transition(run, out, phase, reason, &message);
}

/// Whether a verification started at `v.start_time` is past its deadline: the checks'
/// timeout, the clone allowance and two minutes for the pod to be scheduled.
fn verification_overdue(run: &AgentRun, v: &paddock_crds::VerificationStatus) -> bool {
    let limit = (verify::timeout_secs(run) + verify::CLONE_ALLOWANCE_SECS + 120) as i64;
    v.start_time
        .as_ref()
        .is_some_and(|s| now().0.as_second() - s.0.as_second() > limit)
}

/// Records the verification pod's end into `v` when `pod` is the operator's (its spec is the
/// one built from `inputs`, [`verify::spec_mismatch`]), else fails `v`. `Ok(true)` when `v` is
/// final.
async fn read_verification_pod(
    run: &AgentRun,
    ctx: &Arc<Context>,
    pod: &Pod,
    inputs: &verify::Inputs,
    v: &mut paddock_crds::VerificationStatus,
) -> Result<bool> {
    if verify::outcome(pod).is_none() {
        return Ok(false);
    }
    match verify::runner_pod_for(ctx, run, v.attempt).await? {
        Ok(runner) => {
            let expected = verify::build_pod(run, runner, v.attempt, inputs);
            if let Some(why) = verify::spec_mismatch(pod, &expected) {
                v.result = VerificationResult::Error;
                v.reason = "VerificationPodFailed".into();
                v.message = format!(
                    "pod {} is not the operator's verification pod: {why}",
                    verify::pod_name(run, v.attempt)
                );
                return Ok(true);
            }
        }
        // The pool is gone or its egress not ready: the expected spec cannot be rebuilt now.
        Err(_) if !verification_overdue(run, v) => return Ok(false),
        Err(why) => {
            v.result = VerificationResult::Error;
            v.reason = "VerificationPodFailed".into();
            v.message = format!("the verification pod cannot be checked: {why}");
            return Ok(true);
        }
    }
    verify::finish(ctx, run, pod, v, &now()).await
}

/// Checks `v`'s protected paths on the stored patch, which must be the gateway's (its digest);
/// `true` when that decided `v` (a protected path changed, or the patch was altered).
async fn protected_or_altered(
    run: &AgentRun,
    ctx: &Arc<Context>,
    patch_cm: Option<&str>,
    v: &mut paddock_crds::VerificationStatus,
) -> Result<bool> {
    let text = match patch_cm {
        Some(cm) => match verify::read_patch(ctx, run, cm, v.patch_sha256.as_deref()).await? {
            Some(Ok(t)) => Some(t),
            Some(Err(_)) | None if v.patch_sha256.is_some() => {
                v.result = VerificationResult::Error;
                v.reason = "PatchChanged".into();
                v.message = format!(
                    "ConfigMap {} does not hold the patch the pod gateway produced (changed or deleted since it was stored)",
                    patch_cm.unwrap_or_default()
                );
                return Ok(true);
            }
            _ => None,
        },
        None => None,
    };
    Ok(verify::check_protected(run, text.as_deref(), v))
}

/// Verification after the agent's pod ended: checks protected paths, creates the checks' pod,
/// records its result, then ends the run (`Failed`/`VerificationFailed` when required and not
/// passed). Past its deadline (an unschedulable pod, say) it ends `Error`/`VerificationTimedOut`.
async fn verify_after_end(run: &AgentRun, ctx: &Arc<Context>, out: &mut Outcome) -> Result<()> {
    let Some(mut v) = out.status.verification.clone() else {
        return Ok(());
    };
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let name = verify::pod_name(run, v.attempt);
    let patch_cm = v
        .patch_sha256
        .as_ref()
        .and_then(|_| out.status.result.as_ref().and_then(|r| r.patch_ref.clone()));
    let inputs = verify::Inputs {
        base: v.base_commit.clone(),
        commit: v.commit.clone(),
        patch_cm: patch_cm.clone(),
        patch_sha256: v.patch_sha256.clone(),
        refuse: None,
        diffstat: v.diffstat.clone(),
        usage: None,
    };
    let done = if protected_or_altered(run, ctx, patch_cm.as_deref(), &mut v).await? {
        true
    } else {
        match pods.get_opt(&name).await? {
            Some(p) => read_verification_pod(run, ctx, &p, &inputs, &mut v).await?,
            None if v.pod_name.is_some() => {
                v.result = VerificationResult::Error;
                v.reason = "VerificationPodFailed".into();
                v.message = format!("the verification pod {name} disappeared before it ended");
                true
            }
            None => {
                if let Ok(runner) = verify::runner_pod_for(ctx, run, v.attempt).await? {
                    verify::create_pod(ctx, &verify::build_pod(run, runner, v.attempt, &inputs)).await?;
                    v.pod_name = Some(name.clone());
                }
                false
            }
        }
    };
    let done = done || {
        if verification_overdue(run, &v) {
            v.result = VerificationResult::Error;
            v.reason = "VerificationTimedOut".into();
            v.message = format!("the verification did not end within {}s", verify::timeout_secs(run));
            let _ = pods.delete(&name, &DeleteParams::default()).await;
            true
        } else {
            false
        }
    };
    if !done {
        let t = now();
        verify::set_condition(&mut out.status, &v, run.metadata.generation, &t);
        out.status.verification = Some(v);
        out.action = Action::requeue(Duration::from_secs(30));
        return Ok(());
    }
    conclude_verification(run, out, v);
    Ok(())
}

/// While a held push waits (issue 19): records the result of the attempt's verification pod
/// (created by the log follower when the gateway asked to push) into `status.verification`.
/// The commit it names, the base and the patch digest come from the gateway's own log, and
/// the pod counts only if its spec is the operator's.
async fn held_verification(run: &AgentRun, ctx: &Arc<Context>, out: &mut Outcome) -> Result<()> {
    let attempt = out.status.attempt.unwrap_or(1);
    let current = out.status.verification.clone().filter(|v| v.attempt == attempt);
    if current
        .as_ref()
        .is_some_and(|v| v.result != VerificationResult::Running)
    {
        return Ok(());
    }
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let name = verify::pod_name(run, attempt);
    let Some(p) = pods.get_opt(&name).await? else {
        return Ok(());
    };
    // Read the gateway's review only when there is something to record.
    if current.is_some() && verify::outcome(&p).is_none() {
        return Ok(());
    }
    let Some(runner_pod) = out.status.pod_name.clone() else {
        return Ok(());
    };
    let Some((inputs, _)) = verify::held_inputs(ctx, run, &runner_pod).await? else {
        return Ok(());
    };
    // The log follower stores the gateway's patch when it reads the push request: until then
    // there is nothing to check the pod's result against (a deleted ConfigMap waits too, and
    // the push with it: nothing passes unchecked).
    if let Some(cm) = inputs.patch_cm.as_deref() {
        if verify::read_patch(ctx, run, cm, None).await?.is_none() {
            return Ok(());
        }
    }
    let t = now();
    let mut v = current.unwrap_or_else(|| verify::started(attempt, &inputs.base, Some(name.clone()), t.clone()));
    v.base_commit = inputs.base.clone();
    v.commit = inputs.commit.clone();
    v.diffstat = inputs.diffstat.clone();
    v.patch_sha256 = inputs.patch_sha256.clone();
    if !protected_or_altered(run, ctx, inputs.patch_cm.as_deref(), &mut v).await? {
        read_verification_pod(run, ctx, &p, &inputs, &mut v).await?;
    }
    // The agent is done: its metered usage is final (a set's CheapestVerified reads it before
    // the run ends).
    if v.result != VerificationResult::Running && out.status.usage.is_none() {
        out.status.usage = inputs.usage.clone();
    }
    verify::set_condition(&mut out.status, &v, run.metadata.generation, &t);
    out.status.verification = Some(v);
    Ok(())
}

/// Whether the API server shows `run` past its attempt on pod `pod_name`: the run ended, or
/// that attempt is recorded in `status.attempts` (it was retried, and the operator deletes its
/// pod). The controller's cache can lag behind the status this operator wrote moments ago,
/// while the pod cache already shows the pod going away; ending the attempt again from the
/// cached status would record the deletion (`PodDeleted`, `PodLost`) over the attempt's real
/// cause.
///
/// # Errors
/// Transient API errors reading the run.
async fn moved_past(run: &AgentRun, ctx: &Arc<Context>, pod_name: &str) -> Result<bool> {
    let runs: Api<AgentRun> = Api::namespaced(
        ctx.client.clone(),
        run.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let fresh = runs.get_opt(run.metadata.name.as_deref().unwrap_or_default()).await?;
    Ok(fresh
        .and_then(|r| r.status)
        .is_some_and(|s| s.phase.is_some_and(Phase::is_terminal) || s.attempts.iter().any(|a| a.pod_name == pod_name)))
}

/// Leaves the run as cached: nothing to write, not even its observedGeneration (a newer one
/// would make the reconcile apply this stale status over what the API server has), no Event.
/// The watch brings the newer run, and another reconcile, soon.
fn keep_cached(run: &AgentRun, out: &mut Outcome) {
    out.status = run.status.clone().unwrap_or_default();
    out.events.clear();
}

/// When the pod's containers last finished (the latest `finishedAt` of a terminated container),
/// if they all did.
fn pod_finished_at(pod: &Pod) -> Option<Time> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let mut latest: Option<Time> = None;
    for s in statuses {
        let t = s.state.as_ref()?.terminated.as_ref()?.finished_at.clone()?;
        if latest.as_ref().is_none_or(|l| t.0 > l.0) {
            latest = Some(t);
        }
    }
    latest
}

/// The log kept for an attempt that is retried: what the API server still has of the pod's
/// containers (`fetched`), unless the log follower read more of it live (`followed`) — a pod
/// deleted or lost can take its agent container's log with it while the clone's remains. Pure.
pub fn attempt_log_text(fetched: &str, followed: Option<String>) -> Option<String> {
    match followed {
        Some(f) if f.trim().len() > fetched.trim().len() => Some(f),
        _ if !fetched.trim().is_empty() => Some(fetched.to_string()),
        followed => followed,
    }
}

/// Whether an attempt that ended with `reason` (and `message`) is worth another attempt: the
/// pod was deleted, evicted or lost, its image could not be pulled, or the agent failed right
/// after the model endpoint answered 429/5xx (`ModelUnavailable`, seen by the gateway). Failures
/// the agent or the runner declared are not. Pure.
pub fn retryable(reason: &str, message: &str) -> bool {
    match reason {
        "PodDeleted" | "PodLost" | "PodEvicted" | "ModelUnavailable" => true,
        "PodStartFailed" => message.contains("ErrImagePull") || message.contains("ImagePullBackOff"),
        _ => false,
    }
}

/// Seconds to wait before attempt `next` (2, 3, …): `spec.retry.backoff` (default 10 s) doubled
/// for each earlier retry, at most 10 minutes. Pure.
pub fn backoff_secs(run: &AgentRun, next: u32) -> u64 {
    let base = run
        .spec
        .retry
        .as_ref()
        .and_then(|r| r.backoff.as_deref())
        .and_then(build::parse_duration_secs)
        .unwrap_or(DEFAULT_BACKOFF_SECS);
    base.saturating_mul(1u64 << next.saturating_sub(2).min(10))
        .min(MAX_BACKOFF_SECS)
}

/// Whether `pod` belongs to `run`: an owner reference with the run's UID (set on cold pods and
/// on claimed warm pods).
fn owned_by_run(pod: &Pod, run: &AgentRun) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| Some(&o.uid) == run.metadata.uid.as_ref())
}

/// The attempt in a runner pod's `paddock.dev/attempt` label (cold pods and claimed warm pods
/// carry it).
fn attempt_label(pod: &Pod) -> Option<u32> {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(paddock_crds::LABEL_ATTEMPT))
        .and_then(|a| a.parse().ok())
}

/// The attempt number in a pod name `<run>-<attempt>` (1 when it has none).
fn attempt_of(pod_name: &str) -> u32 {
    pod_name.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(1)
}

/// Ends `attempt` and schedules the next one when `spec.retry.limit` allows: keeps the
/// attempt's log (`log_text`) as `<run>-log-<attempt>`, records it in `status.attempts`, has
/// its pod deleted (after the status write, see `Outcome::delete_pod`) and moves the run back
/// to `Pending` (reason `Retrying`) until the backoff passes. Returns whether it did.
#[allow(clippy::too_many_arguments)]
async fn retry(
    run: &AgentRun,
    ctx: &Arc<Context>,
    out: &mut Outcome,
    attempt: u32,
    reason: &str,
    message: &str,
    exit_code: Option<i32>,
    log_text: Option<String>,
) -> Result<bool> {
    let limit = run.spec.retry.as_ref().map_or(0, |r| r.limit);
    if attempt > limit || out.status.attempts.iter().any(|a| a.attempt == attempt) {
        return Ok(false);
    }
    if let Some(uid) = &run.metadata.uid {
        follow::stop_follower(ctx, uid).await;
    }
    let pod_name = out.status.pod_name.clone().unwrap_or_else(|| pod_name(run, attempt));
    let log_ref = match log_text {
        Some(text) => {
            Some(artifacts::apply_attempt_log(&ctx.client, run, attempt, &artifacts::parse_log(&text)).await?)
        }
        None => None,
    };
    out.status.attempts.push(paddock_crds::AttemptStatus {
        attempt,
        pod_name: pod_name.clone(),
        start_time: out.status.start_time.clone(),
        completion_time: Some(now()),
        reason: reason.to_string(),
        message: paddock_crds::events::truncate(message, 1024),
        exit_code,
        log_ref,
    });
    out.delete_pod = Some(pod_name);
    let next = attempt + 1;
    let wait = backoff_secs(run, next);
    out.status.attempt = Some(next);
    out.status.pod_name = None;
    out.status.start_time = None;
    out.status.result = None;
    out.status.next_attempt_at = Some(Time(
        k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(wait as i64),
    ));
    transition(
        run,
        out,
        Phase::Pending,
        "Retrying",
        &format!(
            "attempt {attempt} ended ({reason}: {message}); attempt {next} of {} starts in {wait}s",
            limit + 1
        ),
    );
    out.action = Action::requeue(Duration::from_secs(wait));
    Ok(true)
}

fn ignore_not_found(e: kube::Error) -> Result<()> {
    match e {
        kube::Error::Api(ae) if ae.code == 404 => Ok(()),
        e => Err(e.into()),
    }
}

/// Requeues failed reconciles with a short backoff and counts them.
/// (The error itself is logged once, with the reconcile span's fields, by `reconcile`'s
/// `#[instrument(err)]`.)
pub fn error_policy(_run: Arc<AgentRun>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.state.metrics.error(CONTROLLER, error.reason());
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_pod_cache_keeps_metadata_and_status_only() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "r-1",
                "labels": {"paddock.dev/run": "r"},
                "annotations": {paddock_crds::ANNOTATION_CLAIM: "e30=", "paddock.dev/decisions": "[]"},
                "managedFields": [{"manager": "paddock.dev/agentrun", "operation": "Apply"}],
            },
            "spec": {"containers": [{"name": "agent", "image": "i"}]},
            "status": {"phase": "Running"},
        }))
        .unwrap();
        slim_pod(&mut pod);
        assert!(pod.spec.is_none());
        assert!(pod.metadata.managed_fields.is_none());
        let annotations = pod.metadata.annotations.clone().unwrap();
        assert!(!annotations.contains_key(paddock_crds::ANNOTATION_CLAIM));
        assert_eq!(annotations.get("paddock.dev/decisions").map(String::as_str), Some("[]"));
        assert_eq!(
            pod.metadata.labels.unwrap().get("paddock.dev/run").map(String::as_str),
            Some("r")
        );
        assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Running"));
    }

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
        // Waiting containers are news: PodStarting, with their reasons, is written.
        let other = reconcile_fresh_pod(serde_json::json!({"phase": "Pending", "containerStatuses": [
            {"name": "agent", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ContainerCreating"}}}]}))
        .await;
        assert_eq!(
            other,
            ["PATCH /apis/paddock.dev/v1alpha1/namespaces/ns/agentruns/r/status"]
        );
    }

    #[test]
    fn only_pools_with_a_limit_or_warm_pods_admit_one_run_at_a_time() {
        let pool = |extra: serde_json::Value| {
            let mut spec = serde_json::json!({"template": {"image": "localhost/paddock/runner:dev"}});
            spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            RunnerPool::new("p", serde_json::from_value(spec).unwrap())
        };
        assert!(!serializes_admission(&pool(serde_json::json!({}))));
        assert!(serializes_admission(&pool(serde_json::json!({"maxConcurrentRuns": 4}))));
        assert!(serializes_admission(&pool(
            serde_json::json!({"warm": {"replicas": 2}})
        )));
        assert!(!serializes_admission(&pool(
            serde_json::json!({"warm": {"replicas": 0}})
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
}
