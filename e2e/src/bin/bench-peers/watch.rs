//! What the benchmark sees: watches that record when each object got its pod or finished,
//! creators that record when each was sent, and the waits on both.

use crate::system::System;
use anyhow::{bail, Context as _, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::runtime::watcher;
use kube::Client;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest wait for one system's objects to finish.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(900);

/// What the watches and the creator saw, by object name (this process's monotonic clock).
#[derive(Default)]
pub struct Times {
    pub sent: HashMap<String, Instant>,
    pub pod: HashMap<String, Instant>,
    pub done: HashMap<String, Instant>,
    /// The node each object's pod was bound to (first binding seen).
    pub node: HashMap<String, String>,
    pub failed: Vec<String>,
}

pub type Shared = Arc<Mutex<Times>>;

/// The controlling owner's name of a pod.
pub fn owner(pod: &Pod) -> Option<String> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.name.clone())
}

/// Watches pods and the system's objects in `ns`, recording first sightings and pods' nodes in
/// `times`; returns once both watches have listed (so nothing created afterwards is missed).
pub async fn watch(client: &Client, ns: &str, sys: System, times: &Shared) -> Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(2);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let record = |pod: &Pod, t: &mut Times, now: Instant| {
        let Some(name) = owner(pod) else { return };
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
            t.node.entry(name.clone()).or_insert(node);
        }
        t.pod.entry(name).or_insert(now);
    };
    spawn_sightings(pods, record, times, tx.clone());
    watch_objects(client, ns, &sys.resource(), move |o| sys.finished(o), times, tx);
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .context("watches did not list within 60 s")?;
    }
    Ok(())
}

/// Watches the objects `ar` in `ns`, recording in `times.done` when each is first seen with
/// `reached` true; sends on `listed` once the watch has listed.
pub fn watch_objects(
    client: &Client,
    ns: &str,
    ar: &ApiResource,
    reached: impl Fn(&DynamicObject) -> bool + Send + 'static,
    times: &Shared,
    listed: tokio::sync::mpsc::Sender<()>,
) {
    let objs: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    let record = move |o: &DynamicObject, t: &mut Times, now: Instant| {
        if reached(o) {
            t.done.entry(o.metadata.name.clone().unwrap_or_default()).or_insert(now);
        }
    };
    spawn_sightings(objs, record, times, listed);
}

/// Spawns a watch on `api` that hands every object seen to `record` with `times` and the moment
/// its event arrived; sends on `listed` once the watch has listed.
fn spawn_sightings<K>(
    api: Api<K>,
    record: impl Fn(&K, &mut Times, Instant) + Send + 'static,
    times: &Shared,
    listed: tokio::sync::mpsc::Sender<()>,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let t = times.clone();
    tokio::spawn(async move {
        let mut s = watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = s.next().await {
            let now = Instant::now();
            match ev {
                Ok(watcher::Event::InitDone) => {
                    let _ = listed.send(()).await;
                }
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    record(&o, &mut t.lock().unwrap(), now);
                }
                _ => {}
            }
        }
    });
}

/// Creates the objects `<prefix>-<i>` for i in `range` at `rate` per second (0: as fast as 32
/// concurrent requests go), recording each send time.
pub async fn create(
    client: &Client,
    ns: &str,
    sys: System,
    prefix: &str,
    range: std::ops::Range<usize>,
    rate: f64,
    times: &Shared,
) -> Result<()> {
    let (from, n) = (range.start, range.len());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &sys.resource());
    let gate = Arc::new(tokio::sync::Semaphore::new(if rate > 0.0 { 1024 } else { 32 }));
    let t0 = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        if rate > 0.0 {
            tokio::time::sleep_until(t0 + Duration::from_secs_f64(i as f64 / rate)).await;
        }
        let permit = gate.clone().acquire_owned().await?;
        let name = format!("{prefix}-{}", from + i);
        let obj: DynamicObject = serde_json::from_value(sys.manifest(&name))?;
        let (api, times) = (api.clone(), times.clone());
        tasks.push(tokio::spawn(async move {
            times.lock().unwrap().sent.insert(name.clone(), Instant::now());
            let r = api.create(&PostParams::default(), &obj).await;
            drop(permit);
            if let Err(e) = r {
                eprintln!("[bench] create {name}: {e}");
                times.lock().unwrap().failed.push(name);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let failed = times.lock().unwrap().failed.len();
    if failed > 0 {
        bail!("{failed} creates failed");
    }
    Ok(())
}

/// Waits until `n` objects have their pod.
pub async fn wait_pods(times: &Shared, n: usize, what: &str) -> Result<()> {
    let t0 = Instant::now();
    while times.lock().unwrap().pod.len() < n {
        if t0.elapsed() > FINISH_TIMEOUT {
            bail!(
                "{what}: only {} of {n} pods after {FINISH_TIMEOUT:?}",
                times.lock().unwrap().pod.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Waits until `n` objects have finished, printing progress every 10 s.
pub async fn wait_done(times: &Shared, n: usize, what: &str) -> Result<()> {
    let t0 = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let (pods, done) = {
            let t = times.lock().unwrap();
            (t.pod.len(), t.done.len())
        };
        if done >= n {
            return Ok(());
        }
        if t0.elapsed() > FINISH_TIMEOUT {
            bail!("{what}: only {done} of {n} finished ({pods} pods) after {FINISH_TIMEOUT:?}");
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "[bench] {what}: {pods} pods, {done}/{n} finished, {:.0} s",
                t0.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Status of a custom resource `name` (any kind), polled until `ok` holds.
pub async fn wait_status(api: &Api<DynamicObject>, name: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Result<()> {
    let t0 = Instant::now();
    loop {
        if let Some(o) = api.get_opt(name).await? {
            if ok(&o.data["status"]) {
                return Ok(());
            }
        }
        if t0.elapsed() > Duration::from_secs(300) {
            bail!("{name}: {what} not reached after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates `names` at `rate` per second, recording each send (monotonic and wall clock).
pub async fn arrive(
    api: &Api<DynamicObject>,
    objs: Vec<(String, Value)>,
    rate: f64,
    times: &Shared,
) -> Result<HashMap<String, std::time::SystemTime>> {
    let t0 = tokio::time::Instant::now();
    let mut tasks = vec![];
    for (i, (name, obj)) in objs.into_iter().enumerate() {
        tokio::time::sleep_until(t0 + Duration::from_secs_f64(i as f64 / rate)).await;
        let (api, times) = (api.clone(), times.clone());
        let obj: DynamicObject = serde_json::from_value(obj)?;
        tasks.push(tokio::spawn(async move {
            let wall = std::time::SystemTime::now();
            times.lock().unwrap().sent.insert(name.clone(), Instant::now());
            api.create(&PostParams::default(), &obj).await.map(|_| (name, wall))
        }));
    }
    let mut walls = HashMap::new();
    for t in tasks {
        let (name, wall) = t.await??;
        walls.insert(name, wall);
    }
    Ok(walls)
}

/// Milliseconds from send to the first sighting in `times.done`, for `names`.
pub fn seen_ms(times: &Shared, names: &[String]) -> Result<Vec<f64>> {
    let t = times.lock().unwrap();
    names
        .iter()
        .map(|n| match (t.sent.get(n), t.done.get(n)) {
            (Some(s), Some(d)) => Ok(d.duration_since(*s).as_secs_f64() * 1000.0),
            _ => bail!("{n}: not seen"),
        })
        .collect()
}
