//! Artifacts that outlive the runner pod: the event log and the patch, read from the pod's
//! container logs and kept in ConfigMaps owned by the run (`<run>-log`, `<run>-patch`).
//!
//! Why logs and ConfigMaps: the agent container must hold no Kubernetes credentials, so the
//! runner cannot write anything to the API itself. It prints its events on stdout; the operator
//! (which already may read pod logs) follows them while the pod runs and, when it ends, stores
//! them. The pod is kept until the run is deleted, so a crash of the operator between the pod's
//! end and the ConfigMap write loses nothing: the next reconcile reads the log again.

use crate::context::MANAGER_AGENTRUN;
use crate::error::Result;
use base64::Engine;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::ByteString;
use kube::api::{Api, LogParams, Patch, PatchParams};
use paddock_crds::events::{parse_line, EventLine, RunResult, RunnerEvent};
use paddock_crds::AgentRun;
use std::collections::BTreeMap;

/// Largest event log kept (bytes); older lines are dropped first.
pub const MAX_LOG_BYTES: usize = 512 * 1024;
/// Largest compressed patch kept (bytes), under the 1 MiB object limit.
pub const MAX_PATCH_GZ_BYTES: usize = 900 * 1024;

/// What the runner's log said, parsed.
#[derive(Debug, Default, PartialEq)]
pub struct ParsedLog {
    /// Event lines, in order (patch chunks excluded).
    pub events: Vec<EventLine>,
    /// The gzip-compressed patch, when all chunks were present.
    pub patch_gz: Option<Vec<u8>>,
    /// The runner's final result, when present.
    pub result: Option<RunResult>,
}

/// Parses runner log text (several containers' logs concatenated). Pure.
pub fn parse_log(text: &str) -> ParsedLog {
    let mut out = ParsedLog::default();
    let mut chunks: Vec<Option<String>> = Vec::new();
    for line in text.lines() {
        let Some(ev) = parse_line(line) else { continue };
        match &ev.event {
            RunnerEvent::Patch { index, total, data } => {
                let total = (*total).min(1024) as usize;
                if chunks.len() != total {
                    chunks = vec![None; total];
                }
                if let Some(slot) = chunks.get_mut(*index as usize) {
                    *slot = Some(data.clone());
                }
            }
            RunnerEvent::Result(r) => {
                out.result = Some(bound_result(r.clone()));
                out.events.push(ev);
            }
            _ => out.events.push(ev),
        }
    }
    if !chunks.is_empty() && chunks.iter().all(Option::is_some) {
        let b64: String = chunks.into_iter().flatten().collect();
        out.patch_gz = base64::engine::general_purpose::STANDARD.decode(b64).ok();
    }
    out
}

/// Cuts the strings of a result read from the pod log (which the agent, running in the same
/// container, can forge) to the sizes the runner itself writes, so `status.result` stays small
/// whatever the log says. The termination message, the other source, is capped by the kubelet.
fn bound_result(mut r: RunResult) -> RunResult {
    use paddock_crds::events::{truncate, MAX_TEXT_BYTES};
    for s in [&mut r.reason, &mut r.message, &mut r.branch] {
        *s = truncate(s, MAX_TEXT_BYTES);
    }
    r.failed_step = r.failed_step.map(|s| truncate(&s, 64));
    r.commit = r.commit.map(|s| truncate(&s, 64));
    r.summary = r.summary.map(|s| truncate(&s, 1024));
    r
}

/// Renders events as JSON lines, keeping the newest lines within [`MAX_LOG_BYTES`].
pub fn render_log(events: &[EventLine]) -> String {
    let lines: Vec<String> = events.iter().filter_map(|e| serde_json::to_string(e).ok()).collect();
    let mut total = 0;
    let mut keep = lines.len();
    for (i, l) in lines.iter().enumerate().rev() {
        if total + l.len() + 1 > MAX_LOG_BYTES {
            break;
        }
        total += l.len() + 1;
        keep = i;
    }
    let mut out = lines[keep..].join("\n");
    out.push('\n');
    out
}

/// Name of the event-log ConfigMap of a run.
pub fn log_configmap_name(run: &AgentRun) -> String {
    format!("{}-log", run.metadata.name.as_deref().unwrap_or_default())
}

