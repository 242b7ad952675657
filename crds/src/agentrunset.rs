//! `AgentRunSet`: several agents on one task (issue 19). The set creates one AgentRun per
//! candidate from a run template, the runs' verification judges their changes, and a selection
//! policy picks the one whose branch is pushed (docs/fan-out.md). Shaped like a Job's
//! `template` and Tekton's `PipelineRun` children: the set owns its runs, and its status is a
//! table of them.

use crate::agentrun::{AgentRunSpec, AgentSpec, Phase};
use crate::approvalgate::Approvers;
use crate::condition::conditions_schema;
use crate::verify::VerificationResult;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Label on a set's AgentRuns (and its `Pick` gate): the AgentRunSet's name.
pub const LABEL_SET: &str = "paddock.dev/set";
/// Label on a set's AgentRuns: the candidate's name.
pub const LABEL_CANDIDATE: &str = "paddock.dev/candidate";

/// The AgentRunSet that owns `run` as controller (an owner reference of kind `AgentRunSet`,
/// `controller: true`, group `paddock.dev`): its name and UID.
pub fn controller_set(run: &crate::AgentRun) -> Option<(String, String)> {
    run.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && o.kind == "AgentRunSet" && o.api_version.starts_with("paddock.dev/"))
        .map(|o| (o.name.clone(), o.uid.clone()))
}

/// The AgentRunSet `run` is a candidate of: the one recorded in `status.policy.agentRunSet`
/// once the run's first pod was built (operator-only status, so later edits of owner
/// references change nothing), else its controller owner ([`controller_set`]). Name and UID.
pub fn candidate_set(run: &crate::AgentRun) -> Option<(String, String)> {
    match run.status.as_ref().and_then(|s| s.policy.as_ref()) {
        Some(p) => p.agent_run_set.as_ref().map(|s| (s.name.clone(), s.uid.clone())),
        None => controller_set(run),
    }
}

/// Whether `run`'s pod gateway holds its push until the operator's signed verdict: a required
/// verification with `output.push` ([`AgentRunSpec::verification_holds_push`]), or an
/// AgentRunSet's candidate ([`candidate_set`]) with `output.push` (only the set's winner is
/// pushed).
pub fn holds_push(run: &crate::AgentRun) -> bool {
    run.spec.verification_holds_push()
        || (candidate_set(run).is_some() && run.spec.output.as_ref().is_some_and(|o| o.push))
}

