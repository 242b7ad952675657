//! The set's pure part: from the set, its runs and its `Pick` gate, the status it should have,
//! the runs to create or cancel, the gate to create and the Events to publish ([`decide`]).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::runtime::events::EventType;
use kube::Resource;
use paddock_crds::condition::{set_condition, FALSE, TRUE, UNKNOWN};
use paddock_crds::{
    AgentRun, AgentRunSet, AgentRunSetStatus, ApprovalGate, ApprovalGateSpec, CandidateStatus, GateRequest, GateStage,
    GateState, Phase, RunReference, SelectionPolicy, SelectionStatus, SetPhase, VerificationResult,
};
use std::collections::BTreeMap;

/// Condition type: whether a winner was chosen.
pub const COND_SELECTED: &str = "Selected";
/// Condition type: the set's end, as a run's.
pub const COND_SUCCEEDED: &str = "Succeeded";

/// What one reconcile of a set does.
#[derive(Debug, Default)]
pub struct Plan {
    /// The status to write.
    pub status: AgentRunSetStatus,
    /// Candidate runs to create (a 409 means one exists: fine).
    pub create: Vec<AgentRun>,
    /// Runs to cancel (`spec.cancel: true`).
    pub cancel: Vec<String>,
    /// The `Pick` gate to create.
    pub gate: Option<ApprovalGate>,
    /// Events on the set: (type, reason, note).
    pub events: Vec<(EventType, String, String)>,
}

/// Name of the AgentRun of candidate `candidate` of set `set`: `<set>-<candidate>`.
pub fn run_name(set: &str, candidate: &str) -> String {
    format!("{set}-{candidate}")
}

/// Name of a set's `Pick` gate: `<set>-pick`.
pub fn gate_name(set: &str) -> String {
    format!("{set}-pick")
}

/// The controller owner reference to `set` for its runs and gate.
pub fn owner_ref(set: &AgentRunSet) -> Option<OwnerReference> {
    let mut r = set.controller_owner_ref(&())?;
    r.block_owner_deletion = Some(true);
    Some(r)
}

/// Whether `obj` is owned (as controller) by `set`, by UID.
pub fn owned_by(meta: &ObjectMeta, set: &AgentRunSet) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.kind == "AgentRunSet" && Some(&o.uid) == set.metadata.uid.as_ref())
}

/// The AgentRun of candidate `index` of `set`: the template's spec with the candidate's
/// agent, the template's labels and annotations plus `paddock.dev/set` and
/// `paddock.dev/candidate`, owned by the set. Pure.
pub fn build_run(set: &AgentRunSet, index: usize) -> Option<AgentRun> {
    let set_name = set.metadata.name.as_deref()?;
    let c = set.spec.candidates.get(index)?;
    let mut spec = set.spec.template.spec.clone();
    if let Some(agent) = &c.agent {
        spec.agent = agent.clone();
    }
    let meta = set.spec.template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels;
    labels.insert(paddock_crds::LABEL_SET.into(), set_name.into());
    labels.insert(paddock_crds::LABEL_CANDIDATE.into(), c.name.clone());
    let mut run = AgentRun::new(&run_name(set_name, &c.name), spec);
    run.metadata.namespace = set.metadata.namespace.clone();
    run.metadata.labels = Some(labels);
    run.metadata.annotations = Some(meta.annotations).filter(|a| !a.is_empty());
    run.metadata.owner_references = Some(vec![owner_ref(set)?]);
    Some(run)
}

/// Whether `run` is the set's run of candidate `index`: owned by the set (controller, UID) and
/// with exactly the spec the set gives it, apart from the fields that may change after
/// creation (`cancel`, `priority`, `ttlSecondsAfterFinished`). A run made by someone else under
/// that name — even with a forged owner reference — is not, and never wins. Pure.
pub fn is_own_run(set: &AgentRunSet, index: usize, run: &AgentRun) -> bool {
    let Some(want) = build_run(set, index) else {
        return false;
    };
    let norm = |s: &paddock_crds::AgentRunSpec| {
        let mut s = s.clone();
        s.cancel = false;
        s.priority = None;
        s.ttl_seconds_after_finished = None;
        s
    };
    owned_by(&run.metadata, set) && norm(&run.spec) == norm(&want.spec)
}

fn secs_between(a: &Time, b: &Time) -> i64 {
    b.0.as_second() - a.0.as_second()
}

