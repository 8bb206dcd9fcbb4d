//! Integration tests of the flood system: real `kv-servent` and `kv-query`
//! processes on 127.0.0.1, the diamond and chain topologies from testdata,
//! and raw protocol bytes written out by hand.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::bin;
use crate::harness::*;

/// The quiet time given to kv-query here (seconds): longer than any test.
/// A query ends when the test ends its wait with SIGTERM, once the servents'
/// own lines show the flood is over, so a slow machine only makes these
/// tests slower.
const NEVER: &str = "3600";

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/flood")
}

/// One servent of a topology file: name, key-value file, neighbour names.
struct Node {
    name: String,
    kv: PathBuf,
    neighbours: Vec<String>,
}

fn read_topology(name: &str) -> Vec<Node> {
    let text = std::fs::read_to_string(testdata().join(format!("{name}.topo"))).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| {
            let mut words = l.split_whitespace();
            Node {
                name: words.next().unwrap().to_string(),
                kv: testdata().join(words.next().unwrap()),
                neighbours: words.map(str::to_string).collect(),
            }
        })
        .collect()
}

/// Running servents by name.
struct Net {
    procs: Vec<(String, Proc)>,
}

impl Net {
    fn get(&mut self, name: &str) -> &mut Proc {
        &mut self
            .procs
            .iter_mut()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no servent {name}"))
            .1
    }

    fn addr(&mut self, name: &str) -> String {
        self.get(name).addr.clone()
    }

    fn dump(&self) -> String {
        self.procs.iter().map(|(_, p)| p.dump()).collect()
    }

    /// Starts `node` with `extra` flags, connected to its running neighbours,
    /// and waits until each neighbour has registered the link.
    fn start(&mut self, node: &Node, extra: &[&str]) {
        let addrs: Vec<String> = node.neighbours.iter().map(|n| self.addr(n)).collect();
        let p = servent(&node.kv, &addrs, extra);
        for n in &node.neighbours {
            self.get(n).wait_stdout(|l| l.starts_with("link in "));
        }
        self.procs.push((node.name.clone(), p));
    }

    /// Asks servent `entry` one `query`; returns the answers' values and the
    /// query's origin once every servent in `reached` has forwarded or
    /// stopped it and each in `answerers` has answered it. The client must
    /// then have exactly one answer per answerer.
    fn query(
        &mut self,
        entry: &str,
        query: &str,
        reached: &[&str],
        answerers: &[&str],
    ) -> (Vec<String>, String) {
        assert!(reached.contains(&entry), "the entry servent handles it");
        let before = client_lines(self.get(entry)).len();
        let addr = self.addr(entry);
        let q = Query::start(&addr, query);
        let origin = self.next_origin(entry, before);
        self.settled(&origin, 0, reached, answerers);
        (values(&q.finish_after(answerers.len())), origin)
    }

    /// The origin of the first client of `entry` after its first `before`.
    fn next_origin(&mut self, entry: &str, before: usize) -> String {
        let p = self.get(entry);
        wait_until(
            "the servent logs its new client",
            || client_lines(p).get(before).cloned(),
            || p.dump(),
        )
    }

    /// Waits until query (`origin`, `seq`) was forwarded or stopped by every
    /// servent in `reached` and answered by every one in `answerers`.
    fn settled(&mut self, origin: &str, seq: u32, reached: &[&str], answerers: &[&str]) {
        let forwarded = format!("forwarded {origin} seq {seq} ");
        let stopped = format!("stopped {origin} seq {seq}");
        for n in reached {
            self.get(n)
                .wait_stdout_any(|l| l.starts_with(&forwarded) || l == stopped);
        }
        let answered = format!("answered {origin} seq {seq}");
        for n in answerers {
            self.get(n).wait_stdout_any(|l| l == answered);
        }
    }

    fn remove(&mut self, name: &str) -> Proc {
        let i = self.procs.iter().position(|(n, _)| n == name).unwrap();
        self.procs.remove(i).1
    }
}

fn servent(kv: &Path, neighbours: &[String], extra: &[&str]) -> Proc {
    cmd(bin!("kv-servent"))
        .args(["--bind", "127.0.0.1"])
        .args(extra)
        .arg("0")
        .arg(kv)
        .args(neighbours)
        .daemon()
}

/// Starts a topology from testdata; `extra(name)` gives per-servent flags.
fn start_topology(name: &str, extra: impl Fn(&str) -> Vec<&'static str>) -> Net {
    let mut net = Net { procs: Vec::new() };
    for node in read_topology(name) {
        net.start(&node, &extra(&node.name));
    }
    net
}

/// A running kv-query whose waits end only when the test says so.
struct Query {
    p: Proc,
}

impl Query {
    /// `kv-query ADDR QUERY`, one-shot.
    fn start(addr: &str, query: &str) -> Query {
        Query::with(cmd(bin!("kv-query")).args(["--wait", NEVER, addr, query]))
    }

    fn with(spawn: Spawn) -> Query {
        Query { p: spawn.start() }
    }

    /// Waits until `n` answer lines have come in all.
    fn wait_answers(&mut self, n: usize) {
        let p = &self.p;
        wait_until(
            &format!("{n} answer lines"),
            || (p.stdout_lines().len() >= n).then_some(()),
            || p.dump(),
        );
    }

    /// Ends the wait in progress (SIGTERM), as a quiet time would.
    fn end_wait(&self) {
        self.p.terminate();
    }

