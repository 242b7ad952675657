//! Pure status computation: what a runner pod's state means for its AgentRun, and the
//! conditions of each phase. No I/O; table-tested.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use paddock_crds::condition::{find_condition, set_condition, FALSE, TRUE, UNKNOWN};
use paddock_crds::events::{Outcome, RunResult};
use paddock_crds::{AgentRunStatus, ApprovalGate, GateState, Phase, TimeoutAction};

/// Condition type that ends `Unknown` → `True`/`False` when the run ends (Tekton-style).
pub const COND_SUCCEEDED: &str = "Succeeded";
/// Condition type: the run waits for capacity in its pool.
pub const COND_QUEUED: &str = "Queued";
/// Condition type: the run waits for a human decision.
pub const COND_AWAITING_APPROVAL: &str = "AwaitingApproval";
/// Condition type: the runner pod exists and has not finished.
pub const COND_RUNNING: &str = "Running";

/// Container waiting reasons that will not resolve by themselves: the run fails at once
/// instead of waiting for its timeout.
const FATAL_WAITING: &[&str] = &[
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// What a runner pod's status says about the run.
#[derive(Debug, Clone, PartialEq)]
pub enum PodState {
    /// Scheduled or starting; `message` says what it waits for (e.g. `ContainerCreating`).
    Starting {
        /// Human-readable detail.
        message: String,
    },
    /// The agent container runs.
    Running,
    /// The pod finished. `result` is the runner's own report when one was found.
    Finished {
        /// Terminal phase of the run.
        phase: Phase,
        /// CamelCase reason for the `Succeeded` condition.
        reason: String,
        /// Human-readable explanation.
        message: String,
        /// The runner's result (termination message), if any.
        result: Option<Box<RunResult>>,
    },
}

fn terminated_result(cs: &ContainerStatus) -> Option<(i32, Option<RunResult>, String)> {
    let t = cs.state.as_ref()?.terminated.as_ref()?;
    let msg = t.message.clone().unwrap_or_default();
    let result = serde_json::from_str::<RunResult>(msg.trim()).ok();
    Some((t.exit_code, result, t.reason.clone().unwrap_or_default()))
}

/// The `Succeeded` condition's message for result `r`: `committed <sha12> on <branch> (N files,
/// +I/-D)`, or that nothing changed.
pub fn succeeded_message(r: &RunResult) -> String {
    match &r.commit {
        Some(c) => format!(
            "committed {} on {} ({} files, +{}/-{})",
            &c[..c.len().min(12)],
            r.branch,
            r.files_changed,
            r.insertions,
            r.deletions
        ),
        None => "the agent finished without changing any file".into(),
    }
}

fn finished_from(container: &str, exit: i32, result: Option<RunResult>, kubelet_reason: &str) -> PodState {
    match result {
        Some(r) if r.outcome == Outcome::Succeeded && exit == 0 => PodState::Finished {
            phase: Phase::Succeeded,
            reason: "Succeeded".into(),
            message: succeeded_message(&r),
            result: Some(Box::new(r)),
        },
        // A BeforePush gate said no (or expired): the run is Rejected, not Failed.
        Some(r) if matches!(r.reason.as_str(), "Rejected" | "GateExpired") => PodState::Finished {
            phase: Phase::Rejected,
            reason: r.reason.clone(),
            message: r.message.clone(),
            result: Some(Box::new(r)),
        },
        Some(r) => {
            let step = r.failed_step.clone().unwrap_or_else(|| container.to_string());
            PodState::Finished {
                phase: Phase::Failed,
                reason: r.reason.clone(),
                message: format!("step {step} failed: {}", r.message),
                result: Some(Box::new(r)),
            }
        }
        None => PodState::Finished {
            phase: Phase::Failed,
            reason: if kubelet_reason == "OOMKilled" {
                "OOMKilled".into()
            } else {
                "RunnerFailed".into()
            },
            message: format!("container {container} exited with code {exit} ({kubelet_reason}) without a result"),
            result: None,
        },
    }
}

/// Classifies a runner pod. Pure: reads only the pod's status.
pub fn classify_pod(pod: &Pod) -> PodState {
    let Some(status) = pod.status.as_ref() else {
        return PodState::Starting {
            message: "pod created".into(),
        };
    };
    if status.reason.as_deref() == Some("DeadlineExceeded") {
        return PodState::Finished {
            phase: Phase::TimedOut,
            reason: "TimedOut".into(),
            message: "spec.budget.timeout passed (pod activeDeadlineSeconds)".into(),
            result: None,
        };
    }
    if matches!(status.reason.as_deref(), Some("Evicted") | Some("Preempting")) {
        let message = status.message.clone().unwrap_or_default();
        // The kubelet's words for a volume or the pod over its storage limit
        // (pkg/kubelet/eviction: "Usage of EmptyDir volume … exceeds the limit …", "… ephemeral
        // local storage usage exceeds …"): the run's own doing, not retried.
        if message.contains("exceeds the limit") || message.contains("ephemeral local storage") {
            return PodState::Finished {
                phase: Phase::Failed,
                reason: "StorageLimitExceeded".into(),
                message,
                result: None,
            };
        }
        return PodState::Finished {
            phase: Phase::Failed,
            reason: "PodEvicted".into(),
            message: status
                .message
                .clone()
                .unwrap_or_else(|| "the runner pod was evicted".into()),
            result: None,
        };
    }
    let inits = status.init_container_statuses.as_deref().unwrap_or_default();
    if let Some(clone) = inits.iter().find(|c| c.name == "clone") {
        if let Some((exit, result, why)) = terminated_result(clone) {
            if exit != 0 {
                return finished_from("clone", exit, result, &why);
            }
        }
    }
    let all = inits
        .iter()
        .chain(status.container_statuses.as_deref().unwrap_or_default());
    for cs in all.clone() {
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.clone().unwrap_or_default();
            if FATAL_WAITING.contains(&reason.as_str()) {
                return PodState::Finished {
                    phase: Phase::Failed,
                    reason: "PodStartFailed".into(),
                    message: format!(
                        "container {}: {reason}: {}",
                        cs.name,
                        w.message.clone().unwrap_or_default()
                    ),
                    result: None,
                };
            }
        }
    }
    if let Some(agent) = status
        .container_statuses
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|c| c.name == "agent")
    {
        if let Some((exit, result, why)) = terminated_result(agent) {
            // The gateway sidecar reports the run's final facts (commit, diff) when the kubelet
            // stops it, just after the agent container: the run ends once it has.
            let gateway_running = inits
                .iter()
                .find(|c| c.name == "gateway")
                .and_then(|c| c.state.as_ref())
                .is_some_and(|s| s.running.is_some());
            // A pod being deleted ends now, as before: its facts are moot, and waiting would
            // let the pod vanish, with the log its retry keeps, before the run ended.
            let deleting = pod.metadata.deletion_timestamp.is_some();
            if gateway_running && !deleting && !matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
                return PodState::Running;
            }
            return finished_from("agent", exit, result, &why);
        }
        if agent.state.as_ref().and_then(|s| s.running.as_ref()).is_some() {
            return PodState::Running;
        }
    }
    if status.phase.as_deref() == Some("Failed") {
        return PodState::Finished {
            phase: Phase::Failed,
            reason: "PodFailed".into(),
            message: status.message.clone().unwrap_or_else(|| "the runner pod failed".into()),
            result: None,
        };
    }
    let waiting: Vec<String> = all
        .filter_map(|cs| {
            cs.state
                .as_ref()?
                .waiting
                .as_ref()
                .map(|w| format!("{}: {}", cs.name, w.reason.clone().unwrap_or_default()))
        })
        .collect();
    PodState::Starting {
        message: if waiting.is_empty() {
            format!("pod {}", status.phase.clone().unwrap_or_else(|| "Pending".into()))
        } else {
            waiting.join(", ")
        },
    }
}

