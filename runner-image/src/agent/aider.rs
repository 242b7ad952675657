//! The `aider` adapter: aider (`aider-chat` on PyPI) with `--message`, plain text output.
//!
//! Aider edits through text blocks in the model's reply (its `whole`, `diff`, … edit formats),
//! not tool calls, and prints plain text: its banner, the model's reply, what it applied, and a
//! usage line. With `--no-pretty` nothing is coloured. Every stdout line becomes a `log` event;
//! what is recognised becomes more:
//!
//! | CLI line | events |
//! |---|---|
//! | every non-blank line | `log` (`stdout`), before the events below |
//! | `Model: <model> with <format> edit format` (or `Main model: …`) in the banner after `Aider v<version>` | `agent_started` (model = the configured one; aider has no session id) |
//! | the lines after the banner ([`BANNER_PREFIXES`]) up to a usage line, and after each usage line up to the next (less aider's edit report, which ends with `Applied edit to <path>`) | the model's reply: the last complete one (blank edges trimmed) is the `final` text |
//! | `Tokens: <n> sent[, <n> cache write][, <n> cache hit], <n> received.[ Cost: $<x> message, $<y> session.]` (one per model request) | `usage`, cumulative: input = sent (aider's prompt tokens; they include cache writes, and on OpenAI-compatible endpoints cache hits too, so the `cache hit` figure is not added), output = received, `turns` = usage lines so far, cost = the session cost when the line has one (only for models with prices in the model metadata). Aider rounds counts (`1.2k`, `12k`) and, for streamed replies, counts the tokens itself: the figures are its line's |
//! | `Cost: $<x> message, $<y> session.` alone (aider's second line when there were cache hits and writes) | `usage` again with that session cost |
//! | `litellm.<Kind>Error: …` (a model request failed; aider exits 0 all the same) | `error`; `final` has `is_error` with that text, unless a later usage line shows that a retry succeeded |
//!
//! Aider's own files stay out of the worktree: the chat and input histories go to `~/.aider/`,
//! and `~/.config/git/ignore` (read by git and libgit2 when no `core.excludesFile` is set)
//! ignores its repo-map cache `.aider.tags.cache.v*/`. It commits nothing itself
//! (`--no-auto-commits`, which also turns off its dirty commits): the runner commits.

use std::path::PathBuf;

use paddock_crds::events::{RunnerEvent, Usage};

use paddock_crds::AgentName;

use super::adapter::{program, Adapter};
use super::spec::{AgentKind, AgentSpec, Invocation};
use super::stream::{log_event, StreamMapper};
use crate::env::Env;

/// Flags every run gets (aider 0.86 `--help`): answer yes to its confirmations, no update
/// check, no analytics, no colours or terminal input, no auto commits (the runner commits) and
/// no `.gitignore` edit, no warnings about models it does not know, no URL scraping from the
/// prompt, no Playwright install prompt.
pub const FLAGS: [&str; 10] = [
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
];

/// Contents of `~/.config/git/ignore` the adapter writes: aider's repo-map cache, which it
/// keeps in the repository root.
pub const GIT_IGNORE: &str = "/.aider.tags.cache.v*/\n";

/// `COLUMNS` for aider: its console (rich) wraps lines at the terminal width, 80 columns
/// without a terminal, which would split an error message over lines; this keeps every message
/// on one line.
pub const COLUMNS: &str = "4096";

/// The model aider is given: with `OPENAI_BASE_URL` set, the model is served there, so it gets
/// litellm's `openai/` prefix (an OpenAI-compatible endpoint whatever the name holds);
/// otherwise it is passed as given (`anthropic/…`, `gpt-4o`, …).
pub fn model_name(model: &str, base_url: Option<&str>) -> String {
    match base_url {
        Some(_) => format!("openai/{model}"),
        None => model.to_string(),
    }
}

