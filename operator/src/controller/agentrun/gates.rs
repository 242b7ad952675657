//! The run's ApprovalGates: their names (the BeforeStart gate's, an in-run request's), whether a
//! gate is the run's, and the gate objects the operator creates.

use super::build::owner_ref;
use super::prompt::PromptText;
use paddock_crds::{AgentRun, ApprovalGate, ApprovalGateSpec, GatePolicy, GateRequest, GateStage};
use std::collections::BTreeMap;

/// Name of the run's BeforeStart gate: `<run>-before-start`.
pub fn gate_name(run: &AgentRun) -> String {
    format!("{}-before-start", run.metadata.name.as_deref().unwrap_or_default())
}

/// A gate name for `run` when `name` is taken by a gate of an earlier run of the same name:
/// `<name>-<first 8 characters of the run's UID>` (e.g. `<run>-before-start-1a2b3c4d`).
pub fn of_uid(name: &str, run: &AgentRun) -> String {
    let uid = run.metadata.uid.as_deref().unwrap_or_default();
    format!("{name}-{}", &uid[..uid.len().min(8)])
}

/// Whether `gate` belongs to `run`, not to an earlier run of the same name: its immutable
/// `spec.runRef.uid` is the run's UID. (Owner references prove nothing here: a namespace `edit`
/// user may patch a gate's metadata.)
pub fn owned_by(gate: &ApprovalGate, run: &AgentRun) -> bool {
    gate.spec.run_ref.uid.is_some() && gate.spec.run_ref.uid == run.metadata.uid
}

/// Builds the BeforeStart ApprovalGate `name` of `run` from its policy; its request shows
/// `prompt` (`spec.prompt` as read from the API server, its first 2 KiB), or names
/// `spec.promptFrom`'s ConfigMap key when `prompt` is `None`.
pub fn build_gate(run: &AgentRun, policy: &GatePolicy, name: &str, prompt: Option<&PromptText>) -> ApprovalGate {
    let prompt = match (prompt, &run.spec.prompt_from) {
        (Some(p), _) => paddock_crds::events::truncate(p.as_str(), 2048),
        (None, Some(f)) => format!("(prompt from ConfigMap {} key {})", f.name, f.key),
        (None, None) => "(not read)".into(),
    };
    let summary = format!(
        "Run {} wants to start agent {} on {} at {}.\nPrompt: {}",
        run.metadata.name.as_deref().unwrap_or_default(),
        run.spec.agent.name.as_str(),
        run.spec.repo.url,
        run.spec.repo.revision.as_deref().unwrap_or("HEAD"),
        prompt
    );
    new_gate(
        run,
        policy,
        name,
        GateStage::BeforeStart,
        GateRequest {
            summary: paddock_crds::events::truncate(&summary, 4096),
            ..Default::default()
        },
        None,
    )
}

/// Name of the gate for the runner's in-run request `id` (`push`, `tool-<n>`) of attempt
/// `attempt`: `<run>-<id>` for the first attempt, `<run>-a<attempt>-<id>` for a retry, which
/// asks again instead of inheriting the first attempt's verdicts.
pub fn request_gate_name(run: &AgentRun, id: &str, attempt: u32) -> String {
    let name = run.metadata.name.as_deref().unwrap_or_default();
    if attempt <= 1 {
        format!("{name}-{id}")
    } else {
        format!("{name}-a{attempt}-{id}")
    }
}

/// A gate of `run` named `name` at `stage`, asking `request`, decided per `policy`, for
/// `attempt` (in-run gates); owned by the run, labelled with its name and the stage, and bound
/// to the run's UID in its immutable `spec.runRef`.
pub fn new_gate(
    run: &AgentRun,
    policy: &GatePolicy,
    name: &str,
    stage: GateStage,
    request: GateRequest,
    attempt: Option<u32>,
) -> ApprovalGate {
    let mut gate = ApprovalGate::new(
        name,
        ApprovalGateSpec {
            run_ref: paddock_crds::RunReference {
                name: run.metadata.name.clone().unwrap_or_default(),
                uid: run.metadata.uid.clone(),
                attempt,
                kind: None,
            },
            stage,
            request,
            approvers: policy.approvers.clone(),
            quorum: policy.quorum.unwrap_or(1),
            timeout: policy.timeout.clone(),
            on_timeout: policy.on_timeout,
            decisions: vec![],
        },
    );
    gate.metadata.namespace = run.metadata.namespace.clone();
    gate.metadata.owner_references = Some(vec![owner_ref(run)]);
    gate.metadata.labels = Some(BTreeMap::from([
        (
            paddock_crds::LABEL_RUN.into(),
            run.metadata.name.clone().unwrap_or_default(),
        ),
        (paddock_crds::LABEL_STAGE.into(), stage.as_str().into()),
    ]));
    gate
}
