//! The key-value file a servent loads (keys, values, comments).
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::fuzzing::KvStore;
use peerkit_fuzz::bounded;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = bounded(data, || KvStore::parse(text));
    }
});
