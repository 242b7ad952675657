//! The forge webhook receiver (issue 20, docs/triggers.md): `POST /hooks/<namespace>/<trigger>`
//! on `--webhook-addr` (chart: the Service `<release>-webhooks`). Every replica serves it (it
//! only creates runs, which are named per issue or comment, so two replicas receiving the
//! same delivery create one run).
//!
//! Each delivery: the AgentRunTrigger must exist with `spec.webhook` (else 404, `unknown`);
//! its signature must verify with the Secret `spec.webhook.secretRef` (key `secret`) before
//! the body is read (else 401, `refused`); then [`issue::accept`] decides (202, `ignored`, with
//! the reason), and [`issue::build_run`] names the run, so a replayed delivery finds its run
//! (200, `duplicate`) instead of creating another (201, `created`). Every answer is counted in
//! `paddock_webhook_deliveries_total{provider,result}`.

use crate::context::Context;
use crate::controller::agentruntrigger::issue;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::runtime::events::EventType;
use paddock_crds::{AgentRun, AgentRunTrigger};
use paddock_forge::webhook;
use std::sync::Arc;

/// Largest delivery body read (bytes); GitHub caps payloads at 25 MB, issue events are a few KB.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Deliveries handled at once; more are answered `503` (a forge retries or redelivers).
pub const MAX_IN_FLIGHT: usize = 32;
/// Longest a delivery is handled before it is answered `503`.
pub const HANDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Whether `s` is a DNS label (RFC 1123, at most `max` characters), the form of namespace and
/// trigger names. Checked before any API call, so nothing a caller writes in the path reaches
/// the API server's URL (a `?` in a name would turn a GET into a watch).
pub fn is_dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The receiver's routes.
pub fn router(ctx: Arc<Context>, namespace: Option<String>) -> Router {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    Router::new()
        .route("/hooks/{ns}/{name}", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state((ctx, namespace.map(Arc::new), slots))
}

/// Serves the receiver on `addr` until the process ends.
///
/// # Errors
/// When `addr` cannot be bound.
pub async fn serve(addr: std::net::SocketAddr, ctx: Arc<Context>, namespace: Option<String>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(ctx, namespace)).await?;
    Ok(())
}

type St = (Arc<Context>, Option<Arc<String>>, Arc<tokio::sync::Semaphore>);

/// What a delivery came to: the provider and result labels of the metric, the status, the text.
type Answer = (&'static str, &'static str, StatusCode, String);

fn answer(provider: &'static str, result: &'static str, code: StatusCode, text: impl Into<String>) -> Answer {
    (provider, result, code, text.into())
}

async fn receive(
    State((ctx, only_ns, slots)): State<St>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let busy = || answer("none", "error", StatusCode::SERVICE_UNAVAILABLE, "busy; try again");
    let (provider, result, code, text) = match slots.try_acquire() {
        Err(_) => busy(),
        Ok(_permit) => {
            let only = only_ns.as_deref().map(String::as_str);
            tokio::time::timeout(HANDLE_TIMEOUT, handle(&ctx, only, &ns, &name, &headers, &body))
                .await
                .unwrap_or_else(|_| busy())
        }
    };
    ctx.state
        .metrics
        .webhook_deliveries
        .get_or_create(
            &crate::metrics::Labels::new()
                .with("provider", provider)
                .with("result", result),
        )
        .inc();
    tracing::info!(namespace = %ns, trigger = %name, provider, result, status = code.as_u16(), "webhook delivery: {text}");
    (code, text)
}

/// The webhook secret in `data` (key `secret`), without trailing newlines (a Secret made from a
/// file), as the forge token is read; `None` when absent or empty.
fn webhook_secret(data: Option<std::collections::BTreeMap<String, k8s_openapi::ByteString>>) -> Option<Vec<u8>> {
    let mut v = data?.remove("secret")?.0;
    while v.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
        v.pop();
    }
    (!v.is_empty()).then_some(v)
}

