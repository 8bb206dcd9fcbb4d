//! The repository folder a supernode serves: which names it holds (plain,
//! valid names of regular files, hidden ones never), and files opened for
//! sending with their BLAKE3 digest, cached by length and modification time.
//!
//! Lock: `DigestCache::map` guards the cache and is never held across I/O.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use super::lock;
use crate::digest::{self, FileDigest};
use crate::error::{Error, Result};
use crate::name::FileName;

/// True for a name a supernode never lists, serves, syncs or accepts: a
/// hidden file (`.netrc`, `.git`, our own temporary files).
pub(super) fn is_hidden(name: &FileName) -> bool {
    name.as_str().starts_with('.')
}

/// A repository folder and the digests of its files.
pub(super) struct Repo {
    dir: PathBuf,
    digests: DigestCache,
}

/// A repository file opened for sending, with its length, and its digest
/// if the cache knows it.
pub(super) struct Outgoing {
    pub(super) name: FileName,
    pub(super) file: File,
    pub(super) len: u64,
    mtime: SystemTime,
    pub(super) digest: Option<FileDigest>,
}

impl Repo {
    /// The repository in `dir`, which must be a folder.
    pub(super) fn open(dir: &Path) -> Result<Repo> {
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => {
                // What a supernode killed mid-upload left behind.
                let stale = crate::transfer::remove_stale(dir);
                if stale > 0 {
                    crate::diag!(
                        "removed {stale} temporary file{} left by an earlier run in {}",
                        if stale == 1 { "" } else { "s" },
                        dir.display()
                    );
                }
                Ok(Repo {
                    dir: dir.to_path_buf(),
                    digests: DigestCache::default(),
                })
            }
            Ok(_) => Err(Error::local_path(
                dir,
                "not a folder (the repository must be one)",
            )),
            Err(e) => Err(Error::from(e).doing(format!("repository {}", dir.display()))),
        }
    }

    /// Where `name` is (or would be) stored.
    pub(super) fn path_of(&self, name: &FileName) -> PathBuf {
        name.within(&self.dir)
    }

    /// The shared names, sorted: plain, valid UTF-8 names of regular files
    /// that are not hidden. Anything else (folders, links, our temporary
    /// files, dotfiles) is skipped.
    pub(super) fn scan(&self) -> Result<Vec<FileName>> {
        let mut names = Vec::new();
        for entry in walkdir::WalkDir::new(&self.dir).min_depth(1).max_depth(1) {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if e.depth() == 0 => {
                    let what = format!("reading {}", self.dir.display());
                    let text = e.to_string();
                    return Err(match e.into_io_error() {
                        Some(io) => Error::from(io).doing(what),
                        None => Error::local_path(&self.dir, text),
                    });
                }
                // An entry that vanished or cannot be read is not listed.
                Err(_) => continue,
            };
            if !entry.file_type().is_file() {
                continue;
            }
            // A name that is not valid UTF-8 would not survive the trip.
            let Some(text) = entry.file_name().to_str() else {
                continue;
            };
            if let Ok(name) = FileName::new(text)
                && !is_hidden(&name)
            {
                names.push(name);
            }
        }
        names.sort();
        self.digests.retain(&names);
        Ok(names)
    }

    /// Opens `name` for sending if it is a shared regular file here, with
    /// its digest if the cache has it for this length and modification time.
    pub(super) fn open_file(&self, name: &FileName) -> Result<Option<Outgoing>> {
        if is_hidden(name) {
            return Ok(None);
        }
        let path = self.path_of(name);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let meta = file.metadata()?;
        let (len, mtime) = (meta.len(), meta.modified()?);
        let digest = self.digests.get(name, len, mtime);
        Ok(Some(Outgoing {
            name: name.clone(),
            file,
            len,
            mtime,
            digest,
        }))
    }

    /// The digest of an opened file: the cached one, or hashed now with
    /// positioned reads (so a sendfile on the same file can run meanwhile)
    /// and cached. An error if the file changed while it was hashed.
    pub(super) fn digest(&self, out: &Outgoing) -> Result<FileDigest> {
        if let Some(d) = out.digest {
            return Ok(d);
        }
        let (d, n) = digest::hash_file_at(&out.file)?;
        let meta = out.file.metadata()?;
        if n != out.len || meta.len() != out.len || meta.modified()? != out.mtime {
            return Err(Error::local_path(
                out.name.as_str(),
                "changed while being hashed",
            ));
        }
        self.digests.put(&out.name, out.len, out.mtime, d);
        Ok(d)
    }

    /// Records the digest of a file just received and verified.
    pub(super) fn remember(&self, name: &FileName, digest: FileDigest) {
        if let Ok(meta) = fs::metadata(self.path_of(name))
            && let Ok(mtime) = meta.modified()
        {
            self.digests.put(name, meta.len(), mtime, digest);
        }
    }
}

/// Digests of repository files, keyed by name and valid while the file's
/// length and modification time are unchanged.
#[derive(Default)]
struct DigestCache {
    map: Mutex<HashMap<FileName, (u64, SystemTime, FileDigest)>>,
}

impl DigestCache {
    fn get(&self, name: &FileName, len: u64, mtime: SystemTime) -> Option<FileDigest> {
        match lock(&self.map).get(name) {
            Some(&(l, t, d)) if l == len && t == mtime => Some(d),
            _ => None,
        }
    }

    fn put(&self, name: &FileName, len: u64, mtime: SystemTime, digest: FileDigest) {
        lock(&self.map).insert(name.clone(), (len, mtime, digest));
    }

    /// Forgets files no longer in the repository.
    fn retain(&self, names: &[FileName]) {
        let keep: HashSet<&FileName> = names.iter().collect();
        lock(&self.map).retain(|n, _| keep.contains(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_files_folders_and_temp_files_are_not_shared() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::create_dir_all(dir.join("sub")).unwrap();
        for f in ["b.txt", "a.txt", ".netrc", ".peerkit-tmp-1-2"] {
            fs::write(dir.join(f), f).unwrap();
        }
        let repo = Repo::open(dir).unwrap();
        let names: Vec<String> = repo.scan().unwrap().iter().map(|n| n.to_string()).collect();
        assert_eq!(names, ["a.txt", "b.txt"]);
        let hidden = FileName::new(".netrc").unwrap();
        assert!(repo.open_file(&hidden).unwrap().is_none());
        let shown = FileName::new("a.txt").unwrap();
        let out = repo.open_file(&shown).unwrap().unwrap();
        assert_eq!((out.len, out.digest), (5, None));
        let d = repo.digest(&out).unwrap();
        assert_eq!(d, FileDigest::of(b"a.txt"));
        assert_eq!(repo.open_file(&shown).unwrap().unwrap().digest, Some(d));
        // A file that changes between opening and hashing is not vouched for.
        let b = FileName::new("b.txt").unwrap();
        let out = repo.open_file(&b).unwrap().unwrap();
        fs::write(dir.join("b.txt"), "b.txt, longer now").unwrap();
        let err = repo.digest(&out).unwrap_err();
        assert!(
            matches!(&err, Error::Local(crate::error::Local::Path { path, .. }) if path == Path::new("b.txt")),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "b.txt: changed while being hashed");
        assert!(matches!(
            Repo::open(&dir.join("a.txt")),
            Err(Error::Local(crate::error::Local::Path { .. }))
        ));
    }
}
