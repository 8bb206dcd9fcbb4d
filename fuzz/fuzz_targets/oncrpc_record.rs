//! ONC RPC record marking: fragments reassembled under the record limit;
//! a record read, written again in fragments of any size, reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::oncrpc::record::{read_record, write_record_with};
use peerkit_fuzz::{bounded, pick};

const MAX: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Some((fragment, rest)) = pick(data, 255) else {
        return;
    };
    let mut r = rest;
    while let Ok(Some(record)) = bounded(data, || read_record(&mut r, MAX)) {
        assert!(record.len() <= MAX);
        let mut out = Vec::new();
        write_record_with(&mut out, &record, usize::from(fragment) + 1).unwrap();
        let again = read_record(&mut &out[..], MAX).unwrap().unwrap();
        assert_eq!(record, again);
    }
});
