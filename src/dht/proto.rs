//! The DHT's two wire protocols: supernode <-> index (`IndexRequest` /
//! `IndexResponse`) and client or supernode <-> supernode (`SuperRequest` /
//! `SuperResponse`), plus the helpers that turn an undecodable request into a
//! clear error reply.
//!
//! Requests are generic over the type of the file names they carry so that
//! one definition serves twice: `IndexRequest` / `SuperRequest` hold a
//! validated `FileName`, and when such a request fails to decode, the server
//! decodes the same payload again with plain `String` names to say exactly
//! which name was refused and why (postcard drops the reason).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::digest::FileDigest;
use crate::error::{Error, Role};
use crate::frame::{self, Protocol, Request, Response};
use crate::name::FileName;

/// The control protocol spoken on a supernode's connection to the index.
/// Version 2: `Join` carries the supernode's heartbeat period, from which
/// the index sets how long it waits before dropping a silent member.
pub const INDEX_PROTOCOL: Protocol = Protocol {
    name: "peerkit-dht-index",
    version: 2,
};

/// The protocol spoken by clients (and by synchronizers) to a supernode.
/// Version 2: file bodies are checked with BLAKE3, and a download's digest
/// follows its body (`Sent`), so the first byte leaves before the file is
/// hashed.
pub const SUPER_PROTOCOL: Protocol = Protocol {
    name: "peerkit-dht-super",
    version: 2,
};

/// How often a supernode says something on an otherwise idle control
/// connection, unless `--heartbeat` says otherwise.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// The longest heartbeat period a supernode may choose.
pub const MAX_HEARTBEAT: Duration = Duration::from_secs(10);

/// The shortest heartbeat period the index takes from a member; a shorter
/// one counts as this.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(100);

/// How many heartbeats in a row a member may miss before the index drops
/// it from the ring.
pub const MISSED_HEARTBEATS: u32 = 3;

/// Silence after which the index drops a member that declared `heartbeat`:
/// [`MISSED_HEARTBEATS`] periods plus a second (16 s at the defaults),
/// whatever the index's `--idle-timeout`.
pub fn silence_limit(heartbeat: Duration) -> Duration {
    heartbeat.clamp(MIN_HEARTBEAT, MAX_HEARTBEAT) * MISSED_HEARTBEATS + Duration::from_secs(1)
}

/// A request on a supernode's control connection to the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IndexRequestOf<N> {
    /// Add the sender to the ring; it listens on `port` at the host the
    /// index sees the connection coming from, and says something on this
    /// connection at least every `heartbeat_ms` milliseconds (the index
    /// drops it after [`silence_limit`] of silence). Answered by `Joined`.
    Join { port: u16, heartbeat_ms: u32 },
    /// Take the sender out of the ring but keep the connection open for
    /// queries (a leaving supernode's last sync). Answered by `Left`.
    Leave,
    /// Leave the ring if still in it and close the connection. Answered by `Bye`.
    Disconnect,
    /// Which supernode is responsible for `name`? Answered by `Owner` or `NoSupernodes`.
    Query { name: N },
    /// Keep-alive on an otherwise idle control connection. Answered by `Pong`.
    Ping,
}

/// A request to the index with validated names.
pub type IndexRequest = IndexRequestOf<FileName>;

/// The index's answer to one `IndexRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IndexResponse {
    /// The sender is in the ring as `addr` (`HOST:PORT`, as others reach it).
    Joined { addr: String },
    /// The sender is out of the ring; queries still work on this connection.
    Left,
    /// The index is closing this connection.
    Bye,
    /// `addr` (`HOST:PORT`) is responsible for the queried name. A member
    /// on the index's own host that joined over loopback is given as the
    /// address the asker reached the index at.
    Owner { addr: String },
    /// The ring is empty: nobody is responsible for anything.
    NoSupernodes,
    /// Answer to `Ping`.
    Pong,
    /// The request was malformed or not allowed; `message` says why.
    Error { message: String },
}