    /// Waits for `n` answers in all, ends the wait and returns the answer
    /// lines; kv-query must exit 0, or 1 with `no response received` if
    /// `n` is 0.
    fn finish_after(mut self, n: usize) -> Vec<String> {
        self.wait_answers(n);
        self.end_wait();
        let status = self.p.wait_exit();
        if n == 0 {
            assert_eq!(status.code(), Some(1), "{}", self.p.dump());
            self.p.wait_stderr(|l| l.contains("no response received"));
        } else {
            assert!(status.success(), "{}", self.p.dump());
        }
        let lines = self.p.stdout_lines();
        assert_eq!(lines.len(), n, "{}", self.p.dump());
        lines
    }
}

/// The values of `<value> <ip>:<port>` answer lines.
fn values(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let (value, from) = l.rsplit_once(' ').expect("answer line");
            assert!(from.starts_with("127.0.0.1:"), "bad answer line {l:?}");
            value.to_string()
        })
        .collect()
}

fn value_set(values: &[String]) -> BTreeSet<String> {
    values.iter().cloned().collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The origins (client answer addresses) a servent logged for its clients.
fn client_lines(p: &Proc) -> Vec<String> {
    p.stdout_lines()
        .iter()
        .filter_map(|l| l.strip_prefix("client ")?.split(" answers to ").nth(1))
        .map(str::to_string)
        .collect()
}

const DIAMOND: [&str; 4] = ["s1", "s2", "s3", "s4"];

#[test]
fn diamond_answers_exactly_once() {
    let mut net = start_topology("diamond", |_| vec![]);

    let (got, origin) = net.query("s1", "?imap", &DIAMOND, &["s4"]);
    assert_eq!(
        got,
        vec!["143/tcp imap2 # Internet Message Access Protocol"],
        "{}",
        net.dump()
    );
    // The two copies s1 sends around the cycle meet somewhere: usually at
    // s4, but s2 or s3 when the copy coming round through s4 wins the race.
    let dup = format!("duplicate {origin} seq 0 ");
    wait_until(
        "a duplicate dropped on the cycle",
        || {
            net.procs
                .iter()
                .any(|(_, p)| p.stdout_lines().iter().any(|l| l.starts_with(&dup)))
                .then_some(())
        },
        || net.dump(),
    );
    let s4 = net.get("s4");
    let answered = s4
        .stdout_lines()
        .iter()
        .filter(|l| l.starts_with(&format!("answered {origin} seq 0")))
        .count();
    assert_eq!(answered, 1, "{}", s4.dump());

    // A key held on both sides is answered by both.
    let (got, _) = net.query("s1", "?http", &DIAMOND, &["s2", "s3"]);
    assert_eq!(
        value_set(&got),
        set(&[
            "80/tcp www # WorldWideWeb HTTP (copy held by s2)",
            "80/tcp www # WorldWideWeb HTTP (copy held by s3)",
        ])
    );

    // Every servent holds "servent": each answers once.
    let (got, _) = net.query("s1", "?servent", &DIAMOND, &DIAMOND);
    assert_eq!(value_set(&got), set(&DIAMOND));
}

#[test]
fn chain_reach_follows_the_ttl() {
    let nodes = read_topology("chain");
    let (entry, rest) = nodes.split_last().unwrap();
    assert_eq!(entry.name, "s1");
    let mut net = Net { procs: Vec::new() };
    for node in rest {
        net.start(node, &[]);
    }
    let names = ["s1", "s2", "s3", "s4", "s5", "s6"];
    for ttl in 1..=3usize {
        net.start(entry, &["--ttl", &ttl.to_string()]);
        let reach = &names[..=ttl];

        let (got, origin) = net.query("s1", "?servent", reach, reach);
        assert_eq!(value_set(&got), set(reach), "ttl {ttl}");

        // The last servent reached stops the flood; the next never sees it.
        let last = names[ttl];
        net.get(last)
            .wait_stdout_any(|l| l == format!("stopped {origin} seq 0"));
        let next = net.get(names[ttl + 1]);
        assert!(
            !next.stdout_lines().iter().any(|l| l.contains(&origin)),
            "{} saw the query\n{}",
            names[ttl + 1],
            next.dump()
        );

        // A key held just beyond the reach is not found.
        let beyond = ["ftp", "ssh", "telnet", "smtp", "domain"][ttl + 1];
        net.query("s1", &format!("?{beyond}"), reach, &[]);

        let mut old = net.remove("s1");
        old.terminate();
        assert!(old.wait_exit().success(), "{}", old.dump());
        net.get("s2").wait_stdout(|l| l.starts_with("link closed "));
    }
}

#[test]
fn topology_strings_name_each_hop() {
    let mut net = start_topology("chain", |_| vec![]);
    let reach = ["s1", "s2", "s3", "s4"];
    let a: Vec<String> = reach.iter().map(|n| net.addr(n)).collect();
    let (got, _) = net.query("s1", "T", &reach, &reach);
    // With TTL 3: s1 and three hops, each answer the path so far.
    let expected: BTreeSet<String> = (1..=4).map(|n| a[..n].join(" ")).collect();
    assert_eq!(value_set(&got), expected, "{}", net.dump());

    // In the diamond the paths form a tree rooted at s1: each servent
    // answers once, with the path its first copy took, which is the path
    // of the servent it came from plus itself. Usually s2 and s3 get theirs
    // from s1, but on a busy machine one may first hear it through s4.
    let mut net = start_topology("diamond", |_| vec![]);
    let addr: Vec<String> = DIAMOND.iter().map(|n| net.addr(n)).collect();
    let edges = [(0, 1), (0, 2), (1, 3), (2, 3)];
    let linked = |x: &str, y: &str| {
        edges.iter().any(|&(i, j)| {
            (x, y) == (addr[i].as_str(), addr[j].as_str())
                || (y, x) == (addr[i].as_str(), addr[j].as_str())
        })
    };
    let (got, _) = net.query("s1", "T", &DIAMOND, &DIAMOND);
    let paths = value_set(&got);
    let ends: BTreeSet<&str> = paths
        .iter()
        .filter_map(|p| p.split(' ').next_back())
        .collect();
    assert_eq!(ends.len(), 4, "one answer each: {paths:?}");
    for p in &paths {
        let hops: Vec<&str> = p.split(' ').collect();
        assert_eq!(hops[0], addr[0], "{p}");
        assert!(hops.windows(2).all(|w| linked(w[0], w[1])), "{p}");
        if let Some((_, before)) = hops.split_last().filter(|(_, b)| !b.is_empty()) {
            assert!(paths.contains(&before.join(" ")), "{p}: {paths:?}");
        }
    }
}

#[test]
fn a_neighbour_killed_mid_run_is_dropped() {
    let mut net = start_topology("diamond", |_| vec![]);
    net.query("s1", "?telnet", &DIAMOND, &["s2"]);

    net.get("s2").kill();
    net.get("s1").wait_stdout(|l| l.starts_with("link closed "));
    net.get("s4").wait_stdout(|l| l.starts_with("link closed "));

    // s4 is still reached through s3, and answers once.
    let left = ["s1", "s3", "s4"];
    net.query("s1", "?imap", &left, &["s4"]);
    // s2's keys are gone with it.
    net.query("s1", "?telnet", &left, &[]);
    let (got, _) = net.query("s1", "?servent", &left, &left);
    assert_eq!(value_set(&got), set(&left));
}

#[test]
fn garbage_on_a_link_closes_only_that_link() {
    let mut net = start_topology("chain", |_| vec![]);
    let s2 = net.addr("s2");
    let mut bad = |bytes: &[u8], why: &str| {
        let mut c = RawClient::connect(&s2);
        c.send(bytes);
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
        // The servent closes the link without sending anything.
        assert!(c.read_to_close().is_empty());
        net.get("s2").wait_stderr(|l| l.contains(why));
    };
    // An unknown type on a servent link.
    bad(&[0, 4, 0, 0, 0, 99, 1, 2, 3], "unknown message type 99");
    // Not the protocol at all.
    bad(b"GET / HTTP/1.0\r\n\r\n", "unknown message type 18245");
    // A key over 400 bytes.
    bad(
        &[
            0, 4, 0, 0, 0, 7, 0, 3, 0, 0, 0, 1, 127, 0, 0, 1, 0, 80, 0x01, 0x91,
        ],
        "exceeds the 400-byte limit",
    );
    // A message cut short.
    bad(
        &[0, 4, 0, 0, 0, 7, 0, 3, 0, 0],
        "in the middle of a message",
    );
    // A client sending garbage after its ID.
    bad(
        &[0, 4, 0x9c, 0x40, 0xff, 0xff],
        "unknown message type 65535",
    );

    // Everyone else is still served, through s2.
    let reach = ["s1", "s2", "s3", "s4"];
    let (got, _) = net.query("s1", "?servent", &reach, &reach);
    assert_eq!(value_set(&got), set(&reach));
}

/// Binds a listener on a port above 32767, so its port has the high bit set.
fn high_port_listener() -> TcpListener {
    (40_000..60_000)
        .find_map(|p| TcpListener::bind(("127.0.0.1", p)).ok())
        .expect("a free port above 32767")
}

fn read_exact_bytes(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).expect("read message bytes");
    buf
}

