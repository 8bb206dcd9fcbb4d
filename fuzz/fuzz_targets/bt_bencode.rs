//! Bencode as peers and trackers send it: what decodes (one value, the
//! whole input, canonical) re-encodes to the very same bytes, and the raw
//! entry of a dict is a slice of the input that decodes on its own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::swarm::bt::bencode::{self, Value};
use peerkit_fuzz::{bounded, pick};

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = pick(data, 2) else {
        return;
    };
    if which == 0 {
        if let Ok(v) = bounded(rest, || bencode::decode(rest)) {
            let out = bencode::encode(&v);
            assert_eq!(out, rest, "a decoded value re-encodes to its bytes");
            let again = bencode::decode(&out).expect("an encoded value decodes");
            assert_eq!(again, v);
        }
        return;
    }
    // The raw entry under the key "info" (what the info hash is taken over).
    if let Ok(Some(raw)) = bounded(rest, || bencode::raw_entry(rest, b"info")) {
        let start = raw.as_ptr() as usize - rest.as_ptr() as usize;
        assert!(start + raw.len() <= rest.len());
        if bencode::decode(rest).is_ok() {
            let v = bencode::decode(raw).expect("an entry of a valid dict decodes");
            assert!(matches!(v, Value::Dict(_) | Value::List(_)));
        }
    }
});
