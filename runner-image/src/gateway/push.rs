//! The gateway's push service: the trusted side of every push and the source of the branch's
//! facts (issue 17). The agent side only asks; nothing the agent can write decides what is
//! pushed, against which base it is diffed, or whether a BeforePush gate said yes.
//!
//! It polls `/workspace/.paddock/push-request` every 200 ms; for each request (a commit SHA) it:
//! 1. copies `refs/heads/$PADDOCK_BRANCH` from `/workspace/source` into a fresh private bare
//!    repository under its state directory (so nothing the agent could have written into the
//!    shared repository's config — `url.*.insteadOf`, proxies, remotes — takes effect, and
//!    nothing the agent does afterwards changes what is pushed);
//! 2. checks the branch tip equals the requested SHA and descends from the base commit the
//!    trusted `clone` step recorded ([`record_base`], in the trusted containers' own `/tmp`,
//!    not `/workspace/.paddock/base-commit`);
//! 3. with plan review (`PADDOCK_PLAN_REVIEW=true`): refuses the push (reason
//!    `PlanNotApproved`) unless the pod's annotations hold the operator's signed `Approve` of a
//!    `plan-<n>` gate of this run and attempt ([`crate::approval::plan_approved`]); nothing the
//!    agent can write counts;
//! 4. with a BeforePush gate (`PADDOCK_PUSH_APPROVAL=true`): prints the diff of base..commit on
//!    its own log ([`paddock_crds::gateway`]: `gateway_patch` chunks, then `gateway_branch` with
//!    purpose `review`), which the operator shows on the gate, and waits for the operator's
//!    verdict signed for this run, attempt and commit ([`crate::approval::VerdictCheck`]);
//! 5. pushes `refs/heads/$PADDOCK_BRANCH` (non-force) from the private repository to
//!    `PADDOCK_REPO_URL` from its own environment, with the credentials only it holds;
//! 6. writes `push-result` (`{"ok","message","commit","reason"}`, atomically, redacted) for the
//!    agent side, prints a `gateway_push` line, and removes the request.
//!
//! When it is stopped (SIGTERM: the kubelet stops the sidecar after the agent container has
//! ended, so no agent process is left) it prints the run's final facts ([`PushService::report_final`]):
//! the branch tip and its diff from the base, which the operator reports as `status.result`.
//!
//! [`isolate_git_config`] points `HOME`/`XDG_CONFIG_HOME` at the state directory before libgit2
//! starts, so a global git config in a `HOME` shared with the agent cannot redirect the push.

use paddock_crds::runner::vars;
use std::cell::RefCell;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::uplink::{proxy_options, remote_url, Uplink};
use git2::{Oid, PushOptions, Repository};
use paddock_crds::events::RunnerEvent;
use paddock_crds::gateway::{BranchFacts, BranchPurpose, GatewayLine, PushFacts};
use paddock_crds::Reason;

use crate::approval::{Verdict, VerdictCheck};
use crate::config::{parse_bool, validate_branch, ConfigError, Env};
use crate::gitcreds::{CredentialError, GitCredentials, RepoUrl, UrlError};
use crate::push_request::{PushResult, POLL_INTERVAL};
use crate::workspace::{write_atomic, Workspace};

pub use crate::trusted::{read_base, record_base, DEFAULT_TRUSTED_DIR};

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
    /// No trusted base commit was recorded (the clone step did not run in this pod).
    #[error("no base commit was recorded by the clone step; nothing is pushed")]
    NoBase,
    /// The branch does not descend from the base (history rewritten).
    #[error("{commit} does not descend from the commit the run started from ({base}); nothing is pushed")]
    NotDescended {
        /// The branch tip.
        commit: String,
        /// The base.
        base: String,
    },
    /// The BeforePush gate rejected the push.
    #[error("the push of {0} was rejected at its BeforePush gate; nothing was pushed")]
    Rejected(String),
    /// Nobody decided the BeforePush gate in time.
    #[error("nobody approved the push of {0} in time; nothing was pushed")]
    Expired(String),
    /// Plan review is on and no plan of this attempt has a signed approval.
    #[error("the run's plan was not approved (spec.approvals.plan); nothing was pushed")]
    PlanNotApproved,
    /// The remote refused the update (e.g. not a fast-forward).
    #[error("the remote rejected {0}")]
    RemoteRejected(String),
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

