//! Integration tests of the dht system: the real `p2p-*` programs on
//! 127.0.0.1 port 0, balancing, redirects, uploads, leaving, bad input.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use peerkit::dht::proto::{
    INDEX_PROTOCOL, IndexRequestOf, IndexResponse, SUPER_PROTOCOL, SuperRequestOf, SuperResponse,
};
use peerkit::dht::ring::Ring;
use peerkit::digest::{FileDigest, hash_file};
use peerkit::frame::{self, Conn};
use peerkit::net::Timeouts;

use crate::bin;
use crate::harness::*;

const SYNC: &str = "0.2";

fn start_index() -> Proc {
    cmd(bin!("p2p-index"))
        .args(["--listen", "127.0.0.1:0"])
        .daemon()
}

/// A supernode over `repo`; `addr` is its address in the ring.
fn start_superd(index: &Proc, repo: &Path) -> Proc {
    let mut p = cmd(bin!("p2p-superd"))
        .arg(repo)
        .args(["--index", &index.addr, "--listen", "127.0.0.1:0"])
        .args(["--sync-interval", SYNC])
        .daemon();
    let line = p.wait_stdout(|l| l.starts_with("joined the ring as "));
    assert_eq!(line["joined the ring as ".len()..], p.addr, "{}", p.dump());
    p
}

fn ring_of(nodes: &[&Proc]) -> Ring {
    let mut r = Ring::new();
    for n in nodes {
        r.add(&n.addr);
    }
    r
}

fn copy_repo01(dest: &Path) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/repo01");
    let mut names = Vec::new();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        fs::copy(e.path(), dest.join(&name)).unwrap();
        names.push(name);
    }
    names.sort();
    assert_eq!(names.len(), 6);
    names
}

fn dump_all(procs: &[&Proc]) -> String {
    procs.iter().map(|p| p.dump()).collect()
}

/// Waits until each name is in the repo of its owner with `src`'s bytes.
fn wait_balanced(names: &[String], src: &Path, nodes: &[(&Proc, &Path)], procs: &[&Proc]) {
    let ring = ring_of(&nodes.iter().map(|(p, _)| *p).collect::<Vec<_>>());
    for name in names {
        let owner = ring.owner(name).unwrap();
        let (_, repo) = nodes.iter().find(|(p, _)| p.addr == owner).unwrap();
        let want = fs::read(src.join(name)).unwrap();
        wait_until(
            &format!("{name} on its owner {owner}"),
            || (fs::read(repo.join(name)).ok()? == want).then_some(()),
            || dump_all(procs),
        );
    }
}

fn host_port(p: &Proc) -> (String, String) {
    let (h, port) = p.addr.rsplit_once(':').unwrap();
    (h.to_string(), port.to_string())
}

fn ls(p: &Proc) -> Vec<String> {
    let (h, port) = host_port(p);
    cmd(bin!("p2p-ls"))
        .args([&h, &port])
        .run()
        .ok()
        .stdout_lines()
}

