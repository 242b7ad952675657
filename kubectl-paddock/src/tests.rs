use super::*;
use paddock_crds::events::{Outcome, RunResult, Step, Usage};
use paddock_crds::{AgentRunStatus, ApprovalGateStatus, Phase, ResultStatus};
use serde_json::json;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn run(name: &str, ns: &str, status: serde_json::Value) -> AgentRun {
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2026-11-22T01:00:00Z"},
        "spec": {"repo": {"url": "git://h/r.git"}, "agent": {"name": "shell"}, "prompt": "true"},
        "status": status,
    }))
    .unwrap()
}

fn gate(
    name: &str,
    status: serde_json::Value,
    approvers: serde_json::Value,
    decisions: serde_json::Value,
) -> ApprovalGate {
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "ApprovalGate",
        "metadata": {"name": name, "namespace": "team-a", "creationTimestamp": "2026-11-22T01:00:00Z"},
        "spec": {"runRef": {"name": "fix"}, "stage": "BeforeStart", "request": {"summary": "s"},
                 "approvers": approvers, "quorum": 2, "decisions": decisions},
        "status": status,
    }))
    .unwrap()
}

fn line(seq: u64, ts: &str, event: RunnerEvent) -> EventLine {
    EventLine {
        v: 1,
        seq,
        ts: ts.into(),
        event,
    }
}

#[test]
fn table_aligns_columns_without_trailing_spaces() {
    let mut t = Table::new(&["NAME", "PHASE", "AGE"]);
    t.rows.push(vec!["a-long-name".into(), "Running".into(), "5s".into()]);
    t.rows.push(vec!["b".into(), "".into(), "10m".into()]);
    let want = "NAME          PHASE     AGE\n\
                a-long-name   Running   5s\n\
                b                       10m\n";
    assert_eq!(t.render(), want);
    let mut t = Table::new(&["NAME", "REASON"]);
    t.rows.push(vec!["x".into(), "".into()]);
    assert_eq!(
        t.render(),
        "NAME   REASON\nx\n",
        "no trailing spaces for an empty last cell"
    );
}

#[test]
fn human_durations_like_kubectl() {
    for (secs, want) in [
        (0, "0s"),
        (59, "59s"),
        (119, "119s"),
        (125, "2m5s"),
        (180, "3m"),
        (1500, "25m"),
        (3 * 3600 + 20 * 60, "3h20m"),
        (12 * 3600, "12h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (20 * 86400, "20d"),
    ] {
        assert_eq!(human_duration(secs), want, "{secs}s");
    }
    assert_eq!(age(None, Timestamp::now()), "<unknown>");
    let created = Time(ts("2026-11-22T01:00:00Z"));
    assert_eq!(age(Some(&created), ts("2026-11-22T01:00:42Z")), "42s");
    assert_eq!(
        age(Some(&created), ts("2026-11-22T00:59:00Z")),
        "0s",
        "clock skew is not negative"
    );
}

#[test]
fn runs_table_shows_phase_reason_and_diff() {
    let done = run(
        "fix",
        "team-a",
        json!({"phase": "Succeeded",
               "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded", "message": "",
                               "lastTransitionTime": "2026-11-22T01:01:00Z"}],
               "result": {"outcome": "Succeeded", "reason": "Succeeded", "diffstat": "+12/-3"}}),
    );
    let fresh = run("new", "team-b", json!(null));
    let now = ts("2026-11-22T01:05:00Z");
    let t = runs_table(&[done.clone(), fresh.clone()], false, now).render();
    assert_eq!(
        t,
        "NAME   AGENT   PHASE       REASON      DIFF     AGE\n\
         fix    shell   Succeeded   Succeeded   +12/-3   5m\n\
         new    shell                                    5m\n"
    );
    let t = runs_table(&[done, fresh], true, now).render();
    assert!(t.starts_with("NAMESPACE   NAME"), "{t}");
    assert!(t.contains("\nteam-b      new "), "{t}");
    // The typed status round-trips as the CRD types say.
    let s = AgentRunStatus {
        phase: Some(Phase::Running),
        ..Default::default()
    };
    let mut r = run("r", "n", json!(null));
    r.status = Some(s);
    assert!(runs_table(&[r], false, now).render().contains(" Running "));
}

