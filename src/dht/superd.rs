//! The supernode: a file repository over one local folder. It keeps a control
//! connection to the index, serves `List` / `Upload` / `Download` to
//! clients, runs the synchronizer that copies each file to the supernode
//! responsible for it, and leaves gracefully (leave, last sync, disconnect).
//!
//! Locks: `IndexLink::state` guards the control connection itself and is
//! held for exactly one request/response exchange on it; `Node::digests`
//! and `Node::incoming` guard maps and are never held across I/O. No code
//! holds two of them at once.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use indicatif::ProgressBar;

use crate::dht::proto::{
    HEARTBEAT, INDEX_PROTOCOL, Incoming, IndexRequest, IndexResponse, LIST_BATCH, SUPER_PROTOCOL,
    SuperRequest, SuperRequestOf, SuperResponse, read_request,
};
use crate::error::{Error, Result};
use crate::frame::Conn;
use crate::name::FileName;
use crate::net::{self, DEFAULT_MAX_CONNS, Timeouts};
use crate::shutdown::Shutdown;
use crate::transfer::{self, Digest, Overwrite};

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
    pub timeouts: Timeouts,
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

/// The supernode's side of its control connection: requests on it are
/// serialized, and a lost connection is re-opened (and the ring re-joined)
/// on the next request.
struct IndexLink {
    addr: String,
    port: u16,
    timeouts: Timeouts,
    state: Mutex<LinkState>,
}

struct LinkState {
    conn: Option<Conn>,
    /// Whether we want to be in the ring (between join and leave).
    member: bool,
    /// Our address as the index sees it (from `Joined`).
    me: String,
    last_used: Instant,
}

impl IndexLink {
    /// Connects to the index and joins the ring.
    fn join(addr: &str, port: u16, timeouts: Timeouts) -> Result<IndexLink> {
        let link = IndexLink {
            addr: addr.to_string(),
            port,
            timeouts,
            state: Mutex::new(LinkState {
                conn: None,
                member: true,
                me: String::new(),
                last_used: Instant::now(),
            }),
        };
        {
            let mut st = lock(&link.state);
            let conn = link.connect(&mut st)?;
            st.conn = Some(conn);
        }
        Ok(link)
    }

    /// Opens the control connection and, if we want to be a member, joins.
    fn connect(&self, st: &mut LinkState) -> Result<Conn> {
        let mut conn = Conn::open(&self.addr, &self.timeouts, INDEX_PROTOCOL)?;
        if st.member {
            conn.send(&IndexRequest::Join { port: self.port })?;
            match conn.expect::<IndexResponse>()? {
                IndexResponse::Joined { addr } => st.me = addr,
                IndexResponse::Error { message } => return Err(Error::Remote(message)),
                other => {
                    return Err(Error::Protocol(format!(
                        "unexpected answer to join: {other:?}"
                    )));
                }
            }
        }
        st.last_used = Instant::now();
        Ok(conn)
    }

    /// One request/response exchange, re-opening a lost connection once.
    fn request(&self, req: &IndexRequest) -> Result<IndexResponse> {
        let mut st = lock(&self.state);
        let mut retried = false;
        loop {
            let mut conn = match st.conn.take() {
                Some(c) => c,
                None => self.connect(&mut st)?,
            };
            let result = conn.send(req).and_then(|()| conn.expect::<IndexResponse>());
            st.last_used = Instant::now();
            match result {
                Ok(resp) => {
                    st.conn = Some(conn);
                    return match resp {
                        IndexResponse::Error { message } => Err(Error::Remote(message)),
                        resp => Ok(resp),
                    };
                }
                Err(e) if retried => return Err(e),
                Err(e) => {
                    crate::diag!("index connection lost ({e}); reconnecting");
                    retried = true;
                }
            }
        }
    }

    /// Our address in the ring.
    fn me(&self) -> String {
        lock(&self.state).me.clone()
    }

    /// The supernode responsible for `name`, `None` if the ring is empty.
    fn owner(&self, name: &FileName) -> Result<Option<String>> {
        match self.request(&IndexRequest::Query { name: name.clone() })? {
            IndexResponse::Owner { addr } => Ok(Some(addr)),
            IndexResponse::NoSupernodes => Ok(None),
            other => Err(Error::Protocol(format!(
                "unexpected answer to a query: {other:?}"
            ))),
        }
    }

    /// Keeps an idle control connection alive.
    fn ping_if_idle(&self) -> Result<()> {
        let idle = lock(&self.state).last_used.elapsed();
        if idle >= HEARTBEAT {
            self.request(&IndexRequest::Ping)?;
        }
        Ok(())
    }

