//! The event writer: wraps each [`RunnerEvent`] in an [`EventLine`] (schema version, `seq` from
//! 1, RFC 3339 UTC timestamp with milliseconds), redacts every string field of the run's secret
//! values, truncates it, bounds the number of `log` events, and writes one compact JSON line
//! per event. Also renders the termination message.

use std::io::Write;

use paddock_crds::events::{redact, truncate, EventLine, RunResult, RunnerEvent, MAX_TEXT_BYTES, SCHEMA_VERSION};

/// Most `log` events one attempt emits; after these, one more says the rest were omitted.
pub const MAX_LOG_EVENTS: usize = 200;
/// Text of the `log` event that replaces the omitted lines.
pub const LOGS_OMITTED: &str = "…more lines omitted";
/// Longest `summary` (bytes) in a result.
pub const MAX_SUMMARY_BYTES: usize = 1024;
/// Largest termination message the kubelet keeps (bytes).
pub const MAX_TERMINATION_BYTES: usize = 4096;

/// Redacts `text` of `secrets`, then truncates it to [`MAX_TEXT_BYTES`] (in that order, so a
/// cut never leaves part of a secret).
pub fn clean(text: &str, secrets: &[String]) -> String {
    truncate(&redact(text, secrets), MAX_TEXT_BYTES)
}

/// Applies [`clean`] to every string field of `event` (the base64 `data` of a `patch` chunk is
/// left alone: the patch is redacted before it is compressed). A result's `summary` is cut to
/// [`MAX_SUMMARY_BYTES`]; the `plan` of an `approval_requested` event is redacted and cut to
/// [`crate::approval::MAX_PLAN_BYTES`] instead of [`MAX_TEXT_BYTES`].
pub fn sanitize(event: RunnerEvent, secrets: &[String]) -> RunnerEvent {
    let c = |s: String| clean(&s, secrets);
    match event {
        RunnerEvent::Step { step, status, message } => RunnerEvent::Step {
            step,
            status,
            message: c(message),
        },
        RunnerEvent::AgentStarted {
            agent,
            model,
            session_id,
        } => RunnerEvent::AgentStarted {
            agent: c(agent),
            model: model.map(c),
            session_id: session_id.map(c),
        },
        RunnerEvent::Message { text } => RunnerEvent::Message { text: c(text) },
        RunnerEvent::ToolCall { id, name, input } => RunnerEvent::ToolCall {
            id: c(id),
            name: c(name),
            input: c(input),
        },
        RunnerEvent::ToolResult { id, is_error, output } => RunnerEvent::ToolResult {
            id: c(id),
            is_error,
            output: c(output),
        },
        RunnerEvent::PermissionDenied { name, input } => RunnerEvent::PermissionDenied {
            name: c(name),
            input: c(input),
        },
        RunnerEvent::ApprovalRequested {
            id,
            stage,
            summary,
            tool,
            input,
            commit,
            diffstat,
            question,
            options,
            plan,
        } => RunnerEvent::ApprovalRequested {
            id: c(id),
            stage: c(stage),
            summary: c(summary),
            tool: tool.map(c),
            input: input.map(c),
            commit: commit.map(c),
            diffstat: diffstat.map(c),
            question: question.map(c),
            options: options.into_iter().map(c).collect(),
            // A plan is longer than other fields: the gate holds up to 32 KiB of it.
            plan: plan.map(|p| truncate(&redact(&p, secrets), crate::approval::MAX_PLAN_BYTES)),
        },
        RunnerEvent::MessageDelivered { id, turn } => RunnerEvent::MessageDelivered { id: c(id), turn },
        RunnerEvent::ApprovalDecided { id, verdict } => RunnerEvent::ApprovalDecided {
            id: c(id),
            verdict: c(verdict),
        },
        RunnerEvent::EgressDenied { host, port } => RunnerEvent::EgressDenied { host: c(host), port },
        RunnerEvent::Usage(u) => RunnerEvent::Usage(u),
        RunnerEvent::Error { message } => RunnerEvent::Error { message: c(message) },
        RunnerEvent::Log { stream, text } => RunnerEvent::Log {
            stream: c(stream),
            text: c(text),
        },
        RunnerEvent::Final { text, is_error } => RunnerEvent::Final {
            text: c(text),
            is_error,
        },
        RunnerEvent::Patch { index, total, data } => RunnerEvent::Patch { index, total, data },
        // Redacted before it was compressed, like the patch.
        RunnerEvent::Session {
            agent,
            session_id,
            path,
            index,
            total,
            data,
        } => RunnerEvent::Session {
            agent: clean(&agent, secrets),
            session_id: clean(&session_id, secrets),
            path: clean(&path, secrets),
            index,
            total,
            data,
        },
        RunnerEvent::Result(r) => RunnerEvent::Result(sanitize_result(r, secrets)),
    }
}

/// [`sanitize`] for a [`RunResult`].
pub fn sanitize_result(mut r: RunResult, secrets: &[String]) -> RunResult {
    r.reason = clean(&r.reason, secrets);
    r.message = clean(&r.message, secrets);
    r.branch = clean(&r.branch, secrets);
    r.summary = r.summary.map(|s| truncate(&redact(&s, secrets), MAX_SUMMARY_BYTES));
    r
}

