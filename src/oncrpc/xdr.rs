//! XDR (RFC 4506): a growable encoder and a bounds-checked decoder over a
//! byte slice. Every item is a multiple of four bytes; variable-length items
//! carry a count and are checked against their bound and against the bytes
//! left before anything is allocated. Decoding never panics.

use super::{Error, Result};

/// Bytes of zero padding after `len` bytes of opaque data.
fn pad(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Builds an XDR byte string.
#[derive(Debug, Default, Clone)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// The encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// `unsigned int`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// `int`: two's complement, the same four bytes as its bit pattern.
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.u32(v as u32)
    }

    /// `unsigned hyper`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// `hyper`: two's complement, the same eight bytes as its bit pattern.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.u64(v as u64)
    }

    /// `bool`: 0 or 1.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u32(u32::from(v))
    }

    /// Fixed-length `opaque[n]`: the bytes and their padding.
    pub fn opaque_fixed(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self.buf.extend_from_slice(&[0; 3][..pad(bytes.len())]);
        self
    }

    /// Variable-length `opaque<>` or `string<>`: count, bytes, padding. The
    /// caller keeps to the bound (`Decoder` enforces it on the other side).
    pub fn opaque(&mut self, bytes: &[u8]) -> &mut Self {
        // Our messages are far below 4 GiB; a longer item saturates and is
        // then refused by any decoder's bound.
        self.u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        self.opaque_fixed(bytes)
    }

    /// `string<>`: same bytes as `opaque`.
    pub fn string(&mut self, s: &[u8]) -> &mut Self {
        self.opaque(s)
    }

    /// The count of a counted array `T<>`; the items follow.
    pub fn array_len(&mut self, n: usize) -> &mut Self {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Optional data `T *`: a bool, then the value when present.
    pub fn optional<T>(&mut self, v: Option<&T>, item: impl FnOnce(&mut Self, &T)) -> &mut Self {
        match v {
            Some(v) => {
                self.bool(true);
                item(self, v);
            }
            None => {
                self.bool(false);
            }
        }
        self
    }

    /// Already-encoded XDR bytes (a procedure's results).
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }
}

