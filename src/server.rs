//! The server core every daemon stands on: start-up (signals, binding, the
//! `listening on` line), the accept loop feeding a bounded set of connection
//! threads or a fixed pool of workers, per-connection deadlines, and what
//! happens when every slot is taken.
//!
//! **Phases and deadlines.** A connection is always in one of three phases,
//! which its handler marks through its [`Session`]:
//! - *request*: a request (a frame, a handshake, an ID message, an RPC
//!   record) has begun, or the connection is new. The whole request must
//!   arrive within `request_timeout`, however slowly it trickles in.
//! - *idle*: between two requests. The connection is closed after
//!   `idle_timeout` (a handler may lengthen it for long-lived links).
//! - *busy*: the handler is working or sending; only socket timeouts apply.
//!
//! One watchdog thread per server closes connections past their deadline by
//! shutting their socket down, which wakes the handler's blocked read.
//!
//! **Eviction.** At most `max_conns` connections are served at once. When
//! one more arrives, the connection that has been idle or stalled longest is
//! dropped to make room, with a log line. Connections that never completed a
//! request go first, then ordinary ones, then protected ones (neighbour
//! links, control connections). A newcomer is turned away only when every
//! connection is busy working. So N silent sockets never deny service: the
//! newest client always gets a slot.
//!
//! **Locks.** `Registry::table` is taken before any `Slot::state`; no code
//! takes them the other way round, and neither is held during socket I/O
//! or logging.

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::net::{Shutdown as SockShutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Result, ResultExt, describe_io};
use crate::log::Throttle;
use crate::net::{self, Timeouts};
use crate::shutdown::Shutdown;

/// Default cap on connections served at once.
pub(crate) const DEFAULT_MAX_CONNS: usize = 256;
/// Default time a whole request may take to arrive.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a connection may sit idle between requests.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the watchdog looks for connections past their deadline.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// A server's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub max_conns: usize,
    /// Time a whole request may take to arrive.
    pub request_timeout: Duration,
    /// Time a connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// Socket timeouts: each read and write, and outgoing connects.
    pub io: Timeouts,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_conns: DEFAULT_MAX_CONNS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            io: Timeouts::default(),
        }
    }
}

/// A fixed pool of workers fed by a bounded queue of complete requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pool {
    /// Worker threads.
    pub workers: usize,
    /// Requests waiting for a worker before readers wait too.
    pub queue: usize,
}

/// What a connection is doing, as its handler last said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Request,
    Idle,
    Busy,
}

/// How reluctantly a connection is evicted: lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    /// Has not completed a request yet.
    Unproven,
    /// Has completed at least one request.
    Served,
    /// A long-lived link the daemon depends on.
    Protected,
}

struct SlotState {
    phase: Phase,
    /// When the current phase began.
    since: Instant,
    rank: Rank,
    idle_timeout: Duration,
    /// Set once the core has shut the socket down.
    closed: bool,
    /// The class it has joined, if any.
    class: Option<usize>,
}

impl SlotState {
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        match self.phase {
            Phase::Request => Some(self.since + limits.request_timeout),
            Phase::Idle => Some(self.since + self.idle_timeout),
            Phase::Busy => None,
        }
    }
}

/// One served connection, shared by its handler and the core.
struct Slot {
    id: u64,
    peer: SocketAddr,
    stream: Arc<TcpStream>,
    state: Mutex<SlotState>,
}

