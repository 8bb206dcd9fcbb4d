//! The bodies of `bt-tracker` and `bt-peer`: start-up, the lines a user
//! sees, and how each ending maps to an exit code. The only swarm file that
//! uses `anyhow`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::cli::{self, DaemonArgs, Interrupted, Level, Refused, Verbosity, ViewArgs};
use crate::events::Events;
use crate::metrics::Registry;
use crate::net::HostPort;
use crate::server::Server;

use super::client::TrackerClient;
use super::manifest::{Bitfield, Manifest, check_piece_size};
use super::peer::{Node, PeerConfig};
use super::proto::{Query, TrackerRequest, TrackerResponse};
use super::store::Store;
use super::tracker::{Limits as TrackerLimits, Tracker, TrackerConfig};
use super::tracker_view::TrackerSite;

/// Periods given on the command line are at least this long.
const MIN_PERIOD: Duration = Duration::from_millis(10);

/// `bt-tracker`'s flags.
#[derive(Debug, Clone, Args)]
pub struct TrackerArgs {
    #[command(flatten)]
    pub daemon: DaemonArgs,

    /// The period peers ping at (their --ping-interval): a member silent for
    /// 3 of them is evicted, at most 1 s later
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = cli::parse_secs)]
    pub ping_interval: Duration,

    /// Older name: evict members silent for 1.5 × SECS (ping interval SECS/2)
    #[arg(long, value_name = "SECS", value_parser = cli::parse_secs, hide = true,
          conflicts_with = "ping_interval")]
    pub cleanup_interval: Option<Duration>,

    /// Also serve BitTorrent's HTTP tracker (GET /announce, GET /scrape)
    /// at HOST:PORT, e.g. 0.0.0.0:6970 (port 0 picks a free port); peers
    /// are asked to announce every 3 ping intervals
    #[arg(long, value_name = "HOST:PORT")]
    pub announce: Option<String>,

    #[command(flatten)]
    pub verbosity: Verbosity,

    #[command(flatten)]
    pub view: ViewArgs,
}

/// `bt-tracker` from its flags.
pub fn tracker_main(a: TrackerArgs) -> anyhow::Result<()> {
    let ping = a.cleanup_interval.map_or(a.ping_interval, |c| c / 2);
    let cfg = TrackerConfig {
        ping_interval: ping.max(MIN_PERIOD),
        server: a.daemon.limits(),
        limits: TrackerLimits::default(),
        quiet: a.verbosity.level() == Level::Quiet,
        http: a.view.http.clone(),
    };
    tracker(
        &a.daemon.listen_or(TRACKER_LISTEN),
        a.announce.as_deref(),
        &cfg,
    )
}

