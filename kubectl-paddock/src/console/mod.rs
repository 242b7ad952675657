//! `kubectl paddock console`: a local web console acting with the user's own kubeconfig
//! credentials — the same model as `kubectl proxy`: no server-side identity, RBAC and the
//! approval admission policy judge the real person, and a refusal is shown as the API server
//! wrote it.
//!
//! Pages (server-rendered HTML, [`view`]): runs (`/`), a run (`/runs/<ns>/<name>`), the
//! approvals inbox (`/inbox`), pools (`/pools`), a new run (`/new`). Live updates by
//! Server-Sent Events ([`live`]). Writes: decide a gate (answer a question, send a plan back:
//! [`conversation`]), send a message to a running agent, cancel, follow up, create a run, scale
//! a pool. The walls of the server (loopback, token, CSRF, CSP): [`security`]. The browser
//! libraries (htmx and its SSE extension, diff2html with highlight.js) are vendored at pinned
//! versions and compiled in ([`assets`]).
//!
//! The console keeps a watch (a reflector store) of the AgentRuns, ApprovalGates and
//! RunnerPools in its scope, so the runs page filters and pages in memory.

pub mod app;
pub mod assets;
pub mod conversation;
pub mod kind;
pub mod live;
pub mod manifest;
pub mod security;
pub mod view;

use crate::fetch::{api_message, fetch_transcript, fetch_whoami, FetchError};
use crate::{check_can_decide, parse_transcript, talk};
pub use app::App;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use k8s_openapi::jiff::Timestamp;
use kind::Kind;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use maud::{html, Markup};
use paddock_crds::{AgentRun, ApprovalGate, GateState, Phase, RunnerPool, Verdict};
use security::Secrets;
use std::sync::Arc;

/// How `kubectl paddock console` was asked to run.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// The namespace to show; `None` for every namespace the user can list (`-A`).
    pub namespace: Option<String>,
    /// Port on 127.0.0.1; 0 for a free one.
    pub port: u16,
    /// Open the URL in the desktop's browser (`xdg-open`, or `open` on macOS).
    pub open_browser: bool,
}

/// Why the console could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The API server did not say who the user is (the console acts in their name).
    #[error(transparent)]
    WhoAmI(#[from] FetchError),
    /// The port could not be bound or served.
    #[error("serving on 127.0.0.1:{port}: {source}")]
    Io {
        /// The port asked for.
        port: u16,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The system gave no random bytes for the tokens.
    #[error("no random source for the console's tokens")]
    Random,
}

/// The router of the console, every route behind [`app::guard`].
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(runs_page))
        .route("/fragments/runs", get(runs_fragment))
        .route("/runs/{ns}/{name}", get(run_page))
        .route("/runs/{ns}/{name}/live", get(live::run_updates))
        .route("/runs/{ns}/{name}/cancel", post(cancel))
        .route("/runs/{ns}/{name}/followup", post(followup))
        .route("/runs/{ns}/{name}/say", post(say))
        .route("/gates/{ns}/{gate}/decide", post(decide))
        .route("/inbox", get(inbox_page))
        .route("/fragments/inbox", get(inbox_fragment))
        .route("/pools", get(pools_page))
        .route("/fragments/pools", get(pools_page))
        .route("/pools/{ns}/{name}/scale", post(scale))
        .route("/new", get(new_page).post(create_run))
        .route("/new/preview", post(preview))
        .route("/live/{kind}", get(live::changes))
        .route("/assets/{file}", get(assets::serve))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .layer(axum::middleware::from_fn_with_state(app.clone(), app::guard))
        .layer(axum::middleware::from_fn(server_timing))
        .with_state(app)
}

/// Adds `Server-Timing: app;dur=<ms>` (the handler's time, in milliseconds) to every answer.
async fn server_timing(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let t0 = std::time::Instant::now();
    let mut resp = next.run(req).await;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={ms:.2}")) {
        resp.headers_mut().insert("server-timing", v);
    }
    resp
}

