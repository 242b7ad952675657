//! Pure builders: the runner pod and the BeforeStart gate of an AgentRun. No I/O; every
//! function here is table-tested.
//!
//! The pod has two trust zones sharing only the `workspace` volume:
//! - init container `clone` (trusted: may mount the git credentials) clones the repo and adds the
//!   worktree on the run's branch;
//! - native sidecar `gateway` (init container with `restartPolicy: Always`; trusted: git
//!   credentials) pushes the branch when the runner asks;
//! - container `agent` (untrusted) runs the agent CLI through `paddock-runner run`: no Kubernetes
//!   credentials (`automountServiceAccountToken: false`), no git credentials.
//!
//! Every container runs under the restricted Pod Security profile.

use k8s_openapi::api::core::v1::{
    Capabilities, Container, DownwardAPIVolumeFile, DownwardAPIVolumeSource, EmptyDirVolumeSource, EnvVar,
    ObjectFieldSelector, Pod, PodSecurityContext, PodSpec, ResourceRequirements, SeccompProfile, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use kube_quantity::ParsedQuantity;

use super::gateway;
pub use crate::controller::egress::PodUplink;
use paddock_crds::runner::{vars, AgentConfig, Identity, Prompt, RunnerConfig, SharedConfig, TrustedConfig};
use paddock_crds::{AgentRun, RunnerPool};
use std::collections::BTreeMap;

/// Default `spec.budget.timeout` (seconds).
pub const DEFAULT_TIMEOUT_SECS: u64 = 3600;
pub use crate::controller::egress::RUNNER_UID;
/// Where the git credentials Secret is mounted in the trusted containers.
pub const GIT_CREDENTIALS_DIR: &str = "/var/run/paddock/git";

/// Why a pod cannot be built from a run and its pool.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BuildError {
    /// `spec.budget.timeout` is not a Go duration.
    #[error("spec.budget.timeout {0:?} is not a duration like 30m or 1h")]
    BadTimeout(String),
    /// The pool does not offer the run's agent.
    #[error("RunnerPool {pool} does not provide agent {agent} (it provides: {offered})")]
    AgentNotInPool {
        /// Pool name.
        pool: String,
        /// Requested agent.
        agent: String,
        /// Agents the pool lists.
        offered: String,
    },
    /// The run pushes to a branch the pool's `spec.output.allowedBranches` does not allow.
    #[error("RunnerPool {pool} does not allow pushing to branch {branch} (allowed: {allowed})")]
    BranchNotAllowed {
        /// Pool name.
        pool: String,
        /// The run's branch.
        branch: String,
        /// The pool's allowed patterns, comma-separated.
        allowed: String,
    },
    /// The run changes the pool's template beyond the pool's `spec.overrides`.
    #[error("RunnerPool {pool} refuses {field}: {why}")]
    OverrideNotAllowed {
        /// Pool name.
        pool: String,
        /// The refused field.
        field: String,
        /// Why.
        why: String,
    },
}

/// Name of the pool a run uses (`spec.runnerPoolRef.name`, default `default`).
pub fn pool_name(run: &AgentRun) -> &str {
    run.spec
        .runner_pool_ref
        .as_ref()
        .map(|r| r.name.as_str())
        .unwrap_or("default")
}

/// Name of the run's pod for `attempt` (1-based): `<run>-<attempt>`.
pub fn pod_name(run: &AgentRun, attempt: u32) -> String {
    format!("{}-{attempt}", run.metadata.name.as_deref().unwrap_or_default())
}

/// Where the agent container sees the pod's annotations (a downward API volume).
pub const DECISIONS_DIR: &str = "/etc/paddock/pod";
/// The annotations file in [`DECISIONS_DIR`].
pub const DECISIONS_FILE: &str = vars::DECISIONS_FILE_PATH;

/// Branch the run commits to: `spec.output.branch`, default `paddock/<run>`.
pub fn branch(run: &AgentRun) -> String {
    run.spec
        .output
        .as_ref()
        .and_then(|o| o.branch.clone())
        .unwrap_or_else(|| format!("paddock/{}", run.metadata.name.as_deref().unwrap_or_default()))
}

