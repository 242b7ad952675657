//! Controller benchmark against the peers, on kwok fake nodes (issue 8, scenarios 1, 3 and 4):
//! Paddock's operator (AgentRun → runner Pod) next to Tekton Pipelines' controller (TaskRun →
//! Pod; at its default client limits and tuned) and agent-sandbox's controller (Sandbox → Pod),
//! all on the same local cluster, each measured alone in its own namespace.
//!
//! **Scenario 1, apply → pod.** For each system: `--objects` objects (default 1,000) are created
//! at `--rate` per second (default 50; 0 = as fast as 32 concurrent requests go), each a minimal
//! unit of work whose pod is scheduled on the kwok node `paddock-kwok-0` (e2e/peers.sh). kwok
//! runs the pods and completes those of AgentRuns and TaskRuns about 1 s after they start;
//! agent-sandbox pods stay running. Latency of one object: from the moment this process sends
//! its create request (this process's monotonic clock) to the moment this process receives the
//! watch event of its pod (a pod watch on the namespace, opened and synced before the first
//! create). Object timestamps are whole seconds, so none is used. Reported: p50/p99/max in ms,
//! when the last pod appeared and when the last object finished (s after the first create),
//! and the pod creation rate (pods/s, first to last pod).
//!
//! **Scenario 4, API cost.** The kube-apiserver's audit log (writes only, Metadata level; see
//! `write_audit_policy` in e2e/cluster/cluster.sh) over each system's window, restricted to the
//! system's namespace, grouped by user agent: the controller's writes per object (every write
//! not made by this benchmark, kwok, the scheduler, the kube-controller-manager or the kubelet)
//! and its 409 Conflict answers.
//!
//! **Scenario 3, memory.** The resident set (`VmRSS` of `/proc/<pid>/status`; the operator's
//! container process and the peers' host processes are all on this machine) of Paddock's
//! operator and Tekton's controller: a fresh process with 0, then with each of `--scale`
//! (default 1000,10000) objects created at 100/s, read once every object has its pod (most are
//! still in progress then); then the controller is restarted with all of them and its peak
//! (`VmHWM`) and settled RSS are read. KiB per object = (restarted settled − fresh) / N.
//!
//! **Scenario 2, start on the real node**: see [`paddock_starts`] and [`sandbox_starts`].
//!
//! Usage: `bench-peers [--scenarios 1,2,3] [--objects N] [--rate R] [--bursts B]
//! [--systems paddock,tekton,tekton-tuned,agent-sandbox] [--scale 1000,10000|none] [--qps Q]
//! [--burst B] [--tekton-threads T]`, with `KUBECONFIG` and Paddock installed
//! (e2e/bench.sh sets it up and starts the peers with e2e/peers.sh). Prints markdown tables.
#![warn(missing_docs)]

use anyhow::{bail, Context as _, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::watcher;
use kube::Client;
use paddock_crds::Phase;
use paddock_e2e::{agent_start_ms, percentile, phase, wait_default_service_account, GitRepo, TestNs};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead as _, Seek as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Label on every benchmark namespace.
const NS_LABEL: &str = "paddock.dev/bench";
/// This process's User-Agent: how the audit log tells its writes from the controllers'.
const BENCH_AGENT: &str = "paddock-bench";
/// Longest wait for one system's objects to finish.
const FINISH_TIMEOUT: Duration = Duration::from_secs(900);

/// A command-line value: `--name value`.
fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn num<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match arg(name) {
        Some(v) => v
            .parse()
            .ok()
            .with_context(|| format!("{name} takes a number, got {v}")),
        None => Ok(default),
    }
}

/// The systems compared. `TektonTuned` is Tekton's controller restarted with the same client
/// limits the others get (`--qps`/`--burst`) and 32 workers per controller.
#[derive(Clone, Copy, Debug, PartialEq)]
enum System {
    Paddock,
    Tekton,
    TektonTuned,
    Sandbox,
}

impl System {
    fn parse(s: &str) -> Result<System> {
        Ok(match s {
            "paddock" => System::Paddock,
            "tekton" => System::Tekton,
            "tekton-tuned" => System::TektonTuned,
            "agent-sandbox" => System::Sandbox,
            _ => bail!("unknown system {s}: expected paddock, tekton, tekton-tuned or agent-sandbox"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            System::Paddock => "paddock",
            System::Tekton => "tekton",
            System::TektonTuned => "tekton-tuned",
            System::Sandbox => "agent-sandbox",
        }
    }

    /// The custom resource the benchmark creates.
    fn resource(self) -> ApiResource {
        let (g, v, k, plural) = match self {
            System::Paddock => ("paddock.dev", "v1alpha1", "AgentRun", "agentruns"),
            System::Tekton | System::TektonTuned => ("tekton.dev", "v1", "TaskRun", "taskruns"),
            System::Sandbox => ("agents.x-k8s.io", "v1beta1", "Sandbox", "sandboxes"),
        };
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, k), plural)
    }

    /// One object: the smallest unit of work of the system, its pod on the kwok node.
    fn manifest(self, name: &str) -> Value {
        let ar = self.resource();
        let placement = json!({
            "nodeSelector": {"type": "kwok"},
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
        });
        let spec = match self {
            System::Paddock => json!({
                "repo": {"url": "git://10.244.0.1/bench.git"},
                "agent": {"name": "shell"},
                "prompt": "true",
                "runnerPoolRef": {"name": "kwok"},
            }),
            System::Tekton | System::TektonTuned => json!({
                "taskSpec": {"steps": [{"name": "run", "image": "localhost/paddock/busybox:1", "script": "true"}]},
                "podTemplate": placement,
            }),
            System::Sandbox => {
                let mut pod = placement.clone();
                pod["containers"] = json!([{"name": "agent", "image": "localhost/paddock/busybox:1", "command": ["sleep", "infinity"]}]);
                json!({"podTemplate": {"spec": pod}})
            }
        };
        json!({"apiVersion": ar.api_version, "kind": ar.kind, "metadata": {"name": name}, "spec": spec})
    }

