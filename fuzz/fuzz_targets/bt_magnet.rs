//! BEP 10 / BEP 9 as a peer sends them: an extended handshake, and a
//! `ut_metadata` message (a bencoded dict, then a block for `Data`). What
//! decodes encodes and decodes the same; a handshake's values are in range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::swarm::bt::magnet::{self, Metadata};
use peerkit::swarm::bt::metainfo::MAX_TORRENT_LEN;
use peerkit_fuzz::{bounded, pick};

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = pick(data, 2) else {
        return;
    };
    if which == 0 {
        if let Ok(h) = bounded(rest, || magnet::parse_ext_handshake(rest)) {
            assert_ne!(h.ut_metadata, Some(0));
            if let Some(n) = h.metadata_size {
                assert!(n > 0 && n as usize <= MAX_TORRENT_LEN);
            }
            // Ours, with the size the peer gave, reads back as ours.
            let ours = magnet::ext_handshake(h.metadata_size.map(|n| n as usize));
            let back = magnet::parse_ext_handshake(&ours).expect("ours parses");
            assert_eq!(back.metadata_size, h.metadata_size);
            assert!(back.ut_metadata.is_some());
        }
    } else if let Ok(m) = bounded(rest, || magnet::decode_metadata(rest)) {
        if let Metadata::Data { data, .. } = &m {
            assert!(data.len() <= 16 * 1024);
        }
        let out = magnet::encode_metadata(&m);
        let again = magnet::decode_metadata(&out).expect("an encoded message decodes");
        assert_eq!(again, m);
    }
});
