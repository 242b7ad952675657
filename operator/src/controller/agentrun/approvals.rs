//! In-run approvals: the `BeforePush` review, `ToolUse`, `Question` and `Plan` gates (the
//! `BeforeStart` gate stands before the pod and lives in the reconcile itself).
//!
//! The runner asks with an `approval_requested` event on its log: the log follower records the
//! request ([`crate::inflight::Requests`]) and wakes the run's reconcile, whose plan raises the
//! ApprovalGate of that request and attempt ([`raise`], [`super::gates::request_gate_name`]). A `BeforePush` gate shows what the pod's gateway
//! (trusted) reviewed: its commit, diffstat and patch, read from the gateway's own log, never
//! the agent's report. Each reconcile of a running run copies the verdicts of decided gates to
//! the pod's annotations `decision.paddock.dev/<id>` ([`sync_verdicts`]), signed with the
//! operator's key for the run's UID, the attempt, the request and (for a push) the reviewed
//! commit (`paddock_crds::verdict`); the pod checks the signature, so an annotation written by
//! anyone else (a namespace `edit` user may annotate pods) counts for nothing. Creating a gate
//! is idempotent (a 409 means it exists), so a restarted follower that sees the request again
//! changes nothing.

use super::artifacts;
use super::gates::{new_gate, request_gate_name};
use crate::context::{Context, MANAGER_AGENTRUN};
use crate::controller::agentrunset::Selection;
use crate::error::Result;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use paddock_crds::{AgentRun, ApprovalGate, GatePolicy, GateRequest, GateStage, GateState, TimeoutAction};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Field manager of the verdict annotations on runner pods (kept apart from the pod's own
/// manager so that applying them never touches the pod spec).
pub const MANAGER_VERDICTS: &str = "paddock.dev/approvals";
/// Prefix of the verdict annotations: `decision.paddock.dev/<id>`.
pub const DECISION_PREFIX: &str = "decision.paddock.dev/";
/// Label of an in-run gate: the runner's request id (`push`, `tool-<n>`).
pub const LABEL_REQUEST: &str = "paddock.dev/request";

pub use crate::inflight::Request;

/// Whether `run` asks for approvals while it runs (`spec.approvals.beforePush`, `toolUse`,
/// `plan` or `questions`): such gates are raised from the followed log, and the runner waits on
/// them.
pub fn has_in_run_gates(run: &AgentRun) -> bool {
    run.spec
        .approvals
        .as_ref()
        .is_some_and(|a| a.before_push.is_some() || a.tool_use.is_some() || a.plan.is_some() || a.questions.is_some())
        || super::verify::holds_push(run)
}

/// Whether `run` must have its plan approved (`spec.approvals.plan`).
pub fn plan_review(run: &AgentRun) -> bool {
    run.spec.approvals.as_ref().is_some_and(|a| a.plan.is_some())
}

/// Where an attempt's plan review stands, from its `Plan` gates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanVerdict {
    /// A plan was approved (or expired with `onTimeout: Approve`).
    Approved,
    /// A plan was rejected, or expired with `onTimeout: Reject`: the gate's name, whether it
    /// expired, and who rejected it.
    Rejected {
        /// The gate.
        gate: String,
        /// It expired rather than being rejected.
        expired: bool,
        /// Who rejected it.
        by: Option<String>,
    },
    /// No plan decided yet (none presented, pending, or changes requested).
    Waiting,
}

/// The plan review of `run`'s `attempt` from its gates (the attempt's `Plan` gates owned by the
/// run, by their immutable spec). An approval wins over an earlier rejection of another gate
/// (there is none: a rejection ends the run). Pure.
pub fn plan_verdict(run: &AgentRun, gates: &[ApprovalGate], attempt: u32) -> PlanVerdict {
    let mut out = PlanVerdict::Waiting;
    for g in gates
        .iter()
        .filter(|g| g.spec.stage == GateStage::Plan && g.spec.run_ref.attempt == Some(attempt))
        .filter(|g| super::gates::owned_by(g, run))
    {
        match verdict(g) {
            Some("Approve") => return PlanVerdict::Approved,
            Some("Reject" | "Expired") => {
                out = PlanVerdict::Rejected {
                    gate: g.metadata.name.clone().unwrap_or_default(),
                    expired: g.status.as_ref().and_then(|s| s.state) == Some(GateState::Expired),
                    by: g.status.as_ref().and_then(|s| s.decided_by.clone()),
                }
            }
            _ => {}
        }
    }
    out
}

