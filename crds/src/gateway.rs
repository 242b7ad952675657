//! What the pod's `gateway` sidecar (trusted) prints on its own log: the facts about the run's
//! branch that govern a push and that the operator reports as fact (issue 17). The operator
//! reads these lines only from the `gateway` container's log, which the agent container cannot
//! write; the same JSON in the agent's log is ignored.
//!
//! The same holds for its metering lines: the run's usage and budget (`gateway_usage`) and the
//! upstream's answers to model calls (`gateway_model_status`).
//!
//! One JSON object per line, internally tagged by `type` ([`GatewayLine`]; the transcript and
//! `gateway_refused` lines are described in docs/gateway.md). The branch lines are printed with
//! `serde_json::to_string` (`type` first), the metering lines as a `serde_json::Value`
//! ([`GatewayLine::to_value`]: keys sorted):
//! ```json
//! {"type":"gateway_patch","commit":"9f…","index":0,"total":1,"data":"H4sI…"}
//! {"type":"gateway_branch","purpose":"review","branch":"paddock/r1","base":"1a…","commit":"9f…","filesChanged":1,"insertions":5,"deletions":0,"patchBytes":180,"patchTruncated":false}
//! {"type":"gateway_push","ok":true,"commit":"9f…","branch":"paddock/r1","message":"pushed …"}
//! {"budget_exceeded":null,"cache_read_tokens":0,"cache_write_tokens":0,"cost_usd":0.0003,"estimated_requests":0,"in_flight_requests":0,"input_tokens":100,"output_tokens":20,"refused_requests":0,"requests":1,"reserved_cost_usd":0.0,"type":"gateway_usage","unpriced_models":[]}
//! {"calls":1,"route":"anthropic","status":200,"type":"gateway_model_status"}
//! {"calls":10001,"limit_lines":10000,"type":"gateway_model_status_truncated"}
//! ```

use std::collections::BTreeSet;

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

/// The gateway's metering totals for the run (its `gateway_usage` line), printed after every
/// metered or refused model call. Field names are the line's keys (snake_case); a missing key
/// reads as 0 (or none).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct UsageTotals {
    /// Input tokens (not cached).
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tokens read from the provider's prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to the provider's prompt cache.
    pub cache_write_tokens: u64,
    /// USD of the priced calls (always printed; `None` only when a line lacks it).
    pub cost_usd: Option<f64>,
    /// Model calls metered (estimated ones included).
    pub requests: u64,
    /// Of those, calls charged their reservation because their usage is unknown.
    pub estimated_requests: u64,
    /// Calls the gateway refused (endpoint, body, budget, busy).
    pub refused_requests: u64,
    /// Calls in flight when the line was printed.
    pub in_flight_requests: u64,
    /// USD the calls in flight have reserved (their worst case).
    pub reserved_cost_usd: f64,
    /// Models without a price (their calls count tokens, not USD).
    pub unpriced_models: BTreeSet<String>,
    /// Why further calls are refused, once a budget is reached (printed as `null` before).
    pub budget_exceeded: Option<String>,
}

/// The upstream's answer to a model call (its `gateway_model_status` line), printed when route
/// or status differ from the last such line.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ModelStatus {
    /// The model route (`anthropic`, `openai`, …).
    pub route: String,
    /// HTTP status of the upstream's answer; 502 when it could not be reached.
    pub status: u16,
    /// Upstream calls made so far.
    #[serde(default)]
    pub calls: u64,
    /// Why the upstream could not be reached (at most 512 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One line of the gateway's own log, as the operator reads it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
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
    /// The run's metering totals ([`UsageTotals`]).
    GatewayUsage(UsageTotals),
    /// The upstream's answer to a model call ([`ModelStatus`]).
    GatewayModelStatus(ModelStatus),
    /// The gateway stopped printing [`GatewayLine::GatewayModelStatus`] lines after
    /// `limit_lines` of them: the last one printed is no longer current.
    GatewayModelStatusTruncated {
        /// Upstream calls made so far.
        #[serde(default)]
        calls: u64,
        /// Status lines printed at most.
        #[serde(default)]
        limit_lines: u64,
    },
}

impl GatewayLine {
    /// Parses one log line; `None` for anything else (the transcript, `gateway_refused`,
    /// noise).
    pub fn parse(line: &str) -> Option<GatewayLine> {
        let line = line.trim();
        // Branch lines start with their tag, metering lines have it among sorted keys; inside
        // a JSON string the quotes would be escaped.
        if !line.starts_with('{') || !line.contains("\"type\":\"gateway_") {
            return None;
        }
        serde_json::from_str(line).ok()
    }

    /// The line as a JSON value, whose keys serde_json sorts: how the gateway prints its
    /// metering lines ([`GatewayLine::GatewayUsage`], [`GatewayLine::GatewayModelStatus`],
    /// [`GatewayLine::GatewayModelStatusTruncated`]).
    pub fn to_value(&self) -> serde_json::Value {
        // Plain structs and maps of strings always serialize.
        serde_json::to_value(self).unwrap_or_default()
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
        assert_eq!(
            GatewayLine::parse("{\"type\":\"gateway_refused\",\"status\":403}"),
            None
        );
        assert_eq!(
            GatewayLine::parse("{\"type\":\"transcript\",\"request\":\"{\\\"type\\\":\\\"gateway_usage\\\"}\"}"),
            None
        );
        assert_eq!(GatewayLine::parse("paddock-runner gateway: serving"), None);
    }

    #[test]
    fn metering_lines_print_with_sorted_keys_and_read_back() {
        let usage = GatewayLine::GatewayUsage(UsageTotals {
            input_tokens: 100,
            output_tokens: 20,
            cost_usd: Some(0.0003),
            requests: 1,
            ..Default::default()
        });
        let text = usage.to_value().to_string();
        assert_eq!(
            text,
            r#"{"budget_exceeded":null,"cache_read_tokens":0,"cache_write_tokens":0,"cost_usd":0.0003,"estimated_requests":0,"in_flight_requests":0,"input_tokens":100,"output_tokens":20,"refused_requests":0,"requests":1,"reserved_cost_usd":0.0,"type":"gateway_usage","unpriced_models":[]}"#
        );
        assert_eq!(GatewayLine::parse(&text), Some(usage));
        let status = GatewayLine::GatewayModelStatus(ModelStatus {
            route: "anthropic".into(),
            status: 502,
            calls: 3,
            error: Some("refused".into()),
        });
        let text = status.to_value().to_string();
        assert_eq!(
            text,
            r#"{"calls":3,"error":"refused","route":"anthropic","status":502,"type":"gateway_model_status"}"#
        );
        assert_eq!(GatewayLine::parse(&text), Some(status));
        assert_eq!(
            GatewayLine::parse(r#"{"type":"gateway_model_status_truncated"}"#),
            Some(GatewayLine::GatewayModelStatusTruncated {
                calls: 0,
                limit_lines: 0
            })
        );
        // A usage line with keys missing reads them as 0 or none.
        let GatewayLine::GatewayUsage(u) = GatewayLine::parse(r#"{"type":"gateway_usage","requests":2}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!((u.requests, u.cost_usd, u.budget_exceeded), (2, None, None));
    }
}