/// The `--model-metadata-file` JSON for `model` (the name aider is given): a 128k-token chat
/// model on litellm's `openai` provider without prices. With it aider fetches no model list
/// (its `ModelInfoManager` looks in this file first) and prints no cost (its usage line has a
/// cost only for models with prices; the pod's gateway meters cost instead).
pub fn model_metadata_json(model: &str) -> String {
    serde_json::json!({ model: {
        "max_input_tokens": 128000,
        "max_output_tokens": 8192,
        "max_tokens": 8192,
        "input_cost_per_token": 0,
        "output_cost_per_token": 0,
        "litellm_provider": "openai",
        "mode": "chat",
    }})
    .to_string()
}

/// The command line: `aider [--model m] <FLAGS> --chat-history-file ~/.aider/chat.history.md
/// --input-history-file ~/.aider/input.history [--model-metadata-file
/// ~/.aider.model.metadata.json] <args…> --message=<prompt>`. The `=` form keeps a prompt that
/// starts with `-` as text (argparse takes the value after `=` verbatim). Environment:
/// `OPENAI_API_BASE` (litellm's name) = `OPENAI_BASE_URL`, `LITELLM_LOCAL_MODEL_COST_MAP=True`
/// (litellm reads its bundled price list instead of downloading it), `PYTHONUNBUFFERED=1`
/// (lines arrive as printed), `COLUMNS` = [`COLUMNS`]; each only when not already set. The metadata file is written
/// only with a model and without `AIDER_MODEL_METADATA_FILE` (yours wins).
pub fn invocation(spec: &AgentSpec, env: &Env, program: String) -> Invocation {
    let home = PathBuf::from(env.get("HOME").unwrap_or("/home/paddock"));
    let base = env.get("OPENAI_BASE_URL");
    let model = spec.model.as_deref().map(|m| model_name(m, base));
    let mut args = Vec::new();
    if let Some(m) = &model {
        args.extend(["--model".to_string(), m.clone()]);
    }
    args.extend(FLAGS.map(String::from));
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    args.extend([
        "--chat-history-file".to_string(),
        path(home.join(".aider/chat.history.md")),
        "--input-history-file".to_string(),
        path(home.join(".aider/input.history")),
    ]);
    let mut files = vec![(home.join(".config/git/ignore"), GIT_IGNORE.to_string())];
    if let (Some(m), None) = (&model, env.get("AIDER_MODEL_METADATA_FILE")) {
        let meta = home.join(".aider.model.metadata.json");
        args.extend(["--model-metadata-file".to_string(), path(meta.clone())]);
        files.push((meta, model_metadata_json(m)));
    }
    args.extend(spec.args.iter().cloned());
    args.push(format!("--message={}", spec.prompt));
    let mut extra = Vec::new();
    let mut set = |k: &str, v: &str| {
        if env.get(k).is_none() {
            extra.push((k.to_string(), v.to_string()));
        }
    };
    if let Some(b) = base {
        set("OPENAI_API_BASE", b);
    }
    set("LITELLM_LOCAL_MODEL_COST_MAP", "True");
    set("PYTHONUNBUFFERED", "1");
    set("COLUMNS", COLUMNS);
    Invocation {
        stdin: None,
        program,
        args,
        env: extra,
        create_dirs: vec![home.join(".aider")],
        files,
    }
}

/// Starts of the lines aider prints after `Aider v<version>` and before the model's reply
/// (`Coder.get_announcements` in aider 0.86, plus its release-notes link on a first run).
pub const BANNER_PREFIXES: [&str; 12] = [
    "Model: ",
    "Main model: ",
    "Editor model: ",
    "Weak model: ",
    "Git repo: ",
    "Warning: ",
    "See: ",
    "Repo-map: ",
    "Added ",
    "Restored previous conversation history.",
    "Multiline mode: ",
    "https://aider.chat/",
];

/// Where aider's output is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before `Aider v…` (notices such as "Analytics have been permanently disabled.").
    #[default]
    Start,
    /// The banner after `Aider v…`.
    Banner,
    /// Model output: from the first line after the banner, and again after each usage line.
    Reply,
}

