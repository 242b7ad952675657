//! Human approvals during a run: the `BeforePush` review, `ToolUse` gates, the agent's
//! `Question`s and `Plan` review.
//!
//! The agent container holds no Kubernetes credentials, so a request and its verdict travel
//! through channels the pod already has:
//! 1. **Request** — the runner prints an [`RunnerEvent::ApprovalRequested`] event on stdout (the
//!    container log the operator follows). The operator creates the ApprovalGate
//!    `<run>-<id>` from it.
//! 2. **Verdict** — once the gate is decided, the operator sets the pod annotation
//!    `decision.paddock.dev/<id>` to `Approve`, `Reject` or `Expired`. The kubelet projects the
//!    pod's annotations into a downward API volume file (`PADDOCK_DECISIONS_FILE`, default
//!    [`DEFAULT_DECISIONS_FILE`]), which the runner polls every [`POLL_INTERVAL`].
//!
//! `ToolUse`, `Question` and `Plan` requests come from the runner's MCP server ([`crate::mcp`]),
//! a child of the agent CLI whose stdout belongs to the CLI. It writes `<id>.request.json` (a
//! [`Request`]) and, once decided, `<id>.verdict` into [`requests_dir`]; the `run` process
//! turns new files into events ([`watch_requests`]). `Question` and `Plan` verdicts may carry a
//! text (the answer, the changes asked for) in the annotation `text.paddock.dev/<id>`, which the
//! verdict's signature covers ([`read_verdict_text`]).

use paddock_crds::runner::vars;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use paddock_crds::events::{truncate, RunnerEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::workspace::{write_atomic, Workspace};

/// Prefix of the pod annotations that carry verdicts: `decision.paddock.dev/<id>`.
pub const DECISION_PREFIX: &str = "decision.paddock.dev/";
/// Where the operator's pod mounts the downward API file of the pod's annotations.
pub const DEFAULT_DECISIONS_FILE: &str = "/etc/paddock/pod/annotations";
/// How often verdicts and request files are polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Longest tool input (bytes) carried in a request.
pub const MAX_INPUT_BYTES: usize = 2048;

/// A gate's verdict as the operator writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on.
    Approve,
    /// Do not (the CLI sees a denial; a push does not happen).
    Reject,
    /// Nobody decided in time and the gate's `onTimeout` is `Reject`.
    Expired,
    /// `Plan` gates only: revise the plan (the changes asked for are the verdict's text).
    RequestChanges,
}

impl Verdict {
    /// Parses an annotation value (`Approve`, `Reject`, `Expired`, `RequestChanges`).
    pub fn parse(s: &str) -> Option<Verdict> {
        match s.trim() {
            "Approve" => Some(Verdict::Approve),
            "Reject" => Some(Verdict::Reject),
            "Expired" => Some(Verdict::Expired),
            "RequestChanges" => Some(Verdict::RequestChanges),
            _ => None,
        }
    }

    /// The annotation value.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "Approve",
            Verdict::Reject => "Reject",
            Verdict::Expired => "Expired",
            Verdict::RequestChanges => "RequestChanges",
        }
    }
}

/// Parses the kubelet's downward API rendering of a map (`key="value"` per line, the value
/// quoted as Go's `strconv.Quote` does). Lines that do not parse are skipped.
pub fn parse_annotations(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
            continue;
        };
        let mut value = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                value.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some('r') => value.push('\r'),
                Some(other) => value.push(other),
                None => {}
            }
        }
        out.insert(key.to_string(), value);
    }
    out
}

