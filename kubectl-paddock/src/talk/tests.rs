use super::*;
use paddock_crds::events::RunnerEvent;
use serde_json::json;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn run(agent: &str, phase: Option<&str>) -> AgentRun {
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": "fix", "namespace": "team-a", "uid": "run-uid"},
        "spec": {"repo": {"url": "git://h/r.git"}, "agent": {"name": agent}, "prompt": "p"},
        "status": phase.map(|p| json!({"phase": p})),
    }))
    .unwrap()
}

fn gate(
    name: &str,
    run: &str,
    stage: &str,
    request: serde_json::Value,
    status: serde_json::Value,
    created: &str,
) -> ApprovalGate {
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "ApprovalGate",
        "metadata": {"name": name, "namespace": "team-a", "creationTimestamp": created},
        "spec": {"runRef": {"name": run}, "stage": stage, "request": request, "approvers": {}, "quorum": 1},
        "status": status,
    }))
    .unwrap()
}

fn question(options: &[&str]) -> ApprovalGate {
    gate(
        "fix-question-1",
        "fix",
        "Question",
        json!({"summary": "a question", "id": "question-1", "question": "Which database?", "options": options}),
        json!({"state": "Pending"}),
        "2026-12-07T10:00:00Z",
    )
}

fn plan(text: &str) -> ApprovalGate {
    gate(
        "fix-plan-1",
        "fix",
        "Plan",
        json!({"summary": "a plan", "id": "plan-1", "plan": text}),
        json!({"state": "Pending"}),
        "2026-12-07T10:00:00Z",
    )
}

fn message(name: &str, uid: &str, text: &str, status: serde_json::Value) -> RunMessage {
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "RunMessage",
        "metadata": {"name": name, "namespace": "team-a", "uid": uid, "creationTimestamp": "2026-12-07T10:00:00Z"},
        "spec": {"runRef": {"name": "fix"}, "text": text, "sender": "alice@example.com"},
        "status": status,
    }))
    .unwrap()
}

#[test]
fn a_message_is_generated_named_labelled_and_in_the_senders_name() {
    let m = new_message("fix", "alice@example.com", "also update the changelog");
    assert_eq!(
        serde_json::to_value(&m).unwrap(),
        json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "RunMessage",
               "metadata": {"generateName": "fix-msg-", "labels": {"paddock.dev/run": "fix"}},
               "spec": {"runRef": {"name": "fix"}, "text": "also update the changelog", "sender": "alice@example.com"}})
    );
}

#[test]
fn texts_the_api_would_refuse_are_refused_first() {
    check_text("the message", "hi").unwrap();
    check_text("the message", &"x".repeat(MAX_TEXT_BYTES)).unwrap();
    assert_eq!(
        check_text("the message", " \n").unwrap_err().to_string(),
        "the message is empty"
    );
    // 4096 bytes, not characters: 2,049 two-byte characters are too many.
    let err = check_text("the answer", &"é".repeat(2049)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the answer is 4098 bytes long; at most 4096 are allowed"
    );
}

#[test]
fn only_a_run_that_has_not_ended_takes_messages_and_the_note_says_what_will_happen() {
    assert_eq!(check_can_message(&run("claude-code", Some("Running"))).unwrap(), None);
    let err = check_can_message(&run("claude-code", Some("Succeeded"))).unwrap_err();
    assert!(matches!(err, PluginError::RunEnded { .. }), "{err}");
    assert!(
        err.to_string().starts_with("AgentRun \"fix\" has ended (Succeeded)"),
        "{err}"
    );
    let note = check_can_message(&run("gemini-cli", Some("Running"))).unwrap().unwrap();
    assert!(
        note.contains("gemini-cli takes no messages") && note.contains("NotSupported"),
        "{note}"
    );
    let note = check_can_message(&run("claude-code", Some("Queued"))).unwrap().unwrap();
    assert!(note.contains("has not started yet (phase Queued)"), "{note}");
    let note = check_can_message(&run("claude-code", None)).unwrap().unwrap();
    assert!(note.contains("(phase Pending)"), "{note}");
    // A run waiting at an in-run gate is running: the message goes to its pod.
    assert_eq!(
        check_can_message(&run("claude-code", Some("AwaitingApproval"))).unwrap(),
        None
    );
}

