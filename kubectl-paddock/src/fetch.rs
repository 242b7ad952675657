//! The reads that `kubectl paddock` and its console share: a run, who the API server says you
//! are, a run's patch (also while its BeforePush gate is pending), its model transcript, its
//! event log, its gates and its messages. Every call goes to the API server with the caller's client, so RBAC judges the
//! caller. Decoding is done by the pure functions of the crate root ([`crate::gunzip`],
//! [`crate::parse_log`], [`crate::parse_transcript`]).

use crate::{gunzip, PluginError};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, LogParams, PostParams};
use kube::Client;
use paddock_crds::{AgentRun, ApprovalGate, GateStage, RunMessage};

/// Errors of the shared reads.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// What the plugin reports itself: no such run, no patch yet, a malformed artifact, ….
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The API server refused or failed a request; `what` says which.
    #[error("{what}: {}", api_message(source))]
    Api {
        /// The request, e.g. `reading ConfigMap "x-patch"`.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
}

impl FetchError {
    fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> FetchError {
        let what = what.into();
        move |source| FetchError::Api { what, source }
    }
}

/// The API server's own message for `e` (a `Status` answer: RBAC, admission, validation), else
/// the client error's text. This is what a person should read: never swallowed, never reworded.
pub fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

/// The phase of `run` as text (`Running`, …), `unknown` before the operator set one.
pub fn phase_name(run: &AgentRun) -> String {
    run.status
        .as_ref()
        .and_then(|s| s.phase)
        .map(|p| format!("{p:?}"))
        .unwrap_or_else(|| "unknown".into())
}

/// Reads AgentRun `name` in `ns`.
///
/// # Errors
/// [`PluginError::RunNotFound`], or the API server's refusal.
pub async fn fetch_run(client: &Client, ns: &str, name: &str) -> Result<AgentRun, FetchError> {
    let api: Api<AgentRun> = Api::namespaced(client.clone(), ns);
    api.get_opt(name)
        .await
        .map_err(FetchError::api(format!("reading AgentRun {name:?}")))?
        .ok_or_else(|| {
            PluginError::RunNotFound {
                name: name.into(),
                namespace: ns.into(),
            }
            .into()
        })
}

/// Who the API server says the caller is (a SelfSubjectReview, like `kubectl auth whoami`):
/// (user name, groups).
///
/// # Errors
/// The API server's refusal, or [`PluginError::NoUserName`].
pub async fn fetch_whoami(client: &Client) -> Result<(String, Vec<String>), FetchError> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(FetchError::api("asking the API server who you are (SelfSubjectReview)"))?;
    let info = review.status.and_then(|s| s.user_info).unwrap_or_default();
    let user = info.username.filter(|u| !u.is_empty()).ok_or(PluginError::NoUserName)?;
    Ok((user, info.groups.unwrap_or_default()))
}

/// The ApprovalGates of run `name` in `ns` (labelled `paddock.dev/run=<name>` and naming it in
/// `spec.runRef.name`), oldest first.
///
/// # Errors
/// The API server's refusal.
pub async fn fetch_gates_of_run(client: &Client, ns: &str, name: &str) -> Result<Vec<ApprovalGate>, FetchError> {
    let gates: Api<ApprovalGate> = Api::namespaced(client.clone(), ns);
    let mut list: Vec<ApprovalGate> = gates
        .list(&ListParams::default().labels(&format!("{}={name}", paddock_crds::LABEL_RUN)))
        .await
        .map_err(FetchError::api("listing ApprovalGates"))?
        .items
        .into_iter()
        .filter(|g| g.spec.run_ref.name == name)
        .collect();
    list.sort_by_key(|g| {
        (
            g.metadata.creation_timestamp.as_ref().map(|t| t.0),
            g.metadata.name.clone(),
        )
    });
    Ok(list)
}

