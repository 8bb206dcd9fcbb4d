//! Gnutella-like key-value flooding, byte-compatible with the course protocol.
//!
//! Servents hold a key-value database each and keep TCP links to their
//! neighbours. A client sends a query to one servent, which floods it with a
//! TTL; every servent floods a given query once, and the servents holding
//! the key answer the client on a new connection. A topology query collects
//! the path of servents each branch of the flood reached.
//!
//! This system speaks its own fixed binary protocol (see `wire`), not the
//! toolkit's postcard frames, so that it mixes with other implementations.
//!
//! # Layout
//! - `wire`: the six messages, their exact bytes, the message reader.
//! - `kvfile`: the key-value file format and the loaded database.
//! - [`servent`]: `kv-servent`: accepting, flooding, the stats; `servent/links.rs` the
//!   neighbour links, `servent/seen.rs` the seen set, `servent/answers.rs` the answers.
//! - [`client`]: `kv-query`'s link, answer listener and commands.
//! - [`cmd`]: the programs' bodies: `kv-servent`, and `kv-query`'s
//!   one-shot, shell and pipeline modes.

pub(crate) mod client;
pub mod cmd;
pub(crate) mod kvfile;
pub(crate) mod servent;
pub(crate) mod wire;
