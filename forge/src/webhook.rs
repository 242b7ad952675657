//! A forge's webhook deliveries: checking who sent them ([`verify`]) and reading the issue
//! events a trigger acts on ([`parse`]).
//!
//! Signatures, per provider:
//! - Gitea: `X-Gitea-Signature`, the hex HMAC-SHA256 of the body with the webhook's secret
//!   (Gitea's `services/webhook/deliver.go`); delivery id `X-Gitea-Delivery`, event
//!   `X-Gitea-Event` (`issues`, `issue_comment`).
//! - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256>` (GitHub docs, "Validating webhook
//!   deliveries"); `X-GitHub-Delivery`, `X-GitHub-Event`.
//! - GitLab: the secret itself in `X-Gitlab-Token` (GitLab docs, "Webhooks", custom headers and
//!   secret token); `X-Gitlab-Event-UUID`, `X-Gitlab-Event` (`Issue Hook`, `Note Hook`).
//!
//! Comparisons are constant-time (ring's `hmac::verify`, and an HMAC of both sides for
//! GitLab's token).

use crate::api::ForgeProvider;
use crate::payload::header;
pub use crate::payload::{Delivery, Event, Issue, ParseError};
use http::HeaderMap;
use ring::hmac;

/// Why a delivery was refused before its body was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No signature (or token) header.
    #[error("the delivery is not signed")]
    Unsigned,
    /// A signature that does not match the body and the secret.
    #[error("the delivery's signature does not match")]
    BadSignature,
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The lowercase hex HMAC-SHA256 of `body` with `secret` (how Gitea and GitHub sign).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::sign(&key, body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks that a delivery was sent by a forge holding `secret`.
///
/// # Errors
/// [`Refusal::Unsigned`] without the provider's header, [`Refusal::BadSignature`] when it does
/// not match.
pub fn verify(provider: ForgeProvider, headers: &HeaderMap, body: &[u8], secret: &[u8]) -> Result<(), Refusal> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    match provider {
        ForgeProvider::Gitea | ForgeProvider::GitHub => {
            let sig = if provider == ForgeProvider::Gitea {
                header(headers, "x-gitea-signature")
            } else {
                header(headers, "x-hub-signature-256").map(|s| s.strip_prefix("sha256=").unwrap_or("\u{0}"))
            };
            let sig = sig.filter(|s| !s.is_empty()).ok_or(Refusal::Unsigned)?;
            let sig = from_hex(sig).ok_or(Refusal::BadSignature)?;
            hmac::verify(&key, body, &sig).map_err(|_| Refusal::BadSignature)
        }
        ForgeProvider::GitLab => {
            let token = header(headers, "x-gitlab-token")
                .filter(|s| !s.is_empty())
                .ok_or(Refusal::Unsigned)?;
            // Constant time: compare MACs of both, not the strings.
            let expected = hmac::sign(&key, secret);
            hmac::verify(&key, token.as_bytes(), expected.as_ref()).map_err(|_| Refusal::BadSignature)
        }
    }
}

/// Reads a verified delivery.
///
/// # Errors
/// [`ParseError`] when the body is not the JSON the provider's event names.
pub fn parse(provider: ForgeProvider, headers: &HeaderMap, body: &[u8]) -> Result<Delivery, ParseError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| ParseError(e.to_string()))?;
    match provider {
        ForgeProvider::Gitea => crate::gitea::parse_webhook(headers, &v),
        ForgeProvider::GitHub => crate::github::parse_webhook(headers, &v),
        ForgeProvider::GitLab => crate::gitlab::parse_webhook(headers, &v),
    }
}

/// Whether `a` and `b` name the same repository: compared without case (the forges treat
/// owner and repository names so), credentials, a trailing `/` and `.git` dropped.
pub fn same_repository(a: &str, b: &str) -> bool {
    fn norm(u: &str) -> Option<String> {
        let (scheme, rest) = u.split_once("://")?;
        let (auth, path) = rest.split_once('/')?;
        let host = auth.rsplit('@').next()?;
        let path = path.trim_end_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path);
        // Owner and repository names are case-insensitive on GitHub, GitLab and Gitea.
        Some(format!("{scheme}://{host}/{path}").to_ascii_lowercase())
    }
    matches!((norm(a), norm(b)), (Some(x), Some(y)) if x == y)
}
