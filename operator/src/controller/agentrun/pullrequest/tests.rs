//! The pull request a run opens: when, its title and body, and the receipt.

use super::{marker, new_pull_request, receipt, wanted};
use crate::controller::agentrun::prompt::PromptText;
use paddock_crds::{AgentRun, ApprovalGate};
use serde_json::json;

fn run(output: serde_json::Value, status: serde_json::Value) -> AgentRun {
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": "fix-1", "namespace": "team", "uid": "u-1",
                     "annotations": {"paddock.dev/issue-url": "http://forge/o/r/issues/7"}},
        "spec": {"repo": {"url": "http://forge/o/r.git", "credentialsSecretRef": {"name": "git"}},
                 "agent": {"name": "claude-code", "model": "sonnet"},
                 "prompt": "\n  Fix the greeting | now\nmore detail", "output": output},
        "status": status,
    }))
    .unwrap()
}

fn ended(pushed: bool, extra: serde_json::Value) -> serde_json::Value {
    let mut st = json!({
        "phase": "Succeeded",
        "startTime": "2026-12-07T08:00:00Z", "completionTime": "2026-12-07T08:01:30Z", "duration": "1m30s",
        "usage": {"inputTokens": 1200, "outputTokens": 80, "turns": 3, "costUsd": 0.0123},
        "verification": {"result": "Passed", "reason": "TestsPassed", "attempt": 1, "baseCommit": "b", "summary": "3 passed"},
        "policy": {"runnerPool": {"name": "default", "uid": "p", "generation": 1}, "podTemplateHash": "h", "image": "runner:dev",
                   "poolSpec": {"template": {"image": "runner:dev"}}, "recordedAt": "2026-12-07T08:00:00Z"},
        "result": {"outcome": "Succeeded", "reason": "Succeeded", "branch": "paddock/fix-1", "pushed": pushed,
                   "commit": "abc123", "filesChanged": 2, "insertions": 5, "deletions": 1, "diffstat": "+5/-1",
                   "summary": "changed hello"},
    });
    for (k, v) in extra.as_object().unwrap() {
        st[k] = v.clone();
    }
    st
}

fn pr_spec() -> serde_json::Value {
    json!({"push": true, "pullRequest": {"provider": "gitea", "base": "main", "labels": ["agent"],
                                         "title": "[$(run.name)] $(prompt.firstLine)",
                                         "body": "Summary: $(summary) ($(diffstat))"}})
}

#[test]
fn a_pull_request_is_wanted_only_after_a_successful_push_and_only_once() {
    assert!(wanted(&run(pr_spec(), ended(true, json!({})))).is_some());
    assert!(wanted(&run(pr_spec(), ended(false, json!({})))).is_none(), "not pushed");
    assert!(
        wanted(&run(pr_spec(), ended(true, json!({"phase": "Failed"})))).is_none(),
        "failed"
    );
    assert!(wanted(&run(pr_spec(), ended(true, json!({"phase": "Running"})))).is_none());
    assert!(
        wanted(&run(json!({"push": true}), ended(true, json!({})))).is_none(),
        "not asked"
    );
    let mut recorded = ended(true, json!({}));
    recorded["result"]["pullRequest"] = json!({"url": "http://forge/o/r/pulls/3", "number": 3});
    assert!(wanted(&run(pr_spec(), recorded)).is_none(), "recorded already");
}

#[test]
fn the_title_and_body_are_templated_and_the_receipt_appended() {
    let r = run(pr_spec(), ended(true, json!({})));
    let gate: ApprovalGate = serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "ApprovalGate",
        "metadata": {"name": "fix-1-push", "creationTimestamp": "2026-12-07T08:01:00Z"},
        "spec": {"runRef": {"name": "fix-1", "uid": "u-1"}, "stage": "BeforePush",
                 "request": {"summary": "push?"}, "quorum": 1,
                 "decisions": [{"approver": "alice", "decision": "Approve", "comment": "looks | fine"}]},
        "status": {"state": "Approved", "approvals": 1, "decidedAt": "2026-12-07T08:01:10Z"},
    }))
    .unwrap();
    // The cache's copy of the run has no prompt: the one read from the API server titles it.
    let prompt = PromptText::of_fetched(&r).unwrap();
    let mut r = r;
    paddock_crds::cache::slim_agent_run(&mut r);
    let pr = new_pull_request(
        &r,
        Some(&prompt),
        wanted(&r).unwrap(),
        &[gate],
        Some("https://console.example/"),
    );
    assert_eq!(pr.head, "paddock/fix-1");
    assert_eq!(pr.base, "main");
    assert_eq!(pr.title, "[fix-1] Fix the greeting | now");
    assert_eq!(pr.labels, vec!["agent".to_string()]);
    assert!(
        pr.body
            .starts_with("Summary: changed hello (+5/-1)\n\n---\n\n### Paddock receipt"),
        "{}",
        pr.body
    );
    for want in [
        "| Run | [`team/fix-1`](https://console.example/runs/team/fix-1) (uid `u-1`) |",
        "| Agent | `claude-code`, model `sonnet` |",
        "| Runner pool | `default`, image `runner:dev` |",
        "| Task | Fix the greeting \\| now |",
        "| Issue | http://forge/o/r/issues/7 |",
        "| Commit | `abc123` on `paddock/fix-1` |",
        "| Changes | +5/-1 in 2 file(s) |",
        "| Verification | Passed (TestsPassed): 3 passed |",
        "| Usage | 1200 input + 80 output tokens, 3 turn(s), 0.0123 USD |",
        "| Time | 2026-12-07 08:00:00 UTC to 2026-12-07 08:01:30 UTC (1m30s) |",
        "| Approval `BeforePush` | Approve by `alice` (\"looks \\| fine\"); Approved at 2026-12-07 08:01:10 UTC |",
    ] {
        assert!(pr.body.contains(want), "missing {want:?} in\n{}", pr.body);
    }
    assert!(pr.body.ends_with(&marker("u-1")));
}

#[test]
fn a_receipt_without_gates_verification_or_console_says_so() {
    let mut st = ended(true, json!({}));
    st.as_object_mut().unwrap().remove("verification");
    let r = run(json!({"push": true, "pullRequest": {"base": "main"}}), st);
    let prompt = PromptText::of_fetched(&r).unwrap();
    let body = receipt(&r, Some(&prompt), &[], None);
    assert!(body.contains("| Run | `team/fix-1` (uid `u-1`) |"), "{body}");
    assert!(body.contains("| Verification | not configured |"));
    assert!(body.contains("| Approvals | none required |"));
    let pr = new_pull_request(&r, Some(&prompt), wanted(&r).unwrap(), &[], None);
    assert_eq!(pr.title, "paddock: Fix the greeting | now", "the default title");
    assert!(pr.body.starts_with("### Paddock receipt"), "no body text, no separator");
    // A run with spec.promptFrom: its receipt says where the task came from.
    let pr = new_pull_request(&r, None, wanted(&r).unwrap(), &[], None);
    assert!(pr.body.contains("| Task | (from a ConfigMap) |"), "{}", pr.body);
}
