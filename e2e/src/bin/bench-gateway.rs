//! Gateway overhead benchmark: what the runner pod's gateway (`paddock-runner gateway`, the
//! real release binary, started here as a child process on a free loopback port) adds to a
//! streamed model call, and whether it passes the tokens through as they arrive instead of
//! buffering the response.
//!
//! This process also runs the upstream: an Anthropic Messages endpoint (`POST /v1/messages`) that
//! answers `"stream": true` with server-sent events, `message_start` and `content_block_start`
//! at once, then N `content_block_delta` events, delta i (1..=N) at i × delay after the request
//! arrived (by the upstream's clock, `sleep_until`, so delays do not drift), then
//! `content_block_stop`, `message_delta` (usage) and `message_stop` right after the last delta.
//! It refuses (401) any request without the real key, which only the gateway adds (the client
//! sends the placeholder to the gateway), and answers `"stream": false` with a small JSON message.
//!
//! Streamed requests alternate: direct to the upstream, then through the gateway
//! (`/anthropic/v1/messages`), each path on its own keep-alive connection, one request at a
//! time. Per request, by this process's monotonic clock (`Instant`) from the moment the request
//! is handed to the connection: time to the response headers, to the first complete SSE event,
//! to the last body byte, and the arrival of every event. Reported as p50/p99 per path (nearest
//! rank); "added" is the gateway's percentile minus the direct one. **Worst per-token lag** is,
//! per request, the maximum over deltas i of (arrival of delta i − i × delay): the request's
//! transit plus how late the most delayed token came. A gateway that buffered the response
//! would show about (N − 1) × delay there; one that streams shows the direct lag plus the
//! proxy's hop.
//!
//! Checks (any failure exits non-zero; the numbers are not judged): the gateway answers; every
//! response, direct or through the gateway, carries exactly the upstream's bytes (so the bodies
//! through the gateway equal the direct ones; headers are not compared) and N + 5 events; the
//! gateway's own `gateway_usage` line on its stdout counts every call made through it and its
//! output tokens (its meter parsed the streams).
//!
//! Then `--small` non-streamed requests per path, sequential on the same connections in
//! alternating blocks of 50: requests per second and p50 latency. Last, the gateway's peak
//! resident memory (`VmHWM` in `/proc/<pid>/status`).
//!
//! Usage: `cargo run --release -p paddock-e2e --bin bench-gateway -- [--requests R] [--tokens N]
//! [--delay-ms D] [--small K]` (defaults 200, 50, 20, 500; R streamed requests in all, R/2 per
//! path, so about R × N × D of wall time). The gateway binary is `$PADDOCK_RUNNER_BIN`, else
//! `target/release/paddock-runner`, built with `cargo build --release -p paddock-runner` when
//! missing. No cluster, no network beyond the loopback. Prints one table.
#![warn(missing_docs)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use paddock_crds::runner::vars;
use paddock_e2e::percentile;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

/// The key only the gateway holds; the upstream refuses every request without it.
const REAL_KEY: &str = "bench-real-key-3f9a";
/// What the agent's CLI holds (the operator's placeholder).
const PLACEHOLDER_KEY: &str = "paddock-placeholder-key";
/// Model name in the responses (`scripted-*` is priced in the gateway's built-in table).
const MODEL: &str = "scripted-bench";
const INPUT_TOKENS: u64 = 12;
/// Output tokens of a non-streamed answer.
const SMALL_OUTPUT_TOKENS: u64 = 3;
/// Unmeasured requests per path before measuring (streamed, small).
const WARMUP: (usize, usize) = (3, 20);
/// Small requests alternate between the paths in blocks of this many.
const SMALL_BLOCK: usize = 50;

type ServerBody = BoxBody<Bytes, Infallible>;

