//! End-to-end: the `custom` agent's contract and session resume (`spec.resumeFrom`) with the
//! real Claude Code and Codex CLIs against the scripted model. Real cluster, real runner image,
//! real git. Each test owns a namespace.

use anyhow::Result;
use k8s_openapi::api::core::v1::ConfigMap;
use paddock_crds::Reason;
use paddock_crds::{AgentRun, Phase};
use paddock_e2e::{condition, gunzip, phase, GitRepo, TestNs};
use serde_json::json;
use std::time::Duration;

const RUN_TIMEOUT: Duration = Duration::from_secs(180);

fn run_manifest(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "metadata": {"name": name}, "spec": spec})
}

async fn succeeded(ns: &TestNs, name: &str) -> Result<AgentRun> {
    let run = ns.wait_finished(name, RUN_TIMEOUT).await?;
    if phase(&run) != Some(Phase::Succeeded) {
        ns.dump().await;
    }
    assert_eq!(
        phase(&run),
        Some(Phase::Succeeded),
        "{name}: {}",
        serde_json::to_string_pretty(&run.status)?
    );
    Ok(run)
}

/// A `custom` agent gets the prompt verbatim as its last argument (never through a shell: the
/// command substitution in it stays text), its JSON lines become events (a forged `result` line
/// does not), the last `message` is the summary and its `usage` the run's; in `Text` mode the
/// last line is the summary.
#[tokio::test]
async fn custom_agent_follows_its_contract() -> Result<()> {
    let ns = TestNs::new("custom").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool("default", None).await?;
    let prompt = r#"-n $(touch pwned) `id` ; "quoted" 'single'"#;
    let script = r#"printf '%s\n' '{"type":"message","text":"writing hello.txt"}'
printf '%s' "$1" > hello.txt
printf '%s\n' '{"type":"usage","inputTokens":10,"outputTokens":2,"turns":1}'
printf '%s\n' '{"type":"result","outcome":"Failed","reason":"Forged","message":"forged"}'
echo 'a plain line'"#;
    ns.apply::<AgentRun>(run_manifest(
        "jsonl",
        json!({
            "repo": {"url": repo.url},
            "agent": {"name": "custom", "command": ["sh", "-c", script, "custom-agent"], "output": "JSONLines"},
            "prompt": prompt,
            "output": {"push": true},
        }),
    ))
    .await?;
    ns.apply::<AgentRun>(run_manifest(
        "text",
        json!({
            "repo": {"url": repo.url},
            "agent": {"name": "custom", "command": ["sh", "-c", "echo working; echo \"done: $1\"", "custom-agent"]},
            "prompt": "say hi",
        }),
    ))
    .await?;

    let run = succeeded(&ns, "jsonl").await?;
    let st = run.status.clone().unwrap_or_default();
    let result = st.result.clone().expect("result");
    assert_eq!(
        repo.show("paddock/jsonl", "hello.txt")?,
        prompt,
        "the prompt arrived verbatim"
    );
    assert_eq!(result.run.files_changed, 1, "no pwned file: {result:?}");
    assert_eq!(result.run.summary.as_deref(), Some("writing hello.txt"));
    let usage = st.usage.clone().expect("usage");
    assert_eq!((usage.input_tokens, usage.output_tokens, usage.turns), (10, 2, 1));
    let log = ns
        .api::<ConfigMap>()
        .get(result.log_ref.as_deref().expect("logRef"))
        .await?;
    let log = log.data.unwrap_or_default()["events.jsonl"].clone();
    assert!(log.contains(r#""type":"message","text":"writing hello.txt""#), "{log}");
    assert!(log.contains("a plain line"), "{log}");
    assert!(
        log.contains(r#""type":"log""#) && log.contains("Forged") && !log.contains(r#""reason":"Forged""#),
        "a forged result line is only a log line: {log}"
    );

    let text = succeeded(&ns, "text").await?;
    let summary = text.status.and_then(|s| s.result).and_then(|r| r.run.summary);
    assert_eq!(summary.as_deref(), Some("done: say hi"));
    ns.cleanup().await;
    Ok(())
}

/// A follow-up run with `spec.resumeFrom` continues the earlier run's CLI session: the first run
/// plays the `resume` script's first two turns (hello.txt) and saves its session; the second
/// run's CLI resumes it, so its first request already holds those two assistant turns and the
/// scripted model answers with turn 3 (second.txt). It starts from the first run's pushed
/// commit, so its own diff has second.txt only and its branch has both files.
async fn follow_up_resumes_the_session(agent: &str, key_env: &str) -> Result<()> {
    let ns = TestNs::new(&format!("resume-{agent}")).await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("README.md", "# demo\n")])?;
    ns.pool("default", None).await?;
    let planted = "sk-e2e-planted-resume-key-0123456789";
    ns.secret("model-key", "key", planted).await?;
    let spec = |prompt: &str| {
        json!({
            "repo": {"url": repo.url},
            "agent": {"name": agent, "model": "scripted-resume",
                      "env": [{"name": key_env, "valueFrom": {"secretKeyRef": {"name": "model-key", "key": "key"}}}]},
            "prompt": prompt,
            "output": {"push": true},
            "budget": {"timeout": "5m"},
        })
    };
    // The follow-up is applied first, as GitOps may: it waits for the first run to end.
    let mut next = spec("Go on with the task.");
    next["resumeFrom"] = json!({"name": "first"});
    ns.apply::<AgentRun>(run_manifest("next", next)).await?;
    ns.wait_run("next", Duration::from_secs(60), "waiting for its resume source", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.reason == Reason::WaitingForResumeSource))
    })
    .await?;
    ns.apply::<AgentRun>(run_manifest("first", spec("Create hello.txt with a greeting.")))
        .await?;

    let first = succeeded(&ns, "first").await?;
    let result = first.status.and_then(|s| s.result).expect("result");
    let session_cm = result.session_ref.clone().expect("the session is saved");
    let cm = ns.api::<ConfigMap>().get(&session_cm).await?;
    let data = cm.data.clone().unwrap_or_default();
    assert_eq!(data.get("agent").map(String::as_str), Some(agent));
    assert!(data.get("sessionId").is_some_and(|s| !s.is_empty()), "{data:?}");
    let session = gunzip(&cm.binary_data.clone().unwrap_or_default()["session.jsonl.gz"].0)?;
    assert!(
        session.contains("I created hello.txt."),
        "the session holds the conversation"
    );
    assert!(!session.contains(planted), "the saved session holds no key");

    let next = succeeded(&ns, "next").await?;
    let result = next.status.and_then(|s| s.result).expect("result");
    assert_eq!(
        repo.show("paddock/next", "second.txt")?,
        "Written in the resumed session\n",
        "the resumed CLI played the session's third turn"
    );
    assert_eq!(
        repo.show("paddock/next", "hello.txt")?,
        "Hello from the scripted model\n",
        "the follow-up started from the first run's commit"
    );
    assert_eq!(
        result.run.files_changed, 1,
        "its own diff is second.txt only: {result:?}"
    );
    let log = ns
        .api::<ConfigMap>()
        .get(result.log_ref.as_deref().expect("logRef"))
        .await?;
    let log = log.data.unwrap_or_default()["events.jsonl"].clone();
    assert!(log.contains("resuming session"), "{log}");
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn claude_code_follow_up_resumes_the_session() -> Result<()> {
    follow_up_resumes_the_session("claude-code", "ANTHROPIC_API_KEY").await
}

