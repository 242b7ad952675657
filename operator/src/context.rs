//! What every reconcile gets: the client, the events recorder, the metrics, the caches and the
//! operator's in-memory bookkeeping (log followers, admissions not yet visible in the cache).

use crate::metrics::Metrics;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Client, Resource};
use paddock_crds::AgentRun;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Field manager of the AgentRun controller's server-side applies (pods, gates, status).
pub const MANAGER_AGENTRUN: &str = "paddock.dev/agentrun";
/// Field manager of the log followers' `status.progress` applies.
pub const MANAGER_PROGRESS: &str = "paddock.dev/agentrun-progress";
/// Field manager of the ApprovalGate controller.
pub const MANAGER_GATE: &str = "paddock.dev/approvalgate";
/// Field manager of the RunnerPool controller.
pub const MANAGER_POOL: &str = "paddock.dev/runnerpool";

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
    /// Cache of all AgentRuns (the controller's reflector store), for queue decisions.
    pub runs: Store<AgentRun>,
    /// Runs admitted (pod created) that the cache may not show yet, keyed `namespace/name`;
    /// the mutex also serializes admission decisions so `maxConcurrentRuns` is never exceeded.
    pub admissions: Mutex<HashSet<String>>,
    /// Running log followers, keyed by run UID.
    pub followers: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    /// The log lines each follower has read so far, keyed `namespace/pod` (bounded by
    /// [`FOLLOW_LOG_MAX_BYTES`]): what is left of an attempt whose pod was deleted before its
    /// log could be fetched.
    pub follow_logs: std::sync::Mutex<HashMap<String, String>>,
    /// Kueue integration on (`--kueue`): runs labelled `kueue.x-k8s.io/queue-name` wait for
    /// their Workload's admission.
    pub kueue: bool,
}

/// Most bytes of log text kept per followed pod.
pub const FOLLOW_LOG_MAX_BYTES: usize = 1 << 20;

impl Context {
    /// Builds a context; `runs` is the AgentRun controller's store.
    pub fn new(client: Client, state: Arc<State>, runs: Store<AgentRun>, reporter: Reporter) -> Self {
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            state,
            runs,
            admissions: Mutex::new(HashSet::new()),
            followers: Mutex::new(HashMap::new()),
            follow_logs: std::sync::Mutex::new(HashMap::new()),
            kueue: false,
        }
    }

    /// Appends `line` to the followed log of `key` (`namespace/pod`), up to
    /// [`FOLLOW_LOG_MAX_BYTES`]; the runner's final `result` line is always kept.
    pub fn append_follow_log(&self, key: &str, line: &str) {
        if let Ok(mut logs) = self.follow_logs.lock() {
            let buf = logs.entry(key.to_string()).or_default();
            if buf.len() + line.len() < FOLLOW_LOG_MAX_BYTES || line.contains("\"type\":\"result\"") {
                buf.push_str(line);
                buf.push('\n');
            }
        }
    }

    /// Takes (removes) the followed log of `key` (`namespace/pod`).
    pub fn take_follow_log(&self, key: &str) -> Option<String> {
        self.follow_logs.lock().ok()?.remove(key)
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
