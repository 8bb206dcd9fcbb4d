//! The supernode DHT: the index's consistent-hash ring, supernodes with
//! their synchronizer, and the `ls` / `get` / `put` clients.
//!
//! - [`proto`]: the index and supernode protocols (requests, responses).
//! - [`ring`]: the consistent-hash ring with virtual nodes.
//! - [`index`]: the index server (`p2p-index`); `index_view` its live view
//!   (the ring as a circle, `index.html`).
//! - [`superd`]: the supernode (`p2p-superd`), one file per thread: index
//!   link, synchronizer, connection serving, plus uploads in flight and the
//!   repository folder.
//! - [`client`]: list, download (following redirects, resuming), upload.
//! - [`cmd`]: the programs' bodies, called by `src/bin/p2p-*.rs`; the only
//!   file of this system that uses `anyhow`.

pub mod client;
pub mod cmd;
pub(crate) mod index;
mod index_view;
pub mod proto;
pub mod ring;
pub(crate) mod superd;
