//! Artifacts that outlive the runner pod: the event log and the patch, read from the pod's
//! container logs and kept in ConfigMaps owned by the run (`<run>-log`, with the patch when
//! both fit in one object, else `<run>-patch` too: [`PatchLayout`]); the model transcript and
//! the metered usage, read from the gateway container's log (`<run>-transcript`,
//! `status.usage`).
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
use paddock_crds::gateway::{BranchFacts, GatewayLine};
use paddock_crds::Reason;
use paddock_crds::{artifacts, AgentRun};
use std::collections::BTreeMap;

/// Largest event log kept (bytes); older lines are dropped first.
pub const MAX_LOG_BYTES: usize = 512 * 1024;
/// Largest compressed patch kept (bytes), under the 1 MiB object limit.
pub const MAX_PATCH_GZ_BYTES: usize = artifacts::MAX_GZ_BYTES;

/// What the runner's log said, parsed.
#[derive(Debug, Default, PartialEq)]
pub struct ParsedLog {
    /// Event lines, in order (patch chunks excluded).
    pub events: Vec<EventLine>,
    /// The gzip-compressed patch, when all chunks were present.
    pub patch_gz: Option<Vec<u8>>,
    /// The runner's final result, when present.
    pub result: Option<RunResult>,
    /// The agent CLI's saved session, when all its chunks were present.
    pub session: Option<SavedSession>,
    /// Highest event sequence number in the log, patch and session chunks included (as the
    /// log follower counts `status.progress.events`); 0 for a log without events.
    pub last_seq: u64,
}

/// An agent CLI session the runner printed ([`RunnerEvent::Session`] chunks, reassembled).
#[derive(Debug, Default, PartialEq)]
pub struct SavedSession {
    /// Adapter (`claude-code`, `codex`).
    pub agent: String,
    /// The CLI's session id.
    pub session_id: String,
    /// The file's path relative to the CLI's home.
    pub path: String,
    /// The gzip-compressed file (redacted by the runner).
    pub gz: Vec<u8>,
}

/// Largest compressed session kept (bytes), under the 1 MiB object limit.
pub const MAX_SESSION_GZ_BYTES: usize = artifacts::MAX_GZ_BYTES;

/// Name of the session ConfigMap of a run: `<run>-session` ([`artifacts::session_configmap`]).
pub fn session_configmap_name(run: &str) -> String {
    artifacts::session_configmap(run)
}

/// The chunks `0..total` of one base64 payload (`patch` and `session` events), as they arrive.
#[derive(Default)]
struct Chunks(Vec<Option<String>>);

impl Chunks {
    /// Stores chunk `index` of `total` (at most 1024); a different `total` starts over.
    fn put(&mut self, index: u32, total: u32, data: &str) {
        let total = total.min(1024) as usize;
        if self.0.len() != total {
            self.0 = vec![None; total];
        }
        if let Some(slot) = self.0.get_mut(index as usize) {
            *slot = Some(data.to_string());
        }
    }

    /// The decoded payload, when every chunk arrived and the base64 is valid.
    fn decode(self) -> Option<Vec<u8>> {
        if self.0.is_empty() || self.0.iter().any(Option::is_none) {
            return None;
        }
        let b64: String = self.0.into_iter().flatten().collect();
        base64::engine::general_purpose::STANDARD.decode(b64).ok()
    }
}

/// Parses runner log text (several containers' logs concatenated). Pure.
pub fn parse_log(text: &str) -> ParsedLog {
    let mut out = ParsedLog::default();
    let mut patch = Chunks::default();
    let mut session: Option<(SavedSession, Chunks)> = None;
    for line in text.lines() {
        let Some(ev) = parse_line(line) else { continue };
        out.last_seq = out.last_seq.max(ev.seq);
        match &ev.event {
            RunnerEvent::Patch { index, total, data } => patch.put(*index, *total, data),
            RunnerEvent::Session {
                agent,
                session_id,
                path,
                index,
                total,
                data,
            } => {
                if session.as_ref().is_none_or(|(s, _)| s.session_id != *session_id) {
                    let meta = SavedSession {
                        agent: agent.clone(),
                        session_id: session_id.clone(),
                        path: path.clone(),
                        gz: Vec::new(),
                    };
                    session = Some((meta, Chunks::default()));
                }
                if let Some((_, chunks)) = session.as_mut() {
                    chunks.put(*index, *total, data);
                }
            }
            RunnerEvent::Result(r) => {
                out.result = Some(bound_result(r.clone()));
                out.events.push(ev);
            }
            _ => out.events.push(ev),
        }
    }
    out.patch_gz = patch.decode();
    out.session = session.and_then(|(meta, chunks)| chunks.decode().map(|gz| SavedSession { gz, ..meta }));
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

/// Name of the event-log ConfigMap of a run ([`artifacts::log_configmap`]).
pub fn log_configmap_name(run: &AgentRun) -> String {
    artifacts::log_configmap(run.metadata.name.as_deref().unwrap_or_default())
}

/// Name of the patch ConfigMap of a run ([`artifacts::patch_configmap`]).
pub fn patch_configmap_name(run: &AgentRun) -> String {
    artifacts::patch_configmap(run.metadata.name.as_deref().unwrap_or_default())
}

pub(super) fn configmap(run: &AgentRun, name: String, kind: &str) -> ConfigMap {
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
        text.push_str(&fetch_container_log(pods, pod, container).await);
    }
    text
}

