//! The stateless service as ONC RPC program `RDIRPROG` version 1
//! (`rdir.x` at the repository's root): procedure 1, `RDIR_READDIR`, takes
//! `rdir_args` and returns `rdir_res`. The XDR of both is here, for the
//! server and for our client.

use std::sync::Arc;
use std::time::Instant;

use super::dir::{self, Batch, Refusal, Root, Status};
use super::watch::Watch;
use super::{MAX_BATCH, MAX_NAME, MAX_PATH};
use crate::oncrpc::server::{Call, Fault, Program};
use crate::oncrpc::{self, Decoder, Encoder};

/// The program number, as `rdir.x`'s `%#define NUMPROG` says.
pub const NUMPROG: u32 = 667_654_321;
/// `RDIRVERS`.
pub const RDIRVERS: u32 = 1;
/// `RDIR_READDIR`.
pub const RDIR_READDIR: u32 = 1;

/// `struct rdir_args`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub dirname: Vec<u8>,
    pub cookie: u64,
    pub max_entries: u32,
}

impl Args {
    pub fn encode(&self, e: &mut Encoder) {
        e.string(&self.dirname)
            .u64(self.cookie)
            .u32(self.max_entries);
    }

    pub fn decode(d: &mut Decoder<'_>) -> oncrpc::Result<Args> {
        Ok(Args {
            dirname: d.string(MAX_PATH, "dirname")?.to_vec(),
            cookie: d.u64("cookie")?,
            max_entries: d.u32("max_entries")?,
        })
    }
}

/// Encodes `rdir_res`.
pub fn encode_res(res: &Result<Batch, Refusal>, e: &mut Encoder) {
    match res {
        Ok(b) => {
            e.i32(0).array_len(b.names.len());
            for n in &b.names {
                e.string(n);
            }
            e.u64(b.cookie).bool(b.eof);
        }
        // Status codes are small positive numbers.
        Err(r) => {
            e.i32(r.status.code() as i32);
        }
    }
}

/// Decodes `rdir_res`: a batch, or the status code.
pub fn decode_res(d: &mut Decoder<'_>) -> oncrpc::Result<Result<Batch, u32>> {
    let code = d.i32("status")?;
    if code != 0 {
        return Ok(Err(code as u32));
    }
    // Each name takes at least its 4-byte count.
    let n = d.array_len(MAX_BATCH, 4, "entries")?;
    let mut names = Vec::with_capacity(n);
    for _ in 0..n {
        names.push(d.string(MAX_NAME, "rdir_name")?.to_vec());
    }
    Ok(Ok(Batch {
        names,
        cookie: d.u64("cookie")?,
        eof: d.bool("eof")?,
    }))
}

/// The RPC program: the same stateless readdir as the socket server.
pub struct RdirProgram {
    pub root: Root,
    pub prog: u32,
    pub log: bool,
    pub(crate) watch: Arc<Watch>,
}

impl Program for RdirProgram {
    fn prog(&self) -> u32 {
        self.prog
    }

    fn vers(&self) -> u32 {
        RDIRVERS
    }

    fn dispatch(&self, call: &mut Call<'_>, results: &mut Encoder) -> Result<(), Fault> {
        if call.proc_ != RDIR_READDIR {
            return Err(Fault::ProcUnavail);
        }
        let started = Instant::now();
        let args = call.args(Args::decode)?;
        let res = dir::read_batch(&self.root, &args.dirname, args.cookie, args.max_entries);
        let line = super::stateless::log_line(&args.dirname, args.cookie, args.max_entries, &res);
        self.watch
            .served("readdir", call.peer, &line, res.is_ok(), started);
        if self.log {
            crate::event!("{}: {line}", call.peer);
        }
        if let Err(r) = &res
            && r.status == Status::Io
        {
            crate::diag!("{}: {}", call.peer, r.message);
        }
        encode_res(&res, results);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdr_golden_bytes() {
        let mut e = Encoder::new();
        Args {
            dirname: b"a/b".to_vec(),
            cookie: 0x1_0000_0002,
            max_entries: 1024,
        }
        .encode(&mut e);
        // A call to the rdir program with these arguments.
        let mut call = Encoder::new();
        crate::oncrpc::msg::CallHeader::new(1, NUMPROG, RDIRVERS, RDIR_READDIR).encode(&mut call);
        call.raw(e.as_bytes());
        crate::fuzzing::seed("oncrpc_call", call.as_bytes());
        assert_eq!(
            e.as_bytes(),
            [
                0, 0, 0, 3, b'a', b'/', b'b', 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 4, 0
            ]
        );
        let mut e = Encoder::new();
        encode_res(&Err(Refusal::plain(Status::StaleCookie)), &mut e);
        assert_eq!(e.as_bytes(), [0, 0, 0x27, 0x13]);
        let b = Batch {
            names: vec![b".".to_vec(), b"\xff x".to_vec()],
            cookie: 9,
            eof: true,
        };
        let mut e = Encoder::new();
        encode_res(&Ok(b.clone()), &mut e);
        let bytes = e.into_bytes();
        let reply = crate::oncrpc::msg::Reply::accepted(
            1,
            crate::oncrpc::msg::Accepted::Success(bytes.clone()),
        );
        crate::fuzzing::seed("oncrpc_reply", &reply.encode());
        let mut d = Decoder::new(&bytes);
        assert_eq!(decode_res(&mut d).unwrap(), Ok(b));
        d.finish().unwrap();
    }
}
