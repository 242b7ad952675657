//! Claiming one of the pool's warm pods for a run: the pod's labels, owner and activeDeadline
//! change and the run's settings arrive in the [`paddock_crds::ANNOTATION_CLAIM`] annotation,
//! which the runner reads from its downward API volume. The pod is not restarted.
//!
//! The claim is one PATCH carrying the pod's `resourceVersion`: two runs racing for the same pod
//! cannot both win (the loser gets 409 and tries the next pod). A pod this run's attempt already
//! claimed (the operator stopped before recording it in status) is adopted, never doubled.

use super::build::{self, owner_ref, timeout_secs};
use crate::context::{Context, MANAGER_AGENTRUN};
use crate::error::Result;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use paddock_crds::{AgentRun, RunnerPool, ANNOTATION_CLAIM, LABEL_ATTEMPT, LABEL_POOL, LABEL_RUN, LABEL_WARM};
use std::sync::Arc;

/// Largest claim annotation (bytes of base64); the API server allows 256 KiB of annotations
/// per object in total.
pub const MAX_CLAIM_BYTES: usize = 200 * 1024;

/// How a run's pod comes to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Claimed {
    /// This warm pod is now the run's.
    Pod(String),
    /// Create a pod (cold start); `Some(why)` when the pool has warm pods the run could not use.
    Cold(Option<String>),
}

/// Whether `pod` is running with every container ready (its `Ready` condition).
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// Idle warm pods of `pool` among `pods` that a run may claim now: ready, not terminating,
/// built from the pool's current template and `verdict_key`; oldest first.
pub fn claimable<'a>(
    pods: &'a [Pod],
    pool: &RunnerPool,
    verdict_key: &str,
    uplink: Option<&build::PodUplink>,
) -> Vec<&'a Pod> {
    let hash = build::warm_template_hash(pool, verdict_key, uplink);
    let mut out: Vec<&Pod> = pods
        .iter()
        .filter(|p| label(p, LABEL_WARM) == Some("idle"))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(build::ANNOTATION_TEMPLATE_HASH))
                == Some(&hash)
        })
        .filter(|p| pod_ready(p))
        .collect();
    out.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
    out
}

/// The merge patch that claims warm `pod` for `run`'s `attempt`, guarded by the pod's
/// resourceVersion: labels, the claim annotation and its `signature` (base64,
/// [`paddock_crds::verdict::ANNOTATION_CLAIM_SIGNATURE`]), owner, deadline (`now_secs`: Unix
/// seconds).
pub fn claim_patch(
    run: &AgentRun,
    pod: &Pod,
    attempt: u32,
    claim: &str,
    signature: &str,
    now_secs: i64,
) -> serde_json::Value {
    // activeDeadlineSeconds counts from the pod's start; the run's budget counts from now.
    let started = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map_or(now_secs, |t| t.0.as_second());
    let timeout = timeout_secs(run).unwrap_or(build::DEFAULT_TIMEOUT_SECS) as i64;
    serde_json::json!({
        "metadata": {
            "resourceVersion": pod.metadata.resource_version,
            "labels": {
                LABEL_WARM: "claimed",
                LABEL_RUN: run.metadata.name,
                LABEL_ATTEMPT: attempt.to_string(),
            },
            "annotations": {
                ANNOTATION_CLAIM: claim,
                paddock_crds::verdict::ANNOTATION_CLAIM_SIGNATURE: signature,
            },
            "ownerReferences": [owner_ref(run)],
        },
        "spec": { "activeDeadlineSeconds": (now_secs - started).max(0) + timeout },
    })
}

