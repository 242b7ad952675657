//! Token metering for the gateway's model-API proxy: reads token usage out of model responses
//! as their bytes pass through (JSON bodies and server-sent-event streams, fed chunk by chunk,
//! never holding the response back) and prices it.
//!
//! Formats (field names as documented by the vendors, and as emitted by Paddock's scripted model
//! endpoint in `e2e/scripted-model`):
//!
//! | API | path | model | usage |
//! |---|---|---|---|
//! | Anthropic Messages (docs.anthropic.com: "Messages", "Streaming Messages") | `/v1/messages` | `model`; SSE `message_start.message.model` | `usage.{input_tokens, output_tokens, cache_read_input_tokens, cache_creation_input_tokens}`; SSE `message_start.message.usage`, then cumulative `message_delta.usage` |
//! | OpenAI Chat Completions (platform.openai.com: "Chat Completions", "Streaming") | `/v1/chat/completions` | `model` | `usage.{prompt_tokens, completion_tokens, prompt_tokens_details.cached_tokens}`; SSE: the last chunk (with `stream_options.include_usage`), then `data: [DONE]` |
//! | OpenAI Responses (platform.openai.com: "Responses", "Streaming events") | `/v1/responses` | `model`; SSE `response.model` | `usage.{input_tokens, output_tokens, input_tokens_details.cached_tokens}`; SSE `response.completed` / `response.incomplete` / `response.failed` |
//! | Gemini (ai.google.dev: "generateContent", `UsageMetadata`) | `/v1beta/models/M:generateContent`, `:streamGenerateContent` | `modelVersion` | `usageMetadata.{promptTokenCount, candidatesTokenCount, cachedContentTokenCount, thoughtsTokenCount, toolUsePromptTokenCount}`; SSE (`alt=sse`): every chunk carries the cumulative `usageMetadata` |
//!
//! All token counts are normalised into [`Tokens`], whose four classes are disjoint (each token
//! is billed once): `input` excludes cached tokens for every vendor. The parser expects the
//! identity content encoding: the proxy must not let the upstream compress (or must decompress
//! before feeding).

use std::collections::BTreeMap;

use serde_json::Value;

/// Longest SSE line kept (1 MiB); longer lines are skipped whole.
const MAX_SSE_LINE: usize = 1 << 20;
/// Largest JSON body parsed (8 MiB); a longer body is ignored (no usage).
const MAX_JSON_BODY: usize = 8 << 20;
/// A line buffer that grew beyond this is freed after use rather than kept for the next line.
const KEEP_LINE_CAPACITY: usize = 64 << 10;

/// Which model API a request/response belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelApi {
    /// Anthropic Messages API (`POST /v1/messages`).
    AnthropicMessages,
    /// OpenAI Chat Completions API (`POST /v1/chat/completions`).
    OpenAiChat,
    /// OpenAI Responses API (`POST /v1/responses`).
    OpenAiResponses,
    /// Google Gemini API (`POST /v1beta/models/<model>:generateContent` or
    /// `:streamGenerateContent`).
    Gemini,
}

impl ModelApi {
    /// From the upstream path the agent called (after the gateway's route prefix is stripped).
    ///
    /// A query string is ignored. Paths are matched by suffix, so a vendor base path in front
    /// (e.g. `/openai/v1/chat/completions`) still matches:
    /// - `…/v1/messages` → [`ModelApi::AnthropicMessages`]
    /// - `…/chat/completions` → [`ModelApi::OpenAiChat`]
    /// - `…/v1/responses` → [`ModelApi::OpenAiResponses`]
    /// - `…/models/<m>:generateContent` or `…/models/<m>:streamGenerateContent` →
    ///   [`ModelApi::Gemini`]
    ///
    /// Every other path (`/v1/models`, `/v1/messages/count_tokens`, `…:countTokens`,
    /// `/v1/responses/<id>`, embeddings, …) → `None`: not metered.
    pub fn from_path(path: &str) -> Option<ModelApi> {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let path = path.trim_end_matches('/');
        if path.ends_with("/v1/messages") {
            return Some(ModelApi::AnthropicMessages);
        }
        if path.ends_with("/chat/completions") {
            return Some(ModelApi::OpenAiChat);
        }
        if path.ends_with("/v1/responses") {
            return Some(ModelApi::OpenAiResponses);
        }
        let (head, last) = path.rsplit_once('/')?;
        let (model, method) = last.rsplit_once(':')?;
        if !model.is_empty()
            && (head.ends_with("/models") || head == "models")
            && (method == "generateContent" || method == "streamGenerateContent")
        {
            return Some(ModelApi::Gemini);
        }
        None
    }
}

