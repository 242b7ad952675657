//! The RunMessage controller: hands a human's message to the run's pod and records its delivery.
//!
//! A message for a running Claude Code run is signed with the operator's verdict key (for the
//! run's UID, the attempt, `msg-<uid>` and the digest of sender and text) and merged into the
//! pod's annotations as `message.paddock.dev/<uid>` ([`paddock_crds::verdict::PodMessage`]); the
//! runner in the pod checks the signature (a namespace `edit` user may annotate pods), writes
//! the message into the CLI's open input as a user turn, and prints `message_delivered`, which
//! the run's log follower hands here ([`crate::inflight::Deliveries`]). That report is
//! agent-reported (the runner shares the agent's container) and the status says so.
//!
//! States: `Pending` (`WaitingForRun` until the run has a pod, then `SentToPod`), `Delivered`,
//! or `Refused` (`RunNotFound`, `RunFinished`, `NotSupported`, `TooManyMessages`). The decision is the pure
//! [`decide`]; [`reconcile`] does the reads and writes.

use crate::context::Context;
use crate::error::{Error, Result, Stage};
use crate::inflight::Delivery;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::Resource;
use paddock_crds::condition::{set_condition, FALSE, TRUE, UNKNOWN};
use paddock_crds::verdict::{PodMessage, Subject, MESSAGE_PREFIX};
use paddock_crds::{AgentRun, MessageState, Phase, RunMessage, RunMessageStatus, COND_DELIVERED};
use std::sync::Arc;
use std::time::Duration;

/// Controller name used in metrics and logs.
pub const CONTROLLER: &str = "runmessage";
/// Field manager of a message's status.
pub const MANAGER_MESSAGE: &str = "paddock.dev/runmessage";
/// How long a message waits for a run of its name to appear (GitOps may apply the message
/// first) before it is refused with `RunNotFound`, in seconds.
pub const RUN_WAIT_SECS: i64 = 60;
/// How often a message sent to a pod looks for the runner's delivery report.
pub const DELIVERY_RECHECK: Duration = Duration::from_secs(2);
/// How often a message waiting for its run's pod looks again (AgentRun changes wake it
/// sooner).
pub const RUN_RECHECK: Duration = Duration::from_secs(10);
/// Most messages one pod holds at once (delivered ones are removed from it); later ones are
/// refused with reason `TooManyMessages`.
pub const MAX_MESSAGES_PER_POD: usize = 32;
/// Most bytes of message annotations one pod holds at once (of the 256 KiB the API server
/// allows for all of a pod's annotations, which also carry verdicts and a warm pod's claim).
pub const MAX_MESSAGE_BYTES_PER_POD: usize = 64 * 1024;

/// The messages a run's pod holds besides the one being decided: how many, and their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OnPod {
    /// Other `message.paddock.dev/*` annotations.
    pub count: usize,
    /// Their keys' and values' bytes.
    pub bytes: usize,
}

