//! Magnet links and the info dictionary fetched from peers: BEP 9's
//! `ut_metadata` over BEP 10's extension protocol. The extended handshake
//! and the metadata messages are pure encode/decode pairs; [`fetch_info`]
//! asks the peers a tracker names, piece by piece, until the bytes hash to
//! the link's info hash.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bendy::decoding::{Decoder, Object};

use crate::error::{Detail, Error, Result, Role, Stage};
use crate::net::{self, Timeouts};
use crate::shutdown::Shutdown;

use super::announce::{self, Announce, url_decode};
use super::bencode::{self, Value, b, dict};
use super::metainfo::{Info, InfoHash, MAX_TORRENT_LEN};
use super::wire::{self, BLOCK, Handshake, Message, MsgReader};

/// Our extended-message id for `ut_metadata` (what peers send it to us as).
pub(crate) const UT_METADATA: u8 = 1;

/// A parsed `magnet:?xt=urn:btih:...` link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Magnet {
    pub hash: InfoHash,
    pub name: Option<String>,
    pub trackers: Vec<String>,
}

impl Magnet {
    pub(crate) fn parse(s: &str) -> Result<Magnet> {
        let q = s
            .strip_prefix("magnet:?")
            .ok_or_else(|| Error::setting(format!("{s:?} is not a magnet link")))?;
        let mut hash = None;
        let mut name = None;
        let mut trackers = Vec::new();
        for kv in q.split('&') {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let v = url_decode(v)
                .and_then(|v| String::from_utf8(v).ok())
                .ok_or_else(|| Error::setting(format!("magnet link: bad escape in {k}")))?;
            match k {
                "xt" => {
                    if let Some(h) = v.strip_prefix("urn:btih:") {
                        hash = Some(InfoHash::parse(h).ok_or_else(|| {
                            Error::setting(format!("magnet link: {h:?} is not an info hash"))
                        })?);
                    }
                }
                "dn" => name = Some(v),
                "tr" => trackers.push(v),
                _ => {}
            }
        }
        let hash = hash.ok_or_else(|| Error::setting("magnet link without xt=urn:btih:"))?;
        Ok(Magnet {
            hash,
            name,
            trackers,
        })
    }
}

/// What a peer's extended handshake says that we use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExtHandshake {
    /// Its id for `ut_metadata`, if it speaks it.
    pub ut_metadata: Option<u8>,
    pub metadata_size: Option<u32>,
}

/// Our extended handshake.
pub(crate) fn ext_handshake(metadata_size: Option<usize>) -> Vec<u8> {
    let mut pairs = vec![
        (
            "m",
            dict([("ut_metadata", Value::Integer(i64::from(UT_METADATA)))]),
        ),
        ("v", b("peerkit")),
    ];
    if let Some(n) = metadata_size {
        pairs.push(("metadata_size", Value::Integer(n as i64)));
    }
    bencode::encode(&dict(pairs))
}

/// Reads a peer's extended handshake (lenient: BEP 10 allows any keys).
pub(crate) fn parse_ext_handshake(payload: &[u8]) -> Result<ExtHandshake> {
    let v = first_value(payload)?.0;
    let d = bencode::as_dict(&v, "extended handshake")?;
    let ut_metadata = bencode::get(d, "m")
        .and_then(|m| bencode::as_dict(m, "m").ok())
        .and_then(|m| bencode::int(m, "ut_metadata").ok())
        .and_then(|i| u8::try_from(i).ok())
        .filter(|&i| i != 0);
    let metadata_size = bencode::int(d, "metadata_size")
        .ok()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n > 0 && n as usize <= MAX_TORRENT_LEN);
    Ok(ExtHandshake {
        ut_metadata,
        metadata_size,
    })
}

/// The first bencoded value of `payload` and the bytes after it. Peers'
/// dicts are not always canonical, so keys are read as they come.
fn first_value(payload: &[u8]) -> Result<(Value<'_>, &[u8])> {
    let mut d = Decoder::new(payload).with_max_depth(16);
    let raw = match d.next_object() {
        Ok(Some(Object::Dict(dd))) => dd.into_raw(),
        _ => return Err(Error::Decode("extended message: not a dictionary".into())),
    }
    .map_err(|e| Error::Decode(format!("extended message: {e}")))?;
    let v = bencode::decode(raw)?;
    Ok((v.into_owned(), &payload[raw.len()..]))
}

