//! `AgentRun`: one agent task — a repository, an agent CLI, a prompt, a budget — run once in a
//! sandboxed pod from a [`crate::RunnerPool`].

pub use crate::agent::AgentName;
use crate::approvalgate::{Approvers, TimeoutAction};
use crate::condition::conditions_schema;
use crate::events::{RunResult, Usage};
use crate::network::NetworkSpec;
use crate::reference::LocalObjectRef;
use k8s_openapi::api::core::v1::EnvVar;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Desired state of an AgentRun. Immutable once created, except `cancel`, `priority` and
/// `ttlSecondsAfterFinished` (a CEL rule on the
/// CRD refuses other edits; the run's spec is the record of what was asked).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "paddock.dev",
    version = "v1alpha1",
    kind = "AgentRun",
    namespaced,
    status = "AgentRunStatus",
    shortname = "ar",
    category = "paddock",
    doc = "One coding-agent task run in a sandboxed pod.",
    printcolumn(name = "Agent", type_ = "string", json_path = ".spec.agent.name"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Repo", type_ = "string", json_path = ".spec.repo.url", priority = 1),
    printcolumn(name = "Diff", type_ = "string", json_path = ".status.result.diffstat"),
    printcolumn(name = "Verified", type_ = "string", json_path = ".status.verification.result", priority = 1),
    printcolumn(name = "PR", type_ = "string", json_path = ".status.result.pullRequest.url", priority = 1),
    printcolumn(name = "Duration", type_ = "string", json_path = ".status.duration"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Succeeded\")].reason", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 52").message("AgentRun names are at most 52 characters (pods and branches are derived from them)"),
)]
#[x_kube(
    validation = Rule::new("has(self.prompt) != has(self.promptFrom)").message("set exactly one of spec.prompt and spec.promptFrom"),
    validation = Rule::new("oldSelf.cancel == true ? self.cancel == true : true").message("spec.cancel cannot be unset once set"),
    validation = Rule::new("!has(self.approvals) || !has(self.approvals.beforePush) || (has(self.output) && self.output.push == true)").message("spec.approvals.beforePush needs spec.output.push: true (there is nothing to approve without a push)"),
    validation = Rule::new("!has(self.approvals) || !has(self.approvals.toolUse) || self.agent.name == 'claude-code'").message("spec.approvals.toolUse is supported for agent claude-code only (see docs/approvals.md)"),
    validation = Rule::new("!has(self.approvals) || !has(self.approvals.plan) || self.agent.name == 'claude-code'").message("spec.approvals.plan is supported for agent claude-code only (see docs/conversing.md)"),
    validation = Rule::new("!has(self.approvals) || !has(self.approvals.questions) || self.agent.name in ['claude-code', 'gemini-cli']").message("spec.approvals.questions is supported for agents claude-code and gemini-cli only (see docs/conversing.md)"),
    validation = Rule::new("!has(self.approvals) || !has(self.approvals.questions) || !has(self.approvals.questions.quorum) || self.approvals.questions.quorum == 1").message("spec.approvals.questions.quorum must be 1: one person answers a question"),
    validation = Rule::new("!has(self.resumeFrom) || self.agent.name == 'claude-code' || self.agent.name == 'codex'").message("spec.resumeFrom is supported for agents claude-code and codex only (see docs/agents.md)"),
    validation = Rule::new("self.repo == oldSelf.repo && self.agent == oldSelf.agent && (has(self.prompt) ? has(oldSelf.prompt) && self.prompt == oldSelf.prompt : !has(oldSelf.prompt)) && (has(self.promptFrom) ? has(oldSelf.promptFrom) && self.promptFrom == oldSelf.promptFrom : !has(oldSelf.promptFrom)) && (has(self.runnerPoolRef) ? has(oldSelf.runnerPoolRef) && self.runnerPoolRef == oldSelf.runnerPoolRef : !has(oldSelf.runnerPoolRef)) && (has(self.budget) ? has(oldSelf.budget) && self.budget == oldSelf.budget : !has(oldSelf.budget)) && (has(self.approvals) ? has(oldSelf.approvals) && self.approvals == oldSelf.approvals : !has(oldSelf.approvals)) && (has(self.output) ? has(oldSelf.output) && self.output == oldSelf.output : !has(oldSelf.output)) && (has(self.retry) ? has(oldSelf.retry) && self.retry == oldSelf.retry : !has(oldSelf.retry)) && (has(self.runner) ? has(oldSelf.runner) && self.runner == oldSelf.runner : !has(oldSelf.runner)) && (has(self.network) ? has(oldSelf.network) && self.network == oldSelf.network : !has(oldSelf.network)) && (has(self.resumeFrom) ? has(oldSelf.resumeFrom) && self.resumeFrom == oldSelf.resumeFrom : !has(oldSelf.resumeFrom)) && (has(self.verify) ? has(oldSelf.verify) && self.verify == oldSelf.verify : !has(oldSelf.verify))").message("spec is immutable after creation, except spec.cancel, spec.priority and spec.ttlSecondsAfterFinished"),
)]
#[serde(rename_all = "camelCase")]
pub struct AgentRunSpec {
    /// The repository to clone and the revision to start from.
    pub repo: RepoSpec,
    /// The agent CLI to run and how.
    pub agent: AgentSpec,
    /// The task, as given to the CLI's non-interactive prompt argument (at most 64 KiB).
    /// Exactly one of `prompt` and `promptFrom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub prompt: Option<String>,
    /// The task, read from a ConfigMap key in the run's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_from: Option<ConfigMapKeyRef>,
    /// The RunnerPool (same namespace) that runs this. Default: the pool named `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_pool_ref: Option<LocalObjectRef>,
    /// Limits on the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetSpec>,
    /// The repository's own checks, run on the agent's committed tree by the operator
    /// (docs/verification.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<crate::verify::VerifySpec>,
    /// Human approvals the run must pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<ApprovalsSpec>,
    /// What to do with the agent's changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputSpec>,
    /// Retries of attempts that failed for reasons outside the agent's control (the pod was
    /// deleted, evicted or lost with its node; the runner image could not be pulled; the agent
    /// failed right after the model endpoint answered 429 or 5xx, as the pod's gateway saw it:
    /// reason `ModelUnavailable`). An agent-declared failure (a non-zero exit, a failed step) is
    /// never retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpec>,
    /// Queue priority in a pool with `queue.policy: Priority`: higher starts first (-1000..=1000,
    /// default 0; ties by creation time). May be changed while the run is queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1000, max = 1000))]
    pub priority: Option<i32>,
    /// Hosts the agent may reach, narrower than the pool's `spec.network.egress` (every entry
    /// must be allowed by the pool's list, else the run fails with `OverrideNotAllowed`).
    /// Unset: the pool's list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSpec>,
    /// Changes to the pool's pod template for this run, within what the pool's
    /// `spec.overrides` allows (otherwise the run fails with reason `OverrideNotAllowed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<RunnerOverride>,
    /// An earlier AgentRun (same namespace, same agent: `claude-code` or `codex`) whose CLI
    /// session this run continues: its saved session (`status.result.sessionRef`) is restored
    /// and the CLI resumes it (Claude Code `--resume <id>`, `codex exec resume <id>`), with
    /// this run's prompt as the next message; when that run pushed its branch, this run starts
    /// from it. The run waits while the earlier one is still going (reason
    /// `WaitingForResumeSource`) and fails with `ResumeNotPossible` when it saved no session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_from: Option<LocalObjectRef>,
    /// Set to `true` to cancel the run (like Tekton's `spec.status: Cancelled`): the pod is
    /// stopped and the run ends `Cancelled`. Cannot be unset.
    #[serde(default)]
    pub cancel: bool,
    /// Seconds after the run ends (`status.completionTime`) when the operator deletes it, as a
    /// Job's `spec.ttlSecondsAfterFinished` (0: at once). Unset: the pool's
    /// `spec.ttlSecondsAfterFinished`, else never. With an archive configured, the run is
    /// deleted only once its evidence bundle is archived (`status.archive`). May be changed
    /// after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i32>,
}