    /// Whether the object has finished its work (Sandbox: is Ready).
    fn finished(self, obj: &DynamicObject) -> bool {
        let status = &obj.data["status"];
        match self {
            // Both set status.completionTime when the run ends, whatever the outcome.
            System::Paddock | System::Tekton | System::TektonTuned => !status["completionTime"].is_null(),
            System::Sandbox => status["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")),
        }
    }
}

/// What the watches and the creator saw, by object name (this process's monotonic clock).
#[derive(Default)]
struct Times {
    sent: HashMap<String, Instant>,
    pod: HashMap<String, Instant>,
    done: HashMap<String, Instant>,
    failed: Vec<String>,
}

type Shared = Arc<Mutex<Times>>;

/// The controlling owner's name of a pod.
fn owner(pod: &Pod) -> Option<String> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.name.clone())
}

/// Watches pods and the system's objects in `ns`, recording first sightings in `times`;
/// returns once both watches have listed (so nothing created afterwards is missed).
async fn watch(client: &Client, ns: &str, sys: System, times: &Shared) -> Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(2);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let (t, ready) = (times.clone(), tx.clone());
    tokio::spawn(async move {
        let mut s = watcher(pods, watcher::Config::default()).boxed();
        while let Some(ev) = s.next().await {
            let now = Instant::now();
            match ev {
                Ok(watcher::Event::InitDone) => {
                    let _ = ready.send(()).await;
                }
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                    if let Some(o) = owner(&p) {
                        t.lock().unwrap().pod.entry(o).or_insert(now);
                    }
                }
                _ => {}
            }
        }
    });
    watch_objects(client, ns, &sys.resource(), move |o| sys.finished(o), times, tx);
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .context("watches did not list within 60 s")?;
    }
    Ok(())
}

/// Watches the objects `ar` in `ns`, recording in `times.done` when each is first seen with
/// `reached` true; sends on `listed` once the watch has listed.
fn watch_objects(
    client: &Client,
    ns: &str,
    ar: &ApiResource,
    reached: impl Fn(&DynamicObject) -> bool + Send + 'static,
    times: &Shared,
    listed: tokio::sync::mpsc::Sender<()>,
) {
    let objs: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    let t = times.clone();
    tokio::spawn(async move {
        let mut s = watcher(objs, watcher::Config::default()).boxed();
        while let Some(ev) = s.next().await {
            let now = Instant::now();
            match ev {
                Ok(watcher::Event::InitDone) => {
                    let _ = listed.send(()).await;
                }
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) if reached(&o) => {
                    let name = o.metadata.name.clone().unwrap_or_default();
                    t.lock().unwrap().done.entry(name).or_insert(now);
                }
                _ => {}
            }
        }
    });
}

