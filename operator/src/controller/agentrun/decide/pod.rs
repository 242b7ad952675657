//! Decisions once the run has a pod: while it runs (phase, gates, the deadline), when it ends
//! (result, retry, verification, the final reason), and while its change is verified. Pure.

use super::plan::{with_effect, Effect, Facts, HeldRead, Need, Plan, Step, VerifyRead};
use super::plan::{CATCH_UP_EVENTS, DEADLINE_GRACE_SECS, DEFAULT_BACKOFF_SECS, MAX_BACKOFF_SECS};
use crate::controller::agentrun::approvals::{self, PlanVerdict};
use crate::controller::agentrun::artifacts::{self, PatchLayout};
use crate::controller::agentrun::status::{
    agent_started, attempt_label, attempt_of, classify_pod, set_phase, starting_normally, succeeded_message, PodState,
    COND_RUNNING,
};
use crate::controller::agentrun::{build, follow, verify};
use crate::controller::agentrunset::{self, Selection};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use paddock_crds::{AgentRun, Phase, Reason, ResultStatus, VerificationResult, VerificationStatus};
use std::time::Duration;

/// How often a run whose held push waits for its verification looks again: a verification pod
/// made by someone else carries no label the pod watch sees, so no event would wake the run.
pub const HELD_VERIFICATION_RECHECK: Duration = Duration::from_secs(5);
/// How often a run with an approval request whose gate cannot be raised yet looks again.
pub const REQUEST_RECHECK: Duration = Duration::from_secs(2);
/// How long a run's agent runs before the status says so (condition `Running`, reason
/// `AgentRunning`): a run that ends sooner gets its end written instead, one status write
/// fewer. As long as the log follower's first progress write waits.
pub const AGENT_RUNNING_AFTER: Duration = follow::PROGRESS_INTERVAL;