/// Whether `id` is a request id the runner may use: `push`, `tool-<n>` or `question-<n>` with
/// n of 1 to 4 digits, or `plan-<n>` with n of 1 to 2 digits (the pod's gateway looks for plan
/// approvals `plan-1` to `plan-99`); anything else, e.g. from a forged event, is ignored.
pub fn valid_id(id: &str) -> bool {
    let number = |n: &str, digits: usize| !n.is_empty() && n.len() <= digits && n.bytes().all(|b| b.is_ascii_digit());
    id == "push"
        || id.strip_prefix("tool-").is_some_and(|n| number(n, 4))
        || id.strip_prefix("question-").is_some_and(|n| number(n, 4))
        || id.strip_prefix("plan-").is_some_and(|n| number(n, 2))
}

/// Most gates of one stage one attempt may raise; requests beyond are ignored (an
/// `ApprovalIgnored` Event), since a hostile agent can print any number of them: 256 `ToolUse`,
/// 16 `Question` (each answer travels in a pod annotation of up to 4 KiB), 99 `Plan` (as many as
/// the gateway looks at).
pub fn max_gates(stage: GateStage) -> usize {
    match stage {
        GateStage::Question => 16,
        GateStage::Plan => 99,
        _ => 256,
    }
}

/// The stage and policy `run` has for `req`, or `None` when the run did not ask for that kind
/// of gate (a request it did not configure is ignored, never turned into a gate).
pub fn policy_for<'a>(run: &'a AgentRun, req: &Request) -> Option<(GateStage, &'a GatePolicy)> {
    let approvals = run.spec.approvals.as_ref()?;
    match req.stage.as_str() {
        "BeforePush" if req.id == "push" => approvals.before_push.as_ref().map(|p| (GateStage::BeforePush, p)),
        "ToolUse" if req.id.starts_with("tool-") => approvals.tool_use.as_ref().map(|t| (GateStage::ToolUse, &t.gate)),
        "Question" if req.id.starts_with("question-") => approvals.questions.as_ref().map(|p| (GateStage::Question, p)),
        "Plan" if req.id.starts_with("plan-") => approvals.plan.as_ref().map(|p| (GateStage::Plan, p)),
        _ => None,
    }
}

/// The verdict a decided gate sends to the runner (`Approve`, `Reject`, `Expired`,
/// `RequestChanges`), or `None` while it is pending. Expiry with `onTimeout: Approve` approves,
/// except a `Question`'s, which has no answer to give. A withdrawn gate sends nothing: the run
/// or attempt that asked is over.
pub fn verdict(gate: &ApprovalGate) -> Option<&'static str> {
    let question = gate.spec.stage == GateStage::Question;
    match gate.status.as_ref()?.state? {
        GateState::Pending | GateState::Withdrawn => None,
        GateState::Approved => Some("Approve"),
        GateState::Rejected => Some("Reject"),
        GateState::ChangesRequested => Some("RequestChanges"),
        GateState::Expired if gate.spec.on_timeout == Some(TimeoutAction::Approve) && !question => Some("Approve"),
        GateState::Expired => Some("Expired"),
    }
}

/// The text a decided `Question` or `Plan` gate hands the runner with its verdict (the answer,
/// or the changes requested; `status.answer`), `""` when it has none; `None` for other stages,
/// whose verdicts carry no text.
pub fn verdict_text(gate: &ApprovalGate) -> Option<&str> {
    matches!(gate.spec.stage, GateStage::Question | GateStage::Plan)
        .then(|| gate.status.as_ref().and_then(|s| s.answer.as_deref()).unwrap_or(""))
}

/// How long a push request waits for the gateway's review before it is dropped (about what the
/// log follower's retries waited before the reconcile raised gates).
pub const REVIEW_PATIENCE: std::time::Duration = std::time::Duration::from_secs(64);