impl Slot {
    fn state(&self) -> MutexGuard<'_, SlotState> {
        lock(&self.state)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Table {
    live: HashMap<u64, Arc<Slot>>,
    next_id: u64,
    /// Connection threads running, evicted ones still winding down included.
    threads: usize,
}

/// Why the core closed a connection.
enum Closing {
    Expired(Phase, Duration),
    Evicted {
        idle: Duration,
        for_peer: SocketAddr,
    },
    Stopping,
}

/// A class of connections with a cap of its own (a servent's clients, its
/// neighbour links), made by [`Server::class`] and joined with
/// [`Session::join_class`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnClass(usize);

/// What a class is and how many it holds.
struct ClassSpec {
    /// What its members are, plural, for log lines ("client connections").
    what: &'static str,
    max: usize,
    /// Lines about members dropped for newcomers.
    log: Throttle,
}

/// What the core has done with connections, for `/metrics`.
#[derive(Default)]
struct Counts {
    accepted: AtomicU64,
    expired: AtomicU64,
    evicted: AtomicU64,
    turned_away: AtomicU64,
}

impl Counts {
    /// The counters as metrics, `peerkit_connections_NAME_total`.
    const FIELDS: [crate::metrics::Field<Counts>; 4] = [
        ("accepted", "Connections accepted.", |c| &c.accepted),
        (
            "expired",
            "Connections closed for missing a deadline (idle, or a request too slow).",
            |c| &c.expired,
        ),
        (
            "evicted",
            "Connections dropped to make room for a newcomer.",
            |c| &c.evicted,
        ),
        (
            "turned_away",
            "Newcomers turned away because every connection was busy.",
            |c| &c.turned_away,
        ),
    ];
}

/// The connections a server is serving.
struct Registry {
    counts: Arc<Counts>,
    limits: Limits,
    table: Mutex<Table>,
    /// Signalled when a connection thread ends.
    freed: Condvar,
    /// Lines about connections the core closed.
    log: Throttle,
    /// The connection classes, fixed before serving starts.
    classes: Vec<ClassSpec>,
}

impl Registry {
    fn new(limits: Limits) -> Registry {
        Registry {
            limits,
            table: Mutex::new(Table {
                live: HashMap::new(),
                next_id: 0,
                threads: 0,
            }),
            freed: Condvar::new(),
            log: Throttle::new(false),
            classes: Vec::new(),
            counts: Arc::default(),
        }
    }

    fn note(&self, line: &str) {
        self.log.diag(|| line.to_string());
    }

    /// Puts `slot` in `class`, first dropping the member of the class that
    /// has waited longest for its next request (or else the one stalled
    /// longest in a request, then the one busy longest) when the class is
    /// full.
    fn join_class(&self, slot: &Arc<Slot>, class: ConnClass) {
        let Some(spec) = self.classes.get(class.0) else {
            return;
        };
        let now = Instant::now();
        let victim = {
            let mut table = lock(&self.table);
            let mut members = 0;
            let mut chosen: Option<((u8, Instant), u64)> = None;
            for s in table.live.values() {
                if s.id == slot.id {
                    continue;
                }
                let st = s.state();
                if st.class != Some(class.0) || st.closed {
                    continue;
                }
                members += 1;
                let order = match st.phase {
                    Phase::Idle => 0,
                    Phase::Request => 1,
                    Phase::Busy => 2,
                };
                let key = (order, st.since);
                if chosen.is_none_or(|(k, _)| key < k) {
                    chosen = Some((key, s.id));
                }
            }
            slot.state().class = Some(class.0);
            match chosen {
                Some((_, id)) if members >= spec.max.max(1) => table.live.remove(&id).map(|v| {
                    let mut st = v.state();
                    st.closed = true;
                    let doing = (st.phase, now.saturating_duration_since(st.since));
                    drop(st);
                    (v, doing)
                }),
                _ => None,
            }
        };
        if let Some((v, (phase, for_how_long))) = victim {
            bump(&self.counts.evicted);
            let _ = v.stream.shutdown(SockShutdown::Both);
            let doing = match phase {
                Phase::Idle => format!("idle for {:.1}s", for_how_long.as_secs_f64()),
                _ => "in the middle of a message".to_string(),
            };
            spec.log.diag(|| {
                format!(
                    "{}: dropped ({doing}): already {} {} open and {} is new",
                    v.peer, spec.max, spec.what, slot.peer
                )
            });
        }
    }

    /// Takes a slot for a new connection, evicting the one idle or stalled
    /// longest if every slot is taken. `None` if every connection is busy.
    fn admit(&self, stream: TcpStream, peer: SocketAddr) -> Option<Arc<Slot>> {
        let now = Instant::now();
        let mut victim = None;
        let slot = {
            let mut table = lock(&self.table);
            if table.live.len() >= self.limits.max_conns.max(1) {
                let chosen = table
                    .live
                    .values()
                    .filter_map(|s| {
                        let st = s.state();
                        (st.phase != Phase::Busy && !st.closed).then(|| (st.rank, st.since, s.id))
                    })
                    .min();
                let (_, since, id) = chosen?;
                if let Some(v) = table.live.remove(&id) {
                    v.state().closed = true;
                    victim = Some((v, now.saturating_duration_since(since)));
                }
            }
            table.next_id += 1;
            let slot = Arc::new(Slot {
                id: table.next_id,
                peer,
                stream: Arc::new(stream),
                state: Mutex::new(SlotState {
                    phase: Phase::Request,
                    since: now,
                    rank: Rank::Unproven,
                    idle_timeout: self.limits.idle_timeout,
                    closed: false,
                    class: None,
                }),
            });
            table.live.insert(slot.id, slot.clone());
            slot
        };
        if let Some((v, idle)) = victim {
            self.shut(
                &v,
                Closing::Evicted {
                    idle,
                    for_peer: peer,
                },
            );
        }
        Some(slot)
    }

