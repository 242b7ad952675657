//! The AgentRunSet controller (issue 19, docs/fan-out.md): one AgentRun per candidate, a table
//! of their outcomes, and the selection of the one whose branch is pushed.
//!
//! Reads (the set's runs and `Pick` gate), then the pure [`decide::decide`], then its effects:
//! runs created, runs cancelled, the gate created, Events, and one status apply. The push
//! itself is the run controller's: a candidate's gateway holds its push (as for a required
//! verification) until the run controller signs the verdict, `Approve` for the set's winner
//! and `Reject` for the others ([`selection_of`]).

pub mod decide;
#[cfg(test)]
mod tests;

use crate::context::Context;
use crate::error::{Error, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use paddock_crds::{AgentRun, AgentRunSet, ApprovalGate, SetPhase};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Controller name used in metrics and logs.
pub const CONTROLLER: &str = "agentrunset";
/// Field manager of the set controller's writes (status, runs' `spec.cancel`).
pub const MANAGER_SET: &str = "paddock.dev/agentrunset";

/// Reconciles one set.
///
/// # Errors
/// Transient API errors (requeued by [`error_policy`]).
#[tracing::instrument(
    name = "reconcile",
    skip_all,
    err(Display),
    fields(
        controller = CONTROLLER,
        namespace = cached.metadata.namespace.as_deref().unwrap_or_default(),
        name = cached.metadata.name.as_deref().unwrap_or_default(),
    )
)]
pub async fn reconcile(cached: Arc<AgentRunSet>, ctx: Arc<Context>) -> Result<Action> {
    let (_timer, ns, name) = super::begin_reconcile(&ctx, CONTROLLER, &cached.metadata)?;
    // The set as the API server has it now: its winner must never be decided twice from a
    // cache that does not show the last status write yet.
    let sets: Api<AgentRunSet> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(set) = sets.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // Resolve: each candidate's run by its fixed name (a label can be edited away), accepted
    // only when it is the set's own (decide::is_own_run); and the Pick gate.
    let runs_api: Api<AgentRun> = Api::namespaced(ctx.client.clone(), &ns);
    let mut runs = BTreeMap::new();
    let mut taken = Vec::new();
    for (i, c) in set.spec.candidates.iter().enumerate() {
        if let Some(r) = runs_api.get_opt(&decide::run_name(&name, &c.name)).await? {
            if decide::is_own_run(&set, i, &r) {
                runs.insert(c.name.clone(), r);
            } else {
                taken.push(c.name.clone());
            }
        }
    }
    let gates: Api<ApprovalGate> = Api::namespaced(ctx.client.clone(), &ns);
    let gate = gates.get_opt(&decide::gate_name(&name)).await?.filter(|g| {
        g.spec.stage == paddock_crds::GateStage::Pick
            && g.spec.run_ref.uid.is_some()
            && g.spec.run_ref.uid == set.metadata.uid
    });
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let plan = decide::decide(&set, &runs, &taken, gate.as_ref(), now);

    // Apply.
    let mut started = Vec::new();
    for run in &plan.create {
        if super::create_owned_run(&ctx, &set, &runs_api, run).await? {
            started.push(run.metadata.name.clone().unwrap_or_default());
        }
    }
    for run in &plan.cancel {
        super::cancel_run(&runs_api, run).await?;
    }
    if let Some(g) = &plan.gate {
        match gates.create(&PostParams::default(), g).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let old = set.status.clone().unwrap_or_default();
    if plan.status != old {
        let patch = serde_json::json!({
            "apiVersion": "paddock.dev/v1alpha1",
            "kind": "AgentRunSet",
            "status": plan.status,
        });
        sets.patch_status(&name, &PatchParams::apply(MANAGER_SET).force(), &Patch::Apply(&patch))
            .await?;
    }
    for run in started {
        let row = plan
            .status
            .candidates
            .iter()
            .find(|r| r.run.as_deref() == Some(run.as_str()));
        ctx.publish(
            &set,
            EventType::Normal,
            "CandidateStarted",
            format!(
                "candidate {} ({}) started as AgentRun {run}",
                row.map(|r| r.name.as_str()).unwrap_or_default(),
                row.map(|r| r.agent.as_str()).unwrap_or_default()
            ),
        )
        .await;
    }
    for c in taken
        .iter()
        .filter(|c| !old.candidates.iter().any(|r| &r.name == *c && r.reason == "NameTaken"))
    {
        ctx.publish(
            &set,
            EventType::Warning,
            "NameTaken",
            format!(
                "AgentRun {} exists and is not this set's (another owner, or a spec the set did not give it): candidate {c} cannot run or win",
                decide::run_name(&name, c)
            ),
        )
        .await;
    }
    for (t, reason, note) in plan.events {
        ctx.publish(&set, t, &reason, note).await;
    }
    // Runs and the gate wake the set (owned objects); a safety net otherwise.
    Ok(if plan.status.phase.is_some_and(SetPhase::is_terminal) {
        Action::await_change()
    } else {
        Action::requeue(Duration::from_secs(60))
    })
}

/// Counts a failed reconcile and requeues it ([`super::requeue_failed`]).
pub fn error_policy(_set: Arc<AgentRunSet>, error: &Error, ctx: Arc<Context>) -> Action {
    super::requeue_failed(&ctx, CONTROLLER, error)
}

/// Where a candidate run stands in its set's selection, as its push verdict needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The run is not a set's candidate.
    NotACandidate,
    /// No winner yet.
    Waiting,
    /// This run's candidate won: its push may go on, for the selected commit only.
    Winner {
        /// The verified commit the selection chose (`status.selection.commit`).
        commit: Option<String>,
    },
    /// Another candidate won, none will (the set ended, was cancelled or is gone), or this
    /// one cannot win: why.
    Loser(String),
}

