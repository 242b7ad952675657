//! The `opencode` adapter: OpenCode (`opencode-ai`) with `run --format json`.
//!
//! | CLI line | events |
//! |---|---|
//! | first line carrying `sessionID` | `agent_started` (model = the configured model; OpenCode prints none) |
//! | `text` (`part.text`) | `message` (the last one becomes the `final` text) |
//! | `tool_use` (`part.callID`, `part.tool`, `part.state`) | `tool_call` (input = `state.input` as compact JSON) + `tool_result` (`state.output`, or `state.error` with `is_error` when `state.status` is `error`); OpenCode prints a tool only once it finished |
//! | `step_finish` (`part.tokens`, `part.cost`) | `usage`, cumulative: input = `input` + `cache.read` + `cache.write` (OpenCode subtracts cache from `input`), output = `output` + `reasoning` (likewise), `turns` = number of steps, cost = sum of `cost` when any step reported a non-zero cost (OpenCode reports 0 for models without prices) |
//! | `error` (`error.data.message` or `error.name`) | `error`; the `final` event then has `is_error` |
//!
//! `step_start`, `reasoning` and other lines are ignored; non-JSON lines become `log` events.
//! After the CLI exits, [`StreamMapper::end_of_stream`] emits `final`.

use std::collections::HashSet;

use paddock_crds::events::{RunnerEvent, Usage};
use serde_json::{json, Value};

use paddock_crds::AgentName;

use super::adapter::{program, Adapter};
use super::spec::{AgentKind, AgentSpec, Invocation};
use super::stream::{compact, log_event, StreamMapper};
use crate::env::Env;

/// Name of the provider the adapter generates from `OPENAI_BASE_URL`; `-m` becomes
/// `paddock/<model>`.
pub const PROVIDER: &str = "paddock";

/// Environment set unless already present: no model list download (models.dev), no update
/// check, no LSP server download, no session sharing, no default plugins (they are installed
/// from npm at start).
pub const DISABLE_ENV: [(&str, &str); 5] = [
    ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
    ("OPENCODE_DISABLE_AUTOUPDATE", "1"),
    ("OPENCODE_DISABLE_LSP_DOWNLOAD", "1"),
    ("OPENCODE_DISABLE_SHARE", "1"),
    ("OPENCODE_DISABLE_DEFAULT_PLUGINS", "1"),
];

/// The permissions set to `allow` in the generated config. OpenCode's defaults allow the other
/// tools but ask (so `opencode run` rejects) for paths outside the working directory
/// (`external_directory`), repeated identical calls (`doom_loop`) and reading `.env` files
/// (`read`); the pod is the sandbox, so nothing asks.
pub const PERMISSION: [&str; 6] = ["read", "edit", "bash", "webfetch", "external_directory", "doom_loop"];

/// The `OPENCODE_CONFIG_CONTENT` JSON: no autoupdate or sharing, every tool allowed without
/// asking ([`PERMISSION`]; `opencode run` rejects whatever would ask), and, when `base_url`
/// (`OPENAI_BASE_URL`, ending in `/v1`) is set, a provider [`PROVIDER`] on it through the
/// bundled `@ai-sdk/openai-compatible` package, with the key from `OPENAI_API_KEY` and `model`
/// (if any) as its one model.
pub fn config_content(base_url: Option<&str>, model: Option<&str>) -> String {
    let mut config = json!({
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": false,
        "share": "disabled",
        "permission": PERMISSION.iter().map(|k| (k.to_string(), json!("allow"))).collect::<serde_json::Map<_, _>>(),
    });
    if let Some(base) = base_url {
        let mut models = serde_json::Map::new();
        if let Some(m) = model {
            models.insert(m.to_string(), json!({"name": m}));
        }
        config["provider"] = json!({PROVIDER: {
            "npm": "@ai-sdk/openai-compatible",
            "name": PROVIDER,
            "options": {"baseURL": base, "apiKey": "{env:OPENAI_API_KEY}"},
            "models": models,
        }});
    }
    config.to_string()
}

/// State of one OpenCode stream.
#[derive(Debug, Default)]
pub struct OpenCodeMapper {
    model: Option<String>,
    started: bool,
    usage: Usage,
    cost: f64,
    last_message: Option<String>,
    failure: Option<String>,
    calls: HashSet<String>,
}

fn s(v: &Value, ptr: &str) -> Option<String> {
    v.pointer(ptr).and_then(Value::as_str).map(str::to_string)
}

