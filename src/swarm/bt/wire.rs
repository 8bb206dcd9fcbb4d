//! The BitTorrent peer wire (BEP 3, with BEP 10's extended message):
//! the 68-byte handshake and `[u32 length][id][payload]` messages. Decoding
//! is a pure function of the bytes received so far ([`decode`]), so a
//! socket read that times out mid-message loses nothing and the parser can
//! be fuzzed on its own. A length over [`MAX_MSG_LEN`] is refused before
//! anything is allocated.

use std::io::{self, Read, Write};

use crate::error::{Error, Result, Stage};

use super::metainfo::InfoHash;

/// The block size every request asks for (the last block of a piece may be shorter).
pub(crate) const BLOCK: u32 = 16 * 1024;
/// Most pieces a torrent may have (its info dict is bounded by
/// `MAX_TORRENT_LEN`, 20 bytes a piece).
pub(crate) const MAX_PIECES: u32 = (super::metainfo::MAX_TORRENT_LEN / 20) as u32;
/// Longest message accepted: a bitfield of [`MAX_PIECES`], or a piece
/// message of one block with its 9-byte head, or an extended message
/// carrying a block of metadata with its dict.
pub(crate) const MAX_MSG_LEN: u32 = {
    let bitfield = 1 + MAX_PIECES.div_ceil(8);
    let piece = 9 + BLOCK;
    let ext = 2 + BLOCK + 1024;
    let m = if bitfield > piece { bitfield } else { piece };
    if ext > m { ext } else { m }
};
/// A request for more than this is refused (BEP 3 clients send 16 KiB).
pub(crate) const MAX_REQUEST: u32 = 2 * BLOCK;

const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// Handshake length: 1 + 19 + 8 + 20 + 20.
pub(crate) const HANDSHAKE_LEN: usize = 68;
/// Reserved bit for the extension protocol (BEP 10): byte 5, 0x10.
pub(crate) const EXTENSION_BIT: (usize, u8) = (5, 0x10);

/// The opening handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
}

impl Handshake {
    /// Ours: the extension protocol on.
    pub(crate) fn new(info_hash: InfoHash, peer_id: [u8; 20]) -> Handshake {
        let mut reserved = [0u8; 8];
        reserved[EXTENSION_BIT.0] |= EXTENSION_BIT.1;
        Handshake {
            reserved,
            info_hash,
            peer_id,
        }
    }

    pub(crate) fn supports_extensions(&self) -> bool {
        self.reserved[EXTENSION_BIT.0] & EXTENSION_BIT.1 != 0
    }

    pub(crate) fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut b = [0u8; HANDSHAKE_LEN];
        b[0] = 19;
        b[1..20].copy_from_slice(PROTOCOL);
        b[20..28].copy_from_slice(&self.reserved);
        b[28..48].copy_from_slice(&self.info_hash.0);
        b[48..68].copy_from_slice(&self.peer_id);
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Handshake> {
        if b.len() != HANDSHAKE_LEN {
            return Err(Error::Handshake(format!(
                "{} bytes, not {HANDSHAKE_LEN}",
                b.len()
            )));
        }
        if b[0] != 19 || &b[1..20] != PROTOCOL {
            return Err(Error::Handshake("not the BitTorrent protocol".into()));
        }
        let mut h = Handshake {
            reserved: [0; 8],
            info_hash: InfoHash([0; 20]),
            peer_id: [0; 20],
        };
        h.reserved.copy_from_slice(&b[20..28]);
        h.info_hash.0.copy_from_slice(&b[28..48]);
        h.peer_id.copy_from_slice(&b[48..68]);
        Ok(h)
    }

    /// Reads one handshake from `r`.
    pub(crate) fn read(r: &mut impl Read) -> Result<Handshake> {
        let mut b = [0u8; HANDSHAKE_LEN];
        r.read_exact(&mut b).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => Error::Closed,
            _ => Error::Io(e),
        })?;
        Handshake::decode(&b)
    }
}

