//! Tests of [`super`].

#[test]
fn the_gateways_termination_message_fills_facts_its_log_lost() {
    let commit = "c".repeat(40);
    let facts = paddock_crds::gateway::BranchFacts {
        purpose: paddock_crds::gateway::BranchPurpose::Final,
        branch: "paddock/r".into(),
        base: "b".repeat(40),
        commit: Some(commit.clone()),
        files_changed: 2,
        insertions: 3,
        deletions: 1,
        ..Default::default()
    };
    let push = paddock_crds::gateway::PushFacts {
        ok: true,
        commit: commit.clone(),
        branch: "paddock/r".into(),
        reason: None,
        message: String::new(),
    };
    let message = format!(
        "{}\n{}",
        serde_json::to_string(&GatewayLine::GatewayBranch(facts)).unwrap(),
        serde_json::to_string(&GatewayLine::GatewayPush(push)).unwrap()
    );
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "r-1"},
        "status": {"initContainerStatuses": [
            {"name": "gateway", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 0, "message": message}}}]}
    }))
    .unwrap();
    // The log lost everything (crowded out, rotated): the termination message tells.
    let gw = with_termination_facts(GatewayLog::default(), &pod);
    let facts = gw.branch().facts.clone().expect("facts");
    assert_eq!(
        (facts.commit.as_deref(), facts.files_changed),
        (Some(commit.as_str()), 2)
    );
    assert_eq!(gw.pushed.as_deref(), Some(commit.as_str()));
    // What the log has wins.
    let logged = GatewayLog {
        pushed: Some("d".repeat(40)),
        ..Default::default()
    };
    assert_eq!(with_termination_facts(logged, &pod).pushed, Some("d".repeat(40)));
    // The agent container's termination message is not read.
    let mut agent_pod = pod.clone();
    agent_pod
        .status
        .as_mut()
        .unwrap()
        .init_container_statuses
        .as_mut()
        .unwrap()[0]
        .name = "agent".into();
    assert!(with_termination_facts(GatewayLog::default(), &agent_pod)
        .branch()
        .facts
        .is_none());
}

#[test]
fn model_unavailable_counts_only_when_the_gateway_saw_it() {
    let failed = |reason: &str| -> RunResult {
        serde_json::from_value(serde_json::json!({
            "outcome": "Failed", "reason": reason, "failedStep": "agent",
            "message": "claude exited with exit code 1", "branch": "paddock/r"
        }))
        .unwrap()
    };
    let seen = parse_gateway_log(
        "{\"type\":\"gateway_model_status\",\"route\":\"anthropic\",\"status\":200,\"calls\":1}\n\
         {\"type\":\"gateway_model_status\",\"route\":\"anthropic\",\"status\":503,\"calls\":2}\n",
    );
    assert!(seen.model_unavailable());
    assert_eq!(
        with_trusted_facts(failed("ModelUnavailable"), &seen).reason,
        "ModelUnavailable"
    );
    // The agent wrote .paddock/model-status (or printed the reason) itself: not retried.
    let forged = with_trusted_facts(failed("ModelUnavailable"), &GatewayLog::default());
    assert_eq!(forged.reason, "AgentFailed");
    assert!(forged.message.contains("gateway saw no 429/5xx"), "{}", forged.message);
    let recovered = parse_gateway_log(
        "{\"type\":\"gateway_model_status\",\"route\":\"anthropic\",\"status\":503,\"calls\":1}\n\
         {\"type\":\"gateway_model_status\",\"route\":\"anthropic\",\"status\":200,\"calls\":2}\n",
    );
    assert_eq!(
        with_trusted_facts(failed("ModelUnavailable"), &recovered).reason,
        "AgentFailed"
    );
    let truncated = parse_gateway_log(
        "{\"type\":\"gateway_model_status\",\"route\":\"anthropic\",\"status\":503,\"calls\":1}\n\
         {\"type\":\"gateway_model_status_truncated\"}\n",
    );
    assert!(!truncated.model_unavailable());
    assert_eq!(with_trusted_facts(failed("AgentFailed"), &seen).reason, "AgentFailed");
}

use super::*;
use std::io::Write;

