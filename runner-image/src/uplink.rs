//! The trusted containers' only way out of the pod: the pool's egress gateway
//! ([`paddock_crds::egress`]).
//!
//! The runner pod's NetworkPolicy lets it reach nothing but its pool's egress gateway, which
//! serves only callers with the pool's token; only the trusted containers (`clone`, `gateway`)
//! hold it ([`paddock_crds::egress::TOKEN_ENV`]). So every connection they open goes through
//! an [`Uplink`]:
//! - libgit2 over `http(s)://`: its own proxy support, with the token as proxy credentials
//!   ([`proxy_options`]);
//! - libgit2 over `git://`, which libgit2 cannot proxy: a transport of our own, registered under
//!   the scheme [`GIT_SCHEME`], that opens the git daemon connection as a `CONNECT` tunnel
//!   ([`remote_url`] rewrites the URL);
//! - the gateway's model routes and `CONNECT`s: [`Uplink::reqwest_proxy`] and
//!   [`Uplink::connect_async`].
//!
//! `ssh://` and scp-like remotes cannot be tunnelled (libssh2 opens its own socket): with an
//! uplink they are refused ([`UplinkError::Ssh`]).
//!
//! Env: [`paddock_crds::egress::PROXY_ENV`] (`http://<ip>:<port>`) and
//! [`paddock_crds::egress::TOKEN_ENV`]. Without them (tests, clusters without the egress
//! gateway) every connection goes direct, as before.
#![allow(unsafe_code)]

use crate::config::Env;
use crate::gitcreds::RepoUrl;
use paddock_crds::egress::{proxy_authorization, PROXY_ENV, PROXY_USER, TOKEN_ENV};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Scheme under which `git://` remotes are fetched and pushed through the egress gateway.
pub const GIT_SCHEME: &str = "paddock-git";
/// Scheme under which plain `http://` remotes are fetched and pushed through the egress
/// gateway: libgit2 sends only `https://` through a proxy (`use_connect_proxy` in its
/// `httpclient.c`, 1.9) and would connect to an `http://` host directly, which the pod's
/// NetworkPolicy forbids.
pub const HTTP_SCHEME: &str = "paddock-http";
/// Default port of the git daemon protocol.
pub const GIT_PORT: u16 = 9418;
/// How long a caller waits for the egress gateway to accept connections (it may be starting
/// with the pool's first run).
pub const GATEWAY_WAIT: Duration = Duration::from_secs(60);
/// Timeout of one TCP connect, and of the tunnel's answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of [`remote_url`] and [`wait_ready`].
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    /// An `ssh://` or scp-like remote with an uplink.
    #[error(
        "{0}: ssh remotes cannot go through the pool's egress gateway (the pod may reach nothing else); use an https:// URL with a token"
    )]
    Ssh(String),
    /// The egress gateway did not accept a connection in time.
    #[error("the pool's egress gateway {addr} accepts no connection after {secs} s: {source}")]
    Unreachable {
        /// `host:port` of the gateway.
        addr: String,
        /// Seconds waited.
        secs: u64,
        /// The last connect error.
        source: io::Error,
    },
}

/// The egress gateway's address and the pool's token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uplink {
    /// `host:port`.
    addr: String,
    token: String,
}

impl Uplink {
    /// From [`PROXY_ENV`] (`http://host:port`, the scheme optional) and [`TOKEN_ENV`]; `None`
    /// when the proxy variable is unset or empty.
    pub fn from_env(env: &Env) -> Option<Self> {
        let proxy = env.get(PROXY_ENV).map(str::trim).filter(|p| !p.is_empty())?;
        let addr = proxy.strip_prefix("http://").unwrap_or(proxy).trim_end_matches('/');
        Some(Self::new(addr, env.get(TOKEN_ENV).unwrap_or_default()))
    }

    /// An uplink to `addr` (`host:port`) with `token`.
    pub fn new(addr: &str, token: &str) -> Self {
        Self {
            addr: addr.to_string(),
            token: token.trim().to_string(),
        }
    }

    /// `host:port` of the egress gateway.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The proxy URL with the credentials in its userinfo, as libgit2 takes them
    /// (`http://paddock:<token>@host:port`; the token is URL-safe base64, no escaping needed).
    pub fn proxy_url_with_credentials(&self) -> String {
        format!("http://{PROXY_USER}:{}@{}", self.token, self.addr)
    }

