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
//! The mapper also counts assistant turns (distinct `message.id`s of `assistant` lines) for
//! [`StreamMapper::turns`].

use paddock_crds::runner::vars;
use std::collections::HashSet;

use paddock_crds::events::{RunnerEvent, Usage};
use serde_json::Value;

use std::path::{Path, PathBuf};

use paddock_crds::AgentName;

use super::adapter::{home, mcp_server_env, program, Adapter, SessionFiles, RESUME_ID_ENV};
use super::spec::{AgentKind, AgentSpec, Invocation};
use super::stream::{compact, log_event, StreamMapper};
use crate::env::Env;

/// Claude Code's `--permission-mode` without ToolUse rules: no permission checks (the pod is
/// the sandbox).
pub const CLAUDE_FREE_MODE: &str = "bypassPermissions";
/// Claude Code's `--permission-mode` with ToolUse rules: every call that is not read-only asks
/// the permission-prompt tool (the runner's MCP server, [`crate::mcp`]).
pub const CLAUDE_GATED_MODE: &str = "default";
/// Claude Code's `--permission-mode` with plan review (`PADDOCK_PLAN_REVIEW=true`): it plans
/// without changing anything until the permission-prompt tool allows its `ExitPlanMode` (a
/// `Plan` gate, [`crate::mcp`]); then it continues in `default` mode.
pub const CLAUDE_PLAN_MODE: &str = "plan";
/// Claude Code's plan-mode exit tool (input `{"plan": str}` in the stream), which the
/// permission prompt turns into a `Plan` gate under plan review ([`crate::mcp`]).
pub const EXIT_PLAN_MODE: &str = "ExitPlanMode";
/// The runner's MCP server as Claude Code names its permission-prompt tool.
pub const PERMISSION_PROMPT_TOOL: &str = "mcp__paddock__approve";
/// The runner's `ask_human` tool as Claude Code names it.
pub const ASK_HUMAN_TOOL: &str = "mcp__paddock__ask_human";

/// One user line of Claude Code's `--input-format stream-json`, without its newline:
/// `{"type":"user","message":{"role":"user","content":"<text>"}}` (compact JSON, so one line
/// whatever `text` holds). The prompt is the first; a human's message written while Claude
/// Code works reaches the model with its next request.
pub fn user_message_line(text: &str) -> String {
    serde_json::json!({"type": "user", "message": {"role": "user", "content": text}}).to_string()
}

/// State of one Claude Code stream (or of a CLI printing the same shape, see [`super::qwen`]).
#[derive(Debug)]
pub struct ClaudeMapper {
    denied_ids: HashSet<String>,
    /// Assistant turns seen: `assistant` lines with a new `message.id` (one answer may span
    /// several lines, one per content block).
    turns: u32,
    /// The `message.id` of the last `assistant` line.
    turn_id: Option<String>,
    /// Whether the last `assistant`/`user` line was an assistant's (for lines without an id).
    in_turn: bool,
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
            turns: 0,
            turn_id: None,
            in_turn: false,
            agent,
            cache_in_input,
        }
    }

    /// Counts an `assistant` line with message id `id` as a turn when it starts one.
    fn count_turn(&mut self, id: Option<&str>) {
        let new = match (id, self.turn_id.as_deref()) {
            (Some(id), Some(last)) => id != last,
            (Some(_), None) => true,
            (None, _) => !self.in_turn,
        };
        if new {
            self.turns = self.turns.saturating_add(1);
        }
        self.turn_id = id.map(str::to_string);
        self.in_turn = true;
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
                self.count_turn(v.pointer("/message/id").and_then(Value::as_str));
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
                self.in_turn = false;
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

    fn turns(&self) -> u32 {
        self.turns
    }
}

/// The `claude-code` adapter ([`AgentName::ClaudeCode`]).
#[derive(Debug, Default)]
pub struct ClaudeCode;

impl Adapter for ClaudeCode {
    fn name(&self) -> AgentName {
        AgentName::ClaudeCode
    }

