//! A pool's warm pods: built from the pool ([`build_warm_pod`], replaced when
//! [`warm_template_hash`] changes), and claimed for a run: the pod's labels, owner and activeDeadline
//! change and the run's settings arrive in the [`paddock_crds::ANNOTATION_CLAIM`] annotation,
//! which the runner reads from its downward API volume. The pod is not restarted.
//!
//! The claim is one PATCH carrying the pod's `resourceVersion`: two runs racing for the same pod
//! cannot both win (the loser gets 409 and tries the next pod). A pod this run's attempt already
//! claimed (the operator stopped before recording it in status) is adopted, never doubled.

use super::build::{
    self, apply_uplink, env, merge_env, owner_ref, run_env, runner_pod_spec, secret_env_names, timeout_secs,
    BuildError, PodShape, PodUplink,
};
use super::gateway;
use super::prompt::PromptText;
use crate::context::{Context, MANAGER_AGENTRUN};
use crate::error::Result;
use k8s_openapi::api::core::v1::EnvVar;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::Resource;
use paddock_crds::runner::{vars, Claim, Prompt};
use paddock_crds::{AgentRun, RunnerPool, ANNOTATION_CLAIM, LABEL_ATTEMPT, LABEL_POOL, LABEL_RUN, LABEL_WARM};
use std::sync::Arc;

/// Annotation on warm pods: hash of the pool settings they were built from; pods with another
/// hash are replaced when idle.
pub const ANNOTATION_TEMPLATE_HASH: &str = "paddock.dev/template-hash";

/// Labels of a pool's idle warm pods (also the pool's `status.warmSelector`).
pub fn warm_selector(pool: &str) -> String {
    format!("{}={pool},{}=idle", paddock_crds::LABEL_POOL, paddock_crds::LABEL_WARM)
}

