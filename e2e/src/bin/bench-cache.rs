//! Heap bytes of the operator's caches, per object kind (issue 23: controller memory at most
//! 8 KiB per run at 10,000 runs settled). No cluster needed.
//!
//! For each kind, `N` objects go into a kube-runtime reflector [`Store`] through its writer
//! (`apply_watcher_event`, as the operator's reflectors do), once whole and once slimmed by the
//! operator's own functions ([`paddock_crds::cache`]); the heap bytes the store holds then are
//! read from the `dhat` heap profiler (this binary's global allocator), and printed per object.
//! Bytes are those the program asked for (the allocator's own overhead, about 8–16 bytes per
//! block, comes on top; the block counts show how many).
//!
//! The objects look like a settled run's: an AgentRun as `kubectl apply` creates it (the
//! benchmarks' spec with a 2 KiB prompt, the last-applied annotation, managedFields of three
//! managers) with the status the operator writes when it succeeded (conditions, result, usage,
//! policy snapshot, progress); its runner Pod as the operator builds it (the spec in
//! `e2e/fixtures/runner-pod-spec.json`: the JSON of the operator's `build_pod`, `apply_uplink`
//! and `set_prompt` for that run in the chart's default pool, its prompt `PROMPT`), with the API
//! server's defaults, the kubelet's status of a completed pod and the two managers'
//! managedFields; an ApprovalGate, a RunMessage and a RunnerPool (the chart's default pool,
//! applied by Helm). The first object of each kind is checked to keep every field given here.
//!
//! Usage: `bench-cache [--objects N]` (default 10,000 per kind), or
//! `bench-cache --from-cluster NAMESPACE` to measure the objects of that namespace instead
//! (`KUBECONFIG`; each kind's count is what the namespace has). Prints one markdown table.
#![warn(missing_docs)]

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use paddock_crds::{cache, AgentRun, ApprovalGate, RunMessage, RunnerPool};
use serde_json::{json, Map, Value};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Heap use of one store: bytes and blocks (allocations) it holds.
#[derive(Clone, Copy, Debug, Default)]
struct Held {
    bytes: usize,
    blocks: usize,
}

/// One kind's figures: how many objects, and what its store held whole and slimmed.
struct Row {
    kind: &'static str,
    objects: usize,
    whole: Held,
    slimmed: Held,
}

/// Heap bytes and blocks a reflector store holds once `objects` went through `slim` (if any)
/// and the store's writer.
fn held<K>(objects: &[K], slim: Option<fn(&mut K)>) -> Held
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let before = dhat::HeapStats::get();
    let (store, mut writer): (Store<K>, _) = reflector::store();
    for o in objects {
        let mut obj = o.clone();
        if let Some(f) = slim {
            f(&mut obj);
        }
        writer.apply_watcher_event(&watcher::Event::Apply(obj));
    }
    let after = dhat::HeapStats::get();
    drop(writer);
    drop(store);
    Held {
        bytes: after.curr_bytes.saturating_sub(before.curr_bytes),
        blocks: after.curr_blocks.saturating_sub(before.curr_blocks),
    }
}

/// [`held`] whole and slimmed by `slim`, as a row of the table.
fn row<K>(kind: &'static str, objects: &[K], slim: fn(&mut K)) -> Row
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    Row {
        kind,
        objects: objects.len(),
        whole: held(objects, None),
        slimmed: held(objects, Some(slim)),
    }
}

/// The value of `--name`, if given.
fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

/// managedFields' `fieldsV1` for a manager that set every field of `v`: `f:<key>` per object
/// key, `k:{"name":…}` (or `k:{"type":…}`) per item of a list of named objects, `.` on each
/// nested map, `{}` for a leaf.
fn fields_v1(v: &Value) -> Value {
    let nested = |v: &Value| {
        let mut f = fields_v1(v);
        if let Some(m) = f.as_object_mut().filter(|m| !m.is_empty()) {
            m.insert(".".into(), json!({}));
        }
        f
    };
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (format!("f:{k}"), nested(v))).collect()),
        Value::Array(items)
            if !items.is_empty() && items.iter().all(|i| i.get("name").is_some() || i.get("type").is_some()) =>
        {
            let keyed: Map<String, Value> = items
                .iter()
                .map(|i| {
                    let key = match i.get("name") {
                        Some(n) => format!("k:{{\"name\":{n}}}"),
                        None => format!("k:{{\"type\":{}}}", i["type"]),
                    };
                    (key, nested(i))
                })
                .collect();
            Value::Object(keyed)
        }
        _ => json!({}),
    }
}