/// A `ut_metadata` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Metadata {
    Request(u32),
    Data {
        piece: u32,
        total: u32,
        data: Vec<u8>,
    },
    Reject(u32),
}

pub(crate) fn encode_metadata(m: &Metadata) -> Vec<u8> {
    let (t, piece) = match m {
        Metadata::Request(p) => (0, *p),
        Metadata::Data { piece, .. } => (1, *piece),
        Metadata::Reject(p) => (2, *p),
    };
    let mut pairs = vec![
        ("msg_type", Value::Integer(t)),
        ("piece", Value::Integer(i64::from(piece))),
    ];
    if let Metadata::Data { total, .. } = m {
        pairs.push(("total_size", Value::Integer(i64::from(*total))));
    }
    let mut out = bencode::encode(&dict(pairs));
    if let Metadata::Data { data, .. } = m {
        out.extend_from_slice(data);
    }
    out
}

pub(crate) fn decode_metadata(payload: &[u8]) -> Result<Metadata> {
    let (v, rest) = first_value(payload)?;
    let d = bencode::as_dict(&v, "ut_metadata")?;
    let piece = u32::try_from(bencode::int(d, "piece")?)
        .map_err(|_| Error::Decode("ut_metadata: bad piece".into()))?;
    Ok(match bencode::int(d, "msg_type")? {
        0 => Metadata::Request(piece),
        1 => {
            let total = u32::try_from(bencode::int(d, "total_size")?)
                .map_err(|_| Error::Decode("ut_metadata: bad total_size".into()))?;
            if rest.len() > BLOCK as usize {
                return Err(Error::Decode("ut_metadata: a piece over 16 KiB".into()));
            }
            Metadata::Data {
                piece,
                total,
                data: rest.to_vec(),
            }
        }
        2 => Metadata::Reject(piece),
        t => return Err(Error::Decode(format!("ut_metadata: message type {t}"))),
    })
}

/// Gets the info dictionary of `m.hash` from one peer.
fn from_peer(
    addr: SocketAddr,
    hash: InfoHash,
    peer_id: [u8; 20],
    timeouts: &Timeouts,
    deadline: Instant,
) -> Result<Info> {
    let mut s: TcpStream = net::connect_addr(addr, timeouts)?;
    s.write_all(&Handshake::new(hash, peer_id).encode())?;
    let theirs = Handshake::read(&mut s)?;
    if theirs.info_hash != hash {
        return Err(Error::Handshake("another torrent".into()));
    }
    if !theirs.supports_extensions() {
        return Err(Error::protocol(
            Stage::Opening,
            Detail::Missing("extension protocol to ask for the metadata with"),
        ));
    }
    wire::send(
        &mut s,
        &Message::Extended {
            id: 0,
            payload: ext_handshake(None),
        },
    )?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut reader = MsgReader::new();
    let mut their_id = None;
    let mut buf: Vec<u8> = Vec::new();
    let mut got: Vec<bool> = Vec::new();
    while Instant::now() < deadline {
        let Some(m) = reader.next(&mut s)? else {
            continue;
        };
        let Message::Extended { id, payload } = m else {
            continue;
        };
        if id == 0 {
            let h = parse_ext_handshake(&payload)?;
            let (Some(ut), Some(size)) = (h.ut_metadata, h.metadata_size) else {
                return Err(Error::protocol(
                    Stage::Opening,
                    Detail::Missing("metadata (ut_metadata) offered in the extension handshake"),
                ));
            };
            their_id = Some(ut);
            buf = vec![0; size as usize];
            let n = size.div_ceil(BLOCK);
            got = vec![false; n as usize];
            for p in 0..n {
                let payload = encode_metadata(&Metadata::Request(p));
                wire::send(&mut s, &Message::Extended { id: ut, payload })?;
            }
        } else if id == UT_METADATA && their_id.is_some() {
            match decode_metadata(&payload)? {
                Metadata::Data { piece, total, data } => {
                    let start = piece as usize * BLOCK as usize;
                    let want = (buf.len().saturating_sub(start)).min(BLOCK as usize);
                    if total as usize != buf.len() || data.len() != want || want == 0 {
                        return Err(Error::invalid(
                            Stage::Body,
                            "a metadata piece of the wrong size",
                        ));
                    }
                    // A piece past the end has want == 0 and was refused
                    // above: piece < got.len() and the range is in buf.
                    buf[start..start + want].copy_from_slice(&data);
                    got[piece as usize] = true;
                    if got.iter().all(|&g| g) {
                        if InfoHash::of(&buf) != hash {
                            return Err(Error::invalid(
                                Stage::Body,
                                "metadata does not hash to the info hash",
                            ));
                        }
                        return Info::parse(&buf);
                    }
                }
                Metadata::Reject(p) => {
                    return Err(Error::remote(
                        Role::Peer,
                        format!("refused metadata piece {p}"),
                    ));
                }
                Metadata::Request(_) => {}
            }
        }
    }
    Err(Error::TimedOut("fetching the metadata".into()))
}

