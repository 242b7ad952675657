//! Issue 23: the API object writes of a happy-path run — a shell agent that succeeds on a cold
//! pod — through every reconcile it gets, against a fake API server that keeps what is
//! written, so each pass reads what the ones before wrote.
//!
//! The run's writes, in order: the pod (1), the status naming it (`Running`, `PodCreated`), the
//! event log with the patch (`<run>-log`), the status that ends the run (with its progress).
//! The log follower writes nothing of its own: the run is shorter than its interval. Events are
//! counted apart; the pool's egress objects are the pool's, applied once.

use super::*;
use base64::Engine as _;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;

/// A fake API server that keeps what is written: a GET of an object's path gets the object as
/// stored (a container's log: the text stored under `<path>#<container>`), a server-side apply
/// (`PATCH`) merges the body into the stored object (created when missing), a `PATCH` of
/// `<path>/status` merges the body's `status` into the object's, a `POST` is answered with its
/// body, and every other request gets 404. Every request but a GET is recorded, as
/// `METHOD path`, in order; and every log read, as `pod/container`.
#[derive(Default)]
struct FakeApi {
    objects: Mutex<HashMap<String, Value>>,
    writes: Mutex<Vec<String>>,
    /// The container logs read, as `pod/container`, in order.
    log_reads: Mutex<Vec<String>>,
}

/// Merges `patch` into `base` as a JSON merge patch does, without deletions: objects key by
/// key, anything else replaced.
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

impl FakeApi {
    fn put(&self, path: &str, v: Value) {
        self.objects.lock().unwrap().insert(path.to_string(), v);
    }

    fn get(&self, path: &str) -> Option<Value> {
        self.objects.lock().unwrap().get(path).cloned()
    }

    fn answer(&self, method: &http::Method, path: &str, container: Option<&str>, body: &[u8]) -> (u16, Vec<u8>) {
        let mut objects = self.objects.lock().unwrap();
        if method == http::Method::GET {
            if let Some(pod) = path.strip_suffix("/log").and_then(|p| p.rsplit('/').next()) {
                self.log_reads
                    .lock()
                    .unwrap()
                    .push(format!("{pod}/{}", container.unwrap_or_default()));
            }
            let key = container.map(|c| format!("{path}#{c}"));
            return match key.and_then(|k| objects.get(&k)).or_else(|| objects.get(path)) {
                Some(Value::String(text)) => (200, text.clone().into_bytes()),
                Some(obj) => (200, serde_json::to_vec(obj).unwrap()),
                None => not_found(path),
            };
        }
        self.writes.lock().unwrap().push(format!("{method} {path}"));
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        match *method {
            http::Method::PATCH => match path.strip_suffix("/status") {
                Some(obj) => match objects.get_mut(obj) {
                    Some(stored) => {
                        merge(&mut stored["status"], &body["status"]);
                        (200, serde_json::to_vec(stored).unwrap())
                    }
                    None => not_found(path),
                },
                None => {
                    let stored = objects.entry(path.to_string()).or_insert(json!({}));
                    merge(stored, &body);
                    (200, serde_json::to_vec(stored).unwrap())
                }
            },
            http::Method::POST => (201, serde_json::to_vec(&body).unwrap()),
            _ => not_found(path),
        }
    }
}

fn not_found(path: &str) -> (u16, Vec<u8>) {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
        "code": 404, "message": format!("{path} not found")});
    (404, serde_json::to_vec(&status).unwrap())
}

/// A context whose client talks to `api`.
fn context(api: Arc<FakeApi>) -> Arc<Context> {
    let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let api = api.clone();
        async move {
            let method = req.method().clone();
            let path = req.uri().path().to_string();
            let container = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("container=")))
                .map(str::to_string);
            let body = req.into_body().collect_bytes().await.unwrap_or_default();
            let (code, body) = api.answer(&method, &path, container.as_deref(), &body);
            let resp = http::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(body))
                .unwrap();
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let (store, _writer) = kube::runtime::reflector::store::<AgentRun>();
    Arc::new(Context::new(
        kube::Client::new(svc, "default"),
        Arc::default(),
        store,
        "test".into(),
    ))
}

