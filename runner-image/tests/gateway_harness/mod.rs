//! The real `paddock-runner gateway` process in front of a scripted model upstream, for the
//! gateway's hostile-agent tests (`gateway_budget.rs`, `gateway_limits.rs`).
//!
//! The upstream answers Anthropic Messages (`/v1/messages`) and OpenAI Chat Completions
//! (`/v1/chat/completions`, JSON or SSE — the usage chunk only when the request asks for it
//! with `stream_options.include_usage`, as OpenAI does) with the usage of its [`Script`], after
//! its delay; any other path gets `200 {"ok":true}`, so a test can tell whether the gateway
//! forwarded it. A request header `x-test-status: N` makes it answer status N. It records every
//! request and the most requests it ever had in progress at once.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_paddock-runner");
/// The key the gateway holds; the agent sends a placeholder.
pub const REAL_KEY: &str = "sk-real-key-held-by-the-gateway-4242";

/// What the upstream reports for each model call.
#[derive(Clone, Copy, Debug)]
pub struct Script {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub delay: Duration,
}

/// One request the upstream received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    pub api_key: Option<String>,
}

/// The scripted upstream.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    active: Arc<AtomicUsize>,
    pub max_active: Arc<AtomicUsize>,
}

impl Upstream {
    /// Starts it on a free loopback port (in the current tokio runtime).
    pub async fn start(script: Script) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = Upstream {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
            active: Arc::default(),
            max_active: Arc::default(),
        };
        let me = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let me = me.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let me = me.clone();
                        async move { Ok::<_, std::convert::Infallible>(me.answer(req, script).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        up
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    async fn answer(&self, req: Request<hyper::body::Incoming>, s: Script) -> Response<Full<Bytes>> {
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_active.fetch_max(now, Ordering::SeqCst);
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (status, api_key) = (header("x-test-status"), header("x-api-key").or(header("authorization")));
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        self.seen.lock().unwrap().push(Seen {
            method,
            path: path.clone(),
            body: body.to_vec(),
            api_key,
        });
        tokio::time::sleep(s.delay).await;
        self.active.fetch_sub(1, Ordering::SeqCst);
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let model = v["model"].as_str().unwrap_or("scripted-x").to_string();
        let status = status.and_then(|s| s.parse::<u16>().ok()).unwrap_or(200);
        if status != 200 {
            return reply(
                status,
                "application/json",
                json!({"error": {"message": "scripted"}}).to_string(),
            );
        }
        let (input, output) = (s.input_tokens, s.output_tokens);
        match path.as_str() {
            "/v1/messages" => reply(
                200,
                "application/json",
                json!({"type": "message", "model": model, "content": [{"type": "text", "text": "ok"}],
                       "usage": {"input_tokens": input, "output_tokens": output}})
                .to_string(),
            ),
            "/v1/chat/completions" if v["stream"] == true => {
                let mut sse = format!(
                    "data: {}\n\n",
                    json!({"model": model, "choices": [{"index": 0, "delta": {"content": "ok"}}]})
                );
                if v["stream_options"]["include_usage"] == true {
                    sse += &format!(
                        "data: {}\n\n",
                        json!({"model": model, "choices": [],
                               "usage": {"prompt_tokens": input, "completion_tokens": output}})
                    );
                }
                sse += "data: [DONE]\n\n";
                reply(200, "text/event-stream", sse)
            }
            "/v1/chat/completions" => reply(
                200,
                "application/json",
                json!({"model": model, "choices": [{"index": 0, "message": {"content": "ok"}}],
                       "usage": {"prompt_tokens": input, "completion_tokens": output}})
                .to_string(),
            ),
            _ => reply(200, "application/json", json!({"ok": true, "data": []}).to_string()),
        }
    }
}

fn reply(status: u16, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// A running `paddock-runner gateway` and the lines it printed on stdout.
pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
    pub lines: Arc<Mutex<Vec<String>>>,
}

/// Starts the gateway with its state, workspace and home under `dir` (kept across restarts),
/// routes `anthropic` and `openai` to `upstream` with [`REAL_KEY`], and `extra` env.
pub fn start_gateway(dir: &Path, upstream: SocketAddr, extra: &[(&str, &str)]) -> Gateway {
    for d in ["workspace/.paddock", "state", "home", "no-creds"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut cmd = Command::new(BIN);
    cmd.arg("gateway")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()))
        .env("HOME", dir.join("home"))
        .env("PADDOCK_WORKSPACE", dir.join("workspace"))
        .env("PADDOCK_GATEWAY_STATE_DIR", dir.join("state"))
        .env("PADDOCK_GIT_CREDENTIALS_DIR", dir.join("no-creds"))
        .env(
            "PADDOCK_REPO_URL",
            format!("file://{}", dir.join("origin.git").display()),
        )
        .env("PADDOCK_BRANCH", "paddock/test")
        .env("PADDOCK_PUSH", "false")
        .env("PADDOCK_RUN", "r1")
        .env("PADDOCK_RUN_UID", "uid-r1")
        .env("PADDOCK_ATTEMPT", "1")
        .env("PADDOCK_GATEWAY_ADDR", addr.to_string())
        .env("PADDOCK_UPSTREAM_ANTHROPIC", format!("http://{upstream}"))
        .env("PADDOCK_UPSTREAM_OPENAI", format!("http://{upstream}/v1"))
        .env("ANTHROPIC_API_KEY", REAL_KEY)
        .env("OPENAI_API_KEY", REAL_KEY)
        .env("PADDOCK_REDACT_ENV", "ANTHROPIC_API_KEY,OPENAI_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let stdout = child.stdout.take().unwrap();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(l);
        }
    });
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("gateway: {l}");
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "the gateway exited");
        assert!(Instant::now() < deadline, "the gateway does not listen on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Gateway { child, addr, lines }
}

