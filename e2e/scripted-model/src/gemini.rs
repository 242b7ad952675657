//! Google Gemini API (`POST /v1beta/models/<model>:streamGenerateContent?alt=sse` and
//! `:generateContent`), as Gemini CLI uses it.
//!
//! Unlike the other APIs the model name and the streaming choice come from the URL path
//! (`…/models/scripted-edit-file:streamGenerateContent`), not from the body. The body holds
//! `contents` (the history: `role` `user` or `model`, each with `parts`) and `tools`
//! (`[{"functionDeclarations": [{name, parameters | parametersJsonSchema}]}]`). Answers are
//! `GenerateContentResponse`s: `candidates[0].content.parts` (`text`, `functionCall {id, name,
//! args}`), `finishReason` `STOP` and `usageMetadata`.

use axum::http::StatusCode;
use serde_json::{json, Map, Value};

use crate::reply::{chunks, count_assistant_turns, has_role, items, ParsedRequest, Reply};
use crate::script::Usage;
use crate::sse::{data, StreamPlan};
use crate::tools::OfferedTool;

/// The `streamGenerateContent` method: SSE (with `?alt=sse`), one `GenerateContentResponse` per
/// `data:` frame.
pub const STREAM_METHOD: &str = "streamGenerateContent";
/// The `generateContent` method: one JSON `GenerateContentResponse`.
pub const JSON_METHOD: &str = "generateContent";
/// The `countTokens` method: `{"totalTokens": n}`.
pub const COUNT_METHOD: &str = "countTokens";

/// Splits the last path segment `<model>:<method>` (a `models/` prefix is not part of it:
/// the route already matched `/v1beta/models/`). `None` when there is no `:`.
pub fn split_model_method(segment: &str) -> Option<(&str, &str)> {
    segment.rsplit_once(':')
}

/// Parses a `generateContent`/`streamGenerateContent` request: `model` and `method` from the
/// path (see [`split_model_method`]), the offered tools from every `tools[].functionDeclarations[]`
/// (schema `parametersJsonSchema`, else `parameters`), the assistant turns from the runs of
/// `contents[]` items with `role: model`.
pub fn parse(body: &Value, model: &str, method: &str) -> ParsedRequest {
    let tools = items(body, "tools")
        .iter()
        .flat_map(|t| items(t, "functionDeclarations"))
        .filter_map(|f| OfferedTool::from_json(f, &["parametersJsonSchema", "parameters"]))
        .collect();
    let history = items(body, "contents").iter().map(|c| has_role(c, "model"));
    ParsedRequest {
        model: model.to_string(),
        stream: method == STREAM_METHOD,
        tools,
        history_turns: count_assistant_turns(history),
        last_input: String::new(),
    }
    .with_last_input(items(body, "contents"), |c| has_role(c, "model"))
}

/// Whether the request asks for a JSON answer (`generationConfig.responseMimeType` is
/// `application/json`), as Gemini CLI's internal checks (e.g. the next-speaker check) do.
pub fn wants_json(body: &Value) -> bool {
    body.pointer("/generationConfig/responseMimeType")
        .and_then(Value::as_str)
        == Some("application/json")
}

/// The JSON text answered to a side request that asks for JSON: an object with every property
/// of the requested schema (`responseJsonSchema` or `responseSchema`) set to a placeholder
/// (the first `enum` value, else a string, number, boolean, list or object), so the CLI's own
/// parsing succeeds. For Gemini CLI's next-speaker check (`reasoning`, `next_speaker` enum
/// `user`/`model`) this is `next_speaker: "user"`: the CLI does not continue on its own.
pub fn side_json(body: &Value) -> String {
    let schema = body
        .pointer("/generationConfig/responseJsonSchema")
        .or_else(|| body.pointer("/generationConfig/responseSchema"))
        .cloned()
        .unwrap_or(Value::Null);
    placeholder(&schema).to_string()
}