/// Tokens of one response, in four disjoint classes (no token is counted twice).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Uncached input (prompt) tokens: Anthropic `input_tokens`; OpenAI `prompt_tokens` /
    /// `input_tokens` minus `cached_tokens`; Gemini `promptTokenCount` minus
    /// `cachedContentTokenCount` plus `toolUsePromptTokenCount`.
    pub input: u64,
    /// Output tokens, reasoning included: Anthropic `output_tokens`; OpenAI
    /// `completion_tokens` / `output_tokens` (both already include reasoning tokens); Gemini
    /// `candidatesTokenCount` plus `thoughtsTokenCount`.
    pub output: u64,
    /// Input tokens read from the vendor's prompt cache: Anthropic `cache_read_input_tokens`;
    /// OpenAI `cached_tokens`; Gemini `cachedContentTokenCount`.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache: Anthropic `cache_creation_input_tokens`
    /// (5-minute and 1-hour writes together); always 0 for OpenAI and Gemini, which do not bill
    /// cache writes per request.
    pub cache_write: u64,
}

/// Incremental usage reader for one response.
///
/// Feed every chunk of the response body, in order, as it passes through; read
/// [`UsageParser::tokens`] and [`UsageParser::model`] at any time (after the body ended they are
/// the response's totals). Nothing is an error: bytes that are not the expected format are
/// ignored and simply yield no usage.
///
/// Memory is bounded: an SSE stream keeps at most one partial line (up to 1 MiB; a longer line is
/// skipped whole, and the events after it are still read); a JSON body is buffered up to 8 MiB
/// until its top-level value is complete, then parsed once (a longer body is ignored).
///
/// SSE lines may end in `\n`, `\r\n` or `\r` and may be split across chunks anywhere (also inside
/// a UTF-8 character or between `\r` and `\n`). Each `data:` line is parsed as one JSON value;
/// comments (`:`), `event:`/`id:`/`retry:` fields and non-JSON data are ignored; `data: [DONE]`
/// ends the stream (later bytes are ignored).
#[derive(Debug)]
pub struct UsageParser {
    body: Body,
    acc: Accumulator,
}

#[derive(Debug)]
enum Body {
    Sse(SseLines),
    Json(JsonBody),
}

impl UsageParser {
    /// A parser for a response of `api`. `streaming`: the response Content-Type is
    /// `text/event-stream`; otherwise the body is read as one JSON value (for Gemini's
    /// `:streamGenerateContent` without `alt=sse`, a JSON array of responses).
    pub fn new(api: ModelApi, streaming: bool) -> Self {
        let body = if streaming {
            Body::Sse(SseLines::default())
        } else {
            Body::Json(JsonBody::default())
        };
        UsageParser {
            body,
            acc: Accumulator {
                api,
                model: None,
                usage: None,
            },
        }
    }

    /// Reads the next chunk of the response body (any size, split anywhere).
    pub fn feed(&mut self, chunk: &[u8]) {
        let acc = &mut self.acc;
        match &mut self.body {
            Body::Sse(lines) => lines.feed(chunk, |line| acc.sse_line(line)),
            Body::Json(body) => {
                if let Some(complete) = body.feed(chunk) {
                    if let Ok(v) = serde_json::from_slice::<Value>(&complete) {
                        acc.apply(&v);
                    }
                }
            }
        }
    }

    /// The model name the response reported (if any), as the vendor spelled it (Gemini's
    /// `models/` prefix removed) — the key for [`PriceTable::price`].
    pub fn model(&self) -> Option<&str> {
        self.acc.model.as_deref()
    }

    /// Usage seen so far (after the stream or body ended: the response's total). `None` if the
    /// response carried no usage (an error, a stream without `include_usage`, a stream cut
    /// before its final event, a body that is not JSON or is larger than 8 MiB).
    pub fn tokens(&self) -> Option<Tokens> {
        self.acc.usage.map(|u| u.tokens(self.acc.api))
    }
}

