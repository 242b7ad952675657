//! The AgentRun controller (the operator binary, as the chart's ServiceAccount) against the real
//! API server: the phases a run goes through before and after its pod exists, the pod it
//! creates, cancel, and a pool's maxConcurrentRuns. Pods are never scheduled (no scheduler, no
//! kubelet): a run's pod stays Pending, which is all these tests need.

use crate::harness::{condition, phase_of, Env};
use anyhow::Result;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Patch, PatchParams};
use paddock_crds::egress::{gateway_name, runners_policy_name, APP_NAME, PORT, PROXY_ENV, RUNNER_APP_NAME, TOKEN_ENV};
use paddock_crds::{AgentRun, Phase, LABEL_POOL, LABEL_RUN};
use serde_json::json;

/// Sets `spec.cancel: true` on run `name`.
pub async fn cancel(env: &Env, name: &str) -> Result<()> {
    env.api::<AgentRun>()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cancel": true}})),
        )
        .await?;
    Ok(())
}

/// Waits until pod `name` is gone.
pub async fn wait_pod_gone(env: &Env, name: &str) -> Result<()> {
    let pods = env.api::<Pod>();
    env.eventually(&format!("pod {name} deleted"), || async {
        Ok(pods.get_opt(name).await?.is_none().then_some(()))
    })
    .await
}

/// A run waits for its pool (PoolNotFound), then for the pool's egress gateway
/// (WaitingForEgressGateway); once the gateway's Deployment is available it gets its pod
/// (PodCreated), and cancelling it deletes the pod (Cancelled).
#[tokio::test]
async fn a_run_waits_for_its_pool_and_gateway_then_gets_its_pod_until_cancelled() -> Result<()> {
    let env = Env::with_operator("lifecycle").await?;
    let run = env.run("r1", "p1", json!({})).await?;
    let uid = run.metadata.uid.clone().unwrap();

    let r = env.wait_run("r1", Phase::Pending, "Succeeded", "PoolNotFound").await?;
    let (_, _, message) = condition(&r, "Succeeded").unwrap();
    assert!(message.contains("RunnerPool p1 does not exist"), "{message}");

    // The pool appearing wakes the run (the pool watch), which then waits for the gateway.
    env.pool("p1", json!({})).await?;
    env.wait_run("r1", Phase::Pending, "Succeeded", "WaitingForEgressGateway")
        .await?;
    // The operator applied the pool's egress objects, owned by the pool.
    let pool_uid = env.api::<paddock_crds::RunnerPool>().get("p1").await?.metadata.uid;
    let gw = env.api::<Deployment>().get(&gateway_name("p1")).await?;
    let owner = &gw.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("RunnerPool", "p1"));
    assert_eq!(Some(owner.uid.clone()), pool_uid);
    assert_eq!(owner.block_owner_deletion, Some(true));
    let labels = gw.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("app.kubernetes.io/name").map(String::as_str), Some(APP_NAME));
    assert_eq!(labels.get(LABEL_POOL).map(String::as_str), Some("p1"));
    env.api::<NetworkPolicy>().get(&runners_policy_name("p1")).await?;
    // The API server allocated the gateway Service's ClusterIP.
    let svc = env.api::<Service>().get(&gateway_name("p1")).await?;
    let ip = svc.spec.and_then(|s| s.cluster_ip).expect("a ClusterIP");
    assert!(
        env.api::<Pod>().get_opt("r1-1").await?.is_none(),
        "a pod before the gateway is available"
    );

    env.mark_available(&gateway_name("p1")).await?;
    let r = env.wait_run("r1", Phase::Running, "Running", "PodCreated").await?;
    let status = r.status.clone().unwrap();
    assert_eq!(status.pod_name.as_deref(), Some("r1-1"));
    assert!(status.start_time.is_some());

    let pod = env.api::<Pod>().get("r1-1").await?;
    let owners = pod.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!((owners[0].kind.as_str(), owners[0].name.as_str()), ("AgentRun", "r1"));
    assert_eq!(owners[0].uid, uid);
    assert_eq!(owners[0].controller, Some(true));
    // Admitted by OwnerReferencesPermissionEnforcement (e2e/envtest.sh enables it) because the
    // chart's RBAC grants the operator update on agentruns/finalizers.
    assert_eq!(owners[0].block_owner_deletion, Some(true));
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get(LABEL_RUN).map(String::as_str), Some("r1"));
    assert_eq!(labels.get(LABEL_POOL).map(String::as_str), Some("p1"));
    assert_eq!(
        labels.get("app.kubernetes.io/name").map(String::as_str),
        Some(RUNNER_APP_NAME)
    );
    let spec = pod.spec.clone().unwrap();
    assert_eq!(spec.automount_service_account_token, Some(false));
    assert_eq!(spec.node_name, None, "nothing schedules pods here");
    let inits: Vec<&str> = spec.init_containers.iter().flatten().map(|c| c.name.as_str()).collect();
    assert!(inits.starts_with(&["clone", "gateway"]), "init containers {inits:?}");
    let containers: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(containers, ["agent"]);
    let gateway = spec
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == "gateway")
        .unwrap();
    assert_eq!(
        gateway.restart_policy.as_deref(),
        Some("Always"),
        "gateway is a native sidecar"
    );
    let env_of = |c: &k8s_openapi::api::core::v1::Container, name: &str| {
        c.env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(env_of(gateway, PROXY_ENV), Some(format!("http://{ip}:{PORT}")));
    assert!(env_of(gateway, TOKEN_ENV).is_some_and(|t| !t.is_empty()));
    let agent = &spec.containers[0];
    assert_eq!(
        env_of(agent, TOKEN_ENV),
        None,
        "the agent container holds the egress token"
    );
    assert_eq!(agent.image.as_deref(), Some("registry.invalid/paddock-runner:envtest"));

    cancel(&env, "r1").await?;
    let r = env.wait_run("r1", Phase::Cancelled, "Succeeded", "Cancelled").await?;
    assert!(r.status.unwrap().completion_time.is_some());
    wait_pod_gone(&env, "r1-1").await?;
    Ok(())
}