/// Hash (hex, 16 digits) of what a warm pod is built from: the pool's template, warm
/// credentials, the operator's verdict key (a pod with another key could verify no claim) and
/// the pool's egress gateway address and token.
/// FNV-1a over the canonical JSON, stable across operator versions.
pub fn warm_template_hash(pool: &RunnerPool, verdict_key: &str, uplink: Option<&PodUplink>) -> String {
    let input = serde_json::json!({
        "template": pool.spec.template,
        "credentials": pool.spec.warm.as_ref().and_then(|w| w.credentials_secret_ref.as_ref()).map(|r| &r.name),
        "verdictKey": verdict_key,
        "uplink": uplink,
    })
    .to_string();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in input.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Builds an idle warm pod of `pool`: its containers start and wait for a claim
/// (`generateName: <pool>-warm-`, owned by the pool, labels [`warm_selector`]); `verdict_key`
/// as for [`build_pod`]; `uplink` as for [`apply_uplink`].
pub fn build_warm_pod(pool: &RunnerPool, verdict_key: &str, uplink: Option<&PodUplink>) -> Pod {
    let tpl = &pool.spec.template;
    let warm_routes = gateway::route_models(&tpl.env);
    let routed = !warm_routes.1.is_empty();
    let pool_name = pool.metadata.name.clone().unwrap_or_default();
    let spec = runner_pod_spec(
        pool,
        PodShape {
            trusted_env: vec![],
            gateway_env: {
                let mut g = warm_routes.1;
                g.push(env(vars::REDACT_ENV, secret_env_names(&g).join(",")));
                g
            },
            agent_env: {
                let mut a = warm_routes.0;
                if routed {
                    a.push(gateway::gateway_url_env());
                }
                a
            },
            creds: pool
                .spec
                .warm
                .as_ref()
                .and_then(|w| w.credentials_secret_ref.as_ref())
                .map(|r| r.name.clone()),
            image: tpl.image.clone(),
            resources: tpl.resources.clone(),
            warm: true,
            verdict_key: verdict_key.into(),
        },
    );
    let mut pod_labels = tpl.labels.clone();
    pod_labels.extend([
        ("app.kubernetes.io/name".to_string(), "paddock-runner".to_string()),
        ("app.kubernetes.io/managed-by".to_string(), "paddock".to_string()),
        (paddock_crds::LABEL_POOL.to_string(), pool_name.clone()),
        (paddock_crds::LABEL_WARM.to_string(), "idle".to_string()),
    ]);
    let mut annotations = tpl.annotations.clone();
    annotations.insert(
        ANNOTATION_TEMPLATE_HASH.into(),
        warm_template_hash(pool, verdict_key, uplink),
    );
    let mut owner = pool.controller_owner_ref(&()).unwrap_or_default();
    owner.block_owner_deletion = Some(true);
    let mut pod = Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{pool_name}-warm-")),
            namespace: pool.metadata.namespace.clone(),
            labels: Some(pod_labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    };
    if let Some(u) = uplink {
        apply_uplink(&mut pod, u);
    }
    pod
}

/// Why a run starts cold although its pool has warm pods (the `Running` condition says so).
pub fn warm_unsuitable(run: &AgentRun, pool: &RunnerPool) -> Option<String> {
    let warm = pool.spec.warm.as_ref()?;
    if warm.replicas == 0 {
        return Some("the pool keeps no warm pods".into());
    }
    if let Some(src) = &run.spec.resume_from {
        return Some(format!(
            "the run resumes {}'s session, which is mounted from a ConfigMap",
            src.name
        ));
    }
    if let Some(over) = &run.spec.runner {
        if over.image.is_some() {
            return Some("the run asks for another image".into());
        }
        if over.resources.is_some() {
            return Some("the run asks for other resources".into());
        }
    }
    let run_creds = run.spec.repo.credentials_secret_ref.as_ref().map(|r| &r.name);
    let warm_creds = warm.credentials_secret_ref.as_ref().map(|r| &r.name);
    if run_creds != warm_creds {
        return Some(match run_creds {
            Some(s) => format!("the run's git credentials Secret {s} is not the warm pods' one"),
            None => "the warm pods hold git credentials the run did not ask for".into(),
        });
    }
    if let Some(e) = run.spec.agent.env.iter().find(|e| e.value_from.is_some()) {
        return Some(format!(
            "spec.agent.env {} comes from a reference, which a running pod cannot take",
            e.name
        ));
    }
    None
}

/// The claim annotation's value for `run` ([`paddock_crds::runner::Claim`]): the run's
/// settings a cold pod would have had in its environment for attempt `attempt` ([`run_env`]),
/// beyond what the warm pod has from the pool; `prompt` is the prompt as read for the start
/// ([`PromptText`]).
///
/// # Errors
/// As [`run_env`].
pub fn claim_value(run: &AgentRun, pool: &RunnerPool, prompt: &PromptText, attempt: u32) -> Result<String, BuildError> {
    let run_env = run_env(run, pool, attempt, Prompt::Text(prompt.as_str().into()))?;
    // The warm pod has the pool's env already: only the run's own and the routed base URLs.
    let run_own: Vec<EnvVar> = run_env
        .agent_user
        .into_iter()
        .filter(|e| run.spec.agent.env.iter().any(|r| r.name == e.name) || e.name.ends_with("_BASE_URL"))
        .collect();
    // A warm pod's gateway also clones: it takes the trusted and the gateway variables.
    let trusted: Vec<EnvVar> = run_env.trusted.into_iter().chain(run_env.gateway).collect();
    Ok(Claim::of(&trusted, &merge_env(&[&run_own, &run_env.agent_own])).encode())
}

/// Largest claim annotation (bytes of base64); the API server allows 256 KiB of annotations
/// per object in total.
pub const MAX_CLAIM_BYTES: usize = 200 * 1024;

/// How a run's pod comes to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Claimed {
    /// This warm pod is now the run's.
    Pod(String),
    /// Create a pod (cold start); `Some(why)` when the pool has warm pods the run could not use.
    Cold(Option<String>),
}

/// Whether `pod` is running with every container ready (its `Ready` condition).
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// Idle warm pods of `pool` among `pods` that a run may claim now: ready, not terminating,
/// built from the pool's current template and `verdict_key`; oldest first.
pub fn claimable<'a>(
    pods: &'a [Pod],
    pool: &RunnerPool,
    verdict_key: &str,
    uplink: Option<&build::PodUplink>,
) -> Vec<&'a Pod> {
    let hash = warm_template_hash(pool, verdict_key, uplink);
    let mut out: Vec<&Pod> = pods
        .iter()
        .filter(|p| label(p, LABEL_WARM) == Some("idle"))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_TEMPLATE_HASH))
                == Some(&hash)
        })
        .filter(|p| pod_ready(p))
        .collect();
    out.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
    out
}

