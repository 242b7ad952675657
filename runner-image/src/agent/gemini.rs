//! The `gemini-cli` adapter: Gemini CLI (`@google/gemini-cli`) with `--output-format
//! stream-json`.
//!
//! Gemini CLI 0.61.0 prints one JSON object a line:
//!
//! | CLI line | events |
//! |---|---|
//! | `{"type":"init","session_id","model"}` | `agent_started` |
//! | `{"type":"message","role":"user","content"}` (the prompt) | none |
//! | `{"type":"message","role":"assistant","content","delta":true}` (a chunk of the streamed text: consecutive chunks are concatenated) | one `message` per run of chunks, emitted when the next non-message line (or the end) arrives; the last one becomes the `final` text |
//! | `{"type":"tool_use","tool_name","tool_id","parameters"}` | `tool_call` (input = `parameters` as compact JSON) |
//! | `{"type":"tool_result","tool_id","status","output"?,"error"?}` | `tool_result` (`output`, or `error.message` with `is_error` when `status` is `error`) |
//! | `{"type":"error","severity","message"}` (a warning, or an invalid model stream) | `error` (`warning: ` prefixed when `severity` is `warning`) |
//! | `{"type":"result","status","error"?,"stats"}` | `usage` (`stats.input_tokens`, which count cached input; `stats.output_tokens`; turns = model answers seen in the stream, as Gemini CLI reports none; no cost: it reports none), `final` (the last assistant message, or `error.message` with `is_error` when `status` is `error`) |
//!
//! Non-JSON lines become `log` events. The endpoint comes from `GOOGLE_GEMINI_BASE_URL` and the
//! key from `GEMINI_API_KEY` (the Gemini API: `POST /v1beta/models/<m>:streamGenerateContent`,
//! key in `x-goog-api-key`); [`settings_json`] selects that auth type and turns off what would
//! phone home. Gemini CLI has no turn-limit flag: the limit goes into the settings
//! (`model.maxSessionTurns`).

use std::path::PathBuf;

use paddock_crds::events::{RunnerEvent, Usage};
use serde_json::{json, Value};

use paddock_crds::AgentName;

use super::adapter::{mcp_server_env, program, Adapter};
use super::spec::{AgentKind, AgentSpec, Invocation};
use super::stream::{compact, log_event, StreamMapper};
use crate::env::Env;

/// The command line: `<program> --output-format stream-json --yolo --skip-trust [-m m] <args…>
/// --prompt=<prompt>`, with [`settings_json`] written to `$GEMINI_CLI_HOME/.gemini/settings.json`
/// (`$HOME` when `GEMINI_CLI_HOME` is unset; Gemini CLI's own rule for its home directory).
///
/// - `--yolo` approves every tool call (the adapter wires no approval hook, so the CRD refuses
///   `toolUse` approvals for it); `--skip-trust` trusts the worktree for this session
///   (without it Gemini CLI 0.61.0 overrides YOLO to the default approval mode in an untrusted
///   folder and refuses to run headless).
/// - The prompt is one argv element in the `--prompt=<p>` form: Gemini CLI (yargs) reads
///   `-p --version` as the version flag, but keeps `--prompt=--version` as the text
///   `--version`. A prompt starting with `/` or holding `@path` is still read by Gemini CLI as
///   a slash command or a file reference, as in its own terminal.
/// - Nothing is added to the environment: Gemini CLI reads `GOOGLE_GEMINI_BASE_URL` (the pod's
///   gateway route `http://127.0.0.1:15001/gemini` when the run configures a Gemini key or base
///   URL) and `GEMINI_API_KEY` (not `GOOGLE_API_KEY`, in this auth mode) itself.
pub fn invocation(spec: &AgentSpec, env: &Env, program: String) -> Invocation {
    let mut args: Vec<String> = ["--output-format", "stream-json", "--yolo", "--skip-trust"]
        .map(String::from)
        .to_vec();
    // Gemini CLI's file tools refuse paths outside its workspace even with --yolo: add the
    // pod's other writable places (they must exist, or Gemini CLI exits 1).
    let scratch = scratch_dirs(env);
    args.extend([
        "--include-directories".to_string(),
        scratch
            .iter()
            .map(|d| d.to_string_lossy())
            .collect::<Vec<_>>()
            .join(","),
    ]);
    if let Some(m) = &spec.model {
        args.extend(["-m".into(), m.clone()]);
    }
    args.extend(spec.args.iter().cloned());
    args.push(format!("--prompt={}", spec.prompt));
    let questions = env.is_true(paddock_crds::runner::vars::QUESTIONS);
    let home = env
        .get("GEMINI_CLI_HOME")
        .filter(|h| !h.is_empty())
        .or_else(|| env.get("HOME"))
        .unwrap_or("/home/paddock");
    Invocation {
        stdin: None,
        program,
        args,
        env: Vec::new(),
        create_dirs: scratch,
        files: vec![(
            PathBuf::from(home).join(".gemini/settings.json"),
            settings_json(spec.max_turns, questions.then(|| mcp_server(env))),
        )],
    }
}

