//! The writes of the AgentRun reconcile: [`effects`] makes a [`Plan`]'s writes in order, then
//! [`status`] writes the status (server-side apply, field manager `paddock.dev/agentrun`, only
//! when it changed) and publishes the Events, then [`after_status`] deletes what waits for the
//! status (a retried attempt's pod).

use super::decide::{Effect, Facts, Plan, StartPod, Started};
use super::{approvals, artifacts, follow, kueue, queue, verify, warm};
use crate::context::{Context, MANAGER_AGENTRUN};
use crate::error::{Result, Stage};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use paddock_crds::{AgentRun, ApprovalGate, Phase};
use std::sync::Arc;

/// Makes the plan's writes, in order, except the deletions that wait for the status write.
///
/// # Errors
/// Transient API errors; the plan's status is then not written and the next pass decides again.
pub async fn effects(run: &AgentRun, ctx: &Arc<Context>, facts: &mut Facts, plan: &mut Plan) -> Result<()> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    for effect in std::mem::take(&mut plan.effects) {
        let what = effect.kind();
        apply_one(run, ctx, facts, plan, &pods, effect)
            .await
            .map_err(|e| e.at(Stage::Write, what))?;
    }
    Ok(())
}

async fn apply_one(
    run: &AgentRun,
    ctx: &Arc<Context>,
    facts: &mut Facts,
    plan: &mut Plan,
    pods: &Api<Pod>,
    effect: Effect,
) -> Result<()> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    {
        match effect {
            Effect::CreateGate(gate) => {
                let gates: Api<ApprovalGate> = Api::namespaced(ctx.client.clone(), ns);
                // Created, never re-applied: humans own spec.decisions. One made by a
                // concurrent pass is read by the next.
                let pp = PostParams {
                    field_manager: Some(MANAGER_AGENTRUN.into()),
                    ..Default::default()
                };
                match gates.create(&pp, &gate).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Effect::CreateWorkload { queue, pod } => kueue::create_workload(ctx, run, &queue, &pod).await?,
            Effect::StartPod(start) => {
                let how = start_pod(run, ctx, facts, &start).await?;
                let pool_name = start.pool.metadata.name.clone().unwrap_or_default();
                // The start time is when the pod started, not when the pass began (it may have
                // waited for the pool's admission lock).
                let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
                super::decide::started(run, plan, facts.attempt, &pool_name, how, &now);
            }
            Effect::Follow(pod_name) => {
                // The run's start latency ends here, when the agent is first seen running: the
                // status says so later (once it ran a while), or, for a short run, never.
                if let Some(uid) = &run.metadata.uid {
                    ctx.state.metrics.agent_starts.saw(uid, std::time::Instant::now());
                }
                follow::ensure_follower(ctx, run, &pod_name).await
            }
            Effect::DeletePod(name) => delete_pod(pods, &name).await?,
            Effect::DeleteVerificationPod(name) => {
                // Best effort: the run ends VerificationTimedOut either way.
                if let Err(e) = delete_pod(pods, &name).await {
                    tracing::warn!(pod = name, error = %e, "cannot delete the overdue verification pod");
                }
            }
            Effect::DeletePodAfterStatus(name) => plan.effects.push(Effect::DeletePodAfterStatus(name)),
            Effect::StoreArtifacts(parsed) => {
                artifacts::apply_artifacts(&ctx.client, run, &parsed, artifacts::PatchLayout::WithLog).await?;
                if let Some(end) = &facts.ending {
                    artifacts::apply_transcript(&ctx.client, run, &end.gateway).await?;
                }
            }
            Effect::StoreAttemptLog(attempt, parsed) => {
                artifacts::apply_attempt_log(&ctx.client, run, attempt, &parsed).await?;
            }
            Effect::CreateVerificationPod(pod) => verify::create_pod(ctx, &pod).await?,
            Effect::RaiseRequest { pod, request } => {
                let uid = run.metadata.uid.as_deref().unwrap_or_default();
                // A request's failure is its own (the agent wrote it): logged and tried again on
                // the next pass, never the whole reconcile's.
                let settled = approvals::raise(ctx, run, &pod, &request).await.unwrap_or_else(|e| {
                    tracing::warn!(id = request.id, pod, error = %e, "cannot raise the gate of this request yet");
                    false
                });
                if settled {
                    ctx.requests.done(uid, &pod, &request.id);
                } else if ctx.requests.waited(uid, &pod, &request.id, approvals::REVIEW_PATIENCE) {
                    // The gateway reviews a real push request within a second: one it never
                    // reviewed was not the gateway's (an agent can print any event), and is not
                    // looked at every 2 s for the rest of the run. The same for a request whose
                    // gate keeps failing.
                    tracing::warn!(
                        id = request.id,
                        pod,
                        "this request's gate could not be raised in time; giving up on it"
                    );
                    ctx.requests.done(uid, &pod, &request.id);
                }
            }
        }
    }
    Ok(())
}

