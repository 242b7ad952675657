//! A pool's egress gateway and the NetworkPolicies that make it the runner pods' only way out
//! ([`paddock_crds::egress`], docs/security.md "Egress"). Desired objects are pure
//! ([`desired`]); [`reconcile_egress`] server-side applies them (field manager
//! [`MANAGER_POOL`]), owned by the pool, only when they changed since this process last applied
//! them.
//!
//! - Deployment and Service `<pool>-egress` (ClusterIP, port 3128): `paddock-runner egress` in
//!   the pool's image, restricted Pod Security, no service account token.
//! - NetworkPolicy `<pool>-runners`: the pool's runner pods (cold and warm) may open connections
//!   only to the pool's egress gateway pods on TCP 3128 (no DNS, no Service, node, API server or
//!   metadata address) and accept none, except the operator's own pods on TCP 15002 when it
//!   pushes warm claims (`--operator-pod-selector`; [`claim_ingress`]).
//! - NetworkPolicy `<pool>-egress`: the egress gateway accepts connections only from the pool's
//!   runner pods, on TCP 3128.

use crate::context::{ClaimPushFrom, Context, EgressApplied, MANAGER_POOL};
use crate::error::Result;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements,
    SeccompProfile, SecurityContext, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, Patch, PatchParams};
use kube::Resource;
use paddock_crds::egress::{self as contract, PORT};
use paddock_crds::RunnerPool;
use std::collections::BTreeMap;

pub use paddock_crds::egress::PodUplink;

/// The four objects of a pool's egress gateway.
#[derive(Clone, Debug, PartialEq)]
pub struct EgressObjects {
    /// `<pool>-egress`.
    pub deployment: Deployment,
    /// `<pool>-egress`, ClusterIP.
    pub service: Service,
    /// `<pool>-runners`.
    pub runners_policy: NetworkPolicy,
    /// `<pool>-egress`.
    pub gateway_policy: NetworkPolicy,
}

/// UID and GID the runner's containers run as, the egress gateway's too (the runner image's
/// `paddock` user).
pub const RUNNER_UID: i64 = 1000;

/// Resource quantities from `(name, value)` pairs, e.g. `[("cpu", "50m")]`.
pub fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

/// Labels selecting the pool's runner pods (cold and warm; [`crate::controller::agentrun::build`]).
pub fn runner_labels(pool: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), contract::RUNNER_APP_NAME.into()),
        (paddock_crds::LABEL_POOL.into(), pool.into()),
    ])
}

/// Labels of the pool's egress gateway pods.
pub fn gateway_labels(pool: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), contract::APP_NAME.into()),
        (paddock_crds::LABEL_POOL.into(), pool.into()),
    ])
}

fn selector(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels),
        ..Default::default()
    }
}

