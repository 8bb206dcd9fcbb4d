//! A Napster-like directory with peer-to-peer transfer, byte-compatible
//! with the course's programs: a central server that knows the users, where
//! each is connected and what each has published; peers that register,
//! publish, list and fetch files straight from each other; a date-time web
//! service the peers stamp their requests with; an RPC service that logs
//! every operation the server carries out.
//!
//! # Layout
//! - [`wire`]: the requests and answers, their exact bytes, the readers.
//! - [`datetime`]: the protocol's `DD/MM/YYYY HH:MM:SS` date-time and the UTC clock.
//! - [`store`]: the directory's state and its atomic file under `--storage`.
//! - [`server`]: `nap-server`: the worker pool, the operations, the log lines;
//!   `server_view` its live view (`server.html`).
//! - [`peer`]: `nap-peer`: the `c> ` shell; `peer/files.rs` the file
//!   listener and the GET_FILE client.
//! - [`time_service`]: `nap-time`: the date-time over plain HTTP and SOAP 1.1, and
//!   the client peers use to ask it.
//! - `records`: the live view of `nap-log` and `nap-time`, a list of what
//!   each served (`records.html`).
//! - [`oplog`]: `nap-log`, the ONC RPC operation log (`operations.x`), and
//!   the server's non-blocking sender to it.
//! - [`cmd`]: the programs' bodies.

pub mod cmd;
pub(crate) mod datetime;
pub(crate) mod oplog;
pub mod peer;
mod records;
pub(crate) mod server;
mod server_view;
pub(crate) mod store;
pub(crate) mod time_service;
pub mod wire;

pub use wire::{Answer, DateTime, Field, Op, Request, ResultFormat};
