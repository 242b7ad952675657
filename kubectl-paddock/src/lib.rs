//! `kubectl paddock`: the pure parts of the kubectl plugin — table rendering, event-log
//! formatting, resolving a gate-or-run argument to a gate, and building the decision patch.
//! The binary (`src/main.rs`) does the API calls and prints what these functions return.
//!
//! Two modules do I/O, kept apart from the pure functions above: [`fetch`] (the reads both the
//! command line and the console make: a run, its patch, its transcript, its event log, its
//! messages, who you are) and [`console`] (`kubectl paddock console`, the local web console).
//! [`talk`] is the conversation with a running agent (`say`, `answer`, `request-changes`,
//! `messages`, `gate`): pure builders and checks, and the two writes both front ends share.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod console;
pub mod evidence;
pub mod fetch;
pub mod sets;
pub mod talk;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use paddock_crds::events::{parse_line, EventLine, RunnerEvent, StepStatus};
use paddock_crds::{AgentRun, ApprovalGate, Decision, GateStage, GateState, Verdict};

/// Errors of the plugin, each with a message meant for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// Neither an ApprovalGate nor an AgentRun has the given name.
    #[error("no ApprovalGate or AgentRun named {name:?} in namespace {namespace:?}")]
    NotFound {
        /// The name given on the command line.
        name: String,
        /// The namespace searched.
        namespace: String,
    },
    /// An AgentRun of that name exists but it has no ApprovalGate.
    #[error("AgentRun {run:?} has no ApprovalGate (looked for {gate:?}; does the run set spec.approvals?)")]
    RunHasNoGate {
        /// The run.
        run: String,
        /// The gate name derived from the run.
        gate: String,
    },
    /// An AgentRun does not exist.
    #[error("no AgentRun named {name:?} in namespace {namespace:?}")]
    RunNotFound {
        /// The name given on the command line.
        name: String,
        /// The namespace searched.
        namespace: String,
    },
    /// The gate was already approved or rejected: a decision would not change anything.
    #[error("ApprovalGate {gate:?} is already {state}{by}; nothing to do")]
    AlreadyDecided {
        /// Gate name.
        gate: String,
        /// `Approved`, `Rejected`, `ChangesRequested` or `Expired`.
        state: String,
        /// ` by <user>` when known, else empty.
        by: String,
    },
    /// The gate was withdrawn without a decision (its run ended, or a retry replaced the
    /// attempt that asked): nothing waits for a decision any more.
    #[error("ApprovalGate {gate:?} was withdrawn without a decision{why}; nothing to decide")]
    Withdrawn {
        /// Gate name.
        gate: String,
        /// `: <the Decided condition's message>` when known, else empty.
        why: String,
    },
    /// The caller already approved this gate (a second approval from the same user is not counted).
    #[error("you ({user}) already approved ApprovalGate {gate:?}; it needs approvals from other users")]
    AlreadyApprovedByCaller {
        /// Gate name.
        gate: String,
        /// The caller's user name.
        user: String,
    },
    /// The gate restricts its approvers and the caller is not one of them.
    #[error(
        "you ({user}) are not an approver of ApprovalGate {gate:?} (allowed users: {users:?}, groups: {groups:?})"
    )]
    NotAnApprover {
        /// Gate name.
        gate: String,
        /// The caller's user name.
        user: String,
        /// The gate's allowed users.
        users: Vec<String>,
        /// The gate's allowed groups.
        groups: Vec<String>,
    },
    /// The run has no patch to show.
    #[error("AgentRun {run:?} has no patch {why}")]
    NoPatch {
        /// The run.
        run: String,
        /// Why, e.g. `yet (phase Running)`.
        why: String,
    },
    /// The run has no event log to show (yet).
    #[error("AgentRun {run:?} has no event log {why}")]
    NoLog {
        /// The run.
        run: String,
        /// Why, e.g. `yet (phase Pending, no pod)`.
        why: String,
    },
    /// An artifact ConfigMap is missing or malformed.
    #[error("ConfigMap {name:?}: {what}")]
    BadArtifact {
        /// ConfigMap name.
        name: String,
        /// What is wrong with it.
        what: String,
    },
    /// The candidate cannot be picked (a set's `Pick` gate lists those that can).
    #[error("cannot pick {candidate:?} in AgentRunSet {set:?}: {why}")]
    NotPickable {
        /// The set.
        set: String,
        /// The candidate named.
        candidate: String,
        /// Why, e.g. the candidates that may be picked.
        why: String,
    },
    /// The set has no `Pick` gate (yet, or its policy is not `Manual`).
    #[error("AgentRunSet {set:?} has no Pick gate {why}")]
    NoPickGate {
        /// The set.
        set: String,
        /// Why, e.g. `yet (2 of 3 candidates done)`.
        why: String,
    },
    /// The API server did not say who the caller is.
    #[error("the API server's SelfSubjectReview returned no user name; cannot decide in your name")]
    NoUserName,
    /// The run has ended: a message to it would never be delivered.
    #[error(
        "AgentRun {run:?} has ended ({phase}); a message would never reach its agent (start a follow-up run instead)"
    )]
    RunEnded {
        /// The run.
        run: String,
        /// Its phase, e.g. `Succeeded`.
        phase: String,
    },
    /// The run has no pending gate of the stage asked for (`answer`: `Question`).
    #[error("AgentRun {run:?} has no pending {stage} gate{why}")]
    NoPendingGate {
        /// The run.
        run: String,
        /// The stage looked for.
        stage: String,
        /// ` (…)`: what the run's gates of that stage are, else empty.
        why: String,
    },
    /// The gate's stage does not take this decision (an answer on a non-Question gate,
    /// RequestChanges on a non-Plan gate, a bare approval of a Question).
    #[error("ApprovalGate {gate:?} is a {stage} gate: {hint}")]
    WrongStage {
        /// Gate name.
        gate: String,
        /// Its stage.
        stage: String,
        /// What to do instead.
        hint: String,
    },
    /// `--option N` names no option of the question.
    #[error("ApprovalGate {gate:?}: {why}")]
    BadOption {
        /// Gate name.
        gate: String,
        /// Why, listing the options there are.
        why: String,
    },
    /// `--gate` names a gate of another run.
    #[error("ApprovalGate {gate:?} belongs to AgentRun {owner:?}, not {run:?}")]
    GateOfOtherRun {
        /// Gate name.
        gate: String,
        /// The run the gate belongs to.
        owner: String,
        /// The run named on the command line.
        run: String,
    },
    /// A text (message, answer, comment) that the API would refuse.
    #[error("{what} {why}")]
    BadText {
        /// What, e.g. `the message`.
        what: String,
        /// Why, e.g. `is empty`.
        why: String,
    },
}