/// What one pass does with a message. Pure output of [`decide`].
#[derive(Debug, Clone, PartialEq)]
pub struct MessagePlan {
    /// The status to write (written only when it differs from the current one).
    pub status: RunMessageStatus,
    /// Hand the message to this pod (`(pod name, attempt)`) before the status write.
    pub send_to: Option<(String, u32)>,
    /// An Event to publish on the run (delivered) or on the message (refused):
    /// `(on the run?, type, reason, note)`.
    pub event: Option<(bool, EventType, &'static str, String)>,
    /// When to look again.
    pub requeue: Option<Duration>,
}

/// Who may message `run`: `None` when anyone RBAC lets create a RunMessage may; else the user
/// names listed as approvers of its `beforeStart` and `plan` reviews. A message is an
/// instruction like the prompt, so on a run whose prompt or plan a human reviews, only the
/// reviewers (listed by name: the operator cannot see group membership) may add to it; a review
/// that lists no approvers lets anyone approve, and so lets anyone message. Pure.
pub fn allowed_senders(run: &AgentRun) -> Option<Vec<String>> {
    let approvals = run.spec.approvals.as_ref()?;
    let reviews: Vec<&paddock_crds::GatePolicy> = [approvals.before_start.as_ref(), approvals.plan.as_ref()]
        .into_iter()
        .flatten()
        .collect();
    if reviews.is_empty()
        || reviews
            .iter()
            .any(|p| p.approvers.users.is_empty() && p.approvers.groups.is_empty())
    {
        return None;
    }
    Some(reviews.iter().flat_map(|p| p.approvers.users.clone()).collect())
}

/// Decides what to do with `msg`, for `run` (its AgentRun, `None` when none exists),
/// `delivery` (the report of the run's runner that it delivered this message, if one was read),
/// `on_pod` (the other messages the run's pod holds), at `now`. A report counts only for the
/// attempt whose pod the message was handed to. Pure.
pub fn decide(
    msg: &RunMessage,
    run: Option<&AgentRun>,
    delivery: Option<&Delivery>,
    on_pod: OnPod,
    now: &Time,
) -> MessagePlan {
    let old = msg.status.clone().unwrap_or_default();
    let mut st = RunMessageStatus {
        observed_generation: msg.metadata.generation,
        ..old.clone()
    };
    let generation = msg.metadata.generation;
    let mut plan = MessagePlan {
        status: st.clone(),
        send_to: None,
        event: None,
        requeue: None,
    };
    let set = |st: &mut RunMessageStatus, state: MessageState, status: &str, reason: &str, message: &str| {
        st.state = Some(state);
        set_condition(
            &mut st.conditions,
            COND_DELIVERED,
            status,
            reason,
            message,
            generation,
            now.clone(),
        );
    };
    let run_name = &msg.spec.run_ref.name;
    let Some(run) = run else {
        let age = msg
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| now.0.as_second() - t.0.as_second());
        if age < RUN_WAIT_SECS {
            set(
                &mut st,
                MessageState::Pending,
                UNKNOWN,
                "WaitingForRun",
                &format!("no AgentRun {run_name} yet"),
            );
            plan.requeue = Some(RUN_RECHECK);
        } else {
            let why = format!("no AgentRun {run_name} in this namespace");
            set(&mut st, MessageState::Refused, FALSE, "RunNotFound", &why);
            plan.event = Some((false, EventType::Warning, "MessageRefused", why));
        }
        plan.status = st;
        return plan;
    };
    let rs = run.status.clone().unwrap_or_default();
    let attempt = rs.attempt.unwrap_or(1);
    let was_sent = st
        .conditions
        .iter()
        .any(|c| c.type_ == COND_DELIVERED && c.reason == "SentToPod");
    let sent_attempt = st.attempt;
    let sent_to = |a: u32| sent_attempt == Some(a) && was_sent;
    if let Some(d) = delivery.filter(|d| sent_to(d.attempt)) {
        st.delivered_at = Some(d.at.clone());
        st.turn = Some(d.turn);
        st.attempt = Some(d.attempt);
        let how = format!(
            "{}'s message reached the agent at turn {} of attempt {} (reported by the runner in the agent's container)",
            msg.spec.sender, d.turn, d.attempt
        );
        set(&mut st, MessageState::Delivered, TRUE, "Delivered", &how);
        plan.event = Some((
            true,
            EventType::Normal,
            "MessageDelivered",
            format!("RunMessage {}: {how}", msg.metadata.name.as_deref().unwrap_or_default()),
        ));
        plan.status = st;
        return plan;
    }
    if let Some(allowed) = allowed_senders(run).filter(|a| !a.contains(&msg.spec.sender)) {
        let why = format!(
            "AgentRun {run_name}'s prompt or plan is reviewed, and only its reviewers listed by name ({}) may message it",
            if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") }
        );
        set(&mut st, MessageState::Refused, FALSE, "SenderNotAllowed", &why);
        plan.event = Some((false, EventType::Warning, "MessageRefused", why));
        plan.status = st;
        return plan;
    }
    if !paddock_crds::takes_live_messages(&run.spec.agent.name) {
        let why = format!(
            "agent {} takes no input while it runs; only claude-code does (docs/conversing.md). Start a new run with spec.resumeFrom instead",
            run.spec.agent.name.as_str()
        );
        set(&mut st, MessageState::Refused, FALSE, "NotSupported", &why);
        plan.event = Some((false, EventType::Warning, "MessageRefused", why));
        plan.status = st;
        return plan;
    }
    let phase = rs.phase.unwrap_or(Phase::Pending);
    if phase.is_terminal() {
        let why = format!(
            "AgentRun {run_name} ended ({}) before the agent took the message",
            phase.as_str()
        );
        set(&mut st, MessageState::Refused, FALSE, "RunFinished", &why);
        plan.event = Some((false, EventType::Warning, "MessageRefused", why));
        plan.status = st;
        return plan;
    }
    let pod = rs
        .pod_name
        .clone()
        .filter(|_| matches!(phase, Phase::Running | Phase::AwaitingApproval));
    match pod {
        None => {
            set(
                &mut st,
                MessageState::Pending,
                UNKNOWN,
                "WaitingForRun",
                &format!(
                    "AgentRun {run_name} is {}; the message goes to its agent once it runs",
                    phase.as_str()
                ),
            );
            plan.requeue = Some(RUN_RECHECK);
        }
        Some(pod) => {
            let sent = sent_to(attempt);
            let own = msg.spec.text.len() + msg.spec.sender.len() + 256;
            if !sent && (on_pod.count >= MAX_MESSAGES_PER_POD || on_pod.bytes + own > MAX_MESSAGE_BYTES_PER_POD) {
                let why = format!(
                    "pod {pod} already holds {} messages ({} bytes) the agent has not taken, the most it holds at once ({MAX_MESSAGES_PER_POD} messages, {MAX_MESSAGE_BYTES_PER_POD} bytes); send it again later",
                    on_pod.count, on_pod.bytes
                );
                set(&mut st, MessageState::Refused, FALSE, "TooManyMessages", &why);
                plan.event = Some((false, EventType::Warning, "MessageRefused", why));
                plan.status = st;
                return plan;
            }
            if !sent {
                plan.send_to = Some((pod.clone(), attempt));
            }
            st.attempt = Some(attempt);
            set(
                &mut st,
                MessageState::Pending,
                UNKNOWN,
                "SentToPod",
                &format!("handed to pod {pod}; waiting for the agent to take it"),
            );
            plan.requeue = Some(DELIVERY_RECHECK);
        }
    }
    plan.status = st;
    plan
}

