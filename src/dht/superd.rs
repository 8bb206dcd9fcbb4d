//! The supernode: a file repository over one local folder. It keeps a control
//! connection to the index, serves `List` / `Upload` / `Download` to
//! clients, runs the synchronizer that copies each file to the supernode
//! responsible for it, and leaves gracefully (leave, last sync, disconnect).
//!
//! Threads: the accept loop and its connection handlers, the synchronizer,
//! and the "index-link" thread that alone owns the control connection
//! (join, heartbeats, leave, disconnect). Queries to the index go over
//! short-lived connections of their own, so a slow index delays only the
//! request that asked.
//!
//! Locks: `Control::me`, `DigestCache::map` and `Arrivals::state` guard
//! small values and are never held across I/O or while logging. No code
//! holds two of them at once.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use indicatif::ProgressBar;

use crate::dht::proto::{
    INDEX_PROTOCOL, IndexRequest, IndexResponse, LIST_BATCH, SUPER_PROTOCOL, SuperRequest,
    SuperResponse,
};
use crate::digest::{self, Digest};
use crate::error::{Error, Result};
use crate::frame::Conn;
use crate::name::FileName;
use crate::net::{self, Timeouts};
use crate::server::{Limits, Server, Session};
use crate::shutdown::Shutdown;
use crate::transfer::{self, Overwrite};

/// Default index address of `p2p-superd`.
pub const DEFAULT_INDEX: &str = "localhost:6110";
/// Default listening address of `p2p-superd` (an ephemeral port).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:0";
/// Default time between two synchronizer rounds.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How a supernode runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The repository folder.
    pub repo: PathBuf,
    /// The index, `HOST:PORT`.
    pub index: String,
    /// Where to listen for clients, `HOST:PORT`.
    pub listen: String,
    /// Time between synchronizer rounds.
    pub sync_interval: Duration,
    /// Time between keep-alives on a quiet control connection.
    pub heartbeat: Duration,
    /// The server core's limits; `limits.io` also times outgoing connections.
    pub limits: Limits,
}