/// Whose verdicts count: the operator's public key and this pod's run and attempt, from the
/// pod's env (`PADDOCK_VERDICT_PUBLIC_KEY`, `PADDOCK_NAMESPACE`, `PADDOCK_RUN`,
/// `PADDOCK_RUN_UID`, `PADDOCK_ATTEMPT`), which the operator wrote into the pod spec (or, in a
/// warm pod, into the signed claim). A verdict annotation counts only with the operator's
/// signature over this run, attempt, request id and subject ([`paddock_crds::verdict`]); an
/// unsigned one, which a namespace `edit` user can write, is ignored. Without a public key
/// nothing verifies (fail closed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerdictCheck {
    /// Base64 of the operator's Ed25519 public key.
    pub public_key: String,
    /// The run's namespace.
    pub namespace: String,
    /// The run's name.
    pub run: String,
    /// The run's `metadata.uid`.
    pub run_uid: String,
    /// This pod's attempt (from 1).
    pub attempt: u32,
}

impl VerdictCheck {
    /// Reads the variables named above; missing ones stay empty (and nothing verifies).
    pub fn from_env(env: &crate::env::Env) -> Self {
        let get = |k: &str| env.get(k).unwrap_or_default().to_string();
        Self {
            public_key: get(paddock_crds::verdict::PUBLIC_KEY_ENV),
            namespace: get(vars::NAMESPACE),
            run: get(vars::RUN),
            run_uid: get(vars::RUN_UID),
            attempt: env.get(vars::ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(0),
        }
    }

    /// The verdict in annotation `value` for request `id` about `subject` (a push's commit, or
    /// empty), if the operator signed it for this run and attempt.
    pub fn verdict(&self, id: &str, subject: &str, value: &str) -> Option<Verdict> {
        let s = paddock_crds::verdict::Subject {
            namespace: &self.namespace,
            run: &self.run,
            run_uid: &self.run_uid,
            attempt: self.attempt,
            id,
            subject,
        };
        paddock_crds::verdict::verified_verdict(&self.public_key, &s, value).and_then(Verdict::parse)
    }

    /// Whether `message`, found in the annotation `message.paddock.dev/<uid>`, was signed by the
    /// operator for this run and attempt ([`PodMessage::verify`](paddock_crds::verdict::PodMessage::verify)).
    pub fn message(&self, uid: &str, message: &paddock_crds::verdict::PodMessage) -> bool {
        let base = paddock_crds::verdict::Subject {
            namespace: &self.namespace,
            run: &self.run,
            run_uid: &self.run_uid,
            attempt: self.attempt,
            id: "",
            subject: "",
        };
        message.verify(&self.public_key, &base, uid)
    }
}

/// The verdict for request `id` about `subject` in the annotations file at `file`, if a signed
/// one is there yet ([`VerdictCheck`]).
pub fn read_verdict(file: &Path, check: &VerdictCheck, id: &str, subject: &str) -> Option<Verdict> {
    let text = std::fs::read_to_string(file).ok()?;
    parse_annotations(&text)
        .get(&format!("{DECISION_PREFIX}{id}"))
        .and_then(|v| check.verdict(id, subject, v))
}

/// The signed verdict on request `id` and its text, from the annotations `annotations`: the
/// text is the annotation `text.paddock.dev/<id>` (empty when absent), and the verdict counts
/// only when the operator signed it over [`text_subject`](paddock_crds::verdict::text_subject)
/// of that text, so nobody who may annotate pods can swap the text. A verdict signed over the
/// empty text is read with the text `""` even when someone added a text annotation next to it
/// (the operator wrote none, so that text is not the verdict's).
pub fn verdict_text(
    annotations: &HashMap<String, String>,
    check: &VerdictCheck,
    id: &str,
) -> Option<(Verdict, String)> {
    let value = annotations.get(&format!("{DECISION_PREFIX}{id}"))?;
    let text = annotations
        .get(&format!("{}{id}", paddock_crds::verdict::TEXT_PREFIX))
        .map(String::as_str)
        .unwrap_or_default();
    let signed = |text: &str| check.verdict(id, &paddock_crds::verdict::text_subject(text), value);
    match signed(text) {
        Some(v) => Some((v, text.to_string())),
        None if !text.is_empty() => signed("").map(|v| (v, String::new())),
        None => None,
    }
}

/// [`verdict_text`] read from the annotations file at `file`.
pub fn read_verdict_text(file: &Path, check: &VerdictCheck, id: &str) -> Option<(Verdict, String)> {
    let text = std::fs::read_to_string(file).ok()?;
    verdict_text(&parse_annotations(&text), check, id)
}

/// Most `Plan` gates of one attempt the push guard looks at (`plan-1` … `plan-99`).
pub const MAX_PLAN_GATES: u32 = 99;

/// The id of a `Plan` request (`plan-<n>`, n in 1..=[`MAX_PLAN_GATES`]) that the operator
/// approved for this run and attempt, if any, in the annotations file at `file`. Only a signed
/// `Approve` counts (its subject is the text subject of the empty text, or of the gate's text
/// annotation when one is present); an unsigned or forged annotation, a request file or
/// anything else the agent can write never does. Used by the gateway's push guard and by the
/// MCP server before a plan is approved.
pub fn plan_approved(file: &Path, check: &VerdictCheck) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let annotations = parse_annotations(&text);
    (1..=MAX_PLAN_GATES)
        .map(|n| format!("plan-{n}"))
        .find(|id| verdict_text(&annotations, check, id).is_some_and(|(v, _)| v == Verdict::Approve))
}

