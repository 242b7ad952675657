//! Leader election on a `coordination.k8s.io/v1` Lease, after client-go's `leaderelection`
//! package, so that two or more replicas can run and only one reconciles.
//!
//! Semantics (client-go's, with Paddock's timings):
//! - The Lease `paddock-operator` in the operator's namespace names the leader
//!   (`spec.holderIdentity` = `<pod name>_<per-process token>`, see [`identity`]). The leader
//!   renews it every [`RENEW_INTERVAL`] (3 s); standbys read it every [`RETRY_PERIOD`] (2 s).
//! - A standby takes the Lease over when it is free (no holder) or when the record has not
//!   changed for `leaseDurationSeconds` ([`LEASE_DURATION`], 10 s) **as measured by the
//!   standby's own clock** since it first saw that record — never by comparing `renewTime`
//!   with its clock, so clock skew between nodes cannot shorten a lease.
//! - Every write (take-over and renewal) is an update carrying the `resourceVersion` just
//!   read: of two replicas racing for the same record, exactly one wins and the other gets
//!   `409 Conflict`.
//! - Stepping down is exiting: a leader that cannot renew within [`RENEW_DEADLINE`] (7 s)
//!   of its last successful renewal, or that finds another holder, exits the process with
//!   status 1 so that Kubernetes restarts it as a fresh standby. That deadline is 5 s shorter
//!   than the lease, so the old leader is gone before any standby may take over.
//! - On a graceful shutdown (SIGTERM, after the controllers drained) the leader releases the
//!   Lease (empty holder), so a standby takes over within one retry period instead of 15 s.
//!
//! The decision is the pure function [`decide`]; the unit tests below prove it.

use crate::context::State;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Name of the Lease the replicas elect a leader on.
pub const LEASE_NAME: &str = "paddock-operator";
/// How long a record stays valid without a renewal (`spec.leaseDurationSeconds`). 10 s, not
/// client-go's 15 s: a crashed leader is replaced within 12 s (lease + one standby read).
pub const LEASE_DURATION: Duration = Duration::from_secs(10);
/// How often the leader renews the Lease.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(3);
/// The leader exits when it has not renewed for this long (must be below [`LEASE_DURATION`]).
pub const RENEW_DEADLINE: Duration = Duration::from_secs(7);
/// How often a standby reads the Lease, and how soon a failed renewal is retried.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// Leader-election flags of `paddock-operator run`.
#[derive(clap::Args, Debug, Clone)]
pub struct ElectionArgs {
    /// Elect a leader on the Lease `paddock-operator` before running the controllers (needed
    /// to run more than one replica). Off: this replica runs the controllers at once.
    #[arg(long, env = "PADDOCK_LEADER_ELECT", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    /// Namespace of the Lease (default: POD_NAMESPACE, else the service account's namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
}

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// `--leader-elect` without a namespace for the Lease.
    #[error("--leader-elect needs --leader-election-namespace (or POD_NAMESPACE)")]
    NoNamespace,
    /// `--leader-elect` without an identity (POD_NAME or the host name).
    #[error("--leader-elect needs POD_NAME (or a host name) as this replica's identity")]
    NoIdentity,
}

/// What to do with the Lease as just read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAction {
    /// The Lease does not exist: create it naming us.
    Create,
    /// We hold it: renew it (same acquire time and transitions).
    Renew,
    /// It is free or its record expired: take it over (`leaseTransitions` + 1).
    TakeOver,
    /// Another replica holds a live record; it expires after this long unless renewed.
    Wait(Duration),
}

/// Decides what `me` does with `lease` (None: it does not exist), whose current record this
/// replica has seen unchanged for `unchanged_for` (by its own clock).
///
/// A holder of `""` or none means free; a missing `leaseDurationSeconds` counts as
/// [`LEASE_DURATION`]; a negative one as 0.
pub fn decide(lease: Option<&LeaseSpec>, exists: bool, me: &str, unchanged_for: Duration) -> LeaseAction {
    if !exists {
        return LeaseAction::Create;
    }
    let holder = lease.and_then(|s| s.holder_identity.as_deref()).unwrap_or("");
    if holder.is_empty() {
        return LeaseAction::TakeOver;
    }
    if holder == me {
        return LeaseAction::Renew;
    }
    let duration = lease
        .and_then(|s| s.lease_duration_seconds)
        .map(|s| Duration::from_secs(s.max(0) as u64))
        .unwrap_or(LEASE_DURATION);
    if unchanged_for >= duration {
        LeaseAction::TakeOver
    } else {
        LeaseAction::Wait(duration - unchanged_for)
    }
}

