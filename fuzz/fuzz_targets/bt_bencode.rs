//! Bencode as peers and trackers send it: what decodes (one value, the
//! whole input, canonical) re-encodes to the very same bytes, and the raw
//! entry of a dict is a slice of the input that decodes on its own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::fuzzing;
use peerkit_fuzz::{bounded, pick};

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = pick(data, 2) else {
        return;
    };
    bounded(rest, || fuzzing::bt_bencode(rest, which == 1));
});