/// A plain-text table, rendered like `kubectl get`: upper-case headers, columns separated by
/// three spaces, each column as wide as its widest cell, no trailing spaces.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// Column headers.
    pub headers: Vec<String>,
    /// Rows; each has as many cells as there are headers (extra cells are ignored, missing ones
    /// are empty).
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headers and no rows.
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Renders the table, one line per row after the header line, each ending in `\n`.
    pub fn render(&self) -> String {
        let n = self.headers.len();
        let cell = |row: &Vec<String>, i: usize| row.get(i).cloned().unwrap_or_default();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, w) in widths.iter_mut().enumerate() {
                *w = (*w).max(cell(row, i).chars().count());
            }
        }
        let mut out = String::new();
        let lines = std::iter::once(&self.headers).chain(self.rows.iter());
        for row in lines {
            let mut line = String::new();
            for (i, w) in widths.iter().enumerate() {
                let c = cell(row, i);
                line.push_str(&c);
                if i + 1 < n {
                    line.push_str(&" ".repeat(w - c.chars().count() + 3));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Age of an object like kubectl prints it (`45s`, `3m12s`, `25m`, `2h5m`, `3d`), from
/// `created` to `now`; `<unknown>` when there is no creation time.
pub fn age(created: Option<&Time>, now: Timestamp) -> String {
    let Some(t) = created else {
        return "<unknown>".into();
    };
    let secs = now.as_second().saturating_sub(t.0.as_second()).max(0);
    human_duration(secs)
}

/// Seconds as kubectl's short human duration (`59s`, `2m5s`, `15m`, `3h20m`, `12h`, `3d4h`, `20d`).
pub fn human_duration(secs: i64) -> String {
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        match secs % 60 {
            0 => format!("{m}m"),
            s => format!("{m}m{s}s"),
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        match m % 60 {
            0 => format!("{h}h"),
            mm => format!("{h}h{mm}m"),
        }
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        match h % 24 {
            0 => format!("{d}d"),
            hh => format!("{d}d{hh}h"),
        }
    } else {
        format!("{d}d")
    }
}

fn debug_name<T: std::fmt::Debug>(v: Option<T>) -> String {
    v.map(|v| format!("{v:?}")).unwrap_or_default()
}

/// The `runs` table: NAME, AGENT, PHASE, REASON, DIFF, AGE (NAMESPACE first when
/// `all_namespaces`). REASON is the reason of the run's `Succeeded` condition.
pub fn runs_table(runs: &[AgentRun], all_namespaces: bool, now: Timestamp) -> Table {
    let mut headers = vec!["NAME", "AGENT", "PHASE", "REASON", "DIFF", "AGE"];
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let mut t = Table::new(&headers);
    for r in runs {
        let status = r.status.clone().unwrap_or_default();
        let reason = paddock_crds::condition::find_condition(&status.conditions, "Succeeded")
            .map(|c| c.reason.clone())
            .unwrap_or_default();
        let diff = status.result.as_ref().map(|x| x.diffstat.clone()).unwrap_or_default();
        let mut row = vec![
            r.metadata.name.clone().unwrap_or_default(),
            r.spec.agent.name.as_str().to_string(),
            debug_name(status.phase),
            reason,
            diff,
            age(r.metadata.creation_timestamp.as_ref(), now),
        ];
        if all_namespaces {
            row.insert(0, r.metadata.namespace.clone().unwrap_or_default());
        }
        t.rows.push(row);
    }
    t
}

/// Longest REQUEST cell of the `gates` table, in characters.
pub const REQUEST_CELL_CHARS: usize = 60;

/// `s` on one line (newlines as `⏎`), cut to `max` characters with `…`.
pub fn clip_line(s: &str, max: usize) -> String {
    let one = one_line(s.trim());
    if one.chars().count() <= max {
        return one;
    }
    let mut cut: String = one.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// What a gate asks, on one line (uncut): a `Question`'s question (with how many options it
/// offers, and `→ <answer>` once answered), the first line of a `Plan` (with how many more
/// lines, and `→ changes: <comment>` once changes were requested), else the request's summary.
pub fn gate_request_line(g: &ApprovalGate) -> String {
    let r = &g.spec.request;
    let answer = g.status.as_ref().and_then(|s| s.answer.clone());
    match g.spec.stage {
        GateStage::Question => {
            let mut s = r.question.clone().unwrap_or_else(|| r.summary.clone());
            s = one_line(s.trim());
            if !r.options.is_empty() {
                s.push_str(&format!(" ({} options)", r.options.len()));
            }
            if let Some(a) = answer {
                s.push_str(&format!(" → {}", one_line(a.trim())));
            }
            s
        }
        GateStage::Plan => {
            let plan = r.plan.clone().unwrap_or_default();
            let mut lines = plan.lines().map(str::trim).filter(|l| !l.is_empty());
            let mut s = lines.next().unwrap_or(r.summary.as_str()).to_string();
            let more = lines.count();
            if more > 0 {
                s.push_str(&format!(" (+{more} lines)"));
            }
            if let Some(a) = answer {
                s.push_str(&format!(" → changes: {}", one_line(a.trim())));
            }
            s
        }
        _ => one_line(r.summary.trim()),
    }
}

/// The `gates` table: NAME, RUN, STAGE, STATE, APPROVALS/QUORUM (e.g. `0/1`), AGE, REQUEST
/// ([`gate_request_line`], cut to [`REQUEST_CELL_CHARS`]) (NAMESPACE first when
/// `all_namespaces`).
pub fn gates_table(gates: &[ApprovalGate], all_namespaces: bool, now: Timestamp) -> Table {
    let mut headers = vec!["NAME", "RUN", "STAGE", "STATE", "APPROVALS/QUORUM", "AGE", "REQUEST"];
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let mut t = Table::new(&headers);
    for g in gates {
        let status = g.status.clone().unwrap_or_default();
        let mut row = vec![
            g.metadata.name.clone().unwrap_or_default(),
            g.spec.run_ref.name.clone(),
            g.spec.stage.as_str().to_string(),
            debug_name(status.state),
            format!("{}/{}", status.approvals, g.spec.quorum),
            age(g.metadata.creation_timestamp.as_ref(), now),
            clip_line(&gate_request_line(g), REQUEST_CELL_CHARS),
        ];
        if all_namespaces {
            row.insert(0, g.metadata.namespace.clone().unwrap_or_default());
        }
        t.rows.push(row);
    }
    t
}

/// The gate name of a run: its `status.gateName`, else `<run>-before-start`.
pub fn gate_name_of_run(run: &AgentRun) -> String {
    run.status
        .as_ref()
        .and_then(|s| s.gate_name.clone())
        .unwrap_or_else(|| format!("{}-before-start", run.metadata.name.clone().unwrap_or_default()))
}

/// Resolves the `approve`/`reject` argument `name`: a gate of that name wins; otherwise a run
/// of that name leads to [`gate_name_of_run`]. Returns the gate name to fetch and decide.
///
/// # Errors
/// [`PluginError::NotFound`] when neither exists.
pub fn resolve_gate(
    name: &str,
    namespace: &str,
    gate: Option<&ApprovalGate>,
    run: Option<&AgentRun>,
) -> Result<String, PluginError> {
    if gate.is_some() {
        return Ok(name.to_string());
    }
    match run {
        Some(r) => Ok(gate_name_of_run(r)),
        None => Err(PluginError::NotFound {
            name: name.into(),
            namespace: namespace.into(),
        }),
    }
}

/// Checks that `user` (member of `groups`) can usefully record `verdict` on `gate`: the gate
/// is still pending (not decided, expired or withdrawn), the user is an allowed approver (when the gate restricts approvers), and
/// the user has not approved it already.
///
/// # Errors
/// [`PluginError::AlreadyDecided`], [`PluginError::Withdrawn`], [`PluginError::NotAnApprover`],
/// [`PluginError::AlreadyApprovedByCaller`].
pub fn check_can_decide(
    gate: &ApprovalGate,
    user: &str,
    groups: &[String],
    verdict: Verdict,
) -> Result<(), PluginError> {
    let name = gate.metadata.name.clone().unwrap_or_default();
    let status = gate.status.clone().unwrap_or_default();
    if status.state == Some(GateState::Withdrawn) {
        return Err(PluginError::Withdrawn {
            gate: name,
            why: paddock_crds::condition::find_condition(&status.conditions, "Decided")
                .map(|c| format!(": {}", c.message))
                .unwrap_or_default(),
        });
    }
    if let Some(
        state @ (GateState::Approved | GateState::Rejected | GateState::ChangesRequested | GateState::Expired),
    ) = status.state
    {
        return Err(PluginError::AlreadyDecided {
            gate: name,
            state: format!("{state:?}"),
            by: status.decided_by.map(|u| format!(" by {u}")).unwrap_or_default(),
        });
    }
    let a = &gate.spec.approvers;
    let restricted = !a.users.is_empty() || !a.groups.is_empty();
    if restricted && !a.users.iter().any(|u| u == user) && !a.groups.iter().any(|g| groups.contains(g)) {
        return Err(PluginError::NotAnApprover {
            gate: name,
            user: user.into(),
            users: a.users.clone(),
            groups: a.groups.clone(),
        });
    }
    if verdict == Verdict::Approve
        && gate
            .spec
            .decisions
            .iter()
            .any(|d| d.approver == user && d.decision == Verdict::Approve)
    {
        return Err(PluginError::AlreadyApprovedByCaller {
            gate: name,
            user: user.into(),
        });
    }
    Ok(())
}

/// The JSON patch (RFC 6902) that appends one decision to `spec.decisions`:
/// `[{"op":"add","path":"/spec/decisions/-","value":{"approver":…,"decision":…,"comment":…}}]`.
pub fn decision_patch(approver: &str, verdict: Verdict, comment: Option<&str>) -> serde_json::Value {
    let d = Decision {
        approver: approver.into(),
        decision: verdict,
        comment: comment.map(str::to_string),
        candidate: None,
        answer: None,
    };
    serde_json::json!([{"op": "add", "path": "/spec/decisions/-", "value": d}])
}

fn one_line(s: &str) -> String {
    s.trim_end().replace("\r\n", "⏎").replace('\n', "⏎")
}

/// Describes one event without its time: `<type> <details>` on one line (newlines shown as `⏎`),
/// e.g. `tool_call Write {"file_path":"a"}` or `step agent succeeded`.
pub fn describe_event(ev: &RunnerEvent) -> String {
    let ty = ev.type_name();
    let detail = match ev {
        RunnerEvent::Step { step, status, message } => {
            let st = match status {
                StepStatus::Started => "started",
                StepStatus::Succeeded => "succeeded",
                StepStatus::Failed => "failed",
            };
            if message.is_empty() {
                format!("{} {st}", step.as_str())
            } else {
                format!("{} {st}: {}", step.as_str(), one_line(message))
            }
        }
        RunnerEvent::AgentStarted {
            agent,
            model,
            session_id,
        } => {
            let mut s = agent.clone();
            if let Some(m) = model {
                s.push_str(&format!(" model={m}"));
            }
            if let Some(id) = session_id {
                s.push_str(&format!(" session={id}"));
            }
            s
        }
        RunnerEvent::Message { text } => one_line(text),
        RunnerEvent::ToolCall { name, input, .. } => format!("{name} {}", one_line(input)),
        RunnerEvent::ToolResult { id, is_error, output } => {
            format!("{id} {} {}", if *is_error { "error" } else { "ok" }, one_line(output))
        }
        RunnerEvent::PermissionDenied { name, input } => format!("{name} {}", one_line(input)),
        RunnerEvent::ApprovalRequested { id, stage, summary, .. } => format!("{id} {stage}: {}", one_line(summary)),
        RunnerEvent::ApprovalDecided { id, verdict } => format!("{id} {verdict}"),
        RunnerEvent::MessageDelivered { id, turn } => format!("{id} at turn {turn}"),
        RunnerEvent::EgressDenied { host, port } => format!("{}:{port} refused", one_line(host)),
        RunnerEvent::Usage(u) => {
            let mut s = format!("in={} out={} turns={}", u.input_tokens, u.output_tokens, u.turns);
            if let Some(c) = u.cost_usd {
                s.push_str(&format!(" cost=${c:.4}"));
            }
            s
        }
        RunnerEvent::Error { message } => one_line(message),
        RunnerEvent::Log { stream, text } => format!("{stream} {}", one_line(text)),
        RunnerEvent::Final { text, is_error } => {
            format!("{}{}", if *is_error { "(error) " } else { "" }, one_line(text))
        }
        RunnerEvent::Patch { index, total, data } => {
            format!("chunk {}/{total} ({} bytes base64)", index + 1, data.len())
        }
        RunnerEvent::Session {
            agent,
            session_id,
            index,
            total,
            data,
            ..
        } => format!(
            "{agent} session {session_id} chunk {}/{total} ({} bytes base64)",
            index + 1,
            data.len()
        ),
        RunnerEvent::Result(r) => {
            let mut s = format!("{:?} {}", r.outcome, r.reason);
            if let Some(c) = &r.commit {
                s.push_str(&format!(" commit {} on {}", &c[..c.len().min(12)], r.branch));
            }
            s.push_str(&format!(
                " ({} files, +{}/-{})",
                r.files_changed, r.insertions, r.deletions
            ));
            if let Some(step) = &r.failed_step {
                s.push_str(&format!(" failed step {step}"));
            }
            if !r.message.is_empty() {
                s.push_str(&format!(": {}", one_line(&r.message)));
            }
            s
        }
    };
    if detail.is_empty() {
        ty.to_string()
    } else {
        format!("{ty} {detail}")
    }
}

/// Formats events one per line as `+<seconds>s <type> <details>`, the time relative to the
/// first event whose `ts` parses (RFC 3339); `?` when an event's `ts` does not parse.
pub fn format_events(events: &[EventLine]) -> String {
    format_events_by(events, describe_event)
}

/// [`format_events`] with another description of each event (e.g. [`talk::describe_event`],
/// which names the messages delivered).
pub fn format_events_by(events: &[EventLine], describe: impl Fn(&RunnerEvent) -> String) -> String {
    let t0 = events.iter().find_map(|e| e.ts.parse::<Timestamp>().ok());
    let mut out = String::new();
    for e in events {
        let rel = match (t0, e.ts.parse::<Timestamp>()) {
            (Some(t0), Ok(t)) => {
                let ms = t.as_millisecond() - t0.as_millisecond();
                format!("+{:.1}s", ms as f64 / 1000.0)
            }
            _ => "?".to_string(),
        };
        out.push_str(&format!("{rel:>8} {}\n", describe(&e.event)));
    }
    out
}

/// Parses a runner log (ConfigMap `events.jsonl` or the `agent` container's stdout) into events,
/// skipping lines that are not events; also returns those event lines verbatim (for `--raw`).
pub fn parse_log(text: &str) -> (Vec<EventLine>, Vec<&str>) {
    let mut events = Vec::new();
    let mut raw = Vec::new();
    for line in text.lines() {
        if let Some(e) = parse_line(line) {
            events.push(e);
            raw.push(line.trim());
        }
    }
    (events, raw)
}

/// One line of a run's model transcript (the gateway's JSON lines, see `<run>-transcript`),
/// decoded by [`parse_transcript`].
#[derive(Debug, Clone, PartialEq)]
pub enum TranscriptLine {
    /// One model API call the pod's gateway proxied.
    Call(TranscriptCall),
    /// The gateway stopped recording: later calls are not in the transcript.
    Truncated {
        /// The transcript's size limit in bytes, when the line says it.
        limit_bytes: Option<u64>,
    },
    /// A line that is not JSON, kept as it is.
    Other(String),
}

/// One model call of a transcript. Every field is optional: a field the line lacks (or gives
/// with another JSON type) is `None`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TranscriptCall {
    /// Sequence number of the call in the run (1-based).
    pub seq: Option<u64>,
    /// When the gateway saw the call (RFC 3339).
    pub ts: Option<String>,
    /// Which upstream route (`anthropic`, `openai`, …).
    pub route: Option<String>,
    /// HTTP method.
    pub method: Option<String>,
    /// Request path.
    pub path: Option<String>,
    /// HTTP status of the model's answer.
    pub status: Option<u64>,
    /// Model the call named.
    pub model: Option<String>,
    /// Input (prompt) tokens the model reported.
    pub input_tokens: Option<u64>,
    /// Output tokens the model reported.
    pub output_tokens: Option<u64>,
    /// Price in US dollars by the pool's price table; `None` when the model is unpriced.
    pub cost_usd: Option<f64>,
}

/// Decodes transcript text (JSON lines) into [`TranscriptLine`]s, skipping blank lines. Pure;
/// never fails: a line that is not a JSON value is [`TranscriptLine::Other`].
pub fn parse_transcript(text: &str) -> Vec<TranscriptLine> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            out.push(TranscriptLine::Other(line.to_string()));
            continue;
        };
        if v["type"] == "transcript_truncated" {
            out.push(TranscriptLine::Truncated {
                limit_bytes: v["limit_bytes"].as_u64(),
            });
            continue;
        }
        let s = |k: &str| v[k].as_str().map(str::to_string);
        out.push(TranscriptLine::Call(TranscriptCall {
            seq: v["seq"].as_u64(),
            ts: s("ts"),
            route: s("route"),
            method: s("method"),
            path: s("path"),
            status: v["status"].as_u64(),
            model: s("model"),
            input_tokens: v["input_tokens"].as_u64(),
            output_tokens: v["output_tokens"].as_u64(),
            cost_usd: v["cost_usd"].as_f64(),
        }));
    }
    out
}

