//! End-to-end: the operator's metrics as a real Prometheus scrapes them (e2e/prometheus.sh,
//! `PADDOCK_E2E_PROMETHEUS_URL`). Runs real AgentRuns and checks that the series move, then that
//! every query of the Grafana dashboard (charts/paddock/dashboards/paddock.json) answers.
//!
//! Counters are compared with values read before the runs, and asserted with `>=`: other tests
//! run on the same operator at the same time.

use anyhow::{anyhow, bail, Context as _, Result};
use kube::api::{Api, Patch, PatchParams};
use paddock_crds::{AgentRun, ApprovalGate, GateState, Phase};
use paddock_e2e::{env, phase, whoami, GitRepo, TestNs};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

const RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a series may take to reach Prometheus (2 s scrapes, plus rate() windows).
const PROM_TIMEOUT: Duration = Duration::from_secs(90);

/// One sample of an instant vector: its labels and value.
type Sample = (BTreeMap<String, String>, f64);

/// Runs an instant query against Prometheus' HTTP API (with curl, the host's HTTP client).
///
/// # Errors
/// Prometheus unreachable, or the query refused (the error names it).
fn query(expr: &str) -> Result<Vec<Sample>> {
    let base = env("PADDOCK_E2E_PROMETHEUS_URL")?;
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--get", "--data-urlencode"])
        .arg(format!("query={expr}"))
        .arg(format!("{base}/api/v1/query"))
        .output()
        .context("running curl")?;
    if !out.status.success() {
        bail!("curl {base}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let body: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("Prometheus answer: {}", String::from_utf8_lossy(&out.stdout)))?;
    if body["status"] != "success" {
        bail!("query {expr:?} refused: {} {}", body["errorType"], body["error"]);
    }
    let data = &body["data"];
    let result = match data["resultType"].as_str() {
        Some("vector") => data["result"].as_array().cloned().unwrap_or_default(),
        // A scalar (e.g. `vector(0)` folded): one unlabelled sample.
        Some("scalar") => vec![json!({"metric": {}, "value": data["result"]})],
        other => bail!("query {expr:?}: unexpected result type {other:?}"),
    };
    result
        .iter()
        .map(|s| {
            let labels = s["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let v = s["value"][1]
                .as_str()
                .ok_or_else(|| anyhow!("sample without value: {s}"))?;
            // NaN (e.g. a quantile of no observations in the window) is a value too.
            Ok((labels, v.parse::<f64>().unwrap_or(f64::NAN)))
        })
        .collect()
}

/// The single value of `expr` (e.g. a `sum(...)`), or 0 when the vector is empty.
fn value(expr: &str) -> Result<f64> {
    Ok(query(expr)?.first().map(|s| s.1).unwrap_or(0.0))
}

/// Polls `check` until it returns `Ok(None)`; after `timeout` fails with the last complaint.
async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<Option<String>>) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let complaint = match check() {
            Ok(None) => return Ok(()),
            Ok(Some(c)) => c,
            Err(e) => format!("{e:#}"),
        };
        if t0.elapsed() > timeout {
            bail!("{what}: not within {timeout:?}: {complaint}");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Waits until Prometheus scrapes the operator (`up == 1`).
async fn operator_scraped() -> Result<()> {
    eventually("Prometheus scraping the operator", PROM_TIMEOUT, || {
        let up = query(r#"up{job="paddock-operator"} == 1"#)?;
        Ok(up.is_empty().then(|| "no healthy paddock-operator target".to_string()))
    })
    .await
}

fn run_manifest(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "metadata": {"name": name}, "spec": spec})
}

/// A `shell` run of `prompt` in the namespace's `default` pool.
async fn shell_run(ns: &TestNs, repo: &GitRepo, name: &str, prompt: &str) -> Result<AgentRun> {
    ns.apply(run_manifest(
        name,
        json!({"repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": prompt}),
    ))
    .await
}

#[tokio::test]
async fn run_metrics_follow_runs() -> Result<()> {
    operator_scraped().await?;
    // Only the operator pod that runs now (the newest, not terminating), once Prometheus
    // scrapes it: right after the e2e setup's rollout restart the old pod may still be up, and
    // its counters (summed in, or picked alone) then vanish mid-test (seen as "87 -> 40" and
    // "51 -> 0" in back-to-back runs).
    let client = kube::Client::try_default().await?;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client, "paddock-system");
    let mut current = String::new();
    let t0 = Instant::now();
    while current.is_empty() {
        let list = pods
            .list(&kube::api::ListParams::default().labels("app.kubernetes.io/component=operator"))
            .await?;
        current = list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .max_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0))
            .and_then(|p| p.metadata.name.clone())
            .unwrap_or_default();
        if current.is_empty() {
            if t0.elapsed() > PROM_TIMEOUT {
                bail!("no operator pod");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let pod = current;
    eventually("Prometheus scraping the current operator pod", PROM_TIMEOUT, || {
        let up = query(&format!(r#"up{{job="paddock-operator",pod="{pod}"}} == 1"#))?;
        Ok(up.is_empty().then(|| format!("{pod} not scraped yet")))
    })
    .await?;
    let completed = |p: &str| {
        value(&format!(
            r#"sum(paddock_runs_completed_total{{phase="{p}",pod="{pod}"}})"#
        ))
    };
    let starts = || {
        value(&format!(
            r#"sum(paddock_run_start_seconds_count{{agent="shell",start="cold",pod="{pod}"}})"#
        ))
    };
    let (ok0, failed0, starts0) = (completed("Succeeded")?, completed("Failed")?, starts()?);

    let ns = TestNs::new("metrics").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool("default", None).await?;
    // A few seconds of agent each, so the observer sees the agent container running.
    shell_run(&ns, &repo, "ok-1", "sleep 4; echo one > one.txt").await?;
    shell_run(&ns, &repo, "ok-2", "sleep 4; echo two > two.txt").await?;
    shell_run(&ns, &repo, "bad", "sleep 4; echo 'red' >&2; exit 3").await?;
    for (name, want) in [
        ("ok-1", Phase::Succeeded),
        ("ok-2", Phase::Succeeded),
        ("bad", Phase::Failed),
    ] {
        let run = ns.wait_finished(name, RUN_TIMEOUT).await?;
        assert_eq!(phase(&run), Some(want), "{name}: {:?}", run.status);
    }

    eventually("run metrics in Prometheus", PROM_TIMEOUT, || {
        let mut missing = vec![];
        let (ok, failed, st) = (completed("Succeeded")?, completed("Failed")?, starts()?);
        if ok < ok0 + 2.0 {
            missing.push(format!("runs_completed Succeeded {ok0} -> {ok}"));
        }
        if failed < failed0 + 1.0 {
            missing.push(format!("runs_completed Failed {failed0} -> {failed}"));
        }
        if st < starts0 + 3.0 {
            missing.push(format!("run_start_seconds_count {starts0} -> {st}"));
        }
        let succeeded_now = value(r#"sum(paddock_runs{pool="default",agent="shell",phase="Succeeded"})"#)?;
        if succeeded_now < 2.0 {
            missing.push(format!("paddock_runs Succeeded = {succeeded_now}"));
        }
        let reason = query(r#"paddock_runs_completed_total{agent="shell",phase="Failed",reason="AgentFailed"}"#)?;
        if reason.is_empty() {
            missing.push("runs_completed with reason AgentFailed".into());
        }
        for (expr, what) in [
            (
                r#"paddock_run_duration_seconds_count{agent="shell",phase="Succeeded"}"#,
                "run duration",
            ),
            (
                r#"paddock_reconciliations_total{controller="agentrun"}"#,
                "reconciliations",
            ),
            (
                r#"paddock_reconcile_duration_seconds_count{controller="agentrun"}"#,
                "reconcile duration",
            ),
            (r#"paddock_reconciles_in_flight{controller="agentrun"}"#, "in flight"),
            (
                r#"paddock_kube_api_request_duration_seconds_count{verb="patch",resource="agentruns",code="200"}"#,
                "kube API patch agentruns",
            ),
            (
                r#"paddock_kube_api_request_duration_seconds_count{verb="watch",resource="agentruns"}"#,
                "kube API watch agentruns",
            ),
            (
                // Pods are created by server-side apply: a PATCH answered 201.
                r#"paddock_kube_api_request_duration_seconds_count{verb="patch",resource="pods",code="201"}"#,
                "kube API apply (create) pods",
            ),
            (r#"paddock_leader == 1"#, "leader"),
            (r#"paddock_build_info == 1"#, "build info"),
        ] {
            if query(expr)?.is_empty() {
                missing.push(what.to_string());
            }
        }
        Ok((!missing.is_empty()).then(|| missing.join("; ")))
    })
    .await?;
    // Labels stay bounded: no run names anywhere.
    let leaked = query(r#"{__name__=~"paddock_.*", run!=""}"#)?;
    assert!(leaked.is_empty(), "series labelled with a run: {leaked:?}");
    ns.cleanup().await;
    Ok(())
}

/// The dashboard's PromQL, with Grafana's variables replaced as "All" would:
/// `$pool`/`$agent` (and `${pool}`, `${pool:regex}`) → `.*` (only valid inside `=~` matchers),
/// `$__rate_interval`/`$__interval` → `1m`, `$__range` → `1h`.
fn dashboard_queries() -> Result<Vec<String>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/paddock/dashboards/paddock.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).with_context(|| format!("{path:?}"))?)?;
    let vars: Vec<String> = dash["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] != "datasource")
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect();
    let mut panels = vec![];
    for p in dash["panels"].as_array().into_iter().flatten() {
        panels.push(p);
        panels.extend(p["panels"].as_array().into_iter().flatten());
    }
    let mut out = vec![];
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            let Some(expr) = t["expr"].as_str() else { continue };
            let mut q = expr.split_whitespace().collect::<Vec<_>>().join(" ");
            for (from, to) in [
                ("${__rate_interval}", "1m"),
                ("$__rate_interval", "1m"),
                ("${__interval}", "1m"),
                ("$__interval", "1m"),
                ("${__range}", "1h"),
                ("$__range", "1h"),
            ] {
                q = q.replace(from, to);
            }
            for v in &vars {
                for form in [format!("${{{v}:regex}}"), format!("${{{v}}}"), format!("${v}")] {
                    if q.contains(&format!("=\"{form}\"")) {
                        bail!("dashboard variable {form} outside a =~ matcher: {expr}");
                    }
                    q = q.replace(&form, ".*");
                }
            }
            if q.contains('$') {
                bail!("unknown variable left in {q:?}");
            }
            out.push(q);
        }
    }
    if out.len() < 10 {
        bail!("only {} expressions in {path:?}", out.len());
    }
    Ok(out)
}

/// Decides `gate` as the admin, who is its only approver.
async fn approve(ns: &TestNs, gate: &str, me: &str) -> Result<()> {
    let api: Api<ApprovalGate> = ns.api();
    let patch = json!([{"op": "add", "path": "/spec/decisions/-",
                        "value": {"approver": me, "decision": "Approve", "comment": "e2e metrics"}}]);
    api.patch(
        gate,
        &PatchParams::default(),
        &Patch::<()>::Json(serde_json::from_value(patch)?),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn dashboard_queries_answer() -> Result<()> {
    let queries = dashboard_queries()?;
    operator_scraped().await?;
    // Activity for every panel: a queue (pool of one), an approval, a model with usage.
    let ns = TestNs::new("metrics-dash").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("README.md", "# demo\n")])?;
    ns.pool("default", Some(1)).await?;
    ns.secret("model-key", "key", "sk-e2e-planted-model-key-0123456789")
        .await?;
    ns.apply::<AgentRun>(run_manifest(
        "agent",
        json!({
            "repo": {"url": repo.url},
            "agent": {"name": "claude-code", "model": "scripted-edit-file",
                      "env": [{"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "model-key", "key": "key"}}}]},
            "prompt": "Create hello.txt with a greeting.",
        }),
    ))
    .await?;
    // Queued behind the first (maxConcurrentRuns 1).
    shell_run(&ns, &repo, "queued", "sleep 2; echo queued > q.txt").await?;
    let me = whoami(&ns.client).await?;
    ns.apply::<ApprovalGate>(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "ApprovalGate", "metadata": {"name": "gate"},
        "spec": {"runRef": {"name": "absent-run"}, "stage": "BeforeStart",
                 "request": {"summary": "e2e: metrics"}, "approvers": {"users": [me]}, "quorum": 1},
    }))
    .await?;
    ns.wait_run("queued", RUN_TIMEOUT, "queued", |r| {
        phase(r).is_some_and(|p| p == Phase::Queued || p.is_terminal())
    })
    .await?;
    // Let Prometheus scrape the pending gate before it is decided.
    tokio::time::sleep(Duration::from_secs(3)).await;
    approve(&ns, "gate", &me).await?;
    let t0 = Instant::now();
    while ns.api::<ApprovalGate>().get("gate").await?.status.and_then(|s| s.state) != Some(GateState::Approved) {
        assert!(t0.elapsed() < Duration::from_secs(60), "gate not approved");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for name in ["agent", "queued"] {
        let run = ns.wait_finished(name, RUN_TIMEOUT).await?;
        assert_eq!(phase(&run), Some(Phase::Succeeded), "{name}: {:?}", run.status);
    }

    eventually("every dashboard query answering", PROM_TIMEOUT, || {
        let mut empty = vec![];
        for q in &queries {
            if query(q)?.is_empty() {
                empty.push(q.clone());
            }
        }
        Ok((!empty.is_empty())
            .then(|| format!("{} of {} empty:\n  {}", empty.len(), queries.len(), empty.join("\n  "))))
    })
    .await?;
    ns.cleanup().await;
    Ok(())
}
