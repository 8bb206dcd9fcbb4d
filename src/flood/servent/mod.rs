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

use std::fmt;
use std::io::{self, BufReader, Write};
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

mod answers;
mod links;
mod overlay;
mod seen;
mod view;

use answers::Answers;
use links::{LinkId, Links, own_address};
use seen::{QueryId, Seen};

use super::kvfile::KvStore;
use super::wire::{self, Flood, Message, Text};
use crate::error::{Result, ResultExt};
use crate::events::Events;
use crate::log::Level;
use crate::log::Throttle;
use crate::metrics::Registry;
use crate::net::{self, SharedStream, Timeouts};
use crate::server::{ConnClass, Limits, Server, Session};
use crate::shutdown::Shutdown;

/// The TTL a servent gives the floods it starts, unless told otherwise.
pub(crate) const DEFAULT_TTL: u16 = 3;

/// Client connections open at once, unless told otherwise.
pub(crate) const DEFAULT_MAX_CLIENTS: usize = 256;

/// Neighbour links accepted at once, unless told otherwise (the links this
/// servent opens itself are not counted).
pub(crate) const DEFAULT_MAX_LINKS: usize = 64;

/// At most this many queries are remembered at once, whatever their age.
const SEEN_CAP: usize = 65_536;

/// How a servent runs.
#[derive(Debug, Clone)]
pub(crate) struct Config {
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
    /// Serve a live view at this address (`--http`).
    pub http: Option<String>,
    /// `--answer-id`: send ID with our listening port before each RESP.
    pub answer_id: bool,
}

