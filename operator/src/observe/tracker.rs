//! The bookkeeping both trackers share: records by uid, kept in step with the watcher's
//! lists (a re-list drops what it no longer shows) and the gauges kept in step with the records.

use crate::metrics::{GaugeFamily, Labels, Metrics};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher;
use kube::Resource;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// How an event was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// In the first list after start-up: seeds the records, observes nothing.
    FirstList,
    /// In a later re-list (after a watch gap): transitions count, new objects date from their
    /// `creationTimestamp`.
    Relist,
    /// A watch event: transitions count, new objects were created now.
    Live,
}

/// When an event was seen: how, and the monotonic and wall clocks at that moment.
#[derive(Clone, Copy, Debug)]
pub struct At {
    pub how: Seen,
    pub now: Instant,
    pub wall: Timestamp,
}

impl At {
    /// Whether transitions seen now are observed (all but the first list's).
    pub fn observes(&self) -> bool {
        self.how != Seen::FirstList
    }

    /// When an object first seen now was created: now if seen live, else at `created` (its
    /// `creationTimestamp`).
    pub fn created(&self, created: Option<&Timestamp>) -> Instant {
        match self.how {
            Seen::Live => self.now,
            Seen::FirstList | Seen::Relist => instant_at(created, self.now, self.wall),
        }
    }
}

/// One kind of object the observer follows: what it remembers of one and how a new state of
/// it turns into metrics.
pub trait Kind {
    type Object: Resource;
    type Record;

    /// The record of `obj`'s new state given the one before (if any), observing the histograms
    /// and counters of the transition when `at` observes.
    fn record(
        m: &Metrics,
        namespace_label: bool,
        prev: Option<&Self::Record>,
        obj: &Self::Object,
        at: At,
    ) -> Self::Record;

    /// Adds (`delta` 1) or removes (-1) a record's share of the gauges.
    fn gauges(m: &Metrics, namespace_label: bool, rec: &Self::Record, delta: i64);
}

/// Records of one kind of object and the transitions between them.
pub struct Tracker<K: Kind> {
    namespace_label: bool,
    pub(super) records: HashMap<String, K::Record>,
    /// uids listed since the current list began, while a list is under way.
    listing: Option<HashSet<String>>,
    /// Whether the first list is done.
    synced: bool,
}

impl<K: Kind> Tracker<K> {
    /// An empty tracker; `namespace_label` adds `namespace` to the metrics.
    pub fn new(namespace_label: bool) -> Self {
        Tracker {
            namespace_label,
            records: HashMap::new(),
            listing: None,
            synced: false,
        }
    }

    /// Handles one watcher event; `now` and `wall` are the monotonic and wall clocks.
    pub fn handle(&mut self, m: &Metrics, ev: watcher::Event<K::Object>, now: Instant, wall: Timestamp) {
        let at = |how| At { how, now, wall };
        match ev {
            watcher::Event::Init => self.listing = Some(HashSet::new()),
            watcher::Event::InitApply(o) => {
                if let (Some(l), Some(uid)) = (&mut self.listing, &o.meta().uid) {
                    l.insert(uid.clone());
                }
                let how = if self.synced { Seen::Relist } else { Seen::FirstList };
                self.apply(m, &o, at(how));
            }
            watcher::Event::InitDone => {
                if let Some(listed) = self.listing.take() {
                    let gone: Vec<String> = self.records.keys().filter(|k| !listed.contains(*k)).cloned().collect();
                    for uid in gone {
                        self.forget(m, &uid);
                    }
                }
                self.synced = true;
            }
            watcher::Event::Apply(o) => self.apply(m, &o, at(Seen::Live)),
            watcher::Event::Delete(o) => {
                if let Some(uid) = &o.meta().uid {
                    self.forget(m, uid);
                }
            }
        }
    }

    fn forget(&mut self, m: &Metrics, uid: &str) {
        if let Some(rec) = self.records.remove(uid) {
            K::gauges(m, self.namespace_label, &rec, -1);
        }
    }

    /// Records the object's new state and observes the transitions from the old one.
    pub fn apply(&mut self, m: &Metrics, obj: &K::Object, at: At) {
        let Some(uid) = obj.meta().uid.clone() else { return };
        let prev = self.records.remove(&uid);
        if let Some(p) = &prev {
            K::gauges(m, self.namespace_label, p, -1);
        }
        let rec = K::record(m, self.namespace_label, prev.as_ref(), obj, at);
        K::gauges(m, self.namespace_label, &rec, 1);
        self.records.insert(uid, rec);
    }
}

/// The namespace of `obj` as kept in a record: only when the namespace label is on (else
/// empty, no allocation).
pub fn record_ns(obj: &impl Resource, namespace_label: bool) -> String {
    if namespace_label {
        obj.meta().namespace.clone().unwrap_or_default()
    } else {
        String::new()
    }
}

/// Adds `delta` to the gauge `labels`; with `prune` (namespace labels, whose values come and
/// go) a gauge back at 0 is removed rather than kept as a 0 series.
pub fn add(family: &GaugeFamily, labels: &Labels, delta: i64, prune: bool) {
    let v = family.get_or_create(labels).inc_by(delta) + delta;
    if prune && v == 0 {
        family.remove(labels);
    }
}

/// The instant `ts` (a wall-clock time in the past) corresponds to, given that `now` is `wall`.
pub fn instant_at(ts: Option<&Timestamp>, now: Instant, wall: Timestamp) -> Instant {
    let ago_ms = ts
        .map(|t| (wall.as_millisecond() - t.as_millisecond()).max(0))
        .unwrap_or(0);
    now.checked_sub(Duration::from_millis(ago_ms as u64)).unwrap_or(now)
}

pub fn secs(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64()
}