impl Gateway {
    /// `http://<gateway>/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Its stdout lines of `type`, parsed.
    pub fn lines_of(&self, kind: &str) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["type"] == kind)
            .collect()
    }

    /// Its stdout lines of `type`, waiting up to 5 s until there are at least `n`.
    pub fn wait_lines(&self, kind: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines = self.lines_of(kind);
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last `gateway_usage` line, waiting up to 5 s for one with `requests >= n`.
    pub fn usage_after(&self, n: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(u) = self.lines_of("gateway_usage").pop() {
                if u["requests"].as_u64().unwrap_or(0) >= n {
                    return u;
                }
            }
            assert!(Instant::now() < deadline, "no gateway_usage line with {n} requests");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Peak resident memory of the process, bytes (`VmHWM`).
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap();
        kb * 1024
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Kills it (SIGKILL: a crash, an OOM kill), waits, and returns its stdout lines.
    pub fn kill(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(50));
        let lines = self.lines.lock().unwrap().clone();
        lines
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that talks to the gateway directly.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A JSON request body (reqwest is built without its `json` feature).
pub trait JsonBody {
    /// `v` as the body, with `content-type: application/json`.
    fn json_body(self, v: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, v: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(serde_json::to_vec(v).unwrap())
    }
}

/// An Anthropic Messages request as an agent sends it (placeholder key).
pub fn anthropic(c: &reqwest::Client, gw: &Gateway, body: &Value) -> reqwest::RequestBuilder {
    c.post(gw.url("/anthropic/v1/messages"))
        .header("x-api-key", "paddock-placeholder-key")
        .header("anthropic-version", "2023-06-01")
        .json_body(body)
}

/// Sends `req` and returns its status and body as JSON (`Null` when not JSON).
pub async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A temporary directory for one gateway's files.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// `dir/state/paddock-gateway-usage.json`.
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("state").join("paddock-gateway-usage.json")
}
