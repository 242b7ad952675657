//! The vocabulary of [`super::decide`]: what it reads ([`Facts`], asked for one [`Need`] at
//! a time), what it decides ([`Plan`]: the status, the Events, the [`Effect`]s), and the
//! small steps every decision shares ([`Plan::to`], [`Plan::keep_cached`]).

use crate::controller::agentrun::artifacts::{GatewayLog, ParsedLog};
use crate::controller::agentrun::build::PodUplink;
use crate::controller::agentrun::kueue;
use crate::controller::agentrun::prompt::{set_prompt, PromptText};
use crate::controller::agentrun::status::{set_phase, COND_SUCCEEDED};
use crate::controller::agentrunset::Selection;
use crate::controller::egress::Egress;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use paddock_crds::condition::find_condition;
use paddock_crds::{AgentRun, AgentRunStatus, ApprovalGate, Phase, Reason, RunnerPool, VerificationStatus};
use std::time::Duration;

/// How often a queued run re-checks its pool's capacity (from the cache, no API calls).
pub const QUEUE_RECHECK: Duration = Duration::from_secs(2);
/// Grace the operator gives the kubelet's own `activeDeadlineSeconds` before it ends a run as
/// TimedOut itself (seconds).
pub const DEADLINE_GRACE_SECS: i64 = 15;
/// Most runner events turned into Kubernetes Events when a run ends without its follower
/// having reported them.
pub const CATCH_UP_EVENTS: usize = 20;
/// Default wait before a retry (doubled after each one), when `spec.retry.backoff` is unset
/// (seconds).
pub const DEFAULT_BACKOFF_SECS: u64 = 10;
/// Longest wait before a retry (seconds).
pub const MAX_BACKOFF_SECS: u64 = 600;

/// The current attempt's pod, as found.
#[derive(Clone, Debug)]
pub enum PodLookup {
    /// No pod of that name.
    Absent,
    /// The run's own pod (an owner reference with its UID).
    Own(Box<Pod>),
    /// A pod of that name this run does not own (an earlier run of the same name, deleted with
    /// `--cascade=orphan`): never adopted, and its name is not free for a cold pod.
    Foreign,
}

pub use crate::controller::agentrun::resume::ResumeSource;

/// What the pool's queue looks like to this run, from the controller's cache.
#[derive(Clone, Debug, Default)]
pub struct QueueFacts {
    /// The cached runs (every namespace).
    pub runs: Vec<std::sync::Arc<AgentRun>>,
    /// Runs admitted (pod created) that the cache may not show yet, `namespace/name`.
    pub admitted: std::collections::HashSet<String>,
    /// Whether the cache holds its first full list (counting before that admits too many).
    pub ready: bool,
}

/// The ending attempt's logs: what the API server still has of the pod's containers, what
/// the log follower read live, and the gateway's (trusted) lines.
#[derive(Debug, Default)]
pub struct EndFacts {
    /// The runner's log as fetched (all containers but the gateway).
    pub log: String,
    /// What the log follower kept of it, if it read any.
    pub followed: Option<String>,
    /// The gateway container's log, parsed, with its termination message's facts.
    pub gateway: GatewayLog,
}

/// A verification's progress as read by [`super::verifying`]: the status to record, whether it
/// is final, and the writes it asks for.
#[derive(Clone, Debug)]
pub struct VerifyRead {
    /// The verification as it now stands.
    pub verification: VerificationStatus,
    /// Whether `verification` is final.
    pub done: bool,
    /// The checks' pod to create (not created yet).
    pub create_pod: Option<Pod>,
    /// The checks' pod to delete (overdue).
    pub delete_pod: Option<String>,
}

/// A held push's verification, read while the agent's pod runs.
#[derive(Clone, Debug, Default)]
pub struct HeldRead {
    /// The verification to record, when there is something new.
    pub verification: Option<VerificationStatus>,
    /// The agent's metered usage, final once the verification is.
    pub usage: Option<paddock_crds::events::Usage>,
}

