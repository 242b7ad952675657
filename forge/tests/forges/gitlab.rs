//! GitLab: the REST client against recorded answers, and webhook deliveries.
//!
//! Sources of the recorded shapes (trimmed):
//! - merge requests: https://docs.gitlab.com/api/merge_requests/ (list, create, update; the
//!   409 "Another open merge request already exists for this source branch" answer)
//! - notes: https://docs.gitlab.com/api/notes/ (list and create issue notes)
//! - deliveries: https://docs.gitlab.com/user/project/integrations/webhook_events/ ("Work
//!   item events" Issue Hook example with `changes.labels`, "Comment on an issue" and "Comment
//!   on a merge request" Note Hook examples)
//! - token: https://docs.gitlab.com/user/project/integrations/webhooks/ (`X-Gitlab-Token`
//!   carries the secret token as configured).

use crate::mock::Mock;
use crate::{headers, testdata};
use paddock_forge::gitlab::draft_title;
use paddock_forge::webhook::{self, Event, Refusal};
use paddock_forge::{Client, Comment, Ensured, Error, ForgeProvider, NewPullRequest, PullRequest, Repo};
use serde_json::json;

const PROJECT: &str = "/api/v4/projects/octo-group%2Fsub%2Fdemo";
const FIND: &str =
    "GET /api/v4/projects/octo-group%2Fsub%2Fdemo/merge_requests?state=opened&source_branch=paddock%2Frun-6f1c";

fn path(rest: &str) -> String {
    format!("{PROJECT}{rest}")
}

/// A client for `octo-group/sub/demo` (a subgroup's project) on `<base>/api/v4`.
fn client(mock: &Mock) -> Client {
    let api = format!("{}/api/v4", mock.base);
    let repo = Repo::from_clone_url(
        ForgeProvider::GitLab,
        "https://gitlab.example.com/octo-group/sub/demo.git",
        Some(&api),
    )
    .unwrap();
    Client::new(ForgeProvider::GitLab, repo, "glpat-s3cret".into()).unwrap()
}

fn new_pr() -> NewPullRequest {
    NewPullRequest {
        head: "paddock/run-6f1c".into(),
        base: "main".into(),
        title: "Add a greeting".into(),
        body: "Opened by Paddock for #1.".into(),
        draft: true,
        labels: vec!["paddock".into(), "automated".into()],
    }
}

/// Every request carries the token in `PRIVATE-TOKEN`, and nothing in `Authorization`.
fn assert_gitlab_headers(mock: &Mock) {
    for r in mock.requests() {
        assert_eq!(r.header("private-token"), "glpat-s3cret", "{}", r.line());
        assert_eq!(r.header("authorization"), "", "{}", r.line());
    }
}

#[tokio::test]
async fn ensure_pull_request_creates_a_draft_with_labels_when_none_is_open() {
    let mock = Mock::start().await;
    mock.on("GET", &path("/merge_requests"), 200, "[]").on(
        "POST",
        &path("/merge_requests"),
        201,
        testdata("gitlab-merge-request-created.json"),
    );

    let (pr, how) = client(&mock).ensure_pull_request(&new_pr()).await.unwrap();

    assert_eq!(how, Ensured::Created);
    assert_eq!(
        pr,
        PullRequest {
            number: 2,
            url: "https://gitlab.example.com/octo-group/sub/demo/-/merge_requests/2".into(),
            head: "paddock/run-6f1c".into(),
            open: true,
        }
    );
    assert_eq!(
        mock.lines(),
        [FIND.to_string(), format!("POST {}", path("/merge_requests"))]
    );
    assert_eq!(
        mock.requests()[1].body,
        json!({
            "source_branch": "paddock/run-6f1c",
            "target_branch": "main",
            "title": "Draft: Add a greeting",
            "description": "Opened by Paddock for #1.",
            "labels": "paddock,automated",
        })
    );
    assert_gitlab_headers(&mock);
}

#[tokio::test]
async fn create_without_labels_or_draft() {
    let mock = Mock::start().await;
    mock.on(
        "POST",
        &path("/merge_requests"),
        201,
        testdata("gitlab-merge-request-created.json"),
    );
    let pr = NewPullRequest {
        draft: false,
        labels: vec![],
        ..new_pr()
    };
    client(&mock).create_pull_request(&pr).await.unwrap();
    assert_eq!(
        mock.requests()[0].body,
        json!({
            "source_branch": "paddock/run-6f1c",
            "target_branch": "main",
            "title": "Add a greeting",
            "description": "Opened by Paddock for #1.",
        })
    );
}

