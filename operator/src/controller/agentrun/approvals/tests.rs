//! Unit tests of [`super`] (`approvals.rs`).

use super::*;
use paddock_crds::{ApprovalGateStatus, ApprovalsSpec, ToolRule, ToolUsePolicy};
use serde_json::json;

fn run() -> AgentRun {
    let mut r: AgentRun = serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": "r1", "namespace": "ns", "uid": "u1"},
        "spec": {"repo": {"url": "https://example.com/r.git"}, "agent": {"name": "claude-code"}, "prompt": "x",
                 "output": {"push": true}}
    }))
    .unwrap();
    r.spec.approvals = Some(ApprovalsSpec {
        before_push: Some(GatePolicy::default()),
        tool_use: Some(ToolUsePolicy {
            rules: vec![ToolRule {
                tool: "Bash".into(),
                pattern: Some("git push*".into()),
            }],
            gate: GatePolicy {
                quorum: Some(2),
                ..Default::default()
            },
        }),
        ..Default::default()
    });
    r
}

fn gate(name: &str, state: Option<GateState>, on_timeout: Option<TimeoutAction>) -> ApprovalGate {
    let mut g = new_gate(
        &run(),
        &GatePolicy {
            on_timeout,
            ..Default::default()
        },
        name,
        GateStage::ToolUse,
        GateRequest::default(),
        Some(1),
    );
    g.status = Some(ApprovalGateStatus {
        state,
        ..Default::default()
    });
    g
}

#[test]
fn ids_are_checked() {
    for ok in ["push", "tool-1", "tool-9999"] {
        assert!(valid_id(ok), "{ok}");
    }
    for bad in [
        "",
        "tool-",
        "tool-x",
        "tool-12345",
        "Push",
        "tool-1/../x",
        "before-start",
    ] {
        assert!(!valid_id(bad), "{bad}");
    }
}

#[test]
fn requests_map_to_the_configured_policy_only() {
    let r = run();
    let push = Request {
        id: "push".into(),
        stage: "BeforePush".into(),
        ..Default::default()
    };
    assert_eq!(policy_for(&r, &push).map(|p| p.0), Some(GateStage::BeforePush));
    let tool = Request {
        id: "tool-1".into(),
        stage: "ToolUse".into(),
        ..Default::default()
    };
    let (stage, policy) = policy_for(&r, &tool).unwrap();
    assert_eq!((stage, policy.quorum), (GateStage::ToolUse, Some(2)));
    // A ToolUse request may not use the push id, nor an unknown stage.
    let forged = Request {
        id: "push".into(),
        stage: "ToolUse".into(),
        ..Default::default()
    };
    assert!(policy_for(&r, &forged).is_none());
    let mut plain = run();
    plain.spec.approvals = None;
    assert!(policy_for(&plain, &push).is_none());
}

#[test]
fn verdicts_follow_gate_state_and_on_timeout() {
    assert_eq!(verdict(&gate("r1-tool-1", Some(GateState::Pending), None)), None);
    assert_eq!(verdict(&gate("r1-tool-1", None, None)), None);
    assert_eq!(
        verdict(&gate("r1-tool-1", Some(GateState::Approved), None)),
        Some("Approve")
    );
    assert_eq!(
        verdict(&gate("r1-tool-1", Some(GateState::Rejected), None)),
        Some("Reject")
    );
    assert_eq!(
        verdict(&gate("r1-tool-1", Some(GateState::Expired), None)),
        Some("Expired")
    );
    assert_eq!(
        verdict(&gate(
            "r1-tool-1",
            Some(GateState::Expired),
            Some(TimeoutAction::Approve)
        )),
        Some("Approve")
    );
}

/// A decided gate of request `id`, attempt `attempt`, as `create_gate` labels it.
fn labelled(id: &str, attempt: u32, state: GateState, stage: GateStage, commit: Option<&str>) -> ApprovalGate {
    let mut g = gate(&format!("r1-{id}"), Some(state), None);
    g.spec.stage = stage;
    g.spec.request.commit = commit.map(str::to_string);
    g.spec.request.id = Some(id.into());
    g.spec.run_ref.attempt = Some(attempt);
    g
}

