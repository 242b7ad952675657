//! End-to-end for the `kubectl paddock` plugin: the real binary (`target/debug/kubectl-paddock`,
//! built by `e2e/run-e2e.sh` or here if missing) against runs on the real cluster.

use anyhow::{bail, Context as _, Result};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, Patch, PatchParams, PostParams};
use paddock_crds::Reason;
use paddock_crds::{AgentRun, ApprovalGate, Phase, Verdict};
use paddock_e2e::{condition, phase, GitRepo, TestNs};
use serde_json::json;
use std::time::Duration;

const RUN_TIMEOUT: Duration = Duration::from_secs(180);

fn run_manifest(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "metadata": {"name": name}, "spec": spec})
}

type Out = paddock_e2e::PluginOut;

fn plugin(args: &[&str]) -> Result<Out> {
    paddock_e2e::kubectl_paddock(args, &[])
}

fn ok(args: &[&str]) -> Result<String> {
    let o = plugin(args)?;
    if !o.ok {
        bail!("kubectl paddock {args:?} failed: {}", o.stderr);
    }
    Ok(o.stdout)
}

fn fails(args: &[&str]) -> Result<String> {
    let o = plugin(args)?;
    if o.ok {
        bail!("kubectl paddock {args:?} succeeded but should fail: {}", o.stdout);
    }
    Ok(o.stderr)
}

