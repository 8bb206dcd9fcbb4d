//! The HTTP tracker's two parsers: a reply as `bt-peer` reads it (compact
//! or dict peers), and an announce query as `bt-tracker` reads it. Each
//! re-encodes (compact for IPv4 peers, a dict list otherwise; the query
//! with every field) and parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::fuzzing;
use peerkit_fuzz::{bounded, pick};

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = pick(data, 2) else {
        return;
    };
    bounded(rest, || fuzzing::bt_announce(rest, which == 1));
});
