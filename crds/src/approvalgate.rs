//! `ApprovalGate`: one decision a human must take before a run goes on. Created by the
//! operator, owned by its AgentRun; humans append decisions to `spec.decisions`.

use crate::condition::conditions_schema;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Desired state of a gate: what is asked, who may decide, and the decisions taken so far.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "paddock.dev",
    version = "v1alpha1",
    kind = "ApprovalGate",
    namespaced,
    status = "ApprovalGateStatus",
    shortname = "gate",
    category = "paddock",
    doc = "A decision a human must take before an AgentRun goes on.",
    printcolumn(name = "Run", type_ = "string", json_path = ".spec.runRef.name"),
    printcolumn(name = "Stage", type_ = "string", json_path = ".spec.stage"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Approvals", type_ = "integer", json_path = ".status.approvals"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(
    validation = Rule::new("self.stage != 'Pick' || self.decisions.all(d, d.decision == 'Reject' || (has(d.candidate) && d.candidate in self.request.candidates))").message("an Approve of a Pick gate names one of spec.request.candidates in candidate"),
    validation = Rule::new("(self.stage == 'Pick') == (has(self.runRef.kind) && self.runRef.kind == 'AgentRunSet')").message("a Pick gate, and only a Pick gate, has runRef.kind AgentRunSet"),
    validation = Rule::new("self.stage != 'Question' || self.decisions.all(d, d.decision != 'Approve' || (has(d.answer) && size(d.answer) > 0))").message("an Approve of a Question gate carries the answer in answer (kubectl paddock answer)"),
    validation = Rule::new("self.stage == 'Question' || self.decisions.all(d, !has(d.answer))").message("only the decisions of a Question gate carry an answer"),
    validation = Rule::new("self.stage == 'Plan' || self.decisions.all(d, d.decision != 'RequestChanges')").message("only a Plan gate's reviewers may request changes"),
    validation = Rule::new("self.decisions.all(d, d.decision != 'RequestChanges' || (has(d.comment) && size(d.comment) > 0))").message("a RequestChanges decision says which changes in comment"),
    validation = Rule::new("self.runRef == oldSelf.runRef && self.stage == oldSelf.stage && self.request == oldSelf.request && self.approvers == oldSelf.approvers && self.quorum == oldSelf.quorum && (has(self.timeout) ? has(oldSelf.timeout) && self.timeout == oldSelf.timeout : !has(oldSelf.timeout)) && (has(self.onTimeout) ? has(oldSelf.onTimeout) && self.onTimeout == oldSelf.onTimeout : !has(oldSelf.onTimeout))").message("only spec.decisions may change, by appending"),
)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalGateSpec {
    /// The AgentRun this gate belongs to: its name and, set by the operator, its UID and the
    /// attempt that asked. Immutable (the rule above), unlike labels and owner references,
    /// which a namespace `edit` user may change: the operator trusts a gate for a run and
    /// attempt only by these fields.
    pub run_ref: RunReference,
    /// When in the run the gate stands.
    pub stage: GateStage,
    /// What the approver is asked to approve.
    pub request: GateRequest,
    /// Who may decide. Empty: anyone allowed by RBAC to patch the gate.
    #[serde(default)]
    pub approvers: Approvers,
    /// Approvals needed (1..=10). One Reject decides the gate.
    #[schemars(range(min = 1, max = 10))]
    pub quorum: u32,
    /// How long the gate waits for decisions, from its creation, as a Go duration (`30m`, `24h`;
    /// 1s to 30 days). Unset: it never expires. A Warning Event `ExpiringSoon` precedes expiry
    /// (a fifth of the timeout before, at most 10 minutes before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('720h')").message("timeout must be a duration between 1s and 720h"))]
    pub timeout: Option<String>,
    /// What expiry means: `Reject` (default; the run ends `Rejected`, reason `GateExpired`) or
    /// `Approve` (the run goes on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<TimeoutAction>,
    /// Decisions, appended by humans (`kubectl patch --type=json` with
    /// `{"op":"add","path":"/spec/decisions/-","value":{…}}`). Append-only: earlier entries
    /// cannot be changed or removed.
    #[serde(default)]
    #[x_kube(validation = Rule::new("size(self) >= size(oldSelf) && oldSelf.all(d, d in self)").message("spec.decisions is append-only"))]
    #[schemars(length(max = 32))]
    pub decisions: Vec<Decision>,
}

