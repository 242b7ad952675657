//! Scenario 6: scale past one node. Paddock's minimal shell run (scenario 1's AgentRun) many
//! times over onto several kwok nodes, with the operator's CPU and memory and the CPU of every
//! other process on the machine over the same window, so the table says where the limit is.

use crate::apply::{compute_latency, Latency};
use crate::cluster::{delete_namespace, namespace, paddock_pool};
use crate::memory::{restart, rss_kib, run_tally, settle};
use crate::procfs::{clock_ticks, cpu_ticks, machine_ticks, pids_named};
use crate::system::{peers_with_env, Limits, System};
use crate::watch::{create, wait_done, watch, Shared};
use anyhow::{bail, Result};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kube::Client;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The kwok nodes' name prefix (e2e/peers.sh: `paddock-kwok-<i>`).
const NODE_PREFIX: &str = "paddock-kwok-";

/// The other processes whose CPU time is read over the window: table label and `comm`.
const OTHERS: [(&str, &str); 8] = [
    ("kube-apiserver", "kube-apiserver"),
    ("etcd", "etcd"),
    ("kube-scheduler", "kube-scheduler"),
    ("kube-controller-manager", "kube-controller-manager"),
    ("kubelet (real node)", "kubelet"),
    (
        "kube-router (NetworkPolicy; with its iptables, ipset runs)",
        "kube-router",
    ),
    ("kwok", "kwok"),
    ("bench-peers (this client)", "bench-peers"),
];

/// What scenario 6 runs: `runs` AgentRuns at `rate` per second onto `nodes` kwok nodes.
pub struct ScaleParams {
    /// kwok nodes, started by `PADDOCK_KWOK_NODES=<nodes> e2e/peers.sh start kwok`.
    pub nodes: usize,
    /// AgentRuns created.
    pub runs: usize,
    /// Creates per second (0: as fast as 32 concurrent requests go).
    pub rate: f64,
    /// How long to wait after the last run ended before reading the settled memory, s: past
    /// the operator's Event recorder's cache window (6 minutes) by default.
    pub settle_s: u64,
}

/// The operator's memory around scenario 6, KiB: a fresh process before the first run, the
/// same process [`ScaleParams::settle_s`] after the last run ended (no run in flight, the
/// recorder's window passed), and a process restarted then with every run there (its settled
/// VmRSS and its VmHWM, the peak of its initial list).
#[derive(Clone, Copy, Debug, Default)]
pub struct Settled {
    fresh: u64,
    after_window: u64,
    restarted: u64,
    restart_peak: u64,
}

/// The scenario 6 result: one table row, the CPU of every process read and the runs' tally.
pub struct ScaleRow {
    params: ScaleParams,
    lat: Latency,
    /// Fewest and most pods on one kwok node.
    per_node: (usize, usize),
    /// Window: first create → all runs finished, s.
    window_s: f64,
    /// The operator's CPU time over the window, s.
    operator_cpu_s: f64,
    /// The operator's VmRSS at the end, its largest VmRSS sampled every 500 ms over the window,
    /// and its VmHWM (the process's lifetime peak), KiB.
    rss_end: u64,
    rss_peak: u64,
    hwm: u64,
    /// CPU time over the window of each other process read ([`OTHERS`]), s.
    others: Vec<(&'static str, f64)>,
    /// The machine's busy CPU time over the window, % of all CPUs; and their number.
    machine_busy_pct: f64,
    cpus: usize,
    tally: String,
    memory: Settled,
}

/// CPU ticks of every process named `comm`, by PID.
fn ticks_of(comm: &str) -> HashMap<u32, u64> {
    pids_named(comm)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| cpu_ticks(p).ok().map(|t| (p, t)))
        .collect()
}

/// Ticks used between two readings of [`ticks_of`]: a process that started in between counts
/// from 0, one that ended in between is lost.
fn compute_used(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> u64 {
    after
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum()
}

/// Fewest and most of the objects `ours` on one of `nodes`, from the node each object's pod was
/// bound to (`bound`, which may hold other owners' pods too); a node no pod went to counts 0.
pub fn compute_spread(
    bound: &HashMap<String, String>,
    ours: &HashMap<String, Instant>,
    nodes: &[String],
) -> (usize, usize) {
    let mut per: BTreeMap<&str, usize> = nodes.iter().map(|n| (n.as_str(), 0)).collect();
    for (_, node) in bound.iter().filter(|(o, _)| ours.contains_key(*o)) {
        if let Some(c) = per.get_mut(node.as_str()) {
            *c += 1;
        }
    }
    (
        per.values().copied().min().unwrap_or(0),
        per.values().copied().max().unwrap_or(0),
    )
}

/// The Ready kwok nodes `paddock-kwok-<i>`, by name.
async fn ready_kwok_nodes(client: &Client) -> Result<Vec<String>> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes.list(&ListParams::default().labels("type=kwok")).await?;
    let ready = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let mut names: Vec<String> = list
        .items
        .iter()
        .filter(|n| ready(n))
        .filter_map(|n| n.metadata.name.clone())
        .filter(|n| n.starts_with(NODE_PREFIX))
        .collect();
    names.sort();
    Ok(names)
}