/// One managedFields entry of `manager` (operation `Apply` or `Update`, on `subresource` if
/// any) owning every field of `fields`.
fn managed(manager: &str, operation: &str, api_version: &str, subresource: Option<&str>, fields: &Value) -> Value {
    let mut e = json!({"manager": manager, "operation": operation, "apiVersion": api_version,
        "time": "2027-01-15T08:01:12Z", "fieldsType": "FieldsV1", "fieldsV1": fields_v1(fields)});
    if let Some(s) = subresource {
        e["subresource"] = json!(s);
    }
    e
}

/// A task as people write them: about 2 KiB of text.
fn prompt() -> String {
    let lines = [
        "The greeting service returns HTTP 500 when the Accept-Language header names a locale we do not ship.",
        "Reproduce it with the integration test in tests/greeting_locale.rs, then fix the fallback in src/i18n.rs so that",
        "an unknown locale falls back to the closest shipped one (by language, then to en-US), never to an error.",
        "Keep the public API of the i18n module unchanged; add unit tests for: an exact match, a language-only match,",
        "a region we do not have (pt-BR when only pt-PT ships), an invalid header, and an empty header.",
        "Update CHANGELOG.md under Unreleased with one line. Run cargo fmt and cargo clippy -- -D warnings before you commit.",
        "Do not touch the vendored locale files under assets/locales; if one of them is malformed, say so in your summary.",
    ];
    let mut p = String::new();
    while p.len() < 2048 {
        for l in lines {
            p.push_str(l);
            p.push('\n');
        }
    }
    p.truncate(2048);
    p
}

const TS: &str = "2027-01-15T08:00:00Z";
const TS_END: &str = "2027-01-15T08:01:12Z";

fn uid(i: usize, kind: u32) -> String {
    format!(
        "{kind:08x}-{:04x}-4{:03x}-8{:03x}-{i:012x}",
        i % 0xffff,
        i % 0xfff,
        (i * 7) % 0xfff
    )
}

/// AgentRun `i`: applied by `kubectl apply`, then run to `Succeeded` by the operator.
fn agent_run(i: usize) -> Value {
    let name = format!("bench-{i:05}");
    let pod = format!("{name}-1");
    let spec = json!({"repo": {"url": "git://10.244.0.1/bench.git"}, "agent": {"name": "shell"},
        "prompt": prompt(), "runnerPoolRef": {"name": "default"}});
    let applied = json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"annotations": {}, "name": name, "namespace": "bench"}, "spec": spec});
    let last_applied = format!("{applied}\n");
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": TS_END, "observedGeneration": 1})
    };
    let result_message = "step agent succeeded; 1 file changed";
    let status = json!({
        "phase": "Succeeded",
        "conditions": [
            condition("Running", "False", "Succeeded", &format!("runner pod {pod} ended")),
            condition("Succeeded", "True", "Succeeded", result_message),
        ],
        "observedGeneration": 1, "podName": pod, "attempt": 1, "warmStart": false,
        "startTime": TS, "completionTime": TS_END, "duration": "1m12s",
        "progress": {"pod": pod, "events": 14, "toolCalls": 3, "lastEvent": "step push succeeded"},
        "result": {"outcome": "Succeeded", "reason": "Succeeded", "message": result_message,
            "commit": "0123456789abcdef0123456789abcdef01234567", "branch": format!("paddock/{name}"),
            "pushed": false, "filesChanged": 1, "insertions": 12, "deletions": 3,
            "summary": "Unknown locales now fall back to the closest shipped one (language first, then en-US); added five unit tests and a CHANGELOG line.",
            "usage": {"inputTokens": 48211, "outputTokens": 2107, "turns": 9, "costUsd": 0.1763},
            "patchBytes": 2114, "patchTruncated": false, "exitCode": 0,
            "diffstat": "+12/-3", "patchRef": format!("{name}-patch"), "logRef": format!("{name}-log")},
        "usage": {"inputTokens": 48211, "outputTokens": 2107, "turns": 9, "costUsd": 0.1763},
        "policy": {"runnerPool": {"name": "default", "uid": uid(0, 2), "generation": 1},
            "podTemplateHash": "sha256:5f0c2a9e8d7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a19",
            "image": "localhost/paddock/runner:dev",
            "poolSpec": pool_spec(), "recordedAt": TS},
    });
    let mut progress = Map::new();
    progress.insert("progress".into(), status["progress"].clone());
    let mut operator_status = status.clone();
    operator_status.as_object_mut().unwrap().remove("progress");
    json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {
            "name": name, "namespace": "bench", "uid": uid(i, 1), "resourceVersion": format!("{}", 4_000_000 + i),
            "generation": 1, "creationTimestamp": TS,
            "annotations": {cache::LAST_APPLIED: last_applied},
            "managedFields": [
                managed("kubectl-client-side-apply", "Update", "paddock.dev/v1alpha1", None,
                    &json!({"metadata": {"annotations": {cache::LAST_APPLIED: ""}}, "spec": spec})),
                managed("paddock.dev/agentrun", "Apply", "paddock.dev/v1alpha1", Some("status"),
                    &json!({"status": operator_status})),
                managed("paddock.dev/agentrun-progress", "Apply", "paddock.dev/v1alpha1", Some("status"),
                    &json!({"status": progress})),
            ],
        },
        "spec": spec,
        "status": status,
    })
}

