//! Verification (issue 19, docs/verification.md): the repository's own checks
//! (`spec.verify.command`) run on the agent's change, in a pod of their own that the operator
//! builds, and their outcome recorded by the operator (`status.verification`, condition
//! `Verified`).
//!
//! The verification pod `<run>-verify-<attempt>`: the trusted `clone` step checks out the
//! commit the run started from (the gateway's `base` fact) and applies the run's patch (the
//! gateway's diff, stored with the run's log or in `<run>-patch`: `status.result.patchRef`); then the `verify` container, the agent's image
//! with the agent's restrictions and none of its credentials or network (it holds no egress
//! token, and the pool's NetworkPolicy lets runner pods reach only the egress gateway), runs
//! the command in the work tree. The result is the kubelet's report of that container's exit
//! code, and a protected path the patch changed fails verification before anything runs.
//!
//! When: a run without a held push is verified after its pod ended, before its terminal phase
//! is written (phase `Running`, reason `Verifying`). A run with `verify.required` and
//! `output.push` holds its push (the pod's gateway waits for the operator's signed verdict, as
//! for a BeforePush gate): it is verified while it waits, and the push verdict is `Approve`
//! only once the checks passed (and any BeforePush gate is approved), `Reject` when they did
//! not.

use super::artifacts;
use crate::context::{Context, MANAGER_AGENTRUN};
use crate::error::Result;
use k8s_openapi::api::core::v1::{ConfigMap, ConfigMapVolumeSource, KeyToPath, Pod, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, LogParams, Patch, PatchParams};
use paddock_crds::{AgentRun, VerificationResult, VerificationStatus};
use std::collections::BTreeMap;

/// Name of the checks' container in a verification pod.
pub const CONTAINER: &str = "verify";
/// Label on verification pods (value `true`).
pub const LABEL_VERIFY: &str = "paddock.dev/verify";
/// Default `spec.verify.timeout` (seconds).
pub const DEFAULT_TIMEOUT_SECS: u64 = 600;
/// Time the verification pod gets beyond the timeout, for the clone (seconds).
pub const CLONE_ALLOWANCE_SECS: u64 = 300;
/// Most bytes of the checks' output kept (the end of it).
pub const MAX_LOG_BYTES: usize = 256 * 1024;
/// Where the patch is mounted in the `clone` container.
const PATCH_DIR: &str = "/etc/paddock/patch";

/// Name of the verification pod of `attempt`: `<run>-<attempt>-verify` (a runner pod's name,
/// `<run>-<attempt>`, always ends in a digit, so no run's runner pod can have it).
pub fn pod_name(run: &AgentRun, attempt: u32) -> String {
    format!("{}-{attempt}-verify", run.metadata.name.as_deref().unwrap_or_default())
}

/// What a verification is built from, all from trusted sources (the pod gateway's facts and
/// its patch, as the operator read them from the gateway's own log).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inputs {
    /// The commit the run started from.
    pub base: String,
    /// The commit whose change is verified.
    pub commit: Option<String>,
    /// ConfigMap holding the patch (key `patch.gz`: `<run>-patch` for a held push, else the
    /// run's `patchRef`, `<run>-log` or `<run>-patch`), when there is one to apply.
    pub patch_cm: Option<String>,
    /// Lowercase hex SHA-256 of the gzip patch as the gateway printed it.
    pub patch_sha256: Option<String>,
    /// Why the change cannot be verified (its patch was cut at the size limit or not stored):
    /// the verification is then `Error`/`PatchTooLarge`, never `Passed`.
    pub refuse: Option<String>,
    /// The change's size, `<files> files, +<insertions>/-<deletions>` (the gateway's facts).
    pub diffstat: Option<String>,
    /// Tokens and USD of the agent's model calls so far (the gateway's metering), for a held
    /// push: the agent is done, so this is its whole usage.
    pub usage: Option<paddock_crds::events::Usage>,
}

