//! The operator's evidence settings and bookkeeping (issue 21): the key that signs bundles,
//! the archive, and the backlog of ended runs whose upload failed. The reconcile that uses
//! them is [`crate::controller::agentrun::evidence`].

use paddock_crds::verdict::Signer;
use paddock_evidence::{dsse, Archive};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Longest wait between two upload attempts of one run (seconds).
pub const MAX_RETRY_SECS: u64 = 120;

/// The evidence settings and bookkeeping of the operator.
pub struct Evidence {
    /// The key that signs bundles (`--evidence-key-file`; a random one when none is given).
    pub signer: Arc<Signer>,
    /// The archive (`--archive-url`); `None`: bundles are not uploaded and runs get no
    /// finalizer.
    pub archive: Option<Archive>,
    /// Ended runs (by UID) whose upload failed: the backlog.
    backlog: std::sync::Mutex<HashMap<String, Pending>>,
}

impl Default for Evidence {
    fn default() -> Self {
        Self {
            signer: Arc::new(Signer::generate().expect("the system's random source works")),
            archive: None,
            backlog: std::sync::Mutex::new(HashMap::new()),
        }
    }
}

impl Evidence {
    /// Settings with `signer` and `archive`.
    pub fn new(signer: Signer, archive: Option<Archive>) -> Self {
        Self {
            signer: Arc::new(signer),
            archive,
            ..Default::default()
        }
    }

    /// The key id of [`Self::signer`] (`sha256:<hex>`).
    pub fn key_id(&self) -> String {
        dsse::key_id(&self.signer.public_key_b64())
    }

    /// The backlog: ended runs (by UID) whose upload failed.
    pub fn backlog(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.backlog.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Wait before upload attempt `failures + 1` of a run: 5 s, doubled per failure, at most
/// [`MAX_RETRY_SECS`]. Pure.
pub fn retry_after(failures: u32) -> Duration {
    Duration::from_secs((5u64 << failures.saturating_sub(1).min(10)).min(MAX_RETRY_SECS))
}

/// A run in the backlog: how many uploads failed, and when the next may be tried.
#[derive(Clone, Copy, Debug)]
pub struct Pending {
    /// Failed uploads so far.
    pub failures: u32,
    /// Not before this (a reconcile woken earlier by another change does not upload again).
    pub next: std::time::Instant,
}
