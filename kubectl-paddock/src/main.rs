//! `kubectl-paddock`: the `kubectl paddock` plugin. Lists AgentRuns and ApprovalGates,
//! approves or rejects gates in the caller's own name, prints a run's diff and event log.
//! Exits 0 on success, 1 with `error: …` on stderr otherwise.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::config::{Config, KubeConfigOptions};
use kube::Client;
use kubectl_paddock::{
    check_can_decide, decision_patch, format_events, gates_table, gunzip, parse_log, resolve_gate, runs_table,
    PluginError,
};
use paddock_crds::{AgentRun, ApprovalGate, Verdict};
use std::process::ExitCode;

/// kubectl paddock: Paddock AgentRuns and ApprovalGates from the command line.
#[derive(Parser, Debug)]
#[command(name = "kubectl-paddock", bin_name = "kubectl paddock", version)]
struct Cli {
    /// Namespace (default: the kubeconfig context's namespace, else `default`).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    /// Kubeconfig context to use (default: the current context). The kubeconfig file is taken
    /// from KUBECONFIG or ~/.kube/config.
    #[arg(long, global = true)]
    context: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// List AgentRuns: NAME, AGENT, PHASE, REASON, DIFF, AGE.
    Runs(ListArgs),
    /// List ApprovalGates: NAME, RUN, STAGE, STATE, APPROVALS/QUORUM, AGE.
    Gates(ListArgs),
    /// Approve a gate, in your own name (the argument is a gate or a run name).
    Approve(DecideArgs),
    /// Reject a gate, in your own name (the argument is a gate or a run name).
    Reject(DecideArgs),
    /// Print a run's patch (unified diff).
    Diff {
        /// AgentRun name.
        run: String,
    },
    /// Print a run's model transcript (every model API call the pod's gateway proxied), one
    /// line per exchange; kept after the pod is gone.
    Transcript {
        /// AgentRun name.
        run: String,
        /// Print the raw JSON lines (requests and responses, redacted) instead.
        #[arg(long)]
        raw: bool,
    },
    /// Print a run's event log, one readable line per event.
    Logs {
        /// AgentRun name.
        run: String,
        /// Print the raw JSON event lines instead.
        #[arg(long)]
        raw: bool,
        /// Which attempt (1-based) of a retried run; default the current one.
        #[arg(long)]
        attempt: Option<u32>,
        /// Follow the running attempt's events as they happen, until its pod ends (like
        /// `kubectl logs -f`); an ended run prints its stored log.
        #[arg(short = 'f', long)]
        follow: bool,
    },
}

#[derive(Args, Debug)]
struct ListArgs {
    /// List across all namespaces.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    all_namespaces: bool,
}

#[derive(Args, Debug)]
struct DecideArgs {
    /// ApprovalGate name, or AgentRun name (its gate is used).
    name: String,
    /// Comment recorded with the decision.
    #[arg(short = 'm', long)]
    message: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let config = match &cli.context {
        Some(ctx) => Config::from_kubeconfig(&KubeConfigOptions {
            context: Some(ctx.clone()),
            ..Default::default()
        })
        .await
        .with_context(|| format!("loading kubeconfig context {ctx:?}"))?,
        None => Config::infer()
            .await
            .context("loading kubeconfig (KUBECONFIG or ~/.kube/config)")?,
    };
    let ns = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).context("creating the Kubernetes client")?;
    let out = match cli.cmd {
        Cmd::Runs(a) => {
            let api: Api<AgentRun> = list_api(&client, &ns, a.all_namespaces);
            let mut runs = api
                .list(&ListParams::default())
                .await
                .context("listing AgentRuns")?
                .items;
            runs.sort_by_key(|r| (r.metadata.namespace.clone(), r.metadata.name.clone()));
            empty_or(
                runs_table(&runs, a.all_namespaces, Timestamp::now()).render(),
                runs.is_empty(),
                &ns,
                a.all_namespaces,
            )
        }
        Cmd::Gates(a) => {
            let api: Api<ApprovalGate> = list_api(&client, &ns, a.all_namespaces);
            let mut gates = api
                .list(&ListParams::default())
                .await
                .context("listing ApprovalGates")?
                .items;
            gates.sort_by_key(|g| (g.metadata.namespace.clone(), g.metadata.name.clone()));
            empty_or(
                gates_table(&gates, a.all_namespaces, Timestamp::now()).render(),
                gates.is_empty(),
                &ns,
                a.all_namespaces,
            )
        }
        Cmd::Approve(a) => decide(&client, &ns, &a, Verdict::Approve).await?,
        Cmd::Reject(a) => decide(&client, &ns, &a, Verdict::Reject).await?,
        Cmd::Diff { run } => diff(&client, &ns, &run).await?,
        Cmd::Transcript { run, raw } => transcript(&client, &ns, &run, raw).await?,
        Cmd::Logs {
            run,
            raw,
            attempt: None,
            follow: true,
        } => follow_logs(&client, &ns, &run, raw).await?,
        Cmd::Logs { run, raw, attempt, .. } => logs(&client, &ns, &run, raw, attempt).await?,
    };
    print!("{out}");
    Ok(())
}

