//! The parsers the `fuzz/` crate's targets reach that the library does not
//! otherwise make public. Not an API: for fuzzing only.
//!
//! The round-trip checks below panic on purpose: a panic is how a fuzz
//! target reports a finding. Every `expect` in them decodes either bytes
//! our own encoder just wrote from a value the parser accepted, or (the
//! raw `info` entry) a slice of an input the decoder has just accepted
//! whole; it fails only if two of our own paths disagree, which is the
//! bug the target exists to find. None runs in the programs.

pub use crate::flood::kvfile::KvStore;
pub use crate::flood::wire::{Message as FloodMessage, read_message as read_flood_message};

/// The operation named by a SOAP request body sent to `nap-time`.
pub fn soap_operation(body: &[u8]) -> Result<String, String> {
    crate::nap::time_service::soap_operation(body)
}

/// The BitTorrent peer wire: with `handshake`, `data` as a handshake,
/// which must re-encode to itself; else a stream of messages, each of
/// which re-encodes to the bytes it came from (an unknown id without its
/// payload) and decodes the same. Panics on any difference.
pub fn bt_wire(data: &[u8], handshake: bool) {
    use crate::swarm::bt::wire::{self, HANDSHAKE_LEN, Handshake, MAX_MSG_LEN, Message};
    if handshake {
        if let Ok(h) = Handshake::decode(data) {
            assert_eq!(data.len(), HANDSHAKE_LEN);
            assert_eq!(&h.encode()[..], data);
        }
        return;
    }
    let mut buf = data;
    while let Ok(Some((m, used))) = wire::decode(buf) {
        assert!(used >= 4 && used <= buf.len() && used <= 4 + MAX_MSG_LEN as usize);
        let mut out = Vec::new();
        wire::encode(&m, &mut out);
        let again = wire::decode(&out).expect("an encoded message decodes");
        assert_eq!(again, Some((m.clone(), out.len())));
        if !matches!(m, Message::Unknown(_)) {
            assert_eq!(&out[..], &buf[..used]);
        }
        buf = &buf[used..];
    }
}

/// Bencode: with `raw`, the raw `info` entry of a dict, a slice of the
/// input that decodes on its own when the whole does; else one value,
/// which re-encodes to exactly its input (canonical) and decodes the same.
pub fn bt_bencode(data: &[u8], raw: bool) {
    use crate::swarm::bt::bencode::{self, Value};
    if raw {
        if let Ok(Some(entry)) = bencode::raw_entry(data, b"info") {
            let start = entry.as_ptr() as usize - data.as_ptr() as usize;
            assert!(start + entry.len() <= data.len());
            if bencode::decode(data).is_ok() {
                let v = bencode::decode(entry).expect("an entry of a valid dict decodes");
                assert!(matches!(v, Value::Dict(_) | Value::List(_)));
            }
        }
        return;
    }
    if let Ok(v) = bencode::decode(data) {
        let out = bencode::encode(&v);
        assert_eq!(out, data, "a decoded value re-encodes to its bytes");
        assert_eq!(bencode::decode(&out).expect("an encoded value decodes"), v);
    }
}

/// BEP 10 / BEP 9: with `handshake`, an extended handshake, whose values
/// are in range and which ours, given the same size, reads back as; else a
/// `ut_metadata` message, which re-encodes and decodes the same.
pub fn bt_magnet(data: &[u8], handshake: bool) {
    use crate::swarm::bt::magnet::{self, Metadata};
    use crate::swarm::bt::metainfo::MAX_TORRENT_LEN;
    if handshake {
        if let Ok(h) = magnet::parse_ext_handshake(data) {
            assert_ne!(h.ut_metadata, Some(0));
            if let Some(n) = h.metadata_size {
                assert!(n > 0 && n as usize <= MAX_TORRENT_LEN);
            }
            let ours = magnet::ext_handshake(h.metadata_size.map(|n| n as usize));
            let back = magnet::parse_ext_handshake(&ours).expect("ours parses");
            assert_eq!(back.metadata_size, h.metadata_size);
            assert!(back.ut_metadata.is_some());
        }
        return;
    }
    if let Ok(m) = magnet::decode_metadata(data) {
        if let Metadata::Data { data, .. } = &m {
            assert!(data.len() <= 16 * 1024);
        }
        let out = magnet::encode_metadata(&m);
        let again = magnet::decode_metadata(&out).expect("an encoded message decodes");
        assert_eq!(again, m);
    }
}

