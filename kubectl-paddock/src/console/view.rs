//! The console's HTML, rendered on the server by pure functions (no I/O, no clock: `now` is a
//! parameter). Every value goes through maud's `(…)` splice, which escapes `& < > "` — agent
//! output (messages, tool inputs, file names, diffs, transcripts) is text, never markup. The
//! only `PreEscaped` values are fixed strings of this file.
//!
//! Element ids the live updates address (`hx-swap-oob` in [`super::live`]): `run-status`,
//! `run-gates`, `run-messages`, `diff`, `timeline`; the runs table is `runs-table`, the inbox list `inbox-list`.

use super::conversation;
use crate::{age, describe_event, human_duration, TranscriptLine};
use k8s_openapi::jiff::Timestamp;
use maud::{html, Markup, DOCTYPE};
use paddock_crds::events::{EventLine, RunnerEvent};
use paddock_crds::{AgentRun, ApprovalGate, GateState, Phase, RunMessage, RunnerPool};
use std::sync::Arc;

/// Page size of the runs list.
pub const PAGE_SIZE: usize = 50;

/// Longest text of one timeline entry (tool input or output) shown, in characters; the rest is
/// cut with a note.
pub const MAX_EVENT_CHARS: usize = 4000;

/// What every page needs besides its body.
#[derive(Debug, Clone)]
pub struct Chrome<'a> {
    /// The caller as the API server names them.
    pub user: &'a str,
    /// The namespace the console shows, `None` for all.
    pub namespace: Option<&'a str>,
    /// The CSRF token the page sends with every write (header `X-Paddock-Csrf`).
    pub csrf: &'a str,
    /// Which tab is current: `runs`, `inbox`, `pools`, `new`, or empty.
    pub tab: &'a str,
}

/// A whole page: head (vendored scripts and styles only, all from `/assets/`), navigation,
/// `body`. `title` is text.
pub fn page(chrome: &Chrome<'_>, title: &str, body: Markup) -> Markup {
    let headers = serde_json::json!({ super::security::CSRF_HEADER: chrome.csrf }).to_string();
    let tab = |t: &str| if chrome.tab == t { "tab current" } else { "tab" };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // htmx: no inline indicator styles (CSP), no eval, no script tags from swaps.
                meta name="htmx-config" content=(r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false,"selfRequestsOnly":true,"historyCacheSize":0}"#);
                title { (title) " · Paddock" }
                link rel="stylesheet" href="/assets/diff2html.min.css";
                link rel="stylesheet" href="/assets/highlight-github.min.css";
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/htmx.min.js" {}
                script src="/assets/htmx-ext-sse.min.js" {}
                script src="/assets/diff2html-ui-slim.min.js" {}
                script src="/assets/console.js" {}
            }
            body hx-headers=(headers) {
                nav {
                    a.brand href="/" { "Paddock" }
                    a class=(tab("runs")) href="/" { "Runs" }
                    a class=(tab("inbox")) href="/inbox" { "Inbox" }
                    a class=(tab("pools")) href="/pools" { "Pools" }
                    a class=(tab("new")) href="/new" { "New run" }
                    span.who {
                        "signed in as " b #whoami { (chrome.user) }
                        " · " (chrome.namespace.map_or("all namespaces".to_string(), |n| format!("namespace {n}")))
                    }
                }
                main { (body) }
            }
        }
    }
}

/// An error box with the API server's (or the console's) message, verbatim.
pub fn error_box(message: &str) -> Markup {
    html! { div.error role="alert" { (message) } }
}

/// A notice box (a write went through).
pub fn ok_box(message: &str) -> Markup {
    html! { div.ok role="status" { (message) } }
}

/// The filter of the runs list (query parameters of `/`). Empty fields do not filter.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(default)]
pub struct RunFilter {
    /// Namespace, exact.
    pub ns: String,
    /// Phase, exact (`Running`, …).
    pub phase: String,
    /// Agent name, exact (`claude-code`, …).
    pub agent: String,
    /// Pool name, exact (a run without `runnerPoolRef` is in pool `default`).
    pub pool: String,
    /// Text looked for (case-insensitive) in the name, the repository URL and the prompt.
    pub q: String,
    /// Page, 1-based (0 is read as 1).
    pub page: usize,
}

