use super::*;
use crate::console::view;
use serde_json::json;
use std::sync::Arc;

/// What a hostile agent asks and plans, or a hostile sender writes: markup that would run script
/// if it were not escaped.
const HOSTILE: &str = r#"<script>alert(1)</script>"><img src=x onerror=alert(2)>'&"#;

fn now() -> Timestamp {
    "2026-12-07T10:10:00Z".parse().expect("a timestamp")
}

fn gate(stage: &str, request: serde_json::Value, status: serde_json::Value) -> ApprovalGate {
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "ApprovalGate",
        "metadata": {"name": format!("fix-{}-1", stage.to_lowercase()), "namespace": "ns",
                     "creationTimestamp": "2026-12-07T10:00:00Z"},
        "spec": {"runRef": {"name": "fix"}, "stage": stage, "quorum": 1, "request": request, "approvers": {}},
        "status": status,
    }))
    .expect("a valid ApprovalGate")
}

fn message(text: &str, sender: &str, status: serde_json::Value) -> RunMessage {
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "RunMessage",
        "metadata": {"name": "fix-msg-a1b2c", "namespace": "ns", "uid": "u1", "creationTimestamp": "2026-12-07T10:00:00Z"},
        "spec": {"runRef": {"name": "fix"}, "text": text, "sender": sender},
        "status": status,
    }))
    .expect("a valid RunMessage")
}

fn assert_escaped(html: &str) {
    assert!(
        !html.contains("<script>alert") && !html.contains("<img src=x"),
        "{html}"
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
}

#[test]
fn questions_plans_and_messages_are_text_never_markup() {
    let q = gate(
        "Question",
        json!({"summary": HOSTILE, "question": HOSTILE, "options": [HOSTILE, "b"]}),
        json!({"state": "Pending", "answer": HOSTILE}),
    );
    let p = gate(
        "Plan",
        json!({"summary": "s", "plan": HOSTILE}),
        json!({"state": "Pending"}),
    );
    for g in [&q, &p] {
        assert_escaped(&view::gates_panel("ns", &[Arc::new(g.clone())], now()).into_string());
        assert_escaped(&view::inbox_card(g, None, now()).into_string());
    }
    let m = message(HOSTILE, HOSTILE, json!(null));
    assert_escaped(&messages_list(&Ok(vec![m]), now()).into_string());
    assert_escaped(&messages_list(&Err(HOSTILE.into()), now()).into_string());
}

#[test]
fn a_question_is_answered_by_text_or_option_and_a_plan_can_be_sent_back() {
    let q = gate(
        "Question",
        json!({"summary": "s", "question": "Which DB?", "options": ["Postgres", "SQLite"]}),
        json!({"state": "Pending"}),
    );
    let html = view::decide_form("ns", &q).into_string();
    assert!(html.contains(r#"hx-post="/gates/ns/fix-question-1/decide""#), "{html}");
    assert!(
        html.contains(r#"name="answer""#) && html.contains(r#"value="Approve">Answer<"#),
        "{html}"
    );
    assert!(html.contains(r#"name="option" value="1">1. Postgres<"#), "{html}");
    assert!(html.contains(r#"name="option" value="2">2. SQLite<"#), "{html}");
    assert!(html.contains(r#"value="Reject">Decline<"#), "{html}");
    let shown = view::gates_panel("ns", &[Arc::new(q)], now()).into_string();
    assert!(shown.contains("<li>Postgres</li><li>SQLite</li>"), "{shown}");

    let p = gate(
        "Plan",
        json!({"summary": "s", "plan": "1. read\n2. write"}),
        json!({"state": "Pending"}),
    );
    let html = view::decide_form("ns", &p).into_string();
    for want in [
        r#"value="Approve""#,
        r#"value="RequestChanges">Request changes<"#,
        r#"value="Reject""#,
    ] {
        assert!(html.contains(want), "{want} in {html}");
    }
    assert!(!html.contains(r#"name="answer""#), "{html}");
    let shown = view::gates_panel("ns", &[Arc::new(p)], now()).into_string();
    assert!(shown.contains("<pre class=\"plan\">1. read\n2. write</pre>"), "{shown}");

    // A gate of another stage keeps the plain form the e2e test clicks.
    let t = gate("ToolUse", json!({"summary": "s"}), json!({"state": "Pending"}));
    let html = view::decide_form("ns", &t).into_string();
    assert!(
        html.contains(r#"<button class="approve" type="submit" name="verdict" value="Approve">Approve</button>"#),
        "{html}"
    );
}

#[test]
fn the_decide_form_posts_a_choice() {
    use crate::talk::Choice;
    assert_eq!(choice("", "", "2"), Ok(Choice::AnswerOption(2)));
    assert_eq!(
        choice("Approve", "typed, then an option clicked", "1"),
        Ok(Choice::AnswerOption(1))
    );
    assert_eq!(
        choice("Approve", " Postgres ", ""),
        Ok(Choice::Answer("Postgres".into()))
    );
    assert_eq!(choice("Approve", "", ""), Ok(Choice::Approve));
    assert_eq!(choice("Reject", "ignored", ""), Ok(Choice::Reject));
    assert_eq!(choice("RequestChanges", "", ""), Ok(Choice::RequestChanges));
    assert!(choice("", "", "x").is_err());
    assert!(choice("Merge", "", "").is_err());
}

#[test]
fn a_running_run_has_a_send_box_and_its_messages_show_their_delivery() {
    let delivered = message(
        "also update the changelog",
        "alice",
        json!({"state": "Delivered", "turn": 4, "attempt": 1}),
    );
    let html = messages_section("/runs/ns/fix", &Ok(vec![delivered]), false, now()).into_string();
    assert!(
        html.contains(r#"hx-post="/runs/ns/fix/say""#) && html.contains(r#"name="text""#),
        "{html}"
    );
    assert!(html.contains("delivered at turn 4 (attempt 1)"), "{html}");
    assert!(html.contains(r#"<div id="run-messages">"#), "{html}");
    let ended = messages_section("/runs/ns/fix", &Ok(vec![]), true, now()).into_string();
    assert!(!ended.contains("/say") && ended.contains("No messages yet."), "{ended}");
}