/// Polls `read` every `interval` until it gives a value; `None` when `terminate` turned true
/// first (verdicts here; warm claims in [`crate::warm`]).
pub(crate) async fn poll_every<T>(
    interval: std::time::Duration,
    mut read: impl FnMut() -> Option<T>,
    terminate: &mut watch::Receiver<bool>,
) -> Option<T> {
    loop {
        if let Some(v) = read() {
            return Some(v);
        }
        if *terminate.borrow() {
            return None;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {},
            _ = terminate.changed() => {},
        }
    }
}

/// Waits for the signed verdict on request `id` about `subject`. `None` when `terminate`
/// turned true first.
pub async fn wait_verdict(
    file: &Path,
    check: &VerdictCheck,
    id: &str,
    subject: &str,
    terminate: &mut watch::Receiver<bool>,
) -> Option<Verdict> {
    poll_every(POLL_INTERVAL, || read_verdict(file, check, id, subject), terminate).await
}

/// Waits for the signed verdict on request `id` with its text ([`read_verdict_text`]). `None`
/// when `terminate` turned true first.
pub async fn wait_verdict_text(
    file: &Path,
    check: &VerdictCheck,
    id: &str,
    terminate: &mut watch::Receiver<bool>,
) -> Option<(Verdict, String)> {
    poll_every(POLL_INTERVAL, || read_verdict_text(file, check, id), terminate).await
}

pub use crate::toolrule::{matching_rule, subject};

/// A request as the MCP server writes it for the `run` process (`<id>.request.json`); the
/// fields of [`RunnerEvent::ApprovalRequested`] without the push's.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Request {
    /// `tool-<n>`, `question-<n>` or `plan-<n>` (n from 1, at most [`MAX_REQUEST_NUMBER`]).
    pub id: String,
    /// `ToolUse` (the default, for files written before stages existed), `Question` or `Plan`.
    #[serde(default = "tool_use_stage")]
    pub stage: String,
    /// One line for the approver.
    pub summary: String,
    /// `ToolUse`: the tool name (`Bash`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// `ToolUse`: the rule's subject of the call (command line, path, …), truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// `Question`: what the agent asks (at most [`MAX_QUESTION_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    /// `Question`: the answers offered (at most [`MAX_OPTIONS`] of [`MAX_OPTION_BYTES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// `Plan`: the agent's plan (Markdown, at most [`MAX_PLAN_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

fn tool_use_stage() -> String {
    paddock_crds::GateStage::ToolUse.as_str().to_string()
}