/// The record `me` writes for `action` over the current one (`old`), stamped `now`.
pub fn next_spec(old: Option<&LeaseSpec>, me: &str, action: &LeaseAction, now: MicroTime) -> LeaseSpec {
    let transitions = old.and_then(|s| s.lease_transitions).unwrap_or(0);
    let (acquire_time, transitions) = match action {
        LeaseAction::Renew => (
            old.and_then(|s| s.acquire_time.clone()).or(Some(now.clone())),
            transitions,
        ),
        LeaseAction::Create => (Some(now.clone()), 0),
        _ => (Some(now.clone()), transitions + 1),
    };
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
        acquire_time,
        renew_time: Some(now),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

/// Outcome of one try.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempt {
    /// We hold the Lease now.
    Leading,
    /// Someone else does (or won the race); its record expires after at most this long.
    Standby(Duration),
}

/// One replica's view of the Lease: what it last saw and since when.
struct Elector {
    api: Api<Lease>,
    identity: String,
    /// The last record read (None: no spec) and the local instant it was first seen.
    observed: Option<(Option<LeaseSpec>, Instant)>,
}

/// This process's identity in the Lease: `<pod name>_<token>`, as controller-runtime does
/// (`hostname_uuid`). The pod name says which pod leads; the per-process token makes a container
/// restarted in the same pod a new candidate that waits like any standby, instead of resuming a
/// leadership its previous process held.
pub fn identity(pod: &str, token: &str) -> String {
    format!("{pod}_{token}")
}

/// The pod name in an identity written by [`identity`] (everything before the last `_`).
pub fn pod_of(identity: &str) -> &str {
    identity.rsplit_once('_').map_or(identity, |(pod, _)| pod)
}

/// A token unique to this process: a kernel random UUID (Linux), else the pid and start time.
fn process_token() -> String {
    if let Ok(uuid) = std::fs::read_to_string("/proc/sys/kernel/random/uuid") {
        let hex: String = uuid.chars().filter(char::is_ascii_hexdigit).take(12).collect();
        if !hex.is_empty() {
            return hex;
        }
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", std::process::id(), nanos)
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl Elector {
    fn observe(&mut self, spec: Option<&LeaseSpec>) -> Duration {
        match &self.observed {
            Some((seen, at)) if seen.as_ref() == spec => at.elapsed(),
            _ => {
                self.observed = Some((spec.cloned(), Instant::now()));
                Duration::ZERO
            }
        }
    }

    /// Reads the Lease and acts on [`decide`]: one acquire-or-renew step.
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let current = self.api.get_opt(LEASE_NAME).await?;
        let spec = current.as_ref().and_then(|l| l.spec.clone());
        let unchanged_for = self.observe(spec.as_ref());
        let action = decide(spec.as_ref(), current.is_some(), &self.identity, unchanged_for);
        if let LeaseAction::Wait(left) = action {
            return Ok(Attempt::Standby(left));
        }
        let new_spec = next_spec(spec.as_ref(), &self.identity, &action, now());
        let written = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(LEASE_NAME.to_string()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(new_spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                // The resourceVersion read above travels with the update: a concurrent
                // writer makes this fail with 409 instead of both replicas winning.
                lease.spec = Some(new_spec);
                self.api.replace(LEASE_NAME, &PostParams::default(), &lease).await
            }
        };
        match written {
            Ok(lease) => {
                self.observe(lease.spec.as_ref());
                Ok(Attempt::Leading)
            }
            // Lost the race (409 Conflict on update, AlreadyExists on create).
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Standby(LEASE_DURATION)),
            Err(e) => Err(e),
        }
    }
}

/// Holding the Lease: renews it in the background until [`Leadership::release`] or the end of
/// the process. Without `--leader-elect` it holds nothing.
pub struct Leadership {
    renewer: Option<tokio::task::JoinHandle<()>>,
    api: Option<Api<Lease>>,
    identity: String,
}