    /// Shuts a slot's socket down (its handler's I/O fails at once) and
    /// logs why. The slot is already out of the live table.
    fn shut(&self, slot: &Slot, why: Closing) {
        let _ = slot.stream.shutdown(SockShutdown::Both);
        let peer = slot.peer;
        match why {
            Closing::Expired(..) => bump(&self.counts.expired),
            Closing::Evicted { .. } => bump(&self.counts.evicted),
            Closing::Stopping => {}
        }
        let line = match why {
            Closing::Expired(Phase::Request, after) => {
                format!("{peer}: closed: no complete request within {}", secs(after))
            }
            Closing::Expired(_, after) => format!("{peer}: closed: idle for {}", secs(after)),
            Closing::Evicted { idle, for_peer } => format!(
                "{peer}: dropped after {} without a request: all {} connections in use and \
                 {for_peer} is waiting",
                secs(idle),
                self.limits.max_conns
            ),
            Closing::Stopping => return,
        };
        self.note(&line);
    }

    fn release(&self, id: u64) {
        lock(&self.table).live.remove(&id);
    }

    /// Closes every connection past its deadline.
    fn expire(&self, now: Instant) {
        let mut expired = Vec::new();
        {
            let mut table = lock(&self.table);
            table.live.retain(|_, slot| {
                let mut st = slot.state();
                match st.deadline(&self.limits) {
                    Some(d) if now >= d && !st.closed => {
                        st.closed = true;
                        let allowed = match st.phase {
                            Phase::Request => self.limits.request_timeout,
                            _ => st.idle_timeout,
                        };
                        expired.push((slot.clone(), st.phase, allowed));
                        false
                    }
                    _ => true,
                }
            });
        }
        for (slot, phase, allowed) in expired {
            self.shut(&slot, Closing::Expired(phase, allowed));
        }
    }

    /// Closes every connection not busy working (at shutdown).
    fn close_waiting(&self) {
        let waiting: Vec<Arc<Slot>> = {
            let mut table = lock(&self.table);
            let mut out = Vec::new();
            table.live.retain(|_, slot| {
                let mut st = slot.state();
                if st.phase == Phase::Busy {
                    return true;
                }
                st.closed = true;
                out.push(slot.clone());
                false
            });
            out
        };
        for slot in waiting {
            self.shut(&slot, Closing::Stopping);
        }
    }

