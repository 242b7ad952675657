//! The walls of a local web server that holds the user's credentials:
//!
//! - it listens on 127.0.0.1 only, and answers only requests whose `Host` is
//!   `127.0.0.1:<port>` or `localhost:<port>` (no DNS rebinding);
//! - every request needs the per-start token: in the printed URL (`/?token=…`) the first
//!   time, which sets the cookie `paddock_console_<port>` (HttpOnly, SameSite=Strict) and
//!   redirects to the same path without it; then the cookie;
//! - every write (any method but GET/HEAD) also needs the per-start CSRF token in the header
//!   `X-Paddock-Csrf` (the pages' htmx sends it; a custom header cannot cross origins without a
//!   CORS preflight, which this server never grants), and an `Origin` and `Sec-Fetch-Site`, when
//!   the browser sends them, of this origin;
//! - every answer carries a `Content-Security-Policy` that allows scripts, styles and
//!   connections from this origin only (no inline script, no eval, no inline style), plus
//!   `X-Content-Type-Options`, `X-Frame-Options`, `Referrer-Policy` and `Cache-Control: no-store`.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

/// The header that carries the CSRF token on writes.
pub const CSRF_HEADER: &str = "X-Paddock-Csrf";

/// The Content-Security-Policy of every answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The per-start secrets: 32 random bytes each, hex.
#[derive(Clone)]
pub struct Secrets {
    /// The access token (URL, then cookie).
    pub token: String,
    /// The CSRF token (pages, then `X-Paddock-Csrf`).
    pub csrf: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets { .. }")
    }
}

impl Secrets {
    /// Two fresh tokens from the system's random source.
    ///
    /// # Errors
    /// When the system has no random source (ring's `Unspecified`).
    pub fn generate() -> Result<Self, ring::error::Unspecified> {
        use ring::rand::SecureRandom;
        let rng = ring::rand::SystemRandom::new();
        let hex = || -> Result<String, ring::error::Unspecified> {
            let mut b = [0u8; 32];
            rng.fill(&mut b)?;
            Ok(b.iter().map(|x| format!("{x:02x}")).collect())
        };
        Ok(Secrets {
            token: hex()?,
            csrf: hex()?,
        })
    }
}

/// Compares two strings in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The cookie name of the console on `port` (cookies do not separate ports).
pub fn cookie_name(port: u16) -> String {
    format!("paddock_console_{port}")
}

/// What [`check`] decided about one request.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Serve it.
    Pass,
    /// The URL carried the right token: set the cookie, redirect to this path (token removed).
    SetCookie {
        /// Where to redirect (path and the other query parameters).
        location: String,
    },
    /// Refuse with this status and text.
    Refuse(StatusCode, &'static str),
}

/// Decides whether a request may be served. Pure: `port` is the listening port, `method`,
/// `uri` (path and query) and `headers` are the request's.
pub fn check(s: &Secrets, port: u16, method: &Method, uri: &axum::http::Uri, headers: &HeaderMap) -> Verdict {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if host != format!("127.0.0.1:{port}") && host != format!("localhost:{port}") {
        return Verdict::Refuse(StatusCode::MISDIRECTED_REQUEST, "unexpected Host header");
    }
    let query = uri.query().unwrap_or("");
    let token_in_url = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "token");
    if let Some((_, t)) = token_in_url {
        if (method == Method::GET || method == Method::HEAD) && same(&t, &s.token) {
            let rest: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k != "token"))
                .finish();
            let location = if rest.is_empty() {
                uri.path().to_string()
            } else {
                format!("{}?{rest}", uri.path())
            };
            return Verdict::SetCookie { location };
        }
        return Verdict::Refuse(
            StatusCode::UNAUTHORIZED,
            "wrong token: open the URL `kubectl paddock console` printed",
        );
    }
    let name = cookie_name(port);
    let has_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .any(|(k, v)| k == name && same(v, &s.token));
    if !has_cookie {
        return Verdict::Refuse(
            StatusCode::UNAUTHORIZED,
            "no console token: open the URL `kubectl paddock console` printed",
        );
    }
    if method == Method::GET || method == Method::HEAD {
        return Verdict::Pass;
    }
    let csrf_ok = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| same(v, &s.csrf));
    if !csrf_ok {
        return Verdict::Refuse(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        if origin != format!("http://127.0.0.1:{port}") && origin != format!("http://localhost:{port}") {
            return Verdict::Refuse(StatusCode::FORBIDDEN, "cross-origin write refused");
        }
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" {
            return Verdict::Refuse(StatusCode::FORBIDDEN, "cross-site write refused");
        }
    }
    Verdict::Pass
}

/// Adds the security headers to an answer.
pub fn harden(resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}
