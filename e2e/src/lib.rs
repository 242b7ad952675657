//! Harness for Paddock's e2e tests. Each test gets its own namespace ([`TestNs`]), deleted at
//! the end unless `PADDOCK_E2E_KEEP=1`; on failure the namespace's pods and events are printed.
//!
//! The environment (set by `e2e/run-e2e.sh`):
//! - `KUBECONFIG`: the cluster, with Paddock installed by its Helm chart;
//! - `PADDOCK_E2E_RUNNER_IMAGE`: runner image present on the node;
//! - `PADDOCK_E2E_MODEL_URL`: the scripted model endpoint as pods reach it (`http://<host>:<port>`);
//! - `PADDOCK_E2E_GIT_ROOT` / `PADDOCK_E2E_GIT_URL`: a directory of bare repositories on the host
//!   and the `git://` URL under which `git daemon` serves it to pods.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use anyhow::{anyhow, bail, Context as _, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use paddock_crds::events::{parse_line, RunnerEvent, Step, StepStatus};
use paddock_crds::{AgentRun, Phase, RunnerPool};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// Reads a required environment variable.
///
/// # Errors
/// When it is unset: the e2e suite must run through `e2e/run-e2e.sh`.
pub fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set: run the e2e suite with `make e2e`"))
}

/// A namespace owned by one test.
pub struct TestNs {
    /// Client for the cluster.
    pub client: Client,
    /// Namespace name.
    pub name: String,
}

impl TestNs {
    /// Creates `paddock-e2e-<prefix>-<random>`.
    ///
    /// # Errors
    /// API errors.
    pub async fn new(prefix: &str) -> Result<Self> {
        let client = Client::try_default().await?;
        let name = format!("e2e-{prefix}-{:x}", rand_u32());
        let ns: Namespace = serde_json::from_value(
            serde_json::json!({"metadata": {"name": name, "labels": {"paddock.dev/e2e": "true"}}}),
        )?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        wait_default_service_account(&client, &name).await?;
        Ok(TestNs { client, name })
    }