/// Desired state of a set: the task (a run template), the candidates, how the winner is chosen.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "paddock.dev",
    version = "v1alpha1",
    kind = "AgentRunSet",
    namespaced,
    status = "AgentRunSetStatus",
    shortname = "ars",
    category = "paddock",
    doc = "Several agents on one task: one AgentRun per candidate, judged by verification, one winner pushed.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Verified", type_ = "integer", json_path = ".status.verified"),
    printcolumn(name = "Finished", type_ = "integer", json_path = ".status.finished"),
    printcolumn(name = "Total", type_ = "integer", json_path = ".status.total"),
    printcolumn(name = "Winner", type_ = "string", json_path = ".status.winner"),
    printcolumn(name = "Policy", type_ = "string", json_path = ".spec.selection.policy", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.spec.candidates.all(c, size(self.metadata.name) + size(c.name) <= 51)").message("the set's name and a candidate's name together are at most 51 characters (the candidate's AgentRun is named <set>-<candidate>)"),
)]
#[x_kube(
    validation = Rule::new("self.candidates.all(a, self.candidates.exists_one(b, b.name == a.name))").message("candidate names must be unique"),
    validation = Rule::new("has(self.template.spec.verify)").message("spec.template.spec.verify is required: a set judges its candidates by their verification"),
    validation = Rule::new("!has(self.template.spec.cancel) || !self.template.spec.cancel").message("spec.template.spec.cancel must not be set; cancel the set with spec.cancel"),
    validation = Rule::new("!has(self.template.spec.resumeFrom)").message("spec.template.spec.resumeFrom is not supported in a set"),
    validation = Rule::new("!has(self.template.spec.approvals) || !has(self.template.spec.approvals.toolUse) || self.candidates.all(c, has(c.agent) ? c.agent.name == 'claude-code' : self.template.spec.agent.name == 'claude-code')").message("spec.template.spec.approvals.toolUse is supported for agent claude-code only: every candidate must run claude-code (see docs/approvals.md)"),
    validation = Rule::new("!has(self.template.spec.retry) || self.template.spec.retry.limit == 0").message("spec.template.spec.retry is not supported in a set: a candidate's verified change is the one selected"),
    validation = Rule::new("!has(self.template.spec.output) || !has(self.template.spec.output.branch)").message("spec.template.spec.output.branch is not supported in a set: each candidate pushes to its own paddock/<run> branch"),
    validation = Rule::new("oldSelf.cancel == true ? self.cancel == true : true").message("spec.cancel cannot be unset once set"),
    validation = Rule::new("self.template == oldSelf.template && self.candidates == oldSelf.candidates && self.selection == oldSelf.selection").message("spec is immutable after creation, except spec.cancel and spec.maxParallel"),
)]
#[serde(rename_all = "camelCase")]
pub struct AgentRunSetSpec {
    /// The AgentRun every candidate runs: repo, revision, prompt, pool, budget, verify, output,
    /// approvals. `spec.verify` is required. Each candidate's `agent` replaces `spec.agent`.
    pub template: AgentRunTemplate,
    /// The agents compared, 1 to 16; one AgentRun each, named `<set>-<candidate>`, created in
    /// this order (at most `maxParallel` at once).
    #[schemars(length(min = 1, max = 16))]
    pub candidates: Vec<Candidate>,
    /// How the winner is chosen. Default `FirstVerified`.
    #[serde(default)]
    pub selection: SelectionSpec,
    /// Most candidates whose agent works at once (1..=16; default: all). Further candidates
    /// queue, as a Job's `parallelism`; a candidate waiting for the selection with its change
    /// verified does not count. May be changed after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub max_parallel: Option<u32>,
    /// Set to `true` to cancel the set: its runs still going are cancelled, queued candidates
    /// never start, nothing is pushed. Cannot be unset.
    #[serde(default)]
    pub cancel: bool,
}

/// The template of the set's AgentRuns, as a Job's `spec.template`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgentRunTemplate {
    /// Labels and annotations for the runs (the set adds `paddock.dev/set` and
    /// `paddock.dev/candidate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    /// The runs' spec (an AgentRun's `spec`).
    pub spec: AgentRunSpec,
}

/// Labels and annotations of a template.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    /// Labels added to each run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to each run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One agent in the comparison.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// A DNS label naming the candidate (e.g. `claude`, `codex-mini`); its run is
    /// `<set>-<name>`, and `kubectl paddock pick` names it.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("a candidate name is a DNS label: lowercase letters, digits and '-'"))]
    #[schemars(length(min = 1, max = 40))]
    pub name: String,
    /// The agent CLI, model, arguments and environment (an AgentRun's `spec.agent`). Unset:
    /// the template's. The same CLI with two models is two candidates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentSpec>,
}

/// `spec.selection`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SelectionSpec {
    /// `FirstVerified` (default), `CheapestVerified`, `FastestVerified` or `Manual`.
    #[serde(default)]
    pub policy: SelectionPolicy,
    /// `Manual`: who may pick (an ApprovalGate of stage `Pick`). Empty: anyone allowed by RBAC
    /// to patch the gate.
    #[serde(default)]
    pub approvers: Approvers,
    /// `Manual`: approvals naming the same candidate needed (1..=10; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub quorum: Option<u32>,
    /// `Manual`: how long the `Pick` gate waits (Go duration, 1s to 720h). Unset: forever.
    /// Expiry picks nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('720h')").message("timeout must be a duration between 1s and 720h"))]
    pub timeout: Option<String>,
}

/// How a set chooses its winner. Every policy but `Manual` considers only candidates whose
/// verification `Passed`; ties go to the candidate listed first.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SelectionPolicy {
    /// The first candidate whose verification passes wins at once (the others run on, for the
    /// comparison, and are not pushed; queued candidates do not start).
    #[default]
    FirstVerified,
    /// Once every candidate is done, the verified one with the lowest cost (USD as the CLI or
    /// the metering gateway reported it; unknown cost counts last) wins.
    CheapestVerified,
    /// Once every candidate is done, the verified one whose agent took the shortest time wins.
    FastestVerified,
    /// Once every candidate is done, a human picks one on an ApprovalGate of stage `Pick`
    /// (`kubectl paddock pick <set> <candidate>`).
    Manual,
}

