//! The reads of the AgentRun reconcile: [`facts`] reads what every pass needs (the current
//! attempt's pod, from the pod cache first), [`resolve`] one more fact [`super::decide`] asked
//! for ([`Need`]).
//!
//! Three reads make sure of something as they read, and say so: [`Need::Egress`] applies the
//! pool's egress objects (the pool's own reconcile logic, so the first run of a new pool need not
//! wait for it), [`Need::InRunGates`] hands decided verdicts to the pod (an idempotent
//! server-side apply of its annotations), and the verification reads store the checks' log
//! ([`super::verifying`]). [`Need::Ending`] and [`Need::FollowedLog`] stop the run's log
//! follower before they read what it kept.

use super::build::{pod_name, pool_name};
use super::decide::{EgressFacts, EndFacts, Facts, Need, PodLookup, QueueFacts, ResumeSource};
use super::gates::{self, gate_name};
use super::{approvals, artifacts, follow, kueue, prompt, queue, verifying};
use crate::context::Context;
use crate::controller::agentrunset;
use crate::controller::egress::reconcile_egress_state;
use crate::error::{Error, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use paddock_crds::{AgentRun, ApprovalGate, Phase, RunnerPool};
use std::sync::Arc;

/// What every pass reads: the attempt, its pod (the cache first; a miss — a pod not created
/// yet, or created moments ago and not seen yet — asks the API server, so a pod is never taken
/// for lost because the cache lags), and whether a retried attempt's pod is still there.
///
/// # Errors
/// Transient API errors.
pub async fn facts(run: &AgentRun, ctx: &Arc<Context>) -> Result<Facts> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let status = run.status.clone().unwrap_or_default();
    let attempt = status.attempt.unwrap_or(1);
    let name = status.pod_name.clone().unwrap_or_else(|| pod_name(run, attempt));
    let cached = |n: &str| {
        ctx.pods
            .as_ref()
            .and_then(|s| s.get(&ObjectRef::<Pod>::new(n).within(ns)))
    };
    let pod = match cached(&name) {
        Some(p) => Some(Pod::clone(&p)),
        None => Api::<Pod>::namespaced(ctx.client.clone(), ns).get_opt(&name).await?,
    };
    let pod = match pod {
        None => PodLookup::Absent,
        Some(p) if owned_by_run(&p, run) => PodLookup::Own(Box::new(p)),
        Some(_) => PodLookup::Foreign,
    };
    let retried_pod_alive = status.next_attempt_at.is_some()
        && status
            .attempts
            .last()
            .and_then(|prev| cached(&prev.pod_name))
            .is_some_and(|p| p.metadata.deletion_timestamp.is_none());
    Ok(Facts {
        attempt,
        pod_name: name,
        pod: Some(pod),
        retried_pod_alive,
        verdict_key: ctx.verdict_key(),
        kueue: ctx.kueue,
        step_events: ctx.step_events,
        ..Default::default()
    })
}

