//! An RPC service on the server core: a [`Program`] answers its procedures;
//! [`serve`] reads records under the core's deadlines (idle between
//! records, the whole record within the request timeout, busy while
//! answering) and sends the standard replies for everything else: NULLPROC
//! answered for every program, PROG_UNAVAIL, PROG_MISMATCH, PROC_UNAVAIL,
//! GARBAGE_ARGS, SYSTEM_ERR, RPC_MISMATCH and AUTH_ERROR. A bad fragment
//! header or a record over the limit closes the connection.

use std::io::{BufReader, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use super::msg::{self, Accepted, BadCall, Reply};
use super::record;
use super::xdr::{Decoder, Encoder};
use super::{Error, Result};
use crate::server::{Server, Session};

/// One call as a program sees it.
#[derive(Debug)]
pub struct Call<'a> {
    /// The procedure number (never 0: NULLPROC is answered for you).
    pub proc_: u32,
    /// The caller.
    pub peer: SocketAddr,
    args: Decoder<'a>,
}

impl<'a> Call<'a> {
    /// Decodes the whole of the arguments with `f`; bytes left over, or
    /// anything `f` cannot decode, make the call GARBAGE_ARGS.
    pub fn args<T>(&mut self, f: impl FnOnce(&mut Decoder<'a>) -> Result<T>) -> Result<T, Fault> {
        let v = f(&mut self.args).map_err(Fault::GarbageArgs)?;
        self.args.finish().map_err(Fault::GarbageArgs)?;
        Ok(v)
    }
}

/// Why a call gets no SUCCESS reply.
#[derive(Debug)]
pub enum Fault {
    /// No such procedure: PROC_UNAVAIL.
    ProcUnavail,
    /// The arguments do not decode: GARBAGE_ARGS.
    GarbageArgs(Error),
    /// The server failed: SYSTEM_ERR.
    SystemErr(String),
}

impl From<Error> for Fault {
    fn from(e: Error) -> Self {
        Fault::GarbageArgs(e)
    }
}

/// An RPC program at one version.
pub trait Program: Send + Sync + 'static {
    /// The program number.
    fn prog(&self) -> u32;
    /// The version served.
    fn vers(&self) -> u32;
    /// Answers procedure `call.proc_` (1 and up): decode the arguments with
    /// `call.args`, encode the results into `results`.
    fn dispatch(&self, call: &mut Call<'_>, results: &mut Encoder) -> Result<(), Fault>;
}

/// What to do with one received record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Send this reply.
    Reply(Reply),
    /// Close the connection without a reply.
    Close(String),
}

/// Handles one record: the call header, then NULLPROC or the program.
pub(crate) fn answer<P: Program + ?Sized>(program: &P, record: &[u8], peer: SocketAddr) -> Answer {
    let (header, args) = match msg::decode_call(record) {
        Ok(call) => call,
        Err(BadCall::Reply(r)) => return Answer::Reply(r),
        Err(BadCall::Drop(e)) => return Answer::Close(e.to_string()),
    };
    let xid = header.xid;
    let accepted = if header.prog != program.prog() {
        Accepted::ProgUnavail
    } else if header.vers != program.vers() {
        Accepted::ProgMismatch {
            low: program.vers(),
            high: program.vers(),
        }
    } else if header.proc_ == 0 {
        Accepted::Success(Vec::new())
    } else {
        let mut call = Call {
            proc_: header.proc_,
            peer,
            args,
        };
        let mut results = Encoder::new();
        match program.dispatch(&mut call, &mut results) {
            Ok(()) => Accepted::Success(results.into_bytes()),
            Err(Fault::ProcUnavail) => Accepted::ProcUnavail,
            Err(Fault::GarbageArgs(e)) => {
                crate::diag!(
                    "{peer}: garbage arguments to procedure {}: {e}",
                    header.proc_
                );
                Accepted::GarbageArgs
            }
            Err(Fault::SystemErr(why)) => {
                crate::diag!("{peer}: procedure {} failed: {why}", header.proc_);
                Accepted::SystemErr
            }
        }
    };
    Answer::Reply(Reply::accepted(xid, accepted))
}

/// Serves `program` on `server`, one thread per connection (the core's
/// limits apply), accepting records of at most `max_record` bytes.
pub(crate) fn serve<P: Program>(
    server: Server,
    program: Arc<P>,
    max_record: usize,
) -> crate::Result<()> {
    server.serve(move |session| serve_connection(&session, &*program, max_record))
}

