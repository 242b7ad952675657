//! End-to-end: verification (issue 19, docs/verification.md). The repository's own check runs
//! on the agent's change in the operator's verification pod; the outcome is recorded by the
//! operator, a required verification holds the push, and an agent cannot pass by editing the
//! check it is judged by.

use anyhow::Result;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use paddock_crds::Reason;
use paddock_crds::{AgentRun, Phase, VerificationResult};
use paddock_e2e::{condition, phase, GitRepo, TestNs};
use serde_json::json;
use std::time::Duration;

const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// A repository whose check passes only when `value.txt` says 2; it prints pytest's closing
/// line, so the summary is parsed as pytest's.
const CHECK: &str = "if [ \"$(cat value.txt)\" = 2 ]; then\n  echo '========== 1 passed in 0.01s =========='\nelse\n  echo \"value.txt is $(cat value.txt), want 2\"\n  echo '========== 1 failed in 0.01s =========='\n  exit 1\nfi\n";

fn repo(ns: &TestNs) -> Result<GitRepo> {
    GitRepo::create(&format!("{}-r", ns.name), &[("value.txt", "1\n"), ("check.sh", CHECK)])
}

async fn run(
    ns: &TestNs,
    repo: &GitRepo,
    name: &str,
    prompt: &str,
    verify: serde_json::Value,
    push: bool,
) -> Result<AgentRun> {
    ns.apply::<AgentRun>(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "metadata": {"name": name},
        "spec": {"repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": prompt,
                 "output": {"push": push}, "verify": verify},
    }))
    .await?;
    ns.wait_finished(name, RUN_TIMEOUT).await
}

fn verification(r: &AgentRun) -> paddock_crds::VerificationStatus {
    r.status
        .as_ref()
        .and_then(|s| s.verification.clone())
        .unwrap_or_else(|| panic!("no status.verification: {:?}", r.status))
}

