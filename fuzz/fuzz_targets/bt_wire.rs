//! The BitTorrent peer wire as a peer sends it: the handshake and a stream
//! of messages. What decodes encodes to a message that decodes the same
//! and takes as many bytes (an unknown id re-encodes without its payload);
//! nothing is allocated beyond what the input holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::swarm::bt::wire::{self, HANDSHAKE_LEN, Handshake, MAX_MSG_LEN, Message};
use peerkit_fuzz::{bounded, pick};

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = pick(data, 2) else {
        return;
    };
    if which == 0 {
        if let Ok(h) = Handshake::decode(rest) {
            assert_eq!(rest.len(), HANDSHAKE_LEN);
            assert_eq!(&h.encode()[..], rest);
            assert_eq!(Handshake::decode(&h.encode()).expect("ours decodes"), h);
        }
        return;
    }
    // Messages one after another, as the reader takes them off a socket.
    let mut buf = rest;
    while let Ok(Some((m, used))) = bounded(buf, || wire::decode(buf)) {
        assert!(used >= 4 && used <= buf.len() && used <= 4 + MAX_MSG_LEN as usize);
        let mut out = Vec::new();
        wire::encode(&m, &mut out);
        let (again, n) = wire::decode(&out)
            .expect("an encoded message decodes")
            .expect("an encoded message is whole");
        assert_eq!(n, out.len());
        assert_eq!(again, m);
        if !matches!(m, Message::Unknown(_)) {
            assert_eq!(&out[..], &buf[..used]);
        }
        buf = &buf[used..];
    }
});
