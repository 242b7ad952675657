//! Scenario 2: start latency on the real node, cold and warm, Paddock and agent-sandbox.

use crate::cluster::{delete_namespace, namespace};
use crate::system::{gvk, System};
use crate::watch::{arrive, seen_ms, wait_status, watch_objects, Shared};
use anyhow::{bail, Context as _, Result};
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::Client;
use paddock_crds::Phase;
use paddock_e2e::{agent_start_ms, percentile, phase, GitRepo, TestNs};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One row of the scenario 2 table: start latencies (ms) of one system, start kind and measure.
pub struct StartRow {
    system: &'static str,
    start: &'static str,
    measure: &'static str,
    ms: Vec<f64>,
}

/// Scenario 2, Paddock: bursts of `per` AgentRuns (shell agent, one file written) arriving at
/// `rate`/s, into a pool without warm pods (cold) and one with `warm.replicas: per` that is
/// full before each burst (warm). Two measures per run: create → the watch event whose status
/// names its pod (cold: pod created; warm: warm pod claimed), and create → the runner's `step
/// agent started` event (the agent process running; includes the clone).
pub async fn paddock_starts(bursts: usize, per: usize, rate: f64) -> Result<Vec<StartRow>> {
    let ns = TestNs::new("bench-start").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool("cold", None).await?;
    ns.pool_with("warm", json!({"warm": {"replicas": per}})).await?;
    let runs = Api::<DynamicObject>::namespaced_with(ns.client.clone(), &ns.name, &System::Paddock.resource());
    let pools = Api::<DynamicObject>::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &gvk("paddock.dev", "v1alpha1", "RunnerPool", "runnerpools"),
    );
    let mut rows = vec![];
    for (pool, warm) in [("cold", false), ("warm", true)] {
        let times: Shared = Arc::default();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        watch_objects(
            &ns.client,
            &ns.name,
            &System::Paddock.resource(),
            |o| !o.data["status"]["podName"].is_null(),
            &times,
            tx,
        );
        rx.recv().await.context("watch")?;
        let (mut bound, mut agent) = (vec![], vec![]);
        // Burst 0 is a warm-up, not measured.
        for b in 0..=bursts {
            if warm {
                wait_status(&pools, pool, "all warm pods ready", |s| {
                    s["warmReady"] == per && s["warmTotal"] == per
                })
                .await?;
            }
            let objs: Vec<(String, Value)> = (0..per)
                .map(|i| {
                    let name = format!("{pool}-{b}-{i}");
                    let obj = json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "metadata": {"name": name},
                        "spec": {"repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": "echo bench > bench.txt",
                                 "runnerPoolRef": {"name": pool}}});
                    (name, obj)
                })
                .collect();
            let names: Vec<String> = objs.iter().map(|(n, _)| n.clone()).collect();
            let walls = arrive(&runs, objs, rate, &times).await?;
            for name in &names {
                let run = ns.wait_finished(name, Duration::from_secs(300)).await?;
                if phase(&run) != Some(Phase::Succeeded) {
                    bail!("{name} ended {:?}: {:?}", phase(&run), run.status);
                }
                let was_warm = run.status.as_ref().and_then(|s| s.warm_start) == Some(true);
                if was_warm != warm {
                    bail!("{name}: warm start {was_warm}, expected {warm}");
                }
                let ms = agent_start_ms(&ns, &run, walls[name]).await?;
                eprintln!("[bench] {name}: agent started {ms:.0} ms after create");
                if b > 0 {
                    agent.push(ms);
                }
            }
            if b > 0 {
                bound.extend(seen_ms(&times, &names)?);
            }
            eprintln!("[bench] paddock {pool} burst {b}/{bursts} done");
        }
        let start = if warm { "warm" } else { "cold" };
        rows.push(StartRow {
            system: "paddock",
            start,
            measure: "pod named in status (claimed / created)",
            ms: bound,
        });
        rows.push(StartRow {
            system: "paddock",
            start,
            measure: "agent process started (incl. clone)",
            ms: agent,
        });
    }
    ns.cleanup().await;
    Ok(rows)
}