fn port_3128() -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(PORT))),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// The runner pods' one ingress rule when the operator pushes warm claims: from the operator's
/// pods (`from`), to TCP [`paddock_crds::runner::CLAIM_PORT`] (the idle warm gateway's claim
/// listener, closed once claimed).
pub fn claim_ingress(from: &ClaimPushFrom) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(selector(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                from.namespace.clone(),
            )]))),
            pod_selector: Some(selector(from.pod_labels.clone())),
            ..Default::default()
        }]),
        ports: Some(vec![NetworkPolicyPort {
            port: Some(IntOrString::Int(i32::from(paddock_crds::runner::CLAIM_PORT))),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    }
}

/// The desired objects of `pool`'s egress gateway serving `token`. With `claims_from` (the
/// operator's pods, when it pushes warm claims), the runner pods admit those pods on TCP
/// [`paddock_crds::runner::CLAIM_PORT`] and nothing else.
pub fn desired(pool: &RunnerPool, token: &str, claims_from: Option<&ClaimPushFrom>) -> EgressObjects {
    let name = pool.metadata.name.clone().unwrap_or_default();
    let gw = contract::gateway_name(&name);
    let mut owner: OwnerReference = pool.controller_owner_ref(&()).unwrap_or_default();
    owner.block_owner_deletion = Some(true);
    let meta = |n: String, labels: BTreeMap<String, String>| ObjectMeta {
        name: Some(n),
        namespace: pool.metadata.namespace.clone(),
        labels: Some(labels),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    };
    let mut object_labels = gateway_labels(&name);
    object_labels.insert("app.kubernetes.io/managed-by".into(), "paddock".into());
    let tpl = &pool.spec.template;
    let container = Container {
        name: "egress".into(),
        image: Some(tpl.image.clone()),
        image_pull_policy: Some(tpl.image_pull_policy.clone().unwrap_or_else(|| "IfNotPresent".into())),
        args: Some(vec!["egress".into()]),
        env: Some(vec![EnvVar {
            name: contract::TOKEN_ENV.into(),
            value: Some(token.into()),
            value_from: None,
        }]),
        ports: Some(vec![ContainerPort {
            name: Some("proxy".into()),
            container_port: i32::from(PORT),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(k8s_openapi::api::core::v1::Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&[("cpu", "20m"), ("memory", "32Mi")])),
            limits: Some(quantities(&[("cpu", "1"), ("memory", "256Mi")])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let deployment = Deployment {
        metadata: meta(gw.clone(), object_labels.clone()),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: selector(gateway_labels(&name)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(object_labels.clone()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUNNER_UID),
                        run_as_group: Some(RUNNER_UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            localhost_profile: None,
                        }),
                        ..Default::default()
                    }),
                    containers: vec![container],
                    runtime_class_name: tpl.runtime_class_name.clone(),
                    node_selector: (!tpl.node_selector.is_empty()).then(|| tpl.node_selector.clone()),
                    tolerations: (!tpl.tolerations.is_empty()).then(|| tpl.tolerations.clone()),
                    termination_grace_period_seconds: Some(5),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    };
    let service = Service {
        metadata: meta(gw.clone(), object_labels.clone()),
        spec: Some(ServiceSpec {
            selector: Some(gateway_labels(&name)),
            ports: Some(vec![ServicePort {
                name: Some("proxy".into()),
                port: i32::from(PORT),
                target_port: Some(IntOrString::Int(i32::from(PORT))),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    };
    let runners_policy = NetworkPolicy {
        metadata: meta(contract::runners_policy_name(&name), object_labels.clone()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(runner_labels(&name))),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(claims_from.map(claim_ingress).into_iter().collect()),
            egress: Some(vec![NetworkPolicyEgressRule {
                to: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(selector(gateway_labels(&name))),
                    ..Default::default()
                }]),
                ports: Some(vec![port_3128()]),
            }]),
        }),
    };
    let gateway_policy = NetworkPolicy {
        metadata: meta(contract::gateway_policy_name(&name), object_labels),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(gateway_labels(&name))),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(selector(runner_labels(&name))),
                    ..Default::default()
                }]),
                ports: Some(vec![port_3128()]),
            }]),
            egress: None,
        }),
    };
    EgressObjects {
        deployment,
        service,
        runners_policy,
        gateway_policy,
    }
}

/// The pool's token, derived from the operator's key ([`contract::token_message`]).
pub fn token(ctx: &Context, pool: &RunnerPool) -> String {
    let message = contract::token_message(
        pool.metadata.namespace.as_deref().unwrap_or_default(),
        pool.metadata.name.as_deref().unwrap_or_default(),
        pool.metadata.uid.as_deref().unwrap_or_default(),
    );
    contract::token_from_signature(&ctx.signer.sign(&message))
}

fn fingerprint(objects: &EgressObjects) -> u64 {
    let input = serde_json::to_string(&(
        &objects.deployment,
        &objects.service,
        &objects.runners_policy,
        &objects.gateway_policy,
    ))
    .unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in input.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

async fn apply<K>(api: Api<K>, name: &str, obj: &K) -> Result<K>
where
    K: Resource<DynamicType = ()> + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut value = serde_json::to_value(obj)?;
    value["apiVersion"] = K::api_version(&()).into();
    value["kind"] = K::kind(&()).into();
    Ok(api
        .patch(name, &PatchParams::apply(MANAGER_POOL).force(), &Patch::Apply(&value))
        .await?)
}

/// Whether the egress gateway Deployment has a pod that is available (its status).
fn available(d: &Deployment) -> bool {
    d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0) > 0
}

/// Applies `pool`'s egress gateway and policies when they differ from what this process last
/// applied, and returns the pods' uplink (the Service's cluster IP and the token) once the
/// gateway has an available pod; `None` until then (a runner pod started earlier could find
/// nothing behind the Service).
///
/// # Errors
/// Transient API errors.
pub async fn reconcile_egress(pool: &RunnerPool, ctx: &Context) -> Result<Option<PodUplink>> {
    Ok(reconcile_egress_state(pool, ctx).await?.uplink())
}

