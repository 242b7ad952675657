//! The runner event schema: what `paddock-runner` prints, one JSON object per line, on the
//! stdout of the runner pod's `agent` container, and what the operator reads back from the pod
//! log. Every adapter maps its CLI's own stream (Claude Code `stream-json`, Codex `exec --json`,
//! plain text for `shell`) to these events, so the operator knows nothing about any CLI.
//!
//! Wire shape (version [`SCHEMA_VERSION`]):
//! ```json
//! {"v":1,"seq":3,"ts":"2026-11-22T01:02:03.456Z","type":"tool_call","id":"t1","name":"Write","input":"{...}"}
//! ```
//! Lines that do not parse as an [`EventLine`] are ignored by readers (a CLI may print noise).
//! Every string field is already redacted of the run's secret values and truncated by the runner
//! ([`MAX_TEXT_BYTES`]); readers truncate again and never trust sizes.

use serde::{Deserialize, Serialize};

/// Version of the event schema written in every line's `v`.
pub const SCHEMA_VERSION: u32 = 1;
/// Longest text (bytes, UTF-8) the runner puts in one event field; longer text is cut at a
/// character boundary and ends with `…[truncated]`.
pub const MAX_TEXT_BYTES: usize = 4096;
/// Size (bytes) of the base64 payload of one [`RunnerEvent::Patch`] chunk.
pub const PATCH_CHUNK_BYTES: usize = 12 * 1024;
/// Largest patch (bytes, before compression) the runner reports; larger patches are cut and
/// flagged `patchTruncated`.
pub const MAX_PATCH_BYTES: usize = 1024 * 1024;
/// Marker that replaces every secret value in persisted output.
pub const REDACTED: &str = "[REDACTED]";

/// One line of the runner's event stream: an envelope around a [`RunnerEvent`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EventLine {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub v: u32,
    /// Sequence number, starting at 1 and increasing by one per line of one attempt.
    pub seq: u64,
    /// RFC 3339 timestamp with milliseconds, UTC, when the runner emitted the event.
    pub ts: String,
    /// The event itself.
    #[serde(flatten)]
    pub event: RunnerEvent,
}

/// Steps of a run, in order. A failed run names the step that failed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Clone `spec.repo` and create the worktree on the run's branch (init container `clone`).
    Clone,
    /// Run the agent CLI.
    Agent,
    /// Commit what the agent changed.
    Commit,
    /// Compute the diffstat and the patch.
    Diff,
    /// Push the branch (only when `spec.output.push`).
    Push,
}

impl Step {
    /// The step's name as used in condition messages and the `failedStep` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Clone => "clone",
            Step::Agent => "agent",
            Step::Commit => "commit",
            Step::Diff => "diff",
            Step::Push => "push",
        }
    }
}

/// Progress of a [`Step`].
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// The step began.
    Started,
    /// The step finished without error.
    Succeeded,
    /// The step failed; the run fails with it.
    Failed,
}

/// Token and cost usage as reported by the agent CLI (never estimated by Paddock).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Input (prompt) tokens, including cache reads where the CLI counts them.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output (completion) tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Agent turns (model round trips) the CLI reported.
    #[serde(default)]
    pub turns: u32,
    /// Cost in US dollars, when the CLI reports one (Claude Code does; Codex does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// Outcome of the runner, as written in the final [`RunnerEvent::Result`] and the container's
/// termination message.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum Outcome {
    /// Every step succeeded.
    Succeeded,
    /// A step failed (see `failedStep` and `reason`).
    Failed,
}