fn list_api<K>(client: &Client, ns: &str, all: bool) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    if all {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), ns)
    }
}

fn empty_or(table: String, empty: bool, ns: &str, all: bool) -> String {
    match (empty, all) {
        (false, _) => table,
        (true, true) => "No resources found\n".into(),
        (true, false) => format!("No resources found in {ns} namespace.\n"),
    }
}

async fn get_run(client: &Client, ns: &str, name: &str) -> Result<AgentRun> {
    let api: Api<AgentRun> = Api::namespaced(client.clone(), ns);
    api.get_opt(name)
        .await
        .with_context(|| format!("reading AgentRun {name:?}"))?
        .ok_or_else(|| {
            PluginError::RunNotFound {
                name: name.into(),
                namespace: ns.into(),
            }
            .into()
        })
}

fn phase_of(run: &AgentRun) -> String {
    run.status
        .as_ref()
        .and_then(|s| s.phase)
        .map(|p| format!("{p:?}"))
        .unwrap_or_else(|| "unknown".into())
}

/// Who the API server says the caller is: (user name, groups).
async fn whoami(client: &Client) -> Result<(String, Vec<String>)> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .context("asking the API server who you are (SelfSubjectReview)")?;
    let info = review.status.and_then(|s| s.user_info).unwrap_or_default();
    let user = info.username.filter(|u| !u.is_empty()).ok_or(PluginError::NoUserName)?;
    Ok((user, info.groups.unwrap_or_default()))
}