/// The current time as RFC 3339, UTC, milliseconds (`2026-11-22T01:02:03.456Z`).
pub fn now_ts() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Writes sanitized, numbered event lines to `out` (stdout in the binary).
pub struct Emitter<W: Write> {
    out: W,
    seq: u64,
    secrets: Vec<String>,
    logs: usize,
    logs_omitted: bool,
}

impl<W: Write> Emitter<W> {
    /// An emitter redacting `secrets` (see [`crate::config::Env::secrets`]).
    pub fn new(out: W, secrets: Vec<String>) -> Self {
        Self {
            out,
            seq: 0,
            secrets,
            logs: 0,
            logs_omitted: false,
        }
    }

    /// The secret values this emitter redacts.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// Sanitizes and writes `event`; returns the line as written, or `None` when the event was
    /// dropped (a `log` beyond [`MAX_LOG_EVENTS`]). Write errors (a closed stdout) are ignored:
    /// the run goes on and the termination message still carries the result.
    pub fn emit(&mut self, event: RunnerEvent) -> Option<EventLine> {
        let event = match event {
            RunnerEvent::Log { stream, text } => {
                if self.logs >= MAX_LOG_EVENTS {
                    if self.logs_omitted {
                        return None;
                    }
                    self.logs_omitted = true;
                    RunnerEvent::Log {
                        stream,
                        text: LOGS_OMITTED.to_string(),
                    }
                } else {
                    self.logs += 1;
                    RunnerEvent::Log { stream, text }
                }
            }
            other => other,
        };
        self.seq += 1;
        let line = EventLine {
            v: SCHEMA_VERSION,
            seq: self.seq,
            ts: now_ts(),
            event: sanitize(event, &self.secrets),
        };
        if let RunnerEvent::Step { step, status, message } = &line.event {
            crate::telemetry::on_step(*step, *status, message);
        }
        if let Ok(json) = serde_json::to_string(&line) {
            let _ = writeln!(self.out, "{json}");
            let _ = self.out.flush();
        }
        Some(line)
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Renders `lines` as a termination message, one compact JSON line each as [`Emitter::emit`]
/// writes them: the whole event stream of a short step (the `clone` container's), which the
/// operator then takes from the pod's status instead of reading the container's log. `None`
/// when they exceed [`MAX_TERMINATION_BYTES`] (the kubelet would cut them; the operator then
/// reads the log).
pub fn events_message<'a>(lines: impl IntoIterator<Item = &'a EventLine>) -> Option<String> {
    let text = lines
        .into_iter()
        .map(serde_json::to_string)
        .collect::<Result<Vec<_>, _>>()
        .ok()?
        .join("\n");
    (!text.is_empty() && text.len() <= MAX_TERMINATION_BYTES).then_some(text)
}

/// Renders the termination message for a `result` line: the same compact JSON, without
/// `summary` when the line exceeds [`MAX_TERMINATION_BYTES`], and with `message` cut further
/// if it still does. Readers may parse it as an [`EventLine`] or directly as a [`RunResult`].
pub fn termination_message(line: &EventLine) -> String {
    let json = serde_json::to_string(line).unwrap_or_default();
    let RunnerEvent::Result(result) = &line.event else {
        return json;
    };
    if json.len() <= MAX_TERMINATION_BYTES {
        return json;
    }
    let render = |r: &RunResult| {
        serde_json::to_string(&EventLine {
            event: RunnerEvent::Result(r.clone()),
            ..line.clone()
        })
        .unwrap_or_default()
    };
    let mut r = result.clone();
    r.summary = None;
    let mut json = render(&r);
    // JSON escaping can grow the message up to 6x (\u00XX); halve the budget until it fits.
    let mut budget = MAX_TERMINATION_BYTES
        .saturating_sub(json.len().saturating_sub(r.message.len()))
        .min(r.message.len());
    while json.len() > MAX_TERMINATION_BYTES {
        r.message = truncate(&result.message, budget);
        json = render(&r);
        if budget == 0 {
            break;
        }
        budget /= 2;
    }
    json
}

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_crds::events::{parse_line, Outcome, Usage};

    fn lines(buf: &[u8]) -> Vec<EventLine> {
        String::from_utf8(buf.to_vec())
            .unwrap()
            .lines()
            .map(|l| parse_line(l).expect(l))
            .collect()
    }