/// The set `run` is a candidate of ([`paddock_crds::agentrunset::candidate_set`]).
pub fn owner_set(run: &AgentRun) -> Option<(String, String)> {
    paddock_crds::agentrunset::candidate_set(run)
}

/// Whether `run` is a set's candidate. Pure.
pub fn is_candidate(run: &AgentRun) -> bool {
    owner_set(run).is_some()
}

/// Where `run` stands given its `set` as read now (`None`: gone). Pure. A cancelled or
/// deleted set rejects every push; under an automatic policy a candidate whose checks did not
/// pass cannot win and is told so at once (its pod need not wait).
pub fn selection_for(run: &AgentRun, set: Option<&AgentRunSet>) -> Selection {
    let Some((set_name, uid)) = owner_set(run) else {
        return Selection::NotACandidate;
    };
    let Some(set) = set.filter(|s| s.metadata.uid.as_deref() == Some(uid.as_str())) else {
        return Selection::Loser(format!("its AgentRunSet {set_name} no longer exists"));
    };
    if set.spec.cancel || set.metadata.deletion_timestamp.is_some() {
        return Selection::Loser(format!("AgentRunSet {set_name} was cancelled or deleted"));
    }
    let me = run
        .metadata
        .name
        .as_deref()
        .and_then(|n| n.strip_prefix(&format!("{set_name}-")))
        .unwrap_or_default();
    let st = set.status.clone().unwrap_or_default();
    match st.winner.as_deref() {
        Some(w) if w == me => Selection::Winner {
            commit: st.selection.and_then(|s| s.commit),
        },
        Some(w) => Selection::Loser(format!(
            "AgentRunSet {set_name} selected candidate {w}{}",
            st.selection.map(|s| format!(" ({})", s.message)).unwrap_or_default()
        )),
        None if st.phase.is_some_and(SetPhase::is_terminal)
            || st
                .conditions
                .iter()
                .any(|c| c.type_ == decide::COND_SELECTED && c.status == paddock_crds::condition::FALSE) =>
        {
            Selection::Loser(format!("AgentRunSet {set_name} selected no winner"))
        }
        None => {
            let attempt = run.status.as_ref().and_then(|s| s.attempt).unwrap_or(1);
            let failed = run
                .status
                .as_ref()
                .and_then(|s| s.verification.as_ref())
                .is_some_and(|v| {
                    v.attempt == attempt
                        && matches!(
                            v.result,
                            paddock_crds::VerificationResult::Failed | paddock_crds::VerificationResult::Error
                        )
                });
            if failed && set.spec.selection.policy != paddock_crds::SelectionPolicy::Manual {
                Selection::Loser(format!(
                    "its verification did not pass, and AgentRunSet {set_name}'s policy {} selects only a verified candidate",
                    set.spec.selection.policy.as_str()
                ))
            } else {
                Selection::Waiting
            }
        }
    }
}

/// [`selection_for`] with the owning set read from the API server (`NotACandidate` without a
/// GET for other runs).
///
/// # Errors
/// Transient API errors.
pub async fn selection_of(ctx: &Context, run: &AgentRun) -> Result<Selection> {
    let Some((set_name, _)) = owner_set(run) else {
        return Ok(Selection::NotACandidate);
    };
    let sets: Api<AgentRunSet> = Api::namespaced(
        ctx.client.clone(),
        run.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let set = sets.get_opt(&set_name).await?;
    Ok(selection_for(run, set.as_ref()))
}

/// The candidate runs a change of `set` wakes (its run controller's watch mapper): every
/// run of its table, once there is something for their pushes to learn (a winner, no winner,
/// a cancel or deletion); none before. Pure.
pub fn runs_of(set: &AgentRunSet) -> Vec<ObjectRef<AgentRun>> {
    let st = set.status.clone().unwrap_or_default();
    let decided = st.winner.is_some()
        || set.spec.cancel
        || set.metadata.deletion_timestamp.is_some()
        || st.phase.is_some_and(SetPhase::is_terminal)
        || st
            .conditions
            .iter()
            .any(|c| c.type_ == decide::COND_SELECTED && c.status == paddock_crds::condition::FALSE);
    if !decided {
        return Vec::new();
    }
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let name = set.metadata.name.clone().unwrap_or_default();
    set.spec
        .candidates
        .iter()
        .map(|c| ObjectRef::<AgentRun>::new(&decide::run_name(&name, &c.name)).within(&ns))
        .collect()
}
