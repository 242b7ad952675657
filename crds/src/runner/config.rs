//! [`RunnerConfig`]: a run's settings for its runner pod, in the sections the pod's containers
//! may receive, and their rendering as container environment ([`vars`] names the variables).
//! The operator builds one value per run and attempt and renders it into a cold pod's
//! containers, or into a warm pod's claim ([`super::Claim`]); the runner reads the same
//! variables from its environment (with a claim's laid over it).

use k8s_openapi::api::core::v1::{ConfigMapKeySelector, EnvVar, EnvVarSource};
use serde::{Deserialize, Serialize};

use super::vars;
use crate::{AgentName, CustomOutput, ModelPrice, ToolRule};

/// A literal variable `name=value`.
pub fn literal(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// Which run and attempt a pod serves: what a verdict must be signed for
/// ([`crate::verdict`]). Every container gets it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// AgentRun name ([`vars::RUN`]).
    pub run: String,
    /// Its namespace ([`vars::NAMESPACE`]).
    pub namespace: String,
    /// Its UID ([`vars::RUN_UID`]).
    pub run_uid: String,
    /// The attempt, from 1 ([`vars::ATTEMPT`]).
    pub attempt: u32,
}

impl Identity {
    /// `PADDOCK_RUN`, `PADDOCK_NAMESPACE`, `PADDOCK_RUN_UID`, `PADDOCK_ATTEMPT`, in this order.
    pub fn env(&self) -> Vec<EnvVar> {
        vec![
            literal(vars::RUN, self.run.clone()),
            literal(vars::NAMESPACE, self.namespace.clone()),
            literal(vars::RUN_UID, self.run_uid.clone()),
            literal(vars::ATTEMPT, self.attempt.to_string()),
        ]
    }
}

/// Settings both the trusted containers and the agent get.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedConfig {
    /// Which run and attempt.
    pub identity: Identity,
    /// The branch the run commits to ([`vars::BRANCH`]).
    pub branch: String,
    /// Whether the run pushes ([`vars::PUSH`]).
    pub push: bool,
    /// Whether the push waits for a signed verdict ([`vars::PUSH_APPROVAL`], set only when
    /// true): a `BeforePush` gate or a required verification.
    pub push_approval: bool,
    /// Whether the run's plan must be approved first (`spec.approvals.plan`;
    /// [`vars::PLAN_REVIEW`], set only when true): the agent plans first, and the gateway
    /// pushes nothing without a signed `plan-<n>` approval.
    pub plan_review: bool,
}

/// Settings of the trusted containers (`clone`, `gateway`) only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedConfig {
    /// `spec.repo.url` ([`vars::REPO_URL`]).
    pub repo_url: String,
    /// `spec.repo.revision`, empty for the remote's HEAD ([`vars::REVISION`]).
    pub revision: String,
    /// The pool's `spec.output.plainHTTPHosts` ([`vars::GIT_PLAIN_HTTP_HOSTS`], comma-joined;
    /// absent when empty).
    pub plain_http_hosts: Vec<String>,
}

/// One host the run's egress allowlist lets the agent reach ([`vars::EGRESS_ALLOW`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowedHost {
    /// Host name, or `*.suffix` for its subdomains.
    pub host: String,
    /// Ports (the rule's, default `[443]`).
    pub ports: Vec<u16>,
}

/// The gateway's run settings (besides the model keys and upstreams, which come from the
/// user's env and are routed by the operator).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GatewayConfig {
    /// `budget.maxCostUSD`, USD ([`vars::MAX_COST_USD`]).
    pub max_cost_usd: Option<f64>,
    /// `budget.maxOutputTokens` ([`vars::MAX_OUTPUT_TOKENS`]).
    pub max_output_tokens: Option<u64>,
    /// The pool's `gateway.prices` ([`vars::PRICES`]; absent when empty).
    pub prices: std::collections::BTreeMap<String, ModelPrice>,
    /// The run's egress allowlist ([`vars::EGRESS_ALLOW`]); `None`: open.
    pub egress: Option<Vec<AllowedHost>>,
}

/// Where the agent's prompt comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prompt {
    /// The text (`spec.prompt`, or a warm claim's resolved `spec.promptFrom`).
    Text(String),
    /// A ConfigMap key (`spec.promptFrom`), read by the kubelet (cold pods only).
    ConfigMapKey {
        /// ConfigMap name.
        name: String,
        /// Key.
        key: String,
    },
}