/// Reads the log of `container` of `pod`, newline-terminated; empty when it has none (it never
/// started, the pod is gone). One `pods/log` read.
pub async fn fetch_container_log(pods: &Api<Pod>, pod: &str, container: &str) -> String {
    let lp = LogParams {
        container: Some(container.into()),
        ..Default::default()
    };
    match pods.logs(pod, &lp).await {
        Ok(mut l) => {
            l.push('\n');
            l
        }
        Err(e) => {
            tracing::debug!(pod, container, error = %e, "no log");
            String::new()
        }
    }
}

/// Where the end of a run finds the events of its pod's `clone` init container.
#[derive(Debug, PartialEq)]
pub enum CloneEvents {
    /// In its termination message, which the runner's clone step writes on success when they
    /// fit (`paddock-runner clone`): taken from the pod's status, no log read.
    Message(String),
    /// The pod has no `clone` container: a warm pod, whose gateway clones.
    NoContainer,
    /// Only in its log: it failed, its events did not fit, or the pod's status says nothing.
    Log,
}

/// [`CloneEvents`] of `pod`, from its status. A message is taken only when the container ended
/// with exit code 0 and every line of it is a runner event. Pure.
pub fn clone_events(pod: &Pod) -> CloneEvents {
    let Some(statuses) = pod.status.as_ref().and_then(|s| s.init_container_statuses.as_ref()) else {
        return CloneEvents::Log;
    };
    let Some(clone) = statuses.iter().find(|c| c.name == "clone") else {
        return CloneEvents::NoContainer;
    };
    let message = clone
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .filter(|t| t.exit_code == 0)
        .and_then(|t| t.message.as_deref())
        .unwrap_or_default();
    let lines: Vec<&str> = message.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() || !lines.iter().all(|l| parse_line(l).is_some()) {
        return CloneEvents::Log;
    }
    CloneEvents::Message(format!("{}\n", lines.join("\n")))
}

/// Names of the ConfigMaps [`apply_artifacts`] writes.
#[derive(Debug, Default, PartialEq)]
pub struct ArtifactRefs {
    /// `<run>-log`.
    pub log: String,
    /// Where the patch is, when there was one within [`MAX_PATCH_GZ_BYTES`]: `<run>-log` (the
    /// same as `log`) when it shares the log's ConfigMap, else `<run>-patch`.
    pub patch: Option<String>,
    /// `<run>-session`, when the CLI's session was saved.
    pub session: Option<String>,
}

/// Where [`apply_artifacts`] keeps the patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchLayout {
    /// In the event log's ConfigMap `<run>-log` (key `patch.gz` in `binaryData`) when both fit
    /// in one object ([`artifacts::patch_fits_in_log`]), else in `<run>-patch`: the run's end,
    /// one write fewer.
    WithLog,
    /// In `<run>-patch`, always: a patch stored for a review (a BeforePush gate) or for a held
    /// push's checks, which the gate or the verification pod names, and which the run's end
    /// leaves where it is.
    Own,
}

/// The ConfigMaps [`apply_artifacts`] writes for `parsed` in `layout`: the log always, the
/// patch and the session when present and within their bounds. Pure.
pub fn artifact_refs(run: &AgentRun, parsed: &ParsedLog, layout: PatchLayout) -> ArtifactRefs {
    refs_for(run, parsed, layout, render_log(&parsed.events).len())
}

