//! The claim pushed by the operator ([`paddock_crds::runner::ClaimPush`]): an idle warm pod's
//! `gateway` container listens on [`CLAIM_PORT`] and takes the first push that carries the
//! operator's signature for this pod, without waiting for the kubelet to project the claim
//! annotation into the downward API volume (about 150 ms on an idle node, over a second when
//! the kubelet is busy). The annotation stays the record: the gateway also keeps reading it,
//! and takes whichever arrives first.
//!
//! Trust: the listener is reachable only from the operator's pods (the pool's `<pool>-runners`
//! NetworkPolicy), and whatever reaches it must verify against the operator's public key and
//! this pod's UID, as the annotation must ([`super::read_claim`]). A replayed push is the same
//! claim for the same pod. Before the claim nothing but Paddock's own code runs in the pod; the
//! listener is closed once the claim is taken, before the agent starts.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use paddock_crds::runner::{ClaimPush, CLAIM_PATH, MAX_CLAIM_PUSH_BYTES};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

pub use paddock_crds::runner::CLAIM_PORT;

/// Connections served at once (others wait in the listen backlog): only the operator pushes.
const MAX_CONNECTIONS: usize = 8;

/// How long a connection may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection is served in all (the operator's push takes milliseconds).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the claim listener on all of the pod's addresses, port `port` ([`CLAIM_PORT`] in a
/// pod; `0` in tests).
///
/// # Errors
/// The socket's bind error (e.g. the port is taken).
pub async fn bind(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(("0.0.0.0", port)).await
}

/// What a push's body says, checked: `Ok(claim value)` when it is a [`ClaimPush`] whose
/// signature verifies against `public_key` (base64) for the pod `pod_uid`; else the answer's
/// status (`400` not a claim push, `403` not signed for this pod).
pub fn check(body: &[u8], public_key: &str, pod_uid: &str) -> Result<String, StatusCode> {
    let push: ClaimPush = serde_json::from_slice(body).map_err(|_| StatusCode::BAD_REQUEST)?;
    let message = paddock_crds::verdict::claim_message(&push.claim, pod_uid);
    if pod_uid.is_empty() || !paddock_crds::verdict::verify(public_key, &message, &push.signature) {
        return Err(StatusCode::FORBIDDEN);
    }
    Ok(push.claim)
}

fn answer(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = status;
    r
}

async fn handle(
    req: Request<Incoming>,
    public_key: Arc<str>,
    pod_uid: Arc<str>,
    taken: mpsc::Sender<String>,
) -> Response<Full<Bytes>> {
    if req.uri().path() != CLAIM_PATH {
        return answer(
            StatusCode::NOT_FOUND,
            "paddock gateway: only POST /claim is served here",
        );
    }
    if req.method() != Method::POST {
        return answer(StatusCode::METHOD_NOT_ALLOWED, "paddock gateway: POST the claim");
    }
    let body = match Limited::new(req.into_body(), MAX_CLAIM_PUSH_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return answer(StatusCode::PAYLOAD_TOO_LARGE, "paddock gateway: the claim is too large"),
    };
    match check(&body, &public_key, &pod_uid) {
        Ok(value) => {
            // A second valid push (a retry) finds the channel full or closed: the claim is taken.
            let _ = taken.try_send(value);
            answer(StatusCode::NO_CONTENT, "")
        }
        Err(status) => {
            eprintln!("paddock-runner gateway: refused a claim push ({status})");
            answer(
                status,
                "paddock gateway: not a claim signed for this pod by the operator",
            )
        }
    }
}

/// Serves claim pushes on `listener` until one verifies ([`check`]) and returns its claim
/// value (the annotation's: [`paddock_crds::runner::Claim::decode`] reads it). Dropping the
/// future closes the listener.
pub async fn accept_claim(listener: TcpListener, public_key: &str, pod_uid: &str) -> String {
    let (tx, mut rx) = mpsc::channel::<String>(1);
    let (key, uid): (Arc<str>, Arc<str>) = (public_key.into(), pod_uid.into());
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            Some(value) = rx.recv() => return value,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    continue; // dropped: more connections than the operator opens
                };
                let _ = stream.set_nodelay(true);
                let (key, uid, tx) = (key.clone(), uid.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    let svc = hyper::service::service_fn(move |req| {
                        let (key, uid, tx) = (key.clone(), uid.clone(), tx.clone());
                        async move { Ok::<_, Infallible>(handle(req, key, uid, tx).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEAD_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), svc);
                    // A caller that trickles its body holds a connection for this long at most.
                    let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
