//! The send path: a file body after its header, with sendfile(2) on Linux
//! and a copy loop elsewhere.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;

use super::CHUNK;
use crate::error::{Error, Local, Result};
use crate::net::SharedStream;

/// Streams exactly `len` bytes of `file` to `w` (sendfile on Linux when `w`
/// is a socket) and flushes. A file that shrank meanwhile is an error.
pub(crate) fn send_body<W: Write>(file: File, len: u64, w: &mut W) -> Result<()> {
    let sent = io::copy(&mut file.take(len), w)?;
    if sent != len {
        return Err(Error::Local(Local::Shrank { sent, len }));
    }
    w.flush()?;
    Ok(())
}

/// `send_body` for a buffered socket (`Conn::writer()`): flushes what is
/// buffered (the header frame), then has the kernel copy the body from the
/// file to the socket with sendfile(2) on Linux, so the bytes never enter
/// our memory. (std's `io::copy` does not use sendfile towards sockets: it
/// reads and writes 8 KiB at a time.) Falls back to a `CHUNK`-sized copy
/// loop where sendfile is unavailable.
pub(crate) fn send_body_to_socket(
    file: &File,
    len: u64,
    w: &mut BufWriter<SharedStream>,
) -> Result<()> {
    send_body_paced(file, len, w, u64::MAX, || {})
}

/// `send_body_to_socket` in pieces of at most `piece` bytes, calling
/// `before` ahead of each: background copies use it to hold back while
/// something more urgent runs.
pub(crate) fn send_body_paced(
    file: &File,
    len: u64,
    w: &mut BufWriter<SharedStream>,
    piece: u64,
    before: impl FnMut(),
) -> Result<()> {
    send_paced(file, None, len, w, piece, before)
}

/// `send_body_to_socket` for the `len` bytes at offset `at`, read where
/// they are (positioned): the file's own offset is neither used nor
/// moved, so any number of threads send from one shared `File`.
pub(crate) fn send_range_to_socket(
    file: &File,
    at: u64,
    len: u64,
    w: &mut BufWriter<SharedStream>,
) -> Result<()> {
    send_paced(file, Some(at), len, w, u64::MAX, || {})
}

/// The send loop behind the above: from offset `at` (positioned), or
/// from the file's own offset, which it then advances.
fn send_paced(
    file: &File,
    mut at: Option<u64>,
    len: u64,
    w: &mut BufWriter<SharedStream>,
    piece: u64,
    mut before: impl FnMut(),
) -> Result<()> {
    w.flush()?;
    let mut sock = w.get_ref().tcp();
    let mut left = len;
    let piece = piece.max(1);
    #[cfg(target_os = "linux")]
    while left > 0 {
        before();
        match sendfile::send(file, at.as_mut(), sock, left.min(piece)) {
            Ok(0) => {
                return Err(Error::Local(Local::Shrank {
                    sent: len - left,
                    len,
                }));
            }
            Ok(n) => left -= n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if sendfile::unsupported(&e) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if left > 0 {
        // sendfile advanced the offset (`at` or the file's) by what it sent.
        let mut file = file;
        let mut buf = vec![0u8; CHUNK.min(usize::try_from(left).unwrap_or(CHUNK))];
        let mut since = 0u64;
        while left > 0 {
            if since >= piece {
                before();
                since = 0;
            }
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let read = match at.as_mut() {
                Some(at) => file
                    .read_at(&mut buf[..want], *at)
                    .inspect(|&n| *at += n as u64),
                None => file.read(&mut buf[..want]),
            };
            let n = match read {
                Ok(0) => {
                    return Err(Error::Local(Local::Shrank {
                        sent: len - left,
                        len,
                    }));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            sock.write_all(&buf[..n])?;
            left -= n as u64;
            since += n as u64;
        }
    }
    sock.flush()?;
    Ok(())
}

#[cfg(target_os = "linux")]
mod sendfile {
    use std::fs::File;
    use std::io;
    use std::net::TcpStream;

    use rustix::io::Errno;

    /// Most bytes asked of one sendfile call.
    const MAX_CALL: u64 = 1 << 30;

    /// One sendfile(2) call from offset `at` (or, if `None`, the file's
    /// current offset), which it advances, to the socket; the byte count
    /// sent.
    pub(super) fn send(
        file: &File,
        at: Option<&mut u64>,
        sock: &TcpStream,
        left: u64,
    ) -> io::Result<usize> {
        let count = left.min(MAX_CALL) as usize;
        Ok(rustix::fs::sendfile(sock, file, at, count)?)
    }

    /// Errors meaning "sendfile cannot do this here", not "the copy failed".
    pub(super) fn unsupported(e: &io::Error) -> bool {
        matches!(
            Errno::from_io_error(e),
            Some(Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP)
        )
    }
}
