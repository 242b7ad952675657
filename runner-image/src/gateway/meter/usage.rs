//! The incremental usage reader ([`UsageParser`]): JSON bodies and server-sent-event streams, fed
//! chunk by chunk, in bounded memory (formats in the [`super`] module docs).

use serde_json::Value;

use super::{ModelApi, Tokens};

/// Longest SSE line kept (1 MiB); longer lines are skipped whole.
const MAX_SSE_LINE: usize = 1 << 20;
/// Largest JSON body parsed (8 MiB); a longer body is ignored (no usage).
const MAX_JSON_BODY: usize = 8 << 20;
/// A line buffer that grew beyond this is freed after use rather than kept for the next line.
const KEEP_LINE_CAPACITY: usize = 64 << 10;

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
    /// `models/` prefix removed) — the key for [`super::PriceTable::price`].
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

#[cfg(test)]
mod tests;
