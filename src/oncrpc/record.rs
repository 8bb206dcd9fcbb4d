//! Record marking (RFC 5531 §11): a record is one or more fragments, each
//! behind a 4-byte header whose top bit marks the last fragment and whose
//! other 31 bits give the fragment's length. Reassembly checks every length
//! against the record limit before reading or allocating.

use std::io::{self, Read, Write};

use super::{Error, Result};

/// The last-fragment bit of a fragment header.
pub const LAST_FRAGMENT: u32 = 0x8000_0000;

/// Largest fragment we send: longer records go out in several fragments.
pub const MAX_FRAGMENT: usize = 64 * 1024;

/// Default limit on a whole record we accept (1 MiB).
pub const DEFAULT_MAX_RECORD: usize = 1 << 20;

/// Writes `record` as fragments of at most `MAX_FRAGMENT` bytes, the last
/// one marked. Does not flush.
pub fn write_record<W: Write>(w: &mut W, record: &[u8]) -> io::Result<()> {
    write_record_with(w, record, MAX_FRAGMENT)
}

/// Writes `record` as fragments of at most `fragment` bytes.
pub fn write_record_with<W: Write>(w: &mut W, record: &[u8], fragment: usize) -> io::Result<()> {
    let fragment = fragment.clamp(1, (LAST_FRAGMENT - 1) as usize);
    let mut chunks = record.chunks(fragment).peekable();
    if chunks.peek().is_none() {
        return w.write_all(&LAST_FRAGMENT.to_be_bytes());
    }
    while let Some(chunk) = chunks.next() {
        // A chunk is at most `fragment` < 2^31 bytes.
        let mut header = chunk.len() as u32;
        if chunks.peek().is_none() {
            header |= LAST_FRAGMENT;
        }
        w.write_all(&header.to_be_bytes())?;
        w.write_all(chunk)?;
    }
    Ok(())
}

/// Reads one whole record of at most `max` bytes, reassembling fragments.
/// `Ok(None)` on a clean EOF before the first byte; EOF anywhere else is
/// `Error::Closed`. An empty fragment that is not the last, or a record
/// over the limit, is an error: the stream is then closed by the caller.
pub fn read_record<R: Read>(r: &mut R, max: usize) -> Result<Option<Vec<u8>>> {
    let mut record = Vec::new();
    let mut first = true;
    loop {
        let mut h = [0u8; 4];
        if !fill(r, &mut h, first)? {
            return Ok(None);
        }
        first = false;
        let header = u32::from_be_bytes(h);
        let last = header & LAST_FRAGMENT != 0;
        let len = (header & !LAST_FRAGMENT) as usize;
        if len == 0 && !last {
            return Err(Error::BadFragment(header));
        }
        let total = record.len() + len;
        if total > max {
            return Err(Error::RecordTooLarge {
                len: total as u64,
                max: max as u64,
            });
        }
        let start = record.len();
        record.resize(total, 0);
        fill(r, &mut record[start..], false)?;
        if last {
            return Ok(Some(record));
        }
    }
}

/// Fills `buf`; `Ok(false)` on EOF before the first byte when `eof_ok`.
fn fill<R: Read>(r: &mut R, buf: &mut [u8], eof_ok: bool) -> Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 && eof_ok => return Ok(false),
            Ok(0) => return Err(Error::Closed),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_fragment_golden_bytes() {
        let mut out = Vec::new();
        write_record(&mut out, b"abcd").unwrap();
        crate::fuzzing::seed("oncrpc_record", &[&[3][..], &out].concat());
        assert_eq!(out, [0x80, 0, 0, 4, b'a', b'b', b'c', b'd']);
        let mut out = Vec::new();
        write_record(&mut out, b"").unwrap();
        assert_eq!(out, [0x80, 0, 0, 0]);
        assert_eq!(read_record(&mut &out[..], 16).unwrap().unwrap(), b"");
    }

    #[test]
    fn long_records_are_split_and_reassembled() {
        let mut out = Vec::new();
        write_record_with(&mut out, b"abcdefghij", 4).unwrap();
        crate::fuzzing::seed("oncrpc_record", &[&[0][..], &out].concat());
        assert_eq!(
            out,
            [
                0, 0, 0, 4, b'a', b'b', b'c', b'd', 0, 0, 0, 4, b'e', b'f', b'g', b'h', 0x80, 0, 0,
                2, b'i', b'j'
            ]
        );
        assert_eq!(
            read_record(&mut &out[..], 10).unwrap().unwrap(),
            b"abcdefghij"
        );
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        write_record(&mut out, &big).unwrap();
        assert_eq!(&out[..4], [0, 1, 0, 0], "first fragment 64 KiB, not last");
        assert_eq!(read_record(&mut &out[..], 1 << 20).unwrap().unwrap(), big);
    }

    #[test]
    fn the_limit_counts_the_whole_record() {
        let mut out = Vec::new();
        write_record_with(&mut out, b"abcdefghij", 4).unwrap();
        assert!(matches!(
            read_record(&mut &out[..], 9),
            Err(Error::RecordTooLarge { len: 10, max: 9 })
        ));
        // A single huge header is refused before reading its body.
        let huge = [0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_record(&mut &huge[..], 1 << 20),
            Err(Error::RecordTooLarge { .. })
        ));
    }

    #[test]
    fn bad_fragments_and_truncation() {
        assert!(matches!(
            read_record(&mut &[0u8, 0, 0, 0][..], 16),
            Err(Error::BadFragment(0))
        ));
        assert!(read_record(&mut &[][..], 16).unwrap().is_none());
        for cut in [1, 3, 5, 7] {
            let bytes = [0x80, 0, 0, 4, 1, 2, 3, 4];
            assert!(matches!(
                read_record(&mut &bytes[..cut], 16),
                Err(Error::Closed)
            ));
        }
        // Not-last fragment then EOF.
        assert!(matches!(
            read_record(&mut &[0u8, 0, 0, 1, 9][..], 16),
            Err(Error::Closed)
        ));
    }
}
