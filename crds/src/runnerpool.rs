//! `RunnerPool`: where and how runs execute — the runner image, the pod settings merged under
//! Paddock's hardened defaults, and how many runs may go at once.

use crate::agent::AgentName;
use crate::condition::conditions_schema;
use crate::network::NetworkSpec;
use crate::reference::LocalObjectRef;
use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Desired state of a pool.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "paddock.dev",
    version = "v1alpha1",
    kind = "RunnerPool",
    namespaced,
    status = "RunnerPoolStatus",
    shortname = "pool",
    category = "paddock",
    doc = "Where and how AgentRuns execute.",
    scale(
        spec_replicas_path = ".spec.warm.replicas",
        status_replicas_path = ".status.warmTotal",
        label_selector_path = ".status.warmSelector"
    ),
    printcolumn(name = "Image", type_ = "string", json_path = ".spec.template.image", priority = 1),
    printcolumn(name = "Max", type_ = "integer", json_path = ".spec.maxConcurrentRuns"),
    printcolumn(name = "Running", type_ = "integer", json_path = ".status.running"),
    printcolumn(name = "Queued", type_ = "integer", json_path = ".status.queued"),
    printcolumn(name = "Warm", type_ = "integer", json_path = ".status.warmReady"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct RunnerPoolSpec {
    /// Pod settings for the pool's runner pods, merged under the hardened defaults.
    pub template: RunnerTemplate,
    /// Agent CLIs the pool's image provides (`claude-code`, `codex`, `qwen-code`, `opencode`,
    /// `shell`). Empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentName>,
    /// Most runs of this pool with a pod at once; further runs wait `Queued` in creation order.
    /// Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_concurrent_runs: Option<u32>,
    /// Order in which queued runs start. Default FIFO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueSpec>,
    /// Pre-started idle runner pods that new runs claim instead of waiting for a pod to be
    /// scheduled and its containers started. `spec.warm.replicas` is the pool's `/scale`
    /// subresource (`kubectl scale runnerpool/<name> --replicas=N`, HPA, KEDA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm: Option<WarmSpec>,
    /// What a run may change in this pool's template (`AgentRun.spec.runner`,
    /// `AgentRun.spec.agent.env`). A run that asks for more fails with reason
    /// `OverrideNotAllowed`. Default: env allowed, image and resources not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<OverridesSpec>,
    /// What the agent may reach on the network, by host name, enforced by the pod's gateway (an
    /// HTTP(S) proxy the agent's `HTTP_PROXY`/`HTTPS_PROXY` point at). Unset: open. The model
    /// APIs and the git remote are reached by the trusted containers and need no entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSpec>,
    /// Gateway settings: model prices for metering and `budget.maxCostUSD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewaySpec>,
    /// Where the pool's runs may push. Unset: only to branches matching `paddock/*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<PoolOutputSpec>,
    /// Default `spec.ttlSecondsAfterFinished` of the pool's runs (seconds after a run ends
    /// when the operator deletes it, as a Job's field); a run's own value wins. Unset: runs are
    /// kept until deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i32>,
}

/// Where a pool's runs may push (the pool's git credentials push only there).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PoolOutputSpec {
    /// Branches a run with `output.push: true` may push, as shell-style globs (`*` matches any
    /// run of characters, `/` included; e.g. `paddock/*`, `agents/team-a/*`). At most 32.
    /// Empty or unset: `paddock/*`. A run whose branch matches none fails with reason
    /// `BranchNotAllowed` before any pod starts. Pushes are never forced (a remote branch that
    /// moved is not overwritten).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub allowed_branches: Vec<String>,
    /// Hosts to which the runs' git credentials (clone, push) and the operator's forge token
    /// (pull requests, issue comments) may go over plain `http://`: `host` (any port) or
    /// `host:port`, e.g. an in-cluster forge without TLS. Empty (default): credentials go only
    /// over `https://` or `ssh://`. At most 16.
    #[serde(default, rename = "plainHTTPHosts", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 261)))]
    #[x_kube(validation = Rule::new("self.all(h, h.matches('^[A-Za-z0-9.-]+(:[0-9]+)?$'))").message("plainHTTPHosts entries are host or host:port"))]
    pub plain_http_hosts: Vec<String>,
}

/// The branches a pool's runs may push when `spec.output.allowedBranches` is unset.
pub const DEFAULT_ALLOWED_BRANCHES: &[&str] = &["paddock/*"];

/// Gateway settings of a pool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Model prices in USD per million tokens, keyed by model-name prefix (the longest matching
    /// prefix wins), added to and overriding the built-in table (docs/gateway.md).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: BTreeMap<String, ModelPrice>,
}

