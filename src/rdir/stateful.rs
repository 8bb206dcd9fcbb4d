//! The stateful server: `Open` keeps the directory open on the server and
//! returns an opaque random 64-bit handle bound to the connection that
//! opened it; `Read` continues from where the last read stopped; `Close`
//! releases it. A handle that is not open on this connection (0, a random
//! value, a closed one, another connection's, one from before a restart)
//! gets a clear error and the server serves on. Open directories are
//! bounded by a cap and an idle timeout, and a connection's handles are
//! released when it ends.
//!
//! **Locks.** `Stateful::table` is taken before an entry's `OpenDir` lock
//! and before `Stateful::rng`, never the other way round; none is held
//! during socket I/O.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::dir::{self, Dir, Refusal, Root, Status};
use super::proto::{STATEFUL, StatefulRequest as Req, StatefulResponse as Resp};
use super::watch::Watch;
use crate::frame::Conn;
use crate::rng::Rng;
use crate::server::{Server, Session};

/// Default cap on directories open at once.
pub const DEFAULT_MAX_OPEN: usize = 128;
/// Default time an open directory may go unused before it is closed.
pub const DEFAULT_DIR_IDLE: Duration = Duration::from_secs(60);

/// An open directory and what the next read continues with.
struct OpenDir {
    dir: Dir,
    /// An entry read ahead to tell the end of the directory.
    ahead: Option<Vec<u8>>,
    eof: bool,
}

struct Entry {
    owner: u64,
    /// The client that opened it, and what it opened.
    peer: SocketAddr,
    path: Vec<u8>,
    /// Entries read through it so far.
    read: u64,
    last_used: Instant,
    open: Arc<Mutex<OpenDir>>,
}

/// An open directory as the live view shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct HandleInfo {
    pub handle: u64,
    pub client: SocketAddr,
    pub path: Vec<u8>,
    /// Entries read through it so far.
    pub read: u64,
    /// Seconds since it was last used.
    pub idle: f64,
}

/// The stateful server's state.
pub struct Stateful {
    root: Root,
    max_open: usize,
    dir_idle: Duration,
    log: bool,
    table: Mutex<HashMap<u64, Entry>>,
    next_conn: AtomicU64,
    rng: Mutex<Rng>,
    watch: Arc<Watch>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn bad_handle(handle: u64) -> Refusal {
    Refusal::new(
        Status::BadHandle,
        format!(
            "bad handle {handle:#018x}: not open on this connection \
             (never issued, closed, expired, or from before a server restart)"
        ),
    )
}

impl Stateful {
    pub(crate) fn new(
        root: Root,
        max_open: usize,
        dir_idle: Duration,
        log: bool,
        watch: Arc<Watch>,
    ) -> Stateful {
        Stateful {
            root,
            max_open: max_open.max(1),
            dir_idle,
            log,
            table: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            rng: Mutex::new(Rng::new()),
            watch,
        }
    }

    /// Directories open now.
    pub fn open_count(&self) -> usize {
        lock(&self.table).len()
    }

    /// Every open directory: its handle, who opened it, where it is.
    pub fn handles(&self) -> Vec<HandleInfo> {
        let now = Instant::now();
        let mut all: Vec<HandleInfo> = lock(&self.table)
            .iter()
            .map(|(h, e)| HandleInfo {
                handle: *h,
                client: e.peer,
                path: e.path.clone(),
                read: e.read,
                idle: now.saturating_duration_since(e.last_used).as_secs_f64(),
            })
            .collect();
        all.sort_by_key(|a| (a.client, a.handle));
        all
    }

    fn open(&self, conn: u64, peer: SocketAddr, path: &[u8]) -> Result<u64, Refusal> {
        let now = Instant::now();
        {
            let mut table = lock(&self.table);
            table.retain(|_, e| now.duration_since(e.last_used) < self.dir_idle);
            if table.len() >= self.max_open {
                return Err(Refusal::new(
                    Status::TooManyOpen,
                    format!(
                        "too many open directories on the server (cap {}); close some",
                        self.max_open
                    ),
                ));
            }
        }
        let dir = self.root.open(path)?;
        let mut table = lock(&self.table);
        if table.len() >= self.max_open {
            return Err(Refusal::plain(Status::TooManyOpen));
        }
        let handle = loop {
            let h = lock(&self.rng).next_u64();
            if h != 0 && !table.contains_key(&h) {
                break h;
            }
        };
        table.insert(
            handle,
            Entry {
                owner: conn,
                peer,
                path: path.to_vec(),
                read: 0,
                last_used: now,
                open: Arc::new(Mutex::new(OpenDir {
                    dir,
                    ahead: None,
                    eof: false,
                })),
            },
        );
        Ok(handle)
    }

    fn find(&self, conn: u64, handle: u64) -> Result<Arc<Mutex<OpenDir>>, Refusal> {
        let mut table = lock(&self.table);
        match table.get_mut(&handle) {
            Some(e) if e.owner == conn => {
                e.last_used = Instant::now();
                Ok(e.open.clone())
            }
            _ => Err(bad_handle(handle)),
        }
    }

    fn read(&self, conn: u64, handle: u64, max: u32) -> Result<(Vec<Vec<u8>>, bool), Refusal> {
        let max = dir::check_max(max)?;
        let open = self.find(conn, handle)?;
        let (names, eof) = Stateful::read_on(&open, max)?;
        // The entry's lock is released: the table comes first in the order.
        if let Some(e) = lock(&self.table).get_mut(&handle) {
            e.read += names.len() as u64;
        }
        Ok((names, eof))
    }

