//! A `.torrent` and a bare info dict as a peer (or a magnet's metadata
//! exchange) hands them over: what parses is consistent (pieces cover the
//! total, files laid end to end with plain-name paths, the hash taken over
//! the info bytes received) and parses the same from its own info bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::swarm::bt::metainfo::{Info, InfoHash, Metainfo};
use peerkit_fuzz::{bounded, pick};

fn check(info: &Info) {
    assert!(info.total > 0);
    assert_eq!(
        info.total.div_ceil(u64::from(info.piece_len)),
        info.pieces.len() as u64
    );
    let mut offset = 0;
    for f in &info.files {
        assert_eq!(f.offset, offset);
        offset += f.length;
        assert_eq!(f.path.is_empty(), !info.multi);
        for c in &f.path {
            assert!(!c.is_empty() && c != "." && c != ".." && !c.contains(['/', '\\', '\0']));
        }
    }
    assert_eq!(offset, info.total);
    let last = info.piece_count() - 1;
    assert!(info.piece_size(last) > 0 && info.piece_size(last) <= info.piece_len);
    let again = Info::parse(&info.raw).expect("an info dict parses again");
    assert_eq!(&again, info);
}

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = pick(data, 2) else {
        return;
    };
    if which == 0 {
        if let Ok(m) = bounded(rest, || Metainfo::parse(rest)) {
            assert_eq!(m.hash, InfoHash::of(&m.info.raw));
            assert_eq!(m.hash, m.info.hash());
            check(&m.info);
        }
    } else if let Ok(info) = bounded(rest, || Info::parse(rest)) {
        assert_eq!(info.raw, rest);
        check(&info);
    }
});
