//! Prometheus metrics of the operator, served on `/metrics` in the OpenMetrics text format
//! (registry prefix `paddock_`; counters get `_total` appended by the encoder).
//!
//! Label sets are bounded: never a run or gate name. `namespace` is added to the metrics derived
//! from AgentRuns and ApprovalGates only when the operator runs with
//! `--metrics-namespace-label` (env `PADDOCK_METRICS_NAMESPACE_LABEL=true`, chart value
//! `metrics.namespaceLabel`); it is then the first label.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `paddock_runs` | gauge | pool, agent, phase | AgentRuns now in each phase (no phase yet → `Pending`) |
//! | `paddock_runs_completed_total` | counter | pool, agent, phase, reason | runs seen reaching a terminal phase; reason = the `Succeeded` condition's reason |
//! | `paddock_run_duration_seconds` | histogram | pool, agent, phase | `status.startTime` (pod created) → `status.completionTime` |
//! | `paddock_run_start_seconds` | histogram | pool, agent, start | run created → agent container running, as the AgentRun reconcile first saw it ([`AgentStarts`]; else when the status said so: condition `Running`, reason `AgentRunning`); `start` is `cold`, or `warm` when the pod was claimed from the pool's warm pods |
//! | `paddock_queue_depth` | gauge | pool | runs in phase `Queued` |
//! | `paddock_queue_wait_seconds` | histogram | pool | time spent `Queued`, observed when the run leaves `Queued` |
//! | `paddock_approval_gates_pending` | gauge | stage | ApprovalGates not decided yet (`Pending`) |
//! | `paddock_approval_wait_seconds` | histogram | stage, state | gate created → decided (`Approved`, `Rejected`, `Expired`; a `Withdrawn` gate is not observed) |
//! | `paddock_model_tokens_total` | counter | agent, model, direction | `status.usage` tokens of finished runs (`input`/`output`); model = `spec.agent.model` or `default` |
//! | `paddock_model_cost_usd_total` | counter | agent, model | `status.usage.costUSD` of finished runs, when the CLI reports it |
//! | `paddock_reconciliations_total` | counter | controller | reconciles run |
//! | `paddock_reconcile_errors_total` | counter | controller, reason | reconciles that failed |
//! | `paddock_reconcile_duration_seconds` | histogram | controller | time in one reconcile |
//! | `paddock_reconciles_in_flight` | gauge | controller | reconciles running now |
//! | `paddock_kube_api_request_duration_seconds` | histogram | verb, resource, code | Kubernetes API requests, until the response headers (a watch: until the stream opened) |
//! | `paddock_leader` | gauge | — | 1 when this replica runs the controllers |
//! | `paddock_archive_backlog` | gauge | — | ended runs whose evidence bundle is not in the archive yet (0 without an archive) |
//! | `paddock_archive_uploads_total` | counter | result | bundle uploads to the archive, `result` = `success` or `error` |
//! | `paddock_webhook_deliveries_total` | counter | provider, result | forge webhook deliveries to the receiver; `result` = `created` (a run), `duplicate` (its run exists: a replayed delivery or a second label event), `ignored` (not an event the trigger acts on, a user not allowed), `refused` (unsigned or a bad signature: 401), `unknown` (no such webhook trigger: 404), `invalid` (unreadable body: 400), `error` (the operator could not act: 5xx) |
//! | `paddock_build_info` | gauge | version | always 1 |
//!
//! The run and gate metrics come from [`crate::observe`], which watches the objects itself; the
//! histograms and counters only count transitions seen after the operator's initial list, so a
//! restart neither loses the gauges nor counts a finished run twice. Times are measured on the
//! operator's monotonic clock (milliseconds), except for objects that already existed when the
//! operator started, whose start falls back to `metadata.creationTimestamp`.

use axum::http::{Method, Request, Response, Uri};
use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

/// Buckets (seconds) of the run start, queue wait and approval wait histograms.
pub const WAIT_BUCKETS: [f64; 13] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
];
/// Buckets (seconds) of the run duration histogram.
pub const RUN_BUCKETS: [f64; 10] = [5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0];
/// Buckets (seconds) of the reconcile and Kubernetes API histograms.
pub const FAST_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Labels naming a controller (`agentrun`, `approvalgate`, `runnerpool`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// Controller name.
    pub controller: String,
}

/// Labels of a reconcile error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Controller name.
    pub controller: String,
    /// [`crate::error::Error::reason`].
    pub reason: String,
}

/// An ordered label set built at run time, so that an optional label (`namespace`) can be left
/// out entirely rather than rendered empty.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub struct Labels(Vec<(&'static str, String)>);

