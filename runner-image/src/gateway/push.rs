//! The gateway's push service. It polls `/workspace/.paddock/push-request` every 200 ms; for
//! each request (a commit SHA) it:
//! 1. copies `refs/heads/$PADDOCK_BRANCH` from `/workspace/source` into a fresh private bare
//!    repository under its state directory (so nothing the agent could have written into the
//!    shared repository's config — `url.*.insteadOf`, proxies, remotes — takes effect);
//! 2. checks the branch tip equals the requested SHA;
//! 3. pushes `refs/heads/$PADDOCK_BRANCH` (non-force) to `PADDOCK_REPO_URL` from its own
//!    environment, with the credentials only it holds;
//! 4. writes `push-result` (`{"ok","message","commit"}`, atomically, redacted) and removes the
//!    request.
//!
//! [`isolate_git_config`] points `HOME`/`XDG_CONFIG_HOME` at the state directory before libgit2
//! starts, so a global git config in a `HOME` shared with the agent cannot redirect the push.

use std::cell::RefCell;
use std::path::PathBuf;

use git2::{ProxyOptions, PushOptions, Repository};

use crate::config::{parse_bool, validate_branch, ConfigError, Env};
use crate::gitcreds::{CredentialError, GitCredentials, RepoUrl, UrlError};
use crate::push::{PushResult, POLL_INTERVAL};
use crate::workspace::{write_atomic, Workspace};

