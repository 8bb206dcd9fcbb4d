//! A swarm peer: serves the pieces it holds to other peers (under the upload
//! cap), keeps the tracker informed (register, ping, report, leave), and,
//! while incomplete, downloads rarest-first from every peer it knows, with
//! several requests in flight per connection. A peer that serves a piece
//! failing its check is banned for the rest of the run.
//!
//! Locks: `Node::state` and `Node::store` are never held together, and
//! neither is held during socket I/O.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{self, Refused};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::frame::Conn;
use crate::net;
use crate::rng::Rng;
use crate::server::{Limits, Server, Session};
use crate::shutdown::Shutdown;

use super::bucket::TokenBucket;
use super::manifest::{Bitfield, Manifest, PieceIndex, SwarmId};
use super::picker::{self, Availability};
use super::proto::{
    PEER_WIRE, PeerInfo, PeerRequest, PeerResponse, Query, TrackerRequest, TrackerResponse,
};
use super::store::Store;
use super::tracker::TrackerClient;

/// Piece requests kept in flight on one connection.
pub const PIPELINE: usize = 2;
/// Most remote peers downloaded from at once.
pub const MAX_WORKERS: usize = 32;
/// In the end game (every missing piece requested), a second request for a
/// piece goes to another peer at once, but to a seed only when at most this
/// many pieces are missing.
const ENDGAME: u32 = 2;
/// How often a connection asks its remote which pieces it holds now.
const HAVE_REFRESH: Duration = Duration::from_millis(250);
/// Longest pause between peer-list refreshes while downloading.
const PEERS_REFRESH: Duration = Duration::from_secs(1);
/// After a connection to a peer fails, wait this long before trying again
/// (doubled after each further failure, up to 32 times as long).
const RETRY_AFTER: Duration = Duration::from_secs(1);
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
    /// Log every piece request, not only every piece received.
    pub verbose: bool,
}

/// What this peer knows about another one.
#[derive(Debug)]
struct Remote {
    /// Pieces it holds, as last heard (from it, or else from the tracker).
    have: Bitfield,
    /// Pieces it is fetching, as last heard from it.
    fetching: Bitfield,
    /// A download worker is talking to it.
    connected: bool,
    /// It served a corrupt piece: never asked again.
    banned: bool,
    /// Earliest time to connect again after a failure.
    retry_at: Option<Instant>,
    /// Failed connections so far (for the back-off, and to log only the first).
    failures: u32,
}

/// The download's shared state, behind `Node::state`.
struct State {
    have: Bitfield,
    /// Pieces not held yet.
    missing: u32,
    /// Requests in flight per piece.
    in_flight: Vec<u16>,
    /// Uploads in progress per piece.
    sending: Vec<u16>,
    /// Missing pieces with no request in flight.
    unrequested: u32,
    /// Holders per piece among known, unbanned peers.
    avail: Availability,
    /// Known, unbanned peers fetching each piece right now.
    coming: Availability,
    remotes: HashMap<SocketAddr, Remote>,
    /// With a request interval: when the next request may go out.
    next_request: Instant,
    workers: usize,
    rng: Rng,
    /// Bytes of verified pieces received.
    received: u64,
    /// Last tenth of progress logged (when no bar is drawn).
    logged_tenth: u32,
}

impl State {
    /// Replaces what a remote holds and fetches, keeping the counts in step.
    fn set_remote_have(&mut self, addr: SocketAddr, have: Bitfield, fetching: Bitfield) {
        let Some(r) = self.remotes.get_mut(&addr) else {
            return;
        };
        if !r.banned {
            for i in 0..have.len() as usize {
                let (old, new) = (r.have.has(i), have.has(i));
                if old != new {
                    self.avail.adjust(i, new);
                }
                let (old, new) = (r.fetching.has(i), fetching.has(i));
                if old != new {
                    self.coming.adjust(i, new);
                }
            }
        }
        r.have = have;
        r.fetching = fetching;
    }

    /// Forgets what a remote holds (it left, failed, or was banned).
    fn clear_remote(&mut self, addr: SocketAddr) {
        if let Some(r) = self.remotes.get(&addr) {
            let empty = Bitfield::new(r.have.len());
            self.set_remote_have(addr, empty.clone(), empty);
        }
    }

    /// Rarity for the picker: holders plus peers already fetching.
    fn rank(&self, i: usize) -> u32 {
        u32::from(self.avail.holders(i)) + u32::from(self.coming.holders(i))
    }

    /// Pieces with requests in flight (the `fetching` part of `Have`).
    fn fetching(&self) -> Bitfield {
        let mut b = Bitfield::new(self.have.len());
        for (i, n) in self.in_flight.iter().enumerate() {
            if *n > 0 && !self.have.has(i) {
                b.set_bit(i, true);
            }
        }
        b
    }

