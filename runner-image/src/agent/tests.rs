//! The golden tests of every CLI's command line (moved unchanged from `agent/mod.rs`).

use super::*;
use paddock_crds::runner::vars;

fn spec(kind: AgentKind) -> AgentSpec {
    AgentSpec {
        kind,
        prompt: "-rf do it".into(),
        model: Some("m1".into()),
        args: vec!["--allowedTools".into(), "Bash".into()],
        max_turns: Some(3),
    }
}

#[test]
fn claude_command_line() {
    let inv = build_invocation(
        &spec(AgentKind::ClaudeCode),
        &Env::from_pairs([("DISABLE_TELEMETRY", "0")]),
    );
    assert_eq!(inv.program, "claude");
    assert_eq!(
        inv.args,
        [
            "-p",
            "--input-format",
            "stream-json",
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
            "bypassPermissions",
            "--model",
            "m1",
            "--max-turns",
            "3",
            "--allowedTools",
            "Bash",
        ]
    );
    // The prompt is the first user line on stdin, not an argument.
    assert_eq!(
        inv.stdin.as_deref(),
        Some("{\"message\":{\"content\":\"-rf do it\",\"role\":\"user\"},\"type\":\"user\"}\n")
    );
    assert_eq!(
        inv.env,
        vec![("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".to_string(), "1".to_string())]
    );
}

/// With ToolUse rules, Claude Code asks the runner's permission-prompt server about every
/// call that is not read-only (`--permission-mode default`), instead of running all freely.
#[test]
fn claude_command_line_with_tool_rules() {
    let rules = r#"[{"tool":"Bash","pattern":"rm -rf *"}]"#;
    let env = Env::from_pairs([
        (vars::TOOL_RULES, rules),
        (vars::WORKSPACE, "/workspace"),
        (vars::RUN, "r1"),
        (vars::RUNNER_BIN, "/usr/local/bin/paddock-runner"),
    ]);
    let mut s = spec(AgentKind::ClaudeCode);
    s.args.clear();
    s.max_turns = None;
    let inv = build_invocation(&s, &env);
    assert_eq!(
        inv.args[..12],
        [
            "-p",
            "--input-format",
            "stream-json",
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
            "default",
            "--model",
            "m1",
            "--permission-prompt-tool",
            "mcp__paddock__approve",
        ]
    );
    assert_eq!(inv.args[12], "--mcp-config");
    let config: serde_json::Value = serde_json::from_str(&inv.args[13]).unwrap();
    assert_eq!(
        config,
        serde_json::json!({"mcpServers": {"paddock": {"type": "stdio",
            "command": "/usr/local/bin/paddock-runner", "args": ["permission-prompt"],
            "env": {"PADDOCK_TOOL_RULES": rules, "PADDOCK_WORKSPACE": "/workspace", "PADDOCK_RUN": "r1"}}}})
    );
    assert_eq!(inv.args.len(), 14);
    assert!(!inv.args.iter().any(|a| a == "bypassPermissions"));
    assert!(!inv.env.iter().any(|(k, _)| k == "ENABLE_TOOL_SEARCH"));
}

