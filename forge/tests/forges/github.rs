//! GitHub: the REST client against recorded answers, and webhook deliveries.
//!
//! Sources of the recorded shapes (trimmed; octocrab's models need the fields kept):
//! - pulls, labels, comments, errors: GitHub REST API docs, version 2022-11-28,
//!   https://docs.github.com/en/rest/pulls/pulls (list, create, update),
//!   https://docs.github.com/en/rest/issues/labels#add-labels-to-an-issue,
//!   https://docs.github.com/en/rest/issues/comments (list, create), and the error bodies of
//!   https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api
//! - deliveries: https://docs.github.com/en/webhooks/webhook-events-and-payloads (`issues`,
//!   `issue_comment`), the examples of github.com/octokit/webhooks
//!   `payload-examples/api.github.com/issues/labeled.payload.json` and
//!   `issue_comment/created.payload.json`
//! - signature: https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
//!   (its test vector).

use crate::mock::Mock;
use crate::{headers, testdata};
use paddock_forge::webhook::{self, Event, Refusal};
use paddock_forge::{Client, Comment, Ensured, Error, ForgeProvider, NewPullRequest, PullRequest, Repo};
use serde_json::json;

const PULLS: &str = "/api/v3/repos/octocat/Hello-World/pulls";
const FIND: &str = "GET /api/v3/repos/octocat/Hello-World/pulls?state=open&head=octocat%3Apaddock%2Frun-6f1c";

/// A client for `octocat/Hello-World` on a GitHub Enterprise-style API (`<base>/api/v3`).
fn client(mock: &Mock) -> Client {
    let api = format!("{}/api/v3", mock.base);
    let repo = Repo::from_clone_url(
        ForgeProvider::GitHub,
        "https://ghe.example.com/octocat/Hello-World.git",
        Some(&api),
    )
    .unwrap();
    Client::new(ForgeProvider::GitHub, repo, "ghp_s3cret".into()).unwrap()
}

fn new_pr() -> NewPullRequest {
    NewPullRequest {
        head: "paddock/run-6f1c".into(),
        base: "main".into(),
        title: "Add a greeting".into(),
        body: "Opened by Paddock for #1.\n\n<!-- paddock-run: 6f1c -->".into(),
        draft: true,
        labels: vec!["paddock".into(), "automated".into()],
    }
}

/// Every request carries the token and GitHub's media type and API version.
fn assert_github_headers(mock: &Mock) {
    for r in mock.requests() {
        assert_eq!(r.header("authorization"), "Bearer ghp_s3cret", "{}", r.line());
        assert_eq!(r.header("accept"), "application/vnd.github+json", "{}", r.line());
        assert_eq!(r.header("x-github-api-version"), "2022-11-28", "{}", r.line());
    }
}

#[tokio::test]
async fn ensure_pull_request_creates_and_labels_when_none_is_open() {
    let mock = Mock::start().await;
    mock.on("GET", PULLS, 200, "[]")
        .on("POST", PULLS, 201, testdata("github-pull-created.json"))
        .on(
            "POST",
            "/api/v3/repos/octocat/Hello-World/issues/1348/labels",
            200,
            testdata("github-labels.json"),
        );

    let (pr, how) = client(&mock).ensure_pull_request(&new_pr()).await.unwrap();

    assert_eq!(how, Ensured::Created);
    assert_eq!(
        pr,
        PullRequest {
            number: 1348,
            url: "https://github.com/octocat/Hello-World/pull/1348".into(),
            head: "paddock/run-6f1c".into(),
            open: true,
        }
    );
    assert_eq!(
        mock.lines(),
        [
            FIND,
            "POST /api/v3/repos/octocat/Hello-World/pulls",
            "POST /api/v3/repos/octocat/Hello-World/issues/1348/labels",
        ]
    );
    let reqs = mock.requests();
    assert_eq!(
        reqs[1].body,
        json!({
            "title": "Add a greeting",
            "head": "paddock/run-6f1c",
            "base": "main",
            "body": "Opened by Paddock for #1.\n\n<!-- paddock-run: 6f1c -->",
            "draft": true,
        })
    );
    assert_eq!(reqs[1].header("content-type"), "application/json");
    assert_eq!(reqs[2].body, json!({"labels": ["paddock", "automated"]}));
    assert_github_headers(&mock);
}