#[tokio::test]
async fn ensure_pull_request_updates_the_open_one() {
    let mock = Mock::start().await;
    mock.on(
        "GET",
        &path("/merge_requests"),
        200,
        testdata("gitlab-merge-requests.json"),
    )
    .on(
        "PUT",
        &path("/merge_requests/1"),
        200,
        testdata("gitlab-merge-request-updated.json"),
    );
    let pr = NewPullRequest {
        title: "Add a greeting (v2)".into(),
        body: "Updated by Paddock.".into(),
        draft: false,
        ..new_pr()
    };

    let (found, how) = client(&mock).ensure_pull_request(&pr).await.unwrap();

    assert_eq!((found.number, how), (1, Ensured::Updated));
    assert_eq!(
        found.url,
        "https://gitlab.example.com/octo-group/sub/demo/-/merge_requests/1"
    );
    assert_eq!(
        mock.lines(),
        [FIND.to_string(), format!("PUT {}", path("/merge_requests/1"))]
    );
    assert_eq!(
        mock.requests()[1].body,
        json!({"title": "Add a greeting (v2)", "description": "Updated by Paddock."})
    );
    assert_gitlab_headers(&mock);
}

#[tokio::test]
async fn ensure_pull_request_after_a_409_finds_and_updates() {
    let mock = Mock::start().await;
    mock.on("GET", &path("/merge_requests"), 200, "[]")
        .on(
            "GET",
            &path("/merge_requests"),
            200,
            testdata("gitlab-merge-requests.json"),
        )
        .on("POST", &path("/merge_requests"), 409, testdata("gitlab-error-409.json"))
        .on(
            "PUT",
            &path("/merge_requests/1"),
            200,
            testdata("gitlab-merge-request-updated.json"),
        );

    let (found, how) = client(&mock).ensure_pull_request(&new_pr()).await.unwrap();

    assert_eq!((found.number, how), (1, Ensured::Updated));
    assert_eq!(
        mock.lines(),
        [
            FIND.to_string(),
            format!("POST {}", path("/merge_requests")),
            FIND.to_string(),
            format!("PUT {}", path("/merge_requests/1")),
        ]
    );
    // A draft stays a draft: the update keeps the title's prefix.
    assert_eq!(mock.requests()[3].body["title"], json!("Draft: Add a greeting"));
}

#[tokio::test]
async fn comments_skip_system_notes_and_ensure_comment_finds_the_marker() {
    let mock = Mock::start().await;
    mock.on("GET", &path("/issues/1/notes"), 200, testdata("gitlab-notes.json"));
    let c = client(&mock);

    assert_eq!(
        c.comments(1).await.unwrap(),
        [
            Comment {
                id: 305,
                body: "Me too".into()
            },
            Comment {
                id: 306,
                body: "Paddock opened !2.\n\n<!-- paddock-run: 6f1c -->".into()
            },
        ]
    );
    assert!(!c
        .ensure_comment(1, "<!-- paddock-run: 6f1c -->", "Paddock opened !2.")
        .await
        .unwrap());
    let list = format!("GET {}?per_page=100&sort=asc", path("/issues/1/notes"));
    assert_eq!(mock.lines(), [list.clone(), list]);
    assert_gitlab_headers(&mock);
}

#[tokio::test]
async fn ensure_comment_comments_when_the_marker_is_not_there() {
    let mock = Mock::start().await;
    mock.on("GET", &path("/issues/1/notes"), 200, testdata("gitlab-notes.json"))
        .on(
            "POST",
            &path("/issues/1/notes"),
            201,
            testdata("gitlab-note-created.json"),
        );
    let body = "Paddock opened !2.\n\n<!-- paddock-run: 7a2d -->";

    assert!(client(&mock)
        .ensure_comment(1, "<!-- paddock-run: 7a2d -->", body)
        .await
        .unwrap());
    assert_eq!(
        mock.lines(),
        [
            format!("GET {}?per_page=100&sort=asc", path("/issues/1/notes")),
            format!("POST {}", path("/issues/1/notes")),
        ]
    );
    assert_eq!(mock.requests()[1].body, json!({ "body": body }));
    assert_eq!(client(&mock).comment(1, body).await.unwrap().id, 307);
    assert_gitlab_headers(&mock);
}

