//! The trigger's schedule arithmetic and its decisions, on a clock the tests control.

use super::schedule::Schedule;
use super::{decide, COND_READY};
use paddock_crds::{AgentRun, AgentRunTrigger};
use serde_json::json;

/// 2027-01-15T08:00:00Z, a Friday.
const T0: i64 = 1_800_000_000;
const MIN: i64 = 60;

fn at(s: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(s).unwrap().to_string()
}

#[test]
fn schedules_read_as_a_cronjob_reads_them() {
    let every5 = Schedule::parse("*/5 * * * *", None).unwrap();
    assert_eq!(every5.next_after(T0), Some(T0 + 5 * MIN));
    assert_eq!(every5.next_after(T0 + 1), Some(T0 + 5 * MIN));
    assert_eq!(every5.most_recent(T0 - 1, T0 + 12 * MIN), Some(T0 + 10 * MIN));
    assert_eq!(
        every5.most_recent(T0 + 10 * MIN, T0 + 12 * MIN),
        None,
        "already handled"
    );
    assert_eq!(every5.count_between(T0 - 1, T0 + 10 * MIN, 100), 2, "08:00 and 08:05");
    // Day of week 0 and 7 are Sunday; T0 is a Friday, so the next Sunday midnight is in 2 days.
    for dow in ["0", "7", "SUN"] {
        let s = Schedule::parse(&format!("0 0 * * {dow}"), None).unwrap();
        assert_eq!(s.next_after(T0), Some(T0 - 8 * 3600 + 2 * 86_400), "{dow}");
    }
    assert_eq!(
        Schedule::parse("@daily", None).unwrap().next_after(T0),
        Some(T0 + 16 * 3600)
    );
    assert_eq!(
        Schedule::parse("@midnight", None).unwrap().next_after(T0),
        Some(T0 + 16 * 3600)
    );
    // In Berlin (UTC+1 in January) 09:00 local is 08:00 UTC.
    let berlin = Schedule::parse("0 9 * * *", Some("Europe/Berlin")).unwrap();
    assert_eq!(berlin.next_after(T0 - 1), Some(T0));
    // A yearly schedule found far back, with bounded work.
    let yearly = Schedule::parse("@yearly", None).unwrap();
    let jan1 = T0 - 14 * 86_400 - 8 * 3600;
    assert_eq!(yearly.most_recent(0, T0), Some(jan1));
    // Every minute over ten years back: the most recent is found without walking them all.
    let every = Schedule::parse("* * * * *", None).unwrap();
    assert_eq!(every.most_recent(T0 - 10 * 365 * 86_400, T0 + 30), Some(T0));
    assert_eq!(every.count_between(T0 - 10 * 365 * 86_400, T0, 100), 100, "capped");
}

#[test]
fn bad_schedules_and_zones_are_named() {
    for bad in ["", "* * * *", "0 * * * * *", "61 * * * *", "@sometimes", "* * * * * *"] {
        let e = Schedule::parse(bad, None).unwrap_err();
        assert_eq!(e.reason, "InvalidSchedule", "{bad:?}: {e:?}");
    }
    let e = Schedule::parse("* * * * *", Some("Mars/Olympus")).unwrap_err();
    assert_eq!(e.reason, "InvalidTimeZone");
}

fn trigger(extra: serde_json::Value, status: serde_json::Value) -> AgentRunTrigger {
    let mut spec = json!({
        "schedule": "* * * * *",
        "runTemplate": {"metadata": {"labels": {"team": "x"}},
                        "spec": {"repo": {"url": "http://git/r.git"}, "agent": {"name": "shell"}, "prompt": "chores"}},
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRunTrigger",
        "metadata": {"name": "nightly", "namespace": "ns", "uid": "t-uid", "generation": 1,
                     "creationTimestamp": at(T0 - 30)},
        "spec": spec, "status": status,
    }))
    .unwrap()
}

fn run(name: &str, phase: &str, created: i64, completed: Option<i64>) -> AgentRun {
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": at(created)},
        "spec": {"repo": {"url": "http://git/r.git"}, "agent": {"name": "shell"}, "prompt": "chores"},
        "status": {"phase": phase, "completionTime": completed.map(at)},
    }))
    .unwrap()
}

fn reasons(p: &super::Plan) -> Vec<String> {
    p.events.iter().map(|e| e.1.clone()).collect()
}