/// Whole seconds of a Go duration string (`10s`, `1m30s`), at least 1; `None` when it does not
/// parse or is negative. Uses kube's Go-duration parser.
pub fn parse_duration_secs(s: &str) -> Option<u64> {
    let d: kube::core::Duration = s.parse().ok()?;
    (!d.is_negative()).then(|| std::time::Duration::from(d).as_secs().max(1))
}

/// The run's time limit in seconds (`spec.budget.timeout`, default [`DEFAULT_TIMEOUT_SECS`]).
///
/// # Errors
/// [`BuildError::BadTimeout`] when the duration does not parse (the CRD's CEL rule normally
/// refuses it first).
pub fn timeout_secs(run: &AgentRun) -> Result<u64, BuildError> {
    match run.spec.budget.as_ref().and_then(|b| b.timeout.as_deref()) {
        None => Ok(DEFAULT_TIMEOUT_SECS),
        Some(s) => {
            let d: kube::core::Duration = s.parse().map_err(|_| BuildError::BadTimeout(s.to_string()))?;
            if d.is_negative() {
                return Err(BuildError::BadTimeout(s.to_string()));
            }
            Ok(std::time::Duration::from(d).as_secs().max(1))
        }
    }
}

/// Owner reference making `run` the controller of an object (garbage-collected with it).
pub fn owner_ref(run: &AgentRun) -> OwnerReference {
    // controller_owner_ref is Some for any object read from the API (it has a uid).
    let mut o = run.controller_owner_ref(&()).unwrap_or_default();
    o.block_owner_deletion = Some(true);
    o
}

pub(super) fn labels(run: &AgentRun, pool: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "paddock-runner".into()),
        ("app.kubernetes.io/managed-by".into(), "paddock".into()),
        (
            paddock_crds::LABEL_RUN.into(),
            run.metadata.name.clone().unwrap_or_default(),
        ),
        (paddock_crds::LABEL_POOL.into(), pool.into()),
    ])
}

pub(super) fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

pub(super) fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

pub use crate::controller::egress::quantities;

/// The restricted-profile container security context
/// (<https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted>).
pub(super) fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(RUNNER_UID),
        run_as_group: Some(RUNNER_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

/// Names of the env vars whose value comes from a Secret: the runner redacts their values
/// from everything it reports.
pub fn secret_env_names(vars: &[EnvVar]) -> Vec<String> {
    vars.iter()
        .filter(|e| e.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).is_some())
        .map(|e| e.name.clone())
        .collect()
}

/// Merges env lists: later lists win on name clashes; order of first appearance is kept.
pub(super) fn merge_env(lists: &[&[EnvVar]]) -> Vec<EnvVar> {
    let mut out: Vec<EnvVar> = Vec::new();
    for list in lists {
        for e in *list {
            match out.iter_mut().find(|o| o.name == e.name) {
                Some(slot) => *slot = e.clone(),
                None => out.push(e.clone()),
            }
        }
    }
    out
}

