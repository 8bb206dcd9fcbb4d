//! RPC version 2 messages (RFC 5531 §9): the call header, and the reply in
//! every form a server sends: accepted (SUCCESS, PROG_UNAVAIL,
//! PROG_MISMATCH, PROC_UNAVAIL, GARBAGE_ARGS, SYSTEM_ERR) and denied
//! (RPC_MISMATCH, AUTH_ERROR). Credentials of flavour AUTH_NONE (and
//! AUTH_SYS, whose body is read and ignored) are accepted.

use super::xdr::{Decoder, Encoder};
use super::{Error, Result};

/// The RPC protocol version this layer speaks.
pub const RPC_VERSION: u32 = 2;
/// `msg_type` of a call.
pub const CALL: u32 = 0;
/// `msg_type` of a reply.
pub const REPLY: u32 = 1;
/// Authentication flavour `AUTH_NONE`.
pub const AUTH_NONE: u32 = 0;
/// Authentication flavour `AUTH_SYS` (`AUTH_UNIX`).
pub const AUTH_SYS: u32 = 1;
/// Largest body of an `opaque_auth`.
pub const MAX_AUTH_BODY: u32 = 400;

/// `auth_stat` values sent in an AUTH_ERROR reply.
pub mod auth_stat {
    /// Bad credential (seal broken).
    pub const BADCRED: u32 = 1;
    /// The client must begin a new session: the flavour is not accepted.
    pub const REJECTEDCRED: u32 = 2;
    /// Bad verifier.
    pub const BADVERF: u32 = 3;
    /// Rejected for security reasons.
    pub const TOOWEAK: u32 = 5;
}

/// An `opaque_auth`: flavour and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub flavor: u32,
    pub body: Vec<u8>,
}

impl Auth {
    /// `AUTH_NONE` with an empty body.
    pub fn none() -> Auth {
        Auth {
            flavor: AUTH_NONE,
            body: Vec::new(),
        }
    }

    fn encode(&self, e: &mut Encoder) {
        e.u32(self.flavor).opaque(&self.body);
    }

    fn decode(d: &mut Decoder<'_>) -> Result<Auth> {
        let flavor = d.u32("auth flavor")?;
        let body = d.opaque(MAX_AUTH_BODY, "auth body")?.to_vec();
        Ok(Auth { flavor, body })
    }
}

/// The header of a call; the procedure's arguments follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallHeader {
    pub xid: u32,
    pub rpcvers: u32,
    pub prog: u32,
    pub vers: u32,
    pub proc_: u32,
    pub cred: Auth,
    pub verf: Auth,
}

impl CallHeader {
    /// A version-2 call with AUTH_NONE.
    pub fn new(xid: u32, prog: u32, vers: u32, proc_: u32) -> CallHeader {
        CallHeader {
            xid,
            rpcvers: RPC_VERSION,
            prog,
            vers,
            proc_,
            cred: Auth::none(),
            verf: Auth::none(),
        }
    }

    pub fn encode(&self, e: &mut Encoder) {
        e.u32(self.xid)
            .u32(CALL)
            .u32(self.rpcvers)
            .u32(self.prog)
            .u32(self.vers)
            .u32(self.proc_);
        self.cred.encode(e);
        self.verf.encode(e);
    }
}

/// Why a received record gets no ordinary dispatch.
#[derive(Debug)]
pub enum BadCall {
    /// Answer with this reply (RPC_MISMATCH, AUTH_ERROR).
    Reply(Reply),
    /// No sensible reply: close the connection.
    Drop(Error),
}