/// Command-line settings.
struct Args {
    /// Streamed requests in all (half per path).
    requests: usize,
    /// Token deltas per streamed response.
    tokens: usize,
    /// Delay between deltas.
    delay: Duration,
    /// Non-streamed requests per path.
    small: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        requests: 200,
        tokens: 50,
        delay: Duration::from_millis(20),
        small: 500,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || -> Result<usize> {
            it.next()
                .with_context(|| format!("{flag} needs a value"))?
                .parse()
                .with_context(|| format!("{flag} takes a number"))
        };
        match flag.as_str() {
            "--requests" => a.requests = value()?,
            "--tokens" => a.tokens = value()?,
            "--delay-ms" => a.delay = Duration::from_millis(value()? as u64),
            "--small" => a.small = value()?,
            other => bail!(
                "unknown argument {other}; usage: bench-gateway [--requests R] [--tokens N] [--delay-ms D] [--small K]"
            ),
        }
    }
    if a.requests < 2 || a.tokens == 0 {
        bail!("--requests must be at least 2 and --tokens at least 1");
    }
    Ok(a)
}

fn sse_event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The streamed answer as the upstream writes it: frame 0 (`message_start`,
/// `content_block_start`), one frame per delta, and the closing frame.
fn sse_frames(tokens: usize) -> Vec<Bytes> {
    let start = sse_event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_bench_000001", "type": "message", "role": "assistant",
            "content": [], "model": MODEL, "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1}}}),
    ) + &sse_event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    let mut frames = vec![Bytes::from(start)];
    for i in 1..=tokens {
        frames.push(Bytes::from(sse_event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!("token{i} ")}}),
        )));
    }
    let end = sse_event("content_block_stop", json!({"type": "content_block_stop", "index": 0}))
        + &sse_event(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"output_tokens": tokens}}),
        )
        + &sse_event("message_stop", json!({"type": "message_stop"}));
    frames.push(Bytes::from(end));
    frames
}

/// The non-streamed answer.
fn small_body() -> Bytes {
    Bytes::from(
        json!({"id": "msg_bench_small", "type": "message", "role": "assistant", "model": MODEL,
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": SMALL_OUTPUT_TOKENS}})
        .to_string(),
    )
}

fn respond(status: StatusCode, content_type: &str, body: ServerBody) -> Response<ServerBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// The upstream's handler (see the module docs).
async fn answer(req: Request<Incoming>, tokens: usize, delay: Duration) -> Result<Response<ServerBody>, Infallible> {
    let key_ok = req.headers().get("x-api-key").is_some_and(|v| v == REAL_KEY);
    let route_ok = req.method() == Method::POST && req.uri().path() == "/v1/messages";
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let start = tokio::time::Instant::now();
    let full = |b: Bytes| Full::new(b).boxed();
    if !key_ok {
        let e = json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}});
        return Ok(respond(
            StatusCode::UNAUTHORIZED,
            "application/json",
            full(e.to_string().into()),
        ));
    }
    if !route_ok {
        return Ok(respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            full("no such route\n".into()),
        ));
    }
    let stream = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["stream"].as_bool())
        == Some(true);
    if !stream {
        return Ok(respond(StatusCode::OK, "application/json", full(small_body())));
    }
    let frames = sse_frames(tokens);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(frames.len());
    tokio::spawn(async move {
        for (i, f) in frames.into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep_until(start + delay * i.min(tokens) as u32).await;
            }
            if tx.send(f).await.is_err() {
                return;
            }
        }
    });
    let body = StreamBody::new(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    }));
    let mut r = respond(StatusCode::OK, "text/event-stream", BodyExt::boxed(body));
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    Ok(r)
}

/// Runs the upstream on its own thread and runtime, so its timers do not share a thread with
/// the measuring client.
fn spawn_upstream(tokens: usize, delay: Duration) -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::spawn(move || {
        rt.block_on(async move {
            let Ok(listener) = TcpListener::from_std(listener) else {
                return;
            };
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| answer(req, tokens, delay));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        })
    });
    Ok(addr)
}

