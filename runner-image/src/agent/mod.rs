//! Agent adapters: how each CLI is invoked and how its output maps to [`RunnerEvent`]s.
//!
//! The CLI runs in the worktree (or `PADDOCK_WORKDIR` inside it) with stdin closed, in its own
//! process group, and the prompt passed as one argv element — never through a shell, except
//! for the `shell` agent, which is exactly `sh -c "$PADDOCK_PROMPT"`:
//! - `claude-code`: `claude -p --output-format stream-json --verbose --permission-mode
//!   bypassPermissions [--model m] [--max-turns n] <args…> -- <prompt>`; with ToolUse rules
//!   `--permission-mode default --permission-prompt-tool mcp__paddock__approve --mcp-config …`
//!   instead ([`claude`], [`crate::mcp`]).
//! - `codex`: `codex exec --json --skip-git-repo-check --dangerously-bypass-approvals-and-sandbox
//!   [-m m] [-c …provider overrides when OPENAI_BASE_URL is set] <args…> -- <prompt>` with
//!   `CODEX_HOME=$HOME/.codex` and `$CODEX_HOME/rules/paddock.rules` ([`codex`]).
//! - `qwen-code`: `qwen -o stream-json --yolo [-m m] [--max-session-turns n] <args…>
//!   --prompt=<prompt>` with `~/.qwen/settings.json` written first ([`qwen`]).
//! - `opencode`: `opencode run --format json [-m paddock/m] <args…> -- <prompt split at
//!   spaces>` with `OPENCODE_CONFIG_CONTENT` generated from `OPENAI_BASE_URL` ([`opencode`]).
//! - `shell`: `sh -c <prompt>`; each output line is a `log` event ([`shell`]).
//! - `gemini-cli`: `gemini --output-format stream-json --yolo --skip-trust --include-directories
//!   $HOME,/tmp [-m m] <args…> --prompt=<prompt>` with `~/.gemini/settings.json` written first
//!   (the turn limit goes there) ([`gemini`]).
//! - `aider`: `aider [--model openai/m] --yes-always --no-auto-commits … <args…>
//!   --message=<prompt>` with `OPENAI_API_BASE` from `OPENAI_BASE_URL` and
//!   `~/.aider.model.metadata.json` written first; plain text out ([`aider`]).
//! - `hermes`: `hermes --yolo --usage-file ~/.hermes/paddock-usage.json <args…>
//!   --oneshot=<prompt>` with `~/.hermes/config.yaml` generated from `OPENAI_BASE_URL`; the
//!   final text out, usage from the usage file ([`hermes`]).
//! - `openclaw`: `openclaw agent exec --json --timeout 86400 [--config
//!   ~/.openclaw/paddock.json] [--model paddock/m] <args…> -- <prompt>` with the config
//!   generated from `OPENAI_BASE_URL`; one JSON envelope out when it exits ([`openclaw`]).
//! - `custom`: `<command…> <args…> <prompt>` from `PADDOCK_AGENT_COMMAND`; text or Paddock's
//!   event JSON lines out ([`custom`]).
//!
//! Tool permissions are one policy for every CLI (docs/agents.md, "Tool permissions"): inside
//! the pod the agent may run all its tools without asking; `spec.approvals.toolUse` gates what
//! needs a human, where the CLI can ask an outside program (Claude Code).
//!
//! The prompt goes after `--` so a prompt starting with `-` (or a variadic option among the
//! extra args) can never be read as an option. Qwen Code reads no prompt after `--`, so it
//! gets `--prompt=<prompt>`: the `=` form keeps a leading `-` as text. `PADDOCK_AGENT_BIN`
//! replaces the program name of every CLI but `shell` (tests replay recorded streams with it).

pub mod aider;
pub mod claude;
pub mod codex;
pub mod custom;
pub mod gemini;
pub mod hermes;
pub mod openclaw;
pub mod opencode;
pub mod process;
pub mod qwen;
pub mod shell;

use std::path::PathBuf;
use std::str::FromStr;

use paddock_crds::events::RunnerEvent;

