//! `paddock-runner run` — the `agent` container (untrusted; holds no credentials).
//!
//! Env: `PADDOCK_AGENT` (`claude-code` | `codex` | `shell`), `PADDOCK_PROMPT`, optional
//! `PADDOCK_MODEL`, `PADDOCK_AGENT_ARGS` (JSON array of strings), `PADDOCK_WORKDIR` (relative,
//! inside the worktree), `PADDOCK_MAX_TURNS`, `PADDOCK_COMMIT_MESSAGE` (default `paddock: <run>`
//! and the prompt's first line), `PADDOCK_GIT_AUTHOR_NAME`/`_EMAIL`, `PADDOCK_PUSH`
//! (`true`/`false`), `PADDOCK_PUSH_TIMEOUT_SECS` (default 120), `PADDOCK_REDACT_ENV`
//! (comma-separated names of variables whose values are secrets), `PADDOCK_BRANCH`,
//! `PADDOCK_RUN`, `PADDOCK_NAMESPACE`, `PADDOCK_WORKSPACE`, `PADDOCK_TERMINATION_LOG`; plus the
//! CLI's own variables, passed through.
//!
//! Steps (each reported by `step` events): **agent** ([`crate::agent`]; exit code ≠ 0, a
//! signal, a CLI that cannot start, or a `final` event with `is_error` → `AgentFailed`) →
//! **commit** ([`crate::commit`]; also after a failed or terminated agent, so what exists is
//! reported) → **diff** ([`crate::diff`]; `patch` events) → **push** ([`crate::push_request`]; only when
//! `PADDOCK_PUSH=true`, the run has not failed and there is a commit). The first failure sets
//! the result's reason and `failedStep`; later errors become `error` events.
//!
//! SIGTERM/SIGINT (timeout, cancel): SIGTERM to the CLI's process group, SIGKILL after 5 s,
//! then commit, diff and report with reason `Terminated` (no push).
//!
//! While the CLI runs: requests of the runner's MCP server (`ToolUse`, `Question`, `Plan`) become
//! `approval_requested`/`approval_decided` events ([`crate::approval::watch_requests`]); for
//! Claude Code, a human's signed messages go to its stdin ([`crate::messages`],
//! `message_delivered` events). With plan review (`PADDOCK_PLAN_REVIEW=true`): the plan text of
//! an `ExitPlanMode` call seen in the stream is left for the MCP server
//! ([`crate::approval::plan_file`]); a plan the operator signed `Reject` or `Expired` for stops
//! the CLI like SIGTERM and the run ends `Rejected` (step `agent`); an agent that ended
//! otherwise without a signed plan approval fails with `PlanNotApproved`.
//!
//! The last stdout line is the `result`; the same line goes to the termination log. Exit 0 when
//! the run succeeded, 1 when it failed.

use paddock_crds::runner::vars;
use std::io::Write;
use std::time::Duration;

use git2::Oid;
use paddock_crds::events::{EventLine, Outcome, RunResult, RunnerEvent, Step, StepStatus, Usage};
use paddock_crds::Reason;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::agent::claude::EXIT_PLAN_MODE;
use crate::agent::process::{run_cli_with, Exit};
use crate::agent::{build_invocation, mapper_for};
use crate::commit::{commit_worktree, CommitRequest};
use crate::config::{resolve_workdir, termination_log, Env, RunConfig};
use crate::diff::{compute_diff, encode_patch};
use crate::emit::Emitter;
use crate::push_request::{request_push, PushError};
use crate::workspace::Workspace;

pub use crate::report::{conclude, fail, initial_result};

fn step<W: Write>(
    em: &mut Emitter<W>,
    step: Step,
    status: StepStatus,
    message: impl Into<String>,
) -> Option<EventLine> {
    em.emit(RunnerEvent::Step {
        step,
        status,
        message: message.into(),
    })
}

