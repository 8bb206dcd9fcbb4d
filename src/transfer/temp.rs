//! Temporary files in the target folder, renamed into place only once
//! their digest matches, and removed if dropped before.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::ProgressBar;

use super::{Failure, receive_into};
use crate::digest::{FileDigest, FileHasher};
use crate::error::{Error, Result};
use crate::name::TEMP_PREFIX;
use crate::net::SharedStream;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file under a temporary name in its final folder. Dropped without
/// `persist*`, it is removed, so a failed transfer leaves nothing behind.
#[derive(Debug)]
pub(crate) struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// Creates `dir/.peerkit-tmp-<pid>-<n>`, never reusing an existing name.
    pub(crate) fn create_in(dir: &Path) -> io::Result<TempFile> {
        loop {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
            // Readable too: `receive_into` hashes what it wrote by reading it back.
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
            {
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
    pub(crate) fn file(&mut self) -> &mut File {
        // Only `persist*` take the file, and they consume `self`.
        self.file
            .as_mut()
            .expect("temp file is open until persisted")
    }

    /// The temporary path.
    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Renames onto `dest`, replacing whatever is there.
    pub(crate) fn persist(mut self, dest: &Path) -> io::Result<()> {
        self.file.take();
        fs::rename(&self.path, dest)?;
        self.path = PathBuf::new();
        Ok(())
    }

    /// Moves to `dest` only if nothing is there (atomically: a hard link
    /// cannot replace an existing name). `ErrorKind::AlreadyExists` otherwise.
    pub(crate) fn persist_new(mut self, dest: &Path) -> io::Result<()> {
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

/// Removes the temporary files in `dir` that a process no longer running
/// left (killed with SIGKILL mid-transfer, or the machine stopped): those
/// named `.peerkit-tmp-<pid>-<n>` whose `<pid>` is not alive. Returns how
/// many went. A live process's files are never touched.
pub(crate) fn remove_stale(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TEMP_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists();
        if !alive && fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Whether receiving may replace an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overwrite {
    /// Replace whatever is at the destination.
    Replace,
    /// Refuse (with `AlreadyExists`) if the destination exists.
    Never,
}

/// Receives a `len`-byte body from a connection's reader into `dest`,
/// through a temporary file in `dest`'s folder that becomes `dest` only if
/// its BLAKE3 digest is `expected`.
pub(crate) fn receive_file(
    r: &mut BufReader<SharedStream>,
    len: u64,
    expected: FileDigest,
    dest: &Path,
    overwrite: Overwrite,
    progress: &ProgressBar,
) -> Result<()> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    super::ensure_room(dir, len)?;
    let mut tmp = TempFile::create_in(dir)?;
    let mut hasher = FileHasher::new();
    receive_into(r, len, tmp.file(), &mut hasher, progress).map_err(Failure::into_error)?;
    let actual = hasher.finish();
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

    #[test]
    fn stale_temp_files_of_dead_processes_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // No process has pid 4194305 (above Linux's pid_max).
        fs::write(d.join(format!("{TEMP_PREFIX}4194305-0")), b"x").unwrap();
        let mine = TempFile::create_in(d).unwrap();
        fs::write(d.join(format!("{TEMP_PREFIX}bt-abc.part")), b"x").unwrap();
        fs::write(d.join("kept.txt"), b"x").unwrap();
        assert_eq!(remove_stale(d), 1);
        let mut left: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(mine.path().exists());
    }
}
