//! One controller per kind, each shaped the same way: reconcile (I/O at the edges), pure
//! builders and status functions, and an error policy.

pub mod agentrun;
pub mod agentrunset;
pub mod agentruntrigger;
pub mod approvalgate;
pub mod egress;
pub mod forge;
pub mod runmessage;
pub mod runnerpool;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::metrics::ReconcileTimer;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use paddock_crds::AgentRun;

/// The start of every reconcile pass: the pass is counted and timed for `controller` (the
/// timer records when dropped, at the end of the pass, whatever its result), and the object's
/// namespace and name are read. Bind the timer to a name, or it ends at once:
/// `let (_timer, ns, name) = begin_reconcile(&ctx, CONTROLLER, &obj.metadata)?;`
///
/// # Errors
/// [`Error::MissingField`], as [`namespace_and_name`].
pub fn begin_reconcile<'c>(
    ctx: &'c Context,
    controller: &str,
    meta: &ObjectMeta,
) -> Result<(ReconcileTimer<'c>, String, String)> {
    let timer = ctx.state.metrics.reconcile(controller);
    let (ns, name) = namespace_and_name(meta)?;
    Ok((timer, ns, name))
}

/// What a failed reconcile pass does, the same for every controller: counts it by its
/// [`Error::reason`] and requeues after a short backoff. (The error itself is logged once, with
/// the pass's span fields, by the reconcile's `#[instrument(err)]`.)
pub fn requeue_failed(ctx: &Context, controller: &str, error: &Error) -> Action {
    ctx.state.metrics.error(controller, error.reason());
    Action::requeue(error.retry_after())
}

/// `(namespace, name)` of a namespaced object as the API server sent it.
///
/// # Errors
/// [`Error::MissingField`] when either is unset (never for an object read from the API server).
pub fn namespace_and_name(meta: &ObjectMeta) -> Result<(String, String)> {
    let ns = meta
        .namespace
        .clone()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = meta.name.clone().ok_or(Error::MissingField("metadata.name"))?;
    Ok((ns, name))
}

/// Creates `run` (built by `owner`'s controller, which owns it). `Ok(true)` when created;
/// `Ok(false)` when a run of that name exists (409) or the API server refused the run the
/// template makes (400/422: a Warning Event `InvalidTemplate` on `owner` carries its message).
///
/// # Errors
/// Other API errors.
pub async fn create_owned_run<K>(ctx: &Context, owner: &K, api: &Api<AgentRun>, run: &AgentRun) -> Result<bool>
where
    K: kube::Resource<DynamicType = ()>,
{
    match api.create(&PostParams::default(), run).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(kube::Error::Api(e)) if e.code == 422 || e.code == 400 => {
            let name = run.metadata.name.clone().unwrap_or_default();
            let note = format!("AgentRun {name} was refused: {}", e.message);
            ctx.publish(owner, EventType::Warning, "InvalidTemplate", note).await;
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Sets `spec.cancel: true` on run `name` (a merge patch); a run already gone is fine.
///
/// # Errors
/// Other API errors.
pub async fn cancel_run(api: &Api<AgentRun>, name: &str) -> Result<()> {
    let patch = serde_json::json!({"spec": {"cancel": true}});
    match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
