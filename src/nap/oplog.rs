//! The RPC operation log: `nap-log`, an ONC RPC program (`operations.x`)
//! that prints one line per operation the directory server carries out,
//! and the server's sender that calls it.
//!
//! ```text
//! program NAP_LOG (0x20000099) version 1:
//!   void LOG_OPERATION(operation_entry) = 1
//!   struct operation_entry { string username<256>; string operation<256>; string timestamp<256>; }
//! ```
//!
//! `nap-log` prints `USER OPERATION TIMESTAMP` per call; PUBLISH and DELETE
//! carry the file name in OPERATION (`ana PUBLISH notes.txt 21/11/2026 10:00:00`).
//!
//! The sender never slows the server down: the workers hand entries to a
//! bounded queue ([`QUEUE`]) without waiting, and one thread calls the log
//! server with short timeouts. When the queue is full, or the log server is
//! unreachable, entries are dropped and counted, with a warning now and then.

use super::records::Records;
use crate::events::Events;
use crate::metrics::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread;
use std::time::{Duration, Instant};

use super::server::{OpLog, printable};
use super::wire::{Body, DateTime, MAX_FIELD, Request};
use crate::error::Result;
use crate::net::{self, Timeouts};
use crate::oncrpc::portmap::{self, Registration};
use crate::oncrpc::server::{self as rpc_server, Call, Fault, Program};
use crate::oncrpc::{Client, Decoder, Encoder};
use crate::server::{Limits, Server};

/// The program number.
pub(crate) const PROG: u32 = 0x2000_0099;
/// The version.
pub(crate) const VERS: u32 = 1;
/// `LOG_OPERATION`.
pub(crate) const LOG_OPERATION: u32 = 1;

/// Bound of each string.
const MAX_STRING: u32 = MAX_FIELD as u32;

/// Largest record `nap-log` accepts: a call header with credentials and
/// three full strings, with room to spare.
const MAX_RECORD: usize = 4096;

/// Entries waiting for the sender.
pub(crate) const QUEUE: usize = 1024;

/// Connect and I/O timeout of each call to the log server.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// After a failure, how long entries are dropped before trying again.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(1);

/// One logged operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub username: String,
    pub operation: String,
    pub timestamp: String,
}

impl Entry {
    /// The entry for a carried-out request: PUBLISH and DELETE name their
    /// file; the timestamp is the request's, or now if it had none.
    pub(crate) fn of(req: &Request) -> Entry {
        let op = req.op().name();
        let operation = match &req.body {
            Body::Publish { file, .. } | Body::Delete { file } => format!("{op} {file}"),
            _ => op.to_string(),
        };
        Entry {
            username: req.user.to_string(),
            operation: clip(operation),
            timestamp: req.datetime.unwrap_or_else(DateTime::now).to_string(),
        }
    }

    /// The call's arguments.
    pub(crate) fn encode(&self, e: &mut Encoder) {
        e.string(self.username.as_bytes())
            .string(self.operation.as_bytes())
            .string(self.timestamp.as_bytes());
    }

