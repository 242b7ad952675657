//! What the proxy answers on its own (refusals in each vendor's error shape) and what it prints
//! on its log: the transcript, the upstream's status of model calls (`gateway_model_status`) and
//! its refusals (`gateway_refused`). Every line the agent can cause is bounded in number or in
//! bytes, so a looping agent cannot crowd the gateway's other facts out of its log.

use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use paddock_crds::gateway::{GatewayLine, ModelStatus};
use serde_json::{json, Value};

/// A response body.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// Each request or response body in the transcript is cut at this many bytes.
pub const TRANSCRIPT_BODY_BYTES: usize = 64 << 10;
/// The transcript lines of one run add up to at most this many bytes; later exchanges are
/// counted but not recorded (a `transcript_truncated` line says so once).
pub const TRANSCRIPT_MAX_BYTES: usize = 4 << 20;
/// `gateway_refused` lines printed at most; later refusals are only counted
/// (`refused_requests` of the `gateway_usage` line).
pub const MAX_REFUSAL_LINES: u64 = 100;
/// `gateway_model_status` lines printed at most (one per change of route or status), then one
/// `gateway_model_status_truncated`.
pub const MAX_STATUS_LINES: u64 = 10_000;

/// Prints one JSON line on the gateway's stdout (its log, which the agent cannot write).
pub fn out(line: &Value) {
    println!("{line}");
}

/// A plain-text response.
pub fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).map_err(|e: Infallible| match e {}).boxed());
    *r.status_mut() = status;
    r
}

/// Why the gateway answered a model call itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not an endpoint the route forwards (403).
    EndpointNotAllowed,
    /// The request body is larger than the limit (413).
    BodyTooLarge,
    /// The request body is not what the API takes, or is ambiguous (400).
    BadRequest,
    /// The model has no price under `budget.maxCostUSD` (403).
    UnpricedModel,
    /// A budget is reached (403; not 429, which CLIs retry).
    BudgetExceeded,
    /// Every slot, or the budget's remainder, stayed taken for the queue wait (429, retry).
    Busy,
}

impl Refusal {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::EndpointNotAllowed | Refusal::UnpricedModel | Refusal::BudgetExceeded => StatusCode::FORBIDDEN,
            Refusal::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BadRequest => StatusCode::BAD_REQUEST,
            Refusal::Busy => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The CamelCase reason of the `gateway_refused` line.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::EndpointNotAllowed => "EndpointNotAllowed",
            Refusal::BodyTooLarge => "BodyTooLarge",
            Refusal::BadRequest => "BadRequest",
            Refusal::UnpricedModel => "UnpricedModel",
            Refusal::BudgetExceeded => "BudgetExceeded",
            Refusal::Busy => "Busy",
        }
    }

    /// `(Anthropic error type, OpenAI error type, OpenAI code, Gemini status)`.
    fn vendor_kinds(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Refusal::EndpointNotAllowed => (
                "permission_error",
                "invalid_request_error",
                "endpoint_not_allowed",
                "PERMISSION_DENIED",
            ),
            Refusal::BodyTooLarge => (
                "request_too_large",
                "invalid_request_error",
                "request_too_large",
                "INVALID_ARGUMENT",
            ),
            Refusal::BadRequest => (
                "invalid_request_error",
                "invalid_request_error",
                "invalid_request",
                "INVALID_ARGUMENT",
            ),
            Refusal::UnpricedModel => (
                "permission_error",
                "invalid_request_error",
                "model_not_priced",
                "PERMISSION_DENIED",
            ),
            Refusal::BudgetExceeded => (
                "permission_error",
                "insufficient_quota",
                "budget_exceeded",
                "PERMISSION_DENIED",
            ),
            Refusal::Busy => (
                "rate_limit_error",
                "requests",
                "rate_limit_exceeded",
                "RESOURCE_EXHAUSTED",
            ),
        }
    }
}

