//! `kubectl-paddock`: the `kubectl paddock` plugin. Lists AgentRuns and ApprovalGates,
//! approves or rejects gates in the caller's own name, talks to running agents (messages,
//! answers, plan reviews), prints a run's diff and event log.
//! Exits 0 on success, 1 with `error: …` on stderr otherwise.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams};
use kube::config::{Config, KubeConfigOptions};
use kube::Client;
use kubectl_paddock::evidence::{self, EvidenceConfig};
use kubectl_paddock::sets;
use kubectl_paddock::talk::{self, Choice};
use kubectl_paddock::{
    check_can_decide, console, fetch, format_events_by, gates_table, parse_log, resolve_gate, runs_table, PluginError,
};
use paddock_crds::{AgentRun, AgentRunSet, ApprovalGate, RunMessage, Verdict};
use std::process::ExitCode;
use talk_cmd::{AnswerArgs, SayArgs};

mod talk_cmd;

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
    /// Namespace of the Paddock operator, where it publishes its evidence public key and the
    /// archive's location (ConfigMap `paddock-evidence`).
    #[arg(long, global = true, default_value = "paddock-system")]
    paddock_namespace: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// List AgentRuns: NAME, AGENT, PHASE, REASON, DIFF, AGE.
    Runs(ListArgs),
    /// List ApprovalGates: NAME, RUN, STAGE, STATE, APPROVALS/QUORUM, AGE, REQUEST (what the
    /// gate asks: a question, a plan's first line, a tool call).
    Gates(ListArgs),
    /// Print one gate in full: a question with its numbered options and the answer, a plan's
    /// first lines, a tool call; its decisions and how to decide it. A run name prints the
    /// run's pending gates.
    Gate {
        /// ApprovalGate name, or AgentRun name (its pending gates).
        name: String,
        /// Print the whole plan of a Plan gate.
        #[arg(long)]
        full: bool,
    },
    /// Approve a gate, in your own name (the argument is a gate or a run name).
    Approve(DecideArgs),
    /// Reject a gate, in your own name (the argument is a gate or a run name).
    Reject(DecideArgs),
    /// Send a message to a running agent, in your own name: creates a RunMessage and prints
    /// `runmessage/<name>` (docs/conversing.md). Only claude-code takes messages while it
    /// works; the operator refuses the others' (NotSupported).
    Say(SayArgs),
    /// Answer the question a running agent asked (its `ask_human` call), in your own name: the
    /// run's newest pending Question gate, or --gate.
    Answer(AnswerArgs),
    /// Send an agent's plan back with the changes you want (a RequestChanges decision on a Plan
    /// gate, in your own name); the agent plans again. The argument is a gate or a run name
    /// (its newest pending Plan gate).
    RequestChanges {
        /// ApprovalGate (stage Plan) name, or AgentRun name.
        name: String,
        /// The changes you ask for (required).
        #[arg(short = 'm', long, required = true)]
        message: String,
    },
    /// List the messages sent to a run: NAME, SENDER, STATE, TURN, AGE, TEXT.
    Messages {
        /// AgentRun name.
        run: String,
    },
    /// Print an AgentRunSet's candidates side by side (verification, diff, cost, tokens,
    /// turns, duration; the winner marked `*`), and with --diff each candidate's diff.
    Compare {
        /// AgentRunSet name.
        set: String,
        /// Also print each candidate's diff.
        #[arg(long)]
        diff: bool,
    },
    /// Pick the winner of an AgentRunSet with `selection.policy: Manual`, in your own name (an
    /// approval naming the candidate on the set's Pick gate).
    Pick {
        /// AgentRunSet name.
        set: String,
        /// The candidate whose branch is pushed.
        candidate: String,
        /// Comment recorded with the pick.
        #[arg(short = 'm', long)]
        message: Option<String>,
    },
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
    /// Write a run's evidence bundle (a DSSE envelope of JSON, docs/evidence.md): the signed
    /// one from the archive once the run was archived or deleted, else one assembled now from
    /// the cluster (unsigned).
    Export {
        /// AgentRun name.
        run: String,
        /// Output file (default: standard output).
        #[arg(short = 'o', long)]
        output: Option<std::path::PathBuf>,
    },
    /// Check a bundle's signature against the operator's evidence public key; exits 1, saying
    /// what failed, when a single byte was changed.
    Verify {
        /// The bundle file (`-`: standard input).
        bundle: std::path::PathBuf,
        /// The trusted public key (base64 of the 32 raw Ed25519 bytes). Default: the one the
        /// operator publishes in ConfigMap `paddock-evidence`.
        #[arg(long)]
        key: Option<String>,
    },
    /// List the runs whose bundles are in the archive: NAME, UID, ARCHIVED, SIZE.
    History(ListArgs),
    /// Serve the web console on 127.0.0.1 and open it: runs, a run's live timeline, diff and
    /// gates, the approvals inbox, pools, a new-run form. It acts with your kubeconfig
    /// credentials; the printed URL holds a token that only this start accepts.
    Console(ConsoleArgs),
}

