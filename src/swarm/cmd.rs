//! The bodies of `bt-tracker` and `bt-peer`: start-up, the lines a user
//! sees, and how each ending maps to an exit code. The only swarm file that
//! uses `anyhow`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::thread;

use anyhow::Context;

use crate::cli::Refused;
use crate::events::Events;
use crate::metrics::Registry;
use crate::server::Server;

use super::client::TrackerClient;
use super::manifest::{Bitfield, Manifest};
use super::peer::{Node, PeerConfig};
use super::proto::{Query, TrackerRequest, TrackerResponse};
use super::store::Store;
use super::tracker::{Tracker, TrackerConfig};
use super::tracker_view::TrackerSite;

/// The tracker's default address: every interface, port 6969.
pub const TRACKER_LISTEN: &str = "0.0.0.0:6969";

/// `bt-tracker`: binds, prints the readiness line and serves until Ctrl-C
/// / SIGTERM.
pub fn tracker(listen: &str, cfg: &TrackerConfig) -> anyhow::Result<()> {
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
        Ok(_) => {
            node.log(&format!("registered with {}", client.addr()));
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
            return Err(Refused(format!(
                "several swarms share the name {what}; fetch one by id: {}",
                ids.join(", ")
            ))
            .into());
        }
        other => anyhow::bail!("tracker: unexpected answer {other:?}"),
    };
    if let Query::Id(id) = query {
        anyhow::ensure!(
            manifest.id() == id,
            "the tracker's manifest hashes to {}, not {id}",
            manifest.id()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
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
    if held < manifest.piece_count() {
        let why = format!(
            "stopped with {held} of {} pieces; run again with the same --out to resume",
            manifest.piece_count()
        );
        // Asked to end once complete, it did not: a failure. A seeding
        // fetch was asked to run until stopped: it did.
        match when_done {
            WhenDone::Exit => anyhow::bail!("interrupted: {why}"),
            WhenDone::Seed => node.warn(&why),
        }
    }
    Ok(())
}