impl PushFailure {
    /// The CamelCase reason the run ends with.
    pub fn reason(&self) -> &'static str {
        match self {
            PushFailure::Rejected(_) => Reason::Rejected.as_str(),
            PushFailure::Expired(_) => Reason::GateExpired.as_str(),
            PushFailure::PlanNotApproved => Reason::PlanNotApproved.as_str(),
            _ => Reason::PushFailed.as_str(),
        }
    }
}

fn git(what: impl Into<String>) -> impl FnOnce(git2::Error) -> PushFailure {
    let what = what.into();
    move |source| PushFailure::Git { what, source }
}

fn state_dir(env: &Env) -> PathBuf {
    env.get(vars::GATEWAY_STATE_DIR)
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
    approval: bool,
    /// `PADDOCK_PLAN_REVIEW=true`: push only after a signed plan approval.
    plan_review: bool,
    check: VerdictCheck,
    decisions: PathBuf,
    base: Option<Oid>,
    creds: GitCredentials,
    secrets: Vec<String>,
    ws: Workspace,
    state: PathBuf,
    uplink: Option<Uplink>,
    /// The commit of the last successful push (also in the final report's termination message).
    pushed: std::sync::Mutex<Option<String>>,
    /// This container's termination message file (`PADDOCK_TERMINATION_LOG`).
    termination_log: PathBuf,
}

/// The branch copied into a private repository: its tip.
struct Snapshot {
    repo: Repository,
    tip: Oid,
}