/// A candidate's row from its run (pure).
pub fn row_from_run(name: &str, run: &AgentRun) -> CandidateStatus {
    let st = run.status.clone().unwrap_or_default();
    let v = st.verification.clone().filter(|v| v.attempt == st.attempt.unwrap_or(1));
    let reason = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Succeeded")
        .filter(|c| c.status != UNKNOWN)
        .map(|c| c.reason.clone())
        .unwrap_or_else(|| {
            st.conditions
                .iter()
                .find(|c| c.type_ == "Running")
                .map(|c| c.reason.clone())
                .unwrap_or_default()
        });
    let verified_at = v
        .as_ref()
        .filter(|v| v.result != VerificationResult::Running)
        .and_then(|v| {
            let start = v.start_time.as_ref()?;
            let end = start.0.as_second() + v.duration_seconds.unwrap_or(0);
            k8s_openapi::jiff::Timestamp::from_second(end).ok().map(Time)
        });
    let agent_end = v
        .as_ref()
        .and_then(|v| v.start_time.clone())
        .or(st.completion_time.clone());
    let usage = st.usage.clone();
    CandidateStatus {
        name: name.into(),
        run: run.metadata.name.clone(),
        agent: run.spec.agent.name.as_str().into(),
        model: run.spec.agent.model.clone(),
        phase: st.phase,
        reason,
        verification: v.as_ref().map(|v| v.result),
        verification_reason: v.as_ref().map(|v| v.reason.clone()),
        summary: v.as_ref().and_then(|v| v.summary.clone()),
        diffstat: st
            .result
            .as_ref()
            .map(|r| paddock_crds::events::diffstat(r.run.files_changed, r.run.insertions, r.run.deletions))
            .or_else(|| v.as_ref().and_then(|v| v.diffstat.clone())),
        cost_usd: usage.as_ref().and_then(|u| u.cost_usd),
        tokens: usage.as_ref().map(|u| u.input_tokens + u.output_tokens),
        turns: usage.as_ref().map(|u| u.turns),
        duration_seconds: match (&st.start_time, &agent_end) {
            (Some(s), Some(e)) => Some(secs_between(s, e).max(0)),
            _ => None,
        },
        pushed: st.result.as_ref().is_some_and(|r| r.run.pushed),
        commit: v.as_ref().and_then(|v| v.commit.clone()),
        verified_at,
    }
}

/// Whether a candidate's agent is done: its verification concluded or its run ended.
pub fn is_done(row: &CandidateStatus) -> bool {
    row.phase.is_some_and(Phase::is_terminal)
        || row.verification.is_some_and(|v| v != VerificationResult::Running)
        || row.reason == "Skipped"
        || row.reason == "NameTaken"
}

/// Whether a candidate may still win: its run waits, held, with its change verified (or,
/// verification not required, concluded), for the selection. Without `output.push` in the
/// template nothing is held, and an ended run may win too (nothing is pushed).
fn pushable(row: &CandidateStatus, required: bool, push: bool) -> bool {
    let waiting = row.run.is_some() && (!push || !row.phase.is_some_and(Phase::is_terminal));
    match row.verification {
        Some(VerificationResult::Passed) => waiting,
        Some(VerificationResult::Failed | VerificationResult::Error) => waiting && !required,
        _ => false,
    }
}

/// The winner an automatic policy chooses from `rows` (pure): `FirstVerified` the passed
/// candidate verified first, as soon as there is one; `CheapestVerified` and `FastestVerified`
/// only once `all_done`, the passed candidate with the lowest cost (unknown last) or duration.
/// Ties go to the candidate listed first. Returns the index and a message.
pub fn choose(
    policy: SelectionPolicy,
    rows: &[CandidateStatus],
    all_done: bool,
    push: bool,
) -> Option<(usize, String)> {
    let passed = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.verification == Some(VerificationResult::Passed) && pushable(r, true, push));
    let summary = |r: &CandidateStatus| r.summary.clone().map(|s| format!(" ({s})")).unwrap_or_default();
    match policy {
        SelectionPolicy::FirstVerified => {
            let (i, r) = passed.min_by_key(|(i, r)| (r.verified_at.as_ref().map(|t| t.0.as_second()), *i))?;
            Some((
                i,
                format!("the first candidate whose verification passed{}", summary(r)),
            ))
        }
        SelectionPolicy::CheapestVerified if all_done => {
            let (i, r) = passed.min_by(|(i, a), (j, b)| {
                let ka = a.cost_usd.unwrap_or(f64::INFINITY);
                let kb = b.cost_usd.unwrap_or(f64::INFINITY);
                ka.total_cmp(&kb).then(i.cmp(j))
            })?;
            let cost = r
                .cost_usd
                .map(|c| format!("${c:.4}"))
                .unwrap_or_else(|| "unknown cost".into());
            Some((i, format!("the cheapest verified candidate ({cost}){}", summary(r))))
        }
        SelectionPolicy::FastestVerified if all_done => {
            let (i, r) = passed.min_by_key(|(i, r)| (r.duration_seconds.unwrap_or(i64::MAX), *i))?;
            let d = r
                .duration_seconds
                .map(|d| format!("{d}s"))
                .unwrap_or_else(|| "unknown".into());
            Some((i, format!("the fastest verified candidate ({d}){}", summary(r))))
        }
        _ => None,
    }
}

