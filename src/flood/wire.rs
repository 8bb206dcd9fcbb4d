//! The course's binary flooding protocol, byte for byte: the six messages as
//! one validated enum, their encoding, and a blocking reader that consumes
//! exactly the bytes of one message.
//!
//! Integers are big-endian and unsigned; strings are at most
//! [`MAX_TEXT`] bytes with a `u16` size in front and no terminator; an IP is
//! 4 bytes (IPv4).
//!
//! | message   | layout |
//! |-----------|--------|
//! | ID        | type=4 (u16), port (u16) |
//! | KEYREQ    | type=5 (u16), seq (u32), size (u16), key |
//! | TOPOREQ   | type=6 (u16), seq (u32) |
//! | KEYFLOOD  | type=7 (u16), ttl (u16), seq (u32), ip (4), port (u16), size (u16), info |
//! | TOPOFLOOD | type=8, same layout as KEYFLOOD |
//! | RESP      | type=9 (u16), seq (u32), size (u16), value |

use std::fmt;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::error::{Error, Result};

/// The longest string (key, value, topology info) a message may carry.
pub(crate) const MAX_TEXT: usize = 400;

/// Message type numbers.
pub(crate) mod kind {
    pub(crate) const ID: u16 = 4;
    pub(crate) const KEYREQ: u16 = 5;
    pub(crate) const TOPOREQ: u16 = 6;
    pub(crate) const KEYFLOOD: u16 = 7;
    pub(crate) const TOPOFLOOD: u16 = 8;
    pub(crate) const RESP: u16 = 9;
}

/// A protocol string: at most [`MAX_TEXT`] bytes.
///
/// Strings we build ourselves ([`Text::new`]) must be printable ASCII, as the
/// protocol says; strings read off the wire are kept byte for byte (other
/// implementations may be less careful) and shown lossily.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Text(Vec<u8>);

/// Why a string cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextError {
    /// Longer than [`MAX_TEXT`] bytes.
    TooLong(usize),
    /// Contains a byte that is not ASCII, or a control character.
    NotAscii,
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextError::TooLong(n) => write!(f, "{n} bytes is over the {MAX_TEXT}-byte limit"),
            TextError::NotAscii => f.write_str("not printable ASCII"),
        }
    }
}

impl std::error::Error for TextError {}

impl Text {
    /// A string of our own: printable ASCII (tabs allowed), at most 400 bytes.
    pub fn new(s: &str) -> std::result::Result<Text, TextError> {
        if s.len() > MAX_TEXT {
            return Err(TextError::TooLong(s.len()));
        }
        if !s.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
            return Err(TextError::NotAscii);
        }
        Ok(Text(s.as_bytes().to_vec()))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `self + " " + tail`, if the result still fits in a message.
    pub fn append_word(&self, tail: &str) -> Option<Text> {
        let len = self.0.len() + 1 + tail.len();
        if len > MAX_TEXT {
            return None;
        }
        let mut v = Vec::with_capacity(len);
        v.extend_from_slice(&self.0);
        v.push(b' ');
        v.extend_from_slice(tail.as_bytes());
        Some(Text(v))
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

/// The body shared by KEYFLOOD and TOPOFLOOD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flood {
    /// Hops left; a servent decrements it before forwarding.
    pub ttl: u16,
    /// The client's sequence number.
    pub seq: u32,
    /// Where the client listens for answers.
    pub origin: SocketAddrV4,
    /// The key (KEYFLOOD) or the path of servents so far (TOPOFLOOD).
    pub info: Text,
}

/// One message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// First message on a link: port 0 from a servent, the client's
    /// listening port from a client.
    Id { port: u16 },
    /// A client asks its servent for `key`.
    KeyReq { seq: u32, key: Text },
    /// A client asks its servent for the topology.
    TopoReq { seq: u32 },
    /// A key query flooding between servents.
    KeyFlood(Flood),
    /// A topology query flooding between servents.
    TopoFlood(Flood),
    /// An answer to the client: a value, or a topology path.
    Resp { seq: u32, value: Text },
}

impl Message {
    /// The message's type number.
    pub fn kind(&self) -> u16 {
        match self {
            Message::Id { .. } => kind::ID,
            Message::KeyReq { .. } => kind::KEYREQ,
            Message::TopoReq { .. } => kind::TOPOREQ,
            Message::KeyFlood(_) => kind::KEYFLOOD,
            Message::TopoFlood(_) => kind::TOPOFLOOD,
            Message::Resp { .. } => kind::RESP,
        }
    }