/// One keep-alive HTTP/1.1 connection to `addr`, reopened when it closed.
struct Client {
    addr: SocketAddr,
    /// Path prefix (`""` direct, `/anthropic` through the gateway).
    prefix: &'static str,
    /// What this client sends as `x-api-key`.
    key: &'static str,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    fn new(addr: SocketAddr, prefix: &'static str, key: &'static str) -> Self {
        Self {
            addr,
            prefix,
            key,
            sender: None,
        }
    }

    async fn send(&mut self, body: &'static str) -> Result<(Instant, Response<Incoming>)> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connect {}", self.addr))?;
            stream.set_nodelay(true)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().context("no connection")?;
        sender.ready().await?;
        let req = Request::post(format!("{}/v1/messages", self.prefix))
            .header(hyper::header::HOST, self.addr.to_string())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header("anthropic-version", "2023-06-01")
            .header("x-api-key", self.key)
            .body(Full::new(Bytes::from_static(body.as_bytes())))?;
        let t0 = Instant::now();
        let resp = sender
            .send_request(req)
            .await
            .with_context(|| format!("request to {}{}", self.addr, self.prefix))?;
        Ok((t0, resp))
    }
}

const STREAM_REQUEST: &str =
    r#"{"model":"scripted-bench","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"count"}]}"#;
const SMALL_REQUEST: &str =
    r#"{"model":"scripted-bench","max_tokens":16,"messages":[{"role":"user","content":"ok?"}]}"#;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Timings of one streamed response, ms from the request.
struct Sample {
    headers: f64,
    first_event: f64,
    /// The last SSE event (`message_stop`) complete.
    last_event: f64,
    /// The body ended (for chunked encoding: its terminating chunk arrived), so the connection
    /// can carry the next request.
    end: f64,
    worst_lag: f64,
}

async fn fail_body(what: &str, resp: Response<Incoming>) -> anyhow::Error {
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    anyhow::anyhow!("{what}: HTTP {status}: {}", String::from_utf8_lossy(&body))
}

/// Offset of the first difference between `got` and `want`, if any.
fn first_difference(got: &[u8], want: &[u8]) -> Option<usize> {
    (got != want).then(|| got.iter().zip(want).take_while(|(a, b)| a == b).count())
}

async fn streamed(c: &mut Client, expected: &[u8], tokens: usize, delay: Duration) -> Result<Sample> {
    let what = if c.prefix.is_empty() { "direct" } else { "gateway" };
    let (t0, resp) = c.send(STREAM_REQUEST).await?;
    let headers = ms(t0.elapsed());
    if resp.status() != StatusCode::OK {
        return Err(fail_body(what, resp).await);
    }
    let ct = resp.headers().get(hyper::header::CONTENT_TYPE).cloned();
    if !ct
        .as_ref()
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
    {
        bail!("{what}: content-type {ct:?}, not text/event-stream");
    }
    let mut body = resp.into_body();
    let (mut bytes, mut events, mut scanned) = (Vec::with_capacity(expected.len()), vec![], 0);
    while let Some(frame) = body.frame().await {
        let frame = frame.with_context(|| format!("{what}: reading the stream"))?;
        let now = ms(t0.elapsed());
        let Ok(data) = frame.into_data() else { continue };
        bytes.extend_from_slice(&data);
        while let Some(p) = bytes[scanned..].windows(2).position(|w| w == b"\n\n") {
            events.push(now);
            scanned += p + 2;
        }
    }
    if let Some(at) = first_difference(&bytes, expected) {
        bail!(
            "{what}: the streamed body differs from the upstream's at byte {at} (got {} bytes, want {}): {:?}",
            bytes.len(),
            expected.len(),
            String::from_utf8_lossy(&bytes[at.min(bytes.len())..(at + 80).min(bytes.len())])
        );
    }
    if events.len() != tokens + 5 {
        bail!("{what}: {} events, want {}", events.len(), tokens + 5);
    }
    let end = ms(t0.elapsed());
    // Events 0 and 1 are message_start and content_block_start; delta i is event i + 1.
    let worst_lag = (1..=tokens)
        .map(|i| events[i + 1] - ms(delay * i as u32))
        .fold(f64::MIN, f64::max);
    Ok(Sample {
        headers,
        first_event: events[0],
        last_event: events[tokens + 4],
        end,
        worst_lag,
    })
}