/// Plan review: plan mode with the permission prompt (which gates `ExitPlanMode`), tool
/// search off so `ExitPlanMode` and the MCP tools are offered directly; questions: the
/// `ask_human` tool allowed. The server gets what it needs to check the verdicts' signatures.
#[test]
fn claude_command_line_with_plan_review_and_questions() {
    let pairs = [
        (vars::PLAN_REVIEW, "true"),
        (vars::QUESTIONS, "true"),
        (vars::WORKSPACE, "/workspace"),
        (vars::DECISIONS_FILE, "/etc/paddock/pod/annotations"),
        (vars::RUN, "r1"),
        (vars::NAMESPACE, "ns"),
        (vars::RUN_UID, "u1"),
        (vars::ATTEMPT, "1"),
        (vars::VERDICT_PUBLIC_KEY, "a2V5"),
        ("HOME", "/home/paddock"),
        ("ANTHROPIC_API_KEY", "placeholder"),
        (RESUME_ID_ENV, "6d3c1a52-0c7b-4a8e-9a51-2f1d8e3b7c10"),
    ];
    let mut s = spec(AgentKind::ClaudeCode);
    s.max_turns = None;
    let inv = build_invocation(&s, &Env::from_pairs(pairs));
    assert_eq!(
        inv.args[6..16],
        [
            "--permission-mode",
            "plan",
            "--model",
            "m1",
            "--resume",
            "6d3c1a52-0c7b-4a8e-9a51-2f1d8e3b7c10",
            "--allowedTools",
            "mcp__paddock__ask_human",
            "--permission-prompt-tool",
            "mcp__paddock__approve",
        ]
    );
    assert_eq!(inv.args[16], "--mcp-config");
    let config: serde_json::Value = serde_json::from_str(&inv.args[17]).unwrap();
    let env = &config["mcpServers"]["paddock"]["env"];
    for (k, v) in pairs.iter().take(10) {
        assert_eq!(env[*k], *v, "{k}");
    }
    assert!(env.get("ANTHROPIC_API_KEY").is_none(), "only what the server reads");
    assert_eq!(inv.args[18..], ["--allowedTools", "Bash"], "the run's own args last");
    assert!(inv
        .env
        .contains(&("ENABLE_TOOL_SEARCH".to_string(), "false".to_string())));
    // The user's own setting wins.
    let mut mine = pairs.to_vec();
    mine.push(("ENABLE_TOOL_SEARCH", "true"));
    let inv = build_invocation(&s, &Env::from_pairs(mine));
    assert!(!inv.env.iter().any(|(k, _)| k == "ENABLE_TOOL_SEARCH"));

    // Questions alone: no permission prompt, the server for `ask_human` only.
    let inv = build_invocation(
        &s,
        &Env::from_pairs([(vars::QUESTIONS, "true"), (vars::WORKSPACE, "/workspace")]),
    );
    let has = |w: &[&str]| inv.args.windows(w.len()).any(|x| x == w);
    assert!(has(&["--permission-mode", "bypassPermissions"]));
    assert!(has(&["--allowedTools", "mcp__paddock__ask_human", "--mcp-config"]));
    assert!(!has(&["--permission-prompt-tool"]));
    // Neither: no server at all.
    let inv = build_invocation(&s, &Env::from_pairs([(vars::QUESTIONS, "false")]));
    assert!(!inv.args.iter().any(|a| a == "--mcp-config" || a.contains("ask_human")));
}

/// Only Claude Code keeps stdin open (for the prompt and a human's messages), exactly the
/// agents the operator hands messages to.
#[test]
fn only_claude_code_takes_live_messages() {
    let env = Env::from_pairs([
        ("HOME", "/h"),
        ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
        (vars::AGENT_COMMAND, "[\"x\"]"),
    ]);
    for a in adapters() {
        let name = a.name();
        let inv = a.invocation(&spec(AgentKind::from_name(name)), &env);
        let live = paddock_crds::runmessage::takes_live_messages(&name);
        assert_eq!(a.live_messages().is_some(), live, "{name:?}");
        assert_eq!(inv.stdin.is_some(), live, "{name:?}");
    }
    let line = adapter(AgentName::ClaudeCode).live_messages().unwrap()("also\nthe docs");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&line).unwrap(),
        serde_json::json!({"type": "user", "message": {"role": "user", "content": "also\nthe docs"}})
    );
    assert!(!line.contains('\n'), "one line");
}

