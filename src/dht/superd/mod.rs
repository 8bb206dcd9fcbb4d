//! The supernode (`p2p-superd`): a file repository over one local folder.
//! It keeps a control connection to the index, serves `List` / `Upload` /
//! `Download`, runs the synchronizer that copies each file to the supernode
//! responsible for it, and leaves gracefully (leave, last sync, disconnect).
//!
//! One file per thread of a supernode:
//! - [`control`]: the "index-link" thread that alone owns the control
//!   connection (join, heartbeats, leave, disconnect), and `Lookup`, the
//!   short-lived query connections, so a slow index delays only the
//!   request that asked;
//! - [`sync`]: the synchronizer thread, and the leave's last round;
//! - [`serve`]: the server core's connection threads, serving clients and
//!   other supernodes' synchronizers;
//! - [`arrivals`]: uploads in flight, shared by the connection threads and
//!   the leave;
//! - [`foreground`]: downloads being served, which the synchronizer's
//!   copies hold back for;
//! - [`repo`]: the repository folder (shared names, digest cache).
//!
//! Locks: `Control::me`, `DigestCache::map`, `Arrivals::state` and
//! `Foreground::active` guard
//! small values and are never held across I/O or while logging. No code
//! holds two of them at once.

mod arrivals;
mod control;
mod foreground;
mod repo;
mod serve;
mod sync;
mod watch;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use crate::error::{Error, Result, ResultExt};
use crate::log::Level;
use crate::net::{self, Timeouts};
use crate::server::{Limits, Server};
use arrivals::Arrivals;
use control::{Control, Lookup};
use foreground::Foreground;
use repo::Repo;
use watch::{SuperSite, Watch};

use crate::events::Events;
use crate::metrics::Registry;

/// Default index address of `p2p-superd`.
pub(crate) const DEFAULT_INDEX: &str = "localhost:6110";
/// Default listening address of `p2p-superd`: every interface, a port the
/// system picks (printed on the `listening on` line).
pub(crate) const DEFAULT_LISTEN: &str = "0.0.0.0:0";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How a supernode runs.
#[derive(Debug, Clone)]
pub(crate) struct Options {
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
    /// What to log: joins, transfers and leaves unless quiet; each request
    /// and sync round if verbose.
    pub level: Level,
    /// Serve a live view at this address (`--http`).
    pub http: Option<String>,
}

/// A running supernode's shared state.
struct Node {
    repo: Repo,
    control: Control,
    incoming: Arrivals,
    serving: Foreground,
    timeouts: Timeouts,
    level: Level,
    /// Transfers and sync rounds, for the metrics and the live view.
    watch: Watch,
}

impl Node {
    /// Logs an event (a join, a transfer, a leave), unless quiet.
    fn note(&self, line: std::fmt::Arguments<'_>) {
        if self.level >= Level::Normal {
            crate::event!("{line}");
        }
    }

    /// Logs one step (a request, a sync round), if verbose.
    fn detail(&self, line: std::fmt::Arguments<'_>) {
        if self.level == Level::Verbose {
            crate::event!("{line}");
        }
    }

    /// A fresh query connection to the index.
    fn lookup(&self) -> Result<Lookup> {
        Lookup::open(&self.control.addr, &self.timeouts)
    }
}

/// Runs a supernode until Ctrl-C or SIGTERM, then leaves gracefully:
/// joins the ring, announces the server, serves and synchronizes until
/// shutdown, then leaves the ring, makes a last sync and disconnects.
pub(crate) fn run(opts: Options) -> Result<()> {
    let server = Server::start(&opts.listen, opts.limits)?;
    let repo = Repo::open(&opts.repo)?;
    let timeouts = opts.limits.io;
    let port = server.local_addr().port();
    let control =
        Control::join(&opts.index, port, timeouts, opts.heartbeat).map_err(|e| match e.root() {
            Error::Io(_) => e.doing(format!("connecting to index {}", opts.index)),
            _ => e.doing(format!("joining index {}", opts.index)),
        })?;
    server.announce()?;
    let metrics = Registry::new();
    let events = Events::new();
    server.export_metrics(&metrics);
    let node = Arc::new(Node {
        repo,
        control,
        incoming: Arrivals::default(),
        serving: Foreground::default(),
        timeouts,
        level: opts.level,
        watch: Watch::new(&metrics, events.clone()),
    });
    {
        let node = node.clone();
        metrics.gauge_fn(
            "superd_repo_files",
            "Files this supernode shares.",
            &[],
            move || node.repo.scan().map_or(0, |n| n.len()) as f64,
        );
    }
    crate::view::serve_if(opts.http.as_deref(), &server, metrics, events, || {
        Arc::new(SuperSite { node: node.clone() })
    })?;
    node.note(format_args!("joined the ring as {}", node.control.me()));
    if let Ok(me) = node.control.me().parse::<std::net::SocketAddr>()
        && let Some(why) = net::unreachable_listen(server.local_addr(), me.ip())
    {
        crate::diag!("warning: {why} (use --listen 0.0.0.0:{})", me.port());
    }

    let shutdown = server.shutdown().clone();
    let syncer = {
        let node = node.clone();
        let shutdown = shutdown.clone();
        let interval = opts.sync_interval;
        thread::Builder::new()
            .name("synchronizer".into())
            .spawn(move || sync::synchronizer(&node, &shutdown, interval))
            .doing(|| "starting the synchronizer")?
    };

    let served = {
        let node = node.clone();
        let shutdown = shutdown.clone();
        server.serve(move |session| serve::handle(&node, &shutdown, session))
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
    let via = || format!("leaving the ring via index {}", node.control.addr);
    // New uploads have been refused since the accept loop stopped.
    node.control.leave().doing(via)?;
    node.note(format_args!("left the ring; final sync"));
    let idle = node.incoming.wait_idle(node.timeouts.io);
    let late = node.incoming.seal();
    if !idle && late > 0 {
        crate::diag!(
            "{late} upload(s) still arriving after {:?} will be refused",
            node.timeouts.io
        );
    }
    let report = sync::sync_round(node, None);
    node.control.disconnect().doing(via)?;
    if report.failed > 0 {
        return Err(Error::Unfinished(format!(
            "final sync: {} file(s) could not be placed on their supernode",
            report.failed
        )));
    }
    node.note(format_args!("disconnected"));
    Ok(())
}