/// One peer-wire message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Message {
    /// A zero-length message: the link is alive.
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    /// The sender now has this piece.
    Have(u32),
    /// The pieces the sender has, high bit first (checked against the
    /// piece count by [`check_bitfield`]).
    Bitfield(Vec<u8>),
    Request {
        index: u32,
        begin: u32,
        length: u32,
    },
    Piece {
        index: u32,
        begin: u32,
        data: Vec<u8>,
    },
    Cancel {
        index: u32,
        begin: u32,
        length: u32,
    },
    /// The sender's DHT port (BEP 5); ignored.
    Port(u16),
    /// BEP 10: extended message `id` (0 is the extended handshake).
    Extended {
        id: u8,
        payload: Vec<u8>,
    },
    /// An id this side does not speak (BEP 6's fast messages, ...); ignored.
    Unknown(u8),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decodes the first message in `buf`: `Ok(None)` if more bytes are
/// needed, else the message and how many bytes it took. A length over
/// [`MAX_MSG_LEN`] or a payload of the wrong size is an error.
pub(crate) fn decode(buf: &[u8]) -> Result<Option<(Message, usize)>> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32_at(buf, 0);
    if len > MAX_MSG_LEN {
        return Err(Error::FrameTooLarge {
            len: u64::from(len),
            max: u64::from(MAX_MSG_LEN),
        });
    }
    let total = 4 + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    if len == 0 {
        return Ok(Some((Message::KeepAlive, 4)));
    }
    let id = buf[4];
    let p = &buf[5..total];
    let want = |n: usize| {
        if p.len() == n {
            Ok(())
        } else {
            Err(Error::Decode(format!(
                "message {id}: a payload of {} bytes, not {n}",
                p.len()
            )))
        }
    };
    let m = match id {
        0 => want(0).map(|_| Message::Choke)?,
        1 => want(0).map(|_| Message::Unchoke)?,
        2 => want(0).map(|_| Message::Interested)?,
        3 => want(0).map(|_| Message::NotInterested)?,
        4 => want(4).map(|_| Message::Have(u32_at(p, 0)))?,
        5 => Message::Bitfield(p.to_vec()),
        6 | 8 => {
            want(12)?;
            let (index, begin, length) = (u32_at(p, 0), u32_at(p, 4), u32_at(p, 8));
            if id == 6 {
                Message::Request {
                    index,
                    begin,
                    length,
                }
            } else {
                Message::Cancel {
                    index,
                    begin,
                    length,
                }
            }
        }
        7 => {
            if p.len() < 8 {
                return Err(Error::Decode("piece message shorter than its head".into()));
            }
            Message::Piece {
                index: u32_at(p, 0),
                begin: u32_at(p, 4),
                data: p[8..].to_vec(),
            }
        }
        9 => want(2).map(|_| Message::Port(u16::from_be_bytes([p[0], p[1]])))?,
        20 => {
            if p.is_empty() {
                return Err(Error::Decode("extended message without its id".into()));
            }
            Message::Extended {
                id: p[0],
                payload: p[1..].to_vec(),
            }
        }
        other => Message::Unknown(other),
    };
    Ok(Some((m, total)))
}

