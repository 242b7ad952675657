//! `spec.output.pullRequest` (issue 20, docs/triggers.md): once a run has ended `Succeeded`
//! with its branch pushed (so after any `BeforePush` approval and a required verification),
//! the operator opens a pull request from that branch, or updates the one already open for
//! it, with a receipt as its body; then records it in `status.result.pullRequest` (field
//! manager [`MANAGER_FORGE`]) with the condition `PullRequest` and the Event
//! `PullRequestOpened`. Finding the pull request by its head branch before opening one makes
//! this idempotent across retries and operator restarts.

use super::prompt::PromptText;
use crate::context::Context;
use crate::error::Result;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use paddock_crds::condition::{set_condition, FALSE, TRUE};
use paddock_crds::forge::{PullRequestSpec, PullRequestStatus};
use paddock_crds::{AgentRun, ApprovalGate, Phase};
use paddock_forge::{Ensured, NewPullRequest};
use std::fmt::Write as _;
use std::time::Duration;

/// Field manager of the operator's forge writes (`status.result.pullRequest`, the
/// `PullRequest` condition).
pub const MANAGER_FORGE: &str = "paddock.dev/forge";
/// Condition type: whether the pull request was opened (True, reason `Opened` or `Updated`),
/// or why not (False, a forge reason: `ForgeUnreachable`, `ForgeUnauthorized`,
/// `ForgeNotFound`, `ForgeUnavailable`, `ForgeError`, `MissingCredentials`, `InvalidRepoURL`,
/// `InsecureTransport`).
pub const COND_PULL_REQUEST: &str = "PullRequest";
/// `PullRequest` reasons of failures that pass by themselves (tried again after
/// [`RETRY_AFTER`]); the others need a fix.
pub const RETRYABLE_REASONS: &[&str] = &["ForgeUnreachable", "ForgeUnavailable", "KubeApiError"];
/// How long a retryable forge failure (unreachable, 5xx, 429) waits before the next try.
pub const RETRY_AFTER: Duration = Duration::from_secs(20);
/// How long any other failure (no credentials, 401/403, 404) waits: it needs a fix (a
/// Secret, a token's scope), after which the next try succeeds without touching the run.
pub const RETRY_AFTER_FIX: Duration = Duration::from_secs(300);
/// Marker in the receipt naming the run's UID (what an issue comment also carries).
pub fn marker(uid: &str) -> String {
    format!("<!-- paddock:run={uid} -->")
}

/// The pull request `run` still has to open: its `spec.output.pullRequest` when it ended
/// `Succeeded` with its branch pushed and none is recorded yet. Pure.
pub fn wanted(run: &AgentRun) -> Option<&PullRequestSpec> {
    let spec = run.spec.output.as_ref()?.pull_request.as_ref()?;
    let st = run.status.as_ref()?;
    let result = st.result.as_ref()?;
    (st.phase == Some(Phase::Succeeded) && result.run.pushed && result.pull_request.is_none()).then_some(spec)
}

fn first_line(s: &str) -> &str {
    s.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default()
}

/// Replaces `$(run.name)`, `$(prompt.firstLine)` (of `prompt`: `spec.prompt` as read from the
/// API server; `None`, a run with `spec.promptFrom`: empty), `$(summary)` and `$(diffstat)` in `t`.
pub fn expand(t: &str, run: &AgentRun, prompt: Option<&PromptText>) -> String {
    let result = run.status.as_ref().and_then(|s| s.result.as_ref());
    t.replace("$(run.name)", run.metadata.name.as_deref().unwrap_or_default())
        .replace(
            "$(prompt.firstLine)",
            first_line(prompt.map(PromptText::as_str).unwrap_or_default()),
        )
        .replace(
            "$(summary)",
            result.and_then(|r| r.run.summary.as_deref()).unwrap_or_default(),
        )
        .replace("$(diffstat)", result.map(|r| r.diffstat.as_str()).unwrap_or_default())
}