use crate::config::Env;

/// The agent CLIs the runner can drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentKind {
    /// Anthropic's Claude Code (`claude`).
    ClaudeCode,
    /// OpenAI's Codex CLI (`codex`).
    Codex,
    /// Qwen Code (`qwen`), over an OpenAI-compatible Chat Completions endpoint.
    QwenCode,
    /// OpenCode (`opencode`), over an OpenAI-compatible Chat Completions endpoint.
    OpenCode,
    /// `sh -c <prompt>`: for tests, demos and scripted jobs.
    Shell,
    /// aider (`aider`, PyPI `aider-chat`), over an OpenAI-compatible Chat Completions endpoint;
    /// edits through text blocks, plain text output.
    Aider,
    /// Hermes Agent (`hermes`, PyPI `hermes-agent`) in one-shot mode, over an
    /// OpenAI-compatible Chat Completions endpoint.
    Hermes,
    /// Any command (`PADDOCK_AGENT_COMMAND`) with the given output mode.
    Custom(custom::Output),
    /// Google's Gemini CLI (`gemini`, npm `@google/gemini-cli`), over the Gemini API.
    GeminiCli,
    /// OpenClaw (`openclaw`, npm `openclaw`) with `agent exec`, over an OpenAI-compatible Chat
    /// Completions endpoint; one JSON envelope out.
    OpenClaw,
}

impl AgentKind {
    /// The adapter name (`claude-code`, `codex`, `qwen-code`, `opencode`, `shell`), as in
    /// `spec.agent` and events.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentKind::ClaudeCode => "claude-code",
            AgentKind::Codex => "codex",
            AgentKind::QwenCode => "qwen-code",
            AgentKind::OpenCode => "opencode",
            AgentKind::Shell => "shell",
            AgentKind::Custom(_) => "custom",
            AgentKind::Aider => "aider",
            AgentKind::Hermes => "hermes",
            AgentKind::GeminiCli => "gemini-cli",
            AgentKind::OpenClaw => "openclaw",
        }
    }
}

impl FromStr for AgentKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "claude-code" => Ok(AgentKind::ClaudeCode),
            "codex" => Ok(AgentKind::Codex),
            "qwen-code" => Ok(AgentKind::QwenCode),
            "opencode" => Ok(AgentKind::OpenCode),
            "shell" => Ok(AgentKind::Shell),
            "custom" => Ok(AgentKind::Custom(custom::Output::Text)),
            "aider" => Ok(AgentKind::Aider),
            "hermes" => Ok(AgentKind::Hermes),
            "gemini-cli" => Ok(AgentKind::GeminiCli),
            "openclaw" => Ok(AgentKind::OpenClaw),
            other => Err(format!(
                "unknown agent {other:?} (expected claude-code, codex, qwen-code, opencode, shell, custom, aider, hermes, gemini-cli or openclaw)"
            )),
        }
    }
}

/// What to run: the adapter and its inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentSpec {
    /// Which adapter.
    pub kind: AgentKind,
    /// The task, verbatim.
    pub prompt: String,
    /// Model name passed to the CLI, if any.
    pub model: Option<String>,
    /// Extra CLI arguments (`PADDOCK_AGENT_ARGS`), placed before the prompt.
    pub args: Vec<String>,
    /// Turn limit (Claude Code `--max-turns`, Qwen Code `--max-session-turns`, Gemini CLI
    /// `model.maxSessionTurns` in its settings file; Codex and OpenCode have no such flag and
    /// ignore it).
    pub max_turns: Option<u32>,
}

/// A fully built command line (pure data; see [`build_invocation`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// Program (looked up in `PATH`).
    pub program: String,
    /// Arguments after the program name.
    pub args: Vec<String>,
    /// Variables added to the inherited environment.
    pub env: Vec<(String, String)>,
    /// Directories to create before starting (e.g. `CODEX_HOME`).
    pub create_dirs: Vec<PathBuf>,
    /// Files to write before starting, as (path, contents), parent directories created and an
    /// existing file replaced (e.g. Qwen Code's `~/.qwen/settings.json`).
    pub files: Vec<(PathBuf, String)>,
}