/// Splits an SSE byte stream into lines, keeping at most one partial line.
#[derive(Debug, Default)]
struct SseLines {
    line: Vec<u8>,
    /// The current line exceeded [`MAX_SSE_LINE`]: drop bytes up to its end.
    skipping: bool,
    /// `data: [DONE]` was seen.
    done: bool,
}

impl SseLines {
    fn feed(&mut self, mut chunk: &[u8], mut on_line: impl FnMut(&[u8])) {
        while !chunk.is_empty() && !self.done {
            // `\r`, `\n` and `\r\n` all end a line; the empty "line" between `\r` and `\n` (or
            // a blank line ending an event) carries no data, so it needs no special case.
            let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.append(chunk);
                return;
            };
            let part = &chunk[..end];
            chunk = &chunk[end + 1..];
            if self.skipping {
                self.skipping = false;
            } else if self.line.is_empty() {
                self.dispatch(part, &mut on_line);
            } else {
                self.append(part);
                if !self.skipping {
                    let line = std::mem::take(&mut self.line);
                    self.dispatch(&line, &mut on_line);
                    if line.capacity() <= KEEP_LINE_CAPACITY {
                        self.line = line;
                        self.line.clear();
                    }
                }
                self.skipping = false;
            }
        }
    }

    /// Adds bytes to the partial line, or starts skipping it when it grows beyond the cap.
    fn append(&mut self, bytes: &[u8]) {
        if self.skipping {
            return;
        }
        if self.line.len() + bytes.len() > MAX_SSE_LINE {
            self.skipping = true;
            self.line = Vec::new();
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    /// One complete line (without its terminator): hands a `data:` line's JSON to `on_line`.
    fn dispatch(&mut self, line: &[u8], on_line: &mut impl FnMut(&[u8])) {
        if line.len() > MAX_SSE_LINE {
            return;
        }
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        let data = data.trim_ascii();
        if data == b"[DONE]" {
            self.done = true;
        } else if matches!(data.first(), Some(b'{' | b'[')) {
            on_line(data);
        }
    }
}

/// Buffers a JSON body until its top-level value is complete (tracked byte by byte: nesting
/// depth outside strings; UTF-8 continuation bytes never look like ASCII, so a chunk may end
/// anywhere).
#[derive(Debug, Default)]
struct JsonBody {
    buf: Vec<u8>,
    depth: usize,
    started: bool,
    in_string: bool,
    escape: bool,
    /// Complete, too large, or not JSON: ignore the rest.
    finished: bool,
}

impl JsonBody {
    /// Returns the whole value once its last byte has been fed.
    fn feed(&mut self, chunk: &[u8]) -> Option<Vec<u8>> {
        if self.finished {
            return None;
        }
        let mut consumed = chunk.len();
        for (i, &b) in chunk.iter().enumerate() {
            if !self.started {
                match b {
                    b'{' | b'[' => self.started = true,
                    b' ' | b'\t' | b'\r' | b'\n' => continue,
                    // A UTF-8 byte-order mark.
                    0xEF | 0xBB | 0xBF => continue,
                    _ => {
                        self.abandon();
                        return None;
                    }
                }
            }
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        consumed = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        let complete = self.started && self.depth == 0;
        if self.buf.len() + consumed > MAX_JSON_BODY {
            self.abandon();
            return None;
        }
        self.buf.extend_from_slice(&chunk[..consumed]);
        if complete {
            self.finished = true;
            return Some(std::mem::take(&mut self.buf));
        }
        None
    }

    fn abandon(&mut self) {
        self.finished = true;
        self.buf = Vec::new();
    }
}

/// Usage counters as the vendor reports them (before normalising into [`Tokens`]).
#[derive(Clone, Copy, Debug, Default)]
struct Raw {
    /// Anthropic `input_tokens`; OpenAI `prompt_tokens`/`input_tokens` (cached included);
    /// Gemini `promptTokenCount` (cached included).
    input: u64,
    /// Output tokens (Gemini: candidates only).
    output: u64,
    cache_read: u64,
    cache_write: u64,
    /// Gemini `thoughtsTokenCount`.
    thoughts: u64,
    /// Gemini `toolUsePromptTokenCount`.
    tool_prompt: u64,
}

impl Raw {
    fn tokens(self, api: ModelApi) -> Tokens {
        match api {
            ModelApi::AnthropicMessages => Tokens {
                input: self.input,
                output: self.output,
                cache_read: self.cache_read,
                cache_write: self.cache_write,
            },
            ModelApi::OpenAiChat | ModelApi::OpenAiResponses => Tokens {
                input: self.input.saturating_sub(self.cache_read),
                output: self.output,
                cache_read: self.cache_read,
                cache_write: 0,
            },
            ModelApi::Gemini => Tokens {
                input: self
                    .input
                    .saturating_sub(self.cache_read)
                    .saturating_add(self.tool_prompt),
                output: self.output.saturating_add(self.thoughts),
                cache_read: self.cache_read,
                cache_write: 0,
            },
        }
    }
}

/// The model and usage found so far.
#[derive(Debug)]
struct Accumulator {
    api: ModelApi,
    model: Option<String>,
    usage: Option<Raw>,
}

impl Accumulator {
    fn sse_line(&mut self, data: &[u8]) {
        if let Ok(v) = serde_json::from_slice::<Value>(data) {
            self.apply(&v);
        }
    }

    /// Takes model and usage from one JSON value: a whole body or one SSE event's data.
    fn apply(&mut self, v: &Value) {
        if let Value::Array(items) = v {
            items.iter().for_each(|item| self.apply(item));
            return;
        }
        match self.api {
            ModelApi::AnthropicMessages => self.anthropic(v),
            ModelApi::OpenAiChat => {
                self.set_model(v.get("model").and_then(Value::as_str));
                if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                    self.replace(u, "prompt_tokens", "completion_tokens", &["prompt_tokens_details"]);
                }
            }
            ModelApi::OpenAiResponses => {
                // SSE events wrap the response object: `{"type": "response.completed", "response": {…}}`.
                let r = v.get("response").filter(|r| r.is_object()).unwrap_or(v);
                self.set_model(r.get("model").and_then(Value::as_str));
                if let Some(u) = r.get("usage").filter(|u| u.is_object()) {
                    self.replace(u, "input_tokens", "output_tokens", &["input_tokens_details"]);
                }
            }
            ModelApi::Gemini => self.gemini(v),
        }
    }

    /// A message body, `message_start` (`message.{model, usage}`) or `message_delta` (`usage`).
    /// Anthropic's streamed usage is cumulative: output is the latest value, input and cache
    /// counts the largest seen (a `message_delta` may repeat them or leave them out).
    fn anthropic(&mut self, v: &Value) {
        if let Some(message) = v.get("message").filter(|m| m.is_object()) {
            self.anthropic(message);
        }
        self.set_model(v.get("model").and_then(Value::as_str));
        let Some(u) = v.get("usage").filter(|u| u.is_object()) else {
            return;
        };
        let input = count(u, "input_tokens");
        let output = count(u, "output_tokens");
        let read = count(u, "cache_read_input_tokens");
        let write = count(u, "cache_creation_input_tokens");
        if input.is_none() && output.is_none() && read.is_none() && write.is_none() {
            return;
        }
        let raw = self.usage.get_or_insert_with(Raw::default);
        let max = |old: u64, new: Option<u64>| new.map_or(old, |n| n.max(old));
        raw.input = max(raw.input, input);
        raw.cache_read = max(raw.cache_read, read);
        raw.cache_write = max(raw.cache_write, write);
        raw.output = output.unwrap_or(raw.output);
    }

    /// OpenAI usage object: replaces what was seen before (the last one is the total).
    fn replace(&mut self, u: &Value, input_key: &str, output_key: &str, details: &[&str]) {
        let input = count(u, input_key);
        let output = count(u, output_key);
        if input.is_none() && output.is_none() {
            return;
        }
        let cached = details
            .iter()
            .find_map(|d| u.get(*d).and_then(|d| count(d, "cached_tokens")))
            .unwrap_or(0);
        self.usage = Some(Raw {
            input: input.unwrap_or(0),
            output: output.unwrap_or(0),
            cache_read: cached,
            ..Raw::default()
        });
    }

    /// One `GenerateContentResponse`: `modelVersion`, and `usageMetadata` (cumulative in a
    /// stream: the last one replaces the earlier ones).
    fn gemini(&mut self, v: &Value) {
        if let Some(m) = v.get("modelVersion").and_then(Value::as_str) {
            self.set_model(Some(m.strip_prefix("models/").unwrap_or(m)));
        }
        let Some(u) = v.get("usageMetadata").filter(|u| u.is_object()) else {
            return;
        };
        let prompt = count(u, "promptTokenCount");
        let candidates = count(u, "candidatesTokenCount");
        let thoughts = count(u, "thoughtsTokenCount");
        if prompt.is_none() && candidates.is_none() && thoughts.is_none() {
            return;
        }
        self.usage = Some(Raw {
            input: prompt.unwrap_or(0),
            output: candidates.unwrap_or(0),
            cache_read: count(u, "cachedContentTokenCount").unwrap_or(0),
            cache_write: 0,
            thoughts: thoughts.unwrap_or(0),
            tool_prompt: count(u, "toolUsePromptTokenCount").unwrap_or(0),
        });
    }

    fn set_model(&mut self, model: Option<&str>) {
        if let Some(m) = model.filter(|m| !m.is_empty()) {
            if self.model.as_deref() != Some(m) {
                self.model = Some(m.to_string());
            }
        }
    }
}

/// A non-negative integer field (also accepted: a whole, non-negative float such as `12.0`).
fn count(obj: &Value, key: &str) -> Option<u64> {
    let v = obj.get(key)?;
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < u64::MAX as f64)
            .map(|f| f as u64)
    })
}

