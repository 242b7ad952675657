//! The files the pages load from `/assets/`, compiled into the binary: the console's own script
//! and style (`assets/console.js`, `assets/console.css`) and the browser libraries vendored from
//! npm at pinned versions with their licences (`assets/vendor/`, see `VERSIONS` and
//! `update.sh` there): htmx 2.0.11 and htmx-ext-sse 2.2.4 (0BSD), diff2html 3.4.56 (MIT; its UI
//! bundle carries jsdiff (BSD-3-Clause), hogan.js (Apache-2.0) and highlight.js (BSD-3-Clause)),
//! highlight.js's GitHub theme. No CDN: the console works offline.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// (name, content type, bytes) of every asset.
pub const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/console.css"),
    ),
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/vendor/htmx.min.js"),
    ),
    (
        "htmx-ext-sse.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/vendor/htmx-ext-sse.min.js"),
    ),
    (
        "diff2html-ui-slim.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/vendor/diff2html-ui-slim.min.js"),
    ),
    (
        "diff2html.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/vendor/diff2html.min.css"),
    ),
    (
        "highlight-github.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/vendor/highlight-github.min.css"),
    ),
];

/// `GET /assets/<file>`: the asset, or 404.
pub async fn serve(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == file) {
        Some((_, ty, bytes)) => ([(header::CONTENT_TYPE, *ty)], *bytes).into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
