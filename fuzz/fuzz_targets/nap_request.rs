//! The Napster-like server's requests (NUL-terminated fields): a whole
//! request read re-encodes and reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::nap::wire::{Incoming, read_request};
use peerkit_fuzz::bounded;

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    while let Ok(incoming) = bounded(data, || read_request(&mut r)) {
        if let Incoming::Request(req) = incoming {
            let bytes = req.encode();
            match read_request(&mut &bytes[..]) {
                Ok(Incoming::Request(again)) => assert_eq!(req, again),
                other => panic!("{req:?} encoded as {bytes:?} reads back as {other:?}"),
            }
        }
    }
});
