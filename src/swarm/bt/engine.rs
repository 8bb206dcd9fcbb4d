//! The download and seed engine on the BitTorrent wire: one thread per
//! peer connection, sharing the torrent's state under one lock (never held
//! during socket or disk I/O). Pieces are picked rarest first (the swarm's
//! own picker), in 16 KiB blocks with several requests in flight per
//! peer, partly fetched pieces finished before new ones start; once every
//! missing block is asked for, the endgame asks a second peer and cancels
//! the loser. Each piece is checked against its SHA-1 before it is
//! announced with `have`. A seed starts with a first pass (as BEP 16's
//! super-seeding): instead of a bitfield it tells each peer of a few pieces
//! no one else was told of, and more as those spread, so each piece leaves
//! the seed about once and the peers trade the rest among themselves; once
//! every piece is out it tells everyone everything. Up to [`MAX_UNCHOKED`] interested peers are
//! unchoked; a link silent for [`KEEPALIVE`] gets a keep-alive, and one
//! silent for [`DEAD_AFTER`] is dropped.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use sha1::{Digest as _, Sha1};

use crate::error::{Detail, Error, Result, Stage};
use crate::log::Level;
use crate::net::{self, Timeouts};
use crate::rng::Rng;
use crate::server::Server;
use crate::shutdown::Shutdown;

use super::super::bucket::TokenBucket;
use super::super::picker::{Availability, rarest_by};
use super::announce::{self, Announce};
use super::magnet::{self, ExtHandshake, Metadata, UT_METADATA};
use super::metainfo::{Info, InfoHash};
use super::storage::Storage;
use super::wire::{self, BLOCK, Handshake, MAX_REQUEST, Message, MsgReader};

/// Block requests kept in flight per peer.
const QUEUE: usize = 64;
/// Peers unchoked at once.
pub(super) const MAX_UNCHOKED: usize = 16;
/// Connections kept at most.
const MAX_PEERS: usize = 50;
/// A keep-alive goes out after this long without sending.
pub(super) const KEEPALIVE: Duration = Duration::from_secs(60);
/// A peer silent this long is dropped.
pub(super) const DEAD_AFTER: Duration = Duration::from_secs(150);
/// A request unanswered this long is given back for others to ask.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// In a seed's first pass, pieces told to one peer and not yet seen spread
/// (with one, peers starve between pieces: 15.7 s against 10.3 s with three
/// in the capped benchmark).
const FIRST_PASS_SHOWN: usize = 3;
/// A piece told to a peer that has not spread after this long is told to
/// another.
const FIRST_PASS_STALE: Duration = Duration::from_secs(30);
/// Uncapped, blocks asked for in one batch of requests go out in writes
/// of about this many bytes (fewer system calls than one write a block).
const SEND_BATCH: usize = 128 * 1024;
/// How often a connection's loop wakes without traffic.
const TICK: Duration = Duration::from_millis(50);

/// How the engine runs.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub timeouts: Timeouts,
    pub upload_limit: Option<u64>,
    pub level: Level,
    /// Leave once complete.
    pub exit_when_done: bool,
}

/// A piece in a seed's first pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reveal {
    /// Told to no one yet.
    Hidden,
    /// Told to connection `to` at `at`.
    Shown { to: u64, at: Instant },
    /// Some peer has it.
    Spread,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Missing,
    Requested(u8),
    Received,
}

struct St {
    have: Vec<bool>,
    count: u32,
    /// Pieces in the order they were completed (each connection sends
    /// `have` for the ones it has not yet announced).
    completed: Vec<u32>,
    avail: Availability,
    partial: HashMap<u32, Vec<Block>>,
    /// Each partial piece's SHA-1 over its blocks received in order so
    /// far, and how many that is: verifying a piece reads back from disk
    /// only the blocks that came out of order.
    hashing: HashMap<u32, (Sha1, usize)>,
    verifying: HashSet<u32>,
    /// Connected peers' ids, by connection number.
    peers: HashMap<u64, [u8; 20]>,
    /// Addresses being connected to or connected.
    dialing: HashSet<SocketAddr>,
    /// Addresses found to be this peer itself.
    selves: HashSet<SocketAddr>,
    unchoked: usize,
    rng: Rng,
    /// A seed's first pass, while some piece has not spread.
    first_pass: Option<Vec<Reveal>>,
}

