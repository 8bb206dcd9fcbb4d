//! The key-value flooding wire (the course's byte format): every message
//! read re-encodes to exactly the bytes it was read from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::fuzzing::read_flood_message;
use peerkit_fuzz::bounded;

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    loop {
        let before = r;
        let Ok(Some(msg)) = bounded(data, || read_flood_message(&mut r)) else {
            break;
        };
        let used = &before[..before.len() - r.len()];
        assert_eq!(msg.encode(), used, "{msg:?}");
        let again = read_flood_message(&mut &used[..]).unwrap().unwrap();
        assert_eq!(msg, again);
    }
});
