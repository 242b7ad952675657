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
//!    Only the endpoints of [`endpoints`] are forwarded: the model calls the meter reads and
//!    harmless reads (model listings, token counting); the rest is refused.
//! 2. **Egress proxy** for everything else the agent reaches (`HTTP_PROXY`/`HTTPS_PROXY` point
//!    here when the run has an egress allowlist, `PADDOCK_EGRESS_ALLOW`, a JSON list of
//!    `{"host", "ports"}`): `CONNECT host:port` tunnels and absolute-form `http://` requests to
//!    listed hosts only; a refusal is answered 403 and recorded as an `egress_denied` line on
//!    stdout and in `<workspace>/.paddock/egress-denied.jsonl`, which the agent container's
//!    runner turns into an event.
//!
//! **Budgets** (`PADDOCK_MAX_COST_USD`, `PADDOCK_MAX_OUTPUT_TOKENS`, prices from
//! `PADDOCK_PRICES`): every metered call reserves its worst case before it is forwarded and
//! settles to its real usage when it ends ([`Ledger`]); under `maxCostUSD` a model without a
//! price is refused. Once a limit is reached, further model calls are refused (403 in the
//! vendor's error shape) and `<workspace>/.paddock/budget-exceeded` is written; the runner stops
//! the agent, commits what exists and reports reason `BudgetExceeded`. The totals and the
//! reservations in flight are kept in `<PADDOCK_GATEWAY_STATE_DIR>/paddock-gateway-usage.json`
//! (default `$TMPDIR`) and survive a restart of the gateway.
//!
//! **Bounds**, so that no request can exhaust the gateway: request bodies to a model route at
//! most `PADDOCK_GATEWAY_MAX_BODY_BYTES` (default 8 MiB; else 413), at most
//! `PADDOCK_GATEWAY_MAX_INFLIGHT` model calls at once (default 16; others wait up to
//! `PADDOCK_GATEWAY_QUEUE_SECONDS`, default 60, then 429 with `retry-after`), at most
//! `PADDOCK_GATEWAY_MAX_CONNECTIONS` client connections (default 256; others wait in the listen
//! backlog), request heads at most [`MAX_HEAD_BYTES`] and read within [`HEAD_TIMEOUT`]. Plain
//! `http://` egress bodies are streamed, not buffered.
//!
//! The agent can read and write the workspace, so what it could forge there (a denial record, a
//! budget marker, `model-status`) only hurts its own run; usage, the upstream's statuses
//! (`gateway_model_status`), refusals (`gateway_refused`) and the transcript leave through the
//! gateway's own stdout, which the agent cannot write.

mod budget;
mod config;
mod egress;
pub(crate) use egress::{passthrough, splice};
pub mod endpoints;
mod record;

use std::convert::Infallible;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

pub use budget::{Admission, Billed, Ledger, Limits, Reservation, Ticket, Totals};
pub use config::{
    allowed, Allow, KeyHeader, ProxyConfig, ProxyConfigError, Route, DEFAULT_ADDR, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_INFLIGHT, DEFAULT_QUEUE_SECONDS, STATE_FILE,
};
pub use endpoints::{classify, Endpoint};
pub use record::{Refusal, MAX_REFUSAL_LINES, MAX_STATUS_LINES, TRANSCRIPT_BODY_BYTES, TRANSCRIPT_MAX_BYTES};

use super::meter::{self, ModelApi, UsageParser};
use record::{full, vendor_error, Body, Exchange, Recorder};

/// Largest request head (request line and headers) read from a client, bytes.
pub const MAX_HEAD_BYTES: usize = 64 << 10;
/// A client must send its request head within this time.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// A client that takes longer than this to accept the next chunk of a response is cut off (the
/// gateway keeps reading and metering the upstream's response).
pub const CLIENT_STALL: Duration = Duration::from_secs(60);

/// The running gateway proxy.
pub struct Proxy {
    cfg: ProxyConfig,
    client: reqwest::Client,
    ledger: Arc<Ledger>,
    recorder: Recorder,
    /// Egress refusals so far (all are refused; the first [`super::signals::MAX_DENIALS`] are
    /// recorded).
    denials: AtomicUsize,
    /// Slots for model calls in flight.
    inflight: Arc<Semaphore>,
    /// Slots for client connections (and CONNECT tunnels).
    connections: Arc<Semaphore>,
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

/// Removes the hop-by-hop headers (and those the proxy sets itself) from `headers`.
pub(crate) fn strip(headers: &mut HeaderMap) {
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
}

/// A model call admitted to be forwarded.
struct Call {
    route: Route,
    method: Method,
    url: String,
    /// The path the upstream sees (its base path + the route's rest).
    upstream_path: String,
    headers: HeaderMap,
    body: Bytes,
    /// The API whose usage the response carries; `None` for free endpoints.
    api: Option<ModelApi>,
    ticket: Option<Ticket>,
    /// The request body as the transcript keeps it.
    request_text: String,
}

impl Proxy {
    /// Builds the proxy (installs rustls's ring provider for the HTTPS client once) and loads
    /// the running totals from the state directory.
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
        let limits = Limits {
            max_cost_usd: cfg.max_cost_usd,
            max_output_tokens: cfg.max_output_tokens,
        };
        let ledger = Ledger::open(&cfg.state_dir, &cfg.owner, limits, &cfg.control_dir);
        Ok(Arc::new(Self {
            client,
            ledger,
            recorder: Recorder::default(),
            denials: AtomicUsize::new(0),
            inflight: Arc::new(Semaphore::new(cfg.max_inflight.max(1))),
            connections: Arc::new(Semaphore::new(cfg.max_connections.max(1))),
            cfg,
        }))
    }

