//! The ring: balancing, leaving, a killed or silent supernode, the index link under stress.

use super::*;

#[test]
fn balancing_puts_every_file_on_its_responsible_supernode() {
    let dir = TempDir::new("dht-balance");
    let (r1, r2, r3) = (dir.sub("r1"), dir.sub("r2"), dir.sub("r3"));
    let names = copy_repo01(&r1);
    let mut index = start_index();
    let s1 = start_superd(&index, &r1);
    index.wait_stdout(|l| l == format!("joined {}", s1.addr));
    let s2 = start_superd(&index, &r2);
    wait_balanced(&names, &r1, &[(&s1, &r1), (&s2, &r2)], &[&index, &s1, &s2]);
    let s3 = start_superd(&index, &r3);
    let all = [&index, &s1, &s2, &s3];
    wait_balanced(&names, &r1, &[(&s1, &r1), (&s2, &r2), (&s3, &r3)], &all);

    // Sends and receipts are logged; supernode 1 keeps its copies.
    let ring = ring_of(&[&s1, &s2, &s3]);
    for name in &names {
        let owner = ring.owner(name).unwrap();
        if owner != s1.addr {
            let s = [&s2, &s3].into_iter().find(|p| p.addr == owner).unwrap();
            // Named by the address the sender listens on (supernode 1, or
            // one that got the file before the ring settled), not by its
            // connection's port.
            let from = |p: &Proc| format!("receiving {name} from supernode {}", p.addr);
            s.wait_stdout_any(|l| [&s1, &s2, &s3].iter().any(|p| l == from(p)));
        }
        assert!(r1.join(name).exists());
    }
    s1.wait_stdout_any(|l| l.starts_with("[balance] sending texto0"));
    assert_eq!(ls(&s1), names);

    // Later rounds do not send again what the owner already has.
    let sent = |p: &Proc| {
        p.stdout_lines()
            .iter()
            .filter(|l| l.starts_with("[balance] sending"))
            .count()
    };
    let before = sent(&s1) + sent(&s2) + sent(&s3);
    // A fresh upload to supernode 1 is placed by one of its next rounds;
    // meanwhile the older files must not be sent again by anyone.
    let probe = name_owned_by(&ring, &s2.addr, "probe");
    let local = dir.path().join(&probe);
    fs::write(&local, b"probe").unwrap();
    put(&s1, &local).ok();
    wait_until(
        "the probe on supernode 2",
        || r2.join(&probe).exists().then_some(()),
        || dump_all(&all),
    );
    s1.wait_stdout_any(|l| l == format!("[balance] sending {probe} to {}", s2.addr));
    assert_eq!(
        sent(&s1) + sent(&s2) + sent(&s3),
        before + 1,
        "{}",
        dump_all(&all)
    );
    let leftovers: Vec<_> = [&r1, &r2, &r3]
        .iter()
        .flat_map(|r| fs::read_dir(r).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".peerkit-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn graceful_leave_loses_no_file() {
    let dir = TempDir::new("dht-leave");
    let (ra, rb, rc) = (dir.sub("a"), dir.sub("b"), dir.sub("c"));
    let mut index = start_index();
    let a = start_superd(&index, &ra);
    let mut b = start_superd(&index, &rb);
    let c = start_superd(&index, &rc);
    let ring = ring_of(&[&a, &b, &c]);

    // Files only B holds (uploaded to it, and it is their owner).
    let mut held = Vec::new();
    for i in 0..8 {
        let name = name_owned_by(&ring, &b.addr, &format!("leave{i}"));
        let local = dir.path().join(&name);
        fs::write(&local, format!("content of {name}\n")).unwrap();
        put(&b, &local).ok();
        held.push(name);
    }

    b.terminate();
    let status = b.wait_exit();
    assert!(status.success(), "{}", b.dump());
    index.wait_stdout(|l| l == format!("left {}", b.addr));
    index.wait_stdout(|l| l == format!("disconnected {}", b.addr));
    assert!(
        !index
            .stdout_lines()
            .iter()
            .any(|l| l.contains("connection lost")),
        "{}",
        index.dump()
    );

    // Every file B held is now on the supernode responsible for it.
    let after = ring_of(&[&a, &c]);
    for name in &held {
        let owner = after.owner(name).unwrap();
        let repo = if owner == a.addr { &ra } else { &rc };
        assert_eq!(
            fs::read(repo.join(name)).unwrap_or_default(),
            format!("content of {name}\n").as_bytes(),
            "{name} missing at {owner}\n{}",
            dump_all(&[&index, &a, &b, &c])
        );
        assert!(
            b.stdout_lines()
                .contains(&format!("[balance] sending {name} to {owner}")),
            "{}",
            b.dump()
        );
    }
}

#[test]
fn killed_supernode_is_removed_from_the_ring_at_once() {
    let dir = TempDir::new("dht-kill");
    let (ra, rb) = (dir.sub("a"), dir.sub("b"));
    let mut index = start_index();
    let a = start_superd(&index, &ra);
    let mut b = start_superd(&index, &rb);
    let ring = ring_of(&[&a, &b]);
    let owned_by_b: Vec<String> = (0..200)
        .map(|i| format!("k{i}"))
        .filter(|n| ring.owner(n) == Some(&b.addr))
        .collect();
    assert!(!owned_by_b.is_empty());

    b.kill();
    index.wait_stdout(|l| l == format!("removed {} (connection lost)", b.addr));

    // The index no longer names B for anything.
    let t = Timeouts::default();
    let mut conn = Conn::open(&index.addr, &t, INDEX_PROTOCOL).unwrap();
    for name in &owned_by_b {
        conn.send(&IndexRequestOf::Query {
            name: name.to_string(),
        })
        .unwrap();
        assert_eq!(
            conn.expect::<IndexResponse>().unwrap(),
            IndexResponse::Owner {
                addr: a.addr.clone()
            }
        );
    }
    // And A answers "not here" itself instead of redirecting to B.
    let (ah, ap) = host_port(&a);
    cmd(bin!("p2p-get"))
        .args([&ah, &ap, &owned_by_b[0]])
        .cwd(dir.path())
        .run()
        .code(1)
        .stderr_has("is not available in the network");
}

/// A scripted index: each request is reported on `seen`, then answered with
/// `script(connection number, request)`, or never if that is `None`. The
/// script may block to hold a reply back.
struct FakeIndex {
    addr: String,
    seen: mpsc::Receiver<Seen>,
}

impl FakeIndex {
    fn start<F>(script: F) -> FakeIndex
    where
        F: Fn(usize, &IndexRequestOf<String>) -> Option<IndexResponse> + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, seen) = mpsc::channel::<Seen>();
        let script = Arc::new(script);
        thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { return };
                let (tx, script) = (tx.clone(), script.clone());
                thread::spawn(move || {
                    let Ok(mut conn) = Conn::new(stream) else {
                        return;
                    };
                    if !conn.server_handshake(INDEX_PROTOCOL).unwrap_or(false) {
                        return;
                    }
                    while let Ok(Some(req)) = conn.recv::<IndexRequestOf<String>>() {
                        if tx.send((n, req.clone())).is_err() {
                            return;
                        }
                        if let Some(reply) = script(n, &req)
                            && conn.send(&reply).is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        FakeIndex { addr, seen }
    }

    /// The next request (skipping others) for which `pred` holds.
    fn wait(&self, what: &str, pred: impl Fn(usize, &IndexRequestOf<String>) -> bool) -> usize {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.seen.recv_timeout(left) {
                Ok((n, req)) if pred(n, &req) => return n,
                Ok(_) => {}
                Err(e) => panic!("the index never saw {what}: {e}"),
            }
        }
    }
}

/// The answers of a well-behaved index that names no other supernode.
fn plain_answer(req: &IndexRequestOf<String>) -> Option<IndexResponse> {
    Some(match req {
        IndexRequestOf::Join { port, .. } => IndexResponse::Joined {
            addr: format!("127.0.0.1:{port}"),
        },
        IndexRequestOf::Leave => IndexResponse::Left,
        IndexRequestOf::Disconnect => IndexResponse::Bye,
        IndexRequestOf::Query { .. } => IndexResponse::NoSupernodes,
        IndexRequestOf::Ping => IndexResponse::Pong,
    })
}

fn start_superd_at(index: &str, repo: &Path, extra: &[&str]) -> Proc {
    let mut p = cmd(bin!("p2p-superd"))
        .arg(repo)
        .args(["--index", index, "--listen", "127.0.0.1:0"])
        .args(["--sync-interval", SYNC])
        .args(extra)
        .daemon();
    p.wait_stdout(|l| l.starts_with("joined the ring as "));
    p
}

#[test]
fn a_stuck_index_query_holds_up_neither_downloads_nor_heartbeats() {
    let dir = TempDir::new("dht-stuck-query");
    let repo = dir.sub("repo");
    fs::write(repo.join("held.txt"), b"held").unwrap();
    // The first query (the synchronizer's, for held.txt) is never answered;
    // any later one names a supernode elsewhere.
    let first = AtomicBool::new(true);
    let index = FakeIndex::start(move |_, req| match req {
        IndexRequestOf::Query { .. } if first.swap(false, Ordering::SeqCst) => None,
        IndexRequestOf::Query { .. } => Some(IndexResponse::Owner {
            addr: "127.0.0.1:9".to_string(),
        }),
        other => plain_answer(other),
    });
    let s = start_superd_at(&index.addr, &repo, &["--heartbeat", "0.2"]);
    let control = index.wait("a join", |_, r| matches!(r, IndexRequestOf::Join { .. }));
    index.wait(
        "the synchronizer's query",
        |_, r| matches!(r, IndexRequestOf::Query { name } if name == "held.txt"),
    );

    // While the synchronizer waits, heartbeats go on over the control
    // connection...
    for _ in 0..2 {
        index.wait("a heartbeat", |n, r| {
            n == control && *r == IndexRequestOf::Ping
        });
    }
    // ...and a download of a name not held here is redirected at once
    // (well within this client's 10 s, while the stuck query has 30 s).
    let t = Timeouts {
        connect: Duration::from_secs(10),
        io: Duration::from_secs(10),
    };
    let mut conn = Conn::open(&s.addr, &t, SUPER_PROTOCOL).unwrap();
    conn.send(&SuperRequestOf::Download {
        name: "elsewhere.txt".to_string(),
    })
    .unwrap();
    let reply = conn.expect::<SuperResponse>();
    assert!(
        matches!(&reply, Ok(SuperResponse::Redirect { addr }) if addr == "127.0.0.1:9"),
        "{reply:?}\n{}",
        s.dump()
    );
}

#[test]
fn an_upload_finishing_after_the_final_sync_began_is_not_confirmed() {
    let dir = TempDir::new("dht-late-upload");
    let repo = dir.sub("repo");
    // The index holds its answer to Disconnect until the test releases it,
    // so the supernode sits between its final scan and its exit.
    let (release, released) = mpsc::channel::<()>();
    let released = Mutex::new(released);
    let index = FakeIndex::start(move |_, req| {
        if *req == IndexRequestOf::Disconnect {
            let _ = released.lock().unwrap().recv_timeout(DEADLINE);
        }
        plain_answer(req)
    });
    let mut s = start_superd_at(&index.addr, &repo, &["--timeout", "3"]);
    let t = Timeouts::default();
    let mut uploader = Conn::open(&s.addr, &t, SUPER_PROTOCOL).unwrap();
    let mut second = Conn::open(&s.addr, &t, SUPER_PROTOCOL).unwrap();
    let body = pseudo_random_bytes(1000, 3);
    uploader
        .send(&SuperRequestOf::Upload {
            name: "late.txt".to_string(),
            size: body.len() as u64,
            digest: FileDigest::of(&body),
        })
        .unwrap();
    assert_eq!(
        uploader.expect::<SuperResponse>().unwrap(),
        SuperResponse::Ready
    );
    uploader.writer().write_all(&body[..10]).unwrap();
    uploader.flush().unwrap();

    s.terminate();
    index.wait("the supernode leaving", |_, r| *r == IndexRequestOf::Leave);
    // A new upload is refused from then on, even on an open connection.
    second
        .send(&SuperRequestOf::Upload {
            name: "new.txt".to_string(),
            size: 1,
            digest: FileDigest::of(b"x"),
        })
        .unwrap();
    let text = error_text(second.expect::<SuperResponse>().unwrap());
    assert!(text.contains("leaving"), "{text}");

    // Keep the first upload alive, a byte at a time, past the supernode's
    // wait for uploads in flight (its 3 s timeout) until it disconnects.
    let mut sent = 10;
    let deadline = Instant::now() + DEADLINE;
    loop {
        match index.seen.recv_timeout(Duration::from_millis(100)) {
            Ok((_, IndexRequestOf::Disconnect)) => break,
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(e) => panic!("{e}\n{}", s.dump()),
        }
        assert!(
            sent < body.len() - 1 && Instant::now() < deadline,
            "no disconnect\n{}",
            s.dump()
        );
        uploader.writer().write_all(&body[sent..sent + 1]).unwrap();
        uploader.flush().unwrap();
        sent += 1;
    }
    // The final scan is over: the upload must not be answered Stored.
    uploader.writer().write_all(&body[sent..]).unwrap();
    uploader.flush().unwrap();
    let reply = uploader.expect::<SuperResponse>().unwrap();
    release.send(()).unwrap();
    let text = error_text(reply);
    assert!(text.contains("final sync"), "{text}");
    assert!(s.wait_exit().success(), "{}", s.dump());
    s.wait_stderr(|l| l.contains("late.txt arrived after the final sync began"));
}

#[test]
fn the_index_drops_a_member_that_misses_three_heartbeats_whatever_its_idle_timeout() {
    // An idle timeout far beyond the test's deadline: only the member's
    // own heartbeat period can bring the removal in time.
    let mut index = cmd(bin!("p2p-index"))
        .args(["--listen", "127.0.0.1:0", "--idle-timeout", "600"])
        .daemon();
    let t = Timeouts::default();
    let mut conn = Conn::open(&index.addr, &t, INDEX_PROTOCOL).unwrap();
    conn.send(&IndexRequestOf::<String>::Join {
        port: 4999,
        heartbeat_ms: 200,
    })
    .unwrap();
    let IndexResponse::Joined { addr } = conn.expect::<IndexResponse>().unwrap() else {
        panic!("join refused\n{}", index.dump());
    };
    index.wait_stdout(|l| l == format!("joined {addr}"));
    // Three missed heartbeats of 0.2 s plus a second: the member goes,
    // although its connection is still open.
    let started = Instant::now();
    index.wait_stdout(|l| l == format!("removed {addr} (connection lost)"));
    eprintln!("dropped after {:?} of silence", started.elapsed());
    // Its connection was closed with it.
    conn.send(&IndexRequestOf::<String>::Ping).unwrap_or(());
    assert!(conn.expect::<IndexResponse>().is_err());
    drop(conn);
}
