//! The HTTP tracker's two parsers: a reply as `bt-peer` reads it (compact
//! or dict peers), and an announce query as `bt-tracker` reads it. Each
//! re-encodes (compact for IPv4 peers, a dict list otherwise; the query
//! with every field) and parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerkit::swarm::bt::announce::{self, Reply, url_encode};
use peerkit::swarm::bt::bencode::{self, Value, b, dict};
use peerkit::swarm::bt::tracker::{AnnounceQuery, parse_announce};
use peerkit_fuzz::{bounded, pick};

fn encode_reply(r: &Reply) -> Vec<u8> {
    let peers = if r.peers.iter().all(|p| p.is_ipv4()) {
        let mut c = Vec::new();
        for p in &r.peers {
            if let std::net::IpAddr::V4(ip) = p.ip() {
                c.extend_from_slice(&ip.octets());
                c.extend_from_slice(&p.port().to_be_bytes());
            }
        }
        b(c)
    } else {
        Value::List(
            r.peers
                .iter()
                .map(|p| {
                    dict([
                        ("ip", b(p.ip().to_string())),
                        ("port", Value::Integer(i64::from(p.port()))),
                    ])
                })
                .collect(),
        )
    };
    bencode::encode(&dict([
        ("interval", Value::Integer(i64::from(r.interval))),
        ("peers", peers),
    ]))
}

fn encode_query(q: &AnnounceQuery) -> String {
    let mut s = format!(
        "info_hash={}&peer_id={}&port={}&left={}&numwant={}",
        url_encode(&q.info_hash.0),
        url_encode(&q.peer_id),
        q.port,
        q.left,
        q.numwant
    );
    if q.compact {
        s.push_str("&compact=1");
    }
    if q.no_peer_id {
        s.push_str("&no_peer_id=1");
    }
    if let Some(e) = &q.event {
        s.push_str("&event=");
        s.push_str(e);
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = pick(data, 2) else {
        return;
    };
    if which == 0 {
        if let Ok(r) = bounded(rest, || announce::parse_reply(rest)) {
            assert!((1..=86_400).contains(&r.interval));
            assert!(r.peers.iter().all(|p| p.port() != 0));
            let again = announce::parse_reply(&encode_reply(&r)).expect("a reply parses");
            assert_eq!(again, r);
        }
    } else if let Ok(q) = std::str::from_utf8(rest) {
        if let Ok(a) = bounded(rest, || parse_announce(q)) {
            assert_ne!(a.port, 0);
            let again = parse_announce(&encode_query(&a)).expect("a query parses");
            assert_eq!(again, a);
        }
    }
});