    /// The proxy for a reqwest client: every request (`http` and `https`) through the egress
    /// gateway, with the proxy credentials.
    ///
    /// # Errors
    /// The address is not a valid URL authority.
    pub fn reqwest_proxy(&self) -> Result<reqwest::Proxy, reqwest::Error> {
        Ok(reqwest::Proxy::all(format!("http://{}", self.addr))?.basic_auth(PROXY_USER, &self.token))
    }

    fn connect_head(&self, host: &str, port: u16, for_agent: bool) -> String {
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let class = if for_agent {
            format!(
                "{}: {}\r\n",
                paddock_crds::egress::CLASS_HEADER,
                paddock_crds::egress::CLASS_AGENT
            )
        } else {
            String::new()
        };
        format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: {}\r\n{class}\r\n",
            proxy_authorization(&self.token)
        )
    }

    /// Opens a tunnel to `host:port` through the egress gateway (blocking), retrying for up to
    /// [`GATEWAY_WAIT`] while the gateway itself refuses connections.
    ///
    /// # Errors
    /// The gateway is unreachable, or answers the `CONNECT` with another status than 200
    /// (`io::ErrorKind::PermissionDenied` for 407 and 403).
    pub fn connect(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        let deadline = Instant::now() + GATEWAY_WAIT;
        loop {
            let mut s = connect_retrying(&self.addr, deadline.saturating_duration_since(Instant::now()))?;
            s.set_read_timeout(Some(CONNECT_TIMEOUT))?;
            s.write_all(self.connect_head(host, port, false).as_bytes())?;
            let status = read_status(&mut s)?;
            s.set_read_timeout(None)?;
            match check_status(status, host, port) {
                Ok(()) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                // Not the egress gateway's answer (its Service may not route to it yet).
                Err(_) if not_the_gateways(status) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// [`Uplink::connect`] for tokio; `for_agent`: a tunnel the pod gateway opens on the agent's
    /// behalf ([`paddock_crds::egress::CLASS_HEADER`]).
    ///
    /// # Errors
    /// As [`Uplink::connect`].
    pub async fn connect_async(&self, host: &str, port: u16, for_agent: bool) -> io::Result<tokio::net::TcpStream> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let deadline = Instant::now() + GATEWAY_WAIT;
        let mut s = loop {
            match tokio::net::TcpStream::connect(self.addr.as_str()).await {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline && retryable(&e) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        };
        s.write_all(self.connect_head(host, port, for_agent).as_bytes()).await?;
        // The head, byte by byte: nothing after it may be consumed here.
        let mut head = Vec::with_capacity(128);
        let read = async {
            while !head.ends_with(b"\r\n\r\n") {
                if head.len() > 8192 {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "proxy answer too long"));
                }
                let b = s.read_u8().await?;
                head.push(b);
            }
            Ok(())
        };
        tokio::time::timeout(CONNECT_TIMEOUT, read)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer from the egress gateway"))??;
        check_status(parse_status(&head)?, host, port)?;
        let _ = s.set_nodelay(true);
        Ok(s)
    }
}

fn retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::TimedOut | io::ErrorKind::ConnectionReset
    ) || e.raw_os_error() == Some(113) // EHOSTUNREACH: no endpoint behind the Service yet
}

fn connect_retrying(addr: &str, wait: Duration) -> io::Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let deadline = Instant::now() + wait;
    loop {
        let attempt = addr
            .to_socket_addrs()
            .and_then(|mut a| {
                a.next()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
            })
            .and_then(|a| TcpStream::connect_timeout(&a, CONNECT_TIMEOUT));
        match attempt {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() < deadline && retryable(&e) => std::thread::sleep(Duration::from_millis(500)),
            Err(e) => return Err(e),
        }
    }
}

/// Waits until the egress gateway accepts a TCP connection (for libgit2's own proxy support,
/// which does not retry).
///
/// # Errors
/// [`UplinkError::Unreachable`] after [`GATEWAY_WAIT`].
pub fn wait_ready(uplink: &Uplink) -> Result<(), UplinkError> {
    connect_retrying(&uplink.addr, GATEWAY_WAIT)
        .map(drop)
        .map_err(|source| UplinkError::Unreachable {
            addr: uplink.addr.clone(),
            secs: GATEWAY_WAIT.as_secs(),
            source,
        })
}