#[derive(Args, Debug)]
struct ConsoleArgs {
    /// Show every namespace you can list (default: the one of -n or the context).
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    all_namespaces: bool,
    /// Port on 127.0.0.1 (default: a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Print the URL but do not open a browser.
    #[arg(long)]
    no_open: bool,
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
    let evidence_ns = cli.paddock_namespace.clone();
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
        Cmd::Compare { set, diff } => compare(&client, &ns, &set, diff).await?,
        Cmd::Pick {
            set,
            candidate,
            message,
        } => pick(&client, &ns, &set, &candidate, message.as_deref()).await?,
        Cmd::Approve(a) => decide(&client, &ns, &a, Choice::Approve).await?,
        Cmd::Reject(a) => decide(&client, &ns, &a, Choice::Reject).await?,
        Cmd::Gate { name, full } => talk_cmd::gate(&client, &ns, &name, full).await?,
        Cmd::Say(a) => talk_cmd::say(&client, &ns, &a).await?,
        Cmd::Answer(a) => talk_cmd::answer(&client, &ns, &a).await?,
        Cmd::RequestChanges { name, message } => talk_cmd::request_changes(&client, &ns, &name, &message).await?,
        Cmd::Messages { run } => talk_cmd::messages(&client, &ns, &run).await?,
        Cmd::Diff { run } => {
            or_archived(&client, &evidence_ns, &ns, &run, diff(&client, &ns, &run).await, |b| {
                b.patch
                    .ok_or_else(|| anyhow::anyhow!("run {run} produced no patch (its archived bundle has none)"))
            })
            .await?
        }
        Cmd::Transcript { run, raw } => {
            or_archived(
                &client,
                &evidence_ns,
                &ns,
                &run,
                transcript(&client, &ns, &run, raw).await,
                |b| {
                    let t = b
                        .transcript
                        .ok_or_else(|| anyhow::anyhow!("run {run}'s archived bundle has no transcript"))?;
                    Ok(if raw { t } else { kubectl_paddock::render_transcript(&t) })
                },
            )
            .await?
        }
        Cmd::Export { run, output } => {
            let cfg = EvidenceConfig::load(&client, &evidence_ns, None).await;
            let (bytes, note) = evidence::export(&client, &cfg, &ns, &run).await?;
            match output.as_deref() {
                Some(p) if p != std::path::Path::new("-") => {
                    std::fs::write(p, &bytes).with_context(|| format!("writing {}", p.display()))?;
                    eprintln!("wrote {} ({} bytes): {note}", p.display(), bytes.len());
                }
                _ => {
                    use std::io::Write as _;
                    std::io::stdout().write_all(&bytes)?;
                    eprintln!("{note}");
                }
            }
            String::new()
        }
        Cmd::Verify { bundle, key } => {
            let bytes = if bundle == std::path::Path::new("-") {
                let mut b = vec![];
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
                b
            } else {
                std::fs::read(&bundle).with_context(|| format!("reading {}", bundle.display()))?
            };
            let cfg = EvidenceConfig::load(&client, &evidence_ns, key).await;
            evidence::verify_report(&bytes, cfg.key()?)?
        }
        Cmd::History(a) => {
            let cfg = EvidenceConfig::load(&client, &evidence_ns, None).await;
            evidence::history(&cfg, (!a.all_namespaces).then_some(ns.as_str())).await?
        }
        Cmd::Logs {
            run,
            raw,
            attempt: None,
            follow: true,
        } => {
            let live = follow_logs(&client, &ns, &run, raw).await;
            or_archived(&client, &evidence_ns, &ns, &run, live, |b| archived_log(b, raw, None)).await?
        }
        Cmd::Logs { run, raw, attempt, .. } => {
            let live = logs(&client, &ns, &run, raw, attempt).await;
            or_archived(&client, &evidence_ns, &ns, &run, live, |b| {
                archived_log(b, raw, attempt)
            })
            .await?
        }
        Cmd::Console(a) => {
            let opts = console::ConsoleOptions {
                namespace: (!a.all_namespaces).then(|| ns.clone()),
                port: a.port,
                open_browser: !a.no_open,
            };
            console::serve(client, opts).await?;
            String::new()
        }
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
    Ok(fetch::fetch_run(client, ns, name).await?)
}

