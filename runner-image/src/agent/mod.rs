//! Agent adapters: how each CLI is invoked and how its output maps to
//! [`RunnerEvent`](paddock_crds::events::RunnerEvent)s.
//!
//! One module per CLI, each with a unit struct implementing [`Adapter`] (command line, stream
//! mapper, and where it keeps sessions for `spec.resumeFrom`), looked up by the CLI's name in
//! the API ([`AgentName`]) in one registry, [`adapter()`]. Below them: [`spec`] (what to run,
//! pure data), [`stream`] (the [`StreamMapper`] trait and its helpers) and [`adapter`](mod@adapter) (the
//! traits); [`process`] runs an [`Invocation`]. No module here uses `mod.rs`, and nothing in
//! `agent` uses the runner's commands: the layers are `env` → `agent` → `session`/`config` → `run`.
//!
//! The CLI runs in the worktree (or `PADDOCK_WORKDIR` inside it) in its own process group, with
//! stdin closed and the prompt passed as one argv element — never through a shell, except for
//! the `shell` agent, which is exactly `sh -c "$PADDOCK_PROMPT"`; Claude Code alone takes its
//! prompt and a human's messages on stdin ([`Invocation::stdin`], [`Adapter::live_messages`]):
//! - `claude-code`: `claude -p --input-format stream-json --output-format stream-json --verbose
//!   --permission-mode bypassPermissions [--model m] [--max-turns n] <args…>` with the prompt
//!   as a stream-json user line on stdin; with ToolUse rules `--permission-mode default
//!   --permission-prompt-tool mcp__paddock__approve --mcp-config …` instead, with plan review
//!   `--permission-mode plan` and the same tool, with questions `--allowedTools
//!   mcp__paddock__ask_human` and the MCP server ([`claude`], [`crate::mcp`]).
//! - `codex`: `codex exec --json --skip-git-repo-check --dangerously-bypass-approvals-and-sandbox
//!   [-m m] [-c …provider overrides when OPENAI_BASE_URL is set] <args…> -- <prompt>` with
//!   `CODEX_HOME=$HOME/.codex` and `$CODEX_HOME/rules/paddock.rules` ([`codex`]).
//! - `qwen-code`: `qwen -o stream-json --yolo [-m m] [--max-session-turns n] <args…>
//!   --prompt=<prompt>` with `~/.qwen/settings.json` written first ([`qwen`]).
//! - `opencode`: `opencode run --format json [-m paddock/m] <args…> -- <prompt split at
//!   spaces>` with `OPENCODE_CONFIG_CONTENT` generated from `OPENAI_BASE_URL` ([`opencode`]).
//! - `shell`: `sh -c <prompt>`; each output line is a `log` event ([`shell`]).
//! - `gemini-cli`: `gemini --output-format stream-json --yolo --skip-trust --include-directories
//!   $HOME,/tmp [-m m] <args…> --prompt=<prompt>` with `~/.gemini/settings.json` written first
//!   (the turn limit goes there, and with questions the runner's MCP server offering
//!   `ask_human`) ([`gemini`]).
//! - `aider`: `aider [--model openai/m] --yes-always --no-auto-commits … <args…>
//!   --message=<prompt>` with `OPENAI_API_BASE` from `OPENAI_BASE_URL` and
//!   `~/.aider.model.metadata.json` written first; plain text out ([`aider`]).
//! - `hermes`: `hermes --yolo --usage-file ~/.hermes/paddock-usage.json <args…>
//!   --oneshot=<prompt>` with `~/.hermes/config.yaml` generated from `OPENAI_BASE_URL`; the
//!   final text out, usage from the usage file ([`hermes`]).
//! - `openclaw`: `openclaw agent exec --json --timeout 86400 [--config
//!   ~/.openclaw/paddock.json] [--model paddock/m] <args…> -- <prompt>` with the config
//!   generated from `OPENAI_BASE_URL`; one JSON envelope out when it exits ([`openclaw`]).
//! - `openhands`: `openhands --headless --json --override-with-envs --always-approve <args…>
//!   --task=<prompt>` with `LLM_MODEL=openai/m`, `LLM_BASE_URL`, `LLM_API_KEY` from
//!   `OPENAI_BASE_URL`/`OPENAI_API_KEY`; JSON event lines among text out, usage from the
//!   conversation's state file ([`openhands`]).
//! - `custom`: `<command…> <args…> <prompt>` from `PADDOCK_AGENT_COMMAND`; text or Paddock's
//!   event JSON lines out ([`custom`]).
//!
//! Tool permissions are one policy for every CLI (docs/agents.md, "Tool permissions"): inside
//! the pod the agent may run all its tools without asking; `spec.approvals.toolUse` gates what
//! needs a human, where the CLI can ask an outside program (Claude Code).
//!
//! The prompt goes after `--` (or on stdin) so a prompt starting with `-` (or a variadic option
//! among the extra args) can never be read as an option. Qwen Code reads no prompt after `--`, so it
//! gets `--prompt=<prompt>`: the `=` form keeps a leading `-` as text. `PADDOCK_AGENT_BIN`
//! replaces the program name of every CLI but `shell` (tests replay recorded streams with it).

