//! Which deliveries start a run, the run they start, and the comment when it ends.

use super::{accept, build_run, comment_body, comment_due, Accepted};
use paddock_crds::forge::WebhookSpec;
use paddock_crds::{AgentRun, AgentRunTrigger};
use paddock_forge::webhook::{Delivery, Event, Issue};
use serde_json::json;

const REPO: &str = "http://forge:3000/o/r.git";

fn hook(v: serde_json::Value) -> WebhookSpec {
    let mut base = json!({"provider": "gitea", "secretRef": {"name": "hook"}});
    for (k, x) in v.as_object().unwrap() {
        base[k] = x.clone();
    }
    serde_json::from_value(base).unwrap()
}

fn issue(pr: bool) -> Issue {
    Issue {
        number: 7,
        title: "Add a greeting".into(),
        body: "Please add hello.txt".into(),
        url: "http://forge:3000/o/r/issues/7".into(),
        is_pull_request: pr,
    }
}

fn delivery(sender: &str, repo: &str, event: Event) -> Delivery {
    Delivery {
        id: "d-1".into(),
        sender: sender.into(),
        repository_url: repo.into(),
        event,
    }
}

fn labeled(labels: &[&str]) -> Event {
    Event::Labeled {
        issue: issue(false),
        labels: labels.iter().map(|l| l.to_string()).collect(),
    }
}

fn commented(body: &str) -> Event {
    Event::Commented {
        issue: issue(false),
        comment_id: 42,
        body: body.into(),
    }
}

#[test]
fn deliveries_are_accepted_or_ignored_with_a_reason() {
    let both = hook(json!({"issueLabel": "paddock", "command": "/paddock", "allowedUsers": ["alice"]}));
    let label_only = hook(json!({"issueLabel": "paddock"}));
    let web = "http://forge:3000/o/r";
    // (spec, delivery, Ok(comment) or Err(substring of the reason))
    type Want<'a> = Result<Option<(u64, &'a str)>, &'a str>;
    let cases: Vec<(&WebhookSpec, Delivery, Want)> = vec![
        (&both, delivery("alice", web, labeled(&["bug", "paddock"])), Ok(None)),
        (&label_only, delivery("anyone", web, labeled(&["paddock"])), Ok(None)),
        (
            &both,
            delivery("mallory", web, labeled(&["paddock"])),
            Err("not in allowedUsers"),
        ),
        (&both, delivery("alice", web, labeled(&["bug"])), Err("no label")),
        (
            &both,
            delivery("alice", web, commented("/paddock  also the README \n")),
            Ok(Some((42, "also the README"))),
        ),
        (
            &both,
            delivery("alice", web, commented("  /paddock")),
            Ok(Some((42, ""))),
        ),
        (
            &both,
            delivery("alice", web, commented("/paddocks do it")),
            Err("does not start with"),
        ),
        (
            &both,
            delivery("alice", web, commented("please /paddock")),
            Err("does not start with"),
        ),
        (
            &both,
            delivery("mallory", web, commented("/paddock do it")),
            Err("not in allowedUsers"),
        ),
        (
            &label_only,
            delivery("alice", web, commented("/paddock do it")),
            Err("does not act on comments"),
        ),
        (
            &both,
            delivery("alice", "http://forge:3000/o/other", labeled(&["paddock"])),
            Err("the trigger's repository"),
        ),
        (
            &both,
            delivery("alice", "http://evil:3000/o/r", commented("/paddock x")),
            Err("the trigger's repository"),
        ),
        (
            &both,
            delivery("alice", web, Event::Other("push/".into())),
            Err("does not act on \"push/\""),
        ),
        (
            &both,
            delivery(
                "alice",
                web,
                Event::Commented {
                    issue: issue(true),
                    comment_id: 1,
                    body: "/paddock x".into(),
                },
            ),
            Err("pull request"),
        ),
    ];
    for (i, (spec, d, want)) in cases.into_iter().enumerate() {
        let got = accept(spec, REPO, &d);
        match (got, want) {
            (Ok(a), Ok(c)) => {
                assert_eq!(a.issue.number, 7, "case {i}");
                assert_eq!(a.comment.as_ref().map(|(id, t)| (*id, t.as_str())), c, "case {i}");
            }
            (Err(why), Err(part)) => assert!(why.contains(part), "case {i}: {why:?} lacks {part:?}"),
            (got, want) => panic!("case {i}: got {got:?}, want {want:?}"),
        }
    }
    // A command with an empty allowedUsers (which the CRD refuses) starts nothing.
    let open = hook(json!({"command": "/paddock"}));
    assert!(accept(&open, REPO, &delivery("anyone", web, commented("/paddock x"))).is_err());
}

