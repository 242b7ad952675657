//! Talking to a running agent (docs/conversing.md): `kubectl paddock say` (a `RunMessage`),
//! `answer` (an ApprovalGate of stage `Question`), `request-changes` (stage `Plan`),
//! `messages` and `gate`. First the pure parts — the message object, the decisions and their
//! checks, the tables and descriptions — then the writes the command line and the console share
//! ([`send_message`], [`wait_for_delivery`], [`append_decision`]). Every write goes to the API
//! server with the caller's client and in the caller's name; RBAC, the CRD's CEL and the chart's
//! admission policies have the last word, and their refusal is what the person reads.

use crate::fetch::{fetch_run, FetchError};
use crate::{age, clip_line, describe_event as describe_plain, human_duration, PluginError, Table};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use paddock_crds::events::RunnerEvent;
use paddock_crds::{
    AgentRun, ApprovalGate, Decision, GateStage, GateState, MessageRunReference, MessageState, Phase, RunMessage,
    RunMessageSpec, Verdict,
};
use std::time::Duration;

/// Longest text a message, an answer or a comment may have (bytes), as the CRDs say.
pub const MAX_TEXT_BYTES: usize = 4096;

/// How long `say --wait` waits when no timeout is given.
pub const DEFAULT_WAIT: &str = "2m";

/// Longest TEXT cell of the `messages` table, in characters.
pub const MESSAGE_CELL_CHARS: usize = 60;

/// Lines of a plan `gate` prints unless asked for all of them.
pub const PLAN_LINES: usize = 20;

/// Checks a text the API would refuse: empty (or only blanks), or over [`MAX_TEXT_BYTES`].
/// `what` names it in the error (`the message`, `the answer`, `the comment`).
///
/// # Errors
/// [`PluginError::BadText`].
pub fn check_text(what: &str, text: &str) -> Result<(), PluginError> {
    let why = if text.trim().is_empty() {
        "is empty".to_string()
    } else if text.len() > MAX_TEXT_BYTES {
        format!("is {} bytes long; at most {MAX_TEXT_BYTES} are allowed", text.len())
    } else {
        return Ok(());
    };
    Err(PluginError::BadText { what: what.into(), why })
}

/// The RunMessage `say` creates: `generateName` `<run>-msg-`, label `paddock.dev/run=<run>`,
/// `spec.runRef.name` the run, `spec.sender` the caller (the admission policy refuses any other
/// name), `spec.text` the message as given.
pub fn new_message(run: &str, sender: &str, text: &str) -> RunMessage {
    let mut m = RunMessage::new(
        "",
        RunMessageSpec {
            run_ref: MessageRunReference { name: run.into() },
            text: text.into(),
            sender: sender.into(),
        },
    );
    m.metadata.name = None;
    m.metadata.generate_name = Some(format!("{run}-msg-"));
    m.metadata.labels = Some([(paddock_crds::LABEL_RUN.to_string(), run.to_string())].into());
    m
}

/// Whether a message to `run` can still be delivered. `Ok(Some(note))` when it will wait (the
/// run has not started) or be refused (its agent takes no live messages: only `claude-code`
/// does); `Ok(None)` when it goes straight to the running agent.
///
/// # Errors
/// [`PluginError::RunEnded`] once the run has ended.
pub fn check_can_message(run: &AgentRun) -> Result<Option<String>, PluginError> {
    let name = run.metadata.name.clone().unwrap_or_default();
    let phase = run.status.as_ref().and_then(|s| s.phase);
    if let Some(p) = phase.filter(|p| p.is_terminal()) {
        return Err(PluginError::RunEnded {
            run: name,
            phase: p.as_str().into(),
        });
    }
    let agent = run.spec.agent.name;
    if !paddock_crds::takes_live_messages(&agent) {
        return Ok(Some(format!(
            "note: {} takes no messages while it works (only claude-code does): the operator will refuse this one \
             with reason NotSupported (docs/conversing.md)",
            agent.as_str()
        )));
    }
    if matches!(phase, None | Some(Phase::Pending | Phase::Queued)) {
        return Ok(Some(format!(
            "note: AgentRun {name} has not started yet (phase {}); the message waits until its agent runs",
            phase.map_or("Pending", Phase::as_str)
        )));
    }
    Ok(None)
}

fn state_of(m: &RunMessage) -> MessageState {
    m.status.as_ref().and_then(|s| s.state).unwrap_or(MessageState::Pending)
}