/// The [`Inputs`] of a change: the gateway's `facts`, its patch (`patch_gz`, gzip) and the
/// ConfigMap the operator stored it in. A change whose patch was cut (`patch_truncated`) or
/// not stored cannot be verified: checking a part of it would approve the rest unseen. Pure.
pub fn inputs(facts: &paddock_crds::gateway::BranchFacts, patch_gz: Option<&[u8]>, patch_cm: Option<String>) -> Inputs {
    let changed = facts.commit.is_some() && facts.files_changed > 0;
    let refuse = if facts.patch_truncated {
        Some(format!(
            "the change's patch ({} bytes) was cut at the size limit: too large to verify",
            facts.patch_bytes
        ))
    } else if changed && (patch_gz.is_none() || patch_cm.is_none()) {
        Some("the change's patch was not stored (over the size limit): too large to verify".to_string())
    } else {
        None
    };
    let patch_cm = patch_cm.filter(|_| changed && patch_gz.is_some());
    Inputs {
        base: facts.base.clone(),
        commit: facts.commit.clone(),
        patch_sha256: patch_cm.as_ref().and(patch_gz).map(paddock_evidence::dsse::sha256_hex),
        patch_cm,
        refuse,
        diffstat: facts
            .commit
            .as_ref()
            .map(|_| paddock_crds::events::diffstat(facts.files_changed, facts.insertions, facts.deletions)),
        usage: None,
    }
}

/// Name of the ConfigMap keeping the checks' output: `<run>-verify-log`.
pub fn log_configmap_name(run: &AgentRun) -> String {
    format!("{}-verify-log", run.metadata.name.as_deref().unwrap_or_default())
}

/// `spec.verify.timeout` in seconds (default [`DEFAULT_TIMEOUT_SECS`]).
pub fn timeout_secs(run: &AgentRun) -> u64 {
    run.spec
        .verify
        .as_ref()
        .and_then(|v| v.timeout.as_deref())
        .and_then(super::build::parse_duration_secs)
        .unwrap_or(DEFAULT_TIMEOUT_SECS)
}

/// Whether `run` holds its push until verified (`verify.required` with `output.push`) or, a
/// set's candidate, until its set selects ([`paddock_crds::agentrunset::holds_push`]).
pub fn holds_push(run: &AgentRun) -> bool {
    paddock_crds::agentrunset::holds_push(run)
}

/// The files a unified diff (git's format) touches, old and new names, in order, without
/// repeats. Pure.
pub fn changed_files(patch: &str) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    let mut push = |p: &str| {
        let p = p.trim_end_matches('\t');
        if p != "/dev/null" && !out.iter().any(|o| o == p) {
            out.push(p.to_string());
        }
    };
    for line in patch.lines() {
        // A path git quoted (non-ASCII or special characters: `diff --git "a/t\303\251st" …`)
        // is kept quoted: [`protected_changes`] counts it as protected, failing closed.
        if let Some(rest) = line.strip_prefix("diff --git \"") {
            push(&format!("\"{rest}"));
            continue;
        }
        if let Some(rest) = line.strip_prefix("--- a/").or_else(|| line.strip_prefix("+++ b/")) {
            push(rest);
        } else if let Some(rest) = line
            .strip_prefix("rename from ")
            .or_else(|| line.strip_prefix("rename to "))
        {
            push(rest);
        } else if let Some(rest) = line.strip_prefix("diff --git a/") {
            // `diff --git a/X b/X`: covers mode-only and binary changes with no ---/+++ lines.
            if let Some((a, b)) = rest.split_once(" b/") {
                push(a);
                push(b);
            }
        }
    }
    out
}

/// The files of `patch` matching one of `globs` (shell-style, `**` for any depth, `*` not
/// crossing `/`; a glob without `/` also matches that name in any directory, as `.gitignore`
/// does). Pure.
pub fn protected_changes(patch: &str, globs: &[String]) -> Vec<String> {
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let patterns: Vec<glob::Pattern> = globs
        .iter()
        .flat_map(|g| {
            let g = g.trim_start_matches('/');
            let mut v = vec![g.to_string()];
            if !g.contains('/') {
                v.push(format!("**/{g}"));
            }
            // `dir/**` also means the directory's files at any depth (glob's `**` needs a name).
            if let Some(dir) = g.strip_suffix("/**") {
                v.push(format!("{dir}/**/*"));
            }
            v
        })
        .filter_map(|g| glob::Pattern::new(&g).ok())
        .collect();
    if globs.is_empty() {
        return vec![];
    }
    changed_files(patch)
        .into_iter()
        .filter(|f| f.starts_with('"') || patterns.iter().any(|p| p.matches_with(f, opts)))
        .collect()
}

