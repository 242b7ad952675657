//! Reading a run's verification (issue 19): the checks' pod, the stored patch, the protected
//! paths. [`after_end`] and [`held`] give [`super::decide`] what it records; they read (and
//! store the checks' log, [`verify::record_result`]), the decision and the pod's creation are the
//! plan's.

use super::decide::{HeldRead, VerifyRead};
use super::verify;
use crate::context::Context;
use crate::error::Result;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use paddock_crds::{AgentRun, AgentRunStatus, Reason, VerificationResult, VerificationStatus};
use std::sync::Arc;

/// Whether a verification started at `v.start_time` is past its deadline: the checks'
/// timeout, the clone allowance and two minutes for the pod to be scheduled.
fn verification_overdue(run: &AgentRun, v: &VerificationStatus, now: &Time) -> bool {
    let limit = (verify::timeout_secs(run) + verify::CLONE_ALLOWANCE_SECS + 120) as i64;
    v.start_time
        .as_ref()
        .is_some_and(|s| now.0.as_second() - s.0.as_second() > limit)
}

/// Records the verification pod's end into `v` when `pod` is the operator's (its spec is the
/// one built from `inputs`, [`verify::spec_mismatch`]), else fails `v`. `Ok(true)` when `v` is
/// final.
async fn read_verification_pod(
    run: &AgentRun,
    ctx: &Arc<Context>,
    pod: &Pod,
    inputs: &verify::Inputs,
    v: &mut VerificationStatus,
    now: &Time,
) -> Result<bool> {
    if verify::outcome(pod).is_none() {
        return Ok(false);
    }
    match verify::runner_pod_for(ctx, run, v.attempt).await? {
        Ok(runner) => {
            let expected = verify::build_pod(run, runner, v.attempt, inputs);
            if let Some(why) = verify::spec_mismatch(pod, &expected) {
                v.result = VerificationResult::Error;
                v.reason = Reason::VerificationPodFailed.to_string();
                v.message = format!(
                    "pod {} is not the operator's verification pod: {why}",
                    verify::pod_name(run, v.attempt)
                );
                return Ok(true);
            }
        }
        // The pool is gone or its egress not ready: the expected spec cannot be rebuilt now.
        Err(_) if !verification_overdue(run, v, now) => return Ok(false),
        Err(why) => {
            v.result = VerificationResult::Error;
            v.reason = Reason::VerificationPodFailed.to_string();
            v.message = format!("the verification pod cannot be checked: {why}");
            return Ok(true);
        }
    }
    verify::record_result(ctx, run, pod, v, now).await
}

/// Checks `v`'s protected paths on the stored patch, which must be the gateway's (its digest);
/// `true` when that decided `v` (a protected path changed, or the patch was altered).
async fn protected_or_altered(
    run: &AgentRun,
    ctx: &Arc<Context>,
    patch_cm: Option<&str>,
    v: &mut VerificationStatus,
) -> Result<bool> {
    let text = match patch_cm {
        Some(cm) => match verify::read_patch(ctx, run, cm, v.patch_sha256.as_deref()).await? {
            Some(Ok(t)) => Some(t),
            Some(Err(_)) | None if v.patch_sha256.is_some() => {
                v.result = VerificationResult::Error;
                v.reason = Reason::PatchChanged.to_string();
                v.message = format!(
                    "ConfigMap {} does not hold the patch the pod gateway produced (changed or deleted since it was stored)",
                    patch_cm.unwrap_or_default()
                );
                return Ok(true);
            }
            _ => None,
        },
        None => None,
    };
    Ok(verify::check_protected(run, text.as_deref(), v))
}