/// One tool-permission policy (docs/agents.md, "Tool permissions"): without ToolUse rules
/// every CLI gets the flags or settings that let it run all its tools without asking.
#[test]
fn every_cli_runs_its_tools_freely() {
    let env = Env::from_pairs([("HOME", "/h"), ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")]);
    let has = |inv: &Invocation, words: &[&str]| inv.args.windows(words.len()).any(|w| w == words);
    let mut plain = spec(AgentKind::ClaudeCode);
    plain.args.clear();
    let inv = |k| {
        build_invocation(
            &AgentSpec {
                kind: k,
                ..plain.clone()
            },
            &env,
        )
    };
    assert!(has(
        &inv(AgentKind::ClaudeCode),
        &["--permission-mode", "bypassPermissions"]
    ));
    let codex = inv(AgentKind::Codex);
    assert!(has(&codex, &["--dangerously-bypass-approvals-and-sandbox"]));
    assert!(
        !has(&codex, &["-s"]),
        "no sandbox mode beside the bypass: {:?}",
        codex.args
    );
    assert_eq!(
        codex.files,
        vec![(PathBuf::from("/h/.codex/rules/paddock.rules"), codex::RULES.to_string())]
    );
    assert!(codex::RULES.contains(r#"prefix_rule(pattern = ["rm"], decision = "allow""#));
    assert!(has(&inv(AgentKind::QwenCode), &["--yolo"]));
    let gemini = inv(AgentKind::GeminiCli);
    assert!(has(&gemini, &["--yolo"]));
    assert!(has(&gemini, &["--include-directories", "/h,/tmp"]));
    assert_eq!(gemini.create_dirs, vec![PathBuf::from("/h"), PathBuf::from("/tmp")]);
    assert!(has(&inv(AgentKind::Aider), &["--yes-always"]));
    assert!(has(&inv(AgentKind::Hermes), &["--yolo"]));
    let opencode = inv(AgentKind::OpenCode);
    let config = &opencode
        .env
        .iter()
        .find(|(k, _)| k == "OPENCODE_CONFIG_CONTENT")
        .unwrap()
        .1;
    let config: serde_json::Value = serde_json::from_str(config).unwrap();
    for k in ["read", "edit", "bash", "webfetch", "external_directory", "doom_loop"] {
        assert_eq!(config["permission"][k], "allow", "opencode {k}");
    }
    let openclaw = inv(AgentKind::OpenClaw);
    let config: serde_json::Value = serde_json::from_str(&openclaw.files[0].1).unwrap();
    assert_eq!(config["tools"]["fs"]["workspaceOnly"], false);
    assert!(has(&inv(AgentKind::OpenHands), &["--always-approve"]));
}

#[test]
fn codex_command_line() {
    let env = Env::from_pairs([("HOME", "/h"), ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")]);
    let inv = build_invocation(&spec(AgentKind::Codex), &env);
    assert_eq!(inv.program, "codex");
    assert_eq!(
        inv.args,
        [
            "exec",
            "--json",
            "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox",
            "-m",
            "m1",
            "-c",
            "model_provider=\"paddock\"",
            "-c",
            "model_providers.paddock.name=\"paddock\"",
            "-c",
            "model_providers.paddock.base_url=\"http://127.0.0.1:9/v1\"",
            "-c",
            "model_providers.paddock.wire_api=\"responses\"",
            "-c",
            "model_providers.paddock.env_key=\"OPENAI_API_KEY\"",
            "--allowedTools",
            "Bash",
            "--",
            "-rf do it"
        ]
    );
    assert_eq!(inv.env, vec![("CODEX_HOME".to_string(), "/h/.codex".to_string())]);
    assert_eq!(inv.create_dirs, vec![PathBuf::from("/h/.codex")]);
    let plain = build_invocation(&spec(AgentKind::Codex), &Env::from_pairs([("HOME", "/h")]));
    assert!(!plain.args.iter().any(|a| a == "-c"));
}

#[test]
fn qwen_code_command_line_and_settings() {
    let inv = build_invocation(&spec(AgentKind::QwenCode), &Env::from_pairs([("HOME", "/h")]));
    assert_eq!(inv.program, "qwen");
    assert_eq!(
        inv.args,
        [
            "-o",
            "stream-json",
            "--yolo",
            "-m",
            "m1",
            "--max-session-turns",
            "3",
            "--allowedTools",
            "Bash",
            "--prompt=-rf do it"
        ]
    );
    assert_eq!(
        inv.env,
        vec![("QWEN_CODE_SUPPRESS_YOLO_WARNING".to_string(), "1".to_string())]
    );
    assert_eq!(inv.files.len(), 1);
    assert_eq!(inv.files[0].0, PathBuf::from("/h/.qwen/settings.json"));
    let settings: serde_json::Value = serde_json::from_str(&inv.files[0].1).unwrap();
    assert_eq!(settings["memory"]["enableManagedAutoMemory"], false);
    assert_eq!(settings["memory"]["enableManagedAutoDream"], false);
    assert_eq!(settings["security"]["auth"]["selectedType"], "openai");
}

#[test]
fn opencode_command_line_and_config() {
    let env = Env::from_pairs([
        ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
        ("OPENCODE_DISABLE_SHARE", "0"),
    ]);
    let mut s = spec(AgentKind::OpenCode);
    s.prompt = "-rf  do \"it\"\nnow".into();
    let inv = build_invocation(&s, &env);
    assert_eq!(inv.program, "opencode");
    assert_eq!(
        inv.args,
        [
            "run",
            "--format",
            "json",
            "-m",
            "paddock/m1",
            "--allowedTools",
            "Bash",
            "--",
            "-rf",
            "",
            "do",
            "\"it\"\nnow"
        ]
    );
    // OpenCode joins the words with single spaces: the prompt comes back verbatim.
    assert_eq!(inv.args[8..].join(" "), s.prompt);
    let vars: std::collections::HashMap<_, _> = inv.env.iter().cloned().collect();
    assert_eq!(vars.get("OPENCODE_DISABLE_MODELS_FETCH").map(String::as_str), Some("1"));
    assert!(
        !vars.contains_key("OPENCODE_DISABLE_SHARE"),
        "an explicit value is kept"
    );
    let config: serde_json::Value = serde_json::from_str(&vars["OPENCODE_CONFIG_CONTENT"]).unwrap();
    assert_eq!(
        config["provider"]["paddock"]["options"]["baseURL"],
        "http://127.0.0.1:9/v1"
    );
    assert_eq!(config["provider"]["paddock"]["models"]["m1"]["name"], "m1");
    // Without OPENAI_BASE_URL the model is passed as given and no provider is generated.
    let plain = build_invocation(&spec(AgentKind::OpenCode), &Env::from_pairs([("HOME", "/h")]));
    assert_eq!(plain.args[3..5], ["-m".to_string(), "m1".to_string()]);
    let given = build_invocation(
        &spec(AgentKind::OpenCode),
        &Env::from_pairs([("OPENCODE_CONFIG_CONTENT", "{}")]),
    );
    assert!(!given.env.iter().any(|(k, _)| k == "OPENCODE_CONFIG_CONTENT"));
}

#[test]
fn gemini_cli_command_line_and_settings() {
    let inv = build_invocation(&spec(AgentKind::GeminiCli), &Env::from_pairs([("HOME", "/h")]));
    assert_eq!(inv.program, "gemini");
    assert_eq!(
        inv.args,
        [
            "--output-format",
            "stream-json",
            "--yolo",
            "--skip-trust",
            "--include-directories",
            "/h,/tmp",
            "-m",
            "m1",
            "--allowedTools",
            "Bash",
            "--prompt=-rf do it"
        ]
    );
    assert!(
        inv.env.is_empty(),
        "the CLI reads GOOGLE_GEMINI_BASE_URL and GEMINI_API_KEY itself"
    );
    assert_eq!(inv.files.len(), 1);
    assert_eq!(inv.files[0].0, PathBuf::from("/h/.gemini/settings.json"));
    let settings: serde_json::Value = serde_json::from_str(&inv.files[0].1).unwrap();
    assert_eq!(settings["security"]["auth"]["selectedType"], "gemini-api-key");
    assert_eq!(settings["model"]["maxSessionTurns"], 3);
    assert_eq!(settings["privacy"]["usageStatisticsEnabled"], false);
    // GEMINI_CLI_HOME is Gemini CLI's home directory when set.
    let inv = build_invocation(
        &spec(AgentKind::GeminiCli),
        &Env::from_pairs([("HOME", "/h"), ("GEMINI_CLI_HOME", "/g"), (vars::AGENT_BIN, "/x")]),
    );
    assert_eq!(inv.files[0].0, PathBuf::from("/g/.gemini/settings.json"));
    assert_eq!(inv.program, "/x");
}

#[test]
fn agent_names_round_trip() {
    for k in [
        AgentKind::ClaudeCode,
        AgentKind::Codex,
        AgentKind::QwenCode,
        AgentKind::OpenCode,
        AgentKind::Shell,
        AgentKind::Aider,
        AgentKind::Hermes,
        AgentKind::GeminiCli,
        AgentKind::OpenClaw,
        AgentKind::OpenHands,
    ] {
        assert_eq!(k.as_str().parse::<AgentKind>(), Ok(k));
    }
    assert!("qwen".parse::<AgentKind>().is_err());
    assert!("aider-chat"
        .parse::<AgentKind>()
        .unwrap_err()
        .contains("aider, hermes, gemini-cli, openclaw or openhands"));
}

#[test]
fn openhands_command_line_and_env() {
    let env = Env::from_pairs([
        ("HOME", "/h"),
        ("OPENAI_BASE_URL", "http://127.0.0.1:15001/openai"),
        ("OPENAI_API_KEY", "paddock-placeholder-key"),
        ("PYTHONUNBUFFERED", "0"),
    ]);
    let inv = build_invocation(&spec(AgentKind::OpenHands), &env);
    assert_eq!(inv.program, "openhands");
    assert_eq!(
        inv.args,
        [
            "--headless",
            "--json",
            "--override-with-envs",
            "--always-approve",
            "--allowedTools",
            "Bash",
            "--task=-rf do it"
        ]
    );
    let vars: std::collections::HashMap<_, _> = inv.env.iter().cloned().collect();
    assert_eq!(vars["LLM_MODEL"], "openai/m1");
    assert_eq!(vars["LLM_BASE_URL"], "http://127.0.0.1:15001/openai");
    assert_eq!(vars["LLM_API_KEY"], "paddock-placeholder-key");
    assert_eq!(vars["LITELLM_LOCAL_MODEL_COST_MAP"], "True");
    assert_eq!(vars["OPENHANDS_SUPPRESS_BANNER"], "1");
    assert_eq!(vars["TTY_COMPATIBLE"], "0");
    assert!(!vars.contains_key("PYTHONUNBUFFERED"), "yours wins");
    assert_eq!(
        inv.files,
        vec![(
            PathBuf::from("/h/.openhands/cache/skills/public-skills/.git"),
            "gitdir: /nonexistent\n".to_string()
        )]
    );
    // Without an endpoint the model is passed as given; LLM_* of yours win.
    let plain = build_invocation(
        &spec(AgentKind::OpenHands),
        &Env::from_pairs([("HOME", "/h"), ("LLM_API_KEY", "k")]),
    );
    let vars: std::collections::HashMap<_, _> = plain.env.iter().cloned().collect();
    assert_eq!(vars["LLM_MODEL"], "m1");
    assert!(!vars.contains_key("LLM_BASE_URL") && !vars.contains_key("LLM_API_KEY"));
}

#[test]
fn openclaw_command_line_and_config() {
    let env = Env::from_pairs([("HOME", "/h"), ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")]);
    let inv = build_invocation(&spec(AgentKind::OpenClaw), &env);
    assert_eq!(inv.program, "openclaw");
    assert_eq!(
        inv.args,
        [
            "agent",
            "exec",
            "--json",
            "--timeout",
            "86400",
            "--config",
            "/h/.openclaw/paddock.json",
            "--model",
            "paddock/m1",
            "--allowedTools",
            "Bash",
            "--",
            "-rf do it"
        ]
    );
    assert_eq!(inv.env, vec![("OPENCLAW_NO_AUTO_UPDATE".to_string(), "1".to_string())]);
    assert_eq!(inv.files.len(), 1);
    assert_eq!(inv.files[0].0, PathBuf::from("/h/.openclaw/paddock.json"));
    let config: serde_json::Value = serde_json::from_str(&inv.files[0].1).unwrap();
    assert_eq!(
        config["models"]["providers"]["paddock"]["baseUrl"],
        "http://127.0.0.1:9/v1"
    );
    // Without an endpoint: no config pinned, the model passed as given.
    let plain = build_invocation(
        &spec(AgentKind::OpenClaw),
        &Env::from_pairs([("HOME", "/h"), ("OPENCLAW_NO_AUTO_UPDATE", "0")]),
    );
    assert_eq!(plain.args[5..7], ["--model".to_string(), "m1".to_string()]);
    assert!(plain.files.is_empty() && plain.env.is_empty());
}

#[test]
fn aider_command_line_and_files() {
    let env = Env::from_pairs([("HOME", "/h"), ("OPENAI_BASE_URL", "http://127.0.0.1:9/openai")]);
    let inv = build_invocation(&spec(AgentKind::Aider), &env);
    assert_eq!(inv.program, "aider");
    assert_eq!(
        inv.args,
        [
            "--model",
            "openai/m1",
            "--yes-always",
            "--no-check-update",
            "--analytics-disable",
            "--no-pretty",
            "--no-fancy-input",
            "--no-auto-commits",
            "--no-gitignore",
            "--no-show-model-warnings",
            "--no-detect-urls",
            "--disable-playwright",
            "--chat-history-file",
            "/h/.aider/chat.history.md",
            "--input-history-file",
            "/h/.aider/input.history",
            "--model-metadata-file",
            "/h/.aider.model.metadata.json",
            "--allowedTools",
            "Bash",
            "--message=-rf do it"
        ]
    );
    let vars: std::collections::HashMap<_, _> = inv.env.iter().cloned().collect();
    assert_eq!(vars["OPENAI_API_BASE"], "http://127.0.0.1:9/openai");
    assert_eq!(vars["LITELLM_LOCAL_MODEL_COST_MAP"], "True");
    assert_eq!(vars["COLUMNS"], "4096");
    let files: std::collections::HashMap<_, _> = inv.files.iter().cloned().collect();
    assert_eq!(
        files[&PathBuf::from("/h/.config/git/ignore")],
        "/.aider.tags.cache.v*/\n"
    );
    let meta: serde_json::Value =
        serde_json::from_str(&files[&PathBuf::from("/h/.aider.model.metadata.json")]).unwrap();
    assert_eq!(meta["openai/m1"]["litellm_provider"], "openai");
    assert_eq!(inv.create_dirs, vec![PathBuf::from("/h/.aider")]);
    // Without an endpoint the model is passed as given; a metadata file of yours wins.
    let plain = build_invocation(
        &spec(AgentKind::Aider),
        &Env::from_pairs([("HOME", "/h"), ("AIDER_MODEL_METADATA_FILE", "/m.json")]),
    );
    assert_eq!(plain.args[..2], ["--model".to_string(), "m1".to_string()]);
    assert!(!plain.args.iter().any(|a| a == "--model-metadata-file"));
    assert!(!plain.env.iter().any(|(k, _)| k == "OPENAI_API_BASE"));
}

#[test]
fn hermes_command_line_and_config() {
    let env = Env::from_pairs([("HOME", "/h"), ("OPENAI_BASE_URL", "http://127.0.0.1:9/openai")]);
    let inv = build_invocation(&spec(AgentKind::Hermes), &env);
    assert_eq!(inv.program, "hermes");
    assert_eq!(
        inv.args,
        [
            "--yolo",
            "--usage-file",
            "/h/.hermes/paddock-usage.json",
            "--allowedTools",
            "Bash",
            "--oneshot=-rf do it"
        ]
    );
    let files: std::collections::HashMap<_, _> = inv.files.iter().cloned().collect();
    assert_eq!(files[&PathBuf::from("/h/.hermes/paddock-usage.json")], "{}\n");
    let config: serde_json::Value = serde_json::from_str(&files[&PathBuf::from("/h/.hermes/config.yaml")]).unwrap();
    assert_eq!(
        config,
        serde_json::json!({"model": {"provider": "custom", "base_url": "http://127.0.0.1:9/openai",
            "api_key": "${OPENAI_API_KEY}", "default": "m1", "context_length": 131072}})
    );
    // Without an endpoint: no generated config, the model goes to `-m`.
    let plain = build_invocation(&spec(AgentKind::Hermes), &Env::from_pairs([("HOME", "/h")]));
    assert_eq!(plain.args[3..5], ["-m".to_string(), "m1".to_string()]);
    assert_eq!(plain.files.len(), 1);
}

#[test]
fn adapter_buffers_are_bounded() {
    let mut buf = Vec::new();
    let long = "x".repeat(MAX_BUFFERED_LINE_BYTES * 3);
    for _ in 0..MAX_BUFFERED_LINES + 10 {
        push_bounded(&mut buf, &long);
    }
    assert_eq!(buf.len(), MAX_BUFFERED_LINES);
    assert!(buf.iter().all(|l| l.len() <= MAX_BUFFERED_LINE_BYTES));
}

#[test]
fn custom_command_line_puts_the_prompt_last() {
    let env = Env::from_pairs([("PADDOCK_AGENT_COMMAND", r#"["node","/opt/a.js","--fast"]"#)]);
    let inv = build_invocation(&spec(AgentKind::Custom(custom::Output::Text)), &env);
    assert_eq!(inv.program, "node");
    assert_eq!(inv.args, ["/opt/a.js", "--fast", "--allowedTools", "Bash", "-rf do it"]);
    assert_eq!(
        "custom".parse::<AgentKind>(),
        Ok(AgentKind::Custom(custom::Output::Text))
    );
}

#[test]
fn shell_command_line_and_bin_override() {
    let inv = build_invocation(&spec(AgentKind::Shell), &Env::from_pairs([(vars::AGENT_BIN, "/x")]));
    assert_eq!(
        (inv.program.as_str(), inv.args.as_slice()),
        ("sh", &["-c".to_string(), "-rf do it".to_string()][..])
    );
    let inv = build_invocation(
        &spec(AgentKind::ClaudeCode),
        &Env::from_pairs([(vars::AGENT_BIN, "/x")]),
    );
    assert_eq!(inv.program, "/x");
}

/// The registry holds one adapter per name of the API, under that name.
#[test]
fn registry_is_keyed_by_the_api_names() {
    assert_eq!(adapters().count(), AgentName::ALL.len());
    for name in AgentName::ALL {
        assert_eq!(adapter(name).name(), name);
        assert_eq!(AgentKind::from_name(name).name(), name);
        assert_eq!(name.as_str().parse::<AgentKind>().map(AgentKind::name), Ok(name));
    }
    let with_sessions: Vec<_> = adapters()
        .filter(|a| a.sessions().is_some())
        .map(|a| a.name())
        .collect();
    assert_eq!(with_sessions, [AgentName::ClaudeCode, AgentName::Codex]);
}
