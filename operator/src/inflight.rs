//! What this operator process keeps in memory between reconciles, each as a named component
//! of [`crate::context::Context`]: the AgentRun controller's admissions ([`Admissions`]), its
//! log followers ([`Followers`]), the approval requests they read ([`Requests`]) and the messages
//! they read as delivered ([`Deliveries`]). None of it is state the cluster lacks: a restarted
//! operator rebuilds it from the API (a run's pod, its log) and loses only time.

use futures::channel::mpsc::UnboundedSender;
use kube::runtime::reflector::ObjectRef;
use paddock_crds::AgentRun;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, MutexGuard, PoisonError};
use tokio::sync::{Mutex, OwnedMutexGuard, Semaphore};

/// Admission to a RunnerPool: one lock per pool with a `maxConcurrentRuns`, held from the
/// queue's count until the run's pod exists (so the limit is never exceeded), the runs admitted
/// that the controller's cache may not show yet, and the warm pods claims of this process are
/// trying right now ([`Admissions::reserve`]).
#[derive(Default)]
pub struct Admissions {
    /// Runs admitted (pod created) that the cache may not show yet, keyed `namespace/name`.
    admitted: Mutex<HashSet<String>>,
    /// One lock per pool, keyed `namespace/name`. Runs of different pools, and of pools with
    /// neither a limit nor warm pods, create their pods concurrently.
    locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Warm pods (by UID) a claim of this process is patching now.
    claiming: Arc<std::sync::Mutex<HashSet<String>>>,
}

/// A warm pod reserved by [`Admissions::reserve`]; dropping it frees the pod for other claims.
pub struct Reservation {
    set: Arc<std::sync::Mutex<HashSet<String>>>,
    uid: String,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.uid);
    }
}

impl Admissions {
    /// Waits for pool `pool` (`namespace/name`) and holds its admission until the guard drops.
    pub async fn lock(&self, pool: &str) -> OwnedMutexGuard<()> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(pool.to_string())
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    /// The runs counted as admitted, after forgetting those the cache now shows with a pod
    /// (`shows_pod(key)`) or no longer holds.
    pub async fn counted(&self, shows_pod: impl Fn(&str) -> bool) -> HashSet<String> {
        let mut admitted = self.admitted.lock().await;
        admitted.retain(|k| !shows_pod(k));
        admitted.clone()
    }

    /// Reserves warm pod `uid` for one claim of this process; `None` when another claim holds
    /// it. Not a lock: the claim's PATCH, guarded by the pod's `resourceVersion`, is what keeps
    /// a pod to one run. Concurrent claims of a burst use it to try different pods first rather
    /// than all patching the oldest (one wins, the others get 409 and try again).
    pub fn reserve(&self, uid: &str) -> Option<Reservation> {
        let mut set = self.claiming.lock().unwrap_or_else(PoisonError::into_inner);
        set.insert(uid.to_string()).then(|| Reservation {
            set: self.claiming.clone(),
            uid: uid.to_string(),
        })
    }

    /// Counts run `key` (`namespace/name`) as admitted until the cache shows its pod.
    pub async fn admit(&self, key: String) {
        self.admitted.lock().await.insert(key);
    }
}

/// The AgentRun controller's log followers: one task per running run (by UID), at most as
/// many as there are permits (`--max-log-followers`), the runs whose follower read the
/// runner's `result` line, and the log each follower read so far (bounded by
/// [`Followers::LOG_MAX_BYTES`]).
pub struct Followers {
    /// Running followers, keyed by run UID.
    pub tasks: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    /// Permits: a follower runs only with one.
    pub slots: Arc<Semaphore>,
    /// Runs (by UID) whose follower read the runner's `result` line: the log is complete, no
    /// new follower starts for them (removed with the follower when the attempt ends).
    done: std::sync::Mutex<HashSet<String>>,
    /// The log lines each follower has read so far, keyed `namespace/pod`: what is left of an
    /// attempt whose pod was deleted before its log could be fetched.
    logs: std::sync::Mutex<HashMap<String, FollowedLog>>,
}

/// What a log follower read of one pod's `agent` container.
#[derive(Debug, Default, PartialEq)]
pub struct FollowedLog {
    /// The lines read, each ending in a newline.
    pub text: String,
    /// Whether lines were dropped past [`Followers::LOG_MAX_BYTES`].
    pub truncated: bool,
}

impl FollowedLog {
    /// Whether this is the container's whole log: nothing dropped, and its last line is the
    /// runner's `result`, which the runner prints last. The run's end then takes it instead of
    /// reading the log again. (An agent can print a `result` line of its own; all it can lose
    /// so is the rest of its own, agent-reported, events.)
    pub fn whole(&self) -> bool {
        !self.truncated
            && self
                .text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.contains(RESULT_TAG))
    }
}

