//! The synchronizer: every round, each shared file whose responsible
//! supernode is another one is pushed to it (unless it has it already),
//! one connection per peer per round. The leave's last sync is one more round.

use indicatif::ProgressBar;

use super::watch::Kind;
use std::collections::HashMap;
use std::time::Duration;

use super::Node;
use super::control::Lookup;
use crate::dht::proto::{SUPER_PROTOCOL, SuperRequest, SuperResponse};
use crate::error::Result;
use crate::frame::Conn;
use crate::name::FileName;
use crate::shutdown::Shutdown;
use crate::transfer;

/// Nice value of the synchronizer thread: copies between supernodes are
/// background work and yield the CPU to clients' downloads and uploads.
const SYNC_NICE: i32 = 10;

/// While a client download is being served, a copy sends one piece of
/// this size at most every `YIELD_WAIT`: it keeps its connection alive
/// (well within any read timeout) and leaves the CPU and the bandwidth to
/// the client. Once no download is served, it goes on at full speed.
const YIELD_PIECE: u64 = 1 << 20;
const YIELD_WAIT: Duration = Duration::from_millis(100);

/// Before each file, a copy waits this long at most for the downloads
/// being served to end: a file being downloaded for the first time is
/// hashed by the download, and the copy then finds its digest cached.
const HOLD_OFF: Duration = Duration::from_secs(1);

/// Runs a sync round every `interval` until shutdown. Heartbeats to the
/// index are the control thread's business, so a long round is harmless.
/// (The leave's last round runs at full priority on the main thread.)
pub(super) fn synchronizer(node: &Node, shutdown: &Shutdown, interval: Duration) {
    crate::server::background_priority(SYNC_NICE);
    loop {
        sync_round(node, Some(shutdown));
        if shutdown.wait(interval) {
            return;
        }
    }
}

/// What a sync round did.
#[derive(Debug, Default)]
pub(super) struct SyncReport {
    /// Files that could not be placed (or the round could not run).
    pub(super) failed: usize,
}

/// Copies every file whose responsible supernode is another one to it.
/// Stops early when `stop` (the shutdown flag) is set.
pub(super) fn sync_round(node: &Node, stop: Option<&Shutdown>) -> SyncReport {
    let mut report = SyncReport::default();
    let names = match node.repo.scan() {
        Ok(n) => n,
        Err(e) => {
            crate::diag!("sync: {e}");
            report.failed += 1;
            return report;
        }
    };
    let me = node.control.me();
    let mut peers: HashMap<String, Conn> = HashMap::new();
    let mut lookup: Option<Lookup> = None;
    let mut elsewhere = 0;
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
        elsewhere += 1;
        if let Err(e) = push(node, &mut peers, &owner, name) {
            crate::diag!("sync: sending {name} to {owner}: {e}");
            peers.remove(&owner);
            report.failed += 1;
        }
    }
    node.detail(format_args!(
        "sync: {} file(s), {elsewhere} owned by other supernodes, {} failed",
        names.len(),
        report.failed
    ));
    node.watch.round(names.len(), elsewhere, report.failed);
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
    node.serving.wait_quiet(HOLD_OFF);
    let Some(out) = node.repo.open_file(name)? else {
        // Deleted since the scan: nothing to place.
        return Ok(());
    };
    let digest = node.repo.digest(&out)?;
    if !peers.contains_key(owner) {
        let mut conn = Conn::open(owner, &node.timeouts, SUPER_PROTOCOL)?;
        // Named in the owner's log by the address the ring knows us by.
        conn.queue(&SuperRequest::Member {
            addr: node.control.me(),
        })?;
        peers.insert(owner.to_string(), conn);
    }
    let Some(conn) = peers.get_mut(owner) else {
        return Ok(());
    };
    let upload = SuperRequest::Upload {
        name: name.clone(),
        size: out.len,
        digest,
    };
    let ready = conn.call(&upload, "Ready or AlreadyExists", |r| match r {
        SuperResponse::Ready => Ok(true),
        SuperResponse::AlreadyExists => Ok(false),
        other => Err(other),
    })?;
    if !ready {
        return Ok(());
    }
    node.note(format_args!("[balance] sending {name} to {owner}"));
    let bar = ProgressBar::hidden();
    let ticket = node
        .watch
        .begin(Kind::Sync, owner, name, out.len, Some(bar.clone()));
    let mut started = 0u64;
    let outcome = transfer::send_body_paced(&out.file, out.len, conn.writer(), YIELD_PIECE, || {
        // Each piece is counted as it goes out.
        bar.set_position(started.min(out.len));
        started += YIELD_PIECE;
        node.serving.wait_quiet(YIELD_WAIT);
    })
    .and_then(|()| {
        conn.answer("Stored or AlreadyExists", |r| match r {
            SuperResponse::Stored | SuperResponse::AlreadyExists => Ok(()),
            other => Err(other),
        })
    });
    ticket.end(outcome.is_ok());
    outcome
}
