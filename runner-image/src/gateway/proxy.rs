//! The gateway's HTTP front on the pod's loopback (`PADDOCK_GATEWAY_ADDR`, default
//! `127.0.0.1:15001`; the pod's containers share the network namespace, nothing outside the pod
//! reaches it). Two jobs:
//!
//! 1. **Model API routes** `/<route>/<path>` (`anthropic`, `openai`, `gemini`, `openrouter`): the
//!    agent's CLI is configured with `http://127.0.0.1:15001/<route>` as its base URL and a
//!    placeholder key. The gateway forwards to `PADDOCK_UPSTREAM_<ROUTE>` + `<path>`, replacing
//!    the CLI's auth header with the real key it alone holds (`ANTHROPIC_API_KEY` →
//!    `x-api-key`, `ANTHROPIC_AUTH_TOKEN`/`OPENAI_API_KEY`/`CODEX_API_KEY`/`OPENROUTER_API_KEY`
//!    → `Authorization: Bearer`, `GEMINI_API_KEY`/`GOOGLE_API_KEY` → `x-goog-api-key`), streams
//!    the response back chunk by chunk as it arrives, and meters it ([`super::meter`]): tokens
//!    and USD go to stdout as `gateway_usage` lines, the exchange as a `transcript` line
//!    (redacted, bodies cut at [`TRANSCRIPT_BODY_BYTES`], all lines at most
//!    [`TRANSCRIPT_MAX_BYTES`]). Plain HTTP inside the pod instead of intercepting TLS: every
//!    CLI Paddock drives takes a base URL, so no CA has to be planted in the agent's trust store.
//! 2. **Egress proxy** for everything else the agent reaches (`HTTP_PROXY`/`HTTPS_PROXY` point
//!    here when the run has an egress allowlist, `PADDOCK_EGRESS_ALLOW`, a JSON list of
//!    `{"host", "ports"}`): `CONNECT host:port` tunnels and absolute-form `http://` requests to
//!    listed hosts only; a refusal is answered 403 and recorded as an `egress_denied` line on
//!    stdout and in `<workspace>/.paddock/egress-denied.jsonl`, which the agent container's
//!    runner turns into an event.
//!
//! **Budgets.** `PADDOCK_MAX_COST_USD`, `PADDOCK_MAX_OUTPUT_TOKENS`: after the response that
//! reaches a limit, further model calls are refused (403 in the vendor's error shape) and
//! `<workspace>/.paddock/budget-exceeded` is written; the runner stops the agent, commits what
//! exists and reports reason `BudgetExceeded`.
//!
//! The agent can read and write the workspace, so what it could forge there (a denial record, a
//! budget marker) only hurts its own run; usage and the transcript leave through the gateway's
//! own stdout, which the agent cannot write.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

use super::meter::{ModelApi, PriceTable, Tokens, UsageParser};
use crate::config::Env;

/// Default listen address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:15001";
/// Largest request body forwarded to a model API (bytes).
pub const MAX_REQUEST_BYTES: usize = 32 << 20;
/// Each request or response body in the transcript is cut at this many bytes.
pub const TRANSCRIPT_BODY_BYTES: usize = 64 << 10;
/// The transcript lines of one run add up to at most this many bytes; later exchanges are
/// counted but not recorded (a `transcript_truncated` line says so once).
pub const TRANSCRIPT_MAX_BYTES: usize = 4 << 20;

type Body = BoxBody<Bytes, std::io::Error>;

/// How the gateway authenticates to one model API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyHeader {
    /// `x-api-key: <key>` (Anthropic).
    XApiKey,
    /// `Authorization: Bearer <key>` (OpenAI, OpenRouter, Anthropic auth tokens).
    Bearer,
    /// `x-goog-api-key: <key>` (Gemini).
    Goog,
}