/// Sets `phase` and the conditions that go with it on `status`; `reason`/`message` describe the
/// transition. Returns whether anything changed. Conditions are never removed, only flipped.
pub fn set_phase(
    status: &mut AgentRunStatus,
    phase: Phase,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) -> bool {
    let mut changed = status.phase != Some(phase);
    status.phase = Some(phase);
    // A condition "is on" when present with status True; only those are flipped at the end.
    let has = |t: &str| find_condition(&status.conditions, t).is_some_and(|c| c.status == TRUE);
    let (had_queue, had_gate, had_running) = (has(COND_QUEUED), has(COND_AWAITING_APPROVAL), has(COND_RUNNING));
    let gate = match &status.gate_name {
        Some(g) => format!("ApprovalGate {g}"),
        None => "the ApprovalGate".to_string(),
    };
    let c = &mut status.conditions;
    let mut set = |t: &str, s: &str, r: &str, m: &str| {
        changed |= set_condition(c, t, s, r, m, generation, now.clone());
    };
    match phase {
        Phase::Pending => set(COND_SUCCEEDED, UNKNOWN, reason, message),
        Phase::Queued => {
            set(COND_SUCCEEDED, UNKNOWN, "Queued", message);
            set(COND_QUEUED, TRUE, reason, message);
        }
        Phase::AwaitingApproval => {
            set(COND_SUCCEEDED, UNKNOWN, "AwaitingApproval", message);
            set(COND_AWAITING_APPROVAL, TRUE, reason, message);
        }
        Phase::Running => {
            set(COND_SUCCEEDED, UNKNOWN, "Running", message);
            set(COND_RUNNING, TRUE, reason, message);
            if had_queue {
                set(COND_QUEUED, FALSE, "Admitted", "the pool had capacity");
            }
            if had_gate {
                // The reconcile records how the gate was decided first (set_gate_decided);
                // reached only when it could not tell.
                set(
                    COND_AWAITING_APPROVAL,
                    FALSE,
                    "GateClosed",
                    &format!("{gate} is no longer pending"),
                );
            }
        }
        terminal => {
            let ok = terminal == Phase::Succeeded;
            set(COND_SUCCEEDED, if ok { TRUE } else { FALSE }, reason, message);
            if had_running {
                set(COND_RUNNING, FALSE, reason, "the runner pod finished");
            }
            if had_queue {
                set(COND_QUEUED, FALSE, reason, "the run ended");
            }
            if had_gate && terminal != Phase::Rejected {
                set(
                    COND_AWAITING_APPROVAL,
                    FALSE,
                    reason,
                    &format!("the run ended while {gate} was pending"),
                );
            }
            if had_gate && terminal == Phase::Rejected {
                set(COND_AWAITING_APPROVAL, FALSE, "Rejected", message);
            }
        }
    }
    changed
}

