//! Budgets a hostile agent cannot dodge, against the real `paddock-runner gateway` process and a
//! scripted model upstream (`gateway_harness`): parallel calls cannot overshoot by more than the
//! one call that crosses the limit, an unpriced model is refused under `maxCostUSD`, an OpenAI
//! stream without usage is still metered, and the totals survive a restart of the gateway.
//!
//! Prices are the built-in test price of `scripted-*` models: 1 / 10 / 0.1 / 1.25 USD per
//! million input / output / cache-read / cache-write tokens.

mod gateway_harness;

use std::time::Duration;

use gateway_harness::*;
use serde_json::{json, Value};

/// USD of `input` and `output` tokens at the `scripted-*` price.
fn usd(input: u64, output: u64) -> f64 {
    (input as f64 + output as f64 * 10.0) / 1e6
}

/// The gateway's reservation for a `scripted-*` call of `body` with `max_tokens`: the body's
/// bytes + 1000 input tokens at the dearest input rate (1.25), `max_tokens` at 10.
fn reservation(body: &Value, max_tokens: u64) -> f64 {
    let bytes = serde_json::to_vec(body).unwrap().len() as f64;
    ((bytes + 1000.0) * 1.25 + max_tokens as f64 * 10.0) / 1e6
}

fn message(model: &str, max_tokens: u64) -> Value {
    json!({"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "go"}]})
}

/// Attack: twelve calls at once against a budget that covers five. Without reservations each
/// would pass the "budget not yet reached" check before any of them settled, and all twelve would
/// be billed (12 × 0.0021 = 0.0252 USD against 0.01).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_calls_cannot_overshoot_the_budget_by_more_than_one_call() {
    let up = Upstream::start(Script {
        input_tokens: 100,
        output_tokens: 200,
        delay: Duration::from_millis(300),
    })
    .await;
    let dir = tempdir();
    let budget = 0.01;
    let gw = start_gateway(dir.path(), up.addr, &[("PADDOCK_MAX_COST_USD", "0.01")]);
    let c = client();
    let body = message("scripted-metered", 200);
    let per_call = usd(100, 200);
    let reserved = reservation(&body, 200);
    assert!(per_call <= reserved, "the scripted usage stays within the estimate");
    let n = 12;
    assert!(n as f64 * per_call > budget + reserved, "the attack would overshoot");
    let calls: Vec<_> = (0..n).map(|_| tokio::spawn(send(anthropic(&c, &gw, &body)))).collect();
    let mut answers = vec![];
    for call in calls {
        answers.push(call.await.unwrap());
    }
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let refused: Vec<_> = answers.iter().filter(|(s, _)| *s == 403).collect();
    assert_eq!(ok + refused.len(), n, "{answers:?}");
    assert!(!refused.is_empty(), "{answers:?}");
    for (_, b) in &refused {
        assert_eq!(b["error"]["type"], "permission_error", "{b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains("maxCostUSD 0.01"),
            "{b}"
        );
    }
    assert_eq!(up.seen().len(), ok, "only the admitted calls reached the upstream");
    let usage = gw.usage_after(ok as u64);
    eprintln!("admitted {ok} of {n}, reservation {reserved}: {usage}");
    let spent = usage["cost_usd"].as_f64().unwrap();
    assert!((spent - ok as f64 * per_call).abs() < 1e-9, "{usage}");
    assert!(spent >= budget, "the budget was reached: {usage}");
    assert!(
        spent < budget + reserved,
        "overshoot {} is bounded by one call's reservation {reserved}: {usage}",
        spent - budget
    );
    assert!(usage["budget_exceeded"].as_str().unwrap().contains("maxCostUSD"));
    assert!(dir.path().join("workspace/.paddock/budget-exceeded").exists());
    let refusals = gw.wait_lines("gateway_refused", refused.len());
    assert_eq!(refusals.len(), refused.len());
    assert!(refusals.iter().all(|r| r["reason"] == "BudgetExceeded"), "{refusals:?}");
}

/// Attack: under `maxCostUSD`, call a model the price table does not list (which the gateway
/// used to meter as tokens only, free in USD).
#[tokio::test]
async fn a_model_without_a_price_is_refused_under_max_cost() {
    let up = Upstream::start(Script {
        input_tokens: 1000,
        output_tokens: 1000,
        delay: Duration::ZERO,
    })
    .await;
    let dir = tempdir();
    let gw = start_gateway(dir.path(), up.addr, &[("PADDOCK_MAX_COST_USD", "5")]);
    let c = client();
    let (status, body) = send(anthropic(&c, &gw, &message("my-unlisted-model", 100))).await;
    assert_eq!(status, 403, "{body}");
    let m = body["error"]["message"].as_str().unwrap();
    assert!(m.contains("\"my-unlisted-model\"") && m.contains("has no price"), "{m}");
    // The model named by a Chat Completion.
    let (status, body) = send(
        c.post(gw.url("/openai/chat/completions"))
            .json_body(&json!({"model": "llama-3-70b", "messages": []})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "model_not_priced");
    let (status, _) = send(anthropic(&c, &gw, &json!({"max_tokens": 5, "messages": []}))).await;
    assert_eq!(status, 403, "a call that names no model is refused too");
    assert!(up.seen().is_empty(), "nothing unpriced reached the upstream");
    // A priced model goes, and the refusals were recorded.
    let (status, _) = send(anthropic(&c, &gw, &message("scripted-x", 100))).await;
    assert_eq!(status, 200);
    assert_eq!(gw.usage_after(1)["refused_requests"], 3);
    let refusals = gw.lines_of("gateway_refused");
    assert_eq!(refusals.len(), 3, "{refusals:?}");
    assert!(refusals
        .iter()
        .all(|r| r["reason"] == "UnpricedModel" && r["status"] == 403));
    // Without a cost budget the model is forwarded and its tokens counted (no USD).
    let dir = tempdir();
    let gw = start_gateway(dir.path(), up.addr, &[("PADDOCK_MAX_OUTPUT_TOKENS", "100000")]);
    let (status, _) = send(anthropic(&c, &gw, &message("my-unlisted-model", 100))).await;
    assert_eq!(status, 200);
    let usage = gw.usage_after(1);
    assert_eq!(usage["unpriced_models"], json!(["my-unlisted-model"]), "{usage}");
    assert_eq!(usage["output_tokens"], 1000);
}

/// Attack: a streamed Chat Completion without `stream_options.include_usage` carries no usage,
/// so the gateway used to meter nothing for it. The gateway now adds `include_usage` to the
/// forwarded request; when the agent sets `stream_options` itself without it, the call is
/// charged its whole reservation.
#[tokio::test]
async fn openai_streams_without_usage_are_still_metered() {
    let up = Upstream::start(Script {
        input_tokens: 300,
        output_tokens: 20,
        delay: Duration::ZERO,
    })
    .await;
    let dir = tempdir();
    let gw = start_gateway(dir.path(), up.addr, &[("PADDOCK_MAX_COST_USD", "1")]);
    let c = client();
    let chat = |body: &Value| {
        c.post(gw.url("/openai/chat/completions"))
            .bearer_auth("paddock-placeholder-key")
            .json_body(body)
    };
    let plain = json!({"model": "scripted-chat", "max_tokens": 50, "stream": true, "messages": []});
    let r = chat(&plain).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("[DONE]"));
    let forwarded: Value = serde_json::from_slice(&up.seen()[0].body).unwrap();
    assert_eq!(forwarded["stream_options"]["include_usage"], true, "{forwarded}");
    assert_eq!(forwarded["model"], "scripted-chat");
    assert_eq!(
        up.seen()[0].api_key.as_deref(),
        Some(format!("Bearer {REAL_KEY}").as_str())
    );
    let usage = gw.usage_after(1);
    assert_eq!(
        (usage["input_tokens"].as_u64(), usage["output_tokens"].as_u64()),
        (Some(300), Some(20))
    );
    assert!((usage["cost_usd"].as_f64().unwrap() - usd(300, 20)).abs() < 1e-12);
    assert_eq!(usage["estimated_requests"], 0);
    // stream_options without include_usage: no usage in the stream; charged the reservation.
    let sly = json!({"model": "scripted-chat", "max_tokens": 50, "stream": true,
                     "stream_options": {"include_obfuscation": false}, "messages": []});
    let (status, _) = send(chat(&sly)).await;
    assert_eq!(status, 200);
    let usage = gw.usage_after(2);
    assert_eq!(usage["estimated_requests"], 1, "{usage}");
    let expected = usd(300, 20) + reservation(&sly, 50);
    assert!(
        (usage["cost_usd"].as_f64().unwrap() - expected).abs() < 1e-12,
        "{usage} vs {expected}"
    );
    let transcript = gw.wait_lines("transcript", 2);
    assert_eq!(transcript.last().unwrap()["estimated"], true);
}

/// Attack: get the gateway restarted (OOM kill, crash) mid-budget so that it forgets what was
/// spent. The totals are in its state file, loaded at start.
#[tokio::test]
async fn totals_survive_a_gateway_restart() {
    let up = Upstream::start(Script {
        input_tokens: 1200,
        output_tokens: 40,
        delay: Duration::ZERO,
    })
    .await;
    let dir = tempdir();
    let env = [("PADDOCK_MAX_COST_USD", "0.002")];
    let c = client();
    let gw = start_gateway(dir.path(), up.addr, &env);
    assert_eq!(send(anthropic(&c, &gw, &message("scripted-metered", 100))).await.0, 200);
    assert_eq!(gw.usage_after(1)["cost_usd"], usd(1200, 40));
    gw.kill();
    let saved: Value = serde_json::from_slice(&std::fs::read(state_file(dir.path())).unwrap()).unwrap();
    assert_eq!(saved["totals"]["requests"], 1, "{saved}");
    // The new process starts from the recorded totals (and says so on its log).
    let gw = start_gateway(dir.path(), up.addr, &env);
    assert_eq!(gw.usage_after(1)["cost_usd"], usd(1200, 40));
    // 0.0016 + 0.0016 crosses 0.002: the second call is delivered, the third refused.
    assert_eq!(send(anthropic(&c, &gw, &message("scripted-metered", 100))).await.0, 200);
    let usage = gw.usage_after(2);
    assert!(
        usage["budget_exceeded"].as_str().unwrap().contains("maxCostUSD 0.002"),
        "{usage}"
    );
    let (status, body) = send(anthropic(&c, &gw, &message("scripted-metered", 100))).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(up.seen().len(), 2);
    // And a third process still refuses.
    gw.kill();
    let gw = start_gateway(dir.path(), up.addr, &env);
    assert_eq!(send(anthropic(&c, &gw, &message("scripted-metered", 100))).await.0, 403);
    assert_eq!(up.seen().len(), 2);
}

/// Attack: kill the gateway while a call is in flight, so that its usage is never settled. The
/// next process charges the reservation the state file still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_flight_when_the_gateway_dies_is_charged_its_reservation() {
    let up = Upstream::start(Script {
        input_tokens: 10,
        output_tokens: 10,
        delay: Duration::from_secs(3),
    })
    .await;
    let dir = tempdir();
    let env = [("PADDOCK_MAX_COST_USD", "1")];
    let c = client();
    let gw = start_gateway(dir.path(), up.addr, &env);
    let body = message("scripted-metered", 1000);
    let call = tokio::spawn(anthropic(&c, &gw, &body).send());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while up.seen().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the call never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.kill();
    assert!(call.await.unwrap().is_err() || up.seen().len() == 1);
    let gw = start_gateway(dir.path(), up.addr, &env);
    let usage = gw.usage_after(1);
    assert_eq!(usage["estimated_requests"], 1, "{usage}");
    assert!(
        (usage["cost_usd"].as_f64().unwrap() - reservation(&body, 1000)).abs() < 1e-12,
        "{usage}"
    );
    assert_eq!(usage["output_tokens"], 1000);
}

/// Attack: hang up as soon as the call reached the upstream, hoping the gateway stops reading
/// (and metering) what the vendor still bills. The call is read to its end and settled anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_mid_call_is_still_charged() {
    let up = Upstream::start(Script {
        input_tokens: 700,
        output_tokens: 30,
        delay: Duration::from_millis(500),
    })
    .await;
    let dir = tempdir();
    let gw = start_gateway(dir.path(), up.addr, &[("PADDOCK_MAX_COST_USD", "1")]);
    let c = client();
    let call = tokio::spawn(anthropic(&c, &gw, &message("scripted-metered", 100)).send());
    while up.seen().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    call.abort();
    let usage = gw.usage_after(1);
    assert_eq!(
        (usage["input_tokens"].as_u64(), usage["output_tokens"].as_u64()),
        (Some(700), Some(30))
    );
    assert_eq!(usage["estimated_requests"], 0, "{usage}");
}
