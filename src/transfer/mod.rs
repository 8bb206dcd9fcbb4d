//! File transfer with integrity: streaming a file body after a header
//! (`send`: sendfile), receiving one into a file while hashing it with
//! BLAKE3 (here, and `splice` on Linux), and a temporary file that is
//! renamed into place only once its digest matches (`temp`).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::mpsc;
use std::thread;

use crate::digest::{FileDigest, FileHasher, HASH_CHUNK};
use crate::error::{Error, Result};
use crate::net::SharedStream;
use indicatif::ProgressBar;

mod send;
#[cfg(target_os = "linux")]
mod splice;
mod temp;

pub(crate) use send::{send_body, send_body_paced, send_body_to_socket, send_range_to_socket};
pub(crate) use temp::{Overwrite, TempFile, receive_file, remove_stale};

/// Size of the buffer used to move file bytes.
pub(crate) const CHUNK: usize = 256 * 1024;

/// Size of the buffer `receive_into` copies through where it cannot splice.
const RECV_CHUNK: usize = 1 << 20;

/// Checks, before a byte is written, that the filesystem holding `dir` has
/// room for `len` more bytes: a peer announcing more than the disk holds
/// (or a lie of 2^60 bytes) is refused at once with `No space left on
/// device`, instead of filling the disk first. Where the free space
/// cannot be read, the write itself will tell.
pub(crate) fn ensure_room(dir: &std::path::Path, len: u64) -> io::Result<()> {
    let Ok(st) = rustix::fs::statvfs(dir) else {
        return Ok(());
    };
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    if len > free {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!("No space left on device: {len} bytes to receive, {free} free"),
        ));
    }
    Ok(())
}

/// Bytes free for an unprivileged writer on the filesystem holding `dir`,
/// if it can be read.
pub(crate) fn free_space(dir: &std::path::Path) -> Option<u64> {
    rustix::fs::statvfs(dir)
        .ok()
        .map(|st| st.f_bavail.saturating_mul(st.f_frsize))
}

/// A receive that failed, and on which side: the local file, or the peer
/// (the connection failed or closed early).
#[derive(Debug)]
pub(crate) enum Failure {
    /// Writing or reading the local file failed.
    Local(Error),
    /// The connection failed or ended before the whole body.
    Remote(Error),
}

impl Failure {
    /// The error, whichever side it was on.
    pub(crate) fn into_error(self) -> Error {
        match self {
            Failure::Local(e) | Failure::Remote(e) => e,
        }
    }
}

fn local(e: impl Into<Error>) -> Failure {
    Failure::Local(e.into())
}

fn remote(e: impl Into<Error>) -> Failure {
    Failure::Remote(e.into())
}

/// Reads exactly `len` bytes from `r` into `out` (standard output, a
/// device), hashing them on the way and advancing `progress`. EOF before
/// `len` bytes is a remote `Error::Truncated`; a failed write is local.
///
/// On a machine with at least `PIPELINE_CPUS` CPUs, bodies of at least
/// `PIPELINE_MIN` bytes are hashed on a second thread while the next chunk
/// is read and written, through `PIPELINE_BUFFERS` recycled `CHUNK`-sized
/// buffers (memory stays at about 1 MiB). On one CPU the threads would only
/// take turns, so the single-threaded loop runs there. (Measured when the
/// digest was SHA-256, on a quiet 2-CPU machine with alternating runs of
/// `scripts/bench-transfer.sh`: 541-657 MiB/s pipelined against 479-568
/// MiB/s single-threaded. BLAKE3 hashes about 2.5 times as fast, so the
/// gain is smaller now; the pipelined path is kept for slower CPUs.)
pub(crate) fn receive_body<R: Read, W: Write>(
    r: &mut R,
    len: u64,
    out: &mut W,
    progress: &ProgressBar,
) -> Result<FileDigest, Failure> {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    if len < PIPELINE_MIN || cpus < PIPELINE_CPUS {
        receive_body_serial(r, len, out, progress)
    } else {
        receive_body_pipelined(r, len, out, progress)
    }
}

/// Fewest CPUs on which `receive_body` hashes on a second thread.
pub(crate) const PIPELINE_CPUS: usize = 2;

/// `receive_body` with hashing on a second thread.
fn receive_body_pipelined<R: Read, W: Write>(
    r: &mut R,
    len: u64,
    out: &mut W,
    progress: &ProgressBar,
) -> Result<FileDigest, Failure> {
    thread::scope(|scope| {
        let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(PIPELINE_BUFFERS);
        let (free_tx, free_rx) = mpsc::sync_channel::<Vec<u8>>(PIPELINE_BUFFERS);
        for _ in 0..PIPELINE_BUFFERS {
            // The channel has room for every buffer and its receiver is alive.
            let _ = free_tx.send(vec![0u8; CHUNK]);
        }
        let hasher = scope.spawn(move || {
            let mut hasher = FileHasher::new();
            for (buf, n) in full_rx {
                hasher.update(&buf[..n]);
                // The reader may have stopped early; then the buffer is dropped.
                let _ = free_tx.send(buf);
            }
            hasher.finish()
        });
        let moved = move_chunks(r, len, out, progress, &free_rx, &full_tx);
        drop(full_tx);
        let digest = hasher.join().map_err(|_| local(hashing_stopped()))?;
        moved?;
        out.flush().map_err(local)?;
        Ok(digest)
    })
}