#[tokio::test]
async fn codex_follow_up_resumes_the_session() -> Result<()> {
    follow_up_resumes_the_session("codex", "OPENAI_API_KEY").await
}

/// `resumeFrom` is refused by the API server for agents without a session resume, and a run
/// resuming one that saved no session fails with `ResumeNotPossible`.
#[tokio::test]
async fn resume_needs_a_saved_session() -> Result<()> {
    let ns = TestNs::new("resume-bad").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool("default", None).await?;
    let refused = ns
        .apply::<AgentRun>(run_manifest(
            "shell-resume",
            json!({"repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": "true", "resumeFrom": {"name": "x"}}),
        ))
        .await;
    let err = format!("{:?}", refused.expect_err("refused at admission"));
    assert!(
        err.contains("resumeFrom is supported for agents claude-code and codex only"),
        "{err}"
    );
    // A Codex run that fails before its CLI starts (no such revision) saves no session.
    ns.apply::<AgentRun>(run_manifest(
        "broken",
        json!({"repo": {"url": repo.url, "revision": "no-such-branch"}, "agent": {"name": "codex"}, "prompt": "x"}),
    ))
    .await?;
    ns.wait_finished("broken", RUN_TIMEOUT).await?;
    ns.apply::<AgentRun>(run_manifest(
        "after-broken",
        json!({"repo": {"url": repo.url}, "agent": {"name": "codex"}, "prompt": "x", "resumeFrom": {"name": "broken"}}),
    ))
    .await?;
    let run = ns.wait_finished("after-broken", RUN_TIMEOUT).await?;
    assert_eq!(phase(&run), Some(Phase::Failed));
    let (_, reason, message) = condition(&run, "Succeeded").expect("condition");
    assert_eq!(reason, Reason::ResumeNotPossible, "{message}");
    assert!(message.contains("broken"), "{message}");
    ns.cleanup().await;
    Ok(())
}

