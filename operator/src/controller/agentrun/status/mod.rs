//! Pure status computation: what a runner pod's state means for its AgentRun, and the
//! conditions of each phase. No I/O; table-tested.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use paddock_crds::condition::{find_condition, set_condition, FALSE, TRUE, UNKNOWN};
use paddock_crds::events::{Outcome, RunResult};
use paddock_crds::{AgentRunStatus, ApprovalGate, GateState, Phase, Reason, TimeoutAction};

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

/// Container waiting reasons of a pod that starts as it should: a container waits for the one
/// before it (`PodInitializing`) or for its own creation (`ContainerCreating`: the sandbox, the
/// image pull). What the `PodCreated`/`PodClaimed` condition says already.
const STARTING_NORMALLY: &[&str] = &["PodInitializing", "ContainerCreating"];

/// Whether `pod` starts as it should: none of its containers waits for another reason than
/// [`STARTING_NORMALLY`] (an image pull back-off, a crash loop: news for the run's status).
/// Pure.
pub fn starting_normally(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else { return true };
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .filter_map(|cs| cs.state.as_ref()?.waiting.as_ref())
        .all(|w| w.reason.as_deref().is_some_and(|r| STARTING_NORMALLY.contains(&r)))
}

/// When `pod`'s agent started working for the run: the `agent` container's start (its running
/// state's `startedAt`), or `since` when that is later (a claimed warm pod's agent container
/// ran before the claim, made at `since`). `None` when the pod does not say. Pure.
pub fn agent_started(pod: &Pod, since: Option<&Time>) -> Option<Time> {
    let started = pod
        .status
        .as_ref()?
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == "agent")?
        .state
        .as_ref()?
        .running
        .as_ref()?
        .started_at
        .clone()?;
    Some(match since {
        Some(s) if s.0 > started.0 => s.clone(),
        _ => started,
    })
}

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
            reason: Reason::Succeeded.to_string(),
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
            // Agent-reported: a reason the runner does not give is not taken as the run's.
            let reason = Reason::from_runner(&r.reason);
            let reported = if r.reason == reason {
                String::new()
            } else {
                format!(" (reported reason {:?})", paddock_crds::events::truncate(&r.reason, 64))
            };
            PodState::Finished {
                phase: Phase::Failed,
                reason: reason.to_string(),
                message: format!("step {step} failed: {}{reported}", r.message),
                result: Some(Box::new(r)),
            }
        }
        None => PodState::Finished {
            phase: Phase::Failed,
            reason: if kubelet_reason == "OOMKilled" {
                Reason::OOMKilled.to_string()
            } else {
                Reason::RunnerFailed.to_string()
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
            reason: Reason::TimedOut.to_string(),
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
                reason: Reason::StorageLimitExceeded.to_string(),
                message,
                result: None,
            };
        }
        return PodState::Finished {
            phase: Phase::Failed,
            reason: Reason::PodEvicted.to_string(),
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
                    reason: Reason::PodStartFailed.to_string(),
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
            reason: Reason::PodFailed.to_string(),
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
            set(COND_SUCCEEDED, UNKNOWN, Reason::Queued.as_str(), message);
            set(COND_QUEUED, TRUE, reason, message);
        }
        Phase::AwaitingApproval => {
            set(COND_SUCCEEDED, UNKNOWN, Reason::AwaitingApproval.as_str(), message);
            set(COND_AWAITING_APPROVAL, TRUE, reason, message);
        }
        Phase::Running => {
            set(COND_SUCCEEDED, UNKNOWN, Reason::Running.as_str(), message);
            set(COND_RUNNING, TRUE, reason, message);
            if had_queue {
                set(COND_QUEUED, FALSE, Reason::Admitted.as_str(), "the pool had capacity");
            }
            if had_gate {
                // The reconcile records how the gate was decided first (set_gate_decided);
                // reached only when it could not tell.
                set(
                    COND_AWAITING_APPROVAL,
                    FALSE,
                    Reason::GateClosed.as_str(),
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
                set(COND_AWAITING_APPROVAL, FALSE, Reason::Rejected.as_str(), message);
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
        GateState::Approved => (Reason::Approved.as_str(), format!("{what} was approved{by}")),
        GateState::Rejected => (Reason::Rejected.as_str(), format!("{what} was rejected{by}")),
        GateState::ChangesRequested => (
            Reason::ChangesRequested.as_str(),
            format!("{what}: changes were requested{by}; the agent plans again"),
        ),
        GateState::Expired if gate.spec.on_timeout == Some(TimeoutAction::Approve) => (
            Reason::Expired.as_str(),
            format!("{what} expired without a decision; onTimeout Approve let the run go on"),
        ),
        GateState::Expired => (
            Reason::Expired.as_str(),
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

/// The attempt in a runner pod's `paddock.dev/attempt` label (cold pods and claimed warm pods
/// carry it).
pub fn attempt_label(pod: &Pod) -> Option<u32> {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(paddock_crds::LABEL_ATTEMPT))
        .and_then(|a| a.parse().ok())
}

/// The attempt number in a pod name `<run>-<attempt>` (1 when it has none).
pub fn attempt_of(pod_name: &str) -> u32 {
    pod_name.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(1)
}

#[cfg(test)]
mod tests;