    /// Counts a new connection thread, first waiting while evicted threads
    /// still winding down would take the total past twice the cap.
    fn thread_started(&self, shutdown: &Shutdown) -> bool {
        let cap = self.limits.max_conns.max(1) * 2;
        let mut table = lock(&self.table);
        while table.threads >= cap {
            if shutdown.is_triggered() {
                return false;
            }
            table = self
                .freed
                .wait_timeout(table, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        table.threads += 1;
        true
    }

    fn thread_ended(&self) {
        let mut table = lock(&self.table);
        table.threads = table.threads.saturating_sub(1);
        self.freed.notify_all();
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// `1.5s`, `10s`.
fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Ends the count of a connection thread however the thread ends.
struct ThreadGuard(Arc<Registry>);

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        self.0.thread_ended();
    }
}

/// One connection as its handler sees it: the socket, the peer's address,
/// and the phase markers the core's deadlines and eviction go by. Dropping
/// it gives the slot back.
pub struct Session {
    slot: Arc<Slot>,
    registry: Arc<Registry>,
}

impl Session {
    /// The remote address.
    pub fn peer(&self) -> SocketAddr {
        self.slot.peer
    }

    /// The socket.
    pub fn stream(&self) -> &TcpStream {
        &self.slot.stream
    }

    /// The socket, shared (a framed `Conn` reads and writes through it).
    pub fn shared_stream(&self) -> Arc<TcpStream> {
        self.slot.stream.clone()
    }

    fn enter(&self, phase: Phase) {
        let (changed, idle_timeout) = {
            let mut st = self.slot.state();
            let changed = st.phase != phase;
            if phase == Phase::Busy && st.phase == Phase::Request {
                st.rank = st.rank.max(Rank::Served);
            }
            st.phase = phase;
            st.since = Instant::now();
            (changed, st.idle_timeout)
        };
        if !changed {
            return;
        }
        // While idle the watchdog is the clock; a single read may block
        // until it closes the socket. Otherwise each read has its timeout.
        let read = match phase {
            Phase::Idle => idle_timeout + Duration::from_secs(5),
            Phase::Request | Phase::Busy => self.registry.limits.io.io,
        };
        let _ = self.slot.stream.set_read_timeout(Some(read));
    }

    /// Waits for the next request on `reader`: idle until its first byte
    /// is buffered, then in the request phase. `Ok(false)` when the peer
    /// closed (or the core closed the connection) between requests.
    pub fn await_request(&self, reader: &mut impl BufRead) -> io::Result<bool> {
        self.idle();
        if reader.fill_buf()?.is_empty() {
            return Ok(false);
        }
        self.request();
        Ok(true)
    }

    /// Waiting for the next request: the idle timeout applies.
    pub fn idle(&self) {
        self.enter(Phase::Idle);
    }

    /// A request has begun: all of it must arrive within the request timeout.
    pub fn request(&self) {
        self.enter(Phase::Request);
    }

    /// Working on a complete request: only socket timeouts apply, and the
    /// connection is not evicted. The first `busy` after a request marks the
    /// connection as one that has completed a request.
    pub fn busy(&self) {
        self.enter(Phase::Busy);
    }

    /// Sets this connection's idle timeout (long-lived links that send
    /// keep-alives use a longer one).
    pub fn set_idle_timeout(&self, timeout: Duration) {
        self.slot.state().idle_timeout = timeout;
    }

    /// Marks a long-lived link the daemon depends on: it is evicted only
    /// after every unprotected connection.
    pub fn protect(&self) {
        self.slot.state().rank = Rank::Protected;
    }

    /// True once the core has closed this connection (deadline, eviction,
    /// shutdown); its I/O fails from then on.
    pub fn is_closed(&self) -> bool {
        self.slot.state().closed
    }

    /// The limits of the server this connection belongs to.
    pub fn limits(&self) -> &Limits {
        &self.registry.limits
    }

    /// Counts this connection in `class` from now on (until it ends). When
    /// the class is full, the member that has waited longest for its next
    /// request is dropped for it (or else the one stalled longest), with a
    /// line on stderr: so a class's cap never locks a newcomer out.
    pub fn join_class(&self, class: ConnClass) {
        self.registry.join_class(&self.slot, class);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.registry.release(self.slot.id);
        let _ = self.slot.stream.shutdown(SockShutdown::Both);
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.slot.peer)
            .finish()
    }
}

/// A bound, not yet serving, server.
pub(crate) struct Server {
    listener: TcpListener,
    local: SocketAddr,
    shutdown: Arc<Shutdown>,
    registry: Arc<Registry>,
}

impl Server {
    /// Installs the Ctrl-C / SIGTERM handler (once per process), then binds
    /// `addr`. Call [`Server::announce`] once the daemon is ready.
    pub(crate) fn start(addr: &str, limits: Limits) -> Result<Server> {
        Server::bind(addr, limits, Shutdown::install()?)
    }