/// Decides one reconcile of `set` (pure). `runs`: the set's runs by candidate name (owned by
/// the set, with the spec the set gives them: [`is_own_run`]); `taken`: candidates whose run
/// name is held by a run that is not the set's; `gate`: its `Pick` gate, when it exists;
/// `now`: the clock.
pub fn decide(
    set: &AgentRunSet,
    runs: &BTreeMap<String, AgentRun>,
    taken: &[String],
    gate: Option<&ApprovalGate>,
    now: Time,
) -> Plan {
    let old = set.status.clone().unwrap_or_default();
    let generation = set.metadata.generation;
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let policy = set.spec.selection.policy;
    let required = set.spec.template.spec.verify.as_ref().is_some_and(|v| v.required);
    let push = set.spec.template.spec.output.as_ref().is_some_and(|o| o.push);
    let mut plan = Plan::default();
    let mut st = AgentRunSetStatus {
        observed_generation: generation,
        start_time: old.start_time.clone().or_else(|| Some(now.clone())),
        ..old.clone()
    };
    // The table: a run's row, else the row kept from a run since deleted, else a queued row.
    let mut rows: Vec<CandidateStatus> = set
        .spec
        .candidates
        .iter()
        .map(|c| match runs.get(&c.name) {
            Some(r) => row_from_run(&c.name, r),
            None if taken.contains(&c.name) => CandidateStatus {
                name: c.name.clone(),
                agent: c
                    .agent
                    .as_ref()
                    .unwrap_or(&set.spec.template.spec.agent)
                    .name
                    .as_str()
                    .into(),
                model: c.agent.as_ref().unwrap_or(&set.spec.template.spec.agent).model.clone(),
                reason: "NameTaken".into(),
                ..Default::default()
            },
            None => match old.candidates.iter().find(|o| o.name == c.name && o.run.is_some()) {
                Some(o) => CandidateStatus {
                    phase: o.phase.filter(|p| p.is_terminal()).or(Some(Phase::Failed)),
                    ..o.clone()
                },
                None => CandidateStatus {
                    name: c.name.clone(),
                    agent: c
                        .agent
                        .as_ref()
                        .unwrap_or(&set.spec.template.spec.agent)
                        .name
                        .as_str()
                        .into(),
                    model: c.agent.as_ref().unwrap_or(&set.spec.template.spec.agent).model.clone(),
                    reason: "Queued".into(),
                    ..Default::default()
                },
            },
        })
        .collect();

    // Selection.
    let mut winner = old.winner.clone();
    let mut selection = old.selection.clone();
    let mut failed: Option<(&str, String)> = None;
    let started_all = rows.iter().all(|r| r.run.is_some() || r.reason == "NameTaken");
    let all_done = started_all && rows.iter().all(is_done);
    if winner.is_none() && !set.spec.cancel {
        if policy == SelectionPolicy::Manual {
            if all_done {
                match gate {
                    None if old.gate_name.is_none() => {
                        let eligible: Vec<String> = rows
                            .iter()
                            .filter(|r| pushable(r, required, push))
                            .map(|r| r.name.clone())
                            .collect();
                        if eligible.is_empty() {
                            failed = Some((
                                "NoCandidateVerified",
                                "no candidate can be picked: none is verified and waiting".into(),
                            ));
                        } else {
                            plan.gate = build_gate(set, &rows, eligible);
                            st.gate_name = Some(gate_name(&set_name));
                            plan.events.push((
                                EventType::Normal,
                                "PickRequested".into(),
                                format!("every candidate is done; pick the winner on ApprovalGate {} (kubectl paddock pick {set_name} <candidate>)", gate_name(&set_name)),
                            ));
                        }
                    }
                    None => {
                        failed = Some((
                            "PickGateDeleted",
                            format!(
                                "ApprovalGate {} was deleted before anyone picked",
                                old.gate_name.clone().unwrap_or_default()
                            ),
                        ))
                    }
                    Some(g) => {
                        let gs = g.status.clone().unwrap_or_default();
                        match gs.state {
                            Some(GateState::Approved) => match gs
                                .candidate
                                .as_ref()
                                .and_then(|c| rows.iter().position(|r| &r.name == c))
                            {
                                Some(i) if pushable(&rows[i], required, push) => {
                                    winner = Some(rows[i].name.clone());
                                    selection = Some(SelectionStatus {
                                        candidate: rows[i].name.clone(),
                                        policy,
                                        commit: rows[i].commit.clone(),
                                        message: format!(
                                            "picked by {} on ApprovalGate {}",
                                            gs.decided_by.clone().unwrap_or_default(),
                                            g.metadata.name.clone().unwrap_or_default()
                                        ),
                                        decided_by: gs.decided_by.clone(),
                                        decided_at: gs.decided_at.clone().or(Some(now.clone())),
                                    });
                                }
                                _ => {
                                    failed = Some((
                                        "PickNotEligible",
                                        format!(
                                            "the picked candidate {:?} can no longer be pushed",
                                            gs.candidate.unwrap_or_default()
                                        ),
                                    ))
                                }
                            },
                            Some(GateState::Rejected) => {
                                failed = Some((
                                    "PickRejected",
                                    format!(
                                        "ApprovalGate {} was rejected by {}: no candidate is pushed",
                                        g.metadata.name.clone().unwrap_or_default(),
                                        gs.decided_by.unwrap_or_default()
                                    ),
                                ))
                            }
                            Some(GateState::Expired) => {
                                failed = Some((
                                    "PickExpired",
                                    format!(
                                        "ApprovalGate {} expired without a pick",
                                        g.metadata.name.clone().unwrap_or_default()
                                    ),
                                ))
                            }
                            Some(GateState::Withdrawn) => {
                                failed = Some((
                                    "PickWithdrawn",
                                    format!(
                                        "ApprovalGate {} was withdrawn",
                                        g.metadata.name.clone().unwrap_or_default()
                                    ),
                                ))
                            }
                            _ => {}
                        }
                    }
                }
            }
        } else if let Some((i, message)) = choose(policy, &rows, all_done, push) {
            winner = Some(rows[i].name.clone());
            selection = Some(SelectionStatus {
                candidate: rows[i].name.clone(),
                policy,
                commit: rows[i].commit.clone(),
                message,
                decided_by: None,
                decided_at: Some(now.clone()),
            });
        } else if all_done {
            failed = Some((
                "NoCandidateVerified",
                "no candidate's verification passed: nothing is pushed".into(),
            ));
        }
    }
    if winner.is_some() && old.winner.is_none() {
        let s = selection.clone().unwrap_or_default();
        plan.events.push((
            EventType::Normal,
            "WinnerSelected".into(),
            format!(
                "candidate {} wins ({}): {}; only its branch is pushed",
                s.candidate,
                policy.as_str(),
                s.message
            ),
        ));
    }
    // Once decided (or cancelled), the queued candidates never start.
    let closed =
        winner.is_some() || failed.is_some() || set.spec.cancel || old.phase.is_some_and(SetPhase::is_terminal);
    let active = rows.iter().filter(|r| r.run.is_some() && !is_done(r)).count() as u32;
    let max_parallel = set.spec.max_parallel.unwrap_or(u32::MAX);
    let mut room = max_parallel.saturating_sub(active);
    for (i, row) in rows.iter_mut().enumerate() {
        if row.run.is_some() || row.reason == "NameTaken" {
            continue;
        }
        if closed {
            row.reason = "Skipped".into();
        } else if room > 0 {
            if let Some(run) = build_run(set, i) {
                row.run = run.metadata.name.clone();
                row.reason = "Created".into();
                plan.create.push(run);
                room -= 1;
            }
        }
    }
    if set.spec.cancel {
        plan.cancel = runs
            .values()
            .filter(|r| !r.spec.cancel && !r.status.as_ref().and_then(|s| s.phase).is_some_and(Phase::is_terminal))
            .filter_map(|r| r.metadata.name.clone())
            .collect();
    } else if closed {
        // Decided: a candidate whose agent has not started (queued in its pool or Kueue, or at
        // a BeforeStart gate) can no longer win; cancel it rather than wait for it.
        plan.cancel = runs
            .iter()
            .filter(|(c, _)| winner.as_ref() != Some(*c))
            .map(|(_, r)| r)
            .filter(|r| !r.spec.cancel)
            .filter(|r| {
                let st = r.status.clone().unwrap_or_default();
                st.pod_name.is_none()
                    && st.verification.is_none()
                    && matches!(
                        st.phase,
                        None | Some(Phase::Pending | Phase::Queued | Phase::AwaitingApproval)
                    )
            })
            .filter_map(|r| r.metadata.name.clone())
            .collect();
    }
    // Each candidate's end tells the story.
    for row in &rows {
        let ended_now = row.phase.is_some_and(Phase::is_terminal)
            && !old
                .candidates
                .iter()
                .any(|o| o.name == row.name && o.phase.is_some_and(Phase::is_terminal));
        if ended_now {
            let t = if row.phase == Some(Phase::Succeeded) {
                EventType::Normal
            } else {
                EventType::Warning
            };
            let v = match (row.verification, &row.summary) {
                (Some(v), Some(s)) => format!("verification {v:?} ({s})"),
                (Some(v), None) => format!(
                    "verification {v:?} ({})",
                    row.verification_reason.clone().unwrap_or_default()
                ),
                _ => "not verified".into(),
            };
            plan.events.push((
                t,
                "CandidateFinished".into(),
                format!(
                    "candidate {} ({}) ended {} ({}): {v}{}",
                    row.name,
                    row.agent,
                    row.phase.map(Phase::as_str).unwrap_or_default(),
                    row.reason,
                    if row.pushed { "; pushed" } else { "" }
                ),
            ));
        }
    }

    // Counts, phase and conditions.
    st.total = rows.len() as u32;
    st.finished = rows.iter().filter(|r| is_done(r) && r.reason != "Skipped").count() as u32;
    st.verified = rows
        .iter()
        .filter(|r| r.verification == Some(VerificationResult::Passed))
        .count() as u32;
    st.winner = winner.clone();
    st.selection = selection.clone();
    let all_ended = rows
        .iter()
        .all(|r| r.reason == "Skipped" || r.phase.is_some_and(Phase::is_terminal) || (r.run.is_none() && closed));
    let winner_row = winner.as_ref().and_then(|w| rows.iter().find(|r| &r.name == w));
    let (phase, ok, reason, message) = if let Some(p) = old.phase.filter(|p| p.is_terminal()) {
        let c = old.conditions.iter().find(|c| c.type_ == COND_SUCCEEDED).cloned();
        (
            p,
            c.as_ref().map(|c| c.status.clone()).unwrap_or_default(),
            c.as_ref().map(|c| c.reason.clone()).unwrap_or_default(),
            c.map(|c| c.message).unwrap_or_default(),
        )
    } else if set.spec.cancel {
        if all_ended {
            (
                SetPhase::Cancelled,
                FALSE.to_string(),
                "Cancelled".to_string(),
                "spec.cancel was set; no candidate was pushed".to_string(),
            )
        } else {
            (
                SetPhase::Running,
                UNKNOWN.to_string(),
                "Cancelling".to_string(),
                "spec.cancel was set; the runs still going are being cancelled".to_string(),
            )
        }
    } else if let Some((why, msg)) = &failed {
        if all_ended {
            (SetPhase::Failed, FALSE.to_string(), why.to_string(), msg.clone())
        } else {
            (
                SetPhase::Running,
                UNKNOWN.to_string(),
                "Finishing".to_string(),
                format!("{msg}; waiting for the candidates' runs to end"),
            )
        }
    } else if let Some(w) = winner_row {
        match w.phase {
            Some(Phase::Succeeded) if all_ended => (
                SetPhase::Succeeded,
                TRUE.to_string(),
                "Succeeded".to_string(),
                format!(
                    "candidate {} won{}",
                    w.name,
                    if w.pushed { " and its branch was pushed" } else { "" }
                ),
            ),
            Some(p) if p.is_terminal() && p != Phase::Succeeded && all_ended => (
                SetPhase::Failed,
                FALSE.to_string(),
                "WinnerFailed".to_string(),
                format!(
                    "the winner's run {} ended {} ({})",
                    w.run.clone().unwrap_or_default(),
                    p.as_str(),
                    w.reason
                ),
            ),
            _ => (
                SetPhase::Running,
                UNKNOWN.to_string(),
                "Finishing".to_string(),
                format!("candidate {} won; waiting for the runs to end", w.name),
            ),
        }
    } else if st.gate_name.is_some() {
        (
            SetPhase::Selecting,
            UNKNOWN.to_string(),
            "AwaitingPick".to_string(),
            format!(
                "waiting for a pick on ApprovalGate {}",
                st.gate_name.clone().unwrap_or_default()
            ),
        )
    } else {
        (
            SetPhase::Running,
            UNKNOWN.to_string(),
            "Running".to_string(),
            format!("{} of {} candidates done", st.finished, st.total),
        )
    };
    if phase.is_terminal() && old.phase != Some(phase) {
        st.completion_time = Some(now.clone());
        let t = if phase == SetPhase::Succeeded {
            EventType::Normal
        } else {
            EventType::Warning
        };
        plan.events.push((t, reason.clone(), message.clone()));
    }
    st.phase = Some(phase);
    set_condition(
        &mut st.conditions,
        COND_SUCCEEDED,
        &ok,
        &reason,
        &message,
        generation,
        now.clone(),
    );
    let (sel_status, sel_reason, sel_message) = match (&selection, &failed) {
        (Some(s), _) => (
            TRUE,
            policy.as_str().to_string(),
            format!("candidate {}: {}", s.candidate, s.message),
        ),
        (None, Some((why, msg))) => (FALSE, why.to_string(), msg.clone()),
        (None, None) if set.spec.cancel => (
            FALSE,
            "Cancelled".to_string(),
            "the set was cancelled before a winner was chosen".to_string(),
        ),
        (None, None) => (
            UNKNOWN,
            "Pending".to_string(),
            format!("{} of {} candidates done", st.finished, st.total),
        ),
    };
    let sel_keep = old
        .conditions
        .iter()
        .find(|c| c.type_ == COND_SELECTED)
        .filter(|c| c.status != UNKNOWN && phase.is_terminal());
    match sel_keep {
        Some(c) => {
            let c = c.clone();
            set_condition(
                &mut st.conditions,
                COND_SELECTED,
                &c.status,
                &c.reason,
                &c.message,
                c.observed_generation,
                c.last_transition_time,
            );
        }
        None => {
            set_condition(
                &mut st.conditions,
                COND_SELECTED,
                sel_status,
                &sel_reason,
                &sel_message,
                generation,
                now.clone(),
            );
        }
    }
    st.candidates = rows;
    plan.status = st;
    plan
}