/// The names in `repo` that are plain, valid file names of regular files
/// (our temporary files and anything else are skipped), sorted.
pub fn scan(repo: &Path) -> Result<Vec<FileName>> {
    let mut names = Vec::new();
    for entry in walkdir::WalkDir::new(repo).min_depth(1).max_depth(1) {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.depth() == 0 => {
                return Err(Error::Io(io::Error::other(format!(
                    "reading {}: {e}",
                    repo.display()
                ))));
            }
            // An entry that vanished or cannot be read is not listed.
            Err(_) => continue,
        };
        if !entry.file_type().is_file() {
            continue;
        }
        if let Ok(name) = FileName::new(entry.file_name().to_string_lossy().into_owned()) {
            // A name that is not valid UTF-8 was mangled by the lossy
            // conversion and would not open; skip it.
            if entry.file_name().to_str().is_some() {
                names.push(name);
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Joins the ring over a fresh control connection; returns it and our
/// address in the ring as the index sees it.
fn open_control(addr: &str, port: u16, timeouts: &Timeouts) -> Result<(Conn, String)> {
    let mut conn = Conn::open(addr, timeouts, INDEX_PROTOCOL)?;
    conn.send(&IndexRequest::Join { port })?;
    match conn.expect::<IndexResponse>()? {
        IndexResponse::Joined { addr } => Ok((conn, addr)),
        IndexResponse::Error { message } => Err(Error::Remote(message)),
        other => Err(Error::Protocol(format!(
            "unexpected answer to join: {other:?}"
        ))),
    }
}

/// One request/response exchange on an index connection; an `Error` reply
/// becomes `Error::Remote`.
fn exchange(conn: &mut Conn, req: &IndexRequest) -> Result<IndexResponse> {
    conn.send(req)?;
    match conn.expect::<IndexResponse>()? {
        IndexResponse::Error { message } => Err(Error::Remote(message)),
        resp => Ok(resp),
    }
}

/// A short-lived query connection to the index. It never joins, so it can
/// be opened by anyone at any time (a client handler, a sync round) without
/// waiting for the control connection, and closing it changes nothing in
/// the ring.
struct Lookup {
    conn: Conn,
}

impl Lookup {
    fn open(addr: &str, timeouts: &Timeouts) -> Result<Lookup> {
        Ok(Lookup {
            conn: Conn::open(addr, timeouts, INDEX_PROTOCOL)?,
        })
    }

    /// The supernode responsible for `name`, `None` if the ring is empty.
    fn owner(&mut self, name: &FileName) -> Result<Option<String>> {
        match exchange(&mut self.conn, &IndexRequest::Query { name: name.clone() })? {
            IndexResponse::Owner { addr } => Ok(Some(addr)),
            IndexResponse::NoSupernodes => Ok(None),
            other => Err(Error::Protocol(format!(
                "unexpected answer to a query: {other:?}"
            ))),
        }
    }
}

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
struct Control {
    /// The index, `HOST:PORT`.
    addr: String,
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
    fn join(addr: &str, port: u16, timeouts: Timeouts, heartbeat: Duration) -> Result<Control> {
        let (conn, me) = open_control(addr, port, &timeouts)?;
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
            .spawn(move || link.run(&inbox))?;
        Ok(Control {
            addr: addr.to_string(),
            orders,
            me,
            // Room for one exchange after a reconnect and re-join.
            deadline: (timeouts.connect + timeouts.io * 2) * 2,
        })
    }

    /// Our address in the ring.
    fn me(&self) -> String {
        lock(&self.me).clone()
    }

    /// Has the control thread carry out `command`; waits up to `deadline`.
    fn order(&self, command: Command) -> Result<()> {
        let (reply, outcome) = mpsc::sync_channel(1);
        self.orders
            .send(Order { command, reply })
            .map_err(|_| Error::Io(io::Error::other("the index link has stopped")))?;
        match outcome.recv_timeout(self.deadline) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer from the index within {:?}", self.deadline),
            ))),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(Error::Io(io::Error::other("the index link has stopped")))
            }
        }
    }

    /// Leaves the ring; the control connection stays open.
    fn leave(&self) -> Result<()> {
        self.order(Command::Leave)
    }

    /// Says goodbye and closes the control connection.
    fn disconnect(&self) -> Result<()> {
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
                let (conn, me) = open_control(&self.addr, self.port, &self.timeouts)?;
                crate::diag!("index connection re-opened; rejoined the ring as {me}");
                *lock(&self.me) = me;
                conn
            }
            None => Conn::open(&self.addr, &self.timeouts, INDEX_PROTOCOL)?,
        };
        match exchange(&mut conn, &IndexRequest::Ping) {
            Ok(IndexResponse::Pong) => {
                self.conn = Some(conn);
                Ok(())
            }
            Ok(other) => Err(Error::Protocol(format!(
                "unexpected answer to a ping: {other:?}"
            ))),
            Err(e) => Err(Error::Io(io::Error::other(format!(
                "control connection lost ({e}); re-opening it at the next heartbeat"
            )))),
        }
    }

    fn carry_out(&mut self, command: Command) -> Result<()> {
        match command {
            Command::Leave => {
                self.member = false;
                let Some(conn) = self.conn.as_mut() else {
                    // The index dropped us with the connection already.
                    return Ok(());
                };
                match exchange(conn, &IndexRequest::Leave) {
                    Ok(IndexResponse::Left) => Ok(()),
                    Ok(other) => Err(Error::Protocol(format!(
                        "unexpected answer to leave: {other:?}"
                    ))),
                    Err(e @ Error::Remote(_)) => Err(e),
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
                let result = exchange(&mut conn, &IndexRequest::Disconnect);
                net::close(conn.stream());
                match result? {
                    IndexResponse::Bye => Ok(()),
                    other => Err(Error::Protocol(format!(
                        "unexpected answer to disconnect: {other:?}"
                    ))),
                }
            }
        }
    }
}

/// SHA-256s of repository files, keyed by name and valid while the file's
/// length and modification time are unchanged.
#[derive(Default)]
struct DigestCache {
    map: Mutex<HashMap<FileName, (u64, SystemTime, Digest)>>,
}

impl DigestCache {
    fn get(&self, name: &FileName, len: u64, mtime: SystemTime) -> Option<Digest> {
        match lock(&self.map).get(name) {
            Some(&(l, t, d)) if l == len && t == mtime => Some(d),
            _ => None,
        }
    }

    fn put(&self, name: &FileName, len: u64, mtime: SystemTime, digest: Digest) {
        lock(&self.map).insert(name.clone(), (len, mtime, digest));
    }

    /// Forgets files no longer in the repository.
    fn retain(&self, names: &[FileName]) {
        let keep: HashSet<&FileName> = names.iter().collect();
        lock(&self.map).retain(|n, _| keep.contains(n));
    }
}

