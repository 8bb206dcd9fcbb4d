//! Integration tests of the swarm system: the real bt-tracker and bt-peer
//! on 127.0.0.1 port 0, with shortened periods.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};

use peerkit::frame::{self, Conn};
use peerkit::net::Timeouts;
use peerkit::swarm::proto::{
    PEER_WIRE, PeerInfo, PeerRequest, PeerResponse, Query, TRACKER, TrackerRequest, TrackerResponse,
};
use peerkit::swarm::{Bitfield, SwarmId, partial_path};

use crate::bin;
use crate::harness::*;

/// Peer periods short enough for tests, long enough for a busy machine.
const FAST: [&str; 4] = ["--ping-interval", "0.2", "--report-interval", "0.5"];

/// `FAST` periods, except those `extra` sets itself.
fn periods(extra: &[&str]) -> Vec<&'static str> {
    FAST.chunks(2)
        .filter(|kv| !extra.contains(&kv[0]))
        .flatten()
        .copied()
        .collect()
}

/// Starts `bt-tracker --listen LISTEN`.
fn tracker_at(listen: &str, extra: &[&str]) -> Proc {
    cmd(bin!("bt-tracker"))
        .args(["--listen", listen])
        .args(extra)
        .daemon()
}

fn tracker(extra: &[&str]) -> Proc {
    tracker_at("127.0.0.1:0", extra)
}

/// A temp dir tagged `tag` holding `seed/NAME`, `len` random bytes from
/// `rng`; the dir and the file's path.
fn seed_file(tag: &str, name: &str, len: u64, rng: u64) -> (TempDir, PathBuf) {
    let dir = TempDir::new(tag);
    let src = dir.sub("seed").join(name);
    write_random_file(&src, len, rng);
    (dir, src)
}

/// `bt-peer share FILE --tracker TRACKER --listen LISTEN`, not started.
fn share_cmd(file: &Path, tracker: &str, listen: &str) -> Spawn {
    cmd(bin!("bt-peer"))
        .arg("share")
        .arg(file)
        .args(["--tracker", tracker, "--listen", listen])
}

/// Starts `bt-peer share` listening on `listen` and returns it with the
/// swarm id it printed.
fn share_at(file: &Path, tracker: &str, listen: &str, extra: &[&str]) -> (Proc, String) {
    let mut p = share_cmd(file, tracker, listen)
        .args(periods(extra))
        .args(extra)
        .daemon();
    let line = p.wait_stdout(|l| l.starts_with("swarm "));
    let id = line["swarm ".len()..].trim().to_string();
    (p, id)
}

/// Starts `bt-peer share` on 127.0.0.1 port 0; see `share_at`.
fn share(file: &Path, tracker: &str, extra: &[&str]) -> (Proc, String) {
    share_at(file, tracker, "127.0.0.1:0", extra)
}

/// `bt-peer fetch WHAT --tracker TRACKER --listen LISTEN --out OUT`, not
/// started.
fn fetch_at(what: &str, tracker: &str, listen: &str, out: &Path) -> Spawn {
    cmd(bin!("bt-peer"))
        .args(["fetch", what, "--tracker", tracker, "--listen", listen])
        .arg("--out")
        .arg(out)
}

/// `fetch_at` listening on 127.0.0.1 port 0.
fn fetch_cmd(what: &str, tracker: &str, out: &Path) -> Spawn {
    fetch_at(what, tracker, "127.0.0.1:0", out)
}

fn fetch(what: &str, out: &Path, tracker: &str, extra: &[&str]) -> Proc {
    fetch_cmd(what, tracker, out)
        .args(periods(extra))
        .args(extra)
        .daemon()
}

/// A tracker and a seed sharing `file` with `extra` flags: (tracker,
/// seed, swarm id).
fn tracked(file: &Path, extra: &[&str]) -> (Proc, Proc, String) {
    let t = tracker(&[]);
    let (seed, id) = share(file, &t.addr, extra);
    (t, seed, id)
}

fn same_file(a: &Path, b: &Path) -> bool {
    fs::read(a).ok() == fs::read(b).ok()
}

/// Waits for a peer run with `--exit-when-done` to finish successfully with
/// a copy of `original` in `out`.
fn finishes_with(p: &mut Proc, out: &Path, original: &Path) {
    let status = p.wait_exit();
    assert!(status.success(), "fetch failed\n{}", p.dump());
    let name = original.file_name().unwrap();
    assert!(
        same_file(&out.join(name), original),
        "{} differs from the original\n{}",
        out.join(name).display(),
        p.dump()
    );
    assert!(
        p.stdout_lines().iter().any(|l| l.starts_with("complete: ")),
        "no completion line\n{}",
        p.dump()
    );
}

/// Fetches with `fetch` and waits as `finishes_with`; the finished peer.
fn fetched(what: &str, out: &Path, tracker: &str, extra: &[&str], original: &Path) -> Proc {
    let mut p = fetch(what, out, tracker, extra);
    finishes_with(&mut p, out, original);
    p
}

