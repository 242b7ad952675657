//! Repository URLs and git credentials, shared by `clone` and `gateway` (the trusted
//! containers). Credentials are files from a Secret mounted at
//! `/var/run/paddock/git/` (`PADDOCK_GIT_CREDENTIALS_DIR` overrides it):
//! - `token` — HTTPS, sent as user `x-access-token`; or `username` + `password`;
//! - `ssh-privatekey` (+ optional `username`, default the URL's user or `git`) and
//!   `known_hosts` — SSH with strict host-key checking against that file (plain host entries,
//!   `[host]:port` entries and `@revoked` markers; hashed `|1|…` entries are not supported).
//!
//! Credentials are only ever handed to libgit2 through callbacks: never written to a repository
//! config, a URL on disk, or any output; [`GitCredentials::secrets`] lists them for redaction.

use paddock_crds::runner::vars;
use std::cell::Cell;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use git2::{CertificateCheckStatus, Cred, CredentialType, RemoteCallbacks};

/// Default directory of the git credential files.
pub const DEFAULT_CREDENTIALS_DIR: &str = "/var/run/paddock/git";

/// Errors in a repository URL.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    /// The URL is empty.
    #[error("the repository URL is empty")]
    Empty,
    /// The URL would be read as an option or names a remote helper (`ext::`, `fd::`, …).
    #[error("the repository URL must not start with '-' or use a remote helper (`<transport>::`)")]
    OptionOrHelper,
    /// The URL contains whitespace or control characters.
    #[error("the repository URL contains whitespace or control characters")]
    BadCharacters,
    /// The scheme is not one the runner supports.
    #[error("unsupported repository URL (expected https://, http://, ssh://, git:// or file://)")]
    Scheme,
}

/// URL schemes the runner accepts.
pub const SCHEMES: [&str; 5] = ["https", "http", "ssh", "git", "file"];

/// A validated repository URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoUrl {
    raw: String,
    scheme: String,
}

impl RepoUrl {
    /// Validates `raw`: one of [`SCHEMES`], no leading `-`, no `<transport>::` remote helper
    /// syntax (`ext::sh -c …`), no whitespace or control characters.
    ///
    /// # Errors
    /// [`UrlError`] saying what is wrong (never echoing the URL, which may hold a password).
    pub fn parse(raw: &str) -> Result<Self, UrlError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(UrlError::Empty);
        }
        let before_scheme = raw.split("://").next().unwrap_or(raw);
        if raw.starts_with('-') || before_scheme.contains("::") {
            return Err(UrlError::OptionOrHelper);
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::BadCharacters);
        }
        let Some((scheme, rest)) = raw.split_once("://") else {
            return Err(UrlError::Scheme);
        };
        let scheme = scheme.to_ascii_lowercase();
        if !SCHEMES.contains(&scheme.as_str()) || rest.is_empty() {
            return Err(UrlError::Scheme);
        }
        let url = Self {
            raw: raw.to_string(),
            scheme,
        };
        if url.host_port().0.starts_with('-') {
            return Err(UrlError::OptionOrHelper);
        }
        // `?`, `#` or `\` before the path: parsers disagree on the host of such a URL
        // (`http://a?@b/` is host `a` to libgit2 and browsers, `b` to a split at '@'), so the
        // host checked would not be the host connected to.
        if url.authority().contains(['?', '#', '\\']) {
            return Err(UrlError::BadCharacters);
        }
        Ok(url)
    }

    /// The URL as given (may contain a password in its user info: never print it).
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Lower-case scheme (`https`, `ssh`, …).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    fn authority(&self) -> &str {
        let rest = &self.raw[self.scheme.len() + 3..];
        rest.split('/').next().unwrap_or_default()
    }

    /// The user-info password, if the URL has one (a secret to redact).
    pub fn password(&self) -> Option<&str> {
        let auth = self.authority();
        let (userinfo, _) = auth.rsplit_once('@')?;
        userinfo.split_once(':').map(|(_, p)| p).filter(|p| !p.is_empty())
    }

    /// The user-info user name, if any.
    pub fn username(&self) -> Option<&str> {
        let (userinfo, _) = self.authority().rsplit_once('@')?;
        Some(userinfo.split(':').next().unwrap_or_default()).filter(|u| !u.is_empty())
    }

    /// Host and port of the URL (`host`, `Some(port)`).
    pub fn host_port(&self) -> (String, Option<u16>) {
        let auth = self.authority();
        let hostport = auth.rsplit_once('@').map(|(_, h)| h).unwrap_or(auth);
        if let Some(rest) = hostport.strip_prefix('[') {
            // [v6]:port
            let (host, tail) = rest.split_once(']').unwrap_or((rest, ""));
            return (host.to_string(), tail.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()),
            None => (hostport.to_string(), None),
        }
    }

    /// The URL without a password (`https://user@host/…`): safe to store and print. For
    /// `https`/`http` the user name is dropped too (it is often the token itself).
    pub fn sanitized(&self) -> String {
        let auth = self.authority();
        let Some((userinfo, host)) = auth.rsplit_once('@') else {
            return self.raw.clone();
        };
        let tail = &self.raw[self.scheme.len() + 3 + auth.len()..];
        let user = userinfo.split(':').next().unwrap_or_default();
        if user.is_empty() || self.scheme.starts_with("http") {
            format!("{}://{host}{tail}", self.scheme)
        } else {
            format!("{}://{user}@{host}{tail}", self.scheme)
        }
    }
}

