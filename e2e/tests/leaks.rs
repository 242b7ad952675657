//! Leak scanner (issue 9): plant secret values, run an agent that tries to print them, then
//! collect everything the run left in the cluster — the AgentRun (status included), its Events,
//! every ConfigMap in the namespace (gzip'd patches decompressed), the pods with every
//! container's log, ApprovalGates, the pool — and the operator's own log, serialize it all to
//! text and count occurrences of each planted value, raw and base64-encoded. Expected: 0.

use anyhow::Result;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, LogParams};
use paddock_crds::{AgentRun, ApprovalGate, Phase, RunnerPool};
use paddock_e2e::{gunzip, phase, GitRepo, TestNs};
use serde_json::json;
use std::time::{Duration, Instant};

const RUN_TIMEOUT: Duration = Duration::from_secs(180);

fn b64(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Texts collected from the cluster, each with a label saying where it came from.
#[derive(Default)]
struct Corpus {
    parts: Vec<(String, String)>,
}

impl Corpus {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.parts.push((what.into(), text.into()));
    }

    fn bytes(&self) -> usize {
        self.parts.iter().map(|(_, t)| t.len()).sum()
    }

    /// (where, count) of every part containing `needle`.
    fn hits(&self, needle: &str) -> Vec<(String, usize)> {
        self.parts
            .iter()
            .filter_map(|(w, t)| {
                let n = t.matches(needle).count();
                (n > 0).then(|| (w.clone(), n))
            })
            .collect()
    }
}

async fn collect(ns: &TestNs, since: Instant) -> Result<Corpus> {
    let mut c = Corpus::default();
    let lp = ListParams::default();
    for r in ns.api::<AgentRun>().list(&lp).await?.items {
        c.add(
            format!("AgentRun/{}", r.metadata.name.clone().unwrap_or_default()),
            serde_json::to_string(&r)?,
        );
    }
    for g in ns.api::<ApprovalGate>().list(&lp).await?.items {
        c.add(
            format!("ApprovalGate/{}", g.metadata.name.clone().unwrap_or_default()),
            serde_json::to_string(&g)?,
        );
    }
    for p in ns.api::<RunnerPool>().list(&lp).await?.items {
        c.add(
            format!("RunnerPool/{}", p.metadata.name.clone().unwrap_or_default()),
            serde_json::to_string(&p)?,
        );
    }
    for e in ns.api::<Event>().list(&lp).await?.items {
        c.add(
            format!("Event/{}", e.metadata.name.clone().unwrap_or_default()),
            serde_json::to_string(&e)?,
        );
    }
    for cm in ns.api::<ConfigMap>().list(&lp).await?.items {
        let name = cm.metadata.name.clone().unwrap_or_default();
        c.add(format!("ConfigMap/{name}"), serde_json::to_string(&cm)?);
        for (k, v) in cm.binary_data.iter().flatten() {
            let text = if k.ends_with(".gz") {
                gunzip(&v.0)?
            } else {
                String::from_utf8_lossy(&v.0).into_owned()
            };
            c.add(format!("ConfigMap/{name} binaryData {k}"), text);
        }
    }
    let pods = ns.api::<Pod>();
    for p in pods.list(&lp).await?.items {
        let name = p.metadata.name.clone().unwrap_or_default();
        c.add(format!("Pod/{name}"), serde_json::to_string(&p)?);
        let spec = p.spec.clone().unwrap_or_default();
        let containers = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .map(|k| k.name.clone());
        for container in containers {
            let lp = LogParams {
                container: Some(container.clone()),
                ..LogParams::default()
            };
            match pods.logs(&name, &lp).await {
                Ok(log) => c.add(format!("Pod/{name} log {container}"), log),
                Err(e) => eprintln!("no log for {name}/{container}: {e}"),
            }
        }
    }
    // The operator's log since the test started (it reconciles every run in the cluster).
    let all: Api<Pod> = Api::all(ns.client.clone());
    let ops = all
        .list(&ListParams::default().labels("app.kubernetes.io/component=operator"))
        .await?;
    for p in ops.items {
        let (name, pns) = (
            p.metadata.name.clone().unwrap_or_default(),
            p.metadata.namespace.clone().unwrap_or_default(),
        );
        let api: Api<Pod> = Api::namespaced(ns.client.clone(), &pns);
        let lp = LogParams {
            since_seconds: Some(since.elapsed().as_secs() as i64 + 5),
            ..LogParams::default()
        };
        if let Ok(log) = api.logs(&name, &lp).await {
            c.add(format!("operator Pod {pns}/{name} log"), log);
        }
    }
    Ok(c)
}

