//! The DHT's messages: supernode <-> index, client <-> supernode, and the
//! lenient (String-named) forms used to explain a refusal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::dht::proto::{
    IndexRequest, IndexRequestOf, IndexResponse, SuperRequest, SuperRequestOf, SuperResponse,
};
use peerkit_fuzz::{frame_roundtrip, pick};

fuzz_target!(|data: &[u8]| {
    let Some((which, payload)) = pick(data, 6) else {
        return;
    };
    match which {
        0 => drop(frame_roundtrip::<IndexRequest>(payload)),
        1 => drop(frame_roundtrip::<IndexResponse>(payload)),
        2 => drop(frame_roundtrip::<SuperRequest>(payload)),
        3 => drop(frame_roundtrip::<SuperResponse>(payload)),
        4 => drop(frame_roundtrip::<IndexRequestOf<String>>(payload)),
        _ => drop(frame_roundtrip::<SuperRequestOf<String>>(payload)),
    }
});