/// Accepts one answer connection and returns everything sent on it.
fn accept_all(l: &TcpListener) -> Vec<u8> {
    let (mut s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn raw_protocol_bytes_by_hand() {
    let dir = TempDir::new("flood-raw");
    let kv = dir.path().join("s.kv");
    std::fs::write(&kv, "ssh 22/tcp # SSH\n").unwrap();
    let mut s = servent(&kv, &[], &[]);
    let port = s.port();

    // Two servents' links, greeted with ID port 0: 0x0004 0x0000.
    let mut n1 = RawClient::connect(&s.addr);
    n1.send(&[0x00, 0x04, 0x00, 0x00]);
    s.wait_stdout(|l| l.starts_with("link in "));
    let mut n2 = RawClient::connect(&s.addr);
    n2.send(&[0x00, 0x04, 0x00, 0x00]);
    s.wait_stdout(|l| l.starts_with("link in "));

    // A client listening above 32767 sends ID with its port, then
    // KEYREQ seq 42 "ssh": 0x0005, 0x0000002a, 0x0003, "ssh".
    let answers = high_port_listener();
    let cport = answers.local_addr().unwrap().port();
    assert!(cport > 32767);
    let [hi, lo] = [(cport >> 8) as u8, (cport & 0xff) as u8];
    let mut client = RawClient::connect(&s.addr);
    client.send(&[0x00, 0x04, hi, lo]);
    client.send(&[
        0x00, 0x05, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x03, b's', b's', b'h',
    ]);

    // The servent answers on a new connection: RESP seq 42, 12 bytes, no ID.
    let got = accept_all(&answers);
    assert_eq!(
        got,
        b"\x00\x09\x00\x00\x00\x2a\x00\x0c22/tcp # SSH".to_vec(),
        "{}",
        s.dump()
    );

    // Both links get KEYFLOOD ttl 3, seq 42, origin 127.0.0.1:cport, "ssh".
    let flood = [
        0x00, 0x07, 0x00, 0x03, 0x00, 0x00, 0x00, 0x2a, 127, 0, 0, 1, hi, lo, 0x00, 0x03, b's',
        b's', b'h',
    ];
    assert_eq!(read_exact_bytes(&mut n1.stream, flood.len()), flood);
    assert_eq!(read_exact_bytes(&mut n2.stream, flood.len()), flood);

    // TOPOFLOOD from n1: ttl 2, seq 7, origin 127.0.0.1:cport, info
    // "10.9.8.7:6000" (13 bytes).
    let mut topo = vec![
        0x00, 0x08, 0x00, 0x02, 0x00, 0x00, 0x00, 0x07, 127, 0, 0, 1, hi, lo, 0x00, 0x0d,
    ];
    topo.extend_from_slice(b"10.9.8.7:6000");
    n1.send(&topo);
    // The servent appends its own address and answers the client with it ...
    let path = format!("10.9.8.7:6000 127.0.0.1:{port}");
    let mut expect = vec![0x00, 0x09, 0x00, 0x00, 0x00, 0x07, 0x00, path.len() as u8];
    expect.extend_from_slice(path.as_bytes());
    assert_eq!(accept_all(&answers), expect);
    // ... and passes it on with ttl 1 to n2 only.
    let mut fwd = vec![0x00, 0x08, 0x00, 0x01, 0x00, 0x00, 0x00, 0x07];
    fwd.extend_from_slice(&[127, 0, 0, 1, hi, lo, 0x00, path.len() as u8]);
    fwd.extend_from_slice(path.as_bytes());
    assert_eq!(read_exact_bytes(&mut n2.stream, fwd.len()), fwd);

    // The same flood again is a duplicate: dropped, not forwarded.
    n2.send(&topo);
    s.wait_stdout(|l| l.starts_with("duplicate 127.0.0.1:") && l.contains(" seq 7 "));
    // n1 got nothing after all this: the next thing it reads is our probe
    // flood (seq 8), forwarded by the servent from n2.
    let mut probe = topo.clone();
    probe[7] = 0x08;
    n2.send(&probe);
    let got = read_exact_bytes(&mut n1.stream, 8);
    assert_eq!(got, [0x00, 0x08, 0x00, 0x01, 0x00, 0x00, 0x00, 0x08]);
}

#[test]
fn kv_query_speaks_the_protocol_to_a_servent() {
    // A stand-in servent written with raw bytes.
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = fake.local_addr().unwrap().to_string();
    let q = Query::start(&addr, "?  some key");
    let (mut link, _) = fake.accept().unwrap();
    link.set_read_timeout(Some(DEADLINE)).unwrap();
    let id = read_exact_bytes(&mut link, 4);
    assert_eq!(id[..2], [0x00, 0x04]);
    let cport = u16::from_be_bytes([id[2], id[3]]);
    assert_ne!(cport, 0);
    // KEYREQ seq 0, "some key" (8 bytes).
    let mut req = vec![0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08];
    req.extend_from_slice(b"some key");
    assert_eq!(read_exact_bytes(&mut link, req.len()), req);

    // An answer with the wrong seq is reported and ignored.
    let mut c = TcpStream::connect(("127.0.0.1", cport)).unwrap();
    c.write_all(&[0x00, 0x09, 0x00, 0x00, 0x00, 0x05, 0x00, 0x01, b'x'])
        .unwrap();
    drop(c);
    q.p.wait_stderr(|l| l.contains("unexpected message from 127.0.0.1:"));
    // An ID first is accepted, then the answer.
    let mut c = TcpStream::connect(("127.0.0.1", cport)).unwrap();
    let from = c.local_addr().unwrap();
    c.write_all(&[0x00, 0x04, 0x00, 0x00]).unwrap();
    c.write_all(&[
        0x00, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, b'v', b' ', b'1',
    ])
    .unwrap();
    drop(c);
    // And an answer on the link itself.
    link.write_all(&[0x00, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, b'w'])
        .unwrap();

    let lines = q.finish_after(2);
    assert_eq!(
        value_set(&lines),
        set(&[&format!("v 1 {from}"), &format!("w {addr}")]),
    );
}

#[test]
fn kv_query_modes_and_exit_codes() {
    let mut net = start_topology("diamond", |_| vec![]);
    let s1 = net.addr("s1");

    net.query("s1", "?no-such-key", &DIAMOND, &[]);
    cmd(bin!("kv-query"))
        .args([&s1, "hello"])
        .run()
        .code(2)
        .stderr_has("unknown command");
    cmd(bin!("kv-query"))
        .args(["--wait", "0.1", "127.0.0.1:1", "?k"])
        .run()
        .code(2)
        .stderr_has("connecting to 127.0.0.1:1");

    // A pipeline: one command per line; unknown ones are reported and
    // skipped; Q ends it before the last line. Each wait is ended by the
    // test once the flood is over. One query went unanswered: exit 1.
    let before = client_lines(net.get("s1")).len();
    let mut q = Query::with(
        cmd(bin!("kv-query"))
            .args(["--wait", NEVER, &s1])
            .stdin("?ssh\nbogus\n\n?   pop3\nT\n?nothing\nQ\n?ftp\n"),
    );
    let origin = net.next_origin("s1", before);
    // Sequence numbers count queries only: ?ssh 0, ?pop3 1, T 2, ?nothing 3.
    for (seq, answerers, total) in [
        (0, &["s1"][..], 1),
        (1, &["s4"], 2),
        (2, &DIAMOND, 6),
        (3, &[], 6),
    ] {
        net.settled(&origin, seq, &DIAMOND, answerers);
        q.wait_answers(total);
        q.end_wait();
        if seq == 3 {
            q.p.wait_stderr(|l| l.contains("no response received"));
        }
    }
    // ?nothing went unanswered: exit 1.
    assert_eq!(q.p.wait_exit().code(), Some(1), "{}", q.p.dump());
    q.p.wait_stderr(|l| l.contains("unknown command \"bogus\""));
    q.p.wait_stderr(|l| l.contains("1 of 4 queries got no response"));
    let lines = q.p.stdout_lines();
    assert_eq!(lines.len(), 6, "{}", q.p.dump());
    let got = values(&lines);
    assert_eq!(got[0], "22/tcp # The Secure Shell (SSH) Protocol");
    assert_eq!(got[1], "110/tcp pop-3 # Post Office Protocol - Version 3");
    assert!(got[2..].contains(&s1), "{}", q.p.dump());
    let s1p = net.get("s1");
    s1p.wait_stdout_any(|l| l == format!("request topo {origin} seq 2"));
    s1p.wait_stdout_any(|l| l == format!("request key {origin} seq 3 nothing"));
    assert!(
        !s1p.stdout_lines().iter().any(|l| l.contains(" seq 4")),
        "{}",
        s1p.dump()
    );
}

#[test]
fn servent_stops_cleanly_and_reports_stats() {
    let mut net = start_topology("diamond", |_| vec![]);
    net.query("s1", "?imap", &DIAMOND, &["s4"]);
    let mut s4 = net.remove("s4");
    s4.terminate();
    assert!(s4.wait_exit().success(), "{}", s4.dump());
    let stats = s4.wait_stdout_any(|l| l.starts_with("stats "));
    // s4 is reached once or twice (see the diamond test), answers once.
    assert!(
        stats.contains("floods=2 duplicates=1") || stats.contains("floods=1 duplicates=0"),
        "{stats}"
    );
    assert!(stats.contains("requests=0"), "{stats}");
    assert!(stats.contains("answers=1"), "{stats}");

    // A bad key-value file is refused at start.
    let dir = TempDir::new("flood-badkv");
    let kv = dir.path().join("bad.kv");
    std::fs::write(&kv, format!("k {}\n", "x".repeat(401))).unwrap();
    cmd(bin!("kv-servent"))
        .args(["--bind", "127.0.0.1", "0"])
        .arg(&kv)
        .run()
        .code(2)
        .stderr_has("line 1: value is 401 bytes");
    // A neighbour that is not running is an error.
    let good = dir.path().join("good.kv");
    std::fs::write(&good, "k v\n").unwrap();
    cmd(bin!("kv-servent"))
        .args(["--bind", "127.0.0.1", "0"])
        .arg(&good)
        .arg("127.0.0.1:1")
        .run()
        .code(2)
        .stderr_has("connecting to neighbour 127.0.0.1:1");
}

/// ID with `port` (0: a servent, else a client's answer port).
fn id_bytes(port: u16) -> [u8; 4] {
    let [hi, lo] = port.to_be_bytes();
    [0x00, 0x04, hi, lo]
}

#[test]
fn a_full_kind_drops_its_idlest_member_for_a_newcomer() {
    let dir = TempDir::new("flood-caps");
    let kv = dir.path().join("s.kv");
    std::fs::write(&kv, "ssh 22/tcp # SSH\n").unwrap();
    let mut s = servent(&kv, &[], &["--max-clients", "2", "--max-links", "1"]);

    // Two clients that say who they are, then nothing more, fill the
    // client places; a third one gets in, and the one idle longest is
    // dropped for it, with a line on stderr.
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut c = RawClient::connect(&s.addr);
        c.send(&id_bytes(40_000));
        s.wait_stdout(|l| l.starts_with("client "));
        idle.push(c);
    }
    let first = idle[0].stream.local_addr().unwrap().to_string();
    let mut third = RawClient::connect(&s.addr);
    third.send(&id_bytes(40_000));
    s.wait_stdout(|l| l.starts_with("client "));
    assert!(idle[0].read_to_close().is_empty());
    s.wait_stderr(|l| {
        l.contains(&format!("{first}: dropped (idle for "))
            && l.contains("already 2 client connections open and")
    });

    // Neighbour links have their own places: the newcomer takes the
    // place of the one idle longest.
    let mut n1 = RawClient::connect(&s.addr);
    n1.send(&id_bytes(0));
    s.wait_stdout(|l| l.starts_with("link in "));
    let mut n2 = RawClient::connect(&s.addr);
    n2.send(&id_bytes(0));
    s.wait_stdout(|l| l.starts_with("link in "));
    assert!(n1.read_to_close().is_empty());
    s.wait_stderr(|l| l.contains("already 1 neighbour links open and"));
    s.wait_stdout_any(|l| l.starts_with("link closed "));

    // A real client is served, taking an idle client's place.
    let q = Query::start(&s.addr, "?ssh");
    s.wait_stdout(|l| l.starts_with("client "));
    let out = q.finish_after(1);
    assert_eq!(values(&out), ["22/tcp # SSH"], "{}", s.dump());
    drop((third, n2));
}

#[test]
fn a_connection_without_an_id_is_closed_at_the_request_deadline() {
    let dir = TempDir::new("flood-noid");
    let kv = dir.path().join("s.kv");
    std::fs::write(&kv, "k v\n").unwrap();
    let s = servent(&kv, &[], &["--request-timeout", "1"]);
    let mut silent = RawClient::connect(&s.addr);
    assert!(silent.read_to_close().is_empty());
    s.wait_stderr(|l| l.contains("closed: no complete request within 1s"));
    // Half an ID is no better.
    let mut half = RawClient::connect(&s.addr);
    half.send(&[0x00, 0x04, 0x9c]);
    assert!(half.read_to_close().is_empty());
}

/// KEYREQ `seq` for `key`.
fn keyreq_bytes(seq: u32, key: &str) -> Vec<u8> {
    let mut v = vec![0x00, 0x05];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&(key.len() as u16).to_be_bytes());
    v.extend_from_slice(key.as_bytes());
    v
}

