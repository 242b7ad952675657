//! The `openclaw` adapter: OpenClaw (`openclaw` on npm) with `agent exec --json`.
//!
//! `openclaw agent exec` runs one embedded agent turn without a Gateway, in the working
//! directory (its workspace and the tools' directory), with a temporary state directory it
//! removes afterwards. With `--json` it prints nothing while it works and then one JSON
//! envelope on stdout, pretty-printed over many lines (its diagnostics go to stderr); it exits
//! 0 when the run completed, 1 on a model or run error, 2 on its own deadline (`--timeout`).
//! So the mapper keeps the stdout lines and reads the envelope when the CLI exited:
//!
//! | envelope field | events |
//! |---|---|
//! | `sessionId`, `model` | `agent_started` (model = the envelope's, else the configured one; it is `null` when the run failed before a model was selected) |
//! | `payloads[].text` | `message` per non-empty text |
//! | `toolSummary` (`calls`, `tools`, `failures`) | one `log` (`stdout`) line `tool calls: N (names), F failed`: OpenClaw reports no single tool calls, only this summary |
//! | `usage` (`input`, `cacheRead`, `cacheWrite`, `output`), `assistantTurns`, `costUsd` | `usage`: input = input + cacheRead + cacheWrite (OpenClaw counts them apart; its `total` is the sum of all four), output = `output`, `turns` = `assistantTurns`, cost = `costUsd` when present (OpenClaw omits it when the model has no prices) |
//! | `status` `ok` and `final` | `final` |
//! | `status` `error`/`timeout` (or `ok` false), `error.message` | `error`, then `final` with `is_error` (text `error.message`, else `openclaw run ended with status <status>`) |
//!
//! Stdout that is not one JSON object becomes `log` events, one per line, and no `final`.
//! Facts from OpenClaw 2026.9.6 (`openclaw agent exec --help`, its `docs/cli/agent.md`, and
//! runs against the scripted model).

use std::path::PathBuf;

use paddock_crds::events::{RunnerEvent, Usage};
use serde_json::{json, Value};

use paddock_crds::AgentName;

use super::adapter::{program, Adapter};
use super::spec::{AgentKind, AgentSpec, Invocation};
use super::stream::{compact, log_event, StreamMapper};
use crate::env::Env;

/// Name of the provider the adapter generates from `OPENAI_BASE_URL`; `--model` becomes
/// `paddock/<model>`.
pub const PROVIDER: &str = "paddock";

/// `--timeout` the adapter passes: OpenClaw's own deadline for the run, in seconds. Its
/// default (600) would end runs that Paddock lets go on longer; a day leaves the run's deadline
/// to Paddock. A `--timeout` among the extra args comes later and wins.
pub const DEADLINE_SECS: u64 = 86_400;

/// Environment set unless already present: no update check (`OPENCLAW_NO_AUTO_UPDATE`, which
/// also turns off OpenClaw's anonymous feature statistics).
pub const DISABLE_ENV: [(&str, &str); 1] = [("OPENCLAW_NO_AUTO_UPDATE", "1")];

/// Where the generated config goes: `~/.openclaw/paddock.json`, passed with `--config`.
pub fn config_path(home: &std::path::Path) -> PathBuf {
    home.join(".openclaw/paddock.json")
}

/// The config file (JSON, which OpenClaw's JSON5 loader reads as is): only the provider
/// [`PROVIDER`] (`models.mode` `replace`: no other catalog) at `base_url` (`OPENAI_BASE_URL`,
/// ending in `/v1`) over Chat Completions (`api` `openai-completions`), its key read from
/// `OPENAI_API_KEY` when OpenClaw loads the file (`${VAR}` substitution; the key is not
/// written), `model` (if any) as its one model; telemetry and the update check off; file tools
/// and `apply_patch` not confined to the working directory (`tools.fs.workspaceOnly`,
/// `tools.exec.applyPatch.workspaceOnly` false: `agent exec` confines them by default; the pod
/// is the sandbox). `agent exec` runs its `exec` tool under the full execution policy already.
pub fn config_json(base_url: &str, model: Option<&str>) -> String {
    let models: Vec<Value> = model.map(|m| json!({"id": m, "name": m})).into_iter().collect();
    json!({
        "models": {"mode": "replace", "providers": {PROVIDER: {
            "api": "openai-completions",
            "apiKey": "${OPENAI_API_KEY}",
            "baseUrl": base_url,
            "models": models,
        }}},
        "tools": {"fs": {"workspaceOnly": false}, "exec": {"applyPatch": {"workspaceOnly": false}}},
        "telemetry": {"enabled": false},
        "update": {"checkOnStart": false},
    })
    .to_string()
}