#[test]
fn gates_table_shows_approvals_over_quorum() {
    let g = gate(
        "fix-before-start",
        json!({"state": "Pending", "approvals": 1}),
        json!({}),
        json!([]),
    );
    let t = gates_table(&[g], false, ts("2026-11-22T03:00:00Z")).render();
    assert_eq!(
        t,
        "NAME               RUN   STAGE         STATE     APPROVALS/QUORUM   AGE    REQUEST\n\
         fix-before-start   fix   BeforeStart   Pending   1/2                120m   s\n"
    );
}

/// The REQUEST column says what a gate asks: a question (how many options, the answer), a
/// plan's first line, else the summary; on one line, cut to its width.
#[test]
fn gates_table_shows_questions_and_plans_on_one_line() {
    let mk = |name: &str, stage: &str, request: serde_json::Value, status: serde_json::Value| -> ApprovalGate {
        serde_json::from_value(json!({
            "apiVersion": "paddock.dev/v1alpha1", "kind": "ApprovalGate",
            "metadata": {"name": name, "namespace": "team-a", "creationTimestamp": "2026-11-22T01:00:00Z"},
            "spec": {"runRef": {"name": "fix"}, "stage": stage, "request": request, "approvers": {}, "quorum": 1},
            "status": status,
        }))
        .unwrap()
    };
    let gates = [
        mk(
            "fix-question-1",
            "Question",
            json!({"summary": "agent asks", "question": "Which DB?\nWe use both.", "options": ["Postgres", "SQLite"]}),
            json!({"state": "Approved", "answer": "Postgres"}),
        ),
        mk(
            "fix-question-2",
            "Question",
            json!({"summary": "agent asks", "question": "Ship it?"}),
            json!({"state": "Pending"}),
        ),
        mk(
            "fix-plan-1",
            "Plan",
            json!({"summary": "plan", "plan": "\n# Plan\n\n1. a\n2. b\n"}),
            json!({"state": "Pending"}),
        ),
        mk(
            "fix-tool-1",
            "ToolUse",
            json!({"summary": format!("Bash: curl {}", "x".repeat(80))}),
            json!({"state": "Pending"}),
        ),
    ];
    let t = gates_table(&gates, false, ts("2026-11-22T01:05:00Z"));
    let cells: Vec<&str> = t.rows.iter().map(|r| r[6].as_str()).collect();
    assert_eq!(cells[0], "Which DB?⏎We use both. (2 options) → Postgres");
    assert_eq!(cells[1], "Ship it?");
    assert_eq!(cells[2], "# Plan (+2 lines)");
    assert_eq!(cells[3].chars().count(), REQUEST_CELL_CHARS);
    assert!(
        cells[3].starts_with("Bash: curl xxx") && cells[3].ends_with('…'),
        "{}",
        cells[3]
    );
}

#[test]
fn resolve_prefers_a_gate_then_a_run() {
    let g = gate("x", json!(null), json!({}), json!([]));
    let waiting = run(
        "fix",
        "ns",
        json!({"phase": "AwaitingApproval", "gateName": "custom-gate"}),
    );
    let bare = run("fix", "ns", json!(null));
    assert_eq!(resolve_gate("x", "ns", Some(&g), Some(&waiting)).unwrap(), "x");
    assert_eq!(resolve_gate("fix", "ns", None, Some(&waiting)).unwrap(), "custom-gate");
    assert_eq!(
        resolve_gate("fix", "ns", None, Some(&bare)).unwrap(),
        "fix-before-start"
    );
    let err = resolve_gate("nope", "ns", None, None).unwrap_err();
    assert!(matches!(err, PluginError::NotFound { .. }));
    assert_eq!(
        err.to_string(),
        "no ApprovalGate or AgentRun named \"nope\" in namespace \"ns\""
    );
}

#[test]
fn decided_gates_refuse_further_decisions() {
    let approved = gate(
        "g",
        json!({"state": "Approved", "approvals": 2, "decidedBy": "alice"}),
        json!({}),
        json!([]),
    );
    let err = check_can_decide(&approved, "bob", &[], Verdict::Approve).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ApprovalGate \"g\" is already Approved by alice; nothing to do"
    );
    let rejected = gate("g", json!({"state": "Rejected"}), json!({}), json!([]));
    assert!(check_can_decide(&rejected, "bob", &[], Verdict::Reject)
        .unwrap_err()
        .to_string()
        .contains("already Rejected"));
    // A pending gate without status yet can be decided by anyone when approvers are open.
    let pending = gate("g", json!(null), json!({}), json!([]));
    check_can_decide(&pending, "bob", &[], Verdict::Approve).unwrap();
    let mut st = ApprovalGateStatus {
        state: Some(GateState::Pending),
        ..Default::default()
    };
    st.approvals = 0;
    let mut p2 = pending.clone();
    p2.status = Some(st);
    check_can_decide(&p2, "bob", &[], Verdict::Reject).unwrap();
}

