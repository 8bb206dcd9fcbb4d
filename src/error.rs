//! The library's error type: one plain enum for everything the shared layer can report.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::digest::FileDigest;
use crate::name::NameError;

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
    /// Received bytes do not hash to the announced BLAKE3 digest.
    HashMismatch {
        expected: FileDigest,
        actual: FileDigest,
    },
    /// The version handshake failed.
    Handshake(String),
    /// The peer sent a well-formed message that makes no sense here.
    Protocol { stage: Stage, detail: Detail },
    /// The peer answered with an error of its own.
    Remote { from: Role, message: String },
    /// Something did not finish within its deadline (not one socket read:
    /// those are `Io` errors of kind `TimedOut`).
    TimedOut(String),
    /// A part of this program that the operation needs has stopped.
    Stopped(String),
    /// The service asked for is not there to answer: no rpcbind at the
    /// host, or the program is not registered with it (as a refused
    /// connection is for a socket server).
    Unavailable(String),
    /// Something on this side is not what it must be: a path, a setting,
    /// a part of the program that would not start.
    Local(Local),
    /// A job of this program's own ran to its end but left part of its
    /// work undone (`final sync: 2 file(s) could not be placed`): not the
    /// answer of any one peer.
    Unfinished(String),
    /// `source` happened while doing `what` (`binding 0.0.0.0:80`).
    Context { what: String, source: Box<Error> },
}

/// Where in an exchange a protocol error was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// What the other side sent of its own accord: a client's request, a
    /// peer's announcement (`have`, `request`).
    Request,
    /// The answer to a request of ours.
    Reply,
    /// The exchange that opens a connection before requests flow: a
    /// BitTorrent bitfield, the extension handshake.
    Opening,
    /// A body after its header: a file, a piece, a torrent's metadata.
    Body,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Request => "request",
            Stage::Reply => "reply",
            Stage::Opening => "opening exchange",
            Stage::Body => "body",
        })
    }
}

/// What was wrong with a message (see [`Error::Protocol`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// Another message than the one that must come here.
    Unexpected { expected: &'static str, got: String },
    /// A number past what the protocol or the request allows; `limit` is
    /// the largest value allowed.
    OutOfRange {
        what: &'static str,
        value: u64,
        limit: u64,
    },
    /// Something the exchange needs was not offered.
    Missing(&'static str),
    /// Anything else, in words.
    Invalid(String),
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Detail::Unexpected { expected, got } => write!(f, "expected {expected}, got {got}"),
            Detail::OutOfRange { what, value, limit } => {
                write!(f, "{what} {value} is out of range (at most {limit})")
            }
            Detail::Missing(what) => write!(f, "no {what}"),
            Detail::Invalid(why) => f.write_str(why),
        }
    }
}

/// Who answered with an error of its own (see [`Error::Remote`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A swarm or BitTorrent tracker.
    Tracker,
    /// The DHT's index server.
    Index,
    /// A DHT supernode.
    Supernode,
    /// A swarm or BitTorrent peer.
    Peer,
    /// A remote-directory server (its own protocol or ONC RPC).
    Server,
    /// The date-time web service nap asks for the time.
    TimeService,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Tracker => "tracker",
            Role::Index => "index",
            Role::Supernode => "supernode",
            Role::Peer => "peer",
            Role::Server => "server",
            Role::TimeService => "date-time service",
        })
    }
}