/// Reads `need` into `facts`.
///
/// # Errors
/// Transient API errors.
pub async fn resolve(run: &AgentRun, ctx: &Arc<Context>, facts: &mut Facts, need: Need, now: &Time) -> Result<()> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let status = run.status.clone().unwrap_or_default();
    match need {
        Need::MovedPast => facts.moved_past = Some(moved_past(run, ctx, &facts.pod_name).await?),
        Need::PodRecorded => facts.pod_recorded = Some(pod_recorded(run, ctx, &facts.pod_name).await?),
        Need::AwaitedGate => {
            let gates: Api<ApprovalGate> = Api::namespaced(ctx.client.clone(), ns);
            let name = status.gate_name.clone().unwrap_or_default();
            facts.awaited_gate = Some(gates.get_opt(&name).await?.filter(|g| gates::owned_by(g, run)));
        }
        Need::FollowedLog => {
            stop_follower(run, ctx).await;
            // The attempt's pod is gone: its requests go with it.
            ctx.requests.forget(run.metadata.uid.as_deref().unwrap_or_default());
            facts.followed_log = Some(
                ctx.followers
                    .take_log(&format!("{ns}/{}", facts.pod_name))
                    .map(|l| l.text),
            );
        }
        Need::Pool => {
            let pools: Api<RunnerPool> = Api::namespaced(ctx.client.clone(), ns);
            facts.pool = Some(pools.get_opt(pool_name(run)).await?);
        }
        Need::Prompt => {
            let from = run.spec.prompt_from.clone().unwrap_or_default();
            let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
            let value = cms
                .get_opt(&from.name)
                .await?
                .and_then(|cm| cm.data)
                .and_then(|mut d| d.remove(&from.key));
            facts.prompt_from = Some(value);
        }
        Need::SpecPrompt => facts.spec_prompt = Some(prompt::fetch(&ctx.client, run).await?),
        Need::StartGate => {
            let gates: Api<ApprovalGate> = Api::namespaced(ctx.client.clone(), ns);
            let mut name = gate_name(run);
            let mut found = gates.get_opt(&name).await?;
            // A gate of an earlier run of the same name (deleted with --cascade=orphan) decides
            // nothing for this one: this run asks under a name of its own.
            if found.as_ref().is_some_and(|g| !gates::owned_by(g, run)) {
                name = gates::of_uid(&name, run);
                found = gates.get_opt(&name).await?;
            }
            facts.start_gate = Some((name, found));
        }
        Need::Resume => {
            let source = run
                .spec
                .resume_from
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            facts.resume = Some(resume_source(run, ctx, &source, now).await?);
        }
        Need::Egress => {
            let Some(Some(pool)) = &facts.pool else {
                facts.egress = Some(EgressFacts::NotReady);
                return Ok(());
            };
            facts.egress = Some(reconcile_egress_state(pool, ctx).await?.into());
        }
        Need::Workload => facts.workload = Some(kueue::admission(ctx, run).await?),
        Need::Flavors(flavors) => facts.flavors = Some(kueue::placement(ctx, &flavors).await?),
        Need::Queue => facts.queue = Some(queue_facts(run, ctx, facts).await),
        Need::Ending => {
            if let Some(uid) = &run.metadata.uid {
                follow::finish_follower(ctx, uid, follow::FOLLOWER_GRACE).await;
            }
            // The attempt ended: its requests wait for nothing any more.
            ctx.requests.forget(run.metadata.uid.as_deref().unwrap_or_default());
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
            let followed = ctx.followers.take_log(&format!("{ns}/{}", facts.pod_name));
            let own = match &facts.pod {
                Some(PodLookup::Own(pod)) => Some(pod),
                _ => None,
            };
            // As few log reads as the pod allows (docs/performance.md): the clone's events from
            // its termination message, the agent's from the follower when it read them all.
            let mut log = match own.map(|p| artifacts::clone_events(p)) {
                Some(artifacts::CloneEvents::Message(text)) => text,
                Some(artifacts::CloneEvents::NoContainer) => String::new(),
                Some(artifacts::CloneEvents::Log) | None => {
                    artifacts::fetch_container_log(&pods, &facts.pod_name, "clone").await
                }
            };
            match followed.as_ref().filter(|f| f.whole()) {
                Some(f) => log.push_str(&f.text),
                None => log.push_str(&artifacts::fetch_container_log(&pods, &facts.pod_name, "agent").await),
            }
            let followed = followed.map(|f| f.text);
            // The gateway (trusted) states the branch's facts, the patch and what the model
            // endpoint answered; the agent's log gives the events (and its own report, which
            // is not trusted for those).
            let mut gateway = artifacts::parse_gateway_log(&artifacts::fetch_gateway_log(&pods, &facts.pod_name).await);
            if let Some(PodLookup::Own(pod)) = &facts.pod {
                gateway = artifacts::with_termination_facts(gateway, pod);
            }
            facts.ending = Some(EndFacts { log, followed, gateway });
        }
        Need::Selection => facts.selection = Some(agentrunset::selection_of(ctx, run).await?),
        Need::InRunGates => {
            let Some(PodLookup::Own(pod)) = &facts.pod else {
                facts.in_run_gate = Some(None);
                return Ok(());
            };
            let verification = facts
                .held
                .as_ref()
                .and_then(|h| h.verification.clone())
                .or(status.verification.clone());
            let selection = facts.selection.clone().unwrap_or(agentrunset::Selection::NotACandidate);
            facts.in_run_gate = Some(approvals::sync_verdicts(ctx, run, pod, verification.as_ref(), &selection).await?);
        }
        Need::Plan => {
            let attempt = match &facts.pod {
                Some(PodLookup::Own(pod)) => approvals::pod_attempt(pod),
                _ => facts.attempt,
            };
            let gates = approvals::list_gates(ctx, run).await?;
            facts.plan = Some(approvals::plan_verdict(run, &gates, attempt));
        }
        Need::Requests => {
            let uid = run.metadata.uid.as_deref().unwrap_or_default();
            facts.requests = Some(ctx.requests.pending(uid));
        }
        Need::Held => {
            let read = verifying::held(run, ctx, &status, facts.attempt, &facts.pod_name, now).await?;
            facts.held = Some(read);
        }
        Need::Verify => {
            let v = status
                .verification
                .clone()
                .ok_or_else(|| Error::Internal("a verification was asked for without one".into()))?;
            facts.verify = Some(verifying::after_end(run, ctx, &status, v, now).await?);
        }
    }
    Ok(())
}

