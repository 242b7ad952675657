//! OpenAI Chat Completions (`POST /v1/chat/completions`), for other OpenAI-compatible CLIs.

use serde_json::{json, Value};

use crate::reply::{chunks, has_role, items, ParsedRequest, Reply};
use crate::script::Usage;
use crate::sse::{comment, data, StreamPlan};
use crate::tools::OfferedTool;

/// Parses the fields the server needs from a Chat Completions body (`tools[].function`).
pub fn parse(body: &Value) -> ParsedRequest {
    let tools = items(body, "tools")
        .iter()
        .filter_map(|t| OfferedTool::from_json(t.get("function")?, &["parameters"]))
        .collect();
    let messages = items(body, "messages");
    let history = messages.iter().map(|m| has_role(m, "assistant"));
    ParsedRequest::from_body(body, tools, history).with_last_input(messages, |m| has_role(m, "assistant"))
}

/// The text of a message's `content`: a string, or the `text` of its parts when it is a list.
fn content_text(m: &Value) -> String {
    match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// For text requests (no tools; see [`crate::script::Script::text_turn`]): the `system`
/// messages' text joined with newlines, and each `assistant` message's text, in order.
pub fn text_history(body: &Value) -> (String, Vec<String>) {
    let of_role = |role: &str| {
        items(body, "messages")
            .iter()
            .filter(|m| has_role(m, role))
            .map(content_text)
            .collect::<Vec<_>>()
    };
    (of_role("system").join("\n"), of_role("assistant"))
}

fn usage_json(u: &Usage) -> Value {
    let prompt = u.input_tokens + u.cache_read_input_tokens;
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": u.output_tokens,
        "total_tokens": prompt + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read_input_tokens},
    })
}

fn finish_reason(reply: &Reply) -> &'static str {
    if reply.tool.is_some() {
        "tool_calls"
    } else {
        "stop"
    }
}

fn tool_calls(reply: &Reply, seq: u64) -> Option<Value> {
    reply.tool.as_ref().map(|t| {
        json!([{
            "index": 0,
            "id": format!("call_sm_{seq:06}"),
            "type": "function",
            "function": {"name": t.name, "arguments": t.arguments.to_string()},
        }])
    })
}

/// The non-streaming `chat.completion` body.
pub fn render_json(reply: &Reply, model: &str, seq: u64) -> Value {
    let mut message = json!({"role": "assistant", "content": reply.text});
    if let Some(calls) = tool_calls(reply, seq) {
        message["tool_calls"] = calls;
    }
    json!({
        "id": format!("chatcmpl-sm-{seq:06}"),
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(reply)}],
        "usage": usage_json(&reply.usage),
    })
}

/// The SSE stream of `chat.completion.chunk`s: role, text deltas, one tool-call delta, a final
/// chunk with `finish_reason` and `usage`, then `data: [DONE]`. Keepalive is an SSE comment.
pub fn render_stream(reply: &Reply, model: &str, seq: u64) -> StreamPlan {
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({
            "id": format!("chatcmpl-sm-{seq:06}"),
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let head = vec![data(
        &chunk(json!({"role": "assistant", "content": ""}), None).to_string(),
    )];
    let mut tail = Vec::new();
    if let Some(text) = &reply.text {
        for piece in chunks(text, 24) {
            tail.push(data(&chunk(json!({"content": piece}), None).to_string()));
        }
    }
    if let Some(calls) = tool_calls(reply, seq) {
        tail.push(data(&chunk(json!({"tool_calls": calls}), None).to_string()));
    }
    let mut last = chunk(json!({}), Some(finish_reason(reply)));
    last["usage"] = usage_json(&reply.usage);
    tail.push(data(&last.to_string()));
    tail.push(data("[DONE]"));
    StreamPlan {
        head,
        keepalive: comment("keepalive"),
        tail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::ReplyKind;
    use crate::tools::ToolCall;
    use std::time::Duration;

    #[test]
    fn parse_and_render() {
        let body = json!({"model": "scripted-a", "stream": true,
            "tools": [{"type": "function", "function": {"name": "run_shell_command", "parameters": {}}}],
            "messages": [{"role": "system"}, {"role": "user"}, {"role": "assistant"}, {"role": "tool"}]});
        let p = parse(&body);
        assert_eq!((p.history_turns, p.tools.len(), p.stream), (1, 1, true));
        let reply = Reply {
            kind: ReplyKind::Scripted(1),
            text: None,
            tool: Some(ToolCall {
                name: "run_shell_command".into(),
                arguments: json!({"command": "ls"}),
            }),
            usage: Usage::default(),
            sleep: Duration::ZERO,
        };
        let j = render_json(&reply, "m", 3);
        assert_eq!(j["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            j["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            r#"{"command":"ls"}"#
        );
        let plan = render_stream(&reply, "m", 3);
        assert_eq!(plan.tail.last().unwrap(), "data: [DONE]\n\n");
        assert!(plan.tail[plan.tail.len() - 2].contains(r#""total_tokens":120"#));
    }

    #[test]
    fn text_history_collects_system_and_assistant_text() {
        let body = json!({"messages": [
            {"role": "system", "content": "Act as"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Ok."},
            {"role": "system", "content": [{"type": "text", "text": "reminder"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        ]});
        assert_eq!(
            text_history(&body),
            (
                "Act as\nreminder".to_string(),
                vec!["Ok.".to_string(), "a\nb".to_string()]
            )
        );
    }
}
