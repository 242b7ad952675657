//! Commit step: records everything the agent changed in the worktree as one commit on the
//! run's branch, with `git add -A` semantics (new, modified and deleted files; untracked files
//! matching `.gitignore` are left out), author and committer from `PADDOCK_GIT_AUTHOR_NAME` /
//! `PADDOCK_GIT_AUTHOR_EMAIL` (default `Paddock Agent <agent@paddock.dev>`), and the message
//! followed by the trailer `Paddock-Run: <namespace>/<run>`.
//!
//! No change → no new commit. If the agent committed by itself, those commits count as its
//! work: the run's commit is then the branch tip. Either way `refs/heads/$PADDOCK_BRANCH` ends
//! at the final commit (even if the agent switched branches in the worktree).

use std::path::Path;

use git2::{IndexAddOption, Oid, Repository, Signature};

/// Errors of the commit step.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// A git operation failed.
    #[error("{what}: {source}")]
    Git {
        /// What was being done.
        what: &'static str,
        /// libgit2's error.
        source: git2::Error,
    },
}

fn git(what: &'static str) -> impl FnOnce(git2::Error) -> CommitError {
    move |source| CommitError::Git { what, source }
}

/// Inputs of the commit step.
#[derive(Clone, Debug)]
pub struct CommitRequest<'a> {
    /// The run's branch (without `refs/heads/`).
    pub branch: &'a str,
    /// The commit the run started from, when known (`.paddock/base-commit`).
    pub base: Option<Oid>,
    /// Message without the trailer.
    pub message: &'a str,
    /// Author and committer name.
    pub author_name: &'a str,
    /// Author and committer e-mail.
    pub author_email: &'a str,
    /// `<namespace>/<run>` for the trailer.
    pub run_ref: &'a str,
}

/// What the commit step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The run's commit (branch tip), or `None` when nothing changed since `base`.
    pub commit: Option<Oid>,
    /// The commit to diff against: `base` when known, else the new commit's parent.
    pub base: Option<Oid>,
}

/// Appends `Paddock-Run: <run_ref>` as a trailer: to the last paragraph when that paragraph is
/// already a trailer block (`Key: value` lines), else as a new paragraph.
pub fn with_trailer(message: &str, run_ref: &str) -> String {
    let body = message.trim_end();
    let trailer = format!("Paddock-Run: {run_ref}");
    let last_para = body.rsplit("\n\n").next().unwrap_or_default();
    let is_trailer_block = body.contains("\n\n")
        && !last_para.trim().is_empty()
        && last_para.lines().all(|l| {
            l.split_once(": ")
                .is_some_and(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        });
    if body.is_empty() {
        format!("{trailer}\n")
    } else if is_trailer_block {
        format!("{body}\n{trailer}\n")
    } else {
        format!("{body}\n\n{trailer}\n")
    }
}

/// Commits the worktree at `work` (see the module docs).
///
/// # Errors
/// [`CommitError`] when the repository cannot be opened, staged or committed.
pub fn commit_worktree(work: &Path, req: &CommitRequest<'_>) -> Result<Committed, CommitError> {
    let repo = Repository::open(work).map_err(git("open the worktree"))?;
    // The agent's processes are gone: a lock they left behind is stale.
    let _ = std::fs::remove_file(repo.path().join("index.lock"));
    let branch_ref = format!("refs/heads/{}", req.branch);
    let head = repo
        .head()
        .ok()
        .and_then(|h| h.peel_to_commit().ok())
        .or_else(|| {
            repo.find_reference(&branch_ref)
                .ok()
                .and_then(|r| r.peel_to_commit().ok())
        })
        .or_else(|| req.base.and_then(|b| repo.find_commit(b).ok()));

    let mut index = repo.index().map_err(git("read the index"))?;
    index
        .add_all(["*"], IndexAddOption::DEFAULT, None)
        .map_err(git("stage changes"))?;
    index.update_all(["*"], None).map_err(git("stage deletions"))?;
    index.write().map_err(git("write the index"))?;
    let tree_id = index.write_tree().map_err(git("write the tree"))?;

    let unchanged = head.as_ref().is_some_and(|h| h.tree_id() == tree_id);
    let tip = if unchanged {
        head.as_ref().map(|h| h.id())
    } else {
        let tree = repo.find_tree(tree_id).map_err(git("find the tree"))?;
        let sig = Signature::now(req.author_name, req.author_email).map_err(git("author signature"))?;
        let message = with_trailer(req.message, req.run_ref);
        let parents: Vec<&git2::Commit<'_>> = head.iter().collect();
        Some(
            repo.commit(None, &sig, &sig, &message, &tree, &parents)
                .map_err(git("commit"))?,
        )
    };
    if let Some(tip) = tip {
        repo.reference(&branch_ref, tip, true, "paddock: run commit")
            .map_err(git("update the branch"))?;
        let on_branch = repo
            .head()
            .ok()
            .and_then(|h| h.name().ok().map(str::to_string))
            .as_deref()
            == Some(branch_ref.as_str());
        if !on_branch {
            repo.set_head(&branch_ref).map_err(git("check out the branch"))?;
        }
    }
    let base = req
        .base
        .or_else(|| if unchanged { tip } else { head.as_ref().map(|h| h.id()) });
    let commit = tip.filter(|t| Some(*t) != base);
    Ok(Committed { commit, base })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_placement() {
        assert_eq!(
            with_trailer("paddock: r\n\nfix it\n", "ns/r"),
            "paddock: r\n\nfix it\n\nPaddock-Run: ns/r\n"
        );
        assert_eq!(with_trailer("subject", "ns/r"), "subject\n\nPaddock-Run: ns/r\n");
        assert_eq!(
            with_trailer("subject\n\nbody\n\nSigned-off-by: A <a@b>", "ns/r"),
            "subject\n\nbody\n\nSigned-off-by: A <a@b>\nPaddock-Run: ns/r\n"
        );
        assert_eq!(with_trailer("Fix: thing", "ns/r"), "Fix: thing\n\nPaddock-Run: ns/r\n");
    }
}