/// Renders transcript lines (the gateway's JSON lines, see `<run>-transcript`) as one readable
/// line per model call: `#<seq> <ts> <route> <METHOD> <path> <status> <model> in=<n> out=<n>
/// $<cost>`. Other lines are shown as they are. Pure.
pub fn render_transcript(text: &str) -> String {
    let mut out = String::new();
    for line in parse_transcript(text) {
        match line {
            TranscriptLine::Other(l) => {
                out.push_str(&l);
                out.push('\n');
            }
            TranscriptLine::Truncated { limit_bytes } => out.push_str(&format!(
                "… later calls not recorded (transcript limit {} bytes)\n",
                limit_bytes.map_or("null".to_string(), |b| b.to_string())
            )),
            TranscriptLine::Call(c) => {
                let s = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                let n = |v: Option<u64>| v.map_or("-".to_string(), |x| x.to_string());
                let cost = c.cost_usd.map_or("unpriced".to_string(), |c| format!("${c:.6}"));
                out.push_str(&format!(
                    "#{} {} {} {} {} {} {} in={} out={} {}\n",
                    n(c.seq),
                    s(&c.ts),
                    s(&c.route),
                    s(&c.method),
                    s(&c.path),
                    n(c.status),
                    s(&c.model),
                    n(c.input_tokens),
                    n(c.output_tokens),
                    cost
                ));
            }
        }
    }
    out
}

/// Decompresses a gzip blob (the patch ConfigMap's `patch.gz`) to text (invalid UTF-8 is
/// replaced).
///
/// # Errors
/// When the blob is not valid gzip.
pub fn gunzip(data: &[u8]) -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests;
