//! The usage reader on recorded vendor responses, split every way.

use super::super::PriceTable;
use super::*;

/// Deterministic pseudo-random chunk sizes (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn parse_with(api: ModelApi, streaming: bool, body: &[u8], split: impl Fn(&[u8]) -> Vec<&[u8]>) -> UsageParser {
    let mut p = UsageParser::new(api, streaming);
    for chunk in split(body) {
        p.feed(chunk);
    }
    p
}

/// Parses `body` whole, byte by byte and in pseudo-random chunks (several seeds); asserts
/// that every way gives the same result and returns it.
fn parse(api: ModelApi, streaming: bool, body: &str) -> (Option<String>, Option<Tokens>) {
    let result = |p: UsageParser| (p.model().map(str::to_string), p.tokens());
    let whole = result(parse_with(api, streaming, body.as_bytes(), |b| vec![b]));
    let bytes = result(parse_with(api, streaming, body.as_bytes(), |b| b.chunks(1).collect()));
    assert_eq!(whole, bytes, "byte by byte");
    for seed in 1..=20u64 {
        let random = result(parse_with(api, streaming, body.as_bytes(), |b| {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut out = Vec::new();
            let mut rest = b;
            while !rest.is_empty() {
                let n = (1 + rng.next() % 97) as usize;
                let (head, tail) = rest.split_at(n.min(rest.len()));
                out.push(head);
                rest = tail;
            }
            out
        }));
        assert_eq!(whole, random, "random chunks, seed {seed}");
    }
    whole
}

fn tokens(input: u64, output: u64, cache_read: u64, cache_write: u64) -> Option<Tokens> {
    Some(Tokens {
        input,
        output,
        cache_read,
        cache_write,
    })
}

const ANTHROPIC_JSON: &str = r#"{
  "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
  "type": "message",
  "role": "assistant",
  "model": "claude-sonnet-4-5-20250929",
  "content": [{"type": "text", "text": "Héllo — 日本語 🦀"}],
  "stop_reason": "end_turn",
  "stop_sequence": null,
  "usage": {"input_tokens": 2095, "cache_creation_input_tokens": 512, "cache_read_input_tokens": 10240,
        "cache_creation": {"ephemeral_5m_input_tokens": 512, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 503, "service_tier": "standard"}
}"#;

const ANTHROPIC_SSE: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-opus-4-1-20250805\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":300,\"cache_read_input_tokens\":4000,\"output_tokens\":1}}}\n\
\n\
event: ping\n\
data: {\"type\": \"ping\"}\n\
\n\
: keepalive comment\n\
\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\
\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Héllo — 日本語 🦀\"}}\n\
\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":0}\n\
\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\
\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\
\n";

#[test]
fn anthropic_json() {
    let (model, t) = parse(ModelApi::AnthropicMessages, false, ANTHROPIC_JSON);
    assert_eq!(model.as_deref(), Some("claude-sonnet-4-5-20250929"));
    assert_eq!(t, tokens(2095, 503, 10240, 512));
}

#[test]
fn anthropic_sse_output_is_cumulative_not_added() {
    let (model, t) = parse(ModelApi::AnthropicMessages, true, ANTHROPIC_SSE);
    assert_eq!(model.as_deref(), Some("claude-opus-4-1-20250805"));
    assert_eq!(t, tokens(25, 15, 4000, 300));
}

#[test]
fn anthropic_sse_delta_with_all_fields_and_crlf() {
    // Newer message_delta events repeat the (cumulative) input and cache counts.
    let body = ANTHROPIC_SSE.replace(
        r#""usage":{"output_tokens":15}"#,
        r#""usage":{"input_tokens":25,"cache_creation_input_tokens":300,"cache_read_input_tokens":4000,"output_tokens":40}"#,
    );
    assert_eq!(
        parse(ModelApi::AnthropicMessages, true, &body).1,
        tokens(25, 40, 4000, 300)
    );
    let crlf = body.replace('\n', "\r\n");
    assert_eq!(
        parse(ModelApi::AnthropicMessages, true, &crlf).1,
        tokens(25, 40, 4000, 300)
    );
    let cr = body.replace('\n', "\r");
    assert_eq!(
        parse(ModelApi::AnthropicMessages, true, &cr).1,
        tokens(25, 40, 4000, 300)
    );
}

#[test]
fn anthropic_stream_cut_before_delta_has_start_usage() {
    let cut = &ANTHROPIC_SSE[..ANTHROPIC_SSE.find("event: content_block_start").unwrap()];
    assert_eq!(
        parse(ModelApi::AnthropicMessages, true, cut).1,
        tokens(25, 1, 4000, 300)
    );
}

