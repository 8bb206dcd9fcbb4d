//! Sockets: connecting and binding with timeouts, and `SharedStream`, one
//! socket shared by a buffered reader and writer without a second descriptor.

use std::io;
use std::net::{
    IpAddr, Shutdown as SockShutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs,
};
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
    let mut last = Error::setting(format!("{addr}: no address"));
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

/// A server's address as people write it, `HOST:PORT`: a host name or IP
/// (IPv6 in brackets, `[::1]:7000`) and a port. Parsed once where it is
/// typed; shown the same way (`Display`), so it can be handed to `connect`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    host: String,
    port: u16,
}

impl HostPort {
    /// `host` and `port` joined (no check of the host beyond non-empty).
    pub fn new(host: &str, port: u16) -> HostPort {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        HostPort {
            host: host.to_string(),
            port,
        }
    }

    /// Parses `HOST:PORT`. Errors read as sentences:
    /// `missing port in "127.0.0.1" (expected HOST:PORT)`.
    pub fn parse(s: &str) -> std::result::Result<HostPort, String> {
        match HostPort::parse_opt_port(s)? {
            (host, Some(port)) => Ok(HostPort { host, port }),
            (_, None) => Err(format!("missing port in {s:?} (expected HOST:PORT)")),
        }
    }

    /// Parses `HOST:PORT`, or `HOST` alone (port `None`), for clients whose
    /// server has a default port.
    pub fn parse_opt_port(s: &str) -> std::result::Result<(String, Option<u16>), String> {
        HostPort::split(s, false)
    }

    /// Checks an address to listen on, `HOST:PORT` where port 0 picks a
    /// free one; the address as given.
    pub fn parse_listen(s: &str) -> std::result::Result<String, String> {
        match HostPort::split(s, true)? {
            (_, Some(_)) => Ok(s.trim().to_string()),
            (_, None) => Err(format!(
                "missing port in {s:?} (expected HOST:PORT; port 0 picks a free one)"
            )),
        }
    }

    fn split(s: &str, zero_ok: bool) -> std::result::Result<(String, Option<u16>), String> {
        let t = s.trim();
        let expected = "(expected HOST:PORT)";
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            // [v6] or [v6]:port
            let Some((host, after)) = rest.split_once(']') else {
                return Err(format!("unclosed [ in {s:?} {expected}"));
            };
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(p) => (host, Some(p)),
                    None => return Err(format!("{s:?} is not an address {expected}")),
                },
            }
        } else if t.matches(':').count() > 1 {
            // A bare IPv6 address: no room for a port without brackets.
            if t.parse::<std::net::Ipv6Addr>().is_ok() {
                (t, None)
            } else {
                return Err(format!(
                    "{s:?} is not an address (an IPv6 address with a port goes in brackets: [::1]:7000)"
                ));
            }
        } else {
            match t.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (t, None),
            }
        };
        if host.is_empty() {
            return Err(format!("missing host in {s:?} {expected}"));
        }
        let port = match port {
            None => None,
            Some("") => return Err(format!("missing port in {s:?} {expected}")),
            Some(p) => match p.parse::<u16>() {
                Ok(0) if !zero_ok => {
                    return Err(format!("port 0 in {s:?}: give the server's port"));
                }
                Ok(n) => Some(n),
                Err(_) => return Err(format!("{p:?} is not a port number in {s:?} {expected}")),
            },
        };
        Ok((host.to_string(), port))
    }

    /// The host, without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&host_port(&self.host, self.port))
    }
}

impl std::str::FromStr for HostPort {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<HostPort, String> {
        HostPort::parse(s)
    }
}

/// The address to give a client for a member of this server registered at
/// `member`. A member that registered from loopback (or as unspecified) is
/// on this host; a client that came in on `via` (the local address of its
/// own connection, an address of this host it can reach) reaches that
/// member at `via`'s IP. Every other address is handed out as it is.
pub fn reachable_ip(member: IpAddr, via: IpAddr) -> IpAddr {
    let member = member.to_canonical();
    let via = via.to_canonical();
    if (member.is_loopback() || member.is_unspecified())
        && !via.is_loopback()
        && !via.is_unspecified()
    {
        via
    } else {
        member
    }
}

/// [`reachable_ip`] for a member's `HOST:PORT` as the ring and the tracker
/// keep it. A host name (not an IP) is handed out as it is.
pub fn reachable_addr(member: &str, via: IpAddr) -> String {
    let Ok(a) = member.parse::<SocketAddr>() else {
        return member.to_string();
    };
    let ip = reachable_ip(a.ip(), via);
    if ip == a.ip().to_canonical() {
        member.to_string()
    } else {
        host_port(&ip.to_string(), a.port())
    }
}

