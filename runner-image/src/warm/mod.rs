//! Warm pods: a pool's pre-started runner pods wait, idle, until the operator claims one for a
//! run. The claim is the pod annotation [`paddock_crds::ANNOTATION_CLAIM`] ([`Claim`]: the
//! variables a cold pod's trusted containers and agent container would have had), committed by
//! the operator's PATCH. It reaches the pod two ways, and the first to arrive counts:
//! - the operator pushes it to the `gateway` container right after the PATCH ([`push`], port
//!   [`push::CLAIM_PORT`]): a few milliseconds;
//! - the kubelet projects the annotation into the downward API file `PADDOCK_DECISIONS_FILE`
//!   (default `/etc/paddock/pod/annotations`) on its next sync of the pod: 150 ms on an idle
//!   node, more when it is busy. This is the record, and the way a claim whose push was lost
//!   (the operator stopped between the PATCH and the push) still arrives.
//!
//! The gateway takes only a claim signed by the operator for this pod, whichever way it came,
//! and hands it to the agent container in the workspace's control directory ([`claim_file`]);
//! the agent container also reads the annotation file, whichever comes first.
//!
//! In a warm pod (`PADDOCK_WARM=true`) the containers differ from a cold pod's: there is no
//! `clone` init container. The `gateway` sidecar waits for the claim, clones (as `clone` would)
//! and writes [`clone_done_file`] (the clone's exit code; on failure its result line is in
//! [`clone_result_file`]), then serves pushes. The `agent` container waits for the claim and for
//! that file, then runs as in a cold pod. Nothing is restarted, so a claimed run starts with the
//! image pulled, the sandbox up and both processes running.

use paddock_crds::runner::vars;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

use crate::env::Env;
use crate::workspace::Workspace;

pub mod push;

/// How often an idle container reads the claim files (a stat and a small read each).
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How often the claimed agent container looks for the gateway's clone outcome (only between
/// the claim and the clone's end, tens of milliseconds).
pub const CLONE_POLL_INTERVAL: Duration = Duration::from_millis(5);

pub use paddock_crds::runner::{Claim, ClaimError};

/// Whether this container runs in a warm pod (`PADDOCK_WARM=true`).
pub fn is_warm(env: &Env) -> bool {
    env.get(vars::WARM) == Some("true")
}

/// The downward API file with the pod's annotations.
pub fn annotations_file(env: &Env) -> PathBuf {
    PathBuf::from(
        env.get(vars::DECISIONS_FILE)
            .unwrap_or(crate::approval::DEFAULT_DECISIONS_FILE),
    )
}

/// The claim in `file`, if the pod has been claimed (`None` while it is idle or the file is
/// unreadable). With `public_key` (the gateway: it clones and pushes with the pool's
/// credentials) the claim must carry the operator's signature
/// ([`paddock_crds::verdict::ANNOTATION_CLAIM_SIGNATURE`] over
/// [`paddock_crds::verdict::claim_message`] with this pod's UID, read from the file `uid` beside
/// `file`), else [`ClaimError::Unsigned`].
pub fn read_claim(file: &Path, public_key: Option<&str>) -> Option<Result<Claim, ClaimError>> {
    let text = std::fs::read_to_string(file).ok()?;
    let annotations = crate::approval::parse_annotations(&text);
    let value = annotations.get(paddock_crds::ANNOTATION_CLAIM)?;
    if let Some(key) = public_key {
        // The pod's own UID (the downward API file beside the annotations): a claim signed for
        // another pod does not count here.
        let uid = std::fs::read_to_string(file.with_file_name("uid")).unwrap_or_default();
        let message = paddock_crds::verdict::claim_message(value, uid.trim());
        let signed = annotations
            .get(paddock_crds::verdict::ANNOTATION_CLAIM_SIGNATURE)
            .is_some_and(|sig| paddock_crds::verdict::verify(key, &message, sig));
        if !signed {
            return Some(Err(ClaimError::Unsigned));
        }
    }
    Some(Claim::decode(value))
}

