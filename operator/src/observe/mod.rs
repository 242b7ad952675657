//! The metrics observer: its own watches on AgentRuns and ApprovalGates (within the watch
//! namespace, if any) that turn what it sees into the run and gate metrics of
//! [`crate::metrics`], leaving the controllers untouched.
//!
//! It keeps only a small record per object (uid → labels, last phase or state, first-seen and
//! queued-since instants; about 150 bytes per run), never the object itself. Gauges are kept
//! in step with those records (an object leaving the cluster leaves the gauges). Histograms and
//! counters are observed on transitions seen live, i.e. after the initial list: objects listed
//! at start-up only seed the records, so a restart does not count a finished run twice. An
//! object first seen live was created "now" (the operator's monotonic clock); one from a list
//! falls back to its `creationTimestamp`.
//!
//! One file per kind ([`run`], [`gate`]): what a record holds and how a new state turns into
//! metrics; the bookkeeping both share (records by uid, lists and re-lists, gauges in step) is
//! [`tracker::Tracker`].

mod gate;
mod run;
#[cfg(test)]
mod tests;
mod tracker;

use crate::metrics::Metrics;
use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Instant;
use tracker::{Kind, Tracker};

/// Runs the observer until the process ends: one watcher on AgentRuns, one on ApprovalGates.
/// Watch errors are logged and retried with the default backoff.
pub async fn run(client: Client, namespace: Option<String>, state: Arc<crate::context::State>, namespace_label: bool) {
    let m = &state.metrics;
    tokio::join!(
        follow::<run::Runs>(&client, namespace.as_deref(), namespace_label, m),
        follow::<gate::Gates>(&client, namespace.as_deref(), namespace_label, m),
    );
}

/// Feeds one kind's watch events (in `namespace`, or all) to a tracker of its own, for ever.
async fn follow<K>(client: &Client, namespace: Option<&str>, namespace_label: bool, m: &Metrics)
where
    K: Kind,
    K::Object: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + 'static,
{
    let api: Api<K::Object> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut tracker = Tracker::<K>::new(namespace_label);
    watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .for_each(|ev| {
            match ev {
                Ok(ev) => tracker.handle(m, ev, Instant::now(), Timestamp::now()),
                Err(e) => tracing::warn!(error = %e, "metrics observer: {} watch failed", K::Object::kind(&())),
            }
            futures::future::ready(())
        })
        .await;
}
