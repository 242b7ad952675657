//! A run's evidence (issue 21, docs/evidence.md): the bundle that outlives the run, the DSSE
//! envelope the operator signs it in, gathering it from the cluster, and the S3 archive that
//! keeps it.
//!
//! - [`bundle`]: the versioned document (`paddock.dev/bundle/v1`): the run's spec, status
//!   (with the policy snapshot), gates and their decisions, event logs, transcript, patch and
//!   Kubernetes Events.
//! - [`dsse`]: signing and verifying it as a DSSE envelope (the format of in-toto attestations
//!   and Tekton Chains) with the operator's Ed25519 key.
//! - [`gather`]: reading all of it from the API server.
//! - [`archive`]: putting, finding and listing bundles in S3-compatible object storage.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod archive;
pub mod bundle;
pub mod dsse;
pub mod gather;

pub use archive::{Archive, ArchiveConfig, ArchiveError, ArchivedBundle};
pub use bundle::Bundle;
pub use dsse::{Envelope, VerifyError};