fn session_line(seq: u64, index: u32, total: u32, data: &str) -> String {
    serde_json::to_string(&EventLine {
        v: paddock_crds::events::SCHEMA_VERSION,
        seq,
        ts: "2026-11-22T10:00:00.000Z".into(),
        event: RunnerEvent::Session {
            agent: "codex".into(),
            session_id: "t1".into(),
            path: "sessions/2026/11/22/rollout-x-t1.jsonl".into(),
            index,
            total,
            data: data.into(),
        },
    })
    .unwrap()
}

#[test]
fn session_chunks_are_reassembled_and_kept_out_of_the_event_log() {
    let b64 = base64::engine::general_purpose::STANDARD.encode(b"gzip bytes");
    let (a, b) = b64.split_at(5);
    let text = format!("{}\n{}\n", session_line(1, 0, 2, a), session_line(2, 1, 2, b));
    let parsed = parse_log(&text);
    let s = parsed.session.expect("session");
    assert_eq!((s.agent.as_str(), s.session_id.as_str()), ("codex", "t1"));
    assert_eq!(s.path, "sessions/2026/11/22/rollout-x-t1.jsonl");
    assert_eq!(s.gz, b"gzip bytes");
    assert!(parsed.events.is_empty(), "chunks are not events of the log");
    // A missing chunk: no session.
    assert_eq!(parse_log(&session_line(1, 0, 2, a)).session, None);
}

#[test]
fn gateway_log_gives_usage_and_transcript() {
    let text = "paddock-runner gateway: model routes [\"anthropic\"]\n\
        {\"type\":\"transcript\",\"seq\":1,\"request\":\"{}\"}\n\
        {\"type\":\"gateway_usage\",\"input_tokens\":100,\"output_tokens\":20,\"cache_read_tokens\":5,\"cache_write_tokens\":0,\"cost_usd\":0.0003,\"requests\":1,\"budget_exceeded\":null}\n\
        {\"type\":\"egress_denied\",\"host\":\"x\",\"port\":443}\n\
        {\"type\":\"gateway_usage\",\"input_tokens\":200,\"output_tokens\":50,\"cache_read_tokens\":5,\"cache_write_tokens\":0,\"cost_usd\":0.0007,\"requests\":2,\"budget_exceeded\":\"budget.maxCostUSD 0.0005 reached\"}\n";
    let g = parse_gateway_log(text);
    let u = g.usage.unwrap();
    assert_eq!((u.input_tokens, u.output_tokens, u.turns), (205, 50, 2));
    assert_eq!(u.cost_usd, Some(0.0007));
    assert_eq!(g.budget_exceeded.as_deref(), Some("budget.maxCostUSD 0.0005 reached"));
    assert_eq!(g.transcript.len(), 1);
    let gz = transcript_gz(&g.transcript);
    assert!(gz.len() < 200);
    // Too big: the oldest lines go first.
    let big: Vec<String> = (0..400)
        .map(|i| format!("{{\"seq\":{i},\"x\":\"{}\"}}", pseudo_random(i, 4096)))
        .collect();
    let gz = transcript_gz(&big);
    assert!(gz.len() <= MAX_TRANSCRIPT_GZ_BYTES, "{}", gz.len());
    let mut text = String::new();
    use std::io::Read;
    flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut text).unwrap();
    assert!(text.trim_end().ends_with(&big[399]), "the newest exchange is kept");
    assert!(!text.contains(&big[0]), "the oldest is dropped");
}

/// Incompressible text of `len` bytes.
fn pseudo_random(seed: usize, len: usize) -> String {
    let mut x = (seed as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            char::from(b'a' + ((x >> 33) % 26) as u8)
        })
        .collect()
}

fn line(seq: u64, ev: RunnerEvent) -> String {
    serde_json::to_string(&EventLine {
        v: 1,
        seq,
        ts: "t".into(),
        event: ev,
    })
    .unwrap()
}

#[test]
fn reassembles_patch_and_result() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"diff --git a/x b/x\n+hello\n").unwrap();
    let gz = gz.finish().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&gz);
    let (a, b) = b64.split_at(b64.len() / 2);
    let text = [
        "noise from npm".to_string(),
        line(1, RunnerEvent::Message { text: "hi".into() }),
        line(
            2,
            RunnerEvent::Patch {
                index: 1,
                total: 2,
                data: b.into(),
            },
        ),
        line(
            3,
            RunnerEvent::Patch {
                index: 0,
                total: 2,
                data: a.into(),
            },
        ),
        r#"{"v":1,"seq":4,"ts":"t","type":"result","outcome":"Succeeded","reason":"Succeeded","branch":"b"}"#
            .to_string(),
    ]
    .join("\n");
    let parsed = parse_log(&text);
    assert_eq!(parsed.patch_gz.as_deref(), Some(gz.as_slice()));
    assert_eq!(parsed.result.as_ref().map(|r| r.branch.as_str()), Some("b"));
    assert_eq!(parsed.events.len(), 2, "patch chunks are not kept as events");
    assert_eq!(parsed.last_seq, 4, "but they are counted");
}

