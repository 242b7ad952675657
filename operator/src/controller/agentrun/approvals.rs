//! In-run approvals: the `BeforePush` review and `ToolUse` gates (the `BeforeStart` gate stands
//! before the pod and lives in the reconcile itself).
//!
//! The runner asks with an `approval_requested` event on its log ([`on_request`], called by the
//! log follower): the operator creates the ApprovalGate `<run>-<id>`. Each reconcile of a running
//! run copies the verdicts of decided gates to the pod's annotations
//! `decision.paddock.dev/<id>` ([`sync_verdicts`]), which the agent container reads through its
//! downward API volume; the runner never needs Kubernetes credentials. Creating a gate is
//! idempotent (a 409 means it exists), so a restarted follower that sees the request again
//! changes nothing.

use super::artifacts;
use super::build::{new_gate, request_gate_name};
use crate::context::{Context, MANAGER_AGENTRUN};
use crate::error::Result;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use paddock_crds::{AgentRun, ApprovalGate, GatePolicy, GateRequest, GateStage, GateState, TimeoutAction};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Field manager of the verdict annotations on runner pods (kept apart from the pod's own
/// manager so that applying them never touches the pod spec).
pub const MANAGER_VERDICTS: &str = "paddock.dev/approvals";
/// Prefix of the verdict annotations: `decision.paddock.dev/<id>`.
pub const DECISION_PREFIX: &str = "decision.paddock.dev/";

/// A runner's request, as read from its `approval_requested` event.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Request {
    /// `push` or `tool-<n>`.
    pub id: String,
    /// `BeforePush` or `ToolUse`.
    pub stage: String,
    /// One line for the approver.
    pub summary: String,
    /// ToolUse: the tool.
    pub tool: Option<String>,
    /// ToolUse: its input.
    pub input: Option<String>,
    /// BeforePush: the commit.
    pub commit: Option<String>,
    /// BeforePush: the diffstat.
    pub diffstat: Option<String>,
}

/// Whether `run` asks for approvals while it runs (`spec.approvals.beforePush` or `toolUse`):
/// such gates are raised from the followed log, and the runner waits on them.
pub fn has_in_run_gates(run: &AgentRun) -> bool {
    run.spec
        .approvals
        .as_ref()
        .is_some_and(|a| a.before_push.is_some() || a.tool_use.is_some())
}

/// Whether `id` is a request id the runner may use: `push` or `tool-<1..9999>` (anything else,
/// e.g. from a forged event, is ignored).
pub fn valid_id(id: &str) -> bool {
    id == "push"
        || id
            .strip_prefix("tool-")
            .is_some_and(|n| !n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The stage and policy `run` has for `req`, or `None` when the run did not ask for that kind
/// of gate (a request it did not configure is ignored, never turned into a gate).
pub fn policy_for<'a>(run: &'a AgentRun, req: &Request) -> Option<(GateStage, &'a GatePolicy)> {
    let approvals = run.spec.approvals.as_ref()?;
    match req.stage.as_str() {
        "BeforePush" if req.id == "push" => approvals.before_push.as_ref().map(|p| (GateStage::BeforePush, p)),
        "ToolUse" if req.id != "push" => approvals.tool_use.as_ref().map(|t| (GateStage::ToolUse, &t.gate)),
        _ => None,
    }
}

/// The verdict a decided gate sends to the runner (`Approve`, `Reject`, `Expired`), or `None`
/// while it is pending. Expiry with `onTimeout: Approve` approves.
pub fn verdict(gate: &ApprovalGate) -> Option<&'static str> {
    match gate.status.as_ref()?.state? {
        GateState::Pending => None,
        GateState::Approved => Some("Approve"),
        GateState::Rejected => Some("Reject"),
        GateState::Expired if gate.spec.on_timeout == Some(TimeoutAction::Approve) => Some("Approve"),
        GateState::Expired => Some("Expired"),
    }
}

