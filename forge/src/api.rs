//! The REST side's shared vocabulary: errors, a repository's coordinates, pull requests and
//! comments as the providers return them, and the HTTP helpers (the bottom layer: the
//! providers and [`crate::Client`] use it; it uses none of them).

pub use paddock_crds::forge::ForgeProvider;
use std::time::Duration;

/// Errors of a forge call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The repository URL does not name `<owner>/<repo>` on an http(s) host.
    #[error("cannot read the repository from {:?} (expected http(s)://host/<owner>/<repo>[.git])", sanitize_url(.0))]
    BadRepoUrl(String),
    /// The forge could not be reached (connection, TLS, timeout).
    #[error("the forge could not be reached: {0}")]
    Transport(String),
    /// The forge answered with an error status.
    #[error("the forge answered {status} to {what}: {message}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// The call, e.g. `POST /repos/o/r/pulls`.
        what: String,
        /// The start of the answer's body.
        message: String,
    },
    /// The forge's answer could not be read.
    #[error("cannot read the forge's answer to {what}: {message}")]
    Decode {
        /// The call.
        what: String,
        /// What was wrong.
        message: String,
    },
}

impl Error {
    /// Whether trying again later may help: transport errors, 5xx, 429 and 408. A 4xx answer
    /// (bad token, no such repository or branch) will not change by itself.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport(_) => true,
            Error::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            Error::BadRepoUrl(_) | Error::Decode { .. } => false,
        }
    }

    /// A CamelCase reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::BadRepoUrl(_) => "InvalidRepoURL",
            Error::Transport(_) => "ForgeUnreachable",
            Error::Status { status: 401 | 403, .. } => "ForgeUnauthorized",
            e @ Error::Status { .. } if e.is_retryable() => "ForgeUnavailable",
            Error::Status { status: 404, .. } => "ForgeNotFound",
            Error::Status { .. } => "ForgeError",
            Error::Decode { .. } => "ForgeError",
        }
    }
}

/// Result of a forge call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A repository on a forge: where its API is and its path there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repo {
    /// The API's base URL without a trailing `/` (e.g. `http://forge:3000/api/v1`).
    pub api: String,
    /// The owner (user, organisation; on GitLab the namespace, possibly with `/`).
    pub owner: String,
    /// The repository's name (without `.git`).
    pub name: String,
}

impl Repo {
    /// Reads `<owner>/<name>` from a clone URL (`https://host/owner/repo.git`, credentials and
    /// a trailing `.git` or `/` dropped) and derives the API base from its origin unless
    /// `api_url` is given: Gitea `<origin>/api/v1`; GitHub `https://api.github.com` for
    /// `github.com`, else `<origin>/api/v3` (GitHub Enterprise Server); GitLab
    /// `<origin>/api/v4` (where the owner may be a group path `group/sub`).
    ///
    /// # Errors
    /// [`Error::BadRepoUrl`] for anything but an http(s) URL with at least two path segments.
    pub fn from_clone_url(provider: ForgeProvider, url: &str, api_url: Option<&str>) -> Result<Repo> {
        let bad = || Error::BadRepoUrl(url.to_string());
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        if scheme != "https" && scheme != "http" {
            return Err(bad());
        }
        let (authority, path) = rest.split_once('/').ok_or_else(bad)?;
        let host = authority.rsplit('@').next().unwrap_or(authority);
        let path = path.trim_end_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path);
        let (owner, name) = path.rsplit_once('/').ok_or_else(bad)?;
        if host.is_empty() || owner.is_empty() || name.is_empty() || path.split('/').any(|s| s.is_empty() || s == "..")
        {
            return Err(bad());
        }
        if provider != ForgeProvider::GitLab && owner.contains('/') {
            return Err(bad());
        }
        let origin = format!("{scheme}://{host}");
        let api = match (api_url, provider) {
            (Some(a), _) => a.trim_end_matches('/').to_string(),
            (None, ForgeProvider::Gitea) => format!("{origin}/api/v1"),
            (None, ForgeProvider::GitHub) if host.eq_ignore_ascii_case("github.com") => "https://api.github.com".into(),
            (None, ForgeProvider::GitHub) => format!("{origin}/api/v3"),
            (None, ForgeProvider::GitLab) => format!("{origin}/api/v4"),
        };
        Ok(Repo {
            api,
            owner: owner.to_string(),
            name: name.to_string(),
        })
    }

    /// `owner/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