    /// `claude -p --input-format stream-json --output-format stream-json --verbose
    /// --permission-mode <mode> [--model m] [--max-turns n] [--resume id] [--allowedTools
    /// mcp__paddock__ask_human] [--permission-prompt-tool mcp__paddock__approve] [--mcp-config
    /// <json>] <args…>` with the prompt on stdin ([`user_message_line`]), which stays open for a
    /// human's messages until Claude Code's `result`.
    ///
    /// - mode: `plan` with plan review (`PADDOCK_PLAN_REVIEW=true`), else `default` with ToolUse
    ///   rules (`PADDOCK_TOOL_RULES`), else `bypassPermissions`;
    /// - the permission-prompt tool with plan review or ToolUse rules; `--allowedTools
    ///   mcp__paddock__ask_human` with questions (`PADDOCK_QUESTIONS=true`: Claude Code would
    ///   otherwise refuse the call outside `bypassPermissions`);
    /// - the runner's MCP server ([`mcp_config`]) when any of the three is on;
    /// - env: `DISABLE_TELEMETRY=1`, `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`, and with plan
    ///   review or questions `ENABLE_TOOL_SEARCH=false` (else Claude Code defers `ExitPlanMode`
    ///   and MCP tools behind its ToolSearch tool), each unless the environment sets it.
    fn invocation(&self, spec: &AgentSpec, env: &Env) -> Invocation {
        // Free inside the pod: no permission checks at all, unless ToolUse rules must see
        // the calls; then every call Claude Code does not consider read-only goes to the
        // runner's permission-prompt server, which lets through what no rule names.
        let gated = env.get(vars::TOOL_RULES).is_some();
        let plan = env.is_true(vars::PLAN_REVIEW);
        let questions = env.is_true(vars::QUESTIONS);
        let mode = if plan {
            CLAUDE_PLAN_MODE
        } else if gated {
            CLAUDE_GATED_MODE
        } else {
            CLAUDE_FREE_MODE
        };
        let mut args: Vec<String> = [
            "-p",
            "--input-format",
            "stream-json",
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
        if questions {
            args.extend(["--allowedTools".into(), ASK_HUMAN_TOOL.into()]);
        }
        if gated || plan {
            // Tool calls that need permission go to the runner's MCP server (crate::mcp).
            args.extend(["--permission-prompt-tool".into(), PERMISSION_PROMPT_TOOL.into()]);
        }
        if gated || plan || questions {
            args.extend(["--mcp-config".into(), mcp_config(env).to_string()]);
        }
        args.extend(spec.args.iter().cloned());
        let mut extra = Vec::new();
        let mut defaults = vec![
            ("DISABLE_TELEMETRY", "1"),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
        ];
        if plan || questions {
            defaults.push(("ENABLE_TOOL_SEARCH", "false"));
        }
        for (k, v) in defaults {
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
            stdin: Some(format!("{}\n", user_message_line(&spec.prompt))),
        }
    }

    fn mapper(&self, _kind: AgentKind, _model: Option<String>) -> Box<dyn StreamMapper> {
        Box::new(ClaudeMapper::default())
    }

    fn sessions(&self) -> Option<&dyn SessionFiles> {
        Some(self)
    }

    fn live_messages(&self) -> Option<fn(&str) -> String> {
        Some(user_message_line)
    }
}

/// Claude Code's `--mcp-config`: the runner's MCP server (`paddock-runner permission-prompt`,
/// `PADDOCK_RUNNER_BIN` overriding the program) as server `paddock`, over stdio, with
/// [`mcp_server_env`].
pub fn mcp_config(env: &Env) -> serde_json::Value {
    serde_json::json!({"mcpServers": {"paddock": {
        "type": "stdio",
        "command": env.get(vars::RUNNER_BIN).unwrap_or("paddock-runner"),
        "args": ["permission-prompt"],
        "env": mcp_server_env(env),
    }}})
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

    /// Turns are counted by assistant message: one answer spans several lines (one per
    /// content block) with the same id.
    #[test]
    fn assistant_turns_are_counted_by_message() {
        let mut m = ClaudeMapper::default();
        for line in include_str!("../../../e2e/fixtures/claude-code-edit-file.jsonl").lines() {
            m.stdout_line(line);
        }
        assert_eq!(m.turns(), 2);
        let mut m = ClaudeMapper::default();
        let text = r#"{"type":"assistant","message":{"content":[{"type":"text","text":"a"}]}}"#;
        let result =
            r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t","content":"x"}]}}"#;
        for line in [text, text, result, text] {
            m.stdout_line(line);
        }
        assert_eq!(m.turns(), 2, "without ids: runs of assistant lines");
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
