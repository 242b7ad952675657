//! Every agent adapter's stream mapper on arbitrary CLI output, then the runner's sanitizer.
//!
//! For each agent name `AgentKind::from_str` accepts (read from `src/agent/mod.rs` at build
//! time, plus the names below; names that do not parse are skipped) and for the `custom`
//! adapter in `jsonl` mode, the input (lossy UTF-8) is fed three ways, each to a fresh
//! `mapper_for(kind, Some("m"))` followed by `end_of_stream()`: line by line on stdout, line by line
//! on stderr, and whole as one stdout line. Every event is passed through `emit::sanitize`
//! with a known secret and serialized as an event line.
//!
//! Properties: no panic; every string field of a sanitized event is at most `MAX_TEXT_BYTES`
//! (a result's `summary` at most `MAX_SUMMARY_BYTES`; the base64 `data` of `patch`/`session`,
//! which adapters never emit, is exempt); the secret appears in no field and not in the line;
//! the line parses back (`parse_line`) to the same event.
#![no_main]
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use paddock_crds::events::{parse_line, EventLine, RunnerEvent, MAX_TEXT_BYTES, SCHEMA_VERSION};
use paddock_runner::agent::{custom, hermes, mapper_for, openhands, AgentKind, StreamMapper};
use paddock_runner::emit::{sanitize, MAX_SUMMARY_BYTES};
use serde_json::Value;

include!(concat!(env!("OUT_DIR"), "/agent_names.rs"));

/// Names tried besides the ones read from `mod.rs` (in case its match arms change shape).
const MORE_NAMES: &[&str] = &[
    "claude-code",
    "codex",
    "qwen-code",
    "opencode",
    "shell",
    "custom",
    "aider",
    "hermes",
    "gemini-cli",
    "openclaw",
    "crush",
    "goose",
    "cline",
    "amp",
    "cursor-agent",
    "kimi",
    "copilot",
    "droid",
    "continue",
    "plandex",
    "openhands",
    "auggie",
    "kilo",
];

/// The run's secret value; the seed corpus contains it so the fuzzer starts near it.
const SECRET: &str = "sk-paddock-fuzz-secret-0123456789";

static KINDS: OnceLock<Vec<AgentKind>> = OnceLock::new();

fn kinds() -> &'static [AgentKind] {
    KINDS.get_or_init(|| {
        // Hermes reads its usage report and OpenHands its state file from $HOME at `end_of_stream`:
        // point it at nothing.
        std::env::set_var("HOME", "/nonexistent/paddock-fuzz-home");
        let mut kinds: Vec<AgentKind> = Vec::new();
        for name in AGENT_NAMES.iter().chain(MORE_NAMES) {
            if let Ok(kind) = name.parse::<AgentKind>() {
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
        }
        let jsonl = AgentKind::Custom(custom::Output::JsonLines);
        if !kinds.contains(&jsonl) {
            kinds.push(jsonl);
        }
        assert!(kinds.len() >= 10, "too few agent kinds parsed: {kinds:?}");
        kinds
    })
}

/// Every string in `v` with its key, for the size and secret checks.
fn strings<'a>(key: &'a str, v: &'a Value, out: &mut Vec<(&'a str, &'a str)>) {
    match v {
        Value::String(s) => out.push((key, s)),
        Value::Array(items) => items.iter().for_each(|i| strings(key, i, out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| strings(k, v, out)),
        _ => {}
    }
}

fn check(kind: AgentKind, ev: RunnerEvent, secrets: &[String]) {
    let ev = sanitize(ev, secrets);
    let line = EventLine {
        v: SCHEMA_VERSION,
        seq: 1,
        ts: "2026-11-22T00:00:00.000Z".into(),
        event: ev,
    };
    let json = serde_json::to_string(&line).expect("an event serializes");
    let value: Value = serde_json::from_str(&json).expect("a serialized event is JSON");
    let mut fields = Vec::new();
    strings("", &value, &mut fields);
    for (key, s) in fields {
        let max = match key {
            "data" if matches!(line.event, RunnerEvent::Patch { .. } | RunnerEvent::Session { .. }) => continue,
            "summary" if matches!(line.event, RunnerEvent::Result(_)) => MAX_SUMMARY_BYTES,
            _ => MAX_TEXT_BYTES,
        };
        assert!(
            s.len() <= max,
            "{kind:?}: field {key} has {} bytes (max {max})",
            s.len()
        );
        assert!(!s.contains(SECRET), "{kind:?}: field {key} leaks the secret");
    }
    assert!(!json.contains(SECRET), "{kind:?}: event line leaks the secret: {json}");
    let back = parse_line(&json).unwrap_or_else(|| panic!("{kind:?}: emitted line does not parse: {json}"));
    assert_eq!(back, line, "{kind:?}: event changed in a round trip");
}

fn run(kind: AgentKind, feed: impl Fn(&mut dyn StreamMapper) -> Vec<RunnerEvent>, secrets: &[String]) {
    let mut mapper = mapper_for(kind, Some("m".into()));
    let mut events = feed(mapper.as_mut());
    events.extend(mapper.end_of_stream());
    for ev in events {
        check(kind, ev, secrets);
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let secrets = vec![SECRET.to_string()];
    for &kind in kinds() {
        run(
            kind,
            |m| text.lines().flat_map(|l| m.stdout_line(l)).collect(),
            &secrets,
        );
        run(
            kind,
            |m| text.lines().flat_map(|l| m.stderr_line(l)).collect(),
            &secrets,
        );
        run(kind, |m| m.stdout_line(&text), &secrets);
    }
    // Hermes' usage report (a JSON file it writes, read at exit): the input as that file.
    if let Ok(report) = serde_json::from_slice::<Value>(data) {
        if let Ok(kind) = "hermes".parse::<AgentKind>() {
            let mut m = hermes::HermesMapper::new(Some("m".into()), None);
            m.stdout_line(&text);
            for ev in m.finish_with(Some(&report)) {
                check(kind, ev, &secrets);
            }
        }
        // OpenHands' conversation state file (read at exit): likewise.
        if let Ok(kind) = "openhands".parse::<AgentKind>() {
            let mut m = openhands::OpenHandsMapper::new(Some("m".into()), None);
            m.stdout_line(&text);
            for ev in m.finish_with(Some(&report)) {
                check(kind, ev, &secrets);
            }
        }
    }
});
