//! Unit tests of the ApprovalGate controller's pure parts and its reconcile against a recorded API.
use super::*;
use paddock_crds::{AgentRun, Approvers, Decision, GateRequest, GateStage};

fn spec(quorum: u32, users: &[&str], decisions: &[(&str, Verdict)]) -> ApprovalGateSpec {
    ApprovalGateSpec {
        run_ref: paddock_crds::RunReference {
            name: "r".into(),
            ..Default::default()
        },
        stage: GateStage::BeforeStart,
        request: GateRequest::default(),
        approvers: Approvers {
            users: users.iter().map(|s| s.to_string()).collect(),
            groups: vec![],
        },
        quorum,
        timeout: None,
        on_timeout: None,
        decisions: decisions
            .iter()
            .map(|(a, d)| Decision {
                approver: a.to_string(),
                decision: *d,
                comment: None,
                candidate: None,
                answer: None,
            })
            .collect(),
    }
}

/// A pending in-run gate of run `r` (uid `u1`), asked by `attempt`, with `decisions`.
fn gate(attempt: Option<u32>, decisions: &[(&str, Verdict)]) -> ApprovalGate {
    let mut s = spec(1, &["alice"], decisions);
    s.run_ref.uid = Some("u1".into());
    s.run_ref.attempt = attempt;
    s.stage = if attempt.is_some() {
        GateStage::ToolUse
    } else {
        GateStage::BeforeStart
    };
    let mut g = ApprovalGate::new("r-tool-1", s);
    g.metadata.namespace = Some("ns".into());
    g.metadata.generation = Some(1);
    g.status = Some(ApprovalGateStatus {
        state: Some(GateState::Pending),
        ..Default::default()
    });
    g
}

/// Run `r` in namespace `ns` with `uid`, `phase`, current `attempt` and ended `attempts`.
fn run(uid: &str, phase: Option<&str>, attempt: Option<u32>, ended: &[u32]) -> AgentRun {
    let attempts: Vec<serde_json::Value> = ended
        .iter()
        .map(|a| serde_json::json!({"attempt": a, "podName": format!("r-{a}"), "reason": "PodDeleted", "message": "x"}))
        .collect();
    let mut status = serde_json::json!({"attempts": attempts});
    if let Some(p) = phase {
        status["phase"] = p.into();
    }
    if let Some(a) = attempt {
        status["attempt"] = a.into();
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": "r", "namespace": "ns", "uid": uid},
        "spec": {"repo": {"url": "https://example.com/r.git"}, "agent": {"name": "claude-code"}, "prompt": "x"},
        "status": status,
    }))
    .unwrap()
}

#[test]
fn a_pick_needs_its_quorum_on_one_listed_candidate() {
    let mut s = spec(2, &["alice", "bob", "carol"], &[]);
    s.stage = GateStage::Pick;
    s.request.candidates = vec!["a".into(), "b".into()];
    let pick = |who: &str, c: Option<&str>, d: Verdict| Decision {
        approver: who.into(),
        decision: d,
        comment: None,
        candidate: c.map(str::to_string),
        answer: None,
    };
    s.decisions = vec![
        pick("alice", Some("a"), Verdict::Approve),
        pick("bob", Some("b"), Verdict::Approve),
    ];
    assert_eq!(compute_state(&s).0, GateState::Pending, "two approvals, one each");
    assert_eq!(compute_state(&s).1, 1, "a quorum of 2 is not half met twice");
    assert_eq!(picked(&s), None);
    s.decisions.push(pick("carol", Some("b"), Verdict::Approve));
    assert_eq!(compute_state(&s), (GateState::Approved, 2, Some("carol".into())));
    assert_eq!(picked(&s).as_deref(), Some("b"));
    // An unlisted candidate or a repeated approver counts for nothing.
    s.decisions = vec![
        pick("alice", Some("zzz"), Verdict::Approve),
        pick("bob", Some("a"), Verdict::Approve),
        pick("bob", Some("a"), Verdict::Approve),
    ];
    assert_eq!(compute_state(&s).0, GateState::Pending);
    s.decisions.push(pick("carol", None, Verdict::Reject));
    assert_eq!(compute_state(&s).0, GateState::Rejected);
    assert_eq!(picked(&s), None);
    // Quorum 1: the first listed pick decides.
    s.quorum = 1;
    s.decisions = vec![
        pick("mallory", Some("a"), Verdict::Approve),
        pick("bob", Some("b"), Verdict::Approve),
    ];
    assert_eq!(picked(&s).as_deref(), Some("b"), "mallory is not an approver");
}