/// A name owned by `owner` in `ring`, from a numbered family.
fn name_owned_by(ring: &Ring, owner: &str, prefix: &str) -> String {
    (0..10_000)
        .map(|i| format!("{prefix}-{i}.txt"))
        .find(|n| ring.owner(n) == Some(owner))
        .unwrap()
}

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
            s.wait_stdout_any(|l| l.starts_with(&format!("receiving {name} from 127.0.0.1:")));
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
    let (h, port) = host_port(&s1);
    cmd(bin!("p2p-put"))
        .arg(&h)
        .arg(&port)
        .arg(&local)
        .run()
        .ok();
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
fn download_redirects_and_reports_missing_names() {
    let dir = TempDir::new("dht-redirect");
    let (ra, rb) = (dir.sub("a"), dir.sub("b"));
    let index = start_index();
    let a = start_superd(&index, &ra);
    let b = start_superd(&index, &rb);
    let ring = ring_of(&[&a, &b]);

    // A file only B has, which B is responsible for: asking A redirects.
    let name = name_owned_by(&ring, &b.addr, "doc");
    fs::write(rb.join(&name), b"held by b\n").unwrap();
    let (ah, ap) = host_port(&a);
    let out = dir.path().join("out.txt");
    let run = cmd(bin!("p2p-get"))
        .args([&ah, &ap, &name, "-o"])
        .arg(&out)
        .run()
        .ok()
        .stderr_has(&format!(
            "{name} not found at {}, redirecting to {}",
            a.addr, b.addr
        ));
    assert_eq!(fs::read(&out).unwrap(), b"held by b\n", "{}", run.dump());

    // Default destination is the current folder; `-o -` is stdout.
    let cwd = dir.sub("cwd");
    cmd(bin!("p2p-get"))
        .args([&ah, &ap, &name])
        .cwd(&cwd)
        .run()
        .ok();
    assert_eq!(fs::read(cwd.join(&name)).unwrap(), b"held by b\n");
    cmd(bin!("p2p-get"))
        .args([&ah, &ap, &name, "-o", "-"])
        .run()
        .ok()
        .stdout_has("held by b");

    // A pipe (or a device such as /dev/null) is written into, not replaced.
    let fifo = dir.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(fifo).unwrap())
    };
    cmd(bin!("p2p-get"))
        .args([&ah, &ap, &name, "-o"])
        .arg(&fifo)
        .run()
        .ok();
    assert_eq!(reader.join().unwrap(), b"held by b\n");
    {
        use std::os::unix::fs::FileTypeExt;
        assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
    }

    // A name nobody has, whichever supernode is responsible for it.
    for missing in [
        name_owned_by(&ring, &a.addr, "missing"),
        name_owned_by(&ring, &b.addr, "missing"),
    ] {
        cmd(bin!("p2p-get"))
            .args([&ah, &ap, &missing])
            .cwd(&cwd)
            .run()
            .code(1)
            .stderr_has(&format!("{missing} is not available in the network"));
        assert!(!cwd.join(&missing).exists());
    }

    // A bad name is refused locally; a dead supernode is a clear error.
    cmd(bin!("p2p-get"))
        .args([&ah, &ap, "../x"])
        .run()
        .code(2)
        .stderr_has("invalid file name");
    let (_, out) = run_against_dead_port(|port| {
        cmd(bin!("p2p-get"))
            .args(["127.0.0.1", &port.to_string(), "x"])
            .run()
    });
    out.code(2).stderr_has("connection refused");
}

/// Runs `run(port)` against a local port that nothing listens on, for tests
/// of the "connection refused" error. The port is found by binding port 0
/// and closing the listener, so a test running in parallel may take it
/// before `run` connects. A run that saw no refusal is retried on a fresh
/// port only if something now listens on the old one; otherwise it is
/// returned as it is, for the caller's assertions to fail on.
fn run_against_dead_port(run: impl Fn(u16) -> Output) -> (u16, Output) {
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = run(port);
        let taken = !out.stderr.contains("connection refused")
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if !taken {
            return (port, out);
        }
    }
    panic!("five closed ports in a row were taken by someone else");
}

