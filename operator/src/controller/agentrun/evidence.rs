//! An ended run's evidence (issue 21, docs/evidence.md): the policy snapshot recorded at
//! admission, the signed bundle uploaded to the archive, the finalizer that keeps a run until
//! its bundle is archived, and `spec.ttlSecondsAfterFinished`.
//!
//! Order of an ended run's reconciles: (1) with an archive configured and `status.archive`
//! unset, assemble the bundle ([`paddock_evidence::gather`]), sign it (DSSE, the evidence key)
//! and upload it, then record `status.archive` (field manager [`MANAGER_EVIDENCE`]); a
//! failure is retried with backoff ([`retry_after`]) and counted in `paddock_archive_backlog`,
//! and the run's end is never delayed by it (the terminal status was written before). (2) Once
//! archived (or without an archive), a TTL that has passed deletes the run. The finalizer
//! [`FINALIZER`] (added while the run goes on) holds any deletion until (1) is done.

use crate::context::{Context, MANAGER_EVIDENCE};
use crate::error::Result;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use paddock_crds::evidence::FINALIZER;
use paddock_crds::{AgentRun, RunnerPool};
use paddock_crds::{ArchiveStatus, PolicySnapshot, PoolIdentity};
use paddock_evidence::{bundle, dsse, Archive};
use std::collections::HashMap;
use std::time::Duration;

use crate::evidence::retry_after;

/// Whether `run` still needs [`FINALIZER`] added: an archive is configured, the run is not
/// being deleted, has no `status.archive` and lacks the finalizer. Pure.
pub fn needs_finalizer(run: &AgentRun, archive_configured: bool) -> bool {
    archive_configured
        && run.metadata.deletion_timestamp.is_none()
        && run.status.as_ref().is_none_or(|s| s.archive.is_none())
        && !has_finalizer(run)
}

fn has_finalizer(run: &AgentRun) -> bool {
    run.metadata.finalizers.iter().flatten().any(|f| f == FINALIZER)
}

/// Adds [`FINALIZER`] to a run that [`needs_finalizer`] (a JSON patch that tests the list it
/// extends, as kube-runtime's `finalizer` helper does; unlike that helper, the reconcile goes
/// on in the same pass instead of waiting for the watch to show the change, which would delay
/// every run's start).
///
/// # Errors
/// API errors (a conflict is retried by the controller).
pub async fn ensure_finalizer(run: &AgentRun, ctx: &Context) -> Result<()> {
    if !needs_finalizer(run, ctx.evidence.archive.is_some()) {
        return Ok(());
    }
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let name = run.metadata.name.as_deref().unwrap_or_default();
    let patch = match &run.metadata.finalizers {
        None => serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ]),
        Some(list) => serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": list},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ]),
    };
    let patch: json_patch::Patch = serde_json::from_value(patch)?;
    let api: Api<AgentRun> = Api::namespaced(ctx.client.clone(), ns);
    match api
        .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
    {
        // The `test` failed: the list changed since this cached copy (the finalizer may be
        // there already). Not an error: that change wakes the run again, with the list as it is.
        Err(kube::Error::Api(e)) if e.code == 422 => Ok(()),
        Err(e) => Err(e.into()),
        Ok(_) => Ok(()),
    }
}

/// Removes [`FINALIZER`] (JSON patch testing the entry it removes).
async fn remove_finalizer(run: &AgentRun, ctx: &Context) -> Result<()> {
    let Some(i) = run.metadata.finalizers.iter().flatten().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let name = run.metadata.name.as_deref().unwrap_or_default();
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{i}")},
    ]))?;
    let api: Api<AgentRun> = Api::namespaced(ctx.client.clone(), ns);
    match api
        .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Assembles, signs and uploads `run`'s bundle; records `status.archive`. Returns `None` when
