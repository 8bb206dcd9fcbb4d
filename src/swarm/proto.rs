//! The swarm's two wire protocols: peer <-> tracker and peer <-> peer. Both
//! are `[u32 length][postcard]` frames after the shared handshake; a piece's
//! bytes follow its `PeerResponse::Piece` header raw, with the length checked
//! against the manifest before anything is read.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::error::Role;
use crate::frame::{Protocol, Request, Response};
use crate::name::FileName;

use super::manifest::{Bitfield, Manifest, SwarmId};

/// Peer <-> tracker.
pub const TRACKER: Protocol = Protocol {
    name: "peerkit-bt-tracker",
    version: 1,
};

/// Peer <-> peer.
pub const PEER_WIRE: Protocol = Protocol {
    name: "peerkit-bt-peer",
    version: 3,
};

/// Largest peer-wire request frame; requests are a swarm id and an index.
pub const MAX_PEER_REQUEST: usize = 256;

/// Most peers one `Peers` answer lists (chosen at random when there are more).
pub const MAX_PEERS_LISTED: usize = 64;

/// How a swarm is looked up on the tracker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    /// By swarm id.
    Id(SwarmId),
    /// By the shared file's name.
    Name(FileName),
    /// By the first hex digits of a swarm id (as the tracker's log shows
    /// them, `3f9a0c1b2d4e...`), or by a file name that is also such a
    /// string: the tracker answers a manifest only if one swarm matches.
    Prefix(String),
}

/// Fewest hex digits taken as the start of a swarm id.
pub const MIN_ID_PREFIX: usize = 4;

impl Query {
    /// 64 hex digits are an id; from 4 to 63 (a trailing `...` or `…`
    /// allowed, as in the tracker's log lines) the start of one, or a file
    /// name of those characters; anything else must be a plain file name.
    pub fn parse(s: &str) -> Result<Query, crate::name::NameError> {
        if let Some(id) = SwarmId::from_hex(s) {
            return Ok(Query::Id(id));
        }
        let digits = s
            .strip_suffix("...")
            .or_else(|| s.strip_suffix('…'))
            .unwrap_or(s);
        if (MIN_ID_PREFIX..64).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_hexdigit())
        {
            let query = if digits.len() == s.len() {
                s.to_string()
            } else {
                digits.to_ascii_lowercase()
            };
            return Ok(Query::Prefix(query));
        }
        FileName::new(s).map(Query::Name)
    }

    /// Whether a swarm with this id and file name answers the query.
    pub fn matches(&self, id: &SwarmId, name: &FileName) -> bool {
        match self {
            Query::Id(want) => want == id,
            Query::Name(want) => want == name,
            Query::Prefix(p) => {
                name.as_str() == p
                    || (!p.is_empty() && id.to_string().starts_with(&p.to_ascii_lowercase()))
            }
        }
    }
}

/// A request from a peer to the tracker. `port` is always the sender's
/// listening port; the tracker pairs it with the IP it sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrackerRequest {
    /// Joins (or joins again, after a tracker restart) the manifest's swarm,
    /// holding `have`. The tracker keeps the manifest, never file data.
    Register {
        manifest: Manifest,
        port: u16,
        have: Bitfield,
    },
    /// The periodic liveness message.
    Ping { swarm: SwarmId, port: u16 },
    /// The periodic list of pieces held.
    Report {
        swarm: SwarmId,
        port: u16,
        have: Bitfield,
    },
    /// Asks for the other peers of a swarm and the pieces each holds.
    Peers { swarm: SwarmId, port: u16 },
    /// Asks for a swarm's manifest by name or id.
    Lookup(Query),
    /// Leaves a swarm (a peer shutting down).
    Leave { swarm: SwarmId, port: u16 },
    /// What a member holds and moved lately, for the tracker's view: sent
    /// about once a second while pieces move (and with each report). The
    /// tracker answers like `Report`.
    Stats {
        swarm: SwarmId,
        port: u16,
        have: Bitfield,
        stats: PeerStats,
    },
}