/// The chart's default RunnerPool spec.
fn pool_spec() -> Value {
    json!({"maxConcurrentRuns": 4,
        "template": {"image": "localhost/paddock/runner:dev", "imagePullPolicy": "IfNotPresent"}})
}

/// The chart's default RunnerPool `i` (Helm applies it server-side).
fn runner_pool(i: usize) -> Value {
    let labels = json!({"app.kubernetes.io/name": "paddock", "app.kubernetes.io/instance": "paddock",
        "app.kubernetes.io/version": "0.1.0", "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": "paddock-0.1.0", "app.kubernetes.io/component": "runner-pool"});
    let status = json!({"running": 0, "queued": 0, "warmReady": 0, "warmTotal": 0,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "the egress gateway is available",
            "lastTransitionTime": TS, "observedGeneration": 1}]});
    json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "RunnerPool",
        "metadata": {"name": format!("pool-{i:05}"), "namespace": "bench", "uid": uid(i, 2), "generation": 1,
            "resourceVersion": "1200", "creationTimestamp": TS, "labels": labels,
            "annotations": {"meta.helm.sh/release-name": "paddock", "meta.helm.sh/release-namespace": "paddock-system"},
            "managedFields": [
                managed("helm", "Apply", "paddock.dev/v1alpha1", None, &json!({"metadata": {"labels": labels}, "spec": pool_spec()})),
                managed("paddock.dev/runnerpool", "Apply", "paddock.dev/v1alpha1", Some("status"), &json!({"status": status})),
            ]},
        "spec": pool_spec(), "status": status})
}

/// The BeforeStart ApprovalGate of run `i`, approved.
fn approval_gate(i: usize) -> Value {
    let run = format!("bench-{i:05}");
    let spec = json!({"runRef": {"name": run, "uid": uid(i, 1)}, "stage": "BeforeStart",
        "request": {"summary": format!("Run {run} wants to start agent shell on git://10.244.0.1/bench.git at HEAD.\nPrompt: {}", &prompt()[..512])},
        "approvers": {"users": ["alice", "bob"]}, "quorum": 1, "timeout": "1h",
        "decisions": [{"approver": "alice", "decision": "Approve", "comment": "lgtm"}]});
    let status = json!({"state": "Approved", "approvals": 1, "decidedBy": "alice", "decidedAt": TS,
        "conditions": [{"type": "Decided", "status": "True", "reason": "Approved", "message": "approved by alice",
            "lastTransitionTime": TS, "observedGeneration": 2}]});
    json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "ApprovalGate",
        "metadata": {"name": format!("{run}-before-start"), "namespace": "bench", "uid": uid(i, 3), "generation": 2,
            "resourceVersion": format!("{}", 3_000_000 + i), "creationTimestamp": TS,
            "labels": {"paddock.dev/run": run, "paddock.dev/stage": "BeforeStart"},
            "ownerReferences": [{"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "name": run, "uid": uid(i, 1),
                "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [
                managed("paddock.dev/agentrun", "Update", "paddock.dev/v1alpha1", None, &json!({"metadata": {"labels": {}}, "spec": spec})),
                managed("kubectl-paddock", "Update", "paddock.dev/v1alpha1", None, &json!({"spec": {"decisions": spec["decisions"]}})),
                managed("paddock.dev/approvalgate", "Apply", "paddock.dev/v1alpha1", Some("status"), &json!({"status": status})),
            ]},
        "spec": spec, "status": status})
}

