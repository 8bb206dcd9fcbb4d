//! The servent (`kv-servent`): neighbour links, the set of queries already
//! seen, flooding with a TTL, and answers sent straight to the client.
//!
//! Threads: the accept loop runs each incoming connection on its own thread
//! (bounded by [`net::serve`]). Connections still owing their ID, clients
//! and accepted neighbour links each have a cap ([`MAX_HANDSHAKES`],
//! `--max-clients`, `--max-links`); one over its cap is closed at once with
//! a line on stderr, and the accept loop keeps spare threads for that, so
//! idle connections never leave it waiting. Each outgoing neighbour link
//! has a reader thread; every neighbour link has one writer thread fed by a
//! bounded channel, so floods from many readers never interleave on a socket
//! and no reader blocks on a slow neighbour. Each answer is sent from a
//! short-lived thread (at most [`MAX_ANSWERS_IN_FLIGHT`] at once, each giving
//! up after [`ANSWER_TIMEOUT`]).
//!
//! Shared state sits behind two mutexes, `links` and `seen`; no code path
//! holds both, and neither is held during socket I/O.
//!
//! Events go to stdout, one line each (tests and demos wait on them):
//!
//! ```text
//! link in 127.0.0.1:41234             a servent connected to us
//! link out 127.0.0.1:5001             we connected to a listed neighbour
//! link closed 127.0.0.1:41234         a neighbour went away or was cut off
//! client 127.0.0.1:41300 answers to 127.0.0.1:40000
//! client closed 127.0.0.1:41300
//! request key ORIGIN seq S ssh        a client's query (or: request topo ORIGIN seq S)
//! flood key ORIGIN seq S ttl T from PEER
//! duplicate ORIGIN seq S from PEER    dropped, already seen
//! answered ORIGIN seq S
//! forwarded ORIGIN seq S ttl T to N links
//! stopped ORIGIN seq S                ttl used up, not forwarded
//! stats requests=.. floods=.. duplicates=.. sent=.. answers=.. dropped=..   (at exit)
//! ```
//!
//! `--quiet` keeps only the link lines and the final stats.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::{IpAddr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::kvfile::KvStore;
use super::wire::{self, Flood, Message, Text};
use crate::error::Result;
use crate::net::{self, SharedStream, Timeouts};
use crate::server::{Limits, Server, Session};
use crate::shutdown::Shutdown;

/// The TTL a servent gives the floods it starts, unless told otherwise.
pub const DEFAULT_TTL: u16 = 3;

/// How long a query is remembered, unless told otherwise. A flood crosses a
/// network in well under a second; ten seconds covers stragglers while
/// letting a client that restarts on the same port reuse its sequence numbers.
pub const DEFAULT_SEEN_FOR: Duration = Duration::from_secs(10);

/// At most this many queries are remembered at once, whatever their age.
pub const SEEN_CAP: usize = 65_536;

/// Floods queued for one neighbour before new ones are dropped for it.
pub const LINK_QUEUE: usize = 1024;

/// Answers being sent at once; beyond this an answer is dropped with a log line.
pub const MAX_ANSWERS_IN_FLIGHT: usize = 64;

/// How long an answer may take to connect to its client, and then to be
/// written. An answer is a few hundred bytes to a client that is waiting for
/// it; an origin that does not take it this fast is not waiting, and must not
/// hold one of the [`MAX_ANSWERS_IN_FLIGHT`] slots for long.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Client connections open at once, unless told otherwise.
pub const DEFAULT_MAX_CLIENTS: usize = 256;

/// Neighbour links accepted at once, unless told otherwise (the links this
/// servent opens itself are not counted).
pub const DEFAULT_MAX_LINKS: usize = 64;

/// Accepted connections that have not sent their ID yet. Each is closed if
/// its ID does not come within the I/O timeout.
pub const MAX_HANDSHAKES: usize = 64;