const NS: &str = "/api/v1/namespaces/ns";
const RUNS: &str = "/apis/paddock.dev/v1alpha1/namespaces/ns/agentruns";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// The pool `default`, and its egress gateway as the cluster has it (available, with a
/// cluster IP), owned by the pool.
fn pool_objects(api: &FakeApi) {
    let owner =
        json!([{"apiVersion": "paddock.dev/v1alpha1", "kind": "RunnerPool", "name": "default", "uid": "pool-uid"}]);
    api.put(
        "/apis/paddock.dev/v1alpha1/namespaces/ns/runnerpools/default",
        json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "RunnerPool",
            "metadata": {"name": "default", "namespace": "ns", "uid": "pool-uid", "generation": 1},
            "spec": {"template": {"image": "localhost/paddock/runner:dev"}}}),
    );
    api.put(
        "/apis/apps/v1/namespaces/ns/deployments/default-egress",
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "default-egress", "namespace": "ns", "ownerReferences": owner},
            "status": {"availableReplicas": 1}}),
    );
    api.put(
        &format!("{NS}/services/default-egress"),
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "default-egress", "namespace": "ns", "ownerReferences": owner},
            "spec": {"clusterIP": "10.96.0.42"}}),
    );
}

fn now_rfc3339() -> Value {
    serde_json::to_value(Time(k8s_openapi::jiff::Timestamp::now())).unwrap()
}

/// What `paddock-runner clone` prints, and writes as its termination message.
fn clone_events() -> String {
    [
        r#"{"v":1,"seq":1,"ts":"2026-12-07T00:00:00.000Z","type":"step","step":"clone","status":"started","message":""}"#,
        r#"{"v":1,"seq":2,"ts":"2026-12-07T00:00:00.100Z","type":"step","step":"clone","status":"succeeded","message":"cloned"}"#,
    ]
    .join("\n")
}

/// What the runner prints in the agent container, and its result (the termination message).
fn agent_log() -> (String, String) {
    let result = json!({"outcome": "Succeeded", "reason": "Succeeded", "message": "", "branch": "paddock/r",
        "commit": COMMIT, "filesChanged": 1, "insertions": 1, "deletions": 0});
    let lines = [
        json!({"v": 1, "seq": 1, "ts": "t", "type": "step", "step": "agent", "status": "started", "message": "shell"}),
        json!({"v": 1, "seq": 2, "ts": "t", "type": "tool_call", "id": "1", "name": "Bash", "input": "echo hi > a.txt"}),
        json!({"v": 1, "seq": 3, "ts": "t", "type": "message", "text": "done"}),
    ];
    let mut text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let mut r = result.clone();
    merge(&mut r, &json!({"v": 1, "seq": 4, "ts": "t", "type": "result"}));
    text.push_str(&format!("{r}\n"));
    (text, result.to_string())
}

/// The gateway's log: the patch of the run's commit and the branch's final facts.
fn gateway_log(patch_gz: &[u8]) -> String {
    use paddock_crds::gateway::{BranchFacts, BranchPurpose, GatewayLine};
    let patch = GatewayLine::GatewayPatch {
        commit: COMMIT.into(),
        index: 0,
        total: 1,
        data: base64::engine::general_purpose::STANDARD.encode(patch_gz),
    };
    let facts = GatewayLine::GatewayBranch(BranchFacts {
        purpose: BranchPurpose::Final,
        branch: "paddock/r".into(),
        base: "b".repeat(40),
        commit: Some(COMMIT.into()),
        files_changed: 1,
        insertions: 1,
        ..Default::default()
    });
    format!(
        "{}\n{}\n",
        serde_json::to_string(&patch).unwrap(),
        serde_json::to_string(&facts).unwrap()
    )
}

fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

/// Sets the pod's status as the kubelet would write it.
fn kubelet(api: &FakeApi, pod: &str, status: Value) {
    let path = format!("{NS}/pods/{pod}");
    let mut p = api.get(&path).expect("the pod exists");
    p["status"] = status;
    api.put(&path, p);
}

/// One reconcile of run `name` as the API server has it (the cache caught up), then waits for
/// a log follower it started to end.
async fn pass(ctx: &Arc<Context>, api: &FakeApi, name: &str) {
    let run: AgentRun = serde_json::from_value(api.get(&format!("{RUNS}/{name}")).unwrap()).unwrap();
    let uid = run.metadata.uid.clone().unwrap();
    reconcile(Arc::new(run), ctx.clone()).await.unwrap();
    let follower = ctx.followers.tasks.lock().await.remove(&uid);
    if let Some(f) = follower {
        f.await.unwrap();
    }
}

