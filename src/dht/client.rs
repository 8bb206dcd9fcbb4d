//! The supernode clients: list a repository, download a file (following
//! redirects to the supernode responsible for it), upload a file.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indicatif::ProgressBar;

use crate::dht::proto::{SUPER_PROTOCOL, SuperRequest, SuperResponse};
use crate::digest::{self, FileDigest, FileHasher};
use crate::error::{Error, Result, ResultExt, Stage};
use crate::frame::{self, Conn};
use crate::name::FileName;
use crate::net::Timeouts;
use crate::shutdown::Shutdown;
use crate::transfer::{self, Failure, Overwrite};

/// Most redirects a download follows.
pub(crate) const MAX_REDIRECTS: usize = 4;

/// The names in the repository of the supernode at `addr`.
pub fn list(addr: &str, timeouts: &Timeouts) -> Result<Vec<FileName>> {
    list_noting(addr, timeouts, |_| {})
}

/// `list`, telling `note` when the connection is made.
pub(crate) fn list_noting(
    addr: &str,
    timeouts: &Timeouts,
    mut note: impl FnMut(&str),
) -> Result<Vec<FileName>> {
    let mut conn = Conn::open(addr, timeouts, SUPER_PROTOCOL)?;
    note(&format!("connected to {addr}"));
    conn.send(&SuperRequest::List)?;
    let mut names = Vec::new();
    let batch = |r| match r {
        SuperResponse::Names { names } => Ok(Some(names)),
        SuperResponse::EndOfList => Ok(None),
        other => Err(other),
    };
    while let Some(more) = conn.answer("Names or EndOfList", batch)? {
        names.extend(more);
    }
    Ok(names)
}

/// Where a download goes.
#[derive(Debug, Clone)]
pub(crate) enum Dest {
    /// A file, written to its partial file (`partial_path`) and renamed
    /// once verified. A device or a pipe at that path (`/dev/null`) is
    /// written to directly instead.
    Path(PathBuf),
    /// Standard output, streamed; a bad digest is reported after the fact.
    Stdout,
}

/// How a download is done.
#[derive(Debug, Clone)]
pub(crate) struct GetOptions {
    /// Where the file goes.
    pub dest: Dest,
    /// Whether an existing file at the destination may be replaced.
    pub overwrite: Overwrite,
    /// Resume from the partial file of an earlier, interrupted download.
    pub resume: bool,
    /// Keep the partial file when the download fails or is interrupted,
    /// for a later `resume` (one that fails verification never is).
    pub keep_partial: bool,
    pub timeouts: Timeouts,
    /// When this starts, the connection is closed and the download ends
    /// like a failed one (its partial file kept or not as above).
    pub shutdown: Option<Arc<Shutdown>>,
}

/// How a download ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fetched {
    /// The file arrived from `from`, `size` bytes, its digest verified.
    Got { from: String, size: u64 },
    /// No supernode has it: the responsible one (`at`) said not found.
    NotAvailable { at: String },
    /// A file is already at the destination and may not be replaced.
    Exists { path: PathBuf },
}