/// A gate withdrawn because its run ended (or its attempt was replaced) takes no decision, and
/// the plugin says why instead of appending one the API server would refuse.
#[test]
fn withdrawn_gates_refuse_decisions_and_say_why() {
    let withdrawn = gate(
        "r-push",
        json!({"state": "Withdrawn", "conditions": [{"type": "Decided", "status": "True", "reason": "RunFinished",
               "message": "AgentRun r ended (Cancelled) before anyone decided",
               "lastTransitionTime": "2026-11-22T10:00:00Z"}]}),
        json!({}),
        json!([]),
    );
    for verdict in [Verdict::Approve, Verdict::Reject] {
        let err = check_can_decide(&withdrawn, "alice", &[], verdict).unwrap_err();
        assert!(matches!(err, PluginError::Withdrawn { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "ApprovalGate \"r-push\" was withdrawn without a decision: AgentRun r ended (Cancelled) before anyone decided; nothing to decide"
        );
    }
    // The gates table shows the state as kubectl get does.
    let t = gates_table(&[withdrawn], false, ts("2026-11-22T02:00:00Z"));
    assert_eq!(t.rows[0][3], "Withdrawn");
}

#[test]
fn restricted_gates_check_user_and_groups() {
    let g = gate(
        "g",
        json!({"state": "Pending"}),
        json!({"users": ["alice"], "groups": ["leads"]}),
        json!([{"approver": "alice", "decision": "Approve"}]),
    );
    let err = check_can_decide(&g, "mallory", &["devs".into()], Verdict::Approve).unwrap_err();
    assert!(matches!(err, PluginError::NotAnApprover { .. }), "{err}");
    check_can_decide(&g, "carol", &["leads".into()], Verdict::Approve).unwrap();
    let err = check_can_decide(&g, "alice", &[], Verdict::Approve).unwrap_err();
    assert!(err.to_string().contains("already approved"), "{err}");
    // Alice may still change course and reject (one Reject decides).
    check_can_decide(&g, "alice", &[], Verdict::Reject).unwrap();
}

#[test]
fn decision_patch_appends_in_the_callers_name() {
    assert_eq!(
        decision_patch("alice@example.com", Verdict::Approve, Some("lgtm")),
        json!([{"op": "add", "path": "/spec/decisions/-",
                "value": {"approver": "alice@example.com", "decision": "Approve", "comment": "lgtm"}}])
    );
    assert_eq!(
        decision_patch("bob", Verdict::Reject, None),
        json!([{"op": "add", "path": "/spec/decisions/-", "value": {"approver": "bob", "decision": "Reject"}}])
    );
    // It is a valid JSON patch that, applied to a gate, yields a gate with the decision.
    let mut doc = serde_json::to_value(gate("g", json!(null), json!({}), json!([]))).unwrap();
    let ops = decision_patch("bob", Verdict::Reject, Some("no"))
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(ops.len(), 1);
    doc["spec"]["decisions"]
        .as_array_mut()
        .unwrap()
        .push(ops[0]["value"].clone());
    let g: ApprovalGate = serde_json::from_value(doc).unwrap();
    assert_eq!(g.spec.decisions[0].decision, Verdict::Reject);
    assert_eq!(g.spec.decisions[0].comment.as_deref(), Some("no"));
}

#[test]
fn events_are_formatted_relative_to_the_first() {
    let result = RunResult {
        outcome: Outcome::Succeeded,
        reason: "Succeeded".into(),
        message: String::new(),
        failed_step: None,
        commit: Some("6b60ff1b7abf0123456789abcdef0123456789ab".into()),
        branch: "paddock/fix".into(),
        pushed: false,
        files_changed: 1,
        insertions: 5,
        deletions: 0,
        summary: None,
        usage: Usage::default(),
        patch_bytes: 10,
        patch_truncated: false,
        exit_code: Some(0),
    };
    let evs = vec![
        line(
            1,
            "2026-11-22T01:00:00.000Z",
            RunnerEvent::Step {
                step: Step::Agent,
                status: StepStatus::Started,
                message: String::new(),
            },
        ),
        line(
            2,
            "2026-11-22T01:00:12.345Z",
            RunnerEvent::ToolCall {
                id: "t1".into(),
                name: "Write".into(),
                input: r#"{"file_path":"a.txt"}"#.into(),
            },
        ),
        line(
            3,
            "2026-11-22T01:00:13.000Z",
            RunnerEvent::Message {
                text: "two\nlines\n".into(),
            },
        ),
        line(
            4,
            "garbage",
            RunnerEvent::Usage(Usage {
                input_tokens: 5,
                output_tokens: 2,
                turns: 1,
                cost_usd: Some(0.5),
            }),
        ),
        line(
            5,
            "2026-11-22T01:01:15.000Z",
            RunnerEvent::Step {
                step: Step::Commit,
                status: StepStatus::Failed,
                message: "nothing".into(),
            },
        ),
        line(6, "2026-11-22T01:01:16.000Z", RunnerEvent::Result(result)),
    ];
    let out = format_events(&evs);
    let want = "   +0.0s step agent started\n\
               \x20 +12.3s tool_call Write {\"file_path\":\"a.txt\"}\n\
               \x20 +13.0s message two⏎lines\n\
               \x20      ? usage in=5 out=2 turns=1 cost=$0.5000\n\
               \x20 +75.0s step commit failed: nothing\n\
               \x20 +76.0s result Succeeded Succeeded commit 6b60ff1b7abf on paddock/fix (1 files, +5/-0)\n";
    assert_eq!(out, want);
    assert_eq!(format_events(&[]), "");
}

#[test]
fn parse_log_skips_noise_and_keeps_raw_lines() {
    let text = "npm WARN x\n\
                {\"v\":1,\"seq\":1,\"ts\":\"2026-11-22T01:00:00.000Z\",\"type\":\"message\",\"text\":\"hi\"}\n\
                \n\
                {\"v\":2,\"seq\":2,\"ts\":\"t\",\"type\":\"message\",\"text\":\"future\"}\n\
                {\"v\":1,\"seq\":3,\"ts\":\"2026-11-22T01:00:01.500Z\",\"type\":\"log\",\"stream\":\"stderr\",\"text\":\"oops\"}\n";
    let (events, raw) = parse_log(text);
    assert_eq!(events.len(), 2);
    assert_eq!(raw.len(), 2);
    assert!(raw[1].contains("oops"));
    assert_eq!(
        format_events(&events),
        "   +0.0s message hi\n   +1.5s log stderr oops\n"
    );
}

#[test]
fn gunzip_round_trips_and_rejects_garbage() {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(b"+++ b/hi.txt\n").unwrap();
    let gz = enc.finish().unwrap();
    assert_eq!(gunzip(&gz).unwrap(), "+++ b/hi.txt\n");
    assert!(gunzip(b"not gzip").is_err());
}

#[test]
fn result_status_diffstat_feeds_the_diff_column() {
    let mut r = run("d", "n", json!(null));
    r.status = Some(AgentRunStatus {
        result: Some(ResultStatus {
            run: serde_json::from_value(json!({"outcome": "Failed", "reason": "AgentFailed"})).unwrap(),
            diffstat: "+0/-0".into(),
            patch_ref: None,
            log_ref: None,
            session_ref: None,
            pull_request: None,
        }),
        ..Default::default()
    });
    let t = runs_table(&[r], false, ts("2026-11-22T01:00:00Z")).render();
    assert!(t.contains("+0/-0"), "{t}");
}

#[test]
fn transcript_lines_render_one_per_model_call() {
    let text = [
        json!({"type": "transcript", "seq": 1, "ts": "2026-11-22T07:31:02.114Z", "route": "anthropic", "method": "POST",
               "path": "/v1/messages", "status": 200, "model": "scripted-metered", "input_tokens": 1200,
               "output_tokens": 40, "cost_usd": 0.0016, "request": "{}", "response": "{}"})
        .to_string(),
        json!({"type": "transcript", "seq": 2, "ts": "t", "route": "openai", "method": "POST", "path": "/v1/responses",
               "status": 403, "model": null, "input_tokens": null, "output_tokens": null, "cost_usd": null})
        .to_string(),
        json!({"type": "transcript_truncated", "seq": 3, "limit_bytes": 4194304}).to_string(),
        "not json".to_string(),
    ]
    .join("\n");
    let out = render_transcript(&text);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "#1 2026-11-22T07:31:02.114Z anthropic POST /v1/messages 200 scripted-metered in=1200 out=40 $0.001600"
    );
    assert_eq!(lines[1], "#2 t openai POST /v1/responses 403 - in=- out=- unpriced");
    assert!(lines[2].contains("limit 4194304 bytes"), "{}", lines[2]);
    assert_eq!(lines[3], "not json");
}
