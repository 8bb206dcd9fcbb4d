//! The supernode's link to the index: the control connection, owned by the
//! "index-link" thread (join, heartbeats, re-join, leave, disconnect), and
//! `Lookup`, a short-lived query connection for "who owns NAME".
//!
//! Lock: `Control::me` (our address in the ring) guards one string and is
//! never held across I/O.

use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use super::lock;
use crate::dht::proto::{INDEX_PROTOCOL, IndexRequest, IndexResponse};
use crate::error::{Error, Result, ResultExt};
use crate::frame::Conn;
use crate::name::FileName;
use crate::net::{self, Timeouts};

/// Joins the ring over a fresh control connection; returns it and our
/// address in the ring as the index sees it.
fn open_control(
    addr: &str,
    port: u16,
    heartbeat: Duration,
    timeouts: &Timeouts,
) -> Result<(Conn, String)> {
    let mut conn = Conn::open(addr, timeouts, INDEX_PROTOCOL)?;
    let heartbeat_ms = u32::try_from(heartbeat.as_millis()).unwrap_or(u32::MAX);
    let addr = conn.call(
        &IndexRequest::Join { port, heartbeat_ms },
        "Joined",
        |r| match r {
            IndexResponse::Joined { addr } => Ok(addr),
            other => Err(other),
        },
    )?;
    Ok((conn, addr))
}

/// A short-lived query connection to the index. It never joins, so it can
/// be opened by anyone at any time (a client handler, a sync round) without
/// waiting for the control connection, and closing it changes nothing in
/// the ring.
pub(super) struct Lookup {
    conn: Conn,
}

impl Lookup {
    pub(super) fn open(addr: &str, timeouts: &Timeouts) -> Result<Lookup> {
        Ok(Lookup {
            conn: Conn::open(addr, timeouts, INDEX_PROTOCOL)?,
        })
    }

    /// The supernode responsible for `name`, `None` if the ring is empty.
    pub(super) fn owner(&mut self, name: &FileName) -> Result<Option<String>> {
        let query = IndexRequest::Query { name: name.clone() };
        self.conn
            .call(&query, "Owner or NoSupernodes", |r| match r {
                IndexResponse::Owner { addr } => Ok(Some(addr)),
                IndexResponse::NoSupernodes => Ok(None),
                other => Err(other),
            })
    }
}

/// How long a stopping supernode waits for the index to answer its leave
/// and its goodbye: the index answers at once unless it cannot be reached.
const PARTING_WAIT: Duration = Duration::from_secs(2);

/// What the control thread is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    /// Leave the ring, keep the connection (and the heartbeats) going.
    Leave,
    /// Say goodbye, close the connection and stop.
    Disconnect,
}

/// A command and where its outcome goes.
struct Order {
    command: Command,
    reply: mpsc::SyncSender<Result<()>>,
}

/// The supernode's side of its control connection to the index. One thread
/// ("index-link") owns the connection: it sends a heartbeat whenever the
/// connection has been quiet for `heartbeat` (whatever the synchronizer is
/// doing), re-opens a lost connection and re-joins the ring while we are a
/// member, and carries out the `Command`s sent through a bounded channel.
/// Callers wait for each outcome with a deadline. Queries do not go over
/// this connection (see `Lookup`).
pub(super) struct Control {
    /// The index, `HOST:PORT`.
    pub(super) addr: String,
    orders: mpsc::SyncSender<Order>,
    /// Our address in the ring, as the index sees it (from `Joined`).
    me: Arc<Mutex<String>>,
    /// How long a caller waits for the control thread's answer.
    deadline: Duration,
}

/// The control thread's own state.
struct ControlLink {
    addr: String,
    port: u16,
    timeouts: Timeouts,
    heartbeat: Duration,
    conn: Option<Conn>,
    /// Whether we want to be in the ring (between join and leave).
    member: bool,
    me: Arc<Mutex<String>>,
}

impl Control {
    /// Connects to the index, joins the ring and starts the control thread.
    pub(super) fn join(
        addr: &str,
        port: u16,
        timeouts: Timeouts,
        heartbeat: Duration,
    ) -> Result<Control> {
        let (conn, me) = open_control(addr, port, heartbeat, &timeouts)?;
        let me = Arc::new(Mutex::new(me));
        let (orders, inbox) = mpsc::sync_channel(4);
        let mut link = ControlLink {
            addr: addr.to_string(),
            port,
            timeouts,
            heartbeat,
            conn: Some(conn),
            member: true,
            me: me.clone(),
        };
        thread::Builder::new()
            .name("index-link".into())
            .spawn(move || link.run(&inbox))
            .doing(|| "starting the index-link thread")?;
        Ok(Control {
            addr: addr.to_string(),
            orders,
            me,
            // Room for one exchange after a reconnect and re-join.
            deadline: (timeouts.connect + timeouts.io * 2) * 2,
        })
    }