    /// A plan keeps up to 32 KiB (redacted); the other fields of the event the usual 4 KiB.
    #[test]
    fn plans_are_cut_at_their_own_bound() {
        let secrets = vec!["s3cr3t-value".to_string()];
        let long = format!("uses s3cr3t-value {}", "p".repeat(40 * 1024));
        let ev = sanitize(
            RunnerEvent::ApprovalRequested {
                id: "plan-1".into(),
                stage: "Plan".into(),
                summary: long.clone(),
                tool: None,
                input: None,
                commit: None,
                diffstat: None,
                question: Some(long.clone()),
                options: vec![],
                plan: Some(long),
            },
            &secrets,
        );
        let RunnerEvent::ApprovalRequested {
            summary,
            question,
            plan,
            ..
        } = ev
        else {
            panic!()
        };
        let plan = plan.unwrap();
        assert!(plan.len() <= crate::approval::MAX_PLAN_BYTES && plan.len() > 30 * 1024);
        assert!(plan.starts_with("uses [REDACTED] ppp"), "{}", &plan[..40]);
        assert!(summary.len() <= MAX_TEXT_BYTES && question.unwrap().len() <= MAX_TEXT_BYTES);
    }

    #[test]
    fn numbers_redacts_and_truncates() {
        let mut e = Emitter::new(Vec::new(), vec!["sk-secret-1".to_string()]);
        e.emit(RunnerEvent::Message {
            text: "key sk-secret-1 here".into(),
        });
        e.emit(RunnerEvent::ToolCall {
            id: "1".into(),
            name: "Bash".into(),
            input: "x".repeat(10_000),
        });
        let out = e.into_inner();
        assert!(!String::from_utf8_lossy(&out).contains("sk-secret-1"));
        let ls = lines(&out);
        assert_eq!(ls.len(), 2);
        assert_eq!((ls[0].seq, ls[1].seq), (1, 2));
        assert_eq!(
            ls[0].event,
            RunnerEvent::Message {
                text: "key [REDACTED] here".into()
            }
        );
        match &ls[1].event {
            RunnerEvent::ToolCall { input, .. } => {
                assert!(input.len() <= MAX_TEXT_BYTES && input.ends_with("[truncated]"))
            }
            other => panic!("{other:?}"),
        }
        assert!(chrono::DateTime::parse_from_rfc3339(&ls[0].ts).is_ok());
        assert!(ls[0].ts.ends_with('Z') && ls[0].ts.len() == 24, "{}", ls[0].ts);
    }

    #[test]
    fn bounds_log_events() {
        let mut e = Emitter::new(Vec::new(), vec![]);
        for i in 0..500 {
            e.emit(RunnerEvent::Log {
                stream: "stdout".into(),
                text: format!("line {i}"),
            });
        }
        e.emit(RunnerEvent::Message { text: "after".into() });
        let ls = lines(&e.into_inner());
        assert_eq!(ls.len(), MAX_LOG_EVENTS + 2);
        assert_eq!(
            ls[MAX_LOG_EVENTS].event,
            RunnerEvent::Log {
                stream: "stdout".into(),
                text: LOGS_OMITTED.into()
            }
        );
        assert_eq!(ls.last().unwrap().seq, (MAX_LOG_EVENTS + 2) as u64);
    }

    #[test]
    fn a_short_steps_events_are_its_termination_message_when_they_fit() {
        let mut em = Emitter::new(Vec::new(), vec![]);
        let step = |message: String| RunnerEvent::Step {
            step: paddock_crds::events::Step::Clone,
            status: paddock_crds::events::StepStatus::Succeeded,
            message,
        };
        let lines: Vec<EventLine> = [em.emit(step("a".into())), em.emit(step("b".into()))]
            .into_iter()
            .flatten()
            .collect();
        let printed = String::from_utf8(em.into_inner()).unwrap();
        // Exactly what was printed.
        assert_eq!(events_message(&lines).as_deref(), Some(printed.trim_end()));
        // Over the kubelet's 4096 bytes: none (the operator reads the log).
        let mut em = Emitter::new(Vec::new(), vec![]);
        let big: Vec<EventLine> = (0..3).filter_map(|_| em.emit(step("x".repeat(2000)))).collect();
        assert_eq!(events_message(&big), None);
        assert_eq!(events_message(&[]), None);
    }

    #[test]
    fn termination_message_fits() {
        let r = RunResult {
            outcome: Outcome::Failed,
            reason: "AgentFailed".into(),
            message: "\u{1}".repeat(4000),
            failed_step: Some("agent".into()),
            commit: None,
            branch: "b".into(),
            pushed: false,
            files_changed: 0,
            insertions: 0,
            deletions: 0,
            summary: Some("s".repeat(1000)),
            usage: Usage::default(),
            patch_bytes: 0,
            patch_truncated: false,
            exit_code: Some(1),
        };
        let line = EventLine {
            v: 1,
            seq: 9,
            ts: now_ts(),
            event: RunnerEvent::Result(r.clone()),
        };
        let t = termination_message(&line);
        assert!(t.len() <= MAX_TERMINATION_BYTES, "{}", t.len());
        let back: RunResult = serde_json::from_str(&t).unwrap();
        assert_eq!(back.summary, None);
        assert_eq!(back.reason, "AgentFailed");
        // A small result is kept whole, summary included.
        let small = EventLine {
            event: RunnerEvent::Result(RunResult {
                message: "m".into(),
                ..r
            }),
            ..line
        };
        let t = termination_message(&small);
        assert_eq!(parse_line(&t), Some(small));
    }
}
