//! The manifest of a shared file (name, size, piece size, SHA-256 of the file
//! and of every piece), the swarm id derived from it, piece indices and the
//! bitfield of pieces a peer holds. Decoding validates all of them.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result, Stage};
use crate::name::FileName;

/// Smallest piece size a manifest may use (16 KiB).
pub(crate) const MIN_PIECE_SIZE: u32 = 16 * 1024;
/// Piece size for files small enough to stay under `TARGET_PIECES` (256 KiB).
pub(crate) const DEFAULT_PIECE_SIZE: u32 = 256 * 1024;
/// Largest piece size a manifest may use (16 MiB).
pub(crate) const MAX_PIECE_SIZE: u32 = 16 * 1024 * 1024;
/// The automatic piece size doubles until the file has at most this many pieces.
pub(crate) const TARGET_PIECES: u64 = 4096;
/// Most pieces a manifest may list; keeps a manifest well under one frame
/// (16384 * 32 bytes = 512 KiB) and a bitfield at 2 KiB.
pub(crate) const MAX_PIECES: u32 = 16384;

/// A swarm's id: the SHA-256 of its manifest's postcard encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SwarmId(pub Digest);

impl SwarmId {
    /// The first 12 hex digits and an ellipsis, for log lines.
    pub fn short(&self) -> String {
        let hex = self.0.to_hex();
        format!("{}...", &hex[..12])
    }

    /// Parses 64 hexadecimal characters.
    pub fn from_hex(s: &str) -> Option<SwarmId> {
        Digest::from_hex(s).map(SwarmId)
    }
}

impl fmt::Display for SwarmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for SwarmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SwarmId({})", self.short())
    }
}

/// The index of a piece known to exist in a given manifest. Only
/// `Manifest::index` and `Manifest::indices` make one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PieceIndex(u32);

impl PieceIndex {
    pub(crate) fn get(self) -> u32 {
        self.0
    }

