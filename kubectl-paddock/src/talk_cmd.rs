//! The commands that talk to a running agent (docs/conversing.md): `say`, `answer`,
//! `request-changes`, `messages`, `gate`; and [`record`], which `approve` and `reject` use too.
//! The pure parts are the library's [`kubectl_paddock::talk`].

use anyhow::{Context as _, Result};
use clap::Args;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::Client;
use kubectl_paddock::talk::{self, Choice};
use kubectl_paddock::{check_can_decide, fetch, PluginError};
use paddock_crds::{AgentRun, ApprovalGate, GateStage, RunMessage};

/// `kubectl paddock say`.
#[derive(Args, Debug)]
pub struct SayArgs {
    /// AgentRun name.
    pub run: String,
    /// The message (1 to 4096 bytes), as the agent will read it.
    pub text: String,
    /// Wait until the message is delivered or refused, and print how (default 2m; a timeout as
    /// `--wait=30s`). Exits 1 when it was refused or is still pending at the timeout.
    #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, require_equals = true,
          default_missing_value = talk::DEFAULT_WAIT, value_parser = talk::parse_wait)]
    pub wait: Option<std::time::Duration>,
}

/// `kubectl paddock answer`.
#[derive(Args, Debug)]
pub struct AnswerArgs {
    /// AgentRun name.
    pub run: String,
    /// The answer (1 to 4096 bytes).
    #[arg(required_unless_present_any = ["option", "decline"], conflicts_with_all = ["option", "decline"])]
    pub text: Option<String>,
    /// Answer with the question's N-th offered option (from 1; `kubectl paddock gate` lists them).
    #[arg(long, value_name = "N", conflicts_with = "decline")]
    pub option: Option<usize>,
    /// Decline to answer (a Reject): the agent gets "no answer" and goes on.
    #[arg(long)]
    pub decline: bool,
    /// Comment recorded with the decision.
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// The Question gate to answer (default: the run's newest pending one).
    #[arg(long)]
    pub gate: Option<String>,
}

impl AnswerArgs {
    /// The decision the arguments ask for.
    pub fn choice(&self) -> Choice {
        match (&self.text, self.option) {
            _ if self.decline => Choice::Decline,
            (_, Some(n)) => Choice::AnswerOption(n),
            (Some(t), None) => Choice::Answer(t.clone()),
            (None, None) => Choice::Decline,
        }
    }
}

/// Checks that the caller can record `choice` on `gate` and appends it: the decision recorded
/// and the gate as updated.
pub async fn record(
    client: &Client,
    ns: &str,
    gate: &ApprovalGate,
    choice: &Choice,
    comment: Option<&str>,
) -> Result<(paddock_crds::Decision, ApprovalGate)> {
    let (user, groups) = fetch::fetch_whoami(client).await?;
    let d = talk::decision(gate, &user, choice, comment)?;
    check_can_decide(gate, &user, &groups, d.decision)?;
    let name = gate.metadata.name.clone().unwrap_or_default();
    let updated = talk::append_decision(client, ns, &name, &d).await?;
    Ok((d, updated))
}

/// What a `<gate|run>` argument names: the gate of that name, else the gates of the run of
/// that name.
enum GateOrRun {
    /// The ApprovalGate named so.
    Gate(Box<ApprovalGate>),
    /// No such gate: the gates of the AgentRun named so.
    RunGates(Vec<ApprovalGate>),
}

/// Reads what `name` names in `ns` ([`GateOrRun`]).
///
/// # Errors
/// [`PluginError::NotFound`] when neither a gate nor a run has that name; API errors.
async fn gate_or_run(client: &Client, ns: &str, name: &str) -> Result<GateOrRun> {
    let gates: Api<ApprovalGate> = Api::namespaced(client.clone(), ns);
    if let Some(g) = gates.get_opt(name).await.context("reading ApprovalGate")? {
        return Ok(GateOrRun::Gate(Box::new(g)));
    }
    let runs: Api<AgentRun> = Api::namespaced(client.clone(), ns);
    if runs.get_opt(name).await.context("reading AgentRun")?.is_none() {
        return Err(PluginError::NotFound {
            name: name.into(),
            namespace: ns.into(),
        }
        .into());
    }
    Ok(GateOrRun::RunGates(fetch::fetch_gates_of_run(client, ns, name).await?))
}