impl AgentRunSpec {
    /// Whether the run's push waits for its verification (`verify.required` with
    /// `output.push`): the pod's gateway holds it until the operator's signed verdict.
    pub fn verification_holds_push(&self) -> bool {
        self.verify.as_ref().is_some_and(|v| v.required) && self.output.as_ref().is_some_and(|o| o.push)
    }
}

/// A run's changes to its pool's pod template.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunnerOverride {
    /// Runner image instead of the pool's (needs `overrides.image: true` on the pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub image: Option<String>,
    /// Resources of the agent container instead of the pool's (each at most the pool's
    /// `overrides.maxResources`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
}

/// The repository a run works on.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RepoSpec {
    /// Clone URL: `https://`, `ssh://`, `git://` or `file://` (`ext::` and option-like URLs, and
    /// URLs with whitespace or control characters, are refused).
    #[x_kube(validation = Rule::new("self.matches('^(https|http|ssh|git|file)://[^\\\\s\\\\p{Cc}]+$')").message("repo.url must be an https://, http://, ssh://, git:// or file:// URL (no whitespace or control characters)"))]
    #[schemars(length(max = 2048))]
    pub url: String,
    /// Branch, tag or commit to start from. Default: the remote's HEAD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!self.startsWith('-') && !self.contains('..') && self.matches('^[A-Za-z0-9._/@^~-]+$')").message("repo.revision must be a branch, tag or commit (no leading '-', no '..')"))]
    #[schemars(length(max = 255))]
    pub revision: Option<String>,
    /// Secret (same namespace) with git credentials: key `token` (https), or `username` and
    /// `password`, or `ssh-privatekey` and `known_hosts`. Mounted only into the trusted clone and
    /// gateway containers, never into the agent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<LocalObjectRef>,
    /// Sub-directory of the repository the agent starts in (relative, no `..`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.split('/').exists(p, p == '..')").message("repo.workdir must be a relative path inside the repository"))]
    #[schemars(length(max = 255))]
    pub workdir: Option<String>,
}