/// Everything [`decide`] may need, each `None` until read. [`PodLookup`] and the attempt are
/// always read (from the pod cache first).
#[derive(Default)]
pub struct Facts {
    /// The attempt the run is on (`status.attempt`, else 1).
    pub attempt: u32,
    /// The current attempt's pod name (recorded, else the cold pod's name).
    pub pod_name: String,
    /// The pod of that name.
    pub pod: Option<PodLookup>,
    /// Whether the API server shows the run past its attempt on `pod_name` ([`Need::MovedPast`]).
    pub moved_past: Option<bool>,
    /// Whether the API server's status of the run already names the pod `pod_name`, or moved
    /// past it ([`Need::PodRecorded`]).
    pub pod_recorded: Option<bool>,
    /// The gate the run waits on (`status.gateName`), if it is the run's.
    pub awaited_gate: Option<Option<ApprovalGate>>,
    /// The log the follower read of a pod that is gone.
    pub followed_log: Option<Option<String>>,
    /// Whether the cache still shows the retried attempt's pod, not being deleted.
    pub retried_pod_alive: bool,
    /// The RunnerPool as it is now (`None` inside: it does not exist).
    pub pool: Option<Option<RunnerPool>>,
    /// The prompt from `spec.promptFrom` (`None` inside: the key does not exist).
    pub prompt_from: Option<Option<String>>,
    /// `spec.prompt`, read from the API server ([`Need::SpecPrompt`]; the cache keeps none).
    pub spec_prompt: Option<PromptText>,
    /// The BeforeStart gate: the name the run asks under, and the gate if it exists.
    pub start_gate: Option<(String, Option<ApprovalGate>)>,
    /// `spec.resumeFrom`'s source.
    pub resume: Option<ResumeSource>,
    /// The pool's egress gateway (its objects applied, by the pool's own reconcile logic).
    pub egress: Option<EgressFacts>,
    /// The run's Kueue Workload's admission (`None` inside: no Workload yet).
    pub workload: Option<Option<kueue::Admission>>,
    /// The admitted flavors' node labels and tolerations.
    pub flavors: Option<kueue::Placement>,
    /// The pool's queue.
    pub queue: Option<QueueFacts>,
    /// The pool's admission lock, held from the queue's count until the pod exists (not a
    /// fact: [`decide`] never reads it).
    pub admitting: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// The operator's verdict key (signs claims and verdicts), for the pod spec.
    pub verdict_key: String,
    /// Whether the operator runs with Kueue (`--kueue`).
    pub kueue: bool,
    /// Whether the runner's progress steps are published as Events (`--step-events`).
    pub step_events: bool,
    /// The ending attempt's logs.
    pub ending: Option<EndFacts>,
    /// The set's selection, for a set's candidate.
    pub selection: Option<Selection>,
    /// The first pending in-run gate of the pod's attempt (after the verdicts were handed on).
    pub in_run_gate: Option<Option<ApprovalGate>>,
    /// Where the plan review of the pod's attempt stands (`spec.approvals.plan`).
    pub plan: Option<crate::controller::agentrun::approvals::PlanVerdict>,
    /// A held push's verification.
    pub held: Option<HeldRead>,
    /// The approval requests the log follower read and no gate was raised for yet:
    /// `(pod, request)`.
    pub requests: Option<Vec<(String, crate::inflight::Request)>>,
    /// The verification after the agent's end.
    pub verify: Option<VerifyRead>,
}

/// The pool's egress gateway as the run sees it.
#[derive(Clone, Debug)]
pub enum EgressFacts {
    /// Ready: the pod's way out.
    Ready(PodUplink),
    /// An object of that name is someone else's: why.
    NameTaken(String),
    /// No available gateway pod yet.
    NotReady,
}

impl From<Egress> for EgressFacts {
    fn from(e: Egress) -> Self {
        match e {
            Egress::Ready(u) => EgressFacts::Ready(u),
            Egress::NameTaken(why) => EgressFacts::NameTaken(why),
            Egress::NotReady => EgressFacts::NotReady,
        }
    }
}

