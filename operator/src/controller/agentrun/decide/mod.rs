//! The AgentRun reconcile's decisions, pure: [`decide`] maps the run, what was read of the
//! cluster ([`Facts`]) and the clock to a [`Plan`] — the status to write, the Events, and the
//! writes to make ([`Effect`]) — or to the one more fact it needs ([`Need`]). The reconcile
//! ([`super::reconcile`]) loops: resolve what is needed ([`super::resolve`]), decide again,
//! and once there is a plan, apply it ([`super::apply`]).
//!
//! Asking for facts one at a time keeps the reads lazy (a running run reads its pod, not its
//! pool, prompt or gate), while `decide` stays a function of its inputs that the table test in
//! `decide/tests.rs` drives through every phase and reason.

use super::build::{self, BuildError};
use super::gates::build_gate;
use super::prompt::PromptText;
use super::status::{classify_pod, PodState, COND_AWAITING_APPROVAL};
use super::{evidence, kueue, queue};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use paddock_crds::condition::{find_condition, TRUE};
use paddock_crds::{AgentRun, GateState, Phase, Reason, TimeoutAction, VerificationResult, POOL_WAIT_SECS};
use std::time::Duration;

/// Returns the fact in `$slot`, or asks for it.
macro_rules! need {
    ($slot:expr, $need:expr) => {
        match &$slot {
            Some(v) => v,
            None => return Step::Need($need),
        }
    };
}

mod plan;
pub mod pod;

pub use plan::*;
use pod::{end_from_pod, observe_pod, retry, verify_after_end};

/// Decides one pass over a run that has not ended (not deleted, phase not terminal).
pub fn decide(run: &AgentRun, facts: &Facts, now: &Time) -> Step {
    let mut plan = Plan::new(run);
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let attempt = facts.attempt;
    let pod_name = facts.pod_name.clone();
    let (pod, foreign) = match &facts.pod {
        Some(PodLookup::Own(p)) => (Some(p.as_ref()), false),
        Some(PodLookup::Foreign) => (None, true),
        Some(PodLookup::Absent) | None => (None, false),
    };
    // The pod the status names is gone: a cached status older than the end (or retry) this
    // operator wrote before deleting the pod would take it for lost (or cancelled before it
    // started). Ask the API server before ending anything.
    if pod.is_none() && plan.status.pod_name.is_some() && *need!(facts.moved_past, Need::MovedPast) {
        return plan.keep_cached(run);
    }
    // The gate the run waited on was decided: the AwaitingApproval condition says which gate
    // and how, before any transition below moves the run on.
    let waiting = find_condition(&plan.status.conditions, COND_AWAITING_APPROVAL).is_some_and(|c| c.status == TRUE);
    if waiting && plan.status.gate_name.is_some() {
        if let Some(gate) = need!(facts.awaited_gate, Need::AwaitedGate) {
            super::status::set_gate_decided(&mut plan.status, gate, run.metadata.generation, now);
        }
    }

    // Cancel: stop the pod (after keeping its log) and end the run.
    if run.spec.cancel {
        return match pod {
            Some(p) => {
                let step = end_from_pod(run, facts, p, plan, now, Some(Phase::Cancelled));
                with_effect(step, Effect::DeletePod(pod_name))
            }
            None => plan.to(
                run,
                now,
                Phase::Cancelled,
                Reason::Cancelled,
                "spec.cancel was set before the run started",
            ),
        };
    }

    // The agent's pod ended and its change is being verified: the checks' pod, then the end.
    if plan.status.result.is_some()
        && plan
            .status
            .verification
            .as_ref()
            .is_some_and(|v| v.result == VerificationResult::Running && v.attempt == attempt)
        && pod.is_none_or(|p| matches!(classify_pod(p), PodState::Finished { .. }))
    {
        let read = need!(facts.verify, Need::Verify);
        return verify_after_end(run, plan, read, now);
    }
    if let Some(pod) = pod {
        return observe_pod(run, facts, pod, plan, now);
    }
    if plan.status.pod_name.is_some() {
        // Deleted, or lost with its node: what the log follower read is all that is left.
        let message = format!("runner pod {pod_name} disappeared before the run ended");
        let kept = need!(facts.followed_log, Need::FollowedLog).clone();
        if retry(
            run,
            &mut plan,
            attempt,
            Reason::PodLost.as_str(),
            &message,
            None,
            kept,
            now,
        ) {
            return plan.done();
        }
        return plan.to(run, now, Phase::Failed, Reason::PodLost, &message);
    }
    // A retry waits out its backoff before it queues again.
    if let Some(at) = plan.status.next_attempt_at.clone() {
        // The retried attempt's pod is deleted after the status write; a delete that failed
        // then is done again here (the cache still shows the pod, not going away).
        if facts.retried_pod_alive {
            if let Some(prev) = plan.status.attempts.last() {
                plan.effects.push(Effect::DeletePodAfterStatus(prev.pod_name.clone()));
            }
        }
        let wait_ms = at.0.as_millisecond() - now.0.as_millisecond();
        if wait_ms > 0 {
            return plan.requeue(Duration::from_millis(wait_ms as u64)).done();
        }
    }
    start(run, facts, plan, now, ns, foreign)
}