impl RunFilter {
    /// The filter as a query string without `page`, for links (`ns=a&phase=Running`).
    pub fn query(&self, page: usize) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("ns", &self.ns),
            ("phase", &self.phase),
            ("agent", &self.agent),
            ("pool", &self.pool),
            ("q", &self.q),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        if page > 1 {
            q.append_pair("page", &page.to_string());
        }
        q.finish()
    }
}

/// The pool a run goes to: its `runnerPoolRef`, else `default`.
pub fn pool_of(run: &AgentRun) -> &str {
    run.spec.runner_pool_ref.as_ref().map_or("default", |r| r.name.as_str())
}

fn phase_str(run: &AgentRun) -> &'static str {
    run.status
        .as_ref()
        .and_then(|s| s.phase)
        .map_or("Pending", Phase::as_str)
}

/// Selects one page of runs: those matching `f`, newest first (creation time, then namespace
/// and name). Returns (the page, how many matched). Pure; O(n log n) in the matching runs.
pub fn select_runs(runs: &[Arc<AgentRun>], f: &RunFilter) -> (Vec<Arc<AgentRun>>, usize) {
    let q = f.q.to_lowercase();
    let mut hits: Vec<&Arc<AgentRun>> = runs
        .iter()
        .filter(|r| f.ns.is_empty() || r.metadata.namespace.as_deref() == Some(f.ns.as_str()))
        .filter(|r| f.phase.is_empty() || phase_str(r) == f.phase)
        .filter(|r| f.agent.is_empty() || r.spec.agent.name.as_str() == f.agent)
        .filter(|r| f.pool.is_empty() || pool_of(r) == f.pool)
        .filter(|r| {
            q.is_empty()
                || r.metadata.name.as_deref().unwrap_or("").to_lowercase().contains(&q)
                || r.spec.repo.url.to_lowercase().contains(&q)
                || r.spec.prompt.as_deref().unwrap_or("").to_lowercase().contains(&q)
        })
        .collect();
    let total = hits.len();
    let key = |r: &AgentRun| {
        (
            r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            r.metadata.namespace.clone(),
            r.metadata.name.clone(),
        )
    };
    hits.sort_by_cached_key(|r| std::cmp::Reverse(key(r)));
    let page = f.page.max(1);
    let rows = hits
        .into_iter()
        .skip((page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .cloned()
        .collect();
    (rows, total)
}

fn run_href(ns: &str, name: &str) -> String {
    format!(
        "/runs/{}/{}",
        form_urlencoded::byte_serialize(ns.as_bytes()).collect::<String>(),
        form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
    )
}

fn cost(usage: Option<&paddock_crds::events::Usage>) -> String {
    usage
        .and_then(|u| u.cost_usd)
        .map_or(String::new(), |c| format!("${c:.4}"))
}

fn tokens(usage: Option<&paddock_crds::events::Usage>) -> String {
    usage.map_or(String::new(), |u| format!("{}/{}", u.input_tokens, u.output_tokens))
}

fn duration(run: &AgentRun, now: Timestamp) -> String {
    let s = run.status.as_ref();
    if let Some(d) = s.and_then(|s| s.duration.clone()) {
        return d;
    }
    match s.and_then(|s| s.start_time.as_ref()) {
        Some(t) => human_duration(now.as_second().saturating_sub(t.0.as_second()).max(0)),
        None => String::new(),
    }
}

/// The runs page: filters, the table of one page, the pager. Live: the table reloads when the
/// server says runs changed (SSE event `runs`).
pub fn runs_page(
    chrome: &Chrome<'_>,
    runs: &[Arc<AgentRun>],
    total: usize,
    f: &RunFilter,
    now: Timestamp,
    watch_error: Option<&str>,
) -> Markup {
    let phases = [
        "Pending",
        "Queued",
        "AwaitingApproval",
        "Running",
        "Succeeded",
        "Failed",
        "Cancelled",
        "TimedOut",
        "Rejected",
    ];
    page(
        chrome,
        "Runs",
        html! {
            h1 { "Runs" }
            form.filters method="get" action="/" {
                @if chrome.namespace.is_none() {
                    input name="ns" placeholder="namespace" value=(f.ns);
                }
                select name="phase" {
                    option value="" { "any phase" }
                    @for p in phases { option value=(p) selected[f.phase == p] { (p) } }
                }
                input name="agent" placeholder="agent" value=(f.agent);
                input name="pool" placeholder="pool" value=(f.pool);
                input name="q" placeholder="text in name, repo, prompt" value=(f.q);
                button type="submit" { "Filter" }
            }
            @if let Some(e) = watch_error { (error_box(e)) }
            div hx-ext="sse" sse-connect="/live/runs" {
                (runs_table(chrome, runs, total, f, now))
            }
        },
    )
}

/// The runs table fragment (`#runs-table`), reloaded on SSE `runs`.
pub fn runs_table(chrome: &Chrome<'_>, runs: &[Arc<AgentRun>], total: usize, f: &RunFilter, now: Timestamp) -> Markup {
    let page_no = f.page.max(1);
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let all = chrome.namespace.is_none();
    let reload = format!("/fragments/runs?{}", f.query(page_no));
    html! {
        div #runs-table hx-get=(reload) hx-trigger="sse:runs" hx-swap="outerHTML" {
            p.count { (total) " runs" @if total > PAGE_SIZE { " · page " (page_no) " of " (pages) } }
            table.runs {
                thead { tr {
                    @if all { th { "Namespace" } }
                    th { "Name" } th { "Agent" } th { "Phase" } th { "Repo" } th { "Pool" }
                    th { "Diff" } th { "Cost" } th { "Tokens in/out" } th { "Duration" } th { "Age" }
                } }
                tbody {
                    @for r in runs {
                        @let ns = r.metadata.namespace.as_deref().unwrap_or("");
                        @let name = r.metadata.name.as_deref().unwrap_or("");
                        @let st = r.status.as_ref();
                        @let usage = st.and_then(|s| s.usage.as_ref());
                        tr data-run=(name) {
                            @if all { td { (ns) } }
                            td { a href=(run_href(ns, name)) { (name) } }
                            td { (r.spec.agent.name.as_str()) }
                            td { span class={"phase phase-" (phase_str(r))} { (phase_str(r)) } }
                            td.repo { (r.spec.repo.url) }
                            td { (pool_of(r)) }
                            td { (st.and_then(|s| s.result.as_ref()).map(|x| x.diffstat.clone()).unwrap_or_default()) }
                            td { (cost(usage)) }
                            td { (tokens(usage)) }
                            td { (duration(r, now)) }
                            td { (age(r.metadata.creation_timestamp.as_ref(), now)) }
                        }
                    }
                }
            }
            @if pages > 1 {
                p.pager {
                    @if page_no > 1 { a href={"/?" (f.query(page_no - 1))} { "← newer" } " " }
                    @if page_no < pages { a href={"/?" (f.query(page_no + 1))} { "older →" } }
                }
            }
        }
    }
}

fn gate_state(g: &ApprovalGate) -> GateState {
    g.status.as_ref().and_then(|s| s.state).unwrap_or(GateState::Pending)
}

/// Seconds until a gate expires (negative once past), when it has an expiry.
pub fn expires_in(g: &ApprovalGate, now: Timestamp) -> Option<i64> {
    g.status
        .as_ref()
        .and_then(|s| s.expires_at.as_ref())
        .map(|t| t.0.as_second() - now.as_second())
}

/// The decide controls of a pending gate, posting to `/gates/<ns>/<gate>/decide`: a comment
/// box and Approve / Reject, or for a `Question` an answer box, its options and Decline, for a
/// `Plan` Request changes too ([`conversation::decide_controls`]); the answer (or the API
/// server's refusal) lands in the form's `.decide-result` (kept, like the typed text, when a
/// live update re-renders the list).
pub fn decide_form(ns: &str, g: &ApprovalGate) -> Markup {
    let gate = g.metadata.name.as_deref().unwrap_or("");
    let action = format!(
        "/gates/{}/{}/decide",
        form_urlencoded::byte_serialize(ns.as_bytes()).collect::<String>(),
        form_urlencoded::byte_serialize(gate.as_bytes()).collect::<String>()
    );
    let result_id = format!("decide-result-{ns}-{gate}");
    html! {
        form.decide hx-post=(action) hx-target="find .decide-result" hx-swap="innerHTML" {
            (conversation::decide_controls(ns, gate, g))
            div.decide-result id=(result_id) hx-preserve="true" {}
        }
    }
}

/// One request line of a gate: summary, tool call, commit and diffstat.
fn gate_request(g: &ApprovalGate) -> Markup {
    let r = &g.spec.request;
    html! {
        div.request {
            p.summary { (r.summary) }
            @if let Some(tool) = &r.tool { p { "tool " code.tool { (tool) } } }
            @if let Some(input) = &r.input { pre.tool-input { (clip(input)) } }
            @if let Some(c) = &r.commit { p { "commit " code { (c) } @if let Some(d) = &r.diffstat { " · " (d) } } }
            (conversation::request_details(g))
        }
    }
}

/// The gates panel of a run page (`#run-gates`).
pub fn gates_panel(ns: &str, gates: &[Arc<ApprovalGate>], now: Timestamp) -> Markup {
    html! {
        section #run-gates {
            h2 { "Approval gates" }
            @if gates.is_empty() { p.muted { "This run has no gates." } }
            @for g in gates {
                @let name = g.metadata.name.as_deref().unwrap_or("");
                @let st = g.status.clone().unwrap_or_default();
                @let state = gate_state(g);
                div.gate data-gate=(name) data-state=(state.as_str()) {
                    h3 {
                        (name) " · " (g.spec.stage.as_str()) " · "
                        span class={"state state-" (state.as_str())} { (state.as_str()) }
                        " · " (st.approvals) "/" (g.spec.quorum) " approvals"
                    }
                    (gate_request(g))
                    @if !g.spec.approvers.users.is_empty() || !g.spec.approvers.groups.is_empty() {
                        p.approvers { "approvers: " (g.spec.approvers.users.join(", "))
                            @if !g.spec.approvers.groups.is_empty() { " groups: " (g.spec.approvers.groups.join(", ")) } }
                    }
                    @if !g.spec.decisions.is_empty() {
                        ul.decisions {
                            @for d in &g.spec.decisions {
                                li { b.approver { (d.approver) } " " (format!("{:?}", d.decision))
                                    @if let Some(c) = &d.comment { ": " q { (c) } } }
                            }
                        }
                    }
                    @if let Some(by) = &st.decided_by { p { "decided by " b.decided-by { (by) } } }
                    @if state == GateState::Pending {
                        @if let Some(s) = expires_in(g, now) { p.expiry { "expires in " span.countdown data-expires=(now.as_second() + s) { (human_duration(s.max(0))) } } }
                        (decide_form(ns, g))
                    }
                }
            }
        }
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() <= MAX_EVENT_CHARS {
        return s.to_string();
    }
    let cut: String = s.chars().take(MAX_EVENT_CHARS).collect();
    format!("{cut}\n… ({} more characters)", s.chars().count() - MAX_EVENT_CHARS)
}

/// One timeline entry (`<li>`): time relative to `t0` (the first event's), type, and the event
/// — tool calls with their input, tool results with their output, the rest as the plugin's
/// [`describe_event`] line. `data-ts` is the runner's timestamp (RFC 3339).
pub fn timeline_item(e: &EventLine, t0: Option<Timestamp>) -> Markup {
    let rel = match (t0, e.ts.parse::<Timestamp>()) {
        (Some(t0), Ok(t)) => format!("+{:.1}s", (t.as_millisecond() - t0.as_millisecond()) as f64 / 1000.0),
        _ => "?".into(),
    };
    let ty = e.event.type_name();
    html! {
        li class={"ev ev-" (ty)} data-seq=(e.seq) data-ts=(e.ts) {
            span.t { (rel) } " "
            span.ty { (ty) } " "
            @match &e.event {
                RunnerEvent::ToolCall { name, input, .. } => { b.tool { (name) } pre.io { (clip(input)) } }
                RunnerEvent::ToolResult { id, is_error, output } => {
                    span { (id) " " (if *is_error { "error" } else { "ok" }) } pre.io { (clip(output)) }
                }
                RunnerEvent::Message { text } => { span.msg { (clip(text)) } }
                RunnerEvent::Log { stream, text } => { span { (stream) " " } span.msg { (clip(text)) } }
                other => {
                    @let d = describe_event(other);
                    span.d { (clip(d.strip_prefix(ty).unwrap_or(&d).trim_start())) }
                }
            }
        }
    }
}

/// The transcript table: one row per model call (tokens, USD).
pub fn transcript_table(lines: &[TranscriptLine]) -> Markup {
    let calls: Vec<_> = lines
        .iter()
        .filter_map(|l| match l {
            TranscriptLine::Call(c) => Some(c),
            _ => None,
        })
        .collect();
    let total: f64 = calls.iter().filter_map(|c| c.cost_usd).sum();
    html! {
        table.transcript {
            thead { tr { th { "#" } th { "time" } th { "route" } th { "request" } th { "status" } th { "model" } th { "in" } th { "out" } th { "USD" } } }
            tbody {
                @for l in lines {
                    @match l {
                        TranscriptLine::Call(c) => tr {
                            td { (c.seq.map(|x| x.to_string()).unwrap_or_default()) }
                            td { (c.ts.clone().unwrap_or_default()) }
                            td { (c.route.clone().unwrap_or_default()) }
                            td { (c.method.clone().unwrap_or_default()) " " (c.path.clone().unwrap_or_default()) }
                            td { (c.status.map(|x| x.to_string()).unwrap_or_default()) }
                            td { (c.model.clone().unwrap_or_default()) }
                            td { (c.input_tokens.map(|x| x.to_string()).unwrap_or_default()) }
                            td { (c.output_tokens.map(|x| x.to_string()).unwrap_or_default()) }
                            td { (c.cost_usd.map_or("unpriced".to_string(), |c| format!("${c:.6}"))) }
                        },
                        TranscriptLine::Truncated { limit_bytes } => tr { td colspan="9" {
                            "… later calls not recorded (transcript limit " (limit_bytes.map(|b| b.to_string()).unwrap_or_default()) " bytes)" } },
                        TranscriptLine::Other(s) => tr { td colspan="9" { (s) } },
                    }
                }
            }
            tfoot { tr { td colspan="8" { (calls.len()) " calls" } td { (format!("${total:.6}")) } } }
        }
    }
}

/// The diff section (`#diff`): the patch as escaped text in a `<pre>` (readable without
/// script), which `console.js` renders with diff2html (per file, unified or side by side,
/// highlighted). `patch` is `Err(message)` when there is none (yet).
pub fn diff_section(patch: &Result<String, String>) -> Markup {
    html! {
        section #diff {
            h2 { "Diff" }
            @match patch {
                Ok(p) => {
                    div.diff-modes {
                        button type="button" data-diff-mode="line-by-line" { "Unified" }
                        button type="button" data-diff-mode="side-by-side" { "Side by side" }
                    }
                    pre.diff-source data-diff-source="" { (p) }
                    div.diff-view {}
                }
                Err(why) => p.muted { (why) },
            }
        }
    }
}