/// it is archived now, else when to try again (the failure is logged, counted and, the first
/// time, published as a Warning Event `ArchiveFailed`).
async fn archive_run(run: &AgentRun, ctx: &Context, archive: &Archive) -> Result<Option<Duration>> {
    let ns = run.metadata.namespace.clone().unwrap_or_default();
    let name = run.metadata.name.clone().unwrap_or_default();
    let uid = run.metadata.uid.clone().unwrap_or_default();
    // Backing off: a reconcile woken by another change does not upload again before its time.
    let waiting = ctx
        .evidence
        .backlog()
        .get(&uid)
        .map(|p| p.next.saturating_duration_since(std::time::Instant::now()))
        .filter(|d| !d.is_zero());
    if let Some(wait) = waiting {
        return Ok(Some(wait));
    }
    let metrics = &ctx.state.metrics;
    let result = async {
        // The run as the API server has it: the cache's copy has no spec.prompt.
        let full = Api::<AgentRun>::namespaced(ctx.client.clone(), &ns)
            .get(&name)
            .await
            .map_err(|e| format!("reading the run: {e}"))?;
        if full.metadata.uid.as_deref() != Some(uid.as_str()) {
            return Err(format!("AgentRun {ns}/{name} was deleted and created again"));
        }
        let b = paddock_evidence::gather::gather(
            &ctx.client,
            &full,
            concat!("paddock-operator/", env!("CARGO_PKG_VERSION")),
        )
        .await
        .map_err(|e| format!("reading the run's evidence: {e}"))?;
        let envelope = dsse::sign(&ctx.evidence.signer, bundle::PAYLOAD_TYPE, &b.to_json());
        let bytes = serde_json::to_vec(&envelope).map_err(|e| e.to_string())?;
        let (url, digest) = archive.put(&ns, &name, &uid, bytes).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(ArchiveStatus {
            url,
            digest,
            key_id: ctx.evidence.key_id(),
            archived_at: Time(k8s_openapi::jiff::Timestamp::now()),
        })
    }
    .await;
    match result {
        Ok(st) => {
            let api: Api<AgentRun> = Api::namespaced(ctx.client.clone(), &ns);
            let patch = serde_json::json!({
                "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
                "status": {"archive": st},
            });
            api.patch_status(
                &name,
                &PatchParams::apply(MANAGER_EVIDENCE).force(),
                &Patch::Apply(&patch),
            )
            .await?;
            metrics
                .archive_uploads
                .get_or_create(&crate::metrics::Labels::new().with("result", "success"))
                .inc();
            tracing::info!(namespace = %ns, run = %name, url = %st.url, digest = %st.digest, "evidence archived");
            let mut backlog = ctx.evidence.backlog();
            backlog.remove(&uid);
            prune(&mut backlog, ctx);
            metrics.archive_backlog.set(backlog.len() as i64);
            Ok(None)
        }
        Err(why) => {
            metrics
                .archive_uploads
                .get_or_create(&crate::metrics::Labels::new().with("result", "error"))
                .inc();
            let failures = {
                let mut backlog = ctx.evidence.backlog();
                let n = backlog.entry(uid).or_insert(crate::evidence::Pending {
                    failures: 0,
                    next: std::time::Instant::now(),
                });
                n.failures += 1;
                n.next = std::time::Instant::now() + retry_after(n.failures);
                let failures = n.failures;
                prune(&mut backlog, ctx);
                metrics.archive_backlog.set(backlog.len() as i64);
                failures
            };
            let wait = retry_after(failures);
            tracing::warn!(namespace = %ns, run = %name, failures, retry_in_secs = wait.as_secs(), error = %why, "evidence not archived");
            if failures == 1 {
                ctx.publish(
                    run,
                    EventType::Warning,
                    "ArchiveFailed",
                    format!(
                        "the evidence bundle could not be uploaded to {} (retried with backoff; the run is kept until it is): {why}",
                        archive.url()
                    ),
                )
                .await;
            }
            Ok(Some(wait))
        }
    }
}

/// Drops backlog entries of runs the cache no longer has (deleted by other means).
fn prune(backlog: &mut HashMap<String, crate::evidence::Pending>, ctx: &Context) {
    if backlog.is_empty() {
        return;
    }
    let live: std::collections::HashSet<String> =
        ctx.runs.state().iter().filter_map(|r| r.metadata.uid.clone()).collect();
    backlog.retain(|uid, _| live.contains(uid));
}

/// The TTL that applies to `run`: its own `spec.ttlSecondsAfterFinished`, else the pool's as
/// recorded in its policy snapshot, else the live pool's (`pool`). Pure.
pub fn ttl_secs(run: &AgentRun, pool: Option<&RunnerPool>) -> Option<i64> {
    run.spec
        .ttl_seconds_after_finished
        .or_else(|| {
            run.status
                .as_ref()
                .and_then(|s| s.policy.as_ref())
                .and_then(|p| p.pool_spec.ttl_seconds_after_finished)
        })
        .or_else(|| pool.and_then(|p| p.spec.ttl_seconds_after_finished))
        .map(|t| i64::from(t.max(0)))
}