/// Creates the gate for `req` (once; an existing gate is left alone) and publishes an
/// `ApprovalRequested` Event. A `BeforePush` request first stores the patch so far (the
/// `<run>-patch` ConfigMap) and links it from the gate. Retries transient errors a few times: a
/// lost request would leave the runner waiting until the run's timeout.
pub async fn on_request(ctx: &Arc<Context>, run: &AgentRun, pod: &str, req: Request) {
    if !valid_id(&req.id) {
        tracing::warn!(id = req.id, "ignoring an approval request with an invalid id");
        return;
    }
    let Some((stage, policy)) = policy_for(run, &req) else {
        ctx.publish(
            run,
            EventType::Warning,
            "ApprovalIgnored",
            format!(
                "the runner asked for a {} approval that spec.approvals does not configure",
                req.stage
            ),
        )
        .await;
        return;
    };
    let name = request_gate_name(run, &req.id);
    for attempt in 0..5u64 {
        match create_gate(ctx, run, pod, &req, stage, policy, &name).await {
            Ok(created) => {
                if created {
                    ctx.publish(
                        run,
                        EventType::Normal,
                        "ApprovalRequested",
                        format!("waiting for ApprovalGate {name} ({}): {}", stage.as_str(), req.summary),
                    )
                    .await;
                }
                return;
            }
            Err(e) => {
                tracing::warn!(gate = name, error = %e, attempt, "cannot create the ApprovalGate; retrying");
                tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
            }
        }
    }
}

/// Creates the gate; `Ok(false)` when it already existed.
async fn create_gate(
    ctx: &Arc<Context>,
    run: &AgentRun,
    pod: &str,
    req: &Request,
    stage: GateStage,
    policy: &GatePolicy,
    name: &str,
) -> Result<bool> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let gates: Api<ApprovalGate> = Api::namespaced(ctx.client.clone(), ns);
    if gates.get_opt(name).await?.is_some() {
        return Ok(false);
    }
    let mut request = GateRequest {
        summary: paddock_crds::events::truncate(&req.summary, 4096),
        tool: req.tool.clone(),
        input: req.input.as_deref().map(|i| paddock_crds::events::truncate(i, 4096)),
        commit: req.commit.clone(),
        diffstat: req.diffstat.clone(),
        patch_ref: None,
    };
    if stage == GateStage::BeforePush {
        // The reviewer reads the patch before the push: store it now (the final store at the end
        // of the run rewrites the same ConfigMaps).
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
        let log = artifacts::fetch_pod_log(&pods, pod).await;
        let parsed = artifacts::parse_log(&log);
        request.patch_ref = artifacts::apply_artifacts(&ctx.client, run, &parsed).await?.patch;
    }
    let gate = new_gate(run, policy, name, stage, request);
    let pp = PostParams {
        field_manager: Some(MANAGER_AGENTRUN.into()),
        ..Default::default()
    };
    match gates.create(&pp, &gate).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The in-run gates of `run` (stages BeforePush and ToolUse), sorted by creation.
pub async fn list_gates(ctx: &Context, run: &AgentRun) -> Result<Vec<ApprovalGate>> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let name = run.metadata.name.as_deref().unwrap_or_default();
    let gates: Api<ApprovalGate> = Api::namespaced(ctx.client.clone(), ns);
    let mut list: Vec<ApprovalGate> = gates
        .list(&ListParams::default().labels(&format!("{}={name}", paddock_crds::LABEL_RUN)))
        .await?
        .items
        .into_iter()
        .filter(|g| g.spec.run_ref.name == name && g.spec.stage != GateStage::BeforeStart)
        .filter(|g| {
            g.metadata
                .owner_references
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|o| Some(&o.uid) == run.metadata.uid.as_ref())
        })
        .collect();
    list.sort_by_key(|g| {
        (
            g.metadata.creation_timestamp.clone().map(|t| t.0),
            g.metadata.name.clone(),
        )
    });
    Ok(list)
}

/// The verdict annotations `gates` call for: `decision.paddock.dev/<id>` → verdict, for each
/// decided gate named `<run>-<id>`. Pure.
pub fn verdict_annotations(run: &AgentRun, gates: &[ApprovalGate]) -> BTreeMap<String, String> {
    let prefix = format!("{}-", run.metadata.name.as_deref().unwrap_or_default());
    gates
        .iter()
        .filter_map(|g| {
            let id = g.metadata.name.as_deref()?.strip_prefix(&prefix)?;
            Some((format!("{DECISION_PREFIX}{id}"), verdict(g)?.to_string()))
        })
        .collect()
}

