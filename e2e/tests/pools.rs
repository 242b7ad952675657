//! End-to-end for RunnerPools on the local cluster: the queue (maxConcurrentRuns, Priority),
//! warm pods (claim, replenish, `kubectl scale`), template overrides.
//!
//! Env as for the other e2e files (see e2e/run-e2e.sh).

use anyhow::{bail, Context as _, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use paddock_crds::Reason;
use paddock_crds::{AgentRun, Phase, RunnerPool, LABEL_POOL, LABEL_WARM};
use paddock_e2e::{phase, GitRepo, TestNs};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const RUN_TIMEOUT: Duration = Duration::from_secs(180);

fn run_manifest(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "metadata": {"name": name}, "spec": spec})
}

async fn shell_run(
    ns: &TestNs,
    repo: &GitRepo,
    name: &str,
    pool: &str,
    prompt: &str,
    extra: serde_json::Value,
) -> Result<AgentRun> {
    let mut spec = json!({"repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": prompt,
                          "runnerPoolRef": {"name": pool}});
    for (k, v) in extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    ns.apply::<AgentRun>(run_manifest(name, spec)).await
}

/// Waits until the pool's status satisfies `pred`.
async fn wait_pool(ns: &TestNs, name: &str, what: &str, pred: impl Fn(&RunnerPool) -> bool) -> Result<RunnerPool> {
    let api = ns.api::<RunnerPool>();
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let p = api.get(name).await?;
        if pred(&p) {
            return Ok(p);
        }
        if Instant::now() > deadline {
            ns.dump().await;
            bail!("pool {name}: timed out waiting for {what}; status {:?}", p.status);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn warm_counts(p: &RunnerPool) -> (u32, u32) {
    p.status.as_ref().map_or((0, 0), |s| (s.warm_ready, s.warm_total))
}

/// Names of the pool's idle warm pods that are not terminating.
async fn idle_pods(ns: &TestNs, pool: &str) -> Result<BTreeSet<String>> {
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("{LABEL_POOL}={pool},{LABEL_WARM}=idle")))
        .await?;
    Ok(pods
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name)
        .collect())
}

