//! GitHub's REST API v3 (github.com, and GitHub Enterprise Server at `<origin>/api/v3`): pull
//! requests and issue comments, and the `issues` / `issue_comment` webhook deliveries.
//!
//! Plain HTTP with the crate's shared [`reqwest::Client`] and `crate::send_json` (see
//! the octocrab evaluation in the change that added this module).
//!
//! Requests (GitHub REST API docs, version `2022-11-28`, "Pulls" and "Issues" /
//! "Issue comments" / "Labels"):
//! - find: `GET /repos/{o}/{r}/pulls?state=open&head={o}:{branch}`
//! - create: `POST /repos/{o}/{r}/pulls` `{title, head, base, body, draft}`, then
//!   `POST /repos/{o}/{r}/issues/{n}/labels` `{labels}` when there are labels
//! - update: `PATCH /repos/{o}/{r}/pulls/{n}` `{title, body}`
//! - comments: `GET /repos/{o}/{r}/issues/{n}/comments?per_page=100`
//! - comment: `POST /repos/{o}/{r}/issues/{n}/comments` `{body}`
//!
//! Headers: `Authorization: Bearer <token>`, `Accept: application/vnd.github+json`,
//! `X-GitHub-Api-Version: 2022-11-28` (octocrab sends the last one itself, and its own
//! `User-Agent: octocrab`). GitHub answers 422 to a create when a pull request for the head is
//! open already; [`crate::Client::ensure_pull_request`] then finds and updates it.

use crate::api::{send_json, Comment, Error, NewPullRequest, PullRequest, Repo, Result};
use crate::payload::{
    github_style_comment, github_style_delivery, github_style_issue, str_at, Delivery, Event, ParseError,
};
use serde::Deserialize;

/// A GitHub repository client. `Debug` leaves the token out.
#[derive(Clone)]
pub struct GitHub {
    http: reqwest::Client,
    repo: Repo,
    token: String,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub")
            .field("repo", &self.repo)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct PullJson {
    number: u64,
    html_url: String,
    state: String,
    head: BranchJson,
}

#[derive(Deserialize)]
struct BranchJson {
    #[serde(rename = "ref")]
    name: String,
}

#[derive(Deserialize)]
struct CommentJson {
    id: u64,
    #[serde(default)]
    body: Option<String>,
}

impl From<PullJson> for PullRequest {
    fn from(p: PullJson) -> Self {
        PullRequest {
            number: p.number,
            url: p.html_url,
            head: p.head.name,
            open: p.state == "open",
        }
    }
}

impl From<CommentJson> for Comment {
    fn from(c: CommentJson) -> Self {
        Comment {
            id: c.id,
            body: c.body.unwrap_or_default(),
        }
    }
}

/// GitHub's error answer: `message`, and for a 422 the `errors` that say why.
fn explain(e: Error) -> Error {
    match e {
        Error::Status { status, what, message } => {
            let v: serde_json::Value = serde_json::from_str(&message).unwrap_or_default();
            let mut text = v["message"].as_str().map(str::to_string).unwrap_or(message);
            for err in v["errors"].as_array().into_iter().flatten() {
                if let Some(m) = err["message"].as_str() {
                    text.push_str(": ");
                    text.push_str(m);
                }
            }
            Error::Status {
                status,
                what,
                message: text,
            }
        }
        e => e,
    }
}

impl GitHub {
    /// A client for `repo` (its `api` is `https://api.github.com` or `<origin>/api/v3`) with a
    /// token that may write pull requests and issues. Building does no I/O.
    pub fn new(http: reqwest::Client, repo: Repo, token: String) -> Self {
        GitHub { http, repo, token }
    }

    fn path(&self, rest: &str) -> String {
        format!(
            "/repos/{}/{}{rest}",
            crate::api::percent_encode(&self.repo.owner),
            crate::api::percent_encode(&self.repo.name)
        )
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        rest: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T> {
        let path = self.path(rest);
        let what = format!("{method} {}", path.split('?').next().unwrap_or_default());
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.repo.api))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28");
        if let Some(body) = body {
            req = req.json(&body);
        }
        send_json(req, &what).await.map_err(explain)
    }

    /// The open pull request whose head is branch `head` of this repository
    /// (`GET /repos/{o}/{r}/pulls?state=open&head={o}:{head}`, GitHub docs "List pull
    /// requests").
    ///
    /// # Errors
    /// [`crate::Error`] from the forge.
    pub async fn find_pull_request(&self, head: &str) -> Result<Option<PullRequest>> {
        let q = crate::api::percent_encode(&format!("{}:{head}", self.repo.owner));
        let pulls: Vec<PullJson> = self
            .call(reqwest::Method::GET, &format!("/pulls?state=open&head={q}"), None)
            .await?;
        Ok(pulls.into_iter().find(|p| p.head.name == head).map(Into::into))
    }

