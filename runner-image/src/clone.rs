//! `paddock-runner clone` — the `clone` init container (trusted; holds the git credentials).
//!
//! Env: `PADDOCK_REPO_URL` (https://, http://, ssh://, git://, file://), `PADDOCK_REVISION`
//! (branch, tag or commit; empty = the remote's HEAD), `PADDOCK_BRANCH` (the run's new branch),
//! `PADDOCK_RUN`, `PADDOCK_NAMESPACE`; credentials as in [`crate::gitcreds`].
//!
//! Steps: validate (option-like or `ext::` URLs, bad revisions and branch names are refused) →
//! init `/workspace/source` (non-bare, never checked out) → fetch all branches
//! (`refs/remotes/origin/*`) and tags through an anonymous remote (credentials only in
//! callbacks) → resolve the revision to a commit → create `refs/heads/$PADDOCK_BRANCH` there →
//! add the worktree `/workspace/work` on it → record `origin` with the password-free URL and
//! write `/workspace/.paddock/base-commit`. A previous attempt's `source`, `work` and `.paddock`
//! are removed first, so a restarted init container starts clean.
//!
//! Output: `step` events for `clone`, also written to the termination log on success (so the
//! operator reads them from the pod's status, not with a log read); on failure a `result`
//! (reason `CloneFailed` or `InvalidConfig`, failed step `clone`), also written to the
//! termination log, and exit 1.

use paddock_crds::runner::vars;
use std::path::Path;

use crate::uplink::{proxy_options, remote_url, wait_ready, Uplink, UplinkError};
use git2::{AutotagOption, Direction, FetchOptions, Oid, Repository, WorktreeAddOptions};

use crate::config::{validate_branch, ConfigError, Env};
use crate::gitcreds::{CredentialError, GitCredentials, RepoUrl, UrlError};
use crate::workspace::{Workspace, WORKTREE_NAME};

/// Errors of the clone step.
#[derive(Debug, thiserror::Error)]
pub enum CloneError {
    /// Invalid environment.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Invalid repository URL.
    #[error("PADDOCK_REPO_URL is invalid: {0}")]
    Url(#[from] UrlError),
    /// Unreadable or unusable credentials.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// Preparing the workspace failed.
    #[error("workspace {path}: {source}")]
    Io {
        /// What was being prepared.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A git operation failed.
    #[error("{what}: {source}")]
    Git {
        /// What was being done.
        what: String,
        /// libgit2's error.
        source: git2::Error,
    },
    /// The revision names nothing in the repository.
    #[error("revision {0:?} not found in the repository")]
    RevisionNotFound(String),
    /// The remote has no HEAD (an empty repository) and no revision was given.
    #[error("the repository has no default branch (is it empty?)")]
    NoDefaultBranch,
    /// The remote cannot be reached through the pool's egress gateway.
    #[error(transparent)]
    Uplink(#[from] UplinkError),
}

impl CloneError {
    /// The result reason: `InvalidConfig` for bad input, `CloneFailed` otherwise.
    pub fn reason(&self) -> &'static str {
        match self {
            CloneError::Config(_) | CloneError::Url(_) | CloneError::Uplink(UplinkError::Ssh(_)) => "InvalidConfig",
            _ => "CloneFailed",
        }
    }
}

fn git(what: impl Into<String>) -> impl FnOnce(git2::Error) -> CloneError {
    let what = what.into();
    move |source| CloneError::Git { what, source }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CloneError + '_ {
    move |source| CloneError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Validated configuration of `clone`.
#[derive(Clone, Debug)]
pub struct CloneConfig {
    /// Repository URL.
    pub url: RepoUrl,
    /// Revision to start from; `None` = the remote's HEAD.
    pub revision: Option<String>,
    /// The run's new branch.
    pub branch: String,
    /// The pool's egress gateway, when the pod must reach the remote through it
    /// ([`crate::uplink`]).
    pub uplink: Option<Uplink>,
}

/// Checks a revision: no leading `-`, no whitespace or control characters, at most 255 bytes.
///
/// # Errors
/// [`ConfigError::Invalid`] naming `PADDOCK_REVISION`.
pub fn validate_revision(rev: &str) -> Result<(), ConfigError> {
    if rev.starts_with('-') || rev.len() > 255 || rev.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::Invalid {
            name: vars::REVISION,
            reason: "must be a branch, tag or commit (no leading '-', no spaces)".into(),
        });
    }
    Ok(())
}

impl CloneConfig {
    /// Reads and validates the `clone` environment.
    ///
    /// # Errors
    /// [`CloneError::Config`] or [`CloneError::Url`].
    pub fn from_env(env: &Env) -> Result<Self, CloneError> {
        let url = RepoUrl::parse(env.get(vars::REPO_URL).ok_or(ConfigError::Missing(vars::REPO_URL))?)?;
        let revision = env
            .get(vars::REVISION)
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string);
        if let Some(r) = &revision {
            validate_revision(r)?;
        }
        let branch = env
            .get(vars::BRANCH)
            .ok_or(ConfigError::Missing(vars::BRANCH))?
            .to_string();
        validate_branch(&branch)?;
        Ok(Self {
            url,
            revision,
            branch,
            uplink: Uplink::from_env(env),
        })
    }
}