/// RESP `seq` carrying `value`.
fn resp_bytes(seq: u32, value: &str) -> Vec<u8> {
    let mut v = vec![0x00, 0x09];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&(value.len() as u16).to_be_bytes());
    v.extend_from_slice(value.as_bytes());
    v
}

/// Accepts one connection on `l` within `within` (on a thread of its own,
/// left blocked if nothing comes: the test then fails anyway).
fn accept_within(l: TcpListener, within: Duration) -> Option<TcpStream> {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(l.accept().map(|(s, _)| s));
    });
    rx.recv_timeout(within).ok().and_then(Result::ok)
}

/// A real client, doing what kv-query does: listens for answers, sends
/// its ID and a KEYREQ for `key`, and takes the answer `value` the servent
/// sends back, every step within `SERVED_WITHIN`.
fn key_probe(addr: &str, key: &'static str, value: &'static str) -> impl Fn() + use<> {
    static SEQ: AtomicU32 = AtomicU32::new(1000);
    let addr: SocketAddr = addr.parse().unwrap();
    move || {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let answers = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = answers.local_addr().unwrap().port();
        let link = TcpStream::connect_timeout(&addr, SERVED_WITHIN)
            .unwrap_or_else(|e| panic!("a real client could not connect: {e}"));
        link.set_write_timeout(Some(SERVED_WITHIN)).unwrap();
        (&link)
            .write_all(&id_bytes(port))
            .and_then(|()| (&link).write_all(&keyreq_bytes(seq, key)))
            .unwrap_or_else(|e| panic!("a real client could not ask: {e}"));
        let mut s = accept_within(answers, SERVED_WITHIN)
            .unwrap_or_else(|| panic!("a real client got no answer within {SERVED_WITHIN:?}"));
        s.set_read_timeout(Some(SERVED_WITHIN)).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got)
            .unwrap_or_else(|e| panic!("reading the answer: {e}"));
        assert_eq!(got, resp_bytes(seq, value), "the answer");
        drop(link);
    }
}