/// The verification after the agent's pod ended, as it now stands: protected paths checked on
/// the stored patch, the checks' pod read (or to be created), its deadline. `v` is the run's
/// `status.verification`, `status` the run's status.
///
/// # Errors
/// Transient API errors.
pub async fn after_end(
    run: &AgentRun,
    ctx: &Arc<Context>,
    status: &AgentRunStatus,
    mut v: VerificationStatus,
    now: &Time,
) -> Result<VerifyRead> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let name = verify::pod_name(run, v.attempt);
    let patch_cm = v
        .patch_sha256
        .as_ref()
        .and_then(|_| status.result.as_ref().and_then(|r| r.patch_ref.clone()));
    let inputs = verify::Inputs {
        base: v.base_commit.clone(),
        commit: v.commit.clone(),
        patch_cm: patch_cm.clone(),
        patch_sha256: v.patch_sha256.clone(),
        refuse: None,
        diffstat: v.diffstat.clone(),
        usage: None,
    };
    let mut create_pod = None;
    let done = if protected_or_altered(run, ctx, patch_cm.as_deref(), &mut v).await? {
        true
    } else {
        match pods.get_opt(&name).await? {
            Some(p) => read_verification_pod(run, ctx, &p, &inputs, &mut v, now).await?,
            None if v.pod_name.is_some() => {
                v.result = VerificationResult::Error;
                v.reason = Reason::VerificationPodFailed.to_string();
                v.message = format!("the verification pod {name} disappeared before it ended");
                true
            }
            None => {
                if let Ok(runner) = verify::runner_pod_for(ctx, run, v.attempt).await? {
                    create_pod = Some(verify::build_pod(run, runner, v.attempt, &inputs));
                    v.pod_name = Some(name.clone());
                }
                false
            }
        }
    };
    let mut delete_pod = None;
    let done = done || {
        if verification_overdue(run, &v, now) {
            v.result = VerificationResult::Error;
            v.reason = Reason::VerificationTimedOut.to_string();
            v.message = format!("the verification did not end within {}s", verify::timeout_secs(run));
            delete_pod = Some(name);
            true
        } else {
            false
        }
    };
    Ok(VerifyRead {
        verification: v,
        done,
        create_pod,
        delete_pod,
    })
}

/// While a held push waits (issue 19): the result of the attempt's verification pod (created
/// by the log follower when the gateway asked to push). The commit it names, the base and the
/// patch digest come from the gateway's own log, and the pod counts only if its spec is the
/// operator's. `status` is the run's; `attempt` and `runner_pod` the current attempt's.
///
/// # Errors
/// Transient API errors.
pub async fn held(
    run: &AgentRun,
    ctx: &Arc<Context>,
    status: &AgentRunStatus,
    attempt: u32,
    runner_pod: &str,
    now: &Time,
) -> Result<HeldRead> {
    let nothing = HeldRead::default();
    let current = status.verification.clone().filter(|v| v.attempt == attempt);
    if current
        .as_ref()
        .is_some_and(|v| v.result != VerificationResult::Running)
    {
        return Ok(nothing);
    }
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let name = verify::pod_name(run, attempt);
    let Some(p) = pods.get_opt(&name).await? else {
        return Ok(nothing);
    };
    // Read the gateway's review only when there is something to record.
    if current.is_some() && verify::outcome(&p).is_none() {
        return Ok(nothing);
    }
    let Some((inputs, _)) = verify::held_inputs(ctx, run, runner_pod).await? else {
        return Ok(nothing);
    };
    // The log follower stores the gateway's patch when it reads the push request: until then
    // there is nothing to check the pod's result against (a deleted ConfigMap waits too, and
    // the push with it: nothing passes unchecked).
    if let Some(cm) = inputs.patch_cm.as_deref() {
        if verify::read_patch(ctx, run, cm, None).await?.is_none() {
            return Ok(nothing);
        }
    }
    let mut v = current.unwrap_or_else(|| verify::started(attempt, &inputs.base, Some(name.clone()), now.clone()));
    v.base_commit = inputs.base.clone();
    v.commit = inputs.commit.clone();
    v.diffstat = inputs.diffstat.clone();
    v.patch_sha256 = inputs.patch_sha256.clone();
    if !protected_or_altered(run, ctx, inputs.patch_cm.as_deref(), &mut v).await? {
        read_verification_pod(run, ctx, &p, &inputs, &mut v, now).await?;
    }
    Ok(HeldRead {
        verification: Some(v),
        usage: inputs.usage.clone(),
    })
}
