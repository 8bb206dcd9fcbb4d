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

mod client;
mod load;
mod topology;
mod view;
mod wire;

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
        let seq = self.first_seq(entry, &origin);
        self.settled(&origin, seq, reached, answerers);
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

    /// The sequence number of the first query from `origin` that `entry`
    /// received (a client starts at a random one).
    fn first_seq(&mut self, entry: &str, origin: &str) -> u32 {
        let p = self.get(entry);
        let key = format!("request key {origin} seq ");
        let topo = format!("request topo {origin} seq ");
        wait_until(
            "the servent logs the client's first query",
            || {
                p.stdout_lines().iter().find_map(|l| {
                    let rest = l.strip_prefix(&key).or_else(|| l.strip_prefix(&topo))?;
                    rest.split(' ').next()?.parse().ok()
                })
            },
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
        Query::with(cmd(bin!("kv-query")).args(["--wait", NEVER, "--settle", NEVER, addr, query]))
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

/// Binds a listener on a port above 32767, so its port has the high bit set.
fn high_port_listener() -> TcpListener {
    (40_000..60_000)
        .find_map(|p| TcpListener::bind(("127.0.0.1", p)).ok())
        .expect("a free port above 32767")
}

/// ID with `port` (0: a servent, else a client's answer port).
fn id_bytes(port: u16) -> [u8; 4] {
    let [hi, lo] = port.to_be_bytes();
    [0x00, 0x04, hi, lo]
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

fn ssh_servent(dir: &TempDir, extra: &[&str]) -> Proc {
    let kv = dir.path().join("s.kv");
    std::fs::write(&kv, "ssh 22/tcp # SSH\n").unwrap();
    servent(&kv, &[], extra)
}

const SSH: &str = "22/tcp # SSH";

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