/// An ended run: archive its evidence (when configured and not done), then apply its TTL.
///
/// # Errors
/// API errors.
pub async fn settle(run: &AgentRun, ctx: &Context) -> Result<Action> {
    let mut next: Option<Duration> = None;
    let mut archived = run.status.as_ref().is_some_and(|s| s.archive.is_some());
    if let (Some(archive), false) = (&ctx.evidence.archive, archived) {
        next = archive_run(run, ctx, archive).await?;
        archived = next.is_none();
    }
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let name = run.metadata.name.as_deref().unwrap_or_default();
    let pool =
        if run.spec.ttl_seconds_after_finished.is_none() && run.status.as_ref().is_none_or(|s| s.policy.is_none()) {
            let pools: Api<RunnerPool> = Api::namespaced(ctx.client.clone(), ns);
            pools.get_opt(super::build::pool_name(run)).await?
        } else {
            None
        };
    let Some(ttl) = ttl_secs(run, pool.as_ref()) else {
        return Ok(next.map(Action::requeue).unwrap_or_else(Action::await_change));
    };
    if ctx.evidence.archive.is_some() && !archived {
        // The TTL waits for the upload (retried above).
        return Ok(Action::requeue(next.unwrap_or(retry_after(1))));
    }
    let ended = run
        .status
        .as_ref()
        .and_then(|s| s.completion_time.as_ref())
        .map(|t| t.0.as_second())
        .unwrap_or_else(|| k8s_openapi::jiff::Timestamp::now().as_second());
    let left = ended + ttl - k8s_openapi::jiff::Timestamp::now().as_second();
    if left > 0 {
        return Ok(Action::requeue(Duration::from_secs(left as u64)));
    }
    let api: Api<AgentRun> = Api::namespaced(ctx.client.clone(), ns);
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: run.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => tracing::info!(
            namespace = ns,
            run = name,
            ttl,
            "deleted: ttlSecondsAfterFinished passed"
        ),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

/// A run being deleted that carries [`FINALIZER`]: archive what it has (the run may not have
/// ended: deleting a running run keeps its evidence so far), then let it go.
///
/// # Errors
/// API errors.
pub async fn on_delete(run: &AgentRun, ctx: &Context) -> Result<Action> {
    if !has_finalizer(run) {
        return Ok(Action::await_change());
    }
    if let (Some(archive), None) = (
        &ctx.evidence.archive,
        run.status.as_ref().and_then(|s| s.archive.as_ref()),
    ) {
        if let Some(wait) = archive_run(run, ctx, archive).await? {
            return Ok(Action::requeue(wait));
        }
    }
    remove_finalizer(run, ctx).await?;
    Ok(Action::await_change())
}

/// The pool a run's later attempts are built from: the live pool's identity with the spec
/// recorded in the run's policy snapshot (a pool edited since changes nothing about a started
/// run). Without a snapshot, the live pool. Pure.
pub fn pool_as_admitted(live: &RunnerPool, snapshot: Option<&PolicySnapshot>) -> RunnerPool {
    let mut pool = live.clone();
    if let Some(s) = snapshot {
        pool.spec = s.pool_spec.clone();
    }
    pool
}

/// The policy snapshot of `run` admitted into `pool` with `pod` (the cold pod as built for it),
/// at `now`. Pure.
pub fn snapshot(run: &AgentRun, pool: &RunnerPool, pod: &Pod, now: Time) -> PolicySnapshot {
    let spec = serde_json::to_vec(&pod.spec).unwrap_or_default();
    let image = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == "agent"))
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let mut overrides = vec![];
    if let Some(r) = &run.spec.runner {
        if r.image.is_some() {
            overrides.push("image".to_string());
        }
        if r.resources.is_some() {
            overrides.push("resources".to_string());
        }
    }
    if !run.spec.agent.env.is_empty() {
        overrides.push("env".to_string());
    }
    PolicySnapshot {
        runner_pool: PoolIdentity {
            name: pool.metadata.name.clone().unwrap_or_default(),
            uid: pool.metadata.uid.clone().unwrap_or_default(),
            generation: pool.metadata.generation.unwrap_or_default(),
        },
        pod_template_hash: dsse::sha256_digest(&spec),
        image,
        egress: super::gateway::egress(run, pool).ok().flatten(),
        budget: run.spec.budget.clone(),
        approvals: run.spec.approvals.clone(),
        overrides,
        pool_spec: pool.spec.clone(),
        recorded_at: now,
        agent_run_set: paddock_crds::agentrunset::controller_set(run)
            .map(|(name, uid)| paddock_crds::ObjectIdentity { name, uid }),
    }
}