    /// Up to `max` entries from where `open` stopped.
    fn read_on(open: &Mutex<OpenDir>, max: usize) -> Result<(Vec<Vec<u8>>, bool), Refusal> {
        let mut od = lock(open);
        if od.eof {
            return Ok((Vec::new(), true));
        }
        let mut names = Vec::new();
        if let Some(first) = od.ahead.take() {
            names.push(first);
        }
        if names.len() < max {
            let want = max - names.len();
            let (batch, ahead) = dir::read_from(&mut od.dir, want)
                .map_err(|e| Refusal::new(Status::Io, crate::error::describe_io(&e)))?;
            names.extend(batch.names);
            od.ahead = ahead;
            od.eof = batch.eof;
        } else {
            // The read-ahead entry filled the batch; whether more follow is
            // known at the next read.
            od.eof = false;
        }
        Ok((names, od.eof && od.ahead.is_none()))
    }

    fn close(&self, conn: u64, handle: u64) -> Result<(), Refusal> {
        let mut table = lock(&self.table);
        match table.get(&handle) {
            Some(e) if e.owner == conn => {
                table.remove(&handle);
                Ok(())
            }
            _ => Err(bad_handle(handle)),
        }
    }

    fn release_conn(&self, conn: u64) {
        lock(&self.table).retain(|_, e| e.owner != conn);
    }

    fn answer(&self, conn: u64, peer: SocketAddr, req: Req) -> (Resp, String) {
        let refuse = |r: Refusal| Resp::Error {
            status: r.status.code(),
            message: r.message,
        };
        match req {
            Req::Open { path } => {
                let what = format!("open {}", path.escape_ascii());
                match self.open(conn, peer, &path) {
                    Ok(handle) => (Resp::Opened { handle }, format!("{what} -> {handle:#018x}")),
                    Err(r) => (
                        refuse(r.clone()),
                        format!("{what} -> refused: {}", r.message),
                    ),
                }
            }
            Req::Read { handle, max } => {
                let what = format!("read {handle:#018x} max {max}");
                match self.read(conn, handle, max) {
                    Ok((names, eof)) => {
                        let line = format!(
                            "{what} -> {} entries{}",
                            names.len(),
                            if eof { ", end" } else { "" }
                        );
                        (Resp::Entries { names, eof }, line)
                    }
                    Err(r) => (
                        refuse(r.clone()),
                        format!("{what} -> refused: {}", r.message),
                    ),
                }
            }
            Req::Close { handle } => {
                let what = format!("close {handle:#018x}");
                match self.close(conn, handle) {
                    Ok(()) => (Resp::Closed, format!("{what} -> closed")),
                    Err(r) => (
                        refuse(r.clone()),
                        format!("{what} -> refused: {}", r.message),
                    ),
                }
            }
        }
    }

    /// Serves one connection.
    pub fn serve_connection(&self, session: Session) {
        let peer = session.peer();
        let conn_id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let Some(mut conn) = Conn::accept_logged(session, STATEFUL) else {
            return;
        };
        conn.serve_requests::<Req, Resp>(|conn, req| {
            let started = Instant::now();
            let kind = match &req {
                Req::Open { .. } => "open",
                Req::Read { .. } => "read",
                Req::Close { .. } => "close",
            };
            let (resp, line) = self.answer(conn_id, peer, req);
            let ok = !matches!(resp, Resp::Error { .. });
            self.watch.served(kind, peer, &line, ok, started);
            if self.log {
                crate::event!("{peer}: {line}");
            }
            conn.send(&resp)
        });
        self.release_conn(conn_id);
    }
}

/// Serves the stateful protocol until shutdown.
pub fn serve(server: Server, state: Arc<Stateful>) -> crate::Result<()> {
    server.serve(move |session| state.serve_connection(session))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn handles_are_bound_to_their_connection_and_capped() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        fs::create_dir_all(d.join("a")).unwrap();
        for i in 0..5 {
            fs::write(d.join(format!("a/f{i}")), b"").unwrap();
        }
        let watch = Arc::new(Watch::new(
            &crate::metrics::Registry::new(),
            crate::events::Events::new(),
        ));
        let s = Stateful::new(
            Root::new(d).unwrap(),
            2,
            Duration::from_secs(60),
            false,
            watch,
        );
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let h = s.open(1, peer, b"a").unwrap();
        assert_eq!(s.read(2, h, 10).unwrap_err().status, Status::BadHandle);
        assert_eq!(s.read(1, 0, 10).unwrap_err().status, Status::BadHandle);
        assert_eq!(s.read(1, h ^ 1, 10).unwrap_err().status, Status::BadHandle);
        let mut all = Vec::new();
        loop {
            let (names, eof) = s.read(1, h, 2).unwrap();
            assert!(names.len() <= 2);
            all.extend(names);
            if eof {
                break;
            }
        }
        assert_eq!(all.len(), 7);
        s.open(1, peer, b".").unwrap();
        assert_eq!(
            s.open(3, peer, b"a").unwrap_err().status,
            Status::TooManyOpen
        );
        s.close(1, h).unwrap();
        assert_eq!(s.close(1, h).unwrap_err().status, Status::BadHandle);
        s.release_conn(1);
        assert_eq!(s.open_count(), 0);
    }
}
