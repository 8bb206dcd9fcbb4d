//! The bodies of `bt-peer torrent`, and of `bt-peer share` / `bt-peer
//! fetch` when a `.torrent` or a magnet link is given.

use std::path::Path;
use std::sync::Arc;
use std::thread;

use anyhow::Context;

use crate::cli::{Interrupted, Refused};
use crate::server::Server;

use super::engine::{self, Config, Torrent};
use super::magnet::{self, Magnet};
use super::metainfo::{self, Metainfo};
use super::storage::Storage;

pub(crate) use engine::Config as BtConfig;

/// Whether `what` (the argument of `fetch`) names a torrent or a magnet link
/// rather than a swarm of the own wire.
pub(crate) fn is_torrent(what: &str) -> bool {
    what.starts_with("magnet:?") || what.ends_with(".torrent")
}

/// `bt-peer torrent PATH -o OUT`: writes the metainfo (to a temporary
/// name, then renamed) and prints the info hash.
pub(crate) fn torrent(
    path: &Path,
    out: &Path,
    trackers: &[String],
    piece_size: Option<u32>,
) -> anyhow::Result<()> {
    let (bytes, hash) = metainfo::create(path, piece_size, trackers)
        .with_context(|| format!("making a torrent of {}", path.display()))?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!("{}bt-{hash}.torrent", crate::name::TEMP_PREFIX));
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    crate::event!("{hash}");
    Ok(())
}

/// Runs a torrent until shutdown: the listener, the announcer, and then
/// the goodbye (`stopped` to the trackers, connections closed).
fn run(t: Arc<Torrent>, server: Server) -> anyhow::Result<()> {
    let shutdown = server.shutdown().clone();
    let listener = t.spawn_listener(server)?;
    let announcer = {
        let t = t.clone();
        thread::Builder::new()
            .name("tracker".into())
            .spawn(move || t.announce_loop())?
    };
    while !shutdown.wait(std::time::Duration::from_secs(3600)) {}
    let _ = announcer.join();
    t.wait_connections();
    drop(listener);
    crate::event!(
        "leaving: {} of {} pieces, down {} bytes, up {} bytes",
        t.pieces_held(),
        t.info.piece_count(),
        t.downloaded(),
        t.uploaded()
    );
    Ok(())
}

/// `bt-peer share`: seeds `data` (the file, or the torrent's folder) of
/// the torrent at `torrent` over the BitTorrent wire.
pub(crate) fn share(torrent: &Path, data: &Path, listen: &str, cfg: Config) -> anyhow::Result<()> {
    // The torrent is read before listening: a bad one is the only line.
    let m = Metainfo::read(torrent).with_context(|| format!("reading {}", torrent.display()))?;
    let server = Server::start(listen, crate::server::Limits::default())?;
    let local = server.announce()?;
    let storage =
        Storage::existing(data, &m.info).with_context(|| format!("opening {}", data.display()))?;
    let have = storage.verify(&m.info)?;
    let good = have.iter().filter(|&&h| h).count();
    if good != have.len() {
        return Err(Refused(format!(
            "{} matches {good} of {} pieces of {}; it is not this torrent's data",
            data.display(),
            have.len(),
            torrent.display()
        ))
        .into());
    }
    if m.trackers.is_empty() {
        crate::diag!(
            "{} names no tracker: peers must find this one themselves",
            torrent.display()
        );
    }
    crate::event!("info hash {}", m.hash);
    let t = Torrent::new(
        m.info,
        m.trackers,
        storage,
        have,
        engine::new_peer_id(),
        local.port(),
        server.shutdown().clone(),
        cfg,
    );
    crate::event!("seeding {}", t.describe());
    run(t, server)
}

/// `bt-peer fetch NAME.torrent|MAGNET --out DIR`.
pub(crate) fn fetch(what: &str, out: &Path, listen: &str, cfg: Config) -> anyhow::Result<()> {
    // A torrent file is read before listening: a bad one is the only line.
    let torrent = if what.starts_with("magnet:") {
        None
    } else {
        Some(Metainfo::read(Path::new(what)).with_context(|| format!("reading {what}"))?)
    };
    let server = Server::start(listen, crate::server::Limits::default())?;
    let local = server.announce()?;
    let shutdown = server.shutdown().clone();
    let peer_id = engine::new_peer_id();
    let (info, trackers) = if let Some(m) = torrent {
        crate::event!("info hash {}", m.hash);
        (m.info, m.trackers)
    } else {
        let m = Magnet::parse(what)?;
        crate::event!("info hash {}", m.hash);
        let level = cfg.level;
        let info = magnet::fetch_info(&m, peer_id, local.port(), &cfg.timeouts, &shutdown, |l| {
            if level >= crate::log::Level::Normal {
                crate::event!("{l}");
            }
        })?;
        (info, m.trackers)
    };
    if trackers.is_empty() {
        return Err(Refused(format!("{what} names no tracker to find peers through")).into());
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (storage, complete) = Storage::open(out, &info)
        .with_context(|| format!("opening the download in {}", out.display()))?;
    // A partial copy just created holds nothing to check (reading back a
    // large sparse file only to hash zeros took seconds).
    let have = if storage.is_fresh() {
        vec![false; info.piece_count() as usize]
    } else {
        storage.verify(&info)?
    };
    let good = have.iter().filter(|&&h| h).count();
    if complete && good != have.len() {
        return Err(Refused(format!(
            "{} exists and is not this torrent's data ({good} of {} pieces match); move it away",
            engine::final_path(out, &info).display(),
            have.len()
        ))
        .into());
    }
    if good == have.len() && !complete {
        storage.finish()?;
    }
    let exit_when_done = cfg.exit_when_done;
    let t = Torrent::new(
        info,
        trackers,
        storage,
        have,
        peer_id,
        local.port(),
        shutdown.clone(),
        cfg,
    );
    crate::event!("fetching {}", t.describe());
    if good > 0 {
        crate::event!(
            "resumed {good} of {} pieces from disk",
            t.info.piece_count()
        );
    }
    if t.is_complete() {
        crate::event!("complete: {}", engine::final_path(out, &t.info).display());
        if exit_when_done {
            return Ok(());
        }
    }
    run(t.clone(), server)?;
    if !t.is_complete() {
        // Stopped before the file was complete: not what was asked for,
        // whether it was to exit or to seed once complete (exit 130, as
        // on the own wire).
        return Err(Interrupted(format!(
            "interrupted: stopped with {} of {} pieces; run again with the same --out to resume",
            t.pieces_held(),
            t.info.piece_count()
        ))
        .into());
    }
    Ok(())
}