/// Creates the objects `<prefix>-<i>` for i in `range` at `rate` per second (0: as fast as 32
/// concurrent requests go), recording each send time.
async fn create(
    client: &Client,
    ns: &str,
    sys: System,
    prefix: &str,
    range: std::ops::Range<usize>,
    rate: f64,
    times: &Shared,
) -> Result<()> {
    let (from, n) = (range.start, range.len());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &sys.resource());
    let gate = Arc::new(tokio::sync::Semaphore::new(if rate > 0.0 { 1024 } else { 32 }));
    let t0 = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        if rate > 0.0 {
            tokio::time::sleep_until(t0 + Duration::from_secs_f64(i as f64 / rate)).await;
        }
        let permit = gate.clone().acquire_owned().await?;
        let name = format!("{prefix}-{}", from + i);
        let obj: DynamicObject = serde_json::from_value(sys.manifest(&name))?;
        let (api, times) = (api.clone(), times.clone());
        tasks.push(tokio::spawn(async move {
            times.lock().unwrap().sent.insert(name.clone(), Instant::now());
            let r = api.create(&PostParams::default(), &obj).await;
            drop(permit);
            if let Err(e) = r {
                eprintln!("[bench] create {name}: {e}");
                times.lock().unwrap().failed.push(name);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let failed = times.lock().unwrap().failed.len();
    if failed > 0 {
        bail!("{failed} creates failed");
    }
    Ok(())
}

/// Waits until `n` objects have their pod.
async fn wait_pods(times: &Shared, n: usize, what: &str) -> Result<()> {
    let t0 = Instant::now();
    while times.lock().unwrap().pod.len() < n {
        if t0.elapsed() > FINISH_TIMEOUT {
            bail!(
                "{what}: only {} of {n} pods after {FINISH_TIMEOUT:?}",
                times.lock().unwrap().pod.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Waits until `n` objects have finished, printing progress every 10 s.
async fn wait_done(times: &Shared, n: usize, what: &str) -> Result<()> {
    let t0 = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let (pods, done) = {
            let t = times.lock().unwrap();
            (t.pod.len(), t.done.len())
        };
        if done >= n {
            return Ok(());
        }
        if t0.elapsed() > FINISH_TIMEOUT {
            bail!("{what}: only {done} of {n} finished ({pods} pods) after {FINISH_TIMEOUT:?}");
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "[bench] {what}: {pods} pods, {done}/{n} finished, {:.0} s",
                t0.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A namespace for one system's objects, labelled for cleanup.
async fn namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_some() {
        delete_namespace(client, name).await?;
    }
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name, "labels": {NS_LABEL: "true"}}}))?;
    api.create(&PostParams::default(), &ns).await?;
    // Pods (Tekton's, agent-sandbox's) need the default ServiceAccount.
    wait_default_service_account(client, name).await
}

/// Deletes a namespace and waits until it is gone (its controller must be running to remove
/// finalizers).
async fn delete_namespace(client: &Client, name: &str) -> Result<()> {
    // The namespace controller of kube-controller-manager deletes thousands of objects at its
    // own client rate (minutes for 10k runs): delete the big collections first, one request
    // each (Paddock's runs have no finalizers; kwok removes deleted pods at once).
    let collections = [
        System::Paddock.resource(),
        System::Tekton.resource(),
        System::Sandbox.resource(),
        gvk("extensions.agents.x-k8s.io", "v1beta1", "SandboxClaim", "sandboxclaims"),
        gvk("", "v1", "Pod", "pods"),
        gvk("", "v1", "ConfigMap", "configmaps"),
        gvk("", "v1", "Event", "events"),
        gvk("events.k8s.io", "v1", "Event", "events"),
    ];
    for ar in &collections {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), name, ar);
        let dp = DeleteParams {
            grace_period_seconds: (ar.kind == "Pod").then_some(0),
            ..DeleteParams::background()
        };
        let _ = api.delete_collection(&dp, &Default::default()).await;
    }
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::background()).await;
    let t0 = Instant::now();
    while api.get_opt(name).await?.is_some() {
        if t0.elapsed() > Duration::from_secs(600) {
            bail!("namespace {name} not gone after 600 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// The pod annotation whose value kwok's completion stage (e2e/peers/kwok.yaml) makes the agent
/// container's termination message.
const RESULT_ANNOTATION: &str = "bench.paddock.dev/termination-message";

/// Runs one real AgentRun (shell agent, one file written) on the real node and keeps what its
/// pod left: the `clone`, `agent` and `gateway` containers' logs go to the files kwok serves as
/// every kwok pod's logs (CRI log format, in `$PADDOCK_RUN_DIR/peers/kwok/logs`), and the agent
/// container's termination message (the runner's result) is returned for [`RESULT_ANNOTATION`].
/// So on kwok Paddock's operator does what it does for a real run: follows and reads the logs,
/// stores the event log and the diff, and ends the run `Succeeded`.
async fn capture_runner() -> Result<String> {
    let ns = TestNs::new("bench-capture").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool("real", None).await?;
    ns.apply::<paddock_crds::AgentRun>(json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "metadata": {"name": "capture"},
        "spec": {"repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": "echo bench > bench.txt", "runnerPoolRef": {"name": "real"}}}))
        .await?;
    let run = ns.wait_finished("capture", Duration::from_secs(180)).await?;
    if phase(&run) != Some(Phase::Succeeded) {
        bail!("the capture run ended {:?}: {:?}", phase(&run), run.status);
    }
    let pod_name = run
        .status
        .as_ref()
        .and_then(|s| s.pod_name.clone())
        .context("capture run: no pod")?;
    let pods: Api<Pod> = ns.api();
    let dir =
        std::path::PathBuf::from(std::env::var("PADDOCK_RUN_DIR").unwrap_or_else(|_| "/var/lib/paddock-e2e".into()))
            .join("peers/kwok/logs");
    std::fs::create_dir_all(&dir)?;
    for c in ["clone", "agent", "gateway"] {
        let text = pods
            .logs(
                &pod_name,
                &kube::api::LogParams {
                    container: Some(c.into()),
                    ..Default::default()
                },
            )
            .await?;
        let cri: String = text
            .lines()
            .map(|l| format!("2026-01-01T00:00:00.000000000Z stdout F {l}\n"))
            .collect();
        std::fs::write(dir.join(format!("{c}.log")), cri)?;
    }
    let pod = pods.get(&pod_name).await?;
    let message = pod
        .status
        .and_then(|s| s.container_statuses)
        .into_iter()
        .flatten()
        .find(|c| c.name == "agent")
        .and_then(|c| c.state?.terminated?.message)
        .context("capture run: the agent container has no termination message")?;
    ns.cleanup().await;
    Ok(message)
}

/// Paddock's pool on the kwok node, without a concurrency limit; its pods carry the captured
/// runner result for kwok (see [`capture_runner`]).
async fn paddock_pool(client: &Client, ns: &str, result: &str) -> Result<()> {
    let pools: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &gvk("paddock.dev", "v1alpha1", "RunnerPool", "runnerpools"),
    );
    let pool: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "RunnerPool", "metadata": {"name": "kwok"},
        "spec": {"template": {
            "image": "localhost/paddock/runner:dev",
            "nodeSelector": {"type": "kwok"},
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            "annotations": {RESULT_ANNOTATION: result},
        }},
    }))?;
    pools.create(&PostParams::default(), &pool).await?;
    Ok(())
}