/// The scripted model endpoint's shapes (e2e/scripted-model/src/anthropic.rs).
#[test]
fn anthropic_scripted_shapes() {
    let sse = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_sm_000001\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"scripted-a\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":100,\"output_tokens\":1,\"cache_creation_input_tokens\":7,\"cache_read_input_tokens\":3}}}\n\n\
event: ping\ndata: {\"type\":\"ping\"}\n\n\
event: ping\ndata: {\"type\":\"ping\"}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":100,\"output_tokens\":20,\"cache_creation_input_tokens\":7,\"cache_read_input_tokens\":3}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let (model, t) = parse(ModelApi::AnthropicMessages, true, sse);
    assert_eq!(model.as_deref(), Some("scripted-a"));
    assert_eq!(t, tokens(100, 20, 3, 7));
}

const CHAT_JSON: &str = r#"{
  "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
  "object": "chat.completion",
  "created": 1741570283,
  "model": "gpt-4o-2024-08-06",
  "choices": [{"index": 0, "message": {"role": "assistant", "content": "Héllo — 日本語", "refusal": null},
           "logprobs": null, "finish_reason": "stop"}],
  "usage": {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
  "service_tier": "default",
  "system_fingerprint": "fp_fc9f1d7035"
}"#;

const CHAT_SSE: &str = "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Héllo — 日本語 🦀\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n\
: OPENROUTER PROCESSING\n\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":2500,\"completion_tokens\":12,\"total_tokens\":2512,\"prompt_tokens_details\":{\"cached_tokens\":2048}}}\n\n\
data: [DONE]\n\n";

#[test]
fn chat_json() {
    let (model, t) = parse(ModelApi::OpenAiChat, false, CHAT_JSON);
    assert_eq!(model.as_deref(), Some("gpt-4o-2024-08-06"));
    assert_eq!(t, tokens(93, 46, 1024, 0));
}

#[test]
fn chat_sse_final_usage_chunk() {
    let (model, t) = parse(ModelApi::OpenAiChat, true, CHAT_SSE);
    assert_eq!(model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(t, tokens(452, 12, 2048, 0));
    let crlf = CHAT_SSE.replace('\n', "\r\n");
    assert_eq!(parse(ModelApi::OpenAiChat, true, &crlf).1, tokens(452, 12, 2048, 0));
}

#[test]
fn chat_done_ends_the_stream() {
    let after = format!(
        "{CHAT_SSE}data: {}\n\n",
        r#"{"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":9}}"#
    );
    let (model, t) = parse(ModelApi::OpenAiChat, true, &after);
    assert_eq!(model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(t, tokens(452, 12, 2048, 0));
}

#[test]
fn chat_sse_without_include_usage_has_no_tokens() {
    let no_usage: String = CHAT_SSE
        .split("\n\n")
        .filter(|e| !e.contains("\"prompt_tokens\""))
        .map(|e| format!("{e}\n\n"))
        .collect();
    assert!(no_usage.contains("[DONE]"));
    let (model, t) = parse(ModelApi::OpenAiChat, true, &no_usage);
    assert_eq!(model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(t, None);
}

const RESPONSES_JSON: &str = r#"{
  "id": "resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41",
  "object": "response",
  "created_at": 1741476777,
  "status": "completed",
  "error": null,
  "incomplete_details": null,
  "model": "gpt-5-2025-08-07",
  "output": [{"type": "reasoning", "id": "rs_1", "summary": []},
         {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
          "content": [{"type": "output_text", "text": "Héllo — 日本語", "annotations": []}]}],
  "usage": {"input_tokens": 328, "input_tokens_details": {"cached_tokens": 256},
        "output_tokens": 752, "output_tokens_details": {"reasoning_tokens": 704}, "total_tokens": 1080}
}"#;

fn responses_sse(final_event: &str) -> String {
    let pending = r#"{"id":"resp_1","object":"response","created_at":1741290958,"status":"in_progress","model":"o4-mini-2025-04-16","output":[],"usage":null}"#;
    let done = r#"{"id":"resp_1","object":"response","created_at":1741290958,"status":"completed","model":"o4-mini-2025-04-16","output":[{"type":"message","id":"msg_1","role":"assistant","content":[{"type":"output_text","text":"Héllo 🦀","annotations":[]}]}],"usage":{"input_tokens":1200,"input_tokens_details":{"cached_tokens":1000},"output_tokens":300,"output_tokens_details":{"reasoning_tokens":250},"total_tokens":1500}}"#;
    format!(
        "event: response.created\ndata: {{\"type\":\"response.created\",\"sequence_number\":0,\"response\":{pending}}}\n\n\
event: response.in_progress\ndata: {{\"type\":\"response.in_progress\",\"sequence_number\":1,\"response\":{pending}}}\n\n\
event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"sequence_number\":2,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Héllo 🦀\"}}\n\n\
event: {final_event}\ndata: {{\"type\":\"{final_event}\",\"sequence_number\":3,\"response\":{done}}}\n\n"
    )
}

#[test]
fn responses_json() {
    let (model, t) = parse(ModelApi::OpenAiResponses, false, RESPONSES_JSON);
    assert_eq!(model.as_deref(), Some("gpt-5-2025-08-07"));
    assert_eq!(t, tokens(72, 752, 256, 0));
}

#[test]
fn responses_sse_terminal_events() {
    for event in ["response.completed", "response.incomplete", "response.failed"] {
        let (model, t) = parse(ModelApi::OpenAiResponses, true, &responses_sse(event));
        assert_eq!(model.as_deref(), Some("o4-mini-2025-04-16"), "{event}");
        assert_eq!(t, tokens(200, 300, 1000, 0), "{event}");
    }
}

#[test]
fn responses_sse_cut_before_completion_has_no_tokens() {
    let body = responses_sse("response.completed");
    let cut = &body[..body.find("event: response.completed").unwrap()];
    let (model, t) = parse(ModelApi::OpenAiResponses, true, cut);
    assert_eq!(model.as_deref(), Some("o4-mini-2025-04-16"));
    assert_eq!(t, None);
}

const GEMINI_JSON: &str = r#"{
  "candidates": [{"content": {"parts": [{"text": "Héllo — 日本語"}], "role": "model"},
              "finishReason": "STOP", "index": 0}],
  "usageMetadata": {"promptTokenCount": 5000, "candidatesTokenCount": 120, "totalTokenCount": 6020,
                "cachedContentTokenCount": 4096, "thoughtsTokenCount": 900,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 5000}],
                "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 4096}]},
  "modelVersion": "gemini-2.5-pro",
  "responseId": "abc123"
}"#;

