//! A swarm manifest and a bitfield as a peer or tracker sends them: what
//! decodes is consistent (pieces match size and piece size, no spare bits).
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::swarm::{Bitfield, Manifest};
use peerkit_fuzz::{frame_roundtrip, pick};

fuzz_target!(|data: &[u8]| {
    let Some((which, payload)) = pick(data, 2) else {
        return;
    };
    match which {
        0 => {
            if let Some(m) = frame_roundtrip::<Manifest>(payload) {
                assert!(m.piece_count() > 0 || payload.len() < 1 << 20);
                let _ = m.id();
            }
        }
        _ => {
            if let Some(b) = frame_roundtrip::<Bitfield>(payload) {
                assert!(b.count() <= b.len());
                let _ = b.is_complete();
            }
        }
    }
});