fn kubectl(args: &[&str]) -> Result<String> {
    let bin = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let out = std::process::Command::new(&bin)
        .args(args)
        .output()
        .with_context(|| format!("running {bin}"))?;
    if !out.status.success() {
        bail!("kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn priority_queue_runs_at_most_two_at_a_time_in_priority_order() -> Result<()> {
    let ns = TestNs::new("prio").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool_with("two", json!({"maxConcurrentRuns": 2, "queue": {"policy": "Priority"}}))
        .await?;
    // Two runs fill the pool and end 4 s apart, so the queued ones start one by one.
    shell_run(&ns, &repo, "fill-a", "two", "sleep 4; echo a > a1.txt", json!({})).await?;
    shell_run(&ns, &repo, "fill-b", "two", "sleep 8; echo b > b1.txt", json!({})).await?;
    for r in ["fill-a", "fill-b"] {
        ns.wait_run(r, RUN_TIMEOUT, "running", |r| phase(r) == Some(Phase::Running))
            .await?;
    }
    // Created lowest priority first: FIFO would start them in this order.
    let queued = [("p-low", -1), ("p-none", 0), ("p-high", 10)];
    for (name, prio) in queued {
        let extra = if prio == 0 {
            json!({})
        } else {
            json!({"priority": prio})
        };
        shell_run(
            &ns,
            &repo,
            name,
            "two",
            &format!("sleep 3; echo {name} > {name}.txt"),
            extra,
        )
        .await?;
    }
    let expected = [("p-high", 1), ("p-none", 2), ("p-low", 3)];
    for (name, pos) in expected {
        let r = ns
            .wait_run(name, RUN_TIMEOUT, "queued", |r| phase(r) == Some(Phase::Queued))
            .await?;
        // Positions settle once every run of the queue has been reconciled.
        let r = if r.status.as_ref().and_then(|s| s.queue_position) == Some(pos) {
            r
        } else {
            ns.wait_run(name, Duration::from_secs(10), "its position", |r| {
                r.status.as_ref().and_then(|s| s.queue_position) == Some(pos)
            })
            .await?
        };
        let msg = paddock_e2e::condition(&r, "Queued").map(|c| c.2).unwrap_or_default();
        assert!(msg.contains("Priority queue"), "{name}: {msg}");
    }

    // Watch all five: never more than two with a pod, and the queued ones start by priority.
    let names = ["fill-a", "fill-b", "p-low", "p-none", "p-high"];
    let api = ns.api::<AgentRun>();
    let mut started: Vec<&str> = vec![];
    let mut max_active = 0;
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let mut active = 0;
        let mut done = 0;
        for n in names {
            let r = api.get(n).await?;
            let p = phase(&r);
            if p.is_some_and(Phase::is_terminal) {
                done += 1;
            } else if r.status.as_ref().is_some_and(|s| s.pod_name.is_some()) {
                active += 1;
            }
            if n.starts_with("p-") && !started.contains(&n) && r.status.as_ref().is_some_and(|s| s.pod_name.is_some()) {
                started.push(n);
            }
        }
        max_active = max_active.max(active);
        if done == names.len() {
            break;
        }
        if Instant::now() > deadline {
            ns.dump().await;
            bail!("runs did not finish; started so far {started:?}");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(max_active <= 2, "maxConcurrentRuns 2 exceeded: {max_active} at once");
    assert_eq!(started, ["p-high", "p-none", "p-low"], "start order");
    for n in names {
        assert_eq!(phase(&api.get(n).await?), Some(Phase::Succeeded), "{n}");
    }
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn warm_pods_are_claimed_replenished_and_scaled() -> Result<()> {
    let ns = TestNs::new("warm").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool_with(
        "warm",
        json!({"warm": {"replicas": 2}, "overrides": {"maxResources": {"cpu": "1", "memory": "1Gi"}}}),
    )
    .await?;
    let pool = wait_pool(&ns, "warm", "2 warm pods ready", |p| warm_counts(p) == (2, 2)).await?;
    let st = pool.status.clone().unwrap_or_default();
    assert_eq!(
        st.warm_selector.as_deref(),
        Some("paddock.dev/pool=warm,paddock.dev/warm=idle")
    );
    let ready = paddock_crds::find_condition(&st.conditions, "Ready").map(|c| c.status.clone());
    assert_eq!(ready.as_deref(), Some("True"));
    let before = idle_pods(&ns, "warm").await?;
    assert_eq!(before.len(), 2, "{before:?}");

    // A run claims one: it succeeds in a pod that was already running, with its diff.
    shell_run(&ns, &repo, "w1", "warm", "echo \"$GREETING\" > w.txt", json!({"agent": {"name": "shell", "env": [{"name": "GREETING", "value": "warm hello"}]}, "output": {"push": true}})).await?;
    let w1 = ns.wait_finished("w1", RUN_TIMEOUT).await?;
    let st = w1.status.clone().unwrap_or_default();
    assert_eq!(phase(&w1), Some(Phase::Succeeded), "{st:?}");
    assert_eq!(st.warm_start, Some(true), "{st:?}");
    let claimed = st.pod_name.clone().unwrap_or_default();
    assert!(before.contains(&claimed), "claimed {claimed} is one of {before:?}");
    let result = st.result.clone().context("result")?;
    assert_eq!(result.run.files_changed, 1, "{result:?}");
    let events = ns
        .wait_events("w1", &[Reason::PodClaimed.as_str()], Duration::from_secs(30))
        .await?;
    assert!(
        events
            .iter()
            .any(|(r, n)| r == Reason::PodClaimed.as_str() && n.contains(&claimed)),
        "{events:?}"
    );
    // The run's env reached the CLI, and the warm pod's gateway pushed the branch.
    assert!(result.run.pushed, "{result:?}");
    assert_eq!(repo.show("paddock/w1", "w.txt")?, "warm hello\n");

    // The pool replaces the claimed pod.
    wait_pool(&ns, "warm", "replenished", |p| warm_counts(p) == (2, 2)).await?;
    let after = idle_pods(&ns, "warm").await?;
    assert!(!after.contains(&claimed) && after.len() == 2, "{after:?}");

    // A run asking for other resources (within the pool's overrides) starts cold and says why.
    shell_run(&ns, &repo, "c1", "warm", "echo cold > c.txt", json!({"runner": {"resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}}})).await?;
    let c1 = ns.wait_finished("c1", RUN_TIMEOUT).await?;
    assert_eq!(phase(&c1), Some(Phase::Succeeded), "{:?}", c1.status);
    assert_eq!(c1.status.as_ref().and_then(|s| s.warm_start), Some(false));
    assert_eq!(
        c1.status.as_ref().and_then(|s| s.pod_name.clone()).as_deref(),
        Some("c1-1")
    );
    let events = ns
        .wait_events("c1", &[Reason::PodCreated.as_str()], Duration::from_secs(30))
        .await?;
    assert!(
        events.iter().any(
            |(r, n)| r == Reason::PodCreated.as_str() && n.contains("cold start: the run asks for other resources")
        ),
        "{events:?}"
    );
    assert_eq!(
        idle_pods(&ns, "warm").await?,
        after,
        "a cold run leaves the warm pods alone"
    );

    // kubectl scale drives spec.warm.replicas through the /scale subresource.
    kubectl(&["-n", &ns.name, "scale", "runnerpool/warm", "--replicas=3"])?;
    wait_pool(&ns, "warm", "3 warm pods ready", |p| warm_counts(p) == (3, 3)).await?;
    assert_eq!(idle_pods(&ns, "warm").await?.len(), 3);
    let scale: serde_json::Value = serde_json::from_str(&kubectl(&[
        "get",
        "--raw",
        &format!(
            "/apis/paddock.dev/v1alpha1/namespaces/{}/runnerpools/warm/scale",
            ns.name
        ),
    ])?)?;
    assert_eq!(scale["spec"]["replicas"], 3, "{scale}");
    assert_eq!(scale["status"]["replicas"], 3, "{scale}");
    assert_eq!(
        scale["status"]["selector"],
        "paddock.dev/pool=warm,paddock.dev/warm=idle"
    );
    kubectl(&["-n", &ns.name, "scale", "runnerpool/warm", "--replicas=1"])?;
    wait_pool(&ns, "warm", "1 warm pod", |p| warm_counts(p) == (1, 1)).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while idle_pods(&ns, "warm").await?.len() != 1 {
        assert!(Instant::now() < deadline, "surplus warm pods not deleted");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn overrides_beyond_the_pools_policy_are_refused() -> Result<()> {
    let ns = TestNs::new("override").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool_with(
        "strict",
        json!({"overrides": {"env": false, "maxResources": {"cpu": "500m"}}}),
    )
    .await?;
    let cases = [
        (
            "image",
            json!({"runner": {"image": "registry.example/evil:1"}}),
            "refuses spec.runner.image",
        ),
        (
            "cpu",
            json!({"runner": {"resources": {"limits": {"cpu": "2"}}}}),
            "refuses spec.runner.resources.limits.cpu: 2 is more than the pool's maximum 500m",
        ),
        (
            "env",
            json!({"agent": {"name": "shell", "env": [{"name": "X", "value": "1"}]}}),
            "refuses spec.agent.env",
        ),
    ];
    for (name, extra, _) in &cases {
        shell_run(&ns, &repo, name, "strict", "echo x > x.txt", extra.clone()).await?;
    }
    for (name, _, why) in cases {
        let r = ns.wait_finished(name, RUN_TIMEOUT).await?;
        assert_eq!(phase(&r), Some(Phase::Failed), "{name}");
        let c = paddock_e2e::condition(&r, "Succeeded").unwrap_or_default();
        assert_eq!(c.1, Reason::OverrideNotAllowed, "{name}: {c:?}");
        assert!(c.2.contains(why), "{name}: {}", c.2);
        assert!(
            r.status.as_ref().is_some_and(|s| s.pod_name.is_none()),
            "{name}: no pod"
        );
    }
    // Within the policy: runs.
    shell_run(
        &ns,
        &repo,
        "fits",
        "strict",
        "echo x > x.txt",
        json!({"runner": {"resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "500m"}}}}),
    )
    .await?;
    let r = ns.wait_finished("fits", RUN_TIMEOUT).await?;
    assert_eq!(phase(&r), Some(Phase::Succeeded), "{:?}", r.status);
    // A priority outside -1000..=1000 is refused by the API server.
    let err = shell_run(&ns, &repo, "prio", "strict", "true", json!({"priority": 5000}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("spec.priority"), "{err}");
    ns.cleanup().await;
    Ok(())
}

/// A pool named after an existing object of someone else's (here a Service `clash-egress` a
/// namespace user made) never takes it over: the pool says `EgressNameTaken`, its runs wait
/// saying so, and the Service is left as it was.
#[tokio::test]
async fn a_pool_never_takes_over_a_same_named_object() -> Result<()> {
    use k8s_openapi::api::core::v1::Service;
    let ns = TestNs::new("pool-clash").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.apply::<Service>(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "clash-egress", "labels": {"team": "web"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    }))
    .await?;
    ns.pool("clash", None).await?;
    let pool = wait_pool(&ns, "clash", "EgressNameTaken", |p| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.reason == Reason::EgressNameTaken)
    })
    .await?;
    let ready = pool
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert!(ready.message.contains("Service/clash-egress"), "{}", ready.message);
    shell_run(&ns, &repo, "waits", "clash", "echo hi", json!({})).await?;
    ns.wait_run("waits", RUN_TIMEOUT, "waiting on the name clash", |r| {
        paddock_e2e::condition(r, "Succeeded").is_some_and(|c| c.1 == Reason::EgressNameTaken)
    })
    .await?;
    let svc = ns.api::<Service>().get("clash-egress").await?;
    assert!(
        svc.metadata.owner_references.is_none(),
        "not taken over: {:?}",
        svc.metadata.owner_references
    );
    assert_eq!(svc.spec.unwrap().selector.unwrap()["app"], "web");
    // No Deployment was made either.
    let deps = ns
        .api::<k8s_openapi::api::apps::v1::Deployment>()
        .list(&ListParams::default())
        .await?;
    assert!(
        deps.items.is_empty(),
        "{:?}",
        deps.items.iter().map(|d| d.metadata.name.clone()).collect::<Vec<_>>()
    );
    ns.cleanup().await;
    Ok(())
}

/// Sends its first argument as a claim push to the pod's own claim listener and prints the
/// answer's status (run inside an idle warm pod, where no NetworkPolicy stands in the way).
const PUSH_FROM_INSIDE: &str = r#"
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", 15002, timeout=10)
c.request("POST", "/claim", body=sys.argv[1], headers={"Content-Type": "application/json"})
print(c.getresponse().status)
"#;

/// Tries to reach a warm pod's claim listener (its IP, the first argument) from another pod.
const PUSH_FROM_ANOTHER_POD: &str = r#"
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], 15002), timeout=5)
    s.sendall(b"POST /claim HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    print("connected: " + s.recv(200).decode(errors="replace").splitlines()[0])
except Exception as e:
    print("blocked: %s" % e)
"#;

/// The container `container`'s log of pod `pod` once it contains `needle` (within 30 s).
async fn wait_log(ns: &TestNs, pod: &str, container: &str, needle: &str) -> Result<String> {
    let params = kube::api::LogParams {
        container: Some(container.into()),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = ns.api::<Pod>().logs(pod, &params).await.unwrap_or_default();
        if log.contains(needle) {
            return Ok(log);
        }
        if Instant::now() > deadline {
            bail!("{pod}/{container}: no {needle:?} in its log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The claim push (docs/pools.md "Warm pods", docs/security.md): a run's claim reaches the idle
/// pod's gateway straight from the operator, not through the kubelet; and nothing else claims a
/// pod that way. Pushed from inside an idle pod (past any NetworkPolicy), a claim signed by
/// another key and the operator's real claim for another pod are refused, and the pod stays
/// idle; a runner pod of another pool cannot even connect to the listener.
#[tokio::test]
async fn warm_claims_are_pushed_and_a_forged_push_claims_nothing() -> Result<()> {
    use paddock_crds::runner::{Claim, ClaimPush};
    use paddock_crds::verdict::{claim_message, Signer, ANNOTATION_CLAIM_SIGNATURE};
    let ns = TestNs::new("claimpush").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool_with("warm", json!({"warm": {"replicas": 2}})).await?;
    ns.pool("default", None).await?;
    wait_pool(&ns, "warm", "2 warm pods ready", |p| warm_counts(p) == (2, 2)).await?;
    let before = idle_pods(&ns, "warm").await?;

    // A real claim arrives by push.
    shell_run(&ns, &repo, "w1", "warm", "sleep 5; echo w > w.txt", json!({})).await?;
    let deadline = Instant::now() + RUN_TIMEOUT;
    let claimed = loop {
        let run = ns.api::<AgentRun>().get("w1").await?;
        if let Some(p) = run.status.and_then(|s| s.pod_name) {
            break p;
        }
        if Instant::now() > deadline {
            bail!("w1 named no pod");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(before.contains(&claimed), "claimed {claimed} is one of {before:?}");
    wait_log(&ns, &claimed, "gateway", "claimed (pushed by the operator)").await?;
    let annotations = ns
        .api::<Pod>()
        .get(&claimed)
        .await?
        .metadata
        .annotations
        .unwrap_or_default();
    let real = ClaimPush {
        claim: annotations[paddock_crds::ANNOTATION_CLAIM].clone(),
        signature: annotations[ANNOTATION_CLAIM_SIGNATURE].clone(),
    };

    // The other idle pod: a forged claim and the real claim of another pod, pushed from inside.
    let idle = before
        .iter()
        .find(|p| **p != claimed)
        .context("a second idle pod")?
        .clone();
    let idle_pod = ns.api::<Pod>().get(&idle).await?;
    let uid = idle_pod.metadata.uid.clone().unwrap_or_default();
    let mut evil = Claim::default();
    evil.trusted
        .insert("PADDOCK_REPO_URL".into(), "git://attacker.example/r".into());
    evil.agent.insert("PADDOCK_PROMPT".into(), "exfiltrate".into());
    let evil = evil.encode();
    let forged = ClaimPush {
        signature: Signer::generate()?.sign(&claim_message(&evil, &uid)),
        claim: evil,
    };
    for (what, push) in [
        ("signed by another key", &forged),
        ("the operator's claim for another pod", &real),
    ] {
        let body = serde_json::to_string(push)?;
        let status = kubectl(&[
            "-n",
            &ns.name,
            "exec",
            &idle,
            "-c",
            "agent",
            "--",
            "python3",
            "-c",
            PUSH_FROM_INSIDE,
            &body,
        ])?;
        assert_eq!(status.trim(), "403", "a claim {what} was not refused");
    }
    let log = wait_log(&ns, &idle, "gateway", "refused a claim push").await?;
    assert_eq!(log.matches("refused a claim push (403 Forbidden)").count(), 2, "{log}");
    assert!(!log.contains("claimed ("), "{log}");
    let still = ns.api::<Pod>().get(&idle).await?;
    assert_eq!(
        still
            .metadata
            .labels
            .unwrap_or_default()
            .get(LABEL_WARM)
            .map(String::as_str),
        Some("idle")
    );
    assert!(!still
        .metadata
        .annotations
        .unwrap_or_default()
        .contains_key(paddock_crds::ANNOTATION_CLAIM));

    // A runner pod of another pool cannot reach the listener: `<pool>-runners` admits only the
    // operator's pods on it.
    let ip = idle_pod.status.and_then(|s| s.pod_ip).context("the idle pod's IP")?;
    let prompt =
        format!("cat > /tmp/p.py <<'PROBE'\n{PUSH_FROM_ANOTHER_POD}\nPROBE\npython3 /tmp/p.py {ip} > probe.txt");
    shell_run(
        &ns,
        &repo,
        "probe",
        "default",
        &prompt,
        json!({"output": {"push": true}}),
    )
    .await?;
    let probe = ns.wait_finished("probe", RUN_TIMEOUT).await?;
    assert_eq!(phase(&probe), Some(Phase::Succeeded), "{:?}", probe.status);
    let seen = repo.show("paddock/probe", "probe.txt")?;
    assert!(
        seen.starts_with("blocked"),
        "another pool's runner pod reached the claim listener: {seen}"
    );

    let w1 = ns.wait_finished("w1", RUN_TIMEOUT).await?;
    assert_eq!(phase(&w1), Some(Phase::Succeeded), "{:?}", w1.status);
    assert_eq!(w1.status.and_then(|s| s.warm_start), Some(true));
    ns.cleanup().await;
    Ok(())
}