/// One torrent being downloaded or seeded.
pub(super) struct Torrent {
    pub info: Info,
    pub hash: InfoHash,
    pub trackers: Vec<String>,
    peer_id: [u8; 20],
    port: u16,
    storage: Storage,
    st: Mutex<St>,
    shutdown: Arc<Shutdown>,
    cfg: Config,
    bucket: Option<TokenBucket>,
    uploaded: AtomicU64,
    downloaded: AtomicU64,
    complete: AtomicBool,
    /// Set when completion still has to be announced.
    announce_completed: AtomicBool,
    next_conn: AtomicU64,
    live: AtomicUsize,
    started: Instant,
}

/// A fresh peer id: `-PK0100-` and 12 random characters.
pub(super) fn new_peer_id() -> [u8; 20] {
    let mut id = *b"-PK0100-000000000000";
    let mut rng = Rng::new();
    for b in &mut id[8..] {
        *b = b"0123456789abcdefghijklmnopqrstuvwxyz"[rng.below(36)];
    }
    id
}

/// A peer id as text: the printable part, the rest as `.`.
pub(super) fn client_of(id: &[u8; 20]) -> String {
    id.iter()
        .take(8)
        .map(|&c| if c.is_ascii_graphic() { c as char } else { '.' })
        .collect()
}

