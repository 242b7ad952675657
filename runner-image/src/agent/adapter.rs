//! The [`Adapter`] trait: what the runner needs of one agent CLI — its command line, its stream
//! mapper and, where the CLI keeps sessions the runner can save and resume, where they are
//! ([`SessionFiles`]). One implementation per CLI module, looked up by [`paddock_crds::AgentName`]
//! in the registry ([`super::adapter()`]).

use paddock_crds::runner::vars;
use std::path::{Path, PathBuf};

use paddock_crds::AgentName;

use super::spec::{AgentKind, AgentSpec, Invocation};
use super::stream::StreamMapper;
use crate::env::Env;

/// Set by the runner for the adapter after [`crate::session::restore`]: the session id to
/// resume (the adapters of CLIs with [`Adapter::sessions`] read it).
pub const RESUME_ID_ENV: &str = vars::RESUME_SESSION_ID;

/// One agent CLI, as the runner drives it. Implementations are stateless unit structs; the
/// per-run state lives in the [`StreamMapper`] they create.
pub trait Adapter: Sync {
    /// The CLI's name in manifests (`spec.agent.name`) and `PADDOCK_AGENT`.
    fn name(&self) -> AgentName;

    /// The command line for `spec` in the container environment `env` (pure: files and
    /// directories to create are part of the [`Invocation`]).
    fn invocation(&self, spec: &AgentSpec, env: &Env) -> Invocation;

    /// A fresh mapper for one run of the CLI. `kind` carries the `custom` agent's output mode;
    /// `model` is the configured model (for CLIs that do not report one).
    fn mapper(&self, kind: AgentKind, model: Option<String>) -> Box<dyn StreamMapper>;

    /// Where the CLI keeps sessions the runner saves and resumes (`spec.resumeFrom`); `None`
    /// (the default) for a CLI whose sessions Paddock does not keep.
    fn sessions(&self) -> Option<&dyn SessionFiles> {
        None
    }

    /// For a CLI that takes a human's messages while it works (its invocation keeps stdin
    /// open, [`Invocation::stdin`]): the stdin line (without newline) that hands it one
    /// message's text. `None` (the default): the CLI takes no live messages.
    fn live_messages(&self) -> Option<fn(&str) -> String> {
        None
    }
}

/// A CLI's session files on disk ([`crate::session`] saves and restores them).
pub trait SessionFiles: Sync {
    /// The directory the CLI keeps its state in (e.g. `$CLAUDE_CONFIG_DIR` or `~/.claude`).
    fn root(&self, env: &Env) -> PathBuf;

    /// The session file of `id` under `root`, if the CLI wrote one. `id` is already checked
    /// ([`crate::session::valid_id`]).
    fn find(&self, root: &Path, id: &str) -> Option<PathBuf>;

    /// Where a restored session goes, for a CLI started in `cwd`: `rel` is the file's path
    /// under the root when it was saved. Default: the same place, `root/rel`.
    fn restore_path(&self, root: &Path, rel: &Path, id: &str, cwd: &Path) -> PathBuf {
        let _ = (id, cwd);
        root.join(rel)
    }
}

/// The program to start: `PADDOCK_AGENT_BIN` when set (tests replay recorded streams with it),
/// else the CLI's own `default`.
pub fn program(env: &Env, default: &str) -> String {
    env.get(vars::AGENT_BIN).unwrap_or(default).to_string()
}

/// The home directory the CLIs see: `$HOME`, else `/home/paddock`.
pub fn home(env: &Env) -> PathBuf {
    PathBuf::from(env.get("HOME").unwrap_or("/home/paddock"))
}

/// The variables the runner's MCP server reads ([`crate::mcp`]), passed in its configuration:
/// an MCP server is a child of the CLI (Claude Code, Gemini CLI), and what the CLI hands it of
/// its own environment is the CLI's choice.
pub const MCP_SERVER_ENV: &[&str] = &[
    vars::TOOL_RULES,
    vars::WORKSPACE,
    vars::DECISIONS_FILE,
    vars::RUN,
    vars::NAMESPACE,
    vars::RUN_UID,
    vars::ATTEMPT,
    vars::VERDICT_PUBLIC_KEY,
    vars::PLAN_REVIEW,
    vars::QUESTIONS,
    "CLAUDE_CONFIG_DIR",
    "HOME",
];

/// The `env` of the runner's MCP server: each variable of [`MCP_SERVER_ENV`] that is set in
/// `env` (a warm pod's claimed settings included).
pub fn mcp_server_env(env: &Env) -> serde_json::Map<String, serde_json::Value> {
    MCP_SERVER_ENV
        .iter()
        .filter_map(|k| Some(((*k).to_string(), env.get(k)?.into())))
        .collect()
}