/// Waits for the claim in `file` (checked against `public_key` as in [`read_claim`]); `None`
/// when `terminate` turns true first (the idle pod is being deleted).
pub async fn wait_claim(
    file: &Path,
    public_key: Option<&str>,
    terminate: &mut watch::Receiver<bool>,
) -> Option<Result<Claim, ClaimError>> {
    crate::approval::poll_every(POLL_INTERVAL, || read_claim(file, public_key), terminate).await
}

/// The gateway's wait for its claim: the first of the annotation in `file` (as [`wait_claim`]
/// with `public_key`) and a push on `listener` ([`push::accept_claim`], signed for the pod UID
/// in the file `uid` beside `file`). Without a listener (it could not bind) or a UID, only the
/// file counts. `None` when `terminate` turns true first.
pub async fn wait_signed_claim(
    file: &Path,
    public_key: &str,
    listener: Option<tokio::net::TcpListener>,
    terminate: &mut watch::Receiver<bool>,
) -> Option<Result<Claim, ClaimError>> {
    let uid = std::fs::read_to_string(file.with_file_name("uid")).unwrap_or_default();
    let pushed = async {
        match listener {
            Some(l) if !uid.trim().is_empty() => push::accept_claim(l, public_key, uid.trim()).await,
            _ => std::future::pending().await,
        }
    };
    tokio::select! {
        c = wait_claim(file, Some(public_key), terminate) => c,
        value = pushed => {
            eprintln!("paddock-runner gateway: claimed (pushed by the operator)");
            Some(Claim::decode(&value))
        }
    }
}

/// File in which the gateway hands its verified claim ([`Claim::encode`]) to the agent
/// container, which may take it before the kubelet updates its own downward API file.
pub fn claim_file(ws: &Workspace) -> PathBuf {
    ws.control().join("claim")
}

/// Records the gateway's verified `claim` for the agent container ([`claim_file`]).
///
/// # Errors
/// I/O errors creating the control directory or writing the file.
pub fn write_claim(ws: &Workspace, claim: &Claim) -> std::io::Result<()> {
    std::fs::create_dir_all(ws.control())?;
    crate::workspace::write_atomic(&claim_file(ws), claim.encode().as_bytes())
}

/// The agent container's wait for its claim: the first of the annotation in `file` (unsigned:
/// the agent container holds nothing of the pool's) and the gateway's [`claim_file`]. `None`
/// when `terminate` turns true first.
pub async fn wait_agent_claim(
    file: &Path,
    ws: &Workspace,
    terminate: &mut watch::Receiver<bool>,
) -> Option<Result<Claim, ClaimError>> {
    let handed = claim_file(ws);
    crate::approval::poll_every(
        POLL_INTERVAL,
        || {
            read_claim(file, None).or_else(|| {
                std::fs::read_to_string(&handed)
                    .ok()
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| Claim::decode(&v))
            })
        },
        terminate,
    )
    .await
}

/// File the gateway writes when its clone step ended: the exit code (`0` cloned).
pub fn clone_done_file(ws: &Workspace) -> PathBuf {
    ws.control().join("clone-done")
}

/// The failed clone's `result` line (its termination message), for the agent container to
/// report as the run's result.
pub fn clone_result_file(ws: &Workspace) -> PathBuf {
    ws.control().join("clone-result")
}

/// Records the clone's exit `code` for the agent container.
///
/// # Errors
/// I/O errors creating the control directory or writing the file.
pub fn write_clone_done(ws: &Workspace, code: i32) -> std::io::Result<()> {
    std::fs::create_dir_all(ws.control())?;
    crate::workspace::write_atomic(&clone_done_file(ws), code.to_string().as_bytes())
}