/// The reason and message of `AwaitingApproval=False` once `gate` is no longer pending: the
/// gate by name and stage, and how it was decided (reason `Approved`, `Rejected`, `Expired` or
/// `Withdrawn`). `None` while it is pending. Pure.
pub fn gate_decided(gate: &ApprovalGate) -> Option<(&'static str, String)> {
    let status = gate.status.as_ref()?;
    let what = format!(
        "ApprovalGate {} (stage {})",
        gate.metadata.name.as_deref().unwrap_or_default(),
        gate.spec.stage.as_str()
    );
    let by = status
        .decided_by
        .as_deref()
        .map(|u| format!(" by {u}"))
        .unwrap_or_default();
    Some(match status.state? {
        GateState::Pending => return None,
        GateState::Approved => ("Approved", format!("{what} was approved{by}")),
        GateState::Rejected => ("Rejected", format!("{what} was rejected{by}")),
        GateState::Expired if gate.spec.on_timeout == Some(TimeoutAction::Approve) => (
            "Expired",
            format!("{what} expired without a decision; onTimeout Approve let the run go on"),
        ),
        GateState::Expired => (
            "Expired",
            format!("{what} expired without a decision; onTimeout Reject"),
        ),
        GateState::Withdrawn => {
            let why = find_condition(&status.conditions, "Decided")
                .map(|c| format!(": {}", c.message))
                .unwrap_or_default();
            ("Withdrawn", format!("{what} was withdrawn without a decision{why}"))
        }
    })
}

