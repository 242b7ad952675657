//! Forge integration in the API (issue 20, docs/triggers.md): the pull request a run opens
//! after its push (`spec.output.pullRequest`), where it is recorded
//! (`status.result.pullRequest`), and the webhooks an [`AgentRunTrigger`](crate::AgentRunTrigger)
//! takes from a forge's issues.

use crate::reference::LocalObjectRef;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Annotation on a run a webhook created: the issue's web URL.
pub const ANNOTATION_ISSUE_URL: &str = "paddock.dev/issue-url";
/// Annotation on a run a webhook created: the issue's number in its repository.
pub const ANNOTATION_ISSUE_NUMBER: &str = "paddock.dev/issue-number";
/// Annotation on a run a webhook created: the forge's delivery id (`X-Gitea-Delivery`,
/// `X-GitHub-Delivery`, `X-Gitlab-Event-UUID`).
pub const ANNOTATION_DELIVERY: &str = "paddock.dev/delivery";
/// Annotation the operator sets on a webhook run once it commented the outcome on the issue
/// (RFC 3339 time).
pub const ANNOTATION_ISSUE_COMMENTED: &str = "paddock.dev/issue-commented-at";

/// Which forge's REST API and webhook format.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ForgeProvider {
    /// Gitea (and Forgejo): API at `<origin>/api/v1`, webhooks signed in `X-Gitea-Signature`.
    #[default]
    Gitea,
    /// GitHub (and GitHub Enterprise Server): API at `api.github.com` (`<origin>/api/v3`
    /// on a server), webhooks signed in `X-Hub-Signature-256`.
    #[serde(rename = "github")]
    GitHub,
    /// GitLab: API at `<origin>/api/v4`, webhooks carrying the secret in `X-Gitlab-Token`.
    #[serde(rename = "gitlab")]
    GitLab,
}

impl ForgeProvider {
    /// The name as written in manifests (`gitea`, `github`, `gitlab`).
    pub fn as_str(self) -> &'static str {
        match self {
            ForgeProvider::Gitea => "gitea",
            ForgeProvider::GitHub => "github",
            ForgeProvider::GitLab => "gitlab",
        }
    }
}

/// `spec.output.pullRequest`: the pull request (merge request on GitLab) the operator opens
/// from the run's pushed branch into `base`, with the credentials Secret that pushed
/// (`spec.repo.credentialsSecretRef`, key `token`). Opened only after the push, so after a
/// `BeforePush` approval and a required verification; never by the agent.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PullRequestSpec {
    /// The forge's API flavour.
    #[serde(default)]
    pub provider: ForgeProvider,
    /// Branch to merge into (e.g. `main`).
    #[x_kube(validation = Rule::new("!self.startsWith('-') && !self.contains('..') && self.matches('^[A-Za-z0-9._/-]+$')").message("pullRequest.base must be a branch name"))]
    #[schemars(length(min = 1, max = 255))]
    pub base: String,
    /// Title. `$(run.name)`, `$(prompt.firstLine)` are replaced. Default
    /// `paddock: $(prompt.firstLine)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub title: Option<String>,
    /// Text put before the receipt in the body (the receipt — what ran, approvals, usage,
    /// verification, a link to the run — is always appended). Same replacements as `title`,
    /// and `$(summary)`, `$(diffstat)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    pub body: Option<String>,
    /// Open it as a draft (GitHub's `draft`; a `WIP: ` title on Gitea, `Draft: ` on GitLab).
    #[serde(default)]
    pub draft: bool,
    /// Labels to set by name (labels the repository does not have are skipped on Gitea,
    /// created on GitHub and GitLab).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub labels: Vec<String>,
    /// The forge's API base URL when it is not derived from `repo.url` (Gitea
    /// `<origin>/api/v1`, GitHub `https://api.github.com` or `<origin>/api/v3`, GitLab
    /// `<origin>/api/v4`). Must be on `repo.url`'s host (the token goes nowhere else; else
    /// condition `PullRequest` False, reason `InvalidAPIURL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^ ]+$')").message("pullRequest.apiURL must be an http(s) URL"))]
    #[schemars(length(max = 2048))]
    #[serde(rename = "apiURL")]
    pub api_url: Option<String>,
}

/// `status.result.pullRequest`: the pull request opened for the run.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PullRequestStatus {
    /// The pull request's web page.
    pub url: String,
    /// Its number in the repository (GitLab: the merge request's `iid`).
    pub number: u64,
}

/// `spec.webhook` of an AgentRunTrigger: runs from a forge's issue events, delivered to the
/// operator's webhook receiver at `/hooks/<namespace>/<trigger>`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.issueLabel) || has(self.command)").message("webhook needs issueLabel or command (or both)"),
    validation = Rule::new("!has(self.command) || (has(self.allowedUsers) && size(self.allowedUsers) > 0)").message("webhook.command needs allowedUsers (anyone who can comment must not start runs)"),
)]
pub struct WebhookSpec {
    /// The forge sending the deliveries (how they are signed and read).
    #[serde(default)]
    pub provider: ForgeProvider,
    /// Secret (same namespace) holding the webhook secret under key `secret`: the HMAC-SHA256
    /// key (Gitea, GitHub) or the token (GitLab). Deliveries not signed with it are refused
    /// (401) and counted in `paddock_webhook_deliveries_total{result="refused"}`.
    pub secret_ref: LocalObjectRef,
    /// An issue getting this label starts a run (one per issue: a second label event on the
    /// same issue creates nothing new).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub issue_label: Option<String>,
    /// An issue comment starting with this word starts a run (one per comment), e.g.
    /// `/paddock`; the rest of the comment is `$(comment.body)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!self.contains(' ')").message("webhook.command is one word"))]
    #[schemars(length(min = 1, max = 64))]
    pub command: Option<String>,
    /// Forge user names (logins) whose label or command starts a run (matched exactly).
    /// Required with `command`; empty with only `issueLabel`: anyone the forge lets label
    /// issues (the forge limits that to its writers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub allowed_users: Vec<String>,
}