#[tokio::test]
async fn create_without_labels_sends_no_label_request() {
    let mock = Mock::start().await;
    mock.on("POST", PULLS, 201, testdata("github-pull-created.json"));
    let pr = NewPullRequest {
        labels: vec![],
        draft: false,
        ..new_pr()
    };
    let created = client(&mock).create_pull_request(&pr).await.unwrap();
    assert_eq!(created.number, 1348);
    assert_eq!(mock.lines(), ["POST /api/v3/repos/octocat/Hello-World/pulls"]);
    assert_eq!(mock.requests()[0].body["draft"], json!(false));
}

#[tokio::test]
async fn a_failed_labelling_still_returns_the_created_pull_request() {
    let mock = Mock::start().await;
    mock.on("POST", PULLS, 201, testdata("github-pull-created.json")).on(
        "POST",
        "/api/v3/repos/octocat/Hello-World/issues/1348/labels",
        403,
        r#"{"message":"Resource not accessible by personal access token","status":"403"}"#,
    );
    let created = client(&mock).create_pull_request(&new_pr()).await.unwrap();
    assert_eq!(created.number, 1348);
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test]
async fn ensure_pull_request_updates_the_open_one() {
    let mock = Mock::start().await;
    mock.on("GET", PULLS, 200, testdata("github-pulls.json")).on(
        "PATCH",
        "/api/v3/repos/octocat/Hello-World/pulls/1347",
        200,
        testdata("github-pull-updated.json"),
    );
    let pr = NewPullRequest {
        title: "Add a greeting (v2)".into(),
        body: "Updated by Paddock.".into(),
        ..new_pr()
    };

    let (found, how) = client(&mock).ensure_pull_request(&pr).await.unwrap();

    assert_eq!(how, Ensured::Updated);
    assert_eq!(found.number, 1347);
    assert_eq!(found.url, "https://github.com/octocat/Hello-World/pull/1347");
    assert_eq!(
        mock.lines(),
        [FIND, "PATCH /api/v3/repos/octocat/Hello-World/pulls/1347"]
    );
    assert_eq!(
        mock.requests()[1].body,
        json!({"title": "Add a greeting (v2)", "body": "Updated by Paddock."})
    );
    assert_github_headers(&mock);
}

#[tokio::test]
async fn ensure_pull_request_after_a_422_finds_and_updates() {
    let mock = Mock::start().await;
    // None open at first; the create loses a race (422); the second look finds it.
    mock.on("GET", PULLS, 200, "[]")
        .on("GET", PULLS, 200, testdata("github-pulls.json"))
        .on("POST", PULLS, 422, testdata("github-error-422.json"))
        .on(
            "PATCH",
            "/api/v3/repos/octocat/Hello-World/pulls/1347",
            200,
            testdata("github-pull-updated.json"),
        );

    let (found, how) = client(&mock).ensure_pull_request(&new_pr()).await.unwrap();

    assert_eq!((found.number, how), (1347, Ensured::Updated));
    assert_eq!(
        mock.lines(),
        [
            FIND,
            "POST /api/v3/repos/octocat/Hello-World/pulls",
            FIND,
            "PATCH /api/v3/repos/octocat/Hello-World/pulls/1347",
        ]
    );
}

