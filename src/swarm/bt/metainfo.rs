//! BitTorrent v1 metainfo (BEP 3): `.torrent` files read and written,
//! single-file and multi-file. Parsing validates once at the edge: every
//! path component is a plain name (no `..`, `/`, NUL, nothing empty or
//! absolute), the piece length is a power of two in bounds, and the file
//! lengths agree with the number of piece hashes; code past [`Info::parse`]
//! cannot hold a torrent that would write outside its folder.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha1::{Digest as _, Sha1};

use crate::error::{Error, Local, Result};

use super::bencode::{self, Value, b, dict};

/// Smallest piece length accepted (one 16 KiB block).
pub const MIN_PIECE_LEN: u32 = 16 * 1024;
/// Largest piece length accepted.
pub const MAX_PIECE_LEN: u32 = 64 * 1024 * 1024;
/// Most files in one torrent.
pub const MAX_FILES: usize = 100_000;
/// Largest metainfo file read (and largest info dict fetched from peers).
pub const MAX_TORRENT_LEN: usize = 16 * 1024 * 1024;
/// Longest path component, in bytes.
const MAX_COMPONENT: usize = 255;

/// The SHA-1 of a torrent's info dictionary, as encoded in the torrent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

impl InfoHash {
    /// The SHA-1 of `bytes`.
    pub fn of(bytes: &[u8]) -> InfoHash {
        InfoHash(Sha1::digest(bytes).into())
    }

    /// From 40 hex digits or 32 base32 characters (magnet links use both).
    pub fn parse(s: &str) -> Option<InfoHash> {
        let mut out = [0u8; 20];
        match s.len() {
            40 => {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
                }
            }
            32 => {
                let mut acc = 0u64;
                let mut bits = 0;
                let mut n = 0;
                for c in s.bytes() {
                    let v = match c.to_ascii_uppercase() {
                        c @ b'A'..=b'Z' => c - b'A',
                        c @ b'2'..=b'7' => c - b'2' + 26,
                        _ => return None,
                    };
                    acc = (acc << 5) | u64::from(v);
                    bits += 5;
                    if bits >= 8 {
                        bits -= 8;
                        *out.get_mut(n)? = (acc >> bits) as u8;
                        n += 1;
                    }
                }
            }
            _ => return None,
        }
        Some(InfoHash(out))
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

/// One file of a torrent: its path below the torrent's folder (validated
/// components), its length and where it starts in the torrent's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub path: Vec<String>,
    pub length: u64,
    pub offset: u64,
}

/// A validated info dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The file's name, or the folder's for a multi-file torrent.
    pub name: String,
    pub piece_len: u32,
    pub pieces: Vec<[u8; 20]>,
    /// One entry with an empty path for a single-file torrent.
    pub files: Vec<FileEntry>,
    /// True for a multi-file (folder) torrent.
    pub multi: bool,
    pub total: u64,
    /// The info dict's bytes exactly as received.
    pub raw: Vec<u8>,
}

fn bad(why: impl Into<String>) -> Error {
    Error::Decode(format!("torrent: {}", why.into()))
}

/// A folder walk's error as the library's: an I/O error on the path it
/// names, or (a link loop) that path is not what it must be.
fn walk_error(e: walkdir::Error, root: &Path) -> Error {
    let path = e.path().unwrap_or(root).to_path_buf();
    let text = e.to_string();
    match e.into_io_error() {
        Some(io) => Error::from(io).doing(path.display().to_string()),
        None => Error::local_path(path, text),
    }
}

/// A path component from a torrent: a plain name.
pub fn check_component(c: &[u8]) -> Result<String> {
    let s = std::str::from_utf8(c).map_err(|_| bad("a path component is not UTF-8"))?;
    if s.is_empty() {
        return Err(bad("an empty path component"));
    }
    if s == "." || s == ".." {
        return Err(bad(format!("path component {s:?} leaves the folder")));
    }
    if s.contains(['/', '\\', '\0']) {
        return Err(bad(format!(
            "path component {s:?} holds a separator or NUL (absolute or nested path)"
        )));
    }
    if s.len() > MAX_COMPONENT {
        return Err(bad(format!("a path component over {MAX_COMPONENT} bytes")));
    }
    Ok(s.to_string())
}

