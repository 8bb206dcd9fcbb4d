//! Frame reading: length prefix, limit, truncation, and the handshake's
//! Hello / HelloReply; whatever reads back is re-framed to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::frame::{self, Hello, HelloReply, MAX_FRAME_LEN};
use peerkit_fuzz::{bounded, frame_roundtrip};

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    while let Ok(Some(payload)) = bounded(data, || frame::read_payload(&mut r, MAX_FRAME_LEN)) {
        assert!(payload.len() <= MAX_FRAME_LEN);
        frame_roundtrip::<Hello>(&payload);
        frame_roundtrip::<HelloReply>(&payload);
    }
});
