//! What the gateway reads from a model call's request body before it forwards it: the model, the
//! output cap, whether it streams, and whether its input can be bounded by its size — enough to
//! reserve the call's worst-case cost against the run's budget ([`RequestFacts::estimate`]).
//!
//! The body is walked once by a serde visitor that keeps only these facts (memory does not grow
//! with the body's nesting or size beyond the body itself; serde_json's nesting limit of 128
//! applies). It must be one JSON object; a field the gateway reads that appears twice, or has
//! the wrong type, refuses the call: the vendor must see the same value the gateway reserved
//! for.
//!
//! Fields read, per API (all others are only scanned for media and server-side references):
//!
//! | API | model | output cap | other |
//! |---|---|---|---|
//! | Anthropic Messages | `model` | `max_tokens` (thinking included) | `stream` |
//! | OpenAI Chat Completions | `model` | larger of `max_tokens`, `max_completion_tokens` (reasoning included), × `n` | `stream`, `stream_options.include_usage` |
//! | OpenAI Responses | `model` | `max_output_tokens` (reasoning included) | `stream`, `background`; `previous_response_id`, `conversation`, `prompt` make the input unbounded |
//! | Gemini | the request path | `generationConfig.maxOutputTokens` (thinking included), × `candidateCount` | `cachedContent` makes the input unbounded |
//!
//! Input whose tokens the body's size does not bound: documents, files, audio, video, inline or
//! referenced data (`document`, `file`, `input_file`, `input_audio`, `inlineData`, `fileData`,
//! `file_id`, …), server-side tools that add input while the call runs (web search and fetch,
//! code execution, file search, remote MCP servers) and references to state kept by the vendor
//! (`previous_response_id`, `conversation`, `cachedContent`). Images (`image`, `image_url`,
//! `input_image`) count [`IMAGE_TOKENS`] each: every vendor scales images down to a bounded
//! number of tokens.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{ModelApi, ModelLimits, PriceTable};

/// Input tokens reserved per image: above every vendor's largest per-image count as of late
/// 2025 (Anthropic ~1,600, OpenAI ~6,000 with `detail: high` on the mini models, Gemini 258 per
/// 768×768 tile after scaling).
pub const IMAGE_TOKENS: u64 = 10_000;
/// Input tokens reserved per call beyond its bytes: what the vendor adds that the body does not
/// show (the tool-use system prompt, message framing).
pub const OVERHEAD_TOKENS: u64 = 1_000;

/// What one model call's request body says, as far as budgets go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestFacts {
    /// The model named in the body (`model`); `None` when absent (Gemini names it in the path).
    pub model: Option<String>,
    /// The request's cap on output tokens per choice (see the module docs for the field).
    pub max_output_tokens: Option<u64>,
    /// Choices generated (`n`, `candidateCount`), at least 1.
    pub choices: u64,
    /// `stream: true`.
    pub stream: bool,
    /// A top-level `stream_options` member is present (even `null`).
    pub has_stream_options: bool,
    /// `stream_options.include_usage: true`.
    pub include_usage: bool,
    /// `background: true` (OpenAI Responses).
    pub background: bool,
    /// Image items.
    pub images: u64,
    /// Why the body's size does not bound the input tokens (the first such member seen), if
    /// anything does.
    pub unbounded_input: Option<String>,
}

impl Default for RequestFacts {
    fn default() -> Self {
        RequestFacts {
            model: None,
            max_output_tokens: None,
            choices: 1,
            stream: false,
            has_stream_options: false,
            include_usage: false,
            background: false,
            images: 0,
            unbounded_input: None,
        }
    }
}

/// Why a request body was refused before it was forwarded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    /// Not one JSON object (or nested deeper than 128).
    #[error("the request body is not a JSON object: {0}")]
    NotJson(String),
    /// A member the gateway reads appears twice (the vendor might read the other one).
    #[error("the request body sets {0:?} more than once")]
    Duplicate(String),
    /// A member the gateway reads has the wrong type.
    #[error("{field} in the request body must be {expected}")]
    BadField {
        /// The member (`max_tokens`).
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
}