/// The RunMessages to run `name` in `ns` (every message whose `spec.runRef.name` is `name`,
/// labelled or not), oldest first.
///
/// # Errors
/// The API server's refusal.
pub async fn fetch_messages(client: &Client, ns: &str, name: &str) -> Result<Vec<RunMessage>, FetchError> {
    let api: Api<RunMessage> = Api::namespaced(client.clone(), ns);
    let mut list: Vec<RunMessage> = api
        .list(&ListParams::default())
        .await
        .map_err(FetchError::api("listing RunMessages"))?
        .items
        .into_iter()
        .filter(|m| m.spec.run_ref.name == name)
        .collect();
    list.sort_by_key(|m| {
        (
            m.metadata.creation_timestamp.as_ref().map(|t| t.0),
            m.metadata.name.clone(),
        )
    });
    Ok(list)
}

/// The patch ConfigMap a BeforePush gate of run `name` points at, if any.
async fn before_push_patch_ref(client: &Client, ns: &str, name: &str) -> Result<Option<String>, FetchError> {
    let gates: Api<ApprovalGate> = Api::namespaced(client.clone(), ns);
    let list = gates
        .list(&ListParams::default().labels(&format!("{}={name}", paddock_crds::LABEL_RUN)))
        .await
        .map_err(FetchError::api("listing ApprovalGates"))?;
    Ok(list
        .items
        .into_iter()
        .filter(|g| g.spec.stage == GateStage::BeforePush && g.spec.run_ref.name == name)
        .find_map(|g| g.spec.request.patch_ref))
}

/// Reads a gzip blob `key` of ConfigMap `cm_name` and decompresses it to text.
async fn fetch_gz(client: &Client, ns: &str, cm_name: &str, key: &str) -> Result<Option<String>, FetchError> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let Some(cm) = cms
        .get_opt(cm_name)
        .await
        .map_err(FetchError::api(format!("reading ConfigMap {cm_name:?}")))?
    else {
        return Ok(None);
    };
    let gz = cm
        .binary_data
        .as_ref()
        .and_then(|b| b.get(key))
        .ok_or_else(|| PluginError::BadArtifact {
            name: cm_name.into(),
            what: format!("has no binaryData[{key:?}]"),
        })?;
    let text = gunzip(&gz.0).map_err(|e| PluginError::BadArtifact {
        name: cm_name.into(),
        what: format!("{key} is not valid gzip: {e}"),
    })?;
    Ok(Some(text))
}

/// A run's patch (unified diff text): the run's result's `patchRef`, or — before the run ends —
/// the patch its BeforePush gate links for review. The reference names either layout: the
/// run's `<run>-log`, which holds the patch next to the event log when both fit in one object,
/// or a `<run>-patch` of its own (older runs, large patches, reviews).
///
/// # Errors
/// [`PluginError::NoPatch`] when there is none (yet), [`PluginError::BadArtifact`] for a
/// missing or malformed ConfigMap, or the API server's refusal.
pub async fn fetch_patch(client: &Client, ns: &str, name: &str) -> Result<String, FetchError> {
    let run = fetch_run(client, ns, name).await?;
    let status = run.status.clone().unwrap_or_default();
    let patch_ref = match status.result.as_ref() {
        None => match before_push_patch_ref(client, ns, name).await? {
            Some(p) => p,
            // A held push under verification (or waiting for its set's selection): the
            // operator stored the gateway's patch as `<run>-patch` when it started the checks.
            None if status.verification.as_ref().is_some_and(|v| v.patch_sha256.is_some()) => {
                paddock_crds::artifacts::patch_configmap(name)
            }
            None => {
                return Err(PluginError::NoPatch {
                    run: name.into(),
                    why: format!("yet (phase {})", phase_name(&run)),
                }
                .into())
            }
        },
        Some(r) => r.patch_ref.clone().ok_or_else(|| PluginError::NoPatch {
            run: name.into(),
            why: format!(
                "(phase {}, {} files changed{})",
                phase_name(&run),
                r.run.files_changed,
                if r.run.commit.is_none() { ", no commit" } else { "" }
            ),
        })?,
    };
    fetch_gz(client, ns, &patch_ref, paddock_crds::artifacts::PATCH_KEY)
        .await?
        .ok_or_else(|| {
            PluginError::BadArtifact {
                name: patch_ref,
                what: "does not exist (deleted?)".into(),
            }
            .into()
        })
}

