//! The file side of a peer: the listener that serves the regular,
//! non-hidden files of its share folder to other peers (GET_FILE, on the
//! server core), as the course's client serves its folder, and the client
//! that fetches one from another peer into a temporary-then-renamed file.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use indicatif::ProgressBar;

use super::view::{Answered, Dir, watch};
use super::{DATETIME_GRACE, Options};
use crate::error::{Error, Result};
use crate::name::FileName;
use crate::nap::wire::{self, GetFile, get_file};
use crate::net::{self, SharedStream, Timeouts};
use crate::server::{Limits, Server, Session};
use crate::shutdown::Shutdown;
use crate::transfer::{self, TempFile};

/// A served file goes out this many bytes per sendfile call, so the view
/// can tell how far it got.
const SEND_PIECE: u64 = 1 << 20;

/// The files this peer published, by name (the view lists them); the
/// listener serves any regular, non-hidden file of the folder.
pub(super) type Published = Arc<Mutex<BTreeSet<FileName>>>;

/// The running listener.
pub(super) struct Listener {
    pub(super) port: u16,
    shutdown: Arc<Shutdown>,
    thread: JoinHandle<Result<()>>,
}

impl Listener {
    pub(super) fn start(opts: &Options, published: Published) -> Result<Listener> {
        let shutdown = Shutdown::new();
        let limits = Limits {
            io: opts.timeouts,
            ..Limits::default()
        };
        let server = Server::bind(
            &net::host_port(&opts.listen_ip.to_string(), 0),
            limits,
            shutdown.clone(),
        )?;
        let port = server.local_addr().port();
        watch().serving(&published);
        let share = opts.share.clone();
        let thread = std::thread::Builder::new()
            .name("listener".into())
            .spawn(move || server.serve(move |s| serve_get(&s, &share)))
            .map_err(|e| Error::start("the listener", e))?;
        Ok(Listener {
            port,
            shutdown,
            thread,
        })
    }

    pub(super) fn stop(self) {
        self.shutdown.trigger();
        let _ = self.thread.join();
    }
}

/// Serves one GET_FILE request on the listener.
fn serve_get(session: &Session, share: &Path) {
    let peer = session.peer();
    let mut r = BufReader::new(session.stream());
    let name = match wire::read_get_file_name(&mut r) {
        Ok(name) => name,
        Err(e) => {
            if !e.is_disconnect() && !matches!(e, Error::Closed) {
                crate::diag!("listener: {peer}: {e}");
            }
            return;
        }
    };
    // The date-time may follow; wait for it only briefly.
    let _ = session.stream().set_read_timeout(Some(DATETIME_GRACE));
    if let Err(e) = wire::read_get_datetime(&mut r) {
        crate::diag!("listener: {peer}: {e}");
        return;
    }
    let _ = session
        .stream()
        .set_read_timeout(Some(session.limits().io.io));
    session.busy();
    let code = match name {
        Err(_) => get_file::FAIL,
        Ok(name) => match open_shared(share, name.as_str()) {
            Ok((file, len)) => {
                watch().answered(Answered::Ok);
                let ticket =
                    watch().begin(Dir::Out, &peer.to_string(), name.as_str(), Some(len), None);
                let mut w = BufWriter::new(SharedStream::new(session.shared_stream()));
                // Sent a MiB at a time, so the view sees it go.
                let mut pieces = 0u64;
                let sent = w.write_all(b"0\0").map_err(Error::from).and_then(|()| {
                    transfer::send_body_paced(&file, len, &mut w, SEND_PIECE, || {
                        ticket
                            .done
                            .store((pieces * SEND_PIECE).min(len), Ordering::Relaxed);
                        pieces += 1;
                    })
                });
                if sent.is_ok() {
                    ticket.done.store(len, Ordering::Relaxed);
                }
                watch().end(ticket, sent.is_ok());
                match sent {
                    // A date-time that came after the grace period is still
                    // unread: read it before closing, so the close does not
                    // reset the connection under the file's last bytes.
                    Ok(()) => crate::nap::server::drain(session.stream()),
                    Err(e) => crate::diag!("listener: {peer}: sending {name}: {e}"),
                }
                return;
            }
            Err(code) => {
                watch().answered(if code == get_file::NO_FILE {
                    Answered::NoFile
                } else {
                    Answered::Fail
                });
                code
            }
        },
    };
    let mut answer = Vec::new();
    wire::put_code(&mut answer, code, wire::ResultFormat::Text);
    if session.stream().write_all(&answer).is_ok() {
        crate::nap::server::drain(session.stream());
    }
}

