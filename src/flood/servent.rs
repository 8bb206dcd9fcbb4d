//! The servent (`kv-servent`): neighbour links, the set of queries already
//! seen, flooding with a TTL, and answers sent straight to the client.
//!
//! **Connections.** Accepted connections run on the server core, one thread
//! each. A new connection is in the core's request phase: its ID must arrive
//! within `--request-timeout`, or the core closes it; when every slot is
//! taken the core drops the connection idle or stalled longest. The ID says
//! what is on the other end:
//! - a client (ID with its answer port): between messages it is idle
//!   (closed after `--idle-timeout`, evicted first), a message in progress
//!   must arrive whole within the request deadline;
//! - a neighbour (ID port 0): a protected link (evicted last) with the long
//!   `--link-idle-timeout`, since the protocol has no keep-alive.
//!
//! Each kind is a connection class of the server core with a cap of its own
//! (`--max-clients`, `--max-links`); when a kind is full, its member idle
//! longest is dropped for the newcomer, with a line on stderr, so N silent
//! sockets never lock a real client out.
//!
//! **Links.** Each outgoing neighbour link has a reader thread; every
//! neighbour link has one writer thread fed by a bounded channel, so floods
//! from many readers never interleave on a socket and no reader blocks on a
//! slow neighbour.
//!
//! **Answers.** Each answer is sent from a short-lived thread on a new
//! connection to the query's origin, within 2 s all told. At most 64 are
//! in flight, at most 4 of them to one origin `IP:PORT`, so an origin
//! that never accepts (a black hole) holds a few slots for a short while and
//! answers to everyone else still go out. Answers over either bound are
//! dropped and counted.
//!
//! **Locks.** `links`, `seen` and `answers` are separate mutexes; no code
//! path holds two, and none is held during socket I/O or logging.
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
//! `-q` keeps only the link lines and the final stats. Lines on stderr that
//! come in bursts under attack (dropped or failed answers, evictions, bad
//! connections from clients) are at most five a second of each sort, the
//! rest counted into the next; `-v` logs every one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::{IpAddr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::kvfile::KvStore;
use super::wire::{self, Flood, Message, Text};
use crate::cli::Level;
use crate::error::{Result, ResultExt};
use crate::log::Throttle;
use crate::net::{self, SharedStream, Timeouts};
use crate::server::{ConnClass, Limits, Server, Session};
use crate::shutdown::Shutdown;

/// The TTL a servent gives the floods it starts, unless told otherwise.
pub const DEFAULT_TTL: u16 = 3;

/// How long a query is remembered, unless told otherwise. A flood crosses a
/// network in well under a second; ten seconds covers stragglers while
/// letting a client that restarts on the same port reuse its sequence numbers.
pub const DEFAULT_SEEN_FOR: Duration = Duration::from_secs(10);

/// Client connections open at once, unless told otherwise.
pub const DEFAULT_MAX_CLIENTS: usize = 256;

/// Neighbour links accepted at once, unless told otherwise (the links this
/// servent opens itself are not counted).
pub const DEFAULT_MAX_LINKS: usize = 64;

/// How long an accepted neighbour link may stay silent, unless told
/// otherwise. The protocol has no keep-alive, and a quiet network is not a
/// broken one: a day.
pub const DEFAULT_LINK_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// At most this many queries are remembered at once, whatever their age.
const SEEN_CAP: usize = 65_536;

/// Floods queued for one neighbour before new ones are dropped for it.
const LINK_QUEUE: usize = 1024;

/// Answers being sent at once; beyond this an answer is dropped.
const MAX_ANSWERS_IN_FLIGHT: usize = 64;

/// Answers being sent at once to one origin `IP:PORT`; beyond this an
/// answer to it is dropped. A client waiting for its answers accepts them as
/// fast as they come, so a few at a time is plenty; an origin that does not
/// accept holds no more than these.
const MAX_ANSWERS_PER_ORIGIN: usize = 4;