/// The worst case of one model call, reserved against the budgets before it is forwarded and
/// replaced by the call's real usage when it ends.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Estimate {
    /// Input tokens at most: the body's bytes + [`OVERHEAD_TOKENS`] + [`IMAGE_TOKENS`] per image,
    /// or the model's whole context window when the input is unbounded; never more than the
    /// window.
    pub input_tokens: u64,
    /// Output tokens at most: the request's cap (or the model's default cap) × choices.
    pub output_tokens: u64,
    /// USD at most: input at the model's dearest input rate (uncached, cache read or cache
    /// write) plus output at its output rate; `None` when the model has no price.
    pub cost_usd: Option<f64>,
}

impl RequestFacts {
    /// The call's worst case for `model` (the body's, or the path's for Gemini) and a body of
    /// `body_bytes` bytes, priced from `prices`.
    pub fn estimate(&self, model: Option<&str>, body_bytes: u64, prices: &PriceTable) -> Estimate {
        let limits = model.map_or(ModelLimits::UNKNOWN, ModelLimits::of);
        let input = match self.unbounded_input {
            Some(_) => limits.context_tokens,
            None => body_bytes
                .saturating_add(OVERHEAD_TOKENS)
                .saturating_add(self.images.saturating_mul(IMAGE_TOKENS))
                .min(limits.context_tokens),
        };
        let output = self
            .max_output_tokens
            .unwrap_or(limits.max_output_tokens)
            .saturating_mul(self.choices.max(1));
        let cost_usd = model.and_then(|m| prices.price(m)).map(|p| {
            let input_rate = p.input.max(p.cache_read).max(p.cache_write);
            (input as f64 * input_rate + output as f64 * p.output) / 1_000_000.0
        });
        Estimate {
            input_tokens: input,
            output_tokens: output,
            cost_usd,
        }
    }
}

/// Reads the facts of a request body of `api`.
///
/// # Errors
/// [`RequestError`]: not one JSON object, a member read twice, or of the wrong type.
pub fn inspect(api: ModelApi, body: &[u8]) -> Result<RequestFacts, RequestError> {
    let mut facts = RequestFacts::default();
    let mut error = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    let walked = Top {
        api,
        facts: &mut facts,
        error: &mut error,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match (walked, error) {
        (_, Some(e)) => Err(e),
        (Err(e), None) => Err(RequestError::NotJson(e.to_string())),
        (Ok(()), None) => Ok(facts),
    }
}

/// `body` (a JSON object without a `stream_options` member) with
/// `"stream_options":{"include_usage":true}` added as its first member, so that a streamed Chat
/// Completion ends with a usage chunk. `None` when the body does not start with `{` (after
/// whitespace).
pub fn with_include_usage(body: &[u8]) -> Option<Vec<u8>> {
    const MEMBER: &[u8] = br#""stream_options":{"include_usage":true}"#;
    let open = body.iter().position(|b| !b.is_ascii_whitespace())?;
    if body[open] != b'{' {
        return None;
    }
    let rest = &body[open + 1..];
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let mut out = Vec::with_capacity(body.len() + MEMBER.len() + 1);
    out.extend_from_slice(&body[..=open]);
    out.extend_from_slice(MEMBER);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    Some(out)
}

/// `type` values of image items.
const IMAGE_TYPES: &[&str] = &["image", "image_url", "input_image"];
/// `type` values (or their prefixes) whose input tokens the body's size does not bound.
const UNBOUNDED_TYPES: &[&str] = &[
    "document",
    "file",
    "input_file",
    "input_audio",
    "audio",
    "video",
    "container_upload",
    "web_search",
    "web_fetch",
    "code_execution",
    "bash_code_execution",
    "code_interpreter",
    "file_search",
    "mcp",
    "image_generation",
];
/// Members (non-null) whose input tokens the body's size does not bound.
const UNBOUNDED_KEYS: &[&str] = &[
    "inlineData",
    "inline_data",
    "fileData",
    "file_data",
    "file_id",
    "file_url",
    "cachedContent",
    "cached_content",
    "previous_response_id",
    "conversation",
    "mcp_servers",
    "container",
    "googleSearch",
    "google_search",
    "googleSearchRetrieval",
    "google_search_retrieval",
    "urlContext",
    "url_context",
    "codeExecution",
];

fn is_unbounded_type(t: &str) -> bool {
    UNBOUNDED_TYPES
        .iter()
        .any(|u| t == *u || t.strip_prefix(u).is_some_and(|rest| rest.starts_with('_')))
}

/// A member name, borrowed from the body when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A member's value when only scalars are expected: compound values are skipped unread.
#[derive(Debug)]
enum Scalar {
    Null,
    Bool(bool),
    Number(f64),
    Str(String),
    Compound,
}

impl<'de> de::Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                // Only short strings are kept (model names); longer ones are still strings.
                Ok(Scalar::Str(v.chars().take(256).collect()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Compound)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Compound)
            }
        }
        d.deserialize_any(V)
    }
}