/// `bt-peer`'s subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum PeerCmd {
    /// Share FILE: build its manifest, print the swarm id, serve until Ctrl-C
    #[command(
        after_help = "Example:\n  bt-peer share movie.mkv --tracker 127.0.0.1:6969 --upload-limit 4M"
    )]
    Share {
        /// The file to share; with --torrent, the file or folder the torrent
        /// describes; with --data, the .torrent
        file: PathBuf,
        /// Seed FILE over the BitTorrent wire as described by this .torrent
        #[arg(long, value_name = "NAME.torrent", conflicts_with = "data")]
        torrent: Option<PathBuf>,
        /// FILE is a .torrent: seed the file or folder at PATH over the
        /// BitTorrent wire
        #[arg(long, value_name = "PATH")]
        data: Option<PathBuf>,
        /// Piece size in bytes, a power of two from 16K to 16M [default: 256K,
        /// larger for files over 1 GiB]
        #[arg(long, value_name = "SIZE", value_parser = parse_piece_size)]
        piece_size: Option<u32>,
        #[command(flatten)]
        common: PeerArgs,
    },
    /// Write a BitTorrent metainfo file for a file or folder and print its
    /// info hash
    #[command(
        after_help = "Example:\n  bt-peer torrent photos/ -o photos.torrent --tracker http://127.0.0.1:6970/announce"
    )]
    Torrent {
        /// The file or folder
        path: PathBuf,
        /// Where to write the .torrent
        #[arg(short, long, value_name = "NAME.torrent")]
        output: PathBuf,
        /// An HTTP tracker's announce URL (repeat for more)
        #[arg(long = "tracker", value_name = "URL")]
        trackers: Vec<String>,
        /// Piece size in bytes, a power of two from 16K to 64M [default: 256K,
        /// larger to keep at most 4096 pieces]
        #[arg(long, value_name = "SIZE", value_parser = cli::parse_size)]
        piece_size: Option<u64>,
    },
    /// Fetch a swarm's file by name or id into --out, then seed it until
    /// Ctrl-C (or exit with --exit-when-done)
    #[command(
        after_help = "Exit status: 0 complete (or seeding a complete file stopped by Ctrl-C), \
                      1 no such swarm (or several match), 2 error, 130 interrupted before complete.\n\n\
                      Example:\n  bt-peer fetch movie.mkv --tracker 127.0.0.1:6969 --out downloads --exit-when-done\n  \
                      bt-peer fetch 3f9a0c1b2d4e... --out downloads    # the short id the tracker logs"
    )]
    Fetch {
        /// The file name, the 64-hex-digit swarm id, or a start of it (at
        /// least 4 digits) that only one swarm has; or a NAME.torrent or
        /// 'magnet:?xt=urn:btih:...' link, fetched over the BitTorrent wire
        what: String,
        /// Folder to download into (a partial download there is resumed);
        /// created if only its last part is missing
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// Exit once the file is complete instead of seeding
        #[arg(long)]
        exit_when_done: bool,
        /// Seconds between piece requests (0: as fast as peers answer)
        #[arg(long, value_name = "SECS", default_value = "0", value_parser = cli::parse_secs)]
        request_interval: Duration,
        #[command(flatten)]
        common: PeerArgs,
    },
}

/// The flags `bt-peer share` and `bt-peer fetch` share.
#[derive(Debug, Clone, Args)]
pub struct PeerArgs {
    /// The tracker, HOST:PORT
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:6969",
          value_parser = cli::parse_addr)]
    pub tracker: HostPort,
    /// Seconds between pings to the tracker
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = cli::parse_secs)]
    pub ping_interval: Duration,
    /// Seconds between piece-list reports to the tracker
    #[arg(long, value_name = "SECS", default_value = "20", value_parser = cli::parse_secs)]
    pub report_interval: Duration,
    /// Cap on total upload, bytes per second (K, M, G = 1024 multiples), e.g. 4M
    /// [default: no cap]
    #[arg(long, value_name = "RATE", value_parser = cli::parse_rate)]
    pub upload_limit: Option<u64>,
    #[command(flatten)]
    pub verbosity: Verbosity,
    #[command(flatten)]
    pub daemon: DaemonArgs,
    #[command(flatten)]
    pub view: ViewArgs,
}

impl PeerArgs {
    fn config(&self, request_interval: Duration) -> PeerConfig {
        PeerConfig {
            tracker: self.tracker.to_string(),
            limits: self.daemon.limits(),
            ping_interval: self.ping_interval.max(MIN_PERIOD),
            report_interval: self.report_interval.max(MIN_PERIOD),
            request_interval,
            upload_limit: self.upload_limit,
            level: self.verbosity.level(),
            http: self.view.http.clone(),
        }
    }

    fn bt(&self, exit_when_done: bool) -> super::bt::cmd::BtConfig {
        super::bt::cmd::BtConfig {
            timeouts: self.daemon.limits().io,
            upload_limit: self.upload_limit,
            level: self.verbosity.level(),
            exit_when_done,
        }
    }

    fn listen(&self) -> String {
        self.daemon.listen_or("0.0.0.0:0")
    }
}

/// A piece size: a size ([`cli::parse_size`]) that is a power of two from
/// 16K to 16M.
fn parse_piece_size(s: &str) -> Result<u32, String> {
    let v = cli::parse_size(s)?;
    let v = u32::try_from(v).map_err(|_| format!("{s:?} is too large"))?;
    check_piece_size(v)?;
    Ok(v)
}

