//! The ConfigMaps in which the operator keeps what a run leaves (its event log, patch, CLI
//! session, model transcript): their names, keys and `paddock.dev/artifact` label values
//! ([`crate::LABEL_ARTIFACT`]), shared by the operator that writes them, the runner that reads a
//! session back (`spec.resumeFrom`) and `kubectl paddock`. Each is owned by its run and lives in
//! the run's namespace.

/// Largest gzip payload kept in one ConfigMap (bytes): under the API server's 1 MiB object
/// limit with room for the metadata. Patches, sessions and transcripts share it.
pub const MAX_GZ_BYTES: usize = 900 * 1024;

/// [`crate::LABEL_ARTIFACT`] of an event log ([`log_configmap`], [`attempt_log_configmap`]).
pub const KIND_LOG: &str = "log";
/// [`crate::LABEL_ARTIFACT`] of the patch ([`patch_configmap`]).
pub const KIND_PATCH: &str = "patch";
/// [`crate::LABEL_ARTIFACT`] of the CLI session ([`session_configmap`]).
pub const KIND_SESSION: &str = "session";
/// [`crate::LABEL_ARTIFACT`] of the model transcript ([`transcript_configmap`]).
pub const KIND_TRANSCRIPT: &str = "transcript";
/// [`crate::LABEL_ARTIFACT`] of a verification's log ([`verify_log_configmap`]).
pub const KIND_VERIFY_LOG: &str = "verify-log";

/// The run's event log: `<run>-log`, key [`LOG_KEY`].
pub fn log_configmap(run: &str) -> String {
    format!("{run}-log")
}

/// The event log of an ended, retried attempt: `<run>-log-<attempt>`, key [`LOG_KEY`].
pub fn attempt_log_configmap(run: &str, attempt: u32) -> String {
    format!("{run}-log-{attempt}")
}

/// Key of an event log: the runner's events, one JSON object per line (`data`).
pub const LOG_KEY: &str = "events.jsonl";

/// The run's patch (the gateway's diff of the branch against the base): `<run>-patch`, key
/// [`PATCH_KEY`].
pub fn patch_configmap(run: &str) -> String {
    format!("{run}-patch")
}

/// Key of the patch: gzip of the redacted patch (`binaryData`, at most [`MAX_GZ_BYTES`]).
pub const PATCH_KEY: &str = "patch.gz";

/// The agent CLI's session, for `spec.resumeFrom`: `<run>-session`, keys
/// [`SESSION_AGENT_KEY`], [`SESSION_ID_KEY`], [`SESSION_PATH_KEY`] and [`SESSION_FILE_KEY`].
/// Mounted as a directory of those files at `PADDOCK_RESUME_DIR` in a resumed run's agent.
pub fn session_configmap(run: &str) -> String {
    format!("{run}-session")
}

/// Key of the session: the adapter's name (`claude-code`, `codex`; `data`).
pub const SESSION_AGENT_KEY: &str = "agent";
/// Key of the session: the CLI's session id (`data`).
pub const SESSION_ID_KEY: &str = "sessionId";
/// Key of the session: the file's path relative to the CLI's home (`data`).
pub const SESSION_PATH_KEY: &str = "path";
/// Key of the session: gzip of the redacted session file (`binaryData`, at most
/// [`MAX_GZ_BYTES`]).
pub const SESSION_FILE_KEY: &str = "session.jsonl.gz";

/// The gateway's model transcript: `<run>-transcript`, key [`TRANSCRIPT_KEY`].
pub fn transcript_configmap(run: &str) -> String {
    format!("{run}-transcript")
}

/// Key of the transcript: gzip of its JSON lines, oldest dropped to fit [`MAX_GZ_BYTES`]
/// (`binaryData`).
pub const TRANSCRIPT_KEY: &str = "transcript.jsonl.gz";

/// A verification's log (issue 19): `<run>-verify-log`, key [`VERIFY_LOG_KEY`].
pub fn verify_log_configmap(run: &str) -> String {
    format!("{run}-verify-log")
}

/// Key of a verification's log: the checks' output as text (`data`).
pub const VERIFY_LOG_KEY: &str = "verify.log";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_run_name_and_a_suffix() {
        assert_eq!(log_configmap("r1"), "r1-log");
        assert_eq!(attempt_log_configmap("r1", 2), "r1-log-2");
        assert_eq!(patch_configmap("r1"), "r1-patch");
        assert_eq!(session_configmap("r1"), "r1-session");
        assert_eq!(transcript_configmap("r1"), "r1-transcript");
        assert_eq!(verify_log_configmap("r1"), "r1-verify-log");
    }
}