/// Settings of the `agent` container only.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentConfig {
    /// The CLI ([`vars::AGENT`]).
    pub agent: AgentName,
    /// The prompt ([`vars::PROMPT`]); `None`: empty.
    pub prompt: Option<Prompt>,
    /// Names of the agent's variables whose values are secrets ([`vars::REDACT_ENV`]).
    pub redact_env: Vec<String>,
    /// `spec.agent.model` ([`vars::MODEL`]).
    pub model: Option<String>,
    /// `spec.agent.command` ([`vars::AGENT_COMMAND`], JSON; absent when empty).
    pub command: Vec<String>,
    /// `spec.agent.output` ([`vars::AGENT_OUTPUT`]).
    pub output: Option<CustomOutput>,
    /// `spec.agent.args` ([`vars::AGENT_ARGS`], JSON; absent when empty).
    pub args: Vec<String>,
    /// `spec.repo.workdir` ([`vars::WORKDIR`]).
    pub workdir: Option<String>,
    /// `spec.budget.maxTurns` ([`vars::MAX_TURNS`]).
    pub max_turns: Option<u32>,
    /// `spec.output.commitMessage` ([`vars::COMMIT_MESSAGE`]).
    pub commit_message: Option<String>,
    /// `spec.approvals.toolUse.rules` ([`vars::TOOL_RULES`], JSON).
    pub tool_rules: Option<Vec<ToolRule>>,
    /// `spec.approvals.questions` is set: the CLI is offered `ask_human`
    /// ([`vars::QUESTIONS`], set only when true).
    pub questions: bool,
}

/// A run's settings for its runner pod: one value per run and attempt, rendered into a cold
/// pod's containers or a warm pod's claim.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunnerConfig {
    /// What every container gets.
    pub shared: SharedConfig,
    /// What only `clone` and `gateway` get.
    pub trusted: TrustedConfig,
    /// What only `gateway` gets.
    pub gateway: GatewayConfig,
    /// What only `agent` gets.
    pub agent: AgentConfig,
}

impl RunnerConfig {
    /// The trusted containers' variables: `PADDOCK_PUSH`, `PADDOCK_REPO_URL`,
    /// `PADDOCK_REVISION`, `PADDOCK_BRANCH`, the [`Identity`], then `PADDOCK_GIT_PLAIN_HTTP_HOSTS`
    /// and `PADDOCK_PUSH_APPROVAL`, `PADDOCK_PLAN_REVIEW` when set.
    pub fn trusted_env(&self) -> Vec<EnvVar> {
        let s = &self.shared;
        let mut out = vec![
            literal(vars::PUSH, s.push.to_string()),
            literal(vars::REPO_URL, self.trusted.repo_url.clone()),
            literal(vars::REVISION, self.trusted.revision.clone()),
            literal(vars::BRANCH, s.branch.clone()),
        ];
        out.extend(s.identity.env());
        if !self.trusted.plain_http_hosts.is_empty() {
            out.push(literal(
                vars::GIT_PLAIN_HTTP_HOSTS,
                self.trusted.plain_http_hosts.join(","),
            ));
        }
        if s.push_approval {
            out.push(literal(vars::PUSH_APPROVAL, "true"));
        }
        if s.plan_review {
            out.push(literal(vars::PLAN_REVIEW, "true"));
        }
        out
    }

    /// The gateway's run variables: `PADDOCK_MAX_COST_USD`, `PADDOCK_MAX_OUTPUT_TOKENS`,
    /// `PADDOCK_PRICES` (`{prefix: {"input","output","cache_read","cache_write"}}`) and
    /// `PADDOCK_EGRESS_ALLOW` (`[{"host","ports"}]`), each when set.
    pub fn gateway_env(&self) -> Vec<EnvVar> {
        let g = &self.gateway;
        let mut out = vec![];
        if let Some(c) = g.max_cost_usd {
            out.push(literal(vars::MAX_COST_USD, c.to_string()));
        }
        if let Some(t) = g.max_output_tokens {
            out.push(literal(vars::MAX_OUTPUT_TOKENS, t.to_string()));
        }
        if !g.prices.is_empty() {
            let json: serde_json::Map<String, serde_json::Value> = g
                .prices
                .iter()
                .map(|(k, p)| {
                    (
                        k.clone(),
                        serde_json::json!({"input": p.input, "output": p.output, "cache_read": p.cache_read, "cache_write": p.cache_write}),
                    )
                })
                .collect();
            out.push(literal(vars::PRICES, serde_json::Value::Object(json).to_string()));
        }
        if let Some(rules) = &g.egress {
            // A list of plain structs always serializes.
            out.push(literal(
                vars::EGRESS_ALLOW,
                serde_json::to_string(rules).unwrap_or_default(),
            ));
        }
        out
    }