/// A model's price in USD per million tokens, one rate per [`Tokens`] class.
///
/// JSON: `{"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75}`;
/// `cache_read` and `cache_write` default to 0.
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct Price {
    /// USD per million uncached input tokens.
    pub input: f64,
    /// USD per million output tokens (reasoning/thinking included).
    pub output: f64,
    /// USD per million input tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read: f64,
    /// USD per million input tokens written to the prompt cache.
    #[serde(default)]
    pub cache_write: f64,
}

impl Price {
    const fn new(input: f64, output: f64, cache_read: f64, cache_write: f64) -> Self {
        Price {
            input,
            output,
            cache_read,
            cache_write,
        }
    }
}

/// Why a price-override document was rejected. Each message names the offending entry.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PriceError {
    /// The document is not valid JSON.
    #[error("model prices are not valid JSON: {0}")]
    Json(String),
    /// The document is JSON but not an object of `{"<model prefix>": {price}}`.
    #[error("model prices must be a JSON object mapping a model-name prefix to a price, got {0}")]
    NotAnObject(&'static str),
    /// An entry is not a valid price (not an object, missing `input`/`output`, not a number).
    #[error("price for model prefix {prefix:?}: {reason}")]
    BadEntry {
        /// The entry's model-name prefix.
        prefix: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An entry has a field other than `input`, `output`, `cache_read`, `cache_write`.
    #[error(
        "price for model prefix {prefix:?}: unknown field {field:?} (expected input, output, cache_read, cache_write)"
    )]
    UnknownField {
        /// The entry's model-name prefix.
        prefix: String,
        /// The unknown field.
        field: String,
    },
    /// A price is negative or not finite.
    #[error(
        "price for model prefix {prefix:?}: {field} must be a finite number >= 0 (USD per million tokens), got {value}"
    )]
    InvalidValue {
        /// The entry's model-name prefix.
        prefix: String,
        /// The field (`input`, `output`, `cache_read`, `cache_write`).
        field: &'static str,
        /// The rejected value.
        value: f64,
    },
}