    /// Decodes the call's arguments.
    pub(crate) fn decode(d: &mut Decoder<'_>) -> crate::oncrpc::Result<Entry> {
        let mut s = |what| {
            d.string(MAX_STRING, what)
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        Ok(Entry {
            username: s("username")?,
            operation: s("operation")?,
            timestamp: s("timestamp")?,
        })
    }
}

/// `PUBLISH <256-byte name>` is longer than the string's bound: cut at a
/// character boundary (this is a log line; the request itself was whole).
fn clip(mut s: String) -> String {
    if s.len() > MAX_FIELD {
        let mut end = MAX_FIELD;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The `nap-log` program: prints each entry.
struct LogProgram {
    /// The operations logged, for the live view.
    records: Arc<Records>,
}

impl Program for LogProgram {
    fn prog(&self) -> u32 {
        PROG
    }
    fn vers(&self) -> u32 {
        VERS
    }
    fn dispatch(&self, call: &mut Call<'_>, _results: &mut Encoder) -> Result<(), Fault> {
        if call.proc_ != LOG_OPERATION {
            return Err(Fault::ProcUnavail);
        }
        let e = call.args(Entry::decode)?;
        self.records.add("logged", |m| {
            m.insert("user".into(), printable(&e.username).into());
            m.insert("operation".into(), printable(&e.operation).into());
            m.insert("timestamp".into(), printable(&e.timestamp).into());
            m.insert("from".into(), call.peer.to_string().into());
        });
        crate::event!(
            "{} {} {}",
            printable(&e.username),
            printable(&e.operation),
            printable(&e.timestamp)
        );
        Ok(())
    }
}

/// Serves the log until Ctrl-C or SIGTERM, registered with the local
/// rpcbind (or, if there is none, on its port only, with a warning).
pub(crate) fn run(listen: &str, limits: Limits, http: Option<&str>) -> Result<()> {
    let server = Server::start(listen, limits)?;
    let port = server.local_addr().port();
    let registration = Registration::register_or_warn(PROG, VERS, port);
    server.announce()?;
    let metrics = Registry::new();
    let events = Events::new();
    server.export_metrics(&metrics);
    let records = Arc::new(Records::new(
        "nap-log: the operation log",
        &[
            ("t", "received"),
            ("user", "user"),
            ("operation", "operation"),
            ("timestamp", "stamped"),
            ("from", "from"),
        ],
        &metrics,
        "oplog_calls",
        "LOG_OPERATION calls logged.",
        &["logged"],
        events.clone(),
    ));
    crate::view::serve_if(http, &server, metrics, events, || records.clone())?;
    let served = rpc_server::serve(server, Arc::new(LogProgram { records }), MAX_RECORD);
    drop(registration);
    served
}

/// Where the log server is: `HOST` (asked through its rpcbind) or
/// `HOST:PORT` (straight there).
#[derive(Debug, Clone)]
pub(crate) struct Target(String);

impl Target {
    pub(crate) fn new(s: &str) -> Target {
        Target(s.to_string())
    }

    fn address(&self) -> Result<String> {
        if self.0.parse::<SocketAddr>().is_ok() || has_port(&self.0) {
            return Ok(self.0.clone());
        }
        let port = portmap::getport(&self.0, PROG, VERS)?;
        Ok(net::host_port(&self.0, port))
    }
}

/// `name:123` (not an IPv6 literal without brackets).
fn has_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.contains(':') && port.parse::<u16>().is_ok(),
        None => false,
    }
}

/// The server's side: a bounded queue and one sender thread.
pub(crate) struct Sender {
    tx: SyncSender<Entry>,
    dropped: Arc<AtomicU64>,
}

impl Sender {
    /// Starts the sender thread for the log server at `target`.
    pub(crate) fn start(target: Target) -> Result<Sender> {
        let (tx, rx) = sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let d = dropped.clone();
        thread::Builder::new()
            .name("log sender".into())
            .spawn(move || send_loop(&target, &rx, &d))
            .map_err(|e| crate::Error::start("the log sender", e))?;
        Ok(Sender { tx, dropped })
    }
}

/// Says how many entries were dropped, at 1, 2, 4, 8... so a long outage
/// is not a line per operation.
fn count_drop(dropped: &AtomicU64, why: &str) {
    let n = dropped.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        crate::diag!("operation log: {why}; {n} entries dropped so far");
    }
}

impl OpLog for Sender {
    fn record(&self, req: &Request) {
        match self.tx.try_send(Entry::of(req)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                count_drop(&self.dropped, "log server too slow, queue full")
            }
            Err(TrySendError::Disconnected(_)) => count_drop(&self.dropped, "log sender stopped"),
        }
    }
}

fn send_loop(target: &Target, rx: &Receiver<Entry>, dropped: &AtomicU64) {
    let timeouts = Timeouts {
        connect: CALL_TIMEOUT,
        io: CALL_TIMEOUT,
    };
    let mut client: Option<Client> = None;
    let mut down_until: Option<Instant> = None;
    while let Ok(entry) = rx.recv() {
        if down_until.is_some_and(|t| Instant::now() < t) {
            count_drop(dropped, "log server unreachable");
            continue;
        }
        down_until = None;
        let sent = (|| -> Result<()> {
            if client.is_none() {
                let addr = target.address()?;
                client = Some(Client::connect(&addr, &timeouts, PROG, VERS)?);
            }
            let Some(c) = client.as_mut() else {
                return Ok(());
            };
            c.call_with(LOG_OPERATION, |e| entry.encode(e), |_| Ok(()))?;
            Ok(())
        })();
        if let Err(e) = sent {
            client = None;
            down_until = Some(Instant::now() + RETRY_AFTER);
            count_drop(dropped, &format!("log server {}: {e}", target.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nap::wire::Field;

    #[test]
    fn entries_name_the_file_and_carry_the_request_time() {
        let req = Request {
            datetime: DateTime::parse("21/11/2026 10:00:00"),
            user: Field::new("ana").unwrap(),
            body: Body::Publish {
                file: Field::new("notes.txt").unwrap(),
                description: Field::new("d").unwrap(),
            },
        };
        let e = Entry::of(&req);
        assert_eq!(
            (
                e.username.as_str(),
                e.operation.as_str(),
                e.timestamp.as_str()
            ),
            ("ana", "PUBLISH notes.txt", "21/11/2026 10:00:00")
        );
        let mut enc = Encoder::new();
        e.encode(&mut enc);
        // Golden XDR: length, bytes, padding to 4.
        assert_eq!(&enc.as_bytes()[..8], &[0, 0, 0, 3, b'a', b'n', b'a', 0]);
        let bytes = enc.into_bytes();
        let mut d = Decoder::new(&bytes);
        assert_eq!(Entry::decode(&mut d).unwrap(), e);
        let long = Request {
            body: Body::Delete {
                file: Field::new("é".repeat(128)).unwrap(),
            },
            ..req
        };
        assert!(Entry::of(&long).operation.len() <= MAX_FIELD);
        assert!(has_port("localhost:99") && !has_port("localhost") && !has_port("::1"));
    }
}
