//! End-to-end: an AgentRunTrigger on a schedule (issue 20, docs/triggers.md). Every minute,
//! `concurrencyPolicy: Forbid`, and a run that takes longer than a minute: runs are created at
//! minute boundaries, never while the previous one still goes on, and the minute skipped is
//! counted. (The schedule arithmetic — missed times, deadlines, time zones, Replace — is
//! unit-tested on a clock the tests control, operator/src/controller/agentruntrigger/tests.rs.)

use anyhow::{bail, Result};
use paddock_crds::{AgentRun, AgentRunTrigger, Phase};
use paddock_e2e::{phase, GitRepo, TestNs};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn an_every_minute_schedule_with_forbid_never_overlaps_its_runs() -> Result<()> {
    let ns = TestNs::new("trigger").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool("default", None).await?;
    ns.apply::<AgentRunTrigger>(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRunTrigger", "metadata": {"name": "chores"},
        "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Forbid",
                 "runTemplate": {"metadata": {"labels": {"team": "e2e"}},
                                 "spec": {"repo": {"url": repo.url}, "agent": {"name": "shell"},
                                          "prompt": "sleep 75; date > chores.txt"}}},
    }))
    .await?;
    let triggers = ns.api::<AgentRunTrigger>();
    let runs = ns.api::<AgentRun>();
    let t0 = Instant::now();
    // Two runs: the second is created at the first minute boundary after the first ended.
    let list = loop {
        let mut list = runs
            .list(&kube::api::ListParams::default().labels("paddock.dev/trigger=chores"))
            .await?
            .items;
        list.sort_by_key(|r| r.metadata.creation_timestamp.clone().map(|t| t.0));
        if list.len() >= 2 {
            break list;
        }
        if t0.elapsed() > Duration::from_secs(300) {
            ns.dump().await;
            bail!(
                "after 300 s, {} run(s); trigger status {:?}",
                list.len(),
                triggers.get("chores").await?.status
            );
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    };
    let (first, second) = (&list[0], &list[1]);
    let first = ns
        .wait_finished(first.metadata.name.as_deref().unwrap(), Duration::from_secs(120))
        .await?;
    assert_eq!(phase(&first), Some(Phase::Succeeded), "{:?}", first.status);
    let ended = first.status.as_ref().unwrap().completion_time.clone().unwrap().0;
    let created = second.metadata.creation_timestamp.clone().unwrap().0;
    assert!(
        created >= ended,
        "run 2 created at {created}, before run 1 ended at {ended}"
    );
    // Each is named by its minute and says when it was due; the due times are minutes apart,
    // at least two (the minute while run 1 was going was skipped).
    let due = |r: &AgentRun| -> i64 {
        let at: k8s_openapi::jiff::Timestamp = r.metadata.annotations.as_ref().unwrap()["paddock.dev/scheduled-at"]
            .parse()
            .unwrap();
        assert_eq!(
            r.metadata.name.clone().unwrap(),
            format!("chores-{}", at.as_second() / 60)
        );
        assert_eq!(r.metadata.labels.as_ref().unwrap()["team"], "e2e");
        at.as_second()
    };
    let (d1, d2) = (due(&first), due(second));
    assert_eq!(d1 % 60, 0);
    assert!(d2 - d1 >= 120 && (d2 - d1) % 60 == 0, "due {d1} then {d2}");
    let st = triggers.get("chores").await?.status.unwrap();
    assert!(st.missed_schedules >= 1, "{st:?}");
    assert!(st.last_successful_time.is_some(), "{st:?}");
    ns.wait_events("chores", &["RunCreated", "SkippedSchedule"], Duration::from_secs(20))
        .await?;
    ns.cleanup().await;
    Ok(())
}
