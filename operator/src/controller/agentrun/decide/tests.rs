//! The table test of [`super::decide`]: every phase transition of an AgentRun, from facts to
//! plan, and a check that the rows together produce every condition reason of
//! [`paddock_crds::Reason`] (the list docs/api.md documents).

use super::*;
use crate::controller::agentrun::approvals::PlanVerdict;
use crate::controller::agentrun::artifacts::parse_gateway_log;
use crate::controller::agentrun::build::PodUplink;
use crate::controller::agentrun::prompt::PromptText;
use crate::controller::agentrun::status::COND_SUCCEEDED;
use crate::controller::agentrunset::Selection;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use paddock_crds::{ApprovalGate, RunnerPool, VerificationResult, VerificationStatus};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// The run's creation time (seconds since the epoch); the clock reads a minute later.
const T0: i64 = 1_800_000_000;

fn at(s: i64) -> Time {
    Time(Timestamp::from_second(s).unwrap())
}

fn now() -> Time {
    at(T0 + 60)
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

/// Run `r` in namespace `ns` (uid `u`), shell agent, created at [`T0`], with `spec` merged
/// into a minimal spec (prompt `p`) and `status` as given: as the cache has it, without its
/// prompt ([`paddock_crds::cache::slim_agent_run`]).
fn run(spec: Value, status: Value) -> AgentRun {
    let mut r = full_run(spec, status);
    paddock_crds::cache::slim_agent_run(&mut r);
    r
}

/// [`run`] as the API server has it, prompt included.
fn full_run(spec: Value, status: Value) -> AgentRun {
    let mut s = json!({"repo": {"url": "https://example.com/r.git"}, "agent": {"name": "shell"}, "prompt": "p"});
    merge(&mut s, spec);
    let mut r: AgentRun = serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": "r", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": s, "status": status,
    }))
    .unwrap();
    r.metadata.creation_timestamp = Some(at(T0));
    r
}

fn pool(spec: Value) -> RunnerPool {
    let mut s = json!({"template": {"image": "localhost/paddock/runner:dev"}});
    merge(&mut s, spec);
    let mut p = RunnerPool::new("default", serde_json::from_value(s).unwrap());
    p.metadata.namespace = Some("ns".into());
    p.metadata.uid = Some("pool-uid".into());
    p
}

fn uplink() -> PodUplink {
    PodUplink {
        proxy: "http://10.0.0.9:3128".into(),
        token: "t".into(),
    }
}

/// What every pass reads, for a run on attempt 1 without a pod.
fn base() -> Facts {
    Facts {
        attempt: 1,
        pod_name: "r-1".into(),
        pod: Some(PodLookup::Absent),
        requests: Some(vec![]),
        verdict_key: "key".into(),
        ..Default::default()
    }
}

/// [`base`] with the pool and its egress ready, and `spec.prompt` (`p`) as read from the API
/// server: a run that may start.
fn ready() -> Facts {
    Facts {
        pool: Some(Some(pool(json!({})))),
        egress: Some(EgressFacts::Ready(uplink())),
        spec_prompt: Some(PromptText::of_fetched(&full_run(json!({}), json!({}))).unwrap()),
        ..base()
    }
}

fn gate(state: &str, on_timeout: Option<&str>) -> ApprovalGate {
    let mut spec = json!({"runRef": {"name": "r", "uid": "u"}, "stage": "BeforeStart",
        "request": {"summary": "start?"}, "approvers": {"users": ["alice"]}, "quorum": 1});
    if let Some(t) = on_timeout {
        spec["onTimeout"] = json!(t);
    }
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "ApprovalGate",
        "metadata": {"name": "r-before-start", "namespace": "ns",
            "ownerReferences": [{"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "name": "r", "uid": "u"}]},
        "spec": spec,
        "status": {"state": state, "decidedBy": "alice"},
    }))
    .unwrap()
}

/// The runner's result line (the agent container's termination message).
fn result(outcome: &str, reason: &str) -> String {
    json!({"outcome": outcome, "reason": reason, "message": "m", "failedStep": if outcome == "Failed" { Some("agent") } else { None },
        "commit": "0123456789abcdef0123456789abcdef01234567", "branch": "paddock/r", "filesChanged": 1, "insertions": 2, "deletions": 1})
    .to_string()
}

