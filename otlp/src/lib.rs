//! Trace export over OTLP/HTTP (protobuf), as both the operator and the runner set it up from
//! the standard OpenTelemetry variables; one reading of them for both binaries.
//!
//! - [`endpoint`]: on when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) or
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` appended) is set and neither
//!   `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none`.
//! - [`tracer_provider`]: spans sent in batches from a background thread; the SDK reads the
//!   other variables (`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`,
//!   `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_BSP_*`). Only plain
//!   `http://` endpoints are supported (no TLS client is built in).
//!
//! Each binary reads its environment its own way (the operator the process's, the runner the
//! snapshot it was started with), so both functions take `get`: a variable's value, `None` when
//! unset. Blank values count as unset.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

pub use opentelemetry_otlp::ExporterBuildError;

/// A variable's value from `get`, trimmed; `None` when unset or blank.
fn value(get: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// The OTLP/HTTP traces URL the environment asks for, or `None` when traces are off:
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is, else `OTEL_EXPORTER_OTLP_ENDPOINT` +
/// `/v1/traces`; `None` when neither is set, `OTEL_SDK_DISABLED=true` or
/// `OTEL_TRACES_EXPORTER=none`.
pub fn endpoint(get: impl Fn(&str) -> Option<String>) -> Option<String> {
    let get = |name: &str| value(&get, name);
    if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || get("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return None;
    }
    get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| get("OTEL_EXPORTER_OTLP_ENDPOINT").map(|e| format!("{}/v1/traces", e.trim_end_matches('/'))))
}

/// A tracer provider exporting to `endpoint` (an OTLP/HTTP traces URL) in batches from a
/// background thread. Its resource: `service.name` `service` unless `OTEL_SERVICE_NAME` (or
/// `service.name` in `OTEL_RESOURCE_ATTRIBUTES`) names another, then `attributes`.
///
/// # Errors
/// The endpoint is not a valid URI, or the HTTP client cannot be built.
pub fn tracer_provider(
    endpoint: &str,
    service: &'static str,
    attributes: Vec<KeyValue>,
    get: impl Fn(&str) -> Option<String>,
) -> Result<SdkTracerProvider, ExporterBuildError> {
    // The exporter's reqwest client is built without a crypto provider of its own (the
    // workspace enables reqwest's `rustls-no-provider`): rustls's ring provider, as kube uses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .build()?;
    let mut resource = Resource::builder();
    let named = value(&get, "OTEL_SERVICE_NAME").is_some()
        || value(&get, "OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
    if !named {
        resource = resource.with_service_name(service);
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.with_attributes(attributes).build())
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        move |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn endpoint_follows_the_otel_variables() {
        assert_eq!(endpoint(env(&[])), None);
        assert_eq!(endpoint(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])), None);
        assert_eq!(
            endpoint(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")])).as_deref(),
            Some("http://c:4318/v1/traces")
        );
        assert_eq!(
            endpoint(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:9/x"),
            ]))
            .as_deref(),
            Some("http://t:9/x")
        );
        for off in [("OTEL_SDK_DISABLED", "TRUE"), ("OTEL_TRACES_EXPORTER", "none")] {
            assert_eq!(
                endpoint(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), off])),
                None,
                "{off:?}"
            );
        }
    }

    #[test]
    fn a_bad_endpoint_is_an_error() {
        assert!(tracer_provider("not a uri", "s", vec![], env(&[])).is_err());
    }
}
