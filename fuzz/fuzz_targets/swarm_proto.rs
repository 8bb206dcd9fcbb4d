//! The swarm's tracker and peer messages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::swarm::proto::{PeerRequest, PeerResponse, TrackerRequest, TrackerResponse};
use peerkit_fuzz::{frame_roundtrip, pick};

fuzz_target!(|data: &[u8]| {
    let Some((which, payload)) = pick(data, 4) else {
        return;
    };
    match which {
        0 => drop(frame_roundtrip::<TrackerRequest>(payload)),
        1 => drop(frame_roundtrip::<TrackerResponse>(payload)),
        2 => drop(frame_roundtrip::<PeerRequest>(payload)),
        _ => drop(frame_roundtrip::<PeerResponse>(payload)),
    }
});