    /// Binds `addr` (`HOST:PORT`, port 0 picks one) for a server stopped by
    /// `shutdown`.
    pub(crate) fn bind(addr: &str, limits: Limits, shutdown: Arc<Shutdown>) -> Result<Server> {
        let listener = net::bind(addr)?;
        let local = listener.local_addr()?;
        Ok(Server {
            listener,
            local,
            shutdown,
            registry: Arc::new(Registry::new(limits)),
        })
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A class of connections with its own cap of `max` members, `what`
    /// naming them in log lines ("client connections"). Lines about members
    /// dropped for newcomers are throttled unless `all_lines`. Only before
    /// serving starts.
    pub(crate) fn class(&mut self, what: &'static str, max: usize, all_lines: bool) -> ConnClass {
        // The registry is shared only by the accept loop and the sessions
        // it makes, and serving takes `self`: here it is ours alone.
        let registry = Arc::get_mut(&mut self.registry).expect("registry shared before serving");
        registry.classes.push(ClassSpec {
            what,
            max: max.max(1),
            log: Throttle::new(all_lines),
        });
        ConnClass(registry.classes.len() - 1)
    }

    /// Registers the core's own metrics in `metrics`: connections open now,
    /// and those accepted, closed at a deadline, dropped for a newcomer
    /// and turned away.
    pub(crate) fn export_metrics(&self, metrics: &crate::metrics::Registry) {
        let r = self.registry.clone();
        metrics.gauge_fn(
            "connections_open",
            "Connections being served now.",
            &[],
            move || lock(&r.table).live.len() as f64,
        );
        metrics.counter_fields(&self.registry.counts, "connections_", &Counts::FIELDS);
    }

    /// The flag that stops this server.
    pub(crate) fn shutdown(&self) -> &Arc<Shutdown> {
        &self.shutdown
    }

    /// The server's limits.
    pub(crate) fn limits(&self) -> &Limits {
        &self.registry.limits
    }

    /// Prints the readiness line `listening on HOST:PORT` as the first line
    /// of stdout and flushes it; scripts and tests wait on it.
    pub(crate) fn announce(&self) -> Result<SocketAddr> {
        let mut out = io::stdout().lock();
        writeln!(out, "listening on {}", self.local).doing(|| "writing the readiness line")?;
        out.flush().doing(|| "writing the readiness line")?;
        Ok(self.local)
    }

    /// Serves each connection on a thread of its own, at most `max_conns`
    /// at once, until shutdown. Returns once the accept loop has stopped;
    /// connections still open are served on until the process exits (a
    /// leaving supernode still answers on them).
    pub(crate) fn serve<H>(self, handler: H) -> Result<()>
    where
        H: Fn(Session) + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        self.accept_loop(move |session| handler(session))
    }

    /// Serves with a fixed pool of `pool.workers` threads: a connection's
    /// thread reads one complete request with `read` (under the request
    /// deadline), then queues it; a worker takes it from the bounded queue
    /// and runs `work`. A slow or silent client only ever holds a reader,
    /// never a worker.
    pub(crate) fn serve_pool<T, R, W>(self, pool: Pool, read: R, work: W) -> Result<()>
    where
        T: Send + 'static,
        R: Fn(&Session) -> Option<T> + Send + Sync + 'static,
        W: Fn(Session, T) + Send + Sync + 'static,
    {
        let (tx, rx) = mpsc::sync_channel::<(Session, T)>(pool.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let work = Arc::new(work);
        let mut workers = Vec::new();
        for i in 0..pool.workers.max(1) {
            let rx = rx.clone();
            let work = work.clone();
            let spawned = thread::Builder::new()
                .name(format!("worker {i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = lock(&rx).recv();
                        match job {
                            Ok((session, req)) => work(session, req),
                            Err(_) => return,
                        }
                    }
                })
                .doing(|| "starting the worker pool")?;
            workers.push(spawned);
        }
        let registry = self.registry.clone();
        let served = self.accept_loop(move |session| {
            if let Some(req) = read(&session) {
                session.busy();
                // Fails only once the workers are gone (shutdown).
                let _ = tx.send((session, req));
            }
        });
        // The accept loop's handler (and with it the last sender) is gone
        // once every reader has finished; the workers then drain and stop.
        registry.close_waiting();
        for w in workers {
            let _ = w.join();
        }
        served
    }

