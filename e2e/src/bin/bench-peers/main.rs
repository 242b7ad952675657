//! Controller benchmark against the peers, on kwok fake nodes (issue 8, scenarios 1, 3 and 4;
//! issue 23, scenario 6):
//! Paddock's operator (AgentRun → runner Pod) next to Tekton Pipelines' controller (TaskRun →
//! Pod; at its default client limits and tuned) and agent-sandbox's controller (Sandbox → Pod),
//! all on the same local cluster, each measured alone in its own namespace.
//!
//! **Scenario 1, apply → pod.** For each system: `--objects` objects (default 1,000) are created
//! at `--rate` per second (default 50; 0 = as fast as 32 concurrent requests go), each a minimal
//! unit of work whose pod is scheduled on the kwok node `paddock-kwok-0` (e2e/peers.sh). kwok
//! runs the pods and completes those of AgentRuns and TaskRuns about 1 s after they start;
//! agent-sandbox pods stay running. Latency of one object: from the moment this process sends
//! its create request (this process's monotonic clock) to the moment this process receives the
//! watch event of its pod (a pod watch on the namespace, opened and synced before the first
//! create). Object timestamps are whole seconds, so none is used. Reported: p50/p99/max in ms,
//! when the last pod appeared and when the last object finished (s after the first create),
//! and the pod creation rate (pods/s, first to last pod).
//!
//! **Scenario 4, API cost.** The kube-apiserver's audit log (writes only, Metadata level; see
//! `write_audit_policy` in e2e/cluster/cluster.sh) over each system's window, restricted to the
//! system's namespace, grouped by user agent: the controller's writes per object (every write
//! not made by this benchmark, kwok, the scheduler, the kube-controller-manager or the kubelet)
//! and its 409 Conflict answers.
//!
//! **Scenario 3, memory.** The resident set (`VmRSS` of `/proc/<pid>/status`; the operator's
//! container process and the peers' host processes are all on this machine) of Paddock's
//! operator and Tekton's controller: a fresh process with 0, then with each of `--scale`
//! (default 1000; `--scale 1000,10000` adds 10,000, which takes this API server about 15 minutes
//! per system to create and as long to delete) objects created at 100/s, read once every object
//! has its pod (most are still in progress then); then the controller is restarted with all of
//! them and its peak (`VmHWM`) and settled RSS are read. KiB per object = (restarted settled −
//! fresh) / N. Paddock's figure at 10,000 runs, all ended, is scenario 6's.
//!
//! **Scenario 2, start on the real node**: see [`starts::paddock_starts`] and [`starts::sandbox_starts`].
//!
//! **Scenario 6, scale past one node** (Paddock only; run last, as it leaves kwok with its
//! nodes): kwok restarted with `--scale-nodes` fake nodes (default 10, `PADDOCK_KWOK_NODES` of
//! e2e/peers.sh), then `--scale-runs` AgentRuns (default 10,000; scenario 1's object) created at
//! `--scale-rate` per second (default 10, the rate at which this API server kept scenario 1's
//! p99 at 56 ms, docs/performance.md). Reported: scenario 1's latency and rates, the fewest and
//! most pods on one node, the operator's CPU time (`utime` + `stime` of `/proc/<pid>/stat`) over
//! the window from the first create until every run has finished, its VmRSS at the end, the
//! largest sampled every 500 ms and its VmHWM; the CPU time of the cluster's components, kwok
//! and this client over the same window, and how busy the machine was; the runs' phases. Then
//! the operator's settled memory with every run ended: the same process `--scale-settle-s`
//! (default 370) after the last run ended, past the Event recorder's 6-minute window, and a
//! restarted one (settled and peak), against a fresh operator's before the first run.
//!
//! Usage: `bench-peers [--scenarios 1,2,3,6] [--objects N] [--rate R] [--bursts B]
//! [--systems paddock,tekton,tekton-tuned,agent-sandbox] [--scale 1000|1000,10000|none] [--qps Q]
//! [--burst B] [--tekton-threads T] [--scale-nodes K] [--scale-runs N] [--scale-rate R] [--scale-settle-s S]`, with
//! `KUBECONFIG` and Paddock installed
//! (e2e/bench.sh sets it up and starts the peers with e2e/peers.sh). Prints markdown tables.
#![warn(missing_docs)]