/// How a `result` line shows in the runner's compact JSON.
const RESULT_TAG: &str = "\"type\":\"result\"";

impl Followers {
    /// Most bytes of log text kept per followed pod.
    pub const LOG_MAX_BYTES: usize = 1 << 20;

    /// No follower yet, `slots` permits.
    pub fn new(slots: usize) -> Self {
        Followers {
            tasks: Mutex::default(),
            slots: Arc::new(Semaphore::new(slots)),
            done: std::sync::Mutex::default(),
            logs: std::sync::Mutex::default(),
        }
    }

    /// The runs whose log is complete, locked (a poisoned lock is taken over: the set stays
    /// usable).
    pub fn done(&self) -> MutexGuard<'_, HashSet<String>> {
        self.done.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `line` to the followed log of `key` (`namespace/pod`), up to
    /// [`Followers::LOG_MAX_BYTES`]; the runner's final `result` line is always kept.
    pub fn append_log(&self, key: &str, line: &str) {
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        let buf = logs.entry(key.to_string()).or_default();
        if buf.text.len() + line.len() < Self::LOG_MAX_BYTES || line.contains(RESULT_TAG) {
            buf.text.push_str(line);
            buf.text.push('\n');
        } else {
            buf.truncated = true;
        }
    }

    /// Takes (removes) the followed log of `key` (`namespace/pod`).
    pub fn take_log(&self, key: &str) -> Option<FollowedLog> {
        self.logs.lock().unwrap_or_else(PoisonError::into_inner).remove(key)
    }
}

/// A runner's request for an in-run approval, as a log follower read it from its
/// `approval_requested` event (agent-reported: the reconcile checks it before it raises a gate).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Request {
    /// `push` or `tool-<n>`.
    pub id: String,
    /// `BeforePush` or `ToolUse`.
    pub stage: String,
    /// One line for the approver.
    pub summary: String,
    /// ToolUse: the tool.
    pub tool: Option<String>,
    /// ToolUse: its input.
    pub input: Option<String>,
    /// BeforePush: the commit.
    pub commit: Option<String>,
    /// BeforePush: the diffstat.
    pub diffstat: Option<String>,
    /// Question: what the agent asks.
    pub question: Option<String>,
    /// Question: the answers it offers.
    pub options: Vec<String>,
    /// Plan: the agent's plan.
    pub plan: Option<String>,
}

/// Most requests kept per run: a runner asks one at a time and waits, so more are noise
/// (a hostile agent printing request events); the oldest are dropped.
pub const MAX_REQUESTS_PER_RUN: usize = 16;

/// A request of a run not raised yet: the pod that asked, the request, when it was first read.
type Pending = (String, Request, std::time::Instant);

/// The approval requests the log followers read, per run (by UID) with the pod that asked,
/// until the AgentRun reconcile has raised their gates; reading one wakes the run's reconcile.
#[derive(Default)]
pub struct Requests {
    /// Per run UID: `(pod, request, when it was first read)`.
    pending: std::sync::Mutex<HashMap<String, Vec<Pending>>>,
    wake: Option<UnboundedSender<ObjectRef<AgentRun>>>,
}

impl Requests {
    /// No request yet; `wake` (the AgentRun controller's `reconcile_on` stream) is told of each
    /// run with a new request.
    pub fn new(wake: Option<UnboundedSender<ObjectRef<AgentRun>>>) -> Self {
        Requests {
            pending: Default::default(),
            wake,
        }
    }

    /// Records `req`, asked by `pod` of `run` (a request with the same id and pod is kept once),
    /// and wakes the run's reconcile.
    pub fn raise(&self, run: &AgentRun, pod: &str, req: Request) {
        let Some(uid) = run.metadata.uid.clone() else { return };
        {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            let list = pending.entry(uid).or_default();
            if list.iter().any(|(p, r, _)| p == pod && r.id == req.id) {
                return;
            }
            list.push((pod.to_string(), req, std::time::Instant::now()));
            if list.len() > MAX_REQUESTS_PER_RUN {
                list.remove(0);
            }
        }
        if let Some(wake) = &self.wake {
            let _ = wake.unbounded_send(ObjectRef::from_obj(run));
        }
    }

    /// The requests of run `uid` not raised yet: `(pod, request)`, oldest first.
    pub fn pending(&self, uid: &str) -> Vec<(String, Request)> {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(uid)
            .map(|list| list.iter().map(|(p, r, _)| (p.clone(), r.clone())).collect())
            .unwrap_or_default()
    }

