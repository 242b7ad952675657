//! Push step, agent side (the gateway's side is [`crate::gateway::push`]). The `agent`
//! container holds no credentials, so it asks the `gateway` sidecar: it removes any old
//! `/workspace/.paddock/push-result`, writes the commit
//! SHA to `/workspace/.paddock/push-request` (atomically) and polls every 200 ms for
//! `push-result`, `{"ok":bool,"message":str,"commit":str,"reason":str}`, until the timeout
//! (default 120 s; with a BeforePush gate the gateway answers once the gate is decided, so the
//! runner waits until the run's deadline). A result naming another commit is ignored (it
//! answers an older request). Nothing here decides whether a push happens: the gateway does.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::workspace::{write_atomic, Workspace};

/// How often both sides poll the control files.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The gateway's answer to a push request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PushResult {
    /// Whether the branch was pushed.
    pub ok: bool,
    /// What happened (redacted by the gateway).
    #[serde(default)]
    pub message: String,
    /// The commit the request named (added by Paddock's gateway; optional for readers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// CamelCase reason when not ok: `Rejected` or `GateExpired` (the BeforePush gate said
    /// no), `PlanNotApproved` (plan review without a signed plan approval), `PushFailed`
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Errors of the push step.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The request could not be written.
    #[error("cannot write the push request: {0}")]
    Io(#[from] std::io::Error),
    /// The gateway did not answer in time.
    #[error("no push result from the gateway within {0} s")]
    Timeout(u64),
    /// The gateway refused or failed to push: its reason (`Rejected`, `GateExpired`,
    /// `PlanNotApproved`, `PushFailed`) and message.
    #[error("push failed: {1}")]
    Rejected(String, String),
    /// The runner was told to terminate while waiting.
    #[error("terminated while waiting for the push result")]
    Terminated,
}

/// Asks the gateway to push `commit` and waits for its answer.
///
/// # Errors
/// [`PushError`]: I/O, timeout, rejection or termination.
pub async fn request_push(
    ws: &Workspace,
    commit: &str,
    timeout: Duration,
    terminate: &mut watch::Receiver<bool>,
) -> Result<String, PushError> {
    std::fs::create_dir_all(ws.control())?;
    let result_file = ws.push_result_file();
    match std::fs::remove_file(&result_file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    write_atomic(&ws.push_request_file(), format!("{commit}\n").as_bytes())?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(raw) = std::fs::read_to_string(&result_file) {
            if let Ok(res) = serde_json::from_str::<PushResult>(&raw) {
                if res.commit.as_deref().is_none_or(|c| c == commit) {
                    return if res.ok {
                        Ok(res.message)
                    } else {
                        Err(PushError::Rejected(
                            res.reason.unwrap_or_else(|| "PushFailed".into()),
                            res.message,
                        ))
                    };
                }
            }
        }
        if *terminate.borrow() {
            return Err(PushError::Terminated);
        }
        if Instant::now() >= deadline {
            let _ = std::fs::remove_file(ws.push_request_file());
            return Err(PushError::Timeout(timeout.as_secs()));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
