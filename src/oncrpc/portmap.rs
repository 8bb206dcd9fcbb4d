//! The rpcbind client: portmapper program 100000 version 2 (GETPORT, SET,
//! UNSET, DUMP), and [`Registration`], which registers a TCP service with
//! the local rpcbind (UNSET, then SET) and unregisters it when dropped.
//!
//! Registration goes through rpcbind's local socket when it has one (there
//! rpcbind knows our user and lets us replace our own registrations), else
//! through TCP port 111 on the loopback address.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::client::Client;
use super::{Error, Result};
use crate::net::{self, Timeouts};

/// The portmapper's program number.
pub const PMAP_PROG: u32 = 100_000;
/// The portmapper version spoken here.
pub const PMAP_VERS: u32 = 2;
/// The portmapper's well-known port.
pub const PMAP_PORT: u16 = 111;
/// `prot` value of TCP.
pub const IPPROTO_TCP: u32 = 6;
/// `prot` value of UDP.
pub const IPPROTO_UDP: u32 = 17;
/// rpcbind's local socket.
pub const LOCAL_SOCKET: &str = "/run/rpcbind.sock";

const PROC_SET: u32 = 1;
const PROC_UNSET: u32 = 2;
const PROC_GETPORT: u32 = 3;
const PROC_DUMP: u32 = 4;

/// Entries DUMP may return before we call the list garbage.
const MAX_DUMP: usize = 65_536;

/// How long a talk with rpcbind may take.
pub const RPCBIND_TIMEOUT: Duration = Duration::from_secs(3);

/// One portmapper mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub prog: u32,
    pub vers: u32,
    pub prot: u32,
    pub port: u32,
}

impl Mapping {
    /// A TCP mapping.
    pub fn tcp(prog: u32, vers: u32, port: u16) -> Mapping {
        Mapping {
            prog,
            vers,
            prot: IPPROTO_TCP,
            port: port.into(),
        }
    }

    fn encode(&self, e: &mut super::Encoder) {
        e.u32(self.prog)
            .u32(self.vers)
            .u32(self.prot)
            .u32(self.port);
    }
}

/// The stream to rpcbind: its local socket or TCP.
#[derive(Debug)]
pub enum Transport {
    Local(UnixStream),
    Tcp(TcpStream),
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Local(s) => s.read(buf),
            Transport::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Local(s) => s.write(buf),
            Transport::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A connection to a portmapper.
#[derive(Debug)]
pub struct Portmapper {
    client: Client<Transport>,
    /// Where it is, for messages.
    pub at: String,
}

fn unreachable(at: &str, e: impl std::fmt::Display) -> Error {
    Error::Rpcbind(format!("not reachable at {at}: {e}"))
}

impl Portmapper {
    /// The local rpcbind: its local socket if there is one, else
    /// 127.0.0.1:111.
    pub fn local() -> Result<Portmapper> {
        if Path::new(LOCAL_SOCKET).exists()
            && let Ok(s) = UnixStream::connect(LOCAL_SOCKET)
        {
            s.set_read_timeout(Some(RPCBIND_TIMEOUT))?;
            s.set_write_timeout(Some(RPCBIND_TIMEOUT))?;
            return Ok(Portmapper {
                client: Client::over(Transport::Local(s), PMAP_PROG, PMAP_VERS),
                at: LOCAL_SOCKET.to_string(),
            });
        }
        Portmapper::on_host("127.0.0.1")
    }

    /// The portmapper on `host`, port 111, over TCP.
    pub fn on_host(host: &str) -> Result<Portmapper> {
        Portmapper::at_addr(&net::host_port(host, PMAP_PORT))
    }

    /// A portmapper at `addr` (`host:port`), over TCP.
    pub fn at_addr(addr: &str) -> Result<Portmapper> {
        let at = addr.to_string();
        let t = Timeouts {
            connect: RPCBIND_TIMEOUT,
            io: RPCBIND_TIMEOUT,
        };
        let s = net::connect(&at, &t).map_err(|e| unreachable(&at, e))?;
        Ok(Portmapper {
            client: Client::over(Transport::Tcp(s), PMAP_PROG, PMAP_VERS),
            at,
        })
    }