/// Decodes a call header from the start of `record`; on success the
/// decoder is left at the arguments.
pub fn decode_call<'a>(
    record: &'a [u8],
) -> std::result::Result<(CallHeader, Decoder<'a>), BadCall> {
    let mut d = Decoder::new(record);
    let xid = d.u32("xid").map_err(BadCall::Drop)?;
    let mtype = d.u32("msg_type").map_err(BadCall::Drop)?;
    if mtype != CALL {
        return Err(BadCall::Drop(Error::Invalid {
            what: "message type",
            value: mtype,
        }));
    }
    let rpcvers = d.u32("rpcvers").map_err(BadCall::Drop)?;
    if rpcvers != RPC_VERSION {
        return Err(BadCall::Reply(Reply::denied(
            xid,
            Denied::RpcMismatch {
                low: RPC_VERSION,
                high: RPC_VERSION,
            },
        )));
    }
    let header = (|| -> Result<CallHeader> {
        Ok(CallHeader {
            xid,
            rpcvers,
            prog: d.u32("prog")?,
            vers: d.u32("vers")?,
            proc_: d.u32("proc")?,
            cred: Auth::decode(&mut d)?,
            verf: Auth::decode(&mut d)?,
        })
    })();
    let header = match header {
        Ok(h) => h,
        // A header we cannot read (a credential over its bound): the
        // credential is what is bad.
        Err(_) => {
            return Err(BadCall::Reply(Reply::denied(
                xid,
                Denied::AuthError(auth_stat::BADCRED),
            )));
        }
    };
    if !matches!(header.cred.flavor, AUTH_NONE | AUTH_SYS) {
        return Err(BadCall::Reply(Reply::denied(
            xid,
            Denied::AuthError(auth_stat::REJECTEDCRED),
        )));
    }
    if header.verf.flavor != AUTH_NONE {
        return Err(BadCall::Reply(Reply::denied(
            xid,
            Denied::AuthError(auth_stat::BADVERF),
        )));
    }
    Ok((header, d))
}

/// An accepted reply's status and what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// SUCCESS (0) and the procedure's encoded results.
    Success(Vec<u8>),
    /// PROG_UNAVAIL (1): no such program here.
    ProgUnavail,
    /// PROG_MISMATCH (2): the versions this server has of the program.
    ProgMismatch { low: u32, high: u32 },
    /// PROC_UNAVAIL (3): no such procedure in the program.
    ProcUnavail,
    /// GARBAGE_ARGS (4): the arguments do not decode.
    GarbageArgs,
    /// SYSTEM_ERR (5): the server failed (out of memory, ...).
    SystemErr,
}

/// A denied reply's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// RPC_MISMATCH (0): the RPC versions the server speaks.
    RpcMismatch { low: u32, high: u32 },
    /// AUTH_ERROR (1) with its `auth_stat`.
    AuthError(u32),
}

/// A reply: accepted (with an AUTH_NONE verifier) or denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyBody {
    Accepted(Accepted),
    Denied(Denied),
}

/// A whole reply message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub xid: u32,
    pub body: ReplyBody,
}

impl Reply {
    pub fn accepted(xid: u32, a: Accepted) -> Reply {
        Reply {
            xid,
            body: ReplyBody::Accepted(a),
        }
    }

    pub fn denied(xid: u32, d: Denied) -> Reply {
        Reply {
            xid,
            body: ReplyBody::Denied(d),
        }
    }

