//! What the pod's `gateway` sidecar (trusted) prints on its own log: the facts about the run's
//! branch that govern a push and that the operator reports as fact (issue 17). The operator
//! reads these lines only from the `gateway` container's log, which the agent container cannot
//! write; the same JSON in the agent's log is ignored.
//!
//! One JSON object per line, internally tagged by `type` (the gateway's other lines,
//! `gateway_usage` and the transcript, are described in docs/gateway.md):
//! ```json
//! {"type":"gateway_patch","commit":"9f…","index":0,"total":1,"data":"H4sI…"}
//! {"type":"gateway_branch","purpose":"review","branch":"paddock/r1","base":"1a…","commit":"9f…","filesChanged":1,"insertions":5,"deletions":0,"patchBytes":180,"patchTruncated":false}
//! {"type":"gateway_push","ok":true,"commit":"9f…","branch":"paddock/r1","message":"pushed …"}
//! ```

use serde::{Deserialize, Serialize};

/// Why the gateway read the branch.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum BranchPurpose {
    /// A push request waits for its `BeforePush` gate: this is what the approvers review, and
    /// the only commit the gateway will push for it.
    Review,
    /// The agent container has ended (the kubelet stops the sidecar only after it): the run's
    /// final commit and diff.
    #[default]
    Final,
}

/// The run's branch as the gateway read it into its private repository, diffed against the
/// commit the trusted `clone` step started from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BranchFacts {
    /// Why it was read.
    pub purpose: BranchPurpose,
    /// The branch (`refs/heads/<branch>` in the workspace's clone).
    pub branch: String,
    /// Full SHA of the commit the run started from, as the `clone` container recorded it.
    pub base: String,
    /// Full SHA of the branch tip; `None` when the branch is still at `base` (nothing committed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Files changed from `base` to `commit`.
    #[serde(default)]
    pub files_changed: u32,
    /// Lines inserted from `base` to `commit`.
    #[serde(default)]
    pub insertions: u32,
    /// Lines deleted from `base` to `commit`.
    #[serde(default)]
    pub deletions: u32,
    /// Size in bytes of the whole patch (before it was cut at
    /// [`crate::events::MAX_PATCH_BYTES`]).
    #[serde(default)]
    pub patch_bytes: u64,
    /// Whether the patch in the preceding `gateway_patch` lines was cut.
    #[serde(default)]
    pub patch_truncated: bool,
    /// Why the diff could not be computed (e.g. the branch no longer descends from `base`);
    /// the counts are then 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A push the gateway made, or refused.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PushFacts {
    /// Whether the remote's branch now points at `commit`.
    pub ok: bool,
    /// The commit asked for.
    pub commit: String,
    /// The branch.
    pub branch: String,
    /// CamelCase reason when not ok: `Rejected`, `GateExpired`, `PushFailed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What happened (redacted).
    #[serde(default)]
    pub message: String,
}

/// One line of the gateway's own log, as the operator reads it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GatewayLine {
    /// The branch's facts ([`BranchFacts`]).
    GatewayBranch(BranchFacts),
    /// One chunk of the gzip-compressed, redacted patch of `commit` against the base, base64
    /// (standard, padded), encoded as the runner's `patch` events are; chunks `0..total`, sent
    /// just before the [`GatewayLine::GatewayBranch`] line they belong to.
    GatewayPatch {
        /// The commit the patch leads to.
        commit: String,
        /// Chunk index from 0.
        index: u32,
        /// Number of chunks.
        total: u32,
        /// Base64 of this slice of the gzip stream.
        data: String,
    },
    /// A push ([`PushFacts`]).
    GatewayPush(PushFacts),
}

impl GatewayLine {
    /// Parses one log line; `None` for anything else (the gateway's other lines, noise).
    pub fn parse(line: &str) -> Option<GatewayLine> {
        let line = line.trim();
        if !line.starts_with("{\"type\":\"gateway_") {
            return None;
        }
        serde_json::from_str(line).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_others_are_skipped() {
        let b = GatewayLine::GatewayBranch(BranchFacts {
            purpose: BranchPurpose::Review,
            branch: "paddock/r1".into(),
            base: "a".repeat(40),
            commit: Some("b".repeat(40)),
            files_changed: 1,
            insertions: 5,
            deletions: 0,
            patch_bytes: 10,
            patch_truncated: false,
            error: None,
        });
        let text = serde_json::to_string(&b).unwrap();
        assert!(
            text.starts_with("{\"type\":\"gateway_branch\",\"purpose\":\"review\""),
            "{text}"
        );
        assert_eq!(GatewayLine::parse(&text), Some(b));
        assert_eq!(GatewayLine::parse("{\"type\":\"gateway_usage\",\"requests\":1}"), None);
        assert_eq!(GatewayLine::parse("paddock-runner gateway: serving"), None);
    }
}
