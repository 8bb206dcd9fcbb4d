//! The course's `dirops.h` in Rust: [`open`] a remote directory in one of
//! the three designs, iterate its entry names (raw bytes), `close` it.
//! One implementation per design behind the [`RemoteDir`] trait.
//!
//! The stateless designs keep the cookie on the client and send it with
//! every request; if the connection breaks after a listing has begun (the
//! server restarted), they reconnect and go on from the same cookie.

use std::collections::VecDeque;
use std::thread;
use std::time::{Duration, Instant};

use super::dir::{Batch, status_text};
use super::proto::{
    STATEFUL, STATELESS, StatefulRequest, StatefulResponse, StatelessRequest, StatelessResponse,
};
use super::rpc::{self, Args, RDIR_READDIR, RDIRVERS};
use super::{DEFAULT_PORT, Mode};
use crate::error::{Detail, Error, Result, Role, Stage};
use crate::frame::{self, Conn};
use crate::net::{self, Timeouts};
use crate::oncrpc::{self, Client, portmap};

/// Where the server is.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    /// The port; `None`: the default port, or for RPC the port rpcbind gives.
    pub port: Option<u16>,
    /// The RPC program number.
    pub prog: u32,
    pub timeouts: Timeouts,
}

impl Endpoint {
    pub fn new(host: &str, port: Option<u16>) -> Endpoint {
        Endpoint {
            host: host.to_string(),
            port,
            prog: rpc::NUMPROG,
            timeouts: Timeouts::default(),
        }
    }

    fn addr(&self) -> String {
        net::host_port(&self.host, self.port.unwrap_or(DEFAULT_PORT))
    }

    /// The server as people name it: `HOST:PORT`, or `HOST` when the port
    /// comes from its rpcbind.
    pub fn describe(&self) -> String {
        match self.port {
            Some(p) => net::host_port(&self.host, p),
            None => self.host.clone(),
        }
    }
}

/// How a listing proceeds.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Entries asked for per request (1 to 1024).
    pub batch: u32,
    /// A pause before each request after the first (demos use it to
    /// restart a server in the middle of a listing).
    pub pause: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            batch: super::MAX_BATCH,
            pause: Duration::ZERO,
        }
    }
}

/// An open remote directory.
pub trait RemoteDir {
    /// The path it was opened with.
    fn path(&self) -> &[u8];
    /// The next entry name, in the server's readdir order; `None` at the end.
    fn next_name(&mut self) -> Result<Option<Vec<u8>>>;
    /// Releases the directory (the stateful server's handle).
    fn close(&mut self) -> Result<()>;
}

/// Most entries one listing may have: a server that never ends a listing
/// is cut off here.
pub const MAX_LISTING: u64 = 1 << 22;

/// What a listing has received so far, to catch a server that lies: more
/// entries than asked for, names longer than a name can be, a name or a
/// stateless cookie that comes again (the listing would go round for
/// ever), or no end. Names are kept as 64-bit hashes: bounded memory.
#[derive(Default)]
struct Seen {
    keys: std::collections::hash_map::RandomState,
    names: std::collections::HashSet<u64>,
    cookies: std::collections::HashSet<u64>,
}

impl Seen {
    fn batch(&mut self, names: &[Vec<u8>], asked: u32) -> Result<()> {
        use std::hash::BuildHasher;
        if names.len() > asked as usize {
            return Err(Error::invalid(
                Stage::Reply,
                format!(
                    "the server sent {} entries for a batch of {asked}",
                    names.len()
                ),
            ));
        }
        for n in names {
            if n.len() > super::MAX_NAME as usize {
                return Err(Error::invalid(
                    Stage::Reply,
                    format!(
                        "the server sent an entry of {} bytes (a name is at most {})",
                        n.len(),
                        super::MAX_NAME
                    ),
                ));
            }
            if !self.names.insert(self.keys.hash_one(n)) {
                return Err(Error::invalid(
                    Stage::Reply,
                    format!(
                        "the server sent {:?} twice: the listing goes round",
                        String::from_utf8_lossy(n)
                    ),
                ));
            }
        }
        if self.names.len() as u64 > MAX_LISTING {
            return Err(Error::protocol(
                Stage::Reply,
                Detail::OutOfRange {
                    what: "listing size",
                    value: self.names.len() as u64,
                    limit: MAX_LISTING,
                },
            ));
        }
        Ok(())
    }

