//! What every reconcile gets: the client, the events recorder, the metrics, the caches and the
//! operator's in-memory bookkeeping (log followers, admissions not yet visible in the cache).

use crate::inflight::{Admissions, Followers, Requests};
use crate::metrics::Metrics;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Client, Resource};
use paddock_crds::AgentRun;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Field manager of the AgentRun controller's server-side applies (pods, gates, status).
pub const MANAGER_AGENTRUN: &str = "paddock.dev/agentrun";
/// Field manager of the log followers' `status.progress` applies.
pub const MANAGER_PROGRESS: &str = "paddock.dev/agentrun-progress";
/// Field manager of the ApprovalGate controller.
pub const MANAGER_GATE: &str = "paddock.dev/approvalgate";
/// Field manager of the RunnerPool controller.
pub const MANAGER_POOL: &str = "paddock.dev/runnerpool";
/// Field manager of `status.archive` (an ended run's archived evidence) and of the
/// `paddock-evidence` ConfigMap.
pub const MANAGER_EVIDENCE: &str = "paddock.dev/evidence";

/// Process-wide state shared with the HTTP endpoints.
#[derive(Default)]
pub struct State {
    /// Metrics registry.
    pub metrics: Metrics,
    /// Set once the controllers' caches are synced.
    pub ready: AtomicBool,
}

/// Context passed to every AgentRun reconcile.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Shared process state (metrics).
    pub state: Arc<State>,
    /// Cache of all AgentRuns (the controller's reflector store), for queue decisions; without
    /// `spec.prompt` ([`paddock_crds::cache::slim_agent_run`]).
    pub runs: Store<AgentRun>,
    /// Admission to pools: their locks and the runs admitted the cache may not show yet.
    pub admissions: Admissions,
    /// When each pool's status was last written, keyed `namespace/name` (see
    /// [`Context::pool_status_wait`]).
    pub pool_status_writes: std::sync::Mutex<HashMap<String, std::time::Instant>>,
    /// The AgentRun controller's log followers (`--max-log-followers` permits).
    pub followers: Followers,
    /// The approval requests the followers read, until the reconcile raises their gates.
    pub requests: Requests,
    /// Messages the log followers read as delivered, for the RunMessage controller.
    pub deliveries: crate::inflight::Deliveries,
    /// Cache of the runner pods (label `paddock.dev/run`; metadata and status only, see
    /// [`paddock_crds::cache::slim_pod`]). `None` in tests: every read goes to the API.
    pub pods: Option<Store<k8s_openapi::api::core::v1::Pod>>,
    /// Kueue integration on (`--kueue`): runs labelled `kueue.x-k8s.io/queue-name` wait for
    /// their Workload's admission.
    pub kueue: bool,
    /// The key that signs verdicts and warm-pod claims (`--verdict-key-file`; a random one when
    /// none is given): runner pods trust only what it signed (`paddock_crds::verdict`).
    pub signer: Arc<paddock_crds::verdict::Signer>,
    /// Per pool (`namespace/name`): what this process applied of the pool's egress gateway
    /// ([`crate::controller::egress::reconcile_egress`]).
    pub egress: std::sync::Mutex<HashMap<String, EgressApplied>>,
    /// Per pool (`namespace/name`): held while this process applies the pool's egress objects,
    /// so that the many run reconciles that find them unapplied at once (a new pool, or one
    /// whose gateway just changed) apply them once, not once each
    /// ([`Context::egress_apply_lock`]). One small entry per pool seen, kept for the process's
    /// life.
    pub egress_applying: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Signing and archiving of ended runs' evidence bundles.
    pub evidence: crate::evidence::Evidence,
    /// Whether the runner's progress steps are published as Events too (`--step-events`; see
    /// [`crate::controller::agentrun::follow::event_for`]).
    pub step_events: bool,
    /// The web console's base URL (`--console-url`), linked from pull-request receipts and
    /// issue comments as `<url>/runs/<namespace>/<name>`.
    pub console_url: Option<String>,
    /// When each run (by UID) may try its pull request again after a forge failure: a
    /// condition message that changes with each failure would otherwise wake the reconcile at
    /// once.
    pub forge_retry: std::sync::Mutex<HashMap<String, std::time::Instant>>,
    /// Where this operator's pods are (`--operator-pod-selector` and `POD_NAMESPACE`): when
    /// set, each warm claim is also pushed to the claimed pod's gateway, and each pool's
    /// runner NetworkPolicy admits these pods on the claim port. `None`: claims reach warm pods
    /// through the kubelet only.
    pub claim_push: Option<ClaimPushFrom>,
}

