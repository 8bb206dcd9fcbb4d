//! The SOAP body of a nap-time call: the operation named, or why not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::fuzzing::soap_operation;
use peerkit_fuzz::bounded;

fuzz_target!(|data: &[u8]| {
    if let Ok(op) = bounded(data, || soap_operation(data)) {
        assert!(op.len() <= data.len());
    }
});
