//! rpcbind's replies as the client reads them: GETPORT's port and DUMP's
//! pmaplist, behind a reply header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::oncrpc::msg::Reply;
use peerkit::oncrpc::portmap::{decode_dump, encode_dump};
use peerkit::oncrpc::{Decoder, Encoder};
use peerkit_fuzz::bounded;

fuzz_target!(|data: &[u8]| {
    let Ok(results) = bounded(data, || Reply::decode(data).and_then(Reply::into_results)) else {
        return;
    };
    let _port = Decoder::new(&results).u32("port");
    let mut d = Decoder::new(&results);
    if let Ok(list) = bounded(data, || decode_dump(&mut d)) {
        let mut e = Encoder::new();
        encode_dump(&list, &mut e);
        let bytes = e.into_bytes();
        assert_eq!(decode_dump(&mut Decoder::new(&bytes)).unwrap(), list);
    }
});