fn read_status(s: &mut TcpStream) -> io::Result<u16> {
    let mut head = Vec::with_capacity(128);
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "proxy answer too long"));
        }
        if s.read(&mut b)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the egress gateway closed the connection",
            ));
        }
        head.push(b[0]);
    }
    parse_status(&head)
}

fn parse_status(head: &[u8]) -> io::Result<u16> {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    std::str::from_utf8(line)
        .ok()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP answer"))
}

/// An answer the egress gateway never gives to a `CONNECT` (it answers 200, 400, 407 or 502).
fn not_the_gateways(status: u16) -> bool {
    !matches!(status, 200 | 400 | 403 | 407 | 502)
}

fn check_status(status: u16, host: &str, port: u16) -> io::Result<()> {
    match status {
        200..=299 => Ok(()),
        403 | 407 => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("the egress gateway refused the tunnel to {host}:{port} ({status})"),
        )),
        _ => Err(io::Error::other(format!(
            "the egress gateway could not open {host}:{port} ({status})"
        ))),
    }
}

/// The URL libgit2 should use for `url`: with an uplink, `git://` becomes [`GIT_SCHEME`] and
/// `http://` [`HTTP_SCHEME`] (and the transports are registered), `https://` and `file://`
/// stay; without one, `url` as is.
///
/// # Errors
/// [`UplinkError::Ssh`] for an ssh remote with an uplink.
pub fn remote_url(url: &RepoUrl, uplink: Option<&Uplink>) -> Result<String, UplinkError> {
    let Some(uplink) = uplink else {
        return Ok(url.as_str().to_string());
    };
    match url.scheme() {
        "git" => {
            register_git_transport(uplink);
            Ok(format!("{GIT_SCHEME}://{}", &url.as_str()["git://".len()..]))
        }
        "http" => {
            register_git_transport(uplink);
            Ok(format!("{HTTP_SCHEME}://{}", &url.as_str()["http://".len()..]))
        }
        "https" | "file" => Ok(url.as_str().to_string()),
        _ => Err(UplinkError::Ssh(url.sanitized())),
    }
}

/// libgit2 proxy settings: through the uplink with its credentials, or (without one) libgit2's
/// automatic detection (`http.proxy`, `HTTPS_PROXY`).
pub fn proxy_options(uplink: Option<&Uplink>) -> git2::ProxyOptions<'static> {
    let mut p = git2::ProxyOptions::new();
    match uplink {
        Some(u) => {
            p.url(&u.proxy_url_with_credentials());
        }
        None => {
            p.auto();
        }
    }
    p
}

static GIT_UPLINK: OnceLock<Uplink> = OnceLock::new();

/// Registers the [`GIT_SCHEME`] transport once per process (the first uplink wins: a process
/// has one).
fn register_git_transport(uplink: &Uplink) {
    if GIT_UPLINK.set(uplink.clone()).is_err() {
        return;
    }
    // SAFETY: git2 requires that no other libgit2 call runs concurrently with a registration;
    // this runs once, in the first `remote_url` call, before the first remote operation.
    let r = unsafe {
        git2::transport::register(GIT_SCHEME, |remote| {
            git2::transport::Transport::smart(
                remote,
                false,
                GitTunnel {
                    stream: Mutex::new(None),
                },
            )
        })
    };
    if let Err(e) = r {
        eprintln!("paddock-runner: cannot register the {GIT_SCHEME} transport: {e}");
    }
    // SAFETY: as above, in the same first call.
    let r = unsafe {
        git2::transport::register(HTTP_SCHEME, |remote| {
            git2::transport::Transport::smart(remote, true, HttpTunnel)
        })
    };
    if let Err(e) = r {
        eprintln!("paddock-runner: cannot register the {HTTP_SCHEME} transport: {e}");
    }
}

static HTTP_AUTH: Mutex<Option<String>> = Mutex::new(None);