fn phase_of(run: &AgentRun) -> String {
    fetch::phase_name(run)
}

async fn decide(client: &Client, ns: &str, args: &DecideArgs, choice: Choice) -> Result<String> {
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
    let (d, updated) = talk_cmd::record(client, ns, &gate, &choice, args.message.as_deref()).await?;
    let user = &d.approver;
    let verb = match d.decision {
        Verdict::Approve => "approved",
        Verdict::Reject => "rejected",
        Verdict::RequestChanges => "sent back for changes",
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

async fn get_set(client: &Client, ns: &str, name: &str) -> Result<AgentRunSet> {
    let sets: Api<AgentRunSet> = Api::namespaced(client.clone(), ns);
    sets.get_opt(name)
        .await
        .context("reading AgentRunSet")?
        .ok_or_else(|| anyhow::anyhow!("no AgentRunSet named {name:?} in namespace {ns:?}"))
}

async fn compare(client: &Client, ns: &str, name: &str, with_diff: bool) -> Result<String> {
    let set = get_set(client, ns, name).await?;
    let mut out = sets::compare_table(&set).render();
    out.push_str(&sets::compare_footer(&set));
    if with_diff {
        let st = set.status.clone().unwrap_or_default();
        for c in &st.candidates {
            let Some(run) = c.run.as_deref() else { continue };
            out.push_str(&format!("\n=== {} (AgentRun {run}) ===\n", c.name));
            match diff(client, ns, run).await {
                Ok(d) if d.is_empty() => out.push_str("(no change)\n"),
                Ok(d) => out.push_str(&d),
                Err(e) => out.push_str(&format!("(no diff: {e:#})\n")),
            }
        }
    }
    Ok(out)
}

async fn pick(client: &Client, ns: &str, name: &str, candidate: &str, message: Option<&str>) -> Result<String> {
    let set = get_set(client, ns, name).await?;
    let st = set.status.clone().unwrap_or_default();
    let Some(gate_name) = st.gate_name.clone() else {
        return Err(kubectl_paddock::PluginError::NoPickGate {
            set: name.into(),
            why: if set.spec.selection.policy != paddock_crds::SelectionPolicy::Manual {
                format!("(selection.policy is {})", set.spec.selection.policy.as_str())
            } else {
                format!("yet ({} of {} candidates done)", st.finished, st.total)
            },
        }
        .into());
    };
    let gates: Api<ApprovalGate> = Api::namespaced(client.clone(), ns);
    let gate = gates
        .get_opt(&gate_name)
        .await
        .context("reading ApprovalGate")?
        .ok_or_else(|| kubectl_paddock::PluginError::NoPickGate {
            set: name.into(),
            why: format!("(ApprovalGate {gate_name} does not exist)"),
        })?;
    sets::check_pick(&set, &gate, candidate)?;
    let (user, groups) = fetch::fetch_whoami(client).await?;
    check_can_decide(&gate, &user, &groups, Verdict::Approve)?;
    let patch =
        serde_json::from_value(sets::pick_patch(&user, candidate, message)).context("building the JSON patch")?;
    gates
        .patch(&gate_name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .with_context(|| format!("appending your pick to ApprovalGate {gate_name:?}"))?;
    Ok(format!(
        "approvalgate/{gate_name}: {user} picked {candidate} for AgentRunSet {name}\n"
    ))
}

/// `live`, unless it failed because run `name` does not exist: then `from_bundle` of the run's
/// archived bundle (verified against the operator's evidence key), saying so on stderr.
async fn or_archived(
    client: &Client,
    evidence_ns: &str,
    ns: &str,
    name: &str,
    live: Result<String>,
    from_bundle: impl FnOnce(paddock_evidence::Bundle) -> Result<String>,
) -> Result<String> {
    let gone = matches!(&live, Err(e) if e.downcast_ref::<fetch::FetchError>().is_some_and(|f| matches!(f, fetch::FetchError::Plugin(PluginError::RunNotFound { .. }))));
    if !gone {
        return live;
    }
    let cfg = EvidenceConfig::load(client, evidence_ns, None).await;
    let bundle = match evidence::archived_bundle(&cfg, ns, name).await {
        Ok(b) => b,
        Err(evidence::EvidenceError::NoArchive { .. }) => return live,
        Err(e) => return Err(anyhow::anyhow!("{}; the archive: {e}", live.unwrap_err())),
    };
    eprintln!(
        "(run {name} no longer exists; from its archived bundle, uid {}, verified)",
        bundle.run.uid
    );
    from_bundle(bundle)
}

/// The event log of an archived run (attempt `attempt`, default the last) as `logs` prints it.
fn archived_log(b: paddock_evidence::Bundle, raw: bool, attempt: Option<u32>) -> Result<String> {
    let current = b.status.attempt.unwrap_or(1);
    let text = match attempt.filter(|n| *n != current) {
        Some(n) => b
            .attempt_logs
            .get(&n)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the archived bundle has no log of attempt {n}"))?,
        None => b
            .event_log
            .ok_or_else(|| anyhow::anyhow!("the archived bundle has no event log"))?,
    };
    let (events, lines) = parse_log(&text);
    Ok(if raw {
        let mut out = lines.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        out
    } else {
        kubectl_paddock::format_events(&events)
    })
}

async fn diff(client: &Client, ns: &str, name: &str) -> Result<String> {
    Ok(fetch::fetch_patch(client, ns, name).await?)
}

async fn transcript(client: &Client, ns: &str, name: &str, raw: bool) -> Result<String> {
    let text = fetch::fetch_transcript(client, ns, name).await?;
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
    let mut msgs: Vec<RunMessage> = vec![];
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
            if let paddock_crds::events::RunnerEvent::MessageDelivered { id, .. } = &ev.event {
                if !msgs.iter().any(|m| m.metadata.uid.as_deref() == Some(id.as_str())) {
                    msgs = fetch::fetch_messages(client, ns, name).await.unwrap_or_default();
                }
            }
            format!("{rel:>8} {}\n", talk::describe_event(&ev.event, &msgs))
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
    let text = fetch::fetch_log(client, ns, name, attempt).await?;
    let (events, lines) = parse_log(&text);
    if raw {
        let mut out = lines.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        Ok(out)
    } else {
        // Delivered messages are named with their sender and text (best effort: without
        // `list runmessages` they show by UID).
        let msgs = fetch::fetch_messages(client, ns, name).await.unwrap_or_default();
        Ok(format_events_by(&events, |e| talk::describe_event(e, &msgs)))
    }
}