/// Checks a piece length: a power of two from [`MIN_PIECE_LEN`] to [`MAX_PIECE_LEN`].
pub fn check_piece_len(n: u64) -> Result<u32> {
    if !n.is_power_of_two() || !(MIN_PIECE_LEN as u64..=MAX_PIECE_LEN as u64).contains(&n) {
        return Err(bad(format!(
            "piece length {n} is not a power of two from {MIN_PIECE_LEN} to {MAX_PIECE_LEN}"
        )));
    }
    Ok(n as u32)
}

fn length(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| bad(format!("{what} is negative")))
}

impl Info {
    /// Parses and validates an info dictionary's bytes.
    pub fn parse(raw: &[u8]) -> Result<Info> {
        if raw.len() > MAX_TORRENT_LEN {
            return Err(bad("info dictionary too large"));
        }
        let v = bencode::decode(raw)?;
        let d = bencode::as_dict(&v, "info")?;
        let name = check_component(bencode::bytes(d, "name")?)?;
        let piece_len = check_piece_len(length(bencode::int(d, "piece length")?, "piece length")?)?;
        let hashes = bencode::bytes(d, "pieces")?;
        if hashes.len() % 20 != 0 {
            return Err(bad("\"pieces\" is not a whole number of SHA-1 hashes"));
        }
        let pieces: Vec<[u8; 20]> = hashes
            .chunks_exact(20)
            .map(|c| {
                let mut h = [0u8; 20];
                h.copy_from_slice(c);
                h
            })
            .collect();
        let (files, multi) = match (bencode::get(d, "length"), bencode::get(d, "files")) {
            (Some(_), Some(_)) => return Err(bad("both \"length\" and \"files\"")),
            (Some(_), None) => {
                let length = length(bencode::int(d, "length")?, "length")?;
                let f = FileEntry {
                    path: Vec::new(),
                    length,
                    offset: 0,
                };
                (vec![f], false)
            }
            (None, Some(_)) => {
                let list = bencode::list(d, "files")?;
                if list.is_empty() || list.len() > MAX_FILES {
                    return Err(bad(format!("a folder torrent of {} files", list.len())));
                }
                let mut files = Vec::with_capacity(list.len());
                let mut offset = 0u64;
                for f in list {
                    let fd = bencode::as_dict(f, "a file entry")?;
                    let len = length(bencode::int(fd, "length")?, "a file length")?;
                    let comps = bencode::list(fd, "path")?;
                    if comps.is_empty() {
                        return Err(bad("a file with an empty path"));
                    }
                    let mut path = Vec::with_capacity(comps.len());
                    for c in comps {
                        match c {
                            Value::Bytes(c) => path.push(check_component(c)?),
                            _ => return Err(bad("a path component is not a string")),
                        }
                    }
                    files.push(FileEntry {
                        path,
                        length: len,
                        offset,
                    });
                    offset = offset
                        .checked_add(len)
                        .ok_or_else(|| bad("file lengths overflow"))?;
                }
                let mut paths: Vec<&Vec<String>> = files.iter().map(|f| &f.path).collect();
                paths.sort();
                for w in paths.windows(2) {
                    if w[1].starts_with(w[0]) {
                        return Err(bad(format!("path {} given twice", w[0].join("/"))));
                    }
                }
                (files, true)
            }
            (None, None) => return Err(bad("neither \"length\" nor \"files\"")),
        };
        let total: u64 = files.iter().map(|f| f.length).sum();
        let want = total.div_ceil(u64::from(piece_len));
        if total == 0 || want != pieces.len() as u64 {
            return Err(bad(format!(
                "{total} bytes need {want} pieces of {piece_len} bytes, the torrent has {}",
                pieces.len()
            )));
        }
        Ok(Info {
            name,
            piece_len,
            pieces,
            files,
            multi,
            total,
            raw: raw.to_vec(),
        })
    }

