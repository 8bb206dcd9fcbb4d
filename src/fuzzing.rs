//! The parsers the `fuzz/` crate's targets reach that the library does not
//! otherwise make public. Not an API: for fuzzing only.

pub use crate::flood::kvfile::KvStore;
pub use crate::flood::wire::{Message as FloodMessage, read_message as read_flood_message};

/// The operation named by a SOAP request body sent to `nap-time`.
pub fn soap_operation(body: &[u8]) -> Result<String, String> {
    crate::nap::time_service::soap_operation(body)
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