/// The test runner's closing line, where its format is known: pytest (`== 41 passed, 2 failed
/// in 0.12s ==` → `41 passed, 2 failed`), cargo test (`test result: FAILED. 12 passed; 1
/// failed; …` → `12 passed; 1 failed`), Jest (`Tests: 2 failed, 41 passed, 43 total`), go test
/// (`ok`/`FAIL` package lines, counted), Python's unittest (`Ran 3 tests in 0.001s` then `OK` or
/// `FAILED (failures=1, errors=1)` → `1 passed, 1 failed, 1 error`). The last match wins. Pure.
pub fn summary(log: &str) -> Option<String> {
    let mut found = None;
    let (mut go_ok, mut go_fail) = (0u32, 0u32);
    let mut unittest_ran: Option<u32> = None;
    for line in log.lines() {
        let t = line.trim();
        if let Some(n) = t
            .strip_prefix("Ran ")
            .and_then(|r| r.split_once(' '))
            .filter(|(_, rest)| rest.starts_with("test"))
            .and_then(|(n, _)| n.parse::<u32>().ok())
        {
            unittest_ran = Some(n);
            continue;
        }
        if let Some(ran) = unittest_ran {
            if t.is_empty() {
                continue;
            }
            unittest_ran = None;
            if t == "OK" || t.starts_with("OK (") || t.starts_with("FAILED (") {
                let count = |key: &str| -> u32 {
                    t.split(['(', ')', ',', ' '])
                        .filter_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse::<u32>().ok())
                        .sum()
                };
                let (failed, errors, skipped) = (count("failures"), count("errors"), count("skipped"));
                let passed = ran.saturating_sub(failed + errors + skipped);
                let mut parts = vec![format!("{passed} passed")];
                if failed > 0 {
                    parts.push(format!("{failed} failed"));
                }
                if errors > 0 {
                    parts.push(format!("{errors} error{}", if errors == 1 { "" } else { "s" }));
                }
                if skipped > 0 {
                    parts.push(format!("{skipped} skipped"));
                }
                found = Some(parts.join(", "));
                continue;
            }
        }
        let bare = t.trim_matches('=').trim();
        let words_ok = bare.contains(" passed") || bare.contains(" failed") || bare.contains(" error");
        if t.starts_with('=') && words_ok {
            // pytest: drop the timing ("in 0.12s").
            let s = bare.rsplit_once(" in ").map(|(s, _)| s).unwrap_or(bare);
            found = Some(s.trim().to_string());
        } else if let Some(rest) = t.strip_prefix("test result: ") {
            let rest = rest.split_once(". ").map(|(_, r)| r).unwrap_or(rest);
            let parts: Vec<&str> = rest.split("; ").take(2).collect();
            found = Some(parts.join("; "));
        } else if let Some(rest) = t.strip_prefix("Tests:") {
            found = Some(rest.trim().to_string());
        } else if t.starts_with("ok  \t") || t.starts_with("ok \t") {
            go_ok += 1;
        } else if t.starts_with("FAIL\t") {
            go_fail += 1;
        }
    }
    if found.is_none() && go_ok + go_fail > 0 {
        found = Some(format!("{go_ok} packages ok, {go_fail} failed"));
    }
    found
}