/// Publishes the evidence public key, its key id and the archive's location in ConfigMap
/// [`paddock_crds::evidence::PUBLIC_CONFIGMAP`] of `namespace` (server-side apply), where
/// `kubectl paddock verify|export|history` read them.
///
/// # Errors
/// API errors.
pub async fn publish_public(
    ctx: &Context,
    namespace: &str,
    archive: Option<&paddock_evidence::ArchiveConfig>,
) -> Result<()> {
    use paddock_crds::evidence as e;
    let mut data = std::collections::BTreeMap::from([
        (e::CM_PUBLIC_KEY.to_string(), ctx.evidence.signer.public_key_b64()),
        (e::CM_KEY_ID.to_string(), ctx.evidence.key_id()),
    ]);
    if let Some(a) = archive {
        data.insert(e::CM_ARCHIVE_URL.into(), a.url.clone());
        if let Some(ep) = a.endpoint.clone().filter(|s| !s.is_empty()) {
            data.insert(e::CM_ARCHIVE_ENDPOINT.into(), ep);
        }
        data.insert(
            e::CM_ARCHIVE_REGION.into(),
            a.region.clone().unwrap_or_else(|| "us-east-1".into()),
        );
    }
    let cm = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": e::PUBLIC_CONFIGMAP, "namespace": namespace,
                     "labels": {"app.kubernetes.io/managed-by": "paddock"}},
        "data": data,
    });
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch(
        e::PUBLIC_CONFIGMAP,
        &PatchParams::apply(MANAGER_EVIDENCE).force(),
        &Patch::Apply(&cm),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(extra: serde_json::Value) -> AgentRun {
        let mut v = serde_json::json!({
            "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
            "metadata": {"name": "r", "namespace": "ns", "uid": "u-1"},
            "spec": {"repo": {"url": "git://h/r"}, "agent": {"name": "claude-code"}, "prompt": "p"},
        });
        json_patch::merge(&mut v, &extra);
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn uploads_back_off_from_5_s_to_at_most_120_s() {
        let secs: Vec<u64> = (1..=8).map(|f| retry_after(f).as_secs()).collect();
        assert_eq!(secs, vec![5, 10, 20, 40, 80, 120, 120, 120]);
        assert_eq!(retry_after(u32::MAX).as_secs(), crate::evidence::MAX_RETRY_SECS);
    }

    #[test]
    fn the_finalizer_goes_only_on_live_unarchived_runs_and_only_with_an_archive() {
        assert!(needs_finalizer(&run(serde_json::json!({})), true));
        assert!(!needs_finalizer(&run(serde_json::json!({})), false));
        assert!(!needs_finalizer(
            &run(serde_json::json!({"metadata": {"finalizers": [FINALIZER]}})),
            true
        ));
        assert!(!needs_finalizer(
            &run(serde_json::json!({"metadata": {"deletionTimestamp": "2026-12-07T00:00:00Z"}})),
            true
        ));
        let archived = run(serde_json::json!({"status": {"archive": {
            "url": "s3://b/ns/r/u-1.bundle.json", "digest": "sha256:00", "keyId": "sha256:11",
            "archivedAt": "2026-12-07T00:00:00Z"}}}));
        assert!(!needs_finalizer(&archived, true));
    }

    #[test]
    fn the_run_ttl_wins_then_the_snapshot_pool_then_the_live_pool() {
        let pool = |ttl: i32| -> RunnerPool {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "paddock.dev/v1alpha1", "kind": "RunnerPool",
                "metadata": {"name": "default", "namespace": "ns"},
                "spec": {"template": {"image": "i"}, "ttlSecondsAfterFinished": ttl},
            }))
            .unwrap()
        };
        assert_eq!(ttl_secs(&run(serde_json::json!({})), None), None);
        assert_eq!(ttl_secs(&run(serde_json::json!({})), Some(&pool(60))), Some(60));
        assert_eq!(
            ttl_secs(
                &run(serde_json::json!({"spec": {"ttlSecondsAfterFinished": 0}})),
                Some(&pool(60))
            ),
            Some(0)
        );
        let admitted = pool(30);
        let mut r = run(serde_json::json!({}));
        let pod = Pod::default();
        r.status = Some(paddock_crds::AgentRunStatus {
            policy: Some(snapshot(
                &r,
                &admitted,
                &pod,
                Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            )),
            ..Default::default()
        });
        assert_eq!(ttl_secs(&r, Some(&pool(60))), Some(30));
    }

    #[test]
    fn a_started_run_is_built_from_the_pool_spec_it_was_admitted_under() {
        let mut live: RunnerPool = serde_json::from_value(serde_json::json!({
            "apiVersion": "paddock.dev/v1alpha1", "kind": "RunnerPool",
            "metadata": {"name": "default", "namespace": "ns", "uid": "p-1", "generation": 1},
            "spec": {"template": {"image": "old"}, "network": {"egress": [{"host": "github.com"}]}},
        }))
        .unwrap();
        let r = run(serde_json::json!({}));
        let snap = snapshot(
            &r,
            &live,
            &Pod::default(),
            Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        );
        assert_eq!(snap.runner_pool.generation, 1);
        assert_eq!(snap.egress.as_ref().map(|e| e[0].host.as_str()), Some("github.com"));
        assert!(snap.pod_template_hash.starts_with("sha256:") && snap.pod_template_hash.len() == 71);
        live.spec.template.image = "new".into();
        live.spec.network = None;
        live.metadata.generation = Some(2);
        let used = pool_as_admitted(&live, Some(&snap));
        assert_eq!(used.spec.template.image, "old");
        assert!(used.spec.network.is_some());
        assert_eq!(pool_as_admitted(&live, None).spec.template.image, "new");
    }
}