    /// The protocol's name for the message type.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Id { .. } => "ID",
            Message::KeyReq { .. } => "KEYREQ",
            Message::TopoReq { .. } => "TOPOREQ",
            Message::KeyFlood(_) => "KEYFLOOD",
            Message::TopoFlood(_) => "TOPOFLOOD",
            Message::Resp { .. } => "RESP",
        }
    }

    /// The encoded bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.text_len());
        self.encode_into(&mut out);
        out
    }

    fn text_len(&self) -> usize {
        match self {
            Message::Id { .. } | Message::TopoReq { .. } => 0,
            Message::KeyReq { key: t, .. } | Message::Resp { value: t, .. } => t.len(),
            Message::KeyFlood(f) | Message::TopoFlood(f) => f.info.len(),
        }
    }

    /// Appends the encoded bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.kind().to_be_bytes());
        match self {
            Message::Id { port } => out.extend_from_slice(&port.to_be_bytes()),
            Message::KeyReq { seq, key } => {
                out.extend_from_slice(&seq.to_be_bytes());
                put_text(out, key);
            }
            Message::TopoReq { seq } => out.extend_from_slice(&seq.to_be_bytes()),
            Message::KeyFlood(f) | Message::TopoFlood(f) => {
                out.extend_from_slice(&f.ttl.to_be_bytes());
                out.extend_from_slice(&f.seq.to_be_bytes());
                out.extend_from_slice(&f.origin.ip().octets());
                out.extend_from_slice(&f.origin.port().to_be_bytes());
                put_text(out, &f.info);
            }
            Message::Resp { seq, value } => {
                out.extend_from_slice(&seq.to_be_bytes());
                put_text(out, value);
            }
        }
    }
}

fn put_text(out: &mut Vec<u8>, t: &Text) {
    // A Text never exceeds MAX_TEXT (400), so its length fits in a u16.
    out.extend_from_slice(&(t.len() as u16).to_be_bytes());
    out.extend_from_slice(t.as_bytes());
}

