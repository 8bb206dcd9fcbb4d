//! peerkit: classic peer-to-peer and distributed-systems programs as small,
//! pipe-friendly command-line tools over one thin shared library.
//!
//! # Layout
//!
//! Shared layer, used by every system:
//! - [`error`]: the library's `Error` type and `Result` alias.
//! - [`events`]: protocol events for the live views, fanned out through bounded queues that drop (and count) rather than wait.
//! - [`frame`]: `[u32 length][postcard]` frames, the buffered `Conn` (`serve_requests` for servers, `call` for clients), the version handshake.
//! - [`http`]: HTTP/1.1 requests read whole and bounded, whole replies (nap-time, the live views).
//! - [`net`]: `HostPort` (a server's address as typed), connecting and binding with timeouts, `SharedStream`, which address to give a client for a member.
//! - [`server`]: the server core every daemon stands on: the `listening on` line, the accept loop, bounded connection threads or a worker pool, deadlines, eviction, connection classes, background thread priority.
//! - [`shutdown`]: the process's one Ctrl-C / SIGTERM handler: the flag that stops accept loops and periodic tasks, subscribers, catchers.
//! - [`input`]: the shells' command lines, edited with history on a terminal, plain from a pipe, ended by a signal.
//! - [`metrics`]: counters, gauges and histograms in atomics, rendered in the Prometheus text format.
//! - [`name`]: `FileName`, the validated plain file name.
//! - [`digest`]: SHA-256 `Digest` (ring keys, swarm pieces) and BLAKE3 `FileDigest` (files the DHT moves), streaming hashers.
//! - [`transfer`]: file bodies out with sendfile (`send`), in while hashing (with `splice` on Linux), atomic verified receive into temporary files (`temp`).
//! - [`log`]: `event!` lines on stdout and `diag!` lines (`tool: message`) on stderr that never fail; `Throttle` for bursts.
//! - [`output`]: data on a stdout that knows a closed pipe, progress bars on a terminal.
//! - [`view`]: the live view behind `--http`: the page, `state.json`, Server-Sent Events and `/metrics` on a listener of its own.
//! - [`cli`]: shared flags, the flag vocabulary (`parse_secs`, `parse_size`, `parse_addr`), argument mistakes as sentences, error-to-exit-code mapping; for binaries and each system's `cmd` only.
//! - [`rng`]: a small random generator for tie breaks and peer choice.
//! - [`oncrpc`]: ONC RPC v2 over TCP: XDR, record marking, call/reply headers, a `Program` server on the core, a client, the rpcbind client.
//! - `fuzzing` (hidden): the parsers the `fuzz/` targets reach that are not public otherwise.
//!
//! One module per system; a system never reaches into another:
//! - [`dht`]: the supernode DHT (`p2p-index`, `p2p-superd`, `p2p-ls`, `p2p-get`, `p2p-put`).
//! - [`swarm`]: the BitTorrent-like swarm (`bt-tracker`, `bt-peer`), and real BitTorrent beside its own wire (`swarm::bt`).
//! - [`flood`]: Gnutella-like key-value flooding (`kv-servent`, `kv-query`).
//! - [`rdir`]: remote directory reading, stateful, stateless and ONC RPC (`rdird`, `rls`).
//! - [`nap`]: the Napster-like directory with peer-to-peer transfer (`nap-server`,
//!   `nap-peer`, `nap-time`, `nap-log`).
//!
//! # Visibility
//!
//! `pub` means a binary, an integration test, an example or a fuzz target
//! uses it; everything else is `pub(crate)` in a crate-private module, and
//! the `unreachable_pub` lint keeps it that way.

#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(unreachable_pub)]

pub mod cli;
pub mod digest;
pub mod error;
pub(crate) mod events;
pub mod frame;
pub mod http;
pub(crate) mod input;
pub(crate) mod log;
pub(crate) mod metrics;
pub(crate) mod name;
pub mod net;
pub mod oncrpc;
pub(crate) mod output;
pub mod rng;
pub(crate) mod server;
pub(crate) mod shutdown;
pub(crate) mod transfer;
pub(crate) mod view;

pub mod dht;
pub mod flood;
pub mod nap;
pub mod rdir;
pub mod swarm;

#[doc(hidden)]
pub mod fuzzing;

pub use error::{Error, Result};
