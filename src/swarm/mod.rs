//! The BitTorrent-like swarm: manifest, tracker, peers and piece picking.
//!
//! A file is shared as a swarm: its manifest (name, size, piece size, the
//! SHA-256 of the file and of every piece) identifies it, and the swarm id is
//! the SHA-256 of the manifest's encoding. The tracker (`bt-tracker`) keeps,
//! per swarm, the manifest and each member's address and pieces, and never
//! any file data. Peers (`bt-peer`) register with it, ping and report
//! periodically, ask it for other members, and fetch pieces directly from
//! each other, rarest first, checking every piece against the manifest.
//!
//! # Layout
//! - [`proto`]: the tracker and peer-wire request/response enums.
//! - `manifest`: `Manifest`, `SwarmId`, `PieceIndex`, `Bitfield`.
//! - `tracker`: the tracker's state and server.
//! - `tracker_view`: the tracker's live view (piece map, rarity, rates,
//!   who sends to whom, time against the lower bound) and its counters.
//! - `client`: the tracker client peers use.
//! - `peer`: one peer: its state, serving, announcing and downloading.
//! - `picker`: rarest-first choice with random tie breaks.
//! - `bucket`: the token bucket behind `--upload-limit`.
//! - `store`: piece storage, resume, and the final rename.
//! - [`cmd`]: the bodies of `bt-tracker` and `bt-peer`.
//! - [`bt`]: the real BitTorrent beside it: `.torrent` files, the BEP 3
//!   wire, HTTP trackers, magnets (used whenever a torrent or magnet is given).

pub mod bt;
mod bucket;
mod client;
pub mod cmd;
mod manifest;
mod peer;
mod picker;
pub mod proto;
mod store;
mod tracker;
mod tracker_view;

pub use cmd::WhenDone;
pub use manifest::{Bitfield, Manifest, SwarmId, check_piece_size};
pub use peer::PeerConfig;
pub use store::partial_path;
pub use tracker::{CLEANUP_EVERY, Limits as TrackerLimits, SILENT_PINGS, TrackerConfig};
