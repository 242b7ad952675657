//! `paddock-runner egress` — the pool's egress gateway ([`paddock_crds::egress`]): a Deployment
//! `<pool>-egress` outside the runner pods, the only destination their NetworkPolicy allows.
//!
//! An HTTP proxy for the runner pods' trusted containers: `CONNECT host:port` tunnels and
//! absolute-form `http://` requests, each only with the pool's token as proxy credentials
//! (`Proxy-Authorization: Basic base64("paddock:<token>")`); anything else gets
//! `407 Proxy Authentication Required` (RFC 9110 §15.5.8) and is counted. It applies no
//! allowlist of its own: the run's allowlist, keys and budgets are the pod gateway's, which is
//! the only holder of the token besides the `clone` step.
//!
//! Every destination is resolved here and refused when an address is a cloud metadata service
//! ([`forbidden_for_everyone`]: link-local, AWS's IPv6 and Alibaba's addresses), whoever asks
//! (a run's own model base URL or repository URL included). What the pod gateway sends on the
//! agent's behalf (header [`paddock_crds::egress::CLASS_HEADER`]) is also refused loopback,
//! unspecified and multicast addresses ([`forbidden_for_agents`]), whatever the run's
//! allowlist says.
//!
//! Env: [`paddock_crds::egress::TOKEN_ENV`] (required), `PADDOCK_EGRESS_LISTEN` (default
//! `0.0.0.0:3128`). Output: one JSON line per refused caller (`{"type":"egress_unauthorized",
//! "peer":…}`, the first 100) and a summary line on SIGTERM. Exit: 0 on SIGTERM/SIGINT, 1 when
//! the configuration is invalid or the port cannot be bound.

use paddock_crds::runner::vars;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use paddock_crds::egress::{proxy_authorization, PORT, TOKEN_ENV};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

use crate::config::Env;

type Body = BoxBody<Bytes, std::io::Error>;

/// Connections served at once (tunnels included); others wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 1024;
/// Refusals logged one by one; later ones are only counted.
pub const MAX_LOGGED_REFUSALS: u64 = 100;

/// Errors that stop the egress gateway from starting.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// No token configured.
    #[error("{TOKEN_ENV} is not set: the egress gateway serves only callers with the pool's token")]
    NoToken,
    /// `PADDOCK_EGRESS_LISTEN` is not `ip:port`.
    #[error("PADDOCK_EGRESS_LISTEN={0} is not an ip:port")]
    Listen(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// The port cannot be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// The running egress gateway.
pub struct EgressGateway {
    expected: HeaderValue,
    client: reqwest::Client,
    tunnels: AtomicU64,
    requests: AtomicU64,
    refused: AtomicU64,
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).map_err(|e: Infallible| match e {}).boxed());
    *r.status_mut() = status;
    r
}

