//! The run's settings for a claimed warm pod: the value of the pod annotation
//! [`crate::ANNOTATION_CLAIM`], signed by the operator
//! ([`crate::verdict::ANNOTATION_CLAIM_SIGNATURE`] over [`crate::verdict::claim_message`]).
//!
//! Shape: base64 (standard, padded) of the JSON object
//! `{"agent": {NAME: value, …}, "trusted": {NAME: value, …}}` (keys in this order, each map
//! sorted by name). `trusted` holds what a cold pod's `clone` and `gateway` containers would
//! have had beyond the warm pod's own environment (the [`super::RunnerConfig`]'s trusted and
//! gateway sections and the routed model upstreams), `agent` what its `agent` container would
//! have had (the run's own env, the routed base URLs, proxies and Paddock's agent section).
//! Only literal values travel: a run whose env has references starts cold.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::EnvVar;
use serde::{Deserialize, Serialize};

/// A run's settings for a claimed warm pod (see the module docs for the shape).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Variables for the agent container (also passed to the agent CLI's process).
    #[serde(default)]
    pub agent: BTreeMap<String, String>,
    /// Variables for the trusted containers (in a warm pod: the gateway, which also clones).
    #[serde(default)]
    pub trusted: BTreeMap<String, String>,
}

/// Errors reading a claim.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClaimError {
    /// The annotation is not base64.
    #[error("claim annotation is not base64: {0}")]
    Base64(String),
    /// The decoded annotation is not the expected JSON.
    #[error("claim annotation is not a claim object: {0}")]
    Json(String),
    /// The claim carries no valid signature of the operator's key (anyone with the `edit` role
    /// may annotate pods; only the operator's claim counts).
    #[error("the claim is not signed by the operator's key; refusing it")]
    Unsigned,
}

/// The literal variables of `vars` by name (references, which a running pod cannot take, are
/// left out).
fn literals(vars: &[EnvVar]) -> BTreeMap<String, String> {
    vars.iter()
        .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
        .collect()
}

impl Claim {
    /// The claim of the trusted containers' extra variables `trusted` and the agent container's
    /// `agent` (literal values only).
    pub fn of(trusted: &[EnvVar], agent: &[EnvVar]) -> Self {
        Claim {
            agent: literals(agent),
            trusted: literals(trusted),
        }
    }

    /// The annotation's value: base64 of the JSON object.
    pub fn encode(&self) -> String {
        // Maps of strings always serialize.
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_string(self).unwrap_or_default())
    }

    /// Decodes an annotation value (surrounding whitespace ignored).
    ///
    /// # Errors
    /// [`ClaimError::Base64`] or [`ClaimError::Json`] when it is not base64 of a claim object.
    pub fn decode(value: &str) -> Result<Self, ClaimError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .map_err(|e| ClaimError::Base64(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| ClaimError::Json(e.to_string()))
    }
}

/// TCP port on which an idle warm pod's `gateway` container accepts its claim pushed by the
/// operator ([`ClaimPush`]), on all of the pod's addresses. The pool's `<pool>-runners`
/// NetworkPolicy admits only the operator's pods to it. The gateway closes it once claimed.
pub const CLAIM_PORT: u16 = 15002;

/// HTTP path of the claim push: `POST http://<pod IP>:15002/claim` with a JSON [`ClaimPush`]
/// body (at most [`MAX_CLAIM_PUSH_BYTES`]). Answers: `204` taken (also when it already was),
/// `403` not signed for this pod by the operator's key, `400` not a claim push, `404` other
/// paths, `413` too large.
pub const CLAIM_PATH: &str = "/claim";

/// Largest claim push body the gateway reads (bytes): the claim annotation's limit (256 KiB of
/// annotations per object, the API server's) plus the signature.
pub const MAX_CLAIM_PUSH_BYTES: usize = 260 * 1024;

/// The body of a claim push: the same value and signature the claim PATCH wrote to the pod's
/// annotations [`crate::ANNOTATION_CLAIM`] and [`crate::verdict::ANNOTATION_CLAIM_SIGNATURE`].
/// The push only delivers what the annotation already commits, without waiting for the
/// kubelet to project it into the pod's downward API volume; the annotation stays the record
/// (a pod whose push was lost still reads it from the file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimPush {
    /// The claim annotation's value ([`Claim::encode`]).
    pub claim: String,
    /// Base64 Ed25519 signature of [`crate::verdict::claim_message`] over `claim` and the pod's
    /// UID, by the operator's verdict key.
    pub signature: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::config::literal;

    #[test]
    fn the_claim_is_base64_of_agent_then_trusted_sorted_literals_only() {
        let mut secret = literal("KEY", "x");
        secret.value = None;
        let c = Claim::of(
            &[literal("PADDOCK_REPO_URL", "git://h/r"), secret],
            &[literal("PADDOCK_PROMPT", "a \"b\"\nc"), literal("FOO", "1")],
        );
        let text = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(c.encode()).unwrap()).unwrap();
        assert_eq!(
            text,
            r#"{"agent":{"FOO":"1","PADDOCK_PROMPT":"a \"b\"\nc"},"trusted":{"PADDOCK_REPO_URL":"git://h/r"}}"#
        );
        // The same bytes as the JSON value the operator wrote before this type existed.
        let legacy = serde_json::json!({"trusted": c.trusted, "agent": c.agent}).to_string();
        assert_eq!(text, legacy);
        assert_eq!(Claim::decode(&format!(" {}\n", c.encode())), Ok(c));
        assert!(matches!(Claim::decode("!!"), Err(ClaimError::Base64(_))));
        let list = base64::engine::general_purpose::STANDARD.encode("[1]");
        assert!(matches!(Claim::decode(&list), Err(ClaimError::Json(_))));
    }
}