impl Labels {
    /// An empty label set.
    pub fn new() -> Self {
        Labels(Vec::with_capacity(4))
    }

    /// Appends `key="value"`.
    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.0.push((key, value.into()));
        self
    }

    /// Appends `namespace="ns"` when `ns` is given.
    pub fn with_namespace(self, ns: Option<&str>) -> Self {
        match ns {
            Some(ns) => self.with("namespace", ns),
            None => self,
        }
    }
}

impl EncodeLabelSet for Labels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.0.as_slice().encode(encoder)
    }
}

/// A family of histograms built with `buckets`.
fn histograms(buckets: &'static [f64]) -> Family<Labels, Histogram, HistogramCtor> {
    Family::new_with_constructor(HistogramCtor(buckets))
}

/// Constructor of histograms with fixed buckets.
#[derive(Clone, Copy, Debug)]
pub struct HistogramCtor(&'static [f64]);

impl prometheus_client::metrics::family::MetricConstructor<Histogram> for HistogramCtor {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// A histogram family labelled with [`Labels`].
pub type HistogramFamily = Family<Labels, Histogram, HistogramCtor>;
/// A gauge family labelled with [`Labels`].
pub type GaugeFamily = Family<Labels, Gauge>;
/// A counter family labelled with [`Labels`].
pub type CounterFamily = Family<Labels, Counter>;

/// All metrics, registered in one registry. See the module docs for names and labels.
pub struct Metrics {
    /// `paddock_reconciliations_total{controller}`.
    pub reconciliations: Family<ControllerLabels, Counter>,
    /// `paddock_reconcile_errors_total{controller,reason}`.
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// `paddock_reconcile_duration_seconds{controller}` (seconds).
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    /// `paddock_reconciles_in_flight{controller}`.
    pub reconciles_in_flight: Family<ControllerLabels, Gauge>,
    /// `paddock_runs{[namespace,]pool,agent,phase}`.
    pub runs: GaugeFamily,
    /// `paddock_runs_completed_total{[namespace,]pool,agent,phase,reason}`.
    pub run_completions: CounterFamily,
    /// `paddock_run_duration_seconds{[namespace,]pool,agent,phase}` (seconds).
    pub run_durations: HistogramFamily,
    /// `paddock_run_start_seconds{[namespace,]pool,agent,start}` (seconds).
    pub run_start: HistogramFamily,
    /// `paddock_queue_depth{[namespace,]pool}`.
    pub queue_depth: GaugeFamily,
    /// `paddock_queue_wait_seconds{[namespace,]pool}` (seconds).
    pub queue_wait: HistogramFamily,
    /// `paddock_approval_gates_pending{[namespace,]stage}`.
    pub approval_gates_pending: GaugeFamily,
    /// `paddock_approval_wait_seconds{[namespace,]stage,state}` (seconds).
    pub approval_wait: HistogramFamily,
    /// `paddock_model_tokens_total{[namespace,]agent,model,direction}`.
    pub model_tokens: CounterFamily,
    /// `paddock_model_cost_usd_total{[namespace,]agent,model}` (US dollars).
    pub model_cost_usd: Family<Labels, Counter<f64, AtomicU64>>,
    /// `paddock_kube_api_request_duration_seconds{verb,resource,code}` (seconds).
    pub kube_api: HistogramFamily,
    /// `paddock_leader`: 1 when this replica runs the controllers.
    pub leader: Gauge,
    /// `paddock_archive_backlog`: ended runs whose bundle is not archived yet.
    pub archive_backlog: Gauge,
    /// `paddock_archive_uploads_total{result}`: bundle uploads, `success` or `error`.
    pub archive_uploads: Family<Labels, Counter>,
    /// `paddock_webhook_deliveries_total{provider,result}`: forge webhook deliveries.
    pub webhook_deliveries: Family<Labels, Counter>,
    /// `paddock_build_info{version}`: always 1.
    pub build_info: GaugeFamily,
    /// The registry the above live in.
    pub registry: Registry,
    /// Not a metric: where `paddock_run_start_seconds` ends for each run.
    pub agent_starts: AgentStarts,
}

/// When the AgentRun reconcile first saw each run's agent container running, by run UID, until
/// the metrics observer ([`crate::observe`]) takes it for `paddock_run_start_seconds`: the
/// status says so only once the agent ran a while
/// ([`crate::controller::agentrun::decide::pod::AGENT_RUNNING_AFTER`]), or, for a shorter run,
/// never. At most [`AgentStarts::MAX`] runs (a run deleted before the observer took its entry
/// leaves it behind until it is an hour old).
#[derive(Default)]
pub struct AgentStarts(std::sync::Mutex<std::collections::HashMap<String, Instant>>);

impl AgentStarts {
    /// Most runs kept.
    pub const MAX: usize = 10_000;

    /// Records that the agent of run `uid` was seen running at `at`, unless it was before.
    pub fn saw(&self, uid: &str, at: Instant) {
        let mut m = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if m.contains_key(uid) {
            return;
        }
        if m.len() >= Self::MAX {
            m.retain(|_, t| at.saturating_duration_since(*t) < std::time::Duration::from_secs(3600));
        }
        if m.len() < Self::MAX {
            m.insert(uid.to_string(), at);
        }
    }

    /// When the agent of run `uid` was first seen running, if it was; forgets it.
    pub fn take(&self, uid: &str) -> Option<Instant> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(uid)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            reconciliations: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Family::new_with_constructor(|| Histogram::new(FAST_BUCKETS[..10].iter().copied())),
            reconciles_in_flight: Family::default(),
            runs: Family::default(),
            run_completions: Family::default(),
            run_durations: histograms(&RUN_BUCKETS),
            run_start: histograms(&WAIT_BUCKETS),
            queue_depth: Family::default(),
            queue_wait: histograms(&WAIT_BUCKETS),
            approval_gates_pending: Family::default(),
            approval_wait: histograms(&WAIT_BUCKETS),
            model_tokens: Family::default(),
            model_cost_usd: Family::default(),
            kube_api: histograms(&FAST_BUCKETS),
            leader: Gauge::default(),
            archive_backlog: Gauge::default(),
            archive_uploads: Family::default(),
            webhook_deliveries: Family::default(),
            build_info: Family::default(),
            registry: Registry::with_prefix("paddock"),
            agent_starts: AgentStarts::default(),
        };
        let mut registry = Registry::with_prefix("paddock");
        let r = &mut registry;
        r.register(
            "reconciliations",
            "Reconciles run, by controller",
            m.reconciliations.clone(),
        );
        r.register(
            "reconcile_errors",
            "Reconciles that failed, by controller and reason",
            m.reconcile_errors.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            m.reconcile_duration.clone(),
        );
        r.register(
            "reconciles_in_flight",
            "Reconciles running now, by controller",
            m.reconciles_in_flight.clone(),
        );
        r.register("runs", "AgentRuns currently in each phase", m.runs.clone());
        r.register(
            "runs_completed",
            "AgentRuns that reached a terminal phase",
            m.run_completions.clone(),
        );
        r.register(
            "run_duration_seconds",
            "AgentRun duration from pod creation to the end",
            m.run_durations.clone(),
        );
        r.register(
            "run_start_seconds",
            "Time from AgentRun creation until its agent container runs",
            m.run_start.clone(),
        );
        r.register(
            "queue_depth",
            "AgentRuns in phase Queued, by pool",
            m.queue_depth.clone(),
        );
        r.register(
            "queue_wait_seconds",
            "Time an AgentRun spent Queued, observed when it leaves Queued",
            m.queue_wait.clone(),
        );
        r.register(
            "approval_gates_pending",
            "ApprovalGates waiting for a decision",
            m.approval_gates_pending.clone(),
        );
        r.register(
            "approval_wait_seconds",
            "Time from ApprovalGate creation to its decision",
            m.approval_wait.clone(),
        );
        r.register(
            "model_tokens",
            "Model tokens used by finished AgentRuns",
            m.model_tokens.clone(),
        );
        r.register(
            "model_cost_usd",
            "Model cost in US dollars of finished AgentRuns, as reported by the agent CLI",
            m.model_cost_usd.clone(),
        );
        r.register(
            "kube_api_request_duration_seconds",
            "Kubernetes API requests made by the operator, until the response headers",
            m.kube_api.clone(),
        );
        r.register("leader", "1 when this replica runs the controllers", m.leader.clone());
        r.register(
            "archive_backlog",
            "Ended AgentRuns whose evidence bundle is not in the archive yet",
            m.archive_backlog.clone(),
        );
        r.register(
            "archive_uploads",
            "Evidence bundle uploads to the archive, by result (success, error)",
            m.archive_uploads.clone(),
        );
        r.register(
            "webhook_deliveries",
            "Forge webhook deliveries, by provider and result (created, duplicate, ignored, refused, unknown, invalid, error)",
            m.webhook_deliveries.clone(),
        );
        r.register("build_info", "Operator build; always 1", m.build_info.clone());
        m.build_info
            .get_or_create(&Labels::new().with("version", env!("CARGO_PKG_VERSION")))
            .set(1);
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Counts one reconcile of `controller`, marks it in flight, and returns a guard that
    /// records its duration and ends the in-flight mark when dropped.
    pub fn reconcile(&self, controller: &str) -> ReconcileTimer<'_> {
        let labels = ControllerLabels {
            controller: controller.to_string(),
        };
        self.reconciliations.get_or_create(&labels).inc();
        self.reconciles_in_flight.get_or_create(&labels).inc();
        ReconcileTimer {
            metrics: self,
            labels,
            start: Instant::now(),
        }
    }

    /// Counts one failed reconcile.
    pub fn error(&self, controller: &str, reason: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                controller: controller.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Renders the registry in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Drop guard timing one reconcile.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    labels: ControllerLabels,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .reconcile_duration
            .get_or_create(&self.labels)
            .observe(self.start.elapsed().as_secs_f64());
        self.metrics.reconciles_in_flight.get_or_create(&self.labels).dec();
    }
}

