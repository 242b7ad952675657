//! Assembling a run's [`Bundle`] from the API server: the run, its prompt, its gates, the
//! artifact ConfigMaps the operator keeps (event logs, patch, transcript) and its Kubernetes
//! Events. Used by the operator (which signs the result) and by `kubectl paddock export` (with
//! the caller's credentials, unsigned).
//!
//! A ConfigMap is taken only when it is owned by this run (its UID): a same-named leftover of
//! an earlier run of the same name is not this run's evidence.

use crate::bundle::{Bundle, GateRecord, KubeEvent, RunIdentity, API_VERSION, KIND};
use k8s_openapi::api::core::v1::{ConfigMap, Event};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::Client;
use paddock_crds::{AgentRun, ApprovalGate};
use std::collections::BTreeMap;
use std::io::Read as _;

/// Largest decompressed artifact (patch, transcript) taken into a bundle, bytes (16 MiB).
pub const MAX_ARTIFACT_BYTES: u64 = 16 << 20;

/// Kubernetes Events kept in a bundle, newest kept when there are more.
pub const MAX_EVENTS: usize = 500;

/// Reads everything [`Bundle`] holds about `run` (as read from the API server, with its
/// metadata and status) and assembles it, stamped `assembled_by` and now.
///
/// # Errors
/// The API server's errors other than 404 (a missing artifact is left out).
pub async fn gather(client: &Client, run: &AgentRun, assembled_by: &str) -> Result<Bundle, kube::Error> {
    let ns = run.metadata.namespace.clone().unwrap_or_default();
    let name = run.metadata.name.clone().unwrap_or_default();
    let uid = run.metadata.uid.clone().unwrap_or_default();
    let status = run.status.clone().unwrap_or_default();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let owned_cm = |cm: Option<ConfigMap>| {
        cm.filter(|c| {
            c.metadata
                .owner_references
                .as_ref()
                .is_some_and(|o| o.iter().any(|r| r.uid == uid))
        })
    };

    let prompt = match (&run.spec.prompt, &run.spec.prompt_from) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(from)) => cms
            .get_opt(&from.name)
            .await?
            .and_then(|c| c.data)
            .and_then(|mut d| d.remove(&from.key)),
        (None, None) => None,
    };

    let log_name = status
        .result
        .as_ref()
        .and_then(|r| r.log_ref.clone())
        .unwrap_or_else(|| format!("{name}-log"));
    let event_log = owned_cm(cms.get_opt(&log_name).await?).and_then(|c| text(&c, "events.jsonl"));
    let mut attempt_logs = BTreeMap::new();
    for a in &status.attempts {
        if let Some(r) = &a.log_ref {
            if let Some(t) = owned_cm(cms.get_opt(r).await?).and_then(|c| text(&c, "events.jsonl")) {
                attempt_logs.insert(a.attempt, t);
            }
        }
    }
    let patch = match status.result.as_ref().and_then(|r| r.patch_ref.clone()) {
        // `<run>-log` or `<run>-patch`: the reference names whichever holds it.
        Some(p) => owned_cm(cms.get_opt(&p).await?).and_then(|c| gz_text(&c, paddock_crds::artifacts::PATCH_KEY)),
        None => None,
    };
    let transcript =
        owned_cm(cms.get_opt(&format!("{name}-transcript")).await?).and_then(|c| gz_text(&c, "transcript.jsonl.gz"));

    let gates_api: Api<ApprovalGate> = Api::namespaced(client.clone(), &ns);
    let mut gates: Vec<GateRecord> = gates_api
        .list(&ListParams::default().labels(&format!("{}={name}", paddock_crds::LABEL_RUN)))
        .await?
        .items
        .into_iter()
        .filter(|g| g.spec.run_ref.name == name && g.spec.run_ref.uid.as_deref().is_none_or(|u| u == uid))
        .map(|g| GateRecord {
            name: g.metadata.name.clone().unwrap_or_default(),
            uid: g.metadata.uid.clone().unwrap_or_default(),
            creation_timestamp: g.metadata.creation_timestamp.clone(),
            spec: g.spec,
            status: g.status,
        })
        .collect();
    gates.sort_by(|a, b| {
        (a.creation_timestamp.as_ref().map(|t| t.0), &a.name)
            .cmp(&(b.creation_timestamp.as_ref().map(|t| t.0), &b.name))
    });

    let events_api: Api<Event> = Api::namespaced(client.clone(), &ns);
    let mut kube_events: Vec<KubeEvent> = events_api
        .list(&ListParams::default().fields(&format!("involvedObject.uid={uid}")))
        .await?
        .items
        .into_iter()
        .map(kube_event)
        .collect();
    kube_events.sort_by(|a, b| a.first_time.cmp(&b.first_time));
    if kube_events.len() > MAX_EVENTS {
        kube_events.drain(..kube_events.len() - MAX_EVENTS);
    }

    let mut annotations = run.metadata.annotations.clone().unwrap_or_default();
    annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    Ok(Bundle {
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        run: RunIdentity {
            namespace: ns,
            name,
            uid,
            creation_timestamp: run.metadata.creation_timestamp.clone(),
            labels: run.metadata.labels.clone().unwrap_or_default(),
            annotations,
        },
        spec: run.spec.clone(),
        prompt,
        status,
        gates,
        event_log,
        attempt_logs,
        transcript,
        patch,
        kube_events,
        assembled_at: Time(k8s_openapi::jiff::Timestamp::now()),
        assembled_by: assembled_by.into(),
    })
}

fn text(cm: &ConfigMap, key: &str) -> Option<String> {
    cm.data.as_ref()?.get(key).cloned()
}

fn gz_text(cm: &ConfigMap, key: &str) -> Option<String> {
    let gz = cm.binary_data.as_ref()?.get(key)?;
    // At most MAX_ARTIFACT_BYTES decompressed (the operator's own artifacts are far smaller);
    // a larger one (a gzip bomb written into the ConfigMap) is left out.
    let mut out = String::new();
    flate2::read::GzDecoder::new(gz.0.as_slice())
        .take(MAX_ARTIFACT_BYTES + 1)
        .read_to_string(&mut out)
        .ok()?;
    (out.len() as u64 <= MAX_ARTIFACT_BYTES).then_some(out)
}

/// The fields of a core/v1 Event a reader needs. Pure.
pub fn kube_event(e: Event) -> KubeEvent {
    let first = e
        .event_time
        .as_ref()
        .map(|t| t.0.to_string())
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0.to_string()));
    let last = e
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0.to_string()))
        .or_else(|| e.last_timestamp.as_ref().map(|t| t.0.to_string()))
        .or_else(|| first.clone());
    KubeEvent {
        type_: e.type_.unwrap_or_default(),
        reason: e.reason.unwrap_or_default(),
        message: e.message.unwrap_or_default(),
        count: e.series.as_ref().and_then(|s| s.count).or(e.count).unwrap_or(1),
        first_time: first,
        last_time: last,
        reporting_controller: e
            .reporting_component
            .filter(|c| !c.is_empty())
            .or_else(|| e.source.and_then(|s| s.component))
            .unwrap_or_default(),
    }
}
