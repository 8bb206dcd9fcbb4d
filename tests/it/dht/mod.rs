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

mod cli;
mod hostile;
mod ring;
mod transfer;
mod view;

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

/// A temp dir tagged `tag` with one supernode over its `repo` folder, in
/// the ring of an index of its own: (dir, repo, index, supernode).
fn lone_superd(tag: &str) -> (TempDir, PathBuf, Proc, Proc) {
    let dir = TempDir::new(tag);
    let repo = dir.sub("repo");
    let index = start_index();
    let s = start_superd(&index, &repo);
    (dir, repo, index, s)
}

/// Runs `p2p-put HOST PORT LOCAL` (host and port apart) to `s`.
fn put(s: &Proc, local: &Path) -> Output {
    let (h, port) = host_port(s);
    cmd(bin!("p2p-put")).arg(&h).arg(&port).arg(local).run()
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

/// The supernodes' and index's reply to a frame that is not a valid request.
fn error_text<T: std::fmt::Debug>(reply: T) -> String {
    let text = format!("{reply:?}");
    assert!(text.starts_with("Error"), "expected an error reply: {text}");
    text
}

/// One request as a scripted index saw it: the connection's number (from 0,
/// in accept order) and the request.
type Seen = (usize, IndexRequestOf<String>);

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
