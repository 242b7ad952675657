//! The `codex` adapter: maps `codex exec --json` lines.
//!
//! | CLI line | events |
//! |---|---|
//! | `thread.started` (`thread_id`) | `agent_started` (model = the configured model, if any) |
//! | `item.started` `command_execution` | `tool_call` (`name` = `command_execution`, input = the command) |
//! | `item.completed` `command_execution` | (`tool_call` if not seen started) + `tool_result` (`aggregated_output`; `is_error` when `exit_code` ≠ 0 or status `failed`) |
//! | `item.completed` `file_change` / `mcp_tool_call` / `web_search` | `tool_call` + `tool_result` |
//! | `item.completed` `agent_message` | `message` (the last one becomes the `final` text) |
//! | `item.completed` `error`, top-level `error` | `error` (Codex reports retries this way; not fatal) |
//! | `turn.failed` | `error`; the `final` event then has `is_error` |
//! | `turn.completed` (`usage`) | `usage`: sums of `input_tokens` (includes cached) and `output_tokens` over turns; `turns` = number of `turn.completed` |
//!
//! After the CLI exits, [`StreamMapper::end_of_stream`] emits `final` (last agent message or failure).
//! Reasoning, todo lists and other items are ignored; non-JSON lines become `log` events.

use std::collections::HashSet;

use paddock_crds::events::{RunnerEvent, Usage};
use serde_json::Value;

use std::path::{Path, PathBuf};

use paddock_crds::AgentName;

use super::adapter::{home, program, Adapter, SessionFiles, RESUME_ID_ENV};
use super::spec::{AgentKind, AgentSpec, Invocation};
use super::stream::{compact, log_event, StreamMapper};
use crate::env::Env;

/// Codex's flag for a run with no sandbox of its own and no approvals (the pod is the sandbox).
pub const CODEX_FREE_FLAG: &str = "--dangerously-bypass-approvals-and-sandbox";

/// `$CODEX_HOME/rules/paddock.rules`, written before Codex starts: Codex's exec policy refuses
/// `rm -f` / `rm -rf` when no one can approve them ("rm -f style commands are not permitted"),
/// even with `--dangerously-bypass-approvals-and-sandbox`; an allow rule for `rm` lifts that, so
/// Codex may run every command inside the pod like the other CLIs. Other rule files in
/// `$CODEX_HOME/rules` still apply (the strictest decision wins).
pub const RULES: &str = "# Written by Paddock's runner: the pod is the sandbox, so Codex may remove files without an approver.\nprefix_rule(pattern = [\"rm\"], decision = \"allow\", justification = \"the Paddock runner pod is the sandbox\")\n";

/// State of one Codex stream.
#[derive(Debug, Default)]
pub struct CodexMapper {
    model: Option<String>,
    started: HashSet<String>,
    usage: Usage,
    last_message: Option<String>,
    failure: Option<String>,
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

impl CodexMapper {
    /// A mapper reporting `model` (the `-m` value) in `agent_started`.
    pub fn new(model: Option<String>) -> Self {
        Self {
            model,
            ..Self::default()
        }
    }

    fn call(&mut self, id: &str, name: &str, input: String) -> Option<RunnerEvent> {
        self.started.insert(id.to_string()).then(|| RunnerEvent::ToolCall {
            id: id.to_string(),
            name: name.to_string(),
            input,
        })
    }