/// What a download is doing, for the caller to report as it sees fit.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step<'a> {
    /// Asking the supernode at this address.
    Asking(&'a str),
    /// Connected to the supernode at this address (the handshake done).
    Connected(&'a str),
    /// Not at `from`; `to` is responsible for it.
    Redirect { from: &'a str, to: &'a str },
    /// Resuming after the `offset` bytes already in the partial file.
    Resuming { offset: u64 },
    /// The file is coming from `from`: `size` bytes in all.
    Receiving { from: &'a str, size: u64 },
    /// The whole file matched the digest its supernode sent after it.
    Verified(FileDigest),
    /// The download failed; what arrived is kept here for a later resume.
    KeptPartial(&'a Path),
}

/// Where a download to `dest` is written until it is verified: a hidden
/// file beside it, `.NAME.part`, which a resumed download continues.
pub(crate) fn partial_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map_or_else(|| "download".into(), |n| n.to_string_lossy().into_owned());
    dest.with_file_name(format!(".{name}.part"))
}

/// What is at a download's destination path.
enum Target {
    /// Nothing, or a regular file we may replace: write through the partial file.
    File,
    /// A device or a pipe: write into it.
    Special,
}

/// Downloads `name` starting at `addr`, following up to `MAX_REDIRECTS`
/// redirects (never to a supernode already asked). `step` hears what is
/// going on; `progress(len)` makes the progress bar. Errors name the local
/// path (`writing PATH: ...`) or the supernode (`getting NAME from ADDR: ...`).
pub(crate) fn get(
    addr: &str,
    name: &FileName,
    opts: &GetOptions,
    mut step: impl FnMut(Step<'_>),
    progress: impl Fn(u64) -> ProgressBar,
) -> Result<Fetched> {
    let target = match &opts.dest {
        Dest::Stdout => None,
        Dest::Path(path) => match fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                return Err(Error::local_path(path, "is a folder"));
            }
            Ok(m) if !m.is_file() => Some((path, Target::Special)),
            Ok(_) if opts.overwrite == Overwrite::Never => {
                return Ok(Fetched::Exists { path: path.clone() });
            }
            _ => Some((path, Target::File)),
        },
    };
    // Resuming: the bytes already here, and their hash so far.
    let mut prefix: Option<(u64, FileHasher)> = None;
    if opts.resume {
        let Some((path, Target::File)) = target else {
            return Err(Error::setting(
                "only a download into a regular file can be resumed",
            ));
        };
        let partial = partial_path(path);
        match File::open(&partial) {
            Ok(f) => {
                let (hasher, len) =
                    hash_prefix(f).doing(|| format!("reading {}", partial.display()))?;
                prefix = Some((len, hasher));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::from(e).doing(format!("reading {}", partial.display()))),
        }
    }
    let offset = prefix.as_ref().map_or(0, |(len, _)| *len);
    if offset > 0 {
        step(Step::Resuming { offset });
    }
    let mut at = addr.to_string();
    let mut asked: HashSet<String> = HashSet::new();
    loop {
        if opts.shutdown.as_ref().is_some_and(|s| s.is_triggered()) {
            return Err(Error::Stopped("the download".into()));
        }
        asked.insert(at.clone());
        step(Step::Asking(&at));
        let remote = |e: Error| e.doing(format!("getting {name} from {at}"));
        let mut conn = Conn::open(&at, &opts.timeouts, SUPER_PROTOCOL).map_err(remote)?;
        step(Step::Connected(&at));
        let _closer = match &opts.shutdown {
            Some(s) => Some(s.close_on(conn.stream())?),
            None => None,
        };
        let request = if offset > 0 {
            SuperRequest::DownloadFrom {
                name: name.clone(),
                offset,
            }
        } else {
            SuperRequest::Download { name: name.clone() }
        };
        conn.send(&request).map_err(remote)?;
        match conn.expect::<SuperResponse>().map_err(remote)? {
            SuperResponse::File { size } => {
                step(Step::Receiving { from: &at, size });
                let bar = progress(size);
                bar.set_position(offset.min(size));
                let body = size.saturating_sub(offset);
                match target {
                    Some((path, Target::File)) => {
                        let got = receive_to_file(
                            &mut conn,
                            body,
                            path,
                            prefix.take(),
                            opts,
                            &bar,
                            &mut step,
                        );
                        bar.finish_and_clear();
                        return match got {
                            Ok(Some(digest)) => {
                                step(Step::Verified(digest));
                                Ok(Fetched::Got { from: at, size })
                            }
                            Ok(None) => Ok(Fetched::Exists { path: path.clone() }),
                            Err(Failure::Local(e)) => {
                                Err(e.doing(format!("writing {}", path.display())))
                            }
                            Err(Failure::Remote(e)) => Err(remote(e)),
                        };
                    }
                    Some((path, Target::Special)) => {
                        // A device or a pipe (`-o /dev/null`): write into it,
                        // never rename over it.
                        let out = OpenOptions::new()
                            .write(true)
                            .open(path)
                            .doing(|| format!("writing {}", path.display()))?;
                        let digest = stream_verified(&mut conn, body, out, &bar)
                            .map_err(|f| doing_on(f, path, &at, name))?;
                        bar.finish_and_clear();
                        step(Step::Verified(digest));
                    }
                    None => {
                        let digest =
                            stream_verified(&mut conn, body, crate::output::stdout(), &bar)
                                .map_err(|f| {
                                    doing_on(f, Path::new("standard output"), &at, name)
                                })?;
                        bar.finish_and_clear();
                        step(Step::Verified(digest));
                    }
                }
                return Ok(Fetched::Got { from: at, size });
            }
            SuperResponse::Redirect { addr: next } => {
                // Supernodes that disagree on who holds a name (or lie)
                // could send a download round for ever.
                if asked.contains(&next) {
                    return Err(remote(Error::invalid(
                        Stage::Reply,
                        format!(
                            "redirected back to {next}, which was already asked: \
                             the supernodes disagree on who holds it"
                        ),
                    )));
                }
                if asked.len() > MAX_REDIRECTS {
                    return Err(remote(Error::invalid(
                        Stage::Reply,
                        format!("redirected to {next} after {MAX_REDIRECTS} redirects; giving up"),
                    )));
                }
                step(Step::Redirect {
                    from: &at,
                    to: &next,
                });
                at = next;
            }
            SuperResponse::NotFound => return Ok(Fetched::NotAvailable { at }),
            other => {
                return Err(remote(frame::unexpected(
                    "File, Redirect or NotFound",
                    &other,
                )));
            }
        }
    }
}

/// The error of a failed download, naming the local path or the supernode.
fn doing_on(f: Failure, path: &Path, at: &str, name: &FileName) -> Error {
    match f {
        Failure::Local(e) => e.doing(format!("writing {}", path.display())),
        Failure::Remote(e) => e.doing(format!("getting {name} from {at}")),
    }
}

/// Hashes an open file from its start; the hasher so far and the length.
fn hash_prefix(file: File) -> io::Result<(FileHasher, u64)> {
    let mut hasher = FileHasher::new();
    let len = digest::hash_into(file, &mut hasher)?;
    Ok((hasher, len))
}

/// What follows a download's body: the whole file's digest (`Sent`), or
/// the supernode's word that it could not vouch for what it sent.
fn trailer(conn: &mut Conn) -> std::result::Result<FileDigest, Failure> {
    conn.answer("Sent", |r| match r {
        SuperResponse::Sent { digest } => Ok(digest),
        other => Err(other),
    })
    .map_err(Failure::Remote)
}

/// Checks a received file's digest against the one its supernode sent.
fn verify(actual: FileDigest, expected: FileDigest) -> std::result::Result<(), Failure> {
    if actual == expected {
        Ok(())
    } else {
        Err(Failure::Remote(Error::HashMismatch { expected, actual }))
    }
}

/// Receives `body` bytes into `path`'s partial file (after the `prefix`
/// already there, if resuming), then the digest that follows them, and
/// renames the partial file to `path` once the whole file matches it.
/// `Ok(None)`: a file appeared at `path` meanwhile and may not be replaced.
/// A failed download's partial file is removed, unless the caller asked to
/// keep it; one that did not match its digest always is.
fn receive_to_file(
    conn: &mut Conn,
    body: u64,
    path: &Path,
    prefix: Option<(u64, FileHasher)>,
    opts: &GetOptions,
    bar: &ProgressBar,
    step: &mut impl FnMut(Step<'_>),
) -> std::result::Result<Option<FileDigest>, Failure> {
    let partial = partial_path(path);
    let resuming = prefix.is_some();
    let local = |e: io::Error| Failure::Local(e.into());
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    transfer::ensure_room(dir, body).map_err(local)?;
    let mut open = OpenOptions::new();
    open.read(true).write(true);
    if !resuming {
        open.create(true).truncate(true);
    }
    let mut file = open.open(&partial).map_err(local)?;
    let mut hasher = match prefix {
        Some((len, hasher)) => {
            // Exactly the hashed prefix, whatever happened to the file since.
            file.set_len(len).map_err(local)?;
            file.seek(SeekFrom::Start(len)).map_err(local)?;
            hasher
        }
        None => FileHasher::new(),
    };
    let discard = |keep: bool, step: &mut dyn FnMut(Step<'_>)| {
        if keep {
            step(Step::KeptPartial(&partial));
        } else {
            // Best effort: nothing useful can be done if this fails too.
            let _ = fs::remove_file(&partial);
        }
    };
    let received = transfer::receive_into(conn.reader(), body, &mut file, &mut hasher, bar)
        .and_then(|()| trailer(conn));
    drop(file);
    let expected = match received {
        Ok(d) => d,
        Err(e) => {
            // Only a cut transfer leaves bytes worth resuming: a supernode
            // that said its file changed under it vouches for none of them.
            let cut = match &e {
                Failure::Local(_) => true,
                Failure::Remote(e) => {
                    e.is_disconnect()
                        || matches!(
                            e,
                            Error::Truncated
                                | Error::Closed
                                | Error::Io(_)
                                | Error::TimedOut(_)
                                | Error::Stopped(_)
                        )
                }
            };
            discard(cut && (opts.keep_partial || opts.resume), step);
            return Err(e);
        }
    };
    if let Err(e) = verify(hasher.finish(), expected) {
        discard(false, step);
        return Err(match e {
            Failure::Remote(e) if resuming => Failure::Remote(
                e.doing("the resumed file (its partial file was removed; download it again)"),
            ),
            e => e,
        });
    }
    let placed = match opts.overwrite {
        Overwrite::Replace => fs::rename(&partial, path),
        Overwrite::Never => fs::hard_link(&partial, path).and_then(|()| fs::remove_file(&partial)),
    };
    match placed {
        Ok(()) => Ok(Some(expected)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let _ = fs::remove_file(&partial);
            Ok(None)
        }
        Err(e) => {
            discard(opts.keep_partial, step);
            Err(Failure::Local(e.into()))
        }
    }
}

/// Streams a body into `out`, then checks it against the digest that
/// follows it (the bytes are already out by then: the error says they are
/// bad).
fn stream_verified<W: Write>(
    conn: &mut Conn,
    size: u64,
    out: W,
    bar: &ProgressBar,
) -> std::result::Result<FileDigest, Failure> {
    let mut out = io::BufWriter::with_capacity(transfer::CHUNK, out);
    let actual = transfer::receive_body(conn.reader(), size, &mut out, bar)?;
    let expected = trailer(conn)?;
    verify(actual, expected)?;
    Ok(expected)
}

/// How an upload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Put {
    /// The supernode stored the file (`size` bytes).
    Stored { size: u64 },
    /// The supernode already has a file of that name; nothing changed.
    AlreadyExists,
}

/// Uploads the local file `path` under its own name to the supernode at
/// `addr`. `note` hears one line per step. Errors name the local path
/// (`reading PATH: ...`) or the supernode (`uploading NAME to ADDR: ...`).
pub(crate) fn put(
    addr: &str,
    path: &Path,
    timeouts: &Timeouts,
    mut note: impl FnMut(&str),
    progress: impl Fn(u64) -> ProgressBar,
) -> Result<Put> {
    let name = FileName::from_path(path).doing(|| path.display().to_string())?;
    let local = || format!("reading {}", path.display());
    let mut file = File::open(path).doing(local)?;
    if !file.metadata().doing(local)?.is_file() {
        return Err(Error::local_path(path, "not a regular file"));
    }
    note(&format!("hashing {}", path.display()));
    let (digest, size) = digest::hash_reader(&mut file).doing(local)?;
    let file = File::open(path).doing(local)?;
    let remote = |e: Error| e.doing(format!("uploading {name} to {addr}"));
    let mut conn = Conn::open(addr, timeouts, SUPER_PROTOCOL).map_err(remote)?;
    note(&format!("connected to {addr}"));
    note(&format!(
        "offering {name} ({size} bytes, BLAKE3 {digest}) to {addr}"
    ));
    let upload = SuperRequest::Upload {
        name: name.clone(),
        size,
        digest,
    };
    let ready = conn
        .call(&upload, "Ready or AlreadyExists", |r| match r {
            SuperResponse::Ready => Ok(true),
            SuperResponse::AlreadyExists => Ok(false),
            other => Err(other),
        })
        .map_err(remote)?;
    if !ready {
        return Ok(Put::AlreadyExists);
    }
    note(&format!("transmitting {name} ({size} bytes)"));
    let bar = progress(size);
    if bar.is_hidden() {
        // Straight to the socket, so the kernel copies (sendfile).
        transfer::send_body_to_socket(&file, size, conn.writer()).map_err(remote)?;
    } else {
        let mut counted = Counted {
            inner: conn.writer(),
            bar: &bar,
        };
        transfer::send_body(file, size, &mut counted).map_err(remote)?;
        bar.finish_and_clear();
    }
    conn.answer("Stored or AlreadyExists", |r| match r {
        SuperResponse::Stored => Ok(Put::Stored { size }),
        SuperResponse::AlreadyExists => Ok(Put::AlreadyExists),
        other => Err(other),
    })
    .map_err(remote)
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