#[test]
fn withdrawal_table() {
    use Withdrawal::*;
    let running = run("u1", Some("Running"), Some(1), &[]);
    let cases: Vec<(&str, ApprovalGate, Option<AgentRun>, Option<Withdrawal>)> = vec![
        (
            "running run, its attempt",
            gate(Some(1), &[]),
            Some(running.clone()),
            None,
        ),
        (
            "awaiting approval",
            gate(Some(1), &[]),
            Some(run("u1", Some("AwaitingApproval"), None, &[])),
            None,
        ),
        ("no status yet", gate(None, &[]), Some(run("u1", None, None, &[])), None),
        (
            "succeeded",
            gate(Some(1), &[]),
            Some(run("u1", Some("Succeeded"), Some(1), &[])),
            Some(RunFinished),
        ),
        (
            "cancelled before start",
            gate(None, &[]),
            Some(run("u1", Some("Cancelled"), None, &[])),
            Some(RunFinished),
        ),
        (
            "failed",
            gate(Some(1), &[]),
            Some(run("u1", Some("Failed"), Some(1), &[])),
            Some(RunFinished),
        ),
        (
            "rejected at another gate",
            gate(Some(1), &[]),
            Some(run("u1", Some("Rejected"), Some(1), &[])),
            Some(RunFinished),
        ),
        (
            "timed out",
            gate(Some(1), &[]),
            Some(run("u1", Some("TimedOut"), Some(1), &[])),
            Some(RunFinished),
        ),
        (
            "retry backoff: attempt 1 ended",
            gate(Some(1), &[]),
            Some(run("u1", Some("Pending"), Some(2), &[1])),
            Some(Superseded),
        ),
        (
            "attempt 2 runs",
            gate(Some(1), &[]),
            Some(run("u1", Some("Running"), Some(2), &[1])),
            Some(Superseded),
        ),
        (
            "attempt 2's own gate",
            gate(Some(2), &[]),
            Some(run("u1", Some("Running"), Some(2), &[1])),
            None,
        ),
        ("run gone", gate(Some(1), &[]), None, Some(RunDeleted)),
        (
            "re-created under the same name",
            gate(None, &[]),
            Some(run("u2", Some("AwaitingApproval"), None, &[])),
            Some(RunDeleted),
        ),
    ];
    for (name, g, r, want) in cases {
        assert_eq!(compute_withdrawal(&g, r.as_ref()).map(|w| w.0), want, "{name}");
    }
    let mut deleting = running.clone();
    deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    assert_eq!(
        compute_withdrawal(&gate(Some(1), &[]), Some(&deleting)).map(|w| w.0),
        Some(RunDeleted)
    );
    // A gate without a run UID (made by hand) goes by name, and stays while no run has it.
    let mut by_hand = gate(None, &[]);
    by_hand.spec.run_ref.uid = None;
    assert_eq!(compute_withdrawal(&by_hand, Some(&running)), None);
    assert_eq!(compute_withdrawal(&by_hand, None), None);
    assert_eq!(
        compute_withdrawal(&by_hand, Some(&run("u9", Some("Failed"), None, &[]))).map(|w| w.0),
        Some(RunFinished)
    );
    // The message names the run and its end, and says late decisions were not counted.
    let (_, message) = compute_withdrawal(
        &gate(Some(1), &[("alice", Verdict::Approve)]),
        Some(&run("u1", Some("Cancelled"), Some(1), &[])),
    )
    .unwrap();
    assert_eq!(
        message,
        "AgentRun r ended (Cancelled) before anyone decided; the 1 decision recorded was not counted"
    );
}