/// Starts the console: asks who the user is, binds 127.0.0.1, prints the URL (with the token),
/// opens it unless told not to, and serves until Ctrl-C.
///
/// # Errors
/// [`ConsoleError`]: the API server's refusal of the SelfSubjectReview, the port, the RNG.
pub async fn serve(client: Client, opts: ConsoleOptions) -> Result<(), ConsoleError> {
    use std::io::Write;
    let (user, groups) = fetch_whoami(&client).await?;
    let io = |source| ConsoleError::Io {
        port: opts.port,
        source,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port))
        .await
        .map_err(io)?;
    let port = listener.local_addr().map_err(io)?.port();
    let secrets = Secrets::generate().map_err(|_| ConsoleError::Random)?;
    let url = format!("http://127.0.0.1:{port}/?token={}", secrets.token);
    let scope = opts
        .namespace
        .clone()
        .map_or("all namespaces".to_string(), |n| format!("namespace {n}"));
    let app = App::start(client, opts.namespace.clone(), port, secrets, user.clone(), groups);
    let mut out = std::io::stdout();
    let _ = writeln!(out, "Paddock console for {user} ({scope}): {url}");
    let _ = writeln!(out, "Press Ctrl-C to stop.");
    let _ = out.flush();
    if opts.open_browser {
        let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
        let _ = std::process::Command::new(opener)
            .arg(&url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    axum::serve(listener, router(app))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|source| ConsoleError::Io { port, source })
}

fn html_page(m: Markup) -> Response {
    Html(m.into_string()).into_response()
}

fn sorted_runs(app: &App) -> Vec<Arc<AgentRun>> {
    app.runs.state()
}

async fn runs_page(State(app): State<Arc<App>>, Query(f): Query<view::RunFilter>) -> Response {
    let err = app.ready(Kind::Runs).await;
    let all = sorted_runs(&app);
    let (rows, total) = view::select_runs(&all, &f);
    html_page(view::runs_page(
        &app.chrome("runs"),
        &rows,
        total,
        &f,
        Timestamp::now(),
        err.as_deref(),
    ))
}

async fn runs_fragment(State(app): State<Arc<App>>, Query(f): Query<view::RunFilter>) -> Response {
    let all = sorted_runs(&app);
    let (rows, total) = view::select_runs(&all, &f);
    html_page(view::runs_table(
        &app.chrome("runs"),
        &rows,
        total,
        &f,
        Timestamp::now(),
    ))
}

fn gates_of_run(app: &App, ns: &str, run: &str) -> Vec<Arc<ApprovalGate>> {
    let mut gates: Vec<_> = app
        .gates
        .state()
        .into_iter()
        .filter(|g| g.metadata.namespace.as_deref() == Some(ns) && g.spec.run_ref.name == run)
        .collect();
    view::sort_gates(&mut gates);
    gates
}

async fn run_page(State(app): State<Arc<App>>, Path((ns, name)): Path<(String, String)>) -> Response {
    let run = match crate::fetch::fetch_run(&app.client, &ns, &name).await {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::NOT_FOUND,
                html_page(view::page(&app.chrome(""), &name, view::error_box(&e.to_string()))),
            )
                .into_response()
        }
    };
    let _ = app.ready(Kind::Gates).await;
    let gates = if app.namespace.as_deref().is_none_or(|n| n == ns) {
        gates_of_run(&app, &ns, &name)
    } else {
        Vec::new()
    };
    let patch = crate::fetch::fetch_patch(&app.client, &ns, &name)
        .await
        .map_err(|e| e.to_string());
    let transcript = fetch_transcript(&app.client, &ns, &name)
        .await
        .map(|t| parse_transcript(&t))
        .map_err(|e| e.to_string());
    let messages = crate::fetch::fetch_messages(&app.client, &ns, &name)
        .await
        .map_err(|e| e.to_string());
    html_page(view::run_page(
        &app.chrome(""),
        &run,
        &gates,
        &messages,
        &patch,
        &transcript,
        Timestamp::now(),
    ))
}

fn fragment(result: Result<String, String>) -> Response {
    match result {
        Ok(m) => html_page(view::ok_box(&m)),
        Err(e) => html_page(view::error_box(&e)),
    }
}

async fn cancel(State(app): State<Arc<App>>, Path((ns, name)): Path<(String, String)>) -> Response {
    let api: Api<AgentRun> = Api::namespaced(app.client.clone(), &ns);
    let patch = serde_json::json!({"spec": {"cancel": true}});
    fragment(
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| format!("asked to cancel {name}"))
            .map_err(|e| api_message(&e)),
    )
}

