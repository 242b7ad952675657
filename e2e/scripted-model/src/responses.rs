//! OpenAI Responses API (`POST /v1/responses`), as Codex uses it.

use serde_json::{json, Value};

use crate::reply::{chunks, has_role, items, ParsedRequest, Reply};
use crate::script::Usage;
use crate::sse::{event, StreamPlan};
use crate::tools::OfferedTool;

/// Input item types produced by the model (they count towards assistant turns).
const ASSISTANT_ITEM_TYPES: &[&str] = &[
    "function_call",
    "custom_tool_call",
    "local_shell_call",
    "reasoning",
    "web_search_call",
];

fn is_assistant_item(item: &Value) -> bool {
    let kind = item.get("type").and_then(Value::as_str);
    if kind.is_some_and(|k| ASSISTANT_ITEM_TYPES.contains(&k)) {
        return true;
    }
    matches!(kind, None | Some("message")) && has_role(item, "assistant")
}

/// Parses the fields the server needs from a Responses request body. `input` may be a string
/// (no history) or a list of items; only `type: function` tools are offered tools.
pub fn parse(body: &Value) -> ParsedRequest {
    let tools = items(body, "tools")
        .iter()
        .filter(|t| t.get("type").and_then(Value::as_str).unwrap_or("function") == "function")
        .filter_map(|t| OfferedTool::from_json(t, &["parameters"]))
        .collect();
    let input = items(body, "input");
    ParsedRequest::from_body(body, tools, input.iter().map(is_assistant_item)).with_last_input(input, is_assistant_item)
}

