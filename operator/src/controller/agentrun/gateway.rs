//! The pod's gateway, operator side: which environment goes to the trusted `gateway` sidecar
//! and which to the agent. Pure; table-tested.
//!
//! - **Model APIs.** For each provider the pool's or the run's env configures (its API key by
//!   `secretKeyRef`, or its base URL), the key goes to the gateway only; the agent gets a
//!   placeholder key and a base URL on the gateway (`http://127.0.0.1:15001/<route>`), plain
//!   HTTP on the pod's loopback. The gateway forwards to the configured upstream
//!   (`PADDOCK_UPSTREAM_<ROUTE>`, default the vendor's public API), swapping the placeholder for
//!   the real key, and meters usage from the responses.
//! - **Egress.** With a `spec.network.egress` list (pool or run), the agent's `HTTP_PROXY` /
//!   `HTTPS_PROXY` point at the gateway, which allows only the listed hosts
//!   (`PADDOCK_EGRESS_ALLOW`).
//! - **Budgets and prices.** `budget.maxCostUSD`, `budget.maxOutputTokens` and the pool's
//!   `gateway.prices` reach the gateway as `PADDOCK_MAX_COST_USD`, `PADDOCK_MAX_OUTPUT_TOKENS`
//!   and `PADDOCK_PRICES`.

use k8s_openapi::api::core::v1::EnvVar;
use paddock_crds::runner::{literal, vars, AllowedHost, GatewayConfig};
use paddock_crds::{AgentRun, EgressRule, RunnerPool};

/// Where the gateway listens, on the pod's loopback (shared by the pod's containers).
pub const GATEWAY_ADDR: &str = "127.0.0.1:15001";
/// The key the agent sees instead of a real one (the CLIs refuse to start without a key).
pub const PLACEHOLDER_KEY: &str = "paddock-placeholder-key";

/// A model API the gateway fronts.
pub struct Provider {
    /// Path prefix on the gateway (`/anthropic`), also the suffix of `PADDOCK_UPSTREAM_*`.
    pub route: &'static str,
    /// Variables holding its key (the CLIs' names).
    pub key_vars: &'static [&'static str],
    /// Variable holding its base URL (the CLIs' name).
    pub base_var: &'static str,
    /// Upstream when no base URL is configured.
    pub default_upstream: &'static str,
}

/// The providers, with the variables the agent CLIs read (see docs/agents.md).
pub const PROVIDERS: &[Provider] = &[
    Provider {
        route: "anthropic",
        key_vars: &["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"],
        base_var: "ANTHROPIC_BASE_URL",
        default_upstream: "https://api.anthropic.com",
    },
    Provider {
        route: "openai",
        key_vars: &["OPENAI_API_KEY", "CODEX_API_KEY"],
        base_var: "OPENAI_BASE_URL",
        default_upstream: "https://api.openai.com/v1",
    },
    Provider {
        route: "gemini",
        key_vars: &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
        base_var: "GOOGLE_GEMINI_BASE_URL",
        default_upstream: "https://generativelanguage.googleapis.com",
    },
    Provider {
        route: "openrouter",
        key_vars: &["OPENROUTER_API_KEY"],
        base_var: "OPENROUTER_BASE_URL",
        default_upstream: "https://openrouter.ai/api/v1",
    },
];

/// Splits the user's env (pool template and run, merged) between the agent and the gateway:
/// returns `(agent_env, gateway_env)`. Model keys from Secrets move to the gateway (the agent
/// gets [`PLACEHOLDER_KEY`]); a configured provider's base URL becomes the gateway's upstream
/// (the agent gets the gateway's route). Everything else stays with the agent.
pub fn route_models(user_env: &[EnvVar]) -> (Vec<EnvVar>, Vec<EnvVar>) {
    let mut agent: Vec<EnvVar> = vec![];
    let mut gateway: Vec<EnvVar> = vec![];
    let configured = |p: &Provider| {
        user_env
            .iter()
            .any(|e| e.name == p.base_var || (p.key_vars.contains(&e.name.as_str()) && e.value_from.is_some()))
    };
    for e in user_env {
        match PROVIDERS.iter().find(|p| p.key_vars.contains(&e.name.as_str())) {
            Some(_) if e.value_from.is_some() => {
                gateway.push(e.clone());
                agent.push(literal(&e.name, PLACEHOLDER_KEY));
            }
            _ => {
                if !PROVIDERS.iter().any(|p| p.base_var == e.name) {
                    agent.push(e.clone());
                }
            }
        }
    }
    for p in PROVIDERS.iter().filter(|p| configured(p)) {
        let upstream = user_env
            .iter()
            .find(|e| e.name == p.base_var)
            .and_then(|e| e.value.clone())
            .unwrap_or_else(|| p.default_upstream.to_string());
        gateway.push(literal(&vars::upstream(p.route), upstream));
        agent.push(literal(p.base_var, format!("http://{GATEWAY_ADDR}/{}", p.route)));
    }
    (agent, gateway)
}

