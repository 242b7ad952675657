use super::*;
use crate::webhook::{parse, sign, verify, Event, Refusal};
use http::{HeaderMap, HeaderValue};

#[test]
fn repo_from_clone_urls() {
    let r = Repo::from_clone_url(ForgeProvider::Gitea, "http://10.244.0.1:13000/paddock/demo.git", None).unwrap();
    assert_eq!(r.api, "http://10.244.0.1:13000/api/v1");
    assert_eq!(r.full_name(), "paddock/demo");
    let r = Repo::from_clone_url(ForgeProvider::GitHub, "https://x-access-token@github.com/o/r/", None).unwrap();
    assert_eq!(
        (r.api.as_str(), r.owner.as_str(), r.name.as_str()),
        ("https://api.github.com", "o", "r")
    );
    let r = Repo::from_clone_url(ForgeProvider::GitHub, "https://ghe.example.com/o/r.git", None).unwrap();
    assert_eq!(r.api, "https://ghe.example.com/api/v3");
    let r = Repo::from_clone_url(ForgeProvider::GitLab, "https://gitlab.com/group/sub/r.git", None).unwrap();
    assert_eq!(
        (r.api.as_str(), r.owner.as_str(), r.name.as_str()),
        ("https://gitlab.com/api/v4", "group/sub", "r")
    );
    let r = Repo::from_clone_url(ForgeProvider::Gitea, "https://h/o/r", Some("https://api.h/v1/")).unwrap();
    assert_eq!(r.api, "https://api.h/v1");
    for bad in [
        "git://h/o/r",
        "ssh://git@h/o/r",
        "https://h/r",
        "https://h/a/b/c",
        "https://h//r",
        "https://h/../r",
        "file:///o/r",
    ] {
        assert!(Repo::from_clone_url(ForgeProvider::Gitea, bad, None).is_err(), "{bad}");
    }
}