#[test]
fn an_answer_is_an_approval_carrying_it_and_the_patch_appends_it() {
    let g = question(&["Postgres", "SQLite"]);
    let d = decision(&g, "alice", &Choice::Answer("Postgres 16".into()), None).unwrap();
    assert_eq!(
        decision_patch(&d),
        json!([{"op": "add", "path": "/spec/decisions/-",
                "value": {"approver": "alice", "decision": "Approve", "answer": "Postgres 16"}}])
    );
    let d = decision(&g, "alice", &Choice::AnswerOption(2), Some("smaller")).unwrap();
    assert_eq!(
        serde_json::to_value(&d).unwrap(),
        json!({"approver": "alice", "decision": "Approve", "comment": "smaller", "answer": "SQLite"})
    );
    let d = decision(&g, "bob", &Choice::Decline, Some("ask the DBA")).unwrap();
    assert_eq!(
        serde_json::to_value(&d).unwrap(),
        json!({"approver": "bob", "decision": "Reject", "comment": "ask the DBA"})
    );
    assert_eq!(
        decision(&g, "bob", &Choice::Reject, None).unwrap().decision,
        Verdict::Reject
    );
    // The patch applied to the gate gives a gate with the decision, as the CRD types read it.
    let mut doc = serde_json::to_value(&g).unwrap();
    let ops = decision_patch(&decision(&g, "alice", &Choice::AnswerOption(1), None).unwrap());
    doc["spec"]["decisions"] = json!([ops[0]["value"].clone()]);
    let g2: ApprovalGate = serde_json::from_value(doc).unwrap();
    assert_eq!(g2.spec.decisions[0].answer.as_deref(), Some("Postgres"));
}

