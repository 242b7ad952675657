//! Table tests of the set's pure part: creation under `maxParallel`, every selection policy,
//! the Pick gate, cancellation, the set's end, and where a candidate stands for its push.

use super::decide::{build_run, decide, is_own_run, Plan, COND_SELECTED, COND_SUCCEEDED};
use super::{selection_for, Selection};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use paddock_crds::{AgentRun, AgentRunSet, ApprovalGate, GateStage, GateState, Phase, SetPhase};
use serde_json::json;
use std::collections::BTreeMap;

fn t(secs: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap())
}

/// Set `s` (uid `set-uid`) with candidates a, b, c and `extra` merged into its spec.
fn set(extra: serde_json::Value) -> AgentRunSet {
    let mut spec = json!({
        "template": {"metadata": {"labels": {"team": "x"}}, "spec": {
            "repo": {"url": "http://git/r.git"}, "agent": {"name": "shell"}, "prompt": "fix it",
            "output": {"push": true}, "verify": {"command": ["make", "test"], "protectedPaths": ["tests/**"]}}},
        "candidates": [
            {"name": "a", "agent": {"name": "claude-code", "model": "m1"}},
            {"name": "b", "agent": {"name": "codex"}},
            {"name": "c"},
        ],
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRunSet",
        "metadata": {"name": "s", "namespace": "ns", "uid": "set-uid", "generation": 1},
        "spec": spec,
    }))
    .unwrap()
}

/// Candidate `c`'s run: `phase`, verification `v` (`(result, reason, summary, ended at)`), cost.
fn run(c: &str, phase: &str, v: Option<(&str, &str, Option<&str>, i64)>, cost: Option<f64>) -> AgentRun {
    let mut status = json!({
        "phase": phase, "attempt": 1, "startTime": t(0).0.to_string(),
        "conditions": [{"type": "Running", "status": "True", "reason": "AgentRunning", "message": "",
                        "lastTransitionTime": t(0).0.to_string()}],
    });
    if let Some((result, reason, summary, end)) = v {
        status["verification"] = json!({
            "result": result, "reason": reason, "attempt": 1, "baseCommit": "b0",
            "startTime": t(end - 2).0.to_string(), "durationSeconds": 2, "summary": summary,
            "diffstat": "1 files, +2/-1",
        });
    }
    if let Some(c) = cost {
        status["usage"] = json!({"inputTokens": 100, "outputTokens": 20, "turns": 2, "costUsd": c});
    }
    if Phase::is_terminal(serde_json::from_value(json!(phase)).unwrap()) {
        status["conditions"] = json!([{"type": "Succeeded", "status": if phase == "Succeeded" {"True"} else {"False"},
            "reason": if phase == "Succeeded" {"Succeeded"} else {"VerificationFailed"}, "message": "",
            "lastTransitionTime": t(0).0.to_string()}]);
        status["result"] = json!({"outcome": "Succeeded", "reason": "Succeeded", "message": "", "branch": format!("paddock/s-{c}"),
            "pushed": phase == "Succeeded", "filesChanged": 1, "insertions": 2, "deletions": 1, "diffstat": "+2/-1"});
    }
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": format!("s-{c}"), "namespace": "ns", "uid": format!("uid-{c}"),
                     "ownerReferences": [{"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRunSet", "name": "s",
                                          "uid": "set-uid", "controller": true}]},
        "spec": {"repo": {"url": "http://git/r.git"}, "agent": {"name": "shell"}, "prompt": "fix it",
                 "output": {"push": true}, "verify": {"command": ["make", "test"]}},
        "status": status,
    }))
    .unwrap()
}

fn runs(list: Vec<(&str, AgentRun)>) -> BTreeMap<String, AgentRun> {
    list.into_iter().map(|(c, r)| (c.to_string(), r)).collect()
}

fn cond(plan: &Plan, type_: &str) -> (String, String) {
    let c = plan.status.conditions.iter().find(|c| c.type_ == type_).unwrap();
    (c.status.clone(), c.reason.clone())
}

fn reasons(plan: &Plan) -> Vec<String> {
    plan.events.iter().map(|e| e.1.clone()).collect()
}

