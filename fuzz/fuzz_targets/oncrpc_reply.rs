//! An ONC RPC reply header, and the rdir program's results behind a
//! SUCCESS: what decodes re-encodes and decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::oncrpc::msg::{Accepted, Reply, ReplyBody};
use peerkit::oncrpc::{Decoder, Encoder};
use peerkit::rdir::dir::{Batch, Refusal, Status};
use peerkit::rdir::rpc::{decode_res, encode_res};
use peerkit_fuzz::bounded;

fuzz_target!(|data: &[u8]| {
    let Ok(reply) = bounded(data, || Reply::decode(data)) else {
        return;
    };
    assert_eq!(Reply::decode(&reply.encode()).unwrap(), reply);
    if let ReplyBody::Accepted(Accepted::Success(results)) = &reply.body {
        let mut d = Decoder::new(results);
        if let Ok(Ok(batch)) = bounded(results, || decode_res(&mut d)) {
            let mut e = Encoder::new();
            encode_res(&Ok::<Batch, Refusal>(batch.clone()), &mut e);
            let bytes = e.into_bytes();
            let again = decode_res(&mut Decoder::new(&bytes)).unwrap().unwrap();
            assert_eq!(batch, again);
        }
        let _ = Status::from_code(0);
    }
});