    /// Leaves the ring; the connection stays open for queries.
    fn leave(&self) -> Result<()> {
        let resp = self.request(&IndexRequest::Leave);
        lock(&self.state).member = false;
        match resp? {
            IndexResponse::Left => Ok(()),
            other => Err(Error::Protocol(format!(
                "unexpected answer to leave: {other:?}"
            ))),
        }
    }

    /// Says goodbye and closes the connection.
    fn disconnect(&self) -> Result<()> {
        let resp = self.request(&IndexRequest::Disconnect);
        lock(&self.state).conn = None;
        match resp? {
            IndexResponse::Bye => Ok(()),
            other => Err(Error::Protocol(format!(
                "unexpected answer to disconnect: {other:?}"
            ))),
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

/// Names being received right now, so two uploads of one name cannot race.
#[derive(Default)]
struct Arrivals {
    names: Mutex<HashSet<FileName>>,
    done: Condvar,
}

/// Holds a name in `Arrivals` until dropped.
struct Reservation<'a> {
    set: &'a Arrivals,
    name: FileName,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        lock(&self.set.names).remove(&self.name);
        self.set.done.notify_all();
    }
}

impl Arrivals {
    fn reserve(&self, name: &FileName) -> Option<Reservation<'_>> {
        if lock(&self.names).insert(name.clone()) {
            Some(Reservation {
                set: self,
                name: name.clone(),
            })
        } else {
            None
        }
    }

    /// Waits until nothing is being received, up to `limit`.
    fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut names = lock(&self.names);
        while !names.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            names = self
                .done
                .wait_timeout(names, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

/// A running supernode's shared state.
struct Node {
    repo: PathBuf,
    index: IndexLink,
    digests: DigestCache,
    incoming: Arrivals,
    /// Set when shutdown starts: uploads are refused from then on.
    leaving: AtomicBool,
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
                let (d, n) = transfer::hash_reader(&mut file)?;
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
}

/// Runs a supernode until Ctrl-C or SIGTERM, then leaves gracefully.
pub fn run(opts: Options) -> Result<()> {
    let shutdown = Shutdown::install()?;
    let listener = net::bind(&opts.listen)?;
    serve(listener, opts, &shutdown, true)
}

/// Joins the ring, announces `listener`, serves and synchronizes until
/// `shutdown` triggers, then leaves: leave the ring, last sync, disconnect.
/// `announce` prints the readiness line.
pub fn serve(
    listener: TcpListener,
    opts: Options,
    shutdown: &Arc<Shutdown>,
    announce: bool,
) -> Result<()> {
    match fs::metadata(&opts.repo) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::Io(io::Error::other(format!(
                "repository {}: not a folder",
                opts.repo.display()
            ))));
        }
        Err(e) => {
            return Err(Error::Io(io::Error::new(
                e.kind(),
                format!(
                    "repository {}: {}",
                    opts.repo.display(),
                    crate::cli::describe_io(&e)
                ),
            )));
        }
    }
    let port = listener.local_addr()?.port();
    let index = IndexLink::join(&opts.index, port, opts.timeouts).map_err(|e| match e {
        Error::Io(io) => Error::Io(io::Error::new(
            io.kind(),
            format!(
                "connecting to index {}: {}",
                opts.index,
                crate::cli::describe_io(&io)
            ),
        )),
        other => Error::Remote(format!("joining index {}: {other}", opts.index)),
    })?;
    if announce {
        net::announce(&listener)?;
    }
    let node = Arc::new(Node {
        repo: opts.repo.clone(),
        index,
        digests: DigestCache::default(),
        incoming: Arrivals::default(),
        leaving: AtomicBool::new(false),
        timeouts: opts.timeouts,
    });
    crate::event!("joined the ring as {}", node.index.me());

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
        let shutdown2 = shutdown.clone();
        net::serve(
            listener,
            shutdown,
            opts.timeouts,
            DEFAULT_MAX_CONNS,
            move |stream, peer| handle(&node, &shutdown2, stream, peer),
        )
    };
    node.leaving.store(true, Ordering::SeqCst);
    shutdown.trigger();
    if syncer.join().is_err() {
        crate::diag!("the synchronizer stopped abnormally");
    }
    served?;
    leave(&node)
}