    /// Forgets request `id` of `pod` of run `uid` (its gate is raised, or it was ignored).
    pub fn done(&self, uid: &str, pod: &str, id: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = pending.get_mut(uid) {
            list.retain(|(p, r, _)| !(p == pod && r.id == id));
            if list.is_empty() {
                pending.remove(uid);
            }
        }
    }

    /// Whether request `id` of `pod` of run `uid` was first read more than `patience` ago (a
    /// request no longer pending is not).
    pub fn waited(&self, uid: &str, pod: &str, id: &str, patience: std::time::Duration) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(uid)
            .and_then(|list| list.iter().find(|(p, r, _)| p == pod && r.id == id))
            .is_some_and(|(_, _, since)| since.elapsed() > patience)
    }

    /// Forgets every request of run `uid` (its attempt ended, or it was deleted).
    pub fn forget(&self, uid: &str) {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_admission_is_counted_until_the_cache_shows_the_pod() {
        let a = Admissions::default();
        a.admit("ns/r1".into()).await;
        a.admit("ns/r2".into()).await;
        assert_eq!(a.counted(|_| false).await.len(), 2);
        let left = a.counted(|k| k == "ns/r1").await;
        assert_eq!(left, HashSet::from(["ns/r2".to_string()]));
    }

    #[test]
    fn a_reserved_warm_pod_is_free_again_once_its_claim_lets_go() {
        let a = Admissions::default();
        let first = a.reserve("pod-a").expect("free");
        assert!(a.reserve("pod-a").is_none(), "held by the first claim");
        let other = a.reserve("pod-b");
        assert!(other.is_some());
        drop(first);
        assert!(a.reserve("pod-a").is_some(), "freed when the first claim dropped it");
    }

    #[tokio::test]
    async fn one_pool_admits_one_run_at_a_time_and_others_go_on() {
        let a = Arc::new(Admissions::default());
        let held = a.lock("ns/p").await;
        let other = tokio::time::timeout(std::time::Duration::from_millis(50), a.lock("ns/q")).await;
        assert!(other.is_ok(), "another pool's admission waits for nothing");
        let same = tokio::time::timeout(std::time::Duration::from_millis(50), a.lock("ns/p")).await;
        assert!(same.is_err(), "the same pool's admission waits for the first");
        drop(held);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), a.lock("ns/p"))
                .await
                .is_ok()
        );
    }

    #[test]
    fn a_followed_log_is_bounded_but_keeps_the_result() {
        let f = Followers::new(1);
        let big = "x".repeat(Followers::LOG_MAX_BYTES - 10);
        f.append_log("ns/p", &big);
        f.append_log("ns/p", "one more line that does not fit");
        f.append_log("ns/p", r#"{"type":"result"}"#);
        let log = f.take_log("ns/p").unwrap();
        assert!(!log.text.contains("one more line"));
        assert!(log.text.ends_with("{\"type\":\"result\"}\n"));
        assert!(
            log.truncated && !log.whole(),
            "a line was dropped: the end reads the log"
        );
        assert_eq!(f.take_log("ns/p"), None);
    }

    #[test]
    fn a_followed_log_is_whole_only_up_to_the_result() {
        let f = Followers::new(1);
        f.append_log(
            "ns/p",
            r#"{"v":1,"seq":1,"type":"step","step":"agent","status":"started"}"#,
        );
        assert!(!f.take_log("ns/p").unwrap().whole(), "no result yet");
        f.append_log(
            "ns/p",
            r#"{"v":1,"seq":1,"type":"step","step":"agent","status":"started"}"#,
        );
        f.append_log("ns/p", r#"{"v":1,"seq":2,"type":"result","outcome":"Succeeded"}"#);
        assert!(f.take_log("ns/p").unwrap().whole());
    }

    #[test]
    fn a_request_is_kept_once_until_raised_and_wakes_its_run() {
        let (tx, mut rx) = futures::channel::mpsc::unbounded();
        let r = Requests::new(Some(tx));
        let mut run = AgentRun::new(
            "r",
            serde_json::from_value(
                serde_json::json!({"repo": {"url": "https://x/r.git"}, "agent": {"name": "shell"}, "prompt": "p"}),
            )
            .unwrap(),
        );
        run.metadata.namespace = Some("ns".into());
        run.metadata.uid = Some("u".into());
        let req = Request {
            id: "push".into(),
            stage: "BeforePush".into(),
            ..Default::default()
        };
        r.raise(&run, "r-1", req.clone());
        r.raise(&run, "r-1", req.clone());
        assert_eq!(r.pending("u"), vec![("r-1".to_string(), req)]);
        assert_eq!(rx.try_recv().map(|o| o.name).ok(), Some("r".to_string()));
        assert!(!r.waited("u", "r-1", "push", std::time::Duration::from_secs(60)));
        assert!(r.waited("u", "r-1", "push", std::time::Duration::ZERO));
        r.done("u", "r-1", "push");
        assert!(r.pending("u").is_empty());
        for n in 0..(MAX_REQUESTS_PER_RUN + 4) {
            r.raise(
                &run,
                "r-1",
                Request {
                    id: format!("tool-{n}"),
                    ..Default::default()
                },
            );
        }
        let kept = r.pending("u");
        assert_eq!(kept.len(), MAX_REQUESTS_PER_RUN);
        assert_eq!(kept[0].1.id, "tool-4");
        r.forget("u");
        assert!(r.pending("u").is_empty());
    }
}

/// A message the runner reported delivered (`message_delivered` on its log): the agent's turn,
/// the attempt whose pod delivered it, and when the follower read it.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// The agent's turn at delivery (agent-reported).
    pub turn: u32,
    /// The attempt of the pod that delivered it.
    pub attempt: u32,
    /// When the follower read the report.
    pub at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
}

