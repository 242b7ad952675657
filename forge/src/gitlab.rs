//! GitLab's REST API v4 (gitlab.com and self-managed, `<origin>/api/v4`): merge requests and
//! issue notes, and the `Issue Hook` / `Note Hook` webhook deliveries.
//!
//! Plain HTTP with the crate's shared [`reqwest::Client`] and `crate::send_json`, as
//! [`crate::gitea`] does. Authentication: `PRIVATE-TOKEN: <token>` (a personal, project or
//! group access token with the `api` scope). The project is addressed by its URL-encoded path,
//! `group%2Fsub%2Frepo` (GitLab docs, "REST API", namespaced paths).
//!
//! Requests (GitLab docs "Merge requests API" and "Notes API"):
//! - find: `GET /projects/{id}/merge_requests?state=opened&source_branch={branch}`
//! - create: `POST /projects/{id}/merge_requests` `{source_branch, target_branch, title,
//!   description, labels}` (labels comma-joined, left out when there are none)
//! - update: `PUT /projects/{id}/merge_requests/{iid}` `{title, description}`
//! - comments: `GET /projects/{id}/issues/{iid}/notes?per_page=100&sort=asc` (system notes
//!   skipped)
//! - comment: `POST /projects/{id}/issues/{iid}/notes` `{body}`
//!
//! GitLab has no draft flag on create: a merge request is a draft by its title's `Draft:`
//! prefix ([`draft_title`]). It answers 409 to a create when a merge request for the source
//! branch is open already; [`crate::Client::ensure_pull_request`] then finds and updates it.

use crate::api::{send_json, Comment, NewPullRequest, PullRequest, Repo, Result};
use crate::payload::{str_at, Delivery, Event, Issue, ParseError};
use serde::Deserialize;

/// A GitLab project client. `Debug` leaves the token out.
#[derive(Clone)]
pub struct GitLab {
    http: reqwest::Client,
    repo: Repo,
    token: String,
}

impl std::fmt::Debug for GitLab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitLab")
            .field("repo", &self.repo)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct MergeRequestJson {
    iid: u64,
    web_url: String,
    source_branch: String,
    state: String,
    /// The project the source branch is in (a fork's for a merge request from a fork).
    #[serde(default)]
    source_project_id: Option<u64>,
    #[serde(default)]
    target_project_id: Option<u64>,
}

#[derive(Deserialize)]
struct NoteJson {
    id: u64,
    body: String,
    #[serde(default)]
    system: bool,
}

impl From<MergeRequestJson> for PullRequest {
    fn from(m: MergeRequestJson) -> Self {
        PullRequest {
            number: m.iid,
            url: m.web_url,
            head: m.source_branch,
            open: m.state == "opened",
        }
    }
}

/// `title` with GitLab's `Draft: ` prefix when `draft` and it has none of the prefixes GitLab
/// reads as draft (`Draft:`, `[Draft]`, `(Draft)`, any case; GitLab docs, "Merge request
/// drafts").
pub fn draft_title(title: &str, draft: bool) -> String {
    let lower = title.trim_start().to_ascii_lowercase();
    let marked = ["draft:", "[draft]", "(draft)"].iter().any(|p| lower.starts_with(p));
    if draft && !marked {
        format!("Draft: {title}")
    } else {
        title.to_string()
    }
}

impl GitLab {
    /// A client for project `repo` (its `api` is `<origin>/api/v4`; its owner may be a group
    /// path `group/sub`) with an access token. Building does no I/O.
    pub fn new(http: reqwest::Client, repo: Repo, token: String) -> Self {
        GitLab { http, repo, token }
    }

    fn project(&self) -> String {
        crate::api::percent_encode(&format!("{}/{}", self.repo.owner, self.repo.name))
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/projects/{}{path}", self.repo.api, self.project()))
            .header("PRIVATE-TOKEN", &self.token)
            .header("Accept", "application/json")
    }

