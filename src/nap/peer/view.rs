//! A peer's live view (`nap-peer --http ADDR`): the files it serves and
//! fetches, in progress with their progress and rates, and the latest
//! finished; with the counters behind its `/metrics`. The file paths count
//! their bytes in an atomic per chunk, never waiting for the view.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use serde_json::{Value, json};

use super::files::Published;
use crate::events::Events;
use crate::metrics::{Counter, Histogram, Registry};
use crate::net::Timeouts;
use crate::shutdown::Shutdown;
use crate::view::{InProgress, Site};

/// Finished transfers the view remembers.
const RECENT: usize = 50;

/// Buckets for transfer times, in seconds.
const TRANSFER_BUCKETS: &[f64] = &[0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 600.0];

/// Which way a file goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dir {
    /// Served to another peer (GET_FILE answered).
    Out,
    /// Fetched from another peer (GET_FILE asked).
    In,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Dir::Out => "out",
            Dir::In => "in",
        }
    }
}

struct Running {
    dir: Dir,
    peer: String,
    name: String,
    size: Option<u64>,
    started: Instant,
    done: Arc<AtomicU64>,
    /// A file being received: its length so far is the progress.
    file: Option<File>,
}

/// The peer's transfers and counters.
pub(super) struct Watch {
    metrics: Arc<Registry>,
    events: Arc<Events>,
    running: Mutex<InProgress<Running>>,
    finished: Mutex<VecDeque<Value>>,
    published: Mutex<Option<Published>>,
    /// `ok`, `no_file`, `fail` answers to GET_FILE.
    answered: [Arc<Counter>; 3],
    bytes: [Arc<Counter>; 2],
    seconds: [Arc<Histogram>; 2],
    failed: Arc<Counter>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The process's one watch (a peer has one listener at a time).
pub(super) fn watch() -> &'static Watch {
    static WATCH: OnceLock<Watch> = OnceLock::new();
    WATCH.get_or_init(Watch::new)
}

/// How a GET_FILE was answered, for the counters.
#[derive(Debug, Clone, Copy)]
pub(super) enum Answered {
    Ok = 0,
    NoFile = 1,
    Fail = 2,
}

impl Watch {
    fn new() -> Watch {
        let metrics = Registry::new();
        let answered = ["ok", "no_file", "fail"].map(|k| {
            metrics.counter(
                "nap_peer_requests_total",
                "GET_FILE requests this peer answered, by result.",
                &[("result", k)],
            )
        });
        let bytes = ["out", "in"].map(|d| {
            metrics.counter(
                "nap_peer_bytes_total",
                "File bytes of completed transfers, by direction (out: served, in: fetched).",
                &[("direction", d)],
            )
        });
        let seconds = ["out", "in"].map(|d| {
            metrics.histogram(
                "nap_peer_transfer_seconds",
                "Time a completed transfer took, by direction.",
                &[("direction", d)],
                TRANSFER_BUCKETS,
            )
        });
        Watch {
            failed: metrics.counter(
                "nap_peer_errors_total",
                "Transfers cut short or failed.",
                &[("kind", "transfer")],
            ),
            metrics,
            events: Events::new(),
            running: Mutex::new(InProgress::new()),
            finished: Mutex::new(VecDeque::new()),
            published: Mutex::new(None),
            answered,
            bytes,
            seconds,
        }
    }

    /// The listener serves these files.
    pub(super) fn serving(&self, published: &Published) {
        *lock(&self.published) = Some(published.clone());
    }

    pub(super) fn answered(&self, how: Answered) {
        self.answered[how as usize].inc();
    }

