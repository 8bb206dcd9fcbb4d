//! The server's side of a directory: `Dir`, a safe wrapper over libc's
//! opendir/readdir/telldir/seekdir (std's `read_dir` cannot seek); `Root`,
//! which confines requests to the served folder; the status codes every
//! design answers with; and `read_batch`, one stateless request.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::ptr::NonNull;

use crate::error::{Error, Result, ResultExt};

/// Why a directory request failed, as the wire's status codes say it: a
/// Linux errno value, or NFS's bad-cookie code. The wire carries the
/// number ([`Status::code`]); a number from another server that is none of
/// these reads as a plain server failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    /// Success (0).
    Ok = 0,
    /// The path leads outside the root (1).
    Outside = 1,
    /// No such directory (2, ENOENT).
    NoEntry = 2,
    /// Any other failure (5, EIO).
    Io = 5,
    /// A stateful handle that is not open on this connection (9, EBADF).
    BadHandle = 9,
    /// Permission denied (13, EACCES).
    Denied = 13,
    /// Not a directory (20, ENOTDIR).
    NotDir = 20,
    /// `max_entries` is 0 or over 1024 (22, EINVAL).
    BadBatch = 22,
    /// The stateful server's cap on open directories is reached (24, EMFILE).
    TooManyOpen = 24,
    /// Name too long (36, ENAMETOOLONG).
    NameTooLong = 36,
    /// The cookie is no longer valid (10003, `RDIR_EBADCOOKIE`).
    StaleCookie = 10003,
}

impl Status {
    const ALL: [Status; 11] = [
        Status::Ok,
        Status::Outside,
        Status::NoEntry,
        Status::Io,
        Status::BadHandle,
        Status::Denied,
        Status::NotDir,
        Status::BadBatch,
        Status::TooManyOpen,
        Status::NameTooLong,
        Status::StaleCookie,
    ];

    /// The number on the wire.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The status a number on the wire stands for, if it is one of ours.
    pub fn from_code(code: u32) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }

    /// What it means, in words.
    pub fn text(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Outside => "outside the served folder",
            Status::NoEntry => "no such directory",
            Status::Io => "server failure",
            Status::BadHandle => "bad handle",
            Status::Denied => "permission denied",
            Status::NotDir => "not a directory",
            Status::BadBatch => "batch size must be 1 to 1024",
            Status::TooManyOpen => "too many open directories on the server",
            Status::NameTooLong => "name too long",
            Status::StaleCookie => "stale cookie",
        }
    }
}

/// What a status number from the wire means, in words.
pub fn status_text(code: u32) -> &'static str {
    Status::from_code(code).map_or("server failure", Status::text)
}

/// A refusal: a status code and its explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: Status,
    pub message: String,
}

impl Refusal {
    pub fn new(status: Status, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
        }
    }

    /// The refusal with the standard text for its status.
    pub fn plain(status: Status) -> Refusal {
        Refusal::new(status, status.text())
    }

    fn from_io(e: &io::Error) -> Refusal {
        // This system's errno values to the wire's (Linux's) numbers.
        let code = match e.raw_os_error() {
            Some(libc::ENOENT) => Status::NoEntry,
            Some(libc::EACCES | libc::EPERM) => Status::Denied,
            Some(libc::ENOTDIR) => Status::NotDir,
            Some(libc::ENAMETOOLONG) => Status::NameTooLong,
            _ => Status::Io,
        };
        Refusal::new(code, crate::error::describe_io(e))
    }
}

/// Sets the calling thread's errno to 0, so that a NULL from readdir can
/// be told apart: end of the directory (errno still 0) or an error.
fn clear_errno() {
    // SAFETY: errno is thread-local; the location libc gives is valid
    // for the calling thread for as long as it runs.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    unsafe {
        *libc::__errno_location() = 0
    };
    // SAFETY: as above, under the name these systems give it.
    #[cfg(any(target_vendor = "apple", target_os = "freebsd"))]
    unsafe {
        *libc::__error() = 0
    };
}

/// An open directory stream. Its descriptor is closed on drop.
#[derive(Debug)]
pub struct Dir {
    raw: NonNull<libc::DIR>,
}

// SAFETY: a DIR stream has no thread affinity; it may move between threads
// as long as one thread uses it at a time, which `&mut self` on every use
// (and `Dir` not being `Sync`) guarantees.
unsafe impl Send for Dir {}

