//! What the gateway forwards and how much of it, against the real `paddock-runner gateway`
//! process and a scripted model upstream (`gateway_harness`): only the endpoints it meters (and
//! harmless reads), bounded request bodies, bounded model calls in flight, and its own record of
//! the upstream's status for every call.

mod gateway_harness;

use std::time::{Duration, Instant};

use gateway_harness::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Attack: use the gateway's key for endpoints that bill without being metered (batches, files,
/// fine-tuning, …) or read other runs' data. Each is refused 403 in the vendor's error shape and
/// recorded; the upstream never sees it. Model listings and token counting still pass.
#[tokio::test]
async fn only_metered_endpoints_are_forwarded() {
    let up = Upstream::start(Script {
        input_tokens: 10,
        output_tokens: 5,
        delay: Duration::ZERO,
    })
    .await;
    let dir = tempdir();
    let gw = start_gateway(dir.path(), up.addr, &[]);
    let c = client();
    let refused = [
        ("POST", "/openai/batches"),
        ("POST", "/openai/v1/batches"),
        ("POST", "/openai/files"),
        ("POST", "/openai/fine_tuning/jobs"),
        ("POST", "/openai/embeddings"),
        ("GET", "/openai/responses/resp_123"),
        ("DELETE", "/openai/models/ft:gpt-4o:org::x"),
        ("POST", "/openai/chat/completions/../../files"),
        ("POST", "/anthropic/v1/messages/batches"),
        ("POST", "/anthropic/v1/files"),
        ("GET", "/anthropic/v1/messages"),
        ("POST", "/anthropic/v1/messages%2F..%2Ffiles"),
    ];
    for (method, path) in refused {
        let req = c
            .request(method.parse().unwrap(), gw.url(path))
            .header("x-api-key", "paddock-placeholder-key")
            .json_body(&json!({"model": "scripted-x", "input_file_id": "file-1"}));
        let (status, body) = send(req).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        if path.starts_with("/anthropic") {
            assert_eq!(body["type"], "error", "{body}");
            assert_eq!(body["error"]["type"], "permission_error", "{body}");
        } else {
            assert_eq!(body["error"]["code"], "endpoint_not_allowed", "{body}");
        }
        assert!(
            body["error"]["message"].as_str().unwrap().contains("is not forwarded"),
            "{body}"
        );
    }
    assert!(up.seen().is_empty(), "the upstream saw {:?}", up.seen());
    let lines = gw.wait_lines("gateway_refused", refused.len());
    assert_eq!(lines.len(), refused.len());
    assert!(lines
        .iter()
        .all(|l| l["reason"] == "EndpointNotAllowed" && l["status"] == 403));
    assert_eq!(lines[0]["path"], "/batches");
    // The harmless ones go through, with the real key.
    let (status, _) = send(c.get(gw.url("/openai/models"))).await;
    assert_eq!(status, 200);
    let (status, _) = send(
        c.post(gw.url("/anthropic/v1/messages/count_tokens"))
            .json_body(&json!({"messages": []})),
    )
    .await;
    assert_eq!(status, 200);
    let seen = up.seen();
    let paths: Vec<_> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/v1/models", "/v1/messages/count_tokens"]);
    assert_eq!(seen[1].api_key.as_deref(), Some(REAL_KEY));
}