/// How a servent runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Interface to listen on (all IPv4 interfaces by default).
    pub bind: IpAddr,
    /// Port to listen on; 0 picks a free one.
    pub port: u16,
    /// The key-value database.
    pub kv: KvStore,
    /// `IP:PORT` of neighbours to connect to; they must be running.
    pub neighbours: Vec<String>,
    /// TTL of the floods this servent starts.
    pub ttl: u16,
    /// How long a query is remembered.
    pub seen_for: Duration,
    /// The server core's limits; `limits.io` also times outgoing connections.
    pub limits: Limits,
    /// Client connections open at once; more are closed at once.
    pub max_clients: usize,
    /// Neighbour links accepted at once; more are closed at once.
    pub max_links: usize,
    /// Print only link changes and the final stats.
    pub quiet: bool,
}

/// Which of the two queries a request or a flood carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Query {
    Key,
    Topo,
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Query::Key => "key",
            Query::Topo => "topo",
        })
    }
}

/// A query's identity: the client's answer address and its sequence number.
type QueryId = (SocketAddrV4, u32);

/// The queries already seen, forgotten after a while or when too many.
#[derive(Debug)]
pub struct Seen {
    set: HashSet<QueryId>,
    order: VecDeque<(Instant, QueryId)>,
    keep: Duration,
    cap: usize,
}

impl Seen {
    pub fn new(keep: Duration, cap: usize) -> Seen {
        Seen {
            set: HashSet::new(),
            order: VecDeque::new(),
            keep,
            cap: cap.max(1),
        }
    }

    /// Records `id` as seen at `now`; false if it was already seen.
    pub fn insert(&mut self, id: QueryId, now: Instant) -> bool {
        while let Some(&(at, old)) = self.order.front() {
            if now.saturating_duration_since(at) < self.keep && self.order.len() < self.cap {
                break;
            }
            self.order.pop_front();
            self.set.remove(&old);
        }
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back((now, id));
        true
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// Counters printed as the `stats` line at exit.
#[derive(Debug, Default)]
pub struct Stats {
    /// Queries received from clients.
    pub requests: AtomicU64,
    /// Floods received from neighbours.
    pub floods: AtomicU64,
    /// Of those, the ones dropped as already seen.
    pub duplicates: AtomicU64,
    /// Floods written to neighbours.
    pub sent: AtomicU64,
    /// Answers delivered to clients.
    pub answers: AtomicU64,
    /// Floods or answers dropped because a queue was full or a path too long.
    pub dropped: AtomicU64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        write!(
            f,
            "stats requests={} floods={} duplicates={} sent={} answers={} dropped={}",
            g(&self.requests),
            g(&self.floods),
            g(&self.duplicates),
            g(&self.sent),
            g(&self.answers),
            g(&self.dropped),
        )
    }
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Open connections of one kind, at most `max` at once.
struct Cap {
    what: &'static str,
    open: AtomicUsize,
    max: usize,
}

impl Cap {
    fn new(what: &'static str, max: usize) -> Cap {
        Cap {
            what,
            open: AtomicUsize::new(0),
            max: max.max(1),
        }
    }

    /// A place for one more connection, held until the guard drops; None
    /// (and a line on stderr naming `peer`) when all are taken.
    fn take(&self, peer: SocketAddr) -> Option<CapGuard<'_>> {
        let taken = self
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            });
        if taken.is_err() {
            crate::diag!(
                "{peer}: already {} {} open; closing the connection",
                self.max,
                self.what
            );
            return None;
        }
        Some(CapGuard(&self.open))
    }
}

struct CapGuard<'a>(&'a AtomicUsize);

impl Drop for CapGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

type LinkId = u64;

/// The sending side of one neighbour link.
struct LinkTx {
    peer: SocketAddr,
    tx: SyncSender<Arc<[u8]>>,
}

#[derive(Default)]
struct Links {
    next: LinkId,
    map: HashMap<LinkId, LinkTx>,
}