/// Claude Code's `--permission-mode` without ToolUse rules: no permission checks (the pod is
/// the sandbox).
pub const CLAUDE_FREE_MODE: &str = "bypassPermissions";
/// Claude Code's `--permission-mode` with ToolUse rules: every call that is not read-only asks
/// the permission-prompt tool (the runner's MCP server, [`crate::mcp`]).
pub const CLAUDE_GATED_MODE: &str = "default";
/// Codex's flag for a run with no sandbox of its own and no approvals (the pod is the sandbox).
pub const CODEX_FREE_FLAG: &str = "--dangerously-bypass-approvals-and-sandbox";

/// Builds the command line for `spec` given the container environment.
pub fn build_invocation(spec: &AgentSpec, env: &Env) -> Invocation {
    let bin = |default: &str| env.get("PADDOCK_AGENT_BIN").unwrap_or(default).to_string();
    match spec.kind {
        AgentKind::Shell => Invocation {
            program: "sh".into(),
            args: vec!["-c".into(), spec.prompt.clone()],
            env: Vec::new(),
            create_dirs: Vec::new(),
            files: Vec::new(),
        },
        AgentKind::Aider => aider::invocation(spec, env, bin("aider")),
        AgentKind::Hermes => hermes::invocation(spec, env, bin("hermes")),
        AgentKind::GeminiCli => gemini::invocation(spec, env, bin("gemini")),
        AgentKind::OpenClaw => openclaw::invocation(spec, env, bin("openclaw")),
        AgentKind::Custom(_) => {
            // Validated by `RunConfig::from_env`; an unusable value starts nothing (exit 127).
            let mut command = env
                .get("PADDOCK_AGENT_COMMAND")
                .and_then(|raw| custom::parse_command(raw).ok())
                .unwrap_or_else(|| vec![String::new()]);
            let program = command.remove(0);
            command.extend(spec.args.iter().cloned());
            command.push(spec.prompt.clone());
            Invocation {
                program,
                args: command,
                env: Vec::new(),
                create_dirs: Vec::new(),
                files: Vec::new(),
            }
        }
        AgentKind::ClaudeCode => {
            // Free inside the pod: no permission checks at all, unless ToolUse rules must see
            // the calls; then every call Claude Code does not consider read-only goes to the
            // runner's permission-prompt server, which lets through what no rule names.
            let gated = env.get("PADDOCK_TOOL_RULES").is_some();
            let mode = if gated { CLAUDE_GATED_MODE } else { CLAUDE_FREE_MODE };
            let mut args: Vec<String> = [
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--permission-mode",
                mode,
            ]
            .map(String::from)
            .to_vec();
            if let Some(m) = &spec.model {
                args.extend(["--model".into(), m.clone()]);
            }
            if let Some(n) = spec.max_turns {
                args.extend(["--max-turns".into(), n.to_string()]);
            }
            if let Some(id) = env.get(crate::session::RESUME_ID_ENV) {
                args.extend(["--resume".into(), id.to_string()]);
            }
            if let Some(rules) = env.get("PADDOCK_TOOL_RULES") {
                // Tool calls that need permission go to the runner's MCP server (crate::mcp).
                let mut server_env = serde_json::Map::new();
                server_env.insert("PADDOCK_TOOL_RULES".into(), rules.into());
                for k in ["PADDOCK_WORKSPACE", "PADDOCK_DECISIONS_FILE", "PADDOCK_RUN"] {
                    if let Some(v) = env.get(k) {
                        server_env.insert(k.into(), v.into());
                    }
                }
                let config = serde_json::json!({"mcpServers": {"paddock": {
                    "type": "stdio",
                    "command": env.get("PADDOCK_RUNNER_BIN").unwrap_or("paddock-runner"),
                    "args": ["permission-prompt"],
                    "env": server_env,
                }}});
                args.extend([
                    "--permission-prompt-tool".into(),
                    "mcp__paddock__approve".into(),
                    "--mcp-config".into(),
                    config.to_string(),
                ]);
            }
            args.extend(spec.args.iter().cloned());
            args.extend(["--".into(), spec.prompt.clone()]);
            let mut extra = Vec::new();
            for (k, v) in [
                ("DISABLE_TELEMETRY", "1"),
                ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
            ] {
                if env.get(k).is_none() {
                    extra.push((k.to_string(), v.to_string()));
                }
            }
            Invocation {
                program: bin("claude"),
                args,
                env: extra,
                create_dirs: Vec::new(),
                files: Vec::new(),
            }
        }
        AgentKind::Codex => {
            // The pod is the sandbox: Codex's own (bubblewrap) sandbox cannot create namespaces
            // under the restricted Pod Security profile (no capabilities, seccomp RuntimeDefault),
            // so every command would fail with `-s workspace-write`; and `codex exec` has nobody
            // to ask for approvals. Its exec policy still refuses `rm -f`/`rm -rf` without an
            // approver, unless a rule allows them: `$CODEX_HOME/rules/paddock.rules`.
            let mut args: Vec<String> = ["exec", "--json", "--skip-git-repo-check", CODEX_FREE_FLAG]
                .map(String::from)
                .to_vec();
            if let Some(m) = &spec.model {
                args.extend(["-m".into(), m.clone()]);
            }
            if let Some(base) = env.get("OPENAI_BASE_URL") {
                // TOML basic strings accept JSON string escapes.
                let base = serde_json::to_string(base).unwrap_or_else(|_| "\"\"".into());
                for kv in [
                    "model_provider=\"paddock\"".to_string(),
                    "model_providers.paddock.name=\"paddock\"".to_string(),
                    format!("model_providers.paddock.base_url={base}"),
                    "model_providers.paddock.wire_api=\"responses\"".to_string(),
                    "model_providers.paddock.env_key=\"OPENAI_API_KEY\"".to_string(),
                ] {
                    args.extend(["-c".into(), kv]);
                }
            }
            args.extend(spec.args.iter().cloned());
            // `codex exec [exec options] resume -- <id> <prompt>` continues a saved session.
            if let Some(id) = env.get(crate::session::RESUME_ID_ENV) {
                args.extend(["resume".into(), "--".into(), id.to_string()]);
            } else {
                args.push("--".into());
            }
            args.push(spec.prompt.clone());
            let home = PathBuf::from(env.get("HOME").unwrap_or("/home/paddock"));
            let codex_home = env
                .get("CODEX_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".codex"));
            Invocation {
                program: bin("codex"),
                args,
                env: vec![("CODEX_HOME".into(), codex_home.to_string_lossy().into_owned())],
                files: vec![(codex_home.join("rules/paddock.rules"), codex::RULES.to_string())],
                create_dirs: vec![codex_home],
            }
        }
        AgentKind::QwenCode => {
            let mut args: Vec<String> = ["-o", "stream-json", "--yolo"].map(String::from).to_vec();
            if let Some(m) = &spec.model {
                args.extend(["-m".into(), m.clone()]);
            }
            if let Some(n) = spec.max_turns {
                args.extend(["--max-session-turns".into(), n.to_string()]);
            }
            args.extend(spec.args.iter().cloned());
            // Qwen Code ignores words after `--`; in `--prompt=<p>` a leading `-` stays text.
            args.push(format!("--prompt={}", spec.prompt));
            let home = PathBuf::from(env.get("HOME").unwrap_or("/home/paddock"));
            let mut extra = Vec::new();
            if env.get("QWEN_CODE_SUPPRESS_YOLO_WARNING").is_none() {
                extra.push(("QWEN_CODE_SUPPRESS_YOLO_WARNING".into(), "1".into()));
            }
            Invocation {
                program: bin("qwen"),
                args,
                env: extra,
                create_dirs: Vec::new(),
                files: vec![(home.join(".qwen/settings.json"), qwen::settings_json())],
            }
        }
        AgentKind::OpenCode => {
            let mut args: Vec<String> = ["run", "--format", "json"].map(String::from).to_vec();
            let base = env.get("OPENAI_BASE_URL");
            if let Some(m) = &spec.model {
                // With OPENAI_BASE_URL the model belongs to the generated `paddock` provider;
                // otherwise it is passed as given (`<provider>/<model>`).
                let m = if base.is_some() {
                    format!("{}/{m}", opencode::PROVIDER)
                } else {
                    m.clone()
                };
                args.extend(["-m".into(), m]);
            }
            args.extend(spec.args.iter().cloned());
            args.push("--".into());
            // `opencode run` joins its message words with one space after wrapping every word
            // that contains a space in double quotes; words split at spaces join back to the
            // prompt verbatim.
            args.extend(spec.prompt.split(' ').map(String::from));
            let mut extra = Vec::new();
            for (k, v) in opencode::DISABLE_ENV {
                if env.get(k).is_none() {
                    extra.push((k.to_string(), v.to_string()));
                }
            }
            if env.get("OPENCODE_CONFIG_CONTENT").is_none() {
                extra.push((
                    "OPENCODE_CONFIG_CONTENT".into(),
                    opencode::config_content(base, spec.model.as_deref()),
                ));
            }
            Invocation {
                program: bin("opencode"),
                args,
                env: extra,
                create_dirs: Vec::new(),
                files: Vec::new(),
            }
        }
    }
}

/// Turns one CLI's output lines into events. Implementations are pure (no I/O) so they are
/// tested line by line on recorded streams.
pub trait StreamMapper: Send {
    /// Events for one stdout line (without its newline). Lines that are not the CLI's JSON
    /// become `log` events on `stdout`.
    fn stdout_line(&mut self, line: &str) -> Vec<RunnerEvent>;

    /// Events for one stderr line: a `log` event on `stderr`.
    fn stderr_line(&mut self, line: &str) -> Vec<RunnerEvent> {
        log_event("stderr", line)
    }

    /// Events after the CLI exited (e.g. Codex's `final`).
    fn finish(&mut self) -> Vec<RunnerEvent> {
        Vec::new()
    }
}

/// The `final` event a JSON-lines CLI ends with: its error when it reported one, else its last
/// assistant message, else nothing.
pub fn final_event(failure: Option<String>, last_message: Option<String>) -> Vec<RunnerEvent> {
    match (failure, last_message) {
        (Some(err), _) => vec![RunnerEvent::Final {
            text: err,
            is_error: true,
        }],
        (None, Some(text)) => vec![RunnerEvent::Final { text, is_error: false }],
        (None, None) => Vec::new(),
    }
}

/// A `log` event for a non-blank line, nothing for a blank one.
pub fn log_event(stream: &str, line: &str) -> Vec<RunnerEvent> {
    if line.trim().is_empty() {
        Vec::new()
    } else {
        vec![RunnerEvent::Log {
            stream: stream.into(),
            text: line.to_string(),
        }]
    }
}

/// The mapper for `kind`; `model` is the configured model (Codex and OpenCode do not report
/// one).
pub fn mapper_for(kind: AgentKind, model: Option<String>) -> Box<dyn StreamMapper> {
    match kind {
        AgentKind::ClaudeCode => Box::new(claude::ClaudeMapper::default()),
        AgentKind::Codex => Box::new(codex::CodexMapper::new(model)),
        AgentKind::QwenCode => Box::new(qwen::mapper()),
        AgentKind::OpenCode => Box::new(opencode::OpenCodeMapper::new(model)),
        AgentKind::Shell => Box::new(shell::ShellMapper),
        AgentKind::Custom(output) => Box::new(custom::CustomMapper::new(output)),
        AgentKind::Aider => Box::new(aider::AiderMapper::new(model)),
        // The usage file is where hermes::invocation put it: under the runner's own HOME, which
        // the CLI inherits.
        AgentKind::Hermes => {
            let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/home/paddock"), PathBuf::from);
            Box::new(hermes::HermesMapper::new(model, Some(hermes::usage_path(&home))))
        }
        AgentKind::GeminiCli => Box::new(gemini::GeminiMapper::default()),
        AgentKind::OpenClaw => Box::new(openclaw::OpenClawMapper::new(model)),
    }
}

/// Most lines an adapter keeps from a CLI's output until the CLI exits (Aider's reply, Hermes'
/// final text, OpenClaw's JSON envelope); further lines are not kept (they still become `log`
/// events where the adapter emits them).
pub const MAX_BUFFERED_LINES: usize = 4096;
/// Longest line (bytes) an adapter keeps in such a buffer; longer ones are cut. With
/// [`MAX_BUFFERED_LINES`], a CLI's output can hold at most 64 MiB of the runner's memory.
pub const MAX_BUFFERED_LINE_BYTES: usize = 16 * 1024;

/// Appends `line` to an adapter's buffer within [`MAX_BUFFERED_LINES`] and
/// [`MAX_BUFFERED_LINE_BYTES`].
pub(crate) fn push_bounded(buf: &mut Vec<String>, line: &str) {
    if buf.len() < MAX_BUFFERED_LINES {
        buf.push(paddock_crds::events::truncate(line, MAX_BUFFERED_LINE_BYTES));
    }
}

/// Feeds every line of `text` to `m` as stdout, then finishes it: the events a recorded stream
/// maps to (the adapters' tests).
#[cfg(test)]
pub(crate) fn map_stdout(mut m: impl StreamMapper, text: &str) -> Vec<RunnerEvent> {
    let mut out: Vec<RunnerEvent> = text.lines().flat_map(|l| m.stdout_line(l)).collect();
    out.extend(m.finish());
    out
}

/// Compact JSON of a value, or the string itself when it is a JSON string.
pub(crate) fn compact(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                "--",
                "-rf do it"
            ]
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
            ("PADDOCK_TOOL_RULES", rules),
            ("PADDOCK_WORKSPACE", "/workspace"),
            ("PADDOCK_RUN", "r1"),
            ("PADDOCK_RUNNER_BIN", "/usr/local/bin/paddock-runner"),
        ]);
        let mut s = spec(AgentKind::ClaudeCode);
        s.args.clear();
        s.max_turns = None;
        let inv = build_invocation(&s, &env);
        assert_eq!(
            inv.args[..10],
            [
                "-p",
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
        assert_eq!(inv.args[10], "--mcp-config");
        let config: serde_json::Value = serde_json::from_str(&inv.args[11]).unwrap();
        assert_eq!(
            config,
            serde_json::json!({"mcpServers": {"paddock": {"type": "stdio",
                "command": "/usr/local/bin/paddock-runner", "args": ["permission-prompt"],
                "env": {"PADDOCK_TOOL_RULES": rules, "PADDOCK_WORKSPACE": "/workspace", "PADDOCK_RUN": "r1"}}}})
        );
        assert_eq!(inv.args[12..], ["--".to_string(), "-rf do it".to_string()]);
        assert!(!inv.args.iter().any(|a| a == "bypassPermissions"));
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
            &Env::from_pairs([("HOME", "/h"), ("GEMINI_CLI_HOME", "/g"), ("PADDOCK_AGENT_BIN", "/x")]),
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
        ] {
            assert_eq!(k.as_str().parse::<AgentKind>(), Ok(k));
        }
        assert!("qwen".parse::<AgentKind>().is_err());
        assert!("aider-chat"
            .parse::<AgentKind>()
            .unwrap_err()
            .contains("aider, hermes, gemini-cli or openclaw"));
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
        let inv = build_invocation(&spec(AgentKind::Shell), &Env::from_pairs([("PADDOCK_AGENT_BIN", "/x")]));
        assert_eq!(
            (inv.program.as_str(), inv.args.as_slice()),
            ("sh", &["-c".to_string(), "-rf do it".to_string()][..])
        );
        let inv = build_invocation(
            &spec(AgentKind::ClaudeCode),
            &Env::from_pairs([("PADDOCK_AGENT_BIN", "/x")]),
        );
        assert_eq!(inv.program, "/x");
    }
}
