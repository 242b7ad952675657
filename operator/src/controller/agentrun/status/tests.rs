//! Tests of the pod classification and the status conditions.
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
const AGENT_FAILED: &str =
    r#"{"outcome":"Failed","reason":"AgentFailed","failedStep":"agent","message":"exit code 3","branch":"paddock/r"}"#;
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
                format!("{what} was withdrawn without a decision: AgentRun r ended (Cancelled) before anyone decided"),
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

#[test]
fn a_pod_starts_normally_while_its_containers_wait_only_their_turn() {
    let table: Vec<(&str, Pod, bool)> = vec![
        ("no status yet", Pod::default(), true),
        ("no container yet", pod("Pending", None, vec![], vec![]), true),
        (
            "the clone runs, the agent waits for it",
            pod(
                "Pending",
                None,
                vec![cs("gateway", running()), cs("clone", running())],
                vec![cs("agent", waiting("PodInitializing"))],
            ),
            true,
        ),
        (
            "images are pulled",
            pod(
                "Pending",
                None,
                vec![cs("clone", waiting("ContainerCreating"))],
                vec![cs("agent", waiting("PodInitializing"))],
            ),
            true,
        ),
        (
            "an image cannot be pulled",
            pod(
                "Pending",
                None,
                vec![cs("clone", running())],
                vec![cs("agent", waiting("ImagePullBackOff"))],
            ),
            false,
        ),
        (
            "a sidecar crash-loops",
            pod(
                "Pending",
                None,
                vec![cs("gateway", waiting("CrashLoopBackOff"))],
                vec![],
            ),
            false,
        ),
    ];
    for (name, p, want) in table {
        assert_eq!(starting_normally(&p), want, "{name}");
    }
}

#[test]
fn the_agent_starts_working_for_the_run_at_its_start_or_its_claim() {
    let t = |s: i64| Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap());
    let started = |s: i64| {
        pod(
            "Running",
            None,
            vec![],
            vec![cs(
                "agent",
                ContainerState {
                    running: Some(ContainerStateRunning { started_at: Some(t(s)) }),
                    ..Default::default()
                },
            )],
        )
    };
    // A cold pod: its agent container's start, after the pod's creation.
    assert_eq!(agent_started(&started(100), Some(&t(90))), Some(t(100)));
    // A warm pod: its agent container ran before the claim; the claim is the start.
    assert_eq!(agent_started(&started(10), Some(&t(90))), Some(t(90)));
    assert_eq!(agent_started(&started(10), None), Some(t(10)));
    // Not running, or no start given: unknown.
    assert_eq!(
        agent_started(&pod("Pending", None, vec![], vec![cs("agent", running())]), None),
        None
    );
    assert_eq!(agent_started(&pod("Pending", None, vec![], vec![]), Some(&t(90))), None);
}
