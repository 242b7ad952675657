//! The RunnerPool controller: keeps `status.running`, `status.queued` and the `Ready`
//! condition, computed from the AgentRun cache.

use crate::context::{Context, MANAGER_POOL};
use crate::controller::agentrun::build::pool_name;
use crate::error::{Error, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use paddock_crds::condition::{set_condition, FALSE, TRUE};
use paddock_crds::{AgentRun, Phase, RunnerPool, RunnerPoolStatus};
use std::sync::Arc;
use std::time::Duration;

/// Controller name used in metrics and logs.
pub const CONTROLLER: &str = "runnerpool";

/// (running, queued) runs of `pool` among `runs`. Pure.
pub fn count_runs(runs: &[Arc<AgentRun>], namespace: &str, pool: &str) -> (u32, u32) {
    let mut running = 0;
    let mut queued = 0;
    for r in runs
        .iter()
        .filter(|r| r.metadata.namespace.as_deref() == Some(namespace) && pool_name(r) == pool)
    {
        match r.status.as_ref().and_then(|s| s.phase) {
            Some(Phase::Running) => running += 1,
            Some(Phase::Queued) => queued += 1,
            _ => {}
        }
    }
    (running, queued)
}

/// Reconciles one pool's status.
///
/// # Errors
/// Transient API errors.
#[tracing::instrument(
    name = "reconcile",
    skip_all,
    err(Display),
    fields(
        controller = CONTROLLER,
        namespace = pool.metadata.namespace.as_deref().unwrap_or_default(),
        name = pool.metadata.name.as_deref().unwrap_or_default(),
    )
)]
pub async fn reconcile(pool: Arc<RunnerPool>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.state.metrics.reconcile(CONTROLLER);
    let ns = pool
        .metadata
        .namespace
        .clone()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = pool.metadata.name.clone().ok_or(Error::MissingField("metadata.name"))?;
    let (running, queued) = count_runs(&ctx.runs.state(), &ns, &name);
    let old = pool.status.clone().unwrap_or_default();
    let mut st = RunnerPoolStatus {
        running,
        queued,
        observed_generation: pool.metadata.generation,
        ..old.clone()
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let (status, reason, message) = if pool.spec.template.image.trim().is_empty() {
        (FALSE, "NoImage", "spec.template.image is empty".to_string())
    } else {
        (TRUE, "Ready", format!("{running} running, {queued} queued"))
    };
    set_condition(
        &mut st.conditions,
        "Ready",
        status,
        reason,
        &message,
        pool.metadata.generation,
        now,
    );
    if st != old {
        let api: Api<RunnerPool> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = serde_json::json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "RunnerPool", "status": st});
        api.patch_status(&name, &PatchParams::apply(MANAGER_POOL).force(), &Patch::Apply(&patch))
            .await?;
    }
    Ok(Action::await_change())
}

/// Requeues failed reconciles with a short backoff and counts them.
pub fn error_policy(_pool: Arc<RunnerPool>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.state.metrics.error(CONTROLLER, error.reason());
    Action::requeue(Duration::from_secs(5))
}
