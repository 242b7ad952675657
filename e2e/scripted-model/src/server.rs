//! The HTTP server: routes, request handling, streaming with keepalives, request logging.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, OriginalUri, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;
use tracing::info;

use crate::reply::{plan, ParsedRequest, Reply};
use crate::script::{load_script, script_name_for_model};
use crate::sse::StreamPlan;
use crate::{anthropic, chat, gemini, responses};

/// Request header that names the script directly, overriding the model name.
pub const SCRIPT_HEADER: &str = "x-scripted-model-script";

/// Largest accepted request body (Claude Code sends ~90 KB, long histories more).
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory holding `<name>.json` scripts; read on every request.
    pub scripts_dir: PathBuf,
    /// Interval between keepalive frames while a turn sleeps.
    pub keepalive: Duration,
}

struct AppState {
    config: Config,
    seq: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Anthropic,
    Responses,
    Chat,
    /// Gemini API: the model and the method come from the path (`…/models/<model>:<method>`).
    Gemini,
}

impl Protocol {
    fn parse(self, body: &Value, uri: &Uri) -> ParsedRequest {
        match self {
            Protocol::Anthropic => anthropic::parse(body),
            Protocol::Responses => responses::parse(body),
            Protocol::Chat => chat::parse(body),
            Protocol::Gemini => {
                let last = uri.path().rsplit('/').next().unwrap_or_default();
                let (model, method) = gemini::split_model_method(last).unwrap_or((last, ""));
                gemini::parse(body, model, method)
            }
        }
    }

    fn error(self, status: StatusCode, message: &str) -> Response {
        let body = match self {
            Protocol::Anthropic => {
                let kind = if status == StatusCode::NOT_FOUND {
                    "not_found_error"
                } else {
                    "invalid_request_error"
                };
                anthropic::error_body(kind, message)
            }
            Protocol::Responses | Protocol::Chat => {
                let code = if status == StatusCode::NOT_FOUND {
                    "not_found"
                } else {
                    "model_not_found"
                };
                responses::error_body("invalid_request_error", code, message)
            }
            Protocol::Gemini => gemini::error_body(status, message),
        };
        (status, Json(body)).into_response()
    }

    fn render_json(self, reply: &Reply, model: &str, seq: u64) -> Value {
        match self {
            Protocol::Anthropic => anthropic::render_json(reply, model, seq),
            Protocol::Responses => responses::render_json(reply, model, seq),
            Protocol::Chat => chat::render_json(reply, model, seq),
            Protocol::Gemini => gemini::render_json(reply, model, seq),
        }
    }

    fn render_stream(self, reply: &Reply, model: &str, seq: u64) -> StreamPlan {
        match self {
            Protocol::Anthropic => anthropic::render_stream(reply, model, seq),
            Protocol::Responses => responses::render_stream(reply, model, seq),
            Protocol::Chat => chat::render_stream(reply, model, seq),
            Protocol::Gemini => gemini::render_stream(reply, model, seq),
        }
    }
}