/// The merge patch that claims warm `pod` for `run`'s `attempt`, guarded by the pod's
/// resourceVersion: labels, the claim annotation and its `signature` (base64,
/// [`paddock_crds::verdict::ANNOTATION_CLAIM_SIGNATURE`]), owner, deadline (`now_secs`: Unix
/// seconds).
pub fn claim_patch(
    run: &AgentRun,
    pod: &Pod,
    attempt: u32,
    claim: &str,
    signature: &str,
    now_secs: i64,
) -> serde_json::Value {
    // activeDeadlineSeconds counts from the pod's start; the run's budget counts from now.
    let started = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map_or(now_secs, |t| t.0.as_second());
    let timeout = timeout_secs(run).unwrap_or(build::DEFAULT_TIMEOUT_SECS) as i64;
    serde_json::json!({
        "metadata": {
            "resourceVersion": pod.metadata.resource_version,
            "labels": {
                LABEL_WARM: "claimed",
                LABEL_RUN: run.metadata.name,
                LABEL_ATTEMPT: attempt.to_string(),
            },
            "annotations": {
                ANNOTATION_CLAIM: claim,
                paddock_crds::verdict::ANNOTATION_CLAIM_SIGNATURE: signature,
            },
            "ownerReferences": [owner_ref(run)],
        },
        "spec": { "activeDeadlineSeconds": (now_secs - started).max(0) + timeout },
    })
}

/// Claims a warm pod of `pool` for `run`'s `attempt`, or says why the run starts cold.
/// `prompt` is the prompt as read for the start.
///
/// # Errors
/// Transient API errors (listing or patching pods).
pub async fn claim(
    ctx: &Arc<Context>,
    run: &AgentRun,
    pool: &RunnerPool,
    attempt: u32,
    prompt: &PromptText,
    uplink: &build::PodUplink,
) -> Result<Claimed> {
    if pool.spec.warm.as_ref().is_none_or(|w| w.replicas == 0) {
        return Ok(Claimed::Cold(None));
    }
    if let Some(why) = warm_unsuitable(run, pool) {
        return Ok(Claimed::Cold(Some(why)));
    }
    let claim = match claim_value(run, pool, prompt, attempt) {
        Ok(c) => c,
        // build_pod refuses such a run first; a warm pod never runs it.
        Err(e) => return Ok(Claimed::Cold(Some(e.to_string()))),
    };
    if claim.len() > MAX_CLAIM_BYTES {
        return Ok(Claimed::Cold(Some(format!(
            "the run's settings ({} bytes encoded) do not fit in a pod annotation",
            claim.len()
        ))));
    }
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let pool_name = pool.metadata.name.as_deref().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("{LABEL_POOL}={pool_name},{LABEL_WARM}")))
        .await?;
    // Adopt the pod this attempt already claimed, if the operator stopped before recording it.
    let attempt_s = attempt.to_string();
    if let Some(p) = list.items.iter().find(|p| {
        label(p, LABEL_RUN) == run.metadata.name.as_deref()
            && label(p, LABEL_ATTEMPT) == Some(attempt_s.as_str())
            && p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| Some(&o.uid) == run.metadata.uid.as_ref())
    }) {
        return Ok(Claimed::Pod(p.metadata.name.clone().unwrap_or_default()));
    }
    let claiming = Claiming {
        ctx,
        run,
        pods: &pods,
        claim: &claim,
        attempt,
        now: k8s_openapi::jiff::Timestamp::now().as_second(),
    };
    // Oldest first, skipping the pods another claim of this process is patching right now;
    // those are tried last (that claim may fail).
    let mut busy = vec![];
    for pod in claimable(&list.items, pool, &ctx.verdict_key(), Some(uplink)) {
        let Some(_reserved) = ctx.admissions.reserve(pod.metadata.uid.as_deref().unwrap_or_default()) else {
            busy.push(pod);
            continue;
        };
        if let Some(name) = claiming.try_pod(pod).await? {
            return Ok(Claimed::Pod(name));
        }
    }
    for pod in busy {
        if let Some(name) = claiming.try_pod(pod).await? {
            return Ok(Claimed::Pod(name));
        }
    }
    Ok(Claimed::Cold(Some("no warm pod was ready".into())))
}

