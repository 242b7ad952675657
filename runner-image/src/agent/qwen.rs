//! The `qwen-code` adapter: Qwen Code (`@qwen-code/qwen-code`) with `-o stream-json`.
//!
//! Qwen Code prints Claude Code's `stream-json` shape, so its lines are mapped by
//! [`ClaudeMapper`] reporting agent `qwen-code`:
//!
//! | CLI line | events |
//! |---|---|
//! | `{"type":"system","subtype":"init","model","session_id"}` | `agent_started` |
//! | `{"type":"assistant","message":{"content":[…]}}` (text and tool calls of one turn come as separate lines) | `message` per non-empty `text` block, `tool_call` per `tool_use` block |
//! | `{"type":"user","message":{"content":[{"type":"tool_result",…}]}}` | `tool_result` |
//! | `{"type":"result",…}` | `usage` (`input_tokens`, which already count cached input; `output_tokens`; `num_turns`; no cost: Qwen Code reports none), `final` (`result`, or `error.message` when `is_error`) |
//!
//! `stream_event` lines (goal state and the like) are ignored. The endpoint comes from
//! `OPENAI_BASE_URL`/`OPENAI_API_KEY` (Chat Completions); [`settings_json`] selects that auth
//! type and turns off what would run after the task or phone home.

use paddock_crds::AgentName;

use super::adapter::{home, program, Adapter};
use super::claude::ClaudeMapper;
use super::spec::{AgentKind, AgentSpec, Invocation};
use super::stream::StreamMapper;
use crate::env::Env;

/// Contents of `~/.qwen/settings.json` the adapter writes before starting: auth type `openai`
/// (the endpoint and key come from `OPENAI_BASE_URL`/`OPENAI_API_KEY`; without it Qwen Code
/// refuses to run headless unless `OPENAI_MODEL` is set), the managed memory sub-agents off
/// (otherwise a memory agent starts after the task and makes more model requests), usage
/// statistics and telemetry off.
pub fn settings_json() -> String {
    serde_json::json!({
        "security": {"auth": {"selectedType": "openai"}},
        "memory": {"enableManagedAutoMemory": false, "enableManagedAutoDream": false},
        "privacy": {"usageStatisticsEnabled": false},
        "telemetry": {"enabled": false},
    })
    .to_string()
}

/// The mapper for Qwen Code's stream.
pub fn mapper() -> ClaudeMapper {
    ClaudeMapper::with_agent("qwen-code", true)
}

/// The `qwen-code` adapter ([`AgentName::QwenCode`]).
#[derive(Debug, Default)]
pub struct QwenCode;

impl Adapter for QwenCode {
    fn name(&self) -> AgentName {
        AgentName::QwenCode
    }

    /// `qwen -o stream-json --yolo [-m m] [--max-session-turns n] <args…> --prompt=<prompt>`
    /// with `~/.qwen/settings.json` ([`settings_json`]).
    fn invocation(&self, spec: &AgentSpec, env: &Env) -> Invocation {
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
        let home = home(env);
        let mut extra = Vec::new();
        if env.get("QWEN_CODE_SUPPRESS_YOLO_WARNING").is_none() {
            extra.push(("QWEN_CODE_SUPPRESS_YOLO_WARNING".into(), "1".into()));
        }
        Invocation {
            stdin: None,
            program: program(env, "qwen"),
            args,
            env: extra,
            create_dirs: Vec::new(),
            files: vec![(home.join(".qwen/settings.json"), settings_json())],
        }
    }

    fn mapper(&self, _kind: AgentKind, _model: Option<String>) -> Box<dyn StreamMapper> {
        Box::new(mapper())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_crds::events::{RunnerEvent, Usage};

    fn map_all(text: &str) -> Vec<RunnerEvent> {
        crate::agent::map_stdout(mapper(), text)
    }

    /// The stream real Qwen Code 0.24.4 printed against the scripted model's `edit-file`
    /// script (its `write_file` takes absolute paths only, so the scripted model wrote the
    /// relative file with `run_shell_command`).
    #[test]
    fn maps_real_qwen_code_stream() {
        let events = map_all(include_str!("../../tests/fixtures/qwen-code-edit-file.jsonl"));
        let command = "printf '%s' 'Hello from the scripted model\n' > 'hello.txt'";
        let expected = vec![
            RunnerEvent::AgentStarted {
                agent: "qwen-code".into(),
                model: Some("scripted-edit-file".into()),
                session_id: Some(SESSION.into()),
            },
            RunnerEvent::Message { text: "I'll create hello.txt.".into() },
            RunnerEvent::ToolCall {
                id: "call_sm_000014".into(),
                name: "run_shell_command".into(),
                input: serde_json::json!({ "command": command }).to_string(),
            },
            RunnerEvent::ToolResult {
                id: "call_sm_000014".into(),
                is_error: false,
                output: format!(
                    "Command: {command}\nDirectory: (root)\nOutput: (empty)\nError: (none)\nExit Code: 0\nSignal: (none)\nProcess Group PGID: (none)"
                ),
            },
            RunnerEvent::Message { text: "I created hello.txt.".into() },
            RunnerEvent::Usage(Usage { input_tokens: 2500, output_tokens: 50, turns: 2, cost_usd: None }),
            RunnerEvent::Final { text: "I created hello.txt.".into(), is_error: false },
        ];
        assert_eq!(events, expected);
    }

    const SESSION: &str = "999856dd-f57b-437a-8a18-19f76c98de82";

    /// What Qwen Code 0.24.4 printed when no auth type was configured (the result has no
    /// `result`, only `error`).
    #[test]
    fn error_result_becomes_failed_final() {
        let line = r#"{"type":"result","subtype":"error_during_execution","uuid":"d37a0e7e-a4e2-426b-a760-a763207fe989","session_id":"f1dc846c-49ae-4920-8933-f074a24d6b3f","is_error":true,"duration_ms":0,"duration_api_ms":0,"num_turns":0,"usage":{"input_tokens":0,"output_tokens":0},"permission_denials":[],"error":{"message":"No auth type is selected. Please configure an auth type (e.g. via settings or `--auth-type`) before running in non-interactive mode."}}"#;
        let events = map_all(line);
        assert_eq!(
            events.last(),
            Some(&RunnerEvent::Final {
                text: "No auth type is selected. Please configure an auth type (e.g. via settings or `--auth-type`) before running in non-interactive mode.".into(),
                is_error: true
            })
        );
    }

    /// Cached input is part of Qwen Code's `input_tokens`; it is not added again.
    #[test]
    fn cached_tokens_are_not_added_twice() {
        let line = r#"{"type":"result","subtype":"success","is_error":false,"num_turns":1,"result":"ok","usage":{"input_tokens":100,"output_tokens":7,"cache_read_input_tokens":60}}"#;
        assert_eq!(
            map_all(line)[0],
            RunnerEvent::Usage(Usage {
                input_tokens: 100,
                output_tokens: 7,
                turns: 1,
                cost_usd: None
            })
        );
    }
}