/// Three runs in a pool with maxConcurrentRuns 1: one pod, the other two Queued
/// (WaitingForCapacity) at positions 1 and 2 in creation order; cancelling the running one
/// admits the first in line.
#[tokio::test]
async fn a_pool_of_one_runs_one_and_queues_the_rest_in_order() -> Result<()> {
    let env = Env::with_operator("queue").await?;
    env.pool("one", json!({"maxConcurrentRuns": 1})).await?;
    env.mark_available(&gateway_name("one")).await?;
    // Created one after the other, each after the previous one has a phase, so creation order
    // (the FIFO order) is q1, q2, q3 even within one second (ties go by name, also in order).
    for name in ["q1", "q2", "q3"] {
        env.run(name, "one", json!({})).await?;
        let runs = env.api::<AgentRun>();
        env.eventually(&format!("{name} has a phase"), || async {
            Ok(phase_of(&runs.get(name).await?).map(|_| ()))
        })
        .await?;
    }
    env.wait_run("q1", Phase::Running, "Running", "PodCreated").await?;
    for (name, position) in [("q2", 1), ("q3", 2)] {
        let r = env
            .wait_run(name, Phase::Queued, "Queued", "WaitingForCapacity")
            .await?;
        let status = r.status.clone().unwrap();
        assert_eq!(status.queue_position, Some(position), "{name}");
        assert_eq!(status.pod_name, None, "{name}");
        let (_, _, message) = condition(&r, "Queued").unwrap();
        assert!(message.contains(&format!("position {position}")), "{name}: {message}");
    }
    let pods = env.api::<Pod>().list(&Default::default()).await?;
    let names: Vec<String> = pods.items.iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert_eq!(names, ["q1-1"], "pods in a pool of one");

    cancel(&env, "q1").await?;
    env.wait_run("q1", Phase::Cancelled, "Succeeded", "Cancelled").await?;
    let r = env.wait_run("q2", Phase::Running, "Running", "PodCreated").await?;
    assert_eq!(r.status.unwrap().queue_position, None);
    let r = env
        .wait_run("q3", Phase::Queued, "Queued", "WaitingForCapacity")
        .await?;
    let r = env
        .eventually("q3 moves to position 1", || {
            let runs = env.api::<AgentRun>();
            let r = r.clone();
            async move {
                let now = runs.get(r.metadata.name.as_deref().unwrap()).await?;
                Ok((now.status.as_ref().and_then(|s| s.queue_position) == Some(1)).then_some(now))
            }
        })
        .await?;
    assert_eq!(phase_of(&r), Some(Phase::Queued));
    wait_pod_gone(&env, "q1-1").await?;
    let pods = env.api::<Pod>().list(&Default::default()).await?;
    let names: Vec<String> = pods.items.iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert_eq!(names, ["q2-1"], "pods after q1 was cancelled");
    Ok(())
}