/// One model API route.
#[derive(Clone, Debug)]
pub struct Route {
    /// Path prefix without slashes (`anthropic`).
    pub name: String,
    /// Upstream base URL, no trailing slash (`https://api.anthropic.com`).
    pub upstream: String,
    /// The real key and how to send it; `None`: the agent's own headers pass through.
    pub key: Option<(KeyHeader, String)>,
}

/// One allowed egress destination.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Allow {
    /// Host name, or `*.suffix` for its subdomains.
    pub host: String,
    /// Ports.
    pub ports: Vec<u16>,
}

/// Whether `host:port` is allowed by `rules`. Host names compare case-insensitively.
pub fn allowed(rules: &[Allow], host: &str, port: u16) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    rules.iter().any(|r| {
        let host_ok = match r.host.strip_prefix('*') {
            Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
            None => host == r.host,
        };
        host_ok && r.ports.contains(&port)
    })
}

/// Errors in the gateway's proxy settings.
#[derive(Debug, thiserror::Error)]
pub enum ProxyConfigError {
    /// A variable does not parse.
    #[error("{name} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

/// The proxy's settings, from the gateway container's environment.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Listen address.
    pub addr: SocketAddr,
    /// Model API routes.
    pub routes: Vec<Route>,
    /// Egress allowlist; `None`: the proxy allows any host (the pod has no restriction).
    pub egress: Option<Vec<Allow>>,
    /// `budget.maxCostUSD`.
    pub max_cost_usd: Option<f64>,
    /// `budget.maxOutputTokens`.
    pub max_output_tokens: Option<u64>,
    /// Prices.
    pub prices: PriceTable,
    /// Values to redact from the transcript (longest first).
    pub secrets: Vec<String>,
    /// The workspace's control directory (budget marker, egress denials).
    pub control_dir: PathBuf,
    /// The pool's egress gateway: every upstream connection goes through it
    /// ([`crate::uplink`]); `None`: direct.
    pub uplink: Option<crate::uplink::Uplink>,
}

fn invalid(name: &'static str, reason: impl ToString) -> ProxyConfigError {
    ProxyConfigError::Invalid {
        name,
        reason: reason.to_string(),
    }
}

impl ProxyConfig {
    /// Reads the settings (see the module docs for the variables).
    ///
    /// # Errors
    /// [`ProxyConfigError`] naming the variable that does not parse.
    pub fn from_env(env: &Env) -> Result<Self, ProxyConfigError> {
        let addr = env
            .get("PADDOCK_GATEWAY_ADDR")
            .unwrap_or(DEFAULT_ADDR)
            .parse()
            .map_err(|e| invalid("PADDOCK_GATEWAY_ADDR", e))?;
        let table: [(&str, &[(&str, KeyHeader)]); 4] = [
            (
                "anthropic",
                &[
                    ("ANTHROPIC_API_KEY", KeyHeader::XApiKey),
                    ("ANTHROPIC_AUTH_TOKEN", KeyHeader::Bearer),
                ],
            ),
            (
                "openai",
                &[
                    ("OPENAI_API_KEY", KeyHeader::Bearer),
                    ("CODEX_API_KEY", KeyHeader::Bearer),
                ],
            ),
            (
                "gemini",
                &[("GEMINI_API_KEY", KeyHeader::Goog), ("GOOGLE_API_KEY", KeyHeader::Goog)],
            ),
            ("openrouter", &[("OPENROUTER_API_KEY", KeyHeader::Bearer)]),
        ];
        let mut routes = vec![];
        for (name, keys) in table {
            let var = format!("PADDOCK_UPSTREAM_{}", name.to_uppercase());
            let Some(upstream) = env.get(&var) else { continue };
            if !(upstream.starts_with("http://") || upstream.starts_with("https://")) {
                return Err(invalid("PADDOCK_UPSTREAM_*", format!("{var} must be an http(s) URL")));
            }
            let key = keys
                .iter()
                .find_map(|(k, h)| env.get(k).map(|v| (h.clone(), v.to_string())));
            routes.push(Route {
                name: name.into(),
                upstream: upstream.trim_end_matches('/').to_string(),
                key,
            });
        }
        let egress = match env.get("PADDOCK_EGRESS_ALLOW") {
            None => None,
            Some(j) => Some(serde_json::from_str(j).map_err(|e| invalid("PADDOCK_EGRESS_ALLOW", e))?),
        };
        let num = |name: &'static str| -> Result<Option<f64>, ProxyConfigError> {
            env.get(name)
                .map(|v| v.parse::<f64>().map_err(|e| invalid(name, e)))
                .transpose()
        };
        let max_cost_usd = num("PADDOCK_MAX_COST_USD")?;
        let max_output_tokens = env
            .get("PADDOCK_MAX_OUTPUT_TOKENS")
            .map(|v| v.parse::<u64>().map_err(|e| invalid("PADDOCK_MAX_OUTPUT_TOKENS", e)))
            .transpose()?;
        let prices = match env.get("PADDOCK_PRICES") {
            None => PriceTable::builtin(),
            Some(j) => PriceTable::with_overrides(j).map_err(|e| invalid("PADDOCK_PRICES", e))?,
        };
        Ok(Self {
            addr,
            routes,
            egress,
            max_cost_usd,
            max_output_tokens,
            prices,
            secrets: env.secrets(),
            control_dir: crate::workspace::Workspace::from_env(env).control(),
            uplink: crate::uplink::Uplink::from_env(env),
        })
    }
}