#[test]
fn a_new_set_creates_its_candidates_up_to_max_parallel() {
    let s = set(json!({"maxParallel": 2}));
    let plan = decide(&s, &BTreeMap::new(), &[], None, t(0));
    let names: Vec<_> = plan.create.iter().map(|r| r.metadata.name.clone().unwrap()).collect();
    assert_eq!(names, ["s-a", "s-b"]);
    assert_eq!(plan.status.phase, Some(SetPhase::Running));
    assert_eq!(plan.status.candidates[2].reason, "Queued");
    assert_eq!(
        (plan.status.total, plan.status.finished, plan.status.verified),
        (3, 0, 0)
    );
    assert!(
        plan.events.is_empty(),
        "CandidateStarted is published once a create succeeded: {:?}",
        plan.events
    );
    assert_eq!(cond(&plan, COND_SELECTED), ("Unknown".into(), "Pending".into()));
    // The run: the template's spec and labels, the candidate's agent, owned by the set.
    let r = &plan.create[0];
    assert_eq!(r.spec.agent.name.as_str(), "claude-code");
    assert_eq!(r.spec.agent.model.as_deref(), Some("m1"));
    assert_eq!(r.spec.prompt.as_deref(), Some("fix it"));
    let labels = r.metadata.labels.clone().unwrap();
    assert_eq!(labels["team"], "x");
    assert_eq!(labels[paddock_crds::LABEL_SET], "s");
    assert_eq!(labels[paddock_crds::LABEL_CANDIDATE], "a");
    let owner = &r.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("AgentRunSet", "set-uid", Some(true))
    );
    // Without an agent of its own a candidate runs the template's.
    assert_eq!(build_run(&s, 2).unwrap().spec.agent.name.as_str(), "shell");
}

#[test]
fn a_verified_candidate_waiting_for_the_selection_frees_its_slot() {
    let s = set(json!({"maxParallel": 1, "selection": {"policy": "CheapestVerified"}}));
    let a = run(
        "a",
        "Running",
        Some(("Passed", "Passed", Some("2 passed"), 10)),
        Some(0.5),
    );
    let plan = decide(&s, &runs(vec![("a", a)]), &[], None, t(20));
    let names: Vec<_> = plan.create.iter().map(|r| r.metadata.name.clone().unwrap()).collect();
    assert_eq!(names, ["s-b"], "a is done (verified, held): b may start");
    assert!(
        plan.status.winner.is_none(),
        "CheapestVerified waits for every candidate"
    );
}

#[test]
fn first_verified_picks_the_first_candidate_whose_checks_passed() {
    let s = set(json!({}));
    let rs = runs(vec![
        (
            "a",
            run(
                "a",
                "Running",
                Some(("Failed", "ChecksFailed", Some("1 passed, 1 failed"), 5)),
                None,
            ),
        ),
        (
            "b",
            run("b", "Running", Some(("Passed", "Passed", Some("2 passed"), 30)), None),
        ),
        (
            "c",
            run("c", "Running", Some(("Passed", "Passed", Some("2 passed"), 20)), None),
        ),
    ]);
    let plan = decide(&s, &rs, &[], None, t(40));
    assert_eq!(plan.status.winner.as_deref(), Some("c"), "c passed before b");
    assert_eq!(cond(&plan, COND_SELECTED), ("True".into(), "FirstVerified".into()));
    assert!(plan.status.selection.clone().unwrap().message.contains("2 passed"));
    assert_eq!(reasons(&plan), ["WinnerSelected"]);
    assert_eq!(plan.status.phase, Some(SetPhase::Running), "the runs have not ended");
    assert_eq!((plan.status.finished, plan.status.verified), (3, 2));
}

#[test]
fn first_verified_does_not_start_queued_candidates_after_a_winner() {
    let s = set(json!({"maxParallel": 1}));
    let rs = runs(vec![(
        "a",
        run("a", "Running", Some(("Passed", "Passed", None, 5)), None),
    )]);
    let plan = decide(&s, &rs, &[], None, t(10));
    assert_eq!(plan.status.winner.as_deref(), Some("a"));
    assert!(plan.create.is_empty());
    assert_eq!(plan.status.candidates[1].reason, "Skipped");
    assert_eq!(plan.status.candidates[2].reason, "Skipped");
}