/// The command line: `openclaw agent exec --json --timeout <DEADLINE_SECS> [--config
/// ~/.openclaw/paddock.json] [--model m] <args…> -- <prompt>` (after `--` a prompt that starts
/// with `-` is text). With `OPENAI_BASE_URL` set, the config is generated ([`config_json`]) and
/// the model is `paddock/<m>`; without it, no config is pinned (OpenClaw's own
/// `~/.openclaw/openclaw.json` applies) and the model is passed as given
/// (`<provider>/<model>`). [`DISABLE_ENV`] unless set.
pub fn invocation(spec: &AgentSpec, env: &Env, program: String) -> Invocation {
    let home = PathBuf::from(env.get("HOME").unwrap_or("/home/paddock"));
    let mut args: Vec<String> = ["agent", "exec", "--json", "--timeout"].map(String::from).to_vec();
    args.push(DEADLINE_SECS.to_string());
    let mut files = Vec::new();
    let base = env.get("OPENAI_BASE_URL");
    if let Some(base) = base {
        let path = config_path(&home);
        args.extend(["--config".to_string(), path.to_string_lossy().into_owned()]);
        files.push((path, config_json(base, spec.model.as_deref())));
    }
    if let Some(m) = &spec.model {
        let m = if base.is_some() {
            format!("{PROVIDER}/{m}")
        } else {
            m.clone()
        };
        args.extend(["--model".to_string(), m]);
    }
    args.extend(spec.args.iter().cloned());
    args.extend(["--".to_string(), spec.prompt.clone()]);
    let mut extra = Vec::new();
    for (k, v) in DISABLE_ENV {
        if env.get(k).is_none() {
            extra.push((k.to_string(), v.to_string()));
        }
    }
    Invocation {
        stdin: None,
        program,
        args,
        env: extra,
        create_dirs: Vec::new(),
        files,
    }
}

/// State of one OpenClaw run's output: the stdout lines, read as one envelope at the end.
#[derive(Debug, Default)]
pub struct OpenClawMapper {
    model: Option<String>,
    stdout: Vec<String>,
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn n(v: &Value, ptr: &str) -> u64 {
    v.pointer(ptr).and_then(Value::as_u64).unwrap_or(0)
}

impl OpenClawMapper {
    /// A mapper reporting `model` (the configured model) when the envelope names none.
    pub fn new(model: Option<String>) -> Self {
        Self {
            model,
            stdout: Vec::new(),
        }
    }

    /// The events for one `agent exec --json` envelope (see the module table).
    pub fn map_envelope(&self, v: &Value) -> Vec<RunnerEvent> {
        let mut out = vec![RunnerEvent::AgentStarted {
            agent: "openclaw".into(),
            model: s(v, "model").or_else(|| self.model.clone()),
            session_id: s(v, "sessionId"),
        }];
        for p in v.get("payloads").and_then(Value::as_array).into_iter().flatten() {
            if let Some(text) = s(p, "text").filter(|t| !t.trim().is_empty()) {
                out.push(RunnerEvent::Message { text });
            }
        }
        if let Some(t) = v.get("toolSummary").filter(|t| t.is_object()) {
            let names: Vec<String> = t
                .get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(compact)
                .collect();
            out.push(RunnerEvent::Log {
                stream: "stdout".into(),
                text: format!(
                    "tool calls: {} ({}), {} failed",
                    n(t, "/calls"),
                    names.join(", "),
                    n(t, "/failures")
                ),
            });
        }
        let turns = n(v, "/assistantTurns");
        if v.get("usage").is_some() || turns > 0 {
            out.push(RunnerEvent::Usage(Usage {
                input_tokens: n(v, "/usage/input") + n(v, "/usage/cacheRead") + n(v, "/usage/cacheWrite"),
                output_tokens: n(v, "/usage/output"),
                turns: u32::try_from(turns).unwrap_or(u32::MAX),
                cost_usd: v.get("costUsd").and_then(Value::as_f64),
            }));
        }
        let status = s(v, "status").unwrap_or_default();
        let ok = status == "ok" && v.get("ok").and_then(Value::as_bool) != Some(false);
        let failure = (!ok).then(|| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| format!("openclaw run ended with status {status:?}"))
        });
        if let Some(message) = &failure {
            out.push(RunnerEvent::Error {
                message: message.clone(),
            });
        }
        out.extend(super::stream::final_event(failure, s(v, "final")));
        out
    }
}

impl StreamMapper for OpenClawMapper {
    fn stdout_line(&mut self, line: &str) -> Vec<RunnerEvent> {
        super::stream::push_bounded(&mut self.stdout, line);
        Vec::new()
    }

    fn end_of_stream(&mut self) -> Vec<RunnerEvent> {
        let lines = std::mem::take(&mut self.stdout);
        match serde_json::from_str::<Value>(lines.join("\n").trim()) {
            Ok(v) if v.is_object() => self.map_envelope(&v),
            _ => lines.iter().flat_map(|l| log_event("stdout", l)).collect(),
        }
    }
}

/// The `openclaw` adapter ([`AgentName::OpenClaw`]).
#[derive(Debug, Default)]
pub struct OpenClaw;

impl Adapter for OpenClaw {
    fn name(&self) -> AgentName {
        AgentName::OpenClaw
    }

