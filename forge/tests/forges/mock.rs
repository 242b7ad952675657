//! A local forge: answers requests with recorded JSON by method and path, and records each
//! request's method, path and query, headers and body.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// One request the server received.
#[derive(Clone, Debug)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query, as sent (percent-encoding kept).
    pub uri: String,
    pub headers: HeaderMap,
    /// The body as JSON (`Null` when empty, a string when not JSON).
    pub body: serde_json::Value,
}

impl Request {
    /// The one value of header `name` ("" when absent); panics when sent twice.
    pub fn header(&self, name: &str) -> &str {
        let mut all = self.headers.get_all(name).iter();
        let first = all.next().map(|v| v.to_str().unwrap()).unwrap_or_default();
        assert!(all.next().is_none(), "{name} sent more than once: {:?}", self.headers);
        first
    }

    /// `METHOD path?query`.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.uri)
    }
}

struct Route {
    method: Method,
    path: String,
    answers: VecDeque<(u16, String)>,
}

#[derive(Clone, Default)]
struct Shared {
    routes: Arc<Mutex<Vec<Route>>>,
    log: Arc<Mutex<Vec<Request>>>,
}

/// The server; it stops with the test's runtime.
pub struct Mock {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    shared: Shared,
}

async fn answer(State(s): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let parsed = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    s.log.lock().unwrap().push(Request {
        method: method.to_string(),
        uri: uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        headers,
        body: parsed,
    });
    let mut routes = s.routes.lock().unwrap();
    let Some(route) = routes.iter_mut().find(|r| r.method == method && r.path == uri.path()) else {
        return (StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#).into_response();
    };
    let (status, text) = if route.answers.len() > 1 {
        route.answers.pop_front().unwrap()
    } else {
        route.answers[0].clone()
    };
    let content_type = if text.starts_with('{') || text.starts_with('[') {
        "application/json"
    } else {
        "text/html"
    };
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", content_type)],
        text,
    )
        .into_response()
}

impl Mock {
    /// Starts a server on 127.0.0.1 and a free port.
    pub async fn start() -> Mock {
        let shared = Shared::default();
        let app = axum::Router::new().fallback(answer).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Mock { base, shared }
    }

    /// Answers `method path` (path without query) with `status` and `body`. Several answers for
    /// one route are given in turn, the last one from then on.
    pub fn on(&self, method: &str, path: &str, status: u16, body: impl Into<String>) -> &Self {
        let method: Method = method.parse().unwrap();
        let mut routes = self.shared.routes.lock().unwrap();
        match routes.iter_mut().find(|r| r.method == method && r.path == path) {
            Some(r) => r.answers.push_back((status, body.into())),
            None => routes.push(Route {
                method,
                path: path.to_string(),
                answers: VecDeque::from([(status, body.into())]),
            }),
        }
        self
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.log.lock().unwrap().clone()
    }

    /// `METHOD path?query` of each request received so far.
    pub fn lines(&self) -> Vec<String> {
        self.requests().iter().map(Request::line).collect()
    }
}