#[test]
fn forged_result_is_bounded() {
    let huge = "A".repeat(4 << 20);
    let text = format!(
        r#"{{"v":1,"seq":9,"ts":"t","type":"result","outcome":"Succeeded","reason":"{huge}","message":"{huge}","branch":"{huge}","failedStep":"{huge}","commit":"{huge}","summary":"{huge}"}}"#
    );
    let r = parse_log(&text).result.expect("a result");
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.len() < 16 * 1024, "status.result would be {} bytes", json.len());
    assert!(r.message.len() <= paddock_crds::events::MAX_TEXT_BYTES);
    assert!(r.summary.unwrap().len() <= 1024);
}

#[test]
fn missing_chunk_means_no_patch() {
    let text = line(
        1,
        RunnerEvent::Patch {
            index: 0,
            total: 2,
            data: "AAAA".into(),
        },
    );
    assert_eq!(parse_log(&text).patch_gz, None);
}

#[test]
fn log_keeps_newest_lines_within_bound() {
    let big = "x".repeat(3000);
    let events: Vec<EventLine> = (1..=400)
        .map(|i| EventLine {
            v: 1,
            seq: i,
            ts: "t".into(),
            event: RunnerEvent::Message { text: big.clone() },
        })
        .collect();
    let out = render_log(&events);
    assert!(out.len() <= MAX_LOG_BYTES + 1, "{}", out.len());
    let last = out.lines().last().unwrap();
    assert!(last.contains(r#""seq":400"#));
    assert!(!out.contains(r#""seq":1,"#));
}

fn agent_run(name: &str) -> AgentRun {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": name, "namespace": "ns", "uid": "u"},
        "spec": {"repo": {"url": "https://x/r.git"}, "agent": {"name": "shell"}, "prompt": "p"},
    }))
    .unwrap()
}

/// A parsed log of `events` messages of `bytes` each, with a patch of `patch` gzip bytes.
fn parsed_with(events: u64, bytes: usize, patch: usize) -> ParsedLog {
    ParsedLog {
        events: (1..=events)
            .map(|i| EventLine {
                v: 1,
                seq: i,
                ts: "t".into(),
                event: RunnerEvent::Message {
                    text: pseudo_random(i as usize, bytes),
                },
            })
            .collect(),
        patch_gz: (patch > 0).then(|| vec![7; patch]),
        ..Default::default()
    }
}

/// Issue 23: at the run's end the patch shares the event log's ConfigMap when both fit (one
/// write), and has its own otherwise; a patch stored for a review always has its own.
#[test]
fn the_patch_goes_with_the_log_when_both_fit() {
    let run = agent_run("r");
    let refs = |p: &ParsedLog, layout| artifact_refs(&run, p, layout);
    let small = parsed_with(3, 100, 2000);
    assert_eq!(refs(&small, PatchLayout::WithLog).patch.as_deref(), Some("r-log"));
    assert_eq!(refs(&small, PatchLayout::Own).patch.as_deref(), Some("r-patch"));
    // A full log (512 KiB) and a 600 KiB patch: over 900 KiB together, each within its bound.
    let large = parsed_with(200, 3000, 600 * 1024);
    assert!(render_log(&large.events).len() > 500 * 1024);
    assert_eq!(refs(&large, PatchLayout::WithLog).patch.as_deref(), Some("r-patch"));
    // A patch over its own bound is not kept anywhere; no patch, no reference.
    let huge = parsed_with(1, 10, MAX_PATCH_GZ_BYTES + 1);
    assert_eq!(refs(&huge, PatchLayout::WithLog).patch, None);
    assert_eq!(refs(&parsed_with(1, 10, 0), PatchLayout::WithLog).patch, None);
    assert_eq!(refs(&small, PatchLayout::WithLog).log, "r-log");
}

/// The ConfigMaps [`apply_artifacts`] applies for `parsed` in `layout`: (name, data keys,
/// binaryData keys), and the references it returns.
async fn applied(parsed: &ParsedLog, layout: PatchLayout) -> (Vec<(String, Vec<String>, Vec<String>)>, ArtifactRefs) {
    let (ctx, written) = crate::context::test_context_recording(vec![]);
    let refs = apply_artifacts(&ctx.client, &agent_run("r"), parsed, layout)
        .await
        .unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
    };
    let cms = written
        .lock()
        .unwrap()
        .iter()
        .map(|(m, path, body)| {
            assert_eq!(m, "PATCH", "{path}");
            let name = path.rsplit('/').next().unwrap().to_string();
            (name, keys(&body["data"]), keys(&body["binaryData"]))
        })
        .collect();
    (cms, refs)
}