/// A watch that turns true on SIGTERM or SIGINT (the sender lives in a background task).
fn termination_watch() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    tokio::spawn(async move {
        match (term, int) {
            (Ok(mut t), Ok(mut i)) => {
                tokio::select! {
                    _ = t.recv() => {},
                    _ = i.recv() => {},
                }
                let _ = tx.send(true);
            }
            _ => eprintln!("paddock-runner: cannot install signal handlers"),
        }
        // Keep the sender alive so receivers never see a closed channel.
        std::future::pending::<()>().await;
    });
    rx
}

fn read_base(ws: &Workspace) -> Option<Oid> {
    std::fs::read_to_string(ws.base_commit_file())
        .ok()
        .and_then(|s| Oid::from_str(s.trim()).ok())
}

/// Tells the operator that the push of `commit` waits for a `BeforePush` approval (an
/// `approval_requested` event). Only a notice: the gateway holds the push until the operator's
/// signed verdict for the commit it snapshotted itself, and the gate shows the gateway's diff,
/// not the `diffstat` here (agent-reported).
fn announce_push_review<W: Write>(em: &mut Emitter<W>, cfg: &RunConfig, result: &RunResult, commit: &str) {
    let diffstat = paddock_crds::events::diffstat(result.files_changed, result.insertions, result.deletions);
    em.emit(RunnerEvent::ApprovalRequested {
        id: "push".into(),
        stage: "BeforePush".into(),
        summary: format!(
            "Push branch {} at {} ({diffstat}) to the repository?",
            cfg.branch,
            &commit[..commit.len().min(12)]
        ),
        tool: None,
        input: None,
        commit: Some(commit.to_string()),
        diffstat: Some(diffstat),
        question: None,
        options: Vec::new(),
        plan: None,
    });
}

/// A watch that turns true once `a` or `b` does (each sender outlives the CLI's run).
fn either(mut a: watch::Receiver<bool>, mut b: watch::Receiver<bool>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let fired = tokio::select! {
            r = a.wait_for(|v| *v) => r.is_ok(),
            r = b.wait_for(|v| *v) => r.is_ok(),
        };
        if fired {
            let _ = tx.send(true);
        }
        // Keep the sender alive so the receiver never sees a closed channel.
        std::future::pending::<()>().await;
    });
    rx
}

/// Leaves the plan of Claude Code's `ExitPlanMode` call `id` (its `input.plan`, as the stream
/// showed it) for the MCP server, which Claude Code does not pass it to
/// ([`crate::approval::plan_file`]); best effort.
fn leave_plan_text(requests: &std::path::Path, id: &str, input: &str) {
    let plan = serde_json::from_str::<serde_json::Value>(input)
        .ok()
        .and_then(|v| v.get("plan")?.as_str().map(str::to_string))
        .filter(|p| !p.trim().is_empty());
    if let (Some(plan), Some(file)) = (plan, crate::approval::plan_file(requests, id)) {
        let plan = paddock_crds::events::truncate(&plan, crate::approval::MAX_PLAN_BYTES);
        let _ = std::fs::create_dir_all(requests);
        let _ = crate::workspace::write_atomic(&file, plan.as_bytes());
    }
}

/// Whether request `id` is a `plan-<n>` the operator signed a `Reject` or `Expired` for (the
/// run then ends `Rejected`).
fn plan_rejection(decisions: &std::path::Path, check: &crate::approval::VerdictCheck, id: &str) -> bool {
    id.starts_with("plan-")
        && matches!(
            crate::approval::read_verdict_text(decisions, check, id),
            Some((crate::approval::Verdict::Reject | crate::approval::Verdict::Expired, _))
        )
}

/// How long the runner waits for the gateway's answer when a BeforePush gate decides it: the
/// run's deadline ends the wait first.
const PUSH_REVIEW_WAIT: Duration = Duration::from_secs(366 * 24 * 3600);