/// How long one answer may take, connecting and writing together. An answer
/// is a few hundred bytes to a client that is waiting for it; an origin that
/// does not take it this fast is not waiting.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// How a servent runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Interface to listen on (all IPv4 interfaces by default).
    pub bind: IpAddr,
    /// Port to listen on; 0 picks a free one.
    pub port: u16,
    /// The key-value file.
    pub kv_file: PathBuf,
    /// `IP:PORT` of neighbours to connect to; they must be running.
    pub neighbours: Vec<String>,
    /// TTL of the floods this servent starts.
    pub ttl: u16,
    /// How long a query is remembered.
    pub seen_for: Duration,
    /// The server core's limits; `limits.io` also times outgoing connections.
    pub limits: Limits,
    /// Client connections open at once; when full, the idlest is dropped.
    pub max_clients: usize,
    /// Neighbour links accepted at once; when full, the idlest is dropped.
    pub max_links: usize,
    /// How long an accepted neighbour link may stay silent.
    pub link_idle_timeout: Duration,
    /// `-q`: only link changes and the final stats; `-v`: every drop.
    pub level: Level,
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
struct Seen {
    set: HashSet<QueryId>,
    order: VecDeque<(Instant, QueryId)>,
    keep: Duration,
    cap: usize,
}

impl Seen {
    fn new(keep: Duration, cap: usize) -> Seen {
        Seen {
            set: HashSet::new(),
            order: VecDeque::new(),
            keep,
            cap: cap.max(1),
        }
    }

    /// Records `id` as seen at `now`; false if it was already seen.
    fn insert(&mut self, id: QueryId, now: Instant) -> bool {
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
}

/// Counters printed as the `stats` line at exit.
#[derive(Debug, Default)]
struct Stats {
    /// Queries received from clients.
    requests: AtomicU64,
    /// Floods received from neighbours.
    floods: AtomicU64,
    /// Of those, the ones dropped as already seen.
    duplicates: AtomicU64,
    /// Floods written to neighbours.
    sent: AtomicU64,
    /// Answers delivered to clients.
    answers: AtomicU64,
    /// Floods or answers dropped: a queue full, too many answers in flight,
    /// a path too long.
    dropped: AtomicU64,
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why an answer was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Busy {
    /// [`MAX_ANSWERS_IN_FLIGHT`] are being sent.
    All,
    /// [`MAX_ANSWERS_PER_ORIGIN`] are being sent to this origin.
    Origin,
}

/// Answers in flight, in all and per origin.
#[derive(Debug, Default)]
struct Answers {
    table: Mutex<(usize, HashMap<SocketAddrV4, usize>)>,
}

impl Answers {
    /// Takes a slot for an answer to `origin`; give it back with `done`.
    fn take(&self, origin: SocketAddrV4) -> std::result::Result<(), Busy> {
        let mut t = lock(&self.table);
        if t.0 >= MAX_ANSWERS_IN_FLIGHT {
            return Err(Busy::All);
        }
        let n = t.1.entry(origin).or_insert(0);
        if *n >= MAX_ANSWERS_PER_ORIGIN {
            return Err(Busy::Origin);
        }
        *n += 1;
        t.0 += 1;
        Ok(())
    }