/// Raises the gate of `req`, asked by pod `pod` (one attempt; the reconcile calls it again on
/// its next pass while it returns `Ok(false)`). A held push first starts its verification
/// ([`super::verify::start_held`]); a `BeforePush` gate first stores the patch so far (the
/// `<run>-patch` ConfigMap) and links it from the gate. Creating a gate is idempotent and
/// publishes an `ApprovalRequested` Event the first time; a request `spec.approvals` does not
/// configure is ignored with an `ApprovalIgnored` Event.
///
/// `Ok(true)` when the request is settled (its gate exists, or it was ignored), `Ok(false)`
/// while the pod's gateway has not reviewed the push yet (it prints its review within a second
/// of the request).
///
/// # Errors
/// API errors.
pub async fn raise(ctx: &Arc<Context>, run: &AgentRun, pod: &str, req: &Request) -> Result<bool> {
    if !valid_id(&req.id) {
        tracing::warn!(id = req.id, "ignoring an approval request with an invalid id");
        return Ok(true);
    }
    let policy = policy_for(run, req);
    let held = req.id == "push" && req.stage == "BeforePush" && super::verify::holds_push(run);
    let Some((stage, policy)) = policy else {
        if held {
            return start_held(ctx, run, pod).await;
        }
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
        return Ok(true);
    };
    let attempt = attempt_of_pod(ctx, run, pod).await;
    // A held push is verified first (issue 19): the verification pod of this attempt, for the
    // commit the gateway reviewed; the push verdict waits for its result.
    if held && !super::verify::start_held(ctx, run, pod, attempt).await? {
        return Ok(false);
    }
    let name = request_gate_name(run, &req.id, attempt);
    // Bounded per attempt and stage: a hostile agent may ask without end (a push asks once).
    let raised = if stage == GateStage::BeforePush {
        0
    } else {
        list_gates(ctx, run)
            .await?
            .iter()
            .filter(|g| g.spec.stage == stage && g.spec.run_ref.attempt == Some(attempt))
            .filter(|g| g.metadata.name.as_deref() != Some(name.as_str()))
            .count()
    };
    if raised >= max_gates(stage) {
        ctx.publish(
            run,
            EventType::Warning,
            "ApprovalIgnored",
            format!(
                "the runner asked for more than {} {} gates in attempt {attempt}; request {} is ignored",
                max_gates(stage),
                stage.as_str(),
                req.id
            ),
        )
        .await;
        return Ok(true);
    }
    match create_gate(ctx, run, pod, req, stage, policy, &name, attempt).await {
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
            Ok(true)
        }
        Err(GateError::NotReviewed) => Ok(false),
        Err(GateError::Api(e)) => Err(e),
    }
}

/// A held push without a BeforePush gate: its verification only (`Ok(false)` until the
/// gateway reviewed it).
async fn start_held(ctx: &Arc<Context>, run: &AgentRun, pod: &str) -> Result<bool> {
    let attempt = attempt_of_pod(ctx, run, pod).await;
    super::verify::start_held(ctx, run, pod, attempt).await
}

/// The attempt pod `pod` serves: its label, else (a pod gone or unreadable) the run's current
/// attempt.
async fn attempt_of_pod(ctx: &Context, run: &AgentRun, pod: &str) -> u32 {
    let pods: Api<Pod> = Api::namespaced(
        ctx.client.clone(),
        run.metadata.namespace.as_deref().unwrap_or_default(),
    );
    match pods.get_opt(pod).await {
        Ok(Some(p)) => pod_attempt(&p),
        _ => run.status.as_ref().and_then(|s| s.attempt).unwrap_or(1),
    }
}

/// The attempt a runner pod serves (its `paddock.dev/attempt` label; 1 when missing).
pub fn pod_attempt(pod: &Pod) -> u32 {
    super::status::attempt_label(pod).unwrap_or(1)
}

/// The BeforePush request as the gateway reviewed it (`paddock_crds::gateway`): commit,
/// diffstat and summary from the gateway's facts, or `None` while it has not reviewed a commit.
/// The agent's own `commit` and `diffstat` are ignored. Pure.
pub fn reviewed_push(gw: &artifacts::GatewayLog, branch: &str) -> Option<GateRequest> {
    let facts = gw.review.facts.as_ref()?;
    let commit = facts.commit.clone()?;
    let diffstat = paddock_crds::events::diffstat(facts.files_changed, facts.insertions, facts.deletions);
    Some(GateRequest {
        id: None,
        summary: format!(
            "Push branch {branch} at {} ({diffstat}) to the repository? (diff computed by the pod's gateway from {})",
            &commit[..commit.len().min(12)],
            &facts.base[..facts.base.len().min(12)],
        ),
        tool: None,
        input: None,
        commit: Some(commit),
        diffstat: Some(diffstat),
        candidates: Vec::new(),
        patch_ref: None,
        question: None,
        options: Vec::new(),
        plan: None,
    })
}