    /// Paddock's own variables of the agent container: `PADDOCK_AGENT`, `PADDOCK_PROMPT`,
    /// `PADDOCK_BRANCH`, `PADDOCK_PUSH`, `PADDOCK_REDACT_ENV`, the [`Identity`], then each of
    /// `PADDOCK_MODEL`, `PADDOCK_AGENT_COMMAND`, `PADDOCK_AGENT_OUTPUT`, `PADDOCK_AGENT_ARGS`,
    /// `PADDOCK_WORKDIR`, `PADDOCK_MAX_TURNS`, `PADDOCK_COMMIT_MESSAGE`,
    /// `PADDOCK_PUSH_APPROVAL`, `PADDOCK_TOOL_RULES`, `PADDOCK_PLAN_REVIEW`,
    /// `PADDOCK_QUESTIONS` that is set. Never a name
    /// [`vars::is_trusted_only`] (tested).
    pub fn agent_env(&self) -> Vec<EnvVar> {
        let (s, a) = (&self.shared, &self.agent);
        let prompt = match &a.prompt {
            None => literal(vars::PROMPT, ""),
            Some(Prompt::Text(t)) => literal(vars::PROMPT, t.clone()),
            Some(Prompt::ConfigMapKey { name, key }) => EnvVar {
                name: vars::PROMPT.into(),
                value: None,
                value_from: Some(EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: name.clone(),
                        key: key.clone(),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
            },
        };
        let mut out = vec![
            literal(vars::AGENT, a.agent.as_str()),
            prompt,
            literal(vars::BRANCH, s.branch.clone()),
            literal(vars::PUSH, s.push.to_string()),
            literal(vars::REDACT_ENV, a.redact_env.join(",")),
        ];
        out.extend(s.identity.env());
        let optional: [(&str, Option<String>); 11] = [
            (vars::MODEL, a.model.clone()),
            (vars::AGENT_COMMAND, (!a.command.is_empty()).then(|| json(&a.command))),
            (vars::AGENT_OUTPUT, a.output.map(|o| o.as_env().to_string())),
            (vars::AGENT_ARGS, (!a.args.is_empty()).then(|| json(&a.args))),
            (vars::WORKDIR, a.workdir.clone()),
            (vars::MAX_TURNS, a.max_turns.map(|t| t.to_string())),
            (vars::COMMIT_MESSAGE, a.commit_message.clone()),
            (vars::PUSH_APPROVAL, s.push_approval.then(|| "true".to_string())),
            (vars::TOOL_RULES, a.tool_rules.as_ref().map(json)),
            (vars::PLAN_REVIEW, s.plan_review.then(|| "true".to_string())),
            (vars::QUESTIONS, a.questions.then(|| "true".to_string())),
        ];
        out.extend(
            optional
                .into_iter()
                .filter_map(|(name, value)| value.map(|v| literal(name, v))),
        );
        out
    }
}

/// Compact JSON of a value the agent section carries as JSON (arrays of strings and of plain
/// structs, which always serialize).
fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config with every optional setting present.
    fn full() -> RunnerConfig {
        RunnerConfig {
            shared: SharedConfig {
                identity: Identity {
                    run: "r1".into(),
                    namespace: "team".into(),
                    run_uid: "uid-1".into(),
                    attempt: 2,
                },
                branch: "paddock/r1".into(),
                push: true,
                push_approval: true,
                plan_review: true,
            },
            trusted: TrustedConfig {
                repo_url: "https://example.com/r.git".into(),
                revision: "v1".into(),
                plain_http_hosts: vec!["forge:3000".into(), "git.local".into()],
            },
            gateway: GatewayConfig {
                max_cost_usd: Some(0.5),
                max_output_tokens: Some(1000),
                prices: [(
                    "m-".to_string(),
                    ModelPrice {
                        input: 1.0,
                        output: 2.0,
                        cache_read: 0.0,
                        cache_write: 0.0,
                    },
                )]
                .into(),
                egress: Some(vec![AllowedHost {
                    host: "pypi.org".into(),
                    ports: vec![443, 80],
                }]),
            },
            agent: AgentConfig {
                agent: AgentName::Custom,
                prompt: Some(Prompt::Text("do it".into())),
                redact_env: vec!["API_TOKEN".into()],
                model: Some("m".into()),
                command: vec!["node".into(), "a.js".into()],
                output: Some(CustomOutput::JsonLines),
                args: vec!["--fast".into()],
                workdir: Some("svc".into()),
                max_turns: Some(7),
                commit_message: Some("msg".into()),
                tool_rules: Some(vec![]),
                questions: true,
            },
        }
    }