impl PushService {
    /// Reads the gateway environment (and the base the clone step recorded).
    ///
    /// # Errors
    /// [`PushConfigError`] for a missing or invalid variable or unreadable credentials.
    pub fn from_env(env: &Env, ws: Workspace) -> Result<Self, PushConfigError> {
        let url = RepoUrl::parse(env.get(vars::REPO_URL).ok_or(ConfigError::Missing(vars::REPO_URL))?)?;
        let branch = env
            .get(vars::BRANCH)
            .ok_or(ConfigError::Missing(vars::BRANCH))?
            .to_string();
        validate_branch(&branch)?;
        let allowed = parse_bool(env, vars::PUSH, true)?;
        let approval = parse_bool(env, vars::PUSH_APPROVAL, false)?;
        let plan_review = parse_bool(env, vars::PLAN_REVIEW, false)?;
        let creds = GitCredentials::load_from_env(env, &url)?;
        let mut secrets = env.secrets();
        secrets.extend(creds.secrets());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Ok(Self {
            url,
            branch,
            allowed,
            approval,
            plan_review,
            check: VerdictCheck::from_env(env),
            decisions: env
                .get(vars::DECISIONS_FILE)
                .unwrap_or(crate::approval::DEFAULT_DECISIONS_FILE)
                .into(),
            base: read_base(env),
            creds,
            secrets,
            ws,
            state: state_dir(env),
            uplink: Uplink::from_env(env),
            pushed: std::sync::Mutex::new(None),
            termination_log: crate::config::termination_log(env),
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
                let _ = self.handle_once().await;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Handles the pending request, if any: reviews (with a BeforePush gate), pushes, writes
    /// `push-result`, prints a `gateway_push` line, removes the request. Returns the result
    /// written.
    pub async fn handle_once(&self) -> Option<PushResult> {
        let req_file = self.ws.push_request_file();
        let raw = std::fs::read_to_string(&req_file).ok()?;
        let requested = raw.trim().to_string();
        let result = match self.serve(&requested).await {
            Ok(message) => PushResult {
                ok: true,
                message,
                commit: Some(requested.clone()),
                reason: None,
            },
            Err(e) => PushResult {
                ok: false,
                message: crate::emit::clean(&e.to_string(), &self.secrets),
                commit: Some(requested.clone()),
                reason: Some(e.reason().into()),
            },
        };
        let json = serde_json::to_string(&result).unwrap_or_default();
        let _ = write_atomic(&self.ws.push_result_file(), json.as_bytes());
        if std::fs::read_to_string(&req_file).is_ok_and(|r| r == raw) {
            let _ = std::fs::remove_file(&req_file);
        }
        if result.ok {
            if let Ok(mut p) = self.pushed.lock() {
                *p = Some(requested.clone());
            }
        }
        print_line(&GatewayLine::GatewayPush(PushFacts {
            ok: result.ok,
            commit: crate::emit::clean(&requested, &self.secrets),
            branch: self.branch.clone(),
            reason: result.reason.clone(),
            message: result.message.clone(),
        }));
        Some(result)
    }

    /// One request: snapshot, (review and verdict), push.
    async fn serve(&self, requested: &str) -> Result<String, PushFailure> {
        if !self.allowed {
            return Err(PushFailure::Disabled);
        }
        if !matches!(requested.len(), 40 | 64) || !requested.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PushFailure::BadRequest);
        }
        if self.plan_review && crate::approval::plan_approved(&self.decisions, &self.check).is_none() {
            return Err(PushFailure::PlanNotApproved);
        }
        // git2 is blocking; the poll loop has nothing else to do meanwhile.
        let snap = tokio::task::block_in_place(|| self.snapshot("push.git"))?;
        if !snap.tip.to_string().eq_ignore_ascii_case(requested) {
            return Err(PushFailure::Mismatch {
                branch: self.branch.clone(),
                tip: snap.tip.to_string(),
                requested: requested.into(),
            });
        }
        let base = self.base.ok_or(PushFailure::NoBase)?;
        let descends = snap.tip == base || snap.repo.graph_descendant_of(snap.tip, base).unwrap_or(false);
        if !descends {
            return Err(PushFailure::NotDescended {
                commit: snap.tip.to_string(),
                base: base.to_string(),
            });
        }
        if self.approval {
            let scratch = self.state.join("push.git");
            tokio::task::block_in_place(|| self.report(&scratch, Some(snap.tip), BranchPurpose::Review));
            // No deadline here: the run's deadline stops the pod, and a SIGTERM drops this.
            let (_tx, mut never) = tokio::sync::watch::channel(false);
            // The verdict names the commit as the gateway read it (lowercase hex), whatever
            // spelling the request used.
            let reviewed = snap.tip.to_string();
            let verdict =
                crate::approval::wait_verdict(&self.decisions, &self.check, "push", &reviewed, &mut never).await;
            match verdict {
                Some(Verdict::Approve) => {}
                // A BeforePush gate takes no RequestChanges (admission refuses it): a no.
                Some(Verdict::Reject | Verdict::RequestChanges) | None => {
                    return Err(PushFailure::Rejected(requested.into()))
                }
                Some(Verdict::Expired) => return Err(PushFailure::Expired(requested.into())),
            }
        }
        tokio::task::block_in_place(|| self.push_snapshot(&snap, requested))
    }

    /// Copies the branch from the workspace into the fresh private bare repository
    /// `<state>/<name>`.
    fn snapshot(&self, name: &str) -> Result<Snapshot, PushFailure> {
        let scratch = self.state.join(name);
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
        Ok(Snapshot { repo, tip })
    }

    /// Pushes the snapshot's branch (already checked to be `requested`).
    fn push_snapshot(&self, snap: &Snapshot, requested: &str) -> Result<String, PushFailure> {
        let refname = format!("refs/heads/{}", self.branch);
        let rejected = RefCell::new(None::<String>);
        {
            let mut cb = self.creds.callbacks(&self.url);
            cb.push_update_reference(|name, status| {
                if let Some(s) = status {
                    *rejected.borrow_mut() = Some(format!("{name}: {s}"));
                }
                Ok(())
            });
            let mut opts = PushOptions::new();
            opts.remote_callbacks(cb)
                .proxy_options(proxy_options(self.uplink.as_ref()));
            self.creds
                .check_transport(&self.url)
                .map_err(|e| PushFailure::Io(std::io::Error::other(e.to_string())))?;
            let url = remote_url(&self.url, self.uplink.as_ref())
                .map_err(|e| PushFailure::Io(std::io::Error::other(e.to_string())))?;
            crate::uplink::set_http_auth(self.creds.http_authorization());
            let mut remote = snap.repo.remote_anonymous(&url).map_err(git("remote"))?;
            remote
                .push(&[format!("{refname}:{refname}")], Some(&mut opts))
                .map_err(git(format!("push to {}", self.url.sanitized())))?;
        }
        if let Some(r) = rejected.into_inner() {
            return Err(PushFailure::RemoteRejected(r));
        }
        let _ = std::fs::remove_dir_all(snap.repo.path());
        Ok(format!("pushed {requested} to {} as {refname}", self.url.sanitized()))
    }

    /// Prints the facts of `tip` (in the private repository `repo_path`) against the base:
    /// `gateway_patch` chunks, then a `gateway_branch` line.
    fn report(&self, repo_path: &Path, tip: Option<Oid>, purpose: BranchPurpose) {
        let base = self.base.map(|b| b.to_string()).unwrap_or_default();
        let mut facts = BranchFacts {
            purpose,
            branch: self.branch.clone(),
            base: base.clone(),
            commit: tip.filter(|t| Some(*t) != self.base).map(|t| t.to_string()),
            files_changed: 0,
            insertions: 0,
            deletions: 0,
            patch_bytes: 0,
            patch_truncated: false,
            error: None,
        };
        match (self.base, tip) {
            (None, _) => facts.error = Some("no base commit was recorded by the clone step".into()),
            (Some(_), None) => facts.error = Some(format!("branch {} was not found", self.branch)),
            (Some(b), Some(t)) if b == t => {}
            (Some(b), Some(t)) => match crate::diff::compute_diff(repo_path, Some(b), t) {
                Ok(d) => match crate::diff::encode_patch(&d.patch, &self.secrets) {
                    Ok(enc) => {
                        facts.files_changed = d.files_changed;
                        facts.insertions = d.insertions;
                        facts.deletions = d.deletions;
                        facts.patch_bytes = enc.patch_bytes;
                        facts.patch_truncated = enc.truncated;
                        for ev in enc.events {
                            if let RunnerEvent::Patch { index, total, data } = ev {
                                print_line(&GatewayLine::GatewayPatch {
                                    commit: t.to_string(),
                                    index,
                                    total,
                                    data,
                                });
                            }
                        }
                    }
                    Err(e) => facts.error = Some(e.to_string()),
                },
                Err(e) => facts.error = Some(format!("{e} (does the branch still descend from {base}?)")),
            },
        }
        if purpose == BranchPurpose::Final {
            self.write_termination_message(&facts);
        }
        print_line(&GatewayLine::GatewayBranch(facts));
    }

    /// Writes the final facts (and the last push) as this container's termination message, at
    /// most 4096 bytes (the kubelet's limit): the operator's fallback when the log lost them (a
    /// log longer than it reads, a log rotated away). The patch is not in it.
    fn write_termination_message(&self, facts: &BranchFacts) {
        let mut facts = facts.clone();
        if let Some(e) = facts.error.as_mut() {
            *e = paddock_crds::events::truncate(e, 1024);
        }
        let mut text = serde_json::to_string(&GatewayLine::GatewayBranch(facts)).unwrap_or_default();
        let pushed = self.pushed.lock().ok().and_then(|p| p.clone());
        if let Some(commit) = pushed {
            let push = GatewayLine::GatewayPush(PushFacts {
                ok: true,
                commit,
                branch: self.branch.clone(),
                reason: None,
                message: String::new(),
            });
            text.push('\n');
            text.push_str(&serde_json::to_string(&push).unwrap_or_default());
        }
        if text.len() <= 4096 {
            let _ = std::fs::write(&self.termination_log, text);
        }
    }

    /// Prints the run's final facts: the branch tip, read into a private repository, and its
    /// diff from the base. Called when the gateway is stopped, after the agent container ended.
    pub fn report_final(&self) {
        match self.snapshot("final.git") {
            Ok(snap) => {
                self.report(snap.repo.path(), Some(snap.tip), BranchPurpose::Final);
                let _ = std::fs::remove_dir_all(snap.repo.path());
            }
            Err(_) if !self.ws.source().exists() => {}
            Err(_) => self.report(Path::new(""), None, BranchPurpose::Final),
        }
    }
}

/// Prints one gateway line on stdout (the gateway's log), whole, in one write.
fn print_line(line: &GatewayLine) {
    if let Ok(mut text) = serde_json::to_string(line) {
        text.push('\n');
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}
