//! Human approvals during a run: the `BeforePush` review and `ToolUse` gates.
//!
//! The agent container holds no Kubernetes credentials, so a request and its verdict travel
//! through channels the pod already has:
//! 1. **Request** — the runner prints an [`RunnerEvent::ApprovalRequested`] event on stdout (the
//!    container log the operator follows). The operator creates the ApprovalGate
//!    `<run>-<id>` from it.
//! 2. **Verdict** — once the gate is decided, the operator sets the pod annotation
//!    `decision.paddock.dev/<id>` to `Approve`, `Reject` or `Expired`. The kubelet projects the
//!    pod's annotations into a downward API volume file (`PADDOCK_DECISIONS_FILE`, default
//!    [`DEFAULT_DECISIONS_FILE`]), which the runner polls every [`POLL_INTERVAL`].
//!
//! `ToolUse` requests come from the MCP permission-prompt server ([`crate::mcp`]), a child of
//! the agent CLI whose stdout belongs to the CLI. It writes `<id>.request.json` (a
//! [`ToolRequest`]) and, once decided, `<id>.verdict` into [`requests_dir`]; the `run` process
//! turns new files into events ([`watch_requests`]).

use paddock_crds::runner::vars;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use paddock_crds::events::{truncate, RunnerEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::workspace::{write_atomic, Workspace};

/// Prefix of the pod annotations that carry verdicts: `decision.paddock.dev/<id>`.
pub const DECISION_PREFIX: &str = "decision.paddock.dev/";
/// Where the operator's pod mounts the downward API file of the pod's annotations.
pub const DEFAULT_DECISIONS_FILE: &str = "/etc/paddock/pod/annotations";
/// How often verdicts and request files are polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Longest tool input (bytes) carried in a request.
pub const MAX_INPUT_BYTES: usize = 2048;

/// A gate's verdict as the operator writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on.
    Approve,
    /// Do not (the CLI sees a denial; a push does not happen).
    Reject,
    /// Nobody decided in time and the gate's `onTimeout` is `Reject`.
    Expired,
}

impl Verdict {
    /// Parses an annotation value (`Approve`, `Reject`, `Expired`).
    pub fn parse(s: &str) -> Option<Verdict> {
        match s.trim() {
            "Approve" => Some(Verdict::Approve),
            "Reject" => Some(Verdict::Reject),
            "Expired" => Some(Verdict::Expired),
            _ => None,
        }
    }

    /// The annotation value.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "Approve",
            Verdict::Reject => "Reject",
            Verdict::Expired => "Expired",
        }
    }
}

/// Parses the kubelet's downward API rendering of a map (`key="value"` per line, the value
/// quoted as Go's `strconv.Quote` does). Lines that do not parse are skipped.
pub fn parse_annotations(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
            continue;
        };
        let mut value = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                value.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some('r') => value.push('\r'),
                Some(other) => value.push(other),
                None => {}
            }
        }
        out.insert(key.to_string(), value);
    }
    out
}

/// Whose verdicts count: the operator's public key and this pod's run and attempt, from the
/// pod's env (`PADDOCK_VERDICT_PUBLIC_KEY`, `PADDOCK_NAMESPACE`, `PADDOCK_RUN`,
/// `PADDOCK_RUN_UID`, `PADDOCK_ATTEMPT`), which the operator wrote into the pod spec (or, in a
/// warm pod, into the signed claim). A verdict annotation counts only with the operator's
/// signature over this run, attempt, request id and subject ([`paddock_crds::verdict`]); an
/// unsigned one, which a namespace `edit` user can write, is ignored. Without a public key
/// nothing verifies (fail closed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerdictCheck {
    /// Base64 of the operator's Ed25519 public key.
    pub public_key: String,
    /// The run's namespace.
    pub namespace: String,
    /// The run's name.
    pub run: String,
    /// The run's `metadata.uid`.
    pub run_uid: String,
    /// This pod's attempt (from 1).
    pub attempt: u32,
}

