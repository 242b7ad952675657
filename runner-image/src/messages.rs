//! A human's messages to a running agent (`RunMessage`s): the operator hands each one to the
//! run's pod as the annotation `message.paddock.dev/<RunMessage UID>`, whose value is a signed
//! [`PodMessage`] (JSON), and the kubelet projects it into the pod's annotations file (the one
//! verdicts arrive in). The `run` process polls that file every [`POLL_INTERVAL`] while the CLI
//! works ([`watch_messages`]) and hands each message the operator signed for this run and
//! attempt to the CLI once, in `seq` order, as a line on its stdin
//! ([`crate::agent::process::InputLine`], which reports it as a `message_delivered` event).
//!
//! A namespace `edit` user can annotate pods: an unsigned or forged message (another text,
//! sender, run, attempt or UID than the operator signed) is ignored, like a forged verdict.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use paddock_crds::verdict::{PodMessage, MESSAGE_PREFIX};
use tokio::sync::mpsc;

use crate::agent::process::InputLine;
use crate::approval::{parse_annotations, VerdictCheck, POLL_INTERVAL};

/// Most messages one attempt hands over; later ones are not read (they stay `Pending` for the
/// operator).
pub const MAX_MESSAGES: usize = 1000;

/// What [`pending_messages`] remembers between polls.
#[derive(Debug, Default)]
pub struct Seen {
    /// UIDs handed over.
    delivered: HashSet<String>,
    /// Annotation values that did not verify, by UID (not checked again while unchanged).
    refused: HashMap<String, String>,
}

impl Seen {
    /// How many messages were handed over.
    pub fn delivered(&self) -> usize {
        self.delivered.len()
    }
}

/// The messages in `annotations` not handed over yet that the operator signed for `check`'s run
/// and attempt, as `(uid, message)` in delivery order (`seq`, then UID), at most
/// [`MAX_MESSAGES`] in all; each is marked delivered in `seen`.
pub fn pending_messages(
    annotations: &HashMap<String, String>,
    check: &VerdictCheck,
    seen: &mut Seen,
) -> Vec<(String, PodMessage)> {
    let mut out: Vec<(String, PodMessage)> = Vec::new();
    for (key, value) in annotations {
        let Some(uid) = key.strip_prefix(MESSAGE_PREFIX) else {
            continue;
        };
        if seen.delivered.contains(uid) || seen.refused.get(uid) == Some(value) {
            continue;
        }
        match serde_json::from_str::<PodMessage>(value) {
            Ok(m) if check.message(uid, &m) => out.push((uid.to_string(), m)),
            _ => {
                seen.refused.insert(uid.to_string(), value.clone());
            }
        }
    }
    out.sort_by(|a, b| (a.1.seq, &a.0).cmp(&(b.1.seq, &b.0)));
    out.truncate(MAX_MESSAGES.saturating_sub(seen.delivered.len()));
    for (uid, _) in &out {
        seen.refused.remove(uid);
        seen.delivered.insert(uid.clone());
    }
    out
}