/// Where a pool's egress gateway stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Egress {
    /// Applied, with an available pod: the runner pods' uplink.
    Ready(PodUplink),
    /// Applied (or being applied); no available pod yet.
    NotReady,
    /// An object the gateway needs exists and belongs to something else (its owner references
    /// do not name the pool): the operator does not take it over. The message names it.
    NameTaken(String),
}

impl Egress {
    /// The uplink when ready.
    pub fn uplink(self) -> Option<PodUplink> {
        match self {
            Egress::Ready(u) => Some(u),
            _ => None,
        }
    }
}

/// [`reconcile_egress`], saying why there is no uplink.
///
/// # Errors
/// Transient API errors.
pub async fn reconcile_egress_state(pool: &RunnerPool, ctx: &Context) -> Result<Egress> {
    // A pool being deleted (with its namespace, say) gets nothing new: the API server would
    // refuse it, and each refusal would wake the pool again.
    if pool.metadata.deletion_timestamp.is_some() {
        return Ok(Egress::NotReady);
    }
    match apply_egress(pool, ctx).await {
        Err(crate::error::Error::Kube(kube::Error::Api(e)))
            if e.code == 403 && e.message.contains("being terminated") =>
        {
            Ok(Egress::NotReady)
        }
        other => other,
    }
}

/// Whether `existing` belongs to another owner than the pool of UID `pool_uid` (no owner
/// reference naming the pool): such an object is never taken over. Pure.
pub fn foreign(existing: &ObjectMeta, pool_uid: &str) -> bool {
    !existing.owner_references.iter().flatten().any(|o| o.uid == pool_uid)
}

/// The first of the pool's egress objects that exists and is someone else's, as
/// `Kind/name`.
async fn name_taken(pool: &RunnerPool, ctx: &Context) -> Result<Option<String>> {
    let ns = pool.metadata.namespace.clone().unwrap_or_default();
    let name = pool.metadata.name.clone().unwrap_or_default();
    let uid = pool.metadata.uid.clone().unwrap_or_default();
    let gw = contract::gateway_name(&name);
    let c = ctx.client.clone();
    for policy in [
        contract::runners_policy_name(&name),
        contract::gateway_policy_name(&name),
    ] {
        if let Some(o) = Api::<NetworkPolicy>::namespaced(c.clone(), &ns)
            .get_opt(&policy)
            .await?
        {
            if foreign(&o.metadata, &uid) {
                return Ok(Some(format!("NetworkPolicy/{policy}")));
            }
        }
    }
    if let Some(o) = Api::<Deployment>::namespaced(c.clone(), &ns).get_opt(&gw).await? {
        if foreign(&o.metadata, &uid) {
            return Ok(Some(format!("Deployment/{gw}")));
        }
    }
    if let Some(o) = Api::<Service>::namespaced(c, &ns).get_opt(&gw).await? {
        if foreign(&o.metadata, &uid) {
            return Ok(Some(format!("Service/{gw}")));
        }
    }
    Ok(None)
}

async fn apply_egress(pool: &RunnerPool, ctx: &Context) -> Result<Egress> {
    let ns = pool.metadata.namespace.clone().unwrap_or_default();
    let name = pool.metadata.name.clone().unwrap_or_default();
    let key = format!("{ns}/{name}");
    let token = token(ctx, pool);
    let objects = desired(pool, &token, ctx.claim_push.as_ref());
    let fp = fingerprint(&objects);
    let client = ctx.client.clone();
    let gw = contract::gateway_name(&name);
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    if let Some(applied) = ctx.egress_applied(&key).filter(|a| a.fingerprint == fp) {
        return recheck(ctx, &key, applied, &deployments, &gw).await;
    }
    // One apply at a time per pool: the reconciles that waited here find it applied.
    let lock = ctx.egress_apply_lock(&key);
    let _applying = lock.lock().await;
    if let Some(applied) = ctx.egress_applied(&key).filter(|a| a.fingerprint == fp) {
        return recheck(ctx, &key, applied, &deployments, &gw).await;
    }
    // Only objects the pool owns (or new ones) are applied: a server-side apply would take
    // over a same-named object of someone else's (docs/security.md).
    if let Some(taken) = name_taken(pool, ctx).await? {
        return Ok(Egress::NameTaken(format!(
            "{taken} exists and does not belong to RunnerPool {name}; rename the pool or remove that object"
        )));
    }
    // Policies first: no runner pod of the pool is ever unconfined once the gateway exists.
    apply(
        Api::<NetworkPolicy>::namespaced(client.clone(), &ns),
        &contract::runners_policy_name(&name),
        &objects.runners_policy,
    )
    .await?;
    apply(
        Api::<NetworkPolicy>::namespaced(client.clone(), &ns),
        &contract::gateway_policy_name(&name),
        &objects.gateway_policy,
    )
    .await?;
    let deployment = apply(deployments, &gw, &objects.deployment).await?;
    let svc = apply(Api::<Service>::namespaced(client, &ns), &gw, &objects.service).await?;
    let Some(ip) = svc
        .spec
        .and_then(|s| s.cluster_ip)
        .filter(|ip| !ip.is_empty() && ip != "None")
    else {
        return Ok(Egress::NotReady);
    };
    let uplink = PodUplink {
        proxy: format!("http://{ip}:{PORT}"),
        token,
    };
    let ready = available(&deployment);
    ctx.set_egress_applied(
        &key,
        EgressApplied {
            fingerprint: fp,
            uplink: uplink.clone(),
            ready,
        },
    );
    Ok(if ready { Egress::Ready(uplink) } else { Egress::NotReady })
}