/// The follow-up form.
#[derive(Debug, serde::Deserialize)]
struct FollowUp {
    name: String,
    prompt: String,
}

async fn followup(
    State(app): State<Arc<App>>,
    Path((ns, name)): Path<(String, String)>,
    Form(f): Form<FollowUp>,
) -> Response {
    let run = match crate::fetch::fetch_run(&app.client, &ns, &name).await {
        Ok(r) => r,
        Err(e) => return fragment(Err(e.to_string())),
    };
    let manifest = match manifest::build_followup(&run, &f.name, &f.prompt) {
        Ok(m) => m,
        Err(e) => return fragment(Err(e.to_string())),
    };
    create(&app, &ns, manifest).await
}

async fn create(app: &App, ns: &str, manifest: serde_json::Value) -> Response {
    let run: AgentRun = match serde_json::from_value(manifest) {
        Ok(r) => r,
        Err(e) => return fragment(Err(e.to_string())),
    };
    let api: Api<AgentRun> = Api::namespaced(app.client.clone(), ns);
    match api.create(&PostParams::default(), &run).await {
        Ok(r) => {
            let name = r.metadata.name.unwrap_or_default();
            html_page(
                html! { div.ok role="status" { "created " a href={"/runs/" (ns) "/" (name)} { (ns) "/" (name) } } },
            )
        }
        Err(e) => fragment(Err(api_message(&e))),
    }
}

/// The send-a-message form.
#[derive(Debug, serde::Deserialize)]
struct Say {
    text: String,
}

/// Sends a message to the run as the console's user: `kubectl paddock say`'s code path
/// ([`talk::send_message`]).
async fn say(State(app): State<Arc<App>>, Path((ns, name)): Path<(String, String)>, Form(f): Form<Say>) -> Response {
    fragment(
        talk::send_message(&app.client, &ns, &name, &app.user, &f.text)
            .await
            .map(|(m, note)| {
                let sent = format!("sent runmessage/{}", m.metadata.name.unwrap_or_default());
                note.map_or(sent.clone(), |n| format!("{sent} ({n})"))
            })
            .map_err(|e| e.to_string()),
    )
}

/// The decide form: `verdict`, or a question's typed `answer` or chosen `option`.
#[derive(Debug, serde::Deserialize)]
struct Decide {
    #[serde(default)]
    verdict: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    answer: String,
    #[serde(default)]
    option: String,
}