    pub fn hash(&self) -> InfoHash {
        InfoHash::of(&self.raw)
    }

    pub fn piece_count(&self) -> u32 {
        self.pieces.len() as u32
    }

    /// Length of piece `i`.
    pub fn piece_size(&self, i: u32) -> u32 {
        let start = u64::from(i) * u64::from(self.piece_len);
        (self.total - start).min(u64::from(self.piece_len)) as u32
    }

    /// Where file `f` lives below `root` (the file itself, or the folder).
    pub fn file_path(&self, root: &Path, f: &FileEntry) -> PathBuf {
        let mut p = root.to_path_buf();
        for c in &f.path {
            p.push(c);
        }
        p
    }
}

/// A validated `.torrent`.
#[derive(Debug, Clone)]
pub struct Metainfo {
    pub info: Info,
    pub hash: InfoHash,
    /// Tracker URLs: `announce`, then `announce-list` tiers in order.
    pub trackers: Vec<String>,
}

impl Metainfo {
    /// Parses a `.torrent`'s bytes.
    pub fn parse(bytes: &[u8]) -> Result<Metainfo> {
        if bytes.len() > MAX_TORRENT_LEN {
            return Err(bad("file too large"));
        }
        let v = bencode::decode(bytes)?;
        let d = bencode::as_dict(&v, "torrent")?;
        let raw = bencode::raw_entry(bytes, b"info")?.ok_or_else(|| bad("no info dictionary"))?;
        let info = Info::parse(raw)?;
        let mut trackers = Vec::new();
        if let Ok(a) = bencode::string(d, "announce") {
            trackers.push(a.to_string());
        }
        if let Ok(tiers) = bencode::list(d, "announce-list") {
            for t in tiers {
                if let Value::List(urls) = t {
                    for u in urls {
                        if let Value::Bytes(u) = u
                            && let Ok(u) = std::str::from_utf8(u)
                            && !trackers.iter().any(|t| t == u)
                        {
                            trackers.push(u.to_string());
                        }
                    }
                }
            }
        }
        Ok(Metainfo {
            hash: InfoHash::of(raw),
            info,
            trackers,
        })
    }

    /// Reads and parses a `.torrent` file. A file that is not a valid
    /// torrent is this side's bad input (`not a valid torrent: ...`), not
    /// a malformed message from a peer.
    pub fn read(path: &Path) -> Result<Metainfo> {
        let f = File::open(path)?;
        let mut bytes = Vec::new();
        f.take(MAX_TORRENT_LEN as u64 + 1).read_to_end(&mut bytes)?;
        Metainfo::parse(&bytes).map_err(|e| match e {
            Error::Decode(why) => {
                let why = why.strip_prefix("torrent: ").unwrap_or(&why);
                let why = why.strip_prefix("bencode: ").unwrap_or(why);
                Error::Local(Local::Setting(format!("not a valid torrent: {why}")))
            }
            other => other,
        })
    }
}

/// The default piece length for `total` bytes: 256 KiB, doubled until
/// there are at most 4096 pieces (up to 16 MiB).
pub fn default_piece_len(total: u64) -> u32 {
    let mut p: u32 = 256 * 1024;
    while total.div_ceil(u64::from(p)) > 4096 && p < 16 * 1024 * 1024 {
        p *= 2;
    }
    p
}

