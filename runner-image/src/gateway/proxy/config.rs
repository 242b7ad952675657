//! The proxy's settings ([`ProxyConfig`]), read from the gateway container's environment.

use paddock_crds::runner::vars;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::super::meter::PriceTable;
use crate::config::Env;

/// Default listen address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:15001";
/// Default largest request body forwarded to a model API, bytes (8 MiB):
/// `PADDOCK_GATEWAY_MAX_BODY_BYTES`. Claude Code's requests are ~90 KB; a long conversation
/// with a few images stays well below.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 << 20;
/// Default number of model calls handled at once (reading the body, waiting for the upstream,
/// streaming the response): `PADDOCK_GATEWAY_MAX_INFLIGHT`.
pub const DEFAULT_MAX_INFLIGHT: usize = 16;
/// Default seconds a model call waits for a free slot, or for the calls in flight to settle
/// their budget reservations, before it is answered 429: `PADDOCK_GATEWAY_QUEUE_SECONDS`.
pub const DEFAULT_QUEUE_SECONDS: u64 = 60;
/// Default number of client connections open at once (model calls, CONNECT tunnels, plain
/// HTTP); further ones wait in the listen backlog: `PADDOCK_GATEWAY_MAX_CONNECTIONS`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Name of the running totals' file in the state directory.
pub const STATE_FILE: &str = "paddock-gateway-usage.json";

/// How the gateway authenticates to one model API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyHeader {
    /// `x-api-key: <key>` (Anthropic).
    XApiKey,
    /// `Authorization: Bearer <key>` (OpenAI, OpenRouter, Anthropic auth tokens).
    Bearer,
    /// `x-goog-api-key: <key>` (Gemini).
    Goog,
}

/// One model API route.
#[derive(Clone, Debug)]
pub struct Route {
    /// Path prefix without slashes (`anthropic`).
    pub name: String,
    /// Upstream base URL, no trailing slash (`https://api.anthropic.com`).
    pub upstream: String,
    /// The real key and how to send it; `None`: the agent's own headers pass through.
    pub key: Option<(KeyHeader, String)>,
}

/// One allowed egress destination.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Allow {
    /// Host name, or `*.suffix` for its subdomains.
    pub host: String,
    /// Ports.
    pub ports: Vec<u16>,
}

/// Whether `host:port` is allowed by `rules`. Host names compare case-insensitively.
pub fn allowed(rules: &[Allow], host: &str, port: u16) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    rules.iter().any(|r| {
        let host_ok = match r.host.strip_prefix('*') {
            Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
            None => host == r.host,
        };
        host_ok && r.ports.contains(&port)
    })
}

/// Errors in the gateway's proxy settings.
#[derive(Debug, thiserror::Error)]
pub enum ProxyConfigError {
    /// A variable does not parse.
    #[error("{name} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

/// The proxy's settings, from the gateway container's environment.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Listen address.
    pub addr: SocketAddr,
    /// Model API routes.
    pub routes: Vec<Route>,
    /// Egress allowlist; `None`: the proxy allows any host (the pod has no restriction).
    pub egress: Option<Vec<Allow>>,
    /// `budget.maxCostUSD`, USD (finite, ≥ 0).
    pub max_cost_usd: Option<f64>,
    /// `budget.maxOutputTokens`, tokens.
    pub max_output_tokens: Option<u64>,
    /// Prices.
    pub prices: PriceTable,
    /// Values to redact from the transcript (longest first).
    pub secrets: Vec<String>,
    /// The workspace's control directory (budget marker, egress denials).
    pub control_dir: PathBuf,
    /// The gateway's private state directory (`PADDOCK_GATEWAY_STATE_DIR`, default `$TMPDIR`):
    /// the running totals live in [`STATE_FILE`] there, so that they survive a restart of the
    /// gateway container. Must not be reachable from the agent container.
    pub state_dir: PathBuf,
    /// Who the totals belong to (`PADDOCK_NAMESPACE/PADDOCK_RUN`, `PADDOCK_RUN_UID`,
    /// `PADDOCK_ATTEMPT`, joined): a state file of another run or attempt is not taken over.
    pub owner: String,
    /// Largest request body to a model route, bytes (`PADDOCK_GATEWAY_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Model calls handled at once (`PADDOCK_GATEWAY_MAX_INFLIGHT`, ≥ 1).
    pub max_inflight: usize,
    /// How long a model call waits for a slot or for budget held by calls in flight
    /// (`PADDOCK_GATEWAY_QUEUE_SECONDS`).
    pub queue_wait: Duration,
    /// Client connections open at once (`PADDOCK_GATEWAY_MAX_CONNECTIONS`, ≥ 1).
    pub max_connections: usize,
    /// The pool's egress gateway: every upstream connection goes through it
    /// ([`crate::uplink`]); `None`: direct.
    pub uplink: Option<crate::uplink::Uplink>,
}