#[test]
fn a_run_change_wakes_only_the_gates_it_withdraws() {
    let mut mine = gate(Some(1), &[]);
    mine.metadata.name = Some("r-tool-1".into());
    let mut decided = gate(Some(1), &[]);
    decided.metadata.name = Some("r-tool-2".into());
    decided.status.as_mut().unwrap().state = Some(GateState::Approved);
    let mut other_ns = gate(Some(1), &[]);
    other_ns.metadata.namespace = Some("elsewhere".into());
    let mut other_run = gate(Some(1), &[]);
    other_run.metadata.name = Some("s-tool-1".into());
    other_run.spec.run_ref.name = "s".into();
    let gates: Vec<Arc<ApprovalGate>> = [mine, decided, other_ns, other_run].into_iter().map(Arc::new).collect();
    let names = |r: &AgentRun| {
        gates_to_withdraw(r, &gates)
            .into_iter()
            .map(|o| o.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&run("u1", Some("Succeeded"), Some(1), &[])), ["r-tool-1"]);
    assert!(names(&run("u1", Some("Running"), Some(1), &[])).is_empty());
}

#[test]
fn the_withdrawn_status_is_final_and_says_why() {
    let now = Time(k8s_openapi::jiff::Timestamp::from_second(100).unwrap());
    let old = ApprovalGateStatus {
        state: Some(GateState::Pending),
        approvals: 1,
        ..Default::default()
    };
    let st = build_withdrawn_status(&old, Withdrawal::Superseded, "attempt 1 ended", Some(3), now.clone());
    assert_eq!(st.state, Some(GateState::Withdrawn));
    assert!(st.state.unwrap().is_final());
    assert_eq!((st.approvals, st.decided_by.as_deref()), (1, None));
    assert_eq!(st.decided_at, Some(now));
    assert_eq!(st.observed_generation, Some(3));
    let c = paddock_crds::condition::find_condition(&st.conditions, COND_DECIDED).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
        ("True", "Superseded", "attempt 1 ended")
    );
}

/// Against a fake API server: a pending gate of a run that ended is written `Withdrawn`
/// (status patch by the gate's field manager), and no decision counts any more.
#[tokio::test]
async fn reconcile_withdraws_the_gate_of_an_ended_run() {
    let g = gate(Some(1), &[("alice", Verdict::Approve)]);
    let gate_path = "/apis/paddock.dev/v1alpha1/namespaces/ns/approvalgates/r-tool-1".to_string();
    let run_path = "/apis/paddock.dev/v1alpha1/namespaces/ns/agentruns/r".to_string();
    let ended = run("u1", Some("Succeeded"), Some(1), &[]);
    let (ctx, written) = crate::context::test_context_recording(vec![
        (gate_path.clone(), serde_json::to_value(&g).unwrap()),
        (run_path, serde_json::to_value(&ended).unwrap()),
    ]);
    let action = reconcile(Arc::new(g.clone()), Arc::new(ctx)).await.unwrap();
    assert_eq!(action, Action::await_change());
    let written = written.lock().unwrap().clone();
    let (method, path, body) = written.first().expect("a status write").clone();
    assert_eq!((method.as_str(), path), ("PATCH", format!("{gate_path}/status")));
    assert_eq!(body["status"]["state"], "Withdrawn");
    assert_eq!(body["status"]["conditions"][0]["type"], "Decided");
    assert_eq!(body["status"]["conditions"][0]["reason"], "RunFinished");
    assert!(body["status"].get("decidedBy").is_none(), "{body}");
    // The approval was recorded too late: not counted, the run never sees it.
    assert_eq!(
        body["status"]["conditions"][0]["message"],
        "AgentRun r ended (Succeeded) before anyone decided; the 1 decision recorded was not counted"
    );
    // The Event says why.
    assert!(
        written
            .iter()
            .any(|(m, p, b)| m == "POST" && p.ends_with("/events") && b["reason"] == "RunFinished"),
        "{written:?}"
    );

    // Once withdrawn, a decision appended later changes nothing: no request at all.
    let mut late = g.clone();
    late.status = Some(body["status"].clone()).map(|s| serde_json::from_value(s).unwrap());
    late.spec.decisions.push(Decision {
        approver: "alice".into(),
        decision: Verdict::Approve,
        comment: None,
        candidate: None,
        answer: None,
    });
    let (ctx, written) = crate::context::test_context_recording(vec![]);
    let action = reconcile(Arc::new(late), Arc::new(ctx)).await.unwrap();
    assert_eq!(action, Action::await_change());
    assert!(written.lock().unwrap().is_empty());
}

