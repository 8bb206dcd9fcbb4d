//! The BitTorrent peer wire as a peer sends it: the handshake and a stream
//! of messages. What decodes encodes to a message that decodes the same
//! and takes as many bytes (an unknown id re-encodes without its payload);
//! nothing is allocated beyond what the input holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::fuzzing;
use peerkit_fuzz::{bounded, pick};

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = pick(data, 2) else {
        return;
    };
    bounded(rest, || fuzzing::bt_wire(rest, which == 0));
});
