//! `paddock-operator`: runs the AgentRun, ApprovalGate and RunnerPool controllers, and serves
//! `/metrics`, `/healthz` and `/readyz`. `paddock-operator crd` prints the CRDs.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod context;
mod controller;
mod error;
mod evidence;
mod http;
mod inflight;
mod leader;
mod metrics;
mod observe;
mod telemetry;
mod webhook;

use clap::{Parser, Subcommand};
use context::{Context, State};
use controller::{agentrun, agentrunset, agentruntrigger, approvalgate, runmessage, runnerpool};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, reflector, ObjectRef};
use kube::runtime::WatchStreamExt;
use kube::runtime::{watcher, Controller};
use kube::{Api, Client};
use paddock_crds::{cache, AgentRun, AgentRunSet, AgentRunTrigger, ApprovalGate, RunMessage, RunnerPool};
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "paddock-operator",
    version,
    about = "Runs coding agents as governed Kubernetes workloads"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers (the default).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
}

/// `run`'s arguments on their own, for when no subcommand is given.
#[derive(Parser)]
struct DefaultRun {
    #[command(flatten)]
    args: RunArgs,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Address of the metrics and health endpoints.
    #[arg(long, env = "PADDOCK_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: std::net::SocketAddr,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "PADDOCK_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "PADDOCK_LOG_FORMAT", default_value = "text")]
    log_format: String,
    /// Add a `namespace` label to the run and approval metrics (more series: one set per
    /// namespace).
    #[arg(long, env = "PADDOCK_METRICS_NAMESPACE_LABEL", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    metrics_namespace_label: bool,
    /// Kueue integration: AgentRuns labelled `kueue.x-k8s.io/queue-name` start only once Kueue
    /// admits their Workload (needs Kueue's CRDs and `externalFrameworks:
    /// [AgentRun.v1alpha1.paddock.dev]` in Kueue's configuration; see docs/pools.md).
    #[arg(long, env = "PADDOCK_KUEUE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    kueue: bool,
    /// AgentRun reconciles running at once (kube-runtime's controller concurrency; others wait
    /// in its queue). Bounds the operator's memory and API burst when thousands of runs change
    /// at once, e.g. at start-up. 0: no limit (kube-runtime's own default).
    #[arg(long, env = "PADDOCK_MAX_CONCURRENT_RECONCILES", default_value_t = 64)]
    max_concurrent_reconciles: u16,
    /// Log followers (one streamed `pods/log` request each, which turns a running agent's events
    /// into status.progress and Events as they happen) running at once. A run beyond this is
    /// not followed live: its events are read from its log when it ends, as always. Each
    /// follower holds an open connection to the API server. 0 to 65535; 0 follows only the runs
    /// with in-run approvals, which are always followed (their gates come from the log).
    #[arg(long, env = "PADDOCK_MAX_LOG_FOLLOWERS", default_value_t = context::DEFAULT_MAX_LOG_FOLLOWERS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=65535))]
    max_log_followers: usize,
    /// PEM file of the Ed25519 private key (PKCS#8, `-----BEGIN PRIVATE KEY-----`) that signs
    /// ApprovalGate verdicts and warm-pod claims; runner pods check them with its public key.
    /// The chart generates it as the Secret `<release>-verdict-key`. Every replica must use the
    /// same key. Without it a random key is made at start: pods created before a restart then
    /// never see a verdict they can verify, so set it outside development.
    #[arg(long, env = "PADDOCK_VERDICT_KEY_FILE")]
    verdict_key_file: Option<std::path::PathBuf>,
    /// PEM file of the Ed25519 private key (PKCS#8) that signs the evidence bundle of each
    /// ended run (a DSSE envelope; docs/evidence.md). The chart generates it as the Secret
    /// `<release>-evidence-key`. Without it a random key is made at start (bundles then verify
    /// only against that start's public key).
    #[arg(long, env = "PADDOCK_EVIDENCE_KEY_FILE")]
    evidence_key_file: Option<std::path::PathBuf>,
    /// The archive of evidence bundles, `s3://BUCKET[/PREFIX]` (unset: no archive, no
    /// finalizer). Credentials: the standard AWS variables (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, optionally `AWS_SESSION_TOKEN`).
    #[arg(long, env = "PADDOCK_ARCHIVE_URL")]
    archive_url: Option<String>,
    /// The archive's S3 endpoint, e.g. `https://minio.example:9000` (unset: AWS).
    #[arg(long, env = "PADDOCK_ARCHIVE_ENDPOINT")]
    archive_endpoint: Option<String>,
    /// The archive's region (default `us-east-1`).
    #[arg(long, env = "PADDOCK_ARCHIVE_REGION")]
    archive_region: Option<String>,
    /// Allow a plain-HTTP archive endpoint (test stores only).
    #[arg(long, env = "PADDOCK_ARCHIVE_ALLOW_HTTP", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    archive_allow_http: bool,
    /// Publish the runner's progress as Kubernetes Events too (`AgentStarted`, `ToolCall`,
    /// `StepSucceeded`). Off by default: a run then publishes its own transitions (e.g.
    /// `PodCreated`, `Succeeded`) and failures (`StepFailed`, `AgentError`, `PermissionDenied`,
    /// `EgressDenied`) only, and every step stays in its event log (`<run>-log`,
    /// `kubectl paddock logs`). Chart: `events.steps`.
    #[arg(long, env = "PADDOCK_STEP_EVENTS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    step_events: bool,
    /// The web console's base URL (e.g. `https://paddock.example.com`), linked from pull-request
    /// receipts and issue comments as `<url>/runs/<namespace>/<name>`.
    #[arg(long, env = "PADDOCK_CONSOLE_URL")]
    console_url: Option<String>,
    /// Address of the forge webhook receiver (`POST /hooks/<namespace>/<trigger>`; docs/triggers.md).
    /// Empty: no receiver.
    #[arg(long, env = "PADDOCK_WEBHOOK_ADDR", default_value = "0.0.0.0:8090")]
    webhook_addr: String,
    /// Label selector (`k=v[,k2=v2…]`) of this operator's own pods in its namespace
    /// (`POD_NAMESPACE`). When set, a warm pod's claim is also pushed to the pod's gateway right
    /// after the claim's PATCH (TCP 15002), so the run starts without waiting for the kubelet,
    /// and each pool's `<pool>-runners` NetworkPolicy admits these pods on that port. Unset:
    /// claims reach warm pods through the kubelet's downward API volume only. The chart sets it
    /// to the operator's selector labels.
    #[arg(long, env = "PADDOCK_OPERATOR_POD_SELECTOR")]
    operator_pod_selector: Option<String>,
    /// Leader election (`--leader-elect`, `--leader-election-namespace`).
    #[command(flatten)]
    election: leader::ElectionArgs,
}

