//! The servent's live view: its neighbours and, for the queries it has
//! seen lately, where each came from and with what TTL, where it was
//! forwarded, which copies died as duplicates, and whether this servent
//! answered (straight to the client) or stopped it (TTL used up).

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};

use super::{Query, Servent, lock};
use crate::view::Site;

/// Queries the view remembers.
const RECENT: usize = 100;

/// One query as this servent saw it.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    /// Milliseconds since the epoch of its first sight.
    t: u64,
    origin: SocketAddrV4,
    seq: u32,
    query: Query,
    /// The key asked for, or the topology path so far.
    info: String,
    /// `client` or the neighbour it first came from.
    from: String,
    /// Its TTL as it arrived (the servent's own for a client's query).
    ttl: u16,
    forwarded_to: Vec<String>,
    duplicates_from: Vec<String>,
    answered: bool,
    stopped: bool,
}

/// The recent queries, newest last.
#[derive(Debug, Default)]
pub(super) struct Trace {
    queries: Mutex<VecDeque<Seen>>,
}

impl Trace {
    fn with(&self, origin: SocketAddrV4, seq: u32, f: impl FnOnce(&mut Seen)) {
        let mut q = self.queries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = q
            .iter_mut()
            .rev()
            .find(|s| s.origin == origin && s.seq == seq)
        {
            f(s);
        }
    }

    /// The first sight of a query.
    pub(super) fn first(
        &self,
        origin: SocketAddrV4,
        seq: u32,
        query: Query,
        info: &str,
        from: &str,
        ttl: u16,
    ) {
        let mut q = self.queries.lock().unwrap_or_else(PoisonError::into_inner);
        if q.len() >= RECENT {
            q.pop_front();
        }
        q.push_back(Seen {
            t: crate::events::now_ms(),
            origin,
            seq,
            query,
            info: info.to_string(),
            from: from.to_string(),
            ttl,
            forwarded_to: Vec::new(),
            duplicates_from: Vec::new(),
            answered: false,
            stopped: false,
        });
    }

    pub(super) fn duplicate(&self, origin: SocketAddrV4, seq: u32, from: &str) {
        self.with(origin, seq, |s| s.duplicates_from.push(from.to_string()));
    }

    pub(super) fn forwarded(&self, origin: SocketAddrV4, seq: u32, to: Vec<String>) {
        self.with(origin, seq, |s| s.forwarded_to.extend(to));
    }

    pub(super) fn answered(&self, origin: SocketAddrV4, seq: u32) {
        self.with(origin, seq, |s| s.answered = true);
    }

    pub(super) fn stopped(&self, origin: SocketAddrV4, seq: u32) {
        self.with(origin, seq, |s| s.stopped = true);
    }

    fn json(&self) -> Vec<Value> {
        self.queries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|s| {
                json!({
                    "t": s.t,
                    "origin": s.origin.to_string(),
                    "seq": s.seq,
                    "query": s.query.to_string(),
                    "info": s.info,
                    "from": s.from,
                    "ttl": s.ttl,
                    "forwarded_to": s.forwarded_to,
                    "duplicates_from": s.duplicates_from,
                    "answered": s.answered,
                    "stopped": s.stopped,
                })
            })
            .collect()
    }
}

/// The servent's page and state.
pub(super) struct ServentSite {
    pub(super) servent: Arc<Servent>,
    /// With `--http HOST:+N`: N, where the other servents' views are
    /// looked for by default (their port plus N).
    pub(super) view_offset: Option<u16>,
}

impl ServentSite {
    /// This servent's own address as its neighbours name it: its address
    /// on its links (loopback when they are all on this host) and its port.
    fn addr(&self) -> SocketAddr {
        let ip = lock(&self.servent.links)
            .reachable_ipv4()
            .unwrap_or(Ipv4Addr::LOCALHOST);
        SocketAddr::new(ip.into(), self.servent.port)
    }
}

impl Site for ServentSite {
    fn json(&self, path: &str, query: &str) -> Option<Value> {
        if path != "/overlay.json" {
            return None;
        }
        // `offset=N`: where the other servents' views are (port + N).
        let offset = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("offset="))
            .and_then(|v| v.parse::<u16>().ok())
            .or(self.view_offset)
            .unwrap_or(0);
        Some(super::overlay::crawl(self.addr(), &self.state(), offset))
    }

    fn page(&self) -> &'static str {
        include_str!("servent.html")
    }

    fn state(&self) -> Value {
        let s = &self.servent;
        let links: Vec<Value> = s
            .link_list()
            .into_iter()
            .map(|(peer, outgoing, local, heard_as)| {
                json!({
                    "peer": peer.to_string(),
                    "direction": if outgoing { "out" } else { "in" },
                    "local": local.map(|ip| ip.to_string()),
                    "listening": heard_as.map(|a| a.to_string()),
                })
            })
            .collect();
        json!({
            "system": "kv-servent",
            "addr": self.addr().to_string(),
            "view_offset": self.view_offset,
            "port": s.port,
            "ttl": s.ttl,
            "keys": s.kv.len(),
            "links": links,
            "queries": s.trace.json(),
            "stats": s.stats.json(),
        })
    }
}
