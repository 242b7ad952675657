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
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
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
        namespace = set.metadata.namespace.as_deref().unwrap_or_default(),
        name = set.metadata.name.as_deref().unwrap_or_default(),
    )
)]
pub async fn reconcile(set: Arc<AgentRunSet>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.state.metrics.reconcile(CONTROLLER);
    let ns = set
        .metadata
        .namespace
        .clone()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = set.metadata.name.clone().ok_or(Error::MissingField("metadata.name"))?;
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // Resolve: the set's runs (by label, owned by this set's UID) and its Pick gate.
    let runs_api: Api<AgentRun> = Api::namespaced(ctx.client.clone(), &ns);
    let listed = runs_api
        .list(&ListParams::default().labels(&format!("{}={name}", paddock_crds::LABEL_SET)))
        .await?;
    let mut runs = BTreeMap::new();
    for r in listed.items {
        if !decide::owned_by(&r.metadata, &set) {
            continue;
        }
        let candidate = r
            .metadata
            .name
            .as_deref()
            .and_then(|n| n.strip_prefix(&format!("{name}-")))
            .map(str::to_string);
        if let Some(c) = candidate.filter(|c| set.spec.candidates.iter().any(|x| &x.name == c)) {
            runs.insert(c, r);
        }
    }
    let gates: Api<ApprovalGate> = Api::namespaced(ctx.client.clone(), &ns);
    let gate = gates
        .get_opt(&decide::gate_name(&name))
        .await?
        .filter(|g| decide::owned_by(&g.metadata, &set));
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let plan = decide::decide(&set, &runs, gate.as_ref(), now);

    // Apply.
    for run in &plan.create {
        match runs_api.create(&PostParams::default(), run).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(kube::Error::Api(e)) if e.code == 422 || e.code == 400 => {
                // The template makes an invalid run: the API server said why; say it on the set.
                ctx.publish(
                    set.as_ref(),
                    kube::runtime::events::EventType::Warning,
                    "InvalidTemplate",
                    format!(
                        "AgentRun {} was refused: {}",
                        run.metadata.name.clone().unwrap_or_default(),
                        e.message
                    ),
                )
                .await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    for run in &plan.cancel {
        let patch = serde_json::json!({"spec": {"cancel": true}});
        match runs_api
            .patch(run, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
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
        let sets: Api<AgentRunSet> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = serde_json::json!({
            "apiVersion": "paddock.dev/v1alpha1",
            "kind": "AgentRunSet",
            "status": plan.status,
        });
        sets.patch_status(&name, &PatchParams::apply(MANAGER_SET).force(), &Patch::Apply(&patch))
            .await?;
    }
    for (t, reason, note) in plan.events {
        ctx.publish(set.as_ref(), t, &reason, note).await;
    }
    // Runs and the gate wake the set (owned objects); a safety net otherwise.
    Ok(if plan.status.phase.is_some_and(SetPhase::is_terminal) {
        Action::await_change()
    } else {
        Action::requeue(Duration::from_secs(60))
    })
}

/// Requeues failed reconciles with a short backoff and counts them.
pub fn error_policy(_set: Arc<AgentRunSet>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.state.metrics.error(CONTROLLER, error.reason());
    Action::requeue(Duration::from_secs(5))
}

/// Where a candidate run stands in its set's selection, as its push verdict needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The run is not a set's candidate.
    NotACandidate,
    /// No winner yet.
    Waiting,
    /// This run's candidate won: its push may go on.
    Winner,
    /// Another candidate won, or none will (the set ended or was cancelled): why.
    Loser(String),
}

/// The set that owns `run` as controller, if any: (set name, set UID).
pub fn owner_set(run: &AgentRun) -> Option<(String, String)> {
    paddock_crds::controller_set(run)
}

/// Whether `run` is a set's candidate (its controller owner is an AgentRunSet). Pure.
pub fn is_candidate(run: &AgentRun) -> bool {
    owner_set(run).is_some()
}

/// Where `run` stands given its owning `set` as read now (`None`: gone). Pure.
pub fn selection_for(run: &AgentRun, set: Option<&AgentRunSet>) -> Selection {
    let Some((set_name, uid)) = owner_set(run) else {
        return Selection::NotACandidate;
    };
    let Some(set) = set.filter(|s| s.metadata.uid.as_deref() == Some(uid.as_str())) else {
        return Selection::Loser(format!("its AgentRunSet {set_name} no longer exists"));
    };
    let me = run
        .metadata
        .name
        .as_deref()
        .and_then(|n| n.strip_prefix(&format!("{set_name}-")))
        .unwrap_or_default();
    let st = set.status.clone().unwrap_or_default();
    match st.winner.as_deref() {
        Some(w) if w == me => Selection::Winner,
        Some(w) => Selection::Loser(format!(
            "AgentRunSet {set_name} selected candidate {w}{}",
            st.selection.map(|s| format!(" ({})", s.message)).unwrap_or_default()
        )),
        None if set.spec.cancel => Selection::Loser(format!("AgentRunSet {set_name} was cancelled")),
        None if st.phase.is_some_and(SetPhase::is_terminal)
            || st
                .conditions
                .iter()
                .any(|c| c.type_ == decide::COND_SELECTED && c.status == paddock_crds::condition::FALSE) =>
        {
            Selection::Loser(format!("AgentRunSet {set_name} selected no winner"))
        }
        None => Selection::Waiting,
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

/// The candidate runs a change of `set` wakes (its run controller's watch mapper): every run
/// named in its table. Pure.
pub fn runs_of(set: &AgentRunSet) -> Vec<ObjectRef<AgentRun>> {
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let name = set.metadata.name.clone().unwrap_or_default();
    set.spec
        .candidates
        .iter()
        .map(|c| ObjectRef::<AgentRun>::new(&decide::run_name(&name, &c.name)).within(&ns))
        .collect()
}