/// Checks what `run` changes in `pool`'s template against the pool's `spec.overrides`
/// (default: env allowed, image and resources not).
///
/// # Errors
/// [`BuildError::OverrideNotAllowed`] naming the first refused field.
pub fn check_overrides(run: &AgentRun, pool: &RunnerPool) -> Result<(), BuildError> {
    let policy = pool.spec.overrides.clone().unwrap_or_default();
    let pool_name = pool.metadata.name.clone().unwrap_or_default();
    let refuse = |field: &str, why: String| BuildError::OverrideNotAllowed {
        pool: pool_name.clone(),
        field: field.into(),
        why,
    };
    if !run.spec.agent.env.is_empty() && !policy.env {
        return Err(refuse("spec.agent.env", "the pool does not allow env overrides".into()));
    }
    // The pool's model key goes only to the upstream the pool names: a run may point a
    // provider elsewhere only with its own key for it (replacing every key the pool sets), or
    // where the pool's spec.overrides.modelEnv allows it by name.
    for p in gateway::PROVIDERS {
        let pool_sets = |name: &str| pool.spec.template.env.iter().any(|e| e.name == name);
        let run_sets = |name: &str| run.spec.agent.env.iter().any(|e| e.name == name);
        let pool_key_kept = p.key_vars.iter().any(|k| pool_sets(k) && !run_sets(k));
        if pool_key_kept && run_sets(p.base_var) && !policy.model_env.iter().any(|n| n == p.base_var) {
            return Err(refuse(
                &format!("spec.agent.env[{}]", p.base_var),
                format!(
                    "the pool's {} key would go to the run's {}; a run may change it only with its \
                     own key, or where the pool's spec.overrides.modelEnv lists it",
                    p.route, p.base_var
                ),
            ));
        }
    }
    let Some(over) = &run.spec.runner else {
        return Ok(());
    };
    if over.image.is_some() && !policy.image {
        return Err(refuse(
            "spec.runner.image",
            "the pool does not allow image overrides".into(),
        ));
    }
    if let Some(res) = &over.resources {
        let Some(max) = &policy.max_resources else {
            return Err(refuse(
                "spec.runner.resources",
                "the pool does not allow resource overrides (no overrides.maxResources)".into(),
            ));
        };
        for (kind, list) in [("requests", &res.requests), ("limits", &res.limits)] {
            for (name, q) in list.iter().flatten() {
                let field = format!("spec.runner.resources.{kind}.{name}");
                let Some(limit) = max.get(name) else {
                    return Err(refuse(
                        &field,
                        format!("the pool's overrides.maxResources does not list {name}"),
                    ));
                };
                match (ParsedQuantity::try_from(q), ParsedQuantity::try_from(limit)) {
                    (Ok(asked), Ok(allowed)) if asked <= allowed => {}
                    (Ok(_), Ok(_)) => {
                        return Err(refuse(
                            &field,
                            format!("{} is more than the pool's maximum {}", q.0, limit.0),
                        ))
                    }
                    _ => return Err(refuse(&field, format!("{} is not a quantity", q.0))),
                }
            }
        }
        if res.claims.as_ref().is_some_and(|c| !c.is_empty()) {
            return Err(refuse(
                "spec.runner.resources.claims",
                "resource claims cannot be overridden".into(),
            ));
        }
    }
    Ok(())
}

/// The run's settings for attempt `attempt` as its runner pod gets them (cold or claimed):
/// `prompt` as given, `redact_env` the names of the agent's secret variables, `egress` the
/// run's effective allowlist ([`gateway::egress`]).
pub fn runner_config(
    run: &AgentRun,
    pool: &RunnerPool,
    attempt: u32,
    prompt: Prompt,
    redact_env: Vec<String>,
    egress: Option<&[paddock_crds::EgressRule]>,
) -> RunnerConfig {
    let approvals = run.spec.approvals.as_ref();
    let output = run.spec.output.as_ref();
    RunnerConfig {
        shared: SharedConfig {
            identity: Identity {
                run: run.metadata.name.clone().unwrap_or_default(),
                namespace: run.metadata.namespace.clone().unwrap_or_default(),
                run_uid: run.metadata.uid.clone().unwrap_or_default(),
                attempt,
            },
            branch: branch(run),
            push: output.is_some_and(|o| o.push),
            // The gateway holds the push until the operator's signed BeforePush verdict, and
            // while a required verification has not passed (issue 19); the agent waits for it.
            push_approval: approvals.is_some_and(|a| a.before_push.is_some())
                || paddock_crds::agentrunset::holds_push(run),
            // The gateway pushes nothing without a signed plan approval (issue 22).
            plan_review: approvals.is_some_and(|a| a.plan.is_some()),
        },
        trusted: TrustedConfig {
            repo_url: run.spec.repo.url.clone(),
            revision: run.spec.repo.revision.clone().unwrap_or_default(),
            plain_http_hosts: pool
                .spec
                .output
                .as_ref()
                .map(|o| o.plain_http_hosts.clone())
                .unwrap_or_default(),
        },
        gateway: gateway::gateway_config(run, pool, egress),
        agent: AgentConfig {
            agent: run.spec.agent.name,
            prompt: Some(prompt),
            redact_env,
            model: run.spec.agent.model.clone(),
            command: run.spec.agent.command.clone(),
            output: run.spec.agent.output,
            args: run.spec.agent.args.clone(),
            workdir: run.spec.repo.workdir.clone(),
            max_turns: run.spec.budget.as_ref().and_then(|b| b.max_turns),
            commit_message: output.and_then(|o| o.commit_message.clone()),
            // In-run approvals: verdicts arrive as pod annotations in a downward API file.
            tool_rules: approvals.and_then(|a| a.tool_use.as_ref()).map(|t| t.rules.clone()),
            questions: approvals.is_some_and(|a| a.questions.is_some()),
        },
    }
}