/// Reads XDR items from a byte slice.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Decoder<'a> {
        Decoder { buf }
    }

    /// Bytes not yet decoded.
    pub fn remaining(&self) -> &'a [u8] {
        self.buf
    }

    /// Ends decoding: bytes left over are an error.
    pub fn finish(&self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingBytes(self.buf.len()))
        }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(Error::Truncated { what });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn word(&mut self, what: &'static str) -> Result<[u8; 4]> {
        let mut w = [0u8; 4];
        w.copy_from_slice(self.take(4, what)?);
        Ok(w)
    }

    /// `unsigned int`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.word(what)?))
    }

    /// `int`.
    pub fn i32(&mut self, what: &'static str) -> Result<i32> {
        Ok(i32::from_be_bytes(self.word(what)?))
    }

    /// `unsigned hyper`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64> {
        let mut w = [0u8; 8];
        w.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_be_bytes(w))
    }

    /// `hyper`.
    pub fn i64(&mut self, what: &'static str) -> Result<i64> {
        Ok(self.u64(what)? as i64)
    }

    /// `bool`: exactly 0 or 1.
    pub fn bool(&mut self, what: &'static str) -> Result<bool> {
        match self.u32(what)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(Error::Invalid { what, value }),
        }
    }

    /// Fixed-length `opaque[n]`; the padding is skipped.
    pub fn opaque_fixed(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let padded = n.checked_add(pad(n)).ok_or(Error::Truncated { what })?;
        let bytes = self.take(padded, what)?;
        Ok(&bytes[..n])
    }

    /// Variable-length `opaque<max>`, borrowed from the input.
    pub fn opaque(&mut self, max: u32, what: &'static str) -> Result<&'a [u8]> {
        let len = self.u32(what)?;
        if len > max {
            return Err(Error::TooLong {
                what,
                len: len.into(),
                max: max.into(),
            });
        }
        self.opaque_fixed(len as usize, what)
    }

    /// `string<max>` as the raw bytes it is (XDR strings are not UTF-8).
    pub fn string(&mut self, max: u32, what: &'static str) -> Result<&'a [u8]> {
        self.opaque(max, what)
    }

    /// The count of a counted array `T<max>` whose items take at least
    /// `min_item` bytes each: checked against the bound and against the
    /// bytes left, so a caller may reserve that many items.
    pub fn array_len(&mut self, max: u32, min_item: usize, what: &'static str) -> Result<usize> {
        let len = self.u32(what)?;
        if len > max {
            return Err(Error::TooLong {
                what,
                len: len.into(),
                max: max.into(),
            });
        }
        let need = (len as usize).saturating_mul(min_item.max(1));
        if need > self.buf.len() {
            return Err(Error::Truncated { what });
        }
        Ok(len as usize)
    }

    /// Optional data `T *`.
    pub fn optional<T>(
        &mut self,
        what: &'static str,
        item: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<Option<T>> {
        if self.bool(what)? {
            item(self).map(Some)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_golden_bytes() {
        let mut e = Encoder::new();
        e.u32(1)
            .i32(-2)
            .u64(0x0102_0304_0506_0708)
            .i64(-1)
            .bool(true)
            .bool(false);
        assert_eq!(
            e.as_bytes(),
            [
                0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe, 1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0, 0, 0
            ]
        );
        let bytes = e.into_bytes();
        // The fuzz target reads a script length, a script (0 u32, 1 i64,
        // 2 bool in its numbering), then the bytes.
        crate::fuzzing::seed("xdr", &[&[6, 0, 0, 1, 1, 2, 2][..], &bytes].concat());
        let mut d = Decoder::new(&bytes);
        assert_eq!(d.u32("a").unwrap(), 1);
        assert_eq!(d.i32("b").unwrap(), -2);
        assert_eq!(d.u64("c").unwrap(), 0x0102_0304_0506_0708);
        assert_eq!(d.i64("d").unwrap(), -1);
        assert!(d.bool("e").unwrap());
        assert!(!d.bool("f").unwrap());
        d.finish().unwrap();
    }

    #[test]
    fn strings_are_padded_to_four_bytes() {
        for (s, golden) in [
            (&b""[..], &[0u8, 0, 0, 0][..]),
            (b"a", &[0, 0, 0, 1, b'a', 0, 0, 0]),
            (b"abc", &[0, 0, 0, 3, b'a', b'b', b'c', 0]),
            (b"abcd", &[0, 0, 0, 4, b'a', b'b', b'c', b'd']),
            (b"\xff\n e", &[0, 0, 0, 4, 0xff, b'\n', b' ', b'e']),
            (
                b"hello",
                &[0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o', 0, 0, 0],
            ),
        ] {
            let mut e = Encoder::new();
            e.string(s);
            assert_eq!(e.as_bytes(), golden, "{s:?}");
            crate::fuzzing::seed("xdr", &[&[1, 5][..], golden].concat());
            let mut d = Decoder::new(golden);
            assert_eq!(d.string(255, "s").unwrap(), s);
            d.finish().unwrap();
        }
    }

    #[test]
    fn bounds_are_checked_before_allocating() {
        // A string of 6 against a bound of 5.
        let bytes = [0, 0, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
        assert!(matches!(
            Decoder::new(&bytes).string(5, "name"),
            Err(Error::TooLong { len: 6, max: 5, .. })
        ));
        // A huge count with few bytes behind it.
        let bytes = [0xff, 0xff, 0xff, 0xff, 0];
        assert!(matches!(
            Decoder::new(&bytes).opaque(u32::MAX, "x"),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            Decoder::new(&[0, 0, 0x10, 0]).array_len(8192, 4, "list"),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            Decoder::new(&[0, 0, 0x10, 1]).array_len(4096, 4, "list"),
            Err(Error::TooLong { .. })
        ));
        // Missing padding is truncation.
        assert!(Decoder::new(&[0, 0, 0, 1, b'a']).string(9, "s").is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 7u64;
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 56) as u8
                })
                .collect();
            let mut d = Decoder::new(&bytes);
            let _ = d.string(16, "s");
            let _ = d.array_len(4, 4, "a");
            let _ = d.bool("b");
            let _ = d.u64("h");
            let _ = d.optional("o", |d| d.u32("v"));
        }
    }

    #[test]
    fn bools_are_zero_or_one() {
        assert!(matches!(
            Decoder::new(&[0, 0, 0, 2]).bool("eof"),
            Err(Error::Invalid { value: 2, .. })
        ));
    }

    #[test]
    fn counted_arrays_and_optionals() {
        let mut e = Encoder::new();
        e.array_len(2).u32(7).u32(9);
        e.optional(Some(&5u32), |e, v| {
            e.u32(*v);
        });
        e.optional(None::<&u32>, |e, v| {
            e.u32(*v);
        });
        assert_eq!(
            e.as_bytes(),
            [
                0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 0
            ]
        );
        let bytes = e.into_bytes();
        let mut d = Decoder::new(&bytes);
        let n = d.array_len(4, 4, "a").unwrap();
        let items: Vec<u32> = (0..n).map(|_| d.u32("i").unwrap()).collect();
        assert_eq!(items, [7, 9]);
        assert_eq!(d.optional("o", |d| d.u32("v")).unwrap(), Some(5));
        assert_eq!(d.optional("o", |d| d.u32("v")).unwrap(), None);
        d.finish().unwrap();
        assert!(matches!(
            Decoder::new(&[0, 0, 0, 0, 1]).finish(),
            Err(Error::TrailingBytes(5))
        ));
    }

    #[test]
    fn a_union_is_a_discriminant_then_its_arm() {
        // union rdir_res switch (int status) { case 0: ...; default: void; }
        let mut e = Encoder::new();
        e.i32(10003);
        assert_eq!(e.as_bytes(), [0, 0, 0x27, 0x13]);
        let mut e = Encoder::new();
        e.i32(0).array_len(1).string(b".").u64(1).bool(true);
        assert_eq!(
            e.as_bytes(),
            [
                0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, b'.', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
                1
            ]
        );
    }
}