impl VerdictCheck {
    /// Reads the variables named above; missing ones stay empty (and nothing verifies).
    pub fn from_env(env: &crate::env::Env) -> Self {
        let get = |k: &str| env.get(k).unwrap_or_default().to_string();
        Self {
            public_key: get(paddock_crds::verdict::PUBLIC_KEY_ENV),
            namespace: get(vars::NAMESPACE),
            run: get(vars::RUN),
            run_uid: get(vars::RUN_UID),
            attempt: env.get(vars::ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(0),
        }
    }

    /// The verdict in annotation `value` for request `id` about `subject` (a push's commit, or
    /// empty), if the operator signed it for this run and attempt.
    pub fn verdict(&self, id: &str, subject: &str, value: &str) -> Option<Verdict> {
        let s = paddock_crds::verdict::Subject {
            namespace: &self.namespace,
            run: &self.run,
            run_uid: &self.run_uid,
            attempt: self.attempt,
            id,
            subject,
        };
        paddock_crds::verdict::verified_verdict(&self.public_key, &s, value).and_then(Verdict::parse)
    }
}

/// The verdict for request `id` about `subject` in the annotations file at `file`, if a signed
/// one is there yet ([`VerdictCheck`]).
pub fn read_verdict(file: &Path, check: &VerdictCheck, id: &str, subject: &str) -> Option<Verdict> {
    let text = std::fs::read_to_string(file).ok()?;
    parse_annotations(&text)
        .get(&format!("{DECISION_PREFIX}{id}"))
        .and_then(|v| check.verdict(id, subject, v))
}

/// Waits for the signed verdict on request `id` about `subject`. `None` when `terminate`
/// turned true first.
pub async fn wait_verdict(
    file: &Path,
    check: &VerdictCheck,
    id: &str,
    subject: &str,
    terminate: &mut watch::Receiver<bool>,
) -> Option<Verdict> {
    loop {
        if let Some(v) = read_verdict(file, check, id, subject) {
            return Some(v);
        }
        if *terminate.borrow() {
            return None;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => {},
            _ = terminate.changed() => {},
        }
    }
}

pub use crate::toolrule::{matching_rule, subject};

/// A `ToolUse` request as the MCP server writes it for the `run` process.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ToolRequest {
    /// `tool-<n>`.
    pub id: String,
    /// Tool name (`Bash`, …).
    pub tool: String,
    /// The rule's subject of the call (command line, path, …), truncated.
    pub input: String,
    /// One line for the approver.
    pub summary: String,
}

/// Directory of `ToolUse` request and verdict files: `<workspace>/.paddock/approvals`.
pub fn requests_dir(ws: &Workspace) -> PathBuf {
    ws.control().join("approvals")
}

/// Writes a new request for `tool` with `input` (the CLI working in `cwd`) and returns it; its
/// id is `tool-<n>` with `n` one more than the requests already in `dir`.
///
/// # Errors
/// I/O errors creating the directory or the file.
pub fn write_request(dir: &Path, tool: &str, input: &Value, cwd: &Path) -> std::io::Result<ToolRequest> {
    std::fs::create_dir_all(dir)?;
    let n = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".request.json"))
        .count()
        + 1;
    let subject = truncate(&subject(tool, input, cwd), MAX_INPUT_BYTES);
    let req = ToolRequest {
        id: format!("tool-{n}"),
        tool: tool.to_string(),
        summary: truncate(&format!("{tool}: {subject}"), 1024),
        input: subject,
    };
    let json = serde_json::to_vec(&req).map_err(std::io::Error::other)?;
    write_atomic(&dir.join(format!("{}.request.json", req.id)), &json)?;
    Ok(req)
}

/// Records the verdict on request `id` for the `run` process.
///
/// # Errors
/// I/O errors writing the file.
pub fn write_verdict(dir: &Path, id: &str, verdict: Verdict) -> std::io::Result<()> {
    write_atomic(&dir.join(format!("{id}.verdict")), verdict.as_str().as_bytes())
}

