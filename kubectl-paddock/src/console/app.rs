//! The console's shared state ([`App`]): the user's client, the stores its watches fill, the
//! per-start secrets; and the middleware that guards every route ([`guard`]).

use super::kind::Kind;
use super::security::{check, cookie_name, harden, Secrets, Verdict};
use super::view;
use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use paddock_crds::{AgentRun, ApprovalGate, RunnerPool};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// The state every handler shares.
pub struct App {
    /// The user's client (their kubeconfig credentials).
    pub client: Client,
    /// The namespace shown, `None` for all.
    pub namespace: Option<String>,
    /// The port the server listens on.
    pub port: u16,
    /// The per-start tokens.
    pub secrets: Secrets,
    /// The user, as the API server names them.
    pub user: String,
    /// The user's groups.
    pub groups: Vec<String>,
    /// AgentRuns in scope.
    pub runs: Store<AgentRun>,
    /// ApprovalGates in scope.
    pub gates: Store<ApprovalGate>,
    /// RunnerPools in scope.
    pub pools: Store<RunnerPool>,
    /// Change notices of the watches.
    pub changes: broadcast::Sender<Kind>,
    /// The last error of each watch (e.g. RBAC forbids listing), cleared when it recovers.
    pub errors: Mutex<HashMap<Kind, String>>,
}

impl App {
    /// An app whose stores are filled from the API by watches (spawned here) with `client`.
    pub fn start(
        client: Client,
        namespace: Option<String>,
        port: u16,
        secrets: Secrets,
        user: String,
        groups: Vec<String>,
    ) -> Arc<App> {
        let (runs, runs_w) = reflector::store();
        let (gates, gates_w) = reflector::store();
        let (pools, pools_w) = reflector::store();
        let (changes, _) = broadcast::channel(64);
        let app = Arc::new(App {
            client,
            namespace,
            port,
            secrets,
            user,
            groups,
            runs,
            gates,
            pools,
            changes,
            errors: Mutex::new(HashMap::new()),
        });
        spawn_watch(&app, app.api::<AgentRun>(), runs_w, Kind::Runs);
        spawn_watch(&app, app.api::<ApprovalGate>(), gates_w, Kind::Gates);
        spawn_watch(&app, app.api::<RunnerPool>(), pools_w, Kind::Pools);
        app
    }

    /// An app without watches whose stores hold `runs`, `gates` and `pools` (benchmarks and
    /// tests: nothing is read from the API by the pages that use only the stores).
    pub fn offline(
        client: Client,
        namespace: Option<String>,
        secrets: Secrets,
        runs: Vec<AgentRun>,
        gates: Vec<ApprovalGate>,
        pools: Vec<RunnerPool>,
    ) -> Arc<App> {
        fn fill<K>(objs: Vec<K>) -> Store<K>
        where
            K: kube::Resource<DynamicType = ()> + Clone + 'static,
        {
            let (store, mut w) = reflector::store();
            w.apply_watcher_event(&watcher::Event::Init);
            for o in objs {
                w.apply_watcher_event(&watcher::Event::InitApply(o));
            }
            w.apply_watcher_event(&watcher::Event::InitDone);
            store
        }
        let (changes, _) = broadcast::channel(64);
        Arc::new(App {
            client,
            namespace,
            port: 0,
            secrets,
            user: "offline".into(),
            groups: vec![],
            runs: fill(runs),
            gates: fill(gates),
            pools: fill(pools),
            changes,
            errors: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    pub(crate) fn chrome<'a>(&'a self, tab: &'a str) -> view::Chrome<'a> {
        view::Chrome {
            user: &self.user,
            namespace: self.namespace.as_deref(),
            csrf: &self.secrets.csrf,
            tab,
        }
    }

    pub(crate) fn watch_error(&self, kind: Kind) -> Option<String> {
        self.errors.lock().ok().and_then(|e| e.get(&kind).cloned())
    }

    /// Waits (at most 10 s) until the store of `kind` has its first full list; returns the
    /// watch's error if it has none by then.
    pub(crate) async fn ready(&self, kind: Kind) -> Option<String> {
        let wait = async {
            match kind {
                Kind::Runs => self.runs.wait_until_ready().await,
                Kind::Gates => self.gates.wait_until_ready().await,
                Kind::Pools => self.pools.wait_until_ready().await,
            }
        };
        match tokio::time::timeout(Duration::from_secs(10), wait).await {
            Ok(Ok(())) => self.watch_error(kind),
            _ => Some(
                self.watch_error(kind)
                    .unwrap_or_else(|| format!("the watch of {} has not listed them yet", kind.event_name())),
            ),
        }
    }
}

fn spawn_watch<K>(app: &Arc<App>, api: Api<K>, writer: reflector::store::Writer<K>, kind: Kind)
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let app = Arc::downgrade(app);
    tokio::spawn(async move {
        let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .boxed();
        let mut stream = stream;
        while let Some(ev) = stream.next().await {
            let Some(app) = app.upgrade() else { return };
            let mut errors = match app.errors.lock() {
                Ok(e) => e,
                Err(p) => p.into_inner(),
            };
            match ev {
                Ok(_) => {
                    errors.remove(&kind);
                    drop(errors);
                    let _ = app.changes.send(kind);
                }
                Err(e) => {
                    errors.insert(kind, format!("watching {}: {e}", kind.event_name()));
                }
            }
        }
    });
}

/// The middleware: [`check`], then the handler, then [`harden`].
pub async fn guard(
    axum::extract::State(app): axum::extract::State<std::sync::Arc<App>>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response<Body> {
    let verdict = check(&app.secrets, app.port, req.method(), req.uri(), req.headers());
    let mut resp = match verdict {
        Verdict::Pass => next.run(req).await,
        Verdict::SetCookie { location } => {
            let cookie = format!(
                "{}={}; Path=/; HttpOnly; SameSite=Strict",
                cookie_name(app.port),
                app.secrets.token
            );
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::SEE_OTHER;
            if let (Ok(c), Ok(l)) = (HeaderValue::from_str(&cookie), HeaderValue::from_str(&location)) {
                r.headers_mut().insert(header::SET_COOKIE, c);
                r.headers_mut().insert(header::LOCATION, l);
            }
            r
        }
        Verdict::Refuse(code, why) => {
            let mut r = Response::new(Body::from(why));
            *r.status_mut() = code;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r
        }
    };
    harden(&mut resp);
    resp
}