fn placeholder(schema: &Value) -> Value {
    if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    let kind = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("object")
        .to_ascii_lowercase();
    match kind.as_str() {
        "string" => json!("Scripted session"),
        "number" | "integer" => json!(0),
        "boolean" => json!(false),
        "array" => json!([]),
        _ => {
            let mut out = Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    out.insert(k.clone(), placeholder(v));
                }
            }
            Value::Object(out)
        }
    }
}

/// `usageMetadata` with the figures the other APIs report for the same turn: prompt = input +
/// cache reads (Gemini counts cached tokens in `promptTokenCount`), candidates = output,
/// total = their sum; `cachedContentTokenCount` only when non-zero (as Gemini omits it).
pub fn usage_json(u: &Usage) -> Value {
    let prompt = u.input_tokens + u.cache_read_input_tokens;
    let mut v = json!({
        "promptTokenCount": prompt,
        "candidatesTokenCount": u.output_tokens,
        "totalTokenCount": prompt + u.output_tokens,
    });
    if u.cache_read_input_tokens > 0 {
        v["cachedContentTokenCount"] = json!(u.cache_read_input_tokens);
    }
    v
}

fn function_call_part(reply: &Reply, seq: u64) -> Option<Value> {
    reply.tool.as_ref().map(|t| {
        json!({"functionCall": {
            "id": format!("call_sm_{seq:06}"),
            "name": t.name,
            "args": t.arguments,
        }})
    })
}

fn response(parts: Vec<Value>, finish: bool, usage: Option<&Usage>, model: &str, seq: u64) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if finish {
        candidate["finishReason"] = json!("STOP");
    }
    let mut v = json!({
        "candidates": [candidate],
        "modelVersion": model,
        "responseId": format!("resp_sm_{seq:06}"),
    });
    if let Some(u) = usage {
        v["usageMetadata"] = usage_json(u);
    }
    v
}

/// The non-streaming `GenerateContentResponse`: one candidate with a `text` part (if text) and
/// a `functionCall` part (if a tool call), `finishReason: STOP`, `usageMetadata`.
pub fn render_json(reply: &Reply, model: &str, seq: u64) -> Value {
    let mut parts = Vec::new();
    if let Some(text) = &reply.text {
        parts.push(json!({"text": text}));
    }
    parts.extend(function_call_part(reply, seq));
    response(parts, true, Some(&reply.usage), model, seq)
}

/// The SSE stream (`data: <GenerateContentResponse>` frames, no `[DONE]`): one frame per text
/// piece, then a last frame with the `functionCall` part (if any; else an empty text part),
/// `finishReason: STOP` and `usageMetadata`. Nothing is sent before the turn's sleep; the
/// keepalive is `data: {"candidates":[]}`, which Gemini CLI skips (the SDK's parser only
/// accepts `data:` frames: an SSE comment would stall it).
pub fn render_stream(reply: &Reply, model: &str, seq: u64) -> StreamPlan {
    let mut tail = Vec::new();
    if let Some(text) = &reply.text {
        for piece in chunks(text, 24) {
            tail.push(data(
                &response(vec![json!({"text": piece})], false, None, model, seq).to_string(),
            ));
        }
    }
    let last_parts = match function_call_part(reply, seq) {
        Some(part) => vec![part],
        None => vec![json!({"text": ""})],
    };
    tail.push(data(
        &response(last_parts, true, Some(&reply.usage), model, seq).to_string(),
    ));
    StreamPlan {
        head: Vec::new(),
        keepalive: data(&json!({"candidates": []}).to_string()),
        tail,
    }
}

/// A rough token count for `countTokens`: request body bytes / 4, at least 1.
pub fn count_tokens(body_len: usize) -> Value {
    json!({"totalTokens": (body_len / 4).max(1)})
}

/// Google's status name for an HTTP status (`google.rpc.Code`), as in Gemini error bodies.
fn status_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