/// The `Pick` gate of `set`: the candidates that may be picked, a summary of each, the set's
/// approvers, quorum and timeout; owned by the set.
fn build_gate(set: &AgentRunSet, rows: &[CandidateStatus], eligible: Vec<String>) -> Option<ApprovalGate> {
    let set_name = set.metadata.name.clone()?;
    let sel = &set.spec.selection;
    let lines: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "- {} ({}{}): verification {} {}; {}; {}",
                r.name,
                r.agent,
                r.model.as_ref().map(|m| format!(", {m}")).unwrap_or_default(),
                r.verification
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_else(|| "none".into()),
                r.summary.clone().or(r.verification_reason.clone()).unwrap_or_default(),
                r.diffstat.clone().unwrap_or_else(|| "no change".into()),
                r.cost_usd
                    .map(|c| format!("${c:.4}"))
                    .unwrap_or_else(|| "cost unknown".into()),
            )
        })
        .collect();
    let summary = format!(
        "Pick the candidate of AgentRunSet {set_name} whose branch is pushed (kubectl paddock compare {set_name} --diff):\n{}",
        lines.join("\n")
    );
    let mut gate = ApprovalGate::new(
        &gate_name(&set_name),
        ApprovalGateSpec {
            run_ref: RunReference {
                kind: Some(paddock_crds::RunRefKind::AgentRunSet),
                name: set_name.clone(),
                uid: set.metadata.uid.clone(),
                attempt: None,
            },
            stage: GateStage::Pick,
            request: GateRequest {
                summary: paddock_crds::events::truncate(&summary, 4096),
                candidates: eligible,
                ..Default::default()
            },
            approvers: sel.approvers.clone(),
            quorum: sel.quorum.unwrap_or(1),
            timeout: sel.timeout.clone(),
            on_timeout: None,
            decisions: vec![],
        },
    );
    gate.metadata.namespace = set.metadata.namespace.clone();
    gate.metadata.labels = Some(BTreeMap::from([
        (paddock_crds::LABEL_SET.to_string(), set_name.clone()),
        (paddock_crds::LABEL_STAGE.to_string(), "Pick".to_string()),
    ]));
    gate.metadata.owner_references = Some(vec![owner_ref(set)?]);
    Some(gate)
}
