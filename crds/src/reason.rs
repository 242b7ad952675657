//! The reasons of an AgentRun's conditions (`Succeeded`, `Queued`, `AwaitingApproval`,
//! `Running`, `Verified`), as one typed list shared by the operator (which sets them), the
//! `kubectl paddock` plugin and the e2e tests (which read them). docs/api.md ("Conditions and
//! reasons") documents each one; a test there checks the two lists agree.
//!
//! A condition's `reason` is a string on the wire (`metav1.Condition`: CamelCase, at most 1024
//! characters, <https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#typical-status-properties>);
//! [`Reason::as_str`] gives it and [`Reason::parse`] reads one back. A reason the runner reports
//! (`status.result.reason`, agent-reported) is kept as the runner said it only when it is one of
//! these ([`Reason::from_runner`]).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

macro_rules! reasons {
    ($($(#[doc = $doc:literal])+ $name:ident,)+) => {
        /// A reason of an AgentRun condition. The variant's name is the wire string.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[doc = $doc])+ $name,)+
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)+];

            /// The wire string (the variant's name).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name),)+
                }
            }
        }
    };
}

reasons! {
    // --- waiting before a pod exists (Succeeded Unknown, or Failed once waited too long) ---
    /// `spec.runnerPoolRef` names no pool (Pending; Failed after [`POOL_WAIT_SECS`] from creation).
    PoolNotFound,
    /// `spec.promptFrom` names a ConfigMap key that does not exist (Pending, rechecked).
    PromptNotFound,
    /// The cold pod's name is taken by a pod this run does not own.
    PodNameTaken,
    /// The pool's egress gateway has no available pod yet.
    WaitingForEgressGateway,
    /// An object named like the pool's egress gateway or policies belongs to someone else.
    EgressNameTaken,
    /// `spec.resumeFrom` names a run that does not exist yet or has not ended.
    WaitingForResumeSource,
    /// `spec.resumeFrom` can never be resumed (other agent, no saved session, gone too long).
    ResumeNotPossible,
    /// The run waits for a free slot of its pool (`maxConcurrentRuns`; condition `Queued`).
    WaitingForCapacity,
    /// The run waits for Kueue to admit its Workload (condition `Queued`).
    WaitingForKueue,
    /// Condition `Queued` False: the run was admitted.
    Admitted,
    /// Summary reason of `Succeeded` Unknown while a `Queued` condition holds.
    Queued,
    /// Summary reason of `Succeeded` Unknown while an `AwaitingApproval` condition holds.
    AwaitingApproval,
    /// Summary reason of `Succeeded` Unknown while the run runs.
    Running,
    // --- approvals (condition AwaitingApproval) ---
    /// A gate of the run waits for a decision.
    GatePending,
    /// The gate the run waited on was approved.
    Approved,
    /// The gate was rejected (also the run's final reason: phase `Rejected`).
    Rejected,
    /// A `Plan` gate's reviewer requested changes; the agent plans again (condition
    /// AwaitingApproval False).
    ChangesRequested,
    /// The gate expired (condition AwaitingApproval False).
    Expired,
    /// The gate was withdrawn without a decision (condition AwaitingApproval False).
    Withdrawn,
    /// The operator could not read the gate the run waited on.
    GateClosed,
    /// The BeforeStart/BeforePush gate expired with `onTimeout: Reject` (phase `Rejected`).
    GateExpired,
    /// The BeforeStart gate was withdrawn (phase `Rejected`).
    GateWithdrawn,
    // --- the pod (condition Running) ---
    /// A cold runner pod was created.
    PodCreated,
    /// A warm pod of the pool was claimed.
    PodClaimed,
    /// The pod is starting (init containers, image pulls).
    PodStarting,
    /// The agent container runs.
    AgentRunning,
    /// A set's candidate, verified, whose push waits for the set's selection.
    AwaitingSelection,
    /// The agent is done and its change is being verified (`spec.verify`).
    Verifying,
    /// An attempt ended for a reason outside the agent's control and another one starts.
    Retrying,
    // --- the end (condition Succeeded True/False) ---
    /// The run succeeded.
    Succeeded,
    /// An AgentRunSet's candidate whose set chose another (Succeeded; not pushed).
    NotSelected,
    /// `spec.verify.required` and the checks did not pass.
    VerificationFailed,
    /// The agent CLI failed (runner-reported).
    AgentFailed,
    /// The run's branch is not allowed by its pool.
    BranchNotAllowed,
    /// The clone step failed (runner-reported).
    CloneFailed,
    /// The commit step failed (runner-reported).
    CommitFailed,
    /// The diff step failed (runner-reported).
    DiffFailed,
    /// The push step failed (runner-reported or the gateway's).
    PushFailed,
    /// The runner was stopped by a signal (runner-reported).
    Terminated,
    /// The runner refused its configuration (runner-reported).
    InvalidConfig,
    /// The run's spec cannot be turned into a pod.
    InvalidSpec,
    /// A container of the pod cannot start (bad image, missing Secret, …).
    PodStartFailed,
    /// The kubelet evicted the pod.
    PodEvicted,
    /// A volume went over its `sizeLimit`.
    StorageLimitExceeded,
    /// The pod failed without a runner result.
    PodFailed,
    /// The pod disappeared (deleted, or lost with its node) before the run ended.
    PodLost,
    /// Someone deleted the pod while the run went on.
    PodDeleted,
    /// The runner ended without a result.
    RunnerFailed,
    /// A container was killed for memory.
    OOMKilled,
    /// `spec.budget.timeout` passed.
    TimedOut,
    /// `spec.cancel` was set.
    Cancelled,
    /// An override of the run is not allowed by its pool.
    OverrideNotAllowed,
    /// `spec.approvals.plan` and the agent ended without an approved plan (Failed; the gateway
    /// pushed nothing).
    PlanNotApproved,
    /// The gateway's budget (`maxCostUSD`, `maxOutputTokens`) was spent.
    BudgetExceeded,
    /// The run asks for a Kueue LocalQueue and the operator runs without `--kueue`.
    KueueNotEnabled,
    /// The model endpoint answered 429/5xx to the last call (seen by the gateway).
    ModelUnavailable,
    // --- verification (condition Verified) ---
    /// The verification checks passed.
    Passed,
    /// The verification checks failed.
    ChecksFailed,
    /// The change touched a path `spec.verify.protectedPaths` protects.
    ProtectedPathChanged,
    /// The change is too large to verify.
    PatchTooLarge,
    /// The stored patch is not the one the pod's gateway produced.
    PatchChanged,
    /// The patch did not apply on the base commit.
    PatchDidNotApply,
    /// The verification pod failed, disappeared, or is not the operator's.
    VerificationPodFailed,
    /// The verification did not end in time.
    VerificationTimedOut,
}