/// One non-streamed request; returns its latency in ms.
async fn small(c: &mut Client, expected: &[u8]) -> Result<f64> {
    let what = if c.prefix.is_empty() { "direct" } else { "gateway" };
    let (t0, resp) = c.send(SMALL_REQUEST).await?;
    if resp.status() != StatusCode::OK {
        return Err(fail_body(what, resp).await);
    }
    let body = resp.into_body().collect().await?.to_bytes();
    let took = ms(t0.elapsed());
    if body != expected {
        bail!("{what}: the small answer differs: {}", String::from_utf8_lossy(&body));
    }
    Ok(took)
}

fn p50_p99(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (percentile(&v, 50.0), percentile(&v, 99.0))
}

/// The gateway child process; killed when dropped.
struct Gateway {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    /// The last `gateway_usage` line of its stdout.
    usage: Arc<Mutex<Option<Value>>>,
    /// The tail of its stderr.
    stderr: Arc<Mutex<String>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Gateway {
    fn stderr_tail(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// `(VmHWM, VmRSS)` in KiB.
    fn memory_kib(&self) -> Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("no {name} in /proc/<gateway>/status"))
        };
        Ok((field("VmHWM:")?, field("VmRSS:")?))
    }
}

fn runner_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var(vars::RUNNER_BIN) {
        return Ok(PathBuf::from(p));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("release/paddock-runner");
    if !bin.exists() {
        eprintln!(
            "[bench] {} is missing: cargo build --release -p paddock-runner",
            bin.display()
        );
        let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "-p", "paddock-runner"])
            .current_dir(&root)
            .stdout(Stdio::inherit())
            .status()
            .context("running cargo")?;
        if !st.success() || !bin.exists() {
            bail!("cargo build --release -p paddock-runner failed ({st})");
        }
    }
    Ok(bin)
}