    /// [`invocation`] with program `openclaw` (or `PADDOCK_AGENT_BIN`).
    fn invocation(&self, spec: &AgentSpec, env: &Env) -> Invocation {
        invocation(spec, env, program(env, "openclaw"))
    }

    fn mapper(&self, _kind: AgentKind, model: Option<String>) -> Box<dyn StreamMapper> {
        Box::new(OpenClawMapper::new(model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_all(text: &str) -> Vec<RunnerEvent> {
        crate::agent::map_stdout(OpenClawMapper::new(Some("scripted-edit-file".into())), text)
    }

    /// The envelope real OpenClaw 2026.9.6 (on Node 24.21) printed against the scripted
    /// model's `edit-file` script, run with the adapter's config; hello.txt was written by its
    /// `write` tool.
    #[test]
    fn maps_real_openclaw_envelope() {
        let events = map_all(include_str!("../../tests/fixtures/openclaw-edit-file.json"));
        let expected = vec![
            RunnerEvent::AgentStarted {
                agent: "openclaw".into(),
                model: Some("scripted-edit-file".into()),
                session_id: Some("fafebf9d-26e4-45fe-a9b5-4d147bda737e".into()),
            },
            RunnerEvent::Message {
                text: "I created hello.txt.".into(),
            },
            RunnerEvent::Log {
                stream: "stdout".into(),
                text: "tool calls: 1 (write), 0 failed".into(),
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

    /// The envelope after the endpoint answered 503 to every request (script `unavailable`):
    /// OpenClaw retried, then failed before selecting a model (`model` null) and exited 1.
    #[test]
    fn maps_real_openclaw_error_envelope() {
        let mut m = OpenClawMapper::new(None);
        for l in include_str!("../../tests/fixtures/openclaw-unavailable.json").lines() {
            assert_eq!(m.stdout_line(l), vec![]);
        }
        let events = m.end_of_stream();
        let message = "⚠️ paddock/scripted-unavailable request failed (provider internal error, HTTP 503). \
                       This is usually temporary — try again shortly.";
        assert_eq!(
            events,
            vec![
                RunnerEvent::AgentStarted {
                    agent: "openclaw".into(),
                    model: None,
                    session_id: Some("f507edac-430d-4d63-8900-7e4134d161dc".into()),
                },
                RunnerEvent::Error {
                    message: message.into()
                },
                RunnerEvent::Final {
                    text: message.into(),
                    is_error: true
                },
            ]
        );
    }

    #[test]
    fn cache_tokens_cost_and_timeout_status() {
        let m = OpenClawMapper::new(Some("m1".into()));
        let events = m.map_envelope(&json!({"ok": false, "status": "timeout", "final": "partial",
            "usage": {"input": 10, "cacheRead": 5, "cacheWrite": 2, "output": 3}, "assistantTurns": 4,
            "costUsd": 0.25}));
        assert_eq!(
            events,
            vec![
                RunnerEvent::AgentStarted {
                    agent: "openclaw".into(),
                    model: Some("m1".into()),
                    session_id: None
                },
                RunnerEvent::Usage(Usage {
                    input_tokens: 17,
                    output_tokens: 3,
                    turns: 4,
                    cost_usd: Some(0.25)
                }),
                RunnerEvent::Error {
                    message: "openclaw run ended with status \"timeout\"".into()
                },
                RunnerEvent::Final {
                    text: "openclaw run ended with status \"timeout\"".into(),
                    is_error: true
                },
            ]
        );
    }

    #[test]
    fn plain_stdout_becomes_log_lines() {
        let mut m = OpenClawMapper::new(None);
        assert_eq!(m.stdout_line("I created hello.txt."), vec![]);
        m.stdout_line("");
        assert_eq!(
            m.end_of_stream(),
            vec![RunnerEvent::Log {
                stream: "stdout".into(),
                text: "I created hello.txt.".into()
            }]
        );
    }

    #[test]
    fn config_names_the_endpoint_and_reads_the_key_from_the_environment() {
        let config: Value = serde_json::from_str(&config_json("http://127.0.0.1:9/v1", Some("m1"))).unwrap();
        assert_eq!(
            config["models"]["providers"]["paddock"],
            json!({"api": "openai-completions", "apiKey": "${OPENAI_API_KEY}",
                "baseUrl": "http://127.0.0.1:9/v1", "models": [{"id": "m1", "name": "m1"}]})
        );
        assert_eq!(config["models"]["mode"], "replace");
        // Free inside the pod: file tools reach outside the working directory.
        assert_eq!(config["tools"]["fs"]["workspaceOnly"], false);
        assert_eq!(config["tools"]["exec"]["applyPatch"]["workspaceOnly"], false);
        assert_eq!(config["update"]["checkOnStart"], false);
        let none: Value = serde_json::from_str(&config_json("http://h/v1", None)).unwrap();
        assert_eq!(none["models"]["providers"]["paddock"]["models"], json!([]));
    }
}