/// A fact [`decide`] needs before it can decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// Ask the API server (not the cache) whether the run moved past its attempt.
    MovedPast,
    /// Ask the API server (not the cache) whether the run's status names its pod: a pod the
    /// cached status does not name was started by a pass whose status write the cache does not
    /// show yet, or just before the operator stopped.
    PodRecorded,
    /// The gate named in `status.gateName`.
    AwaitedGate,
    /// The log the follower kept of a pod that is gone.
    FollowedLog,
    /// The RunnerPool.
    Pool,
    /// `spec.promptFrom`'s ConfigMap key.
    Prompt,
    /// `spec.prompt`: one GET of the run (the cache keeps no prompt), asked for only by the
    /// writes that carry it: the pod's start and the BeforeStart gate's creation.
    SpecPrompt,
    /// The BeforeStart gate.
    StartGate,
    /// `spec.resumeFrom`'s run.
    Resume,
    /// The pool's egress gateway.
    Egress,
    /// The Kueue Workload.
    Workload,
    /// The admitted flavors.
    Flavors(Vec<String>),
    /// The pool's queue (and its admission lock).
    Queue,
    /// The ending attempt's logs (the follower is stopped first).
    Ending,
    /// The set's selection.
    Selection,
    /// The in-run gates (their verdicts handed to the pod).
    InRunGates,
    /// The plan review's gates of the pod's attempt.
    Plan,
    /// A held push's verification.
    Held,
    /// The approval requests the log follower read.
    Requests,
    /// The verification after the agent's end.
    Verify,
}

/// A write the plan makes, in order, before the status write (unless said otherwise).
#[derive(Debug)]
pub enum Effect {
    /// Create the BeforeStart gate (created once, never re-applied: humans own its decisions).
    CreateGate(Box<ApprovalGate>),
    /// Create the run's Kueue Workload for this pod in this LocalQueue.
    CreateWorkload {
        /// The LocalQueue.
        queue: String,
        /// The pod the Workload describes.
        pod: Box<Pod>,
    },
    /// Start the run's pod: claim a warm pod of the pool, else apply this cold pod.
    StartPod(Box<StartPod>),
    /// Make sure a log follower reads this pod.
    Follow(String),
    /// Delete this pod now (cancel, deadline).
    DeletePod(String),
    /// Delete this pod once the status is written (a retried attempt's pod).
    DeletePodAfterStatus(String),
    /// Store the run's artifacts (log, patch, session) and the gateway's transcript.
    StoreArtifacts(Box<ParsedLog>),
    /// Store a retried attempt's log as `<run>-log-<attempt>`.
    StoreAttemptLog(u32, Box<ParsedLog>),
    /// Create the verification's pod.
    CreateVerificationPod(Box<Pod>),
    /// Delete an overdue verification pod, best effort (errors are logged).
    DeleteVerificationPod(String),
    /// Raise the gate of an approval request the runner made from pod `pod`
    /// ([`crate::controller::agentrun::approvals::raise`]); forgotten once settled.
    RaiseRequest {
        /// The pod that asked.
        pod: String,
        /// The request.
        request: Box<crate::inflight::Request>,
    },
}

impl Effect {
    /// The name of the effect's kind (`StartPod`, `CreateGate`, …), for errors and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            Effect::CreateGate(_) => "CreateGate",
            Effect::CreateWorkload { .. } => "CreateWorkload",
            Effect::StartPod(_) => "StartPod",
            Effect::Follow(_) => "Follow",
            Effect::DeletePod(_) => "DeletePod",
            Effect::DeletePodAfterStatus(_) => "DeletePodAfterStatus",
            Effect::StoreArtifacts(_) => "StoreArtifacts",
            Effect::StoreAttemptLog(..) => "StoreAttemptLog",
            Effect::CreateVerificationPod(_) => "CreateVerificationPod",
            Effect::DeleteVerificationPod(_) => "DeleteVerificationPod",
            Effect::RaiseRequest { .. } => "RaiseRequest",
        }
    }
}

/// The pod to start, and what the status says once it has started. Made by [`StartPod::new`]
/// only, which puts the prompt into the cold pod: the pod and the prompt cannot be set apart.
#[derive(Debug)]
pub struct StartPod {
    /// The cold pod, prompt included (applied when no warm pod is claimed).
    pod: Pod,
    /// The prompt (a warm claim carries it).
    prompt: PromptText,
    /// The pool (as admitted).
    pub pool: RunnerPool,
    /// Whether a warm pod may be claimed (Kueue's flavors may place the pod elsewhere).
    pub warm_allowed: bool,
    /// The pod's way out.
    pub uplink: PodUplink,
    /// Counted as admitted until the cache shows the pod (pools with `maxConcurrentRuns`).
    pub admit: bool,
}

