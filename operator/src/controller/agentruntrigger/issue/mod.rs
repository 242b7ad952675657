//! Webhook triggers (issue 20, docs/triggers.md): which deliveries start a run ([`accept`]),
//! the run one starts ([`build_run`]), and the comment on the issue once that run has ended
//! ([`comment_body`], [`comment_ended_runs`]). The pure parts are table-tested; the HTTP
//! receiver is [`crate::webhook`].

use crate::context::Context;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::Resource;
use paddock_crds::forge::{
    WebhookSpec, ANNOTATION_DELIVERY, ANNOTATION_ISSUE_COMMENTED, ANNOTATION_ISSUE_NUMBER, ANNOTATION_ISSUE_URL,
};
use paddock_crds::{AgentRun, AgentRunTrigger, Phase};
use paddock_forge::webhook::{same_repository, Delivery, Event, Issue};

/// Most bytes of an issue's body or a comment put into a prompt (the prompt's limit is 64 KiB).
pub const MAX_TEXT_BYTES: usize = 16 * 1024;

/// What starts a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The issue.
    pub issue: Issue,
    /// The command comment's id and text after the command (a comment command), or `None`
    /// (a label).
    pub comment: Option<(u64, String)>,
}

/// Why a delivery starts nothing (answered 202 and counted `ignored`).
pub type Ignored = String;

/// Decides whether `delivery` starts a run of a trigger with `spec` on repository `repo_url`
/// (the template's `spec.repo.url`). Pure.
///
/// # Errors
/// [`Ignored`] with the reason: another repository, a pull request, an event or label the
/// trigger does not act on, a comment not starting with the command, a user not in
/// `allowedUsers`.
pub fn accept(spec: &WebhookSpec, repo_url: &str, delivery: &Delivery) -> Result<Accepted, Ignored> {
    if !same_repository(&delivery.repository_url, repo_url) {
        return Err(format!(
            "the delivery is for {:?}, the trigger's repository is {:?}",
            paddock_forge::api::sanitize_url(&delivery.repository_url),
            paddock_forge::api::sanitize_url(repo_url)
        ));
    }
    let allowed = |who: &str| spec.allowed_users.is_empty() || spec.allowed_users.iter().any(|u| u == who);
    match &delivery.event {
        Event::Labeled { issue, .. } | Event::Commented { issue, .. } if issue.is_pull_request => {
            Err("the event is on a pull request, not an issue".into())
        }
        Event::Labeled { issue, labels } => {
            let Some(label) = &spec.issue_label else {
                return Err("the trigger does not act on labels".into());
            };
            if !labels.iter().any(|l| l == label) {
                return Err(format!("the issue has no label {label:?}"));
            }
            if !allowed(&delivery.sender) {
                return Err(format!("{:?} is not in allowedUsers", delivery.sender));
            }
            Ok(Accepted {
                issue: issue.clone(),
                comment: None,
            })
        }
        Event::Commented {
            issue,
            comment_id,
            body,
        } => {
            let Some(command) = &spec.command else {
                return Err("the trigger does not act on comments".into());
            };
            let text = body.trim_start();
            let rest = match text.strip_prefix(command.as_str()) {
                Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => rest.trim(),
                _ => return Err(format!("the comment does not start with {command:?}")),
            };
            // Commands need a named user (the CRD requires allowedUsers with command).
            if spec.allowed_users.is_empty() || !allowed(&delivery.sender) {
                return Err(format!("{:?} is not in allowedUsers", delivery.sender));
            }
            Ok(Accepted {
                issue: issue.clone(),
                comment: Some((*comment_id, rest.to_string())),
            })
        }
        Event::Other(kind) => Err(format!("the trigger does not act on {kind:?} events")),
    }
}

