//! File transfer with integrity: the `Digest` type, hashing, streaming a
//! file body after a header, and receiving one into a temporary file that is
//! renamed into place only after its SHA-256 matches.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::name::TEMP_PREFIX;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest of a byte slice.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// Lower-case hexadecimal, 64 characters.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    /// Parses 64 hexadecimal characters.
    pub fn from_hex(s: &str) -> Option<Digest> {
        let s = s.as_bytes();
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(Digest(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// Streaming SHA-256.
#[derive(Default, Clone)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn new() -> Hasher {
        Hasher::default()
    }
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

/// Size of the buffer used to move file bytes.
pub const CHUNK: usize = 256 * 1024;

/// Hashes everything `r` yields; returns the digest and the byte count.
pub fn hash_reader<R: Read>(mut r: R) -> io::Result<(Digest, u64)> {
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hasher.finish(), total))
}

/// Hashes a file; returns the digest and its length.
pub fn hash_file(path: &Path) -> io::Result<(Digest, u64)> {
    hash_reader(File::open(path)?)
}

/// Streams exactly `len` bytes of `file` to `w` (sendfile on Linux when `w`
/// is a socket) and flushes. A file that shrank meanwhile is an error.
pub fn send_body<W: Write>(file: File, len: u64, w: &mut W) -> Result<()> {
    let sent = io::copy(&mut file.take(len), w)?;
    if sent != len {
        return Err(Error::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("file shrank while sending: {sent} of {len} bytes"),
        )));
    }
    w.flush()?;
    Ok(())
}

/// Reads exactly `len` bytes from `r` into `out`, hashing them on the way
/// and advancing `progress`. EOF before `len` bytes is `Error::Truncated`.
pub fn receive_body<R: Read, W: Write>(
    r: &mut R,
    len: u64,
    out: &mut W,
    progress: &ProgressBar,
) -> Result<Digest> {
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; CHUNK];
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
