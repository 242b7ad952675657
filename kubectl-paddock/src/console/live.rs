//! Live updates by Server-Sent Events. The browser never polls: the server watches the API
//! (with the user's credentials) and pushes.
//!
//! - `/live/runs`, `/live/gates`, `/live/pools`: an event named `runs` / `gates` / `pools`
//!   (data `changed`) at most every [`DEBOUNCE`] after the console's watch of that kind saw a
//!   change; the page's table reloads itself (`hx-trigger="sse:runs"`).
//! - `/runs/<ns>/<name>/live`: events named `update` whose data is HTML of out-of-band swaps:
//!   `#timeline` (reset with `innerHTML` when a pod's log starts, then grown `beforeend` as the
//!   runner prints events), `#run-status` and `#run-gates` (replaced on every change of the run
//!   or its gates), `#run-messages` (replaced on every change of a RunMessage in the run's
//!   namespace), `#diff` (replaced when a patch appears or changes).

use super::app::App;
use super::view;
use crate::fetch::{api_message, fetch_gate_patch, fetch_patch};
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{AsyncBufReadExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, LogParams};
use kube::runtime::{watcher, WatchStreamExt};
use maud::Markup;
use paddock_crds::events::parse_line;
use paddock_crds::{AgentRun, ApprovalGate, GateStage, Phase, RunMessage};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Least time between two change notices of one kind.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

pub use super::kind::Kind;

/// An SSE event carrying HTML. SSE data cannot hold a carriage return, so `\r` (only possible in
/// escaped text or attribute values) becomes the character reference `&#13;`.
pub fn html_event(name: &str, html: &str) -> Event {
    Event::default().event(name).data(html.replace('\r', "&#13;"))
}

/// Marks the element with `id` in `markup` (its opening tag, which the view functions write
/// first) as an out-of-band swap `how` (`true` for outerHTML, `innerHTML`, `beforeend`).
pub fn oob(markup: Markup, id: &str, how: &str) -> String {
    let s = markup.into_string();
    let needle = format!("id=\"{id}\"");
    s.replacen(&needle, &format!("{needle} hx-swap-oob=\"{how}\""), 1)
}

type Sender = mpsc::Sender<Event>;
type SseStream =
    Sse<axum::response::sse::KeepAliveStream<Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>>>;

fn sse_from(rx: mpsc::Receiver<Event>) -> SseStream {
    let stream = async_stream::stream! {
        let mut rx = rx;
        while let Some(e) = rx.recv().await {
            yield Ok::<_, Infallible>(e);
        }
    };
    Sse::new(Box::pin(stream) as Pin<Box<dyn Stream<Item = _> + Send>>).keep_alive(KeepAlive::default())
}

/// `/live/<kind>`: change notices of one kind.
pub async fn changes(State(app): State<Arc<App>>, Path(kind): Path<String>) -> SseStream {
    let kind = match kind.as_str() {
        "gates" => Kind::Gates,
        "pools" => Kind::Pools,
        _ => Kind::Runs,
    };
    let (tx, rx) = mpsc::channel(8);
    let mut sub = app.changes.subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                got = sub.recv() => match got {
                    Ok(k) if k != kind => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    _ => {}
                },
            }
            tokio::time::sleep(DEBOUNCE).await;
            while let Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) = sub.try_recv() {}
            if tx
                .send(Event::default().event(kind.event_name()).data("changed"))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    sse_from(rx)
}

/// `/runs/<ns>/<name>/live`: the run page's updates (see the module doc).
pub async fn run_updates(State(app): State<Arc<App>>, Path((ns, name)): Path<(String, String)>) -> SseStream {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        let closed = tx.clone();
        tokio::select! {
            _ = closed.closed() => {}
            _ = follow_run(app, ns, name, tx) => {}
        }
    });
    sse_from(rx)
}

type Lines = Pin<Box<dyn Stream<Item = Vec<std::io::Result<String>>> + Send>>;

/// The timeline's source and what was shown.
struct Timeline {
    /// The pod whose log is (or was) followed.
    pod: Option<String>,
    /// Its log lines, while the pod runs.
    lines: Option<Lines>,
    /// The stored log shown (a ConfigMap name), for an ended run that was not followed.
    stored: Option<String>,
    /// The first event's time (times are relative to it).
    t0: Option<Timestamp>,
    /// When to try the pod's log again (the container had not started).
    retry: bool,
}

async fn send(tx: &Sender, html: String) -> bool {
    tx.send(html_event("update", &html)).await.is_ok()
}