/// The directories added to Gemini CLI's workspace so its file tools reach them: `$HOME` and
/// `$TMPDIR` (default `/tmp`), the writable places of a runner pod besides the worktree.
pub fn scratch_dirs(env: &Env) -> Vec<PathBuf> {
    let home = env.get("HOME").filter(|h| !h.is_empty()).unwrap_or("/home/paddock");
    let tmp = env.get("TMPDIR").filter(|t| !t.is_empty()).unwrap_or("/tmp");
    let mut dirs = vec![PathBuf::from(home)];
    if tmp != home {
        dirs.push(PathBuf::from(tmp));
    }
    dirs
}

/// How long (ms) Gemini CLI waits for one call of the runner's MCP server: `ask_human` waits
/// for a human, so about 24 days (under the 2^31 - 1 ms a JavaScript timer takes; Gemini CLI's
/// default is 10 minutes). The run's own deadline ends it first.
pub const MCP_TIMEOUT_MS: u64 = 2_073_600_000;

/// The runner's MCP server as a Gemini CLI `mcpServers` entry, offering only `ask_human`
/// (`paddock-runner permission-prompt --ask-human-only`; the model sees it as
/// `mcp_paddock_ask_human`): trusted (no confirmation), with the variables it reads
/// ([`mcp_server_env`]) and [`MCP_TIMEOUT_MS`].
pub fn mcp_server(env: &Env) -> Value {
    json!({
        "command": env.get(paddock_crds::runner::vars::RUNNER_BIN).unwrap_or("paddock-runner"),
        "args": ["permission-prompt", "--ask-human-only"],
        "env": mcp_server_env(env),
        "trust": true,
        "timeout": MCP_TIMEOUT_MS,
    })
}

/// Contents of `~/.gemini/settings.json` (under `$GEMINI_CLI_HOME` instead of `$HOME` when that
/// is set: Gemini CLI's home directory) the adapter writes before starting: auth type
/// `gemini-api-key` (without it Gemini CLI exits 41, "Invalid auth method selected"; the key
/// comes from `GEMINI_API_KEY`), usage statistics, telemetry and auto-update (and its
/// notification) off (with them, a scripted run connected to the model endpoint only; without
/// them Gemini CLI also looked up DNS names), `model.maxSessionTurns` = `max_turns` when set
/// (Gemini CLI has no command-line flag for it; past the limit it ends with a `result` of status
/// `error`), and `mcpServers.paddock` = `paddock` when given ([`mcp_server`], with
/// `PADDOCK_QUESTIONS=true`).
pub fn settings_json(max_turns: Option<u32>, paddock: Option<Value>) -> String {
    let mut settings = json!({
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": false},
        "telemetry": {"enabled": false},
        "general": {"enableAutoUpdate": false, "enableAutoUpdateNotification": false},
    });
    if let Some(n) = max_turns {
        settings["model"] = json!({"maxSessionTurns": n});
    }
    if let Some(server) = paddock {
        settings["mcpServers"] = json!({"paddock": server});
    }
    settings.to_string()
}