/// The operator's own pods, which push warm claims (`crate::controller::agentrun::warm::push_claim`)
/// and which each pool's `<pool>-runners` NetworkPolicy admits on
/// [`paddock_crds::runner::CLAIM_PORT`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimPushFrom {
    /// The operator's namespace (`POD_NAMESPACE`).
    pub namespace: String,
    /// Labels that select the operator's pods there (`--operator-pod-selector`, `k=v,k2=v2`).
    pub pod_labels: std::collections::BTreeMap<String, String>,
}

impl ClaimPushFrom {
    /// Parses `selector`, an equality-based label selector `k=v[,k2=v2…]` (the form of
    /// `kubectl -l`; `==` and set-based requirements are not taken), for pods in `namespace`.
    ///
    /// # Errors
    /// A message naming the requirement that is not `key=value`, or an empty selector (which
    /// would admit every pod of the namespace).
    pub fn parse(namespace: &str, selector: &str) -> std::result::Result<Self, String> {
        let mut pod_labels = std::collections::BTreeMap::new();
        for req in selector.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            match req.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() && !v.starts_with('=') && !k.ends_with('!') => {
                    pod_labels.insert(k.trim().to_string(), v.trim().to_string());
                }
                _ => return Err(format!("--operator-pod-selector: {req:?} is not key=value")),
            }
        }
        if pod_labels.is_empty() {
            return Err("--operator-pod-selector is empty: it would admit every pod of the namespace".into());
        }
        if namespace.is_empty() {
            return Err("--operator-pod-selector needs POD_NAMESPACE (the operator's namespace)".into());
        }
        Ok(ClaimPushFrom {
            namespace: namespace.into(),
            pod_labels,
        })
    }
}

/// Log followers running at once unless `--max-log-followers` says otherwise.
pub const DEFAULT_MAX_LOG_FOLLOWERS: usize = 256;

impl Context {
    /// Builds a context; `runs` is the AgentRun controller's store.
    pub fn new(client: Client, state: Arc<State>, runs: Store<AgentRun>, reporter: Reporter) -> Self {
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            state,
            runs,
            admissions: Admissions::default(),
            pool_status_writes: std::sync::Mutex::new(HashMap::new()),
            followers: Followers::new(DEFAULT_MAX_LOG_FOLLOWERS),
            requests: Requests::default(),
            deliveries: Default::default(),
            pods: None,
            kueue: false,
            signer: Arc::new(paddock_crds::verdict::Signer::generate().expect("the system's random source works")),
            egress: std::sync::Mutex::new(HashMap::new()),
            egress_applying: std::sync::Mutex::new(HashMap::new()),
            evidence: Default::default(),
            step_events: false,
            console_url: None,
            forge_retry: std::sync::Mutex::new(HashMap::new()),
            claim_push: None,
        }
    }

    /// The verdict public key runner pods get (base64 of the 32 raw bytes).
    pub fn verdict_key(&self) -> String {
        self.signer.public_key_b64()
    }

    /// What [`Context::egress`] holds for pool `key` (`namespace/name`).
    pub fn egress_applied(&self, key: &str) -> Option<EgressApplied> {
        self.egress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// Forgets what was applied for pool `key` (its objects changed or were deleted).
    pub fn forget_egress(&self, key: &str) {
        self.egress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }

    /// The lock of [`Context::egress_applying`] for pool `key` (`namespace/name`), created on
    /// first use.
    pub fn egress_apply_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.egress_applying
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    /// Records in [`Context::egress`] what was applied for pool `key`.
    pub fn set_egress_applied(&self, key: &str, applied: EgressApplied) {
        self.egress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key.to_string(), applied);
    }

    /// How long pool `key` must wait before its next status write, at most one per
    /// `interval`; zero means write now (and the write is recorded as done now).
    pub fn pool_status_wait(&self, key: &str, interval: std::time::Duration) -> std::time::Duration {
        let mut last = self
            .pool_status_writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        next_write_wait(&mut last, key, interval, std::time::Instant::now())
    }

    /// Publishes a Kubernetes Event on `obj`; failures are logged, never fatal (an Event is
    /// evidence, not state).
    pub async fn publish<K: Resource<DynamicType = ()>>(&self, obj: &K, type_: EventType, reason: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(paddock_crds::events::truncate(&note, 1000)),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "failed to publish event");
        }
    }
}