/// Sets the `Authorization` header value the [`HTTP_SCHEME`] transport sends (e.g.
/// `Basic …` from [`crate::gitcreds::GitCredentials::http_authorization`]); `None` sends none.
/// Call it before fetching or pushing an `http://` remote (one remote per process).
pub fn set_http_auth(header: Option<String>) {
    if let Ok(mut g) = HTTP_AUTH.lock() {
        *g = header;
    }
}

/// Git's smart HTTP protocol (gitprotocol-http(5)) over a `CONNECT` tunnel, for `http://`
/// remotes: `GET <path>/info/refs?service=…` for the refs, `POST <path>/git-upload-pack` (or
/// `git-receive-pack`) with what libgit2 wrote, one tunnel per request. Requests are HTTP/1.0
/// with `Content-Length`, so answers end at the connection's end (no chunked bodies).
struct HttpTunnel;

/// `(host, port, path)` of `paddock-http://host[:port]/path` (port 80 by default).
fn split_http_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix(HTTP_SCHEME)?.strip_prefix("://")?;
    let (authority, path) = rest.split_at(rest.find('/')?);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, 80),
    };
    (!host.is_empty()).then(|| (host.to_string(), port, path.trim_end_matches('/').to_string()))
}

/// One request's stream: what libgit2 writes is the body; the first read sends the request.
struct HttpRequest {
    host: String,
    port: u16,
    method: &'static str,
    path: String,
    content_type: Option<String>,
    body: Vec<u8>,
    response: Option<Box<dyn Read + Send>>,
}

impl HttpRequest {
    fn head(&self, auth: Option<&str>) -> String {
        let host = if self.port == 80 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let mut h = format!(
            "{} {} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: git/2.0 (paddock-runner)\r\nConnection: close\r\n",
            self.method, self.path
        );
        if let Some(ct) = &self.content_type {
            h.push_str(&format!(
                "Content-Type: {ct}\r\nContent-Length: {}\r\n",
                self.body.len()
            ));
        }
        if let Some(a) = auth {
            h.push_str(&format!("Authorization: {a}\r\n"));
        }
        h.push_str("\r\n");
        h
    }

    fn send(&mut self) -> io::Result<()> {
        let uplink = GIT_UPLINK.get().ok_or_else(|| io::Error::other("no uplink"))?;
        let mut s = uplink.connect(&self.host, self.port)?;
        s.set_read_timeout(Some(Duration::from_secs(300)))?;
        let auth = HTTP_AUTH.lock().ok().and_then(|g| g.clone());
        s.write_all(self.head(auth.as_deref()).as_bytes())?;
        s.write_all(&self.body)?;
        let mut r = io::BufReader::new(s);
        // The head is read through a 64 KiB window: a server cannot make it grow without end.
        let (status, headers) = read_head(&mut (&mut r).take(MAX_HEAD_BYTES))?;
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"))
        {
            return Err(io::Error::other("chunked answer to an HTTP/1.0 request"));
        }
        let length = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse::<u64>().ok());
        match status {
            200 => {}
            401 | 403 => {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{} {} answered {status}: the credentials were refused",
                        self.method, self.path
                    ),
                ))
            }
            _ => {
                return Err(io::Error::other(format!(
                    "{} {} answered {status}",
                    self.method, self.path
                )))
            }
        }
        // The body ends at Content-Length when the server sends one (a server keeping the
        // connection open is not waited for), else at the connection's end.
        self.response = Some(match length {
            Some(n) => Box::new(r.take(n)),
            None => Box::new(r),
        });
        Ok(())
    }
}

/// Most bytes of an answer's status line and headers.
const MAX_HEAD_BYTES: u64 = 64 * 1024;