/// The graceful exit: leave the ring, let uploads in flight finish, copy
/// every file to the supernode now responsible for it, disconnect.
fn leave(node: &Node) -> Result<()> {
    let via = |e: Error| {
        Error::Remote(format!(
            "leaving the ring via index {}: {e}",
            node.index.addr
        ))
    };
    node.index.leave().map_err(via)?;
    crate::event!("left the ring; final sync");
    if !node.incoming.wait_idle(node.timeouts.io) {
        crate::diag!(
            "uploads still arriving after {:?}; syncing anyway",
            node.timeouts.io
        );
    }
    let report = sync_round(node, None);
    node.index.disconnect().map_err(via)?;
    if report.failed > 0 {
        return Err(Error::Remote(format!(
            "final sync: {} file(s) could not be placed on their supernode",
            report.failed
        )));
    }
    crate::event!("disconnected");
    Ok(())
}

fn synchronizer(node: &Node, shutdown: &Shutdown, interval: Duration) {
    let tick = interval.min(HEARTBEAT);
    let mut last_sync: Option<Instant> = None;
    loop {
        if last_sync.is_none_or(|t| t.elapsed() >= interval) {
            sync_round(node, Some(shutdown));
            last_sync = Some(Instant::now());
        } else if let Err(e) = node.index.ping_if_idle() {
            crate::diag!("index {}: {e}", node.index.addr);
        }
        let until_sync = last_sync
            .map(|t| interval.saturating_sub(t.elapsed()))
            .unwrap_or_default();
        if shutdown.wait(tick.min(until_sync).max(Duration::from_millis(10))) {
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
    let me = node.index.me();
    let mut peers: HashMap<String, Conn> = HashMap::new();
    for name in &names {
        if stop.is_some_and(Shutdown::is_triggered) {
            break;
        }
        let owner = match node.index.owner(name) {
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
fn handle(node: &Node, shutdown: &Shutdown, stream: TcpStream, peer: SocketAddr) {
    if shutdown.is_triggered() {
        // The wake-up connection of the accept loop, or a late client.
        return;
    }
    let mut conn = match Conn::new(stream) {
        Ok(c) => c,
        Err(e) => {
            crate::diag!("{peer}: {}", crate::cli::describe_io(&e));
            return;
        }
    };
    let outcome = match conn.server_handshake(SUPER_PROTOCOL) {
        Ok(true) => serve_client(node, &mut conn, peer),
        Ok(false) => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(e) = outcome
        && !e.is_disconnect()
    {
        crate::diag!("{peer}: {e}");
    }
    net::close(conn.stream());
}

fn serve_client(node: &Node, conn: &mut Conn, peer: SocketAddr) -> Result<()> {
    loop {
        let incoming = match read_request::<SuperRequest, SuperRequestOf<String>, _>(conn.reader())?
        {
            None => return Ok(()),
            Some(i) => i,
        };
        match incoming {
            Incoming::Request(SuperRequest::List) => list(node, conn)?,
            Incoming::Request(SuperRequest::Upload { name, size, sha256 }) => {
                if !receive(node, conn, peer, &name, size, sha256)? {
                    return Ok(());
                }
            }
            Incoming::Request(SuperRequest::Download { name }) => download(node, conn, &name)?,
            Incoming::Invalid(message) => {
                crate::diag!("{peer}: {message}");
                conn.send(&SuperResponse::Error { message })?;
            }
            Incoming::Fatal(message) => {
                crate::diag!("{peer}: {message}");
                conn.send(&SuperResponse::Error { message })?;
                return Ok(());
            }
        }
    }
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
    if node.leaving.load(Ordering::SeqCst) {
        conn.send(&SuperResponse::Error {
            message: "this supernode is leaving the network".to_string(),
        })?;
        return Ok(true);
    }
    let dest = name.within(&node.repo);
    let exists = fs::symlink_metadata(&dest).is_ok();
    let reservation = if exists {
        None
    } else {
        node.incoming.reserve(name)
    };
    let Some(_reservation) = reservation else {
        conn.send(&SuperResponse::AlreadyExists)?;
        return Ok(true);
    };
    conn.send(&SuperResponse::Ready)?;
    crate::event!("receiving {name} from {peer}");
    let bar = ProgressBar::hidden();
    match transfer::receive_file(conn.reader(), size, sha256, &dest, Overwrite::Never, &bar) {
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
    let reply = match node.index.owner(name) {
        Ok(Some(addr)) if addr != node.index.me() => SuperResponse::Redirect { addr },
        Ok(_) => SuperResponse::NotFound,
        Err(e) => SuperResponse::Error {
            message: format!("{name} is not here and the index cannot be asked: {e}"),
        },
    };
    conn.send(&reply)
}
