//! Traces of `clone` and `run`, exported with OTLP over HTTP (protobuf) when the pod's
//! environment names an endpoint; nothing is ever written to stdout (the event protocol's).
//!
//! On when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) or `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (`/v1/traces` appended) is set and neither `OTEL_SDK_DISABLED=true` nor
//! `OTEL_TRACES_EXPORTER=none`; otherwise [`init`] does nothing and [`on_step`] returns at once.
//! The SDK reads the other standard variables (`OTEL_SERVICE_NAME`, default `paddock-runner`;
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//! `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`). Only plain `http://` endpoints are supported.
//!
//! Spans, one trace per command: a root span `runner.clone` or `runner.run` (attributes
//! `paddock.run`, `paddock.namespace`, `paddock.exit_code`; status error when the exit code is
//! not 0) with one child per step (`clone`, `agent`, `commit`, `diff`, `push`) from its
//! `started` to its `succeeded`/`failed` event (attributes `paddock.step`, `paddock.message`;
//! status error with the step's message when it failed). The resource carries `service.name`,
//! `paddock.run` and `paddock.namespace` (from `PADDOCK_RUN`, `PADDOCK_NAMESPACE`).
//! Messages are the events' redacted ones. Spans are sent in batches from a background thread
//! and flushed by [`Telemetry::shutdown`] (bounded by the exporter timeout, default 10 s).

use paddock_crds::runner::vars;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::global::{self, BoxedSpan};
use opentelemetry::trace::{Span as _, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, ContextGuard, KeyValue};
use opentelemetry_sdk::trace::SdkTracerProvider;
use paddock_crds::events::{Step, StepStatus};

use crate::env::Env;

/// `service.name` unless `OTEL_SERVICE_NAME` (or `service.name` in `OTEL_RESOURCE_ATTRIBUTES`)
/// names another.
pub const SERVICE_NAME: &str = "paddock-runner";

/// Name of the instrumentation scope (the tracer).
const TRACER: &str = "paddock-runner";

/// Whether [`init`] installed an exporter (step spans are recorded only then).
static ENABLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Spans of the steps started and not yet finished on this thread.
    static STEPS: RefCell<Vec<(Step, BoxedSpan)>> = const { RefCell::new(Vec::new()) };
}

/// The OTLP/HTTP traces URL `env` asks for, or `None` when traces are off (see the module
/// documentation).
pub fn endpoint(env: &Env) -> Option<String> {
    paddock_otlp::endpoint(|name| env.get(name).map(str::to_string))
}

fn run_attributes(env: &Env) -> Vec<KeyValue> {
    [("paddock.run", vars::RUN), ("paddock.namespace", vars::NAMESPACE)]
        .into_iter()
        .filter_map(|(key, var)| env.get(var).map(|v| KeyValue::new(key, v.to_string())))
        .collect()
}

fn tracer_provider(env: &Env, endpoint: &str) -> Result<SdkTracerProvider, paddock_otlp::ExporterBuildError> {
    let mut attributes = vec![KeyValue::new("service.version", crate::VERSION)];
    attributes.extend(run_attributes(env));
    paddock_otlp::tracer_provider(endpoint, SERVICE_NAME, attributes, |name| {
        env.get(name).map(str::to_string)
    })
}

/// The exporter and the command's root span; [`Telemetry::shutdown`] ends and flushes them.
/// Inert when traces are off.
#[must_use = "call shutdown() before exiting, or the spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    root: Option<ContextGuard>,
}

/// Starts exporting when `env` names an endpoint: installs the global tracer provider and
/// starts the root span `runner.<command>` as the current context of this thread (the steps'
/// parent). A provider that cannot be built leaves traces off, with a note on stderr.
pub fn init(env: &Env, command: &str) -> Telemetry {
    let off = Telemetry {
        provider: None,
        root: None,
    };
    let Some(endpoint) = endpoint(env) else {
        return off;
    };
    let provider = match tracer_provider(env, &endpoint) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("paddock-runner: traces off, cannot export to {endpoint}: {e}");
            return off;
        }
    };
    global::set_tracer_provider(provider.clone());
    let tracer = global::tracer(TRACER);
    let mut attributes = run_attributes(env);
    attributes.push(KeyValue::new("paddock.command", command.to_string()));
    let span = tracer
        .span_builder(format!("runner.{command}"))
        .with_attributes(attributes)
        .start(&tracer);
    let root = Context::current_with_span(span).attach();
    ENABLED.store(true, Ordering::Relaxed);
    Telemetry {
        provider: Some(provider),
        root: Some(root),
    }
}

impl Telemetry {
    /// Ends the steps still open and the root span (status error when `exit_code` ≠ 0), then
    /// flushes and stops the exporter. Call it on the thread that called [`init`].
    pub fn shutdown(mut self, exit_code: i32) {
        let Some(provider) = self.provider.take() else {
            return;
        };
        ENABLED.store(false, Ordering::Relaxed);
        STEPS.with(|steps| {
            for (_, mut span) in steps.borrow_mut().drain(..) {
                span.end();
            }
        });
        {
            let cx = Context::current();
            let root = cx.span();
            root.set_attribute(KeyValue::new("paddock.exit_code", i64::from(exit_code)));
            if exit_code != 0 {
                root.set_status(Status::error(format!("exit code {exit_code}")));
            }
            root.end();
        }
        drop(self.root.take());
        if let Err(e) = provider.shutdown() {
            eprintln!("paddock-runner: flushing spans failed: {e}");
        }
    }
}

/// Records a step event: `started` opens the step's span (child of the current context),
/// `succeeded`/`failed` ends it (a failure sets its status to error with `message`). A no-op
/// unless [`init`] turned traces on. Called by [`crate::emit::Emitter`] with the redacted event.
pub fn on_step(step: Step, status: StepStatus, message: &str) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    STEPS.with(|steps| {
        let mut steps = steps.borrow_mut();
        match status {
            StepStatus::Started => {
                let mut span = global::tracer(TRACER).start(step.as_str());
                span.set_attribute(KeyValue::new("paddock.step", step.as_str()));
                if !message.is_empty() {
                    span.set_attribute(KeyValue::new("paddock.message", message.to_string()));
                }
                steps.push((step, span));
            }
            StepStatus::Succeeded | StepStatus::Failed => {
                if let Some(i) = steps.iter().rposition(|(s, _)| *s == step) {
                    let (_, mut span) = steps.remove(i);
                    if !message.is_empty() {
                        span.set_attribute(KeyValue::new("paddock.message", message.to_string()));
                    }
                    if status == StepStatus::Failed {
                        span.set_status(Status::error(message.to_string()));
                    }
                    span.end();
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_reads_the_runner_env() {
        let e = |pairs: &[(&str, &str)]| endpoint(&Env::from_pairs(pairs.iter().copied()));
        assert_eq!(e(&[]), None);
        assert_eq!(
            e(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]).as_deref(),
            Some("http://c:4318/v1/traces")
        );
    }

    #[test]
    fn steps_are_a_no_op_when_off() {
        on_step(Step::Agent, StepStatus::Started, "shell");
        STEPS.with(|s| assert!(s.borrow().is_empty()));
        init(&Env::from_pairs([(vars::RUN, "r")]), "run").shutdown(0);
    }
}
