//! The two socket protocols, as postcard frames after the version
//! handshake. Paths and names are raw bytes: not every file name is UTF-8.

use serde::{Deserialize, Serialize};

use crate::error::Role;
use crate::frame::{self, Protocol};

/// The stateful protocol.
pub const STATEFUL: Protocol = Protocol {
    name: "rdir-stateful",
    version: 1,
};

/// The stateless protocol.
pub const STATELESS: Protocol = Protocol {
    name: "rdir-stateless",
    version: 1,
};

/// Largest request frame: a path of 4096 bytes and a little more.
const MAX_REQUEST: usize = 8 * 1024;

/// A request to the stateful server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatefulRequest {
    /// Open a directory; answered with `Opened`.
    Open { path: Vec<u8> },
    /// The next entries (1 to 1024) of an open directory; answered with
    /// `Entries`.
    Read { handle: u64, max: u32 },
    /// Release a handle; answered with `Closed`.
    Close { handle: u64 },
}

/// The stateful server's answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatefulResponse {
    /// The directory is open under this opaque handle.
    Opened { handle: u64 },
    /// The next entries; `eof` once the directory is finished.
    Entries { names: Vec<Vec<u8>>, eof: bool },
    /// The handle is released.
    Closed,
    /// The request was refused: a status code (see `dir::status`) and why.
    Error { status: u32, message: String },
}

/// A request to the stateless server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatelessRequest {
    /// Up to `max` entries of `path` from position `cookie` (0: the start).
    ReadDir {
        path: Vec<u8>,
        cookie: u64,
        max: u32,
    },
}

/// The stateless server's answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatelessResponse {
    /// Entries in readdir order, the cookie to continue from, and whether
    /// the directory is finished.
    Batch {
        names: Vec<Vec<u8>>,
        cookie: u64,
        eof: bool,
    },
    /// The request was refused: a status code (see `dir::status`) and why.
    Error { status: u32, message: String },
}

impl frame::Request for StatefulRequest {
    const MAX_LEN: usize = MAX_REQUEST;
}

impl frame::Request for StatelessRequest {
    const MAX_LEN: usize = MAX_REQUEST;
}

impl frame::Response for StatefulResponse {
    const FROM: Role = Role::Server;

    fn error(message: String) -> Self {
        StatefulResponse::Error {
            status: super::dir::Status::Io.code(),
            message,
        }
    }
}

impl frame::Response for StatelessResponse {
    const FROM: Role = Role::Server;

    fn error(message: String) -> Self {
        StatelessResponse::Error {
            status: super::dir::Status::Io.code(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrips_and_golden_bytes() {
        let r = StatelessRequest::ReadDir {
            path: b"a\xff".to_vec(),
            cookie: 1,
            max: 2,
        };
        let bytes = frame::encode(&r).unwrap();
        crate::fuzzing::seed_frame::<StatelessRequest>(&bytes);
        assert_eq!(bytes, [0, 0, 0, 6, 0, 2, b'a', 0xff, 1, 2]);
        assert_eq!(frame::decode::<StatelessRequest>(&bytes[4..]).unwrap(), r);
        for m in [
            StatefulResponse::Opened { handle: u64::MAX },
            StatefulResponse::Entries {
                names: vec![b"x\ny".to_vec()],
                eof: true,
            },
            StatefulResponse::Closed,
            StatefulResponse::Error {
                status: 9,
                message: "bad handle".into(),
            },
        ] {
            let bytes = frame::encode(&m).unwrap();
            crate::fuzzing::seed_frame::<StatefulResponse>(&bytes);
            assert_eq!(frame::decode::<StatefulResponse>(&bytes[4..]).unwrap(), m);
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::frame::assert_roundtrip;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn names() -> impl Strategy<Value = Vec<Vec<u8>>> {
        vec(vec(any::<u8>(), 0..300), 0..20)
    }

    proptest! {
        #[test]
        fn stateful_requests_roundtrip(m in prop_oneof![
            vec(any::<u8>(), 0..5000).prop_map(|path| StatefulRequest::Open { path }),
            (any::<u64>(), any::<u32>()).prop_map(|(handle, max)| StatefulRequest::Read { handle, max }),
            any::<u64>().prop_map(|handle| StatefulRequest::Close { handle }),
        ]) {
            assert_roundtrip(&m);
        }

        #[test]
        fn stateful_responses_roundtrip(m in prop_oneof![
            any::<u64>().prop_map(|handle| StatefulResponse::Opened { handle }),
            (names(), any::<bool>()).prop_map(|(names, eof)| StatefulResponse::Entries { names, eof }),
            Just(StatefulResponse::Closed),
            (any::<u32>(), any::<String>())
                .prop_map(|(status, message)| StatefulResponse::Error { status, message }),
        ]) {
            assert_roundtrip(&m);
        }

        #[test]
        fn stateless_requests_roundtrip(path in vec(any::<u8>(), 0..5000), cookie: u64, max: u32) {
            assert_roundtrip(&StatelessRequest::ReadDir { path, cookie, max });
        }

        #[test]
        fn stateless_responses_roundtrip(m in prop_oneof![
            (names(), any::<u64>(), any::<bool>())
                .prop_map(|(names, cookie, eof)| StatelessResponse::Batch { names, cookie, eof }),
            (any::<u32>(), any::<String>())
                .prop_map(|(status, message)| StatelessResponse::Error { status, message }),
        ]) {
            assert_roundtrip(&m);
        }
    }
}