/// Most sources one `Stats` names (a peer downloads from at most 32 at once).
pub const MAX_STATS_SOURCES: usize = 64;

/// A member's traffic, as it measured it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStats {
    /// Piece bytes sent to other peers since it started.
    pub uploaded: u64,
    /// Verified piece bytes received since it started.
    pub downloaded: u64,
    /// Bytes per second sent lately.
    pub up_rate: u64,
    /// Bytes per second received lately.
    pub down_rate: u64,
    /// Its upload cap in bytes per second (`--upload-limit`), if any.
    pub upload_limit: Option<u64>,
    /// Bytes per second received lately from each peer it fetches from,
    /// at the address the tracker listed it under; at most
    /// `MAX_STATS_SOURCES`.
    pub from: Vec<(SocketAddr, u64)>,
}

/// One other member of a swarm, as the tracker last heard of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The IP the tracker saw and the peer's listening port.
    pub addr: SocketAddr,
    /// The pieces it last reported.
    pub have: Bitfield,
}

/// The tracker's answer to one `TrackerRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrackerResponse {
    /// `Register` worked; the swarm now has `peers` members.
    Registered { swarm: SwarmId, peers: u32 },
    /// `Ping`, `Report` or `Leave` worked.
    Ok,
    /// The tracker does not know this peer in this swarm (it restarted, or
    /// evicted the peer): register again.
    UnknownPeer,
    /// The answer to `Peers`: other members, at most `MAX_PEERS_LISTED`.
    Peers(Vec<PeerInfo>),
    /// The answer to `Lookup`.
    Manifest(Manifest),
    /// No swarm matches the lookup.
    NotFound,
    /// Several swarms share the looked-up name; ask by id.
    Ambiguous(Vec<SwarmId>),
    /// The request was malformed or made no sense.
    Error(String),
}

/// A request from one peer to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Which pieces of the swarm the serving peer holds now.
    Have { swarm: SwarmId },
    /// One piece: answered by `PeerResponse::Piece` and then exactly `len`
    /// raw bytes, or by `Missing`.
    Piece { swarm: SwarmId, index: u32 },
    /// As `Have`, but answered only once the serving peer holds a number
    /// of pieces other than `held`, or after a short wait (50 ms) if it
    /// does not: asked in a loop, it tells the asker of a new piece as
    /// soon as it is there.
    HaveChange { swarm: SwarmId, held: u32 },
}

/// A peer's answer to one `PeerRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerResponse {
    /// The pieces held, those it is fetching right now (requests in
    /// flight) and those it is sending right now. Downloaders count a piece
    /// in transit as almost held, so two of them rarely pull the same piece
    /// from a slow seed at once.
    Have {
        have: Bitfield,
        fetching: Bitfield,
        sending: Bitfield,
    },
    /// Header of a piece; `len` raw bytes follow.
    Piece { index: u32, len: u32 },
    /// The serving peer does not hold that piece (any more).
    Missing { index: u32 },
    /// The serving peer's upload is capped and it is already sending that
    /// piece to another peer: get it from that one, or ask again later.
    Busy { index: u32 },
    /// The serving peer is not in that swarm.
    UnknownSwarm,
    /// The request was malformed or made no sense.
    Error(String),
    /// The serving peer's upload is capped and already has as many pieces
    /// waiting to go out as it keeps queued: ask another holder, and this
    /// peer again after its next `Have` answer. A request queued behind
    /// many others would hold its piece for a second or more while other
    /// holders may have upload to spare.
    Full { index: u32 },
}

impl Request for TrackerRequest {}

impl Response for TrackerResponse {
    const FROM: Role = Role::Tracker;

    fn error(message: String) -> Self {
        TrackerResponse::Error(message)
    }

    fn error_message(&self) -> Option<&str> {
        match self {
            TrackerResponse::Error(m) => Some(m),
            _ => None,
        }
    }
}

impl Request for PeerRequest {
    const MAX_LEN: usize = MAX_PEER_REQUEST;
}

impl Response for PeerResponse {
    const FROM: Role = Role::Peer;

