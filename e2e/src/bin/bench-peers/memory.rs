//! Scenario 3: the controllers' resident set with N objects, fresh and restarted.

use crate::cluster::{delete_namespace, namespace, paddock_pool};
use crate::system::{controller_pid, peers, prepare, Limits, System};
use crate::watch::{create, wait_pods, watch, Shared};
use anyhow::{bail, Context as _, Result};
use kube::api::Api;
use kube::Client;
use paddock_e2e::phase;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Waits until `pid`'s resident set has not grown for 5 s (at least 10 s in all), so the
/// controller has listed and settled.
pub async fn settle(pid: u32) -> Result<()> {
    let t0 = Instant::now();
    let (mut last, mut since) = (rss_kib(pid)?.0, Instant::now());
    while t0.elapsed() < Duration::from_secs(10) || since.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = rss_kib(pid)?.0;
        if now > last + 256 {
            since = Instant::now();
        }
        last = now;
        if t0.elapsed() > Duration::from_secs(300) {
            break;
        }
    }
    Ok(())
}

/// Restarts the controller of `sys` and returns the new process's PID.
pub async fn restart(sys: System, l: &Limits) -> Result<u32> {
    let old = controller_pid(sys)?;
    if sys == System::Paddock {
        let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
        for args in [
            vec!["-n", "paddock-system", "rollout", "restart", "deploy/paddock-operator"],
            vec![
                "-n",
                "paddock-system",
                "rollout",
                "status",
                "deploy/paddock-operator",
                "--timeout=300s",
            ],
        ] {
            let st = std::process::Command::new(&kubectl)
                .args(&args)
                .stdout(std::process::Stdio::null())
                .status()?;
            if !st.success() {
                bail!("kubectl {} failed", args.join(" "));
            }
        }
    } else {
        peers(&["stop", "tekton"])?;
        prepare(sys, l)?;
    }
    let t0 = Instant::now();
    loop {
        match controller_pid(sys) {
            Ok(pid) if pid != old => return Ok(pid),
            _ if t0.elapsed() > Duration::from_secs(120) => bail!("{} did not restart", sys.name()),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// One row of the scenario 3 table: resident sets (KiB) at each count, the peak after a restart.
pub struct MemRow {
    system: &'static str,
    at: Vec<(usize, u64)>,
    relist_peak: u64,
    relist_rss: u64,
}

/// Scenario 3 for one system: fills a namespace to each count of `scale` (every object with its
/// pod on kwok), reading the controller's resident set at each.
pub async fn memory(
    client: &Client,
    sys: System,
    scale: &[usize],
    l: &Limits,
    replay: &crate::cluster::Replay,
) -> Result<MemRow> {
    // Filled at 100/s; each count is read once every object has its pod (not once all have
    // finished: at 10k that takes the controllers here 15 min or more).
    let fill_rate = 100.0;
    let ns = format!("bench-scale-{}", sys.name());
    prepare(sys, l)?;
    namespace(client, &ns).await?;
    if sys == System::Paddock {
        paddock_pool(client, &ns, replay).await?;
    }
    let times: Shared = Arc::default();
    watch(client, &ns, sys, &times).await?;
    // A fresh process for the baseline: one that ran earlier scenarios keeps what its allocator
    // grew to.
    let pid = restart(sys, l).await?;
    settle(pid).await?;
    let mut at = vec![(0, rss_kib(pid)?.0)];
    let mut have = 0;
    for &target in scale {
        if target <= have {
            continue;
        }
        eprintln!("[bench] {}: filling {ns} to {target} objects", sys.name());
        create(client, &ns, sys, "s", have..target, fill_rate, &times).await?;
        wait_pods(&times, target, sys.name()).await?;
        have = target;
        settle(pid).await?;
        let rss = rss_kib(pid)?.0;
        eprintln!("[bench] {}: {target} objects, RSS {rss} KiB", sys.name());
        at.push((target, rss));
    }
    let new = restart(sys, l).await?;
    settle(new).await?;
    let (relist_rss, relist_peak) = rss_kib(new)?;
    if sys == System::Paddock {
        eprintln!(
            "[bench] paddock: how the {have} runs of {ns} stand: {}",
            run_tally(client, &ns).await?
        );
    }
    delete_namespace(client, &ns).await?;
    Ok(MemRow {
        system: sys.name(),
        at,
        relist_peak,
        relist_rss,
    })
}

/// How the AgentRuns of `ns` stand, as `"<count> <phase>[/<reason>] …"`, most common first; a
/// failed kind also shows the message of one of its runs, so the reason is on the bench's output.
pub async fn run_tally(client: &Client, ns: &str) -> Result<String> {
    let api: Api<paddock_crds::AgentRun> = Api::namespaced(client.clone(), ns);
    let mut counts: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut lp = kube::api::ListParams::default().limit(500);
    loop {
        let page = api.list(&lp).await?;
        for r in &page.items {
            let p = phase(r).map_or("NoPhase".to_string(), |p| format!("{p:?}"));
            let (key, example) = match paddock_e2e::condition(r, "Succeeded") {
                Some((_, reason, message)) if p == "Failed" => (
                    format!("{p}/{reason}"),
                    format!(" (e.g. {}: {message})", r.metadata.name.clone().unwrap_or_default()),
                ),
                _ => (p, String::new()),
            };
            counts.entry(key).or_insert((0, example)).0 += 1;
        }
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by_key(|(_, (n, _))| std::cmp::Reverse(*n));
    Ok(v.iter()
        .map(|(k, (n, e))| format!("{n} {k}{e}"))
        .collect::<Vec<_>>()
        .join(", "))
}

/// Resident set and peak (KiB) of process `pid`.
pub fn rss_kib(pid: u32) -> Result<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("process {pid}"))?;
    let field = |k: &str| -> u64 {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// Prints the scenario 3 table: one row per system.
pub fn print_table(mem: &[MemRow]) {
    println!("\nScenario 3: controller resident set (VmRSS, MiB) with N objects (created at 100/s, each with its pod on kwok; read once all pods exist, most objects still in progress); then the controller restarted with all of them: its peak (VmHWM) over the initial list and its settled RSS; KiB per object = (restarted settled − fresh at 0) / N");
    let counts: Vec<String> = mem
        .first()
        .map(|m| m.at.iter().map(|(n, _)| format!("{n}")).collect())
        .unwrap_or_default();
    println!(
        "| system | {} | restarted at {}: peak MiB | settled MiB | KiB/object |",
        counts
            .iter()
            .map(|c| format!("RSS MiB at {c}"))
            .collect::<Vec<_>>()
            .join(" | "),
        counts.last().cloned().unwrap_or_default()
    );
    println!("|---|{}---|---|---|", "---|".repeat(counts.len()));
    for m in mem {
        // A restarted process holding the last count, against a fresh one holding none.
        let n_last = m.at.last().map_or(0, |(n, _)| *n);
        let per = (m.relist_rss.saturating_sub(m.at[0].1)) as f64 / n_last.max(1) as f64;
        println!(
            "| {} | {} | {:.1} | {:.1} | {per:.1} |",
            m.system,
            m.at.iter()
                .map(|(_, r)| format!("{:.1}", *r as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(" | "),
            m.relist_peak as f64 / 1024.0,
            m.relist_rss as f64 / 1024.0
        );
    }
}
