//! The envtest harness: clients for the API server e2e/envtest.sh started, a namespace per test,
//! and the operator binary as a child process watching only that namespace.
//!
//! No controller-manager runs, so nothing here is done by one: the test creates its namespace's
//! `default` ServiceAccount (the ServiceAccount admission plugin refuses pods without it), marks
//! Deployments available itself, and leaves its namespace behind (the namespace controller
//! would empty it; the whole etcd is thrown away at the end instead).

use anyhow::{anyhow, bail, Context as _, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use paddock_crds::{AgentRun, Phase};
use serde_json::{json, Value};
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// How long a test waits for the operator to reach a state. Generous: the operator reacts in
/// well under a second, but four tests share two cores.
pub const WAIT: Duration = Duration::from_secs(30);

/// An environment variable that e2e/envtest.sh sets.
pub fn env_var(name: &str) -> Result<String> {
    std::env::var(name).map_err(|_| anyhow!("{name} is not set: run this tier with e2e/envtest.sh (make envtest)"))
}

/// A client from the kubeconfig at `path`, acting as `as_user` (with `groups`) when given:
/// impersonation, which the admin kubeconfig (system:masters) may use.
pub async fn client_from(path: &str, as_user: Option<(&str, &[&str])>) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("reading {path}"))?;
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    if let Some((user, groups)) = as_user {
        config.auth_info.impersonate = Some(user.to_string());
        config.auth_info.impersonate_groups =
            (!groups.is_empty()).then(|| groups.iter().map(|g| g.to_string()).collect());
    }
    Ok(Client::try_from(config)?)
}

/// The admin client (system:masters).
pub async fn admin() -> Result<Client> {
    client_from(&env_var("PADDOCK_ENVTEST_KUBECONFIG")?, None).await
}

/// A client acting as `user` in `groups` (and system:authenticated).
pub async fn client_as(user: &str, groups: &[&str]) -> Result<Client> {
    client_from(&env_var("PADDOCK_ENVTEST_KUBECONFIG")?, Some((user, groups))).await
}

/// One test's namespace, and the operator watching it (when started).
pub struct Env {
    /// The admin client.
    pub client: Client,
    /// The namespace's name, `envtest-<prefix>-<random>`.
    pub ns: String,
    operator: Option<Child>,
    log: Option<PathBuf>,
}