/// `gate`: one gate in full, or a run's pending gates.
pub async fn gate(client: &Client, ns: &str, name: &str, full: bool) -> Result<String> {
    let now = Timestamp::now();
    let all = match gate_or_run(client, ns, name).await? {
        GateOrRun::Gate(g) => return Ok(talk::describe_gate(&g, now, full)),
        GateOrRun::RunGates(all) => all,
    };
    let pending: Vec<ApprovalGate> = all
        .into_iter()
        .filter(|g| {
            g.status
                .as_ref()
                .and_then(|s| s.state)
                .is_none_or(|s| s == paddock_crds::GateState::Pending)
        })
        .collect();
    if pending.is_empty() {
        return Ok(format!(
            "AgentRun {name} has no pending gate (kubectl paddock gates lists them all).\n"
        ));
    }
    Ok(pending
        .iter()
        .map(|g| talk::describe_gate(g, now, full))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// `say`: creates the message, then with --wait reads it until delivered or refused.
pub async fn say(client: &Client, ns: &str, a: &SayArgs) -> Result<String> {
    let (user, _) = fetch::fetch_whoami(client).await?;
    let (msg, note) = talk::send_message(client, ns, &a.run, &user, &a.text).await?;
    let name = msg.metadata.name.clone().unwrap_or_default();
    if let Some(n) = note {
        eprintln!("{n}");
    }
    let Some(timeout) = a.wait else {
        eprintln!(
            "sent to AgentRun {} as {user}; kubectl paddock messages {} shows its delivery",
            a.run, a.run
        );
        return Ok(format!("runmessage/{name}\n"));
    };
    println!("runmessage/{name}");
    let m: RunMessage = talk::wait_for_delivery(client, ns, &name, timeout).await?;
    let how = talk::delivery(&m);
    match m.status.as_ref().and_then(|s| s.state) {
        Some(paddock_crds::MessageState::Delivered) => Ok(format!("runmessage/{name} {how}\n")),
        Some(paddock_crds::MessageState::Refused) => Err(anyhow::anyhow!("runmessage/{name} was {how}")),
        _ => Err(anyhow::anyhow!(
            "runmessage/{name} is still {how} after {}",
            kubectl_paddock::human_duration(timeout.as_secs() as i64)
        )),
    }
}

/// `answer`: the run's newest pending Question gate (or --gate), answered or declined.
pub async fn answer(client: &Client, ns: &str, a: &AnswerArgs) -> Result<String> {
    fetch::fetch_run(client, ns, &a.run).await?;
    let gate = match &a.gate {
        Some(name) => {
            let gates: Api<ApprovalGate> = Api::namespaced(client.clone(), ns);
            let g = gates
                .get_opt(name)
                .await
                .context("reading ApprovalGate")?
                .ok_or_else(|| anyhow::anyhow!("no ApprovalGate named {name:?} in namespace {ns:?}"))?;
            if g.spec.run_ref.name != a.run {
                return Err(PluginError::GateOfOtherRun {
                    gate: name.clone(),
                    owner: g.spec.run_ref.name.clone(),
                    run: a.run.clone(),
                }
                .into());
            }
            g
        }
        None => {
            let gates = fetch::fetch_gates_of_run(client, ns, &a.run).await?;
            talk::newest_pending(&gates, &a.run, GateStage::Question)?.clone()
        }
    };
    let (d, updated) = record(client, ns, &gate, &a.choice(), a.message.as_deref()).await?;
    let name = updated.metadata.name.clone().unwrap_or_default();
    Ok(match &d.answer {
        Some(ans) => format!(
            "approvalgate/{name} answered by {}: {ans:?} (run {})\n",
            d.approver, a.run
        ),
        None => format!(
            "approvalgate/{name} declined by {} (run {}): the agent gets \"no answer\" and goes on\n",
            d.approver, a.run
        ),
    })
}

/// `request-changes`: a Plan gate (by name, or the run's newest pending one) sent back.
pub async fn request_changes(client: &Client, ns: &str, name: &str, message: &str) -> Result<String> {
    let gate = match gate_or_run(client, ns, name).await? {
        GateOrRun::Gate(g) => *g,
        GateOrRun::RunGates(all) => talk::newest_pending(&all, name, GateStage::Plan)?.clone(),
    };
    let (d, updated) = record(client, ns, &gate, &Choice::RequestChanges, Some(message)).await?;
    Ok(format!(
        "approvalgate/{}: {} requested changes (run {}); the agent gets the comment and plans again\n",
        updated.metadata.name.clone().unwrap_or_default(),
        d.approver,
        updated.spec.run_ref.name
    ))
}

/// `messages`: the run's messages as a table.
pub async fn messages(client: &Client, ns: &str, run: &str) -> Result<String> {
    fetch::fetch_run(client, ns, run).await?;
    let msgs = fetch::fetch_messages(client, ns, run).await?;
    Ok(if msgs.is_empty() {
        format!("No messages to AgentRun {run} in namespace {ns}.\n")
    } else {
        talk::messages_table(&msgs, Timestamp::now()).render()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Cmd};
    use clap::Parser;
    use std::time::Duration;

    fn parse(args: &[&str]) -> Result<Cmd, clap::Error> {
        let mut all = vec!["kubectl-paddock"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|c| c.cmd)
    }

    fn say(args: &[&str]) -> SayArgs {
        match parse(args).unwrap() {
            Cmd::Say(a) => a,
            other => panic!("{other:?}"),
        }
    }

    fn answer(args: &[&str]) -> Result<AnswerArgs, clap::Error> {
        parse(args).map(|c| match c {
            Cmd::Answer(a) => a,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn say_waits_only_when_asked_and_for_as_long_as_asked() {
        let a = say(&["say", "fix", "also update the changelog"]);
        assert_eq!(
            (a.run.as_str(), a.text.as_str(), a.wait),
            ("fix", "also update the changelog", None)
        );
        assert_eq!(
            say(&["say", "fix", "hi", "--wait"]).wait,
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            say(&["say", "--wait", "fix", "hi"]).wait,
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            say(&["say", "fix", "hi", "--wait=30s"]).wait,
            Some(Duration::from_secs(30))
        );
        // The timeout needs `=`: a separate word is not taken as one (nor as a third argument).
        assert!(parse(&["say", "fix", "hi", "--wait", "30s"]).is_err());
        assert!(parse(&["say", "fix", "hi", "--wait=soon"]).is_err());
        assert!(parse(&["say", "fix"]).is_err(), "the text is required");
    }

    #[test]
    fn answer_takes_exactly_one_of_a_text_an_option_or_decline() {
        assert_eq!(
            answer(&["answer", "fix", "Postgres"]).unwrap().choice(),
            Choice::Answer("Postgres".into())
        );
        assert_eq!(
            answer(&["answer", "fix", "--option", "2"]).unwrap().choice(),
            Choice::AnswerOption(2)
        );
        let a = answer(&[
            "answer",
            "fix",
            "--decline",
            "-m",
            "ask the DBA",
            "--gate",
            "fix-question-2",
        ])
        .unwrap();
        assert_eq!(a.choice(), Choice::Decline);
        assert_eq!(
            (a.message.as_deref(), a.gate.as_deref()),
            (Some("ask the DBA"), Some("fix-question-2"))
        );
        for bad in [
            &["answer", "fix"][..],
            &["answer", "fix", "Postgres", "--option", "1"],
            &["answer", "fix", "Postgres", "--decline"],
            &["answer", "fix", "--option", "1", "--decline"],
            &["answer", "fix", "--option", "one"],
            &["answer", "fix", "--option", "-1"],
        ] {
            assert!(answer(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn request_changes_needs_a_comment() {
        assert!(parse(&["request-changes", "fix-plan-1"]).is_err());
        match parse(&["request-changes", "fix-plan-1", "-m", "add a rollback step"]).unwrap() {
            Cmd::RequestChanges { name, message } => {
                assert_eq!((name.as_str(), message.as_str()), ("fix-plan-1", "add a rollback step"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse(&["messages", "fix"]).unwrap(), Cmd::Messages { run } if run == "fix"));
        assert!(matches!(
            parse(&["gate", "fix", "--full"]).unwrap(),
            Cmd::Gate { full: true, .. }
        ));
    }
}