/// With `last` the time of each key's last write: how long `key` must wait at `now` before its
/// next write, at most one per `interval`; zero means "write now", and `now` is recorded.
/// Pure (given `now`).
pub fn next_write_wait(
    last: &mut HashMap<String, std::time::Instant>,
    key: &str,
    interval: std::time::Duration,
    now: std::time::Instant,
) -> std::time::Duration {
    match last.get(key) {
        Some(t) if now.duration_since(*t) < interval => interval - now.duration_since(*t),
        _ => {
            last.insert(key.to_string(), now);
            std::time::Duration::ZERO
        }
    }
}

/// A context for unit tests: its client's requests are never answered (a task that calls the
/// API waits until it is stopped), and its AgentRun store is empty. Needs a Tokio runtime (the
/// client spawns its request buffer).
#[cfg(test)]
pub(crate) fn test_context() -> Context {
    let svc = tower::service_fn(|_req: http::Request<kube::client::Body>| {
        std::future::pending::<Result<http::Response<kube::client::Body>, std::convert::Infallible>>()
    });
    let (store, _writer) = kube::runtime::reflector::store::<AgentRun>();
    Context::new(Client::new(svc, "default"), Arc::default(), store, "test".into())
}

/// A context for unit tests whose client talks to a fake API server: a GET of a path in
/// `objects` (e.g. `/api/v1/namespaces/ns/pods/p`) gets that object's JSON; every other request
/// gets 404 NotFound and is recorded, as `METHOD path`, in the returned list.
#[cfg(test)]
pub(crate) fn test_context_with(
    objects: Vec<(String, serde_json::Value)>,
) -> (Context, Arc<std::sync::Mutex<Vec<String>>>) {
    let other = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = other.clone();
    let objects = Arc::new(objects.into_iter().collect::<HashMap<_, _>>());
    let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let path = req.uri().path().to_string();
        // A container's log is keyed `<path>#<container>` when the test gives one.
        let container = req
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("container=")))
            .map(|c| format!("{path}#{c}"));
        let found = (req.method() == http::Method::GET)
            .then(|| container.and_then(|k| objects.get(&k)).or_else(|| objects.get(&path)))
            .flatten();
        let (code, body) = match found {
            // Text (a log) as it is; objects as JSON.
            Some(serde_json::Value::String(text)) => (200, text.clone().into_bytes()),
            Some(obj) => (200, serde_json::to_vec(obj).unwrap()),
            None => {
                seen.lock().unwrap().push(format!("{} {path}", req.method()));
                let status = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404, "message": format!("{path} not found")});
                (404, serde_json::to_vec(&status).unwrap())
            }
        };
        let resp = http::Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(kube::client::Body::from(body))
            .unwrap();
        std::future::ready(Ok::<_, std::convert::Infallible>(resp))
    });
    let (store, _writer) = kube::runtime::reflector::store::<AgentRun>();
    let ctx = Context::new(Client::new(svc, "default"), Arc::default(), store, "test".into());
    (ctx, other)
}

/// One write a fake API server received: method, path and JSON body.
#[cfg(test)]
pub(crate) type Written = (String, String, serde_json::Value);

