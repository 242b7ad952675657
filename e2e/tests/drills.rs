//! High-availability drill (issue 9): the chart with leader election and two replicas, a crash of
//! the leader in the middle of a batch of runs, and the standby taking over.
//!
//! **Run it alone** (`cargo test -p paddock-e2e --test drills -- --ignored --nocapture`), never
//! in parallel with other e2e files (hence `#[ignore]`; `e2e/run-e2e.sh` does not list it): it
//! upgrades the shared `paddock` release in `paddock-system` to two replicas, kills operator
//! processes, and rolls the release back to the revision it found at the end (pass or fail).
//! Besides the e2e environment (see `paddock_e2e`), it needs `helm` (`PADDOCK_E2E_HELM`, which
//! `e2e/drills.sh` sets to the helm that `e2e/cluster/build-binaries.sh` builds) and runs on the cluster's node: it SIGKILLs the
//! leader's process through `/proc` and scrapes `/metrics` on pod IPs.

use anyhow::{anyhow, bail, Context as _, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use paddock_crds::Reason;
use paddock_crds::{AgentRun, ApprovalGate, Phase, LABEL_RUN};
use paddock_e2e::{phase, GitRepo, TestNs};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const NS: &str = "paddock-system";
const RELEASE: &str = "paddock";
const LEASE: &str = "paddock-operator";
const OPERATOR_PODS: &str = "app.kubernetes.io/instance=paddock,app.kubernetes.io/component=operator";
/// The Lease's duration and the standby's polling period (operator/src/leader.rs).
const LEASE_DURATION: Duration = Duration::from_secs(10);
const RETRY_PERIOD: Duration = Duration::from_secs(2);
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

fn helm() -> String {
    std::env::var("PADDOCK_E2E_HELM").expect("PADDOCK_E2E_HELM: the helm binary (e2e/drills.sh sets it)")
}

fn chart() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/paddock")
}

