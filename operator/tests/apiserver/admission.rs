//! What the API server itself refuses: the CRDs' OpenAPI schema and CEL rules (crds/src), on
//! creation (dry run, as `kubectl create --dry-run=server`) and on update (transition rules,
//! which need a stored object). No operator runs here: every refusal is the API server's.
//!
//! Each case is a valid object with one change, and the valid object itself is admitted first,
//! so a refusal is caused by that change and nothing else.

use crate::harness::{run_spec, Env};
use anyhow::{bail, Result};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::Resource;
use paddock_crds::{AgentRun, AgentRunTrigger, ApprovalGate, RunMessage, RunnerPool};
use serde_json::{json, Value};

/// A valid object of each kind: (API resource, manifest).
fn valid(kind: &str) -> (ApiResource, Value) {
    let (ar, spec) = match kind {
        "AgentRun" => (ApiResource::erase::<AgentRun>(&()), run_spec("default")),
        "RunnerPool" => (
            ApiResource::erase::<RunnerPool>(&()),
            json!({"template": {"image": "runner:1", "imagePullPolicy": "IfNotPresent"},
                   "network": {"egress": [{"host": "github.com"}]}}),
        ),
        "AgentRunTrigger" => (
            ApiResource::erase::<AgentRunTrigger>(&()),
            json!({"schedule": "*/5 * * * *", "runTemplate": {"spec": run_spec("default")}}),
        ),
        "ApprovalGate" => (
            ApiResource::erase::<ApprovalGate>(&()),
            json!({"runRef": {"name": "r"}, "stage": "Question", "quorum": 1,
                   "request": {"summary": "asks", "question": "Which API?", "options": ["v1", "v2"]},
                   "decisions": [{"approver": "alice", "decision": "Approve", "answer": "v2"}]}),
        ),
        "RunMessage" => (
            ApiResource::erase::<RunMessage>(&()),
            json!({"runRef": {"name": "r"}, "text": "also update the changelog", "sender": "alice"}),
        ),
        other => panic!("no valid {other}"),
    };
    let manifest = json!({"apiVersion": AgentRun::api_version(&()), "kind": kind,
                          "metadata": {"name": "valid"}, "spec": spec});
    (ar, manifest)
}

/// Creates `obj` with a server-side dry run; the API server's refusal as the error text.
async fn dry_run(api: &Api<DynamicObject>, obj: &Value) -> Result<()> {
    let obj: DynamicObject = serde_json::from_value(obj.clone())?;
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    api.create(&pp, &obj).await?;
    Ok(())
}