#[tokio::test]
async fn errors_map_to_reasons() {
    let mock = Mock::start().await;
    mock.on("GET", &path("/merge_requests"), 401, testdata("gitlab-error-401.json"));
    let e = client(&mock).find_pull_request("paddock/run-6f1c").await.unwrap_err();
    assert!(
        matches!(&e, Error::Status { status: 401, message, .. } if message.contains("401 Unauthorized")),
        "{e:?}"
    );
    assert_eq!(e.reason(), "ForgeUnauthorized");
    assert!(!e.is_retryable());

    let mock = Mock::start().await;
    mock.on(
        "GET",
        &path("/merge_requests"),
        502,
        "<html><body><h1>502 Bad Gateway</h1></body></html>",
    );
    let e = client(&mock).find_pull_request("paddock/run-6f1c").await.unwrap_err();
    assert!(matches!(&e, Error::Status { status: 502, .. }), "{e:?}");
    assert!(e.is_retryable());

    let mock = Mock::start().await;
    mock.on("POST", &path("/merge_requests"), 409, testdata("gitlab-error-409.json"));
    let e = client(&mock).create_pull_request(&new_pr()).await.unwrap_err();
    assert!(
        matches!(&e, Error::Status { status: 409, message, .. } if message.contains("already exists")),
        "{e:?}"
    );
    assert!(!e.is_retryable());
}

#[test]
fn draft_titles() {
    assert_eq!(draft_title("Add", true), "Draft: Add");
    assert_eq!(draft_title("Add", false), "Add");
    for marked in ["Draft: Add", "draft: Add", "[Draft] Add", "(draft) Add"] {
        assert_eq!(draft_title(marked, true), marked);
    }
}

#[test]
fn debug_output_leaves_the_token_out() {
    let repo = Repo::from_clone_url(ForgeProvider::GitLab, "https://gitlab.com/g/r", None).unwrap();
    let c = Client::new(ForgeProvider::GitLab, repo, "glpat-s3cret".into()).unwrap();
    let shown = format!("{c:?}");
    assert!(
        shown.contains("gitlab.com") && !shown.contains("glpat-s3cret"),
        "{shown}"
    );
}

fn delivery(event: &str) -> http::HeaderMap {
    headers(&[
        ("x-gitlab-event", event),
        ("x-gitlab-event-uuid", "13792a34-cac6-4fda-95a8-c58e00a3954e"),
    ])
}

fn parse(event: &str, v: &serde_json::Value) -> webhook::Delivery {
    webhook::parse(ForgeProvider::GitLab, &delivery(event), v.to_string().as_bytes()).unwrap()
}

fn recorded(name: &str) -> serde_json::Value {
    serde_json::from_str(&testdata(name)).unwrap()
}