/// The HTTP tracker: with `query`, an announce query as `bt-tracker` reads
/// it; else a reply as `bt-peer` reads it. Each re-encodes (every query
/// field; compact IPv4 peers, or a dict list) and parses the same.
pub fn bt_announce(data: &[u8], query: bool) {
    use crate::swarm::bt::announce::{self, url_encode};
    use crate::swarm::bt::bencode::{self, Value, b, dict};
    use crate::swarm::bt::tracker::parse_announce;
    if query {
        let Ok(q) = std::str::from_utf8(data) else {
            return;
        };
        if let Ok(a) = parse_announce(q) {
            assert_ne!(a.port, 0);
            let mut s = format!(
                "info_hash={}&peer_id={}&port={}&left={}&numwant={}",
                url_encode(&a.info_hash.0),
                url_encode(&a.peer_id),
                a.port,
                a.left,
                a.numwant
            );
            if a.compact {
                s.push_str("&compact=1");
            }
            if a.no_peer_id {
                s.push_str("&no_peer_id=1");
            }
            if let Some(e) = &a.event {
                s.push_str("&event=");
                s.push_str(e);
            }
            assert_eq!(parse_announce(&s).expect("a query parses"), a);
        }
        return;
    }
    if let Ok(r) = announce::parse_reply(data) {
        assert!((1..=86_400).contains(&r.interval));
        assert!(r.peers.iter().all(|p| p.port() != 0));
        let peers = if r.peers.iter().all(|p| p.is_ipv4()) {
            let mut c = Vec::new();
            for p in &r.peers {
                if let std::net::IpAddr::V4(ip) = p.ip() {
                    c.extend_from_slice(&ip.octets());
                    c.extend_from_slice(&p.port().to_be_bytes());
                }
            }
            b(c)
        } else {
            Value::List(
                r.peers
                    .iter()
                    .map(|p| {
                        dict([
                            ("ip", b(p.ip().to_string())),
                            ("port", Value::Integer(i64::from(p.port()))),
                        ])
                    })
                    .collect(),
            )
        };
        let body = bencode::encode(&dict([
            ("interval", Value::Integer(i64::from(r.interval))),
            ("peers", peers),
        ]));
        assert_eq!(announce::parse_reply(&body).expect("a reply parses"), r);
    }
}

/// Keeps `bytes` as a seed input of fuzz target `target` when the unit
/// tests run with `PEERKIT_FUZZ_SEEDS=DIR` (scripts/fuzz.sh --seeds): the
/// golden bytes and round-trip cases of the unit tests become the fuzzers'
/// starting corpus. Does nothing otherwise.
#[cfg(test)]
pub(crate) fn seed(target: &str, bytes: &[u8]) {
    let Some(dir) = std::env::var_os("PEERKIT_FUZZ_SEEDS") else {
        return;
    };
    let dir = std::path::Path::new(&dir).join(target);
    let name = crate::digest::Digest::of(bytes).to_string();
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(&name[..16]), bytes);
}

/// As [`seed`] for a whole frame of message type `T`: a seed of the frame
/// target, and its payload one of the target that decodes `T`, behind the
/// byte that target reads to choose the type.
#[cfg(test)]
pub(crate) fn seed_frame<T>(frame: &[u8]) {
    const TARGETS: [(&str, &str, u8); 16] = [
        ("dht::proto::IndexRequestOf<peerkit::name", "dht_proto", 0),
        ("dht::proto::IndexResponse", "dht_proto", 1),
        ("dht::proto::SuperRequestOf<peerkit::name", "dht_proto", 2),
        ("dht::proto::SuperResponse", "dht_proto", 3),
        ("dht::proto::IndexRequestOf<alloc", "dht_proto", 4),
        ("dht::proto::SuperRequestOf<alloc", "dht_proto", 5),
        ("swarm::proto::TrackerRequest", "swarm_proto", 0),
        ("swarm::proto::TrackerResponse", "swarm_proto", 1),
        ("swarm::proto::PeerRequest", "swarm_proto", 2),
        ("swarm::proto::PeerResponse", "swarm_proto", 3),
        ("swarm::manifest::Manifest", "swarm_manifest", 0),
        ("swarm::manifest::Bitfield", "swarm_manifest", 1),
        ("rdir::proto::StatefulRequest", "rdir_proto", 0),
        ("rdir::proto::StatefulResponse", "rdir_proto", 1),
        ("rdir::proto::StatelessRequest", "rdir_proto", 2),
        ("rdir::proto::StatelessResponse", "rdir_proto", 3),
    ];
    seed("frame", frame);
    let name = std::any::type_name::<T>();
    if let Some((_, target, which)) = TARGETS.iter().find(|(t, ..)| name.contains(t)) {
        let mut bytes = vec![*which];
        bytes.extend_from_slice(frame.get(4..).unwrap_or_default());
        seed(target, &bytes);
    }
}

