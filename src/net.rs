//! Sockets: connecting and binding with timeouts, and `SharedStream`, one
//! socket shared by a buffered reader and writer without a second descriptor.

use std::io;
use std::net::{Shutdown as SockShutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result, ResultExt};

/// Connect and I/O timeouts applied to every socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// How long a connect may take.
    pub connect: Duration,
    /// How long one read or write may block.
    pub io: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            io: Duration::from_secs(30),
        }
    }
}

impl Timeouts {
    /// Both timeouts set to `secs` seconds (at least one second for I/O).
    pub fn secs(secs: u64) -> Timeouts {
        let d = Duration::from_secs(secs.max(1));
        Timeouts { connect: d, io: d }
    }
}

/// Sets read and write timeouts and disables Nagle's algorithm.
pub fn configure(stream: &TcpStream, timeouts: &Timeouts) -> io::Result<()> {
    stream.set_read_timeout(Some(timeouts.io))?;
    stream.set_write_timeout(Some(timeouts.io))?;
    stream.set_nodelay(true)?;
    Ok(())
}

/// Resolves `addr` (`host:port`) and connects to the first address that
/// answers within the connect timeout. The stream comes back configured.
pub fn connect(addr: &str, timeouts: &Timeouts) -> Result<TcpStream> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .doing(|| format!("resolving {addr}"))?
        .collect();
    let mut last = Error::Local(format!("{addr}: no address"));
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeouts.connect) {
            Ok(s) => {
                configure(&s, timeouts)?;
                return Ok(s);
            }
            Err(e) => last = Error::Io(e),
        }
    }
    Err(last)
}

/// Connects to an already-resolved address.
pub fn connect_addr(addr: SocketAddr, timeouts: &Timeouts) -> Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeouts.connect)?;
    configure(&s, timeouts)?;
    Ok(s)
}

/// `host:port` joined, bracketing IPv6 literals.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Binds a listener on `addr` (`host:port`, port 0 picks a free one).
pub fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).doing(|| format!("binding {addr}"))
}

/// One socket shared by the halves of a buffered connection (and by the
/// server core, which may shut it down): reads and writes go through
/// `&TcpStream`, so no descriptor is duplicated.
#[derive(Debug, Clone)]
pub struct SharedStream(Arc<TcpStream>);

impl SharedStream {
    pub fn new(stream: Arc<TcpStream>) -> SharedStream {
        SharedStream(stream)
    }

    /// The socket itself (for sendfile, timeouts, addresses).
    pub fn tcp(&self) -> &TcpStream {
        &self.0
    }
}

impl io::Read for SharedStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

impl io::Write for SharedStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        (&*self.0).write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Closes both directions of a stream, ignoring errors (it may be gone).
pub fn close(stream: &TcpStream) {
    let _ = stream.shutdown(SockShutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_brackets_ipv6() {
        assert_eq!(host_port("::1", 80), "[::1]:80");
        assert_eq!(host_port("localhost", 80), "localhost:80");
    }
}