impl Dir {
    /// opendir(3). The descriptor is opened close-on-exec by libc.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::ENOENT))?;
        // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
        let raw = unsafe { libc::opendir(c.as_ptr()) };
        NonNull::new(raw)
            .map(|raw| Dir { raw })
            .ok_or_else(io::Error::last_os_error)
    }

    /// readdir(3): the next entry's name, `None` at the end.
    pub fn next_name(&mut self) -> io::Result<Option<Vec<u8>>> {
        clear_errno();
        // SAFETY: `raw` is an open DIR stream owned by `self`.
        let ent = unsafe { libc::readdir(self.raw.as_ptr()) };
        if ent.is_null() {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(0) | None => Ok(None),
                Some(_) => Err(e),
            };
        }
        // SAFETY: a non-NULL entry is libc's own `struct dirent`, valid
        // until the next readdir on this stream; d_name is NUL-terminated.
        // We copy the name out before returning.
        let name = unsafe {
            let p = std::ptr::addr_of!((*ent).d_name).cast::<libc::c_char>();
            std::ffi::CStr::from_ptr(p).to_bytes().to_vec()
        };
        Ok(Some(name))
    }

    /// telldir(3): the position of the next entry, as a cookie.
    pub fn tell(&mut self) -> u64 {
        // SAFETY: `raw` is an open DIR stream owned by `self`.
        let pos = unsafe { libc::telldir(self.raw.as_ptr()) };
        pos as u64
    }

    /// seekdir(3) to a cookie from `tell`. A cookie no position of this
    /// directory can have (negative as an offset, or one the filesystem
    /// refuses) is `false`.
    pub fn seek(&mut self, cookie: u64) -> bool {
        let Ok(pos) = i64::try_from(cookie) else {
            return false;
        };
        // SAFETY: `raw` is an open DIR stream owned by `self`; the
        // descriptor stays open while we lseek it, and seekdir below
        // repositions the stream (dropping its buffer) to the same offset.
        unsafe {
            let fd = libc::dirfd(self.raw.as_ptr());
            if libc::lseek(fd, pos as libc::off_t, libc::SEEK_SET) < 0 {
                return false;
            }
            libc::seekdir(self.raw.as_ptr(), pos as libc::c_long);
        }
        true
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: `raw` is open and owned by `self`; it is not used again.
        unsafe { libc::closedir(self.raw.as_ptr()) };
    }
}

/// The served folder: every request resolves inside it.
#[derive(Debug, Clone)]
pub struct Root {
    /// Absolute, symlinks resolved.
    canonical: PathBuf,
    /// Absolute, as given (lexically normalised).
    given: PathBuf,
}

/// Removes `.` and `..` lexically; `None` if `..` climbs above the start.
fn normalise(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    let mut depth = 0usize;
    for c in p.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => out.push(c.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return None;
                }
                depth -= 1;
                out.pop();
            }
            Component::Normal(n) => {
                depth += 1;
                out.push(n);
            }
        }
    }
    Some(out)
}

impl Root {
    /// The folder `dir` (which must exist) as a root.
    pub fn new(dir: &Path) -> Result<Root> {
        let canonical = dir
            .canonicalize()
            .doing(|| format!("root folder {}", dir.display()))?;
        if !canonical.is_dir() {
            return Err(Error::local_path(
                dir,
                "not a directory (the root folder must be one)",
            ));
        }
        let abs = std::env::current_dir()
            .map(|cwd| cwd.join(dir))
            .unwrap_or_else(|_| canonical.clone());
        let given = normalise(&abs).unwrap_or_else(|| canonical.clone());
        Ok(Root { canonical, given })
    }

    /// The folder served.
    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// The directory a request names: relative to the root, or absolute
    /// inside it. `..` above the root, absolute paths elsewhere and
    /// symlinks leading out are refused with status 1.
    pub fn resolve(&self, requested: &[u8]) -> Result<PathBuf, Refusal> {
        if requested.len() > MAX_PATH_LEN {
            return Err(Refusal::plain(Status::NameTooLong));
        }
        if requested.contains(&0) {
            return Err(Refusal::new(
                Status::NoEntry,
                "no such directory (NUL in path)",
            ));
        }
        let p = Path::new(OsStr::from_bytes(requested));
        let outside = || Refusal::new(Status::Outside, "outside the served folder");
        let lexical = if p.is_absolute() {
            let n = normalise(p).ok_or_else(outside)?;
            if !(n.starts_with(&self.canonical) || n.starts_with(&self.given)) {
                return Err(outside());
            }
            n
        } else {
            self.canonical.join(normalise(p).ok_or_else(outside)?)
        };
        let real = lexical.canonicalize().map_err(|e| Refusal::from_io(&e))?;
        if !real.starts_with(&self.canonical) {
            return Err(outside());
        }
        Ok(real)
    }

    /// Opens the directory a request names.
    pub fn open(&self, requested: &[u8]) -> Result<Dir, Refusal> {
        let path = self.resolve(requested)?;
        Dir::open(&path).map_err(|e| Refusal::from_io(&e))
    }
}