/// The refusal `why` as `route`'s vendor shapes its errors (Anthropic
/// `{"type":"error","error":{"type","message"}}`, Gemini `{"error":{"code","status","message"}}`,
/// OpenAI and OpenRouter `{"error":{"type","code","message"}}`), with `retry-after: 1` on 429.
pub fn vendor_error(route: &str, why: Refusal, message: &str) -> Response<Body> {
    let (anthropic, openai_type, openai_code, gemini) = why.vendor_kinds();
    let status = why.status();
    let body = match route {
        "anthropic" => json!({"type": "error", "error": {"type": anthropic, "message": message}}),
        "gemini" => json!({"error": {"code": status.as_u16(), "status": gemini, "message": message}}),
        _ => json!({"error": {"type": openai_type, "code": openai_code, "param": null, "message": message}}),
    };
    let mut r = full(status, body.to_string());
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if why == Refusal::Busy {
        r.headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// `s` cut at `max` bytes (on a character boundary), noting how much was cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[{} bytes cut]", &s[..end], s.len() - end)
}

/// `b` as text (invalid UTF-8 replaced), cut at `max` bytes, noting how much was cut.
pub fn cut_bytes(b: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&b[..b.len().min(max)]);
    if b.len() <= max {
        return text.into_owned();
    }
    format!("{text}…[{} bytes cut]", b.len() - max)
}

/// One model exchange for the transcript.
pub struct Exchange<'a> {
    /// Route name.
    pub route: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Upstream path.
    pub path: &'a str,
    /// Upstream status.
    pub status: u16,
    /// Model, tokens and USD, when metered.
    pub model: Option<&'a str>,
    /// Input tokens (uncached).
    pub input_tokens: Option<u64>,
    /// Output tokens.
    pub output_tokens: Option<u64>,
    /// USD.
    pub cost_usd: Option<f64>,
    /// The usage was unknown and the reservation was charged.
    pub estimated: bool,
    /// Request body (already cut at [`TRANSCRIPT_BODY_BYTES`]).
    pub request: &'a str,
    /// Response body (already cut).
    pub response: &'a str,
}

/// The proxy's log lines that are not usage.
#[derive(Debug, Default)]
pub struct Recorder {
    transcript_bytes: AtomicUsize,
    seq: AtomicU64,
    refusals: AtomicU64,
    /// The last `gateway_model_status` printed (route, status) and how many were.
    status: Mutex<(Option<(String, u16)>, u64)>,
    /// Upstream calls made.
    calls: AtomicU64,
}

impl Recorder {
    /// Prints the exchange's `transcript` line (redacted of `secrets`), within
    /// [`TRANSCRIPT_MAX_BYTES`].
    pub fn transcript(&self, x: &Exchange, secrets: &[String]) {
        let redact = |s: &str| paddock_crds::events::redact(&cut(s, TRANSCRIPT_BODY_BYTES), secrets);
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let mut line = json!({
            "type": "transcript",
            "seq": seq,
            "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "route": x.route,
            "method": x.method,
            "path": x.path,
            "status": x.status,
            "model": x.model,
            "input_tokens": x.input_tokens,
            "output_tokens": x.output_tokens,
            "cost_usd": x.cost_usd,
            "request": redact(x.request),
            "response": redact(x.response),
        });
        if x.estimated {
            line["estimated"] = json!(true);
        }
        let text = line.to_string();
        let before = self.transcript_bytes.fetch_add(text.len(), Ordering::Relaxed);
        if before + text.len() <= TRANSCRIPT_MAX_BYTES {
            println!("{text}");
        } else if before <= TRANSCRIPT_MAX_BYTES {
            out(&json!({"type": "transcript_truncated", "seq": seq, "limit_bytes": TRANSCRIPT_MAX_BYTES}));
        }
    }