/// Runs e2e/peers.sh with `args`.
fn peers(args: &[&str]) -> Result<String> {
    let out = std::process::Command::new("bash")
        .arg("e2e/peers.sh")
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("e2e/peers.sh")?;
    if !out.status.success() {
        bail!("e2e/peers.sh {} failed", args.join(" "));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Client-side limits of the tuned peers. Paddock's kube-rs client has no client-side rate
/// limit and agent-sandbox's default (`--kube-api-qps -1`) is none either, so the default here
/// is none for all (`qps` 0): Tekton tuned gets limits too high to bind (5,000 QPS / 10,000
/// burst after its doubling) and agent-sandbox its default; the API server's priority and
/// fairness is the only bound. With `--qps Q --burst B`, Tekton tuned and agent-sandbox get Q/B
/// and Paddock still none.
struct Limits {
    qps: u32,
    burst: u32,
    /// Tekton tuned: workers per reconciler (`-threads-per-controller`; default 2).
    threads: u32,
}

/// Makes the controller under test the only one of its kind running with the right flags.
fn prepare(sys: System, l: &Limits) -> Result<()> {
    let threads = l.threads.to_string();
    match sys {
        System::Paddock => {}
        System::Tekton => {
            peers(&["start", "tekton"])?;
        }
        System::TektonTuned => {
            // Tekton's main doubles both after parsing (cmd/controller/main.go: "multiply by 2,
            // no of controllers being created"), so half of each gives the limits asked for.
            let (qps, burst) = if l.qps == 0 {
                (2500, 5000)
            } else {
                ((l.qps / 2).max(1), (l.burst / 2).max(1))
            };
            peers(&[
                "start",
                "tekton",
                "--qps",
                &qps.to_string(),
                "--burst",
                &burst.to_string(),
                "--threads",
                &threads,
            ])?;
        }
        System::Sandbox if l.qps == 0 => {
            peers(&["start", "agent-sandbox"])?;
        }
        System::Sandbox => {
            peers(&[
                "start",
                "agent-sandbox",
                "--qps",
                &l.qps.to_string(),
                "--burst",
                &l.burst.to_string(),
            ])?;
        }
    }
    Ok(())
}

/// Where a window of the API server's audit log starts: the file's inode and its length.
fn audit_offset(path: &str) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).map(|m| (m.ino(), m.len())).unwrap_or((0, 0))
}

/// The audit lines written since `from` (see [`audit_offset`]). The API server rotates the log
/// (`--audit-log-maxsize`): when the file at `path` is another one now, the rest of the old
/// one (renamed `audit-<time>.log` next to it, found by its inode) comes first.
fn audit_lines(path: &str, from: (u64, u64)) -> Result<Vec<String>> {
    use std::os::unix::fs::MetadataExt as _;
    let read_from = |p: &std::path::Path, offset: u64| -> Result<Vec<String>> {
        let mut f = std::fs::File::open(p).with_context(|| {
            format!(
                "{}: is the API server's audit log on? (e2e/bench.sh restarts it)",
                p.display()
            )
        })?;
        f.seek(std::io::SeekFrom::Start(offset))?;
        Ok(std::io::BufReader::new(f).lines().collect::<std::io::Result<_>>()?)
    };
    let path = std::path::Path::new(path);
    let (ino, len) = from;
    if std::fs::metadata(path)?.ino() == ino {
        return read_from(path, len);
    }
    let mut lines = vec![];
    let dir = path.parent().context("audit log directory")?;
    for e in std::fs::read_dir(dir)?.flatten() {
        if e.metadata().is_ok_and(|m| m.ino() == ino) {
            lines = read_from(&e.path(), len)?;
        }
    }
    lines.extend(read_from(path, 0)?);
    Ok(lines)
}

/// Writes of one client in the audit log.
#[derive(Default, Debug)]
struct Writes {
    /// Writes to objects other than Events.
    objects: u64,
    /// Event writes (core and events.k8s.io; a recorder's create or series patch).
    events: u64,
    /// 409 Conflict answers among all of them.
    conflicts: u64,
}

/// Writes in `ns` since `from` in the audit log, by user agent product (`kwok`,
/// `kube-scheduler`, …; the text before the first `/`).
fn audit_writes(path: &str, from: (u64, u64), ns: &str) -> Result<BTreeMap<String, Writes>> {
    let mut by: BTreeMap<String, Writes> = BTreeMap::new();
    for line in audit_lines(path, from)? {
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v["objectRef"]["namespace"] != ns
            && !(v["objectRef"]["resource"] == "namespaces" && v["objectRef"]["name"] == ns)
        {
            continue;
        }
        let ua = v["userAgent"].as_str().unwrap_or("");
        // kube-rs sends no User-Agent unless told to: name such clients by their user.
        let product = match ua.split('/').next() {
            Some(p) if !p.is_empty() => p.to_string(),
            _ => format!("user:{}", v["user"]["username"].as_str().unwrap_or("?")),
        };
        let e = by.entry(product).or_default();
        if v["objectRef"]["resource"] == "events" {
            e.events += 1;
        } else {
            e.objects += 1;
        }
        if v["responseStatus"]["code"] == 409 {
            e.conflicts += 1;
        }
    }
    Ok(by)
}

/// User agents that are not the controller under test: this benchmark, kwok, and the cluster's
/// own components.
fn not_the_controller(product: &str) -> bool {
    product == BENCH_AGENT
        || [
            "kwok",
            "kube-scheduler",
            "kube-controller-manager",
            "kubelet",
            "kubectl",
        ]
        .iter()
        .any(|p| product.starts_with(p))
}

/// One row of the scenario 1 table.
struct Row {
    system: &'static str,
    n: usize,
    rate: f64,
    p50: f64,
    p99: f64,
    max: f64,
    last_pod_s: f64,
    done_s: f64,
    pods_per_s: f64,
    writes: f64,
    events: f64,
    conflicts: u64,
}

