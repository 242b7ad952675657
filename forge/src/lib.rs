//! Forge clients for the operator (issue 20, docs/triggers.md): open or update the pull request
//! of a run's pushed branch, comment on an issue, and read and verify the webhooks a forge
//! sends. Trusted code only: the token comes from the run's credentials Secret, read by the
//! operator, never given to the agent.
//!
//! One [`Client`] per repository, for [`ForgeProvider::Gitea`] (REST API v1), `GitHub` (REST
//! API v3) and `GitLab` (REST API v4). [`Client::ensure_pull_request`] and
//! [`Client::ensure_comment`] are idempotent: a pull request is found by its head branch and
//! updated, a comment by a marker in its text, so a retried reconcile or a restarted operator
//! never opens a second one.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod payload;
pub mod webhook;

pub use api::{http_client, percent_encode, Comment, Error, ForgeProvider, NewPullRequest, PullRequest, Repo, Result};

/// What [`Client::ensure_pull_request`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ensured {
    /// Opened now.
    Created,
    /// Found open for the head branch, and updated.
    Updated,
}

/// A client for one repository on one forge.
#[derive(Clone, Debug)]
pub enum Client {
    /// Gitea / Forgejo.
    Gitea(gitea::Gitea),
    /// GitHub.
    GitHub(github::GitHub),
    /// GitLab.
    GitLab(gitlab::GitLab),
}

impl Client {
    /// A client for `repo` on `provider`, authenticated with `token`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(provider: ForgeProvider, repo: Repo, token: String) -> Result<Client> {
        let http = http_client()?;
        Ok(match provider {
            ForgeProvider::Gitea => Client::Gitea(gitea::Gitea::new(http, repo, token)),
            ForgeProvider::GitHub => Client::GitHub(github::GitHub::new(http, repo, token)),
            ForgeProvider::GitLab => Client::GitLab(gitlab::GitLab::new(http, repo, token)),
        })
    }

    /// The open pull request whose head is `head`, if any.
    ///
    /// # Errors
    /// [`Error`] from the forge.
    pub async fn find_pull_request(&self, head: &str) -> Result<Option<PullRequest>> {
        match self {
            Client::Gitea(c) => c.find_pull_request(head).await,
            Client::GitHub(c) => c.find_pull_request(head).await,
            Client::GitLab(c) => c.find_pull_request(head).await,
        }
    }

    /// Opens a pull request.
    ///
    /// # Errors
    /// [`Error`] from the forge (e.g. 409/422 when one is open for the head already).
    pub async fn create_pull_request(&self, pr: &NewPullRequest) -> Result<PullRequest> {
        match self {
            Client::Gitea(c) => c.create_pull_request(pr).await,
            Client::GitHub(c) => c.create_pull_request(pr).await,
            Client::GitLab(c) => c.create_pull_request(pr).await,
        }
    }

    /// Sets the title and body of pull request `number`.
    ///
    /// # Errors
    /// [`Error`] from the forge.
    pub async fn update_pull_request(&self, number: u64, pr: &NewPullRequest) -> Result<PullRequest> {
        match self {
            Client::Gitea(c) => c.update_pull_request(number, pr).await,
            Client::GitHub(c) => c.update_pull_request(number, pr).await,
            Client::GitLab(c) => c.update_pull_request(number, pr).await,
        }
    }

    /// The comments on issue `number` (first 100, oldest first).
    ///
    /// # Errors
    /// [`Error`] from the forge.
    pub async fn comments(&self, number: u64) -> Result<Vec<Comment>> {
        match self {
            Client::Gitea(c) => c.comments(number).await,
            Client::GitHub(c) => c.comments(number).await,
            Client::GitLab(c) => c.comments(number).await,
        }
    }

    /// Comments `body` on issue `number`.
    ///
    /// # Errors
    /// [`Error`] from the forge.
    pub async fn comment(&self, number: u64, body: &str) -> Result<Comment> {
        match self {
            Client::Gitea(c) => c.comment(number, body).await,
            Client::GitHub(c) => c.comment(number, body).await,
            Client::GitLab(c) => c.comment(number, body).await,
        }
    }

    /// Opens the pull request, or updates the one open for its head branch: at most one pull
    /// request per branch across retries and operator restarts. A create refused because
    /// one exists already (a race with another writer) looks it up again.
    ///
    /// # Errors
    /// [`Error`] from the forge.
    pub async fn ensure_pull_request(&self, pr: &NewPullRequest) -> Result<(PullRequest, Ensured)> {
        if let Some(found) = self.find_pull_request(&pr.head).await? {
            return Ok((self.update_pull_request(found.number, pr).await?, Ensured::Updated));
        }
        match self.create_pull_request(pr).await {
            Ok(created) => Ok((created, Ensured::Created)),
            Err(e @ Error::Status { status: 409 | 422, .. }) => match self.find_pull_request(&pr.head).await? {
                Some(found) => Ok((self.update_pull_request(found.number, pr).await?, Ensured::Updated)),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Comments on issue `number` unless a comment containing `marker` (e.g. an HTML comment
    /// naming the run's UID) is there already. Returns whether it commented now.
    ///
    /// # Errors
    /// [`Error`] from the forge.
    pub async fn ensure_comment(&self, number: u64, marker: &str, body: &str) -> Result<bool> {
        if self.comments(number).await?.iter().any(|c| c.body.contains(marker)) {
            return Ok(false);
        }
        self.comment(number, body).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