fn lock(m: &Mutex<St>) -> MutexGuard<'_, St> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Torrent {
    /// A torrent over `storage`, holding the pieces marked in `have`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        info: Info,
        trackers: Vec<String>,
        storage: Storage,
        have: Vec<bool>,
        peer_id: [u8; 20],
        port: u16,
        shutdown: Arc<Shutdown>,
        cfg: Config,
    ) -> Arc<Torrent> {
        let count = have.iter().filter(|&&h| h).count() as u32;
        let n = info.piece_count();
        let complete = count == n;
        Arc::new(Torrent {
            hash: info.hash(),
            trackers,
            peer_id,
            port,
            storage,
            st: Mutex::new(St {
                have,
                count,
                completed: Vec::new(),
                avail: Availability::new(n as usize),
                partial: HashMap::new(),
                hashing: HashMap::new(),
                verifying: HashSet::new(),
                peers: HashMap::new(),
                dialing: HashSet::new(),
                selves: HashSet::new(),
                unchoked: 0,
                rng: Rng::new(),
                first_pass: complete.then(|| vec![Reveal::Hidden; n as usize]),
            }),
            shutdown,
            bucket: cfg.upload_limit.map(TokenBucket::new),
            cfg,
            uploaded: AtomicU64::new(0),
            downloaded: AtomicU64::new(0),
            complete: AtomicBool::new(complete),
            announce_completed: AtomicBool::new(false),
            next_conn: AtomicU64::new(0),
            live: AtomicUsize::new(0),
            started: Instant::now(),
            info,
        })
    }

    pub(super) fn is_complete(&self) -> bool {
        self.complete.load(Ordering::SeqCst)
    }

    fn log(&self, line: impl FnOnce() -> String) {
        if self.cfg.level >= Level::Normal {
            crate::event!("{}", line());
        }
    }

    fn verbose(&self, line: impl FnOnce() -> String) {
        if self.cfg.level >= Level::Verbose {
            crate::event!("{}", line());
        }
    }

    fn left(&self) -> u64 {
        let st = lock(&self.st);
        (0..self.info.piece_count())
            .filter(|&i| !st.have[i as usize])
            .map(|i| u64::from(self.info.piece_size(i)))
            .sum()
    }

    /// Serves incoming connections from `server` on its own threads.
    pub(super) fn spawn_listener(
        self: &Arc<Self>,
        server: Server,
    ) -> Result<thread::JoinHandle<()>> {
        let t = self.clone();
        Ok(thread::Builder::new()
            .name("listen".into())
            .spawn(move || {
                let t2 = t.clone();
                let _ = server.serve(move |session| {
                    session.busy();
                    let addr = session.peer();
                    let Ok(s) = session.stream().try_clone() else {
                        return;
                    };
                    t2.connection(s, addr, false);
                });
            })?)
    }

    /// Announces to the trackers until shutdown (then says `stopped`),
    /// connecting to the peers they name.
    pub(super) fn announce_loop(self: &Arc<Self>) {
        let mut event = Some("started");
        let mut next = Instant::now();
        let timeouts = Timeouts {
            connect: self.cfg.timeouts.connect.min(Duration::from_secs(5)),
            io: self.cfg.timeouts.io.min(Duration::from_secs(10)),
        };
        loop {
            if self.announce_completed.swap(false, Ordering::SeqCst) && event.is_none() {
                event = Some("completed");
                next = Instant::now();
            }
            if Instant::now() < next {
                if self.shutdown.wait(Duration::from_millis(100)) {
                    break;
                }
                continue;
            }
            let mut interval = None;
            for url in &self.trackers {
                let a = self.announcement(event);
                match announce::announce(url, &a, &timeouts) {
                    Ok(r) => {
                        self.verbose(|| format!("tracker {url}: {} peers", r.peers.len()));
                        interval = Some(interval.unwrap_or(r.interval).min(r.interval));
                        for p in r.peers {
                            self.dial(p);
                        }
                    }
                    Err(e) => crate::diag!("tracker {url}: {e}"),
                }
            }
            if interval.is_some() {
                event = None;
            }
            let lonely = lock(&self.st).peers.is_empty() && !self.is_complete();
            let wait = match interval {
                Some(i) if !lonely => Duration::from_secs(u64::from(i)),
                Some(i) => Duration::from_secs(u64::from(i)).min(Duration::from_secs(1)),
                None => announce::RETRY,
            };
            next = Instant::now() + wait;
        }
        let timeouts = Timeouts::secs(2);
        for url in &self.trackers {
            let _ = announce::announce(url, &self.announcement(Some("stopped")), &timeouts);
        }
    }

    fn announcement<'a>(&self, event: Option<&'a str>) -> Announce<'a> {
        Announce {
            info_hash: self.hash,
            peer_id: self.peer_id,
            port: self.port,
            uploaded: self.uploaded.load(Ordering::Relaxed),
            downloaded: self.downloaded.load(Ordering::Relaxed),
            left: self.left(),
            event,
            numwant: 50,
        }
    }

    /// Connects to `addr` on a thread of its own unless already linked.
    pub(super) fn dial(self: &Arc<Self>, addr: SocketAddr) {
        {
            let mut st = lock(&self.st);
            if st.selves.contains(&addr)
                || st.dialing.contains(&addr)
                || st.dialing.len() >= MAX_PEERS
                || (addr.port() == self.port && addr.ip().is_loopback())
            {
                return;
            }
            st.dialing.insert(addr);
        }
        let t = self.clone();
        let spawned = thread::Builder::new().name("peer".into()).spawn(move || {
            match net::connect_addr(addr, &t.cfg.timeouts) {
                Ok(s) => t.connection(s, addr, true),
                Err(e) => t.verbose(|| format!("peer {addr}: {e}")),
            }
            lock(&t.st).dialing.remove(&addr);
        });
        if spawned.is_err() {
            lock(&self.st).dialing.remove(&addr);
        }
    }

    /// Runs one connection to its end, logging how it ended.
    fn connection(self: &Arc<Self>, s: TcpStream, addr: SocketAddr, outgoing: bool) {
        self.live.fetch_add(1, Ordering::SeqCst);
        let mut c = Conn::new(
            self.next_conn.fetch_add(1, Ordering::Relaxed),
            addr,
            self.info.piece_count(),
        );
        let r = self.run(&mut c, s, outgoing);
        self.release(&mut c);
        if c.registered {
            let why = match &r {
                Ok(()) => "closed".to_string(),
                Err(e) => e.to_string(),
            };
            self.log(|| {
                format!(
                    "peer {addr} {} done: down {} bytes, up {} bytes ({why})",
                    client_of(&c.peer_id),
                    c.down,
                    c.up
                )
            });
        } else if let Err(e) = r {
            self.verbose(|| format!("peer {addr}: {e}"));
        }
        self.live.fetch_sub(1, Ordering::SeqCst);
    }

    fn run(self: &Arc<Self>, c: &mut Conn, mut s: TcpStream, outgoing: bool) -> Result<()> {
        net::configure(&s, &self.cfg.timeouts)?;
        let ours = Handshake::new(self.hash, self.peer_id);
        if outgoing {
            s.write_all(&ours.encode())?;
        }
        let theirs = Handshake::read(&mut s)?;
        if theirs.info_hash != self.hash {
            return Err(Error::Handshake(format!(
                "another torrent {}",
                theirs.info_hash
            )));
        }
        if !outgoing {
            s.write_all(&ours.encode())?;
        }
        if theirs.peer_id == self.peer_id {
            lock(&self.st).selves.insert(c.addr);
            return Err(Error::Handshake("connected to itself".into()));
        }
        c.peer_id = theirs.peer_id;
        {
            let mut st = lock(&self.st);
            if st.peers.values().any(|p| *p == theirs.peer_id) {
                return Err(Error::Handshake("already connected to this peer".into()));
            }
            st.peers.insert(c.id, theirs.peer_id);
        }
        c.registered = true;
        self.log(|| format!("peer {} {} connected", c.addr, client_of(&c.peer_id)));
        let mut out = Vec::new();
        {
            let st = lock(&self.st);
            if st.first_pass.is_some() {
                // A first-pass seed tells its pieces one by one: an empty
                // bitfield (as super-seeding seeds send), then `have`s.
                let bits = vec![0u8; self.info.piece_count().div_ceil(8) as usize];
                wire::encode(&Message::Bitfield(bits), &mut out);
            } else if st.count > 0 {
                c.told_all = true;
                let mut bits = vec![0u8; self.info.piece_count().div_ceil(8) as usize];
                for (i, _) in st.have.iter().enumerate().filter(|(_, h)| **h) {
                    bits[i / 8] |= 0x80 >> (i % 8);
                }
                wire::encode(&Message::Bitfield(bits), &mut out);
            }
            c.sent_haves = st.completed.len();
        }
        if theirs.supports_extensions() {
            let payload = magnet::ext_handshake(Some(self.info.raw.len()));
            wire::encode(&Message::Extended { id: 0, payload }, &mut out);
        }
        s.write_all(&out)?;
        c.last_sent = Instant::now();
        s.set_read_timeout(Some(TICK))?;
        let mut reader = MsgReader::new();
        let mut first = true;
        loop {
            if self.shutdown.is_triggered() {
                return Ok(());
            }
            if let Some(m) = reader.next(&mut s)? {
                c.last_recv = Instant::now();
                // A bitfield may follow keep-alives and extended messages only.
                let core = !matches!(m, Message::KeepAlive | Message::Extended { .. });
                self.handle(c, &mut s, m, first)?;
                first &= !core;
            } else if c.last_recv.elapsed() > DEAD_AFTER {
                return Err(Error::TimedOut(format!("{DEAD_AFTER:?} of silence")));
            }
            // Messages that came in one read are all handled before the
            // answers go out in one write.
            if reader.buffered() {
                continue;
            }
            self.maintain(c, &mut s)?;
            if self.is_complete() && c.count == self.info.piece_count() && !c.wants_metadata {
                return Ok(());
            }
        }
    }

    fn handle(&self, c: &mut Conn, s: &mut TcpStream, m: Message, first: bool) -> Result<()> {
        let n = self.info.piece_count();
        match m {
            Message::KeepAlive | Message::Port(_) | Message::Unknown(_) => {}
            Message::Choke => {
                c.peer_choking = true;
                let reqs = std::mem::take(&mut c.reqs);
                let mut st = lock(&self.st);
                for (i, begin, _, _) in reqs {
                    unrequest(&mut st, i, begin);
                }
            }
            Message::Unchoke => c.peer_choking = false,
            Message::Interested => c.peer_interested = true,
            Message::NotInterested => c.peer_interested = false,
            Message::Have(i) => {
                if i >= n {
                    return Err(Error::protocol(
                        Stage::Request,
                        Detail::OutOfRange {
                            what: "have: piece index",
                            value: u64::from(i),
                            limit: u64::from(n.saturating_sub(1)),
                        },
                    ));
                }
                if !c.bits[i as usize] {
                    c.bits[i as usize] = true;
                    c.count += 1;
                    let mut st = lock(&self.st);
                    st.avail.adjust(i as usize, true);
                    spread(&mut st, i);
                }
            }
            Message::Bitfield(b) => {
                // BEP 3 sends it first; a later one (aria2 sends one after
                // its first requests) replaces what the peer was known to hold.
                wire::check_bitfield(&b, n)?;
                if !first {
                    self.verbose(|| format!("peer {}: a bitfield after other messages", c.addr));
                }
                let mut st = lock(&self.st);
                for i in 0..n {
                    let has = wire::bit(&b, i);
                    if has != c.bits[i as usize] {
                        c.bits[i as usize] = has;
                        if has {
                            c.count += 1;
                        } else {
                            c.count -= 1;
                        }
                        st.avail.adjust(i as usize, has);
                        if has {
                            spread(&mut st, i);
                        }
                    }
                }
            }
            Message::Request {
                index,
                begin,
                length,
            } => {
                if index >= n
                    || length == 0
                    || length > MAX_REQUEST
                    || u64::from(begin) + u64::from(length) > u64::from(self.info.piece_size(index))
                {
                    return Err(Error::invalid(
                        Stage::Request,
                        format!("a request for {length} bytes at {begin} of piece {index}"),
                    ));
                }
                if c.am_choking || !lock(&self.st).have[index as usize] {
                    return Ok(());
                }
                self.send_block(c, s, index, begin, length)?;
            }
            Message::Piece { index, begin, data } => self.on_block(c, index, begin, data)?,
            Message::Cancel { .. } => {}
            Message::Extended { id, payload } => self.on_extended(c, id, &payload)?,
        }
        Ok(())
    }

    fn send_block(
        &self,
        c: &mut Conn,
        s: &mut TcpStream,
        index: u32,
        begin: u32,
        length: u32,
    ) -> Result<()> {
        let offset = u64::from(index) * u64::from(self.info.piece_len) + u64::from(begin);
        // The head and the block go out in one write, after the blocks
        // asked for before; the block is read from disk straight behind its head.
        let out = &mut c.out;
        let at = out.len();
        out.extend_from_slice(&(9 + length).to_be_bytes());
        out.push(7);
        out.extend_from_slice(&index.to_be_bytes());
        out.extend_from_slice(&begin.to_be_bytes());
        out.resize(at + 13 + length as usize, 0);
        if let Err(e) = self.storage.read_at(offset, &mut out[at + 13..]) {
            out.truncate(at);
            return Err(e.into());
        }
        // Capped, each block leaves as soon as it is paid for, so the
        // pieces it completes can be passed on.
        if let Some(b) = &self.bucket {
            b.reserve(length as usize).wait(0, &self.shutdown);
        }
        if self.bucket.is_some() || out.len() >= SEND_BATCH {
            s.write_all(out)?;
            out.clear();
            c.last_sent = Instant::now();
        }
        c.up += u64::from(length);
        self.uploaded
            .fetch_add(u64::from(length), Ordering::Relaxed);
        Ok(())
    }

    fn on_block(&self, c: &mut Conn, index: u32, begin: u32, data: Vec<u8>) -> Result<()> {
        let Some(pos) = c
            .reqs
            .iter()
            .position(|&(i, b, l, _)| i == index && b == begin && l as usize == data.len())
        else {
            // Cancelled or never asked for: not ours to write.
            return Ok(());
        };
        c.reqs.swap_remove(pos);
        c.down += data.len() as u64;
        self.downloaded
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let block = (begin / BLOCK) as usize;
        {
            let st = lock(&self.st);
            match st.partial.get(&index).and_then(|b| b.get(block)) {
                Some(Block::Requested(_)) => {}
                // Received from another peer in the endgame, or the piece is done.
                _ => return Ok(()),
            }
        }
        let offset = u64::from(index) * u64::from(self.info.piece_len) + u64::from(begin);
        self.storage.write_at(offset, &data)?;
        let full = {
            let mut st = lock(&self.st);
            let Some(blocks) = st.partial.get_mut(&index) else {
                return Ok(());
            };
            let fresh = blocks
                .get_mut(block)
                .is_some_and(|b| std::mem::replace(b, Block::Received) != Block::Received);
            let full = blocks.iter().all(|b| *b == Block::Received);
            if fresh
                && let Some((h, n)) = st.hashing.get_mut(&index)
                && *n == block
            {
                h.update(&data);
                *n += 1;
            }
            full && st.verifying.insert(index)
        };
        if full {
            self.verify(c, index)?;
        }
        Ok(())
    }

    fn verify(&self, c: &Conn, index: u32) -> Result<()> {
        let (h, n) = lock(&self.st)
            .hashing
            .remove(&index)
            .unwrap_or_else(|| (Sha1::new(), 0));
        let from = (n as u64 * u64::from(BLOCK)).min(u64::from(self.info.piece_size(index)));
        let ok = self.storage.check_piece_from(&self.info, index, h, from)?;
        let done = {
            let mut st = lock(&self.st);
            st.verifying.remove(&index);
            st.partial.remove(&index);
            if ok && !st.have[index as usize] {
                st.have[index as usize] = true;
                st.count += 1;
                st.completed.push(index);
            }
            st.count == self.info.piece_count()
        };
        if ok {
            self.verbose(|| format!("piece {index} from {} {}", c.addr, client_of(&c.peer_id)));
        } else {
            crate::diag!(
                "piece {index} failed its SHA-1 check (last block from {}); asking again",
                c.addr
            );
        }
        if done && !self.complete.swap(true, Ordering::SeqCst) {
            self.on_complete()?;
        }
        Ok(())
    }

    fn on_complete(&self) -> Result<()> {
        let path = self.storage.finish()?;
        let secs = self.started.elapsed().as_secs_f64();
        if let Some(p) = path {
            crate::event!(
                "complete: {} ({} bytes in {secs:.2} s)",
                p.display(),
                self.info.total
            );
        }
        self.announce_completed.store(true, Ordering::SeqCst);
        if self.cfg.exit_when_done {
            self.shutdown.trigger();
        }
        Ok(())
    }

    fn on_extended(&self, c: &mut Conn, id: u8, payload: &[u8]) -> Result<()> {
        if id == 0 {
            c.ext = magnet::parse_ext_handshake(payload).unwrap_or_default();
            return Ok(());
        }
        if id != UT_METADATA {
            return Ok(());
        }
        let Some(their) = c.ext.ut_metadata else {
            return Ok(());
        };
        if let Metadata::Request(p) = magnet::decode_metadata(payload)? {
            c.wants_metadata = true;
            let raw = &self.info.raw;
            let start = p as usize * BLOCK as usize;
            let reply = if start < raw.len() {
                let end = (start + BLOCK as usize).min(raw.len());
                Metadata::Data {
                    piece: p,
                    total: raw.len() as u32,
                    data: raw[start..end].to_vec(),
                }
            } else {
                Metadata::Reject(p)
            };
            let payload = magnet::encode_metadata(&reply);
            wire::encode(&Message::Extended { id: their, payload }, &mut c.out);
            if start + BLOCK as usize >= raw.len() {
                c.wants_metadata = false;
            }
        }
        Ok(())
    }

    /// After each message or tick: haves, interest, choking, requests,
    /// cancels and keep-alives, written in one go.
    fn maintain(&self, c: &mut Conn, s: &mut TcpStream) -> Result<()> {
        let mut out = std::mem::take(&mut c.out);
        let now = Instant::now();
        {
            let mut st = lock(&self.st);
            if !c.told_all {
                self.reveal(&mut st, c, now, &mut out);
            }
            for &i in &st.completed[c.sent_haves..] {
                wire::encode(&Message::Have(i), &mut out);
            }
            c.sent_haves = st.completed.len();
            let want = (0..self.info.piece_count() as usize).any(|i| c.bits[i] && !st.have[i]);
            if want != c.am_interested {
                c.am_interested = want;
                wire::encode(
                    if want {
                        &Message::Interested
                    } else {
                        &Message::NotInterested
                    },
                    &mut out,
                );
            }
            if c.peer_interested && c.am_choking && st.unchoked < MAX_UNCHOKED {
                st.unchoked += 1;
                c.am_choking = false;
                wire::encode(&Message::Unchoke, &mut out);
            } else if !c.peer_interested && !c.am_choking {
                st.unchoked -= 1;
                c.am_choking = true;
                wire::encode(&Message::Choke, &mut out);
            }
            // Endgame losers and overdue requests.
            let mut i = 0;
            while i < c.reqs.len() {
                let (p, b, l, at) = c.reqs[i];
                let got = st
                    .partial
                    .get(&p)
                    .and_then(|bl| bl.get((b / BLOCK) as usize))
                    .is_none_or(|bl| *bl == Block::Received);
                if got {
                    c.reqs.swap_remove(i);
                    wire::encode(
                        &Message::Cancel {
                            index: p,
                            begin: b,
                            length: l,
                        },
                        &mut out,
                    );
                } else if now.duration_since(at) > REQUEST_TIMEOUT {
                    c.reqs.swap_remove(i);
                    unrequest(&mut st, p, b);
                } else {
                    i += 1;
                }
            }
            if !c.peer_choking && c.am_interested {
                while c.reqs.len() < QUEUE {
                    let Some((p, b)) = self.pick(&mut st, c) else {
                        break;
                    };
                    let l = (self.info.piece_size(p) - b).min(BLOCK);
                    c.reqs.push((p, b, l, now));
                    wire::encode(
                        &Message::Request {
                            index: p,
                            begin: b,
                            length: l,
                        },
                        &mut out,
                    );
                }
            }
        }
        if out.is_empty() && c.last_sent.elapsed() > KEEPALIVE {
            wire::encode(&Message::KeepAlive, &mut out);
        }
        if !out.is_empty() {
            s.write_all(&out)?;
            c.last_sent = now;
        }
        // The buffer is kept for the next batch, unless a batch grew it
        // past its usual size.
        out.clear();
        if out.capacity() <= 2 * SEND_BATCH {
            c.out = out;
        }
        Ok(())
    }

    /// A seed's first pass on connection `c`: keeps it told of a few
    /// pieces no one else has; once every piece has spread (or the pass
    /// ends), tells it of every piece.
    fn reveal(&self, st: &mut St, c: &mut Conn, now: Instant, out: &mut Vec<u8>) {
        if let Some(pass) = &st.first_pass
            && pass.iter().all(|r| *r == Reveal::Spread)
        {
            st.first_pass = None;
            self.log(|| "first pass done: every piece has left this seed".to_string());
        }
        let St {
            first_pass,
            rng,
            have,
            ..
        } = st;
        let Some(pass) = first_pass else {
            for (i, told) in c.told.iter_mut().enumerate() {
                if !*told && have[i] {
                    *told = true;
                    wire::encode(&Message::Have(i as u32), out);
                }
            }
            c.told_all = true;
            return;
        };
        let shown = pass
            .iter()
            .enumerate()
            .filter(|(i, r)| matches!(r, Reveal::Shown { to, .. } if *to == c.id) && !c.bits[*i])
            .count();
        for _ in shown..FIRST_PASS_SHOWN {
            let free = |i: usize, r: &Reveal| {
                !c.bits[i]
                    && !c.told[i]
                    && match r {
                        Reveal::Hidden => true,
                        Reveal::Shown { at, .. } => now.duration_since(*at) > FIRST_PASS_STALE,
                        Reveal::Spread => false,
                    }
            };
            let candidates: Vec<usize> = pass
                .iter()
                .enumerate()
                .filter(|(i, r)| free(*i, r))
                .map(|(i, _)| i)
                .collect();
            let Some(&i) = rng.choose(&candidates) else {
                break;
            };
            pass[i] = Reveal::Shown { to: c.id, at: now };
            c.told[i] = true;
            wire::encode(&Message::Have(i as u32), out);
        }
    }

    /// The next block to ask `c` for: a missing block of a piece under
    /// way, else the first block of the rarest piece not started, else (the
    /// endgame) a block another peer is fetching.
    fn pick(&self, st: &mut St, c: &Conn) -> Option<(u32, u32)> {
        let blocks_of = |p: u32| self.info.piece_size(p).div_ceil(BLOCK) as usize;
        let mut found = None;
        for (&p, blocks) in st.partial.iter_mut() {
            if !c.bits[p as usize] || st.verifying.contains(&p) {
                continue;
            }
            if let Some(k) = blocks.iter().position(|b| *b == Block::Missing) {
                blocks[k] = Block::Requested(1);
                found = Some((p, k as u32 * BLOCK));
                break;
            }
        }
        if found.is_some() {
            return found;
        }
        let n = self.info.piece_count() as usize;
        let St {
            have,
            partial,
            avail,
            rng,
            ..
        } = st;
        let fresh = rarest_by(
            n,
            |i| u32::from(avail.holders(i)),
            |i| c.bits[i] && !have[i] && !partial.contains_key(&(i as u32)),
            rng,
        );
        if let Some(p) = fresh {
            let p = p as u32;
            let mut blocks = vec![Block::Missing; blocks_of(p)];
            blocks[0] = Block::Requested(1);
            partial.insert(p, blocks);
            st.hashing.insert(p, (Sha1::new(), 0));
            return Some((p, 0));
        }
        // Endgame: a block someone else is fetching, asked once more.
        for (&p, blocks) in partial.iter_mut() {
            if !c.bits[p as usize] {
                continue;
            }
            for (k, b) in blocks.iter_mut().enumerate() {
                let begin = k as u32 * BLOCK;
                if let Block::Requested(1) = b
                    && !c.reqs.iter().any(|r| r.0 == p && r.1 == begin)
                {
                    *b = Block::Requested(2);
                    return Some((p, begin));
                }
            }
        }
        None
    }

    /// Gives back what connection `c` held: its requests, its unchoke
    /// slot, its pieces in the availability counts, its registration.
    fn release(&self, c: &mut Conn) {
        let mut st = lock(&self.st);
        for (p, b, _, _) in std::mem::take(&mut c.reqs) {
            unrequest(&mut st, p, b);
        }
        if !c.am_choking {
            st.unchoked -= 1;
            c.am_choking = true;
        }
        for (i, h) in c.bits.iter().enumerate() {
            if *h {
                st.avail.adjust(i, false);
            }
        }
        if c.registered {
            st.peers.remove(&c.id);
        }
        if let Some(pass) = st.first_pass.as_mut() {
            for r in pass.iter_mut() {
                if matches!(r, Reveal::Shown { to, .. } if *to == c.id) {
                    *r = Reveal::Hidden;
                }
            }
        }
    }

    /// Waits (up to 2 s) for connection threads to end after shutdown.
    pub(super) fn wait_connections(&self) {
        let until = Instant::now() + Duration::from_secs(2);
        while self.live.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub(super) fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }

    pub(super) fn downloaded(&self) -> u64 {
        self.downloaded.load(Ordering::Relaxed)
    }

    /// The pieces held now.
    pub(super) fn pieces_held(&self) -> u32 {
        lock(&self.st).count
    }

    /// Where a download's data ends up.
    pub(super) fn describe(&self) -> String {
        format!(
            "{}: {} bytes in {} pieces of {} bytes ({} file{})",
            self.info.name,
            self.info.total,
            self.info.piece_count(),
            self.info.piece_len,
            self.info.files.len(),
            if self.info.files.len() == 1 { "" } else { "s" }
        )
    }
}

