//! The `openhands` adapter: the OpenHands CLI (`openhands` on PyPI, on Python 3.12) in headless
//! JSON mode.
//!
//! `openhands --headless --json` prints its conversation's events as JSON objects, one a line,
//! among text lines (start-up notes, `Agent is working`, a closing summary box, `Conversation
//! ID: <hex>`). It exits 0 even when the model request failed: a `ConversationErrorEvent` says
//! so. Token counts are not in the stream; they are in the conversation's state file,
//! `~/.openhands/conversations/<hex>/base_state.json`, read after the CLI exited. So:
//!
//! | CLI line | events |
//! |---|---|
//! | `✓ Agent initialized with model: <m>` (or else the first JSON line) | `agent_started` (model = the configured one, else `<m>`; the conversation id is printed only at the end) |
//! | `MessageEvent` from `agent` (`llm_message.content[].text`) | `message` (the last one becomes the `final` text); from `user` (the prompt): nothing |
//! | `ActionEvent` (`thought[].text`, `tool_call_id`, `tool_name`, `tool_call.arguments`) | `message` for a thought, then `tool_call` (input = the arguments the model sent); for the `finish` tool, a `message` of `action.message` instead (the answer; it becomes the `final` text) |
//! | `ObservationEvent` (`observation.content[].text`, `observation.is_error`) | `tool_result` (none for `finish`) |
//! | `AgentErrorEvent` (`error`): a tool call the agent refused (bad arguments, unknown tool) | `tool_result` with `is_error` for its `tool_call_id`; without one, `error` |
//! | `UserRejectObservation` (`rejection_reason`) | `tool_result` with `is_error` |
//! | `ConversationErrorEvent` (`detail`, else `code`) | `error`; the `final` event then has `is_error` with that text |
//! | `Conversation ID: <hex>` | which state file to read (else the newest in the conversations directory) |
//! | state file: `stats.usage_to_metrics.*` (the agent, its condenser, sub-agents) | `usage`, summed: input = `accumulated_token_usage.prompt_tokens` (cache reads and writes are part of it), output = `completion_tokens` (reasoning included), `turns` = model calls (`token_usages`), cost = `accumulated_cost` when not 0 (litellm's price; 0 for models it has no price for) |
//! | state file: `execution_status` `error` or `stuck` | the `final` event has `is_error` (when no error event said more) |
//!
//! Other JSON lines (e.g. `SystemPromptEvent`, `Condensation`) are ignored; other text lines become
//! `log` events, but the closing summary box (`CONVERSATION SUMMARY` up to the next rule: the
//! last message again, or the whole system prompt when there was none) is left out.

use std::path::{Path, PathBuf};

use paddock_crds::events::{RunnerEvent, Usage};
use paddock_crds::AgentName;
use serde_json::Value;

use super::adapter::{home, program, Adapter};
use super::spec::{AgentKind, AgentSpec, Invocation};
use super::stream::{compact, log_event, StreamMapper};
use crate::env::Env;

/// Flags every run gets: no UI, events as JSON lines, the model settings from the environment
/// (`LLM_MODEL`, `LLM_API_KEY`, `LLM_BASE_URL`) rather than a settings file, and every action
/// approved (the confirmation policy `NeverConfirm`).
pub const FLAGS: [&str; 4] = ["--headless", "--json", "--override-with-envs", "--always-approve"];

/// Where OpenHands keeps its clone of the public skills repository (under `$HOME`), which it
/// clones from GitHub, or fetches into, at every start. A `.git` file there that points nowhere
/// makes it take the directory as a clone whose fetch fails at once (it logs the failed `git
/// fetch` and goes on without public skills), so no run reaches out to GitHub for them.
pub const SKILLS_CLONE_GIT: &str = ".openhands/cache/skills/public-skills/.git";
/// Contents of [`SKILLS_CLONE_GIT`].
pub const SKILLS_CLONE_GIT_CONTENTS: &str = "gitdir: /nonexistent\n";

