//! What a webhook delivery says, read into types the triggers act on (the providers fill
//! them; [`crate::webhook`] dispatches).

/// An issue, as a delivery describes it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Issue {
    /// Number in its repository (GitLab: `iid`).
    pub number: u64,
    /// Title.
    pub title: String,
    /// Description (may be empty).
    pub body: String,
    /// Web page.
    pub url: String,
    /// Whether it is a pull request (GitHub and Gitea report pull-request comments as issue
    /// comments); triggers ignore those.
    pub is_pull_request: bool,
}

/// What a delivery says happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Labels were added to an issue: `labels` are the ones added (GitHub, GitLab), or the
    /// issue's labels now (Gitea, whose `label_updated` does not say which was added).
    Labeled {
        /// The issue.
        issue: Issue,
        /// Label names.
        labels: Vec<String>,
    },
    /// A comment was created on an issue.
    Commented {
        /// The issue.
        issue: Issue,
        /// The comment's id.
        comment_id: u64,
        /// Its text.
        body: String,
    },
    /// Anything else (the event's name), acknowledged and ignored.
    Other(String),
}

/// One delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The forge's delivery id (empty when the forge sent none).
    pub id: String,
    /// Login of the user who caused it (labelled, commented).
    pub sender: String,
    /// The repository's web URL (`html_url`, GitLab `web_url`), to check the delivery is for
    /// the trigger's repository.
    pub repository_url: String,
    /// What happened.
    pub event: Event,
}

/// Why a delivery's body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the delivery: {0}")]
pub struct ParseError(pub String);

/// The string at `path` (object keys) in `v`, or "" when absent or not a string.
pub fn str_at<'a>(v: &'a serde_json::Value, path: &[&str]) -> &'a str {
    path.iter().fold(v, |v, k| &v[*k]).as_str().unwrap_or_default()
}

/// An issue object in GitHub's shape (Gitea copies it): `number`, `title`, `body`, `html_url`,
/// `pull_request` present for pull requests.
pub fn github_style_issue(v: &serde_json::Value) -> Result<Issue, ParseError> {
    Ok(Issue {
        number: v["number"]
            .as_u64()
            .ok_or_else(|| ParseError("issue.number is missing".into()))?,
        title: str_at(v, &["title"]).to_string(),
        body: str_at(v, &["body"]).to_string(),
        url: str_at(v, &["html_url"]).to_string(),
        is_pull_request: !v["pull_request"].is_null(),
    })
}

/// The value of header `name`, trimmed, if it is text.
pub fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// An `issue_comment`/`created` event in GitHub's shape (Gitea copies it): the issue, the
/// comment's id and text.
///
/// # Errors
/// [`ParseError`] when the issue's number or the comment's id is missing.
pub fn github_style_comment(v: &serde_json::Value) -> Result<Event, ParseError> {
    Ok(Event::Commented {
        issue: github_style_issue(&v["issue"])?,
        comment_id: v["comment"]["id"]
            .as_u64()
            .ok_or_else(|| ParseError("comment.id is missing".into()))?,
        body: str_at(v, &["comment", "body"]).to_string(),
    })
}

/// A delivery in GitHub's shape (Gitea copies it): `sender.login`, `repository.html_url`.
pub fn github_style_delivery(id: &str, v: &serde_json::Value, event: Event) -> Delivery {
    Delivery {
        id: id.to_string(),
        sender: str_at(v, &["sender", "login"]).to_string(),
        repository_url: str_at(v, &["repository", "html_url"]).to_string(),
        event,
    }
}
