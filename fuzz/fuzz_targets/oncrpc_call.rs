//! An ONC RPC call header (RFC 5531), and the rdir program's arguments
//! behind it: what decodes re-encodes and decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::oncrpc::Encoder;
use peerkit::oncrpc::msg::decode_call;
use peerkit::rdir::rpc::Args;
use peerkit_fuzz::bounded;

fuzz_target!(|data: &[u8]| {
    let Ok((header, mut d)) = bounded(data, || decode_call(data)) else {
        return;
    };
    let args = Args::decode(&mut d).ok();
    let mut e = Encoder::new();
    header.encode(&mut e);
    if let Some(a) = &args {
        a.encode(&mut e);
    }
    let bytes = e.into_bytes();
    let (again, mut d) = decode_call(&bytes).expect("an encoded call decodes");
    assert_eq!(header, again);
    if let Some(a) = args {
        assert_eq!(Args::decode(&mut d).unwrap(), a);
    }
});