fn ports(r: &EgressRule) -> Vec<u16> {
    if r.ports.is_empty() {
        vec![443]
    } else {
        r.ports.clone()
    }
}

fn covers(pool: &EgressRule, run: &EgressRule) -> bool {
    let host_ok = pool.host == run.host
        || pool
            .host
            .strip_prefix('*')
            .is_some_and(|suffix| run.host.ends_with(suffix) && run.host.len() > suffix.len());
    host_ok && ports(run).iter().all(|p| ports(pool).contains(p))
}

/// The run's effective egress allowlist: the run's list (each entry within the pool's), else
/// the pool's; `None` when neither sets one (open).
///
/// # Errors
/// A message naming the first run entry the pool's list does not allow.
pub fn egress(run: &AgentRun, pool: &RunnerPool) -> Result<Option<Vec<EgressRule>>, String> {
    let pool_rules = pool.spec.network.as_ref().map(|n| &n.egress);
    let Some(run_rules) = run.spec.network.as_ref().map(|n| &n.egress) else {
        return Ok(pool_rules.cloned());
    };
    if let Some(pool_rules) = pool_rules {
        if let Some(r) = run_rules.iter().find(|r| !pool_rules.iter().any(|p| covers(p, r))) {
            return Err(format!(
                "spec.network.egress host {} (ports {:?}) is not allowed by the pool's spec.network.egress",
                r.host,
                ports(r)
            ));
        }
    }
    Ok(Some(run_rules.clone()))
}

/// The gateway's section of the run's [`paddock_crds::runner::RunnerConfig`]: budgets, the
/// pool's prices and the egress allowlist (each rule's ports, default `[443]`).
pub fn gateway_config(run: &AgentRun, pool: &RunnerPool, egress: Option<&[EgressRule]>) -> GatewayConfig {
    let budget = run.spec.budget.as_ref();
    GatewayConfig {
        max_cost_usd: budget.and_then(|b| b.max_cost_usd),
        max_output_tokens: budget.and_then(|b| b.max_output_tokens),
        prices: pool.spec.gateway.as_ref().map(|g| g.prices.clone()).unwrap_or_default(),
        egress: egress.map(|rules| {
            rules
                .iter()
                .map(|r| AllowedHost {
                    host: r.host.clone(),
                    ports: ports(r),
                })
                .collect()
        }),
    }
}

/// `PADDOCK_GATEWAY_URL` for the agent container when the gateway serves it (model routes or
/// egress): the runner waits until the gateway listens before it starts the CLI.
pub fn gateway_url_env() -> EnvVar {
    literal(vars::GATEWAY_URL, format!("http://{GATEWAY_ADDR}"))
}

