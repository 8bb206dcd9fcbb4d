//! What a supernode shows of itself: the transfers in progress (uploads
//! received with their progress, downloads served, the synchronizer's
//! copies with theirs), the latest finished ones with their rates, and
//! the synchronizer's rounds; with their counters, and a live view of it
//! all (`superd.html`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use indicatif::ProgressBar;
use serde_json::{Value, json};

use super::Node;
use crate::events::Events;
use crate::metrics::{Counter, Histogram, Registry};
use crate::name::FileName;
use crate::view::{InProgress, Site};

/// Finished transfers and sync rounds the view remembers.
const RECENT: usize = 50;

/// Buckets for transfer times, in seconds.
const TRANSFER_BUCKETS: &[f64] = &[0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 600.0];

/// What a transfer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A file received (a client's upload or another synchronizer's copy).
    Upload,
    /// A file served to a client.
    Download,
    /// A copy this supernode's synchronizer sends to the file's owner.
    Sync,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Upload, Kind::Download, Kind::Sync];

    fn name(self) -> &'static str {
        match self {
            Kind::Upload => "upload",
            Kind::Download => "download",
            Kind::Sync => "sync",
        }
    }
}

/// A transfer in progress.
struct Running {
    kind: Kind,
    peer: String,
    name: String,
    size: u64,
    started: Instant,
    /// Bytes moved so far, where known (uploads, sync copies).
    done: Option<ProgressBar>,
}

/// The transfers, the rounds and their counters.
pub(super) struct Watch {
    pub(super) events: Arc<Events>,
    running: Mutex<InProgress<Running>>,
    finished: Mutex<VecDeque<Value>>,
    rounds: Mutex<VecDeque<Value>>,
    counts: Vec<(Arc<Counter>, Arc<Histogram>)>,
    bytes_in: Arc<Counter>,
    bytes_out: Arc<Counter>,
    failed: Arc<Counter>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A transfer being counted; `end` it with its outcome.
pub(super) struct Ticket<'a> {
    watch: &'a Watch,
    id: u64,
}

impl Ticket<'_> {
    /// Ends the transfer: counted and remembered with its rate if `ok`.
    pub(super) fn end(self, ok: bool) {
        let Some(r) = lock(&self.watch.running).remove(self.id) else {
            return;
        };
        let secs = r.started.elapsed().as_secs_f64();
        let w = self.watch;
        if ok {
            if let Some((n, t)) = Kind::ALL
                .iter()
                .position(|k| *k == r.kind)
                .and_then(|i| w.counts.get(i))
            {
                n.inc();
                t.observe(secs);
            }
            match r.kind {
                Kind::Upload => w.bytes_in.add(r.size),
                Kind::Download | Kind::Sync => w.bytes_out.add(r.size),
            }
        } else {
            w.failed.inc();
        }
        let rate = if secs > 0.0 {
            r.size as f64 / secs
        } else {
            0.0
        };
        let record = json!({
            "t": crate::events::now_ms(),
            "kind": r.kind.name(),
            "peer": r.peer,
            "name": r.name,
            "size": r.size,
            "seconds": secs,
            "bytes_per_sec": rate,
            "ok": ok,
        });
        w.events.publish("finished", |m| {
            if let Value::Object(fields) = &record {
                for (k, v) in fields {
                    if k != "t" && k != "kind" {
                        m.insert(k.clone(), v.clone());
                    }
                }
            }
            m.insert("transfer".into(), r.kind.name().into());
        });
        let mut f = lock(&w.finished);
        if f.len() >= RECENT {
            f.pop_front();
        }
        f.push_back(record);
    }
}

impl Watch {
    pub(super) fn new(metrics: &Registry, events: Arc<Events>) -> Watch {
        let counts = Kind::ALL
            .iter()
            .map(|k| {
                let labels = [("kind", k.name())];
                (
                    metrics.counter(
                        "superd_transfers_total",
                        "Transfers completed, by kind: upload (received), download (served), sync (copied to the owner).",
                        &labels,
                    ),
                    metrics.histogram(
                        "superd_transfer_seconds",
                        "Time a completed transfer took, by kind.",
                        &labels,
                        TRANSFER_BUCKETS,
                    ),
                )
            })
            .collect();
        Watch {
            events,
            running: Mutex::new(InProgress::new()),
            finished: Mutex::new(VecDeque::new()),
            rounds: Mutex::new(VecDeque::new()),
            counts,
            bytes_in: metrics.counter(
                "superd_bytes_total",
                "File bytes moved by completed transfers, by direction.",
                &[("direction", "in")],
            ),
            bytes_out: metrics.counter(
                "superd_bytes_total",
                "File bytes moved by completed transfers, by direction.",
                &[("direction", "out")],
            ),
            failed: metrics.counter(
                "superd_errors_total",
                "Transfers that failed (cut short, refused, wrong digest).",
                &[("kind", "transfer")],
            ),
        }
    }

    /// A transfer begins; `done` counts its bytes where they are known.
    pub(super) fn begin(
        &self,
        kind: Kind,
        peer: &str,
        name: &FileName,
        size: u64,
        done: Option<ProgressBar>,
    ) -> Ticket<'_> {
        let id = lock(&self.running).add(Running {
            kind,
            peer: peer.to_string(),
            name: name.to_string(),
            size,
            started: Instant::now(),
            done,
        });
        self.events.publish("started", |m| {
            m.insert("transfer".into(), kind.name().into());
            m.insert("peer".into(), peer.into());
            m.insert("name".into(), name.as_str().into());
            m.insert("size".into(), size.into());
        });
        Ticket { watch: self, id }
    }

    /// A synchronizer round ended.
    pub(super) fn round(&self, files: usize, elsewhere: usize, failed: usize) {
        let record = json!({
            "t": crate::events::now_ms(),
            "files": files,
            "elsewhere": elsewhere,
            "failed": failed,
        });
        self.events.publish("sync_round", |m| {
            m.insert("files".into(), files.into());
            m.insert("elsewhere".into(), elsewhere.into());
            m.insert("failed".into(), failed.into());
        });
        let mut r = lock(&self.rounds);
        if r.len() >= 10 {
            r.pop_front();
        }
        r.push_back(record);
    }

    fn running_json(&self) -> Vec<Value> {
        lock(&self.running)
            .values()
            .map(|r| {
                json!({
                    "kind": r.kind.name(),
                    "peer": r.peer,
                    "name": r.name,
                    "size": r.size,
                    "seconds": r.started.elapsed().as_secs_f64(),
                    "done": r.done.as_ref().map(|d| d.position().min(r.size)),
                })
            })
            .collect()
    }
}

/// The supernode's page and state.
pub(super) struct SuperSite {
    pub(super) node: Arc<Node>,
}

impl Site for SuperSite {
    fn page(&self) -> &'static str {
        include_str!("superd.html")
    }

    fn state(&self) -> Value {
        let node = &self.node;
        let files: Vec<Value> = node
            .repo
            .scan()
            .unwrap_or_default()
            .into_iter()
            .map(|n| {
                let size = std::fs::metadata(node.repo.path_of(&n)).map_or(0, |m| m.len());
                json!({ "name": n.as_str(), "size": size })
            })
            .collect();
        json!({
            "system": "p2p-superd",
            "addr": node.control.me(),
            "index": node.control.addr,
            "files": files,
            "transfers": node.watch.running_json(),
            "finished": lock(&node.watch.finished).iter().cloned().collect::<Vec<_>>(),
            "sync_rounds": lock(&node.watch.rounds).iter().cloned().collect::<Vec<_>>(),
        })
    }
}
