//! Scenario 4's source: the API server's audit log, its writes counted by client.

use anyhow::{Context as _, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead as _, Seek as _};

/// This process's User-Agent: how the audit log tells its writes from the controllers'.
pub const BENCH_AGENT: &str = "paddock-bench";
/// Where a window of the API server's audit log starts: the file's inode and its length.
pub fn audit_offset(path: &str) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).map(|m| (m.ino(), m.len())).unwrap_or((0, 0))
}

/// The audit lines written since `from` (see [`audit_offset`]). The API server rotates the log
/// (`--audit-log-maxsize`): when the file at `path` is another one now, the rest of the old
/// one (renamed `audit-<time>.log` next to it, found by its inode) comes first.
pub fn audit_lines(path: &str, from: (u64, u64)) -> Result<Vec<String>> {
    use std::os::unix::fs::MetadataExt as _;
    let read_from = |p: &std::path::Path, offset: u64| -> Result<Vec<String>> {
        let mut f = std::fs::File::open(p).with_context(|| {
            format!(
                "{}: is the API server's audit log on? (e2e/bench.sh restarts it)",
                p.display()
            )
        })?;
        f.seek(std::io::SeekFrom::Start(offset))?;
        Ok(std::io::BufReader::new(f).lines().collect::<std::io::Result<_>>()?)
    };
    let path = std::path::Path::new(path);
    let (ino, len) = from;
    if std::fs::metadata(path)?.ino() == ino {
        return read_from(path, len);
    }
    let mut lines = vec![];
    let dir = path.parent().context("audit log directory")?;
    for e in std::fs::read_dir(dir)?.flatten() {
        if e.metadata().is_ok_and(|m| m.ino() == ino) {
            lines = read_from(&e.path(), len)?;
        }
    }
    lines.extend(read_from(path, 0)?);
    Ok(lines)
}

/// Writes of one client in the audit log.
#[derive(Default, Debug)]
pub struct Writes {
    /// Writes to objects other than Events.
    pub objects: u64,
    /// Event writes (core and events.k8s.io; a recorder's create or series patch).
    pub events: u64,
    /// 409 Conflict answers among all of them.
    pub conflicts: u64,
    /// Container log reads (`get` of `pods/log`, a followed stream counted once), not writes.
    pub log_reads: u64,
}

/// Writes (and log reads) in `ns` since `from` in the audit log, by user agent product (`kwok`,
/// `kube-scheduler`, …; the text before the first `/`).
pub fn audit_writes(path: &str, from: (u64, u64), ns: &str) -> Result<BTreeMap<String, Writes>> {
    let mut by: BTreeMap<String, Writes> = BTreeMap::new();
    let mut log_reads = std::collections::HashSet::new();
    for line in audit_lines(path, from)? {
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v["objectRef"]["namespace"] != ns
            && !(v["objectRef"]["resource"] == "namespaces" && v["objectRef"]["name"] == ns)
        {
            continue;
        }
        let ua = v["userAgent"].as_str().unwrap_or("");
        // kube-rs sends no User-Agent unless told to: name such clients by their user.
        let product = match ua.split('/').next() {
            Some(p) if !p.is_empty() => p.to_string(),
            _ => format!("user:{}", v["user"]["username"].as_str().unwrap_or("?")),
        };
        let e = by.entry(product).or_default();
        if v["objectRef"]["subresource"] == "log" {
            // A followed stream is logged at ResponseStarted and again at ResponseComplete.
            if log_reads.insert(v["auditID"].as_str().unwrap_or_default().to_string()) {
                e.log_reads += 1;
            }
            continue;
        }
        if v["objectRef"]["resource"] == "events" {
            e.events += 1;
        } else {
            e.objects += 1;
        }
        if v["responseStatus"]["code"] == 409 {
            e.conflicts += 1;
        }
    }
    Ok(by)
}

/// User agents that are not the controller under test: this benchmark, kwok, and the cluster's
/// own components.
pub fn not_the_controller(product: &str) -> bool {
    product == BENCH_AGENT
        || [
            "kwok",
            "kube-scheduler",
            "kube-controller-manager",
            "kubelet",
            "kubectl",
        ]
        .iter()
        .any(|p| product.starts_with(p))
}