/// A repository file opened for sending, with its length and SHA-256.
struct Outgoing {
    file: File,
    len: u64,
    digest: Digest,
}

/// Uploads being received right now, so two uploads of one name cannot
/// race, and the supernode's leave cannot miss one.
#[derive(Default)]
struct Arrivals {
    state: Mutex<ArrivalState>,
    done: Condvar,
}

#[derive(Default)]
struct ArrivalState {
    names: HashSet<FileName>,
    phase: Phase,
}

/// Where the supernode's leave is, as far as uploads are concerned.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// New uploads are welcome.
    #[default]
    Open,
    /// Leaving: new uploads are refused; those in flight may still finish
    /// and be answered `Stored` (the final sync has not scanned yet).
    Closed,
    /// The final sync is about to scan: an upload finishing now would not be
    /// passed on, so it gets an error reply instead of `Stored`.
    Sealed,
}

/// Why an upload cannot start.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// The same name is arriving on another connection.
    Busy,
    /// The supernode is leaving the network.
    Leaving,
}

/// Holds a name in `Arrivals` until dropped.
struct Reservation<'a> {
    set: &'a Arrivals,
    name: FileName,
}

impl Reservation<'_> {
    /// Whether the file, now in the repository, may be answered `Stored`:
    /// true unless the final sync has already begun (it will then not be
    /// passed on by us). Call after the file is in place.
    fn may_confirm(&self) -> bool {
        lock(&self.set.state).phase != Phase::Sealed
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        lock(&self.set.state).names.remove(&self.name);
        self.set.done.notify_all();
    }
}

impl Arrivals {
    /// Reserves `name` for one upload, unless it is arriving already or the
    /// supernode is leaving (checked under the same lock as `close`).
    fn reserve(&self, name: &FileName) -> std::result::Result<Reservation<'_>, Refusal> {
        let mut st = lock(&self.state);
        if st.phase != Phase::Open {
            return Err(Refusal::Leaving);
        }
        if !st.names.insert(name.clone()) {
            return Err(Refusal::Busy);
        }
        Ok(Reservation {
            set: self,
            name: name.clone(),
        })
    }

    /// Refuses new uploads from now on.
    fn close(&self) {
        let mut st = lock(&self.state);
        if st.phase == Phase::Open {
            st.phase = Phase::Closed;
        }
    }

    /// Uploads that finish from now on are refused; returns how many are
    /// still in flight. Called just before the final sync scans, so every
    /// upload answered `Stored` is in the repository when it does.
    fn seal(&self) -> usize {
        let mut st = lock(&self.state);
        st.phase = Phase::Sealed;
        st.names.len()
    }

    /// Waits until nothing is being received, up to `limit`.
    fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut st = lock(&self.state);
        while !st.names.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .done
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

/// A running supernode's shared state.
struct Node {
    repo: PathBuf,
    control: Control,
    digests: DigestCache,
    incoming: Arrivals,
    timeouts: Timeouts,
}

impl Node {
    /// Opens `name` for sending if it is a regular file here; its SHA-256
    /// comes from the cache or is computed now (and cached).
    fn open(&self, name: &FileName) -> Result<Option<Outgoing>> {
        let path = name.within(&self.repo);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let meta = file.metadata()?;
        let len = meta.len();
        let mtime = meta.modified()?;
        let digest = match self.digests.get(name, len, mtime) {
            Some(d) => d,
            None => {
                let (d, n) = digest::hash_reader(&mut file)?;
                file.seek(SeekFrom::Start(0))?;
                if n != len {
                    return Err(Error::Io(io::Error::other(format!(
                        "{name} changed while being hashed"
                    ))));
                }
                self.digests.put(name, len, mtime, d);
                d
            }
        };
        Ok(Some(Outgoing { file, len, digest }))
    }

    /// A fresh query connection to the index.
    fn lookup(&self) -> Result<Lookup> {
        Lookup::open(&self.control.addr, &self.timeouts)
    }
}

/// Runs a supernode until Ctrl-C or SIGTERM, then leaves gracefully.
pub fn run(opts: Options) -> Result<()> {
    let server = Server::start(&opts.listen, opts.limits)?;
    serve(server, opts)
}

