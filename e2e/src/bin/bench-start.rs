//! Start-latency benchmark on the local cluster: the time from creating an AgentRun (the POST
//! leaving this process, by this process's clock) to its agent step starting (the runner's own
//! millisecond `ts` on the `step agent started` event, read back from the run's event log), for
//! cold runs (a pool without warm pods) and warm runs (a pool with `warm.replicas`).
//!
//! Both clocks are the same host's (the local cluster's node is this machine). Each warm run
//! waits for the pool to be fully replenished first, so every warm run finds a ready pod (the
//! steady state of a pool sized for its arrival rate); cold runs wait for the previous one to
//! end, so they do not contend for the two CPUs.
//!
//! Where the time goes (issue 23): a second table splits each start into create → the
//! operator's `PodCreated`/`PodClaimed` Event (the operator's reconcile, the pod's create or
//! claim, the run's status write), → the runner's first event (for a cold pod, the pod's
//! scheduling and the clone container's start; for a warm pod, the claim's way to the pod
//! through the kubelet's downward API volume), the clone, and clone → agent started (the agent
//! container's start, or the warm runner seeing the clone's end, and the CLI's launch), by the
//! Event's microsecond `eventTime` and the runner's own millisecond timestamps.
//!
//! Usage: `bench-start [--runs N] [--warm-replicas N]` (defaults 7 and 2), with the e2e
//! environment (`PADDOCK_E2E_RUNNER_IMAGE`, `PADDOCK_E2E_MODEL_URL`, `PADDOCK_E2E_GIT_ROOT`,
//! `PADDOCK_E2E_GIT_URL`, `KUBECONFIG`); `e2e/bench.sh` sets it up. Prints two tables.
#![warn(missing_docs)]

use anyhow::{bail, Context as _, Result};
use paddock_crds::events::{parse_line, RunnerEvent, Step, StepStatus};
use paddock_crds::{AgentRun, Phase, RunnerPool};
use paddock_e2e::{percentile, phase, stored_event_log, GitRepo, TestNs};
use serde_json::json;
use std::time::{Duration, Instant, SystemTime};

const TIMEOUT: Duration = Duration::from_secs(180);

fn arg(name: &str, default: usize) -> Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .context("missing value")?
            .parse()
            .with_context(|| format!("{name} takes a number")),
        None => Ok(default),
    }
}

async fn wait_warm(ns: &TestNs, pool: &str, replicas: u32) -> Result<()> {
    let api = ns.api::<RunnerPool>();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let p = api.get(pool).await?;
        if p.status
            .as_ref()
            .is_some_and(|s| s.warm_ready == replicas && s.warm_total == replicas)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("pool {pool} never had {replicas} warm pods ready: {:?}", p.status);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One start, by the runner's timestamps: milliseconds from the create to the operator's
/// `PodCreated`/`PodClaimed` Event (its `eventTime`, in microseconds, published right after the
/// pod's create or claim and the run's status write), to the runner's first event, to the
/// clone's end, and to the agent step's start.
#[derive(Clone, Copy, Debug)]
struct Marks {
    started: f64,
    first: f64,
    cloned: f64,
    agent: f64,
    /// A warm pod's gateway took its claim from the operator's push (not the kubelet's file).
    pushed: bool,
}

/// Milliseconds from `created` to the `eventTime` of `run`'s Event `PodCreated` or `PodClaimed`.
async fn started_event_ms(ns: &TestNs, run: &str, created: k8s_openapi::jiff::Timestamp) -> Result<f64> {
    use k8s_openapi::api::events::v1::Event;
    let evs = ns.api::<Event>().list(&Default::default()).await?;
    let t = evs
        .items
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(run))
        .filter(|e| matches!(e.reason.as_deref(), Some("PodCreated" | "PodClaimed")))
        .find_map(|e| e.event_time.as_ref())
        .with_context(|| format!("{run}: no PodCreated or PodClaimed Event"))?;
    Ok(t.0.duration_since(created).as_secs_f64() * 1000.0)
}

/// The [`Marks`] of `run` (created at `created`) from its stored event log.
async fn marks(ns: &TestNs, run: &AgentRun, created: SystemTime) -> Result<Marks> {
    let name = run.metadata.name.clone().unwrap_or_default();
    let text = stored_event_log(ns, run).await?;
    // A warm pod clones in its gateway container (trusted), whose events are in that
    // container's log, not in the run's stored log: read it while the pod is still there.
    let mut text = text;
    let mut pushed = false;
    if let Some(pod) = run.status.as_ref().and_then(|s| s.pod_name.clone()) {
        let lp = kube::api::LogParams {
            container: Some("gateway".into()),
            ..Default::default()
        };
        if let Ok(gw) = ns.api::<k8s_openapi::api::core::v1::Pod>().logs(&pod, &lp).await {
            pushed = gw.contains("claimed (pushed by the operator)");
            text.push('\n');
            text.push_str(&gw);
        }
    }
    let created = k8s_openapi::jiff::Timestamp::try_from(created)?;
    let ms = |ts: &str| -> Result<f64> {
        let t: k8s_openapi::jiff::Timestamp = ts.parse().with_context(|| format!("ts {ts}"))?;
        Ok(t.duration_since(created).as_secs_f64() * 1000.0)
    };
    let (mut first, mut cloned, mut agent) = (None, None, None);
    for ev in text.lines().filter_map(parse_line) {
        let at = ms(&ev.ts)?;
        first = Some(first.map_or(at, |f: f64| f.min(at)));
        match ev.event {
            RunnerEvent::Step {
                step: Step::Clone,
                status: StepStatus::Succeeded,
                ..
            } => cloned = Some(at),
            RunnerEvent::Step {
                step: Step::Agent,
                status: StepStatus::Started,
                ..
            } => agent = Some(at),
            _ => {}
        }
    }
    let started = started_event_ms(ns, &name, created).await?;
    match (first, cloned, agent) {
        (Some(first), Some(cloned), Some(agent)) => Ok(Marks {
            started,
            first,
            cloned,
            agent,
            pushed,
        }),
        _ => bail!("{name}: its log lacks the clone's end or the agent's start"),
    }
}

