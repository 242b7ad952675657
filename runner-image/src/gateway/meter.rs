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
//!
//! Parts: [`UsageParser`] reads usage from responses (`usage.rs`); [`PriceTable`] prices it and
//! [`ModelLimits`] bounds what one call can bill (`prices.rs`); [`inspect`] reads a request's
//! model, output cap and input size so the gateway can reserve the call's worst case
//! ([`RequestFacts::estimate`]) before forwarding it (`request.rs`).

mod prices;
mod request;
mod usage;

pub use prices::{ModelLimits, Price, PriceError, PriceTable};
pub use request::{inspect, with_include_usage, Estimate, RequestError, RequestFacts, IMAGE_TOKENS, OVERHEAD_TOKENS};
pub use usage::UsageParser;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