    /// Pieces being uploaded (the `sending` part of `Have`).
    fn sending(&self) -> Bitfield {
        let mut b = Bitfield::new(self.have.len());
        for (i, n) in self.sending.iter().enumerate() {
            b.set_bit(i, *n > 0);
        }
        b
    }

    /// Gives back one request for piece `i`.
    fn release(&mut self, i: PieceIndex) {
        let slot = i.slot();
        if let Some(n) = self.in_flight.get_mut(slot) {
            *n = n.saturating_sub(1);
            if *n == 0 && !self.have.has(slot) {
                self.unrequested += 1;
            }
        }
    }
}

/// What a download connection ended with.
enum End {
    /// The download finished or the peer is shutting down.
    Finished,
    /// The remote served a corrupt piece.
    Banned,
}

/// A request this side sent and whose answer has not been read yet.
#[derive(Debug, Clone, Copy)]
enum Pending {
    Have,
    Piece { index: PieceIndex, holders: u16 },
}

/// A piece request taken off the pipeline while its answer is read. Unless
/// the answer settles it, dropping it gives the piece back: an error, a
/// wrong answer or a panic can never leave the piece counted as in flight
/// (it would then never be asked for again outside the end game).
///
/// Dropping a live claim locks `Node::state`: never drop one while holding
/// that lock (`release` and `settle` take care of it).
struct Claim<'a> {
    node: &'a Node,
    index: PieceIndex,
    live: bool,
}

impl<'a> Claim<'a> {
    fn new(node: &'a Node, index: PieceIndex) -> Claim<'a> {
        Claim {
            node,
            index,
            live: true,
        }
    }

    /// Gives the piece back now and returns the state, still locked.
    fn release(mut self) -> MutexGuard<'a, State> {
        self.live = false;
        let mut st = self.node.lock();
        st.release(self.index);
        st
    }

    /// The caller accounts for the request itself.
    fn settle(mut self) {
        self.live = false;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.live {
            self.node.lock().release(self.index);
            self.node.changed.notify_all();
        }
    }
}

/// How a download worker ended, as its `Slot` sees it when dropped.
enum Outcome {
    Ended(End),
    Failed(Error),
    /// Still the value when the worker panicked.
    Panicked,
}

/// A running download worker's hold on the shared state. Dropped however
/// the worker ends, it gives back the requests still in the pipeline and
/// stops counting the worker as running and its remote as connected.
struct Slot<'a> {
    node: &'a Node,
    addr: SocketAddr,
    pending: VecDeque<Pending>,
    outcome: Outcome,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let addr = self.addr;
        let mut st = self.node.lock();
        for p in self.pending.drain(..) {
            if let Pending::Piece { index, .. } = p {
                st.release(index);
            }
        }
        st.workers = st.workers.saturating_sub(1);
        let mut warning = None;
        match std::mem::replace(&mut self.outcome, Outcome::Panicked) {
            Outcome::Ended(End::Finished) => {
                if let Some(r) = st.remotes.get_mut(&addr) {
                    r.connected = false;
                }
            }
            Outcome::Ended(End::Banned) => {
                st.clear_remote(addr);
                if let Some(r) = st.remotes.get_mut(&addr) {
                    r.connected = false;
                    r.banned = true;
                }
            }
            failed => {
                st.clear_remote(addr);
                let downloading = st.missing > 0;
                if let Some(r) = st.remotes.get_mut(&addr) {
                    r.connected = false;
                    let backoff = RETRY_AFTER * 2u32.pow(r.failures.min(5));
                    r.retry_at = Some(Instant::now() + backoff);
                    if r.failures == 0 && downloading {
                        warning = Some(match failed {
                            Outcome::Failed(e) => format!("{addr}: {e}"),
                            _ => format!("{addr}: the download thread failed"),
                        });
                    }
                    r.failures += 1;
                }
            }
        }
        drop(st);
        self.node.changed.notify_all();
        if let Some(w) = warning.filter(|_| !self.node.shutdown.is_triggered()) {
            self.node.warn(&w);
        }
    }
}

/// The outcome of trying to pick a piece for one remote.
enum Pick {
    Piece(PieceIndex, u16),
    /// Nothing to ask for now; look again after this long at the latest.
    Wait(Duration),
}

/// One running peer in one swarm.
pub struct Node {
    manifest: Arc<Manifest>,
    id: SwarmId,
    store: RwLock<Store>,
    state: Mutex<State>,
    changed: Condvar,
    bucket: Option<TokenBucket>,
    cfg: PeerConfig,
    shutdown: Arc<Shutdown>,
    /// Our listening address (the port is what the tracker is told).
    local: SocketAddr,
    bar: Option<ProgressBar>,
}

