//! AgentRunSets (issue 19, docs/fan-out.md): `kubectl paddock compare` prints a set's table,
//! `kubectl paddock pick` appends a pick to its `Pick` gate.

use crate::{PluginError, Table};
use paddock_crds::{AgentRunSet, ApprovalGate, Decision, GateStage, Verdict};

/// The side-by-side table of a set's candidates: CANDIDATE, AGENT, MODEL, PHASE, REASON,
/// VERIFIED, SUMMARY, DIFF, COST (USD), TOKENS, TURNS, DURATION, PUSHED; the winner's name is
/// marked `*`. Pure.
pub fn compare_table(set: &AgentRunSet) -> Table {
    let mut t = Table::new(&[
        "CANDIDATE",
        "AGENT",
        "MODEL",
        "PHASE",
        "REASON",
        "VERIFIED",
        "SUMMARY",
        "DIFF",
        "COST",
        "TOKENS",
        "TURNS",
        "DURATION",
        "PUSHED",
    ]);
    let st = set.status.clone().unwrap_or_default();
    for c in &set.spec.candidates {
        let row = st
            .candidates
            .iter()
            .find(|r| r.name == c.name)
            .cloned()
            .unwrap_or_default();
        let winner = st.winner.as_deref() == Some(c.name.as_str());
        t.rows.push(vec![
            format!("{}{}", c.name, if winner { " *" } else { "" }),
            if row.agent.is_empty() {
                c.agent
                    .as_ref()
                    .unwrap_or(&set.spec.template.spec.agent)
                    .name
                    .as_str()
                    .to_string()
            } else {
                row.agent.clone()
            },
            row.model.clone().unwrap_or_else(|| "-".into()),
            row.phase.map(|p| p.as_str().to_string()).unwrap_or_else(|| "-".into()),
            if row.reason.is_empty() {
                "-".into()
            } else {
                row.reason.clone()
            },
            match (row.verification, &row.verification_reason) {
                (Some(v), Some(r)) if format!("{v:?}") != *r => format!("{v:?} ({r})"),
                (Some(v), _) => format!("{v:?}"),
                _ => "-".into(),
            },
            row.summary.clone().unwrap_or_else(|| "-".into()),
            row.diffstat.clone().unwrap_or_else(|| "-".into()),
            row.cost_usd.map(|c| format!("${c:.4}")).unwrap_or_else(|| "-".into()),
            row.tokens.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            row.turns.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            row.duration_seconds
                .map(crate::human_duration)
                .unwrap_or_else(|| "-".into()),
            if row.pushed { "yes".into() } else { "no".into() },
        ]);
    }
    t
}

/// The lines under the table: the set's phase, the winner and why, or what it waits for.
pub fn compare_footer(set: &AgentRunSet) -> String {
    let st = set.status.clone().unwrap_or_default();
    let name = set.metadata.name.clone().unwrap_or_default();
    let phase = st.phase.map(|p| p.as_str()).unwrap_or("Pending");
    let mut out = format!(
        "\nAgentRunSet {name}: {phase}; {} verified, {} finished, {} total; policy {}\n",
        st.verified,
        st.finished,
        st.total,
        set.spec.selection.policy.as_str()
    );
    let no_winner = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Selected" && c.status == "False");
    match (&st.selection, no_winner, &st.gate_name) {
        (Some(s), _, _) => out.push_str(&format!("winner: {} ({})\n", s.candidate, s.message)),
        (None, Some(c), _) => out.push_str(&format!("no winner: {} ({})\n", c.reason, c.message)),
        (None, None, Some(g)) => out.push_str(&format!(
            "waiting for a pick on ApprovalGate {g}: kubectl paddock pick {name} <candidate>\n"
        )),
        _ => {}
    }
    out
}

/// The `Pick` gate of a set, checked: it exists, is the set's, and `candidate` may be picked.
///
/// # Errors
/// [`PluginError::NotPickable`] naming the candidates that may be picked.
pub fn check_pick(set: &AgentRunSet, gate: &ApprovalGate, candidate: &str) -> Result<(), PluginError> {
    let set_name = set.metadata.name.clone().unwrap_or_default();
    if gate.spec.stage != GateStage::Pick || gate.spec.run_ref.name != set_name {
        return Err(PluginError::NotPickable {
            set: set_name,
            candidate: candidate.into(),
            why: format!(
                "ApprovalGate {} is not its Pick gate",
                gate.metadata.name.clone().unwrap_or_default()
            ),
        });
    }
    if !gate.spec.request.candidates.iter().any(|c| c == candidate) {
        return Err(PluginError::NotPickable {
            set: set_name,
            candidate: candidate.into(),
            why: format!(
                "the candidates that may be picked are [{}]",
                gate.spec.request.candidates.join(", ")
            ),
        });
    }
    Ok(())
}

/// The JSON patch (RFC 6902) appending a pick of `candidate` by `approver` to a `Pick` gate's
/// `spec.decisions`. Pure.
pub fn pick_patch(approver: &str, candidate: &str, comment: Option<&str>) -> serde_json::Value {
    let d = Decision {
        approver: approver.into(),
        decision: Verdict::Approve,
        comment: comment.map(str::to_string),
        candidate: Some(candidate.into()),
        answer: None,
    };
    serde_json::json!([{"op": "add", "path": "/spec/decisions/-", "value": d}])
}