/// The model OpenHands is given (`LLM_MODEL`, a litellm model name): with `OPENAI_BASE_URL` set,
/// `openai/<model>` (an OpenAI-compatible Chat Completions endpoint whatever the name holds);
/// otherwise as given (`anthropic/…`, `gpt-4o`, …).
pub fn model_name(model: &str, base_url: Option<&str>) -> String {
    match base_url {
        Some(_) => format!("openai/{model}"),
        None => model.to_string(),
    }
}

/// The command line: `openhands <FLAGS> <args…> --task=<prompt>` (the `=` form keeps a prompt
/// that starts with `-` as text). Environment, each only when not already set: `LLM_MODEL`
/// ([`model_name`]), `LLM_BASE_URL` = `OPENAI_BASE_URL`, `LLM_API_KEY` = `OPENAI_API_KEY` (in a
/// pod, the gateway's placeholder), `LITELLM_LOCAL_MODEL_COST_MAP=True` (litellm reads its
/// bundled price list instead of downloading it), `OPENHANDS_SUPPRESS_BANNER=1`,
/// `PYTHONUNBUFFERED=1` (lines arrive as printed), `TTY_COMPATIBLE=0` (no terminal escapes in
/// its text lines). The file [`SKILLS_CLONE_GIT`] is written under `$HOME`.
pub fn invocation(spec: &AgentSpec, env: &Env, program: String) -> Invocation {
    let base = env.get("OPENAI_BASE_URL");
    let mut args: Vec<String> = FLAGS.map(String::from).to_vec();
    args.extend(spec.args.iter().cloned());
    args.push(format!("--task={}", spec.prompt));
    let mut extra = Vec::new();
    let mut set = |k: &str, v: &str| {
        if env.get(k).is_none() {
            extra.push((k.to_string(), v.to_string()));
        }
    };
    if let Some(m) = &spec.model {
        set("LLM_MODEL", &model_name(m, base));
    }
    if let Some(b) = base {
        set("LLM_BASE_URL", b);
    }
    if let Some(key) = env.get("OPENAI_API_KEY") {
        set("LLM_API_KEY", key);
    }
    set("LITELLM_LOCAL_MODEL_COST_MAP", "True");
    set("OPENHANDS_SUPPRESS_BANNER", "1");
    set("PYTHONUNBUFFERED", "1");
    set("TTY_COMPATIBLE", "0");
    Invocation {
        stdin: None,
        program,
        args,
        env: extra,
        create_dirs: Vec::new(),
        files: vec![(home(env).join(SKILLS_CLONE_GIT), SKILLS_CLONE_GIT_CONTENTS.to_string())],
    }
}

/// The directory OpenHands keeps conversations in, given the environment it runs in:
/// `OPENHANDS_CONVERSATIONS_DIR`, else `OPENHANDS_PERSISTENCE_DIR/conversations`, else
/// `$HOME/.openhands/conversations`.
pub fn conversations_dir(env: &Env) -> PathBuf {
    if let Some(d) = env.get("OPENHANDS_CONVERSATIONS_DIR") {
        return PathBuf::from(d);
    }
    match env.get("OPENHANDS_PERSISTENCE_DIR") {
        Some(p) => Path::new(p).join("conversations"),
        None => home(env).join(".openhands/conversations"),
    }
}

/// The state file of conversation `id` (the hex of `Conversation ID:`) under `dir`, or, without
/// an id, the newest `*/base_state.json` there. `None` for an id that is not a plain name.
pub fn state_file(dir: &Path, id: Option<&str>) -> Option<PathBuf> {
    if let Some(id) = id {
        let plain = !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        return plain.then(|| dir.join(id.replace('-', "")).join("base_state.json"));
    }
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| {
            let p = e.ok()?.path().join("base_state.json");
            let modified = p.metadata().ok()?.modified().ok()?;
            Some((modified, p))
        })
        .max()
        .map(|(_, p)| p)
}

