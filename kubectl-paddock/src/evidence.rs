//! `kubectl paddock export | verify | history`, and the archive fallback of `logs`, `diff` and
//! `transcript` once a run is deleted (issue 21, docs/evidence.md).
//!
//! Where things are: the operator publishes its evidence public key and the archive's
//! location in ConfigMap `paddock-evidence` of its namespace (`--paddock-namespace`, default
//! `paddock-system`; every authenticated user may read it). The variables
//! `PADDOCK_ARCHIVE_URL`, `PADDOCK_ARCHIVE_ENDPOINT`, `PADDOCK_ARCHIVE_REGION` override what
//! it says. The archive is read with your own S3 credentials (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`): the bucket's policy decides who may read evidence.

use crate::fetch::{api_message, FetchError};
use crate::PluginError;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::Client;
use paddock_crds::evidence as names;
use paddock_crds::AgentRun;
use paddock_evidence::bundle::{Bundle, PAYLOAD_TYPE};
use paddock_evidence::{dsse, Archive, ArchiveConfig};

/// Errors of the evidence commands.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// No archive is configured anywhere the plugin looks.
    #[error("no archive configured: the operator publishes none in ConfigMap {namespace}/paddock-evidence and PADDOCK_ARCHIVE_URL is unset")]
    NoArchive {
        /// The operator's namespace searched.
        namespace: String,
    },
    /// No trusted public key: neither `--key` nor the published one.
    #[error("no trusted public key: pass --key BASE64 (the operator's evidence public key) or let the plugin read ConfigMap {namespace}/paddock-evidence: {why}")]
    NoKey {
        /// The operator's namespace searched.
        namespace: String,
        /// Why the ConfigMap gave none.
        why: String,
    },
    /// The archive failed.
    #[error(transparent)]
    Archive(#[from] paddock_evidence::ArchiveError),
    /// The bundle does not verify (not a `#[source]`: the message already says why).
    #[error("verification FAILED: {0}")]
    Verify(paddock_evidence::bundle::BundleError),
    /// Reading from the cluster failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

impl From<paddock_evidence::bundle::BundleError> for EvidenceError {
    fn from(e: paddock_evidence::bundle::BundleError) -> Self {
        EvidenceError::Verify(e)
    }
}

/// What the plugin knows about evidence: the trusted key and the archive.
#[derive(Clone, Debug, Default)]
pub struct EvidenceConfig {
    /// The operator's namespace (where `paddock-evidence` is).
    pub namespace: String,
    /// Trusted public key, base64 of its 32 raw bytes.
    pub public_key: Option<String>,
    /// Why there is no key, when there is none.
    pub no_key_why: String,
    /// The archive, when one is configured.
    pub archive: Option<ArchiveConfig>,
}

impl EvidenceConfig {
    /// Reads ConfigMap `paddock-evidence` of `namespace` (a missing or unreadable one is not an
    /// error: it is reported when a command needs what it would have said), then applies the
    /// `PADDOCK_ARCHIVE_*` overrides and `key` (`--key`).
    pub async fn load(client: &Client, namespace: &str, key: Option<String>) -> Self {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let (data, why) = match api.get_opt(names::PUBLIC_CONFIGMAP).await {
            Ok(Some(cm)) => (cm.data.unwrap_or_default(), String::new()),
            Ok(None) => (Default::default(), "it does not exist".to_string()),
            Err(e) => (Default::default(), api_message(&e)),
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let url = env("PADDOCK_ARCHIVE_URL").or_else(|| data.get(names::CM_ARCHIVE_URL).cloned());
        let endpoint = env("PADDOCK_ARCHIVE_ENDPOINT").or_else(|| data.get(names::CM_ARCHIVE_ENDPOINT).cloned());
        let region = env("PADDOCK_ARCHIVE_REGION").or_else(|| data.get(names::CM_ARCHIVE_REGION).cloned());
        let public_key = key.or_else(|| data.get(names::CM_PUBLIC_KEY).cloned());
        EvidenceConfig {
            namespace: namespace.into(),
            no_key_why: if public_key.is_none() { why } else { String::new() },
            public_key,
            archive: url.map(|url| ArchiveConfig {
                url,
                // A plain-HTTP endpoint is the operator's own choice (test stores); follow it.
                allow_http: endpoint.as_deref().is_some_and(|e| e.starts_with("http://")),
                endpoint,
                region,
            }),
        }
    }

    /// The archive client.
    ///
    /// # Errors
    /// [`EvidenceError::NoArchive`], or a bad configuration.
    pub fn archive(&self) -> Result<Archive, EvidenceError> {
        let cfg = self.archive.as_ref().ok_or_else(|| EvidenceError::NoArchive {
            namespace: self.namespace.clone(),
        })?;
        Ok(Archive::new(cfg)?)
    }

    /// The trusted key.
    ///
    /// # Errors
    /// [`EvidenceError::NoKey`].
    pub fn key(&self) -> Result<&str, EvidenceError> {
        self.public_key.as_deref().ok_or_else(|| EvidenceError::NoKey {
            namespace: self.namespace.clone(),
            why: self.no_key_why.clone(),
        })
    }
}

/// Verifies `bytes` against `public_key` and describes the result for a person (the run, its
/// phase, who assembled it and when). Pure.
///
/// # Errors
/// [`EvidenceError::Verify`], saying what failed.
pub fn verify_report(bytes: &[u8], public_key: &str) -> Result<String, EvidenceError> {
    let b = Bundle::verified(bytes, public_key)?;
    let succeeded = paddock_crds::condition::find_condition(&b.status.conditions, "Succeeded");
    let gates: Vec<String> = b
        .gates
        .iter()
        .map(|g| {
            let decided: Vec<String> = g
                .spec
                .decisions
                .iter()
                .map(|d| format!("{:?} by {}", d.decision, d.approver))
                .collect();
            format!("{} {:?} [{}]", g.name, g.spec.stage, decided.join(", "))
        })
        .collect();
    Ok(format!(
        "Verified OK: signed by {key} (the operator's evidence key)\n\
         run:        {ns}/{name} (uid {uid})\n\
         phase:      {phase} ({reason})\n\
         policy:     {policy}\n\
         gates:      {gates}\n\
         usage:      {usage}\n\
         contents:   event log {log}, {attempts} earlier attempt log(s), transcript {transcript}, patch {patch}, {events} Kubernetes Event(s)\n\
         assembled:  {at} by {by}\n",
        key = dsse::key_id(public_key),
        ns = b.run.namespace,
        name = b.run.name,
        uid = b.run.uid,
        phase = b.status.phase.map(|p| format!("{p:?}")).unwrap_or_else(|| "-".into()),
        reason = succeeded.map(|c| c.reason.as_str()).unwrap_or("-"),
        policy = b
            .status
            .policy
            .as_ref()
            .map(|p| format!(
                "pool {} generation {} (uid {}), pod template {}",
                p.runner_pool.name, p.runner_pool.generation, p.runner_pool.uid, p.pod_template_hash
            ))
            .unwrap_or_else(|| "none recorded (the run never started)".into()),
        gates = if gates.is_empty() { "none".into() } else { gates.join("; ") },
        usage = b
            .status
            .usage
            .as_ref()
            .map(|u| format!(
                "{} input / {} output tokens, {} USD",
                u.input_tokens,
                u.output_tokens,
                u.cost_usd.map(|c| format!("{c:.6}")).unwrap_or_else(|| "?".into())
            ))
            .unwrap_or_else(|| "-".into()),
        log = present(&b.event_log),
        attempts = b.attempt_logs.len(),
        transcript = present(&b.transcript),
        patch = present(&b.patch),
        events = b.kube_events.len(),
        at = b.assembled_at.0,
        by = b.assembled_by,
    ))
}

fn present(s: &Option<String>) -> String {
    match s {
        Some(t) => format!("{} bytes", t.len()),
        None => "absent".into(),
    }
}

/// The bundle of run `ns/name` for `export`: the operator's signed one from the archive when
/// the run was archived (or no longer exists); else assembled now from the cluster with your
/// credentials, unsigned. Returns the envelope's bytes and a note for stderr.
///
/// # Errors
/// The run is neither in the cluster nor in the archive, or a read failed.
pub async fn export(
    client: &Client,
    cfg: &EvidenceConfig,
    ns: &str,
    name: &str,
) -> Result<(Vec<u8>, String), EvidenceError> {
    let run = match crate::fetch::fetch_run(client, ns, name).await {
        Ok(r) => r,
        Err(FetchError::Plugin(PluginError::RunNotFound { .. })) => {
            let (found, bytes) = cfg.archive()?.latest(ns, name).await?;
            return Ok((
                bytes,
                format!("from the archive: {} (the run no longer exists)", found.url),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(st) = run.status.as_ref().and_then(|s| s.archive.as_ref()) {
        match cfg.archive() {
            Ok(a) => {
                let uid = run.metadata.uid.clone().unwrap_or_default();
                let bytes = a.get(ns, name, &uid).await?;
                // The object must be the one the operator archived (its digest in the run's
                // status, which only the operator writes).
                let digest = dsse::sha256_digest(&bytes);
                if digest != st.digest {
                    return Err(EvidenceError::Verify(paddock_evidence::bundle::BundleError::Schema(format!(
                        "the archived object {} has digest {digest}, not the {} the operator recorded in status.archive",
                        st.url, st.digest
                    ))));
                }
                return Ok((bytes, format!("signed, from the archive: {}", st.url)));
            }
            Err(e) => {
                return Err(e);
            }
        }
    }
    Ok((assemble_unsigned(client, &run).await?, "UNSIGNED: assembled now from the cluster with your credentials (the operator signs and archives a run's bundle when it ends, with an archive configured)".into()))
}

/// Assembles `run`'s bundle from the cluster, unsigned.
async fn assemble_unsigned(client: &Client, run: &AgentRun) -> Result<Vec<u8>, EvidenceError> {
    let b = paddock_evidence::gather::gather(client, run, concat!("kubectl-paddock/", env!("CARGO_PKG_VERSION")))
        .await
        .map_err(|source| FetchError::Api {
            what: "reading the run's evidence".into(),
            source,
        })?;
    Ok(serde_json::to_vec(&dsse::unsigned(PAYLOAD_TYPE, &b.to_json())).unwrap_or_default())
}

/// The verified archived bundle of a deleted run `ns/name` (what `logs`, `diff` and
/// `transcript` fall back to).
///
/// # Errors
/// No archive, no bundle, or one that does not verify against the trusted key.
pub async fn archived_bundle(cfg: &EvidenceConfig, ns: &str, name: &str) -> Result<Bundle, EvidenceError> {
    let (found, bytes) = cfg.archive()?.latest(ns, name).await?;
    let b = Bundle::verified(&bytes, cfg.key()?)?;
    // A validly signed bundle of another run, copied under this run's key, is refused.
    if (b.run.namespace.as_str(), b.run.name.as_str(), b.run.uid.as_str()) != (ns, name, found.uid.as_str()) {
        return Err(EvidenceError::Verify(paddock_evidence::bundle::BundleError::Schema(
            format!(
                "the archived object {} holds the bundle of {}/{} (uid {}), not of {ns}/{name}",
                found.url, b.run.namespace, b.run.name, b.run.uid
            ),
        )));
    }
    Ok(b)
}

/// `kubectl paddock history`: the archived runs of `ns` (all namespaces when `None`), oldest
/// first: NAMESPACE (with -A), NAME, UID, ARCHIVED, SIZE.
///
/// # Errors
/// No archive, or the store failed.
pub async fn history(cfg: &EvidenceConfig, ns: Option<&str>) -> Result<String, EvidenceError> {
    let list = cfg.archive()?.list(ns).await?;
    if list.is_empty() {
        return Ok(match ns {
            Some(ns) => format!("No archived runs in {ns} namespace.\n"),
            None => "No archived runs.\n".into(),
        });
    }
    let mut headers = vec!["NAME", "UID", "ARCHIVED", "SIZE"];
    if ns.is_none() {
        headers.insert(0, "NAMESPACE");
    }
    let mut t = crate::Table::new(&headers);
    for b in list {
        let mut row = vec![b.name, b.uid, b.archived_at, format!("{}", b.size)];
        if ns.is_none() {
            row.insert(0, b.namespace);
        }
        t.rows.push(row);
    }
    Ok(t.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verified_bundle_is_described_and_a_changed_one_is_refused() {
        let signer = paddock_crds::verdict::Signer::generate().unwrap();
        let bundle: Bundle = serde_json::from_value(serde_json::json!({
            "apiVersion": "paddock.dev/bundle/v1", "kind": "AgentRunBundle",
            "run": {"namespace": "team-a", "name": "fix-1", "uid": "u-1"},
            "spec": {"repo": {"url": "git://h/r"}, "agent": {"name": "claude-code"}, "prompt": "p"},
            "status": {"phase": "Succeeded", "conditions": [{"type": "Succeeded", "status": "True",
                "reason": "Succeeded", "message": "", "lastTransitionTime": "2026-12-07T00:00:00Z"}]},
            "gates": [], "kubeEvents": [], "patch": "diff --git a/x b/x\n",
            "assembledAt": "2026-12-07T00:00:00Z", "assembledBy": "paddock-operator/test",
        }))
        .unwrap();
        let env = dsse::sign(&signer, PAYLOAD_TYPE, &bundle.to_json());
        let bytes = serde_json::to_vec(&env).unwrap();
        let report = verify_report(&bytes, &signer.public_key_b64()).unwrap();
        assert!(report.starts_with("Verified OK"), "{report}");
        assert!(report.contains("team-a/fix-1 (uid u-1)"), "{report}");
        assert!(report.contains("Succeeded (Succeeded)"), "{report}");
        assert!(report.contains("patch 19 bytes"), "{report}");
        // One byte of the payload changed.
        let mut t = bytes.clone();
        let at = t.len() / 2;
        t[at] = if t[at] == b'A' { b'B' } else { b'A' };
        let err = verify_report(&t, &signer.public_key_b64()).unwrap_err().to_string();
        assert!(err.starts_with("verification FAILED"), "{err}");
    }
}