/// The gateway prints the upstream's status of model calls on its own log
/// (`gateway_model_status`), one line per change, which the agent cannot forge (unlike
/// `.paddock/model-status` in the shared workspace).
#[tokio::test]
async fn the_upstreams_status_is_on_the_gateways_own_log() {
    let up = Upstream::start(Script {
        input_tokens: 10,
        output_tokens: 5,
        delay: Duration::ZERO,
    })
    .await;
    let dir = tempdir();
    let gw = start_gateway(dir.path(), up.addr, &[]);
    let c = client();
    let call = |status: &str| {
        anthropic(
            &c,
            &gw,
            &json!({"model": "scripted-x", "max_tokens": 5, "messages": []}),
        )
        .header("x-test-status", status)
    };
    for s in ["200", "200", "503", "503", "200"] {
        assert_eq!(send(call(s)).await.0.to_string(), s);
    }
    let lines = gw.wait_lines("gateway_model_status", 3);
    let statuses: Vec<_> = lines
        .iter()
        .map(|l| (l["status"].as_u64().unwrap(), l["calls"].as_u64().unwrap()))
        .collect();
    assert_eq!(statuses, [(200, 1), (503, 3), (200, 5)], "{lines:?}");
    assert!(lines.iter().all(|l| l["route"] == "anthropic"));
}

/// A request head + `Content-Length: declared`, then `body` bytes of a chunked or plain body;
/// returns the status line the gateway answers (or the I/O error).
async fn raw_post(
    addr: std::net::SocketAddr,
    path: &str,
    declared: Option<usize>,
    body: usize,
) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let length = match declared {
        Some(n) => format!("content-length: {n}\r\n"),
        None => "transfer-encoding: chunked\r\n".into(),
    };
    let head = format!("POST {path} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n{length}\r\n");
    s.write_all(head.as_bytes()).await?;
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![b' '; 1 << 20];
        let mut left = body;
        while left > 0 {
            let n = left.min(chunk.len());
            let framed = if declared.is_none() {
                [format!("{n:x}\r\n").as_bytes(), &chunk[..n], b"\r\n"].concat()
            } else {
                chunk[..n].to_vec()
            };
            if wr.write_all(&framed).await.is_err() {
                return;
            }
            left -= n;
        }
        // No terminating chunk: the gateway must answer without waiting for the end.
        std::future::pending::<()>().await;
    });
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), rd.read(&mut buf))
        .await
        .map_err(std::io::Error::other)??;
    writer.abort();
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    Ok(text.lines().next().unwrap_or_default().to_string())
}

/// Attack: a request body larger than the gateway will hold (default 8 MiB), declared or sent
/// chunked without end. Refused 413 in the vendor's shape, never forwarded.
#[tokio::test]
async fn an_oversized_body_is_refused_with_413() {
    let up = Upstream::start(Script {
        input_tokens: 10,
        output_tokens: 5,
        delay: Duration::ZERO,
    })
    .await;
    let dir = tempdir();
    let gw = start_gateway(dir.path(), up.addr, &[]);
    let limit = 8 << 20;
    // Declared: answered from the head, before any body byte.
    let status = raw_post(gw.addr, "/anthropic/v1/messages", Some(limit + 1), 0)
        .await
        .unwrap();
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    // Chunked: read up to the limit, then refused.
    let status = raw_post(gw.addr, "/openai/chat/completions", None, limit + 1)
        .await
        .unwrap();
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    // The same through a client, to see the vendor's error body.
    let c = client();
    let big =
        json!({"model": "scripted-x", "max_tokens": 5, "messages": [{"role": "user", "content": "x".repeat(limit)}]});
    let (status, body) = send(anthropic(&c, &gw, &big)).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["type"], "request_too_large");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("8388608 bytes"),
        "{body}"
    );
    assert!(up.seen().is_empty());
    let lines = gw.wait_lines("gateway_refused", 3);
    assert!(
        lines.len() == 3 && lines.iter().all(|l| l["reason"] == "BodyTooLarge"),
        "{lines:?}"
    );
    // A body just under the limit is forwarded.
    let fits = json!({"model": "scripted-x", "max_tokens": 5, "messages": [{"role": "user", "content": "x".repeat(limit - 200)}]});
    assert_eq!(send(anthropic(&c, &gw, &fits)).await.0, 200);
}

