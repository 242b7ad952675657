//! The ConfigMaps in which the operator keeps what a run leaves (its event log, patch, CLI
//! session, model transcript): their names, keys and `paddock.dev/artifact` label values
//! ([`crate::LABEL_ARTIFACT`]), shared by the operator that writes them, the runner that reads a
//! session back (`spec.resumeFrom`) and `kubectl paddock`. Each is owned by its run and lives in
//! the run's namespace.
//!
//! The patch has two layouts, and readers take both: it shares the event log's ConfigMap
//! (`<run>-log`, key [`PATCH_KEY`]) when the two fit in one object ([`patch_fits_in_log`]; one
//! write fewer when the run ends), else it has a ConfigMap of its own ([`patch_configmap`]), as
//! it always had before, and as a patch stored for a review (a BeforePush gate, a held push's
//! checks) keeps. Readers find it by reference (`status.result.patchRef`, a gate's
//! `spec.request.patchRef`), never by name, and read it with [`patch_gz`].

use k8s_openapi::api::core::v1::ConfigMap;

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

/// Key of the patch: gzip of the redacted patch (`binaryData`, at most [`MAX_GZ_BYTES`]), in
/// [`patch_configmap`] or in [`log_configmap`] next to [`LOG_KEY`].
pub const PATCH_KEY: &str = "patch.gz";

/// Whether the run's patch (`patch_gz_bytes` of gzip) is kept in its event log's ConfigMap
/// ([`log_configmap`], key [`PATCH_KEY`] in `binaryData`) next to an event log of `log_bytes`
/// (the `events.jsonl` text): when both together are at most [`MAX_GZ_BYTES`], under the API
/// server's 1 MiB limit on a ConfigMap's data. Otherwise the patch is kept in
/// [`patch_configmap`]. Pure.
pub fn patch_fits_in_log(log_bytes: usize, patch_gz_bytes: usize) -> bool {
    log_bytes.saturating_add(patch_gz_bytes) <= MAX_GZ_BYTES
}

/// The gzip patch in `cm` (key [`PATCH_KEY`] of `binaryData`), whichever layout it has: the
/// run's event log ConfigMap or a patch ConfigMap of its own. `None` when `cm` holds none.
pub fn patch_gz(cm: &ConfigMap) -> Option<&[u8]> {
    cm.binary_data.as_ref()?.get(PATCH_KEY).map(|b| b.0.as_slice())
}

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

    #[test]
    fn the_patch_shares_the_log_only_when_both_fit() {
        assert!(patch_fits_in_log(0, 0));
        assert!(patch_fits_in_log(512 * 1024, MAX_GZ_BYTES - 512 * 1024));
        assert!(!patch_fits_in_log(512 * 1024, MAX_GZ_BYTES - 512 * 1024 + 1));
        assert!(!patch_fits_in_log(0, MAX_GZ_BYTES + 1));
        assert!(!patch_fits_in_log(usize::MAX, 1));
    }

    #[test]
    fn the_patch_is_read_from_either_layout() {
        use k8s_openapi::ByteString;
        use std::collections::BTreeMap;
        let gz = b"\x1f\x8b gzip".to_vec();
        // Since issue 23: in the event log's ConfigMap, next to the log.
        let log = ConfigMap {
            data: Some(BTreeMap::from([(LOG_KEY.to_string(), "{}\n".to_string())])),
            binary_data: Some(BTreeMap::from([(PATCH_KEY.to_string(), ByteString(gz.clone()))])),
            ..Default::default()
        };
        // Before, and when the two do not fit together: a ConfigMap of its own.
        let own = ConfigMap {
            binary_data: Some(BTreeMap::from([(PATCH_KEY.to_string(), ByteString(gz.clone()))])),
            ..Default::default()
        };
        assert_eq!(patch_gz(&log), Some(gz.as_slice()));
        assert_eq!(patch_gz(&own), Some(gz.as_slice()));
        // An event log without a patch (the patch is elsewhere, or there is none).
        let bare = ConfigMap {
            data: log.data.clone(),
            ..Default::default()
        };
        assert_eq!(patch_gz(&bare), None);
    }
}