    fn accept_loop<H>(self, handler: H) -> Result<()>
    where
        H: Fn(Session) + Send + Sync + 'static,
    {
        let Server {
            listener,
            local,
            shutdown,
            registry,
        } = self;
        shutdown.wake_on(&listener)?;
        let watchdog = {
            let registry = registry.clone();
            let shutdown = shutdown.clone();
            thread::Builder::new()
                .name("watchdog".into())
                .spawn(move || {
                    while !shutdown.wait(WATCH_EVERY) {
                        registry.expire(Instant::now());
                    }
                })
                .doing(|| "starting the watchdog")?
        };
        let handler = Arc::new(handler);
        loop {
            if !registry.thread_started(&shutdown) {
                break;
            }
            let guard = ThreadGuard(registry.clone());
            let accepted = listener.accept();
            if shutdown.is_triggered() {
                break;
            }
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    registry.note(&format!("accept on {local}: {}", describe_io(&e)));
                    // Out of descriptors or similar: back off instead of spinning.
                    if shutdown.wait(Duration::from_millis(100)) {
                        break;
                    }
                    continue;
                }
            };
            if let Err(e) = net::configure(&stream, &registry.limits.io) {
                registry.note(&format!("{peer}: {}", describe_io(&e)));
                continue;
            }
            let Some(slot) = registry.admit(stream, peer) else {
                bump(&registry.counts.turned_away);
                registry.note(&format!(
                    "{peer}: turned away: all {} connections are busy",
                    registry.limits.max_conns
                ));
                continue;
            };
            bump(&registry.counts.accepted);
            let session = Session {
                slot,
                registry: registry.clone(),
            };
            let handler = handler.clone();
            let spawned = thread::Builder::new()
                .name(format!("conn {peer}"))
                .spawn(move || {
                    let _guard = guard;
                    handler(session);
                });
            if let Err(e) = spawned {
                registry.note(&format!("{peer}: cannot start a thread: {e}"));
            }
        }
        drop(listener);
        let _ = watchdog.join();
        Ok(())
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local", &self.local)
            .finish()
    }
}

