//! Length-prefixed postcard frames: `[u32 big-endian length][postcard message]`,
//! the codec, a buffered `Conn` over a `TcpStream`, the version handshake,
//! and the one policy every framed server follows for requests.
//!
//! A frame's length is checked against a maximum before anything is allocated;
//! a clean EOF at a frame boundary reads as `Ok(None)`, an EOF inside a frame
//! is `Error::Truncated`, and bytes left after the message are an error.
//!
//! **Request policy** ([`Conn::next_request`]): a complete frame that is not
//! a valid request gets the protocol's typed error reply and the connection
//! keeps serving; a frame over the size limit gets the same reply and the
//! connection is closed (the stream is no longer at a frame boundary).

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Detail, Error, Result, Role, Stage};
use crate::net::{self, SharedStream, Timeouts};
use crate::server::Session;

/// Largest frame payload our control protocols accept (1 MiB). File bytes are
/// streamed raw after a header frame and never count against it.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// Encodes `msg` as one complete frame, length prefix included.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>> {
    let mut out =
        postcard::to_extend(msg, vec![0u8; 4]).map_err(|e| Error::Decode(e.to_string()))?;
    let len = out.len() - 4;
    if len > MAX_FRAME_LEN {
        return Err(Error::FrameTooLarge {
            len: len as u64,
            max: MAX_FRAME_LEN as u64,
        });
    }
    // The length fits in u32: it is at most MAX_FRAME_LEN.
    out[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Decodes one message from a frame payload (without its length prefix);
/// leftover bytes are an error.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T> {
    let (msg, rest) =
        postcard::take_from_bytes::<T>(payload).map_err(|e| Error::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(Error::TrailingBytes(rest.len()));
    }
    Ok(msg)
}

/// Writes one frame. Does not flush.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<()> {
    w.write_all(&encode(msg)?)?;
    Ok(())
}

/// Reads one frame of at most `MAX_FRAME_LEN` bytes and decodes it.
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<Option<T>> {
    read_frame_max(r, MAX_FRAME_LEN)
}

/// Reads one frame whose payload may be at most `max` bytes and decodes it.
pub fn read_frame_max<R: Read, T: DeserializeOwned>(r: &mut R, max: usize) -> Result<Option<T>> {
    match read_payload(r, max)? {
        None => Ok(None),
        Some(payload) => decode(&payload).map(Some),
    }
}

/// Reads one raw frame payload of at most `max` bytes. `Ok(None)` on a clean
/// EOF before the first byte of the length prefix.
pub fn read_payload<R: Read>(r: &mut R, max: usize) -> Result<Option<Vec<u8>>> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < prefix.len() {
        match r.read(&mut prefix[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(Error::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(Error::FrameTooLarge {
            len: len as u64,
            max: max as u64,
        });
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some(payload))
}

/// A protocol's name and version, exchanged in the handshake that opens
/// every connection of our own protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocol {
    pub name: &'static str,
    pub version: u16,
}

/// Magic bytes at the start of every handshake.
pub const MAGIC: [u8; 4] = *b"PKIT";

/// First frame a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub magic: [u8; 4],
    pub protocol: String,
    pub version: u16,
}

/// The server's answer to `Hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// The server speaks this protocol at this version; requests may follow.
    Welcome { version: u16 },
    /// The server will not talk; the connection closes after this frame.
    Refused { reason: String },
}

/// A protocol's request type, as a server reads it.
pub trait Request: DeserializeOwned {
    /// Largest request frame the server reads.
    const MAX_LEN: usize = MAX_FRAME_LEN;

    /// Why `payload` is not a valid request, in words fit for an error reply.
    fn explain(payload: &[u8], err: &Error) -> String {
        let _ = payload;
        format!("invalid request: {err}")
    }
}

/// A protocol's response type: it can carry an error message.
pub trait Response: Serialize {
    /// Who answers with this type: an error reply is this role's word.
    const FROM: Role;

    /// The error reply to an invalid request.
    fn error(message: String) -> Self;