#[test]
fn options_are_counted_from_one_and_out_of_range_ones_list_the_choices() {
    let g = question(&["Postgres", "SQLite"]);
    for n in [0, 3] {
        let err = decision(&g, "alice", &Choice::AnswerOption(n), None).unwrap_err();
        assert!(matches!(err, PluginError::BadOption { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!("ApprovalGate \"fix-question-1\": option {n} is out of range: the question offers 2 option(s), from 1: 1. Postgres; 2. SQLite")
        );
    }
    let err = decision(&question(&[]), "alice", &Choice::AnswerOption(1), None).unwrap_err();
    assert!(err.to_string().contains("offers no options; answer in words"), "{err}");
    let err = decision(&g, "alice", &Choice::Answer("  ".into()), None).unwrap_err();
    assert_eq!(err.to_string(), "the answer is empty");
}

#[test]
fn each_stage_takes_only_its_own_decisions() {
    let q = question(&[]);
    let err = decision(&q, "alice", &Choice::Approve, None).unwrap_err();
    assert!(matches!(err, PluginError::WrongStage { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "ApprovalGate \"fix-question-1\" is a Question gate: an approval carries the answer: kubectl paddock answer fix \"…\" (or --option N, --decline)"
    );
    let err = decision(&q, "alice", &Choice::RequestChanges, Some("more")).unwrap_err();
    assert!(
        err.to_string().contains("only a Plan gate takes RequestChanges"),
        "{err}"
    );

    let p = plan("1. read\n2. write");
    for c in [Choice::Answer("x".into()), Choice::AnswerOption(1), Choice::Decline] {
        let err = decision(&p, "alice", &c, None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("ApprovalGate \"fix-plan-1\" is a Plan gate: only a Question gate takes"),
            "{err}"
        );
    }
    let d = decision(&p, "alice", &Choice::RequestChanges, Some("add a rollback step")).unwrap();
    assert_eq!(
        decision_patch(&d),
        json!([{"op": "add", "path": "/spec/decisions/-",
                "value": {"approver": "alice", "decision": "RequestChanges", "comment": "add a rollback step"}}])
    );
    for comment in [None, Some(""), Some(" ")] {
        let err = decision(&p, "alice", &Choice::RequestChanges, comment).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a RequestChanges decision needs a comment saying which changes (-m \"…\")"
        );
    }
    assert_eq!(
        decision(&p, "alice", &Choice::Approve, None).unwrap().decision,
        Verdict::Approve
    );
    assert_eq!(
        decision(&p, "alice", &Choice::Reject, None).unwrap().decision,
        Verdict::Reject
    );
}

#[test]
fn a_gate_that_asked_for_changes_takes_no_further_decision() {
    let mut p = plan("x");
    p.status.as_mut().unwrap().state = Some(GateState::ChangesRequested);
    let err = crate::check_can_decide(&p, "alice", &[], Verdict::Approve).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ApprovalGate \"fix-plan-1\" is already ChangesRequested; nothing to do"
    );
}

#[test]
fn answer_picks_the_runs_newest_pending_question() {
    let q = |name: &str, run: &str, state: &str, created: &str| {
        gate(
            name,
            run,
            "Question",
            json!({"summary": "s", "question": name}),
            json!({"state": state}),
            created,
        )
    };
    let gates = vec![
        q("fix-question-1", "fix", "Approved", "2026-12-07T10:00:00Z"),
        q("fix-question-2", "fix", "Pending", "2026-12-07T10:01:00Z"),
        q("fix-question-3", "fix", "Pending", "2026-12-07T10:02:00Z"),
        q("fix-question-4", "fix", "Expired", "2026-12-07T10:03:00Z"),
        q("other-question-1", "other", "Pending", "2026-12-07T10:04:00Z"),
        gate(
            "fix-tool-1",
            "fix",
            "ToolUse",
            json!({"summary": "s"}),
            json!({"state": "Pending"}),
            "2026-12-07T10:05:00Z",
        ),
    ];
    let g = newest_pending(&gates, "fix", GateStage::Question).unwrap();
    assert_eq!(g.metadata.name.as_deref(), Some("fix-question-3"));
    // A gate the operator has not looked at yet (no status) is pending.
    let fresh = vec![gate(
        "fix-question-9",
        "fix",
        "Question",
        json!({"summary": "s"}),
        json!(null),
        "2026-12-07T10:00:00Z",
    )];
    assert!(newest_pending(&fresh, "fix", GateStage::Question).is_ok());

    let err = newest_pending(&gates[..1], "fix", GateStage::Question).unwrap_err();
    assert_eq!(
        err.to_string(),
        "AgentRun \"fix\" has no pending Question gate (its Question gates: fix-question-1 Approved)"
    );
    let err = newest_pending(&gates, "other", GateStage::Plan).unwrap_err();
    assert_eq!(
        err.to_string(),
        "AgentRun \"other\" has no pending Plan gate (it has shown no plan; does it set spec.approvals.plan?)"
    );
    let err = newest_pending(&[], "fix", GateStage::Question).unwrap_err();
    assert!(
        err.to_string().contains("does it set spec.approvals.questions?"),
        "{err}"
    );
}

#[test]
fn messages_list_with_their_delivery() {
    let cond = |status: &str, reason: &str, msg: &str| {
        json!([{"type": "Delivered", "status": status, "reason": reason, "message": msg,
                "lastTransitionTime": "2026-12-07T10:00:05Z"}])
    };
    let delivered = message(
        "fix-msg-a1b2c",
        "uid-1",
        "also update\nthe changelog",
        json!({"state": "Delivered", "turn": 3, "attempt": 1, "deliveredAt": "2026-12-07T10:00:05Z",
               "conditions": cond("True", "Delivered", "")}),
    );
    let refused = message(
        "fix-msg-d3e4f",
        "uid-2",
        &"long ".repeat(30),
        json!({"state": "Refused", "conditions": cond("False", "RunFinished", "AgentRun fix ended (Succeeded) first")}),
    );
    let waiting = message(
        "fix-msg-g5h6i",
        "uid-3",
        "hi",
        json!({"state": "Pending", "conditions": cond("Unknown", "SentToPod", "")}),
    );
    let fresh = message("fix-msg-j7k8l", "uid-4", "hi", json!(null));
    assert_eq!(delivery(&delivered), "delivered at turn 3 (attempt 1)");
    assert_eq!(
        delivery(&refused),
        "refused (RunFinished): AgentRun fix ended (Succeeded) first"
    );
    assert_eq!(delivery(&waiting), "pending (SentToPod)");
    assert_eq!(delivery(&fresh), "pending");
    assert!(is_settled(&delivered) && is_settled(&refused) && !is_settled(&waiting) && !is_settled(&fresh));
    let t = messages_table(&[delivered, refused, waiting, fresh], ts("2026-12-07T10:02:00Z")).render();
    let want = format!(
        "NAME            SENDER              STATE       TURN   AGE   TEXT\n\
         fix-msg-a1b2c   alice@example.com   Delivered   3      2m    also update⏎the changelog\n\
         fix-msg-d3e4f   alice@example.com   Refused            2m    {}…\n\
         fix-msg-g5h6i   alice@example.com   Pending            2m    hi\n\
         fix-msg-j7k8l   alice@example.com   Pending            2m    hi\n",
        &"long ".repeat(12)[..59]
    );
    assert_eq!(t, want);
}

#[test]
fn the_timeline_names_the_message_it_delivered() {
    let msgs = vec![message(
        "fix-msg-a1b2c",
        "uid-1",
        "also update the changelog",
        json!(null),
    )];
    let ev = RunnerEvent::MessageDelivered {
        id: "uid-1".into(),
        turn: 3,
    };
    assert_eq!(
        describe_event(&ev, &msgs),
        "message_delivered fix-msg-a1b2c from alice@example.com at turn 3: also update the changelog"
    );
    // Unknown (deleted, or not listable): by UID, as the plain description.
    let other = RunnerEvent::MessageDelivered {
        id: "uid-9".into(),
        turn: 0,
    };
    assert_eq!(describe_event(&other, &msgs), "message_delivered uid-9 at turn 0");
    let events = vec![paddock_crds::events::EventLine {
        v: 1,
        seq: 1,
        ts: "2026-12-07T10:00:00Z".into(),
        event: ev,
    }];
    assert_eq!(
        crate::format_events_by(&events, |e| describe_event(e, &msgs)),
        "   +0.0s message_delivered fix-msg-a1b2c from alice@example.com at turn 3: also update the changelog\n"
    );
}

#[test]
fn a_question_gate_shows_its_numbered_options_and_the_answer() {
    let mut g = question(&["Postgres", "SQLite"]);
    g.status = Some(serde_json::from_value(json!({"state": "Pending", "expiresAt": "2026-12-07T10:30:00Z"})).unwrap());
    let out = describe_gate(&g, ts("2026-12-07T10:20:00Z"), false);
    assert_eq!(
        out,
        "Name:       fix-question-1\n\
         Run:        fix\n\
         Stage:      Question\n\
         State:      Pending · expires in 10m\n\
         Approvers:  anyone RBAC lets patch the gate; quorum 1 (0 approval(s))\n\
         Age:        20m\n\
         Question:   Which database?\n\
         Options:    1. Postgres\n\
         \x20           2. SQLite\n\
         Decide:     kubectl paddock answer fix \"…\" | --option N | --decline [-m \"…\"]   (--gate fix-question-1)\n"
    );
    g.status =
        Some(serde_json::from_value(json!({"state": "Approved", "decidedBy": "alice", "answer": "SQLite"})).unwrap());
    g.spec.decisions = vec![decision(&g, "alice", &Choice::AnswerOption(2), None).unwrap()];
    let out = describe_gate(&g, ts("2026-12-07T10:20:00Z"), false);
    assert!(out.contains("State:      Approved by alice\n"), "{out}");
    assert!(out.contains("Answer:     SQLite\n"), "{out}");
    assert!(out.contains("Decisions:  alice Approve answer \"SQLite\"\n"), "{out}");
    assert!(!out.contains("Decide:"), "{out}");
}

#[test]
fn a_plan_gate_shows_its_first_lines_and_the_rest_on_request() {
    let text: String = (1..=25).map(|i| format!("{i}. step {i}\n")).collect();
    let g = plan(&text);
    let out = describe_gate(&g, ts("2026-12-07T10:00:00Z"), false);
    assert!(
        out.contains("Plan:       (first 20 of 25 lines; --full for all)\n  1. step 1\n"),
        "{out}"
    );
    assert!(out.contains("  20. step 20\n") && !out.contains("21. step 21"), "{out}");
    assert!(out.contains("request-changes fix-plan-1 -m"), "{out}");
    let out = describe_gate(&g, ts("2026-12-07T10:00:00Z"), true);
    assert!(
        out.contains("Plan:\n  1. step 1\n") && out.contains("  25. step 25\n"),
        "{out}"
    );
    // The one-line form of `gates`.
    assert_eq!(crate::gate_request_line(&g), "1. step 1 (+24 lines)");
    let mut asked = g.clone();
    asked.status =
        Some(serde_json::from_value(json!({"state": "ChangesRequested", "answer": "add a rollback"})).unwrap());
    assert_eq!(
        crate::gate_request_line(&asked),
        "1. step 1 (+24 lines) → changes: add a rollback"
    );
    assert!(describe_gate(&asked, ts("2026-12-07T10:00:00Z"), false).contains("Changes:    add a rollback\n"));
}

#[test]
fn wait_timeouts_are_go_durations_or_seconds() {
    for (s, secs) in [("2m", 120), ("30s", 30), ("1h30m", 5400), ("90", 90), ("1m30s", 90)] {
        assert_eq!(parse_wait(s).unwrap(), Duration::from_secs(secs), "{s}");
    }
    assert_eq!(parse_wait("1500ms").unwrap(), Duration::from_millis(1500));
    for bad in ["", "m", "2x", "-1s", "1.5s", "2 m"] {
        assert!(parse_wait(bad).is_err(), "{bad:?}");
    }
    assert_eq!(parse_wait(DEFAULT_WAIT).unwrap(), Duration::from_secs(120));
}

/// A stand-in for the API server: the requests `say --wait` and `answer` make, recorded.
mod api {
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::routing::{get, patch, post};
    use axum::{Json, Router};
    use serde_json::{json, Value};
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    pub struct Seen {
        pub created: Vec<Value>,
        pub patches: Vec<Value>,
        pub message_reads: usize,
    }

    type S = Arc<Mutex<Seen>>;
    const BASE: &str = "/apis/paddock.dev/v1alpha1/namespaces/{ns}";

    fn not_found(what: &str) -> (StatusCode, Json<Value>) {
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                            "code": 404, "message": format!("{what} not found")});
        (StatusCode::NOT_FOUND, Json(status))
    }

    async fn run(Path((ns, name)): Path<(String, String)>) -> (StatusCode, Json<Value>) {
        let phase = match name.as_str() {
            "fix" => "Running",
            "done" => "Succeeded",
            _ => return not_found(&format!("agentruns.paddock.dev \"{name}\"")),
        };
        let run = json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
            "metadata": {"name": name, "namespace": ns, "uid": "run-uid"},
            "spec": {"repo": {"url": "git://h/r.git"}, "agent": {"name": "claude-code"}, "prompt": "p"},
            "status": {"phase": phase}});
        (StatusCode::OK, Json(run))
    }

    async fn create(
        State(s): State<S>,
        Path(_ns): Path<String>,
        Json(mut m): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        s.lock().unwrap().created.push(m.clone());
        let name = format!("{}x7k2p", m["metadata"]["generateName"].as_str().unwrap_or_default());
        m["metadata"]["name"] = json!(name);
        m["metadata"]["uid"] = json!("msg-uid");
        (StatusCode::CREATED, Json(m))
    }

    async fn read(State(s): State<S>, Path((ns, name)): Path<(String, String)>) -> Json<Value> {
        let mut seen = s.lock().unwrap();
        seen.message_reads += 1;
        let status = if seen.message_reads < 3 {
            json!({"state": "Pending"})
        } else {
            json!({"state": "Delivered", "turn": 2, "attempt": 1})
        };
        let mut m = seen.created.last().cloned().unwrap_or_default();
        m["metadata"] = json!({"name": name, "namespace": ns, "uid": "msg-uid"});
        m["status"] = status;
        Json(m)
    }

    async fn decide(State(s): State<S>, Path((ns, name)): Path<(String, String)>, body: String) -> Json<Value> {
        let ops: Value = serde_json::from_str(&body).unwrap();
        s.lock().unwrap().patches.push(ops.clone());
        Json(json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "ApprovalGate",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"runRef": {"name": "fix"}, "stage": "Question", "request": {"summary": "s"}, "approvers": {},
                     "quorum": 1, "decisions": [ops[0]["value"].clone()]}}))
    }

    /// Serves on a free port of 127.0.0.1; returns a client for it and what it saw.
    pub async fn serve() -> (kube::Client, S) {
        let seen: S = Arc::default();
        let app = Router::new()
            .route(&format!("{BASE}/agentruns/{{name}}"), get(run))
            .route(&format!("{BASE}/runmessages"), post(create))
            .route(&format!("{BASE}/runmessages/{{name}}"), get(read))
            .route(&format!("{BASE}/approvalgates/{{name}}"), patch(decide))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        (kube::Client::try_from(config).unwrap(), seen)
    }
}