/// A pull request (GitLab: merge request) as the forge reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequest {
    /// Number in the repository (GitLab: `iid`).
    pub number: u64,
    /// Web page.
    pub url: String,
    /// Head branch.
    pub head: String,
    /// Whether it is open.
    pub open: bool,
}

/// The pull request to open or update.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NewPullRequest {
    /// Head branch (the run's pushed branch).
    pub head: String,
    /// Base branch.
    pub base: String,
    /// Title.
    pub title: String,
    /// Body (Markdown).
    pub body: String,
    /// Open as a draft.
    pub draft: bool,
    /// Label names.
    pub labels: Vec<String>,
}

/// An issue or pull-request comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    /// The forge's id.
    pub id: u64,
    /// Its text.
    pub body: String,
}

/// The HTTP client the forge clients share: rustls with ring (as kube uses), the system's
/// roots (or, where the image has none, Mozilla's from `webpki-root-certs`), 30 s timeout, a
/// Paddock user agent. Proxy variables (`HTTPS_PROXY`, `NO_PROXY`) apply as reqwest reads them.
///
/// # Errors
/// When the TLS setup fails.
pub fn http_client() -> Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = || {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("paddock-operator/", env!("CARGO_PKG_VERSION")))
            // A redirect could carry the token (GitLab's PRIVATE-TOKEN header survives one)
            // to another host: none are followed.
            .redirect(reqwest::redirect::Policy::none())
    };
    match builder().build() {
        Ok(c) => Ok(c),
        Err(first) => {
            let roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .filter_map(|c| reqwest::Certificate::from_der(c.as_ref()).ok());
            builder()
                .tls_certs_only(roots)
                .build()
                .map_err(|e| Error::Transport(format!("{first}; with built-in roots: {e}")))
        }
    }
}

/// Largest answer read from a forge (bytes).
pub const MAX_ANSWER_BYTES: usize = 4 << 20;

/// Sends `req`, and reads a 2xx JSON answer into `T`; `what` names the call in errors.
pub async fn send_json<T: serde::de::DeserializeOwned>(req: reqwest::RequestBuilder, what: &str) -> Result<T> {
    let mut resp = req.send().await.map_err(|e| Error::Transport(e.to_string()))?;
    let status = resp.status();
    // At most MAX_ANSWER_BYTES: a server the URL points at cannot fill the operator's memory.
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| Error::Transport(e.to_string()))? {
        if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(Error::Decode {
                what: what.to_string(),
                message: format!("the answer is over {MAX_ANSWER_BYTES} bytes"),
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(&bytes);
        return Err(Error::Status {
            status: status.as_u16(),
            what: what.to_string(),
            message: text.chars().take(300).collect(),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
        what: what.to_string(),
        message: e.to_string(),
    })
}

/// `s` with every byte outside RFC 3986's unreserved set percent-encoded (for a path segment
/// or query value, e.g. GitLab's `group%2Frepo` project id).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `(scheme, host, port)` of `url` as the HTTP client will connect to it (parsed by the same
/// WHATWG URL parser reqwest uses, so `http://a?@b/` is host `a`), host lowercased, the
/// scheme's default port when absent; `None` when it does not parse or has no host.
pub fn origin_of(url: &str) -> Option<(String, String, u16)> {
    let u = reqwest::Url::parse(url).ok()?;
    let host = u.host_str()?.to_ascii_lowercase();
    Some((u.scheme().to_string(), host, u.port_or_known_default()?))
}

/// `url` without its user info (`https://user:secret@host/…` → `https://host/…`): safe to put
/// in conditions, Events, logs and answers.
pub fn sanitize_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}