/// The status panel of a run page (`#run-status`): phase, conditions, attempts, usage, result.
pub fn status_panel(run: &AgentRun, now: Timestamp) -> Markup {
    let st = run.status.clone().unwrap_or_default();
    let phase = phase_str(run);
    html! {
        section #run-status data-phase=(phase) {
            p.phase-line {
                "phase " span #phase class={"phase phase-" (phase)} { (phase) }
                @if let Some(q) = st.queue_position { " · queue position " (q) }
                @if let Some(g) = &st.gate_name { " · waiting on gate " code { (g) } }
                " · duration " (duration(run, now))
            }
            @if let Some(u) = &st.usage {
                p.usage { "tokens in " (u.input_tokens) " · out " (u.output_tokens) " · turns " (u.turns)
                    @if let Some(c) = u.cost_usd { " · cost " (format!("${c:.4}")) } }
            }
            @if let Some(r) = &st.result {
                p.result {
                    "result " (format!("{:?}", r.run.outcome)) " (" (r.run.reason) ")"
                    @if let Some(c) = &r.run.commit { " · commit " code { (c) } " on " code { (r.run.branch) } }
                    " · pushed " (r.run.pushed) " · " (r.diffstat)
                }
                @if let Some(s) = &r.run.summary { p.summary { "agent-reported summary: " (clip(s)) } }
            }
            table.conditions {
                thead { tr { th { "Condition" } th { "Status" } th { "Reason" } th { "Message" } th { "Since" } } }
                tbody {
                    @for c in &st.conditions {
                        tr { td { (c.type_) } td { (c.status) } td { (c.reason) } td { (c.message) } td { (age(Some(&c.last_transition_time), now)) } }
                    }
                }
            }
            @if !st.attempts.is_empty() {
                h3 { "Attempts" }
                table.attempts {
                    thead { tr { th { "#" } th { "Pod" } th { "Reason" } th { "Message" } th { "Exit" } } }
                    tbody {
                        @for a in &st.attempts {
                            tr { td { (a.attempt) } td { (a.pod_name) } td { (a.reason) } td { (a.message) } td { (a.exit_code.map(|c| c.to_string()).unwrap_or_default()) } }
                        }
                    }
                }
            }
        }
    }
}

