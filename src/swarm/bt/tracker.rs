//! The HTTP tracker `bt-tracker --announce` serves beside its own protocol
//! (BEP 3 `GET /announce`, BEP 23 compact peer lists or dictionary lists,
//! BEP 48 `GET /scrape`), on the server core and the shared HTTP request
//! reader. A bad request gets a bencoded `failure reason`. Members that
//! stop announcing are forgotten after three intervals.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::http::{self, Handled, Reply};
use crate::server::Server;

use super::announce::url_decode;
use super::bencode::{self, Value, b, dict};
use super::metainfo::InfoHash;

/// Peers handed out when the announce does not say `numwant`.
const DEFAULT_NUMWANT: usize = 50;
/// Most peers handed out.
const MAX_NUMWANT: usize = 200;
/// Most torrents tracked, and most members per torrent.
const MAX_TORRENTS: usize = 10_000;
const MAX_MEMBERS: usize = 10_000;

#[derive(Debug, Clone)]
struct Member {
    addr: SocketAddr,
    left: u64,
    seen: Instant,
}

#[derive(Debug, Default)]
struct Swarm {
    members: HashMap<[u8; 20], Member>,
    /// `event=completed` announces.
    downloaded: u64,
}

/// The HTTP tracker's state.
#[derive(Debug)]
pub(crate) struct HttpTracker {
    swarms: Mutex<HashMap<InfoHash, Swarm>>,
    interval: Duration,
    quiet: bool,
}

/// A parsed announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AnnounceQuery {
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
    pub port: u16,
    pub left: u64,
    pub compact: bool,
    pub no_peer_id: bool,
    pub numwant: usize,
    pub event: Option<String>,
}

fn params(q: &str) -> Vec<(String, Vec<u8>)> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Some((String::from_utf8(url_decode(k)?).ok()?, url_decode(v)?))
        })
        .collect()
}

fn twenty(v: &[u8], what: &str) -> std::result::Result<[u8; 20], String> {
    v.try_into()
        .map_err(|_| format!("{what} must be 20 bytes, not {}", v.len()))
}

/// Parses an announce's query string, naming what is wrong.
pub(crate) fn parse_announce(q: &str) -> std::result::Result<AnnounceQuery, String> {
    let p = params(q);
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_slice());
    let num = |k: &str| -> std::result::Result<Option<u64>, String> {
        match get(k) {
            None => Ok(None),
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or_else(|| format!("{k} is not a number")),
        }
    };
    let info_hash = InfoHash(twenty(
        get("info_hash").ok_or("missing info_hash")?,
        "info_hash",
    )?);
    let peer_id = twenty(get("peer_id").ok_or("missing peer_id")?, "peer_id")?;
    let port = num("port")?.ok_or("missing port")?;
    let port = u16::try_from(port)
        .ok()
        .filter(|&p| p != 0)
        .ok_or("port must be from 1 to 65535")?;
    let event = match get("event") {
        None | Some(b"") | Some(b"empty") => None,
        Some(e @ (b"started" | b"completed" | b"stopped")) => {
            Some(String::from_utf8_lossy(e).into_owned())
        }
        Some(e) => return Err(format!("unknown event {:?}", String::from_utf8_lossy(e))),
    };
    Ok(AnnounceQuery {
        info_hash,
        peer_id,
        port,
        left: num("left")?.unwrap_or(0),
        compact: get("compact") == Some(b"1"),
        no_peer_id: get("no_peer_id") == Some(b"1"),
        numwant: num("numwant")?.map_or(DEFAULT_NUMWANT, |n| n.min(MAX_NUMWANT as u64) as usize),
        event,
    })
}

fn failure(why: &str) -> Reply {
    let body = bencode::encode(&dict([("failure reason", b(why))]));
    Reply::new("200 OK", "text/plain", body)
}

impl HttpTracker {
    pub(crate) fn new(interval: Duration, quiet: bool) -> Arc<HttpTracker> {
        Arc::new(HttpTracker {
            swarms: Mutex::new(HashMap::new()),
            interval: interval.max(Duration::from_secs(1)),
            quiet,
        })
    }