    /// The message of an error reply, on the client side: an answer no
    /// caller of [`Conn::call`] wants, which is still the server's word.
    fn error_message(&self) -> Option<&str> {
        None
    }
}

/// The error for an answer the client did not expect.
pub fn unexpected<R: Response + std::fmt::Debug>(expected: &'static str, other: &R) -> Error {
    match other.error_message() {
        Some(message) => Error::remote(R::FROM, message),
        None => Error::protocol(
            Stage::Reply,
            Detail::Unexpected {
                expected,
                got: format!("{other:?}"),
            },
        ),
    }
}

/// A framed connection: buffered reader and writer halves of one socket,
/// and on the server side the core's [`Session`] for it.
pub struct Conn {
    reader: BufReader<SharedStream>,
    writer: BufWriter<SharedStream>,
    peer: SocketAddr,
    session: Option<Session>,
}

/// Buffer size of each half of a `Conn`.
const CONN_BUF: usize = 64 * 1024;

impl Conn {
    /// Wraps a connected stream (its timeouts must already be set).
    pub fn new(stream: TcpStream) -> io::Result<Conn> {
        let peer = stream.peer_addr()?;
        Ok(Conn::over(Arc::new(stream), peer, None))
    }

    fn over(stream: Arc<TcpStream>, peer: SocketAddr, session: Option<Session>) -> Conn {
        Conn {
            reader: BufReader::with_capacity(CONN_BUF, SharedStream::new(stream.clone())),
            writer: BufWriter::with_capacity(CONN_BUF, SharedStream::new(stream)),
            peer,
            session,
        }
    }

    /// Server side, without a handshake: frames over a served connection.
    pub fn serve(session: Session) -> Conn {
        let (stream, peer) = (session.shared_stream(), session.peer());
        Conn::over(stream, peer, Some(session))
    }

    /// Server side of opening a connection: runs the handshake for
    /// `protocol`, all of which must arrive within the request deadline.
    /// `Ok(None)` if the peer closed before saying hello.
    pub fn accept(session: Session, protocol: Protocol) -> Result<Option<Conn>> {
        let mut conn = Conn::serve(session);
        Ok(conn.server_handshake(protocol)?.then_some(conn))
    }

    /// `accept`, logging a failed handshake with the peer's address (unless
    /// the peer just went away). `None`: nothing to serve.
    pub fn accept_logged(session: Session, protocol: Protocol) -> Option<Conn> {
        let peer = session.peer();
        match Conn::accept(session, protocol) {
            Ok(conn) => conn,
            Err(e) => {
                if !e.is_disconnect() {
                    crate::diag!("{peer}: {e}");
                }
                None
            }
        }
    }