/// Before a pod exists: pool, `spec.promptFrom`, BeforeStart gate, resume source, the pod's
/// spec, egress, Kueue, the pool's queue, then `spec.prompt` and the pod (warm or cold).
fn start(run: &AgentRun, facts: &Facts, mut plan: Plan, now: &Time, ns: &str, foreign: bool) -> Step {
    let attempt = facts.attempt;
    let pool_name = build::pool_name(run).to_string();
    let Some(live_pool) = need!(facts.pool, Need::Pool) else {
        // GitOps may apply the run before its pool: wait, but not forever (counted from the
        // run's creation, so a run whose pool is deleted after that fails at once).
        let waited = run
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| secs(now) - secs(t));
        if waited >= POOL_WAIT_SECS {
            return plan.to(
                run,
                now,
                Phase::Failed,
                Reason::PoolNotFound,
                &format!("RunnerPool {pool_name} does not exist in namespace {ns} (waited {waited}s)"),
            );
        }
        let message = format!(
            "RunnerPool {pool_name} does not exist in namespace {ns}; the run fails if it does not appear within {POOL_WAIT_SECS}s of the run's creation"
        );
        let after = Duration::from_secs((POOL_WAIT_SECS - waited).clamp(1, 30) as u64);
        return plan
            .requeue(after)
            .to(run, now, Phase::Pending, Reason::PoolNotFound, &message);
    };
    // A started run keeps the policy it was admitted under: a retry is built from the pool
    // spec its snapshot recorded, not from the pool as edited since.
    let pool = evidence::pool_as_admitted(live_pool, plan.status.policy.as_ref());
    // `spec.promptFrom`'s key is read first (a missing key is waited for before anything else);
    // `spec.prompt` only by the writes that carry it (the cache keeps none; [`Need::SpecPrompt`]).
    let from_config_map = match &run.spec.prompt_from {
        None => None,
        Some(from) => match need!(facts.prompt_from, Need::Prompt) {
            Some(v) => Some(PromptText::from_config_map(v.clone())),
            None => {
                let message = format!("ConfigMap {} has no key {}", from.name, from.key);
                return plan.requeue(Duration::from_secs(15)).to(
                    run,
                    now,
                    Phase::Pending,
                    Reason::PromptNotFound,
                    &message,
                );
            }
        },
    };

    // Approval before start.
    if let Some(policy) = run.spec.approvals.as_ref().and_then(|a| a.before_start.as_ref()) {
        let (gname, found) = need!(facts.start_gate, Need::StartGate);
        plan.status.gate_name = Some(gname.clone());
        let Some(gate) = found else {
            // The gate shows the approvers `spec.prompt`; one from a ConfigMap is named.
            let prompt = match from_config_map {
                Some(_) => None,
                None => Some(need!(facts.spec_prompt, Need::SpecPrompt)),
            };
            plan.effects
                .push(Effect::CreateGate(Box::new(build_gate(run, policy, gname, prompt))));
            return gate_pending(run, plan, now, gname);
        };
        // Decided between the awaited gate's read and this one: the condition says how from
        // this read, the one the run acts on (else it would say GateClosed; seen by make envtest).
        super::status::set_gate_decided(&mut plan.status, gate, run.metadata.generation, now);
        let approve_on_expiry = gate.spec.on_timeout == Some(TimeoutAction::Approve);
        match gate.status.as_ref().and_then(|s| s.state) {
            Some(GateState::Approved) => {}
            Some(GateState::Expired) if approve_on_expiry => {}
            // Withdrawn only for a run that ended or is gone; should this run still see it, it
            // was not approved.
            Some(GateState::Withdrawn) => {
                let message = format!("ApprovalGate {gname} was withdrawn without a decision");
                return plan.to(run, now, Phase::Rejected, Reason::GateWithdrawn, &message);
            }
            Some(GateState::Expired) => {
                let message = format!("ApprovalGate {gname} expired without a decision (onTimeout Reject)");
                return plan.to(run, now, Phase::Rejected, Reason::GateExpired, &message);
            }
            Some(GateState::Rejected) => {
                let by = gate
                    .status
                    .as_ref()
                    .and_then(|s| s.decided_by.clone())
                    .unwrap_or_default();
                let message = format!("ApprovalGate {gname} was rejected by {by}");
                return plan.to(run, now, Phase::Rejected, Reason::Rejected, &message);
            }
            _ => return gate_pending(run, plan, now, gname),
        }
    }

    // Resume: the earlier run must have ended and saved its CLI session.
    let resume = match &run.spec.resume_from {
        None => None,
        Some(_) => match need!(facts.resume, Need::Resume) {
            ResumeSource::Ready { session_cm, revision } => Some((session_cm, revision)),
            ResumeSource::Wait(reason, message) => {
                return plan
                    .requeue(Duration::from_secs(10))
                    .to(run, now, Phase::Pending, *reason, message)
            }
            ResumeSource::Fail(reason, message) => return plan.to(run, now, Phase::Failed, *reason, message),
        },
    };

    // Build the pod (this also checks the run against the pool, so a refused override fails
    // before the run waits anywhere).
    let mut pod = match build::build_pod(run, &pool, attempt, &facts.verdict_key) {
        Ok(mut p) => {
            if let Some((cm, revision)) = resume {
                super::resume::apply_resume(&mut p, cm, revision.as_deref());
            }
            p
        }
        Err(e) => {
            let reason = match e {
                BuildError::OverrideNotAllowed { .. } => Reason::OverrideNotAllowed,
                BuildError::BranchNotAllowed { .. } => Reason::BranchNotAllowed,
                _ => Reason::InvalidSpec,
            };
            return plan.to(run, now, Phase::Failed, reason, &e.to_string());
        }
    };

    // The pod's only way out: the pool's egress gateway.
    let uplink = match need!(facts.egress, Need::Egress) {
        EgressFacts::Ready(u) => u.clone(),
        EgressFacts::NameTaken(why) => {
            return plan
                .requeue(Duration::from_secs(30))
                .to(run, now, Phase::Pending, Reason::EgressNameTaken, why)
        }
        EgressFacts::NotReady => {
            let message = format!(
                "the egress gateway of pool {pool_name} (Deployment {}) has no available pod yet",
                paddock_crds::egress::gateway_name(&pool_name)
            );
            return plan.requeue(Duration::from_secs(2)).to(
                run,
                now,
                Phase::Pending,
                Reason::WaitingForEgressGateway,
                &message,
            );
        }
    };
    build::apply_uplink(&mut pod, &uplink);

    // Kueue: a run with a LocalQueue starts only once Kueue admits its Workload.
    let mut warm_allowed = true;
    if let Some(queue) = kueue::queue_name(run) {
        if !facts.kueue {
            let message = format!(
                "the run asks for Kueue LocalQueue {queue} (label {}) but the operator runs without --kueue (chart: kueue.enabled=true)",
                kueue::QUEUE_LABEL
            );
            return plan.to(run, now, Phase::Failed, Reason::KueueNotEnabled, &message);
        }
        let waiting = |mut plan: Plan, message: &str| {
            plan.status.queue_position = None;
            let message = format!(
                "Workload {} in LocalQueue {queue}: {message}",
                kueue::workload_name(run)
            );
            // The Workload's changes wake the run (owned watch); this is a safety net.
            plan.requeue(Duration::from_secs(30))
                .to(run, now, Phase::Queued, Reason::WaitingForKueue, &message)
        };
        match need!(facts.workload, Need::Workload) {
            None => {
                plan.effects.push(Effect::CreateWorkload {
                    queue: queue.to_string(),
                    pod: Box::new(pod),
                });
                return waiting(plan, kueue::CREATED_MESSAGE);
            }
            Some(kueue::Admission::Waiting(message)) => return waiting(plan, message),
            Some(kueue::Admission::Admitted(flavors)) => {
                let placement = need!(facts.flavors, Need::Flavors(flavors.clone()));
                let before = pod
                    .spec
                    .as_ref()
                    .map(|s| (s.node_selector.clone(), s.tolerations.clone()));
                kueue::apply_placement(placement, &mut pod);
                let after = pod
                    .spec
                    .as_ref()
                    .map(|s| (s.node_selector.clone(), s.tolerations.clone()));
                warm_allowed = before == after;
            }
        }
    }

    // Queue: respect the pool's maxConcurrentRuns, in creation order.
    if let Some(max) = pool.spec.max_concurrent_runs {
        let q = need!(facts.queue, Need::Queue);
        if !q.ready {
            return plan.requeue(Duration::from_secs(1)).done();
        }
        let policy = pool.spec.queue.as_ref().map(|q| q.policy).unwrap_or_default();
        if let Some(position) = queue::queue_position(&q.runs, &q.admitted, run, &pool_name, max, policy) {
            plan.status.queue_position = Some(position);
            let message = format!(
                "position {position} in the {} queue of RunnerPool {pool_name} (maxConcurrentRuns {max})",
                match policy {
                    paddock_crds::QueuePolicy::Fifo => "FIFO",
                    paddock_crds::QueuePolicy::Priority => "Priority",
                }
            );
            return plan
                .requeue(QUEUE_RECHECK)
                .to(run, now, Phase::Queued, Reason::WaitingForCapacity, &message);
        }
    }

    // The cold pod's name is taken by a pod this run does not own: wait, saying so (creating
    // it would patch that pod instead).
    if foreign {
        let message = format!(
            "pod {} belongs to another object (an earlier run of the same name, deleted with --cascade=orphan?); delete it and this run starts",
            facts.pod_name
        );
        return plan
            .requeue(Duration::from_secs(30))
            .to(run, now, Phase::Pending, Reason::PodNameTaken, &message);
    }

    // The pod starts now: its prompt is read (one GET of the run, for `spec.prompt`).
    let prompt = match from_config_map {
        Some(p) => p,
        None => need!(facts.spec_prompt, Need::SpecPrompt).clone(),
    };
    let admit = pool.spec.max_concurrent_runs.is_some();
    let start = StartPod::new(pod, prompt, pool, warm_allowed, uplink, admit);
    if plan.status.policy.is_none() {
        plan.status.policy = Some(evidence::snapshot(run, &start.pool, start.pod(), now.clone()));
    }
    plan.effects.push(Effect::StartPod(Box::new(start)));
    plan.done()
}

