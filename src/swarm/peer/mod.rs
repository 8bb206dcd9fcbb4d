//! A swarm peer: serves the pieces it holds to other peers (under the upload
//! cap), keeps the tracker informed (register, ping, report, leave), and,
//! while incomplete, downloads rarest-first from every peer it knows, with
//! several requests in flight per connection. A peer that serves a piece
//! failing its check is banned for the rest of the run.
//!
//! - [`state`]: what the peer knows about its pieces and the other peers.
//! - [`serve`]: answering other peers' `Have` and `Piece` requests.
//! - [`announce`]: the tracker loop (register, ping, report, peer lists,
//!   leave), which also starts download workers.
//! - [`download`]: one worker per remote, piece picking, verification.
//! - [`watch`]: the peer's live view, counters and the traffic it tells
//!   the tracker.
//!
//! Locks: `Node::state` is never held during socket or file I/O nor while
//! logging; `Node::store` needs no lock (positioned I/O on one shared
//! handle). `Node::gate` is taken alone, or before the bucket's own lock.

mod announce;
mod download;
mod serve;
mod state;
mod watch;

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::Result;
use crate::log::Level;
use crate::output;
use crate::server::Limits;
use crate::shutdown::Shutdown;

use super::bucket::TokenBucket;
use super::manifest::{Bitfield, Manifest, SwarmId};
use super::store::Store;

use state::State;

/// A node of a 4-piece file for unit tests, in a folder that goes when the
/// returned guard is dropped: a seed holding every piece, or a fetcher
/// holding none; its upload capped at `upload_limit`.
#[cfg(test)]
fn test_node(seed: bool, upload_limit: Option<u64>) -> (Arc<Node>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.bin");
    std::fs::write(&file, vec![7u8; 64 * 1024]).unwrap();
    let manifest = Arc::new(Manifest::from_file(&file, Some(16 * 1024)).unwrap());
    let (store, have) = if seed {
        (
            Store::shared(&file, manifest.clone()).unwrap(),
            Bitfield::full(4),
        )
    } else {
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        Store::open(&out, manifest.clone()).unwrap()
    };
    let cfg = PeerConfig {
        tracker: "127.0.0.1:1".into(),
        limits: Limits::default(),
        ping_interval: TICK,
        report_interval: TICK,
        request_interval: Duration::ZERO,
        upload_limit,
        level: Level::Normal,
        http: None,
    };
    let local = "127.0.0.1:1".parse().unwrap();
    let node = Node::new(manifest, store, have, cfg, Shutdown::new(), local);
    (node, dir)
}

