//! An RPC client over one stream (TCP, or rpcbind's local socket): sends a
//! call as one record and reassembles the reply's fragments.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;

use super::msg::{CallHeader, Reply};
use super::record::{self, DEFAULT_MAX_RECORD};
use super::xdr::{Decoder, Encoder};
use super::{Error, Result};
use crate::net::{self, Timeouts};

/// A connection to one program at one version.
#[derive(Debug)]
pub struct Client<S: Read + Write = TcpStream> {
    stream: BufReader<S>,
    prog: u32,
    vers: u32,
    xid: u32,
    max_record: usize,
}

impl Client<TcpStream> {
    /// Connects to `addr` (`host:port`) with timeouts.
    pub fn connect(addr: &str, timeouts: &Timeouts, prog: u32, vers: u32) -> crate::Result<Client> {
        Ok(Client::over(net::connect(addr, timeouts)?, prog, vers))
    }
}

impl<S: Read + Write> Client<S> {
    /// A client over a connected stream (its timeouts already set).
    pub fn over(stream: S, prog: u32, vers: u32) -> Client<S> {
        Client {
            stream: BufReader::with_capacity(64 * 1024, stream),
            prog,
            vers,
            xid: crate::rng::Rng::new().next_u64() as u32,
            max_record: DEFAULT_MAX_RECORD,
        }
    }

    /// The stream, e.g. to change its timeouts.
    pub fn stream(&self) -> &S {
        self.stream.get_ref()
    }

    /// Calls `proc_` with already-encoded arguments; returns the encoded
    /// results of a SUCCESS reply, or the refusal as `Error::Rejected`.
    pub fn call(&mut self, proc_: u32, args: &[u8]) -> Result<Vec<u8>> {
        self.xid = self.xid.wrapping_add(1);
        let xid = self.xid;
        let mut e = Encoder::new();
        CallHeader::new(xid, self.prog, self.vers, proc_).encode(&mut e);
        e.raw(args);
        let mut out = Vec::with_capacity(e.len() + 8);
        record::write_record(&mut out, e.as_bytes())?;
        let w = self.stream.get_mut();
        w.write_all(&out)?;
        w.flush()?;
        let reply = record::read_record(&mut self.stream, self.max_record)?.ok_or(Error::Closed)?;
        let reply = Reply::decode(&reply)?;
        if reply.xid != xid {
            return Err(Error::XidMismatch {
                sent: xid,
                got: reply.xid,
            });
        }
        reply.into_results()
    }

    /// Calls `proc_`, encoding the arguments with `args` and decoding the
    /// whole of the results with `results`.
    pub fn call_with<T>(
        &mut self,
        proc_: u32,
        args: impl FnOnce(&mut Encoder),
        results: impl FnOnce(&mut Decoder<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut e = Encoder::new();
        args(&mut e);
        let bytes = self.call(proc_, e.as_bytes())?;
        let mut d = Decoder::new(&bytes);
        let v = results(&mut d)?;
        d.finish()?;
        Ok(v)
    }

    /// Calls NULLPROC: a ping.
    pub fn null(&mut self) -> Result<()> {
        self.call_with(0, |_| {}, |_| Ok(()))
    }
}
