//! What the gateway tells the agent container's runner through the shared workspace (see
//! [`super::proxy`]): refused egress (`.paddock/egress-denied.jsonl`, one JSON object per line)
//! and a reached budget (`.paddock/budget-exceeded`). Read by `paddock-runner run`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use paddock_crds::events::RunnerEvent;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use crate::workspace::Workspace;

/// How often the files are polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Most denial events recorded by the gateway and reported per attempt (a looping agent must not
/// flood the log).
pub const MAX_DENIALS: usize = 100;

/// The denial log.
pub fn denied_file(ws: &Workspace) -> PathBuf {
    denied_file_in(&ws.control())
}

/// The denial log in the control directory `control` (the gateway's side of [`denied_file`]).
pub fn denied_file_in(control: &Path) -> PathBuf {
    control.join("egress-denied.jsonl")
}

/// The budget marker.
pub fn budget_file(ws: &Workspace) -> PathBuf {
    ws.control().join("budget-exceeded")
}

#[derive(Deserialize)]
struct Denial {
    host: String,
    port: u16,
}

/// Parses the denial lines of `text` (bad lines skipped) into events.
pub fn denials(text: &str) -> Vec<RunnerEvent> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Denial>(l).ok())
        .map(|d| RunnerEvent::EgressDenied {
            host: paddock_crds::events::truncate(&d.host, 253),
            port: d.port,
        })
        .collect()
}

/// Sends an [`RunnerEvent::EgressDenied`] for each new line of the denial log, up to
/// [`MAX_DENIALS`], until the receiver is gone.
pub async fn watch_denials(file: PathBuf, tx: mpsc::Sender<RunnerEvent>) {
    let mut sent = 0usize;
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let all = denials(&text);
        for ev in all.into_iter().skip(sent).take(MAX_DENIALS.saturating_sub(sent)) {
            if tx.send(ev).await.is_err() {
                return;
            }
            sent += 1;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The budget marker's message, if the gateway wrote one.
pub fn budget_exceeded(file: &Path) -> Option<String> {
    let raw = std::fs::read_to_string(file).ok()?;
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap_or_default();
    Some(
        v["message"]
            .as_str()
            .unwrap_or("the run's budget was reached")
            .to_string(),
    )
}

/// The latest model call's status file.
pub fn model_status_file(ws: &Workspace) -> PathBuf {
    ws.control().join("model-status")
}

/// The HTTP status of the latest model call when it says the model endpoint is down or
/// throttling (429 or 5xx): an agent that failed after it failed for a reason outside its
/// control, which `spec.retry` retries (reason `ModelUnavailable`).
pub fn model_unavailable(file: &Path) -> Option<u16> {
    let raw = std::fs::read_to_string(file).ok()?;
    let status = serde_json::from_str::<serde_json::Value>(&raw).ok()?["status"].as_u64()? as u16;
    (status == 429 || status >= 500).then_some(status)
}

/// Waits until the gateway at `url` (`http://host:port`, from `PADDOCK_GATEWAY_URL`) accepts
/// connections, polling every 10 ms for at most `timeout`: the agent container can start before
/// the gateway sidecar has bound its port. Returns whether it did.
pub async fn wait_for_gateway(url: &str, timeout: Duration) -> bool {
    let addr = url.trim_start_matches("http://").trim_end_matches('/').to_string();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect(addr.as_str()).await.is_ok() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A stop signal for the agent CLI: true once `term` is (SIGTERM) or the budget marker appears.
pub fn stop_on_budget(file: PathBuf, mut term: watch::Receiver<bool>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        loop {
            if *term.borrow() || budget_exceeded(&file).is_some() {
                let _ = tx.send(true);
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL_INTERVAL) => {},
                _ = term.changed() => {},
            }
        }
        // Keep the sender alive so the receiver never sees a closed channel.
        std::future::pending::<()>().await;
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_lines_become_events() {
        let evs = denials("{\"host\":\"evil.example\",\"port\":443}\nnot json\n{\"host\":\"x\",\"port\":80}\n");
        assert_eq!(
            evs,
            vec![
                RunnerEvent::EgressDenied {
                    host: "evil.example".into(),
                    port: 443
                },
                RunnerEvent::EgressDenied {
                    host: "x".into(),
                    port: 80
                },
            ]
        );
    }

    #[test]
    fn only_throttling_and_server_errors_mean_the_model_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("model-status");
        assert_eq!(model_unavailable(&file), None);
        for (status, want) in [
            (200, None),
            (400, None),
            (401, None),
            (429, Some(429)),
            (500, Some(500)),
            (529, Some(529)),
        ] {
            std::fs::write(&file, format!("{{\"status\":{status}}}")).unwrap();
            assert_eq!(model_unavailable(&file), want, "{status}");
        }
    }

    #[tokio::test]
    async fn waits_for_the_gateway_to_listen() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let url = format!("http://{addr}");
        assert!(
            !wait_for_gateway(&url, Duration::from_millis(100)).await,
            "nobody listens"
        );
        let waiter = tokio::spawn({
            let url = url.clone();
            async move { wait_for_gateway(&url, Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn the_budget_marker_stops_the_agent() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("budget-exceeded");
        let (_term_tx, term) = watch::channel(false);
        let mut stop = stop_on_budget(file.clone(), term);
        assert!(!*stop.borrow());
        std::fs::write(
            &file,
            r#"{"reason":"BudgetExceeded","message":"budget.maxCostUSD 0.01 reached"}"#,
        )
        .unwrap();
        tokio::time::timeout(Duration::from_secs(5), stop.changed())
            .await
            .unwrap()
            .unwrap();
        assert!(*stop.borrow());
        assert_eq!(
            budget_exceeded(&file).as_deref(),
            Some("budget.maxCostUSD 0.01 reached")
        );
    }
}