/// The annotation `(key, value)` that hands `msg` to the pod of `run`'s `attempt`: signed by
/// `signer` for the run's UID and the attempt. `None` when the text cannot be signed (never:
/// the signed subject is a digest).
pub fn pod_annotation(
    msg: &RunMessage,
    run: &AgentRun,
    attempt: u32,
    signer: &paddock_crds::verdict::Signer,
) -> Option<(String, String)> {
    let uid = msg.metadata.uid.as_deref()?;
    let base = Subject {
        namespace: run.metadata.namespace.as_deref().unwrap_or_default(),
        run: run.metadata.name.as_deref().unwrap_or_default(),
        run_uid: run.metadata.uid.as_deref().unwrap_or_default(),
        attempt,
        id: "",
        subject: "",
    };
    // Delivery order: creation time (seconds), then the runner's order of keys.
    let seq = msg
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(0, |t| t.0.as_second().clamp(0, u32::MAX as i64) as u32);
    let m = PodMessage::signed(signer, &base, uid, seq, &msg.spec.sender, &msg.spec.text)?;
    Some((format!("{MESSAGE_PREFIX}{uid}"), serde_json::to_string(&m).ok()?))
}

/// The ownerReference that ties a message to its run (garbage collected with it).
fn owner_of(run: &AgentRun) -> Option<OwnerReference> {
    let mut o = run.controller_owner_ref(&())?;
    o.controller = Some(false);
    o.block_owner_deletion = Some(false);
    Some(o)
}

