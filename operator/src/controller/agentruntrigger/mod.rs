//! The AgentRunTrigger controller (issue 20, docs/triggers.md): creates AgentRuns from a run
//! template on a cron schedule, with a CronJob's semantics — the most recent missed time runs
//! once (within `startingDeadlineSeconds`), `concurrencyPolicy` Allow/Forbid/Replace,
//! `suspend`, history limits. Reads, the pure [`decide`], then its effects and one status
//! apply. A run's name is `<trigger>-<scheduled time in minutes since the epoch>`, so a
//! restarted operator that handles the same time again creates nothing new (409).

pub mod issue;
pub mod runs;
pub mod schedule;
#[cfg(test)]
mod tests;

use crate::context::Context;
use crate::error::{Error, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use paddock_crds::condition::{set_condition, FALSE, TRUE};
use paddock_crds::trigger::{ANNOTATION_SCHEDULED_AT, LABEL_TRIGGER};
use paddock_crds::{AgentRun, AgentRunTrigger, AgentRunTriggerStatus, ConcurrencyPolicy, Phase};
use schedule::Schedule;
use std::sync::Arc;
use std::time::Duration;

/// Controller name used in metrics and logs.
pub const CONTROLLER: &str = "agentruntrigger";
/// Field manager of the trigger controller's writes.
pub const MANAGER_TRIGGER: &str = "paddock.dev/agentruntrigger";
/// Condition type: whether the schedule can be used.
pub const COND_READY: &str = "Ready";
/// Missed times counted per reconcile at most (as a CronJob stops counting at 100).
pub const MISSED_CAP: u64 = 100;

/// What one reconcile of a trigger does.
#[derive(Debug, Default)]
pub struct Plan {
    /// The status to write.
    pub status: AgentRunTriggerStatus,
    /// The run to create.
    pub create: Option<AgentRun>,
    /// Runs to cancel (`Replace`).
    pub cancel: Vec<String>,
    /// Ended runs past the history limits, to delete.
    pub delete: Vec<String>,
    /// Events on the trigger.
    pub events: Vec<(EventType, String, String)>,
    /// When to look again (the next due time), in seconds from now.
    pub requeue_secs: Option<u64>,
}

fn ts(secs: i64) -> Option<Time> {
    k8s_openapi::jiff::Timestamp::from_second(secs).ok().map(Time)
}

fn secs(t: &Time) -> i64 {
    t.0.as_second()
}

/// The run `trigger` creates for due time `due` (seconds): the template, label
/// `paddock.dev/trigger`, annotation `paddock.dev/scheduled-at`, owned by the trigger. Pure.
pub fn build_run(trigger: &AgentRunTrigger, due: i64) -> Option<AgentRun> {
    let name = trigger.metadata.name.as_deref()?;
    let at = ts(due)?.0.to_string();
    runs::owned_run(
        trigger,
        &format!("{name}-{}", due / 60),
        trigger.spec.run_template.spec.clone(),
        [(ANNOTATION_SCHEDULED_AT.to_string(), at)],
    )
}

fn run_phase(r: &AgentRun) -> Option<Phase> {
    r.status.as_ref().and_then(|s| s.phase)
}

/// Decides one reconcile of `trigger` (pure): `runs` are its runs (owned by it), `now` the
/// clock in seconds.
pub fn decide(trigger: &AgentRunTrigger, runs: &[AgentRun], now: i64) -> Plan {
    let spec = &trigger.spec;
    let old = trigger.status.clone().unwrap_or_default();
    let generation = trigger.metadata.generation;
    let mut plan = Plan::default();
    let mut st = AgentRunTriggerStatus {
        observed_generation: generation,
        ..old.clone()
    };
    let now_t = ts(now).unwrap_or(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    // Runs going on, the last success, history.
    let mut active: Vec<&AgentRun> = runs
        .iter()
        .filter(|r| !run_phase(r).is_some_and(Phase::is_terminal))
        .collect();
    active.sort_by_key(|r| r.metadata.name.clone());
    st.last_successful_time = runs
        .iter()
        .filter(|r| run_phase(r) == Some(Phase::Succeeded))
        .filter_map(|r| r.status.as_ref()?.completion_time.clone())
        .max_by_key(secs)
        .or(old.last_successful_time.clone());
    let mut ended: Vec<&AgentRun> = runs
        .iter()
        .filter(|r| run_phase(r).is_some_and(Phase::is_terminal))
        .collect();
    ended.sort_by_key(|r| std::cmp::Reverse(r.metadata.creation_timestamp.as_ref().map(secs).unwrap_or(0)));
    // A webhook run still to open its pull request or to comment on its issue is kept.
    ended.retain(|r| issue::comment_due(r).is_none() && crate::controller::agentrun::pullrequest::wanted(r).is_none());
    let (ok, failed): (Vec<&AgentRun>, Vec<&AgentRun>) =
        ended.into_iter().partition(|r| run_phase(r) == Some(Phase::Succeeded));
    let keep_ok = spec.successful_runs_history_limit.unwrap_or(3) as usize;
    let keep_failed = spec.failed_runs_history_limit.unwrap_or(1) as usize;
    plan.delete = ok
        .iter()
        .skip(keep_ok)
        .chain(failed.iter().skip(keep_failed))
        .filter_map(|r| r.metadata.name.clone())
        .collect();

    let Some(schedule_text) = spec.schedule.as_deref() else {
        // A webhook trigger: runs come from the receiver (crate::webhook); here only the
        // status and the history.
        finish_active(&mut st, &active);
        let (ns, name) = (
            trigger.metadata.namespace.as_deref().unwrap_or_default(),
            trigger.metadata.name.as_deref().unwrap_or_default(),
        );
        let provider = spec.webhook.as_ref().map(|w| w.provider.as_str()).unwrap_or_default();
        let msg = format!("receiving {provider} deliveries at /hooks/{ns}/{name}");
        set_condition(
            &mut st.conditions,
            COND_READY,
            TRUE,
            "Listening",
            &msg,
            generation,
            now_t,
        );
        st.next_schedule_time = None;
        plan.status = st;
        return plan;
    };
    let schedule = match Schedule::parse(schedule_text, spec.time_zone.as_deref()) {
        Ok(s) => s,
        Err(bad) => {
            set_condition(
                &mut st.conditions,
                COND_READY,
                FALSE,
                bad.reason,
                &bad.message,
                generation,
                now_t,
            );
            st.next_schedule_time = None;
            finish_active(&mut st, &active);
            plan.status = st;
            return plan;
        }
    };
    let earliest = old
        .last_schedule_time
        .as_ref()
        .or(trigger.metadata.creation_timestamp.as_ref())
        .map(secs)
        .unwrap_or(now);
    let mut replaced = false;
    if !spec.suspend {
        if let Some(due) = schedule.most_recent(earliest, now) {
            // Times before `due` that were never handled (the operator was down, or suspended).
            let skipped = schedule.count_between(earliest, due, MISSED_CAP);
            if skipped > 0 {
                st.missed_schedules += skipped;
                plan.events.push((
                    EventType::Warning,
                    "MissedSchedule".into(),
                    format!(
                        "{skipped}{} scheduled time(s) before {} were missed; only the most recent one is considered",
                        if skipped >= MISSED_CAP { "+" } else { "" },
                        ts(due).map(|t| t.0.to_string()).unwrap_or_default()
                    ),
                ));
            }
            let late = spec.starting_deadline_seconds.is_some_and(|d| now - due > d);
            let when = ts(due).map(|t| t.0.to_string()).unwrap_or_default();
            st.last_schedule_time = ts(due);
            if late {
                st.missed_schedules += 1;
                plan.events.push((
                    EventType::Warning,
                    "MissedSchedule".into(),
                    format!(
                        "the run due at {when} was not started: {}s late, past startingDeadlineSeconds {}",
                        now - due,
                        spec.starting_deadline_seconds.unwrap_or_default()
                    ),
                ));
            } else if spec.concurrency_policy == ConcurrencyPolicy::Forbid && !active.is_empty() {
                st.missed_schedules += 1;
                plan.events.push((
                    EventType::Normal,
                    "SkippedSchedule".into(),
                    format!(
                        "the run due at {when} was skipped: {} is still going (concurrencyPolicy Forbid)",
                        active
                            .iter()
                            .filter_map(|r| r.metadata.name.clone())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            } else if let Some(run) = build_run(trigger, due) {
                if spec.concurrency_policy == ConcurrencyPolicy::Replace && !active.is_empty() {
                    plan.cancel = active
                        .iter()
                        .filter(|r| !r.spec.cancel && r.metadata.name != run.metadata.name)
                        .filter_map(|r| r.metadata.name.clone())
                        .collect();
                    replaced = !plan.cancel.is_empty();
                    if replaced {
                        plan.events.push((
                            EventType::Normal,
                            "RunsReplaced".into(),
                            format!("cancelled {} (concurrencyPolicy Replace)", plan.cancel.join(", ")),
                        ));
                    }
                }
                let name = run.metadata.name.clone().unwrap_or_default();
                if !runs.iter().any(|r| r.metadata.name.as_deref() == Some(name.as_str())) {
                    plan.events.push((
                        EventType::Normal,
                        "RunCreated".into(),
                        format!("created AgentRun {name} for the time due at {when}"),
                    ));
                    plan.create = Some(run);
                }
            }
        }
    }
    finish_active(&mut st, &active);
    if let Some(c) = &plan.create {
        let name = c.metadata.name.clone().unwrap_or_default();
        if !st.active.contains(&name) {
            st.active.push(name);
        }
    }
    if replaced {
        st.active.retain(|a| !plan.cancel.contains(a));
    }
    st.active_count = st.active.len() as u32;
    let next = schedule.next_after(now.max(st.last_schedule_time.as_ref().map(secs).unwrap_or(now)));
    st.next_schedule_time = next.and_then(ts);
    let msg = match (&st.next_schedule_time, spec.suspend) {
        (_, true) => "suspended (spec.suspend)".to_string(),
        (Some(n), false) => format!("next run due at {}", n.0),
        (None, false) => "the schedule has no time left".to_string(),
    };
    let reason = if spec.suspend { "Suspended" } else { "Scheduled" };
    // The condition's time moves only when it flips; its message names the next time.
    set_condition(&mut st.conditions, COND_READY, TRUE, reason, &msg, generation, now_t);
    plan.requeue_secs = next.filter(|_| !spec.suspend).map(|n| (n - now).max(1) as u64 + 1);
    plan.status = st;
    plan
}

fn finish_active(st: &mut AgentRunTriggerStatus, active: &[&AgentRun]) {
    st.active = active.iter().filter_map(|r| r.metadata.name.clone()).collect();
    st.active_count = st.active.len() as u32;
}

/// Reconciles one trigger.
///
/// # Errors
/// Transient API errors (requeued by [`error_policy`]).
#[tracing::instrument(
    name = "reconcile",
    skip_all,
    err(Display),
    fields(
        controller = CONTROLLER,
        namespace = trigger.metadata.namespace.as_deref().unwrap_or_default(),
        name = trigger.metadata.name.as_deref().unwrap_or_default(),
    )
)]
pub async fn reconcile(trigger: Arc<AgentRunTrigger>, ctx: Arc<Context>) -> Result<Action> {
    let (_timer, ns, name) = super::begin_reconcile(&ctx, CONTROLLER, &trigger.metadata)?;
    if trigger.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let runs_api: Api<AgentRun> = Api::namespaced(ctx.client.clone(), &ns);
    let runs: Vec<AgentRun> = runs_api
        .list(&ListParams::default().labels(&format!("{LABEL_TRIGGER}={name}")))
        .await?
        .items
        .into_iter()
        .filter(|r| issue::owned_by(r, &trigger))
        .collect();
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let mut plan = decide(&trigger, &runs, now);
    if let Some(hook) = &trigger.spec.webhook {
        // Say on the trigger when no delivery can be verified (the receiver refuses them all).
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(ctx.client.clone(), &ns);
        let has_key = secrets
            .get_opt(&hook.secret_ref.name)
            .await?
            .and_then(|s| s.data)
            .is_some_and(|d| d.get("secret").is_some_and(|v| !v.0.is_empty()));
        if !has_key {
            let msg = format!(
                "Secret {} does not exist or has no key secret: every delivery is refused",
                hook.secret_ref.name
            );
            let now_t = ts(now).unwrap_or(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
            set_condition(
                &mut plan.status.conditions,
                COND_READY,
                FALSE,
                "WebhookSecretMissing",
                &msg,
                trigger.metadata.generation,
                now_t,
            );
            plan.requeue_secs = Some(30);
        }
    }
    for run in &plan.cancel {
        super::cancel_run(&runs_api, run).await?;
    }
    if let Some(run) = &plan.create {
        super::create_owned_run(&ctx, trigger.as_ref(), &runs_api, run).await?;
    }
    for run in &plan.delete {
        match runs_api.delete(run, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if plan.status != trigger.status.clone().unwrap_or_default() {
        let api: Api<AgentRunTrigger> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = serde_json::json!({
            "apiVersion": "paddock.dev/v1alpha1",
            "kind": "AgentRunTrigger",
            "status": plan.status,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(MANAGER_TRIGGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    }
    for (t, reason, note) in plan.events {
        ctx.publish(trigger.as_ref(), t, &reason, note).await;
    }
    issue::comment_ended_runs(&ctx, &trigger, &runs).await;
    Ok(match plan.requeue_secs {
        Some(s) => Action::requeue(Duration::from_secs(s.min(3_600))),
        None => Action::requeue(Duration::from_secs(3_600)),
    })
}

/// Counts a failed reconcile and requeues it ([`super::requeue_failed`]).
pub fn error_policy(_t: Arc<AgentRunTrigger>, error: &Error, ctx: Arc<Context>) -> Action {
    super::requeue_failed(&ctx, CONTROLLER, error)
}