/// What is wrong on this side (see [`Error::Local`]).
#[derive(Debug)]
pub enum Local {
    /// A path that is not what it must be (`x: is a folder`).
    Path { path: PathBuf, problem: String },
    /// A setting or argument that is not valid (a URL, a magnet link, a
    /// piece size).
    Setting(String),
    /// The program could not start a part of itself (a thread, the signal
    /// handler).
    Start { part: &'static str, why: String },
    /// A file being sent ended before the length announced for it.
    Shrank { sent: u64, len: u64 },
}

impl fmt::Display for Local {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Local::Path { path, problem } => write!(f, "{}: {problem}", path.display()),
            Local::Setting(why) => f.write_str(why),
            Local::Start { part, why } => write!(f, "starting {part}: {why}"),
            Local::Shrank { sent, len } => {
                write!(f, "file shrank while sending: {sent} of {len} bytes")
            }
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{}", describe_io(e)),
            Error::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the {max}-byte limit")
            }
            Error::Truncated => f.write_str("connection closed in the middle of a message"),
            Error::Closed => f.write_str("connection closed by peer"),
            Error::Decode(why) => write!(f, "malformed message: {why}"),
            Error::TrailingBytes(n) => write!(f, "malformed message: {n} trailing bytes"),
            Error::Name(e) => write!(f, "{e}"),
            Error::HashMismatch { expected, actual } => {
                write!(f, "BLAKE3 mismatch: expected {expected}, got {actual}")
            }
            Error::Handshake(why) => write!(f, "handshake failed: {why}"),
            Error::Protocol { stage, detail } => write!(f, "protocol error in {stage}: {detail}"),
            Error::Remote { from, message } => write!(f, "{from}: {message}"),
            Error::TimedOut(what) => write!(f, "{what}: timed out"),
            Error::Stopped(what) => write!(f, "{what} has stopped"),
            Error::Unavailable(why) => write!(f, "{why}"),
            Error::Local(local) => write!(f, "{local}"),
            Error::Unfinished(what) => write!(f, "{what}"),
            Error::Context { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => e.source(),
            Error::Name(e) => Some(e),
            // The source is part of this error's own text; go past it.
            Error::Context { source, .. } => source.source(),
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
    /// A message that makes no sense at `stage`.
    pub fn protocol(stage: Stage, detail: Detail) -> Error {
        Error::Protocol { stage, detail }
    }

    /// A message that makes no sense at `stage`, in words.
    pub fn invalid(stage: Stage, why: impl Into<String>) -> Error {
        Error::protocol(stage, Detail::Invalid(why.into()))
    }

    /// An error answer of `from`'s own.
    pub fn remote(from: Role, message: impl Into<String>) -> Error {
        Error::Remote {
            from,
            message: message.into(),
        }
    }

    /// `path` is not what it must be.
    pub fn local_path(path: impl Into<PathBuf>, problem: impl Into<String>) -> Error {
        Error::Local(Local::Path {
            path: path.into(),
            problem: problem.into(),
        })
    }

    /// A setting or argument that is not valid.
    pub fn setting(why: impl Into<String>) -> Error {
        Error::Local(Local::Setting(why.into()))
    }

    /// `part` of this program (`the listener`) could not start.
    pub fn start(part: &'static str, why: impl fmt::Display) -> Error {
        Error::Local(Local::Start {
            part,
            why: why.to_string(),
        })
    }

    /// Wraps the error with what was being done when it happened.
    pub fn doing(self, what: impl Into<String>) -> Error {
        Error::Context {
            what: what.into(),
            source: Box::new(self),
        }
    }

    /// The innermost error, past any `Context` wrappers.
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            e => e,
        }
    }

    /// True when the error is the peer going away or timing out, as opposed
    /// to the peer sending something wrong. Daemons log these more quietly.
    pub fn is_disconnect(&self) -> bool {
        match self.root() {
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

    /// True when nothing came back within a deadline (a socket read or
    /// write timing out, or a deadline of our own).
    pub fn is_timeout(&self) -> bool {
        match self.root() {
            Error::TimedOut(_) => true,
            Error::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }
}

/// Adds `doing` to results: `bind(addr).doing(|| format!("binding {addr}"))`.
pub trait ResultExt<T> {
    /// Wraps an error with what was being done when it happened.
    fn doing<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn doing<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| e.into().doing(what()))
    }
}

