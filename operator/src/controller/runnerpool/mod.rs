//! The RunnerPool controller: keeps the pool's warm pods at `spec.warm.replicas` (creating
//! missing ones, deleting surplus, stale and dead idle ones) and its status — `running`,
//! `queued` (from the AgentRun cache), `warmReady`, `warmTotal`, `warmSelector` and the `Ready`
//! condition — and the pool's egress gateway with its NetworkPolicies ([`egress`]).

use super::egress;

use crate::context::{Context, MANAGER_POOL};
use crate::controller::agentrun::build::pool_name;
use crate::controller::agentrun::warm::pod_ready;
use crate::controller::agentrun::warm::{build_warm_pod, warm_selector, warm_template_hash, ANNOTATION_TEMPLATE_HASH};
use crate::error::{Error, Result};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::api::{DeleteParams, ListParams, PostParams};
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

/// Shortest time between two status writes of one pool.
pub const STATUS_WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// Reconciles one pool: its warm pods, and its status (run counts, warm pods, `Ready`), written
/// at most once per [`STATUS_WRITE_INTERVAL`].
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
    let (_timer, ns, name) = super::begin_reconcile(&ctx, CONTROLLER, &pool.metadata)?;
    let (running, queued) = count_runs(&ctx.runs.state(), &ns, &name);
    let state = egress::reconcile_egress_state(&pool, &ctx).await?;
    let name_taken = match &state {
        egress::Egress::NameTaken(why) => Some(why.clone()),
        _ => None,
    };
    let uplink = state.uplink();
    let (warm_total, warm_ready) = match &uplink {
        Some(u) => reconcile_warm(&pool, &ctx, &ns, &name, u).await?,
        // The Service has no cluster IP yet: warm pods wait for it.
        None => (0, 0),
    };
    let old = pool.status.clone().unwrap_or_default();
    let desired = pool.spec.warm.as_ref().map_or(0, |w| w.replicas);
    let mut st = RunnerPoolStatus {
        running,
        queued,
        warm_ready,
        warm_total,
        warm_selector: Some(warm_selector(&name)),
        observed_generation: pool.metadata.generation,
        ..old.clone()
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let (status, reason, message) = if pool.spec.template.image.trim().is_empty() {
        (FALSE, "NoImage", "spec.template.image is empty".to_string())
    } else if let Some(why) = name_taken {
        (FALSE, "EgressNameTaken", why)
    } else if uplink.is_none() {
        (
            FALSE,
            "EgressGatewayNotReady",
            format!(
                "the egress gateway (Deployment {}) has no available pod; runs wait for it",
                paddock_crds::egress::gateway_name(&name)
            ),
        )
    } else if warm_ready < desired {
        (
            FALSE,
            "WarmPodsStarting",
            format!("{warm_ready} of {desired} warm pods ready; {running} running, {queued} queued"),
        )
    } else {
        (
            TRUE,
            "Ready",
            format!("{running} running, {queued} queued, {warm_ready} warm pods ready"),
        )
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
        // At most one status write per pool per STATUS_WRITE_INTERVAL: at 50 runs/s each run
        // starting and ending would otherwise cost the pool two writes; a change inside the
        // interval is written at its end (the requeue).
        let key = format!("{ns}/{name}");
        let wait = ctx.pool_status_wait(&key, STATUS_WRITE_INTERVAL);
        if !wait.is_zero() {
            return Ok(Action::requeue(wait));
        }
        let api: Api<RunnerPool> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = serde_json::json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "RunnerPool", "status": st});
        api.patch_status(&name, &PatchParams::apply(MANAGER_POOL).force(), &Patch::Apply(&patch))
            .await?;
    }
    Ok(Action::await_change())
}

/// What to do with a pool's idle warm pods. Pure.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WarmPlan {
    /// Pods to create.
    pub create: u32,
    /// Idle pods to delete: dead, built from an old template, or surplus (not-ready and newest
    /// first).
    pub delete: Vec<String>,
    /// Idle pods kept (the `/scale` status replicas).
    pub total: u32,
    /// Kept pods that are ready.
    pub ready: u32,
}