/// State of one Gemini CLI stream.
#[derive(Debug, Default)]
pub struct GeminiMapper {
    /// Assistant text chunks not emitted yet (the current run of `delta` messages).
    pending: String,
    /// The last assistant message emitted.
    last_message: Option<String>,
    /// Whether the model's current answer has shown (text or a tool call) since the last tool
    /// result: the next assistant line after a tool result starts a new turn.
    in_turn: bool,
    /// Model answers seen.
    turns: u32,
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn n(v: &Value, ptr: &str) -> u64 {
    v.pointer(ptr).and_then(Value::as_u64).unwrap_or(0)
}

impl GeminiMapper {
    /// Counts a model answer when this assistant line starts one.
    fn assistant_output(&mut self) {
        if !self.in_turn {
            self.in_turn = true;
            self.turns = self.turns.saturating_add(1);
        }
    }

    /// The pending assistant text as a `message` event (nothing when blank).
    fn flush(&mut self) -> Vec<RunnerEvent> {
        let text = std::mem::take(&mut self.pending);
        if text.trim().is_empty() {
            return Vec::new();
        }
        self.last_message = Some(text.clone());
        vec![RunnerEvent::Message { text }]
    }

    fn map(&mut self, v: &Value) -> Vec<RunnerEvent> {
        let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
        if kind == "message" {
            if s(v, "role").as_deref() == Some("assistant") {
                self.assistant_output();
                // Bounded: a CLI streaming one endless message cannot grow the runner's memory.
                if self.pending.len() < super::stream::MAX_BUFFERED_LINES * super::stream::MAX_BUFFERED_LINE_BYTES {
                    self.pending
                        .push_str(v.get("content").and_then(Value::as_str).unwrap_or_default());
                }
                if v.get("delta").and_then(Value::as_bool) != Some(true) {
                    // A whole message, not a chunk.
                    return self.flush();
                }
            }
            return Vec::new();
        }
        let mut out = self.flush();
        match kind {
            "init" => out.push(RunnerEvent::AgentStarted {
                agent: "gemini-cli".into(),
                model: s(v, "model"),
                session_id: s(v, "session_id"),
            }),
            "tool_use" => {
                self.assistant_output();
                out.push(RunnerEvent::ToolCall {
                    id: s(v, "tool_id").unwrap_or_default(),
                    name: s(v, "tool_name").unwrap_or_default(),
                    input: v.get("parameters").map(Value::to_string).unwrap_or_default(),
                });
            }
            "tool_result" => {
                self.in_turn = false;
                let is_error = s(v, "status").as_deref() == Some("error");
                let output = if is_error {
                    v.pointer("/error/message")
                        .or_else(|| v.get("output"))
                        .map(compact)
                        .unwrap_or_default()
                } else {
                    v.get("output").map(compact).unwrap_or_default()
                };
                out.push(RunnerEvent::ToolResult {
                    id: s(v, "tool_id").unwrap_or_default(),
                    is_error,
                    output,
                });
            }
            "error" => {
                let message = s(v, "message").unwrap_or_default();
                out.push(RunnerEvent::Error {
                    message: if s(v, "severity").as_deref() == Some("warning") {
                        format!("warning: {message}")
                    } else {
                        message
                    },
                });
            }
            "result" => {
                out.push(RunnerEvent::Usage(Usage {
                    input_tokens: n(v, "/stats/input_tokens"),
                    output_tokens: n(v, "/stats/output_tokens"),
                    turns: self.turns,
                    cost_usd: None,
                }));
                if s(v, "status").as_deref() == Some("error") {
                    let text = v
                        .pointer("/error/message")
                        .or_else(|| v.pointer("/error/type"))
                        .map(compact)
                        .unwrap_or_else(|| "error".into());
                    out.push(RunnerEvent::Final { text, is_error: true });
                } else {
                    out.push(RunnerEvent::Final {
                        text: self.last_message.clone().unwrap_or_default(),
                        is_error: false,
                    });
                }
            }
            _ => {}
        }
        out
    }
}

impl StreamMapper for GeminiMapper {
    fn stdout_line(&mut self, line: &str) -> Vec<RunnerEvent> {
        match serde_json::from_str::<Value>(line.trim()) {
            Ok(v) if v.is_object() => self.map(&v),
            _ => {
                let mut out = self.flush();
                out.extend(log_event("stdout", line));
                out
            }
        }
    }