    fn cookie(&mut self, cookie: u64) -> Result<()> {
        if !self.cookies.insert(cookie) {
            return Err(Error::invalid(
                Stage::Reply,
                format!("the server's cookie went back to {cookie}: the listing would never end"),
            ));
        }
        Ok(())
    }
}

/// The entry names of a `RemoteDir`; stops after the first error.
pub struct Entries<'a> {
    dir: &'a mut dyn RemoteDir,
    done: bool,
}

impl Iterator for Entries<'_> {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.dir.next_name().transpose();
        if !matches!(next, Some(Ok(_))) {
            self.done = true;
        }
        next
    }
}

impl dyn RemoteDir + '_ {
    /// Iterates the entry names.
    pub fn entries(&mut self) -> Entries<'_> {
        Entries {
            dir: self,
            done: false,
        }
    }
}

/// A refusal from the server as the library's error.
pub fn refused(path: &[u8], code: u32, message: &str) -> Error {
    Error::remote(
        Role::Server,
        format!(
            "{}: {message} (status {code})",
            String::from_utf8_lossy(path)
        ),
    )
}

/// Opens `path` on the server in `mode`.
pub fn open(ep: &Endpoint, mode: Mode, path: &[u8], opts: Options) -> Result<Box<dyn RemoteDir>> {
    Ok(match mode {
        Mode::Stateful => Box::new(StatefulDir::open(ep, path, opts)?),
        Mode::Stateless => Box::new(StatelessDir::open(
            SocketFetch {
                addr: ep.addr(),
                timeouts: ep.timeouts,
                conn: None,
            },
            path,
            opts,
        )?),
        Mode::Rpc => Box::new(StatelessDir::open(
            RpcFetch {
                ep: ep.clone(),
                client: None,
            },
            path,
            opts,
        )?),
    })
}

/// Stateful: the server holds the open directory behind a handle.
pub struct StatefulDir {
    conn: Conn,
    ep: Endpoint,
    path: Vec<u8>,
    handle: u64,
    opts: Options,
    buf: VecDeque<Vec<u8>>,
    eof: bool,
    closed: bool,
    asked: bool,
    seen: Seen,
}

impl StatefulDir {
    pub fn open(ep: &Endpoint, path: &[u8], opts: Options) -> Result<StatefulDir> {
        let mut conn = Conn::open(&ep.addr(), &ep.timeouts, STATEFUL)?;
        let open = StatefulRequest::Open {
            path: path.to_vec(),
        };
        let handle = conn.call(&open, "Opened", |r| match r {
            StatefulResponse::Opened { handle } => Ok(Ok(handle)),
            StatefulResponse::Error { status, message } => Ok(Err(refused(path, status, &message))),
            other => Err(other),
        })??;
        Ok(StatefulDir::with(ep, conn, path, handle, opts))
    }

    /// Reads with a handle this client did not get from `open` (one from
    /// another connection, from before a restart, or made up): the server
    /// must refuse it.
    pub fn adopt(ep: &Endpoint, path: &[u8], handle: u64, opts: Options) -> Result<StatefulDir> {
        let conn = Conn::open(&ep.addr(), &ep.timeouts, STATEFUL)?;
        Ok(StatefulDir::with(ep, conn, path, handle, opts))
    }

    fn with(ep: &Endpoint, conn: Conn, path: &[u8], handle: u64, opts: Options) -> StatefulDir {
        StatefulDir {
            conn,
            ep: ep.clone(),
            path: path.to_vec(),
            handle,
            opts,
            buf: VecDeque::new(),
            eof: false,
            closed: false,
            asked: false,
            seen: Seen::default(),
        }
    }

    /// The server's handle (opaque).
    pub fn handle(&self) -> u64 {
        self.handle
    }

    /// One read; if the connection broke (the server restarted), connects
    /// again within the connect timeout and presents the same handle,
    /// which a restarted server refuses: the stateful design's weakness.
    fn read(&mut self) -> Result<StatefulResponse> {
        let req = StatefulRequest::Read {
            handle: self.handle,
            max: self.opts.batch,
        };
        let first = self
            .conn
            .send(&req)
            .and_then(|()| self.conn.expect::<StatefulResponse>());
        let e = match first {
            Err(e) if e.is_disconnect() => e,
            other => return other,
        };
        let deadline = Instant::now() + self.ep.timeouts.connect;
        loop {
            match Conn::open(&self.ep.addr(), &self.ep.timeouts, STATEFUL) {
                Ok(c) => {
                    self.conn = c;
                    self.conn.send(&req)?;
                    return self.conn.expect();
                }
                Err(_) if Instant::now() < deadline => thread::sleep(RETRY_EVERY),
                Err(_) => return Err(e),
            }
        }
    }
}