/// Serves one connection until it closes, the core closes it, or it sends
/// something that ends it.
pub(crate) fn serve_connection<P: Program + ?Sized>(
    session: &Session,
    program: &P,
    max_record: usize,
) {
    let peer = session.peer();
    let mut reader = BufReader::with_capacity(64 * 1024, session.stream());
    loop {
        if !session.await_request(&mut reader).unwrap_or(false) {
            return;
        }
        let record = match record::read_record(&mut reader, max_record) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                if !session.is_closed() && !matches!(e, Error::Closed | Error::Io(_)) {
                    crate::diag!("{peer}: closing: {e}");
                }
                return;
            }
        };
        session.busy();
        match answer(program, &record, peer) {
            Answer::Reply(reply) => {
                let mut out = Vec::new();
                // Writing into a Vec cannot fail.
                let _ = record::write_record(&mut out, &reply.encode());
                if session.stream().write_all(&out).is_err() {
                    return;
                }
            }
            Answer::Close(why) => {
                crate::diag!("{peer}: closing: {why}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oncrpc::msg::{CallHeader, Denied, ReplyBody};

    /// Program 0x20000099 v1, procedure 1: three strings, void result.
    struct Log;

    impl Program for Log {
        fn prog(&self) -> u32 {
            0x2000_0099
        }
        fn vers(&self) -> u32 {
            1
        }
        fn dispatch(&self, call: &mut Call<'_>, _results: &mut Encoder) -> Result<(), Fault> {
            match call.proc_ {
                1 => {
                    call.args(|d| {
                        for what in ["username", "operation", "timestamp"] {
                            d.string(256, what)?;
                        }
                        Ok(())
                    })?;
                    Ok(())
                }
                _ => Err(Fault::ProcUnavail),
            }
        }
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    fn call(prog: u32, vers: u32, proc_: u32, args: &[u8]) -> Answer {
        let mut e = Encoder::new();
        CallHeader::new(5, prog, vers, proc_).encode(&mut e);
        e.raw(args);
        answer(&Log, e.as_bytes(), peer())
    }

    fn accepted(a: Accepted) -> Answer {
        Answer::Reply(Reply::accepted(5, a))
    }

    #[test]
    fn every_standard_answer() {
        let mut good = Encoder::new();
        good.string(b"ana")
            .string(b"PUBLISH notes.txt")
            .string(b"21/11/2026 10:00:00");
        let good = good.into_bytes();
        assert_eq!(
            call(0x2000_0099, 1, 1, &good),
            accepted(Accepted::Success(vec![]))
        );
        assert_eq!(
            call(0x2000_0099, 1, 0, &[]),
            accepted(Accepted::Success(vec![]))
        );
        assert_eq!(
            call(0x2000_0098, 1, 1, &good),
            accepted(Accepted::ProgUnavail)
        );
        assert_eq!(
            call(0x2000_0099, 2, 1, &good),
            accepted(Accepted::ProgMismatch { low: 1, high: 1 })
        );
        assert_eq!(
            call(0x2000_0099, 1, 2, &good),
            accepted(Accepted::ProcUnavail)
        );
        assert_eq!(
            call(0x2000_0099, 1, 1, &good[..good.len() - 4]),
            accepted(Accepted::GarbageArgs)
        );
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            call(0x2000_0099, 1, 1, &trailing),
            accepted(Accepted::GarbageArgs)
        );
        let mut long = Encoder::new();
        long.string(&[b'x'; 257]).string(b"").string(b"");
        assert_eq!(
            call(0x2000_0099, 1, 1, long.as_bytes()),
            accepted(Accepted::GarbageArgs)
        );
        // RPC version 3.
        let mut e = Encoder::new();
        let mut h = CallHeader::new(5, 0x2000_0099, 1, 0);
        h.rpcvers = 3;
        h.encode(&mut e);
        match answer(&Log, e.as_bytes(), peer()) {
            Answer::Reply(Reply {
                body: ReplyBody::Denied(Denied::RpcMismatch { low: 2, high: 2 }),
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(answer(&Log, &[1, 2, 3], peer()), Answer::Close(_)));
    }
}

#[cfg(test)]
mod socket_tests {
    use super::*;
    use crate::net::Timeouts;
    use crate::oncrpc::Client;
    use crate::server::Limits;
    use crate::shutdown::Shutdown;

    /// Echoes a big opaque back: replies over 64 KiB go out in fragments.
    struct Echo;

    impl Program for Echo {
        fn prog(&self) -> u32 {
            0x2000_0001
        }
        fn vers(&self) -> u32 {
            1
        }
        fn dispatch(&self, call: &mut Call<'_>, results: &mut Encoder) -> Result<(), Fault> {
            let bytes = call.args(|d| d.opaque(1 << 20, "data"))?;
            results.opaque(bytes);
            Ok(())
        }
    }

    #[test]
    fn client_and_server_over_tcp() {
        let shutdown = Shutdown::new();
        let server = Server::bind("127.0.0.1:0", Limits::default(), shutdown.clone()).unwrap();
        let addr = server.local_addr().to_string();
        let t = std::thread::spawn(move || serve(server, Arc::new(Echo), 1 << 21));
        let mut c = Client::connect(&addr, &Timeouts::secs(10), 0x2000_0001, 1).unwrap();
        c.null().unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let back = c
            .call_with(
                1,
                |e| {
                    e.opaque(&big);
                },
                |d| Ok(d.opaque(1 << 20, "data")?.to_vec()),
            )
            .unwrap();
        assert_eq!(back, big);
        assert!(matches!(c.call(2, &[]), Err(Error::Rejected(_))));
        let mut other = Client::connect(&addr, &Timeouts::secs(10), 0x2000_0002, 1).unwrap();
        assert!(matches!(other.null(), Err(Error::Rejected(_))));
        shutdown.trigger();
        t.join().unwrap().unwrap();
    }
}