async fn decide(
    State(app): State<Arc<App>>,
    Path((ns, gate)): Path<(String, String)>,
    Form(d): Form<Decide>,
) -> Response {
    let choice = match conversation::choice(&d.verdict, &d.answer, &d.option) {
        Ok(c) => c,
        Err(e) => return fragment(Err(e)),
    };
    let comment = Some(d.comment.trim()).filter(|c| !c.is_empty());
    let api: Api<ApprovalGate> = Api::namespaced(app.client.clone(), &ns);
    // Only the checks that need the gate's stage and options (talk::decision): the API server
    // (RBAC, CEL, the admission policy) decides the rest, and its refusal is what the user reads.
    let g = match api.get(&gate).await {
        Ok(g) => g,
        Err(e) => return fragment(Err(api_message(&e))),
    };
    let decision = match talk::decision(&g, &app.user, &choice, comment) {
        Ok(d) => d,
        Err(e) => return fragment(Err(e.to_string())),
    };
    let patch = match serde_json::from_value(talk::decision_patch(&decision)) {
        Ok(p) => p,
        Err(e) => return fragment(Err(e.to_string())),
    };
    fragment(
        api.patch(&gate, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
            .map(|g| {
                format!(
                    "{:?}{} recorded on {gate} by {} ({} decision(s), quorum {})",
                    decision.decision,
                    decision.answer.map(|a| format!(" ({a:?})")).unwrap_or_default(),
                    app.user,
                    g.spec.decisions.len(),
                    g.spec.quorum
                )
            })
            .map_err(|e| api_message(&e)),
    )
}

async fn inbox_cards(app: &App) -> Vec<Markup> {
    let now = Timestamp::now();
    let mut gates: Vec<_> = app
        .gates
        .state()
        .into_iter()
        .filter(|g| g.status.as_ref().and_then(|s| s.state).unwrap_or(GateState::Pending) == GateState::Pending)
        .filter(|g| check_can_decide(g, &app.user, &app.groups, Verdict::Approve).is_ok())
        .collect();
    view::sort_gates(&mut gates);
    let patches = futures::future::join_all(gates.iter().map(|g| live::gate_patch(app, g))).await;
    gates
        .iter()
        .zip(patches)
        .map(|(g, p)| view::inbox_card(g, p.as_ref(), now))
        .collect()
}

async fn inbox_page(State(app): State<Arc<App>>) -> Response {
    let err = app.ready(Kind::Gates).await;
    let cards = inbox_cards(&app).await;
    html_page(view::inbox_page(
        &app.chrome("inbox"),
        view::inbox_list(&cards),
        err.as_deref(),
    ))
}

async fn inbox_fragment(State(app): State<Arc<App>>) -> Response {
    let cards = inbox_cards(&app).await;
    html_page(view::inbox_list(&cards))
}

async fn pools_page(State(app): State<Arc<App>>) -> Response {
    let err = app.ready(Kind::Pools).await;
    let mut pools = app.pools.state();
    pools.sort_by_key(|p| (p.metadata.namespace.clone(), p.metadata.name.clone()));
    let runs = app.runs.state();
    let queued = |p: &RunnerPool| {
        let mut q: Vec<_> = runs
            .iter()
            .filter(|r| r.metadata.namespace == p.metadata.namespace)
            .filter(|r| Some(view::pool_of(r)) == p.metadata.name.as_deref())
            .filter(|r| r.status.as_ref().and_then(|s| s.phase) == Some(Phase::Queued))
            .collect();
        q.sort_by_key(|r| r.status.as_ref().and_then(|s| s.queue_position).unwrap_or(u32::MAX));
        q.iter().map(|r| r.metadata.name.clone().unwrap_or_default()).collect()
    };
    html_page(view::pools_page(&app.chrome("pools"), &pools, &queued, err.as_deref()))
}

/// The scale form.
#[derive(Debug, serde::Deserialize)]
struct Scale {
    replicas: String,
}

async fn scale(
    State(app): State<Arc<App>>,
    Path((ns, name)): Path<(String, String)>,
    Form(s): Form<Scale>,
) -> Response {
    let Ok(n) = s.replicas.trim().parse::<u32>() else {
        return fragment(Err(format!("replicas {:?} is not a whole number", s.replicas)));
    };
    let api: Api<RunnerPool> = Api::namespaced(app.client.clone(), &ns);
    let patch = serde_json::json!({"spec": {"replicas": n}});
    fragment(
        api.patch_scale(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| format!("{name}: warm replicas set to {n}"))
            .map_err(|e| api_message(&e)),
    )
}

fn preview_markup(f: &manifest::NewRunForm) -> Markup {
    match manifest::build_new_run(f) {
        Ok(m) => html! { pre #yaml-preview { (manifest::to_yaml(&m)) } },
        Err(e) => html! { pre #yaml-preview { "# " (e.to_string()) } },
    }
}

async fn new_page(State(app): State<Arc<App>>) -> Response {
    let ns = app.namespace.clone().unwrap_or_else(|| "default".into());
    let f = manifest::NewRunForm {
        namespace: ns.clone(),
        ..Default::default()
    };
    html_page(view::new_run_page(&app.chrome("new"), &ns, preview_markup(&f)))
}

async fn preview(Form(f): Form<manifest::NewRunForm>) -> Response {
    html_page(preview_markup(&f))
}

async fn create_run(State(app): State<Arc<App>>, Form(f): Form<manifest::NewRunForm>) -> Response {
    match manifest::build_new_run(&f) {
        Ok(m) => create(&app, f.namespace.trim(), m).await,
        Err(e) => fragment(Err(e.to_string())),
    }
}

/// `text/html` of an axum answer, for the benchmark and the tests.
pub fn is_html(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
}

#[cfg(test)]
mod tests;