/// Equal in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl EgressGateway {
    /// A gateway that serves callers presenting `token`.
    ///
    /// # Errors
    /// [`EgressError::NoToken`] for an empty token; [`EgressError::Client`].
    pub fn new(token: &str) -> Result<Arc<Self>, EgressError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(EgressError::NoToken);
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| EgressError::Client(e.to_string()))?;
        let expected =
            HeaderValue::from_str(&proxy_authorization(token)).map_err(|e| EgressError::Client(e.to_string()))?;
        Ok(Arc::new(Self {
            expected,
            client,
            tunnels: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }))
    }

    /// `(tunnels, plain requests, refused callers)` so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.tunnels.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }

    /// Accepts connections on `listener` until the task is dropped.
    ///
    /// # Errors
    /// Accepting fails.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        // Bounded like the pod gateway: every runner pod of the pool can reach this port, and a
        // caller without the token must not be able to exhaust it with slow or huge heads.
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return Ok(());
            };
            let (stream, peer) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let me = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let svc = hyper::service::service_fn(move |req| {
                    let me = me.clone();
                    async move { Ok::<_, Infallible>(me.handle(req, peer).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(crate::gateway::proxy::HEAD_TIMEOUT)
                    .max_buf_size(crate::gateway::proxy::MAX_HEAD_BYTES)
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        req.headers()
            .get(hyper::header::PROXY_AUTHORIZATION)
            .is_some_and(|v| same(v.as_bytes(), self.expected.as_bytes()))
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        if !self.authorized(&req) {
            let n = self.refused.fetch_add(1, Ordering::Relaxed);
            if n < MAX_LOGGED_REFUSALS {
                println!(
                    "{}",
                    json!({"type": "egress_unauthorized", "peer": peer.to_string(), "method": req.method().as_str()})
                );
            }
            let mut r = full(
                StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                "paddock egress gateway: only the pod's trusted containers may use this proxy\n",
            );
            r.headers_mut().insert(
                hyper::header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"paddock-egress\""),
            );
            return r;
        }
        let for_agent = req
            .headers()
            .get(paddock_crds::egress::CLASS_HEADER)
            .is_some_and(|v| v.as_bytes() == paddock_crds::egress::CLASS_AGENT.as_bytes());
        if req.method() == Method::CONNECT {
            return self.tunnel(req, for_agent).await;
        }
        if req.uri().scheme_str() == Some("http") {
            let host = req
                .uri()
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = req.uri().port_u16().unwrap_or(80);
            if let Err(r) = self.vet(&host, port, for_agent).await {
                return r;
            }
            return self.forward(req).await;
        }
        full(
            StatusCode::BAD_REQUEST,
            "paddock egress gateway: send CONNECT host:port or an absolute http:// URL\n",
        )
    }

    /// The addresses of `host:port`, or the refusal when one of them is never the caller's to
    /// reach ([`forbidden_for_agents`] on the agent's behalf, else [`forbidden_for_everyone`]).
    async fn vet(&self, host: &str, port: u16, for_agent: bool) -> Result<Vec<SocketAddr>, Response<Body>> {
        let forbidden = if for_agent {
            forbidden_for_agents
        } else {
            forbidden_for_everyone
        };
        let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host, port)).await {
            Ok(a) => a.collect(),
            Err(e) => {
                return Err(full(
                    StatusCode::BAD_GATEWAY,
                    format!("paddock egress gateway: cannot resolve {host}: {e}\n"),
                ))
            }
        };
        if let Some(bad) = addrs.iter().find(|a| forbidden(a.ip())) {
            let n = self.refused.fetch_add(1, Ordering::Relaxed);
            if n < MAX_LOGGED_REFUSALS {
                println!(
                    "{}",
                    json!({"type": "egress_forbidden", "host": host, "port": port, "address": bad.ip().to_string()})
                );
            }
            return Err(full(
                StatusCode::FORBIDDEN,
                format!(
                    "paddock egress gateway: {host} is {} ({}): never reachable through the egress gateway\n",
                    bad.ip(),
                    if for_agent {
                        "loopback, link-local such as the metadata address, unspecified or multicast, for the agent"
                    } else {
                        "a cloud metadata address"
                    }
                ),
            ));
        }
        Ok(addrs)
    }

    async fn tunnel(self: Arc<Self>, req: Request<Incoming>, for_agent: bool) -> Response<Body> {
        let Some(auth) = req.uri().authority().cloned() else {
            return full(StatusCode::BAD_REQUEST, "CONNECT needs host:port\n");
        };
        let host = auth.host().trim_start_matches('[').trim_end_matches(']').to_string();
        let port = auth.port_u16().unwrap_or(443);
        // Tunnels go to the addresses vetted here (not resolved again).
        let vetted = match self.vet(&host, port, for_agent).await {
            Ok(a) => a,
            Err(r) => return r,
        };
        self.tunnels.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let Ok(upgraded) = hyper::upgrade::on(req).await else {
                return;
            };
            let upstream = TcpStream::connect(&vetted[..]).await;
            crate::gateway::proxy::splice(upgraded, upstream).await;
        });
        Response::new(Empty::new().map_err(|e: Infallible| match e {}).boxed())
    }

    async fn forward(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let url = req.uri().to_string();
        let (parts, body) = req.into_parts();
        let mut headers = parts.headers;
        crate::gateway::proxy::strip(&mut headers);
        headers.remove(paddock_crds::egress::CLASS_HEADER);
        let stream = body
            .into_data_stream()
            .map(|c| c.map_err(|e| std::io::Error::other(e.to_string())));
        match self
            .client
            .request(parts.method, &url)
            .headers(headers)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
        {
            Ok(resp) => crate::gateway::proxy::passthrough(resp),
            Err(e) => full(StatusCode::BAD_GATEWAY, format!("paddock egress gateway: {e}\n")),
        }
    }
}

