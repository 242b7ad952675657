//! The request reader on each API's bodies, hostile ones included.

use super::*;

fn facts(api: ModelApi, body: &str) -> RequestFacts {
    inspect(api, body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"))
}

#[test]
fn reads_each_apis_fields() {
    let f = facts(
        ModelApi::AnthropicMessages,
        r#"{"model":"claude-sonnet-4-5","max_tokens":32000,"stream":true,"n":5,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(f.model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!((f.max_output_tokens, f.choices, f.stream), (Some(32000), 1, true));
    let f = facts(
        ModelApi::OpenAiChat,
        r#"{"model":"gpt-4o","max_tokens":10,"max_completion_tokens":700,"n":3,"stream":true,"stream_options":{"include_usage":true}}"#,
    );
    assert_eq!((f.max_output_tokens, f.choices), (Some(700), 3));
    assert!(f.has_stream_options && f.include_usage);
    let f = facts(
        ModelApi::OpenAiResponses,
        r#"{"model":"gpt-5","max_tokens":1,"max_output_tokens":null,"background":true,"input":"hi"}"#,
    );
    assert_eq!(f.max_output_tokens, None, "max_tokens is not the Responses API's cap");
    assert!(f.background);
    let f = facts(
        ModelApi::Gemini,
        r#"{"contents":[{"parts":[{"text":"hi"}]}],"generation_config":{"max_output_tokens":2048,"candidateCount":2}}"#,
    );
    assert_eq!((f.model, f.max_output_tokens, f.choices), (None, Some(2048), 2));
}

#[test]
fn media_and_server_side_state_are_noticed() {
    let f = facts(
        ModelApi::AnthropicMessages,
        r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","data":"AA=="}},{"type":"image","source":{"type":"url","url":"https://x"}}]}]}"#,
    );
    assert_eq!((f.images, f.unbounded_input), (2, None));
    for (api, body, why) in [
        (
            ModelApi::AnthropicMessages,
            r#"{"messages":[{"content":[{"type":"document","source":{}}]}]}"#,
            "document",
        ),
        (
            ModelApi::AnthropicMessages,
            r#"{"tools":[{"type":"web_search_20250305","name":"web_search"}]}"#,
            "web_search_20250305",
        ),
        (
            ModelApi::OpenAiResponses,
            r#"{"previous_response_id":"resp_1","input":"go on"}"#,
            "previous_response_id",
        ),
        (ModelApi::OpenAiResponses, r#"{"prompt":{"id":"pmpt_1"}}"#, "prompt"),
        (
            ModelApi::Gemini,
            r#"{"cachedContent":"cachedContents/1","contents":[]}"#,
            "cachedContent",
        ),
        (
            ModelApi::Gemini,
            r#"{"contents":[{"parts":[{"inlineData":{"mimeType":"video/mp4","data":""}}]}]}"#,
            "inlineData",
        ),
    ] {
        assert_eq!(facts(api, body).unbounded_input.as_deref(), Some(why), "{body}");
    }
    let f = facts(
        ModelApi::OpenAiResponses,
        r#"{"previous_response_id":null,"prompt":"hi","text":"type"}"#,
    );
    assert_eq!(f.unbounded_input, None);
    // A member name is compared unescaped, as the vendor reads it.
    let f = facts(ModelApi::OpenAiResponses, r#"{"previous\u005fresponse_id":"resp_1"}"#);
    assert!(f.unbounded_input.is_some());
}

#[test]
fn ambiguous_or_malformed_bodies_are_refused() {
    let err = |api, body: &str| inspect(api, body.as_bytes()).unwrap_err();
    assert_eq!(
        err(ModelApi::AnthropicMessages, r#"{"max_tokens":1,"max_tokens":64000}"#),
        RequestError::Duplicate("max_tokens".into())
    );
    assert_eq!(
        err(ModelApi::AnthropicMessages, r#"{"model":"a","m\u006fdel":"b"}"#),
        RequestError::Duplicate("model".into())
    );
    assert_eq!(
        err(ModelApi::Gemini, r#"{"generationConfig":{},"generation_config":{}}"#),
        RequestError::Duplicate("generationConfig".into())
    );
    assert!(matches!(
        err(ModelApi::OpenAiChat, r#"{"max_tokens":"100"}"#),
        RequestError::BadField {
            field: "max_tokens",
            ..
        }
    ));
    assert!(matches!(
        err(ModelApi::OpenAiChat, r#"{"max_tokens":-1}"#),
        RequestError::BadField { .. }
    ));
    assert!(matches!(
        err(ModelApi::OpenAiChat, r#"[1,2]"#),
        RequestError::NotJson(_)
    ));
    assert!(matches!(
        err(ModelApi::OpenAiChat, r#"{"a":1} {}"#),
        RequestError::NotJson(_)
    ));
    assert!(matches!(
        err(ModelApi::OpenAiChat, "not json"),
        RequestError::NotJson(_)
    ));
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
    assert!(matches!(err(ModelApi::OpenAiChat, &deep), RequestError::NotJson(_)));
}

#[test]
fn estimates_bound_the_worst_case() {
    let prices = PriceTable::builtin();
    let f = facts(ModelApi::OpenAiChat, r#"{"model":"scripted-x","max_tokens":100,"n":2}"#);
    let e = f.estimate(Some("scripted-x"), 500, &prices);
    assert_eq!((e.input_tokens, e.output_tokens), (1500, 200));
    // Input at the dearest input rate (cache write 1.25), output at 10 USD per million.
    let cost = e.cost_usd.unwrap();
    assert!((cost - (1500.0 * 1.25 + 200.0 * 10.0) / 1e6).abs() < 1e-12, "{cost}");
    // No cap: the model's default; unbounded input: its whole window.
    let f = facts(
        ModelApi::AnthropicMessages,
        r#"{"messages":[{"content":[{"type":"document"}]}]}"#,
    );
    let e = f.estimate(Some("claude-opus-4-1"), 80, &prices);
    assert_eq!((e.input_tokens, e.output_tokens), (200_000, 32_000));
    let e = f.estimate(Some("no-such-model"), 80, &prices);
    assert_eq!(e.cost_usd, None);
    assert_eq!(e.output_tokens, ModelLimits::UNKNOWN.max_output_tokens);
}

#[test]
fn include_usage_is_added_as_the_first_member() {
    let body = br#"  {"model":"gpt-4o","stream":true}"#;
    let out = with_include_usage(body).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["stream_options"]["include_usage"], true);
    assert_eq!(v["model"], "gpt-4o");
    let v: serde_json::Value = serde_json::from_slice(&with_include_usage(b"{ }").unwrap()).unwrap();
    assert_eq!(v["stream_options"]["include_usage"], true);
    assert_eq!(with_include_usage(b"[1]"), None);
}