const GEMINI_SSE: &str = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Héllo\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 812,\"candidatesTokenCount\": 3,\"totalTokenCount\": 1015,\"thoughtsTokenCount\": 200},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n\
data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" — 日本語 🦀\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 812,\"candidatesTokenCount\": 17,\"totalTokenCount\": 1029,\"thoughtsTokenCount\": 200},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n\
data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"!\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 812,\"candidatesTokenCount\": 18,\"totalTokenCount\": 1030,\"thoughtsTokenCount\": 200},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n";

#[test]
fn gemini_json() {
    let (model, t) = parse(ModelApi::Gemini, false, GEMINI_JSON);
    assert_eq!(model.as_deref(), Some("gemini-2.5-pro"));
    assert_eq!(t, tokens(904, 1020, 4096, 0));
}

#[test]
fn gemini_sse_takes_the_last_cumulative_usage() {
    let (model, t) = parse(ModelApi::Gemini, true, GEMINI_SSE);
    assert_eq!(model.as_deref(), Some("gemini-2.5-flash"));
    assert_eq!(t, tokens(812, 218, 0, 0));
}

#[test]
fn gemini_json_array_stream() {
    // :streamGenerateContent without alt=sse: one JSON array of responses.
    let chunks: Vec<&str> = GEMINI_SSE
        .split("\r\n\r\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    let array = format!("[{}]", chunks.join(",\r\n"));
    let (model, t) = parse(ModelApi::Gemini, false, &array);
    assert_eq!(model.as_deref(), Some("gemini-2.5-flash"));
    assert_eq!(t, tokens(812, 218, 0, 0));
}

#[test]
fn gemini_tool_use_prompt_counts_as_input_and_models_prefix_is_dropped() {
    let body = r#"{"usageMetadata":{"promptTokenCount":10,"toolUsePromptTokenCount":5,"candidatesTokenCount":2},"modelVersion":"models/gemini-2.0-flash-001"}"#;
    let (model, t) = parse(ModelApi::Gemini, false, body);
    assert_eq!(model.as_deref(), Some("gemini-2.0-flash-001"));
    assert_eq!(t, tokens(15, 2, 0, 0));
}

#[test]
fn responses_without_usage_have_no_tokens() {
    let cases: [(ModelApi, bool, &str); 7] = [
        (
            ModelApi::AnthropicMessages,
            false,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ),
        (
            ModelApi::AnthropicMessages,
            true,
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
        ),
        (
            ModelApi::OpenAiChat,
            false,
            r#"{"error":{"message":"Rate limit","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
        ),
        (ModelApi::OpenAiResponses, false, r#"{"id":"resp_1","model":"gpt-5","usage":null}"#),
        (ModelApi::Gemini, false, r#"{"candidates":[],"modelVersion":"gemini-2.5-pro"}"#),
        (ModelApi::OpenAiChat, false, "<html><body>502 Bad Gateway</body></html>"),
        (ModelApi::OpenAiChat, true, "data: not json\n\n: comment\n\nevent: x\n\n"),
    ];
    for (api, streaming, body) in cases {
        assert_eq!(parse(api, streaming, body).1, None, "{api:?} {body}");
    }
    assert_eq!(UsageParser::new(ModelApi::Gemini, true).tokens(), None);
}

#[test]
fn huge_sse_line_is_skipped_and_following_events_count() {
    let huge = format!(
        "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{}\"}}}}],\"usage\":{{\"prompt_tokens\":999,\"completion_tokens\":999}}}}\n\n",
        "é".repeat(1 << 20)
    );
    assert!(huge.len() > 2 << 20);
    let body = format!("{huge}{CHAT_SSE}");
    let (model, t) = parse(ModelApi::OpenAiChat, true, &body);
    assert_eq!(model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(t, tokens(452, 12, 2048, 0));
    // In one chunk the line exceeds the cap as well: it is never handed to the JSON parser.
    let p = parse_with(ModelApi::OpenAiChat, true, huge.as_bytes(), |b| vec![b]);
    assert_eq!(p.tokens(), None);
    // The partial line never grows beyond the cap: past it, the line is dropped and skipped.
    let mut p = UsageParser::new(ModelApi::OpenAiChat, true);
    for (i, chunk) in huge.as_bytes().chunks(4096).enumerate() {
        p.feed(chunk);
        let Body::Sse(lines) = &p.body else { unreachable!() };
        assert!(lines.line.len() <= MAX_SSE_LINE);
        if (i + 1) * 4096 > MAX_SSE_LINE && (i + 1) * 4096 < huge.len() - 100 {
            assert!(lines.skipping && lines.line.is_empty(), "chunk {i}");
        }
    }
}

#[test]
fn oversized_json_body_is_ignored() {
    let body = format!(
        r#"{{"model":"gpt-4o","pad":"{}","usage":{{"prompt_tokens":1,"completion_tokens":1}}}}"#,
        "x".repeat(MAX_JSON_BODY)
    );
    let mut p = UsageParser::new(ModelApi::OpenAiChat, false);
    for chunk in body.as_bytes().chunks(1 << 16) {
        p.feed(chunk);
    }
    assert_eq!(p.tokens(), None);
    // Just under the cap it is read.
    let body = format!(
        r#"{{"model":"gpt-4o","pad":"{}","usage":{{"prompt_tokens":1,"completion_tokens":1}}}}"#,
        "x".repeat(MAX_JSON_BODY - 200)
    );
    let mut p = UsageParser::new(ModelApi::OpenAiChat, false);
    for chunk in body.as_bytes().chunks(1 << 16) {
        p.feed(chunk);
    }
    assert_eq!(p.tokens(), tokens(1, 1, 0, 0));
}

#[test]
fn json_strings_with_braces_and_escapes_do_not_end_the_body_early() {
    let body = r#"{"model":"claude-haiku-4-5","content":[{"type":"text","text":"\" }}} ] \\\" {"}],"usage":{"input_tokens":3,"output_tokens":4}}"#;
    let (model, t) = parse(ModelApi::AnthropicMessages, false, body);
    assert_eq!(model.as_deref(), Some("claude-haiku-4-5"));
    assert_eq!(t, tokens(3, 4, 0, 0));
}

#[test]
fn cost_arithmetic() {
    let t = PriceTable::builtin();
    let cost = t.cost("scripted-a", tokens(1000, 500, 0, 0).unwrap()).unwrap();
    assert!((cost - 0.006).abs() < 1e-12, "{cost}");
    // 1000×1.0 + 500×10.0 + 2000×0.1 + 400×1.25 = 6700 USD per million.
    let cost = t.cost("scripted-b", tokens(1000, 500, 2000, 400).unwrap()).unwrap();
    assert!((cost - 0.0067).abs() < 1e-12, "{cost}");
    assert_eq!(t.cost("scripted-b", Tokens::default()), Some(0.0));
    assert_eq!(t.cost("unknown-model", tokens(1, 1, 1, 1).unwrap()), None);
    // End to end: a parsed Anthropic response priced at claude-sonnet-4 rates:
    // 2095×3 + 503×15 + 10240×0.3 + 512×3.75 = 18,822 USD per million.
    let mut p = UsageParser::new(ModelApi::AnthropicMessages, false);
    p.feed(ANTHROPIC_JSON.as_bytes());
    let cost = t.cost(p.model().unwrap(), p.tokens().unwrap()).unwrap();
    assert!((cost - 0.018822).abs() < 1e-12, "{cost}");
}