/// Scenario 2, agent-sandbox: the same bursts of SandboxClaims, against a SandboxWarmPool of
/// `per` (warm; full before each burst) and of 0 (cold: the claim's Sandbox is made from the
/// template). Measure: create → the watch event with the claim's `Ready` condition `True` (its
/// pod is running and ready: the sandbox's process is up).
pub async fn sandbox_starts(client: &Client, bursts: usize, per: usize, rate: f64) -> Result<Vec<StartRow>> {
    let ns = "bench-start-sandbox";
    namespace(client, ns).await?;
    let ext = |k: &str, plural: &str| gvk("extensions.agents.x-k8s.io", "v1beta1", k, plural);
    let templates =
        Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ext("SandboxTemplate", "sandboxtemplates"));
    let pools = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ext("SandboxWarmPool", "sandboxwarmpools"));
    let claims_ar = ext("SandboxClaim", "sandboxclaims");
    let claims = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &claims_ar);
    let template: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxTemplate", "metadata": {"name": "agent"},
        "spec": {"podTemplate": {"spec": {"containers": [{"name": "agent", "image": "localhost/paddock/busybox:1", "command": ["sleep", "infinity"]}]}}},
    }))?;
    templates.create(&PostParams::default(), &template).await?;
    let mut rows = vec![];
    for (pool, replicas) in [("cold", 0), ("warm", per)] {
        let p: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxWarmPool", "metadata": {"name": pool},
            "spec": {"replicas": replicas, "sandboxTemplateRef": {"name": "agent"}},
        }))?;
        pools.create(&PostParams::default(), &p).await?;
        let times: Shared = Arc::default();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let ready = |o: &DynamicObject| {
            o.data["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        };
        watch_objects(client, ns, &claims_ar, ready, &times, tx);
        rx.recv().await.context("watch")?;
        let mut ms = vec![];
        for b in 0..=bursts {
            if replicas > 0 {
                wait_status(&pools, pool, "all warm sandboxes ready", |s| {
                    s["readyReplicas"] == replicas
                })
                .await?;
            }
            let objs: Vec<(String, Value)> = (0..per)
                .map(|i| {
                    let name = format!("{pool}-{b}-{i}");
                    let obj = json!({"apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxClaim",
                        "metadata": {"name": name}, "spec": {"warmPoolRef": {"name": pool}}});
                    (name, obj)
                })
                .collect();
            let names: Vec<String> = objs.iter().map(|(n, _)| n.clone()).collect();
            arrive(&claims, objs, rate, &times).await?;
            let t0 = Instant::now();
            while names.iter().any(|n| !times.lock().unwrap().done.contains_key(n)) {
                if t0.elapsed() > Duration::from_secs(300) {
                    bail!("agent-sandbox {pool} burst {b}: claims not Ready after 300 s");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if b > 0 {
                ms.extend(seen_ms(&times, &names)?);
            }
            // Release the claims (and their sandboxes) so the node holds the same pods each burst.
            for n in &names {
                let _ = claims.delete(n, &DeleteParams::background()).await;
            }
            eprintln!("[bench] agent-sandbox {pool} burst {b}/{bursts} done");
        }
        let start = if replicas > 0 { "warm" } else { "cold" };
        rows.push(StartRow {
            system: "agent-sandbox",
            start,
            measure: "claim Ready (pod running and ready)",
            ms,
        });
    }
    delete_namespace(client, ns).await?;
    Ok(rows)
}

impl StartRow {
    /// The system's name.
    pub fn system(&self) -> &str {
        self.system
    }
    /// `cold` or `warm`.
    pub fn start(&self) -> &str {
        self.start
    }
    /// What was measured.
    pub fn measure(&self) -> &str {
        self.measure
    }
    /// The `q`th percentile of the latencies, ms.
    pub fn percentile(&self, q: f64) -> f64 {
        let mut ms = self.ms.clone();
        ms.sort_by(f64::total_cmp);
        percentile(&ms, q)
    }
}

/// Prints the scenario 2 table: one row per system, start kind and measure.
pub fn print_table(starts: &[StartRow], bursts: usize, per: usize, arrivals: f64) {
    println!("\nScenario 2: created → started on the real node (ms), {bursts} bursts of {per} arriving at {arrivals}/s; warm pools of {per}, full before each burst");
    println!("| system | start | measure | n | p50 | p99 | max |");
    println!("|---|---|---|---|---|---|---|");
    for r in starts {
        let mut r = StartRow { ms: r.ms.clone(), ..*r };
        r.ms.sort_by(f64::total_cmp);
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} |",
            r.system,
            r.start,
            r.measure,
            r.ms.len(),
            percentile(&r.ms, 50.0),
            percentile(&r.ms, 99.0),
            r.ms.last().copied().unwrap_or(f64::NAN)
        );
    }
}