/// State of one aider run's output.
#[derive(Debug, Default)]
pub struct AiderMapper {
    model: Option<String>,
    started: bool,
    phase: Phase,
    reply: Vec<String>,
    last_reply: Option<String>,
    usage: Usage,
    failure: Option<String>,
}

/// Parses aider's rounded token count: `950`, `1.2k`, `12k`.
fn tokens(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_suffix('k') {
        Some(k) => k.parse::<f64>().ok().map(|v| (v * 1000.0).round() as u64),
        None => s.parse().ok(),
    }
}

/// The session cost of a `Cost: $<x> message, $<y> session.` text, in USD.
fn session_cost(s: &str) -> Option<f64> {
    let rest = &s[s.find("Cost: $")? + "Cost: $".len()..];
    let session = rest.split(", $").nth(1)?;
    session.strip_suffix(" session.")?.parse().ok()
}

/// A usage line's (sent, received), or `None` when `line` is not one.
fn usage_line(line: &str) -> Option<(u64, u64)> {
    let body = line.strip_prefix("Tokens: ")?;
    let tokens_part = body.split(". Cost:").next()?.trim_end_matches('.');
    let (mut input, mut output) = (None, None);
    for part in tokens_part.split(", ") {
        if let Some(n) = part.strip_suffix(" sent") {
            input = Some(tokens(n)?);
        } else if let Some(n) = part.strip_suffix(" received") {
            output = Some(tokens(n)?);
        }
    }
    Some((input?, output?))
}

