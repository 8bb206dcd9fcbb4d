//! The servent's live view: its links, each query's path through it, and
//! counters that move by exactly what a test sends.

use super::*;
use std::fs;
use std::io::Write;

#[test]
fn the_servent_view_traces_each_query_and_counts_exactly() {
    let dir = TempDir::new("flood-view");
    let kv = dir.sub("kv").join("b.kv");
    fs::write(&kv, "http 80/tcp\n").unwrap();
    let mut b = servent(&kv, &[], &["--http", "127.0.0.1:0"]);
    let line = b.wait_stdout(|l| l.starts_with("view on "));
    assert_eq!(b.stdout_lines()[1], line, "{}", b.dump());
    let view = line["view on ".len()..].to_string();
    let (_, before) = view_get(&view, "/metrics");
    assert_eq!(metric(&before, "peerkit_flood_floods_total"), Some(0.0));

    // A neighbour by hand: its ID, then a flood, then the same flood again.
    let mut n = TcpStream::connect(&b.addr).unwrap();
    n.write_all(&id_bytes(0)).unwrap();
    b.wait_stdout(|l| l.starts_with("link in "));
    let answers = high_port_listener();
    let origin: SocketAddr = answers.local_addr().unwrap();
    let flood = keyflood_bytes(7, origin, "http");
    n.write_all(&flood).unwrap();
    n.write_all(&flood).unwrap();
    b.wait_stdout_any(|l| l.starts_with("duplicate "));
    b.wait_stdout_any(|l| l.starts_with("answered "));

    let (_, after) = view_get(&view, "/metrics");
    assert_eq!(metric(&after, "peerkit_flood_floods_total"), Some(2.0));
    assert_eq!(metric(&after, "peerkit_flood_duplicates_total"), Some(1.0));
    assert_eq!(metric(&after, "peerkit_flood_answers_total"), Some(1.0));
    assert_eq!(metric(&after, "peerkit_flood_links"), Some(1.0));
    let state: serde_json::Value = serde_json::from_str(&view_get(&view, "/state.json").1).unwrap();
    assert_eq!(state["links"].as_array().unwrap().len(), 1);
    assert_eq!(state["links"][0]["direction"], "in");
    let queries = state["queries"].as_array().unwrap();
    assert_eq!(queries.len(), 1, "{state}");
    let q = &queries[0];
    assert_eq!(q["origin"], origin.to_string());
    assert_eq!(q["seq"], 7);
    assert_eq!(q["query"], "key");
    assert_eq!(q["info"], "http");
    assert_eq!(q["answered"], true);
    // It came with TTL 1: answered here, not forwarded.
    assert_eq!(q["ttl"], 1);
    assert_eq!(q["stopped"], true);
    assert_eq!(q["forwarded_to"].as_array().unwrap().len(), 0);
    let neighbour = n.local_addr().unwrap().to_string();
    assert_eq!(q["from"], neighbour);
    assert_eq!(q["duplicates_from"][0], neighbour);
}
