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
