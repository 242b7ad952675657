//! End-to-end: real cluster, Paddock installed by its Helm chart, real runner image, real agent
//! CLIs against the scripted model endpoint, real git. Each test owns a namespace.

use anyhow::Result;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use paddock_crds::Reason;
use paddock_crds::{AgentRun, ApprovalGate, Phase};
use paddock_e2e::{condition, env, gunzip, phase, whoami, GitRepo, TestNs};
use serde_json::json;
use std::time::Duration;

const RUN_TIMEOUT: Duration = Duration::from_secs(180);

fn run_manifest(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "metadata": {"name": name}, "spec": spec})
}

/// A namespace with the `default` pool and a one-file repository: what most tests start from.
async fn setup(prefix: &str) -> Result<(TestNs, GitRepo)> {
    let ns = TestNs::new(prefix).await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool("default", None).await?;
    Ok((ns, repo))
}

/// Applies a `shell` AgentRun `name` on `repo` running `prompt`, with `extra` merged into its spec.
async fn shell_run(
    ns: &TestNs,
    repo: &GitRepo,
    name: &str,
    prompt: &str,
    extra: serde_json::Value,
) -> Result<AgentRun> {
    let mut spec = json!({"repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": prompt});
    for (k, v) in extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    ns.apply::<AgentRun>(run_manifest(name, spec)).await
}