/// Runs `probe` and returns how long it took.
fn timed(probe: &impl Fn()) -> Duration {
    let started = Instant::now();
    probe();
    started.elapsed()
}

/// Runs kv-query `?KEY` against `addr` and returns the time until its
/// answer line; it must then exit 0 with exactly that answer.
fn kv_query_timed(addr: &str, key: &str, value: &str) -> Duration {
    let started = Instant::now();
    let mut q = Query::start(addr, &format!("?{key}"));
    q.wait_answers(1);
    let waited = started.elapsed();
    assert_eq!(values(&q.finish_after(1)), [value]);
    waited
}

fn ssh_servent(dir: &TempDir, extra: &[&str]) -> Proc {
    let kv = dir.path().join("s.kv");
    std::fs::write(&kv, "ssh 22/tcp # SSH\n").unwrap();
    servent(&kv, &[], extra)
}

const SSH: &str = "22/tcp # SSH";

#[test]
fn the_servent_serves_real_clients_through_idle_trickling_and_client_floods() {
    let dir = TempDir::new("flood-exhaust");
    // Fewer client places than connections, so both the core and the
    // servent's client cap drop connections for newcomers.
    let mut s = ssh_servent(&dir, &["-q", "--max-clients", "200"]);
    let probe = key_probe(&s.addr, "ssh", SSH);
    // A trickled ID never completes: the byte 0x00 makes the type 0, so
    // each attacker is turned away after its second byte or at the deadline.
    exhaustion("kv-servent", &s, 0x00, &probe);
    let baseline = usage(s.pid());

    // Connections that never send an ID: the core drops the oldest.
    for n in [64, ATTACKERS] {
        let silent = idle_sockets(&s.addr, n);
        let waited = timed(&probe);
        let by_kv_query = kv_query_timed(&s.addr, "ssh", SSH);
        eprintln!(
            "kv-servent, {n} connections without an ID: probe served in {waited:?}, \
             kv-query answered in {by_kv_query:?}"
        );
        drop(silent);
    }
    wait_for_baseline(&s, baseline, "kv-servent after connections without an ID");

    // Clients that send their ID and then idle: the client places (200)
    // and the core's (256) are full; the idlest make room.
    let before = client_lines(&s).len();
    let idle: Vec<TcpStream> = (0..ATTACKERS)
        .map(|_| {
            let mut c = TcpStream::connect(&s.addr).unwrap();
            c.write_all(&id_bytes(40_000)).unwrap();
            c
        })
        .collect();
    let s_ref = &s;
    wait_until(
        "the idle clients to fill the client places",
        || (client_lines(s_ref).len() >= before + 200).then_some(()),
        || s_ref.dump(),
    );
    let peak = usage(s.pid());
    let waited = timed(&probe);
    let by_kv_query = kv_query_timed(&s.addr, "ssh", SSH);
    eprintln!(
        "kv-servent, {ATTACKERS} clients idle after their ID: probe served in {waited:?}, \
         kv-query answered in {by_kv_query:?}; fds {} threads {}",
        peak.fds, peak.threads
    );
    drop(idle);
    wait_for_baseline(&s, baseline, "kv-servent after idle clients");
    s.wait_stderr(|l| l.contains("already 200 client connections open and"));
    probe();

    // Clients that send their ID, then begin a KEYREQ and trickle it, one
    // byte a second: always in the middle of a message.
    let before = client_lines(&s).len();
    // After an ID and a KEYREQ's type, the 0x01 bytes make a key of 257
    // bytes: never a whole message, always a little progress.
    let trickle = Trickle::after(
        &s.addr,
        ATTACKERS,
        &[&id_bytes(40_001)[..], &[0x00, 0x05]].concat(),
        0x01,
    );
    let s_ref = &s;
    wait_until(
        "the trickling clients to fill the client places",
        || (client_lines(s_ref).len() >= before + 200).then_some(()),
        || s_ref.dump(),
    );
    let peak = usage(s.pid());
    let waited = timed(&probe);
    let by_kv_query = kv_query_timed(&s.addr, "ssh", SSH);
    eprintln!(
        "kv-servent, {ATTACKERS} clients trickling a KEYREQ after their ID: probe served in \
         {waited:?}, kv-query answered in {by_kv_query:?}; fds {} threads {}",
        peak.fds, peak.threads
    );
    drop(trickle);
    wait_for_baseline(&s, baseline, "kv-servent after trickling clients");
    probe();
    s.terminate();
    assert!(s.wait_exit().success(), "{}", s.dump());
}