/// The patch under review of a gate (its `spec.request.patchRef`), `None` when it links none.
///
/// # Errors
/// A missing or malformed ConfigMap, or the API server's refusal.
pub async fn fetch_gate_patch(client: &Client, ns: &str, gate: &ApprovalGate) -> Result<Option<String>, FetchError> {
    let Some(patch_ref) = gate.spec.request.patch_ref.clone() else {
        return Ok(None);
    };
    fetch_gz(client, ns, &patch_ref, paddock_crds::artifacts::PATCH_KEY)
        .await?
        .map(Some)
        .ok_or_else(|| {
            PluginError::BadArtifact {
                name: patch_ref,
                what: "does not exist (deleted?)".into(),
            }
            .into()
        })
}

/// A run's model transcript as the gateway wrote it (JSON lines; decode with
/// [`crate::parse_transcript`]), from ConfigMap `<run>-transcript`.
///
/// # Errors
/// [`PluginError::BadArtifact`] when the ConfigMap does not exist (no model calls, or the run
/// has not ended) or is malformed, or the API server's refusal.
pub async fn fetch_transcript(client: &Client, ns: &str, name: &str) -> Result<String, FetchError> {
    let cm_name = format!("{name}-transcript");
    match fetch_gz(client, ns, &cm_name, "transcript.jsonl.gz").await? {
        Some(t) => Ok(t),
        None => {
            let run = fetch_run(client, ns, name).await?;
            Err(PluginError::BadArtifact {
                name: cm_name,
                what: format!(
                    "does not exist: no model calls went through the gateway, or the run has not ended (phase {})",
                    phase_name(&run)
                ),
            }
            .into())
        }
    }
}

/// A run's event log text (JSON lines; decode with [`crate::parse_log`]): attempt `attempt`'s
/// stored log when it names an earlier attempt, else the stored log of the ended run, else the
/// live pod's `agent` container log.
///
/// # Errors
/// [`PluginError::NoLog`] when there is none (yet), [`PluginError::BadArtifact`] for a missing
/// or malformed ConfigMap, or the API server's refusal.
pub async fn fetch_log(client: &Client, ns: &str, name: &str, attempt: Option<u32>) -> Result<String, FetchError> {
    let run = fetch_run(client, ns, name).await?;
    let status = run.status.clone().unwrap_or_default();
    let current = status.attempt.unwrap_or(1);
    let earlier = match attempt {
        Some(n) if n != current => {
            let a = status
                .attempts
                .iter()
                .find(|a| a.attempt == n)
                .ok_or_else(|| PluginError::NoLog {
                    run: name.into(),
                    why: format!(
                        "for attempt {n} (the run is at attempt {current}; ended attempts: {:?})",
                        status.attempts.iter().map(|a| a.attempt).collect::<Vec<_>>()
                    ),
                })?;
            Some(a.log_ref.clone().ok_or_else(|| PluginError::NoLog {
                run: name.into(),
                why: format!(
                    "for attempt {n}: its pod ({}) was gone before its log was read",
                    a.pod_name
                ),
            })?)
        }
        _ => None,
    };
    if let Some(log_ref) = earlier.or_else(|| status.result.as_ref().and_then(|r| r.log_ref.clone())) {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let cm = cms
            .get_opt(&log_ref)
            .await
            .map_err(FetchError::api(format!("reading ConfigMap {log_ref:?}")))?
            .ok_or_else(|| PluginError::BadArtifact {
                name: log_ref.clone(),
                what: "does not exist (deleted?)".into(),
            })?;
        return Ok(cm
            .data
            .as_ref()
            .and_then(|d| d.get("events.jsonl"))
            .cloned()
            .ok_or_else(|| PluginError::BadArtifact {
                name: log_ref.clone(),
                what: "has no data[\"events.jsonl\"]".into(),
            })?);
    }
    let Some(pod) = status.pod_name.clone() else {
        return Err(PluginError::NoLog {
            run: name.into(),
            why: format!("yet (phase {}, no pod)", phase_name(&run)),
        }
        .into());
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = LogParams {
        container: Some("agent".into()),
        ..Default::default()
    };
    pods.logs(&pod, &lp).await.map_err(|e| {
        PluginError::NoLog {
            run: name.into(),
            why: format!(
                "yet (phase {}; pod {pod}'s agent container log: {})",
                phase_name(&run),
                api_message(&e)
            ),
        }
        .into()
    })
}

#[cfg(test)]
mod tests;