/// Polls `dir` until `tx` is closed, sending an [`RunnerEvent::ApprovalRequested`] for each new
/// request file and an [`RunnerEvent::ApprovalDecided`] for each new verdict file, in id order.
pub async fn watch_requests(dir: PathBuf, tx: mpsc::Sender<RunnerEvent>) {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    loop {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".request.json") || n.ends_with(".verdict"))
                    .collect()
            })
            .unwrap_or_default();
        // Requests before verdicts, lower ids first.
        names.sort_by_key(|n| (n.ends_with(".verdict"), n.len(), n.clone()));
        for name in names {
            if seen.contains(&name) {
                continue;
            }
            let Ok(raw) = std::fs::read_to_string(dir.join(&name)) else {
                continue;
            };
            let ev = if let Some(id) = name.strip_suffix(".verdict") {
                RunnerEvent::ApprovalDecided {
                    id: id.to_string(),
                    verdict: raw.trim().to_string(),
                }
            } else {
                let Ok(req) = serde_json::from_str::<ToolRequest>(&raw) else {
                    continue;
                };
                RunnerEvent::ApprovalRequested {
                    id: req.id,
                    stage: "ToolUse".into(),
                    summary: req.summary,
                    tool: Some(req.tool),
                    input: Some(req.input),
                    commit: None,
                    diffstat: None,
                    question: None,
                    options: Vec::new(),
                    plan: None,
                }
            };
            seen.insert(name);
            if tx.send(ev).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => {},
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    fn rule(tool: &str, pattern: Option<&str>) -> paddock_crds::ToolRule {
        paddock_crds::ToolRule {
            tool: tool.into(),
            pattern: pattern.map(str::to_string),
        }
    }

    #[test]
    fn kubelet_annotation_file_parses() {
        let text = "decision.paddock.dev/push=\"Approve\"\nkubernetes.io/config.seen=\"2026-11-22T04:00:00Z\"\nx=\"a \\\"q\\\"\\nb\"\nbroken line\n";
        let m = parse_annotations(text);
        assert_eq!(m.get("decision.paddock.dev/push").map(String::as_str), Some("Approve"));
        assert_eq!(m.get("x").map(String::as_str), Some("a \"q\"\nb"));
        assert_eq!(m.len(), 3);
    }

    /// A signer and the check a pod of run r1 (uid u1), attempt 1, makes with its public key.
    pub(crate) fn signed() -> (paddock_crds::verdict::Signer, VerdictCheck) {
        let signer = paddock_crds::verdict::Signer::generate().unwrap();
        let check = VerdictCheck {
            public_key: signer.public_key_b64(),
            namespace: "ns".into(),
            run: "r1".into(),
            run_uid: "u1".into(),
            attempt: 1,
        };
        (signer, check)
    }

    /// The annotation value the operator writes for `verdict` on request `id` of `check`'s pod.
    pub(crate) fn value(
        signer: &paddock_crds::verdict::Signer,
        check: &VerdictCheck,
        id: &str,
        subject: &str,
        verdict: &str,
    ) -> String {
        let s = paddock_crds::verdict::Subject {
            namespace: &check.namespace,
            run: &check.run,
            run_uid: &check.run_uid,
            attempt: check.attempt,
            id,
            subject,
        };
        signer.verdict_value(&s, verdict).unwrap()
    }

    #[test]
    fn verdict_is_read_per_id_and_only_when_signed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("annotations");
        let (signer, check) = signed();
        assert_eq!(read_verdict(&f, &check, "push", "c1"), None);
        let reject = value(&signer, &check, "tool-1", "", "Reject");
        std::fs::write(&f, format!("decision.paddock.dev/tool-1=\"{reject}\"\n")).unwrap();
        assert_eq!(read_verdict(&f, &check, "tool-1", ""), Some(Verdict::Reject));
        assert_eq!(read_verdict(&f, &check, "tool-2", ""), None);
        // What an `edit` user can write: a bare verdict, or one signed for another request.
        std::fs::write(
            &f,
            format!("decision.paddock.dev/tool-2=\"Approve\"\ndecision.paddock.dev/tool-3=\"{reject}\"\n"),
        )
        .unwrap();
        assert_eq!(read_verdict(&f, &check, "tool-2", ""), None);
        assert_eq!(read_verdict(&f, &check, "tool-3", ""), None);
        // A push verdict is bound to the commit.
        let approve = value(&signer, &check, "push", "c1", "Approve");
        std::fs::write(&f, format!("decision.paddock.dev/push=\"{approve}\"\n")).unwrap();
        assert_eq!(read_verdict(&f, &check, "push", "c1"), Some(Verdict::Approve));
        assert_eq!(read_verdict(&f, &check, "push", "c2"), None);
        // The next attempt asks again.
        let next = VerdictCheck {
            attempt: 2,
            ..check.clone()
        };
        assert_eq!(read_verdict(&f, &next, "push", "c1"), None);
    }

    #[test]
    fn rules_match_the_subject_of_each_tool() {
        let rules = vec![
            rule("Bash", Some("git push*")),
            rule("Bash", Some("rm -rf *")),
            rule("Write", Some("/etc/*")),
        ];
        let cwd = Path::new("/workspace/work");
        let bash = |c: &str| json!({"command": c});
        assert!(matching_rule(&rules, "Bash", &bash("git push origin main"), cwd).is_some());
        assert!(matching_rule(&rules, "Bash", &bash("rm -rf /tmp/x/y"), cwd).is_some());
        assert!(matching_rule(&rules, "Bash", &bash("ls -la"), cwd).is_none());
        assert!(matching_rule(&rules, "Bash", &bash("echo git push"), cwd).is_none());
        assert!(matching_rule(&rules, "Write", &json!({"file_path": "/etc/passwd"}), cwd).is_some());
        assert!(matching_rule(&rules, "Write", &json!({"file_path": "src/x.rs"}), cwd).is_none());
        // A rule for another tool never matches.
        assert!(matching_rule(&rules, "Edit", &json!({"file_path": "/etc/passwd"}), cwd).is_none());
        let any = vec![rule("*", None)];
        assert!(matching_rule(&any, "WebFetch", &json!({"url": "https://x"}), cwd).is_some());
        let fetch = vec![rule("WebFetch", Some("https://*.example.com/*"))];
        assert!(matching_rule(&fetch, "WebFetch", &json!({"url": "https://a.example.com/p"}), cwd).is_some());
        assert!(matching_rule(&fetch, "WebFetch", &json!({"url": "https://evil.com/p"}), cwd).is_none());
    }

    #[tokio::test]
    async fn request_files_become_events_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("approvals");
        let cwd = Path::new("/workspace/work");
        let a = write_request(&d, "Bash", &json!({"command": "git push"}), cwd).unwrap();
        let b = write_request(&d, "Bash", &json!({"command": "rm -rf x"}), cwd).unwrap();
        assert_eq!((a.id.as_str(), b.id.as_str()), ("tool-1", "tool-2"));
        write_verdict(&d, "tool-1", Verdict::Reject).unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        let task = tokio::spawn(watch_requests(d.clone(), tx));
        let mut got = vec![];
        for _ in 0..3 {
            got.push(rx.recv().await.unwrap().type_name());
        }
        assert_eq!(got, ["approval_requested", "approval_requested", "approval_decided"]);
        drop(rx);
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .unwrap()
            .unwrap();
    }
}