impl Scalar {
    /// A token count: a non-negative whole number (a float is rounded up); `null` is absent.
    fn count(self, field: &'static str) -> Result<Option<u64>, RequestError> {
        match self {
            Scalar::Null => Ok(None),
            Scalar::Number(n) if n.is_finite() && n >= 0.0 => Ok(Some(n.ceil().min(u64::MAX as f64) as u64)),
            _ => Err(RequestError::BadField {
                field,
                expected: "a non-negative number",
            }),
        }
    }

    fn flag(self, field: &'static str) -> Result<bool, RequestError> {
        match self {
            Scalar::Null => Ok(false),
            Scalar::Bool(b) => Ok(b),
            _ => Err(RequestError::BadField {
                field,
                expected: "a boolean",
            }),
        }
    }

    fn string(self, field: &'static str) -> Result<Option<String>, RequestError> {
        match self {
            Scalar::Null => Ok(None),
            Scalar::Str(s) => Ok(Some(s)),
            _ => Err(RequestError::BadField {
                field,
                expected: "a string",
            }),
        }
    }
}

/// Records a [`RequestError`] and stops the walk.
fn fail<E: de::Error>(slot: &mut Option<RequestError>, e: RequestError) -> E {
    let message = e.to_string();
    *slot = Some(e);
    E::custom(message)
}

/// Canonical names of the members read at the top level of `api`'s request (camelCase and
/// snake_case spellings of Gemini's fields map to one name).
fn top_field(api: ModelApi, key: &str) -> Option<&'static str> {
    use ModelApi::*;
    Some(match (api, key) {
        (AnthropicMessages | OpenAiChat | OpenAiResponses, "model") => "model",
        (AnthropicMessages | OpenAiChat | OpenAiResponses, "stream") => "stream",
        (AnthropicMessages | OpenAiChat, "max_tokens") => "max_tokens",
        (OpenAiChat, "max_completion_tokens") => "max_completion_tokens",
        (OpenAiChat, "n") => "n",
        (OpenAiChat, "stream_options") => "stream_options",
        (OpenAiResponses, "max_output_tokens") => "max_output_tokens",
        (OpenAiResponses, "background") => "background",
        (OpenAiResponses, "prompt") => "prompt",
        (Gemini, "generationConfig" | "generation_config") => "generationConfig",
        _ => return None,
    })
}

/// The top-level object.
struct Top<'a> {
    api: ModelApi,
    facts: &'a mut RequestFacts,
    error: &'a mut Option<RequestError>,
}

impl<'de> DeserializeSeed<'de> for Top<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: Vec<&'static str> = vec![];
        let (mut max_tokens, mut max_completion) = (None, None);
        while let Some(Key(key)) = map.next_key::<Key>()? {
            let Some(field) = top_field(self.api, &key) else {
                map.next_value_seed(Scan {
                    facts: &mut *self.facts,
                    key: Some(key.as_ref()),
                })?;
                continue;
            };
            if seen.contains(&field) {
                return Err(fail(self.error, RequestError::Duplicate(field.into())));
            }
            seen.push(field);
            let read = match field {
                "stream_options" => {
                    self.facts.has_stream_options = true;
                    map.next_value_seed(StreamOptions {
                        facts: &mut *self.facts,
                        error: &mut *self.error,
                    })?;
                    continue;
                }
                "generationConfig" => {
                    map.next_value_seed(GenerationConfig {
                        facts: &mut *self.facts,
                        error: &mut *self.error,
                    })?;
                    continue;
                }
                "prompt" => {
                    if !matches!(map.next_value::<Scalar>()?, Scalar::Null | Scalar::Str(_)) {
                        self.facts.unbounded_input.get_or_insert_with(|| "prompt".into());
                    }
                    continue;
                }
                _ => map.next_value::<Scalar>()?,
            };
            let result = match field {
                "model" => read.string("model").map(|m| self.facts.model = m),
                "stream" => read.flag("stream").map(|s| self.facts.stream = s),
                "background" => read.flag("background").map(|b| self.facts.background = b),
                "n" => read.count("n").map(|n| self.facts.choices = n.unwrap_or(1).max(1)),
                "max_tokens" => read.count("max_tokens").map(|n| max_tokens = n),
                "max_completion_tokens" => read.count("max_completion_tokens").map(|n| max_completion = n),
                "max_output_tokens" => read
                    .count("max_output_tokens")
                    .map(|n| self.facts.max_output_tokens = n),
                _ => Ok(()),
            };
            result.map_err(|e| fail(self.error, e))?;
        }
        if max_tokens.is_some() || max_completion.is_some() {
            self.facts.max_output_tokens = max_tokens.max(max_completion);
        }
        Ok(())
    }
}