#[test]
fn duplicate_upload_is_refused_and_nothing_is_overwritten() {
    let dir = TempDir::new("dht-dup");
    let repo = dir.sub("repo");
    let index = start_index();
    let s = start_superd(&index, &repo);
    let (h, port) = host_port(&s);
    let local = dir.path().join("notes.txt");
    fs::write(&local, b"first version\n").unwrap();
    cmd(bin!("p2p-put"))
        .arg(&h)
        .arg(&port)
        .arg(&local)
        .run()
        .ok();
    assert_eq!(
        fs::read(repo.join("notes.txt")).unwrap(),
        b"first version\n"
    );
    s.wait_stdout_any(|l| l.starts_with("receiving notes.txt from 127.0.0.1:"));

    fs::write(&local, b"second version, longer\n").unwrap();
    cmd(bin!("p2p-put"))
        .arg(&h)
        .arg(&port)
        .arg(&local)
        .run()
        .code(1)
        .stderr_has(&format!("notes.txt already exists at {}", s.addr));
    assert_eq!(
        fs::read(repo.join("notes.txt")).unwrap(),
        b"first version\n"
    );
    assert_eq!(ls(&s), ["notes.txt"]);
    let json = cmd(bin!("p2p-ls")).args([&h, &port, "--json"]).run().ok();
    assert_eq!(json.stdout.trim(), "[\"notes.txt\"]");
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
    let (bh, bp) = host_port(&b);
    let mut held = Vec::new();
    for i in 0..8 {
        let name = name_owned_by(&ring, &b.addr, &format!("leave{i}"));
        let local = dir.path().join(&name);
        fs::write(&local, format!("content of {name}\n")).unwrap();
        cmd(bin!("p2p-put"))
            .arg(&bh)
            .arg(&bp)
            .arg(&local)
            .run()
            .ok();
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

#[test]
fn hundred_megabyte_transfer_keeps_its_hash() {
    let dir = TempDir::new("dht-big");
    let repo = dir.sub("repo");
    let index = start_index();
    let s = start_superd(&index, &repo);
    let (h, port) = host_port(&s);
    let local = dir.path().join("big.bin");
    write_random_file(&local, 100 << 20, 7);
    let (want, len) = hash_file(&local).unwrap();
    assert_eq!(len, 100 << 20);
    cmd(bin!("p2p-put"))
        .arg(&h)
        .arg(&port)
        .arg(&local)
        .run()
        .ok();
    assert_eq!(hash_file(&repo.join("big.bin")).unwrap(), (want, len));
    let out = dir.path().join("back.bin");
    cmd(bin!("p2p-get"))
        .args([&h, &port, "big.bin", "-o"])
        .arg(&out)
        .run()
        .ok();
    assert_eq!(hash_file(&out).unwrap(), (want, len));
}

/// The supernodes' and index's reply to a frame that is not a valid request.
fn error_text<T: std::fmt::Debug>(reply: T) -> String {
    let text = format!("{reply:?}");
    assert!(text.starts_with("Error"), "expected an error reply: {text}");
    text
}

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

#[test]
fn programs_have_help_and_version_and_clear_errors() {
    for b in [
        bin!("p2p-index"),
        bin!("p2p-superd"),
        bin!("p2p-ls"),
        bin!("p2p-get"),
        bin!("p2p-put"),
    ] {
        cmd(b)
            .arg("--help")
            .run()
            .ok()
            .stdout_has("Usage")
            .stdout_has("Example:")
            .stdout_has("--quiet")
            .stdout_has("--verbose");
        cmd(b).arg("--version").run().ok().stdout_has("0.1.0");
    }
    // The defaults: where the daemons listen, what the supernode shares.
    cmd(bin!("p2p-index"))
        .arg("--help")
        .run()
        .stdout_has("0.0.0.0:6110");
    cmd(bin!("p2p-superd"))
        .arg("--help")
        .run()
        .stdout_has("[default: localhost:6110]")
        .stdout_has("(0.0.0.0)")
        .stdout_has("Hidden");
    let dir = TempDir::new("dht-errors");
    let (port, out) = run_against_dead_port(|port| {
        cmd(bin!("p2p-superd"))
            .arg(dir.path())
            .args(["--index", &format!("127.0.0.1:{port}")])
            .args(["--listen", "127.0.0.1:0"])
            .run()
    });
    let dead = format!("127.0.0.1:{port}");
    out.code(2).stderr_has(&format!(
        "p2p-superd: connecting to index {dead}: connection refused"
    ));
    cmd(bin!("p2p-superd"))
        .arg(dir.path())
        .args(["--index", &dead, "--heartbeat", "11"])
        .run()
        .code(2)
        .stderr_has("--heartbeat must be a positive number of seconds, at most 10");
    cmd(bin!("p2p-superd"))
        .arg(dir.path().join("nope"))
        .args(["--index", &dead])
        .run()
        .code(2)
        .stderr_has("repository");
}

/// One request as a scripted index saw it: the connection's number (from 0,
/// in accept order) and the request.
type Seen = (usize, IndexRequestOf<String>);

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

/// A supernode stand-in for one download: after the handshake and the
/// request, `serve` answers on the connection as it likes.
fn fake_supernode(serve: impl FnOnce(&mut Conn) + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let mut conn = Conn::new(stream).unwrap();
        if !conn.server_handshake(SUPER_PROTOCOL).unwrap_or(false) {
            return;
        }
        let Ok(Some(_)) = conn.recv::<SuperRequestOf<String>>() else {
            return;
        };
        serve(&mut conn);
    });
    addr
}