/// [`artifact_refs`] for an event log of `log_bytes` (its rendered text).
fn refs_for(run: &AgentRun, parsed: &ParsedLog, layout: PatchLayout, log_bytes: usize) -> ArtifactRefs {
    let log = log_configmap_name(run);
    let patch = parsed
        .patch_gz
        .as_ref()
        .filter(|g| g.len() <= MAX_PATCH_GZ_BYTES)
        .map(|g| match layout {
            PatchLayout::WithLog if artifacts::patch_fits_in_log(log_bytes, g.len()) => log.clone(),
            _ => patch_configmap_name(run),
        });
    let session = parsed
        .session
        .as_ref()
        .filter(|s| s.gz.len() <= MAX_SESSION_GZ_BYTES)
        .map(|_| session_configmap_name(run.metadata.name.as_deref().unwrap_or_default()));
    ArtifactRefs { log, patch, session }
}

/// Stores the parsed log, patch and CLI session of `run` in its ConfigMaps (server-side apply,
/// idempotent), the patch as `layout` says; returns their names ([`artifact_refs`]). The
/// happy path's end is one write: `<run>-log` with the log and the patch.
///
/// # Errors
/// API errors writing the ConfigMaps.
pub async fn apply_artifacts(
    client: &kube::Client,
    run: &AgentRun,
    parsed: &ParsedLog,
    layout: PatchLayout,
) -> Result<ArtifactRefs> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let pp = PatchParams::apply(MANAGER_AGENTRUN).force();
    let text = render_log(&parsed.events);
    let refs = refs_for(run, parsed, layout, text.len());
    let patch = parsed.patch_gz.as_ref().zip(refs.patch.as_ref());
    let mut log = configmap(run, refs.log.clone(), artifacts::KIND_LOG);
    log.data = Some(BTreeMap::from([(artifacts::LOG_KEY.to_string(), text)]));
    // Applied whole: a patch this manager put in the log before and that now has its own
    // ConfigMap (or none) leaves the log's.
    if let Some((gz, _)) = patch.filter(|(_, name)| **name == refs.log) {
        log.binary_data = Some(BTreeMap::from([(
            artifacts::PATCH_KEY.to_string(),
            ByteString(gz.clone()),
        )]));
    }
    api.patch(&refs.log, &pp, &Patch::Apply(&with_kind(log))).await?;
    if let Some((gz, name)) = patch.filter(|(_, name)| **name != refs.log) {
        let mut cm = configmap(run, name.clone(), artifacts::KIND_PATCH);
        cm.binary_data = Some(BTreeMap::from([(
            artifacts::PATCH_KEY.to_string(),
            ByteString(gz.clone()),
        )]));
        api.patch(name, &pp, &Patch::Apply(&with_kind(cm))).await?;
    }
    if let Some((s, name)) = parsed.session.as_ref().zip(refs.session.as_ref()) {
        let mut cm = configmap(run, name.clone(), artifacts::KIND_SESSION);
        cm.data = Some(BTreeMap::from([
            (artifacts::SESSION_AGENT_KEY.to_string(), s.agent.clone()),
            (artifacts::SESSION_ID_KEY.to_string(), s.session_id.clone()),
            (artifacts::SESSION_PATH_KEY.to_string(), s.path.clone()),
        ]));
        cm.binary_data = Some(BTreeMap::from([(
            artifacts::SESSION_FILE_KEY.to_string(),
            ByteString(s.gz.clone()),
        )]));
        api.patch(name, &pp, &Patch::Apply(&with_kind(cm))).await?;
    }
    Ok(refs)
}