/// Largest request number: ids have at most 4 digits (`tool-9999`).
pub const MAX_REQUEST_NUMBER: u32 = 9999;
/// Longest question (bytes) `ask_human` takes.
pub const MAX_QUESTION_BYTES: usize = 4096;
/// Most options one question offers.
pub const MAX_OPTIONS: usize = 16;
/// Longest option (bytes).
pub const MAX_OPTION_BYTES: usize = 256;
/// Longest plan (bytes) a `Plan` request carries; a longer one is cut.
pub const MAX_PLAN_BYTES: usize = 32 * 1024;
/// Longest summary (bytes) of a request.
const MAX_SUMMARY_BYTES: usize = 1024;

/// Directory of request and verdict files: `<workspace>/.paddock/approvals`.
pub fn requests_dir(ws: &Workspace) -> PathBuf {
    ws.control().join("approvals")
}

/// The most requests of a kind one attempt asks: as many gates as the operator raises per
/// attempt and stage (`tool` 256, `question` 16, `plan` [`MAX_PLAN_GATES`]); later ones would
/// never be decided.
pub fn max_requests(prefix: &str) -> u32 {
    match prefix {
        "question" => 16,
        "plan" => MAX_PLAN_GATES,
        _ => 256,
    }
}

/// Claims the next free id `<prefix>-<n>` in `dir` by creating its request file exclusively
/// (so concurrent calls never share an id), n from 1 to [`max_requests`].
fn claim_id(dir: &Path, prefix: &str) -> std::io::Result<String> {
    std::fs::create_dir_all(dir)?;
    for n in 1..=max_requests(prefix).min(MAX_REQUEST_NUMBER) {
        let id = format!("{prefix}-{n}");
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(format!("{id}.request.json")))
        {
            Ok(_) => return Ok(id),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "no more {prefix} requests in this attempt: {prefix}-{} is the last one the operator raises",
        max_requests(prefix)
    )))
}

/// Writes `req` (its id claimed with [`claim_id`]) for the `run` process.
fn write_claimed(dir: &Path, prefix: &str, mut req: Request) -> std::io::Result<Request> {
    req.id = claim_id(dir, prefix)?;
    let json = serde_json::to_vec(&req).map_err(std::io::Error::other)?;
    write_atomic(&dir.join(format!("{}.request.json", req.id)), &json)?;
    Ok(req)
}

/// Writes a new `ToolUse` request for `tool` with `input` (the CLI working in `cwd`) and
/// returns it; its id is `tool-<n>`, the first free n.
///
/// # Errors
/// I/O errors creating the directory or the file, or every id taken.
pub fn write_request(dir: &Path, tool: &str, input: &Value, cwd: &Path) -> std::io::Result<Request> {
    let subject = truncate(&subject(tool, input, cwd), MAX_INPUT_BYTES);
    let req = Request {
        stage: tool_use_stage(),
        tool: Some(tool.to_string()),
        summary: truncate(&format!("{tool}: {subject}"), MAX_SUMMARY_BYTES),
        input: Some(subject),
        ..Request::default()
    };
    write_claimed(dir, "tool", req)
}

/// Why a question is refused before anyone is asked (the agent gets the message and may ask
/// again).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuestionError {
    /// The question is empty.
    #[error("the question is empty")]
    Empty,
    /// The question is longer than [`MAX_QUESTION_BYTES`].
    #[error("the question is {0} bytes long; ask in at most 4096 bytes")]
    TooLong(usize),
    /// More than [`MAX_OPTIONS`] options.
    #[error("{0} options offered; offer at most 16")]
    TooManyOptions(usize),
    /// An option is longer than [`MAX_OPTION_BYTES`].
    #[error("option {0} is longer than 256 bytes")]
    OptionTooLong(usize),
    /// The request could not be written.
    #[error("cannot ask: {0}")]
    Io(String),
}

