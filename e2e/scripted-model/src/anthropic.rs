//! Anthropic Messages API (`POST /v1/messages`), as Claude Code uses it.

use serde_json::{json, Value};

use crate::reply::{chunks, has_role, items, ParsedRequest, Reply};
use crate::script::Usage;
use crate::sse::{event, StreamPlan};
use crate::tools::OfferedTool;

/// Parses the fields the server needs from a Messages request body. Missing fields read as
/// empty (model ""), `stream` false, no tools, no history).
pub fn parse(body: &Value) -> ParsedRequest {
    let tools = items(body, "tools")
        .iter()
        .filter_map(|t| OfferedTool::from_json(t, &["input_schema"]))
        .collect();
    let messages = items(body, "messages");
    let history = messages.iter().map(|m| has_role(m, "assistant"));
    ParsedRequest::from_body(body, tools, history).with_last_input(messages, |m| has_role(m, "assistant"))
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_creation_input_tokens,
        "cache_read_input_tokens": u.cache_read_input_tokens,
    })
}

fn stop_reason(reply: &Reply) -> &'static str {
    if reply.tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    }
}

/// The non-streaming response body (`type: message`). `seq` makes ids unique per server.
pub fn render_json(reply: &Reply, model: &str, seq: u64) -> Value {
    let mut content = Vec::new();
    if let Some(text) = &reply.text {
        content.push(json!({"type": "text", "text": text}));
    }
    if let Some(tool) = &reply.tool {
        content.push(json!({
            "type": "tool_use",
            "id": format!("toolu_sm_{seq:06}"),
            "name": tool.name,
            "input": tool.arguments,
        }));
    }
    json!({
        "id": format!("msg_sm_{seq:06}"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(reply),
        "stop_sequence": null,
        "usage": usage_json(&reply.usage),
    })
}

/// The SSE stream: `message_start` and `ping` first; `ping` as keepalive; then one
/// content block per text/tool_use (`content_block_start`, `*_delta`s, `content_block_stop`),
/// `message_delta` (stop reason and usage) and `message_stop`.
pub fn render_stream(reply: &Reply, model: &str, seq: u64) -> StreamPlan {
    let u = &reply.usage;
    let start_usage = json!({
        "input_tokens": u.input_tokens,
        "output_tokens": 1,
        "cache_creation_input_tokens": u.cache_creation_input_tokens,
        "cache_read_input_tokens": u.cache_read_input_tokens,
    });
    let head = vec![
        event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": format!("msg_sm_{seq:06}"),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": start_usage,
            }}),
        ),
        event("ping", &json!({"type": "ping"})),
    ];
    let mut tail = Vec::new();
    let mut index = 0;
    if let Some(text) = &reply.text {
        let deltas = chunks(text, 24)
            .into_iter()
            .map(|piece| json!({"type": "text_delta", "text": piece}));
        tail.extend(content_block(index, json!({"type": "text", "text": ""}), deltas));
        index += 1;
    }
    if let Some(tool) = &reply.tool {
        let block = json!({"type": "tool_use", "id": format!("toolu_sm_{seq:06}"), "name": tool.name, "input": {}});
        let deltas = chunks(&tool.arguments.to_string(), 40)
            .into_iter()
            .map(|piece| json!({"type": "input_json_delta", "partial_json": piece}));
        tail.extend(content_block(index, block, deltas));
    }
    tail.push(event(
        "message_delta",
        &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason(reply), "stop_sequence": null},
                "usage": usage_json(u)}),
    ));
    tail.push(event("message_stop", &json!({"type": "message_stop"})));
    StreamPlan {
        head,
        keepalive: event("ping", &json!({"type": "ping"})),
        tail,
    }
}

/// One content block of the stream: `content_block_start` with `block`, a
/// `content_block_delta` per delta, `content_block_stop`.
fn content_block(index: usize, block: Value, deltas: impl Iterator<Item = Value>) -> Vec<String> {
    let mut events = vec![event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": index, "content_block": block}),
    )];
    events.extend(deltas.map(|delta| {
        event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        )
    }));
    events.push(event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": index}),
    ));
    events
}

/// An error body in Anthropic's shape; `kind` is e.g. `invalid_request_error`, `not_found_error`.
pub fn error_body(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

/// A rough token count for `count_tokens`: request body bytes / 4, at least 1.
pub fn count_tokens(body_len: usize) -> Value {
    json!({"input_tokens": (body_len / 4).max(1)})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::ReplyKind;
    use crate::tools::ToolCall;
    use std::time::Duration;

    fn reply() -> Reply {
        Reply {
            kind: ReplyKind::Scripted(0),
            text: Some("Writing the file now, as asked.".into()),
            tool: Some(ToolCall {
                name: "Write".into(),
                arguments: json!({"file_path": "hello.txt", "content": "Hello\n"}),
            }),
            usage: Usage::default(),
            sleep: Duration::ZERO,
        }
    }

    #[test]
    fn parse_counts_assistant_messages_and_tools() {
        let body = json!({
            "model": "scripted-x", "stream": true,
            "tools": [{"name": "Write", "input_schema": {"type": "object"}}, {"type": "web_search_20250305", "name": "web_search"}],
            "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": [{"type": "tool_use"}]},
                {"role": "user", "content": [{"type": "tool_result"}]},
            ],
        });
        let p = parse(&body);
        assert_eq!(p.model, "scripted-x");
        assert!(p.stream);
        assert_eq!(p.tools.len(), 2);
        assert_eq!(p.history_turns, 1);
    }

    #[test]
    fn stream_reassembles_to_the_json_message() {
        let r = reply();
        let plan = render_stream(&r, "m", 7);
        let mut text = String::new();
        let mut partial = String::new();
        let mut events = Vec::new();
        for frame in plan.head.iter().chain(plan.tail.iter()) {
            let data = frame.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            let v: Value = serde_json::from_str(data).unwrap();
            events.push(v["type"].as_str().unwrap().to_string());
            match v["delta"]["type"].as_str() {
                Some("text_delta") => text.push_str(v["delta"]["text"].as_str().unwrap()),
                Some("input_json_delta") => partial.push_str(v["delta"]["partial_json"].as_str().unwrap()),
                _ => {}
            }
            if v["type"] == "message_delta" {
                assert_eq!(v["delta"]["stop_reason"], "tool_use");
                assert_eq!(v["usage"]["output_tokens"], 20);
            }
        }
        let whole = render_json(&r, "m", 7);
        assert_eq!(text, whole["content"][0]["text"]);
        assert_eq!(
            serde_json::from_str::<Value>(&partial).unwrap(),
            whole["content"][1]["input"]
        );
        assert_eq!(events.first().unwrap(), "message_start");
        assert_eq!(events.last().unwrap(), "message_stop");
        assert_eq!(events.iter().filter(|e| *e == "content_block_start").count(), 2);
    }
}