    fn bool_call(&mut self, proc_: u32, m: &Mapping) -> Result<bool> {
        self.client
            .call_with(proc_, |e| m.encode(e), |d| d.bool("result"))
    }

    /// PMAPPROC_SET: true if the mapping was made.
    pub fn set(&mut self, m: &Mapping) -> Result<bool> {
        self.bool_call(PROC_SET, m)
    }

    /// PMAPPROC_UNSET of every mapping of (prog, vers).
    pub fn unset(&mut self, prog: u32, vers: u32) -> Result<bool> {
        self.bool_call(
            PROC_UNSET,
            &Mapping {
                prog,
                vers,
                prot: 0,
                port: 0,
            },
        )
    }

    /// PMAPPROC_GETPORT: the port of (prog, vers) over TCP, `None` if not
    /// registered.
    pub fn getport(&mut self, prog: u32, vers: u32) -> Result<Option<u16>> {
        let port = self.client.call_with(
            PROC_GETPORT,
            |e| Mapping::tcp(prog, vers, 0).encode(e),
            |d| d.u32("port"),
        )?;
        Ok(u16::try_from(port).ok().filter(|p| *p != 0))
    }

    /// PMAPPROC_DUMP: every mapping.
    pub fn dump(&mut self) -> Result<Vec<Mapping>> {
        self.client.call_with(PROC_DUMP, |_| {}, decode_dump)
    }
}

/// The results of PMAPPROC_DUMP: a `pmaplist`, at most `MAX_DUMP` long.
pub fn decode_dump(d: &mut super::Decoder<'_>) -> Result<Vec<Mapping>> {
    let mut list = Vec::new();
    while d.bool("pmaplist")? {
        if list.len() >= MAX_DUMP {
            return Err(Error::TooLong {
                what: "pmaplist",
                len: list.len() as u64,
                max: MAX_DUMP as u64,
            });
        }
        list.push(Mapping {
            prog: d.u32("prog")?,
            vers: d.u32("vers")?,
            prot: d.u32("prot")?,
            port: d.u32("port")?,
        });
    }
    Ok(list)
}

/// A `pmaplist` as PMAPPROC_DUMP's results.
pub fn encode_dump(list: &[Mapping], e: &mut super::Encoder) {
    for m in list {
        e.bool(true);
        m.encode(e);
    }
    e.bool(false);
}

/// Asks the portmapper on `host` for the TCP port of (prog, vers).
pub fn getport(host: &str, prog: u32, vers: u32) -> Result<u16> {
    let mut pm = Portmapper::on_host(host)?;
    pm.getport(prog, vers)?.ok_or_else(|| {
        Error::Rpcbind(format!(
            "program {prog} version {vers} is not registered at {}",
            pm.at
        ))
    })
}

/// Which portmapper a registration talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// The local rpcbind (its local socket, else 127.0.0.1:111).
    Local,
    /// A portmapper at this `host:port` over TCP.
    Tcp(String),
}

impl Via {
    fn connect(&self) -> Result<Portmapper> {
        match self {
            Via::Local => Portmapper::local(),
            Via::Tcp(addr) => Portmapper::at_addr(addr),
        }
    }
}

/// A TCP service registered with the local rpcbind; unregistered on drop.
#[derive(Debug)]
pub struct Registration {
    pub mapping: Mapping,
    via: Via,
}

impl Registration {
    /// Registers (prog, vers, TCP, port) with the local rpcbind: UNSET,
    /// then SET. If SET returns FALSE the error says who holds the
    /// registration.
    pub fn register(prog: u32, vers: u32, port: u16) -> Result<Registration> {
        Registration::register_via(Via::Local, prog, vers, port)
    }

    /// Registers with the portmapper `via`.
    pub fn register_via(via: Via, prog: u32, vers: u32, port: u16) -> Result<Registration> {
        let mapping = Mapping::tcp(prog, vers, port);
        let mut pm = via.connect()?;
        // FALSE only means there was nothing to remove.
        pm.unset(prog, vers)?;
        if pm.set(&mapping)? {
            return Ok(Registration { mapping, via });
        }
        let holder = match pm.dump() {
            Ok(list) => list
                .iter()
                .filter(|m| m.prog == prog && m.vers == vers)
                .map(|m| {
                    let prot = match m.prot {
                        IPPROTO_TCP => "tcp".to_string(),
                        IPPROTO_UDP => "udp".to_string(),
                        p => format!("protocol {p}"),
                    };
                    format!("{prot} port {}", m.port)
                })
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => format!("unknown ({e})"),
        };
        let holder = if holder.is_empty() {
            "nobody listed".to_string()
        } else {
            holder
        };
        Err(Error::Rpcbind(format!(
            "{} refused to register program {prog} version {vers}: already held by {holder}",
            pm.at
        )))
    }