/// The agent CLI to run.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.name == 'custom' ? has(self.command) && size(self.command) > 0 : !has(self.command)").message("agent.command is required for agent custom and only allowed there"),
    validation = Rule::new("!has(self.output) || self.name == 'custom'").message("agent.output is only allowed for agent custom"),
)]
pub struct AgentSpec {
    /// Which CLI: `claude-code`, `codex`, `qwen-code`, `opencode`, `gemini-cli`, `aider`,
    /// `hermes`, `openclaw`, `openhands`, `shell` or `custom` (docs/agents.md).
    pub name: AgentName,
    /// For `custom` only (required there, refused otherwise): the program and its first
    /// arguments, e.g. `["node", "/opt/agent/main.js"]`. Run without a shell; Paddock appends
    /// `args` and then the prompt as the last argument. The program must be in the runner image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub command: Vec<String>,
    /// For `custom` only: how its stdout is read. `Text` (default): each line is a `log`
    /// event and the last non-blank line is the final text. `JSONLines`: each line is one
    /// Paddock event (`{"type":"message","text":…}`, `tool_call`, `tool_result`, `usage`,
    /// `final`, `log`; see docs/agents.md); other lines are `log` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<CustomOutput>,
    /// Model name passed to the CLI's `--model`/`-m` flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub model: Option<String>,
    /// Extra CLI arguments, appended after Paddock's own (never interpreted by a shell).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub args: Vec<String>,
    /// Environment for the agent container. Credentials (API keys) must come from Secrets by
    /// `valueFrom.secretKeyRef`: a literal `value` is refused for names that look like
    /// credentials (`*KEY*`, `*TOKEN*`, `*SECRET*`, `*PASSWORD*`). Values from Secrets are
    /// redacted from every output Paddock persists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::condition::env_schema")]
    pub env: Vec<EnvVar>,
}

/// How a `custom` agent's stdout is read.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CustomOutput {
    /// Plain text: each line a `log` event, the last non-blank line the final text.
    #[default]
    Text,
    /// One Paddock event as JSON per line.
    #[serde(rename = "JSONLines")]
    JsonLines,
}

