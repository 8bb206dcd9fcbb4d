//! The HTTP tracker client (BEP 3 announce, BEP 23 compact peer lists, or
//! the dictionary list): one `GET` per announce, the reply read whole
//! (bounded) and parsed by the pure [`parse_reply`].

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::error::{Error, Result, Role, Stage};
use crate::net::{self, Timeouts};

use super::bencode::{self, Value};
use super::metainfo::InfoHash;

/// Largest tracker reply read.
const MAX_REPLY: u64 = 1024 * 1024;

/// What an announce says.
#[derive(Debug, Clone)]
pub(crate) struct Announce<'a> {
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    /// `started`, `completed`, `stopped`, or none for a regular one.
    pub event: Option<&'a str>,
    pub numwant: u32,
}

/// A tracker's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    /// Seconds until the next announce.
    pub interval: u32,
    pub peers: Vec<SocketAddr>,
}

/// Percent-encodes every byte outside the unreserved set (RFC 3986).
pub(crate) fn url_encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// Decodes `%XX` escapes (a `+` stays a `+`); `None` on a bad escape.
pub(crate) fn url_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// `http://HOST:PORT/PATH` split into `HOST:PORT` (port 80 if none) and
/// the path with any query.
pub(crate) fn split_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| Error::setting(format!("{url}: only http:// trackers are spoken")))?;
    let (host, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if host.is_empty() {
        return Err(Error::setting(format!("{url}: no host")));
    }
    let host = if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    Ok((host, path.to_string()))
}

/// Announces to the tracker at `url`.
pub(crate) fn announce(url: &str, a: &Announce<'_>, timeouts: &Timeouts) -> Result<Reply> {
    let (host, path) = split_url(url)?;
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut target = format!(
        "{path}{sep}info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact=1&numwant={}",
        url_encode(&a.info_hash.0),
        url_encode(&a.peer_id),
        a.port,
        a.uploaded,
        a.downloaded,
        a.left,
        a.numwant
    );
    if let Some(e) = a.event {
        target.push_str("&event=");
        target.push_str(e);
    }
    let body = get(&host, &target, timeouts)?;
    parse_reply(&body)
}

/// `GET target` from `host`, the reply's body if its status is 200.
fn get(host: &str, target: &str, timeouts: &Timeouts) -> Result<Vec<u8>> {
    let mut s = net::connect(host, timeouts)?;
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: peerkit\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.take(MAX_REPLY).read_to_end(&mut raw)?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    let head = match r.parse(&raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(Error::Truncated),
        Err(e) => {
            return Err(Error::invalid(
                Stage::Reply,
                format!("bad HTTP from the tracker: {e}"),
            ));
        }
    };
    if r.code != Some(200) {
        return Err(Error::remote(
            Role::Tracker,
            format!("HTTP {} {}", r.code.unwrap_or(0), r.reason.unwrap_or("")),
        ));
    }
    let mut body = raw[head..].to_vec();
    if let Some(len) = r
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
    {
        body.truncate(len);
    }
    Ok(body)
}

/// Parses a tracker's announce reply: a `failure reason` becomes
/// `Error::Remote`; peers come compact (6 bytes each) or as dicts.
pub(crate) fn parse_reply(body: &[u8]) -> Result<Reply> {
    let v = bencode::decode(body)?;
    let d = bencode::as_dict(&v, "tracker reply")?;
    if let Ok(why) = bencode::bytes(d, "failure reason") {
        return Err(Error::remote(Role::Tracker, String::from_utf8_lossy(why)));
    }
    let interval = bencode::int(d, "interval").unwrap_or(1800).clamp(1, 86_400) as u32;
    let mut peers = Vec::new();
    match bencode::get(d, "peers") {
        Some(Value::Bytes(b)) => {
            if b.len() % 6 != 0 {
                return Err(Error::Decode(
                    "compact peers not a multiple of 6 bytes".into(),
                ));
            }
            for c in b.chunks_exact(6) {
                let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
                let port = u16::from_be_bytes([c[4], c[5]]);
                peers.push(SocketAddr::new(IpAddr::V4(ip), port));
            }
        }
        Some(Value::List(l)) => {
            for p in l {
                let Ok(pd) = bencode::as_dict(p, "peer") else {
                    continue;
                };
                let (Ok(ip), Ok(port)) = (bencode::string(pd, "ip"), bencode::int(pd, "port"))
                else {
                    continue;
                };
                if let (Ok(ip), Ok(port)) = (ip.parse::<IpAddr>(), u16::try_from(port)) {
                    peers.push(SocketAddr::new(ip, port));
                }
            }
        }
        Some(_) => {
            return Err(Error::Decode(
                "\"peers\" is neither a string nor a list".into(),
            ));
        }
        None => {}
    }
    peers.retain(|p| p.port() != 0);
    Ok(Reply { interval, peers })
}

/// How long to wait before the next announce after one that failed.
pub(crate) const RETRY: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_dict_replies_parse() {
        let r = parse_reply(
            b"d8:intervali30e5:peers12:\x7f\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x50e",
        )
        .unwrap();
        assert_eq!(r.interval, 30);
        assert_eq!(
            r.peers,
            vec![
                "127.0.0.1:6881".parse().unwrap(),
                "10.0.0.2:80".parse().unwrap()
            ]
        );
        let r = parse_reply(b"d8:intervali5e5:peersld2:ip9:127.0.0.17:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti7000eeee").unwrap();
        assert_eq!(r.peers, vec!["127.0.0.1:7000".parse().unwrap()]);
        let e = parse_reply(b"d14:failure reason6:no waye").unwrap_err();
        assert!(
            matches!(&e, Error::Remote { from: Role::Tracker, message } if message == "no way"),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "tracker: no way");
        assert!(parse_reply(b"d5:peers5:abcdee").is_err());
        assert!(parse_reply(b"garbage").is_err());
    }

    #[test]
    fn urls_split_and_bytes_escape() {
        assert_eq!(
            split_url("http://127.0.0.1:6969/announce").unwrap(),
            ("127.0.0.1:6969".into(), "/announce".into())
        );
        assert_eq!(
            split_url("http://h/a?x=1").unwrap(),
            ("h:80".into(), "/a?x=1".into())
        );
        assert!(matches!(
            split_url("udp://h:1"),
            Err(Error::Local(crate::error::Local::Setting(_)))
        ));
        let raw = [0u8, b'a', 0xff, b'~', b' '];
        assert_eq!(url_encode(&raw), "%00a%FF~%20");
        assert_eq!(url_decode(&url_encode(&raw)).unwrap(), raw);
        assert!(url_decode("%zz").is_none());
    }
}