/// A supernode stand-in for one download: it answers `File` for `body`,
/// sends the first `cut` bytes, then holds the connection open until the
/// returned sender is dropped (or, with `hold` false, closes it at once).
fn cutting_supernode(body: Vec<u8>, cut: usize, hold: bool) -> (String, mpsc::Sender<()>) {
    let (release, held) = mpsc::channel::<()>();
    let addr = fake_supernode(move |conn| {
        let _ = conn.queue(&SuperResponse::File {
            size: body.len() as u64,
        });
        let _ = conn.writer().write_all(&body[..cut]);
        let _ = conn.flush();
        if hold {
            // Until the test is done with it.
            let _ = held.recv_timeout(DEADLINE);
        }
    });
    (addr, release)
}

/// A supernode stand-in that sends all of `body` and then `after` (the
/// digest, or something else) in place of the digest trailer.
fn trailing_supernode(body: Vec<u8>, after: SuperResponse) -> String {
    fake_supernode(move |conn| {
        let _ = conn.queue(&SuperResponse::File {
            size: body.len() as u64,
        });
        let _ = conn.writer().write_all(&body);
        let _ = conn.send(&after);
    })
}

#[test]
fn the_digest_after_the_body_decides_whether_a_download_is_kept() {
    let dir = TempDir::new("dht-trailer");
    let work = dir.sub("work");
    let body = pseudo_random_bytes((2 << 20) + 77, 9);

    // The right BLAKE3 digest (computed here, not by our supernode): kept.
    let addr = trailing_supernode(
        body.clone(),
        SuperResponse::Sent {
            digest: FileDigest::of(&body),
        },
    );
    cmd(bin!("p2p-get"))
        .args([&addr, "f.bin", "-v"])
        .cwd(&work)
        .run()
        .ok()
        .stderr_has(&format!("f.bin: BLAKE3 {} verified", FileDigest::of(&body)));
    assert!(fs::read(work.join("f.bin")).unwrap() == body);
    fs::remove_file(work.join("f.bin")).unwrap();

    // A wrong digest, to a file or to standard output: refused, nothing left.
    for out in [None, Some("-")] {
        let addr = trailing_supernode(
            body.clone(),
            SuperResponse::Sent {
                digest: FileDigest::of(b"something else"),
            },
        );
        let mut args = vec![addr.as_str(), "f.bin"];
        if let Some(o) = out {
            args.extend(["-o", o]);
        }
        cmd(bin!("p2p-get"))
            .args(&args)
            .cwd(&work)
            .run()
            .code(2)
            .stderr_has("BLAKE3 mismatch");
        assert!(names_in(&work).is_empty(), "{:?}", names_in(&work));
    }

    // The supernode saying the file changed while it was sent, or closing
    // instead of sending the digest: an error naming it, nothing left.
    let addr = trailing_supernode(
        body.clone(),
        SuperResponse::Error {
            message: "reading f.bin: f.bin changed while being hashed".into(),
        },
    );
    cmd(bin!("p2p-get"))
        .args([&addr, "f.bin"])
        .cwd(&work)
        .run()
        .code(2)
        .stderr_has(&format!("getting f.bin from {addr}"))
        .stderr_has("changed while being hashed");
    assert!(names_in(&work).is_empty());
    let addr = fake_supernode(move |conn| {
        let _ = conn.queue(&SuperResponse::File {
            size: body.len() as u64,
        });
        let _ = conn.writer().write_all(&body);
        let _ = conn.flush();
    });
    cmd(bin!("p2p-get"))
        .args([&addr, "f.bin"])
        .cwd(&work)
        .run()
        .code(2)
        .stderr_has("connection closed by peer");
    assert!(names_in(&work).is_empty());
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
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

#[test]
fn ctrl_c_or_sigterm_during_p2p_get_leaves_nothing_behind() {
    let body = pseudo_random_bytes(4 << 20, 11);
    for (signal, keep) in [("INT", false), ("TERM", false), ("INT", true)] {
        let dir = TempDir::new("dht-interrupt");
        let (addr, release) = cutting_supernode(body.clone(), 1 << 20, true);
        let out = dir.path().join("big.bin");
        let mut get = cmd(bin!("p2p-get"))
            .args([&addr, "big.bin", "-o"])
            .arg(&out)
            .args(keep.then_some("--keep-partial"))
            .start();
        let partial = dir.path().join(".big.bin.part");
        wait_until(
            "the partial file to fill",
            || (fs::metadata(&partial).ok()?.len() > 0).then_some(()),
            || get.dump(),
        );
        if signal == "INT" {
            get.interrupt();
        } else {
            get.terminate();
        }
        let status = get.wait_exit();
        assert_eq!(status.code(), Some(130), "{}", get.dump());
        let left = names_in(dir.path());
        if keep {
            assert_eq!(left, [".big.bin.part"], "{}", get.dump());
            assert!(get.stderr_lines().iter().any(|l| l.contains("--continue")));
        } else {
            assert!(left.is_empty(), "SIG{signal} left {left:?}\n{}", get.dump());
        }
        drop(release);
    }
}

#[test]
fn continue_after_a_cut_transfer_gives_an_identical_file() {
    let dir = TempDir::new("dht-continue");
    let repo = dir.sub("repo");
    let body = pseudo_random_bytes(3 << 20, 5);
    fs::write(repo.join("big.bin"), &body).unwrap();
    let work = dir.sub("work");

    // A cut transfer without --keep-partial leaves nothing.
    let (addr, _r) = cutting_supernode(body.clone(), (1 << 20) + 12_345, false);
    cmd(bin!("p2p-get"))
        .args([&addr, "big.bin"])
        .cwd(&work)
        .run()
        .code(2);
    assert!(names_in(&work).is_empty());

    // With it, what arrived stays for --continue.
    let (addr, _r) = cutting_supernode(body.clone(), (1 << 20) + 12_345, false);
    cmd(bin!("p2p-get"))
        .args([&addr, "big.bin", "--keep-partial"])
        .cwd(&work)
        .run()
        .code(2)
        .stderr_has(&format!("getting big.bin from {addr}"))
        .stderr_has("partial download kept in .big.bin.part");
    let kept = fs::read(work.join(".big.bin.part")).unwrap();
    assert!(!kept.is_empty() && kept.len() < body.len());
    assert_eq!(kept[..], body[..kept.len()]);

    let index = start_index();
    let s = start_superd(&index, &repo);
    cmd(bin!("p2p-get"))
        .args([&s.addr, "big.bin", "--continue", "-v"])
        .cwd(&work)
        .run()
        .ok()
        .stderr_has(&format!("resuming big.bin after byte {}", kept.len()))
        .stderr_has(&format!(
            "big.bin: BLAKE3 {} verified",
            FileDigest::of(&body)
        ));
    assert!(fs::read(work.join("big.bin")).unwrap() == body);
    assert_eq!(names_in(&work), ["big.bin"]);

    // A partial file that does not match is caught by the whole-file hash
    // and removed; a plain run then succeeds.
    fs::write(work.join(".other.bin.part"), b"not the start of it").unwrap();
    fs::write(repo.join("other.bin"), &body[..100_000]).unwrap();
    cmd(bin!("p2p-get"))
        .args([&s.addr, "other.bin", "-c"])
        .cwd(&work)
        .run()
        .code(2)
        .stderr_has("BLAKE3 mismatch");
    assert_eq!(names_in(&work), ["big.bin"]);
    // --continue without a partial file is a plain download.
    cmd(bin!("p2p-get"))
        .args([&s.addr, "other.bin", "-c"])
        .cwd(&work)
        .run()
        .ok();
    assert!(fs::read(work.join("other.bin")).unwrap() == body[..100_000]);
}

#[test]
fn p2p_get_never_overwrites_without_force_and_names_local_paths() {
    let dir = TempDir::new("dht-clobber");
    let repo = dir.sub("repo");
    fs::write(repo.join("x.txt"), b"remote\n").unwrap();
    let index = start_index();
    let s = start_superd(&index, &repo);
    let work = dir.sub("work");
    fs::write(work.join("x.txt"), b"mine\n").unwrap();
    cmd(bin!("p2p-get"))
        .args([&s.addr, "x.txt"])
        .cwd(&work)
        .run()
        .code(1)
        .stderr_has("p2p-get: x.txt: already exists (use --force to replace it)");
    assert_eq!(fs::read(work.join("x.txt")).unwrap(), b"mine\n");
    cmd(bin!("p2p-get"))
        .args([&s.addr, "x.txt", "--force"])
        .cwd(&work)
        .run()
        .ok();
    assert_eq!(fs::read(work.join("x.txt")).unwrap(), b"remote\n");
    assert_eq!(names_in(&work), ["x.txt"]);
    // A folder as the destination: NAME goes into it.
    let into = dir.sub("into");
    cmd(bin!("p2p-get"))
        .args([&s.addr, "x.txt", "-o"])
        .arg(&into)
        .run()
        .ok();
    assert_eq!(fs::read(into.join("x.txt")).unwrap(), b"remote\n");

    cmd(bin!("p2p-get"))
        .args([&s.addr, "x.txt", "-o", "nodir/x.txt"])
        .cwd(&work)
        .run()
        .code(2)
        .stderr_has("p2p-get: writing nodir/x.txt: no such file or directory");
    cmd(bin!("p2p-put"))
        .args([&s.addr, "nodir/y.txt"])
        .cwd(&work)
        .run()
        .code(2)
        .stderr_has("p2p-put: reading nodir/y.txt: no such file or directory");
}

#[test]
fn clients_take_host_colon_port_or_host_and_port() {
    let dir = TempDir::new("dht-addr");
    let repo = dir.sub("repo");
    let index = start_index();
    let s = start_superd(&index, &repo);
    let (h, p) = host_port(&s);
    let work = dir.sub("work");
    fs::write(work.join("one.txt"), b"1").unwrap();
    fs::write(work.join("two.txt"), b"2").unwrap();
    cmd(bin!("p2p-put"))
        .args([&s.addr, "one.txt"])
        .cwd(&work)
        .run()
        .ok();
    cmd(bin!("p2p-put"))
        .args([&h, &p, "two.txt"])
        .cwd(&work)
        .run()
        .ok();
    for args in [vec![s.addr.clone()], vec![h.clone(), p.clone()]] {
        let out = cmd(bin!("p2p-ls")).args(&args).run().ok();
        assert_eq!(out.stdout_lines(), ["one.txt", "two.txt"]);
    }
    let get = dir.sub("get");
    cmd(bin!("p2p-get"))
        .args([&s.addr, "one.txt"])
        .cwd(&get)
        .run()
        .ok();
    cmd(bin!("p2p-get"))
        .args([&h, &p, "two.txt"])
        .cwd(&get)
        .run()
        .ok();
    assert_eq!(names_in(&get), ["one.txt", "two.txt"]);
    cmd(bin!("p2p-ls"))
        .arg(format!("{h}:port"))
        .run()
        .code(2)
        .stderr_has("is not HOST:PORT");
    cmd(bin!("p2p-ls"))
        .args([&h, "port"])
        .run()
        .code(2)
        .stderr_has("is not a port number");
}

#[test]
fn p2p_ls_escapes_control_characters_and_json_stays_exact() {
    let dir = TempDir::new("dht-escape");
    let repo = dir.sub("repo");
    for n in ["a\nb", "x y", "tab\there", "plain.txt"] {
        fs::write(repo.join(n), n).unwrap();
    }
    let index = start_index();
    let s = start_superd(&index, &repo);
    let out = cmd(bin!("p2p-ls")).arg(&s.addr).run().ok();
    assert_eq!(
        out.stdout_lines(),
        ["'a'$'\\n''b'", "plain.txt", "'tab'$'\\t''here'", "x y"],
        "{}",
        out.dump()
    );
    let json = cmd(bin!("p2p-ls")).args([&s.addr, "--json"]).run().ok();
    assert_eq!(
        json.stdout.trim(),
        r#"["a\nb","plain.txt","tab\there","x y"]"#
    );
}

#[test]
fn quiet_and_verbose_mean_the_same_in_every_dht_program() {
    let dir = TempDir::new("dht-verbosity");
    let (ra, rb) = (dir.sub("a"), dir.sub("b"));
    let index = cmd(bin!("p2p-index"))
        .args(["--listen", "127.0.0.1:0", "-v"])
        .daemon();
    let a = start_superd(&index, &ra);
    let mut quiet = cmd(bin!("p2p-superd"))
        .arg(&rb)
        .args(["--index", &index.addr, "--listen", "127.0.0.1:0", "-q"])
        .args(["--sync-interval", SYNC])
        .daemon();
    let ring = ring_of(&[&a, &quiet]);
    let name = name_owned_by(&ring, &quiet.addr, "q");
    fs::write(ra.join(&name), b"q").unwrap();
    wait_until(
        "the file on the quiet supernode",
        || rb.join(&name).exists().then_some(()),
        || dump_all(&[&index, &a, &quiet]),
    );
    // Asked about by A's synchronizer: the verbose index says so.
    index.wait_stdout_any(|l| l.contains(&format!("{name} -> {}", quiet.addr)));

    // Asking A for a file only the quiet one has redirects there: said
    // normally, not with -q; -v tells each step.
    let only_there = name_owned_by(&ring, &quiet.addr, "r");
    fs::write(rb.join(&only_there), b"r").unwrap();
    let get = |flag: Option<&str>| {
        cmd(bin!("p2p-get"))
            .args([&a.addr, &only_there, "-o", "-"])
            .args(flag)
            .run()
            .ok()
            .stdout_has("r")
    };
    let normal = get(None);
    assert_eq!(normal.stderr.lines().count(), 1, "{}", normal.dump());
    assert!(normal.stderr.contains("redirecting"), "{}", normal.dump());
    let quiet_get = get(Some("-q"));
    assert_eq!(quiet_get.stderr, "", "{}", quiet_get.dump());
    let verbose = get(Some("--verbose"))
        .stderr_has(&format!("asking {} for {only_there}", a.addr))
        .stderr_has(&format!(
            "{only_there}: BLAKE3 {} verified",
            FileDigest::of(b"r")
        ));
    assert!(verbose.stderr.lines().count() > 3, "{}", verbose.dump());

    // A quiet daemon prints its readiness line and nothing else.
    quiet.terminate();
    assert!(quiet.wait_exit().success(), "{}", quiet.dump());
    assert_eq!(quiet.stdout_lines().len(), 1, "{}", quiet.dump());
    // Errors still show when quiet.
    cmd(bin!("p2p-get"))
        .args([&a.addr, "nowhere.txt", "-q"])
        .cwd(dir.path())
        .run()
        .code(1)
        .stderr_has("nowhere.txt is not available");
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