/// Cumulative usage of the run's model calls.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    /// Tokens.
    pub tokens: Tokens,
    /// USD of the priced calls.
    pub cost_usd: f64,
    /// Model calls metered.
    pub requests: u64,
    /// Models without a price (their calls count tokens, not USD).
    pub unpriced: BTreeSet<String>,
    /// Why further calls are refused, once a budget is reached.
    pub exceeded: Option<String>,
}

impl Totals {
    /// Adds one response and checks the budgets; returns `true` when this one reached a limit.
    pub fn add(
        &mut self,
        model: &str,
        t: Tokens,
        cost: Option<f64>,
        max_cost: Option<f64>,
        max_out: Option<u64>,
    ) -> bool {
        self.tokens.input += t.input;
        self.tokens.output += t.output;
        self.tokens.cache_read += t.cache_read;
        self.tokens.cache_write += t.cache_write;
        self.requests += 1;
        match cost {
            Some(c) => self.cost_usd += c,
            None => {
                self.unpriced.insert(model.to_string());
            }
        }
        if self.exceeded.is_some() {
            return false;
        }
        if let Some(m) = max_cost.filter(|m| self.cost_usd >= *m) {
            self.exceeded = Some(format!(
                "budget.maxCostUSD {m} reached: the model calls cost {:.6} USD",
                self.cost_usd
            ));
        } else if let Some(m) = max_out.filter(|m| self.tokens.output >= *m) {
            self.exceeded = Some(format!(
                "budget.maxOutputTokens {m} reached: {} output tokens",
                self.tokens.output
            ));
        }
        self.exceeded.is_some()
    }

    /// The `gateway_usage` line.
    pub fn line(&self) -> Value {
        json!({
            "type": "gateway_usage",
            "input_tokens": self.tokens.input,
            "output_tokens": self.tokens.output,
            "cache_read_tokens": self.tokens.cache_read,
            "cache_write_tokens": self.tokens.cache_write,
            "cost_usd": self.cost_usd,
            "requests": self.requests,
            "unpriced_models": self.unpriced,
            "budget_exceeded": self.exceeded,
        })
    }
}

/// The running gateway proxy.
pub struct Proxy {
    cfg: ProxyConfig,
    client: reqwest::Client,
    totals: Mutex<Totals>,
    transcript_bytes: AtomicUsize,
    seq: AtomicU64,
    /// Egress refusals so far (all are refused; the first [`super::signals::MAX_DENIALS`] are
    /// recorded).
    denials: AtomicUsize,
}