    fn item(&mut self, item: &Value, completed: bool) -> Vec<RunnerEvent> {
        let id = s(item, "id").unwrap_or_default();
        let failed = s(item, "status").as_deref() == Some("failed");
        let mut out = Vec::new();
        match item.get("type").and_then(Value::as_str) {
            Some("command_execution") => {
                out.extend(self.call(&id, "command_execution", s(item, "command").unwrap_or_default()));
                if completed {
                    let exit = item.get("exit_code").and_then(Value::as_i64);
                    out.push(RunnerEvent::ToolResult {
                        id,
                        is_error: failed || exit.is_some_and(|c| c != 0),
                        output: s(item, "aggregated_output").unwrap_or_default(),
                    });
                }
            }
            Some("file_change") if completed => {
                let changes = item.get("changes").cloned().unwrap_or(Value::Null);
                out.extend(self.call(&id, "file_change", compact(&changes)));
                let summary: Vec<String> = changes
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        format!(
                            "{} {}",
                            s(c, "kind").unwrap_or_default(),
                            s(c, "path").unwrap_or_default()
                        )
                    })
                    .collect();
                out.push(RunnerEvent::ToolResult {
                    id,
                    is_error: failed,
                    output: summary.join("\n"),
                });
            }
            Some("mcp_tool_call") => {
                let name = format!(
                    "mcp:{}/{}",
                    s(item, "server").unwrap_or_default(),
                    s(item, "tool").unwrap_or_default()
                );
                out.extend(self.call(&id, &name, item.get("arguments").map(compact).unwrap_or_default()));
                if completed {
                    let error = item.get("error").filter(|e| !e.is_null());
                    let output = match error {
                        Some(e) => e.get("message").map(compact).unwrap_or_else(|| compact(e)),
                        None => item.get("result").map(compact).unwrap_or_default(),
                    };
                    out.push(RunnerEvent::ToolResult {
                        id,
                        is_error: failed || error.is_some(),
                        output,
                    });
                }
            }
            Some("web_search") => {
                out.extend(self.call(&id, "web_search", s(item, "query").unwrap_or_default()));
                if completed {
                    out.push(RunnerEvent::ToolResult {
                        id,
                        is_error: failed,
                        output: String::new(),
                    });
                }
            }
            Some("agent_message") if completed => {
                let text = s(item, "text").unwrap_or_default();
                if !text.trim().is_empty() {
                    self.last_message = Some(text.clone());
                    out.push(RunnerEvent::Message { text });
                }
            }
            Some("error") if completed => out.push(RunnerEvent::Error {
                message: s(item, "message").unwrap_or_default(),
            }),
            _ => {}
        }
        out
    }

    fn map(&mut self, v: &Value) -> Vec<RunnerEvent> {
        match v.get("type").and_then(Value::as_str) {
            Some("thread.started") => vec![RunnerEvent::AgentStarted {
                agent: "codex".into(),
                model: self.model.clone(),
                session_id: s(v, "thread_id"),
            }],
            Some("item.started") => v.get("item").map(|i| self.item(i, false)).unwrap_or_default(),
            Some("item.completed") => v.get("item").map(|i| self.item(i, true)).unwrap_or_default(),
            Some("error") => vec![RunnerEvent::Error {
                message: s(v, "message").unwrap_or_default(),
            }],
            Some("turn.failed") => {
                let message = v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| "turn failed".into());
                self.failure = Some(message.clone());
                vec![RunnerEvent::Error { message }]
            }
            Some("turn.completed") => {
                let n = |k: &str| v.pointer(&format!("/usage/{k}")).and_then(Value::as_u64).unwrap_or(0);
                self.usage.input_tokens += n("input_tokens");
                self.usage.output_tokens += n("output_tokens");
                self.usage.turns += 1;
                vec![RunnerEvent::Usage(self.usage.clone())]
            }
            _ => Vec::new(),
        }
    }
}

impl StreamMapper for CodexMapper {
    fn stdout_line(&mut self, line: &str) -> Vec<RunnerEvent> {
        match serde_json::from_str::<Value>(line.trim()) {
            Ok(v) if v.is_object() => self.map(&v),
            _ => log_event("stdout", line),
        }
    }

    fn end_of_stream(&mut self) -> Vec<RunnerEvent> {
        super::stream::final_event(self.failure.take(), self.last_message.take())
    }
}

/// The `codex` adapter ([`AgentName::Codex`]).
#[derive(Debug, Default)]
pub struct Codex;

impl Adapter for Codex {
    fn name(&self) -> AgentName {
        AgentName::Codex
    }

    /// `codex exec --json --skip-git-repo-check --dangerously-bypass-approvals-and-sandbox
    /// [-m m] [-c …provider overrides when OPENAI_BASE_URL is set] <args…> [resume] -- [id]
    /// <prompt>` with `CODEX_HOME` and `$CODEX_HOME/rules/paddock.rules`.
    fn invocation(&self, spec: &AgentSpec, env: &Env) -> Invocation {
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
        if let Some(id) = env.get(RESUME_ID_ENV) {
            args.extend(["resume".into(), "--".into(), id.to_string()]);
        } else {
            args.push("--".into());
        }
        args.push(spec.prompt.clone());
        let home = home(env);
        let codex_home = env
            .get("CODEX_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".codex"));
        Invocation {
            stdin: None,
            program: program(env, "codex"),
            args,
            env: vec![("CODEX_HOME".into(), codex_home.to_string_lossy().into_owned())],
            files: vec![(codex_home.join("rules/paddock.rules"), RULES.to_string())],
            create_dirs: vec![codex_home],
        }
    }

    fn mapper(&self, _kind: AgentKind, model: Option<String>) -> Box<dyn StreamMapper> {
        Box::new(CodexMapper::new(model))
    }

    fn sessions(&self) -> Option<&dyn SessionFiles> {
        Some(self)
    }
}

/// Codex's sessions: `$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<id>.jsonl` (`CODEX_HOME`
/// defaults to `~/.codex`).
impl SessionFiles for Codex {
    fn root(&self, env: &Env) -> PathBuf {
        env.get("CODEX_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home(env).join(".codex"))
    }

    fn find(&self, root: &Path, id: &str) -> Option<PathBuf> {
        let suffix = format!("-{id}.jsonl");
        let mut stack = vec![(root.join("sessions"), 0)];
        let mut hit = None;
        while let Some((dir, depth)) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if p.is_dir() && depth < 4 {
                    stack.push((p, depth + 1));
                } else if name.starts_with("rollout-") && name.ends_with(&suffix) {
                    hit = Some(p);
                }
            }
        }
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_all(model: Option<&str>, text: &str) -> Vec<RunnerEvent> {
        crate::agent::map_stdout(CodexMapper::new(model.map(str::to_string)), text)
    }