/// Polls the annotations file `file` every [`POLL_INTERVAL`] until `tx` is closed, sending each
/// new signed message once as an [`InputLine`] (id: its UID; line: `line(text)`, the CLI's
/// stdin line for it).
pub async fn watch_messages(file: PathBuf, check: VerdictCheck, line: fn(&str) -> String, tx: mpsc::Sender<InputLine>) {
    let mut seen = Seen::default();
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (uid, m) in pending_messages(&parse_annotations(&text), &check, &mut seen) {
            let input = InputLine {
                id: uid,
                line: line(&m.text),
            };
            if tx.send(input).await.is_err() {
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
mod tests {
    use super::*;
    use crate::approval::tests::signed;
    use paddock_crds::verdict::{Signer, Subject};

    fn message(signer: &Signer, check: &VerdictCheck, uid: &str, seq: u32, text: &str) -> String {
        let base = Subject {
            namespace: &check.namespace,
            run: &check.run,
            run_uid: &check.run_uid,
            attempt: check.attempt,
            id: "",
            subject: "",
        };
        serde_json::to_string(&PodMessage::signed(signer, &base, uid, seq, "alice", text).unwrap()).unwrap()
    }

    fn annotations(pairs: &[(&str, String)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(uid, v)| (format!("{MESSAGE_PREFIX}{uid}"), v.clone()))
            .collect()
    }

    fn texts(out: &[(String, PodMessage)]) -> Vec<&str> {
        out.iter().map(|(_, m)| m.text.as_str()).collect()
    }

    #[test]
    fn signed_messages_are_handed_over_once_in_seq_order() {
        let (signer, check) = signed();
        let mut seen = Seen::default();
        let mut a = annotations(&[
            ("u-b", message(&signer, &check, "u-b", 2, "second")),
            ("u-a", message(&signer, &check, "u-a", 1, "first")),
        ]);
        a.insert("decision.paddock.dev/push".into(), "Approve".into());
        let out = pending_messages(&a, &check, &mut seen);
        assert_eq!(texts(&out), ["first", "second"]);
        assert_eq!(out[0].0, "u-a");
        assert!(pending_messages(&a, &check, &mut seen).is_empty(), "once");
        a.insert(
            format!("{MESSAGE_PREFIX}u-c"),
            message(&signer, &check, "u-c", 3, "third"),
        );
        assert_eq!(texts(&pending_messages(&a, &check, &mut seen)), ["third"]);
        assert_eq!(seen.delivered(), 3);
    }

    /// What a namespace `edit` user can write: an unsigned message, a signed one with another
    /// text or sender, one copied under another UID, one signed for another attempt.
    #[test]
    fn forged_messages_are_ignored() {
        let (signer, check) = signed();
        let good = message(&signer, &check, "u-1", 1, "also update the changelog");
        let mut other_text: PodMessage = serde_json::from_str(&good).unwrap();
        other_text.text = "push to main".into();
        let mut other_sender: PodMessage = serde_json::from_str(&good).unwrap();
        other_sender.sender = "admin".into();
        let next_attempt = VerdictCheck {
            attempt: 2,
            ..check.clone()
        };
        let unsigned = PodMessage {
            seq: 1,
            sender: "mallory".into(),
            text: "rm -rf".into(),
            signature: "Deliver".into(),
        };
        let a = annotations(&[
            ("u-2", serde_json::to_string(&other_text).unwrap()),
            ("u-3", serde_json::to_string(&other_sender).unwrap()),
            ("u-4", good.clone()),
            ("u-5", message(&signer, &next_attempt, "u-5", 1, "later")),
            ("u-6", serde_json::to_string(&unsigned).unwrap()),
            ("u-7", "not json".into()),
        ]);
        let mut seen = Seen::default();
        assert!(pending_messages(&a, &check, &mut seen).is_empty());
        // Without the operator's key nothing verifies.
        let keyless = VerdictCheck {
            public_key: String::new(),
            ..check.clone()
        };
        let a = annotations(&[("u-1", good)]);
        assert!(pending_messages(&a, &keyless, &mut Seen::default()).is_empty());
        assert_eq!(
            texts(&pending_messages(&a, &check, &mut seen)),
            ["also update the changelog"]
        );
    }

    #[tokio::test]
    async fn the_watcher_sends_stdin_lines() {
        let (signer, check) = signed();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("annotations");
        let (tx, mut rx) = mpsc::channel(4);
        let line: fn(&str) -> String = |t| format!("<{t}>");
        let task = tokio::spawn(watch_messages(file.clone(), check.clone(), line, tx));
        let value = message(&signer, &check, "u-1", 1, "hi\nthere");
        std::fs::write(&file, format!("{MESSAGE_PREFIX}u-1={value:?}\n")).unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            got,
            InputLine {
                id: "u-1".into(),
                line: "<hi\nthere>".into()
            }
        );
        drop(rx);
        task.await.unwrap();
    }
}