fn time(t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> String {
    t.map(|t| t.0.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

/// Markdown table cells must not break the table.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// The receipt: what ran, who approved what and when, usage and cost, the verification, and
/// where the run is. `prompt` as for [`expand`]; `gates` are the run's ApprovalGates; `console`
/// the console's base URL. Pure.
pub fn receipt(run: &AgentRun, prompt: Option<&PromptText>, gates: &[ApprovalGate], console: Option<&str>) -> String {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let name = run.metadata.name.as_deref().unwrap_or_default();
    let uid = run.metadata.uid.as_deref().unwrap_or_default();
    let st = run.status.clone().unwrap_or_default();
    let (commit, branch, diffstat, files) = match &st.result {
        Some(r) => (
            r.run.commit.as_deref().unwrap_or("-"),
            r.run.branch.as_str(),
            r.diffstat.as_str(),
            r.run.files_changed,
        ),
        None => ("-", "-", "", 0),
    };
    let mut r = String::from("### Paddock receipt\n\n| | |\n|---|---|\n");
    let link = match console {
        Some(c) => format!("[`{ns}/{name}`]({}/runs/{ns}/{name})", c.trim_end_matches('/')),
        None => format!("`{ns}/{name}`"),
    };
    let _ = writeln!(r, "| Run | {link} (uid `{uid}`) |");
    let agent = &run.spec.agent;
    let model = agent
        .model
        .as_deref()
        .map(|m| format!(", model `{}`", cell(m)))
        .unwrap_or_default();
    let _ = writeln!(r, "| Agent | `{}`{model} |", agent.name.as_str());
    if let Some(p) = &st.policy {
        let _ = writeln!(
            r,
            "| Runner pool | `{}`, image `{}` |",
            cell(&p.runner_pool.name),
            cell(&p.image)
        );
    }
    let _ = writeln!(
        r,
        "| Task | {} |",
        cell(first_line(prompt.map_or("(from a ConfigMap)", PromptText::as_str)))
    );
    if let Some(url) = run
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(paddock_crds::forge::ANNOTATION_ISSUE_URL))
    {
        let _ = writeln!(r, "| Issue | {} |", cell(url));
    }
    let _ = writeln!(r, "| Commit | `{commit}` on `{}` |", cell(branch));
    let _ = writeln!(
        r,
        "| Changes | {} in {files} file(s) |",
        if diffstat.is_empty() { "-" } else { diffstat },
    );
    let verification = match &st.verification {
        Some(v) => format!(
            "{:?}{}{}",
            v.result,
            if v.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", v.reason)
            },
            v.summary
                .as_deref()
                .map(|s| format!(": {}", cell(s)))
                .unwrap_or_default()
        ),
        None => "not configured".into(),
    };
    let _ = writeln!(r, "| Verification | {verification} |");
    let usage = st.usage.clone().unwrap_or_default();
    let cost = usage.cost_usd.map(|c| format!(", {c:.4} USD")).unwrap_or_default();
    let _ = writeln!(
        r,
        "| Usage | {} input + {} output tokens, {} turn(s){cost} |",
        usage.input_tokens, usage.output_tokens, usage.turns
    );
    let _ = writeln!(
        r,
        "| Time | {} to {} ({}) |",
        time(st.start_time.as_ref()),
        time(st.completion_time.as_ref()),
        st.duration.as_deref().unwrap_or("-")
    );
    let mut gates: Vec<&ApprovalGate> = gates.iter().collect();
    gates.sort_by_key(|g| g.metadata.creation_timestamp.as_ref().map(|t| t.0));
    if gates.is_empty() {
        let _ = writeln!(r, "| Approvals | none required |");
    }
    for g in gates {
        let gs = g.status.clone().unwrap_or_default();
        let decisions: Vec<String> = g
            .spec
            .decisions
            .iter()
            .map(|d| {
                format!(
                    "{:?} by `{}`{}",
                    d.decision,
                    cell(&d.approver),
                    d.comment
                        .as_deref()
                        .map(|c| format!(" (\"{}\")", cell(c)))
                        .unwrap_or_default()
                )
            })
            .collect();
        let _ = writeln!(
            r,
            "| Approval `{:?}` | {}; {} at {} |",
            g.spec.stage,
            if decisions.is_empty() {
                "no decision".into()
            } else {
                decisions.join(", ")
            },
            gs.state.map(|s| format!("{s:?}")).unwrap_or_else(|| "Pending".into()),
            time(gs.decided_at.as_ref()),
        );
    }
    let _ = writeln!(
        r,
        "\nOpened by the Paddock operator after the push; the agent had no access to the forge."
    );
    let _ = write!(r, "{}", marker(uid));
    r
}

/// The pull request to open for `run`: title and body from `spec` (templated), the receipt
/// appended; `prompt` as for [`expand`]. Pure.
pub fn new_pull_request(
    run: &AgentRun,
    prompt: Option<&PromptText>,
    spec: &PullRequestSpec,
    gates: &[ApprovalGate],
    console: Option<&str>,
) -> NewPullRequest {
    let title = expand(
        spec.title.as_deref().unwrap_or("paddock: $(prompt.firstLine)"),
        run,
        prompt,
    );
    let title: String = title.chars().take(250).collect();
    let mut body = spec.body.as_deref().map(|b| expand(b, run, prompt)).unwrap_or_default();
    if !body.is_empty() {
        body.push_str("\n\n---\n\n");
    }
    body.push_str(&receipt(run, prompt, gates, console));
    NewPullRequest {
        head: run
            .status
            .as_ref()
            .and_then(|s| s.result.as_ref())
            .map(|r| r.run.branch.clone())
            .unwrap_or_default(),
        base: spec.base.clone(),
        title,
        body,
        draft: spec.draft,
        labels: spec.labels.clone(),
    }
}

/// Opens (or finds and updates) `run`'s pull request when [`wanted`], and records it.
/// Returns when to try again after a retryable failure.
///
/// # Errors
/// Kubernetes API errors (the forge's own are recorded in the `PullRequest` condition).
pub async fn ensure(run: &AgentRun, ctx: &Context) -> Result<Option<Duration>> {
    let Some(spec) = wanted(run) else {
        if let Some(uid) = &run.metadata.uid {
            ctx.forge_retry
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(uid);
        }
        return Ok(None);
    };
    let (ns, name) = super::super::namespace_and_name(&run.metadata)?;
    let uid = run.metadata.uid.clone().unwrap_or_default();
    let due = ctx
        .forge_retry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&uid)
        .map(|at| at.saturating_duration_since(std::time::Instant::now()))
        .filter(|d| !d.is_zero());
    if let Some(wait) = due {
        return Ok(Some(wait));
    }
    let gates_api: Api<ApprovalGate> = Api::namespaced(ctx.client.clone(), &ns);
    let gates: Vec<ApprovalGate> = gates_api
        .list(&ListParams::default().labels(&format!("{}={name}", paddock_crds::LABEL_RUN)))
        .await?
        .items
        .into_iter()
        .filter(|g| g.spec.run_ref.uid.as_deref() == Some(uid.as_str()))
        .collect();
    // The prompt's first line titles it: `spec.prompt` from the API server (the cache has none).
    let prompt = super::prompt::fetch_spec_prompt(&ctx.client, run).await?;
    let pr = new_pull_request(run, prompt.as_ref(), spec, &gates, ctx.console_url.as_deref());
    let outcome = match super::super::forge::client_for_run(ctx, run, spec.provider, spec.api_url.as_deref()).await {
        Ok(client) => client
            .ensure_pull_request(&pr)
            .await
            .map_err(|e| (e.reason(), e.to_string(), e.is_retryable())),
        Err(u) => Err((u.reason, u.message, u.retryable)),
    };
    let mut conditions = run.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let (status, retry) = match outcome {
        Ok((opened, how)) => {
            let reason = if how == Ensured::Created { "Opened" } else { "Updated" };
            let msg = format!(
                "pull request #{} {}: {}",
                opened.number,
                reason.to_lowercase(),
                opened.url
            );
            set_condition(
                &mut conditions,
                COND_PULL_REQUEST,
                TRUE,
                reason,
                &msg,
                run.metadata.generation,
                now,
            );
            ctx.publish(run, EventType::Normal, "PullRequestOpened", msg).await;
            ctx.forge_retry
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&uid);
            (
                serde_json::json!({"result": {"pullRequest": PullRequestStatus { url: opened.url, number: opened.number }}}),
                None,
            )
        }
        Err((reason, message, retryable)) => {
            let wait = if retryable { RETRY_AFTER } else { RETRY_AFTER_FIX };
            ctx.forge_retry
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(uid.clone(), std::time::Instant::now() + wait);
            let msg = format!("{message} (next try in {} s)", wait.as_secs());
            set_condition(
                &mut conditions,
                COND_PULL_REQUEST,
                FALSE,
                reason,
                &msg,
                run.metadata.generation,
                now,
            );
            ctx.publish(run, EventType::Warning, "PullRequestFailed", format!("{reason}: {msg}"))
                .await;
            (serde_json::json!({}), Some(wait))
        }
    };
    let mut status = status;
    let cond = conditions.into_iter().find(|c| c.type_ == COND_PULL_REQUEST);
    status["conditions"] = serde_json::json!([cond]);
    let api: Api<AgentRun> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "status": status});
    api.patch_status(&name, &PatchParams::apply(MANAGER_FORGE).force(), &Patch::Apply(&patch))
        .await?;
    Ok(retry)
}

#[cfg(test)]
mod tests;
