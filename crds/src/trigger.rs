//! `AgentRunTrigger`: creates AgentRuns from a run template on a schedule (issue 20,
//! docs/triggers.md), with the semantics of a Kubernetes CronJob (`schedule`, `timeZone`,
//! `concurrencyPolicy`, `startingDeadlineSeconds`, `suspend`, history limits).

use crate::agentrunset::AgentRunTemplate;
use crate::condition::conditions_schema;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Label on a trigger's AgentRuns: the AgentRunTrigger's name.
pub const LABEL_TRIGGER: &str = "paddock.dev/trigger";
/// Annotation on a scheduled AgentRun: the time it was scheduled for (RFC 3339), as a
/// CronJob's Jobs carry `batch.kubernetes.io/cronjob-scheduled-timestamp`.
pub const ANNOTATION_SCHEDULED_AT: &str = "paddock.dev/scheduled-at";

/// Desired state of a trigger: when to create runs, and the run to create.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "paddock.dev",
    version = "v1alpha1",
    kind = "AgentRunTrigger",
    namespaced,
    status = "AgentRunTriggerStatus",
    shortname = "art",
    category = "paddock",
    doc = "Creates AgentRuns from a template on a schedule, as a CronJob creates Jobs, or from a forge's issue webhooks.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Webhook", type_ = "string", json_path = ".spec.webhook.provider", priority = 1),
    printcolumn(name = "TimeZone", type_ = "string", json_path = ".spec.timeZone", priority = 1),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(name = "Active", type_ = "integer", json_path = ".status.activeCount"),
    printcolumn(name = "Last Schedule", type_ = "date", json_path = ".status.lastScheduleTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 41").message("AgentRunTrigger names are at most 41 characters (a run is named <trigger>-<minutes since the epoch>)"),
)]
#[x_kube(
    validation = Rule::new("!has(self.runTemplate.spec.cancel) || !self.runTemplate.spec.cancel").message("spec.runTemplate.spec.cancel must not be set"),
    validation = Rule::new("has(self.schedule) != has(self.webhook)").message("set exactly one of spec.schedule and spec.webhook"),
    validation = Rule::new("!has(self.webhook) || has(self.runTemplate.spec.prompt)").message("a webhook trigger's runTemplate needs spec.prompt (its $(issue.title), $(issue.body), $(comment.body) are filled in from the delivery)"),
    validation = Rule::new("!has(self.schedule) || self.schedule.matches('^ *(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+) *$')").message("spec.schedule is five cron fields separated by spaces (minute hour day-of-month month day-of-week) or @yearly, @monthly, @weekly, @daily, @hourly"),
)]
#[serde(rename_all = "camelCase")]
pub struct AgentRunTriggerSpec {
    /// The schedule in cron format (five fields: minute, hour, day of month, month, day of
    /// week; `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly` too), as a CronJob's
    /// `spec.schedule`. Day of week 0 or 7 is Sunday. Exactly one of `schedule` and `webhook`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub schedule: Option<String>,
    /// Runs from a forge's issue events instead of a schedule: a label or a comment command
    /// (docs/triggers.md). The template's `$(issue.title)`, `$(issue.body)`, `$(issue.url)`,
    /// `$(issue.number)`, `$(comment.body)` and `$(sender)` are replaced in `spec.prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<crate::forge::WebhookSpec>,
    /// IANA time zone the schedule is read in (e.g. `Europe/Berlin`); default `UTC` (a
    /// CronJob's default is the controller's local zone; the operator's is UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,
    /// What to do when a run is due while an earlier one of this trigger is still going:
    /// `Allow` (default), `Forbid` (skip the new one) or `Replace` (cancel the earlier ones).
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// Seconds after its scheduled time a run may still start when it was missed (the
    /// operator was down, the trigger suspended); past it the time is skipped and counted in
    /// `status.missedSchedules`. Unset: no deadline. As a CronJob's field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub starting_deadline_seconds: Option<i64>,
    /// `true` stops creating runs (runs going on are left alone); times passed while
    /// suspended count as missed.
    #[serde(default)]
    pub suspend: bool,
    /// Succeeded runs kept (default 3); older ones are deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub successful_runs_history_limit: Option<u32>,
    /// Runs kept that ended otherwise (default 1); older ones are deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub failed_runs_history_limit: Option<u32>,
    /// The AgentRun each firing creates (like a CronJob's `jobTemplate`).
    pub run_template: AgentRunTemplate,
}

/// `spec.concurrencyPolicy`, as a CronJob's.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConcurrencyPolicy {
    /// Runs may overlap.
    #[default]
    Allow,
    /// A due run is skipped while an earlier one goes on.
    Forbid,
    /// The earlier runs still going are cancelled and the due one created.
    Replace,
}

/// Observed state of a trigger.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AgentRunTriggerStatus {
    /// Names of this trigger's runs still going.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<String>,
    /// How many (printer column).
    #[serde(default)]
    pub active_count: u32,
    /// The last time a run was due and handled (created, or skipped by `Forbid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When the last run that succeeded ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// The next time a run is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// Times skipped: past `startingDeadlineSeconds`, or by `Forbid`.
    #[serde(default)]
    pub missed_schedules: u64,
    /// `Ready` (False with reason `InvalidSchedule` or `InvalidTimeZone` when the schedule
    /// cannot be read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