/// Where a message is, in words: `delivered at turn 3 (attempt 1)`, `refused (NotSupported):
/// …`, `pending (SentToPod): …`, or `pending` before the operator looked at it.
pub fn delivery(m: &RunMessage) -> String {
    let st = m.status.clone().unwrap_or_default();
    let cond = paddock_crds::condition::find_condition(&st.conditions, paddock_crds::COND_DELIVERED);
    let reason = cond.map(|c| {
        let msg = if c.message.is_empty() {
            String::new()
        } else {
            format!(": {}", c.message)
        };
        format!(" ({}){msg}", c.reason)
    });
    match state_of(m) {
        MessageState::Delivered => {
            let mut s = "delivered".to_string();
            if let Some(t) = st.turn {
                s.push_str(&format!(" at turn {t}"));
            }
            if let Some(a) = st.attempt {
                s.push_str(&format!(" (attempt {a})"));
            }
            s
        }
        MessageState::Refused => format!("refused{}", reason.unwrap_or_default()),
        MessageState::Pending => format!("pending{}", reason.unwrap_or_default()),
    }
}

/// Whether a message's delivery is settled (`Delivered` or `Refused`).
pub fn is_settled(m: &RunMessage) -> bool {
    state_of(m) != MessageState::Pending
}

/// The `messages` table: NAME, SENDER, STATE, TURN, AGE, TEXT (on one line, cut to
/// [`MESSAGE_CELL_CHARS`]), in the order given.
pub fn messages_table(msgs: &[RunMessage], now: Timestamp) -> Table {
    let mut t = Table::new(&["NAME", "SENDER", "STATE", "TURN", "AGE", "TEXT"]);
    for m in msgs {
        let st = m.status.clone().unwrap_or_default();
        t.rows.push(vec![
            m.metadata.name.clone().unwrap_or_default(),
            m.spec.sender.clone(),
            state_of(m).as_str().into(),
            st.turn.map(|n| n.to_string()).unwrap_or_default(),
            age(m.metadata.creation_timestamp.as_ref(), now),
            clip_line(&m.spec.text, MESSAGE_CELL_CHARS),
        ]);
    }
    t
}

/// Describes an event like [`crate::describe_event`], except that a `message_delivered` event
/// names the message it delivered (found by UID among `msgs`): `message_delivered fix-msg-x7k2p
/// from alice at turn 3: also update the changelog`.
pub fn describe_event(ev: &RunnerEvent, msgs: &[RunMessage]) -> String {
    if let RunnerEvent::MessageDelivered { id, turn } = ev {
        if let Some(m) = msgs.iter().find(|m| m.metadata.uid.as_deref() == Some(id.as_str())) {
            return format!(
                "{} {} from {} at turn {turn}: {}",
                ev.type_name(),
                m.metadata.name.as_deref().unwrap_or(id),
                m.spec.sender,
                clip_line(&m.spec.text, 200)
            );
        }
    }
    describe_plain(ev)
}

/// What a person decides on a gate, as `approve`, `reject`, `answer`, `request-changes` and the
/// console's forms say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// `approve`: let the run go on (not for a `Question`: an approval there is an answer).
    Approve,
    /// `reject` (on a `Question` gate the same as [`Choice::Decline`]).
    Reject,
    /// `answer <run> "text"`: approve a `Question` with this answer.
    Answer(String),
    /// `answer <run> --option N`: approve a `Question` with its N-th offered answer (from 1).
    AnswerOption(usize),
    /// `answer <run> --decline`: reject a `Question` (the agent gets "no answer").
    Decline,
    /// `request-changes <gate> -m "…"`: send a `Plan` back with the comment.
    RequestChanges,
}

fn wrong_stage(g: &ApprovalGate, hint: &str) -> PluginError {
    PluginError::WrongStage {
        gate: g.metadata.name.clone().unwrap_or_default(),
        stage: g.spec.stage.as_str().into(),
        hint: hint.into(),
    }
}