/// Seeds of the BitTorrent-wire targets (`bt_*`): every peer-wire message
/// and the handshake, the extended handshake and `ut_metadata` messages, a
/// single-file and a folder `.torrent` and their info dicts, tracker
/// replies (compact and dict peers) and an announce query. Each behind the
/// byte its target reads to choose the parser.
#[cfg(test)]
mod bt_seeds {
    use super::seed;
    use crate::swarm::bt::{magnet, metainfo, wire};

    fn seed_as(target: &str, which: u8, bytes: &[u8]) {
        let mut b = vec![which];
        b.extend_from_slice(bytes);
        seed(target, &b);
    }

    #[test]
    fn bt_seeds() {
        let h = wire::Handshake::new(metainfo::InfoHash([7; 20]), *b"-PK0001-abcdefghijkl");
        seed_as("bt_wire", 0, &h.encode());
        let messages = [
            wire::Message::KeepAlive,
            wire::Message::Choke,
            wire::Message::Unchoke,
            wire::Message::Interested,
            wire::Message::NotInterested,
            wire::Message::Have(3),
            wire::Message::Bitfield(vec![0b1010_0000]),
            wire::Message::Request {
                index: 1,
                begin: 16384,
                length: 16384,
            },
            wire::Message::Piece {
                index: 1,
                begin: 0,
                data: b"some block bytes".to_vec(),
            },
            wire::Message::Cancel {
                index: 1,
                begin: 0,
                length: 16384,
            },
            wire::Message::Port(6881),
            wire::Message::Extended {
                id: 0,
                payload: magnet::ext_handshake(Some(1234)),
            },
        ];
        let mut stream = Vec::new();
        for m in &messages {
            let mut one = Vec::new();
            wire::encode(m, &mut one);
            seed_as("bt_wire", 1, &one);
            stream.extend_from_slice(&one);
        }
        seed_as("bt_wire", 1, &stream);

        seed_as("bt_magnet", 0, &magnet::ext_handshake(Some(1234)));
        seed_as("bt_magnet", 0, &magnet::ext_handshake(None));
        for m in [
            magnet::Metadata::Request(0),
            magnet::Metadata::Reject(2),
            magnet::Metadata::Data {
                piece: 1,
                total: 20000,
                data: b"d4:name1:ae".to_vec(),
            },
        ] {
            seed_as("bt_magnet", 1, &magnet::encode_metadata(&m));
        }

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("one.bin");
        std::fs::write(&file, vec![5u8; 40_000]).unwrap();
        let folder = dir.path().join("folder");
        std::fs::create_dir_all(folder.join("sub")).unwrap();
        std::fs::write(folder.join("a.txt"), b"alpha").unwrap();
        std::fs::write(folder.join("sub/b.txt"), vec![9u8; 20_000]).unwrap();
        let trackers = ["http://127.0.0.1:6969/announce".to_string()];
        for p in [&file, &folder] {
            let (torrent, _) = metainfo::create(p, Some(16384), &trackers).unwrap();
            seed_as("bt_metainfo", 0, &torrent);
            seed_as("bt_bencode", 0, &torrent);
            seed_as("bt_bencode", 1, &torrent);
            let m = metainfo::Metainfo::parse(&torrent).unwrap();
            seed_as("bt_metainfo", 1, &m.info.raw);
        }

        let replies: [&[u8]; 3] = [
            b"d8:intervali30e5:peers12:\x7f\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x50e",
            b"d8:intervali5e5:peersld2:ip9:127.0.0.17:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti7000eeee",
            b"d14:failure reason7:unknowne",
        ];
        for r in replies {
            seed_as("bt_announce", 0, r);
            seed_as("bt_bencode", 0, r);
        }
        seed_as(
            "bt_announce",
            1,
            b"info_hash=%07%07%07%07%07%07%07%07%07%07%07%07%07%07%07%07%07%07%07%07\
              &peer_id=-PK0001-abcdefghijkl&port=6881&uploaded=0&downloaded=0\
              &left=100&compact=1&numwant=50&event=started",
        );
    }
}
