//! End-to-end for the runner pod's gateway: model keys held only by the gateway (the scripted
//! endpoint's `keyed-edit` script refuses requests without the real key, so a run can only
//! succeed if the gateway injected it), exact metering into `status.usage`, the hard budget,
//! the egress allowlist, and the transcript (`kubectl paddock transcript`).

use anyhow::Result;
use k8s_openapi::api::core::v1::ConfigMap;
use paddock_crds::Reason;
use paddock_crds::{AgentRun, Phase};
use paddock_e2e::{condition, gunzip, phase, GitRepo, TestNs};
use serde_json::json;
use std::time::Duration;

const RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// The key `e2e/scripts/keyed-edit.json` requires.
const REAL_KEY: &str = "sk-e2e-gateway-real-key-7c1f0a92d4";

fn run_manifest(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "metadata": {"name": name}, "spec": spec})
}

/// A Node.js client (the runner image has Node) that sends the Anthropic Messages request of
/// turn N of `scripted-metered` to `$ANTHROPIC_BASE_URL` (the gateway) with the agent's
/// (placeholder) key; odd turns stream. Prints the HTTP status; exits 3 on an error status.
const CALL_JS: &str = r#"cat > /tmp/call.js <<'JS'
const n = Number(process.argv[2]);
const messages = [];
for (let i = 0; i < n; i++) messages.push({role: "user", content: "go"}, {role: "assistant", content: "ok"});
messages.push({role: "user", content: "go"});
fetch(process.env.ANTHROPIC_BASE_URL + "/v1/messages", {method: "POST",
  headers: {"content-type": "application/json", "x-api-key": process.env.ANTHROPIC_API_KEY, "anthropic-version": "2023-06-01"},
  body: JSON.stringify({model: process.env.MODEL || "scripted-metered", max_tokens: 100, stream: n % 2 === 1, messages,
                        tools: [{name: "noop", description: "unused", input_schema: {type: "object"}}]})})
  .then(async r => { await r.text(); console.log("call " + n + ": " + r.status); if (r.status >= 400) process.exit(3); });
JS
"#;