/// One run's claim of a warm pod, tried pod after pod ([`claim`]).
struct Claiming<'a> {
    ctx: &'a Arc<Context>,
    run: &'a AgentRun,
    pods: &'a Api<Pod>,
    claim: &'a str,
    attempt: u32,
    /// Unix seconds.
    now: i64,
}

impl Claiming<'_> {
    /// Claims `pod` (a merge patch guarded by its resourceVersion) and pushes the claim to it;
    /// `None` when another run claimed it first (409) or it is gone (404).
    async fn try_pod(&self, pod: &Pod) -> Result<Option<String>> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let signature = self.ctx.signer.sign(&paddock_crds::verdict::claim_message(
            self.claim,
            pod.metadata.uid.as_deref().unwrap_or_default(),
        ));
        let patch = claim_patch(self.run, pod, self.attempt, self.claim, &signature, self.now);
        let params = PatchParams {
            field_manager: Some(MANAGER_AGENTRUN.into()),
            ..Default::default()
        };
        match self.pods.patch(&name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        // Committed: now deliver it without waiting for the kubelet (best effort; the
        // annotation reaches the pod anyway).
        if let (Some(_), Some(addr)) = (&self.ctx.claim_push, claim_address(pod)) {
            let body = claim_push_body(self.claim, &signature);
            let pod_name = name.clone();
            tokio::spawn(async move {
                match push_claim(addr, body).await {
                    Ok(204) => tracing::debug!(pod = pod_name, "claim pushed"),
                    Ok(status) => tracing::warn!(pod = pod_name, status, "the warm pod refused its claim push"),
                    Err(e) => tracing::debug!(pod = pod_name, error = e, "claim push failed; the kubelet delivers it"),
                }
            });
        }
        Ok(Some(name))
    }
}

/// How long a claim push may take, connection included, before the operator gives up on it
/// (the kubelet then delivers the claim).
pub const CLAIM_PUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Where warm `pod`'s gateway takes its claim push: its pod IP, port
/// [`paddock_crds::runner::CLAIM_PORT`]; `None` without a (valid) IP.
pub fn claim_address(pod: &Pod) -> Option<std::net::SocketAddr> {
    let ip: std::net::IpAddr = pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
    Some(std::net::SocketAddr::new(ip, paddock_crds::runner::CLAIM_PORT))
}

/// The JSON body of a claim push ([`paddock_crds::runner::ClaimPush`]): the annotation's value
/// `claim` and its `signature`.
pub fn claim_push_body(claim: &str, signature: &str) -> String {
    serde_json::to_string(&paddock_crds::runner::ClaimPush {
        claim: claim.into(),
        signature: signature.into(),
    })
    .unwrap_or_default()
}

/// POSTs a claim push `body` to `addr` ([`paddock_crds::runner::CLAIM_PATH`], plain HTTP/1.1:
/// the claim is signed, and holds nothing the pod's annotations do not) within
/// [`CLAIM_PUSH_TIMEOUT`]. Returns the answer's status (`204` taken).
///
/// # Errors
/// The connection's, the request's or the timeout's error, as text (for the log).
pub async fn push_claim(addr: std::net::SocketAddr, body: String) -> std::result::Result<u16, String> {
    use http_body_util::Full;
    let send = async {
        let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = hyper::Request::post(paddock_crds::runner::CLAIM_PATH)
            .header(hyper::header::HOST, addr.to_string())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        Ok(resp.status().as_u16())
    };
    tokio::time::timeout(CLAIM_PUSH_TIMEOUT, send)
        .await
        .map_err(|_| format!("no answer within {CLAIM_PUSH_TIMEOUT:?}"))?
}