/// A request to a supernode, from a client or from another supernode's
/// synchronizer. Several requests may follow each other on one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SuperRequestOf<N> {
    /// The names in the supernode's repository. Answered by `Names` frames
    /// (at most `LIST_BATCH` names each) and a final `EndOfList`.
    List,
    /// Store a new file. The supernode answers `Ready` or `AlreadyExists`
    /// before any body byte moves; after `Ready` exactly `size` bytes
    /// follow, and the supernode answers `Stored` once their BLAKE3 digest
    /// is `digest`.
    Upload {
        name: N,
        size: u64,
        digest: FileDigest,
    },
    /// Fetch a file. Answered by `File`, then `size` raw bytes, then `Sent`
    /// with the whole file's BLAKE3 digest (or `Error` if the file changed
    /// while it was sent); or by `Redirect` to the supernode responsible
    /// for it; or by `NotFound`.
    Download { name: N },
    /// Resume a fetch: answered as `Download`, except that after `File`
    /// (whose `size` is still the whole file's) only the bytes from
    /// `offset` to the end follow; `Sent` still carries the whole file's
    /// digest. An `offset` past the end is an `Error`.
    DownloadFrom { name: N, offset: u64 },
    /// The sender is the supernode listening at `addr` (`HOST:PORT`), sent
    /// first by a synchronizer so the receiver's log names it by the address
    /// people know it by, not the connection's ephemeral port. No answer.
    Member { addr: String },
}

/// A supernode request with validated names.
pub type SuperRequest = SuperRequestOf<FileName>;

/// A supernode's answer to one `SuperRequest` (or one part of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SuperResponse {
    /// Part of a listing.
    Names { names: Vec<FileName> },
    /// The listing is complete.
    EndOfList,
    /// Send the upload's body now.
    Ready,
    /// A file of that name is already here (or arriving); nothing was changed.
    AlreadyExists,
    /// The upload's body arrived, matched its digest and is stored.
    Stored,
    /// The requested file is `size` bytes long; its bytes follow (from the
    /// requested offset), then `Sent`.
    File { size: u64 },
    /// After a download's body: the BLAKE3 digest of the whole file.
    Sent { digest: FileDigest },
    /// Not here; `addr` (`HOST:PORT`) is the supernode responsible for it.
    Redirect { addr: String },
    /// Not here, and this supernode is the one responsible for it (or no
    /// supernode is known to be).
    NotFound,
    /// The request was malformed or failed; `message` says why.
    Error { message: String },
}

/// Most names in one `Names` frame: 255-byte names keep a frame well under
/// `MAX_FRAME_LEN`.
pub const LIST_BATCH: usize = 1024;

/// Names carried by a request, whatever their type.
trait Names {
    /// Every name in the request.
    fn names(&self) -> Vec<&str>;
}

impl Names for IndexRequestOf<String> {
    fn names(&self) -> Vec<&str> {
        match self {
            IndexRequestOf::Query { name } => vec![name.as_str()],
            _ => Vec::new(),
        }
    }
}

impl Names for SuperRequestOf<String> {
    fn names(&self) -> Vec<&str> {
        match self {
            SuperRequestOf::Upload { name, .. }
            | SuperRequestOf::Download { name }
            | SuperRequestOf::DownloadFrom { name, .. } => {
                vec![name.as_str()]
            }
            SuperRequestOf::List | SuperRequestOf::Member { .. } => Vec::new(),
        }
    }
}

/// Why a request frame's payload does not decode as a `Valid` request, in
/// words fit for an error reply. `Lenient` is the same request type with
/// `String` names: if the payload decodes as that, a name must be invalid,
/// and the name's own error says how.
fn explain_invalid<Lenient>(payload: &[u8], err: &Error) -> String
where
    Lenient: DeserializeOwned + Names,
{
    if let Ok(req) = frame::decode::<Lenient>(payload) {
        for name in req.names() {
            if let Err(why) = FileName::new(name) {
                return format!("refused name {name:?}: {why}");
            }
        }
    }
    format!("invalid request: {err}")
}