/// Joins the ring, announces the server, serves and synchronizes until
/// shutdown, then leaves: leave the ring, last sync, disconnect.
fn serve(server: Server, opts: Options) -> Result<()> {
    match fs::metadata(&opts.repo) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::Local(format!(
                "repository {}: not a folder",
                opts.repo.display()
            )));
        }
        Err(e) => return Err(Error::from(e).doing(format!("repository {}", opts.repo.display()))),
    }
    let timeouts = opts.limits.io;
    let port = server.local_addr().port();
    let control =
        Control::join(&opts.index, port, timeouts, opts.heartbeat).map_err(|e| match e.root() {
            Error::Io(_) => e.doing(format!("connecting to index {}", opts.index)),
            _ => e.doing(format!("joining index {}", opts.index)),
        })?;
    server.announce()?;
    let node = Arc::new(Node {
        repo: opts.repo.clone(),
        control,
        digests: DigestCache::default(),
        incoming: Arrivals::default(),
        timeouts,
    });
    crate::event!("joined the ring as {}", node.control.me());

    let shutdown = server.shutdown().clone();
    let syncer = {
        let node = node.clone();
        let shutdown = shutdown.clone();
        let interval = opts.sync_interval;
        thread::Builder::new()
            .name("synchronizer".into())
            .spawn(move || synchronizer(&node, &shutdown, interval))?
    };

    let served = {
        let node = node.clone();
        let shutdown = shutdown.clone();
        server.serve(move |session| handle(&node, &shutdown, session))
    };
    node.incoming.close();
    shutdown.trigger();
    if syncer.join().is_err() {
        crate::diag!("the synchronizer stopped abnormally");
    }
    served?;
    leave(&node)
}

/// The graceful exit: leave the ring, let uploads in flight finish, copy
/// every file to the supernode now responsible for it, disconnect. An
/// upload still arriving when the final sync starts is answered with an
/// error, never `Stored`.
fn leave(node: &Node) -> Result<()> {
    let via = |e: Error| {
        Error::Remote(format!(
            "leaving the ring via index {}: {e}",
            node.control.addr
        ))
    };
    // New uploads have been refused since the accept loop stopped.
    node.control.leave().map_err(via)?;
    crate::event!("left the ring; final sync");
    let idle = node.incoming.wait_idle(node.timeouts.io);
    let late = node.incoming.seal();
    if !idle && late > 0 {
        crate::diag!(
            "{late} upload(s) still arriving after {:?} will be refused",
            node.timeouts.io
        );
    }
    let report = sync_round(node, None);
    node.control.disconnect().map_err(via)?;
    if report.failed > 0 {
        return Err(Error::Remote(format!(
            "final sync: {} file(s) could not be placed on their supernode",
            report.failed
        )));
    }
    crate::event!("disconnected");
    Ok(())
}

/// Runs a sync round every `interval` until shutdown. Heartbeats to the
/// index are the control thread's business, so a long round is harmless.
fn synchronizer(node: &Node, shutdown: &Shutdown, interval: Duration) {
    loop {
        sync_round(node, Some(shutdown));
        if shutdown.wait(interval) {
            return;
        }
    }
}

/// What a sync round did.
#[derive(Debug, Default)]
struct SyncReport {
    failed: usize,
}

/// Copies every file whose responsible supernode is another one to it.
/// Stops early when `stop` (the shutdown flag) is set.
fn sync_round(node: &Node, stop: Option<&Shutdown>) -> SyncReport {
    let mut report = SyncReport::default();
    let names = match scan(&node.repo) {
        Ok(n) => n,
        Err(e) => {
            crate::diag!("sync: {e}");
            report.failed += 1;
            return report;
        }
    };
    node.digests.retain(&names);
    let me = node.control.me();
    let mut peers: HashMap<String, Conn> = HashMap::new();
    let mut lookup: Option<Lookup> = None;
    for name in &names {
        if stop.is_some_and(Shutdown::is_triggered) {
            break;
        }
        let asked = match lookup.as_mut() {
            Some(l) => l.owner(name),
            None => node.lookup().and_then(|l| lookup.insert(l).owner(name)),
        };
        let owner = match asked {
            Ok(Some(addr)) => addr,
            // Nobody else to give files to (we were the last one).
            Ok(None) => break,
            Err(e) => {
                crate::diag!("sync: asking the index about {name}: {e}");
                report.failed += 1;
                break;
            }
        };
        if owner == me {
            continue;
        }
        if let Err(e) = push(node, &mut peers, &owner, name) {
            crate::diag!("sync: sending {name} to {owner}: {e}");
            peers.remove(&owner);
            report.failed += 1;
        }
    }
    report
}

