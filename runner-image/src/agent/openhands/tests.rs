//! The `openhands` adapter's golden tests: real OpenHands CLI 1.16.0 output and state files.

use super::*;
use serde_json::json;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn log(text: &str) -> RunnerEvent {
    RunnerEvent::Log {
        stream: "stdout".into(),
        text: text.into(),
    }
}

/// The start-up lines every run prints, up to the agent's start.
fn opening(model: &str, printed: &str) -> Vec<RunnerEvent> {
    vec![
        log("OpenHands CLI terminal UI may not work correctly in this environment: Rich detected a non-interactive or unsupported terminal; interactive UI may not render correctly"),
        log("To override Rich's detection, you can set TTY_INTERACTIVE=1 (and optionally TTY_COMPATIBLE=1)."),
        log("Initializing agent..."),
        RunnerEvent::AgentStarted {
            agent: "openhands".into(),
            model: Some(model.into()),
            session_id: None,
        },
        log(&format!("✓ Agent initialized with model: {printed}")),
    ]
}

/// The lines after the (left out) summary box.
fn closing(id: &str, dashed: &str) -> Vec<RunnerEvent> {
    vec![
        log("Goodbye! 👋"),
        log(&format!("Conversation ID: {id}")),
        log(&format!("Hint: run openhands --resume {dashed} to resume this")),
        log("conversation."),
    ]
}

/// A mapper whose conversations directory holds `state` (a fixture) as the state file of
/// conversation `id`, as the CLI left it.
fn map_with_state(stdout: &str, id: &str, state: &str) -> Vec<RunnerEvent> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(id)).unwrap();
    std::fs::copy(
        Path::new(FIXTURES).join(state),
        dir.path().join(id).join("base_state.json"),
    )
    .unwrap();
    crate::agent::map_stdout(
        OpenHandsMapper::new(Some("scripted-edit-file".into()), Some(dir.path().to_path_buf())),
        stdout,
    )
}

/// What real OpenHands CLI 1.16.0 printed against the scripted model's `edit-file` script (it
/// wrote hello.txt with its `terminal` tool), run as the adapter runs it, and the state file it
/// left.
#[test]
fn maps_real_openhands_stream_and_state_file() {
    let id = "1fb4e3951d52497fa1de0ddfef785477";
    let events = map_with_state(
        include_str!("../../../tests/fixtures/openhands-edit-file.txt"),
        id,
        "openhands-edit-file-state.json",
    );
    let mut expected = opening("scripted-edit-file", "openai/scripted-edit-file");
    expected.extend([
        log("Agent is working"),
        RunnerEvent::Message {
            text: "I'll create hello.txt.".into(),
        },
        RunnerEvent::ToolCall {
            id: "call_sm_000003".into(),
            name: "terminal".into(),
            input: r#"{"command": "printf '%s' 'Hello from the scripted model\n' > 'hello.txt'", "security_risk": "UNKNOWN"}"#
                .into(),
        },
        RunnerEvent::ToolResult {
            id: "call_sm_000003".into(),
            is_error: false,
            output: String::new(),
        },
        RunnerEvent::Message {
            text: "I created hello.txt.".into(),
        },
        log("Agent finished"),
    ]);
    expected.extend(closing(id, "1fb4e395-1d52-497f-a1de-0ddfef785477"));
    expected.extend([
        RunnerEvent::Usage(Usage {
            input_tokens: 2500,
            output_tokens: 50,
            turns: 2,
            cost_usd: None,
        }),
        RunnerEvent::Final {
            text: "I created hello.txt.".into(),
            is_error: false,
        },
    ]);
    assert_eq!(events, expected);
}

/// OpenHands against the scripted model's `unavailable` script (answered 503): it exits 0 after
/// a `ConversationErrorEvent`; its state file says `error` and has no usage. The summary box
/// (here the whole system prompt, ~340 lines) is left out.
#[test]
fn conversation_error_is_a_failed_final() {
    let id = "0d8e384d6eef4aeb8ee1929bbf879d14";
    let events = map_with_state(
        include_str!("../../../tests/fixtures/openhands-unavailable.txt"),
        id,
        "openhands-unavailable-state.json",
    );
    let detail = "litellm.NotFoundError: OpenAIException - scripted: the model endpoint is unavailable";
    let mut expected = opening("scripted-edit-file", "openai/scripted-unavailable");
    expected.extend([log("Agent is working"), RunnerEvent::Error { message: detail.into() }]);
    expected.extend(closing(id, "0d8e384d-6eef-4aeb-8ee1-929bbf879d14"));
    expected.push(RunnerEvent::Final {
        text: detail.into(),
        is_error: true,
    });
    assert_eq!(events, expected);
}

