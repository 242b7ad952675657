//! End-to-end: evidence that outlives the run (issue 21, docs/evidence.md). Needs the object
//! store `e2e/run-e2e.sh` starts (s3s-fs, e2e/object-store.sh) and Paddock installed with the
//! archive pointing at it (`PADDOCK_E2E_ARCHIVE_URL`, `PADDOCK_E2E_OBJECT_STORE_URL`,
//! `PADDOCK_E2E_S3_ACCESS_KEY`, `PADDOCK_E2E_S3_SECRET_KEY`), and Prometheus
//! (`PADDOCK_E2E_PROMETHEUS_URL`) for the backlog metric.
//!
//! The tests of this file take one lock: one of them stops the object store.

use anyhow::{anyhow, bail, Context as _, Result};
use kube::api::{Patch, PatchParams};
use paddock_crds::Reason;
use paddock_crds::{AgentRun, Phase, RunnerPool};
use paddock_e2e::{env, phase, GitRepo, TestNs};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const RUN_TIMEOUT: Duration = Duration::from_secs(180);
static STORE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run_manifest(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "metadata": {"name": name}, "spec": spec})
}

/// Runs the plugin (`target/debug/kubectl-paddock`, built by run-e2e.sh) with the archive's
/// credentials in its environment, as an auditor with read access to the bucket would.
fn plugin(args: &[&str]) -> Result<(bool, String, String)> {
    let envs = [
        ("AWS_ACCESS_KEY_ID", env("PADDOCK_E2E_S3_ACCESS_KEY")?),
        ("AWS_SECRET_ACCESS_KEY", env("PADDOCK_E2E_S3_SECRET_KEY")?),
    ];
    let o = paddock_e2e::kubectl_paddock(args, &envs)?;
    Ok((o.ok, o.stdout, o.stderr))
}

fn ok(args: &[&str]) -> Result<String> {
    match plugin(args)? {
        (true, out, _) => Ok(out),
        (false, _, err) => bail!("kubectl paddock {args:?} failed: {err}"),
    }
}

/// GETs `s3://bucket/key` (a `status.archive.url`) from the object store with curl's own SigV4
/// signing: a client independent of the operator's.
fn s3_get(url: &str) -> Result<Vec<u8>> {
    let path = url.strip_prefix("s3://").ok_or_else(|| anyhow!("not s3://: {url}"))?;
    let endpoint = env("PADDOCK_E2E_OBJECT_STORE_URL")?;
    let out = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--max-time",
            "10",
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
        ])
        .arg(format!(
            "{}:{}",
            env("PADDOCK_E2E_S3_ACCESS_KEY")?,
            env("PADDOCK_E2E_S3_SECRET_KEY")?
        ))
        .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
        .arg(format!("{endpoint}/{path}"))
        .output()?;
    if !out.status.success() {
        bail!("GET {url}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

fn sha256(bytes: &[u8]) -> String {
    paddock_evidence::dsse::sha256_digest(bytes)
}

/// `bash e2e/object-store.sh CMD`.
fn object_store(cmd: &str) -> Result<()> {
    let st = Command::new("bash")
        .arg(repo_root().join("e2e/object-store.sh"))
        .arg(cmd)
        .status()?;
    if !st.success() {
        bail!("e2e/object-store.sh {cmd}: {st}");
    }
    Ok(())
}

/// Starts the object store again when dropped (a failed test must not leave it down).
struct RestartStore;
impl Drop for RestartStore {
    fn drop(&mut self) {
        let _ = object_store("start");
    }
}

/// The value of `paddock_archive_backlog` in Prometheus (which scrapes every 2 s).
fn backlog() -> Result<f64> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "--get",
            "--data-urlencode",
            "query=max(paddock_archive_backlog)",
        ])
        .arg(format!("{}/api/v1/query", env("PADDOCK_E2E_PROMETHEUS_URL")?))
        .output()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0))
}

