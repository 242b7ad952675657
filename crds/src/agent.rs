//! The agent CLIs Paddock runs ([`AgentName`]), shared by AgentRuns (`spec.agent.name`) and
//! RunnerPools (`spec.agents`).

use serde::{Deserialize, Serialize};

/// Agent CLIs Paddock has an adapter for.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AgentName {
    /// Anthropic's Claude Code (`claude -p … --output-format stream-json`).
    #[default]
    ClaudeCode,
    /// OpenAI's Codex CLI (`codex exec --json`).
    Codex,
    /// Qwen Code (`qwen -o stream-json --yolo`), over `OPENAI_BASE_URL` (Chat Completions).
    QwenCode,
    /// OpenCode (`opencode run --format json`), over `OPENAI_BASE_URL` (Chat Completions).
    #[serde(rename = "opencode")]
    OpenCode,
    /// Google's Gemini CLI (`gemini --output-format stream-json --yolo --skip-trust`), over
    /// `GOOGLE_GEMINI_BASE_URL` (Gemini API).
    GeminiCli,
    /// Aider (`aider --message`, PyPI `aider-chat`), over `OPENAI_BASE_URL` (Chat Completions);
    /// plain-text output.
    Aider,
    /// Hermes Agent (`hermes -z`, PyPI `hermes-agent`), over `OPENAI_BASE_URL`; final text only.
    Hermes,
    /// OpenClaw (`openclaw agent exec --json`), over `OPENAI_BASE_URL` (Chat Completions).
    #[serde(rename = "openclaw")]
    OpenClaw,
    /// The OpenHands CLI (`openhands --headless --json`, PyPI `openhands`), over
    /// `OPENAI_BASE_URL` (Chat Completions).
    #[serde(rename = "openhands")]
    OpenHands,
    /// `sh -c <prompt>`: the prompt is a shell script (for scripted tasks and tests).
    Shell,
    /// Any command (`spec.agent.command`), with the prompt as its last argument and in
    /// `$PADDOCK_PROMPT`; its output is plain text or Paddock's event JSON lines
    /// (`spec.agent.output`). The contract is in docs/agents.md.
    Custom,
}

impl AgentName {
    /// Every agent name, in the order the runner's error messages list them.
    pub const ALL: [AgentName; 11] = [
        AgentName::ClaudeCode,
        AgentName::Codex,
        AgentName::QwenCode,
        AgentName::OpenCode,
        AgentName::Shell,
        AgentName::Custom,
        AgentName::Aider,
        AgentName::Hermes,
        AgentName::GeminiCli,
        AgentName::OpenClaw,
        AgentName::OpenHands,
    ];

    /// The name as written in manifests (`claude-code`, `codex`, `qwen-code`, `opencode`,
    /// `gemini-cli`, `aider`, `hermes`, `openclaw`, `openhands`, `shell`, `custom`).
    pub fn as_str(self) -> &'static str {
        match self {
            AgentName::ClaudeCode => "claude-code",
            AgentName::Codex => "codex",
            AgentName::QwenCode => "qwen-code",
            AgentName::OpenCode => "opencode",
            AgentName::GeminiCli => "gemini-cli",
            AgentName::Aider => "aider",
            AgentName::Hermes => "hermes",
            AgentName::OpenClaw => "openclaw",
            AgentName::OpenHands => "openhands",
            AgentName::Shell => "shell",
            AgentName::Custom => "custom",
        }
    }
}