/// The tools' other outcomes, `finish`, and a state file with cost, sub-agents and a stuck end.
#[test]
fn finish_refusals_cost_and_status() {
    let lines = [
        r#"{"kind": "ActionEvent", "source": "agent", "thought": [], "tool_name": "terminal", "tool_call_id": "c1", "tool_call": {"name": "terminal", "arguments": "{\"command\": \"ls\"}"}, "action": null}"#,
        r#"{"kind": "AgentErrorEvent", "source": "agent", "tool_name": "terminal", "tool_call_id": "c1", "error": "Error validating tool 'terminal'"}"#,
        r#"{"kind": "AgentErrorEvent", "source": "agent", "error": "no tool call"}"#,
        r#"{"kind": "ActionEvent", "source": "agent", "thought": [{"type": "text", "text": "Done."}], "tool_name": "file_editor", "tool_call_id": "c2", "action": {"command": "view", "path": "/w", "kind": "FileEditorAction"}}"#,
        r#"{"kind": "UserRejectObservation", "source": "user", "tool_name": "file_editor", "tool_call_id": "c2", "rejection_reason": "blocked"}"#,
        r#"{"kind": "ActionEvent", "source": "agent", "thought": [], "tool_name": "finish", "tool_call_id": "c3", "action": {"message": "All done.", "kind": "FinishAction"}}"#,
        r#"{"kind": "ObservationEvent", "source": "environment", "tool_name": "finish", "tool_call_id": "c3", "observation": {"content": [{"type": "text", "text": "All done."}], "kind": "FinishObservation"}}"#,
        "Conversation ID: ../../etc",
    ]
    .join("\n");
    let mut m = OpenHandsMapper::new(None, Some(PathBuf::from("/nonexistent")));
    let events: Vec<_> = lines.lines().flat_map(|l| m.stdout_line(l)).collect();
    assert_eq!(
        events,
        vec![
            RunnerEvent::AgentStarted {
                agent: "openhands".into(),
                model: None,
                session_id: None
            },
            RunnerEvent::ToolCall {
                id: "c1".into(),
                name: "terminal".into(),
                input: r#"{"command": "ls"}"#.into()
            },
            RunnerEvent::ToolResult {
                id: "c1".into(),
                is_error: true,
                output: "Error validating tool 'terminal'".into()
            },
            RunnerEvent::Error {
                message: "no tool call".into()
            },
            RunnerEvent::Message { text: "Done.".into() },
            RunnerEvent::ToolCall {
                id: "c2".into(),
                name: "file_editor".into(),
                input: json!({"command": "view", "path": "/w", "kind": "FileEditorAction"}).to_string()
            },
            RunnerEvent::ToolResult {
                id: "c2".into(),
                is_error: true,
                output: "blocked".into()
            },
            RunnerEvent::Message {
                text: "All done.".into()
            },
            log("Conversation ID: ../../etc"),
        ]
    );
    // An id that is not a plain name reads no file.
    assert_eq!(state_file(Path::new("/c"), Some("../../etc")), None);
    assert_eq!(
        state_file(Path::new("/c"), Some("0d8e384d-6eef")),
        Some(PathBuf::from("/c/0d8e384d6eef/base_state.json"))
    );
    let state = json!({"execution_status": "stuck", "stats": {"usage_to_metrics": {
        "agent": {"accumulated_cost": 0.25, "accumulated_token_usage": {"prompt_tokens": 100, "completion_tokens": 7},
                  "token_usages": [{}, {}]},
        "condenser": {"accumulated_cost": 0.05, "accumulated_token_usage": {"prompt_tokens": 10, "completion_tokens": 3},
                      "token_usages": [{}]}}}});
    assert_eq!(
        m.finish_with(Some(&state)),
        [
            RunnerEvent::Usage(Usage {
                input_tokens: 110,
                output_tokens: 10,
                turns: 3,
                cost_usd: Some(0.3)
            }),
            RunnerEvent::Final {
                text: "openhands ended with execution status stuck".into(),
                is_error: true
            },
        ]
    );
    // No state file: the last message alone.
    let mut m = OpenHandsMapper::new(None, Some(PathBuf::from("/nonexistent")));
    m.stdout_line(
        r#"{"kind": "MessageEvent", "source": "agent", "llm_message": {"content": [{"type": "text", "text": "hi"}]}}"#,
    );
    assert_eq!(
        m.end_of_stream(),
        [RunnerEvent::Final {
            text: "hi".into(),
            is_error: false
        }]
    );
}

/// Without a conversation id the newest state file of the directory is read.
#[test]
fn newest_state_file_without_an_id() {
    let dir = tempfile::tempdir().unwrap();
    for (i, id) in ["a1", "b2"].iter().enumerate() {
        std::fs::create_dir_all(dir.path().join(id)).unwrap();
        let f = dir.path().join(id).join("base_state.json");
        std::fs::write(&f, "{}").unwrap();
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 * (i as u64 + 1));
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    assert_eq!(
        state_file(dir.path(), None),
        Some(dir.path().join("b2/base_state.json"))
    );
    assert_eq!(state_file(&dir.path().join("none"), None), None);
}

#[test]
fn conversations_dir_follows_the_cli_variables() {
    assert_eq!(
        conversations_dir(&Env::from_pairs([("HOME", "/h")])),
        PathBuf::from("/h/.openhands/conversations")
    );
    assert_eq!(
        conversations_dir(&Env::from_pairs([("HOME", "/h"), ("OPENHANDS_PERSISTENCE_DIR", "/p")])),
        PathBuf::from("/p/conversations")
    );
    assert_eq!(
        conversations_dir(&Env::from_pairs([
            ("OPENHANDS_PERSISTENCE_DIR", "/p"),
            ("OPENHANDS_CONVERSATIONS_DIR", "/c")
        ])),
        PathBuf::from("/c")
    );
}
