//! End-to-end: the chart's ValidatingAdmissionPolicy on ApprovalGate decisions
//! (charts/paddock/templates/approval-policy.yaml), on a real API server. Each test creates its
//! gates directly (their runs do not exist; the operator only records their state) and decides
//! them as impersonated users (`Impersonate-User`/`Impersonate-Group`, allowed to the admin
//! kubeconfig), who get `get`/`patch` on approvalgates in the test namespace by a RoleBinding, so
//! every refusal asserted here comes from the policy, not from RBAC.

use anyhow::{bail, Result};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use paddock_crds::{ApprovalGate, GateState};
use paddock_e2e::{client_as, TestNs};
use serde_json::json;
use std::time::{Duration, Instant};

/// A test namespace where `alice`, `bob`, `mallory` and the ServiceAccount `runner` may get and
/// patch approvalgates.
async fn setup(prefix: &str) -> Result<TestNs> {
    let ns = TestNs::new(prefix).await?;
    ns.apply::<Role>(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "gate-deciders"},
        "rules": [{"apiGroups": ["paddock.dev"], "resources": ["approvalgates"], "verbs": ["get", "patch"]}],
    }))
    .await?;
    ns.apply::<RoleBinding>(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "gate-deciders"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gate-deciders"},
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"},
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory"},
            {"kind": "ServiceAccount", "name": "runner", "namespace": ns.name},
        ],
    }))
    .await?;
    Ok(ns)
}

/// The user name of the namespace's `runner` ServiceAccount.
fn sa_user(ns: &TestNs) -> String {
    format!("system:serviceaccount:{}:runner", ns.name)
}

/// Creates gate `name` (as the admin) for a run that does not exist, with `approvers`
/// (`{users: [...], groups: [...]}` or `{}`) and `quorum`.
async fn gate(ns: &TestNs, name: &str, approvers: serde_json::Value, quorum: u32) -> Result<ApprovalGate> {
    ns.apply(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "ApprovalGate", "metadata": {"name": name},
        "spec": {
            "runRef": {"name": format!("{name}-absent-run")}, "stage": "BeforeStart",
            "request": {"summary": "e2e: approval policy"}, "approvers": approvers, "quorum": quorum,
        },
    }))
    .await
}

/// Appends a decision to `gate` as `client` the documented way (JSON patch, add at `-`).
async fn decide(client: &Client, ns: &TestNs, gate: &str, approver: &str, verdict: &str) -> Result<ApprovalGate> {
    let api: Api<ApprovalGate> = Api::namespaced(client.clone(), &ns.name);
    let patch = json!([{"op": "add", "path": "/spec/decisions/-",
                        "value": {"approver": approver, "decision": verdict, "comment": "e2e"}}]);
    Ok(api
        .patch(
            gate,
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(patch)?),
        )
        .await?)
}

