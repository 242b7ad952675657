//! End-to-end: several agents on one task (issue 19, docs/fan-out.md). An AgentRunSet runs
//! three real CLIs — Claude Code, Codex, Gemini CLI — against the scripted model on a small
//! Python repository with a failing test: one fixes the code, one makes the failing test pass
//! but breaks another, one edits the (protected) test. The repository's own unittest run
//! judges them; only the winner's branch is pushed.

use anyhow::{bail, Result};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams};
use paddock_crds::Reason;
use paddock_crds::{AgentRun, AgentRunSet, ApprovalGate, Phase, SetPhase, VerificationResult};
use paddock_e2e::{client_as, condition, kubectl_paddock, phase, whoami, GitRepo, TestNs};
use serde_json::json;
use std::time::{Duration, Instant};

const SET_TIMEOUT: Duration = Duration::from_secs(480);

const CALC: &str = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n";
const TEST: &str = "import unittest\n\nfrom calc import add, mul\n\n\nclass CalcTest(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n    def test_mul(self):\n        self.assertEqual(mul(2, 3), 6)\n";

/// The namespace (pool `default`, the model key, and `mallory` allowed by RBAC to patch gates,
/// so that a refusal of her pick is the admission policy's) and the repository.
async fn setup(prefix: &str) -> Result<(TestNs, GitRepo)> {
    let ns = TestNs::new(prefix).await?;
    let repo = GitRepo::create(
        &format!("{}-r", ns.name),
        &[
            ("calc.py", CALC),
            ("tests/__init__.py", ""),
            ("tests/test_calc.py", TEST),
        ],
    )?;
    ns.pool("default", None).await?;
    ns.secret("model-key", "key", "sk-e2e-set-model-key-0123456789").await?;
    ns.apply::<Role>(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "gate-deciders"},
        "rules": [{"apiGroups": ["paddock.dev"], "resources": ["approvalgates"], "verbs": ["get", "patch"]}],
    }))
    .await?;
    ns.apply::<RoleBinding>(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "gate-deciders"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gate-deciders"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory"}],
    }))
    .await?;
    Ok((ns, repo))
}

fn candidate(name: &str, agent: &str, script: &str, key_env: &str) -> serde_json::Value {
    json!({"name": name, "agent": {"name": agent, "model": format!("scripted-{script}"),
           "env": [{"name": key_env, "valueFrom": {"secretKeyRef": {"name": "model-key", "key": "key"}}}]}})
}

