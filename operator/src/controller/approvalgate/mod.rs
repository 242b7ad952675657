//! The ApprovalGate controller: counts the decisions humans appended to `spec.decisions` and
//! records the gate's state. Pure decision logic in [`compute_state`] and
//! [`compute_withdrawal`]; identity checks (that `approver` is the requesting user) are the
//! ValidatingAdmissionPolicy's job, at admission.
//!
//! A pending gate whose request lost its purpose — its run ended, a retry replaced the attempt
//! that asked, or the run is gone — is closed as `Withdrawn` (condition `Decided` True, reason
//! `RunFinished`, `Superseded` or `RunDeleted`) instead of staying `Pending` forever. Like the
//! other final states it takes no decision any more: the admission policy refuses new ones and
//! this controller never counts them. Changes of AgentRuns wake the gates they withdraw
//! ([`gates_to_withdraw`]); every pending gate also looks again every
//! [`PENDING_RECHECK`] in case such a change was missed.

use crate::context::{Context, MANAGER_GATE};
use crate::error::{Error, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use paddock_crds::condition::{set_condition, FALSE, TRUE};
use paddock_crds::{
    AgentRun, AgentRunSet, ApprovalGate, ApprovalGateSpec, ApprovalGateStatus, GateStage, GateState, Verdict,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Controller name used in metrics and logs.
pub const CONTROLLER: &str = "approvalgate";
/// Type of the gate's one condition.
pub const COND_DECIDED: &str = "Decided";
/// Longest a pending gate waits before it checks its run again (a safety net: AgentRun changes
/// wake it sooner, see [`gates_to_withdraw`]).
pub const PENDING_RECHECK: Duration = Duration::from_secs(300);

/// Why a pending gate is withdrawn: nobody waits for its decision any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawal {
    /// The run reached a terminal phase (`Succeeded`, `Failed`, `Cancelled`, `TimedOut`,
    /// `Rejected`).
    RunFinished,
    /// A retry replaced the attempt whose runner asked (the new attempt asks again).
    Superseded,
    /// The run the gate was created for is gone or being deleted (another run may have taken
    /// its name).
    RunDeleted,
}

impl Withdrawal {
    /// The CamelCase reason of the `Decided` condition and of the Event.
    pub fn reason(self) -> &'static str {
        match self {
            Withdrawal::RunFinished => "RunFinished",
            Withdrawal::Superseded => "Superseded",
            Withdrawal::RunDeleted => "RunDeleted",
        }
    }
}

/// Whether `gate`, still pending, is withdrawn, given `run`: the AgentRun named by
/// `spec.runRef.name` as it is now (`None` when no AgentRun has that name). Returns the reason
/// and the condition's message, or `None` while the gate's run may still act on a decision.
/// Pure.
///
/// The run must be the one the gate was made for (its `spec.runRef.uid`; a gate without one —
/// not made by the operator — matches by name, and is kept while no run has that name), must
/// not be deleting, must not have ended, and — for an in-run gate — must still be on the
/// attempt that asked (`spec.runRef.attempt`).
pub fn compute_withdrawal(gate: &ApprovalGate, run: Option<&AgentRun>) -> Option<(Withdrawal, String)> {
    let name = &gate.spec.run_ref.name;
    let late = match gate.spec.decisions.len() {
        0 => String::new(),
        1 => "; the 1 decision recorded was not counted".to_string(),
        n => format!("; the {n} decisions recorded were not counted"),
    };
    let Some(run) = run else {
        // A gate without a run UID was not made by the operator for a run it saw (a gate
        // created by hand may name a run that never exists): nothing says a run went away.
        gate.spec.run_ref.uid.as_ref()?;
        return Some((
            Withdrawal::RunDeleted,
            format!("AgentRun {name} no longer exists{late}"),
        ));
    };
    let same_run = gate.spec.run_ref.uid.is_none() || gate.spec.run_ref.uid == run.metadata.uid;
    if !same_run {
        return Some((
            Withdrawal::RunDeleted,
            format!(
                "the AgentRun {name} this gate was created for (uid {}) no longer exists; another run has its name{late}",
                gate.spec.run_ref.uid.as_deref().unwrap_or_default()
            ),
        ));
    }
    if run.metadata.deletion_timestamp.is_some() {
        return Some((
            Withdrawal::RunDeleted,
            format!("AgentRun {name} is being deleted{late}"),
        ));
    }
    let status = run.status.clone().unwrap_or_default();
    if let Some(phase) = status.phase.filter(|p| p.is_terminal()) {
        return Some((
            Withdrawal::RunFinished,
            format!("AgentRun {name} ended ({}) before anyone decided{late}", phase.as_str()),
        ));
    }
    let asked = gate.spec.run_ref.attempt?;
    let current = status.attempt.unwrap_or(1);
    let ended = status.attempts.iter().any(|a| a.attempt == asked);
    if current > asked || ended {
        return Some((
            Withdrawal::Superseded,
            format!(
                "attempt {asked} of AgentRun {name} ended before anyone decided; attempt {} asks again if it needs to{late}",
                current.max(asked + 1)
            ),
        ));
    }
    None
}

