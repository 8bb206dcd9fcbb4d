//! A torrent's bytes on disk: the torrent's files laid end to end, read and
//! written at torrent offsets with positioned I/O (so connection threads
//! share one `Storage`). A download goes to `DIR/.peerkit-tmp-bt-<hash>.part`
//! (a file, or a folder holding the torrent's tree) and is renamed to
//! `DIR/NAME` once every piece has passed its SHA-1 check; a restarted
//! download re-checks that partial copy and keeps its good pieces.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha1::{Digest as _, Sha1};

use crate::error::{Error, Result, ResultExt};
use crate::name::TEMP_PREFIX;

use super::metainfo::{Info, InfoHash};

/// Where a torrent's bytes live.
#[derive(Debug)]
pub(super) struct Storage {
    /// One handle per file, in torrent order, with its offset and length.
    files: Vec<(File, u64, u64)>,
    /// The partial copy and its final name while downloading.
    pending: Mutex<Option<(PathBuf, PathBuf)>>,
    /// The partial copy was created by this `open`: it holds no piece yet.
    fresh: bool,
}

/// The partial download of torrent `hash` in `dir`.
pub(super) fn partial_path(dir: &Path, hash: InfoHash) -> PathBuf {
    dir.join(format!("{TEMP_PREFIX}bt-{hash}.part"))
}

impl Storage {
    /// The complete data at `root` (the file itself or the torrent's
    /// folder), opened read-only.
    pub(super) fn existing(root: &Path, info: &Info) -> Result<Storage> {
        let mut files = Vec::with_capacity(info.files.len());
        for f in &info.files {
            let p = info.file_path(root, f);
            let h = File::open(&p).doing(|| p.display().to_string())?;
            let len = h.metadata()?.len();
            if len != f.length {
                return Err(Error::local_path(
                    p,
                    format!("holds {len} bytes, the torrent says {}", f.length),
                ));
            }
            files.push((h, f.offset, f.length));
        }
        Ok(Storage {
            files,
            pending: Mutex::new(None),
            fresh: false,
        })
    }

    /// Opens the download of `info` into `dir`: the complete copy under its
    /// final name if there is one, else the partial copy (created, or kept
    /// from an earlier run). Returns whether the final copy was found.
    pub(super) fn open(dir: &Path, info: &Info) -> Result<(Storage, bool)> {
        let dest = dir.join(&info.name);
        if dest.exists() {
            return Ok((Storage::existing(&dest, info)?, true));
        }
        let partial = partial_path(dir, info.hash());
        let fresh = !partial.exists();
        let mut files = Vec::with_capacity(info.files.len());
        for f in &info.files {
            let p = info.file_path(&partial, f);
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent)?;
            }
            let h = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&p)
                .doing(|| p.display().to_string())?;
            if h.metadata()?.len() != f.length {
                h.set_len(f.length)?;
            }
            files.push((h, f.offset, f.length));
        }
        let s = Storage {
            files,
            pending: Mutex::new(Some((partial, dest))),
            fresh,
        };
        Ok((s, false))
    }

    /// Calls `each(file, position in file, range in buf)` for the parts of
    /// `[offset, offset + len)` in each file.
    fn spans(
        &self,
        offset: u64,
        len: usize,
        mut each: impl FnMut(&File, u64, std::ops::Range<usize>) -> io::Result<()>,
    ) -> io::Result<()> {
        let end = offset + len as u64;
        let first = self.files.partition_point(|(_, o, l)| o + l <= offset);
        for (f, o, l) in &self.files[first..] {
            if *o >= end {
                break;
            }
            let from = offset.max(*o);
            let to = end.min(o + l);
            if from < to {
                each(
                    f,
                    from - o,
                    (from - offset) as usize..(to - offset) as usize,
                )?;
            }
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at torrent offset `offset`.
    pub(super) fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.spans(offset, buf.len(), |f, at, r| {
            f.read_exact_at(&mut buf[r], at)
        })
    }

    /// Writes `data` at torrent offset `offset`.
    pub(super) fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.spans(offset, data.len(), |f, at, r| f.write_all_at(&data[r], at))
    }

    /// Whether piece `i` on disk matches its SHA-1 (read in 64 KiB steps).
    pub(super) fn check_piece(&self, info: &Info, i: u32) -> io::Result<bool> {
        self.check_piece_from(info, i, Sha1::new(), 0)
    }

    /// Whether piece `i` matches its SHA-1, given `h` over its first
    /// `from` bytes: the rest is read from disk.
    pub(super) fn check_piece_from(
        &self,
        info: &Info,
        i: u32,
        mut h: Sha1,
        from: u64,
    ) -> io::Result<bool> {
        let start = u64::from(i) * u64::from(info.piece_len);
        let len = info.piece_size(i) as u64;
        let mut done = from.min(len);
        let mut buf = vec![0u8; (len - done).min(64 * 1024) as usize];
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            self.read_at(start + done, &mut buf[..n])?;
            h.update(&buf[..n]);
            done += n as u64;
        }
        let digest: [u8; 20] = h.finalize().into();
        Ok(info.pieces.get(i as usize) == Some(&digest))
    }

    /// Whether the partial copy was created by [`Storage::open`] (so
    /// no piece is there to check).
    pub(super) fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// Every piece checked: which are intact.
    pub(super) fn verify(&self, info: &Info) -> io::Result<Vec<bool>> {
        (0..info.piece_count())
            .map(|i| self.check_piece(info, i))
            .collect()
    }

    /// Renames the partial copy to its final name (refusing to replace
    /// something that appeared there meanwhile); returns the final path.
    pub(super) fn finish(&self) -> Result<Option<PathBuf>> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some((partial, dest)) = pending.take() else {
            return Ok(None);
        };
        for (f, _, _) in &self.files {
            let _ = f.sync_data();
        }
        if dest.exists() {
            let e = Error::local_path(&dest, "appeared during the download");
            *pending = Some((partial, dest));
            return Err(e);
        }
        fs::rename(&partial, &dest)?;
        Ok(Some(dest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::bt::metainfo::{Metainfo, create};

    #[test]
    fn a_folder_download_spans_files_and_renames_when_done() {
        let dir = std::env::temp_dir().join(format!("peerkit-btstore-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("src/d/n")).unwrap();
        fs::write(dir.join("src/d/a"), vec![1u8; 10_000]).unwrap();
        fs::write(dir.join("src/d/n/b"), vec![2u8; 30_000]).unwrap();
        let (t, _) = create(&dir.join("src/d"), Some(16384), &[]).unwrap();
        let m = Metainfo::parse(&t).unwrap();
        let src = Storage::existing(&dir.join("src/d"), &m.info).unwrap();
        assert!(src.verify(&m.info).unwrap().iter().all(|&ok| ok));
        let out = dir.join("out");
        fs::create_dir_all(&out).unwrap();
        let (dst, complete) = Storage::open(&out, &m.info).unwrap();
        assert!(!complete && dst.is_fresh());
        assert_eq!(dst.verify(&m.info).unwrap(), vec![false; 3]);
        let mut buf = vec![0u8; 40_000];
        src.read_at(0, &mut buf).unwrap();
        dst.write_at(0, &buf).unwrap();
        assert!(dst.verify(&m.info).unwrap().iter().all(|&ok| ok));
        let path = dst.finish().unwrap().unwrap();
        assert_eq!(fs::read(path.join("n/b")).unwrap(), vec![2u8; 30_000]);
        let (_, complete) = Storage::open(&out, &m.info).unwrap();
        assert!(complete);
        fs::remove_dir_all(&dir).unwrap();
    }
}