/// Stage of a run a gate stands at.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateStage {
    /// Plan review: no pod until approved.
    BeforeStart,
    /// Diff-first review: the run has committed; its branch is pushed only after approval.
    BeforePush,
    /// A risky tool call during the run (`spec.approvals.toolUse`); the agent waits for it.
    ToolUse,
    /// An AgentRunSet's `Manual` selection: an approval names the candidate whose branch is
    /// pushed (`spec.decisions[].candidate`).
    Pick,
    /// The agent asks a human (`spec.approvals.questions`; the runner's MCP tool `ask_human`):
    /// an `Approve` carries the answer (`spec.decisions[].answer`), which becomes the tool's
    /// result; `Reject` or expiry answers "no answer", and the run goes on either way.
    Question,
    /// Plan review (`spec.approvals.plan`): the agent planned without changing anything and
    /// shows its plan (`spec.request.plan`). `Approve`: the same session carries it out;
    /// `Reject` (or expiry with `onTimeout: Reject`): the run ends `Rejected`, the plan kept
    /// here; `RequestChanges` with a comment: the comment goes back to the agent, which plans
    /// again under a new gate.
    Plan,
}

impl GateStage {
    /// The stage name as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            GateStage::BeforeStart => "BeforeStart",
            GateStage::BeforePush => "BeforePush",
            GateStage::ToolUse => "ToolUse",
            GateStage::Pick => "Pick",
            GateStage::Question => "Question",
            GateStage::Plan => "Plan",
        }
    }
}

/// What a gate asks.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GateRequest {
    /// For in-run gates: the runner's request id (`push`, `tool-<n>`, `question-<n>`,
    /// `plan-<n>`), which the signed verdict names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub id: Option<String>,
    /// One-paragraph summary for the approver (agent, repo, revision, the prompt's start).
    #[schemars(length(max = 4096))]
    pub summary: String,
    /// `BeforePush`: the commit that would be pushed (40 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub commit: Option<String>,
    /// `BeforePush`: `+insertions/-deletions` and files changed, e.g. `3 files, +10/-2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub diffstat: Option<String>,
    /// `BeforePush`: the ConfigMap holding the patch (`kubectl paddock diff <run>` prints it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub patch_ref: Option<String>,
    /// `ToolUse`: the tool name as the agent CLI names it (`Bash`, `Write`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub tool: Option<String>,
    /// `ToolUse`: the tool input (a command line or compact JSON, truncated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub input: Option<String>,
    /// `Pick`: the candidates that may be picked (their verification allows it), in the set's
    /// order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub candidates: Vec<String>,
    /// `Question`: what the agent asks (agent-reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub question: Option<String>,
    /// `Question`: the answers the agent offers to choose from, if any (agent-reported; at most
    /// 16, each at most 256 bytes). `kubectl paddock answer <run> --option N` answers with the
    /// N-th (from 1). Any other answer is allowed too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(o, size(o) <= 256)").message("each option is at most 256 bytes"))]
    pub options: Vec<String>,
    /// `Plan`: the agent's plan, as it presented it (agent-reported; Markdown, at most 32 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32768))]
    pub plan: Option<String>,
}

/// The run a gate belongs to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunReference {
    /// `AgentRun` (unset: the default) or, for a `Pick` gate, `AgentRunSet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<RunRefKind>,
    /// Name of the AgentRun (or AgentRunSet; same namespace).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `metadata.uid` of the AgentRun that the gate was created for. A run deleted and
    /// re-created under the same name has another UID, and this gate decides nothing for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub uid: Option<String>,
    /// For in-run gates (`BeforePush`, `ToolUse`): the attempt (from 1) whose runner asked. A
    /// retried attempt asks again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