/// Runs helm with `args`; its output on failure.
fn run_helm(args: &[&str]) -> Result<String> {
    let out = Command::new(helm()).args(args).output().context("running helm")?;
    if !out.status.success() {
        bail!(
            "helm {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The release's current revision number.
fn current_revision() -> Result<u64> {
    let status: serde_json::Value = serde_json::from_str(&run_helm(&["status", RELEASE, "-n", NS, "-o", "json"])?)?;
    status["version"]
        .as_u64()
        .ok_or_else(|| anyhow!("no version in helm status"))
}

/// The pod name in a holder identity `<pod>_<token>` (operator/src/leader.rs).
fn pod_of(identity: &str) -> &str {
    identity.rsplit_once('_').map_or(identity, |(pod, _)| pod)
}

async fn holder(leases: &Api<Lease>) -> Result<Option<String>> {
    Ok(leases
        .get_opt(LEASE)
        .await?
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty()))
}

/// Running, ready, not-terminating operator pods.
async fn ready_operator_pods(pods: &Api<Pod>) -> Result<Vec<Pod>> {
    Ok(pods
        .list(&ListParams::default().labels(OPERATOR_PODS))
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect())
}

/// Waits until exactly two operator pods are ready and the Lease names one of them; returns
/// (leader pod, standby pod).
async fn wait_two_replicas(pods: &Api<Pod>, leases: &Api<Lease>, timeout: Duration) -> Result<(Pod, Pod)> {
    let t0 = Instant::now();
    loop {
        let ready = ready_operator_pods(pods).await?;
        let all = pods
            .list(&ListParams::default().labels(OPERATOR_PODS))
            .await?
            .items
            .len();
        if let (2, 2, Some(h)) = (ready.len(), all, holder(leases).await?) {
            let name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
            if let Some(i) = ready.iter().position(|p| name(p) == pod_of(&h)) {
                let mut ready = ready;
                let leader = ready.remove(i);
                return Ok((leader, ready.remove(0)));
            }
        }
        if t0.elapsed() > timeout {
            bail!("not two ready operator pods with a leader after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// GET http://<pod IP>:8080/metrics from the host.
async fn scrape(pod: &Pod) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .ok_or_else(|| anyhow!("pod has no IP"))?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect((ip.as_str(), 8080)),
    )
    .await
    .context("connect timeout")??;
    conn.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
        .await?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_string(&mut body))
        .await
        .context("read timeout")??;
    Ok(body)
}

/// Sum of a metric's samples (all label sets); 0 when absent.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ') | Some(b'{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The host PID of the `paddock-operator` process whose POD_NAME is `pod`.
fn host_pid_of(pod: &str) -> Result<i32> {
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !comm.starts_with("paddock-operato") {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let want = format!("POD_NAME={pod}");
        if environ.split(|b| *b == 0).any(|kv| kv == want.as_bytes()) {
            return Ok(pid);
        }
    }
    bail!("no paddock-operator process with POD_NAME={pod} on this host")
}

/// Waits until the Lease names a process of a pod that `pred` accepts; returns (pod, time since
/// `since`).
async fn wait_holder(
    leases: &Api<Lease>,
    what: &str,
    pred: impl Fn(&str) -> bool,
    since: Instant,
    timeout: Duration,
) -> Result<(String, Duration)> {
    loop {
        if let Some(h) = holder(leases).await? {
            if pred(pod_of(&h)) {
                return Ok((pod_of(&h).to_string(), since.elapsed()));
            }
        }
        if since.elapsed() > timeout {
            bail!(
                "the Lease did not name {what} within {timeout:?} (holder: {:?})",
                holder(leases).await?
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Rolls the release back to the revision found at the start when dropped: also when an
/// assertion panics, so the shared release never stays at two replicas.
struct Restore(u64);

impl Drop for Restore {
    fn drop(&mut self) {
        let revision = self.0.to_string();
        eprintln!("rolling {RELEASE} back to revision {revision}");
        if let Err(e) = run_helm(&["rollback", RELEASE, &revision, "-n", NS, "--wait", "--timeout", "180s"]) {
            eprintln!("ROLLBACK FAILED, restore by hand (helm rollback {RELEASE} {revision} -n {NS}): {e:#}");
        }
    }
}

#[tokio::test]
#[ignore = "disruptive: kills operator pods of the shared release; run alone with --ignored"]
async fn leader_failover_drill() -> Result<()> {
    let client = Client::try_default().await?;
    let revision = current_revision()?;
    eprintln!("release {RELEASE} at revision {revision}; upgrading to 2 replicas with leader election");
    let _restore = Restore(revision);
    drill(&client).await
}

/// Upgrades the shared release to two replicas with leader election (the caller holds a
/// [`Restore`]).
fn upgrade_to_two_replicas() -> Result<()> {
    let chart = chart();
    run_helm(&[
        "upgrade",
        RELEASE,
        chart.to_str().unwrap_or_default(),
        "-n",
        NS,
        "--reset-then-reuse-values",
        "--set",
        "leaderElection.enabled=true",
        "--set",
        "replicaCount=2",
        "--wait",
        "--timeout",
        "180s",
    ])?;
    Ok(())
}

async fn drill(client: &Client) -> Result<()> {
    upgrade_to_two_replicas()?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    let (leader, standby) = wait_two_replicas(&pods, &leases, Duration::from_secs(120)).await?;
    let leader_name = leader.metadata.name.clone().unwrap_or_default();
    let standby_name = standby.metadata.name.clone().unwrap_or_default();
    eprintln!("leader {leader_name}, standby {standby_name}");

    // A batch of runs: 6 shell runs, 3 at a time.
    let ns = TestNs::new("drill").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool("three", Some(3)).await?;
    let names: Vec<String> = (1..=6).map(|i| format!("run{i}")).collect();
    for name in &names {
        ns.apply::<AgentRun>(json!({
            "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "metadata": {"name": name},
            "spec": {"repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": "sleep 5; echo x > x.txt",
                     "runnerPoolRef": {"name": "three"}},
        }))
        .await?;
    }
    let runs = ns.api::<AgentRun>();
    // Mid-batch: some run has its pod.
    let t0 = Instant::now();
    loop {
        let list = runs.list(&ListParams::default()).await?.items;
        if list.iter().any(|r| phase(r) == Some(Phase::Running)) {
            break;
        }
        if t0.elapsed() > RUN_TIMEOUT {
            ns.dump().await;
            bail!("no run started within {RUN_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Only the leader reconciles: the standby's counters stay at 0, the leader's do not.
    let leader_metrics = scrape(&leader).await?;
    let standby_metrics = scrape(&standby).await?;
    let leader_recs = metric_sum(&leader_metrics, "paddock_reconciliations_total") + 0.0;
    let standby_recs = metric_sum(&standby_metrics, "paddock_reconciliations_total") + 0.0;
    eprintln!("reconciliations: leader {leader_recs}, standby {standby_recs}");
    assert_eq!(
        metric_sum(&leader_metrics, "paddock_leader"),
        1.0,
        "leader's paddock_leader"
    );
    assert_eq!(
        metric_sum(&standby_metrics, "paddock_leader"),
        0.0,
        "standby's paddock_leader"
    );
    assert!(leader_recs > 0.0, "the leader reconciled nothing?\n{leader_metrics}");
    assert_eq!(standby_recs, 0.0, "the standby reconciled:\n{standby_metrics}");
    assert!(
        metric_sum(&standby_metrics, "paddock_build_info") == 1.0,
        "the standby serves /metrics"
    );

    // Crash: SIGKILL the leader's process (no chance to release the Lease), then delete its pod
    // with grace period 0 (the ReplicaSet replaces it with a fresh standby).
    let pid = host_pid_of(&leader_name)?;
    let killed = Instant::now();
    let status = Command::new("kill").args(["-KILL", &pid.to_string()]).status()?;
    assert!(status.success(), "kill -KILL {pid}");
    pods.delete(
        &leader_name,
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
    )
    .await?;
    // Usually the standby wins (it has watched the record age, the replacement pod starts
    // observing it from scratch), but with a 10 s lease a fast replacement may get there first
    // when the standby's take-over write meets a conflict: either is a failover.
    let (winner, failover) = wait_holder(
        &leases,
        "a pod other than the killed leader",
        |p| p != leader_name,
        killed,
        Duration::from_secs(60),
    )
    .await?;
    eprintln!(
        "FAILOVER (SIGKILL of the leader): the Lease named {winner} (standby was {standby_name}) after {:.1} s",
        failover.as_secs_f64()
    );
    // The record lives LEASE_DURATION after the last renewal (≤ 3 s before the kill); the standby
    // notices renewals up to one RETRY_PERIOD late.
    // Within the 15 s issue 9 asks for (the standby: ≤ LEASE_DURATION + RETRY_PERIOD).
    assert!(
        failover <= Duration::from_secs(15),
        "failover took {failover:?} (> 15 s; the standby alone would take ≤ {:?})",
        LEASE_DURATION + RETRY_PERIOD
    );

    // Every run ends Succeeded with exactly one pod, `<run>-1`: none lost, none started twice.
    for name in &names {
        let r = ns.wait_finished(name, RUN_TIMEOUT).await?;
        assert_eq!(phase(&r), Some(Phase::Succeeded), "{name}: {:?}", r.status);
        assert_eq!(
            r.status.as_ref().and_then(|s| s.pod_name.clone()),
            Some(format!("{name}-1")),
            "{name}: pod name"
        );
    }
    let run_pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(LABEL_RUN))
        .await?
        .items;
    let mut pod_names: Vec<String> = run_pods.iter().filter_map(|p| p.metadata.name.clone()).collect();
    pod_names.sort();
    let want: Vec<String> = names.iter().map(|n| format!("{n}-1")).collect();
    assert_eq!(pod_names, want, "exactly one pod per run");
    for p in &run_pods {
        let restarts: i32 = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).sum())
            .unwrap_or_default();
        assert_eq!(restarts, 0, "{:?} restarted", p.metadata.name);
    }

    // The new leader says so; the replacement pod stands by.
    let (new_leader, new_standby) = wait_two_replicas(&pods, &leases, Duration::from_secs(120)).await?;
    assert_eq!(new_leader.metadata.name.as_deref(), Some(winner.as_str()));
    assert_eq!(metric_sum(&scrape(&new_leader).await?, "paddock_leader"), 1.0);
    let replacement = scrape(&new_standby).await?;
    assert_eq!(metric_sum(&replacement, "paddock_leader"), 0.0);
    assert_eq!(metric_sum(&replacement, "paddock_reconciliations_total"), 0.0);

    // Graceful: deleting the leader (SIGTERM) frees the Lease, so a standby (the one running, or
    // the leader's replacement if it starts first: both see a free Lease) takes over at its next
    // read instead of after the lease duration.
    let new_leader_name = new_leader.metadata.name.clone().unwrap_or_default();
    let deleted = Instant::now();
    pods.delete(&new_leader_name, &DeleteParams::default()).await?;
    let (next, handover) = wait_holder(
        &leases,
        "another pod",
        |p| p != new_leader_name,
        deleted,
        Duration::from_secs(60),
    )
    .await?;
    eprintln!(
        "HANDOVER (pod deleted, SIGTERM; standby was {}): the Lease named {next} after {:.1} s",
        new_standby.metadata.name.as_deref().unwrap_or_default(),
        handover.as_secs_f64()
    );
    assert!(
        handover < LEASE_DURATION,
        "a released Lease was not taken over at once: {handover:?}"
    );

    ns.cleanup().await;
    Ok(())
}

/// Sums, over every operator pod's `/metrics`, the Kubernetes API writes (create, patch,
/// update, delete; Leases excluded: a leader renews its Lease on a timer) and the AgentRun
/// reconciles.
async fn writes_and_reconciles(client: &Client) -> Result<(u64, u64)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let (mut writes, mut reconciles) = (0u64, 0u64);
    for p in pods.list(&ListParams::default().labels(OPERATOR_PODS)).await?.items {
        if p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running") {
            continue;
        }
        for line in scrape(&p).await?.lines() {
            let value = || {
                line.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0) as u64
            };
            if line.starts_with("paddock_kube_api_request_duration_seconds_count{")
                && ["\"create\"", "\"patch\"", "\"update\"", "\"delete\""]
                    .iter()
                    .any(|v| line.contains(&format!("verb={v}")))
                && !line.contains("resource=\"leases\"")
            {
                writes += value();
            }
            if line.starts_with("paddock_reconciliations_total{") && line.contains("controller=\"agentrun\"") {
                reconciles += value();
            }
        }
    }
    Ok((writes, reconciles))
}

/// Issue 9's idempotency drill: reconciles of runs whose state does not change write nothing.
/// A run held at a BeforeStart gate and a finished run are "poked" (an annotation change, which
/// the controller watches) ten times; the AgentRun reconcile count must rise and the count of
/// API writes (status patches, pods, gates, ConfigMaps, Events) must not. Run alone (the
/// counters are the operator's, for the whole cluster).
#[tokio::test]
#[ignore = "counts the operator's API writes cluster-wide: run alone with --ignored"]
async fn idle_reconciles_make_no_writes() -> Result<()> {
    let client = Client::try_default().await?;
    let ns = TestNs::new("idem").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool("default", None).await?;
    let manifest = |name: &str, extra: serde_json::Value| {
        let mut spec = json!({"repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": "echo x > x.txt"});
        for (k, v) in extra.as_object().into_iter().flatten() {
            spec[k] = v.clone();
        }
        json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "metadata": {"name": name}, "spec": spec})
    };
    ns.apply::<AgentRun>(manifest("held", json!({"approvals": {"beforeStart": {}}})))
        .await?;
    ns.apply::<AgentRun>(manifest("done", json!({}))).await?;
    ns.wait_run("held", RUN_TIMEOUT, "awaiting approval", |r| {
        phase(r) == Some(Phase::AwaitingApproval)
    })
    .await?;
    let done = ns.wait_finished("done", RUN_TIMEOUT).await?;
    assert_eq!(phase(&done), Some(Phase::Succeeded));
    // Let the last Events and the pool's status settle, and wait until the operator is quiet:
    // no write for 5 s (the counters are cluster-wide, and an earlier drill's namespace may
    // still be going away).
    let (mut w0, mut r0) = writes_and_reconciles(&client).await?;
    for _ in 0..24 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (w, r) = writes_and_reconciles(&client).await?;
        let quiet = w == w0;
        (w0, r0) = (w, r);
        if quiet {
            break;
        }
    }
    let runs = ns.api::<AgentRun>();
    for i in 0..10 {
        for name in ["held", "done"] {
            let poke = json!({"metadata": {"annotations": {"e2e.paddock.dev/poke": i.to_string()}}});
            runs.patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&poke),
            )
            .await?;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (w1, r1) = writes_and_reconciles(&client).await?;
    eprintln!(
        "idempotency: {} AgentRun reconciles of unchanged runs, {} API writes",
        r1 - r0,
        w1 - w0
    );
    assert!(r1 - r0 >= 10, "the pokes reconciled: {} reconciles", r1 - r0);
    assert_eq!(w1 - w0, 0, "writes on reconciles of unchanged state");
    ns.cleanup().await;
    Ok(())
}

/// Issue 9's crash drill: 20 runs in a pool of 4 while the leading operator process is
/// SIGKILLed every 10 s (the chart's two replicas with leader election; the kubelet restarts a
/// killed container, with its crash-loop backoff). Four of the runs wait at a BeforeStart gate,
/// decided while the killing goes on: two approved, two rejected. Every run must end with the
/// right outcome, with exactly one pod (`<run>-1`) and no retry, never more than 4 runs Running
/// at once (sampled every 0.5 s), every decision kept on its gate, and a consistent status (`observedGeneration` of the
/// status and of its conditions equal to the run's generation).
#[tokio::test]
#[ignore = "disruptive: kills operator processes of the shared release; run alone with --ignored"]
async fn operator_killed_every_ten_seconds_drill() -> Result<()> {
    let client = Client::try_default().await?;
    let revision = current_revision()?;
    let _restore = Restore(revision);
    upgrade_to_two_replicas()?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    wait_two_replicas(&pods, &leases, Duration::from_secs(120)).await?;

    let ns = TestNs::new("crash").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool("four", Some(4)).await?;
    let names: Vec<String> = (1..=20).map(|i| format!("run{i:02}")).collect();
    let gated = |i: usize| i >= 16; // run17..run20
    let started = Instant::now();

    // The killer: every 10 s, SIGKILL whichever process holds the Lease.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let (stop, leases) = (stop.clone(), leases.clone());
        tokio::spawn(async move {
            let mut kills = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let Ok(Some(h)) = holder(&leases).await else { continue };
                let pod = pod_of(&h).to_string();
                if let Ok(pid) = host_pid_of(&pod) {
                    if Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status()
                        .is_ok_and(|s| s.success())
                    {
                        eprintln!("SIGKILL {pod} (pid {pid})");
                        kills.push(pod);
                    }
                }
            }
            kills
        })
    };

    for (i, name) in names.iter().enumerate() {
        let mut spec = json!({"repo": {"url": repo.url}, "agent": {"name": "shell"},
                              "prompt": format!("sleep 3; echo {name} > out.txt"),
                              "runnerPoolRef": {"name": "four"}});
        if gated(i) {
            spec["approvals"] = json!({"beforeStart": {}});
        }
        ns.apply::<AgentRun>(json!({
            "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "metadata": {"name": name}, "spec": spec,
        }))
        .await?;
    }

    // Decide the gates once they exist (while the killing goes on); sample the runner pods.
    let gates = ns.api::<ApprovalGate>();
    let me = paddock_e2e::whoami(&ns.client).await?;
    let mut decided = std::collections::BTreeMap::new();
    let mut max_running = 0usize;
    let runs = ns.api::<AgentRun>();
    loop {
        for (i, name) in names.iter().enumerate().filter(|(i, _)| gated(*i)) {
            let gate = format!("{name}-before-start");
            if decided.contains_key(&gate) || gates.get_opt(&gate).await?.is_none() {
                continue;
            }
            let verdict = if i < 18 { "Approve" } else { "Reject" };
            gates
                .patch(
                    &gate,
                    &PatchParams::default(),
                    &Patch::<()>::Json(serde_json::from_value(json!([
                        {"op": "add", "path": "/spec/decisions/-", "value": {"approver": me, "decision": verdict, "comment": "drill"}}
                    ]))?),
                )
                .await?;
            decided.insert(gate, verdict);
        }
        // Runs the pool counts as running (a finished run's pod may still be Running for a
        // moment while the kubelet stops its gateway sidecar: pods are not the measure).
        let list = runs.list(&ListParams::default()).await?.items;
        let running = list.iter().filter(|r| phase(r) == Some(Phase::Running)).count();
        max_running = max_running.max(running);
        if list.len() == names.len() && list.iter().all(|r| phase(r).is_some_and(Phase::is_terminal)) {
            break;
        }
        if started.elapsed() > Duration::from_secs(900) {
            ns.dump().await;
            bail!("not every run ended within 15 minutes");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let kills = killer.await?;

    let mut pod_names: Vec<String> = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(LABEL_RUN))
        .await?
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    pod_names.sort();
    let mut want_pods = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let r = runs.get(name).await?;
        let st = r.status.clone().unwrap_or_default();
        let want = if gated(i) && i >= 18 {
            Phase::Rejected
        } else {
            Phase::Succeeded
        };
        assert_eq!(phase(&r), Some(want), "{name}: {st:?}");
        if want == Phase::Succeeded {
            want_pods.push(format!("{name}-1"));
            assert_eq!(st.pod_name, Some(format!("{name}-1")), "{name}");
            assert_eq!(st.attempt, Some(1), "{name}");
        }
        assert!(st.attempts.is_empty(), "{name} retried: {:?}", st.attempts);
        let generation = r.metadata.generation;
        assert_eq!(st.observed_generation, generation, "{name}: status.observedGeneration");
        for c in &st.conditions {
            assert_eq!(c.observed_generation, generation, "{name}: condition {}", c.type_);
        }
        if gated(i) {
            let gate = gates.get(&format!("{name}-before-start")).await?;
            let decisions = &gate.spec.decisions;
            assert_eq!(decisions.len(), 1, "{name}: decisions kept exactly once: {decisions:?}");
            assert_eq!(
                format!("{:?}", decisions[0].decision),
                decided[&format!("{name}-before-start")],
                "{name}"
            );
        }
    }
    assert_eq!(pod_names, want_pods, "exactly one pod per started run");
    assert!(max_running <= 4, "at most 4 runs Running at once, saw {max_running}");
    assert!(
        kills.len() >= 3,
        "the drill killed the operator only {} times",
        kills.len()
    );
    eprintln!(
        "CRASH DRILL: 20 runs (pool of 4, 4 gated) ended in {:.0} s with {} SIGKILLs of the leader; 0 lost, 0 duplicate pods, 4/4 decisions kept, max {max_running} runs Running at once",
        took.as_secs_f64(),
        kills.len()
    );
    ns.cleanup().await;
    Ok(())
}