/// State of one OpenHands run's output.
#[derive(Debug, Default)]
pub struct OpenHandsMapper {
    model: Option<String>,
    conversations: Option<PathBuf>,
    started: bool,
    in_summary: bool,
    conversation_id: Option<String>,
    last_message: Option<String>,
    failure: Option<String>,
    finish_calls: Vec<String>,
}

fn s(v: &Value, ptr: &str) -> Option<String> {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn n(v: &Value, ptr: &str) -> u64 {
    v.pointer(ptr).and_then(Value::as_u64).unwrap_or(0)
}

/// The text parts of a content list (`[{"type": "text", "text": …}, …]`), joined by newlines.
fn texts(v: Option<&Value>) -> String {
    v.and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .filter(|t| !t.trim().is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// A line of `─` only (Rich's rule): the end of the summary box.
fn is_rule(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && t.chars().all(|c| c == '─')
}

impl OpenHandsMapper {
    /// A mapper reporting `model` (the configured model) in `agent_started`, reading the state
    /// file under `conversations` (see [`conversations_dir`]) when the CLI exited.
    pub fn new(model: Option<String>, conversations: Option<PathBuf>) -> Self {
        Self {
            model,
            conversations,
            ..Self::default()
        }
    }

    fn started(&mut self, printed_model: Option<String>) -> Vec<RunnerEvent> {
        if self.started {
            return Vec::new();
        }
        self.started = true;
        vec![RunnerEvent::AgentStarted {
            agent: "openhands".into(),
            model: self.model.clone().or(printed_model),
            session_id: None,
        }]
    }

    fn message(&mut self, text: String, out: &mut Vec<RunnerEvent>) {
        if !text.trim().is_empty() {
            self.last_message = Some(text.clone());
            out.push(RunnerEvent::Message { text });
        }
    }

    fn fail(&mut self, message: String, out: &mut Vec<RunnerEvent>) {
        self.failure = Some(match self.failure.take() {
            Some(f) => format!("{f}\n{message}"),
            None => message.clone(),
        });
        out.push(RunnerEvent::Error { message });
    }

    fn map(&mut self, v: &Value) -> Vec<RunnerEvent> {
        let mut out = self.started(None);
        let id = s(v, "/tool_call_id").unwrap_or_default();
        match v.get("kind").and_then(Value::as_str) {
            Some("MessageEvent") if s(v, "/source").as_deref() == Some("agent") => {
                self.message(texts(v.pointer("/llm_message/content")), &mut out);
            }
            Some("ActionEvent") => {
                let thought = texts(v.get("thought"));
                if !thought.is_empty() {
                    out.push(RunnerEvent::Message { text: thought });
                }
                let name = s(v, "/tool_name").unwrap_or_default();
                if name == "finish" {
                    self.finish_calls.push(id);
                    self.message(s(v, "/action/message").unwrap_or_default(), &mut out);
                } else {
                    let input = v
                        .pointer("/tool_call/arguments")
                        .or_else(|| v.get("action"))
                        .map(compact)
                        .unwrap_or_default();
                    out.push(RunnerEvent::ToolCall { id, name, input });
                }
            }
            Some("ObservationEvent") if !self.finish_calls.contains(&id) => {
                let obs = v.get("observation").cloned().unwrap_or(Value::Null);
                out.push(RunnerEvent::ToolResult {
                    id,
                    is_error: obs.get("is_error").and_then(Value::as_bool) == Some(true),
                    output: texts(obs.get("content")),
                });
            }
            Some("AgentErrorEvent") => {
                let error = s(v, "/error").unwrap_or_else(|| "agent error".into());
                if id.is_empty() {
                    out.push(RunnerEvent::Error { message: error });
                } else {
                    out.push(RunnerEvent::ToolResult {
                        id,
                        is_error: true,
                        output: error,
                    });
                }
            }
            Some("UserRejectObservation") => out.push(RunnerEvent::ToolResult {
                id,
                is_error: true,
                output: s(v, "/rejection_reason").unwrap_or_else(|| "rejected".into()),
            }),
            Some("ConversationErrorEvent") => {
                let message = s(v, "/detail")
                    .or_else(|| s(v, "/code"))
                    .unwrap_or_else(|| "conversation error".into());
                self.fail(message, &mut out);
            }
            _ => {}
        }
        out
    }

    fn text_line(&mut self, line: &str) -> Vec<RunnerEvent> {
        if self.in_summary {
            self.in_summary = !is_rule(line);
            return Vec::new();
        }
        if line.contains("CONVERSATION SUMMARY") {
            self.in_summary = true;
            return Vec::new();
        }
        let mut out = Vec::new();
        if let Some(m) = line.trim().strip_prefix("✓ Agent initialized with model:") {
            out = self.started(Some(m.trim().to_string()));
        }
        if let Some(id) = line.trim().strip_prefix("Conversation ID:") {
            self.conversation_id = Some(id.trim().to_string());
        }
        out.extend(log_event("stdout", line));
        out
    }

    /// The events after the CLI exited, given its conversation's state file (`None`: none
    /// found or not JSON). Pure: [`StreamMapper::end_of_stream`] reads the file and calls this.
    pub fn finish_with(&mut self, state: Option<&Value>) -> Vec<RunnerEvent> {
        let mut out = Vec::new();
        if let Some(state) = state {
            let mut usage = Usage::default();
            let mut cost = 0.0;
            let metrics = state.pointer("/stats/usage_to_metrics").and_then(Value::as_object);
            for m in metrics.into_iter().flat_map(|m| m.values()) {
                usage.input_tokens += n(m, "/accumulated_token_usage/prompt_tokens");
                usage.output_tokens += n(m, "/accumulated_token_usage/completion_tokens");
                let calls = m.get("token_usages").and_then(Value::as_array).map_or(0, Vec::len);
                usage.turns = usage.turns.saturating_add(u32::try_from(calls).unwrap_or(u32::MAX));
                cost += m.get("accumulated_cost").and_then(Value::as_f64).unwrap_or(0.0);
            }
            usage.cost_usd = (cost > 0.0).then_some(cost);
            if usage.turns > 0 || usage.input_tokens > 0 || usage.output_tokens > 0 {
                out.push(RunnerEvent::Usage(usage));
            }
            if let Some(status @ ("error" | "stuck")) = state.get("execution_status").and_then(Value::as_str) {
                if self.failure.is_none() {
                    self.failure = Some(format!("openhands ended with execution status {status}"));
                }
            }
        }
        out.extend(super::stream::final_event(
            self.failure.take(),
            self.last_message.take(),
        ));
        out
    }
}

impl StreamMapper for OpenHandsMapper {
    fn stdout_line(&mut self, line: &str) -> Vec<RunnerEvent> {
        match serde_json::from_str::<Value>(line.trim()) {
            Ok(v) if v.is_object() && line.trim_start().starts_with('{') => self.map(&v),
            _ => self.text_line(line),
        }
    }

    fn end_of_stream(&mut self) -> Vec<RunnerEvent> {
        let state = self
            .conversations
            .as_deref()
            .and_then(|dir| state_file(dir, self.conversation_id.as_deref()))
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| serde_json::from_str::<Value>(&t).ok());
        self.finish_with(state.as_ref())
    }
}

/// The `openhands` adapter ([`AgentName::OpenHands`]).
#[derive(Debug, Default)]
pub struct OpenHands;

impl Adapter for OpenHands {
    fn name(&self) -> AgentName {
        AgentName::OpenHands
    }

    /// [`invocation`] with program `openhands` (or `PADDOCK_AGENT_BIN`).
    fn invocation(&self, spec: &AgentSpec, env: &Env) -> Invocation {
        invocation(spec, env, program(env, "openhands"))
    }

    fn mapper(&self, _kind: AgentKind, model: Option<String>) -> Box<dyn StreamMapper> {
        // The CLI inherits the runner's environment: its conversations are where the runner's
        // own variables say.
        let env = Env::from_process();
        Box::new(OpenHandsMapper::new(model, Some(conversations_dir(&env))))
    }
}

#[cfg(test)]
mod tests;