/// Name of the log ConfigMap of an ended, retried attempt: `<run>-log-<attempt>`
/// ([`artifacts::attempt_log_configmap`]).
pub fn attempt_log_name(run: &AgentRun, attempt: u32) -> String {
    artifacts::attempt_log_configmap(run.metadata.name.as_deref().unwrap_or_default(), attempt)
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
    let mut log = configmap(run, name.clone(), artifacts::KIND_LOG);
    log.data = Some(BTreeMap::from([(
        artifacts::LOG_KEY.to_string(),
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

pub(super) fn with_kind(cm: ConfigMap) -> serde_json::Value {
    let mut v = serde_json::to_value(cm).unwrap_or_default();
    v["apiVersion"] = "v1".into();
    v["kind"] = "ConfigMap".into();
    v
}

/// Largest compressed transcript kept (bytes), under the 1 MiB object limit; the oldest
/// exchanges are dropped first.
pub const MAX_TRANSCRIPT_GZ_BYTES: usize = artifacts::MAX_GZ_BYTES;

/// The branch's facts as the gateway reported them, with the patch it printed just before
/// (gzip), when all its chunks were there.
#[derive(Debug, Default, PartialEq)]
pub struct GatewayBranch {
    /// The facts.
    pub facts: Option<BranchFacts>,
    /// The gzip-compressed patch of `facts.commit` against the base.
    pub patch_gz: Option<Vec<u8>>,
}

/// What the gateway's log said: its last cumulative usage, the transcript lines and the
/// branch's facts (`paddock_crds::gateway`). The gateway is trusted and the agent container
/// cannot write its log, so these are the run's facts.
#[derive(Debug, Default, PartialEq)]
pub struct GatewayLog {
    /// Tokens and USD of the run's model calls, as metered by the gateway (authoritative).
    pub usage: Option<paddock_crds::events::Usage>,
    /// Whether a budget stopped the run (its message).
    pub budget_exceeded: Option<String>,
    /// Transcript lines (`type` `transcript` or `transcript_truncated`), JSON, in order.
    pub transcript: Vec<String>,
    /// The last push review (what a BeforePush gate shows).
    pub review: GatewayBranch,
    /// The final facts, reported when the gateway stopped after the agent container.
    pub last: GatewayBranch,
    /// The commit of the last successful push.
    pub pushed: Option<String>,
    /// The upstream's HTTP status of the last model call, from the gateway's own
    /// `gateway_model_status` lines; `None` when none was printed or after the gateway stopped
    /// printing them (`gateway_model_status_truncated`): the last one is then not the last call's.
    pub model_status: Option<u16>,
}

impl GatewayLog {
    /// Whether the gateway saw the model endpoint fail on the last call (429 or 5xx): the only
    /// evidence of `ModelUnavailable` the operator takes (the agent can write
    /// `.paddock/model-status` and print any reason).
    pub fn model_unavailable(&self) -> bool {
        self.model_status.is_some_and(|s| s == 429 || s >= 500)
    }
}

impl GatewayLog {
    /// The run's facts: the final ones, else the last review's.
    pub fn branch(&self) -> &GatewayBranch {
        if self.last.facts.is_some() {
            &self.last
        } else {
            &self.review
        }
    }
}

/// `r` with the facts only trusted code may state taken from the gateway (`gw`): commit,
/// branch, files changed, insertions, deletions, patch size and whether it was pushed. What the
/// agent's runner said of them is dropped; with no gateway facts they stay unknown (no commit,
/// zero counts, not pushed). Summary, usage and exit code stay agent-reported (docs/api.md).
pub fn with_trusted_facts(mut r: RunResult, gw: &GatewayLog) -> RunResult {
    let facts = gw.branch().facts.clone().unwrap_or_default();
    r.commit = facts.commit;
    if !facts.branch.is_empty() {
        r.branch = facts.branch;
    }
    r.files_changed = facts.files_changed;
    r.insertions = facts.insertions;
    r.deletions = facts.deletions;
    r.patch_bytes = facts.patch_bytes;
    r.patch_truncated = facts.patch_truncated;
    // Pushed means the remote has this commit: a push of an earlier commit does not count.
    r.pushed = gw.pushed.is_some() && gw.pushed == r.commit;
    let (reason, message) = confirmed_reason(std::mem::take(&mut r.reason), std::mem::take(&mut r.message), gw);
    (r.reason, r.message) = (reason, message);
    r
}

/// `(reason, message)` of an attempt, with `ModelUnavailable` (a retryable cause the agent's
/// runner proposes from `.paddock/model-status`, which the agent can write) kept only when the
/// gateway saw the model endpoint fail ([`GatewayLog::model_unavailable`]); otherwise
/// `AgentFailed`, saying why. Pure.
pub fn confirmed_reason(reason: String, message: String, gw: &GatewayLog) -> (String, String) {
    if reason == Reason::ModelUnavailable && !gw.model_unavailable() {
        return (
            Reason::AgentFailed.to_string(),
            format!(
                "{message} (the agent reported ModelUnavailable; the gateway saw no 429/5xx answer to the last model call)"
            ),
        );
    }
    (reason, message)
}

/// Fills what `gw` (the gateway's log) lacks from the gateway container's termination message
/// in `pod`'s status: the final facts and the last push, which the gateway also writes there
/// when it stops (at most 4 KiB, no patch). The log wins where it has them; the termination
/// message is the gateway's own file, which the agent container cannot write. Pure.
pub fn with_termination_facts(mut gw: GatewayLog, pod: &k8s_openapi::api::core::v1::Pod) -> GatewayLog {
    let Some(message) = pod
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == "gateway"))
        .and_then(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
    else {
        return gw;
    };
    for line in message.lines() {
        match GatewayLine::parse(line) {
            Some(GatewayLine::GatewayBranch(facts))
                if gw.last.facts.is_none() && facts.purpose == paddock_crds::gateway::BranchPurpose::Final =>
            {
                gw.last.facts = Some(facts);
            }
            Some(GatewayLine::GatewayPush(p)) if p.ok && gw.pushed.is_none() => gw.pushed = Some(p.commit),
            _ => {}
        }
    }
    gw
}

/// Parses the gateway container's log. Lines that are not the gateway's JSON are skipped. Pure.
pub fn parse_gateway_log(text: &str) -> GatewayLog {
    let mut out = GatewayLog::default();
    let mut patch: (String, Chunks) = (String::new(), Chunks::default());
    for line in text.lines().map(str::trim).filter(|l| l.starts_with('{')) {
        if let Some(g) = GatewayLine::parse(line) {
            match g {
                GatewayLine::GatewayPatch {
                    commit,
                    index,
                    total,
                    data,
                } => {
                    if patch.0 != commit {
                        patch = (commit, Chunks::default());
                    }
                    patch.1.put(index, total, &data);
                }
                GatewayLine::GatewayBranch(facts) => {
                    let (commit, chunks) = std::mem::take(&mut patch);
                    let patch_gz = (facts.commit.as_deref() == Some(commit.as_str()))
                        .then(|| chunks.decode())
                        .flatten();
                    let branch = GatewayBranch {
                        facts: Some(facts.clone()),
                        patch_gz,
                    };
                    match facts.purpose {
                        paddock_crds::gateway::BranchPurpose::Review => out.review = branch,
                        paddock_crds::gateway::BranchPurpose::Final => out.last = branch,
                    }
                }
                GatewayLine::GatewayPush(p) if p.ok => out.pushed = Some(p.commit),
                GatewayLine::GatewayPush(_) => {}
                GatewayLine::GatewayModelStatus(m) => out.model_status = Some(m.status),
                GatewayLine::GatewayModelStatusTruncated { .. } => out.model_status = None,
                GatewayLine::GatewayUsage(u) => {
                    out.usage = Some(paddock_crds::events::Usage {
                        input_tokens: u.input_tokens + u.cache_read_tokens + u.cache_write_tokens,
                        output_tokens: u.output_tokens,
                        turns: u.requests as u32,
                        cost_usd: u.cost_usd,
                    });
                    out.budget_exceeded = u.budget_exceeded;
                }
            }
            continue;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if matches!(v["type"].as_str(), Some("transcript" | "transcript_truncated")) {
            out.transcript.push(line.to_string());
        }
    }
    out
}

/// Name of a run's transcript ConfigMap: `<run>-transcript`
/// ([`artifacts::transcript_configmap`]).
pub fn transcript_configmap_name(run: &AgentRun) -> String {
    artifacts::transcript_configmap(run.metadata.name.as_deref().unwrap_or_default())
}

/// Gzip of the transcript lines (newline-terminated), dropping the oldest until it fits in
/// [`MAX_TRANSCRIPT_GZ_BYTES`]. Pure.
pub fn transcript_gz(lines: &[String]) -> Vec<u8> {
    use std::io::Write;
    let mut from = 0;
    loop {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        for l in &lines[from..] {
            let _ = gz.write_all(l.as_bytes());
            let _ = gz.write_all(b"\n");
        }
        let bytes = gz.finish().unwrap_or_default();
        if bytes.len() <= MAX_TRANSCRIPT_GZ_BYTES || from + 1 >= lines.len() {
            return bytes;
        }
        from += (lines.len() - from).div_ceil(4);
    }
}

/// Reads the gateway container's log (the pod's model transcript and usage); empty when it has
/// none.
pub async fn fetch_gateway_log(pods: &Api<Pod>, pod: &str) -> String {
    let lp = LogParams {
        container: Some("gateway".into()),
        limit_bytes: Some(16 << 20),
        ..Default::default()
    };
    pods.logs(pod, &lp).await.unwrap_or_default()
}

/// Stores the transcript as `<run>-transcript` (key `transcript.jsonl.gz` in `binaryData`);
/// `None` when there is none.
///
/// # Errors
/// API errors writing the ConfigMap.
pub async fn apply_transcript(client: &kube::Client, run: &AgentRun, gw: &GatewayLog) -> Result<Option<String>> {
    if gw.transcript.is_empty() {
        return Ok(None);
    }
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let name = transcript_configmap_name(run);
    let mut cm = configmap(run, name.clone(), artifacts::KIND_TRANSCRIPT);
    cm.binary_data = Some(BTreeMap::from([(
        artifacts::TRANSCRIPT_KEY.to_string(),
        ByteString(transcript_gz(&gw.transcript)),
    )]));
    api.patch(
        &name,
        &PatchParams::apply(MANAGER_AGENTRUN).force(),
        &Patch::Apply(&with_kind(cm)),
    )
    .await?;
    Ok(Some(name))
}

#[cfg(test)]
mod tests;