fn gate_pending(run: &AgentRun, plan: Plan, now: &Time, gname: &str) -> Step {
    let message = format!("waiting for a decision on ApprovalGate {gname} (stage BeforeStart)");
    plan.to(run, now, Phase::AwaitingApproval, Reason::GatePending, &message)
}

/// How a pod was started, as [`Effect::StartPod`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Started {
    /// A warm pod of the pool was claimed.
    Claimed(String),
    /// The cold pod was applied; why no warm pod was used, when the pool has them.
    Created(String, Option<String>),
}

/// The status once the pod started ([`Effect::StartPod`]): phase `Running` with reason
/// `PodClaimed` or `PodCreated`, the pod's name, the attempt, the start time, and the
/// timeout as the next look. Pure.
pub fn started(run: &AgentRun, plan: &mut Plan, attempt: u32, pool_name: &str, how: Started, now: &Time) {
    let (pod_name, reason, message) = match how {
        Started::Claimed(name) => {
            plan.status.warm_start = Some(true);
            let message = format!("claimed warm pod {name} of pool {pool_name}");
            (name, Reason::PodClaimed, message)
        }
        Started::Created(name, why) => {
            plan.status.warm_start = Some(false);
            let why = why.map(|w| format!(" (cold start: {w})")).unwrap_or_default();
            let message = format!("created runner pod {name} in pool {pool_name}{why}");
            (name, Reason::PodCreated, message)
        }
    };
    plan.status.pod_name = Some(pod_name);
    plan.status.attempt = Some(attempt);
    plan.status.next_attempt_at = None;
    plan.status.queue_position = None;
    plan.status.start_time = Some(now.clone());
    plan.transition(run, now, Phase::Running, reason.as_str(), &message);
    plan.action = Action::requeue(Duration::from_secs(
        build::timeout_secs(run).unwrap_or(build::DEFAULT_TIMEOUT_SECS),
    ));
}

#[cfg(test)]
mod tests;
