//! Bad input: hostile names, garbage frames, floods of idle and trickling connections, hidden files.

use super::*;

const HOSTILE: [&str; 5] = ["../x", "/etc/passwd", "a/b", "", "a\0b"];

fn hostile_names() -> Vec<String> {
    let mut v: Vec<String> = HOSTILE.iter().map(|s| s.to_string()).collect();
    v.push("n".repeat(300));
    v
}

/// The shared hostile-input battery against a supernode.
fn super_battery(addr: &str) -> Vec<String> {
    framed_battery(addr, SUPER_PROTOCOL, |b| {
        match frame::decode::<SuperResponse>(b) {
            Ok(SuperResponse::Error { message }) => Some(message),
            _ => None,
        }
    })
}

/// The shared hostile-input battery against the index.
fn index_battery(addr: &str) -> Vec<String> {
    framed_battery(addr, INDEX_PROTOCOL, |b| {
        match frame::decode::<IndexResponse>(b) {
            Ok(IndexResponse::Error { message }) => Some(message),
            _ => None,
        }
    })
}

#[test]
fn supernode_refuses_bad_input_and_keeps_serving() {
    let dir = TempDir::new("dht-bad-super");
    let repo = dir.sub("repo");
    fs::write(repo.join("kept.txt"), b"kept").unwrap();
    let index = start_index();
    let s = start_superd(&index, &repo);
    let t = Timeouts::default();

    let mut conn = Conn::open(&s.addr, &t, SUPER_PROTOCOL).unwrap();
    for name in hostile_names() {
        conn.send(&SuperRequestOf::Download { name: name.clone() })
            .unwrap();
        let text = error_text(conn.expect::<SuperResponse>().unwrap());
        assert!(text.contains("invalid file name"), "{name:?}: {text}");

        conn.send(&SuperRequestOf::Upload {
            name: name.clone(),
            size: 4,
            digest: FileDigest::of(b"evil"),
        })
        .unwrap();
        let text = error_text(conn.expect::<SuperResponse>().unwrap());
        assert!(text.contains("invalid file name"), "{name:?}: {text}");
    }
    // The same connection still works.
    conn.send(&SuperRequestOf::<String>::List).unwrap();
    assert_eq!(
        conn.expect::<SuperResponse>().unwrap(),
        SuperResponse::Names {
            names: vec!["kept.txt".parse().unwrap()]
        }
    );
    assert_eq!(
        conn.expect::<SuperResponse>().unwrap(),
        SuperResponse::EndOfList
    );

    // Garbage, unknown requests, empty and oversized frames.
    super_battery(&s.addr);

    // Still serving, and nothing was written outside the repository.
    assert_eq!(ls(&s), ["kept.txt"]);
    let mut around: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    around.sort();
    assert_eq!(around, std::slice::from_ref(&repo));
    assert_eq!(fs::read_dir(&repo).unwrap().count(), 1);
}

#[test]
fn index_refuses_bad_input_and_keeps_serving() {
    let index = start_index();
    let t = Timeouts::default();
    let mut conn = Conn::open(&index.addr, &t, INDEX_PROTOCOL).unwrap();
    for name in hostile_names() {
        conn.send(&IndexRequestOf::Query { name: name.clone() })
            .unwrap();
        let text = error_text(conn.expect::<IndexResponse>().unwrap());
        assert!(text.contains("invalid file name"), "{name:?}: {text}");
    }
    // Requests that make no sense here get a typed error too.
    conn.send(&IndexRequestOf::<String>::Leave).unwrap();
    error_text(conn.expect::<IndexResponse>().unwrap());
    conn.send(&IndexRequestOf::<String>::Join {
        port: 0,
        heartbeat_ms: 5000,
    })
    .unwrap();
    error_text(conn.expect::<IndexResponse>().unwrap());
    // Still serving on the same connection.
    conn.send(&IndexRequestOf::Query {
        name: "ok.txt".to_string(),
    })
    .unwrap();
    assert_eq!(
        conn.expect::<IndexResponse>().unwrap(),
        IndexResponse::NoSupernodes
    );

    // Garbage, unknown requests, empty and oversized frames.
    index_battery(&index.addr);

    // A fresh control connection still works.
    let mut conn = Conn::open(&index.addr, &t, INDEX_PROTOCOL).unwrap();
    conn.send(&IndexRequestOf::<String>::Ping).unwrap();
    assert_eq!(conn.expect::<IndexResponse>().unwrap(), IndexResponse::Pong);
}