/// Piece requests kept in flight on one connection at least (and before
/// its remote has delivered a piece).
const PIPELINE: usize = 2;
/// Piece requests kept in flight on one connection at most.
const MAX_PIPELINE: usize = 16;
/// A connection keeps enough requests in flight to cover this long at the
/// rate its remote delivers (the link's bandwidth-delay product, with the
/// queues of a busy link in the delay).
const PIPELINE_TIME: Duration = Duration::from_millis(150);
/// An answer is overdue after this many times what a piece took its remote
/// so far...
const OVERDUE_FACTOR: u32 = 4;
/// ...plus this long.
const OVERDUE_GRACE: Duration = Duration::from_secs(1);
/// In a seed's first pass, a piece that went out less than this long ago
/// is answered `Busy` (others hear of its new holder within this time).
const FIRST_PASS_HOLD: Duration = Duration::from_millis(1500);
/// A capped peer answers `Full` to a piece request while this many
/// uploads already wait for their turn at its upload bucket: a few piece
/// times of work queued keep its upload busy until the asker's next `Have`
/// poll, and a request is not parked for a second behind a long queue
/// while other holders have upload to spare.
const UPLOAD_QUEUE: usize = 2;
/// An upload whose downloader takes nothing for this long fails (it
/// vanished without closing), freeing its piece for the seed's first pass.
const SEND_STALL: Duration = Duration::from_secs(3);
/// Before a remote has delivered any piece, its answer is overdue after
/// this long (its pieces go to other holders; the connection itself waits
/// for the I/O timeout).
const FIRST_OVERDUE: Duration = Duration::from_secs(3);
/// Most remote peers downloaded from at once.
const MAX_WORKERS: usize = 32;
/// In the end game (every missing piece requested and at most this many
/// missing), a piece already requested is asked of a second peer (never a
/// seed in its first pass) once nothing has come for `ENDGAME_PATIENCE`.
const ENDGAME: u32 = 4;
/// How long a fetcher in the end game waits for the pieces it requested
/// before asking a second holder. Not at once: in a capped swarm every
/// peer's upload is busy to the end, and a second copy of a piece that
/// was coming anyway takes a whole piece time from a holder that others
/// are waiting on (with every fetcher doing so, most of the swarm's
/// upload in its last second went to copies nobody needed).
const ENDGAME_PATIENCE: Duration = Duration::from_millis(500);
/// A `Have` poll on its own connection must be answered within this long,
/// or the poller gives up (the download connection then asks itself).
const HAVE_POLL_TIMEOUT: Duration = Duration::from_secs(3);
/// A download connection whose `Have` polls go through the poller still
/// asks itself this often, so the remote's idle timeout never closes it.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// How often a connection asks its remote which pieces it holds now; the
/// longest a `HaveChange` waits for a new piece before it is answered.
const HAVE_REFRESH: Duration = Duration::from_millis(50);
/// Shortest time between two `HaveChange` answers a poller takes in.
const HAVE_MIN_GAP: Duration = Duration::from_millis(10);
/// How often a connection with no request in flight asks its remote which
/// pieces it holds now.
const IDLE_HAVE_REFRESH: Duration = Duration::from_millis(100);
/// A peer asks a seed for a piece others are already fetching only after
/// this long without receiving any piece.
const SEED_PATIENCE: Duration = Duration::from_millis(500);
/// Longest pause between peer-list refreshes while downloading.
const PEERS_REFRESH: Duration = Duration::from_secs(1);
/// How often the peer list is asked for while a download starts: peers
/// that start together learn of each other at once, not a refresh later
/// (until then an early fetcher could only download from the seed).
const STARTING_PEERS_REFRESH: Duration = Duration::from_millis(100);
/// How long after start the peer list is asked for that often, at most.
const STARTING_FOR: Duration = Duration::from_secs(3);
/// Asks in a row that bring no new peer after which the start is over.
const SETTLED_ASKS: u32 = 5;
/// After a connection to a peer fails, wait this long before trying again
/// (doubled after each further failure, up to 8 times as long).
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Doublings of `RETRY_AFTER` at most.
const MAX_BACKOFF_DOUBLINGS: u32 = 3;
/// A download with no peer connected and no piece for this long says so
/// on stderr...
const STUCK_AFTER: Duration = Duration::from_secs(3);
/// ...and again every this long while it lasts.
const STUCK_REPEAT: Duration = Duration::from_secs(15);
/// How often, while pieces move, the tracker is told this peer's traffic
/// (`Stats`, which its view shows).
const STATS_EVERY: Duration = Duration::from_secs(1);
/// Longest a periodic loop sleeps before looking at its clocks again.
const TICK: Duration = Duration::from_millis(250);

/// How a peer runs.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The tracker's `HOST:PORT`.
    pub tracker: String,
    /// The server core's limits; `limits.io` also times outgoing connections.
    pub limits: Limits,
    /// Period of pings to the tracker.
    pub ping_interval: Duration,
    /// Period of piece-list reports to the tracker.
    pub report_interval: Duration,
    /// Zero: request as fast as peers answer. Otherwise at most one piece
    /// request per interval, across all peers.
    pub request_interval: Duration,
    /// Total upload cap in bytes per second.
    pub upload_limit: Option<u64>,
    /// Quiet: only data lines (`swarm`, `complete:`), warnings and errors.
    /// Verbose: also a line per piece received and per request sent.
    pub level: Level,
    /// Serve a live view at this address (`--http`).
    pub http: Option<String>,
}

/// Capped uploads waiting to reserve the bucket: each is `(rank, ticket)`,
/// and the lowest (the rarest piece, then the oldest request) goes next.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    waiting: Vec<(u32, u64)>,
    next_ticket: u64,
}

/// One running peer in one swarm.
pub(crate) struct Node {
    manifest: Arc<Manifest>,
    id: SwarmId,
    store: Store,
    state: Mutex<State>,
    changed: Condvar,
    /// Woken (with `state`) when a piece is stored: `HaveChange` waits on it.
    have_changed: Condvar,
    bucket: Option<TokenBucket>,
    /// Capped uploads waiting for their turn at the bucket.
    gate: Mutex<Gate>,
    gate_turn: Condvar,
    cfg: PeerConfig,
    shutdown: Arc<Shutdown>,
    /// Our listening address (the port is what the tracker is told).
    local: SocketAddr,
    bar: Option<ProgressBar>,
    /// The live view's counters, events and transfers.
    pub(crate) watch: watch::Watch,
    /// A local failure that ends the download (a piece that could not be
    /// written: the disk is full): the fetch's error, not a remote's.
    failed: Mutex<Option<String>>,
}