/// What a run produced. Written by the runner as the final event and (without `summary` when
/// space is short) as the container termination message (at most 4096 bytes, the kubelet's
/// limit); copied by the operator into `AgentRun.status.result`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    /// Whether the run succeeded.
    pub outcome: Outcome,
    /// CamelCase reason: `Succeeded`, `AgentFailed`, `CloneFailed`, `CommitFailed`,
    /// `DiffFailed`, `PushFailed`, `InvalidConfig`.
    pub reason: String,
    /// Human-readable explanation (redacted, truncated).
    #[serde(default)]
    pub message: String,
    /// The step that failed (`clone`, `agent`, `commit`, `diff`, `push`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    /// Full SHA-1 of the commit the runner made; absent when the agent changed nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Branch the commit is on (`spec.output.branch`, default `paddock/<run>`).
    #[serde(default)]
    pub branch: String,
    /// Whether the branch was pushed to the remote.
    #[serde(default)]
    pub pushed: bool,
    /// Files changed by the commit.
    #[serde(default)]
    pub files_changed: u32,
    /// Lines inserted by the commit.
    #[serde(default)]
    pub insertions: u32,
    /// Lines deleted by the commit.
    #[serde(default)]
    pub deletions: u32,
    /// The agent's final message (redacted, at most 1024 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Usage reported by the CLI.
    #[serde(default)]
    pub usage: Usage,
    /// Size of the full patch in bytes (before truncation).
    #[serde(default)]
    pub patch_bytes: u64,
    /// Whether the reported patch was cut at [`MAX_PATCH_BYTES`].
    #[serde(default)]
    pub patch_truncated: bool,
    /// Exit code of the agent CLI, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// The diffstat text of a `BeforePush` request and gate: `N files, +I/-D` (files changed,
/// lines inserted, lines deleted).
pub fn diffstat(files_changed: u32, insertions: u32, deletions: u32) -> String {
    format!("{files_changed} files, +{insertions}/-{deletions}")
}