/// `n` in base 36 (digits, then lowercase letters).
pub fn base36(mut n: u64) -> String {
    let mut out = vec![];
    loop {
        out.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Replaces each `$(key)` of `values` in `template`, in one pass: text a value brings in is
/// never expanded again (an issue body containing `$(sender)` stays as written). Unknown
/// `$(…)` are kept.
pub fn expand_once(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find("$(") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after
            .find(')')
            .and_then(|j| values.iter().find(|(k, _)| *k == &after[..j]).map(|(_, v)| (j, v)))
        {
            Some((j, v)) => {
                out.push_str(v);
                rest = &after[j + 1..];
            }
            None => {
                out.push_str("$(");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn clip(s: &str) -> &str {
    if s.len() <= MAX_TEXT_BYTES {
        return s;
    }
    let mut end = MAX_TEXT_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The run `accepted` starts: the template with `$(issue.title)`, `$(issue.body)`,
/// `$(issue.url)`, `$(issue.number)`, `$(comment.body)` and `$(sender)` replaced in its prompt;
/// named `<trigger>-i<issue>` for a label (one run per issue) or `<trigger>-c<comment id>` for
/// a comment (one per comment), so a replayed delivery creates nothing (409); label
/// `paddock.dev/trigger`, annotations with the issue and the delivery; owned by the trigger.
/// `None` when the trigger has no name or UID yet. Pure.
pub fn build_run(trigger: &AgentRunTrigger, delivery: &Delivery, accepted: &Accepted) -> Option<AgentRun> {
    let name = trigger.metadata.name.as_deref()?;
    let t = &trigger.spec.run_template;
    let issue = &accepted.issue;
    let run_name = match &accepted.comment {
        None => format!("{name}-i{}", issue.number),
        // Base 36: a 10-digit comment id is 7 characters, so `<41-character trigger>-c<id>`
        // stays within an AgentRun name's 52.
        Some((id, _)) => format!("{name}-c{}", base36(*id)),
    };
    let mut spec = t.spec.clone();
    spec.cancel = false;
    if let Some(p) = &spec.prompt {
        let comment = accepted.comment.as_ref().map(|(_, c)| c.as_str()).unwrap_or_default();
        let number = issue.number.to_string();
        let values = [
            ("issue.title", clip(&issue.title)),
            ("issue.body", clip(&issue.body)),
            ("issue.url", issue.url.as_str()),
            ("issue.number", number.as_str()),
            ("comment.body", clip(comment)),
            ("sender", delivery.sender.as_str()),
        ];
        spec.prompt = Some(expand_once(p, &values));
    }
    let mut annotations = vec![
        (ANNOTATION_ISSUE_URL.to_string(), issue.url.clone()),
        (ANNOTATION_ISSUE_NUMBER.to_string(), issue.number.to_string()),
    ];
    if !delivery.id.is_empty() {
        annotations.push((ANNOTATION_DELIVERY.to_string(), delivery.id.clone()));
    }
    super::runs::owned_run(trigger, &run_name, spec, annotations)
}

fn annotation<'a>(run: &'a AgentRun, key: &str) -> Option<&'a str> {
    run.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The issue number a webhook run reports to, once it is ready to: ended, not commented yet,
/// and its pull request (if it asked for one and pushed) recorded or given up on (a False
/// `PullRequest` condition). Pure.
pub fn comment_due(run: &AgentRun) -> Option<u64> {
    let number = annotation(run, ANNOTATION_ISSUE_NUMBER)?.parse().ok()?;
    if annotation(run, ANNOTATION_ISSUE_COMMENTED).is_some() {
        return None;
    }
    let st = run.status.as_ref()?;
    if !st.phase.is_some_and(Phase::is_terminal) {
        return None;
    }
    // Wait while the pull request is still to be opened, unless its failure needs a fix
    // (a retryable one, e.g. the forge briefly down, is waited for).
    let pr_pending = crate::controller::agentrun::pullrequest::wanted(run).is_some()
        && paddock_crds::condition::find_condition(&st.conditions, "PullRequest").is_none_or(|c| {
            c.status != "False"
                || crate::controller::agentrun::pullrequest::RETRYABLE_REASONS.contains(&c.reason.as_str())
        });
    (!pr_pending).then_some(number)
}

/// The comment on the issue when `run` ended: outcome, the pull request, usage, where the
/// run is, and the run's marker (so it is posted once). Pure.
pub fn comment_body(run: &AgentRun, console: Option<&str>) -> String {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let name = run.metadata.name.as_deref().unwrap_or_default();
    let uid = run.metadata.uid.as_deref().unwrap_or_default();
    let st = run.status.clone().unwrap_or_default();
    let phase = st.phase.map(|p| format!("{p:?}")).unwrap_or_else(|| "Unknown".into());
    let cond = paddock_crds::condition::find_condition(&st.conditions, "Succeeded");
    let reason = cond.map(|c| c.reason.clone()).unwrap_or_default();
    let message = cond.map(|c| c.message.clone()).unwrap_or_default();
    let run_ref = match console {
        Some(c) => format!("[`{ns}/{name}`]({}/runs/{ns}/{name})", c.trim_end_matches('/')),
        None => format!("`{ns}/{name}`"),
    };
    let mut out = format!("**Paddock run {run_ref}: {phase}** ({reason})\n\n");
    if !message.is_empty() {
        out.push_str(&format!("> {}\n\n", message.replace('\n', " ")));
    }
    let result = st.result.as_ref();
    match result.and_then(|r| r.pull_request.as_ref()) {
        Some(pr) => out.push_str(&format!("Pull request: {} (#{})\n", pr.url, pr.number)),
        None => match result {
            Some(r) if r.run.pushed => out.push_str(&format!("Branch `{}` pushed; no pull request.\n", r.run.branch)),
            _ => out.push_str("No branch was pushed.\n"),
        },
    }
    if let Some(r) = result.filter(|r| !r.diffstat.is_empty()) {
        out.push_str(&format!("Changes: {} in {} file(s)\n", r.diffstat, r.run.files_changed));
    }
    if let Some(u) = &st.usage {
        let cost = u.cost_usd.map(|c| format!(", {c:.4} USD")).unwrap_or_default();
        out.push_str(&format!(
            "Usage: {} input + {} output tokens{cost}\n",
            u.input_tokens, u.output_tokens
        ));
    }
    out.push_str(&format!("\n{}", crate::controller::agentrun::pullrequest::marker(uid)));
    out
}

/// Comments on the issue of each ended webhook run of `trigger` that has not reported yet,
/// then marks the run (annotation `paddock.dev/issue-commented-at`). The comment carries the
/// run's marker and is skipped when one with it is there, so an operator that stopped between
/// the two writes does not comment twice. Forge failures are Events on the trigger and are
/// tried again at the next reconcile.
pub async fn comment_ended_runs(ctx: &Context, trigger: &AgentRunTrigger, runs: &[AgentRun]) {
    let Some(hook) = &trigger.spec.webhook else {
        return;
    };
    for run in runs {
        let Some(number) = comment_due(run) else {
            continue;
        };
        let name = run.metadata.name.clone().unwrap_or_default();
        let ns = run.metadata.namespace.clone().unwrap_or_default();
        let uid = run.metadata.uid.clone().unwrap_or_default();
        let api_url = run
            .spec
            .output
            .as_ref()
            .and_then(|o| o.pull_request.as_ref())
            .and_then(|p| p.api_url.clone());
        let posted = match crate::controller::forge::client_for_run(ctx, run, hook.provider, api_url.as_deref()).await {
            Ok(client) => client
                .ensure_comment(
                    number,
                    &crate::controller::agentrun::pullrequest::marker(&uid),
                    &comment_body(run, ctx.console_url.as_deref()),
                )
                .await
                .map_err(|e| format!("{}: {e}", e.reason())),
            Err(u) => Err(format!("{}: {}", u.reason, u.message)),
        };
        match posted {
            Ok(_) => {
                let api: Api<AgentRun> = Api::namespaced(ctx.client.clone(), &ns);
                let now = k8s_openapi::jiff::Timestamp::now().to_string();
                let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION_ISSUE_COMMENTED: now}}});
                if let Err(e) = api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    tracing::warn!(run = %name, error = %e, "could not mark the run as reported");
                }
                ctx.publish(
                    trigger,
                    EventType::Normal,
                    "IssueCommented",
                    format!("commented the outcome of run {name} on issue #{number}"),
                )
                .await;
            }
            Err(e) => {
                ctx.publish(
                    trigger,
                    EventType::Warning,
                    "IssueCommentFailed",
                    format!("run {name}, issue #{number}: {e}"),
                )
                .await;
            }
        }
    }
}

/// Whether `run` belongs to `trigger` by its controller owner reference (what the receiver
/// and the controller both check; a label alone can be set by anyone who may edit runs).
pub fn owned_by(run: &AgentRun, trigger: &AgentRunTrigger) -> bool {
    let uid = trigger.meta().uid.as_deref().unwrap_or_default();
    run.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

#[cfg(test)]
mod tests;