#[test]
fn the_set_succeeds_once_the_winner_pushed_and_every_run_ended() {
    let mut s = set(json!({}));
    let mut rs = runs(vec![
        (
            "a",
            run(
                "a",
                "Running",
                Some(("Passed", "Passed", Some("2 passed"), 5)),
                Some(0.1),
            ),
        ),
        (
            "b",
            run("b", "Running", Some(("Failed", "ChecksFailed", None, 6)), None),
        ),
        (
            "c",
            run("c", "Failed", Some(("Failed", "ProtectedPathChanged", None, 7)), None),
        ),
    ]);
    let first = decide(&s, &rs, &[], None, t(10));
    assert_eq!(first.status.winner.as_deref(), Some("a"));
    assert_eq!(first.status.phase, Some(SetPhase::Running));
    s.status = Some(first.status);
    // The winner pushed and ended; the loser's push was refused and it ended too.
    rs.insert(
        "a".into(),
        run(
            "a",
            "Succeeded",
            Some(("Passed", "Passed", Some("2 passed"), 5)),
            Some(0.1),
        ),
    );
    let mut b = run("b", "Succeeded", Some(("Failed", "ChecksFailed", None, 6)), None);
    b.status.as_mut().unwrap().result.as_mut().unwrap().run.pushed = false;
    rs.insert("b".into(), b);
    let plan = decide(&s, &rs, &[], None, t(20));
    assert_eq!(plan.status.phase, Some(SetPhase::Succeeded));
    assert_eq!(cond(&plan, COND_SUCCEEDED), ("True".into(), "Succeeded".into()));
    assert_eq!(plan.status.completion_time, Some(t(20)));
    assert!(reasons(&plan).contains(&"CandidateFinished".to_string()));
    assert!(reasons(&plan).contains(&"Succeeded".to_string()));
    // The next reconcile changes nothing and repeats no Event.
    s.status = Some(plan.status.clone());
    let again = decide(&s, &rs, &[], None, t(30));
    assert_eq!(again.status, plan.status);
    assert!(again.events.is_empty(), "{:?}", again.events);
}

#[test]
fn no_verified_candidate_fails_the_set_once_the_runs_ended() {
    let s = set(json!({}));
    let rs = runs(vec![
        ("a", run("a", "Failed", Some(("Failed", "ChecksFailed", None, 5)), None)),
        (
            "b",
            run("b", "Failed", Some(("Error", "VerificationTimedOut", None, 6)), None),
        ),
        ("c", run("c", "Failed", None, None)),
    ]);
    let plan = decide(&s, &rs, &[], None, t(10));
    assert_eq!(plan.status.phase, Some(SetPhase::Failed));
    assert_eq!(
        cond(&plan, COND_SELECTED),
        ("False".into(), "NoCandidateVerified".into())
    );
    assert_eq!(
        cond(&plan, COND_SUCCEEDED),
        ("False".into(), "NoCandidateVerified".into())
    );
    assert!(plan.status.winner.is_none());
}

#[test]
fn cheapest_and_fastest_choose_among_the_verified_once_all_are_done() {
    let rs = runs(vec![
        (
            "a",
            run("a", "Running", Some(("Passed", "Passed", None, 50)), Some(0.30)),
        ),
        (
            "b",
            run("b", "Running", Some(("Passed", "Passed", None, 90)), Some(0.10)),
        ),
        (
            "c",
            run("c", "Running", Some(("Failed", "ChecksFailed", None, 10)), Some(0.01)),
        ),
    ]);
    let cheap = decide(
        &set(json!({"selection": {"policy": "CheapestVerified"}})),
        &rs,
        &[],
        None,
        t(100),
    );
    assert_eq!(cheap.status.winner.as_deref(), Some("b"), "c is cheaper but failed");
    let fast = decide(
        &set(json!({"selection": {"policy": "FastestVerified"}})),
        &rs,
        &[],
        None,
        t(100),
    );
    assert_eq!(fast.status.winner.as_deref(), Some("a"));
    // One candidate still working: no choice yet.
    let mut partial = rs.clone();
    partial.insert("c".into(), run("c", "Running", None, None));
    let wait = decide(
        &set(json!({"selection": {"policy": "CheapestVerified"}})),
        &partial,
        &[],
        None,
        t(100),
    );
    assert!(wait.status.winner.is_none());
}