/// The YAML a run can be re-created from (apiVersion, kind, name, namespace, spec).
pub fn run_yaml(run: &AgentRun) -> String {
    let v = serde_json::json!({
        "apiVersion": "paddock.dev/v1alpha1",
        "kind": "AgentRun",
        "metadata": {"name": run.metadata.name, "namespace": run.metadata.namespace},
        "spec": run.spec,
    });
    serde_yaml::to_string(&v).unwrap_or_else(|e| format!("# cannot render YAML: {e}"))
}

/// The run page. Live (SSE `/runs/<ns>/<name>/live`, event `update`): the status, gates and
/// messages panels are replaced, the timeline grows, the diff appears once there is one.
pub fn run_page(
    chrome: &Chrome<'_>,
    run: &AgentRun,
    gates: &[Arc<ApprovalGate>],
    messages: &Result<Vec<RunMessage>, String>,
    patch: &Result<String, String>,
    transcript: &Result<Vec<TranscriptLine>, String>,
    now: Timestamp,
) -> Markup {
    let ns = run.metadata.namespace.as_deref().unwrap_or("");
    let name = run.metadata.name.as_deref().unwrap_or("");
    let base = run_href(ns, name);
    let phase = phase_str(run);
    let ended = run
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(Phase::is_terminal);
    page(
        chrome,
        name,
        html! {
            div hx-ext="sse" sse-connect={(base) "/live"} sse-swap="update" hx-swap="none" {}
            h1 { (name) " " small { (ns) " · " (run.spec.agent.name.as_str())
                @if let Some(m) = &run.spec.agent.model { " · " (m) } " · pool " (pool_of(run)) } }
            p.repo { "repo " code { (run.spec.repo.url) } @if let Some(r) = &run.spec.repo.revision { " @ " code { (r) } } }
            @if let Some(p) = &run.spec.prompt { details { summary { "prompt" } pre.prompt { (p) } } }
            (status_panel(run, now))
            section.actions {
                h2 { "Actions" }
                div #action-result {}
                @if !ended && phase != "Succeeded" {
                    button.cancel hx-post={(base) "/cancel"} hx-target="#action-result" { "Cancel run" }
                }
                form.followup hx-post={(base) "/followup"} hx-target="#action-result" {
                    input name="name" placeholder="new run name" value={(name) "-followup"};
                    input.wide name="prompt" placeholder="follow-up prompt" required;
                    button type="submit" { "Follow up (resumeFrom)" }
                }
                details {
                    summary { "Copy as YAML" }
                    button type="button" data-copy="#run-yaml" { "Copy" }
                    pre #run-yaml { (run_yaml(run)) }
                }
            }
            (gates_panel(ns, gates, now))
            (conversation::messages_section(&base, messages, ended, now))
            section {
                h2 { "Timeline" }
                ol #timeline { li.muted { "connecting…" } }
            }
            (diff_section(patch))
            section #transcript {
                h2 { "Transcript" }
                @match transcript {
                    Ok(lines) => (transcript_table(lines)),
                    Err(why) => p.muted { (why) },
                }
            }
        },
    )
}