/// The `final` text of a reply: its lines with blank lines at both ends removed.
fn reply_text(lines: &[String]) -> Option<String> {
    let text = lines.join("\n");
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

impl AiderMapper {
    /// A mapper reporting `model` (the configured model) in `agent_started`.
    pub fn new(model: Option<String>) -> Self {
        Self {
            model,
            ..Self::default()
        }
    }

    fn map(&mut self, line: &str) -> Vec<RunnerEvent> {
        let mut out = Vec::new();
        if self.phase == Phase::Banner
            && !self.started
            && (line.starts_with("Model: ") || line.starts_with("Main model: "))
        {
            self.started = true;
            out.push(RunnerEvent::AgentStarted {
                agent: "aider".into(),
                model: self.model.clone(),
                session_id: None,
            });
        }
        out.extend(log_event("stdout", line));
        if let Some((input, output)) = usage_line(line) {
            // The reply since the banner (or the previous usage line) is complete.
            if let Some(text) = reply_text(&self.reply) {
                self.last_reply = Some(text);
            }
            self.reply.clear();
            self.phase = Phase::Reply;
            self.usage.input_tokens += input;
            self.usage.output_tokens += output;
            self.usage.turns += 1;
            if let Some(cost) = session_cost(line) {
                self.usage.cost_usd = Some(cost);
            }
            // A request succeeded after an error: aider retried.
            self.failure = None;
            out.push(RunnerEvent::Usage(self.usage.clone()));
        } else if line.starts_with("Cost: $") && self.usage.turns > 0 {
            if let Some(cost) = session_cost(line) {
                self.usage.cost_usd = Some(cost);
                out.push(RunnerEvent::Usage(self.usage.clone()));
            }
        } else if line.starts_with("litellm.") && line.contains("Error") {
            self.failure = Some(line.to_string());
            out.push(RunnerEvent::Error {
                message: line.to_string(),
            });
        } else if line.starts_with("Applied edit to ") {
            // What follows a usage line until here is aider's edit report, not the model's.
            self.reply.clear();
        } else {
            match self.phase {
                Phase::Start => {
                    if line.starts_with("Aider v") {
                        self.phase = Phase::Banner;
                    }
                }
                Phase::Banner => {
                    let banner = line.trim().is_empty() || BANNER_PREFIXES.iter().any(|p| line.starts_with(p));
                    if !banner {
                        self.phase = Phase::Reply;
                        super::stream::push_bounded(&mut self.reply, line);
                    }
                }
                Phase::Reply => super::stream::push_bounded(&mut self.reply, line),
            }
        }
        out
    }
}

impl StreamMapper for AiderMapper {
    fn stdout_line(&mut self, line: &str) -> Vec<RunnerEvent> {
        self.map(line)
    }

    /// `final`: the failure when the last model request failed, else the last reply that a
    /// usage line completed. Output after the last usage line (aider's edit report) is not a
    /// reply.
    fn end_of_stream(&mut self) -> Vec<RunnerEvent> {
        super::stream::final_event(self.failure.take(), self.last_reply.take())
    }
}

/// The `aider` adapter ([`AgentName::Aider`]).
#[derive(Debug, Default)]
pub struct Aider;

impl Adapter for Aider {
    fn name(&self) -> AgentName {
        AgentName::Aider
    }

    /// [`invocation`] with program `aider` (or `PADDOCK_AGENT_BIN`).
    fn invocation(&self, spec: &AgentSpec, env: &Env) -> Invocation {
        invocation(spec, env, program(env, "aider"))
    }

    fn mapper(&self, _kind: AgentKind, model: Option<String>) -> Box<dyn StreamMapper> {
        Box::new(AiderMapper::new(model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_all(text: &str) -> Vec<RunnerEvent> {
        crate::agent::map_stdout(AiderMapper::new(Some("scripted-edit-file-text".into())), text)
    }

    fn log(text: &str) -> RunnerEvent {
        RunnerEvent::Log {
            stream: "stdout".into(),
            text: text.into(),
        }
    }

    const REPLY: &str = "I'll create hello.txt.\n\nhello.txt\n```\nHello from the scripted model\n```";

    /// What real aider 0.86.2 printed against the scripted model's `edit-file-text` script,
    /// run as the adapter runs it (fresh HOME, fresh repository, stdin closed).
    #[test]
    fn maps_real_aider_output() {
        let events = map_all(include_str!("../../tests/fixtures/aider-edit-file.txt"));
        let mut expected = vec![
            log("Analytics have been permanently disabled."),
            log("Update git name with: git config user.name \"Your Name\""),
            log("Update git email with: git config user.email \"you@example.com\""),
            log("Aider v0.86.2"),
            RunnerEvent::AgentStarted {
                agent: "aider".into(),
                model: Some("scripted-edit-file-text".into()),
                session_id: None,
            },
            log("Model: openai/scripted-edit-file-text with whole edit format"),
            log("Git repo: .git with 1 files"),
            log("Repo-map: using 4096 tokens, auto refresh"),
            log("https://aider.chat/HISTORY.html#release-notes"),
        ];
        expected.extend(REPLY.lines().filter(|l| !l.is_empty()).map(log));
        expected.extend([
            log("Tokens: 770 sent, 19 received."),
            RunnerEvent::Usage(Usage {
                input_tokens: 770,
                output_tokens: 19,
                turns: 1,
                cost_usd: None,
            }),
            log("hello.txt"),
            log("Applied edit to hello.txt"),
            RunnerEvent::Final {
                text: REPLY.into(),
                is_error: false,
            },
        ]);
        assert_eq!(events, expected);
    }

    /// The same run with prices in the model metadata (`AIDER_MODEL_METADATA_FILE`): the usage
    /// line has the cost.
    #[test]
    fn maps_real_aider_output_with_cost() {
        let events = map_all(include_str!("../../tests/fixtures/aider-edit-file-priced.txt"));
        let usage: Vec<_> = events.iter().filter(|e| matches!(e, RunnerEvent::Usage(_))).collect();
        assert_eq!(
            usage,
            [&RunnerEvent::Usage(Usage {
                input_tokens: 770,
                output_tokens: 19,
                turns: 1,
                cost_usd: Some(0.0026),
            })]
        );
        assert_eq!(
            events.last(),
            Some(&RunnerEvent::Final {
                text: REPLY.into(),
                is_error: false
            })
        );
    }

    #[test]
    fn usage_lines_in_all_their_shapes() {
        assert_eq!(usage_line("Tokens: 770 sent, 19 received."), Some((770, 19)));
        assert_eq!(
            usage_line("Tokens: 12k sent, 1.5k cache write, 2.3k cache hit, 1.2k received. Cost: $0.05 message, $0.12 session."),
            Some((12000, 1200))
        );
        assert_eq!(session_cost("Cost: $0.0026 message, $0.0031 session."), Some(0.0031));
        assert_eq!(usage_line("Tokens: lots"), None);
        assert_eq!(usage_line("Applied edit to hello.txt"), None);
    }

    /// Two requests (a retry after an error, then a reflection): usage adds up, the error is
    /// cleared by the later success, and the final text is the last reply, not the edit report.
    #[test]
    fn retries_add_up_and_the_last_reply_is_final() {
        let lines = [
            "Aider v0.86.2",
            "Main model: openai/m with diff edit format",
            "litellm.RateLimitError: RateLimitError: OpenAIException - slow down",
            "Retrying in 0.2 seconds...",
            "first reply",
            "Tokens: 1.2k sent, 40 received.",
            "a.txt",
            "Applied edit to a.txt",
            "second",
            "reply",
            "Tokens: 2k sent, 1.5k cache write, 2.3k cache hit, 50 received.",
            "Cost: $0.01 message, $0.02 session.",
        ]
        .join("\n");
        let events = map_all(&lines);
        let usage: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                RunnerEvent::Usage(u) => Some(u.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            usage,
            [
                Usage {
                    input_tokens: 1200,
                    output_tokens: 40,
                    turns: 1,
                    cost_usd: None
                },
                Usage {
                    input_tokens: 3200,
                    output_tokens: 90,
                    turns: 2,
                    cost_usd: None
                },
                // With cache hits and writes aider prints the cost on a line of its own.
                Usage {
                    input_tokens: 3200,
                    output_tokens: 90,
                    turns: 2,
                    cost_usd: Some(0.02)
                },
            ]
        );
        assert!(events.contains(&RunnerEvent::Error {
            message: "litellm.RateLimitError: RateLimitError: OpenAIException - slow down".into()
        }));
        assert_eq!(
            events.last(),
            Some(&RunnerEvent::Final {
                text: "second\nreply".into(),
                is_error: false
            })
        );
    }

    #[test]
    fn a_failed_request_is_a_failed_final() {
        let lines = "Aider v0.86.2\nModel: openai/m with whole edit format\n\nlitellm.NotFoundError: NotFoundError: OpenAIException - Error code: 404\n";
        assert_eq!(
            map_all(lines).last(),
            Some(&RunnerEvent::Final {
                text: "litellm.NotFoundError: NotFoundError: OpenAIException - Error code: 404".into(),
                is_error: true
            })
        );
    }

    /// Aider against the scripted model's `unavailable-text` script (its task request is
    /// answered 503; litellm reports the error body's `model_not_found` code as NotFoundError
    /// and aider does not retry it): aider exits 0 after printing the error.
    #[test]
    fn maps_real_aider_failure() {
        let events = map_all(include_str!("../../tests/fixtures/aider-unavailable.txt"));
        let message = "litellm.NotFoundError: OpenAIException - scripted: the model endpoint is unavailable";
        assert_eq!(
            events[events.len() - 3..],
            [
                log(message),
                RunnerEvent::Error {
                    message: message.into()
                },
                RunnerEvent::Final {
                    text: message.into(),
                    is_error: true
                },
            ]
        );
        assert!(!events.iter().any(|e| matches!(e, RunnerEvent::Usage(_))));
    }

    #[test]
    fn models_and_metadata() {
        assert_eq!(model_name("m", Some("http://x/v1")), "openai/m");
        assert_eq!(model_name("anthropic/claude", None), "anthropic/claude");
        let meta: serde_json::Value = serde_json::from_str(&model_metadata_json("openai/m")).unwrap();
        assert_eq!(meta["openai/m"]["input_cost_per_token"], 0);
        assert_eq!(meta["openai/m"]["mode"], "chat");
    }
}
