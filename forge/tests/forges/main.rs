//! The GitHub and GitLab clients against recorded answers served by a local server, and their
//! webhook readers against recorded deliveries (`forge/testdata/github-*`, `gitlab-*`).

mod github;
mod gitlab;
mod mock;

/// A recorded answer or delivery from `forge/testdata/`.
fn testdata(name: &str) -> String {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A header map from name/value pairs.
fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, http::HeaderValue::from_str(v).unwrap());
    }
    h
}