/// Reads an HTTP/1.x status line and headers (names lowercased); the caller bounds the input
/// (an input that ends before the blank line is an error).
fn read_head(r: &mut impl io::BufRead) -> io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    let mut total = 0;
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP answer: {:?}", line.trim_end())))?;
    let mut headers = vec![];
    loop {
        line.clear();
        let n = r.read_line(&mut line)?;
        total += n;
        if n == 0 {
            return Err(io::Error::other("the answer's head ended early (or is over 64 KiB)"));
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        if total > 64 * 1024 {
            return Err(io::Error::other("answer headers over 64 KiB"));
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Ok((status, headers))
}

impl Read for HttpRequest {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.response.is_none() {
            self.send()?;
        }
        match self.response.as_mut() {
            Some(r) => r.read(buf),
            None => Ok(0),
        }
    }
}

impl Write for HttpRequest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.response.is_some() {
            return Err(io::Error::other("write after the request was sent"));
        }
        self.body.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl git2::transport::SmartSubtransport for HttpTunnel {
    fn action(
        &self,
        url: &str,
        action: git2::transport::Service,
    ) -> Result<Box<dyn git2::transport::SmartSubtransportStream>, git2::Error> {
        use git2::transport::Service;
        let (host, port, base) = split_http_url(url).ok_or_else(|| git_err(format!("bad URL {url}")))?;
        let (method, path, content_type) = match action {
            Service::UploadPackLs => ("GET", format!("{base}/info/refs?service=git-upload-pack"), None),
            Service::ReceivePackLs => ("GET", format!("{base}/info/refs?service=git-receive-pack"), None),
            Service::UploadPack => (
                "POST",
                format!("{base}/git-upload-pack"),
                Some("application/x-git-upload-pack-request".to_string()),
            ),
            Service::ReceivePack => (
                "POST",
                format!("{base}/git-receive-pack"),
                Some("application/x-git-receive-pack-request".to_string()),
            ),
        };
        Ok(Box::new(HttpRequest {
            host,
            port,
            method,
            path,
            content_type,
            body: vec![],
            response: None,
        }))
    }

    fn close(&self) -> Result<(), git2::Error> {
        Ok(())
    }
}

/// libgit2's `git://` protocol over a `CONNECT` tunnel: the daemon's request line
/// (`git-upload-pack /path\0host=host\0`, gitprotocol-pack(5)) then the pack protocol on the same
/// stream (ls, then the pack: one connection per operation).
struct GitTunnel {
    stream: Mutex<Option<TcpStream>>,
}

fn git_err(e: impl std::fmt::Display) -> git2::Error {
    git2::Error::from_str(&e.to_string())
}

/// `(host, port, path)` of `paddock-git://host[:port]/path`.
fn split_git_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix(GIT_SCHEME)?.strip_prefix("://")?;
    let (authority, path) = rest.split_at(rest.find('/')?);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => match p.parse() {
            Ok(p) => (h, p),
            Err(_) => (authority, GIT_PORT),
        },
        _ => (authority, GIT_PORT),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_string(), port, path.to_string()))
}

impl git2::transport::SmartSubtransport for GitTunnel {
    fn action(
        &self,
        url: &str,
        action: git2::transport::Service,
    ) -> Result<Box<dyn git2::transport::SmartSubtransportStream>, git2::Error> {
        use git2::transport::Service;
        let mut guard = self.stream.lock().map_err(git_err)?;
        let cmd = match action {
            Service::UploadPack | Service::ReceivePack => {
                let s = guard
                    .as_ref()
                    .ok_or_else(|| git_err("no connection for the pack"))?
                    .try_clone()
                    .map_err(git_err)?;
                return Ok(Box::new(s));
            }
            Service::UploadPackLs => "git-upload-pack",
            Service::ReceivePackLs => "git-receive-pack",
        };
        let uplink = GIT_UPLINK.get().ok_or_else(|| git_err("no uplink"))?;
        let (host, port, path) = split_git_url(url).ok_or_else(|| git_err(format!("bad URL {url}")))?;
        let mut s = uplink.connect(&host, port).map_err(git_err)?;
        let host_field = if port == GIT_PORT {
            host.clone()
        } else {
            format!("{host}:{port}")
        };
        let body = format!("{cmd} {path}\0host={host_field}\0");
        s.write_all(format!("{:04x}{body}", body.len() + 4).as_bytes())
            .map_err(git_err)?;
        *guard = Some(s.try_clone().map_err(git_err)?);
        Ok(Box::new(s))
    }