async fn handle(
    ctx: &Context,
    only_ns: Option<&str>,
    ns: &str,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Answer {
    let unknown = |p| answer(p, "unknown", StatusCode::NOT_FOUND, "no such webhook trigger");
    if only_ns.is_some_and(|o| o != ns) || !is_dns_label(ns, 63) || !is_dns_label(name, 63) {
        return unknown("none");
    }
    // The operator's own failures are logged; an unauthenticated caller learns nothing more.
    let failed = |p, what: &str, e: &dyn std::fmt::Display| {
        tracing::warn!(namespace = %ns, trigger = %name, error = %e, "webhook delivery: {what}");
        answer(
            p,
            "error",
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what} failed; try again"),
        )
    };
    let triggers: Api<AgentRunTrigger> = Api::namespaced(ctx.client.clone(), ns);
    let trigger = match triggers.get_opt(name).await {
        Ok(Some(t)) => t,
        Ok(None) => return unknown("none"),
        Err(kube::Error::Api(e)) if e.code == 400 || e.code == 404 => return unknown("none"),
        Err(e) => return failed("none", "reading the trigger", &e),
    };
    let Some(hook) = trigger.spec.webhook.clone() else {
        return unknown("none");
    };
    let provider = hook.provider.as_str();
    if trigger.metadata.deletion_timestamp.is_some() {
        return unknown(provider);
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret = match secrets.get_opt(&hook.secret_ref.name).await {
        Ok(s) => s.and_then(|s| webhook_secret(s.data)),
        Err(e) => return failed(provider, "reading the webhook Secret", &e),
    };
    let Some(secret) = secret else {
        // Nothing can verify: refuse (logged; a caller cannot make the operator write Events).
        tracing::warn!(namespace = %ns, trigger = %name, secret = %hook.secret_ref.name, "webhook Secret missing or without key secret: deliveries are refused");
        return answer(
            provider,
            "refused",
            StatusCode::UNAUTHORIZED,
            "the delivery cannot be verified",
        );
    };
    if let Err(refusal) = webhook::verify(hook.provider, headers, body, &secret) {
        return answer(provider, "refused", StatusCode::UNAUTHORIZED, refusal.to_string());
    }
    let delivery = match webhook::parse(hook.provider, headers, body) {
        Ok(d) => d,
        Err(e) => return answer(provider, "invalid", StatusCode::BAD_REQUEST, e.to_string()),
    };
    let accepted = match issue::accept(&hook, &trigger.spec.run_template.spec.repo.url, &delivery) {
        Ok(a) => a,
        Err(why) => return answer(provider, "ignored", StatusCode::ACCEPTED, why),
    };
    if trigger.spec.suspend {
        return answer(provider, "ignored", StatusCode::ACCEPTED, "the trigger is suspended");
    }
    let Some(run) = issue::build_run(&trigger, &delivery, &accepted) else {
        return failed(provider, "building the run", &"the trigger has no name or uid");
    };
    let run_name = run.metadata.name.clone().unwrap_or_default();
    let runs: Api<AgentRun> = Api::namespaced(ctx.client.clone(), ns);
    match runs.create(&PostParams::default(), &run).await {
        Ok(_) => {
            let note = format!(
                "created run {run_name} for issue #{} (delivery {})",
                accepted.issue.number, delivery.id
            );
            ctx.publish(&trigger, EventType::Normal, "RunCreated", note).await;
            answer(
                provider,
                "created",
                StatusCode::CREATED,
                format!("created run {run_name}"),
            )
        }
        Err(kube::Error::Api(e)) if e.code == 409 => answer(
            provider,
            "duplicate",
            StatusCode::OK,
            format!("run {run_name} exists already (a replayed delivery, or the issue's run)"),
        ),
        Err(kube::Error::Api(e)) if e.code == 400 || e.code == 422 => {
            let note = format!("the API server refused run {run_name}: {}", e.message);
            ctx.publish(&trigger, EventType::Warning, "InvalidTemplate", note).await;
            answer(
                provider,
                "error",
                StatusCode::UNPROCESSABLE_ENTITY,
                "the trigger's template makes an invalid run (its Events say why)",
            )
        }
        Err(e) => failed(provider, "creating the run", &e),
    }
}

#[cfg(test)]
mod tests {
    use super::{is_dns_label, webhook_secret};
    use k8s_openapi::ByteString;

    #[test]
    fn only_dns_labels_reach_the_api_server() {
        for ok in ["team-a", "a", "issues", "x1-2"] {
            assert!(is_dns_label(ok, 63), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in ["", "x?watch=1", "X", "a/b", "-a", "a-", "a.b", "a%3F", long.as_str()] {
            assert!(!is_dns_label(bad, 63), "{bad}");
        }
    }

    #[test]
    fn the_webhook_secret_is_read_without_trailing_newlines() {
        let data = |v: &[u8]| Some([("secret".to_string(), ByteString(v.to_vec()))].into_iter().collect());
        assert_eq!(webhook_secret(data(b"s3cret\n")), Some(b"s3cret".to_vec()));
        assert_eq!(webhook_secret(data(b"s3cret\r\n")), Some(b"s3cret".to_vec()));
        assert_eq!(webhook_secret(data(b"\n")), None);
        assert_eq!(webhook_secret(None), None);
    }
}
