//! Remote directory reading, the course's `opendir`/`readdir`/`closedir`
//! on another machine, in three designs: stateful over sockets (the server
//! keeps the open directory, the client holds an opaque handle), stateless
//! over sockets (the client keeps a telldir cookie), and stateless over ONC
//! RPC (`rdir.x`, callable from rpcgen-built C clients). Programs: `rdird`
//! and `rls`.
//!
//! - [`dir`]: the local side: `Dir` (opendir/readdir/telldir/seekdir),
//!   `Root` confinement, status codes, one stateless batch.
//! - [`proto`]: the postcard frames of the two socket protocols.
//! - [`stateful`], [`stateless`], [`rpc`]: the three servers.
//! - [`client`]: `RemoteDir`, one implementation per design, and `open`.
//! - [`cmd`]: the bodies of `rdird` and `rls`.

pub mod client;
pub mod cmd;
pub mod dir;
pub mod proto;
pub mod rpc;
pub(crate) mod stateful;
pub(crate) mod stateless;
mod view;
mod watch;

use std::fmt;

/// The three designs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The server keeps open directories; the client holds a handle.
    Stateful,
    /// Every request is self-contained; the client keeps the cookie.
    Stateless,
    /// The stateless service as ONC RPC program `rdir.x`.
    Rpc,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Stateful => "stateful",
            Mode::Stateless => "stateless",
            Mode::Rpc => "rpc",
        })
    }
}

/// Default address of `rdird`.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7654";
/// Default port `rls` connects to.
pub const DEFAULT_PORT: u16 = 7654;
/// Most entries one request may ask for (`RDIR_MAXBATCH`).
pub const MAX_BATCH: u32 = 1024;
/// Longest path (`RDIR_MAXPATH`).
pub const MAX_PATH: u32 = 4096;
/// Longest entry name (`RDIR_MAXNAME`).
pub const MAX_NAME: u32 = 255;
