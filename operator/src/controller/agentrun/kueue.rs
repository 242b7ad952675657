//! Kueue integration (opt-in, `--kueue`): an AgentRun labelled `kueue.x-k8s.io/queue-name`
//! starts only once Kueue admits a `Workload` for it, so cluster-wide quota and fair sharing
//! across teams apply to agent runs.
//!
//! Paddock follows Kueue's contract for external job frameworks (Kueue's
//! `integrations.externalFrameworks: ["AgentRun.v1alpha1.paddock.dev"]`; see
//! pkg/controller/jobframework in Kueue): the job's own controller (this one)
//! - creates the Workload `agentrun-<run>` (`kueue.x-k8s.io/v1beta2`), owned by the run, with
//!   `spec.queueName` from the label and one pod set `main` (count 1) whose template carries the
//!   runner pod's containers and their resources (no env, so no prompt in the Workload);
//! - starts the run only when the Workload's condition `Admitted` is True, putting the admitted
//!   flavors' `nodeLabels` and `tolerations` (ResourceFlavor) on the pod;
//! - sets the condition `Finished` (reason `Succeeded` or `Failed`) when the run ends, which
//!   releases the quota, and removes Kueue's `kueue.x-k8s.io/resource-in-use` finalizer from
//!   Workloads it finished or whose run was deleted ([`release_workload`]).
//!
//! The run's spec is never written (no `suspend` flip), so GitOps tools see no drift; while it
//! waits the run is `Queued` with reason `WaitingForKueue` and Kueue's own message.

use super::build;
use crate::context::{Context, MANAGER_AGENTRUN};
use crate::error::Result;
use k8s_openapi::api::core::v1::{Pod, PodSpec, Toleration};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use paddock_crds::{AgentRun, LABEL_RUN};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The label naming the LocalQueue (Kueue's convention for every integration).
pub const QUEUE_LABEL: &str = "kueue.x-k8s.io/queue-name";
/// Kueue's finalizer on Workloads holding quota.
pub const RESOURCE_IN_USE: &str = "kueue.x-k8s.io/resource-in-use";
/// Label Kueue uses to find a Workload's job.
pub const JOB_UID_LABEL: &str = "kueue.x-k8s.io/job-uid";

/// Kueue's Workload kind, `kueue.x-k8s.io/v1beta2` (the storage version since Kueue 0.15).
pub fn workload_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kueue.x-k8s.io", "v1beta2", "Workload"),
        "workloads",
    )
}

fn flavor_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kueue.x-k8s.io", "v1beta2", "ResourceFlavor"),
        "resourceflavors",
    )
}

/// The LocalQueue a run asks for, if any.
pub fn queue_name(run: &AgentRun) -> Option<&str> {
    run.labels()
        .get(QUEUE_LABEL)
        .map(String::as_str)
        .filter(|q| !q.is_empty())
}

/// Name of a run's Workload: `agentrun-<run>` (run names are at most 52 characters).
pub fn workload_name(run: &AgentRun) -> String {
    format!("agentrun-{}", run.metadata.name.as_deref().unwrap_or_default())
}

/// The Workload for `run` whose runner pod would be `pod`: its pod set keeps what Kueue
/// accounts (containers' names, images and resources; sidecar restart policy; node selector,
/// tolerations, runtime class) and drops the rest (env, volumes). Pure.
pub fn build_workload(run: &AgentRun, queue: &str, pod: &Pod) -> Value {
    let spec = pod.spec.clone().unwrap_or_default();
    let slim = |cs: &[k8s_openapi::api::core::v1::Container]| -> Vec<Value> {
        cs.iter()
            .map(|c| {
                let mut v = json!({"name": c.name, "image": c.image, "resources": c.resources});
                if let Some(p) = &c.restart_policy {
                    v["restartPolicy"] = json!(p);
                }
                v
            })
            .collect()
    };
    let mut template = json!({
        "restartPolicy": "Never",
        "containers": slim(&spec.containers),
        "initContainers": slim(spec.init_containers.as_deref().unwrap_or_default()),
    });
    if let Some(ns) = &spec.node_selector {
        template["nodeSelector"] = json!(ns);
    }
    if let Some(t) = &spec.tolerations {
        template["tolerations"] = json!(t);
    }
    if let Some(rc) = &spec.runtime_class_name {
        template["runtimeClassName"] = json!(rc);
    }
    json!({
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "Workload",
        "metadata": {
            "name": workload_name(run),
            "namespace": run.metadata.namespace,
            "labels": {
                JOB_UID_LABEL: run.metadata.uid,
                LABEL_RUN: run.metadata.name,
            },
            "ownerReferences": [build::owner_ref(run)],
        },
        "spec": {
            "queueName": queue,
            "podSets": [{"name": "main", "count": 1, "template": {"spec": template}}],
        },
    })
}