    /// The open merge request whose source branch is `head`
    /// (`GET /projects/{id}/merge_requests?state=opened&source_branch={head}`, GitLab docs "List
    /// project merge requests"): number is its `iid`, url its `web_url`.
    ///
    /// # Errors
    /// [`crate::Error`] from the forge.
    pub async fn find_pull_request(&self, head: &str) -> Result<Option<PullRequest>> {
        let path = format!(
            "/merge_requests?state=opened&source_branch={}",
            crate::api::percent_encode(head)
        );
        let mrs: Vec<MergeRequestJson> =
            send_json(self.req(reqwest::Method::GET, &path), "GET /merge_requests").await?;
        // Only a merge request from this project's own branch: anyone may open one from a
        // fork's branch of the same name, and updating that would put Paddock's receipt on
        // someone else's change.
        Ok(mrs
            .into_iter()
            .find(|m| {
                m.source_branch == head && m.source_project_id.is_some() && m.source_project_id == m.target_project_id
            })
            .map(Into::into))
    }

    /// Opens a merge request (`POST /projects/{id}/merge_requests` with `{source_branch,
    /// target_branch, title, description, labels}`, GitLab docs "Create MR"); a draft gets the
    /// `Draft: ` title prefix, and labels are sent comma-joined (GitLab creates missing ones).
    ///
    /// # Errors
    /// [`crate::Error`]; 409 when a merge request for the source branch is open already.
    pub async fn create_pull_request(&self, pr: &NewPullRequest) -> Result<PullRequest> {
        let mut body = serde_json::json!({
            "source_branch": pr.head,
            "target_branch": pr.base,
            "title": draft_title(&pr.title, pr.draft),
            "description": pr.body,
        });
        if !pr.labels.is_empty() {
            body["labels"] = pr.labels.join(",").into();
        }
        let mr: MergeRequestJson = send_json(
            self.req(reqwest::Method::POST, "/merge_requests").json(&body),
            "POST /merge_requests",
        )
        .await?;
        Ok(mr.into())
    }

    /// Sets the title and description of merge request `iid` (`PUT
    /// /projects/{id}/merge_requests/{iid}` with `{title, description}`, GitLab docs "Update
    /// MR"). The title keeps the `Draft: ` prefix of a draft, else the update would mark it
    /// ready.
    ///
    /// # Errors
    /// [`crate::Error`] from the forge.
    pub async fn update_pull_request(&self, iid: u64, pr: &NewPullRequest) -> Result<PullRequest> {
        let body = serde_json::json!({"title": draft_title(&pr.title, pr.draft), "description": pr.body});
        let path = format!("/merge_requests/{iid}");
        let mr: MergeRequestJson = send_json(
            self.req(reqwest::Method::PUT, &path).json(&body),
            &format!("PUT {path}"),
        )
        .await?;
        Ok(mr.into())
    }

    /// The first 100 notes on issue `iid`, oldest first, without system notes ("added label",
    /// "mentioned in") (`GET /projects/{id}/issues/{iid}/notes?per_page=100&sort=asc`, GitLab
    /// docs "List project issue notes").
    ///
    /// # Errors
    /// [`crate::Error`] from the forge.
    pub async fn comments(&self, iid: u64) -> Result<Vec<Comment>> {
        let path = format!("/issues/{iid}/notes");
        let notes: Vec<NoteJson> = send_json(
            self.req(reqwest::Method::GET, &format!("{path}?per_page=100&sort=asc")),
            &format!("GET {path}"),
        )
        .await?;
        Ok(notes
            .into_iter()
            .filter(|n| !n.system)
            .map(|n| Comment { id: n.id, body: n.body })
            .collect())
    }

    /// Comments `body` on issue `iid` (`POST /projects/{id}/issues/{iid}/notes` with `{body}`,
    /// GitLab docs "Create new issue note").
    ///
    /// # Errors
    /// [`crate::Error`] from the forge.
    pub async fn comment(&self, iid: u64, body: &str) -> Result<Comment> {
        let path = format!("/issues/{iid}/notes");
        let n: NoteJson = send_json(
            self.req(reqwest::Method::POST, &path)
                .json(&serde_json::json!({"body": body})),
            &format!("POST {path}"),
        )
        .await?;
        Ok(Comment { id: n.id, body: n.body })
    }
}

fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> &'a str {
    crate::payload::header(headers, name).unwrap_or_default()
}

/// The titles of the labels in a `changes.labels.previous` / `.current` list.
fn label_titles(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|ls| ls.iter().map(|l| str_at(l, &["title"]).to_string()).collect())
        .unwrap_or_default()
}