    /// Our address in the ring.
    pub(super) fn me(&self) -> String {
        lock(&self.me).clone()
    }

    /// Has the control thread carry out `command`; waits up to `deadline`.
    fn order(&self, command: Command) -> Result<()> {
        let (reply, outcome) = mpsc::sync_channel(1);
        self.orders
            .send(Order { command, reply })
            .map_err(|_| Error::Stopped("the index link".into()))?;
        match outcome.recv_timeout(self.deadline) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::TimedOut(format!(
                "waiting {:?} for the index's answer",
                self.deadline
            ))),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(Error::Stopped("the index link".into()))
            }
        }
    }

    /// Leaves the ring; the control connection stays open.
    pub(super) fn leave(&self) -> Result<()> {
        self.order(Command::Leave)
    }

    /// Says goodbye and closes the control connection.
    pub(super) fn disconnect(&self) -> Result<()> {
        self.order(Command::Disconnect)
    }
}

impl ControlLink {
    fn run(&mut self, inbox: &mpsc::Receiver<Order>) {
        let mut quiet_since = Instant::now();
        loop {
            let wait = self.heartbeat.saturating_sub(quiet_since.elapsed());
            match inbox.recv_timeout(wait) {
                Ok(Order { command, reply }) => {
                    let result = self.carry_out(command);
                    quiet_since = Instant::now();
                    // The caller may have stopped waiting; that is its call.
                    let _ = reply.send(result);
                    if command == Command::Disconnect {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(e) = self.heartbeat() {
                        crate::diag!("index {}: {e}", self.addr);
                    }
                    quiet_since = Instant::now();
                }
                // The supernode is gone; dropping the connection ends it.
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Pings the index, first re-opening (and re-joining over) a lost
    /// connection. A failed ping drops the connection for the next beat.
    fn heartbeat(&mut self) -> Result<()> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None if self.member => {
                let (conn, me) =
                    open_control(&self.addr, self.port, self.heartbeat, &self.timeouts)?;
                crate::diag!("index connection re-opened; rejoined the ring as {me}");
                *lock(&self.me) = me;
                conn
            }
            None => Conn::open(&self.addr, &self.timeouts, INDEX_PROTOCOL)?,
        };
        // The index answers a ping at once: one that does not come within a
        // beat (at least the parting wait) means the link is gone, and a
        // stopping supernode never waits out the I/O timeout behind it.
        let _ = conn
            .stream()
            .set_read_timeout(Some(self.heartbeat.max(self.parting_wait())));
        match conn.call(&IndexRequest::Ping, "Pong", |r| match r {
            IndexResponse::Pong => Ok(()),
            other => Err(other),
        }) {
            Ok(()) => {
                self.conn = Some(conn);
                Ok(())
            }
            Err(e @ Error::Protocol { .. }) => Err(e),
            Err(e) => Err(e.doing("control connection lost (re-opening it at the next heartbeat)")),
        }
    }

    /// How long leaving and disconnecting wait for the index's answer.
    fn parting_wait(&self) -> Duration {
        PARTING_WAIT.min(self.timeouts.io)
    }

    fn carry_out(&mut self, command: Command) -> Result<()> {
        match command {
            Command::Leave => {
                self.member = false;
                let wait = self.parting_wait();
                let Some(conn) = self.conn.as_mut() else {
                    // The index dropped us with the connection already.
                    return Ok(());
                };
                // A daemon that is stopping does not wait out the I/O timeout
                // on an index that cannot be reached.
                let _ = conn.stream().set_read_timeout(Some(wait));
                let left = conn.call(&IndexRequest::Leave, "Left", |r| match r {
                    IndexResponse::Left => Ok(()),
                    other => Err(other),
                });
                match left {
                    Ok(()) => Ok(()),
                    Err(e @ (Error::Remote { .. } | Error::Protocol { .. })) => Err(e),
                    Err(e) if e.is_timeout() => {
                        self.conn = None;
                        Err(Error::TimedOut(format!(
                            "no answer from the index within {wait:?}; it cannot be reached"
                        )))
                    }
                    Err(e) => {
                        // A lost control connection takes us out of the
                        // ring all the same.
                        crate::diag!("index {}: leaving: {e}", self.addr);
                        self.conn = None;
                        Ok(())
                    }
                }
            }
            Command::Disconnect => {
                let Some(mut conn) = self.conn.take() else {
                    return Ok(());
                };
                let _ = conn.stream().set_read_timeout(Some(self.parting_wait()));
                let result = conn.call(&IndexRequest::Disconnect, "Bye", |r| match r {
                    IndexResponse::Bye => Ok(()),
                    other => Err(other),
                });
                net::close(conn.stream());
                result
            }
        }
    }
}