/// Runs the whole `run` pipeline, writing events to `out`; returns the exit code.
pub async fn run<W: Write>(env: &Env, out: W) -> i32 {
    let mut em = Emitter::new(out, env.secrets());
    let term_path = termination_log(env);
    let mut result = initial_result(env.get(vars::BRANCH).unwrap_or_default());
    let cfg = match RunConfig::from_env(env) {
        Ok(c) => c,
        Err(e) => {
            fail(&mut result, "InvalidConfig", None, e.to_string());
            return conclude(&mut em, result, &term_path);
        }
    };
    let ws = Workspace::from_env(env);
    let cwd = match resolve_workdir(&ws.work(), cfg.workdir.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            fail(&mut result, "InvalidConfig", None, e.to_string());
            return conclude(&mut em, result, &cfg.termination_log);
        }
    };
    let mut term = termination_watch();

    // 1. agent (continuing a saved session when the run resumes one)
    let agent = cfg.agent.kind.as_str();
    let resumed = match crate::session::restore(cfg.agent.kind, env, &cwd) {
        Ok(r) => r,
        Err(e) => {
            let message = format!("cannot restore the session to resume: {e}");
            step(&mut em, Step::Agent, StepStatus::Failed, message.clone());
            fail(&mut result, "ResumeFailed", Some(Step::Agent), message);
            return conclude(&mut em, result, &cfg.termination_log);
        }
    };
    let resume_env;
    let env = match &resumed {
        Some(id) => {
            step(
                &mut em,
                Step::Agent,
                StepStatus::Started,
                format!("{agent} (resuming session {id})"),
            );
            resume_env = env.with_overlay(&std::collections::BTreeMap::from([(
                crate::session::RESUME_ID_ENV.to_string(),
                id.clone(),
            )]));
            &resume_env
        }
        None => {
            step(&mut em, Step::Agent, StepStatus::Started, agent);
            env
        }
    };
    let mut session_id: Option<String> = None;
    let mut inv = build_invocation(&cfg.agent, env);
    // A warm pod's run settings are not in the process environment: pass them on, under the
    // invocation's own variables.
    inv.env
        .splice(0..0, env.overlay().iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut mapper = mapper_for(cfg.agent.kind, cfg.agent.model.clone());
    let mut final_event: Option<(String, bool)> = None;
    let mut usage: Option<Usage> = None;
    let check = crate::approval::VerdictCheck::from_env(env);
    let requests = crate::approval::requests_dir(&ws);
    // Side channel, in arrival order with the CLI's events: ToolUse, Question and Plan requests
    // written by the runner's MCP server, and the gateway's egress refusals.
    let (side_tx, side) = tokio::sync::mpsc::channel(16);
    if cfg.tool_rules.is_some() || cfg.plan_review || cfg.questions {
        tokio::spawn(crate::approval::watch_requests(requests.clone(), side_tx.clone()));
    }
    // A human's messages, for a CLI that takes them while it works (Claude Code).
    let input = match (crate::agent::adapter(cfg.agent.kind.name()).live_messages(), &inv.stdin) {
        (Some(line), Some(_)) => {
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            tokio::spawn(crate::messages::watch_messages(
                cfg.decisions_file.clone(),
                check.clone(),
                line,
                tx,
            ));
            Some(rx)
        }
        _ => None,
    };
    tokio::spawn(crate::gateway::signals::watch_denials(
        crate::gateway::signals::denied_file(&ws),
        side_tx,
    ));
    // The gateway sidecar may still be binding its port when this container starts.
    if let Some(url) = env.get(vars::GATEWAY_URL) {
        if !crate::gateway::signals::wait_for_gateway(url, Duration::from_secs(10)).await {
            em.emit(RunnerEvent::Error {
                message: format!("the pod's gateway at {url} did not answer within 10 s; starting the agent anyway"),
            });
        }
    }
    // The gateway's budget marker stops the CLI like SIGTERM does.
    let budget_file = crate::gateway::signals::budget_file(&ws);
    // So does a rejected plan (`plan_stop`).
    let (plan_stop, plan_stopped) = watch::channel(false);
    let mut stop = either(
        crate::gateway::signals::stop_on_budget(budget_file.clone(), term.clone()),
        plan_stopped,
    );
    let mut plan_rejected: Option<String> = None;
    let mut denials_seen = 0usize;
    let outcome = run_cli_with(&inv, &cwd, mapper.as_mut(), &mut stop, Some(side), input, |ev| {
        match &ev {
            RunnerEvent::AgentStarted {
                session_id: Some(id), ..
            } => session_id = Some(id.clone()),
            RunnerEvent::Final { text, is_error } => final_event = Some((text.clone(), *is_error)),
            RunnerEvent::Usage(u) => usage = Some(u.clone()),
            RunnerEvent::EgressDenied { .. } => denials_seen += 1,
            RunnerEvent::ToolCall { id, name, input } if cfg.plan_review && name == EXIT_PLAN_MODE => {
                leave_plan_text(&requests, id, input);
            }
            // The request file's verdict is the agent's word: the signed one decides.
            RunnerEvent::ApprovalDecided { id, .. }
                if cfg.plan_review && plan_rejected.is_none() && plan_rejection(&cfg.decisions_file, &check, id) =>
            {
                plan_rejected = Some(id.clone());
                let _ = plan_stop.send(true);
            }
            _ => {}
        }
        em.emit(ev);
    })
    .await;
    // Refusals the side channel had not delivered when the CLI exited.
    let denied = std::fs::read_to_string(crate::gateway::signals::denied_file(&ws)).unwrap_or_default();
    for ev in crate::gateway::signals::denials(&denied)
        .into_iter()
        .take(crate::gateway::signals::MAX_DENIALS)
        .skip(denials_seen)
    {
        em.emit(ev);
    }
    // The CLI's session, for a later run's spec.resumeFrom. Failing to save it is not the run's
    // failure.
    if let Some(id) = session_id.filter(|_| crate::session::supported(cfg.agent.kind)) {
        let secrets = em.secrets().to_vec();
        match crate::session::save(cfg.agent.kind, env, &id, &secrets) {
            Ok(chunks) => {
                for ev in chunks {
                    em.emit(ev);
                }
            }
            Err(e) => {
                em.emit(RunnerEvent::Error {
                    message: format!("session {id} not saved: {e}"),
                });
            }
        }
    }
    if let Some(u) = usage {
        result.usage = u;
    }
    let final_error = final_event.as_ref().is_some_and(|(_, e)| *e);
    result.summary = final_event.map(|(t, _)| t).filter(|t| !t.is_empty());
    let stderr_tail = outcome
        .last_stderr
        .as_deref()
        .map(|l| format!(": {l}"))
        .unwrap_or_default();
    let agent_failure = if let Some(why) = crate::gateway::signals::budget_exceeded(&budget_file) {
        Some((
            "BudgetExceeded",
            format!("{why}; {agent} was stopped and what it left is committed"),
        ))
    } else if let Some(id) = &plan_rejected {
        Some((
            Reason::Rejected.as_str(),
            format!(
                "the plan was rejected at ApprovalGate {}-{id}; {agent} was stopped",
                cfg.run
            ),
        ))
    } else if outcome.terminated {
        Some((
            "Terminated",
            format!("terminated while {agent} was running (SIGTERM); reporting what it left"),
        ))
    } else {
        match &outcome.exit {
            Exit::SpawnFailed(m) => Some(("AgentFailed", m.clone())),
            Exit::Code(0) if final_error => Some((
                "AgentFailed",
                format!(
                    "{agent} reported failure: {}",
                    result.summary.as_deref().unwrap_or("(no message)")
                ),
            )),
            Exit::Code(0) => None,
            Exit::Code(c) => Some(("AgentFailed", format!("{agent} exited with exit code {c}{stderr_tail}"))),
            Exit::Signal(s) => Some(("AgentFailed", format!("{agent} was killed by signal {s}{stderr_tail}"))),
        }
    };
    // With plan review, an agent that ended without an approved plan did not do its task.
    let agent_failure = match agent_failure {
        None if cfg.plan_review && crate::approval::plan_approved(&cfg.decisions_file, &check).is_none() => Some((
            Reason::PlanNotApproved.as_str(),
            format!("{agent} ended without an approved plan (spec.approvals.plan); nothing is pushed"),
        )),
        other => other,
    };
    if let Exit::Code(c) = outcome.exit {
        result.exit_code = Some(c);
    }
    // A CLI that failed right after the model endpoint answered 429/5xx failed because of the
    // endpoint: a retryable reason (`spec.retry`), not the agent's.
    let agent_failure = match agent_failure {
        Some(("AgentFailed", message)) => {
            match crate::gateway::signals::model_unavailable(&crate::gateway::signals::model_status_file(&ws)) {
                Some(status) => Some((
                    "ModelUnavailable",
                    format!("{message} (the model endpoint answered HTTP {status} to the last call)"),
                )),
                None => Some(("AgentFailed", message)),
            }
        }
        other => other,
    };
    match agent_failure {
        Some((reason, message)) => {
            step(&mut em, Step::Agent, StepStatus::Failed, message.clone());
            fail(&mut result, reason, Some(Step::Agent), message);
        }
        None => {
            step(&mut em, Step::Agent, StepStatus::Succeeded, "");
        }
    }

    // 2. commit
    step(&mut em, Step::Commit, StepStatus::Started, "");
    let run_ref = format!("{}/{}", cfg.namespace, cfg.run);
    let message = crate::emit::clean(&cfg.commit_message, em.secrets());
    let req = CommitRequest {
        branch: &cfg.branch,
        base: read_base(&ws),
        message: &message,
        author_name: &cfg.author_name,
        author_email: &cfg.author_email,
        run_ref: &run_ref,
    };
    let committed = tokio::task::block_in_place(|| commit_worktree(&ws.work(), &req));
    let committed = match committed {
        Ok(c) => {
            let msg = c
                .commit
                .map(|id| format!("committed {id}"))
                .unwrap_or_else(|| "no changes".into());
            step(&mut em, Step::Commit, StepStatus::Succeeded, msg);
            result.commit = c.commit.map(|id| id.to_string());
            Some(c)
        }
        Err(e) => {
            step(&mut em, Step::Commit, StepStatus::Failed, e.to_string());
            if !fail(&mut result, "CommitFailed", Some(Step::Commit), e.to_string()) {
                em.emit(RunnerEvent::Error {
                    message: format!("commit: {e}"),
                });
            }
            None
        }
    };

    // 3. diff
    if let Some(commit) = committed.as_ref().and_then(|c| c.commit) {
        step(&mut em, Step::Diff, StepStatus::Started, "");
        let base = committed.as_ref().and_then(|c| c.base);
        let secrets = em.secrets().to_vec();
        let diffed = tokio::task::block_in_place(|| compute_diff(&ws.work(), base, commit))
            .and_then(|d| encode_patch(&d.patch, &secrets).map(|p| (d, p)));
        match diffed {
            Ok((d, p)) => {
                result.files_changed = d.files_changed;
                result.insertions = d.insertions;
                result.deletions = d.deletions;
                result.patch_bytes = p.patch_bytes;
                result.patch_truncated = p.truncated;
                for ev in p.events {
                    em.emit(ev);
                }
                step(
                    &mut em,
                    Step::Diff,
                    StepStatus::Succeeded,
                    format!(
                        "{} files changed, {} insertions(+), {} deletions(-)",
                        d.files_changed, d.insertions, d.deletions
                    ),
                );
            }
            Err(e) => {
                step(&mut em, Step::Diff, StepStatus::Failed, e.to_string());
                if !fail(&mut result, "DiffFailed", Some(Step::Diff), e.to_string()) {
                    em.emit(RunnerEvent::Error {
                        message: format!("diff: {e}"),
                    });
                }
            }
        }
    }

    // 4. push: the gateway decides (after a BeforePush approval when one is required)
    if cfg.push && result.outcome == Outcome::Succeeded {
        if let Some(commit) = result.commit.clone() {
            step(&mut em, Step::Push, StepStatus::Started, "");
            let timeout = if cfg.push_approval {
                announce_push_review(&mut em, &cfg, &result, &commit);
                PUSH_REVIEW_WAIT
            } else {
                Duration::from_secs(cfg.push_timeout_secs)
            };
            match request_push(&ws, &commit, timeout, &mut term).await {
                Ok(m) => {
                    result.pushed = true;
                    step(&mut em, Step::Push, StepStatus::Succeeded, m);
                }
                Err(e) => {
                    step(&mut em, Step::Push, StepStatus::Failed, e.to_string());
                    let reason = match &e {
                        PushError::Terminated => "Terminated",
                        PushError::Rejected(r, _)
                            if r == "Rejected" || r == "GateExpired" || r == Reason::PlanNotApproved.as_str() =>
                        {
                            r.as_str()
                        }
                        _ => "PushFailed",
                    };
                    if cfg.push_approval && matches!(reason, "Rejected" | "GateExpired") {
                        em.emit(RunnerEvent::ApprovalDecided {
                            id: "push".into(),
                            verdict: if reason == "Rejected" { "Reject" } else { "Expired" }.into(),
                        });
                    }
                    let reason = reason.to_string();
                    fail(&mut result, &reason, Some(Step::Push), e.to_string());
                }
            }
        }
    }

    if result.outcome == Outcome::Succeeded {
        result.message = match &result.commit {
            Some(c) => format!(
                "committed {} on {}: {} files changed, +{} -{}{}",
                &c[..c.len().min(12)],
                cfg.branch,
                result.files_changed,
                result.insertions,
                result.deletions,
                if result.pushed { ", pushed" } else { "" }
            ),
            None => "the agent changed nothing".into(),
        };
    }
    conclude(&mut em, result, &cfg.termination_log)
}