struct Servent {
    kv: KvStore,
    /// The listening port, reported in topology paths.
    port: u16,
    ttl: u16,
    timeouts: Timeouts,
    quiet: bool,
    links: Mutex<Links>,
    seen: Mutex<Seen>,
    stats: Stats,
    answering: AtomicUsize,
    /// Accepted connections waiting for their ID.
    handshakes: Cap,
    /// Client connections.
    clients: Cap,
    /// Neighbour links accepted.
    links_in: Cap,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits, with no deadline, for the next message on a long-lived link to
/// start, then reads the whole of it under the I/O timeout (a peer that
/// stops half way through a message is cut off; an idle link is not). The
/// socket keeps its read timeout: one that fires before the first byte of a
/// message has consumed nothing and is simply waited out again.
fn next_message(r: &mut BufReader<SharedStream>) -> Result<Option<Message>> {
    loop {
        match r.fill_buf() {
            Ok([]) => return Ok(None),
            Ok(_) => return wire::read_message(r),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `ip:port` of this servent as seen through `stream`: the socket's local
/// IP and the listening port.
fn own_address(stream: &TcpStream, port: u16) -> io::Result<String> {
    let ip = stream.local_addr()?.ip();
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    Ok(net::host_port(&ip.to_string(), port))
}

/// Runs a servent until `shutdown` triggers, then prints the stats line.
pub fn run(config: Config, shutdown: &Arc<Shutdown>) -> anyhow::Result<()> {
    let listen = SocketAddr::new(config.bind, config.port);
    let server = Server::bind(&listen.to_string(), config.limits, shutdown.clone())?;
    let port = server.local_addr().port();
    let servent = Arc::new(Servent {
        kv: config.kv,
        port,
        ttl: config.ttl,
        timeouts: config.limits.io,
        quiet: config.quiet,
        links: Mutex::new(Links::default()),
        seen: Mutex::new(Seen::new(config.seen_for, SEEN_CAP)),
        stats: Stats::default(),
        answering: AtomicUsize::new(0),
        handshakes: Cap::new("connections without an ID", MAX_HANDSHAKES),
        clients: Cap::new("client connections", config.max_clients),
        links_in: Cap::new("neighbour links", config.max_links),
    });

    // Links to the listed neighbours are up (and registered for flooding)
    // before the readiness line, so a query sent right after it floods.
    let mut outgoing = Vec::new();
    for addr in &config.neighbours {
        let stream = net::connect(addr, &config.limits.io)
            .with_context(|| format!("connecting to neighbour {addr}"))?;
        (&stream)
            .write_all(&Message::Id { port: 0 }.encode())
            .with_context(|| format!("greeting neighbour {addr}"))?;
        let peer = stream.peer_addr()?;
        let id = servent
            .open_link(&stream, peer)
            .with_context(|| format!("starting the link to {addr}"))?;
        outgoing.push((stream, peer, id));
    }
    server.announce()?;
    for (stream, peer, id) in outgoing {
        crate::event!("link out {peer}");
        let s = servent.clone();
        thread::Builder::new()
            .name(format!("link {peer}"))
            .spawn(move || {
                let stream = SharedStream::new(Arc::new(stream));
                s.neighbour_link(&mut BufReader::new(stream), peer, id)
            })
            .context("starting a link thread")?;
    }

    let s = servent.clone();
    server.serve(move |session| s.accepted(session))?;
    crate::event!("{}", servent.stats);
    Ok(())
}

impl Servent {
    /// An event line, unless `--quiet`.
    fn event(&self, line: fmt::Arguments<'_>) {
        if !self.quiet {
            crate::log::write_event(line);
        }
    }

    /// Registers a neighbour link for flooding and starts its writer.
    fn open_link(self: &Arc<Self>, stream: &TcpStream, peer: SocketAddr) -> Result<LinkId> {
        let writer = stream.try_clone()?;
        let (tx, rx) = sync_channel(LINK_QUEUE);
        let id = {
            let mut links = lock(&self.links);
            links.next += 1;
            let id = links.next;
            links.map.insert(id, LinkTx { peer, tx });
            id
        };
        let s = self.clone();
        let spawned = thread::Builder::new()
            .name(format!("send {peer}"))
            .spawn(move || s.write_link(writer, rx, peer));
        if let Err(e) = spawned {
            lock(&self.links).map.remove(&id);
            return Err(e.into());
        }
        Ok(id)
    }

    /// The writer of one link: sends what the channel brings, batching what
    /// is already queued into one flush, until the link is removed.
    fn write_link(&self, stream: TcpStream, rx: Receiver<Arc<[u8]>>, peer: SocketAddr) {
        let mut w = BufWriter::new(&stream);
        while let Ok(first) = rx.recv() {
            let mut n = 1;
            let mut res = w.write_all(&first);
            while res.is_ok() {
                match rx.try_recv() {
                    Ok(more) => {
                        n += 1;
                        res = w.write_all(&more);
                    }
                    Err(_) => break,
                }
            }
            if let Err(e) = res.and_then(|()| w.flush()) {
                crate::diag!(
                    "link {peer}: sending failed: {}; closing it",
                    crate::error::describe_io(&e)
                );
                // The reader notices, logs and unregisters the link.
                net::close(&stream);
                return;
            }
            bump(&self.stats.sent, n);
        }
    }

    /// An accepted connection: its ID, due within the I/O timeout, says
    /// whether a servent or a client is on the other end. A connection over
    /// the cap of its kind is closed at once.
    fn accepted(self: &Arc<Self>, session: Session) {
        let peer = session.peer();
        let mut r = BufReader::new(SharedStream::new(session.shared_stream()));
        let id = match self.handshakes.take(peer) {
            Some(_waiting) => wire::read_message(&mut r),
            None => Ok(None),
        };
        // Links and clients stay open between messages for as long as
        // their peers keep them.
        session.busy();
        match id {
            Ok(None) => {}
            Ok(Some(Message::Id { port: 0 })) => {
                if let Some(_open) = self.links_in.take(peer) {
                    match self.open_link(r.get_ref().tcp(), peer) {
                        Ok(id) => {
                            crate::event!("link in {peer}");
                            self.neighbour_link(&mut r, peer, id);
                        }
                        Err(e) => crate::diag!("link {peer}: cannot start it: {e}"),
                    }
                }
            }
            Ok(Some(Message::Id { port })) => {
                if let Some(_open) = self.clients.take(peer) {
                    self.client_link(&mut r, peer, port);
                }
            }
            Ok(Some(other)) => crate::diag!(
                "{peer}: expected ID, got {}; closing the connection",
                other.name()
            ),
            Err(e) => crate::diag!("{peer}: {e}; closing the connection"),
        }
        net::close(r.get_ref().tcp());
    }

    /// Reads floods from a neighbour until it leaves or misbehaves.
    fn neighbour_link(
        self: &Arc<Self>,
        r: &mut BufReader<SharedStream>,
        peer: SocketAddr,
        id: LinkId,
    ) {
        let me = own_address(r.get_ref().tcp(), self.port);
        loop {
            match next_message(r) {
                Ok(None) => break,
                Ok(Some(Message::KeyFlood(f))) => self.on_flood(Query::Key, f, id, peer, &me),
                Ok(Some(Message::TopoFlood(f))) => self.on_flood(Query::Topo, f, id, peer, &me),
                Ok(Some(other)) => crate::diag!(
                    "link {peer}: unexpected {} from a servent, ignored",
                    other.name()
                ),
                Err(e) => {
                    crate::diag!("link {peer}: {e}; closing it");
                    break;
                }
            }
        }
        lock(&self.links).map.remove(&id);
        net::close(r.get_ref().tcp());
        crate::event!("link closed {peer}");
    }

    /// Reads a client's requests; `port` is where it listens for answers.
    fn client_link(self: &Arc<Self>, r: &mut BufReader<SharedStream>, peer: SocketAddr, port: u16) {
        let ip = match peer.ip() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(ip) => ip.to_ipv4_mapped(),
        };
        let Some(ip) = ip else {
            crate::diag!(
                "client {peer}: not IPv4, answers cannot reach it; closing the connection"
            );
            return;
        };
        let origin = SocketAddrV4::new(ip, port);
        let me = own_address(r.get_ref().tcp(), self.port);
        crate::event!("client {peer} answers to {origin}");
        loop {
            match next_message(r) {
                Ok(None) => break,
                Ok(Some(Message::KeyReq { seq, key })) => {
                    self.on_request(Query::Key, seq, key, origin, &me)
                }
                Ok(Some(Message::TopoReq { seq })) => {
                    // The path starts with this servent; `info` is replaced.
                    self.on_request(Query::Topo, seq, Text::default(), origin, &me)
                }
                Ok(Some(other)) => crate::diag!(
                    "client {peer}: unexpected {} from a client, ignored",
                    other.name()
                ),
                Err(e) => {
                    crate::diag!("client {peer}: {e}; closing the connection");
                    break;
                }
            }
        }
        crate::event!("client closed {peer}");
    }

    /// Remembers a query; false (and a log line) if it was seen before.
    fn first_sight(&self, id: QueryId, peer: impl fmt::Display) -> bool {
        if lock(&self.seen).insert(id, Instant::now()) {
            return true;
        }
        self.event(format_args!("duplicate {} seq {} from {peer}", id.0, id.1));
        false
    }

    /// A query from a client: answer for ourselves, flood with the full TTL.
    fn on_request(
        self: &Arc<Self>,
        query: Query,
        seq: u32,
        key: Text,
        origin: SocketAddrV4,
        me: &io::Result<String>,
    ) {
        bump(&self.stats.requests, 1);
        if !self.first_sight((origin, seq), "client") {
            return;
        }
        let info = match query {
            Query::Key => {
                self.event(format_args!("request key {origin} seq {seq} {key}"));
                if let Some(value) = self.kv.get(&key) {
                    self.answer(origin, seq, value.clone());
                }
                key
            }
            Query::Topo => {
                self.event(format_args!("request topo {origin} seq {seq}"));
                let Some(path) = self.path_start(me) else {
                    return;
                };
                self.answer(origin, seq, path.clone());
                path
            }
        };
        let flood = Flood {
            ttl: self.ttl,
            seq,
            origin,
            info,
        };
        self.forward(query, flood, None);
    }

    /// This servent's address as the first entry of a topology path.
    fn path_start(&self, me: &io::Result<String>) -> Option<Text> {
        match me.as_ref().map(|m| Text::new(m)) {
            Ok(Ok(t)) => Some(t),
            Ok(Err(e)) => {
                crate::diag!("own address cannot be sent: {e}");
                None
            }
            Err(e) => {
                crate::diag!("own address unknown: {e}");
                None
            }
        }
    }

    /// A flood from a neighbour: drop it if seen, else answer if we can and
    /// pass it on with one hop less.
    fn on_flood(
        self: &Arc<Self>,
        query: Query,
        mut flood: Flood,
        from: LinkId,
        peer: SocketAddr,
        me: &io::Result<String>,
    ) {
        bump(&self.stats.floods, 1);
        let (origin, seq) = (flood.origin, flood.seq);
        if !self.first_sight((origin, seq), peer) {
            bump(&self.stats.duplicates, 1);
            return;
        }
        self.event(format_args!(
            "flood {query} {origin} seq {seq} ttl {} from {peer}",
            flood.ttl
        ));
        match query {
            Query::Key => {
                if let Some(value) = self.kv.get(&flood.info) {
                    self.answer(origin, seq, value.clone());
                }
            }
            Query::Topo => {
                let path = match me {
                    Ok(me) => flood.info.append_word(me),
                    Err(_) => None,
                };
                let Some(path) = path else {
                    bump(&self.stats.dropped, 1);
                    crate::diag!(
                        "topology query {origin} seq {seq}: path too long or own address unknown; \
                         not answered or forwarded"
                    );
                    return;
                };
                flood.info = path;
                self.answer(origin, seq, flood.info.clone());
            }
        }
        flood.ttl = flood.ttl.saturating_sub(1);
        if flood.ttl == 0 {
            self.event(format_args!("stopped {origin} seq {seq}"));
            return;
        }
        self.forward(query, flood, Some(from));
    }

    /// Queues a flood on every neighbour link but `except`.
    fn forward(&self, query: Query, flood: Flood, except: Option<LinkId>) {
        let (origin, seq, ttl) = (flood.origin, flood.seq, flood.ttl);
        let msg = match query {
            Query::Key => Message::KeyFlood(flood),
            Query::Topo => Message::TopoFlood(flood),
        };
        let bytes: Arc<[u8]> = msg.encode().into();
        let targets: Vec<(SocketAddr, SyncSender<Arc<[u8]>>)> = lock(&self.links)
            .map
            .iter()
            .filter(|(id, _)| Some(**id) != except)
            .map(|(_, l)| (l.peer, l.tx.clone()))
            .collect();
        let mut queued = 0;
        for (peer, tx) in targets {
            match tx.try_send(bytes.clone()) {
                Ok(()) => queued += 1,
                Err(TrySendError::Full(_)) => {
                    bump(&self.stats.dropped, 1);
                    crate::diag!("link {peer}: queue full, flood {origin} seq {seq} dropped");
                }
                // The link is going away.
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
        self.event(format_args!(
            "forwarded {origin} seq {seq} ttl {ttl} to {queued} links"
        ));
    }

    /// Sends one RESP to the client on a new connection, from its own thread.
    fn answer(self: &Arc<Self>, origin: SocketAddrV4, seq: u32, value: Text) {
        if self.answering.fetch_add(1, Ordering::SeqCst) >= MAX_ANSWERS_IN_FLIGHT {
            self.answering.fetch_sub(1, Ordering::SeqCst);
            bump(&self.stats.dropped, 1);
            crate::diag!("too many answers in flight; answer to {origin} seq {seq} dropped");
            return;
        }
        let s = self.clone();
        let spawned = thread::Builder::new()
            .name(format!("answer {origin}"))
            .spawn(move || {
                let res = s.send_answer(origin, seq, value);
                s.answering.fetch_sub(1, Ordering::SeqCst);
                match res {
                    Ok(()) => {
                        bump(&s.stats.answers, 1);
                        s.event(format_args!("answered {origin} seq {seq}"));
                    }
                    Err(e) => crate::diag!("answer to {origin} seq {seq}: {e}"),
                }
            });
        if let Err(e) = spawned {
            self.answering.fetch_sub(1, Ordering::SeqCst);
            crate::diag!("answer to {origin} seq {seq}: no thread: {e}");
        }
    }

    fn send_answer(&self, origin: SocketAddrV4, seq: u32, value: Text) -> Result<()> {
        let timeouts = answer_timeouts(&self.timeouts);
        let stream = net::connect_addr(SocketAddr::V4(origin), &timeouts)?;
        (&stream).write_all(&Message::Resp { seq, value }.encode())?;
        // Half-close so the client sees the end of the answer; it may already
        // have closed its side, which is fine.
        let _ = stream.shutdown(std::net::Shutdown::Write);
        Ok(())
    }
}

/// The timeouts of an answer's connection: [`ANSWER_TIMEOUT`], or less if
/// the servent's own are shorter.
fn answer_timeouts(t: &Timeouts) -> Timeouts {
    Timeouts {
        connect: t.connect.min(ANSWER_TIMEOUT),
        io: t.io.min(ANSWER_TIMEOUT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn id(port: u16, seq: u32) -> QueryId {
        (SocketAddrV4::new(Ipv4Addr::LOCALHOST, port), seq)
    }

    #[test]
    fn answers_give_up_sooner_than_links() {
        let t = answer_timeouts(&Timeouts::default());
        assert_eq!((t.connect, t.io), (ANSWER_TIMEOUT, ANSWER_TIMEOUT));
        let short = Timeouts::secs(1);
        assert_eq!(answer_timeouts(&short), short);
    }

    #[test]
    fn caps_turn_away_the_one_too_many() {
        let cap = Cap::new("test connections", 2);
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let a = cap.take(peer);
        let b = cap.take(peer);
        assert!(a.is_some() && b.is_some());
        assert!(cap.take(peer).is_none());
        drop(a);
        assert!(cap.take(peer).is_some());
        assert_eq!(cap.open.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn seen_drops_repeats() {
        let mut s = Seen::new(Duration::from_secs(10), 100);
        let t = Instant::now();
        assert!(s.insert(id(1, 0), t));
        assert!(!s.insert(id(1, 0), t));
        assert!(s.insert(id(1, 1), t));
        assert!(s.insert(id(2, 0), t));
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn seen_forgets_after_a_while() {
        let mut s = Seen::new(Duration::from_secs(10), 100);
        let t = Instant::now();
        assert!(s.insert(id(1, 0), t));
        assert!(!s.insert(id(1, 0), t + Duration::from_secs(9)));
        assert!(s.insert(id(1, 0), t + Duration::from_secs(10)));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn seen_stays_under_its_cap() {
        let mut s = Seen::new(Duration::from_secs(3600), 50);
        let t = Instant::now();
        for seq in 0..10_000 {
            assert!(s.insert(id(9, seq), t));
            assert!(s.len() <= 50);
        }
        // The oldest were evicted, the newest remembered.
        assert!(!s.insert(id(9, 9_999), t));
        assert!(s.insert(id(9, 0), t));
    }
}