fn items(lines: &[String], t0: &mut Option<Timestamp>) -> String {
    let mut out = String::new();
    for l in lines {
        let Some(ev) = parse_line(l) else { continue };
        if t0.is_none() {
            *t0 = ev.ts.parse().ok();
        }
        out.push_str(&view::timeline_item(&ev, *t0).into_string());
    }
    out
}

fn timeline_html(items: &str, how: &str) -> String {
    format!("<ol id=\"timeline\" hx-swap-oob=\"{how}\">{items}</ol>")
}

async fn follow_run(app: Arc<App>, ns: String, name: String, tx: Sender) {
    let runs: Api<AgentRun> = Api::namespaced(app.client.clone(), &ns);
    let gates_api: Api<ApprovalGate> = Api::namespaced(app.client.clone(), &ns);
    let mut run_watch = watcher(
        runs,
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .applied_objects()
    .boxed();
    let label = format!("{}={name}", paddock_crds::LABEL_RUN);
    let mut gate_watch = watcher(gates_api.clone(), watcher::Config::default().labels(&label)).boxed();
    // Messages need not carry the run's label: watch the namespace's, show the run's.
    let msgs_api: Api<RunMessage> = Api::namespaced(app.client.clone(), &ns);
    let mut msg_watch = watcher(msgs_api, watcher::Config::default()).default_backoff().boxed();
    let mut tl = Timeline {
        pod: None,
        lines: None,
        stored: None,
        t0: None,
        retry: false,
    };
    let mut last_run: Option<AgentRun> = None;
    let mut diff_key: Option<String> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            ev = run_watch.next() => match ev {
                Some(Ok(run)) => {
                    let now = Timestamp::now();
                    if !send(&tx, oob(view::status_panel(&run, now), "run-status", "true")).await { return; }
                    if !update_timeline(&app, &ns, &run, &mut tl, &tx).await { return; }
                    if !update_diff(&app, &ns, &name, &run, &gates_api, &mut diff_key, &tx).await { return; }
                    last_run = Some(run);
                }
                Some(Err(e)) => {
                    if !send(&tx, oob(view::error_box(&e.to_string()), "action-result", "innerHTML")).await { return; }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                None => return,
            },
            ev = gate_watch.next() => match ev {
                Some(Ok(_)) => {
                    let list = gates_api.list(&ListParams::default().labels(&label)).await;
                    if let Ok(list) = list {
                        let mut gates: Vec<Arc<ApprovalGate>> = list.items.into_iter().map(Arc::new).collect();
                        super::view::sort_gates(&mut gates);
                        if !send(&tx, oob(view::gates_panel(&ns, &gates, Timestamp::now()), "run-gates", "true")).await { return; }
                    }
                    if let Some(run) = &last_run {
                        if !update_diff(&app, &ns, &name, run, &gates_api, &mut diff_key, &tx).await { return; }
                    }
                }
                Some(Err(_)) => tokio::time::sleep(Duration::from_secs(1)).await,
                None => return,
            },
            ev = msg_watch.next() => match ev {
                Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) | Some(Err(_)) => {}
                Some(Ok(_)) => {
                    let msgs = crate::fetch::fetch_messages(&app.client, &ns, &name).await.map_err(|e| e.to_string());
                    let list = super::conversation::messages_list(&msgs, Timestamp::now());
                    if !send(&tx, oob(list, "run-messages", "true")).await { return; }
                }
                None => return,
            },
            chunk = next_lines(&mut tl.lines) => match chunk {
                Some(chunk) => {
                    let lines: Vec<String> = chunk.into_iter().filter_map(Result::ok).collect();
                    let html = items(&lines, &mut tl.t0);
                    if !html.is_empty() && !send(&tx, timeline_html(&html, "beforeend")).await { return; }
                }
                None => tl.lines = None,
            },
            _ = tick.tick() => {
                if tl.retry {
                    if let Some(run) = last_run.clone() {
                        tl.pod = None;
                        if !update_timeline(&app, &ns, &run, &mut tl, &tx).await { return; }
                    }
                }
            }
        }
    }
}

async fn next_lines(lines: &mut Option<Lines>) -> Option<Vec<std::io::Result<String>>> {
    match lines {
        Some(l) => l.next().await,
        None => std::future::pending().await,
    }
}

