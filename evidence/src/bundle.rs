//! The evidence bundle of one run, schema `paddock.dev/bundle/v1` (docs/evidence.md has the
//! field reference). One JSON document, carried as the payload of a DSSE envelope
//! ([`crate::dsse`]) of type [`PAYLOAD_TYPE`].
//!
//! Versioning: fields are only added within v1 (readers ignore unknown ones); a change of
//! meaning or a removal makes `v2`, with a new payload type.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use paddock_crds::{AgentRunSpec, AgentRunStatus, ApprovalGateSpec, ApprovalGateStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `apiVersion` of a bundle.
pub const API_VERSION: &str = "paddock.dev/bundle/v1";
/// `kind` of a bundle.
pub const KIND: &str = "AgentRunBundle";
/// DSSE payload type of a bundle.
pub const PAYLOAD_TYPE: &str = "application/vnd.paddock.bundle.v1+json";

/// Everything a reviewer or auditor needs about one run, as of [`Bundle::assembled_at`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    /// [`API_VERSION`].
    pub api_version: String,
    /// [`KIND`].
    pub kind: String,
    /// Which run.
    pub run: RunIdentity,
    /// The run's spec, as applied.
    pub spec: AgentRunSpec,
    /// The prompt's text (`spec.prompt`, or what `spec.promptFrom` named when the bundle was
    /// assembled; absent when that ConfigMap is gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The run's status: phase, every condition, every attempt, the policy snapshot
    /// (`status.policy`), usage and cost, result, start and completion times.
    pub status: AgentRunStatus,
    /// Every ApprovalGate of the run, with each decision's approver, comment and time.
    #[serde(default)]
    pub gates: Vec<GateRecord>,
    /// The event log of the last attempt: the runner's JSON event lines, as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_log: Option<String>,
    /// The event logs of earlier, retried attempts, by attempt number.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attempt_logs: BTreeMap<u32, String>,
    /// The model transcript (the gateway's JSON lines, redacted as stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
    /// The patch (unified diff) the run produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// The Kubernetes Events about the run seen when the bundle was assembled (the API server
    /// keeps them an hour by default; the bundle keeps them).
    #[serde(default)]
    pub kube_events: Vec<KubeEvent>,
    /// When the bundle was assembled.
    pub assembled_at: Time,
    /// Who assembled it: `paddock-operator/<version>` (signed) or `kubectl-paddock/<version>`
    /// (unsigned, from the cluster as the caller could read it).
    pub assembled_by: String,
}

/// The run's identity.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunIdentity {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.creationTimestamp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<Time>,
    /// `metadata.labels`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations` (without `kubectl.kubernetes.io/last-applied-configuration`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One ApprovalGate of the run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GateRecord {
    /// Gate name.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// When the gate was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<Time>,
    /// What was asked, and of whom.
    pub spec: ApprovalGateSpec,
    /// The decisions (approver, verdict, comment, time) and the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ApprovalGateStatus>,
}

/// One Kubernetes Event about the run (core/v1 fields that matter to a reader).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KubeEvent {
    /// `Normal` or `Warning`.
    #[serde(default, rename = "type")]
    pub type_: String,
    /// Reason, e.g. `PodCreated`.
    #[serde(default)]
    pub reason: String,
    /// Message.
    #[serde(default)]
    pub message: String,
    /// How many times it happened (a series counts each).
    #[serde(default)]
    pub count: i32,
    /// First time seen (`eventTime`, else `firstTimestamp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_time: Option<String>,
    /// Last time seen (the series' last, else `lastTimestamp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_time: Option<String>,
    /// Reporting controller, e.g. `paddock-operator`.
    #[serde(default)]
    pub reporting_controller: String,
}

/// Errors reading a bundle out of an envelope.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The envelope is malformed or does not verify.
    #[error(transparent)]
    Verify(#[from] crate::dsse::VerifyError),
    /// The payload is not a v1 bundle.
    #[error("the payload is not a {API_VERSION} bundle: {0}")]
    Schema(String),
}

impl Bundle {
    /// The bundle's JSON (the DSSE payload). Pure.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a DSSE payload.
    ///
    /// # Errors
    /// [`BundleError::Schema`] when it is not a [`API_VERSION`] [`KIND`].
    pub fn from_json(payload: &[u8]) -> Result<Self, BundleError> {
        let b: Bundle = serde_json::from_slice(payload).map_err(|e| BundleError::Schema(e.to_string()))?;
        if b.api_version != API_VERSION || b.kind != KIND {
            return Err(BundleError::Schema(format!(
                "apiVersion {} kind {}",
                b.api_version, b.kind
            )));
        }
        Ok(b)
    }

    /// Verifies an envelope's JSON against the trusted key (base64) and parses its bundle.
    ///
    /// # Errors
    /// [`BundleError`].
    pub fn verified(envelope: &[u8], public_key_b64: &str) -> Result<Self, BundleError> {
        Self::from_json(&crate::dsse::verify(envelope, PAYLOAD_TYPE, public_key_b64)?)
    }

    /// Parses an envelope's bundle without checking the signature.
    ///
    /// # Errors
    /// [`BundleError`].
    pub fn unverified(envelope: &[u8]) -> Result<Self, BundleError> {
        Self::from_json(&crate::dsse::open_unverified(envelope, PAYLOAD_TYPE)?.1)
    }
}