/// Records that the gate the run waits on (`status.gateName`, here `gate`) is decided:
/// `AwaitingApproval` turns False with [`gate_decided`]'s reason and message. Nothing happens
/// while the gate is pending, when it is another gate than the one the status names, or when
/// the run is not waiting (the condition is not True). Returns whether anything changed.
pub fn set_gate_decided(status: &mut AgentRunStatus, gate: &ApprovalGate, generation: Option<i64>, now: &Time) -> bool {
    let waiting = find_condition(&status.conditions, COND_AWAITING_APPROVAL).is_some_and(|c| c.status == TRUE);
    if !waiting || gate.metadata.name.is_none() || gate.metadata.name != status.gate_name {
        return false;
    }
    let Some((reason, message)) = gate_decided(gate) else {
        return false;
    };
    set_condition(
        &mut status.conditions,
        COND_AWAITING_APPROVAL,
        FALSE,
        reason,
        &message,
        generation,
        now.clone(),
    )
}

/// Formats a duration in whole seconds the way kubectl prints ages: `45s`, `3m12s`, `1h2m`.
pub fn format_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, PodStatus,
    };

    fn cs(name: &str, state: ContainerState) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: Some(state),
            ..Default::default()
        }
    }
    fn terminated(code: i32, msg: &str) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                message: Some(msg.into()),
                reason: Some("Completed".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
    fn waiting(reason: &str) -> ContainerState {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: Some("detail".into()),
            }),
            ..Default::default()
        }
    }
    fn running() -> ContainerState {
        ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..Default::default()
        }
    }
    fn pod(phase: &str, reason: Option<&str>, inits: Vec<ContainerStatus>, containers: Vec<ContainerStatus>) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                reason: reason.map(Into::into),
                init_container_statuses: Some(inits),
                container_statuses: Some(containers),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
    const OK: &str = r#"{"outcome":"Succeeded","reason":"Succeeded","commit":"0123456789abcdef0123","branch":"paddock/r","filesChanged":1,"insertions":2,"deletions":0}"#;
    const AGENT_FAILED: &str = r#"{"outcome":"Failed","reason":"AgentFailed","failedStep":"agent","message":"exit code 3","branch":"paddock/r"}"#;
    const CLONE_FAILED: &str = r#"{"outcome":"Failed","reason":"CloneFailed","failedStep":"clone","message":"revision nope not found","branch":"paddock/r"}"#;

    #[test]
    fn classify_table() {
        let cases: Vec<(&str, Pod, Phase, &str, &str)> = vec![
            (
                "succeeded",
                pod(
                    "Succeeded",
                    None,
                    vec![cs("clone", terminated(0, ""))],
                    vec![cs("agent", terminated(0, OK))],
                ),
                Phase::Succeeded,
                "Succeeded",
                "committed 0123456789ab on paddock/r (1 files, +2/-0)",
            ),
            (
                "agent failed",
                pod(
                    "Failed",
                    None,
                    vec![cs("clone", terminated(0, ""))],
                    vec![cs("agent", terminated(1, AGENT_FAILED))],
                ),
                Phase::Failed,
                "AgentFailed",
                "step agent failed: exit code 3",
            ),
            (
                "clone failed",
                pod(
                    "Failed",
                    None,
                    vec![cs("clone", terminated(1, CLONE_FAILED))],
                    vec![cs("agent", waiting("PodInitializing"))],
                ),
                Phase::Failed,
                "CloneFailed",
                "step clone failed: revision nope not found",
            ),
            (
                "deadline",
                pod("Failed", Some("DeadlineExceeded"), vec![], vec![cs("agent", running())]),
                Phase::TimedOut,
                "TimedOut",
                "spec.budget.timeout passed (pod activeDeadlineSeconds)",
            ),
            (
                "no result",
                pod("Failed", None, vec![], vec![cs("agent", terminated(137, "garbage"))]),
                Phase::Failed,
                "RunnerFailed",
                "container agent exited with code 137 (Completed) without a result",
            ),
            (
                "missing secret",
                pod(
                    "Pending",
                    None,
                    vec![cs("clone", waiting("CreateContainerConfigError"))],
                    vec![],
                ),
                Phase::Failed,
                "PodStartFailed",
                "container clone: CreateContainerConfigError: detail",
            ),
            (
                "evicted",
                pod("Failed", Some("Evicted"), vec![], vec![]),
                Phase::Failed,
                "PodEvicted",
                "the runner pod was evicted",
            ),
            (
                "a volume over its sizeLimit: the run's doing, not retried",
                {
                    let mut p = pod("Failed", Some("Evicted"), vec![], vec![]);
                    p.status.as_mut().unwrap().message =
                        Some("Usage of EmptyDir volume \"workspace\" exceeds the limit \"256Mi\". ".into());
                    p
                },
                Phase::Failed,
                "StorageLimitExceeded",
                "Usage of EmptyDir volume \"workspace\" exceeds the limit \"256Mi\". ",
            ),
        ];
        for (name, p, phase, reason, message) in cases {
            match classify_pod(&p) {
                PodState::Finished {
                    phase: ph,
                    reason: r,
                    message: m,
                    ..
                } => {
                    assert_eq!((ph, r.as_str(), m.as_str()), (phase, reason, message), "{name}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    /// The run ends when the gateway has stopped too: it reports the final facts on its way out.
    #[test]
    fn an_ended_agent_waits_for_its_gateway_to_report() {
        let ended_agent = vec![cs("agent", terminated(0, OK))];
        let gateway_up = vec![cs("clone", terminated(0, "")), cs("gateway", running())];
        assert_eq!(
            classify_pod(&pod("Running", None, gateway_up.clone(), ended_agent.clone())),
            PodState::Running
        );
        let mut deleted = pod("Running", None, gateway_up.clone(), ended_agent.clone());
        deleted.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        assert!(
            matches!(classify_pod(&deleted), PodState::Finished { .. }),
            "a pod being deleted ends without waiting for its gateway"
        );
        let gateway_done = vec![cs("clone", terminated(0, "")), cs("gateway", terminated(0, ""))];
        assert!(matches!(
            classify_pod(&pod("Succeeded", None, gateway_done, ended_agent)),
            PodState::Finished {
                phase: Phase::Succeeded,
                ..
            }
        ));
    }

    #[test]
    fn starting_and_running() {
        assert_eq!(
            classify_pod(&pod(
                "Running",
                None,
                vec![cs("clone", terminated(0, ""))],
                vec![cs("agent", running())]
            )),
            PodState::Running
        );
        assert_eq!(
            classify_pod(&pod(
                "Pending",
                None,
                vec![cs("clone", waiting("PodInitializing"))],
                vec![]
            )),
            PodState::Starting {
                message: "clone: PodInitializing".into()
            }
        );
        assert!(matches!(classify_pod(&Pod::default()), PodState::Starting { .. }));
    }

    #[test]
    fn phase_conditions() {
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(100).unwrap());
        let mut st = AgentRunStatus::default();
        assert!(set_phase(
            &mut st,
            Phase::Queued,
            "WaitingForCapacity",
            "position 2",
            Some(1),
            &now
        ));
        assert!(!set_phase(
            &mut st,
            Phase::Queued,
            "WaitingForCapacity",
            "position 2",
            Some(1),
            &now
        ));
        assert!(set_phase(
            &mut st,
            Phase::Running,
            "PodCreated",
            "pod r-1",
            Some(1),
            &now
        ));
        assert!(set_phase(&mut st, Phase::Succeeded, "Succeeded", "done", Some(1), &now));
        let get = |t: &str| {
            paddock_crds::condition::find_condition(&st.conditions, t)
                .map(|c| (c.status.clone(), c.reason.clone()))
                .unwrap()
        };
        assert_eq!(get(COND_SUCCEEDED), ("True".into(), "Succeeded".into()));
        assert_eq!(get(COND_QUEUED), ("False".into(), "Admitted".into()));
        assert_eq!(get(COND_RUNNING), ("False".into(), "Succeeded".into()));
        assert!(paddock_crds::condition::find_condition(&st.conditions, COND_AWAITING_APPROVAL).is_none());
    }

    /// Gate `name` at `stage`, decided `state` by `by` (onTimeout `on_timeout`).
    fn decided_gate(
        name: &str,
        stage: paddock_crds::GateStage,
        state: GateState,
        by: Option<&str>,
        on_timeout: Option<TimeoutAction>,
    ) -> ApprovalGate {
        let mut g = ApprovalGate::new(
            name,
            paddock_crds::ApprovalGateSpec {
                run_ref: paddock_crds::RunReference {
                    name: "r".into(),
                    ..Default::default()
                },
                stage,
                request: Default::default(),
                approvers: Default::default(),
                quorum: 1,
                timeout: None,
                on_timeout,
                decisions: vec![],
            },
        );
        let mut status = paddock_crds::ApprovalGateStatus {
            state: Some(state),
            decided_by: by.map(str::to_string),
            ..Default::default()
        };
        if state == GateState::Withdrawn {
            set_condition(
                &mut status.conditions,
                "Decided",
                TRUE,
                "RunFinished",
                "AgentRun r ended (Cancelled) before anyone decided",
                None,
                Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            );
        }
        g.status = Some(status);
        g
    }

    /// Every gate kind, every way of deciding it: the condition names that gate and its stage.
    #[test]
    fn the_decided_gate_is_the_one_named() {
        use paddock_crds::GateStage::*;
        for (stage, name) in [
            (BeforeStart, "r-before-start"),
            (BeforePush, "r-push"),
            (ToolUse, "r-a2-tool-3"),
        ] {
            let what = format!("ApprovalGate {name} (stage {})", stage.as_str());
            let cases = [
                (
                    GateState::Approved,
                    None,
                    "Approved",
                    format!("{what} was approved by alice"),
                ),
                (
                    GateState::Rejected,
                    None,
                    "Rejected",
                    format!("{what} was rejected by alice"),
                ),
                (
                    GateState::Expired,
                    None,
                    "Expired",
                    format!("{what} expired without a decision; onTimeout Reject"),
                ),
                (
                    GateState::Expired,
                    Some(TimeoutAction::Approve),
                    "Expired",
                    format!("{what} expired without a decision; onTimeout Approve let the run go on"),
                ),
                (
                    GateState::Withdrawn,
                    None,
                    "Withdrawn",
                    format!(
                        "{what} was withdrawn without a decision: AgentRun r ended (Cancelled) before anyone decided"
                    ),
                ),
            ];
            for (state, on_timeout, reason, message) in cases {
                let by = matches!(state, GateState::Approved | GateState::Rejected).then_some("alice");
                let g = decided_gate(name, stage, state, by, on_timeout);
                assert_eq!(gate_decided(&g), Some((reason, message.clone())), "{what} {state:?}");
                // Recorded on a run waiting for that gate.
                let now = Time(k8s_openapi::jiff::Timestamp::from_second(100).unwrap());
                let mut st = AgentRunStatus {
                    gate_name: Some(name.into()),
                    ..Default::default()
                };
                set_phase(
                    &mut st,
                    Phase::AwaitingApproval,
                    "GatePending",
                    "waiting",
                    Some(1),
                    &now,
                );
                assert!(set_gate_decided(&mut st, &g, Some(1), &now));
                let c = find_condition(&st.conditions, COND_AWAITING_APPROVAL).unwrap();
                assert_eq!(
                    (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
                    (FALSE, reason, message.as_str())
                );
            }
            let pending = decided_gate(name, stage, GateState::Pending, None, None);
            assert_eq!(gate_decided(&pending), None);
        }
    }

    /// The reported sequence: BeforeStart approved, then a BeforePush gate rejected. The
    /// conditions must speak of the push gate's rejection, never of the BeforeStart approval.
    #[test]
    fn a_rejected_push_is_not_reported_as_an_approved_start() {
        use paddock_crds::GateStage::*;
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(100).unwrap());
        let mut st = AgentRunStatus {
            gate_name: Some("r-before-start".into()),
            ..Default::default()
        };
        let awaiting = |st: &AgentRunStatus| {
            let c = find_condition(&st.conditions, COND_AWAITING_APPROVAL).unwrap();
            (c.status.clone(), c.reason.clone(), c.message.clone())
        };
        set_phase(
            &mut st,
            Phase::AwaitingApproval,
            "GatePending",
            "waiting for r-before-start",
            Some(1),
            &now,
        );
        let start = decided_gate("r-before-start", BeforeStart, GateState::Approved, Some("alice"), None);
        set_gate_decided(&mut st, &start, Some(1), &now);
        set_phase(
            &mut st,
            Phase::Running,
            "PodCreated",
            "created runner pod r-1",
            Some(1),
            &now,
        );
        assert_eq!(
            awaiting(&st),
            (
                FALSE.into(),
                "Approved".into(),
                "ApprovalGate r-before-start (stage BeforeStart) was approved by alice".into()
            )
        );
        // The agent committed; the push waits for its gate, which bob rejects.
        st.gate_name = Some("r-push".into());
        set_phase(
            &mut st,
            Phase::AwaitingApproval,
            "GatePending",
            "waiting for r-push",
            Some(1),
            &now,
        );
        let push = decided_gate("r-push", BeforePush, GateState::Rejected, Some("bob"), None);
        // A gate other than the one the run waits on changes nothing.
        assert!(!set_gate_decided(&mut st, &start, Some(1), &now));
        set_gate_decided(&mut st, &push, Some(1), &now);
        // The pod runs on for a moment (its gateway reports), then the run ends Rejected.
        set_phase(
            &mut st,
            Phase::Running,
            "AgentRunning",
            "the agent is running",
            Some(1),
            &now,
        );
        set_phase(
            &mut st,
            Phase::Rejected,
            "Rejected",
            "step push failed: rejected",
            Some(1),
            &now,
        );
        let (status, reason, message) = awaiting(&st);
        assert_eq!((status.as_str(), reason.as_str()), (FALSE, "Rejected"));
        assert_eq!(message, "ApprovalGate r-push (stage BeforePush) was rejected by bob");
        let all: Vec<&str> = st.conditions.iter().map(|c| c.message.as_str()).collect();
        assert!(!all.iter().any(|m| m.contains("BeforeStart")), "{all:?}");
    }

    /// When the reconcile could not tell how the gate was decided, the condition claims no
    /// verdict: it names the gate and says it is no longer pending.
    #[test]
    fn leaving_an_unknown_gate_claims_no_verdict() {
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(100).unwrap());
        let mut st = AgentRunStatus {
            gate_name: Some("r-tool-1".into()),
            ..Default::default()
        };
        set_phase(
            &mut st,
            Phase::AwaitingApproval,
            "GatePending",
            "waiting",
            Some(1),
            &now,
        );
        set_phase(
            &mut st,
            Phase::Running,
            "AgentRunning",
            "the agent is running",
            Some(1),
            &now,
        );
        let c = find_condition(&st.conditions, COND_AWAITING_APPROVAL).unwrap();
        assert_eq!(
            (c.reason.as_str(), c.message.as_str()),
            ("GateClosed", "ApprovalGate r-tool-1 is no longer pending")
        );
        st.gate_name = Some("r-tool-2".into());
        set_phase(
            &mut st,
            Phase::AwaitingApproval,
            "GatePending",
            "waiting",
            Some(1),
            &now,
        );
        set_phase(
            &mut st,
            Phase::Cancelled,
            "Cancelled",
            "spec.cancel was set",
            Some(1),
            &now,
        );
        let c = find_condition(&st.conditions, COND_AWAITING_APPROVAL).unwrap();
        assert_eq!(
            (c.reason.as_str(), c.message.as_str()),
            ("Cancelled", "the run ended while ApprovalGate r-tool-2 was pending")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(5), "5s");
        assert_eq!(format_duration(192), "3m12s");
        assert_eq!(format_duration(3720), "1h2m");
    }
}