fn signal(p: &Proc, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(p.pid().to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{sig} {} failed", p.pid());
}

/// The index in `line` of `piece N from ADDR (holders H)` style lines.
fn piece_of(line: &str, prefix: &str) -> u32 {
    line[prefix.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no piece number in {line:?}"))
}

#[test]
fn a_file_spreads_to_every_peer_and_peers_trade_pieces() {
    // A slow seed, so the fetchers must also trade pieces among themselves.
    let (dir, src) = seed_file("swarm-basic", "movie.bin", 3 << 20, 11);
    let (t, seed, id) = tracked(&src, &["--piece-size", "64K", "--upload-limit", "1M"]);
    let outs: Vec<_> = (0..3).map(|i| dir.sub(&format!("peer{i}"))).collect();
    let mut peers: Vec<Proc> = outs
        .iter()
        .enumerate()
        .map(|(i, out)| {
            // One fetcher asks by id, the others by name.
            let what = if i == 0 { id.as_str() } else { "movie.bin" };
            fetch(what, out, &t.addr, &["-v", "--exit-when-done"])
        })
        .collect();
    for (p, out) in peers.iter_mut().zip(&outs) {
        finishes_with(p, out, &src);
    }
    let from_seed = format!("from {} ", seed.addr);
    let traded = peers.iter().any(|p| {
        p.stdout_lines()
            .iter()
            .any(|l| l.starts_with("piece ") && !l.contains(&from_seed))
    });
    assert!(traded, "no piece came from a peer other than the seed");
    // No temporary file is left behind.
    for out in &outs {
        assert_eq!(fs::read_dir(out).unwrap().count(), 1, "{}", out.display());
    }
    t.wait_stdout_any(|l| l.starts_with(&format!("registered {}", seed.addr)));
}

#[test]
fn fetching_an_unknown_swarm_exits_1() {
    let dir = TempDir::new("swarm-unknown");
    let t = tracker(&[]);
    fetch_cmd("nothing.bin", &t.addr, dir.path())
        .run()
        .code(1)
        .stderr_has("knows no swarm nothing.bin");
    cmd(bin!("bt-peer"))
        .args(["fetch", "../x", "--tracker", &t.addr])
        .run()
        .code(2)
        .stderr_has("invalid file name");
}

#[test]
fn the_rarest_piece_is_requested_first() {
    let pieces = 40u64;
    let piece = 16 * 1024u64;
    // The seed uploads one 16 KiB piece per 8 s: requests to it stay
    // pending, so the partial peer cannot fill its gaps during the test.
    let (dir, src) = seed_file("swarm-rarest", "data.bin", pieces * piece, 22);
    let (t, seed, id) = tracked(&src, &["--piece-size", "16K", "--upload-limit", "2K"]);

    // A partial peer resumes from a file whose pieces 7 and 23 are wrong.
    let partial_out = dir.sub("partial");
    let swarm = SwarmId::from_hex(&id).unwrap();
    let mut bytes = fs::read(&src).unwrap();
    let rare = [7u32, 23];
    for r in rare {
        let at = r as usize * piece as usize;
        bytes[at..at + piece as usize].fill(0);
    }
    fs::write(partial_path(&partial_out, swarm), &bytes).unwrap();
    let mut partial = fetch(&id, &partial_out, &t.addr, &[]);
    partial.wait_stdout(|l| l == "resumed 38 of 40 pieces from disk");
    partial.wait_stdout(|l| l.starts_with("registered with "));

    // Pieces 7 and 23 have one holder (the seed), every other piece two.
    let leecher_out = dir.sub("leecher");
    let mut leecher = fetch(&id, &leecher_out, &t.addr, &["--verbose"]);
    let prefix = "request piece ";
    let to_seed = format!(" from {} ", seed.addr);
    let line = leecher.wait_stdout(|l| l.starts_with(prefix) && l.contains(&to_seed));
    let first = piece_of(&line, prefix);
    assert!(
        rare.contains(&first) && line.ends_with("(holders 1)"),
        "first request to the seed was {line:?}, not one of the rarest {rare:?}\n{}",
        leecher.dump()
    );
}

#[test]
fn a_corrupt_piece_is_refetched_and_its_peer_never_asked_again() {
    let (dir, src) = seed_file("swarm-corrupt", "doc.bin", 512 * 1024, 33);
    let (t, _seed, _) = tracked(&src, &["--piece-size", "16K", "--upload-limit", "256K"]);

    // A peer completes, then its copy is damaged on disk: every piece gets
    // one flipped byte. It keeps serving what it believes it holds.
    let bad_out = dir.sub("bad");
    let mut bad = fetch("doc.bin", &bad_out, &t.addr, &[]);
    bad.wait_stdout(|l| l.starts_with("complete: "));
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(bad_out.join("doc.bin"))
            .unwrap();
        for i in 0..32u64 {
            f.seek(SeekFrom::Start(i * 16 * 1024 + 100)).unwrap();
            f.write_all(&[0x5a ^ (i as u8)]).unwrap();
        }
        f.sync_all().unwrap();
    }

    let out = dir.sub("victim");
    let victim = fetched(
        "doc.bin",
        &out,
        &t.addr,
        &["--verbose", "--exit-when-done"],
        &src,
    );
    let lines = victim.stdout_lines();
    let banned = format!("failed its check; not asking {} again", bad.addr);
    let at = lines
        .iter()
        .position(|l| l.ends_with(&banned))
        .unwrap_or_else(|| panic!("the corrupt piece was not caught\n{}", victim.dump()));
    let failed = piece_of(&lines[at], "piece ");
    let from_bad = format!(" from {} ", bad.addr);
    assert!(
        lines[at + 1..]
            .iter()
            .all(|l| !(l.starts_with("request piece ") && l.contains(&from_bad))),
        "the corrupt peer was asked again\n{}",
        victim.dump()
    );
    // The piece that failed was fetched again, from someone else.
    assert!(
        lines[at + 1..]
            .iter()
            .any(|l| l.starts_with(&format!("piece {failed} from ")) && !l.contains(&from_bad)),
        "piece {failed} was not fetched again\n{}",
        victim.dump()
    );
}

#[test]
fn a_peer_killed_mid_download_does_not_stop_the_others() {
    let (dir, src) = seed_file("swarm-kill", "big.bin", 2 << 20, 44);
    let (t, _seed, _) = tracked(&src, &["--piece-size", "16K", "--upload-limit", "768K"]);
    let outs: Vec<_> = (0..3).map(|i| dir.sub(&format!("p{i}"))).collect();
    let mut victim = fetch("big.bin", &outs[0], &t.addr, &["-v"]);
    let mut others: Vec<Proc> = outs[1..]
        .iter()
        .map(|o| fetch("big.bin", o, &t.addr, &["--exit-when-done"]))
        .collect();
    // Let the victim hold a few pieces (and others start fetching from it).
    for _ in 0..5 {
        victim.wait_stdout(|l| l.starts_with("piece "));
    }
    victim.kill();
    assert!(
        !victim
            .stdout_lines()
            .iter()
            .any(|l| l.starts_with("complete: ")),
        "the victim finished before it was killed; the test proves nothing\n{}",
        victim.dump()
    );
    for (p, out) in others.iter_mut().zip(&outs[1..]) {
        finishes_with(p, out, &src);
    }
}

#[test]
fn peers_register_again_with_a_restarted_tracker() {
    let (dir, src) = seed_file("swarm-restart", "set.bin", 1 << 20, 55);
    let (mut t, seed, id) = tracked(&src, &["--piece-size", "16K", "--upload-limit", "512K"]);
    let addr = t.addr.clone();
    let a_out = dir.sub("a");
    let mut a = fetch(&id, &a_out, &addr, &["-v"]);
    a.wait_stdout(|l| l.starts_with("piece "));

    t.kill();
    // The restart reuses the port on purpose (peers know only that
    // address). Should another process have taken it meanwhile, say so
    // instead of waiting for peers that can never come back.
    let mut t2 = cmd(bin!("bt-tracker")).args(["--listen", &addr]).start();
    let listening = wait_until(
        "the restarted tracker to listen or fail",
        || {
            if let Some(l) = t2
                .stdout_lines()
                .into_iter()
                .find(|l| l.starts_with("listening on "))
            {
                return Some(Some(l["listening on ".len()..].to_string()));
            }
            // A failed bind before the readiness line is a failure.
            t2.stderr_lines()
                .iter()
                .any(|l| l.contains("binding"))
                .then_some(None)
        },
        || t2.dump(),
    );
    let Some(listening) = listening else {
        panic!(
            "cannot restart the tracker on {addr}: the port was taken while it was down\n{}",
            t2.dump()
        );
    };
    t2.addr = listening;
    // Both peers come back within a report period (0.5 s, under load more).
    t2.wait_stdout_any(|l| l.starts_with(&format!("registered {} ", seed.addr)));
    t2.wait_stdout_any(|l| l.starts_with(&format!("registered {} ", a.addr)));
    a.wait_stdout(|l| l.starts_with("complete: "));
    assert!(same_file(&a_out.join("set.bin"), &src), "{}", a.dump());

    // A newcomer finds the swarm through the new tracker.
    let b_out = dir.sub("b");
    fetched("set.bin", &b_out, &addr, &["--exit-when-done"], &src);
}

/// What a `Liar` does when asked for a piece.
#[derive(Clone, Copy, PartialEq)]
enum Lie {
    /// Closes the connection.
    HangUp,
    /// Goes silent: keeps the connection open, reads on, answers nothing
    /// (a peer that vanished without closing).
    Mute,
    /// Answers `Busy` for the piece, every time, and stays connected.
    Busy,
}

/// A fake member of a swarm: registered with the tracker as holding every
/// piece, it answers `Have` truthfully about that claim but closes the
/// connection, or goes silent, whenever a piece is asked for.
struct Liar {
    addr: SocketAddr,
    /// Piece requests it has hung up on, gone silent on or answered `Busy`.
    hangups: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Liar {
    fn lying(tracker: &str, swarm: SwarmId, lie: Lie) -> Liar {
        let mut c = open(tracker, TRACKER);
        c.send(&TrackerRequest::Lookup(Query::Id(swarm))).unwrap();
        let manifest = match c.expect::<TrackerResponse>().unwrap() {
            TrackerResponse::Manifest(m) => m,
            other => panic!("lookup: {other:?}"),
        };
        let full = Bitfield::full(manifest.piece_count());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (hangups, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let accept = {
            let (hangups, stop, full) = (hangups.clone(), stop.clone(), full.clone());
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let (hangups, full) = (hangups.clone(), full.clone());
                    thread::spawn(move || liar_conn(stream, swarm, &full, &hangups, lie));
                }
            })
        };
        c.send(&TrackerRequest::Register {
            manifest,
            port: addr.port(),
            have: full,
        })
        .unwrap();
        let r = c.expect::<TrackerResponse>().unwrap();
        assert!(matches!(r, TrackerResponse::Registered { .. }), "{r:?}");
        Liar {
            addr,
            hangups,
            stop,
            accept: Some(accept),
        }
    }
}