impl Env {
    /// Creates the namespace and its `default` ServiceAccount; no operator.
    pub async fn new(prefix: &str) -> Result<Self> {
        let client = admin().await?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos();
        let ns = format!("envtest-{prefix}-{:06x}", (nanos ^ std::process::id()) & 0xff_ffff);
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
        // The controller-manager's ServiceAccount controller would create it.
        let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "default"}}))?;
        Api::<ServiceAccount>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &sa)
            .await?;
        Ok(Env {
            client,
            ns,
            operator: None,
            log: None,
        })
    }

    /// Creates the namespace and starts the operator binary on it, as the chart's
    /// ServiceAccount (its RBAC), without leader election, Kueue or the webhook receiver.
    pub async fn with_operator(prefix: &str) -> Result<Self> {
        let mut env = Self::new(prefix).await?;
        let log = PathBuf::from(env_var("PADDOCK_ENVTEST_LOGS")?).join(format!("operator-{}.log", env.ns));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_paddock-operator"))
            .args([
                "run",
                "--namespace",
                &env.ns,
                "--metrics-addr",
                "127.0.0.1:0",
                "--webhook-addr",
                "",
            ])
            .env("KUBECONFIG", env_var("PADDOCK_ENVTEST_OPERATOR_KUBECONFIG")?)
            .env("RUST_LOG", "info,kube=warn")
            .env("NO_COLOR", "1")
            .env_remove("PADDOCK_KUEUE")
            .env_remove("PADDOCK_LEADER_ELECT")
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .context("starting paddock-operator")?;
        env.operator = Some(child);
        env.log = Some(log);
        Ok(env)
    }

    /// The typed API of `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates `obj` (a full manifest) in this namespace.
    pub async fn create<K>(&self, obj: Value) -> Result<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let obj: K = serde_json::from_value(obj)?;
        Ok(self.api::<K>().create(&PostParams::default(), &obj).await?)
    }

    /// Creates RunnerPool `name` (an image that never runs: no kubelet) with the top-level
    /// fields of `extra` in its spec.
    pub async fn pool(&self, name: &str, extra: Value) -> Result<paddock_crds::RunnerPool> {
        let mut spec = json!({"template": {"image": "registry.invalid/paddock-runner:envtest"}});
        for (k, v) in extra.as_object().into_iter().flatten() {
            spec[k] = v.clone();
        }
        self.create(json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "RunnerPool",
                           "metadata": {"name": name}, "spec": spec}))
            .await
    }

    /// Creates AgentRun `name` (agent shell, pool `pool`) with the top-level fields of `extra`
    /// in its spec.
    pub async fn run(&self, name: &str, pool: &str, extra: Value) -> Result<AgentRun> {
        let mut spec = run_spec(pool);
        for (k, v) in extra.as_object().into_iter().flatten() {
            spec[k] = v.clone();
        }
        self.create(json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
                           "metadata": {"name": name}, "spec": spec}))
            .await
    }

    /// Waits until run `name` has `phase` and its condition `type_` has `reason`.
    pub async fn wait_run(&self, name: &str, phase: Phase, type_: &str, reason: &str) -> Result<AgentRun> {
        let api = self.api::<AgentRun>();
        let t0 = Instant::now();
        loop {
            let run = api.get(name).await?;
            let got = (phase_of(&run), condition(&run, type_).map(|c| c.1));
            if got == (Some(phase), Some(reason.to_string())) {
                return Ok(run);
            }
            if t0.elapsed() > WAIT {
                bail!(
                    "run {name}: want phase {phase:?} with {type_}={reason}, have {got:?} after {WAIT:?}; status {}\n{}",
                    serde_json::to_string(&run.status)?,
                    self.operator_log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `probe` answers `Some`, failing with `what` (and the operator's log) after
    /// [`WAIT`].
    pub async fn eventually<T, F, Fut>(&self, what: &str, mut probe: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        let t0 = Instant::now();
        loop {
            if let Some(v) = probe().await? {
                return Ok(v);
            }
            if t0.elapsed() > WAIT {
                bail!("{what}: not within {WAIT:?}\n{}", self.operator_log_tail());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits for Deployment `name` (a pool's egress gateway, applied by the operator), then
    /// reports one available replica in its status, as the Deployment controller would once a
    /// pod ran. Nothing else writes that status here: no controller-manager, no kubelet.
    pub async fn mark_available(&self, name: &str) -> Result<Deployment> {
        let api = self.api::<Deployment>();
        self.eventually(&format!("Deployment {name} exists"), || async {
            Ok(api.get_opt(name).await?)
        })
        .await?;
        let status = json!({"status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1,
                                       "updatedReplicas": 1, "observedGeneration": 1}});
        Ok(api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await?)
    }

    /// The last lines of this test's operator log, for failure messages.
    pub fn operator_log_tail(&self) -> String {
        let Some(path) = &self.log else { return String::new() };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("--- operator log ({}), last lines:\n{tail}", path.display())
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(child) = self.operator.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// A valid AgentRun spec in pool `pool`.
pub fn run_spec(pool: &str) -> Value {
    json!({
        "repo": {"url": "https://example.invalid/repo.git"},
        "agent": {"name": "shell"},
        "prompt": "echo hello",
        "runnerPoolRef": {"name": pool},
    })
}

/// The run's phase.
pub fn phase_of(run: &AgentRun) -> Option<Phase> {
    run.status.as_ref().and_then(|s| s.phase)
}

/// The run's condition `type_`: (status, reason, message).
pub fn condition(run: &AgentRun, type_: &str) -> Option<(String, String, String)> {
    let st = run.status.as_ref()?;
    paddock_crds::condition::find_condition(&st.conditions, type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}