impl CustomOutput {
    /// The value of the runner's `PADDOCK_AGENT_OUTPUT` (`text` or `jsonl`).
    pub fn as_env(self) -> &'static str {
        match self {
            CustomOutput::Text => "text",
            CustomOutput::JsonLines => "jsonl",
        }
    }
}

/// Limits on a run.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BudgetSpec {
    /// Wall-clock limit from pod start, as a Go duration (`30m`, `1h`). Enforced by the pod's
    /// `activeDeadlineSeconds` and by the operator's own deadline. Default: 1h. At most 24h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s') && duration(self) <= duration('24h')").message("budget.timeout must be a duration between 1s and 24h"))]
    pub timeout: Option<String>,
    /// Most agent turns (Claude Code `--max-turns`). 1..=1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_turns: Option<u32>,
    /// Most US dollars the run's model calls may cost, as the pod's gateway meters and prices
    /// them (token counts from the model API's responses × the pool's price table). Once
    /// reached, the gateway refuses further model calls, the agent is stopped, the work so far
    /// is committed and reported, and the run fails with reason `BudgetExceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "maxCostUSD")]
    #[schemars(range(min = 0.0001, max = 100000.0))]
    pub max_cost_usd: Option<f64>,
    /// Most output (completion) tokens over all the run's model calls, metered by the gateway;
    /// enforced like `maxCostUSD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000000))]
    pub max_output_tokens: Option<u64>,
}

/// How often, and after how long, a retryable failure starts a new attempt.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RetrySpec {
    /// Extra attempts after the first (0..=5). Default 0: no retry.
    #[serde(default)]
    #[schemars(range(min = 0, max = 5))]
    pub limit: u32,
    /// Wait before attempt n+1, doubled after each retry (Go duration, 1s to 10m; default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('10m')").message("retry.backoff must be a duration between 1s and 10m"))]
    pub backoff: Option<String>,
}

/// One ended attempt of a run that was retried.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AttemptStatus {
    /// 1-based attempt number.
    pub attempt: u32,
    /// Its runner pod, `<run>-<attempt>`.
    pub pod_name: String,
    /// When its pod was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Why it ended (`PodDeleted`, `PodLost`, `PodEvicted`, `ImagePullFailed`, …).
    pub reason: String,
    /// Details.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub message: String,
    /// The agent container's exit code, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// ConfigMap holding this attempt's event log (key `events.jsonl`), `<run>-log-<attempt>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_ref: Option<String>,
}

/// Approvals a run must pass.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalsSpec {
    /// Plan review: no pod starts until an ApprovalGate of stage `BeforeStart` is approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_start: Option<GatePolicy>,
    /// Diff-first review: after the agent finished and the work is committed, an ApprovalGate of
    /// stage `BeforePush` carries the diffstat and the patch's ConfigMap; the branch is pushed
    /// only once it is approved. Reject (or expiry with `onTimeout: Reject`) ends the run
    /// `Rejected` with nothing pushed. Needs `output.push: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_push: Option<GatePolicy>,
    /// Risky actions: a tool call that matches one of `rules` stops at an ApprovalGate of stage
    /// `ToolUse`; approve lets it run, reject makes the CLI see a denial. Every other call runs
    /// without asking (the pod is the sandbox). Supported for `claude-code` (run with
    /// `--permission-mode default` and the runner's `--permission-prompt-tool`, which sees every
    /// call but the read-only ones); see docs/approvals.md for what each CLI can gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use: Option<ToolUsePolicy>,
    /// Plan review during the run: the agent first plans without changing anything (Claude
    /// Code's `--permission-mode plan`), and its plan becomes an ApprovalGate of stage `Plan`.
    /// `Approve`: the same session carries the plan out; `Reject` (or expiry with `onTimeout:
    /// Reject`): the run ends `Rejected` with the plan kept in the gate and nothing pushed;
    /// `RequestChanges` with a comment: the agent gets the comment and plans again. The pod's
    /// gateway pushes nothing unless a plan was approved, and a run whose agent ended without
    /// an approved plan fails with reason `PlanNotApproved`. Supported for `claude-code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<GatePolicy>,
    /// Questions from the agent: the runner offers the agent CLI an MCP tool
    /// `ask_human(question, options?)`; each call opens an ApprovalGate of stage `Question`
    /// whose approvers answer it (`kubectl paddock answer <run> "…"`). The answer is the tool's
    /// result; a `Reject` or the gate's expiry gives "no answer", and the run goes on either
    /// way. Supported for `claude-code` and `gemini-cli` (docs/conversing.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub questions: Option<GatePolicy>,
}

