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
//! Usage: `bench-start [--runs N] [--warm-replicas N]` (defaults 7 and 2), with the e2e
//! environment (`PADDOCK_E2E_RUNNER_IMAGE`, `PADDOCK_E2E_MODEL_URL`, `PADDOCK_E2E_GIT_ROOT`,
//! `PADDOCK_E2E_GIT_URL`, `KUBECONFIG`); `e2e/bench.sh` sets it up. Prints one table.
#![warn(missing_docs)]

use anyhow::{bail, Context as _, Result};
use paddock_crds::{AgentRun, Phase, RunnerPool};
use paddock_e2e::{agent_start_ms, percentile, phase, GitRepo, TestNs};
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

/// Creates a run in `pool`, waits for it to succeed, returns (apply → agent start ms, warm?).
async fn one_run(ns: &TestNs, repo: &GitRepo, pool: &str, name: &str) -> Result<(f64, bool)> {
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
    Ok((agent_start_ms(ns, &run, created).await?, warm))
}

fn row(kind: &str, mut v: Vec<f64>) -> (String, f64) {
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
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
        let (ms, was_warm) = one_run(&ns, &repo, "cold", &format!("cold-{i}")).await?;
        if was_warm {
            bail!("cold-{i} claimed a warm pod");
        }
        cold.push(ms);
        wait_warm(&ns, "warm", replicas).await?;
        let (ms, was_warm) = one_run(&ns, &repo, "warm", &format!("warm-{i}")).await?;
        if !was_warm {
            bail!("warm-{i} did not claim a warm pod");
        }
        warm.push(ms);
        eprintln!("[bench] round {i}/{runs}: cold {:.0} ms, warm {ms:.0} ms", cold[i - 1]);
    }
    println!("AgentRun created → agent step started (ms), shell agent, {runs} runs each, warm.replicas {replicas}");
    println!("| start | runs | median | min | p90 | max | all |");
    println!("|---|---|---|---|---|---|---|");
    let (c, cold_median) = row("cold", cold);
    let (w, warm_median) = row("warm", warm);
    println!("{c}\n{w}");
    println!("cold/warm median ratio: {:.1}x", cold_median / warm_median);
    ns.cleanup().await;
    Ok(())
}
