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

/// A servent whose view listens at its own port + 7. The kernel picks the
/// servent's port, so that one may already be another program's: the
/// servent then says so and exits, and a fresh start picks another port.
fn servent_with_view_at_plus_7(kv: &Path, neighbours: &[String]) -> Proc {
    for _ in 0..20 {
        let mut p = servent(kv, neighbours, &["--http", "127.0.0.1:+7"]);
        let viewing = wait_until(
            "the view line, or the view's port taken",
            || {
                if p.stdout_lines().iter().any(|l| l.starts_with("view on ")) {
                    Some(true)
                } else if p.stderr_lines().iter().any(|l| l.contains("in use")) {
                    Some(false)
                } else {
                    None
                }
            },
            || p.dump(),
        );
        if viewing {
            return p;
        }
        p.kill();
    }
    panic!("20 servent ports in a row had their port + 7 taken");
}

#[test]
fn any_servents_overlay_page_reads_the_others_hop_by_hop() {
    let dir = TempDir::new("flood-overlay");
    // A chain a <- b <- c (each links to the one before), every view at
    // its servent's port + 7.
    let mut procs: Vec<Proc> = Vec::new();
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let kv = dir.sub("kv").join(format!("{name}.kv"));
        fs::write(&kv, format!("k{i} v{i}\n")).unwrap();
        let neighbours: Vec<String> = procs.last().map(|p| p.addr.clone()).into_iter().collect();
        let mut p = servent_with_view_at_plus_7(&kv, &neighbours);
        let line = p.wait_stdout(|l| l.starts_with("view on "));
        let port: u16 = p.addr.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(line, format!("view on http://127.0.0.1:{}/", port + 7));
        procs.push(p);
    }
    let view = |p: &Proc| {
        let port: u16 = p.addr.rsplit(':').next().unwrap().parse().unwrap();
        format!("http://127.0.0.1:{}/", port + 7)
    };
    let overlay = |p: &Proc| -> serde_json::Value {
        let (status, body) = view_get(&view(p), "/overlay.json");
        assert_eq!(status, "HTTP/1.1 200 OK");
        serde_json::from_str(&body).unwrap()
    };
    // From c, every servent is reached over outgoing links.
    let o = overlay(&procs[2]);
    let addrs: Vec<&str> = o["servents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["addr"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = procs.iter().rev().map(|p| p.addr.as_str()).collect();
    assert_eq!(addrs, want, "{o}");
    assert_eq!(o["offset"], 7);
    assert_eq!(o["unreached"], serde_json::json!([]));
    // From a, its one link is incoming and not named yet.
    let o = overlay(&procs[0]);
    assert_eq!(o["servents"].as_array().unwrap().len(), 1, "{o}");
    assert_eq!(o["unnamed_links"], 1);
    // A topology query asked at c floods to a through b: a learns b's own
    // address from the path, and a's page then reaches b (and c).
    cmd(bin!("kv-query"))
        .args([procs[2].addr.as_str(), "T", "--wait", "1"])
        .run();
    let o = wait_until(
        "a's overlay to reach every servent",
        || {
            let o = overlay(&procs[0]);
            (o["servents"].as_array()?.len() == 3).then_some(o)
        },
        || procs[0].dump(),
    );
    // The query's hops, named by the servents' own addresses.
    let b = o["servents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["addr"] == procs[1].addr.as_str())
        .unwrap();
    let q = &b["queries"][0];
    assert_eq!(q["query"], "topo");
    assert_eq!(q["from"], procs[2].addr.as_str());
    assert_eq!(
        q["forwarded_to"],
        serde_json::json!([procs[0].addr.as_str()])
    );
    let (_, page) = view_get(&view(&procs[0]), "/?overlay=1");
    assert!(page.contains("overlay.json"));
}