/// Starts following the run's current pod, or shows its stored log once it ended. Returns
/// false when the browser went away.
async fn update_timeline(app: &App, ns: &str, run: &AgentRun, tl: &mut Timeline, tx: &Sender) -> bool {
    let st = run.status.clone().unwrap_or_default();
    let ended = st.phase.is_some_and(Phase::is_terminal);
    if let Some(pod) = st.pod_name.clone().filter(|_| !ended) {
        if tl.pod.as_deref() == Some(pod.as_str()) && !tl.retry {
            return true;
        }
        let pods: Api<Pod> = Api::namespaced(app.client.clone(), ns);
        let lp = LogParams {
            container: Some("agent".into()),
            follow: true,
            ..Default::default()
        };
        tl.pod = Some(pod.clone());
        match pods.log_stream(&pod, &lp).await {
            Ok(stream) => {
                tl.retry = false;
                tl.t0 = None;
                let lines: Lines = Box::pin(stream.lines().map_err(std::io::Error::other).ready_chunks(256));
                tl.lines = Some(lines);
                return send(tx, timeline_html("", "innerHTML")).await;
            }
            Err(e) => {
                let first = !tl.retry;
                tl.retry = true;
                if first {
                    let note = maud::html! { li.muted { "waiting for pod " (pod) "'s agent log: " (api_message(&e)) } };
                    return send(tx, timeline_html(&note.into_string(), "innerHTML")).await;
                }
                return true;
            }
        }
    }
    tl.retry = false;
    if tl.lines.is_some() || tl.pod.is_some() {
        // The followed pod's log is complete once its stream ends; keep it.
        return true;
    }
    let log_ref = st.result.as_ref().and_then(|r| r.log_ref.clone());
    match log_ref {
        Some(cm) if tl.stored.as_deref() != Some(cm.as_str()) => {
            let cms: Api<ConfigMap> = Api::namespaced(app.client.clone(), ns);
            let html = match cms.get_opt(&cm).await {
                Ok(Some(c)) => {
                    let text = c.data.and_then(|mut d| d.remove("events.jsonl")).unwrap_or_default();
                    let lines: Vec<String> = text.lines().map(str::to_string).collect();
                    tl.t0 = None;
                    items(&lines, &mut tl.t0)
                }
                Ok(None) => maud::html! { li.muted { "the event log " (cm) " was deleted" } }.into_string(),
                Err(e) => maud::html! { li.muted { (api_message(&e)) } }.into_string(),
            };
            tl.stored = Some(cm);
            send(tx, timeline_html(&html, "innerHTML")).await
        }
        Some(_) => true,
        None if tl.stored.is_none() => {
            let note = maud::html! { li.muted { "no events yet (phase " (crate::fetch::phase_name(run)) ")" } };
            tl.stored = Some(String::new());
            send(tx, timeline_html(&note.into_string(), "innerHTML")).await
        }
        None => true,
    }
}

/// Sends the diff section when the run's patch (result or BeforePush gate) appears or changes.
async fn update_diff(
    app: &App,
    ns: &str,
    name: &str,
    run: &AgentRun,
    gates: &Api<ApprovalGate>,
    key: &mut Option<String>,
    tx: &Sender,
) -> bool {
    let from_result = run
        .status
        .as_ref()
        .and_then(|s| s.result.as_ref())
        .and_then(|r| r.patch_ref.clone());
    let new_key = match from_result {
        Some(p) => Some(p),
        None => gates
            .list(&ListParams::default().labels(&format!("{}={name}", paddock_crds::LABEL_RUN)))
            .await
            .ok()
            .and_then(|l| {
                l.items
                    .into_iter()
                    .find(|g| g.spec.stage == GateStage::BeforePush)
                    .and_then(|g| g.spec.request.patch_ref.map(|p| format!("gate:{p}")))
            }),
    };
    if new_key.is_none() || new_key == *key {
        return true;
    }
    *key = new_key;
    let patch = fetch_patch(&app.client, ns, name).await.map_err(|e| e.to_string());
    send(tx, oob(view::diff_section(&patch), "diff", "true")).await
}

/// The diffs of BeforePush gates, for inbox cards: `None` for other stages.
pub async fn gate_patch(app: &App, g: &ApprovalGate) -> Option<Result<String, String>> {
    if g.spec.stage != GateStage::BeforePush {
        return None;
    }
    let ns = g.metadata.namespace.clone().unwrap_or_default();
    Some(match fetch_gate_patch(&app.client, &ns, g).await {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err("the gate links no patch".into()),
        Err(e) => Err(e.to_string()),
    })
}