    /// Opens a pull request (`POST /repos/{o}/{r}/pulls` with `{title, head, base, body,
    /// draft}`, GitHub docs "Create a pull request"), then labels it
    /// (`POST /repos/{o}/{r}/issues/{n}/labels` with `{labels}`, "Add labels to an issue").
    /// A labelling failure is logged, not returned: the pull request exists by then.
    ///
    /// # Errors
    /// [`crate::Error`]; 422 when a pull request for the head is open already.
    pub async fn create_pull_request(&self, pr: &NewPullRequest) -> Result<PullRequest> {
        let body = serde_json::json!({
            "title": pr.title, "head": pr.head, "base": pr.base, "body": pr.body, "draft": pr.draft,
        });
        let created: PullRequest = self
            .call::<PullJson>(reqwest::Method::POST, "/pulls", Some(body))
            .await?
            .into();
        if !pr.labels.is_empty() {
            let rest = format!("/issues/{}/labels", created.number);
            let labels = serde_json::json!({ "labels": pr.labels });
            if let Err(e) = self
                .call::<serde_json::Value>(reqwest::Method::POST, &rest, Some(labels))
                .await
            {
                tracing::warn!(pull = created.number, labels = ?pr.labels, error = %e, "could not label the pull request");
            }
        }
        Ok(created)
    }

    /// Sets the title and body of pull request `number` (`PATCH /repos/{o}/{r}/pulls/{n}`
    /// with `{title, body}`, GitHub docs "Update a pull request").
    ///
    /// # Errors
    /// [`crate::Error`] from the forge.
    pub async fn update_pull_request(&self, number: u64, pr: &NewPullRequest) -> Result<PullRequest> {
        let body = serde_json::json!({"title": pr.title, "body": pr.body});
        let p: PullJson = self
            .call(reqwest::Method::PATCH, &format!("/pulls/{number}"), Some(body))
            .await?;
        Ok(p.into())
    }

    /// The first 100 comments on issue `number`, oldest first
    /// (`GET /repos/{o}/{r}/issues/{n}/comments?per_page=100`).
    ///
    /// # Errors
    /// [`crate::Error`] from the forge.
    pub async fn comments(&self, number: u64) -> Result<Vec<Comment>> {
        let cs: Vec<CommentJson> = self
            .call(
                reqwest::Method::GET,
                &format!("/issues/{number}/comments?per_page=100"),
                None,
            )
            .await?;
        Ok(cs.into_iter().map(Into::into).collect())
    }

    /// Comments `body` on issue `number` (`POST /repos/{o}/{r}/issues/{n}/comments`).
    ///
    /// # Errors
    /// [`crate::Error`] from the forge.
    pub async fn comment(&self, number: u64, body: &str) -> Result<Comment> {
        let c: CommentJson = self
            .call(
                reqwest::Method::POST,
                &format!("/issues/{number}/comments"),
                Some(serde_json::json!({"body": body})),
            )
            .await?;
        Ok(c.into())
    }
}

fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> &'a str {
    crate::payload::header(headers, name).unwrap_or_default()
}

/// Reads a GitHub webhook delivery (GitHub docs, "Webhook events and payloads"), already
/// verified with [`crate::webhook::verify`]:
/// - `X-GitHub-Event: issues`, action `labeled`: [`Event::Labeled`] with the one label added
///   (`label.name`);
/// - `X-GitHub-Event: issue_comment`, action `created`: [`Event::Commented`] (the issue's
///   `is_pull_request` is set when `issue.pull_request` is present: GitHub reports pull
///   request conversation comments as issue comments);
/// - anything else: [`Event::Other`] with `"{event}/{action}"`.
///
/// The delivery id is `X-GitHub-Delivery`, the sender `sender.login`, the repository
/// `repository.html_url`.
///
/// # Errors
/// [`ParseError`] when a labeled or comment delivery lacks `issue.number`, `label.name` or
/// `comment.id`.
pub fn parse_webhook(headers: &http::HeaderMap, v: &serde_json::Value) -> Result<Delivery, ParseError> {
    let kind = header(headers, "x-github-event");
    let action = str_at(v, &["action"]);
    let event = match (kind, action) {
        ("issues", "labeled") => {
            let label = v["label"]["name"]
                .as_str()
                .ok_or_else(|| ParseError("label.name is missing".into()))?;
            Event::Labeled {
                issue: github_style_issue(&v["issue"])?,
                labels: vec![label.to_string()],
            }
        }
        ("issue_comment", "created") => github_style_comment(v)?,
        _ => Event::Other(format!("{kind}/{action}")),
    };
    Ok(github_style_delivery(header(headers, "x-github-delivery"), v, event))
}
