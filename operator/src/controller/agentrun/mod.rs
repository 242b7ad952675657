//! The AgentRun controller. One reconcile is a pipeline:
//! deleted or ended? (evidence, pull request, Kueue's quota) → [`resolve::facts`] →
//! [`decide::decide`] (pure: the status, the Events and the writes, or one more fact to read
//! with [`resolve::resolve`]) → [`apply::effects`] → [`apply::status`] → [`apply::after_status`].

pub mod apply;
pub mod approvals;
pub mod artifacts;
pub mod build;
pub mod decide;
pub mod evidence;
pub mod follow;
pub mod gates;
pub mod gateway;
pub mod kueue;
pub mod prompt;
pub mod pullrequest;
pub mod queue;
pub mod resolve;
pub mod resume;
pub mod status;
pub mod verify;
pub mod verifying;
pub mod warm;

use crate::context::Context;
use crate::error::{Error, Result, Stage};
use decide::Step;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use paddock_crds::{AgentRun, AgentRunStatus, Phase};
use status::format_duration;
use std::sync::Arc;

pub use queue::runs_waiting_for_pool;

/// Controller name used in metrics and logs.
pub const CONTROLLER: &str = "agentrun";

/// Most facts one pass reads before it decides (each [`decide::Need`] at most once; a safety
/// bound, not a tuning knob).
const MAX_READS: usize = 24;

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
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
    run.metadata
        .namespace
        .as_ref()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    run.metadata.name.as_ref().ok_or(Error::MissingField("metadata.name"))?;
    // Deleted while holding the evidence finalizer: archive what there is, then let it go.
    if run.metadata.deletion_timestamp.is_some() {
        if let Some(uid) = &run.metadata.uid {
            follow::stop_follower(&ctx, uid).await;
            ctx.requests.forget(uid);
        }
        return evidence::on_delete(&run, &ctx).await;
    }
    let old = run.status.clone().unwrap_or_default();
    if old.phase.is_some_and(Phase::is_terminal) {
        if let Some(uid) = &run.metadata.uid {
            follow::stop_follower(&ctx, uid).await;
            ctx.requests.forget(uid);
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

    let now = now();
    let mut facts = resolve::facts(&run, &ctx).await.map_err(|e| e.at(Stage::Read, "Pod"))?;
    let mut reads = 0;
    let mut plan = loop {
        match decide::decide(&run, &facts, &now) {
            Step::Plan(plan) => break plan,
            Step::Need(need) if reads < MAX_READS => {
                reads += 1;
                let what = format!("{need:?}");
                resolve::resolve(&run, &ctx, &mut facts, need, &now)
                    .await
                    .map_err(|e| e.at(Stage::Read, what))?;
            }
            Step::Need(need) => {
                return Err(Error::Internal(format!(
                    "the reconcile asked for {need:?} once too often"
                )))
            }
        }
    };
    apply::effects(&run, &ctx, &mut facts, &mut plan).await?;
    // The pool's admission lock is held until the pod exists (the admissions set counts it
    // until the cache shows it).
    facts.admitting = None;
    // Duration column: set once, when the run ends (a running run's age is the Age column;
    // writing the clock every pass would make status churn).
    if let (Some(start), Some(end)) = (&plan.status.start_time, &plan.status.completion_time) {
        plan.status.duration = Some(format_duration(end.0.as_second() - start.0.as_second()));
    }
    apply::status(&run, &ctx, &plan)
        .await
        .map_err(|e| e.at(Stage::Status, "AgentRun"))?;
    if apply::ends(&plan) {
        finish_workload(&ctx, &run, &plan.status).await?;
    }
    apply::after_status(&run, &ctx, &plan)
        .await
        .map_err(|e| e.at(Stage::Write, "DeletePodAfterStatus"))?;
    Ok(plan.action.clone())
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

/// Requeues failed reconciles with a short backoff and counts them.
/// (The error itself is logged once, with the reconcile span's fields, by `reconcile`'s
/// `#[instrument(err)]`.)
pub fn error_policy(_run: Arc<AgentRun>, error: &Error, ctx: Arc<Context>) -> Action {
    crate::controller::requeue_failed(&ctx, CONTROLLER, error)
}

#[cfg(test)]
mod tests;