/// A real agent CLI edits a file through the scripted model; the run ends Succeeded with the
/// commit pushed, the diff recorded, and Events telling the story.
async fn agent_edits_a_file(agent: &str, key_env: &str) -> Result<()> {
    let ns = TestNs::new(agent).await?;
    let repo = GitRepo::create(&format!("{}-{agent}", ns.name), &[("README.md", "# demo\n")])?;
    ns.pool("default", None).await?;
    ns.secret("model-key", "key", "sk-e2e-planted-model-key-0123456789")
        .await?;
    let name = format!("{agent}-edit");
    ns.apply::<AgentRun>(run_manifest(
        &name,
        json!({
            "repo": {"url": repo.url},
            "agent": {"name": agent, "model": "scripted-edit-file",
                      "env": [{"name": key_env, "valueFrom": {"secretKeyRef": {"name": "model-key", "key": "key"}}}]},
            "prompt": "Create hello.txt with a greeting.",
            "output": {"push": true},
            "budget": {"timeout": "5m"},
        }),
    ))
    .await?;
    let run = ns.wait_finished(&name, RUN_TIMEOUT).await?;
    let status = run.status.clone().unwrap_or_default();
    if phase(&run) != Some(Phase::Succeeded) {
        ns.dump().await;
    }
    assert_eq!(
        phase(&run),
        Some(Phase::Succeeded),
        "status: {}",
        serde_json::to_string_pretty(&status)?
    );
    let (s, reason, _) = condition(&run, "Succeeded").unwrap();
    assert_eq!((s.as_str(), reason.as_str()), ("True", "Succeeded"));
    let result = status.result.clone().expect("result");
    assert_eq!(result.run.files_changed, 1, "{result:?}");
    assert!(result.run.pushed, "branch pushed: {result:?}");
    let branch = format!("paddock/{name}");
    assert_eq!(result.run.branch, branch);
    // The commit is in the repository, with the file the CLI's tool call wrote.
    let content = repo.show(&branch, "hello.txt")?;
    assert!(
        content.contains("Hello from the scripted model"),
        "hello.txt: {content:?}"
    );
    assert!(repo
        .message(&branch)?
        .contains(&format!("Paddock-Run: {}/{name}", ns.name)));
    // The patch and the log outlive the pod.
    let cms = ns.api::<ConfigMap>();
    let patch_cm = cms.get(result.patch_ref.as_deref().expect("patchRef")).await?;
    let patch = gunzip(&patch_cm.binary_data.unwrap()["patch.gz"].0)?;
    assert!(patch.contains("+++ b/hello.txt"), "patch: {patch}");
    let log = cms.get(result.log_ref.as_deref().expect("logRef")).await?.data.unwrap()["events.jsonl"].clone();
    assert!(log.contains(r#""type":"tool_call""#), "log has the tool call: {log}");
    assert!(
        !log.contains("sk-e2e-planted-model-key"),
        "the API key never reaches the log"
    );
    // The run's transitions become Events; its progress steps stay in the event log (above),
    // not Events, unless the operator runs with --step-events (chart: events.steps).
    let events = ns
        .wait_events(
            &name,
            &[Reason::PodCreated.as_str(), Reason::Succeeded.as_str()],
            Duration::from_secs(15),
        )
        .await?;
    assert!(
        !events
            .iter()
            .any(|(r, _)| matches!(r.as_str(), "AgentStarted" | "ToolCall" | "StepSucceeded")),
        "no step Events by default: {events:?}"
    );
    assert!(
        status.usage.as_ref().is_some_and(|u| u.output_tokens > 0),
        "usage reported: {:?}",
        status.usage
    );
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn claude_code_edits_a_file() -> Result<()> {
    agent_edits_a_file("claude-code", "ANTHROPIC_API_KEY").await
}

#[tokio::test]
async fn codex_edits_a_file() -> Result<()> {
    agent_edits_a_file("codex", "OPENAI_API_KEY").await
}

#[tokio::test]
async fn qwen_code_edits_a_file() -> Result<()> {
    agent_edits_a_file("qwen-code", "OPENAI_API_KEY").await
}

#[tokio::test]
async fn opencode_edits_a_file() -> Result<()> {
    agent_edits_a_file("opencode", "OPENAI_API_KEY").await
}

#[tokio::test]
async fn gemini_cli_edits_a_file() -> Result<()> {
    agent_edits_a_file("gemini-cli", "GEMINI_API_KEY").await
}

/// OpenHands (on the image's Python 3.12) writes hello.txt with its `terminal` tool; the
/// scripted model fills in the `security_risk` OpenHands requires on every call.
#[tokio::test]
async fn openhands_edits_a_file() -> Result<()> {
    agent_edits_a_file("openhands", "OPENAI_API_KEY").await
}

#[tokio::test]
async fn shell_failure_says_why() -> Result<()> {
    let (ns, repo) = setup("fail").await?;
    shell_run(
        &ns,
        &repo,
        "fails",
        "echo working; echo 'tests are red' >&2; exit 3",
        json!({}),
    )
    .await?;
    let run = ns.wait_finished("fails", RUN_TIMEOUT).await?;
    assert_eq!(phase(&run), Some(Phase::Failed));
    let (s, reason, message) = condition(&run, "Succeeded").unwrap();
    assert_eq!(
        (s.as_str(), reason.as_str()),
        ("False", Reason::AgentFailed.as_str()),
        "{message}"
    );
    assert!(
        message.contains("agent") && message.contains('3'),
        "message names the step and the exit code: {message}"
    );
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn timeout_ends_timed_out() -> Result<()> {
    let (ns, repo) = setup("timeout").await?;
    shell_run(&ns, &repo, "slow", "sleep 600", json!({"budget": {"timeout": "10s"}})).await?;
    let run = ns.wait_finished("slow", RUN_TIMEOUT).await?;
    assert_eq!(phase(&run), Some(Phase::TimedOut), "{:?}", run.status);
    assert_eq!(
        condition(&run, "Succeeded").map(|c| c.1),
        Some(Reason::TimedOut.to_string())
    );
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn cancel_stops_the_pod() -> Result<()> {
    let (ns, repo) = setup("cancel").await?;
    shell_run(&ns, &repo, "long", "echo started; sleep 600", json!({})).await?;
    ns.wait_run("long", RUN_TIMEOUT, "running", |r| {
        condition(r, "Running").is_some_and(|c| c.1 == Reason::AgentRunning)
    })
    .await?;
    ns.api::<AgentRun>()
        .patch(
            "long",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cancel": true}})),
        )
        .await?;
    let run = ns.wait_finished("long", Duration::from_secs(60)).await?;
    assert_eq!(phase(&run), Some(Phase::Cancelled));
    // The pod goes away; the log stays readable.
    let pods = ns.api::<Pod>();
    let t0 = std::time::Instant::now();
    while pods
        .get_opt("long-1")
        .await?
        .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
    {
        assert!(t0.elapsed() < Duration::from_secs(60), "pod not deleted");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let log = ns.api::<ConfigMap>().get("long-log").await?.data.unwrap()["events.jsonl"].clone();
    assert!(log.contains("started"), "log of the cancelled run: {log}");
    // Un-cancelling is refused by the API server.
    let err = ns
        .api::<AgentRun>()
        .patch(
            "long",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cancel": false}})),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot be unset"), "{err}");
    ns.cleanup().await;
    Ok(())
}

async fn gated_run(decision: &str) -> Result<(TestNs, AgentRun)> {
    let (ns, repo) = setup(&format!("gate-{}", decision.to_lowercase())).await?;
    shell_run(
        &ns,
        &repo,
        "gated",
        "echo approved > approved.txt",
        json!({"approvals": {"beforeStart": {}}}),
    )
    .await?;
    ns.wait_run("gated", RUN_TIMEOUT, "awaiting approval", |r| {
        phase(r) == Some(Phase::AwaitingApproval)
    })
    .await?;
    // Runner pods (the pool's egress gateway has its own pod from the start).
    let runner_pods = ListParams::default().labels(paddock_crds::LABEL_RUN);
    assert!(
        ns.api::<Pod>().list(&runner_pods).await?.items.is_empty(),
        "no pod before approval"
    );
    let gate = ns.api::<ApprovalGate>().get("gated-before-start").await?;
    assert!(
        gate.spec.request.summary.contains("approved.txt"),
        "{}",
        gate.spec.request.summary
    );
    // The chart's admission policy admits only decisions in the requester's own name.
    let me = whoami(&ns.client).await?;
    ns.api::<ApprovalGate>()
        .patch(
            "gated-before-start",
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(json!([
                {"op": "add", "path": "/spec/decisions/-", "value": {"approver": me, "decision": decision, "comment": "e2e"}}
            ]))?),
        )
        .await?;
    let run = ns.wait_finished("gated", RUN_TIMEOUT).await?;
    Ok((ns, run))
}

#[tokio::test]
async fn before_start_gate_approved() -> Result<()> {
    let (ns, run) = gated_run("Approve").await?;
    assert_eq!(phase(&run), Some(Phase::Succeeded), "{:?}", run.status);
    assert_eq!(
        condition(&run, "AwaitingApproval").map(|c| (c.0, c.1)),
        Some(("False".into(), "Approved".into()))
    );
    let gate = ns.api::<ApprovalGate>().get("gated-before-start").await?;
    assert_eq!(gate.status.and_then(|s| s.decided_by), Some(whoami(&ns.client).await?));
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn before_start_gate_rejected() -> Result<()> {
    let (ns, run) = gated_run("Reject").await?;
    assert_eq!(phase(&run), Some(Phase::Rejected), "{:?}", run.status);
    assert_eq!(
        condition(&run, "Succeeded").map(|c| (c.0, c.1)),
        Some(("False".into(), "Rejected".into()))
    );
    assert!(
        ns.api::<Pod>()
            .list(&ListParams::default().labels(paddock_crds::LABEL_RUN))
            .await?
            .items
            .is_empty(),
        "no runner pod after a rejection"
    );
    // Decisions are append-only.
    let err = ns
        .api::<ApprovalGate>()
        .patch(
            "gated-before-start",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"decisions": []}})),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn before_start_gate_expires() -> Result<()> {
    let (ns, repo) = setup("expire").await?;
    shell_run(
        &ns,
        &repo,
        "expires",
        "echo never > never.txt",
        json!({"approvals": {"beforeStart": {"timeout": "6s"}}}),
    )
    .await?;
    shell_run(
        &ns,
        &repo,
        "auto",
        "echo ok > ok.txt",
        json!({"approvals": {"beforeStart": {"timeout": "4s", "onTimeout": "Approve"}}}),
    )
    .await?;
    // No decision: the gate warns, then expires, and the run ends Rejected without a pod.
    let run = ns.wait_finished("expires", RUN_TIMEOUT).await?;
    assert_eq!(phase(&run), Some(Phase::Rejected), "{:?}", run.status);
    assert_eq!(
        condition(&run, "Succeeded").map(|c| c.1),
        Some(Reason::GateExpired.to_string())
    );
    let gate = ns.api::<ApprovalGate>().get("expires-before-start").await?;
    let st = gate.status.unwrap_or_default();
    assert_eq!(st.state, Some(paddock_crds::GateState::Expired));
    assert!(st.expires_at.is_some());
    ns.wait_events(
        "expires-before-start",
        &["ExpiringSoon", "Expired"],
        Duration::from_secs(15),
    )
    .await?;
    assert!(
        ns.api::<Pod>().get_opt("expires-1").await?.is_none(),
        "no pod for an expired gate"
    );
    // onTimeout Approve: expiry lets the run go on.
    let auto = ns.wait_finished("auto", RUN_TIMEOUT).await?;
    assert_eq!(phase(&auto), Some(Phase::Succeeded), "{:?}", auto.status);
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn pool_limit_queues_the_second_run() -> Result<()> {
    let ns = TestNs::new("queue").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool("one", Some(1)).await?;
    for name in ["first", "second"] {
        ns.apply::<AgentRun>(run_manifest(name, json!({
            "repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": format!("sleep 8; echo {name} > {name}.txt"),
            "runnerPoolRef": {"name": "one"},
        }))).await?;
        tokio::time::sleep(Duration::from_millis(1100)).await; // distinct creation seconds
    }
    let second = ns
        .wait_run("second", RUN_TIMEOUT, "queued", |r| phase(r) == Some(Phase::Queued))
        .await?;
    assert_eq!(second.status.as_ref().and_then(|s| s.queue_position), Some(1));
    // While the first runs, the second has no pod; at no time do both run.
    let runs = ns.api::<AgentRun>();
    loop {
        let first = runs.get("first").await?;
        let second = runs.get("second").await?;
        let both = [&first, &second].iter().all(|r| phase(r) == Some(Phase::Running));
        assert!(!both, "maxConcurrentRuns 1 exceeded");
        if phase(&first).is_some_and(Phase::is_terminal) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let second = ns.wait_finished("second", RUN_TIMEOUT).await?;
    assert_eq!(phase(&second), Some(Phase::Succeeded));
    assert_eq!(
        condition(&second, "Queued").map(|c| (c.0, c.1)),
        Some(("False".into(), "Admitted".into()))
    );
    let first = runs.get("first").await?;
    let first_end = first.status.and_then(|s| s.completion_time).unwrap();
    let second_start = second.status.and_then(|s| s.start_time).unwrap();
    assert!(
        second_start.0 >= first_end.0,
        "second started {second_start:?} before first ended {first_end:?}"
    );
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn bad_manifests_are_refused_by_the_api_server() -> Result<()> {
    let ns = TestNs::new("bad").await?;
    let base = json!({"repo": {"url": "https://example.com/x.git"}, "agent": {"name": "shell"}, "prompt": "true"});
    let cases = [
        (
            "ext-url",
            json!({"repo": {"url": "ext::sh -c touch% /tmp/pwned"}}),
            "repo.url must be",
        ),
        (
            "option-branch",
            json!({"output": {"branch": "--upload-pack=evil"}}),
            "output.branch",
        ),
        (
            "unknown-agent",
            json!({"agent": {"name": "hal9000"}}),
            "Unsupported value",
        ),
        (
            "literal-key",
            json!({"agent": {"name": "shell", "env": [{"name": "OPENAI_API_KEY", "value": "sk-x"}]}}),
            "secretKeyRef",
        ),
        (
            "two-prompts",
            json!({"promptFrom": {"name": "cm", "key": "k"}}),
            "exactly one of spec.prompt",
        ),
        (
            "absurd-timeout",
            json!({"budget": {"timeout": "100000h"}}),
            "budget.timeout",
        ),
        (
            "option-revision",
            json!({"repo": {"url": "https://example.com/x.git", "revision": "--upload-pack=touch /tmp/pwned"}}),
            "repo.revision",
        ),
        (
            "escaping-revision",
            json!({"repo": {"url": "https://example.com/x.git", "revision": "../../x"}}),
            "repo.revision",
        ),
        (
            "option-url",
            json!({"repo": {"url": "-uhttps://example.com/x.git"}}),
            "repo.url must be",
        ),
        ("huge-prompt", json!({"prompt": "x".repeat(70_000)}), "spec.prompt"),
        ("absurd-cost", json!({"budget": {"maxCostUSD": 1e12}}), "maxCostUSD"),
        ("zero-turns", json!({"budget": {"maxTurns": 0}}), "maxTurns"),
        (
            "custom-without-command",
            json!({"agent": {"name": "custom"}}),
            "agent.command is required for agent custom",
        ),
        (
            "command-for-another-agent",
            json!({"agent": {"name": "claude-code", "command": ["sh", "-c", "id"]}}),
            "agent.command is required for agent custom and only allowed there",
        ),
    ];
    for (name, overlay, want) in cases {
        let mut spec = base.clone();
        for (k, v) in overlay.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let err = ns.apply::<AgentRun>(run_manifest(name, spec)).await.unwrap_err();
        assert!(err.to_string().contains(want), "{name}: expected {want:?} in {err}");
    }
    // A valid run may not change its prompt after creation.
    ns.apply::<AgentRun>(run_manifest("ok", base.clone())).await?;
    let err = ns
        .api::<AgentRun>()
        .patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"prompt": "rm -rf /"}})),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("immutable"), "{err}");
    // References are local by construction: a `namespace` next to a pool's or Secret's name is
    // not part of the schema. Server-side apply (kubectl apply --server-side, Argo CD, Flux)
    // refuses it; a plain create prunes it, so the run looks in its own namespace only.
    let mut elsewhere = base.clone();
    elsewhere["runnerPoolRef"] = json!({"name": "default", "namespace": "kube-system"});
    elsewhere["agent"]["env"] = json!([{"name": "TOKEN_FILE",
        "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "namespace": "kube-system"}}}]);
    let err = ns
        .apply::<AgentRun>(run_manifest("elsewhere", elsewhere.clone()))
        .await
        .unwrap_err()
        .to_string();
    for field in [
        ".spec.runnerPoolRef.namespace",
        ".spec.agent.env[0].valueFrom.secretKeyRef.namespace",
    ] {
        assert!(err.contains(&format!("{field}: field not declared in schema")), "{err}");
    }
    // Untyped, so the request and the read-back carry what our types could not hold.
    let raw: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &kube::api::ApiResource::erase::<AgentRun>(&()),
    );
    let request: kube::api::DynamicObject = serde_json::from_value(run_manifest("elsewhere", elsewhere))?;
    assert_eq!(request.data["spec"]["runnerPoolRef"]["namespace"], "kube-system");
    raw.create(&Default::default(), &request).await?;
    let stored = raw.get("elsewhere").await?.data["spec"].clone();
    assert_eq!(stored["runnerPoolRef"], json!({"name": "default"}), "{stored}");
    assert!(stored["agent"]["env"][0]["valueFrom"]["secretKeyRef"]
        .get("namespace")
        .is_none());
    let waiting = ns
        .wait_run("elsewhere", Duration::from_secs(60), "waiting for its pool", |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.conditions.iter().any(|c| c.reason == Reason::PoolNotFound))
        })
        .await?;
    let message = waiting
        .status
        .unwrap_or_default()
        .conditions
        .into_iter()
        .find(|c| c.reason == Reason::PoolNotFound)
        .map(|c| c.message)
        .unwrap_or_default();
    assert!(message.contains(&format!("namespace {}", ns.name)), "{message}");
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn planted_secret_never_persisted() -> Result<()> {
    let ns = TestNs::new("secret").await?;
    let planted = "planted-Secret-9f8e7d6c5b4a";
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool("default", None).await?;
    ns.secret("token", "value", planted).await?;
    ns.apply::<AgentRun>(run_manifest("leaky", json!({
        "repo": {"url": repo.url},
        "agent": {"name": "shell", "env": [{"name": "MY_TOKEN", "valueFrom": {"secretKeyRef": {"name": "token", "key": "value"}}}]},
        "prompt": "echo \"token is $MY_TOKEN\"; echo \"$MY_TOKEN\" >&2; echo \"$MY_TOKEN\" > leaked.txt",
        "output": {"commitMessage": "leak attempt"},
    }))).await?;
    let run = ns.wait_finished("leaky", RUN_TIMEOUT).await?;
    assert_eq!(phase(&run), Some(Phase::Succeeded), "{:?}", run.status);
    let mut persisted = serde_json::to_string(&run)?;
    for cm in ns.api::<ConfigMap>().list(&ListParams::default()).await?.items {
        persisted.push_str(&serde_json::to_string(&cm.data)?);
        if let Some(b) = cm.binary_data.as_ref().and_then(|b| b.get("patch.gz")) {
            persisted.push_str(&gunzip(&b.0)?);
        }
    }
    for (reason, note) in ns.wait_events("leaky", &["Succeeded"], Duration::from_secs(15)).await? {
        persisted.push_str(&reason);
        persisted.push_str(&note);
    }
    assert!(
        persisted.contains("[REDACTED]"),
        "the runner saw and redacted the secret"
    );
    assert!(!persisted.contains(planted), "planted secret found in persisted output");
    ns.cleanup().await;
    Ok(())
}

/// The environment is wired (catches a misconfigured run-e2e.sh before the slower tests fail).
#[tokio::test]
async fn environment_is_configured() -> Result<()> {
    for v in [
        "PADDOCK_E2E_RUNNER_IMAGE",
        "PADDOCK_E2E_MODEL_URL",
        "PADDOCK_E2E_GIT_ROOT",
        "PADDOCK_E2E_GIT_URL",
    ] {
        env(v)?;
    }
    Ok(())
}

/// Appends `verdict` to `gate` in the caller's own name, the documented `kubectl patch` way.
async fn decide(ns: &TestNs, gate: &str, verdict: &str) -> Result<()> {
    let me = whoami(&ns.client).await?;
    ns.api::<ApprovalGate>()
        .patch(
            gate,
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(json!([
                {"op": "add", "path": "/spec/decisions/-", "value": {"approver": me, "decision": verdict, "comment": "e2e"}}
            ]))?),
        )
        .await?;
    Ok(())
}

/// BeforePush rejected: the run committed, but the branch never reaches the remote and the run
/// ends Rejected.
#[tokio::test]
async fn before_push_gate_rejected() -> Result<()> {
    let (ns, repo) = setup("push-rej").await?;
    shell_run(
        &ns,
        &repo,
        "nopush",
        "echo unwanted > unwanted.txt",
        json!({"output": {"push": true}, "approvals": {"beforePush": {}}}),
    )
    .await?;
    ns.wait_run("nopush", RUN_TIMEOUT, "awaiting the push approval", |r| {
        phase(r) == Some(Phase::AwaitingApproval)
    })
    .await?;
    let gate = ns.api::<ApprovalGate>().get("nopush-push").await?;
    let patch_ref = gate.spec.request.patch_ref.clone().expect("the gate links the patch");
    let cm = ns.api::<ConfigMap>().get(&patch_ref).await?;
    let gz = cm
        .binary_data
        .and_then(|d| d.get("patch.gz").cloned())
        .expect("patch.gz");
    assert!(gunzip(&gz.0)?.contains("+unwanted"), "the patch under review");
    decide(&ns, "nopush-push", "Reject").await?;
    let run = ns.wait_finished("nopush", RUN_TIMEOUT).await?;
    assert_eq!(phase(&run), Some(Phase::Rejected), "{:?}", run.status);
    assert_eq!(condition(&run, "Succeeded").map(|c| c.1), Some("Rejected".into()));
    let result = run.status.and_then(|s| s.result).expect("result");
    assert!(!result.run.pushed && result.run.commit.is_some(), "{result:?}");
    assert!(repo.show("paddock/nopush", "unwanted.txt").is_err(), "never pushed");
    ns.cleanup().await;
    Ok(())
}

/// Runs the `tool-gate` script with Claude Code: it asks to run `git rm -r -q doomed`, which
/// matches the run's toolUse rule; the run waits on `<name>-tool-1` until `verdict`. Returns the
/// finished run.
async fn tool_gated_run(ns: &TestNs, repo: &GitRepo, name: &str, verdict: &str) -> Result<AgentRun> {
    ns.apply::<AgentRun>(run_manifest(
        name,
        json!({
            "repo": {"url": repo.url},
            "agent": {"name": "claude-code", "model": "scripted-tool-gate",
                      "env": [{"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "model-key", "key": "key"}}}]},
            "prompt": "Remove the doomed directory, then write notes.txt.",
            "output": {"push": true},
            "approvals": {"toolUse": {"rules": [{"tool": "Bash", "pattern": "git rm *"}]}},
        }),
    ))
    .await?;
    let gate_name = format!("{name}-tool-1");
    let run = ns
        .wait_run(name, RUN_TIMEOUT, "awaiting the tool approval", |r| {
            phase(r) == Some(Phase::AwaitingApproval)
        })
        .await?;
    assert_eq!(run.status.and_then(|s| s.gate_name), Some(gate_name.clone()));
    let gate = ns.api::<ApprovalGate>().get(&gate_name).await?;
    assert_eq!(gate.spec.stage, paddock_crds::GateStage::ToolUse);
    assert_eq!(gate.spec.request.tool.as_deref(), Some("Bash"));
    assert_eq!(gate.spec.request.input.as_deref(), Some("git rm -r -q doomed"));
    let t0 = std::time::Instant::now();
    decide(ns, &gate_name, verdict).await?;
    ns.wait_run(name, RUN_TIMEOUT, "running again", |r| {
        phase(r) != Some(Phase::AwaitingApproval)
    })
    .await?;
    eprintln!(
        "ToolUse {verdict}: decision → run left AwaitingApproval in {:?}",
        t0.elapsed()
    );
    ns.wait_finished(name, RUN_TIMEOUT).await
}

/// ToolUse with Claude Code: a rejected `git rm` never runs and the CLI sees a denial; an
/// approved one runs. The branch each run pushed proves it.
#[tokio::test]
async fn tool_use_gate_rejects_and_approves() -> Result<()> {
    let ns = TestNs::new("tooluse").await?;
    let repo = GitRepo::create(
        &format!("{}-r", ns.name),
        &[("README.md", "# gated\n"), ("doomed/keep.txt", "keep\n")],
    )?;
    ns.pool("default", None).await?;
    ns.secret("model-key", "key", "sk-e2e-planted-model-key-0123456789")
        .await?;

    let rejected = tool_gated_run(&ns, &repo, "denied", "Reject").await?;
    assert_eq!(phase(&rejected), Some(Phase::Succeeded), "{:?}", rejected.status);
    let r = rejected.status.clone().and_then(|s| s.result).expect("result");
    assert_eq!((r.run.files_changed, r.run.deletions), (1, 0), "only notes.txt: {r:?}");
    assert_eq!(
        repo.show("paddock/denied", "doomed/keep.txt")?,
        "keep\n",
        "git rm never ran"
    );
    assert!(repo.show("paddock/denied", "notes.txt").is_ok());
    let log = ns.api::<ConfigMap>().get("denied-log").await?;
    let events = log
        .data
        .and_then(|d| d.get("events.jsonl").cloned())
        .unwrap_or_default();
    assert!(
        events.contains("a human rejected this call at ApprovalGate denied-tool-1"),
        "the CLI got the denial: {events}"
    );
    assert!(events.contains("\"type\":\"approval_decided\""), "{events}");
    ns.wait_events("denied", &["ApprovalRequested"], Duration::from_secs(30))
        .await?;

    let approved = tool_gated_run(&ns, &repo, "allowed", "Approve").await?;
    assert_eq!(phase(&approved), Some(Phase::Succeeded), "{:?}", approved.status);
    let r = approved.status.clone().and_then(|s| s.result).expect("result");
    assert_eq!(
        (r.run.files_changed, r.run.deletions),
        (2, 1),
        "notes.txt + doomed/keep.txt deleted: {r:?}"
    );
    assert!(repo.show("paddock/allowed", "doomed/keep.txt").is_err(), "git rm ran");
    ns.cleanup().await;
    Ok(())
}

/// A runner pod deleted mid-run is a retryable failure: with `retry.limit: 1` attempt 2 runs in
/// pod `<run>-2` and succeeds; attempt 1 stays in `status.attempts` with its reason and its log.
/// Without `retry` the same deletion ends the run.
#[tokio::test]
async fn deleted_pod_is_retried() -> Result<()> {
    let (ns, repo) = setup("retry").await?;
    let prompt = "echo attempt-started; sleep 6; echo done > done.txt";
    shell_run(
        &ns,
        &repo,
        "again",
        prompt,
        json!({"retry": {"limit": 1, "backoff": "1s"}}),
    )
    .await?;
    shell_run(&ns, &repo, "once", prompt, json!({})).await?;
    for name in ["again", "once"] {
        ns.wait_run(name, RUN_TIMEOUT, "running its agent", |r| {
            condition(r, "Running").is_some_and(|c| c.1 == Reason::AgentRunning)
        })
        .await?;
        // Once the agent printed its line (the follower reads the same log), delete the pod as
        // a node drain or a human would. (A fixed sleep raced a slow agent start on a busy node.)
        let pod = format!("{name}-1");
        let logs = kube::api::LogParams {
            container: Some("agent".into()),
            ..Default::default()
        };
        let t0 = std::time::Instant::now();
        while !ns
            .api::<Pod>()
            .logs(&pod, &logs)
            .await
            .unwrap_or_default()
            .contains("attempt-started")
        {
            anyhow::ensure!(t0.elapsed() < Duration::from_secs(60), "{pod} printed nothing");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        ns.api::<Pod>()
            .delete(&format!("{name}-1"), &Default::default())
            .await?;
    }
    let run = ns.wait_finished("again", RUN_TIMEOUT).await?;
    assert_eq!(phase(&run), Some(Phase::Succeeded), "{:?}", run.status);
    let st = run.status.clone().unwrap_or_default();
    assert_eq!((st.attempt, st.pod_name.as_deref()), (Some(2), Some("again-2")));
    assert_eq!(st.attempts.len(), 1, "{:?}", st.attempts);
    let a1 = &st.attempts[0];
    assert_eq!((a1.attempt, a1.pod_name.as_str()), (1, "again-1"));
    assert!(
        matches!(Reason::parse(&a1.reason), Some(Reason::PodDeleted | Reason::PodLost)),
        "{a1:?}"
    );
    let log_ref = a1.log_ref.clone().expect("attempt 1's log is kept");
    let log = ns.api::<ConfigMap>().get(&log_ref).await?;
    let text = log
        .data
        .and_then(|d| d.get("events.jsonl").cloned())
        .unwrap_or_default();
    assert!(text.contains("attempt-started"), "attempt 1's log: {text}");
    assert_eq!(
        repo.show("paddock/again", "done.txt").ok(),
        None,
        "nothing pushed without output.push"
    );
    assert!(
        st.result.as_ref().is_some_and(|r| r.run.files_changed == 1),
        "{:?}",
        st.result
    );
    ns.wait_events("again", &[Reason::Retrying.as_str()], Duration::from_secs(30))
        .await?;

    let once = ns.wait_finished("once", RUN_TIMEOUT).await?;
    assert_eq!(phase(&once), Some(Phase::Failed), "{:?}", once.status);
    let reason = condition(&once, "Succeeded").map(|c| c.1).unwrap_or_default();
    assert!(
        matches!(Reason::parse(&reason), Some(Reason::PodDeleted | Reason::PodLost)),
        "{reason}"
    );
    assert!(once.status.unwrap_or_default().attempts.is_empty());
    ns.cleanup().await;
    Ok(())
}