    /// Registers, or says in one line on stderr why not and returns `None`
    /// (no rpcbind running, registration held by another server): the
    /// service then serves on its port all the same.
    pub fn register_or_warn(prog: u32, vers: u32, port: u16) -> Option<Registration> {
        match Registration::register(prog, vers, port) {
            Ok(r) => Some(r),
            Err(e) => {
                crate::diag!("not registered with rpcbind, serving on port {port} only: {e}");
                None
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Best effort: rpcbind may be gone by now.
        if let Ok(mut pm) = self.via.connect() {
            let _ = pm.unset(self.mapping.prog, self.mapping.vers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oncrpc::server::{self, Call, Fault, Program};
    use crate::oncrpc::{Decoder, Encoder};
    use crate::server::{Limits, Server};
    use crate::shutdown::Shutdown;
    use std::sync::Arc;

    /// A portmapper whose SET always fails: program 7 v1 is held on 4242.
    struct Stubborn;

    impl Program for Stubborn {
        fn prog(&self) -> u32 {
            PMAP_PROG
        }
        fn vers(&self) -> u32 {
            PMAP_VERS
        }
        fn dispatch(&self, call: &mut Call<'_>, r: &mut Encoder) -> Result<(), Fault> {
            let mapping = |d: &mut Decoder<'_>| {
                for what in ["prog", "vers", "prot", "port"] {
                    d.u32(what)?;
                }
                Ok(())
            };
            match call.proc_ {
                PROC_SET => {
                    call.args(mapping)?;
                    r.bool(false);
                }
                PROC_UNSET => {
                    call.args(mapping)?;
                    r.bool(true);
                }
                PROC_DUMP => {
                    call.args(|_| Ok(()))?;
                    for m in [Mapping::tcp(7, 1, 4242), Mapping::tcp(8, 1, 1)] {
                        r.bool(true);
                        m.encode(r);
                    }
                    r.bool(false);
                }
                _ => return Err(Fault::ProcUnavail),
            }
            Ok(())
        }
    }

    #[test]
    fn a_refused_set_names_the_holder() {
        let shutdown = Shutdown::new();
        let srv = Server::bind("127.0.0.1:0", Limits::default(), shutdown.clone()).unwrap();
        let addr = srv.local_addr().to_string();
        let t = std::thread::spawn(move || server::serve(srv, Arc::new(Stubborn), 1 << 16));
        let err = Registration::register_via(Via::Tcp(addr), 7, 1, 5555).unwrap_err();
        assert!(
            err.to_string().contains("already held by tcp port 4242"),
            "{err}"
        );
        // No portmapper at all: a clear error, no panic, no wait.
        let err =
            Registration::register_via(Via::Tcp("127.0.0.1:1".into()), 7, 1, 5555).unwrap_err();
        assert!(
            err.to_string().contains("not reachable at 127.0.0.1:1"),
            "{err}"
        );
        shutdown.trigger();
        t.join().unwrap().unwrap();
    }

    #[test]
    fn register_getport_unset_with_the_local_rpcbind() {
        if Portmapper::local().is_err() {
            eprintln!("skipped: no rpcbind running (scripts/install-deps.sh rpc starts one)");
            return;
        }
        // A transient program number of our own.
        let prog = 0x4000_0000 | (std::process::id() & 0x0fff_ffff);
        let reg = Registration::register(prog, 1, 4321).unwrap();
        assert_eq!(getport("127.0.0.1", prog, 1).unwrap(), 4321);
        let mut pm = Portmapper::local().unwrap();
        assert!(pm.dump().unwrap().contains(&Mapping::tcp(prog, 1, 4321)));
        drop(reg);
        assert!(matches!(
            getport("127.0.0.1", prog, 1),
            Err(Error::Rpcbind(_))
        ));
    }
}