/// Which tool calls need a human, and who decides them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ToolUsePolicy {
    /// Tool calls to gate (1..=32). A call that matches none of them runs without asking.
    #[schemars(length(min = 1, max = 32))]
    pub rules: Vec<ToolRule>,
    /// Who decides, quorum, timeout (as for the other stages).
    #[serde(flatten)]
    pub gate: GatePolicy,
}

/// One tool-call pattern.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ToolRule {
    /// Tool name as the CLI names it (`Bash`, `Write`, `Edit`, `WebFetch`, …), or `*` for any.
    #[schemars(length(min = 1, max = 128))]
    pub tool: String,
    /// Shell-style glob (`*`, `?`, `[…]`; `*` also matches `/`) over the call's subject: the
    /// command line for `Bash`, the file path for `Write`/`Edit`/`Read` (relative to the CLI's
    /// working directory when inside it, else absolute: `/*` is "outside"), the URL for
    /// `WebFetch`, else the input as compact JSON. For `Bash` it also matches each command of
    /// the line word by word, its option words as a set (`rm -rf *` catches `rm -fr x`,
    /// `rm -r -f x`, `cd d && rm -rf x`); docs/approvals.md, "What a rule catches", has the
    /// exact rules and tested examples. Unset: every call of `tool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub pattern: Option<String>,
}

/// Who may decide a gate, and how many approvals it needs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatePolicy {
    /// Users and groups allowed to decide. Empty: anyone with RBAC `patch` on the gate.
    #[serde(default)]
    pub approvers: Approvers,
    /// Approvals needed (1..=10; default 1). One Reject decides the gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub quorum: Option<u32>,
    /// How long the gate waits (Go duration, 1s to 720h). Unset: forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('720h')").message("timeout must be a duration between 1s and 720h"))]
    pub timeout: Option<String>,
    /// What expiry decides: `Reject` (default) or `Approve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<TimeoutAction>,
}

/// What happens to the agent's changes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.pullRequest) || self.push").message("output.pullRequest needs output.push: true"))]
pub struct OutputSpec {
    /// Branch to commit to. Default `paddock/<run name>`. A branch name in short form as
    /// `git check-ref-format --branch` accepts it (`paddock/fix-1`, not `refs/heads/...` nor
    /// `HEAD`), limited to `[A-Za-z0-9._/-]`, not starting with `-` or `.`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!self.startsWith('-') && !self.startsWith('/') && !self.startsWith('.') && !self.startsWith('refs/') && self != 'HEAD' && !self.contains('..') && !self.contains('//') && !self.contains('/.') && !self.endsWith('.lock') && !self.endsWith('/') && !self.endsWith('.') && self.matches('^[A-Za-z0-9._/-]+$')").message("output.branch must be a valid git branch name, short form (e.g. paddock/fix-1, not refs/heads/...; no leading '-' or '.', no '..')"))]
    #[schemars(length(max = 200))]
    pub branch: Option<String>,
    /// Push the branch to `repo.url` after committing. Default false.
    #[serde(default)]
    pub push: bool,
    /// Commit message. Default `paddock: <run>` and the prompt's first line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub commit_message: Option<String>,
    /// Open a pull request from the pushed branch (needs `push`), by the operator with
    /// `repo.credentialsSecretRef`'s `token`; recorded in `status.result.pullRequest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<crate::forge::PullRequestSpec>,
}