fn condition<'a>(wl: &'a Value, type_: &str) -> Option<&'a Value> {
    wl["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn is_true(wl: &Value, type_: &str) -> bool {
    condition(wl, type_).is_some_and(|c| c["status"] == "True")
}

/// Where a Workload stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Admitted; the flavors assigned to the pod set (names).
    Admitted(Vec<String>),
    /// Not (or no longer) admitted: Kueue's message.
    Waiting(String),
}

/// Reads a Workload's admission from its status (`Admitted` True and not `Evicted`). Pure.
pub fn admission_of(wl: &Value) -> Admission {
    if is_true(wl, "Admitted") && !is_true(wl, "Evicted") && !is_true(wl, "Finished") {
        let mut flavors: Vec<String> = wl["status"]["admission"]["podSetAssignments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["flavors"].as_object())
            .flat_map(|f| f.values().filter_map(Value::as_str).map(str::to_string))
            .collect();
        flavors.sort();
        flavors.dedup();
        return Admission::Admitted(flavors);
    }
    let message = ["Evicted", "QuotaReserved", "Admitted"]
        .iter()
        .filter_map(|t| condition(wl, t))
        .find(|c| c["status"] != "True" || c["type"] == "Evicted")
        .and_then(|c| c["message"].as_str())
        .unwrap_or("waiting for Kueue to reserve quota");
    Admission::Waiting(message.to_string())
}

/// What a run waiting for Kueue says in its first pass, when its Workload was just created.
pub const CREATED_MESSAGE: &str = "waiting for Kueue to reserve quota";

/// Reads the admission of the run's Workload; `None` when there is no Workload yet.
///
/// # Errors
/// API errors (a missing Kueue CRD shows as a 404 here).
pub async fn admission(ctx: &Context, run: &AgentRun) -> Result<Option<Admission>> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &workload_resource());
    match api.get_opt(&workload_name(run)).await? {
        Some(wl) => Ok(Some(admission_of(&serde_json::to_value(&wl)?))),
        None => Ok(None),
    }
}

/// Creates the run's Workload for `pod` in LocalQueue `queue` (one that exists already, made
/// by a concurrent pass, is fine).
///
/// # Errors
/// API errors.
pub async fn create_workload(ctx: &Context, run: &AgentRun, queue: &str, pod: &Pod) -> Result<()> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &workload_resource());
    let obj: DynamicObject = serde_json::from_value(build_workload(run, queue, pod))?;
    let pp = PostParams {
        field_manager: Some(MANAGER_AGENTRUN.into()),
        ..Default::default()
    };
    match api.create(&pp, &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The node labels and tolerations of the flavors Kueue admitted a Workload to
/// (`ResourceFlavor.spec.{nodeLabels,tolerations}`), in the flavors' order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Placement {
    /// Node labels the pod must select.
    pub node_labels: BTreeMap<String, String>,
    /// Tolerations the pod gets.
    pub tolerations: Vec<Toleration>,
}