/// The verification pod for `attempt` of `run`, from `runner` (the runner pod as the run
/// would get it for that attempt, egress uplink applied): the `clone` init container checks
/// out `base` and applies the patch of ConfigMap `patch_cm` (when the run changed anything);
/// the `verify` container runs the command with the agent container's image, security
/// settings, resources and volumes, without its environment (no prompt, keys, proxy or
/// secrets). Pure.
pub fn build_pod(run: &AgentRun, runner: Pod, attempt: u32, inputs: &Inputs) -> Pod {
    let base = inputs.base.as_str();
    let patch_cm = inputs.patch_cm.as_deref();
    let mut pod = runner;
    let verify = run.spec.verify.clone().unwrap_or_default();
    pod.metadata.name = Some(pod_name(run, attempt));
    pod.metadata.annotations = None;
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(LABEL_VERIFY.into(), "true".into());
    let Some(spec) = pod.spec.as_mut() else { return pod };
    spec.active_deadline_seconds = Some((timeout_secs(run) + CLONE_ALLOWANCE_SECS) as i64);
    let mut inits: Vec<_> = spec.init_containers.take().unwrap_or_default();
    inits.retain(|c| c.name == "clone");
    for c in &mut inits {
        let env = c.env.get_or_insert_with(Vec::new);
        env.retain(|e| e.name != "PADDOCK_REVISION" && e.name != "PADDOCK_PUSH" && e.name != "PADDOCK_PUSH_APPROVAL");
        env.push(super::build::env("PADDOCK_REVISION", base));
        if let Some(why) = &inputs.refuse {
            env.push(super::build::env("PADDOCK_VERIFY_REFUSE", why.clone()));
        }
        if let Some(commit) = &inputs.commit {
            env.push(super::build::env(VERIFIED_COMMIT_ENV, commit.clone()));
        }
        if patch_cm.is_some() {
            env.push(super::build::env(
                "PADDOCK_APPLY_PATCH",
                format!("{PATCH_DIR}/patch.gz"),
            ));
            if let Some(sha) = &inputs.patch_sha256 {
                env.push(super::build::env("PADDOCK_APPLY_PATCH_SHA256", sha.clone()));
            }
            c.volume_mounts.get_or_insert_with(Vec::new).push(VolumeMount {
                name: "patch".into(),
                mount_path: PATCH_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            });
        }
    }
    spec.init_containers = Some(inits);
    if let Some(cm) = patch_cm {
        spec.volumes.get_or_insert_with(Vec::new).push(Volume {
            name: "patch".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: cm.into(),
                items: Some(vec![KeyToPath {
                    key: paddock_crds::artifacts::PATCH_KEY.into(),
                    path: "patch.gz".into(),
                    mode: None,
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let workdir = run
        .spec
        .repo
        .workdir
        .as_deref()
        .map(|w| format!("/workspace/work/{}", w.trim_matches('/')))
        .unwrap_or_else(|| "/workspace/work".into());
    for c in spec.containers.iter_mut() {
        c.name = CONTAINER.into();
        c.command = Some(verify.command.clone());
        c.args = None;
        c.working_dir = Some(workdir.clone());
        c.env = Some(vec![
            super::build::env("HOME", "/home/paddock"),
            super::build::env("CI", "true"),
        ]);
    }
    pod
}

/// How a verification pod ended: (result, reason, message, exit code), or `None` while it
/// runs. Pure.
pub fn outcome(pod: &Pod) -> Option<(VerificationResult, String, String, Option<i32>)> {
    let status = pod.status.as_ref()?;
    let term = |list: &Option<Vec<k8s_openapi::api::core::v1::ContainerStatus>>, name: &str| {
        list.iter()
            .flatten()
            .find(|c| c.name == name)
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.terminated.clone())
    };
    if let Some(t) = term(&status.container_statuses, CONTAINER) {
        return Some(if t.exit_code == 0 {
            (
                VerificationResult::Passed,
                "Passed".into(),
                "the checks passed (exit 0)".into(),
                Some(0),
            )
        } else {
            (
                VerificationResult::Failed,
                "ChecksFailed".into(),
                format!("the checks failed (exit {})", t.exit_code),
                Some(t.exit_code),
            )
        });
    }
    if let Some(t) = term(&status.init_container_statuses, "clone").filter(|t| t.exit_code != 0) {
        let msg = t.message.unwrap_or_default();
        let reason = ["PatchTooLarge", "PatchChanged", "PatchDidNotApply"]
            .into_iter()
            .find(|r| msg.contains(r))
            .unwrap_or("VerificationPodFailed");
        return Some((
            VerificationResult::Error,
            reason.into(),
            format!(
                "preparing the tree failed: {}",
                paddock_crds::events::truncate(&msg, 500)
            ),
            None,
        ));
    }
    match status.phase.as_deref() {
        Some("Failed") => {
            let why = status.reason.clone().unwrap_or_default();
            let reason = if why == "DeadlineExceeded" {
                "VerificationTimedOut"
            } else {
                "VerificationPodFailed"
            };
            Some((
                VerificationResult::Error,
                reason.into(),
                format!(
                    "the verification pod failed: {} {}",
                    why,
                    status.message.clone().unwrap_or_default()
                ),
                None,
            ))
        }
        _ => None,
    }
}

/// A verification of `attempt` starting now (or already decided by protected paths).
pub fn started(attempt: u32, base: &str, pod: Option<String>, now: Time) -> VerificationStatus {
    VerificationStatus {
        result: VerificationResult::Running,
        reason: "Verifying".into(),
        message: "the checks are running".into(),
        attempt,
        base_commit: base.into(),
        commit: None,
        diffstat: None,
        patch_sha256: None,
        pod_name: pod,
        exit_code: None,
        summary: None,
        protected_paths_changed: vec![],
        start_time: Some(now),
        duration_seconds: None,
        log_ref: None,
    }
}

/// The patch of ConfigMap `cm` (key `patch.gz`), as text, when its gzip bytes have SHA-256
/// `sha256` (the gateway's; `Err` with a reason when they differ: the ConfigMap was changed
/// since the operator stored it). At most 8 MiB decompressed. `Ok(None)` without a ConfigMap.
///
/// # Errors
/// API errors.
pub async fn read_patch(
    ctx: &Context,
    run: &AgentRun,
    cm: &str,
    sha256: Option<&str>,
) -> Result<Option<std::result::Result<String, String>>> {
    use std::io::Read as _;
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let Some(c) = cms.get_opt(cm).await? else {
        return Ok(None);
    };
    let gz = paddock_crds::artifacts::patch_gz(&c)
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    if let Some(want) = sha256 {
        if paddock_evidence::dsse::sha256_hex(&gz) != want {
            return Ok(Some(Err(format!(
                "ConfigMap {cm} does not hold the patch the pod gateway produced (changed since it was stored)"
            ))));
        }
    }
    let mut s = String::new();
    let read = flate2::read::GzDecoder::new(gz.as_slice())
        .take(8 << 20)
        .read_to_string(&mut s);
    Ok(Some(
        read.map(|_| s)
            .map_err(|e| format!("ConfigMap {cm}: not a gzip text patch: {e}")),
    ))
}

/// Creates the verification pod (a POST: an existing pod of that name is never changed, and
/// is accepted later only if its spec is the one the operator builds, [`spec_mismatch`]).
///
/// # Errors
/// API errors other than "already exists".
pub async fn create_pod(ctx: &Context, pod: &Pod) -> Result<()> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let pp = kube::api::PostParams {
        field_manager: Some(MANAGER_AGENTRUN.into()),
        ..Default::default()
    };
    match pods.create(&pp, pod).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Why `actual` (a pod read from the API server) is not the verification pod the operator
/// builds (`expected`), or `None` when it is: the checks' container (image, command, args,
/// env, working directory, security context), the `clone` container (image, args, env), the
/// patch volume and the run as controller owner. Whoever created a pod of that name, only this
/// spec's result counts (a namespace `edit` user may create pods, never write their status).
/// Pure.
pub fn spec_mismatch(actual: &Pod, expected: &Pod) -> Option<String> {
    let (Some(a), Some(e)) = (actual.spec.as_ref(), expected.spec.as_ref()) else {
        return Some("no spec".into());
    };
    let container = |s: &k8s_openapi::api::core::v1::PodSpec, init: bool, name: &str| {
        let list = if init {
            s.init_containers.clone().unwrap_or_default()
        } else {
            s.containers.clone()
        };
        list.into_iter().find(|c| c.name == name)
    };
    let pick = |c: Option<k8s_openapi::api::core::v1::Container>| {
        c.map(|c| {
            serde_json::json!({
                "image": c.image, "command": c.command, "args": c.args, "env": c.env,
                "workingDir": c.working_dir, "securityContext": c.security_context,
            })
        })
    };
    if a.containers.len() != 1 || a.init_containers.as_ref().map_or(0, Vec::len) != 1 {
        return Some("its containers are not the operator's".into());
    }
    for (init, name) in [(false, CONTAINER), (true, "clone")] {
        if pick(container(a, init, name)) != pick(container(e, init, name)) {
            return Some(format!("its {name} container is not the one the operator builds"));
        }
    }
    let patch_cm = |s: &k8s_openapi::api::core::v1::PodSpec| {
        s.volumes
            .iter()
            .flatten()
            .find(|v| v.name == "patch")
            .and_then(|v| v.config_map.as_ref().map(|c| c.name.clone()))
    };
    if patch_cm(a) != patch_cm(e) {
        return Some("its patch volume is not the run's".into());
    }
    let owner = |p: &Pod| {
        p.metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone())
    };
    if owner(actual).is_none() || owner(actual) != owner(expected) {
        return Some("it is not owned by the run".into());
    }
    None
}

/// Records how verification pod `pod` ended into `v`: the result, the checks' output (kept
/// in [`log_configmap_name`]), its summary and the duration.
///
/// # Errors
/// API errors storing the output.
pub async fn record_result(
    ctx: &Context,
    run: &AgentRun,
    pod: &Pod,
    v: &mut VerificationStatus,
    now: &Time,
) -> Result<bool> {
    let Some((result, reason, message, exit_code)) = outcome(pod) else {
        return Ok(false);
    };
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let name = pod.metadata.name.clone().unwrap_or_default();
    let lp = LogParams {
        container: Some(CONTAINER.into()),
        tail_lines: Some(5000),
        ..Default::default()
    };
    let mut log = pods.logs(&name, &lp).await.unwrap_or_default();
    if log.len() > MAX_LOG_BYTES {
        let mut cut = log.len() - MAX_LOG_BYTES;
        while !log.is_char_boundary(cut) {
            cut += 1;
        }
        log = log[cut..].to_string();
    }
    let cm_name = log_configmap_name(run);
    let mut cm = artifacts::configmap(run, cm_name.clone(), "verify-log");
    cm.data = Some(BTreeMap::from([("verify.log".to_string(), log.clone())]));
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    cms.patch(
        &cm_name,
        &PatchParams::apply(MANAGER_AGENTRUN).force(),
        &Patch::Apply(&artifacts::with_kind(cm)),
    )
    .await?;
    v.result = result;
    v.reason = reason;
    v.message = message;
    v.exit_code = exit_code;
    v.summary = summary(&log);
    v.log_ref = Some(cm_name);
    v.duration_seconds = v
        .start_time
        .as_ref()
        .map(|s| (now.0.as_second() - s.0.as_second()).max(0));
    Ok(true)
}

/// Env on a verification pod's `clone` container naming the commit whose patch it applies
/// (the gateway's reviewed commit of a held push): the push verdict is signed for it.
pub const VERIFIED_COMMIT_ENV: &str = "PADDOCK_VERIFIED_COMMIT";

/// The runner pod `run` gets for `attempt` (built from the pool as the run was admitted, with
/// the pool's egress uplink), the template of its verification pod; `Ok(Err(why))` when it
/// cannot be built (the pool is gone, the egress gateway not ready yet, the build refused).
///
/// # Errors
/// API errors.
pub async fn runner_pod_for(ctx: &Context, run: &AgentRun, attempt: u32) -> Result<std::result::Result<Pod, String>> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let pools: Api<paddock_crds::RunnerPool> = Api::namespaced(ctx.client.clone(), ns);
    let pool_name = super::build::pool_name(run);
    let Some(live) = pools.get_opt(pool_name).await? else {
        return Ok(Err(format!("RunnerPool {pool_name} does not exist")));
    };
    let pool = super::evidence::pool_as_admitted(&live, run.status.as_ref().and_then(|s| s.policy.as_ref()));
    let mut pod = match super::build::build_pod(run, &pool, attempt, &ctx.verdict_key()) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let Some(uplink) = crate::controller::egress::reconcile_egress(&live, ctx).await? else {
        return Ok(Err(format!("the egress gateway of pool {pool_name} is not ready")));
    };
    super::build::apply_uplink(&mut pod, &uplink);
    Ok(Ok(pod))
}

/// The [`Inputs`] of a held push, from runner pod `runner_pod`'s gateway log (its review of
/// the push: facts and patch), with the event log parsed for storing; `None` until the gateway
/// has reviewed a commit.
///
/// # Errors
/// None today (log reads that fail count as "not yet").
pub async fn held_inputs(
    ctx: &Context,
    run: &AgentRun,
    runner_pod: &str,
) -> Result<Option<(Inputs, artifacts::ParsedLog)>> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let gw = artifacts::parse_gateway_log(&artifacts::fetch_gateway_log(&pods, runner_pod).await);
    let Some(facts) = gw.review.facts.clone().filter(|f| f.commit.is_some()) else {
        return Ok(None);
    };
    let gz = gw
        .review
        .patch_gz
        .clone()
        .filter(|g| g.len() <= artifacts::MAX_PATCH_GZ_BYTES);
    let cm = gz.as_ref().map(|_| artifacts::patch_configmap_name(run));
    let mut inputs = inputs(&facts, gz.as_deref(), cm);
    inputs.usage = gw.usage.clone();
    let mut parsed = artifacts::parse_log(&artifacts::fetch_pod_log(&pods, runner_pod).await);
    parsed.patch_gz = gw.review.patch_gz.clone();
    Ok(Some((inputs, parsed)))
}

/// A held push (`verify.required` with `output.push`) was requested: stores the gateway's
/// patch (`<run>-patch`) and creates the verification pod of `attempt` for the commit the
/// gateway reviewed (refusing, inside the pod, a change too large to verify). Idempotent.
/// `Ok(false)` while the gateway has not printed its review or the pod cannot be built yet.
///
/// # Errors
/// API errors.
pub async fn start_held(ctx: &Context, run: &AgentRun, runner_pod: &str, attempt: u32) -> Result<bool> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let Some((inputs, parsed)) = held_inputs(ctx, run, runner_pod).await? else {
        return Ok(false);
    };
    // The patch is stored whoever made a pod of that name (it is checked against the gateway's
    // digest when the result is read).
    artifacts::apply_artifacts(&ctx.client, run, &parsed, artifacts::PatchLayout::Own).await?;
    if pods.get_opt(&pod_name(run, attempt)).await?.is_some() {
        return Ok(true);
    }
    let runner = match runner_pod_for(ctx, run, attempt).await? {
        Ok(p) => p,
        Err(why) => {
            tracing::warn!(
                run = run.metadata.name.as_deref().unwrap_or_default(),
                why,
                "cannot build the verification pod yet"
            );
            return Ok(false);
        }
    };
    create_pod(ctx, &build_pod(run, runner, attempt, &inputs)).await?;
    Ok(true)
}

/// Sets condition `Verified` from `v`: Unknown while `Running`, True when `Passed`, False
/// otherwise (reason: `v.reason`).
pub fn set_condition(
    st: &mut paddock_crds::AgentRunStatus,
    v: &VerificationStatus,
    generation: Option<i64>,
    now: &Time,
) {
    let status = match v.result {
        VerificationResult::Running => "Unknown",
        VerificationResult::Passed => "True",
        _ => "False",
    };
    paddock_crds::condition::set_condition(
        &mut st.conditions,
        COND_VERIFIED,
        status,
        &v.reason,
        &paddock_crds::events::truncate(&v.message, 1000),
        generation,
        now.clone(),
    );
}

/// Condition type of verification.
pub const COND_VERIFIED: &str = "Verified";

/// Fails `v` with `ProtectedPathChanged` when `patch` changes a protected path; `true` if so.
pub fn check_protected(run: &AgentRun, patch: Option<&str>, v: &mut VerificationStatus) -> bool {
    let globs = run
        .spec
        .verify
        .as_ref()
        .map(|s| s.protected_paths.clone())
        .unwrap_or_default();
    let changed = protected_changes(patch.unwrap_or_default(), &globs);
    if changed.is_empty() {
        return false;
    }
    v.result = VerificationResult::Failed;
    v.reason = "ProtectedPathChanged".into();
    v.message = format!("the change touches protected paths: {}", changed.join(", "));
    v.protected_paths_changed = changed;
    true
}

#[cfg(test)]
mod tests;