/// Bodies at least this long are hashed on a second thread.
pub(crate) const PIPELINE_MIN: u64 = 4 * CHUNK as u64;

/// Buffers in flight between the receiving and the hashing thread.
pub(crate) const PIPELINE_BUFFERS: usize = 4;

/// The receiving half of `receive_body`'s pipeline: fills a free buffer,
/// writes it out, and hands it to the hasher.
fn move_chunks<R: Read, W: Write>(
    r: &mut R,
    len: u64,
    out: &mut W,
    progress: &ProgressBar,
    free: &mpsc::Receiver<Vec<u8>>,
    full: &mpsc::SyncSender<(Vec<u8>, usize)>,
) -> Result<(), Failure> {
    let mut left = len;
    while left > 0 {
        let mut buf = free.recv().map_err(|_| local(hashing_stopped()))?;
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let mut n = 0;
        while n < want {
            match r.read(&mut buf[n..want]) {
                Ok(0) => return Err(remote(Error::Truncated)),
                Ok(got) => n += got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(remote(e)),
            }
        }
        out.write_all(&buf[..n]).map_err(local)?;
        left -= n as u64;
        progress.inc(n as u64);
        full.send((buf, n)).map_err(|_| local(hashing_stopped()))?;
    }
    Ok(())
}

fn hashing_stopped() -> Error {
    Error::Stopped("the hashing thread".into())
}

/// `receive_body` on one thread, for short bodies.
fn receive_body_serial<R: Read, W: Write>(
    r: &mut R,
    len: u64,
    out: &mut W,
    progress: &ProgressBar,
) -> Result<FileDigest, Failure> {
    let mut hasher = FileHasher::new();
    copy_hashed(r, len, out, &mut hasher, progress, CHUNK)?;
    out.flush().map_err(local)?;
    Ok(hasher.finish())
}