fn out(line: &Value) {
    // One write per line; the container runtime timestamps and keeps it.
    println!("{line}");
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).map_err(|e: Infallible| match e {}).boxed());
    *r.status_mut() = status;
    r
}

fn vendor_error(route: &str, message: &str) -> Response<Body> {
    let body = match route {
        "anthropic" => json!({"type": "error", "error": {"type": "permission_error", "message": message}}),
        "gemini" => json!({"error": {"code": 403, "status": "PERMISSION_DENIED", "message": message}}),
        _ => json!({"error": {"type": "insufficient_quota", "code": "budget_exceeded", "message": message}}),
    };
    let mut r = full(StatusCode::FORBIDDEN, body.to_string());
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    // Upstream must answer uncompressed so the usage can be read from the stream.
    "accept-encoding",
];

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[{} bytes cut]", &s[..end], s.len() - end)
}

impl Proxy {
    /// Builds the proxy (installs rustls's ring provider for the HTTPS client once).
    ///
    /// # Errors
    /// The HTTPS client cannot be built (no usable TLS roots).
    pub fn new(cfg: ProxyConfig) -> Result<Arc<Self>, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Only the pool's egress gateway, never the process's proxy variables.
        let builder = reqwest::Client::builder().no_proxy();
        let builder = match &cfg.uplink {
            Some(u) => builder.proxy(
                u.reqwest_proxy()
                    .map_err(|e| format!("bad egress gateway address: {e}"))?,
            ),
            None => builder,
        };
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the HTTPS client: {e}"))?;
        Ok(Arc::new(Self {
            cfg,
            client,
            totals: Mutex::new(Totals::default()),
            transcript_bytes: AtomicUsize::new(0),
            seq: AtomicU64::new(0),
            denials: AtomicUsize::new(0),
        }))
    }

    /// Usage so far.
    pub fn totals(&self) -> Totals {
        self.totals.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Accepts connections until the task is dropped.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn serve(self: Arc<Self>) -> std::io::Result<()> {
        let listener = TcpListener::bind(self.cfg.addr).await?;
        eprintln!(
            "paddock-runner gateway: model routes {:?}, egress {} on {}",
            self.cfg.routes.iter().map(|r| &r.name).collect::<Vec<_>>(),
            if self.cfg.egress.is_some() {
                "restricted"
            } else {
                "open"
            },
            self.cfg.addr
        );
        loop {
            let (stream, _) = listener.accept().await?;
            // Without it, a response written in two parts (headers, then body) waits out the
            // client's delayed ACK: ~40 ms per non-streamed call (found by bench-gateway).
            let _ = stream.set_nodelay(true);
            let me = self.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let me = me.clone();
                    async move { Ok::<_, Infallible>(me.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    }

    fn deny(&self, host: &str, port: u16) -> Response<Body> {
        // Recorded up to the number the runner reports; a looping agent must not grow the
        // workspace file, the gateway's log or the runner's re-reads without bound.
        if self.denials.fetch_add(1, Ordering::Relaxed) < super::signals::MAX_DENIALS {
            let host = paddock_crds::events::truncate(host, 253);
            let line = json!({"type": "egress_denied", "host": host, "port": port});
            out(&line);
            let _ = std::fs::create_dir_all(&self.cfg.control_dir);
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(super::signals::denied_file_in(&self.cfg.control_dir))
            {
                use std::io::Write;
                let _ = writeln!(f, "{line}");
            }
        }
        full(
            StatusCode::FORBIDDEN,
            format!("paddock gateway: {host}:{port} is not in the run's egress allowlist\n"),
        )
    }

    fn egress_ok(&self, host: &str, port: u16) -> bool {
        self.cfg.egress.as_ref().is_none_or(|rules| allowed(rules, host, port))
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        if req.method() == Method::CONNECT {
            return self.connect(req);
        }
        if req.uri().scheme().is_some() {
            return self.forward_plain(req).await;
        }
        let path = req.uri().path().to_string();
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let first = parts.next().unwrap_or_default();
        let rest = format!("/{}", parts.next().unwrap_or_default());
        match self.cfg.routes.iter().find(|r| r.name == first).cloned() {
            Some(route) => self.model_call(route, rest, req).await,
            None => full(StatusCode::NOT_FOUND, format!("paddock gateway: no route for {path}\n")),
        }
    }

    fn connect(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let Some(auth) = req.uri().authority().cloned() else {
            return full(StatusCode::BAD_REQUEST, "CONNECT needs host:port\n");
        };
        let host = auth.host().trim_start_matches('[').trim_end_matches(']').to_string();
        let port = auth.port_u16().unwrap_or(443);
        if !self.egress_ok(&host, port) {
            return self.deny(&host, port);
        }
        tokio::spawn(async move {
            let Ok(upgraded) = hyper::upgrade::on(req).await else {
                return;
            };
            let upstream = match &self.cfg.uplink {
                Some(u) => u.connect_async(&host, port).await,
                None => TcpStream::connect((host.as_str(), port)).await,
            };
            let Ok(mut upstream) = upstream else {
                return;
            };
            let _ = upstream.set_nodelay(true);
            let mut client = TokioIo::new(upgraded);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
        Response::new(http_body_util::Empty::new().map_err(|e: Infallible| match e {}).boxed())
    }

    async fn forward_plain(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let host = req.uri().host().unwrap_or_default().to_string();
        let port = req.uri().port_u16().unwrap_or(80);
        if req.uri().scheme_str() != Some("http") {
            return full(
                StatusCode::BAD_REQUEST,
                "only http:// URLs are proxied without CONNECT\n",
            );
        }
        if !self.egress_ok(&host, port) {
            return self.deny(&host, port);
        }
        let url = req.uri().to_string();
        let (parts, body) = req.into_parts();
        let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
            return full(StatusCode::BAD_REQUEST, "cannot read the request body\n");
        };
        let mut headers = parts.headers.clone();
        strip(&mut headers);
        match self
            .client
            .request(parts.method, &url)
            .headers(headers)
            .body(body)
            .send()
            .await
        {
            Ok(resp) => passthrough(resp),
            Err(e) => full(StatusCode::BAD_GATEWAY, format!("paddock gateway: {e}\n")),
        }
    }

    async fn model_call(self: Arc<Self>, route: Route, rest: String, req: Request<Incoming>) -> Response<Body> {
        if let Some(why) = self.totals.lock().ok().and_then(|t| t.exceeded.clone()) {
            return vendor_error(&route.name, &format!("paddock gateway: {why}; no further model calls"));
        }
        let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
        let upstream_path = {
            // The upstream's own base path (`/v1` of `https://api.openai.com/v1`) prefixes the rest.
            let base_path = reqwest::Url::parse(&route.upstream)
                .map(|u| u.path().trim_end_matches('/').to_string())
                .unwrap_or_default();
            format!("{base_path}{rest}")
        };
        let url = format!("{}{rest}{query}", route.upstream);
        let (parts, body) = req.into_parts();
        let body = match http_body_util::Limited::new(body, MAX_REQUEST_BYTES).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return full(StatusCode::PAYLOAD_TOO_LARGE, format!("paddock gateway: {e}\n")),
        };
        let mut headers = parts.headers.clone();
        strip(&mut headers);
        if let Some((how, key)) = &route.key {
            for h in ["x-api-key", "authorization", "x-goog-api-key"] {
                headers.remove(h);
            }
            let (name, value) = match how {
                KeyHeader::XApiKey => ("x-api-key", key.clone()),
                KeyHeader::Bearer => ("authorization", format!("Bearer {key}")),
                KeyHeader::Goog => ("x-goog-api-key", key.clone()),
            };
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
        let api = ModelApi::from_path(&upstream_path);
        let request_text = String::from_utf8_lossy(&body).into_owned();
        let sent = self
            .client
            .request(parts.method.clone(), &url)
            .headers(headers)
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                self.note_model_status(502);
                return full(
                    StatusCode::BAD_GATEWAY,
                    format!("paddock gateway: {} upstream: {e}\n", route.name),
                );
            }
        };
        let status = resp.status();
        self.note_model_status(status.as_u16());
        let streaming = resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let mut builder = Response::builder().status(status.as_u16());
        for (k, v) in resp.headers() {
            if !HOP_BY_HOP.contains(&k.as_str()) {
                builder = builder.header(k, v);
            }
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(32);
        let me = self.clone();
        let method = parts.method.to_string();
        tokio::spawn(async move {
            let mut parser = api.map(|a| UsageParser::new(a, streaming));
            let mut captured = String::new();
            let mut stream = resp.bytes_stream();
            let mut client_gone = false;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(c) => {
                        if let Some(p) = parser.as_mut() {
                            p.feed(&c);
                        }
                        if captured.len() < TRANSCRIPT_BODY_BYTES {
                            captured.push_str(&String::from_utf8_lossy(&c));
                        }
                        if !client_gone && tx.send(Ok(Frame::data(c))).await.is_err() {
                            client_gone = true;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                        break;
                    }
                }
            }
            drop(tx);
            me.record(
                &route.name,
                &method,
                &upstream_path,
                status.as_u16(),
                &request_text,
                &captured,
                parser,
            );
        });
        let body = StreamBody::new(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
        builder
            .body(BodyExt::boxed(body))
            .unwrap_or_else(|e| full(StatusCode::BAD_GATEWAY, format!("paddock gateway: {e}\n")))
    }

    /// Records the status of the latest model call in `.paddock/model-status`
    /// (`{"status": N}`), so the runner can tell a failure of the model endpoint (429, 5xx) from
    /// one of the agent ([`super::signals::model_unavailable`]).
    fn note_model_status(&self, status: u16) {
        let _ = std::fs::create_dir_all(&self.cfg.control_dir);
        let _ = crate::workspace::write_atomic(
            &self.cfg.control_dir.join("model-status"),
            json!({"status": status}).to_string().as_bytes(),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        route: &str,
        method: &str,
        path: &str,
        status: u16,
        request: &str,
        response: &str,
        parser: Option<UsageParser>,
    ) {
        let metered = parser
            .as_ref()
            .and_then(|p| p.tokens().map(|t| (p.model().unwrap_or("unknown").to_string(), t)));
        let mut cost = None;
        if let Some((model, tokens)) = &metered {
            cost = self.cfg.prices.cost(model, *tokens);
            if let Ok(mut totals) = self.totals.lock() {
                let reached = totals.add(model, *tokens, cost, self.cfg.max_cost_usd, self.cfg.max_output_tokens);
                out(&totals.line());
                if reached {
                    let marker = json!({"reason": "BudgetExceeded", "message": totals.exceeded});
                    let _ = std::fs::create_dir_all(&self.cfg.control_dir);
                    let _ = crate::workspace::write_atomic(
                        &self.cfg.control_dir.join("budget-exceeded"),
                        marker.to_string().as_bytes(),
                    );
                }
            }
        }
        // The transcript, redacted and bounded.
        let redact = |s: &str| paddock_crds::events::redact(&cut(s, TRANSCRIPT_BODY_BYTES), &self.cfg.secrets);
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let line = json!({
            "type": "transcript",
            "seq": seq,
            "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "route": route,
            "method": method,
            "path": path,
            "status": status,
            "model": metered.as_ref().map(|m| &m.0),
            "input_tokens": metered.as_ref().map(|m| m.1.input),
            "output_tokens": metered.as_ref().map(|m| m.1.output),
            "cost_usd": cost,
            "request": redact(request),
            "response": redact(response),
        });
        let text = line.to_string();
        let before = self.transcript_bytes.fetch_add(text.len(), Ordering::Relaxed);
        if before + text.len() <= TRANSCRIPT_MAX_BYTES {
            println!("{text}");
        } else if before <= TRANSCRIPT_MAX_BYTES {
            out(&json!({"type": "transcript_truncated", "seq": seq, "limit_bytes": TRANSCRIPT_MAX_BYTES}));
        }
    }
}

fn strip(headers: &mut HeaderMap) {
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
}

fn passthrough(resp: reqwest::Response) -> Response<Body> {
    let mut builder = Response::builder().status(resp.status().as_u16());
    for (k, v) in resp.headers() {
        if !HOP_BY_HOP.contains(&k.as_str()) {
            builder = builder.header(k, v);
        }
    }
    let stream = resp
        .bytes_stream()
        .map(|c| c.map(Frame::data).map_err(|e| std::io::Error::other(e.to_string())));
    builder
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_else(|e| full(StatusCode::BAD_GATEWAY, format!("paddock gateway: {e}\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egress_rules_match_hosts_and_ports() {
        let rules = vec![
            Allow {
                host: "pypi.org".into(),
                ports: vec![443],
            },
            Allow {
                host: "*.github.com".into(),
                ports: vec![443, 80],
            },
        ];
        assert!(allowed(&rules, "pypi.org", 443));
        assert!(allowed(&rules, "PyPI.org.", 443));
        assert!(!allowed(&rules, "pypi.org", 80));
        assert!(allowed(&rules, "api.github.com", 80));
        assert!(
            !allowed(&rules, "github.com", 443),
            "a wildcard does not match the bare domain"
        );
        assert!(!allowed(&rules, "evilgithub.com", 443));
        assert!(!allowed(&[], "pypi.org", 443));
    }

    #[test]
    fn budgets_trip_once_on_the_response_that_reaches_them() {
        let mut t = Totals::default();
        let tok = |o| Tokens {
            input: 100,
            output: o,
            ..Default::default()
        };
        assert!(!t.add("m", tok(10), Some(0.4), Some(1.0), None));
        assert!(t.add("m", tok(10), Some(0.6), Some(1.0), None));
        assert!(t.exceeded.as_deref().unwrap().contains("maxCostUSD 1"));
        assert!(!t.add("m", tok(10), Some(0.6), Some(1.0), None), "reported once");
        assert_eq!((t.tokens.input, t.tokens.output, t.requests), (300, 30, 3));
        let mut t = Totals::default();
        assert!(t.add("x", tok(50), None, Some(1.0), Some(50)));
        assert!(t.unpriced.contains("x"));
        assert!(t.exceeded.unwrap().contains("maxOutputTokens 50"));
    }

    #[test]
    fn refusals_are_all_answered_403_but_recorded_only_up_to_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let proxy = Proxy::new(ProxyConfig {
            addr: DEFAULT_ADDR.parse().unwrap(),
            routes: vec![],
            egress: Some(vec![]),
            max_cost_usd: None,
            max_output_tokens: None,
            prices: PriceTable::builtin(),
            secrets: vec![],
            control_dir: dir.path().to_path_buf(),
            uplink: None,
        })
        .unwrap();
        let n = super::super::signals::MAX_DENIALS + 50;
        for _ in 0..n {
            assert_eq!(proxy.deny("blocked.example", 443).status(), StatusCode::FORBIDDEN);
        }
        let text = std::fs::read_to_string(super::super::signals::denied_file_in(dir.path())).unwrap();
        assert_eq!(text.lines().count(), super::super::signals::MAX_DENIALS);
        assert_eq!(
            super::super::signals::denials(&text).len(),
            super::super::signals::MAX_DENIALS
        );
    }

    #[test]
    fn long_bodies_are_cut_on_a_char_boundary() {
        let s = "é".repeat(10);
        let c = cut(&s, 5);
        assert!(c.starts_with("éé") && c.contains("bytes cut"), "{c}");
        assert_eq!(cut("short", 10), "short");
    }
}