/// Scenario 6: starts kwok with `p.nodes` nodes (left running so), creates `p.runs` AgentRuns
/// at `p.rate`/s in the namespace `bench-nodes` (pool as scenario 1's, pods spread by the
/// scheduler), waits until every run has finished and reads the operator's CPU and memory.
pub async fn scale(client: &Client, p: ScaleParams, replay: &crate::cluster::Replay) -> Result<ScaleRow> {
    let count = p.nodes.to_string();
    peers_with_env(&["start", "kwok"], &[("PADDOCK_KWOK_NODES", &count)])?;
    let nodes = ready_kwok_nodes(client).await?;
    if nodes.len() != p.nodes {
        bail!("expected {} Ready kwok nodes, found {nodes:?}", p.nodes);
    }
    let ns = "bench-nodes";
    namespace(client, ns).await?;
    paddock_pool(client, ns, replay).await?;
    let times: Shared = Arc::default();
    watch(client, ns, System::Paddock, &times).await?;
    // A fresh operator: the baseline of the memory per run.
    let limits = Limits {
        qps: 0,
        burst: 0,
        threads: 0,
    };
    let pid = restart(System::Paddock, &limits).await?;
    settle(pid).await?;
    let mut memory = Settled {
        fresh: rss_kib(pid)?.0,
        ..Settled::default()
    };
    let tck = clock_ticks();
    let others0: Vec<_> = OTHERS.iter().map(|(_, c)| ticks_of(c)).collect();
    let (op0, machine0) = (cpu_ticks(pid)?, machine_ticks()?);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_rss(pid, times.clone(), p.runs, stop.clone()));
    eprintln!(
        "[bench] paddock: creating {} runs at {}/s onto {} kwok nodes in {ns}",
        p.runs, p.rate, p.nodes
    );
    let t0 = Instant::now();
    let outcome = async {
        create(client, ns, System::Paddock, "n", 0..p.runs, p.rate, &times).await?;
        wait_done(&times, p.runs, "paddock scale").await
    }
    .await;
    let window_s = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (op1, machine1) = (cpu_ticks(pid)?, machine_ticks()?);
    let others: Vec<_> = OTHERS
        .iter()
        .zip(&others0)
        .map(|((label, c), before)| (*label, compute_used(before, &ticks_of(c)) as f64 / tck))
        .collect();
    let (rss_end, hwm) = rss_kib(pid)?;
    let rss_peak = sampler.await?.max(rss_end);
    let tally = run_tally(client, ns).await?;
    eprintln!("[bench] paddock: how the {} runs of {ns} stand: {tally}", p.runs);
    if outcome.is_ok() {
        eprintln!(
            "[bench] paddock: all runs ended; reading the operator's memory in {} s, then restarting it",
            p.settle_s
        );
        tokio::time::sleep(Duration::from_secs(p.settle_s)).await;
        memory.after_window = rss_kib(pid)?.0;
        let new = restart(System::Paddock, &limits).await?;
        settle(new).await?;
        (memory.restarted, memory.restart_peak) = rss_kib(new)?;
    }
    let row = outcome.and_then(|()| {
        let t = times.lock().unwrap();
        let per_node = compute_spread(&t.node, &t.sent, &nodes);
        Ok((compute_latency(&t, p.runs, t0, "paddock scale")?, per_node))
    });
    delete_namespace(client, ns).await?;
    let (lat, per_node) = row?;
    let busy = (machine1.0 - machine0.0) as f64 / (machine1.1 - machine0.1).max(1) as f64;
    Ok(ScaleRow {
        params: p,
        lat,
        per_node,
        window_s,
        operator_cpu_s: op1.saturating_sub(op0) as f64 / tck,
        rss_end,
        rss_peak,
        hwm,
        others,
        machine_busy_pct: busy * 100.0,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        tally,
        memory,
    })
}