/// The kind of object a gate belongs to.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunRefKind {
    /// An AgentRun (every stage but `Pick`).
    AgentRun,
    /// An AgentRunSet (stage `Pick`).
    AgentRunSet,
}

/// One human decision.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// The deciding user, as the API server authenticates them.
    #[schemars(length(min = 1, max = 253))]
    pub approver: String,
    /// `Approve` or `Reject`.
    pub decision: Verdict,
    /// Optional comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub comment: Option<String>,
    /// `Pick` gates: the candidate an `Approve` picks (one of `spec.request.candidates`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub candidate: Option<String>,
    /// `Question` gates: the answer an `Approve` gives (required there, refused elsewhere). It
    /// reaches the agent as the result of its `ask_human` call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub answer: Option<String>,
}

/// What a gate's expiry decides.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimeoutAction {
    /// Expiry rejects: the run ends `Rejected` with reason `GateExpired`.
    #[default]
    Reject,
    /// Expiry approves: the run goes on.
    Approve,
}

/// A decision's verdict.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let the run go on.
    Approve,
    /// Stop the run (it ends `Rejected`). On a `Question` gate: decline to answer (the agent
    /// gets "no answer" and goes on).
    Reject,
    /// `Plan` gates only: send the plan back with the changes asked for in `comment`; the
    /// agent plans again under a new gate.
    RequestChanges,
}

/// State of a gate.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateState {
    /// Waiting for decisions.
    Pending,
    /// Quorum reached.
    Approved,
    /// A Reject was recorded.
    Rejected,
    /// A `Plan` gate's reviewer requested changes (a `RequestChanges` decision): the comment
    /// went back to the agent, which plans again under a new gate.
    ChangesRequested,
    /// `spec.timeout` passed without a decision; `spec.onTimeout` says what that means.
    Expired,
    /// Nobody decided before the request lost its purpose: the run ended (`Succeeded`,
    /// `Failed`, `Cancelled`, `TimedOut`, `Rejected`), its attempt was replaced by a retry, or
    /// the run was deleted. Written by the operator's ApprovalGate controller; the `Decided`
    /// condition's reason says which (`RunFinished`, `Superseded`, `RunDeleted`). Final like the
    /// other decided states: later decisions are refused (the chart's admission policy) and
    /// never counted (the controller).
    Withdrawn,
}

impl GateState {
    /// The state as written in `status.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            GateState::Pending => "Pending",
            GateState::Approved => "Approved",
            GateState::Rejected => "Rejected",
            GateState::ChangesRequested => "ChangesRequested",
            GateState::Expired => "Expired",
            GateState::Withdrawn => "Withdrawn",
        }
    }

    /// Whether the gate is closed for good: every state but `Pending`. A closed gate's spec
    /// (its decisions too) cannot change any more.
    pub fn is_final(self) -> bool {
        self != GateState::Pending
    }
}

/// Observed state of a gate.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalGateStatus {
    /// `Pending`, `Approved`, `Rejected`, `ChangesRequested`, `Expired` or `Withdrawn` (see
    /// [`GateState`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<GateState>,
    /// Approve decisions counted (from allowed approvers, one per approver).
    #[serde(default)]
    pub approvals: u32,
    /// `Pick` gates: the candidate picked, once approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// `Question` gates: the answer given, once approved (the counted decision's `answer`);
    /// `Plan` gates: the changes requested (the counted decision's `comment`). This is the
    /// text the agent receives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Who decided the gate (the last counted decision), once decided by people (unset when it
    /// expired or was withdrawn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// When the gate was decided (or expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Time>,
    /// When the gate expires (`creationTimestamp + spec.timeout`), while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Whether the `ExpiringSoon` warning Event was published.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expiry_warned: bool,
    /// Conditions: `Decided` (False while pending; True with reason `Approved`, `Rejected`,
    /// `ChangesRequested`, `Expired`, or, withdrawn without a decision, `RunFinished`, `Superseded` or `RunDeleted`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A list of Kubernetes users and groups (as the API server authenticates them).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Approvers {
    /// User names (e.g. `alice@example.com`, `system:serviceaccount:ns:name`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Group names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}