/// `bt-peer` from its subcommand and flags.
pub fn peer(cmd: PeerCmd) -> anyhow::Result<()> {
    use super::bt::cmd as bt;
    match cmd {
        PeerCmd::Torrent {
            path,
            output,
            trackers,
            piece_size,
        } => {
            let piece_size = piece_size
                .map(|p| u32::try_from(p).with_context(|| format!("--piece-size {p} is too large")))
                .transpose()?;
            bt::torrent(&path, &output, &trackers, piece_size)
        }
        PeerCmd::Share {
            file,
            torrent: Some(torrent),
            common,
            ..
        } => bt::share(&torrent, &file, &common.listen(), common.bt(false)),
        PeerCmd::Share {
            file,
            data: Some(data),
            common,
            ..
        } => bt::share(&file, &data, &common.listen(), common.bt(false)),
        PeerCmd::Share {
            file,
            piece_size,
            common,
            ..
        } => share(
            &file,
            piece_size,
            &common.listen(),
            common.config(Duration::ZERO),
        ),
        PeerCmd::Fetch {
            what,
            out,
            exit_when_done,
            common,
            ..
        } if bt::is_torrent(&what) => {
            bt::fetch(&what, &out, &common.listen(), common.bt(exit_when_done))
        }
        PeerCmd::Fetch {
            what,
            out,
            exit_when_done,
            request_interval,
            common,
        } => {
            let when_done = if exit_when_done {
                WhenDone::Exit
            } else {
                WhenDone::Seed
            };
            fetch(
                &what,
                &out,
                when_done,
                &common.listen(),
                common.config(request_interval),
            )
        }
    }
}

/// The tracker's default address: every interface, port 6969.
pub const TRACKER_LISTEN: &str = "0.0.0.0:6969";

/// `bt-tracker`: binds, prints the readiness line and serves until Ctrl-C
/// / SIGTERM.
/// With `announce`, also serves BitTorrent's HTTP `/announce` and
/// `/scrape` there, printing `announce on http://HOST:PORT/announce`.
pub fn tracker(listen: &str, announce: Option<&str>, cfg: &TrackerConfig) -> anyhow::Result<()> {
    // The handler goes in before the readiness line, so a SIGTERM sent as
    // soon as that line appears still stops the tracker cleanly.
    let server = Server::start(listen, cfg.server)?;
    let local = server.announce()?;
    if local.ip().is_loopback() {
        crate::diag!(
            "listening on {local} only: peers on other hosts cannot reach this tracker; \
             --listen 0.0.0.0:{} serves every interface",
            local.port()
        );
    }
    if let Some(addr) = announce {
        super::bt::tracker::start(
            addr,
            cfg.server,
            server.shutdown().clone(),
            cfg.ping_interval * 3,
            cfg.quiet,
        )
        .with_context(|| format!("announce listener on {addr}"))?;
    }
    let metrics = Registry::new();
    let events = Events::new();
    server.export_metrics(&metrics);
    let tracker = Arc::new(Tracker::watched(
        cfg.limits,
        cfg.quiet,
        &metrics,
        events.clone(),
    ));
    tracker.export_metrics(&metrics);
    crate::view::serve_if(cfg.http.as_deref(), &server, metrics, events, || {
        Arc::new(TrackerSite {
            tracker: tracker.clone(),
        })
    })?;
    tracker.serve(server, cfg)?;
    Ok(())
}

/// Why peers on other hosts could not fetch from a peer listening on
/// `local` that reaches its tracker at `tracker`, naming the flag that
/// fixes it; `None` when the tracker can hand out a reachable address.
pub fn unreachable_because(local: SocketAddr, tracker: &str) -> Option<String> {
    if local.ip().is_unspecified() {
        // The tracker hands a member that registered over loopback to
        // other hosts at the address they reached it at: every interface
        // accepts it.
        return None;
    }
    // A tracker on loopback means a swarm on this host alone.
    let over_loopback = tracker
        .to_socket_addrs()
        .map(|mut a| a.any(|a| a.ip().is_loopback()))
        .unwrap_or(false);
    match (local.ip().is_loopback(), over_loopback) {
        (true, false) => Some(format!(
            "listening on {local} only: peers on other hosts cannot fetch from this one; \
             --listen 0.0.0.0:0 (the default) or an address of this host they can reach fixes it"
        )),
        (false, true) => Some(format!(
            "listening on {local} only while the tracker is reached over loopback ({tracker}): \
             the tracker hands other hosts its own address with this port, which {} may not \
             be; --tracker {} (the tracker at this address) or --listen 0.0.0.0:{} fixes it",
            local.ip(),
            crate::net::host_port(&local.ip().to_string(), tracker_port(tracker)),
            local.port()
        )),
        _ => None,
    }
}