/// Whether a pending `Pick` gate is withdrawn, given its AgentRunSet as it is now: the set is
/// gone (or another has its name), is being deleted, or has ended (cancelled). Pure.
pub fn compute_pick_withdrawal(gate: &ApprovalGate, set: Option<&AgentRunSet>) -> Option<(Withdrawal, String)> {
    let name = &gate.spec.run_ref.name;
    let Some(set) = set else {
        return Some((Withdrawal::RunDeleted, format!("AgentRunSet {name} no longer exists")));
    };
    if gate.spec.run_ref.uid.is_some() && gate.spec.run_ref.uid != set.metadata.uid {
        return Some((
            Withdrawal::RunDeleted,
            format!("the AgentRunSet {name} this gate was created for no longer exists; another set has its name"),
        ));
    }
    if set.metadata.deletion_timestamp.is_some() {
        return Some((Withdrawal::RunDeleted, format!("AgentRunSet {name} is being deleted")));
    }
    let phase = set.status.as_ref().and_then(|s| s.phase).filter(|p| p.is_terminal())?;
    Some((
        Withdrawal::RunFinished,
        format!("AgentRunSet {name} ended ({}) before anyone picked", phase.as_str()),
    ))
}

/// The pending gates in `gates` that a change of `run` withdraws ([`compute_withdrawal`]):
/// gates of the same namespace naming the run, still pending. Pure; the mapper of the
/// controller's AgentRun watch.
pub fn gates_to_withdraw(run: &AgentRun, gates: &[Arc<ApprovalGate>]) -> Vec<ObjectRef<ApprovalGate>> {
    gates
        .iter()
        .filter(|g| g.metadata.namespace == run.metadata.namespace)
        .filter(|g| g.spec.stage != GateStage::Pick && Some(&g.spec.run_ref.name) == run.metadata.name.as_ref())
        .filter(|g| !g.status.as_ref().and_then(|s| s.state).is_some_and(GateState::is_final))
        .filter(|g| compute_withdrawal(g, Some(run)).is_some())
        .map(|g| ObjectRef::from_obj(g.as_ref()))
        .collect()
}

/// The status that closes a pending gate as `Withdrawn`: `old` with the state, the `Decided`
/// condition (True, `why`'s reason, `message`), `decidedAt` = `now` and no `decidedBy`. Pure.
pub fn build_withdrawn_status(
    old: &ApprovalGateStatus,
    why: Withdrawal,
    message: &str,
    generation: Option<i64>,
    now: Time,
) -> ApprovalGateStatus {
    let mut st = ApprovalGateStatus {
        state: Some(GateState::Withdrawn),
        decided_by: None,
        decided_at: Some(now.clone()),
        observed_generation: generation,
        ..old.clone()
    };
    set_condition(
        &mut st.conditions,
        COND_DECIDED,
        TRUE,
        why.reason(),
        message,
        generation,
        now,
    );
    st
}