/// Reconciles one message.
///
/// # Errors
/// API errors reading the run or writing the pod's annotation, the owner reference or the
/// status.
#[tracing::instrument(
    name = "reconcile",
    skip_all,
    err(Display),
    fields(
        controller = CONTROLLER,
        namespace = msg.metadata.namespace.as_deref().unwrap_or_default(),
        name = msg.metadata.name.as_deref().unwrap_or_default(),
    )
)]
pub async fn reconcile(msg: Arc<RunMessage>, ctx: Arc<Context>) -> Result<Action> {
    let (_timer, ns, name) = super::begin_reconcile(&ctx, CONTROLLER, &msg.metadata)?;
    let uid = msg.metadata.uid.clone().unwrap_or_default();
    if msg
        .status
        .as_ref()
        .and_then(|s| s.state)
        .is_some_and(|s| s != MessageState::Pending)
    {
        return Ok(Action::await_change());
    }
    let run_name = msg.spec.run_ref.name.as_str();
    let run = match ctx.runs.get(&ObjectRef::<AgentRun>::new(run_name).within(&ns)) {
        Some(r) => Some((*r).clone()),
        None => Api::<AgentRun>::namespaced(ctx.client.clone(), &ns)
            .get_opt(run_name)
            .await
            .map_err(|e| Error::from(e).at(Stage::Read, format!("AgentRun {run_name}")))?,
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let run_uid = run.as_ref().and_then(|r| r.metadata.uid.clone()).unwrap_or_default();
    let mut delivery = ctx.deliveries.get(&run_uid, &uid);
    // A run that ended may have delivered it after the follower's last read (or before an
    // operator restart): its stored log says so, before the message is refused for good.
    let ended = run
        .as_ref()
        .and_then(|r| r.status.as_ref()?.phase)
        .is_some_and(Phase::is_terminal);
    if delivery.is_none() && ended {
        if let Some(run) = &run {
            delivery = delivery_in_log(&ctx, run, &uid, &now).await?;
        }
    }
    // Messages the run's pod holds already (from the pod cache; none known without it).
    let own_key = format!("{MESSAGE_PREFIX}{uid}");
    let on_pod = run
        .as_ref()
        .and_then(|r| r.status.as_ref()?.pod_name.clone())
        .and_then(|pod| ctx.pods.as_ref()?.get(&ObjectRef::<Pod>::new(&pod).within(&ns)))
        .and_then(|p| p.metadata.annotations.clone())
        .map_or(OnPod::default(), |a| {
            a.iter()
                .filter(|(k, _)| k.starts_with(MESSAGE_PREFIX) && **k != own_key)
                .fold(OnPod::default(), |o, (k, v)| OnPod {
                    count: o.count + 1,
                    bytes: o.bytes + k.len() + v.len(),
                })
        });
    let plan = decide(&msg, run.as_ref(), delivery.as_ref(), on_pod, &now);
    let messages: Api<RunMessage> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(run) = &run {
        // Garbage-collected with its run.
        let owners = msg.metadata.owner_references.clone().unwrap_or_default();
        if let Some(o) = owner_of(run).filter(|o| !owners.iter().any(|x| x.uid == o.uid)) {
            let mut all = owners;
            all.push(o);
            let patch = serde_json::json!({"metadata": {"ownerReferences": all}});
            messages
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| Error::from(e).at(Stage::Write, "the RunMessage's ownerReference"))?;
        }
        if let Some((pod, attempt)) = &plan.send_to {
            if let Some((key, value)) = pod_annotation(&msg, run, *attempt, &ctx.signer) {
                let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
                // A merge patch adds this key and leaves every other annotation alone.
                let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
                pods.patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| Error::from(e).at(Stage::Write, format!("the message annotation of pod {pod}")))?;
            }
        }
    }
    if Some(&plan.status) != msg.status.as_ref() {
        let patch =
            serde_json::json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "RunMessage", "status": plan.status});
        messages
            .patch_status(
                &name,
                &PatchParams::apply(MANAGER_MESSAGE).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(|e| Error::from(e).at(Stage::Status, format!("RunMessage {name}")))?;
        if let Some((on_run, type_, reason, note)) = plan.event.clone() {
            match (&run, on_run) {
                (Some(run), true) => ctx.publish(run, type_, reason, note).await,
                _ => ctx.publish(msg.as_ref(), type_, reason, note).await,
            }
        }
    }
    if plan.status.state != Some(MessageState::Pending) {
        ctx.deliveries.forget(&run_uid, &uid);
        // The pod keeps room for later messages: this one is taken (or never will be).
        let pod = run.as_ref().and_then(|r| r.status.as_ref()?.pod_name.clone());
        if let (Some(pod), true) = (pod, plan.status.attempt.is_some()) {
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
            let patch = serde_json::json!({"metadata": {"annotations": {own_key: null}}});
            if let Err(e) = pods.patch(&pod, &PatchParams::default(), &Patch::Merge(&patch)).await {
                tracing::debug!(error = %e, pod, "could not remove a message annotation (the pod may be gone)");
            }
        }
    }
    Ok(plan.requeue.map_or_else(Action::await_change, Action::requeue))
}

