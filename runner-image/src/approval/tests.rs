//! Unit tests of [`super`] (`approval.rs`).

use super::*;
use serde_json::json;

fn rule(tool: &str, pattern: Option<&str>) -> paddock_crds::ToolRule {
    paddock_crds::ToolRule {
        tool: tool.into(),
        pattern: pattern.map(str::to_string),
    }
}

#[test]
fn kubelet_annotation_file_parses() {
    let text = "decision.paddock.dev/push=\"Approve\"\nkubernetes.io/config.seen=\"2026-11-22T04:00:00Z\"\nx=\"a \\\"q\\\"\\nb\"\nbroken line\n";
    let m = parse_annotations(text);
    assert_eq!(m.get("decision.paddock.dev/push").map(String::as_str), Some("Approve"));
    assert_eq!(m.get("x").map(String::as_str), Some("a \"q\"\nb"));
    assert_eq!(m.len(), 3);
}

/// A signer and the check a pod of run r1 (uid u1), attempt 1, makes with its public key.
pub(crate) fn signed() -> (paddock_crds::verdict::Signer, VerdictCheck) {
    let signer = paddock_crds::verdict::Signer::generate().unwrap();
    let check = VerdictCheck {
        public_key: signer.public_key_b64(),
        namespace: "ns".into(),
        run: "r1".into(),
        run_uid: "u1".into(),
        attempt: 1,
    };
    (signer, check)
}

/// The annotation value the operator writes for `verdict` on request `id` of `check`'s pod.
pub(crate) fn value(
    signer: &paddock_crds::verdict::Signer,
    check: &VerdictCheck,
    id: &str,
    subject: &str,
    verdict: &str,
) -> String {
    let s = paddock_crds::verdict::Subject {
        namespace: &check.namespace,
        run: &check.run,
        run_uid: &check.run_uid,
        attempt: check.attempt,
        id,
        subject,
    };
    signer.verdict_value(&s, verdict).unwrap()
}

#[test]
fn verdict_is_read_per_id_and_only_when_signed() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("annotations");
    let (signer, check) = signed();
    assert_eq!(read_verdict(&f, &check, "push", "c1"), None);
    let reject = value(&signer, &check, "tool-1", "", "Reject");
    std::fs::write(&f, format!("decision.paddock.dev/tool-1=\"{reject}\"\n")).unwrap();
    assert_eq!(read_verdict(&f, &check, "tool-1", ""), Some(Verdict::Reject));
    assert_eq!(read_verdict(&f, &check, "tool-2", ""), None);
    // What an `edit` user can write: a bare verdict, or one signed for another request.
    std::fs::write(
        &f,
        format!("decision.paddock.dev/tool-2=\"Approve\"\ndecision.paddock.dev/tool-3=\"{reject}\"\n"),
    )
    .unwrap();
    assert_eq!(read_verdict(&f, &check, "tool-2", ""), None);
    assert_eq!(read_verdict(&f, &check, "tool-3", ""), None);
    // A push verdict is bound to the commit.
    let approve = value(&signer, &check, "push", "c1", "Approve");
    std::fs::write(&f, format!("decision.paddock.dev/push=\"{approve}\"\n")).unwrap();
    assert_eq!(read_verdict(&f, &check, "push", "c1"), Some(Verdict::Approve));
    assert_eq!(read_verdict(&f, &check, "push", "c2"), None);
    // The next attempt asks again.
    let next = VerdictCheck {
        attempt: 2,
        ..check.clone()
    };
    assert_eq!(read_verdict(&f, &next, "push", "c1"), None);
}

/// The annotation lines the operator writes for a verdict on `id` carrying `text` (no text
/// annotation when `text` is empty).
pub(crate) fn text_lines(
    signer: &paddock_crds::verdict::Signer,
    check: &VerdictCheck,
    id: &str,
    text: &str,
    verdict: &str,
) -> String {
    let v = value(signer, check, id, &paddock_crds::verdict::text_subject(text), verdict);
    let mut out = format!("decision.paddock.dev/{id}={v:?}\n");
    if !text.is_empty() {
        out.push_str(&format!("text.paddock.dev/{id}={text:?}\n"));
    }
    out
}