/// A run's variables for its pod's containers, composed by [`run_env`] once for a cold pod
/// ([`build_pod`]) and a warm pod's claim ([`claim_value`]) alike.
pub(super) struct RunEnv {
    /// The trusted containers' ([`RunnerConfig::trusted_env`]).
    pub(super) trusted: Vec<EnvVar>,
    /// The gateway's: model keys and upstreams routed from the user's env
    /// ([`gateway::route_models`]), then [`RunnerConfig::gateway_env`].
    pub(super) gateway: Vec<EnvVar>,
    /// The agent's share of the user's env (the pool's, then the run's; model keys replaced by
    /// placeholders, base URLs by the gateway's routes).
    pub(super) agent_user: Vec<EnvVar>,
    /// The agent's variables from Paddock: proxies and the gateway URL where the gateway
    /// serves the agent, then [`RunnerConfig::agent_env`]. They win over `agent_user`.
    pub(super) agent_own: Vec<EnvVar>,
}

impl RunEnv {
    /// The agent container's variables: the user's first, so that Paddock's own cannot be
    /// overridden by a pool or a run.
    pub(super) fn agent(&self) -> Vec<EnvVar> {
        merge_env(&[&self.agent_user, &self.agent_own])
    }
}

/// Composes `run`'s variables for attempt `attempt` (see [`RunEnv`]).
///
/// # Errors
/// [`BuildError::OverrideNotAllowed`] when the run's egress list is not within the pool's.
pub(super) fn run_env(run: &AgentRun, pool: &RunnerPool, attempt: u32, prompt: Prompt) -> Result<RunEnv, BuildError> {
    let user_env = merge_env(&[&pool.spec.template.env, &run.spec.agent.env]);
    let egress = run_egress(run, pool)?;
    let (agent_user, mut gateway_env) = gateway::route_models(&user_env);
    // Secrets the agent container still holds (not the model keys: it has placeholders).
    let config = runner_config(
        run,
        pool,
        attempt,
        prompt,
        secret_env_names(&agent_user),
        egress.as_deref(),
    );
    let mut agent_own = if egress.is_some() { gateway::proxy_env() } else { vec![] };
    if egress.is_some() || gateway_env.iter().any(|e| e.name.starts_with(vars::UPSTREAM_PREFIX)) {
        agent_own.push(gateway::gateway_url_env());
    }
    agent_own.extend(config.agent_env());
    gateway_env.extend(config.gateway_env());
    Ok(RunEnv {
        trusted: config.trusted_env(),
        gateway: gateway_env,
        agent_user,
        agent_own,
    })
}

/// The run's effective egress allowlist ([`gateway::egress`]) as a build error.
fn run_egress(run: &AgentRun, pool: &RunnerPool) -> Result<Option<Vec<paddock_crds::EgressRule>>, BuildError> {
    gateway::egress(run, pool).map_err(|why| BuildError::OverrideNotAllowed {
        pool: pool.metadata.name.clone().unwrap_or_default(),
        field: "spec.network.egress".into(),
        why,
    })
}

/// `sizeLimit` of the `workspace` (and `trusted-tmp`) emptyDir when the agent container has no
/// `ephemeral-storage` limit: 20 GiB.
pub const DEFAULT_WORKSPACE_LIMIT: &str = "20Gi";
/// `sizeLimit` of the `home` and `tmp` emptyDirs: 4 GiB.
pub const SMALL_VOLUME_LIMIT: &str = "4Gi";

/// The workspace's `sizeLimit`: the agent container's `ephemeral-storage` limit (pool template or
/// run override) when it has one, else [`DEFAULT_WORKSPACE_LIMIT`].
pub fn workspace_size_limit(agent: Option<&ResourceRequirements>) -> Quantity {
    agent
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("ephemeral-storage"))
        .cloned()
        .unwrap_or_else(|| Quantity(DEFAULT_WORKSPACE_LIMIT.into()))
}

