//! Piece storage: a shared file read in place, or a download written piece by
//! piece into `DIR/.peerkit-tmp-bt-<swarm id>.part`, which a restarted peer
//! re-verifies (keeping the good pieces) and which is renamed to `DIR/NAME`
//! once every piece has passed its check.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::name::TEMP_PREFIX;
use crate::net::SharedStream;
use crate::transfer;

use super::manifest::{Bitfield, Manifest, PieceIndex, SwarmId};

/// Bytes per write of a piece into the file. The page cache sizes its
/// folios by the write: one 256 KiB write takes a 256 KiB folio, which
/// the allocator carves from large free blocks. On a virtual machine whose
/// balloon reports free memory to the host (free page reporting), those
/// blocks are the ones handed back, so each is faulted in again by the
/// host as it is filled: writing 16 files of 128 MiB in 256 KiB writes
/// took 3.9-4.4 s on ext4 here, in 16 KiB writes 1.5-1.8 s (64 KiB:
/// 1.9-2.9 s). A few more calls per piece cost little anywhere else.
const WRITE_CHUNK: usize = 16 * 1024;

/// Where a swarm's file lives on disk. Reads, writes and sends are
/// positioned (`pread`/`pwrite`/`sendfile` at an offset), so any number of
/// threads share one `Store` with no lock around reads and sends, and the
/// open handle keeps working across the final rename: an upload blocked on
/// a peer that vanished never holds up the download's end.
///
/// Piece writes go one at a time (`writing`): each `pwrite` takes the
/// file's inode lock in the kernel, whose waiters spin while its holder
/// copies. With 16 download connections per peer, that spinning was ~4 %
/// of a 16-fetcher swarm's CPU time (`perf`); waiting on a mutex sleeps.
#[derive(Debug)]
pub(super) struct Store {
    file: File,
    manifest: Arc<Manifest>,
    /// The partial file while downloading; `None` once complete. Locked
    /// to read it, and by `finish` for the link or rename; never across
    /// I/O on the file.
    partial: Mutex<Option<PathBuf>>,
    /// Held for the whole of a piece's write, never for anything else.
    writing: Mutex<()>,
    dest: PathBuf,
}

/// The partial-download file of swarm `id` in `dir`.
pub fn partial_path(dir: &Path, id: SwarmId) -> PathBuf {
    dir.join(format!("{TEMP_PREFIX}bt-{id}.part"))
}

impl Store {
    /// A complete file shared in place, opened read-only.
    pub(super) fn shared(path: &Path, manifest: Arc<Manifest>) -> Result<Store> {
        Ok(Store::new(
            File::open(path)?,
            manifest,
            None,
            path.to_path_buf(),
        ))
    }

    fn new(file: File, manifest: Arc<Manifest>, partial: Option<PathBuf>, dest: PathBuf) -> Store {
        Store {
            file,
            manifest,
            partial: Mutex::new(partial),
            writing: Mutex::new(()),
            dest,
        }
    }

