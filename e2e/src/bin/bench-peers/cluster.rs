//! Namespaces for the benchmark's objects, Paddock's kwok pool, and the one real run whose
//! logs and result kwok replays.

use crate::system::{gvk, System};
use anyhow::{bail, Context as _, Result};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::Client;
use paddock_crds::Phase;
use paddock_e2e::{phase, wait_default_service_account, GitRepo, TestNs};
use serde_json::json;
use std::time::{Duration, Instant};

/// Label on every benchmark namespace.
pub const NS_LABEL: &str = "paddock.dev/bench";
/// A namespace for one system's objects, labelled for cleanup.
pub async fn namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_some() {
        delete_namespace(client, name).await?;
    }
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name, "labels": {NS_LABEL: "true"}}}))?;
    api.create(&PostParams::default(), &ns).await?;
    // Pods (Tekton's, agent-sandbox's) need the default ServiceAccount.
    wait_default_service_account(client, name).await
}

/// Deletes a namespace and waits until it is gone (its controller must be running to remove
/// finalizers).
pub async fn delete_namespace(client: &Client, name: &str) -> Result<()> {
    // The namespace controller of kube-controller-manager deletes thousands of objects at its
    // own client rate (minutes for 10k runs): delete the big collections first, one request
    // each (Paddock's runs have no finalizers; kwok removes deleted pods at once).
    let collections = [
        System::Paddock.resource(),
        System::Tekton.resource(),
        System::Sandbox.resource(),
        gvk("extensions.agents.x-k8s.io", "v1beta1", "SandboxClaim", "sandboxclaims"),
        gvk("", "v1", "Pod", "pods"),
        gvk("", "v1", "ConfigMap", "configmaps"),
        gvk("", "v1", "Event", "events"),
        gvk("events.k8s.io", "v1", "Event", "events"),
    ];
    for ar in &collections {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), name, ar);
        let dp = DeleteParams {
            grace_period_seconds: (ar.kind == "Pod").then_some(0),
            ..DeleteParams::background()
        };
        let _ = api.delete_collection(&dp, &Default::default()).await;
    }
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::background()).await;
    let t0 = Instant::now();
    while api.get_opt(name).await?.is_some() {
        if t0.elapsed() > Duration::from_secs(600) {
            bail!("namespace {name} not gone after 600 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// The pod annotation whose value kwok's completion stage (e2e/peers/kwok.yaml) makes the agent
/// container's termination message.
pub const RESULT_ANNOTATION: &str = "bench.paddock.dev/termination-message";
/// The pod annotation whose value kwok's ready stage makes the `clone` init container's
/// termination message.
pub const CLONE_ANNOTATION: &str = "bench.paddock.dev/clone-termination-message";

/// What kwok replays of the real run [`capture_runner`] made, besides its logs: the termination
/// messages of its `agent` (the runner's result) and `clone` (its events) containers.
#[derive(Clone, Debug, Default)]
pub struct Replay {
    /// The agent container's termination message.
    pub result: String,
    /// The clone container's termination message (empty when it wrote none).
    pub clone: String,
}

/// Runs one real AgentRun (shell agent, one file written) on the real node and keeps what its
/// pod left: the `clone`, `agent` and `gateway` containers' logs go to the files kwok serves as
/// every kwok pod's logs (CRI log format, in `$PADDOCK_RUN_DIR/peers/kwok/logs`), and the agent
/// and clone containers' termination messages are returned for [`RESULT_ANNOTATION`] and
/// [`CLONE_ANNOTATION`].
/// So on kwok Paddock's operator does what it does for a real run: follows and reads the logs,
/// stores the event log and the diff, and ends the run `Succeeded`.
pub async fn capture_runner() -> Result<Replay> {
    let ns = TestNs::new("bench-capture").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool("real", None).await?;
    ns.apply::<paddock_crds::AgentRun>(json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "metadata": {"name": "capture"},
        "spec": {"repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": "echo bench > bench.txt", "runnerPoolRef": {"name": "real"}}}))
        .await?;
    let run = ns.wait_finished("capture", Duration::from_secs(180)).await?;
    if phase(&run) != Some(Phase::Succeeded) {
        bail!("the capture run ended {:?}: {:?}", phase(&run), run.status);
    }
    let pod_name = run
        .status
        .as_ref()
        .and_then(|s| s.pod_name.clone())
        .context("capture run: no pod")?;
    let pods: Api<Pod> = ns.api();
    let dir =
        std::path::PathBuf::from(std::env::var("PADDOCK_RUN_DIR").unwrap_or_else(|_| "/var/lib/paddock-e2e".into()))
            .join("peers/kwok/logs");
    std::fs::create_dir_all(&dir)?;
    for c in ["clone", "agent", "gateway"] {
        let text = pods
            .logs(
                &pod_name,
                &kube::api::LogParams {
                    container: Some(c.into()),
                    ..Default::default()
                },
            )
            .await?;
        let cri: String = text
            .lines()
            .map(|l| format!("2026-01-01T00:00:00.000000000Z stdout F {l}\n"))
            .collect();
        std::fs::write(dir.join(format!("{c}.log")), cri)?;
    }
    let pod = pods.get(&pod_name).await?;
    let status = pod.status.unwrap_or_default();
    let message = |list: Option<Vec<k8s_openapi::api::core::v1::ContainerStatus>>, name: &str| {
        list.into_iter()
            .flatten()
            .find(|c| c.name == name)
            .and_then(|c| c.state?.terminated?.message)
    };
    let result = message(status.container_statuses, "agent")
        .context("capture run: the agent container has no termination message")?;
    let clone = message(status.init_container_statuses, "clone").unwrap_or_default();
    ns.cleanup().await;
    Ok(Replay { result, clone })
}

/// Paddock's pool on the kwok node, without a concurrency limit; its pods carry the captured
/// runner result for kwok (see [`capture_runner`]).
pub async fn paddock_pool(client: &Client, ns: &str, replay: &Replay) -> Result<()> {
    let pools: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &gvk("paddock.dev", "v1alpha1", "RunnerPool", "runnerpools"),
    );
    let pool: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "RunnerPool", "metadata": {"name": "kwok"},
        "spec": {"template": {
            "image": "localhost/paddock/runner:dev",
            "nodeSelector": {"type": "kwok"},
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            "annotations": {RESULT_ANNOTATION: replay.result, CLONE_ANNOTATION: replay.clone},
        }},
    }))?;
    pools.create(&PostParams::default(), &pool).await?;
    Ok(())
}