impl SelectionPolicy {
    /// The policy as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            SelectionPolicy::FirstVerified => "FirstVerified",
            SelectionPolicy::CheapestVerified => "CheapestVerified",
            SelectionPolicy::FastestVerified => "FastestVerified",
            SelectionPolicy::Manual => "Manual",
        }
    }
}

/// Phase of a set, a summary of its conditions.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetPhase {
    /// Candidates are running (or queued).
    Running,
    /// Every candidate is done; the `Pick` gate waits for a human.
    Selecting,
    /// A winner was selected and its run ended `Succeeded`.
    Succeeded,
    /// No winner (no candidate verified, the pick was rejected or expired), or the winner's
    /// run failed.
    Failed,
    /// `spec.cancel` was set.
    Cancelled,
}

impl SetPhase {
    /// Whether the set has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, SetPhase::Succeeded | SetPhase::Failed | SetPhase::Cancelled)
    }

    /// The phase as written in `status.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            SetPhase::Running => "Running",
            SetPhase::Selecting => "Selecting",
            SetPhase::Succeeded => "Succeeded",
            SetPhase::Failed => "Failed",
            SetPhase::Cancelled => "Cancelled",
        }
    }
}

/// Observed state of a set, written by the operator only.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(oldSelf.winner) || (has(self.winner) && self.winner == oldSelf.winner)").message("status.winner cannot change once set"),
)]
pub struct AgentRunSetStatus {
    /// Summary of the conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SetPhase>,
    /// `Selected` (True once a winner is chosen; False with reason `NoCandidateVerified`,
    /// `PickRejected`, `PickExpired` or `Cancelled`) and `Succeeded` (the set's end).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One row per candidate, in `spec.candidates` order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<CandidateStatus>,
    /// Candidates in the set.
    #[serde(default)]
    pub total: u32,
    /// Candidates whose agent is done (verification concluded, or the run ended).
    #[serde(default)]
    pub finished: u32,
    /// Candidates whose verification passed.
    #[serde(default)]
    pub verified: u32,
    /// The winning candidate's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// How the winner was chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<SelectionStatus>,
    /// The `Pick` ApprovalGate (`Manual`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_name: Option<String>,
    /// When the set started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
}

/// One candidate's row in the set's table, copied from its AgentRun's status (kept when the
/// run is deleted).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CandidateStatus {
    /// The candidate's name.
    pub name: String,
    /// Its AgentRun (unset while queued).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// The agent CLI.
    #[serde(default)]
    pub agent: String,
    /// The model, when the candidate names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The run's phase (unset while queued).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The run's `Succeeded` condition reason (e.g. `Succeeded`, `NotSelected`,
    /// `VerificationFailed`), or `Queued`/`Skipped` for a candidate that has no run.
    #[serde(default)]
    pub reason: String,
    /// The verification's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationResult>,
    /// The verification's reason (`Passed`, `ChecksFailed`, `ProtectedPathChanged`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_reason: Option<String>,
    /// The test runner's closing line (e.g. `2 passed`, `1 passed, 1 failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Files changed and lines, e.g. `1 file, +2/-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diffstat: Option<String>,
    /// Cost in US dollars, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Input plus output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Agent turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turns: Option<u32>,
    /// Seconds from the run's start to its agent's end (the verification's start), or to the
    /// run's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
    /// Whether its branch was pushed.
    #[serde(default)]
    pub pushed: bool,
    /// The commit its verification judged (the pod gateway's reviewed commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// When its verification ended (what `FirstVerified` orders by).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<Time>,
}

/// How the winner was chosen.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SelectionStatus {
    /// The winner.
    pub candidate: String,
    /// The policy that chose it.
    pub policy: SelectionPolicy,
    /// The commit selected (the winner's verified commit): the winner's push is approved for
    /// this commit only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Why, for people (e.g. `the first candidate whose verification passed (2 passed)`).
    #[serde(default)]
    pub message: String,
    /// `Manual`: who picked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Time>,
}
