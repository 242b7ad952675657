//! The `claude-code` adapter: maps Claude Code's `--output-format stream-json` lines.
//!
//! | CLI line | events |
//! |---|---|
//! | `{"type":"system","subtype":"init","model","session_id"}` | `agent_started` |
//! | `{"type":"assistant","message":{"content":[…]}}` | `message` per non-empty `text` block, `tool_call` per `tool_use` block (input as compact JSON) |
//! | `{"type":"user","message":{"content":[{"type":"tool_result",…}]}}` | `tool_result` (`is_error`, text content joined) |
//! | `{"type":"system","subtype":"permission_denied",…}` | `permission_denied` |
//! | `{"type":"result",…}` | `permission_denied` for each `permission_denials` entry not reported yet, `usage` (input = `input_tokens` + cache creation + cache read, `output_tokens`, `num_turns`, `total_cost_usd`), `final` (`result` text, else `error.message`, else `errors` joined, else the subtype; `is_error` when `is_error` is true or the subtype starts with `error`) |
//!
//! Other JSON lines (stream events, hooks, …) are ignored; non-JSON lines become `log` events.

use paddock_crds::runner::vars;
use std::collections::HashSet;

use paddock_crds::events::{RunnerEvent, Usage};
use serde_json::Value;

use std::path::{Path, PathBuf};

use paddock_crds::AgentName;

use super::adapter::{home, program, Adapter, SessionFiles, RESUME_ID_ENV};
use super::spec::{AgentKind, AgentSpec, Invocation};
use super::stream::{compact, log_event, StreamMapper};
use crate::env::Env;

/// Claude Code's `--permission-mode` without ToolUse rules: no permission checks (the pod is
/// the sandbox).
pub const CLAUDE_FREE_MODE: &str = "bypassPermissions";
/// Claude Code's `--permission-mode` with ToolUse rules: every call that is not read-only asks
/// the permission-prompt tool (the runner's MCP server, [`crate::mcp`]).
pub const CLAUDE_GATED_MODE: &str = "default";
/// State of one Claude Code stream (or of a CLI printing the same shape, see [`super::qwen`]).
#[derive(Debug)]
pub struct ClaudeMapper {
    denied_ids: HashSet<String>,
    /// Adapter name reported in `agent_started`.
    agent: &'static str,
    /// Whether the result's `input_tokens` already count cached input (Qwen Code's do;
    /// Claude Code's do not, so its cache tokens are added).
    cache_in_input: bool,
}

impl Default for ClaudeMapper {
    fn default() -> Self {
        Self::with_agent("claude-code", false)
    }
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn u(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Text of a `tool_result` content: a string, or the `text` of its text blocks joined by
/// newlines.
fn tool_result_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        Some(other) => compact(other),
        None => String::new(),
    }
}

impl ClaudeMapper {
    /// A mapper for a CLI printing Claude Code's `stream-json` shape: `agent` is reported in
    /// `agent_started`; `cache_in_input` says whether the result's `input_tokens` already
    /// include cached input tokens (then cache counts are not added to them).
    pub fn with_agent(agent: &'static str, cache_in_input: bool) -> Self {
        Self {
            denied_ids: HashSet::new(),
            agent,
            cache_in_input,
        }
    }

    fn denied(&mut self, v: &Value) -> RunnerEvent {
        if let Some(id) = s(v, "tool_use_id") {
            self.denied_ids.insert(id);
        }
        let name = s(v, "tool_name")
            .or_else(|| s(v, "name"))
            .or_else(|| s(v, "tool"))
            .unwrap_or_default();
        let input = v
            .get("tool_input")
            .or_else(|| v.get("input"))
            .map(compact)
            .or_else(|| s(v, "message"))
            .unwrap_or_default();
        RunnerEvent::PermissionDenied { name, input }
    }