fn invalid(name: &'static str, reason: impl ToString) -> ProxyConfigError {
    ProxyConfigError::Invalid {
        name,
        reason: reason.to_string(),
    }
}

/// `name` parsed as a positive integer, or `default` when unset.
fn positive(env: &Env, name: &'static str, default: u64) -> Result<u64, ProxyConfigError> {
    match env.get(name) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            Ok(_) => Err(invalid(name, "must be at least 1")),
            Err(e) => Err(invalid(name, e)),
        },
    }
}

impl ProxyConfig {
    /// Settings for `routes` with every other value at its default: no egress list, no
    /// budgets, the built-in prices, state and control files under `dir`.
    pub fn new(addr: SocketAddr, routes: Vec<Route>, dir: &std::path::Path) -> Self {
        ProxyConfig {
            addr,
            routes,
            egress: None,
            max_cost_usd: None,
            max_output_tokens: None,
            prices: PriceTable::builtin(),
            secrets: vec![],
            control_dir: dir.join(".paddock"),
            state_dir: dir.to_path_buf(),
            owner: String::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_inflight: DEFAULT_MAX_INFLIGHT,
            queue_wait: Duration::from_secs(DEFAULT_QUEUE_SECONDS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            uplink: None,
        }
    }

    /// Reads the settings (see the module docs of [`super`] for the variables).
    ///
    /// # Errors
    /// [`ProxyConfigError`] naming the variable that does not parse.
    pub fn from_env(env: &Env) -> Result<Self, ProxyConfigError> {
        let addr = env
            .get(vars::GATEWAY_ADDR)
            .unwrap_or(DEFAULT_ADDR)
            .parse()
            .map_err(|e| invalid(vars::GATEWAY_ADDR, e))?;
        let table: [(&str, &[(&str, KeyHeader)]); 4] = [
            (
                "anthropic",
                &[
                    ("ANTHROPIC_API_KEY", KeyHeader::XApiKey),
                    ("ANTHROPIC_AUTH_TOKEN", KeyHeader::Bearer),
                ],
            ),
            (
                "openai",
                &[
                    ("OPENAI_API_KEY", KeyHeader::Bearer),
                    ("CODEX_API_KEY", KeyHeader::Bearer),
                ],
            ),
            (
                "gemini",
                &[("GEMINI_API_KEY", KeyHeader::Goog), ("GOOGLE_API_KEY", KeyHeader::Goog)],
            ),
            ("openrouter", &[("OPENROUTER_API_KEY", KeyHeader::Bearer)]),
        ];
        let mut routes = vec![];
        for (name, keys) in table {
            let var = vars::upstream(name);
            let Some(upstream) = env.get(&var) else { continue };
            if !(upstream.starts_with("http://") || upstream.starts_with("https://")) {
                return Err(invalid("PADDOCK_UPSTREAM_*", format!("{var} must be an http(s) URL")));
            }
            let key = keys
                .iter()
                .find_map(|(k, h)| env.get(k).map(|v| (h.clone(), v.to_string())));
            routes.push(Route {
                name: name.into(),
                upstream: upstream.trim_end_matches('/').to_string(),
                key,
            });
        }
        let egress = match env.get(vars::EGRESS_ALLOW) {
            None => None,
            Some(j) => Some(serde_json::from_str(j).map_err(|e| invalid(vars::EGRESS_ALLOW, e))?),
        };
        let max_cost_usd = match env.get(vars::MAX_COST_USD) {
            None => None,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(c) if c.is_finite() && c >= 0.0 => Some(c),
                Ok(_) => return Err(invalid(vars::MAX_COST_USD, "must be a finite number >= 0")),
                Err(e) => return Err(invalid(vars::MAX_COST_USD, e)),
            },
        };
        let max_output_tokens = env
            .get(vars::MAX_OUTPUT_TOKENS)
            .map(|v| v.trim().parse::<u64>().map_err(|e| invalid(vars::MAX_OUTPUT_TOKENS, e)))
            .transpose()?;
        let prices = match env.get(vars::PRICES) {
            None => PriceTable::builtin(),
            Some(j) => PriceTable::with_overrides(j).map_err(|e| invalid(vars::PRICES, e))?,
        };
        let state_dir = env
            .get(vars::GATEWAY_STATE_DIR)
            .map_or_else(std::env::temp_dir, PathBuf::from);
        let owner = [vars::NAMESPACE, vars::RUN, vars::RUN_UID, vars::ATTEMPT]
            .map(|k| env.get(k).unwrap_or_default())
            .join("/");
        let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Ok(Self {
            addr,
            routes,
            egress,
            max_cost_usd,
            max_output_tokens,
            prices,
            secrets: env.secrets(),
            control_dir: crate::workspace::Workspace::from_env(env).control(),
            uplink: crate::uplink::Uplink::from_env(env),
            state_dir,
            owner,
            max_body_bytes: to_usize(positive(
                env,
                vars::GATEWAY_MAX_BODY_BYTES,
                DEFAULT_MAX_BODY_BYTES as u64,
            )?),
            max_inflight: to_usize(positive(env, vars::GATEWAY_MAX_INFLIGHT, DEFAULT_MAX_INFLIGHT as u64)?),
            queue_wait: Duration::from_secs(positive(env, vars::GATEWAY_QUEUE_SECONDS, DEFAULT_QUEUE_SECONDS)?),
            max_connections: to_usize(positive(
                env,
                vars::GATEWAY_MAX_CONNECTIONS,
                DEFAULT_MAX_CONNECTIONS as u64,
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_and_parse() {
        let env = Env::from_pairs([(vars::upstream("anthropic"), "http://m:1".to_string())]);
        let c = ProxyConfig::from_env(&env).unwrap();
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.max_inflight, DEFAULT_MAX_INFLIGHT);
        assert_eq!(c.queue_wait, Duration::from_secs(DEFAULT_QUEUE_SECONDS));
        assert_eq!(c.state_dir, std::env::temp_dir());
        let env = Env::from_pairs([
            (vars::GATEWAY_MAX_BODY_BYTES, "1024"),
            (vars::GATEWAY_MAX_INFLIGHT, "2"),
            (vars::GATEWAY_STATE_DIR, "/state"),
            (vars::RUN_UID, "u1"),
            (vars::ATTEMPT, "2"),
        ]);
        let c = ProxyConfig::from_env(&env).unwrap();
        assert_eq!((c.max_body_bytes, c.max_inflight), (1024, 2));
        assert_eq!(c.state_dir, PathBuf::from("/state"));
        assert_eq!(c.owner, "//u1/2");
        for (k, v) in [
            (vars::GATEWAY_MAX_INFLIGHT, "0"),
            (vars::GATEWAY_MAX_BODY_BYTES, "8M"),
            (vars::MAX_COST_USD, "NaN"),
            (vars::MAX_COST_USD, "-1"),
            (vars::MAX_COST_USD, "inf"),
        ] {
            let err = ProxyConfig::from_env(&Env::from_pairs([(k, v)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(k), "{k}={v}: {err}");
        }
    }
}