async fn wait_gone(ns: &TestNs, name: &str, timeout: Duration) -> Result<()> {
    let t0 = Instant::now();
    while ns.api::<AgentRun>().get_opt(name).await?.is_some() {
        if t0.elapsed() > timeout {
            bail!("run {name} still exists after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

#[tokio::test]
async fn an_ended_run_is_archived_signed_and_readable_after_its_ttl() -> Result<()> {
    let _store = STORE.lock().await;
    let ns = TestNs::new("evidence").await?;
    let n = ns.name.clone();
    let repo = GitRepo::create(&format!("{n}-r"), &[("README.md", "# demo\n")])?;
    ns.pool("default", None).await?;
    ns.secret("model-key", "key", "sk-e2e-planted-model-key-0123456789")
        .await?;
    ns.apply::<AgentRun>(run_manifest(
        "fix",
        json!({
            "repo": {"url": repo.url},
            "agent": {"name": "claude-code", "model": "scripted-edit-file",
                      "env": [{"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "model-key", "key": "key"}}}]},
            "prompt": "Create hello.txt with a greeting.",
            "approvals": {"beforeStart": {}},
            "budget": {"timeout": "5m", "maxCostUSD": 5.0},
        }),
    ))
    .await?;
    ns.wait_run("fix", RUN_TIMEOUT, "awaiting approval", |r| {
        phase(r) == Some(Phase::AwaitingApproval)
    })
    .await?;
    ok(&["approve", "fix", "-m", "looks right", "-n", &n])?;
    let run = ns.wait_finished("fix", RUN_TIMEOUT).await?;
    assert_eq!(phase(&run), Some(Phase::Succeeded), "{:?}", run.status);
    let uid = run.metadata.uid.clone().unwrap_or_default();
    // The finalizer holds the run until its bundle is archived.
    assert!(
        run.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == paddock_crds::evidence::FINALIZER),
        "{:?}",
        run.metadata.finalizers
    );

    // status.archive appears; the object is in the bucket with that digest (read by curl's own
    // SigV4 client) and verifies against the published key.
    let run = ns
        .wait_run("fix", Duration::from_secs(60), "archived", |r| {
            r.status.as_ref().is_some_and(|s| s.archive.is_some())
        })
        .await?;
    let archived = run.status.clone().unwrap_or_default().archive.unwrap();
    assert_eq!(
        archived.url,
        format!("{}/{n}/fix/{uid}.bundle.json", env("PADDOCK_E2E_ARCHIVE_URL")?)
    );
    let object = s3_get(&archived.url)?;
    assert_eq!(
        sha256(&object),
        archived.digest,
        "the digest in status.archive is the object's"
    );
    let dir = std::env::temp_dir().join(format!("paddock-evidence-{n}"));
    std::fs::create_dir_all(&dir)?;
    let good = dir.join("bundle.json");
    std::fs::write(&good, &object)?;
    let report = ok(&["verify", good.to_str().unwrap()])?;
    assert!(report.starts_with("Verified OK"), "{report}");
    assert!(report.contains(&format!("{n}/fix (uid {uid})")), "{report}");
    assert!(report.contains("Succeeded (Succeeded)"), "{report}");

    // What the bundle holds: the gate and its decision, the transcript, the patch, the
    // policy snapshot, the Kubernetes Events.
    let b = paddock_evidence::Bundle::unverified(&object)?;
    let gate = b
        .gates
        .iter()
        .find(|g| g.name == "fix-before-start")
        .context("the gate")?;
    assert_eq!(gate.spec.decisions.len(), 1);
    assert_eq!(gate.spec.decisions[0].comment.as_deref(), Some("looks right"));
    assert!(
        b.patch.as_deref().is_some_and(|p| p.contains("+++ b/hello.txt")),
        "{:?}",
        b.patch
    );
    assert!(
        b.transcript.as_deref().is_some_and(|t| !t.is_empty()),
        "transcript kept"
    );
    assert!(
        !String::from_utf8_lossy(&object).contains("sk-e2e-planted-model-key"),
        "the model key is not in the bundle"
    );
    assert!(b.event_log.as_deref().is_some_and(|l| l.contains(r#""type":"result""#)));
    let policy = b.status.policy.as_ref().context("status.policy")?;
    assert_eq!(policy.runner_pool.name, "default");
    assert!(policy.pod_template_hash.starts_with("sha256:"));
    assert_eq!(policy.budget.as_ref().and_then(|b| b.max_cost_usd), Some(5.0));
    let reasons: Vec<&str> = b.kube_events.iter().map(|e| e.reason.as_str()).collect();
    for want in [Reason::PodCreated.as_str(), Reason::Succeeded.as_str()] {
        assert!(reasons.contains(&want), "{want} in the bundle's Events {reasons:?}");
    }

    // A tampered copy: one byte of the payload changed, then one of the signature.
    for (what, at) in [("payload", object.len() / 2), ("signature", object.len() - 20)] {
        let mut t = object.clone();
        t[at] = if t[at] == b'A' { b'B' } else { b'A' };
        let bad = dir.join(format!("tampered-{what}.json"));
        std::fs::write(&bad, &t)?;
        let (passed, _, err) = plugin(&["verify", bad.to_str().unwrap()])?;
        assert!(!passed, "a changed {what} byte must fail verify");
        assert!(err.contains("verification FAILED"), "{err}");
    }

    // `history` lists it; `export` writes the same signed bytes.
    let hist = ok(&["history", "-n", &n])?;
    assert!(
        hist.lines().any(|l| l.starts_with("fix ") && l.contains(&uid)),
        "{hist}"
    );
    let exported = dir.join("exported.json");
    ok(&["export", "fix", "-n", &n, "-o", exported.to_str().unwrap()])?;
    assert_eq!(std::fs::read(&exported)?, object);

    // The TTL (changed after creation, as a Job's may be) deletes the run; the evidence stays.
    ns.api::<AgentRun>()
        .patch(
            "fix",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ttlSecondsAfterFinished": 0}})),
        )
        .await?;
    wait_gone(&ns, "fix", Duration::from_secs(60)).await?;
    let after = dir.join("after-ttl.json");
    let (okay, _, note) = plugin(&["export", "fix", "-n", &n, "-o", after.to_str().unwrap()])?;
    assert!(okay && note.contains("from the archive"), "{note}");
    assert_eq!(std::fs::read(&after)?, object);
    let logs = ok(&["logs", "fix", "-n", &n])?;
    assert!(logs.contains("result Succeeded"), "{logs}");
    let diff = ok(&["diff", "fix", "-n", &n])?;
    assert!(diff.contains("+++ b/hello.txt"), "{diff}");
    let transcript = ok(&["transcript", "fix", "-n", &n])?;
    assert!(!transcript.trim().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn runs_end_on_time_while_the_store_is_down_and_their_ttl_waits_for_the_upload() -> Result<()> {
    let _store = STORE.lock().await;
    let ns = TestNs::new("archive-down").await?;
    let n = ns.name.clone();
    let repo = GitRepo::create(&format!("{n}-r"), &[("a.txt", "a\n")])?;
    ns.pool("default", None).await?;
    let base = backlog()?;
    object_store("stop")?;
    let restart = RestartStore;
    let names = ["down-1", "down-2"];
    for name in names {
        ns.apply::<AgentRun>(run_manifest(
            name,
            json!({"repo": {"url": repo.url}, "agent": {"name": "shell"},
                   "prompt": format!("echo {name} > out.txt"), "ttlSecondsAfterFinished": 0}),
        ))
        .await?;
    }
    // The runs end as they would with the store up.
    for name in names {
        let r = ns.wait_finished(name, RUN_TIMEOUT).await?;
        assert_eq!(phase(&r), Some(Phase::Succeeded), "{:?}", r.status);
    }
    // The backlog metric rises; the TTL (0) does not delete them.
    let t0 = Instant::now();
    while backlog()? < base + 2.0 {
        if t0.elapsed() > Duration::from_secs(60) {
            bail!(
                "paddock_archive_backlog did not rise to {} (is {})",
                base + 2.0,
                backlog()?
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for name in names {
        let r = ns.api::<AgentRun>().get(name).await?;
        assert!(
            r.status.as_ref().is_some_and(|s| s.archive.is_none()),
            "{name} not archived yet"
        );
    }
    let events = ns.events_for("down-1").await?;
    assert!(events.iter().any(|(r, _)| r == "ArchiveFailed"), "{events:?}");

    // The store comes back: both bundles are uploaded, then the TTL deletes the runs.
    drop(restart);
    // Each is archived, then deleted by its TTL (0): gone within the backoff's reach.
    for name in names {
        wait_gone(&ns, name, Duration::from_secs(180)).await?;
    }
    let hist = ok(&["history", "-n", &n])?;
    for name in names {
        assert!(
            hist.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} archived:\n{hist}"
        );
    }
    let t0 = Instant::now();
    while backlog()? > base {
        if t0.elapsed() > Duration::from_secs(60) {
            bail!(
                "paddock_archive_backlog did not fall back to {base} (is {})",
                backlog()?
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn a_pool_edited_after_a_run_started_leaves_its_policy_snapshot_as_it_was() -> Result<()> {
    let _store = STORE.lock().await;
    let ns = TestNs::new("policy").await?;
    let n = ns.name.clone();
    let repo = GitRepo::create(&format!("{n}-r"), &[("a.txt", "a\n")])?;
    let pool = ns
        .pool_with("default", json!({"network": {"egress": [{"host": "example.com"}]}}))
        .await?;
    let generation = pool.metadata.generation.unwrap_or_default();
    // Attempt 1 is deleted while running (PodDeleted, retried): attempt 2 starts after the
    // pool was edited, and is built from the pool as the run was admitted.
    ns.apply::<AgentRun>(run_manifest(
        "steady",
        json!({"repo": {"url": repo.url}, "agent": {"name": "shell"},
               "prompt": "echo steady > seen.txt; sleep 8",
               "retry": {"limit": 1, "backoff": "1s"}}),
    ))
    .await?;
    let r = ns
        .wait_run("steady", RUN_TIMEOUT, "running", |r| {
            paddock_e2e::condition(r, "Running").is_some_and(|c| c.1 == Reason::AgentRunning)
        })
        .await?;
    let before = r
        .status
        .clone()
        .unwrap_or_default()
        .policy
        .context("status.policy at start")?;
    assert_eq!(before.runner_pool.generation, generation);
    assert_eq!(
        before.egress.as_ref().map(|e| e[0].host.clone()),
        Some("example.com".into())
    );

    // Edit the pool: another egress list and template env.
    let edited = ns
        .pool_with(
            "default",
            json!({"network": {"egress": [{"host": "other.example.org"}]},
                   "ttlSecondsAfterFinished": 3600}),
        )
        .await?;
    assert!(edited.metadata.generation.unwrap_or_default() > generation);
    let pod = r.status.clone().unwrap_or_default().pod_name.context("pod")?;
    ns.api::<k8s_openapi::api::core::v1::Pod>()
        .delete(&pod, &Default::default())
        .await?;
    let r = ns.wait_finished("steady", Duration::from_secs(240)).await?;
    let st = r.status.clone().unwrap_or_default();
    assert_eq!(st.attempts.len(), 1, "one retried attempt: {:?}", st.attempts);
    let after = st.policy.context("status.policy at the end")?;
    assert_eq!(after, before, "the snapshot is never rewritten");
    assert_eq!(
        after.pool_spec.ttl_seconds_after_finished, None,
        "the edit is not in it"
    );
    let live: RunnerPool = ns.api::<RunnerPool>().get("default").await?;
    assert_eq!(
        live.spec.network.as_ref().map(|n| n.egress[0].host.clone()),
        Some("other.example.org".into())
    );
    // Attempt 2's pod was built from the admitted spec: its gateway allows example.com, not
    // the edited pool's other.example.org.
    let pod2 = ns.api::<k8s_openapi::api::core::v1::Pod>().get("steady-2").await?;
    let allow: String = pod2
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten().chain(s.containers.iter()))
        .flat_map(|c| c.env.iter().flatten())
        .filter(|e| e.name == "PADDOCK_EGRESS_ALLOW")
        .filter_map(|e| e.value.clone())
        .collect();
    assert!(
        allow.contains("example.com") && !allow.contains("other.example.org"),
        "attempt 2's egress list: {allow:?}"
    );
    // The run keeps no TTL from the edited pool (3600 s): it has none; the bundle shows the
    // snapshot.
    let run = ns
        .wait_run("steady", Duration::from_secs(60), "archived", |r| {
            r.status.as_ref().is_some_and(|s| s.archive.is_some())
        })
        .await?;
    let object = s3_get(&run.status.unwrap().archive.unwrap().url)?;
    let b = paddock_evidence::Bundle::unverified(&object)?;
    assert_eq!(
        b.status.policy.as_ref().map(|p| p.runner_pool.generation),
        Some(generation)
    );
    ns.cleanup().await;
    Ok(())
}