/// Errors loading credentials or using them.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// A credential file exists but cannot be read.
    #[error("cannot read credential file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Credentials would be sent in clear text.
    #[error("refusing to send git credentials over plain http://; use https:// (or list the host in the pool's spec.output.plainHTTPHosts)")]
    PlainHttp,
}

/// Git credentials read from the credential directory.
#[derive(Clone, Default)]
pub struct GitCredentials {
    token: Option<String>,
    username: Option<String>,
    password: Option<String>,
    ssh_key: Option<String>,
    known_hosts: Option<String>,
    url_user: Option<String>,
    url_password: Option<String>,
    /// `host` or `host:port` entries credentials may go to over plain `http://`
    /// (`PADDOCK_GIT_PLAIN_HTTP_HOSTS`, from the pool's `spec.output.plainHTTPHosts`).
    plain_http_hosts: Vec<String>,
}

impl std::fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitCredentials")
            .field("token", &self.token.is_some())
            .field("username", &self.username)
            .field("password", &self.password.is_some())
            .field("ssh_key", &self.ssh_key.is_some())
            .field("known_hosts", &self.known_hosts.is_some())
            .finish()
    }
}

fn read_opt(dir: &Path, name: &str) -> Result<Option<String>, CredentialError> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let s = if name == "ssh-privatekey" || name == "known_hosts" {
                s
            } else {
                s.trim_end_matches(['\n', '\r']).to_string()
            };
            Ok(Some(s).filter(|s| !s.trim().is_empty()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CredentialError::Read { path, source }),
    }
}

impl GitCredentials {
    /// Reads the credential files in `dir` (missing files are fine: no credentials) and takes
    /// a user/password from `url`'s user info, if any.
    ///
    /// # Errors
    /// [`CredentialError::Read`] when a file exists but cannot be read.
    pub fn load(dir: &Path, url: &RepoUrl) -> Result<Self, CredentialError> {
        Ok(Self {
            token: read_opt(dir, "token")?,
            username: read_opt(dir, "username")?,
            password: read_opt(dir, "password")?,
            ssh_key: read_opt(dir, "ssh-privatekey")?,
            known_hosts: read_opt(dir, "known_hosts")?,
            url_user: url.username().map(str::to_string),
            url_password: url.password().map(str::to_string),
            plain_http_hosts: vec![],
        })
    }