/// A RunMessage to run `i`, delivered.
fn run_message(i: usize) -> Value {
    let run = format!("bench-{i:05}");
    let spec = json!({"runRef": {"name": run}, "sender": "alice",
        "text": "Also handle the Accept-Language wildcard (*): treat it as en-US."});
    let status = json!({"state": "Delivered", "deliveredAt": TS, "turn": 4, "attempt": 1, "observedGeneration": 1,
        "conditions": [{"type": "Delivered", "status": "True", "reason": "Delivered", "message": "the agent took it at turn 4",
            "lastTransitionTime": TS, "observedGeneration": 1}]});
    json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "RunMessage",
        "metadata": {"name": format!("{run}-msg-1"), "namespace": "bench", "uid": uid(i, 4), "generation": 1,
            "resourceVersion": format!("{}", 5_000_000 + i), "creationTimestamp": TS,
            "managedFields": [
                managed("kubectl-paddock", "Update", "paddock.dev/v1alpha1", None, &json!({"spec": spec})),
                managed("paddock.dev/runmessage", "Apply", "paddock.dev/v1alpha1", Some("status"), &json!({"status": status})),
            ]},
        "spec": spec, "status": status})
}

/// The runner pod spec as the API server stores it: the operator's (the fixture, whose
/// `PADDOCK_PROMPT` is `PROMPT`) with the run's prompt, the API server's defaults and the node
/// the scheduler bound it to.
fn stored_pod_spec(fixture: &Value) -> Value {
    let mut spec = fixture.clone();
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            for e in c["env"].as_array_mut().into_iter().flatten() {
                if e["value"] == "PROMPT" {
                    e["value"] = json!(prompt());
                }
            }
            c["terminationMessagePath"] = json!("/dev/termination-log");
            if c.get("terminationMessagePolicy").is_none() {
                c["terminationMessagePolicy"] = json!("File");
            }
        }
    }
    for (k, v) in [
        ("dnsPolicy", json!("ClusterFirst")),
        ("nodeName", json!("paddock-node")),
        ("preemptionPolicy", json!("PreemptLowerPriority")),
        ("priority", json!(0)),
        ("schedulerName", json!("default-scheduler")),
        ("serviceAccount", json!("default")),
        ("serviceAccountName", json!("default")),
        (
            "tolerations",
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ]),
        ),
    ] {
        if spec.get(k).is_none() {
            spec[k] = v;
        }
    }
    spec
}