/// Uploads `name` to `owner` unless it already has it, reusing one
/// connection per peer within a round.
fn push(
    node: &Node,
    peers: &mut HashMap<String, Conn>,
    owner: &str,
    name: &FileName,
) -> Result<()> {
    let Some(out) = node.open(name)? else {
        // Deleted since the scan: nothing to place.
        return Ok(());
    };
    if !peers.contains_key(owner) {
        let conn = Conn::open(owner, &node.timeouts, SUPER_PROTOCOL)?;
        peers.insert(owner.to_string(), conn);
    }
    let Some(conn) = peers.get_mut(owner) else {
        return Ok(());
    };
    conn.send(&SuperRequest::Upload {
        name: name.clone(),
        size: out.len,
        sha256: out.digest,
    })?;
    match conn.expect::<SuperResponse>()? {
        SuperResponse::Ready => {}
        SuperResponse::AlreadyExists => return Ok(()),
        SuperResponse::Error { message } => return Err(Error::Remote(message)),
        other => {
            return Err(Error::Protocol(format!(
                "unexpected answer to an upload: {other:?}"
            )));
        }
    }
    crate::event!("[balance] sending {name} to {owner}");
    transfer::send_body_to_socket(out.file, out.len, conn.writer())?;
    match conn.expect::<SuperResponse>()? {
        SuperResponse::Stored | SuperResponse::AlreadyExists => Ok(()),
        SuperResponse::Error { message } => Err(Error::Remote(message)),
        other => Err(Error::Protocol(format!(
            "unexpected answer after an upload: {other:?}"
        ))),
    }
}

/// Serves one client connection: any number of requests, one after another.
fn handle(node: &Node, shutdown: &Shutdown, session: Session) {
    if shutdown.is_triggered() {
        // A late client: the supernode is leaving.
        return;
    }
    let peer = session.peer();
    let mut conn = match Conn::accept(session, SUPER_PROTOCOL) {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => {
            if !e.is_disconnect() {
                crate::diag!("{peer}: {e}");
            }
            return;
        }
    };
    if let Err(e) = serve_client(node, &mut conn, peer)
        && !e.is_disconnect()
    {
        crate::diag!("{peer}: {e}");
    }
}

fn serve_client(node: &Node, conn: &mut Conn, peer: SocketAddr) -> Result<()> {
    while let Some(req) = conn.next_request::<SuperRequest, SuperResponse>()? {
        match req {
            SuperRequest::List => list(node, conn)?,
            SuperRequest::Upload { name, size, sha256 } => {
                if !receive(node, conn, peer, &name, size, sha256)? {
                    return Ok(());
                }
            }
            SuperRequest::Download { name } => download(node, conn, &name)?,
        }
    }
    Ok(())
}

fn list(node: &Node, conn: &mut Conn) -> Result<()> {
    let names = match scan(&node.repo) {
        Ok(n) => n,
        Err(e) => {
            return conn.send(&SuperResponse::Error {
                message: e.to_string(),
            });
        }
    };
    for batch in names.chunks(LIST_BATCH) {
        conn.queue(&SuperResponse::Names {
            names: batch.to_vec(),
        })?;
    }
    conn.send(&SuperResponse::EndOfList)
}