fn trigger() -> AgentRunTrigger {
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRunTrigger",
        "metadata": {"name": "issues", "namespace": "team", "uid": "t-1"},
        "spec": {"webhook": {"secretRef": {"name": "hook"}, "issueLabel": "paddock"},
                 "runTemplate": {"metadata": {"labels": {"team": "x"}},
                                 "spec": {"repo": {"url": REPO}, "agent": {"name": "shell"},
                                          "prompt": "Issue #$(issue.number) $(issue.title): $(issue.body) [$(comment.body)] by $(sender) at $(issue.url)"}}},
    }))
    .unwrap()
}

#[test]
fn a_label_makes_one_run_per_issue_and_a_comment_one_per_comment() {
    let t = trigger();
    let d = delivery("alice", "http://forge:3000/o/r", labeled(&["paddock"]));
    let by_label = Accepted {
        issue: issue(false),
        comment: None,
    };
    let run = build_run(&t, &d, &by_label).unwrap();
    assert_eq!(run.metadata.name.as_deref(), Some("issues-i7"));
    assert_eq!(
        run.spec.prompt.as_deref(),
        Some("Issue #7 Add a greeting: Please add hello.txt [] by alice at http://forge:3000/o/r/issues/7")
    );
    let ann = run.metadata.annotations.clone().unwrap();
    assert_eq!(ann["paddock.dev/issue-url"], "http://forge:3000/o/r/issues/7");
    assert_eq!(ann["paddock.dev/issue-number"], "7");
    assert_eq!(ann["paddock.dev/delivery"], "d-1");
    let labels = run.metadata.labels.clone().unwrap();
    assert_eq!(
        (labels["paddock.dev/trigger"].as_str(), labels["team"].as_str()),
        ("issues", "x")
    );
    let owner = &run.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.uid.as_str(), owner.controller), ("t-1", Some(true)));
    let by_comment = Accepted {
        issue: issue(false),
        comment: Some((42, "also the README".into())),
    };
    let run = build_run(&t, &d, &by_comment).unwrap();
    assert_eq!(run.metadata.name.as_deref(), Some("issues-c16"), "42 in base 36");
    // A 10-digit comment id on a 41-character trigger still makes a valid run name (<= 52).
    assert_eq!(super::base36(9_999_999_999), "4ldqpdr");
    assert!(format!("{}-c{}", "t".repeat(41), super::base36(u64::from(u32::MAX) * 3)).len() <= 52);
    assert!(run.spec.prompt.unwrap().contains("[also the README]"));
    // One pass: placeholders inside the issue's text are not expanded (an outsider's issue
    // cannot write the allowed sender's name or comment into the prompt).
    let mut sneaky = by_label.clone();
    sneaky.issue.body = "alice says $(sender) $(comment.body) $(unknown)".into();
    let prompt = build_run(&t, &d, &sneaky).unwrap().spec.prompt.unwrap();
    assert!(
        prompt.contains(": alice says $(sender) $(comment.body) $(unknown) [] by alice"),
        "{prompt}"
    );
    // A huge issue body is cut to 16 KiB, on a character boundary.
    let mut big = by_label.clone();
    big.issue.body = "é".repeat(20_000);
    let prompt = build_run(&t, &d, &big).unwrap().spec.prompt.unwrap();
    assert!(prompt.len() < 17 * 1024, "{}", prompt.len());
}