impl Request for IndexRequest {
    fn explain(payload: &[u8], err: &Error) -> String {
        explain_invalid::<IndexRequestOf<String>>(payload, err)
    }
}

impl Request for SuperRequest {
    fn explain(payload: &[u8], err: &Error) -> String {
        explain_invalid::<SuperRequestOf<String>>(payload, err)
    }
}

impl Response for IndexResponse {
    const FROM: Role = Role::Index;

    fn error(message: String) -> Self {
        IndexResponse::Error { message }
    }

    fn error_message(&self) -> Option<&str> {
        match self {
            IndexResponse::Error { message: m } => Some(m),
            _ => None,
        }
    }
}

impl Response for SuperResponse {
    const FROM: Role = Role::Supernode;

    fn error(message: String) -> Self {
        SuperResponse::Error { message }
    }

    fn error_message(&self) -> Option<&str> {
        match self {
            SuperResponse::Error { message: m } => Some(m),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> FileName {
        FileName::new(s).unwrap()
    }

    mod props {
        use super::*;
        use crate::frame::assert_roundtrip;
        use crate::name::arb_name;
        use proptest::prelude::*;

        fn digest() -> impl Strategy<Value = FileDigest> {
            any::<[u8; 32]>().prop_map(FileDigest)
        }

        fn index_request() -> impl Strategy<Value = IndexRequest> {
            prop_oneof![
                (any::<u16>(), any::<u32>())
                    .prop_map(|(port, heartbeat_ms)| IndexRequest::Join { port, heartbeat_ms }),
                Just(IndexRequest::Leave),
                Just(IndexRequest::Disconnect),
                arb_name().prop_map(|name| IndexRequest::Query { name }),
                Just(IndexRequest::Ping),
            ]
        }

        fn index_response() -> impl Strategy<Value = IndexResponse> {
            prop_oneof![
                any::<String>().prop_map(|addr| IndexResponse::Joined { addr }),
                Just(IndexResponse::Left),
                Just(IndexResponse::Bye),
                any::<String>().prop_map(|addr| IndexResponse::Owner { addr }),
                Just(IndexResponse::NoSupernodes),
                Just(IndexResponse::Pong),
                any::<String>().prop_map(|message| IndexResponse::Error { message }),
            ]
        }

        fn super_request() -> impl Strategy<Value = SuperRequest> {
            prop_oneof![
                Just(SuperRequest::List),
                (arb_name(), any::<u64>(), digest())
                    .prop_map(|(name, size, digest)| SuperRequest::Upload { name, size, digest }),
                arb_name().prop_map(|name| SuperRequest::Download { name }),
                (arb_name(), any::<u64>())
                    .prop_map(|(name, offset)| SuperRequest::DownloadFrom { name, offset }),
                any::<String>().prop_map(|addr| SuperRequest::Member { addr }),
            ]
        }

        fn super_response() -> impl Strategy<Value = SuperResponse> {
            prop_oneof![
                proptest::collection::vec(arb_name(), 0..20)
                    .prop_map(|names| SuperResponse::Names { names }),
                Just(SuperResponse::EndOfList),
                Just(SuperResponse::Ready),
                Just(SuperResponse::AlreadyExists),
                Just(SuperResponse::Stored),
                any::<u64>().prop_map(|size| SuperResponse::File { size }),
                digest().prop_map(|digest| SuperResponse::Sent { digest }),
                any::<String>().prop_map(|addr| SuperResponse::Redirect { addr }),
                Just(SuperResponse::NotFound),
                any::<String>().prop_map(|message| SuperResponse::Error { message }),
            ]
        }

        proptest! {
            #[test]
            fn index_requests_roundtrip(m in index_request()) {
                assert_roundtrip(&m);
                // The lenient form reads every valid request the same.
                let bytes = frame::encode(&m).unwrap();
                let lenient: IndexRequestOf<String> = frame::decode(&bytes[4..]).unwrap();
                prop_assert_eq!(lenient.names().len(), usize::from(matches!(m, IndexRequest::Query { .. })));
            }

            #[test]
            fn index_responses_roundtrip(m in index_response()) {
                assert_roundtrip(&m);
            }

            #[test]
            fn super_requests_roundtrip(m in super_request()) {
                assert_roundtrip(&m);
                let bytes = frame::encode(&m).unwrap();
                let lenient: SuperRequestOf<String> = frame::decode(&bytes[4..]).unwrap();
                prop_assert_eq!(lenient.names().len(), usize::from(!matches!(m, SuperRequest::List | SuperRequest::Member { .. })));
            }

            #[test]
            fn super_responses_roundtrip(m in super_response()) {
                assert_roundtrip(&m);
            }
        }
    }

    #[test]
    fn golden_bytes() {
        // Variant 3 (Query), then the name as a varint length and bytes.
        assert_eq!(
            frame::encode(&IndexRequest::Query { name: name("ab") }).unwrap(),
            [0, 0, 0, 4, 3, 2, b'a', b'b']
        );
        // Variant 0 (Join), port 4000 and the heartbeat 5000 ms as varints.
        assert_eq!(
            frame::encode(&IndexRequest::Join {
                port: 4000,
                heartbeat_ms: 5000
            })
            .unwrap(),
            [0, 0, 0, 5, 0, 0xa0, 0x1f, 0x88, 0x27]
        );
        // Variant 5 (File), the size as a varint; variant 6 (Sent), then the
        // digest's 32 bytes as they are.
        assert_eq!(
            frame::encode(&SuperResponse::File { size: 300 }).unwrap(),
            [0, 0, 0, 3, 5, 0xac, 0x02]
        );
        let sent = frame::encode(&SuperResponse::Sent {
            digest: FileDigest([0xab; 32]),
        })
        .unwrap();
        assert_eq!(sent[..5], [0, 0, 0, 33, 6]);
        assert_eq!(sent[5..], [0xab; 32]);
    }

    #[test]
    fn hostile_names_do_not_decode_and_are_explained() {
        for bad in ["../x", "/etc/passwd", "a/b", "", "a\0b", &"x".repeat(300)] {
            let lenient = SuperRequestOf::Download {
                name: bad.to_string(),
            };
            let bytes = frame::encode(&lenient).unwrap();
            let payload = &bytes[4..];
            let err = frame::decode::<SuperRequest>(payload).unwrap_err();
            let why = explain_invalid::<SuperRequestOf<String>>(payload, &err);
            assert!(why.starts_with("refused name"), "{bad:?}: {why}");
            assert!(why.contains("invalid file name"), "{bad:?}: {why}");

            let lenient = IndexRequestOf::Query {
                name: bad.to_string(),
            };
            let bytes = frame::encode(&lenient).unwrap();
            let payload = &bytes[4..];
            let err = frame::decode::<IndexRequest>(payload).unwrap_err();
            let why = explain_invalid::<IndexRequestOf<String>>(payload, &err);
            assert!(why.contains("invalid file name"), "{bad:?}: {why}");
        }
    }

    #[test]
    fn a_refused_name_is_named_in_the_explanation() {
        let payload = postcard::to_stdvec(&SuperRequestOf::Download {
            name: "a/b".to_string(),
        })
        .unwrap();
        let err = frame::decode::<SuperRequest>(&payload).unwrap_err();
        let why = SuperRequest::explain(&payload, &err);
        assert!(
            why.contains("\"a/b\"") && why.contains("path separator"),
            "{why}"
        );
        let err = frame::decode::<IndexRequest>(&[42]).unwrap_err();
        assert!(IndexRequest::explain(&[42], &err).starts_with("invalid request"));
    }

    #[test]
    fn unknown_variants_and_garbage_are_explained() {
        for payload in [&[9u8][..], &[200, 1, 2], &[]] {
            let err = frame::decode::<SuperRequest>(payload).unwrap_err();
            let why = explain_invalid::<SuperRequestOf<String>>(payload, &err);
            assert!(why.starts_with("invalid request: "), "{why}");
        }
    }
}
