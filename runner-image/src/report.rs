//! The run's result, shared by the commands that end with one (`clone` when it fails, `run`
//! always): built step by step ([`initial_result`], [`fail`]) and reported last ([`finish`]:
//! the `result` event and the termination message). Below the commands, so neither uses the
//! other for it.

use std::io::Write;
use std::path::Path;

use paddock_crds::events::{Outcome, RunResult, RunnerEvent, Step, Usage};

use crate::emit::{termination_message, Emitter};

/// A result before any step ran: `Succeeded`, nothing committed.
pub fn initial_result(branch: &str) -> RunResult {
    RunResult {
        outcome: Outcome::Succeeded,
        reason: "Succeeded".into(),
        message: String::new(),
        failed_step: None,
        commit: None,
        branch: branch.to_string(),
        pushed: false,
        files_changed: 0,
        insertions: 0,
        deletions: 0,
        summary: None,
        usage: Usage::default(),
        patch_bytes: 0,
        patch_truncated: false,
        exit_code: None,
    }
}

/// Marks `result` failed with `reason` at `step`, unless an earlier failure already did (the
/// first failure wins). Returns whether it was recorded.
pub fn fail(result: &mut RunResult, reason: &str, step: Option<Step>, message: impl Into<String>) -> bool {
    if result.outcome == Outcome::Failed {
        return false;
    }
    result.outcome = Outcome::Failed;
    result.reason = reason.to_string();
    result.failed_step = step.map(|s| s.as_str().to_string());
    result.message = message.into();
    true
}

/// Emits `result` as the final event, writes the termination message to `path` (errors
/// ignored: stdout already has it) and returns the exit code (0 succeeded, 1 failed).
pub fn conclude<W: Write>(em: &mut Emitter<W>, result: RunResult, path: &Path) -> i32 {
    let code = if result.outcome == Outcome::Succeeded { 0 } else { 1 };
    if let Some(line) = em.emit(RunnerEvent::Result(result)) {
        let _ = std::fs::write(path, termination_message(&line));
    }
    code
}
