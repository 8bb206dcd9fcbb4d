//! The swarm on the real BitTorrent wire, beside the course design's own:
//! `.torrent` files, the BEP 3 peer wire, HTTP trackers (client and
//! server), magnet links, folders.
//!
//! - `bencode`: `bendy` underneath, the info dict's exact bytes.
//! - [`metainfo`]: `.torrent` read (validated) and written.
//! - [`wire`]: the handshake and messages, a pure decoder.
//! - `announce`: the HTTP tracker client.
//! - [`magnet`]: magnet links, BEP 10 / BEP 9 metadata exchange.
//! - `storage`: a torrent's files laid end to end, the partial copy.
//! - `engine`: download and seed over the wire.
//! - `tracker`: the HTTP announce and scrape server of `bt-tracker`.
//! - `cmd`: the bodies of `bt-peer torrent`, and of `share` and `fetch`
//!   when a torrent or magnet is given.

pub(crate) mod announce;
pub(crate) mod bencode;
pub(crate) mod cmd;
mod engine;
pub(crate) mod magnet;
pub mod metainfo;
mod storage;
pub(crate) mod tracker;
pub(crate) mod wire;