/// A `p2p-ls` style probe: handshake, list, under `SERVED_WITHIN`.
fn list_probe(addr: &str) -> impl Fn() + '_ {
    move || {
        let t = Timeouts {
            connect: SERVED_WITHIN,
            io: SERVED_WITHIN,
        };
        let names = peerkit::dht::client::list(addr, &t)
            .unwrap_or_else(|e| panic!("a real client was not served: {e}"));
        assert!(names.iter().all(|n| !n.as_str().is_empty()));
    }
}

#[test]
fn the_index_serves_real_clients_through_idle_and_trickling_floods() {
    let index = start_index();
    let addr = index.addr.clone();
    let probe = move || {
        let t = Timeouts {
            connect: SERVED_WITHIN,
            io: SERVED_WITHIN,
        };
        let mut c = Conn::open(&addr, &t, INDEX_PROTOCOL)
            .unwrap_or_else(|e| panic!("a real client was not served: {e}"));
        c.send(&IndexRequestOf::<String>::Ping).unwrap();
        assert_eq!(c.expect::<IndexResponse>().unwrap(), IndexResponse::Pong);
    };
    exhaustion("p2p-index", &index, 0x41, probe);
    index_battery(&index.addr);
    // A member's control connection outlives the floods.
    let dir = TempDir::new("dht-exhaust");
    let s = start_superd(&index, &dir.sub("repo"));
    let _idle = idle_sockets(&index.addr, ATTACKERS);
    exhaustion("p2p-superd", &s, 0x41, list_probe(&s.addr));
    super_battery(&s.addr);
    assert!(
        !index
            .stdout_lines()
            .iter()
            .any(|l| l.starts_with("removed")),
        "{}",
        index.dump()
    );
}

#[test]
fn hidden_files_are_never_listed_served_synced_or_accepted() {
    let dir = TempDir::new("dht-hidden");
    let (ra, rb) = (dir.sub("a"), dir.sub("b"));
    let index = start_index();
    let a = start_superd(&index, &ra);
    let b = start_superd(&index, &rb);
    let ring = ring_of(&[&a, &b]);
    // Hidden files A holds that B is responsible for, and one visible file
    // whose arrival at B proves a sync round has run.
    let hidden: Vec<String> = (0..200)
        .map(|i| format!(".secret{i}"))
        .filter(|n| ring.owner(n) == Some(&b.addr))
        .take(3)
        .collect();
    for n in hidden.iter().chain([&".netrc".to_string()]) {
        fs::write(ra.join(n), b"password").unwrap();
    }
    let visible = name_owned_by(&ring, &b.addr, "shown");
    fs::write(ra.join(&visible), b"shown").unwrap();
    wait_until(
        "the visible file on B",
        || rb.join(&visible).exists().then_some(()),
        || dump_all(&[&index, &a, &b]),
    );
    assert_eq!(ls(&a), std::slice::from_ref(&visible));
    assert_eq!(
        names_in(&rb),
        std::slice::from_ref(&visible),
        "{}",
        a.dump()
    );

    let t = Timeouts::default();
    let mut conn = Conn::open(&a.addr, &t, SUPER_PROTOCOL).unwrap();
    for n in [".netrc", &hidden[0]] {
        conn.send(&SuperRequestOf::Download {
            name: n.to_string(),
        })
        .unwrap();
        assert_eq!(
            conn.expect::<SuperResponse>().unwrap(),
            SuperResponse::NotFound
        );
    }
    conn.send(&SuperRequestOf::Upload {
        name: ".evil".to_string(),
        size: 4,
        digest: FileDigest::of(b"evil"),
    })
    .unwrap();
    let text = error_text(conn.expect::<SuperResponse>().unwrap());
    assert!(text.contains("hidden"), "{text}");
    assert!(!ra.join(".evil").exists());
    let (h, p) = host_port(&a);
    cmd(bin!("p2p-get"))
        .args([&h, &p, ".netrc"])
        .cwd(dir.path())
        .run()
        .code(1)
        .stderr_has(".netrc is not available");
    assert!(!dir.path().join(".netrc").exists());
}
