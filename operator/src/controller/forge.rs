//! The operator's side of forge integration (issue 20): a [`paddock_forge::Client`] for a
//! run's repository, authenticated with the run's credentials Secret (key `token`), the same
//! Secret the pod's trusted containers push with. The agent never holds it.

use crate::context::Context;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use paddock_crds::forge::ForgeProvider;
use paddock_crds::AgentRun;
use paddock_forge::{Client, Repo};

/// Why no client could be made: a CamelCase reason and a message for a condition or Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable {
    /// `MissingCredentials`, `InvalidRepoURL`, `ForgeError` or `KubeApiError`.
    pub reason: &'static str,
    /// What to fix.
    pub message: String,
    /// Whether trying again later may help (an API error, not a missing Secret key).
    pub retryable: bool,
}

/// The API token in Secret `secret` of `ns` (key `token`).
///
/// # Errors
/// [`Unusable`] when the Secret or its key is missing, or the read failed.
pub async fn token(ctx: &Context, ns: &str, secret: &str) -> Result<String, Unusable> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let missing = |m: String| Unusable {
        reason: "MissingCredentials",
        message: m,
        retryable: false,
    };
    let s = api.get_opt(secret).await.map_err(|e| Unusable {
        reason: "KubeApiError",
        message: format!("reading Secret {secret}: {e}"),
        retryable: true,
    })?;
    let s = s.ok_or_else(|| missing(format!("Secret {secret} does not exist")))?;
    let bytes = s
        .data
        .and_then(|mut d| d.remove("token"))
        .ok_or_else(|| missing(format!("Secret {secret} has no key token (the forge's API token)")))?;
    String::from_utf8(bytes.0)
        .map(|t| t.trim().to_string())
        .map_err(|_| missing(format!("Secret {secret}'s token is not UTF-8")))
}

/// A client for `run`'s repository (`spec.repo.url`) on `provider`, with the token of
/// `spec.repo.credentialsSecretRef`; `api_url` overrides the API base derived from the URL.
///
/// # Errors
/// [`Unusable`] without a credentials Secret, or with a URL that names no repository.
pub async fn client_for_run(
    ctx: &Context,
    run: &AgentRun,
    provider: ForgeProvider,
    api_url: Option<&str>,
) -> Result<Client, Unusable> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let secret = run.spec.repo.credentials_secret_ref.as_ref().ok_or_else(|| Unusable {
        reason: "MissingCredentials",
        message: "spec.repo.credentialsSecretRef is required to talk to the forge (its key token)".into(),
        retryable: false,
    })?;
    let token = token(ctx, ns, &secret.name).await?;
    let repo = Repo::from_clone_url(provider, &run.spec.repo.url, api_url).map_err(|e| Unusable {
        reason: e.reason(),
        message: e.to_string(),
        retryable: false,
    })?;
    let allowed: Vec<String> = run
        .status
        .as_ref()
        .and_then(|s| s.policy.as_ref())
        .and_then(|p| p.pool_spec.output.as_ref())
        .map(|o| o.plain_http_hosts.clone())
        .unwrap_or_default();
    if !same_forge(&repo.api, &run.spec.repo.url) {
        return Err(Unusable {
            reason: "InvalidAPIURL",
            message: format!(
                "the forge API {} is not on the repository's host: the token goes only there",
                paddock_forge::api::sanitize_url(&repo.api)
            ),
            retryable: false,
        });
    }
    if !plain_http_allowed(&repo.api, &allowed) {
        return Err(Unusable {
            reason: "InsecureTransport",
            message: format!(
                "refusing to send the forge token over plain http:// ({}); use https://, or list the host in the pool's spec.output.plainHTTPHosts",
                repo.api
            ),
            retryable: false,
        });
    }
    Client::new(provider, repo, token).map_err(|e| Unusable {
        reason: e.reason(),
        message: e.to_string(),
        retryable: e.is_retryable(),
    })
}

/// Whether a token may go to `url`: any `https://` URL, or an `http://` one whose `host` or
/// `host:port` is in `allowed` (the pool's `spec.output.plainHTTPHosts`, the same list the
/// runner's trusted containers use for git). The URL is read by the HTTP client's own parser
/// ([`paddock_forge::api::origin_of`]), so the host checked is the host connected to. Pure.
pub fn plain_http_allowed(url: &str, allowed: &[String]) -> bool {
    match paddock_forge::api::origin_of(url) {
        Some((scheme, _, _)) if scheme == "https" => true,
        Some((scheme, host, port)) if scheme == "http" => {
            let with_port = format!("{host}:{port}");
            allowed
                .iter()
                .map(|a| a.to_ascii_lowercase())
                .any(|a| a == host || a == with_port)
        }
        _ => false,
    }
}

/// Whether the forge API at `api` is on the repository's host (`repo_url`): a token meant for
/// the repository goes nowhere else. `api.github.com` counts as `github.com`'s. Pure.
pub fn same_forge(api: &str, repo_url: &str) -> bool {
    match (
        paddock_forge::api::origin_of(api),
        paddock_forge::api::origin_of(repo_url),
    ) {
        (Some((_, a, _)), Some((_, r, _))) => a == r || (a == "api.github.com" && r == "github.com"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::plain_http_allowed;

    #[test]
    fn tokens_go_over_plain_http_only_to_listed_hosts() {
        let allowed = vec!["forge.internal:3000".to_string(), "Git.Local".to_string()];
        assert!(plain_http_allowed("https://anything/api/v1", &[]));
        assert!(plain_http_allowed("http://forge.internal:3000/api/v1", &allowed));
        assert!(plain_http_allowed("http://git.local:8080/api/v4", &allowed));
        assert!(!plain_http_allowed("http://forge.internal/api/v1", &allowed), "port 80");
        assert!(!plain_http_allowed("http://forge.internal:3001/api/v1", &allowed));
        assert!(!plain_http_allowed("http://u@evil:3000/api", &allowed));
        assert!(!plain_http_allowed("http://forge.internal:3000/api/v1", &[]));
        // The host connected to, not the text after the last '@'.
        assert!(!plain_http_allowed(
            "http://169.254.169.254?@forge.internal:3000/api",
            &allowed
        ));
        assert!(!plain_http_allowed(
            "http://169.254.169.254#@forge.internal:3000/api",
            &allowed
        ));
        assert!(!plain_http_allowed("ftp://forge.internal:3000/", &allowed));
    }

    #[test]
    fn the_token_goes_only_to_the_repositorys_host() {
        use super::same_forge;
        assert!(same_forge("https://api.github.com", "https://github.com/o/r.git"));
        assert!(same_forge("https://GHE.example/api/v3", "https://ghe.example/o/r"));
        assert!(same_forge(
            "http://10.244.0.1:13000/api/v1",
            "http://10.244.0.1:13000/o/r.git"
        ));
        assert!(!same_forge("https://evil.example/api/v1", "https://forge.example/o/r"));
        assert!(!same_forge(
            "https://forge.example.evil/api",
            "https://forge.example/o/r"
        ));
        assert!(!same_forge("https://api.github.com", "https://gitlab.com/o/r"));
    }
}