/// The gate's state from its decisions. Pure.
///
/// Only decisions by listed approvers count (any user when `approvers` is empty; group
/// membership cannot be seen here, so a decision by a user not listed by name counts when groups
/// are listed — the admission policy has already checked the group). Each approver counts once;
/// a Reject decides the gate; `quorum` distinct approvals approve it.
/// Returns (state, approvals counted, the deciding approver).
pub fn compute_state(spec: &ApprovalGateSpec) -> (GateState, u32, Option<String>) {
    let (state, approvals, by, _) = tally(spec);
    (state, approvals, by)
}

/// The candidate an approved `Pick` gate picked: the first whose approvals (by listed
/// approvers, one each) reached the quorum. `None` for other stages or while none has. Pure.
pub fn picked(spec: &ApprovalGateSpec) -> Option<String> {
    tally(spec).3.filter(|_| spec.stage == GateStage::Pick)
}

/// The text a decided gate hands the agent: an approved `Question` gate's answer (the decision
/// that completed the quorum), or the changes a `Plan` gate's reviewer requested (that
/// decision's comment). `None` otherwise. Pure.
pub fn answer(spec: &ApprovalGateSpec) -> Option<String> {
    tally(spec)
        .3
        .filter(|_| matches!(spec.stage, GateStage::Question | GateStage::Plan))
}

/// [`compute_state`] and the deciding decision's detail: a `Pick` gate's candidate, a
/// `Question` gate's answer, a `RequestChanges` decision's comment.
fn tally(spec: &ApprovalGateSpec) -> (GateState, u32, Option<String>, Option<String>) {
    let listed = |who: &str| {
        (spec.approvers.users.is_empty() && spec.approvers.groups.is_empty())
            || spec.approvers.users.iter().any(|u| u == who)
            || !spec.approvers.groups.is_empty()
    };
    let mut seen: Vec<&str> = Vec::new();
    // A Pick gate's approvals count per candidate: the quorum must agree on one.
    let mut per_candidate: BTreeMap<&str, u32> = BTreeMap::new();
    for d in &spec.decisions {
        if !listed(&d.approver) || seen.contains(&d.approver.as_str()) {
            continue;
        }
        if d.decision == Verdict::Reject {
            return (GateState::Rejected, seen.len() as u32, Some(d.approver.clone()), None);
        }
        if d.decision == Verdict::RequestChanges {
            // Only a Plan gate's (the CRD's rule refuses it elsewhere); decisive like a Reject.
            if spec.stage != GateStage::Plan {
                continue;
            }
            return (
                GateState::ChangesRequested,
                seen.len() as u32,
                Some(d.approver.clone()),
                d.comment.clone(),
            );
        }
        let (count, candidate) = if spec.stage == GateStage::Pick {
            // An approval naming no listed candidate counts for nothing (the CRD's rule
            // refuses it at admission).
            let Some(c) = d
                .candidate
                .as_deref()
                .filter(|c| spec.request.candidates.iter().any(|x| x == c))
            else {
                continue;
            };
            let n = per_candidate.entry(c).or_default();
            *n += 1;
            (*n, Some(c.to_string()))
        } else if spec.stage == GateStage::Question {
            // An Approve without an answer answers nothing (the CRD's rule refuses it).
            let Some(a) = d.answer.as_deref().filter(|a| !a.is_empty()) else {
                continue;
            };
            (seen.len() as u32 + 1, Some(a.to_string()))
        } else {
            (seen.len() as u32 + 1, None)
        };
        seen.push(&d.approver);
        if count >= spec.quorum.max(1) {
            return (GateState::Approved, count, Some(d.approver.clone()), candidate);
        }
    }
    // A Pick gate counts the approvals of its most-approved candidate (approvals split over
    // candidates do not add up to the quorum).
    let approvals = match spec.stage {
        GateStage::Pick => per_candidate.values().copied().max().unwrap_or(0),
        _ => seen.len() as u32,
    };
    (GateState::Pending, approvals, None, None)
}

