//! The whole overlay, for `/?overlay=1`: this servent reads its
//! neighbours' `state.json` over HTTP, then theirs, hop by hop, and hands
//! the page every servent reached with its links and its recent queries,
//! the links' ends named by the servents' own addresses, so the page can
//! draw the overlay and any query's flood tree. The page itself asks only
//! its own servent (`overlay.json`): no request of the browser leaves for
//! another host, and the page's policy stays `connect-src 'self'`.
//!
//! A servent's view is looked for at its own address with the port plus
//! `offset` (`/?overlay=1&offset=1000` when every servent runs with
//! `--http IP:+1000`). An outgoing link names the neighbour's own address;
//! an incoming one only after a topology query came over it (the path's
//! last hop), so links still unnamed are counted and the page says to run
//! `T` once. The servents a topology path names are visited too.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{Value, json};

/// Servents read at most.
const MAX_SERVENTS: usize = 64;
/// A `state.json` is at most this big.
const MAX_STATE: u64 = 4 << 20;
/// Time for one neighbour's view to answer (connecting, then reading).
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// The document at `addr`'s view: `GET /state.json`.
fn fetch_state(view: SocketAddr) -> Result<Value, String> {
    let mut s = TcpStream::connect_timeout(&view, ASK_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(ASK_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(ASK_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET /state.json HTTP/1.0\r\nHost: {view}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut all = Vec::new();
    s.take(MAX_STATE)
        .read_to_end(&mut all)
        .map_err(|e| e.to_string())?;
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP answer")?;
    let head = String::from_utf8_lossy(&all[..split]);
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(head.lines().next().unwrap_or("").to_string());
    }
    let state: Value = serde_json::from_slice(&all[split + 4..]).map_err(|e| e.to_string())?;
    if state["system"] != "kv-servent" {
        return Err("not a kv-servent's view".into());
    }
    Ok(state)
}

/// Where the view of the servent at `addr` is.
fn view_of(addr: SocketAddr, offset: u16) -> Option<SocketAddr> {
    Some(SocketAddr::new(addr.ip(), addr.port().checked_add(offset)?))
}

/// One servent's state with its links' ends and its queries' hops named
/// by the neighbours' own addresses (`null` where not known).
fn normalise(addr: SocketAddr, state: &Value) -> (Value, Vec<SocketAddr>, usize) {
    let links = state["links"].as_array().cloned().unwrap_or_default();
    let mut names: HashMap<String, Option<SocketAddr>> = HashMap::new();
    let mut next = Vec::new();
    let mut unnamed = 0;
    let mut out_links = Vec::new();
    for l in &links {
        let peer = l["peer"].as_str().unwrap_or("").to_string();
        let own = l["listening"].as_str().and_then(|s| s.parse().ok());
        names.insert(peer, own);
        match own {
            Some(a) => next.push(a),
            None => unnamed += 1,
        }
        out_links.push(json!({
            "to": own.map(|a: SocketAddr| a.to_string()),
            "direction": l["direction"],
        }));
    }
    let name = |p: &Value| -> Value {
        match p.as_str() {
            Some("client") => "client".into(),
            Some(s) => names
                .get(s)
                .copied()
                .flatten()
                .map_or(Value::Null, |a| a.to_string().into()),
            None => Value::Null,
        }
    };
    let names_of = |v: &Value| -> Vec<Value> {
        v.as_array()
            .map(|a| a.iter().map(name).collect())
            .unwrap_or_default()
    };
    // A topology query's path so far names servents too (those upstream
    // of an incoming link among them): worth a visit.
    for q in state["queries"].as_array().into_iter().flatten() {
        if q["query"] == "topo" {
            let path = q["info"].as_str().unwrap_or("");
            next.extend(path.split(' ').filter_map(|w| w.parse::<SocketAddr>().ok()));
        }
    }
    let queries: Vec<Value> = state["queries"]
        .as_array()
        .map(|qs| {
            qs.iter()
                .map(|q| {
                    json!({
                        "t": q["t"],
                        "origin": q["origin"],
                        "seq": q["seq"],
                        "query": q["query"],
                        "info": q["info"],
                        "ttl": q["ttl"],
                        "from": name(&q["from"]),
                        "forwarded_to": names_of(&q["forwarded_to"]),
                        "duplicates_from": names_of(&q["duplicates_from"]),
                        "answered": q["answered"],
                        "stopped": q["stopped"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let servent = json!({
        "addr": addr.to_string(),
        "ttl": state["ttl"],
        "keys": state["keys"],
        "links": out_links,
        "queries": queries,
    });
    (servent, next, unnamed)
}

/// The overlay as far as it can be read from `start` (this servent, at
/// `me`, whose state is `own`) with views at port + `offset`.
pub(super) fn crawl(me: SocketAddr, own: &Value, offset: u16) -> Value {
    let mut servents = Vec::new();
    let mut unreached = Vec::new();
    let mut unnamed = 0;
    let mut seen: HashSet<SocketAddr> = HashSet::from([me]);
    let mut queue: VecDeque<(SocketAddr, Option<Value>)> =
        VecDeque::from([(me, Some(own.clone()))]);
    while let Some((addr, state)) = queue.pop_front() {
        if servents.len() >= MAX_SERVENTS {
            break;
        }
        let state = match state {
            Some(s) => s,
            None => match view_of(addr, offset)
                .ok_or("port out of range".to_string())
                .and_then(fetch_state)
            {
                Ok(s) => s,
                Err(why) => {
                    unreached.push(json!({ "addr": addr.to_string(), "why": why }));
                    continue;
                }
            },
        };
        let (servent, next, n) = normalise(addr, &state);
        unnamed += n;
        servents.push(servent);
        for a in next {
            if seen.insert(a) {
                queue.push_back((a, None));
            }
        }
    }
    json!({
        "system": "kv-servent overlay",
        "start": me.to_string(),
        "offset": offset,
        "servents": servents,
        "unreached": unreached,
        "unnamed_links": unnamed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_hops_are_named_by_the_neighbours_own_addresses() {
        let state = json!({
            "system": "kv-servent", "ttl": 3, "keys": 1,
            "links": [
                { "peer": "127.0.0.1:5002", "direction": "out", "listening": "127.0.0.1:5002" },
                { "peer": "127.0.0.1:40001", "direction": "in", "listening": "127.0.0.1:5003" },
                { "peer": "127.0.0.1:40002", "direction": "in", "listening": null },
            ],
            "queries": [{ "t": 1, "origin": "127.0.0.1:9000", "seq": 1, "query": "key", "info": "k",
                "ttl": 3, "from": "127.0.0.1:40001", "forwarded_to": ["127.0.0.1:5002", "127.0.0.1:40002"],
                "duplicates_from": ["127.0.0.1:5002"], "answered": true, "stopped": false }],
        });
        let (s, next, unnamed) = normalise("127.0.0.1:5001".parse().unwrap(), &state);
        assert_eq!(unnamed, 1);
        assert_eq!(next.len(), 2);
        let q = &s["queries"][0];
        assert_eq!(q["from"], "127.0.0.1:5003");
        assert_eq!(q["forwarded_to"], json!(["127.0.0.1:5002", null]));
        assert_eq!(q["duplicates_from"], json!(["127.0.0.1:5002"]));
        assert_eq!(
            view_of("127.0.0.1:5001".parse().unwrap(), 1000),
            Some("127.0.0.1:6001".parse().unwrap())
        );
    }
}