/// Runs `name` from its creation to its end and after; returns the requests other than GETs
/// made meanwhile.
async fn happy_path(ctx: &Arc<Context>, api: &FakeApi, name: &str) -> Vec<String> {
    let before = api.writes.lock().unwrap().len();
    api.put(
        &format!("{RUNS}/{name}"),
        json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "generation": 1,
                         "creationTimestamp": now_rfc3339()},
            "spec": {"repo": {"url": "https://x/r.git"}, "agent": {"name": "shell"}, "prompt": "echo hi > a.txt"}}),
    );
    let pod = format!("{name}-1");
    let (log, result) = agent_log();
    let diff = "--- a/a.txt\n+++ b/a.txt\n@@ -0,0 +1 @@\n+hi\n";
    let pod_log = format!("{NS}/pods/{pod}/log");
    api.put(&format!("{pod_log}#agent"), Value::String(log));
    api.put(&format!("{pod_log}#clone"), Value::String(clone_events()));
    api.put(&format!("{pod_log}#gateway"), Value::String(gateway_log(&gzip(diff))));
    // Started just now (a second ahead: the kubelet's times are whole seconds).
    let started = || {
        let t = k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(1);
        serde_json::to_value(Time(t)).unwrap()
    };
    let running = |c: &str| {
        json!({"name": c, "image": "i", "imageID": "", "ready": true, "restartCount": 0,
        "state": {"running": {"startedAt": started()}}})
    };
    let waiting = |c: &str, why: &str| {
        json!({"name": c, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": why}}})
    };
    let done = |c: &str, message: &str| {
        json!({"name": c, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": message, "finishedAt": now_rfc3339()}}})
    };

    // Created: the pod and the status naming it.
    pass(ctx, api, name).await;
    // The kubelet pulls, then clones; then the agent runs (for less than 2 s).
    kubelet(
        api,
        &pod,
        json!({"phase": "Pending", "initContainerStatuses": [waiting("gateway", "ContainerCreating"), waiting("clone", "PodInitializing")],
               "containerStatuses": [waiting("agent", "PodInitializing")]}),
    );
    pass(ctx, api, name).await;
    kubelet(
        api,
        &pod,
        json!({"phase": "Pending", "initContainerStatuses": [running("gateway"), running("clone")],
               "containerStatuses": [waiting("agent", "PodInitializing")]}),
    );
    pass(ctx, api, name).await;
    kubelet(
        api,
        &pod,
        json!({"phase": "Running", "initContainerStatuses": [running("gateway"), done("clone", "")],
               "containerStatuses": [running("agent")]}),
    );
    pass(ctx, api, name).await;
    // The agent ended, then the gateway: the run ends. The clone's events are in its
    // termination message (`paddock-runner clone` writes them there).
    kubelet(
        api,
        &pod,
        json!({"phase": "Succeeded", "initContainerStatuses": [done("gateway", ""), done("clone", &clone_events())],
               "containerStatuses": [done("agent", &result)]}),
    );
    pass(ctx, api, name).await;
    // Woken by its own status write: an ended run writes nothing more.
    pass(ctx, api, name).await;
    api.writes.lock().unwrap()[before..].to_vec()
}

/// The writes of `requests` that are objects of the run's own: neither Events nor the pool's
/// egress objects.
fn object_writes(requests: &[String]) -> Vec<&str> {
    requests
        .iter()
        .map(String::as_str)
        .filter(|r| !r.contains("/apis/events.k8s.io/"))
        .filter(|r| {
            !["/networkpolicies/", "/deployments/", "/services/"]
                .iter()
                .any(|k| r.contains(k))
        })
        .collect()
}

#[tokio::test]
async fn a_happy_path_run_makes_at_most_four_object_writes() {
    let api = Arc::new(FakeApi::default());
    pool_objects(&api);
    let ctx = context(api.clone());
    let first = happy_path(&ctx, &api, "r").await;
    let writes = object_writes(&first);
    assert_eq!(
        writes,
        [
            format!("PATCH {NS}/pods/r-1"),
            format!("PATCH {RUNS}/r/status"),
            format!("PATCH {NS}/configmaps/r-log"),
            format!("PATCH {RUNS}/r/status"),
        ],
        "all requests: {first:#?}"
    );
    assert!(writes.len() <= 4);
    // Two log reads: the follower's (it read the agent's whole log, up to the result) and the
    // gateway's at the end; the clone's events came from its termination message.
    assert_eq!(
        *api.log_reads.lock().unwrap(),
        ["r-1/agent", "r-1/gateway"],
        "log reads"
    );
    let events = first.iter().filter(|r| r.contains("/apis/events.k8s.io/")).count();
    assert_eq!(events, 2, "PodCreated and Succeeded: {first:#?}");

    // What was written: the run ended well, naming its pod, with its progress; the log
    // ConfigMap holds the event log and the patch, which the result references.
    let run: AgentRun = serde_json::from_value(api.get(&format!("{RUNS}/r")).unwrap()).unwrap();
    let st = run.status.clone().unwrap();
    assert_eq!(st.phase, Some(Phase::Succeeded));
    assert_eq!(
        (st.pod_name.as_deref(), st.attempt, st.observed_generation),
        (Some("r-1"), Some(1), Some(1))
    );
    let cond = |t: &str| {
        paddock_crds::condition::find_condition(&st.conditions, t).map(|c| (c.status.clone(), c.reason.clone()))
    };
    assert_eq!(cond("Succeeded"), Some(("True".into(), "Succeeded".into())));
    assert_eq!(cond("Running"), Some(("False".into(), "Succeeded".into())));
    let result = st.result.clone().unwrap();
    assert_eq!(
        (result.log_ref.as_deref(), result.patch_ref.as_deref()),
        (Some("r-log"), Some("r-log"))
    );
    assert_eq!(result.run.commit.as_deref(), Some(COMMIT));
    let progress = st.progress.clone().unwrap();
    assert_eq!((progress.events, progress.tool_calls), (4, 1));
    let cm: ConfigMap = serde_json::from_value(api.get(&format!("{NS}/configmaps/r-log")).unwrap()).unwrap();
    assert!(cm.data.as_ref().unwrap()["events.jsonl"].contains("\"tool_call\""));
    let mut diff = String::new();
    use std::io::Read as _;
    flate2::read::GzDecoder::new(paddock_crds::artifacts::patch_gz(&cm).expect("the patch, with the log"))
        .read_to_string(&mut diff)
        .unwrap();
    assert_eq!(diff, "--- a/a.txt\n+++ b/a.txt\n@@ -0,0 +1 @@\n+hi\n");
    assert!(
        api.get(&format!("{NS}/configmaps/r-patch")).is_none(),
        "no patch ConfigMap of its own"
    );

    // A second run of the pool: the same writes, and none of the pool's.
    let second = happy_path(&ctx, &api, "s").await;
    assert_eq!(object_writes(&second).len(), 4, "{second:#?}");
    assert_eq!(
        second.iter().filter(|r| !r.contains("/apis/events.k8s.io/")).count(),
        4,
        "{second:#?}"
    );
}

/// The pass woken by the new pod's watch event can come before the cache shows the status the
/// pass that created the pod wrote: it asks the API server and writes nothing (adopting the pod
/// from the cached status would write over that one, without its policy snapshot).
#[tokio::test]
async fn a_pass_from_a_cache_behind_the_pods_start_writes_nothing() {
    let api = Arc::new(FakeApi::default());
    pool_objects(&api);
    let ctx = context(api.clone());
    api.put(
        &format!("{RUNS}/r"),
        json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
            "metadata": {"name": "r", "namespace": "ns", "uid": "uid-r", "generation": 1,
                         "creationTimestamp": now_rfc3339()},
            "spec": {"repo": {"url": "https://x/r.git"}, "agent": {"name": "shell"}, "prompt": "p"}}),
    );
    let cached: AgentRun = serde_json::from_value(api.get(&format!("{RUNS}/r")).unwrap()).unwrap();
    pass(&ctx, &api, "r").await;
    let started = api.writes.lock().unwrap().len();
    kubelet(&api, "r-1", json!({"phase": "Pending"}));
    reconcile(Arc::new(cached), ctx.clone()).await.unwrap();
    let after = api.writes.lock().unwrap()[started..].to_vec();
    assert_eq!(after, Vec::<String>::new());
    let st = serde_json::from_value::<AgentRun>(api.get(&format!("{RUNS}/r")).unwrap())
        .unwrap()
        .status
        .unwrap();
    assert!(st.policy.is_some(), "the admission's record is kept");
}