/// Reads exactly one message from `r`.
///
/// `Ok(None)` is a clean end of stream before the first byte. A stream that
/// ends inside a message is [`Error::Truncated`]; an unknown type is
/// [`Error::Decode`]; a string size over [`MAX_TEXT`] is
/// [`Error::FrameTooLarge`], reported before anything is allocated. No byte
/// past the end of the message is consumed.
pub fn read_message<R: Read + ?Sized>(r: &mut R) -> Result<Option<Message>> {
    let mut first = [0u8; 1];
    loop {
        match r.read(&mut first) {
            Ok(0) => return Ok(None),
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let mut second = [0u8; 1];
    r.read_exact(&mut second)?;
    let kind = u16::from_be_bytes([first[0], second[0]]);
    let msg = match kind {
        kind::ID => Message::Id { port: get_u16(r)? },
        kind::KEYREQ => {
            let seq = get_u32(r)?;
            Message::KeyReq {
                seq,
                key: get_text(r)?,
            }
        }
        kind::TOPOREQ => Message::TopoReq { seq: get_u32(r)? },
        kind::KEYFLOOD => Message::KeyFlood(get_flood(r)?),
        kind::TOPOFLOOD => Message::TopoFlood(get_flood(r)?),
        kind::RESP => {
            let seq = get_u32(r)?;
            Message::Resp {
                seq,
                value: get_text(r)?,
            }
        }
        other => return Err(Error::Decode(format!("unknown message type {other}"))),
    };
    Ok(Some(msg))
}

fn get_u16<R: Read + ?Sized>(r: &mut R) -> Result<u16> {
    let mut b = [0u8; 2];
    r.read_exact(&mut b)?;
    Ok(u16::from_be_bytes(b))
}

fn get_u32<R: Read + ?Sized>(r: &mut R) -> Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn get_text<R: Read + ?Sized>(r: &mut R) -> Result<Text> {
    let size = usize::from(get_u16(r)?);
    if size > MAX_TEXT {
        return Err(Error::FrameTooLarge {
            len: size as u64,
            max: MAX_TEXT as u64,
        });
    }
    let mut buf = vec![0u8; size];
    r.read_exact(&mut buf)?;
    Ok(Text(buf))
}

fn get_flood<R: Read + ?Sized>(r: &mut R) -> Result<Flood> {
    let ttl = get_u16(r)?;
    let seq = get_u32(r)?;
    let mut ip = [0u8; 4];
    r.read_exact(&mut ip)?;
    let port = get_u16(r)?;
    let info = get_text(r)?;
    Ok(Flood {
        ttl,
        seq,
        origin: SocketAddrV4::new(Ipv4Addr::from(ip), port),
        info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Text {
        Text::new(s).unwrap()
    }

    fn flood(ttl: u16, seq: u32, ip: [u8; 4], port: u16, info: &str) -> Flood {
        Flood {
            ttl,
            seq,
            origin: SocketAddrV4::new(Ipv4Addr::from(ip), port),
            info: t(info),
        }
    }

    /// Every message with its bytes written out by hand.
    fn golden() -> Vec<(Message, Vec<u8>)> {
        vec![
            (Message::Id { port: 0 }, vec![0, 4, 0, 0]),
            // A port above 32767 must not turn negative anywhere.
            (Message::Id { port: 51234 }, vec![0, 4, 0xc8, 0x22]),
            (
                Message::KeyReq {
                    seq: 7,
                    key: t("ssh"),
                },
                vec![0, 5, 0, 0, 0, 7, 0, 3, b's', b's', b'h'],
            ),
            (
                Message::KeyReq {
                    seq: 0xdead_beef,
                    key: t(""),
                },
                vec![0, 5, 0xde, 0xad, 0xbe, 0xef, 0, 0],
            ),
            (
                Message::TopoReq { seq: 0x0102_0304 },
                vec![0, 6, 1, 2, 3, 4],
            ),
            (
                Message::KeyFlood(flood(3, 258, [127, 0, 0, 1], 40000, "http")),
                vec![
                    0, 7, 0, 3, 0, 0, 1, 2, 127, 0, 0, 1, 0x9c, 0x40, 0, 4, b'h', b't', b't', b'p',
                ],
            ),
            (
                Message::TopoFlood(flood(
                    1,
                    9,
                    [10, 0, 0, 200],
                    65535,
                    "10.0.0.1:5001 10.0.0.2:5002",
                )),
                {
                    let mut v = vec![0, 8, 0, 1, 0, 0, 0, 9, 10, 0, 0, 200, 0xff, 0xff, 0, 27];
                    v.extend_from_slice(b"10.0.0.1:5001 10.0.0.2:5002");
                    v
                },
            ),
            (
                Message::Resp {
                    seq: 65536,
                    value: t("22/tcp # SSH"),
                },
                {
                    let mut v = vec![0, 9, 0, 1, 0, 0, 0, 12];
                    v.extend_from_slice(b"22/tcp # SSH");
                    v
                },
            ),
        ]
    }

    #[test]
    fn golden_bytes_encode() {
        for (msg, bytes) in golden() {
            assert_eq!(msg.encode(), bytes, "encoding {msg:?}");
        }
    }

    #[test]
    fn golden_bytes_decode_exactly_one_message() {
        for (msg, bytes) in golden() {
            crate::fuzzing::seed("flood_wire", &bytes);
            let mut input = bytes.clone();
            input.extend_from_slice(b"NEXT");
            let mut r = &input[..];
            assert_eq!(read_message(&mut r).unwrap(), Some(msg.clone()));
            assert_eq!(r, b"NEXT", "read past the end of {msg:?}");
        }
    }

    #[test]
    fn back_to_back_messages_and_clean_end() {
        let mut input = Vec::new();
        for (msg, _) in golden() {
            msg.encode_into(&mut input);
        }
        let mut r = &input[..];
        for (msg, _) in golden() {
            assert_eq!(read_message(&mut r).unwrap(), Some(msg));
        }
        assert_eq!(read_message(&mut r).unwrap(), None);
    }

    #[test]
    fn truncated_at_every_length_is_rejected() {
        for (msg, bytes) in golden() {
            for cut in 1..bytes.len() {
                let mut r = &bytes[..cut];
                match read_message(&mut r) {
                    Err(Error::Truncated) => {}
                    other => panic!("{msg:?} cut at {cut}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn unknown_types_are_rejected() {
        for kind in [0u16, 1, 2, 3, 10, 0x0400, 0xffff] {
            let b = kind.to_be_bytes();
            let mut r = &[b[0], b[1], 0, 0, 0, 0][..];
            match read_message(&mut r) {
                Err(Error::Decode(why)) => assert!(why.contains("unknown message type")),
                other => panic!("type {kind}: {other:?}"),
            }
        }
    }

    #[test]
    fn oversized_strings_are_rejected_before_reading_them() {
        // Size 401 with no body following: the size alone is the error.
        let cases: Vec<Vec<u8>> = vec![
            vec![0, 5, 0, 0, 0, 1, 0x01, 0x91],
            vec![0, 9, 0, 0, 0, 1, 0xff, 0xff],
            vec![0, 7, 0, 3, 0, 0, 0, 1, 127, 0, 0, 1, 0, 80, 0x01, 0x91],
            vec![0, 8, 0, 3, 0, 0, 0, 1, 127, 0, 0, 1, 0, 80, 0x01, 0x91],
        ];
        for bytes in cases {
            let mut r = &bytes[..];
            match read_message(&mut r) {
                Err(Error::FrameTooLarge { len, max: 400 }) => assert!(len > 400),
                other => panic!("{bytes:?}: {other:?}"),
            }
        }
        // Exactly 400 is fine.
        let big = "x".repeat(MAX_TEXT);
        let msg = Message::Resp {
            seq: 1,
            value: t(&big),
        };
        let bytes = msg.encode();
        assert_eq!(bytes.len(), 8 + MAX_TEXT);
        assert_eq!(read_message(&mut &bytes[..]).unwrap(), Some(msg));
    }

    #[test]
    fn text_is_bounded_ascii() {
        assert!(Text::new(&"a".repeat(400)).is_ok());
        assert_eq!(Text::new(&"a".repeat(401)), Err(TextError::TooLong(401)));
        assert_eq!(Text::new("caf\u{e9}"), Err(TextError::NotAscii));
        assert_eq!(Text::new("a\nb"), Err(TextError::NotAscii));
        assert!(Text::new("a\tb # c").is_ok());
        let path = t("1.2.3.4:5");
        assert_eq!(
            path.append_word("6.7.8.9:10").unwrap().to_string(),
            "1.2.3.4:5 6.7.8.9:10"
        );
        assert!(t(&"a".repeat(394)).append_word("b:1234").is_none());
        assert!(t(&"a".repeat(393)).append_word("b:1234").is_some());
    }

    #[test]
    fn wire_bytes_need_not_be_ascii() {
        let bytes = [0, 9, 0, 0, 0, 1, 0, 2, 0xc3, 0xa9];
        let msg = read_message(&mut &bytes[..]).unwrap().unwrap();
        assert_eq!(msg.encode(), bytes);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = Text> {
        proptest::string::string_regex("[ -~\t]{0,400}")
            .expect("a valid regex")
            .prop_map(|s| Text::new(&s).expect("printable ASCII"))
    }

    fn flood() -> impl Strategy<Value = Flood> {
        (any::<u16>(), any::<u32>(), any::<SocketAddrV4>(), text()).prop_map(
            |(ttl, seq, origin, info)| Flood {
                ttl,
                seq,
                origin,
                info,
            },
        )
    }

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            any::<u16>().prop_map(|port| Message::Id { port }),
            (any::<u32>(), text()).prop_map(|(seq, key)| Message::KeyReq { seq, key }),
            any::<u32>().prop_map(|seq| Message::TopoReq { seq }),
            flood().prop_map(Message::KeyFlood),
            flood().prop_map(Message::TopoFlood),
            (any::<u32>(), text()).prop_map(|(seq, value)| Message::Resp { seq, value }),
        ]
    }

    proptest! {
        #[test]
        fn messages_roundtrip_back_to_back(msgs in proptest::collection::vec(message(), 1..8)) {
            let mut bytes = Vec::new();
            for m in &msgs {
                m.encode_into(&mut bytes);
            }
            crate::fuzzing::seed("flood_wire", &bytes);
            let mut r = &bytes[..];
            for m in &msgs {
                prop_assert_eq!(read_message(&mut r).unwrap(), Some(m.clone()));
            }
            prop_assert_eq!(read_message(&mut r).unwrap(), None);
        }
    }
}