    /// Usage so far (settled calls).
    pub fn totals(&self) -> Totals {
        self.ledger.totals()
    }

    /// Binds the configured address and accepts connections until the task is dropped.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn serve(self: Arc<Self>) -> std::io::Result<()> {
        let listener = TcpListener::bind(self.cfg.addr).await?;
        self.serve_on(listener).await
    }

    /// Accepts connections on `listener` until the task is dropped.
    ///
    /// # Errors
    /// Never in practice: failures to accept one connection (too many open files) are logged
    /// and retried.
    pub async fn serve_on(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        eprintln!(
            "paddock-runner gateway: model routes {:?}, egress {} on {}",
            self.cfg.routes.iter().map(|r| &r.name).collect::<Vec<_>>(),
            if self.cfg.egress.is_some() {
                "restricted"
            } else {
                "open"
            },
            listener.local_addr()?
        );
        loop {
            let permit = self
                .connections
                .clone()
                .acquire_owned()
                .await
                .map_err(std::io::Error::other)?;
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    eprintln!("paddock-runner gateway: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Without it, a response written in two parts (headers, then body) waits out the
            // client's delayed ACK: ~40 ms per non-streamed call (found by bench-gateway).
            let _ = stream.set_nodelay(true);
            let me = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let svc = hyper::service::service_fn(move |req| {
                    let me = me.clone();
                    async move { Ok::<_, Infallible>(me.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEAD_TIMEOUT)
                    .max_buf_size(MAX_HEAD_BYTES)
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
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

    /// Answers a model call itself: counted, recorded (`gateway_refused`), in the vendor's shape.
    fn refuse(&self, route: &str, method: &Method, path: &str, why: Refusal, message: &str) -> Response<Body> {
        self.ledger.count_refusal();
        self.recorder
            .refused(route, method.as_str(), path, why, message, &self.cfg.secrets);
        vendor_error(route, why, message)
    }

    async fn model_call(self: Arc<Self>, route: Route, rest: String, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().clone();
        let refuse = |why: Refusal, message: &str| self.refuse(&route.name, &method, &rest, why, message);
        let Some(endpoint) = endpoints::classify(&route.name, &method, &rest) else {
            let m = paddock_crds::events::truncate(&format!("{method} {rest}"), 300);
            return refuse(
                Refusal::EndpointNotAllowed,
                &format!(
                    "paddock gateway: {m} is not forwarded: the gateway forwards only the model calls it \
                     meters and model listings (docs/gateway.md)"
                ),
            );
        };
        if let Some(why) = self.ledger.exceeded() {
            return refuse(
                Refusal::BudgetExceeded,
                &format!("paddock gateway: {why}; no further model calls"),
            );
        }
        let max = self.cfg.max_body_bytes;
        let too_large =
            format!("paddock gateway: the request body is larger than {max} bytes (PADDOCK_GATEWAY_MAX_BODY_BYTES)");
        let declared = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            drain_later(req.into_body());
            return refuse(Refusal::BodyTooLarge, &too_large);
        }
        // A slot first: it bounds the bodies held in memory as well as the calls in flight.
        let permit = match tokio::time::timeout(self.cfg.queue_wait, self.inflight.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => {
                let m = format!(
                    "paddock gateway: {} model calls are in flight (PADDOCK_GATEWAY_MAX_INFLIGHT); retry later",
                    self.cfg.max_inflight
                );
                return refuse(Refusal::Busy, &m);
            }
        };
        let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
        let (parts, body) = req.into_parts();
        let mut body = match read_body(body, max).await {
            Ok(b) => b,
            Err(BodyError::TooLarge(rest)) => {
                drain_later(rest);
                return refuse(Refusal::BodyTooLarge, &too_large);
            }
            Err(BodyError::Broken(e)) => return full(StatusCode::BAD_REQUEST, format!("paddock gateway: {e}\n")),
        };
        let ticket = match endpoint.api() {
            None => None,
            Some(api) => {
                let facts = match meter::inspect(api, &body) {
                    Ok(f) => f,
                    Err(e) => return refuse(Refusal::BadRequest, &format!("paddock gateway: {e}")),
                };
                if facts.background {
                    let m = "paddock gateway: background responses are refused: their usage cannot be metered";
                    return refuse(Refusal::BadRequest, m);
                }
                let model = match &endpoint {
                    Endpoint::MeteredGemini { model } => Some(model.clone()),
                    _ => facts.model.clone(),
                };
                if self.cfg.max_cost_usd.is_some() {
                    if let Some(m) = unpriced(&self.cfg.prices, model.as_deref()) {
                        return refuse(Refusal::UnpricedModel, &m);
                    }
                }
                if api == ModelApi::OpenAiChat && facts.stream && !facts.has_stream_options {
                    // Without it a streamed Chat Completion reports no usage.
                    if let Some(b) = meter::with_include_usage(&body) {
                        body = Bytes::from(b);
                    }
                }
                let estimate = facts.estimate(model.as_deref(), body.len() as u64, &self.cfg.prices);
                let r = Reservation::new(model.as_deref(), estimate);
                match self.ledger.reserve(r, self.cfg.queue_wait).await {
                    Admission::Go(t) => Some(t),
                    Admission::Exhausted(why) => {
                        let m = format!("paddock gateway: {why}; no further model calls");
                        return refuse(Refusal::BudgetExceeded, &m);
                    }
                    Admission::Busy => {
                        let m = "paddock gateway: the model calls in flight hold the rest of the budget; retry \
                                 when they end";
                        return refuse(Refusal::Busy, m);
                    }
                }
            }
        };
        let base_path = reqwest::Url::parse(&route.upstream)
            .map(|u| u.path().trim_end_matches('/').to_string())
            .unwrap_or_default();
        let call = Call {
            url: format!("{}{rest}{query}", route.upstream),
            upstream_path: format!("{base_path}{rest}"),
            headers: upstream_headers(&route, &parts.headers),
            request_text: record::cut_bytes(&body, TRANSCRIPT_BODY_BYTES),
            body,
            api: endpoint.api(),
            ticket,
            method,
            route,
        };
        // The call runs in its own task: a client that goes away cannot cancel it half-way, so
        // what the upstream bills is always read and settled.
        let (head_tx, head_rx) = oneshot::channel();
        tokio::spawn(self.clone().forward(call, permit, head_tx));
        head_rx
            .await
            .unwrap_or_else(|_| full(StatusCode::BAD_GATEWAY, "paddock gateway: the call ended unanswered\n"))
    }

    /// Sends `call` upstream, answers the head on `head_tx`, streams the body, then settles the
    /// call's reservation and records the exchange.
    async fn forward(
        self: Arc<Self>,
        call: Call,
        _permit: OwnedSemaphorePermit,
        head_tx: oneshot::Sender<Response<Body>>,
    ) {
        let Call {
            route,
            method,
            url,
            upstream_path,
            headers,
            body,
            api,
            ticket,
            request_text,
        } = call;
        let sent = self
            .client
            .request(method.clone(), &url)
            .headers(headers)
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let message = e.to_string();
                self.recorder
                    .model_status(&self.cfg.control_dir, &route.name, 502, Some(&message));
                if let Some(t) = ticket {
                    // Never connected: not billed. Otherwise the upstream may have run it.
                    t.settle(if e.is_connect() {
                        Billed::Nothing
                    } else {
                        Billed::Unknown
                    });
                }
                let _ = head_tx.send(full(
                    StatusCode::BAD_GATEWAY,
                    format!("paddock gateway: {} upstream: {message}\n", route.name),
                ));
                return;
            }
        };
        let status = resp.status();
        self.recorder
            .model_status(&self.cfg.control_dir, &route.name, status.as_u16(), None);
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
        let client_body = StreamBody::new(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
        let head = builder
            .body(BodyExt::boxed(client_body))
            .unwrap_or_else(|e| full(StatusCode::BAD_GATEWAY, format!("paddock gateway: {e}\n")));
        let _ = head_tx.send(head);
        let mut parser = api.map(|a| UsageParser::new(a, streaming));
        let mut captured = Vec::new();
        let mut stream = resp.bytes_stream();
        let mut client_gone = false;
        let mut cut = false;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => {
                    if let Some(p) = parser.as_mut() {
                        p.feed(&c);
                    }
                    if captured.len() < TRANSCRIPT_BODY_BYTES {
                        captured.extend_from_slice(&c[..c.len().min(TRANSCRIPT_BODY_BYTES - captured.len())]);
                    }
                    // The upstream is read to its end even when the client is gone, or stalls
                    // (a client that stops reading would otherwise stall the upstream until it
                    // gives up, with the usage still unsent): what it bills is metered.
                    if !client_gone {
                        let sent = tokio::time::timeout(CLIENT_STALL, tx.send(Ok(Frame::data(c)))).await;
                        client_gone = !matches!(sent, Ok(Ok(())));
                    }
                }
                Err(e) => {
                    cut = true;
                    let _ = tx.try_send(Err(std::io::Error::other(e.to_string())));
                    break;
                }
            }
        }
        // Settled before the client sees the end of the body: once a call is answered, its usage
        // is on record (and in the state file).
        let reserved = ticket.as_ref().map(|t| t.reserved.clone());
        let billed = match (&parser, &reserved) {
            // The upstream broke off: what it reported so far may be short of what it bills.
            (Some(_), Some(_)) if cut && status.is_success() => Billed::Unknown,
            (Some(p), Some(r)) => match p.tokens() {
                Some(tokens) => {
                    let model = p.model().or(r.model.as_deref()).unwrap_or("unknown").to_string();
                    // Priced as the response names the model, else as the request did.
                    let cost_usd = self
                        .cfg
                        .prices
                        .cost(&model, tokens)
                        .or_else(|| r.model.as_deref().and_then(|m| self.cfg.prices.cost(m, tokens)));
                    Billed::Usage {
                        model,
                        tokens,
                        cost_usd,
                    }
                }
                None if status.is_success() => Billed::Unknown,
                None => Billed::Nothing,
            },
            _ => Billed::Nothing,
        };
        if let Some(t) = ticket {
            t.settle(billed.clone());
        }
        drop(tx);
        let (model, input, output, cost, estimated) = match (&billed, &reserved) {
            (
                Billed::Usage {
                    model,
                    tokens,
                    cost_usd,
                },
                _,
            ) => (
                Some(model.clone()),
                Some(tokens.input),
                Some(tokens.output),
                *cost_usd,
                false,
            ),
            (Billed::Unknown, Some(r)) => (
                r.model.clone(),
                Some(r.input_tokens),
                Some(r.output_tokens),
                r.cost_usd,
                true,
            ),
            _ => (None, None, None, None, false),
        };
        self.recorder.transcript(
            &Exchange {
                route: &route.name,
                method: method.as_str(),
                path: &upstream_path,
                status: status.as_u16(),
                model: model.as_deref(),
                input_tokens: input,
                output_tokens: output,
                cost_usd: cost,
                estimated,
                request: &request_text,
                response: &record::cut_bytes(&captured, TRANSCRIPT_BODY_BYTES),
            },
            &self.cfg.secrets,
        );
    }
}

/// How much of a refused request's body is still read, and discarded, so that a client that is
/// still sending it sees the answer instead of a broken connection: bytes, and seconds.
const DRAIN_BYTES: u64 = 64 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Why a request body was not read whole.
enum BodyError {
    /// Larger than the limit; the rest of the body.
    TooLarge(Incoming),
    /// The client's body broke off.
    Broken(hyper::Error),
}

/// Reads `body` whole if it is at most `max` bytes.
async fn read_body(mut body: Incoming, max: usize) -> Result<Bytes, BodyError> {
    let mut chunks: Vec<Bytes> = vec![];
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(BodyError::Broken)?.into_data() else {
            continue;
        };
        len = len.saturating_add(data.len());
        if len > max {
            return Err(BodyError::TooLarge(body));
        }
        chunks.push(data);
    }
    if chunks.len() <= 1 {
        return Ok(chunks.pop().unwrap_or_default());
    }
    let mut whole = bytes::BytesMut::with_capacity(len);
    for c in chunks {
        whole.extend_from_slice(&c);
    }
    Ok(whole.freeze())
}

/// Reads and discards what is left of a refused body (at most [`DRAIN_BYTES`] within
/// [`DRAIN_TIME`]) while the refusal is answered.
fn drain_later(mut body: Incoming) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(DRAIN_TIME, async move {
            let mut seen = 0u64;
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                if seen > DRAIN_BYTES {
                    break;
                }
            }
        })
        .await;
    });
}

/// Why `model` cannot be metered in USD (no model named, or no price), if so.
fn unpriced(prices: &meter::PriceTable, model: Option<&str>) -> Option<String> {
    match model {
        None => Some(
            "paddock gateway: the request names no model; under budget.maxCostUSD every model call must name a \
             model with a price"
                .into(),
        ),
        Some(m) if prices.price(m).is_none() => Some(format!(
            "paddock gateway: model {m:?} has no price, and budget.maxCostUSD needs one for every model call: \
             add it to the pool's spec.gateway.prices"
        )),
        Some(_) => None,
    }
}

/// The client's headers for the upstream: hop-by-hop headers dropped, the agent's auth replaced
/// by the route's real key.
fn upstream_headers(route: &Route, client: &HeaderMap) -> HeaderMap {
    let mut headers = client.clone();
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
    headers
}