    fn close(&self) -> Result<(), git2::Error> {
        if let Ok(mut g) = self.stream.lock() {
            *g = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_urls_split_into_host_port_and_path() {
        assert_eq!(
            split_git_url("paddock-git://10.244.0.1/demo.git"),
            Some(("10.244.0.1".into(), 9418, "/demo.git".into()))
        );
        assert_eq!(
            split_git_url("paddock-git://git.example:9419/a/b.git"),
            Some(("git.example".into(), 9419, "/a/b.git".into()))
        );
        assert_eq!(
            split_git_url("paddock-git://[fd00::1]:9419/r"),
            Some(("fd00::1".into(), 9419, "/r".into()))
        );
        assert_eq!(split_git_url("git://h/r"), None);
    }

    #[test]
    fn the_connect_request_carries_the_pools_token() {
        let u = Uplink::new("10.96.0.9:3128", "tok");
        let head = u.connect_head("api.example", 443, false);
        assert!(u
            .connect_head("api.example", 443, true)
            .contains("paddock-egress-class: agent\r\n"));
        assert!(head.starts_with("CONNECT api.example:443 HTTP/1.1\r\n"));
        assert!(head.contains("Proxy-Authorization: Basic cGFkZG9jazp0b2s=\r\n"));
        assert_eq!(u.proxy_url_with_credentials(), "http://paddock:tok@10.96.0.9:3128");
        assert_eq!(
            parse_status(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").unwrap(),
            407
        );
    }

    #[test]
    fn http_urls_split_and_requests_are_http_1_0_with_the_credentials() {
        assert_eq!(
            split_http_url("paddock-http://10.244.0.1:13000/o/r.git"),
            Some(("10.244.0.1".into(), 13000, "/o/r.git".into()))
        );
        assert_eq!(
            split_http_url("paddock-http://u@forge/o/r/"),
            Some(("forge".into(), 80, "/o/r".into()))
        );
        assert_eq!(split_http_url("paddock-http://forge:x/o/r"), None);
        assert_eq!(split_http_url("http://forge/o/r"), None);
        let req = HttpRequest {
            host: "forge".into(),
            port: 3000,
            method: "POST",
            path: "/o/r.git/git-receive-pack".into(),
            content_type: Some("application/x-git-receive-pack-request".into()),
            body: b"0000".to_vec(),
            response: None,
        };
        assert_eq!(
            req.head(Some("Basic eDp5")),
            "POST /o/r.git/git-receive-pack HTTP/1.0\r\nHost: forge:3000\r\nUser-Agent: git/2.0 (paddock-runner)\r\nConnection: close\r\nContent-Type: application/x-git-receive-pack-request\r\nContent-Length: 4\r\nAuthorization: Basic eDp5\r\n\r\n"
        );
        let mut r =
            io::Cursor::new(b"HTTP/1.1 200 OK\r\nContent-Type: x\r\nTransfer-Encoding: identity\r\n\r\nbody".to_vec());
        let (status, headers) = read_head(&mut r).unwrap();
        assert_eq!(status, 200);
        assert_eq!(headers[0], ("content-type".to_string(), "x".to_string()));
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "body");
        assert!(read_head(&mut io::Cursor::new(b"garbage\r\n\r\n".to_vec())).is_err());
        // A head that never ends (or is cut by the caller's window) is an error, not a hang.
        let endless = format!("HTTP/1.1 200 OK\r\n{}", "X-Pad: aaaaaaaaaaaaaaaa\r\n".repeat(10_000));
        let mut window = io::Cursor::new(endless.into_bytes()).take(MAX_HEAD_BYTES);
        assert!(read_head(&mut io::BufReader::new(&mut window)).is_err());
    }

    #[test]
    fn ssh_remotes_are_refused_with_an_uplink() {
        let u = Uplink::new("10.96.0.9:3128", "tok");
        let ssh = RepoUrl::parse("ssh://git@example.com/r.git").unwrap();
        assert!(matches!(remote_url(&ssh, Some(&u)), Err(UplinkError::Ssh(_))));
        assert_eq!(remote_url(&ssh, None).unwrap(), "ssh://git@example.com/r.git");
        let https = RepoUrl::parse("https://example.com/r.git").unwrap();
        assert_eq!(remote_url(&https, Some(&u)).unwrap(), "https://example.com/r.git");
        let http = RepoUrl::parse("http://example.com:3000/r.git").unwrap();
        assert_eq!(
            remote_url(&http, Some(&u)).unwrap(),
            "paddock-http://example.com:3000/r.git"
        );
        assert_eq!(remote_url(&http, None).unwrap(), "http://example.com:3000/r.git");
    }
}