#[tokio::test]
async fn a_required_verification_holds_the_push_until_the_checks_pass() -> Result<()> {
    let ns = TestNs::new("verify-push").await?;
    let repo = repo(&ns)?;
    ns.pool("default", None).await?;
    let verify = json!({"command": ["sh", "check.sh"], "required": true, "timeout": "2m"});
    // A wrong fix: the check fails, the held push is refused, the run fails.
    let wrong = run(&ns, &repo, "wrong", "echo 3 > value.txt", verify.clone(), true).await?;
    let v = verification(&wrong);
    assert_eq!(phase(&wrong), Some(Phase::Failed), "{:?}", wrong.status);
    assert_eq!(
        condition(&wrong, "Succeeded").map(|c| c.1),
        Some(Reason::VerificationFailed.to_string())
    );
    assert_eq!(
        (v.result, v.reason.as_str(), v.exit_code),
        (VerificationResult::Failed, "ChecksFailed", Some(1))
    );
    assert_eq!(v.summary.as_deref(), Some("1 failed"));
    assert_eq!(
        condition(&wrong, "Verified").map(|c| (c.0, c.1)),
        Some(("False".into(), "ChecksFailed".into()))
    );
    assert!(repo.show("paddock/wrong", "value.txt").is_err(), "nothing was pushed");
    assert!(!wrong.status.as_ref().unwrap().result.as_ref().unwrap().run.pushed);
    // The check's output is kept after its pod is gone.
    let pod = v.pod_name.clone().expect("verification pod");
    ns.api::<Pod>().delete(&pod, &Default::default()).await?;
    let log = ns.api::<ConfigMap>().get(v.log_ref.as_deref().expect("logRef")).await?;
    assert!(log.data.unwrap()["verify.log"].contains("value.txt is 3, want 2"));

    // The right fix: the check passes, then the gateway pushes the verified commit.
    let right = run(&ns, &repo, "right", "echo 2 > value.txt", verify, true).await?;
    let v = verification(&right);
    assert_eq!(phase(&right), Some(Phase::Succeeded), "{:?}", right.status);
    assert_eq!(
        (v.result, v.summary.as_deref()),
        (VerificationResult::Passed, Some("1 passed"))
    );
    let result = right.status.as_ref().unwrap().result.clone().unwrap();
    assert!(result.run.pushed);
    assert_eq!(v.commit, result.run.commit, "the verified commit is the pushed one");
    assert_eq!(repo.show("paddock/right", "value.txt")?.trim(), "2");
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn an_agent_cannot_pass_by_editing_the_protected_check() -> Result<()> {
    let ns = TestNs::new("verify-protect").await?;
    let repo = repo(&ns)?;
    ns.pool("default", None).await?;
    // The hostile agent rewrites the check to always pass (and gives a wrong value).
    let r = run(
        &ns,
        &repo,
        "cheat",
        "printf 'exit 0\\n' > check.sh; echo 3 > value.txt",
        json!({"command": ["sh", "check.sh"], "required": true, "protectedPaths": ["check.sh", "tests/**"]}),
        false,
    )
    .await?;
    let v = verification(&r);
    assert_eq!(phase(&r), Some(Phase::Failed), "{:?}", r.status);
    assert_eq!(
        condition(&r, "Succeeded").map(|c| c.1),
        Some(Reason::VerificationFailed.to_string())
    );
    assert_eq!(
        (v.result, v.reason.as_str()),
        (VerificationResult::Failed, "ProtectedPathChanged")
    );
    assert_eq!(v.protected_paths_changed, vec!["check.sh".to_string()]);
    assert!(v.pod_name.is_none(), "no check ran");

    // Not required: the failed check is recorded, the run ends as the agent's work did.
    let r = run(
        &ns,
        &repo,
        "advisory",
        "echo 5 > value.txt",
        json!({"command": ["sh", "check.sh"]}),
        false,
    )
    .await?;
    let v = verification(&r);
    assert_eq!(phase(&r), Some(Phase::Succeeded), "{:?}", r.status);
    assert_eq!((v.result, v.exit_code), (VerificationResult::Failed, Some(1)));
    assert_eq!(condition(&r, "Verified").map(|c| c.0), Some("False".into()));
    // The check ran on the agent's change (value 5), not on the base.
    let log = ns.api::<ConfigMap>().get(v.log_ref.as_deref().unwrap()).await?;
    assert!(log.data.unwrap()["verify.log"].contains("value.txt is 5"));
    ns.cleanup().await;
    Ok(())
}

/// A namespace user creates the run's verification pod first, with a check that always
/// passes: the operator takes only the result of the pod it builds, so the run fails.
#[tokio::test]
async fn a_verification_pod_made_by_someone_else_never_passes() -> Result<()> {
    let ns = TestNs::new("verify-forged").await?;
    let repo = repo(&ns)?;
    ns.pool("default", None).await?;
    ns.apply::<Pod>(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "forged-1-verify"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "verify", "image": paddock_e2e::env("PADDOCK_E2E_RUNNER_IMAGE")?,
            "imagePullPolicy": "IfNotPresent", "command": ["true"],
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "allowPrivilegeEscalation": false,
                                "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
        }]},
    }))
    .await?;
    let r = run(
        &ns,
        &repo,
        "forged",
        "echo 3 > value.txt",
        json!({"command": ["sh", "check.sh"], "required": true}),
        true,
    )
    .await?;
    let v = verification(&r);
    assert_eq!(phase(&r), Some(Phase::Failed), "{:?}", r.status);
    assert_eq!(
        (v.result, v.reason.as_str()),
        (VerificationResult::Error, "VerificationPodFailed"),
        "{v:?}"
    );
    assert!(
        v.message.contains("not the operator's verification pod"),
        "{}",
        v.message
    );
    assert!(repo.show("paddock/forged", "value.txt").is_err(), "nothing was pushed");
    ns.cleanup().await;
    Ok(())
}