/// The runner pod of run `i` after it completed: `spec` ([`stored_pod_spec`]), the kubelet's
/// status.
fn runner_pod(i: usize, spec: &Value) -> Value {
    let run = format!("bench-{i:05}");
    let name = format!("{run}-1");
    let container_id = |n: usize| format!("containerd://{:064x}", i * 16 + n);
    let image_id = "localhost/paddock/runner@sha256:9a1f6e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5";
    let mounts = |c: &str| {
        spec["initContainers"]
            .as_array()
            .into_iter()
            .chain(spec["containers"].as_array())
            .flatten()
            .find(|x| x["name"] == c)
            .map(|x| x["volumeMounts"].clone())
            .unwrap_or(json!([]))
    };
    let terminated = |c: &str, n: usize, message: Option<&str>| {
        let mut t = json!({"exitCode": 0, "reason": "Completed", "startedAt": TS, "finishedAt": TS_END,
            "containerID": container_id(n)});
        if let Some(m) = message {
            t["message"] = json!(m);
        }
        json!({"name": c, "state": {"terminated": t}, "lastState": {}, "ready": false, "restartCount": 0,
            "started": false, "image": "localhost/paddock/runner:dev", "imageID": image_id,
            "containerID": container_id(n), "volumeMounts": mounts(c),
            "user": {"linux": {"uid": 65532, "gid": 65532, "supplementalGroups": [65532]}}})
    };
    let result = json!({"outcome": "Succeeded", "reason": "Succeeded", "message": "step agent succeeded; 1 file changed",
        "commit": "0123456789abcdef0123456789abcdef01234567", "branch": format!("paddock/{run}"), "pushed": false,
        "filesChanged": 1, "insertions": 12, "deletions": 3,
        "summary": "Unknown locales now fall back to the closest shipped one (language first, then en-US); added five unit tests and a CHANGELOG line.",
        "usage": {"inputTokens": 48211, "outputTokens": 2107, "turns": 9, "costUsd": 0.1763},
        "patchBytes": 2114, "patchTruncated": false, "exitCode": 0})
    .to_string();
    let cond = |t: &str, s: &str, reason: Option<&str>| {
        let mut c = json!({"type": t, "status": s, "lastProbeTime": null, "lastTransitionTime": TS_END});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        c
    };
    let status = json!({
        "phase": "Succeeded",
        "conditions": [cond("PodReadyToStartContainers", "False", None), cond("Initialized", "True", Some("PodCompleted")),
            cond("Ready", "False", Some("PodCompleted")), cond("ContainersReady", "False", Some("PodCompleted")),
            cond("PodScheduled", "True", None)],
        "hostIP": "10.0.0.5", "hostIPs": [{"ip": "10.0.0.5"}], "podIP": "10.244.0.57", "podIPs": [{"ip": "10.244.0.57"}],
        "startTime": TS, "qosClass": "Burstable",
        "initContainerStatuses": [terminated("clone", 0, None), terminated("gateway", 1, Some(r#"{"pushed":false,"commit":"0123456789abcdef0123456789abcdef01234567","model":{"anthropic":{"calls":9,"status":200}}}"#))],
        "containerStatuses": [terminated("agent", 2, Some(&result))],
    });
    let labels = json!({"app.kubernetes.io/name": "paddock-runner", "app.kubernetes.io/managed-by": "paddock",
        "paddock.dev/run": run, "paddock.dev/pool": "default", "paddock.dev/attempt": "1"});
    let owner = json!([{"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "name": run, "uid": uid(i, 1),
        "controller": true, "blockOwnerDeletion": true}]);
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "bench", "uid": uid(i, 5), "resourceVersion": format!("{}", 4_100_000 + i),
            "creationTimestamp": TS, "labels": labels, "ownerReferences": owner,
            "managedFields": [
                managed("paddock.dev/agentrun", "Apply", "v1", None,
                    &json!({"metadata": {"labels": labels, "ownerReferences": owner}, "spec": spec})),
                managed("kubelet", "Update", "v1", Some("status"), &json!({"status": status})),
            ]},
        "spec": spec, "status": status})
}