/// Builds the router: `POST /v1/messages` (and `/v1/messages/count_tokens`), `POST
/// /v1/responses`, `POST /v1/chat/completions` (each also without the `/v1` prefix), `POST
/// /v1beta/models/<model>:{streamGenerateContent,generateContent,countTokens}` (Gemini), `GET
/// /healthz`, `GET|HEAD /api/hello`; anything else is logged and answered 404.
pub fn router(config: Config) -> Router {
    let state = Arc::new(AppState {
        config,
        seq: AtomicU64::new(1),
    });
    let route = |p: Protocol| {
        move |st: State<Arc<AppState>>, uri: OriginalUri, headers: HeaderMap, body: Bytes| {
            handle(st, p, uri, headers, body)
        }
    };
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        // Claude Code's connectivity probe (sent unless CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC).
        .route("/api/hello", get(|| async { "ok\n" }).head(|| async {}))
        .route("/v1/messages", post(route(Protocol::Anthropic)))
        .route("/messages", post(route(Protocol::Anthropic)))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/messages/count_tokens", post(count_tokens))
        .route("/v1/responses", post(route(Protocol::Responses)))
        .route("/responses", post(route(Protocol::Responses)))
        .route("/v1/chat/completions", post(route(Protocol::Chat)))
        .route("/chat/completions", post(route(Protocol::Chat)))
        .route("/v1beta/models/{model_method}", post(gemini_route))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

fn user_agent(headers: &HeaderMap) -> &str {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
}

async fn fallback(method: Method, uri: OriginalUri, headers: HeaderMap) -> Response {
    info!("{method} {} unhandled -> 404 ua={}", uri.0, user_agent(&headers));
    (
        StatusCode::NOT_FOUND,
        Json(anthropic::error_body(
            "not_found_error",
            &format!("scripted-model does not serve {method} {}", uri.0.path()),
        )),
    )
        .into_response()
}

async fn count_tokens(uri: OriginalUri, body: Bytes) -> Response {
    let model = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("model").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    info!("POST {} model={model} count_tokens bytes={}", uri.0, body.len());
    Json(anthropic::count_tokens(body.len())).into_response()
}

/// The Gemini API route: `countTokens` is answered at once; `generateContent` and
/// `streamGenerateContent` go to [`handle`], with a `?key=` query parameter moved to the
/// `x-goog-api-key` header (so it is checked like the header and never logged).
async fn gemini_route(
    st: State<Arc<AppState>>,
    Path(model_method): Path<String>,
    OriginalUri(uri): OriginalUri,
    mut headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = uri.query().unwrap_or_default();
    if let Some(key) = gemini::query_key(query) {
        if let (false, Ok(v)) = (headers.contains_key("x-goog-api-key"), HeaderValue::from_str(key)) {
            headers.insert("x-goog-api-key", v);
        }
    }
    let shown = match gemini::query_without_key(query) {
        Some(q) => format!("{}?{q}", uri.path()),
        None => uri.path().to_string(),
    };
    let uri: Uri = shown.parse().unwrap_or_else(|_| Uri::from_static("/v1beta/models"));
    match gemini::split_model_method(&model_method) {
        Some((model, gemini::COUNT_METHOD)) => {
            info!("POST {uri} model={model} countTokens bytes={}", body.len());
            Json(gemini::count_tokens(body.len())).into_response()
        }
        Some((_, gemini::STREAM_METHOD | gemini::JSON_METHOD)) => {
            handle(st, Protocol::Gemini, OriginalUri(uri), headers, body).await
        }
        _ => {
            info!("POST {uri} unhandled Gemini method -> 404");
            Protocol::Gemini.error(
                StatusCode::NOT_FOUND,
                &format!("scripted-model does not serve POST {}", uri.path()),
            )
        }
    }
}

async fn handle(
    State(state): State<Arc<AppState>>,
    protocol: Protocol,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            info!("POST {uri} bad JSON body: {e} -> 400");
            return protocol.error(StatusCode::BAD_REQUEST, &format!("request body is not JSON: {e}"));
        }
    };
    let mut req = protocol.parse(&value, &uri);
    if tracing::enabled!(tracing::Level::DEBUG) {
        // Names only: header values may hold API keys.
        let names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        let keys: Vec<&str> = value
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let tools: Vec<&str> = req.tools.iter().map(|t| t.name.as_str()).collect();
        tracing::debug!(
            "POST {uri} bytes={} headers=[{}] body_keys=[{}] tools=[{}]",
            body.len(),
            names.join(","),
            keys.join(","),
            tools.join(",")
        );
    }
    if tracing::enabled!(tracing::Level::TRACE) {
        // The newest history item (usually the tool result the CLI sends back). It may contain
        // whatever the tool printed, secrets included, so only at trace level.
        let last = ["messages", "input"]
            .iter()
            .find_map(|k| value.get(*k).and_then(Value::as_array).and_then(|a| a.last()))
            .map(|v| v.to_string())
            .unwrap_or_default();
        let cut: String = last.chars().take(2000).collect();
        tracing::trace!("POST {uri} last history item: {cut}");
    }
    let header_script = headers.get(SCRIPT_HEADER).and_then(|v| v.to_str().ok());
    let name = header_script.unwrap_or_else(|| script_name_for_model(&req.model));
    // A CLI that edits through text blocks (aider) offers no tools: a script with a
    // `text_marker` plays its requests (Script::text_turn); other tool-less requests are side.
    let text_turn = match protocol {
        Protocol::Chat if req.tools.is_empty() => {
            let (system, assistant) = chat::text_history(&value);
            load_script(&state.config.scripts_dir, name, &req.model)
                .await
                .ok()
                .and_then(|s| s.text_turn(&system, &assistant))
        }
        _ => None,
    };
    if let Some(turn) = text_turn {
        req.history_turns = turn;
    }
    let reply = if req.tools.is_empty() && text_turn.is_none() {
        let mut side = Reply::side();
        if protocol == Protocol::Gemini && gemini::wants_json(&value) {
            // Gemini CLI's internal checks (next speaker) parse the answer as JSON.
            side.text = Some(gemini::side_json(&value));
        }
        side
    } else {
        match load_script(&state.config.scripts_dir, name, &req.model).await {
            Ok(script) => {
                if let Some(want) = &script.require_key {
                    let sent = ["x-api-key", "x-goog-api-key", "authorization"].iter().find_map(|h| {
                        headers
                            .get(*h)
                            .and_then(|v| v.to_str().ok())
                            .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).to_string())
                    });
                    if sent.as_deref() != Some(want.as_str()) {
                        info!(
                            "POST {uri} model={} script={name} -> 401: wrong or missing API key",
                            req.model
                        );
                        return protocol.error(StatusCode::UNAUTHORIZED, "invalid x-api-key");
                    }
                }
                if let Some(code) = script.turn(req.history_turns).and_then(|t| t.status) {
                    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                    info!("POST {uri} model={} script={name} -> scripted {code}", req.model);
                    return protocol.error(code, "scripted: the model endpoint is unavailable");
                }
                plan(&script, req.history_turns, &req.tools, &req.last_input)
            }
            Err(e) => {
                info!("POST {uri} model={} script={name} -> 400: {e}", req.model);
                return protocol.error(StatusCode::BAD_REQUEST, &e.to_string());
            }
        }
    };
    let seq = state.seq.fetch_add(1, Ordering::Relaxed);
    info!(
        "POST {uri} model={} script={name} stream={} history_turns={} tools={} {} ua={}",
        req.model,
        req.stream,
        req.history_turns,
        req.tools.len(),
        reply.describe(),
        user_agent(&headers)
    );
    if req.stream {
        let plan = protocol.render_stream(&reply, &req.model, seq);
        sse_response(plan, reply.sleep, state.config.keepalive, seq)
    } else {
        if !reply.sleep.is_zero() {
            tokio::time::sleep(reply.sleep).await;
        }
        Json(protocol.render_json(&reply, &req.model, seq)).into_response()
    }
}

/// Streams `plan`: head frames at once, keepalives every `every` during `sleep`, then the
/// tail. Stops quietly when the client goes away.
fn sse_response(plan: StreamPlan, sleep: Duration, every: Duration, seq: u64) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
    tokio::spawn(async move {
        for frame in plan.head {
            if tx.send(frame).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + sleep;
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            let wake = (now + every.max(Duration::from_millis(10))).min(deadline);
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = tx.closed() => {
                    info!("reply {seq}: client went away during the turn's sleep");
                    return;
                }
            }
            if wake < deadline && tx.send(plan.keepalive.clone()).await.is_err() {
                return;
            }
        }
        for frame in plan.tail {
            if tx.send(frame).await.is_err() {
                return;
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(Ok::<_, Infallible>)));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}