fn liar_conn(stream: TcpStream, swarm: SwarmId, full: &Bitfield, hangups: &AtomicUsize, lie: Lie) {
    let _ = stream.set_read_timeout(Some(DEADLINE));
    let _ = stream.set_write_timeout(Some(DEADLINE));
    let Ok(mut conn) = Conn::new(stream) else {
        return;
    };
    if !matches!(conn.server_handshake(PEER_WIRE), Ok(true)) {
        return;
    }
    let mut mute = false;
    while let Ok(Some(req)) = conn.recv::<PeerRequest>() {
        if mute {
            continue;
        }
        match req {
            PeerRequest::Have { .. } | PeerRequest::HaveChange { .. } => {
                let empty = Bitfield::new(full.len());
                let answer = PeerResponse::Have {
                    have: full.clone(),
                    fetching: empty.clone(),
                    sending: empty,
                };
                if conn.send(&answer).is_err() {
                    return;
                }
            }
            PeerRequest::Piece { swarm: s, index } => {
                assert_eq!(s, swarm);
                hangups.fetch_add(1, Ordering::SeqCst);
                match lie {
                    Lie::HangUp => return,
                    Lie::Mute => mute = true,
                    Lie::Busy => {
                        if conn.send(&PeerResponse::Busy { index }).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Unblocks accept(); the thread then sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// A finished fetch past lying peers, with what it ran against. Fields
/// drop in order: the fetcher, the liars, then the daemons and their
/// folder.
struct LiarRun {
    p: Proc,
    liars: Vec<Liar>,
    _seed: Proc,
    _t: Proc,
    _dir: TempDir,
}

/// Fetches a file of `pieces` 16 KiB pieces (random from `rng`) from a
/// slow honest seed, so the download is still running when `n` peers
/// telling `lie` are asked for pieces, with `--verbose --exit-when-done`
/// and `extra`. Asserts that it completes and that a liar was asked for a
/// piece (else the test proves nothing).
fn fetch_past_liars(lie: Lie, n: usize, pieces: u64, rng: u64, extra: &[&str]) -> LiarRun {
    let (tag, name, who) = match lie {
        Lie::HangUp => ("swarm-hangup", "h.bin", "liar"),
        Lie::Mute => ("swarm-mute", "m.bin", "silent peer"),
        Lie::Busy => ("swarm-busy", "b.bin", "busy peer"),
    };
    let (dir, src) = seed_file(tag, name, pieces * 16 * 1024, rng);
    let (t, seed, id) = tracked(&src, &["--piece-size", "16K", "--upload-limit", "256K"]);
    let swarm = SwarmId::from_hex(&id).unwrap();
    let liars: Vec<Liar> = (0..n).map(|_| Liar::lying(&t.addr, swarm, lie)).collect();
    let out = dir.sub("out");
    let mut flags = vec!["--verbose", "--exit-when-done"];
    flags.extend_from_slice(extra);
    let p = fetched(&id, &out, &t.addr, &flags, &src);
    let asked: usize = liars.iter().map(|l| l.hangups.load(Ordering::SeqCst)).sum();
    assert!(
        asked > 0,
        "no {who} was asked for a piece; the test proves nothing\n{}",
        p.dump()
    );
    LiarRun {
        p,
        liars,
        _seed: seed,
        _t: t,
        _dir: dir,
    }
}

/// Peers that close the connection on a piece request do not stop the
/// download: more of them than the end-game allowance for seeds, so a
/// piece lost with each of them would stop it for good.
#[test]
fn peers_that_hang_up_on_piece_requests_do_not_stall_the_download() {
    fetch_past_liars(Lie::HangUp, 4, 48, 99, &[]);
}

/// Peers that go silent on a piece request, without closing, cost the
/// download a few seconds, not the I/O timeout: their pieces go to other
/// holders once overdue. With `--timeout 300`, waiting them out would
/// take longer than the harness deadline.
#[test]
fn peers_that_go_silent_without_closing_do_not_stall_the_download() {
    let run = fetch_past_liars(Lie::Mute, 3, 32, 98, &["--timeout", "300"]);
    assert!(
        run.p
            .stdout_lines()
            .iter()
            .any(|l| l.contains(" is late; ")),
        "{}",
        run.p.dump()
    );
}

/// Peers that answer `Busy` to every piece request, and never send one,
/// do not hold the download up: each piece goes to the seed, and the
/// fetcher names the busy peer.
#[test]
fn peers_that_always_answer_busy_do_not_stall_the_download() {
    let run = fetch_past_liars(Lie::Busy, 3, 32, 97, &[]);
    let named = run.liars.iter().any(|l| {
        run.p
            .stdout_lines()
            .iter()
            .any(|s| s.contains(&format!("{} is busy with piece", l.addr)))
    });
    assert!(named, "no busy peer named\n{}", run.p.dump());
}

/// With IPv6 loopback, two "hosts" on one machine: the tracker sees the
/// seed as [::1] and the fetcher as 127.0.0.1 (v4-mapped), both on the same
/// port. The fetcher listens on 0.0.0.0.
#[test]
fn a_peer_on_another_address_with_the_same_port_is_not_taken_for_oneself() {
    if TcpListener::bind("[::1]:0").is_err() {
        return skip("swarm same-port peer over IPv6", "no IPv6 loopback here");
    }
    let (dir, src) = seed_file("swarm-sameport", "s.bin", 200_000, 12);
    let t = tracker_at("[::]:0", &[]);
    let port = t.port();
    let (seed, id) = share_at(&src, &format!("[::1]:{port}"), "[::1]:0", &[]);
    let out = dir.sub("out");
    let listen = format!("0.0.0.0:{}", seed.port());
    let mut p = fetch_at(&id, &format!("127.0.0.1:{port}"), &listen, &out)
        .args(periods(&[]))
        .arg("--exit-when-done")
        .start();
    let status = p.wait_exit();
    assert!(
        status.success(),
        "fetch from [::1]:{} while listening on 0.0.0.0:{} failed\n{}\n{}",
        seed.port(),
        seed.port(),
        p.dump(),
        t.dump()
    );
    assert!(same_file(&out.join("s.bin"), &src), "{}", p.dump());
}

#[test]
fn a_peer_that_stops_pinging_is_evicted() {
    let (_dir, src) = seed_file("swarm-evict", "e.bin", 100_000, 66);
    // Evicted after 3 silent ping intervals (0.6 s) plus at most 0.2 s.
    let t = tracker(&["--ping-interval", "0.2"]);
    let (seed, _id) = share(&src, &t.addr, &["--ping-interval", "0.1"]);
    let registered = format!("registered {} ", seed.addr);
    t.wait_stdout_any(|l| l.starts_with(&registered));
    signal(&seed, "STOP");
    t.wait_stdout_any(|l| l.starts_with(&format!("evicted {} ", seed.addr)));
    signal(&seed, "CONT");
    // Awake again, its next ping is refused and it registers anew.
    wait_until(
        "the peer to register again",
        || {
            let n = t
                .stdout_lines()
                .iter()
                .filter(|l| l.starts_with(&registered))
                .count();
            (n >= 2).then_some(())
        },
        || t.dump(),
    );
}

/// Opens a handshaken connection speaking `protocol`.
fn open(addr: &str, protocol: peerkit::frame::Protocol) -> Conn {
    Conn::open(addr, &Timeouts::default(), protocol).unwrap()
}

#[test]
fn bad_input_gets_a_clear_error_and_daemons_keep_serving() {
    let (_dir, src) = seed_file("swarm-bad", "b.bin", 100_000, 77);
    let (t, seed, id) = tracked(&src, &[]);
    let swarm = SwarmId::from_hex(&id).unwrap();

    framed_battery(&t.addr, TRACKER, |b| match frame::decode(b) {
        Ok(TrackerResponse::Error(e)) => Some(e),
        _ => None,
    });
    framed_battery(&seed.addr, PEER_WIRE, |b| match frame::decode(b) {
        Ok(PeerResponse::Error(e)) => Some(e),
        _ => None,
    });
    // Wrong-protocol handshakes are refused by name.
    let err = Conn::open(&seed.addr, &Timeouts::default(), TRACKER)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("this server speaks peerkit-bt-peer"), "{err}");

    // The tracker still answers, and an out-of-range piece is a typed error
    // that keeps the peer connection open.
    let mut c = open(&t.addr, TRACKER);
    c.send(&TrackerRequest::Lookup(Query::Id(swarm))).unwrap();
    match c.expect::<TrackerResponse>().unwrap() {
        TrackerResponse::Manifest(m) => assert_eq!(m.id(), swarm),
        other => panic!("{other:?}"),
    }
    let mut p = open(&seed.addr, PEER_WIRE);
    p.send(&PeerRequest::Piece { swarm, index: 999 }).unwrap();
    match p.expect::<PeerResponse>().unwrap() {
        PeerResponse::Error(e) => assert!(e.contains("no piece 999"), "{e}"),
        other => panic!("{other:?}"),
    }
    p.send(&PeerRequest::Have { swarm }).unwrap();
    match p.expect::<PeerResponse>().unwrap() {
        PeerResponse::Have { have, fetching, .. } => {
            assert!(have.is_complete());
            assert_eq!(fetching.count(), 0);
        }
        other => panic!("{other:?}"),
    }
    let other = SwarmId::from_hex(&"ab".repeat(32)).unwrap();
    p.send(&PeerRequest::Have { swarm: other }).unwrap();
    assert_eq!(
        p.expect::<PeerResponse>().unwrap(),
        PeerResponse::UnknownSwarm
    );
    seed.wait_stderr(|l| l.contains("invalid request"));
    t.wait_stderr(|l| l.contains("invalid request"));
}

#[test]
fn daemons_stop_cleanly_on_sigterm() {
    let (dir, src) = seed_file("swarm-term", "t.bin", 10_000, 88);
    let (mut t, mut seed, _) = tracked(&src, &[]);
    seed.terminate();
    assert!(seed.wait_exit().success(), "{}", seed.dump());
    // It said goodbye to the tracker.
    t.wait_stdout_any(|l| l.starts_with(&format!("left {} ", seed.addr)));
    t.terminate();
    assert!(t.wait_exit().success(), "{}", t.dump());

    // A SIGTERM as soon as the readiness line appears also stops them
    // cleanly: exit 0, and 130 for a fetch stopped before its file was
    // complete (an exit of its own, not a death by the signal).
    let mut quick = vec![tracker(&[])];
    let t = tracker(&[]);
    let (_seed, _) = share(&src, &t.addr, &[]);
    quick.push(share_cmd(&src, &t.addr, "127.0.0.1:0").daemon());
    let mut fetcher = fetch("t.bin", &dir.sub("quick"), &t.addr, &[]);
    for p in &quick {
        p.terminate();
    }
    fetcher.terminate();
    for mut p in quick {
        assert!(p.wait_exit().success(), "{}", p.dump());
    }
    let code = fetcher.wait_exit().code();
    let complete = fetcher
        .stdout_lines()
        .iter()
        .any(|l| l.starts_with("complete: "));
    let want = if complete { Some(0) } else { Some(130) };
    assert_eq!(code, want, "{}", fetcher.dump());
}

/// Socket timeouts for a real client probing a daemon under attack.
fn probe_timeouts() -> Timeouts {
    Timeouts {
        connect: SERVED_WITHIN,
        io: SERVED_WITHIN,
    }
}

#[test]
fn the_tracker_and_a_seed_serve_real_clients_through_idle_and_trickling_floods() {
    // Long periods: the seed's own tracker connections stay out of the
    // descriptor counts.
    let (dir, src) = seed_file("swarm-exhaust", "x.bin", 200_000, 99);
    let (t, seed, id) = tracked(&src, &["--ping-interval", "30", "--report-interval", "30"]);
    let swarm = SwarmId::from_hex(&id).unwrap();

    let addr = t.addr.clone();
    exhaustion("bt-tracker", &t, 0x41, move || {
        let mut c = Conn::open(&addr, &probe_timeouts(), TRACKER)
            .unwrap_or_else(|e| panic!("a real client was not served: {e}"));
        c.send(&TrackerRequest::Lookup(Query::Id(swarm))).unwrap();
        match c.expect::<TrackerResponse>().unwrap() {
            TrackerResponse::Manifest(m) => assert_eq!(m.id(), swarm),
            other => panic!("lookup answered {other:?}"),
        }
    });

    let addr = seed.addr.clone();
    exhaustion("bt-peer", &seed, 0x41, move || {
        let mut c = Conn::open(&addr, &probe_timeouts(), PEER_WIRE)
            .unwrap_or_else(|e| panic!("a real client was not served: {e}"));
        c.send(&PeerRequest::Have { swarm }).unwrap();
        match c.expect::<PeerResponse>().unwrap() {
            PeerResponse::Have { have, .. } => assert!(have.is_complete()),
            other => panic!("have answered {other:?}"),
        }
    });

    // After both floods the swarm still works end to end.
    let out = dir.sub("after");
    fetched(&id, &out, &t.addr, &["--exit-when-done"], &src);
}

#[test]
fn fetch_prints_piece_lines_only_with_v_and_only_data_with_q() {
    let (dir, src) = seed_file("swarm-verbosity", "v.bin", 256 << 10, 12);
    let (t, _seed, _) = tracked(&src, &["--piece-size", "16K"]);
    let is_step = |l: &String| l.starts_with("piece ") || l.starts_with("request piece ");
    // A completed fetch into `sub` with `flags`, and its stdout.
    let run = |sub: &str, flags: &[&str]| {
        let mut flags = flags.to_vec();
        flags.push("--exit-when-done");
        let p = fetched("v.bin", &dir.sub(sub), &t.addr, &flags, &src);
        let lines = p.stdout_lines();
        (p, lines)
    };
    let starts = |lines: &[String], prefix: &str| lines.iter().any(|l| l.starts_with(prefix));

    let (p, lines) = run("normal", &[]);
    assert!(!lines.iter().any(is_step), "{}", p.dump());
    assert!(starts(&lines, "fetching v.bin"), "{}", p.dump());

    let (p, lines) = run("verbose", &["-v"]);
    let received = lines.iter().filter(|l| l.starts_with("piece ")).count();
    assert_eq!(received, 16, "{}", p.dump());
    assert!(starts(&lines, "request piece "), "{}", p.dump());

    let (p, lines) = run("quiet", &["-q"]);
    assert_eq!(lines.len(), 2, "{}", p.dump());
    assert!(lines[0].starts_with("listening on "), "{}", p.dump());
    assert!(lines[1].starts_with("complete: v.bin "), "{}", p.dump());
    assert!(p.stderr_lines().is_empty(), "{}", p.dump());
}

#[test]
fn an_interrupted_exit_when_done_fetch_exits_non_zero() {
    // 16 s at this rate: the signals always come first.
    let (dir, src) = seed_file("swarm-interrupt", "i.bin", 1 << 20, 13);
    let (t, _seed, _) = tracked(&src, &["--piece-size", "16K", "--upload-limit", "64K"]);
    for (sig, how) in [("INT", "Ctrl-C"), ("TERM", "SIGTERM")] {
        let out = dir.sub(sig);
        let mut p = fetch("i.bin", &out, &t.addr, &["-v", "--exit-when-done"]);
        p.wait_stdout(|l| l.starts_with("piece "));
        signal(&p, sig);
        let status = p.wait_exit();
        assert_eq!(status.code(), Some(130), "{how}\n{}", p.dump());
        p.wait_stderr(|l| l.contains("interrupted: stopped with "));
        assert!(
            !p.stdout_lines().iter().any(|l| l.starts_with("complete: ")),
            "{how}\n{}",
            p.dump()
        );
    }
    // Without --exit-when-done, a fetch stopped before the file is
    // complete has not done what it was asked either.
    let out = dir.sub("seeding");
    let mut p = fetch("i.bin", &out, &t.addr, &["-v"]);
    p.wait_stdout(|l| l.starts_with("piece "));
    p.terminate();
    assert_eq!(p.wait_exit().code(), Some(130), "{}", p.dump());
    p.wait_stderr(|l| l.contains("run again with the same --out to resume"));
}

#[test]
fn share_and_fetch_check_their_paths_before_listening_and_take_short_ids() {
    let dir = TempDir::new("swarm-paths");
    let t = tracker(&[]);
    // A file that is not there: the error, and no readiness line.
    let missing = dir.path().join("missing.bin");
    let out = share_cmd(&missing, &t.addr, "127.0.0.1:0")
        .run()
        .code(2)
        .stderr_has("missing.bin: no such file or directory");
    assert!(out.stdout.is_empty(), "{}", out.dump());
    share_cmd(dir.path(), &t.addr, "127.0.0.1:0")
        .run()
        .code(2)
        .stderr_has("not a regular file");

    let src = dir.sub("seed").join("s.bin");
    write_random_file(&src, 64 << 10, 21);
    let (_seed, id) = share(&src, &t.addr, &["--piece-size", "16K"]);
    // --out under a folder that does not exist: refused, nothing made.
    let nowhere = dir.path().join("nonexistent").join("x");
    let out = fetch_cmd("s.bin", &t.addr, &nowhere)
        .run()
        .code(1)
        .stderr_has("does not exist (create it first)");
    assert!(out.stdout.is_empty(), "{}", out.dump());
    assert!(!dir.path().join("nonexistent").exists());
    // A new last folder is made, and said so; the short id the tracker
    // logs (12 digits and "...") finds the swarm.
    let short = format!("{}...", &id[..12]);
    let fresh = dir.path().join("fresh");
    let p = fetched(&short, &fresh, &t.addr, &["--exit-when-done"], &src);
    p.wait_stderr(|l| l.contains("created folder") && l.contains("fresh"));
    // Any longer start of it too.
    let again = dir.sub("again");
    fetched(&id[..20], &again, &t.addr, &["--exit-when-done"], &src);
    fetch_cmd("0000000000", &t.addr, dir.path())
        .run()
        .code(1)
        .stderr_has("knows no swarm 0000000000");
}

/// What a terminal shows of `transcript`, line by line, roughly: a carriage
/// return or an erase-line sequence starts the line over, other escape
/// sequences draw nothing.
fn screen_lines(transcript: &str) -> Vec<String> {
    transcript
        .split('\n')
        .map(|line| {
            let mut shown = String::new();
            let mut chars = line.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\r' => shown.clear(),
                    '\u{1b}' => {
                        let mut seq = String::new();
                        if chars.peek() == Some(&'[') {
                            chars.next();
                            while let Some(&n) = chars.peek() {
                                chars.next();
                                seq.push(n);
                                if n.is_ascii_alphabetic() {
                                    break;
                                }
                            }
                        }
                        if seq.ends_with('K') {
                            shown.clear();
                        }
                    }
                    c => shown.push(c),
                }
            }
            shown
        })
        .collect()
}

#[test]
fn the_progress_bar_leaves_no_stray_lines() {
    if Command::new("script").arg("--version").output().is_err() {
        return skip(
            "swarm progress bar",
            "no script(1) to give bt-peer a terminal (util-linux)",
        );
    }
    // About 2 s: the bar is drawn several times.
    let (dir, src) = seed_file("swarm-bar", "p.bin", 1 << 20, 14);
    let (t, _seed, _) = tracked(&src, &["--piece-size", "16K", "--upload-limit", "512K"]);
    let out = dir.sub("out");
    let fetch_cmd = format!(
        "TERM=xterm {} fetch p.bin --tracker {} --listen 127.0.0.1:0 --out {} --exit-when-done",
        bin!("bt-peer"),
        t.addr,
        out.display()
    );
    let run = cmd("script")
        .args(["-qfec", &fetch_cmd, "/dev/null"])
        .run()
        .ok();
    assert!(same_file(&out.join("p.bin"), &src), "{}", run.dump());
    let transcript = run.stdout.replace("\r\n", "\n");
    assert!(
        transcript.contains("eta "),
        "no bar was drawn\n{}",
        run.dump()
    );
    let screen = screen_lines(&transcript);
    let stray: Vec<&String> = screen.iter().filter(|l| l.contains("eta ")).collect();
    assert!(
        stray.is_empty(),
        "bar left behind: {stray:?}\n{}",
        run.dump()
    );
    assert!(
        screen.iter().any(|l| l.starts_with("complete: p.bin ")),
        "{}",
        run.dump()
    );
}

#[test]
fn a_capped_peer_says_busy_for_a_piece_it_is_already_sending() {
    // 64 KiB pieces at 16 KiB/s: one piece takes about 3 s to send.
    let (_dir, src) = seed_file("swarm-busy", "b.bin", 256 << 10, 15);
    let (_t, seed, id) = tracked(&src, &["--piece-size", "64K", "--upload-limit", "16K"]);
    let swarm = SwarmId::from_hex(&id).unwrap();
    let mut a = open(&seed.addr, PEER_WIRE);
    a.send(&PeerRequest::Piece { swarm, index: 0 }).unwrap();
    // While piece 0 is on its way to a, the seed says so in its `sending`
    // set, and b asking for it is told Busy.
    let mut b = open(&seed.addr, PEER_WIRE);
    wait_until(
        "the seed to start sending piece 0",
        || {
            b.send(&PeerRequest::Have { swarm }).unwrap();
            match b.expect::<PeerResponse>().unwrap() {
                PeerResponse::Have { sending, .. } => sending.has(0).then_some(()),
                other => panic!("{other:?}"),
            }
        },
        || seed.dump(),
    );
    b.send(&PeerRequest::Piece { swarm, index: 0 }).unwrap();
    assert_eq!(
        b.expect::<PeerResponse>().unwrap(),
        PeerResponse::Busy { index: 0 }
    );
    // a still gets the whole piece.
    match a.expect::<PeerResponse>().unwrap() {
        PeerResponse::Piece { index: 0, len } => assert_eq!(len, 64 << 10),
        other => panic!("{other:?}"),
    }
}

#[test]
fn help_shows_defaults_and_an_example() {
    let out = cmd(bin!("bt-tracker")).arg("--help").run().ok();
    assert!(out.stdout.contains("0.0.0.0:6969"), "{}", out.dump());
    assert!(out.stdout.contains("Example:"), "{}", out.dump());
    for sub in ["share", "fetch"] {
        let out = cmd(bin!("bt-peer")).args([sub, "--help"]).run().ok();
        for needle in ["[default: 127.0.0.1:6969]", "[default: 10]", "Example:"] {
            assert!(
                out.stdout.contains(needle),
                "{sub}: {needle}\n{}",
                out.dump()
            );
        }
    }
    let out = cmd(bin!("bt-peer")).args(["fetch", "--help"]).run().ok();
    assert!(out.stdout.contains("--exit-when-done"), "{}", out.dump());
    assert!(out.stdout.contains("Exit status:"), "{}", out.dump());
}

/// A non-loopback IPv4 address of this machine, if it has one (a UDP
/// connect sends nothing; it only picks the route's source address).
fn non_loopback_ipv4() -> Option<std::net::IpAddr> {
    ["192.0.2.1:9", "10.255.255.254:9", "198.51.100.1:9"]
        .iter()
        .find_map(|target| {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
            s.connect(target).ok()?;
            let ip = s.local_addr().ok()?.ip();
            (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
        })
}

/// `non_loopback_ipv4`, or `None` once the test `what` is reported as
/// skipped for want of one.
fn non_loopback_ipv4_or_skip(what: &str) -> Option<std::net::IpAddr> {
    let ip = non_loopback_ipv4();
    if ip.is_none() {
        skip(what, "no non-loopback IPv4 address here");
    }
    ip
}

/// The peers a raw client gets when it reaches the tracker at `addr`.
fn peers_via(addr: &str, swarm: SwarmId) -> Vec<SocketAddr> {
    let mut c = open(addr, TRACKER);
    c.send(&TrackerRequest::Peers { swarm, port: 1 }).unwrap();
    match c.expect::<TrackerResponse>().unwrap() {
        TrackerResponse::Peers(list) => list.iter().map(|p| p.addr).collect(),
        other => panic!("peers: {other:?}"),
    }
}

/// A seed on the tracker's host registered over 127.0.0.1 is handed to a
/// client that came in on another address at that address, and a fetcher
/// there gets the file from it; a client over loopback still sees
/// 127.0.0.1.
#[test]
fn a_member_registered_over_loopback_is_handed_out_at_the_address_the_asker_reached() {
    let Some(ip) = non_loopback_ipv4_or_skip("swarm member handed out at the reached address")
    else {
        return;
    };
    let (dir, src) = seed_file("swarm-reachable", "r.bin", 300_000, 31);
    let t = tracker_at("0.0.0.0:0", &[]);
    let port = t.port();
    let (seed, id) = share_at(&src, &format!("127.0.0.1:{port}"), "0.0.0.0:0", &[]);
    let swarm = SwarmId::from_hex(&id).unwrap();
    let seed_port = seed.port();
    t.wait_stdout_any(|l| l.starts_with(&format!("registered 127.0.0.1:{seed_port} ")));
    assert_eq!(
        peers_via(&format!("{ip}:{port}"), swarm),
        vec![SocketAddr::new(ip, seed_port)],
        "{}",
        t.dump()
    );
    assert_eq!(
        peers_via(&format!("127.0.0.1:{port}"), swarm),
        vec![SocketAddr::new([127, 0, 0, 1].into(), seed_port)]
    );
    let out = dir.sub("out");
    let mut p = fetch_at(&id, &format!("{ip}:{port}"), &format!("{ip}:0"), &out)
        .args(periods(&[]))
        .args(["--exit-when-done", "-v"])
        .start();
    finishes_with(&mut p, &out, &src);
    let from = format!(" from {ip}:{seed_port} ");
    assert!(
        p.stdout_lines()
            .iter()
            .any(|l| l.starts_with("piece ") && l.contains(&from)),
        "{}",
        p.dump()
    );
    // The seed, listening everywhere, has nothing to warn about.
    assert!(seed.stderr_lines().is_empty(), "{}", seed.dump());
}

/// A peer listening on loopback only, with the tracker on another address,
/// says at start-up which flag makes it reachable.
#[test]
fn a_peer_only_on_loopback_with_a_remote_tracker_says_which_flag_fixes_it() {
    let Some(ip) = non_loopback_ipv4_or_skip("swarm loopback-only peer advice") else {
        return;
    };
    let (_dir, src) = seed_file("swarm-loopback-only", "l.bin", 10_000, 32);
    let t = tracker_at(&format!("{ip}:0"), &[]);
    let (seed, _id) = share(&src, &t.addr, &[]);
    seed.wait_stderr(|l| l.contains("other hosts cannot fetch") && l.contains("--listen"));
}

/// A fetcher whose only peer refuses connections says so, and keeps
/// trying: once the peer is there, the download completes.
#[test]
fn a_fetcher_that_reaches_no_peer_says_so_and_keeps_trying() {
    // Learn the manifest from a seed that then goes away for good...
    let (dir, src) = seed_file("swarm-unreachable", "u.bin", 200_000, 33);
    let (t, mut seed, id) = tracked(&src, &[]);
    let swarm = SwarmId::from_hex(&id).unwrap();
    let mut c = open(&t.addr, TRACKER);
    c.send(&TrackerRequest::Lookup(Query::Id(swarm))).unwrap();
    let manifest = match c.expect::<TrackerResponse>().unwrap() {
        TrackerResponse::Manifest(m) => m,
        other => panic!("lookup: {other:?}"),
    };
    // ...and a member at a port where nothing listens.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    c.send(&TrackerRequest::Register {
        have: Bitfield::full(manifest.piece_count()),
        manifest,
        port: dead.port(),
    })
    .unwrap();
    assert!(matches!(
        c.expect::<TrackerResponse>().unwrap(),
        TrackerResponse::Registered { .. }
    ));
    seed.terminate();
    seed.wait_exit();
    let out = dir.sub("out");
    let mut p = fetch(&id, &out, &t.addr, &["--exit-when-done"]);
    p.wait_stderr(|l| l.contains("cannot reach any peer") && l.contains(&dead.to_string()));
    // A seed comes back: the fetcher finds it in a fresh peer list.
    let (_seed2, _) = share(&src, &t.addr, &[]);
    finishes_with(&mut p, &out, &src);
}

#[test]
fn a_peer_on_every_interface_names_itself_by_the_address_the_tracker_hands_out() {
    // The readiness line says 0.0.0.0:PORT, which no one can reach; the
    // registration line gives the address others fetch from (what a pane
    // title or a log reader can match against the tracker's lines).
    let (_dir, src) = seed_file("swarm-me", "me.bin", 64 << 10, 5);
    let t = tracker(&[]);
    let mut p = cmd(bin!("bt-peer"))
        .arg("share")
        .arg(&src)
        .args(["--tracker", &t.addr, "--listen", "0.0.0.0:0"])
        .args(FAST)
        .daemon();
    let port = p.port();
    p.wait_stdout(|l| l == format!("registered with {} as 127.0.0.1:{port}", t.addr));
}

/// Reads Server-Sent Events from a view until `want` has been seen; the
/// events read, in order.
fn events_until(
    events: &mut std::io::BufReader<TcpStream>,
    want: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    use std::io::BufRead;
    let mut seen = Vec::new();
    let mut l = String::new();
    loop {
        l.clear();
        let n = events
            .read_line(&mut l)
            .expect("an event before the deadline");
        assert!(n > 0, "the event stream closed; seen {seen:?}");
        if let Some(data) = l.strip_prefix("data: ") {
            let v: serde_json::Value = serde_json::from_str(data).unwrap();
            let done = want(&v);
            seen.push(v);
            if done {
                return seen;
            }
        }
    }
}

/// Subscribes to a view's events; returns once subscribed.
fn subscribe(view: &str) -> std::io::BufReader<TcpStream> {
    use std::io::BufRead;
    let addr = view.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(b"GET /events HTTP/1.1\r\n\r\n").unwrap();
    let mut r = std::io::BufReader::new(s);
    let mut l = String::new();
    while l != ": events\n" {
        l.clear();
        r.read_line(&mut l).unwrap();
    }
    r
}

fn view_of(p: &mut Proc) -> String {
    let line = p.wait_stdout_any(|l| l.starts_with("view on "));
    assert_eq!(p.stdout_lines()[1], line, "{}", p.dump());
    line["view on ".len()..].to_string()
}

fn state_of(view: &str) -> serde_json::Value {
    let (status, body) = view_get(view, "/state.json");
    assert_eq!(status, "HTTP/1.1 200 OK");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn the_tracker_and_peer_views_show_the_piece_map_rates_and_count_exactly() {
    let dir = TempDir::new("swarm-view");
    let name = "<img src=x onerror=alert(1)>.bin";
    let src = dir.sub("seed").join(name);
    let size: u64 = 1 << 20;
    write_random_file(&src, size, 5);
    let mut t = tracker(&["--http", "127.0.0.1:0", "--ping-interval", "0.2"]);
    let tview = view_of(&mut t);
    let mut events = subscribe(&tview);
    let (mut seed, _) = share(
        &src,
        &t.addr,
        &[
            "--piece-size",
            "64K",
            "--upload-limit",
            "2M",
            "--http",
            "127.0.0.1:0",
        ],
    );
    let sview = view_of(&mut seed);
    let mut f = fetch(name, &dir.sub("out"), &t.addr, &["--http", "127.0.0.1:0"]);
    let fview = view_of(&mut f);
    f.wait_stdout(|l| l.starts_with("complete: "));

    // Events: both joined, the fetcher's pieces held, its completion.
    let seen = events_until(&mut events, |e| e["kind"] == "complete");
    let joined: Vec<&str> = seen
        .iter()
        .filter(|e| e["kind"] == "joined")
        .map(|e| e["addr"].as_str().unwrap())
        .collect();
    assert_eq!(joined, [seed.addr.as_str(), f.addr.as_str()], "{seen:?}");
    assert!(
        seen.iter()
            .any(|e| e["kind"] == "held" && e["addr"] == f.addr.as_str())
    );
    assert_eq!(seen.last().unwrap()["addr"], f.addr.as_str());

    // The tracker's state: the piece map, rarity, the members' traffic.
    let full = "1".repeat(16);
    let state = wait_until(
        "the seed's stats with everything it sent",
        || {
            let s = state_of(&tview);
            let peers = s["swarms"][0]["peers"].as_array()?;
            let sent = peers.iter().find(|p| p["seed"] == true)?["uploaded"].as_u64()?;
            (sent == size).then_some(s)
        },
        || t.dump(),
    );
    assert_eq!(state["system"], "bt-tracker");
    let swarm = &state["swarms"][0];
    assert_eq!(swarm["name"], name);
    assert_eq!(swarm["size"], size);
    assert_eq!(swarm["piece_count"], 16);
    assert_eq!(swarm["rarity"], serde_json::json!(vec![2; 16]));
    let peers = swarm["peers"].as_array().unwrap();
    let addrs: Vec<&str> = peers.iter().map(|p| p["addr"].as_str().unwrap()).collect();
    assert_eq!(addrs, [seed.addr.as_str(), f.addr.as_str()], "seeds first");
    for p in peers {
        assert_eq!(p["bitfield"], full.as_str());
        assert_eq!(p["pieces"], 16);
    }
    assert_eq!(peers[0]["upload_limit"], 2 << 20);
    assert_eq!(peers[1]["seed"], false);
    assert!(peers[1]["completed_secs"].as_f64().is_some(), "{state}");
    let timing = &swarm["timing"];
    assert_eq!(timing["done"], true, "{state}");
    assert_eq!(timing["fetchers"], 1);
    // F/u_s with the seed's cap: 1 MiB at 2 MiB/s.
    assert_eq!(timing["bound_seed_secs"], 0.5, "{state}");
    assert!(timing["elapsed_secs"].as_f64().unwrap() > 0.0);

    // Metrics: a counter the test alone moves, moved by exactly its asks.
    let lookups = "peerkit_tracker_requests_total{kind=\"lookup\"}";
    let (_, before) = view_get(&tview, "/metrics");
    assert_eq!(
        metric(&before, lookups),
        Some(1.0),
        "the fetcher's one lookup"
    );
    let mut c = open(&t.addr, TRACKER);
    for _ in 0..3 {
        c.send(&TrackerRequest::Lookup(
            Query::parse("nothing-here.bin").unwrap(),
        ))
        .unwrap();
        assert_eq!(
            c.expect::<TrackerResponse>().unwrap(),
            TrackerResponse::NotFound
        );
    }
    let (_, after) = view_get(&tview, "/metrics");
    assert_eq!(metric(&after, lookups), Some(4.0));
    assert_eq!(
        metric(&after, "peerkit_tracker_errors_total{kind=\"not_found\"}"),
        Some(3.0)
    );
    assert_eq!(metric(&after, "peerkit_swarm_members"), Some(2.0));
    assert_eq!(metric(&after, "peerkit_swarm_pieces_held"), Some(32.0));
    assert!(after.contains("# TYPE peerkit_tracker_request_seconds histogram"));

    // The peers' own views and counters.
    let fs_ = state_of(&fview);
    assert_eq!(fs_["system"], "bt-peer");
    assert_eq!(fs_["name"], name);
    assert_eq!(fs_["bitfield"], full.as_str());
    assert_eq!(fs_["complete"], true);
    assert_eq!(fs_["downloaded"], size);
    let recent = fs_["recent"].as_array().unwrap();
    assert_eq!(recent.len(), 16);
    assert!(
        recent
            .iter()
            .all(|r| r["direction"] == "down" && r["peer"] == seed.addr.as_str())
    );
    let (_, fm) = view_get(&fview, "/metrics");
    assert_eq!(
        metric(&fm, "peerkit_peer_pieces_total{direction=\"in\"}"),
        Some(16.0)
    );
    assert_eq!(
        metric(&fm, "peerkit_peer_bytes_total{direction=\"in\"}"),
        Some(size as f64)
    );
    assert_eq!(metric(&fm, "peerkit_peer_piece_seconds_count"), Some(16.0));
    assert_eq!(metric(&fm, "peerkit_swarm_pieces_held"), Some(16.0));
    let (_, sm) = view_get(&sview, "/metrics");
    assert_eq!(
        metric(&sm, "peerkit_peer_pieces_total{direction=\"out\"}"),
        Some(16.0)
    );
    assert_eq!(
        metric(&sm, "peerkit_peer_requests_total{kind=\"piece\"}"),
        Some(16.0)
    );
    assert_eq!(
        metric(&sm, "peerkit_peer_bytes_total{direction=\"out\"}"),
        Some(size as f64)
    );
    assert!(sm.contains("peerkit_connections_open "));
    let page = view_get(&tview, "/").1;
    assert!(page.contains("EventSource(\"events\")") && page.contains("BitTorrent-like tracker"));
}

/// A tracker in front of `real` that passes every request on, except
/// `Peers`, answered with `bogus` made-up peers (each with a bitfield the
/// right length, so nothing else gives them away).
fn lying_tracker(real: String, bogus: usize) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let lists = Arc::new(AtomicUsize::new(0));
    let counted = lists.clone();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let real = real.clone();
            let counted = counted.clone();
            thread::spawn(move || {
                let mut front = Conn::new(s).unwrap();
                if !front.server_handshake(TRACKER).unwrap_or(false) {
                    return;
                }
                let mut back = Conn::open(&real, &Timeouts::secs(20), TRACKER).unwrap();
                let mut pieces = 0;
                while let Ok(Some(req)) = front.recv::<TrackerRequest>() {
                    let resp = match req {
                        TrackerRequest::Peers { .. } => {
                            counted.fetch_add(1, Ordering::SeqCst);
                            TrackerResponse::Peers(
                                (0..bogus)
                                    .map(|i| PeerInfo {
                                        addr: SocketAddr::from((
                                            [127, 1, (i >> 8) as u8, i as u8],
                                            1 + (i >> 16) as u16,
                                        )),
                                        have: Bitfield::full(pieces),
                                    })
                                    .collect(),
                            )
                        }
                        other => {
                            back.send(&other).unwrap();
                            let resp: TrackerResponse = back.expect().unwrap();
                            if let TrackerResponse::Manifest(m) = &resp {
                                pieces = m.piece_count();
                            }
                            resp
                        }
                    };
                    if front.send(&resp).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, lists)
}

#[test]
fn a_tracker_listing_a_hundred_thousand_peers_is_sampled_down_and_memory_stays_bounded() {
    let dir = TempDir::new("swarm-liar-tracker");
    let file = dir.path().join("liar.bin");
    fs::write(&file, pseudo_random_bytes(300_000, 3)).unwrap();
    let t = tracker(&[]);
    let (_seed, _) = share(&file, &t.addr, &[]);
    let (liar, lists) = lying_tracker(t.addr.clone(), 100_000);
    let p = fetch("liar.bin", &dir.sub("out"), &liar, &[]);
    p.wait_stderr(|l| {
        l.contains("tracker: 100000 peers listed, at most 64 expected; using 64 at random")
    });
    // Still asking, so still working, in bounded memory, lists later.
    wait_until(
        "five lists of 100000 peers taken in",
        || (lists.load(Ordering::SeqCst) >= 5).then_some(()),
        || p.dump(),
    );
    let rss_kib: u64 = fs::read_to_string(format!("/proc/{}/status", p.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    assert!(rss_kib < 200 * 1024, "{rss_kib} KiB resident\n{}", p.dump());
}