/// Reconciles one gate: computes its state and writes status when it changed.
///
/// # Errors
/// Transient API errors.
#[tracing::instrument(
    name = "reconcile",
    skip_all,
    err(Display),
    fields(
        controller = CONTROLLER,
        namespace = gate.metadata.namespace.as_deref().unwrap_or_default(),
        name = gate.metadata.name.as_deref().unwrap_or_default(),
        run = gate.spec.run_ref.name.as_str(),
    )
)]
pub async fn reconcile(gate: Arc<ApprovalGate>, ctx: Arc<Context>) -> Result<Action> {
    let (_timer, ns, name) = super::begin_reconcile(&ctx, CONTROLLER, &gate.metadata)?;
    let old = gate.status.clone().unwrap_or_default();
    // A final gate never changes again: decisions appended later are not counted.
    if old.state.is_some_and(GateState::is_final) {
        return Ok(Action::await_change());
    }
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    // Before counting decisions: one that arrives after the run moved on decides nothing.
    if let Some((why, message)) = fetch_withdrawal(&gate, &ctx, &ns).await? {
        let st = build_withdrawn_status(&old, why, &message, gate.metadata.generation, now);
        apply_status(&ctx, &ns, &name, &st).await?;
        ctx.publish(gate.as_ref(), EventType::Normal, why.reason(), message)
            .await;
        return Ok(Action::await_change());
    }
    let (mut state, approvals, by) = compute_state(&gate.spec);
    let mut st = ApprovalGateStatus {
        state: Some(state),
        approvals,
        observed_generation: gate.metadata.generation,
        ..old.clone()
    };
    // Expiry: only a pending gate with a timeout expires.
    let mut action = Action::requeue(PENDING_RECHECK);
    let mut warning = None;
    let schedule = gate
        .spec
        .timeout
        .as_deref()
        .and_then(|t| t.parse::<kube::core::Duration>().ok())
        .and_then(|t| {
            let created = gate.metadata.creation_timestamp.as_ref()?.0.as_second();
            Some(expiry(created, std::time::Duration::from(t).as_secs() as i64))
        });
    if let (GateState::Pending, Some((expires, warn_at))) = (state, schedule) {
        st.expires_at = k8s_openapi::jiff::Timestamp::from_second(expires).ok().map(Time);
        let now_s = now.0.as_second();
        if now_s >= expires {
            state = GateState::Expired;
            st.state = Some(state);
        } else {
            if now_s >= warn_at && !old.expiry_warned {
                st.expiry_warned = true;
                warning = Some(format!(
                    "no decision yet; the gate expires in {}s (onTimeout {:?})",
                    expires - now_s,
                    gate.spec.on_timeout.unwrap_or_default()
                ));
            }
            let next = if st.expiry_warned { expires } else { warn_at };
            action = Action::requeue(Duration::from_secs((next - now_s).max(1) as u64).min(PENDING_RECHECK));
        }
    }
    let (cstatus, reason, message) = match state {
        GateState::Expired => (
            TRUE,
            "Expired",
            format!(
                "no decision within {}; onTimeout {:?}",
                gate.spec.timeout.as_deref().unwrap_or_default(),
                gate.spec.on_timeout.unwrap_or_default()
            ),
        ),
        GateState::Pending => (
            FALSE,
            "Pending",
            format!("{approvals} of {} approvals", gate.spec.quorum),
        ),
        GateState::Approved => (
            TRUE,
            "Approved",
            format!("approved by {}", by.clone().unwrap_or_default()),
        ),
        GateState::Rejected => (
            TRUE,
            "Rejected",
            format!("rejected by {}", by.clone().unwrap_or_default()),
        ),
        GateState::ChangesRequested => (
            TRUE,
            "ChangesRequested",
            format!("changes requested by {}", by.clone().unwrap_or_default()),
        ),
        // Not produced by compute_state or expiry; withdrawal is handled above.
        GateState::Withdrawn => (TRUE, "Withdrawn", String::new()),
    };
    if state.is_final() {
        action = Action::await_change();
    }
    set_condition(
        &mut st.conditions,
        COND_DECIDED,
        cstatus,
        reason,
        &message,
        gate.metadata.generation,
        now.clone(),
    );
    if state != GateState::Pending {
        st.decided_by = by;
        st.decided_at = Some(now);
        st.candidate = picked(&gate.spec);
        st.answer = answer(&gate.spec);
    }
    if st != old {
        apply_status(&ctx, &ns, &name, &st).await?;
        if let Some(note) = warning {
            ctx.publish(gate.as_ref(), EventType::Warning, "ExpiringSoon", note)
                .await;
        }
        if old.approvals != approvals || old.state != st.state {
            let t = if matches!(
                state,
                GateState::Rejected | GateState::Expired | GateState::ChangesRequested
            ) {
                EventType::Warning
            } else {
                EventType::Normal
            };
            ctx.publish(gate.as_ref(), t, reason, message).await;
        }
    }
    Ok(action)
}