impl RemoteDir for StatefulDir {
    fn path(&self) -> &[u8] {
        &self.path
    }

    fn next_name(&mut self) -> Result<Option<Vec<u8>>> {
        while self.buf.is_empty() && !self.eof {
            if self.asked && !self.opts.pause.is_zero() {
                thread::sleep(self.opts.pause);
            }
            self.asked = true;
            match self.read()? {
                StatefulResponse::Entries { names, eof } => {
                    self.seen.batch(&names, self.opts.batch).map_err(|e| {
                        e.doing(format!(
                            "listing {} from {}",
                            String::from_utf8_lossy(&self.path),
                            self.ep.addr()
                        ))
                    })?;
                    self.buf.extend(names);
                    self.eof = eof;
                }
                StatefulResponse::Error { status, message } => {
                    if status == super::dir::Status::BadHandle.code() {
                        // Nothing to close on the server.
                        self.closed = true;
                    }
                    return Err(refused(&self.path, status, &message));
                }
                other => return Err(frame::unexpected("Entries", &other)),
            }
        }
        Ok(self.buf.pop_front())
    }

    fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let close = StatefulRequest::Close {
            handle: self.handle,
        };
        let path = &self.path;
        self.conn.call(&close, "Closed", |r| match r {
            StatefulResponse::Closed => Ok(Ok(())),
            StatefulResponse::Error { status, message } => Ok(Err(refused(path, status, &message))),
            other => Err(other),
        })?
    }
}

impl Drop for StatefulDir {
    fn drop(&mut self) {
        // Best effort; the server also releases handles when we disconnect.
        let _ = self.close();
    }
}

/// A failed stateless request: worth reconnecting and retrying, or not.
enum Failure {
    Retry(Error),
    Fatal(Error),
}

/// What one stateless request gives: a batch, the server's refusal
/// (status and message), or a failure.
type Fetched = Result<Result<Batch, (u32, String)>, Failure>;

/// One stateless request over some transport.
trait Fetch {
    fn fetch(&mut self, path: &[u8], cookie: u64, max: u32) -> Fetched;
    /// Drops the connection; the next fetch connects anew.
    fn reset(&mut self);
    fn timeouts(&self) -> Timeouts;
    /// The server, as errors name it.
    fn peer(&self) -> String;
}

struct SocketFetch {
    addr: String,
    timeouts: Timeouts,
    conn: Option<Conn>,
}

impl Fetch for SocketFetch {
    fn peer(&self) -> String {
        self.addr.clone()
    }

    fn fetch(&mut self, path: &[u8], cookie: u64, max: u32) -> Fetched {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self
                .conn
                .insert(Conn::open(&self.addr, &self.timeouts, STATELESS).map_err(Failure::Retry)?),
        };
        let req = StatelessRequest::ReadDir {
            path: path.to_vec(),
            cookie,
            max,
        };
        let on_link = |e: Error| {
            if e.is_disconnect() {
                Failure::Retry(e)
            } else {
                Failure::Fatal(e)
            }
        };
        conn.send(&req).map_err(on_link)?;
        match conn.expect::<StatelessResponse>().map_err(on_link)? {
            StatelessResponse::Batch { names, cookie, eof } => Ok(Ok(Batch { names, cookie, eof })),
            StatelessResponse::Error { status, message } => Ok(Err((status, message))),
        }
    }

    fn reset(&mut self) {
        self.conn = None;
    }

    fn timeouts(&self) -> Timeouts {
        self.timeouts
    }
}

struct RpcFetch {
    ep: Endpoint,
    client: Option<Client>,
}

impl RpcFetch {
    fn connect(&self) -> Result<Client> {
        let port = match self.ep.port {
            Some(p) => p,
            None => portmap::getport(&self.ep.host, self.ep.prog, RDIRVERS)?,
        };
        let addr = net::host_port(&self.ep.host, port);
        Client::connect(&addr, &self.ep.timeouts, self.ep.prog, RDIRVERS)
    }
}