    /// Opens the download of `manifest` into `dir` and returns the pieces
    /// already there and intact. If `DIR/NAME` exists it must be the
    /// complete file; otherwise pieces go to the partial file, which is
    /// created or, if a previous run left it, checked piece by piece.
    pub(super) fn open(dir: &Path, manifest: Arc<Manifest>) -> Result<(Store, Bitfield)> {
        let dest = manifest.name().within(dir);
        if dest.exists() {
            let file = File::open(&dest)?;
            let have = verify(&file, &manifest)?;
            if !have.is_complete() {
                return Err(Error::local_path(
                    &dest,
                    format!(
                        "exists and is not this swarm's file ({} of {} pieces match); move it away",
                        have.count(),
                        have.len()
                    ),
                ));
            }
            return Ok((Store::new(file, manifest, None, dest), have));
        }
        let partial = partial_path(dir, manifest.id());
        let existed = partial.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&partial)?;
        if file.metadata()?.len() != manifest.size() {
            file.set_len(manifest.size())?;
        }
        let have = if existed {
            verify(&file, &manifest)?
        } else {
            manifest.empty_bitfield()
        };
        Ok((Store::new(file, manifest, Some(partial), dest), have))
    }

    /// Sends the `len` bytes at `offset` in the file to the socket behind
    /// `w` (after what `w` holds), straight from the page cache
    /// (sendfile(2) on Linux).
    pub(super) fn send_at(
        &self,
        offset: u64,
        len: u64,
        w: &mut BufWriter<SharedStream>,
    ) -> Result<()> {
        transfer::send_range_to_socket(&self.file, offset, len, w)
    }

    /// Where pieces are written: the partial file, or the complete one.
    pub(super) fn path(&self) -> PathBuf {
        let partial = self.partial.lock().unwrap_or_else(PoisonError::into_inner);
        partial.clone().unwrap_or_else(|| self.dest.clone())
    }

    /// Writes a verified piece in place, `WRITE_CHUNK` bytes per call,
    /// while no other piece is being written.
    pub(super) fn write_piece(&self, i: PieceIndex, data: &[u8]) -> io::Result<()> {
        let start = self.manifest.offset(i);
        let _one = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        for (k, chunk) in data.chunks(WRITE_CHUNK).enumerate() {
            self.file
                .write_all_at(chunk, start + (k * WRITE_CHUNK) as u64)?;
        }
        Ok(())
    }

    /// Renames the partial file to `DIR/NAME` (refusing to replace a file
    /// that appeared meanwhile) and returns the final path.
    ///
    /// Uploads keep sending from the open handle meanwhile: the link and
    /// the rename move names, not the file.
    pub(super) fn finish(&self) -> Result<PathBuf> {
        let mut partial = self.partial.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(from) = partial.as_ref() {
            match fs::hard_link(from, &self.dest) {
                Ok(()) => {
                    let _ = fs::remove_file(from);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(Error::local_path(
                        &self.dest,
                        "appeared during the download",
                    ));
                }
                // File systems without hard links: a plain rename.
                Err(_) => fs::rename(from, &self.dest)?,
            }
            *partial = None;
        }
        Ok(self.dest.clone())
    }
}

/// Checks every piece of `file` against the manifest.
fn verify(file: &File, m: &Manifest) -> Result<Bitfield> {
    let mut have = m.empty_bitfield();
    let len = file.metadata()?.len();
    let mut buf = vec![0u8; m.piece_size() as usize];
    for i in m.indices() {
        let n = m.piece_len(i) as usize;
        let off = m.offset(i);
        if off + n as u64 > len {
            break;
        }
        file.read_exact_at(&mut buf[..n], off)?;
        if Digest::of(&buf[..n]) == m.piece_hash(i) {
            have.set(i);
        }
    }
    Ok(have)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Vec<u8> {
        (0..50_000u32).map(|i| (i * 7 % 256) as u8).collect()
    }

    #[test]
    fn download_resume_and_finish() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("f.bin"), data()).unwrap();
        let m = Arc::new(Manifest::from_file(&src.join("f.bin"), Some(16384)).unwrap());
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();

        let (store, have) = Store::open(&out, m.clone()).unwrap();
        assert_eq!(have.count(), 0);
        let d = data();
        for i in [0u32, 2] {
            let i = m.index(i).unwrap();
            let off = m.offset(i) as usize;
            store
                .write_piece(i, &d[off..off + m.piece_len(i) as usize])
                .unwrap();
        }
        drop(store);

        // A restarted peer finds pieces 0 and 2 and nothing else.
        let (store, have) = Store::open(&out, m.clone()).unwrap();
        assert_eq!(
            (have.has(0), have.has(1), have.has(2), have.has(3)),
            (true, false, true, false)
        );
        for i in [1u32, 3] {
            let i = m.index(i).unwrap();
            let off = m.offset(i) as usize;
            store
                .write_piece(i, &d[off..off + m.piece_len(i) as usize])
                .unwrap();
        }
        let path = store.finish().unwrap();
        assert_eq!(fs::read(&path).unwrap(), d);
        assert!(!partial_path(&out, m.id()).exists());
        // The open handle (what uploads send from) still reads after the
        // rename.
        let mut b = [0u8; 4];
        store.file.read_exact_at(&mut b, 16384).unwrap();
        assert_eq!(b, d[16384..16388]);

        // A complete file under the final name is taken as is.
        let (_, have) = Store::open(&out, m.clone()).unwrap();
        assert!(have.is_complete());
        // A different file under that name is refused, not overwritten.
        fs::write(out.join("f.bin"), b"something else").unwrap();
        match Store::open(&out, m) {
            Err(Error::Local(crate::error::Local::Path { path, .. })) => {
                assert_eq!(path, out.join("f.bin"));
            }
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("a different file was taken"),
        }
        assert_eq!(fs::read(out.join("f.bin")).unwrap(), b"something else");
    }
}
