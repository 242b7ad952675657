//! Unit tests of [`super`] (`runmessage.rs`).

use super::*;
use serde_json::json;

fn t(s: &str) -> Time {
    Time(s.parse().unwrap())
}

fn msg(status: serde_json::Value) -> RunMessage {
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "RunMessage",
        "metadata": {"name": "r1-msg-a", "namespace": "ns", "uid": "m-uid", "generation": 1,
                     "creationTimestamp": "2027-01-15T08:00:00Z"},
        "spec": {"runRef": {"name": "r1"}, "text": "also update the changelog", "sender": "alice"},
        "status": status,
    }))
    .unwrap()
}

fn run(agent: &str, status: serde_json::Value) -> AgentRun {
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": "r1", "namespace": "ns", "uid": "r-uid"},
        "spec": {"repo": {"url": "https://example.com/r.git"}, "agent": {"name": agent}, "prompt": "x"},
        "status": status,
    }))
    .unwrap()
}

/// A message handed to the pod of attempt 1.
fn sent_to_1() -> RunMessage {
    msg(
        json!({"state": "Pending", "attempt": 1, "conditions": [{"type": "Delivered", "status": "Unknown",
        "reason": "SentToPod", "message": "", "lastTransitionTime": "2027-01-15T08:00:10Z"}]}),
    )
}

/// A running claude-code run with `approvals`.
fn reviewed(approvals: serde_json::Value) -> AgentRun {
    let mut r = run(
        "claude-code",
        json!({"phase": "Running", "podName": "r1-1", "attempt": 1}),
    );
    r.spec.approvals = Some(serde_json::from_value(approvals).unwrap());
    r
}

fn reason(p: &MessagePlan) -> (Option<MessageState>, String) {
    let c = p.status.conditions.iter().find(|c| c.type_ == COND_DELIVERED).unwrap();
    (p.status.state, c.reason.clone())
}

/// (what, message, run, delivery, now, want state, want reason, sends).
type Case<'a> = (
    &'a str,
    RunMessage,
    Option<AgentRun>,
    Option<&'a Delivery>,
    &'a Time,
    MessageState,
    &'a str,
    bool,
);

#[test]
fn each_case_gets_its_state_and_reason() {
    let now = t("2027-01-15T08:00:30Z");
    let later = t("2027-01-15T08:05:00Z");
    let running = json!({"phase": "Running", "podName": "r1-1", "attempt": 1});
    let delivery = Delivery {
        turn: 2,
        attempt: 1,
        at: now.clone(),
    };
    let cases: Vec<Case> = vec![
        (
            "no run yet",
            msg(json!(null)),
            None,
            None,
            &now,
            MessageState::Pending,
            "WaitingForRun",
            false,
        ),
        (
            "no run for long",
            msg(json!(null)),
            None,
            None,
            &later,
            MessageState::Refused,
            "RunNotFound",
            false,
        ),
        (
            "queued",
            msg(json!(null)),
            Some(run("claude-code", json!({"phase": "Queued"}))),
            None,
            &now,
            MessageState::Pending,
            "WaitingForRun",
            false,
        ),
        (
            "running",
            msg(json!(null)),
            Some(run("claude-code", running.clone())),
            None,
            &now,
            MessageState::Pending,
            "SentToPod",
            true,
        ),
        (
            "awaiting approval",
            msg(json!(null)),
            Some(run(
                "claude-code",
                json!({"phase": "AwaitingApproval", "podName": "r1-1", "attempt": 1}),
            )),
            None,
            &now,
            MessageState::Pending,
            "SentToPod",
            true,
        ),
        (
            "not supported",
            msg(json!(null)),
            Some(run("codex", running.clone())),
            None,
            &now,
            MessageState::Refused,
            "NotSupported",
            false,
        ),
        (
            "ended",
            msg(json!(null)),
            Some(run("claude-code", json!({"phase": "Succeeded", "podName": "r1-1"}))),
            None,
            &now,
            MessageState::Refused,
            "RunFinished",
            false,
        ),
        (
            "delivered",
            sent_to_1(),
            Some(run("claude-code", json!({"phase": "Succeeded"}))),
            Some(&delivery),
            &now,
            MessageState::Delivered,
            "Delivered",
            false,
        ),
        (
            "a report for a message never handed to the pod",
            msg(json!(null)),
            Some(run("claude-code", json!({"phase": "Succeeded"}))),
            Some(&delivery),
            &now,
            MessageState::Refused,
            "RunFinished",
            false,
        ),
        (
            "not a reviewer of the run's plan",
            msg(json!(null)),
            Some(reviewed(json!({"plan": {"approvers": {"users": ["bob"]}}}))),
            None,
            &now,
            MessageState::Refused,
            "SenderNotAllowed",
            false,
        ),
        (
            "a reviewer of the run's prompt",
            msg(json!(null)),
            Some(reviewed(json!({"beforeStart": {"approvers": {"users": ["alice"]}}}))),
            None,
            &now,
            MessageState::Pending,
            "SentToPod",
            true,
        ),
        (
            "a review anyone may approve",
            msg(json!(null)),
            Some(reviewed(json!({"plan": {}}))),
            None,
            &now,
            MessageState::Pending,
            "SentToPod",
            true,
        ),
    ];
    for (what, m, r, d, at, state, why, sends) in cases {
        let p = decide(&m, r.as_ref(), d, OnPod::default(), at);
        assert_eq!(reason(&p), (Some(state), why.to_string()), "{what}");
        assert_eq!(p.send_to.is_some(), sends, "{what}");
    }
}