/// Waits for the gateway's clone to end: `Some(exit code)`, or `None` when `terminate` turns
/// true first.
pub async fn wait_clone(ws: &Workspace, terminate: &mut watch::Receiver<bool>) -> Option<i32> {
    let file = clone_done_file(ws);
    crate::approval::poll_every(
        CLONE_POLL_INTERVAL,
        || std::fs::read_to_string(&file).ok().and_then(|s| s.trim().parse().ok()),
        terminate,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn annotations(claim_json: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(claim_json);
        format!("other=\"x\"\n{}=\"{b64}\"\n", paddock_crds::ANNOTATION_CLAIM)
    }

    #[test]
    fn claim_is_read_from_the_downward_api_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("annotations");
        assert!(read_claim(&file, None).is_none(), "no file: not claimed");
        std::fs::write(&file, "other=\"x\"\n").unwrap();
        assert!(read_claim(&file, None).is_none(), "no annotation: not claimed");
        std::fs::write(
            &file,
            annotations(r#"{"trusted":{"PADDOCK_REPO_URL":"git://h/r"},"agent":{"PADDOCK_PROMPT":"a \"b\"\nc"}}"#),
        )
        .unwrap();
        let c = read_claim(&file, None).unwrap().unwrap();
        assert_eq!(c.trusted[vars::REPO_URL], "git://h/r");
        assert_eq!(c.agent[vars::PROMPT], "a \"b\"\nc");
        std::fs::write(&file, format!("{}=\"!!\"\n", paddock_crds::ANNOTATION_CLAIM)).unwrap();
        assert!(matches!(read_claim(&file, None), Some(Err(ClaimError::Base64(_)))));
        std::fs::write(&file, annotations("[1]")).unwrap();
        assert!(matches!(read_claim(&file, None), Some(Err(ClaimError::Json(_)))));
    }

    #[test]
    fn the_gateway_takes_only_the_operators_signed_claim() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("annotations");
        let signer = paddock_crds::verdict::Signer::generate().unwrap();
        let key = signer.public_key_b64();
        let text = annotations(r#"{"trusted":{"PADDOCK_REPO_URL":"git://h/r"}}"#);
        // What a namespace `edit` user can write: the claim without (or with a bad) signature.
        std::fs::write(&file, &text).unwrap();
        assert_eq!(read_claim(&file, Some(&key)), Some(Err(ClaimError::Unsigned)));
        let value = crate::approval::parse_annotations(&text)[paddock_crds::ANNOTATION_CLAIM].clone();
        std::fs::write(dir.path().join("uid"), "pod-uid-1\n").unwrap();
        let sig = signer.sign(&paddock_crds::verdict::claim_message(&value, "pod-uid-1"));
        let other = paddock_crds::verdict::Signer::generate()
            .unwrap()
            .sign(&paddock_crds::verdict::claim_message(&value, "pod-uid-1"));
        // The operator's signature for another pod (a claim copied onto this one).
        let elsewhere = signer.sign(&paddock_crds::verdict::claim_message(&value, "pod-uid-2"));
        let sig_key = paddock_crds::verdict::ANNOTATION_CLAIM_SIGNATURE;
        std::fs::write(&file, format!("{text}{sig_key}=\"{elsewhere}\"\n")).unwrap();
        assert_eq!(read_claim(&file, Some(&key)), Some(Err(ClaimError::Unsigned)));
        std::fs::write(&file, format!("{text}{sig_key}=\"{other}\"\n")).unwrap();
        assert_eq!(read_claim(&file, Some(&key)), Some(Err(ClaimError::Unsigned)));
        std::fs::write(&file, format!("{text}{sig_key}=\"{sig}\"\n")).unwrap();
        assert_eq!(
            read_claim(&file, Some(&key)).unwrap().unwrap().trusted[vars::REPO_URL],
            "git://h/r"
        );
    }

    #[tokio::test]
    async fn waits_end_on_the_file_or_on_termination() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::new(dir.path());
        let (tx, mut rx) = watch::channel(false);
        let waiter = tokio::spawn({
            let ws = ws.clone();
            async move { wait_clone(&ws, &mut rx).await }
        });
        tokio::time::sleep(Duration::from_millis(60)).await;
        write_clone_done(&ws, 3).unwrap();
        assert_eq!(waiter.await.unwrap(), Some(3));
        let _ = tx.send(true);
        let (tx2, mut rx2) = watch::channel(false);
        let file = dir.path().join("none");
        let waiter = tokio::spawn(async move { wait_claim(&file, None, &mut rx2).await });
        let _ = tx2.send(true);
        assert!(waiter.await.unwrap().is_none());
    }
}
