//! The egress half of the proxy: `CONNECT host:port` tunnels and absolute-form `http://`
//! requests, to the hosts of the run's allowlist only. Request bodies are streamed through, never
//! buffered.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::StreamExt;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;

use super::config::allowed;
use super::record::{full, out, Body};
use super::{strip, Proxy, HOP_BY_HOP};

impl Proxy {
    /// Answers 403 for `host:port` and records the first
    /// [`super::super::signals::MAX_DENIALS`] refusals (`egress_denied` on stdout and in the
    /// workspace's `egress-denied.jsonl`).
    pub(super) fn deny(&self, host: &str, port: u16) -> Response<Body> {
        // Recorded up to the number the runner reports; a looping agent must not grow the
        // workspace file, the gateway's log or the runner's re-reads without bound.
        if self.denials.fetch_add(1, Ordering::Relaxed) < super::super::signals::MAX_DENIALS {
            let host = paddock_crds::events::truncate(host, 253);
            let line = json!({"type": "egress_denied", "host": host, "port": port});
            out(&line);
            let _ = std::fs::create_dir_all(&self.cfg.control_dir);
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(super::super::signals::denied_file_in(&self.cfg.control_dir))
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

    /// A `CONNECT host:port` tunnel.
    pub(super) fn connect(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
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
            // A tunnel counts as a connection for as long as it is open (the client
            // connection's own slot is released once it is upgraded).
            let Ok(_slot) = self.connections.clone().acquire_owned().await else {
                return;
            };
            let upstream = match &self.cfg.uplink {
                Some(u) => u.connect_async(&host, port, true).await,
                None => TcpStream::connect((host.as_str(), port)).await,
            };
            splice(upgraded, upstream).await;
        });
        Response::new(http_body_util::Empty::new().map_err(|e: Infallible| match e {}).boxed())
    }

    /// An absolute-form `http://` request, forwarded with its body streamed.
    pub(super) async fn forward_plain(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
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
        let mut headers = parts.headers.clone();
        strip(&mut headers);
        // On the agent's behalf: the egress gateway refuses destinations never the agent's.
        headers.insert(
            paddock_crds::egress::CLASS_HEADER,
            hyper::header::HeaderValue::from_static(paddock_crds::egress::CLASS_AGENT),
        );
        let body = reqwest::Body::wrap_stream(body.into_data_stream());
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
}

/// Joins a `CONNECT` client's upgraded connection to `upstream` (when it connected) until either
/// side closes; used by the pod gateway and the egress gateway alike.
pub(crate) async fn splice(upgraded: hyper::upgrade::Upgraded, upstream: std::io::Result<TcpStream>) {
    let Ok(mut upstream) = upstream else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let mut client = TokioIo::new(upgraded);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// `resp` as the proxy's answer: status, the headers that are not hop-by-hop, the body streamed.
pub(crate) fn passthrough(resp: reqwest::Response) -> Response<Body> {
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
        .body(BodyExt::boxed(http_body_util::StreamBody::new(stream)))
        .unwrap_or_else(|e| full(StatusCode::BAD_GATEWAY, format!("paddock gateway: {e}\n")))
}

#[cfg(test)]
mod tests {
    use super::super::config::{Allow, ProxyConfig, DEFAULT_ADDR};
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
    fn refusals_are_all_answered_403_but_recorded_only_up_to_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ProxyConfig::new(DEFAULT_ADDR.parse().unwrap(), vec![], dir.path());
        cfg.egress = Some(vec![]);
        cfg.control_dir = dir.path().to_path_buf();
        let proxy = Proxy::new(cfg).unwrap();
        let n = super::super::super::signals::MAX_DENIALS + 50;
        for _ in 0..n {
            assert_eq!(proxy.deny("blocked.example", 443).status(), StatusCode::FORBIDDEN);
        }
        let text = std::fs::read_to_string(super::super::super::signals::denied_file_in(dir.path())).unwrap();
        assert_eq!(text.lines().count(), super::super::super::signals::MAX_DENIALS);
        assert_eq!(
            super::super::super::signals::denials(&text).len(),
            super::super::super::signals::MAX_DENIALS
        );
    }
}