/// A listener that never accepts, with its accept queue already full, so
/// a connection to it hangs until the connector gives up (SYNs dropped).
fn black_hole() -> (TcpListener, Vec<TcpStream>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let mut queued = Vec::new();
    while let Ok(c) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        queued.push(c);
        assert!(queued.len() < 2000, "the accept queue never filled");
    }
    (l, queued)
}

/// KEYFLOOD ttl 1 for `key` from `origin`.
fn keyflood_bytes(seq: u32, origin: SocketAddr, key: &str) -> Vec<u8> {
    let SocketAddr::V4(o) = origin else {
        panic!("IPv4 only")
    };
    let mut v = vec![0x00, 0x07, 0x00, 0x01];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&o.ip().octets());
    v.extend_from_slice(&o.port().to_be_bytes());
    v.extend_from_slice(&(key.len() as u16).to_be_bytes());
    v.extend_from_slice(key.as_bytes());
    v
}

#[test]
fn answers_to_a_black_hole_do_not_starve_real_clients() {
    let dir = TempDir::new("flood-hole");
    let mut s = ssh_servent(&dir, &["-q"]);
    let probe = key_probe(&s.addr, "ssh", SSH);
    probe();
    let (hole, _queued) = black_hole();
    let origin = hole.local_addr().unwrap();

    // A neighbour floods 100 queries a second whose origin never accepts.
    let mut n = RawClient::connect(&s.addr);
    n.send(&id_bytes(0));
    s.wait_stdout(|l| l.starts_with("link in "));
    let baseline = usage(s.pid());
    let (stop, stopped) = mpsc::channel::<()>();
    let flooder = {
        let link = n.stream.try_clone().unwrap();
        thread::spawn(move || {
            let mut seq = 0u32;
            loop {
                if (&link)
                    .write_all(&keyflood_bytes(seq, origin, "ssh"))
                    .is_err()
                {
                    break;
                }
                seq += 1;
                // The attack's pace: 100 floods a second, until told to stop.
                match stopped.recv_timeout(Duration::from_millis(10)) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            }
            seq
        })
    };
    // The attack bites: answers to the hole are in flight up to the
    // per-origin bound, the rest dropped and counted.
    s.wait_stderr(|l| {
        l.contains(&format!("answer to {origin} seq ")) && l.contains("already in flight")
    });
    // ... and the first ones give up at their deadline, two seconds and
    // some 200 floods into the attack.
    s.wait_stderr(|l| l.contains(&format!("answer to {origin} seq ")) && l.contains("timed out"));
    let mut peak = usage(s.pid());
    let mut waits = Vec::new();
    for _ in 0..3 {
        waits.push(timed(&probe));
        let u = usage(s.pid());
        peak.fds = peak.fds.max(u.fds);
        peak.threads = peak.threads.max(u.threads);
    }
    let by_kv_query = kv_query_timed(&s.addr, "ssh", SSH);
    drop(stop);
    let sent = flooder.join().unwrap();
    eprintln!(
        "kv-servent, {sent} floods at 100/s answered to a black hole: probes served in \
         {waits:?}, kv-query answered in {by_kv_query:?}; fds {} -> peak {}, threads {} -> peak {}",
        baseline.fds, peak.fds, baseline.threads, peak.threads
    );
    wait_for_baseline(&s, baseline, "kv-servent after the black-hole flood");
    probe();
    drop(n);
    s.terminate();
    assert!(s.wait_exit().success(), "{}", s.dump());
    let stats = s.wait_stdout_any(|l| l.starts_with("stats "));
    assert!(!stats.contains("dropped=0"), "{stats}");
    eprintln!("kv-servent after the black-hole flood: {stats}");
}