/// Why `name` cannot be served from `share`: it must be a plain,
/// non-hidden name of a regular file inside the folder (a symbolic link
/// is followed only if it stays inside).
pub(super) fn servable(share: &Path, name: &str) -> std::result::Result<PathBuf, String> {
    let name = FileName::new(name).map_err(|e| e.to_string())?;
    if name.as_str().starts_with('.') {
        return Err("hidden files are not served".into());
    }
    let path = name.within(share);
    let real = path.canonicalize().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!("no such file in {}", share.display()),
        _ => crate::error::describe_io(&e),
    })?;
    let inside = share.canonicalize().is_ok_and(|s| real.starts_with(s));
    if !inside {
        return Err(format!("leads outside {}", share.display()));
    }
    if !real.is_file() {
        return Err("not a regular file".into());
    }
    Ok(real)
}

/// Opens a file of the share folder by its plain name: the file and its
/// length, or the code to answer.
fn open_shared(share: &Path, name: &str) -> std::result::Result<(File, u64), u8> {
    let path = servable(share, name).map_err(|_| get_file::NO_FILE)?;
    let file = File::open(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => get_file::NO_FILE,
        _ => get_file::FAIL,
    })?;
    let meta = file.metadata().map_err(|_| get_file::FAIL)?;
    if !meta.is_file() {
        return Err(get_file::NO_FILE);
    }
    Ok((file, meta.len()))
}

/// How a GET_FILE ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// The file is in place: this many bytes.
    Done(u64),
    NoFile,
    /// Any other answer code.
    Failed(u8),
    /// A file appeared at the local path meanwhile, and may not be replaced.
    Exists,
}

/// How a GET_FILE is done.
pub struct Fetch<'a> {
    pub timeouts: &'a Timeouts,
    /// Ctrl-C / SIGTERM: closes the connection and ends the fetch.
    pub stop: &'a Arc<Shutdown>,
    /// Replace a file already at the local path.
    pub replace: bool,
    /// Advanced by the bytes received (a hidden bar draws nothing).
    pub progress: &'a ProgressBar,
}

/// Fetches one file from the peer at `addr` into `local`. The bytes go to a
/// temporary file beside `local`, renamed onto it only once the owner has
/// closed the connection cleanly; any failure, or `stop` starting (Ctrl-C),
/// leaves nothing behind.
pub fn fetch_file(addr: &str, req: &GetFile, local: &Path, how: &Fetch<'_>) -> Result<Fetched> {
    let stop = how.stop;
    let stream: TcpStream = net::connect(addr, how.timeouts)?;
    let _closer = stop.close_on(&stream)?;
    (&stream).write_all(&req.encode())?;
    let mut r = BufReader::with_capacity(transfer::CHUNK, &stream);
    match wire::read_code(&mut r)? {
        get_file::OK => {}
        get_file::NO_FILE => return Ok(Fetched::NoFile),
        code => return Ok(Fetched::Failed(code)),
    }
    let dir = match local.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = TempFile::create_in(dir)
        .map_err(|e| Error::from(e).doing(format!("writing in {}", dir.display())))?;
    // The view reads the temporary file's length as the progress.
    let ticket = watch().begin(
        Dir::In,
        addr,
        req.file.as_str(),
        None,
        tmp.file().try_clone().ok(),
    );
    // The wire gives no length: the file ends when the owner closes. A
    // peer that never stops is cut off once it has sent more than the
    // disk can hold, before the disk is full.
    let room = transfer::free_space(dir).unwrap_or(u64::MAX);
    let copied = (|| -> Result<u64> {
        let mut got: u64 = 0;
        let mut buf = vec![0u8; transfer::CHUNK];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => return Ok(got),
                Ok(n) => {
                    how.progress.inc(n as u64);
                    n
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::from(e).doing(format!("getting {} from {addr}", req.file)));
                }
            };
            got += n as u64;
            if got > room {
                return Err(Error::local_path(
                    local,
                    format!("No space left on device: {addr} sent more than the {room} bytes free"),
                ));
            }
            tmp.file()
                .write_all(&buf[..n])
                .map_err(|e| Error::from(e).doing(format!("writing {}", local.display())))?;
        }
    })();
    if let Ok(n) = copied {
        ticket.done.store(n, Ordering::Relaxed);
    }
    let placed = copied.and_then(|size| {
        if stop.is_triggered() {
            // The connection was closed under the copy: not the whole file.
            return Err(Error::Stopped("the download".into()));
        }
        let placed = if how.replace {
            tmp.persist(local)
        } else {
            tmp.persist_new(local)
        };
        match placed {
            Ok(()) => Ok(Fetched::Done(size)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Fetched::Exists),
            Err(e) => Err(Error::from(e).doing(format!("writing {}", local.display()))),
        }
    });
    watch().end(ticket, matches!(placed, Ok(Fetched::Done(_))));
    placed
}
