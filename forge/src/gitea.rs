//! Gitea's REST API v1 (Forgejo speaks the same): pull requests and issue comments.
//! Reference: Gitea's Swagger (`/api/swagger`, `templates/swagger/v1_json.tmpl` in
//! code.gitea.io/gitea v1.26). Authentication: `Authorization: token <token>`.

use crate::api::{send_json, Comment, NewPullRequest, PullRequest, Repo, Result};
use crate::payload::{
    github_style_comment, github_style_delivery, github_style_issue, header, str_at, Delivery, Event, ParseError,
};
use serde::Deserialize;

/// A Gitea repository client. `Debug` leaves the token out.
#[derive(Clone)]
pub struct Gitea {
    http: reqwest::Client,
    repo: Repo,
    token: String,
}

#[derive(Deserialize)]
struct PullJson {
    number: u64,
    html_url: String,
    state: String,
    head: BranchJson,
    base: BranchJson,
}

#[derive(Deserialize)]
struct BranchJson {
    #[serde(rename = "ref")]
    name: String,
    /// The repository the branch is in (a fork's for a pull request from a fork).
    #[serde(default)]
    repo_id: Option<u64>,
}

#[derive(Deserialize)]
struct LabelJson {
    id: u64,
    name: String,
}

#[derive(Deserialize)]
struct CommentJson {
    id: u64,
    body: String,
}

impl std::fmt::Debug for Gitea {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gitea")
            .field("repo", &self.repo)
            .finish_non_exhaustive()
    }
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

/// Gitea marks a pull request as work in progress by a title prefix (its
/// `[repository.pull-request] WORK_IN_PROGRESS_PREFIXES`, default `WIP:,[WIP]`).
pub fn draft_title(title: &str, draft: bool) -> String {
    if draft && !title.starts_with("WIP:") && !title.starts_with("[WIP]") {
        format!("WIP: {title}")
    } else {
        title.to_string()
    }
}

impl Gitea {
    /// A client for `repo` with API token `token`.
    pub fn new(http: reqwest::Client, repo: Repo, token: String) -> Self {
        Gitea { http, repo, token }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/repos/{}/{}{path}",
            self.repo.api,
            crate::api::percent_encode(&self.repo.owner),
            crate::api::percent_encode(&self.repo.name)
        )
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header("Authorization", format!("token {}", self.token))
            .header("Accept", "application/json")
    }

    /// The open pull request with head branch `head` (`GET /repos/{o}/{r}/pulls?state=open`,
    /// paged, 50 a page, at most 20 pages).
    ///
    /// # Errors
    /// [`crate::Error`] from the forge.
    pub async fn find_pull_request(&self, head: &str) -> Result<Option<PullRequest>> {
        for page in 1..=20 {
            let path = format!("/pulls?state=open&limit=50&page={page}");
            let pulls: Vec<PullJson> = send_json(self.req(reqwest::Method::GET, &path), &format!("GET {path}")).await?;
            let n = pulls.len();
            // Only a pull request from this repository's own branch: anyone may open one from
            // a fork's branch of the same name, and updating that would put Paddock's receipt
            // on someone else's change.
            if let Some(p) = pulls
                .into_iter()
                .find(|p| p.head.name == head && p.head.repo_id.is_some() && p.head.repo_id == p.base.repo_id)
            {
                return Ok(Some(p.into()));
            }
            if n < 50 {
                break;
            }
        }
        Ok(None)
    }

    /// The ids of the repository's labels named in `names` (others skipped).
    async fn label_ids(&self, names: &[String]) -> Result<Vec<u64>> {
        if names.is_empty() {
            return Ok(vec![]);
        }
        let labels: Vec<LabelJson> =
            send_json(self.req(reqwest::Method::GET, "/labels?limit=50"), "GET /labels").await?;
        Ok(labels
            .into_iter()
            .filter(|l| names.contains(&l.name))
            .map(|l| l.id)
            .collect())
    }

    /// `POST /repos/{o}/{r}/pulls`.
    ///
    /// # Errors
    /// [`crate::Error`]; Gitea answers 409 when a pull request for the head is open already.
    pub async fn create_pull_request(&self, pr: &NewPullRequest) -> Result<PullRequest> {
        let labels = self.label_ids(&pr.labels).await?;
        let body = serde_json::json!({
            "head": pr.head,
            "base": pr.base,
            "title": draft_title(&pr.title, pr.draft),
            "body": pr.body,
            "labels": labels,
        });
        let p: PullJson = send_json(self.req(reqwest::Method::POST, "/pulls").json(&body), "POST /pulls").await?;
        Ok(p.into())
    }

    /// `PATCH /repos/{o}/{r}/pulls/{n}`: title and body.
    ///
    /// # Errors
    /// [`crate::Error`] from the forge.
    pub async fn update_pull_request(&self, number: u64, pr: &NewPullRequest) -> Result<PullRequest> {
        let body = serde_json::json!({"title": draft_title(&pr.title, pr.draft), "body": pr.body});
        let path = format!("/pulls/{number}");
        let p: PullJson = send_json(
            self.req(reqwest::Method::PATCH, &path).json(&body),
            &format!("PATCH {path}"),
        )
        .await?;
        Ok(p.into())
    }

    /// `GET /repos/{o}/{r}/issues/{n}/comments`.
    ///
    /// # Errors
    /// [`crate::Error`] from the forge.
    pub async fn comments(&self, number: u64) -> Result<Vec<Comment>> {
        let path = format!("/issues/{number}/comments");
        let cs: Vec<CommentJson> = send_json(self.req(reqwest::Method::GET, &path), &format!("GET {path}")).await?;
        Ok(cs.into_iter().map(|c| Comment { id: c.id, body: c.body }).collect())
    }

    /// `POST /repos/{o}/{r}/issues/{n}/comments`.
    ///
    /// # Errors
    /// [`crate::Error`] from the forge.
    pub async fn comment(&self, number: u64, body: &str) -> Result<Comment> {
        let path = format!("/issues/{number}/comments");
        let c: CommentJson = send_json(
            self.req(reqwest::Method::POST, &path)
                .json(&serde_json::json!({"body": body})),
            &format!("POST {path}"),
        )
        .await?;
        Ok(Comment { id: c.id, body: c.body })
    }
}

/// Reads a Gitea delivery (`X-Gitea-Event`, `X-Gitea-Delivery`; the payloads copy GitHub's shapes).
///
/// # Errors
/// [`ParseError`] when a field the event needs is missing.
pub fn parse_webhook(headers: &http::HeaderMap, v: &serde_json::Value) -> Result<Delivery, ParseError> {
    let kind = header(headers, "x-gitea-event").unwrap_or_default();
    let action = str_at(v, &["action"]);
    let event = match (kind, action) {
        // Gitea sends label changes as `issues` with action `label_updated` and the issue's
        // whole label set.
        ("issues", "label_updated") => Event::Labeled {
            labels: v["issue"]["labels"]
                .as_array()
                .map(|ls| ls.iter().map(|l| str_at(l, &["name"]).to_string()).collect())
                .unwrap_or_default(),
            issue: github_style_issue(&v["issue"])?,
        },
        ("issue_comment", "created") => github_style_comment(v)?,
        _ => Event::Other(format!("{kind}/{action}")),
    };
    Ok(github_style_delivery(
        header(headers, "x-gitea-delivery").unwrap_or_default(),
        v,
        event,
    ))
}