    /// Typed API in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Applies a YAML/JSON manifest (one object) with server-side apply.
    ///
    /// # Errors
    /// The API server's refusal, verbatim, so tests can assert on it.
    pub async fn apply<K>(&self, obj: serde_json::Value) -> Result<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let name = obj["metadata"]["name"]
            .as_str()
            .ok_or_else(|| anyhow!("manifest has no name"))?
            .to_string();
        Ok(self
            .api::<K>()
            .patch(&name, &PatchParams::apply("paddock-e2e").force(), &Patch::Apply(&obj))
            .await?)
    }

    /// Creates a RunnerPool `name` with the e2e runner image and the scripted model's base URLs.
    ///
    /// # Errors
    /// API errors.
    pub async fn pool(&self, name: &str, max_concurrent: Option<u32>) -> Result<RunnerPool> {
        let extra = match max_concurrent {
            Some(m) => serde_json::json!({"maxConcurrentRuns": m}),
            None => serde_json::json!({}),
        };
        self.pool_with(name, extra).await
    }

    /// Creates (or updates) a RunnerPool `name` like [`TestNs::pool`], with the top-level
    /// fields of `extra` (e.g. `warm`, `queue`, `overrides`) set in its spec.
    ///
    /// # Errors
    /// API errors.
    pub async fn pool_with(&self, name: &str, extra: serde_json::Value) -> Result<RunnerPool> {
        let model = env("PADDOCK_E2E_MODEL_URL")?;
        let mut spec = serde_json::json!({
            "template": {
                "image": env("PADDOCK_E2E_RUNNER_IMAGE")?,
                "imagePullPolicy": "IfNotPresent",
                "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
                "env": [
                    {"name": "ANTHROPIC_BASE_URL", "value": model},
                    {"name": "OPENAI_BASE_URL", "value": format!("{model}/v1")},
                    {"name": "GOOGLE_GEMINI_BASE_URL", "value": model},
                ],
            },
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            spec[k] = v.clone();
        }
        self.apply(serde_json::json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "RunnerPool", "metadata": {"name": name}, "spec": spec})).await
    }

    /// Creates an Opaque Secret with one key.
    ///
    /// # Errors
    /// API errors.
    pub async fn secret(&self, name: &str, key: &str, value: &str) -> Result<Secret> {
        self.apply(serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {key: value}})).await
    }

    /// Waits until `run` satisfies `pred`, returning it; fails after `timeout` with the last
    /// status seen.
    ///
    /// # Errors
    /// Timeout or API errors.
    pub async fn wait_run(
        &self,
        run: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&AgentRun) -> bool,
    ) -> Result<AgentRun> {
        let api = self.api::<AgentRun>();
        let t0 = Instant::now();
        loop {
            let r = api.get(run).await?;
            if pred(&r) {
                return Ok(r);
            }
            if t0.elapsed() > timeout {
                self.dump().await;
                bail!(
                    "timed out after {timeout:?} waiting for {run} to be {what}; status: {}",
                    serde_json::to_string_pretty(&r.status)?
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until `run` reaches a terminal phase.
    ///
    /// # Errors
    /// Timeout or API errors.
    pub async fn wait_finished(&self, run: &str, timeout: Duration) -> Result<AgentRun> {
        self.wait_run(run, timeout, "finished", |r| phase(r).is_some_and(Phase::is_terminal))
            .await
    }

    /// Events (events.k8s.io) about the object `name` in this namespace, as (reason, note).
    ///
    /// # Errors
    /// API errors.
    pub async fn events_for(&self, name: &str) -> Result<Vec<(String, String)>> {
        let evs = self.api::<Event>().list(&ListParams::default()).await?;
        Ok(evs
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect())
    }

    /// Waits until Events with each of `reasons` exist for the object `name` (Events are
    /// published asynchronously, after the status they describe), returning all (reason, note).
    ///
    /// # Errors
    /// Timeout (listing the reasons seen) or API errors.
    pub async fn wait_events(&self, name: &str, reasons: &[&str], timeout: Duration) -> Result<Vec<(String, String)>> {
        let t0 = Instant::now();
        loop {
            let evs = self.events_for(name).await?;
            if reasons.iter().all(|want| evs.iter().any(|(r, _)| r == want)) {
                return Ok(evs);
            }
            if t0.elapsed() > timeout {
                let seen: Vec<&str> = evs.iter().map(|(r, _)| r.as_str()).collect();
                bail!("Events {reasons:?} for {name} not all seen within {timeout:?}; seen: {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Prints the namespace's pods and events (on failure).
    pub async fn dump(&self) {
        eprintln!("---- dump of namespace {} ----", self.name);
        if let Ok(pods) = self.api::<Pod>().list(&ListParams::default()).await {
            for p in pods.items {
                eprintln!(
                    "pod {}: {}",
                    p.metadata.name.unwrap_or_default(),
                    serde_json::to_string(&p.status).unwrap_or_default()
                );
            }
        }
        if let Ok(evs) = self.api::<Event>().list(&ListParams::default()).await {
            for e in evs.items {
                eprintln!(
                    "event {} {}: {}",
                    e.regarding.and_then(|r| r.name).unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default()
                );
            }
        }
    }

    /// Deletes the namespace (unless `PADDOCK_E2E_KEEP=1`).
    pub async fn cleanup(self) {
        if std::env::var("PADDOCK_E2E_KEEP").as_deref() == Ok("1") {
            return;
        }
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::background())
            .await;
    }
}

/// Waits (up to 30 s) for namespace `ns`'s `default` ServiceAccount, which the
/// kube-controller-manager creates after the namespace: pods cannot be created before it.
///
/// # Errors
/// API errors, or no ServiceAccount after 30 s.
pub async fn wait_default_service_account(client: &Client, ns: &str) -> Result<()> {
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), ns);
    let t0 = Instant::now();
    while sas.get_opt("default").await?.is_none() {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("default ServiceAccount never appeared in {ns}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// The user name the API server authenticates `client` as (a SelfSubjectReview, i.e.
/// `kubectl auth whoami`): what an ApprovalGate decision's `approver` must be, since the chart's
/// admission policy refuses decisions in someone else's name.
///
/// # Errors
/// API errors, or a review without a user name.
pub async fn whoami(client: &Client) -> Result<String> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?;
    review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .ok_or_else(|| anyhow!("SelfSubjectReview returned no user name"))
}

/// A client acting as `user` with `groups` (Kubernetes impersonation by the admin kubeconfig;
/// the API server adds `system:authenticated` to every impersonated user): how the tests act as
/// alice, bob or mallory.
///
/// # Errors
/// When no kubeconfig can be read.
pub async fn client_as(user: &str, groups: &[&str]) -> Result<Client> {
    let mut config = kube::Config::infer().await?;
    config.auth_info.impersonate = Some(user.to_string());
    config.auth_info.impersonate_groups = (!groups.is_empty()).then(|| groups.iter().map(|g| g.to_string()).collect());
    Ok(Client::try_from(config)?)
}

/// The run's phase.
pub fn phase(r: &AgentRun) -> Option<Phase> {
    r.status.as_ref().and_then(|s| s.phase)
}

/// (status, reason, message) of the run's condition `type_`.
pub fn condition(r: &AgentRun, type_: &str) -> Option<(String, String, String)> {
    let c = paddock_crds::condition::find_condition(r.status.as_ref()?.conditions.as_slice(), type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.subsec_nanos() ^ (std::process::id() << 8)).wrapping_mul(2654435761)
}

/// A bare git repository on the host, served to pods by `git daemon`.
pub struct GitRepo {
    /// Path of the bare repository.
    pub path: PathBuf,
    /// URL pods clone from.
    pub url: String,
}

fn git(args: &[&str], dir: Option<&std::path::Path>) -> Result<String> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let out = cmd
        .args([
            "-c",
            "user.name=e2e",
            "-c",
            "user.email=e2e@paddock.dev",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl GitRepo {
    /// Creates a bare repository `<name>.git` with one commit on `main` holding `files`.
    ///
    /// # Errors
    /// git failures.
    pub fn create(name: &str, files: &[(&str, &str)]) -> Result<Self> {
        let root = PathBuf::from(env("PADDOCK_E2E_GIT_ROOT")?);
        let path = root.join(format!("{name}.git"));
        let _ = std::fs::remove_dir_all(&path);
        let work = root.join(format!(".work-{name}"));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work)?;
        git(&["init", "-q"], Some(&work))?;
        for (f, content) in files {
            if let Some(dir) = work.join(f).parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(work.join(f), content)?;
        }
        git(&["add", "-A"], Some(&work))?;
        git(&["commit", "-qm", "initial commit"], Some(&work))?;
        git(
            &[
                "clone",
                "-q",
                "--bare",
                work.to_str().unwrap_or_default(),
                path.to_str().unwrap_or_default(),
            ],
            None,
        )?;
        std::fs::write(path.join("git-daemon-export-ok"), "")?;
        // Let git daemon (which may run as another user) accept pushes.
        git(&["config", "daemon.receivepack", "true"], Some(&path))?;
        let _ = std::fs::remove_dir_all(&work);
        let url = format!("{}/{name}.git", env("PADDOCK_E2E_GIT_URL")?);
        Ok(GitRepo { path, url })
    }

    /// `git show <rev>:<file>` in the bare repository.
    ///
    /// # Errors
    /// When the revision or file does not exist.
    pub fn show(&self, rev: &str, file: &str) -> Result<String> {
        git(
            &[
                "--git-dir",
                self.path.to_str().unwrap_or_default(),
                "show",
                &format!("{rev}:{file}"),
            ],
            None,
        )
    }

    /// `git log -1 --format=%B <rev>`.
    ///
    /// # Errors
    /// When the revision does not exist.
    pub fn message(&self, rev: &str) -> Result<String> {
        git(
            &[
                "--git-dir",
                self.path.to_str().unwrap_or_default(),
                "log",
                "-1",
                "--format=%B",
                rev,
            ],
            None,
        )
    }
}

/// Decompresses a gzip blob to text.
///
/// # Errors
/// Invalid gzip.
pub fn gunzip(data: &[u8]) -> Result<String> {
    use std::io::Read;
    let mut s = String::new();
    flate2::read::GzDecoder::new(data).read_to_string(&mut s)?;
    Ok(s)
}

/// The event log (JSON lines, `events.jsonl`) stored for ended `run` in its log ConfigMap
/// (`status.result.logRef`).
///
/// # Errors
/// No log reference, no such ConfigMap or no `events.jsonl` in it; API errors.
pub async fn stored_event_log(ns: &TestNs, run: &AgentRun) -> Result<String> {
    let name = run.metadata.name.clone().unwrap_or_default();
    let log_ref = run
        .status
        .as_ref()
        .and_then(|s| s.result.as_ref())
        .and_then(|r| r.log_ref.clone())
        .with_context(|| format!("{name}: no log"))?;
    let cm = ns.api::<ConfigMap>().get(&log_ref).await?;
    cm.data
        .and_then(|mut d| d.remove("events.jsonl"))
        .with_context(|| format!("{name}: empty log"))
}

/// Milliseconds from `created` (a wall-clock instant on this machine) to the `ts` of the
/// `step agent started` event in `run`'s event log (the runner's clock; the local cluster's node
/// is this machine): how long the run took to get its agent process going.
///
/// # Errors
/// A run without an event log, or a log without the agent's start.
pub async fn agent_start_ms(ns: &TestNs, run: &AgentRun, created: SystemTime) -> Result<f64> {
    let name = run.metadata.name.clone().unwrap_or_default();
    let text = stored_event_log(ns, run).await?;
    for line in text.lines() {
        let Some(ev) = parse_line(line) else { continue };
        if let RunnerEvent::Step {
            step: Step::Agent,
            status: StepStatus::Started,
            ..
        } = ev.event
        {
            let ts: k8s_openapi::jiff::Timestamp = ev.ts.parse().with_context(|| format!("ts {}", ev.ts))?;
            let created = k8s_openapi::jiff::Timestamp::try_from(created)?;
            return Ok(ts.duration_since(created).as_secs_f64() * 1000.0);
        }
    }
    bail!("{name}: no agent start in its log")
}

/// Nearest-rank percentile `p` (0–100) of `sorted` (ascending); NaN when it is empty. The
/// benchmarks' p50/p90/p99.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Output of one `kubectl paddock` invocation.
#[derive(Debug, Clone)]
pub struct PluginOut {
    /// Whether it exited 0.
    pub ok: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// The plugin binary (`$CARGO_TARGET_DIR/debug/kubectl-paddock`), built with `cargo build -p
/// kubectl-paddock` if it is not there yet (`e2e/run-e2e.sh` builds it first).
///
/// # Errors
/// When the build fails.
pub fn plugin_binary() -> Result<PathBuf> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"));
    let bin = target.join("debug").join("kubectl-paddock");
    if !bin.exists() {
        let st = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "kubectl-paddock"])
            .current_dir(&repo)
            .status()
            .context("running cargo build -p kubectl-paddock")?;
        if !st.success() || !bin.exists() {
            bail!(
                "cargo build -p kubectl-paddock failed ({st}); {} missing",
                bin.display()
            );
        }
    }
    Ok(bin)
}

/// Runs `kubectl paddock ARGS` (the real plugin, [`plugin_binary`]) with `KUBECONFIG` and
/// `envs` in its environment; prints the command and its output; fails the test if the
/// plugin panicked.
///
/// # Errors
/// When the binary cannot be built or started.
pub fn kubectl_paddock(args: &[&str], envs: &[(&str, String)]) -> Result<PluginOut> {
    let mut cmd = Command::new(plugin_binary()?);
    cmd.args(args).env("KUBECONFIG", env("KUBECONFIG")?);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().context("running kubectl-paddock")?;
    let o = PluginOut {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "$ kubectl paddock {}\n{}{}(exit ok: {})",
        args.join(" "),
        o.stdout,
        o.stderr,
        o.ok
    );
    assert!(!o.stderr.contains("panicked"), "the plugin panicked: {}", o.stderr);
    Ok(o)
}
