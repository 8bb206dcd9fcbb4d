//! ONC RPC version 2 (RFC 5531) over TCP: XDR encoding (RFC 4506), record
//! marking, call and reply headers, a server for `Program`s on the server
//! core, a client, and the rpcbind (portmapper v2) client. Its errors are
//! its own (`oncrpc::Error`) and convert into `crate::Error`.
//!
//! A service is a type implementing [`server::Program`]: its program and
//! version numbers and a `dispatch(proc, args)` that decodes its arguments
//! from an [`xdr::Decoder`] and encodes its results into an
//! [`xdr::Encoder`]. [`server::serve`] runs it on a [`crate::server::Server`]
//! and [`portmap::Registration`] registers it with the local rpcbind.

pub(crate) mod client;
pub mod msg;
pub mod portmap;
pub mod record;
pub(crate) mod server;
pub(crate) mod xdr;

use std::fmt;
use std::io;

pub use client::Client;
pub use server::{Call, Fault, Program};
pub use xdr::{Decoder, Encoder};

/// Result alias of this layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong speaking ONC RPC.
#[derive(Debug)]
pub enum Error {
    /// A socket operation failed.
    Io(io::Error),
    /// The peer closed the connection where a reply was owed.
    Closed,
    /// XDR data ended before the item being decoded.
    Truncated { what: &'static str },
    /// A counted item (string, opaque, array) is longer than its bound.
    TooLong {
        what: &'static str,
        len: u64,
        max: u64,
    },
    /// An XDR value that is not allowed where it stands (a bool of 7, an
    /// unknown union arm, a message type that is neither call nor reply).
    Invalid { what: &'static str, value: u32 },
    /// Bytes were left after the last item of a message.
    TrailingBytes(usize),
    /// A record's fragments add up to more than the limit.
    RecordTooLarge { len: u64, max: u64 },
    /// A fragment header that makes no sense (an empty non-final fragment).
    BadFragment(u32),
    /// The server refused the call; the reply's status in words.
    Rejected(String),
    /// A reply to another call than the one sent.
    XidMismatch { sent: u32, got: u32 },
    /// rpcbind said no, or is not there.
    Rpcbind(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{}", crate::error::describe_io(e)),
            Error::Closed => f.write_str("connection closed by peer"),
            Error::Truncated { what } => write!(f, "malformed XDR: {what} cut short"),
            Error::TooLong { what, len, max } => {
                write!(
                    f,
                    "malformed XDR: {what} of {len} exceeds its bound of {max}"
                )
            }
            Error::Invalid { what, value } => write!(f, "malformed XDR: {what} of {value}"),
            Error::TrailingBytes(n) => write!(f, "malformed XDR: {n} trailing bytes"),
            Error::RecordTooLarge { len, max } => {
                write!(f, "RPC record of {len} bytes exceeds the {max}-byte limit")
            }
            Error::BadFragment(h) => write!(f, "bad record fragment header {h:#010x}"),
            Error::Rejected(why) => write!(f, "RPC call refused: {why}"),
            Error::XidMismatch { sent, got } => {
                write!(f, "reply for call {got:#x}, expected {sent:#x}")
            }
            Error::Rpcbind(why) => write!(f, "rpcbind: {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => e.source(),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<Error> for crate::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(e) => crate::Error::from(e),
            Error::Closed => crate::Error::Closed,
            Error::RecordTooLarge { len, max } => crate::Error::FrameTooLarge { len, max },
            Error::TrailingBytes(n) => crate::Error::TrailingBytes(n),
            e @ (Error::Truncated { .. } | Error::TooLong { .. } | Error::Invalid { .. }) => {
                crate::Error::Decode(e.to_string())
            }
            e @ Error::Rejected(_) => {
                crate::Error::remote(crate::error::Role::Server, e.to_string())
            }
            e @ Error::Rpcbind(_) => crate::Error::Unavailable(e.to_string()),
            // Only a client turns these into the library's error (the
            // server logs its own): what is wrong is in a reply.
            e @ (Error::BadFragment(_) | Error::XidMismatch { .. }) => {
                crate::Error::invalid(crate::error::Stage::Reply, e.to_string())
            }
        }
    }
}