/// Model prices by model-name prefix; the longest prefix matching a model name wins (so
/// `gpt-4o-mini` beats `gpt-4o` for `gpt-4o-mini-2024-07-18`). Prices are USD per million tokens.
#[derive(Clone, Debug)]
pub struct PriceTable {
    prices: BTreeMap<String, Price>,
}

/// The built-in prices: the vendors' published list prices (standard tier, USD per million
/// tokens) as last known to us, in late 2025. They go stale: a pool must override them with its
/// own (contracted, current) prices. Simplifications: Anthropic cache writes are priced at the
/// 5-minute rate (1-hour writes cost more); Gemini 2.5 Pro uses its ≤200k-token-prompt tier;
/// Gemini context-cache storage (billed per hour) and long-context surcharges are not included.
const BUILTIN: &[(&str, Price)] = &[
    // Anthropic (docs.anthropic.com, "Pricing"): input, output, cache hit, 5-minute cache write.
    ("claude-opus-4-5", Price::new(5.0, 25.0, 0.5, 6.25)),
    ("claude-opus-4", Price::new(15.0, 75.0, 1.5, 18.75)),
    ("claude-sonnet-4", Price::new(3.0, 15.0, 0.3, 3.75)),
    ("claude-haiku-4", Price::new(1.0, 5.0, 0.1, 1.25)),
    ("claude-3-7-sonnet", Price::new(3.0, 15.0, 0.3, 3.75)),
    ("claude-3-5-sonnet", Price::new(3.0, 15.0, 0.3, 3.75)),
    ("claude-3-5-haiku", Price::new(0.8, 4.0, 0.08, 1.0)),
    ("claude-3-opus", Price::new(15.0, 75.0, 1.5, 18.75)),
    ("claude-3-haiku", Price::new(0.25, 1.25, 0.03, 0.3)),
    // OpenAI (platform.openai.com, "Pricing", standard tier): input, output, cached input.
    ("gpt-5", Price::new(1.25, 10.0, 0.125, 0.0)),
    ("gpt-5-mini", Price::new(0.25, 2.0, 0.025, 0.0)),
    ("gpt-5-nano", Price::new(0.05, 0.4, 0.005, 0.0)),
    ("gpt-5-pro", Price::new(15.0, 120.0, 15.0, 0.0)),
    ("gpt-4.1", Price::new(2.0, 8.0, 0.5, 0.0)),
    ("gpt-4.1-mini", Price::new(0.4, 1.6, 0.1, 0.0)),
    ("gpt-4.1-nano", Price::new(0.1, 0.4, 0.025, 0.0)),
    ("gpt-4o", Price::new(2.5, 10.0, 1.25, 0.0)),
    ("gpt-4o-mini", Price::new(0.15, 0.6, 0.075, 0.0)),
    ("o3", Price::new(2.0, 8.0, 0.5, 0.0)),
    ("o3-mini", Price::new(1.1, 4.4, 0.55, 0.0)),
    ("o3-pro", Price::new(20.0, 80.0, 20.0, 0.0)),
    ("o4-mini", Price::new(1.1, 4.4, 0.275, 0.0)),
    // Google (ai.google.dev, "Gemini Developer API pricing", paid tier, text): input, output
    // (thinking included), context-cache read.
    ("gemini-2.5-pro", Price::new(1.25, 10.0, 0.125, 0.0)),
    ("gemini-2.5-flash", Price::new(0.3, 2.5, 0.03, 0.0)),
    ("gemini-2.5-flash-lite", Price::new(0.1, 0.4, 0.01, 0.0)),
    ("gemini-2.0-flash", Price::new(0.1, 0.4, 0.025, 0.0)),
    // Paddock's scripted test endpoint (e2e/scripted-model): a made-up test price, chosen so that
    // costs in tests are easy to compute by hand.
    ("scripted-", Price::new(1.0, 10.0, 0.1, 1.25)),
];