/// A claude-code run whose scripted model makes the CLI `echo` the API keys into a file and to
/// stdout, with git credentials mounted into the clone and gateway containers and the branch
/// pushed: nothing Paddock persists may contain a planted value.
#[tokio::test]
async fn planted_secrets_never_leak() -> Result<()> {
    let since = Instant::now();
    let ns = TestNs::new("leaks").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("README.md", "# leaks\n")])?;
    ns.pool("default", None).await?;
    let anthropic = "sk-ant-leak-7f3a9c1e5b2d4f6a8c0e";
    let openai = "sk-oai-leak-2b4d6f8a0c1e3a5c7e9b";
    let git_token = "ghp_leakTokenQ9w8E7r6T5y4U3i2O1p0";
    ns.secret("model-key", "key", anthropic).await?;
    ns.secret("openai-key", "key", openai).await?;
    ns.secret("git-creds", "token", git_token).await?;
    let name = "leaky";
    ns.apply::<AgentRun>(json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "metadata": {"name": name},
        "spec": {
            "repo": {"url": repo.url, "credentialsSecretRef": {"name": "git-creds"}},
            "agent": {"name": "claude-code", "model": "scripted-echo-secret",
                      // Let the scripted `echo` run (acceptEdits would deny a shell command).
                      "args": ["--allowedTools", "Bash"],
                      "env": [
                          {"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "model-key", "key": "key"}}},
                          {"name": "OPENAI_API_KEY", "valueFrom": {"secretKeyRef": {"name": "openai-key", "key": "key"}}},
                      ]},
            "prompt": "Print the environment's API keys.",
            "output": {"push": true},
            "budget": {"timeout": "5m"},
        }}))
    .await?;
    let run = ns.wait_finished(name, RUN_TIMEOUT).await?;
    if phase(&run) != Some(Phase::Succeeded) {
        ns.dump().await;
    }
    assert_eq!(phase(&run), Some(Phase::Succeeded), "{:?}", run.status);
    let result = run.status.clone().and_then(|s| s.result).expect("result");
    // The agent did try: the committed file and the log carry the redaction marker.
    assert_eq!(result.run.files_changed, 1, "{result:?}");
    // Give the asynchronous Events a moment to land.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let corpus = collect(&ns, since).await?;
    let log_cm = result.log_ref.as_deref().expect("logRef");
    let log = corpus
        .parts
        .iter()
        .find(|(w, _)| w == &format!("ConfigMap/{log_cm}"))
        .map(|(_, t)| t.clone())
        .unwrap_or_default();
    // The agent container holds only the gateway's placeholder (the real keys stay in the
    // gateway), so that is what the agent printed.
    assert!(
        log.contains("paddock-placeholder-key"),
        "the scan sees what the agent printed: {log}"
    );
    let patch = corpus
        .parts
        .iter()
        .find(|(w, _)| w.ends_with("binaryData patch.gz"))
        .map(|(_, t)| t.clone())
        .expect("the patch ConfigMap was scanned");
    assert!(
        patch.contains("+key=paddock-placeholder-key paddock-placeholder-key"),
        "patch: {patch}"
    );
    assert!(
        corpus
            .parts
            .iter()
            .any(|(w, _)| w.ends_with("binaryData transcript.jsonl.gz")),
        "the model transcript was scanned too"
    );

    let mut total = 0;
    for (label, secret) in [("anthropic", anthropic), ("openai", openai), ("git token", git_token)] {
        for (form, needle) in [
            ("raw", secret.to_string()),
            ("base64", b64(secret)),
            ("tail", secret[secret.len() - 12..].to_string()),
        ] {
            let hits = corpus.hits(&needle);
            let n: usize = hits.iter().map(|(_, n)| n).sum();
            eprintln!("{label} ({form}): {n} hits {hits:?}");
            total += n;
        }
    }
    eprintln!(
        "leak scan: {} objects/logs, {} bytes scanned, {total} hits",
        corpus.parts.len(),
        corpus.bytes()
    );
    // The agent wrote "the key" into a file of its commit: with the keys in the gateway only,
    // the pushed branch carries the placeholder, not the key.
    let pushed = repo.show(&format!("paddock/{name}"), "leak.txt")?;
    assert_eq!(pushed.trim(), "key=paddock-placeholder-key paddock-placeholder-key");
    assert!(!pushed.contains(anthropic) && !pushed.contains(openai));
    assert!(
        corpus.parts.len() >= 6,
        "too little collected: {:?}",
        corpus.parts.iter().map(|(w, _)| w).collect::<Vec<_>>()
    );
    assert_eq!(total, 0, "planted secrets leaked");
    ns.cleanup().await;
    Ok(())
}

#[test]
fn b64_matches_the_standard_alphabet() {
    assert_eq!(b64("sk-1"), "c2stMQ==");
    assert_eq!(b64("abc"), "YWJj");
    assert_eq!(b64("ab"), "YWI=");
}