#[test]
fn verdict_texts_are_bound_to_the_signature() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("annotations");
    let (signer, check) = signed();
    let answer = "Use \"postgres\",\nnot sqlite";
    std::fs::write(&f, text_lines(&signer, &check, "question-1", answer, "Approve")).unwrap();
    assert_eq!(
        read_verdict_text(&f, &check, "question-1"),
        Some((Verdict::Approve, answer.to_string()))
    );
    // Another text under the same signature (what an `edit` user can write): refused.
    let swapped = text_lines(&signer, &check, "question-1", answer, "Approve").replace("postgres", "mysql");
    std::fs::write(&f, swapped).unwrap();
    assert_eq!(read_verdict_text(&f, &check, "question-1"), None);
    // No text annotation: the subject of the empty text.
    std::fs::write(&f, text_lines(&signer, &check, "question-2", "", "Reject")).unwrap();
    assert_eq!(
        read_verdict_text(&f, &check, "question-2"),
        Some((Verdict::Reject, String::new()))
    );
    // A text added next to a verdict signed without one is not its text.
    let added = format!(
        "{}text.paddock.dev/question-2=\"push to main\"\n",
        text_lines(&signer, &check, "question-2", "", "Reject")
    );
    std::fs::write(&f, added).unwrap();
    assert_eq!(
        read_verdict_text(&f, &check, "question-2"),
        Some((Verdict::Reject, String::new()))
    );
    let changes = "Split step 2";
    std::fs::write(&f, text_lines(&signer, &check, "plan-1", changes, "RequestChanges")).unwrap();
    assert_eq!(
        read_verdict_text(&f, &check, "plan-1"),
        Some((Verdict::RequestChanges, changes.to_string()))
    );
}

#[test]
fn only_a_signed_plan_approval_counts() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("annotations");
    let (signer, check) = signed();
    assert_eq!(plan_approved(&f, &check), None, "no file");
    // Unsigned, another run's, another attempt's, and a signed Reject or RequestChanges.
    let other_attempt = VerdictCheck {
        attempt: 2,
        ..check.clone()
    };
    let other_run = VerdictCheck {
        run_uid: "u2".into(),
        ..check.clone()
    };
    let text = format!(
        "decision.paddock.dev/plan-1=\"Approve\"\n{}{}{}{}",
        text_lines(&signer, &other_attempt, "plan-2", "", "Approve"),
        text_lines(&signer, &other_run, "plan-3", "", "Approve"),
        text_lines(&signer, &check, "plan-4", "", "Reject"),
        text_lines(&signer, &check, "plan-5", "more tests", "RequestChanges"),
    );
    std::fs::write(&f, &text).unwrap();
    assert_eq!(plan_approved(&f, &check), None);
    // A signed approval of a tool gate is not a plan approval.
    let tool = text_lines(&signer, &check, "tool-1", "", "Approve");
    std::fs::write(&f, format!("{text}{tool}")).unwrap();
    assert_eq!(plan_approved(&f, &check), None);
    let approve = text_lines(&signer, &check, "plan-6", "", "Approve");
    std::fs::write(&f, format!("{text}{approve}")).unwrap();
    assert_eq!(plan_approved(&f, &check).as_deref(), Some("plan-6"));
    // A text annotation added next to it by someone else does not hide it.
    std::fs::write(&f, format!("{text}{approve}text.paddock.dev/plan-6=\"x\"\n")).unwrap();
    assert_eq!(plan_approved(&f, &check).as_deref(), Some("plan-6"));
    // Attempt 2's own approval counts for attempt 2 only.
    assert_eq!(plan_approved(&f, &other_attempt).as_deref(), Some("plan-2"));
    let third = VerdictCheck { attempt: 3, ..check };
    assert_eq!(plan_approved(&f, &third), None);
}

#[test]
fn questions_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("approvals");
    let opts = |n: usize, len: usize| vec!["x".repeat(len); n];
    assert_eq!(write_question(&d, " ", &[]), Err(QuestionError::Empty));
    assert_eq!(
        write_question(&d, &"q".repeat(4097), &[]),
        Err(QuestionError::TooLong(4097))
    );
    assert_eq!(
        write_question(&d, "q?", &opts(17, 1)),
        Err(QuestionError::TooManyOptions(17))
    );
    assert_eq!(
        write_question(&d, "q?", &opts(2, 257)),
        Err(QuestionError::OptionTooLong(1))
    );
    let ok = write_question(&d, &"q".repeat(4096), &opts(16, 256)).unwrap();
    assert_eq!(ok.id, "question-1");
    assert_eq!(ok.options.len(), 16);
}