/// The decision `approver` appends to `gate` for `choice`, with `comment`. Checks what the CRD
/// would refuse, with a message that says what to do instead: an approval of a `Question`
/// without an answer, an answer on another stage, an option the question does not offer, a
/// `RequestChanges` off a `Plan` gate or without a comment, an empty or oversized text.
///
/// # Errors
/// [`PluginError::WrongStage`], [`PluginError::BadOption`], [`PluginError::BadText`].
pub fn decision(
    gate: &ApprovalGate,
    approver: &str,
    choice: &Choice,
    comment: Option<&str>,
) -> Result<Decision, PluginError> {
    let stage = gate.spec.stage;
    let run = &gate.spec.run_ref.name;
    let question_only = |what: &str| {
        if stage == GateStage::Question {
            Ok(())
        } else {
            Err(wrong_stage(
                gate,
                &format!("only a Question gate takes {what} (approve or reject this one)"),
            ))
        }
    };
    let (verdict, answer) = match choice {
        Choice::Approve if stage == GateStage::Question => {
            return Err(wrong_stage(
                gate,
                &format!(
                    "an approval carries the answer: kubectl paddock answer {run} \"…\" (or --option N, --decline)"
                ),
            ))
        }
        Choice::Approve => (Verdict::Approve, None),
        Choice::Reject => (Verdict::Reject, None),
        Choice::Decline => {
            question_only("--decline")?;
            (Verdict::Reject, None)
        }
        Choice::Answer(text) => {
            question_only("an answer")?;
            check_text("the answer", text)?;
            (Verdict::Approve, Some(text.clone()))
        }
        Choice::AnswerOption(n) => {
            question_only("--option")?;
            let options = &gate.spec.request.options;
            let name = gate.metadata.name.clone().unwrap_or_default();
            if options.is_empty() {
                return Err(PluginError::BadOption {
                    gate: name,
                    why: "the question offers no options; answer in words".into(),
                });
            }
            let Some(text) = n.checked_sub(1).and_then(|i| options.get(i)) else {
                let list: Vec<String> = options
                    .iter()
                    .enumerate()
                    .map(|(i, o)| format!("{}. {o}", i + 1))
                    .collect();
                return Err(PluginError::BadOption {
                    gate: name,
                    why: format!(
                        "option {n} is out of range: the question offers {} option(s), from 1: {}",
                        options.len(),
                        list.join("; ")
                    ),
                });
            };
            (Verdict::Approve, Some(text.clone()))
        }
        Choice::RequestChanges => {
            if stage != GateStage::Plan {
                return Err(wrong_stage(
                    gate,
                    "only a Plan gate takes RequestChanges (approve or reject this one)",
                ));
            }
            if comment.is_none_or(|c| c.trim().is_empty()) {
                return Err(PluginError::BadText {
                    what: "a RequestChanges decision".into(),
                    why: "needs a comment saying which changes (-m \"…\")".into(),
                });
            }
            (Verdict::RequestChanges, None)
        }
    };
    if let Some(c) = comment {
        check_text("the comment", c)?;
    }
    Ok(Decision {
        approver: approver.into(),
        decision: verdict,
        comment: comment.map(str::to_string),
        candidate: None,
        answer,
    })
}

/// The JSON patch (RFC 6902) that appends `d` to `spec.decisions` (as
/// [`crate::decision_patch`], with the answer when there is one).
pub fn decision_patch(d: &Decision) -> serde_json::Value {
    serde_json::json!([{"op": "add", "path": "/spec/decisions/-", "value": d}])
}

fn is_pending(g: &ApprovalGate) -> bool {
    g.status.as_ref().and_then(|s| s.state).unwrap_or(GateState::Pending) == GateState::Pending
}

/// The newest pending gate of `stage` that names run `run` among `gates` (the one `answer` and
/// `request-changes` decide when given a run name).
///
/// # Errors
/// [`PluginError::NoPendingGate`], saying which gates of that stage the run has.
pub fn newest_pending<'a>(
    gates: &'a [ApprovalGate],
    run: &str,
    stage: GateStage,
) -> Result<&'a ApprovalGate, PluginError> {
    let of_stage: Vec<&ApprovalGate> = gates
        .iter()
        .filter(|g| g.spec.stage == stage && g.spec.run_ref.name == run)
        .collect();
    let newest = of_stage.iter().filter(|g| is_pending(g)).max_by_key(|g| {
        (
            g.metadata.creation_timestamp.as_ref().map(|t| t.0),
            g.metadata.name.clone(),
        )
    });
    if let Some(g) = newest {
        return Ok(g);
    }
    let why = if of_stage.is_empty() {
        match stage {
            GateStage::Question => " (it has asked nothing; does it set spec.approvals.questions?)".to_string(),
            GateStage::Plan => " (it has shown no plan; does it set spec.approvals.plan?)".to_string(),
            _ => String::new(),
        }
    } else {
        let list: Vec<String> = of_stage
            .iter()
            .map(|g| {
                let state = g.status.as_ref().and_then(|s| s.state).unwrap_or(GateState::Pending);
                format!("{} {}", g.metadata.name.as_deref().unwrap_or(""), state.as_str())
            })
            .collect();
        format!(" (its {} gates: {})", stage.as_str(), list.join(", "))
    };
    Err(PluginError::NoPendingGate {
        run: run.into(),
        stage: stage.as_str().into(),
        why,
    })
}

