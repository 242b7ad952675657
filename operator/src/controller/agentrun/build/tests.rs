//! Tests of the pod builder, warm pods, claims and gates.
use super::*;
use crate::controller::agentrun::gates::*;
use crate::controller::agentrun::prompt::{set_prompt, PromptText};
use crate::controller::agentrun::resume::{apply_resume, RESUME_DIR};
use crate::controller::agentrun::warm::*;
use k8s_openapi::api::core::v1::EnvVarSource;
use paddock_crds::runner::Claim;
use paddock_crds::{AgentName, RunnerPoolSpec, RunnerTemplate};
use serde_json::json;

fn run(spec: serde_json::Value) -> AgentRun {
    let mut base =
        json!({"repo": {"url": "https://example.com/r.git"}, "agent": {"name": "claude-code"}, "prompt": "do it"});
    for (k, v) in spec.as_object().unwrap() {
        base[k] = v.clone();
    }
    let mut r = AgentRun::new("r1", serde_json::from_value(base).unwrap());
    r.metadata.namespace = Some("team".into());
    r.metadata.uid = Some("uid-1".into());
    r
}

fn pool(agents: Vec<AgentName>) -> RunnerPool {
    let mut p = RunnerPool::new(
        "default",
        RunnerPoolSpec {
            template: RunnerTemplate {
                image: "runner:1".into(),
                env: vec![
                    env("ANTHROPIC_BASE_URL", "http://pool"),
                    env(vars::AGENT, "shell"), // a pool cannot override Paddock's own variables
                ],
                ..Default::default()
            },
            agents,
            ..Default::default()
        },
    );
    p.metadata.namespace = Some("team".into());
    p
}

fn agent_env_has_no_secret_refs(c: &Container) -> bool {
    c.env
        .iter()
        .flatten()
        .all(|e| e.value_from.as_ref().is_none_or(|v| v.secret_key_ref.is_none()))
}

fn env_of(c: &Container) -> BTreeMap<String, EnvVar> {
    c.env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect()
}