/// Reads the ResourceFlavors named `flavors` (a missing one adds nothing).
///
/// # Errors
/// API errors reading a ResourceFlavor.
pub async fn placement(ctx: &Context, flavors: &[String]) -> Result<Placement> {
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &flavor_resource());
    let mut out = Placement::default();
    for f in flavors {
        let Some(flavor) = api.get_opt(f).await? else { continue };
        let fs = &flavor.data["spec"];
        if let Some(labels) = fs["nodeLabels"].as_object() {
            for (k, v) in labels {
                if let Some(v) = v.as_str() {
                    out.node_labels.insert(k.clone(), v.to_string());
                }
            }
        }
        if let Ok(tols) = serde_json::from_value::<Vec<Toleration>>(fs["tolerations"].clone()) {
            out.tolerations.extend(tols);
        }
    }
    Ok(out)
}

/// Puts `placement`'s node labels and tolerations on the pod. Pure.
pub fn apply_placement(placement: &Placement, pod: &mut Pod) {
    let spec: &mut PodSpec = pod.spec.get_or_insert_with(Default::default);
    if !placement.node_labels.is_empty() {
        let sel = spec.node_selector.get_or_insert_with(BTreeMap::new);
        sel.extend(placement.node_labels.clone());
    }
    if !placement.tolerations.is_empty() {
        spec.tolerations
            .get_or_insert_with(Vec::new)
            .extend(placement.tolerations.clone());
    }
}

/// Marks the run's Workload `Finished` (releasing its quota) and lets it go (removes Kueue's
/// finalizer). Idempotent; a missing Workload is fine.
///
/// # Errors
/// API errors.
pub async fn finish(ctx: &Arc<Context>, run: &AgentRun, succeeded: bool, message: &str) -> Result<()> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &workload_resource());
    let name = workload_name(run);
    let Some(wl) = api.get_opt(&name).await? else {
        return Ok(());
    };
    let value = serde_json::to_value(&wl)?;
    if !is_true(&value, "Finished") {
        // conditions is a map-list keyed by type: applying one entry leaves Kueue's alone.
        let patch = json!({
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "Workload",
            "status": {"conditions": [{
                "type": "Finished",
                "status": "True",
                "reason": if succeeded { "Succeeded" } else { "Failed" },
                "message": paddock_crds::events::truncate(message, 1024),
                "observedGeneration": wl.metadata.generation,
                "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string(),
            }]},
        });
        api.patch_status(
            &name,
            &PatchParams::apply(MANAGER_AGENTRUN).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    }
    release_workload(&api, &wl).await
}

