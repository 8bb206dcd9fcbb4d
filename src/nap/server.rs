//! The directory server (`nap-server`): one request per connection, read
//! whole on the connection's thread, carried out on a fixed pool of
//! workers (the server core's `serve_pool`), answered, closed.
//!
//! Stdout: `listening on HOST:PORT`, then `s> OPERATION FROM USER` per
//! request (not with `-q`). Stderr: requests refused or cut short, with the client's address.
//!
//! A request refused for a bad field (too long, not UTF-8) is answered with
//! its operation's FAIL code on the connection's thread and never reaches a
//! worker; an unknown operation, or a request cut short, is closed without
//! an answer and changes nothing.

use std::collections::VecDeque;
use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::store::Store;
use super::wire::{self, Answer, Body, Incoming, Op, Request, ResultFormat};
use crate::error::{Error, Result};
use crate::events::Events;
use crate::metrics::{Counter, Histogram, LATENCY_BUCKETS, Registry};
use crate::server::{Limits, Pool, Server, Session};

/// Default port, as in the course's examples.
pub(crate) const DEFAULT_PORT: u16 = 5000;

/// Default number of workers.
pub(crate) const DEFAULT_WORKERS: usize = 10;

/// Complete requests waiting for a worker before readers wait too.
pub(crate) const QUEUE_PER_WORKER: usize = 8;

/// How long a refused request's leftover bytes are read and dropped before
/// closing, so that the close does not reset the connection before the
/// client has read its answer.
const DRAIN_FOR: Duration = Duration::from_millis(200);

/// Most leftover bytes read after a refusal.
const DRAIN_MAX: u64 = 64 * 1024;

/// Hears of every operation carried out (the RPC operation log).
pub(crate) trait OpLog: Send + Sync {
    /// Called after `req` was carried out; must not block.
    fn record(&self, req: &Request);
}

/// What `nap-server` runs with.
pub(crate) struct Config {
    pub listen: String,
    pub limits: Limits,
    pub workers: usize,
    /// Where the state lives; `None`: in memory only.
    pub storage: Option<PathBuf>,
    pub format: ResultFormat,
    /// No `s>` line per request.
    pub quiet: bool,
    /// Log requests cut short too.
    pub verbose: bool,
    pub log: Option<Box<dyn OpLog>>,
    /// Serve a live view at this address (`--http`).
    pub http: Option<String>,
}

/// Operations the live view remembers, newest last.
const RECENT_OPS: usize = 200;

/// One operation carried out, as the view lists it.
#[derive(Debug, Clone)]
pub(super) struct OpRecord {
    /// Milliseconds since the epoch.
    pub(super) t: u64,
    pub(super) user: String,
    pub(super) op: Op,
    /// The file, for PUBLISH and DELETE; the remote user for LIST_CONTENT.
    pub(super) subject: Option<String>,
    pub(super) code: u8,
    pub(super) from: IpAddr,
}

/// What the view and the metrics see of the server.
pub(super) struct Watch {
    pub(super) events: Arc<Events>,
    pub(super) recent: Mutex<VecDeque<OpRecord>>,
    /// Requests carried out and how long each took, by operation.
    served: Vec<(Arc<Counter>, Arc<Histogram>)>,
    /// Requests refused unread (a bad field) and cut short or unknown.
    refused: Arc<Counter>,
    dropped: Arc<Counter>,
}

pub(super) struct Shared {
    pub(super) store: Store,
    format: ResultFormat,
    quiet: bool,
    verbose: bool,
    log: Option<Box<dyn OpLog>>,
    pub(super) watch: Watch,
}

/// Serves the directory until Ctrl-C or SIGTERM.
pub(crate) fn run(config: Config) -> Result<()> {
    let store = match &config.storage {
        Some(dir) => Store::open(dir)?,
        None => Store::in_memory(),
    };
    let server = Server::start(&config.listen, config.limits)?;
    server.announce()?;
    let metrics = Registry::new();
    let events = Events::new();
    server.export_metrics(&metrics);
    let served = Op::ALL
        .iter()
        .map(|op| {
            let labels = [("op", op.name())];
            (
                metrics.counter(
                    "nap_requests_total",
                    "Operations carried out, by operation.",
                    &labels,
                ),
                metrics.histogram(
                    "nap_request_seconds",
                    "Time to carry out an operation, by operation.",
                    &labels,
                    LATENCY_BUCKETS,
                ),
            )
        })
        .collect();
    let watch = Watch {
        events: events.clone(),
        recent: Mutex::new(VecDeque::new()),
        served,
        refused: metrics.counter(
            "nap_errors_total",
            "Requests not carried out: refused for a bad field, or cut short.",
            &[("kind", "refused")],
        ),
        dropped: metrics.counter(
            "nap_errors_total",
            "Requests not carried out: refused for a bad field, or cut short.",
            &[("kind", "cut_short")],
        ),
    };
    let shared = Arc::new(Shared {
        store,
        format: config.format,
        quiet: config.quiet,
        verbose: config.verbose,
        log: config.log,
        watch,
    });
    for (name, help, connected) in [
        ("nap_users_registered", "Users registered.", false),
        ("nap_users_connected", "Users connected now.", true),
    ] {
        let s = shared.clone();
        metrics.gauge_fn(name, help, &[], move || {
            (if connected {
                s.store.connected()
            } else {
                s.store.users()
            }) as f64
        });
    }
    crate::view::serve_if(config.http.as_deref(), &server, metrics, events, || {
        Arc::new(super::server_view::ServerSite::new(shared.clone()))
    })?;
    let reader = shared.clone();
    let pool = Pool {
        workers: config.workers.max(1),
        queue: config.workers.max(1) * QUEUE_PER_WORKER,
    };
    server.serve_pool(
        pool,
        move |session| reader.read(session),
        move |session, req| shared.work(&session, &req),
    )
}