/// One inbox card: a pending gate the caller may decide, its request, the diff (BeforePush)
/// and the decide controls.
pub fn inbox_card(g: &ApprovalGate, patch: Option<&Result<String, String>>, now: Timestamp) -> Markup {
    let ns = g.metadata.namespace.as_deref().unwrap_or("");
    let name = g.metadata.name.as_deref().unwrap_or("");
    let run = &g.spec.run_ref.name;
    html! {
        article.card data-gate=(name) {
            h3 {
                (g.spec.stage.as_str()) " · " a href=(run_href(ns, run)) { (ns) "/" (run) } " · " code { (name) }
                " · waiting " (age(g.metadata.creation_timestamp.as_ref(), now))
                @if let Some(s) = expires_in(g, now) { " · expires in " span.countdown data-expires=(now.as_second() + s) { (human_duration(s.max(0))) } }
            }
            (gate_request(g))
            @if let Some(p) = patch { (diff_section_small(p, name)) }
            (decide_form(ns, g))
        }
    }
}

fn diff_section_small(patch: &Result<String, String>, gate: &str) -> Markup {
    html! {
        div.inline-diff data-gate=(gate) {
            @match patch {
                Ok(p) => { pre.diff-source data-diff-source="" { (p) } div.diff-view {} }
                Err(why) => p.muted { (why) },
            }
        }
    }
}