fn pick_gate(state: GateState, candidate: Option<&str>) -> ApprovalGate {
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "ApprovalGate",
        "metadata": {"name": "s-pick", "namespace": "ns"},
        "spec": {"runRef": {"kind": "AgentRunSet", "name": "s", "uid": "set-uid"}, "stage": "Pick",
                 "request": {"summary": "", "candidates": ["a", "b"]}, "quorum": 1},
        "status": {"state": state, "candidate": candidate, "decidedBy": "alice"},
    }))
    .unwrap()
}

#[test]
fn manual_asks_for_a_pick_of_the_eligible_candidates_then_takes_it() {
    let mut s = set(json!({"selection": {"policy": "Manual", "approvers": {"users": ["alice"]}, "timeout": "1h"}}));
    let rs = runs(vec![
        (
            "a",
            run("a", "Running", Some(("Passed", "Passed", Some("2 passed"), 5)), None),
        ),
        ("b", run("b", "Running", Some(("Passed", "Passed", None, 6)), None)),
        (
            "c",
            run("c", "Failed", Some(("Failed", "ProtectedPathChanged", None, 7)), None),
        ),
    ]);
    let plan = decide(&s, &rs, &[], None, t(10));
    let gate = plan.gate.clone().expect("a Pick gate");
    assert_eq!(gate.spec.stage, GateStage::Pick);
    assert_eq!(gate.spec.request.candidates, ["a", "b"], "c cannot be pushed");
    assert_eq!(gate.spec.approvers.users, ["alice"]);
    assert_eq!(gate.spec.timeout.as_deref(), Some("1h"));
    assert_eq!(gate.spec.run_ref.kind, Some(paddock_crds::RunRefKind::AgentRunSet));
    assert!(gate.spec.request.summary.contains("2 passed"));
    assert_eq!(plan.status.phase, Some(SetPhase::Selecting));
    assert!(plan.status.winner.is_none());
    s.status = Some(plan.status);
    // Pending: nothing new.
    let pending = decide(&s, &rs, &[], Some(&pick_gate(GateState::Pending, None)), t(20));
    assert!(pending.gate.is_none() && pending.status.winner.is_none());
    // Picked: b wins, in alice's name.
    let picked = decide(&s, &rs, &[], Some(&pick_gate(GateState::Approved, Some("b"))), t(30));
    assert_eq!(picked.status.winner.as_deref(), Some("b"));
    let sel = picked.status.selection.clone().unwrap();
    assert_eq!(sel.decided_by.as_deref(), Some("alice"));
    assert_eq!(cond(&picked, COND_SELECTED), ("True".into(), "Manual".into()));
    // Rejected: no winner.
    let rejected = decide(&s, &rs, &[], Some(&pick_gate(GateState::Rejected, None)), t(30));
    assert!(rejected.status.winner.is_none());
    assert_eq!(cond(&rejected, COND_SELECTED), ("False".into(), "PickRejected".into()));
    let expired = decide(&s, &rs, &[], Some(&pick_gate(GateState::Expired, None)), t(30));
    assert_eq!(cond(&expired, COND_SELECTED), ("False".into(), "PickExpired".into()));
}

#[test]
fn cancel_cancels_the_runs_going_and_skips_the_queued() {
    let s = set(json!({"cancel": true, "maxParallel": 1}));
    let rs = runs(vec![("a", run("a", "Running", None, None))]);
    let plan = decide(&s, &rs, &[], None, t(10));
    assert_eq!(plan.cancel, ["s-a"]);
    assert!(plan.create.is_empty());
    assert_eq!(plan.status.candidates[1].reason, "Skipped");
    assert_eq!(plan.status.phase, Some(SetPhase::Running), "until the run ended");
    let ended = runs(vec![("a", run("a", "Cancelled", None, None))]);
    let plan = decide(&s, &ended, &[], None, t(20));
    assert!(plan.cancel.is_empty());
    assert_eq!(plan.status.phase, Some(SetPhase::Cancelled));
    assert_eq!(cond(&plan, COND_SELECTED), ("False".into(), "Cancelled".into()));
}