/// Plans `pods` (the pool's idle warm pods) towards `desired` replicas of template `hash`.
pub fn plan_warm(pods: &[Pod], desired: u32, hash: &str) -> WarmPlan {
    let mut plan = WarmPlan::default();
    let mut keep: Vec<&Pod> = vec![];
    for p in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let name = p.metadata.name.clone().unwrap_or_default();
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        let current = p
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_TEMPLATE_HASH))
            .is_some_and(|h| h == hash);
        if matches!(phase, Some("Succeeded" | "Failed")) || !current {
            plan.delete.push(name);
        } else {
            keep.push(p);
        }
    }
    // Surplus: drop pods that are not ready first, then the newest.
    keep.sort_by_key(|p| {
        (
            pod_ready(p),
            std::cmp::Reverse(p.metadata.creation_timestamp.clone().map(|t| t.0)),
        )
    });
    while keep.len() > desired as usize {
        let p = keep.remove(0);
        plan.delete.push(p.metadata.name.clone().unwrap_or_default());
    }
    plan.total = keep.len() as u32;
    plan.ready = keep.iter().filter(|p| pod_ready(p)).count() as u32;
    plan.create = desired.saturating_sub(plan.total);
    plan
}

/// Brings the pool's idle warm pods to `spec.warm.replicas`; returns `(total, ready)` after the
/// changes (created pods count in total, not in ready). Lists the pool's idle pods from the API
/// (not a cache), so a pod created by the previous pass is never created twice.
async fn reconcile_warm(
    pool: &RunnerPool,
    ctx: &Context,
    ns: &str,
    name: &str,
    uplink: &egress::PodUplink,
) -> Result<(u32, u32)> {
    let desired = pool.spec.warm.as_ref().map_or(0, |w| w.replicas);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let had_warm = pool.status.as_ref().is_some_and(|s| s.warm_total > 0);
    if desired == 0 && !had_warm {
        return Ok((0, 0));
    }
    let idle = pods.list(&ListParams::default().labels(&warm_selector(name))).await?;
    let plan = plan_warm(
        &idle.items,
        desired,
        &warm_template_hash(pool, &ctx.verdict_key(), Some(uplink)),
    );
    for victim in &plan.delete {
        match pods.delete(victim, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if plan.create > 0 {
        let pod = build_warm_pod(pool, &ctx.verdict_key(), Some(uplink));
        let params = PostParams {
            field_manager: Some(MANAGER_POOL.into()),
            ..Default::default()
        };
        for _ in 0..plan.create {
            pods.create(&params, &pod).await?;
        }
    }
    Ok((plan.total + plan.create, plan.ready))
}

/// Counts a failed reconcile and requeues it ([`super::requeue_failed`]).
pub fn error_policy(_pool: Arc<RunnerPool>, error: &Error, ctx: Arc<Context>) -> Action {
    super::requeue_failed(&ctx, CONTROLLER, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn pod(name: &str, created: i64, hash: &str, phase: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(k8s_openapi::jiff::Timestamp::from_second(created).unwrap())),
                annotations: Some(BTreeMap::from([(
                    ANNOTATION_TEMPLATE_HASH.to_string(),
                    hash.to_string(),
                )])),
                ..Default::default()
            },
            spec: None,
            status: Some(crate::controller::agentrun::warm::pod_status(phase, ready)),
        }
    }

    #[test]
    fn warm_plan_replaces_dead_and_stale_pods_and_trims_surplus() {
        let pods = vec![
            pod("ready-old", 1, "h", "Running", true),
            pod("ready-new", 5, "h", "Running", true),
            pod("starting", 3, "h", "Pending", false),
            pod("dead", 2, "h", "Failed", false),
            pod("stale", 2, "old", "Running", true),
        ];
        let plan = plan_warm(&pods, 5, "h");
        assert_eq!(plan.delete, ["dead", "stale"]);
        assert_eq!((plan.create, plan.total, plan.ready), (2, 3, 2));
        // Scale down to 1: the starting pod goes first, then the newest ready one.
        let plan = plan_warm(&pods, 1, "h");
        assert_eq!(plan.delete, ["dead", "stale", "starting", "ready-new"]);
        assert_eq!((plan.create, plan.total, plan.ready), (0, 1, 1));
        let plan = plan_warm(&pods, 0, "h");
        assert_eq!((plan.delete.len(), plan.total), (5, 0));
        assert_eq!(plan_warm(&[], 2, "h").create, 2);
    }
}