/// The run's pod exists and belongs to it.
pub(super) fn observe_pod(run: &AgentRun, facts: &Facts, pod: &Pod, mut plan: Plan, now: &Time) -> Step {
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    // A pod the cached status does not name: the pass that started it wrote a status the cache
    // may not show yet (its pod's watch event can come first). Ask the API server before
    // adopting the pod over that status.
    let named = run.status.as_ref().and_then(|s| s.pod_name.as_deref()) == Some(pod_name.as_str());
    if !named && *need!(facts.pod_recorded, Need::PodRecorded) {
        return plan.keep_cached(run);
    }
    plan.status.pod_name = Some(pod_name.clone());
    // A pod created (or claimed) just before the operator crashed, before the status said so:
    // adopted here with its attempt (the pod's label; the crash drill found runs without it).
    if plan.status.attempt.is_none() {
        plan.status.attempt = Some(attempt_label(pod).unwrap_or_else(|| attempt_of(&pod_name)));
        // Likewise whether it was a warm start (a claimed warm pod keeps its `paddock.dev/warm`
        // label): the same status also comes from a cache older than the pod's creation.
        if plan.status.warm_start.is_none() {
            let warm = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(paddock_crds::LABEL_WARM));
            plan.status.warm_start = Some(warm.is_some_and(|w| w == "claimed"));
        }
    }
    if plan.status.start_time.is_none() {
        plan.status.start_time = pod.metadata.creation_timestamp.clone();
    }
    let state = classify_pod(pod);
    if matches!(state, PodState::Finished { .. }) {
        return end_from_pod(run, facts, pod, plan, now, None);
    }
    let running = state == PodState::Running;
    if running {
        plan.effects.push(Effect::Follow(pod_name.clone()));
    }
    let (reason, message) = match &state {
        PodState::Starting { message } => (Reason::PodStarting, message.clone()),
        _ => (Reason::AgentRunning, "the agent is running".to_string()),
    };
    let holds = verify::holds_push(run) && running;
    // A held push's verification (issue 19): its pod's result, once it has one.
    let mut recheck = None;
    if holds {
        let held: &HeldRead = need!(facts.held, Need::Held);
        record_held(run, &mut plan, held, now);
        if plan
            .status
            .verification
            .as_ref()
            .is_none_or(|v| v.result == VerificationResult::Running)
        {
            recheck = Some(HELD_VERIFICATION_RECHECK);
        }
    }
    // A set's candidate (issue 19): its push waits for the set's selection.
    let selection = if holds {
        need!(facts.selection, Need::Selection).clone()
    } else {
        Selection::NotACandidate
    };
    // The runner's approval requests (read by the log follower): their gates are raised, and
    // looked at again soon while one cannot be yet (the gateway reviews a push within a second).
    if running {
        // Only this pod's: a lost attempt's requests are not the new attempt's to ask.
        let requests: Vec<_> = need!(facts.requests, Need::Requests)
            .iter()
            .filter(|(pod, _)| *pod == pod_name)
            .collect();
        for (pod, request) in &requests {
            plan.effects.push(Effect::RaiseRequest {
                pod: pod.clone(),
                request: Box::new(request.clone()),
            });
        }
        if !requests.is_empty() {
            recheck = Some(recheck.map_or(REQUEST_RECHECK, |r| r.min(REQUEST_RECHECK)));
        }
    }
    // Plan review (issue 22): a rejected plan ends the run now, whatever the pod does next.
    if running && approvals::plan_review(run) {
        if let PlanVerdict::Rejected { .. } = need!(facts.plan, Need::Plan) {
            plan.effects
                .retain(|e| !matches!(e, Effect::Follow(_) | Effect::RaiseRequest { .. }));
            let step = end_from_pod(run, facts, pod, plan, now, Some(Phase::Rejected));
            return with_effect(step, Effect::DeletePod(pod_name));
        }
    }
    // In-run approvals: decided verdicts are handed to the pod; a pending gate shows.
    let pending = if crate::controller::agentrun::approvals::has_in_run_gates(run) && running {
        need!(facts.in_run_gate, Need::InRunGates).as_ref()
    } else {
        None
    };
    let verified = plan
        .status
        .verification
        .as_ref()
        .is_some_and(|v| v.attempt == plan.status.attempt.unwrap_or(1) && v.result != VerificationResult::Running);
    if let Some(g) = pending {
        let gname = g.metadata.name.clone().unwrap_or_default();
        let what = g.spec.request.summary.lines().next().unwrap_or_default().to_string();
        plan.status.gate_name = Some(gname.clone());
        let message = format!(
            "waiting for a decision on ApprovalGate {gname} (stage {}): {}",
            g.spec.stage.as_str(),
            paddock_crds::events::truncate(&what, 200)
        );
        plan.transition(
            run,
            now,
            Phase::AwaitingApproval,
            Reason::GatePending.as_str(),
            &message,
        );
    } else if selection == Selection::Waiting && verified {
        let (set, _) = agentrunset::owner_set(run).unwrap_or_default();
        let message =
            format!("its change's verification has ended; its push waits for AgentRunSet {set} to select a winner");
        set_phase(
            &mut plan.status,
            Phase::Running,
            Reason::AwaitingSelection.as_str(),
            &message,
            run.metadata.generation,
            now,
        );
    } else if let Some(since) = just_started(&plan, pod, &state) {
        // The pod was just created or claimed (condition Running, reason PodCreated or
        // PodClaimed) and starts as it should: the condition says as much. Its agent running
        // is written once it ran AGENT_RUNNING_AFTER; a run that ends sooner has its end
        // written instead (one status write per real transition: the pod's start, the end).
        // Waiting containers that are news (an image pull back-off) still show as PodStarting.
        if running {
            // Without the container's start, since the pod's creation or claim (a later pass
            // must see the same start, or it would wait for ever).
            let at = agent_started(pod, Some(&since)).unwrap_or(since);
            let ran = Duration::from_millis((now.0.as_millisecond() - at.0.as_millisecond()).max(0) as u64);
            match AGENT_RUNNING_AFTER.checked_sub(ran).filter(|w| !w.is_zero()) {
                Some(wait) => recheck = Some(recheck.map_or(wait, |r| r.min(wait))),
                None => {
                    set_phase(
                        &mut plan.status,
                        Phase::Running,
                        reason.as_str(),
                        &message,
                        run.metadata.generation,
                        now,
                    );
                }
            }
        }
    } else {
        // Keep the creation Event; record the agent start as its own transition.
        set_phase(
            &mut plan.status,
            Phase::Running,
            reason.as_str(),
            &message,
            run.metadata.generation,
            now,
        );
    }
    // The operator's own deadline, in case the kubelet's activeDeadlineSeconds did not fire.
    let limit = build::timeout_secs(run).unwrap_or(build::DEFAULT_TIMEOUT_SECS) as i64;
    let started = plan
        .status
        .start_time
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or_else(|| now.0.as_second());
    let left = started + limit + DEADLINE_GRACE_SECS - now.0.as_second();
    if left <= 0 {
        // The pod is stopped: no follower for it, no gate for its requests.
        plan.effects
            .retain(|e| !matches!(e, Effect::Follow(_) | Effect::RaiseRequest { .. }));
        let step = end_from_pod(run, facts, pod, plan, now, Some(Phase::TimedOut));
        return with_effect(step, Effect::DeletePod(pod_name));
    }
    let deadline = Duration::from_secs(left as u64);
    plan.action = Action::requeue(recheck.map_or(deadline, |r| r.min(deadline)));
    plan.done()
}

