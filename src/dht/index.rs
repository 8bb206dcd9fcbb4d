//! The index server: keeps the ring of supernodes, one long-lived control
//! connection per supernode, and answers "who is responsible for NAME".
//! Membership changes are logged on stdout, one line each:
//! `joined ADDR`, `left ADDR`, `disconnected ADDR`,
//! `removed ADDR (connection lost)`. A member silent for three of its
//! heartbeats plus a second is dropped with its connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::dht::proto::{INDEX_PROTOCOL, IndexRequest, IndexResponse, silence_limit};
use crate::dht::ring::{self, Ring};
use crate::error::Result;
use crate::events::Events;
use crate::frame::Conn;
use crate::log::Level;
use crate::metrics::{Counter, Histogram, LATENCY_BUCKETS, Registry};
use crate::net;
use crate::server::{Limits, Server, Session};

/// Default listening address of `p2p-index`.
pub(crate) const DEFAULT_LISTEN: &str = "0.0.0.0:6110";

/// The index's shared state: the ring, behind its only lock.
pub(super) struct Index {
    ring: Mutex<Ring>,
    /// How much to log: membership changes unless quiet, queries if verbose.
    level: Level,
    /// Membership changes and lookups, for a live view.
    events: Arc<Events>,
    /// Requests served and how long each took, by kind.
    served: [(Arc<Counter>, Arc<Histogram>); 5],
    /// Requests refused with an error reply.
    refused: Arc<Counter>,
}

/// The request kinds, in the order of `Index::served`.
const KINDS: [&str; 5] = ["join", "leave", "disconnect", "query", "ping"];

fn kind_of(req: &IndexRequest) -> usize {
    match req {
        IndexRequest::Join { .. } => 0,
        IndexRequest::Leave => 1,
        IndexRequest::Disconnect => 2,
        IndexRequest::Query { .. } => 3,
        IndexRequest::Ping => 4,
    }
}

impl Index {
    fn new(level: Level, metrics: &Registry, events: Arc<Events>) -> Index {
        let served = KINDS.map(|kind| {
            (
                metrics.counter(
                    "index_requests_total",
                    "Requests the index served, by kind.",
                    &[("kind", kind)],
                ),
                metrics.histogram(
                    "index_request_seconds",
                    "Time to work out the answer to a request, by kind.",
                    &[("kind", kind)],
                    LATENCY_BUCKETS,
                ),
            )
        });
        Index {
            ring: Mutex::new(Ring::new()),
            level,
            events,
            served,
            refused: metrics.counter(
                "index_errors_total",
                "Requests answered with an error (not allowed, or malformed).",
                &[("kind", "refused")],
            ),
        }
    }

    /// Logs a membership change, unless quiet, and tells the view.
    fn note(&self, kind: &str, addr: &str, line: std::fmt::Arguments<'_>) {
        if self.level >= Level::Normal {
            crate::event!("{line}");
        }
        self.events.publish(kind, |m| {
            m.insert("addr".into(), addr.into());
        });
    }

    /// The members and where their virtual nodes are, for the view.
    pub(super) fn layout(&self) -> Vec<(String, Vec<f64>)> {
        self.ring().layout()
    }