/// Resources named in `paddock_kube_api_request_duration_seconds`; any other is `other`.
const API_RESOURCES: [&str; 9] = [
    "agentruns",
    "agentrunsets",
    "agentruntriggers",
    "approvalgates",
    "runnerpools",
    "pods",
    "configmaps",
    "events",
    "leases",
];

/// Maps a Kubernetes API request to its `(verb, resource)` labels: the resource is the path's
/// resource segment when it is one of [`API_RESOURCES`] (subresources such as `status` or `log`
/// count as their resource), otherwise `other`; the verb is `watch` (GET with `watch=true`),
/// `list` (GET on a collection), `get`, `create`, `patch`, `update`, `delete`, or `other`.
pub fn classify_request(method: &Method, uri: &Uri) -> (&'static str, &'static str) {
    let segs: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // /api/v1/... (core) or /apis/<group>/<version>/...
    let rest: &[&str] = match segs.first() {
        Some(&"api") if segs.len() >= 2 => &segs[2..],
        Some(&"apis") if segs.len() >= 3 => &segs[3..],
        _ => &[],
    };
    let (resource, name) = match rest {
        ["namespaces", _ns, resource, tail @ ..] => (Some(*resource), tail.first()),
        [resource, tail @ ..] => (Some(*resource), tail.first()),
        [] => (None, None),
    };
    let resource = resource
        .and_then(|r| API_RESOURCES.iter().find(|k| **k == r).copied())
        .unwrap_or("other");
    let watch = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match *method {
        Method::GET if watch => "watch",
        Method::GET if name.is_none() => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PATCH => "patch",
        Method::PUT => "update",
        Method::DELETE => "delete",
        _ => "other",
    };
    (verb, resource)
}