/// An issue from an issue's hook attributes (`object_attributes` of an Issue Hook, `issue` of
/// a Note Hook): `iid`, `title`, `description`, `url`. `fallback_url` is used when `url` is
/// absent (the documented Note Hook example has none; GitLab's `IssueBuilder` sends it).
fn issue(v: &serde_json::Value, fallback_url: &str) -> Result<Issue, ParseError> {
    let url = match str_at(v, &["url"]) {
        "" => fallback_url,
        u => u,
    };
    Ok(Issue {
        number: v["iid"]
            .as_u64()
            .ok_or_else(|| ParseError("the issue's iid is missing".into()))?,
        title: str_at(v, &["title"]).to_string(),
        body: str_at(v, &["description"]).to_string(),
        url: url.to_string(),
        is_pull_request: false,
    })
}

/// Reads a GitLab webhook delivery (GitLab docs, "Webhook events"), already verified with
/// [`crate::webhook::verify`]:
/// - `X-Gitlab-Event: Issue Hook` with `object_kind: issue`, `object_attributes.action:
///   update` and `changes.labels` where some label of `current` is not in `previous` (one was
///   added): [`Event::Labeled`] with the titles of the labels added.
///   A change that only removed labels, and any other issue update, is [`Event::Other`].
/// - `X-Gitlab-Event: Note Hook` with `object_attributes.noteable_type: Issue`, action
///   `create` (or none: GitLab before 16.11 sends none) and not a system note:
///   [`Event::Commented`] with the note's `id` and `note`, and the issue from `issue` (`iid`,
///   `title`, `description`, `url`, else the note's URL without its `#note_…` fragment).
/// - anything else, including merge request notes and the `Confidential Issue Hook` /
///   `Confidential Note Hook` events: [`Event::Other`] with `"{event}/{action}"` (notes:
///   `"{event}/{noteable_type}/{action}"`).
///
/// The delivery id is `X-Gitlab-Event-UUID`, the sender `user.username`, the repository
/// `project.web_url`.
///
/// # Errors
/// [`ParseError`] when a labeled or comment delivery lacks the issue's `iid` or the note's
/// `id`.
pub fn parse_webhook(headers: &http::HeaderMap, v: &serde_json::Value) -> Result<Delivery, ParseError> {
    let kind = header(headers, "x-gitlab-event");
    let attrs = &v["object_attributes"];
    let action = str_at(attrs, &["action"]);
    let event = match kind {
        "Issue Hook" if str_at(v, &["object_kind"]) == "issue" && action == "update" => {
            let changes = &v["changes"]["labels"];
            let previous = label_titles(&changes["previous"]);
            let current = label_titles(&changes["current"]);
            let added: Vec<String> = current.into_iter().filter(|l| !previous.contains(l)).collect();
            if !added.is_empty() {
                // Only the labels added: a change to other labels of an issue that already has
                // the trigger's label starts nothing.
                Event::Labeled {
                    issue: issue(attrs, "")?,
                    labels: added,
                }
            } else {
                Event::Other(format!("{kind}/{action}"))
            }
        }
        "Note Hook" => {
            let noteable = str_at(attrs, &["noteable_type"]);
            let system = attrs["system"].as_bool().unwrap_or(false);
            if noteable == "Issue" && matches!(action, "create" | "") && !system {
                let note_url = str_at(attrs, &["url"]);
                let issue_url = note_url.split_once('#').map_or(note_url, |(u, _)| u);
                Event::Commented {
                    issue: issue(&v["issue"], issue_url)?,
                    comment_id: attrs["id"]
                        .as_u64()
                        .ok_or_else(|| ParseError("object_attributes.id is missing".into()))?,
                    body: str_at(attrs, &["note"]).to_string(),
                }
            } else {
                Event::Other(format!("{kind}/{noteable}/{action}"))
            }
        }
        _ => Event::Other(format!("{kind}/{action}")),
    };
    Ok(Delivery {
        id: header(headers, "x-gitlab-event-uuid").to_string(),
        sender: str_at(v, &["user", "username"]).to_string(),
        repository_url: str_at(v, &["project", "web_url"]).to_string(),
        event,
    })
}