/// Claims a warm pod of the pool, or applies the cold pod, under the pool's admission lock when
/// the pool admits one run at a time ([`queue::serializes_admission`]).
async fn start_pod(run: &AgentRun, ctx: &Arc<Context>, facts: &mut Facts, start: &StartPod) -> Result<Started> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let pool_name = start.pool.metadata.name.clone().unwrap_or_default();
    if facts.admitting.is_none() && queue::serializes_admission(&start.pool) {
        facts.admitting = Some(ctx.admissions.lock(&format!("{ns}/{pool_name}")).await);
    }
    let claimed = if start.warm_allowed {
        warm::claim(ctx, run, &start.pool, facts.attempt, start.prompt(), &start.uplink).await?
    } else {
        warm::Claimed::Cold(Some("Kueue's flavor places the pod on other nodes".into()))
    };
    let how = match claimed {
        warm::Claimed::Pod(name) => Started::Claimed(name),
        warm::Claimed::Cold(why) => {
            let name = start
                .pod()
                .metadata
                .name
                .clone()
                .unwrap_or_else(|| facts.pod_name.clone());
            let mut value = serde_json::to_value(start.pod())?;
            value["apiVersion"] = "v1".into();
            value["kind"] = "Pod".into();
            Api::<Pod>::namespaced(ctx.client.clone(), ns)
                .patch(
                    &name,
                    &PatchParams::apply(MANAGER_AGENTRUN).force(),
                    &Patch::Apply(&value),
                )
                .await?;
            Started::Created(name, why)
        }
    };
    if start.admit {
        // Counted until the cache shows the pod name (pruned by the next count).
        ctx.admissions.admit(queue::key_of(run)).await;
    }
    Ok(how)
}

/// Writes the plan's status when it changed, then publishes its Events. `status.progress`
/// belongs to the log follower's field manager while the run goes on and is left out; the
/// write that ends the run carries the final counts when they changed (the follower was
/// stopped before the end was decided, and nothing writes the status after it but other
/// fields under other managers).
///
/// # Errors
/// API errors writing the status.
pub async fn status(run: &AgentRun, ctx: &Arc<Context>, plan: &Plan) -> Result<()> {
    if !plan.keep_cached {
        let mut new_status = plan.status.clone();
        let mut old = run.status.clone().unwrap_or_default();
        if !ends(plan) || new_status.progress == old.progress {
            new_status.progress = None;
            old.progress = None;
        }
        if new_status != old {
            let ns = run.metadata.namespace.as_deref().unwrap_or_default();
            let name = run.metadata.name.as_deref().unwrap_or_default();
            let api: Api<AgentRun> = Api::namespaced(ctx.client.clone(), ns);
            let patch =
                serde_json::json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "status": new_status});
            api.patch_status(
                name,
                &PatchParams::apply(MANAGER_AGENTRUN).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        }
    }
    for (t, reason, note) in &plan.events {
        ctx.publish(run, *t, reason, note.clone()).await;
    }
    Ok(())
}

/// The deletions that wait for the status write: a retried attempt's pod is deleted only after
/// the status recording the attempt's end is written, so its deletion (a pod watch event) never
/// wakes a reconcile that finds the pod going away while the API server still shows the attempt
/// running.
///
/// # Errors
/// API errors other than not found.
pub async fn after_status(run: &AgentRun, ctx: &Arc<Context>, plan: &Plan) -> Result<()> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    for effect in &plan.effects {
        if let Effect::DeletePodAfterStatus(name) = effect {
            delete_pod(&pods, name).await?;
        }
    }
    Ok(())
}

/// Whether the plan ends the run.
pub fn ends(plan: &Plan) -> bool {
    plan.status.phase.is_some_and(Phase::is_terminal)
}

async fn delete_pod(pods: &Api<Pod>, name: &str) -> Result<()> {
    match pods.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