fn indented(label: &str, text: &str) -> String {
    let pad = " ".repeat(label.len());
    let mut out = String::new();
    for (i, l) in text.trim_end().lines().enumerate() {
        out.push_str(if i == 0 { label } else { &pad });
        out.push_str(l);
        out.push('\n');
    }
    if out.is_empty() {
        out = format!("{}\n", label.trim_end());
    }
    out
}

/// One gate in full, for `kubectl paddock gate`: name, run, stage, state (with its expiry),
/// approvers, what it asks — a `Question`'s question, its options numbered from 1 and the
/// answer; a `Plan`'s first [`PLAN_LINES`] lines (all with `full`); a tool call; a commit —,
/// the decisions, and the command that decides it.
pub fn describe_gate(g: &ApprovalGate, now: Timestamp, full: bool) -> String {
    let st = g.status.clone().unwrap_or_default();
    let r = &g.spec.request;
    let name = g.metadata.name.clone().unwrap_or_default();
    let run = &g.spec.run_ref.name;
    let state = st.state.unwrap_or(GateState::Pending);
    let mut out = format!("Name:       {name}\nRun:        {run}");
    if let Some(a) = g.spec.run_ref.attempt {
        out.push_str(&format!(" (attempt {a})"));
    }
    out.push_str(&format!(
        "\nStage:      {}\nState:      {}",
        g.spec.stage.as_str(),
        state.as_str()
    ));
    if let Some(by) = &st.decided_by {
        out.push_str(&format!(" by {by}"));
    }
    if state == GateState::Pending {
        if let Some(t) = &st.expires_at {
            let s = t.0.as_second() - now.as_second();
            out.push_str(&format!(" · expires in {}", human_duration(s.max(0))));
        }
    }
    let a = &g.spec.approvers;
    let who = if a.users.is_empty() && a.groups.is_empty() {
        "anyone RBAC lets patch the gate".to_string()
    } else {
        format!("users [{}], groups [{}]", a.users.join(", "), a.groups.join(", "))
    };
    out.push_str(&format!(
        "\nApprovers:  {who}; quorum {} ({} approval(s))\nAge:        {}\n",
        g.spec.quorum,
        st.approvals,
        age(g.metadata.creation_timestamp.as_ref(), now)
    ));
    match g.spec.stage {
        GateStage::Question => {
            out.push_str(&indented("Question:   ", r.question.as_deref().unwrap_or(&r.summary)));
            for (i, o) in r.options.iter().enumerate() {
                let label = if i == 0 { "Options:    " } else { "            " };
                out.push_str(&indented(&format!("{label}{}. ", i + 1), o));
            }
            if let Some(ans) = &st.answer {
                out.push_str(&indented("Answer:     ", ans));
            }
        }
        GateStage::Plan => {
            let plan = r.plan.as_deref().unwrap_or(&r.summary);
            let lines: Vec<&str> = plan.trim_end().lines().collect();
            let shown = if full { lines.len() } else { lines.len().min(PLAN_LINES) };
            if shown < lines.len() {
                out.push_str(&format!(
                    "Plan:       (first {shown} of {} lines; --full for all)\n",
                    lines.len()
                ));
            } else {
                out.push_str("Plan:\n");
            }
            for l in &lines[..shown] {
                out.push_str(&format!("  {l}\n"));
            }
            if let Some(c) = &st.answer {
                out.push_str(&indented("Changes:    ", c));
            }
        }
        _ => {
            out.push_str(&indented("Summary:    ", &r.summary));
            if let Some(t) = &r.tool {
                out.push_str(&format!("Tool:       {t}\n"));
            }
            if let Some(i) = &r.input {
                out.push_str(&indented("Input:      ", &clip_line(i, 400)));
            }
            if let Some(c) = &r.commit {
                out.push_str(&format!("Commit:     {c} {}\n", r.diffstat.as_deref().unwrap_or("")));
            }
        }
    }
    for (i, d) in g.spec.decisions.iter().enumerate() {
        let label = if i == 0 { "Decisions:  " } else { "            " };
        let mut line = format!("{} {:?}", d.approver, d.decision);
        if let Some(ans) = &d.answer {
            line.push_str(&format!(" answer {:?}", clip_line(ans, 200)));
        }
        if let Some(c) = &d.comment {
            line.push_str(&format!(" comment {:?}", clip_line(c, 200)));
        }
        out.push_str(&format!("{label}{line}\n"));
    }
    if state == GateState::Pending {
        let how = match g.spec.stage {
            GateStage::Question => {
                format!("kubectl paddock answer {run} \"…\" | --option N | --decline [-m \"…\"]   (--gate {name})")
            }
            GateStage::Plan => {
                format!("kubectl paddock approve {name} | reject {name} | request-changes {name} -m \"…\"")
            }
            GateStage::Pick => format!("kubectl paddock pick {run} <candidate>"),
            _ => format!("kubectl paddock approve {name} | reject {name}"),
        };
        out.push_str(&format!("Decide:     {how}\n"));
    }
    out
}