/// Appends `m`'s encoding to `out`.
pub(crate) fn encode(m: &Message, out: &mut Vec<u8>) {
    let mut head = |len: usize, id: u8| {
        out.extend_from_slice(&(len as u32 + 1).to_be_bytes());
        out.push(id);
    };
    match m {
        Message::KeepAlive => out.extend_from_slice(&[0, 0, 0, 0]),
        Message::Choke => head(0, 0),
        Message::Unchoke => head(0, 1),
        Message::Interested => head(0, 2),
        Message::NotInterested => head(0, 3),
        Message::Have(i) => {
            head(4, 4);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Message::Bitfield(b) => {
            head(b.len(), 5);
            out.extend_from_slice(b);
        }
        Message::Request {
            index,
            begin,
            length,
        }
        | Message::Cancel {
            index,
            begin,
            length,
        } => {
            head(
                12,
                if matches!(m, Message::Request { .. }) {
                    6
                } else {
                    8
                },
            );
            for v in [index, begin, length] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        Message::Piece { index, begin, data } => {
            head(8 + data.len(), 7);
            out.extend_from_slice(&index.to_be_bytes());
            out.extend_from_slice(&begin.to_be_bytes());
            out.extend_from_slice(data);
        }
        Message::Port(p) => {
            head(2, 9);
            out.extend_from_slice(&p.to_be_bytes());
        }
        Message::Extended { id, payload } => {
            head(1 + payload.len(), 20);
            out.push(*id);
            out.extend_from_slice(payload);
        }
        Message::Unknown(id) => head(0, *id),
    }
}

/// Checks a received bitfield against a torrent of `pieces` pieces: the
/// right length, and the spare bits past the last piece clear.
pub(crate) fn check_bitfield(b: &[u8], pieces: u32) -> Result<()> {
    let want = pieces.div_ceil(8) as usize;
    if b.len() != want {
        return Err(Error::invalid(
            Stage::Opening,
            format!(
                "a bitfield of {} bytes for {pieces} pieces (want {want})",
                b.len()
            ),
        ));
    }
    let spare = (want * 8) as u32 - pieces;
    if spare > 0 && b[want - 1] & ((1u8 << spare) - 1) != 0 {
        return Err(Error::invalid(
            Stage::Opening,
            "a bitfield with spare bits set",
        ));
    }
    Ok(())
}

/// Whether bit `i` is set in a BEP 3 bitfield.
pub(crate) fn bit(b: &[u8], i: u32) -> bool {
    b.get((i / 8) as usize)
        .is_some_and(|byte| byte & (0x80 >> (i % 8)) != 0)
}

/// Messages read from a socket whose reads time out: bytes are kept across
/// timeouts until a whole message is there. Reads go into a buffer of
/// several blocks, so one read usually brings a few messages; the bytes
/// not yet decoded move to the front only when the tail runs short.
#[derive(Debug, Default)]
pub(crate) struct MsgReader {
    buf: Vec<u8>,
    /// Decoded up to here.
    start: usize,
    /// Read up to here.
    len: usize,
}

/// What a [`MsgReader`] holds at first: eight blocks with their heads.
const READ_BUF: usize = 8 * (BLOCK as usize + 13);

impl MsgReader {
    pub(crate) fn new() -> MsgReader {
        MsgReader {
            buf: vec![0; READ_BUF],
            start: 0,
            len: 0,
        }
    }

    /// Whether a whole message is buffered (so [`MsgReader::next`] returns
    /// it without reading).
    pub(crate) fn buffered(&self) -> bool {
        let b = &self.buf[self.start..self.len];
        b.len() >= 4 && b.len() >= 4 + u32_at(b, 0) as usize
    }

    /// The next message: `Ok(None)` when a read timed out first,
    /// `Err(Closed)` at a clean end, `Err(Truncated)` at an end mid-message.
    pub(crate) fn next(&mut self, r: &mut impl Read) -> Result<Option<Message>> {
        loop {
            if let Some((m, used)) = decode(&self.buf[self.start..self.len])? {
                self.start += used;
                if self.start == self.len {
                    self.start = 0;
                    self.len = 0;
                }
                return Ok(Some(m));
            }
            // decode() has checked the length against MAX_MSG_LEN.
            let need = if self.len - self.start >= 4 {
                4 + u32_at(&self.buf, self.start) as usize
            } else {
                4
            };
            if self.start + need > self.buf.len() || self.buf.len() - self.len < BLOCK as usize {
                self.buf.copy_within(self.start..self.len, 0);
                self.len -= self.start;
                self.start = 0;
            }
            if need > self.buf.len() {
                self.buf.resize(need.max(READ_BUF), 0);
            }
            match r.read(&mut self.buf[self.len..]) {
                Ok(0) if self.len == self.start => return Err(Error::Closed),
                Ok(0) => return Err(Error::Truncated),
                Ok(n) => self.len += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }
}

/// Writes `m` to `w` whole.
pub(crate) fn send(w: &mut impl Write, m: &Message) -> Result<()> {
    let mut out = Vec::new();
    encode(m, &mut out);
    w.write_all(&out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(m: Message) {
        let mut b = Vec::new();
        encode(&m, &mut b);
        let (back, used) = decode(&b).unwrap().unwrap();
        assert_eq!((back, used), (m, b.len()));
        for cut in 0..b.len() {
            assert!(decode(&b[..cut]).unwrap().is_none(), "cut at {cut}");
        }
    }

    #[test]
    fn every_message_round_trips() {
        for m in [
            Message::KeepAlive,
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Have(7),
            Message::Bitfield(vec![0xff, 0x80]),
            Message::Request {
                index: 1,
                begin: 16384,
                length: 16384,
            },
            Message::Piece {
                index: 2,
                begin: 0,
                data: vec![9; 100],
            },
            Message::Cancel {
                index: 1,
                begin: 16384,
                length: 16384,
            },
            Message::Port(6881),
            Message::Extended {
                id: 0,
                payload: b"de".to_vec(),
            },
        ] {
            round(m);
        }
    }

    #[test]
    fn golden_bytes() {
        let mut b = Vec::new();
        encode(
            &Message::Request {
                index: 1,
                begin: 2,
                length: 16384,
            },
            &mut b,
        );
        assert_eq!(b, [0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0x40, 0]);
        let h = Handshake::new(InfoHash([0xaa; 20]), *b"-PK0100-abcdefghijkl");
        let e = h.encode();
        assert_eq!(&e[..20], b"\x13BitTorrent protocol");
        assert_eq!(e[25], 0x10);
        assert_eq!(Handshake::decode(&e).unwrap(), h);
        assert!(Handshake::decode(&[0u8; 68]).is_err());
    }

    #[test]
    fn hostile_messages_are_refused() {
        // A length of 2^32 - 1 is refused at once, before any allocation.
        assert!(matches!(
            decode(&[0xff, 0xff, 0xff, 0xff]),
            Err(Error::FrameTooLarge { .. })
        ));
        assert!(decode(&(MAX_MSG_LEN + 1).to_be_bytes()).is_err());
        // Payloads of the wrong size.
        assert!(decode(&[0, 0, 0, 2, 0, 0]).is_err());
        assert!(decode(&[0, 0, 0, 3, 4, 0, 0]).is_err());
        assert!(decode(&[0, 0, 0, 5, 7, 0, 0, 0, 0]).is_err());
        assert!(decode(&[0, 0, 0, 1, 20]).is_err());
        // Bitfields: length and spare bits.
        assert!(check_bitfield(&[0xff, 0x80], 9).is_ok());
        for bad in [&[0xff, 0xc0][..], &[0xff], &[0xff, 0x80, 0]] {
            assert!(matches!(
                check_bitfield(bad, 9),
                Err(Error::Protocol {
                    stage: Stage::Opening,
                    ..
                })
            ));
        }
        assert!(check_bitfield(&[0xff], 8).is_ok());
        assert!(bit(&[0x40], 1) && !bit(&[0x40], 0) && !bit(&[0x40], 99));
    }

    #[test]
    fn the_reader_keeps_bytes_across_short_reads() {
        let mut b = Vec::new();
        encode(
            &Message::Piece {
                index: 0,
                begin: 0,
                data: vec![1; BLOCK as usize],
            },
            &mut b,
        );
        encode(&Message::Have(3), &mut b);
        struct Trickle(Vec<u8>, usize);
        impl Read for Trickle {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                if self.1 % 2 == 1 {
                    self.1 += 1;
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                self.1 += 1;
                let n = out.len().min(self.0.len()).min(1000);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0.drain(..n);
                Ok(n)
            }
        }
        let mut t = Trickle(b, 0);
        let mut r = MsgReader::new();
        let mut got = Vec::new();
        loop {
            match r.next(&mut t) {
                Ok(Some(m)) => got.push(m),
                Ok(None) => {}
                Err(Error::Closed) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], Message::Have(3));
    }

    #[test]
    fn the_reader_hands_out_every_message_of_a_long_stream_in_order() {
        let mut b = Vec::new();
        let mut want = Vec::new();
        for k in 0..40u32 {
            let m = Message::Piece {
                index: k,
                begin: 0,
                data: vec![k as u8; (BLOCK - k * 7) as usize],
            };
            encode(&m, &mut b);
            want.push(m);
            encode(&Message::Have(k), &mut b);
            want.push(Message::Have(k));
        }
        // Reads of odd sizes, so messages straddle reads and the buffer's end.
        struct Odd(Vec<u8>, usize);
        impl Read for Odd {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = out.len().min(self.0.len()).min(37_000 + self.1 % 5_000);
                self.1 += 1;
                out[..n].copy_from_slice(&self.0[..n]);
                self.0.drain(..n);
                Ok(n)
            }
        }
        let mut t = Odd(b, 0);
        let mut r = MsgReader::new();
        let mut got = Vec::new();
        let mut buffered = 0;
        loop {
            match r.next(&mut t) {
                Ok(Some(m)) => got.push(m),
                Ok(None) => unreachable!("this reader never times out"),
                Err(Error::Closed) => break,
                Err(e) => panic!("{e}"),
            }
            buffered += usize::from(r.buffered());
        }
        assert_eq!(got, want);
        assert!(buffered > 0, "some reads brought more than one message");
    }
}