const PRICE_FIELDS: [&str; 4] = ["input", "output", "cache_read", "cache_write"];

impl PriceTable {
    /// The built-in table: the vendors' published list prices (USD per million tokens, as known
    /// in late 2025) of common models — Anthropic `claude-opus-4*`, `claude-sonnet-4*`,
    /// `claude-haiku-4*` and the 3.x models; OpenAI `gpt-5`, `gpt-5-mini`, `gpt-5-nano`,
    /// `gpt-5-pro`, `gpt-4.1*`, `gpt-4o`, `gpt-4o-mini`, `o3`, `o3-mini`, `o3-pro`, `o4-mini`;
    /// Google `gemini-2.5-pro`, `gemini-2.5-flash`, `gemini-2.5-flash-lite`, `gemini-2.0-flash`.
    /// These are defaults only and go stale: a pool must override them with its current prices
    /// ([`PriceTable::with_overrides`]).
    ///
    /// Also `scripted-` (the model names of Paddock's scripted test endpoint) at the test price:
    /// input 1.0, output 10.0, cache_read 0.1, cache_write 1.25.
    pub fn builtin() -> Self {
        PriceTable {
            prices: BUILTIN.iter().map(|(k, p)| (k.to_string(), *p)).collect(),
        }
    }

    /// The built-in table plus overrides from JSON
    /// `{"<model prefix>": {"input": f64, "output": f64, "cache_read"?: f64, "cache_write"?: f64}, …}`
    /// (USD per million tokens; an override replaces the built-in entry with the same prefix, and
    /// the longest-prefix rule applies across both).
    ///
    /// # Errors
    /// [`PriceError`]: not JSON, not an object, an entry that is not an object with numeric
    /// `input` and `output`, an unknown field, or a negative or non-finite price.
    pub fn with_overrides(json: &str) -> Result<Self, PriceError> {
        let doc: Value = serde_json::from_str(json).map_err(|e| PriceError::Json(e.to_string()))?;
        let Value::Object(entries) = doc else {
            return Err(PriceError::NotAnObject(json_kind(&doc)));
        };
        let mut table = PriceTable::builtin();
        for (prefix, entry) in entries {
            let Some(fields) = entry.as_object() else {
                return Err(PriceError::BadEntry {
                    prefix,
                    reason: format!(
                        "expected an object like {{\"input\": 3.0, \"output\": 15.0}}, got {}",
                        json_kind(&entry)
                    ),
                });
            };
            if let Some(field) = fields.keys().find(|k| !PRICE_FIELDS.contains(&k.as_str())) {
                return Err(PriceError::UnknownField {
                    field: field.clone(),
                    prefix,
                });
            }
            let price: Price = match serde_json::from_value(entry) {
                Ok(p) => p,
                Err(e) => {
                    return Err(PriceError::BadEntry {
                        prefix,
                        reason: e.to_string(),
                    })
                }
            };
            let values = [price.input, price.output, price.cache_read, price.cache_write];
            for (field, value) in PRICE_FIELDS.into_iter().zip(values) {
                if !value.is_finite() || value < 0.0 {
                    return Err(PriceError::InvalidValue { prefix, field, value });
                }
            }
            table.prices.insert(prefix, price);
        }
        Ok(table)
    }

