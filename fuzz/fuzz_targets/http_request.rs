//! An HTTP/1.1 request head and body as nap-time and the views read it:
//! bounded head, one Content-Length, no Transfer-Encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::http::{MAX_HEAD, read_request};
use peerkit_fuzz::bounded;

const MAX_BODY: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    while let Ok(req) = bounded(data, || read_request(&mut r, MAX_BODY)) {
        assert!(req.body.len() <= MAX_BODY);
        assert!(req.path.len() + req.method.len() <= MAX_HEAD);
    }
});