/// Receives one upload. Returns false when the connection cannot go on
/// (the body was not fully read).
fn receive(
    node: &Node,
    conn: &mut Conn,
    peer: SocketAddr,
    name: &FileName,
    size: u64,
    sha256: Digest,
) -> Result<bool> {
    let dest = name.within(&node.repo);
    if fs::symlink_metadata(&dest).is_ok() {
        conn.send(&SuperResponse::AlreadyExists)?;
        return Ok(true);
    }
    let reservation = match node.incoming.reserve(name) {
        Ok(r) => r,
        Err(Refusal::Busy) => {
            conn.send(&SuperResponse::AlreadyExists)?;
            return Ok(true);
        }
        Err(Refusal::Leaving) => {
            conn.send(&SuperResponse::Error {
                message: "this supernode is leaving the network".to_string(),
            })?;
            return Ok(true);
        }
    };
    conn.send(&SuperResponse::Ready)?;
    crate::event!("receiving {name} from {peer}");
    let bar = ProgressBar::hidden();
    match transfer::receive_file(conn.reader(), size, sha256, &dest, Overwrite::Never, &bar) {
        Ok(()) if !reservation.may_confirm() => {
            crate::diag!("{peer}: {name} arrived after the final sync began; not confirmed");
            conn.send(&SuperResponse::Error {
                message: format!(
                    "{name} arrived after this supernode began its final sync and will not \
                     be passed on; upload it to another supernode"
                ),
            })?;
            Ok(true)
        }
        Ok(()) => {
            if let Ok(meta) = fs::metadata(&dest)
                && let Ok(mtime) = meta.modified()
            {
                node.digests.put(name, meta.len(), mtime, sha256);
            }
            conn.send(&SuperResponse::Stored)?;
            Ok(true)
        }
        Err(e @ Error::HashMismatch { .. }) => {
            // Every body byte was read: the connection is still in step.
            crate::diag!("{peer}: {name}: {e}");
            conn.send(&SuperResponse::Error {
                message: format!("{name}: {e}"),
            })?;
            Ok(true)
        }
        Err(Error::Io(e)) if e.kind() == io::ErrorKind::AlreadyExists => {
            conn.send(&SuperResponse::AlreadyExists)?;
            Ok(true)
        }
        Err(e) if e.is_disconnect() => Err(e),
        Err(e) => {
            crate::diag!("{peer}: receiving {name}: {e}");
            // Best effort: the body may be half read, so the connection ends.
            let _ = conn.send(&SuperResponse::Error {
                message: format!("storing {name}: {e}"),
            });
            Ok(false)
        }
    }
}

fn download(node: &Node, conn: &mut Conn, name: &FileName) -> Result<()> {
    let out = match node.open(name) {
        Ok(o) => o,
        Err(e) => {
            return conn.send(&SuperResponse::Error {
                message: format!("reading {name}: {e}"),
            });
        }
    };
    if let Some(out) = out {
        conn.queue(&SuperResponse::File {
            size: out.len,
            sha256: out.digest,
        })?;
        return transfer::send_body_to_socket(out.file, out.len, conn.writer());
    }
    // A query connection of its own: the control connection and the
    // synchronizer's queries never hold this up.
    let reply = match node.lookup().and_then(|mut l| l.owner(name)) {
        Ok(Some(addr)) if addr != node.control.me() => SuperResponse::Redirect { addr },
        Ok(_) => SuperResponse::NotFound,
        Err(e) => SuperResponse::Error {
            message: format!("{name} is not here and the index cannot be asked: {e}"),
        },
    };
    conn.send(&reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> FileName {
        FileName::new(s).unwrap()
    }

    #[test]
    fn a_name_arrives_once_at_a_time() {
        let arrivals = Arrivals::default();
        let first = arrivals.reserve(&name("a")).unwrap();
        assert_eq!(arrivals.reserve(&name("a")).err(), Some(Refusal::Busy));
        assert!(arrivals.reserve(&name("b")).is_ok());
        drop(first);
        assert!(arrivals.reserve(&name("a")).is_ok());
    }

    #[test]
    fn leaving_refuses_new_uploads_under_the_same_lock() {
        let arrivals = Arrivals::default();
        let inflight = arrivals.reserve(&name("a")).unwrap();
        arrivals.close();
        assert_eq!(arrivals.reserve(&name("b")).err(), Some(Refusal::Leaving));
        // One already arriving may still be confirmed until the seal.
        assert!(inflight.may_confirm());
        assert!(!arrivals.wait_idle(Duration::from_millis(10)));
        assert_eq!(arrivals.seal(), 1);
        assert!(!inflight.may_confirm());
        drop(inflight);
        assert!(arrivals.wait_idle(Duration::ZERO));
        assert_eq!(arrivals.reserve(&name("c")).err(), Some(Refusal::Leaving));
    }

    #[test]
    fn wait_idle_returns_when_the_last_upload_ends() {
        let arrivals = Arc::new(Arrivals::default());
        let (held, release) = mpsc::channel::<()>();
        let (reserved, is_reserved) = mpsc::channel::<()>();
        let a = arrivals.clone();
        let t = thread::spawn(move || {
            let _r = a.reserve(&name("a")).unwrap();
            reserved.send(()).unwrap();
            let _ = release.recv();
        });
        is_reserved.recv().unwrap();
        drop(held);
        assert!(arrivals.wait_idle(Duration::from_secs(30)));
        t.join().unwrap();
    }
}
