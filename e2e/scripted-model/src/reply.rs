//! Protocol-independent planning of one answer: which turn to play and what it contains.

use std::time::Duration;

use serde_json::Value;

use crate::script::{Script, Usage};
use crate::tools::{resolve, OfferedTool, ToolCall};

/// The text answered to side requests (requests that offer no tools: titles, summaries,
/// commit messages, quota probes). It does not consume a scripted turn.
pub const SIDE_TEXT: &str = "Scripted session";

/// What a request is parsed into, whatever its protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRequest {
    /// The `model` field (empty when absent).
    pub model: String,
    /// Whether the client asked for SSE streaming.
    pub stream: bool,
    /// Tools offered by the request, in order.
    pub tools: Vec<OfferedTool>,
    /// Assistant turns already in the history (runs of consecutive assistant items).
    pub history_turns: usize,
    /// The text of the newest history item that is not the assistant's (a user message, a
    /// tool result, or what a CLI inserted between turns), its strings joined by newlines: what
    /// `{{last_input}}` in a turn's text stands for ([`LAST_INPUT`]). Empty without history.
    pub last_input: String,
}

impl ParsedRequest {
    /// A request of an API that names the model and the streaming choice in the body (`model`,
    /// `stream`; every one but Gemini's), offering `tools`; `history` says for each history item
    /// whether it is the assistant's.
    pub fn from_body(body: &Value, tools: Vec<OfferedTool>, history: impl IntoIterator<Item = bool>) -> ParsedRequest {
        ParsedRequest {
            model: body
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
            tools,
            history_turns: count_assistant_turns(history),
            last_input: String::new(),
        }
    }

    /// Sets [`ParsedRequest::last_input`] from `history` (the request's history items), the
    /// newest item for which `is_assistant` is false.
    pub fn with_last_input(mut self, history: &[Value], is_assistant: impl Fn(&Value) -> bool) -> ParsedRequest {
        self.last_input = history
            .iter()
            .rev()
            .find(|item| !is_assistant(item))
            .map(strings_of)
            .unwrap_or_default();
        self
    }
}

/// The placeholder a turn's text may hold for the request's [`ParsedRequest::last_input`], so
/// a script can show what reached the model (a message sent mid-run, a tool's result).
pub const LAST_INPUT: &str = "{{last_input}}";
/// Longest text (characters) that [`LAST_INPUT`] expands to.
pub const LAST_INPUT_MAX_CHARS: usize = 2000;

/// Keys whose string values are identifiers or markup, not text.
const NOT_TEXT_KEYS: &[&str] = &["type", "id", "tool_use_id", "call_id", "role", "name", "cache_control"];

/// The string values in `v` (recursively, in order, skipping [`NOT_TEXT_KEYS`]) joined by
/// newlines.
pub fn strings_of(v: &Value) -> String {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(m) => m
                .iter()
                .filter(|(k, _)| !NOT_TEXT_KEYS.contains(&k.as_str()))
                .for_each(|(_, x)| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out.join("\n")
}

/// The items of the list `v[key]`; none when it is absent or not a list.
pub fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Whether the history item `item` has the role `role`.
pub fn has_role(item: &Value, role: &str) -> bool {
    item.get("role").and_then(Value::as_str) == Some(role)
}

/// Which kind of answer a [`Reply`] is, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// A side request without tools; no turn consumed.
    Side,
    /// Scripted turn `index` (0-based).
    Scripted(usize),
    /// Past the script's end (`index` = history turns); answers the final text.
    Final(usize),
}

/// One planned answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The kind of answer.
    pub kind: ReplyKind,
    /// Assistant text, if any.
    pub text: Option<String>,
    /// The tool call, if any (then the stop reason is "tool use").
    pub tool: Option<ToolCall>,
    /// Reported token usage.
    pub usage: Usage,
    /// Delay before the content.
    pub sleep: Duration,
}

impl Reply {
    /// The short plain-text answer to a side request.
    pub fn side() -> Reply {
        Reply {
            kind: ReplyKind::Side,
            text: Some(SIDE_TEXT.to_string()),
            tool: None,
            usage: Usage::side_request(),
            sleep: Duration::ZERO,
        }
    }

    /// A one-line description for the request log: `tool=<name>`, `text`, or `side`.
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            ReplyKind::Side => "side".to_string(),
            ReplyKind::Scripted(i) => format!("turn={i}"),
            ReplyKind::Final(i) => format!("turn={i}(final)"),
        };
        let choice = match &self.tool {
            Some(t) => format!("tool={}", t.name),
            None => "tool=none".to_string(),
        };
        format!("{kind} {choice} sleep_ms={}", self.sleep.as_millis())
    }
}

/// Counts the assistant turns in a history given, for each item in order, whether it is an
/// assistant item. Consecutive assistant items (e.g. a text message followed by a function
/// call) form one turn.
pub fn count_assistant_turns(is_assistant: impl IntoIterator<Item = bool>) -> usize {
    let mut turns = 0;
    let mut previous = false;
    for a in is_assistant {
        if a && !previous {
            turns += 1;
        }
        previous = a;
    }
    turns
}