#[test]
fn a_deleted_run_keeps_its_row() {
    let mut s = set(json!({}));
    let rs = runs(vec![(
        "a",
        run(
            "a",
            "Succeeded",
            Some(("Passed", "Passed", Some("2 passed"), 5)),
            Some(0.2),
        ),
    )]);
    let first = decide(&s, &rs, &[], None, t(10));
    s.status = Some(first.status);
    let plan = decide(&s, &BTreeMap::new(), &[], None, t(20));
    let a = &plan.status.candidates[0];
    assert_eq!(
        (a.phase, a.summary.as_deref(), a.cost_usd),
        (Some(Phase::Succeeded), Some("2 passed"), Some(0.2))
    );
    assert!(
        plan.create.iter().all(|r| r.metadata.name.as_deref() != Some("s-a")),
        "never re-created"
    );
}

#[test]
fn a_candidate_learns_where_it_stands_from_its_own_set_only() {
    let a = run("a", "Running", Some(("Passed", "Passed", None, 5)), None);
    let mut s = set(json!({}));
    assert_eq!(selection_for(&a, Some(&s)), Selection::Waiting);
    assert!(matches!(selection_for(&a, None), Selection::Loser(_)));
    let plan = decide(&s, &runs(vec![("a", a.clone())]), &[], None, t(10));
    s.status = Some(plan.status);
    assert!(matches!(selection_for(&a, Some(&s)), Selection::Winner { .. }));
    let b = run("b", "Running", Some(("Passed", "Passed", None, 6)), None);
    assert!(matches!(selection_for(&b, Some(&s)), Selection::Loser(w) if w.contains("selected candidate a")));
    // Another set of the same name (a different UID) decides nothing for it.
    let mut other = s.clone();
    other.metadata.uid = Some("other".into());
    assert!(matches!(selection_for(&a, Some(&other)), Selection::Loser(_)));
    let mut free = a.clone();
    free.metadata.owner_references = None;
    assert_eq!(selection_for(&free, Some(&s)), Selection::NotACandidate);
    let mut cancelled = set(json!({"cancel": true}));
    cancelled.metadata.uid = Some("set-uid".into());
    assert!(matches!(selection_for(&a, Some(&cancelled)), Selection::Loser(_)));
}

#[test]
fn a_run_the_set_did_not_make_is_never_its_candidate() {
    let s = set(json!({}));
    let own = build_run(&s, 0).unwrap();
    assert!(is_own_run(&s, 0, &own));
    // Cancel, priority and TTL may change after creation.
    let mut cancelled = own.clone();
    cancelled.spec.cancel = true;
    cancelled.spec.priority = Some(5);
    assert!(is_own_run(&s, 0, &cancelled));
    // A forged owner reference with another spec (a check that always passes): not the set's.
    let mut forged = own.clone();
    forged.spec.verify.as_mut().unwrap().command = vec!["true".into()];
    assert!(!is_own_run(&s, 0, &forged));
    // The right spec without the set's owner reference: not the set's either.
    let mut unowned = own.clone();
    unowned.metadata.owner_references = None;
    assert!(!is_own_run(&s, 0, &unowned));
    assert!(!is_own_run(&s, 1, &own), "another candidate's spec");
    // Its candidate is NameTaken: never created, never eligible; the set still ends.
    let rs = runs(vec![
        ("b", run("b", "Failed", Some(("Failed", "ChecksFailed", None, 5)), None)),
        ("c", run("c", "Failed", Some(("Failed", "ChecksFailed", None, 6)), None)),
    ]);
    let plan = decide(&s, &rs, &["a".to_string()], None, t(10));
    assert!(plan.create.is_empty());
    assert_eq!(plan.status.candidates[0].reason, "NameTaken");
    assert_eq!(plan.status.phase, Some(SetPhase::Failed));
}

#[test]
fn once_decided_candidates_not_started_are_cancelled() {
    let s = set(json!({}));
    let mut queued = run("c", "Queued", None, None);
    queued.status.as_mut().unwrap().verification = None;
    let rs = runs(vec![
        ("a", run("a", "Running", Some(("Passed", "Passed", None, 5)), None)),
        ("b", run("b", "Running", None, None)),
        ("c", queued),
    ]);
    let plan = decide(&s, &rs, &[], None, t(10));
    assert_eq!(plan.status.winner.as_deref(), Some("a"));
    assert_eq!(plan.cancel, ["s-c"], "b's agent works (it has a pod), c never started");
}