fn n(v: &Value, ptr: &str) -> u64 {
    v.pointer(ptr).and_then(Value::as_u64).unwrap_or(0)
}

impl OpenCodeMapper {
    /// A mapper reporting `model` (the configured model) in `agent_started`.
    pub fn new(model: Option<String>) -> Self {
        Self {
            model,
            ..Self::default()
        }
    }

    fn map(&mut self, v: &Value) -> Vec<RunnerEvent> {
        let mut out = Vec::new();
        if !self.started {
            if let Some(session) = s(v, "/sessionID") {
                self.started = true;
                out.push(RunnerEvent::AgentStarted {
                    agent: "opencode".into(),
                    model: self.model.clone(),
                    session_id: Some(session),
                });
            }
        }
        let part = v.get("part").cloned().unwrap_or(Value::Null);
        match v.get("type").and_then(Value::as_str) {
            Some("text") => {
                let text = s(&part, "/text").unwrap_or_default();
                if !text.trim().is_empty() {
                    self.last_message = Some(text.clone());
                    out.push(RunnerEvent::Message { text });
                }
            }
            Some("tool_use") => {
                let id = s(&part, "/callID").or_else(|| s(&part, "/id")).unwrap_or_default();
                if self.calls.insert(id.clone()) {
                    out.push(RunnerEvent::ToolCall {
                        id: id.clone(),
                        name: s(&part, "/tool").unwrap_or_default(),
                        input: part.pointer("/state/input").map(|i| i.to_string()).unwrap_or_default(),
                    });
                }
                match s(&part, "/state/status").as_deref() {
                    Some("completed") => out.push(RunnerEvent::ToolResult {
                        id,
                        is_error: false,
                        output: part.pointer("/state/output").map(compact).unwrap_or_default(),
                    }),
                    Some("error") => out.push(RunnerEvent::ToolResult {
                        id,
                        is_error: true,
                        output: part.pointer("/state/error").map(compact).unwrap_or_default(),
                    }),
                    _ => {}
                }
            }
            Some("step_finish") => {
                self.usage.input_tokens +=
                    n(&part, "/tokens/input") + n(&part, "/tokens/cache/read") + n(&part, "/tokens/cache/write");
                self.usage.output_tokens += n(&part, "/tokens/output") + n(&part, "/tokens/reasoning");
                self.usage.turns += 1;
                self.cost += part.get("cost").and_then(Value::as_f64).unwrap_or(0.0);
                self.usage.cost_usd = (self.cost > 0.0).then_some(self.cost);
                out.push(RunnerEvent::Usage(self.usage.clone()));
            }
            Some("error") => {
                let message = s(v, "/error/data/message")
                    .or_else(|| s(v, "/error/name"))
                    .or_else(|| v.get("error").map(compact))
                    .unwrap_or_else(|| "error".into());
                self.failure = Some(match self.failure.take() {
                    Some(f) => format!("{f}\n{message}"),
                    None => message.clone(),
                });
                out.push(RunnerEvent::Error { message });
            }
            _ => {}
        }
        out
    }
}

impl StreamMapper for OpenCodeMapper {
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

/// The `opencode` adapter ([`AgentName::OpenCode`]).
#[derive(Debug, Default)]
pub struct OpenCode;

impl Adapter for OpenCode {
    fn name(&self) -> AgentName {
        AgentName::OpenCode
    }

