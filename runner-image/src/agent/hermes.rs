//! The `hermes` adapter: Hermes Agent (`hermes-agent` on PyPI) in one-shot mode (`-z`).
//!
//! In one-shot mode Hermes prints nothing while it works (its logs and tool previews are
//! silenced) and then only the final response text on stdout; it exits 0 even when the model
//! request failed (the text is then the error). Its `--usage-file` JSON report, written after
//! the run even when it failed, carries the token counts, the number of API calls, the session
//! id and whether the run failed. So:
//!
//! | source | events |
//! |---|---|
//! | each stdout line | `log` (`stdout`); all of stdout, trimmed, is the `final` text |
//! | usage file, after the CLI exited: `session_id`, `model` | `agent_started` (model = the file's, else the configured one) |
//! | usage file: `input_tokens`, `cache_read_tokens`, `cache_write_tokens`, `output_tokens`, `reasoning_tokens`, `api_calls`, `estimated_cost_usd`, `cost_status` | `usage`: input = input + cache read + cache write (Hermes counts them apart), output = output + reasoning, `turns` = API calls, cost = `estimated_cost_usd` when `cost_status` is `actual`, `estimated` or `included` (for a model without known prices Hermes writes 0.0 with status `unknown`: no cost) |
//! | usage file: `failed` (and `failure`) | the `final` event has `is_error`; its text is `failure`, else stdout |
//!
//! [`HermesMapper::end_of_stream`] reads the usage file: the one read the adapter does besides the
//! CLI's output. The file is replaced by `{}` before the CLI starts ([`invocation`]), so a run
//! that died before writing it reports no usage rather than an older run's.

use std::path::{Path, PathBuf};

use paddock_crds::events::{RunnerEvent, Usage};
use serde_json::{json, Value};

use paddock_crds::AgentName;

use super::adapter::{program, Adapter};
use super::spec::{AgentKind, AgentSpec, Invocation};
use super::stream::{log_event, StreamMapper};
use crate::env::Env;

/// The context window written into the generated config (`model.context_length`). Hermes
/// otherwise probes the endpoint for it (`/models`, Ollama's `/api/show`, llama.cpp's `/props`,
/// …) before its first request, and a local endpoint (the pod's gateway is one) gets more
/// probes. With it set, only its local-server detection remains (a few GETs answered 404).
pub const CONTEXT_LENGTH: u64 = 131_072;

/// The usage report's path under `home`: `~/.hermes/paddock-usage.json`.
pub fn usage_path(home: &Path) -> PathBuf {
    home.join(".hermes/paddock-usage.json")
}

/// Contents of `~/.hermes/config.yaml` (JSON, which YAML reads as is): the model on a `custom`
/// provider at `base_url` (`OPENAI_BASE_URL`), its key read by Hermes from `OPENAI_API_KEY`
/// when it loads the file (`${VAR}` expansion; the key is not written), `model` as the default
/// model, and [`CONTEXT_LENGTH`].
pub fn config_yaml(base_url: &str, model: Option<&str>) -> String {
    let mut m = json!({
        "provider": "custom",
        "base_url": base_url,
        "api_key": "${OPENAI_API_KEY}",
        "context_length": CONTEXT_LENGTH,
    });
    if let Some(model) = model {
        m["default"] = model.into();
    }
    json!({ "model": m }).to_string()
}

