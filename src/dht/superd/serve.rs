//! Serving one connection (a client's or another supernode's
//! synchronizer): `List`, `Upload` (received into a temporary file, renamed
//! once verified) and `Download` (the file, or a redirect to its owner).

use std::io::{self, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::Path;
use std::thread;

use indicatif::ProgressBar;

use super::Node;
use super::arrivals::Refusal;
use super::repo::{Outgoing, is_hidden};
use super::watch::Kind;
use crate::dht::proto::{LIST_BATCH, SUPER_PROTOCOL, SuperRequest, SuperResponse};
use crate::digest::FileDigest;
use crate::error::{Error, Result};
use crate::frame::Conn;
use crate::name::FileName;
use crate::net;
use crate::server::Session;
use crate::shutdown::Shutdown;
use crate::transfer::{self, Overwrite};

/// Serves one connection: any number of requests, one after another.
pub(super) fn handle(node: &Node, shutdown: &Shutdown, session: Session) {
    if shutdown.is_triggered() {
        // A late client: the supernode is leaving.
        return;
    }
    let peer = session.peer();
    let Some(mut conn) = Conn::accept_logged(session, SUPER_PROTOCOL) else {
        return;
    };
    if let Err(e) = serve_client(node, &mut conn, peer)
        && !e.is_disconnect()
    {
        crate::diag!("{peer}: {e}");
    }
}

fn serve_client(node: &Node, conn: &mut Conn, peer: SocketAddr) -> Result<()> {
    // A supernode's listening address, once it says it is one: the logs
    // and the view name it by that, else by the connection's address.
    let mut member: Option<String> = None;
    while let Some(req) = conn.next_request::<SuperRequest, SuperResponse>()? {
        match req {
            SuperRequest::Member { addr } => {
                member = Some(addr.chars().take(300).collect());
            }
            SuperRequest::List => {
                node.detail(format_args!("{peer}: list"));
                list(node, conn)?;
            }
            SuperRequest::Upload { name, size, digest } => {
                if !receive(node, conn, peer, member.as_deref(), &name, size, digest)? {
                    return Ok(());
                }
            }
            SuperRequest::Download { name } => {
                node.detail(format_args!("{peer}: download {name}"));
                download(node, conn, &name, 0)?;
            }
            SuperRequest::DownloadFrom { name, offset } => {
                node.detail(format_args!("{peer}: download {name} from byte {offset}"));
                download(node, conn, &name, offset)?;
            }
        }
    }
    Ok(())
}

fn list(node: &Node, conn: &mut Conn) -> Result<()> {
    let names = match node.repo.scan() {
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
    member: Option<&str>,
    name: &FileName,
    size: u64,
    digest: FileDigest,
) -> Result<bool> {
    if is_hidden(name) {
        conn.send(&SuperResponse::Error {
            message: format!(
                "refused name {:?}: hidden files are not shared",
                name.as_str()
            ),
        })?;
        return Ok(true);
    }
    let dest = node.repo.path_of(name);
    if std::fs::symlink_metadata(&dest).is_ok() {
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
    // A full disk: said before the body moves, and the connection goes on.
    let dir = dest.parent().unwrap_or(Path::new("."));
    if let Err(e) = transfer::ensure_room(dir, size) {
        crate::diag!("{peer}: receiving {name} into {}: {e}", dir.display());
        conn.send(&SuperResponse::Error {
            message: format!("storing {name}: {e}"),
        })?;
        return Ok(true);
    }
    conn.send(&SuperResponse::Ready)?;
    match member {
        Some(m) => node.note(format_args!("receiving {name} from supernode {m}")),
        None => node.note(format_args!("receiving {name} from {peer}")),
    }
    let bar = ProgressBar::hidden();
    let ticket = node.watch.begin(
        Kind::Upload,
        &member.map_or_else(|| peer.to_string(), str::to_string),
        name,
        size,
        Some(bar.clone()),
    );
    let received =
        transfer::receive_file(conn.reader(), size, digest, &dest, Overwrite::Never, &bar);
    ticket.end(received.is_ok());
    match received {
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
            node.repo.remember(name, digest);
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
            crate::diag!("{peer}: receiving {name} into {}: {e}", dest.display());
            // Best effort: the body may be half read, so the connection ends.
            let _ = conn.send(&SuperResponse::Error {
                message: format!("storing {name}: {e}"),
            });
            Ok(false)
        }
    }
}

/// Files at least this long that are not in the digest cache are hashed on
/// a second thread while their body is sent; shorter ones first.
const HASH_ALONGSIDE: u64 = 1 << 20;

/// Runs `send` and works out `out`'s digest: from the cache, first for a
/// short file, or on a second thread while `send` runs for a long one.
fn digest_while(
    node: &Node,
    out: &Outgoing,
    send: impl FnOnce() -> Result<()>,
) -> (Result<()>, Result<FileDigest>) {
    if out.digest.is_some() || out.len < HASH_ALONGSIDE {
        let digest = node.repo.digest(out);
        return (send(), digest);
    }
    thread::scope(|scope| {
        let hashing = scope.spawn(|| node.repo.digest(out));
        let sent = send();
        let digest = hashing
            .join()
            .unwrap_or_else(|_| Err(Error::Stopped("the hashing thread".into())));
        (sent, digest)
    })
}

/// Sends `name` from byte `offset` on, then its digest; or says where it is.
fn download(node: &Node, conn: &mut Conn, name: &FileName, offset: u64) -> Result<()> {
    let out = match node.repo.open_file(name) {
        Ok(o) => o,
        Err(e) => {
            return conn.send(&SuperResponse::Error {
                message: format!("reading {name}: {e}"),
            });
        }
    };
    if let Some(mut out) = out {
        if offset > out.len {
            return conn.send(&SuperResponse::Error {
                message: format!(
                    "cannot resume {name} at byte {offset}: it has {} bytes",
                    out.len
                ),
            });
        }
        if offset > 0 {
            out.file.seek(SeekFrom::Start(offset))?;
        }
        let _serving = node.serving.serving();
        let ticket = node.watch.begin(
            Kind::Download,
            &conn.peer_addr().to_string(),
            name,
            out.len - offset,
            None,
        );
        conn.queue(&SuperResponse::File { size: out.len })?;
        let (sent, digest) = digest_while(node, &out, || {
            transfer::send_body_to_socket(&out.file, out.len - offset, conn.writer())
        });
        // A body that did not go out whole leaves the connection out of step.
        ticket.end(sent.is_ok() && digest.is_ok());
        sent?;
        return match digest {
            Ok(digest) => conn.send(&SuperResponse::Sent { digest }),
            Err(e) => {
                crate::diag!("sending {name}: {e}");
                conn.send(&SuperResponse::Error {
                    message: format!("reading {name}: {e}"),
                })
            }
        };
    }
    if is_hidden(name) {
        // Never shared anywhere: no supernode to send the client to.
        return conn.send(&SuperResponse::NotFound);
    }
    // A query connection of its own: the control connection and the
    // synchronizer's queries never hold this up.
    let reply = match node.lookup().and_then(|mut l| l.owner(name)) {
        // An owner on this host that the index gave as loopback is reached
        // by the client at the address it reached us at.
        Ok(Some(addr)) if addr != node.control.me() => SuperResponse::Redirect {
            addr: net::reachable_addr(&addr, conn.local_addr()?.ip()),
        },
        Ok(_) => SuperResponse::NotFound,
        Err(e) => SuperResponse::Error {
            message: format!("{name} is not here and the index cannot be asked: {e}"),
        },
    };
    conn.send(&reply)
}