/// The address a connection comes from, IPv4-mapped addresses as IPv4.
fn peer_ip(session: &Session) -> IpAddr {
    session.peer().ip().to_canonical()
}

/// Gives a user connected from this host over loopback (or registered as
/// `0.0.0.0`) as the address the asking client reached the server at, so a
/// client on another host can reach it; the course's bytes are unchanged.
fn reachable_users(users: &mut [wire::UserEntry], via: IpAddr) {
    for u in users {
        let Ok(ip) = u.ip.as_str().parse::<IpAddr>() else {
            continue;
        };
        let reach = crate::net::reachable_ip(ip, via);
        if reach != ip.to_canonical()
            && let Ok(field) = wire::Field::new(reach.to_string())
        {
            u.ip = field;
        }
    }
}

/// `s` with control characters shown as `?`, for log lines.
pub(crate) fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl Shared {
    /// Reads one whole request on the connection's thread; refusals are
    /// answered here, and only requests to carry out go to a worker.
    fn read(&self, session: &Session) -> Option<Request> {
        let mut r = BufReader::new(session.stream());
        match wire::read_request(&mut r) {
            Ok(Incoming::Request(req)) => Some(req),
            Ok(Incoming::Refused { op, why }) => {
                session.busy();
                self.watch.refused.inc();
                if !self.quiet {
                    crate::event!("s> {op} refused");
                }
                crate::diag!("{}: {op} refused: {why}", session.peer());
                self.answer(session, &Answer::Code(op.fail_code()));
                drain(session.stream());
                None
            }
            Err(e) if e.is_disconnect() || matches!(e, Error::Closed) => {
                self.watch.dropped.inc();
                if self.verbose {
                    crate::diag!("{}: request cut short, ignored: {e}", session.peer());
                }
                None
            }
            Err(e) => {
                self.watch.dropped.inc();
                crate::diag!("{}: closed: {e}", session.peer());
                None
            }
        }
    }

    /// Carries out one request on a worker and answers it.
    fn work(&self, session: &Session, req: &Request) {
        let op = req.op();
        if !self.quiet {
            crate::event!("s> {op} FROM {}", printable(req.user.as_str()));
        }
        let started = Instant::now();
        let mut answer = self.store.apply(req, peer_ip(session));
        if let (Answer::Users(users), Ok(local)) = (&mut answer, session.stream().local_addr()) {
            reachable_users(users, local.ip());
        }
        // Counted before the answer leaves, so a client that reads the
        // metrics after its answer sees its request counted.
        self.watched(req, answer.code(), peer_ip(session), started);
        self.answer(session, &answer);
        if let Some(log) = &self.log {
            log.record(req);
        }
        if matches!(op, Op::ListUsers | Op::ListContent) && answer.code() != 0 && self.verbose {
            crate::diag!("{}: {op} answered {}", session.peer(), answer.code());
        }
    }

    /// Counts an operation carried out, remembers it for the view and tells
    /// the view's watchers.
    fn watched(&self, req: &Request, code: u8, from: IpAddr, started: Instant) {
        let op = req.op();
        if let Some((n, t)) = Op::ALL
            .iter()
            .position(|o| *o == op)
            .and_then(|i| self.watch.served.get(i))
        {
            n.inc();
            t.observe(started.elapsed().as_secs_f64());
        }
        let subject = match &req.body {
            Body::Publish { file, .. } | Body::Delete { file } => Some(file.to_string()),
            Body::ListContent { remote } => Some(remote.to_string()),
            _ => None,
        };
        let record = OpRecord {
            t: crate::events::now_ms(),
            user: req.user.to_string(),
            op,
            subject,
            code,
            from,
        };
        self.watch.events.publish("operation", |m| {
            record.fill(m);
        });
        let mut recent = self
            .watch
            .recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if recent.len() >= RECENT_OPS {
            recent.pop_front();
        }
        recent.push_back(record);
    }

    fn answer(&self, session: &Session, answer: &Answer) {
        let bytes = answer.encode(self.format);
        if let Err(e) = session.stream().write_all(&bytes) {
            crate::diag!("{}: answer not sent: {}", session.peer(), Error::from(e));
        }
    }
}

/// Ends our side and reads what the client still sends (at most
/// `DRAIN_MAX` bytes for at most `DRAIN_FOR`) so the close does not reset
/// the connection under the answer.
pub(crate) fn drain(stream: &TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + DRAIN_FOR;
    let mut buf = [0u8; 4096];
    let mut total = 0u64;
    while total < DRAIN_MAX {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match (&*stream).read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nap::wire::{Field, UserEntry};

    fn entry(user: &str, ip: &str) -> UserEntry {
        UserEntry {
            user: Field::new(user).unwrap(),
            ip: Field::new(ip).unwrap(),
            port: Field::new("4000").unwrap(),
        }
    }

    #[test]
    fn loopback_users_are_listed_at_the_address_the_asker_came_in_on() {
        let mut users = vec![
            entry("ana", "127.0.0.1"),
            entry("bo", "10.77.0.3"),
            entry("carl", "0.0.0.0"),
        ];
        let lan: IpAddr = "10.77.0.1".parse().unwrap();
        reachable_users(&mut users, lan);
        let ips: Vec<&str> = users.iter().map(|u| u.ip.as_str()).collect();
        assert_eq!(ips, ["10.77.0.1", "10.77.0.3", "10.77.0.1"]);

        // An asker on this host keeps loopback.
        let mut users = vec![entry("ana", "127.0.0.1")];
        reachable_users(&mut users, "127.0.0.1".parse().unwrap());
        assert_eq!(users[0].ip.as_str(), "127.0.0.1");
    }
}