#[test]
fn retryable_errors() {
    let st = |status| Error::Status {
        status,
        what: String::new(),
        message: String::new(),
    };
    assert!(st(502).is_retryable() && st(429).is_retryable() && Error::Transport(String::new()).is_retryable());
    assert!(!st(401).is_retryable() && !st(404).is_retryable() && !st(422).is_retryable());
    assert_eq!(st(403).reason(), "ForgeUnauthorized");
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

#[test]
fn signatures_are_checked() {
    let body = br#"{"action":"created"}"#;
    let good = sign(b"s3cret", body);
    // Gitea: bare hex; GitHub: sha256= prefix; GitLab: the token.
    assert_eq!(
        verify(
            ForgeProvider::Gitea,
            &headers(&[("x-gitea-signature", &good)]),
            body,
            b"s3cret"
        ),
        Ok(())
    );
    assert_eq!(
        verify(
            ForgeProvider::GitHub,
            &headers(&[("x-hub-signature-256", &format!("sha256={good}"))]),
            body,
            b"s3cret"
        ),
        Ok(())
    );
    assert_eq!(
        verify(
            ForgeProvider::GitLab,
            &headers(&[("x-gitlab-token", "s3cret")]),
            body,
            b"s3cret"
        ),
        Ok(())
    );
    // Wrong secret, changed body, no header, malformed hex, GitHub without its prefix.
    assert_eq!(
        verify(
            ForgeProvider::Gitea,
            &headers(&[("x-gitea-signature", &good)]),
            body,
            b"other"
        ),
        Err(Refusal::BadSignature)
    );
    assert_eq!(
        verify(
            ForgeProvider::Gitea,
            &headers(&[("x-gitea-signature", &good)]),
            b"{}",
            b"s3cret"
        ),
        Err(Refusal::BadSignature)
    );
    assert_eq!(
        verify(ForgeProvider::Gitea, &HeaderMap::new(), body, b"s3cret"),
        Err(Refusal::Unsigned)
    );
    assert_eq!(
        verify(
            ForgeProvider::Gitea,
            &headers(&[("x-gitea-signature", "zz")]),
            body,
            b"s3cret"
        ),
        Err(Refusal::BadSignature)
    );
    assert_eq!(
        verify(
            ForgeProvider::GitHub,
            &headers(&[("x-hub-signature-256", &good)]),
            body,
            b"s3cret"
        ),
        Err(Refusal::BadSignature)
    );
    assert_eq!(
        verify(
            ForgeProvider::GitLab,
            &headers(&[("x-gitlab-token", "s3cre")]),
            body,
            b"s3cret"
        ),
        Err(Refusal::BadSignature)
    );
    // A Gitea signature header does not sign a GitHub delivery.
    assert_eq!(
        verify(
            ForgeProvider::GitHub,
            &headers(&[("x-gitea-signature", &good)]),
            body,
            b"s3cret"
        ),
        Err(Refusal::Unsigned)
    );
}

#[test]
fn gitea_label_and_comment_deliveries() {
    let label = include_bytes!("../testdata/gitea-issue-label.json");
    let h = headers(&[("x-gitea-event", "issues"), ("x-gitea-delivery", "d-1")]);
    let d = parse(ForgeProvider::Gitea, &h, label).unwrap();
    assert_eq!(d.id, "d-1");
    assert_eq!(d.sender, "paddock");
    assert!(d.repository_url.ends_with("/paddock/demo"), "{}", d.repository_url);
    match d.event {
        Event::Labeled { issue, labels } => {
            assert_eq!(issue.number, 1);
            assert_eq!(issue.title, "Add a greeting");
            assert!(labels.contains(&"paddock".to_string()), "{labels:?}");
            assert!(!issue.is_pull_request);
        }
        e => panic!("{e:?}"),
    }
    let comment = include_bytes!("../testdata/gitea-issue-comment.json");
    let h = headers(&[("x-gitea-event", "issue_comment"), ("x-gitea-delivery", "d-2")]);
    match parse(ForgeProvider::Gitea, &h, comment).unwrap().event {
        Event::Commented {
            issue,
            comment_id,
            body,
        } => {
            assert_eq!(issue.number, 1);
            assert!(comment_id > 0);
            assert!(body.starts_with("/paddock"), "{body}");
        }
        e => panic!("{e:?}"),
    }
    let h = headers(&[("x-gitea-event", "push")]);
    assert_eq!(
        parse(ForgeProvider::Gitea, &h, b"{}").unwrap().event,
        Event::Other("push/".into())
    );
    assert!(parse(ForgeProvider::Gitea, &h, b"not json").is_err());
}

#[test]
fn same_repository_ignores_case_credentials_and_suffix() {
    assert!(webhook::same_repository("http://H:3000/o/r", "http://h:3000/o/r.git"));
    assert!(webhook::same_repository("https://u:p@h/o/r/", "https://h/o/r"));
    assert!(!webhook::same_repository("https://h/o/r", "https://h/o/r2"));
    assert!(!webhook::same_repository("https://h/o/r", "https://evil/o/r"));
    assert!(!webhook::same_repository("", ""));
}

#[test]
fn percent_encoding() {
    assert_eq!(percent_encode("group/sub repo"), "group%2Fsub%20repo");
    assert_eq!(percent_encode("a-b_c.d~"), "a-b_c.d~");
}

/// An image without a CA store (the e2e operator image has no /etc/ssl): the client still
/// builds, with Mozilla's roots. (The only test here that touches the process's environment.)
#[test]
fn the_client_builds_without_system_roots() {
    let dir = std::env::temp_dir().join(format!("paddock-no-roots-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::env::set_var("SSL_CERT_FILE", dir.join("none.pem"));
    std::env::set_var("SSL_CERT_DIR", &dir);
    let built = http_client();
    std::env::remove_var("SSL_CERT_FILE");
    std::env::remove_var("SSL_CERT_DIR");
    built.unwrap();
}

#[test]
fn urls_lose_their_credentials_before_they_are_shown() {
    assert_eq!(api::sanitize_url("https://x:tok@h/o/r.git"), "https://h/o/r.git");
    assert_eq!(api::sanitize_url("https://h/o/r@x"), "https://h/o/r@x");
    assert_eq!(api::sanitize_url("not a url"), "not a url");
    let e = Repo::from_clone_url(ForgeProvider::Gitea, "https://u:secret@h/r", None).unwrap_err();
    assert!(!e.to_string().contains("secret"), "{e}");
    assert!(webhook::same_repository(
        "https://github.com/Octo/Repo",
        "https://github.com/octo/repo.git"
    ));
}