/// The paths of `input`'s fields that `output` lacks (`null`s aside).
fn dropped(input: &Value, output: &Value, path: &str, out: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, v) in i {
                match o.get(k) {
                    Some(w) => dropped(v, w, &format!("{path}.{k}"), out),
                    None if !v.is_null() => out.push(format!("{path}.{k}")),
                    None => {}
                }
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            for (n, (v, w)) in i.iter().zip(o).enumerate() {
                dropped(v, w, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

/// `n` objects of kind `K` made by `make(i)`.
///
/// # Errors
/// When the first one has a field `K` does not know (a typo here would shrink the figures).
fn made<K: serde::de::DeserializeOwned + serde::Serialize>(n: usize, make: impl Fn(usize) -> Value) -> Result<Vec<K>> {
    let objects: Vec<K> = (0..n)
        .map(|i| serde_json::from_value(make(i)).context("a made object does not parse"))
        .collect::<Result<_>>()?;
    if let Some(first) = objects.first() {
        let mut lost = vec![];
        dropped(&make(0), &serde_json::to_value(first)?, "", &mut lost);
        anyhow::ensure!(lost.is_empty(), "fields the type does not know: {lost:?}");
    }
    Ok(objects)
}

/// Every object of kind `K` in namespace `ns` (`label`: only those with that label).
async fn listed<K>(client: &kube::Client, ns: &str, label: Option<&str>) -> Result<Vec<K>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let mut lp = kube::api::ListParams::default();
    if let Some(l) = label {
        lp = lp.labels(l);
    }
    Ok(kube::Api::<K>::namespaced(client.clone(), ns).list(&lp).await?.items)
}

fn kib(bytes: usize, n: usize) -> String {
    if n == 0 {
        return "-".into();
    }
    format!("{:.2}", bytes as f64 / n as f64 / 1024.0)
}

fn per(count: usize, n: usize) -> String {
    if n == 0 {
        return "-".into();
    }
    format!("{:.0}", count as f64 / n as f64)
}

/// The objects measured, per kind.
struct Objects {
    runs: Vec<AgentRun>,
    pods: Vec<Pod>,
    gates: Vec<ApprovalGate>,
    messages: Vec<RunMessage>,
    pools: Vec<RunnerPool>,
}

impl Objects {
    /// `n` objects of each kind, made here.
    fn made(n: usize) -> Result<Self> {
        let fixture: Value = serde_json::from_str(include_str!("../../fixtures/runner-pod-spec.json"))?;
        let pod_spec = stored_pod_spec(&fixture);
        Ok(Objects {
            runs: made(n, agent_run)?,
            pods: made(n, |i| runner_pod(i, &pod_spec))?,
            gates: made(n, approval_gate)?,
            messages: made(n, run_message)?,
            pools: made(n, runner_pool)?,
        })
    }

    /// Every object of each kind in namespace `ns` (pods: the runner pods, label
    /// `paddock.dev/run`, as the operator's cache).
    async fn listed(ns: &str) -> Result<Self> {
        let c = kube::Client::try_default().await?;
        Ok(Objects {
            runs: listed(&c, ns, None).await?,
            pods: listed(&c, ns, Some(paddock_crds::LABEL_RUN)).await?,
            gates: listed(&c, ns, None).await?,
            messages: listed(&c, ns, None).await?,
            pools: listed(&c, ns, None).await?,
        })
    }
}

fn main() -> Result<()> {
    let Objects {
        runs,
        pods,
        gates,
        messages,
        pools,
    } = match arg("--from-cluster") {
        Some(ns) => tokio::runtime::Runtime::new()?.block_on(Objects::listed(&ns))?,
        None => Objects::made(
            arg("--objects")
                .map(|v| v.parse().context("--objects takes a number"))
                .transpose()?
                .unwrap_or(10_000),
        )?,
    };
    // Profiling from here: the objects above are the input, not counted (the profiler ignores
    // blocks it did not see allocated).
    let _profiler = dhat::Profiler::builder().testing().trim_backtraces(Some(4)).build();
    let rows = [
        row("AgentRun", &runs, cache::slim_agent_run),
        row("Pod (runner)", &pods, cache::slim_pod),
        row("ApprovalGate", &gates, cache::slim_object::<ApprovalGate>),
        row("RunMessage", &messages, cache::slim_object::<RunMessage>),
        row("RunnerPool", &pools, cache::slim_object::<RunnerPool>),
    ];
    println!("\n### Operator caches, heap per object (dhat; kube-runtime reflector stores)\n");
    println!("| kind | objects | whole (KiB/object) | slimmed (KiB/object) | slimmed (allocations/object) |");
    println!("|---|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.kind,
            r.objects,
            kib(r.whole.bytes, r.objects),
            kib(r.slimmed.bytes, r.objects),
            per(r.slimmed.blocks, r.objects)
        );
    }
    // A settled run's share: its AgentRun and its runner pod (its gates and messages when it
    // has any).
    let run_share = |h: fn(&Row) -> Held| {
        rows[..2]
            .iter()
            .map(|r| {
                if r.objects == 0 {
                    0.0
                } else {
                    h(r).bytes as f64 / r.objects as f64
                }
            })
            .sum::<f64>()
            / 1024.0
    };
    println!(
        "| **a settled run** (AgentRun + Pod) | {} | {:.2} | {:.2} | |",
        rows[0].objects,
        run_share(|r| r.whole),
        run_share(|r| r.slimmed)
    );
    println!(
        "\nOf a slimmed object, the Rust struct itself (its `Option` fields inline, set or not): AgentRun {} B, Pod {} B.",
        std::mem::size_of::<AgentRun>(),
        std::mem::size_of::<Pod>()
    );
    Ok(())
}