    fn error(message: String) -> Self {
        PeerResponse::Error(message)
    }

    fn error_message(&self) -> Option<&str> {
        match self {
            PeerResponse::Error(m) => Some(m),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::frame::{MAX_FRAME_LEN, decode, encode};

    fn manifest() -> Manifest {
        Manifest::new(
            FileName::new("a.bin").unwrap(),
            20_000,
            16384,
            Digest::of(b"a"),
            vec![Digest::of(b"0"), Digest::of(b"1")],
        )
        .unwrap()
    }

    mod props {
        use super::*;
        use crate::frame::assert_roundtrip;
        use crate::name::arb_name;
        use crate::swarm::manifest::{arb_bitfield, arb_manifest};
        use proptest::prelude::*;

        fn swarm() -> impl Strategy<Value = SwarmId> {
            any::<[u8; 32]>().prop_map(|b| SwarmId(Digest(b)))
        }

        fn addr() -> impl Strategy<Value = std::net::SocketAddr> {
            // serde carries an address's IP and port only: an IPv6 flow
            // label or scope id does not cross the wire.
            any::<std::net::SocketAddr>().prop_map(|a| std::net::SocketAddr::new(a.ip(), a.port()))
        }

        fn stats() -> impl Strategy<Value = PeerStats> {
            (
                any::<[u64; 4]>(),
                any::<Option<u64>>(),
                proptest::collection::vec((addr(), any::<u64>()), 0..MAX_STATS_SOURCES),
            )
                .prop_map(
                    |([uploaded, downloaded, up_rate, down_rate], upload_limit, from)| PeerStats {
                        uploaded,
                        downloaded,
                        up_rate,
                        down_rate,
                        upload_limit,
                        from,
                    },
                )
        }

        fn query() -> impl Strategy<Value = Query> {
            prop_oneof![
                swarm().prop_map(Query::Id),
                arb_name().prop_map(Query::Name)
            ]
        }

        fn tracker_request() -> impl Strategy<Value = TrackerRequest> {
            prop_oneof![
                (arb_manifest(), any::<u16>(), arb_bitfield()).prop_map(
                    |(manifest, port, have)| {
                        TrackerRequest::Register {
                            manifest,
                            port,
                            have,
                        }
                    }
                ),
                (swarm(), any::<u16>())
                    .prop_map(|(swarm, port)| TrackerRequest::Ping { swarm, port }),
                (swarm(), any::<u16>(), arb_bitfield())
                    .prop_map(|(swarm, port, have)| TrackerRequest::Report { swarm, port, have }),
                (swarm(), any::<u16>())
                    .prop_map(|(swarm, port)| TrackerRequest::Peers { swarm, port }),
                query().prop_map(TrackerRequest::Lookup),
                (swarm(), any::<u16>(), arb_bitfield(), stats()).prop_map(
                    |(swarm, port, have, stats)| TrackerRequest::Stats {
                        swarm,
                        port,
                        have,
                        stats
                    }
                ),
                (swarm(), any::<u16>())
                    .prop_map(|(swarm, port)| TrackerRequest::Leave { swarm, port }),
            ]
        }

        fn tracker_response() -> impl Strategy<Value = TrackerResponse> {
            // serde carries an address's IP and port only: an IPv6 flow
            // label or scope id does not cross the wire.
            let addr = any::<std::net::SocketAddr>()
                .prop_map(|a| std::net::SocketAddr::new(a.ip(), a.port()));
            let peer = (addr, arb_bitfield()).prop_map(|(addr, have)| PeerInfo { addr, have });
            prop_oneof![
                (swarm(), any::<u32>())
                    .prop_map(|(swarm, peers)| TrackerResponse::Registered { swarm, peers }),
                Just(TrackerResponse::Ok),
                Just(TrackerResponse::UnknownPeer),
                proptest::collection::vec(peer, 0..8).prop_map(TrackerResponse::Peers),
                arb_manifest().prop_map(TrackerResponse::Manifest),
                Just(TrackerResponse::NotFound),
                proptest::collection::vec(swarm(), 0..8).prop_map(TrackerResponse::Ambiguous),
                any::<String>().prop_map(TrackerResponse::Error),
            ]
        }

        fn peer_request() -> impl Strategy<Value = PeerRequest> {
            prop_oneof![
                swarm().prop_map(|swarm| PeerRequest::Have { swarm }),
                (swarm(), any::<u32>())
                    .prop_map(|(swarm, held)| PeerRequest::HaveChange { swarm, held }),
                (swarm(), any::<u32>())
                    .prop_map(|(swarm, index)| PeerRequest::Piece { swarm, index }),
            ]
        }

        fn peer_response() -> impl Strategy<Value = PeerResponse> {
            prop_oneof![
                (arb_bitfield(), arb_bitfield(), arb_bitfield()).prop_map(
                    |(have, fetching, sending)| PeerResponse::Have {
                        have,
                        fetching,
                        sending
                    }
                ),
                (any::<u32>(), any::<u32>())
                    .prop_map(|(index, len)| PeerResponse::Piece { index, len }),
                any::<u32>().prop_map(|index| PeerResponse::Missing { index }),
                any::<u32>().prop_map(|index| PeerResponse::Busy { index }),
                Just(PeerResponse::UnknownSwarm),
                any::<String>().prop_map(PeerResponse::Error),
                any::<u32>().prop_map(|index| PeerResponse::Full { index }),
            ]
        }

        proptest! {
            #[test]
            fn tracker_requests_roundtrip(m in tracker_request()) {
                assert_roundtrip(&m);
            }

            #[test]
            fn tracker_responses_roundtrip(m in tracker_response()) {
                assert_roundtrip(&m);
            }

            #[test]
            fn peer_requests_roundtrip(m in peer_request()) {
                assert_roundtrip(&m);
                prop_assert!(encode(&m).unwrap().len() - 4 <= MAX_PEER_REQUEST);
            }

            #[test]
            fn peer_responses_roundtrip(m in peer_response()) {
                assert_roundtrip(&m);
            }
        }
    }

    #[test]
    fn peer_requests_fit_their_small_frame() {
        let r = PeerRequest::Piece {
            swarm: manifest().id(),
            index: u32::MAX,
        };
        assert!(encode(&r).unwrap().len() - 4 <= MAX_PEER_REQUEST);
    }

    #[test]
    fn largest_manifest_and_peer_list_fit_a_frame() {
        use super::super::manifest::{MAX_PIECE_SIZE, MAX_PIECES};
        let n = MAX_PIECES as usize;
        let m = Manifest::new(
            FileName::new("x".repeat(255)).unwrap(),
            n as u64 * u64::from(MAX_PIECE_SIZE),
            MAX_PIECE_SIZE,
            Digest::of(b""),
            vec![Digest::of(b""); n],
        )
        .unwrap();
        let reg = TrackerRequest::Register {
            manifest: m,
            port: u16::MAX,
            have: Bitfield::full(MAX_PIECES),
        };
        assert!(encode(&reg).unwrap().len() <= MAX_FRAME_LEN);
        let peers: Vec<PeerInfo> = (0..MAX_PEERS_LISTED)
            .map(|i| PeerInfo {
                addr: format!("[::1]:{}", 1000 + i).parse().unwrap(),
                have: Bitfield::full(MAX_PIECES),
            })
            .collect();
        assert!(encode(&TrackerResponse::Peers(peers)).is_ok());
    }

    #[test]
    fn query_parses_ids_and_names() {
        let id = manifest().id();
        assert_eq!(Query::parse(&id.to_string()).unwrap(), Query::Id(id));
        assert_eq!(
            Query::parse("a.bin").unwrap(),
            Query::Name(FileName::new("a.bin").unwrap())
        );
        assert!(Query::parse("../a").is_err());
    }

    #[test]
    fn unknown_variants_do_not_decode() {
        assert!(decode::<TrackerRequest>(&[200]).is_err());
        assert!(decode::<PeerRequest>(&[9]).is_err());
    }
}