/// One normalized runner event. Serialized internally tagged: `"type": "<snake_case variant>"`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunnerEvent {
    /// A step began, succeeded or failed.
    Step {
        /// Which step.
        step: Step,
        /// Its progress.
        status: StepStatus,
        /// Detail (e.g. the error for `failed`).
        #[serde(default)]
        message: String,
    },
    /// The agent CLI started (adapter, CLI version when known, model, session id).
    AgentStarted {
        /// Agent adapter name (`claude-code`, `codex`, `qwen-code`, `opencode`, `shell`).
        agent: String,
        /// Model the CLI reports, when it does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        /// The CLI's own session or thread id, when it reports one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
    },
    /// Text the assistant wrote.
    Message {
        /// The text (truncated).
        text: String,
    },
    /// The agent asked to run a tool.
    ToolCall {
        /// The CLI's id for the call, to match the result.
        id: String,
        /// Tool name as the CLI names it (`Write`, `Bash`, `command_execution`, …).
        name: String,
        /// Tool input, compact JSON or a command line (truncated).
        input: String,
    },
    /// A tool finished.
    ToolResult {
        /// The id of the matching [`RunnerEvent::ToolCall`].
        id: String,
        /// Whether the tool reported an error (or was denied).
        #[serde(default)]
        is_error: bool,
        /// Tool output (truncated).
        #[serde(default)]
        output: String,
    },
    /// A tool call was refused by the CLI's permission system.
    PermissionDenied {
        /// Tool name.
        name: String,
        /// What was asked (truncated).
        #[serde(default)]
        input: String,
    },
    /// The runner stopped to ask a human (an ApprovalGate): before pushing, or before a tool
    /// call that matches `spec.approvals.toolUse`. The operator creates the gate
    /// `<run>-<id>` and writes the verdict to the pod annotation
    /// `decision.paddock.dev/<id>` (`Approve` or `Reject`), which the runner reads from its
    /// downward API volume.
    ApprovalRequested {
        /// Request id, unique in the attempt: `push`, `tool-<n>`, `question-<n>` or `plan-<n>`
        /// (n from 1). Lowercase DNS-label characters only.
        id: String,
        /// `BeforePush`, `ToolUse`, `Question` or `Plan`.
        stage: String,
        /// What the human is asked (truncated).
        summary: String,
        /// For `ToolUse`: the tool name as the CLI names it (`Bash`, `Write`, …).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool: Option<String>,
        /// For `ToolUse`: the tool input, a command line or compact JSON (truncated).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<String>,
        /// For `BeforePush`: the commit that would be pushed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
        /// For `BeforePush`: `N files, +I/-D`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        diffstat: Option<String>,
        /// For `Question`: what the agent asks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        question: Option<String>,
        /// For `Question`: the answers the agent offers, if any.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        options: Vec<String>,
        /// For `Plan`: the agent's plan.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plan: Option<String>,
    },
    /// The runner handed a human's message (a `RunMessage`, read from the pod annotation
    /// `message.paddock.dev/<uid>`) to the running agent CLI (agent-reported).
    MessageDelivered {
        /// The RunMessage's UID.
        id: String,
        /// The agent's turn when it was handed over: the number of assistant turns the CLI had
        /// reported so far (from 0).
        turn: u32,
    },
    /// The runner read the verdict of an [`RunnerEvent::ApprovalRequested`].
    ApprovalDecided {
        /// The request's id.
        id: String,
        /// `Approve` or `Reject`.
        verdict: String,
    },
    /// The pod's gateway refused a connection the agent tried: the host is not in the run's
    /// egress allowlist (`spec.network.egress`).
    EgressDenied {
        /// Host asked for (truncated).
        host: String,
        /// Port asked for.
        port: u16,
    },
    /// Cumulative usage so far (the last one wins).
    Usage(Usage),
    /// The CLI or the runner reported an error that does not by itself end the run.
    Error {
        /// What went wrong (truncated).
        message: String,
    },
    /// A line the CLI wrote on stderr, or non-JSON stdout (truncated; bounded in number).
    Log {
        /// `stdout` or `stderr`.
        stream: String,
        /// The line.
        text: String,
    },
    /// The agent's final answer.
    Final {
        /// Final text (truncated).
        text: String,
        /// Whether the CLI declared the task failed.
        #[serde(default)]
        is_error: bool,
    },
    /// A chunk of the gzip-compressed unified diff of the commit, base64-encoded
    /// ([`PATCH_CHUNK_BYTES`] of base64 per chunk). Chunks `0..total` in order form the patch.
    Patch {
        /// Chunk index from 0.
        index: u32,
        /// Number of chunks.
        total: u32,
        /// Base64 (standard alphabet, padded) of this slice of the gzip stream.
        data: String,
    },
    /// A chunk of the agent CLI's saved session (Claude Code's `~/.claude/projects/…/<id>.jsonl`,
    /// Codex's `$CODEX_HOME/sessions/…/rollout-…-<id>.jsonl`), redacted, gzip-compressed and
    /// base64-encoded like [`RunnerEvent::Patch`]; chunks `0..total` in order form the file. The
    /// operator keeps it as `<run>-session` so a run with `spec.resumeFrom` can continue it.
    Session {
        /// Adapter that wrote it (`claude-code`, `codex`).
        agent: String,
        /// The CLI's session or thread id (`--resume <id>`, `codex exec resume <id>`).
        session_id: String,
        /// Where the file was, relative to the CLI's home (`~/.claude`, `$CODEX_HOME`).
        path: String,
        /// Chunk index from 0.
        index: u32,
        /// Number of chunks.
        total: u32,
        /// Base64 (standard alphabet, padded) of this slice of the gzip stream.
        data: String,
    },
    /// The run's result; always the last line.
    Result(RunResult),
}