/// The port of a `HOST:PORT` tracker address (6969 if it has none).
fn tracker_port(tracker: &str) -> u16 {
    tracker
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(6969)
}

/// `bt-peer share`: hashes FILE, serves it and keeps the tracker informed
/// until Ctrl-C / SIGTERM. Prints `swarm ID` after the readiness line.
pub fn share(
    path: &Path,
    piece_size: Option<u32>,
    listen: &str,
    cfg: PeerConfig,
) -> anyhow::Result<()> {
    // A file that is not there, or not a file, fails before the readiness
    // line: nothing is served, and a script waiting for it learns why.
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(meta.is_file(), "{}: not a regular file", path.display());
    std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    // The handler goes in before the readiness line, so a SIGTERM sent as
    // soon as that line appears still stops the peer cleanly.
    let server = Server::start(listen, cfg.limits)?;
    let shutdown = server.shutdown().clone();
    let local = server.announce()?;
    if let Some(why) = unreachable_because(local, &cfg.tracker) {
        crate::diag!("{why}");
    }
    let manifest = Manifest::from_file(path, piece_size)
        .with_context(|| format!("reading {}", path.display()))?;
    let manifest = Arc::new(manifest);
    let store = Store::shared(path, manifest.clone())?;
    let have = Bitfield::full(manifest.piece_count());
    let client = TrackerClient::new(&cfg.tracker, cfg.limits.io);
    let node = Node::new(manifest.clone(), store, have, cfg, shutdown.clone(), local);
    node.serve_view(&server)?;
    let server = node.spawn_server(server)?;
    // Register once before printing the id, so a script that waits for the
    // id can fetch at once; if the tracker is down, the loop retries.
    let registered = match node.register(&client) {
        Ok((_, me)) => {
            node.log(&format!("registered with {} as {me}", client.addr()));
            true
        }
        Err(e) => {
            node.warn(&format!("tracker {}: {e} (will retry)", client.addr()));
            false
        }
    };
    node.data(&format!("swarm {}", manifest.id()));
    node.log(&format!(
        "sharing {}: {} bytes in {} pieces of {} bytes",
        manifest.name(),
        manifest.size(),
        manifest.piece_count(),
        manifest.piece_size()
    ));
    node.announce_loop(&client, registered);
    let _ = server.join();
    Ok(())
}

/// What `fetch` does once the file is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenDone {
    /// Keep serving until Ctrl-C / SIGTERM.
    Seed,
    /// Leave the swarm and exit.
    Exit,
}