/// Waits until `client` can read `gate` (the RoleBinding reached the authorizer's cache).
async fn wait_readable(client: &Client, ns: &TestNs, gate: &str) -> Result<()> {
    let api: Api<ApprovalGate> = Api::namespaced(client.clone(), &ns.name);
    let t0 = Instant::now();
    loop {
        match api.get(gate).await {
            Ok(_) => return Ok(()),
            Err(e) if t0.elapsed() > Duration::from_secs(20) => bail!("{gate} never readable: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Asserts `res` is the API server's refusal carrying `want` (a policy message), and that the
/// gate's decisions did not change.
async fn assert_refused(ns: &TestNs, gate: &str, res: Result<ApprovalGate>, want: &str, before: usize) -> Result<()> {
    match res {
        Ok(g) => panic!(
            "{gate}: the decision was admitted, want refusal /{want}/: {:?}",
            g.spec.decisions
        ),
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(msg.contains(want), "{gate}: refusal {msg:?} lacks {want:?}");
            assert!(
                msg.contains("approval-gates"),
                "{gate}: refusal {msg:?} is not the policy's"
            );
        }
    }
    let now = ns.api::<ApprovalGate>().get(gate).await?.spec.decisions.len();
    assert_eq!(now, before, "{gate}: decisions changed despite the refusal");
    Ok(())
}

/// Own decisions are admitted: by a listed user, by a member of a listed group, by anyone when
/// no approvers are listed, and by a ServiceAccount listed by its exact user name.
#[tokio::test]
async fn own_decisions_by_approvers_are_admitted() -> Result<()> {
    let ns = setup("appr-ok").await?;
    let sa = sa_user(&ns);
    gate(&ns, "by-user", json!({"users": ["alice"]}), 1).await?;
    gate(&ns, "by-group", json!({"groups": ["team-a"]}), 1).await?;
    gate(&ns, "anyone", json!({}), 1).await?;
    gate(&ns, "sa-listed", json!({"users": [sa]}), 1).await?;
    let alice = client_as("alice", &[]).await?;
    let alice_team_a = client_as("alice", &["team-a"]).await?;
    let runner = client_as(&sa, &[]).await?;
    wait_readable(&alice, &ns, "by-user").await?;
    wait_readable(&runner, &ns, "sa-listed").await?;

    for (client, gate_name, who) in [
        (&alice, "by-user", "alice"),
        (&alice_team_a, "by-group", "alice"),
        (&alice, "anyone", "alice"),
        (&runner, "sa-listed", sa.as_str()),
    ] {
        let g = decide(client, &ns, gate_name, who, "Approve").await?;
        let last = g.spec.decisions.last().expect("decision recorded");
        assert_eq!(last.approver, who, "{gate_name}");
    }
    // The operator counts the admitted decision: quorum 1, so the gate ends Approved.
    ns_wait_state(&ns, "by-user", GateState::Approved).await?;
    ns.cleanup().await;
    Ok(())
}

/// Waits (30 s) for the operator to record `state` on `gate`.
async fn ns_wait_state(ns: &TestNs, gate: &str, state: GateState) -> Result<()> {
    let api = ns.api::<ApprovalGate>();
    let t0 = Instant::now();
    loop {
        let g = api.get(gate).await?;
        if g.status.as_ref().and_then(|s| s.state) == Some(state) {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("{gate} never {state:?}: {:?}", g.status);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Nobody decides in someone else's name: a decision naming another approver is refused, and
/// so is appending an exact copy of another user's earlier decision.
#[tokio::test]
async fn decisions_in_someone_elses_name_are_refused() -> Result<()> {
    let ns = setup("appr-name").await?;
    gate(&ns, "g", json!({}), 2).await?;
    let alice = client_as("alice", &["team-a"]).await?;
    let bob = client_as("bob", &[]).await?;
    wait_readable(&alice, &ns, "g").await?;
    wait_readable(&bob, &ns, "g").await?;
    let res = decide(&alice, &ns, "g", "bob", "Approve").await;
    assert_refused(
        &ns,
        "g",
        res,
        r#"approver must be your own user name: set approver to "alice""#,
        0,
    )
    .await?;
    // bob's own decision is fine; alice re-sending bob's exact decision is not.
    decide(&bob, &ns, "g", "bob", "Approve").await?;
    let res = decide(&alice, &ns, "g", "bob", "Approve").await;
    assert_refused(&ns, "g", res, "approver must be your own user name", 1).await?;
    ns.cleanup().await;
    Ok(())
}

/// When a gate lists approvers, users in neither `users` nor (through their groups) `groups`
/// are refused.
#[tokio::test]
async fn unlisted_users_are_refused() -> Result<()> {
    let ns = setup("appr-unlisted").await?;
    gate(&ns, "g", json!({"users": ["alice"], "groups": ["team-a"]}), 1).await?;
    let mallory = client_as("mallory", &["team-b"]).await?;
    wait_readable(&mallory, &ns, "g").await?;
    let res = decide(&mallory, &ns, "g", "mallory", "Approve").await;
    assert_refused(
        &ns,
        "g",
        res,
        "mallory is not an approver of this gate: spec.approvers lists users [alice] and groups [team-a]",
        0,
    )
    .await?;
    ns.cleanup().await;
    Ok(())
}

/// A ServiceAccount (a run's own identity) never decides unless listed by its exact user name:
/// not on a gate without approvers, not through a listed group.
#[tokio::test]
async fn service_accounts_are_refused_unless_listed_by_name() -> Result<()> {
    let ns = setup("appr-sa").await?;
    let sa = sa_user(&ns);
    gate(&ns, "open", json!({}), 1).await?;
    gate(&ns, "sa-group", json!({"groups": ["system:serviceaccounts"]}), 1).await?;
    let runner = client_as(&sa, &[]).await?;
    wait_readable(&runner, &ns, "open").await?;
    for g in ["open", "sa-group"] {
        let res = decide(&runner, &ns, g, &sa, "Approve").await;
        assert_refused(
            &ns,
            g,
            res,
            &format!("service account {sa} may not decide this gate"),
            0,
        )
        .await?;
    }
    ns.cleanup().await;
    Ok(())
}

/// Once a gate is Approved (or Rejected), its spec cannot change: even a listed approver's own
/// decision is refused. Updates that do not touch decisions (a label) are not evaluated.
#[tokio::test]
async fn decided_gates_are_final() -> Result<()> {
    let ns = setup("appr-final").await?;
    gate(&ns, "g", json!({"users": ["alice"]}), 2).await?;
    // Let the operator record Pending first, so its status write cannot undo ours.
    let _ = ns_wait_state(&ns, "g", GateState::Pending).await;
    let api = ns.api::<ApprovalGate>();
    let t0 = Instant::now();
    loop {
        api.patch_status(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"state": "Approved"}})),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let st = api.get("g").await?.status.and_then(|s| s.state);
        if st == Some(GateState::Approved) {
            break;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            bail!("status.state does not stay Approved: {st:?}");
        }
    }
    let alice = client_as("alice", &[]).await?;
    wait_readable(&alice, &ns, "g").await?;
    let res = decide(&alice, &ns, "g", "alice", "Approve").await;
    assert_refused(
        &ns,
        "g",
        res,
        "the gate is already Approved; its spec (and spec.decisions) cannot change any more",
        0,
    )
    .await?;
    // Not evaluated: an update that leaves spec.decisions alone.
    let g = api
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"e2e": "label"}}})),
        )
        .await?;
    assert_eq!(
        g.metadata.labels.unwrap_or_default().get("e2e").map(String::as_str),
        Some("label")
    );
    ns.cleanup().await;
    Ok(())
}