/// Starts `paddock-runner gateway` on a free loopback port (`PADDOCK_GATEWAY_ADDR`) with a
/// cleared environment and waits until it accepts connections. Required: `PADDOCK_REPO_URL` and
/// `PADDOCK_BRANCH` (its push service refuses to start without them; never asked to push here,
/// and `PADDOCK_PUSH=false`), `PADDOCK_WORKSPACE` (it writes `.paddock/model-status` there on
/// every call; the default is `/workspace`), and the model route: `PADDOCK_UPSTREAM_ANTHROPIC`
/// plus `ANTHROPIC_API_KEY`. Kept private as in a pod: its state directory, an empty
/// credentials directory, `HOME`; `PADDOCK_REDACT_ENV` as the operator sets it.
async fn start_gateway(bin: &PathBuf, upstream: SocketAddr) -> Result<Gateway> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let dir = std::env::temp_dir().join(format!("paddock-bench-gateway-{}", std::process::id()));
    for d in ["workspace/.paddock", "state", "home", "no-creds"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    let child = Command::new(bin)
        .arg("gateway")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()))
        .env("HOME", dir.join("home"))
        .env(vars::WORKSPACE, dir.join("workspace"))
        .env(vars::GATEWAY_STATE_DIR, dir.join("state"))
        .env(vars::GIT_CREDENTIALS_DIR, dir.join("no-creds"))
        .env(vars::REPO_URL, format!("file://{}", dir.join("origin.git").display()))
        .env(vars::BRANCH, "paddock/bench")
        .env(vars::PUSH, "false")
        .env(vars::GATEWAY_ADDR, addr.to_string())
        .env(vars::upstream("anthropic"), format!("http://{upstream}"))
        .env("ANTHROPIC_API_KEY", REAL_KEY)
        .env(vars::REDACT_ENV, "ANTHROPIC_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e).with_context(|| format!("cannot start {}", bin.display()));
        }
    };
    let mut gw = Gateway {
        child,
        addr,
        dir,
        usage: Arc::default(),
        stderr: Arc::default(),
    };
    let stdout = gw.child.stdout.take().context("gateway stdout")?;
    let usage = gw.usage.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains("\"gateway_usage\"") {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["type"] == "gateway_usage" {
                        *usage.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
                    }
                }
            }
        }
    });
    let mut stderr = gw.child.stderr.take().context("gateway stderr")?;
    let tail = gw.stderr.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
            t.push_str(&String::from_utf8_lossy(&buf[..n]));
            if t.len() > 8192 {
                let mut cut = t.len() - 8192;
                while !t.is_char_boundary(cut) {
                    cut += 1;
                }
                t.drain(..cut);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = gw.child.try_wait()? {
            tokio::time::sleep(Duration::from_millis(100)).await;
            bail!("the gateway exited at start ({st}): {}", gw.stderr_tail());
        }
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(gw);
        }
        if Instant::now() > deadline {
            bail!(
                "the gateway does not accept connections on {addr} after 10 s: {}",
                gw.stderr_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the gateway's usage line counts `calls` calls; returns its output tokens.
async fn metered(gw: &Gateway, calls: u64) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let line = gw.usage.lock().map(|u| u.clone()).unwrap_or_default();
        let requests = line.as_ref().and_then(|l| l["requests"].as_u64()).unwrap_or(0);
        if requests == calls {
            return line
                .and_then(|l| l["output_tokens"].as_u64())
                .context("gateway_usage without output_tokens");
        }
        if Instant::now() > deadline {
            bail!("the gateway metered {requests} calls, {calls} were made through it: {line:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn row(name: &str, direct: Vec<f64>, gateway: Vec<f64>) -> String {
    let (d50, d99) = p50_p99(direct);
    let (g50, g99) = p50_p99(gateway);
    format!(
        "| {name} | {d50:.2} | {d99:.2} | {g50:.2} | {g99:.2} | {:+.2} | {:+.2} |",
        g50 - d50,
        g99 - d99
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let bin = runner_bin()?;
    let upstream = spawn_upstream(args.tokens, args.delay)?;
    let gw = start_gateway(&bin, upstream).await?;
    let expected: Bytes = sse_frames(args.tokens).concat().into();
    let expected_small = small_body();
    let mut direct = Client::new(upstream, "", REAL_KEY);
    let mut via = Client::new(gw.addr, "/anthropic", PLACEHOLDER_KEY);
    let (mut gw_calls, mut gw_tokens) = (0u64, 0u64);

    // The upstream refuses the placeholder: a 200 through the gateway means it swapped the key.
    let refused = direct_with_placeholder(upstream).await?;
    if refused != StatusCode::UNAUTHORIZED {
        bail!("the upstream answered {refused} to the placeholder key, want 401");
    }
    for _ in 0..WARMUP.0 {
        streamed(&mut direct, &expected, args.tokens, args.delay).await?;
        streamed(&mut via, &expected, args.tokens, args.delay)
            .await
            .map_err(|e| e.context(format!("through the gateway; its stderr: {}", gw.stderr_tail())))?;
        gw_calls += 1;
        gw_tokens += args.tokens as u64;
    }
    for _ in 0..WARMUP.1 {
        small(&mut direct, &expected_small).await?;
        small(&mut via, &expected_small).await?;
        gw_calls += 1;
        gw_tokens += SMALL_OUTPUT_TOKENS;
    }

    let per_path = args.requests / 2;
    let (mut d, mut g) = (vec![], vec![]);
    let started = Instant::now();
    for i in 0..per_path {
        d.push(streamed(&mut direct, &expected, args.tokens, args.delay).await?);
        g.push(streamed(&mut via, &expected, args.tokens, args.delay).await?);
        gw_calls += 1;
        gw_tokens += args.tokens as u64;
        if (i + 1) % 20 == 0 {
            eprintln!(
                "[bench] {}/{per_path} streamed pairs, {:.0} s",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }

    let (mut ds, mut gs) = (vec![], vec![]);
    let (mut d_time, mut g_time) = (Duration::ZERO, Duration::ZERO);
    while ds.len() < args.small {
        let n = SMALL_BLOCK.min(args.small - ds.len());
        let t = Instant::now();
        for _ in 0..n {
            ds.push(small(&mut direct, &expected_small).await?);
        }
        d_time += t.elapsed();
        let t = Instant::now();
        for _ in 0..n {
            gs.push(small(&mut via, &expected_small).await?);
        }
        g_time += t.elapsed();
        gw_calls += n as u64;
        gw_tokens += n as u64 * SMALL_OUTPUT_TOKENS;
    }

    let metered_tokens = metered(&gw, gw_calls).await?;
    if metered_tokens != gw_tokens {
        bail!("the gateway metered {metered_tokens} output tokens, the responses carried {gw_tokens}");
    }
    let (hwm, rss) = gw.memory_kib()?;

    let n = args.tokens;
    let delay_ms = args.delay.as_millis();
    println!(
        "Gateway overhead ({}): {per_path} streamed requests per path, alternating, each {n} token deltas {delay_ms} ms apart (Anthropic SSE), one keep-alive connection per path, loopback",
        bin.display()
    );
    println!();
    println!("| ms from the request | direct p50 | direct p99 | gateway p50 | gateway p99 | added p50 | added p99 |");
    println!("|---|---|---|---|---|---|---|");
    let col = |v: &[Sample], f: fn(&Sample) -> f64| v.iter().map(f).collect::<Vec<_>>();
    type Measure = (&'static str, fn(&Sample) -> f64);
    let measures: [Measure; 5] = [
        ("response headers", |s| s.headers),
        ("first SSE event", |s| s.first_event),
        ("last SSE event (message_stop)", |s| s.last_event),
        ("end of response (last byte)", |s| s.end),
        ("worst per-token lag (max over i of arrival(i) − i×delay)", |s| {
            s.worst_lag
        }),
    ];
    for (name, f) in measures {
        println!("{}", row(name, col(&d, f), col(&g, f)));
    }
    if args.small > 0 {
        let rate = |n: usize, t: Duration| n as f64 / t.as_secs_f64();
        println!(
            "{}",
            row(
                &format!("non-streamed small request, whole response ({} per path)", args.small),
                ds,
                gs
            )
        );
        println!();
        println!(
            "Non-streamed throughput, one connection, sequential: direct {:.0} req/s, gateway {:.0} req/s.",
            rate(args.small, d_time),
            rate(args.small, g_time)
        );
    } else {
        println!();
    }
    println!(
        "A buffering gateway would show a worst per-token lag of about (N−1)×delay = {} ms.",
        (n as u128 - 1) * delay_ms
    );
    println!(
        "Checked: every body through the gateway equals the upstream's bytes (as the direct ones do), {} events each; the gateway metered all {gw_calls} calls made through it ({gw_tokens} output tokens).",
        n + 5
    );
    println!(
        "Gateway memory: peak RSS (VmHWM) {:.1} MiB, RSS at the end {:.1} MiB.",
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    drop(gw);
    Ok(())
}

/// The status the upstream gives a request carrying the placeholder key (must be 401, so a 200
/// through the gateway proves the gateway put the real key in).
async fn direct_with_placeholder(upstream: SocketAddr) -> Result<StatusCode> {
    let mut c = Client::new(upstream, "", PLACEHOLDER_KEY);
    let (_, resp) = c.send(SMALL_REQUEST).await?;
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    Ok(status)
}