/// Attack: forty connections at once, each sending a body beyond the limit, to make the gateway
/// buffer 360 MiB (its container's memory limit is 512 MiB). At most
/// `PADDOCK_GATEWAY_MAX_INFLIGHT` bodies are read at a time; the peak memory stays far below.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_huge_bodies_leaves_the_gateway_bounded() {
    let up = Upstream::start(Script {
        input_tokens: 10,
        output_tokens: 5,
        delay: Duration::ZERO,
    })
    .await;
    let dir = tempdir();
    let mut gw = start_gateway(
        dir.path(),
        up.addr,
        &[
            ("PADDOCK_GATEWAY_MAX_INFLIGHT", "4"),
            ("PADDOCK_GATEWAY_QUEUE_SECONDS", "2"),
        ],
    );
    let before = gw.peak_rss();
    let limit = 8usize << 20;
    let burst: Vec<_> = (0..40)
        .map(|_| {
            let addr = gw.addr;
            tokio::spawn(async move { raw_post(addr, "/anthropic/v1/messages", None, limit + (1 << 20)).await })
        })
        .collect();
    let (mut too_large, mut busy, mut reset) = (0, 0, 0);
    for b in burst {
        match b.await.unwrap() {
            Ok(s) if s.starts_with("HTTP/1.1 413") => too_large += 1,
            Ok(s) if s.starts_with("HTTP/1.1 429") => busy += 1,
            // A refused connection with unread body bytes may be reset before its answer is read.
            _ => reset += 1,
        }
    }
    eprintln!("burst: 413 {too_large}, 429 {busy}, reset {reset}");
    assert!(too_large >= 4, "413 {too_large}, 429 {busy}, reset {reset}");
    assert!(gw.alive(), "the gateway survived");
    let peak = gw.peak_rss();
    eprintln!("peak RSS {} MiB, before {} MiB", peak >> 20, before >> 20);
    assert!(
        peak < before + (120 << 20),
        "peak memory grew by {} MiB (limit 4 × 8 MiB bodies)",
        (peak - before) >> 20
    );
    assert!(up.seen().is_empty());
    // It still serves.
    let c = client();
    let ok = json!({"model": "scripted-x", "max_tokens": 5, "messages": []});
    assert_eq!(send(anthropic(&c, &gw, &ok)).await.0, 200);
}

/// Attack: more model calls at once than the gateway holds (`PADDOCK_GATEWAY_MAX_INFLIGHT`):
/// the surplus waits for a slot at most `PADDOCK_GATEWAY_QUEUE_SECONDS`, then gets 429 with
/// `retry-after`; the upstream never has more than the limit in progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_beyond_the_inflight_limit_wait_then_get_429() {
    let up = Upstream::start(Script {
        input_tokens: 10,
        output_tokens: 5,
        delay: Duration::from_secs(3),
    })
    .await;
    let dir = tempdir();
    let gw = start_gateway(
        dir.path(),
        up.addr,
        &[
            ("PADDOCK_GATEWAY_MAX_INFLIGHT", "2"),
            ("PADDOCK_GATEWAY_QUEUE_SECONDS", "1"),
        ],
    );
    let c = client();
    let body = json!({"model": "scripted-x", "max_tokens": 5, "messages": []});
    let start = Instant::now();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let req = anthropic(&c, &gw, &body);
            tokio::spawn(async move {
                let r = req.send().await.unwrap();
                let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
                let status = r.status().as_u16();
                let body: Value = serde_json::from_str(&r.text().await.unwrap_or_default()).unwrap_or(Value::Null);
                (status, retry, body, start.elapsed())
            })
        })
        .collect();
    let mut results = vec![];
    for call in calls {
        results.push(call.await.unwrap());
    }
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let busy: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert_eq!((ok, busy.len()), (2, 4), "{results:?}");
    for (_, retry, body, elapsed) in &busy {
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
        assert!(
            *elapsed >= Duration::from_millis(900),
            "waited for a slot first: {elapsed:?}"
        );
    }
    assert_eq!(up.max_active.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(up.seen().len(), 2);
}