    /// The owner of each of `names`, for the view.
    pub(super) fn owners<'a>(&self, names: impl Iterator<Item = &'a str>) -> Vec<Option<String>> {
        let ring = self.ring();
        names.map(|n| ring.owner(n).map(str::to_string)).collect()
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Binds `listen`, prints the readiness line (and the view's, with
/// `http`) and serves until Ctrl-C or SIGTERM.
pub(crate) fn run(listen: &str, limits: Limits, level: Level, http: Option<&str>) -> Result<()> {
    let server = Server::start(listen, limits)?;
    server.announce()?;
    let metrics = Registry::new();
    let events = Events::new();
    server.export_metrics(&metrics);
    let index = Arc::new(Index::new(level, &metrics, events.clone()));
    {
        let index = index.clone();
        metrics.gauge_fn("ring_members", "Supernodes in the ring.", &[], move || {
            index.ring().len() as f64
        });
    }
    crate::view::serve_if(http, &server, metrics, events, || {
        Arc::new(super::index_view::IndexSite::new(index.clone(), limits.io))
    })?;
    server.serve(move |session| handle(&index, session))
}

/// What one control connection has done to the ring.
struct Membership {
    /// The address this connection joined as, once it has.
    addr: Option<String>,
    /// Whether that address is in the ring now (joined and not left).
    in_ring: bool,
}

fn handle(index: &Index, session: Session) {
    let peer = session.peer();
    let Some(mut conn) = Conn::accept_logged(session, INDEX_PROTOCOL) else {
        return;
    };
    let mut session = Membership {
        addr: None,
        in_ring: false,
    };
    let outcome = serve_session(index, &mut conn, peer, &mut session);
    if session.in_ring {
        if let Some(addr) = &session.addr {
            index.ring().remove(addr);
            index.note(
                "removed",
                addr,
                format_args!("removed {addr} (connection lost)"),
            );
        }
    } else if let Some(addr) = &session.addr {
        index.note("disconnected", addr, format_args!("disconnected {addr}"));
    }
    if let Err(e) = outcome
        && !e.is_disconnect()
    {
        crate::diag!("{peer}: {e}");
    }
}

fn serve_session(
    index: &Index,
    conn: &mut Conn,
    peer: SocketAddr,
    session: &mut Membership,
) -> Result<()> {
    while let Some(req) = conn.next_request::<IndexRequest, IndexResponse>()? {
        let started = Instant::now();
        let kind = kind_of(&req);
        let reply = match req {
            IndexRequest::Join { port, heartbeat_ms } => {
                let reply = join(index, peer, port, session);
                if let (IndexResponse::Joined { .. }, Some(s)) = (&reply, conn.session()) {
                    // A member's control connection: kept over clients, and
                    // dropped (with the member) once it misses heartbeats.
                    s.protect();
                    let beat = Duration::from_millis(u64::from(heartbeat_ms));
                    s.set_idle_timeout(silence_limit(beat));
                }
                reply
            }
            IndexRequest::Leave => match (&session.addr, session.in_ring) {
                (Some(addr), true) => {
                    index.ring().remove(addr);
                    session.in_ring = false;
                    index.note("left", addr, format_args!("left {addr}"));
                    IndexResponse::Left
                }
                _ => IndexResponse::Error {
                    message: "not in the ring".to_string(),
                },
            },
            IndexRequest::Disconnect => {
                if let (Some(addr), true) = (&session.addr, session.in_ring) {
                    index.ring().remove(addr);
                    session.in_ring = false;
                    index.note("left", addr, format_args!("left {addr}"));
                }
                index.count(kind, started);
                conn.send(&IndexResponse::Bye)?;
                return Ok(());
            }
            IndexRequest::Query { name } => {
                // A member on this host that joined over loopback is reached
                // by the asker at the address it reached us at.
                let via = conn.local_addr()?.ip();
                let owner = index
                    .ring()
                    .owner(name.as_str())
                    .map(|a| net::reachable_addr(a, via));
                if index.level == Level::Verbose {
                    crate::event!("{peer}: {name} -> {}", owner.as_deref().unwrap_or("nobody"));
                }
                index.events.publish("lookup", |m| {
                    m.insert("from".into(), peer.to_string().into());
                    m.insert("name".into(), name.as_str().into());
                    m.insert("key".into(), ring::position(name.as_str()).into());
                    m.insert("owner".into(), owner.clone().into());
                });
                match owner {
                    Some(addr) => IndexResponse::Owner { addr },
                    None => IndexResponse::NoSupernodes,
                }
            }
            IndexRequest::Ping => IndexResponse::Pong,
        };
        if matches!(reply, IndexResponse::Error { .. }) {
            index.refused.inc();
        }
        // Counted before the answer leaves, so a client that reads the
        // metrics after its answer sees its request counted.
        index.count(kind, started);
        conn.send(&reply)?;
    }
    Ok(())
}

impl Index {
    /// Counts one request of `kind` answered, begun at `started`.
    fn count(&self, kind: usize, started: Instant) {
        if let Some((n, t)) = self.served.get(kind) {
            n.inc();
            t.observe(started.elapsed().as_secs_f64());
        }
    }
}

fn join(index: &Index, peer: SocketAddr, port: u16, session: &mut Membership) -> IndexResponse {
    if session.in_ring {
        return IndexResponse::Error {
            message: format!(
                "already in the ring as {}",
                session.addr.as_deref().unwrap_or("?")
            ),
        };
    }
    if port == 0 {
        return IndexResponse::Error {
            message: "port 0 is not a listening port".to_string(),
        };
    }
    let addr = net::host_port(&peer.ip().to_string(), port);
    if !index.ring().add(&addr) {
        return IndexResponse::Error {
            message: format!("{addr} is already in the ring"),
        };
    }
    session.addr = Some(addr.clone());
    session.in_ring = true;
    index.note("joined", &addr, format_args!("joined {addr}"));
    IndexResponse::Joined { addr }
}
