//! The index server: keeps the ring of supernodes, one long-lived control
//! connection per supernode, and answers "who is responsible for NAME".
//! Membership changes are logged on stdout, one line each:
//! `joined ADDR`, `left ADDR`, `disconnected ADDR`,
//! `removed ADDR (connection lost)`. A member silent for three of its
//! heartbeats plus a second is dropped with its connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::dht::proto::{INDEX_PROTOCOL, IndexRequest, IndexResponse, silence_limit};
use crate::dht::ring::Ring;
use crate::error::Result;
use crate::frame::Conn;
use crate::log::Level;
use crate::net;
use crate::server::{Limits, Server, Session};

/// Default listening address of `p2p-index`.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:6110";

/// The index's shared state: the ring, behind its only lock.
struct Index {
    ring: Mutex<Ring>,
    /// How much to log: membership changes unless quiet, queries if verbose.
    level: Level,
}

impl Index {
    /// Logs a membership change, unless quiet.
    fn note(&self, line: std::fmt::Arguments<'_>) {
        if self.level >= Level::Normal {
            crate::event!("{line}");
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Binds `listen`, prints the readiness line and serves until Ctrl-C or SIGTERM.
pub(crate) fn run(listen: &str, limits: Limits, level: Level) -> Result<()> {
    let server = Server::start(listen, limits)?;
    server.announce()?;
    let index = Arc::new(Index {
        ring: Mutex::new(Ring::new()),
        level,
    });
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
            index.note(format_args!("removed {addr} (connection lost)"));
        }
    } else if let Some(addr) = &session.addr {
        index.note(format_args!("disconnected {addr}"));
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
                    index.note(format_args!("left {addr}"));
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
                    index.note(format_args!("left {addr}"));
                }
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
                match owner {
                    Some(addr) => IndexResponse::Owner { addr },
                    None => IndexResponse::NoSupernodes,
                }
            }
            IndexRequest::Ping => IndexResponse::Pong,
        };
        conn.send(&reply)?;
    }
    Ok(())
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
    index.note(format_args!("joined {addr}"));
    IndexResponse::Joined { addr }
}
