//! The library's error type: one plain enum for everything the shared layer can report.

use std::fmt;
use std::io;

use crate::name::NameError;
use crate::transfer::Digest;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in the shared layer or in a protocol built on it.
#[derive(Debug)]
pub enum Error {
    /// A socket or file operation failed.
    Io(io::Error),
    /// A length prefix announced more bytes than the protocol allows.
    FrameTooLarge { len: u64, max: u64 },
    /// The peer closed the connection in the middle of a frame or a file body.
    Truncated,
    /// The peer closed the connection where an answer was required.
    Closed,
    /// A frame's payload is not a valid message of the expected type.
    Decode(String),
    /// A frame's payload decoded, but bytes were left over after the message.
    TrailingBytes(usize),
    /// A file name from the network or the command line is not a plain name.
    Name(NameError),
    /// Received bytes do not hash to the announced SHA-256.
    HashMismatch { expected: Digest, actual: Digest },
    /// The version handshake failed.
    Handshake(String),
    /// The peer sent a well-formed message that makes no sense here.
    Protocol(String),
    /// The peer answered with an error of its own.
    Remote(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{}", crate::cli::describe_io(e)),
            Error::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the {max}-byte limit")
            }
            Error::Truncated => f.write_str("connection closed in the middle of a message"),
            Error::Closed => f.write_str("connection closed by peer"),
            Error::Decode(why) => write!(f, "malformed message: {why}"),
            Error::TrailingBytes(n) => write!(f, "malformed message: {n} trailing bytes"),
            Error::Name(e) => write!(f, "{e}"),
            Error::HashMismatch { expected, actual } => {
                write!(f, "SHA-256 mismatch: expected {expected}, got {actual}")
            }
            Error::Handshake(why) => write!(f, "handshake failed: {why}"),
            Error::Protocol(why) => write!(f, "protocol error: {why}"),
            Error::Remote(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => e.source(),
            Error::Name(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::UnexpectedEof => Error::Truncated,
            _ => Error::Io(e),
        }
    }
}

impl From<NameError> for Error {
    fn from(e: NameError) -> Self {
        Error::Name(e)
    }
}

impl Error {
    /// True when the error is the peer going away or timing out, as opposed
    /// to the peer sending something wrong. Daemons log these more quietly.
    pub fn is_disconnect(&self) -> bool {
        match self {
            Error::Closed | Error::Truncated => true,
            Error::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }
}