    /// The index as a `usize`, for slices sized by the piece count.
    pub(crate) fn slot(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for PieceIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What one swarm shares. Fields are private: a `Manifest` is either built
/// from a file or decoded, and decoding checks that the piece list matches
/// the size and piece size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawManifest")]
pub struct Manifest {
    name: FileName,
    size: u64,
    piece_size: u32,
    file_hash: Digest,
    pieces: Vec<Digest>,
    /// Derived from the fields above; not part of the encoding.
    #[serde(skip)]
    id: SwarmId,
}

/// The wire form of a manifest before validation (same field order).
#[derive(Deserialize)]
struct RawManifest {
    name: FileName,
    size: u64,
    piece_size: u32,
    file_hash: Digest,
    pieces: Vec<Digest>,
}

impl TryFrom<RawManifest> for Manifest {
    type Error = String;
    fn try_from(r: RawManifest) -> std::result::Result<Manifest, String> {
        Manifest::new(r.name, r.size, r.piece_size, r.file_hash, r.pieces)
    }
}

/// The number of pieces of a `size`-byte file cut into `piece_size` pieces.
fn count_pieces(size: u64, piece_size: u32) -> u64 {
    size.div_ceil(u64::from(piece_size.max(1)))
}

/// The automatic piece size: 256 KiB, doubled while the file would have more
/// than `TARGET_PIECES` pieces, up to 16 MiB.
pub(crate) fn auto_piece_size(size: u64) -> u32 {
    let mut ps = DEFAULT_PIECE_SIZE;
    while count_pieces(size, ps) > TARGET_PIECES && ps < MAX_PIECE_SIZE {
        ps *= 2;
    }
    ps
}

/// Checks a piece size: a power of two from 16 KiB to 16 MiB.
pub fn check_piece_size(ps: u32) -> std::result::Result<(), String> {
    if !ps.is_power_of_two() || !(MIN_PIECE_SIZE..=MAX_PIECE_SIZE).contains(&ps) {
        return Err(format!(
            "piece size {ps} is not a power of two from {MIN_PIECE_SIZE} to {MAX_PIECE_SIZE}"
        ));
    }
    Ok(())
}

impl Manifest {
    /// Builds a manifest from its parts, checking that they agree.
    pub(crate) fn new(
        name: FileName,
        size: u64,
        piece_size: u32,
        file_hash: Digest,
        pieces: Vec<Digest>,
    ) -> std::result::Result<Manifest, String> {
        check_piece_size(piece_size)?;
        let want = count_pieces(size, piece_size);
        if want > u64::from(MAX_PIECES) {
            return Err(format!(
                "{size} bytes in {piece_size}-byte pieces makes {want} pieces, more than {MAX_PIECES}"
            ));
        }
        if pieces.len() as u64 != want {
            return Err(format!(
                "manifest lists {} pieces, a {size}-byte file in {piece_size}-byte pieces has {want}",
                pieces.len()
            ));
        }
        let mut m = Manifest {
            name,
            size,
            piece_size,
            file_hash,
            pieces,
            id: SwarmId(Digest([0; 32])),
        };
        let bytes = postcard::to_stdvec(&m).map_err(|e| e.to_string())?;
        m.id = SwarmId(Digest::of(&bytes));
        Ok(m)
    }

    /// Reads `path` once, hashing the whole file and every piece. `piece_size`
    /// `None` picks `auto_piece_size`.
    pub(crate) fn from_file(path: &Path, piece_size: Option<u32>) -> Result<Manifest> {
        let name = FileName::from_path(path)?;
        let mut file = File::open(path)?;
        let size = file.metadata()?.len();
        let piece_size = piece_size.unwrap_or_else(|| auto_piece_size(size));
        check_piece_size(piece_size).map_err(Error::setting)?;
        if count_pieces(size, piece_size) > u64::from(MAX_PIECES) {
            return Err(Error::local_path(
                path,
                format!("is too large for {piece_size}-byte pieces (at most {MAX_PIECES} pieces)"),
            ));
        }
        let mut whole = Hasher::new();
        let mut pieces = Vec::new();
        let mut buf = vec![0u8; piece_size as usize];
        let mut total = 0u64;
        loop {
            let n = read_full(&mut file, &mut buf)?;
            if n == 0 {
                break;
            }
            whole.update(&buf[..n]);
            pieces.push(Digest::of(&buf[..n]));
            total += n as u64;
            if n < buf.len() {
                break;
            }
        }
        if total != size {
            return Err(Error::local_path(path, "changed size while being hashed"));
        }
        Manifest::new(name, size, piece_size, whole.finish(), pieces).map_err(Error::setting)
    }

    /// The swarm id: SHA-256 of the manifest's encoding.
    pub fn id(&self) -> SwarmId {
        self.id
    }

    pub(crate) fn name(&self) -> &FileName {
        &self.name
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn piece_size(&self) -> u32 {
        self.piece_size
    }

    /// SHA-256 of the whole file.
    pub(crate) fn file_hash(&self) -> Digest {
        self.file_hash
    }

    /// The number of pieces (at most `MAX_PIECES`).
    pub fn piece_count(&self) -> u32 {
        // Checked against MAX_PIECES at construction.
        self.pieces.len() as u32
    }

    /// Validates a piece number from the network.
    pub(crate) fn index(&self, i: u32) -> Option<PieceIndex> {
        (i < self.piece_count()).then_some(PieceIndex(i))
    }

    /// Every piece index, in order.
    pub(crate) fn indices(&self) -> impl Iterator<Item = PieceIndex> + use<> {
        (0..self.piece_count()).map(PieceIndex)
    }

    /// Where piece `i` starts in the file.
    pub(crate) fn offset(&self, i: PieceIndex) -> u64 {
        u64::from(i.0) * u64::from(self.piece_size)
    }

    /// The length of piece `i` (the last one may be short).
    pub(crate) fn piece_len(&self, i: PieceIndex) -> u32 {
        let left = self.size - self.offset(i);
        // At most piece_size, which is a u32.
        left.min(u64::from(self.piece_size)) as u32
    }

    /// The expected SHA-256 of piece `i`.
    pub(crate) fn piece_hash(&self, i: PieceIndex) -> Digest {
        self.pieces[i.slot()]
    }

    /// An empty bitfield sized for this manifest.
    pub(crate) fn empty_bitfield(&self) -> Bitfield {
        Bitfield::new(self.piece_count())
    }
}

/// Reads until `buf` is full or EOF; returns the bytes read.
pub(crate) fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Which pieces a peer holds: one bit per piece, most significant bit first.
/// Decoding checks the length (at most `MAX_PIECES`), the byte count and
/// that the spare bits are zero.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawBitfield")]
pub struct Bitfield {
    len: u32,
    bits: Vec<u8>,
}

#[derive(Deserialize)]
struct RawBitfield {
    len: u32,
    bits: Vec<u8>,
}

impl TryFrom<RawBitfield> for Bitfield {
    type Error = String;
    fn try_from(r: RawBitfield) -> std::result::Result<Bitfield, String> {
        if r.len > MAX_PIECES {
            return Err(format!(
                "bitfield of {} pieces, at most {MAX_PIECES}",
                r.len
            ));
        }
        if r.bits.len() != (r.len as usize).div_ceil(8) {
            return Err(format!(
                "bitfield of {} pieces carries {} bytes",
                r.len,
                r.bits.len()
            ));
        }
        let spare = r.len % 8;
        if spare != 0 && r.bits.last().is_some_and(|b| b & (0xff >> spare) != 0) {
            return Err("bitfield has bits set past its end".to_string());
        }
        Ok(Bitfield {
            len: r.len,
            bits: r.bits,
        })
    }
}

impl Bitfield {
    /// `len` pieces, none held.
    pub fn new(len: u32) -> Bitfield {
        Bitfield {
            len,
            bits: vec![0; (len as usize).div_ceil(8)],
        }
    }

    /// `len` pieces, all held.
    pub fn full(len: u32) -> Bitfield {
        let mut b = Bitfield::new(len);
        for i in 0..len {
            b.set_bit(i as usize, true);
        }
        b
    }

    /// The number of pieces this bitfield describes.
    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether piece `i` is held (false past the end).
    pub fn has(&self, i: usize) -> bool {
        self.bits
            .get(i / 8)
            .is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
    }

    /// Sets or clears piece `i` (ignored past the end).
    pub(crate) fn set_bit(&mut self, i: usize, on: bool) {
        if i >= self.len as usize {
            return;
        }
        if let Some(b) = self.bits.get_mut(i / 8) {
            if on {
                *b |= 0x80 >> (i % 8);
            } else {
                *b &= !(0x80 >> (i % 8));
            }
        }
    }

    /// Marks piece `i` held.
    pub(crate) fn set(&mut self, i: PieceIndex) {
        self.set_bit(i.slot(), true);
    }

    /// How many pieces are held.
    pub fn count(&self) -> u32 {
        self.bits.iter().map(|b| b.count_ones()).sum()
    }

    /// True when every piece is held.
    pub fn is_complete(&self) -> bool {
        self.count() == self.len
    }

    /// Checks that this bitfield, received at `stage`, describes `m`'s
    /// pieces.
    pub(crate) fn check_for(&self, m: &Manifest, stage: Stage) -> Result<()> {
        if self.len != m.piece_count() {
            return Err(Error::invalid(
                stage,
                format!(
                    "bitfield of {} pieces for a swarm of {}",
                    self.len,
                    m.piece_count()
                ),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bitfield({}/{})", self.count(), self.len)
    }
}

/// Any valid bitfield of up to 300 pieces, for property tests.
#[cfg(test)]
pub(crate) fn arb_bitfield() -> impl proptest::strategy::Strategy<Value = Bitfield> {
    use proptest::prelude::*;
    proptest::collection::vec(any::<bool>(), 0..300).prop_map(|bits| {
        let mut b = Bitfield::new(bits.len() as u32);
        for (i, on) in bits.into_iter().enumerate() {
            b.set_bit(i, on);
        }
        b
    })
}

/// Any valid manifest of up to 40 pieces, for property tests.
#[cfg(test)]
pub(crate) fn arb_manifest() -> impl proptest::strategy::Strategy<Value = Manifest> {
    use proptest::prelude::*;
    let digest = || any::<[u8; 32]>().prop_map(Digest);
    (
        crate::name::arb_name(),
        0u32..=10,
        0u64..40,
        any::<u64>(),
        digest(),
    )
        .prop_flat_map(move |(name, shift, pieces, extra, hash)| {
            let ps = MIN_PIECE_SIZE << shift;
            // A size making exactly `pieces` pieces.
            let size = match pieces {
                0 => 0,
                n => (n - 1) * u64::from(ps) + 1 + extra % u64::from(ps),
            };
            proptest::collection::vec(digest(), pieces as usize).prop_map(move |list| {
                Manifest::new(name.clone(), size, ps, hash, list).expect("consistent parts")
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_of_a_billion_pieces_does_not_decode() {
        // What a lying tracker could send: the wire form of a manifest
        // claiming 10^9 pieces (and listing them, or not).
        #[derive(Serialize)]
        struct Wire {
            name: FileName,
            size: u64,
            piece_size: u32,
            file_hash: Digest,
            pieces: Vec<Digest>,
        }
        let ps = MIN_PIECE_SIZE;
        for listed in [0, 3] {
            let lie = Wire {
                name: FileName::new("big.iso").unwrap(),
                size: 1_000_000_000 * u64::from(ps),
                piece_size: ps,
                file_hash: Digest([1; 32]),
                pieces: vec![Digest([2; 32]); listed],
            };
            let bytes = crate::frame::encode(&lie).unwrap();
            crate::fuzzing::seed_frame::<Manifest>(&bytes);
            // (postcard keeps only "malformed message" of the reason.)
            assert!(crate::frame::decode::<Manifest>(&bytes[4..]).is_err());
        }
        // A count prefix of 10^9 with nothing behind it: an error, not a
        // 32 GB allocation.
        let mut bytes = crate::frame::encode(&Wire {
            name: FileName::new("x").unwrap(),
            size: 1,
            piece_size: ps,
            file_hash: Digest([0; 32]),
            pieces: Vec::new(),
        })
        .unwrap()[4..]
            .to_vec();
        bytes.pop();
        bytes.extend_from_slice(&[0x80, 0x94, 0xeb, 0xdc, 0x03]);
        assert!(crate::frame::decode::<Manifest>(&bytes).is_err());
    }

    fn sample(size: u64, ps: u32) -> Manifest {
        let n = count_pieces(size, ps);
        let pieces = (0..n).map(|i| Digest::of(&i.to_le_bytes())).collect();
        Manifest::new(
            FileName::new("f.bin").unwrap(),
            size,
            ps,
            Digest::of(b"x"),
            pieces,
        )
        .unwrap()
    }

    #[test]
    fn piece_geometry() {
        let m = sample(3 * 16384 + 5, MIN_PIECE_SIZE);
        assert_eq!(m.piece_count(), 4);
        let last = m.index(3).unwrap();
        assert_eq!(m.piece_len(m.index(0).unwrap()), 16384);
        assert_eq!(m.piece_len(last), 5);
        assert_eq!(m.offset(last), 3 * 16384);
        assert!(m.index(4).is_none());
        assert_eq!(sample(0, MIN_PIECE_SIZE).piece_count(), 0);
    }

    #[test]
    fn auto_piece_size_bounds_the_piece_count() {
        assert_eq!(auto_piece_size(0), DEFAULT_PIECE_SIZE);
        assert_eq!(auto_piece_size(1 << 30), DEFAULT_PIECE_SIZE);
        assert_eq!(auto_piece_size((1 << 30) + 1), 2 * DEFAULT_PIECE_SIZE);
        assert_eq!(auto_piece_size(1 << 40), MAX_PIECE_SIZE);
        for size in [1u64, 1 << 20, 5 << 30, 64 << 30] {
            assert!(count_pieces(size, auto_piece_size(size)) <= TARGET_PIECES);
        }
    }

    #[test]
    fn roundtrip_keeps_the_id() {
        let m = sample(1_000_000, DEFAULT_PIECE_SIZE);
        let bytes = postcard::to_stdvec(&m).unwrap();
        crate::fuzzing::seed_frame::<Manifest>(&crate::frame::encode(&m).unwrap());
        crate::fuzzing::seed_frame::<Bitfield>(&crate::frame::encode(&m.empty_bitfield()).unwrap());
        assert_eq!(m.id(), SwarmId(Digest::of(&bytes)));
        let back: Manifest = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.id(), m.id());
        assert_ne!(sample(1_000_001, DEFAULT_PIECE_SIZE).id(), m.id());
    }

    #[test]
    fn decoding_rejects_inconsistent_manifests() {
        let m = sample(1_000_000, DEFAULT_PIECE_SIZE);
        let mut raw = (
            m.name.clone(),
            m.size,
            m.piece_size,
            m.file_hash,
            m.pieces.clone(),
        );
        raw.4.pop();
        let bytes = postcard::to_stdvec(&raw).unwrap();
        assert!(postcard::from_bytes::<Manifest>(&bytes).is_err());
        let bad_ps = (m.name.clone(), m.size, 1000u32, m.file_hash, m.pieces);
        let bytes = postcard::to_stdvec(&bad_ps).unwrap();
        assert!(postcard::from_bytes::<Manifest>(&bytes).is_err());
    }

    #[test]
    fn bitfield_bits_and_validation() {
        let mut b = Bitfield::new(10);
        b.set_bit(0, true);
        b.set_bit(9, true);
        b.set_bit(10, true); // past the end: ignored
        assert!(b.has(0) && b.has(9) && !b.has(1) && !b.has(10));
        assert_eq!(b.count(), 2);
        assert_eq!(b.bits, vec![0x80, 0x40]);
        let back: Bitfield = postcard::from_bytes(&postcard::to_stdvec(&b).unwrap()).unwrap();
        assert_eq!(back, b);
        assert!(Bitfield::full(10).is_complete());

        let spare_bit = postcard::to_stdvec(&(10u32, vec![0u8, 0x20])).unwrap();
        assert!(postcard::from_bytes::<Bitfield>(&spare_bit).is_err());
        let short = postcard::to_stdvec(&(10u32, vec![0u8])).unwrap();
        assert!(postcard::from_bytes::<Bitfield>(&short).is_err());
        let huge = postcard::to_stdvec(&(MAX_PIECES + 1, Vec::<u8>::new())).unwrap();
        assert!(postcard::from_bytes::<Bitfield>(&huge).is_err());
    }

    #[test]
    fn from_file_hashes_pieces_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.bin");
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let m = Manifest::from_file(&path, Some(MIN_PIECE_SIZE)).unwrap();
        assert_eq!(m.name().as_str(), "data.bin");
        assert_eq!(m.size(), 40_000);
        assert_eq!(m.piece_count(), 3);
        assert_eq!(m.file_hash(), Digest::of(&data));
        assert_eq!(
            m.piece_hash(m.index(2).unwrap()),
            Digest::of(&data[32768..])
        );
        // A piece size the user chose badly is theirs, not a peer's fault.
        assert!(matches!(
            Manifest::from_file(&path, Some(MIN_PIECE_SIZE + 1)),
            Err(Error::Local(crate::error::Local::Setting(_)))
        ));
        // A bitfield of another length: a fault of whoever sent it, where.
        for stage in [Stage::Request, Stage::Reply] {
            assert!(matches!(
                Bitfield::new(4).check_for(&m, stage),
                Err(Error::Protocol { stage: s, .. }) if s == stage
            ));
        }
        assert!(Bitfield::new(3).check_for(&m, Stage::Reply).is_ok());
    }
}