/// The run's pod `r-1` (owned), with `status` as the kubelet would write it.
fn pod(status: Value) -> PodLookup {
    PodLookup::Own(Box::new(
        serde_json::from_value(json!({
            "metadata": {"name": "r-1", "namespace": "ns", "labels": {"paddock.dev/attempt": "1"},
                "ownerReferences": [{"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "name": "r", "uid": "u"}]},
            "status": status,
        }))
        .unwrap(),
    ))
}

fn running_pod() -> PodLookup {
    pod(json!({"phase": "Running", "containerStatuses": [{"name": "agent", "state": {"running": {}}}]}))
}

/// A pod whose agent container ended with `exit` and `message` (the gateway stopped too).
fn ended_pod(phase: &str, exit: i32, message: &str, kubelet_reason: &str) -> PodLookup {
    pod(json!({"phase": phase,
        "initContainerStatuses": [{"name": "gateway", "state": {"terminated": {"exitCode": 0}}}],
        "containerStatuses": [{"name": "agent", "state": {"terminated": {"exitCode": exit, "message": message,
            "reason": kubelet_reason, "finishedAt": "2027-01-15T08:00:30Z"}}}]}))
}

fn ending(gateway_log: &str) -> Option<EndFacts> {
    Some(EndFacts {
        log: String::new(),
        followed: None,
        gateway: parse_gateway_log(gateway_log),
    })
}

/// A run that ran on pod `r-1` (attempt 1) since [`T0`].
fn running_status() -> Value {
    json!({"phase": "Running", "podName": "r-1", "attempt": 1, "startTime": "2027-01-15T08:00:00Z",
        "conditions": [{"type": "Running", "status": "True", "reason": "AgentRunning", "message": "",
            "lastTransitionTime": "2027-01-15T08:00:00Z"}]})
}

/// Facts of a pod that ended: not moved past on the server, its logs read.
fn ended(p: PodLookup, gateway_log: &str) -> Facts {
    Facts {
        pod: Some(p),
        moved_past: Some(false),
        ending: ending(gateway_log),
        ..base()
    }
}

/// The agent's pod, ended well, while its change is verified.
fn done() -> Facts {
    Facts {
        pod: Some(ended_pod(
            "Succeeded",
            0,
            &result("Succeeded", "Succeeded"),
            "Completed",
        )),
        ..base()
    }
}

fn verification(result: VerificationResult, reason: &str) -> VerificationStatus {
    let mut v = crate::controller::agentrun::verify::started(1, "base", Some("r-verify-1".into()), at(T0));
    v.result = result;
    v.reason = reason.into();
    v
}

/// What a row expects.
enum Want {
    /// One more fact.
    Need(Need),
    /// A plan: phase and the `Succeeded` condition's reason (`None`: unchanged), and the kinds of
    /// its writes.
    Plan(Option<Phase>, Option<Reason>, &'static [&'static str]),
    /// Nothing written: the cache is behind the server.
    KeepCached,
}

fn rows() -> Vec<(&'static str, AgentRun, Facts, Want)> {
    use Want::Plan as P;
    let none = json!({});
    let verify_spec = json!({"verify": {"command": ["make", "test"], "required": true}, "output": {"push": true}});
    let old = |r: &mut AgentRun| r.metadata.creation_timestamp = Some(at(T0 - 400));
    let mut old_run = run(json!({}), json!({}));
    old(&mut old_run);
    let mut old_resume = run(json!({"resumeFrom": {"name": "earlier"}}), json!({}));
    old(&mut old_resume);
    let model_503 = r#"{"type":"gateway_model_status","route":"anthropic","status":503,"calls":1}"#;
    let kueue_run = || run(json!({}), json!({})).with_label(kueue::QUEUE_LABEL, "team");
    let candidate = || {
        let mut r = run(json!({"output": {"push": true}}), running_status());
        r.metadata.owner_references = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "paddock.dev/v1alpha1".into(),
            kind: "AgentRunSet".into(),
            name: "set".into(),
            uid: "set-uid".into(),
            controller: Some(true),
            ..Default::default()
        }]);
        r
    };
    let waiting_on_gate = || {
        let mut st = running_status();
        st["phase"] = json!("AwaitingApproval");
        st["gateName"] = json!("r-before-start");
        st["conditions"] = json!([{"type": "AwaitingApproval", "status": "True", "reason": "GatePending", "message": "",
            "lastTransitionTime": "2027-01-15T08:00:00Z"}]);
        st
    };
    let verifying = |v: VerificationStatus| {
        let mut st = running_status();
        let mut res = serde_json::from_str::<Value>(&result("Succeeded", "Succeeded")).unwrap();
        merge(
            &mut res,
            json!({"diffstat": "+2/-1", "patchRef": "r-patch", "logRef": "r-log"}),
        );
        st["result"] = res;
        st["verification"] = serde_json::to_value(v).unwrap();
        st
    };
    let verify_read = |v: VerificationStatus, done: bool| VerifyRead {
        verification: v,
        done,
        create_pod: None,
        delete_pod: None,
    };
    let mut queued_pool = pool(json!({"maxConcurrentRuns": 1}));
    queued_pool.metadata.name = Some("default".into());
    let busy = std::sync::Arc::new(run(json!({}), json!({"phase": "Running", "podName": "busy-1"})).named("busy"));

    vec![
        // --- before a pod ---
        (
            "the pool is read first",
            run(json!({}), none.clone()),
            base(),
            Want::Need(Need::Pool),
        ),
        (
            "a missing pool is waited for",
            run(json!({}), none.clone()),
            Facts {
                pool: Some(None),
                ..base()
            },
            P(Some(Phase::Pending), Some(Reason::PoolNotFound), &[]),
        ),
        (
            "a pool missing for 5 minutes fails the run",
            old_run,
            Facts {
                pool: Some(None),
                ..base()
            },
            P(Some(Phase::Failed), Some(Reason::PoolNotFound), &[]),
        ),
        (
            "a missing prompt key is waited for",
            run(
                json!({"prompt": null, "promptFrom": {"name": "cm", "key": "k"}}),
                none.clone(),
            ),
            Facts {
                prompt_from: Some(None),
                ..ready()
            },
            P(Some(Phase::Pending), Some(Reason::PromptNotFound), &[]),
        ),
        (
            "the BeforeStart gate's creation reads the prompt (for its request)",
            run(
                json!({"approvals": {"beforeStart": {"approvers": {"users": ["alice"]}}}}),
                none.clone(),
            ),
            Facts {
                start_gate: Some(("r-before-start".into(), None)),
                spec_prompt: None,
                ..ready()
            },
            Want::Need(Need::SpecPrompt),
        ),
        (
            "a BeforeStart gate is created and waited on",
            run(
                json!({"approvals": {"beforeStart": {"approvers": {"users": ["alice"]}}}}),
                none.clone(),
            ),
            Facts {
                start_gate: Some(("r-before-start".into(), None)),
                ..ready()
            },
            P(
                Some(Phase::AwaitingApproval),
                Some(Reason::AwaitingApproval),
                &["CreateGate"],
            ),
        ),
        (
            "a rejected gate rejects the run",
            run(
                json!({"approvals": {"beforeStart": {"approvers": {"users": ["alice"]}}}}),
                none.clone(),
            ),
            Facts {
                start_gate: Some(("r-before-start".into(), Some(gate("Rejected", None)))),
                ..ready()
            },
            P(Some(Phase::Rejected), Some(Reason::Rejected), &[]),
        ),
        (
            "an expired gate rejects the run",
            run(
                json!({"approvals": {"beforeStart": {"approvers": {"users": ["alice"]}}}}),
                none.clone(),
            ),
            Facts {
                start_gate: Some(("r-before-start".into(), Some(gate("Expired", None)))),
                ..ready()
            },
            P(Some(Phase::Rejected), Some(Reason::GateExpired), &[]),
        ),
        (
            "an expired gate with onTimeout Approve starts the run",
            run(
                json!({"approvals": {"beforeStart": {"approvers": {"users": ["alice"]}}}}),
                none.clone(),
            ),
            Facts {
                start_gate: Some(("r-before-start".into(), Some(gate("Expired", Some("Approve"))))),
                ..ready()
            },
            P(None, None, &["StartPod"]),
        ),
        (
            "a withdrawn gate rejects the run",
            run(
                json!({"approvals": {"beforeStart": {"approvers": {"users": ["alice"]}}}}),
                none.clone(),
            ),
            Facts {
                start_gate: Some(("r-before-start".into(), Some(gate("Withdrawn", None)))),
                ..ready()
            },
            P(Some(Phase::Rejected), Some(Reason::GateWithdrawn), &[]),
        ),
        (
            "an approved gate starts the run",
            run(
                json!({"approvals": {"beforeStart": {"approvers": {"users": ["alice"]}}}}),
                none.clone(),
            ),
            Facts {
                start_gate: Some(("r-before-start".into(), Some(gate("Approved", None)))),
                ..ready()
            },
            P(None, None, &["StartPod"]),
        ),
        (
            "a resume source not ended yet is waited for",
            run(json!({"resumeFrom": {"name": "earlier"}}), none.clone()),
            Facts {
                resume: Some(crate::controller::agentrun::resume::resume_from(
                    &run(json!({"resumeFrom": {"name": "earlier"}}), json!({})),
                    None,
                    "earlier",
                    &now(),
                )),
                ..ready()
            },
            P(Some(Phase::Pending), Some(Reason::WaitingForResumeSource), &[]),
        ),
        (
            "a resume source missing for 5 minutes fails the run",
            old_resume.clone(),
            Facts {
                resume: Some(crate::controller::agentrun::resume::resume_from(
                    &old_resume,
                    None,
                    "earlier",
                    &now(),
                )),
                ..ready()
            },
            P(Some(Phase::Failed), Some(Reason::ResumeNotPossible), &[]),
        ),
        (
            "a refused override fails the run",
            run(json!({"agent": {"env": [{"name": "X", "value": "1"}]}}), none.clone()),
            Facts {
                pool: Some(Some(pool(json!({"overrides": {"env": false}})))),
                ..ready()
            },
            P(Some(Phase::Failed), Some(Reason::OverrideNotAllowed), &[]),
        ),
        (
            "a branch the pool does not allow fails the run",
            run(json!({"output": {"push": true, "branch": "main"}}), none.clone()),
            ready(),
            P(Some(Phase::Failed), Some(Reason::BranchNotAllowed), &[]),
        ),
        (
            "a spec the pod cannot be built from fails the run",
            run(json!({"budget": {"timeout": "soon"}}), none.clone()),
            ready(),
            P(Some(Phase::Failed), Some(Reason::InvalidSpec), &[]),
        ),
        (
            "an egress name taken by someone else is waited on",
            run(json!({}), none.clone()),
            Facts {
                egress: Some(EgressFacts::NameTaken("Service/default-egress".into())),
                ..ready()
            },
            P(Some(Phase::Pending), Some(Reason::EgressNameTaken), &[]),
        ),
        (
            "an egress gateway not ready is waited for",
            run(json!({}), none.clone()),
            Facts {
                egress: Some(EgressFacts::NotReady),
                ..ready()
            },
            P(Some(Phase::Pending), Some(Reason::WaitingForEgressGateway), &[]),
        ),
        (
            "a Kueue run without --kueue fails",
            kueue_run(),
            ready(),
            P(Some(Phase::Failed), Some(Reason::KueueNotEnabled), &[]),
        ),
        (
            "a Kueue run gets a Workload and waits",
            kueue_run(),
            Facts {
                kueue: true,
                workload: Some(None),
                // The Workload carries no prompt: none is read.
                spec_prompt: None,
                ..ready()
            },
            P(Some(Phase::Queued), Some(Reason::Queued), &["CreateWorkload"]),
        ),
        (
            "an admitted Kueue run reads its flavors",
            kueue_run(),
            Facts {
                kueue: true,
                workload: Some(Some(kueue::Admission::Admitted(vec!["f".into()]))),
                ..ready()
            },
            Want::Need(Need::Flavors(vec!["f".into()])),
        ),
        (
            "an admitted Kueue run starts",
            kueue_run(),
            Facts {
                kueue: true,
                workload: Some(Some(kueue::Admission::Admitted(vec!["f".into()]))),
                flavors: Some(Default::default()),
                ..ready()
            },
            P(None, None, &["StartPod"]),
        ),
        (
            "a full pool queues the run",
            run(json!({}), none.clone()),
            Facts {
                pool: Some(Some(queued_pool.clone())),
                queue: Some(QueueFacts {
                    runs: vec![busy.clone()],
                    admitted: Default::default(),
                    ready: true,
                }),
                // A queued run reads no prompt (it looks again every 2 s).
                spec_prompt: None,
                ..ready()
            },
            P(Some(Phase::Queued), Some(Reason::Queued), &[]),
        ),
        (
            "a pool with room reads the prompt, then starts the run",
            run(json!({}), none.clone()),
            Facts {
                pool: Some(Some(queued_pool.clone())),
                queue: Some(QueueFacts {
                    runs: vec![],
                    admitted: Default::default(),
                    ready: true,
                }),
                spec_prompt: None,
                ..ready()
            },
            Want::Need(Need::SpecPrompt),
        ),
        (
            "a pool with room starts the run",
            run(json!({}), none.clone()),
            Facts {
                pool: Some(Some(queued_pool.clone())),
                queue: Some(QueueFacts {
                    runs: vec![],
                    admitted: Default::default(),
                    ready: true,
                }),
                ..ready()
            },
            P(None, None, &["StartPod"]),
        ),
        (
            "a pod name taken by another object is waited on",
            run(json!({}), none.clone()),
            Facts {
                pod: Some(PodLookup::Foreign),
                ..ready()
            },
            P(Some(Phase::Pending), Some(Reason::PodNameTaken), &[]),
        ),
        (
            "a cancel before the start ends the run",
            run(json!({"cancel": true}), none.clone()),
            base(),
            P(Some(Phase::Cancelled), Some(Reason::Cancelled), &[]),
        ),
        (
            "a retry waits out its backoff",
            run(
                json!({}),
                json!({"phase": "Pending", "attempt": 2, "nextAttemptAt": "2030-01-01T00:00:00Z",
            "attempts": [{"attempt": 1, "podName": "r-1", "reason": "PodLost", "message": ""}]}),
            ),
            Facts {
                retried_pod_alive: true,
                ..base()
            },
            P(Some(Phase::Pending), None, &["DeletePodAfterStatus"]),
        ),
        // --- the pod runs ---
        (
            "a running pod is followed",
            run(json!({}), running_status()),
            Facts {
                pod: Some(running_pod()),
                ..base()
            },
            P(Some(Phase::Running), Some(Reason::Running), &["Follow"]),
        ),
        (
            "a starting pod says so",
            run(json!({}), running_status()),
            Facts {
                pod: Some(pod(
                    json!({"phase": "Pending", "containerStatuses": [{"name": "agent", "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
                )),
                ..base()
            },
            P(Some(Phase::Running), Some(Reason::Running), &[]),
        ),
        (
            "a run past its deadline is stopped",
            run(json!({"budget": {"timeout": "30s"}}), running_status()),
            Facts {
                moved_past: Some(false),
                ending: ending(""),
                ..Facts {
                    pod: Some(running_pod()),
                    ..base()
                }
            },
            P(
                Some(Phase::TimedOut),
                Some(Reason::TimedOut),
                &["StoreArtifacts", "DeletePod"],
            ),
        ),
        (
            "a decided gate is recorded, and the run goes on",
            run(json!({}), waiting_on_gate()),
            Facts {
                pod: Some(running_pod()),
                awaited_gate: Some(Some(gate("Approved", None))),
                ..base()
            },
            P(Some(Phase::Running), Some(Reason::Running), &["Follow"]),
        ),
        (
            "a gate that cannot be read is closed when the run goes on",
            run(json!({}), waiting_on_gate()),
            Facts {
                pod: Some(running_pod()),
                awaited_gate: Some(None),
                ..base()
            },
            P(Some(Phase::Running), Some(Reason::Running), &["Follow"]),
        ),
        (
            "an expired gate is recorded",
            run(json!({}), waiting_on_gate()),
            Facts {
                pod: Some(running_pod()),
                awaited_gate: Some(Some(gate("Expired", Some("Approve")))),
                ..base()
            },
            P(Some(Phase::Running), Some(Reason::Running), &["Follow"]),
        ),
        (
            "a plan sent back for changes is recorded; the agent plans again",
            run(json!({}), waiting_on_gate()),
            Facts {
                pod: Some(running_pod()),
                awaited_gate: Some(Some(gate("ChangesRequested", None))),
                ..base()
            },
            P(Some(Phase::Running), Some(Reason::Running), &["Follow"]),
        ),
        (
            "a withdrawn gate is recorded",
            run(json!({}), waiting_on_gate()),
            Facts {
                pod: Some(running_pod()),
                awaited_gate: Some(Some(gate("Withdrawn", None))),
                ..base()
            },
            P(Some(Phase::Running), Some(Reason::Running), &["Follow"]),
        ),
        (
            "a pending in-run gate shows",
            run(
                json!({"approvals": {"beforePush": {"approvers": {"users": ["alice"]}}}, "output": {"push": true}}),
                running_status(),
            ),
            Facts {
                pod: Some(running_pod()),
                in_run_gate: Some(Some(gate("Pending", None))),
                ..base()
            },
            P(
                Some(Phase::AwaitingApproval),
                Some(Reason::AwaitingApproval),
                &["Follow"],
            ),
        ),
        (
            "a verified candidate waits for its set's selection",
            candidate(),
            Facts {
                pod: Some(running_pod()),
                held: Some(HeldRead {
                    verification: Some(verification(VerificationResult::Passed, "Passed")),
                    usage: None,
                }),
                selection: Some(Selection::Waiting),
                in_run_gate: Some(None),
                ..base()
            },
            P(Some(Phase::Running), Some(Reason::Running), &["Follow"]),
        ),
        (
            "an approval request the follower read raises its gate",
            run(
                json!({"approvals": {"toolUse": {"approvers": {"users": ["alice"]}, "rules": [{"tool": "Bash"}]}}}),
                running_status(),
            ),
            Facts {
                pod: Some(running_pod()),
                requests: Some(vec![(
                    "r-1".into(),
                    crate::inflight::Request {
                        id: "tool-1".into(),
                        stage: "ToolUse".into(),
                        ..Default::default()
                    },
                )]),
                in_run_gate: Some(None),
                ..base()
            },
            P(Some(Phase::Running), Some(Reason::Running), &["Follow", "RaiseRequest"]),
        ),
        (
            "a lost attempt's request is not raised for the next attempt's pod",
            run(
                json!({"approvals": {"toolUse": {"approvers": {"users": ["alice"]}, "rules": [{"tool": "Bash"}]}}}),
                running_status(),
            ),
            Facts {
                pod: Some(running_pod()),
                requests: Some(vec![(
                    "r-0".into(),
                    crate::inflight::Request {
                        id: "tool-1".into(),
                        stage: "ToolUse".into(),
                        ..Default::default()
                    },
                )]),
                in_run_gate: Some(None),
                ..base()
            },
            P(Some(Phase::Running), Some(Reason::Running), &["Follow"]),
        ),
        // --- the pod ended ---
        (
            "the server moved past the attempt: nothing is written",
            run(json!({}), running_status()),
            Facts {
                pod: Some(ended_pod(
                    "Succeeded",
                    0,
                    &result("Succeeded", "Succeeded"),
                    "Completed",
                )),
                moved_past: Some(true),
                ..base()
            },
            Want::KeepCached,
        ),
        (
            "a pod gone after a retry the server recorded: nothing is written",
            run(json!({}), running_status()),
            Facts {
                moved_past: Some(true),
                ..base()
            },
            Want::KeepCached,
        ),
        (
            "a lost pod fails the run",
            run(json!({}), running_status()),
            Facts {
                moved_past: Some(false),
                followed_log: Some(None),
                ..base()
            },
            P(Some(Phase::Failed), Some(Reason::PodLost), &[]),
        ),
        (
            "a lost pod is retried",
            run(json!({"retry": {"limit": 1}}), running_status()),
            Facts {
                moved_past: Some(false),
                followed_log: Some(Some("{}".into())),
                ..base()
            },
            P(
                Some(Phase::Pending),
                Some(Reason::Retrying),
                &["StoreAttemptLog", "DeletePodAfterStatus"],
            ),
        ),
        (
            "a cancel stops the pod",
            run(json!({"cancel": true}), running_status()),
            ended(running_pod(), ""),
            P(
                Some(Phase::Cancelled),
                Some(Reason::Cancelled),
                &["StoreArtifacts", "DeletePod"],
            ),
        ),
        (
            "a pod that succeeded ends the run",
            run(json!({}), running_status()),
            ended(
                ended_pod("Succeeded", 0, &result("Succeeded", "Succeeded"), "Completed"),
                "",
            ),
            P(Some(Phase::Succeeded), Some(Reason::Succeeded), &["StoreArtifacts"]),
        ),
        (
            "the agent failed",
            run(json!({}), running_status()),
            ended(ended_pod("Failed", 1, &result("Failed", "AgentFailed"), "Error"), ""),
            P(Some(Phase::Failed), Some(Reason::AgentFailed), &["StoreArtifacts"]),
        ),
        (
            "the commit failed",
            run(json!({}), running_status()),
            ended(ended_pod("Failed", 1, &result("Failed", "CommitFailed"), "Error"), ""),
            P(Some(Phase::Failed), Some(Reason::CommitFailed), &["StoreArtifacts"]),
        ),
        (
            "the diff failed",
            run(json!({}), running_status()),
            ended(ended_pod("Failed", 1, &result("Failed", "DiffFailed"), "Error"), ""),
            P(Some(Phase::Failed), Some(Reason::DiffFailed), &["StoreArtifacts"]),
        ),
        (
            "the push failed",
            run(json!({}), running_status()),
            ended(ended_pod("Failed", 1, &result("Failed", "PushFailed"), "Error"), ""),
            P(Some(Phase::Failed), Some(Reason::PushFailed), &["StoreArtifacts"]),
        ),
        (
            "the runner was terminated",
            run(json!({}), running_status()),
            ended(ended_pod("Failed", 143, &result("Failed", "Terminated"), "Error"), ""),
            P(Some(Phase::Failed), Some(Reason::Terminated), &["StoreArtifacts"]),
        ),
        (
            "the runner refused its settings",
            run(json!({}), running_status()),
            ended(ended_pod("Failed", 2, &result("Failed", "InvalidConfig"), "Error"), ""),
            P(Some(Phase::Failed), Some(Reason::InvalidConfig), &["StoreArtifacts"]),
        ),
        (
            "the budget was spent",
            run(json!({}), running_status()),
            ended(ended_pod("Failed", 1, &result("Failed", "BudgetExceeded"), "Error"), ""),
            P(Some(Phase::Failed), Some(Reason::BudgetExceeded), &["StoreArtifacts"]),
        ),
        (
            "the push was rejected at its gate",
            run(json!({}), running_status()),
            ended(ended_pod("Failed", 1, &result("Failed", "Rejected"), "Error"), ""),
            P(Some(Phase::Rejected), Some(Reason::Rejected), &["StoreArtifacts"]),
        ),
        (
            "an agent that ended without an approved plan fails, whatever it reported",
            run(
                json!({"agent": {"name": "claude-code"}, "approvals": {"plan": {}}}),
                running_status(),
            ),
            Facts {
                plan: Some(PlanVerdict::Waiting),
                ..ended(
                    ended_pod("Succeeded", 0, &result("Succeeded", "Succeeded"), "Completed"),
                    "",
                )
            },
            P(Some(Phase::Failed), Some(Reason::PlanNotApproved), &["StoreArtifacts"]),
        ),
        (
            "an agent that carried out its approved plan succeeds",
            run(
                json!({"agent": {"name": "claude-code"}, "approvals": {"plan": {}}}),
                running_status(),
            ),
            Facts {
                plan: Some(PlanVerdict::Approved),
                ..ended(
                    ended_pod("Succeeded", 0, &result("Succeeded", "Succeeded"), "Completed"),
                    "",
                )
            },
            P(Some(Phase::Succeeded), Some(Reason::Succeeded), &["StoreArtifacts"]),
        ),
        (
            "a rejected plan ends the run and stops its pod",
            run(
                json!({"agent": {"name": "claude-code"}, "approvals": {"plan": {}}}),
                running_status(),
            ),
            Facts {
                pod: Some(running_pod()),
                moved_past: Some(false),
                ending: ending(""),
                plan: Some(PlanVerdict::Rejected {
                    gate: "r-plan-1".into(),
                    expired: false,
                    by: Some("alice".into()),
                }),
                ..base()
            },
            P(
                Some(Phase::Rejected),
                Some(Reason::Rejected),
                &["StoreArtifacts", "DeletePod"],
            ),
        ),
        (
            "a model 503 the gateway saw fails the run without retries",
            run(json!({}), running_status()),
            ended(
                ended_pod("Failed", 1, &result("Failed", "ModelUnavailable"), "Error"),
                model_503,
            ),
            P(Some(Phase::Failed), Some(Reason::ModelUnavailable), &["StoreArtifacts"]),
        ),
        (
            "a model 503 the gateway saw is retried",
            run(json!({"retry": {"limit": 2}}), running_status()),
            ended(
                ended_pod("Failed", 1, &result("Failed", "ModelUnavailable"), "Error"),
                model_503,
            ),
            P(Some(Phase::Pending), Some(Reason::Retrying), &["DeletePodAfterStatus"]),
        ),
        (
            "a model 503 the gateway did not see is the agent's failure",
            run(json!({"retry": {"limit": 2}}), running_status()),
            ended(
                ended_pod("Failed", 1, &result("Failed", "ModelUnavailable"), "Error"),
                "",
            ),
            P(Some(Phase::Failed), Some(Reason::AgentFailed), &["StoreArtifacts"]),
        ),
        (
            "a reason outside the runner's list is the agent's failure",
            run(json!({}), running_status()),
            ended(ended_pod("Failed", 1, &result("Failed", "NotSelected"), "Error"), ""),
            P(Some(Phase::Failed), Some(Reason::AgentFailed), &["StoreArtifacts"]),
        ),
        (
            "the clone failed",
            run(json!({}), running_status()),
            ended(
                pod(
                    json!({"phase": "Failed", "initContainerStatuses": [{"name": "clone", "state": {"terminated": {"exitCode": 1, "message": result("Failed", "CloneFailed")}}}]}),
                ),
                "",
            ),
            P(Some(Phase::Failed), Some(Reason::CloneFailed), &["StoreArtifacts"]),
        ),
        (
            "the kubelet's deadline passed",
            run(json!({}), running_status()),
            ended(pod(json!({"phase": "Failed", "reason": "DeadlineExceeded"})), ""),
            P(Some(Phase::TimedOut), Some(Reason::TimedOut), &["StoreArtifacts"]),
        ),
        (
            "the pod was evicted",
            run(json!({}), running_status()),
            ended(
                pod(json!({"phase": "Failed", "reason": "Evicted", "message": "node pressure"})),
                "",
            ),
            P(Some(Phase::Failed), Some(Reason::PodEvicted), &["StoreArtifacts"]),
        ),
        (
            "a volume went over its limit",
            run(json!({}), running_status()),
            ended(
                pod(
                    json!({"phase": "Failed", "reason": "Evicted", "message": "Usage of EmptyDir volume \"workspace\" exceeds the limit \"1Gi\"."}),
                ),
                "",
            ),
            P(
                Some(Phase::Failed),
                Some(Reason::StorageLimitExceeded),
                &["StoreArtifacts"],
            ),
        ),
        (
            "the agent was killed for memory",
            run(json!({}), running_status()),
            ended(ended_pod("Failed", 137, "", "OOMKilled"), ""),
            P(Some(Phase::Failed), Some(Reason::OOMKilled), &["StoreArtifacts"]),
        ),
        (
            "the runner ended without a result",
            run(json!({}), running_status()),
            ended(ended_pod("Failed", 1, "garbage", "Error"), ""),
            P(Some(Phase::Failed), Some(Reason::RunnerFailed), &["StoreArtifacts"]),
        ),
        (
            "the pod failed",
            run(json!({}), running_status()),
            ended(pod(json!({"phase": "Failed", "message": "boom"})), ""),
            P(Some(Phase::Failed), Some(Reason::PodFailed), &["StoreArtifacts"]),
        ),
        (
            "a container could not start",
            run(json!({}), running_status()),
            ended(
                pod(
                    json!({"phase": "Pending", "containerStatuses": [{"name": "agent", "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "no secret"}}}]}),
                ),
                "",
            ),
            P(Some(Phase::Failed), Some(Reason::PodStartFailed), &["StoreArtifacts"]),
        ),
        (
            "someone deleted the pod",
            run(json!({}), running_status()),
            {
                let mut f = ended(ended_pod("Failed", 1, &result("Failed", "AgentFailed"), "Error"), "");
                if let Some(PodLookup::Own(p)) = f.pod.as_mut() {
                    p.metadata.deletion_timestamp = Some(now());
                }
                f
            },
            P(Some(Phase::Failed), Some(Reason::PodDeleted), &["StoreArtifacts"]),
        ),
        (
            "a set's candidate another won is done and kept",
            candidate(),
            Facts {
                selection: Some(Selection::Loser("another won".into())),
                ..ended(ended_pod("Failed", 1, &result("Failed", "Rejected"), "Error"), "")
            },
            P(Some(Phase::Succeeded), Some(Reason::NotSelected), &["StoreArtifacts"]),
        ),
        // --- verification ---
        (
            "a change that ended well is verified",
            run(verify_spec.clone(), running_status()),
            ended(
                ended_pod("Succeeded", 0, &result("Succeeded", "Succeeded"), "Completed"),
                "",
            ),
            P(Some(Phase::Running), Some(Reason::Running), &["StoreArtifacts"]),
        ),
        (
            "a change too large to verify fails its required verification",
            run(verify_spec.clone(), running_status()),
            ended(
                ended_pod("Succeeded", 0, &result("Succeeded", "Succeeded"), "Completed"),
                r#"{"type":"gateway_branch","purpose":"final","branch":"paddock/r","base":"b","commit":"c","filesChanged":1,"insertions":1,"deletions":0,"patchBytes":99999999,"patchTruncated":true}"#,
            ),
            P(
                Some(Phase::Failed),
                Some(Reason::VerificationFailed),
                &["StoreArtifacts"],
            ),
        ),
        (
            "the checks' pod is created",
            run(
                verify_spec.clone(),
                verifying(verification(VerificationResult::Running, "Verifying")),
            ),
            Facts {
                verify: Some(VerifyRead {
                    create_pod: Some(Pod::default()),
                    ..verify_read(verification(VerificationResult::Running, "Verifying"), false)
                }),
                ..done()
            },
            P(Some(Phase::Running), None, &["CreateVerificationPod"]),
        ),
        (
            "passed checks end the run well",
            run(
                verify_spec.clone(),
                verifying(verification(VerificationResult::Running, "Verifying")),
            ),
            Facts {
                verify: Some(verify_read(verification(VerificationResult::Passed, "Passed"), true)),
                ..done()
            },
            P(Some(Phase::Succeeded), Some(Reason::Succeeded), &[]),
        ),
        (
            "failed checks fail a required verification",
            run(
                verify_spec.clone(),
                verifying(verification(VerificationResult::Running, "Verifying")),
            ),
            Facts {
                verify: Some(verify_read(
                    verification(VerificationResult::Failed, "ChecksFailed"),
                    true,
                )),
                ..done()
            },
            P(Some(Phase::Failed), Some(Reason::VerificationFailed), &[]),
        ),
        (
            "a protected path changed",
            run(
                verify_spec.clone(),
                verifying(verification(VerificationResult::Running, "Verifying")),
            ),
            Facts {
                verify: Some(verify_read(
                    verification(VerificationResult::Failed, "ProtectedPathChanged"),
                    true,
                )),
                ..done()
            },
            P(Some(Phase::Failed), Some(Reason::VerificationFailed), &[]),
        ),
        (
            "the stored patch changed",
            run(
                verify_spec.clone(),
                verifying(verification(VerificationResult::Running, "Verifying")),
            ),
            Facts {
                verify: Some(verify_read(
                    verification(VerificationResult::Error, "PatchChanged"),
                    true,
                )),
                ..done()
            },
            P(Some(Phase::Failed), Some(Reason::VerificationFailed), &[]),
        ),
        (
            "the patch did not apply",
            run(
                verify_spec.clone(),
                verifying(verification(VerificationResult::Running, "Verifying")),
            ),
            Facts {
                verify: Some(verify_read(
                    verification(VerificationResult::Error, "PatchDidNotApply"),
                    true,
                )),
                ..done()
            },
            P(Some(Phase::Failed), Some(Reason::VerificationFailed), &[]),
        ),
        (
            "the checks' pod failed",
            run(
                verify_spec.clone(),
                verifying(verification(VerificationResult::Running, "Verifying")),
            ),
            Facts {
                verify: Some(verify_read(
                    verification(VerificationResult::Error, "VerificationPodFailed"),
                    true,
                )),
                ..done()
            },
            P(Some(Phase::Failed), Some(Reason::VerificationFailed), &[]),
        ),
        (
            "the checks took too long",
            run(
                verify_spec.clone(),
                verifying(verification(VerificationResult::Running, "Verifying")),
            ),
            Facts {
                verify: Some(VerifyRead {
                    delete_pod: Some("r-verify-1".into()),
                    ..verify_read(verification(VerificationResult::Error, "VerificationTimedOut"), true)
                }),
                ..done()
            },
            P(
                Some(Phase::Failed),
                Some(Reason::VerificationFailed),
                &["DeleteVerificationPod"],
            ),
        ),
    ]
}

trait Named {
    fn named(self, name: &str) -> Self;
    fn with_label(self, key: &str, value: &str) -> Self;
}

impl Named for AgentRun {
    fn named(mut self, name: &str) -> Self {
        self.metadata.name = Some(name.into());
        self.metadata.uid = Some(format!("uid-{name}"));
        self
    }
    fn with_label(mut self, key: &str, value: &str) -> Self {
        self.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
        self
    }
}

/// Every reason any row's plan records in a condition.
fn reasons_of(plan: &Plan, into: &mut BTreeSet<String>) {
    for c in &plan.status.conditions {
        into.insert(c.reason.clone());
    }
}

#[test]
fn every_transition_of_the_phase_machine() {
    // The table is one large expression; debug builds need more than the test thread's stack.
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(phase_machine)
        .unwrap()
        .join()
        .unwrap();
}

fn phase_machine() {
    let mut seen = BTreeSet::new();
    let mut failures = vec![];
    for (name, run, facts, want) in rows() {
        let step = decide(&run, &facts, &now());
        let got = match (&step, &want) {
            (Step::Need(n), Want::Need(w)) if n == w => continue,
            (Step::Plan(p), Want::KeepCached) if p.keep_cached && p.effects.is_empty() && p.events.is_empty() => {
                continue
            }
            (Step::Plan(p), Want::Plan(phase, reason, effects)) => {
                reasons_of(p, &mut seen);
                let kinds: Vec<&str> = p.effects.iter().map(Effect::kind).collect();
                let succeeded = find_condition(&p.status.conditions, COND_SUCCEEDED).map(|c| c.reason.clone());
                let want_reason = match reason {
                    Some(r) => Some(r.to_string()),
                    None => run.status.as_ref().and_then(succeeded_reason),
                };
                if p.status.phase == phase.or(run.status.as_ref().and_then(|s| s.phase))
                    && succeeded == want_reason
                    && kinds == *effects
                    && !p.keep_cached
                {
                    continue;
                }
                format!(
                    "phase {:?}, Succeeded reason {succeeded:?}, effects {kinds:?}",
                    p.status.phase
                )
            }
            (Step::Need(n), _) => format!("needs {n:?}"),
            (Step::Plan(p), _) => format!("a plan (phase {:?}, keep_cached {})", p.status.phase, p.keep_cached),
        };
        failures.push(format!("{name}: got {got}"));
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    // The pod's start (decided by `started` after the StartPod write).
    for how in [Started::Claimed("w".into()), Started::Created("r-1".into(), None)] {
        let queued = run(
            json!({}),
            json!({"phase": "Queued", "conditions": [{"type": "Queued", "status": "True",
            "reason": "WaitingForCapacity", "message": "", "lastTransitionTime": "2027-01-15T08:00:00Z"}]}),
        );
        let mut plan = Plan::new(&queued);
        started(&queued, &mut plan, 1, "default", how, &now());
        reasons_of(&plan, &mut seen);
    }
    let all: BTreeSet<String> = Reason::ALL.iter().map(|r| r.to_string()).collect();
    let missing: Vec<&String> = all.difference(&seen).collect();
    let unknown: Vec<&String> = seen.difference(&all).collect();
    assert!(missing.is_empty(), "reasons no row produces: {missing:?}");
    assert!(unknown.is_empty(), "reasons outside paddock_crds::Reason: {unknown:?}");
}

#[test]
fn a_started_pod_is_running_with_how_it_started() {
    let r = run(json!({}), json!({}));
    let mut plan = Plan::new(&r);
    started(
        &r,
        &mut plan,
        1,
        "default",
        Started::Created("r-1".into(), Some("no warm pod was ready".into())),
        &now(),
    );
    assert_eq!(plan.status.phase, Some(Phase::Running));
    assert_eq!(plan.status.pod_name.as_deref(), Some("r-1"));
    assert_eq!(plan.status.warm_start, Some(false));
    let c = find_condition(&plan.status.conditions, "Running").unwrap();
    assert_eq!(c.reason, "PodCreated");
    assert!(
        c.message.ends_with("(cold start: no warm pod was ready)"),
        "{}",
        c.message
    );
    let mut plan = Plan::new(&r);
    started(
        &r,
        &mut plan,
        2,
        "default",
        Started::Claimed("default-warm-x".into()),
        &now(),
    );
    assert_eq!(plan.status.warm_start, Some(true));
    assert_eq!(plan.status.attempt, Some(2));
    assert_eq!(plan.events.len(), 1);
}

#[test]
fn a_held_push_waiting_for_its_checks_is_looked_at_again_within_seconds() {
    let r = run(
        json!({"verify": {"command": ["true"], "required": true}, "output": {"push": true}}),
        running_status(),
    );
    let facts = Facts {
        pod: Some(running_pod()),
        held: Some(HeldRead::default()),
        selection: Some(Selection::NotACandidate),
        in_run_gate: Some(None),
        ..base()
    };
    let step = decide(&r, &facts, &now());
    let Step::Plan(plan) = step else {
        panic!("a plan: {step:?}")
    };
    assert_eq!(plan.action, Action::requeue(pod::HELD_VERIFICATION_RECHECK));
    // Once the checks are in, the next look is the deadline's.
    let facts = Facts {
        pod: Some(running_pod()),
        held: Some(HeldRead {
            verification: Some(verification(VerificationResult::Passed, "Passed")),
            usage: None,
        }),
        selection: Some(Selection::NotACandidate),
        in_run_gate: Some(None),
        ..base()
    };
    let step = decide(&r, &facts, &now());
    let Step::Plan(plan) = step else {
        panic!("a plan: {step:?}")
    };
    assert_ne!(plan.action, Action::requeue(pod::HELD_VERIFICATION_RECHECK));
}

#[test]
fn decide_reads_nothing_a_running_run_does_not_need() {
    // A running pod: no pool, prompt, gate or queue is asked for.
    let step = decide(
        &run(json!({"promptFrom": {"name": "cm", "key": "k"}}), running_status()),
        &Facts {
            pod: Some(running_pod()),
            ..base()
        },
        &now(),
    );
    assert!(matches!(step, Step::Plan(_)), "{step:?}");
}

#[test]
fn a_short_runs_missed_steps_become_events_only_with_step_events() {
    let log = [
        r#"{"v":1,"seq":1,"ts":"t","type":"tool_call","id":"1","name":"Write","input":"x"}"#,
        r#"{"v":1,"seq":2,"ts":"t","type":"step","step":"push","status":"failed","message":"denied"}"#,
    ]
    .join("\n");
    let reasons = |step_events: bool| {
        let mut facts = ended(
            ended_pod("Succeeded", 0, &result("Succeeded", "Succeeded"), "Completed"),
            "",
        );
        facts.ending.as_mut().unwrap().log = log.clone();
        facts.step_events = step_events;
        let Step::Plan(plan) = decide(&run(json!({}), running_status()), &facts, &now()) else {
            panic!("a plan")
        };
        plan.events.iter().map(|e| e.1.clone()).collect::<Vec<_>>()
    };
    assert_eq!(reasons(false), ["StepFailed", "Succeeded"]);
    assert_eq!(reasons(true), ["ToolCall", "StepFailed", "Succeeded"]);
}

/// A run whose pod `r-1` was created (or claimed: `how`) at `since` (condition Running with
/// that reason), and nothing since.
fn created_status(how: &str, since: i64) -> Value {
    let t = serde_json::to_value(at(since)).unwrap();
    json!({"phase": "Running", "podName": "r-1", "attempt": 1, "startTime": t, "observedGeneration": 1,
        "conditions": [
            {"type": "Succeeded", "status": "Unknown", "reason": "Running", "message": "created", "lastTransitionTime": t,
             "observedGeneration": 1},
            {"type": "Running", "status": "True", "reason": how, "message": "created", "lastTransitionTime": t,
             "observedGeneration": 1}]})
}

/// The run's pod with its agent container running since `started`.
fn agent_since(started: i64) -> PodLookup {
    let t = serde_json::to_value(at(started)).unwrap();
    pod(json!({"phase": "Running", "containerStatuses": [{"name": "agent", "state": {"running": {"startedAt": t}}}]}))
}

/// Issue 23: one status write per real transition. A pod just created starts, and its agent
/// runs, without a status write until the agent ran [`pod::AGENT_RUNNING_AFTER`] (a run that
/// ends sooner has its end written instead); a waiting reason that is news is written at once.
#[test]
fn a_just_created_pod_writes_nothing_until_its_agent_ran_a_while() {
    let plan_of = |status: Value, p: PodLookup| {
        let r = run(json!({}), status);
        let facts = Facts { pod: Some(p), ..base() };
        match decide(&r, &facts, &now()) {
            Step::Plan(plan) => (r, plan),
            other => panic!("a plan: {other:?}"),
        }
    };
    let running_reason = |plan: &Plan| find_condition(&plan.status.conditions, "Running").map(|c| c.reason.clone());
    let waiting = |reason: &str| {
        pod(json!({"phase": "Pending",
            "initContainerStatuses": [{"name": "clone", "state": {"running": {}}}],
            "containerStatuses": [{"name": "agent", "state": {"waiting": {"reason": reason}}}]}))
    };
    let t = T0 + 55;
    // Starting as it should: nothing new.
    for p in [
        pod(json!({"phase": "Pending"})),
        waiting("PodInitializing"),
        waiting("ContainerCreating"),
    ] {
        let (r, plan) = plan_of(created_status("PodCreated", t), p);
        assert_eq!(plan.status, Plan::new(&r).status);
        assert!(plan.events.is_empty());
    }
    // News: written now.
    let (_, plan) = plan_of(created_status("PodCreated", t), waiting("ImagePullBackOff"));
    assert_eq!(running_reason(&plan).as_deref(), Some("PodStarting"));
    // The agent runs since 1 s: followed, not written; looked at again when it ran 2 s.
    let (r, plan) = plan_of(created_status("PodCreated", t), agent_since(T0 + 59));
    assert_eq!(plan.status, Plan::new(&r).status);
    assert_eq!(plan.effects.iter().map(Effect::kind).collect::<Vec<_>>(), ["Follow"]);
    assert_eq!(plan.action, Action::requeue(std::time::Duration::from_secs(1)));
    // … since 2 s: written.
    let (_, plan) = plan_of(created_status("PodCreated", t), agent_since(T0 + 58));
    assert_eq!(running_reason(&plan).as_deref(), Some("AgentRunning"));
    // A warm pod's agent ran before its claim, 1 s ago: counted from the claim.
    let (r, plan) = plan_of(created_status("PodClaimed", T0 + 59), agent_since(T0));
    assert_eq!(plan.status, Plan::new(&r).status);
    assert_eq!(plan.action, Action::requeue(std::time::Duration::from_secs(1)));
    // Without a start time the pod gives, the agent counts as running since the claim.
    let (_, plan) = plan_of(created_status("PodClaimed", T0 + 50), running_pod());
    assert_eq!(running_reason(&plan).as_deref(), Some("AgentRunning"));
}

/// Issue 23: the run's end carries its final progress, counted from the whole log (the
/// follower leaves its last write to it), unless the follower counted further on that pod.
#[test]
fn a_runs_end_carries_its_progress() {
    let log = [
        r#"{"v":1,"seq":1,"ts":"t","type":"tool_call","id":"1","name":"Write","input":"x"}"#,
        r#"{"v":1,"seq":2,"ts":"t","type":"message","text":"done"}"#,
    ]
    .join("\n");
    let progress = |status: Value| {
        let mut facts = ended(
            ended_pod("Succeeded", 0, &result("Succeeded", "Succeeded"), "Completed"),
            "",
        );
        facts.ending.as_mut().unwrap().log = log.clone();
        let Step::Plan(plan) = decide(&run(json!({}), status), &facts, &now()) else {
            panic!("a plan")
        };
        assert_eq!(plan.status.phase, Some(Phase::Succeeded));
        plan.status.progress
    };
    let counted = paddock_crds::Progress {
        pod: Some("r-1".into()),
        events: 2,
        tool_calls: 1,
        last_event: "message: done".into(),
    };
    assert_eq!(progress(running_status()), Some(counted.clone()));
    // The follower wrote 1 event: the end counts 2.
    let mut st = running_status();
    st["progress"] = json!({"pod": "r-1", "events": 1, "toolCalls": 1, "lastEvent": "tool_call Write: x"});
    assert_eq!(progress(st), Some(counted));
    // The follower read further (a log the API server no longer has whole): kept.
    let mut st = running_status();
    let further = json!({"pod": "r-1", "events": 9, "toolCalls": 3, "lastEvent": "x"});
    st["progress"] = further.clone();
    assert_eq!(progress(st), Some(serde_json::from_value(further).unwrap()));
}

/// Issue 23: a pod the cached status does not name was started by a pass whose status write
/// the cache may not show yet: the API server is asked before the pod is adopted, and a status
/// that names it is left to the watch (no write over it: it holds the policy snapshot).
#[test]
fn a_pod_the_cached_status_does_not_name_is_adopted_only_after_asking_the_server() {
    let r = run(json!({}), json!({}));
    let facts = |recorded: Option<bool>| Facts {
        pod: Some(pod(json!({"phase": "Pending"}))),
        pod_recorded: recorded,
        ..base()
    };
    assert!(
        matches!(decide(&r, &facts(None), &now()), Step::Need(Need::PodRecorded)),
        "asks first"
    );
    let Step::Plan(plan) = decide(&r, &facts(Some(true)), &now()) else {
        panic!("a plan")
    };
    assert!(plan.keep_cached && plan.effects.is_empty() && plan.events.is_empty());
    // Not on the server either (the operator stopped between the pod and its status): adopted.
    let Step::Plan(plan) = decide(&r, &facts(Some(false)), &now()) else {
        panic!("a plan")
    };
    assert!(!plan.keep_cached);
    assert_eq!(
        (plan.status.pod_name.as_deref(), plan.status.attempt),
        (Some("r-1"), Some(1))
    );
    // A status that names the pod asks nothing.
    assert!(matches!(
        decide(&run(json!({}), running_status()), &facts(None), &now()),
        Step::Plan(_)
    ));
}

/// The agent container's `PADDOCK_PROMPT` in `pod`.
fn prompt_env(pod: &Pod) -> k8s_openapi::api::core::v1::EnvVar {
    let spec = pod.spec.as_ref().unwrap();
    let agent = spec.containers.iter().find(|c| c.name == "agent").unwrap();
    let mut env = agent.env.iter().flatten();
    env.find(|e| e.name == paddock_crds::runner::vars::PROMPT)
        .unwrap()
        .clone()
}

#[test]
fn a_cached_run_starts_with_the_prompt_read_from_the_api_server() {
    let cached = run(json!({}), json!({}));
    assert_eq!(cached.spec.prompt, None, "the cache keeps no prompt");
    let server = full_run(json!({"prompt": "the real prompt"}), json!({}));
    let facts = Facts {
        spec_prompt: Some(PromptText::of_fetched(&server).unwrap()),
        ..ready()
    };
    let Step::Plan(plan) = decide(&cached, &facts, &now()) else {
        panic!("a plan")
    };
    let Some(Effect::StartPod(start)) = plan.effects.first() else {
        panic!("a start: {:?}", plan.effects)
    };
    // The cold pod and a warm claim carry the server's prompt.
    assert_eq!(prompt_env(start.pod()).value.as_deref(), Some("the real prompt"));
    assert_eq!(start.prompt().as_str(), "the real prompt");
    // The policy's pod hash is of the pod as started, prompt included.
    let spec = serde_json::to_vec(&start.pod().spec).unwrap();
    assert_eq!(
        plan.status.policy.as_ref().unwrap().pod_template_hash,
        paddock_evidence::dsse::sha256_digest(&spec)
    );
    // A cached copy is no source of a prompt: it is refused, with the reason.
    let err = PromptText::of_fetched(&cached).unwrap_err().to_string();
    assert!(err.contains("a cached copy"), "{err}");
}

#[test]
fn a_prompt_from_a_config_map_is_not_read_from_the_run() {
    let r = run(
        json!({"prompt": null, "promptFrom": {"name": "cm", "key": "k"}}),
        json!({}),
    );
    let facts = Facts {
        prompt_from: Some(Some("from the map".into())),
        spec_prompt: None,
        ..ready()
    };
    let Step::Plan(plan) = decide(&r, &facts, &now()) else {
        panic!("a plan: no read of the run")
    };
    let Some(Effect::StartPod(start)) = plan.effects.first() else {
        panic!("a start: {:?}", plan.effects)
    };
    // The cold pod's kubelet reads the key; a warm claim carries its text.
    let env = prompt_env(start.pod());
    assert_eq!(env.value, None);
    assert_eq!(env.value_from.unwrap().config_map_key_ref.unwrap().key, "k");
    assert_eq!(start.prompt().as_str(), "from the map");
}