    /// The price of `model`: the entry with the longest prefix of `model`; `None` when no prefix
    /// matches (the model is unpriced).
    pub fn price(&self, model: &str) -> Option<Price> {
        self.prices
            .iter()
            .filter(|(prefix, _)| model.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, p)| *p)
    }

    /// USD for `t` tokens of `model`: Σ tokens × price / 1,000,000 over the four classes.
    /// `None` when the model has no price (the caller reports it as "unpriced" rather than
    /// counting 0.0).
    pub fn cost(&self, model: &str, t: Tokens) -> Option<f64> {
        let p = self.price(model)?;
        let micro = t.input as f64 * p.input
            + t.output as f64 * p.output
            + t.cache_read as f64 * p.cache_read
            + t.cache_write as f64 * p.cache_write;
        Some(micro / 1_000_000.0)
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
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
    fn from_path_table() {
        let table: [(&str, Option<ModelApi>); 16] = [
            ("/v1/messages", Some(ModelApi::AnthropicMessages)),
            ("/v1/messages?beta=true", Some(ModelApi::AnthropicMessages)),
            ("/v1/messages/count_tokens", None),
            ("/v1/messages/batches", None),
            ("/v1/chat/completions", Some(ModelApi::OpenAiChat)),
            ("/openai/v1/chat/completions", Some(ModelApi::OpenAiChat)),
            ("/v1/responses", Some(ModelApi::OpenAiResponses)),
            ("/v1/responses/resp_123", None),
            ("/v1beta/models/gemini-2.5-pro:generateContent", Some(ModelApi::Gemini)),
            (
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                Some(ModelApi::Gemini),
            ),
            ("/v1/models/gemini-2.0-flash:generateContent", Some(ModelApi::Gemini)),
            ("/v1beta/models/gemini-2.5-pro:countTokens", None),
            ("/v1beta/models/gemini-2.5-pro", None),
            ("/v1/models", None),
            ("/v1/embeddings", None),
            ("", None),
        ];
        for (path, api) in table {
            assert_eq!(ModelApi::from_path(path), api, "{path}");
        }
    }

    #[test]
    fn price_longest_prefix_wins() {
        let t = PriceTable::builtin();
        assert_eq!(t.price("gpt-4o-mini-2024-07-18").unwrap().input, 0.15);
        assert_eq!(t.price("gpt-4o-2024-08-06").unwrap().input, 2.5);
        assert_eq!(t.price("gpt-5-mini-2025-08-07").unwrap().input, 0.25);
        assert_eq!(t.price("gpt-5-2025-08-07").unwrap().input, 1.25);
        assert_eq!(t.price("o3-mini").unwrap().input, 1.1);
        assert_eq!(t.price("o3-2025-04-16").unwrap().input, 2.0);
        assert_eq!(t.price("claude-opus-4-1-20250805").unwrap().output, 75.0);
        assert_eq!(t.price("claude-opus-4-5-20251101").unwrap().output, 25.0);
        assert_eq!(t.price("claude-sonnet-4-5-20250929").unwrap().cache_write, 3.75);
        assert_eq!(t.price("gemini-2.5-flash-lite").unwrap().input, 0.1);
        assert_eq!(t.price("gemini-2.5-flash-preview-09-2025").unwrap().input, 0.3);
        assert_eq!(t.price("scripted-a"), Some(Price::new(1.0, 10.0, 0.1, 1.25)));
        assert_eq!(t.price("llama-3"), None);
        assert_eq!(t.price("scripted"), None);
        for (prefix, p) in BUILTIN {
            let values = [p.input, p.output, p.cache_read, p.cache_write];
            assert!(values.iter().all(|v| v.is_finite() && *v >= 0.0), "{prefix}");
        }
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

    #[test]
    fn overrides_win_and_add() {
        let t = PriceTable::with_overrides(
            r#"{"gpt-4o": {"input": 2.0, "output": 8.0}, "my-model": {"input": 0.5, "output": 1.5, "cache_read": 0.05, "cache_write": 0.6}}"#,
        )
        .unwrap();
        assert_eq!(t.price("gpt-4o-2024-08-06"), Some(Price::new(2.0, 8.0, 0.0, 0.0)));
        assert_eq!(t.price("gpt-4o-mini").unwrap().input, 0.15);
        assert_eq!(t.price("my-model-v2"), Some(Price::new(0.5, 1.5, 0.05, 0.6)));
        assert_eq!(t.price("claude-sonnet-4").unwrap().input, 3.0);
        assert!(PriceTable::with_overrides("{}").is_ok());
    }

    #[test]
    fn override_errors() {
        let err = |json: &str| PriceTable::with_overrides(json).unwrap_err();
        assert!(matches!(err("{"), PriceError::Json(_)));
        assert_eq!(err("[1, 2]"), PriceError::NotAnObject("an array"));
        assert_eq!(err("3"), PriceError::NotAnObject("a number"));
        assert!(matches!(err(r#"{"m": 3}"#), PriceError::BadEntry { prefix, .. } if prefix == "m"));
        assert!(
            matches!(err(r#"{"m": {"input": 1.0}}"#), PriceError::BadEntry { reason, .. } if reason.contains("output"))
        );
        assert!(matches!(
            err(r#"{"m": {"input": "1", "output": 2}}"#),
            PriceError::BadEntry { .. }
        ));
        assert_eq!(
            err(r#"{"m": {"input": 1, "output": 2, "cache_reads": 0.1}}"#),
            PriceError::UnknownField {
                prefix: "m".into(),
                field: "cache_reads".into()
            }
        );
        assert_eq!(
            err(r#"{"m": {"input": 1, "output": -2}}"#),
            PriceError::InvalidValue {
                prefix: "m".into(),
                field: "output",
                value: -2.0
            }
        );
        assert!(matches!(
            err(r#"{"m": {"input": 1e999, "output": 2}}"#),
            PriceError::Json(_)
        ));
        let message = err(r#"{"m": {"input": 1, "output": 2, "cache_write": -0.5}}"#).to_string();
        assert!(
            message.contains("\"m\"") && message.contains("cache_write"),
            "{message}"
        );
    }
}