/// `stream_options` of a Chat Completion.
struct StreamOptions<'a> {
    facts: &'a mut RequestFacts,
    error: &'a mut Option<RequestError>,
}

impl<'de> DeserializeSeed<'de> for StreamOptions<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StreamOptions<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object or null")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = false;
        while let Some(Key(key)) = map.next_key::<Key>()? {
            if key != "include_usage" {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if std::mem::replace(&mut seen, true) {
                return Err(fail(
                    self.error,
                    RequestError::Duplicate("stream_options.include_usage".into()),
                ));
            }
            let v = map.next_value::<Scalar>()?;
            self.facts.include_usage = v
                .flag("stream_options.include_usage")
                .map_err(|e| fail(self.error, e))?;
        }
        Ok(())
    }
}

/// Gemini's `generationConfig`.
struct GenerationConfig<'a> {
    facts: &'a mut RequestFacts,
    error: &'a mut Option<RequestError>,
}

impl<'de> DeserializeSeed<'de> for GenerationConfig<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for GenerationConfig<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object or null")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: Vec<&'static str> = vec![];
        while let Some(Key(key)) = map.next_key::<Key>()? {
            let field = match key.as_ref() {
                "maxOutputTokens" | "max_output_tokens" => "generationConfig.maxOutputTokens",
                "candidateCount" | "candidate_count" => "generationConfig.candidateCount",
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if seen.contains(&field) {
                return Err(fail(self.error, RequestError::Duplicate(field.into())));
            }
            seen.push(field);
            let n = map
                .next_value::<Scalar>()?
                .count(field)
                .map_err(|e| fail(self.error, e))?;
            if field.ends_with("maxOutputTokens") {
                self.facts.max_output_tokens = n;
            } else {
                self.facts.choices = n.unwrap_or(1).max(1);
            }
        }
        Ok(())
    }
}

/// Any other value: counts images and notes input the body's size does not bound. Returns
/// whether the value was `null`.
struct Scan<'a, 'k> {
    facts: &'a mut RequestFacts,
    /// The member this value belongs to.
    key: Option<&'k str>,
}

impl<'de> DeserializeSeed<'de> for Scan<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Scan<'_, '_> {
    fn unbounded(&mut self, why: &str) {
        if self.facts.unbounded_input.is_none() {
            self.facts.unbounded_input = Some(why.chars().take(64).collect());
        }
    }

    /// A non-null value of `self.key`.
    fn value(&mut self) {
        if let Some(k) = self.key.filter(|k| UNBOUNDED_KEYS.contains(k)) {
            self.unbounded(k);
        }
    }
}

impl<'de> Visitor<'de> for Scan<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(mut self, _: bool) -> Result<(), E> {
        self.value();
        Ok(())
    }
    fn visit_u64<E>(mut self, _: u64) -> Result<(), E> {
        self.value();
        Ok(())
    }
    fn visit_i64<E>(mut self, _: i64) -> Result<(), E> {
        self.value();
        Ok(())
    }
    fn visit_f64<E>(mut self, _: f64) -> Result<(), E> {
        self.value();
        Ok(())
    }
    fn visit_str<E>(mut self, v: &str) -> Result<(), E> {
        self.value();
        if self.key == Some("type") {
            if IMAGE_TYPES.contains(&v) {
                self.facts.images = self.facts.images.saturating_add(1);
            } else if is_unbounded_type(v) {
                self.unbounded(v);
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.value();
        while seq
            .next_element_seed(Scan {
                facts: &mut *self.facts,
                key: None,
            })?
            .is_some()
        {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.value();
        while let Some(Key(key)) = map.next_key::<Key>()? {
            map.next_value_seed(Scan {
                facts: &mut *self.facts,
                key: Some(key.as_ref()),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