/// Parses `say --wait`'s timeout: a Go-style duration of whole numbers with units `ms`, `s`,
/// `m`, `h` (`90s`, `2m`, `1h30m`), or a bare number of seconds.
///
/// # Errors
/// A message naming the text that is not a duration.
pub fn parse_wait(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || format!("{s:?} is not a duration (e.g. 30s, 2m, 1h30m)");
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else {
            return Err(bad());
        };
        total += unit * u32::try_from(n).map_err(|_| bad())?;
        rest = &rest[len..];
    }
    Ok(total)
}

/// Sends `text` to run `run` in `ns` as `sender` (the caller, as the API server names them):
/// reads the run (it must exist and not have ended) and creates the [`new_message`]. Returns the
/// created message and a note for the person ([`check_can_message`]).
///
/// # Errors
/// [`PluginError::BadText`], [`PluginError::RunNotFound`], [`PluginError::RunEnded`], or the
/// API server's refusal (RBAC, the admission policy, the CRD).
pub async fn send_message(
    client: &Client,
    ns: &str,
    run: &str,
    sender: &str,
    text: &str,
) -> Result<(RunMessage, Option<String>), FetchError> {
    check_text("the message", text)?;
    let r = fetch_run(client, ns, run).await?;
    let note = check_can_message(&r)?;
    let api: Api<RunMessage> = Api::namespaced(client.clone(), ns);
    let created = api
        .create(&PostParams::default(), &new_message(run, sender, text))
        .await
        .map_err(|source| FetchError::Api {
            what: format!("creating a RunMessage for AgentRun {run:?}"),
            source,
        })?;
    Ok((created, note))
}

/// Reads RunMessage `name` every half second until it is delivered or refused, or `timeout`
/// passed; returns it as last read (still `Pending` after a timeout).
///
/// # Errors
/// The API server's refusal (or the message is gone).
pub async fn wait_for_delivery(
    client: &Client,
    ns: &str,
    name: &str,
    timeout: Duration,
) -> Result<RunMessage, FetchError> {
    let api: Api<RunMessage> = Api::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let m = api.get(name).await.map_err(|source| FetchError::Api {
            what: format!("reading RunMessage {name:?}"),
            source,
        })?;
        let now = tokio::time::Instant::now();
        if is_settled(&m) || now >= deadline {
            return Ok(m);
        }
        tokio::time::sleep((deadline - now).min(Duration::from_millis(500))).await;
    }
}

/// Appends decision `d` to gate `gate` in `ns` by JSON patch; returns the gate as updated.
///
/// # Errors
/// The API server's refusal (RBAC, CEL, the approval admission policy).
pub async fn append_decision(client: &Client, ns: &str, gate: &str, d: &Decision) -> Result<ApprovalGate, FetchError> {
    let api: Api<ApprovalGate> = Api::namespaced(client.clone(), ns);
    let what = || format!("appending your decision to ApprovalGate {gate:?}");
    let patch = serde_json::from_value(decision_patch(d)).map_err(|e| PluginError::BadText {
        what: what(),
        why: format!("is not a JSON patch: {e}"),
    })?;
    api.patch(gate, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(|source| FetchError::Api { what: what(), source })
}

#[cfg(test)]
mod tests;