/// Name of the patch ConfigMap of a run.
pub fn patch_configmap_name(run: &AgentRun) -> String {
    format!("{}-patch", run.metadata.name.as_deref().unwrap_or_default())
}

fn configmap(run: &AgentRun, name: String, kind: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name);
    cm.metadata.namespace = run.metadata.namespace.clone();
    cm.metadata.owner_references = Some(vec![super::build::owner_ref(run)]);
    cm.metadata.labels = Some(BTreeMap::from([
        (
            paddock_crds::LABEL_RUN.to_string(),
            run.metadata.name.clone().unwrap_or_default(),
        ),
        (paddock_crds::LABEL_ARTIFACT.to_string(), kind.to_string()),
        ("app.kubernetes.io/managed-by".to_string(), "paddock".to_string()),
    ]));
    cm
}

/// Reads the logs of a finished pod's `clone` and `agent` containers. A container that never
/// started has no log; that is not an error.
pub async fn fetch_pod_log(pods: &Api<Pod>, pod: &str) -> String {
    let mut text = String::new();
    for container in ["clone", "agent"] {
        let lp = LogParams {
            container: Some(container.into()),
            ..Default::default()
        };
        match pods.logs(pod, &lp).await {
            Ok(l) => {
                text.push_str(&l);
                text.push('\n');
            }
            Err(e) => tracing::debug!(pod, container, error = %e, "no log"),
        }
    }
    text
}

/// Stores the parsed log and patch of `run` in its ConfigMaps (server-side apply, idempotent).
/// Returns the names of the log and patch ConfigMaps written.
///
/// # Errors
/// API errors writing the ConfigMaps.
pub async fn apply_artifacts(
    client: &kube::Client,
    run: &AgentRun,
    parsed: &ParsedLog,
) -> Result<(String, Option<String>)> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let pp = PatchParams::apply(MANAGER_AGENTRUN).force();
    let log_name = log_configmap_name(run);
    let mut log = configmap(run, log_name.clone(), "log");
    log.data = Some(BTreeMap::from([(
        "events.jsonl".to_string(),
        render_log(&parsed.events),
    )]));
    api.patch(&log_name, &pp, &Patch::Apply(&with_kind(log))).await?;
    let mut patch_ref = None;
    if let Some(gz) = parsed.patch_gz.as_ref().filter(|g| g.len() <= MAX_PATCH_GZ_BYTES) {
        let name = patch_configmap_name(run);
        let mut cm = configmap(run, name.clone(), "patch");
        cm.binary_data = Some(BTreeMap::from([("patch.gz".to_string(), ByteString(gz.clone()))]));
        api.patch(&name, &pp, &Patch::Apply(&with_kind(cm))).await?;
        patch_ref = Some(name);
    }
    Ok((log_name, patch_ref))
}

/// Name of the log ConfigMap of an ended, retried attempt: `<run>-log-<attempt>`.
pub fn attempt_log_name(run: &AgentRun, attempt: u32) -> String {
    format!("{}-log-{attempt}", run.metadata.name.as_deref().unwrap_or_default())
}

/// Stores the event log of a retried attempt as [`attempt_log_name`] (key `events.jsonl`, the
/// same bounds as the run's log). Returns its name.
///
/// # Errors
/// API errors.
pub async fn apply_attempt_log(
    client: &kube::Client,
    run: &AgentRun,
    attempt: u32,
    parsed: &ParsedLog,
) -> Result<String> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let name = attempt_log_name(run, attempt);
    let mut log = configmap(run, name.clone(), "log");
    log.data = Some(BTreeMap::from([(
        "events.jsonl".to_string(),
        render_log(&parsed.events),
    )]));
    api.patch(
        &name,
        &PatchParams::apply(MANAGER_AGENTRUN).force(),
        &Patch::Apply(&with_kind(log)),
    )
    .await?;
    Ok(name)
}

fn with_kind(cm: ConfigMap) -> serde_json::Value {
    let mut v = serde_json::to_value(cm).unwrap_or_default();
    v["apiVersion"] = "v1".into();
    v["kind"] = "ConfigMap".into();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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
}
