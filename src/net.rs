//! Sockets: connecting and binding with timeouts, the `listening on` readiness
//! line, and `serve`, a bounded accept loop that runs each connection on its
//! own thread while at most `limit` run at once.

use std::io::{self, Write};
use std::net::{Shutdown as SockShutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::shutdown::Shutdown;

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
        .map_err(|e| Error::Io(io::Error::new(e.kind(), format!("resolving {addr}: {e}"))))?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address"));
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeouts.connect) {
            Ok(s) => {
                configure(&s, timeouts)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(Error::Io(last))
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
    TcpListener::bind(addr)
        .map_err(|e| Error::Io(io::Error::new(e.kind(), format!("binding {addr}: {e}"))))
}

/// Prints the readiness line `listening on HOST:PORT` as the first line of
/// stdout and flushes it; scripts and tests wait on it.
pub fn announce(listener: &TcpListener) -> Result<SocketAddr> {
    let addr = listener.local_addr()?;
    let mut out = io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()?;
    Ok(addr)
}

/// Counts running connection threads and blocks new ones at the limit.
struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
    limit: usize,
}

impl Slots {
    /// Waits for a free slot; gives up (returning false) once shutdown starts.
    fn acquire(&self, shutdown: &Shutdown) -> bool {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        while *used >= self.limit {
            if shutdown.is_triggered() {
                return false;
            }
            used = self
                .freed
                .wait_timeout(used, Duration::from_millis(200))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *used += 1;
        true
    }

    fn release(&self) {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        *used = used.saturating_sub(1);
        self.freed.notify_one();
    }
}

/// Releases a slot when the connection thread ends, even by panic.
struct SlotGuard(Arc<Slots>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Default cap on simultaneous connections per daemon.
pub const DEFAULT_MAX_CONNS: usize = 256;

/// Accepts connections until `shutdown` triggers, running `handler` for
/// each on its own thread, with at most `limit` handlers at once (further
/// clients wait in the listen backlog). Each accepted stream is configured
/// with `timeouts` first. A handler only ever loses its own connection.
pub fn serve<F>(
    listener: TcpListener,
    shutdown: &Arc<Shutdown>,
    timeouts: Timeouts,
    limit: usize,
    handler: F,
) -> Result<()>
where
    F: Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
{
    let local = listener.local_addr()?;
    shutdown.wake_on(local);
    let slots = Arc::new(Slots {
        used: Mutex::new(0),
        freed: Condvar::new(),
        limit: limit.max(1),
    });
    let handler = Arc::new(handler);
    loop {
        if !slots.acquire(shutdown) {
            break;
        }
        let guard = SlotGuard(slots.clone());
        let accepted = listener.accept();
        if shutdown.is_triggered() {
            break;
        }
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                crate::diag!("accept on {local}: {}", crate::cli::describe_io(&e));
                // Out of descriptors or similar: back off instead of spinning.
                shutdown.wait(Duration::from_millis(100));
                continue;
            }
        };
        if let Err(e) = configure(&stream, &timeouts) {
            crate::diag!("{peer}: {}", crate::cli::describe_io(&e));
            continue;
        }
        let handler = handler.clone();
        let spawned = thread::Builder::new()
            .name(format!("conn {peer}"))
            .spawn(move || {
                let _guard = guard;
                handler(stream, peer);
            });
        if let Err(e) = spawned {
            crate::diag!("{peer}: cannot start a thread: {e}");
        }
    }
    Ok(())
}

/// Closes both directions of a stream, ignoring errors (it may be gone).
pub fn close(stream: &TcpStream) {
    let _ = stream.shutdown(SockShutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn serve_runs_handlers_and_stops_on_shutdown() {
        let listener = bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let s2 = shutdown.clone();
        let server = thread::spawn(move || {
            serve(listener, &s2, Timeouts::default(), 2, |mut s, _| {
                let mut b = [0u8; 1];
                if s.read_exact(&mut b).is_ok() {
                    let _ = s.write_all(&[b[0] + 1]);
                }
            })
        });
        for i in 0..5u8 {
            let mut c = connect(&addr.to_string(), &Timeouts::default()).unwrap();
            c.write_all(&[i]).unwrap();
            let mut b = [0u8; 1];
            c.read_exact(&mut b).unwrap();
            assert_eq!(b[0], i + 1);
        }
        shutdown.trigger();
        server.join().unwrap().unwrap();
    }

    #[test]
    fn host_port_brackets_ipv6() {
        assert_eq!(host_port("::1", 80), "[::1]:80");
        assert_eq!(host_port("localhost", 80), "localhost:80");
    }
}