/// Why a BeforePush gate cannot be created yet.
#[derive(Debug, thiserror::Error)]
enum GateError {
    /// The gateway has not printed its review of the push yet.
    #[error("the pod's gateway has not reviewed the push yet")]
    NotReviewed,
    /// An API error.
    #[error(transparent)]
    Api(#[from] crate::error::Error),
}

impl From<kube::Error> for GateError {
    fn from(e: kube::Error) -> Self {
        GateError::Api(e.into())
    }
}

/// Creates the gate; `Ok(false)` when it already existed.
#[allow(clippy::too_many_arguments)]
async fn create_gate(
    ctx: &Arc<Context>,
    run: &AgentRun,
    pod: &str,
    req: &Request,
    stage: GateStage,
    policy: &GatePolicy,
    name: &str,
    attempt: u32,
) -> std::result::Result<bool, GateError> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let gates: Api<ApprovalGate> = Api::namespaced(ctx.client.clone(), ns);
    // A gate of that name left by an earlier run of the same name is not this one's: ask
    // under a name of its own.
    let mut name = name.to_string();
    if let Some(g) = gates.get_opt(&name).await? {
        if super::gates::owned_by(&g, run) {
            return Ok(false);
        }
        name = super::gates::of_uid(&name, run);
        if gates.get_opt(&name).await?.is_some() {
            return Ok(false);
        }
    }
    let name = name.as_str();
    let mut request = GateRequest {
        id: None,
        summary: paddock_crds::events::truncate(&req.summary, 4096),
        // Agent-reported: bounded as the CRD bounds them (a longer value would be refused).
        tool: req.tool.as_deref().map(|t| paddock_crds::events::truncate(t, 256)),
        input: req.input.as_deref().map(|i| paddock_crds::events::truncate(i, 4096)),
        commit: None,
        diffstat: None,
        patch_ref: None,
        candidates: Vec::new(),
        // Agent-reported, bounded as the CRD bounds them.
        question: req.question.as_deref().map(|q| paddock_crds::events::truncate(q, 4096)),
        options: req
            .options
            .iter()
            .take(16)
            .map(|o| paddock_crds::events::truncate(o, 256))
            .collect(),
        plan: req.plan.as_deref().map(|p| paddock_crds::events::truncate(p, 32768)),
    };
    if stage == GateStage::BeforePush {
        // The reviewer reads the gateway's patch before the push: store it now, in a ConfigMap
        // of its own that the gate names (the run's end may keep its patch with its log).
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
        let gw = artifacts::parse_gateway_log(&artifacts::fetch_gateway_log(&pods, pod).await);
        request = reviewed_push(&gw, &super::build::branch(run)).ok_or(GateError::NotReviewed)?;
        let mut parsed = artifacts::parse_log(&artifacts::fetch_pod_log(&pods, pod).await);
        parsed.patch_gz = gw.review.patch_gz.clone();
        request.patch_ref = artifacts::apply_artifacts(&ctx.client, run, &parsed, artifacts::PatchLayout::Own)
            .await?
            .patch;
    }
    request.id = Some(req.id.clone());
    let mut gate = new_gate(run, policy, name, stage, request, Some(attempt));
    // For kubectl's selectors only: the operator trusts the immutable spec.runRef and
    // spec.request.id, never labels (a namespace `edit` user may change those).
    let labels = gate.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(LABEL_REQUEST.into(), req.id.clone());
    labels.insert(paddock_crds::LABEL_ATTEMPT.into(), attempt.to_string());
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
        .filter(|g| super::gates::owned_by(g, run))
        .collect();
    list.sort_by_key(|g| {
        (
            g.metadata.creation_timestamp.clone().map(|t| t.0),
            g.metadata.name.clone(),
        )
    });
    Ok(list)
}

/// A held push (`verify.required` with `output.push`, or a set's candidate with `output.push`;
/// issue 19) gets its verdict from the verification of `attempt` too: none while it runs (a
/// BeforePush gate's approval waits for it), `Reject` when it failed and was required; for a
/// candidate then none until its set selects, `Reject` unless it won; and at last the
/// BeforePush gate's verdict, or `Approve` without a gate. Signed for the commit the
/// verification pod applied. Pure.
pub fn held_push_verdict(
    run: &AgentRun,
    attempt: u32,
    verification: Option<&paddock_crds::VerificationStatus>,
    selection: &Selection,
    signer: &paddock_crds::verdict::Signer,
    wanted: &mut BTreeMap<String, String>,
) {
    use paddock_crds::VerificationResult as R;
    if !super::verify::holds_push(run) {
        return;
    }
    let key = format!("{DECISION_PREFIX}push");
    let v = verification.filter(|v| v.attempt == attempt);
    let gated = run.spec.approvals.as_ref().is_some_and(|a| a.before_push.is_some());
    let required = run.spec.verify.as_ref().is_some_and(|s| s.required);
    let verdict = match (v.map(|v| v.result), selection) {
        (Some(R::Running) | None, _) => {
            wanted.remove(&key);
            return;
        }
        (Some(R::Failed | R::Error), _) if required => "Reject",
        // A set's candidate (issue 19): only the winner's branch is pushed.
        (_, Selection::Waiting) => {
            wanted.remove(&key);
            return;
        }
        (_, Selection::Loser(_)) => "Reject",
        // The selection chose a commit: only that one (a later change of the same run never).
        (_, Selection::Winner { commit: Some(c) }) if v.and_then(|v| v.commit.as_ref()) != Some(c) => "Reject",
        (Some(R::Failed | R::Error), Selection::NotACandidate) => "Reject",
        (Some(_), _) if gated => return,
        (Some(_), _) => "Approve",
    };
    let Some(commit) = v.and_then(|v| v.commit.clone()) else {
        wanted.remove(&key);
        return;
    };
    let subject = paddock_crds::verdict::Subject {
        namespace: run.metadata.namespace.as_deref().unwrap_or_default(),
        run: run.metadata.name.as_deref().unwrap_or_default(),
        run_uid: run.metadata.uid.as_deref().unwrap_or_default(),
        attempt,
        id: "push",
        subject: &commit,
    };
    match signer.verdict_value(&subject, verdict) {
        Some(value) => {
            wanted.insert(key, value);
        }
        None => {
            wanted.remove(&key);
        }
    }
}

