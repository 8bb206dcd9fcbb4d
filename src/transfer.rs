//! File transfer with integrity: streaming a file body after a header, and
//! receiving one into a temporary file that is renamed into place only after
//! its SHA-256 matches.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::name::TEMP_PREFIX;
use crate::net::SharedStream;
use indicatif::ProgressBar;

/// Size of the buffer used to move file bytes.
pub const CHUNK: usize = 256 * 1024;

/// Streams exactly `len` bytes of `file` to `w` (sendfile on Linux when `w`
/// is a socket) and flushes. A file that shrank meanwhile is an error.
pub fn send_body<W: Write>(file: File, len: u64, w: &mut W) -> Result<()> {
    let sent = io::copy(&mut file.take(len), w)?;
    if sent != len {
        return Err(Error::Local(format!(
            "file shrank while sending: {sent} of {len} bytes"
        )));
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
pub fn send_body_to_socket(
    mut file: File,
    len: u64,
    w: &mut BufWriter<SharedStream>,
) -> Result<()> {
    w.flush()?;
    let mut sock = w.get_ref().tcp();
    let mut left = len;
    #[cfg(target_os = "linux")]
    while left > 0 {
        match sendfile::send(&file, sock, left) {
            Ok(0) => {
                return Err(Error::Local(format!(
                    "file shrank while sending: {} of {len} bytes",
                    len - left
                )));
            }
            Ok(n) => left -= n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if sendfile::unsupported(&e) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if left > 0 {
        // sendfile advanced the file offset by what it sent.
        let mut buf = vec![0u8; CHUNK.min(usize::try_from(left).unwrap_or(CHUNK))];
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(Error::Local(format!(
                        "file shrank while sending: {} of {len} bytes",
                        len - left
                    )));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            sock.write_all(&buf[..n])?;
            left -= n as u64;
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
    use std::os::fd::AsRawFd;

    unsafe extern "C" {
        // ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count);
        fn sendfile(out_fd: i32, in_fd: i32, offset: *mut i64, count: usize) -> isize;
    }

    /// Most bytes asked of one sendfile call.
    const MAX_CALL: u64 = 1 << 30;

    /// One sendfile(2) call from the file's current offset (which it
    /// advances) to the socket; the byte count sent.
    pub fn send(file: &File, sock: &TcpStream, left: u64) -> io::Result<usize> {
        let count = left.min(MAX_CALL) as usize;
        // SAFETY: both descriptors are open for the duration of the call
        // (borrowed from live `File` and `TcpStream` values), a null offset
        // pointer means "use and advance the file offset", and no memory of
        // ours is read or written.
        let n = unsafe {
            sendfile(
                sock.as_raw_fd(),
                file.as_raw_fd(),
                std::ptr::null_mut(),
                count,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Errors meaning "sendfile cannot do this here", not "the copy failed".
    pub fn unsupported(e: &io::Error) -> bool {
        // ENOSYS, EINVAL, EOPNOTSUPP
        matches!(e.raw_os_error(), Some(38 | 22 | 95))
    }
}

/// Reads exactly `len` bytes from `r` into `out`, hashing them on the way
/// and advancing `progress`. EOF before `len` bytes is `Error::Truncated`.
///
/// On a machine with at least `PIPELINE_CPUS` CPUs, bodies of at least
/// `PIPELINE_MIN` bytes are hashed on a second thread while the next chunk
/// is read and written, through `PIPELINE_BUFFERS` recycled `CHUNK`-sized
/// buffers (memory stays at about 1 MiB). On one CPU the threads would only
/// take turns, so the single-threaded loop runs there. (Alternating runs of
/// `scripts/bench-transfer.sh` on a quiet 2-CPU machine: 541-657 MiB/s
/// pipelined against 479-568 MiB/s single-threaded.)
pub fn receive_body<R: Read, W: Write>(
    r: &mut R,
    len: u64,
    out: &mut W,
    progress: &ProgressBar,
) -> Result<Digest> {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    if len < PIPELINE_MIN || cpus < PIPELINE_CPUS {
        receive_body_serial(r, len, out, progress)
    } else {
        receive_body_pipelined(r, len, out, progress)
    }
}

/// Fewest CPUs on which `receive_body` hashes on a second thread.
pub const PIPELINE_CPUS: usize = 2;

/// `receive_body` with hashing on a second thread.
fn receive_body_pipelined<R: Read, W: Write>(
    r: &mut R,
    len: u64,
    out: &mut W,
    progress: &ProgressBar,
) -> Result<Digest> {
    thread::scope(|scope| {
        let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(PIPELINE_BUFFERS);
        let (free_tx, free_rx) = mpsc::sync_channel::<Vec<u8>>(PIPELINE_BUFFERS);
        for _ in 0..PIPELINE_BUFFERS {
            // The channel has room for every buffer and its receiver is alive.
            let _ = free_tx.send(vec![0u8; CHUNK]);
        }
        let hasher = scope.spawn(move || {
            let mut hasher = Hasher::new();
            for (buf, n) in full_rx {
                hasher.update(&buf[..n]);
                // The reader may have stopped early; then the buffer is dropped.
                let _ = free_tx.send(buf);
            }
            hasher.finish()
        });
        let moved = move_chunks(r, len, out, progress, &free_rx, &full_tx);
        drop(full_tx);
        let digest = hasher
            .join()
            .map_err(|_| Error::Stopped("the hashing thread".into()))?;
        moved?;
        out.flush()?;
        Ok(digest)
    })
}

/// Bodies at least this long are hashed on a second thread.
pub const PIPELINE_MIN: u64 = 4 * CHUNK as u64;

/// Buffers in flight between the receiving and the hashing thread.
pub const PIPELINE_BUFFERS: usize = 4;

/// The receiving half of `receive_body`'s pipeline: fills a free buffer,
/// writes it out, and hands it to the hasher.
fn move_chunks<R: Read, W: Write>(
    r: &mut R,
    len: u64,
    out: &mut W,
    progress: &ProgressBar,
    free: &mpsc::Receiver<Vec<u8>>,
    full: &mpsc::SyncSender<(Vec<u8>, usize)>,
) -> Result<()> {
    let mut left = len;
    while left > 0 {
        let mut buf = free
            .recv()
            .map_err(|_| Error::Stopped("the hashing thread".into()))?;
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let mut n = 0;
        while n < want {
            match r.read(&mut buf[n..want]) {
                Ok(0) => return Err(Error::Truncated),
                Ok(got) => n += got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
        out.write_all(&buf[..n])?;
        left -= n as u64;
        progress.inc(n as u64);
        full.send((buf, n))
            .map_err(|_| Error::Stopped("the hashing thread".into()))?;
    }
    Ok(())
}

/// `receive_body` on one thread, for short bodies.
fn receive_body_serial<R: Read, W: Write>(
    r: &mut R,
    len: u64,
    out: &mut W,
    progress: &ProgressBar,
) -> Result<Digest> {
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; CHUNK.min(usize::try_from(len).unwrap_or(CHUNK)).max(1)];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match r.read(&mut buf[..want]) {
            Ok(0) => return Err(Error::Truncated),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
        progress.inc(n as u64);
    }
    out.flush()?;
    Ok(hasher.finish())
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file under a temporary name in its final folder. Dropped without
/// `persist*`, it is removed, so a failed transfer leaves nothing behind.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// Creates `dir/.peerkit-tmp-<pid>-<n>`, never reusing an existing name.
    pub fn create_in(dir: &Path) -> io::Result<TempFile> {
        loop {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file: Some(file),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The open file.
    pub fn file(&mut self) -> &mut File {
        // Only `persist*` take the file, and they consume `self`.
        self.file
            .as_mut()
            .expect("temp file is open until persisted")
    }

    /// The temporary path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames onto `dest`, replacing whatever is there.
    pub fn persist(mut self, dest: &Path) -> io::Result<()> {
        self.file.take();
        fs::rename(&self.path, dest)?;
        self.path = PathBuf::new();
        Ok(())
    }

    /// Moves to `dest` only if nothing is there (atomically: a hard link
    /// cannot replace an existing name). `ErrorKind::AlreadyExists` otherwise.
    pub fn persist_new(mut self, dest: &Path) -> io::Result<()> {
        self.file.take();
        fs::hard_link(&self.path, dest)?;
        let _ = fs::remove_file(&self.path);
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Whether receiving may replace an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Replace whatever is at the destination.
    Replace,
    /// Refuse (with `AlreadyExists`) if the destination exists.
    Never,
}

/// Receives a `len`-byte body from `r` into `dest`, through a temporary file
/// in `dest`'s folder that becomes `dest` only if its SHA-256 is `expected`.
pub fn receive_file<R: Read>(
    r: &mut R,
    len: u64,
    expected: Digest,
    dest: &Path,
    overwrite: Overwrite,
    progress: &ProgressBar,
) -> Result<()> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = TempFile::create_in(dir)?;
    let actual = {
        let mut out = io::BufWriter::with_capacity(CHUNK, tmp.file());
        receive_body(r, len, &mut out, progress)?
    };
    if actual != expected {
        return Err(Error::HashMismatch { expected, actual });
    }
    match overwrite {
        Overwrite::Replace => tmp.persist(dest)?,
        Overwrite::Never => tmp.persist_new(dest)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("peerkit-unit-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn digest_hex_roundtrip_and_known_value() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(Digest::from_hex("zz"), None);
    }

    #[test]
    fn receive_body_hashes_short_and_long_bodies() {
        let bar = ProgressBar::hidden();
        for len in [0, 1, CHUNK - 1, CHUNK + 1, PIPELINE_MIN as usize, 3_000_017] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            // A reader that returns odd-sized pieces.
            let mut r = Jagged(&data[..], 7_001);
            let mut out = Vec::new();
            let d = receive_body(&mut r, len as u64, &mut out, &bar).unwrap();
            assert_eq!(d, Digest::of(&data), "len {len}");
            assert_eq!(out, data, "len {len}");
            for f in [
                receive_body_serial::<&[u8], Vec<u8>>,
                receive_body_pipelined,
            ] {
                let mut out = Vec::new();
                let d = f(&mut &data[..], len as u64, &mut out, &bar).unwrap();
                assert_eq!(d, Digest::of(&data), "len {len}");
                assert_eq!(out, data, "len {len}");
                if len > 1 {
                    let mut short = &data[..len / 2];
                    let err = f(&mut short, len as u64, &mut Vec::new(), &bar).unwrap_err();
                    assert!(matches!(err, Error::Truncated), "len {len}: {err:?}");
                }
            }
        }
    }

    struct Jagged<'a>(&'a [u8], usize);

    impl Read for Jagged<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn send_body_to_socket_sends_exactly_the_body() {
        let dir = scratch("sendfile");
        let path = dir.join("f.bin");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        fs::write(&path, &data).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            got
        });
        let stream = std::sync::Arc::new(std::net::TcpStream::connect(addr).unwrap());
        let mut w = BufWriter::new(SharedStream::new(stream));
        w.write_all(b"head").unwrap();
        send_body_to_socket(File::open(&path).unwrap(), 1_000_000, &mut w).unwrap();
        let err = send_body_to_socket(File::open(&path).unwrap(), 4_000_000, &mut w).unwrap_err();
        assert!(err.to_string().contains("file shrank"), "{err}");
        drop(w);
        let got = reader.join().unwrap();
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[4..1_000_004], &data[..1_000_000]);
        assert_eq!(&got[1_000_004..], &data[..]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn receive_file_renames_only_on_match() {
        let dir = scratch("recv");
        let data = vec![7u8; 1_000_000];
        let good = Digest::of(&data);
        let dest = dir.join("f.bin");
        let bar = ProgressBar::hidden();

        let err = receive_file(
            &mut &data[..],
            data.len() as u64,
            Digest::of(b"other"),
            &dest,
            Overwrite::Never,
            &bar,
        )
        .unwrap_err();
        assert!(matches!(err, Error::HashMismatch { .. }));
        assert!(!dest.exists());

        let err =
            receive_file(&mut &data[..10], 20, good, &dest, Overwrite::Never, &bar).unwrap_err();
        assert!(matches!(err, Error::Truncated));
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            0,
            "temp file left over"
        );

        receive_file(
            &mut &data[..],
            data.len() as u64,
            good,
            &dest,
            Overwrite::Never,
            &bar,
        )
        .unwrap();
        assert_eq!(fs::read(&dest).unwrap(), data);

        let err = receive_file(
            &mut &data[..],
            data.len() as u64,
            good,
            &dest,
            Overwrite::Never,
            &bar,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Io(ref e) if e.kind() == io::ErrorKind::AlreadyExists));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