/// What the clone produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cloned {
    /// The commit the branch starts at.
    pub commit: Oid,
    /// The revision that was resolved (`PADDOCK_REVISION` or the remote's default branch).
    pub resolved: String,
}

fn fetch_options<'a>(creds: &'a GitCredentials, url: &RepoUrl, uplink: Option<&Uplink>) -> FetchOptions<'a> {
    let mut fo = FetchOptions::new();
    fo.remote_callbacks(creds.callbacks(url))
        .proxy_options(proxy_options(uplink))
        .download_tags(AutotagOption::None);
    fo
}

fn remove_if_exists(path: &Path) -> Result<(), CloneError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).map_err(io(path)),
        Ok(_) => std::fs::remove_file(path).map_err(io(path)),
        Err(_) => Ok(()),
    }
}

/// Resolves `rev` after the fetch: `refs/heads/X` and `X` as `refs/remotes/origin/X`, then
/// tags, then a commit id (fetched by id when the server allows and it is not present yet).
fn resolve(repo: &Repository, rev: &str, fetch_by_id: impl FnOnce(&str)) -> Result<Oid, CloneError> {
    let short = rev.strip_prefix("refs/heads/").unwrap_or(rev);
    let candidates = [
        format!("refs/remotes/origin/{short}"),
        format!("refs/tags/{}", rev.strip_prefix("refs/tags/").unwrap_or(rev)),
    ];
    for name in &candidates {
        if let Ok(r) = repo.find_reference(name) {
            if let Ok(c) = r.peel_to_commit() {
                return Ok(c.id());
            }
        }
    }
    let is_hex = rev.len() >= 4 && rev.len() <= 40 && rev.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex {
        let lookup = |repo: &Repository| {
            repo.revparse_single(rev)
                .ok()
                .and_then(|o| o.peel_to_commit().ok())
                .map(|c| c.id())
        };
        if let Some(id) = lookup(repo) {
            return Ok(id);
        }
        if rev.len() == 40 {
            fetch_by_id(rev);
            if let Some(id) = lookup(repo) {
                return Ok(id);
            }
        }
    }
    Err(CloneError::RevisionNotFound(rev.to_string()))
}