#[test]
fn a_message_is_sent_once_per_attempt_and_delivery_is_recorded() {
    let now = t("2027-01-15T08:00:30Z");
    let r1 = run(
        "claude-code",
        json!({"phase": "Running", "podName": "r1-1", "attempt": 1}),
    );
    let first = decide(&msg(json!(null)), Some(&r1), None, OnPod::default(), &now);
    assert_eq!(first.send_to, Some(("r1-1".into(), 1)));
    let sent = msg(serde_json::to_value(&first.status).unwrap());
    let again = decide(&sent, Some(&r1), None, OnPod::default(), &now);
    assert_eq!(again.send_to, None, "already handed to this attempt's pod");
    assert_eq!(again.status, first.status, "no status write");
    // A retry's pod gets it again.
    let r2 = run(
        "claude-code",
        json!({"phase": "Running", "podName": "r1-2", "attempt": 2}),
    );
    assert_eq!(
        decide(&sent, Some(&r2), None, OnPod::default(), &now).send_to,
        Some(("r1-2".into(), 2))
    );
    let d = Delivery {
        turn: 3,
        attempt: 2,
        at: now.clone(),
    };
    // Attempt 2's report does not count for a message handed to attempt 1's pod only.
    assert_eq!(
        decide(&sent, Some(&r1), Some(&d), OnPod::default(), &now).status,
        first.status
    );
    let sent2 = msg(serde_json::to_value(decide(&sent, Some(&r2), None, OnPod::default(), &now).status).unwrap());
    let done = decide(&sent2, Some(&r2), Some(&d), OnPod::default(), &now);
    assert_eq!(done.status.turn, Some(3));
    assert_eq!(done.status.attempt, Some(2));
    assert_eq!(done.status.delivered_at, Some(now.clone()));
    assert!(matches!(
        done.event,
        Some((true, EventType::Normal, "MessageDelivered", _))
    ));
    // A pod full of messages takes no more; one already handed to it is not refused.
    let full = decide(
        &msg(json!(null)),
        Some(&r1),
        None,
        OnPod {
            count: MAX_MESSAGES_PER_POD,
            bytes: 0,
        },
        &now,
    );
    assert_eq!(full.status.state, Some(MessageState::Refused));
    assert_eq!(full.send_to, None);
    assert_eq!(
        decide(
            &sent,
            Some(&r1),
            None,
            OnPod {
                count: MAX_MESSAGES_PER_POD,
                bytes: 0
            },
            &now
        )
        .status,
        first.status
    );
}

#[test]
fn the_stored_log_tells_a_delivery() {
    let log = [
        r#"{"v":1,"seq":1,"ts":"2027-01-15T08:00:00.000Z","type":"message","text":"hi"}"#,
        r#"{"v":1,"seq":2,"ts":"2027-01-15T08:00:01.000Z","type":"message_delivered","id":"other","turn":1}"#,
        r#"{"v":1,"seq":3,"ts":"2027-01-15T08:00:02.000Z","type":"message_delivered","id":"m-uid","turn":4}"#,
    ]
    .join("\n");
    assert_eq!(delivered_in(&log, "m-uid"), Some(4));
    assert_eq!(delivered_in(&log, "nope"), None);
    // A full pod refuses by bytes too.
    let now = t("2027-01-15T08:00:30Z");
    let r1 = run(
        "claude-code",
        json!({"phase": "Running", "podName": "r1-1", "attempt": 1}),
    );
    let big = OnPod {
        count: 1,
        bytes: MAX_MESSAGE_BYTES_PER_POD - 10,
    };
    assert_eq!(
        reason(&decide(&msg(json!(null)), Some(&r1), None, big, &now)),
        (Some(MessageState::Refused), "TooManyMessages".to_string())
    );
}

#[test]
fn the_annotation_verifies_for_its_run_and_attempt_only() {
    let signer = paddock_crds::verdict::Signer::generate().unwrap();
    let r = run("claude-code", json!({}));
    let m = msg(json!(null));
    let (key, value) = pod_annotation(&m, &r, 2, &signer).unwrap();
    assert_eq!(key, "message.paddock.dev/m-uid");
    let pm: PodMessage = serde_json::from_str(&value).unwrap();
    assert_eq!(
        (pm.sender.as_str(), pm.text.as_str()),
        ("alice", "also update the changelog")
    );
    let base = |attempt| Subject {
        namespace: "ns",
        run: "r1",
        run_uid: "r-uid",
        attempt,
        id: "",
        subject: "",
    };
    let key_b64 = signer.public_key_b64();
    assert!(pm.verify(&key_b64, &base(2), "m-uid"));
    assert!(!pm.verify(&key_b64, &base(1), "m-uid"));
}