impl RunnerEvent {
    /// The wire name of the event type (`"tool_call"`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            RunnerEvent::Step { .. } => "step",
            RunnerEvent::AgentStarted { .. } => "agent_started",
            RunnerEvent::Message { .. } => "message",
            RunnerEvent::ToolCall { .. } => "tool_call",
            RunnerEvent::ToolResult { .. } => "tool_result",
            RunnerEvent::PermissionDenied { .. } => "permission_denied",
            RunnerEvent::ApprovalRequested { .. } => "approval_requested",
            RunnerEvent::ApprovalDecided { .. } => "approval_decided",
            RunnerEvent::MessageDelivered { .. } => "message_delivered",
            RunnerEvent::EgressDenied { .. } => "egress_denied",
            RunnerEvent::Usage(_) => "usage",
            RunnerEvent::Error { .. } => "error",
            RunnerEvent::Log { .. } => "log",
            RunnerEvent::Final { .. } => "final",
            RunnerEvent::Patch { .. } => "patch",
            RunnerEvent::Session { .. } => "session",
            RunnerEvent::Result(_) => "result",
        }
    }
}

/// Parses one log line into an [`EventLine`]; `None` for anything that is not one (noise,
/// partial lines, another schema version), so readers can skip it.
pub fn parse_line(line: &str) -> Option<EventLine> {
    let line = line.trim();
    if !line.starts_with('{') {
        return None;
    }
    let ev: EventLine = serde_json::from_str(line).ok()?;
    (ev.v == SCHEMA_VERSION).then_some(ev)
}

/// Cuts `text` to at most `max` bytes at a character boundary, marking the cut.
pub fn truncate(text: &str, max: usize) -> String {
    const MARK: &str = "…[truncated]";
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(MARK.len());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{}", &text[..end], MARK)
}

/// Replaces every occurrence of each secret in `text` with [`REDACTED`]. Secrets shorter than
/// 4 bytes are ignored (they would redact ordinary words and cannot be meaningful credentials).
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if s.len() >= 4 && out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_internally_tagged() {
        let line = EventLine {
            v: 1,
            seq: 7,
            ts: "2026-11-22T00:00:00.000Z".into(),
            event: RunnerEvent::ToolCall {
                id: "a".into(),
                name: "Write".into(),
                input: "{}".into(),
            },
        };
        let s = serde_json::to_string(&line).unwrap();
        assert!(s.contains(r#""type":"tool_call""#), "{s}");
        assert_eq!(parse_line(&s), Some(line));
    }

    #[test]
    fn usage_and_result_are_flattened() {
        let s = r#"{"v":1,"seq":1,"ts":"t","type":"usage","inputTokens":5,"outputTokens":2,"turns":1,"costUsd":0.5}"#;
        let ev = parse_line(s).unwrap();
        assert_eq!(
            ev.event,
            RunnerEvent::Usage(Usage {
                input_tokens: 5,
                output_tokens: 2,
                turns: 1,
                cost_usd: Some(0.5)
            })
        );
        let r = r#"{"v":1,"seq":2,"ts":"t","type":"result","outcome":"Failed","reason":"AgentFailed","failedStep":"agent"}"#;
        match parse_line(r).unwrap().event {
            RunnerEvent::Result(res) => {
                assert_eq!(res.outcome, Outcome::Failed);
                assert_eq!(res.failed_step.as_deref(), Some("agent"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn noise_and_other_versions_are_skipped() {
        assert_eq!(parse_line("npm WARN something"), None);
        assert_eq!(
            parse_line(r#"{"v":2,"seq":1,"ts":"t","type":"message","text":"x"}"#),
            None
        );
        assert_eq!(parse_line(r#"{"v":1,"seq":1,"ts":"t","type":"nope"}"#), None);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        let s = "é".repeat(100);
        let t = truncate(&s, 51);
        assert!(t.len() <= 51, "{}", t.len());
        assert!(t.ends_with("[truncated]"));
        assert_eq!(truncate("short", 10), "short");
    }

    #[test]
    fn redact_replaces_every_occurrence() {
        let secrets = vec!["sk-live-123".to_string(), "ab".to_string()];
        assert_eq!(
            redact("k=sk-live-123 again sk-live-123 ab", &secrets),
            "k=[REDACTED] again [REDACTED] ab"
        );
    }
}
