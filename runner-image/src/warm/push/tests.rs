use super::*;
use paddock_crds::verdict::{claim_message, Signer};

fn push_body(signer: &Signer, claim: &str, uid: &str) -> String {
    serde_json::to_string(&ClaimPush {
        claim: claim.into(),
        signature: signer.sign(&claim_message(claim, uid)),
    })
    .unwrap()
}

#[test]
fn only_the_operators_signature_for_this_pod_counts() {
    let operator = Signer::generate().unwrap();
    let key = operator.public_key_b64();
    assert_eq!(
        check(push_body(&operator, "Y2xhaW0=", "uid-1").as_bytes(), &key, "uid-1"),
        Ok("Y2xhaW0=".into())
    );
    // Signed for another pod (a push copied from one pod to the next).
    assert_eq!(
        check(push_body(&operator, "Y2xhaW0=", "uid-2").as_bytes(), &key, "uid-1"),
        Err(StatusCode::FORBIDDEN)
    );
    // Signed by another key (what anyone else could make).
    let other = Signer::generate().unwrap();
    assert_eq!(
        check(push_body(&other, "Y2xhaW0=", "uid-1").as_bytes(), &key, "uid-1"),
        Err(StatusCode::FORBIDDEN)
    );
    // A claim other than the one signed.
    let mut swapped: ClaimPush = serde_json::from_str(&push_body(&operator, "Y2xhaW0=", "uid-1")).unwrap();
    swapped.claim = "b3RoZXI=".into();
    assert_eq!(
        check(serde_json::to_string(&swapped).unwrap().as_bytes(), &key, "uid-1"),
        Err(StatusCode::FORBIDDEN)
    );
    // No pod UID to check against: nothing verifies.
    assert_eq!(
        check(push_body(&operator, "Y2xhaW0=", "").as_bytes(), &key, ""),
        Err(StatusCode::FORBIDDEN)
    );
    assert_eq!(check(b"{\"claim\":1}", &key, "uid-1"), Err(StatusCode::BAD_REQUEST));
}

#[tokio::test]
async fn the_first_verified_push_is_taken_and_the_listener_closes() {
    let operator = Signer::generate().unwrap();
    let key = operator.public_key_b64();
    let listener = bind(0).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn({
        let key = key.clone();
        async move { accept_claim(listener, &key, "uid-1").await }
    });
    let url = format!("http://127.0.0.1:{port}{CLAIM_PATH}");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let forged = Signer::generate().unwrap();
    let r = http
        .post(&url)
        .body(push_body(&forged, "Zm9yZ2Vk", "uid-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let r = http
        .post(format!("http://127.0.0.1:{port}/other"))
        .body(push_body(&operator, "Y2xhaW0=", "uid-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = http
        .post(&url)
        .body(vec![b'x'; MAX_CLAIM_PUSH_BYTES + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert!(!server.is_finished(), "nothing verified yet");
    let r = http
        .post(&url)
        .body(push_body(&operator, "Y2xhaW0=", "uid-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let taken = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken, "Y2xhaW0=");
    // Claimed: the port no longer accepts (the agent starts only after this).
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err());
}
