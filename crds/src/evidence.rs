//! What a run keeps as evidence (issue 21): the names the operator and `kubectl paddock`
//! share for it. The types of `status.policy` and `status.archive` are in [`crate::agentrun`]
//! ([`crate::PolicySnapshot`], [`crate::ArchiveStatus`]). The bundle itself, its signature and the
//! archive client are in the `paddock-evidence` crate.

/// Finalizer the operator puts on runs while an archive is configured and the run's bundle is
/// not in it yet: deleting such a run (by hand, or by `spec.ttlSecondsAfterFinished`) waits
/// until the bundle is uploaded, so no evidence is lost. A cluster admin who gives up on the
/// evidence may remove it by hand (`kubectl patch agentrun NAME --type=json -p
/// '[{"op":"remove","path":"/metadata/finalizers/0"}]'`).
pub const FINALIZER: &str = "paddock.dev/evidence";

/// Name of the ConfigMap, in the operator's namespace, where the operator publishes the public
/// key that verifies bundles and the archive's location (keys [`CM_PUBLIC_KEY`], [`CM_KEY_ID`],
/// [`CM_ARCHIVE_URL`], [`CM_ARCHIVE_ENDPOINT`], [`CM_ARCHIVE_REGION`]). The chart lets every
/// authenticated user read it.
pub const PUBLIC_CONFIGMAP: &str = "paddock-evidence";
/// Key of [`PUBLIC_CONFIGMAP`]: the Ed25519 public key, base64 of its 32 raw bytes.
pub const CM_PUBLIC_KEY: &str = "publicKey";
/// Key of [`PUBLIC_CONFIGMAP`]: the key id in the bundles' DSSE signatures (`sha256:<hex>`).
pub const CM_KEY_ID: &str = "keyID";
/// Key of [`PUBLIC_CONFIGMAP`]: the archive, `s3://BUCKET/PREFIX` (absent: no archive).
pub const CM_ARCHIVE_URL: &str = "archiveURL";
/// Key of [`PUBLIC_CONFIGMAP`]: the S3 endpoint (absent: AWS).
pub const CM_ARCHIVE_ENDPOINT: &str = "archiveEndpoint";
/// Key of [`PUBLIC_CONFIGMAP`]: the S3 region.
pub const CM_ARCHIVE_REGION: &str = "archiveRegion";