/// An I/O error without the `(os error N)` noise, in lower case, with read
/// timeouts called what they are; a full disk says `No space left on
/// device`, as every tool on the system does.
pub fn describe_io(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::StorageFull {
        return "No space left on device".to_string();
    }
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) && e.raw_os_error().is_some()
    {
        return "timed out".to_string();
    }
    let text = e.to_string();
    let text = match text.find(" (os error ") {
        Some(i) if e.raw_os_error().is_some() => text[..i].to_string(),
        _ => text,
    };
    if e.raw_os_error().is_some() {
        let mut chars = text.chars();
        match chars.next() {
            Some(first) => first.to_lowercase().chain(chars).collect(),
            None => text,
        }
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_cleanly() {
        let e = io::Error::from_raw_os_error(111);
        assert_eq!(describe_io(&e), "connection refused");
        let e = io::Error::other("custom text");
        assert_eq!(describe_io(&e), "custom text");
    }

    #[test]
    fn context_reads_outside_in_and_keeps_the_cause() {
        let e = Error::from(io::Error::from_raw_os_error(104)).doing("reading x");
        assert_eq!(e.to_string(), "reading x: connection reset by peer");
        assert!(e.is_disconnect());
        let r: std::result::Result<(), io::Error> = Err(io::Error::from_raw_os_error(98));
        let e = r.doing(|| "binding 0.0.0.0:1").unwrap_err();
        assert_eq!(e.to_string(), "binding 0.0.0.0:1: address already in use");
    }

    #[test]
    fn protocol_errors_say_where_and_what() {
        let e = Error::protocol(
            Stage::Reply,
            Detail::Unexpected {
                expected: "Pair",
                got: "Ping".into(),
            },
        );
        assert_eq!(
            e.to_string(),
            "protocol error in reply: expected Pair, got Ping"
        );
        let e = Error::protocol(
            Stage::Request,
            Detail::OutOfRange {
                what: "piece index",
                value: 9,
                limit: 3,
            },
        );
        assert_eq!(
            e.to_string(),
            "protocol error in request: piece index 9 is out of range (at most 3)"
        );
        let e = Error::protocol(Stage::Opening, Detail::Missing("extension protocol"));
        assert_eq!(
            e.to_string(),
            "protocol error in opening exchange: no extension protocol"
        );
        let e = Error::invalid(Stage::Body, "metadata does not hash to the info hash");
        assert_eq!(
            e.to_string(),
            "protocol error in body: metadata does not hash to the info hash"
        );
        assert!(!e.is_disconnect() && !e.is_timeout());
    }

    #[test]
    fn remote_errors_name_who_answered() {
        let e = Error::remote(Role::Tracker, "no such swarm");
        assert_eq!(e.to_string(), "tracker: no such swarm");
        assert!(matches!(
            e.doing("announcing").root(),
            Error::Remote {
                from: Role::Tracker,
                ..
            }
        ));
        for (role, text) in [
            (Role::Index, "index"),
            (Role::Supernode, "supernode"),
            (Role::Peer, "peer"),
            (Role::Server, "server"),
            (Role::TimeService, "date-time service"),
        ] {
            assert_eq!(Error::remote(role, "no").to_string(), format!("{text}: no"));
        }
    }

    #[test]
    fn local_errors_keep_their_shape() {
        let e = Error::local_path("some/dir", "not a directory");
        assert_eq!(e.to_string(), "some/dir: not a directory");
        assert!(matches!(
            &e,
            Error::Local(Local::Path { path, .. }) if path.as_path() == std::path::Path::new("some/dir")
        ));
        let e = Error::setting("magnet link without xt=urn:btih:");
        assert_eq!(e.to_string(), "magnet link without xt=urn:btih:");
        let e = Error::start("the listener", "out of threads");
        assert_eq!(e.to_string(), "starting the listener: out of threads");
        let e = Error::Local(Local::Shrank { sent: 3, len: 10 });
        assert_eq!(e.to_string(), "file shrank while sending: 3 of 10 bytes");
    }
}
