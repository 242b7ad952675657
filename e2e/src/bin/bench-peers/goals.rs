//! The closing table of `bench-peers`: each goal of issue 23 (docs/performance.md, "Goals")
//! with what this run measured for Paddock and for the peer it is compared with.

use crate::apply::Row;
use crate::nodes::ScaleRow;
use crate::starts::StartRow;

/// What the goals table is made of: the scenario 1 rows, the scenario 2 rows and scenario 6's
/// result, each absent when its scenario did not run.
#[derive(Default)]
pub struct Measured<'a> {
    /// Scenario 1 + 4, one row per system.
    pub apply: &'a [Row],
    /// Scenario 2, one row per system, start kind and measure.
    pub starts: &'a [StartRow],
    /// Scenario 6.
    pub scale: Option<&'a ScaleRow>,
}

/// `value` with `digits` decimals, or `—` when it was not measured.
fn show(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "—".into(), |v| format!("{v:.digits$}"))
}

/// `yes`/`no` for a measured value against its goal, `—` when not measured.
fn met(value: Option<f64>, ok: impl Fn(f64) -> bool) -> &'static str {
    match value {
        Some(v) if ok(v) => "yes",
        Some(_) => "no",
        None => "—",
    }
}

/// Prints the goals table: goal, Paddock, the peer's figure, met.
pub fn print_table(m: &Measured) {
    let apply = |system: &str| m.apply.iter().find(|r| r.system() == system);
    let start = |system: &str, measure: &str, q: f64| {
        m.starts
            .iter()
            .find(|r| r.system() == system && r.start() == "warm" && r.measure().starts_with(measure))
            .map(|r| r.percentile(q))
    };
    let paddock = apply("paddock");
    let tekton = apply("tekton-tuned");
    let memory = m.scale.map(ScaleRow::memory_per_run);
    println!("\nIssue 23's goals, as this run measured them (docs/performance.md)");
    println!("| goal | Paddock | peer | peer's figure | met |");
    println!("|---|---|---|---|---|");
    let row = |goal: &str, ours: String, peer: &str, theirs: String, ok: &str| {
        println!("| {goal} | {ours} | {peer} | {theirs} | {ok} |");
    };
    let (p50, p99) = (start("paddock", "agent", 50.0), start("paddock", "agent", 99.0));
    row(
        "warm start in bursts, create → agent started: p50 ≤ 100 ms",
        show(p50, 0),
        "agent-sandbox (claim Ready)",
        show(start("agent-sandbox", "claim", 50.0), 0),
        met(p50, |v| v <= 100.0),
    );
    row(
        "… p99 ≤ 300 ms",
        show(p99, 0),
        "agent-sandbox (claim Ready)",
        show(start("agent-sandbox", "claim", 99.0), 0),
        met(p99, |v| v <= 300.0),
    );
    let settled = memory.map(|(kib, _)| kib);
    row(
        "controller memory per run at scenario 6's runs, settled: ≤ 8 KiB",
        show(settled, 1),
        "Tekton tuned",
        "scenario 3".into(),
        met(settled, |v| v <= 8.0),
    );
    let peak = memory.map(|(_, ratio)| ratio);
    row(
        "restart peak ≤ 2 × settled",
        show(peak, 2),
        "",
        String::new(),
        met(peak, |v| v <= 2.0),
    );
    let writes = paddock.map(Row::writes);
    row(
        "API object writes per run ≤ 4",
        show(writes, 3),
        "Tekton tuned",
        show(tekton.map(Row::writes), 3),
        met(writes, |v| v <= 4.0),
    );
    let events = paddock.map(Row::events);
    // Three decimals: 2,001 Events for 1,000 runs misses the goal, and 2.00 would not say so.
    row(
        "Events per run ≤ 2",
        show(events, 3),
        "Tekton tuned",
        show(tekton.map(Row::events), 3),
        met(events, |v| v <= 2.0),
    );
    let pods = paddock.zip(tekton).map(|(p, t)| p.pods_per_s() / t.pods_per_s());
    row(
        "pods created per s ≥ 2 × tuned Tekton's",
        format!("{} pods/s", show(paddock.map(Row::pods_per_s), 1)),
        "Tekton tuned",
        format!("{} pods/s (× {})", show(tekton.map(Row::pods_per_s), 1), show(pods, 2)),
        met(pods, |v| v >= 2.0),
    );
    let ended = paddock.zip(tekton).map(|(p, t)| t.done_s() / p.done_s());
    row(
        "all runs ended ≥ 2 × sooner than tuned Tekton's",
        format!("{} s", show(paddock.map(Row::done_s), 1)),
        "Tekton tuned",
        format!("{} s (× {})", show(tekton.map(Row::done_s), 1), show(ended, 2)),
        met(ended, |v| v >= 2.0),
    );
    let reads = paddock.map(Row::log_reads);
    row(
        "log reads per ended run: 1",
        show(reads, 2),
        "Tekton tuned",
        show(tekton.map(Row::log_reads), 2),
        met(reads, |v| v <= 1.0),
    );
}