/// Writes a new `Question` request (`question-<n>`) asking `question`, offering `options`.
///
/// # Errors
/// [`QuestionError`] for a question out of bounds or an I/O error.
pub fn write_question(dir: &Path, question: &str, options: &[String]) -> Result<Request, QuestionError> {
    if question.trim().is_empty() {
        return Err(QuestionError::Empty);
    }
    if question.len() > MAX_QUESTION_BYTES {
        return Err(QuestionError::TooLong(question.len()));
    }
    if options.len() > MAX_OPTIONS {
        return Err(QuestionError::TooManyOptions(options.len()));
    }
    if let Some(i) = options.iter().position(|o| o.len() > MAX_OPTION_BYTES) {
        return Err(QuestionError::OptionTooLong(i + 1));
    }
    let first = question
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    let req = Request {
        stage: paddock_crds::GateStage::Question.as_str().to_string(),
        summary: truncate(&format!("The agent asks: {first}"), MAX_SUMMARY_BYTES),
        question: Some(question.to_string()),
        options: options.to_vec(),
        ..Request::default()
    };
    write_claimed(dir, "question", req).map_err(|e| QuestionError::Io(e.to_string()))
}

/// Writes a new `Plan` request (`plan-<n>`) with `plan` (cut to [`MAX_PLAN_BYTES`]).
///
/// # Errors
/// I/O errors creating the directory or the file, or every id taken.
pub fn write_plan(dir: &Path, plan: &str) -> std::io::Result<Request> {
    let first = plan
        .lines()
        .map(|l| l.trim().trim_start_matches('#').trim())
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    let req = Request {
        stage: paddock_crds::GateStage::Plan.as_str().to_string(),
        summary: truncate(&format!("Review the agent's plan: {first}"), MAX_SUMMARY_BYTES),
        plan: Some(truncate(plan, MAX_PLAN_BYTES)),
        ..Request::default()
    };
    write_claimed(dir, "plan", req)
}

/// Where the `run` process leaves the plan text of Claude Code's `ExitPlanMode` call
/// `tool_use_id` for the MCP server (Claude Code does not pass it to the permission prompt):
/// `<dir>/<tool_use_id>.plan`. `None` for an id that is not 1 to 128 ASCII letters, digits,
/// `_` or `-` (it names a file).
pub fn plan_file(dir: &Path, tool_use_id: &str) -> Option<PathBuf> {
    let ok = (1..=128).contains(&tool_use_id.len())
        && tool_use_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then(|| dir.join(format!("{tool_use_id}.plan")))
}

/// Records the verdict on request `id` for the `run` process.
///
/// # Errors
/// I/O errors writing the file.
pub fn write_verdict(dir: &Path, id: &str, verdict: Verdict) -> std::io::Result<()> {
    write_atomic(&dir.join(format!("{id}.verdict")), verdict.as_str().as_bytes())
}

/// Polls `dir` until `tx` is closed, sending an [`RunnerEvent::ApprovalRequested`] for each new
/// request file and an [`RunnerEvent::ApprovalDecided`] for each new verdict file, in id order.
pub async fn watch_requests(dir: PathBuf, tx: mpsc::Sender<RunnerEvent>) {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    loop {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".request.json") || n.ends_with(".verdict"))
                    .collect()
            })
            .unwrap_or_default();
        // Requests before verdicts, lower ids first.
        names.sort_by_key(|n| (n.ends_with(".verdict"), n.len(), n.clone()));
        for name in names {
            if seen.contains(&name) {
                continue;
            }
            let Ok(raw) = std::fs::read_to_string(dir.join(&name)) else {
                continue;
            };
            let ev = if let Some(id) = name.strip_suffix(".verdict") {
                RunnerEvent::ApprovalDecided {
                    id: id.to_string(),
                    verdict: raw.trim().to_string(),
                }
            } else {
                // An empty file is an id being claimed: read it on a later poll.
                let Ok(req) = serde_json::from_str::<Request>(&raw) else {
                    continue;
                };
                RunnerEvent::ApprovalRequested {
                    id: req.id,
                    stage: req.stage,
                    summary: req.summary,
                    tool: req.tool,
                    input: req.input,
                    commit: None,
                    diffstat: None,
                    question: req.question,
                    options: req.options,
                    plan: req.plan,
                }
            };
            seen.insert(name);
            if tx.send(ev).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => {},
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