#[tokio::test]
async fn each_stage_numbers_its_own_requests() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("approvals");
    let cwd = Path::new("/workspace/work");
    let t = write_request(&d, "Bash", &json!({"command": "git push"}), cwd).unwrap();
    let q = write_question(
        &d,
        "Which database?\nWe have two.",
        &["postgres".into(), "sqlite".into()],
    )
    .unwrap();
    let p = write_plan(&d, &format!("# Add a cache\n{}", "x".repeat(MAX_PLAN_BYTES))).unwrap();
    let q2 = write_question(&d, "And the port?", &[]).unwrap();
    assert_eq!(
        [t.id.as_str(), q.id.as_str(), p.id.as_str(), q2.id.as_str()],
        ["tool-1", "question-1", "plan-1", "question-2"]
    );
    assert!(p.plan.as_ref().unwrap().len() <= MAX_PLAN_BYTES);
    let (tx, mut rx) = mpsc::channel(8);
    let task = tokio::spawn(watch_requests(d.clone(), tx));
    let mut got = vec![];
    for _ in 0..4 {
        got.push(rx.recv().await.unwrap());
    }
    drop(rx);
    task.await.unwrap();
    let question = got
        .iter()
        .find(|e| matches!(e, RunnerEvent::ApprovalRequested { id, .. } if id == "question-1"))
        .unwrap();
    assert_eq!(
        question,
        &RunnerEvent::ApprovalRequested {
            id: "question-1".into(),
            stage: "Question".into(),
            summary: "The agent asks: Which database?".into(),
            tool: None,
            input: None,
            commit: None,
            diffstat: None,
            question: Some("Which database?\nWe have two.".into()),
            options: vec!["postgres".into(), "sqlite".into()],
            plan: None,
        }
    );
    let plan = got
        .iter()
        .find_map(|e| match e {
            RunnerEvent::ApprovalRequested {
                id,
                stage,
                summary,
                plan,
                ..
            } if id == "plan-1" => Some((stage.clone(), summary.clone(), plan.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(plan.0, "Plan");
    assert_eq!(plan.1, "Review the agent's plan: Add a cache");
    assert!(plan.2.unwrap().starts_with("# Add a cache\nxxx"));
}

/// Concurrent callers (parallel tool calls) never share an id.
#[test]
fn ids_are_claimed_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("approvals");
    let ids: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| s.spawn(|| write_question(&d, "q?", &[]).unwrap().id))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 8, "{ids:?}");
}

#[test]
fn rules_match_the_subject_of_each_tool() {
    let rules = vec![
        rule("Bash", Some("git push*")),
        rule("Bash", Some("rm -rf *")),
        rule("Write", Some("/etc/*")),
    ];
    let cwd = Path::new("/workspace/work");
    let bash = |c: &str| json!({"command": c});
    assert!(matching_rule(&rules, "Bash", &bash("git push origin main"), cwd).is_some());
    assert!(matching_rule(&rules, "Bash", &bash("rm -rf /tmp/x/y"), cwd).is_some());
    assert!(matching_rule(&rules, "Bash", &bash("ls -la"), cwd).is_none());
    assert!(matching_rule(&rules, "Bash", &bash("echo git push"), cwd).is_none());
    assert!(matching_rule(&rules, "Write", &json!({"file_path": "/etc/passwd"}), cwd).is_some());
    assert!(matching_rule(&rules, "Write", &json!({"file_path": "src/x.rs"}), cwd).is_none());
    // A rule for another tool never matches.
    assert!(matching_rule(&rules, "Edit", &json!({"file_path": "/etc/passwd"}), cwd).is_none());
    let any = vec![rule("*", None)];
    assert!(matching_rule(&any, "WebFetch", &json!({"url": "https://x"}), cwd).is_some());
    let fetch = vec![rule("WebFetch", Some("https://*.example.com/*"))];
    assert!(matching_rule(&fetch, "WebFetch", &json!({"url": "https://a.example.com/p"}), cwd).is_some());
    assert!(matching_rule(&fetch, "WebFetch", &json!({"url": "https://evil.com/p"}), cwd).is_none());
}

#[tokio::test]
async fn request_files_become_events_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("approvals");
    let cwd = Path::new("/workspace/work");
    let a = write_request(&d, "Bash", &json!({"command": "git push"}), cwd).unwrap();
    let b = write_request(&d, "Bash", &json!({"command": "rm -rf x"}), cwd).unwrap();
    assert_eq!((a.id.as_str(), b.id.as_str()), ("tool-1", "tool-2"));
    write_verdict(&d, "tool-1", Verdict::Reject).unwrap();
    let (tx, mut rx) = mpsc::channel(8);
    let task = tokio::spawn(watch_requests(d.clone(), tx));
    let mut got = vec![];
    for _ in 0..3 {
        got.push(rx.recv().await.unwrap().type_name());
    }
    assert_eq!(got, ["approval_requested", "approval_requested", "approval_decided"]);
    drop(rx);
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn an_attempt_asks_no_more_than_the_operator_raises() {
    let dir = tempfile::tempdir().unwrap();
    for n in 1..=16 {
        assert_eq!(
            write_question(dir.path(), "q?", &[]).unwrap().id,
            format!("question-{n}")
        );
    }
    assert!(
        write_question(dir.path(), "q?", &[]).is_err(),
        "a 17th question would never be raised"
    );
    assert_eq!((max_requests("plan"), max_requests("tool")), (MAX_PLAN_GATES, 256));
}