/// Scenario 1 and 4 for one system.
async fn apply_to_pod(client: &Client, sys: System, n: usize, rate: f64, audit: &str, result: &str) -> Result<Row> {
    let ns = format!("bench-{}", sys.name());
    namespace(client, &ns).await?;
    if sys == System::Paddock {
        paddock_pool(client, &ns, result).await?;
    }
    let times: Shared = Arc::default();
    watch(client, &ns, sys, &times).await?;
    let from = audit_offset(audit);
    eprintln!("[bench] {}: creating {n} at {rate}/s in {ns}", sys.name());
    let t0 = Instant::now();
    create(client, &ns, sys, "o", 0..n, rate, &times).await?;
    wait_done(&times, n, sys.name()).await?;
    // The audit log is written before the response; give the last writes a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let by = audit_writes(audit, from, &ns)?;
    let t = times.lock().unwrap();
    let mut lat: Vec<f64> = t
        .sent
        .iter()
        .filter_map(|(name, s)| t.pod.get(name).map(|p| p.duration_since(*s).as_secs_f64() * 1000.0))
        .collect();
    if lat.len() < n {
        bail!("{}: {} of {n} objects got a pod", sys.name(), lat.len());
    }
    lat.sort_by(f64::total_cmp);
    let first_pod = t.pod.values().min().copied().unwrap_or(t0);
    let last_pod = t.pod.values().max().copied().unwrap_or(t0);
    let last_done = t.done.values().max().copied().unwrap_or(t0);
    eprintln!(
        "[bench] {}: audit writes in {ns} by user agent (writes, 409s): {by:?}",
        sys.name()
    );
    let (mut writes, mut events, mut conflicts) = (0, 0, 0);
    for (p, w) in &by {
        if !not_the_controller(p) {
            writes += w.objects;
            events += w.events;
            conflicts += w.conflicts;
        }
    }
    Ok(Row {
        system: sys.name(),
        n,
        rate,
        p50: percentile(&lat, 50.0),
        p99: percentile(&lat, 99.0),
        max: lat[lat.len() - 1],
        last_pod_s: last_pod.duration_since(t0).as_secs_f64(),
        done_s: last_done.duration_since(t0).as_secs_f64(),
        pods_per_s: (n.saturating_sub(1)) as f64 / last_pod.duration_since(first_pod).as_secs_f64().max(1e-3),
        writes: writes as f64 / n as f64,
        events: events as f64 / n as f64,
        conflicts,
    })
}

/// The PID of the controller process of `sys` on this machine: Paddock's operator container
/// (the only process named `paddock-operator`; one replica), a peer's host process.
fn controller_pid(sys: System) -> Result<u32> {
    if sys != System::Paddock {
        let name = if sys == System::Sandbox {
            "agent-sandbox"
        } else {
            "tekton"
        };
        return peers(&["pid", name])?.parse().context("e2e/peers.sh pid");
    }
    let mut found = vec![];
    for e in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // comm is cut at 15 bytes.
        if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "paddock-operato") {
            found.push(pid);
        }
    }
    match found.as_slice() {
        [pid] => Ok(*pid),
        _ => bail!("expected one paddock-operator process, found {found:?} (scale the chart to 1 replica)"),
    }
}

/// Waits until `pid`'s resident set has not grown for 5 s (at least 10 s in all), so the
/// controller has listed and settled.
async fn settle(pid: u32) -> Result<()> {
    let t0 = Instant::now();
    let (mut last, mut since) = (rss_kib(pid)?.0, Instant::now());
    while t0.elapsed() < Duration::from_secs(10) || since.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = rss_kib(pid)?.0;
        if now > last + 256 {
            since = Instant::now();
        }
        last = now;
        if t0.elapsed() > Duration::from_secs(300) {
            break;
        }
    }
    Ok(())
}

