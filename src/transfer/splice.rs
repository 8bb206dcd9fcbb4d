//! The Linux receive path: socket -> pipe -> file with splice(2), hashing
//! the bytes by reading them back from the page cache.

use std::fs::File;
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;

use indicatif::ProgressBar;

use super::{Failure, HASH_CHUNK, local};
use crate::digest::FileHasher;
use crate::error::Error;
use rustix::io::Errno;
use rustix::pipe::{PipeFlags, SpliceFlags};

/// The pipe's capacity we ask for (the default most-allowed size for
/// an unprivileged process); each socket splice moves up to this much.
const PIPE_SIZE: usize = 1 << 20;

/// Splices up to `left` bytes from `sock` into `file` at its current
/// position (advancing it), hashing them as they land. Returns what is
/// still to be received: 0, or everything if splice is not supported
/// here (then nothing was consumed and the caller copies instead).
pub(super) fn receive(
    sock: &TcpStream,
    mut left: u64,
    file: &mut File,
    hasher: &mut FileHasher,
    progress: &ProgressBar,
) -> Result<u64, Failure> {
    let (rd, wr) =
        rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(|e| local(io::Error::from(e)))?;
    // A refusal (a lower pipe-max-size) leaves the default capacity,
    // which also works.
    let cap = match rustix::pipe::fcntl_setpipe_size(&wr, PIPE_SIZE) {
        Ok(n) if n > 0 => n,
        _ => 64 * 1024,
    };
    let mut at = io::Seek::stream_position(file).map_err(local)?;
    let mut hashed = at;
    let mut buf = vec![0u8; HASH_CHUNK];
    let mut first = true;
    while left > 0 {
        let want = cap.min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match call(sock, None, &wr, want) {
            Ok(0) => return Err(Failure::Remote(Error::Truncated)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if first && unsupported(&e) => return Ok(left),
            // A receive timeout shows as EAGAIN.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(Failure::Remote(
                    io::Error::new(io::ErrorKind::TimedOut, "receive timed out").into(),
                ));
            }
            Err(e) => return Err(Failure::Remote(e.into())),
        };
        let mut in_pipe = n;
        while in_pipe > 0 {
            match call(&rd, Some(&mut at), &*file, in_pipe) {
                Ok(0) => {
                    return Err(local(Error::from(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the file took no bytes",
                    ))));
                }
                Ok(m) => in_pipe -= m,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if first && unsupported(&e) => {
                    // The socket bytes are in the pipe: move them by hand
                    // and let the caller copy the rest.
                    hash_back(file, &mut hashed, at, &mut buf, hasher)?;
                    drain(&rd, in_pipe, file, at, hasher)?;
                    progress.inc(n as u64);
                    return Ok(left - n as u64);
                }
                Err(e) => return Err(local(e)),
            }
        }
        first = false;
        left -= n as u64;
        hash_back(file, &mut hashed, at, &mut buf, hasher)?;
        progress.inc(n as u64);
    }
    io::Seek::seek(file, io::SeekFrom::Start(at)).map_err(local)?;
    Ok(0)
}

/// Hashes what landed in `file` from `*hashed` to `at`, read back from
/// the page cache through `buf`.
fn hash_back(
    file: &File,
    hashed: &mut u64,
    at: u64,
    buf: &mut [u8],
    hasher: &mut FileHasher,
) -> Result<(), Failure> {
    while *hashed < at {
        let k = buf
            .len()
            .min(usize::try_from(at - *hashed).unwrap_or(usize::MAX));
        file.read_exact_at(&mut buf[..k], *hashed).map_err(local)?;
        hasher.update(&buf[..k]);
        *hashed += k as u64;
    }
    Ok(())
}

/// Reads `n` bytes (at most the pipe's capacity) out of the pipe and
/// writes them to `file` at `at`, hashing them; the file's position
/// ends after them.
fn drain(
    rd: &OwnedFd,
    n: usize,
    file: &mut File,
    at: u64,
    hasher: &mut FileHasher,
) -> Result<(), Failure> {
    let mut buf = vec![0u8; n];
    let mut pipe = File::from(rd.try_clone().map_err(local)?);
    io::Read::read_exact(&mut pipe, &mut buf).map_err(local)?;
    io::Seek::seek(file, io::SeekFrom::Start(at)).map_err(local)?;
    io::Write::write_all(file, &buf).map_err(local)?;
    hasher.update(&buf);
    Ok(())
}

/// One splice(2) call; `off_out` is the file offset to write at (and
/// advance), `None` for a pipe.
fn call(
    fd_in: impl AsFd,
    off_out: Option<&mut u64>,
    fd_out: impl AsFd,
    len: usize,
) -> io::Result<usize> {
    Ok(rustix::pipe::splice(
        fd_in,
        None,
        fd_out,
        off_out,
        len,
        SpliceFlags::MOVE,
    )?)
}

/// Errors meaning "splice cannot do this here", not "the copy failed".
fn unsupported(e: &io::Error) -> bool {
    matches!(
        Errno::from_io_error(e),
        Some(Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP)
    )
}