/// How long a run waits for a missing RunnerPool or `resumeFrom` run, counted from its
/// creation, before it fails (seconds).
pub const POOL_WAIT_SECS: i64 = 300;

impl Reason {
    /// The reason named `s`, if it is one of these.
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.as_str() == s)
    }

    /// A reason the runner (in the agent's container, so agent-reported) gave for the run's
    /// end: kept when it is one of the reasons a runner reports, else `AgentFailed` (the
    /// message keeps what was said).
    pub fn from_runner(s: &str) -> Reason {
        match Reason::parse(s) {
            Some(
                r @ (Reason::Succeeded
                | Reason::AgentFailed
                | Reason::CloneFailed
                | Reason::CommitFailed
                | Reason::DiffFailed
                | Reason::PushFailed
                | Reason::Terminated
                | Reason::InvalidConfig
                | Reason::BudgetExceeded
                | Reason::ModelUnavailable
                | Reason::Rejected
                | Reason::GateExpired
                | Reason::PlanNotApproved),
            ) => r,
            _ => Reason::AgentFailed,
        }
    }

    /// Whether `condition` has this reason.
    pub fn is(self, condition: &Condition) -> bool {
        condition.reason == self.as_str()
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<Reason> for str {
    fn eq(&self, other: &Reason) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Reason> for String {
    fn eq(&self, other: &Reason) -> bool {
        self == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_reads_back_and_is_camel_case() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
            assert!(r.as_str().chars().next().unwrap().is_ascii_uppercase(), "{r}");
            assert!(r.as_str().chars().all(|c| c.is_ascii_alphanumeric()), "{r}");
        }
        assert_eq!(Reason::parse("NoSuchReason"), None);
    }

    #[test]
    fn a_runner_reason_outside_its_list_is_agent_failed() {
        assert_eq!(Reason::from_runner("CloneFailed"), Reason::CloneFailed);
        assert_eq!(Reason::from_runner("Rejected"), Reason::Rejected);
        // Reasons only the operator may give are not taken from the agent's container.
        assert_eq!(Reason::from_runner("NotSelected"), Reason::AgentFailed);
        assert_eq!(Reason::from_runner("VerificationFailed"), Reason::AgentFailed);
        assert_eq!(Reason::from_runner("anything"), Reason::AgentFailed);
    }

    /// docs/api.md's "Conditions and reasons" table names exactly these reasons (summary
    /// reasons of `Succeeded` Unknown included).
    #[test]
    fn the_api_docs_list_every_reason_and_no_other() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md")).unwrap();
        let start = doc.find("### Conditions and reasons").expect("section");
        let section = &doc[start..];
        let table: String = section
            .lines()
            .skip(1)
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(|l| l.splitn(4, '|').nth(3).unwrap_or_default().to_string() + "\n")
            .collect();
        let mut named = std::collections::BTreeSet::new();
        for piece in table.split('`').skip(1).step_by(2) {
            if piece.chars().all(|c| c.is_ascii_alphanumeric()) && piece.starts_with(|c: char| c.is_ascii_uppercase()) {
                named.insert(piece.to_string());
            }
        }
        // A stage quoted in a message's example, not a reason.
        named.remove("BeforePush");
        let ours: std::collections::BTreeSet<String> = Reason::ALL.iter().map(|r| r.as_str().to_string()).collect();
        let missing: Vec<_> = ours.difference(&named).collect();
        let unknown: Vec<_> = named.difference(&ours).collect();
        assert!(missing.is_empty(), "reasons not in docs/api.md: {missing:?}");
        assert!(
            unknown.is_empty(),
            "docs/api.md names reasons Reason lacks: {unknown:?}"
        );
    }
}