/// Clones into `ws` per `cfg` (see the module docs).
///
/// # Errors
/// [`CloneError`] for whatever failed; nothing is left half-configured that a retry would trip
/// over (the next attempt removes it).
pub fn clone_workspace(cfg: &CloneConfig, creds: &GitCredentials, ws: &Workspace) -> Result<Cloned, CloneError> {
    creds.check_transport(&cfg.url)?;
    for p in [ws.source(), ws.work(), ws.control()] {
        remove_if_exists(&p)?;
    }
    std::fs::create_dir_all(ws.root()).map_err(io(ws.root()))?;
    let source = ws.source();
    let repo = Repository::init(&source).map_err(git("init /workspace/source"))?;
    let uplink = cfg.uplink.as_ref();
    let remote_url = remote_url(&cfg.url, uplink)?;
    crate::uplink::set_http_auth(creds.http_authorization());
    if let Some(u) = uplink {
        wait_ready(u)?;
    }

    let default_branch = {
        let mut remote = repo.remote_anonymous(&remote_url).map_err(git("remote"))?;
        let conn = remote
            .connect_auth(
                Direction::Fetch,
                Some(creds.callbacks(&cfg.url)),
                Some(proxy_options(uplink)),
            )
            .map_err(git(format!("connect to {}", cfg.url.sanitized())))?;
        conn.default_branch()
            .ok()
            .and_then(|b| b.as_str().ok().map(str::to_string))
    };

    let mut remote = repo.remote_anonymous(&remote_url).map_err(git("remote"))?;
    remote
        .fetch(
            &["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"],
            Some(&mut fetch_options(creds, &cfg.url, uplink)),
            None,
        )
        .map_err(git(format!("fetch {}", cfg.url.sanitized())))?;

    let (commit, resolved) = match &cfg.revision {
        Some(rev) => {
            let id = resolve(&repo, rev, |sha| {
                let _ = remote.fetch(&[sha], Some(&mut fetch_options(creds, &cfg.url, uplink)), None);
            })?;
            (id, rev.clone())
        }
        None => {
            let head = default_branch.ok_or(CloneError::NoDefaultBranch)?;
            let short = head.strip_prefix("refs/heads/").unwrap_or(&head).to_string();
            let id = resolve(&repo, &head, |_| {}).map_err(|_| CloneError::NoDefaultBranch)?;
            (id, short)
        }
    };
    drop(remote);

    let target = repo.find_commit(commit).map_err(git("find commit"))?;
    let branch = repo
        .branch(&cfg.branch, &target, false)
        .map_err(git(format!("create branch {}", cfg.branch)))?;
    repo.remote("origin", &cfg.url.sanitized())
        .map_err(git("record origin"))?;
    let mut opts = WorktreeAddOptions::new();
    opts.reference(Some(branch.get()));
    repo.worktree(WORKTREE_NAME, &ws.work(), Some(&opts))
        .map_err(git("add worktree /workspace/work"))?;

    std::fs::create_dir_all(ws.control()).map_err(io(&ws.control()))?;
    std::fs::write(ws.base_commit_file(), format!("{commit}\n")).map_err(io(&ws.base_commit_file()))?;
    Ok(Cloned { commit, resolved })
}

/// A verification pod's preparation (the operator sets these variables, issue 19):
/// `PADDOCK_VERIFY_REFUSE` (the operator found the change unverifiable, e.g. its patch was cut
/// at the size limit: refused, reason `PatchTooLarge`); `PADDOCK_APPLY_PATCH` (a gzip patch
/// file) with `PADDOCK_APPLY_PATCH_SHA256` (the lowercase hex SHA-256 of that file as the pod
/// gateway produced it: a file changed since, e.g. by someone editing the ConfigMap, is
/// refused with reason `PatchChanged`) is applied to the work tree (`PatchDidNotApply` when it
/// does not apply).
///
/// # Errors
/// `(reason, message)`.
pub fn prepare_verification(env: &Env, ws: &Workspace) -> Result<(), (&'static str, String)> {
    if let Some(why) = env.get(vars::VERIFY_REFUSE).filter(|p| !p.is_empty()) {
        return Err(("PatchTooLarge", why.to_string()));
    }
    let Some(patch) = env.get(vars::APPLY_PATCH).filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let bytes = std::fs::read(patch).map_err(|e| ("PatchDidNotApply", format!("{patch}: {e}")))?;
    if let Some(want) = env.get(vars::APPLY_PATCH_SHA256) {
        let got: String = ring::digest::digest(&ring::digest::SHA256, &bytes)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if !got.eq_ignore_ascii_case(want.trim()) {
            return Err((
                "PatchChanged",
                format!("the patch file is not the one the pod gateway produced (sha256 {got}, expected {want})"),
            ));
        }
    }
    apply_patch(&ws.work(), Path::new(patch))
        .map_err(|e| ("PatchDidNotApply", format!("the run's patch does not apply: {e}")))
}

