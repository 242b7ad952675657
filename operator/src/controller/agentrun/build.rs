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
use paddock_crds::runner::{vars, AgentConfig, Claim, Identity, Prompt, RunnerConfig, SharedConfig, TrustedConfig};
use paddock_crds::{AgentRun, ApprovalGate, ApprovalGateSpec, GatePolicy, GateRequest, GateStage, RunnerPool};
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

fn labels(run: &AgentRun, pool: &str) -> BTreeMap<String, String> {
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

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
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
fn restricted() -> SecurityContext {
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
fn merge_env(lists: &[&[EnvVar]]) -> Vec<EnvVar> {
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
        },
    }
}

/// A run's variables for its pod's containers, composed by [`run_env`] once for a cold pod
/// ([`build_pod`]) and a warm pod's claim ([`claim_value`]) alike.
struct RunEnv {
    /// The trusted containers' ([`RunnerConfig::trusted_env`]).
    trusted: Vec<EnvVar>,
    /// The gateway's: model keys and upstreams routed from the user's env
    /// ([`gateway::route_models`]), then [`RunnerConfig::gateway_env`].
    gateway: Vec<EnvVar>,
    /// The agent's share of the user's env (the pool's, then the run's; model keys replaced by
    /// placeholders, base URLs by the gateway's routes).
    agent_user: Vec<EnvVar>,
    /// The agent's variables from Paddock: proxies and the gateway URL where the gateway
    /// serves the agent, then [`RunnerConfig::agent_env`]. They win over `agent_user`.
    agent_own: Vec<EnvVar>,
}

impl RunEnv {
    /// The agent container's variables: the user's first, so that Paddock's own cannot be
    /// overridden by a pool or a run.
    fn agent(&self) -> Vec<EnvVar> {
        merge_env(&[&self.agent_user, &self.agent_own])
    }
}

