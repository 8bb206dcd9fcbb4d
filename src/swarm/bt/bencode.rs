//! Bencode through `bendy`: whole-input decoding into `Value` (canonical
//! order enforced, nothing left over), the raw bytes of a top-level dict's
//! entry (the info hash is taken over those, never over a re-encoding), and
//! typed getters that name the missing or mistyped key.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bendy::decoding::{Decoder, FromBencode, Object};
use bendy::encoding::Encoder;
pub(crate) use bendy::value::Value;

use crate::error::{Error, Result};

/// Deepest nesting accepted (metainfo is 5 deep; tracker replies less).
const MAX_DEPTH: usize = 32;

/// A bencoded dictionary.
pub(crate) type Dict<'a> = BTreeMap<Cow<'a, [u8]>, Value<'a>>;

fn bad(why: impl std::fmt::Display) -> Error {
    Error::Decode(format!("bencode: {why}"))
}

/// Decodes exactly one value spanning all of `bytes`.
pub(crate) fn decode(bytes: &[u8]) -> Result<Value<'_>> {
    let mut d = Decoder::new(bytes).with_max_depth(MAX_DEPTH);
    let v = match d.next_object().map_err(bad)? {
        Some(o) => Value::decode_bencode_object(o).map_err(bad)?,
        None => return Err(bad("empty input")),
    };
    match d.next_object() {
        Ok(None) => Ok(v),
        _ => Err(Error::Decode("bencode: bytes after the value".into())),
    }
}

/// The exact bytes of the value under `key` in the top-level dict `bytes`.
pub(crate) fn raw_entry<'a>(bytes: &'a [u8], key: &[u8]) -> Result<Option<&'a [u8]>> {
    let mut d = Decoder::new(bytes).with_max_depth(MAX_DEPTH);
    let Some(Object::Dict(mut dict)) = d.next_object().map_err(bad)? else {
        return Err(bad("not a dictionary"));
    };
    while let Some((k, v)) = dict.next_pair().map_err(bad)? {
        if k == key {
            return Ok(Some(match v {
                Object::Dict(inner) => inner.into_raw().map_err(bad)?,
                Object::List(inner) => inner.into_raw().map_err(bad)?,
                Object::Bytes(_) | Object::Integer(_) => {
                    return Err(bad("raw entries are dicts or lists"));
                }
            }));
        }
    }
    Ok(None)
}

/// Canonical bytes of `v` (dict keys sorted, as `BTreeMap` holds them).
pub(crate) fn encode(v: &Value<'_>) -> Vec<u8> {
    // Encoding a Value fails only past the encoder's depth limit, which
    // values built here never reach.
    let mut e = Encoder::new().with_max_depth(MAX_DEPTH);
    match e.emit(v) {
        Ok(()) => e.get_output().unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// `v` as a dict.
pub(crate) fn as_dict<'v, 'a>(v: &'v Value<'a>, what: &str) -> Result<&'v Dict<'a>> {
    match v {
        Value::Dict(d) => Ok(d),
        _ => Err(bad(format!("{what} is not a dictionary"))),
    }
}

/// The entry `key` of `d`, if present.
pub(crate) fn get<'v, 'a>(d: &'v Dict<'a>, key: &str) -> Option<&'v Value<'a>> {
    d.get(key.as_bytes())
}

/// A required byte string.
pub(crate) fn bytes<'v>(d: &'v Dict<'_>, key: &str) -> Result<&'v [u8]> {
    match get(d, key) {
        Some(Value::Bytes(b)) => Ok(b),
        Some(_) => Err(bad(format!("{key:?} is not a byte string"))),
        None => Err(bad(format!("{key:?} is missing"))),
    }
}

/// A required UTF-8 string.
pub(crate) fn string<'v>(d: &'v Dict<'_>, key: &str) -> Result<&'v str> {
    std::str::from_utf8(bytes(d, key)?).map_err(|_| bad(format!("{key:?} is not UTF-8")))
}

/// A required integer.
pub(crate) fn int(d: &Dict<'_>, key: &str) -> Result<i64> {
    match get(d, key) {
        Some(Value::Integer(i)) => Ok(*i),
        Some(_) => Err(bad(format!("{key:?} is not an integer"))),
        None => Err(bad(format!("{key:?} is missing"))),
    }
}

/// A required list.
pub(crate) fn list<'v, 'a>(d: &'v Dict<'a>, key: &str) -> Result<&'v [Value<'a>]> {
    match get(d, key) {
        Some(Value::List(l)) => Ok(l),
        Some(_) => Err(bad(format!("{key:?} is not a list"))),
        None => Err(bad(format!("{key:?} is missing"))),
    }
}

/// A dict built from `(key, value)` pairs (encoded in key order).
pub(crate) fn dict<'a>(pairs: impl IntoIterator<Item = (&'static str, Value<'a>)>) -> Value<'a> {
    Value::Dict(
        pairs
            .into_iter()
            .map(|(k, v)| (Cow::Borrowed(k.as_bytes()), v))
            .collect(),
    )
}

/// A byte-string value.
pub(crate) fn b(v: impl Into<Vec<u8>>) -> Value<'static> {
    Value::Bytes(Cow::Owned(v.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_whole_canonical_input_only() {
        let v = decode(b"d1:ai1e1:bl1:xee").unwrap();
        let d = as_dict(&v, "top").unwrap();
        assert_eq!(int(d, "a").unwrap(), 1);
        assert_eq!(list(d, "b").unwrap().len(), 1);
        assert!(decode(b"d1:bi1e1:ai1ee").is_err(), "unsorted keys");
        assert!(decode(b"i1ei2e").is_err(), "trailing value");
        assert!(decode(b"d1:a").is_err(), "truncated");
        assert!(decode(b"").is_err());
        assert!(decode(b"5:ab").is_err());
        let deep = format!("{}{}", "l".repeat(100), "e".repeat(100));
        assert!(decode(deep.as_bytes()).is_err(), "too deep");
    }

    #[test]
    fn raw_entries_are_the_exact_bytes() {
        let src = b"d4:infod1:xi1ee3:zzzi2ee";
        assert_eq!(raw_entry(src, b"info").unwrap(), Some(&b"d1:xi1ee"[..]));
        assert_eq!(raw_entry(src, b"nope").unwrap(), None);
        let v = dict([("b", Value::Integer(2)), ("a", b("x"))]);
        assert_eq!(encode(&v), b"d1:a1:x1:bi2ee");
    }
}