/// What differs between a cold pod built for one run and a pool's warm pod.
pub(super) struct PodShape {
    /// Extra variables of the trusted containers (a cold pod's run settings).
    pub(super) trusted_env: Vec<EnvVar>,
    /// Extra variables of the gateway only (model keys, upstreams, budgets, egress, prices).
    pub(super) gateway_env: Vec<EnvVar>,
    /// The agent container's variables (after the pool's).
    pub(super) agent_env: Vec<EnvVar>,
    /// Git credentials Secret mounted into the trusted containers.
    pub(super) creds: Option<String>,
    pub(super) image: String,
    pub(super) resources: Option<ResourceRequirements>,
    /// `true`: no clone container (the gateway clones once claimed), `PADDOCK_WARM=true`.
    pub(super) warm: bool,
    /// The operator's verdict public key (base64), with which the pod checks verdicts and
    /// claims (`paddock_crds::verdict`).
    pub(super) verdict_key: String,
}

/// The pod spec shared by cold and warm runner pods.
pub(super) fn runner_pod_spec(pool: &RunnerPool, shape: PodShape) -> PodSpec {
    let tpl = &pool.spec.template;
    let pull = Some(tpl.image_pull_policy.clone().unwrap_or_else(|| "IfNotPresent".into()));
    // Tracing settings (OTEL_*, literal values) of the pool's template reach the trusted
    // containers too, so the runner's `clone` step is traced like the others. Only the pool's:
    // a run must not point a credential-holding container at an endpoint of its choice.
    let key_env = env(paddock_crds::verdict::PUBLIC_KEY_ENV, shape.verdict_key.clone());
    let mut repo_env = vec![
        env("HOME", "/tmp"),
        env(vars::DECISIONS_FILE, DECISIONS_FILE),
        key_env.clone(),
    ];
    repo_env.extend(shape.trusted_env);
    repo_env.extend(
        tpl.env
            .iter()
            .filter(|e| e.name.starts_with("OTEL_") && e.value_from.is_none())
            .cloned(),
    );
    let mut warm_env = vec![];
    if shape.warm {
        warm_env.push(env(vars::WARM, "true"));
        repo_env.extend(warm_env.iter().cloned());
    }
    // The trusted containers get their own /tmp (the gateway keeps its private copy of the branch
    // there, and HOME points at it) and share no HOME with the agent.
    // The gateway reads signed verdicts (and a warm pod's claim) from the pod's annotations.
    let mut trusted_mounts = vec![
        mount("workspace", "/workspace", false),
        mount("trusted-tmp", "/tmp", false),
        mount("podinfo", DECISIONS_DIR, true),
    ];
    if shape.creds.is_some() {
        trusted_mounts.push(mount("git-credentials", GIT_CREDENTIALS_DIR, true));
    }
    let small = Some(ResourceRequirements {
        requests: Some(quantities(&[("cpu", "50m"), ("memory", "64Mi")])),
        limits: Some(quantities(&[("cpu", "1"), ("memory", "512Mi")])),
        ..Default::default()
    });

    let clone = Container {
        name: "clone".into(),
        image: Some(shape.image.clone()),
        image_pull_policy: pull.clone(),
        args: Some(vec!["clone".into()]),
        env: Some(repo_env.clone()),
        volume_mounts: Some(trusted_mounts.clone()),
        security_context: Some(restricted()),
        resources: small.clone(),
        termination_message_policy: Some("File".into()),
        ..Default::default()
    };
    let mut gateway_env = repo_env;
    gateway_env.extend(shape.gateway_env);
    let gateway = Container {
        name: "gateway".into(),
        image: Some(shape.image.clone()),
        image_pull_policy: pull.clone(),
        args: Some(vec!["gateway".into()]),
        env: Some(gateway_env),
        volume_mounts: Some(trusted_mounts),
        security_context: Some(restricted()),
        resources: small,
        restart_policy: Some("Always".into()),
        ..Default::default()
    };
    let mut agent_env = merge_env(&[&shape.agent_env, &[env("HOME", "/home/paddock")]]);
    agent_env.push(env(vars::DECISIONS_FILE, DECISIONS_FILE));
    agent_env.push(key_env);
    agent_env.extend(warm_env);
    let agent = Container {
        name: "agent".into(),
        image: Some(shape.image),
        image_pull_policy: pull,
        args: Some(vec!["run".into()]),
        env: Some(merge_env(&[&agent_env])),
        volume_mounts: Some(vec![
            mount("workspace", "/workspace", false),
            mount("tmp", "/tmp", false),
            mount("home", "/home/paddock", false),
            mount("podinfo", DECISIONS_DIR, true),
        ]),
        security_context: Some(restricted()),
        resources: Some(shape.resources.unwrap_or(ResourceRequirements {
            requests: Some(quantities(&[("cpu", "100m"), ("memory", "256Mi")])),
            limits: Some(quantities(&[("cpu", "2"), ("memory", "4Gi")])),
            ..Default::default()
        })),
        termination_message_policy: Some("File".into()),
        ..Default::default()
    };

    // Every emptyDir has a size limit (the kubelet evicts a pod whose volume exceeds it), so one
    // run cannot fill the node's disk; the root filesystems are read-only.
    let workspace_limit = workspace_size_limit(agent.resources.as_ref());
    let empty = |name: &str, limit: &Quantity| Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(limit.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let small_limit = Quantity(SMALL_VOLUME_LIMIT.into());
    let mut volumes = vec![
        empty("workspace", &workspace_limit),
        empty("home", &small_limit),
        empty("tmp", &small_limit),
        // The gateway's snapshot of the branch: at most the workspace's size.
        empty("trusted-tmp", &workspace_limit),
        // The pod's own annotations, where ApprovalGate verdicts (and a warm pod's claim)
        // appear (updated by the kubelet).
        Volume {
            name: "podinfo".into(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![
                    DownwardAPIVolumeFile {
                        path: "annotations".into(),
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.annotations".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    // The pod's UID: a warm pod's claim is signed for it.
                    DownwardAPIVolumeFile {
                        path: "uid".into(),
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.uid".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    if let Some(secret) = shape.creds {
        volumes.push(Volume {
            name: "git-credentials".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret),
                default_mode: Some(0o440),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let init_containers = if shape.warm {
        vec![gateway]
    } else {
        vec![clone, gateway]
    };
    PodSpec {
        restart_policy: Some("Never".into()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(30),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUNNER_UID),
            run_as_group: Some(RUNNER_UID),
            fs_group: Some(RUNNER_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        init_containers: Some(init_containers),
        containers: vec![agent],
        volumes: Some(volumes),
        runtime_class_name: tpl.runtime_class_name.clone(),
        node_selector: (!tpl.node_selector.is_empty()).then(|| tpl.node_selector.clone()),
        tolerations: (!tpl.tolerations.is_empty()).then(|| tpl.tolerations.clone()),
        ..Default::default()
    }
}

/// Checks that a pushing run's branch matches the pool's `spec.output.allowedBranches`
/// (default [`paddock_crds::DEFAULT_ALLOWED_BRANCHES`]; shell-style globs, `*` crossing `/`).
///
/// # Errors
/// [`BuildError::BranchNotAllowed`].
pub fn check_branch(run: &AgentRun, pool: &RunnerPool) -> Result<(), BuildError> {
    if !run.spec.output.as_ref().is_some_and(|o| o.push) {
        return Ok(());
    }
    let configured = pool
        .spec
        .output
        .as_ref()
        .map(|o| o.allowed_branches.clone())
        .unwrap_or_default();
    let allowed: Vec<String> = if configured.is_empty() {
        paddock_crds::DEFAULT_ALLOWED_BRANCHES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        configured
    };
    let branch = branch(run);
    let matches = |pat: &str| glob::Pattern::new(pat).is_ok_and(|p| p.matches(&branch));
    if allowed.iter().any(|p| matches(p)) {
        return Ok(());
    }
    Err(BuildError::BranchNotAllowed {
        pool: pool.metadata.name.clone().unwrap_or_default(),
        branch,
        allowed: allowed.join(", "),
    })
}

fn check_agent(run: &AgentRun, pool: &RunnerPool) -> Result<(), BuildError> {
    if !pool.spec.agents.is_empty() && !pool.spec.agents.contains(&run.spec.agent.name) {
        return Err(BuildError::AgentNotInPool {
            pool: pool.metadata.name.clone().unwrap_or_default(),
            agent: run.spec.agent.name.as_str().into(),
            offered: pool
                .spec
                .agents
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(())
}

/// Builds the runner pod of `run` (attempt `attempt`) from its pool (a cold start);
/// `verdict_key` is the operator's verdict public key (base64, `Signer::public_key_b64`). A run
/// with `spec.prompt` gets an empty `PADDOCK_PROMPT`, which [`super::prompt::set_prompt`] fills
/// (with `spec.promptFrom`: the ConfigMap key, which the kubelet reads).
///
/// # Errors
/// [`BuildError`] when the run asks for what the pool cannot give.
pub fn build_pod(run: &AgentRun, pool: &RunnerPool, attempt: u32, verdict_key: &str) -> Result<Pod, BuildError> {
    let namespace = run.metadata.namespace.clone().unwrap_or_default();
    let pool_name = pool.metadata.name.clone().unwrap_or_default();
    let tpl = &pool.spec.template;
    check_agent(run, pool)?;
    check_overrides(run, pool)?;
    check_branch(run, pool)?;
    let timeout = timeout_secs(run)?;
    // `spec.prompt`'s text is not the cache's to give: it is put in when the pod starts, read
    // from the API server (`StartPod::new`, `prompt::set_prompt`).
    let prompt = match &run.spec.prompt_from {
        Some(from) => Prompt::ConfigMapKey {
            name: from.name.clone(),
            key: from.key.clone(),
        },
        None => Prompt::Text(String::new()),
    };
    let run_env = run_env(run, pool, attempt, prompt)?;
    let agent_env = run_env.agent();
    let mut gateway_env = run_env.gateway;
    // The gateway reports the patch: it redacts the agent's secret values too, which it gets
    // under names of its own (no clash with its configuration).
    gateway_env.extend(
        run_env
            .agent_user
            .iter()
            .filter(|e| e.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).is_some())
            .enumerate()
            .map(|(i, e)| EnvVar {
                name: vars::redact_value(i),
                ..e.clone()
            }),
    );
    gateway_env.push(env(vars::REDACT_ENV, secret_env_names(&gateway_env).join(",")));
    let over = run.spec.runner.clone().unwrap_or_default();
    let mut spec = runner_pod_spec(
        pool,
        PodShape {
            trusted_env: run_env.trusted,
            gateway_env,
            agent_env,
            creds: run.spec.repo.credentials_secret_ref.as_ref().map(|r| r.name.clone()),
            image: over.image.unwrap_or_else(|| tpl.image.clone()),
            resources: over.resources.or_else(|| tpl.resources.clone()),
            warm: false,
            verdict_key: verdict_key.into(),
        },
    );
    spec.active_deadline_seconds = Some(timeout as i64);
    let mut pod_labels = tpl.labels.clone();
    pod_labels.extend(labels(run, &pool_name));
    pod_labels.insert(paddock_crds::LABEL_ATTEMPT.into(), attempt.to_string());
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(run, attempt)),
            namespace: Some(namespace),
            labels: Some(pod_labels),
            annotations: (!tpl.annotations.is_empty()).then(|| tpl.annotations.clone()),
            owner_references: Some(vec![owner_ref(run)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    })
}

/// Sends `pod` out through its pool's egress gateway, the only destination its NetworkPolicy
/// allows ([`paddock_crds::egress`]): the trusted containers (`clone`, `gateway`) get the
/// gateway's address and the pool's token; the agent container, which gets no token, gets
/// `HTTP(S)_PROXY` on the pod's own gateway (loopback), which applies the run's allowlist and
/// then uses the egress gateway itself. An agent's own proxy settings are kept.
pub fn apply_uplink(pod: &mut Pod, uplink: &PodUplink) {
    let Some(spec) = pod.spec.as_mut() else { return };
    let trusted = [
        env(paddock_crds::egress::PROXY_ENV, uplink.proxy.clone()),
        env(paddock_crds::egress::TOKEN_ENV, uplink.token.clone()),
    ];
    for c in spec.init_containers.iter_mut().flatten() {
        if c.name == "clone" || c.name == "gateway" {
            c.env.get_or_insert_with(Vec::new).extend(trusted.iter().cloned());
        }
    }
    for c in spec.containers.iter_mut().filter(|c| c.name == "agent") {
        let vars = c.env.get_or_insert_with(Vec::new);
        let extra: Vec<EnvVar> = gateway::proxy_env()
            .into_iter()
            .chain([gateway::gateway_url_env()])
            .filter(|e| !vars.iter().any(|v| v.name == e.name))
            .collect();
        vars.splice(0..0, extra);
    }
}

#[cfg(test)]
mod tests;