/// The delivery of message `uid` that `run`'s stored event log (ConfigMap `<run>-log`) reports,
/// if any: the runner's `message_delivered` line, read at `now`, for the run's current attempt.
///
/// # Errors
/// API errors reading the ConfigMap (a missing one is no delivery).
async fn delivery_in_log(ctx: &Context, run: &AgentRun, uid: &str, now: &Time) -> Result<Option<Delivery>> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let name = super::agentrun::artifacts::log_configmap_name(run);
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let Some(cm) = cms
        .get_opt(&name)
        .await
        .map_err(|e| Error::from(e).at(Stage::Read, format!("ConfigMap {name}")))?
    else {
        return Ok(None);
    };
    let log = cm
        .data
        .and_then(|d| d.get(paddock_crds::artifacts::LOG_KEY).cloned())
        .unwrap_or_default();
    Ok(delivered_in(&log, uid).map(|turn| Delivery {
        turn,
        attempt: run.status.as_ref().and_then(|s| s.attempt).unwrap_or(1),
        at: now.clone(),
    }))
}

/// The turn at which the event log `log` (JSON lines) says message `uid` was delivered. Pure.
pub fn delivered_in(log: &str, uid: &str) -> Option<u32> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<paddock_crds::events::EventLine>(l).ok())
        .find_map(|e| match e.event {
            paddock_crds::events::RunnerEvent::MessageDelivered { id, turn } if id == uid => Some(turn),
            _ => None,
        })
}

/// The pending messages of `run` in `store`: an AgentRun change (it started, got a pod, ended)
/// wakes them.
pub fn messages_of(run: &AgentRun, store: &[Arc<RunMessage>]) -> Vec<ObjectRef<RunMessage>> {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let name = run.metadata.name.as_deref().unwrap_or_default();
    store
        .iter()
        .filter(|m| m.metadata.namespace.as_deref() == Some(ns) && m.spec.run_ref.name == name)
        .filter(|m| {
            m.status
                .as_ref()
                .and_then(|s| s.state)
                .is_none_or(|s| s == MessageState::Pending)
        })
        .map(|m| ObjectRef::from_obj(m.as_ref()))
        .collect()
}

/// Counts a failed reconcile and requeues it ([`super::requeue_failed`]).
pub fn error_policy(_msg: Arc<RunMessage>, error: &Error, ctx: Arc<Context>) -> Action {
    super::requeue_failed(&ctx, CONTROLLER, error)
}

#[cfg(test)]
mod tests;