#[test]
fn tracing_env_reaches_trusted_containers_only_from_the_pool() {
    let mut p = pool(vec![]);
    p.spec
        .template
        .env
        .push(env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"));
    let r = run(json!({"agent": {"name": "shell", "env": [{"name": "OTEL_SERVICE_NAME", "value": "evil"}]}}));
    let spec = build_pod(&r, &p, 1, "test-key").unwrap().spec.unwrap();
    let clone = &spec.init_containers.as_ref().unwrap()[0];
    let e = env_of(clone);
    assert_eq!(
        e["OTEL_EXPORTER_OTLP_ENDPOINT"].value.as_deref(),
        Some("http://collector:4318")
    );
    assert!(
        !e.contains_key("OTEL_SERVICE_NAME"),
        "a run's env never reaches trusted containers"
    );
}

#[test]
fn pod_is_hardened_and_wired() {
    let r = run(json!({
        "repo": {"url": "https://example.com/r.git", "revision": "v1", "credentialsSecretRef": {"name": "git"}, "workdir": "svc"},
        "agent": {"name": "claude-code", "model": "m", "args": ["--verbose"],
                  "env": [{"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "k", "key": "key"}}},
                          {"name": "ANTHROPIC_BASE_URL", "value": "http://run"}]},
        "budget": {"timeout": "10m", "maxTurns": 7},
        "output": {"push": true, "branch": "feature/x"},
    }));
    let mut p = pool(vec![]);
    p.spec.output = Some(paddock_crds::PoolOutputSpec {
        allowed_branches: vec!["feature/*".into()],
        plain_http_hosts: vec!["forge.internal:3000".into(), "git.local".into()],
    });
    let pod = build_pod(&r, &p, 1, "test-key").unwrap();
    assert_eq!(pod.metadata.name.as_deref(), Some("r1-1"));
    // The pool's plain-HTTP hosts reach the trusted containers only.
    for c in pod
        .spec
        .as_ref()
        .unwrap()
        .init_containers
        .iter()
        .flatten()
        .chain(&pod.spec.as_ref().unwrap().containers)
    {
        let v = c.env.iter().flatten().find(|e| e.name == vars::GIT_PLAIN_HTTP_HOSTS);
        let want = (c.name == "clone" || c.name == "gateway").then_some("forge.internal:3000,git.local");
        assert_eq!(v.and_then(|e| e.value.as_deref()), want, "{}", c.name);
    }
    assert_eq!(pod.metadata.owner_references.as_ref().unwrap()[0].uid, "uid-1");
    assert_eq!(pod.metadata.labels.as_ref().unwrap()[paddock_crds::LABEL_RUN], "r1");
    let spec = pod.spec.unwrap();
    assert_eq!(spec.automount_service_account_token, Some(false));
    assert_eq!(spec.active_deadline_seconds, Some(600));
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    let inits = spec.init_containers.unwrap();
    assert_eq!(
        inits.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["clone", "gateway"]
    );
    assert_eq!(
        inits[1].restart_policy.as_deref(),
        Some("Always"),
        "gateway is a native sidecar"
    );
    let agent = &spec.containers[0];
    for c in inits.iter().chain([agent]) {
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
        assert_eq!(sc.run_as_non_root, Some(true), "{}", c.name);
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..]),
            "{}",
            c.name
        );
        assert_eq!(
            sc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault",
            "{}",
            c.name
        );
        assert!(c.resources.as_ref().unwrap().limits.is_some(), "{} has limits", c.name);
    }
    // Git credentials only in the trusted containers; the agent shares no /tmp with them.
    let mounts = |c: &Container| {
        c.volume_mounts
            .clone()
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect::<Vec<_>>()
    };
    assert!(mounts(&inits[0]).contains(&"git-credentials".to_string()));
    assert!(mounts(&inits[1]).contains(&"git-credentials".to_string()));
    assert!(!mounts(agent).contains(&"git-credentials".to_string()));
    assert!(!mounts(agent).contains(&"trusted-tmp".to_string()));
    let e = env_of(agent);
    assert_eq!(e[vars::AGENT].value.as_deref(), Some("claude-code"));
    // The model API goes through the gateway: the agent has its route and a placeholder
    // key; the gateway has the run's upstream (the run's env wins over the pool's) and the
    // key by reference.
    assert_eq!(
        e["ANTHROPIC_BASE_URL"].value.as_deref(),
        Some("http://127.0.0.1:15001/anthropic")
    );
    assert_eq!(e["ANTHROPIC_API_KEY"].value.as_deref(), Some(gateway::PLACEHOLDER_KEY));
    assert!(agent_env_has_no_secret_refs(agent));
    let g = env_of(&inits[1]);
    assert_eq!(g["PADDOCK_UPSTREAM_ANTHROPIC"].value.as_deref(), Some("http://run"));
    assert!(g["ANTHROPIC_API_KEY"].value_from.is_some());
    assert_eq!(g[vars::REDACT_ENV].value.as_deref(), Some("ANTHROPIC_API_KEY"));
    assert_eq!(
        e[vars::REDACT_ENV].value.as_deref(),
        Some(""),
        "the agent holds no secret, only the placeholder"
    );
    assert_eq!(e[vars::BRANCH].value.as_deref(), Some("feature/x"));
    assert_eq!(e[vars::WORKDIR].value.as_deref(), Some("svc"));
    assert_eq!(e[vars::MAX_TURNS].value.as_deref(), Some("7"));
    assert_eq!(e["PADDOCK_AGENT_ARGS"].value.as_deref(), Some(r#"["--verbose"]"#));
    assert_eq!(e[vars::PUSH].value.as_deref(), Some("true"));
    assert_eq!(env_of(&inits[0])[vars::REVISION].value.as_deref(), Some("v1"));
    assert!(
        !env_of(&inits[0]).contains_key("ANTHROPIC_API_KEY"),
        "model keys stay out of the clone container"
    );
}

#[test]
fn prompt_from_configmap_and_defaults() {
    let r = run(json!({"prompt": null, "promptFrom": {"name": "cm", "key": "task"}}));
    let pod = build_pod(&r, &pool(vec![]), 2, "test-key").unwrap();
    assert_eq!(pod.metadata.name.as_deref(), Some("r1-2"));
    let spec = pod.spec.unwrap();
    assert_eq!(spec.active_deadline_seconds, Some(DEFAULT_TIMEOUT_SECS as i64));
    let e = env_of(&spec.containers[0]);
    let cm = e[vars::PROMPT]
        .value_from
        .as_ref()
        .unwrap()
        .config_map_key_ref
        .as_ref()
        .unwrap();
    assert_eq!((cm.name.as_str(), cm.key.as_str()), ("cm", "task"));
    assert_eq!(e[vars::BRANCH].value.as_deref(), Some("paddock/r1"));
    assert_eq!(e[vars::PUSH].value.as_deref(), Some("false"));
    assert!(
        spec.volumes.unwrap().iter().all(|v| v.secret.is_none()),
        "no credentials volume without a secret ref"
    );
}

#[test]
fn refusals() {
    let err = build_pod(
        &run(json!({"agent": {"name": "codex"}})),
        &pool(vec![AgentName::ClaudeCode]),
        1,
        "test-key",
    )
    .unwrap_err();
    assert!(matches!(err, BuildError::AgentNotInPool { .. }), "{err}");
    assert_eq!(timeout_secs(&run(json!({"budget": {"timeout": "1h30m"}}))), Ok(5400));
    assert!(timeout_secs(&run(json!({"budget": {"timeout": "soon"}}))).is_err());
}

#[test]
fn a_run_cannot_redirect_the_pools_model_endpoint_unless_allowed_by_name() {
    let mut p = pool(vec![]);
    p.spec.template.env.push(EnvVar {
        name: "ANTHROPIC_API_KEY".into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(k8s_openapi::api::core::v1::SecretKeySelector {
                name: "pool-key".into(),
                key: "k".into(),
                optional: None,
            }),
            ..Default::default()
        }),
    });
    let redirect = run(
        json!({"agent": {"name": "shell", "env": [{"name": "ANTHROPIC_BASE_URL", "value": "http://attacker.example:1"}]}}),
    );
    let err = build_pod(&redirect, &p, 1, "test-key").unwrap_err();
    assert!(matches!(err, BuildError::OverrideNotAllowed { .. }), "{err}");
    assert!(err.to_string().contains("spec.agent.env[ANTHROPIC_BASE_URL]"), "{err}");
    // A provider the pool holds no key for is the run's own business, and so is a run that
    // brings its own key.
    let own = run(json!({"agent": {"name": "shell", "env": [{"name": "OPENAI_BASE_URL", "value": "http://mine"}]}}));
    assert!(build_pod(&own, &p, 1, "test-key").is_ok());
    let own_key = run(json!({"agent": {"name": "shell", "env": [
        {"name": "ANTHROPIC_BASE_URL", "value": "http://mine"},
        {"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "mine", "key": "k"}}}]}}));
    assert!(build_pod(&own_key, &p, 1, "test-key").is_ok());
    // Allowed by name.
    p.spec.overrides = Some(paddock_crds::OverridesSpec {
        model_env: vec!["ANTHROPIC_BASE_URL".into()],
        ..Default::default()
    });
    assert!(build_pod(&redirect, &p, 1, "test-key").is_ok());
}

/// The gateway reports the patch, so it redacts the agent's secrets too (e2e:
/// `planted_secret_never_persisted`).
#[test]
fn the_gateway_gets_the_agents_secrets_to_redact() {
    let r = run(json!({"agent": {"name": "shell", "env": [
        {"name": "MY_TOKEN", "valueFrom": {"secretKeyRef": {"name": "token", "key": "value"}}},
        {"name": "PLAIN", "value": "x"}]}}));
    let pod = build_pod(&r, &pool(vec![]), 1, "test-key").unwrap();
    let spec = pod.spec.unwrap();
    let gw = env_of(&spec.init_containers.unwrap()[1]);
    let copied = &gw["PADDOCK_REDACT_VALUE_0"];
    assert_eq!(
        copied
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap()
            .name,
        "token"
    );
    assert!(gw[vars::REDACT_ENV]
        .value
        .as_deref()
        .unwrap()
        .split(',')
        .any(|n| n == "PADDOCK_REDACT_VALUE_0"));
    assert!(!gw.contains_key("PADDOCK_REDACT_VALUE_1"), "only secrets");
    assert!(
        env_of(&spec.containers[0]).contains_key("MY_TOKEN"),
        "the agent keeps its env"
    );
}

#[test]
fn a_run_pushes_only_to_branches_the_pool_allows() {
    let mut p = pool(vec![]);
    let to = |b: &str| run(json!({"output": {"push": true, "branch": b}}));
    let err = build_pod(&to("main"), &p, 1, "test-key").unwrap_err();
    assert_eq!(
        err.to_string(),
        "RunnerPool default does not allow pushing to branch main (allowed: paddock/*)"
    );
    assert!(build_pod(&to("paddock/fix/deep"), &p, 1, "test-key").is_ok());
    assert!(
        build_pod(&run(json!({"output": {"push": true}})), &p, 1, "test-key").is_ok(),
        "the default branch"
    );
    // Without a push, the branch is local to the pod.
    assert!(build_pod(&run(json!({"output": {"branch": "main"}})), &p, 1, "test-key").is_ok());
    p.spec.output = Some(paddock_crds::PoolOutputSpec {
        plain_http_hosts: vec![],
        allowed_branches: vec!["agents/*".into()],
    });
    assert!(build_pod(&to("agents/x"), &p, 1, "test-key").is_ok());
    assert!(matches!(
        build_pod(&to("paddock/x"), &p, 1, "test-key"),
        Err(BuildError::BranchNotAllowed { .. })
    ));
}

#[test]
fn overrides_are_the_pools_decision() {
    let mut p = pool(vec![]);
    let with_env = run(json!({"agent": {"name": "shell", "env": [{"name": "X", "value": "1"}]}}));
    assert!(
        build_pod(&with_env, &p, 1, "test-key").is_ok(),
        "env is allowed by default"
    );
    let image = run(json!({"runner": {"image": "evil:1"}}));
    let err = build_pod(&image, &p, 1, "test-key").unwrap_err();
    assert!(err.to_string().contains("refuses spec.runner.image"), "{err}");
    let big = run(json!({"runner": {"resources": {"limits": {"cpu": "4", "memory": "8Gi"}}}}));
    let err = build_pod(&big, &p, 1, "test-key").unwrap_err();
    assert!(err.to_string().contains("no overrides.maxResources"), "{err}");

    p.spec.overrides = Some(paddock_crds::OverridesSpec {
        env: false,
        image: true,
        max_resources: Some(quantities(&[("cpu", "2"), ("memory", "8Gi")])),
        model_env: vec![],
    });
    let err = build_pod(&with_env, &p, 1, "test-key").unwrap_err();
    assert!(err.to_string().contains("refuses spec.agent.env"), "{err}");
    let err = build_pod(&big, &p, 1, "test-key").unwrap_err();
    assert_eq!(
        err.to_string(),
        "RunnerPool default refuses spec.runner.resources.limits.cpu: 4 is more than the pool's maximum 2"
    );
    let fits = run(
        json!({"runner": {"image": "other:2", "resources": {"requests": {"cpu": "500m"}, "limits": {"cpu": "2", "memory": "8192Mi"}}}}),
    );
    let pod = build_pod(&fits, &p, 1, "test-key").unwrap();
    let agent = &pod.spec.as_ref().unwrap().containers[0];
    assert_eq!(agent.image.as_deref(), Some("other:2"));
    assert_eq!(
        agent.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
        "8192Mi"
    );
    let gpu = run(json!({"runner": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}));
    let err = build_pod(&gpu, &p, 1, "test-key").unwrap_err();
    assert!(err.to_string().contains("does not list nvidia.com/gpu"), "{err}");
}

#[test]
fn every_emptydir_has_a_size_limit_and_the_workspace_follows_the_agents_storage_limit() {
    let limits = |pod: &Pod| -> BTreeMap<String, String> {
        pod.spec
            .as_ref()
            .unwrap()
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.empty_dir.as_ref().map(|e| (v.name.clone(), e.size_limit.clone())))
            .map(|(n, l)| (n, l.expect("every emptyDir has a sizeLimit").0))
            .collect()
    };
    let pod = build_pod(&run(json!({})), &pool(vec![]), 1, "test-key").unwrap();
    let l = limits(&pod);
    assert_eq!(l.len(), 4, "{l:?}");
    assert_eq!((l["workspace"].as_str(), l["trusted-tmp"].as_str()), ("20Gi", "20Gi"));
    assert_eq!((l["home"].as_str(), l["tmp"].as_str()), ("4Gi", "4Gi"));
    let mut p = pool(vec![]);
    p.spec.template.resources = Some(ResourceRequirements {
        limits: Some(quantities(&[("ephemeral-storage", "256Mi")])),
        ..Default::default()
    });
    let l = limits(&build_pod(&run(json!({})), &p, 1, "test-key").unwrap());
    assert_eq!(l["workspace"], "256Mi");
    let l = limits(&build_warm_pod(&p, "test-key", None));
    assert_eq!(l["workspace"], "256Mi", "warm pods too");
}

#[test]
fn only_the_trusted_containers_get_the_egress_token_and_the_agent_goes_through_the_pod_gateway() {
    let uplink = PodUplink {
        proxy: "http://10.96.0.50:3128".into(),
        token: "pool-token".into(),
    };
    let r = run(json!({"agent": {"name": "shell", "env": [{"name": "HTTP_PROXY", "value": "http://own:1"}]}}));
    let mut pod = build_pod(&r, &pool(vec![]), 1, "test-key").unwrap();
    apply_uplink(&mut pod, &uplink);
    let warm = build_warm_pod(&pool(vec![]), "test-key", Some(&uplink));
    for pod in [&pod, &warm] {
        let spec = pod.spec.as_ref().unwrap();
        for c in spec.init_containers.as_ref().unwrap() {
            let e = env_of(c);
            assert_eq!(
                e[paddock_crds::egress::TOKEN_ENV].value.as_deref(),
                Some("pool-token"),
                "{}",
                c.name
            );
            assert_eq!(
                e[paddock_crds::egress::PROXY_ENV].value.as_deref(),
                Some("http://10.96.0.50:3128")
            );
        }
        let agent = &spec.containers[0];
        let e = env_of(agent);
        assert!(
            !e.contains_key(paddock_crds::egress::TOKEN_ENV),
            "the agent never holds the token"
        );
        assert!(!e.contains_key(paddock_crds::egress::PROXY_ENV));
        assert_eq!(e["HTTPS_PROXY"].value.as_deref(), Some("http://127.0.0.1:15001"));
        let names: Vec<_> = agent.env.as_ref().unwrap().iter().map(|v| v.name.as_str()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            names.len(),
            unique.len(),
            "no duplicate variables (server-side apply refuses them)"
        );
    }
    assert_eq!(
        env_of(&pod.spec.as_ref().unwrap().containers[0])["HTTP_PROXY"]
            .value
            .as_deref(),
        Some("http://own:1"),
        "the run's own proxy setting is kept"
    );
    assert_ne!(
        warm_template_hash(&pool(vec![]), "test-key", Some(&uplink)),
        warm_template_hash(&pool(vec![]), "test-key", None),
        "another egress gateway or token replaces idle warm pods"
    );
}

#[test]
fn warm_pod_waits_for_a_claim_and_the_claim_carries_the_run() {
    let mut p = pool(vec![]);
    p.metadata.uid = Some("pool-uid".into());
    let warm = build_warm_pod(&p, "test-key", None);
    let spec = warm.spec.as_ref().unwrap();
    let inits = spec.init_containers.as_ref().unwrap();
    assert_eq!(
        inits.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["gateway"],
        "no clone container: the gateway clones once claimed"
    );
    let agent = env_of(&spec.containers[0]);
    assert_eq!(agent[vars::WARM].value.as_deref(), Some("true"));
    assert_eq!(
        agent["ANTHROPIC_BASE_URL"].value.as_deref(),
        Some("http://127.0.0.1:15001/anthropic")
    );
    assert_eq!(
        env_of(&inits[0])["PADDOCK_UPSTREAM_ANTHROPIC"].value.as_deref(),
        Some("http://pool")
    );
    assert!(!agent.contains_key(vars::PROMPT) && !agent.contains_key(vars::RUN));
    assert_eq!(env_of(&inits[0])[vars::WARM].value.as_deref(), Some("true"));
    assert!(
        inits[0]
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.name == "podinfo"),
        "the gateway reads the claim too"
    );
    assert!(spec.active_deadline_seconds.is_none(), "an idle pod has no deadline");
    assert_eq!(spec.automount_service_account_token, Some(false));
    let meta = &warm.metadata;
    assert_eq!(meta.generate_name.as_deref(), Some("default-warm-"));
    assert_eq!(meta.labels.as_ref().unwrap()[paddock_crds::LABEL_WARM], "idle");
    assert_eq!(meta.owner_references.as_ref().unwrap()[0].uid, "pool-uid");
    assert_eq!(
        meta.annotations.as_ref().unwrap()[ANNOTATION_TEMPLATE_HASH],
        warm_template_hash(&p, "test-key", None)
    );
    let before = warm_template_hash(&p, "test-key", None);
    p.spec.template.image = "runner:2".into();
    assert_ne!(
        before,
        warm_template_hash(&p, "test-key", None),
        "a template change replaces idle pods"
    );

    let r = run(
        json!({"agent": {"name": "claude-code", "env": [{"name": "FOO", "value": "bar"}, {"name": vars::AGENT, "value": "shell"}]}, "output": {"push": true}}),
    );
    use base64::Engine;
    let claim: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(
                claim_value(
                    &r,
                    &p,
                    &PromptText::from_config_map("the prompt from a ConfigMap".into()),
                    1,
                )
                .unwrap(),
            )
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claim["agent"][vars::PROMPT], "the prompt from a ConfigMap");
    assert_eq!(claim["agent"][vars::AGENT], "claude-code", "Paddock's variables win");
    assert_eq!(claim["agent"]["FOO"], "bar");
    assert_eq!(claim["trusted"][vars::REPO_URL], "https://example.com/r.git");
    assert_eq!(claim["trusted"][vars::PUSH], "true");
    assert!(
        claim["trusted"].get("FOO").is_none(),
        "a run's env stays out of the trusted containers"
    );
}

#[test]
fn the_agent_gets_no_trusted_variable_cold_or_claimed() {
    let r = run(json!({
        "repo": {"url": "https://example.com/r.git", "revision": "v1", "credentialsSecretRef": {"name": "git"}},
        "agent": {"name": "claude-code", "env": [{"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "k", "key": "key"}}}]},
        "budget": {"maxCostUSD": 1.0, "maxOutputTokens": 10},
        "output": {"push": true},
        "network": {"egress": [{"host": "pypi.org"}]},
    }));
    let mut p = pool(vec![]);
    p.spec.output = Some(paddock_crds::PoolOutputSpec {
        allowed_branches: vec!["*".into()],
        plain_http_hosts: vec!["forge:3000".into()],
    });
    let spec = build_pod(&r, &p, 1, "test-key").unwrap().spec.unwrap();
    let gateway = env_of(&spec.init_containers.as_ref().unwrap()[1]);
    for name in [
        vars::REPO_URL,
        vars::GIT_PLAIN_HTTP_HOSTS,
        vars::MAX_COST_USD,
        vars::EGRESS_ALLOW,
    ] {
        assert!(gateway.contains_key(name), "{name} reaches the gateway");
    }
    for name in env_of(&spec.containers[0]).keys() {
        assert!(!vars::is_trusted_only(name), "{name} reaches the agent");
    }
    let r = run(json!({"budget": {"maxCostUSD": 1.0}, "network": {"egress": [{"host": "pypi.org"}]}}));
    let claim = Claim::decode(&claim_value(&r, &p, &PromptText::from_config_map("p".into()), 1).unwrap()).unwrap();
    assert!(claim.trusted.contains_key(vars::EGRESS_ALLOW));
    for name in claim.agent.keys() {
        assert!(!vars::is_trusted_only(name), "{name} reaches the agent");
    }
}

#[test]
fn runs_that_cannot_use_a_warm_pod_say_why() {
    let mut p = pool(vec![]);
    assert_eq!(
        warm_unsuitable(&run(json!({})), &p),
        None,
        "no warm pool: nothing to say"
    );
    p.spec.warm = Some(paddock_crds::WarmSpec {
        replicas: 2,
        credentials_secret_ref: None,
    });
    assert_eq!(warm_unsuitable(&run(json!({})), &p), None);
    let cases = [
        (
            json!({"runner": {"resources": {"limits": {"cpu": "1"}}}}),
            "other resources",
        ),
        (json!({"runner": {"image": "x:1"}}), "another image"),
        (
            json!({"agent": {"name": "codex"}, "resumeFrom": {"name": "first"}}),
            "resumes first's session",
        ),
        (
            json!({"repo": {"url": "https://x/r.git", "credentialsSecretRef": {"name": "git"}}}),
            "Secret git",
        ),
        (
            json!({"agent": {"name": "codex", "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}}),
            "spec.agent.env K",
        ),
    ];
    for (spec, why) in cases {
        let got = warm_unsuitable(&run(spec.clone()), &p).unwrap_or_default();
        assert!(got.contains(why), "{spec}: {got}");
    }
    p.spec.warm.as_mut().unwrap().credentials_secret_ref = Some(paddock_crds::LocalObjectRef { name: "git".into() });
    assert_eq!(
        warm_unsuitable(
            &run(json!({"repo": {"url": "https://x/r.git", "credentialsSecretRef": {"name": "git"}}})),
            &p
        ),
        None
    );
    assert!(
        warm_unsuitable(&run(json!({})), &p).is_some(),
        "no credentials the run did not ask for"
    );
}

#[test]
fn a_resumed_run_mounts_the_session_and_starts_from_the_commit() {
    let r = run(json!({"agent": {"name": "codex"}, "resumeFrom": {"name": "first"}}));
    let mut pod = build_pod(&r, &pool(vec![]), 1, "test-key").unwrap();
    apply_resume(&mut pod, "first-session", Some("0123abcd"));
    let spec = pod.spec.as_ref().unwrap();
    let vol = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "resume")
        .expect("volume");
    assert_eq!(vol.config_map.as_ref().map(|c| c.name.as_str()), Some("first-session"));
    let agent = spec.containers.iter().find(|c| c.name == "agent").unwrap();
    let mount = agent
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "resume")
        .unwrap();
    assert_eq!((mount.mount_path.as_str(), mount.read_only), (RESUME_DIR, Some(true)));
    assert_eq!(env_of(agent)[vars::RESUME_DIR].value.as_deref(), Some(RESUME_DIR));
    // Only the agent container sees the session; every container clones the same revision.
    for c in spec.init_containers.iter().flatten().chain(&spec.containers) {
        if c.name != "agent" {
            assert!(
                !c.volume_mounts.iter().flatten().any(|m| m.name == "resume"),
                "{}",
                c.name
            );
        }
        if let Some(rev) = env_of(c).get(vars::REVISION) {
            assert_eq!(rev.value.as_deref(), Some("0123abcd"), "{}", c.name);
        }
    }
}

#[test]
fn gate_carries_the_request() {
    let r = run(json!({"approvals": {"beforeStart": {"approvers": {"users": ["alice"]}, "quorum": 2}}}));
    let policy = r.spec.approvals.as_ref().unwrap().before_start.as_ref().unwrap();
    let prompt = PromptText::of_fetched(&r).unwrap();
    let g = build_gate(&r, policy, &gate_name(&r), Some(&prompt));
    assert_eq!(g.metadata.name.as_deref(), Some("r1-before-start"));
    assert_eq!(g.spec.quorum, 2);
    assert_eq!(g.spec.approvers.users, ["alice"]);
    assert!(g.spec.request.summary.contains("do it"), "{}", g.spec.request.summary);
    assert!(g.spec.decisions.is_empty());
    // A cached run (no prompt) still shows the prompt it was given.
    let mut cached = r.clone();
    paddock_crds::cache::slim_agent_run(&mut cached);
    let g = build_gate(&cached, policy, &gate_name(&r), Some(&prompt));
    assert!(
        g.spec.request.summary.ends_with("Prompt: do it"),
        "{}",
        g.spec.request.summary
    );
    let from = run(json!({"prompt": null, "promptFrom": {"name": "cm", "key": "task"}}));
    let g = build_gate(&from, policy, &gate_name(&r), None);
    assert!(
        g.spec.request.summary.ends_with("(prompt from ConfigMap cm key task)"),
        "{}",
        g.spec.request.summary
    );
}

#[test]
fn the_prompt_is_put_into_the_built_pod_only_by_set_prompt() {
    let prompt_of = |pod: &Pod| env_of(&pod.spec.as_ref().unwrap().containers[0])[vars::PROMPT].clone();
    // Built from the cache's copy or the API server's, the pod's prompt waits for set_prompt.
    let r = run(json!({}));
    let mut pod = build_pod(&r, &pool(vec![]), 1, "test-key").unwrap();
    assert_eq!(prompt_of(&pod).value.as_deref(), Some(""));
    set_prompt(&mut pod, &PromptText::of_fetched(&r).unwrap());
    assert_eq!(prompt_of(&pod).value.as_deref(), Some("do it"));
    // spec.promptFrom: the ConfigMap key stays (the kubelet reads it).
    let from = run(json!({"prompt": null, "promptFrom": {"name": "cm", "key": "task"}}));
    let mut pod = build_pod(&from, &pool(vec![]), 1, "test-key").unwrap();
    set_prompt(&mut pod, &PromptText::from_config_map("the key's text".into()));
    let env = prompt_of(&pod);
    assert_eq!(env.value, None);
    assert_eq!(env.value_from.unwrap().config_map_key_ref.unwrap().key, "task");
}