#[test]
fn labeled_delivery() {
    let d = parse("Issue Hook", &recorded("gitlab-issue-hook-labeled.json"));
    assert_eq!(d.id, "13792a34-cac6-4fda-95a8-c58e00a3954e");
    assert_eq!(d.sender, "root");
    assert_eq!(d.repository_url, "http://example.com/gitlabhq/gitlab-test");
    match d.event {
        Event::Labeled { issue, labels } => {
            assert_eq!(labels, ["paddock"], "only the label added (API was there before)");
            assert_eq!(issue.number, 23);
            assert_eq!(issue.title, "New API: create/update/delete file");
            assert_eq!(issue.body, "Create new API for manipulations with repository");
            assert_eq!(issue.url, "http://example.com/gitlabhq/gitlab-test/-/issues/23");
            assert!(!issue.is_pull_request);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn issue_updates_that_add_no_label_are_other() {
    let labeled = recorded("gitlab-issue-hook-labeled.json");
    // A label removed: current is a subset of previous.
    let mut removed = labeled.clone();
    let labels = removed["changes"]["labels"].clone();
    removed["changes"]["labels"] = json!({"previous": labels["current"], "current": labels["previous"]});
    assert_eq!(
        parse("Issue Hook", &removed).event,
        Event::Other("Issue Hook/update".into())
    );
    // Another field changed.
    let mut retitled = labeled.clone();
    retitled["changes"].as_object_mut().unwrap().remove("labels");
    assert_eq!(
        parse("Issue Hook", &retitled).event,
        Event::Other("Issue Hook/update".into())
    );
    // Opened, and a work item that is not an issue.
    let mut opened = labeled.clone();
    opened["object_attributes"]["action"] = json!("open");
    assert_eq!(
        parse("Issue Hook", &opened).event,
        Event::Other("Issue Hook/open".into())
    );
    let mut task = labeled.clone();
    task["object_kind"] = json!("work_item");
    assert_eq!(
        parse("Issue Hook", &task).event,
        Event::Other("Issue Hook/update".into())
    );
    // A confidential issue's hook is not acted on.
    assert_eq!(
        parse("Confidential Issue Hook", &labeled).event,
        Event::Other("Confidential Issue Hook/update".into())
    );
}

#[test]
fn issue_comment_delivery() {
    let d = parse("Note Hook", &recorded("gitlab-note-hook-issue.json"));
    assert_eq!(d.sender, "root");
    assert_eq!(d.repository_url, "http://example.com/gitlab-org/gitlab-test");
    match d.event {
        Event::Commented {
            issue,
            comment_id,
            body,
        } => {
            assert_eq!(comment_id, 1241);
            assert_eq!(body, "/paddock fix the test");
            assert_eq!(
                (issue.number, issue.title.as_str(), issue.body.as_str()),
                (17, "test", "test")
            );
            // The documented example has no issue.url: the note's URL without its anchor.
            assert_eq!(issue.url, "http://example.com/gitlab-org/gitlab-test/issues/17");
            assert!(!issue.is_pull_request);
        }
        e => panic!("{e:?}"),
    }
    // With issue.url (as GitLab's IssueBuilder sends it), and from before GitLab 16.11 (no
    // action).
    let mut v = recorded("gitlab-note-hook-issue.json");
    v["issue"]["url"] = json!("http://example.com/gitlab-org/gitlab-test/-/issues/17");
    v["object_attributes"].as_object_mut().unwrap().remove("action");
    match parse("Note Hook", &v).event {
        Event::Commented { issue, .. } => {
            assert_eq!(issue.url, "http://example.com/gitlab-org/gitlab-test/-/issues/17")
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn other_note_deliveries() {
    assert_eq!(
        parse("Note Hook", &recorded("gitlab-note-hook-merge-request.json")).event,
        Event::Other("Note Hook/MergeRequest/create".into())
    );
    let issue_note = recorded("gitlab-note-hook-issue.json");
    let mut edited = issue_note.clone();
    edited["object_attributes"]["action"] = json!("update");
    assert_eq!(
        parse("Note Hook", &edited).event,
        Event::Other("Note Hook/Issue/update".into())
    );
    let mut system = issue_note.clone();
    system["object_attributes"]["system"] = json!(true);
    assert_eq!(
        parse("Note Hook", &system).event,
        Event::Other("Note Hook/Issue/create".into())
    );
    assert_eq!(
        parse("Push Hook", &json!({"object_kind": "push"})).event,
        Event::Other("Push Hook/".into())
    );

    let mut no_iid = issue_note;
    no_iid["issue"].as_object_mut().unwrap().remove("iid");
    assert!(webhook::parse(
        ForgeProvider::GitLab,
        &delivery("Note Hook"),
        no_iid.to_string().as_bytes()
    )
    .is_err());
}

#[test]
fn the_token_header_is_checked() {
    let body = testdata("gitlab-note-hook-issue.json");
    let ok = headers(&[("x-gitlab-token", "s3cret-token")]);
    assert_eq!(
        webhook::verify(ForgeProvider::GitLab, &ok, body.as_bytes(), b"s3cret-token"),
        Ok(())
    );
    let bad = headers(&[("x-gitlab-token", "guess")]);
    assert_eq!(
        webhook::verify(ForgeProvider::GitLab, &bad, body.as_bytes(), b"s3cret-token"),
        Err(Refusal::BadSignature)
    );
    assert_eq!(
        webhook::verify(
            ForgeProvider::GitLab,
            &http::HeaderMap::new(),
            body.as_bytes(),
            b"s3cret-token"
        ),
        Err(Refusal::Unsigned)
    );
}