/// Plans the answer to a request with tools, playing turn `history_turns` of `script`.
/// When the turn's action matches no offered tool, the answer is a text explaining that
/// (and ends the turn), so the mismatch shows in the CLI's output.
///
/// [`LAST_INPUT`] in the turn's text is replaced by `last_input` (at most
/// [`LAST_INPUT_MAX_CHARS`] characters).
pub fn plan(script: &Script, history_turns: usize, offered: &[OfferedTool], last_input: &str) -> Reply {
    let Some(turn) = script.turn(history_turns) else {
        return Reply {
            kind: ReplyKind::Final(history_turns),
            text: Some(script.final_text.clone()),
            tool: None,
            usage: Usage {
                output_tokens: 5,
                ..Usage::default()
            },
            sleep: Duration::ZERO,
        };
    };
    let mut text = turn.text.as_ref().map(|t| {
        let quoted: String = last_input.chars().take(LAST_INPUT_MAX_CHARS).collect();
        t.replace(LAST_INPUT, &quoted)
    });
    let tool = match turn.tool.as_ref().map(|a| resolve(a, offered)) {
        None => None,
        Some(Ok(call)) => Some(call),
        Some(Err(reason)) => {
            tracing::warn!("{reason}");
            text = Some(match text {
                Some(t) => format!("{t}\n{reason}"),
                None => reason,
            });
            None
        }
    };
    Reply {
        kind: ReplyKind::Scripted(history_turns),
        text,
        tool,
        usage: turn.usage.unwrap_or_default(),
        sleep: Duration::from_millis(turn.sleep_ms.unwrap_or(0)),
    }
}

/// Splits `s` into pieces of at most `n` characters (at least one piece, possibly empty), so
/// text arrives in several deltas like a real stream.
pub fn chunks(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::Script;
    use serde_json::json;

    #[test]
    fn counts_runs_of_assistant_items() {
        assert_eq!(count_assistant_turns([]), 0);
        assert_eq!(count_assistant_turns([false]), 0);
        assert_eq!(count_assistant_turns([false, true, false]), 1);
        assert_eq!(count_assistant_turns([false, true, true, false, true]), 2);
        assert_eq!(count_assistant_turns([true, false, true, true]), 2);
    }

    #[test]
    fn plans_turns_then_final_text() {
        let s = Script::parse(
            "t",
            "t.json",
            r#"[{"text":"a","tool":{"shell":"ls"},"sleep_ms":3},{"text":"b"}]"#,
        )
        .unwrap();
        let bash = vec![OfferedTool {
            name: "Bash".into(),
            schema: json!({"properties": {"command": {}}}),
        }];
        let r0 = plan(&s, 0, &bash, "");
        assert_eq!(r0.kind, ReplyKind::Scripted(0));
        assert_eq!(r0.tool.as_ref().unwrap().name, "Bash");
        assert_eq!(r0.sleep, Duration::from_millis(3));
        let r1 = plan(&s, 1, &bash, "");
        assert_eq!((r1.text.as_deref(), r1.tool.is_none()), (Some("b"), true));
        let r2 = plan(&s, 2, &bash, "");
        assert_eq!(r2.kind, ReplyKind::Final(2));
        assert_eq!(r2.text.as_deref(), Some("Done."));
        // No usable tool: the reason becomes text and no call is made.
        let r = plan(&s, 0, &[], "");
        assert!(r.tool.is_none());
        assert!(r.text.unwrap().contains("no tool for action shell"));
    }

    #[test]
    fn last_input_is_the_newest_item_not_the_assistants_and_fills_the_placeholder() {
        let body = json!({"messages": [
            {"role": "user", "content": "start"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "x", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "keep v2"}]}]},
            {"role": "system", "content": [{"type": "text", "text": "The user sent: ALSO"}]},
        ]});
        let p = crate::anthropic::parse(&body);
        assert_eq!(p.last_input, "The user sent: ALSO");
        let s = Script::parse("t", "t.json", r#"[{"text":"heard <{{last_input}}>"}]"#).unwrap();
        let r = plan(&s, 0, &[], &p.last_input);
        assert_eq!(r.text.as_deref(), Some("heard <The user sent: ALSO>"));
        let gemini = json!({"contents": [
            {"role": "model", "parts": [{"functionCall": {"name": "ask_human", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "ask_human", "response": {"output": "the answer"}}}]},
        ]});
        assert_eq!(
            crate::gemini::parse(&gemini, "m", "streamGenerateContent").last_input,
            "the answer"
        );
    }

    #[test]
    fn a_call_names_an_offered_tool_exactly_or_by_its_mcp_suffix() {
        let s = Script::parse(
            "t",
            "t.json",
            r#"[{"tool":{"call":{"name":"ask_human","input":{"question":"q?"}}}},{"tool":{"call":{"name":"ExitPlanMode"}}}]"#,
        )
        .unwrap();
        let offered = vec![
            OfferedTool {
                name: "Bash".into(),
                schema: Value::Null,
            },
            OfferedTool {
                name: "mcp__paddock__ask_human".into(),
                schema: Value::Null,
            },
        ];
        let r = plan(&s, 0, &offered, "");
        let call = r.tool.unwrap();
        assert_eq!(
            (call.name.as_str(), call.arguments),
            ("mcp__paddock__ask_human", json!({"question": "q?"}))
        );
        let r = plan(&s, 1, &offered, "");
        assert!(r.tool.is_none());
        assert!(r.text.unwrap().contains("no tool for action call:ExitPlanMode"));
    }

    #[test]
    fn chunks_keep_all_characters() {
        assert_eq!(chunks("", 3), vec![""]);
        assert_eq!(chunks("héllo", 2), vec!["hé", "ll", "o"]);
    }
}
