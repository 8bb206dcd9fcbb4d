//! XDR decoding driven by a script: each byte of the script picks the next
//! item's type; every value decoded, encoded again, decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::oncrpc::{Decoder, Encoder};
use peerkit_fuzz::bounded;

#[derive(Debug, PartialEq)]
enum Item {
    U32(u32),
    I64(i64),
    Bool(bool),
    Opaque(Vec<u8>),
    Fixed(Vec<u8>),
    String(Vec<u8>),
    Optional(Option<u32>),
}

fn decode(script: &[u8], bytes: &[u8]) -> (Vec<Item>, bool) {
    let mut d = Decoder::new(bytes);
    let mut items = Vec::new();
    for op in script {
        let item = match op % 8 {
            0 => d.u32("u32").map(Item::U32),
            1 => d.i64("i64").map(Item::I64),
            2 => d.bool("bool").map(Item::Bool),
            3 => d.opaque(1024, "opaque").map(|b| Item::Opaque(b.to_vec())),
            4 => d
                .opaque_fixed(usize::from(op / 8), "fixed")
                .map(|b| Item::Fixed(b.to_vec())),
            5 => d.string(255, "string").map(|b| Item::String(b.to_vec())),
            // An array's length is checked against the bytes left for its
            // items, which the script does not read: it ends the script.
            6 => {
                let _ = d.array_len(1 << 20, 4, "array");
                return (items, false);
            }
            _ => d
                .optional("optional", |d| d.u32("value"))
                .map(Item::Optional),
        };
        match item {
            Ok(i) => items.push(i),
            Err(_) => return (items, false),
        }
    }
    (items, d.finish().is_ok())
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (script, bytes) = rest.split_at(usize::from(n).min(rest.len()));
    let (items, _) = bounded(data, || decode(script, bytes));
    let mut e = Encoder::new();
    for i in &items {
        match i {
            Item::U32(v) => e.u32(*v),
            Item::I64(v) => e.i64(*v),
            Item::Bool(v) => e.bool(*v),
            Item::Opaque(v) => e.opaque(v),
            Item::Fixed(v) => e.opaque_fixed(v),
            Item::String(v) => e.string(v),
            Item::Optional(v) => e.optional(v.as_ref(), |e, x| {
                e.u32(*x);
            }),
        };
    }
    let bytes = e.into_bytes();
    let (again, whole) = decode(&script[..items.len()], &bytes);
    assert_eq!(items, again);
    assert!(whole, "an encoded script decodes to its end");
});
