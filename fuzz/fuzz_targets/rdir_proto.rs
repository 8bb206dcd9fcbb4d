//! The remote-directory protocols of our own (stateful and stateless).
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::rdir::proto::{
    StatefulRequest, StatefulResponse, StatelessRequest, StatelessResponse,
};
use peerkit_fuzz::{frame_roundtrip, pick};

fuzz_target!(|data: &[u8]| {
    let Some((which, payload)) = pick(data, 4) else {
        return;
    };
    match which {
        0 => drop(frame_roundtrip::<StatefulRequest>(payload)),
        1 => drop(frame_roundtrip::<StatefulResponse>(payload)),
        2 => drop(frame_roundtrip::<StatelessRequest>(payload)),
        _ => drop(frame_roundtrip::<StatelessResponse>(payload)),
    }
});