mod apply;
mod audit;
mod cluster;
mod goals;
mod memory;
mod nodes;
mod procfs;
mod starts;
mod system;
mod watch;

use anyhow::{Context as _, Result};
use kube::Client;
use system::{prepare, Limits, System};

/// A command-line value: `--name value`.
fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn num<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match arg(name) {
        Some(v) => v
            .parse()
            .ok()
            .with_context(|| format!("{name} takes a number, got {v}")),
        None => Ok(default),
    }
}

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<()> {
    let n: usize = num("--objects", 1000)?;
    let rate: f64 = num("--rate", 50.0)?;
    let limits = Limits {
        qps: num("--qps", 0)?,
        burst: num("--burst", 0)?,
        threads: num("--tekton-threads", 32)?,
    };
    let systems = arg("--systems")
        .unwrap_or_else(|| "paddock,tekton,tekton-tuned,agent-sandbox".into())
        .split(',')
        .map(System::parse)
        .collect::<Result<Vec<_>>>()?;
    let audit = std::env::var("PADDOCK_AUDIT_LOG").unwrap_or_else(|_| {
        let dir = std::env::var("PADDOCK_CLUSTER_DIR").unwrap_or_else(|_| "/var/lib/paddock-cluster".into());
        format!("{dir}/logs/audit.log")
    });
    let mut config = kube::Config::infer().await?;
    config.headers.push((
        hyper::header::USER_AGENT,
        hyper::header::HeaderValue::from_static(audit::BENCH_AGENT),
    ));
    let client = Client::try_from(config)?;

    let scale: Vec<usize> = match arg("--scale").as_deref() {
        None => vec![1000],
        Some("") | Some("none") => vec![],
        Some(v) => v
            .split(',')
            .map(|x| x.parse().context("--scale takes counts"))
            .collect::<Result<_>>()?,
    };
    let scenarios = arg("--scenarios").unwrap_or_else(|| "1,2,3,6".into());
    let scale_params = nodes::ScaleParams {
        nodes: num("--scale-nodes", 10)?,
        runs: num("--scale-runs", 10_000)?,
        rate: num("--scale-rate", 10.0)?,
        settle_s: num("--scale-settle-s", 370)?,
    };
    let bursts: usize = num("--bursts", 5)?;
    let mut starts = vec![];
    if scenarios.contains('2') {
        let (per, arrivals) = (4, 45.0);
        if systems.contains(&System::Paddock) {
            starts.extend(starts::paddock_starts(bursts, per, arrivals).await?);
        }
        if systems.contains(&System::Sandbox) {
            prepare(System::Sandbox, &limits)?;
            starts.extend(starts::sandbox_starts(&client, bursts, per, arrivals).await?);
        }
        starts::print_table(&starts, bursts, per, arrivals);
    }
    let replay = if systems.contains(&System::Paddock) && scenarios.contains(['1', '3', '6']) {
        eprintln!("[bench] one real run on the real node, for the logs and result kwok replays");
        cluster::capture_runner().await?
    } else {
        cluster::Replay::default()
    };
    let mut rows = vec![];
    for sys in systems.iter().filter(|_| scenarios.contains('1')) {
        prepare(*sys, &limits)?;
        rows.push(apply::apply_to_pod(&client, *sys, n, rate, &audit, &replay).await?);
        cluster::delete_namespace(&client, &format!("bench-{}", sys.name())).await?;
    }
    apply::print_table(&rows, n, rate);
    if !scale.is_empty() && scenarios.contains('3') {
        let mut mem = vec![];
        for sys in [System::Paddock, System::TektonTuned] {
            if systems.contains(&sys) || (sys == System::TektonTuned && systems.contains(&System::Tekton)) {
                mem.push(memory::memory(&client, sys, &scale, &limits, &replay).await?);
            }
        }
        memory::print_table(&mem);
    }
    let mut scale_row = None;
    if systems.contains(&System::Paddock) && scenarios.contains('6') {
        let row = nodes::scale(&client, scale_params, &replay).await?;
        nodes::print_table(&row);
        scale_row = Some(row);
    }
    goals::print_table(&goals::Measured {
        apply: &rows,
        starts: &starts,
        scale: scale_row.as_ref(),
    });
    Ok(())
}