/// Runs `e2e/cluster/cluster.sh <args>` (as the drills run on the cluster's node); its last
/// stdout line.
fn cluster_sh(args: &[&str]) -> Result<String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("cluster/cluster.sh");
    let out = Command::new("bash").arg(&script).args(args).output()?;
    if !out.status.success() {
        bail!("cluster.sh {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string())
}

/// Issue 9's control-plane drill: while a run's agent is working, the kube-apiserver, etcd and
/// the kubelet are each restarted in place (`cluster.sh restart`), and the node is drained
/// (`kubectl drain --force`, then uncordoned). Each run must end — Succeeded, or retried per
/// `spec.retry` with the reason of the lost attempt recorded — never hang. A drained run
/// without `spec.retry` ends Failed with the reason. Prints how long each restart took and how
/// long each run needed after it.
#[tokio::test]
#[ignore = "disruptive: restarts the cluster's control plane and drains the node; run alone with --ignored"]
async fn control_plane_faults_drill() -> Result<()> {
    let ns = TestNs::new("faults").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool("default", None).await?;
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let node = match std::env::var("PADDOCK_NODE_NAME") {
        Ok(n) => n,
        Err(_) => {
            let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("cluster/cluster.sh");
            let out = Command::new("bash").arg(script).arg("env").output()?;
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("PADDOCK_NODE_NAME=").map(str::to_string))
                .ok_or_else(|| anyhow!("no PADDOCK_NODE_NAME in cluster.sh env"))?
        }
    };
    let start_run = |name: String, retry: bool| {
        let mut spec = json!({"repo": {"url": repo.url}, "agent": {"name": "shell"},
                              "prompt": "echo started; sleep 10; echo done > done.txt"});
        if retry {
            spec["retry"] = json!({"limit": 2, "backoff": "1s"});
        }
        let ns = &ns;
        async move {
            ns.apply::<AgentRun>(json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
                                        "metadata": {"name": name}, "spec": spec}))
                .await?;
            ns.wait_run(&name, RUN_TIMEOUT, "running its agent", |r| {
                paddock_e2e::condition(r, "Running").is_some_and(|c| c.1 == Reason::AgentRunning)
            })
            .await
        }
    };
    let mut report = Vec::new();
    for component in ["kube-apiserver", "etcd", "kubelet"] {
        let name = format!("during-{}", component.trim_start_matches("kube-"));
        start_run(name.clone(), true).await?;
        let t0 = Instant::now();
        let fault_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let took = cluster_sh(&["restart", component])?;
        let r = ns.wait_finished(&name, RUN_TIMEOUT).await?;
        let st = r.status.clone().unwrap_or_default();
        assert_eq!(phase(&r), Some(Phase::Succeeded), "{name}: {st:?}");
        // When the agent's container ended (the kubelet's record, whole seconds) against when
        // the run did (the operator's): the gap is the operator's reaction after the fault.
        let agent_ended = match &st.pod_name {
            Some(p) => ns.api::<Pod>().get(p).await.ok().and_then(|pod| {
                pod.status?
                    .container_statuses?
                    .into_iter()
                    .find(|c| c.name == "agent")?
                    .state?
                    .terminated?
                    .finished_at
            }),
            None => None,
        };
        let since =
            |t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time| format!("{:+} s", t.0.as_second() - fault_at);
        for a in &st.attempts {
            assert!(
                !a.reason.is_empty(),
                "{name}: a retried attempt without a reason: {a:?}"
            );
        }
        report.push(format!(
            "{component} restarted ({took} s until it answered): run Succeeded at {} from the fault (completionTime; its agent's container ended at {}), attempts {}; this drill's own polling saw it after {:.0} s",
            st.completion_time.as_ref().map_or("?".into(), since),
            agent_ended.as_ref().map_or("?".into(), since),
            st.attempts.len() + 1,
            t0.elapsed().as_secs_f64(),
        ));
    }

    // Drain: the runner pods are evicted (--force: they have no ReplicaSet); the node is
    // uncordoned after 5 s so the retry (and the operator's own pod) can be scheduled again.
    start_run("drained".into(), true).await?;
    start_run("drained-once".into(), false).await?;
    let t0 = Instant::now();
    let drain = Command::new(&kubectl)
        .args([
            "drain",
            &node,
            "--force",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--grace-period",
            "5",
            "--timeout",
            "90s",
        ])
        .output()?;
    let uncordon = Command::new(&kubectl).args(["uncordon", &node]).output();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        drain.status.success(),
        "kubectl drain: {}",
        String::from_utf8_lossy(&drain.stderr)
    );
    assert!(uncordon.is_ok_and(|o| o.status.success()), "kubectl uncordon");
    let r = ns.wait_finished("drained", RUN_TIMEOUT).await?;
    let st = r.status.clone().unwrap_or_default();
    assert_eq!(phase(&r), Some(Phase::Succeeded), "drained: {st:?}");
    assert!(!st.attempts.is_empty(), "the drained attempt is in the history: {st:?}");
    let reason = st.attempts[0].reason.clone();
    assert!(
        matches!(
            Reason::parse(&reason),
            Some(Reason::PodDeleted | Reason::PodEvicted | Reason::PodLost)
        ),
        "drained attempt's reason: {reason}"
    );
    let once = ns.wait_finished("drained-once", RUN_TIMEOUT).await?;
    assert_eq!(phase(&once), Some(Phase::Failed), "{:?}", once.status);
    let once_reason = paddock_e2e::condition(&once, "Succeeded")
        .map(|c| c.1)
        .unwrap_or_default();
    assert!(
        matches!(
            Reason::parse(&once_reason),
            Some(Reason::PodDeleted | Reason::PodEvicted | Reason::PodLost)
        ),
        "{once_reason}"
    );
    report.push(format!(
        "node drained: the run with retry Succeeded on attempt {} ({reason}) {:.0} s after the drain; the run without retry Failed ({once_reason})",
        st.attempts.len() + 1,
        t0.elapsed().as_secs_f64()
    ));
    for line in &report {
        eprintln!("CONTROL-PLANE DRILL: {line}");
    }
    ns.cleanup().await;
    Ok(())
}