/// An error body in Google's shape: `{"error": {"code", "message", "status"}}`.
pub fn error_body(status: StatusCode, message: &str) -> Value {
    json!({"error": {"code": status.as_u16(), "message": message, "status": status_name(status)}})
}

/// The query string without its `key=` parameter (the Gemini API accepts the key there too),
/// so it can be logged; `None` when nothing is left.
pub fn query_without_key(query: &str) -> Option<String> {
    let kept: Vec<&str> = query.split('&').filter(|kv| !kv.starts_with("key=")).collect();
    if kept.iter().all(|kv| kv.is_empty()) {
        None
    } else {
        Some(kept.join("&"))
    }
}

/// The value of the `key=` query parameter, if any (not percent-decoded: API keys are plain).
pub fn query_key(query: &str) -> Option<&str> {
    query.split('&').find_map(|kv| kv.strip_prefix("key="))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::ReplyKind;
    use crate::tools::{resolve, ToolCall};
    use std::time::Duration;

    fn reply(text: Option<&str>, tool: Option<ToolCall>) -> Reply {
        Reply {
            kind: ReplyKind::Scripted(0),
            text: text.map(String::from),
            tool,
            usage: Usage {
                input_tokens: 1200,
                output_tokens: 40,
                cache_read_input_tokens: 0,
                cache_creation_input_tokens: 0,
            },
            sleep: Duration::ZERO,
        }
    }

    /// Tools as Gemini CLI 0.61.0 declares them (abridged): `parametersJsonSchema`.
    fn gemini_cli_body() -> Value {
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "create hello.txt"}]},
                {"role": "model", "parts": [{"text": "I'll create hello.txt."}, {"functionCall": {"name": "write_file", "args": {}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "write_file", "response": {}}}]},
            ],
            "tools": [{"functionDeclarations": [
                {"name": "run_shell_command", "parametersJsonSchema": {"type": "object", "properties": {"command": {"type": "string"}}}},
                {"name": "write_file", "parametersJsonSchema": {"type": "object", "properties": {"file_path": {"type": "string"}, "content": {"type": "string"}}}},
            ]}],
        })
    }

    #[test]
    fn parse_takes_model_and_method_from_the_path() {
        let (model, method) = split_model_method("scripted-edit-file:streamGenerateContent").unwrap();
        assert_eq!((model, method), ("scripted-edit-file", STREAM_METHOD));
        let p = parse(&gemini_cli_body(), model, method);
        assert_eq!(p.model, "scripted-edit-file");
        assert!(p.stream);
        assert_eq!(p.history_turns, 1);
        let names: Vec<&str> = p.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["run_shell_command", "write_file"]);
        assert!(!parse(&gemini_cli_body(), model, JSON_METHOD).stream);
        assert!(split_model_method("no-method").is_none());
        // `parameters` (the older field) is read too.
        let old = json!({"tools": [{"functionDeclarations": [{"name": "x", "parameters": {"type": "object"}}]}]});
        assert_eq!(parse(&old, "m", JSON_METHOD).tools[0].schema, json!({"type": "object"}));
    }

    #[test]
    fn scripted_actions_become_gemini_cli_tools() {
        let tools = parse(&gemini_cli_body(), "m", STREAM_METHOD).tools;
        let write = crate::script::Action::WriteFile {
            path: "hello.txt".into(),
            content: "hi\n".into(),
        };
        assert_eq!(
            resolve(&write, &tools).unwrap(),
            ToolCall {
                name: "write_file".into(),
                arguments: json!({"file_path": "hello.txt", "content": "hi\n"})
            }
        );
        assert_eq!(
            resolve(&crate::script::Action::Shell("ls".into()), &tools).unwrap(),
            ToolCall {
                name: "run_shell_command".into(),
                arguments: json!({"command": "ls"})
            }
        );
    }

    #[test]
    fn stream_reassembles_to_the_json_response() {
        let call = ToolCall {
            name: "write_file".into(),
            arguments: json!({"file_path": "hello.txt", "content": "Hello\n"}),
        };
        let r = reply(Some("I'll create hello.txt, as you asked me to."), Some(call));
        let plan = render_stream(&r, "scripted-edit-file", 5);
        assert!(plan.head.is_empty());
        assert_eq!(plan.keepalive, "data: {\"candidates\":[]}\n\n");
        let mut text = String::new();
        let mut calls = Vec::new();
        let mut finishes = 0;
        let mut usage = None;
        for frame in &plan.tail {
            let body = frame.strip_prefix("data: ").unwrap().strip_suffix("\n\n").unwrap();
            let v: Value = serde_json::from_str(body).unwrap();
            let cand = &v["candidates"][0];
            for part in cand["content"]["parts"].as_array().unwrap() {
                if let Some(t) = part["text"].as_str() {
                    text.push_str(t);
                }
                if part.get("functionCall").is_some() {
                    calls.push(part["functionCall"].clone());
                }
            }
            if cand.get("finishReason").is_some() {
                finishes += 1;
            }
            if v.get("usageMetadata").is_some() {
                usage = Some(v["usageMetadata"].clone());
            }
        }
        let whole = render_json(&r, "scripted-edit-file", 5);
        let parts = &whole["candidates"][0]["content"]["parts"];
        assert_eq!(text, parts[0]["text"]);
        assert_eq!(calls, vec![parts[1]["functionCall"].clone()]);
        assert_eq!(calls[0]["id"], "call_sm_000005");
        assert_eq!(finishes, 1, "only the last frame finishes");
        assert_eq!(whole["candidates"][0]["finishReason"], "STOP");
        // The same figures Chat Completions reports for this turn (1200 + 40).
        let want = json!({"promptTokenCount": 1200, "candidatesTokenCount": 40, "totalTokenCount": 1240});
        assert_eq!(usage.unwrap(), want);
        assert_eq!(whole["usageMetadata"], want);
    }

    #[test]
    fn text_only_stream_ends_with_stop_and_cached_tokens_count_in_the_prompt() {
        let mut r = reply(Some("Done."), None);
        r.usage.cache_read_input_tokens = 30;
        let plan = render_stream(&r, "m", 1);
        let last: Value =
            serde_json::from_str(plan.tail.last().unwrap().strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert_eq!(last["candidates"][0]["finishReason"], "STOP");
        assert_eq!(
            last["usageMetadata"],
            json!({"promptTokenCount": 1230, "candidatesTokenCount": 40, "totalTokenCount": 1270, "cachedContentTokenCount": 30})
        );
    }

    #[test]
    fn json_side_requests_get_an_object_of_the_schema() {
        // Gemini CLI's next-speaker check asks for this schema.
        let body = json!({"generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": {
            "type": "object",
            "properties": {"reasoning": {"type": "string"}, "next_speaker": {"type": "string", "enum": ["user", "model"]}},
            "required": ["reasoning", "next_speaker"],
        }}});
        assert!(wants_json(&body));
        let v: Value = serde_json::from_str(&side_json(&body)).unwrap();
        assert_eq!(v, json!({"reasoning": "Scripted session", "next_speaker": "user"}));
        assert!(!wants_json(&json!({})));
        assert_eq!(side_json(&json!({})), "{}");
    }

    /// One HTTP/1.1 POST with `Connection: close`; returns (status, body as sent, possibly
    /// chunked).
    async fn post(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)], body: &Value) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let body = body.to_string();
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let (head, rest) = out.split_once("\r\n\r\n").unwrap();
        (
            head.split_whitespace().nth(1).unwrap().parse().unwrap(),
            rest.to_string(),
        )
    }

    /// The route end to end: model from the path, the key from `x-goog-api-key` or `?key=`,
    /// a turn's `status`, tool-less JSON side requests, `countTokens`, unknown methods.
    #[tokio::test]
    async fn route_plays_scripts_over_http() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("k.json"),
            r#"{"require_key":"k1","turns":[{"text":"hi","tool":{"shell":"ls"}},{"status":503}]}"#,
        )
        .unwrap();
        let app = crate::server::router(crate::server::Config {
            scripts_dir: dir.path().to_path_buf(),
            keepalive: Duration::from_secs(5),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let mut body = gemini_cli_body();
        body["contents"] = json!([{"role": "user", "parts": [{"text": "go"}]}]);

        let stream = "/v1beta/models/scripted-k:streamGenerateContent?alt=sse";
        let (st, b) = post(addr, stream, &[("x-goog-api-key", "k1")], &body).await;
        assert_eq!(st, 200, "{b}");
        assert!(b.contains(r#""functionCall":{"args":{"command":"ls"}"#), "{b}");
        assert!(b.contains(r#""finishReason":"STOP""#), "{b}");
        let (st, b) = post(addr, "/v1beta/models/scripted-k:generateContent?key=k1", &[], &body).await;
        assert_eq!(st, 200, "{b}");
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(
            v["candidates"][0]["content"]["parts"][1]["functionCall"]["name"],
            "run_shell_command"
        );
        assert_eq!(v["usageMetadata"]["totalTokenCount"], 120);
        let (st, b) = post(addr, stream, &[("x-goog-api-key", "wrong")], &body).await;
        assert_eq!(
            (
                st,
                serde_json::from_str::<Value>(&b).unwrap()["error"]["status"].clone()
            ),
            (401, json!("UNAUTHENTICATED"))
        );
        // Turn 1 is scripted as a 503.
        let mut later = gemini_cli_body();
        later["contents"][1]["parts"] = json!([{"functionCall": {"name": "run_shell_command", "args": {}}}]);
        let (st, b) = post(addr, stream, &[("x-goog-api-key", "k1")], &later).await;
        assert_eq!(st, 503, "{b}");
        // No tools and a JSON schema: a side request answered with JSON, no key needed.
        let side = json!({"contents": [{"role": "user", "parts": [{"text": "who next?"}]}],
            "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": {"type": "object",
                "properties": {"next_speaker": {"type": "string", "enum": ["user", "model"]}}}}});
        let (st, b) = post(addr, "/v1beta/models/scripted-k:generateContent", &[], &side).await;
        assert_eq!(st, 200, "{b}");
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(
            v["candidates"][0]["content"]["parts"][0]["text"],
            r#"{"next_speaker":"user"}"#
        );
        let (st, b) = post(addr, "/v1beta/models/scripted-k:countTokens", &[], &side).await;
        assert_eq!(st, 200, "{b}");
        assert!(
            serde_json::from_str::<Value>(&b).unwrap()["totalTokens"]
                .as_u64()
                .unwrap()
                > 0
        );
        let (st, _) = post(addr, "/v1beta/models/scripted-k:embedContent", &[], &side).await;
        assert_eq!(st, 404);
    }

    #[test]
    fn errors_and_query_keys() {
        assert_eq!(
            error_body(StatusCode::SERVICE_UNAVAILABLE, "down"),
            json!({"error": {"code": 503, "message": "down", "status": "UNAVAILABLE"}})
        );
        assert_eq!(
            error_body(StatusCode::UNAUTHORIZED, "x")["error"]["status"],
            "UNAUTHENTICATED"
        );
        assert_eq!(query_key("alt=sse&key=k1"), Some("k1"));
        assert_eq!(query_key("alt=sse"), None);
        assert_eq!(query_without_key("alt=sse&key=k1").as_deref(), Some("alt=sse"));
        assert_eq!(query_without_key("key=k1"), None);
        assert_eq!(count_tokens(400), json!({"totalTokens": 100}));
    }
}
