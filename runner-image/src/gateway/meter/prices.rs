//! Model prices (USD per million tokens) by model-name prefix, and the models' token limits the
//! gateway reserves budget against.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Tokens;

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

/// A model's token limits, which bound what one call can bill: its context window (the most
/// input tokens a call can carry, cached or not) and the output tokens it may generate when the
/// request sets no cap (`max_tokens` and its kin). The gateway reserves budget against these
/// before it forwards a call ([`super::RequestFacts::estimate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelLimits {
    /// Context window, tokens (input and output together; the most input one call can bill).
    pub context_tokens: u64,
    /// Output tokens a call may generate when the request sets no cap, thinking/reasoning
    /// included.
    pub max_output_tokens: u64,
}

impl ModelLimits {
    const fn new(context_tokens: u64, max_output_tokens: u64) -> Self {
        ModelLimits {
            context_tokens,
            max_output_tokens,
        }
    }

    /// For a model the table does not know: 2,097,152 tokens of context (the largest window
    /// offered as of late 2025) and 131,072 output tokens.
    pub const UNKNOWN: ModelLimits = ModelLimits::new(2 << 20, 128 << 10);

    /// The limits of `model` by longest prefix of the built-in table (the vendors' published
    /// limits as of late 2025, the larger one where a beta header raises them: Claude Sonnet 4's
    /// 1M-token context); [`ModelLimits::UNKNOWN`] for any other model.
    pub fn of(model: &str) -> ModelLimits {
        LIMITS
            .iter()
            .filter(|(prefix, _)| model.starts_with(prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or(ModelLimits::UNKNOWN, |(_, l)| *l)
    }
}

/// Context window and default output cap (tokens) by model-name prefix.
const LIMITS: &[(&str, ModelLimits)] = &[
    ("claude-opus-4-5", ModelLimits::new(200_000, 64_000)),
    ("claude-opus-4", ModelLimits::new(200_000, 32_000)),
    ("claude-sonnet-4", ModelLimits::new(1_000_000, 64_000)),
    ("claude-haiku-4", ModelLimits::new(200_000, 64_000)),
    ("claude-3-7-sonnet", ModelLimits::new(200_000, 128_000)),
    ("claude-3-5", ModelLimits::new(200_000, 8_192)),
    ("claude-3-", ModelLimits::new(200_000, 4_096)),
    ("gpt-5", ModelLimits::new(400_000, 128_000)),
    ("gpt-5-pro", ModelLimits::new(400_000, 272_000)),
    ("gpt-4.1", ModelLimits::new(1_047_576, 32_768)),
    ("gpt-4o", ModelLimits::new(128_000, 16_384)),
    ("o3", ModelLimits::new(200_000, 100_000)),
    ("o4-mini", ModelLimits::new(200_000, 100_000)),
    ("gemini-2.5", ModelLimits::new(1_048_576, 65_536)),
    ("gemini-2.0", ModelLimits::new(1_048_576, 8_192)),
    // Paddock's scripted test endpoint (e2e/scripted-model).
    ("scripted-", ModelLimits::new(200_000, 32_000)),
];

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

    #[test]
    fn limits_by_longest_prefix_and_a_conservative_default() {
        assert_eq!(ModelLimits::of("claude-opus-4-1-20250805").max_output_tokens, 32_000);
        assert_eq!(ModelLimits::of("claude-opus-4-5-20251101").max_output_tokens, 64_000);
        assert_eq!(ModelLimits::of("gpt-5-pro-2025-10-06").max_output_tokens, 272_000);
        assert_eq!(ModelLimits::of("gpt-4o-mini").context_tokens, 128_000);
        assert_eq!(ModelLimits::of("llama-3"), ModelLimits::UNKNOWN);
        for (prefix, l) in LIMITS {
            assert!(l.context_tokens <= ModelLimits::UNKNOWN.context_tokens, "{prefix}");
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