pub mod adapter;
pub mod aider;
pub mod claude;
pub mod codex;
pub mod custom;
pub mod gemini;
pub mod hermes;
pub mod openclaw;
pub mod opencode;
pub mod openhands;
pub mod process;
pub mod qwen;
pub mod shell;
pub mod spec;
pub mod stream;
#[cfg(test)]
mod tests;

pub use paddock_crds::AgentName;

#[cfg(test)]
use crate::env::Env;
pub use adapter::{Adapter, SessionFiles, RESUME_ID_ENV};
pub use claude::{CLAUDE_FREE_MODE, CLAUDE_GATED_MODE};
pub use codex::CODEX_FREE_FLAG;
pub use spec::{AgentKind, AgentSpec, CustomOutput, Invocation};
#[cfg(test)]
use std::path::PathBuf;
pub use stream::{final_event, log_event, StreamMapper, MAX_BUFFERED_LINES, MAX_BUFFERED_LINE_BYTES};
#[cfg(test)]
pub(crate) use stream::{map_stdout, push_bounded};

/// The registry: the adapter of CLI `name`. The one place that lists the CLIs' modules.
pub fn adapter(name: AgentName) -> &'static dyn Adapter {
    match name {
        AgentName::ClaudeCode => &claude::ClaudeCode,
        AgentName::Codex => &codex::Codex,
        AgentName::QwenCode => &qwen::QwenCode,
        AgentName::OpenCode => &opencode::OpenCode,
        AgentName::GeminiCli => &gemini::GeminiCli,
        AgentName::Aider => &aider::Aider,
        AgentName::Hermes => &hermes::Hermes,
        AgentName::OpenClaw => &openclaw::OpenClaw,
        AgentName::OpenHands => &openhands::OpenHands,
        AgentName::Shell => &shell::Shell,
        AgentName::Custom => &custom::Custom,
    }
}

/// Every adapter, in the order of [`AgentName::ALL`].
pub fn adapters() -> impl Iterator<Item = &'static dyn Adapter> {
    AgentName::ALL.into_iter().map(adapter)
}

/// Builds the command line for `spec` given the container environment: the adapter of
/// `spec.kind` ([`Adapter::invocation`]).
pub fn build_invocation(spec: &AgentSpec, env: &crate::env::Env) -> Invocation {
    adapter(spec.kind.name()).invocation(spec, env)
}

/// The mapper for `kind`; `model` is the configured model (Codex and OpenCode do not report
/// one). The adapter of `kind` ([`Adapter::mapper`]).
pub fn mapper_for(kind: AgentKind, model: Option<String>) -> Box<dyn StreamMapper> {
    adapter(kind.name()).mapper(kind, model)
}