fn dynamic_api(client: &Client, ns: &Option<String>, ar: &kube::api::ApiResource) -> Api<kube::api::DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

/// The watch of a pool's egress gateway objects (label `app.kubernetes.io/name=paddock-egress`).
fn egress_objects() -> watcher::Config {
    watcher::Config::default().labels(&format!("app.kubernetes.io/name={}", paddock_crds::egress::APP_NAME))
}

/// Maps a change of a pool's egress gateway object to its pool, forgetting that it was applied.
fn egress_mapper<K: kube::Resource>(
    ctx: Arc<Context>,
) -> impl Fn(K) -> Option<ObjectRef<RunnerPool>> + Send + Sync + Clone + 'static {
    move |obj: K| {
        let ns = obj.meta().namespace.clone().unwrap_or_default();
        let pool = obj.meta().labels.as_ref()?.get(paddock_crds::LABEL_POOL)?.clone();
        ctx.forget_egress(&format!("{ns}/{pool}"));
        Some(ObjectRef::<RunnerPool>::new(&pool).within(&ns))
    }
}

/// `Controller::new(api, wc)` whose cache keeps what [`cache::slim_object`] leaves of each
/// object (no managedFields, no kubectl last-applied copy): kube-runtime's own cache would keep
/// them whole.
fn slim_controller<K>(api: Api<K>, wc: watcher::Config) -> Controller<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let events = reflector(writer, watcher(api, wc).modify(cache::slim_object::<K>)).applied_objects();
    Controller::for_stream(events, store)
}

fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Crd) => {
            print!("{}", paddock_crds::crds_yaml()?);
            return Ok(());
        }
        Some(Command::Run(a)) => *a,
        // No subcommand: `run` with its defaults (and its environment variables).
        None => DefaultRun::parse_from(["paddock-operator"]).args,
    };
    // Logs, and spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set; dropping the guard
    // (when main returns) flushes the spans.
    let _telemetry = telemetry::init(&args.log_format);

    let state = Arc::new(State::default());
    // The client times every API request into paddock_kube_api_request_duration_seconds.
    let mut config = kube::Config::infer().await?;
    // Named in the API server's audit log and metrics as `paddock-operator/<version>`
    // (kube-rs sends no User-Agent of its own).
    config.headers.push((
        axum::http::header::USER_AGENT,
        axum::http::HeaderValue::from_static(concat!("paddock-operator/", env!("CARGO_PKG_VERSION"))),
    ));
    let client = kube::client::ClientBuilder::try_from(config)?
        .with_layer(&metrics::KubeApiLayer::new(&state.metrics))
        .build();
    let reporter = Reporter {
        controller: "paddock-operator".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ns = args.namespace.clone();
    let (client_for_kueue, ns_for_kueue) = (client.clone(), ns.clone());

    // The AgentRun cache without managedFields, kubectl's last-applied copy and spec.prompt
    // (paddock_crds::cache: the reconcile reads the prompt from the API server when the pod
    // starts), so memory per cached run stays a few KiB.
    let (store, run_writer) = reflector::store::<AgentRun>();
    let run_events = reflector(
        run_writer,
        watcher(api::<AgentRun>(&client, &ns), watcher::Config::default().any_semantic())
            .default_backoff()
            .modify(cache::slim_agent_run),
    )
    .applied_objects();
    let runs = Controller::for_stream(run_events, store.clone());
    // Runner pods (label paddock.dev/run) in a cache the reconciler reads instead of GETting
    // the pod on every reconcile; only metadata and status are kept (cache::slim_pod).
    let (pod_store, pod_writer) = reflector::store::<Pod>();
    let pod_events = reflector(
        pod_writer,
        watcher(
            api::<Pod>(&client, &ns),
            watcher::Config::default().labels(paddock_crds::LABEL_RUN),
        )
        .default_backoff()
        .modify(cache::slim_pod),
    )
    .touched_objects();
    let mut context = Context::new(client.clone(), state.clone(), store.clone(), reporter);
    // The log followers wake a run's reconcile when its runner asks for an approval.
    let (wake_runs, runs_to_wake) = futures::channel::mpsc::unbounded();
    context.requests = inflight::Requests::new(Some(wake_runs));
    context.console_url = args.console_url.clone();
    context.step_events = args.step_events;
    if let Some(selector) = &args.operator_pod_selector {
        let namespace = std::env::var("POD_NAMESPACE").unwrap_or_default();
        context.claim_push = Some(context::ClaimPushFrom::parse(&namespace, selector).map_err(anyhow::Error::msg)?);
    }
    context.kueue = args.kueue;
    context.pods = Some(pod_store);
    context.followers = inflight::Followers::new(args.max_log_followers);
    match &args.verdict_key_file {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--verdict-key-file {}: {e}", path.display()))?;
            let signer = paddock_crds::verdict::Signer::from_pem(&pem)
                .map_err(|e| anyhow::anyhow!("--verdict-key-file {}: {e}", path.display()))?;
            context.signer = Arc::new(signer);
        }
        None => tracing::warn!("no --verdict-key-file: verdicts are signed with a random key that a restart forgets"),
    }
    tracing::info!(public_key = %context.verdict_key(), "verdicts and claims are signed");
    let evidence_signer = match &args.evidence_key_file {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--evidence-key-file {}: {e}", path.display()))?;
            paddock_crds::verdict::Signer::from_pem(&pem)
                .map_err(|e| anyhow::anyhow!("--evidence-key-file {}: {e}", path.display()))?
        }
        None => {
            tracing::warn!(
                "no --evidence-key-file: evidence bundles are signed with a random key that a restart forgets"
            );
            paddock_crds::verdict::Signer::generate().map_err(|e| anyhow::anyhow!("generating a key: {e}"))?
        }
    };
    let archive_cfg = args
        .archive_url
        .clone()
        .filter(|u| !u.is_empty())
        .map(|url| paddock_evidence::ArchiveConfig {
            url,
            endpoint: args.archive_endpoint.clone().filter(|e| !e.is_empty()),
            region: args.archive_region.clone().filter(|r| !r.is_empty()),
            allow_http: args.archive_allow_http,
        });
    let archive = match &archive_cfg {
        Some(cfg) => Some(paddock_evidence::Archive::new(cfg).map_err(|e| anyhow::anyhow!("--archive-url: {e}"))?),
        None => None,
    };
    context.evidence = evidence::Evidence::new(evidence_signer, archive);
    tracing::info!(key_id = %context.evidence.key_id(), archive = archive_cfg.as_ref().map(|c| c.url.as_str()).unwrap_or("<none>"), "evidence bundles are signed");
    let ctx = Arc::new(context);
    // The evidence public key and the archive's location, where `kubectl paddock` finds them.
    if let Some(own_ns) = args.election.leader_election_namespace.clone() {
        let (pctx, cfg) = (ctx.clone(), archive_cfg.clone());
        tokio::spawn(async move {
            if let Err(e) = agentrun::evidence::publish_public(&pctx, &own_ns, cfg.as_ref()).await {
                tracing::warn!(error = %e, "could not publish the evidence public key (ConfigMap paddock-evidence)");
            }
        });
    }
    let pool_store = store.clone();
    let workloads = agentrun::kueue::workload_resource();
    let runs = if args.kueue {
        // Kueue admitting (or evicting) a Workload wakes its run.
        runs.owns_with(
            dynamic_api(&client, &ns, &workloads),
            workloads.clone(),
            watcher::Config::default().labels(paddock_crds::LABEL_RUN),
        )
    } else {
        runs
    };
    let runs = runs
        .reconcile_on(runs_to_wake)
        .owns_stream(pod_events)
        .owns(api::<ApprovalGate>(&client, &ns), watcher::Config::default())
        .watches(
            api::<RunnerPool>(&client, &ns),
            watcher::Config::default(),
            move |pool: RunnerPool| agentrun::runs_waiting_for_pool(&pool_store.state(), &pool),
        )
        // A set's selection decides its candidates' pushes.
        .watches(
            api::<AgentRunSet>(&client, &ns),
            watcher::Config::default(),
            |set: AgentRunSet| agentrunset::runs_of(&set),
        )
        .with_config(kube::runtime::controller::Config::default().concurrency(args.max_concurrent_reconciles))
        .shutdown_on_signal()
        .run(agentrun::reconcile, agentrun::error_policy, ctx.clone())
        .for_each(|_| async {});

    let sets = slim_controller(api::<AgentRunSet>(&client, &ns), watcher::Config::default())
        .owns(
            api::<AgentRun>(&client, &ns),
            watcher::Config::default().labels(paddock_crds::LABEL_SET),
        )
        .owns(
            api::<ApprovalGate>(&client, &ns),
            watcher::Config::default().labels(paddock_crds::LABEL_SET),
        )
        .shutdown_on_signal()
        .run(agentrunset::reconcile, agentrunset::error_policy, ctx.clone())
        .for_each(|_| async {});

    let triggers = slim_controller(api::<AgentRunTrigger>(&client, &ns), watcher::Config::default())
        .owns(
            api::<AgentRun>(&client, &ns),
            watcher::Config::default().labels(paddock_crds::LABEL_TRIGGER),
        )
        .shutdown_on_signal()
        .run(agentruntrigger::reconcile, agentruntrigger::error_policy, ctx.clone())
        .for_each(|_| async {});

    let gates = slim_controller(api::<ApprovalGate>(&client, &ns), watcher::Config::default());
    // A run that ends, retries or is replaced withdraws its pending gates.
    let gate_store = gates.store();
    let gates = gates
        .watches(
            api::<AgentRun>(&client, &ns),
            watcher::Config::default(),
            move |run: AgentRun| approvalgate::gates_to_withdraw(&run, &gate_store.state()),
        )
        // A set that ends (cancelled, deleted) withdraws its pending Pick gate.
        .watches(
            api::<AgentRunSet>(&client, &ns),
            watcher::Config::default(),
            |set: AgentRunSet| {
                let ns = set.metadata.namespace.clone().unwrap_or_default();
                set.status
                    .and_then(|s| s.gate_name)
                    .map(|g| ObjectRef::<ApprovalGate>::new(&g).within(&ns))
            },
        )
        .shutdown_on_signal()
        .run(approvalgate::reconcile, approvalgate::error_policy, ctx.clone())
        .for_each(|_| async {});

    let messages = slim_controller(api::<RunMessage>(&client, &ns), watcher::Config::default());
    // A run that starts, gets its pod or ends wakes its pending messages.
    let message_store = messages.store();
    let messages = messages
        .watches(
            api::<AgentRun>(&client, &ns),
            watcher::Config::default(),
            move |run: AgentRun| runmessage::messages_of(&run, &message_store.state()),
        )
        .shutdown_on_signal()
        .run(runmessage::reconcile, runmessage::error_policy, ctx.clone())
        .for_each(|_| async {});

    let pools = slim_controller(api::<RunnerPool>(&client, &ns), watcher::Config::default())
        .watches(
            api::<AgentRun>(&client, &ns),
            watcher::Config::default(),
            |run: AgentRun| {
                let ns = run.metadata.namespace.clone().unwrap_or_default();
                Some(ObjectRef::<RunnerPool>::new(agentrun::build::pool_name(&run)).within(&ns))
            },
        )
        .watches(
            api::<Pod>(&client, &ns),
            watcher::Config::default().labels(paddock_crds::LABEL_WARM),
            |pod: Pod| {
                // A warm pod starting, becoming ready, claimed or gone: its pool re-plans.
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                pod.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(paddock_crds::LABEL_POOL))
                    .map(|pool| ObjectRef::<RunnerPool>::new(pool).within(&ns))
            },
        )
        // The pool's egress gateway objects changed or were deleted: forget that they were
        // applied, so the pool's reconcile applies them again.
        .watches(
            api::<k8s_openapi::api::networking::v1::NetworkPolicy>(&client, &ns),
            egress_objects(),
            egress_mapper(ctx.clone()),
        )
        .watches(
            api::<k8s_openapi::api::apps::v1::Deployment>(&client, &ns),
            egress_objects(),
            egress_mapper(ctx.clone()),
        )
        .watches(
            api::<k8s_openapi::api::core::v1::Service>(&client, &ns),
            egress_objects(),
            egress_mapper(ctx.clone()),
        )
        .shutdown_on_signal()
        .run(runnerpool::reconcile, runnerpool::error_policy, ctx.clone())
        .for_each(|_| async {});

    // With Kueue: let Workloads of deleted runs go (their finalizer is ours to remove).
    let kueue_ctx = ctx.clone();
    let workload_controller = async move {
        if args.kueue {
            // Its cache keeps the Workloads' metadata only (all the reconcile reads).
            let writer = reflector::store::Writer::new(workloads.clone());
            let store = writer.as_reader();
            let events = reflector(
                writer,
                watcher(
                    dynamic_api(&client_for_kueue, &ns_for_kueue, &workloads),
                    watcher::Config::default().labels(paddock_crds::LABEL_RUN),
                )
                .modify(cache::slim_to_metadata),
            )
            .applied_objects();
            Controller::for_stream_with(events, store, workloads.clone())
                .shutdown_on_signal()
                .run(
                    agentrun::kueue::reconcile_workload,
                    agentrun::kueue::workload_error_policy,
                    kueue_ctx,
                )
                .for_each(|_| async {})
                .await;
        }
    };

    let ready_state = state.clone();
    let ready = async move {
        if store.wait_until_ready().await.is_ok() {
            ready_state.ready.store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::info!("caches synced; controllers running");
        }
    };
    let observer = observe::run(client.clone(), ns.clone(), state.clone(), args.metrics_namespace_label);
    let server = http::serve(args.metrics_addr, state.clone());
    // The forge webhook receiver: on every replica (it only creates uniquely named runs).
    let hooks = {
        let (ctx, ns, addr) = (ctx.clone(), ns.clone(), args.webhook_addr.clone());
        async move {
            if addr.is_empty() {
                return std::future::pending::<anyhow::Result<()>>().await;
            }
            let addr: std::net::SocketAddr = addr
                .parse()
                .map_err(|e| anyhow::anyhow!("--webhook-addr {addr}: {e}"))?;
            tracing::info!(%addr, "webhook receiver listening");
            webhook::serve(addr, ctx, ns).await
        }
    };
    tracing::info!(addr = %args.metrics_addr, namespace = ns.as_deref().unwrap_or("<all>"), "paddock-operator starting");
    // Only the leader runs the controllers and the observer (leader.rs); a standby serves the
    // endpoints meanwhile. A leader that loses the Lease exits the process.
    let lead = async {
        let leadership = leader::lead(client.clone(), &args.election, state.clone()).await?;
        tokio::select! {
            _ = async { tokio::join!(runs, sets, triggers, gates, messages, pools, workload_controller, ready) } => {},
            _ = observer => {},
        }
        // The controllers stopped (SIGTERM): free the Lease for a standby.
        leadership.release().await;
        anyhow::Ok(())
    };
    tokio::select! {
        r = lead => r?,
        r = server => r?,
        r = hooks => r?,
    }
    Ok(())
}