/// Samples `pid`'s VmRSS every 500 ms until `stop`, printing progress every 30 s; returns the
/// largest, KiB.
async fn sample_rss(pid: u32, times: Shared, n: usize, stop: Arc<AtomicBool>) -> u64 {
    let (t0, mut printed, mut peak) = (Instant::now(), Instant::now(), 0);
    while !stop.load(Ordering::Relaxed) {
        let rss = rss_kib(pid).map_or(0, |r| r.0);
        peak = peak.max(rss);
        if printed.elapsed() > Duration::from_secs(30) {
            let (sent, pods, done) = {
                let t = times.lock().unwrap();
                (t.sent.len(), t.pod.len(), t.done.len())
            };
            eprintln!(
                "[bench] paddock scale: {sent}/{n} created, {pods} pods, {done} finished, operator RSS {:.1} MiB, {:.0} s",
                rss as f64 / 1024.0,
                t0.elapsed().as_secs_f64()
            );
            printed = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    peak
}

impl ScaleRow {
    /// The operator's KiB per run settled (the same process past the recorder's window) and its
    /// restart peak over its settled VmRSS ([`Settled`]).
    pub fn memory_per_run(&self) -> (f64, f64) {
        let m = self.memory;
        (
            m.after_window.saturating_sub(m.fresh) as f64 / self.params.runs.max(1) as f64,
            m.restart_peak as f64 / m.restarted.max(1) as f64,
        )
    }
}

/// Prints the scenario 6 tables: the row, then the CPU time of every process read over the
/// same window, then how the runs stood at the end, then the operator's memory.
pub fn print_table(r: &ScaleRow) {
    let mib = |k: u64| k as f64 / 1024.0;
    let core_pct = |s: f64| s / r.window_s.max(1e-3) * 100.0;
    println!(
        "\nScenario 6: scale past one node: AgentRuns (scenario 1's) onto kwok nodes; created → its pod seen by a watch (ms); the operator's CPU over the window (first create → all finished, {:.0} s) and memory",
        r.window_s
    );
    println!("| kwok nodes | runs | rate/s | p50 ms | p99 ms | max ms | pods/s | last pod s | all finished s | pods/node min | pods/node max | operator CPU s | operator CPU % of a core | RSS MiB at end | RSS peak MiB (sampled) | VmHWM MiB (process lifetime) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} |",
        r.params.nodes,
        r.params.runs,
        r.params.rate,
        r.lat.p50,
        r.lat.p99,
        r.lat.max,
        r.lat.pods_per_s,
        r.lat.last_pod_s,
        r.lat.done_s,
        r.per_node.0,
        r.per_node.1,
        r.operator_cpu_s,
        core_pct(r.operator_cpu_s),
        mib(r.rss_end),
        mib(r.rss_peak),
        mib(r.hwm)
    );
    println!(
        "\nCPU over the same window; the machine was {:.0} % busy ({} CPUs; a % of a core over 100 is more than one)",
        r.machine_busy_pct, r.cpus
    );
    println!("| process | CPU s | % of a core |");
    println!("|---|---|---|");
    println!(
        "| paddock-operator | {:.1} | {:.0} |",
        r.operator_cpu_s,
        core_pct(r.operator_cpu_s)
    );
    for (label, s) in &r.others {
        println!("| {label} | {s:.1} | {:.0} |", core_pct(*s));
    }
    println!("\nRuns at the end: {}", r.tally);
    let m = r.memory;
    let per_run = |k: u64| k.saturating_sub(m.fresh) as f64 / r.params.runs.max(1) as f64;
    println!(
        "\nThe operator's memory with the {} ended runs (and their pods) in its caches: VmRSS of a fresh operator before them, of the same process {} s after the last ended (no run in flight, past the Event recorder's 6-minute window), and of an operator restarted then (settled, and its peak VmHWM over the initial list); KiB per run = (settled − fresh) / runs",
        r.params.runs, r.params.settle_s
    );
    println!("| fresh MiB | settled MiB | KiB/run settled | restarted: settled MiB | KiB/run restarted | restart peak MiB | peak / settled |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
        mib(m.fresh),
        mib(m.after_window),
        per_run(m.after_window),
        mib(m.restarted),
        per_run(m.restarted),
        mib(m.restart_peak),
        m.restart_peak as f64 / m.restarted.max(1) as f64
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_counts_nodes_without_pods_and_ignores_other_nodes_and_owners() {
        let nodes: Vec<String> = (0..3).map(|i| format!("{NODE_PREFIX}{i}")).collect();
        let bound: HashMap<String, String> = [
            ("a", "paddock-kwok-0"),
            ("b", "paddock-kwok-0"),
            ("c", "paddock-kwok-1"),
            ("d", "paddock-node"),
            ("pool", "paddock-kwok-2"),
        ]
        .iter()
        .map(|(o, n)| (o.to_string(), n.to_string()))
        .collect();
        let ours: HashMap<String, Instant> = ["a", "b", "c", "d"].map(|o| (o.to_string(), Instant::now())).into();
        assert_eq!(compute_spread(&bound, &ours, &nodes), (0, 2));
        assert_eq!(compute_spread(&HashMap::new(), &ours, &[]), (0, 0));
    }

    #[test]
    fn used_counts_new_processes_from_zero() {
        let before: HashMap<u32, u64> = [(1, 100), (2, 50)].into();
        let after: HashMap<u32, u64> = [(1, 150), (3, 20)].into();
        assert_eq!(compute_used(&before, &after), 70);
    }
}