/// A pod status in `phase` whose `Ready` condition is `ready` (tests of warm pods).
#[cfg(test)]
pub(crate) fn pod_status(phase: &str, ready: bool) -> k8s_openapi::api::core::v1::PodStatus {
    k8s_openapi::api::core::v1::PodStatus {
        phase: Some(phase.into()),
        conditions: Some(vec![k8s_openapi::api::core::v1::PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use paddock_crds::{RunnerPoolSpec, RunnerTemplate};

    fn pool() -> RunnerPool {
        let mut p = RunnerPool::new(
            "p",
            RunnerPoolSpec {
                template: RunnerTemplate {
                    image: "runner:1".into(),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        p.metadata.namespace = Some("ns".into());
        p
    }

    fn warm_pod(name: &str, created: i64, ready: bool, pool: &RunnerPool) -> Pod {
        let mut p = build_warm_pod(pool, "test-key", None);
        p.metadata.name = Some(name.into());
        p.metadata.resource_version = Some(format!("rv-{name}"));
        p.metadata.creation_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::from_second(created).unwrap()));
        let mut st = pod_status("Running", ready);
        st.start_time = Some(Time(k8s_openapi::jiff::Timestamp::from_second(created + 2).unwrap()));
        p.status = Some(st);
        p
    }

    #[test]
    fn only_ready_idle_current_pods_are_claimable_oldest_first() {
        let p = pool();
        let mut stale = warm_pod("stale", 1, true, &p);
        stale
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(ANNOTATION_TEMPLATE_HASH.into(), "old".into());
        let mut claimed = warm_pod("claimed", 1, true, &p);
        claimed
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(LABEL_WARM.into(), "claimed".into());
        let pods = vec![
            warm_pod("young", 30, true, &p),
            warm_pod("starting", 5, false, &p),
            warm_pod("old", 10, true, &p),
            stale,
            claimed,
        ];
        let names: Vec<_> = claimable(&pods, &p, "test-key", None)
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["old", "young"]);
    }

    #[test]
    fn the_claim_moves_the_pod_to_the_run_under_its_resource_version() {
        let p = pool();
        let pod = warm_pod("w", 1000, true, &p);
        let mut run = AgentRun::new(
            "r1",
            serde_json::from_value(serde_json::json!({"repo": {"url": "https://x/r.git"}, "agent": {"name": "shell"}, "prompt": "p", "budget": {"timeout": "10m"}})).unwrap(),
        );
        run.metadata.uid = Some("run-uid".into());
        let patch = claim_patch(&run, &pod, 2, "Y2xhaW0=", "c2ln", 1100);
        let meta = &patch["metadata"];
        assert_eq!(meta["resourceVersion"], "rv-w");
        assert_eq!(meta["labels"][LABEL_WARM], "claimed");
        assert_eq!(meta["labels"][LABEL_RUN], "r1");
        assert_eq!(meta["labels"][LABEL_ATTEMPT], "2");
        assert_eq!(meta["annotations"][ANNOTATION_CLAIM], "Y2xhaW0=");
        assert_eq!(
            meta["annotations"][paddock_crds::verdict::ANNOTATION_CLAIM_SIGNATURE],
            "c2ln"
        );
        assert_eq!(meta["ownerReferences"][0]["uid"], "run-uid");
        assert_eq!(meta["ownerReferences"][0]["controller"], true);
        // Started at 1002, claimed at 1100: the 10-minute budget ends at 1100 + 600.
        assert_eq!(patch["spec"]["activeDeadlineSeconds"], 98 + 600);
    }

    /// A claim through a fake API server (its pod LIST and PATCH), with the warm pod's IP
    /// `127.0.0.3` where a stand-in gateway listens on the claim port.
    #[tokio::test]
    async fn a_committed_claim_is_pushed_to_the_pod_with_the_annotations_signature() {
        use std::sync::Mutex;
        let gateway = match tokio::net::TcpListener::bind(("127.0.0.3", paddock_crds::runner::CLAIM_PORT)).await {
            Ok(l) => l,
            Err(e) => panic!("127.0.0.3:15002 must be free for this test: {e}"),
        };
        let (pushed_tx, pushed_rx) = tokio::sync::oneshot::channel::<String>();
        let pushed_tx = Arc::new(Mutex::new(Some(pushed_tx)));
        let app = axum::Router::new().route(
            paddock_crds::runner::CLAIM_PATH,
            axum::routing::post(move |body: String| async move {
                if let Some(tx) = pushed_tx.lock().unwrap().take() {
                    let _ = tx.send(body);
                }
                axum::http::StatusCode::NO_CONTENT
            }),
        );
        tokio::spawn(async move { axum::serve(gateway, app).await });

        let mut p = pool();
        p.spec.warm = Some(serde_json::from_value(serde_json::json!({"replicas": 1})).unwrap());
        let uplink = build::PodUplink {
            proxy: "http://10.0.0.9:3128".into(),
            token: "t".into(),
        };
        let (store, _w) = kube::runtime::reflector::store::<AgentRun>();
        let patched: Arc<Mutex<Option<serde_json::Value>>> = Arc::default();
        let signer = Arc::new(paddock_crds::verdict::Signer::generate().unwrap());
        let mut pod = build_warm_pod(&p, &signer.public_key_b64(), Some(&uplink));
        pod.metadata.name = Some("p-warm-1".into());
        pod.metadata.uid = Some("pod-uid".into());
        pod.metadata.resource_version = Some("7".into());
        pod.status = Some(pod_status("Running", true));
        pod.status.as_mut().unwrap().pod_ip = Some("127.0.0.3".into());
        let list = serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [pod]});
        let svc = tower::service_fn({
            let (patched, pod) = (patched.clone(), serde_json::to_value(&pod).unwrap());
            move |req: http::Request<kube::client::Body>| {
                let (patched, list, pod) = (patched.clone(), list.clone(), pod.clone());
                async move {
                    let is_patch = req.method() == http::Method::PATCH;
                    let body = req.into_body().collect_bytes().await.unwrap_or_default();
                    let answer = if is_patch {
                        *patched.lock().unwrap() = serde_json::from_slice(&body).ok();
                        pod
                    } else {
                        list
                    };
                    Ok::<_, std::convert::Infallible>(
                        http::Response::builder()
                            .header("content-type", "application/json")
                            .body(kube::client::Body::from(serde_json::to_vec(&answer).unwrap()))
                            .unwrap(),
                    )
                }
            }
        });
        let mut ctx = Context::new(kube::Client::new(svc, "default"), Arc::default(), store, "test".into());
        ctx.signer = signer;
        ctx.claim_push = Some(crate::context::ClaimPushFrom::parse("paddock-system", "app=paddock").unwrap());
        let ctx = Arc::new(ctx);
        let mut run = AgentRun::new(
            "r1",
            serde_json::from_value(
                serde_json::json!({"repo": {"url": "https://x/r.git"}, "agent": {"name": "shell"}, "prompt": "p"}),
            )
            .unwrap(),
        );
        run.metadata.namespace = Some("ns".into());
        run.metadata.uid = Some("run-uid".into());

        let prompt = PromptText::from_config_map("do it".into());
        let claimed = claim(&ctx, &run, &p, 1, &prompt, &uplink).await.unwrap();
        assert_eq!(claimed, Claimed::Pod("p-warm-1".into()));
        let body = tokio::time::timeout(std::time::Duration::from_secs(5), pushed_rx)
            .await
            .expect("the claim is pushed right after the PATCH")
            .unwrap();
        let push: paddock_crds::runner::ClaimPush = serde_json::from_str(&body).unwrap();
        let annotations = patched.lock().unwrap().clone().unwrap()["metadata"]["annotations"].clone();
        // The push carries exactly what the PATCH committed, signed for this pod.
        assert_eq!(annotations[ANNOTATION_CLAIM], push.claim.as_str());
        assert_eq!(
            annotations[paddock_crds::verdict::ANNOTATION_CLAIM_SIGNATURE],
            push.signature.as_str()
        );
        assert!(paddock_crds::verdict::verify(
            &ctx.verdict_key(),
            &paddock_crds::verdict::claim_message(&push.claim, "pod-uid"),
            &push.signature
        ));
        assert_eq!(Claim::decode(&push.claim).unwrap().agent[vars::PROMPT], "do it");
    }

    #[tokio::test]
    async fn a_push_nobody_takes_is_an_error_for_the_log_not_a_hang() {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        assert!(push_claim(addr, "{}".into()).await.is_err());
        let mut pod = Pod::default();
        assert_eq!(claim_address(&pod), None, "no status yet");
        pod.status = Some(pod_status("Running", true));
        pod.status.as_mut().unwrap().pod_ip = Some("fd00::5".into());
        assert_eq!(claim_address(&pod).unwrap().to_string(), "[fd00::5]:15002");
    }
}