async fn decide(client: &Client, ns: &str, args: &DecideArgs, verdict: Verdict) -> Result<String> {
    let gates: Api<ApprovalGate> = Api::namespaced(client.clone(), ns);
    let runs: Api<AgentRun> = Api::namespaced(client.clone(), ns);
    let gate = gates.get_opt(&args.name).await.context("reading ApprovalGate")?;
    let run = match gate {
        Some(_) => None,
        None => runs.get_opt(&args.name).await.context("reading AgentRun")?,
    };
    let gate_name = resolve_gate(&args.name, ns, gate.as_ref(), run.as_ref())?;
    let gate = match gate {
        Some(g) => g,
        None => gates
            .get_opt(&gate_name)
            .await
            .context("reading ApprovalGate")?
            .ok_or_else(|| PluginError::RunHasNoGate {
                run: args.name.clone(),
                gate: gate_name.clone(),
            })?,
    };
    let (user, groups) = whoami(client).await?;
    check_can_decide(&gate, &user, &groups, verdict)?;
    let patch = serde_json::from_value(decision_patch(&user, verdict, args.message.as_deref()))
        .context("building the JSON patch")?;
    let updated = gates
        .patch(&gate_name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .with_context(|| format!("appending your decision to ApprovalGate {gate_name:?}"))?;
    let verb = match verdict {
        Verdict::Approve => "approved",
        Verdict::Reject => "rejected",
    };
    let comment = args
        .message
        .as_deref()
        .map(|m| format!(" with comment {m:?}"))
        .unwrap_or_default();
    Ok(format!(
        "approvalgate/{gate_name} {verb} by {user}{comment} (run {}, {} decision(s) recorded; quorum {})\n",
        updated.spec.run_ref.name,
        updated.spec.decisions.len(),
        updated.spec.quorum
    ))
}

/// The patch ConfigMap a pending or decided BeforePush gate of run `name` points at, if any.
async fn before_push_patch(client: &Client, ns: &str, name: &str) -> Result<Option<String>> {
    let gates: Api<ApprovalGate> = Api::namespaced(client.clone(), ns);
    let list = gates
        .list(&ListParams::default().labels(&format!("{}={name}", paddock_crds::LABEL_RUN)))
        .await
        .context("listing ApprovalGates")?;
    Ok(list
        .items
        .into_iter()
        .filter(|g| g.spec.stage == paddock_crds::GateStage::BeforePush && g.spec.run_ref.name == name)
        .find_map(|g| g.spec.request.patch_ref))
}

async fn diff(client: &Client, ns: &str, name: &str) -> Result<String> {
    let run = get_run(client, ns, name).await?;
    let status = run.status.clone().unwrap_or_default();
    let patch_ref = match status.result.as_ref() {
        // Before the run ends, a BeforePush gate links the patch under review.
        None => match before_push_patch(client, ns, name).await? {
            Some(p) => p,
            None => {
                return Err(PluginError::NoPatch {
                    run: name.into(),
                    why: format!("yet (phase {})", phase_of(&run)),
                }
                .into())
            }
        },
        Some(r) => r.patch_ref.clone().ok_or_else(|| PluginError::NoPatch {
            run: name.into(),
            why: format!(
                "(phase {}, {} files changed{})",
                phase_of(&run),
                r.run.files_changed,
                if r.run.commit.is_none() { ", no commit" } else { "" }
            ),
        })?,
    };
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = cms
        .get_opt(&patch_ref)
        .await
        .with_context(|| format!("reading ConfigMap {patch_ref:?}"))?
        .ok_or_else(|| PluginError::BadArtifact {
            name: patch_ref.clone(),
            what: "does not exist (deleted?)".into(),
        })?;
    let gz = cm
        .binary_data
        .as_ref()
        .and_then(|b| b.get("patch.gz"))
        .ok_or_else(|| PluginError::BadArtifact {
            name: patch_ref.clone(),
            what: "has no binaryData[\"patch.gz\"]".into(),
        })?;
    let text = gunzip(&gz.0).map_err(|e| PluginError::BadArtifact {
        name: patch_ref.clone(),
        what: format!("patch.gz is not valid gzip: {e}"),
    })?;
    Ok(text)
}

async fn transcript(client: &Client, ns: &str, name: &str, raw: bool) -> Result<String> {
    let run = get_run(client, ns, name).await?;
    let cm_name = format!("{name}-transcript");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let Some(cm) = cms
        .get_opt(&cm_name)
        .await
        .with_context(|| format!("reading ConfigMap {cm_name:?}"))?
    else {
        return Err(PluginError::BadArtifact {
            name: cm_name,
            what: format!(
                "does not exist: no model calls went through the gateway, or the run has not ended (phase {})",
                phase_of(&run)
            ),
        }
        .into());
    };
    let gz = cm
        .binary_data
        .as_ref()
        .and_then(|b| b.get("transcript.jsonl.gz"))
        .ok_or_else(|| PluginError::BadArtifact {
            name: cm_name.clone(),
            what: "has no binaryData[\"transcript.jsonl.gz\"]".into(),
        })?;
    let text = gunzip(&gz.0).map_err(|e| PluginError::BadArtifact {
        name: cm_name.clone(),
        what: format!("transcript.jsonl.gz is not valid gzip: {e}"),
    })?;
    Ok(if raw {
        text
    } else {
        kubectl_paddock::render_transcript(&text)
    })
}

/// `logs -f`: streams the current pod's `agent` log, printing each event as it arrives (times
/// relative to the first); then the run's phase. A run that already ended prints its stored log.
async fn follow_logs(client: &Client, ns: &str, name: &str, raw: bool) -> Result<String> {
    use futures::{AsyncBufReadExt, TryStreamExt};
    use std::io::Write;
    let run = get_run(client, ns, name).await?;
    let status = run.status.clone().unwrap_or_default();
    let ended = status.phase.is_some_and(paddock_crds::Phase::is_terminal);
    let Some(pod) = status.pod_name.clone().filter(|_| !ended) else {
        return logs(client, ns, name, raw, None).await;
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = LogParams {
        container: Some("agent".into()),
        follow: true,
        ..Default::default()
    };
    let stream = pods.log_stream(&pod, &lp).await.map_err(|e| PluginError::NoLog {
        run: name.into(),
        why: format!("yet (phase {}; pod {pod}'s agent container log: {e})", phase_of(&run)),
    })?;
    let mut lines = stream.lines();
    let mut t0: Option<Timestamp> = None;
    let mut stdout = std::io::stdout();
    while let Some(line) = lines.try_next().await? {
        let Some(ev) = paddock_crds::events::parse_line(&line) else {
            continue;
        };
        let out = if raw {
            format!("{}\n", line.trim())
        } else {
            let ts = ev.ts.parse::<Timestamp>().ok();
            let t0 = *t0.get_or_insert_with(|| ts.unwrap_or_else(Timestamp::now));
            let rel = ts.map_or("?".to_string(), |t| {
                format!("+{:.1}s", (t.as_millisecond() - t0.as_millisecond()) as f64 / 1000.0)
            });
            format!("{rel:>8} {}\n", kubectl_paddock::describe_event(&ev.event))
        };
        stdout.write_all(out.as_bytes())?;
        stdout.flush()?;
    }
    let run = get_run(client, ns, name).await?;
    Ok(if raw {
        String::new()
    } else {
        format!("(pod {pod} ended; run {name} is {})\n", phase_of(&run))
    })
}

async fn logs(client: &Client, ns: &str, name: &str, raw: bool, attempt: Option<u32>) -> Result<String> {
    let run = get_run(client, ns, name).await?;
    let status = run.status.clone().unwrap_or_default();
    let current = status.attempt.unwrap_or(1);
    // An earlier attempt's log is in the ConfigMap its history entry names.
    let earlier = match attempt {
        Some(n) if n != current => {
            let a = status
                .attempts
                .iter()
                .find(|a| a.attempt == n)
                .ok_or_else(|| PluginError::NoLog {
                    run: name.into(),
                    why: format!(
                        "for attempt {n} (the run is at attempt {current}; ended attempts: {:?})",
                        status.attempts.iter().map(|a| a.attempt).collect::<Vec<_>>()
                    ),
                })?;
            Some(a.log_ref.clone().ok_or_else(|| PluginError::NoLog {
                run: name.into(),
                why: format!(
                    "for attempt {n}: its pod ({}) was gone before its log was read",
                    a.pod_name
                ),
            })?)
        }
        _ => None,
    };
    let text = if let Some(log_ref) = earlier.or_else(|| status.result.as_ref().and_then(|r| r.log_ref.clone())) {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let cm = cms
            .get_opt(&log_ref)
            .await
            .with_context(|| format!("reading ConfigMap {log_ref:?}"))?
            .ok_or_else(|| PluginError::BadArtifact {
                name: log_ref.clone(),
                what: "does not exist (deleted?)".into(),
            })?;
        cm.data
            .as_ref()
            .and_then(|d| d.get("events.jsonl"))
            .cloned()
            .ok_or_else(|| PluginError::BadArtifact {
                name: log_ref.clone(),
                what: "has no data[\"events.jsonl\"]".into(),
            })?
    } else if let Some(pod) = status.pod_name.clone() {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let lp = LogParams {
            container: Some("agent".into()),
            ..Default::default()
        };
        match pods.logs(&pod, &lp).await {
            Ok(t) => t,
            Err(e) => {
                return Err(PluginError::NoLog {
                    run: name.into(),
                    why: format!("yet (phase {}; pod {pod}'s agent container log: {e})", phase_of(&run)),
                }
                .into())
            }
        }
    } else {
        return Err(PluginError::NoLog {
            run: name.into(),
            why: format!("yet (phase {}, no pod)", phase_of(&run)),
        }
        .into());
    };
    let (events, lines) = parse_log(&text);
    if raw {
        let mut out = lines.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        Ok(out)
    } else {
        Ok(format_events(&events))
    }
}