/// Price of a model, USD per million tokens.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ModelPrice {
    /// Input tokens (not cached).
    #[schemars(range(min = 0.0))]
    pub input: f64,
    /// Output tokens.
    #[schemars(range(min = 0.0))]
    pub output: f64,
    /// Cache reads. Default 0.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub cache_read: f64,
    /// Cache writes. Default 0.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub cache_write: f64,
}

/// Queue order of a pool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct QueueSpec {
    /// `FIFO` (creation time, then name) or `Priority` (`AgentRun.spec.priority`, highest first;
    /// ties by creation time, then name). Default `FIFO`.
    #[serde(default)]
    pub policy: QueuePolicy,
}

/// Queue order.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum QueuePolicy {
    /// First come, first served: by creation time, then name.
    #[default]
    #[serde(rename = "FIFO")]
    Fifo,
    /// By `AgentRun.spec.priority` (highest first), then creation time, then name.
    Priority,
}

/// Warm pool settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WarmSpec {
    /// Idle runner pods to keep ready (0..=100). Claimed pods are replaced.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: u32,
    /// Git credentials Secret (same namespace) mounted into the warm pods' trusted containers.
    /// Only runs whose `repo.credentialsSecretRef` names this same Secret (or, when unset, runs
    /// without one) can claim a warm pod; others start cold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<LocalObjectRef>,
}

/// What runs may override in a pool's template.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OverridesSpec {
    /// May a run set `spec.agent.env` (added to the template's env)? Default true.
    #[serde(default = "yes")]
    pub env: bool,
    /// May a run set `spec.runner.image`? Default false.
    #[serde(default)]
    pub image: bool,
    /// Largest resources a run may ask for in `spec.runner.resources` (each request and limit
    /// must be at most the quantity given here for its resource; resources not listed cannot
    /// be set). Unset: a run cannot set resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_resources: Option<BTreeMap<String, Quantity>>,
    /// Model endpoint variables (a provider's base URL, e.g. `ANTHROPIC_BASE_URL`,
    /// `OPENAI_BASE_URL`) a run may set in `spec.agent.env` although this pool configures that
    /// provider (its key or base URL). Default none: the pool's model key goes only to the
    /// upstream the pool names, and a run that sets one fails with reason `OverrideNotAllowed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub model_env: Vec<String>,
}

fn yes() -> bool {
    true
}

impl Default for OverridesSpec {
    fn default() -> Self {
        Self {
            env: true,
            image: false,
            max_resources: None,
            model_env: Vec::new(),
        }
    }
}

/// The parts of a runner pod a pool may set. Security settings are not among them: every
/// runner pod runs with the restricted Pod Security profile.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunnerTemplate {
    /// Runner image (contains `paddock-runner` and the agent CLIs).
    #[schemars(length(min = 1, max = 1024))]
    pub image: String,
    /// `Always`, `IfNotPresent` or `Never`. Default `IfNotPresent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self in ['Always', 'IfNotPresent', 'Never']").message("imagePullPolicy must be Always, IfNotPresent or Never"))]
    pub image_pull_policy: Option<String>,
    /// Resources of the agent container. Default: requests 100m CPU / 256Mi, limits 2 CPU / 4Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// RuntimeClass for stronger isolation (gVisor, Kata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_class_name: Option<String>,
    /// Node selector for runner pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations for runner pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Extra environment for the agent container (e.g. model base URLs; credentials by
    /// `secretKeyRef` only). A run's `spec.agent.env` wins on name clashes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::condition::env_schema")]
    pub env: Vec<EnvVar>,
    /// Extra labels for runner pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations for runner pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Observed state of a pool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunnerPoolStatus {
    /// Runs of this pool with a pod that has not finished.
    #[serde(default)]
    pub running: u32,
    /// Runs of this pool waiting for capacity.
    #[serde(default)]
    pub queued: u32,
    /// Warm pods that are running and idle, ready to be claimed.
    #[serde(default)]
    pub warm_ready: u32,
    /// Warm pods that exist and are not claimed (ready or still starting): the `/scale`
    /// subresource's status replicas.
    #[serde(default)]
    pub warm_total: u32,
    /// Label selector of the pool's idle warm pods (for the `/scale` subresource, HPA, KEDA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_selector: Option<String>,
    /// Conditions: `Ready` (True when the pool accepts runs and, with warm replicas, all of
    /// them are ready; reason `Ready`, `WarmPodsStarting` or `NoImage`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
