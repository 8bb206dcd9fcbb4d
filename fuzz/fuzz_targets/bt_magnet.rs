//! BEP 10 / BEP 9 as a peer sends them: an extended handshake, and a
//! `ut_metadata` message (a bencoded dict, then a block for `Data`). What
//! decodes encodes and decodes the same; a handshake's values are in range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::fuzzing;
use peerkit_fuzz::{bounded, pick};

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = pick(data, 2) else {
        return;
    };
    bounded(rest, || fuzzing::bt_magnet(rest, which == 0));
});