/// The egress of a pool whose objects this process applied as they are now (`applied`): ready
/// as last read, or read again from the gateway Deployment `gw` while it was not.
///
/// # Errors
/// Transient API errors.
async fn recheck(
    ctx: &Context,
    key: &str,
    applied: EgressApplied,
    deployments: &Api<Deployment>,
    gw: &str,
) -> Result<Egress> {
    if applied.ready {
        return Ok(Egress::Ready(applied.uplink));
    }
    let ready = deployments.get_opt(gw).await?.is_some_and(|d| available(&d));
    ctx.set_egress_applied(
        key,
        EgressApplied {
            ready,
            ..applied.clone()
        },
    );
    Ok(if ready {
        Egress::Ready(applied.uplink)
    } else {
        Egress::NotReady
    })
}

/// Records `pool`'s egress gateway as applied by this process and ready with `uplink`, so a
/// reconcile test's run finds its way out without the egress objects' API calls.
#[cfg(test)]
pub(crate) fn assume_ready(ctx: &Context, pool: &RunnerPool, uplink: PodUplink) {
    let key = format!(
        "{}/{}",
        pool.metadata.namespace.as_deref().unwrap_or_default(),
        pool.metadata.name.as_deref().unwrap_or_default()
    );
    let fingerprint = fingerprint(&desired(pool, &token(ctx, pool), ctx.claim_push.as_ref()));
    ctx.set_egress_applied(
        &key,
        EgressApplied {
            fingerprint,
            uplink,
            ready: true,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> RunnerPool {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "paddock.dev/v1alpha1", "kind": "RunnerPool",
            "metadata": {"name": "p1", "namespace": "team-a", "uid": "u-1"},
            "spec": {"template": {"image": "paddock-runner:dev"}}
        }))
        .unwrap()
    }

    /// The run reconciles that find a pool's egress unapplied at once (a new pool: each of its
    /// waiting runs wakes with it) apply its 4 objects once between them, not once each.
    #[tokio::test]
    async fn concurrent_reconciles_apply_a_new_pools_egress_once() {
        let patches = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = patches.clone();
        // A fake API server: a server-side apply is answered with its own body (a Service with a
        // cluster IP, a Deployment with no available pod yet), anything else is NotFound.
        let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let seen = seen.clone();
            async move {
                let (method, path) = (req.method().clone(), req.uri().path().to_string());
                let body = req.into_body().collect_bytes().await.unwrap_or_default();
                let (code, obj) = if method == http::Method::PATCH {
                    seen.lock().unwrap().push(path.clone());
                    let mut obj: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    if path.contains("/services/") {
                        obj["spec"]["clusterIP"] = "10.96.0.10".into();
                    }
                    (200, obj)
                } else {
                    let status = serde_json::json!({"kind": "Status", "apiVersion": "v1",
                        "status": "Failure", "reason": "NotFound", "code": 404});
                    (404, status)
                };
                let resp = http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(serde_json::to_vec(&obj).unwrap()))
                    .unwrap();
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        let (store, _writer) = kube::runtime::reflector::store::<paddock_crds::AgentRun>();
        let ctx = Context::new(
            kube::Client::new(svc, "default"),
            Default::default(),
            store,
            "test".into(),
        );
        let pool = pool();

        let all = futures::future::join_all((0..8).map(|_| reconcile_egress_state(&pool, &ctx))).await;
        for egress in all {
            assert_eq!(egress.unwrap(), Egress::NotReady, "no available gateway pod yet");
        }
        let applied = patches.lock().unwrap().clone();
        assert_eq!(applied.len(), 4, "one apply of each object: {applied:#?}");
        // Applied, not ready: the next reconcile reads the Deployment, and writes nothing.
        assert_eq!(reconcile_egress_state(&pool, &ctx).await.unwrap(), Egress::NotReady);
        assert_eq!(patches.lock().unwrap().len(), 4);
    }

    #[test]
    fn an_object_not_naming_the_pool_as_owner_is_someone_elses() {
        let o = desired(&pool(), "tok", None);
        assert!(!foreign(&o.service.metadata, "u-1"), "the pool's own");
        assert!(foreign(&o.service.metadata, "u-2"), "another pool's of the same name");
        assert!(foreign(&ObjectMeta::default(), "u-1"), "a user's, with no owner");
    }

    #[test]
    fn with_claim_pushes_runner_pods_admit_only_the_operators_pods_on_the_claim_port() {
        let from = ClaimPushFrom::parse(
            "paddock-system",
            "app.kubernetes.io/name=paddock, app.kubernetes.io/component=operator",
        )
        .unwrap();
        let np = desired(&pool(), "tok", Some(&from)).runners_policy.spec.unwrap();
        let ingress = np.ingress.unwrap();
        assert_eq!(ingress.len(), 1);
        let peer = &ingress[0].from.as_ref().unwrap()[0];
        assert_eq!(
            peer.namespace_selector.clone().unwrap().match_labels.unwrap(),
            BTreeMap::from([("kubernetes.io/metadata.name".to_string(), "paddock-system".to_string())]),
            "the operator's namespace only, not the pool's"
        );
        assert_eq!(
            peer.pod_selector.clone().unwrap().match_labels.unwrap(),
            from.pod_labels
        );
        assert!(peer.ip_block.is_none());
        let ports = ingress[0].ports.clone().unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].port, Some(IntOrString::Int(15002)));
        // The egress rule is unchanged.
        assert_eq!(np.egress.unwrap().len(), 1);
        // Selectors that would admit more than the operator are refused at start.
        assert!(ClaimPushFrom::parse("ns", "").is_err());
        assert!(ClaimPushFrom::parse("ns", "app in (a,b)").is_err());
        assert!(ClaimPushFrom::parse("ns", "app!=x").is_err());
        assert!(ClaimPushFrom::parse("ns", "app==x").is_err());
        assert!(ClaimPushFrom::parse("", "app=x").is_err());
    }

    #[test]
    fn runner_pods_may_reach_only_their_pools_egress_gateway() {
        let o = desired(&pool(), "tok", None);
        let np = o.runners_policy.spec.unwrap();
        assert_eq!(np.pod_selector.unwrap().match_labels.unwrap(), runner_labels("p1"));
        assert_eq!(np.policy_types.unwrap(), ["Ingress", "Egress"]);
        assert_eq!(np.ingress.unwrap(), vec![], "nothing may connect to a runner pod");
        let egress = np.egress.unwrap();
        assert_eq!(egress.len(), 1, "one rule: no DNS, no ipBlock");
        let to = egress[0].to.clone().unwrap();
        assert_eq!(to.len(), 1);
        assert!(to[0].ip_block.is_none() && to[0].namespace_selector.is_none());
        assert_eq!(
            to[0].pod_selector.clone().unwrap().match_labels.unwrap(),
            gateway_labels("p1")
        );
        assert_eq!(egress[0].ports.clone().unwrap(), vec![port_3128()]);
        // The gateway admits only the pool's runner pods.
        let gp = o.gateway_policy.spec.unwrap();
        let from = gp.ingress.unwrap()[0].from.clone().unwrap();
        assert_eq!(
            from[0].pod_selector.clone().unwrap().match_labels.unwrap(),
            runner_labels("p1")
        );
        // The Deployment's pods are the ones the policies select, and hold the token.
        let d = o.deployment.spec.unwrap();
        let labels = d.template.metadata.unwrap().labels.unwrap();
        assert!(gateway_labels("p1").iter().all(|(k, v)| labels.get(k) == Some(v)));
        let c = &d.template.spec.unwrap().containers[0];
        assert_eq!(c.args.clone().unwrap(), ["egress"]);
        assert_eq!(c.env.clone().unwrap()[0].value.as_deref(), Some("tok"));
        assert_eq!(o.service.spec.unwrap().selector.unwrap(), gateway_labels("p1"));
        assert_eq!(
            o.service.metadata.owner_references.unwrap()[0].uid,
            "u-1",
            "owned by the pool"
        );
    }
}
