//! Paths of the shared `workspace` volume and the control files the containers exchange.

use paddock_crds::runner::vars;
use std::path::{Path, PathBuf};

/// Default mount point of the `workspace` volume.
pub const DEFAULT_WORKSPACE: &str = "/workspace";
/// Name of the git worktree (`.git/worktrees/<name>` inside `source`).
pub const WORKTREE_NAME: &str = "work";

/// The workspace volume: `source` (clone), `work` (worktree on the run's branch) and
/// `.paddock` (control files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// A workspace rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The workspace named by `PADDOCK_WORKSPACE` (non-empty), else [`DEFAULT_WORKSPACE`].
    pub fn from_env(env: &crate::env::Env) -> Self {
        Self::new(env.get(vars::WORKSPACE).unwrap_or(DEFAULT_WORKSPACE))
    }

    /// The volume's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The clone: `<root>/source`.
    pub fn source(&self) -> PathBuf {
        self.root.join("source")
    }

    /// The worktree the agent works in: `<root>/work`.
    pub fn work(&self) -> PathBuf {
        self.root.join(WORKTREE_NAME)
    }

    /// The control directory: `<root>/.paddock`.
    pub fn control(&self) -> PathBuf {
        self.root.join(".paddock")
    }

    /// File holding the full SHA of the commit the run started from (written by `clone`).
    pub fn base_commit_file(&self) -> PathBuf {
        self.control().join("base-commit")
    }

    /// File holding the SHA the agent side asks the gateway to push.
    pub fn push_request_file(&self) -> PathBuf {
        self.control().join("push-request")
    }

    /// File holding the gateway's answer, `{"ok":bool,"message":str}`.
    pub fn push_result_file(&self) -> PathBuf {
        self.control().join("push-result")
    }
}

/// Writes `contents` to `path` atomically (a sibling temporary file renamed over `path`), so a
/// poller never reads a half-written file.
///
/// # Errors
/// Any I/O error creating, writing or renaming the file.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