/// Fetches the info dictionary for a magnet link: announces to its
/// trackers and asks each peer named until one delivers metadata that
/// hashes to the link's info hash.
pub(crate) fn fetch_info(
    m: &Magnet,
    peer_id: [u8; 20],
    port: u16,
    timeouts: &Timeouts,
    shutdown: &Shutdown,
    mut log: impl FnMut(String),
) -> Result<Info> {
    if m.trackers.is_empty() {
        return Err(Error::setting("the magnet link names no tracker (tr=)"));
    }
    loop {
        for url in &m.trackers {
            let a = Announce {
                info_hash: m.hash,
                peer_id,
                port,
                uploaded: 0,
                downloaded: 0,
                left: 1,
                event: None,
                numwant: 50,
            };
            let peers = match announce::announce(url, &a, timeouts) {
                Ok(r) => r.peers,
                Err(e) => {
                    log(format!("tracker {url}: {e}"));
                    continue;
                }
            };
            for p in peers {
                if p.port() == port && p.ip().is_loopback() {
                    continue;
                }
                let deadline = Instant::now() + Duration::from_secs(20);
                match from_peer(p, m.hash, peer_id, timeouts, deadline) {
                    Ok(info) => {
                        log(format!("metadata from {p}: {} bytes", info.raw.len()));
                        return Ok(info);
                    }
                    Err(e) => log(format!("metadata from {p}: {e}")),
                }
            }
        }
        if shutdown.wait(announce::RETRY) {
            return Err(Error::Stopped("the metadata fetch".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magnets_parse() {
        let h = InfoHash::of(b"x");
        let m = Magnet::parse(&format!(
            "magnet:?xt=urn:btih:{h}&dn=a%20b&tr=http%3A%2F%2F127.0.0.1%3A1%2Fannounce"
        ))
        .unwrap();
        assert_eq!(m.hash, h);
        assert_eq!(m.name.as_deref(), Some("a b"));
        assert_eq!(m.trackers, vec!["http://127.0.0.1:1/announce"]);
        for bad in ["magnet:?dn=x", "magnet:?xt=urn:btih:xyz", "http://x"] {
            assert!(
                matches!(
                    Magnet::parse(bad),
                    Err(Error::Local(crate::error::Local::Setting(_)))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn extension_messages_round_trip() {
        let h = parse_ext_handshake(&ext_handshake(Some(1234))).unwrap();
        assert_eq!(
            h,
            ExtHandshake {
                ut_metadata: Some(UT_METADATA),
                metadata_size: Some(1234)
            }
        );
        for m in [
            Metadata::Request(3),
            Metadata::Reject(1),
            Metadata::Data {
                piece: 0,
                total: 5,
                data: b"hello".to_vec(),
            },
        ] {
            assert_eq!(decode_metadata(&encode_metadata(&m)).unwrap(), m);
        }
        assert!(decode_metadata(b"d8:msg_typei9e5:piecei0ee").is_err());
        assert!(decode_metadata(b"garbage").is_err());
    }
}