/// The agent's proxy variables when its egress is restricted (both spellings: curl and git read
/// the lowercase ones, Node and Python clients the uppercase).
pub fn proxy_env() -> Vec<EnvVar> {
    let url = format!("http://{GATEWAY_ADDR}");
    let no_proxy = "127.0.0.1,localhost";
    vec![
        literal("HTTP_PROXY", url.clone()),
        literal("HTTPS_PROXY", url.clone()),
        literal("http_proxy", url.clone()),
        literal("https_proxy", url),
        literal("NO_PROXY", no_proxy),
        literal("no_proxy", no_proxy),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvVarSource, SecretKeySelector};
    use serde_json::json;

    fn secret(name: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: "model-key".into(),
                    key: "key".into(),
                    optional: None,
                }),
                ..Default::default()
            }),
        }
    }

    fn get<'a>(env: &'a [EnvVar], name: &str) -> Option<&'a str> {
        env.iter().find(|e| e.name == name).and_then(|e| e.value.as_deref())
    }

    #[test]
    fn keys_go_to_the_gateway_and_the_agent_gets_placeholders_and_routes() {
        let user = vec![
            literal("ANTHROPIC_BASE_URL", "http://model:8080"),
            secret("ANTHROPIC_API_KEY"),
            secret("OPENAI_API_KEY"),
            literal("FOO", "bar"),
        ];
        let (agent, gateway) = route_models(&user);
        assert_eq!(get(&agent, "ANTHROPIC_API_KEY"), Some(PLACEHOLDER_KEY));
        assert_eq!(get(&agent, "OPENAI_API_KEY"), Some(PLACEHOLDER_KEY));
        assert_eq!(
            get(&agent, "ANTHROPIC_BASE_URL"),
            Some("http://127.0.0.1:15001/anthropic")
        );
        assert_eq!(get(&agent, "OPENAI_BASE_URL"), Some("http://127.0.0.1:15001/openai"));
        assert_eq!(get(&agent, "FOO"), Some("bar"));
        assert!(
            agent.iter().all(|e| e.value_from.is_none()),
            "no secret reference in the agent"
        );
        assert_eq!(get(&gateway, "PADDOCK_UPSTREAM_ANTHROPIC"), Some("http://model:8080"));
        assert_eq!(
            get(&gateway, "PADDOCK_UPSTREAM_OPENAI"),
            Some("https://api.openai.com/v1")
        );
        assert!(gateway
            .iter()
            .any(|e| e.name == "ANTHROPIC_API_KEY" && e.value_from.is_some()));
        assert!(
            get(&gateway, "PADDOCK_UPSTREAM_GEMINI").is_none(),
            "unconfigured providers are not routed"
        );
        // A base URL alone (no key) still routes, so the calls are metered and budgeted.
        let (agent, gateway) = route_models(&[literal("OPENAI_BASE_URL", "http://m/v1")]);
        assert_eq!(get(&agent, "OPENAI_BASE_URL"), Some("http://127.0.0.1:15001/openai"));
        assert_eq!(get(&gateway, "PADDOCK_UPSTREAM_OPENAI"), Some("http://m/v1"));
    }

    fn run_and_pool(run_net: Option<serde_json::Value>, pool_net: Option<serde_json::Value>) -> (AgentRun, RunnerPool) {
        let mut spec = json!({"repo": {"url": "https://x/r.git"}, "agent": {"name": "shell"}, "prompt": "p",
                              "budget": {"maxCostUSD": 0.5, "maxOutputTokens": 1000}});
        if let Some(n) = run_net {
            spec["network"] = n;
        }
        let run = AgentRun::new("r", serde_json::from_value(spec).unwrap());
        let mut pspec =
            json!({"template": {"image": "i"}, "gateway": {"prices": {"m-": {"input": 1.0, "output": 2.0}}}});
        if let Some(n) = pool_net {
            pspec["network"] = n;
        }
        (run, RunnerPool::new("p", serde_json::from_value(pspec).unwrap()))
    }

    #[test]
    fn run_egress_must_stay_within_the_pools() {
        let pool_net = json!({"egress": [{"host": "*.github.com"}, {"host": "pypi.org", "ports": [443, 80]}]});
        let (r, p) = run_and_pool(None, None);
        assert_eq!(egress(&r, &p), Ok(None), "open by default");
        let (r, p) = run_and_pool(None, Some(pool_net.clone()));
        assert_eq!(egress(&r, &p).unwrap().unwrap().len(), 2);
        let (r, p) = run_and_pool(
            Some(json!({"egress": [{"host": "api.github.com"}, {"host": "pypi.org", "ports": [80]}]})),
            Some(pool_net.clone()),
        );
        assert_eq!(egress(&r, &p).unwrap().unwrap().len(), 2);
        for bad in [
            json!({"host": "github.com"}),
            json!({"host": "pypi.org", "ports": [22]}),
            json!({"host": "evil.com"}),
        ] {
            let (r, p) = run_and_pool(Some(json!({"egress": [bad.clone()]})), Some(pool_net.clone()));
            assert!(
                egress(&r, &p).unwrap_err().contains("is not allowed by the pool"),
                "{bad}"
            );
        }
        let (r, p) = run_and_pool(Some(json!({"egress": []})), None);
        assert_eq!(egress(&r, &p), Ok(Some(vec![])), "a run may close an open pool");
        let env = paddock_crds::runner::RunnerConfig {
            gateway: gateway_config(&r, &p, Some(&[])),
            ..Default::default()
        }
        .gateway_env();
        assert_eq!(get(&env, vars::MAX_COST_USD), Some("0.5"));
        assert_eq!(get(&env, vars::MAX_OUTPUT_TOKENS), Some("1000"));
        assert_eq!(get(&env, vars::EGRESS_ALLOW), Some("[]"));
        let prices: serde_json::Value = serde_json::from_str(get(&env, vars::PRICES).unwrap()).unwrap();
        assert_eq!(prices["m-"]["output"], 2.0);
    }
}