    fn pairs(env: &[EnvVar]) -> Vec<(String, String)> {
        env.iter()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn the_agent_section_never_carries_a_trusted_name() {
        let c = full();
        let agent = c.agent_env();
        assert_eq!(agent.len(), 20, "every optional agent setting is rendered");
        for e in &agent {
            assert!(!vars::is_trusted_only(&e.name), "{} reaches the agent", e.name);
        }
        let trusted: Vec<String> = c
            .trusted_env()
            .into_iter()
            .chain(c.gateway_env())
            .map(|e| e.name)
            .collect();
        for only in [vars::REPO_URL, vars::REVISION, vars::GIT_PLAIN_HTTP_HOSTS] {
            assert!(trusted.iter().any(|n| n == only), "{only}");
        }
        for e in c.gateway_env() {
            assert!(vars::is_trusted_only(&e.name), "{} is a gateway name", e.name);
        }
        assert!(vars::is_trusted_only(&vars::upstream("anthropic")));
        assert!(vars::is_trusted_only(&vars::redact_value(0)));
    }

    #[test]
    fn sections_render_in_a_fixed_order_with_today_s_values() {
        let c = full();
        let p = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert_eq!(
            pairs(&c.trusted_env()),
            p(&[
                ("PADDOCK_PUSH", "true"),
                ("PADDOCK_REPO_URL", "https://example.com/r.git"),
                ("PADDOCK_REVISION", "v1"),
                ("PADDOCK_BRANCH", "paddock/r1"),
                ("PADDOCK_RUN", "r1"),
                ("PADDOCK_NAMESPACE", "team"),
                ("PADDOCK_RUN_UID", "uid-1"),
                ("PADDOCK_ATTEMPT", "2"),
                ("PADDOCK_GIT_PLAIN_HTTP_HOSTS", "forge:3000,git.local"),
                ("PADDOCK_PUSH_APPROVAL", "true"),
                ("PADDOCK_PLAN_REVIEW", "true"),
            ])
        );
        assert_eq!(
            pairs(&c.gateway_env()),
            p(&[
                ("PADDOCK_MAX_COST_USD", "0.5"),
                ("PADDOCK_MAX_OUTPUT_TOKENS", "1000"),
                (
                    "PADDOCK_PRICES",
                    r#"{"m-":{"cache_read":0.0,"cache_write":0.0,"input":1.0,"output":2.0}}"#
                ),
                ("PADDOCK_EGRESS_ALLOW", r#"[{"host":"pypi.org","ports":[443,80]}]"#),
            ])
        );
        let agent = pairs(&c.agent_env());
        let names: Vec<&str> = agent.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "PADDOCK_AGENT",
                "PADDOCK_PROMPT",
                "PADDOCK_BRANCH",
                "PADDOCK_PUSH",
                "PADDOCK_REDACT_ENV",
                "PADDOCK_RUN",
                "PADDOCK_NAMESPACE",
                "PADDOCK_RUN_UID",
                "PADDOCK_ATTEMPT",
                "PADDOCK_MODEL",
                "PADDOCK_AGENT_COMMAND",
                "PADDOCK_AGENT_OUTPUT",
                "PADDOCK_AGENT_ARGS",
                "PADDOCK_WORKDIR",
                "PADDOCK_MAX_TURNS",
                "PADDOCK_COMMIT_MESSAGE",
                "PADDOCK_PUSH_APPROVAL",
                "PADDOCK_TOOL_RULES",
                "PADDOCK_PLAN_REVIEW",
                "PADDOCK_QUESTIONS",
            ]
        );
        assert_eq!(agent[0].1, "custom");
        assert_eq!(agent[10].1, r#"["node","a.js"]"#);
        assert_eq!(agent[11].1, "jsonl");
        assert_eq!(agent[17].1, "[]");
        let minimal = RunnerConfig::default();
        assert_eq!(minimal.agent_env().len(), 9);
        assert!(minimal.gateway_env().is_empty());
        assert_eq!(minimal.trusted_env().len(), 8);
    }

    #[test]
    fn a_prompt_from_a_configmap_is_a_reference() {
        let mut c = full();
        c.agent.prompt = Some(Prompt::ConfigMapKey {
            name: "p".into(),
            key: "k".into(),
        });
        let prompt = &c.agent_env()[1];
        assert_eq!(prompt.name, vars::PROMPT);
        let r = prompt.value_from.as_ref().unwrap().config_map_key_ref.as_ref().unwrap();
        assert_eq!((r.name.as_str(), r.key.as_str(), r.optional), ("p", "k", Some(false)));
    }
}
