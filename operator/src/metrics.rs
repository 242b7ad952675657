//! Prometheus metrics of the operator, served on `/metrics` in the OpenMetrics text format.
//! Names are prefixed `paddock_`; label sets are bounded (controller, reason, phase, agent, pool —
//! never a run name).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

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

/// Labels of a finished run.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Agent adapter (`claude-code`, …).
    pub agent: String,
    /// Terminal phase (`Succeeded`, `Failed`, …).
    pub phase: String,
}

/// All metrics, registered in one registry.
pub struct Metrics {
    /// `paddock_reconciliations_total{controller}`.
    pub reconciliations: Family<ControllerLabels, Counter>,
    /// `paddock_reconcile_errors_total{controller,reason}`.
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// `paddock_reconcile_duration_seconds{controller}` (seconds).
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    /// `paddock_runs_completed_total{agent,phase}`.
    pub runs_completed: Family<OutcomeLabels, Counter>,
    /// `paddock_run_duration_seconds{agent,phase}`: pod start to end (seconds).
    pub run_duration: Family<OutcomeLabels, Histogram>,
    /// The registry the above live in.
    pub registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let reconciliations = Family::<ControllerLabels, Counter>::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
        });
        let runs_completed = Family::<OutcomeLabels, Counter>::default();
        let run_duration = Family::<OutcomeLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0])
        });
        let mut registry = Registry::with_prefix("paddock");
        registry.register(
            "reconciliations",
            "Reconciles run, by controller",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by controller and reason",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_duration.clone(),
        );
        registry.register(
            "runs_completed",
            "AgentRuns that reached a terminal phase",
            runs_completed.clone(),
        );
        registry.register(
            "run_duration_seconds",
            "AgentRun duration from pod creation to the end",
            run_duration.clone(),
        );
        Metrics {
            reconciliations,
            reconcile_errors,
            reconcile_duration,
            runs_completed,
            run_duration,
            registry,
        }
    }
}

impl Metrics {
    /// Counts one reconcile of `controller` and returns a guard that records its duration when
    /// dropped.
    pub fn reconcile(&self, controller: &str) -> ReconcileTimer<'_> {
        let labels = ControllerLabels {
            controller: controller.to_string(),
        };
        self.reconciliations.get_or_create(&labels).inc();
        ReconcileTimer {
            metrics: self,
            labels,
            start: std::time::Instant::now(),
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
    start: std::time::Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .reconcile_duration
            .get_or_create(&self.labels)
            .observe(self.start.elapsed().as_secs_f64());
    }
}