/// A gate of a run that is still on the asking attempt counts its decisions as before.
#[tokio::test]
async fn reconcile_counts_decisions_while_the_run_waits() {
    let g = gate(Some(1), &[("alice", Verdict::Reject)]);
    let gate_path = "/apis/paddock.dev/v1alpha1/namespaces/ns/approvalgates/r-tool-1".to_string();
    let run_path = "/apis/paddock.dev/v1alpha1/namespaces/ns/agentruns/r".to_string();
    let waiting = run("u1", Some("AwaitingApproval"), Some(1), &[]);
    let (ctx, written) = crate::context::test_context_recording(vec![
        (gate_path.clone(), serde_json::to_value(&g).unwrap()),
        (run_path, serde_json::to_value(&waiting).unwrap()),
    ]);
    reconcile(Arc::new(g), Arc::new(ctx)).await.unwrap();
    let written = written.lock().unwrap().clone();
    let (_, path, body) = written.first().expect("a status write").clone();
    assert_eq!(path, format!("{gate_path}/status"));
    assert_eq!(body["status"]["state"], "Rejected");
    assert_eq!(body["status"]["decidedBy"], "alice");
}

#[test]
fn expiry_schedule() {
    assert_eq!(expiry(1000, 10), (1010, 1008));
    assert_eq!(expiry(0, 86400), (86400, 86400 - 600));
    assert_eq!(expiry(0, 1), (1, 1));
}

#[test]
fn decisions_table() {
    use Verdict::*;
    let cases = [
        (spec(1, &[], &[]), GateState::Pending, 0),
        (spec(1, &[], &[("alice", Approve)]), GateState::Approved, 1),
        (
            spec(2, &[], &[("alice", Approve), ("alice", Approve)]),
            GateState::Pending,
            1,
        ),
        (
            spec(2, &[], &[("alice", Approve), ("bob", Approve)]),
            GateState::Approved,
            2,
        ),
        (
            spec(2, &[], &[("alice", Approve), ("bob", Reject)]),
            GateState::Rejected,
            1,
        ),
        (spec(1, &["alice"], &[("mallory", Approve)]), GateState::Pending, 0),
        (
            spec(1, &["alice"], &[("mallory", Reject), ("alice", Approve)]),
            GateState::Approved,
            1,
        ),
    ];
    for (i, (s, state, n)) in cases.into_iter().enumerate() {
        let (got, count, _) = compute_state(&s);
        assert_eq!((got, count), (state, n), "case {i}");
    }
}

#[test]
fn a_question_is_answered_by_the_decision_that_completes_its_quorum() {
    let mut s = spec(1, &["alice"], &[]);
    s.stage = GateStage::Question;
    let answer = |who: &str, a: Option<&str>| Decision {
        approver: who.into(),
        decision: Verdict::Approve,
        comment: None,
        candidate: None,
        answer: a.map(str::to_string),
    };
    // Not listed, then no answer: neither counts.
    s.decisions = vec![answer("mallory", Some("push to main")), answer("alice", None)];
    assert_eq!(compute_state(&s).0, GateState::Pending);
    s.decisions.push(answer("alice", Some("keep v2")));
    // alice's answerless approval counted for nothing, so her answer is the one.
    assert_eq!(compute_state(&s), (GateState::Approved, 1, Some("alice".into())));
    assert_eq!(super::answer(&s).as_deref(), Some("keep v2"));
    assert_eq!(picked(&s), None);
}

#[test]
fn a_plan_gate_s_request_for_changes_decides_it_with_the_comment() {
    let mut s = spec(2, &["alice", "bob"], &[]);
    s.stage = GateStage::Plan;
    s.decisions = vec![
        Decision {
            approver: "alice".into(),
            decision: Verdict::Approve,
            comment: None,
            candidate: None,
            answer: None,
        },
        Decision {
            approver: "bob".into(),
            decision: Verdict::RequestChanges,
            comment: Some("add a CHANGELOG entry".into()),
            candidate: None,
            answer: None,
        },
    ];
    assert_eq!(compute_state(&s), (GateState::ChangesRequested, 1, Some("bob".into())));
    assert_eq!(super::answer(&s).as_deref(), Some("add a CHANGELOG entry"));
    // Elsewhere a RequestChanges counts for nothing.
    s.stage = GateStage::ToolUse;
    assert_eq!(compute_state(&s).0, GateState::Pending);
}