async fn stop_follower(run: &AgentRun, ctx: &Arc<Context>) {
    if let Some(uid) = &run.metadata.uid {
        follow::stop_follower(ctx, uid).await;
    }
}

/// The pool's queue from the cache. Holds the pool's admission lock (in `facts`) from here until
/// the pod exists, so `maxConcurrentRuns` is never exceeded. The count waits for the cache's
/// first list: a (re)started operator fills it in one go (kube-runtime's reflector applies
/// InitApply events at InitDone) while reconciles of the listed runs already start, and counting
/// before that sees an empty pool and admits every waiting run (the crash drill saw 8 pods in a
/// pool of 4).
async fn queue_facts(run: &AgentRun, ctx: &Arc<Context>, facts: &mut Facts) -> QueueFacts {
    let ready = ctx.runs.wait_until_ready().await.is_ok();
    if facts.admitting.is_none() {
        let key = format!(
            "{}/{}",
            run.metadata.namespace.as_deref().unwrap_or_default(),
            pool_name(run)
        );
        facts.admitting = Some(ctx.admissions.lock(&key).await);
    }
    let runs = ctx.runs.state();
    let admitted = ctx
        .admissions
        .counted(|k| {
            !runs
                .iter()
                .any(|r| queue::key_of(r) == k && r.status.as_ref().is_none_or(|s| s.pod_name.is_none()))
        })
        .await;
    QueueFacts { runs, admitted, ready }
}

/// Looks up the run `name` that `run` resumes. It must exist (a missing one is waited for up to
/// [`POOL_WAIT_SECS`] from `run`'s creation, as GitOps may apply both at once), have ended,
/// use the same agent, and have saved its session (`status.result.sessionRef`).
async fn resume_source(run: &AgentRun, ctx: &Arc<Context>, name: &str, now: &Time) -> Result<ResumeSource> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let runs: Api<AgentRun> = Api::namespaced(ctx.client.clone(), ns);
    let src = runs.get_opt(name).await?;
    Ok(super::resume::resume_from(run, src.as_ref(), name, now))
}

/// Whether the API server shows `run` past its attempt on pod `pod_name`: the run ended, or
/// that attempt is recorded in `status.attempts` (it was retried, and the operator deletes its
/// pod). The controller's cache can lag behind the status this operator wrote moments ago,
/// while the pod cache already shows the pod going away; ending the attempt again from the
/// cached status would record the deletion (`PodDeleted`, `PodLost`) over the attempt's real
/// cause.
///
/// # Errors
/// Transient API errors reading the run.
async fn moved_past(run: &AgentRun, ctx: &Arc<Context>, pod_name: &str) -> Result<bool> {
    let runs: Api<AgentRun> = Api::namespaced(
        ctx.client.clone(),
        run.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let fresh = runs.get_opt(run.metadata.name.as_deref().unwrap_or_default()).await?;
    Ok(fresh
        .and_then(|r| r.status)
        .is_some_and(|s| s.phase.is_some_and(Phase::is_terminal) || s.attempts.iter().any(|a| a.pod_name == pod_name)))
}

/// Whether the API server's status of `run` names pod `pod_name`, or moved past it (the run
/// ended, or that attempt was retried): the status the pass that started the pod wrote, when
/// the controller's cache does not show it yet. Adopting the pod from the cached status would
/// write over that one (a server-side apply drops the fields it no longer sets: the policy
/// snapshot, the start time), one status write more per run; it is left to the watch, which
/// brings the newer run and another reconcile.
///
/// # Errors
/// Transient API errors reading the run.
async fn pod_recorded(run: &AgentRun, ctx: &Arc<Context>, pod_name: &str) -> Result<bool> {
    let runs: Api<AgentRun> = Api::namespaced(
        ctx.client.clone(),
        run.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let fresh = runs.get_opt(run.metadata.name.as_deref().unwrap_or_default()).await?;
    Ok(fresh.and_then(|r| r.status).is_some_and(|s| {
        s.pod_name.as_deref() == Some(pod_name)
            || s.phase.is_some_and(Phase::is_terminal)
            || s.attempts.iter().any(|a| a.pod_name == pod_name)
    }))
}

/// Whether `pod` belongs to `run`: an owner reference with the run's UID (set on cold pods and
/// on claimed warm pods).
fn owned_by_run(pod: &Pod, run: &AgentRun) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| Some(&o.uid) == run.metadata.uid.as_ref())
}