impl Fetch for RpcFetch {
    fn peer(&self) -> String {
        match self.ep.port {
            Some(p) => format!("{}:{p}", self.ep.host),
            None => self.ep.host.clone(),
        }
    }

    fn fetch(&mut self, path: &[u8], cookie: u64, max: u32) -> Fetched {
        let client = match &mut self.client {
            Some(c) => c,
            None => self.client.insert(self.connect().map_err(Failure::Retry)?),
        };
        let args = Args {
            dirname: path.to_vec(),
            cookie,
            max_entries: max,
        };
        let res = client.call_with(RDIR_READDIR, |e| args.encode(e), rpc::decode_res);
        match res {
            Ok(Ok(b)) => Ok(Ok(b)),
            Ok(Err(code)) => Ok(Err((code, status_text(code).to_string()))),
            Err(e @ (oncrpc::Error::Io(_) | oncrpc::Error::Closed)) => {
                let e = Error::from(e);
                if e.is_disconnect() {
                    Err(Failure::Retry(e))
                } else {
                    Err(Failure::Fatal(e))
                }
            }
            Err(e) => Err(Failure::Fatal(e.into())),
        }
    }

    fn reset(&mut self) {
        self.client = None;
    }

    fn timeouts(&self) -> Timeouts {
        self.ep.timeouts
    }
}

/// Stateless: the client keeps the cookie.
struct StatelessDir<F> {
    fetch: F,
    path: Vec<u8>,
    cookie: u64,
    opts: Options,
    buf: VecDeque<Vec<u8>>,
    eof: bool,
    started: bool,
    seen: Seen,
}

/// How long to wait between attempts to reach a restarting server.
const RETRY_EVERY: Duration = Duration::from_millis(100);

impl<F: Fetch> StatelessDir<F> {
    fn open(fetch: F, path: &[u8], opts: Options) -> Result<StatelessDir<F>> {
        let mut d = StatelessDir {
            fetch,
            path: path.to_vec(),
            cookie: 0,
            opts,
            buf: VecDeque::new(),
            eof: false,
            started: false,
            seen: Seen::default(),
        };
        // A cookie of 0 again would start the listing over.
        d.seen.cookies.insert(0);
        // opendir's errors belong to open: ask for the first batch now.
        d.fill()?;
        Ok(d)
    }

    fn fill(&mut self) -> Result<()> {
        if self.started && !self.opts.pause.is_zero() {
            thread::sleep(self.opts.pause);
        }
        // Once a listing has begun, a broken connection is a server
        // restarting: retry within the connect timeout.
        let deadline = Instant::now() + self.fetch.timeouts().connect;
        let answer = loop {
            match self.fetch.fetch(&self.path, self.cookie, self.opts.batch) {
                Ok(a) => break a,
                Err(Failure::Retry(e)) => {
                    self.fetch.reset();
                    if !self.started || Instant::now() >= deadline {
                        return Err(e);
                    }
                    thread::sleep(RETRY_EVERY);
                }
                Err(Failure::Fatal(e)) => {
                    self.fetch.reset();
                    return Err(e);
                }
            }
        };
        self.started = true;
        match answer {
            Ok(b) => {
                let checked = self.seen.batch(&b.names, self.opts.batch).and_then(|()| {
                    if b.eof {
                        Ok(())
                    } else {
                        self.seen.cookie(b.cookie)
                    }
                });
                checked.map_err(|e| {
                    e.doing(format!(
                        "listing {} from {}",
                        String::from_utf8_lossy(&self.path),
                        self.fetch.peer()
                    ))
                })?;
                self.buf.extend(b.names);
                self.cookie = b.cookie;
                self.eof = b.eof;
                Ok(())
            }
            Err((code, message)) => Err(refused(&self.path, code, &message)),
        }
    }
}

impl<F: Fetch> RemoteDir for StatelessDir<F> {
    fn path(&self) -> &[u8] {
        &self.path
    }

    fn next_name(&mut self) -> Result<Option<Vec<u8>>> {
        while self.buf.is_empty() && !self.eof {
            self.fill()?;
        }
        Ok(self.buf.pop_front())
    }

    fn close(&mut self) -> Result<()> {
        // Nothing is held on the server.
        Ok(())
    }
}

/// True when a listing error means the directory is not there or was
/// refused (exit status 1), as opposed to a failure to talk (2).
pub fn is_refusal(e: &Error) -> bool {
    matches!(e.root(), Error::Remote { .. })
}
