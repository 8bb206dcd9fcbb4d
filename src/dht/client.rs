//! The supernode clients: list a repository, download a file (following
//! redirects to the supernode responsible for it), upload a file.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;

use crate::cli;
use crate::dht::proto::{SUPER_PROTOCOL, SuperRequest, SuperResponse};
use crate::digest::{self, Digest};
use crate::error::{Error, Result};
use crate::frame::Conn;
use crate::name::FileName;
use crate::net::Timeouts;
use crate::transfer::{self, Overwrite};

/// Most redirects a download follows.
pub const MAX_REDIRECTS: usize = 4;

fn unexpected(what: &str, resp: SuperResponse) -> Error {
    match resp {
        SuperResponse::Error { message } => Error::Remote(message),
        other => Error::Protocol(format!("unexpected answer to {what}: {other:?}")),
    }
}

/// The names in the repository of the supernode at `addr`.
pub fn list(addr: &str, timeouts: &Timeouts) -> Result<Vec<FileName>> {
    let mut conn = Conn::open(addr, timeouts, SUPER_PROTOCOL)?;
    conn.send(&SuperRequest::List)?;
    let mut names = Vec::new();
    loop {
        match conn.expect::<SuperResponse>()? {
            SuperResponse::Names { names: batch } => names.extend(batch),
            SuperResponse::EndOfList => return Ok(names),
            other => return Err(unexpected("a listing", other)),
        }
    }
}

/// Where a download goes.
#[derive(Debug, Clone)]
pub enum Dest {
    /// A file, written under a temporary name and renamed once verified
    /// (replacing any file already there). A device or a pipe at that path
    /// (`/dev/null`) is written to directly instead.
    Path(PathBuf),
    /// Standard output, streamed; a bad digest is reported after the fact.
    Stdout,
}

/// How a download ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The file arrived from `from`, `size` bytes, SHA-256 verified.
    Got { from: String, size: u64 },
    /// No supernode has it: the responsible one (`at`) said not found, or
    /// the redirects went in a circle or too far.
    NotAvailable { at: String },
}

/// Downloads `name` starting at `addr`, following up to `MAX_REDIRECTS`
/// redirects (never to a supernode already asked). `on_redirect(from, to)`
/// is called before each hop; `progress(len)` makes the progress bar.
pub fn get(
    addr: &str,
    name: &FileName,
    dest: &Dest,
    timeouts: &Timeouts,
    mut on_redirect: impl FnMut(&str, &str),
    progress: impl Fn(u64) -> ProgressBar,
) -> Result<Fetched> {
    let mut at = addr.to_string();
    let mut asked: HashSet<String> = HashSet::new();
    loop {
        asked.insert(at.clone());
        let mut conn = Conn::open(&at, timeouts, SUPER_PROTOCOL)?;
        conn.send(&SuperRequest::Download { name: name.clone() })?;
        match conn.expect::<SuperResponse>()? {
            SuperResponse::File { size, sha256 } => {
                let bar = progress(size);
                match dest {
                    Dest::Path(path) if !is_special(path)? => transfer::receive_file(
                        conn.reader(),
                        size,
                        sha256,
                        path,
                        Overwrite::Replace,
                        &bar,
                    )?,
                    Dest::Path(path) => {
                        // A device or a pipe (`-o /dev/null`): write into it,
                        // never rename over it.
                        let out = OpenOptions::new().write(true).open(path)?;
                        stream_verified(conn.reader(), size, sha256, out, &bar)?;
                    }
                    Dest::Stdout => {
                        stream_verified(conn.reader(), size, sha256, cli::stdout(), &bar)?;
                    }
                }
                bar.finish_and_clear();
                return Ok(Fetched::Got { from: at, size });
            }
            SuperResponse::Redirect { addr: next } => {
                if asked.contains(&next) || asked.len() > MAX_REDIRECTS {
                    return Ok(Fetched::NotAvailable { at });
                }
                on_redirect(&at, &next);
                at = next;
            }
            SuperResponse::NotFound => return Ok(Fetched::NotAvailable { at }),
            other => return Err(unexpected("a download", other)),
        }
    }
}

/// True if `path` exists and is neither a regular file nor a folder (a
/// device or a pipe); a folder is an error.
fn is_special(path: &Path) -> Result<bool> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(Error::Local(format!("{} is a folder", path.display()))),
        Ok(m) => Ok(!m.is_file()),
        Err(_) => Ok(false),
    }
}

/// Streams a body into `out`, then checks its SHA-256 (the bytes are
/// already out by then: the error says they are bad).
fn stream_verified<R: io::Read, W: Write>(
    r: &mut R,
    size: u64,
    sha256: Digest,
    out: W,
    bar: &ProgressBar,
) -> Result<()> {
    let mut out = io::BufWriter::with_capacity(transfer::CHUNK, out);
    let actual = transfer::receive_body(r, size, &mut out, bar)?;
    if actual != sha256 {
        return Err(Error::HashMismatch {
            expected: sha256,
            actual,
        });
    }
    Ok(())
}

/// How an upload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The supernode stored the file (`size` bytes).
    Stored { size: u64 },
    /// The supernode already has a file of that name; nothing changed.
    AlreadyExists,
}

/// Uploads the local file `path` under its own name to the supernode at `addr`.
pub fn put(
    addr: &str,
    path: &Path,
    timeouts: &Timeouts,
    progress: impl Fn(u64) -> ProgressBar,
) -> Result<Put> {
    let name = FileName::from_path(path)?;
    let mut file = File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(Error::Local(format!(
            "{}: not a regular file",
            path.display()
        )));
    }
    let (sha256, size) = digest::hash_reader(&mut file)?;
    let file = File::open(path)?;
    let mut conn = Conn::open(addr, timeouts, SUPER_PROTOCOL)?;
    conn.send(&SuperRequest::Upload { name, size, sha256 })?;
    match conn.expect::<SuperResponse>()? {
        SuperResponse::Ready => {}
        SuperResponse::AlreadyExists => return Ok(Put::AlreadyExists),
        other => return Err(unexpected("an upload", other)),
    }
    let bar = progress(size);
    if bar.is_hidden() {
        // Straight to the socket, so the kernel copies (sendfile).
        transfer::send_body_to_socket(file, size, conn.writer())?;
    } else {
        let mut counted = Counted {
            inner: conn.writer(),
            bar: &bar,
        };
        transfer::send_body(file, size, &mut counted)?;
        bar.finish_and_clear();
    }
    match conn.expect::<SuperResponse>()? {
        SuperResponse::Stored => Ok(Put::Stored { size }),
        SuperResponse::AlreadyExists => Ok(Put::AlreadyExists),
        other => Err(unexpected("an upload", other)),
    }
}

/// A writer that advances a progress bar.
struct Counted<'a, W: Write> {
    inner: &'a mut W,
    bar: &'a ProgressBar,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
