//! The index server: keeps the ring of supernodes, one long-lived control
//! connection per supernode, and answers "who is responsible for NAME".
//! Membership changes are logged on stdout, one line each:
//! `joined ADDR`, `left ADDR`, `disconnected ADDR`,
//! `removed ADDR (connection lost)`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};

use crate::dht::proto::{
    HEARTBEAT, INDEX_PROTOCOL, Incoming, IndexRequest, IndexRequestOf, IndexResponse, read_request,
};
use crate::dht::ring::Ring;
use crate::error::Result;
use crate::frame::Conn;
use crate::net::{self, DEFAULT_MAX_CONNS, Timeouts};
use crate::shutdown::Shutdown;

/// Default listening address of `p2p-index`.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:6110";

/// The index's shared state: the ring, behind its only lock.
#[derive(Default)]
pub struct Index {
    ring: Mutex<Ring>,
}

impl Index {
    pub fn new() -> Arc<Index> {
        Arc::new(Index::default())
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Binds `listen`, prints the readiness line and serves until Ctrl-C or SIGTERM.
pub fn run(listen: &str, timeouts: Timeouts) -> Result<()> {
    let shutdown = Shutdown::install()?;
    let listener = net::bind(listen)?;
    net::announce(&listener)?;
    serve(listener, &shutdown, timeouts)
}

/// Serves control connections on `listener` until `shutdown` triggers.
pub fn serve(listener: TcpListener, shutdown: &Arc<Shutdown>, timeouts: Timeouts) -> Result<()> {
    let index = Index::new();
    net::serve(
        listener,
        shutdown,
        timeouts,
        DEFAULT_MAX_CONNS,
        move |stream, peer| {
            handle(&index, stream, peer, timeouts);
        },
    )
}

/// What one control connection has done to the ring.
struct Session {
    /// The address this connection joined as, once it has.
    addr: Option<String>,
    /// Whether that address is in the ring now (joined and not left).
    in_ring: bool,
}

fn handle(index: &Index, stream: TcpStream, peer: SocketAddr, timeouts: Timeouts) {
    let mut conn = match Conn::accept(stream, INDEX_PROTOCOL) {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => {
            crate::diag!("{peer}: {e}");
            return;
        }
    };
    // A control connection may sit idle between syncs; supernodes send a
    // heartbeat, so only a much longer silence means the peer is gone.
    let idle = timeouts.io.max(HEARTBEAT * 4);
    if let Err(e) = conn.stream().set_read_timeout(Some(idle)) {
        crate::diag!("{peer}: {}", crate::cli::describe_io(&e));
        return;
    }
    let mut session = Session {
        addr: None,
        in_ring: false,
    };
    let outcome = serve_session(index, &mut conn, peer, &mut session);
    if session.in_ring {
        if let Some(addr) = &session.addr {
            index.ring().remove(addr);
            crate::event!("removed {addr} (connection lost)");
        }
    } else if let Some(addr) = &session.addr {
        crate::event!("disconnected {addr}");
    }
    if let Err(e) = outcome
        && !e.is_disconnect()
    {
        crate::diag!("{peer}: {e}");
    }
    net::close(conn.stream());
}

fn serve_session(
    index: &Index,
    conn: &mut Conn,
    peer: SocketAddr,
    session: &mut Session,
) -> Result<()> {
    loop {
        let incoming = match read_request::<IndexRequest, IndexRequestOf<String>, _>(conn.reader())?
        {
            None => return Ok(()),
            Some(i) => i,
        };
        let req = match incoming {
            Incoming::Request(r) => r,
            Incoming::Invalid(message) => {
                crate::diag!("{peer}: {message}");
                conn.send(&IndexResponse::Error { message })?;
                continue;
            }
            Incoming::Fatal(message) => {
                crate::diag!("{peer}: {message}");
                conn.send(&IndexResponse::Error { message })?;
                return Ok(());
            }
        };
        let reply = match req {
            IndexRequest::Join { port } => join(index, peer, port, session),
            IndexRequest::Leave => match (&session.addr, session.in_ring) {
                (Some(addr), true) => {
                    index.ring().remove(addr);
                    session.in_ring = false;
                    crate::event!("left {addr}");
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
                    crate::event!("left {addr}");
                }
                conn.send(&IndexResponse::Bye)?;
                return Ok(());
            }
            IndexRequest::Query { name } => match index.ring().owner(name.as_str()) {
                Some(addr) => IndexResponse::Owner {
                    addr: addr.to_string(),
                },
                None => IndexResponse::NoSupernodes,
            },
            IndexRequest::Ping => IndexResponse::Pong,
        };
        conn.send(&reply)?;
    }
}

fn join(index: &Index, peer: SocketAddr, port: u16, session: &mut Session) -> IndexResponse {
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
    crate::event!("joined {addr}");
    IndexResponse::Joined { addr }
}