#[tokio::test]
async fn claude_code_and_codex_work_with_placeholder_keys_only() -> Result<()> {
    let ns = TestNs::new("gw-keys").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("README.md", "# gw\n")])?;
    ns.pool("default", None).await?;
    ns.secret("model-key", "key", REAL_KEY).await?;
    // Control: the endpoint does refuse a request without the real key (a direct call through
    // the gateway of a pod whose Secret holds another key).
    ns.secret("wrong-key", "key", "sk-e2e-not-the-key-00000000000").await?;
    ns.apply::<AgentRun>(run_manifest(
        "wrong-key",
        json!({
            "repo": {"url": repo.url},
            "agent": {"name": "shell", "env": [
                {"name": "MODEL", "value": "scripted-keyed-edit"},
                {"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wrong-key", "key": "key"}}}]},
            "prompt": format!("{CALL_JS}node /tmp/call.js 0 > status.txt || true"),
            "output": {"push": true},
        }),
    ))
    .await?;
    for (agent, key_env) in [("claude-code", "ANTHROPIC_API_KEY"), ("codex", "OPENAI_API_KEY")] {
        ns.apply::<AgentRun>(run_manifest(
            agent,
            json!({
                "repo": {"url": repo.url},
                "agent": {"name": agent, "model": "scripted-keyed-edit",
                          "env": [{"name": key_env, "valueFrom": {"secretKeyRef": {"name": "model-key", "key": "key"}}}]},
                "prompt": "Create hello.txt with a greeting.",
                "output": {"push": true},
                "budget": {"timeout": "5m"},
            }),
        ))
        .await?;
    }
    // The agent container itself: its key is the placeholder and the real one is nowhere it
    // can read (environment and command line of every process it can see, its files).
    // The key is searched for in two halves joined by the shell's printf builtin and fed
    // through a pipe, so the pattern is in no process's command line or environment.
    let (a, b) = REAL_KEY.split_at(REAL_KEY.len() / 2);
    let probe = format!(
        "echo \"$ANTHROPIC_API_KEY\" > seen-key.txt; \
         if printf '%s%s' '{a}' '{b}' | grep -rqsF -f /dev/stdin /proc/[0-9]*/environ /proc/[0-9]*/cmdline /workspace /home/paddock /tmp /etc/paddock; \
         then echo leak; else echo clean; fi > scan.txt; \
         if printf '%s%s' 'paddock-place' 'holder-key' | grep -qsF -f /dev/stdin /proc/[0-9]*/environ; \
         then echo seen; else echo unseen; fi > control.txt"
    );
    ns.apply::<AgentRun>(run_manifest(
        "probe",
        json!({
            "repo": {"url": repo.url},
            "agent": {"name": "shell",
                      "env": [{"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "model-key", "key": "key"}}}]},
            "prompt": probe,
            "output": {"push": true},
        }),
    ))
    .await?;
    for agent in ["claude-code", "codex"] {
        let r = ns.wait_finished(agent, RUN_TIMEOUT).await?;
        if phase(&r) != Some(Phase::Succeeded) {
            ns.dump().await;
        }
        assert_eq!(phase(&r), Some(Phase::Succeeded), "{agent}: {:?}", r.status);
        assert_eq!(
            repo.show(&format!("paddock/{agent}"), "hello.txt")?,
            "Hello from the scripted model\n"
        );
        let usage = r.status.as_ref().and_then(|s| s.usage.clone()).unwrap_or_default();
        // Both scripted turns were metered by the gateway (side requests add to them).
        assert!(
            usage.input_tokens >= 2500 && usage.output_tokens >= 50,
            "{agent}: {usage:?}"
        );
        assert!(usage.cost_usd.is_some_and(|c| c > 0.0), "{agent}: priced: {usage:?}");
    }
    let wrong = ns.wait_finished("wrong-key", RUN_TIMEOUT).await?;
    assert_eq!(phase(&wrong), Some(Phase::Succeeded), "{:?}", wrong.status);
    assert_eq!(repo.show("paddock/wrong-key", "status.txt")?, "call 0: 401\n");
    let probe = ns.wait_finished("probe", RUN_TIMEOUT).await?;
    assert_eq!(phase(&probe), Some(Phase::Succeeded), "{:?}", probe.status);
    assert_eq!(repo.show("paddock/probe", "seen-key.txt")?, "paddock-placeholder-key\n");
    assert_eq!(repo.show("paddock/probe", "scan.txt")?, "clean\n");
    // The same scan finds the placeholder the processes do hold: it would have seen the key.
    assert_eq!(repo.show("paddock/probe", "control.txt")?, "seen\n");
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn usage_is_metered_exactly_and_the_transcript_outlives_the_pod() -> Result<()> {
    let ns = TestNs::new("gw-meter").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("README.md", "# gw\n")])?;
    ns.pool("default", None).await?;
    let prompt = format!("{CALL_JS}node /tmp/call.js 0 && node /tmp/call.js 1 && echo done > done.txt");
    ns.apply::<AgentRun>(run_manifest(
        "metered",
        json!({"repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": prompt}),
    ))
    .await?;
    let r = ns.wait_finished("metered", RUN_TIMEOUT).await?;
    assert_eq!(phase(&r), Some(Phase::Succeeded), "{:?}", r.status);
    let usage = r.status.as_ref().and_then(|s| s.usage.clone()).unwrap_or_default();
    // Turn 0 (JSON): 1200 in / 40 out; turn 1 (SSE): 1300 / 10 — from e2e/scripts/metered.json.
    assert_eq!(
        (usage.input_tokens, usage.output_tokens, usage.turns),
        (2500, 50, 2),
        "{usage:?}"
    );
    // The built-in test price of `scripted-*`: 1 USD / 10 USD per million input / output tokens.
    let cost = usage.cost_usd.unwrap_or_default();
    assert!((cost - 0.003).abs() < 1e-9, "{cost}");

    // The transcript is a ConfigMap owned by the run, readable after the pod is gone.
    let pod = r.status.as_ref().and_then(|s| s.pod_name.clone()).unwrap_or_default();
    ns.api::<k8s_openapi::api::core::v1::Pod>()
        .delete(&pod, &Default::default())
        .await?;
    let cm = ns.api::<ConfigMap>().get("metered-transcript").await?;
    let gz = cm
        .binary_data
        .unwrap_or_default()
        .remove("transcript.jsonl.gz")
        .expect("transcript");
    let text = gunzip(&gz.0)?;
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["path"], "/v1/messages");
    assert_eq!(
        (lines[0]["input_tokens"].as_u64(), lines[1]["output_tokens"].as_u64()),
        (Some(1200), Some(10))
    );
    assert!(
        lines[1]["response"]
            .as_str()
            .unwrap_or_default()
            .contains("message_delta"),
        "the stream is recorded"
    );
    assert!(!text.contains(REAL_KEY));
    // The plugin renders it.
    // The plugin as built ($CARGO_TARGET_DIR honoured: a hard-coded target/ failed under it).
    let plugin = std::process::Command::new(paddock_e2e::plugin_binary()?)
        .args(["-n", &ns.name, "transcript", "metered"])
        .output()?;
    let shown = String::from_utf8_lossy(&plugin.stdout);
    assert!(plugin.status.success(), "{}", String::from_utf8_lossy(&plugin.stderr));
    assert!(
        shown.contains("#1 ") && shown.contains("in=1200 out=40") && shown.contains("in=1300 out=10"),
        "{shown}"
    );
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn the_cost_budget_stops_the_agent_and_keeps_its_work() -> Result<()> {
    let ns = TestNs::new("gw-budget").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("README.md", "# gw\n")])?;
    ns.pool("default", None).await?;
    // 0.0016 USD after the first call, 0.003 after the second: over the 0.002 budget.
    let prompt = format!(
        "{CALL_JS}echo partial > partial.txt; node /tmp/call.js 0; node /tmp/call.js 1; \
         node /tmp/call.js 2 > third.txt; sleep 30; echo late > late.txt"
    );
    ns.apply::<AgentRun>(run_manifest(
        "budget",
        json!({"repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": prompt,
               "budget": {"maxCostUSD": 0.002}}),
    ))
    .await?;
    let r = ns.wait_finished("budget", RUN_TIMEOUT).await?;
    assert_eq!(phase(&r), Some(Phase::Failed), "{:?}", r.status);
    let (_, reason, message) = condition(&r, "Succeeded").unwrap_or_default();
    assert_eq!(reason, Reason::BudgetExceeded, "{message}");
    assert!(message.contains("maxCostUSD 0.002"), "{message}");
    let st = r.status.clone().unwrap_or_default();
    let result = st.result.expect("result");
    assert!(result.run.commit.is_some(), "the work so far is committed: {result:?}");
    let patch_ref = result.patch_ref.expect("patch");
    let cm = ns.api::<ConfigMap>().get(&patch_ref).await?;
    let patch = gunzip(&cm.binary_data.unwrap_or_default()["patch.gz"].0)?;
    assert!(patch.contains("+partial"), "{patch}");
    assert!(!patch.contains("late.txt"), "the agent was stopped: {patch}");
    // The third call raced the runner stopping the agent; if it was made, it was refused.
    if patch.contains("+call 2:") {
        assert!(
            patch.contains("+call 2: 403"),
            "a call after the budget is refused: {patch}"
        );
    }
    let usage = st.usage.unwrap_or_default();
    assert_eq!((usage.input_tokens, usage.output_tokens), (2500, 50), "{usage:?}");
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn egress_outside_the_allowlist_is_refused_and_reported() -> Result<()> {
    let ns = TestNs::new("gw-egress").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("README.md", "# gw\n")])?;
    ns.pool_with(
        "default",
        json!({"network": {"egress": [{"host": "allowed.paddock.test"}, {"host": "*.also-allowed.test", "ports": [443]}]}}),
    )
    .await?;
    // git speaks through https_proxy: CONNECT to each host.
    let prompt = "git ls-remote https://blocked.paddock.test/x.git > /dev/null 2> blocked.err; \
                  git ls-remote https://allowed.paddock.test/x.git > /dev/null 2> allowed.err; \
                  echo tried > tried.txt";
    ns.apply::<AgentRun>(run_manifest(
        "egress",
        json!({"repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": prompt,
               "network": {"egress": [{"host": "allowed.paddock.test"}]}}),
    ))
    .await?;
    let r = ns.wait_finished("egress", RUN_TIMEOUT).await?;
    assert_eq!(phase(&r), Some(Phase::Succeeded), "{:?}", r.status);
    let events = ns
        .wait_events("egress", &["EgressDenied"], Duration::from_secs(30))
        .await?;
    let denied: Vec<&String> = events
        .iter()
        .filter(|(r, _)| r == "EgressDenied")
        .map(|(_, n)| n)
        .collect();
    assert!(
        denied.iter().any(|n| n.contains("blocked.paddock.test:443")),
        "{denied:?}"
    );
    assert!(!denied.iter().any(|n| n.contains("allowed.paddock.test")), "{denied:?}");
    // A run may not widen the pool's list.
    ns.apply::<AgentRun>(run_manifest(
        "wider",
        json!({"repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": "true",
               "network": {"egress": [{"host": "evil.example"}]}}),
    ))
    .await?;
    let w = ns.wait_finished("wider", RUN_TIMEOUT).await?;
    let (_, reason, message) = condition(&w, "Succeeded").unwrap_or_default();
    assert_eq!(
        (phase(&w), reason.as_str()),
        (Some(Phase::Failed), Reason::OverrideNotAllowed.as_str()),
        "{message}"
    );
    assert!(message.contains("evil.example"), "{message}");
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn a_model_endpoint_error_is_retried() -> Result<()> {
    let ns = TestNs::new("gw-retry").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("README.md", "# gw\n")])?;
    ns.pool("default", None).await?;
    // Attempt 1 (pod `<run>-1`) talks to a script that answers 503; attempt 2 to one that works.
    let prompt = format!(
        "{CALL_JS}case \"$(cat /proc/sys/kernel/hostname)\" in *-1) export MODEL=scripted-unavailable ;; esac; \
         node /tmp/call.js 0 && echo ok > ok.txt"
    );
    ns.apply::<AgentRun>(run_manifest(
        "flaky",
        json!({"repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": prompt,
               "retry": {"limit": 1, "backoff": "1s"}}),
    ))
    .await?;
    let r = ns.wait_finished("flaky", RUN_TIMEOUT).await?;
    let st = r.status.clone().unwrap_or_default();
    assert_eq!(phase(&r), Some(Phase::Succeeded), "{st:?}");
    assert_eq!(st.attempt, Some(2), "{st:?}");
    let first = st.attempts.first().expect("attempt 1 in the history");
    assert_eq!(first.reason, Reason::ModelUnavailable, "{first:?}");
    assert!(first.message.contains("HTTP 503"), "{first:?}");
    // An agent's own failure is not retried: same run without the endpoint error fails once.
    ns.apply::<AgentRun>(run_manifest(
        "broken",
        json!({"repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": "exit 7",
               "retry": {"limit": 1, "backoff": "1s"}}),
    ))
    .await?;
    let b = ns.wait_finished("broken", RUN_TIMEOUT).await?;
    let bst = b.status.clone().unwrap_or_default();
    assert_eq!((phase(&b), bst.attempts.len()), (Some(Phase::Failed), 0), "{bst:?}");
    ns.cleanup().await;
    Ok(())
}