/// Piece `i` is held by a peer: in a seed's first pass, it has spread.
fn spread(st: &mut St, i: u32) {
    if let Some(r) = st.first_pass.as_mut().and_then(|p| p.get_mut(i as usize)) {
        *r = Reveal::Spread;
    }
}

fn unrequest(st: &mut St, p: u32, begin: u32) {
    if let Some(b) = st
        .partial
        .get_mut(&p)
        .and_then(|bl| bl.get_mut((begin / BLOCK) as usize))
    {
        *b = match *b {
            Block::Requested(n) if n > 1 => Block::Requested(n - 1),
            Block::Requested(_) => Block::Missing,
            other => other,
        };
    }
}

/// One connection's view of its peer.
struct Conn {
    id: u64,
    addr: SocketAddr,
    peer_id: [u8; 20],
    registered: bool,
    bits: Vec<bool>,
    count: u32,
    am_choking: bool,
    am_interested: bool,
    peer_choking: bool,
    peer_interested: bool,
    /// Requests in flight: piece, begin, length, when asked.
    reqs: Vec<(u32, u32, u32, Instant)>,
    sent_haves: usize,
    last_sent: Instant,
    last_recv: Instant,
    down: u64,
    up: u64,
    ext: ExtHandshake,
    wants_metadata: bool,
    /// Pieces this peer was told of with `have` (a seed's first pass).
    told: Vec<bool>,
    /// Whether it was told of every piece held (or sent the bitfield).
    told_all: bool,
    /// Messages not yet written (blocks asked for in one batch).
    out: Vec<u8>,
}

impl Conn {
    fn new(id: u64, addr: SocketAddr, pieces: u32) -> Conn {
        Conn {
            id,
            addr,
            peer_id: [0; 20],
            registered: false,
            bits: vec![false; pieces as usize],
            count: 0,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            reqs: Vec::new(),
            sent_haves: 0,
            last_sent: Instant::now(),
            last_recv: Instant::now(),
            down: 0,
            up: 0,
            ext: ExtHandshake::default(),
            wants_metadata: false,
            told: vec![false; pieces as usize],
            told_all: false,
            out: Vec::new(),
        }
    }
}

/// Where a finished download lives.
pub(super) fn final_path(dir: &std::path::Path, info: &Info) -> PathBuf {
    dir.join(&info.name)
}