/// Applies the gzip-compressed unified diff at `patch` to the work tree and index of the
/// repository at `work` (`git apply --index`, by libgit2), for a verification pod. Renames,
/// deletions, mode changes and binary patches apply as git wrote them.
///
/// # Errors
/// The file cannot be read or decompressed, is not a diff, or does not apply.
pub fn apply_patch(work: &Path, patch: &Path) -> Result<(), String> {
    use std::io::Read as _;
    let gz = std::fs::read(patch).map_err(|e| format!("{}: {e}", patch.display()))?;
    let mut text = Vec::new();
    // At most 64 MiB decompressed (the gateway's patches are cut at 1 MiB).
    flate2::read::GzDecoder::new(gz.as_slice())
        .take(64 << 20)
        .read_to_end(&mut text)
        .map_err(|e| format!("{}: not gzip: {e}", patch.display()))?;
    if text.is_empty() {
        return Ok(());
    }
    let diff = git2::Diff::from_buffer(&text).map_err(|e| format!("not a diff: {}", e.message()))?;
    let repo = Repository::open(work).map_err(|e| e.message().to_string())?;
    repo.apply(&diff, git2::ApplyLocation::Both, None)
        .map_err(|e| e.message().to_string())
}

/// Runs the clone step with `env`, writing events to `out`; returns the exit code.
pub fn run<W: std::io::Write>(env: &Env, out: W) -> i32 {
    use crate::emit::Emitter;
    use crate::report::{conclude, fail, initial_result};
    use paddock_crds::events::{RunnerEvent, Step, StepStatus};

    let ws = Workspace::from_env(env);
    let term_path = crate::config::termination_log(env);
    let cfg = CloneConfig::from_env(env);
    let creds = cfg.as_ref().ok().map(|c| GitCredentials::load_from_env(env, &c.url));
    let mut secrets = env.secrets();
    if let Some(Ok(c)) = &creds {
        secrets.extend(c.secrets());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
    let mut em = Emitter::new(out, secrets);
    let started = em.emit(RunnerEvent::Step {
        step: Step::Clone,
        status: StepStatus::Started,
        message: String::new(),
    });
    let outcome = cfg.and_then(|cfg| {
        let creds = creds.unwrap_or_else(|| Ok(GitCredentials::default()))?;
        clone_workspace(&cfg, &creds, &ws).map(|c| (cfg, c))
    });
    match outcome {
        Ok((cfg, cloned)) => {
            // The base the gateway diffs against and checks pushes with, where the agent
            // cannot write it (the trusted containers' own /tmp; issue 17).
            if let Err(e) = crate::trusted::record_base(env, &cloned.commit.to_string()) {
                let message = format!("cannot record the base commit for the gateway: {e}");
                em.emit(RunnerEvent::Step {
                    step: Step::Clone,
                    status: StepStatus::Failed,
                    message: message.clone(),
                });
                let mut result = initial_result(env.get(vars::BRANCH).unwrap_or_default());
                fail(&mut result, "CloneFailed", Some(Step::Clone), message);
                return conclude(&mut em, result, &term_path);
            }
            // A verification pod (issue 19): the run's patch on the base, as the agent left it.
            if let Err((reason, e)) = prepare_verification(env, &ws) {
                let message = format!("verification of {}: {e}", cloned.commit);
                em.emit(RunnerEvent::Step {
                    step: Step::Clone,
                    status: StepStatus::Failed,
                    message: message.clone(),
                });
                let mut result = initial_result(env.get(vars::BRANCH).unwrap_or_default());
                fail(&mut result, reason, Some(Step::Clone), format!("{reason}: {message}"));
                return conclude(&mut em, result, &term_path);
            }
            let message = format!(
                "cloned {} at {} ({}) into branch {}",
                cfg.url.sanitized(),
                cloned.resolved,
                cloned.commit,
                cfg.branch
            );
            let succeeded = em.emit(RunnerEvent::Step {
                step: Step::Clone,
                status: StepStatus::Succeeded,
                message,
            });
            // The operator reads these from the pod's status instead of this container's log.
            if let Some(text) = crate::emit::events_message([started, succeeded].iter().flatten()) {
                let _ = std::fs::write(&term_path, text);
            }
            0
        }
        Err(e) => {
            let message = e.to_string();
            em.emit(RunnerEvent::Step {
                step: Step::Clone,
                status: StepStatus::Failed,
                message: message.clone(),
            });
            let mut result = initial_result(env.get(vars::BRANCH).unwrap_or_default());
            fail(&mut result, e.reason(), Some(Step::Clone), message);
            conclude(&mut em, result, &term_path)
        }
    }
}

/// Entry point of `paddock-runner clone`: returns the exit code.
pub fn command() -> i32 {
    let env = Env::from_process();
    let telemetry = crate::telemetry::init(&env, "clone");
    let code = run(&env, std::io::stdout());
    telemetry.shutdown(code);
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn commit_all(repo: &Repository, msg: &str) -> Oid {
        let mut idx = repo.index().unwrap();
        idx.add_all(["*"], git2::IndexAddOption::DEFAULT, None).unwrap();
        idx.write().unwrap();
        let tree = repo.find_tree(idx.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::new("T", "t@example.com", &git2::Time::new(1_700_000_000, 0)).unwrap();
        let parents: Vec<git2::Commit> = repo
            .head()
            .ok()
            .and_then(|h| h.peel_to_commit().ok())
            .into_iter()
            .collect();
        let refs: Vec<&git2::Commit> = parents.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, msg, &tree, &refs).unwrap()
    }

    #[test]
    fn a_runs_patch_applies_to_its_base_and_a_stale_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        std::fs::write(dir.path().join("a.py"), "x = 1\n").unwrap();
        std::fs::write(dir.path().join("old.txt"), "gone\n").unwrap();
        let base = commit_all(&repo, "base");
        // The agent's change: edit, add, delete.
        std::fs::write(dir.path().join("a.py"), "x = 2\n").unwrap();
        std::fs::write(dir.path().join("new.py"), "y = 3\n").unwrap();
        std::fs::remove_file(dir.path().join("old.txt")).unwrap();
        let head = commit_all(&repo, "agent");
        let (bt, ht) = (
            repo.find_commit(base).unwrap().tree().unwrap(),
            repo.find_commit(head).unwrap().tree().unwrap(),
        );
        let diff = repo.diff_tree_to_tree(Some(&bt), Some(&ht), None).unwrap();
        let mut text = Vec::new();
        diff.print(git2::DiffFormat::Patch, |_, _, l| {
            if matches!(l.origin(), '+' | '-' | ' ') {
                text.push(l.origin() as u8);
            }
            text.extend_from_slice(l.content());
            true
        })
        .unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        let patch = dir.path().join("patch.gz");
        std::fs::write(&patch, gz.finish().unwrap()).unwrap();
        // Back to the base, as a verification pod's clone leaves it.
        repo.reset(&repo.find_object(base, None).unwrap(), git2::ResetType::Hard, None)
            .unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("a.py")).unwrap(), "x = 1\n");
        apply_patch(dir.path(), &patch).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("a.py")).unwrap(), "x = 2\n");
        assert_eq!(std::fs::read_to_string(dir.path().join("new.py")).unwrap(), "y = 3\n");
        assert!(!dir.path().join("old.txt").exists());
        // Applied again (the tree moved on): refused, with git's reason.
        let err = apply_patch(dir.path(), &patch).unwrap_err();
        assert!(!err.is_empty());
        // Through the verification pod's preparation: the digest must match the file.
        repo.reset(&repo.find_object(base, None).unwrap(), git2::ResetType::Hard, None)
            .unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::rename(dir.path(), root.path().join(crate::workspace::WORKTREE_NAME)).unwrap();
        let ws_root = root.path().to_str().unwrap().to_string();
        let patch = root.path().join(crate::workspace::WORKTREE_NAME).join("patch.gz");
        let sha: String = ring::digest::digest(&ring::digest::SHA256, &std::fs::read(&patch).unwrap())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let ws = Workspace::new(&ws_root);
        let env = |digest: &str| {
            Env::from_pairs([
                (vars::APPLY_PATCH, patch.to_str().unwrap()),
                (vars::APPLY_PATCH_SHA256, digest),
            ])
        };
        assert_eq!(
            prepare_verification(&env(&"0".repeat(64)), &ws).unwrap_err().0,
            "PatchChanged"
        );
        prepare_verification(&env(&sha), &ws).unwrap();
        assert_eq!(std::fs::read_to_string(ws.work().join("a.py")).unwrap(), "x = 2\n");
        let refuse = Env::from_pairs([(vars::VERIFY_REFUSE, "the patch was cut at 1 MiB")]);
        assert_eq!(prepare_verification(&refuse, &ws).unwrap_err().0, "PatchTooLarge");
        let dir = root;
        std::fs::write(dir.path().join("junk.gz"), b"not gzip").unwrap();
        assert!(apply_patch(dir.path(), &dir.path().join("junk.gz"))
            .unwrap_err()
            .contains("not gzip"));
    }
}