/// Waits until this replica leads: at once without `--leader-elect`, else until it holds the
/// Lease `paddock-operator` in the election namespace. Meanwhile the replica counts as ready
/// (`/readyz` 200, a standby) and `paddock_leader` is 0; once leading, `paddock_leader` is 1,
/// readiness waits for the controllers' caches again, and a background task renews the Lease
/// and **exits the process** (status 1) when it cannot.
///
/// # Errors
/// [`LeaderError`] when the namespace or the identity is unknown; API errors are retried.
pub async fn lead(client: Client, args: &ElectionArgs, state: Arc<State>) -> Result<Leadership, LeaderError> {
    if !args.leader_elect {
        state.metrics.leader.set(1);
        return Ok(Leadership {
            renewer: None,
            api: None,
            identity: String::new(),
        });
    }
    let namespace = args
        .leader_election_namespace
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .ok_or(LeaderError::NoNamespace)?;
    let pod = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .ok_or(LeaderError::NoIdentity)?;
    let identity = identity(&pod, &process_token());
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    let mut elector = Elector {
        api: api.clone(),
        identity: identity.clone(),
        observed: None,
    };
    state.metrics.leader.set(0);
    state.ready.store(true, Ordering::Relaxed);
    tracing::info!(lease = LEASE_NAME, %namespace, %identity, "standing by for leader election");
    let mut last_holder = String::new();
    loop {
        let started = Instant::now();
        match elector.try_acquire_or_renew().await {
            Ok(Attempt::Leading) => {
                tracing::info!(lease = LEASE_NAME, %identity, "acquired the lease; leading");
                state.ready.store(false, Ordering::Relaxed);
                state.metrics.leader.set(1);
                let renewer = tokio::spawn(renew(elector, started));
                return Ok(Leadership {
                    renewer: Some(renewer),
                    api: Some(api),
                    identity,
                });
            }
            Ok(Attempt::Standby(left)) => {
                let holder = elector
                    .observed
                    .as_ref()
                    .and_then(|(s, _)| s.as_ref()?.holder_identity.clone())
                    .unwrap_or_default();
                if holder != last_holder {
                    tracing::info!(lease = LEASE_NAME, %holder, pod = pod_of(&holder), "another replica leads; standing by");
                    last_holder = holder;
                }
                // Check again at the next retry, or right when the record expires.
                tokio::time::sleep(left.min(RETRY_PERIOD)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, lease = LEASE_NAME, "leader election: reading the lease failed");
                tokio::time::sleep(RETRY_PERIOD).await;
            }
        }
    }
}

/// The leader's renewal loop; never returns while leading: it exits the process when the
/// Lease is lost or cannot be renewed within [`RENEW_DEADLINE`] of the last renewal's start.
async fn renew(mut elector: Elector, mut last_renewal: Instant) {
    let mut wait = RENEW_INTERVAL;
    loop {
        tokio::time::sleep(wait).await;
        let deadline = last_renewal + RENEW_DEADLINE;
        let started = Instant::now();
        match tokio::time::timeout_at(deadline, elector.try_acquire_or_renew()).await {
            Ok(Ok(Attempt::Leading)) => {
                last_renewal = started;
                wait = RENEW_INTERVAL;
            }
            Ok(Ok(Attempt::Standby(_))) => step_down("another replica holds the lease"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, lease = LEASE_NAME, "renewing the lease failed; retrying");
                if Instant::now() + RETRY_PERIOD >= deadline {
                    step_down("could not renew the lease before the renew deadline");
                }
                wait = RETRY_PERIOD;
            }
            Err(_) => step_down("could not renew the lease before the renew deadline"),
        }
    }
}

/// Exits at once (status 1): a replica that may no longer lead must stop acting before any
/// other replica can take the lease over.
fn step_down(reason: &str) -> ! {
    tracing::error!(
        lease = LEASE_NAME,
        reason,
        "lost leadership; exiting so that no two replicas lead"
    );
    std::process::exit(1);
}