/// The set: Claude Code fixes the code, Codex breaks `mul`, Gemini CLI edits the test.
fn set_manifest(name: &str, repo: &GitRepo, required: bool, extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({
        "template": {"spec": {
            "repo": {"url": repo.url}, "agent": {"name": "shell"},
            "prompt": "The test suite fails (python3 -m unittest). Fix the code.",
            "output": {"push": true}, "budget": {"timeout": "8m"},
            "verify": {"command": ["python3", "-B", "-m", "unittest", "discover", "-s", "tests", "-t", "."],
                       "protectedPaths": ["tests/**"], "timeout": "2m", "required": required},
        }},
        "candidates": [
            candidate("claude", "claude-code", "set-right", "ANTHROPIC_API_KEY"),
            candidate("codex", "codex", "set-breaks", "OPENAI_API_KEY"),
            candidate("gemini", "gemini-cli", "set-cheat", "GEMINI_API_KEY"),
        ],
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRunSet", "metadata": {"name": name}, "spec": spec})
}

/// Waits until `done` holds for set `name`.
async fn wait_set(ns: &TestNs, name: &str, what: &str, done: impl Fn(&AgentRunSet) -> bool) -> Result<AgentRunSet> {
    let api = ns.api::<AgentRunSet>();
    let t0 = Instant::now();
    loop {
        let s = api.get(name).await?;
        if done(&s) {
            return Ok(s);
        }
        if t0.elapsed() > SET_TIMEOUT {
            ns.dump().await;
            bail!("set {name} never {what}: {:?}", s.status);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn set_phase(s: &AgentRunSet) -> Option<SetPhase> {
    s.status.as_ref().and_then(|st| st.phase)
}

fn verification(r: &AgentRun) -> paddock_crds::VerificationStatus {
    r.status
        .as_ref()
        .and_then(|s| s.verification.clone())
        .unwrap_or_else(|| panic!("{:?}: no verification", r.metadata.name))
}

/// The three candidates' verifications as the runs record them.
async fn check_candidates(ns: &TestNs, set: &str) -> Result<(AgentRun, AgentRun, AgentRun)> {
    let runs = ns.api::<AgentRun>();
    let (claude, codex, gemini) = (
        runs.get(&format!("{set}-claude")).await?,
        runs.get(&format!("{set}-codex")).await?,
        runs.get(&format!("{set}-gemini")).await?,
    );
    let v = verification(&claude);
    assert_eq!(
        (v.result, v.summary.as_deref()),
        (VerificationResult::Passed, Some("2 passed")),
        "{v:?}"
    );
    assert_eq!(condition(&claude, "Verified").map(|c| c.0), Some("True".into()));
    let v = verification(&codex);
    assert_eq!(
        (v.result, v.reason.as_str(), v.summary.as_deref()),
        (VerificationResult::Failed, "ChecksFailed", Some("1 passed, 1 failed")),
        "{v:?}"
    );
    let v = verification(&gemini);
    assert_eq!(
        (v.result, v.reason.as_str()),
        (VerificationResult::Failed, "ProtectedPathChanged"),
        "{v:?}"
    );
    assert_eq!(v.protected_paths_changed, ["tests/test_calc.py"]);
    Ok((claude, codex, gemini))
}

#[tokio::test]
async fn first_verified_pushes_only_the_candidate_whose_tests_pass() -> Result<()> {
    let (ns, repo) = setup("set-first").await?;
    ns.apply::<AgentRunSet>(set_manifest("fix", &repo, false, json!({})))
        .await?;
    let set = wait_set(&ns, "fix", "ended", |s| set_phase(s).is_some_and(SetPhase::is_terminal)).await?;
    let st = set.status.clone().unwrap();
    assert_eq!(set_phase(&set), Some(SetPhase::Succeeded), "{st:?}");
    assert_eq!(st.winner.as_deref(), Some("claude"));
    let sel = st.selection.clone().unwrap();
    assert_eq!(sel.policy, paddock_crds::SelectionPolicy::FirstVerified);
    assert!(sel.message.contains("2 passed"), "{}", sel.message);
    assert_eq!((st.verified, st.finished, st.total), (1, 3, 3));

    let (claude, codex, gemini) = check_candidates(&ns, "fix").await?;
    // Only the winner's branch is pushed; the others end Succeeded/NotSelected, their change kept.
    assert_eq!(phase(&claude), Some(Phase::Succeeded));
    assert!(claude.status.as_ref().unwrap().result.as_ref().unwrap().run.pushed);
    assert!(repo.show("paddock/fix-claude", "calc.py")?.contains("return a + b"));
    for r in [&codex, &gemini] {
        let name = r.metadata.name.clone().unwrap();
        assert_eq!(phase(r), Some(Phase::Succeeded), "{name}: {:?}", r.status);
        assert_eq!(
            condition(r, "Succeeded").map(|c| c.1),
            Some(Reason::NotSelected.to_string()),
            "{name}"
        );
        assert!(
            repo.show(&format!("paddock/{name}"), "calc.py").is_err(),
            "{name} was not pushed"
        );
    }

    // The side-by-side table and the diffs.
    let out = kubectl_paddock(&["compare", "fix", "-n", &ns.name], &[])?;
    assert!(out.ok, "{}", out.stderr);
    let rows: Vec<&str> = out.stdout.lines().skip(1).take_while(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 3, "{}", out.stdout);
    assert!(
        rows[0].starts_with("claude *") && rows[0].contains("2 passed") && rows[0].contains("yes"),
        "{}",
        rows[0]
    );
    assert!(
        rows[1].starts_with("codex ") && rows[1].contains("1 passed, 1 failed"),
        "{}",
        rows[1]
    );
    assert!(
        rows[2].starts_with("gemini ") && rows[2].contains("ProtectedPathChanged"),
        "{}",
        rows[2]
    );
    assert!(out.stdout.contains("winner: claude"), "{}", out.stdout);
    let diff = kubectl_paddock(&["compare", "fix", "--diff", "-n", &ns.name], &[])?;
    assert!(
        diff.stdout.contains("=== gemini") && diff.stdout.contains("+++ b/tests/test_calc.py"),
        "{}",
        diff.stdout
    );
    assert!(diff.stdout.contains("+    return a + b"), "{}", diff.stdout);

    // The set's Events tell the story.
    ns.wait_events(
        "fix",
        &["CandidateStarted", "WinnerSelected", "CandidateFinished", "Succeeded"],
        Duration::from_secs(20),
    )
    .await?;
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn manual_selection_pushes_nothing_until_an_approver_picks() -> Result<()> {
    let (ns, repo) = setup("set-manual").await?;
    let me = whoami(&ns.client).await?;
    ns.apply::<AgentRunSet>(set_manifest(
        "pick",
        &repo,
        true,
        json!({"maxParallel": 2, "selection": {"policy": "Manual", "approvers": {"users": [me]}, "timeout": "30m"}}),
    ))
    .await?;
    let set = wait_set(&ns, "pick", "waited for a pick", |s| {
        set_phase(s) == Some(SetPhase::Selecting) || set_phase(s).is_some_and(SetPhase::is_terminal)
    })
    .await?;
    let st = set.status.clone().unwrap();
    assert_eq!(set_phase(&set), Some(SetPhase::Selecting), "{st:?}");
    let gate_name = st.gate_name.clone().expect("a Pick gate");
    let (claude, codex, _) = check_candidates(&ns, "pick").await?;
    // Nothing is pushed while the pick waits; the verified candidate waits, held.
    for c in ["claude", "codex", "gemini"] {
        assert!(
            repo.show(&format!("paddock/pick-{c}"), "calc.py").is_err(),
            "{c} pushed before the pick"
        );
    }
    assert_eq!(
        condition(&claude, "Running").map(|c| c.1),
        Some(Reason::AwaitingSelection.to_string())
    );
    // verify.required: the failed candidates ended without a push, and only claude may be picked.
    assert_eq!(
        condition(&codex, "Succeeded").map(|c| c.1),
        Some(Reason::VerificationFailed.to_string())
    );
    let gates = ns.api::<ApprovalGate>();
    let gate = gates.get(&gate_name).await?;
    assert_eq!(gate.spec.request.candidates, ["claude"]);
    // maxParallel 2: the third candidate started only once one of the first two was done.
    let runs = ns.api::<AgentRun>();
    let third = runs.get("pick-gemini").await?.metadata.creation_timestamp.unwrap().0;
    let first_done = [&claude, &codex]
        .iter()
        .filter_map(|r| verification(r).start_time.map(|t| t.0))
        .min()
        .unwrap();
    assert!(
        third >= first_done,
        "gemini created at {third} before a slot was free ({first_done})"
    );

    // mallory may patch gates (RBAC) but is not an approver: the admission policy refuses her.
    let as_mallory: Api<ApprovalGate> = Api::namespaced(client_as("mallory", &[]).await?, &ns.name);
    let pick = |who: &str, cand: &str| {
        json!([{"op": "add", "path": "/spec/decisions/-",
                "value": {"approver": who, "decision": "Approve", "candidate": cand}}])
    };
    let refused = as_mallory
        .patch(
            &gate_name,
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(pick("mallory", "claude"))?),
        )
        .await;
    let msg = format!("{:#}", refused.expect_err("mallory's pick must be refused"));
    assert!(msg.contains("not an approver"), "{msg}");
    // A pick of a candidate the gate does not list is refused by the CRD's own rule.
    let refused = gates
        .patch(
            &gate_name,
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(pick(&me, "nobody"))?),
        )
        .await;
    let msg = format!("{:#}", refused.expect_err("an unlisted candidate must be refused"));
    assert!(msg.contains("spec.request.candidates"), "{msg}");
    // The plugin refuses an ineligible pick before asking the API server.
    let out = kubectl_paddock(&["pick", "pick", "codex", "-n", &ns.name], &[])?;
    assert!(
        !out.ok && out.stderr.contains("may be picked are [claude]"),
        "{}",
        out.stderr
    );
    assert!(
        repo.show("paddock/pick-claude", "calc.py").is_err(),
        "still nothing pushed"
    );

    let out = kubectl_paddock(&["pick", "pick", "claude", "-n", &ns.name, "-m", "tests pass"], &[])?;
    assert!(out.ok, "{}", out.stderr);
    let set = wait_set(&ns, "pick", "ended", |s| {
        set_phase(s).is_some_and(SetPhase::is_terminal)
    })
    .await?;
    let st = set.status.clone().unwrap();
    assert_eq!(set_phase(&set), Some(SetPhase::Succeeded), "{st:?}");
    assert_eq!(st.winner.as_deref(), Some("claude"));
    assert_eq!(st.selection.unwrap().decided_by.as_deref(), Some(me.as_str()));
    assert!(repo.show("paddock/pick-claude", "calc.py")?.contains("return a + b"));
    for c in ["codex", "gemini"] {
        assert!(
            repo.show(&format!("paddock/pick-{c}"), "calc.py").is_err(),
            "{c} was pushed"
        );
    }
    ns.cleanup().await;
    Ok(())
}

/// The earliest layer: the API server refuses sets and triggers that cannot work, with a
/// message that says why (CEL on the CRDs).
#[tokio::test]
async fn bad_sets_and_triggers_are_refused_by_the_api_server() -> Result<()> {
    let ns = TestNs::new("set-bad").await?;
    let template = json!({"spec": {"repo": {"url": "https://example.com/x.git"}, "agent": {"name": "shell"},
                                   "prompt": "true", "verify": {"command": ["true"]}}});
    let set = |name: &str, patch: serde_json::Value| {
        let mut spec = json!({"template": template.clone(), "candidates": [{"name": "a"}, {"name": "b", "agent": {"name": "codex"}}]});
        for (k, v) in patch.as_object().unwrap() {
            if k == "templateSpec" {
                for (tk, tv) in v.as_object().unwrap() {
                    spec["template"]["spec"][tk] = tv.clone();
                }
            } else {
                spec[k] = v.clone();
            }
        }
        json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRunSet", "metadata": {"name": name}, "spec": spec})
    };
    let cases = [
        (
            "no-verify",
            json!({"templateSpec": {"verify": null}}),
            "verify is required",
        ),
        (
            "twins",
            json!({"candidates": [{"name": "a"}, {"name": "a"}]}),
            "candidate names must be unique",
        ),
        (
            "bad-name",
            json!({"candidates": [{"name": "Not_A_Label"}]}),
            "DNS label",
        ),
        (
            "retry",
            json!({"templateSpec": {"retry": {"limit": 2}}}),
            "retry is not supported",
        ),
        (
            "branch",
            json!({"templateSpec": {"output": {"branch": "shared", "push": true}}}),
            "output.branch is not supported",
        ),
        (
            "tooluse-codex",
            json!({"templateSpec": {"agent": {"name": "claude-code"},
                   "approvals": {"toolUse": {"rules": [{"tool": "Bash"}]}}}}),
            "every candidate must run claude-code",
        ),
        ("no-candidates", json!({"candidates": []}), "candidates"),
    ];
    for (name, patch, want) in cases {
        let mut manifest = set(name, patch);
        if manifest["spec"]["template"]["spec"]["verify"].is_null() {
            manifest["spec"]["template"]["spec"]
                .as_object_mut()
                .unwrap()
                .remove("verify");
        }
        let err = ns.apply::<AgentRunSet>(manifest).await.unwrap_err();
        assert!(err.to_string().contains(want), "{name}: expected {want:?} in {err}");
    }
    let schedules = [
        ("*/5 * * * *", true),
        ("@daily", true),
        ("* * * *", false),
        ("0 * * * * *", false),
    ];
    for (i, (schedule, ok)) in schedules.into_iter().enumerate() {
        let res = ns
            .apply::<paddock_crds::AgentRunTrigger>(json!({
                "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRunTrigger",
                "metadata": {"name": format!("t{i}")},
                "spec": {"schedule": schedule, "suspend": true, "runTemplate": template.clone()},
            }))
            .await;
        match (res, ok) {
            (Ok(_), true) => {}
            (Err(e), false) => assert!(e.to_string().contains("five cron fields"), "{schedule}: {e}"),
            (r, _) => panic!("{schedule}: {r:?}"),
        }
    }
    // Webhook triggers and pull requests (issue 20, docs/triggers.md).
    let hook = |webhook: serde_json::Value| {
        json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRunTrigger", "metadata": {"name": "hook"},
               "spec": {"webhook": webhook, "runTemplate": template.clone()}})
    };
    let refused = [
        (
            hook(json!({"secretRef": {"name": "s"}, "command": "/paddock"})),
            "webhook.command needs allowedUsers",
        ),
        (
            hook(json!({"secretRef": {"name": "s"}})),
            "webhook needs issueLabel or command",
        ),
        (
            json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRunTrigger", "metadata": {"name": "both"},
                   "spec": {"schedule": "@daily", "webhook": {"secretRef": {"name": "s"}, "issueLabel": "x"},
                            "runTemplate": template.clone()}}),
            "set exactly one of spec.schedule and spec.webhook",
        ),
    ];
    for (manifest, want) in refused {
        let err = ns.apply::<paddock_crds::AgentRunTrigger>(manifest).await.unwrap_err();
        assert!(err.to_string().contains(want), "expected {want:?} in {err}");
    }
    ns.apply::<paddock_crds::AgentRunTrigger>(hook(
        json!({"provider": "github", "secretRef": {"name": "s"}, "command": "/paddock", "allowedUsers": ["alice"]}),
    ))
    .await?;
    let mut no_push = template.clone();
    no_push["spec"]["output"] = json!({"pullRequest": {"base": "main"}});
    let err = ns
        .apply::<paddock_crds::AgentRun>(json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
                                                "metadata": {"name": "pr"}, "spec": no_push["spec"]}))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("output.pullRequest needs output.push: true"),
        "{err}"
    );
    ns.cleanup().await;
    Ok(())
}
