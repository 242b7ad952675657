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