/// Removes Kueue's `resource-in-use` finalizer from `wl` (the job controller's duty once the
/// job finished or is gone; Kueue never does it for Workloads with an owner).
///
/// # Errors
/// API errors other than 404.
pub async fn release_workload(api: &Api<DynamicObject>, wl: &DynamicObject) -> Result<()> {
    let finalizers = wl.metadata.finalizers.clone().unwrap_or_default();
    if !finalizers.iter().any(|f| f == RESOURCE_IN_USE) {
        return Ok(());
    }
    let rest: Vec<&String> = finalizers.iter().filter(|f| *f != RESOURCE_IN_USE).collect();
    // Guarded by the resourceVersion: a list that changed under us is not overwritten (409;
    // the next pass retries).
    let patch = json!({"metadata": {"resourceVersion": wl.metadata.resource_version, "finalizers": rest}});
    let pp = PatchParams {
        field_manager: Some(MANAGER_AGENTRUN.into()),
        ..Default::default()
    };
    match api.patch(&wl.name_any(), &pp, &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reconciles one of Paddock's Workloads: once it is being deleted (its run was deleted, so
/// the garbage collector deletes it), lets it go by removing Kueue's finalizer, which Kueue
/// itself never removes from a Workload with an owner.
///
/// # Errors
/// API errors.
pub async fn reconcile_workload(
    wl: Arc<DynamicObject>,
    ctx: Arc<Context>,
) -> Result<kube::runtime::controller::Action> {
    if wl.metadata.deletion_timestamp.is_some() {
        let ns = wl.metadata.namespace.as_deref().unwrap_or_default();
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &workload_resource());
        release_workload(&api, &wl).await?;
    }
    Ok(kube::runtime::controller::Action::await_change())
}

/// Requeues a failed Workload reconcile after 5 s.
pub fn workload_error_policy(
    _wl: Arc<DynamicObject>,
    _error: &crate::error::Error,
    _ctx: Arc<Context>,
) -> kube::runtime::controller::Action {
    kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> AgentRun {
        let mut r = AgentRun::new(
            "r1",
            serde_json::from_value(
                json!({"repo": {"url": "https://x/r.git"}, "agent": {"name": "shell"}, "prompt": "secret plan"}),
            )
            .unwrap(),
        );
        r.metadata.namespace = Some("team".into());
        r.metadata.uid = Some("uid-1".into());
        r.metadata.labels = Some(BTreeMap::from([(QUEUE_LABEL.to_string(), "lq".to_string())]));
        r
    }

    #[test]
    fn workload_carries_resources_not_the_prompt() {
        let r = run();
        let pool: paddock_crds::RunnerPool = serde_json::from_value(json!({
            "apiVersion": "paddock.dev/v1alpha1", "kind": "RunnerPool", "metadata": {"name": "default", "namespace": "team"},
            "spec": {"template": {"image": "runner:1", "nodeSelector": {"pool": "agents"}}}})).unwrap();
        let pod = build::build_pod(&r, &pool, 1, "test-key").unwrap();
        assert_eq!(queue_name(&r), Some("lq"));
        let wl = build_workload(&r, "lq", &pod);
        assert_eq!(wl["metadata"]["name"], "agentrun-r1");
        assert_eq!(wl["metadata"]["labels"][JOB_UID_LABEL], "uid-1");
        assert_eq!(wl["metadata"]["ownerReferences"][0]["kind"], "AgentRun");
        assert_eq!(wl["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(wl["spec"]["queueName"], "lq");
        let ps = &wl["spec"]["podSets"][0];
        assert_eq!((ps["name"].as_str(), ps["count"].as_i64()), (Some("main"), Some(1)));
        let t = &ps["template"]["spec"];
        assert_eq!(t["containers"][0]["resources"]["requests"]["cpu"], "100m");
        assert_eq!(t["initContainers"][1]["name"], "gateway");
        assert_eq!(t["initContainers"][1]["restartPolicy"], "Always");
        assert_eq!(t["nodeSelector"]["pool"], "agents");
        assert!(
            !wl.to_string().contains("secret plan"),
            "no env, no prompt in the Workload"
        );
    }

    #[test]
    fn admission_is_read_from_kueues_conditions() {
        let pending = json!({"status": {"conditions": [
            {"type": "QuotaReserved", "status": "False", "reason": "Pending",
             "message": "couldn't assign flavors to pod set main: insufficient unused quota for cpu in flavor default, 500m more needed"}]}});
        assert_eq!(
            admission_of(&pending),
            Admission::Waiting(
                "couldn't assign flavors to pod set main: insufficient unused quota for cpu in flavor default, 500m more needed"
                    .into()
            )
        );
        assert_eq!(
            admission_of(&json!({})),
            Admission::Waiting("waiting for Kueue to reserve quota".into())
        );
        let admitted = json!({"status": {
            "admission": {"clusterQueue": "cq", "podSetAssignments": [{"name": "main", "flavors": {"cpu": "default", "memory": "default"}}]},
            "conditions": [{"type": "QuotaReserved", "status": "True"}, {"type": "Admitted", "status": "True"}]}});
        assert_eq!(admission_of(&admitted), Admission::Admitted(vec!["default".into()]));
        let mut evicted = admitted.clone();
        evicted["status"]["conditions"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "Evicted", "status": "True", "message": "Preempted to accommodate a workload"}));
        assert_eq!(
            admission_of(&evicted),
            Admission::Waiting("Preempted to accommodate a workload".into())
        );
    }
}