/// Lowers the calling thread's CPU priority to `nice` (0 to 19; Linux
/// only, a no-op elsewhere): for background work such as a supernode's
/// synchronizer, so that on a busy machine the clients being served get
/// the CPU first. A refusal is harmless and ignored.
pub(crate) fn background_priority(nice: i32) {
    // On Linux, PRIO_PROCESS with a thread id sets that one thread's nice
    // value (elsewhere it would be the whole process's).
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        let _ = rustix::process::setpriority_process(Some(tid), nice.clamp(0, 19));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read};

    fn limits(max: usize) -> Limits {
        Limits {
            max_conns: max,
            request_timeout: Duration::from_millis(600),
            idle_timeout: Duration::from_millis(600),
            io: Timeouts::secs(5),
        }
    }

    /// An echo server: each line in, the same line out.
    fn echo(max: usize) -> (SocketAddr, Arc<Shutdown>, thread::JoinHandle<Result<()>>) {
        let shutdown = Shutdown::new();
        let server = Server::bind("127.0.0.1:0", limits(max), shutdown.clone()).unwrap();
        let addr = server.local_addr();
        let handle = thread::spawn(move || {
            server.serve(|session| {
                let mut r = BufReader::new(session.stream());
                loop {
                    if !session.await_request(&mut r).unwrap_or(false) {
                        return;
                    }
                    let mut line = String::new();
                    if r.read_line(&mut line).is_err() || !line.ends_with('\n') {
                        return;
                    }
                    session.busy();
                    if session.stream().write_all(line.as_bytes()).is_err() {
                        return;
                    }
                }
            })
        });
        (addr, shutdown, handle)
    }

    fn ask(addr: SocketAddr, line: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(line.as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        let mut back = String::new();
        r.read_line(&mut back).unwrap();
        back
    }

    #[test]
    fn a_full_server_drops_the_longest_idle_for_a_newcomer() {
        let (addr, shutdown, handle) = echo(4);
        let mut silent: Vec<TcpStream> =
            (0..10).map(|_| TcpStream::connect(addr).unwrap()).collect();
        assert_eq!(ask(addr, "hello\n"), "hello\n");
        // The oldest silent ones were dropped: their reads see EOF.
        let mut b = [0u8; 1];
        silent[0]
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(silent[0].read(&mut b).unwrap_or(0), 0);
        shutdown.trigger();
        handle.join().unwrap().unwrap();
    }

    #[test]
    fn a_full_class_drops_its_longest_idle_member_and_no_one_else() {
        let shutdown = Shutdown::new();
        let mut limits = limits(64);
        limits.idle_timeout = Duration::from_secs(60);
        let mut server = Server::bind("127.0.0.1:0", limits, shutdown.clone()).unwrap();
        let class = server.class("test members", 2, true);
        let addr = server.local_addr();
        let (joined, has_joined) = mpsc::channel::<()>();
        let joined = Mutex::new(joined);
        let handle = thread::spawn(move || {
            server.serve(move |session| {
                let mut r = BufReader::new(session.stream());
                // A line saying "member" joins the class; then idle.
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    return;
                }
                if line == "member\n" {
                    session.join_class(class);
                }
                // Idle before the test opens the next connection.
                session.idle();
                let _ = lock(&joined).send(());
                let _ = session.await_request(&mut r);
            })
        });
        let open = |line: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(line.as_bytes()).unwrap();
            has_joined.recv_timeout(Duration::from_secs(10)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        };
        let mut first = open("member\n");
        let mut other = open("not a member\n");
        let mut second = open("member\n");
        let _third = open("member\n");
        let mut b = [0u8; 1];
        // The first member (idle longest) was dropped for the third...
        assert_eq!(first.read(&mut b).unwrap_or(0), 0);
        // ...and neither the second nor a connection outside the class was.
        for s in [&mut second, &mut other] {
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let err = s.read(&mut b).expect_err("still open, nothing to read");
            assert!(matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ));
        }
        shutdown.trigger();
        handle.join().unwrap().unwrap();
    }

    #[test]
    fn a_request_trickling_in_is_cut_at_the_deadline() {
        let (addr, shutdown, handle) = echo(8);
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let started = Instant::now();
        let mut b = [0u8; 1];
        // One byte every 100 ms never completes a line; each byte is progress
        // for a per-read timeout, but not for the whole-request deadline.
        loop {
            if s.write_all(b"x").is_err() {
                break;
            }
            match s.peek(&mut b) {
                Ok(0) => break,
                Ok(_) => panic!("an answer to half a line"),
                Err(_) => {}
            }
            assert!(started.elapsed() < Duration::from_secs(8), "never cut");
        }
        assert!(started.elapsed() >= Duration::from_millis(500));
        assert_eq!(ask(addr, "still here\n"), "still here\n");
        shutdown.trigger();
        handle.join().unwrap().unwrap();
    }

    #[test]
    fn busy_connections_are_not_evicted_and_a_newcomer_is_turned_away() {
        let shutdown = Shutdown::new();
        let server = Server::bind("127.0.0.1:0", limits(1), shutdown.clone()).unwrap();
        let addr = server.local_addr();
        let (entered, is_busy) = mpsc::channel::<()>();
        let (release, released) = mpsc::channel::<()>();
        let released = Mutex::new(released);
        let handle = thread::spawn(move || {
            server.serve(move |session| {
                session.busy();
                let _ = entered.send(());
                let _ = lock(&released).recv_timeout(Duration::from_secs(20));
                let _ = session.stream().write_all(b"done\n");
            })
        });
        let mut first = TcpStream::connect(addr).unwrap();
        is_busy.recv().unwrap();
        let mut second = TcpStream::connect(addr).unwrap();
        second
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut b = [0u8; 8];
        assert_eq!(second.read(&mut b).unwrap_or(0), 0, "turned away");
        release.send(()).unwrap();
        first
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut back = String::new();
        BufReader::new(&mut first).read_line(&mut back).unwrap();
        assert_eq!(back, "done\n");
        shutdown.trigger();
        handle.join().unwrap().unwrap();
    }

    #[test]
    fn the_pool_runs_complete_requests_on_its_workers() {
        let shutdown = Shutdown::new();
        let server = Server::bind("127.0.0.1:0", limits(64), shutdown.clone()).unwrap();
        let addr = server.local_addr();
        let handle = thread::spawn(move || {
            server.serve_pool(
                Pool {
                    workers: 2,
                    queue: 4,
                },
                |session| {
                    let mut line = String::new();
                    BufReader::new(session.stream()).read_line(&mut line).ok()?;
                    Some(line)
                },
                |session, line| {
                    let name = thread::current().name().unwrap_or("").to_string();
                    let _ = session
                        .stream()
                        .write_all(format!("{name}: {line}").as_bytes());
                },
            )
        });
        let clients: Vec<_> = (0..16)
            .map(|i| thread::spawn(move || ask(addr, &format!("{i}\n"))))
            .collect();
        for (i, c) in clients.into_iter().enumerate() {
            let back = c.join().unwrap();
            assert!(back.starts_with("worker "), "{back}");
            assert!(back.ends_with(&format!(": {i}\n")), "{back}");
        }
        shutdown.trigger();
        handle.join().unwrap().unwrap();
    }

    #[test]
    fn idle_connections_are_closed_after_the_idle_timeout() {
        let (addr, shutdown, handle) = echo(8);
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"one\n").unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, "one\n");
        line.clear();
        assert_eq!(r.read_line(&mut line).unwrap_or(0), 0, "closed when idle");
        shutdown.trigger();
        handle.join().unwrap().unwrap();
    }
}
