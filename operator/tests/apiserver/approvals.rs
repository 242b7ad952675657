//! `spec.approvals.beforeStart` with the operator and the chart's ValidatingAdmissionPolicy
//! (charts/paddock/templates/approval-policy.yaml, installed by e2e/envtest.sh): the gate the
//! operator creates, decisions the policy refuses, and an approval and a rejection moving the
//! run on. Users are impersonated by the admin client; a Role lets them get and patch gates, so
//! every refusal asserted here is the policy's, not RBAC's.

use crate::harness::{client_as, condition, Env};
use anyhow::{bail, Result};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use paddock_crds::egress::gateway_name;
use paddock_crds::{AgentRun, ApprovalGate, GateState, Phase};
use serde_json::json;

/// Lets `alice`, `mallory` and the namespace's `default` ServiceAccount get and patch gates.
async fn let_decide(env: &Env) -> Result<()> {
    let _: Role = env
        .create(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "deciders"},
                       "rules": [{"apiGroups": ["paddock.dev"], "resources": ["approvalgates"], "verbs": ["get", "patch"]}]}))
        .await?;
    let _: RoleBinding = env
        .create(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "deciders"},
                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deciders"},
                       "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
                                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory"},
                                    {"kind": "ServiceAccount", "name": "default", "namespace": env.ns}]}))
        .await?;
    Ok(())
}

/// Appends a decision to `gate` as `client` (a JSON patch adding at `-`, as documented).
async fn decide(client: &Client, env: &Env, gate: &str, approver: &str, verdict: &str) -> Result<ApprovalGate> {
    let api: Api<ApprovalGate> = Api::namespaced(client.clone(), &env.ns);
    let patch = json!([{"op": "add", "path": "/spec/decisions/-",
                        "value": {"approver": approver, "decision": verdict, "comment": "envtest"}}]);
    Ok(api
        .patch(
            gate,
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(patch)?),
        )
        .await?)
}

/// Asserts `res` is the approval policy's refusal carrying `want`.
fn assert_refused(res: Result<ApprovalGate>, want: &str) {
    match res {
        Ok(g) => panic!("admitted, want refusal {want:?}: {:?}", g.spec.decisions),
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(msg.contains(want), "refusal {msg:?} lacks {want:?}");
            assert!(msg.contains("approval-gates"), "refusal {msg:?} is not the policy's");
        }
    }
}

/// Waits for run `name`'s BeforeStart gate (created by the operator) and checks it.
async fn gate_of(env: &Env, name: &str) -> Result<ApprovalGate> {
    let r = env
        .wait_run(name, Phase::AwaitingApproval, "AwaitingApproval", "GatePending")
        .await?;
    let gate_name = format!("{name}-before-start");
    assert_eq!(
        r.status.as_ref().unwrap().gate_name.as_deref(),
        Some(gate_name.as_str())
    );
    let gate = env.api::<ApprovalGate>().get(&gate_name).await?;
    let owner = &gate.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("AgentRun", name));
    assert_eq!(Some(owner.uid.clone()), r.metadata.uid);
    assert_eq!(gate.spec.run_ref.name, name);
    assert_eq!(gate.spec.stage.as_str(), "BeforeStart");
    assert_eq!(gate.spec.approvers.users, ["alice"]);
    assert!(
        env.api::<Pod>().get_opt(&format!("{name}-1")).await?.is_none(),
        "{name}: a pod before approval"
    );
    Ok(gate)
}

/// Waits until `client` may read `gate` (the RoleBinding reached the authorizer's cache).
async fn wait_readable(env: &Env, client: &Client, gate: &str) -> Result<()> {
    let api: Api<ApprovalGate> = Api::namespaced(client.clone(), &env.ns);
    env.eventually(&format!("{gate} readable"), || async {
        Ok(api.get(gate).await.ok().map(|_| ()))
    })
    .await
}

/// A BeforeStart gate lists alice: mallory cannot decide (neither in her name nor in alice's),
/// nor can a ServiceAccount; alice's approval starts the run's pod, and her rejection of a
/// second run's gate ends that run Rejected without a pod.
#[tokio::test]
async fn only_a_listed_approver_decides_a_before_start_gate() -> Result<()> {
    let env = Env::with_operator("approvals").await?;
    let_decide(&env).await?;
    env.pool("p", json!({})).await?;
    env.mark_available(&gateway_name("p")).await?;
    let approvals = json!({"approvals": {"beforeStart": {"approvers": {"users": ["alice"]}, "quorum": 1}}});
    env.run("a1", "p", approvals.clone()).await?;
    env.run("a2", "p", approvals).await?;
    let gate = gate_of(&env, "a1").await?;
    let gate_name = gate.metadata.name.clone().unwrap();
    gate_of(&env, "a2").await?;

    let alice = client_as("alice", &[]).await?;
    let mallory = client_as("mallory", &[]).await?;
    let sa_name = format!("system:serviceaccount:{}:default", env.ns);
    let sa = client_as(&sa_name, &[]).await?;
    for c in [&alice, &mallory, &sa] {
        wait_readable(&env, c, &gate_name).await?;
    }
    assert_refused(
        decide(&mallory, &env, &gate_name, "mallory", "Approve").await,
        "mallory is not an approver of this gate",
    );
    assert_refused(
        decide(&mallory, &env, &gate_name, "alice", "Approve").await,
        "a new decision's approver must be your own user name",
    );
    assert_refused(
        decide(&sa, &env, &gate_name, &sa_name, "Approve").await,
        "may not decide this gate",
    );
    let still = env.api::<ApprovalGate>().get(&gate_name).await?;
    assert!(still.spec.decisions.is_empty(), "{:?}", still.spec.decisions);
    let r = env.api::<AgentRun>().get("a1").await?;
    assert_eq!(r.status.unwrap().phase, Some(Phase::AwaitingApproval));

    let g = decide(&alice, &env, &gate_name, "alice", "Approve").await?;
    assert_eq!(g.spec.decisions.len(), 1);
    let r = env.wait_run("a1", Phase::Running, "Running", "PodCreated").await?;
    let (status, reason, message) = condition(&r, "AwaitingApproval").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Approved"), "{message}");
    assert!(message.contains("by alice"), "{message}");
    env.api::<Pod>().get("a1-1").await?;
    let g = env.api::<ApprovalGate>().get(&gate_name).await?;
    let state = g.status.as_ref().and_then(|s| s.state);
    if state != Some(GateState::Approved) {
        bail!("gate {gate_name}: state {state:?}, want Approved");
    }
    assert_refused(
        decide(&alice, &env, &gate_name, "alice", "Reject").await,
        "the gate is already Approved",
    );

    decide(&alice, &env, "a2-before-start", "alice", "Reject").await?;
    let r = env.wait_run("a2", Phase::Rejected, "Succeeded", "Rejected").await?;
    let (_, _, message) = condition(&r, "Succeeded").unwrap();
    assert!(message.contains("rejected by alice"), "{message}");
    assert!(
        env.api::<Pod>().get_opt("a2-1").await?.is_none(),
        "a rejected run got a pod"
    );
    Ok(())
}
