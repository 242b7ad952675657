//! What this operator process keeps in memory between reconciles, each as a named component
//! of [`crate::context::Context`]: the AgentRun controller's admissions ([`Admissions`]) and
//! its log followers ([`Followers`]). None of it is state the cluster lacks: a restarted
//! operator rebuilds it from the API (a run's pod, its log) and loses only time.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, MutexGuard, PoisonError};
use tokio::sync::{Mutex, OwnedMutexGuard, Semaphore};

/// Admission to a RunnerPool: one lock per pool, held from the queue's count until the run's
/// pod exists (so `maxConcurrentRuns` is never exceeded and a pool's warm pods are claimed one
/// run at a time), and the runs admitted that the controller's cache may not show yet.
#[derive(Default)]
pub struct Admissions {
    /// Runs admitted (pod created) that the cache may not show yet, keyed `namespace/name`.
    admitted: Mutex<HashSet<String>>,
    /// One lock per pool, keyed `namespace/name`. Runs of different pools, and of pools with
    /// neither a limit nor warm pods, create their pods concurrently.
    locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
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
    logs: std::sync::Mutex<HashMap<String, String>>,
}

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
        if buf.len() + line.len() < Self::LOG_MAX_BYTES || line.contains("\"type\":\"result\"") {
            buf.push_str(line);
            buf.push('\n');
        }
    }

    /// Takes (removes) the followed log of `key` (`namespace/pod`).
    pub fn take_log(&self, key: &str) -> Option<String> {
        self.logs.lock().unwrap_or_else(PoisonError::into_inner).remove(key)
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
        assert!(!log.contains("one more line"));
        assert!(log.ends_with("{\"type\":\"result\"}\n"));
        assert_eq!(f.take_log("ns/p"), None);
    }
}