    fn done(&self, origin: SocketAddrV4) {
        let mut t = lock(&self.table);
        t.0 = t.0.saturating_sub(1);
        if let Some(n) = t.1.get_mut(&origin) {
            *n -= 1;
            if *n == 0 {
                t.1.remove(&origin);
            }
        }
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
    level: Level,
    link_idle_timeout: Duration,
    links: Mutex<Links>,
    seen: Mutex<Seen>,
    stats: Stats,
    answers: Answers,
    /// Client connections, capped by `--max-clients`.
    clients: ConnClass,
    /// Accepted neighbour links, capped by `--max-links`.
    links_in: ConnClass,
    /// Dropped answers.
    drops: Throttle,
    /// Answers that failed.
    failures: Throttle,
    /// Connections without a valid ID, clients sending garbage or vanishing
    /// in the middle of a message.
    conn_errors: Throttle,
}

/// Waits, with no deadline, for the next message on a link this servent
/// opened, then reads the whole of it under the I/O timeout (a peer that
/// stops half way through a message is cut off; an idle link is not). A
/// read timeout before the first byte has consumed nothing and is simply
/// waited out again.
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

/// The next message on an accepted connection: idle until its first byte,
/// then the whole of it within the request deadline, then busy while it is
/// handled.
fn next_request(session: &Session, r: &mut BufReader<SharedStream>) -> Result<Option<Message>> {
    if !session.await_request(r)? {
        return Ok(None);
    }
    let msg = wire::read_message(r);
    session.busy();
    msg
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
pub(super) fn run(config: Config, shutdown: &Arc<Shutdown>) -> Result<()> {
    let kv = KvStore::load(&config.kv_file)?;
    let listen = SocketAddr::new(config.bind, config.port);
    let mut server = Server::bind(&listen.to_string(), config.limits, shutdown.clone())?;
    let port = server.local_addr().port();
    let verbose = config.level == Level::Verbose;
    let clients = server.class("client connections", config.max_clients, verbose);
    let links_in = server.class("neighbour links", config.max_links, verbose);
    let servent = Arc::new(Servent {
        kv,
        port,
        ttl: config.ttl,
        timeouts: config.limits.io,
        level: config.level,
        link_idle_timeout: config.link_idle_timeout,
        links: Mutex::new(Links::default()),
        seen: Mutex::new(Seen::new(config.seen_for, SEEN_CAP)),
        stats: Stats::default(),
        answers: Answers::default(),
        clients,
        links_in,
        drops: Throttle::new(verbose),
        failures: Throttle::new(verbose),
        conn_errors: Throttle::new(verbose),
    });

    // Links to the listed neighbours are up (and registered for flooding)
    // before the readiness line, so a query sent right after it floods.
    let mut outgoing = Vec::new();
    for addr in &config.neighbours {
        let stream = net::connect(addr, &config.limits.io)
            .doing(|| format!("connecting to neighbour {addr}"))?;
        (&stream)
            .write_all(&Message::Id { port: 0 }.encode())
            .doing(|| format!("greeting neighbour {addr}"))?;
        let peer = stream.peer_addr()?;
        let id = servent
            .open_link(&stream, peer)
            .doing(|| format!("starting the link to {addr}"))?;
        outgoing.push((stream, peer, id));
    }
    server.announce()?;
    for (stream, peer, id) in outgoing {
        crate::event!("link out {peer}");
        let s = servent.clone();
        thread::Builder::new()
            .name(format!("link {peer}"))
            .spawn(move || s.outgoing_link(stream, peer, id))
            .doing(|| "starting a link thread")?;
    }

    let s = servent.clone();
    server.serve(move |session| s.accepted(session))?;
    crate::event!("{}", servent.stats);
    Ok(())
}

impl Servent {
    /// An event line, unless `-q`.
    fn event(&self, line: fmt::Arguments<'_>) {
        if self.level > Level::Quiet {
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

    /// An accepted connection: its ID, due within the request deadline,
    /// says whether a servent or a client is on the other end.
    fn accepted(self: &Arc<Self>, session: Session) {
        let peer = session.peer();
        let mut r = BufReader::new(SharedStream::new(session.shared_stream()));
        let id = wire::read_message(&mut r);
        match id {
            // Closed, by the peer or by the core at the deadline (it logged).
            Ok(None) => {}
            Ok(Some(Message::Id { port: 0 })) => {
                session.protect();
                session.set_idle_timeout(self.link_idle_timeout);
                session.busy();
                self.link_in(&session, &mut r);
            }
            Ok(Some(Message::Id { port })) => {
                session.busy();
                self.client(&session, &mut r, port);
            }
            Ok(Some(other)) => self.conn_errors.diag(|| {
                format!(
                    "{peer}: expected ID, got {}; closing the connection",
                    other.name()
                )
            }),
            Err(e) => {
                if !session.is_closed() {
                    self.conn_errors
                        .diag(|| format!("{peer}: {e}; closing the connection"));
                }
            }
        }
    }

    /// Reads floods from a neighbour that connected to us until it leaves,
    /// misbehaves or is dropped for a newcomer.
    fn link_in(self: &Arc<Self>, session: &Session, r: &mut BufReader<SharedStream>) {
        let peer = session.peer();
        session.join_class(self.links_in);
        let id = match self.open_link(session.stream(), peer) {
            Ok(id) => id,
            Err(e) => {
                crate::diag!("link {peer}: cannot start it: {e}");
                return;
            }
        };
        crate::event!("link in {peer}");
        let me = own_address(session.stream(), self.port);
        loop {
            match next_request(session, r) {
                Ok(Some(msg)) => self.on_link_message(msg, id, peer, &me),
                Ok(None) => break,
                Err(e) => {
                    if !session.is_closed() {
                        crate::diag!("link {peer}: {e}; closing it");
                    }
                    break;
                }
            }
        }
        lock(&self.links).map.remove(&id);
        crate::event!("link closed {peer}");
    }

    /// Reads floods from a link this servent opened until it closes.
    fn outgoing_link(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr, id: LinkId) {
        let me = own_address(&stream, self.port);
        let mut r = BufReader::new(SharedStream::new(Arc::new(stream)));
        loop {
            match next_message(&mut r) {
                Ok(Some(msg)) => self.on_link_message(msg, id, peer, &me),
                Ok(None) => break,
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

    /// One message from a neighbour.
    fn on_link_message(
        self: &Arc<Self>,
        msg: Message,
        id: LinkId,
        peer: SocketAddr,
        me: &io::Result<String>,
    ) {
        match msg {
            Message::KeyFlood(f) => self.on_flood(Query::Key, f, id, peer, me),
            Message::TopoFlood(f) => self.on_flood(Query::Topo, f, id, peer, me),
            other => crate::diag!(
                "link {peer}: unexpected {} from a servent, ignored",
                other.name()
            ),
        }
    }

    /// Reads a client's requests; `port` is where it listens for answers.
    fn client(self: &Arc<Self>, session: &Session, r: &mut BufReader<SharedStream>, port: u16) {
        let peer = session.peer();
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
        session.join_class(self.clients);
        let origin = SocketAddrV4::new(ip, port);
        let me = own_address(session.stream(), self.port);
        crate::event!("client {peer} answers to {origin}");
        loop {
            match next_request(session, r) {
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
                    if !session.is_closed() {
                        self.conn_errors
                            .diag(|| format!("client {peer}: {e}; closing the connection"));
                    }
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
                let Some(path) = path_start(me) else {
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

    /// Sends one RESP to the client on a new connection, from its own
    /// thread, if the answer bounds allow; else drops it with a counted line.
    fn answer(self: &Arc<Self>, origin: SocketAddrV4, seq: u32, value: Text) {
        if let Err(busy) = self.answers.take(origin) {
            bump(&self.stats.dropped, 1);
            let why = match busy {
                Busy::All => format!("{MAX_ANSWERS_IN_FLIGHT} answers already in flight"),
                Busy::Origin => {
                    format!("{MAX_ANSWERS_PER_ORIGIN} answers to it already in flight")
                }
            };
            let total = self.stats.dropped.load(Ordering::Relaxed);
            self.drops.diag(|| {
                format!("answer to {origin} seq {seq} dropped: {why} ({total} dropped so far)")
            });
            return;
        }
        let s = self.clone();
        let spawned = thread::Builder::new()
            .name(format!("answer {origin}"))
            .spawn(move || {
                let res = send_answer(origin, seq, value, &s.timeouts);
                s.answers.done(origin);
                match res {
                    Ok(()) => {
                        bump(&s.stats.answers, 1);
                        s.event(format_args!("answered {origin} seq {seq}"));
                    }
                    Err(e) => s
                        .failures
                        .diag(|| format!("answer to {origin} seq {seq}: {e}")),
                }
            });
        if let Err(e) = spawned {
            self.answers.done(origin);
            crate::diag!("answer to {origin} seq {seq}: no thread: {e}");
        }
    }
}

/// This servent's address as the first entry of a topology path.
fn path_start(me: &io::Result<String>) -> Option<Text> {
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

/// Connects to `origin` and writes one RESP, all within [`ANSWER_TIMEOUT`]
/// (or the servent's own timeouts, if shorter).
fn send_answer(origin: SocketAddrV4, seq: u32, value: Text, t: &Timeouts) -> Result<()> {
    let deadline = Instant::now() + ANSWER_TIMEOUT.min(t.io);
    let connect = t.connect.min(ANSWER_TIMEOUT);
    let stream =
        TcpStream::connect_timeout(&SocketAddr::V4(origin), connect).doing(|| "connecting")?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(10));
    stream.set_write_timeout(Some(left))?;
    let _ = stream.set_nodelay(true);
    (&stream)
        .write_all(&Message::Resp { seq, value }.encode())
        .doing(|| "sending")?;
    // Half-close so the client sees the end of the answer; it may already
    // have closed its side, which is fine.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn id(port: u16, seq: u32) -> QueryId {
        (SocketAddrV4::new(Ipv4Addr::LOCALHOST, port), seq)
    }

    #[test]
    fn answers_are_bounded_per_origin_and_in_all() {
        let a = Answers::default();
        let o = |port| SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        for _ in 0..MAX_ANSWERS_PER_ORIGIN {
            assert_eq!(a.take(o(1)), Ok(()));
        }
        assert_eq!(a.take(o(1)), Err(Busy::Origin));
        // Another origin still gets its answers.
        assert_eq!(a.take(o(2)), Ok(()));
        a.done(o(1));
        assert_eq!(a.take(o(1)), Ok(()));
        let mut port = 3;
        while a.take(o(port)).is_ok() {
            port += 1;
        }
        assert_eq!(a.take(o(port + 1)), Err(Busy::All));
        assert_eq!(lock(&a.table).0, MAX_ANSWERS_IN_FLIGHT);
        for p in 3..port {
            a.done(o(p));
        }
        a.done(o(2));
        for _ in 0..MAX_ANSWERS_PER_ORIGIN {
            a.done(o(1));
        }
        let t = lock(&a.table);
        assert_eq!(t.0, 0);
        assert!(t.1.is_empty(), "no origin left behind");
    }

    #[test]
    fn seen_drops_repeats() {
        let mut s = Seen::new(Duration::from_secs(10), 100);
        let t = Instant::now();
        assert!(s.insert(id(1, 0), t));
        assert!(!s.insert(id(1, 0), t));
        assert!(s.insert(id(1, 1), t));
        assert!(s.insert(id(2, 0), t));
        assert_eq!(s.set.len(), 3);
    }

    #[test]
    fn seen_forgets_after_a_while() {
        let mut s = Seen::new(Duration::from_secs(10), 100);
        let t = Instant::now();
        assert!(s.insert(id(1, 0), t));
        assert!(!s.insert(id(1, 0), t + Duration::from_secs(9)));
        assert!(s.insert(id(1, 0), t + Duration::from_secs(10)));
        assert_eq!(s.set.len(), 1);
    }

    #[test]
    fn seen_stays_under_its_cap() {
        let mut s = Seen::new(Duration::from_secs(3600), 50);
        let t = Instant::now();
        for seq in 0..10_000 {
            assert!(s.insert(id(9, seq), t));
            assert!(s.set.len() <= 50);
        }
        // The oldest were evicted, the newest remembered.
        assert!(!s.insert(id(9, 9_999), t));
        assert!(s.insert(id(9, 0), t));
    }
}