impl Node {
    pub(crate) fn new(
        manifest: Arc<Manifest>,
        store: Store,
        have: Bitfield,
        cfg: PeerConfig,
        shutdown: Arc<Shutdown>,
        local: SocketAddr,
    ) -> Arc<Node> {
        let n = manifest.piece_count();
        let missing = n - have.count();
        let received: u64 = manifest
            .indices()
            .filter(|i| have.has(i.slot()))
            .map(|i| u64::from(manifest.piece_len(i)))
            .sum();
        let draw = missing > 0 && cfg.level != Level::Quiet && output::progress_enabled();
        let bar = draw.then(|| {
            let bar = ProgressBar::new(manifest.size());
            // The template is a constant known to be valid.
            let style = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_position(received);
            bar
        });
        let state = State::new(have, missing, received);
        Arc::new(Node {
            id: manifest.id(),
            manifest,
            store,
            state: Mutex::new(state),
            changed: Condvar::new(),
            have_changed: Condvar::new(),
            bucket: cfg.upload_limit.map(TokenBucket::new),
            gate: Mutex::default(),
            gate_turn: Condvar::new(),
            cfg,
            shutdown,
            local,
            bar,
            watch: watch::Watch::new(),
            failed: Mutex::new(None),
        })
    }

    /// Ends the download for a local reason (`why`, said once): no remote
    /// is to blame, so none is retried.
    pub(crate) fn fail_locally(&self, why: String) {
        let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        if failed.is_none() {
            *failed = Some(why);
        }
        drop(failed);
        self.shutdown.trigger();
        self.changed.notify_all();
    }

    /// Why the download ended locally, if it did.
    pub(crate) fn local_failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Prints a data line on stdout whatever the verbosity (`swarm ID`,
    /// `complete: NAME`), above the progress bar if any. Never call it with
    /// `state` or `store` locked; nor `log`, `detail` or `warn`.
    pub(crate) fn data(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| crate::event!("{line}")),
            None => crate::event!("{line}"),
        }
    }

    /// Prints an event line on stdout unless quiet.
    pub(crate) fn log(&self, line: &str) {
        if self.cfg.level >= Level::Normal {
            self.data(line);
        }
    }

    /// Prints a per-step line (a piece, a request) on stdout with `-v` only.
    fn detail(&self, line: &str) {
        if self.cfg.level >= Level::Verbose {
            self.data(line);
        }
    }

    /// Prints a diagnostic on stderr.
    pub(crate) fn warn(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| crate::diag!("{line}")),
            None => crate::diag!("{line}"),
        }
    }

    /// Removes the progress bar, if any, leaving no line of it behind.
    pub(crate) fn clear_bar(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    pub(crate) fn have(&self) -> Bitfield {
        self.lock().have.clone()
    }

    fn is_complete(&self) -> bool {
        self.lock().missing == 0
    }

    /// Sleeps until a piece completes or is given back, at most `d`.
    fn wait_change(&self, d: Duration) {
        let st = self.lock();
        let _ = self
            .changed
            .wait_timeout(st, d)
            .unwrap_or_else(PoisonError::into_inner);
    }

    /// Blocks until every piece is held (true) or shutdown starts (false).
    pub(crate) fn wait_complete(&self) -> bool {
        let mut st = self.lock();
        loop {
            if st.missing == 0 {
                return true;
            }
            if self.shutdown.is_triggered() {
                return false;
            }
            st = self
                .changed
                .wait_timeout(st, TICK)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Moves the finished file into place. Every piece was checked against
    /// its SHA-256 in the manifest (which the swarm id pins) before it was
    /// written, or when a resumed download read it back, so the file's
    /// SHA-256 is the manifest's: it is not read and hashed once more.
    pub(crate) fn finish(&self) -> Result<()> {
        self.clear_bar();
        let path = self.store.finish()?;
        self.watch.events.publish("complete", |m| {
            m.insert("name".into(), self.manifest.name().as_str().into());
            m.insert("pieces".into(), self.manifest.piece_count().into());
        });
        self.data(&format!(
            "complete: {} (sha256 {}, {} pieces checked)",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            self.manifest.file_hash(),
            self.manifest.piece_count()
        ));
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.clear_bar();
    }
}
