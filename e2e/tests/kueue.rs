//! End-to-end for the Kueue integration: Kueue's real controller (built from its Go module,
//! started by e2e/kueue.sh with `externalFrameworks: [AgentRun.v1alpha1.paddock.dev]`), Paddock
//! installed with `kueue.enabled=true` (run-e2e.sh does both).
//!
//! Each test makes its own ClusterQueue, selecting only its namespace, so tests in parallel do
//! not share quota.

use anyhow::{bail, Result};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use paddock_crds::Reason;
use paddock_crds::{AgentRun, Phase};
use paddock_e2e::{condition, phase, GitRepo, TestNs};
use serde_json::json;
use std::time::{Duration, Instant};

const RUN_TIMEOUT: Duration = Duration::from_secs(180);

fn kueue(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kueue.x-k8s.io", "v1beta2", kind), plural)
}

async fn apply_dynamic(api: &Api<DynamicObject>, obj: serde_json::Value) -> Result<()> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    api.patch(&name, &PatchParams::apply("paddock-e2e").force(), &Patch::Apply(&obj))
        .await?;
    Ok(())
}

/// A ResourceFlavor, a ClusterQueue `<ns>` for this namespace only with `cpu` quota, and a
/// LocalQueue `lq` in it.
async fn queues(ns: &TestNs, cpu: &str) -> Result<()> {
    let flavors: Api<DynamicObject> = Api::all_with(ns.client.clone(), &kueue("ResourceFlavor", "resourceflavors"));
    apply_dynamic(
        &flavors,
        json!({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor",
        "metadata": {"name": "paddock-e2e"}}),
    )
    .await?;
    let cqs: Api<DynamicObject> = Api::all_with(ns.client.clone(), &kueue("ClusterQueue", "clusterqueues"));
    apply_dynamic(
        &cqs,
        json!({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue",
        "metadata": {"name": ns.name},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns.name}},
            "resourceGroups": [{"coveredResources": ["cpu", "memory"], "flavors": [{"name": "paddock-e2e",
                "resources": [{"name": "cpu", "nominalQuota": cpu}, {"name": "memory", "nominalQuota": "4Gi"}]}]}],
        }}),
    )
    .await?;
    let lqs: Api<DynamicObject> =
        Api::namespaced_with(ns.client.clone(), &ns.name, &kueue("LocalQueue", "localqueues"));
    apply_dynamic(
        &lqs,
        json!({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
        "metadata": {"name": "lq"}, "spec": {"clusterQueue": ns.name}}),
    )
    .await?;
    Ok(())
}

async fn queued_run(ns: &TestNs, repo: &GitRepo, name: &str, queue: &str, prompt: &str) -> Result<AgentRun> {
    ns.apply::<AgentRun>(json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": name, "labels": {"kueue.x-k8s.io/queue-name": queue}},
        "spec": {"repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": prompt}}))
        .await
}

fn workload_condition(wl: &DynamicObject, type_: &str) -> Option<(String, String)> {
    wl.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
}

#[tokio::test]
async fn kueue_admits_runs_within_quota_and_finishing_releases_it() -> Result<()> {
    let ns = TestNs::new("kueue").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool("default", None).await?;
    // A runner pod asks for 100m CPU (agent 50m + gateway sidecar 50m): room for one at a time.
    queues(&ns, "150m").await?;
    queued_run(&ns, &repo, "k1", "lq", "sleep 4; echo one > one.txt").await?;
    ns.wait_run("k1", RUN_TIMEOUT, "running", |r| phase(r) == Some(Phase::Running))
        .await?;
    queued_run(&ns, &repo, "k2", "lq", "echo two > two.txt").await?;
    let k2 = ns
        .wait_run("k2", RUN_TIMEOUT, "waiting for Kueue", |r| {
            condition(r, "Queued").is_some_and(|c| c.1 == Reason::WaitingForKueue && c.2.contains("quota"))
        })
        .await?;
    let msg = condition(&k2, "Queued").map(|c| c.2).unwrap_or_default();
    assert!(msg.contains("Workload agentrun-k2 in LocalQueue lq"), "{msg}");
    assert!(
        k2.status.as_ref().is_some_and(|s| s.pod_name.is_none()),
        "no pod before admission"
    );

    let k1 = ns.wait_finished("k1", RUN_TIMEOUT).await?;
    let k2 = ns.wait_finished("k2", RUN_TIMEOUT).await?;
    assert_eq!(
        (phase(&k1), phase(&k2)),
        (Some(Phase::Succeeded), Some(Phase::Succeeded))
    );
    let k1_end = k1.status.and_then(|s| s.completion_time).map(|t| t.0);
    let k2_start = k2.status.and_then(|s| s.start_time).map(|t| t.0);
    assert!(k2_start >= k1_end, "k2 started {k2_start:?} before k1 ended {k1_end:?}");

    // Both Workloads are Finished (quota released) and owned by their runs.
    let wls: Api<DynamicObject> = Api::namespaced_with(ns.client.clone(), &ns.name, &kueue("Workload", "workloads"));
    for run in ["k1", "k2"] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let wl = wls.get(&format!("agentrun-{run}")).await?;
            if workload_condition(&wl, "Finished") == Some(("True".into(), "Succeeded".into())) {
                assert_eq!(
                    workload_condition(&wl, "Admitted").map(|c| c.0).as_deref(),
                    Some("True")
                );
                let owner = &wl.metadata.owner_references.clone().unwrap_or_default()[0];
                assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("AgentRun", run));
                assert!(!wl.data.to_string().contains("sleep 4"), "no prompt in the Workload");
                break;
            }
            if Instant::now() > deadline {
                bail!("Workload of {run} not Finished: {:?}", wl.data["status"]);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let cqs: Api<DynamicObject> = Api::all_with(ns.client.clone(), &kueue("ClusterQueue", "clusterqueues"));
    let cq = ns.name.clone();
    ns.cleanup().await;
    // Kueue deletes it once the namespace's Workloads are gone (its finalizer).
    let _ = cqs.delete(&cq, &DeleteParams::default()).await;
    Ok(())
}

#[tokio::test]
async fn a_run_for_a_missing_local_queue_waits_with_kueues_reason_and_can_be_cancelled() -> Result<()> {
    let ns = TestNs::new("kueue-missing").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool("default", None).await?;
    queued_run(&ns, &repo, "lost", "no-such-queue", "echo x > x.txt").await?;
    let r = ns
        .wait_run("lost", RUN_TIMEOUT, "Kueue's reason", |r| {
            condition(r, "Queued").is_some_and(|c| c.1 == Reason::WaitingForKueue && c.2.contains("no-such-queue"))
        })
        .await?;
    assert_eq!(phase(&r), Some(Phase::Queued));
    ns.api::<AgentRun>()
        .patch(
            "lost",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cancel": true}})),
        )
        .await?;
    let r = ns.wait_finished("lost", RUN_TIMEOUT).await?;
    assert_eq!(phase(&r), Some(Phase::Cancelled));
    let wls: Api<DynamicObject> = Api::namespaced_with(ns.client.clone(), &ns.name, &kueue("Workload", "workloads"));
    let wl = wls.get("agentrun-lost").await?;
    assert_eq!(
        workload_condition(&wl, "Finished").map(|c| c.0).as_deref(),
        Some("True")
    );
    ns.cleanup().await;
    Ok(())
}