#[tokio::test]
async fn say_creates_the_message_in_the_callers_name_and_waits_for_its_delivery() {
    let (client, seen) = api::serve().await;
    let (m, note) = send_message(&client, "ns", "fix", "alice@example.com", "also update the changelog")
        .await
        .unwrap();
    assert_eq!(m.metadata.name.as_deref(), Some("fix-msg-x7k2p"));
    assert_eq!(note, None);
    let body = seen.lock().unwrap().created[0].clone();
    assert_eq!(
        body["metadata"],
        json!({"generateName": "fix-msg-", "labels": {"paddock.dev/run": "fix"}})
    );
    assert_eq!(
        body["spec"],
        json!({"runRef": {"name": "fix"}, "text": "also update the changelog", "sender": "alice@example.com"})
    );

    let got = wait_for_delivery(&client, "ns", "fix-msg-x7k2p", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(delivery(&got), "delivered at turn 2 (attempt 1)");
    assert_eq!(seen.lock().unwrap().message_reads, 3, "read until delivered");
    // A timeout returns the message as last read, still pending.
    seen.lock().unwrap().message_reads = 0;
    let got = wait_for_delivery(&client, "ns", "fix-msg-x7k2p", Duration::from_millis(10))
        .await
        .unwrap();
    assert!(!is_settled(&got));

    // A run that ended or does not exist gets no message, and nothing is created.
    let err = send_message(&client, "ns", "done", "alice", "hi").await.unwrap_err();
    assert!(
        err.to_string().starts_with("AgentRun \"done\" has ended (Succeeded)"),
        "{err}"
    );
    let err = send_message(&client, "ns", "gone", "alice", "hi").await.unwrap_err();
    assert_eq!(err.to_string(), "no AgentRun named \"gone\" in namespace \"ns\"");
    let err = send_message(&client, "ns", "fix", "alice", "").await.unwrap_err();
    assert_eq!(err.to_string(), "the message is empty");
    assert_eq!(seen.lock().unwrap().created.len(), 1);
}

#[tokio::test]
async fn an_answer_is_appended_by_json_patch() {
    let (client, seen) = api::serve().await;
    let g = question(&["Postgres", "SQLite"]);
    let d = decision(&g, "alice", &Choice::AnswerOption(2), None).unwrap();
    let updated = append_decision(&client, "ns", "fix-question-1", &d).await.unwrap();
    assert_eq!(updated.spec.decisions[0].answer.as_deref(), Some("SQLite"));
    assert_eq!(
        seen.lock().unwrap().patches[0],
        json!([{"op": "add", "path": "/spec/decisions/-",
                "value": {"approver": "alice", "decision": "Approve", "answer": "SQLite"}}])
    );
}