/// The verdict annotations `gates` call for on the pod of `attempt`: `decision.paddock.dev/<id>`
/// → `<verdict>;ed25519=<signature>` for each decided gate of that attempt, signed by `signer`
/// for the run's UID, the attempt, the request id and (for a push) the commit the gate showed.
/// Run, attempt and id come from the gate's immutable spec (`runRef`, `request.id`), never from
/// labels or owner references, which a namespace `edit` user may change. Pure.
pub fn verdict_annotations(
    run: &AgentRun,
    gates: &[ApprovalGate],
    attempt: u32,
    signer: &paddock_crds::verdict::Signer,
) -> BTreeMap<String, String> {
    gates
        .iter()
        .filter(|g| super::gates::owned_by(g, run) && g.spec.run_ref.attempt == Some(attempt))
        .flat_map(|g| {
            let mut out = Vec::new();
            let Some(id) = g.spec.request.id.clone() else {
                return out;
            };
            let Some(v) = verdict(g) else { return out };
            // A Question's answer or a Plan's requested changes: the text travels in its own
            // annotation and the verdict signs its digest.
            let text = verdict_text(g);
            let digest = text.map(paddock_crds::verdict::text_subject);
            let subject = paddock_crds::verdict::Subject {
                namespace: run.metadata.namespace.as_deref().unwrap_or_default(),
                run: run.metadata.name.as_deref().unwrap_or_default(),
                run_uid: run.metadata.uid.as_deref().unwrap_or_default(),
                attempt,
                id: &id,
                subject: match (&digest, g.spec.stage) {
                    (Some(d), _) => d.as_str(),
                    (None, GateStage::BeforePush) => g.spec.request.commit.as_deref().unwrap_or(""),
                    (None, _) => "",
                },
            };
            let Some(value) = signer.verdict_value(&subject, v) else {
                return out;
            };
            if let Some(t) = text.filter(|t| !t.is_empty()) {
                out.push((format!("{}{id}", paddock_crds::verdict::TEXT_PREFIX), t.to_string()));
            }
            out.push((format!("{DECISION_PREFIX}{id}"), value));
            out
        })
        .collect()
}

/// Copies the verdicts of `run`'s decided in-run gates onto `pod` (server-side apply of the
/// annotations only, by [`MANAGER_VERDICTS`], forced: a value someone else wrote under the same
/// key is replaced); a no-op when the pod has them all. Returns the first gate of the pod's
/// attempt still pending, if any.
pub async fn sync_verdicts(
    ctx: &Context,
    run: &AgentRun,
    pod: &Pod,
    verification: Option<&paddock_crds::VerificationStatus>,
    selection: &Selection,
) -> Result<Option<ApprovalGate>> {
    let attempt = pod_attempt(pod);
    let gates = list_gates(ctx, run).await?;
    let mut wanted = verdict_annotations(run, &gates, attempt, &ctx.signer);
    held_push_verdict(run, attempt, verification, selection, &ctx.signer, &mut wanted);
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
    Ok(gates
        .into_iter()
        .find(|g| g.spec.run_ref.attempt == Some(attempt) && is_pending(g)))
}

/// Whether `gate` still waits for decisions (no final state yet).
pub fn is_pending(gate: &ApprovalGate) -> bool {
    !gate
        .status
        .as_ref()
        .and_then(|s| s.state)
        .is_some_and(GateState::is_final)
}

#[cfg(test)]
mod tests;