    /// A transfer begins; its bytes are counted in the ticket's `done`.
    pub(super) fn begin(
        &self,
        dir: Dir,
        peer: &str,
        name: &str,
        size: Option<u64>,
        file: Option<File>,
    ) -> Ticket {
        let done = Arc::new(AtomicU64::new(0));
        let id = lock(&self.running).add(Running {
            dir,
            peer: peer.to_string(),
            name: name.to_string(),
            size,
            started: Instant::now(),
            done: done.clone(),
            file,
        });
        self.events.publish("started", |m| {
            m.insert("direction".into(), dir.name().into());
            m.insert("peer".into(), peer.into());
            m.insert("name".into(), name.into());
            m.insert("size".into(), size.into());
        });
        Ticket { id, done }
    }

    /// Ends a transfer: counted and remembered with its rate.
    pub(super) fn end(&self, ticket: Ticket, ok: bool) {
        let Some(r) = lock(&self.running).remove(ticket.id) else {
            return;
        };
        let secs = r.started.elapsed().as_secs_f64();
        let moved = ticket.done.load(Ordering::Relaxed);
        let i = match r.dir {
            Dir::Out => 0,
            Dir::In => 1,
        };
        if ok {
            self.bytes[i].add(moved);
            self.seconds[i].observe(secs);
        } else {
            self.failed.inc();
        }
        let rate = if secs > 0.0 { moved as f64 / secs } else { 0.0 };
        let record = json!({
            "t": crate::events::now_ms(),
            "direction": r.dir.name(),
            "peer": r.peer,
            "name": r.name,
            "bytes": moved,
            "seconds": secs,
            "bytes_per_sec": rate,
            "ok": ok,
        });
        self.events.publish("finished", |m| {
            if let Value::Object(fields) = &record {
                for (k, v) in fields {
                    if k != "t" {
                        m.insert(k.clone(), v.clone());
                    }
                }
            }
        });
        let mut f = lock(&self.finished);
        if f.len() >= RECENT {
            f.pop_front();
        }
        f.push_back(record);
    }
}

/// A transfer being counted: add its bytes to `done` as they go.
pub(super) struct Ticket {
    id: u64,
    pub(super) done: Arc<AtomicU64>,
}

/// The peer's page and state.
struct PeerSite;

impl Site for PeerSite {
    fn page(&self) -> &'static str {
        include_str!("peer.html")
    }

    fn state(&self) -> Value {
        let w = watch();
        let files: Vec<String> = lock(&w.published)
            .as_ref()
            .map(|p| {
                lock(p)
                    .iter()
                    .map(|n| n.as_str().to_string())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let running: Vec<Value> = lock(&w.running)
            .values()
            .map(|r| {
                let secs = r.started.elapsed().as_secs_f64();
                let done = match &r.file {
                    Some(f) => f.metadata().map_or(0, |m| m.len()),
                    None => r.done.load(Ordering::Relaxed),
                };
                json!({
                    "direction": r.dir.name(),
                    "peer": r.peer,
                    "name": r.name,
                    "size": r.size,
                    "done": done,
                    "seconds": secs,
                    "bytes_per_sec": if secs > 0.0 { done as f64 / secs } else { 0.0 },
                })
            })
            .collect();
        json!({
            "system": "nap-peer",
            "files": files,
            "transfers": running,
            "finished": lock(&w.finished).iter().cloned().collect::<Vec<_>>(),
        })
    }
}

/// Serves the peer's view at `listen` (`--http`), printing `view on
/// http://HOST:PORT/` on stdout.
pub fn serve_view(listen: &str, io: Timeouts) -> crate::Result<()> {
    let w = watch();
    let m = &w.metrics;
    m.gauge_fn(
        "nap_peer_transfers",
        "Transfers in progress now.",
        &[],
        || lock(&watch().running).len() as f64,
    );
    m.gauge_fn("nap_peer_files", "Files this peer serves.", &[], || {
        lock(&watch().published)
            .as_ref()
            .map_or(0, |p| lock(p).len()) as f64
    });
    crate::view::start(
        listen,
        io,
        Shutdown::new(),
        Arc::new(PeerSite),
        m.clone(),
        w.events.clone(),
    )?;
    Ok(())
}