/// Builds a `.torrent` for the file or folder `path`: returns its bytes and
/// info hash. A folder's files are listed in name order, recursively;
/// symbolic links and other non-files are left out.
pub fn create(
    path: &Path,
    piece_len: Option<u32>,
    trackers: &[String],
) -> Result<(Vec<u8>, InfoHash)> {
    let name_os = path
        .canonicalize()?
        .file_name()
        .ok_or_else(|| Error::local_path(path, "has no name"))?
        .to_owned();
    let name = check_component(name_os.as_encoded_bytes())
        .map_err(|e| Error::local_path(path, e.to_string()))?;
    let meta = std::fs::metadata(path)?;
    let mut files: Vec<(Vec<String>, PathBuf, u64)> = Vec::new();
    if meta.is_dir() {
        for e in walkdir::WalkDir::new(path).sort_by_file_name() {
            let e = e.map_err(|e| walk_error(e, path))?;
            if !e.file_type().is_file() {
                continue;
            }
            let rel = e
                .path()
                .strip_prefix(path)
                .map_err(|why| Error::local_path(e.path(), why.to_string()))?;
            let comps = rel
                .components()
                .map(|c| {
                    check_component(c.as_os_str().as_encoded_bytes())
                        .map_err(|why| Error::local_path(e.path(), why.to_string()))
                })
                .collect::<Result<Vec<_>>>()?;
            files.push((
                comps,
                e.path().to_path_buf(),
                e.metadata().map_err(|e| walk_error(e, path))?.len(),
            ));
        }
    } else {
        files.push((Vec::new(), path.to_path_buf(), meta.len()));
    }
    let total: u64 = files.iter().map(|f| f.2).sum();
    if total == 0 {
        return Err(Error::local_path(path, "holds no bytes to share"));
    }
    let piece_len = match piece_len {
        Some(p) => check_piece_len(u64::from(p)).map_err(|e| Error::setting(e.to_string()))?,
        None => default_piece_len(total),
    };
    // Hash pieces across file boundaries, streaming.
    let mut pieces = Vec::new();
    let mut h = Sha1::new();
    let mut in_piece = 0usize;
    let mut hashed = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    for (_, p, len) in &files {
        let mut f = File::open(p)?.take(*len);
        loop {
            let want = buf.len().min(piece_len as usize - in_piece);
            let n = f.read(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            in_piece += n;
            hashed += n as u64;
            if in_piece == piece_len as usize {
                pieces.extend_from_slice(&h.finalize_reset());
                in_piece = 0;
            }
        }
    }
    if in_piece > 0 {
        pieces.extend_from_slice(&h.finalize_reset());
    }
    if hashed != total {
        return Err(Error::local_path(path, "changed while being read"));
    }
    let mut info = vec![
        ("name", b(name)),
        ("piece length", Value::Integer(i64::from(piece_len))),
        ("pieces", b(pieces)),
    ];
    if meta.is_dir() {
        let list = files
            .into_iter()
            .map(|(comps, _, len)| {
                dict([
                    ("length", Value::Integer(len as i64)),
                    ("path", Value::List(comps.into_iter().map(b).collect())),
                ])
            })
            .collect();
        info.push(("files", Value::List(list)));
    } else {
        info.push(("length", Value::Integer(total as i64)));
    }
    let info = bencode::encode(&dict(info));
    let hash = InfoHash::of(&info);
    let mut top = Vec::new();
    top.push(b'd');
    let mut pair = |k: &str, v: &[u8]| {
        top.extend_from_slice(format!("{}:{k}", k.len()).as_bytes());
        top.extend_from_slice(v);
    };
    if let Some(first) = trackers.first() {
        pair("announce", &bencode::encode(&b(first.as_bytes())));
    }
    if trackers.len() > 1 {
        let tiers = Value::List(
            trackers
                .iter()
                .map(|t| Value::List(vec![b(t.as_bytes())]))
                .collect(),
        );
        pair("announce-list", &bencode::encode(&tiers));
    }
    pair("created by", &bencode::encode(&b("peerkit")));
    pair("info", &info);
    top.push(b'e');
    Ok((top, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info_bytes(extra: &str, len: i64, pl: i64, pieces: usize) -> Vec<u8> {
        let mut v = format!(
            "d{extra}6:lengthi{len}e4:name3:a.b12:piece lengthi{pl}e6:pieces{}:",
            pieces * 20
        )
        .into_bytes();
        v.extend(std::iter::repeat_n(7u8, pieces * 20));
        v.push(b'e');
        v
    }

    #[test]
    fn single_file_info_parses_and_hashes_its_own_bytes() {
        let raw = info_bytes("", 40_000, 16384, 3);
        let i = Info::parse(&raw).unwrap();
        assert_eq!(
            (i.total, i.piece_count(), i.piece_size(2)),
            (40_000, 3, 40_000 - 32768)
        );
        let mut t = b"d8:announce3:url4:info".to_vec();
        t.extend_from_slice(&raw);
        t.push(b'e');
        let m = Metainfo::parse(&t).unwrap();
        assert_eq!(m.hash, InfoHash::of(&raw));
        assert_eq!(m.trackers, vec!["url"]);
    }

    #[test]
    fn hostile_torrents_are_refused() {
        // Piece length 2^31, not a power of two, too small.
        for pl in [1i64 << 31, 20_000, 1024, -16384] {
            assert!(Info::parse(&info_bytes("", 40_000, pl, 3)).is_err(), "{pl}");
        }
        // Lengths that do not match the pieces.
        assert!(Info::parse(&info_bytes("", 40_000, 16384, 2)).is_err());
        assert!(Info::parse(&info_bytes("", 40_000, 16384, 4)).is_err());
        assert!(Info::parse(&info_bytes("", -5, 16384, 1)).is_err());
        assert!(Info::parse(&info_bytes("", 0, 16384, 0)).is_err());
        // Hostile paths in a folder torrent.
        for path in [
            "l2:..1:xe",
            "l1:/e",
            "l4:/etce",
            "le",
            "l0:e",
            "l3:a/be",
            "l1:.e",
            "l3:a\0be",
        ] {
            let raw = format!(
                "d5:filesld6:lengthi10e4:path{path}ee4:name1:d12:piece lengthi16384e6:pieces20:{}e",
                "x".repeat(20)
            );
            let e = Info::parse(raw.as_bytes()).expect_err(path);
            assert!(e.to_string().contains("torrent"), "{e}");
        }
        // Names that are not plain.
        for name in ["2:..", "0:", "4:/abs"] {
            let raw = format!(
                "d6:lengthi10e4:name{name}12:piece lengthi16384e6:pieces20:{}e",
                "x".repeat(20)
            );
            assert!(Info::parse(raw.as_bytes()).is_err(), "{name}");
        }
        // The same path twice.
        let raw = format!(
            "d5:filesld6:lengthi10e4:pathl1:aeed6:lengthi10e4:pathl1:aeee4:name1:d12:piece lengthi16384e6:pieces20:{}e",
            "x".repeat(20)
        );
        assert!(Info::parse(raw.as_bytes()).is_err());
    }

    #[test]
    fn info_hashes_parse_from_hex_and_base32() {
        let h = InfoHash::of(b"x");
        assert_eq!(InfoHash::parse(&h.to_hex()), Some(h));
        // base32 of 20 zero bytes then of 0xff...
        assert_eq!(InfoHash::parse(&"A".repeat(32)), Some(InfoHash([0; 20])));
        assert_eq!(InfoHash::parse(&"7".repeat(32)), Some(InfoHash([0xff; 20])));
        assert_eq!(InfoHash::parse("zz"), None);
    }

    #[test]
    fn created_torrents_parse_back_with_the_same_hash() {
        let dir = std::env::temp_dir().join(format!("peerkit-meta-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("my dir/sub")).unwrap();
        std::fs::write(dir.join("my dir/a.txt"), vec![1u8; 20_000]).unwrap();
        std::fs::write(dir.join("my dir/sub/b c.bin"), vec![2u8; 30_000]).unwrap();
        let (t, h) = create(
            &dir.join("my dir"),
            Some(16384),
            &["http://t/announce".into()],
        )
        .unwrap();
        let m = Metainfo::parse(&t).unwrap();
        assert_eq!(m.hash, h);
        assert!(m.info.multi);
        assert_eq!(m.info.name, "my dir");
        assert_eq!(m.info.files[1].path, vec!["sub", "b c.bin"]);
        assert_eq!(m.info.piece_count(), 4);
        let (t, h) = create(&dir.join("my dir/a.txt"), None, &[]).unwrap();
        let m = Metainfo::parse(&t).unwrap();
        assert_eq!((m.hash, m.info.multi, m.info.total), (h, false, 20_000));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