fn webhook_run(annotations: serde_json::Value, status: serde_json::Value) -> AgentRun {
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": "issues-i7", "namespace": "team", "uid": "r-1", "annotations": annotations},
        "spec": {"repo": {"url": REPO}, "agent": {"name": "shell"}, "prompt": "x",
                 "output": {"push": true, "pullRequest": {"base": "main"}}},
        "status": status,
    }))
    .unwrap()
}

#[test]
fn the_issue_hears_once_when_the_run_and_its_pull_request_are_done() {
    let ann = json!({"paddock.dev/issue-number": "7"});
    let result = |pushed: bool| {
        json!({"outcome": "Succeeded", "reason": "Succeeded", "branch": "paddock/issues-i7", "pushed": pushed,
               "diffstat": "+1/-0", "filesChanged": 1})
    };
    assert_eq!(
        comment_due(&webhook_run(ann.clone(), json!({"phase": "Running"}))),
        None,
        "still running"
    );
    let pending = json!({"phase": "Succeeded", "result": result(true)});
    assert_eq!(
        comment_due(&webhook_run(ann.clone(), pending)),
        None,
        "its pull request is not open yet"
    );
    let mut opened = json!({"phase": "Succeeded", "result": result(true),
                            "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded",
                                            "message": "done", "lastTransitionTime": "2026-12-07T08:00:00Z"}],
                            "usage": {"inputTokens": 10, "outputTokens": 2, "turns": 1}});
    opened["result"]["pullRequest"] = json!({"url": "http://forge:3000/o/r/pulls/8", "number": 8});
    let r = webhook_run(ann.clone(), opened.clone());
    assert_eq!(comment_due(&r), Some(7));
    let body = comment_body(&r, None);
    assert!(
        body.starts_with("**Paddock run `team/issues-i7`: Succeeded** (Succeeded)"),
        "{body}"
    );
    for want in [
        "Pull request: http://forge:3000/o/r/pulls/8 (#8)",
        "Changes: +1/-0 in 1 file(s)",
        "Usage: 10 input + 2 output tokens",
        "<!-- paddock:run=r-1 -->",
    ] {
        assert!(body.contains(want), "{want:?} in {body}");
    }
    let failed_pr = json!({"phase": "Succeeded", "result": result(true),
                           "conditions": [{"type": "PullRequest", "status": "False", "reason": "ForgeUnauthorized",
                                           "message": "401", "lastTransitionTime": "2026-12-07T08:00:00Z"}]});
    let r = webhook_run(ann.clone(), failed_pr);
    assert_eq!(
        comment_due(&r),
        Some(7),
        "a failing pull request does not hold the comment back"
    );
    assert!(comment_body(&r, None).contains("Branch `paddock/issues-i7` pushed; no pull request."));
    let retrying = json!({"phase": "Succeeded", "result": result(true),
                          "conditions": [{"type": "PullRequest", "status": "False", "reason": "ForgeUnreachable",
                                          "message": "down", "lastTransitionTime": "2026-12-07T08:00:00Z"}]});
    assert_eq!(
        comment_due(&webhook_run(ann.clone(), retrying)),
        None,
        "a retryable failure is waited for"
    );
    let failed = webhook_run(ann.clone(), json!({"phase": "Failed", "result": result(false)}));
    assert_eq!(comment_due(&failed), Some(7));
    assert!(comment_body(&failed, Some("https://c.example"))
        .contains("[`team/issues-i7`](https://c.example/runs/team/issues-i7)"));
    assert!(comment_body(&failed, None).contains("No branch was pushed."));
    let done = json!({"paddock.dev/issue-number": "7", "paddock.dev/issue-commented-at": "2026-12-07T08:00:00Z"});
    assert_eq!(
        comment_due(&webhook_run(done, opened.clone())),
        None,
        "commented already"
    );
    assert_eq!(comment_due(&webhook_run(json!({}), opened)), None, "not a webhook run");
}