/// Errors in the gateway's push configuration.
#[derive(Debug, thiserror::Error)]
pub enum PushConfigError {
    /// Invalid environment.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Invalid repository URL.
    #[error("PADDOCK_REPO_URL is invalid: {0}")]
    Url(#[from] UrlError),
    /// Unreadable credentials.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
}

/// Why one push failed (sent back to the agent side as the result message).
#[derive(Debug, thiserror::Error)]
pub enum PushFailure {
    /// Pushing is disabled for this run.
    #[error("pushing is disabled for this run")]
    Disabled,
    /// The request is not a commit id.
    #[error("the push request is not a commit id")]
    BadRequest,
    /// The branch tip is not the requested commit.
    #[error("branch {branch} is at {tip}, not the requested {requested}")]
    Mismatch {
        /// Branch.
        branch: String,
        /// Its tip.
        tip: String,
        /// The requested commit.
        requested: String,
    },
    /// The remote refused the update (e.g. not a fast-forward).
    #[error("the remote rejected {0}")]
    Rejected(String),
    /// The scratch directory could not be prepared.
    #[error("state directory: {0}")]
    Io(#[from] std::io::Error),
    /// A git operation failed.
    #[error("{what}: {source}")]
    Git {
        /// What was being done.
        what: String,
        /// libgit2's error.
        source: git2::Error,
    },
}

fn git(what: impl Into<String>) -> impl FnOnce(git2::Error) -> PushFailure {
    let what = what.into();
    move |source| PushFailure::Git { what, source }
}

fn state_dir(env: &Env) -> PathBuf {
    env.get("PADDOCK_GATEWAY_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("paddock-gateway-{}", std::process::id())))
}

/// Creates the state directory and points this process's `HOME` and `XDG_CONFIG_HOME` inside
/// it. Call before any libgit2 use (libgit2 reads them once).
///
/// # Errors
/// When the directory cannot be created.
pub fn isolate_git_config(env: &Env) -> std::io::Result<()> {
    let home = state_dir(env).join("home");
    std::fs::create_dir_all(home.join(".config"))?;
    std::env::set_var("HOME", &home);
    std::env::set_var("XDG_CONFIG_HOME", home.join(".config"));
    Ok(())
}

/// Serves push requests for one branch. (No `Debug`: it holds secret values.)
pub struct PushService {
    url: RepoUrl,
    branch: String,
    allowed: bool,
    creds: GitCredentials,
    secrets: Vec<String>,
    ws: Workspace,
    state: PathBuf,
}

impl PushService {
    /// Reads the gateway environment.
    ///
    /// # Errors
    /// [`PushConfigError`] for a missing or invalid variable or unreadable credentials.
    pub fn from_env(env: &Env, ws: Workspace) -> Result<Self, PushConfigError> {
        let url = RepoUrl::parse(
            env.get("PADDOCK_REPO_URL")
                .ok_or(ConfigError::Missing("PADDOCK_REPO_URL"))?,
        )?;
        let branch = env
            .get("PADDOCK_BRANCH")
            .ok_or(ConfigError::Missing("PADDOCK_BRANCH"))?
            .to_string();
        validate_branch(&branch)?;
        let allowed = parse_bool(env, "PADDOCK_PUSH", true)?;
        let creds = GitCredentials::load(&GitCredentials::dir_from_env(env), &url)?;
        let mut secrets = env.secrets();
        secrets.extend(creds.secrets());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Ok(Self {
            url,
            branch,
            allowed,
            creds,
            secrets,
            ws,
            state: state_dir(env),
        })
    }

    /// The branch this service pushes.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// Polls for requests forever (cancel by dropping the future).
    pub async fn run(&self) {
        loop {
            if self.ws.push_request_file().exists() {
                // git2 is blocking; the poll loop has nothing else to do meanwhile.
                let _ = tokio::task::block_in_place(|| self.handle_once());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Handles the pending request, if any: pushes, writes `push-result`, removes the request.
    /// Returns the result written.
    pub fn handle_once(&self) -> Option<PushResult> {
        let req_file = self.ws.push_request_file();
        let raw = std::fs::read_to_string(&req_file).ok()?;
        let requested = raw.trim().to_string();
        let result = match self.push(&requested) {
            Ok(message) => PushResult {
                ok: true,
                message,
                commit: Some(requested.clone()),
            },
            Err(e) => PushResult {
                ok: false,
                message: crate::emit::clean(&e.to_string(), &self.secrets),
                commit: Some(requested.clone()),
            },
        };
        let json = serde_json::to_string(&result).unwrap_or_default();
        let _ = write_atomic(&self.ws.push_result_file(), json.as_bytes());
        if std::fs::read_to_string(&req_file).is_ok_and(|r| r == raw) {
            let _ = std::fs::remove_file(&req_file);
        }
        eprintln!(
            "paddock-runner gateway: push {}: {}",
            if result.ok { "ok" } else { "failed" },
            result.message
        );
        Some(result)
    }

    /// Pushes `requested` (which must be the tip of the branch in `/workspace/source`).
    ///
    /// # Errors
    /// [`PushFailure`] saying why nothing was pushed.
    pub fn push(&self, requested: &str) -> Result<String, PushFailure> {
        if !self.allowed {
            return Err(PushFailure::Disabled);
        }
        if !matches!(requested.len(), 40 | 64) || !requested.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PushFailure::BadRequest);
        }
        let scratch = self.state.join("push.git");
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch)?;
        }
        std::fs::create_dir_all(&self.state)?;
        let repo = Repository::init_bare(&scratch).map_err(git("init the scratch repository"))?;
        let refname = format!("refs/heads/{}", self.branch);
        let source = self.ws.source();
        let source = source
            .to_str()
            .ok_or_else(|| PushFailure::Io(std::io::Error::other("workspace path is not UTF-8")))?;
        repo.remote_anonymous(source)
            .and_then(|mut r| r.fetch(&[format!("+{refname}:{refname}")], None, None))
            .map_err(git(format!("read {refname} from the workspace")))?;
        let tip = repo.refname_to_id(&refname).map_err(git(format!("find {refname}")))?;
        if !tip.to_string().eq_ignore_ascii_case(requested) {
            return Err(PushFailure::Mismatch {
                branch: self.branch.clone(),
                tip: tip.to_string(),
                requested: requested.into(),
            });
        }
        let rejected = RefCell::new(None::<String>);
        {
            let mut cb = self.creds.callbacks(&self.url);
            cb.push_update_reference(|name, status| {
                if let Some(s) = status {
                    *rejected.borrow_mut() = Some(format!("{name}: {s}"));
                }
                Ok(())
            });
            let mut proxy = ProxyOptions::new();
            proxy.auto();
            let mut opts = PushOptions::new();
            opts.remote_callbacks(cb).proxy_options(proxy);
            self.creds
                .check_transport(&self.url)
                .map_err(|e| PushFailure::Io(std::io::Error::other(e.to_string())))?;
            let mut remote = repo.remote_anonymous(self.url.as_str()).map_err(git("remote"))?;
            remote
                .push(&[format!("{refname}:{refname}")], Some(&mut opts))
                .map_err(git(format!("push to {}", self.url.sanitized())))?;
        }
        if let Some(r) = rejected.into_inner() {
            return Err(PushFailure::Rejected(r));
        }
        let _ = std::fs::remove_dir_all(&scratch);
        Ok(format!("pushed {requested} to {} as {refname}", self.url.sanitized()))
    }
}