/// Reference to one key of a ConfigMap in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// ConfigMap name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in its `data`.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Lifecycle phase of an AgentRun, a summary of its conditions for humans and printer columns.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Accepted, not yet scheduled.
    Pending,
    /// Waiting for capacity in its pool (`maxConcurrentRuns`).
    Queued,
    /// Waiting for a human decision on an ApprovalGate.
    AwaitingApproval,
    /// The runner pod exists and has not finished.
    Running,
    /// The agent finished and its changes are committed.
    Succeeded,
    /// A step failed, or the spec is invalid.
    Failed,
    /// `spec.cancel` was set before the run ended.
    Cancelled,
    /// `spec.budget.timeout` passed before the run ended.
    TimedOut,
    /// A required approval was rejected.
    Rejected,
}

impl Phase {
    /// The phase as written in `status.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Queued => "Queued",
            Phase::AwaitingApproval => "AwaitingApproval",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Cancelled => "Cancelled",
            Phase::TimedOut => "TimedOut",
            Phase::Rejected => "Rejected",
        }
    }

    /// Whether the run has ended (no further transitions).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Phase::Succeeded | Phase::Failed | Phase::Cancelled | Phase::TimedOut | Phase::Rejected
        )
    }
}

/// Observed state of an AgentRun.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AgentRunStatus {
    /// Summary of the conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Conditions (metav1.Condition): `Succeeded` (Unknown while the run goes on, then True or
    /// False with reason `Succeeded`, `Failed`, `TimedOut`, `Cancelled`, `Rejected`,
    /// `InvalidSpec`), `Queued`, `AwaitingApproval`, `Running`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The runner pod's name (of the current attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// The current attempt, 1-based (pods are named `<run>-<attempt>`). Unset: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Earlier attempts that ended in a retryable failure, oldest first (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub attempts: Vec<AttemptStatus>,
    /// While a retry waits for its backoff: when the next attempt may start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Time>,
    /// Whether the current attempt's pod was claimed from the pool's warm pods (`true`) or
    /// created for the run (`false`); the `Running` condition's message says why a run that
    /// could not use a warm pod started cold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_start: Option<bool>,
    /// 1-based position in the pool's queue while `Queued`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
    /// Name of the ApprovalGate the run is waiting on, while `AwaitingApproval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_name: Option<String>,
    /// When the runner pod was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// `completionTime - startTime` in whole seconds, e.g. `1m12s`; set when the run ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Runner events seen so far and the latest one, as a rolling summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// What the run produced, once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ResultStatus>,
    /// Token and cost usage reported by the agent CLI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// What governed the run, recorded when it was admitted (its first pod created or
    /// claimed) and never rewritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicySnapshot>,
    /// The verification of the run's change (`spec.verify`), recorded by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<crate::verify::VerificationStatus>,
    /// Where the run's signed evidence bundle was archived, once it is (only with an archive
    /// configured; docs/evidence.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveStatus>,
}

/// Rolling summary of the runner's event stream.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// The pod (attempt) these counts are from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Highest event sequence number processed.
    pub events: u64,
    /// Tool calls seen.
    #[serde(default)]
    pub tool_calls: u32,
    /// One-line description of the latest event (redacted, at most 256 bytes).
    #[serde(default)]
    pub last_event: String,
}

/// `status.result`: what the run produced, with references to the artifacts kept after the
/// pod is gone.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResultStatus {
    /// The runner's result (commit, branch, diff counts, summary, usage).
    #[serde(flatten)]
    pub run: RunResult,
    /// `+insertions/-deletions` for the printer column, e.g. `+12/-3`.
    #[serde(default)]
    pub diffstat: String,
    /// ConfigMap (same namespace, owned by the run) holding the patch: key `patch.gz` in
    /// `binaryData` (gzip of the unified diff). `kubectl paddock diff` reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_ref: Option<String>,
    /// ConfigMap holding the run's event log: key `events.jsonl` (runner event lines,
    /// redacted, at most 512 KiB, oldest lines dropped first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_ref: Option<String>,
    /// ConfigMap holding the agent CLI's saved session (Claude Code, Codex), for a later run's
    /// `spec.resumeFrom`: keys `agent`, `sessionId`, `path` in `data` and `session.jsonl.gz`
    /// in `binaryData` (redacted, gzip, at most 900 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_ref: Option<String>,
    /// The pull request opened from the pushed branch (`spec.output.pullRequest`); written by
    /// the operator's field manager `paddock-forge` after the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<crate::forge::PullRequestStatus>,
}

