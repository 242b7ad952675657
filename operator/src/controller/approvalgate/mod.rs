//! The ApprovalGate controller: counts the decisions humans appended to `spec.decisions` and
//! records the gate's state. Pure decision logic in [`compute_state`]; identity checks (that
//! `approver` is the requesting user) are the ValidatingAdmissionPolicy's job, at admission.

use crate::context::{Context, MANAGER_GATE};
use crate::error::{Error, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use paddock_crds::condition::{set_condition, FALSE, TRUE};
use paddock_crds::{ApprovalGate, ApprovalGateSpec, ApprovalGateStatus, GateState, Verdict};
use std::sync::Arc;
use std::time::Duration;

/// Controller name used in metrics and logs.
pub const CONTROLLER: &str = "approvalgate";

/// The gate's state from its decisions. Pure.
///
/// Only decisions by listed approvers count (any user when `approvers` is empty; group
/// membership cannot be seen here, so a decision by a user not listed by name counts when groups
/// are listed — the admission policy has already checked the group). Each approver counts once;
/// a Reject decides the gate; `quorum` distinct approvals approve it.
/// Returns (state, approvals counted, the deciding approver).
pub fn compute_state(spec: &ApprovalGateSpec) -> (GateState, u32, Option<String>) {
    let listed = |who: &str| {
        (spec.approvers.users.is_empty() && spec.approvers.groups.is_empty())
            || spec.approvers.users.iter().any(|u| u == who)
            || !spec.approvers.groups.is_empty()
    };
    let mut seen: Vec<&str> = Vec::new();
    for d in &spec.decisions {
        if !listed(&d.approver) || seen.contains(&d.approver.as_str()) {
            continue;
        }
        seen.push(&d.approver);
        if d.decision == Verdict::Reject {
            return (GateState::Rejected, (seen.len() - 1) as u32, Some(d.approver.clone()));
        }
        if seen.len() as u32 >= spec.quorum.max(1) {
            return (GateState::Approved, seen.len() as u32, Some(d.approver.clone()));
        }
    }
    (GateState::Pending, seen.len() as u32, None)
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
    let _timer = ctx.state.metrics.reconcile(CONTROLLER);
    let ns = gate
        .metadata
        .namespace
        .clone()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = gate.metadata.name.clone().ok_or(Error::MissingField("metadata.name"))?;
    let old = gate.status.clone().unwrap_or_default();
    if matches!(
        old.state,
        Some(GateState::Approved | GateState::Rejected | GateState::Expired)
    ) {
        return Ok(Action::await_change());
    }
    let (mut state, approvals, by) = compute_state(&gate.spec);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut st = ApprovalGateStatus {
        state: Some(state),
        approvals,
        observed_generation: gate.metadata.generation,
        ..old.clone()
    };
    // Expiry: only a pending gate with a timeout expires.
    let mut action = Action::await_change();
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
            action = Action::requeue(Duration::from_secs((next - now_s).max(1) as u64));
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
    };
    set_condition(
        &mut st.conditions,
        "Decided",
        cstatus,
        reason,
        &message,
        gate.metadata.generation,
        now.clone(),
    );
    if state != GateState::Pending {
        st.decided_by = by;
        st.decided_at = Some(now);
    }
    if st != old {
        let api: Api<ApprovalGate> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = serde_json::json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "ApprovalGate", "status": st});
        api.patch_status(&name, &PatchParams::apply(MANAGER_GATE).force(), &Patch::Apply(&patch))
            .await?;
        if let Some(note) = warning {
            ctx.publish(gate.as_ref(), EventType::Warning, "ExpiringSoon", note)
                .await;
        }
        if old.approvals != approvals || old.state != st.state {
            let t = if matches!(state, GateState::Rejected | GateState::Expired) {
                EventType::Warning
            } else {
                EventType::Normal
            };
            ctx.publish(gate.as_ref(), t, reason, message).await;
        }
    }
    Ok(action)
}

/// When a gate created at `created` (seconds since the epoch) with a timeout of `timeout`
/// seconds expires, and when its `ExpiringSoon` warning is due: a fifth of the timeout before
/// expiry, at most 10 minutes before. Returns (expires, warn_at), both in seconds since the
/// epoch. Pure.
pub fn expiry(created: i64, timeout: i64) -> (i64, i64) {
    let lead = (timeout / 5).min(600);
    (created + timeout, created + timeout - lead)
}

/// Requeues failed reconciles with a short backoff and counts them.
pub fn error_policy(_gate: Arc<ApprovalGate>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.state.metrics.error(CONTROLLER, error.reason());
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_crds::{Approvers, Decision, GateRequest, GateStage};

    fn spec(quorum: u32, users: &[&str], decisions: &[(&str, Verdict)]) -> ApprovalGateSpec {
        ApprovalGateSpec {
            run_ref: paddock_crds::RunReference {
                name: "r".into(),
                ..Default::default()
            },
            stage: GateStage::BeforeStart,
            request: GateRequest::default(),
            approvers: Approvers {
                users: users.iter().map(|s| s.to_string()).collect(),
                groups: vec![],
            },
            quorum,
            timeout: None,
            on_timeout: None,
            decisions: decisions
                .iter()
                .map(|(a, d)| Decision {
                    approver: a.to_string(),
                    decision: *d,
                    comment: None,
                })
                .collect(),
        }
    }

    #[test]
    fn expiry_schedule() {
        assert_eq!(expiry(1000, 10), (1010, 1008));
        assert_eq!(expiry(0, 86400), (86400, 86400 - 600));
        assert_eq!(expiry(0, 1), (1, 1));
    }

    #[test]
    fn decisions_table() {
        use Verdict::*;
        let cases = [
            (spec(1, &[], &[]), GateState::Pending, 0),
            (spec(1, &[], &[("alice", Approve)]), GateState::Approved, 1),
            (
                spec(2, &[], &[("alice", Approve), ("alice", Approve)]),
                GateState::Pending,
                1,
            ),
            (
                spec(2, &[], &[("alice", Approve), ("bob", Approve)]),
                GateState::Approved,
                2,
            ),
            (
                spec(2, &[], &[("alice", Approve), ("bob", Reject)]),
                GateState::Rejected,
                1,
            ),
            (spec(1, &["alice"], &[("mallory", Approve)]), GateState::Pending, 0),
            (
                spec(1, &["alice"], &[("mallory", Reject), ("alice", Approve)]),
                GateState::Approved,
                1,
            ),
        ];
        for (i, (s, state, n)) in cases.into_iter().enumerate() {
            let (got, count, _) = compute_state(&s);
            assert_eq!((got, count), (state, n), "case {i}");
        }
    }
}
