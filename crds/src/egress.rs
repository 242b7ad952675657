//! The pool's egress gateway: the one way out of a runner pod (issue 17).
//!
//! NetworkPolicy selects pods, not containers, so the trusted containers of a runner pod
//! (`clone`, `gateway`) share their network with the agent. Paddock therefore gives every
//! runner pod one network destination only — the pool's egress gateway, a Deployment
//! `<pool>-egress` behind a ClusterIP Service on [`PORT`] — through two NetworkPolicies the
//! operator writes per pool ([`runners_policy_name`], [`gateway_policy_name`]). The egress
//! gateway is an HTTP proxy (`CONNECT` tunnels and absolute-form `http://` requests) that
//! serves only callers presenting the pool's token ([`token_message`]) as proxy credentials
//! (`Proxy-Authorization: Basic base64("paddock:<token>")`, RFC 9110 §11.7.1). Only the trusted
//! containers get the token ([`TOKEN_ENV`]); the agent container reaches the outside only through
//! the pod's own gateway on loopback, which applies the run's allowlist, keys and budgets and
//! then uses the egress gateway itself.

/// TCP port of the egress gateway (container and Service), the conventional HTTP proxy port.
pub const PORT: u16 = 3128;
/// User name of the proxy credentials (the password is the token).
pub const PROXY_USER: &str = "paddock";
/// Env var of the trusted containers: the egress gateway's address, `http://<clusterIP>:3128`.
pub const PROXY_ENV: &str = "PADDOCK_EGRESS_PROXY";
/// Env var of the trusted containers and of the egress gateway: the pool's token.
pub const TOKEN_ENV: &str = "PADDOCK_EGRESS_TOKEN";
/// Header the pod gateway adds to what it sends on the agent's behalf (its `CONNECT`s and
/// plain `http://` requests), value [`CLASS_AGENT`]: the egress gateway then refuses
/// destinations that are never the agent's to reach (loopback, link-local such as the cloud
/// metadata address `169.254.169.254`, unspecified, multicast), after resolving the name itself.
/// Only token holders reach the egress gateway, so the header is the trusted pod gateway's word.
pub const CLASS_HEADER: &str = "paddock-egress-class";
/// [`CLASS_HEADER`] value for the agent's traffic.
pub const CLASS_AGENT: &str = "agent";
/// Value of `app.kubernetes.io/name` on egress gateway pods.
pub const APP_NAME: &str = "paddock-egress";
/// Value of `app.kubernetes.io/name` on runner pods (cold and warm).
pub const RUNNER_APP_NAME: &str = "paddock-runner";

/// Where a runner pod's trusted containers leave the pod: the pool's egress gateway.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PodUplink {
    /// `http://<clusterIP>:3128` ([`PROXY_ENV`]).
    pub proxy: String,
    /// The pool's token ([`TOKEN_ENV`]).
    pub token: String,
}

/// Name of the pool's egress gateway Deployment and Service: `<pool>-egress`.
pub fn gateway_name(pool: &str) -> String {
    format!("{pool}-egress")
}

/// Name of the NetworkPolicy that confines the pool's runner pods: `<pool>-runners`.
pub fn runners_policy_name(pool: &str) -> String {
    format!("{pool}-runners")
}

/// Name of the NetworkPolicy that admits only the pool's runner pods to its egress gateway:
/// `<pool>-egress`.
pub fn gateway_policy_name(pool: &str) -> String {
    format!("{pool}-egress")
}

/// What the operator signs (with its verdict key, [`crate::verdict::Signer`]) to derive a pool's
/// egress token: the context line, `egress-token`, the namespace, the pool's name and UID. A pool
/// deleted and re-created gets another token; rotating the verdict key rotates every token.
pub fn token_message(namespace: &str, pool: &str, pool_uid: &str) -> Vec<u8> {
    format!(
        "{}\negress-token\n{namespace}\n{pool}\n{pool_uid}",
        crate::verdict::CONTEXT
    )
    .into_bytes()
}

/// The token from a signature (base64) of [`token_message`]: URL-safe base64 without padding, so
/// that it can stand in a proxy URL's userinfo unescaped.
pub fn token_from_signature(signature_b64: &str) -> String {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(signature_b64)
        .unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// The `Proxy-Authorization` value for `token`: `Basic base64("paddock:<token>")`.
pub fn proxy_authorization(token: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{PROXY_USER}:{token}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_per_pool_and_url_safe() {
        let s = crate::verdict::Signer::generate().unwrap();
        let a = token_from_signature(&s.sign(&token_message("ns", "pool", "u1")));
        let b = token_from_signature(&s.sign(&token_message("ns", "pool", "u2")));
        assert_ne!(a, b, "a re-created pool gets another token");
        assert_eq!(a.len(), 86, "64 bytes, base64 without padding");
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(proxy_authorization("t"), "Basic cGFkZG9jazp0", "base64 of paddock:t");
    }
}
