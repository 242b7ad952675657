//! What the operator's caches keep of each object: the slimming functions its reflectors apply
//! to every object they store (`watcher(..).modify(f)`), shared with the cache benchmark
//! (`e2e/src/bin/bench-cache.rs`), which measures each kind's bytes with and without them.
//!
//! A cache keeps what the reconciles read, and drops the rest at the watch, before it is stored:
//!
//! | cache (label selector) | dropped | kept because |
//! |---|---|---|
//! | AgentRun (all) | `managedFields`, the `kubectl.kubernetes.io/last-applied-configuration` annotation, `spec.prompt` ([`slim_agent_run`]) | every other spec field decides the run's phases; labels (Kueue's queue name, set and trigger labels), annotations (`paddock.dev/issue-*`), owner references (the AgentRunSet), finalizers and the whole status are read by the reconcile |
//! | runner Pod (`paddock.dev/run`) | `managedFields`, the last-applied annotation, the claim annotation `paddock.dev/claim` (up to 200 KiB), the whole spec, the status but its phase, reason, message, start time and container states ([`slim_pod`]) | the reconciles read the pod's labels (attempt, warm state), owner references, its other annotations (the verdicts `decision.paddock.dev/*`, compared before they are written; the messages `message.paddock.dev/*`, counted) and those status fields (the containers' exit codes, reasons, termination messages and times) |
//! | ApprovalGate, RunMessage, RunnerPool, AgentRunSet, AgentRunTrigger (all) | `managedFields`, the last-applied annotation ([`slim_object`]) | their reconciles read their spec and status |
//! | Kueue Workload (`paddock.dev/run`) | everything but the metadata, and its `managedFields` and last-applied annotation ([`slim_to_metadata`]) | the Workload reconcile only lets a deleted Workload go (deletion timestamp, finalizers, resource version) |
//!
//! Why these fields: `managedFields` hold one entry per field manager, listing every field it
//! set (a third to a half of a run's bytes); `kubectl apply` stores a full copy of the applied
//! object in the last-applied annotation (the spec again, prompt included); `spec.prompt` is up
//! to 64 KiB. The AgentRun's status is never slimmed: the operator writes it whole by
//! server-side apply, and a field missing from the cached copy would be removed from the
//! server by the next write.
//!
//! The prompt: a cached AgentRun has neither `spec.prompt` nor `spec.promptFrom` when the run
//! was created with a prompt (the API server's CEL rule requires exactly one), so
//! [`prompt_stripped`] tells a cached copy from the object. The operator reads `spec.prompt`
//! with one GET of the run where its text is used (the pod's start, the BeforeStart gate, the
//! pull request, the evidence bundle), and refuses a prompt from a copy without one.

use crate::AgentRun;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::DynamicObject;

/// The annotation `kubectl apply` (client-side) writes: the applied object as JSON.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what no reconcile reads of any object's metadata: `managedFields` and the
/// [`LAST_APPLIED`] annotation (the annotations become `None` when that was the only one).
pub fn slim_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
        if a.is_empty() {
            meta.annotations = None;
        }
    }
}

/// [`slim_meta`] on any object: what the ApprovalGate, RunMessage, RunnerPool, AgentRunSet and
/// AgentRunTrigger caches keep (spec and status whole).
pub fn slim_object<K: kube::Resource>(obj: &mut K) {
    slim_meta(obj.meta_mut());
}

/// What the AgentRun cache keeps of a run: [`slim_meta`] and no `spec.prompt` (up to 64 KiB;
/// read from the API server where it is used, see the module docs). Spec otherwise whole,
/// status whole.
pub fn slim_agent_run(run: &mut AgentRun) {
    slim_meta(&mut run.metadata);
    run.spec.prompt = None;
}

/// Whether `run` is a copy whose `spec.prompt` was dropped by [`slim_agent_run`]: it has
/// neither `spec.prompt` nor `spec.promptFrom` (which the API server never stores).
pub fn prompt_stripped(run: &AgentRun) -> bool {
    run.spec.prompt.is_none() && run.spec.prompt_from.is_none()
}

/// What the runner-pod cache keeps of a pod: metadata without [`slim_meta`]'s fields and
/// without the warm claim annotation [`crate::ANNOTATION_CLAIM`] (up to 200 KiB); of the status,
/// what the reconciles read ([`slim_pod_status`]); not the spec, which no reconcile reads from
/// a cached pod.
pub fn slim_pod(pod: &mut Pod) {
    if let Some(a) = pod.metadata.annotations.as_mut() {
        a.remove(crate::ANNOTATION_CLAIM);
    }
    slim_meta(&mut pod.metadata);
    pod.spec = None;
    if let Some(st) = pod.status.as_mut() {
        slim_pod_status(st);
    }
}

/// The pod status fields the AgentRun and RunMessage reconciles read: `phase`, `reason`,
/// `message`, `startTime`, and each (init) container's `name` and `state` (its `containerID`
/// dropped; exit code, reason, termination message and times kept). Dropped: the conditions,
/// the IPs, `qosClass`, and per container its volume mounts, user, resources, last state, image
/// and IDs (the required `image` and `imageID` become empty).
pub fn slim_pod_status(st: &mut PodStatus) {
    let containers = |list: Option<Vec<ContainerStatus>>| {
        list.map(|l| {
            l.into_iter()
                .map(|c| ContainerStatus {
                    state: c.state.map(|mut s| {
                        if let Some(t) = s.terminated.as_mut() {
                            t.container_id = None;
                        }
                        s
                    }),
                    ready: c.ready,
                    started: c.started,
                    restart_count: c.restart_count,
                    ..ContainerStatus {
                        name: c.name,
                        ..Default::default()
                    }
                })
                .collect()
        })
    };
    *st = PodStatus {
        phase: st.phase.take(),
        reason: st.reason.take(),
        message: st.message.take(),
        start_time: st.start_time.take(),
        init_container_statuses: containers(st.init_container_statuses.take()),
        container_statuses: containers(st.container_statuses.take()),
        ..Default::default()
    };
}

/// What the Kueue Workload cache keeps: the metadata ([`slim_meta`]), nothing of the object's
/// body (`data` becomes `null`).
pub fn slim_to_metadata(obj: &mut DynamicObject) {
    slim_meta(&mut obj.metadata);
    obj.data = serde_json::Value::Null;
}

#[cfg(test)]
mod tests;