/// Claims a warm pod of `pool` for `run`'s `attempt`, or says why the run starts cold.
/// `prompt` is the resolved prompt text.
///
/// # Errors
/// Transient API errors (listing or patching pods).
pub async fn claim(
    ctx: &Arc<Context>,
    run: &AgentRun,
    pool: &RunnerPool,
    attempt: u32,
    prompt: &str,
    uplink: &build::PodUplink,
) -> Result<Claimed> {
    if pool.spec.warm.as_ref().is_none_or(|w| w.replicas == 0) {
        return Ok(Claimed::Cold(None));
    }
    if let Some(why) = build::warm_unsuitable(run, pool) {
        return Ok(Claimed::Cold(Some(why)));
    }
    let claim = match build::claim_value(run, pool, prompt, attempt) {
        Ok(c) => c,
        // build_pod refuses such a run first; a warm pod never runs it.
        Err(e) => return Ok(Claimed::Cold(Some(e.to_string()))),
    };
    if claim.len() > MAX_CLAIM_BYTES {
        return Ok(Claimed::Cold(Some(format!(
            "the run's settings ({} bytes encoded) do not fit in a pod annotation",
            claim.len()
        ))));
    }
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let pool_name = pool.metadata.name.as_deref().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("{LABEL_POOL}={pool_name},{LABEL_WARM}")))
        .await?;
    // Adopt the pod this attempt already claimed, if the operator stopped before recording it.
    let attempt_s = attempt.to_string();
    if let Some(p) = list.items.iter().find(|p| {
        label(p, LABEL_RUN) == run.metadata.name.as_deref()
            && label(p, LABEL_ATTEMPT) == Some(attempt_s.as_str())
            && p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| Some(&o.uid) == run.metadata.uid.as_ref())
    }) {
        return Ok(Claimed::Pod(p.metadata.name.clone().unwrap_or_default()));
    }
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let params = PatchParams {
        field_manager: Some(MANAGER_AGENTRUN.into()),
        ..Default::default()
    };
    for pod in claimable(&list.items, pool, &ctx.verdict_key(), Some(uplink)) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let patch = claim_patch(
            run,
            pod,
            attempt,
            &claim,
            &ctx.signer.sign(&paddock_crds::verdict::claim_message(
                &claim,
                pod.metadata.uid.as_deref().unwrap_or_default(),
            )),
            now,
        );
        match pods.patch(&name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => return Ok(Claimed::Pod(name)),
            // Claimed by another run, or gone: try the next one.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Claimed::Cold(Some("no warm pod was ready".into())))
}

/// A pod status in `phase` whose `Ready` condition is `ready` (tests of warm pods).
#[cfg(test)]
pub(crate) fn pod_status(phase: &str, ready: bool) -> k8s_openapi::api::core::v1::PodStatus {
    k8s_openapi::api::core::v1::PodStatus {
        phase: Some(phase.into()),
        conditions: Some(vec![k8s_openapi::api::core::v1::PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use paddock_crds::{RunnerPoolSpec, RunnerTemplate};

    fn pool() -> RunnerPool {
        let mut p = RunnerPool::new(
            "p",
            RunnerPoolSpec {
                template: RunnerTemplate {
                    image: "runner:1".into(),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        p.metadata.namespace = Some("ns".into());
        p
    }

    fn warm_pod(name: &str, created: i64, ready: bool, pool: &RunnerPool) -> Pod {
        let mut p = build::build_warm_pod(pool, "test-key", None);
        p.metadata.name = Some(name.into());
        p.metadata.resource_version = Some(format!("rv-{name}"));
        p.metadata.creation_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::from_second(created).unwrap()));
        let mut st = pod_status("Running", ready);
        st.start_time = Some(Time(k8s_openapi::jiff::Timestamp::from_second(created + 2).unwrap()));
        p.status = Some(st);
        p
    }

    #[test]
    fn only_ready_idle_current_pods_are_claimable_oldest_first() {
        let p = pool();
        let mut stale = warm_pod("stale", 1, true, &p);
        stale
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(build::ANNOTATION_TEMPLATE_HASH.into(), "old".into());
        let mut claimed = warm_pod("claimed", 1, true, &p);
        claimed
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(LABEL_WARM.into(), "claimed".into());
        let pods = vec![
            warm_pod("young", 30, true, &p),
            warm_pod("starting", 5, false, &p),
            warm_pod("old", 10, true, &p),
            stale,
            claimed,
        ];
        let names: Vec<_> = claimable(&pods, &p, "test-key", None)
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["old", "young"]);
    }

    #[test]
    fn the_claim_moves_the_pod_to_the_run_under_its_resource_version() {
        let p = pool();
        let pod = warm_pod("w", 1000, true, &p);
        let mut run = AgentRun::new(
            "r1",
            serde_json::from_value(serde_json::json!({"repo": {"url": "https://x/r.git"}, "agent": {"name": "shell"}, "prompt": "p", "budget": {"timeout": "10m"}})).unwrap(),
        );
        run.metadata.uid = Some("run-uid".into());
        let patch = claim_patch(&run, &pod, 2, "Y2xhaW0=", "c2ln", 1100);
        let meta = &patch["metadata"];
        assert_eq!(meta["resourceVersion"], "rv-w");
        assert_eq!(meta["labels"][LABEL_WARM], "claimed");
        assert_eq!(meta["labels"][LABEL_RUN], "r1");
        assert_eq!(meta["labels"][LABEL_ATTEMPT], "2");
        assert_eq!(meta["annotations"][ANNOTATION_CLAIM], "Y2xhaW0=");
        assert_eq!(
            meta["annotations"][paddock_crds::verdict::ANNOTATION_CLAIM_SIGNATURE],
            "c2ln"
        );
        assert_eq!(meta["ownerReferences"][0]["uid"], "run-uid");
        assert_eq!(meta["ownerReferences"][0]["controller"], true);
        // Started at 1002, claimed at 1100: the 10-minute budget ends at 1100 + 600.
        assert_eq!(patch["spec"]["activeDeadlineSeconds"], 98 + 600);
    }
}