/// Copies exactly `len` bytes from `r` to `out` through a buffer of at
/// most `chunk` bytes, adding them to `hasher` and advancing `progress`.
fn copy_hashed<R: Read, W: Write>(
    r: &mut R,
    len: u64,
    out: &mut W,
    hasher: &mut FileHasher,
    progress: &ProgressBar,
    chunk: usize,
) -> Result<(), Failure> {
    let mut buf = vec![0u8; chunk.min(usize::try_from(len).unwrap_or(chunk)).max(1)];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match r.read(&mut buf[..want]) {
            Ok(0) => return Err(remote(Error::Truncated)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(remote(e)),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(local)?;
        left -= n as u64;
        progress.inc(n as u64);
    }
    Ok(())
}

/// Receives exactly `len` body bytes from a connection's reader into
/// `file` (open for reading and writing) at its current position, adding them to `hasher` and advancing
/// `progress`. What the reader has buffered goes first; on Linux the rest
/// moves socket -> pipe -> file with splice(2), so the bytes are copied
/// once, into the page cache, and never pass through our memory on the
/// way in; they are hashed by reading them back from the page cache,
/// `HASH_CHUNK` at a time. Elsewhere (or where splice is refused) a plain
/// read-write loop does the same.
pub(crate) fn receive_into(
    r: &mut BufReader<SharedStream>,
    len: u64,
    file: &mut File,
    hasher: &mut FileHasher,
    progress: &ProgressBar,
) -> std::result::Result<(), Failure> {
    let mut left = len;
    let buffered = r.buffer();
    let take = buffered
        .len()
        .min(usize::try_from(left).unwrap_or(usize::MAX));
    if take > 0 {
        file.write_all(&buffered[..take]).map_err(local)?;
        hasher.update(&buffered[..take]);
        r.consume(take);
        left -= take as u64;
        progress.inc(take as u64);
    }
    if left == 0 {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        left = splice::receive(r.get_ref().tcp(), left, file, hasher, progress)?;
    }
    // Not Linux, or splice refused this socket or file: copy through a
    // buffer. (1 MiB: on loopback into a file, 256 KiB took about 1.5 times
    // as long here.)
    copy_hashed(r, left, file, hasher, progress, RECV_CHUNK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{self, OpenOptions};
    use std::io::{BufWriter, Seek, SeekFrom};

    fn scratch() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
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
            assert_eq!(d, FileDigest::of(&data), "len {len}");
            assert_eq!(out, data, "len {len}");
            for f in [
                receive_body_serial::<&[u8], Vec<u8>>,
                receive_body_pipelined,
            ] {
                let mut out = Vec::new();
                let d = f(&mut &data[..], len as u64, &mut out, &bar).unwrap();
                assert_eq!(d, FileDigest::of(&data), "len {len}");
                assert_eq!(out, data, "len {len}");
                if len > 1 {
                    let mut short = &data[..len / 2];
                    let err = f(&mut short, len as u64, &mut Vec::new(), &bar)
                        .unwrap_err()
                        .into_error();
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
        let scratch = scratch();
        let dir = scratch.path();
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
        send_body_to_socket(&File::open(&path).unwrap(), 1_000_000, &mut w).unwrap();
        let err = send_body_to_socket(&File::open(&path).unwrap(), 4_000_000, &mut w).unwrap_err();
        assert!(err.to_string().contains("file shrank"), "{err}");
        // A range, positioned: the file's own offset is left where it was.
        let mut shared = File::open(&path).unwrap();
        shared.seek(SeekFrom::Start(7)).unwrap();
        w.write_all(b"range").unwrap();
        send_range_to_socket(&shared, 2_000_000, 500_000, &mut w).unwrap();
        assert_eq!(shared.stream_position().unwrap(), 7);
        drop(w);
        let got = reader.join().unwrap();
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[4..1_000_004], &data[..1_000_000]);
        let rest = &got[1_000_004..];
        assert_eq!(&rest[..3_000_000], &data[..]);
        assert_eq!(&rest[3_000_000..3_000_005], b"range");
        assert_eq!(&rest[3_000_005..], &data[2_000_000..2_500_000]);
    }

    /// A connection's reader whose peer sends `data` and then closes.
    fn sender(data: Vec<u8>) -> BufReader<SharedStream> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // The receiver may stop reading early; that is not our failure.
            let _ = s.write_all(&data);
        });
        let stream = std::net::TcpStream::connect(addr).unwrap();
        BufReader::new(SharedStream::new(std::sync::Arc::new(stream)))
    }

    #[test]
    fn receive_into_takes_buffered_bytes_then_the_socket_and_stops_at_len() {
        let scratch = scratch();
        let dir = scratch.path();
        let bar = ProgressBar::hidden();
        for (len, extra, prefix) in [(0usize, 5usize, 0u64), (10, 0, 3), (3_000_017, 11, 1000)] {
            let data: Vec<u8> = (0..len + extra).map(|i| (i * 7 % 251) as u8).collect();
            let mut r = sender(data.clone());
            // Something is buffered already, as after a header frame.
            r.fill_buf().unwrap();
            let path = dir.join("out");
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .unwrap();
            f.write_all(&vec![9u8; prefix as usize]).unwrap();
            let mut h = FileHasher::new();
            h.update(&vec![9u8; prefix as usize]);
            receive_into(&mut r, len as u64, &mut f, &mut h, &bar).unwrap();
            let mut want = vec![9u8; prefix as usize];
            want.extend_from_slice(&data[..len]);
            assert_eq!(h.finish(), FileDigest::of(&want), "len {len}");
            assert_eq!(fs::read(&path).unwrap(), want, "len {len}");
            assert_eq!(f.stream_position().unwrap(), want.len() as u64);
            // The bytes after the body are still there for the next frame.
            let mut rest = Vec::new();
            r.read_to_end(&mut rest).unwrap();
            assert_eq!(rest, &data[len..], "len {len}");
        }
        // A peer that closes early.
        let mut r = sender(vec![1u8; 100_000]);
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("short"))
            .unwrap();
        let err = receive_into(&mut r, 200_000, &mut f, &mut FileHasher::new(), &bar).unwrap_err();
        assert!(matches!(err, Failure::Remote(Error::Truncated)), "{err:?}");
    }

    #[test]
    fn receive_file_renames_only_on_match() {
        let scratch = scratch();
        let dir = scratch.path();
        let data = vec![7u8; 1_000_000];
        let good = FileDigest::of(&data);
        let dest = dir.join("f.bin");
        let bar = ProgressBar::hidden();

        let err = receive_file(
            &mut sender(data.clone()),
            data.len() as u64,
            FileDigest::of(b"other"),
            &dest,
            Overwrite::Never,
            &bar,
        )
        .unwrap_err();
        assert!(matches!(err, Error::HashMismatch { .. }));
        assert!(!dest.exists());

        let err = receive_file(
            &mut sender(data[..10].to_vec()),
            20,
            good,
            &dest,
            Overwrite::Never,
            &bar,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Truncated));
        assert_eq!(fs::read_dir(dir).unwrap().count(), 0, "temp file left over");

        receive_file(
            &mut sender(data.clone()),
            data.len() as u64,
            good,
            &dest,
            Overwrite::Never,
            &bar,
        )
        .unwrap();
        assert_eq!(fs::read(&dest).unwrap(), data);

        let err = receive_file(
            &mut sender(data.clone()),
            data.len() as u64,
            good,
            &dest,
            Overwrite::Never,
            &bar,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Io(ref e) if e.kind() == io::ErrorKind::AlreadyExists));
        assert_eq!(fs::read_dir(dir).unwrap().count(), 1);
    }
}