/// The command line: `hermes --yolo --usage-file ~/.hermes/paddock-usage.json <args…>
/// --oneshot=<prompt>` (the `=` form keeps a prompt that starts with `-` as text). With
/// `OPENAI_BASE_URL` set, `~/.hermes/config.yaml` is generated ([`config_yaml`]; the model goes
/// there, not to `-m`, which would make Hermes look the model up in its provider catalog);
/// without it, the model is passed with `-m` and Hermes' own configuration applies.
/// `PYTHONUNBUFFERED=1` unless set.
pub fn invocation(spec: &AgentSpec, env: &Env, program: String) -> Invocation {
    let home = PathBuf::from(env.get("HOME").unwrap_or("/home/paddock"));
    let usage = usage_path(&home);
    let mut args = vec![
        "--yolo".to_string(),
        "--usage-file".to_string(),
        usage.to_string_lossy().into_owned(),
    ];
    let mut files = vec![(usage, "{}\n".to_string())];
    match env.get("OPENAI_BASE_URL") {
        Some(base) => files.push((
            home.join(".hermes/config.yaml"),
            config_yaml(base, spec.model.as_deref()),
        )),
        None => {
            if let Some(m) = &spec.model {
                args.extend(["-m".to_string(), m.clone()]);
            }
        }
    }
    args.extend(spec.args.iter().cloned());
    args.push(format!("--oneshot={}", spec.prompt));
    let mut extra = Vec::new();
    if env.get("PYTHONUNBUFFERED").is_none() {
        extra.push(("PYTHONUNBUFFERED".to_string(), "1".to_string()));
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

/// State of one Hermes run's output.
#[derive(Debug, Default)]
pub struct HermesMapper {
    model: Option<String>,
    usage_file: Option<PathBuf>,
    stdout: Vec<String>,
}

fn n(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl HermesMapper {
    /// A mapper reporting `model` (the configured model) when the usage report names none,
    /// reading the usage report at `usage_file` (see [`usage_path`]) when the CLI exited.
    pub fn new(model: Option<String>, usage_file: Option<PathBuf>) -> Self {
        Self {
            model,
            usage_file,
            stdout: Vec::new(),
        }
    }

    /// The events after the CLI exited, given its usage report (`None`: no usable report).
    /// Pure: [`StreamMapper::end_of_stream`] reads the file and calls this.
    pub fn finish_with(&mut self, report: Option<&Value>) -> Vec<RunnerEvent> {
        let mut out = Vec::new();
        let text = self.stdout.join("\n").trim().to_string();
        let report = report.filter(|r| r.as_object().is_some_and(|o| !o.is_empty()));
        let mut failure = None;
        if let Some(r) = report {
            out.push(RunnerEvent::AgentStarted {
                agent: "hermes".into(),
                model: s(r, "model").or_else(|| self.model.clone()),
                session_id: s(r, "session_id"),
            });
            let calls = n(r, "api_calls");
            let input = n(r, "input_tokens") + n(r, "cache_read_tokens") + n(r, "cache_write_tokens");
            let output = n(r, "output_tokens") + n(r, "reasoning_tokens");
            if calls > 0 || input > 0 || output > 0 {
                out.push(RunnerEvent::Usage(Usage {
                    input_tokens: input,
                    output_tokens: output,
                    turns: u32::try_from(calls).unwrap_or(u32::MAX),
                    cost_usd: matches!(
                        s(r, "cost_status").as_deref(),
                        Some("actual" | "estimated" | "included")
                    )
                    .then(|| r.get("estimated_cost_usd").and_then(Value::as_f64))
                    .flatten(),
                }));
            }
            if r.get("failed").and_then(Value::as_bool) == Some(true) {
                failure = Some(s(r, "failure").unwrap_or_else(|| {
                    if text.is_empty() {
                        "hermes reported a failed run".to_string()
                    } else {
                        text.clone()
                    }
                }));
            }
        }
        out.extend(super::stream::final_event(failure, (!text.is_empty()).then_some(text)));
        out
    }
}

impl StreamMapper for HermesMapper {
    fn stdout_line(&mut self, line: &str) -> Vec<RunnerEvent> {
        super::stream::push_bounded(&mut self.stdout, line);
        log_event("stdout", line)
    }

    fn end_of_stream(&mut self) -> Vec<RunnerEvent> {
        let report = self
            .usage_file
            .as_deref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| serde_json::from_str::<Value>(&t).ok());
        self.finish_with(report.as_ref())
    }
}

/// The `hermes` adapter ([`AgentName::Hermes`]).
#[derive(Debug, Default)]
pub struct Hermes;

impl Adapter for Hermes {
    fn name(&self) -> AgentName {
        AgentName::Hermes
    }

    /// [`invocation`] with program `hermes` (or `PADDOCK_AGENT_BIN`).
    fn invocation(&self, spec: &AgentSpec, env: &Env) -> Invocation {
        invocation(spec, env, program(env, "hermes"))
    }

    fn mapper(&self, _kind: AgentKind, model: Option<String>) -> Box<dyn StreamMapper> {
        // The usage file is where `invocation` put it: under the runner's own HOME, which the
        // CLI inherits.
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/home/paddock"), PathBuf::from);
        Box::new(HermesMapper::new(model, Some(usage_path(&home))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

    fn map_all(stdout: &str, usage_file: &str) -> Vec<RunnerEvent> {
        crate::agent::map_stdout(
            HermesMapper::new(
                Some("scripted-edit-file".into()),
                Some(Path::new(FIXTURES).join(usage_file)),
            ),
            stdout,
        )
    }

    /// What real Hermes Agent 0.19.0 printed and wrote to its usage file against the scripted
    /// model's `edit-file` script (it wrote hello.txt with its `write_file` tool), run as the
    /// adapter runs it.
    #[test]
    fn maps_real_hermes_output_and_usage_file() {
        let events = map_all(
            include_str!("../../tests/fixtures/hermes-edit-file.txt"),
            "hermes-edit-file-usage.json",
        );
        assert_eq!(
            events,
            vec![
                RunnerEvent::Log {
                    stream: "stdout".into(),
                    text: "I created hello.txt.".into()
                },
                RunnerEvent::AgentStarted {
                    agent: "hermes".into(),
                    model: Some("scripted-edit-file".into()),
                    session_id: Some("20261122_095417_8d89d2".into()),
                },
                RunnerEvent::Usage(Usage {
                    input_tokens: 2500,
                    output_tokens: 50,
                    turns: 2,
                    cost_usd: None
                }),
                RunnerEvent::Final {
                    text: "I created hello.txt.".into(),
                    is_error: false
                },
            ]
        );
    }

    /// Hermes against the scripted model's `unavailable` script (every answer 503): it exits 0
    /// and prints the error as its response; the usage file says `failed`.
    #[test]
    fn failed_run_is_a_failed_final() {
        let events = map_all(
            include_str!("../../tests/fixtures/hermes-unavailable.txt"),
            "hermes-unavailable-usage.json",
        );
        let text = "API call failed after 3 retries: HTTP 503: scripted: the model endpoint is unavailable";
        assert_eq!(
            events,
            vec![
                RunnerEvent::Log {
                    stream: "stdout".into(),
                    text: text.into()
                },
                RunnerEvent::AgentStarted {
                    agent: "hermes".into(),
                    model: Some("scripted-edit-file".into()),
                    session_id: None,
                },
                RunnerEvent::Usage(Usage {
                    input_tokens: 0,
                    output_tokens: 0,
                    turns: 1,
                    cost_usd: None
                }),
                RunnerEvent::Final {
                    text: text.into(),
                    is_error: true
                },
            ]
        );
    }

    #[test]
    fn reports_cost_cache_and_failure_text() {
        let report = json!({"input_tokens": 10, "cache_read_tokens": 100, "cache_write_tokens": 5,
            "output_tokens": 3, "reasoning_tokens": 2, "api_calls": 1, "estimated_cost_usd": 0.25,
            "cost_status": "estimated", "failed": true, "failure": "boom"});
        let mut m = HermesMapper::new(None, None);
        let events = m.finish_with(Some(&report));
        assert_eq!(
            events[1..],
            [
                RunnerEvent::Usage(Usage {
                    input_tokens: 115,
                    output_tokens: 5,
                    turns: 1,
                    cost_usd: Some(0.25)
                }),
                RunnerEvent::Final {
                    text: "boom".into(),
                    is_error: true
                },
            ]
        );
        // No usage file (the placeholder `{}` or none at all): stdout only.
        let mut m = HermesMapper::new(None, Some(PathBuf::from("/nonexistent/usage.json")));
        m.stdout_line("done");
        assert_eq!(
            m.end_of_stream(),
            [RunnerEvent::Final {
                text: "done".into(),
                is_error: false
            }]
        );
        assert_eq!(HermesMapper::new(None, None).finish_with(Some(&json!({}))), []);
    }
}