    fn map(&mut self, v: &Value) -> Vec<RunnerEvent> {
        let mut out = Vec::new();
        match v.get("type").and_then(Value::as_str) {
            Some("system") => match v.get("subtype").and_then(Value::as_str) {
                Some("init") => out.push(RunnerEvent::AgentStarted {
                    agent: self.agent.into(),
                    model: s(v, "model"),
                    session_id: s(v, "session_id"),
                }),
                Some("permission_denied") => out.push(self.denied(v)),
                _ => {}
            },
            Some("assistant") => {
                for block in v
                    .pointer("/message/content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match block.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            let text = s(block, "text").unwrap_or_default();
                            if !text.trim().is_empty() {
                                out.push(RunnerEvent::Message { text });
                            }
                        }
                        Some("tool_use") => out.push(RunnerEvent::ToolCall {
                            id: s(block, "id").unwrap_or_default(),
                            name: s(block, "name").unwrap_or_default(),
                            input: block.get("input").map(|i| i.to_string()).unwrap_or_default(),
                        }),
                        _ => {}
                    }
                }
            }
            Some("user") => {
                for block in v
                    .pointer("/message/content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if block.get("type").and_then(Value::as_str) == Some("tool_result") {
                        out.push(RunnerEvent::ToolResult {
                            id: s(block, "tool_use_id").unwrap_or_default(),
                            is_error: block.get("is_error").and_then(Value::as_bool).unwrap_or(false),
                            output: tool_result_text(block.get("content")),
                        });
                    }
                }
            }
            Some("result") => {
                for d in v
                    .get("permission_denials")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let seen = s(d, "tool_use_id").is_some_and(|id| self.denied_ids.contains(&id));
                    if !seen {
                        out.push(self.denied(d));
                    }
                }
                let usage = v.get("usage").cloned().unwrap_or(Value::Null);
                let cache = if self.cache_in_input {
                    0
                } else {
                    u(&usage, "cache_creation_input_tokens") + u(&usage, "cache_read_input_tokens")
                };
                out.push(RunnerEvent::Usage(Usage {
                    input_tokens: u(&usage, "input_tokens") + cache,
                    output_tokens: u(&usage, "output_tokens"),
                    turns: u32::try_from(u(v, "num_turns")).unwrap_or(u32::MAX),
                    cost_usd: v.get("total_cost_usd").and_then(Value::as_f64),
                }));
                let subtype = s(v, "subtype").unwrap_or_default();
                let is_error =
                    v.get("is_error").and_then(Value::as_bool).unwrap_or(false) || subtype.starts_with("error");
                let text = match s(v, "result")
                    .or_else(|| v.pointer("/error/message").and_then(Value::as_str).map(str::to_string))
                {
                    Some(t) => t,
                    None => {
                        let errors: Vec<String> = v
                            .get("errors")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .map(compact)
                            .collect();
                        if errors.is_empty() {
                            subtype
                        } else {
                            errors.join("; ")
                        }
                    }
                };
                out.push(RunnerEvent::Final { text, is_error });
            }
            _ => {}
        }
        out
    }
}

impl StreamMapper for ClaudeMapper {
    fn stdout_line(&mut self, line: &str) -> Vec<RunnerEvent> {
        match serde_json::from_str::<Value>(line.trim()) {
            Ok(v) if v.is_object() => self.map(&v),
            _ => log_event("stdout", line),
        }
    }
}

/// The `claude-code` adapter ([`AgentName::ClaudeCode`]).
#[derive(Debug, Default)]
pub struct ClaudeCode;

impl Adapter for ClaudeCode {
    fn name(&self) -> AgentName {
        AgentName::ClaudeCode
    }