#[tokio::test]
async fn plugin_approves_and_shows_diff_and_logs() -> Result<()> {
    let ns = TestNs::new("plugin").await?;
    let n = ns.name.as_str();
    let repo = GitRepo::create(&format!("{n}-r"), &[("a.txt", "a\n")])?;
    ns.pool("default", None).await?;
    ns.apply::<AgentRun>(run_manifest(
        "hi",
        json!({
            "repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": "echo hi > hi.txt",
            "approvals": {"beforeStart": {}},
        }),
    ))
    .await?;
    // A second, ungated run that stays running: `logs` must read the live pod.
    ns.apply::<AgentRun>(run_manifest(
        "live",
        json!({"repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": "echo live-line-42; sleep 600"}),
    ))
    .await?;
    ns.wait_run("hi", RUN_TIMEOUT, "awaiting approval", |r| {
        phase(r) == Some(Phase::AwaitingApproval)
    })
    .await?;

    // Before approval: no pod, so no log and no patch; the gate is pending.
    assert!(fails(&["logs", "hi", "-n", n])?.contains("no event log yet"));
    assert!(fails(&["diff", "hi", "-n", n])?.contains("no patch yet"));
    let gates = ok(&["gates", "-n", n])?;
    assert!(gates.starts_with("NAME"), "{gates}");
    let row = gates
        .lines()
        .find(|l| l.starts_with("hi-before-start "))
        .unwrap_or_default();
    for want in [" hi ", "BeforeStart", "Pending", "0/1"] {
        assert!(row.contains(want), "{want:?} in gate row {row:?}");
    }
    assert!(fails(&["approve", "no-such-thing", "-n", n])?.contains("no ApprovalGate or AgentRun named"));

    // Approve by run name, in the caller's own name.
    let said = ok(&["approve", "hi", "-m", "ok", "-n", n])?;
    assert!(said.contains("approvalgate/hi-before-start approved by"), "{said}");
    let me = Api::<SelfSubjectReview>::all(ns.client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .unwrap_or_default();
    assert!(!me.is_empty());
    let gate = ns.api::<ApprovalGate>().get("hi-before-start").await?;
    assert_eq!(gate.spec.decisions.len(), 1, "{:?}", gate.spec.decisions);
    let d = &gate.spec.decisions[0];
    assert_eq!(
        (d.approver.as_str(), d.decision, d.comment.as_deref()),
        (me.as_str(), Verdict::Approve, Some("ok"))
    );

    let run = ns.wait_finished("hi", RUN_TIMEOUT).await?;
    assert_eq!(phase(&run), Some(Phase::Succeeded), "{:?}", run.status);
    assert_eq!(
        condition(&run, "AwaitingApproval").map(|c| c.1),
        Some("Approved".into())
    );

    let diff = ok(&["diff", "hi", "-n", n])?;
    assert!(diff.contains("+++ b/hi.txt"), "{diff}");
    assert!(diff.contains("+hi"), "{diff}");

    let logs = ok(&["logs", "hi", "-n", n])?;
    for want in [
        "step agent started",
        "step agent succeeded",
        "step commit succeeded",
        "result Succeeded",
    ] {
        assert!(logs.contains(want), "{want:?} in logs:\n{logs}");
    }
    assert!(
        logs.lines().all(|l| l.trim_start().starts_with('+')),
        "every line has a relative time: {logs}"
    );
    let raw = ok(&["logs", "hi", "--raw", "-n", n])?;
    assert_eq!(raw.lines().count(), logs.lines().count(), "one raw line per event");
    for l in raw.lines() {
        let v: serde_json::Value = serde_json::from_str(l).with_context(|| format!("raw line {l:?}"))?;
        assert_eq!(v["v"], 1, "{l}");
    }

    let runs = ok(&["runs", "-n", n])?;
    let row = runs.lines().find(|l| l.starts_with("hi ")).unwrap_or_default();
    for want in ["shell", "Succeeded", "+1/-0"] {
        assert!(row.contains(want), "{want:?} in run row {row:?}\n{runs}");
    }
    let all = ok(&["runs", "-A"])?;
    assert!(all.starts_with("NAMESPACE"), "{all}");
    assert!(all.lines().any(|l| l.starts_with(n) && l.contains(" hi ")), "{all}");

    // A decided gate refuses more decisions, by gate name or by run name.
    assert!(fails(&["approve", "hi", "-n", n])?.contains("already"));
    assert!(fails(&["reject", "hi-before-start", "-m", "too late", "-n", n])?.contains("already Approved"));
    let gate = ns.api::<ApprovalGate>().get("hi-before-start").await?;
    assert_eq!(gate.spec.decisions.len(), 1, "no decision appended to a decided gate");

    // The live run has no log ConfigMap yet: `logs` reads the agent container.
    ns.wait_run("live", RUN_TIMEOUT, "running", |r| {
        condition(r, "Running").is_some_and(|c| c.1 == Reason::AgentRunning)
    })
    .await?;
    let t0 = std::time::Instant::now();
    loop {
        let o = plugin(&["logs", "live", "-n", n])?;
        if o.ok && o.stdout.contains("live-line-42") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "live log never showed the line");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(fails(&["diff", "live", "-n", n])?.contains("no patch yet (phase Running)"));
    ns.api::<AgentRun>()
        .patch(
            "live",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cancel": true}})),
        )
        .await?;
    ns.cleanup().await;
    Ok(())
}

/// BeforePush with the plugin: the run commits, stops at `<run>-push`, `kubectl paddock diff`
/// shows the patch under review while the branch is not on the remote; `kubectl paddock approve
/// <run>` lets the push happen.
#[tokio::test]
async fn plugin_reviews_and_approves_a_push() -> Result<()> {
    let ns = TestNs::new("plugin-push").await?;
    let n = ns.name.as_str();
    let repo = GitRepo::create(&format!("{n}-r"), &[("a.txt", "a\n")])?;
    ns.pool("default", None).await?;
    ns.apply::<AgentRun>(run_manifest(
        "rev",
        json!({
            "repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": "echo reviewed > reviewed.txt",
            "output": {"push": true}, "approvals": {"beforePush": {}},
        }),
    ))
    .await?;
    let run = ns
        .wait_run("rev", RUN_TIMEOUT, "awaiting the push approval", |r| {
            phase(r) == Some(Phase::AwaitingApproval)
        })
        .await?;
    assert_eq!(run.status.and_then(|s| s.gate_name).as_deref(), Some("rev-push"));
    let gate = ns.api::<ApprovalGate>().get("rev-push").await?;
    assert_eq!(gate.spec.stage, paddock_crds::GateStage::BeforePush);
    assert_eq!(gate.spec.request.diffstat.as_deref(), Some("1 files, +1/-0"));
    assert!(gate.spec.request.commit.as_deref().is_some_and(|c| c.len() == 40));
    assert!(
        repo.show("paddock/rev", "reviewed.txt").is_err(),
        "not pushed before approval"
    );

    let diff = ok(&["diff", "rev", "-n", n])?;
    assert!(
        diff.contains("+++ b/reviewed.txt") && diff.contains("+reviewed"),
        "{diff}"
    );
    let gates = ok(&["gates", "-n", n])?;
    let row = gates.lines().find(|l| l.starts_with("rev-push ")).unwrap_or_default();
    assert!(row.contains("BeforePush") && row.contains("Pending"), "{gates}");

    let t0 = std::time::Instant::now();
    let said = ok(&["approve", "rev", "-m", "looks good", "-n", n])?;
    assert!(said.contains("approvalgate/rev-push approved by"), "{said}");
    let run = ns.wait_finished("rev", RUN_TIMEOUT).await?;
    eprintln!("BeforePush: approve → run finished in {:?}", t0.elapsed());
    assert_eq!(phase(&run), Some(Phase::Succeeded), "{:?}", run.status);
    let result = run.status.and_then(|s| s.result).expect("result");
    assert!(result.run.pushed, "{result:?}");
    assert_eq!(repo.show("paddock/rev", "reviewed.txt")?, "reviewed\n");
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn plugin_follows_a_running_runs_events() -> Result<()> {
    let ns = TestNs::new("plugin-follow").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool("default", None).await?;
    ns.apply::<AgentRun>(
        json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "metadata": {"name": "slow"},
        "spec": {"repo": {"url": repo.url}, "agent": {"name": "shell"},
                 "prompt": "sleep 4; echo done > done.txt"}}),
    )
    .await?;
    ns.wait_run("slow", Duration::from_secs(120), "running", |r| {
        paddock_e2e::condition(r, "Running").is_some_and(|c| c.1 == Reason::AgentRunning)
    })
    .await?;
    // Follows while the agent sleeps: returns only when the pod's log ends.
    let started = std::time::Instant::now();
    let out = ok(&["-n", &ns.name, "logs", "slow", "-f"])?;
    assert!(started.elapsed() >= Duration::from_secs(1), "it followed the live log");
    assert!(out.contains("step agent started: shell"), "{out}");
    assert!(out.contains("step commit succeeded") && out.contains("result"), "{out}");
    assert!(
        out.trim_end()
            .lines()
            .last()
            .unwrap_or_default()
            .starts_with("(pod slow-1 ended; run slow is"),
        "{out}"
    );
    // An ended run prints its stored log.
    ns.wait_finished("slow", Duration::from_secs(60)).await?;
    let again = ok(&["-n", &ns.name, "logs", "slow", "-f"])?;
    assert!(again.contains("step commit succeeded"), "{again}");
    ns.cleanup().await;
    Ok(())
}