/// Tower layer timing every request of the kube client into
/// `paddock_kube_api_request_duration_seconds` (see [`classify_request`]; `code` is the HTTP
/// status, or `error` when no response came).
#[derive(Clone)]
pub struct KubeApiLayer {
    family: HistogramFamily,
}

impl KubeApiLayer {
    /// A layer observing into `metrics.kube_api`.
    pub fn new(metrics: &Metrics) -> Self {
        KubeApiLayer {
            family: metrics.kube_api.clone(),
        }
    }
}

impl<S> tower::Layer<S> for KubeApiLayer {
    type Service = KubeApiTiming<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KubeApiTiming {
            inner,
            family: self.family.clone(),
        }
    }
}

/// The service [`KubeApiLayer`] wraps around the client's stack.
#[derive(Clone)]
pub struct KubeApiTiming<S> {
    inner: S,
    family: HistogramFamily,
}

impl<S, ReqB, ResB> tower::Service<Request<ReqB>> for KubeApiTiming<S>
where
    S: tower::Service<Request<ReqB>, Response = Response<ResB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let (verb, resource) = classify_request(req.method(), req.uri());
        let family = self.family.clone();
        let start = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            let code = match &res {
                Ok(r) => r.status().as_u16().to_string(),
                Err(_) => "error".to_string(),
            };
            family
                .get_or_create(
                    &Labels::new()
                        .with("verb", verb)
                        .with("resource", resource)
                        .with("code", code),
                )
                .observe(start.elapsed().as_secs_f64());
            res
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(method: Method, uri: &str) -> (&'static str, &'static str) {
        classify_request(&method, &uri.parse().unwrap())
    }

    #[test]
    fn request_paths_map_to_bounded_verb_and_resource() {
        assert_eq!(c(Method::GET, "/api/v1/namespaces/a/pods/p-1"), ("get", "pods"));
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/a/pods/p-1/log?follow=true"),
            ("get", "pods")
        );
        assert_eq!(c(Method::GET, "/api/v1/pods?labelSelector=x"), ("list", "pods"));
        assert_eq!(
            c(Method::GET, "/api/v1/pods?labelSelector=x&watch=true&resourceVersion=5"),
            ("watch", "pods")
        );
        assert_eq!(
            c(
                Method::GET,
                "/apis/paddock.dev/v1alpha1/agentruns?&watch=true&timeoutSeconds=290"
            ),
            ("watch", "agentruns")
        );
        assert_eq!(
            c(Method::GET, "/apis/paddock.dev/v1alpha1/namespaces/n/approvalgates"),
            ("list", "approvalgates")
        );
        assert_eq!(
            c(
                Method::PATCH,
                "/apis/paddock.dev/v1alpha1/namespaces/n/agentruns/r/status?fieldManager=x&force=true"
            ),
            ("patch", "agentruns")
        );
        assert_eq!(
            c(Method::POST, "/apis/events.k8s.io/v1/namespaces/n/events"),
            ("create", "events")
        );
        assert_eq!(
            c(Method::PUT, "/apis/coordination.k8s.io/v1/namespaces/n/leases/l"),
            ("update", "leases")
        );
        assert_eq!(
            c(Method::DELETE, "/api/v1/namespaces/n/configmaps/x"),
            ("delete", "configmaps")
        );
        assert_eq!(
            c(Method::GET, "/apis/paddock.dev/v1alpha1/runnerpools"),
            ("list", "runnerpools")
        );
        // Anything else is "other": secrets, the namespace objects themselves, /version.
        assert_eq!(c(Method::GET, "/api/v1/namespaces/n/secrets/s"), ("get", "other"));
        assert_eq!(c(Method::GET, "/api/v1/namespaces/n"), ("get", "other"));
        assert_eq!(c(Method::GET, "/api/v1/namespaces"), ("list", "other"));
        assert_eq!(c(Method::GET, "/version"), ("list", "other"));
        assert_eq!(c(Method::HEAD, "/api/v1/pods"), ("other", "pods"));
    }

    #[test]
    fn reconcile_guard_tracks_in_flight() {
        let m = Metrics::default();
        let labels = ControllerLabels {
            controller: "agentrun".into(),
        };
        {
            let _a = m.reconcile("agentrun");
            let _b = m.reconcile("agentrun");
            assert_eq!(m.reconciles_in_flight.get_or_create(&labels).get(), 2);
        }
        assert_eq!(m.reconciles_in_flight.get_or_create(&labels).get(), 0);
        assert_eq!(m.reconciliations.get_or_create(&labels).get(), 2);
        let text = m.render();
        assert!(
            text.contains("paddock_reconcile_duration_seconds_count{controller=\"agentrun\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("paddock_reconciles_in_flight{controller=\"agentrun\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn registry_renders_the_contract_names() {
        let m = Metrics::default();
        m.leader.set(1);
        let build = format!("paddock_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        assert!(m.render().contains(&build), "{}", m.render());
        assert!(m.render().contains("paddock_leader 1"), "{}", m.render());
        // Families render once they hold a series.
        let l = Labels::new().with("x", "y");
        let _ = m.runs.get_or_create(&l);
        let _ = m.run_completions.get_or_create(&l);
        let _ = m.run_durations.get_or_create(&l);
        let _ = m.run_start.get_or_create(&l);
        let _ = m.queue_depth.get_or_create(&l);
        let _ = m.queue_wait.get_or_create(&l);
        let _ = m.approval_gates_pending.get_or_create(&l);
        let _ = m.approval_wait.get_or_create(&l);
        let _ = m.model_tokens.get_or_create(&l);
        let _ = m.model_cost_usd.get_or_create(&l);
        let _ = m.kube_api.get_or_create(&l);
        drop(m.reconcile("c"));
        let text = m.render();
        for (name, ty) in [
            ("paddock_runs", "gauge"),
            ("paddock_runs_completed", "counter"),
            ("paddock_run_duration_seconds", "histogram"),
            ("paddock_run_start_seconds", "histogram"),
            ("paddock_queue_depth", "gauge"),
            ("paddock_queue_wait_seconds", "histogram"),
            ("paddock_approval_gates_pending", "gauge"),
            ("paddock_approval_wait_seconds", "histogram"),
            ("paddock_model_tokens", "counter"),
            ("paddock_model_cost_usd", "counter"),
            ("paddock_reconciles_in_flight", "gauge"),
            ("paddock_kube_api_request_duration_seconds", "histogram"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {ty}\n")),
                "{name} missing:\n{text}"
            );
        }
    }
}