    /// Text still pending when the CLI exited without a `result` line.
    fn end_of_stream(&mut self) -> Vec<RunnerEvent> {
        self.flush()
    }
}

/// The `gemini-cli` adapter ([`AgentName::GeminiCli`]).
#[derive(Debug, Default)]
pub struct GeminiCli;

impl Adapter for GeminiCli {
    fn name(&self) -> AgentName {
        AgentName::GeminiCli
    }

    /// [`invocation`] with program `gemini` (or `PADDOCK_AGENT_BIN`).
    fn invocation(&self, spec: &AgentSpec, env: &Env) -> Invocation {
        invocation(spec, env, program(env, "gemini"))
    }

    fn mapper(&self, _kind: AgentKind, _model: Option<String>) -> Box<dyn StreamMapper> {
        Box::new(GeminiMapper::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_all(text: &str) -> Vec<RunnerEvent> {
        crate::agent::map_stdout(GeminiMapper::default(), text)
    }

    /// The stream real Gemini CLI 0.61.0 (on Node.js 22.23.3) printed against the scripted
    /// model's `edit-file` script: `write_file` with the relative path, which Gemini CLI
    /// resolves in the working directory.
    #[test]
    fn maps_real_gemini_cli_stream() {
        let events = map_all(include_str!("../../tests/fixtures/gemini-cli-edit-file.jsonl"));
        let expected = vec![
            RunnerEvent::AgentStarted {
                agent: "gemini-cli".into(),
                model: Some("scripted-edit-file".into()),
                session_id: Some("c477b27c-6f5b-4ede-9f27-a314d1557541".into()),
            },
            RunnerEvent::Message {
                text: "I'll create hello.txt.".into(),
            },
            RunnerEvent::ToolCall {
                id: "write_file__call_sm_000003".into(),
                name: "write_file".into(),
                input: json!({"content": "Hello from the scripted model\n", "file_path": "hello.txt"}).to_string(),
            },
            // Gemini CLI prints no `output` for a file write (its display is a diff).
            RunnerEvent::ToolResult {
                id: "write_file__call_sm_000003".into(),
                is_error: false,
                output: String::new(),
            },
            RunnerEvent::Message {
                text: "I created hello.txt.".into(),
            },
            RunnerEvent::Usage(Usage {
                input_tokens: 2500,
                output_tokens: 50,
                turns: 2,
                cost_usd: None,
            }),
            RunnerEvent::Final {
                text: "I created hello.txt.".into(),
                is_error: false,
            },
        ];
        assert_eq!(events, expected);
    }

    /// Lines real Gemini CLI 0.61.0 printed for a longer scripted text (streamed in two chunks)
    /// and a shell call: chunks join into one message, the command output is the result.
    #[test]
    fn joins_text_chunks_and_maps_shell_output() {
        let stream = r#"{"type":"message","timestamp":"2026-11-22T09:56:14.658Z","role":"assistant","content":"I'll create hello.txt af","delta":true}
{"type":"message","timestamp":"2026-11-22T09:56:14.659Z","role":"assistant","content":"ter a pause, as asked.","delta":true}
{"type":"tool_use","timestamp":"2026-11-22T09:56:17.813Z","tool_name":"run_shell_command","tool_id":"run_shell_command__call_sm_000003","parameters":{"command":"echo shell-ran > ran.txt; echo out"}}
{"type":"tool_result","timestamp":"2026-11-22T09:56:17.922Z","tool_id":"run_shell_command__call_sm_000003","status":"success","output":"out"}
{"type":"message","timestamp":"2026-11-22T09:56:17.950Z","role":"assistant","content":"Ran it.","delta":true}"#;
        let events = map_all(stream);
        assert_eq!(
            events,
            vec![
                RunnerEvent::Message {
                    text: "I'll create hello.txt after a pause, as asked.".into()
                },
                RunnerEvent::ToolCall {
                    id: "run_shell_command__call_sm_000003".into(),
                    name: "run_shell_command".into(),
                    input: r#"{"command":"echo shell-ran > ran.txt; echo out"}"#.into(),
                },
                RunnerEvent::ToolResult {
                    id: "run_shell_command__call_sm_000003".into(),
                    is_error: false,
                    output: "out".into(),
                },
                // No `result` line: the pending text still comes out at the end.
                RunnerEvent::Message { text: "Ran it.".into() },
            ]
        );
    }

    /// What Gemini CLI 0.61.0 printed when the endpoint answered 400 (an unknown script); it
    /// exited 144.
    #[test]
    fn error_result_becomes_failed_final() {
        let line = r#"{"type":"result","timestamp":"2026-11-22T09:56:02.669Z","status":"error","error":{"type":"unknown","message":"[API Error: {\"error\":{\"code\":400,\"message\":\"unknown script \\\"nope\\\" (model \\\"scripted-nope\\\"): no file e2e/scripts/nope.json\",\"status\":\"INVALID_ARGUMENT\"}}]"},"stats":{"total_tokens":0,"input_tokens":0,"output_tokens":0,"cached":0,"input":0,"duration_ms":0,"tool_calls":0,"models":{"scripted-nope":{"total_tokens":0,"input_tokens":0,"output_tokens":0,"cached":0,"input":0}}}}"#;
        assert_eq!(
            map_all(line),
            vec![
                RunnerEvent::Usage(Usage::default()),
                RunnerEvent::Final {
                    text: r#"[API Error: {"error":{"code":400,"message":"unknown script \"nope\" (model \"scripted-nope\"): no file e2e/scripts/nope.json","status":"INVALID_ARGUMENT"}}]"#.into(),
                    is_error: true
                },
            ]
        );
    }

    /// Gemini CLI 0.61.0 with `model.maxSessionTurns` 1 on `edit-file`: one model answer, then
    /// this error result (exit 53); usage counts the one answer.
    #[test]
    fn turn_limit_result_becomes_failed_final() {
        let stream = r#"{"type":"tool_use","timestamp":"2026-11-22T10:04:31.489Z","tool_name":"write_file","tool_id":"write_file__call_sm_000014","parameters":{"content":"Hello from the scripted model\n","file_path":"hello.txt"}}
{"type":"tool_result","timestamp":"2026-11-22T10:04:31.514Z","tool_id":"write_file__call_sm_000014","status":"success"}
{"type":"result","timestamp":"2026-11-22T10:04:37.514Z","status":"error","error":{"type":"FatalTurnLimitedError","message":"Reached max session turns for this session. Increase the number of turns by specifying maxSessionTurns in settings.json."},"stats":{"total_tokens":1240,"input_tokens":1200,"output_tokens":40,"cached":0,"input":1200,"duration_ms":0,"tool_calls":1,"models":{"scripted-edit-file":{"total_tokens":1240,"input_tokens":1200,"output_tokens":40,"cached":0,"input":1200}}}}"#;
        let events = map_all(stream);
        assert_eq!(
            events[2..],
            [
                RunnerEvent::Usage(Usage { input_tokens: 1200, output_tokens: 40, turns: 1, cost_usd: None }),
                RunnerEvent::Final {
                    text: "Reached max session turns for this session. Increase the number of turns by specifying maxSessionTurns in settings.json.".into(),
                    is_error: true
                },
            ]
        );
    }

    #[test]
    fn tool_errors_warnings_and_plain_lines() {
        let stream = r#"{"type":"tool_result","tool_id":"t1","status":"error","output":"shown","error":{"type":"invalid_tool_params","message":"File path must be absolute"}}
{"type":"error","severity":"warning","message":"Loop detected"}
Warning: not JSON"#;
        assert_eq!(
            map_all(stream),
            vec![
                RunnerEvent::ToolResult {
                    id: "t1".into(),
                    is_error: true,
                    output: "File path must be absolute".into()
                },
                RunnerEvent::Error {
                    message: "warning: Loop detected".into()
                },
                RunnerEvent::Log {
                    stream: "stdout".into(),
                    text: "Warning: not JSON".into()
                },
            ]
        );
    }

    #[test]
    fn settings_select_api_key_auth_and_turn_limit() {
        let v: Value = serde_json::from_str(&settings_json(Some(4), None)).unwrap();
        assert_eq!(v["security"]["auth"]["selectedType"], "gemini-api-key");
        assert_eq!(v["privacy"]["usageStatisticsEnabled"], false);
        assert_eq!(v["telemetry"]["enabled"], false);
        assert_eq!(v["general"]["enableAutoUpdate"], false);
        assert_eq!(v["model"]["maxSessionTurns"], 4);
        let v: Value = serde_json::from_str(&settings_json(None, None)).unwrap();
        assert!(v.get("model").is_none());
    }

    /// With questions, the settings register the runner's MCP server offering `ask_human`
    /// only, with the variables it needs; without, no server.
    #[test]
    fn questions_register_the_runners_mcp_server() {
        use paddock_crds::runner::vars;
        let spec = AgentSpec {
            kind: AgentKind::GeminiCli,
            prompt: "p".into(),
            model: None,
            args: vec![],
            max_turns: None,
        };
        let mut pairs = vec![
            ("HOME", "/h"),
            (vars::WORKSPACE, "/workspace"),
            (vars::DECISIONS_FILE, "/etc/paddock/pod/annotations"),
            (vars::RUN, "r1"),
            (vars::NAMESPACE, "ns"),
            (vars::RUN_UID, "u1"),
            (vars::ATTEMPT, "2"),
            (vars::VERDICT_PUBLIC_KEY, "a2V5"),
            (vars::RUNNER_BIN, "/usr/local/bin/paddock-runner"),
            ("GEMINI_API_KEY", "not-for-the-server"),
        ];
        let settings = |pairs: &[(&str, &str)]| {
            let inv = invocation(&spec, &Env::from_pairs(pairs.iter().copied()), "gemini".into());
            assert_eq!(inv.files[0].0, PathBuf::from("/h/.gemini/settings.json"));
            assert_eq!(inv.stdin, None, "Gemini CLI takes no live input");
            serde_json::from_str::<Value>(&inv.files[0].1).unwrap()
        };
        assert!(settings(&pairs).get("mcpServers").is_none());
        pairs.push((vars::QUESTIONS, "true"));
        let v = settings(&pairs);
        assert_eq!(v["security"]["auth"]["selectedType"], "gemini-api-key", "kept");
        assert_eq!(
            v["mcpServers"],
            json!({"paddock": {
                "command": "/usr/local/bin/paddock-runner",
                "args": ["permission-prompt", "--ask-human-only"],
                "env": {
                    "PADDOCK_WORKSPACE": "/workspace",
                    "PADDOCK_DECISIONS_FILE": "/etc/paddock/pod/annotations",
                    "PADDOCK_RUN": "r1",
                    "PADDOCK_NAMESPACE": "ns",
                    "PADDOCK_RUN_UID": "u1",
                    "PADDOCK_ATTEMPT": "2",
                    "PADDOCK_VERDICT_PUBLIC_KEY": "a2V5",
                    "PADDOCK_QUESTIONS": "true",
                    "HOME": "/h",
                },
                "trust": true,
                "timeout": MCP_TIMEOUT_MS,
            }})
        );
    }
}