#[cfg(test)]
mod tests {
    use super::AgentName;

    /// Manifest names are what the runner's `PADDOCK_AGENT` parser accepts.
    #[test]
    fn agent_names_match_their_wire_form() {
        for a in [
            AgentName::ClaudeCode,
            AgentName::Codex,
            AgentName::QwenCode,
            AgentName::OpenCode,
            AgentName::GeminiCli,
            AgentName::Aider,
            AgentName::Hermes,
            AgentName::OpenClaw,
            AgentName::OpenHands,
            AgentName::Shell,
            AgentName::Custom,
        ] {
            assert_eq!(serde_json::to_value(a).unwrap(), serde_json::json!(a.as_str()));
            assert_eq!(
                serde_json::from_value::<AgentName>(serde_json::json!(a.as_str())).unwrap(),
                a
            );
        }
    }
}

/// What governed a run, recorded once, when the run was admitted (its first pod created or
/// claimed), and never rewritten. Later attempts of the run are built from [`Self::pool_spec`],
/// not from the pool as edited since, so a change of the pool changes nothing about a started
/// run (one exception, documented in docs/evidence.md: the pool's shared egress gateway
/// narrows at once when the pool's egress list does).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicySnapshot {
    /// The RunnerPool as it was: name, UID and `metadata.generation`.
    pub runner_pool: PoolIdentity,
    /// SHA-256 of the runner pod's spec resolved for the run (the pool's template with the
    /// run's overrides, as a cold start builds it for attempt 1), as `sha256:<64 hex>` over its
    /// JSON serialisation.
    pub pod_template_hash: String,
    /// The agent container's image.
    pub image: String,
    /// The effective egress allowlist (the run's within the pool's); absent when neither has
    /// one, empty when nothing is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "recorded_list_schema")]
    pub egress: Option<Vec<crate::network::EgressRule>>,
    /// The run's budget (`spec.budget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "recorded_object_schema")]
    pub budget: Option<BudgetSpec>,
    /// The run's approvals (`spec.approvals`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "recorded_object_schema")]
    pub approvals: Option<ApprovalsSpec>,
    /// Which of the pool's overrides the run used: `image`, `resources`, `env`, `modelEnv`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
    /// The pool's spec as it was when the run was admitted.
    #[schemars(schema_with = "recorded_object_schema")]
    pub pool_spec: crate::runnerpool::RunnerPoolSpec,
    /// When this snapshot was recorded.
    pub recorded_at: Time,
    /// The AgentRunSet whose selection governs the run's push (docs/fan-out.md): the run's
    /// controller owner when its first pod was built. Recorded here (operator-only status),
    /// so an owner reference removed or added later changes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_run_set: Option<ObjectIdentity>,
}

/// An object named by name and UID (a re-created object of the same name has another UID).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ObjectIdentity {
    /// Its name.
    pub name: String,
    /// Its `metadata.uid`.
    pub uid: String,
}

/// A RunnerPool named at one point of its life.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PoolIdentity {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.generation`.
    pub generation: i64,
}

/// Where the run's signed evidence bundle was archived.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveStatus {
    /// The object's URL: `s3://BUCKET/PREFIX/NAMESPACE/RUN/UID.bundle.json`.
    pub url: String,
    /// SHA-256 of the object's bytes (the DSSE envelope), `sha256:<64 hex>`.
    pub digest: String,
    /// Key id of the signature (`sha256:<hex>` of the public key); see
    /// [`crate::evidence::PUBLIC_CONFIGMAP`].
    pub key_id: String,
    /// When the upload completed.
    pub archived_at: Time,
}

/// Schema of a value the operator records as it was (in `status.policy`): an object kept
/// as written, not validated again (the spec it came from was; its CEL rules, repeated in
/// every run's status, would exceed the API server's CEL cost budget).
fn recorded_object_schema(_: &mut schemars::generate::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

/// [`recorded_object_schema`] for a list of objects.
fn recorded_list_schema(_: &mut schemars::generate::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}})
}
