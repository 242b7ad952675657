//! What the runner asks of an agent CLI, before any adapter is involved: which CLI
//! ([`AgentKind`], keyed by [`AgentName`]), the task ([`AgentSpec`]) and the command line an
//! adapter builds for it ([`Invocation`]). Pure data; the bottom of the agent modules.

use std::path::PathBuf;
use std::str::FromStr;

use paddock_crds::AgentName;

/// The agent CLIs the runner can drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentKind {
    /// Anthropic's Claude Code (`claude`).
    ClaudeCode,
    /// OpenAI's Codex CLI (`codex`).
    Codex,
    /// Qwen Code (`qwen`), over an OpenAI-compatible Chat Completions endpoint.
    QwenCode,
    /// OpenCode (`opencode`), over an OpenAI-compatible Chat Completions endpoint.
    OpenCode,
    /// `sh -c <prompt>`: for tests, demos and scripted jobs.
    Shell,
    /// aider (`aider`, PyPI `aider-chat`), over an OpenAI-compatible Chat Completions endpoint;
    /// edits through text blocks, plain text output.
    Aider,
    /// Hermes Agent (`hermes`, PyPI `hermes-agent`) in one-shot mode, over an
    /// OpenAI-compatible Chat Completions endpoint.
    Hermes,
    /// Any command (`PADDOCK_AGENT_COMMAND`) with the given output mode.
    Custom(CustomOutput),
    /// Google's Gemini CLI (`gemini`, npm `@google/gemini-cli`), over the Gemini API.
    GeminiCli,
    /// OpenClaw (`openclaw`, npm `openclaw`) with `agent exec`, over an OpenAI-compatible Chat
    /// Completions endpoint; one JSON envelope out.
    OpenClaw,
    /// The OpenHands CLI (`openhands`, PyPI `openhands`, on Python 3.12) in headless JSON mode,
    /// over an OpenAI-compatible Chat Completions endpoint.
    OpenHands,
}

impl AgentKind {
    /// The CLI's name in manifests (`spec.agent.name`) and `PADDOCK_AGENT`: the key of the
    /// adapter registry ([`super::adapter()`]).
    pub fn name(self) -> AgentName {
        match self {
            AgentKind::ClaudeCode => AgentName::ClaudeCode,
            AgentKind::Codex => AgentName::Codex,
            AgentKind::QwenCode => AgentName::QwenCode,
            AgentKind::OpenCode => AgentName::OpenCode,
            AgentKind::Shell => AgentName::Shell,
            AgentKind::Custom(_) => AgentName::Custom,
            AgentKind::Aider => AgentName::Aider,
            AgentKind::Hermes => AgentName::Hermes,
            AgentKind::GeminiCli => AgentName::GeminiCli,
            AgentKind::OpenClaw => AgentName::OpenClaw,
            AgentKind::OpenHands => AgentName::OpenHands,
        }
    }

    /// The kind of CLI `name`; `custom` reads plain text until `PADDOCK_AGENT_OUTPUT` says
    /// otherwise ([`crate::config::RunConfig::from_env`]).
    pub fn from_name(name: AgentName) -> Self {
        match name {
            AgentName::ClaudeCode => AgentKind::ClaudeCode,
            AgentName::Codex => AgentKind::Codex,
            AgentName::QwenCode => AgentKind::QwenCode,
            AgentName::OpenCode => AgentKind::OpenCode,
            AgentName::Shell => AgentKind::Shell,
            AgentName::Custom => AgentKind::Custom(CustomOutput::Text),
            AgentName::Aider => AgentKind::Aider,
            AgentName::Hermes => AgentKind::Hermes,
            AgentName::GeminiCli => AgentKind::GeminiCli,
            AgentName::OpenClaw => AgentKind::OpenClaw,
            AgentName::OpenHands => AgentKind::OpenHands,
        }
    }

    /// The adapter name (`claude-code`, `codex`, `qwen-code`, `opencode`, `shell`, …), as in
    /// `spec.agent` and events.
    pub fn as_str(self) -> &'static str {
        self.name().as_str()
    }
}

impl FromStr for AgentKind {
    type Err = String;

    /// Parses a name of [`AgentName::ALL`]; the error lists them all.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(name) = AgentName::ALL.into_iter().find(|n| n.as_str() == s) {
            return Ok(AgentKind::from_name(name));
        }
        let names: Vec<&str> = AgentName::ALL.iter().map(|n| n.as_str()).collect();
        let (last, rest) = names.split_last().expect("AgentName::ALL is not empty");
        Err(format!("unknown agent {s:?} (expected {} or {last})", rest.join(", ")))
    }
}

/// How the command's stdout is read (`PADDOCK_AGENT_OUTPUT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CustomOutput {
    /// Plain text (`text`).
    #[default]
    Text,
    /// One Paddock event as JSON per line (`jsonl`).
    JsonLines,
}

impl std::str::FromStr for CustomOutput {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "" | "text" => Ok(CustomOutput::Text),
            "jsonl" => Ok(CustomOutput::JsonLines),
            other => Err(format!("unknown output {other:?} (expected text or jsonl)")),
        }
    }
}

/// What to run: the adapter and its inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentSpec {
    /// Which adapter.
    pub kind: AgentKind,
    /// The task, verbatim.
    pub prompt: String,
    /// Model name passed to the CLI, if any.
    pub model: Option<String>,
    /// Extra CLI arguments (`PADDOCK_AGENT_ARGS`), placed before the prompt.
    pub args: Vec<String>,
    /// Turn limit (Claude Code `--max-turns`, Qwen Code `--max-session-turns`, Gemini CLI
    /// `model.maxSessionTurns` in its settings file; Codex and OpenCode have no such flag and
    /// ignore it).
    pub max_turns: Option<u32>,
}

/// A fully built command line (pure data; see [`build_invocation`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// Program (looked up in `PATH`).
    pub program: String,
    /// Arguments after the program name.
    pub args: Vec<String>,
    /// Variables added to the inherited environment.
    pub env: Vec<(String, String)>,
    /// Directories to create before starting (e.g. `CODEX_HOME`).
    pub create_dirs: Vec<PathBuf>,
    /// Files to write before starting, as (path, contents), parent directories created and an
    /// existing file replaced (e.g. Qwen Code's `~/.qwen/settings.json`).
    pub files: Vec<(PathBuf, String)>,
    /// `None`: the CLI's stdin is closed (`/dev/null`), as for most CLIs. `Some(text)`: stdin
    /// is a pipe, `text` is written to it first (Claude Code's prompt as a `stream-json` user
    /// line), further lines may follow while the CLI works (a human's messages), and it is
    /// closed once the CLI reported its `final` event ([`super::process::run_cli_with`]).
    pub stdin: Option<String>,
}