#[test]
fn annotations_are_signed_for_the_run_attempt_request_and_commit() {
    let signer = paddock_crds::verdict::Signer::generate().unwrap();
    let key = signer.public_key_b64();
    let gates = vec![
        labelled("push", 1, GateState::Approved, GateStage::BeforePush, Some("c1")),
        labelled("tool-2", 1, GateState::Rejected, GateStage::ToolUse, None),
        labelled("tool-3", 1, GateState::Pending, GateStage::ToolUse, None),
        // The first attempt's verdict does not reach the second attempt's pod.
        labelled("tool-4", 2, GateState::Approved, GateStage::ToolUse, None),
    ];
    let a = verdict_annotations(&run(), &gates, 1, &signer);
    assert_eq!(
        a.keys().cloned().collect::<Vec<_>>(),
        ["decision.paddock.dev/push", "decision.paddock.dev/tool-2"]
    );
    let subject = |id: &'static str, commit: &'static str| paddock_crds::verdict::Subject {
        namespace: "ns",
        run: "r1",
        run_uid: "u1",
        attempt: 1,
        id,
        subject: commit,
    };
    let v = |k: &str| a[&format!("decision.paddock.dev/{k}")].clone();
    assert_eq!(
        paddock_crds::verdict::verified_verdict(&key, &subject("push", "c1"), &v("push")),
        Some("Approve")
    );
    assert_eq!(
        paddock_crds::verdict::verified_verdict(&key, &subject("push", "c2"), &v("push")),
        None
    );
    assert_eq!(
        paddock_crds::verdict::verified_verdict(&key, &subject("tool-2", ""), &v("tool-2")),
        Some("Reject")
    );
    let second = verdict_annotations(&run(), &gates, 2, &signer);
    assert_eq!(
        second.keys().cloned().collect::<Vec<_>>(),
        ["decision.paddock.dev/tool-4"]
    );
    // Labels (which a namespace `edit` user may change) decide nothing: relabelling the
    // approved tool-2 gate as tool-5 of attempt 2 signs nothing more.
    let mut relabelled = gates.clone();
    let l = relabelled[1].metadata.labels.get_or_insert_with(Default::default);
    l.insert(LABEL_REQUEST.into(), "tool-5".into());
    l.insert(paddock_crds::LABEL_ATTEMPT.into(), "2".into());
    assert_eq!(verdict_annotations(&run(), &relabelled, 1, &signer), a);
    // Nor owner references: gates of another run UID (an earlier run of the same name) sign
    // nothing, whatever their owner references say.
    let mut foreign = gates.clone();
    for g in &mut foreign {
        g.spec.run_ref.uid = Some("earlier".into());
    }
    assert!(verdict_annotations(&run(), &foreign, 1, &signer).is_empty());
}

#[test]
fn answers_and_requested_changes_travel_with_a_verdict_signed_over_their_digest() {
    use paddock_crds::verdict::{text_subject, verified_verdict, Subject};
    let signer = paddock_crds::verdict::Signer::generate().unwrap();
    let key = signer.public_key_b64();
    let mut q = labelled("question-1", 1, GateState::Approved, GateStage::Question, None);
    q.status.as_mut().unwrap().answer = Some("keep v2".into());
    let mut p = labelled("plan-1", 1, GateState::ChangesRequested, GateStage::Plan, None);
    p.status.as_mut().unwrap().answer = Some("add a CHANGELOG entry".into());
    let expired = labelled("question-2", 1, GateState::Expired, GateStage::Question, None);
    let approved = labelled("plan-2", 1, GateState::Approved, GateStage::Plan, None);
    let a = verdict_annotations(&run(), &[q, p, expired, approved], 1, &signer);
    assert_eq!(a["text.paddock.dev/question-1"], "keep v2");
    assert_eq!(a["text.paddock.dev/plan-1"], "add a CHANGELOG entry");
    assert!(!a.contains_key("text.paddock.dev/question-2"), "no answer, no text");
    let check = |id: &str, text: &str| {
        let digest = text_subject(text);
        let s = Subject {
            namespace: "ns",
            run: "r1",
            run_uid: "u1",
            attempt: 1,
            id,
            subject: &digest,
        };
        verified_verdict(&key, &s, &a[&format!("decision.paddock.dev/{id}")]).map(str::to_string)
    };
    assert_eq!(check("question-1", "keep v2").as_deref(), Some("Approve"));
    assert_eq!(check("question-1", "push to main"), None, "another answer");
    assert_eq!(
        check("plan-1", "add a CHANGELOG entry").as_deref(),
        Some("RequestChanges")
    );
    // A question that expired has no answer to give, whatever onTimeout says.
    assert_eq!(check("question-2", "").as_deref(), Some("Expired"));
    assert_eq!(check("plan-2", "").as_deref(), Some("Approve"));
    assert_eq!(
        plan_verdict(
            &run(),
            &[labelled("plan-2", 1, GateState::Approved, GateStage::Plan, None)],
            1
        ),
        PlanVerdict::Approved
    );
    assert_eq!(
        plan_verdict(
            &run(),
            &[labelled(
                "plan-1",
                1,
                GateState::ChangesRequested,
                GateStage::Plan,
                None
            )],
            1
        ),
        PlanVerdict::Waiting
    );
    assert!(matches!(
        plan_verdict(
            &run(),
            &[labelled("plan-1", 1, GateState::Rejected, GateStage::Plan, None)],
            1
        ),
        PlanVerdict::Rejected { expired: false, .. }
    ));
    assert_eq!(
        plan_verdict(
            &run(),
            &[labelled("plan-1", 2, GateState::Approved, GateStage::Plan, None)],
            1
        ),
        PlanVerdict::Waiting,
        "another attempt's approval"
    );
    assert!(valid_id("question-12") && valid_id("plan-3") && valid_id("plan-99"));
    assert!(!valid_id("plan-") && !valid_id("plan-100") && !valid_id("question-12345"));
}

#[test]
fn a_push_gate_shows_the_gateways_review_not_the_agents_report() {
    let review = r#"{"type":"gateway_branch","purpose":"review","branch":"paddock/r1","base":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","commit":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","filesChanged":2,"insertions":7,"deletions":1}"#;
    assert_eq!(
        reviewed_push(&artifacts::parse_gateway_log("no review yet\n"), "paddock/r1"),
        None
    );
    let req = reviewed_push(&artifacts::parse_gateway_log(review), "paddock/r1").unwrap();
    assert_eq!(req.commit.as_deref(), Some("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"));
    assert_eq!(req.diffstat.as_deref(), Some("2 files, +7/-1"));
    assert!(req.summary.contains("bbbbbbbbbbbb"), "{}", req.summary);
}