/// `--http`'s address: `HOST:+N` is `(HOST, Some(N))`, the view at the
/// servent's own port plus N; anything else is taken as it is.
fn view_at(http: &str) -> (String, Option<u16>) {
    if let Some((host, n)) = http.rsplit_once(":+")
        && let Ok(n) = n.parse::<u16>()
    {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        return (host.to_string(), Some(n));
    }
    (http.to_string(), None)
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

impl Stats {
    /// Every counter: its name in the stats line, `state.json` and the
    /// metrics (`peerkit_flood_NAME_total`), its help, where it is.
    const FIELDS: [crate::metrics::Field<Stats>; 6] = [
        ("requests", "Queries received from clients.", |s| {
            &s.requests
        }),
        ("floods", "Floods received from neighbours.", |s| &s.floods),
        ("duplicates", "Floods dropped as already seen.", |s| {
            &s.duplicates
        }),
        ("sent", "Floods written to neighbours.", |s| &s.sent),
        ("answers", "Answers delivered to clients.", |s| &s.answers),
        (
            "dropped",
            "Floods or answers dropped (a queue full, too many answers in flight).",
            |s| &s.dropped,
        ),
    ];

    /// The counters as `state.json` gives them.
    fn json(&self) -> serde_json::Value {
        Stats::FIELDS
            .iter()
            .map(|(name, _, field)| (name.to_string(), field(self).load(Ordering::Relaxed).into()))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stats")?;
        for (name, _, field) in Stats::FIELDS {
            write!(f, " {name}={}", field(self).load(Ordering::Relaxed))?;
        }
        Ok(())
    }
}

impl Servent {
    /// Registers the servent's counters and gauges in `metrics`.
    fn export_metrics(self: &Arc<Self>, metrics: &Registry) {
        metrics.counter_fields(&self.stats, "flood_", &Stats::FIELDS);
        let s = self.clone();
        metrics.gauge_fn("flood_links", "Neighbour links open now.", &[], move || {
            lock(&s.links).map.len() as f64
        });
        let s = self.clone();
        metrics.gauge_fn(
            "flood_queries_remembered",
            "Queries remembered to drop their duplicates.",
            &[],
            move || lock(&s.seen).len() as f64,
        );
    }
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Servent {
    kv: KvStore,
    /// The listening port, reported in topology paths.
    port: u16,
    /// Send ID with `port` before each RESP (`--answer-id`).
    answer_id: bool,
    ttl: u16,
    timeouts: Timeouts,
    level: Level,
    link_idle_timeout: Duration,
    links: Mutex<Links>,
    seen: Mutex<Seen>,
    stats: Arc<Stats>,
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
    /// The recent queries, for the live view.
    trace: view::Trace,
    /// Protocol steps, for the live view.
    events: Arc<Events>,
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
        answer_id: config.answer_id,
        ttl: config.ttl,
        timeouts: config.limits.io,
        level: config.level,
        link_idle_timeout: config.link_idle_timeout,
        links: Mutex::new(Links::default()),
        seen: Mutex::new(Seen::new(config.seen_for, SEEN_CAP)),
        stats: Arc::default(),
        answers: Answers::default(),
        clients,
        links_in,
        drops: Throttle::new(verbose),
        failures: Throttle::new(verbose),
        conn_errors: Throttle::new(verbose),
        trace: view::Trace::default(),
        events: Events::new(),
    });
    let metrics = Registry::new();
    server.export_metrics(&metrics);
    servent.export_metrics(&metrics);

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
            .open_link(&stream, peer, true)
            .doing(|| format!("starting the link to {addr}"))?;
        outgoing.push((stream, peer, id));
    }
    server.announce()?;
    // `--http HOST:+N`: the view at this servent's port plus N, where the
    // overlay page of any servent started the same way looks for it.
    let (http, view_offset) = match config.http.as_deref().map(view_at) {
        Some((host, Some(n))) => (Some(net::host_port(&host, port.saturating_add(n))), Some(n)),
        Some((addr, None)) => (Some(addr), None),
        None => (None, None),
    };
    crate::view::serve_if(
        http.as_deref(),
        &server,
        metrics,
        servent.events.clone(),
        || {
            Arc::new(view::ServentSite {
                servent: servent.clone(),
                view_offset,
            })
        },
    )?;
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
    /// Whether `id` is new; a copy seen before is counted in `dups` (if
    /// given) before it is told, so whoever reads the line sees it counted.
    fn first_sight(&self, id: QueryId, peer: impl fmt::Display, dups: Option<&AtomicU64>) -> bool {
        if lock(&self.seen).insert(id, Instant::now()) {
            return true;
        }
        if let Some(c) = dups {
            bump(c, 1);
        }
        let from = peer.to_string();
        self.trace.duplicate(id.0, id.1, &from);
        self.events.publish("duplicate", |m| {
            m.insert("origin".into(), id.0.to_string().into());
            m.insert("seq".into(), id.1.into());
            m.insert("from".into(), from.clone().into());
        });
        self.event(format_args!("duplicate {} seq {} from {from}", id.0, id.1));
        false
    }

    /// A query seen for the first time, for the view.
    fn traced(
        &self,
        query: Query,
        origin: SocketAddrV4,
        seq: u32,
        info: &Text,
        from: &str,
        ttl: u16,
    ) {
        self.trace
            .first(origin, seq, query, &info.to_string(), from, ttl);
        self.events
            .publish(if from == "client" { "request" } else { "flood" }, |m| {
                m.insert("query".into(), query.to_string().into());
                m.insert("origin".into(), origin.to_string().into());
                m.insert("seq".into(), seq.into());
                m.insert("info".into(), info.to_string().into());
                m.insert("from".into(), from.into());
                m.insert("ttl".into(), ttl.into());
            });
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
        // A client on this host that came in over loopback is answered, by
        // us and by servents on other hosts, at this host's address on its
        // links (the client listens on every interface); so is the start
        // of a topology path.
        let (origin, me) = match lock(&self.links).reachable_ipv4() {
            Some(ip) if origin.ip().is_loopback() => (
                SocketAddrV4::new(ip, origin.port()),
                &Ok(net::host_port(&ip.to_string(), self.port)),
            ),
            _ => (origin, me),
        };
        if !self.first_sight((origin, seq), "client", None) {
            return;
        }
        self.traced(query, origin, seq, &key, "client", self.ttl);
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
        if !self.first_sight((origin, seq), peer, Some(&self.stats.duplicates)) {
            return;
        }
        self.traced(
            query,
            origin,
            seq,
            &flood.info,
            &peer.to_string(),
            flood.ttl,
        );
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
                // The path's last hop is the neighbour that sent it: its
                // own address, which an incoming link does not show.
                let last = std::str::from_utf8(flood.info.as_bytes())
                    .ok()
                    .and_then(|p| p.split(' ').next_back());
                if let Some(addr) = last.and_then(|w| w.parse::<SocketAddr>().ok())
                    && let Some(l) = lock(&self.links).map.get_mut(&from)
                {
                    l.heard_as = Some(addr);
                }
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
            self.trace.stopped(origin, seq);
            self.events.publish("stopped", |m| {
                m.insert("origin".into(), origin.to_string().into());
                m.insert("seq".into(), seq.into());
            });
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
        let mut to = Vec::new();
        for (peer, tx) in targets {
            match tx.try_send(bytes.clone()) {
                Ok(()) => {
                    queued += 1;
                    to.push(peer.to_string());
                }
                Err(TrySendError::Full(_)) => {
                    bump(&self.stats.dropped, 1);
                    crate::diag!("link {peer}: queue full, flood {origin} seq {seq} dropped");
                }
                // The link is going away.
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
        self.events.publish("forwarded", |m| {
            m.insert("origin".into(), origin.to_string().into());
            m.insert("seq".into(), seq.into());
            m.insert("ttl".into(), ttl.into());
            m.insert("to".into(), to.clone().into());
        });
        self.trace.forwarded(origin, seq, to);
        self.event(format_args!(
            "forwarded {origin} seq {seq} ttl {ttl} to {queued} links"
        ));
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