impl StartPod {
    /// The start of cold pod `pod` ([`crate::controller::agentrun::build::build_pod`], which
    /// leaves `PADDOCK_PROMPT` empty) with `prompt` put in ([`set_prompt`]); the other fields
    /// as documented on them.
    pub fn new(
        mut pod: Pod,
        prompt: PromptText,
        pool: RunnerPool,
        warm_allowed: bool,
        uplink: PodUplink,
        admit: bool,
    ) -> Self {
        set_prompt(&mut pod, &prompt);
        Self {
            pod,
            prompt,
            pool,
            warm_allowed,
            uplink,
            admit,
        }
    }

    /// The cold pod, prompt included.
    pub fn pod(&self) -> &Pod {
        &self.pod
    }

    /// The prompt.
    pub fn prompt(&self) -> &PromptText {
        &self.prompt
    }
}

/// What one pass decided.
#[derive(Debug)]
pub struct Plan {
    /// The status to write (compared with the current one; equal means no write).
    pub status: AgentRunStatus,
    /// Events to publish after the status write: (type, reason, note).
    pub events: Vec<(EventType, String, String)>,
    /// Writes, in order.
    pub effects: Vec<Effect>,
    /// When to look again.
    pub action: Action,
    /// Leave the run as cached: no status write, no Event (the API server is ahead of the cache).
    pub keep_cached: bool,
}

/// One step of the decision: a plan, or a fact to read first.
#[derive(Debug)]
pub enum Step {
    /// Read this, then decide again.
    Need(Need),
    /// Apply this.
    Plan(Box<Plan>),
}

impl Plan {
    /// The plan that changes nothing yet: the run's status with its observedGeneration.
    pub fn new(run: &AgentRun) -> Self {
        let mut status = run.status.clone().unwrap_or_default();
        status.observed_generation = run.metadata.generation;
        Plan {
            status,
            events: vec![],
            effects: vec![],
            action: Action::await_change(),
            keep_cached: false,
        }
    }

    /// Moves the status to `phase` and queues an Event when the phase or reason changed. A
    /// terminal transition happens at `status.completionTime` when it is already known (the
    /// pod's end), so a reconcile that ends the run again from a stale cache writes the same
    /// times instead of later ones.
    pub fn transition(&mut self, run: &AgentRun, now: &Time, phase: Phase, reason: &str, message: &str) {
        let before = (self.status.phase, succeeded_reason(&self.status));
        let at = match &self.status.completion_time {
            Some(t) if phase.is_terminal() => t.clone(),
            _ => now.clone(),
        };
        set_phase(&mut self.status, phase, reason, message, run.metadata.generation, &at);
        if phase.is_terminal() && self.status.completion_time.is_none() {
            self.status.completion_time = Some(at);
        }
        if before != (Some(phase), succeeded_reason(&self.status)) {
            let t = match phase {
                Phase::Failed | Phase::TimedOut | Phase::Rejected => EventType::Warning,
                _ => EventType::Normal,
            };
            self.events.push((t, reason.to_string(), message.to_string()));
        }
    }

    pub fn to(mut self, run: &AgentRun, now: &Time, phase: Phase, reason: Reason, message: &str) -> Step {
        self.transition(run, now, phase, reason.as_str(), message);
        self.done()
    }

    pub fn requeue(mut self, after: Duration) -> Self {
        self.action = Action::requeue(after);
        self
    }

    pub fn done(self) -> Step {
        Step::Plan(Box::new(self))
    }

    /// Leaves the run as cached: nothing to write, not even its observedGeneration (a newer
    /// one would make the reconcile apply this stale status over what the API server has), no
    /// Event. The watch brings the newer run, and another reconcile, soon.
    pub fn keep_cached(mut self, run: &AgentRun) -> Step {
        self.status = run.status.clone().unwrap_or_default();
        self.events.clear();
        self.effects.clear();
        self.keep_cached = true;
        self.done()
    }
}

/// The reason of the `Succeeded` condition, if set.
pub fn succeeded_reason(st: &AgentRunStatus) -> Option<String> {
    find_condition(&st.conditions, COND_SUCCEEDED).map(|c| c.reason.clone())
}

/// Seconds since the epoch.
pub fn secs(t: &Time) -> i64 {
    t.0.as_second()
}

/// Adds `effect` to a plan (after the plan's own).
pub fn with_effect(step: Step, effect: Effect) -> Step {
    match step {
        Step::Plan(mut p) if !p.keep_cached => {
            p.effects.push(effect);
            Step::Plan(p)
        }
        other => other,
    }
}