/// Whether the pending `gate` is withdrawn ([`compute_withdrawal`]). Asks the run cache first;
/// when the cache says withdrawn, asks the API server before acting on it (a cache that lags
/// behind may hold a deleted run, or not yet a re-created one).
async fn fetch_withdrawal(gate: &ApprovalGate, ctx: &Context, ns: &str) -> Result<Option<(Withdrawal, String)>> {
    let run_name = gate.spec.run_ref.name.as_str();
    if gate.spec.stage == GateStage::Pick {
        let sets: Api<AgentRunSet> = Api::namespaced(ctx.client.clone(), ns);
        let set = sets.get_opt(run_name).await?;
        return Ok(compute_pick_withdrawal(gate, set.as_ref()));
    }
    let cached = ctx.runs.get(&ObjectRef::<AgentRun>::new(run_name).within(ns));
    if compute_withdrawal(gate, cached.as_deref()).is_none() {
        return Ok(None);
    }
    let runs: Api<AgentRun> = Api::namespaced(ctx.client.clone(), ns);
    let fresh = runs.get_opt(run_name).await?;
    Ok(compute_withdrawal(gate, fresh.as_ref()))
}

/// Writes the gate's status (server-side apply by [`MANAGER_GATE`], forced).
async fn apply_status(ctx: &Context, ns: &str, name: &str, st: &ApprovalGateStatus) -> Result<()> {
    let api: Api<ApprovalGate> = Api::namespaced(ctx.client.clone(), ns);
    let patch = serde_json::json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "ApprovalGate", "status": st});
    api.patch_status(name, &PatchParams::apply(MANAGER_GATE).force(), &Patch::Apply(&patch))
        .await?;
    Ok(())
}

/// When a gate created at `created` (seconds since the epoch) with a timeout of `timeout`
/// seconds expires, and when its `ExpiringSoon` warning is due: a fifth of the timeout before
/// expiry, at most 10 minutes before. Returns (expires, warn_at), both in seconds since the
/// epoch. Pure.
pub fn expiry(created: i64, timeout: i64) -> (i64, i64) {
    let lead = (timeout / 5).min(600);
    (created + timeout, created + timeout - lead)
}

/// Counts a failed reconcile and requeues it ([`super::requeue_failed`]).
pub fn error_policy(_gate: Arc<ApprovalGate>, error: &Error, ctx: Arc<Context>) -> Action {
    super::requeue_failed(&ctx, CONTROLLER, error)
}

#[cfg(test)]
mod tests;