/// Most delivery reports kept per run: a pod takes at most this many messages
/// ([`crate::controller::runmessage::MAX_MESSAGES_PER_POD`]), and a hostile agent may print any
/// number of reports.
pub const MAX_DELIVERIES_PER_RUN: usize = 32;
/// How long a report is kept for the RunMessage controller (it reads one within seconds; a
/// report of a message that does not exist would otherwise stay).
pub const DELIVERY_TTL: std::time::Duration = std::time::Duration::from_secs(900);

/// Messages the log followers read as delivered, per run (by the run's UID, so one run's agent
/// cannot report another run's messages) and by RunMessage UID, until the RunMessage
/// controller records them ([`crate::controller::runmessage`]). Bounded per run
/// ([`MAX_DELIVERIES_PER_RUN`]) and in time ([`DELIVERY_TTL`]).
#[derive(Default)]
pub struct Deliveries {
    by_run: std::sync::Mutex<HashMap<String, RunReports>>,
}

/// One run's unread delivery reports: by RunMessage UID, the report and when it was read.
type RunReports = HashMap<String, (Delivery, std::time::Instant)>;

impl Deliveries {
    /// Records that run `run_uid`'s runner delivered message `uid` (the first report counts);
    /// beyond [`MAX_DELIVERIES_PER_RUN`] unread reports of that run, new ones are dropped.
    /// Reports older than [`DELIVERY_TTL`] are forgotten.
    pub fn record(&self, run_uid: &str, uid: &str, delivery: Delivery) {
        if run_uid.is_empty() || uid.is_empty() || uid.len() > 64 {
            return;
        }
        let mut map = self.by_run.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, reports| {
            reports.retain(|_, (_, at)| at.elapsed() < DELIVERY_TTL);
            !reports.is_empty()
        });
        let reports = map.entry(run_uid.to_string()).or_default();
        if reports.len() < MAX_DELIVERIES_PER_RUN || reports.contains_key(uid) {
            reports
                .entry(uid.to_string())
                .or_insert((delivery, std::time::Instant::now()));
        }
    }

    /// The delivery of message `uid` reported by run `run_uid`'s runner, if one was read; it
    /// stays until [`Deliveries::forget`] or its TTL.
    pub fn get(&self, run_uid: &str, uid: &str) -> Option<Delivery> {
        self.by_run
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(run_uid)?
            .get(uid)
            .map(|(d, _)| d.clone())
    }

    /// Forgets message `uid` of run `run_uid` (its status says where it is).
    pub fn forget(&self, run_uid: &str, uid: &str) {
        let mut map = self.by_run.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(reports) = map.get_mut(run_uid) {
            reports.remove(uid);
            if reports.is_empty() {
                map.remove(run_uid);
            }
        }
    }
}

#[cfg(test)]
mod delivery_tests {
    use super::*;

    fn d(turn: u32) -> Delivery {
        Delivery {
            turn,
            attempt: 1,
            at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        }
    }

    #[test]
    fn reports_are_per_run_bounded_and_the_first_counts() {
        let all = Deliveries::default();
        all.record("run-a", "m1", d(1));
        all.record("run-a", "m1", d(7));
        assert_eq!(all.get("run-a", "m1"), Some(d(1)), "the first report counts");
        assert_eq!(
            all.get("run-b", "m1"),
            None,
            "another run's agent reported nothing of it"
        );
        // A flood from one run's agent fills that run's share only.
        for i in 0..1000 {
            all.record("run-a", &format!("fake-{i}"), d(0));
        }
        all.record("run-b", "m2", d(2));
        assert_eq!(all.get("run-b", "m2"), Some(d(2)));
        assert_eq!(all.get("run-a", "fake-999"), None, "beyond the cap");
        all.forget("run-b", "m2");
        assert_eq!(all.get("run-b", "m2"), None);
    }
}