const MAX_PATH_LEN: usize = super::MAX_PATH as usize;

/// One stateless answer: entries, the cookie to continue from, and whether
/// the directory is finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub names: Vec<Vec<u8>>,
    pub cookie: u64,
    pub eof: bool,
}

/// Checks a requested batch size.
pub fn check_max(max: u32) -> Result<usize, Refusal> {
    if max == 0 || max > super::MAX_BATCH {
        return Err(Refusal::plain(Status::BadBatch));
    }
    Ok(max as usize)
}

/// Reads up to `max` entries from `dir`'s current position. Reads one
/// entry past a full batch to know whether the directory is finished; the
/// cookie is the position before that entry, so nothing is skipped. The
/// entry read ahead is returned for a caller that keeps the stream open.
pub fn read_from(dir: &mut Dir, max: usize) -> io::Result<(Batch, Option<Vec<u8>>)> {
    let mut names = Vec::with_capacity(max.min(64));
    let mut cookie = dir.tell();
    while names.len() < max {
        match dir.next_name()? {
            Some(n) => names.push(n),
            None => {
                return Ok((
                    Batch {
                        names,
                        cookie: dir.tell(),
                        eof: true,
                    },
                    None,
                ));
            }
        }
        cookie = dir.tell();
    }
    let ahead = dir.next_name()?;
    let eof = ahead.is_none();
    Ok((Batch { names, cookie, eof }, ahead))
}

/// One stateless request: open, position at `cookie`, read, close.
pub fn read_batch(root: &Root, path: &[u8], cookie: u64, max: u32) -> Result<Batch, Refusal> {
    let max = check_max(max)?;
    let mut dir = root.open(path)?;
    if cookie != 0 && !dir.seek(cookie) {
        return Err(Refusal::plain(Status::StaleCookie));
    }
    read_from(&mut dir, max)
        .map(|(b, _)| b)
        .map_err(|e| Refusal::from_io(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn statuses_are_the_wire_numbers_and_read_back() {
        assert_eq!(Status::NoEntry.code(), libc::ENOENT as u32);
        assert_eq!(Status::StaleCookie.code(), 10003);
        for s in Status::ALL {
            assert_eq!(Status::from_code(s.code()), Some(s));
            assert_eq!(status_text(s.code()), s.text());
        }
        assert_eq!(Status::from_code(4), None);
        assert_eq!(status_text(4), "server failure");
    }

    #[test]
    fn batches_cover_the_directory_exactly_once() {
        let tmp = tmp();
        let d = tmp.path();
        for i in 0..250 {
            fs::write(d.join(format!("f{i}")), b"").unwrap();
        }
        let root = Root::new(d).unwrap();
        let mut all = Vec::new();
        let mut cookie = 0;
        loop {
            let b = read_batch(&root, b".", cookie, 7).unwrap();
            all.extend(b.names);
            cookie = b.cookie;
            if b.eof {
                break;
            }
        }
        all.sort();
        let mut want: Vec<Vec<u8>> = (0..250).map(|i| format!("f{i}").into_bytes()).collect();
        want.push(b".".to_vec());
        want.push(b"..".to_vec());
        want.sort();
        assert_eq!(all, want);
    }

    #[test]
    fn confinement() {
        let tmp = tmp();
        let d = tmp.path();
        fs::create_dir_all(d.join("root/sub")).unwrap();
        fs::write(d.join("root/file"), b"").unwrap();
        std::os::unix::fs::symlink(d, d.join("root/out")).unwrap();
        std::os::unix::fs::symlink("sub", d.join("root/in")).unwrap();
        let root = Root::new(&d.join("root")).unwrap();
        for ok in [&b""[..], b".", b"sub", b"sub/..", b"in", b"./sub/../in"] {
            assert!(root.resolve(ok).is_ok(), "{ok:?}");
        }
        let abs = d.join("root/sub");
        assert!(root.resolve(abs.as_os_str().as_bytes()).is_ok());
        for bad in [
            &b".."[..],
            b"../root",
            b"sub/../..",
            b"out",
            b"out/.",
            b"/etc",
            b"/",
        ] {
            assert_eq!(
                root.resolve(bad).unwrap_err().status,
                Status::Outside,
                "{bad:?}"
            );
        }
        assert_eq!(root.open(b"missing").unwrap_err().status, Status::NoEntry);
        assert_eq!(root.open(b"file").unwrap_err().status, Status::NotDir);
        assert_eq!(
            read_batch(&root, b".", 0, 0).unwrap_err().status,
            Status::BadBatch
        );
        assert_eq!(
            read_batch(&root, b".", u64::MAX, 5).unwrap_err().status,
            Status::StaleCookie
        );
    }
}