/// Composes `run`'s variables for attempt `attempt` (see [`RunEnv`]).
///
/// # Errors
/// [`BuildError::OverrideNotAllowed`] when the run's egress list is not within the pool's.
fn run_env(run: &AgentRun, pool: &RunnerPool, attempt: u32, prompt: Prompt) -> Result<RunEnv, BuildError> {
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
struct PodShape {
    /// Extra variables of the trusted containers (a cold pod's run settings).
    trusted_env: Vec<EnvVar>,
    /// Extra variables of the gateway only (model keys, upstreams, budgets, egress, prices).
    gateway_env: Vec<EnvVar>,
    /// The agent container's variables (after the pool's).
    agent_env: Vec<EnvVar>,
    /// Git credentials Secret mounted into the trusted containers.
    creds: Option<String>,
    image: String,
    resources: Option<ResourceRequirements>,
    /// `true`: no clone container (the gateway clones once claimed), `PADDOCK_WARM=true`.
    warm: bool,
    /// The operator's verdict public key (base64), with which the pod checks verdicts and
    /// claims (`paddock_crds::verdict`).
    verdict_key: String,
}

/// The pod spec shared by cold and warm runner pods.
fn runner_pod_spec(pool: &RunnerPool, shape: PodShape) -> PodSpec {
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
/// `verdict_key` is the operator's verdict public key (base64, `Signer::public_key_b64`).
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
    let prompt = match (&run.spec.prompt, &run.spec.prompt_from) {
        (_, Some(from)) => Prompt::ConfigMapKey {
            name: from.name.clone(),
            key: from.key.clone(),
        },
        (Some(p), None) => Prompt::Text(p.clone()),
        (None, None) => Prompt::Text(String::new()),
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

/// Annotation on warm pods: hash of the pool settings they were built from; pods with another
/// hash are replaced when idle.
pub const ANNOTATION_TEMPLATE_HASH: &str = "paddock.dev/template-hash";

/// Labels of a pool's idle warm pods (also the pool's `status.warmSelector`).
pub fn warm_selector(pool: &str) -> String {
    format!("{}={pool},{}=idle", paddock_crds::LABEL_POOL, paddock_crds::LABEL_WARM)
}

/// Hash (hex, 16 digits) of what a warm pod is built from: the pool's template, warm
/// credentials, the operator's verdict key (a pod with another key could verify no claim) and
/// the pool's egress gateway address and token.
/// FNV-1a over the canonical JSON, stable across operator versions.
pub fn warm_template_hash(pool: &RunnerPool, verdict_key: &str, uplink: Option<&PodUplink>) -> String {
    let input = serde_json::json!({
        "template": pool.spec.template,
        "credentials": pool.spec.warm.as_ref().and_then(|w| w.credentials_secret_ref.as_ref()).map(|r| &r.name),
        "verdictKey": verdict_key,
        "uplink": uplink,
    })
    .to_string();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in input.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Builds an idle warm pod of `pool`: its containers start and wait for a claim
/// (`generateName: <pool>-warm-`, owned by the pool, labels [`warm_selector`]); `verdict_key`
/// as for [`build_pod`]; `uplink` as for [`apply_uplink`].
pub fn build_warm_pod(pool: &RunnerPool, verdict_key: &str, uplink: Option<&PodUplink>) -> Pod {
    let tpl = &pool.spec.template;
    let warm_routes = gateway::route_models(&tpl.env);
    let routed = !warm_routes.1.is_empty();
    let pool_name = pool.metadata.name.clone().unwrap_or_default();
    let spec = runner_pod_spec(
        pool,
        PodShape {
            trusted_env: vec![],
            gateway_env: {
                let mut g = warm_routes.1;
                g.push(env(vars::REDACT_ENV, secret_env_names(&g).join(",")));
                g
            },
            agent_env: {
                let mut a = warm_routes.0;
                if routed {
                    a.push(gateway::gateway_url_env());
                }
                a
            },
            creds: pool
                .spec
                .warm
                .as_ref()
                .and_then(|w| w.credentials_secret_ref.as_ref())
                .map(|r| r.name.clone()),
            image: tpl.image.clone(),
            resources: tpl.resources.clone(),
            warm: true,
            verdict_key: verdict_key.into(),
        },
    );
    let mut pod_labels = tpl.labels.clone();
    pod_labels.extend([
        ("app.kubernetes.io/name".to_string(), "paddock-runner".to_string()),
        ("app.kubernetes.io/managed-by".to_string(), "paddock".to_string()),
        (paddock_crds::LABEL_POOL.to_string(), pool_name.clone()),
        (paddock_crds::LABEL_WARM.to_string(), "idle".to_string()),
    ]);
    let mut annotations = tpl.annotations.clone();
    annotations.insert(
        ANNOTATION_TEMPLATE_HASH.into(),
        warm_template_hash(pool, verdict_key, uplink),
    );
    let mut owner = pool.controller_owner_ref(&()).unwrap_or_default();
    owner.block_owner_deletion = Some(true);
    let mut pod = Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{pool_name}-warm-")),
            namespace: pool.metadata.namespace.clone(),
            labels: Some(pod_labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    };
    if let Some(u) = uplink {
        apply_uplink(&mut pod, u);
    }
    pod
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

/// Why a run starts cold although its pool has warm pods (the `Running` condition says so).
pub fn warm_unsuitable(run: &AgentRun, pool: &RunnerPool) -> Option<String> {
    let warm = pool.spec.warm.as_ref()?;
    if warm.replicas == 0 {
        return Some("the pool keeps no warm pods".into());
    }
    if let Some(src) = &run.spec.resume_from {
        return Some(format!(
            "the run resumes {}'s session, which is mounted from a ConfigMap",
            src.name
        ));
    }
    if let Some(over) = &run.spec.runner {
        if over.image.is_some() {
            return Some("the run asks for another image".into());
        }
        if over.resources.is_some() {
            return Some("the run asks for other resources".into());
        }
    }
    let run_creds = run.spec.repo.credentials_secret_ref.as_ref().map(|r| &r.name);
    let warm_creds = warm.credentials_secret_ref.as_ref().map(|r| &r.name);
    if run_creds != warm_creds {
        return Some(match run_creds {
            Some(s) => format!("the run's git credentials Secret {s} is not the warm pods' one"),
            None => "the warm pods hold git credentials the run did not ask for".into(),
        });
    }
    if let Some(e) = run.spec.agent.env.iter().find(|e| e.value_from.is_some()) {
        return Some(format!(
            "spec.agent.env {} comes from a reference, which a running pod cannot take",
            e.name
        ));
    }
    None
}

/// Where a resumed session is mounted in the agent container (the runner's
/// `PADDOCK_RESUME_DIR`).
pub const RESUME_DIR: &str = vars::RESUME_DIR_PATH;

/// Makes `pod` continue an earlier run's CLI session (`spec.resumeFrom`): the session
/// ConfigMap `session_cm` mounted read-only at [`RESUME_DIR`] in the agent container with
/// `PADDOCK_RESUME_DIR` pointing there, and, when `revision` is given (the earlier run's pushed
/// branch), `PADDOCK_REVISION` of every container set to it so the worktree starts from that
/// run's changes.
pub fn apply_resume(pod: &mut Pod, session_cm: &str, revision: Option<&str>) {
    let Some(spec) = pod.spec.as_mut() else { return };
    spec.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: "resume".into(),
        config_map: Some(k8s_openapi::api::core::v1::ConfigMapVolumeSource {
            name: session_cm.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let containers = spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut());
    for c in containers {
        if let Some(rev) = revision {
            for e in c.env.iter_mut().flatten() {
                if e.name == vars::REVISION {
                    e.value = Some(rev.to_string());
                }
            }
        }
        if c.name == "agent" {
            c.volume_mounts.get_or_insert_with(Vec::new).push(VolumeMount {
                name: "resume".into(),
                mount_path: RESUME_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            });
            c.env
                .get_or_insert_with(Vec::new)
                .push(env(vars::RESUME_DIR, RESUME_DIR));
        }
    }
}

/// The claim annotation's value for `run` ([`paddock_crds::runner::Claim`]): the run's
/// settings a cold pod would have had in its environment for attempt `attempt` ([`run_env`]),
/// beyond what the warm pod has from the pool; `prompt` is the resolved prompt text.
///
/// # Errors
/// As [`run_env`].
pub fn claim_value(run: &AgentRun, pool: &RunnerPool, prompt: &str, attempt: u32) -> Result<String, BuildError> {
    let run_env = run_env(run, pool, attempt, Prompt::Text(prompt.into()))?;
    // The warm pod has the pool's env already: only the run's own and the routed base URLs.
    let run_own: Vec<EnvVar> = run_env
        .agent_user
        .into_iter()
        .filter(|e| run.spec.agent.env.iter().any(|r| r.name == e.name) || e.name.ends_with("_BASE_URL"))
        .collect();
    // A warm pod's gateway also clones: it takes the trusted and the gateway variables.
    let trusted: Vec<EnvVar> = run_env.trusted.into_iter().chain(run_env.gateway).collect();
    Ok(Claim::of(&trusted, &merge_env(&[&run_own, &run_env.agent_own])).encode())
}

/// Builds the BeforeStart ApprovalGate `name` of `run` from its policy.
pub fn build_gate(run: &AgentRun, policy: &GatePolicy, name: &str) -> ApprovalGate {
    let prompt = run
        .spec
        .prompt
        .as_deref()
        .map(|p| paddock_crds::events::truncate(p, 2048))
        .unwrap_or_else(|| {
            run.spec
                .prompt_from
                .as_ref()
                .map(|f| format!("(prompt from ConfigMap {} key {})", f.name, f.key))
                .unwrap_or_default()
        });
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::EnvVarSource;
    use paddock_crds::{AgentName, RunnerPoolSpec, RunnerTemplate};
    use serde_json::json;

    fn run(spec: serde_json::Value) -> AgentRun {
        let mut base =
            json!({"repo": {"url": "https://example.com/r.git"}, "agent": {"name": "claude-code"}, "prompt": "do it"});
        for (k, v) in spec.as_object().unwrap() {
            base[k] = v.clone();
        }
        let mut r = AgentRun::new("r1", serde_json::from_value(base).unwrap());
        r.metadata.namespace = Some("team".into());
        r.metadata.uid = Some("uid-1".into());
        r
    }

    fn pool(agents: Vec<AgentName>) -> RunnerPool {
        let mut p = RunnerPool::new(
            "default",
            RunnerPoolSpec {
                template: RunnerTemplate {
                    image: "runner:1".into(),
                    env: vec![
                        env("ANTHROPIC_BASE_URL", "http://pool"),
                        env(vars::AGENT, "shell"), // a pool cannot override Paddock's own variables
                    ],
                    ..Default::default()
                },
                agents,
                ..Default::default()
            },
        );
        p.metadata.namespace = Some("team".into());
        p
    }

    fn agent_env_has_no_secret_refs(c: &Container) -> bool {
        c.env
            .iter()
            .flatten()
            .all(|e| e.value_from.as_ref().is_none_or(|v| v.secret_key_ref.is_none()))
    }

    fn env_of(c: &Container) -> BTreeMap<String, EnvVar> {
        c.env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect()
    }

    #[test]
    fn tracing_env_reaches_trusted_containers_only_from_the_pool() {
        let mut p = pool(vec![]);
        p.spec
            .template
            .env
            .push(env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"));
        let r = run(json!({"agent": {"name": "shell", "env": [{"name": "OTEL_SERVICE_NAME", "value": "evil"}]}}));
        let spec = build_pod(&r, &p, 1, "test-key").unwrap().spec.unwrap();
        let clone = &spec.init_containers.as_ref().unwrap()[0];
        let e = env_of(clone);
        assert_eq!(
            e["OTEL_EXPORTER_OTLP_ENDPOINT"].value.as_deref(),
            Some("http://collector:4318")
        );
        assert!(
            !e.contains_key("OTEL_SERVICE_NAME"),
            "a run's env never reaches trusted containers"
        );
    }

    #[test]
    fn pod_is_hardened_and_wired() {
        let r = run(json!({
            "repo": {"url": "https://example.com/r.git", "revision": "v1", "credentialsSecretRef": {"name": "git"}, "workdir": "svc"},
            "agent": {"name": "claude-code", "model": "m", "args": ["--verbose"],
                      "env": [{"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "k", "key": "key"}}},
                              {"name": "ANTHROPIC_BASE_URL", "value": "http://run"}]},
            "budget": {"timeout": "10m", "maxTurns": 7},
            "output": {"push": true, "branch": "feature/x"},
        }));
        let mut p = pool(vec![]);
        p.spec.output = Some(paddock_crds::PoolOutputSpec {
            allowed_branches: vec!["feature/*".into()],
            plain_http_hosts: vec!["forge.internal:3000".into(), "git.local".into()],
        });
        let pod = build_pod(&r, &p, 1, "test-key").unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("r1-1"));
        // The pool's plain-HTTP hosts reach the trusted containers only.
        for c in pod
            .spec
            .as_ref()
            .unwrap()
            .init_containers
            .iter()
            .flatten()
            .chain(&pod.spec.as_ref().unwrap().containers)
        {
            let v = c.env.iter().flatten().find(|e| e.name == vars::GIT_PLAIN_HTTP_HOSTS);
            let want = (c.name == "clone" || c.name == "gateway").then_some("forge.internal:3000,git.local");
            assert_eq!(v.and_then(|e| e.value.as_deref()), want, "{}", c.name);
        }
        assert_eq!(pod.metadata.owner_references.as_ref().unwrap()[0].uid, "uid-1");
        assert_eq!(pod.metadata.labels.as_ref().unwrap()[paddock_crds::LABEL_RUN], "r1");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(spec.active_deadline_seconds, Some(600));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        let inits = spec.init_containers.unwrap();
        assert_eq!(
            inits.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["clone", "gateway"]
        );
        assert_eq!(
            inits[1].restart_policy.as_deref(),
            Some("Always"),
            "gateway is a native sidecar"
        );
        let agent = &spec.containers[0];
        for c in inits.iter().chain([agent]) {
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
            assert_eq!(sc.run_as_non_root, Some(true), "{}", c.name);
            assert_eq!(
                sc.capabilities.as_ref().unwrap().drop.as_deref(),
                Some(&["ALL".to_string()][..]),
                "{}",
                c.name
            );
            assert_eq!(
                sc.seccomp_profile.as_ref().unwrap().type_,
                "RuntimeDefault",
                "{}",
                c.name
            );
            assert!(c.resources.as_ref().unwrap().limits.is_some(), "{} has limits", c.name);
        }
        // Git credentials only in the trusted containers; the agent shares no /tmp with them.
        let mounts = |c: &Container| {
            c.volume_mounts
                .clone()
                .unwrap()
                .into_iter()
                .map(|m| m.name)
                .collect::<Vec<_>>()
        };
        assert!(mounts(&inits[0]).contains(&"git-credentials".to_string()));
        assert!(mounts(&inits[1]).contains(&"git-credentials".to_string()));
        assert!(!mounts(agent).contains(&"git-credentials".to_string()));
        assert!(!mounts(agent).contains(&"trusted-tmp".to_string()));
        let e = env_of(agent);
        assert_eq!(e[vars::AGENT].value.as_deref(), Some("claude-code"));
        // The model API goes through the gateway: the agent has its route and a placeholder
        // key; the gateway has the run's upstream (the run's env wins over the pool's) and the
        // key by reference.
        assert_eq!(
            e["ANTHROPIC_BASE_URL"].value.as_deref(),
            Some("http://127.0.0.1:15001/anthropic")
        );
        assert_eq!(e["ANTHROPIC_API_KEY"].value.as_deref(), Some(gateway::PLACEHOLDER_KEY));
        assert!(agent_env_has_no_secret_refs(agent));
        let g = env_of(&inits[1]);
        assert_eq!(g["PADDOCK_UPSTREAM_ANTHROPIC"].value.as_deref(), Some("http://run"));
        assert!(g["ANTHROPIC_API_KEY"].value_from.is_some());
        assert_eq!(g[vars::REDACT_ENV].value.as_deref(), Some("ANTHROPIC_API_KEY"));
        assert_eq!(
            e[vars::REDACT_ENV].value.as_deref(),
            Some(""),
            "the agent holds no secret, only the placeholder"
        );
        assert_eq!(e[vars::BRANCH].value.as_deref(), Some("feature/x"));
        assert_eq!(e[vars::WORKDIR].value.as_deref(), Some("svc"));
        assert_eq!(e[vars::MAX_TURNS].value.as_deref(), Some("7"));
        assert_eq!(e["PADDOCK_AGENT_ARGS"].value.as_deref(), Some(r#"["--verbose"]"#));
        assert_eq!(e[vars::PUSH].value.as_deref(), Some("true"));
        assert_eq!(env_of(&inits[0])[vars::REVISION].value.as_deref(), Some("v1"));
        assert!(
            !env_of(&inits[0]).contains_key("ANTHROPIC_API_KEY"),
            "model keys stay out of the clone container"
        );
    }

    #[test]
    fn prompt_from_configmap_and_defaults() {
        let r = run(json!({"prompt": null, "promptFrom": {"name": "cm", "key": "task"}}));
        let pod = build_pod(&r, &pool(vec![]), 2, "test-key").unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("r1-2"));
        let spec = pod.spec.unwrap();
        assert_eq!(spec.active_deadline_seconds, Some(DEFAULT_TIMEOUT_SECS as i64));
        let e = env_of(&spec.containers[0]);
        let cm = e[vars::PROMPT]
            .value_from
            .as_ref()
            .unwrap()
            .config_map_key_ref
            .as_ref()
            .unwrap();
        assert_eq!((cm.name.as_str(), cm.key.as_str()), ("cm", "task"));
        assert_eq!(e[vars::BRANCH].value.as_deref(), Some("paddock/r1"));
        assert_eq!(e[vars::PUSH].value.as_deref(), Some("false"));
        assert!(
            spec.volumes.unwrap().iter().all(|v| v.secret.is_none()),
            "no credentials volume without a secret ref"
        );
    }

    #[test]
    fn refusals() {
        let err = build_pod(
            &run(json!({"agent": {"name": "codex"}})),
            &pool(vec![AgentName::ClaudeCode]),
            1,
            "test-key",
        )
        .unwrap_err();
        assert!(matches!(err, BuildError::AgentNotInPool { .. }), "{err}");
        assert_eq!(timeout_secs(&run(json!({"budget": {"timeout": "1h30m"}}))), Ok(5400));
        assert!(timeout_secs(&run(json!({"budget": {"timeout": "soon"}}))).is_err());
    }

    #[test]
    fn a_run_cannot_redirect_the_pools_model_endpoint_unless_allowed_by_name() {
        let mut p = pool(vec![]);
        p.spec.template.env.push(EnvVar {
            name: "ANTHROPIC_API_KEY".into(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(k8s_openapi::api::core::v1::SecretKeySelector {
                    name: "pool-key".into(),
                    key: "k".into(),
                    optional: None,
                }),
                ..Default::default()
            }),
        });
        let redirect = run(
            json!({"agent": {"name": "shell", "env": [{"name": "ANTHROPIC_BASE_URL", "value": "http://attacker.example:1"}]}}),
        );
        let err = build_pod(&redirect, &p, 1, "test-key").unwrap_err();
        assert!(matches!(err, BuildError::OverrideNotAllowed { .. }), "{err}");
        assert!(err.to_string().contains("spec.agent.env[ANTHROPIC_BASE_URL]"), "{err}");
        // A provider the pool holds no key for is the run's own business, and so is a run that
        // brings its own key.
        let own =
            run(json!({"agent": {"name": "shell", "env": [{"name": "OPENAI_BASE_URL", "value": "http://mine"}]}}));
        assert!(build_pod(&own, &p, 1, "test-key").is_ok());
        let own_key = run(json!({"agent": {"name": "shell", "env": [
            {"name": "ANTHROPIC_BASE_URL", "value": "http://mine"},
            {"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "mine", "key": "k"}}}]}}));
        assert!(build_pod(&own_key, &p, 1, "test-key").is_ok());
        // Allowed by name.
        p.spec.overrides = Some(paddock_crds::OverridesSpec {
            model_env: vec!["ANTHROPIC_BASE_URL".into()],
            ..Default::default()
        });
        assert!(build_pod(&redirect, &p, 1, "test-key").is_ok());
    }

    /// The gateway reports the patch, so it redacts the agent's secrets too (e2e:
    /// `planted_secret_never_persisted`).
    #[test]
    fn the_gateway_gets_the_agents_secrets_to_redact() {
        let r = run(json!({"agent": {"name": "shell", "env": [
            {"name": "MY_TOKEN", "valueFrom": {"secretKeyRef": {"name": "token", "key": "value"}}},
            {"name": "PLAIN", "value": "x"}]}}));
        let pod = build_pod(&r, &pool(vec![]), 1, "test-key").unwrap();
        let spec = pod.spec.unwrap();
        let gw = env_of(&spec.init_containers.unwrap()[1]);
        let copied = &gw["PADDOCK_REDACT_VALUE_0"];
        assert_eq!(
            copied
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .name,
            "token"
        );
        assert!(gw[vars::REDACT_ENV]
            .value
            .as_deref()
            .unwrap()
            .split(',')
            .any(|n| n == "PADDOCK_REDACT_VALUE_0"));
        assert!(!gw.contains_key("PADDOCK_REDACT_VALUE_1"), "only secrets");
        assert!(
            env_of(&spec.containers[0]).contains_key("MY_TOKEN"),
            "the agent keeps its env"
        );
    }

    #[test]
    fn a_run_pushes_only_to_branches_the_pool_allows() {
        let mut p = pool(vec![]);
        let to = |b: &str| run(json!({"output": {"push": true, "branch": b}}));
        let err = build_pod(&to("main"), &p, 1, "test-key").unwrap_err();
        assert_eq!(
            err.to_string(),
            "RunnerPool default does not allow pushing to branch main (allowed: paddock/*)"
        );
        assert!(build_pod(&to("paddock/fix/deep"), &p, 1, "test-key").is_ok());
        assert!(
            build_pod(&run(json!({"output": {"push": true}})), &p, 1, "test-key").is_ok(),
            "the default branch"
        );
        // Without a push, the branch is local to the pod.
        assert!(build_pod(&run(json!({"output": {"branch": "main"}})), &p, 1, "test-key").is_ok());
        p.spec.output = Some(paddock_crds::PoolOutputSpec {
            plain_http_hosts: vec![],
            allowed_branches: vec!["agents/*".into()],
        });
        assert!(build_pod(&to("agents/x"), &p, 1, "test-key").is_ok());
        assert!(matches!(
            build_pod(&to("paddock/x"), &p, 1, "test-key"),
            Err(BuildError::BranchNotAllowed { .. })
        ));
    }

    #[test]
    fn overrides_are_the_pools_decision() {
        let mut p = pool(vec![]);
        let with_env = run(json!({"agent": {"name": "shell", "env": [{"name": "X", "value": "1"}]}}));
        assert!(
            build_pod(&with_env, &p, 1, "test-key").is_ok(),
            "env is allowed by default"
        );
        let image = run(json!({"runner": {"image": "evil:1"}}));
        let err = build_pod(&image, &p, 1, "test-key").unwrap_err();
        assert!(err.to_string().contains("refuses spec.runner.image"), "{err}");
        let big = run(json!({"runner": {"resources": {"limits": {"cpu": "4", "memory": "8Gi"}}}}));
        let err = build_pod(&big, &p, 1, "test-key").unwrap_err();
        assert!(err.to_string().contains("no overrides.maxResources"), "{err}");

        p.spec.overrides = Some(paddock_crds::OverridesSpec {
            env: false,
            image: true,
            max_resources: Some(quantities(&[("cpu", "2"), ("memory", "8Gi")])),
            model_env: vec![],
        });
        let err = build_pod(&with_env, &p, 1, "test-key").unwrap_err();
        assert!(err.to_string().contains("refuses spec.agent.env"), "{err}");
        let err = build_pod(&big, &p, 1, "test-key").unwrap_err();
        assert_eq!(
            err.to_string(),
            "RunnerPool default refuses spec.runner.resources.limits.cpu: 4 is more than the pool's maximum 2"
        );
        let fits = run(
            json!({"runner": {"image": "other:2", "resources": {"requests": {"cpu": "500m"}, "limits": {"cpu": "2", "memory": "8192Mi"}}}}),
        );
        let pod = build_pod(&fits, &p, 1, "test-key").unwrap();
        let agent = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(agent.image.as_deref(), Some("other:2"));
        assert_eq!(
            agent.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
            "8192Mi"
        );
        let gpu = run(json!({"runner": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}));
        let err = build_pod(&gpu, &p, 1, "test-key").unwrap_err();
        assert!(err.to_string().contains("does not list nvidia.com/gpu"), "{err}");
    }

    #[test]
    fn every_emptydir_has_a_size_limit_and_the_workspace_follows_the_agents_storage_limit() {
        let limits = |pod: &Pod| -> BTreeMap<String, String> {
            pod.spec
                .as_ref()
                .unwrap()
                .volumes
                .iter()
                .flatten()
                .filter_map(|v| v.empty_dir.as_ref().map(|e| (v.name.clone(), e.size_limit.clone())))
                .map(|(n, l)| (n, l.expect("every emptyDir has a sizeLimit").0))
                .collect()
        };
        let pod = build_pod(&run(json!({})), &pool(vec![]), 1, "test-key").unwrap();
        let l = limits(&pod);
        assert_eq!(l.len(), 4, "{l:?}");
        assert_eq!((l["workspace"].as_str(), l["trusted-tmp"].as_str()), ("20Gi", "20Gi"));
        assert_eq!((l["home"].as_str(), l["tmp"].as_str()), ("4Gi", "4Gi"));
        let mut p = pool(vec![]);
        p.spec.template.resources = Some(ResourceRequirements {
            limits: Some(quantities(&[("ephemeral-storage", "256Mi")])),
            ..Default::default()
        });
        let l = limits(&build_pod(&run(json!({})), &p, 1, "test-key").unwrap());
        assert_eq!(l["workspace"], "256Mi");
        let l = limits(&build_warm_pod(&p, "test-key", None));
        assert_eq!(l["workspace"], "256Mi", "warm pods too");
    }

    #[test]
    fn only_the_trusted_containers_get_the_egress_token_and_the_agent_goes_through_the_pod_gateway() {
        let uplink = PodUplink {
            proxy: "http://10.96.0.50:3128".into(),
            token: "pool-token".into(),
        };
        let r = run(json!({"agent": {"name": "shell", "env": [{"name": "HTTP_PROXY", "value": "http://own:1"}]}}));
        let mut pod = build_pod(&r, &pool(vec![]), 1, "test-key").unwrap();
        apply_uplink(&mut pod, &uplink);
        let warm = build_warm_pod(&pool(vec![]), "test-key", Some(&uplink));
        for pod in [&pod, &warm] {
            let spec = pod.spec.as_ref().unwrap();
            for c in spec.init_containers.as_ref().unwrap() {
                let e = env_of(c);
                assert_eq!(
                    e[paddock_crds::egress::TOKEN_ENV].value.as_deref(),
                    Some("pool-token"),
                    "{}",
                    c.name
                );
                assert_eq!(
                    e[paddock_crds::egress::PROXY_ENV].value.as_deref(),
                    Some("http://10.96.0.50:3128")
                );
            }
            let agent = &spec.containers[0];
            let e = env_of(agent);
            assert!(
                !e.contains_key(paddock_crds::egress::TOKEN_ENV),
                "the agent never holds the token"
            );
            assert!(!e.contains_key(paddock_crds::egress::PROXY_ENV));
            assert_eq!(e["HTTPS_PROXY"].value.as_deref(), Some("http://127.0.0.1:15001"));
            let names: Vec<_> = agent.env.as_ref().unwrap().iter().map(|v| v.name.as_str()).collect();
            let mut unique = names.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(
                names.len(),
                unique.len(),
                "no duplicate variables (server-side apply refuses them)"
            );
        }
        assert_eq!(
            env_of(&pod.spec.as_ref().unwrap().containers[0])["HTTP_PROXY"]
                .value
                .as_deref(),
            Some("http://own:1"),
            "the run's own proxy setting is kept"
        );
        assert_ne!(
            warm_template_hash(&pool(vec![]), "test-key", Some(&uplink)),
            warm_template_hash(&pool(vec![]), "test-key", None),
            "another egress gateway or token replaces idle warm pods"
        );
    }

    #[test]
    fn warm_pod_waits_for_a_claim_and_the_claim_carries_the_run() {
        let mut p = pool(vec![]);
        p.metadata.uid = Some("pool-uid".into());
        let warm = build_warm_pod(&p, "test-key", None);
        let spec = warm.spec.as_ref().unwrap();
        let inits = spec.init_containers.as_ref().unwrap();
        assert_eq!(
            inits.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["gateway"],
            "no clone container: the gateway clones once claimed"
        );
        let agent = env_of(&spec.containers[0]);
        assert_eq!(agent[vars::WARM].value.as_deref(), Some("true"));
        assert_eq!(
            agent["ANTHROPIC_BASE_URL"].value.as_deref(),
            Some("http://127.0.0.1:15001/anthropic")
        );
        assert_eq!(
            env_of(&inits[0])["PADDOCK_UPSTREAM_ANTHROPIC"].value.as_deref(),
            Some("http://pool")
        );
        assert!(!agent.contains_key(vars::PROMPT) && !agent.contains_key(vars::RUN));
        assert_eq!(env_of(&inits[0])[vars::WARM].value.as_deref(), Some("true"));
        assert!(
            inits[0]
                .volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .any(|m| m.name == "podinfo"),
            "the gateway reads the claim too"
        );
        assert!(spec.active_deadline_seconds.is_none(), "an idle pod has no deadline");
        assert_eq!(spec.automount_service_account_token, Some(false));
        let meta = &warm.metadata;
        assert_eq!(meta.generate_name.as_deref(), Some("default-warm-"));
        assert_eq!(meta.labels.as_ref().unwrap()[paddock_crds::LABEL_WARM], "idle");
        assert_eq!(meta.owner_references.as_ref().unwrap()[0].uid, "pool-uid");
        assert_eq!(
            meta.annotations.as_ref().unwrap()[ANNOTATION_TEMPLATE_HASH],
            warm_template_hash(&p, "test-key", None)
        );
        let before = warm_template_hash(&p, "test-key", None);
        p.spec.template.image = "runner:2".into();
        assert_ne!(
            before,
            warm_template_hash(&p, "test-key", None),
            "a template change replaces idle pods"
        );

        let r = run(
            json!({"agent": {"name": "claude-code", "env": [{"name": "FOO", "value": "bar"}, {"name": vars::AGENT, "value": "shell"}]}, "output": {"push": true}}),
        );
        use base64::Engine;
        let claim: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(claim_value(&r, &p, "the prompt from a ConfigMap", 1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claim["agent"][vars::PROMPT], "the prompt from a ConfigMap");
        assert_eq!(claim["agent"][vars::AGENT], "claude-code", "Paddock's variables win");
        assert_eq!(claim["agent"]["FOO"], "bar");
        assert_eq!(claim["trusted"][vars::REPO_URL], "https://example.com/r.git");
        assert_eq!(claim["trusted"][vars::PUSH], "true");
        assert!(
            claim["trusted"].get("FOO").is_none(),
            "a run's env stays out of the trusted containers"
        );
    }

    #[test]
    fn the_agent_gets_no_trusted_variable_cold_or_claimed() {
        let r = run(json!({
            "repo": {"url": "https://example.com/r.git", "revision": "v1", "credentialsSecretRef": {"name": "git"}},
            "agent": {"name": "claude-code", "env": [{"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "k", "key": "key"}}}]},
            "budget": {"maxCostUSD": 1.0, "maxOutputTokens": 10},
            "output": {"push": true},
            "network": {"egress": [{"host": "pypi.org"}]},
        }));
        let mut p = pool(vec![]);
        p.spec.output = Some(paddock_crds::PoolOutputSpec {
            allowed_branches: vec!["*".into()],
            plain_http_hosts: vec!["forge:3000".into()],
        });
        let spec = build_pod(&r, &p, 1, "test-key").unwrap().spec.unwrap();
        let gateway = env_of(&spec.init_containers.as_ref().unwrap()[1]);
        for name in [
            vars::REPO_URL,
            vars::GIT_PLAIN_HTTP_HOSTS,
            vars::MAX_COST_USD,
            vars::EGRESS_ALLOW,
        ] {
            assert!(gateway.contains_key(name), "{name} reaches the gateway");
        }
        for name in env_of(&spec.containers[0]).keys() {
            assert!(!vars::is_trusted_only(name), "{name} reaches the agent");
        }
        let r = run(json!({"budget": {"maxCostUSD": 1.0}, "network": {"egress": [{"host": "pypi.org"}]}}));
        let claim = Claim::decode(&claim_value(&r, &p, "p", 1).unwrap()).unwrap();
        assert!(claim.trusted.contains_key(vars::EGRESS_ALLOW));
        for name in claim.agent.keys() {
            assert!(!vars::is_trusted_only(name), "{name} reaches the agent");
        }
    }

    #[test]
    fn runs_that_cannot_use_a_warm_pod_say_why() {
        let mut p = pool(vec![]);
        assert_eq!(
            warm_unsuitable(&run(json!({})), &p),
            None,
            "no warm pool: nothing to say"
        );
        p.spec.warm = Some(paddock_crds::WarmSpec {
            replicas: 2,
            credentials_secret_ref: None,
        });
        assert_eq!(warm_unsuitable(&run(json!({})), &p), None);
        let cases = [
            (
                json!({"runner": {"resources": {"limits": {"cpu": "1"}}}}),
                "other resources",
            ),
            (json!({"runner": {"image": "x:1"}}), "another image"),
            (
                json!({"agent": {"name": "codex"}, "resumeFrom": {"name": "first"}}),
                "resumes first's session",
            ),
            (
                json!({"repo": {"url": "https://x/r.git", "credentialsSecretRef": {"name": "git"}}}),
                "Secret git",
            ),
            (
                json!({"agent": {"name": "codex", "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}}),
                "spec.agent.env K",
            ),
        ];
        for (spec, why) in cases {
            let got = warm_unsuitable(&run(spec.clone()), &p).unwrap_or_default();
            assert!(got.contains(why), "{spec}: {got}");
        }
        p.spec.warm.as_mut().unwrap().credentials_secret_ref =
            Some(paddock_crds::LocalObjectRef { name: "git".into() });
        assert_eq!(
            warm_unsuitable(
                &run(json!({"repo": {"url": "https://x/r.git", "credentialsSecretRef": {"name": "git"}}})),
                &p
            ),
            None
        );
        assert!(
            warm_unsuitable(&run(json!({})), &p).is_some(),
            "no credentials the run did not ask for"
        );
    }

    #[test]
    fn a_resumed_run_mounts_the_session_and_starts_from_the_commit() {
        let r = run(json!({"agent": {"name": "codex"}, "resumeFrom": {"name": "first"}}));
        let mut pod = build_pod(&r, &pool(vec![]), 1, "test-key").unwrap();
        apply_resume(&mut pod, "first-session", Some("0123abcd"));
        let spec = pod.spec.as_ref().unwrap();
        let vol = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "resume")
            .expect("volume");
        assert_eq!(vol.config_map.as_ref().map(|c| c.name.as_str()), Some("first-session"));
        let agent = spec.containers.iter().find(|c| c.name == "agent").unwrap();
        let mount = agent
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "resume")
            .unwrap();
        assert_eq!((mount.mount_path.as_str(), mount.read_only), (RESUME_DIR, Some(true)));
        assert_eq!(env_of(agent)[vars::RESUME_DIR].value.as_deref(), Some(RESUME_DIR));
        // Only the agent container sees the session; every container clones the same revision.
        for c in spec.init_containers.iter().flatten().chain(&spec.containers) {
            if c.name != "agent" {
                assert!(
                    !c.volume_mounts.iter().flatten().any(|m| m.name == "resume"),
                    "{}",
                    c.name
                );
            }
            if let Some(rev) = env_of(c).get(vars::REVISION) {
                assert_eq!(rev.value.as_deref(), Some("0123abcd"), "{}", c.name);
            }
        }
    }

    #[test]
    fn gate_carries_the_request() {
        let r = run(json!({"approvals": {"beforeStart": {"approvers": {"users": ["alice"]}, "quorum": 2}}}));
        let g = build_gate(
            &r,
            r.spec.approvals.as_ref().unwrap().before_start.as_ref().unwrap(),
            &gate_name(&r),
        );
        assert_eq!(g.metadata.name.as_deref(), Some("r1-before-start"));
        assert_eq!(g.spec.quorum, 2);
        assert_eq!(g.spec.approvers.users, ["alice"]);
        assert!(g.spec.request.summary.contains("do it"), "{}", g.spec.request.summary);
        assert!(g.spec.decisions.is_empty());
    }
}