/// Restarts the controller of `sys` and returns the new process's PID.
async fn restart(sys: System, l: &Limits) -> Result<u32> {
    let old = controller_pid(sys)?;
    if sys == System::Paddock {
        let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
        for args in [
            vec!["-n", "paddock-system", "rollout", "restart", "deploy/paddock-operator"],
            vec![
                "-n",
                "paddock-system",
                "rollout",
                "status",
                "deploy/paddock-operator",
                "--timeout=300s",
            ],
        ] {
            let st = std::process::Command::new(&kubectl)
                .args(&args)
                .stdout(std::process::Stdio::null())
                .status()?;
            if !st.success() {
                bail!("kubectl {} failed", args.join(" "));
            }
        }
    } else {
        peers(&["stop", "tekton"])?;
        prepare(sys, l)?;
    }
    let t0 = Instant::now();
    loop {
        match controller_pid(sys) {
            Ok(pid) if pid != old => return Ok(pid),
            _ if t0.elapsed() > Duration::from_secs(120) => bail!("{} did not restart", sys.name()),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// One row of the scenario 3 table: resident sets (KiB) at each count, the peak after a restart.
struct MemRow {
    system: &'static str,
    at: Vec<(usize, u64)>,
    relist_peak: u64,
    relist_rss: u64,
}

/// Scenario 3 for one system: fills a namespace to each count of `scale` (every object with its
/// pod on kwok), reading the controller's resident set at each.
async fn memory(client: &Client, sys: System, scale: &[usize], l: &Limits, result: &str) -> Result<MemRow> {
    // Filled at 100/s; each count is read once every object has its pod (not once all have
    // finished: at 10k that takes the controllers here 15 min or more).
    let fill_rate = 100.0;
    let ns = format!("bench-scale-{}", sys.name());
    prepare(sys, l)?;
    namespace(client, &ns).await?;
    if sys == System::Paddock {
        paddock_pool(client, &ns, result).await?;
    }
    let times: Shared = Arc::default();
    watch(client, &ns, sys, &times).await?;
    // A fresh process for the baseline: one that ran earlier scenarios keeps what its allocator
    // grew to.
    let pid = restart(sys, l).await?;
    settle(pid).await?;
    let mut at = vec![(0, rss_kib(pid)?.0)];
    let mut have = 0;
    for &target in scale {
        if target <= have {
            continue;
        }
        eprintln!("[bench] {}: filling {ns} to {target} objects", sys.name());
        create(client, &ns, sys, "s", have..target, fill_rate, &times).await?;
        wait_pods(&times, target, sys.name()).await?;
        have = target;
        settle(pid).await?;
        let rss = rss_kib(pid)?.0;
        eprintln!("[bench] {}: {target} objects, RSS {rss} KiB", sys.name());
        at.push((target, rss));
    }
    let new = restart(sys, l).await?;
    settle(new).await?;
    let (relist_rss, relist_peak) = rss_kib(new)?;
    if sys == System::Paddock {
        eprintln!(
            "[bench] paddock: how the {have} runs of {ns} stand: {}",
            run_tally(client, &ns).await?
        );
    }
    delete_namespace(client, &ns).await?;
    Ok(MemRow {
        system: sys.name(),
        at,
        relist_peak,
        relist_rss,
    })
}

/// How the AgentRuns of `ns` stand, as `"<count> <phase>[/<reason>] …"`, most common first; a
/// failed kind also shows the message of one of its runs, so the reason is on the bench's output.
async fn run_tally(client: &Client, ns: &str) -> Result<String> {
    let api: Api<paddock_crds::AgentRun> = Api::namespaced(client.clone(), ns);
    let mut counts: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut lp = kube::api::ListParams::default().limit(500);
    loop {
        let page = api.list(&lp).await?;
        for r in &page.items {
            let p = phase(r).map_or("NoPhase".to_string(), |p| format!("{p:?}"));
            let (key, example) = match paddock_e2e::condition(r, "Succeeded") {
                Some((_, reason, message)) if p == "Failed" => (
                    format!("{p}/{reason}"),
                    format!(" (e.g. {}: {message})", r.metadata.name.clone().unwrap_or_default()),
                ),
                _ => (p, String::new()),
            };
            counts.entry(key).or_insert((0, example)).0 += 1;
        }
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by_key(|(_, (n, _))| std::cmp::Reverse(*n));
    Ok(v.iter()
        .map(|(k, (n, e))| format!("{n} {k}{e}"))
        .collect::<Vec<_>>()
        .join(", "))
}

/// One row of the scenario 2 table: start latencies (ms) of one system, start kind and measure.
struct StartRow {
    system: &'static str,
    start: &'static str,
    measure: &'static str,
    ms: Vec<f64>,
}

/// Status of a custom resource `name` (any kind), polled until `ok` holds.
async fn wait_status(api: &Api<DynamicObject>, name: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Result<()> {
    let t0 = Instant::now();
    loop {
        if let Some(o) = api.get_opt(name).await? {
            if ok(&o.data["status"]) {
                return Ok(());
            }
        }
        if t0.elapsed() > Duration::from_secs(300) {
            bail!("{name}: {what} not reached after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn gvk(g: &str, v: &str, k: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, k), plural)
}

/// Creates `names` at `rate` per second, recording each send (monotonic and wall clock).
async fn arrive(
    api: &Api<DynamicObject>,
    objs: Vec<(String, Value)>,
    rate: f64,
    times: &Shared,
) -> Result<HashMap<String, std::time::SystemTime>> {
    let t0 = tokio::time::Instant::now();
    let mut tasks = vec![];
    for (i, (name, obj)) in objs.into_iter().enumerate() {
        tokio::time::sleep_until(t0 + Duration::from_secs_f64(i as f64 / rate)).await;
        let (api, times) = (api.clone(), times.clone());
        let obj: DynamicObject = serde_json::from_value(obj)?;
        tasks.push(tokio::spawn(async move {
            let wall = std::time::SystemTime::now();
            times.lock().unwrap().sent.insert(name.clone(), Instant::now());
            api.create(&PostParams::default(), &obj).await.map(|_| (name, wall))
        }));
    }
    let mut walls = HashMap::new();
    for t in tasks {
        let (name, wall) = t.await??;
        walls.insert(name, wall);
    }
    Ok(walls)
}

/// Milliseconds from send to the first sighting in `times.done`, for `names`.
fn seen_ms(times: &Shared, names: &[String]) -> Result<Vec<f64>> {
    let t = times.lock().unwrap();
    names
        .iter()
        .map(|n| match (t.sent.get(n), t.done.get(n)) {
            (Some(s), Some(d)) => Ok(d.duration_since(*s).as_secs_f64() * 1000.0),
            _ => bail!("{n}: not seen"),
        })
        .collect()
}

/// Scenario 2, Paddock: bursts of `per` AgentRuns (shell agent, one file written) arriving at
/// `rate`/s, into a pool without warm pods (cold) and one with `warm.replicas: per` that is
/// full before each burst (warm). Two measures per run: create → the watch event whose status
/// names its pod (cold: pod created; warm: warm pod claimed), and create → the runner's `step
/// agent started` event (the agent process running; includes the clone).
async fn paddock_starts(bursts: usize, per: usize, rate: f64) -> Result<Vec<StartRow>> {
    let ns = TestNs::new("bench-start").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool("cold", None).await?;
    ns.pool_with("warm", json!({"warm": {"replicas": per}})).await?;
    let runs = Api::<DynamicObject>::namespaced_with(ns.client.clone(), &ns.name, &System::Paddock.resource());
    let pools = Api::<DynamicObject>::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &gvk("paddock.dev", "v1alpha1", "RunnerPool", "runnerpools"),
    );
    let mut rows = vec![];
    for (pool, warm) in [("cold", false), ("warm", true)] {
        let times: Shared = Arc::default();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        watch_objects(
            &ns.client,
            &ns.name,
            &System::Paddock.resource(),
            |o| !o.data["status"]["podName"].is_null(),
            &times,
            tx,
        );
        rx.recv().await.context("watch")?;
        let (mut bound, mut agent) = (vec![], vec![]);
        // Burst 0 is a warm-up, not measured.
        for b in 0..=bursts {
            if warm {
                wait_status(&pools, pool, "all warm pods ready", |s| {
                    s["warmReady"] == per && s["warmTotal"] == per
                })
                .await?;
            }
            let objs: Vec<(String, Value)> = (0..per)
                .map(|i| {
                    let name = format!("{pool}-{b}-{i}");
                    let obj = json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "metadata": {"name": name},
                        "spec": {"repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": "echo bench > bench.txt",
                                 "runnerPoolRef": {"name": pool}}});
                    (name, obj)
                })
                .collect();
            let names: Vec<String> = objs.iter().map(|(n, _)| n.clone()).collect();
            let walls = arrive(&runs, objs, rate, &times).await?;
            for name in &names {
                let run = ns.wait_finished(name, Duration::from_secs(300)).await?;
                if phase(&run) != Some(Phase::Succeeded) {
                    bail!("{name} ended {:?}: {:?}", phase(&run), run.status);
                }
                let was_warm = run.status.as_ref().and_then(|s| s.warm_start) == Some(true);
                if was_warm != warm {
                    bail!("{name}: warm start {was_warm}, expected {warm}");
                }
                let ms = agent_start_ms(&ns, &run, walls[name]).await?;
                eprintln!("[bench] {name}: agent started {ms:.0} ms after create");
                if b > 0 {
                    agent.push(ms);
                }
            }
            if b > 0 {
                bound.extend(seen_ms(&times, &names)?);
            }
            eprintln!("[bench] paddock {pool} burst {b}/{bursts} done");
        }
        let start = if warm { "warm" } else { "cold" };
        rows.push(StartRow {
            system: "paddock",
            start,
            measure: "pod named in status (claimed / created)",
            ms: bound,
        });
        rows.push(StartRow {
            system: "paddock",
            start,
            measure: "agent process started (incl. clone)",
            ms: agent,
        });
    }
    ns.cleanup().await;
    Ok(rows)
}

/// Scenario 2, agent-sandbox: the same bursts of SandboxClaims, against a SandboxWarmPool of
/// `per` (warm; full before each burst) and of 0 (cold: the claim's Sandbox is made from the
/// template). Measure: create → the watch event with the claim's `Ready` condition `True` (its
/// pod is running and ready: the sandbox's process is up).
async fn sandbox_starts(client: &Client, bursts: usize, per: usize, rate: f64) -> Result<Vec<StartRow>> {
    let ns = "bench-start-sandbox";
    namespace(client, ns).await?;
    let ext = |k: &str, plural: &str| gvk("extensions.agents.x-k8s.io", "v1beta1", k, plural);
    let templates =
        Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ext("SandboxTemplate", "sandboxtemplates"));
    let pools = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ext("SandboxWarmPool", "sandboxwarmpools"));
    let claims_ar = ext("SandboxClaim", "sandboxclaims");
    let claims = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &claims_ar);
    let template: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxTemplate", "metadata": {"name": "agent"},
        "spec": {"podTemplate": {"spec": {"containers": [{"name": "agent", "image": "localhost/paddock/busybox:1", "command": ["sleep", "infinity"]}]}}},
    }))?;
    templates.create(&PostParams::default(), &template).await?;
    let mut rows = vec![];
    for (pool, replicas) in [("cold", 0), ("warm", per)] {
        let p: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxWarmPool", "metadata": {"name": pool},
            "spec": {"replicas": replicas, "sandboxTemplateRef": {"name": "agent"}},
        }))?;
        pools.create(&PostParams::default(), &p).await?;
        let times: Shared = Arc::default();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let ready = |o: &DynamicObject| {
            o.data["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        };
        watch_objects(client, ns, &claims_ar, ready, &times, tx);
        rx.recv().await.context("watch")?;
        let mut ms = vec![];
        for b in 0..=bursts {
            if replicas > 0 {
                wait_status(&pools, pool, "all warm sandboxes ready", |s| {
                    s["readyReplicas"] == replicas
                })
                .await?;
            }
            let objs: Vec<(String, Value)> = (0..per)
                .map(|i| {
                    let name = format!("{pool}-{b}-{i}");
                    let obj = json!({"apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxClaim",
                        "metadata": {"name": name}, "spec": {"warmPoolRef": {"name": pool}}});
                    (name, obj)
                })
                .collect();
            let names: Vec<String> = objs.iter().map(|(n, _)| n.clone()).collect();
            arrive(&claims, objs, rate, &times).await?;
            let t0 = Instant::now();
            while names.iter().any(|n| !times.lock().unwrap().done.contains_key(n)) {
                if t0.elapsed() > Duration::from_secs(300) {
                    bail!("agent-sandbox {pool} burst {b}: claims not Ready after 300 s");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if b > 0 {
                ms.extend(seen_ms(&times, &names)?);
            }
            // Release the claims (and their sandboxes) so the node holds the same pods each burst.
            for n in &names {
                let _ = claims.delete(n, &DeleteParams::background()).await;
            }
            eprintln!("[bench] agent-sandbox {pool} burst {b}/{bursts} done");
        }
        let start = if replicas > 0 { "warm" } else { "cold" };
        rows.push(StartRow {
            system: "agent-sandbox",
            start,
            measure: "claim Ready (pod running and ready)",
            ms,
        });
    }
    delete_namespace(client, ns).await?;
    Ok(rows)
}

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

/// Resident set and peak (KiB) of process `pid`.
fn rss_kib(pid: u32) -> Result<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("process {pid}"))?;
    let field = |k: &str| -> u64 {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

async fn run() -> Result<()> {
    let n: usize = num("--objects", 1000)?;
    let rate: f64 = num("--rate", 50.0)?;
    let limits = Limits {
        qps: num("--qps", 0)?,
        burst: num("--burst", 0)?,
        threads: num("--tekton-threads", 32)?,
    };
    let systems = arg("--systems")
        .unwrap_or_else(|| "paddock,tekton,tekton-tuned,agent-sandbox".into())
        .split(',')
        .map(System::parse)
        .collect::<Result<Vec<_>>>()?;
    let audit = std::env::var("PADDOCK_AUDIT_LOG").unwrap_or_else(|_| {
        let dir = std::env::var("PADDOCK_CLUSTER_DIR").unwrap_or_else(|_| "/var/lib/paddock-cluster".into());
        format!("{dir}/logs/audit.log")
    });
    let mut config = kube::Config::infer().await?;
    config.headers.push((
        hyper::header::USER_AGENT,
        hyper::header::HeaderValue::from_static(BENCH_AGENT),
    ));
    let client = Client::try_from(config)?;

    let scale: Vec<usize> = match arg("--scale").as_deref() {
        None => vec![1000, 10_000],
        Some("") | Some("none") => vec![],
        Some(v) => v
            .split(',')
            .map(|x| x.parse().context("--scale takes counts"))
            .collect::<Result<_>>()?,
    };
    let scenarios = arg("--scenarios").unwrap_or_else(|| "1,2,3".into());
    let bursts: usize = num("--bursts", 5)?;
    if scenarios.contains('2') {
        let (per, arrivals) = (4, 45.0);
        let mut starts = vec![];
        if systems.contains(&System::Paddock) {
            starts.extend(paddock_starts(bursts, per, arrivals).await?);
        }
        if systems.contains(&System::Sandbox) {
            prepare(System::Sandbox, &limits)?;
            starts.extend(sandbox_starts(&client, bursts, per, arrivals).await?);
        }
        println!("\nScenario 2: created → started on the real node (ms), {bursts} bursts of {per} arriving at {arrivals}/s; warm pools of {per}, full before each burst");
        println!("| system | start | measure | n | p50 | p99 | max |");
        println!("|---|---|---|---|---|---|---|");
        for mut r in starts {
            r.ms.sort_by(f64::total_cmp);
            println!(
                "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} |",
                r.system,
                r.start,
                r.measure,
                r.ms.len(),
                percentile(&r.ms, 50.0),
                percentile(&r.ms, 99.0),
                r.ms.last().copied().unwrap_or(f64::NAN)
            );
        }
    }
    let result = if systems.contains(&System::Paddock) && (scenarios.contains('1') || scenarios.contains('3')) {
        eprintln!("[bench] one real run on the real node, for the logs and result kwok replays");
        capture_runner().await?
    } else {
        String::new()
    };
    let mut rows = vec![];
    for sys in systems.iter().filter(|_| scenarios.contains('1')) {
        prepare(*sys, &limits)?;
        rows.push(apply_to_pod(&client, *sys, n, rate, &audit, &result).await?);
        delete_namespace(&client, &format!("bench-{}", sys.name())).await?;
    }
    if !rows.is_empty() {
        println!(
            "\nScenario 1 + 4: object created → its pod seen by a watch (ms), {n} objects at {rate}/s, pods on kwok"
        );
        println!("| system | objects | rate/s | p50 ms | p99 ms | max ms | last pod s | all finished s | pods/s | writes/object | Events/object | 409s |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        for r in &rows {
            println!(
                "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {} |",
                r.system,
                r.n,
                r.rate,
                r.p50,
                r.p99,
                r.max,
                r.last_pod_s,
                r.done_s,
                r.pods_per_s,
                r.writes,
                r.events,
                r.conflicts
            );
        }
    }
    if !scale.is_empty() && scenarios.contains('3') {
        let mut mem = vec![];
        for sys in [System::Paddock, System::TektonTuned] {
            if systems.contains(&sys) || (sys == System::TektonTuned && systems.contains(&System::Tekton)) {
                mem.push(memory(&client, sys, &scale, &limits, &result).await?);
            }
        }
        println!("\nScenario 3: controller resident set (VmRSS, MiB) with N objects (created at 100/s, each with its pod on kwok; read once all pods exist, most objects still in progress); then the controller restarted with all of them: its peak (VmHWM) over the initial list and its settled RSS; KiB per object = (restarted settled − fresh at 0) / N");
        let counts: Vec<String> = mem
            .first()
            .map(|m| m.at.iter().map(|(n, _)| format!("{n}")).collect())
            .unwrap_or_default();
        println!(
            "| system | {} | restarted at {}: peak MiB | settled MiB | KiB/object |",
            counts
                .iter()
                .map(|c| format!("RSS MiB at {c}"))
                .collect::<Vec<_>>()
                .join(" | "),
            counts.last().cloned().unwrap_or_default()
        );
        println!("|---|{}---|---|---|", "---|".repeat(counts.len()));
        for m in &mem {
            // A restarted process holding the last count, against a fresh one holding none.
            let n_last = m.at.last().map_or(0, |(n, _)| *n);
            let per = (m.relist_rss.saturating_sub(m.at[0].1)) as f64 / n_last.max(1) as f64;
            println!(
                "| {} | {} | {:.1} | {:.1} | {per:.1} |",
                m.system,
                m.at.iter()
                    .map(|(_, r)| format!("{:.1}", *r as f64 / 1024.0))
                    .collect::<Vec<_>>()
                    .join(" | "),
                m.relist_peak as f64 / 1024.0,
                m.relist_rss as f64 / 1024.0
            );
        }
    }
    Ok(())
}