/// Whether `ip` is a cloud metadata service, never a destination of anyone's traffic through
/// the egress gateway (the agent's, and the trusted containers' too: a run's own model base URL
/// or repository URL must not reach it): link-local (`169.254.0.0/16`, which holds the usual
/// metadata address, and `fe80::/10`), AWS's IPv6 `fd00:ec2::254`, Google Cloud's IPv6
/// `fd20:ce::254`, Alibaba Cloud's `100.100.100.200`, Azure's WireServer `168.63.129.16`;
/// IPv4-mapped and NAT64 (`64:ff9b::/96`, RFC 6052, and the local-use `64:ff9b:1::/48`, RFC
/// 8215, its last 32 bits) IPv6 addresses are judged as the IPv4 address they carry.
pub fn forbidden_for_everyone(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            v4.is_link_local()
                || v4 == std::net::Ipv4Addr::new(100, 100, 100, 200)
                || v4 == std::net::Ipv4Addr::new(168, 63, 129, 16)
        }
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => forbidden_for_everyone(IpAddr::V4(v4)),
            None => {
                (v6.segments()[0] & 0xffc0) == 0xfe80
                    || v6 == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                    || v6 == std::net::Ipv6Addr::new(0xfd20, 0xce, 0, 0, 0, 0, 0, 0x254)
            }
        },
    }
}

/// The IPv4 address an IPv4-mapped (`::ffff:a.b.c.d`) or NAT64 (`64:ff9b::a.b.c.d`) IPv6
/// address carries. Pure.
fn embedded_v4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let s = v6.segments();
    v6.to_ipv4_mapped().or_else(|| {
        (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || s[..3] == [0x64, 0xff9b, 1])
            .then(|| std::net::Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8))
    })
}

/// Whether `ip` is never a destination of the agent's traffic: [`forbidden_for_everyone`], and
/// loopback (the egress gateway's own pod), unspecified, multicast or broadcast.
pub fn forbidden_for_agents(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    if forbidden_for_everyone(ip) {
        return true;
    }
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => forbidden_for_agents(IpAddr::V4(v4)),
            None => v6.is_loopback() || v6.is_unspecified() || v6.is_multicast(),
        },
    }
}

/// Entry point of `paddock-runner egress`: serves until SIGTERM/SIGINT; returns the exit code.
pub fn command() -> i32 {
    let env = Env::from_process();
    let run = async {
        let listen = env
            .get(vars::EGRESS_LISTEN)
            .map(str::to_string)
            .unwrap_or_else(|| format!("0.0.0.0:{PORT}"));
        let addr: SocketAddr = listen.parse().map_err(|_| EgressError::Listen(listen.clone()))?;
        let gw = EgressGateway::new(env.get(TOKEN_ENV).unwrap_or_default())?;
        let listener = TcpListener::bind(addr).await.map_err(|e| EgressError::Bind(addr, e))?;
        eprintln!("paddock-runner egress: serving on {addr}");
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(|e| EgressError::Bind(addr, e))?;
        let mut int = signal(SignalKind::interrupt()).map_err(|e| EgressError::Bind(addr, e))?;
        tokio::select! {
            r = gw.clone().serve(listener) => { if let Err(e) = r { eprintln!("paddock-runner egress: {e}"); } }
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        let (tunnels, requests, refused) = gw.counts();
        println!(
            "{}",
            json!({"type": "egress_summary", "tunnels": tunnels, "requests": requests, "refused": refused})
        );
        Ok::<(), EgressError>(())
    };
    let Some(rt) = crate::gateway::runtime("egress") else {
        return 1;
    };
    match rt.block_on(run) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("paddock-runner egress: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_address_and_loopback_are_never_the_agents() {
        for ip in [
            "169.254.169.254",
            "127.0.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "::ffff:169.254.169.254",
            "224.0.0.1",
            "fd00:ec2::254",
            "fd20:ce::254",
            "168.63.129.16",
            "64:ff9b:1::a9fe:a9fe",
            "100.100.100.200",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
        ] {
            assert!(forbidden_for_agents(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "10.244.0.1",
            "203.0.113.80",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "100.100.100.1",
            "64:ff9b::cb00:7150",
            "fd00:ec2::253",
        ] {
            assert!(!forbidden_for_agents(ip.parse().unwrap()), "{ip}");
        }
    }
}