/// Creates a run in `pool`, waits for it to succeed, returns (its [`Marks`], warm?).
async fn one_run(ns: &TestNs, repo: &GitRepo, pool: &str, name: &str) -> Result<(Marks, bool)> {
    let manifest = json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "metadata": {"name": name},
        "spec": {"repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": "echo bench > bench.txt",
                 "runnerPoolRef": {"name": pool}}});
    let created = SystemTime::now();
    ns.apply::<AgentRun>(manifest).await?;
    let run = ns.wait_finished(name, TIMEOUT).await?;
    if phase(&run) != Some(Phase::Succeeded) {
        bail!("{name} ended {:?}: {:?}", phase(&run), run.status);
    }
    let warm = run.status.as_ref().and_then(|s| s.warm_start) == Some(true);
    Ok((marks(ns, &run, created).await?, warm))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    }
}

/// The breakdown row of `marks`: the median of each part (they need not add up to the median
/// total exactly).
fn breakdown(kind: &str, marks: &[Marks]) -> String {
    let part = |f: &dyn Fn(&Marks) -> f64| median(marks.iter().map(f).collect());
    format!(
        "| {kind} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
        part(&|m| m.started),
        part(&|m| m.first - m.started),
        part(&|m| m.cloned - m.first),
        part(&|m| m.agent - m.cloned),
        part(&|m| m.agent),
    )
}

fn row(kind: &str, mut v: Vec<f64>) -> (String, f64) {
    v.sort_by(f64::total_cmp);
    let median = median(v.clone());
    let all = v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(" ");
    (
        format!(
            "| {kind} | {} | {median:.0} | {:.0} | {:.0} | {:.0} | {all} |",
            v.len(),
            v[0],
            percentile(&v, 90.0),
            v[v.len() - 1]
        ),
        median,
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    let runs = arg("--runs", 7)?;
    let replicas = arg("--warm-replicas", 2)? as u32;
    let ns = TestNs::new("bench").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool("cold", None).await?;
    ns.pool_with("warm", json!({"warm": {"replicas": replicas}})).await?;
    wait_warm(&ns, "warm", replicas).await?;
    // One unmeasured run each, so both paths have touched every cache once.
    one_run(&ns, &repo, "cold", "cold-0").await?;
    wait_warm(&ns, "warm", replicas).await?;
    one_run(&ns, &repo, "warm", "warm-0").await?;

    let (mut cold, mut warm) = (vec![], vec![]);
    for i in 1..=runs {
        let (m, was_warm) = one_run(&ns, &repo, "cold", &format!("cold-{i}")).await?;
        if was_warm {
            bail!("cold-{i} claimed a warm pod");
        }
        cold.push(m);
        wait_warm(&ns, "warm", replicas).await?;
        let (m, was_warm) = one_run(&ns, &repo, "warm", &format!("warm-{i}")).await?;
        if !was_warm {
            bail!("warm-{i} did not claim a warm pod");
        }
        warm.push(m);
        eprintln!(
            "[bench] round {i}/{runs}: cold {:.0} ms, warm {:.0} ms",
            cold[i - 1].agent,
            m.agent
        );
    }
    let (cold_marks, warm_marks) = (cold.clone(), warm.clone());
    let cold: Vec<f64> = cold.iter().map(|m| m.agent).collect();
    let warm: Vec<f64> = warm.iter().map(|m| m.agent).collect();
    println!("AgentRun created → agent step started (ms), shell agent, {runs} runs each, warm.replicas {replicas}");
    println!("| start | runs | median | min | p90 | max | all |");
    println!("|---|---|---|---|---|---|---|");
    let (c, cold_median) = row("cold", cold);
    let (w, warm_median) = row("warm", warm);
    println!("{c}\n{w}");
    println!("cold/warm median ratio: {:.1}x", cold_median / warm_median);
    println!();
    println!("Where the time goes (medians, ms, by the runner's own timestamps)");
    println!("| start | create → operator's PodCreated/PodClaimed Event | → runner's first event | clone | clone → agent started | create → agent started |");
    println!("|---|---|---|---|---|---|");
    println!("{}", breakdown("cold", &cold_marks));
    println!("{}", breakdown("warm", &warm_marks));
    println!(
        "warm claims taken from the operator's push (not the kubelet's downward API file): {}/{}",
        warm_marks.iter().filter(|m| m.pushed).count(),
        warm_marks.len()
    );
    ns.cleanup().await;
    Ok(())
}