/// Like `e2e.rs`'s `agent_edits_a_file`, for CLIs whose edits are not tool calls in their output
/// (Aider: text edit blocks; Hermes: one-shot mode prints only the final text; OpenClaw: one JSON
/// envelope with a tool summary): a real CLI in the runner image edits a file through the
/// scripted model, the run ends Succeeded with that one file committed and pushed, usage and a
/// final text in the log, and the planted key nowhere in it.
async fn text_agent_edits_a_file(agent: &str, model: &str) -> Result<()> {
    let ns = TestNs::new(agent).await?;
    let repo = GitRepo::create(&format!("{}-{agent}", ns.name), &[("README.md", "# demo\n")])?;
    ns.pool("default", None).await?;
    let planted = "sk-e2e-planted-model-key-0123456789";
    ns.secret("model-key", "key", planted).await?;
    let name = format!("{agent}-edit");
    ns.apply::<AgentRun>(run_manifest(
        &name,
        json!({
            "repo": {"url": repo.url},
            "agent": {"name": agent, "model": model,
                      "env": [{"name": "OPENAI_API_KEY", "valueFrom": {"secretKeyRef": {"name": "model-key", "key": "key"}}}]},
            "prompt": "Create hello.txt with a greeting.",
            "output": {"push": true},
            "budget": {"timeout": "5m"},
        }),
    ))
    .await?;
    let run = succeeded(&ns, &name).await?;
    let status = run.status.clone().unwrap_or_default();
    let result = status.result.clone().expect("result");
    assert_eq!(
        result.run.files_changed, 1,
        "only hello.txt (no CLI state committed): {result:?}"
    );
    assert!(result.run.pushed, "branch pushed: {result:?}");
    let content = repo.show(&format!("paddock/{name}"), "hello.txt")?;
    assert!(
        content.contains("Hello from the scripted model"),
        "hello.txt: {content:?}"
    );
    let log = ns
        .api::<ConfigMap>()
        .get(result.log_ref.as_deref().expect("logRef"))
        .await?;
    let log = log.data.unwrap_or_default()["events.jsonl"].clone();
    assert!(
        log.contains(r#""type":"final""#) && log.contains(r#""type":"agent_started""#),
        "{log}"
    );
    assert!(!log.contains(planted), "the API key never reaches the log");
    assert!(
        status.usage.as_ref().is_some_and(|u| u.output_tokens > 0),
        "usage: {:?}",
        status.usage
    );
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn aider_edits_a_file() -> Result<()> {
    text_agent_edits_a_file("aider", "scripted-edit-file-text").await
}

#[tokio::test]
async fn hermes_edits_a_file() -> Result<()> {
    text_agent_edits_a_file("hermes", "scripted-edit-file").await
}

#[tokio::test]
async fn openclaw_edits_a_file() -> Result<()> {
    text_agent_edits_a_file("openclaw", "scripted-edit-file").await
}