/// A context whose client talks to a fake API server that also records what is written: a GET
/// of a path in `objects` gets that object (others 404); a PATCH of `<path>/status` for an
/// object in `objects` is answered with that object, a PATCH (server-side apply) of a ConfigMap
/// with its own body; every request other than a GET is
/// recorded with its JSON body (`Null` when it has none) in the returned list, in order.
#[cfg(test)]
pub(crate) fn test_context_recording(
    objects: Vec<(String, serde_json::Value)>,
) -> (Context, Arc<std::sync::Mutex<Vec<Written>>>) {
    fake_api_server(objects, false)
}

/// [`test_context_recording`] that records the GETs too (body `Null`), in order with the writes.
#[cfg(test)]
pub(crate) fn test_context_recording_reads(
    objects: Vec<(String, serde_json::Value)>,
) -> (Context, Arc<std::sync::Mutex<Vec<Written>>>) {
    fake_api_server(objects, true)
}

#[cfg(test)]
fn fake_api_server(
    objects: Vec<(String, serde_json::Value)>,
    record_reads: bool,
) -> (Context, Arc<std::sync::Mutex<Vec<Written>>>) {
    let written = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = written.clone();
    let objects = Arc::new(objects.into_iter().collect::<HashMap<_, _>>());
    let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let (seen, objects) = (seen.clone(), objects.clone());
        async move {
            let method = req.method().clone();
            let path = req.uri().path().to_string();
            let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
            let found = if method == http::Method::GET {
                if record_reads {
                    seen.lock()
                        .unwrap()
                        .push((method.to_string(), path.clone(), serde_json::Value::Null));
                }
                objects.get(&path).cloned()
            } else {
                let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
                seen.lock()
                    .unwrap()
                    .push((method.to_string(), path.clone(), body.clone()));
                let applied_configmap =
                    (method == http::Method::PATCH && path.contains("/configmaps/")).then_some(body);
                path.strip_suffix("/status")
                    .filter(|_| method == http::Method::PATCH)
                    .and_then(|p| objects.get(p).cloned())
                    .or(applied_configmap)
            };
            let (code, body) = match found {
                Some(obj) => (200, obj),
                None => (
                    404,
                    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "NotFound", "code": 404, "message": format!("{path} not found")}),
                ),
            };
            let resp = http::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap();
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let (store, _writer) = kube::runtime::reflector::store::<AgentRun>();
    let ctx = Context::new(Client::new(svc, "default"), Arc::default(), store, "test".into());
    (ctx, written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn one_write_per_interval_and_key() {
        let mut last = HashMap::new();
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        assert_eq!(next_write_wait(&mut last, "ns/a", s, t0), Duration::ZERO);
        // Inside the interval: wait for its end, and the write is not recorded.
        assert_eq!(
            next_write_wait(&mut last, "ns/a", s, t0 + Duration::from_millis(300)),
            Duration::from_millis(700)
        );
        assert_eq!(
            next_write_wait(&mut last, "ns/a", s, t0 + Duration::from_millis(900)),
            Duration::from_millis(100)
        );
        // Another pool is not held back.
        assert_eq!(
            next_write_wait(&mut last, "ns/b", s, t0 + Duration::from_millis(300)),
            Duration::ZERO
        );
        // After the interval: write, and the next interval starts then.
        let t1 = t0 + Duration::from_millis(1000);
        assert_eq!(next_write_wait(&mut last, "ns/a", s, t1), Duration::ZERO);
        assert_eq!(
            next_write_wait(&mut last, "ns/a", s, t1 + Duration::from_millis(10)),
            Duration::from_millis(990)
        );
    }
}

/// What this process applied for one pool ([`Context::egress`]; written by
/// [`crate::controller::egress::reconcile_egress`]).
#[derive(Clone, Debug)]
pub struct EgressApplied {
    /// Fingerprint of the applied objects.
    pub fingerprint: u64,
    /// The runner pods' uplink they give.
    pub uplink: paddock_crds::egress::PodUplink,
    /// Whether the Deployment had an available pod when last read.
    pub ready: bool,
}