/// The inbox list fragment (`#inbox-list`), reloaded on SSE `gates`. `cards` are rendered
/// [`inbox_card`]s, oldest gate first.
pub fn inbox_list(cards: &[Markup]) -> Markup {
    html! {
        div #inbox-list hx-get="/fragments/inbox" hx-trigger="sse:gates" hx-swap="outerHTML" {
            @if cards.is_empty() { p.muted { "Nothing waits for you." } }
            @for c in cards { (c) }
        }
    }
}

/// The inbox page.
pub fn inbox_page(chrome: &Chrome<'_>, list: Markup, watch_error: Option<&str>) -> Markup {
    page(
        chrome,
        "Inbox",
        html! {
            h1 { "Inbox" }
            p.muted { "Pending gates you may decide, oldest first." }
            @if let Some(e) = watch_error { (error_box(e)) }
            div hx-ext="sse" sse-connect="/live/gates" { (list) }
        },
    )
}

/// The pools page: per pool running, queued (runs in queue order), warm ready/total, and a
/// scale control (the `/scale` subresource).
pub fn pools_page(
    chrome: &Chrome<'_>,
    pools: &[Arc<RunnerPool>],
    queued: &dyn Fn(&RunnerPool) -> Vec<String>,
    watch_error: Option<&str>,
) -> Markup {
    page(
        chrome,
        "Pools",
        html! {
            h1 { "Pools" }
            @if let Some(e) = watch_error { (error_box(e)) }
            div hx-ext="sse" sse-connect="/live/pools" {
                div #pools-table hx-get="/fragments/pools" hx-trigger="sse:pools" hx-select="#pools-table" hx-swap="outerHTML" {
                    table.pools {
                        thead { tr { th { "Namespace" } th { "Pool" } th { "Max" } th { "Running" } th { "Queued (in order)" } th { "Warm ready/total" } th { "Scale warm" } } }
                        tbody {
                            @for p in pools {
                                @let ns = p.metadata.namespace.as_deref().unwrap_or("");
                                @let name = p.metadata.name.as_deref().unwrap_or("");
                                @let st = p.status.clone().unwrap_or_default();
                                tr {
                                    td { (ns) } td { (name) }
                                    td { (p.spec.max_concurrent_runs.map(|m| m.to_string()).unwrap_or_else(|| "∞".into())) }
                                    td { (st.running) }
                                    td { (st.queued) @let q = queued(p); @if !q.is_empty() { ": " (q.join(", ")) } }
                                    td { (st.warm_ready) "/" (st.warm_total) }
                                    td {
                                        form hx-post={"/pools/" (ns) "/" (name) "/scale"} hx-target="next .scale-result" {
                                            input type="number" min="0" max="100" name="replicas" value=(p.spec.warm.as_ref().map_or(0, |w| w.replicas));
                                            button type="submit" { "Scale" }
                                        }
                                        div.scale-result {}
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The new-run page: the form, and the YAML it will apply (updated as you type).
pub fn new_run_page(chrome: &Chrome<'_>, default_ns: &str, preview: Markup) -> Markup {
    let agents = [
        "claude-code",
        "codex",
        "gemini-cli",
        "qwen-code",
        "opencode",
        "aider",
        "hermes",
        "openclaw",
        "openhands",
        "shell",
        "custom",
    ];
    page(
        chrome,
        "New run",
        html! {
            h1 { "New run" }
            div.split {
                form #new-run hx-post="/new" hx-target="#new-result"
                    hx-trigger="submit" {
                    label { "namespace" input name="namespace" value=(default_ns) required; }
                    label { "name" input name="name" required pattern="[a-z0-9]([-a-z0-9]*[a-z0-9])?"; }
                    label { "repository URL" input name="repo" required placeholder="https://git.example.com/team/repo.git"; }
                    label { "revision" input name="revision" placeholder="main"; }
                    label { "agent" select name="agent" { @for a in agents { option value=(a) { (a) } } } }
                    label { "model" input name="model"; }
                    label { "prompt" textarea name="prompt" rows="5" required {} }
                    label { "pool" input name="pool" placeholder="default"; }
                    label { "timeout" input name="timeout" placeholder="30m"; }
                    label { "max cost (USD)" input name="max_cost_usd" placeholder="2.50"; }
                    label.check { input type="checkbox" name="push" value="true"; " push the branch" }
                    label.check { input type="checkbox" name="before_start" value="true"; " approve before start" }
                    label.check { input type="checkbox" name="before_push" value="true"; " approve before push" }
                    label { "approvers (users, comma-separated)" input name="approvers"; }
                    button type="submit" { "Create run" }
                    div #new-result {}
                }
                div {
                    h2 { "YAML" }
                    div hx-post="/new/preview" hx-trigger="input from:#new-run delay:200ms, load" hx-include="#new-run" {
                        (preview)
                    }
                }
            }
        },
    )
}

/// Gates in the order pages show them: oldest first, then by name.
pub fn sort_gates(gates: &mut [std::sync::Arc<paddock_crds::ApprovalGate>]) {
    gates.sort_by_key(|g| {
        (
            g.metadata.creation_timestamp.as_ref().map(|t| t.0),
            g.metadata.name.clone(),
        )
    });
}