    /// The reply's bytes (one record's worth).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.u32(self.xid).u32(REPLY);
        match &self.body {
            ReplyBody::Accepted(a) => {
                e.u32(0); // MSG_ACCEPTED
                Auth::none().encode(&mut e);
                match a {
                    Accepted::Success(results) => e.u32(0).raw(results),
                    Accepted::ProgUnavail => e.u32(1),
                    Accepted::ProgMismatch { low, high } => e.u32(2).u32(*low).u32(*high),
                    Accepted::ProcUnavail => e.u32(3),
                    Accepted::GarbageArgs => e.u32(4),
                    Accepted::SystemErr => e.u32(5),
                };
            }
            ReplyBody::Denied(d) => {
                e.u32(1); // MSG_DENIED
                match d {
                    Denied::RpcMismatch { low, high } => e.u32(0).u32(*low).u32(*high),
                    Denied::AuthError(stat) => e.u32(1).u32(*stat),
                };
            }
        }
        e.into_bytes()
    }

    /// Decodes a reply; SUCCESS carries the remaining bytes as results.
    pub fn decode(record: &[u8]) -> Result<Reply> {
        let mut d = Decoder::new(record);
        let xid = d.u32("xid")?;
        let mtype = d.u32("msg_type")?;
        if mtype != REPLY {
            return Err(Error::Invalid {
                what: "message type",
                value: mtype,
            });
        }
        let body = match d.u32("reply_stat")? {
            0 => {
                Auth::decode(&mut d)?;
                let a = match d.u32("accept_stat")? {
                    0 => Accepted::Success(d.remaining().to_vec()),
                    1 => Accepted::ProgUnavail,
                    2 => Accepted::ProgMismatch {
                        low: d.u32("low")?,
                        high: d.u32("high")?,
                    },
                    3 => Accepted::ProcUnavail,
                    4 => Accepted::GarbageArgs,
                    5 => Accepted::SystemErr,
                    value => {
                        return Err(Error::Invalid {
                            what: "accept_stat",
                            value,
                        });
                    }
                };
                ReplyBody::Accepted(a)
            }
            1 => ReplyBody::Denied(match d.u32("reject_stat")? {
                0 => Denied::RpcMismatch {
                    low: d.u32("low")?,
                    high: d.u32("high")?,
                },
                1 => Denied::AuthError(d.u32("auth_stat")?),
                value => {
                    return Err(Error::Invalid {
                        what: "reject_stat",
                        value,
                    });
                }
            }),
            value => {
                return Err(Error::Invalid {
                    what: "reply_stat",
                    value,
                });
            }
        };
        if !matches!(body, ReplyBody::Accepted(Accepted::Success(_))) {
            d.finish()?;
        }
        Ok(Reply { xid, body })
    }

    /// The results of a SUCCESS reply, or the refusal in words.
    pub fn into_results(self) -> Result<Vec<u8>> {
        let why = match self.body {
            ReplyBody::Accepted(Accepted::Success(r)) => return Ok(r),
            ReplyBody::Accepted(Accepted::ProgUnavail) => "program unavailable".to_string(),
            ReplyBody::Accepted(Accepted::ProgMismatch { low, high }) => {
                format!("program version mismatch (server has {low} to {high})")
            }
            ReplyBody::Accepted(Accepted::ProcUnavail) => "procedure unavailable".to_string(),
            ReplyBody::Accepted(Accepted::GarbageArgs) => {
                "server could not decode the arguments".to_string()
            }
            ReplyBody::Accepted(Accepted::SystemErr) => "system error on the server".to_string(),
            ReplyBody::Denied(Denied::RpcMismatch { low, high }) => {
                format!("RPC version mismatch (server speaks {low} to {high})")
            }
            ReplyBody::Denied(Denied::AuthError(stat)) => {
                format!("authentication error (auth_stat {stat})")
            }
        };
        Err(Error::Rejected(why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const XID: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

    fn reply_bytes(tail: &[u8]) -> Vec<u8> {
        let mut v = XID.to_vec();
        v.extend_from_slice(tail);
        v
    }

    #[test]
    fn call_header_golden_bytes() {
        let mut e = Encoder::new();
        CallHeader::new(0x1234_5678, 100_000, 2, 3).encode(&mut e);
        let golden = [
            0x12, 0x34, 0x56, 0x78, // xid
            0, 0, 0, 0, // CALL
            0, 0, 0, 2, // rpcvers
            0, 1, 0x86, 0xa0, // prog 100000
            0, 0, 0, 2, // vers
            0, 0, 0, 3, // proc
            0, 0, 0, 0, 0, 0, 0, 0, // cred AUTH_NONE
            0, 0, 0, 0, 0, 0, 0, 0, // verf AUTH_NONE
        ];
        assert_eq!(e.as_bytes(), golden);
        let mut with_args = golden.to_vec();
        with_args.extend_from_slice(&[0, 0, 0, 9]);
        crate::fuzzing::seed("oncrpc_call", &with_args);
        let (h, mut args) = decode_call(&with_args).unwrap();
        assert_eq!(h, CallHeader::new(0x1234_5678, 100_000, 2, 3));
        assert_eq!(args.u32("arg").unwrap(), 9);
    }

    #[test]
    fn every_reply_golden_bytes() {
        let verf = [0, 0, 0, 0, 0, 0, 0, 0];
        let acc = |stat: &[u8]| {
            let mut v = vec![0, 0, 0, 1, 0, 0, 0, 0];
            v.extend_from_slice(&verf);
            v.extend_from_slice(stat);
            reply_bytes(&v)
        };
        let cases = [
            (
                Accepted::Success(vec![0, 0, 0, 1]),
                acc(&[0, 0, 0, 0, 0, 0, 0, 1]),
            ),
            (Accepted::ProgUnavail, acc(&[0, 0, 0, 1])),
            (
                Accepted::ProgMismatch { low: 1, high: 3 },
                acc(&[0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3]),
            ),
            (Accepted::ProcUnavail, acc(&[0, 0, 0, 3])),
            (Accepted::GarbageArgs, acc(&[0, 0, 0, 4])),
            (Accepted::SystemErr, acc(&[0, 0, 0, 5])),
        ];
        for (a, golden) in cases {
            let r = Reply::accepted(0x1234_5678, a);
            assert_eq!(r.encode(), golden, "{r:?}");
            crate::fuzzing::seed("oncrpc_reply", &golden);
            crate::fuzzing::seed("rpcbind_reply", &golden);
            assert_eq!(Reply::decode(&golden).unwrap(), r);
        }
        let denied = [
            (
                Denied::RpcMismatch { low: 2, high: 2 },
                reply_bytes(&[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2]),
            ),
            (
                Denied::AuthError(auth_stat::REJECTEDCRED),
                reply_bytes(&[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2]),
            ),
        ];
        for (d, golden) in denied {
            let r = Reply::denied(0x1234_5678, d);
            assert_eq!(r.encode(), golden, "{r:?}");
            assert_eq!(Reply::decode(&golden).unwrap(), r);
            assert!(matches!(r.into_results(), Err(Error::Rejected(_))));
        }
    }

    #[test]
    fn bad_calls_get_the_standard_answers() {
        let call = |rpcvers: u32, flavor: u32| {
            let mut e = Encoder::new();
            e.u32(7).u32(CALL).u32(rpcvers).u32(1).u32(1).u32(0);
            e.u32(flavor).opaque(&[]).u32(0).opaque(&[]);
            e.into_bytes()
        };
        match decode_call(&call(3, 0)) {
            Err(BadCall::Reply(r)) => {
                assert_eq!(r, Reply::denied(7, Denied::RpcMismatch { low: 2, high: 2 }))
            }
            other => panic!("{other:?}"),
        }
        match decode_call(&call(2, 6)) {
            Err(BadCall::Reply(r)) => {
                assert_eq!(
                    r,
                    Reply::denied(7, Denied::AuthError(auth_stat::REJECTEDCRED))
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(decode_call(&call(2, AUTH_SYS)).is_ok());
        // A reply where a call belongs, and a cut header: dropped.
        let mut e = Encoder::new();
        e.u32(7).u32(REPLY);
        assert!(matches!(decode_call(e.as_bytes()), Err(BadCall::Drop(_))));
        assert!(matches!(decode_call(&[0, 0]), Err(BadCall::Drop(_))));
        // A credential body over 400 bytes.
        let mut e = Encoder::new();
        e.u32(7)
            .u32(CALL)
            .u32(2)
            .u32(1)
            .u32(1)
            .u32(0)
            .u32(0)
            .u32(401);
        match decode_call(e.as_bytes()) {
            Err(BadCall::Reply(r)) => {
                assert_eq!(r, Reply::denied(7, Denied::AuthError(auth_stat::BADCRED)))
            }
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn reply() -> impl Strategy<Value = Reply> {
        let accepted = prop_oneof![
            vec(any::<u8>(), 0..200).prop_map(Accepted::Success),
            Just(Accepted::ProgUnavail),
            (any::<u32>(), any::<u32>())
                .prop_map(|(low, high)| Accepted::ProgMismatch { low, high }),
            Just(Accepted::ProcUnavail),
            Just(Accepted::GarbageArgs),
            Just(Accepted::SystemErr),
        ];
        let denied = prop_oneof![
            (any::<u32>(), any::<u32>()).prop_map(|(low, high)| Denied::RpcMismatch { low, high }),
            any::<u32>().prop_map(Denied::AuthError),
        ];
        prop_oneof![
            (any::<u32>(), accepted).prop_map(|(xid, a)| Reply::accepted(xid, a)),
            (any::<u32>(), denied).prop_map(|(xid, d)| Reply::denied(xid, d)),
        ]
    }

    proptest! {
        #[test]
        fn replies_roundtrip(r in reply()) {
            let bytes = r.encode();
            crate::fuzzing::seed("oncrpc_reply", &bytes);
            prop_assert_eq!(Reply::decode(&bytes).unwrap(), r);
        }

        #[test]
        fn call_headers_roundtrip(
            xid: u32, prog: u32, vers: u32, proc_: u32,
            sys in any::<bool>(),
            cred in vec(any::<u8>(), 0..=MAX_AUTH_BODY as usize),
            args in vec(any::<u8>(), 0..64),
        ) {
            let mut h = CallHeader::new(xid, prog, vers, proc_);
            if sys {
                h.cred = Auth { flavor: AUTH_SYS, body: cred };
            }
            let mut e = Encoder::new();
            h.encode(&mut e);
            e.raw(&args);
            let bytes = e.into_bytes();
            crate::fuzzing::seed("oncrpc_call", &bytes);
            let (back, d) = decode_call(&bytes).unwrap();
            prop_assert_eq!(back, h);
            prop_assert_eq!(d.remaining(), &args[..]);
        }
    }
}
