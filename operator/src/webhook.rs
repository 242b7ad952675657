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

/// The receiver's routes.
pub fn router(ctx: Arc<Context>, namespace: Option<String>) -> Router {
    Router::new()
        .route("/hooks/{ns}/{name}", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state((ctx, namespace.map(Arc::new)))
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

type St = (Arc<Context>, Option<Arc<String>>);

async fn receive(
    State((ctx, only_ns)): State<St>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let (provider, result, code, text) = handle(
        &ctx,
        only_ns.as_deref().map(String::as_str),
        &ns,
        &name,
        &headers,
        &body,
    )
    .await;
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

async fn handle(
    ctx: &Context,
    only_ns: Option<&str>,
    ns: &str,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> (&'static str, &'static str, StatusCode, String) {
    let unknown = |p| {
        (
            p,
            "unknown",
            StatusCode::NOT_FOUND,
            "no such webhook trigger".to_string(),
        )
    };
    if only_ns.is_some_and(|o| o != ns) {
        return unknown("none");
    }
    let triggers: Api<AgentRunTrigger> = Api::namespaced(ctx.client.clone(), ns);
    let trigger = match triggers.get_opt(name).await {
        Ok(Some(t)) => t,
        Ok(None) => return unknown("none"),
        Err(kube::Error::Api(e)) if e.code == 400 || e.code == 404 => return unknown("none"),
        Err(e) => {
            return (
                "none",
                "error",
                StatusCode::SERVICE_UNAVAILABLE,
                format!("reading the trigger: {e}"),
            )
        }
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
        Ok(s) => s
            .and_then(|s| s.data)
            .and_then(|mut d| d.remove("secret"))
            .filter(|s| !s.0.is_empty()),
        Err(e) => {
            return (
                provider,
                "error",
                StatusCode::SERVICE_UNAVAILABLE,
                format!("reading the webhook Secret: {e}"),
            )
        }
    };
    let Some(secret) = secret else {
        // Nothing can verify: refuse, and say why on the trigger (its owner can fix it).
        ctx.publish(
            &trigger,
            EventType::Warning,
            "WebhookSecretMissing",
            format!(
                "Secret {} has no key secret: every delivery is refused",
                hook.secret_ref.name
            ),
        )
        .await;
        return (
            provider,
            "error",
            StatusCode::INTERNAL_SERVER_ERROR,
            "the trigger's webhook Secret has no key secret".into(),
        );
    };
    if let Err(refusal) = webhook::verify(hook.provider, headers, body, &secret.0) {
        return (provider, "refused", StatusCode::UNAUTHORIZED, refusal.to_string());
    }
    let delivery = match webhook::parse(hook.provider, headers, body) {
        Ok(d) => d,
        Err(e) => return (provider, "invalid", StatusCode::BAD_REQUEST, e.to_string()),
    };
    let accepted = match issue::accept(&hook, &trigger.spec.run_template.spec.repo.url, &delivery) {
        Ok(a) => a,
        Err(why) => return (provider, "ignored", StatusCode::ACCEPTED, why),
    };
    if trigger.spec.suspend {
        return (
            provider,
            "ignored",
            StatusCode::ACCEPTED,
            "the trigger is suspended".into(),
        );
    }
    let Some(run) = issue::build_run(&trigger, &delivery, &accepted) else {
        return (
            provider,
            "error",
            StatusCode::INTERNAL_SERVER_ERROR,
            "the trigger has no name or uid".into(),
        );
    };
    let run_name = run.metadata.name.clone().unwrap_or_default();
    let runs: Api<AgentRun> = Api::namespaced(ctx.client.clone(), ns);
    match runs.create(&PostParams::default(), &run).await {
        Ok(_) => {
            ctx.publish(
                &trigger,
                EventType::Normal,
                "RunCreated",
                format!(
                    "created run {run_name} for issue #{} (delivery {})",
                    accepted.issue.number, delivery.id
                ),
            )
            .await;
            (
                provider,
                "created",
                StatusCode::CREATED,
                format!("created run {run_name}"),
            )
        }
        Err(kube::Error::Api(e)) if e.code == 409 => (
            provider,
            "duplicate",
            StatusCode::OK,
            format!("run {run_name} exists already (a replayed delivery, or the issue's run)"),
        ),
        Err(kube::Error::Api(e)) if e.code == 400 || e.code == 422 => {
            ctx.publish(
                &trigger,
                EventType::Warning,
                "InvalidTemplate",
                format!("the API server refused run {run_name}: {}", e.message),
            )
            .await;
            (provider, "error", StatusCode::UNPROCESSABLE_ENTITY, e.message)
        }
        Err(e) => (
            provider,
            "error",
            StatusCode::SERVICE_UNAVAILABLE,
            format!("creating the run: {e}"),
        ),
    }
}