    #[test]
    fn maps_recorded_shape_exactly() {
        let events = map_all(
            Some("gpt-5-codex"),
            include_str!("../../tests/fixtures/codex-sample.jsonl"),
        );
        let cmd = "bash -lc 'echo hello > hello.txt'";
        let expected = vec![
            RunnerEvent::AgentStarted {
                agent: "codex".into(),
                model: Some("gpt-5-codex".into()),
                session_id: Some("0199a213-81c0-7800-8aa1-bbab2a035a53".into()),
            },
            RunnerEvent::ToolCall {
                id: "item_1".into(),
                name: "command_execution".into(),
                input: cmd.into(),
            },
            RunnerEvent::ToolResult {
                id: "item_1".into(),
                is_error: false,
                output: String::new(),
            },
            RunnerEvent::ToolCall {
                id: "item_2".into(),
                name: "command_execution".into(),
                input: "bash -lc 'cat /nope'".into(),
            },
            RunnerEvent::ToolResult {
                id: "item_2".into(),
                is_error: true,
                output: "cat: /nope: No such file or directory\n".into(),
            },
            RunnerEvent::ToolCall {
                id: "item_3".into(),
                name: "file_change".into(),
                input: r#"[{"kind":"add","path":"/workspace/work/b.txt"}]"#.into(),
            },
            RunnerEvent::ToolResult {
                id: "item_3".into(),
                is_error: false,
                output: "add /workspace/work/b.txt".into(),
            },
            RunnerEvent::Error {
                message: "Reconnecting... 1/5".into(),
            },
            RunnerEvent::Message {
                text: "Working on it.".into(),
            },
            RunnerEvent::Usage(Usage {
                input_tokens: 1200,
                output_tokens: 80,
                turns: 1,
                cost_usd: None,
            }),
            RunnerEvent::Message {
                text: "Created hello.txt.".into(),
            },
            RunnerEvent::Usage(Usage {
                input_tokens: 1500,
                output_tokens: 100,
                turns: 2,
                cost_usd: None,
            }),
            RunnerEvent::Final {
                text: "Created hello.txt.".into(),
                is_error: false,
            },
        ];
        assert_eq!(events, expected);
    }

    /// The stream real Codex 0.169.0 printed against the scripted model (e2e fixture).
    #[test]
    fn maps_real_codex_stream() {
        let events = map_all(
            Some("scripted-edit-file"),
            include_str!("../../../e2e/fixtures/codex-edit-file.jsonl"),
        );
        let cmd = "/bin/bash -lc \"printf '%s' 'Hello from the scripted model\n' > 'hello.txt'\"";
        let expected = vec![
            RunnerEvent::AgentStarted {
                agent: "codex".into(),
                model: Some("scripted-edit-file".into()),
                session_id: Some("01a200f0-489a-7b72-baf4-348758de2ef5".into()),
            },
            RunnerEvent::Error {
                message: "Model metadata for `scripted-edit-file` not found. Defaulting to fallback metadata; this can degrade performance and cause issues.".into(),
            },
            RunnerEvent::Message { text: "I'll create hello.txt.".into() },
            RunnerEvent::ToolCall { id: "item_2".into(), name: "command_execution".into(), input: cmd.into() },
            RunnerEvent::ToolResult { id: "item_2".into(), is_error: false, output: String::new() },
            RunnerEvent::Message { text: "I created hello.txt.".into() },
            RunnerEvent::Usage(Usage { input_tokens: 2500, output_tokens: 50, turns: 1, cost_usd: None }),
            RunnerEvent::Final { text: "I created hello.txt.".into(), is_error: false },
        ];
        assert_eq!(events, expected);
    }

    #[test]
    fn turn_failed_makes_final_an_error() {
        let text = "{\"type\":\"thread.started\",\"thread_id\":\"t\"}\nwarning: no model metadata\n{\"type\":\"turn.failed\",\"error\":{\"message\":\"stream disconnected\"}}";
        assert_eq!(
            map_all(None, text),
            vec![
                RunnerEvent::AgentStarted {
                    agent: "codex".into(),
                    model: None,
                    session_id: Some("t".into())
                },
                RunnerEvent::Log {
                    stream: "stdout".into(),
                    text: "warning: no model metadata".into()
                },
                RunnerEvent::Error {
                    message: "stream disconnected".into()
                },
                RunnerEvent::Final {
                    text: "stream disconnected".into(),
                    is_error: true
                },
            ]
        );
    }
}