#[tokio::test]
async fn a_422_keeps_githubs_reason() {
    let mock = Mock::start().await;
    mock.on("POST", PULLS, 422, testdata("github-error-422.json"));
    let e = client(&mock).create_pull_request(&new_pr()).await.unwrap_err();
    match &e {
        Error::Status { status, what, message } => {
            assert_eq!(*status, 422);
            assert_eq!(what, "POST /repos/octocat/Hello-World/pulls");
            assert!(
                message.contains("A pull request already exists for octocat:paddock/run-6f1c"),
                "{message}"
            );
        }
        e => panic!("{e:?}"),
    }
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn ensure_comment_skips_when_the_marker_is_there() {
    let mock = Mock::start().await;
    mock.on(
        "GET",
        "/api/v3/repos/octocat/Hello-World/issues/1/comments",
        200,
        testdata("github-comments.json"),
    );
    let c = client(&mock);

    assert_eq!(
        c.comments(1).await.unwrap(),
        [
            Comment {
                id: 1,
                body: "Me too".into()
            },
            Comment {
                id: 2,
                body: "Paddock opened #1348.\n\n<!-- paddock-run: 6f1c -->".into()
            },
        ]
    );
    assert!(!c
        .ensure_comment(1, "<!-- paddock-run: 6f1c -->", "Paddock opened #1348.")
        .await
        .unwrap());
    assert_eq!(
        mock.lines(),
        ["GET /api/v3/repos/octocat/Hello-World/issues/1/comments?per_page=100"; 2]
    );
    assert_github_headers(&mock);
}

#[tokio::test]
async fn ensure_comment_comments_when_the_marker_is_not_there() {
    let mock = Mock::start().await;
    mock.on(
        "GET",
        "/api/v3/repos/octocat/Hello-World/issues/1/comments",
        200,
        testdata("github-comments.json"),
    )
    .on(
        "POST",
        "/api/v3/repos/octocat/Hello-World/issues/1/comments",
        201,
        testdata("github-comment-created.json"),
    );
    let body = "Paddock opened #1348.\n\n<!-- paddock-run: 7a2d -->";

    assert!(client(&mock)
        .ensure_comment(1, "<!-- paddock-run: 7a2d -->", body)
        .await
        .unwrap());
    assert_eq!(
        mock.lines(),
        [
            "GET /api/v3/repos/octocat/Hello-World/issues/1/comments?per_page=100",
            "POST /api/v3/repos/octocat/Hello-World/issues/1/comments",
        ]
    );
    assert_eq!(mock.requests()[1].body, json!({ "body": body }));
    assert_github_headers(&mock);

    // The created comment as GitHub returns it.
    let created = client(&mock).comment(1, body).await.unwrap();
    assert_eq!(created.id, 3);
}

#[tokio::test]
async fn errors_map_to_reasons() {
    let mock = Mock::start().await;
    mock.on("GET", PULLS, 401, testdata("github-error-401.json"));
    let e = client(&mock).find_pull_request("paddock/run-6f1c").await.unwrap_err();
    assert!(
        matches!(&e, Error::Status { status: 401, message, .. } if message == "Bad credentials"),
        "{e:?}"
    );
    assert_eq!(e.reason(), "ForgeUnauthorized");
    assert!(!e.is_retryable());

    let mock = Mock::start().await;
    mock.on("GET", PULLS, 502, "<html><body><h1>502 Bad Gateway</h1></body></html>");
    let e = client(&mock).find_pull_request("paddock/run-6f1c").await.unwrap_err();
    assert!(matches!(&e, Error::Status { status: 502, .. }), "{e:?}");
    assert_eq!(e.reason(), "ForgeUnavailable");
    assert!(e.is_retryable());
    // One request: no retries of its own under the operator's.
    assert_eq!(mock.requests().len(), 1);

    // Not JSON where a list was due; nothing listening.
    let mock = Mock::start().await;
    mock.on("GET", PULLS, 200, r#"{"unexpected": true}"#);
    let e = client(&mock).find_pull_request("paddock/run-6f1c").await.unwrap_err();
    assert!(matches!(&e, Error::Decode { .. }), "{e:?}");
    assert!(!e.is_retryable());
    let repo = Repo::from_clone_url(ForgeProvider::GitHub, "https://h/o/r", Some("http://127.0.0.1:9")).unwrap();
    let e = Client::new(ForgeProvider::GitHub, repo, "t".into())
        .unwrap()
        .comments(1)
        .await
        .unwrap_err();
    assert!(matches!(&e, Error::Transport(_)), "{e:?}");
    assert!(e.is_retryable());
}

#[test]
fn debug_output_leaves_the_token_out() {
    let repo = Repo::from_clone_url(ForgeProvider::GitHub, "https://github.com/o/r", None).unwrap();
    let c = Client::new(ForgeProvider::GitHub, repo, "ghp_s3cret".into()).unwrap();
    let shown = format!("{c:?}");
    assert!(
        shown.contains("api.github.com") && !shown.contains("ghp_s3cret"),
        "{shown}"
    );
}

fn delivery(event: &str) -> http::HeaderMap {
    headers(&[
        ("x-github-event", event),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ])
}

#[test]
fn labeled_delivery() {
    let body = testdata("github-issues-labeled.json");
    let d = webhook::parse(ForgeProvider::GitHub, &delivery("issues"), body.as_bytes()).unwrap();
    assert_eq!(d.id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    assert_eq!(d.sender, "Codertocat");
    assert_eq!(d.repository_url, "https://github.com/Codertocat/Hello-World");
    match d.event {
        Event::Labeled { issue, labels } => {
            assert_eq!(labels, ["paddock"]);
            assert_eq!(issue.number, 1);
            assert_eq!(issue.title, "Spelling error in the README file");
            assert_eq!(
                issue.body,
                "It looks like you accidently spelled 'commit' with two 't's."
            );
            assert_eq!(issue.url, "https://github.com/Codertocat/Hello-World/issues/1");
            assert!(!issue.is_pull_request);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn comment_deliveries() {
    let body = testdata("github-issue-comment.json");
    match webhook::parse(ForgeProvider::GitHub, &delivery("issue_comment"), body.as_bytes())
        .unwrap()
        .event
    {
        Event::Commented {
            issue,
            comment_id,
            body,
        } => {
            assert_eq!((issue.number, comment_id), (1, 492700400));
            assert_eq!(body, "/paddock fix the spelling");
            assert!(!issue.is_pull_request);
        }
        e => panic!("{e:?}"),
    }
    let body = testdata("github-pull-request-comment.json");
    match webhook::parse(ForgeProvider::GitHub, &delivery("issue_comment"), body.as_bytes())
        .unwrap()
        .event
    {
        Event::Commented { issue, comment_id, .. } => {
            assert_eq!((issue.number, comment_id), (2, 492700401));
            assert!(issue.is_pull_request);
            assert_eq!(issue.url, "https://github.com/Codertocat/Hello-World/pull/2");
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn other_and_malformed_deliveries() {
    let labeled: serde_json::Value = serde_json::from_str(&testdata("github-issues-labeled.json")).unwrap();
    let parse = |event: &str, v: &serde_json::Value| {
        webhook::parse(ForgeProvider::GitHub, &delivery(event), v.to_string().as_bytes())
    };
    let mut unlabeled = labeled.clone();
    unlabeled["action"] = json!("unlabeled");
    assert_eq!(
        parse("issues", &unlabeled).unwrap().event,
        Event::Other("issues/unlabeled".into())
    );
    let mut edited = labeled.clone();
    edited["action"] = json!("edited");
    assert_eq!(
        parse("issue_comment", &edited).unwrap().event,
        Event::Other("issue_comment/edited".into())
    );
    assert_eq!(
        parse("ping", &json!({"zen": "Keep it logically awesome."}))
            .unwrap()
            .event,
        Event::Other("ping/".into())
    );
    // The event is read from the header, not guessed from the body.
    assert_eq!(parse("", &labeled).unwrap().event, Event::Other("/labeled".into()));

    let mut no_label = labeled.clone();
    no_label.as_object_mut().unwrap().remove("label");
    assert!(parse("issues", &no_label).is_err());
    let mut no_number = labeled;
    no_number["issue"].as_object_mut().unwrap().remove("number");
    assert!(parse("issues", &no_number).is_err());
    assert!(webhook::parse(ForgeProvider::GitHub, &delivery("issues"), b"not json").is_err());
}

#[test]
fn signatures_follow_githubs_test_vector() {
    let secret = b"It's a Secret to Everybody";
    let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let h = headers(&[("x-hub-signature-256", sig)]);
    assert_eq!(
        webhook::verify(ForgeProvider::GitHub, &h, b"Hello, World!", secret),
        Ok(())
    );
    assert_eq!(
        webhook::sign(secret, b"Hello, World!"),
        sig.trim_start_matches("sha256=")
    );
    assert_eq!(
        webhook::verify(ForgeProvider::GitHub, &h, b"Hello, World?", secret),
        Err(Refusal::BadSignature)
    );
    // The SHA-1 header GitHub also sends is not accepted in its place.
    let sha1 = headers(&[("x-hub-signature", "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59")]);
    assert_eq!(
        webhook::verify(ForgeProvider::GitHub, &sha1, b"Hello, World!", secret),
        Err(Refusal::Unsigned)
    );
    // A recorded delivery signed the same way.
    let body = testdata("github-issues-labeled.json");
    let h = headers(&[(
        "x-hub-signature-256",
        &format!("sha256={}", webhook::sign(b"s3cret", body.as_bytes())),
    )]);
    assert_eq!(
        webhook::verify(ForgeProvider::GitHub, &h, body.as_bytes(), b"s3cret"),
        Ok(())
    );
}