/// In a warm pod: waits for the claim and the gateway's clone. `Ok(env)` with the run's
/// settings; `Err(code)` when the pod was stopped while idle (0) or the run cannot go on (the
/// result line is already printed).
async fn claimed_env(env: Env) -> Result<Env, i32> {
    if !crate::warm::is_warm(&env) {
        return Ok(env);
    }
    let mut term = termination_watch();
    let handed = Workspace::from_env(&env);
    let claim = match crate::warm::wait_agent_claim(&crate::warm::annotations_file(&env), &handed, &mut term).await {
        None => return Err(0),
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            let mut em = Emitter::new(std::io::stdout(), env.secrets());
            let mut result = initial_result("");
            fail(&mut result, "InvalidConfig", None, e.to_string());
            return Err(conclude(&mut em, result, &termination_log(&env)));
        }
    };
    let env = env.with_overlay(&claim.agent);
    let ws = Workspace::from_env(&env);
    match crate::warm::wait_clone(&ws, &mut term).await {
        Some(0) => Ok(env),
        code => {
            // The gateway's clone failed (its result line is the run's) or the pod is stopping.
            // Its last line, when that is a result: a clone that succeeded just before the
            // pod was stopped left its step events there instead.
            let text = std::fs::read_to_string(crate::warm::clone_result_file(&ws)).unwrap_or_default();
            let line = text
                .lines()
                .last()
                .map(str::trim)
                .filter(|l| l.contains("\"type\":\"result\""))
                .unwrap_or_default();
            if line.is_empty() {
                let mut em = Emitter::new(std::io::stdout(), env.secrets());
                let mut result = initial_result(env.get(vars::BRANCH).unwrap_or_default());
                let message = match code {
                    None => "terminated while waiting for the clone".to_string(),
                    Some(c) => format!("the clone step failed (exit code {c})"),
                };
                fail(&mut result, "CloneFailed", Some(Step::Clone), message);
                return Err(conclude(&mut em, result, &termination_log(&env)));
            }
            println!("{line}");
            let _ = std::fs::write(termination_log(&env), line);
            Err(1)
        }
    }
}

/// Entry point of `paddock-runner run`: returns the exit code.
pub fn command() -> i32 {
    let env = Env::from_process();
    let telemetry = crate::telemetry::init(&env, "run");
    let code = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(async move {
            match claimed_env(env.clone()).await {
                Ok(env) => run(&env, std::io::stdout()).await,
                Err(code) => code,
            }
        }),
        Err(e) => {
            let mut em = Emitter::new(std::io::stdout(), env.secrets());
            let mut result = initial_result(env.get(vars::BRANCH).unwrap_or_default());
            fail(
                &mut result,
                "AgentFailed",
                Some(Step::Agent),
                format!("cannot start the runtime: {e}"),
            );
            conclude(&mut em, result, &termination_log(&env))
        }
    };
    telemetry.shutdown(code);
    code
}