fn usage_json(u: &Usage) -> Value {
    let input = u.input_tokens + u.cache_read_input_tokens;
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": u.cache_read_input_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input + u.output_tokens,
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The completed output items: an assistant `message` (if text) then a `function_call` (if a
/// tool call), with ids derived from `seq`.
fn output_items(reply: &Reply, seq: u64) -> Vec<Value> {
    let mut items = Vec::new();
    if let Some(text) = &reply.text {
        items.push(json!({
            "id": format!("msg_sm_{seq:06}"),
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }));
    }
    if let Some(tool) = &reply.tool {
        items.push(json!({
            "id": format!("fc_sm_{seq:06}"),
            "type": "function_call",
            "status": "completed",
            "call_id": format!("call_sm_{seq:06}"),
            "name": tool.name,
            "arguments": tool.arguments.to_string(),
        }));
    }
    items
}

fn response_object(reply: &Reply, model: &str, seq: u64, done: bool) -> Value {
    json!({
        "id": format!("resp_sm_{seq:06}"),
        "object": "response",
        "created_at": now(),
        "status": if done { "completed" } else { "in_progress" },
        "model": model,
        "output": if done { output_items(reply, seq) } else { vec![] },
        "usage": if done { usage_json(&reply.usage) } else { Value::Null },
    })
}

/// The non-streaming response body (a completed `response` object).
pub fn render_json(reply: &Reply, model: &str, seq: u64) -> Value {
    response_object(reply, model, seq, true)
}

/// The SSE stream: `response.created` and `response.in_progress` first, `response.in_progress`
/// as keepalive, then per output item `response.output_item.added`, its deltas
/// (`response.output_text.delta` / `response.function_call_arguments.delta`) and
/// `response.output_item.done`, and finally `response.completed` with usage.
pub fn render_stream(reply: &Reply, model: &str, seq: u64) -> StreamPlan {
    let mut n = 0u64;
    let mut next = || {
        n += 1;
        n - 1
    };
    let pending = response_object(reply, model, seq, false);
    let head = vec![
        event(
            "response.created",
            &json!({"type": "response.created", "sequence_number": next(), "response": pending}),
        ),
        event(
            "response.in_progress",
            &json!({"type": "response.in_progress", "sequence_number": next(), "response": pending}),
        ),
    ];
    let keepalive = event(
        "response.in_progress",
        &json!({"type": "response.in_progress", "response": pending}),
    );
    let mut tail = Vec::new();
    for (output_index, item) in output_items(reply, seq).into_iter().enumerate() {
        let id = item["id"].clone();
        let mut added = item.clone();
        added["status"] = json!("in_progress");
        if item["type"] == "message" {
            added["content"] = json!([]);
            let text = item["content"][0]["text"].as_str().unwrap_or_default().to_string();
            tail.push(event("response.output_item.added", &json!({"type": "response.output_item.added", "sequence_number": next(), "output_index": output_index, "item": added})));
            tail.push(event("response.content_part.added", &json!({"type": "response.content_part.added", "sequence_number": next(), "item_id": id, "output_index": output_index, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}})));
            for piece in chunks(&text, 24) {
                tail.push(event("response.output_text.delta", &json!({"type": "response.output_text.delta", "sequence_number": next(), "item_id": id, "output_index": output_index, "content_index": 0, "delta": piece})));
            }
            tail.push(event("response.output_text.done", &json!({"type": "response.output_text.done", "sequence_number": next(), "item_id": id, "output_index": output_index, "content_index": 0, "text": text})));
            tail.push(event("response.content_part.done", &json!({"type": "response.content_part.done", "sequence_number": next(), "item_id": id, "output_index": output_index, "content_index": 0, "part": item["content"][0]})));
        } else {
            added["arguments"] = json!("");
            let arguments = item["arguments"].as_str().unwrap_or_default().to_string();
            tail.push(event("response.output_item.added", &json!({"type": "response.output_item.added", "sequence_number": next(), "output_index": output_index, "item": added})));
            for piece in chunks(&arguments, 40) {
                tail.push(event("response.function_call_arguments.delta", &json!({"type": "response.function_call_arguments.delta", "sequence_number": next(), "item_id": id, "output_index": output_index, "delta": piece})));
            }
            tail.push(event("response.function_call_arguments.done", &json!({"type": "response.function_call_arguments.done", "sequence_number": next(), "item_id": id, "output_index": output_index, "arguments": arguments})));
        }
        tail.push(event("response.output_item.done", &json!({"type": "response.output_item.done", "sequence_number": next(), "output_index": output_index, "item": item})));
    }
    tail.push(event(
        "response.completed",
        &json!({"type": "response.completed", "sequence_number": next(),
                "response": response_object(reply, model, seq, true)}),
    ));
    StreamPlan { head, keepalive, tail }
}

/// An error body in OpenAI's shape; `kind` is e.g. `invalid_request_error`, `code` e.g.
/// `model_not_found`.
pub fn error_body(kind: &str, code: &str, message: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "param": "model", "code": code}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::ReplyKind;
    use crate::tools::ToolCall;
    use std::time::Duration;

    #[test]
    fn parse_counts_turns_not_items() {
        let body = json!({
            "model": "scripted-x", "stream": true,
            "tools": [{"type": "function", "name": "exec_command", "parameters": {}},
                      {"type": "custom", "name": "apply_patch"}, {"type": "web_search"}],
            "input": [
                {"type": "message", "role": "developer", "content": []},
                {"type": "message", "role": "user", "content": []},
                {"type": "message", "role": "assistant", "content": []},
                {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "ok"},
            ],
        });
        let p = parse(&body);
        assert_eq!(p.history_turns, 1);
        assert_eq!(p.tools.len(), 1);
        assert_eq!(p.tools[0].name, "exec_command");
        assert_eq!(parse(&json!({"input": "hi"})).history_turns, 0);
    }

    #[test]
    fn stream_has_items_and_usage() {
        let reply = Reply {
            kind: ReplyKind::Scripted(0),
            text: Some("Creating it.".into()),
            tool: Some(ToolCall {
                name: "exec_command".into(),
                arguments: json!({"cmd": "echo hi > x"}),
            }),
            usage: Usage::default(),
            sleep: Duration::ZERO,
        };
        let plan = render_stream(&reply, "m", 1);
        let frames: Vec<Value> = plan
            .head
            .iter()
            .chain(plan.tail.iter())
            .map(|f| serde_json::from_str(f.lines().nth(1).unwrap().strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        let seqs: Vec<u64> = frames.iter().map(|f| f["sequence_number"].as_u64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
        let done: Vec<&Value> = frames
            .iter()
            .filter(|f| f["type"] == "response.output_item.done")
            .collect();
        assert_eq!(done.len(), 2);
        assert_eq!(done[1]["item"]["name"], "exec_command");
        assert_eq!(done[1]["item"]["arguments"], r#"{"cmd":"echo hi > x"}"#);
        let completed = frames.last().unwrap();
        assert_eq!(completed["type"], "response.completed");
        assert_eq!(completed["response"]["usage"]["total_tokens"], 120);
    }
}