/// Copies the verdicts of `run`'s decided in-run gates onto `pod` (server-side apply of the
/// annotations only, by [`MANAGER_VERDICTS`]); a no-op when the pod has them all. Returns the
/// first gate still pending, if any.
pub async fn sync_verdicts(ctx: &Context, run: &AgentRun, pod: &Pod) -> Result<Option<ApprovalGate>> {
    let gates = list_gates(ctx, run).await?;
    let wanted = verdict_annotations(run, &gates);
    let have = pod.metadata.annotations.clone().unwrap_or_default();
    if wanted.iter().any(|(k, v)| have.get(k) != Some(v)) {
        let ns = run.metadata.namespace.as_deref().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
        let patch = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": { "annotations": wanted },
        });
        pods.patch(
            pod.metadata.name.as_deref().unwrap_or_default(),
            &PatchParams::apply(MANAGER_VERDICTS).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    }
    Ok(gates.into_iter().find(|g| verdict(g).is_none()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_crds::{ApprovalGateStatus, ApprovalsSpec, ToolRule, ToolUsePolicy};
    use serde_json::json;

    fn run() -> AgentRun {
        let mut r: AgentRun = serde_json::from_value(json!({
            "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
            "metadata": {"name": "r1", "namespace": "ns", "uid": "u1"},
            "spec": {"repo": {"url": "https://example.com/r.git"}, "agent": {"name": "claude-code"}, "prompt": "x",
                     "output": {"push": true}}
        }))
        .unwrap();
        r.spec.approvals = Some(ApprovalsSpec {
            before_push: Some(GatePolicy::default()),
            tool_use: Some(ToolUsePolicy {
                rules: vec![ToolRule {
                    tool: "Bash".into(),
                    pattern: Some("git push*".into()),
                }],
                gate: GatePolicy {
                    quorum: Some(2),
                    ..Default::default()
                },
            }),
            ..Default::default()
        });
        r
    }

    fn gate(name: &str, state: Option<GateState>, on_timeout: Option<TimeoutAction>) -> ApprovalGate {
        let mut g = new_gate(
            &run(),
            &GatePolicy {
                on_timeout,
                ..Default::default()
            },
            name,
            GateStage::ToolUse,
            GateRequest::default(),
        );
        g.status = Some(ApprovalGateStatus {
            state,
            ..Default::default()
        });
        g
    }

    #[test]
    fn ids_are_checked() {
        for ok in ["push", "tool-1", "tool-9999"] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in [
            "",
            "tool-",
            "tool-x",
            "tool-12345",
            "Push",
            "tool-1/../x",
            "before-start",
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn requests_map_to_the_configured_policy_only() {
        let r = run();
        let push = Request {
            id: "push".into(),
            stage: "BeforePush".into(),
            ..Default::default()
        };
        assert_eq!(policy_for(&r, &push).map(|p| p.0), Some(GateStage::BeforePush));
        let tool = Request {
            id: "tool-1".into(),
            stage: "ToolUse".into(),
            ..Default::default()
        };
        let (stage, policy) = policy_for(&r, &tool).unwrap();
        assert_eq!((stage, policy.quorum), (GateStage::ToolUse, Some(2)));
        // A ToolUse request may not use the push id, nor an unknown stage.
        let forged = Request {
            id: "push".into(),
            stage: "ToolUse".into(),
            ..Default::default()
        };
        assert!(policy_for(&r, &forged).is_none());
        let mut plain = run();
        plain.spec.approvals = None;
        assert!(policy_for(&plain, &push).is_none());
    }

    #[test]
    fn verdicts_follow_gate_state_and_on_timeout() {
        assert_eq!(verdict(&gate("r1-tool-1", Some(GateState::Pending), None)), None);
        assert_eq!(verdict(&gate("r1-tool-1", None, None)), None);
        assert_eq!(
            verdict(&gate("r1-tool-1", Some(GateState::Approved), None)),
            Some("Approve")
        );
        assert_eq!(
            verdict(&gate("r1-tool-1", Some(GateState::Rejected), None)),
            Some("Reject")
        );
        assert_eq!(
            verdict(&gate("r1-tool-1", Some(GateState::Expired), None)),
            Some("Expired")
        );
        assert_eq!(
            verdict(&gate(
                "r1-tool-1",
                Some(GateState::Expired),
                Some(TimeoutAction::Approve)
            )),
            Some("Approve")
        );
    }

    #[test]
    fn annotations_name_each_decided_gate() {
        let gates = vec![
            gate("r1-push", Some(GateState::Approved), None),
            gate("r1-tool-2", Some(GateState::Rejected), None),
            gate("r1-tool-3", Some(GateState::Pending), None),
            gate("other-tool-1", Some(GateState::Approved), None),
        ];
        let a = verdict_annotations(&run(), &gates);
        assert_eq!(
            a.into_iter().collect::<Vec<_>>(),
            vec![
                ("decision.paddock.dev/push".to_string(), "Approve".to_string()),
                ("decision.paddock.dev/tool-2".to_string(), "Reject".to_string()),
            ]
        );
    }
}