/// Invalid AgentRun, RunnerPool, AgentRunTrigger, ApprovalGate and RunMessage specs are refused on creation with the
/// rule's message.
#[tokio::test]
async fn invalid_specs_are_refused_with_the_rules_message() -> Result<()> {
    let env = Env::new("admission").await?;
    type Change = fn(&mut Value);
    let cases: Vec<(&str, &str, Change, &str)> = vec![
        (
            "AgentRun",
            "prompt and promptFrom",
            |o| o["spec"]["promptFrom"] = json!({"name": "cm", "key": "prompt"}),
            "set exactly one of spec.prompt and spec.promptFrom",
        ),
        (
            "AgentRun",
            "neither prompt nor promptFrom",
            |o| {
                o["spec"].as_object_mut().unwrap().remove("prompt");
            },
            "set exactly one of spec.prompt and spec.promptFrom",
        ),
        (
            "AgentRun",
            "ftp URL",
            |o| o["spec"]["repo"]["url"] = json!("ftp://example.com/r.git"),
            "repo.url must be an https://, http://, ssh://, git:// or file:// URL",
        ),
        (
            "AgentRun",
            "revision that is an option",
            |o| o["spec"]["repo"]["revision"] = json!("--upload-pack=evil"),
            "repo.revision must be a branch, tag or commit",
        ),
        (
            "AgentRun",
            "workdir outside the repo",
            |o| o["spec"]["repo"]["workdir"] = json!("a/../../etc"),
            "repo.workdir must be a relative path inside the repository",
        ),
        (
            "AgentRun",
            "53-character name",
            |o| o["metadata"]["name"] = json!("r".repeat(53)),
            "AgentRun names are at most 52 characters",
        ),
        (
            "AgentRun",
            "timeout over 24h",
            |o| o["spec"]["budget"] = json!({"timeout": "25h"}),
            "budget.timeout must be a duration between 1s and 24h",
        ),
        (
            "AgentRun",
            "custom agent without command",
            |o| o["spec"]["agent"] = json!({"name": "custom"}),
            "agent.command is required for agent custom and only allowed there",
        ),
        (
            "AgentRun",
            "beforePush without push",
            |o| o["spec"]["approvals"] = json!({"beforePush": {"approvers": {"users": ["alice"]}}}),
            "spec.approvals.beforePush needs spec.output.push: true",
        ),
        (
            "AgentRun",
            "toolUse for codex",
            |o| {
                o["spec"]["agent"] = json!({"name": "codex"});
                o["spec"]["approvals"] = json!({"toolUse": {"rules": [{"tool": "Bash", "pattern": "*"}],
                                                       "approvers": {"users": ["alice"]}}});
            },
            "spec.approvals.toolUse is supported for agent claude-code only",
        ),
        (
            "AgentRun",
            "plan review for codex",
            |o| {
                o["spec"]["agent"] = json!({"name": "codex"});
                o["spec"]["approvals"] = json!({"plan": {}});
            },
            "spec.approvals.plan is supported for agent claude-code only",
        ),
        (
            "AgentRun",
            "questions for codex",
            |o| {
                o["spec"]["agent"] = json!({"name": "codex"});
                o["spec"]["approvals"] = json!({"questions": {}});
            },
            "spec.approvals.questions is supported for agents claude-code and gemini-cli only",
        ),
        (
            "AgentRun",
            "questions answered by two",
            |o| o["spec"]["approvals"] = json!({"questions": {"quorum": 2}}),
            "spec.approvals.questions.quorum must be 1",
        ),
        (
            "ApprovalGate",
            "an approve without an answer",
            |o| o["spec"]["decisions"] = json!([{"approver": "alice", "decision": "Approve"}]),
            "an Approve of a Question gate carries the answer in answer",
        ),
        (
            "ApprovalGate",
            "changes requested of a question",
            |o| o["spec"]["decisions"] = json!([{"approver": "alice", "decision": "RequestChanges", "comment": "x"}]),
            "only a Plan gate's reviewers may request changes",
        ),
        (
            "ApprovalGate",
            "changes requested without saying which",
            |o| {
                o["spec"]["stage"] = json!("Plan");
                o["spec"]["decisions"] = json!([{"approver": "alice", "decision": "RequestChanges"}]);
            },
            "a RequestChanges decision says which changes in comment",
        ),
        (
            "ApprovalGate",
            "an answer on a ToolUse gate",
            |o| o["spec"]["stage"] = json!("ToolUse"),
            "only the decisions of a Question gate carry an answer",
        ),
        (
            "ApprovalGate",
            "an option over 256 bytes",
            |o| o["spec"]["request"]["options"] = json!(["x".repeat(257)]),
            "each option is at most 256 bytes",
        ),
        (
            "RunMessage",
            "an empty message",
            |o| o["spec"]["text"] = json!(""),
            "spec.text",
        ),
        (
            "AgentRun",
            "branch refs/heads/x",
            |o| o["spec"]["output"] = json!({"branch": "refs/heads/x"}),
            "output.branch must be a valid git branch name",
        ),
        (
            "AgentRun",
            "pool name with a slash",
            |o| o["spec"]["runnerPoolRef"] = json!({"name": "a/b"}),
            "name must be a lowercase RFC 1123 subdomain",
        ),
        (
            "RunnerPool",
            "imagePullPolicy Sometimes",
            |o| o["spec"]["template"]["imagePullPolicy"] = json!("Sometimes"),
            "imagePullPolicy must be Always, IfNotPresent or Never",
        ),
        (
            "RunnerPool",
            "egress host with a scheme",
            |o| o["spec"]["network"]["egress"][0]["host"] = json!("https://github.com"),
            "egress host must be a lowercase host name",
        ),
        (
            "RunnerPool",
            "empty image",
            |o| o["spec"]["template"]["image"] = json!(""),
            "spec.template.image: Invalid value",
        ),
        (
            "AgentRunTrigger",
            "schedule and webhook",
            |o| {
                o["spec"]["webhook"] = json!({"provider": "gitea", "secretRef": {"name": "s"}, "issueLabel": "paddock"})
            },
            "set exactly one of spec.schedule and spec.webhook",
        ),
        (
            "AgentRunTrigger",
            "schedule in words",
            |o| o["spec"]["schedule"] = json!("every five minutes"),
            "spec.schedule is five cron fields",
        ),
        (
            "AgentRunTrigger",
            "42-character name",
            |o| o["metadata"]["name"] = json!("t".repeat(42)),
            "AgentRunTrigger names are at most 41 characters",
        ),
        (
            "AgentRunTrigger",
            "template with cancel",
            |o| o["spec"]["runTemplate"]["spec"]["cancel"] = json!(true),
            "spec.runTemplate.spec.cancel must not be set",
        ),
    ];
    let mut failures = Vec::new();
    // A message's sender must be the requesting user (the chart's admission policy).
    let me = {
        use k8s_openapi::api::authentication::v1::SelfSubjectReview;
        Api::<SelfSubjectReview>::all(env.client.clone())
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await?
            .status
            .and_then(|s| s.user_info)
            .and_then(|u| u.username)
            .unwrap_or_default()
    };
    for kind in [
        "AgentRun",
        "RunnerPool",
        "AgentRunTrigger",
        "ApprovalGate",
        "RunMessage",
    ] {
        let (ar, mut base) = valid(kind);
        if kind == "RunMessage" {
            base["spec"]["sender"] = json!(me);
        }
        let api = Api::<DynamicObject>::namespaced_with(env.client.clone(), &env.ns, &ar);
        if let Err(e) = dry_run(&api, &base).await {
            bail!("the valid {kind} was refused: {e:#}");
        }
        for (_, what, change, want) in cases.iter().filter(|c| c.0 == kind) {
            let mut obj = base.clone();
            change(&mut obj);
            match dry_run(&api, &obj).await {
                Ok(()) => failures.push(format!("{kind} with {what}: admitted, want refusal {want:?}")),
                Err(e) if !format!("{e:#}").contains(want) => {
                    failures.push(format!("{kind} with {what}: refused with {e:#}, want {want:?}"))
                }
                Err(_) => {}
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    Ok(())
}

/// Transition rules: an AgentRun's spec is immutable but for cancel (which cannot be unset), and
/// an ApprovalGate's decisions are append-only.
#[tokio::test]
async fn transition_rules_refuse_changes_to_stored_objects() -> Result<()> {
    let env = Env::new("transitions").await?;
    env.run("r", "default", json!({})).await?;
    let runs = env.api::<AgentRun>();
    let merge = |patch: Value| Patch::Merge(patch);
    let pp = PatchParams::default();

    let err = runs
        .patch("r", &pp, &merge(json!({"spec": {"prompt": "something else"}})))
        .await
        .expect_err("a changed prompt was admitted");
    assert!(err.to_string().contains("spec is immutable after creation"), "{err}");

    runs.patch("r", &pp, &merge(json!({"spec": {"cancel": true}}))).await?;
    let err = runs
        .patch("r", &pp, &merge(json!({"spec": {"cancel": false}})))
        .await
        .expect_err("unsetting cancel was admitted");
    assert!(
        err.to_string().contains("spec.cancel cannot be unset once set"),
        "{err}"
    );
    assert!(runs.get("r").await?.spec.cancel, "cancel was unset despite the refusal");

    let _: ApprovalGate = env
        .create(
            json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "ApprovalGate", "metadata": {"name": "g"},
                       "spec": {"runRef": {"name": "r"}, "stage": "BeforeStart", "request": {"summary": "s"},
                                "approvers": {}, "quorum": 2,
                                "decisions": [{"approver": "paddock-envtest-admin", "decision": "Approve"}]}}),
        )
        .await?;
    let gates = env.api::<ApprovalGate>();
    let err = gates
        .patch("g", &pp, &merge(json!({"spec": {"decisions": []}})))
        .await
        .expect_err("removing a decision was admitted");
    assert!(err.to_string().contains("spec.decisions is append-only"), "{err}");
    let err = gates
        .patch("g", &pp, &merge(json!({"spec": {"quorum": 1}})))
        .await
        .expect_err("changing the quorum was admitted");
    assert!(
        err.to_string().contains("only spec.decisions may change, by appending"),
        "{err}"
    );
    assert_eq!(gates.get("g").await?.spec.decisions.len(), 1);
    Ok(())
}