    /// Server side: hands each request to `answer` (which sends the reply)
    /// until the peer closes or a reply fails. A failure other than the
    /// peer going away is logged with the peer's address.
    pub fn serve_requests<Q: Request, R: Response>(
        &mut self,
        mut answer: impl FnMut(&mut Conn, Q) -> Result<()>,
    ) {
        let outcome = loop {
            match self.next_request::<Q, R>() {
                Ok(Some(req)) => {
                    if let Err(e) = answer(self, req) {
                        break Err(e);
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = outcome
            && !e.is_disconnect()
        {
            crate::diag!("{}: {e}", self.peer);
        }
    }

    /// The core's session of a served connection.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// Server side: the next request, under the core's deadlines (idle
    /// between requests, the whole frame within the request timeout). An
    /// invalid request is answered with `R::error` and skipped; an
    /// oversized one is answered and ends the connection. `Ok(None)` when
    /// the peer closed between requests or the core closed the connection.
    pub fn next_request<Q: Request, R: Response>(&mut self) -> Result<Option<Q>> {
        loop {
            let started = match &self.session {
                Some(s) => s.await_request(&mut self.reader)?,
                None => !self.reader.fill_buf()?.is_empty(),
            };
            if !started {
                return Ok(None);
            }
            let payload = match read_payload(&mut self.reader, Q::MAX_LEN) {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(None),
                Err(e @ Error::FrameTooLarge { .. }) => {
                    let message = format!("invalid request: {e}");
                    crate::diag!("{}: {message}", self.peer);
                    self.send(&R::error(message))?;
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            if let Some(s) = &self.session {
                s.busy();
            }
            match decode::<Q>(&payload) {
                Ok(req) => return Ok(Some(req)),
                Err(e) => {
                    let message = Q::explain(&payload, &e);
                    crate::diag!("{}: {message}", self.peer);
                    self.send(&R::error(message))?;
                }
            }
        }
    }

    /// Connects to `addr` (`host:port`) with timeouts, without a handshake.
    pub fn connect(addr: &str, timeouts: &Timeouts) -> Result<Conn> {
        Ok(Conn::new(net::connect(addr, timeouts)?)?)
    }

    /// Connects and performs the client side of the handshake.
    pub fn open(addr: &str, timeouts: &Timeouts, protocol: Protocol) -> Result<Conn> {
        let mut conn = Conn::connect(addr, timeouts)?;
        conn.client_handshake(protocol)?;
        Ok(conn)
    }

    /// The remote address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The local address of the socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream().local_addr()
    }

    /// The underlying stream, e.g. to change its timeouts.
    pub fn stream(&self) -> &TcpStream {
        self.writer.get_ref().tcp()
    }

    /// Sends one message and flushes.
    pub fn send<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        write_frame(&mut self.writer, msg)?;
        self.writer.flush()?;
        Ok(())
    }

    /// Queues one message without flushing (for a header followed by a body).
    pub fn queue<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        write_frame(&mut self.writer, msg)
    }

    /// Flushes queued output.
    pub fn flush(&mut self) -> Result<()> {
        self.writer.flush()?;
        Ok(())
    }

    /// Client side: sends `req`, then reads its one answer with
    /// [`answer`](Self::answer).
    pub fn call<R, T>(
        &mut self,
        req: &impl Serialize,
        expected: &'static str,
        pick: impl FnOnce(R) -> std::result::Result<T, R>,
    ) -> Result<T>
    where
        R: Response + DeserializeOwned + std::fmt::Debug,
    {
        self.send(req)?;
        self.answer(expected, pick)
    }

    /// Client side: reads one answer that the peer owes and hands it to
    /// `pick`, which keeps what it wants (`Ok`) and gives back the rest
    /// (`Err`). An answer given back is the server's error reply
    /// ([`Error::Remote`], its message) or an [`Error::Protocol`] naming
    /// what was `expected` and what came instead.
    pub fn answer<R, T>(
        &mut self,
        expected: &'static str,
        pick: impl FnOnce(R) -> std::result::Result<T, R>,
    ) -> Result<T>
    where
        R: Response + DeserializeOwned + std::fmt::Debug,
    {
        pick(self.expect::<R>()?).map_err(|other| unexpected(expected, &other))
    }

    /// Receives one message; `Ok(None)` on a clean EOF between frames.
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        read_frame(&mut self.reader)
    }

    /// Receives one message where the peer owes us one: EOF is `Error::Closed`.
    pub fn expect<T: DeserializeOwned>(&mut self) -> Result<T> {
        self.recv()?.ok_or(Error::Closed)
    }

    /// The buffered reader, for raw bytes that follow a header frame.
    pub fn reader(&mut self) -> &mut BufReader<SharedStream> {
        &mut self.reader
    }

    /// The buffered writer, for raw bytes that follow a header frame.
    pub fn writer(&mut self) -> &mut BufWriter<SharedStream> {
        &mut self.writer
    }

    /// Client side of the handshake: send `Hello`, require `Welcome`.
    pub fn client_handshake(&mut self, protocol: Protocol) -> Result<()> {
        self.send(&Hello {
            magic: MAGIC,
            protocol: protocol.name.to_string(),
            version: protocol.version,
        })?;
        match self.expect::<HelloReply>()? {
            HelloReply::Welcome { version } if version == protocol.version => Ok(()),
            HelloReply::Welcome { version } => Err(Error::Handshake(format!(
                "peer speaks {} version {version}, we speak {}",
                protocol.name, protocol.version
            ))),
            HelloReply::Refused { reason } => Err(Error::Handshake(reason)),
        }
    }

    /// Server side of the handshake: read `Hello`, answer `Welcome` if it is
    /// for `protocol` at our version, otherwise answer `Refused` (best effort)
    /// and return the error. `Ok(false)` if the peer closed before saying hello.
    pub fn server_handshake(&mut self, protocol: Protocol) -> Result<bool> {
        let hello = match self.recv::<Hello>() {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(false),
            Err(e) => {
                self.refuse(&e.to_string());
                return Err(Error::Handshake(e.to_string()));
            }
        };
        let problem = if hello.magic != MAGIC {
            Some("bad magic".to_string())
        } else if hello.protocol != protocol.name {
            Some(format!(
                "this server speaks {}, not {}",
                protocol.name, hello.protocol
            ))
        } else if hello.version != protocol.version {
            Some(format!(
                "{} version {} is not supported (this server speaks {})",
                protocol.name, hello.version, protocol.version
            ))
        } else {
            None
        };
        match problem {
            Some(reason) => {
                self.refuse(&reason);
                Err(Error::Handshake(reason))
            }
            None => {
                self.send(&HelloReply::Welcome {
                    version: protocol.version,
                })?;
                Ok(true)
            }
        }
    }

    fn refuse(&mut self, reason: &str) {
        // Best effort: the peer may already be gone, and we are closing anyway.
        let _ = self.send(&HelloReply::Refused {
            reason: reason.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Msg {
        Ping,
        Text(String),
        Pair { a: u32, b: Vec<u8> },
    }

    fn roundtrip(m: &Msg) -> Msg {
        let bytes = encode(m).unwrap();
        crate::fuzzing::seed_frame::<Msg>(&bytes);
        let mut r = &bytes[..];
        let back = read_frame::<_, Msg>(&mut r).unwrap().unwrap();
        assert!(r.is_empty());
        back
    }

    impl Response for Msg {
        const FROM: Role = Role::Server;

        fn error(message: String) -> Self {
            Msg::Text(message)
        }
        fn error_message(&self) -> Option<&str> {
            match self {
                Msg::Text(m) => Some(m),
                _ => None,
            }
        }
    }

    /// A client `Conn` whose server answers each request with the next of
    /// `answers`.
    fn answered_by(answers: Vec<Msg>) -> Conn {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut server = Conn::new(stream).unwrap();
            for a in answers {
                if server.recv::<Msg>().ok().flatten().is_none() {
                    return;
                }
                server.send(&a).unwrap();
            }
        });
        Conn::connect(&addr.to_string(), &Timeouts::default()).unwrap()
    }

    #[test]
    fn a_call_keeps_the_answer_wanted_and_names_what_else_came() {
        let pair = |r| match r {
            Msg::Pair { a, .. } => Ok(a),
            other => Err(other),
        };
        let mut conn = answered_by(vec![
            Msg::Pair { a: 7, b: vec![] },
            Msg::Ping,
            Msg::Text("no such thing".into()),
        ]);
        assert_eq!(conn.call(&Msg::Ping, "Pair", pair).unwrap(), 7);
        match conn.call(&Msg::Ping, "Pair", pair) {
            Err(
                e @ Error::Protocol {
                    stage: Stage::Reply,
                    detail:
                        Detail::Unexpected {
                            expected: "Pair", ..
                        },
                },
            ) => assert_eq!(
                e.to_string(),
                "protocol error in reply: expected Pair, got Ping"
            ),
            other => panic!("{other:?}"),
        }
        // The server's error reply is its word, not a protocol fault.
        match conn.call(&Msg::Ping, "Pair", pair) {
            Err(Error::Remote {
                from: Role::Server,
                message,
            }) => assert_eq!(message, "no such thing"),
            other => panic!("{other:?}"),
        }
        // No answer at all: the peer closed.
        assert!(matches!(
            conn.call(&Msg::Ping, "Pair", pair),
            Err(Error::Closed) | Err(Error::Io(_))
        ));
    }

    #[test]
    fn roundtrips() {
        for m in [
            Msg::Ping,
            Msg::Text("héllo".into()),
            Msg::Pair {
                a: u32::MAX,
                b: vec![1, 2, 3],
            },
        ] {
            assert_eq!(roundtrip(&m), m);
        }
    }

    #[test]
    fn golden_bytes() {
        // Length 1, then variant index 0 as a varint.
        assert_eq!(encode(&Msg::Ping).unwrap(), [0, 0, 0, 1, 0]);
        assert_eq!(
            encode(&Msg::Text("ab".into())).unwrap(),
            [0, 0, 0, 4, 1, 2, b'a', b'b']
        );
    }

    #[test]
    fn clean_eof_is_none() {
        let mut r: &[u8] = &[];
        assert!(read_frame::<_, Msg>(&mut r).unwrap().is_none());
    }

    #[test]
    fn truncated_prefix_and_body_are_errors() {
        let bytes = encode(&Msg::Text("hello".into())).unwrap();
        for cut in 1..bytes.len() {
            let mut r = &bytes[..cut];
            let err = read_frame::<_, Msg>(&mut r).unwrap_err();
            assert!(matches!(err, Error::Truncated), "cut {cut}: {err:?}");
        }
    }

    #[test]
    fn oversized_length_is_rejected_before_allocating() {
        let mut r: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0];
        let err = read_frame::<_, Msg>(&mut r).unwrap_err();
        assert!(matches!(
            err,
            Error::FrameTooLarge {
                len: 0xffff_ffff,
                ..
            }
        ));
        let mut r: &[u8] = &[0, 0, 0, 9, 0];
        let err = read_frame_max::<_, Msg>(&mut r, 8).unwrap_err();
        assert!(matches!(err, Error::FrameTooLarge { len: 9, max: 8 }));
    }

    #[test]
    fn encoding_an_oversized_message_fails() {
        let m = Msg::Pair {
            a: 0,
            b: vec![0; MAX_FRAME_LEN + 1],
        };
        assert!(matches!(encode(&m), Err(Error::FrameTooLarge { .. })));
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut r: &[u8] = &[0, 0, 0, 2, 0, 0];
        let err = read_frame::<_, Msg>(&mut r).unwrap_err();
        assert!(matches!(err, Error::TrailingBytes(1)));
    }

    #[test]
    fn garbage_and_unknown_variants_are_rejected() {
        let mut r: &[u8] = &[0, 0, 0, 1, 9];
        assert!(matches!(
            read_frame::<_, Msg>(&mut r),
            Err(Error::Decode(_))
        ));
        let mut r: &[u8] = &[0, 0, 0, 3, 1, 200, 1];
        assert!(read_frame::<_, Msg>(&mut r).is_err());
    }
}

/// Asserts that `msg` goes through a frame and back unchanged (and keeps
/// the frame as a fuzzing seed): the property tests of every protocol.
#[cfg(test)]
pub(crate) fn assert_roundtrip<T>(msg: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = encode(msg).expect("encodes");
    crate::fuzzing::seed_frame::<T>(&bytes);
    let mut r = &bytes[..];
    let back: T = read_frame(&mut r).expect("reads").expect("a frame");
    assert_eq!(&back, msg);
    assert!(r.is_empty());
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn handshakes_roundtrip(magic: [u8; 4], protocol: String, version: u16, reason: String) {
            assert_roundtrip(&Hello { magic, protocol, version });
            assert_roundtrip(&HelloReply::Welcome { version });
            assert_roundtrip(&HelloReply::Refused { reason });
        }

        #[test]
        fn any_payload_reads_back_whole(payload in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
            bytes.extend_from_slice(&payload);
            let mut r = &bytes[..];
            prop_assert_eq!(read_payload(&mut r, MAX_FRAME_LEN).unwrap(), Some(payload));
            prop_assert!(r.is_empty());
        }
    }
}