    /// [`GitCredentials::load`] from the directory `PADDOCK_GIT_CREDENTIALS_DIR` names, with
    /// the plain-HTTP hosts of `PADDOCK_GIT_PLAIN_HTTP_HOSTS` (comma-separated `host[:port]`;
    /// the operator sets it in the trusted containers from the pool's
    /// `spec.output.plainHTTPHosts`).
    ///
    /// # Errors
    /// [`CredentialError::Read`].
    pub fn load_from_env(env: &crate::env::Env, url: &RepoUrl) -> Result<Self, CredentialError> {
        let mut c = Self::load(&Self::dir_from_env(env), url)?;
        c.plain_http_hosts = env
            .get(vars::GIT_PLAIN_HTTP_HOSTS)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        Ok(c)
    }

    /// The credential directory from `PADDOCK_GIT_CREDENTIALS_DIR` or the default.
    pub fn dir_from_env(env: &crate::env::Env) -> PathBuf {
        PathBuf::from(env.get(vars::GIT_CREDENTIALS_DIR).unwrap_or(DEFAULT_CREDENTIALS_DIR))
    }

    /// Secret values to redact from every output (token, passwords, private key lines).
    pub fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = [&self.token, &self.password, &self.url_password]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        if let Some(key) = &self.ssh_key {
            out.extend(
                key.lines()
                    .map(str::trim)
                    .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
                    .map(str::to_string),
            );
        }
        out.retain(|s| s.len() >= 4);
        out.sort_by_key(|s| std::cmp::Reverse(s.len()));
        out
    }

    /// The HTTP `Authorization` value for an `http(s)://` remote (`Basic` of the same user and
    /// password the credential callback gives libgit2: `x-access-token` + token, or
    /// username + password, or the URL's user info); `None` without credentials.
    pub fn http_authorization(&self) -> Option<String> {
        use base64::Engine;
        let (u, p) = if let Some(t) = &self.token {
            ("x-access-token", t.as_str())
        } else if let (Some(u), Some(p)) = (&self.username, &self.password) {
            (u.as_str(), p.as_str())
        } else if let Some(p) = &self.url_password {
            (self.url_user.as_deref().unwrap_or(""), p.as_str())
        } else {
            return None;
        };
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        ))
    }

    /// Checks that credentials are not about to be sent over plain HTTP, unless to a host the
    /// pool lists (`plain_http_hosts`).
    ///
    /// # Errors
    /// [`CredentialError::PlainHttp`].
    pub fn check_transport(&self, url: &RepoUrl) -> Result<(), CredentialError> {
        let has_http_creds = self.token.is_some() || self.password.is_some() || self.url_password.is_some();
        if url.scheme() == "http" && has_http_creds {
            let (host, port) = url.host_port();
            let host = host.to_ascii_lowercase();
            let with_port = format!("{host}:{}", port.unwrap_or(80));
            if !self.plain_http_hosts.iter().any(|h| *h == host || *h == with_port) {
                return Err(CredentialError::PlainHttp);
            }
        }
        Ok(())
    }

    /// Remote callbacks that answer credential requests (each kind once, so a rejected
    /// credential fails instead of looping) and check SSH host keys against `known_hosts`.
    pub fn callbacks<'a>(&'a self, url: &RepoUrl) -> RemoteCallbacks<'a> {
        let mut cb = RemoteCallbacks::new();
        let tried_userpass = Cell::new(false);
        let tried_ssh = Cell::new(false);
        let tried_user = Cell::new(false);
        cb.credentials(move |_url, user_from_url, allowed| {
            let ssh_user = self
                .username
                .clone()
                .or_else(|| user_from_url.map(str::to_string))
                .unwrap_or_else(|| "git".to_string());
            if allowed.contains(CredentialType::USERNAME) && !tried_user.replace(true) {
                return Cred::username(&ssh_user);
            }
            if allowed.contains(CredentialType::SSH_KEY) && !tried_ssh.replace(true) {
                if let Some(key) = &self.ssh_key {
                    return Cred::ssh_key_from_memory(&ssh_user, None, key, None);
                }
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) && !tried_userpass.replace(true) {
                if let Some(token) = &self.token {
                    return Cred::userpass_plaintext("x-access-token", token);
                }
                if let (Some(u), Some(p)) = (&self.username, &self.password) {
                    return Cred::userpass_plaintext(u, p);
                }
                if let Some(p) = &self.url_password {
                    return Cred::userpass_plaintext(self.url_user.as_deref().unwrap_or(""), p);
                }
            }
            Err(git2::Error::from_str(
                "authentication failed (no usable git credentials)",
            ))
        });
        let (host, port) = url.host_port();
        let ssh = url.scheme() == "ssh";
        let known_hosts = self.known_hosts.clone();
        cb.certificate_check(move |cert, _host| {
            if !ssh {
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            }
            let Some(kh) = known_hosts.as_deref() else {
                return Err(git2::Error::from_str(
                    "ssh host key check failed: no known_hosts credential file",
                ));
            };
            let key = cert.as_hostkey().and_then(|h| h.hostkey());
            match key {
                Some(key) if known_host_matches(kh, &host, port, key) => Ok(CertificateCheckStatus::CertificateOk),
                Some(_) => Err(git2::Error::from_str(&format!(
                    "ssh host key of {host} is not in known_hosts"
                ))),
                None => Err(git2::Error::from_str("ssh host key check failed: no raw host key")),
            }
        });
        cb
    }
}