/// When the run's pod was created or claimed, while the status says no more than that (phase
/// `Running`, condition `Running` with reason `PodCreated` or `PodClaimed`) and `pod` (in
/// `state`) starts as it should or runs its agent; `None` otherwise. Pure.
fn just_started(plan: &Plan, pod: &Pod, state: &PodState) -> Option<Time> {
    let normal = match state {
        PodState::Starting { .. } => starting_normally(pod),
        PodState::Running => true,
        PodState::Finished { .. } => false,
    };
    if !normal || plan.status.phase != Some(Phase::Running) {
        return None;
    }
    plan.status
        .conditions
        .iter()
        .find(|c| c.type_ == COND_RUNNING && (Reason::PodCreated.is(c) || Reason::PodClaimed.is(c)))
        .map(|c| c.last_transition_time.clone())
}

/// Records what the held push's verification pod said (nothing when there is nothing new).
fn record_held(run: &AgentRun, plan: &mut Plan, held: &HeldRead, now: &Time) {
    let Some(v) = &held.verification else { return };
    // The agent is done: its metered usage is final (a set's CheapestVerified reads it before
    // the run ends).
    if v.result != VerificationResult::Running && plan.status.usage.is_none() {
        plan.status.usage = held.usage.clone();
    }
    verify::set_condition(&mut plan.status, v, run.metadata.generation, now);
    plan.status.verification = Some(v.clone());
}