#[test]
fn kv_query_help_and_exit_codes() {
    // help and ? alone list the commands, without asking anyone.
    for q in ["help", "?"] {
        let out = cmd(bin!("kv-query")).args(["127.0.0.1:1", q]).run().ok();
        assert!(
            out.stdout.contains("?KEY") && out.stdout.contains("help"),
            "{}",
            out.dump()
        );
    }
    // --help shows the defaults and examples.
    let out = cmd(bin!("kv-query")).arg("--help").run().ok();
    for needle in ["[default: 4]", "[default: 0]", "Examples:", "Exit status"] {
        assert!(out.stdout.contains(needle), "{needle}\n{}", out.dump());
    }
    let out = cmd(bin!("kv-servent")).arg("--help").run().ok();
    for needle in [
        "[default: 3]",
        "[default: 0.0.0.0]",
        "[default: 256]",
        "[default: 64]",
        "--request-timeout",
        "-q, --quiet",
        "Examples:",
    ] {
        assert!(out.stdout.contains(needle), "{needle}\n{}", out.dump());
    }
    // An unknown command names itself: given as QUERY it is an error (2).
    cmd(bin!("kv-query"))
        .args(["127.0.0.1:1", "hello"])
        .run()
        .code(2)
        .stderr_has("unknown command \"hello\" (help lists the commands)");

    let mut net = start_topology("chain", |_| vec![]);
    let s1 = net.addr("s1");
    // In a pipeline it is reported and skipped; help prints the list; all
    // queries answered: exit 0.
    let before = client_lines(net.get("s1")).len();
    let mut q = Query::with(
        cmd(bin!("kv-query"))
            .args(["-v", "--wait", NEVER, &s1])
            .stdin("help\nbogus\n?ftp\n"),
    );
    let origin = net.next_origin("s1", before);
    net.settled(&origin, 0, &["s1", "s2", "s3", "s4"], &["s1"]);
    q.wait_answers(HELP_LINES + 1);
    q.end_wait();
    assert!(q.p.wait_exit().success(), "{}", q.p.dump());
    q.p.wait_stderr(|l| l.ends_with("unknown command \"bogus\" (help lists the commands)"));
    q.p.wait_stderr(|l| l.contains("answers come to port"));
    q.p.wait_stderr(|l| l.contains("seq 0: ?ftp: 1 answer in "));
    let lines = q.p.stdout_lines();
    assert_eq!(lines[0], "commands:", "{}", q.p.dump());
    assert!(lines[HELP_LINES].starts_with("21/tcp"), "{}", q.p.dump());

    // One query of a pipeline unanswered: exit 1, saying how many.
    let before = client_lines(net.get("s1")).len();
    let mut q = Query::with(
        cmd(bin!("kv-query"))
            .args(["--wait", NEVER, &s1])
            .stdin("?ftp\n?nothing\n"),
    );
    let origin = net.next_origin("s1", before);
    net.settled(&origin, 0, &["s1", "s2", "s3", "s4"], &["s1"]);
    q.wait_answers(1);
    q.end_wait();
    net.settled(&origin, 1, &["s1", "s2", "s3", "s4"], &[]);
    q.end_wait();
    assert_eq!(q.p.wait_exit().code(), Some(1), "{}", q.p.dump());
    q.p.wait_stderr(|l| l.ends_with("?nothing: no response received"));
    q.p.wait_stderr(|l| l.ends_with("1 of 2 queries got no response"));
}

/// Lines of kv-query's command list.
const HELP_LINES: usize = 6;

#[test]
fn a_shell_reconnects_after_the_servent_closes_its_idle_link() {
    let dir = TempDir::new("flood-relink");
    let mut s = ssh_servent(&dir, &["--idle-timeout", "1"]);
    let mut q = Query::with(
        cmd(bin!("kv-query"))
            .args(["-v", "--wait", NEVER, &s.addr])
            .stdin("?ssh\n?ssh\n"),
    );
    s.wait_stdout(|l| l.starts_with("answered "));
    q.wait_answers(1);
    // The link is idle while kv-query waits: the servent closes it.
    s.wait_stdout(|l| l.starts_with("client closed "));
    q.p.wait_stderr(|l| l.contains("closed the connection"));
    q.end_wait();
    // The next query goes out on a new link.
    s.wait_stdout(|l| l.starts_with("answered "));
    q.wait_answers(2);
    q.end_wait();
    assert!(q.p.wait_exit().success(), "{}", q.p.dump());
    q.p.wait_stderr(|l| l.contains("reconnected"));
}