/// `bt-peer fetch`: gets the manifest from the tracker, downloads into
/// `out` (resuming from what is there), then seeds or exits.
pub fn fetch(
    what: &str,
    out: &Path,
    when_done: WhenDone,
    listen: &str,
    cfg: PeerConfig,
) -> anyhow::Result<()> {
    let query = Query::parse(what)
        .with_context(|| format!("{what:?} is neither a swarm id nor a file name"))?;
    prepare_out(out)?;
    // The handler goes in before the readiness line, so a SIGTERM sent as
    // soon as that line appears still stops the peer cleanly.
    let server = Server::start(listen, cfg.limits)?;
    let shutdown = server.shutdown().clone();
    let local = server.announce()?;
    if let Some(why) = unreachable_because(local, &cfg.tracker) {
        crate::diag!("{why}");
    }
    let client = TrackerClient::new(&cfg.tracker, cfg.limits.io);
    let lookup = client
        .call(&TrackerRequest::Lookup(query.clone()))
        .with_context(|| format!("asking tracker {} for {what}", client.addr()))?;
    let manifest = match lookup {
        TrackerResponse::Manifest(m) => m,
        TrackerResponse::NotFound => {
            return Err(Refused(format!("tracker {} knows no swarm {what}", client.addr())).into());
        }
        TrackerResponse::Ambiguous(ids) => {
            let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
            let why = match query {
                Query::Prefix(_) => format!("{what} matches several swarms"),
                _ => format!("several swarms share the name {what}"),
            };
            return Err(Refused(format!(
                "{why}; fetch one by id (or a longer start of it): {}",
                ids.join(", ")
            ))
            .into());
        }
        other => {
            return Err(crate::frame::unexpected(
                "Manifest, NotFound or Ambiguous",
                &other,
            ))
            .with_context(|| format!("tracker {}", client.addr()));
        }
    };
    anyhow::ensure!(
        query.matches(&manifest.id(), manifest.name()),
        "the tracker's manifest ({}, swarm {}) is not the one asked for ({what})",
        manifest.name(),
        manifest.id()
    );
    if let Query::Prefix(_) = query {
        crate::diag!("{what}: swarm {} ({})", manifest.id(), manifest.name());
    }
    // Room for what is still to come (a resumed download's partial file
    // holds the rest), said before a byte is written.
    let held = std::fs::metadata(super::store::partial_path(out, manifest.id()))
        .map_or(0, |m| std::os::unix::fs::MetadataExt::blocks(&m) * 512);
    crate::transfer::ensure_room(out, manifest.size().saturating_sub(held))
        .with_context(|| format!("writing {}", out.join(manifest.name().as_str()).display()))?;
    let manifest = Arc::new(manifest);
    let (store, have) = Store::open(out, manifest.clone())
        .with_context(|| format!("opening the download in {}", out.display()))?;
    let resumed = have.count();
    let node = Node::new(manifest.clone(), store, have, cfg, shutdown.clone(), local);
    node.serve_view(&server)?;
    node.log(&format!(
        "fetching {}: {} bytes in {} pieces (swarm {})",
        manifest.name(),
        manifest.size(),
        manifest.piece_count(),
        manifest.id().short()
    ));
    if resumed > 0 {
        node.log(&format!(
            "resumed {resumed} of {} pieces from disk",
            manifest.piece_count()
        ));
    }
    let server = node.spawn_server(server)?;
    let announcer = {
        let node = node.clone();
        thread::Builder::new()
            .name("tracker".into())
            .spawn(move || node.announce_loop(&client, false))?
    };
    if node.wait_complete() {
        if let Err(e) = node.finish() {
            shutdown.trigger();
            let _ = announcer.join();
            return Err(anyhow::Error::new(e).context("finishing the download"));
        }
        if when_done == WhenDone::Exit {
            shutdown.trigger();
        }
    }
    let _ = announcer.join();
    let _ = server.join();
    node.clear_bar();
    let held = node.have().count();
    if let Some(why) = node.local_failure() {
        // The pieces written are kept in the partial file for a resume.
        anyhow::bail!(
            "{why}; {held} of {} pieces kept: free space and run again with the same --out to resume",
            manifest.piece_count()
        );
    }
    if held < manifest.piece_count() {
        let why = format!(
            "stopped with {held} of {} pieces; run again with the same --out to resume",
            manifest.piece_count()
        );
        // Stopped before the file was complete: not what was asked for,
        // whether it was to exit or to seed once complete.
        return Err(Interrupted(format!("interrupted: {why}")).into());
    }
    Ok(())
}

/// The download folder: used if it exists, created (saying so) if only
/// its last part is missing; a path whose parent is missing is refused,
/// as a mistyped one more likely than a wish for a tree of new folders.
fn prepare_out(out: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(out) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => anyhow::bail!("--out {}: not a folder", out.display()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(anyhow::Error::new(e).context(format!("--out {}", out.display())));
        }
        Err(_) => {}
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(Refused(format!(
            "--out {}: {} does not exist (create it first)",
            out.display(),
            parent.display()
        ))
        .into());
    }
    std::fs::create_dir(out).with_context(|| format!("creating {}", out.display()))?;
    crate::diag!("created folder {}", out.display());
    Ok(())
}