/// Ends the run from its pod: keeps the log and patch, copies the result, sets the terminal
/// phase. `forced` overrides the phase the pod's state implies (cancel, operator deadline).
pub(super) fn end_from_pod(
    run: &AgentRun,
    facts: &Facts,
    pod: &Pod,
    mut plan: Plan,
    now: &Time,
    forced: Option<Phase>,
) -> Step {
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    // The cache may not show yet the end (or retry) this operator wrote moments ago: ask the
    // API server before doing the ending's work again.
    if *need!(facts.moved_past, Need::MovedPast) {
        return plan.keep_cached(run);
    }
    let end = need!(facts.ending, Need::Ending);
    let gateway = &end.gateway;
    // An attempt that ended for a reason outside the agent's control may be retried.
    if forced.is_none() {
        let (reason, message, exit_code) = match classify_pod(pod) {
            _ if pod.metadata.deletion_timestamp.is_some() => (
                Reason::PodDeleted.to_string(),
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
        let (reason, message) = artifacts::confirmed_reason(reason, message, gateway);
        if retryable(&reason, &message) {
            let text = attempt_log_text(&end.log, end.followed.clone());
            // The pod's attempt label (a warm pod's name says nothing of it), else its name.
            let attempt = attempt_label(pod).unwrap_or_else(|| attempt_of(&pod_name));
            if retry(run, &mut plan, attempt, &reason, &message, exit_code, text, now) {
                return plan.done();
            }
        }
    }
    let mut parsed = artifacts::parse_log(&end.log);
    parsed.patch_gz = gateway.branch().patch_gz.clone();
    let refs = artifacts::artifact_refs(run, &parsed, PatchLayout::WithLog);
    // A short run can end before its log follower starts: publish the notable events it did not
    // report (after the last one counted in status.progress), bounded, before the final Event.
    let seen = run
        .status
        .as_ref()
        .and_then(|s| s.progress.as_ref())
        .map_or(0, |p| p.events);
    let missed = parsed
        .events
        .iter()
        .filter(|e| e.seq > seen)
        .filter_map(|e| follow::event_for(&e.event))
        .filter(|e| follow::published(e, facts.step_events))
        .take(CATCH_UP_EVENTS)
        .map(|(t, reason, note)| (t, reason.to_string(), note));
    plan.events.extend(missed);
    // The final counts, from the whole log: the run's end writes them (its follower, stopped
    // before the log was read, leaves them to it), unless the follower counted further.
    let followed = plan
        .status
        .progress
        .as_ref()
        .filter(|p| p.pod.as_deref() == Some(pod_name.as_str()))
        .map_or(0, |p| p.events);
    if parsed.last_seq > followed {
        plan.status.progress = Some(follow::summary(&parsed.events, parsed.last_seq, &pod_name));
    }
    let (phase, reason, message, result) = match (forced, classify_pod(pod)) {
        (Some(Phase::Cancelled), _) => (
            Phase::Cancelled,
            Reason::Cancelled.to_string(),
            "spec.cancel was set; the runner pod was stopped".to_string(),
            parsed.result.clone(),
        ),
        (Some(Phase::TimedOut), _) => (
            Phase::TimedOut,
            Reason::TimedOut.to_string(),
            "spec.budget.timeout passed; the runner pod was stopped".to_string(),
            parsed.result.clone(),
        ),
        (Some(Phase::Rejected), _) => {
            let (reason, message) = plan_rejection(facts.plan.as_ref());
            (Phase::Rejected, reason.to_string(), message, parsed.result.clone())
        }
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
            Reason::RunnerFailed.to_string(),
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
                Reason::PodDeleted.to_string(),
                format!("runner pod {pod_name} was deleted while the run was going on"),
            )
        } else {
            let (reason, message) = artifacts::confirmed_reason(reason, message, gateway);
            (phase, reason, message)
        };
    let result = result.map(|r| artifacts::with_trusted_facts(r, gateway));
    // Plan review (issue 22): whatever the runner says, a run whose plan was not approved has
    // not succeeded. The gateway (trusted) pushes only with a signed plan approval, so its push
    // vouches for one; a push it refused for the plan's sake fails the run the same way.
    let pushed = result.as_ref().is_some_and(|r| r.pushed);
    let unapproved_end = phase == Phase::Succeeded
        || reason == Reason::PushFailed.as_str()
        || reason == Reason::PlanNotApproved.as_str();
    let (phase, reason, message) = if forced.is_none() && approvals::plan_review(run) && unapproved_end && !pushed {
        match need!(facts.plan, Need::Plan) {
            PlanVerdict::Approved => (phase, reason, message),
            rejected @ PlanVerdict::Rejected { .. } => {
                let (reason, message) = plan_rejection(Some(rejected));
                (Phase::Rejected, reason.to_string(), message)
            }
            PlanVerdict::Waiting => (
                Phase::Failed,
                Reason::PlanNotApproved.to_string(),
                "the agent ended without an approved plan (spec.approvals.plan); the gateway pushed nothing"
                    .to_string(),
            ),
        }
    } else {
        (phase, reason, message)
    };
    let message = match &result {
        Some(r) if phase == Phase::Succeeded && reason == Reason::Succeeded => succeeded_message(r),
        _ => message,
    };
    if let Some(r) = result {
        // The gateway's metering is authoritative for tokens and USD; the CLI's count of
        // turns is kept when the gateway saw none.
        plan.status.usage = Some(match &gateway.usage {
            Some(g) if g.turns > 0 => paddock_crds::events::Usage {
                turns: r.usage.turns.max(g.turns),
                ..g.clone()
            },
            _ => r.usage.clone(),
        });
        plan.status.result = Some(ResultStatus {
            diffstat: format!("+{}/-{}", r.insertions, r.deletions),
            run: r,
            patch_ref: refs.patch,
            log_ref: Some(refs.log),
            session_ref: refs.session,
            pull_request: None,
        });
    } else {
        plan.status.result = None;
    }
    plan.effects.push(Effect::StoreArtifacts(Box::new(parsed)));
    // Verification (issue 19): a change that ended well is verified before the run ends; a
    // required verification that did not pass fails the run (its push was held and refused).
    let (phase, reason, message) = match (forced, run.spec.verify.as_ref()) {
        (None, Some(spec)) => {
            let attempt = plan.status.attempt.unwrap_or(1);
            let current = plan.status.verification.clone().filter(|v| v.attempt == attempt);
            match current {
                None if phase == Phase::Succeeded => {
                    let branch_facts = gateway.branch().facts.clone().unwrap_or_default();
                    let inputs = verify::inputs(
                        &branch_facts,
                        gateway.branch().patch_gz.as_deref(),
                        plan.status.result.as_ref().and_then(|r| r.patch_ref.clone()),
                    );
                    let mut v = verify::started(attempt, &inputs.base, None, now.clone());
                    v.commit = inputs.commit.clone();
                    v.diffstat = inputs.diffstat.clone();
                    v.patch_sha256 = inputs.patch_sha256.clone();
                    match inputs.refuse {
                        // Too large to verify: never `Passed` (checking part of a change would
                        // approve the rest unseen).
                        Some(why) => {
                            v.result = VerificationResult::Error;
                            v.reason = Reason::PatchTooLarge.to_string();
                            v.message = why;
                            conclude_verification(run, &mut plan, v, now);
                        }
                        None => start_verifying(run, &mut plan, v, now),
                    }
                    return plan.done();
                }
                Some(v) if v.result == VerificationResult::Running && phase == Phase::Succeeded => {
                    start_verifying(run, &mut plan, v, now);
                    return plan.done();
                }
                // The run ended otherwise while its held push was being verified: the
                // verification ends with it.
                Some(mut v) if v.result == VerificationResult::Running => {
                    v.result = VerificationResult::Error;
                    v.reason = Reason::VerificationPodFailed.to_string();
                    v.message = format!("the run ended ({reason}) before its verification did");
                    verify::set_condition(&mut plan.status, &v, run.metadata.generation, now);
                    plan.status.verification = Some(v);
                    (phase, reason, message)
                }
                Some(v)
                    if spec.required
                        && !matches!(v.result, VerificationResult::Passed | VerificationResult::Running) =>
                {
                    (
                        Phase::Failed,
                        Reason::VerificationFailed.to_string(),
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
        match need!(facts.selection, Need::Selection) {
            Selection::Loser(why) => (
                Phase::Succeeded,
                Reason::NotSelected.to_string(),
                format!("not pushed: {why}; the change is kept (kubectl paddock diff)"),
            ),
            _ => (phase, reason, message),
        }
    } else {
        (phase, reason, message)
    };
    if forced.is_none() && plan.status.completion_time.is_none() {
        plan.status.completion_time = pod_finished_at(pod);
    }
    plan.transition(run, now, phase, &reason, &message);
    plan.done()
}

/// The final reason and message of a run whose plan `verdict` rejected it. Pure.
fn plan_rejection(verdict: Option<&PlanVerdict>) -> (Reason, String) {
    match verdict {
        Some(PlanVerdict::Rejected { gate, expired: true, .. }) => (
            Reason::GateExpired,
            format!("plan review ApprovalGate {gate} expired without a decision (onTimeout Reject); nothing was pushed, the plan is kept in the gate"),
        ),
        Some(PlanVerdict::Rejected { gate, by, .. }) => (
            Reason::Rejected,
            format!(
                "the plan in ApprovalGate {gate} was rejected{}; nothing was pushed, the plan is kept in the gate",
                by.as_deref().map(|b| format!(" by {b}")).unwrap_or_default()
            ),
        ),
        _ => (Reason::Rejected, "the plan was rejected; nothing was pushed".to_string()),
    }
}

/// The verification after the agent's end, as read: recorded while it goes on (the checks'
/// pod created when missing), then the run's end.
pub(super) fn verify_after_end(run: &AgentRun, mut plan: Plan, read: &VerifyRead, now: &Time) -> Step {
    let v = read.verification.clone();
    if let Some(p) = &read.create_pod {
        plan.effects.push(Effect::CreateVerificationPod(Box::new(p.clone())));
    }
    if let Some(name) = &read.delete_pod {
        plan.effects.push(Effect::DeleteVerificationPod(name.clone()));
    }
    if !read.done {
        verify::set_condition(&mut plan.status, &v, run.metadata.generation, now);
        plan.status.verification = Some(v);
        return plan.requeue(Duration::from_secs(30)).done();
    }
    conclude_verification(run, &mut plan, v, now);
    plan.done()
}

/// `verification <reason>: <message> (<summary>)`.
fn verification_message(v: &VerificationStatus) -> String {
    let summary = v.summary.as_deref().map(|s| format!(" ({s})")).unwrap_or_default();
    format!("verification {}: {}{summary}", v.reason, v.message)
}

/// The run's agent is done and its change goes to verification: phase `Running`, reason
/// `Verifying`, condition `Verified` Unknown; the next reconcile creates the checks' pod.
fn start_verifying(run: &AgentRun, plan: &mut Plan, v: VerificationStatus, now: &Time) {
    verify::set_condition(&mut plan.status, &v, run.metadata.generation, now);
    plan.status.verification = Some(v);
    plan.status.completion_time = None;
    plan.transition(
        run,
        now,
        Phase::Running,
        Reason::Verifying.as_str(),
        "the agent finished; its change is being verified (spec.verify)",
    );
    plan.action = Action::requeue(Duration::from_secs(1));
}

/// Ends a run whose verification is done: condition `Verified`, then `Failed` with reason
/// `VerificationFailed` when it was required and did not pass, else `Succeeded`.
fn conclude_verification(run: &AgentRun, plan: &mut Plan, v: VerificationStatus, now: &Time) {
    verify::set_condition(&mut plan.status, &v, run.metadata.generation, now);
    plan.status.verification = Some(v.clone());
    let required = run.spec.verify.as_ref().is_some_and(|s| s.required);
    let what = verification_message(&v);
    let (phase, reason, message) = if required && v.result != VerificationResult::Passed {
        (Phase::Failed, Reason::VerificationFailed, what)
    } else {
        let done = plan
            .status
            .result
            .as_ref()
            .map(|r| succeeded_message(&r.run))
            .unwrap_or_default();
        (Phase::Succeeded, Reason::Succeeded, format!("{done}; {what}"))
    };
    plan.status.completion_time = None;
    plan.transition(run, now, phase, reason.as_str(), &message);
}

/// When the pod's containers last finished (the latest `finishedAt` of a terminated container),
/// if they all did.
pub fn pod_finished_at(pod: &Pod) -> Option<Time> {
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
    match Reason::parse(reason) {
        Some(Reason::PodDeleted | Reason::PodLost | Reason::PodEvicted | Reason::ModelUnavailable) => true,
        Some(Reason::PodStartFailed) => message.contains("ErrImagePull") || message.contains("ImagePullBackOff"),
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

/// Ends `attempt` and schedules the next one when `spec.retry.limit` allows: keeps the
/// attempt's log (`log_text`) as `<run>-log-<attempt>`, records it in `status.attempts`, has
/// its pod deleted after the status write, and moves the run back to `Pending` (reason
/// `Retrying`) until the backoff passes. Returns whether it did (the plan is unchanged when
/// not).
#[allow(clippy::too_many_arguments)]
pub(super) fn retry(
    run: &AgentRun,
    plan: &mut Plan,
    attempt: u32,
    reason: &str,
    message: &str,
    exit_code: Option<i32>,
    log_text: Option<String>,
    now: &Time,
) -> bool {
    let limit = run.spec.retry.as_ref().map_or(0, |r| r.limit);
    if attempt > limit || plan.status.attempts.iter().any(|a| a.attempt == attempt) {
        return false;
    }
    let pod_name = plan
        .status
        .pod_name
        .clone()
        .unwrap_or_else(|| build::pod_name(run, attempt));
    let log_ref = log_text.map(|text| {
        plan.effects
            .push(Effect::StoreAttemptLog(attempt, Box::new(artifacts::parse_log(&text))));
        artifacts::attempt_log_name(run, attempt)
    });
    plan.status.attempts.push(paddock_crds::AttemptStatus {
        attempt,
        pod_name: pod_name.clone(),
        start_time: plan.status.start_time.clone(),
        completion_time: Some(now.clone()),
        reason: reason.to_string(),
        message: paddock_crds::events::truncate(message, 1024),
        exit_code,
        log_ref,
    });
    plan.effects.push(Effect::DeletePodAfterStatus(pod_name));
    let next = attempt + 1;
    let wait = backoff_secs(run, next);
    plan.status.attempt = Some(next);
    plan.status.pod_name = None;
    plan.status.start_time = None;
    plan.status.result = None;
    plan.status.next_attempt_at = Some(Time(now.0 + k8s_openapi::jiff::SignedDuration::from_secs(wait as i64)));
    let message = format!(
        "attempt {attempt} ended ({reason}: {message}); attempt {next} of {} starts in {wait}s",
        limit + 1
    );
    plan.transition(run, now, Phase::Pending, Reason::Retrying.as_str(), &message);
    plan.action = Action::requeue(Duration::from_secs(wait));
    true
}