#[test]
fn a_due_time_creates_one_run_named_by_its_minute() {
    let t = trigger(json!({}), json!({}));
    assert!(decide(&t, &[], T0 - 10).create.is_none(), "nothing due yet");
    let plan = decide(&t, &[], T0 + 5);
    let run = plan.create.clone().expect("a run");
    assert_eq!(
        run.metadata.name.as_deref(),
        Some(format!("nightly-{}", T0 / 60).as_str())
    );
    assert_eq!(run.metadata.labels.as_ref().unwrap()["paddock.dev/trigger"], "nightly");
    assert_eq!(run.metadata.labels.as_ref().unwrap()["team"], "x");
    assert_eq!(
        run.metadata.annotations.as_ref().unwrap()["paddock.dev/scheduled-at"],
        at(T0)
    );
    let owner = &run.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("AgentRunTrigger", Some(true)));
    assert_eq!(
        plan.status.last_schedule_time.as_ref().map(|t| t.0.as_second()),
        Some(T0)
    );
    assert_eq!(
        plan.status.next_schedule_time.as_ref().map(|t| t.0.as_second()),
        Some(T0 + MIN)
    );
    assert_eq!(plan.status.active_count, 1);
    assert_eq!(reasons(&plan), ["RunCreated"]);
    assert_eq!(plan.requeue_secs, Some(56));
    // The same time seen again (the run exists; a restarted operator): nothing new.
    let mut again = t.clone();
    again.status = Some(plan.status.clone());
    let name = run.metadata.name.clone().unwrap();
    let p2 = decide(&again, std::slice::from_ref(&run), T0 + 20);
    assert!(p2.create.is_none() && p2.events.is_empty());
    let p3 = decide(&t, &[run], T0 + 20);
    assert!(p3.create.is_none(), "the run of that minute exists already ({name})");
}

#[test]
fn forbid_skips_while_a_run_goes_on_and_replace_cancels_it() {
    let status = json!({"lastScheduleTime": at(T0)});
    let going = run(&format!("nightly-{}", T0 / 60), "Running", T0, None);
    let forbid = trigger(json!({"concurrencyPolicy": "Forbid"}), status.clone());
    let plan = decide(&forbid, std::slice::from_ref(&going), T0 + MIN + 2);
    assert!(plan.create.is_none());
    assert_eq!(plan.status.missed_schedules, 1);
    assert_eq!(reasons(&plan), ["SkippedSchedule"]);
    assert_eq!(
        plan.status.last_schedule_time.clone().unwrap().0.as_second(),
        T0 + MIN,
        "handled: not retried later"
    );
    // Once it ended, the next minute creates a run.
    let mut later = forbid.clone();
    later.status = Some(plan.status.clone());
    let done = run(&format!("nightly-{}", T0 / 60), "Succeeded", T0, Some(T0 + 100));
    let plan = decide(&later, &[done], T0 + 2 * MIN + 2);
    assert!(plan.create.is_some());
    assert_eq!(plan.status.last_successful_time.unwrap().0.as_second(), T0 + 100);

    let replace = trigger(json!({"concurrencyPolicy": "Replace"}), status.clone());
    let plan = decide(&replace, std::slice::from_ref(&going), T0 + MIN + 2);
    assert_eq!(plan.cancel, [going.metadata.name.clone().unwrap()]);
    assert!(plan.create.is_some());
    assert_eq!(reasons(&plan), ["RunsReplaced", "RunCreated"]);
    let allow = trigger(json!({}), status);
    let plan = decide(&allow, &[going], T0 + MIN + 2);
    assert!(plan.create.is_some() && plan.cancel.is_empty());
}

#[test]
fn missed_times_run_once_and_only_within_the_deadline() {
    // The operator was down for ten minutes: one run, for the most recent time; nine missed.
    let t = trigger(json!({}), json!({"lastScheduleTime": at(T0)}));
    let plan = decide(&t, &[], T0 + 10 * MIN + 30);
    assert_eq!(
        plan.create.clone().unwrap().metadata.name.unwrap(),
        format!("nightly-{}", (T0 + 10 * MIN) / 60)
    );
    assert_eq!(plan.status.missed_schedules, 9);
    assert_eq!(reasons(&plan), ["MissedSchedule", "RunCreated"]);
    // With startingDeadlineSeconds 20, 30 s late is too late.
    let t = trigger(
        json!({"startingDeadlineSeconds": 20}),
        json!({"lastScheduleTime": at(T0)}),
    );
    let plan = decide(&t, &[], T0 + 10 * MIN + 30);
    assert!(plan.create.is_none());
    assert_eq!(plan.status.missed_schedules, 10);
}

#[test]
fn suspend_history_and_bad_schedules() {
    let t = trigger(json!({"suspend": true}), json!({}));
    let plan = decide(&t, &[], T0 + 5 * MIN);
    assert!(plan.create.is_none());
    let ready = plan.status.conditions.iter().find(|c| c.type_ == COND_READY).unwrap();
    assert_eq!(ready.reason, "Suspended");
    // History: 3 succeeded and 1 failed kept by default, the oldest deleted.
    let runs: Vec<AgentRun> = (0..5)
        .map(|i| run(&format!("ok-{i}"), "Succeeded", T0 - 1000 + i * 10, Some(T0 - 900)))
        .chain((0..3).map(|i| run(&format!("bad-{i}"), "Failed", T0 - 1000 + i * 10, Some(T0 - 900))))
        .collect();
    let mut deleted = decide(&trigger(json!({}), json!({})), &runs, T0 - 10).delete;
    deleted.sort();
    assert_eq!(deleted, ["bad-0", "bad-1", "ok-0", "ok-1"]);
    let t = trigger(json!({"schedule": "* * * * * *"}), json!({}));
    let plan = decide(&t, &[], T0 + 5 * MIN);
    assert!(plan.create.is_none());
    let ready = plan.status.conditions.iter().find(|c| c.type_ == COND_READY).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSchedule")
    );
}