    /// `claude -p --output-format stream-json --verbose --permission-mode bypassPermissions
    /// [--model m] [--max-turns n] [--resume id] <args…> -- <prompt>`; with ToolUse rules
    /// `--permission-mode default --permission-prompt-tool mcp__paddock__approve --mcp-config …`.
    fn invocation(&self, spec: &AgentSpec, env: &Env) -> Invocation {
        // Free inside the pod: no permission checks at all, unless ToolUse rules must see
        // the calls; then every call Claude Code does not consider read-only goes to the
        // runner's permission-prompt server, which lets through what no rule names.
        let gated = env.get(vars::TOOL_RULES).is_some();
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
        if let Some(id) = env.get(RESUME_ID_ENV) {
            args.extend(["--resume".into(), id.to_string()]);
        }
        if let Some(rules) = env.get(vars::TOOL_RULES) {
            // Tool calls that need permission go to the runner's MCP server (crate::mcp).
            let mut server_env = serde_json::Map::new();
            server_env.insert(vars::TOOL_RULES.into(), rules.into());
            for k in [vars::WORKSPACE, vars::DECISIONS_FILE, vars::RUN] {
                if let Some(v) = env.get(k) {
                    server_env.insert(k.into(), v.into());
                }
            }
            let config = serde_json::json!({"mcpServers": {"paddock": {
                "type": "stdio",
                "command": env.get(vars::RUNNER_BIN).unwrap_or("paddock-runner"),
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
            program: program(env, "claude"),
            args,
            env: extra,
            create_dirs: Vec::new(),
            files: Vec::new(),
        }
    }

    fn mapper(&self, _kind: AgentKind, _model: Option<String>) -> Box<dyn StreamMapper> {
        Box::new(ClaudeMapper::default())
    }

    fn sessions(&self) -> Option<&dyn SessionFiles> {
        Some(self)
    }
}

/// Claude Code's sessions: `~/.claude/projects/<project dir of the cwd>/<id>.jsonl`
/// (`$CLAUDE_CONFIG_DIR` replaces `~/.claude`).
impl SessionFiles for ClaudeCode {
    fn root(&self, env: &Env) -> PathBuf {
        env.get("CLAUDE_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| home(env).join(".claude"))
    }

    fn find(&self, root: &Path, id: &str) -> Option<PathBuf> {
        std::fs::read_dir(root.join("projects"))
            .ok()?
            .flatten()
            .map(|d| d.path().join(format!("{id}.jsonl")))
            .find(|p| p.is_file())
    }

    /// The project folder is named after the working directory, which may differ from the
    /// earlier run's (another repo.workdir).
    fn restore_path(&self, root: &Path, _rel: &Path, id: &str, cwd: &Path) -> PathBuf {
        root.join("projects").join(project_dir(cwd)).join(format!("{id}.jsonl"))
    }
}

/// Claude Code's project folder name for a working directory: every character that is not an
/// ASCII letter or digit becomes `-` (`/workspace/repo` → `-workspace-repo`).
pub fn project_dir(cwd: &Path) -> String {
    cwd.to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_all(text: &str) -> Vec<RunnerEvent> {
        crate::agent::map_stdout(ClaudeMapper::default(), text)
    }

    #[test]
    fn maps_recorded_shape_exactly() {
        let events = map_all(include_str!("../../tests/fixtures/claude-code-sample.jsonl"));
        let expected = vec![
            RunnerEvent::AgentStarted {
                agent: "claude-code".into(),
                model: Some("claude-sonnet-4-5".into()),
                session_id: Some("6d3c1a52-0c7b-4a8e-9a51-2f1d8e3b7c10".into()),
            },
            RunnerEvent::Message {
                text: "I'll create the file.".into(),
            },
            RunnerEvent::ToolCall {
                id: "toolu_01".into(),
                name: "Write".into(),
                input: r#"{"content":"hello\n","file_path":"/workspace/work/hello.txt"}"#.into(),
            },
            RunnerEvent::ToolResult {
                id: "toolu_01".into(),
                is_error: false,
                output: "File created successfully at: /workspace/work/hello.txt".into(),
            },
            RunnerEvent::ToolCall {
                id: "toolu_02".into(),
                name: "Write".into(),
                input: r#"{"content":"x","file_path":"/etc/x"}"#.into(),
            },
            RunnerEvent::PermissionDenied {
                name: "Write".into(),
                input: r#"{"content":"x","file_path":"/etc/x"}"#.into(),
            },
            RunnerEvent::ToolResult {
                id: "toolu_02".into(),
                is_error: true,
                output: "Claude requested permissions to write to /etc/x, but you haven't granted it yet.".into(),
            },
            RunnerEvent::Log {
                stream: "stdout".into(),
                text: "not json at all".into(),
            },
            RunnerEvent::Message {
                text: "Created hello.txt.".into(),
            },
            RunnerEvent::Usage(Usage {
                input_tokens: 10 + 100 + 200,
                output_tokens: 50,
                turns: 3,
                cost_usd: Some(0.0123),
            }),
            RunnerEvent::Final {
                text: "Created hello.txt.".into(),
                is_error: false,
            },
        ];
        assert_eq!(events, expected);
    }

    /// The stream real Claude Code 2.1.328 printed against the scripted model (e2e fixture).
    #[test]
    fn maps_real_claude_code_stream() {
        let events = map_all(include_str!("../../../e2e/fixtures/claude-code-edit-file.jsonl"));
        let input =
            serde_json::json!({"file_path": "hello.txt", "content": "Hello from the scripted model\n"}).to_string();
        let expected = vec![
            RunnerEvent::AgentStarted {
                agent: "claude-code".into(),
                model: Some("scripted-edit-file".into()),
                session_id: Some("85f1985a-f6ac-4402-9431-0fd1450ed04a".into()),
            },
            RunnerEvent::Message { text: "I'll create hello.txt.".into() },
            RunnerEvent::ToolCall { id: "toolu_sm_000001".into(), name: "Write".into(), input },
            RunnerEvent::ToolResult {
                id: "toolu_sm_000001".into(),
                is_error: false,
                output: "File created successfully at: hello.txt (file state is current in your context — no need to Read it back)"
                    .into(),
            },
            RunnerEvent::Message { text: "I created hello.txt.".into() },
            RunnerEvent::Usage(Usage { input_tokens: 2500, output_tokens: 50, turns: 2, cost_usd: Some(0.011) }),
            RunnerEvent::Final { text: "I created hello.txt.".into(), is_error: false },
        ];
        assert_eq!(events, expected);
    }

    #[test]
    fn result_errors_and_denials_from_result() {
        let line = r#"{"type":"result","subtype":"error_max_turns","is_error":false,"num_turns":2,"usage":{"input_tokens":1,"output_tokens":2},"permission_denials":[{"tool_name":"Bash","tool_use_id":"t9","tool_input":{"command":"rm -rf /"}}]}"#;
        assert_eq!(
            map_all(line),
            vec![
                RunnerEvent::PermissionDenied {
                    name: "Bash".into(),
                    input: r#"{"command":"rm -rf /"}"#.into()
                },
                RunnerEvent::Usage(Usage {
                    input_tokens: 1,
                    output_tokens: 2,
                    turns: 2,
                    cost_usd: None
                }),
                RunnerEvent::Final {
                    text: "error_max_turns".into(),
                    is_error: true
                },
            ]
        );
    }

    #[test]
    fn tool_result_blocks_are_joined() {
        let line = r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"a","content":[{"type":"text","text":"one"},{"type":"image"},{"type":"text","text":"two"}]}]}}"#;
        assert_eq!(
            map_all(line),
            vec![RunnerEvent::ToolResult {
                id: "a".into(),
                is_error: false,
                output: "one\ntwo".into()
            }]
        );
        assert_eq!(map_all(r#"{"type":"stream_event"}"#), vec![]);
        assert_eq!(
            map_all("[1,2]"),
            vec![RunnerEvent::Log {
                stream: "stdout".into(),
                text: "[1,2]".into()
            }]
        );
    }
}