#[tokio::test]
async fn the_runs_end_writes_the_log_and_the_patch_in_one_configmap_when_they_fit() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let (cms, refs) = applied(&parsed_with(3, 100, 2000), PatchLayout::WithLog).await;
    assert_eq!(cms, [("r-log".to_string(), s(&["events.jsonl"]), s(&["patch.gz"]))]);
    assert_eq!(refs.patch.as_deref(), Some("r-log"));
    // Too large together: the log alone (a patch it held before leaves it), then the patch.
    let (cms, refs) = applied(&parsed_with(200, 3000, 600 * 1024), PatchLayout::WithLog).await;
    assert_eq!(
        cms,
        [
            ("r-log".to_string(), s(&["events.jsonl"]), s(&[])),
            ("r-patch".to_string(), s(&[]), s(&["patch.gz"])),
        ]
    );
    assert_eq!(refs.patch.as_deref(), Some("r-patch"));
    // A review's patch: its own ConfigMap, whatever its size.
    let (cms, refs) = applied(&parsed_with(3, 100, 2000), PatchLayout::Own).await;
    assert_eq!(
        cms.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
        ["r-log", "r-patch"]
    );
    assert_eq!((cms[0].2.len(), refs.patch.as_deref()), (0, Some("r-patch")));
}

/// A pod whose init containers have these `(name, exit code, termination message)`.
fn pod_with_init(statuses: &[(&str, i32, &str)]) -> k8s_openapi::api::core::v1::Pod {
    let list: Vec<_> = statuses
        .iter()
        .map(|(name, code, message)| {
            serde_json::json!({"name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": code, "message": message}}})
        })
        .collect();
    serde_json::from_value(serde_json::json!({"metadata": {"name": "r-1"}, "status": {"initContainerStatuses": list}}))
        .unwrap()
}

#[test]
fn the_clones_events_come_from_its_termination_message_when_it_holds_them() {
    let started = r#"{"v":1,"seq":1,"ts":"2026-12-07T00:00:00.000Z","type":"step","step":"clone","status":"started","message":""}"#;
    let done = r#"{"v":1,"seq":2,"ts":"2026-12-07T00:00:01.000Z","type":"step","step":"clone","status":"succeeded","message":"cloned"}"#;
    let both = format!("{started}\n{done}");
    let CloneEvents::Message(text) = clone_events(&pod_with_init(&[("clone", 0, &both), ("gateway", 0, "")])) else {
        panic!("the message holds the clone's events");
    };
    // The same events as its log would give.
    let parsed = parse_log(&text);
    assert_eq!((parsed.events.len(), parsed.last_seq), (2, 2));
    // A failed clone, a message that is not events (an older runner wrote none), or no status:
    // the log is read.
    assert_eq!(clone_events(&pod_with_init(&[("clone", 1, &both)])), CloneEvents::Log);
    assert_eq!(clone_events(&pod_with_init(&[("clone", 0, "")])), CloneEvents::Log);
    assert_eq!(
        clone_events(&pod_with_init(&[("clone", 0, &format!("{started}\nnot an event"))])),
        CloneEvents::Log
    );
    assert_eq!(
        clone_events(&serde_json::from_value(serde_json::json!({"metadata": {"name": "r-1"}})).unwrap()),
        CloneEvents::Log
    );
    // A warm pod has no clone container: nothing to read.
    assert_eq!(
        clone_events(&pod_with_init(&[("gateway", 0, "")])),
        CloneEvents::NoContainer
    );
}
