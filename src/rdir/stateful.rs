//! The stateful server: `Open` keeps the directory open on the server and
//! returns an opaque random 64-bit handle bound to the connection that
//! opened it; `Read` continues from where the last read stopped; `Close`
//! releases it. A handle that is not open on this connection (0, a random
//! value, a closed one, another connection's, one from before a restart)
//! gets a clear error and the server serves on. Open directories are
//! bounded by a cap and an idle timeout, and a connection's handles are
//! released when it ends.
//!
//! **Fair share.** One connection may hold at most [`per_conn_cap`] of the
//! table (an eighth of it), and when the table is full an `Open` reclaims
//! the least recently used handle of the connection holding the most: its
//! next use gets the bad-handle error. So no one client, nor a few, can
//! lock the others out.
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
pub(crate) const DEFAULT_MAX_OPEN: usize = 128;

/// How many directories one connection may hold open when the table holds
/// `max_open`: an eighth of it, at least one.
pub(crate) fn per_conn_cap(max_open: usize) -> usize {
    (max_open / 8).max(1)
}

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
pub(crate) struct HandleInfo {
    pub handle: u64,
    pub client: SocketAddr,
    pub path: Vec<u8>,
    /// Entries read through it so far.
    pub read: u64,
    /// Seconds since it was last used.
    pub idle: f64,
}

/// The stateful server's state.
pub(crate) struct Stateful {
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
             (never issued, closed, expired, reclaimed for another client \
             when the server's table was full, or from before a server restart)"
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
    pub(crate) fn open_count(&self) -> usize {
        lock(&self.table).len()
    }

    /// Every open directory: its handle, who opened it, where it is.
    pub(crate) fn handles(&self) -> Vec<HandleInfo> {
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

    /// Makes room for one more handle of `conn`, under the table's lock:
    /// refuses when `conn` holds its share already; when the table is
    /// full, reclaims the least recently used handle of the connection
    /// holding the most.
    fn make_room(&self, table: &mut HashMap<u64, Entry>, conn: u64) -> Result<(), Refusal> {
        let share = per_conn_cap(self.max_open);
        let mut held: HashMap<u64, (usize, Instant, u64)> = HashMap::new();
        for (h, e) in table.iter() {
            let slot = held.entry(e.owner).or_insert((0, e.last_used, *h));
            slot.0 += 1;
            if e.last_used < slot.1 {
                (slot.1, slot.2) = (e.last_used, *h);
            }
        }
        if held.get(&conn).map_or(0, |s| s.0) >= share {
            return Err(Refusal::new(
                Status::TooManyOpen,
                format!(
                    "too many open directories on this connection (cap {share} per \
                     connection, {} on the server); close some",
                    self.max_open
                ),
            ));
        }
        if table.len() < self.max_open {
            return Ok(());
        }
        // The biggest holder; among equals, the one whose oldest handle is
        // oldest.
        let victim = held
            .values()
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
            .map(|s| s.2);
        match victim {
            Some(h) => {
                if let Some(e) = table.remove(&h)
                    && self.log
                {
                    crate::event!(
                        "{}: handle {h:#018x} ({}) reclaimed: the table is full",
                        e.peer,
                        e.path.escape_ascii()
                    );
                }
                Ok(())
            }
            None => Err(Refusal::plain(Status::TooManyOpen)),
        }
    }

    fn open(&self, conn: u64, peer: SocketAddr, path: &[u8]) -> Result<u64, Refusal> {
        let now = Instant::now();
        {
            let mut table = lock(&self.table);
            table.retain(|_, e| now.duration_since(e.last_used) < self.dir_idle);
            // Over its share: refused before anything is opened.
            let held = table.values().filter(|e| e.owner == conn).count();
            if held >= per_conn_cap(self.max_open) {
                self.make_room(&mut table, conn)?;
            }
        }
        let dir = self.root.open(path)?;
        let mut table = lock(&self.table);
        self.make_room(&mut table, conn)?;
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
    pub(crate) fn serve_connection(&self, session: Session) {
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
pub(crate) fn serve(server: Server, state: Arc<Stateful>) -> crate::Result<()> {
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
            16,
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
        // Two per connection (16 / 8).
        s.open(1, peer, b".").unwrap();
        assert_eq!(
            s.open(1, peer, b"a").unwrap_err().status,
            Status::TooManyOpen
        );
        s.close(1, h).unwrap();
        assert_eq!(s.close(1, h).unwrap_err().status, Status::BadHandle);
        s.release_conn(1);
        assert_eq!(s.open_count(), 0);
    }

    #[test]
    fn a_full_table_reclaims_the_biggest_holders_least_recently_used_handle() {
        let tmp = tempfile::tempdir().unwrap();
        let watch = Arc::new(Watch::new(
            &crate::metrics::Registry::new(),
            crate::events::Events::new(),
        ));
        let s = Stateful::new(
            Root::new(tmp.path()).unwrap(),
            16,
            Duration::from_secs(60),
            false,
            watch,
        );
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        // Connections 1..=7 hold two each, connection 8 one: 15 of 16.
        let mut held = HashMap::new();
        for conn in 1..=8u64 {
            for _ in 0..if conn == 8 { 1 } else { 2 } {
                held.entry(conn)
                    .or_insert_with(Vec::new)
                    .push(s.open(conn, peer, b".").unwrap());
            }
        }
        s.open(9, peer, b".").unwrap();
        assert_eq!(s.open_count(), 16);
        // Connection 3 touches its first handle: its second is now its
        // least recently used.
        s.read(3, held[&3][0], 1).unwrap();
        // Full: a newcomer still gets one, taken from a two-handle holder.
        let before = s.open_count();
        s.open(10, peer, b".").unwrap();
        assert_eq!(s.open_count(), before);
        let lost: Vec<(u64, u64)> = held
            .iter()
            .flat_map(|(c, hs)| hs.iter().map(move |h| (*c, *h)))
            .filter(|(c, h)| s.read(*c, *h, 1).is_err())
            .collect();
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert_ne!(lost[0].0, 8, "the biggest holders lose first");
        assert_ne!(lost[0].1, held[&3][0], "the least recently used goes");
        assert_eq!(
            s.read(lost[0].0, lost[0].1, 1).unwrap_err().status,
            Status::BadHandle
        );
    }
}
