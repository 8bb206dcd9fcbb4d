//! The index's live view: the readiness lines, state.json against the
//! ring, metrics that count exactly what was asked, events as they happen.

use super::*;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;

#[test]
fn the_index_view_shows_the_ring_its_files_and_what_happens() {
    let dir = TempDir::new("dht-view");
    let mut index = cmd(bin!("p2p-index"))
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .daemon();
    // The view's line comes right after the readiness line.
    let line = index.wait_stdout(|l| l.starts_with("view on "));
    assert_eq!(index.stdout_lines()[..2][1], line, "{}", index.dump());
    let view = line["view on ".len()..].to_string();
    assert!(view.starts_with("http://127.0.0.1:") && view.ends_with('/'));

    // Someone watching the events before anything happens.
    let addr = view.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(b"GET /events HTTP/1.1\r\n\r\n").unwrap();
    let mut events = BufReader::new(stream);
    let mut l = String::new();
    while l != ": events\n" {
        l.clear();
        events.read_line(&mut l).unwrap();
    }

    let repo = dir.sub("repo");
    let hostile = "<img src=x onerror=alert(1)>.txt";
    fs::write(repo.join(hostile), b"x").unwrap();
    fs::write(repo.join("plain.txt"), b"y").unwrap();
    let s = start_superd(&index, &repo);

    // The join, as an event.
    let joined = loop {
        l.clear();
        events.read_line(&mut l).unwrap();
        if let Some(data) = l.strip_prefix("data: ") {
            break serde_json::from_str::<serde_json::Value>(data).unwrap();
        }
    };
    assert_eq!(joined["kind"], "joined");
    assert_eq!(joined["addr"], s.addr.as_str());

    let (status, page) = view_get(&view, "/");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(page.starts_with("<!doctype html>") && page.contains("EventSource(\"events\")"));

    let (status, body) = view_get(&view, "/state.json");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    let supers = state["supernodes"].as_array().unwrap();
    assert_eq!(supers.len(), 1, "{state}");
    assert_eq!(supers[0]["addr"], s.addr.as_str());
    assert_eq!(supers[0]["vnodes"].as_array().unwrap().len(), 256);
    assert_eq!(supers[0]["files"], 2);
    let names: Vec<&str> = state["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [hostile, "plain.txt"]);
    for f in state["files"].as_array().unwrap() {
        assert_eq!(f["owner"], s.addr.as_str());
        assert_eq!(f["holders"][0], s.addr.as_str());
    }

    // The query counter moves by exactly the lookups made.
    let (_, before) = view_get(&view, "/metrics");
    let q = "peerkit_index_requests_total{kind=\"query\"}";
    let n0 = metric(&before, q).unwrap();
    assert_eq!(metric(&before, "peerkit_ring_members"), Some(1.0));
    assert_eq!(
        metric(&before, "peerkit_index_requests_total{kind=\"join\"}"),
        Some(1.0)
    );
    let mut asker = Conn::open(&index.addr, &Timeouts::default(), INDEX_PROTOCOL).unwrap();
    for name in ["a.txt", "b.txt", "c.txt"] {
        asker
            .send(&IndexRequestOf::Query {
                name: name.to_string(),
            })
            .unwrap();
        asker.expect::<IndexResponse>().unwrap();
    }
    let (_, after) = view_get(&view, "/metrics");
    // The supernode's synchronizer may ask too, between the two scrapes;
    // ours are three of them, and each is a lookup event.
    let n1 = metric(&after, q).unwrap();
    assert!(n1 >= n0 + 3.0, "{n0} -> {n1}");
    assert!(after.contains("# TYPE peerkit_index_request_seconds histogram"));
    let mut seen = Vec::new();
    while seen.len() < 3 {
        l.clear();
        events.read_line(&mut l).unwrap();
        if let Some(data) = l.strip_prefix("data: ") {
            let v: serde_json::Value = serde_json::from_str(data).unwrap();
            if v["kind"] == "lookup" && v["from"] == asker.local_addr().unwrap().to_string() {
                seen.push(v["name"].as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(seen, ["a.txt", "b.txt", "c.txt"]);

    // A counter only the test moves moves by exactly what it asked.
    let views = "peerkit_view_requests_total{path=\"/state.json\"}";
    let v0 = metric(&after, views).unwrap();
    view_get(&view, "/state.json");
    view_get(&view, "/state.json");
    let (_, last) = view_get(&view, "/metrics");
    assert_eq!(metric(&last, views), Some(v0 + 2.0));

    // Read-only, nothing else served.
    assert_eq!(view_get(&view, "/etc/passwd").0, "HTTP/1.1 404 Not Found");
}

#[test]
fn the_supernode_view_shows_its_files_and_counts_transfers_exactly() {
    let dir = TempDir::new("dht-superd-view");
    let index = start_index();
    let repo = dir.sub("repo");
    let mut s = cmd(bin!("p2p-superd"))
        .arg(&repo)
        .args(["--index", &index.addr, "--listen", "127.0.0.1:0"])
        .args(["--sync-interval", SYNC, "--http", "127.0.0.1:0"])
        .daemon();
    let line = s.wait_stdout(|l| l.starts_with("view on "));
    assert_eq!(s.stdout_lines()[1], line, "{}", s.dump());
    let view = line["view on ".len()..].to_string();
    s.wait_stdout(|l| l.starts_with("joined the ring as "));
    let upload = "<b>bold<b>.txt";
    let src = dir.sub("src").join(upload);
    fs::write(&src, vec![7u8; 3000]).unwrap();
    cmd(bin!("p2p-put")).arg(&s.addr).arg(&src).run().ok();
    let out = dir.sub("out").join("copy");
    cmd(bin!("p2p-get"))
        .args([&s.addr, upload, "-o"])
        .arg(&out)
        .run()
        .ok();
    let (_, m) = view_get(&view, "/metrics");
    assert_eq!(
        metric(&m, "peerkit_superd_transfers_total{kind=\"upload\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "peerkit_superd_bytes_total{direction=\"in\"}"),
        Some(3000.0)
    );
    assert_eq!(metric(&m, "peerkit_superd_repo_files"), Some(1.0));
    let state: serde_json::Value = serde_json::from_str(&view_get(&view, "/state.json").1).unwrap();
    assert_eq!(state["addr"], s.addr.as_str());
    assert_eq!(state["files"][0]["name"], upload);
    assert_eq!(state["files"][0]["size"], 3000);
    let finished = state["finished"].as_array().unwrap();
    assert!(
        finished
            .iter()
            .any(|t| t["kind"] == "upload" && t["name"] == upload && t["ok"] == true),
        "{state}"
    );
}