    /// Serves `server` until shutdown.
    pub(crate) fn serve(self: Arc<Self>, server: Server) -> Result<()> {
        server.serve(move |session| {
            let peer = session.peer();
            let _ = http::serve(&session, 0, |req| {
                Ok(Handled::Reply(self.route(req, peer.ip())))
            });
        })
    }

    fn route(&self, req: &http::Request, ip: IpAddr) -> Reply {
        let q = req.query.as_deref().unwrap_or("");
        match (req.method.as_str(), req.path.as_str()) {
            ("GET" | "HEAD", "/announce") => match parse_announce(q) {
                Ok(a) => self.announce(&a, ip),
                Err(why) => failure(&why),
            },
            ("GET" | "HEAD", "/scrape") => self.scrape(q),
            _ => Reply::text(
                "404 Not Found",
                "this tracker serves /announce and /scrape\n",
            ),
        }
    }

    /// Records an announce and answers it with other members.
    pub(crate) fn announce(&self, a: &AnnounceQuery, ip: IpAddr) -> Reply {
        let now = Instant::now();
        let ttl = self.interval * 3;
        let mut swarms = self.swarms.lock().unwrap_or_else(PoisonError::into_inner);
        if !swarms.contains_key(&a.info_hash) && swarms.len() >= MAX_TORRENTS {
            return failure("this tracker is full");
        }
        let swarm = swarms.entry(a.info_hash).or_default();
        swarm
            .members
            .retain(|_, m| now.duration_since(m.seen) < ttl);
        let addr = SocketAddr::new(ip, a.port);
        match a.event.as_deref() {
            Some("stopped") => {
                swarm.members.remove(&a.peer_id);
            }
            _ => {
                if !swarm.members.contains_key(&a.peer_id) && swarm.members.len() >= MAX_MEMBERS {
                    return failure("this torrent has too many peers");
                }
                if a.event.as_deref() == Some("completed") {
                    swarm.downloaded += 1;
                }
                swarm.members.insert(
                    a.peer_id,
                    Member {
                        addr,
                        left: a.left,
                        seen: now,
                    },
                );
            }
        }
        let complete = swarm.members.values().filter(|m| m.left == 0).count();
        let incomplete = swarm.members.len() - complete;
        let others: Vec<(&[u8; 20], &Member)> = swarm
            .members
            .iter()
            .filter(|(id, _)| **id != a.peer_id)
            // A seed needs no other seeds.
            .filter(|(_, m)| a.left > 0 || m.left > 0)
            .take(a.numwant)
            .collect();
        let peers = if a.compact {
            let mut v = Vec::with_capacity(others.len() * 6);
            for (_, m) in &others {
                if let IpAddr::V4(ip4) = m.addr.ip() {
                    v.extend_from_slice(&ip4.octets());
                    v.extend_from_slice(&m.addr.port().to_be_bytes());
                }
            }
            b(v)
        } else {
            Value::List(
                others
                    .iter()
                    .map(|(id, m)| {
                        let mut p = vec![
                            ("ip", b(m.addr.ip().to_string())),
                            ("port", Value::Integer(i64::from(m.addr.port()))),
                        ];
                        if !a.no_peer_id {
                            p.push(("peer id", b(id.to_vec())));
                        }
                        dict(p)
                    })
                    .collect(),
            )
        };
        let n = others.len();
        drop(swarms);
        if !self.quiet {
            crate::event!(
                "announce {} from {addr}{}: {n} peers given",
                a.info_hash,
                a.event
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
        }
        let secs = self.interval.as_secs() as i64;
        let body = bencode::encode(&dict([
            ("complete", Value::Integer(complete as i64)),
            ("incomplete", Value::Integer(incomplete as i64)),
            ("interval", Value::Integer(secs)),
            ("min interval", Value::Integer(secs)),
            ("peers", peers),
        ]));
        Reply::new("200 OK", "text/plain", body)
    }

    /// Counts for the torrents asked about (every torrent if none is named).
    pub(crate) fn scrape(&self, q: &str) -> Reply {
        let mut wanted = Vec::new();
        for (k, v) in params(q) {
            if k == "info_hash" {
                match twenty(&v, "info_hash") {
                    Ok(h) => wanted.push(InfoHash(h)),
                    Err(why) => return failure(&why),
                }
            }
        }
        let now = Instant::now();
        let ttl = self.interval * 3;
        let swarms = self.swarms.lock().unwrap_or_else(PoisonError::into_inner);
        let hashes: Vec<InfoHash> = if wanted.is_empty() {
            swarms.keys().copied().collect()
        } else {
            wanted
        };
        let mut files = bencode::Dict::new();
        for h in hashes {
            let Some(s) = swarms.get(&h) else { continue };
            let live: Vec<&Member> = s
                .members
                .values()
                .filter(|m| now.duration_since(m.seen) < ttl)
                .collect();
            let complete = live.iter().filter(|m| m.left == 0).count();
            files.insert(
                std::borrow::Cow::Owned(h.0.to_vec()),
                dict([
                    ("complete", Value::Integer(complete as i64)),
                    ("downloaded", Value::Integer(s.downloaded as i64)),
                    ("incomplete", Value::Integer((live.len() - complete) as i64)),
                ]),
            );
        }
        let body = bencode::encode(&dict([("files", Value::Dict(files))]));
        Reply::new("200 OK", "text/plain", body)
    }
}

/// Binds `addr` for the HTTP tracker, prints `announce on
/// http://HOST:PORT/announce`, and serves on a thread of its own.
pub(crate) fn start(
    addr: &str,
    limits: crate::server::Limits,
    shutdown: Arc<crate::shutdown::Shutdown>,
    interval: Duration,
    quiet: bool,
) -> Result<std::thread::JoinHandle<()>> {
    let server = Server::bind(addr, limits, shutdown)?;
    let local = server.local_addr();
    crate::event!("announce on http://{local}/announce");
    let t = HttpTracker::new(interval, quiet);
    std::thread::Builder::new()
        .name("announce".into())
        .spawn(move || {
            if let Err(e) = t.serve(server) {
                crate::diag!("announce listener: {e}");
            }
        })
        .map_err(Error::Io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::bt::announce::{parse_reply, url_encode};

    fn q(extra: &str, id: u8) -> String {
        format!(
            "info_hash={}&peer_id={}&port=6881&left=10&uploaded=0&downloaded=0{extra}",
            url_encode(&[7; 20]),
            url_encode(&[id; 20])
        )
    }

    #[test]
    fn announces_are_parsed_strictly() {
        let a = parse_announce(&q("&compact=1&numwant=5&event=started", 1)).unwrap();
        assert_eq!((a.port, a.left, a.compact, a.numwant), (6881, 10, true, 5));
        assert_eq!(a.event.as_deref(), Some("started"));
        assert!(parse_announce("port=1").unwrap_err().contains("info_hash"));
        assert!(parse_announce(&q("&event=bogus", 1)).is_err());
        assert!(parse_announce(&q("", 1).replace("port=6881", "port=0")).is_err());
        assert!(parse_announce(&q("", 1).replace("port=6881", "port=x")).is_err());
        let short = format!("info_hash=abc&peer_id={}&port=1", url_encode(&[1; 20]));
        assert!(parse_announce(&short).unwrap_err().contains("20 bytes"));
    }

    #[test]
    fn members_see_each_other_compact_and_as_dicts() {
        let t = HttpTracker::new(Duration::from_secs(30), true);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let r = t.announce(&parse_announce(&q("&compact=1", 1)).unwrap(), ip);
        assert!(parse_reply(&r.body).unwrap().peers.is_empty());
        let r = t.announce(&parse_announce(&q("&compact=1", 2)).unwrap(), ip);
        assert_eq!(
            parse_reply(&r.body).unwrap().peers,
            vec!["127.0.0.1:6881".parse().unwrap()]
        );
        let r = t.announce(&parse_announce(&q("", 3)).unwrap(), ip);
        let text = String::from_utf8_lossy(&r.body).to_string();
        assert!(text.contains("7:peer id20:"), "{text}");
        assert_eq!(parse_reply(&r.body).unwrap().peers.len(), 2);
        t.announce(&parse_announce(&q("&event=stopped", 3)).unwrap(), ip);
        let s = t.scrape(&format!("info_hash={}", url_encode(&[7; 20])));
        let text = String::from_utf8_lossy(&s.body).to_string();
        assert!(text.contains("10:incompletei2e"), "{text}");
        let f = failure("x");
        assert!(parse_reply(&f.body).is_err());
    }
}