impl Node {
    fn new(
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
        let bar = (missing > 0 && cli::progress_enabled()).then(|| {
            let bar = ProgressBar::new(manifest.size());
            let style = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_position(received);
            bar
        });
        let state = State {
            missing,
            in_flight: vec![0; n as usize],
            sending: vec![0; n as usize],
            unrequested: missing,
            avail: Availability::new(n as usize),
            coming: Availability::new(n as usize),
            remotes: HashMap::new(),
            next_request: Instant::now(),
            workers: 0,
            rng: Rng::new(),
            received,
            logged_tenth: 0,
            have,
        };
        Arc::new(Node {
            id: manifest.id(),
            manifest,
            store: RwLock::new(store),
            state: Mutex::new(state),
            changed: Condvar::new(),
            bucket: cfg.upload_limit.map(TokenBucket::new),
            cfg,
            shutdown,
            local,
            bar,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Prints one event line on stdout (above the progress bar, if any).
    /// Never call it with `state` or `store` locked.
    fn log(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| crate::event!("{line}")),
            None => crate::event!("{line}"),
        }
    }

    /// Prints a diagnostic on stderr. Never call it with a lock held.
    fn warn(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| crate::diag!("{line}")),
            None => crate::diag!("{line}"),
        }
    }

    fn have(&self) -> Bitfield {
        self.lock().have.clone()
    }

    fn is_complete(&self) -> bool {
        self.lock().missing == 0
    }

    // ---- serving -------------------------------------------------------

    /// Serves other peers until shutdown, on its own thread.
    fn spawn_server(self: &Arc<Self>, server: Server) -> Result<JoinHandle<()>> {
        let node = self.clone();
        let handle = thread::Builder::new().name("serve".into()).spawn(move || {
            let n = node.clone();
            if let Err(e) = server.serve(move |session| n.serve_conn(session)) {
                node.warn(&format!("serving: {e}"));
            }
        })?;
        Ok(handle)
    }

    /// One downloader's connection: handshake, then requests until it
    /// closes.
    fn serve_conn(&self, session: Session) {
        let peer = session.peer();
        let mut conn = match Conn::accept(session, PEER_WIRE) {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                if !e.is_disconnect() {
                    self.warn(&format!("{peer}: {e}"));
                }
                return;
            }
        };
        let chunk = if self.bucket.is_some() { 16 } else { 64 } * 1024;
        let mut buf = vec![0u8; chunk];
        loop {
            let req = match conn.next_request::<PeerRequest, PeerResponse>() {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    if !e.is_disconnect() {
                        self.warn(&format!("{peer}: {e}"));
                    }
                    return;
                }
            };
            let resp = match req {
                PeerRequest::Have { swarm } if swarm == self.id => {
                    let st = self.lock();
                    PeerResponse::Have {
                        have: st.have.clone(),
                        fetching: st.fetching(),
                        sending: st.sending(),
                    }
                }
                PeerRequest::Piece { swarm, index } if swarm == self.id => {
                    match self.manifest.index(index) {
                        None => PeerResponse::Error(format!(
                            "no piece {index}: the swarm has {} pieces",
                            self.manifest.piece_count()
                        )),
                        Some(i) if !self.lock().have.has(i.slot()) => {
                            PeerResponse::Missing { index }
                        }
                        Some(i) => match self.send_piece(&mut conn, i, &mut buf) {
                            Ok(()) => continue,
                            Err(e) => {
                                if !e.is_disconnect() {
                                    self.warn(&format!("{peer}: sending piece {i}: {e}"));
                                }
                                return;
                            }
                        },
                    }
                }
                _ => PeerResponse::UnknownSwarm,
            };
            if conn.send(&resp).is_err() {
                return;
            }
        }
    }

    /// Sends piece `i`: its header, then its bytes read from disk in chunks,
    /// each paid for from the upload bucket.
    fn send_piece(&self, conn: &mut Conn, i: PieceIndex, buf: &mut [u8]) -> Result<()> {
        self.lock().sending[i.slot()] += 1;
        let sent = self.send_piece_body(conn, i, buf);
        let mut st = self.lock();
        st.sending[i.slot()] = st.sending[i.slot()].saturating_sub(1);
        sent
    }

    fn send_piece_body(&self, conn: &mut Conn, i: PieceIndex, buf: &mut [u8]) -> Result<()> {
        let len = self.manifest.piece_len(i);
        conn.queue(&PeerResponse::Piece {
            index: i.get(),
            len,
        })?;
        let mut off = self.manifest.offset(i);
        let mut left = len as usize;
        while left > 0 {
            let n = left.min(buf.len());
            if let Some(bucket) = &self.bucket {
                bucket.take(n, &self.shutdown);
                if self.shutdown.is_triggered() {
                    return Err(Error::Closed);
                }
            }
            self.store
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .read_at(off, &mut buf[..n])?;
            conn.writer().write_all(&buf[..n])?;
            off += n as u64;
            left -= n;
        }
        conn.flush()
    }

    // ---- the tracker ---------------------------------------------------

    fn register(&self, client: &TrackerClient) -> Result<u32> {
        let req = TrackerRequest::Register {
            manifest: (*self.manifest).clone(),
            port: self.local.port(),
            have: self.have(),
        };
        match client.call(&req)? {
            TrackerResponse::Registered { peers, .. } => Ok(peers),
            other => Err(Error::Protocol(format!(
                "unexpected answer to register: {other:?}"
            ))),
        }
    }

    /// Keeps the tracker informed until shutdown, then leaves the swarm.
    /// While downloading it also refreshes the peer list and starts
    /// download workers.
    fn announce_loop(self: &Arc<Self>, client: &TrackerClient, mut registered: bool) {
        let ping_every = self.cfg.ping_interval;
        let report_every = self.cfg.report_interval;
        let peers_every = ping_every.min(PEERS_REFRESH);
        let now = Instant::now();
        let mut next_ping = if registered { now + ping_every } else { now };
        let mut next_report = now + report_every;
        let mut next_peers = now;
        let mut reported_complete = self.is_complete();
        let mut tracker_ok = registered;
        loop {
            let now = Instant::now();
            let complete = self.is_complete();
            if now >= next_ping {
                next_ping = now + ping_every;
                if registered {
                    let req = TrackerRequest::Ping {
                        swarm: self.id,
                        port: self.local.port(),
                    };
                    match client.call(&req) {
                        Ok(TrackerResponse::UnknownPeer) => registered = false,
                        Ok(_) => {}
                        Err(e) => self.tracker_trouble(&mut tracker_ok, client, &e),
                    }
                }
                if !registered {
                    match self.register(client) {
                        Ok(peers) => {
                            registered = true;
                            tracker_ok = true;
                            reported_complete = complete;
                            self.log(&format!(
                                "registered with {} (swarm {}, {peers} peers)",
                                client.addr(),
                                self.id.short()
                            ));
                        }
                        Err(e) => self.tracker_trouble(&mut tracker_ok, client, &e),
                    }
                }
            }
            if registered && (now >= next_report || complete != reported_complete) {
                next_report = now + report_every;
                reported_complete = complete;
                let req = TrackerRequest::Report {
                    swarm: self.id,
                    port: self.local.port(),
                    have: self.have(),
                };
                match client.call(&req) {
                    Ok(TrackerResponse::UnknownPeer) => {
                        registered = false;
                        next_ping = now;
                    }
                    Ok(_) => {}
                    Err(e) => self.tracker_trouble(&mut tracker_ok, client, &e),
                }
            }
            if !complete && now >= next_peers {
                next_peers = now + peers_every;
                let req = TrackerRequest::Peers {
                    swarm: self.id,
                    port: self.local.port(),
                };
                match client.call(&req) {
                    Ok(TrackerResponse::Peers(list)) => self.update_peers(list),
                    Ok(TrackerResponse::NotFound) => {
                        registered = false;
                        next_ping = now;
                    }
                    Ok(other) => self.warn(&format!("tracker: unexpected answer {other:?}")),
                    Err(e) => self.tracker_trouble(&mut tracker_ok, client, &e),
                }
            }
            let mut next = next_ping.min(next_report);
            if !complete {
                next = next.min(next_peers);
            }
            let pause = next.saturating_duration_since(Instant::now()).min(TICK);
            if self.shutdown.wait(pause) {
                break;
            }
        }
        if registered {
            let req = TrackerRequest::Leave {
                swarm: self.id,
                port: self.local.port(),
            };
            let _ = client.call(&req);
        }
    }

    /// Reports a tracker failure once per outage.
    fn tracker_trouble(&self, ok: &mut bool, client: &TrackerClient, e: &Error) {
        if *ok {
            self.warn(&format!(
                "tracker {}: {e} (retrying every {:?})",
                client.addr(),
                self.cfg.ping_interval
            ));
        }
        *ok = false;
    }

    /// Merges the tracker's peer list and starts workers for new peers.
    fn update_peers(self: &Arc<Self>, list: Vec<PeerInfo>) {
        let mut st = self.lock();
        let listed: Vec<SocketAddr> = list.iter().map(|p| p.addr).collect();
        for p in list {
            if p.have.check_for(&self.manifest).is_err() || self.is_me(p.addr) {
                continue;
            }
            match st.remotes.get(&p.addr) {
                // A connected remote's own answers are fresher.
                Some(r) if r.connected || r.banned => {}
                Some(_) => {
                    let fetching = self.manifest.empty_bitfield();
                    st.set_remote_have(p.addr, p.have, fetching);
                }
                None => {
                    st.remotes.insert(
                        p.addr,
                        Remote {
                            have: self.manifest.empty_bitfield(),
                            fetching: self.manifest.empty_bitfield(),
                            connected: false,
                            banned: false,
                            retry_at: None,
                            failures: 0,
                        },
                    );
                    let fetching = self.manifest.empty_bitfield();
                    st.set_remote_have(p.addr, p.have, fetching);
                }
            }
        }
        // Forget idle peers the tracker no longer lists (banned ones stay banned).
        let gone: Vec<SocketAddr> = st
            .remotes
            .iter()
            .filter(|(a, r)| !r.connected && !r.banned && !listed.contains(a))
            .map(|(a, _)| *a)
            .collect();
        for a in gone {
            st.clear_remote(a);
            st.remotes.remove(&a);
        }
        if st.missing == 0 {
            return;
        }
        let now = Instant::now();
        let mut start = Vec::new();
        let running = st.workers;
        for (addr, r) in st.remotes.iter_mut() {
            if r.connected || r.banned || r.retry_at.is_some_and(|t| now < t) {
                continue;
            }
            if start.len() + running >= MAX_WORKERS {
                break;
            }
            r.connected = true;
            start.push(*addr);
        }
        st.workers += start.len();
        drop(st);
        for addr in start {
            let node = self.clone();
            let spawned = thread::Builder::new()
                .name(format!("fetch {addr}"))
                .spawn(move || node.worker(addr));
            if let Err(e) = spawned {
                self.warn(&format!("cannot start a download thread: {e}"));
                let mut st = self.lock();
                st.workers -= 1;
                if let Some(r) = st.remotes.get_mut(&addr) {
                    r.connected = false;
                }
            }
        }
    }

    /// Whether the tracker listed this very peer. The tracker leaves the
    /// asker out of its answer by the address it sees, so this is only a
    /// second check for an exact match: a peer elsewhere that happens to use
    /// the same port is someone else, whatever address this one listens on.
    fn is_me(&self, addr: SocketAddr) -> bool {
        addr == self.local
    }

    // ---- downloading ---------------------------------------------------

    /// A download worker: talks to one remote until the download is done,
    /// the remote fails, or it is banned.
    fn worker(self: Arc<Self>, addr: SocketAddr) {
        let mut slot = Slot {
            node: &self,
            addr,
            pending: VecDeque::new(),
            outcome: Outcome::Panicked,
        };
        slot.outcome = match self.download_from(addr, &mut slot.pending) {
            Ok(end) => Outcome::Ended(end),
            Err(e) => Outcome::Failed(e),
        };
    }

    fn download_from(&self, addr: SocketAddr, pending: &mut VecDeque<Pending>) -> Result<End> {
        let stream = net::connect_addr(addr, &self.cfg.limits.io)?;
        let mut conn = Conn::new(stream)?;
        conn.client_handshake(PEER_WIRE)?;
        let mut last_have_ask: Option<Instant> = None;
        let mut buf: Vec<u8> = Vec::new();
        loop {
            if self.shutdown.is_triggered() || self.is_complete() {
                return Ok(End::Finished);
            }
            let asking_have = pending.iter().any(|p| matches!(p, Pending::Have));
            if !asking_have && last_have_ask.is_none_or(|t| t.elapsed() >= HAVE_REFRESH) {
                conn.queue(&PeerRequest::Have { swarm: self.id })?;
                pending.push_back(Pending::Have);
                last_have_ask = Some(Instant::now());
            }
            let mut idle = TICK;
            while pending
                .iter()
                .filter(|p| matches!(p, Pending::Piece { .. }))
                .count()
                < PIPELINE
            {
                match self.pick(addr, pending) {
                    Pick::Piece(index, holders) => {
                        conn.queue(&PeerRequest::Piece {
                            swarm: self.id,
                            index: index.get(),
                        })?;
                        pending.push_back(Pending::Piece { index, holders });
                        if self.cfg.verbose {
                            self.log(&format!(
                                "request piece {index} from {addr} (holders {holders})"
                            ));
                        }
                    }
                    Pick::Wait(d) => {
                        idle = d;
                        break;
                    }
                }
            }
            conn.flush()?;
            let Some(next) = pending.pop_front() else {
                self.wait_change(idle);
                continue;
            };
            match next {
                Pending::Have => match conn.expect::<PeerResponse>()? {
                    PeerResponse::Have {
                        have,
                        mut fetching,
                        sending,
                    } => {
                        have.check_for(&self.manifest)?;
                        fetching.check_for(&self.manifest)?;
                        sending.check_for(&self.manifest)?;
                        // Either way a copy is on its way somewhere.
                        for i in 0..sending.len() as usize {
                            if sending.has(i) {
                                fetching.set_bit(i, true);
                            }
                        }
                        self.lock().set_remote_have(addr, have, fetching);
                    }
                    PeerResponse::UnknownSwarm => {
                        return Err(Error::Protocol("the peer is not in this swarm".into()));
                    }
                    other => return Err(unexpected(&other)),
                },
                Pending::Piece { index, holders } => {
                    // From here until the answer settles it, every way out
                    // (`?`, a wrong answer, a panic) gives the piece back.
                    let claim = Claim::new(self, index);
                    let want = self.manifest.piece_len(index);
                    match conn.expect::<PeerResponse>()? {
                        PeerResponse::Piece { index: got, len } if got == index.get() => {
                            if len != want {
                                return Err(Error::Protocol(format!(
                                    "piece {index} announced as {len} bytes, it has {want}"
                                )));
                            }
                            buf.resize(want as usize, 0);
                            conn.reader().read_exact(&mut buf)?;
                            if Digest::of(&buf) != self.manifest.piece_hash(index) {
                                drop(claim.release());
                                self.log(&format!(
                                    "piece {index} from {addr} failed its check; not asking {addr} again"
                                ));
                                return Ok(End::Banned);
                            }
                            self.piece_done(claim, &buf, addr, holders)?;
                        }
                        PeerResponse::Missing { index: got } if got == index.get() => {
                            let mut st = claim.release();
                            if let Some(r) = st.remotes.get(&addr) {
                                let mut have = r.have.clone();
                                have.set_bit(index.slot(), false);
                                let fetching = r.fetching.clone();
                                st.set_remote_have(addr, have, fetching);
                            }
                        }
                        other => return Err(unexpected(&other)),
                    }
                }
            }
        }
    }

    /// Chooses the next piece to ask `addr` for: the rarest piece it holds
    /// that we lack and nobody is fetching; once every missing piece is
    /// being fetched (the end game), one being fetched from someone else.
    fn pick(&self, addr: SocketAddr, pending: &VecDeque<Pending>) -> Pick {
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.missing == 0 {
            return Pick::Wait(TICK);
        }
        let now = Instant::now();
        if !self.cfg.request_interval.is_zero() && now < st.next_request {
            return Pick::Wait((st.next_request - now).min(TICK));
        }
        let Some(remote) = st.remotes.get(&addr) else {
            return Pick::Wait(TICK);
        };
        let n = st.avail.len();
        let (have, in_flight, rhave) = (&st.have, &st.in_flight, &remote.have);
        let lacks = |i: usize| !have.has(i) && rhave.has(i);
        let mut rng = st.rng.clone();
        let rank = |i: usize| st.rank(i);
        // A seed's upload is the swarm's scarcest resource: ask a seed only
        // for pieces no other peer holds or is fetching, unless nothing at
        // all is on its way to us.
        let from_seed = rhave.is_complete();
        let seeds = st
            .remotes
            .values()
            .filter(|r| !r.banned && r.have.is_complete())
            .count() as u32;
        let idle = in_flight.iter().all(|&c| c == 0);
        let spare_seed = |i: usize| !from_seed || idle || rank(i) <= seeds;
        let mut choice = picker::rarest_by(
            n,
            rank,
            |i| lacks(i) && in_flight.get(i) == Some(&0) && spare_seed(i),
            &mut rng,
        );
        if choice.is_none() && st.unrequested == 0 && (!from_seed || st.missing <= ENDGAME) {
            let mine = |i: usize| {
                pending
                    .iter()
                    .any(|p| matches!(p, Pending::Piece { index, .. } if index.slot() == i))
            };
            choice = picker::rarest_by(n, rank, |i| lacks(i) && !mine(i), &mut rng);
        }
        st.rng = rng;
        let Some(i) = choice.and_then(|i| self.manifest.index(i as u32)) else {
            return Pick::Wait(TICK);
        };
        let slot = i.slot();
        if st.in_flight[slot] == 0 {
            st.unrequested -= 1;
        }
        st.in_flight[slot] += 1;
        st.next_request = now + self.cfg.request_interval;
        Pick::Piece(i, st.avail.holders(slot))
    }

    /// Stores a verified piece and counts it. If storing fails, the claim
    /// gives the piece back.
    fn piece_done(
        &self,
        claim: Claim<'_>,
        data: &[u8],
        from: SocketAddr,
        holders: u16,
    ) -> Result<()> {
        let i = claim.index;
        self.store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .write_piece(i, data)?;
        claim.settle();
        let mut st = self.lock();
        let slot = i.slot();
        st.in_flight[slot] = st.in_flight[slot].saturating_sub(1);
        if st.have.has(slot) {
            // A duplicate from the end game.
            return Ok(());
        }
        st.have.set(i);
        st.missing -= 1;
        st.received += data.len() as u64;
        let (missing, received, peers) = (st.missing, st.received, st.workers);
        let total = self.manifest.piece_count();
        let tenth = (total - missing) * 10 / total.max(1);
        let log_tenth = self.bar.is_none() && tenth > st.logged_tenth;
        if log_tenth {
            st.logged_tenth = tenth;
        }
        drop(st);
        // Logged before waking the waiters, so that `complete:` comes after
        // the last piece's line.
        self.log(&format!("piece {i} from {from} (holders {holders})"));
        self.changed.notify_all();
        let done = total - missing;
        let peers = format!("{peers} peer{}", if peers == 1 { "" } else { "s" });
        if let Some(bar) = &self.bar {
            bar.set_position(received);
            bar.set_message(format!(
                "{} {done}/{total} pieces, {peers}",
                self.manifest.name()
            ));
        } else if log_tenth {
            self.warn(&format!(
                "{}: {}% ({done}/{total} pieces, {peers})",
                self.manifest.name(),
                tenth * 10
            ));
        }
        Ok(())
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
    fn wait_complete(&self) -> bool {
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

    /// Moves the finished file into place and checks the whole-file hash.
    fn finish(&self) -> Result<()> {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let mut store = self.store.write().unwrap_or_else(PoisonError::into_inner);
        let digest = store.hash_all()?;
        if digest != self.manifest.file_hash() {
            return Err(Error::HashMismatch {
                expected: self.manifest.file_hash(),
                actual: digest,
            });
        }
        let path = store.finish()?;
        drop(store);
        self.log(&format!(
            "complete: {} (sha256 {digest})",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        Ok(())
    }
}

fn unexpected(resp: &PeerResponse) -> Error {
    match resp {
        PeerResponse::Error(why) => Error::Remote(why.clone()),
        other => Error::Protocol(format!("unexpected answer {other:?}")),
    }
}

/// `bt-peer share`: hashes FILE, serves it and keeps the tracker informed
/// until Ctrl-C / SIGTERM. Prints `swarm ID` after the readiness line.
pub fn share(
    path: &Path,
    piece_size: Option<u32>,
    listen: &str,
    cfg: PeerConfig,
) -> anyhow::Result<()> {
    // The handler goes in before the readiness line, so a SIGTERM sent as
    // soon as that line appears still stops the peer cleanly.
    let server = Server::start(listen, cfg.limits)?;
    let shutdown = server.shutdown().clone();
    let local = server.announce()?;
    let manifest = Manifest::from_file(path, piece_size)
        .with_context(|| format!("reading {}", path.display()))?;
    let manifest = Arc::new(manifest);
    let store = Store::shared(path, manifest.clone())?;
    let have = Bitfield::full(manifest.piece_count());
    let client = TrackerClient::new(&cfg.tracker, cfg.limits.io);
    let node = Node::new(manifest.clone(), store, have, cfg, shutdown.clone(), local);
    let server = node.spawn_server(server)?;
    // Register once before printing the id, so a script that waits for the
    // id can fetch at once; if the tracker is down, the loop retries.
    let registered = match node.register(&client) {
        Ok(_) => {
            node.log(&format!("registered with {}", client.addr()));
            true
        }
        Err(e) => {
            node.warn(&format!("tracker {}: {e} (will retry)", client.addr()));
            false
        }
    };
    node.log(&format!("swarm {}", manifest.id()));
    node.log(&format!(
        "sharing {}: {} bytes in {} pieces of {} bytes",
        manifest.name(),
        manifest.size(),
        manifest.piece_count(),
        manifest.piece_size()
    ));
    node.announce_loop(&client, registered);
    let _ = server.join();
    Ok(())
}

/// What `fetch` does once the file is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenDone {
    /// Keep serving until Ctrl-C / SIGTERM.
    Seed,
    /// Leave the swarm and exit.
    Exit,
}

/// `bt-peer fetch`: gets the manifest from the tracker, downloads into
/// `out` (resuming from what is there), then seeds or exits.
pub fn fetch(
    what: &str,
    out: &Path,
    when_done: WhenDone,
    listen: &str,
    cfg: PeerConfig,
) -> anyhow::Result<()> {
    let query = Query::parse(what)
        .with_context(|| format!("{what:?} is neither a swarm id nor a file name"))?;
    // The handler goes in before the readiness line, so a SIGTERM sent as
    // soon as that line appears still stops the peer cleanly.
    let server = Server::start(listen, cfg.limits)?;
    let shutdown = server.shutdown().clone();
    let local = server.announce()?;
    let client = TrackerClient::new(&cfg.tracker, cfg.limits.io);
    let lookup = client
        .call(&TrackerRequest::Lookup(query.clone()))
        .with_context(|| format!("asking tracker {} for {what}", client.addr()))?;
    let manifest = match lookup {
        TrackerResponse::Manifest(m) => m,
        TrackerResponse::NotFound => {
            return Err(Refused(format!("tracker {} knows no swarm {what}", client.addr())).into());
        }
        TrackerResponse::Ambiguous(ids) => {
            let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
            return Err(Refused(format!(
                "several swarms share the name {what}; fetch one by id: {}",
                ids.join(", ")
            ))
            .into());
        }
        other => anyhow::bail!("tracker: unexpected answer {other:?}"),
    };
    if let Query::Id(id) = query {
        anyhow::ensure!(
            manifest.id() == id,
            "the tracker's manifest hashes to {}, not {id}",
            manifest.id()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let manifest = Arc::new(manifest);
    let (store, have) = Store::open(out, manifest.clone())
        .with_context(|| format!("opening the download in {}", out.display()))?;
    let resumed = have.count();
    let node = Node::new(manifest.clone(), store, have, cfg, shutdown.clone(), local);
    node.log(&format!(
        "fetching {}: {} bytes in {} pieces (swarm {})",
        manifest.name(),
        manifest.size(),
        manifest.piece_count(),
        manifest.id().short()
    ));
    if resumed > 0 {
        node.log(&format!(
            "resumed {resumed} of {} pieces from disk",
            manifest.piece_count()
        ));
    }
    let server = node.spawn_server(server)?;
    let announcer = {
        let node = node.clone();
        thread::Builder::new()
            .name("tracker".into())
            .spawn(move || node.announce_loop(&client, false))?
    };
    if node.wait_complete() {
        if let Err(e) = node.finish() {
            shutdown.trigger();
            let _ = announcer.join();
            return Err(anyhow::Error::new(e).context("finishing the download"));
        }
        if when_done == WhenDone::Exit {
            shutdown.trigger();
        }
    } else {
        let held = node.have().count();
        node.warn(&format!(
            "stopped with {held} of {} pieces; run again with the same --out to resume",
            manifest.piece_count()
        ));
    }
    let _ = announcer.join();
    let _ = server.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node fetching a 4-piece file that it holds none of.
    fn fetching_node(tag: &str) -> (Arc<Node>, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("peerkit-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f.bin");
        std::fs::write(&file, vec![7u8; 64 * 1024]).unwrap();
        let manifest = Arc::new(Manifest::from_file(&file, Some(16 * 1024)).unwrap());
        let out = dir.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let (store, have) = Store::open(&out, manifest.clone()).unwrap();
        let cfg = PeerConfig {
            tracker: "127.0.0.1:1".into(),
            limits: Limits::default(),
            ping_interval: TICK,
            report_interval: TICK,
            request_interval: Duration::ZERO,
            upload_limit: None,
            verbose: false,
        };
        let local = "127.0.0.1:1".parse().unwrap();
        let node = Node::new(manifest, store, have, cfg, Shutdown::new(), local);
        (node, dir)
    }

    #[test]
    fn a_panicking_worker_gives_back_its_pieces_and_its_place() {
        let (node, dir) = fetching_node("worker-panic");
        let addr: SocketAddr = "127.0.0.1:2".parse().unwrap();
        {
            let mut st = node.lock();
            let full = Bitfield::full(4);
            st.remotes.insert(
                addr,
                Remote {
                    have: Bitfield::new(4),
                    fetching: Bitfield::new(4),
                    connected: true,
                    banned: false,
                    retry_at: None,
                    failures: 0,
                },
            );
            st.set_remote_have(addr, full, Bitfield::new(4));
            st.workers = 1;
        }
        let n = node.clone();
        let result = thread::spawn(move || {
            let mut slot = Slot {
                node: &n,
                addr,
                pending: VecDeque::new(),
                outcome: Outcome::Panicked,
            };
            // One request still pipelined, one whose answer is being read.
            let Pick::Piece(queued, holders) = n.pick(addr, &slot.pending) else {
                panic!("nothing to pick");
            };
            slot.pending.push_back(Pending::Piece {
                index: queued,
                holders,
            });
            let Pick::Piece(reading, _) = n.pick(addr, &slot.pending) else {
                panic!("nothing more to pick");
            };
            let _claim = Claim::new(&n, reading);
            {
                let st = n.lock();
                assert_eq!((st.unrequested, st.in_flight.iter().sum::<u16>()), (2, 2));
            }
            panic!("a bug while reading the answer");
        })
        .join();
        assert!(result.is_err());
        let st = node.lock();
        assert_eq!(st.in_flight, vec![0; 4]);
        assert_eq!(st.unrequested, 4);
        assert_eq!(st.workers, 0);
        let r = &st.remotes[&addr];
        assert!(!r.connected && r.retry_at.is_some());
        drop(st);
        let _ = std::fs::remove_dir_all(dir);
    }
}