impl Leadership {
    /// Stops renewing and, when this replica still holds the Lease, frees it (empty holder,
    /// 1 s duration) so a standby takes over at its next read. Call only once the controllers
    /// have stopped. Failures are logged: the Lease then simply expires.
    pub async fn release(self) {
        let (Some(renewer), Some(api)) = (self.renewer, self.api) else {
            return;
        };
        renewer.abort();
        let _ = renewer.await;
        let result = async {
            let Some(mut lease) = api.get_opt(LEASE_NAME).await? else {
                return Ok(false);
            };
            let Some(spec) = lease.spec.as_mut() else {
                return Ok(false);
            };
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(false);
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(now());
            api.replace(LEASE_NAME, &PostParams::default(), &lease).await?;
            Ok::<_, kube::Error>(true)
        }
        .await;
        match result {
            Ok(true) => tracing::info!(lease = LEASE_NAME, "released the lease"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, lease = LEASE_NAME, "releasing the lease failed; it will expire"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, duration: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: duration,
            lease_transitions: Some(3),
            acquire_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
            ..LeaseSpec::default()
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn missing_lease_is_created() {
        assert_eq!(decide(None, false, "a", S(0)), LeaseAction::Create);
    }

    #[test]
    fn free_lease_is_taken_at_once() {
        assert_eq!(decide(None, true, "a", S(0)), LeaseAction::TakeOver);
        assert_eq!(
            decide(Some(&spec(None, Some(15))), true, "a", S(0)),
            LeaseAction::TakeOver
        );
        assert_eq!(
            decide(Some(&spec(Some(""), Some(1))), true, "a", S(0)),
            LeaseAction::TakeOver
        );
    }

    #[test]
    fn own_lease_is_renewed_even_if_stale() {
        assert_eq!(
            decide(Some(&spec(Some("a"), Some(15))), true, "a", S(0)),
            LeaseAction::Renew
        );
        assert_eq!(
            decide(Some(&spec(Some("a"), Some(15))), true, "a", S(60)),
            LeaseAction::Renew
        );
    }

    #[test]
    fn live_lease_of_another_is_respected_until_it_expires() {
        let s = spec(Some("b"), Some(15));
        assert_eq!(decide(Some(&s), true, "a", S(0)), LeaseAction::Wait(S(15)));
        assert_eq!(decide(Some(&s), true, "a", S(14)), LeaseAction::Wait(S(1)));
        assert_eq!(
            decide(Some(&s), true, "a", Duration::from_millis(14_999)),
            LeaseAction::Wait(Duration::from_millis(1))
        );
        assert_eq!(decide(Some(&s), true, "a", S(15)), LeaseAction::TakeOver);
        assert_eq!(decide(Some(&s), true, "a", S(100)), LeaseAction::TakeOver);
    }

    #[test]
    fn the_records_own_duration_counts() {
        assert_eq!(
            decide(Some(&spec(Some("b"), Some(60))), true, "a", S(30)),
            LeaseAction::Wait(S(30))
        );
        // A released lease (client-go style: 1 s) or a missing duration.
        assert_eq!(
            decide(Some(&spec(Some("b"), Some(1))), true, "a", S(1)),
            LeaseAction::TakeOver
        );
        assert_eq!(
            decide(Some(&spec(Some("b"), None)), true, "a", S(6)),
            LeaseAction::Wait(LEASE_DURATION - S(6))
        );
        assert_eq!(
            decide(Some(&spec(Some("b"), Some(-5))), true, "a", S(0)),
            LeaseAction::TakeOver
        );
    }

    #[test]
    fn renewal_keeps_acquire_time_and_transitions() {
        let old = spec(Some("a"), Some(15));
        let t = MicroTime(k8s_openapi::jiff::Timestamp::from_second(1_000_000).unwrap());
        let new = next_spec(Some(&old), "a", &LeaseAction::Renew, t.clone());
        assert_eq!(new.holder_identity.as_deref(), Some("a"));
        assert_eq!(new.lease_transitions, Some(3));
        assert_eq!(new.acquire_time, old.acquire_time);
        assert_eq!(new.renew_time, Some(t));
        assert_eq!(new.lease_duration_seconds, Some(LEASE_DURATION.as_secs() as i32));
    }

    #[test]
    fn take_over_counts_a_transition() {
        let old = spec(Some("b"), Some(15));
        let t = MicroTime(k8s_openapi::jiff::Timestamp::from_second(1_000_000).unwrap());
        let new = next_spec(Some(&old), "a", &LeaseAction::TakeOver, t.clone());
        assert_eq!(new.holder_identity.as_deref(), Some("a"));
        assert_eq!(new.lease_transitions, Some(4));
        assert_eq!(new.acquire_time, Some(t.clone()));
        let created = next_spec(None, "a", &LeaseAction::Create, t);
        assert_eq!(created.lease_transitions, Some(0));
    }

    #[test]
    fn identity_names_the_pod_and_differs_per_call() {
        let a = identity("paddock-operator-7d9-x2k", &process_token());
        assert!(a.starts_with("paddock-operator-7d9-x2k_"), "{a}");
        assert!(a.len() > "paddock-operator-7d9-x2k_".len(), "{a}");
        assert_eq!(pod_of(&a), "paddock-operator-7d9-x2k");
        assert_ne!(process_token(), process_token());
        assert_eq!(pod_of("no-token"), "no-token");
    }

    #[test]
    fn timings_leave_the_old_leader_time_to_exit() {
        assert!(RENEW_INTERVAL + RETRY_PERIOD <= RENEW_DEADLINE);
        assert!(RENEW_DEADLINE + RETRY_PERIOD < LEASE_DURATION);
    }
}