/// Why a member listening on `listen`, which the others are told to reach
/// at `seen_as`, cannot be reached there, if it cannot: it listens on one
/// interface and is known by another (loopback against a LAN address, or
/// one LAN address against another).
pub fn unreachable_listen(listen: SocketAddr, seen_as: IpAddr) -> Option<String> {
    let (l, s) = (listen.ip().to_canonical(), seen_as.to_canonical());
    if l.is_unspecified() || s.is_unspecified() || l == s || (l.is_loopback() && s.is_loopback()) {
        return None;
    }
    let who = if l.is_loopback() {
        "other hosts"
    } else {
        "the others"
    };
    Some(format!(
        "listening on {l} only, but known to the others as {s}: {who} cannot reach it"
    ))
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
    fn addresses_parse_as_host_and_port_with_sentences_for_errors() {
        let ok = |s: &str| HostPort::parse(s).unwrap().to_string();
        assert_eq!(ok("127.0.0.1:7000"), "127.0.0.1:7000");
        assert_eq!(ok("localhost:80"), "localhost:80");
        assert_eq!(ok("[::1]:7000"), "[::1]:7000");
        assert_eq!(ok(" h:1 "), "h:1");
        assert_eq!(HostPort::parse("[::1]:7").unwrap().host(), "::1");
        let err = |s: &str| HostPort::parse(s).unwrap_err();
        assert_eq!(
            err("127.0.0.1"),
            "missing port in \"127.0.0.1\" (expected HOST:PORT)"
        );
        assert_eq!(err("h:"), "missing port in \"h:\" (expected HOST:PORT)");
        assert_eq!(err(":7"), "missing host in \":7\" (expected HOST:PORT)");
        assert_eq!(err("::1"), "missing port in \"::1\" (expected HOST:PORT)");
        assert!(err("h:x").starts_with("\"x\" is not a port number"));
        assert!(err("h:70000").starts_with("\"70000\" is not a port number"));
        assert!(err("h:0").starts_with("port 0"));
        assert!(err("a:b:c").contains("brackets"));
        assert!(err("[::1").contains("unclosed"));
        assert_eq!(HostPort::parse_listen("0.0.0.0:0").unwrap(), "0.0.0.0:0");
        assert_eq!(HostPort::parse_listen("[::]:7000").unwrap(), "[::]:7000");
        assert!(
            HostPort::parse_listen("127.0.0.1")
                .unwrap_err()
                .starts_with("missing port in \"127.0.0.1\"")
        );
        assert!(HostPort::parse_listen("h:x").is_err());
        assert_eq!(
            HostPort::parse_opt_port("srv").unwrap(),
            ("srv".to_string(), None)
        );
        assert_eq!(
            HostPort::parse_opt_port("[fe80::1]").unwrap(),
            ("fe80::1".to_string(), None)
        );
    }

    #[test]
    fn host_port_brackets_ipv6() {
        assert_eq!(host_port("::1", 80), "[::1]:80");
        assert_eq!(host_port("localhost", 80), "localhost:80");
    }

    #[test]
    fn loopback_members_are_handed_out_at_the_address_the_client_came_in_on() {
        let lan: IpAddr = "10.77.0.1".parse().unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        // A client on another host came in on the LAN address.
        assert_eq!(reachable_addr("127.0.0.1:4000", lan), "10.77.0.1:4000");
        assert_eq!(reachable_addr("0.0.0.0:4000", lan), "10.77.0.1:4000");
        assert_eq!(reachable_addr("[::1]:4000", lan), "10.77.0.1:4000");
        assert_eq!(
            reachable_addr("[::1]:4000", "fd00::1".parse().unwrap()),
            "[fd00::1]:4000"
        );
        // IPv4-mapped connections count as IPv4.
        assert_eq!(
            reachable_addr("127.0.0.1:4000", "::ffff:10.77.0.1".parse().unwrap()),
            "10.77.0.1:4000"
        );
        // A client on this host keeps loopback; other members are as they are.
        assert_eq!(reachable_addr("127.0.0.1:4000", lo), "127.0.0.1:4000");
        assert_eq!(reachable_addr("10.77.0.9:4000", lan), "10.77.0.9:4000");
        assert_eq!(reachable_addr("10.77.0.9:4000", lo), "10.77.0.9:4000");
        assert_eq!(reachable_addr("name:4000", lan), "name:4000");
        assert_eq!(reachable_ip(lo, lan), lan);
    }

    #[test]
    fn a_listener_on_one_interface_known_by_another_is_unreachable() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(unreachable_listen(at("0.0.0.0:1"), ip("10.0.0.1")).is_none());
        assert!(unreachable_listen(at("127.0.0.1:1"), ip("127.0.0.1")).is_none());
        assert!(unreachable_listen(at("10.0.0.1:1"), ip("10.0.0.1")).is_none());
        assert!(unreachable_listen(at("127.0.0.1:1"), ip("10.0.0.1")).is_some());
        assert!(unreachable_listen(at("10.0.0.2:1"), ip("10.0.0.1")).is_some());
        assert!(unreachable_listen(at("10.0.0.2:1"), ip("127.0.0.1")).is_some());
    }
}