    /// Records the upstream's answer to a model call: `status` (502 with `error` when the
    /// upstream could not be reached). Writes `<control>/model-status` (`{"status": N}`, read
    /// by the agent container's runner) and prints `{"type":"gateway_model_status","route",
    /// "status","calls"[,"error"]}` whenever route or status differ from the last line printed
    /// (at most [`MAX_STATUS_LINES`], then one `gateway_model_status_truncated` line: the last
    /// status line is no longer current); `calls` counts the upstream calls so far.
    pub fn model_status(&self, control_dir: &Path, route: &str, status: u16, error: Option<&str>) {
        let calls = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        // One writer at a time: `write_atomic`'s temporary file is per process.
        let mut last = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let _ = std::fs::create_dir_all(control_dir);
        let _ = crate::workspace::write_atomic(
            &control_dir.join("model-status"),
            json!({"status": status}).to_string().as_bytes(),
        );
        let key = (route.to_string(), status);
        if last.0.as_ref() == Some(&key) || last.1 > MAX_STATUS_LINES {
            return;
        }
        if last.1 == MAX_STATUS_LINES {
            // From here on the last line printed is no longer the current status.
            out(&GatewayLine::GatewayModelStatusTruncated {
                calls,
                limit_lines: MAX_STATUS_LINES,
            }
            .to_value());
            last.1 += 1;
            return;
        }
        out(&GatewayLine::GatewayModelStatus(ModelStatus {
            route: route.to_string(),
            status,
            calls,
            error: error.map(|e| paddock_crds::events::truncate(e, 512)),
        })
        .to_value());
        *last = (Some(key), last.1 + 1);
    }

    /// Prints a `gateway_refused` line (route, method, path cut at 256 bytes, status, reason,
    /// message), the first [`MAX_REFUSAL_LINES`] times.
    pub fn refused(&self, route: &str, method: &str, path: &str, why: Refusal, message: &str, secrets: &[String]) {
        if self.refusals.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSAL_LINES {
            return;
        }
        let path = paddock_crds::events::redact(&paddock_crds::events::truncate(path, 256), secrets);
        out(&json!({
            "type": "gateway_refused",
            "route": route,
            "method": paddock_crds::events::truncate(method, 16),
            "path": path,
            "status": why.status().as_u16(),
            "reason": why.reason(),
            "message": paddock_crds::events::redact(&paddock_crds::events::truncate(message, 1024), secrets),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_bodies_are_cut_on_a_char_boundary() {
        let s = "é".repeat(10);
        let c = cut(&s, 5);
        assert!(c.starts_with("éé") && c.contains("bytes cut"), "{c}");
        assert_eq!(cut("short", 10), "short");
    }

    #[test]
    fn status_lines_follow_changes_up_to_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let r = Recorder::default();
        r.status.lock().unwrap().1 = MAX_STATUS_LINES - 1;
        r.model_status(dir.path(), "openai", 200, None);
        r.model_status(dir.path(), "openai", 200, None);
        assert_eq!(r.status.lock().unwrap().1, MAX_STATUS_LINES);
        r.model_status(dir.path(), "openai", 503, None);
        r.model_status(dir.path(), "openai", 200, None);
        assert_eq!(r.status.lock().unwrap().1, MAX_STATUS_LINES + 1);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("model-status")).unwrap(),
            r#"{"status":200}"#
        );
    }

    #[tokio::test]
    async fn refusals_take_each_vendors_error_shape() {
        let body = |r: Response<Body>| async move {
            let bytes = r.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        };
        let r = vendor_error("anthropic", Refusal::EndpointNotAllowed, "no");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(body(r).await["error"]["type"], "permission_error");
        let r = vendor_error("openai", Refusal::BodyTooLarge, "big");
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body(r).await["error"]["code"], "request_too_large");
        let r = vendor_error("gemini", Refusal::Busy, "wait");
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(body(r).await["error"]["status"], "RESOURCE_EXHAUSTED");
    }
}