    /// `opencode run --format json [-m paddock/m] <args…> -- <prompt split at spaces>` with
    /// `OPENCODE_CONFIG_CONTENT` generated from `OPENAI_BASE_URL` ([`config_content`]).
    fn invocation(&self, spec: &AgentSpec, env: &Env) -> Invocation {
        let mut args: Vec<String> = ["run", "--format", "json"].map(String::from).to_vec();
        let base = env.get("OPENAI_BASE_URL");
        if let Some(m) = &spec.model {
            // With OPENAI_BASE_URL the model belongs to the generated `paddock` provider;
            // otherwise it is passed as given (`<provider>/<model>`).
            let m = if base.is_some() {
                format!("{}/{m}", PROVIDER)
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
        for (k, v) in DISABLE_ENV {
            if env.get(k).is_none() {
                extra.push((k.to_string(), v.to_string()));
            }
        }
        if env.get("OPENCODE_CONFIG_CONTENT").is_none() {
            extra.push((
                "OPENCODE_CONFIG_CONTENT".into(),
                config_content(base, spec.model.as_deref()),
            ));
        }
        Invocation {
            stdin: None,
            program: program(env, "opencode"),
            args,
            env: extra,
            create_dirs: Vec::new(),
            files: Vec::new(),
        }
    }

    fn mapper(&self, _kind: AgentKind, model: Option<String>) -> Box<dyn StreamMapper> {
        Box::new(OpenCodeMapper::new(model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_all(text: &str) -> Vec<RunnerEvent> {
        crate::agent::map_stdout(OpenCodeMapper::new(Some("scripted-edit-file".into())), text)
    }

    /// The stream real OpenCode 1.18.33 printed against the scripted model's `edit-file`
    /// script, run as the adapter runs it.
    #[test]
    fn maps_real_opencode_stream() {
        let events = map_all(include_str!("../../tests/fixtures/opencode-edit-file.jsonl"));
        let expected = vec![
            RunnerEvent::AgentStarted {
                agent: "opencode".into(),
                model: Some("scripted-edit-file".into()),
                session_id: Some(SESSION.into()),
            },
            RunnerEvent::Message {
                text: "I'll create hello.txt.".into(),
            },
            RunnerEvent::ToolCall {
                id: "call_sm_000002".into(),
                name: "write".into(),
                input: json!({"content": "Hello from the scripted model\n", "filePath": "hello.txt"}).to_string(),
            },
            RunnerEvent::ToolResult {
                id: "call_sm_000002".into(),
                is_error: false,
                output: "Wrote file successfully.".into(),
            },
            RunnerEvent::Usage(Usage {
                input_tokens: 1200,
                output_tokens: 40,
                turns: 1,
                cost_usd: None,
            }),
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

    const SESSION: &str = "ses_dfe558b0cffe6jGkpNIrF3FmSn";

    #[test]
    fn tool_errors_cost_cache_and_session_errors() {
        let lines = [
            r#"{"type":"tool_use","sessionID":"s1","part":{"type":"tool","tool":"write","callID":"c1","state":{"status":"error","input":{"filePath":"/etc/x"},"error":"permission rejected"}}}"#,
            r#"{"type":"step_finish","sessionID":"s1","part":{"type":"step-finish","tokens":{"input":10,"output":3,"reasoning":2,"cache":{"read":100,"write":5}},"cost":0.25}}"#,
            r#"{"type":"error","sessionID":"s1","error":{"name":"APIError","data":{"message":"rate limited"}}}"#,
            "plain text",
        ]
        .join("\n");
        assert_eq!(
            map_all(&lines),
            vec![
                RunnerEvent::AgentStarted {
                    agent: "opencode".into(),
                    model: Some("scripted-edit-file".into()),
                    session_id: Some("s1".into())
                },
                RunnerEvent::ToolCall {
                    id: "c1".into(),
                    name: "write".into(),
                    input: r#"{"filePath":"/etc/x"}"#.into()
                },
                RunnerEvent::ToolResult {
                    id: "c1".into(),
                    is_error: true,
                    output: "permission rejected".into()
                },
                RunnerEvent::Usage(Usage {
                    input_tokens: 115,
                    output_tokens: 5,
                    turns: 1,
                    cost_usd: Some(0.25)
                }),
                RunnerEvent::Error {
                    message: "rate limited".into()
                },
                RunnerEvent::Log {
                    stream: "stdout".into(),
                    text: "plain text".into()
                },
                RunnerEvent::Final {
                    text: "rate limited".into(),
                    is_error: true
                },
            ]
        );
    }

    #[test]
    fn config_names_the_provider_and_allows_edits() {
        let c: Value = serde_json::from_str(&config_content(Some("http://m:1/v1"), Some("scripted-x"))).unwrap();
        assert_eq!(c["provider"]["paddock"]["npm"], "@ai-sdk/openai-compatible");
        assert_eq!(c["provider"]["paddock"]["options"]["baseURL"], "http://m:1/v1");
        assert_eq!(c["provider"]["paddock"]["options"]["apiKey"], "{env:OPENAI_API_KEY}");
        assert_eq!(c["provider"]["paddock"]["models"]["scripted-x"]["name"], "scripted-x");
        for k in ["read", "edit", "bash", "webfetch", "external_directory", "doom_loop"] {
            assert_eq!(c["permission"][k], "allow", "{k}");
        }
        let plain: Value = serde_json::from_str(&config_content(None, Some("m"))).unwrap();
        assert!(plain.get("provider").is_none());
    }
}