/// Whether `known_hosts` (OpenSSH format) lists `key` (the raw SSH key blob) for `host`
/// (port 22 or `None` = plain name, else `[host]:port`). An `@revoked` line for the key
/// always fails the check; `@cert-authority` lines and hashed hosts are skipped.
pub fn known_host_matches(known_hosts: &str, host: &str, port: Option<u16>, key: &[u8]) -> bool {
    let name = match port {
        None | Some(22) => host.to_string(),
        Some(p) => format!("[{host}]:{p}"),
    };
    let mut found = false;
    for line in known_hosts.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or_default();
        let marker = first.strip_prefix('@').map(str::to_string);
        if marker.is_some() {
            first = fields.next().unwrap_or_default();
        }
        let (_ktype, blob) = (fields.next(), fields.next());
        let Some(blob) = blob.and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok()) else {
            continue;
        };
        let host_match = first.split(',').any(|p| p.eq_ignore_ascii_case(&name));
        if !host_match || blob != key {
            continue;
        }
        match marker.as_deref() {
            Some("revoked") => return false,
            Some(_) => {}
            None => found = true,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_supported_schemes_only() {
        for ok in [
            "https://h/r.git",
            "http://h:8080/r",
            "ssh://git@h:2222/r",
            "git://h/r",
            "file:///tmp/r",
            "HTTPS://h/r",
        ] {
            assert!(RepoUrl::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            RepoUrl::parse("ext::sh -c touch% /tmp/pwned"),
            Err(UrlError::OptionOrHelper)
        );
        assert_eq!(RepoUrl::parse("ext::ssh://x"), Err(UrlError::OptionOrHelper));
        assert_eq!(RepoUrl::parse("fd::17"), Err(UrlError::OptionOrHelper));
        assert_eq!(
            RepoUrl::parse("ssh://-oProxyCommand=x/r"),
            Err(UrlError::OptionOrHelper)
        );
        assert_eq!(
            RepoUrl::parse("ssh://git@-oProxyCommand=x/r"),
            Err(UrlError::OptionOrHelper)
        );
        assert_eq!(
            RepoUrl::parse("--upload-pack=touch /tmp/x"),
            Err(UrlError::OptionOrHelper)
        );
        assert_eq!(RepoUrl::parse("git@github.com:o/r.git"), Err(UrlError::Scheme));
        for confusing in [
            "http://evil?@allowed/o/r",
            "http://evil#@allowed/o/r",
            "http://evil\\@allowed/o/r",
        ] {
            assert_eq!(RepoUrl::parse(confusing), Err(UrlError::BadCharacters), "{confusing}");
        }
        assert!(
            RepoUrl::parse("https://h/o/r.git?x=1").is_ok(),
            "a query after the path is fine"
        );
        assert_eq!(RepoUrl::parse("/tmp/repo"), Err(UrlError::Scheme));
        assert_eq!(RepoUrl::parse("ftp://h/r"), Err(UrlError::Scheme));
        assert_eq!(RepoUrl::parse("https://h/r x"), Err(UrlError::BadCharacters));
        assert_eq!(RepoUrl::parse(" "), Err(UrlError::Empty));
    }

    #[test]
    fn sanitizes_user_info() {
        let u = RepoUrl::parse("https://bob:tok3n@h.example/o/r.git").unwrap();
        assert_eq!(u.sanitized(), "https://h.example/o/r.git");
        assert_eq!(u.password(), Some("tok3n"));
        assert_eq!(u.username(), Some("bob"));
        let s = RepoUrl::parse("ssh://git@h.example:2222/o/r.git").unwrap();
        assert_eq!(s.sanitized(), "ssh://git@h.example:2222/o/r.git");
        assert_eq!(s.host_port(), ("h.example".to_string(), Some(2222)));
        assert_eq!(s.password(), None);
        let v6 = RepoUrl::parse("ssh://[::1]:22/r").unwrap();
        assert_eq!(v6.host_port(), ("::1".to_string(), Some(22)));
    }

    #[test]
    fn known_hosts_matching() {
        let key = b"\x00\x00\x00\x0bssh-ed25519keybytes";
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        let kh = format!("# comment\nother.example ssh-ed25519 {b64}\nh.example,10.0.0.1 ssh-ed25519 {b64}\n[p.example]:2222 ssh-ed25519 {b64}\n");
        assert!(known_host_matches(&kh, "h.example", None, key));
        assert!(known_host_matches(&kh, "10.0.0.1", Some(22), key));
        assert!(!known_host_matches(&kh, "h.example", None, b"other"));
        assert!(!known_host_matches(&kh, "evil.example", None, key));
        assert!(known_host_matches(&kh, "p.example", Some(2222), key));
        assert!(!known_host_matches(&kh, "p.example", None, key));
        let revoked = format!("{kh}@revoked h.example ssh-ed25519 {b64}\n");
        assert!(!known_host_matches(&revoked, "h.example", None, key));
    }

    #[test]
    fn loads_files_and_lists_secrets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "ghp_abcdef123\n").unwrap();
        let url = RepoUrl::parse("https://u:pw12345@h/r").unwrap();
        let c = GitCredentials::load(dir.path(), &url).unwrap();
        assert_eq!(c.secrets(), vec!["ghp_abcdef123".to_string(), "pw12345".to_string()]);
        assert!(!format!("{c:?}").contains("ghp_"));
        let none = GitCredentials::load(&dir.path().join("missing"), &RepoUrl::parse("file:///r").unwrap()).unwrap();
        assert!(none.secrets().is_empty());
        let http = RepoUrl::parse("http://h/r").unwrap();
        assert!(c.check_transport(&http).is_err());
        assert!(none.check_transport(&http).is_ok());
    }

    #[test]
    fn plain_http_goes_only_to_the_hosts_the_pool_lists() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "tok-123456").unwrap();
        let env = crate::env::Env::from_pairs([
            (vars::GIT_CREDENTIALS_DIR, dir.path().to_str().unwrap()),
            (vars::GIT_PLAIN_HTTP_HOSTS, " forge.internal:3000 , Git.Local "),
        ]);
        let check = |u: &str| {
            let url = RepoUrl::parse(u).unwrap();
            GitCredentials::load_from_env(&env, &url).unwrap().check_transport(&url)
        };
        assert!(check("http://forge.internal:3000/o/r.git").is_ok());
        assert!(
            check("http://git.local/o/r.git").is_ok(),
            "a host without a port: any port"
        );
        assert!(check("http://git.local:8080/o/r.git").is_ok());
        assert!(check("http://forge.internal/o/r.git").is_err(), "port 80 is not 3000");
        assert!(check("http://forge.internal:3001/o/r.git").is_err());
        assert!(check("http://other:3000/o/r.git").is_err());
        assert!(check("https://other/o/r.git").is_ok());
    }
}
