//! Scenarios 1 and 4: apply → pod latency and the controller's API writes per object.

use crate::audit::{audit_offset, audit_writes, not_the_controller};
use crate::cluster::{namespace, paddock_pool};
use crate::system::System;
use crate::watch::{create, wait_done, watch, Shared, Times};
use anyhow::{bail, Result};
use kube::Client;
use paddock_e2e::percentile;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Create → pod latency of a batch of objects, as this process saw it (monotonic clock).
pub struct Latency {
    /// Median of create sent → the pod's first watch event, ms.
    pub p50: f64,
    /// 99th percentile of the same, ms.
    pub p99: f64,
    /// Maximum of the same, ms.
    pub max: f64,
    /// When the last pod was first seen, s after `t0`.
    pub last_pod_s: f64,
    /// When the last object was first seen finished, s after `t0`.
    pub done_s: f64,
    /// Pod creation rate, pods/s: (n − 1) over first pod → last pod.
    pub pods_per_s: f64,
}

/// The [`Latency`] of the `n` objects of `times`, `t0` being just before the first create;
/// fails when fewer than `n` got a pod.
pub fn compute_latency(times: &Times, n: usize, t0: Instant, what: &str) -> Result<Latency> {
    let t = times;
    let mut lat: Vec<f64> = t
        .sent
        .iter()
        .filter_map(|(name, s)| t.pod.get(name).map(|p| p.duration_since(*s).as_secs_f64() * 1000.0))
        .collect();
    if lat.len() < n {
        bail!("{what}: {} of {n} objects got a pod", lat.len());
    }
    lat.sort_by(f64::total_cmp);
    let first_pod = t.pod.values().min().copied().unwrap_or(t0);
    let last_pod = t.pod.values().max().copied().unwrap_or(t0);
    let last_done = t.done.values().max().copied().unwrap_or(t0);
    Ok(Latency {
        p50: percentile(&lat, 50.0),
        p99: percentile(&lat, 99.0),
        max: lat[lat.len() - 1],
        last_pod_s: last_pod.duration_since(t0).as_secs_f64(),
        done_s: last_done.duration_since(t0).as_secs_f64(),
        pods_per_s: (n.saturating_sub(1)) as f64 / last_pod.duration_since(first_pod).as_secs_f64().max(1e-3),
    })
}

/// One row of the scenario 1 table.
pub struct Row {
    system: &'static str,
    n: usize,
    rate: f64,
    lat: Latency,
    writes: f64,
    events: f64,
    conflicts: u64,
    log_reads: f64,
}

impl Row {
    /// The system's name.
    pub fn system(&self) -> &str {
        self.system
    }
    /// Object writes per object.
    pub fn writes(&self) -> f64 {
        self.writes
    }
    /// Event writes per object.
    pub fn events(&self) -> f64 {
        self.events
    }
    /// Container log reads per object.
    pub fn log_reads(&self) -> f64 {
        self.log_reads
    }
    /// Pods created per second.
    pub fn pods_per_s(&self) -> f64 {
        self.lat.pods_per_s
    }
    /// When the last object was seen finished, s after the first create.
    pub fn done_s(&self) -> f64 {
        self.lat.done_s
    }
}

/// Scenario 1 and 4 for one system.
pub async fn apply_to_pod(
    client: &Client,
    sys: System,
    n: usize,
    rate: f64,
    audit: &str,
    replay: &crate::cluster::Replay,
) -> Result<Row> {
    let ns = format!("bench-{}", sys.name());
    namespace(client, &ns).await?;
    if sys == System::Paddock {
        paddock_pool(client, &ns, replay).await?;
    }
    let times: Shared = Arc::default();
    watch(client, &ns, sys, &times).await?;
    let from = audit_offset(audit);
    eprintln!("[bench] {}: creating {n} at {rate}/s in {ns}", sys.name());
    let t0 = Instant::now();
    create(client, &ns, sys, "o", 0..n, rate, &times).await?;
    wait_done(&times, n, sys.name()).await?;
    // The audit log is written before the response; give the last writes a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let by = audit_writes(audit, from, &ns)?;
    let lat = compute_latency(&times.lock().unwrap(), n, t0, sys.name())?;
    eprintln!(
        "[bench] {}: audit writes in {ns} by user agent (writes, 409s): {by:?}",
        sys.name()
    );
    let (mut writes, mut events, mut conflicts, mut log_reads) = (0, 0, 0, 0);
    for (p, w) in &by {
        if !not_the_controller(p) {
            writes += w.objects;
            events += w.events;
            conflicts += w.conflicts;
            log_reads += w.log_reads;
        }
    }
    Ok(Row {
        system: sys.name(),
        n,
        rate,
        lat,
        writes: writes as f64 / n as f64,
        events: events as f64 / n as f64,
        conflicts,
        log_reads: log_reads as f64 / n as f64,
    })
}

/// Prints the scenario 1 + 4 table (nothing when no system ran it).
pub fn print_table(rows: &[Row], n: usize, rate: f64) {
    if rows.is_empty() {
        return;
    }
    println!("\nScenario 1 + 4: object created → its pod seen by a watch (ms), {n} objects at {rate}/s, pods on kwok");
    println!("| system | objects | rate/s | p50 ms | p99 ms | max ms | last pod s | all finished s | pods/s | writes/object | Events/object | 409s | log reads/object |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {} | {:.2} |",
            r.system,
            r.n,
            r.rate,
            r.lat.p50,
            r.lat.p99,
            r.lat.max,
            r.lat.last_pod_s,
            r.lat.done_s,
            r.lat.pods_per_s,
            r.writes,
            r.events,
            r.conflicts,
            r.log_reads
        );
    }
}
