//! rdird and rls: every design lists big and odd folders exactly, refuses
//! what lies outside the root, survives bogus handles and bad RPC records,
//! keeps its descriptors constant, goes on across restarts (stateless) or
//! refuses old handles (stateful), serves an rpcgen-built C client, and
//! passes the core's exhaustion checks.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use peerkit::frame::Conn;
use peerkit::net::Timeouts;
use peerkit::oncrpc::msg::{Accepted, CallHeader, Denied, Reply, ReplyBody};
use peerkit::oncrpc::{self, Client, Encoder, record};
use peerkit::rdir::client::{self, Endpoint, Options, RemoteDir};
use peerkit::rdir::proto::{
    STATEFUL, STATELESS, StatefulRequest, StatefulResponse, StatelessRequest, StatelessResponse,
};
use peerkit::rdir::{Mode, rpc};

use crate::bin;
use crate::harness::{
    self, Proc, SERVED_WITHIN, TempDir, cmd, exhaustion, metric, usage, view_get,
};

const MODES: [Mode; 3] = [Mode::Stateful, Mode::Stateless, Mode::Rpc];

/// A transient RPC program number of this test run's own (so tests in
/// parallel, and other runs, never share an rpcbind registration).
fn prog(n: u32) -> u32 {
    0x4000_0000 | ((std::process::id() & 0xffff) << 8) | n
}

/// A running rdird, stopped with SIGTERM on drop so an RPC server takes
/// its registration out of rpcbind.
struct Rdird(Proc);

impl std::ops::Deref for Rdird {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.0
    }
}

impl std::ops::DerefMut for Rdird {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.0
    }
}

impl Drop for Rdird {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            // It may have been killed already (restart tests).
            let _ = Command::new("kill")
                .arg(self.0.pid().to_string())
                .stderr(std::process::Stdio::null())
                .status();
            self.0.wait_exit();
        }
    }
}

fn rdird(mode: Mode, root: &Path, prog_n: u32, extra: &[&str]) -> Rdird {
    rdird_on(mode, root, prog_n, "127.0.0.1:0", extra)
}

fn rdird_on(mode: Mode, root: &Path, prog_n: u32, listen: &str, extra: &[&str]) -> Rdird {
    Rdird(
        cmd(bin!("rdird"))
            .arg("--mode")
            .arg(mode.to_string())
            .arg("--root")
            .arg(root)
            .arg("--listen")
            .arg(listen)
            .arg("--prog")
            .arg(prog(prog_n).to_string())
            .args(extra)
            .daemon(),
    )
}

/// `rls --mode MODE --server 127.0.0.1`, the environment's server left
/// out.
fn rls_cmd(mode: Mode) -> Command {
    let mut c = Command::new(bin!("rls"));
    c.env_remove("SERVIDOR")
        .env_remove("PUERTO")
        .arg("--mode")
        .arg(mode.to_string())
        .arg("--server")
        .arg("127.0.0.1");
    c
}

/// Runs rls against `d` and returns (exit code, stdout bytes, stderr).
fn rls(d: &Proc, mode: Mode, prog_n: u32, args: &[&OsStr]) -> (Option<i32>, Vec<u8>, String) {
    let out = rls_cmd(mode)
        .arg("--port")
        .arg(d.port().to_string())
        .arg("--prog")
        .arg(prog(prog_n).to_string())
        .arg("--timeout")
        .arg("20")
        .args(args)
        .output()
        .expect("run rls");
    (
        out.status.code(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The local listing in readdir order, `.` and `..` left out.
fn local_listing(dir: &Path) -> Vec<Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect()
}

fn without_dots(names: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    names
        .into_iter()
        .filter(|n| n != b"." && n != b"..")
        .collect()
}

fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    assert_eq!(v.pop(), Some(Vec::new()), "output ends with a newline");
    v
}

fn endpoint(d: &Proc, prog_n: u32, t: Timeouts) -> Endpoint {
    let mut ep = Endpoint::new("127.0.0.1", Some(d.port()));
    ep.prog = prog(prog_n);
    ep.timeouts = t;
    ep
}

fn list_all(dir: &mut dyn RemoteDir) -> Vec<Vec<u8>> {
    dir.entries().map(|n| n.unwrap()).collect()
}

#[test]
fn every_mode_lists_ten_thousand_entries_exactly() {
    let t = TempDir::new("rdir-big");
    let big = t.sub("root/big");
    for i in 0..10_000 {
        fs::File::create(big.join(format!("entry-{i:05}"))).unwrap();
    }
    let want = local_listing(&big);
    assert_eq!(want.len(), 10_000);
    for (n, mode) in MODES.into_iter().enumerate() {
        let d = rdird(mode, &t.sub("root"), n as u32, &["-q"]);
        for batch in ["1024", "333"] {
            let (code, out, err) = rls(
                &d,
                mode,
                n as u32,
                &["--batch".as_ref(), batch.as_ref(), "big".as_ref()],
            );
            assert_eq!(code, Some(0), "{mode}: {err}\n{}", d.dump());
            let got = lines(&out);
            assert_eq!(got.len(), 10_002, "{mode}: . and .. included");
            assert_eq!(
                without_dots(got),
                want,
                "{mode} batch {batch}: readdir order"
            );
        }
    }
}

#[test]
fn odd_names_and_an_empty_folder_stay_exact_in_every_mode() {
    let t = TempDir::new("rdir-odd");
    let root = t.sub("root");
    let odd = t.sub("root/odd dir");
    t.sub("root/empty");
    let names: Vec<Vec<u8>> = vec![
        b"with space".to_vec(),
        b"new\nline".to_vec(),
        b"\xff\xfe not utf-8".to_vec(),
        b"tab\there".to_vec(),
        b"quote\"back\\slash".to_vec(),
        "ñandú €".as_bytes().to_vec(),
        vec![b'L'; 255],
    ];
    for n in &names {
        fs::File::create(odd.join(OsStr::from_bytes(n))).unwrap();
    }
    let want_json = |dir: &str, name: &[u8]| match std::str::from_utf8(name) {
        Ok(s) => {
            let esc = s
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
                .replace('\t', "\\t");
            format!("{{\"dir\":\"{dir}\",\"name\":\"{esc}\"}}")
        }
        Err(_) => {
            let b: Vec<String> = name.iter().map(u8::to_string).collect();
            format!("{{\"dir\":\"{dir}\",\"name_bytes\":[{}]}}", b.join(","))
        }
    };
    for (n, mode) in MODES.into_iter().enumerate() {
        let n = 10 + n as u32;
        let d = rdird(mode, &root, n, &["-q"]);
        let (code, out, err) = rls(&d, mode, n, &["--json".as_ref(), "odd dir".as_ref()]);
        assert_eq!(code, Some(0), "{err}");
        let mut got: Vec<String> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        let mut want: Vec<String> = names.iter().map(|n| want_json("odd dir", n)).collect();
        want.push(want_json("odd dir", b"."));
        want.push(want_json("odd dir", b".."));
        got.sort();
        want.sort();
        assert_eq!(got, want, "{mode}");
        // Raw bytes on stdout: every name but the one with a newline is a line.
        let (_, out, _) = rls(&d, mode, n, &["odd dir".as_ref()]);
        let got = lines(&out);
        for name in names.iter().filter(|n| !n.contains(&b'\n')) {
            assert!(got.contains(name), "{mode}: {name:?} missing");
        }
        // Through the library, the names are exact, newline and all.
        let mut dir = client::open(
            &endpoint(&d, n, Timeouts::secs(20)),
            mode,
            b"odd dir",
            Options::default(),
        )
        .unwrap();
        let mut all = without_dots(list_all(&mut *dir));
        all.sort();
        let mut want = names.clone();
        want.sort();
        assert_eq!(all, want, "{mode}");
        dir.close().unwrap();
        let (code, out, _) = rls(&d, mode, n, &["empty".as_ref()]);
        assert_eq!(code, Some(0));
        let mut got = lines(&out);
        got.sort();
        assert_eq!(got, vec![b".".to_vec(), b"..".to_vec()], "{mode}");
    }
}

#[test]
fn paths_outside_the_root_and_missing_ones_are_refused() {
    let t = TempDir::new("rdir-outside");
    let root = t.sub("root");
    t.sub("root/sub");
    t.sub("secret");
    fs::write(root.join("file"), b"x").unwrap();
    std::os::unix::fs::symlink(t.path().join("secret"), root.join("leak")).unwrap();
    std::os::unix::fs::symlink("sub", root.join("inside")).unwrap();
    let abs_secret = t.path().join("secret");
    let abs_sub = root.join("sub");
    for (n, mode) in MODES.into_iter().enumerate() {
        let n = 20 + n as u32;
        let d = rdird(mode, &root, n, &[]);
        for (path, why) in [
            (OsStr::new(".."), "outside the served folder (status 1)"),
            (
                OsStr::new("sub/../.."),
                "outside the served folder (status 1)",
            ),
            (OsStr::new("/etc"), "outside the served folder (status 1)"),
            (
                abs_secret.as_os_str(),
                "outside the served folder (status 1)",
            ),
            (OsStr::new("leak"), "outside the served folder (status 1)"),
            (OsStr::new("missing"), "(status 2)"),
            (OsStr::new("file"), "(status 20)"),
        ] {
            let (code, out, err) = rls(&d, mode, n, &[path]);
            assert_eq!(code, Some(1), "{mode} {path:?}: {err}");
            assert!(out.is_empty(), "{mode} {path:?}");
            assert!(err.contains(why), "{mode} {path:?}: {err}");
        }
        for path in [
            OsStr::new("inside"),
            abs_sub.as_os_str(),
            OsStr::new("sub/../sub"),
        ] {
            let (code, _, err) = rls(&d, mode, n, &[path]);
            assert_eq!(code, Some(0), "{mode} {path:?}: {err}");
        }
        // One refused among good ones: the rest are listed, exit 1.
        let (code, out, _) = rls(&d, mode, n, &["sub".as_ref(), "..".as_ref(), ".".as_ref()]);
        assert_eq!(code, Some(1));
        assert!(String::from_utf8_lossy(&out).contains("file\n"));
    }
}

fn stateful_ask(conn: &mut Conn, req: StatefulRequest) -> StatefulResponse {
    conn.send(&req).unwrap();
    conn.expect().unwrap()
}

/// Opens `path` on `conn`.
fn stateful_open(conn: &mut Conn, path: &[u8]) -> StatefulResponse {
    stateful_ask(
        conn,
        StatefulRequest::Open {
            path: path.to_vec(),
        },
    )
}

/// Reads up to `max` names through `handle` on `conn`.
fn stateful_read(conn: &mut Conn, handle: u64, max: u32) -> StatefulResponse {
    stateful_ask(conn, StatefulRequest::Read { handle, max })
}

/// A new stateful connection to `d` with `.` open on it: the connection
/// and the handle.
fn opened(d: &Proc) -> (Conn, u64) {
    let mut c = Conn::open(&d.addr, &Timeouts::secs(20), STATEFUL).unwrap();
    let StatefulResponse::Opened { handle } = stateful_open(&mut c, b".") else {
        panic!("open failed\n{}", d.dump());
    };
    (c, handle)
}

/// A temp dir tagged `tag` whose `root` holds the empty files f0..f`n`;
/// the dir and the root.
fn root_with_files(tag: &str, n: usize) -> (TempDir, PathBuf) {
    let t = TempDir::new(tag);
    let root = t.sub("root");
    for i in 0..n {
        fs::File::create(root.join(format!("f{i}"))).unwrap();
    }
    (t, root)
}

fn assert_bad_handle(resp: StatefulResponse) {
    match resp {
        StatefulResponse::Error { status: 9, message } => {
            assert!(message.contains("bad handle"), "{message}")
        }
        other => panic!("expected a bad-handle error, got {other:?}"),
    }
}

#[test]
fn bogus_stateful_handles_get_clear_errors_and_the_server_serves_on() {
    let (_t, root) = root_with_files("rdir-handles", 10);
    let d = rdird(Mode::Stateful, &root, 30, &["--max-open", "3"]);
    let (mut a, handle) = opened(&d);
    let mut b = Conn::open(&d.addr, &Timeouts::secs(20), STATEFUL).unwrap();
    let mut rng = peerkit::rng::Rng::seeded(42);
    for bogus in [0, u64::MAX, handle ^ 1, rng.next_u64(), rng.next_u64()] {
        assert_bad_handle(stateful_read(&mut a, bogus, 5));
        assert_bad_handle(stateful_ask(
            &mut a,
            StatefulRequest::Close { handle: bogus },
        ));
    }
    // Another connection's handle.
    assert_bad_handle(stateful_read(&mut b, handle, 5));
    assert_bad_handle(stateful_ask(&mut b, StatefulRequest::Close { handle }));
    // Still good for its owner; then closed, it is refused.
    match stateful_read(&mut a, handle, 5) {
        StatefulResponse::Entries { names, eof: false } => assert_eq!(names.len(), 5),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        stateful_ask(&mut a, StatefulRequest::Close { handle }),
        StatefulResponse::Closed
    );
    assert_bad_handle(stateful_read(&mut a, handle, 5));
    // max 0 and garbage frames: typed errors, the connection goes on.
    assert!(matches!(
        stateful_open(&mut a, b"."),
        StatefulResponse::Opened { .. }
    ));
    harness::framed_battery(&d.addr, STATEFUL, |p| {
        match peerkit::frame::decode::<StatefulResponse>(p) {
            Ok(StatefulResponse::Error { message, .. }) => Some(message),
            _ => None,
        }
    });
    // The share: a client that never closes cannot take more than its
    // share of the table (3 / 8, so 1).
    let refusal = loop {
        match stateful_open(&mut b, b".") {
            StatefulResponse::Opened { .. } => {}
            StatefulResponse::Error { status, message } => break (status, message),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(refusal.0, 24, "{}", refusal.1);
    assert!(refusal.1.contains("per connection"), "{}", refusal.1);
    // Hoarding does not lock others out: rls still lists.
    let (code, _, err) = rls(&d, Mode::Stateful, 30, &[".".as_ref()]);
    assert_eq!(code, Some(0), "{err}");
}

/// How many Opens one connection got before the first refusal, and that
/// refusal's text.
fn hoard(addr: &str, tries: usize) -> (Conn, Vec<u64>, String) {
    let mut c = Conn::open(addr, &Timeouts::secs(20), STATEFUL).unwrap();
    let mut handles = Vec::new();
    let mut refused = String::new();
    for _ in 0..tries {
        match stateful_open(&mut c, b".") {
            StatefulResponse::Opened { handle } => handles.push(handle),
            StatefulResponse::Error {
                status: 24,
                message,
            } => refused = message,
            other => panic!("{other:?}"),
        }
    }
    (c, handles, refused)
}

#[test]
fn stateful_hoarders_cannot_lock_out_a_normal_rls() {
    let (_t, root) = root_with_files("rdir-hoard", 300);
    let want = {
        let mut v = local_listing(&root);
        v.sort();
        v
    };
    // The default table: 128 directories, 16 per connection.
    let d = rdird(Mode::Stateful, &root, 40, &[]);
    let addr = d.addr.clone();
    // Ten hoarders at once, each asking for 200 (160 > 128: the table
    // fills and handles are reclaimed), while rls lists in small batches.
    let hoarders: Vec<_> = (0..10)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || hoard(&addr, 200))
        })
        .collect();
    for _ in 0..5 {
        let (code, out, err) = rls(
            &d,
            Mode::Stateful,
            40,
            &["--batch".as_ref(), "7".as_ref(), ".".as_ref()],
        );
        assert_eq!(code, Some(0), "rls locked out: {err}\n{}", d.dump());
        let mut got = without_dots(lines(&out));
        got.sort();
        assert_eq!(got, want);
    }
    let mut held = Vec::new();
    for h in hoarders {
        let (c, handles, refused) = h.join().unwrap();
        // Refused at its share, unless others kept taking from it.
        assert!(
            refused.is_empty() || refused.contains("16 per connection"),
            "{refused}"
        );
        held.push((c, handles));
    }
    // The table was full: some hoarders lost their oldest handles, and
    // their next use says so.
    let issued: usize = held.iter().map(|(_, h)| h.len()).sum();
    let mut stale = 0;
    for (c, handles) in &mut held {
        let mut live = 0;
        for &handle in handles.iter() {
            match stateful_read(c, handle, 1) {
                StatefulResponse::Entries { .. } => live += 1,
                other => {
                    assert_bad_handle(other);
                    stale += 1;
                }
            }
        }
        assert!(live <= 16, "{live} open on one connection");
    }
    assert!(
        stale >= issued - 128,
        "{stale} of {issued} reclaimed\n{}",
        d.dump()
    );
    // With every hoarder still connected and the table full, rls lists.
    let (code, out, err) = rls(&d, Mode::Stateful, 40, &[".".as_ref()]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(without_dots(lines(&out)).len(), 300);
}

#[test]
fn unused_stateful_handles_expire() {
    let t = TempDir::new("rdir-expire");
    let root = t.sub("root");
    let d = rdird(
        Mode::Stateful,
        &root,
        31,
        &["--max-open", "1", "--dir-idle", "1"],
    );
    let (mut a, handle) = opened(&d);
    // Another client gets the only slot once a's handle has gone unused
    // for a second.
    harness::wait_until(
        "the unused handle to expire",
        || (rls(&d, Mode::Stateful, 31, &[".".as_ref()]).0 == Some(0)).then_some(()),
        || d.dump(),
    );
    assert_bad_handle(stateful_read(&mut a, handle, 5));
}

#[test]
fn a_stateful_handle_is_refused_after_a_restart() {
    let t = TempDir::new("rdir-restart-stateful");
    let root = t.sub("root");
    let mut d = rdird(Mode::Stateful, &root, 32, &[]);
    let listen = d.addr.clone();
    let (_a, handle) = opened(&d);
    d.kill();
    let d2 = rdird_on(Mode::Stateful, &root, 32, &listen, &[]);
    let mut a = Conn::open(&d2.addr, &Timeouts::secs(20), STATEFUL).unwrap();
    assert_bad_handle(stateful_read(&mut a, handle, 5));
}

#[test]
fn the_fd_count_stays_constant_over_ten_thousand_stateless_requests() {
    let (_t, root) = root_with_files("rdir-fds", 20);
    let d = rdird(Mode::Stateless, &root, 40, &["-q"]);
    let mut conn = Conn::open(&d.addr, &Timeouts::secs(20), STATELESS).unwrap();
    // Three names of `.` from `cookie`.
    let read3 = |conn: &mut Conn, cookie: u64| -> StatelessResponse {
        conn.send(&StatelessRequest::ReadDir {
            path: b".".to_vec(),
            cookie,
            max: 3,
        })
        .unwrap();
        conn.expect().unwrap()
    };
    let mut ask = |cookie: u64| -> (u64, bool) {
        match read3(&mut conn, cookie) {
            StatelessResponse::Batch { cookie, eof, .. } => (cookie, eof),
            other => panic!("{other:?}"),
        }
    };
    ask(0);
    let before = usage(d.pid()).fds;
    let mut cookie = 0;
    for i in 0..10_000 {
        let (next, eof) = ask(cookie);
        cookie = if eof { 0 } else { next };
        if i % 1000 == 0 {
            assert_eq!(usage(d.pid()).fds, before, "after {i} requests");
        }
    }
    assert_eq!(usage(d.pid()).fds, before, "after 10000 requests");
    // A cookie no position can have: status 10003.
    match read3(&mut conn, u64::MAX) {
        StatelessResponse::Error { status, message } => {
            assert_eq!(status, 10003, "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(usage(d.pid()).fds, before);
    harness::framed_battery(&d.addr, STATELESS, |p| {
        match peerkit::frame::decode::<StatelessResponse>(p) {
            Ok(StatelessResponse::Error { message, .. }) => Some(message),
            _ => None,
        }
    });
}

#[test]
fn a_stateless_listing_goes_on_across_a_server_restart() {
    let t = TempDir::new("rdir-restart");
    let root = t.sub("root");
    let dir = t.sub("root/d");
    for i in 0..200 {
        fs::File::create(dir.join(format!("n{i:03}"))).unwrap();
    }
    let want = local_listing(&dir);
    for (n, mode) in [(50, Mode::Stateless), (51, Mode::Rpc)] {
        let mut d = rdird(mode, &root, n, &["-q"]);
        let mut ep = endpoint(&d, n, Timeouts::secs(20));
        let listen = d.addr.clone();
        if mode == Mode::Rpc && harness_rpcbind() {
            // Through rpcbind: the restarted server may get another port.
            ep.port = None;
        }
        let mut remote = client::open(
            &ep,
            mode,
            b"d",
            Options {
                batch: 10,
                ..Options::default()
            },
        )
        .unwrap();
        let mut got = Vec::new();
        for _ in 0..35 {
            got.push(remote.next_name().unwrap().unwrap());
        }
        d.kill();
        let listen = if ep.port.is_none() {
            "127.0.0.1:0".to_string()
        } else {
            listen
        };
        let _d2 = rdird_on(mode, &root, n, &listen, &["-q"]);
        got.extend(list_all(&mut *remote));
        assert_eq!(without_dots(got), want, "{mode}");
    }
}

/// True when an rpcbind answers on this machine.
fn harness_rpcbind() -> bool {
    oncrpc::portmap::Portmapper::local().is_ok()
}

fn rpc_exchange(addr: &str, bytes: &[u8]) -> Option<Reply> {
    let mut s = harness::RawClient::connect(addr);
    s.send(bytes);
    let r = record::read_record(&mut s.stream, 1 << 20).ok()??;
    Some(Reply::decode(&r).unwrap())
}

fn call_record(h: CallHeader, args: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new();
    h.encode(&mut e);
    e.raw(args);
    let mut out = Vec::new();
    record::write_record(&mut out, e.as_bytes()).unwrap();
    out
}

#[test]
fn malformed_rpc_records_get_the_standard_replies_or_a_closed_connection() {
    let t = TempDir::new("rdir-rpc-bad");
    let root = t.sub("root");
    let d = rdird(Mode::Rpc, &root, 60, &[]);
    let p = prog(60);
    let accepted = |r: Option<Reply>| match r {
        Some(Reply {
            body: ReplyBody::Accepted(a),
            xid: 9,
        }) => a,
        other => panic!("{other:?}"),
    };
    let mut good = Encoder::new();
    rpc::Args {
        dirname: b".".to_vec(),
        cookie: 0,
        max_entries: 5,
    }
    .encode(&mut good);
    let good = good.into_bytes();
    assert!(matches!(
        accepted(rpc_exchange(
            &d.addr,
            &call_record(CallHeader::new(9, p, 1, 1), &good)
        )),
        Accepted::Success(_)
    ));
    assert_eq!(
        accepted(rpc_exchange(
            &d.addr,
            &call_record(CallHeader::new(9, p, 1, 0), &[])
        )),
        Accepted::Success(vec![])
    );
    assert_eq!(
        accepted(rpc_exchange(
            &d.addr,
            &call_record(CallHeader::new(9, p + 1, 1, 1), &good)
        )),
        Accepted::ProgUnavail
    );
    assert_eq!(
        accepted(rpc_exchange(
            &d.addr,
            &call_record(CallHeader::new(9, p, 2, 1), &good)
        )),
        Accepted::ProgMismatch { low: 1, high: 1 }
    );
    assert_eq!(
        accepted(rpc_exchange(
            &d.addr,
            &call_record(CallHeader::new(9, p, 1, 7), &good)
        )),
        Accepted::ProcUnavail
    );
    assert_eq!(
        accepted(rpc_exchange(
            &d.addr,
            &call_record(CallHeader::new(9, p, 1, 1), b"garbage!")
        )),
        Accepted::GarbageArgs
    );
    let mut long = Encoder::new();
    long.string(&[b'a'; 4097]).u64(0).u32(5);
    assert_eq!(
        accepted(rpc_exchange(
            &d.addr,
            &call_record(CallHeader::new(9, p, 1, 1), long.as_bytes())
        )),
        Accepted::GarbageArgs
    );
    let mut v3 = CallHeader::new(9, p, 1, 1);
    v3.rpcvers = 3;
    assert_eq!(
        rpc_exchange(&d.addr, &call_record(v3, &good)).map(|r| r.body),
        Some(ReplyBody::Denied(Denied::RpcMismatch { low: 2, high: 2 }))
    );
    // Bad fragment lengths, a record over the limit: closed, no reply.
    for bytes in [
        &[0u8, 0, 0, 0][..],
        &[0x7f, 0xff, 0xff, 0xff, 1, 2],
        &[0x80, 0x10, 0, 0, 1],
    ] {
        let mut s = harness::RawClient::connect(&d.addr);
        s.send(bytes);
        assert!(s.read_to_close().is_empty(), "{bytes:?}");
    }
    // Status codes through our client: 22 for max 0, 10003 for a stale cookie.
    let mut c = Client::connect(&d.addr, &Timeouts::secs(20), p, 1).unwrap();
    for (args, want) in [
        (
            rpc::Args {
                dirname: b".".to_vec(),
                cookie: 0,
                max_entries: 0,
            },
            22,
        ),
        (
            rpc::Args {
                dirname: b".".to_vec(),
                cookie: u64::MAX,
                max_entries: 5,
            },
            10003,
        ),
        (
            rpc::Args {
                dirname: b"nope".to_vec(),
                cookie: 0,
                max_entries: 5,
            },
            2,
        ),
        (
            rpc::Args {
                dirname: b"..".to_vec(),
                cookie: 0,
                max_entries: 5,
            },
            1,
        ),
    ] {
        let res = c
            .call_with(rpc::RDIR_READDIR, |e| args.encode(e), rpc::decode_res)
            .unwrap();
        assert_eq!(res, Err(want));
    }
    // Still serving.
    let (code, _, err) = rls(&d, Mode::Rpc, 60, &[".".as_ref()]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn the_rpcgen_built_c_client_lists_through_rpcbind() {
    let missing: Vec<&str> = [("rpcgen", "rpcgen"), ("gcc", "gcc")]
        .into_iter()
        .filter(|(c, _)| {
            Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {c}"))
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
        })
        .map(|(_, p)| p)
        .collect();
    let tirpc = Path::new("/usr/include/tirpc/rpc/rpc.h").exists();
    if !missing.is_empty() || !tirpc || !harness_rpcbind() {
        harness::skip(
            "the rpcgen C client of rdir.x",
            &format!(
                "missing {:?}{}{} (scripts/install-deps.sh rpc installs and starts them)",
                missing,
                if tirpc { "" } else { " libtirpc-dev" },
                if harness_rpcbind() {
                    ""
                } else {
                    " a running rpcbind"
                }
            ),
        );
        return;
    }
    let t = TempDir::new("rdir-c");
    let root = t.sub("root");
    let dir = t.sub("root/d");
    // Long names: a batch of 1024 makes a reply of about 200 KiB, sent in
    // several record fragments that libtirpc must reassemble.
    for i in 0..3000 {
        fs::File::create(dir.join(format!("c file {i} {}", "x".repeat(180)))).unwrap();
    }
    fs::File::create(dir.join(OsStr::from_bytes(b"\xff odd"))).unwrap();
    let build = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/rdir-c/build.sh"))
        .arg(t.sub("build"))
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "build failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let rls_c = t.path().join("build/rls-c");
    let d = rdird(Mode::Rpc, &root, 70, &[]);
    let c = Command::new(&rls_c)
        .env("SERVIDOR", "127.0.0.1")
        .env("RDIR_PROG", prog(70).to_string())
        .arg("d")
        .output()
        .unwrap();
    assert!(
        c.status.success(),
        "rls-c: {}\n{}",
        String::from_utf8_lossy(&c.stderr),
        d.dump()
    );
    let (code, ours, _) = rls(&d, Mode::Rpc, 70, &["d".as_ref()]);
    assert_eq!(code, Some(0));
    assert_eq!(c.stdout, ours, "the C client and rls agree byte for byte");
    assert_eq!(without_dots(lines(&c.stdout)), local_listing(&dir));
    // Refusals come back as the server's status.
    let bad = Command::new(&rls_c)
        .env("SERVIDOR", "127.0.0.1")
        .env("RDIR_PROG", prog(70).to_string())
        .args(["..", "missing"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("..: server status 1") && err.contains("missing: server status 2"),
        "{err}"
    );
    eprintln!(
        "rpcgen C client: listed {} entries, identical to rls --mode rpc",
        lines(&c.stdout).len()
    );
}

#[test]
fn every_rdird_mode_serves_real_clients_through_idle_and_trickling_floods() {
    let (_t, root) = root_with_files("rdir-exhaust", 50);
    let quick = Timeouts {
        connect: SERVED_WITHIN,
        io: SERVED_WITHIN,
    };
    for (n, mode) in MODES.into_iter().enumerate() {
        let n = 80 + n as u32;
        let d = rdird(mode, &root, n, &["-q"]);
        let ep = endpoint(&d, n, quick);
        let probe = || {
            let mut dir = client::open(&ep, mode, b".", Options::default())
                .unwrap_or_else(|e| panic!("{mode}: a real client was not served: {e}"));
            assert_eq!(list_all(&mut *dir).len(), 52);
            dir.close().unwrap();
        };
        exhaustion(&format!("rdird --mode {mode}"), &d, 0x41, probe);
    }
}

#[test]
fn rls_takes_the_server_and_port_from_the_environment_and_mixes() {
    let t = TempDir::new("rdir-env");
    let root = t.sub("root");
    for d in ["a", "b"] {
        t.sub(&format!("root/{d}"));
        for i in 0..3 {
            fs::File::create(root.join(d).join(format!("{d}{i}"))).unwrap();
        }
    }
    let d = rdird(Mode::Stateless, &root, 90, &["-q"]);
    let out = Command::new(bin!("rls"))
        .env("SERVIDOR", "127.0.0.1")
        .env("PUERTO", d.port().to_string())
        .args(["--mix", "a", "b"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = lines(&out.stdout);
    assert_eq!(got.len(), 10);
    // Alternately: entries of a at even places, of b at odd ones.
    let a: Vec<_> = got.iter().step_by(2).collect();
    let b: Vec<_> = got.iter().skip(1).step_by(2).collect();
    assert!(
        a.iter().all(|n| n.starts_with(b"a") || n.starts_with(b".")),
        "{got:?}"
    );
    assert!(
        b.iter().all(|n| n.starts_with(b"b") || n.starts_with(b".")),
        "{got:?}"
    );
}

#[test]
fn rls_takes_the_server_as_host_port_and_in_every_older_form() {
    let t = TempDir::new("rdir-forms");
    let root = t.sub("root");
    t.sub("root/a");
    fs::File::create(root.join("a").join("only")).unwrap();
    let d = rdird(Mode::Stateless, &root, 91, &["-q"]);
    let port = d.port().to_string();
    let at = format!("127.0.0.1:{port}");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(bin!("rls"));
        c.env_remove("SERVIDOR").env_remove("PUERTO");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.args(args).output().expect("run rls");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), lines(&out.stdout), err)
    };
    let listed = |args: &[&str], env: &[(&str, &str)]| {
        let (code, got, err) = run(args, env);
        assert_eq!(code, Some(0), "{args:?} {env:?}: {err}");
        assert!(got.contains(&b"only".to_vec()), "{args:?} {env:?}: {got:?}");
    };
    listed(&["--server", &at, "a"], &[]);
    listed(&["--server", "127.0.0.1", "--port", &port, "a"], &[]);
    listed(&["a"], &[("SERVIDOR", "127.0.0.1"), ("PUERTO", &port)]);
    listed(&["a"], &[("SERVIDOR", &at)]);
    listed(&["--port", &port, "a"], &[("SERVIDOR", "127.0.0.1:1")]);
    // A pause between requests as a length of time, or in the older
    // milliseconds flag.
    listed(
        &["--server", &at, "--batch", "1", "--pause", "1ms", "a"],
        &[],
    );
    listed(
        &["--server", &at, "--batch", "1", "--pause-ms", "1", "a"],
        &[],
    );
    // -q and -v as everywhere: -v says what it listed, from where.
    let (code, _, err) = run(&["-v", "--server", &at, "a"], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains(&format!("rls: {at}: a: 3 entries")), "{err}");
    let (code, _, err) = run(&["-q", "--server", &at, "a"], &[]);
    assert_eq!((code, err.as_str()), (Some(0), ""));
    // Two different ports is a mistake, said as such.
    let (code, _, err) = run(&["--server", &at, "--port", "1", "a"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("two ports given"), "{err}");
    let (code, _, err) = run(&["--server", "127.0.0.1:x", "a"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("\"x\" is not a port number"), "{err}");
}

/// `rls` against `args` with no server behind them: exit 2 and the reason.
fn rls_unreachable(mode: Mode, args: &[&str]) -> (Option<i32>, String) {
    let out = rls_cmd(mode)
        .args(["--timeout", "5"])
        .args(args)
        .arg("docs")
        .output()
        .expect("run rls");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unreachable_server_or_rpcbind_is_exit_2_in_every_mode() {
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    for mode in MODES {
        let (code, err) = rls_unreachable(mode, &["--port", &port]);
        assert_eq!(code, Some(2), "{mode} with nothing at the port: {err}");
        // The one line names the server it could not reach.
        assert_eq!(
            err.trim_end(),
            format!("rls: 127.0.0.1:{port}: connection refused"),
            "{mode}"
        );
    }
    // Through rpcbind: either none answers at the host, or it has no such
    // program registered. Both mean the server is not there.
    let unused = prog(99).to_string();
    let (code, err) = rls_unreachable(Mode::Rpc, &["--prog", &unused]);
    assert_eq!(code, Some(2), "rpc through rpcbind: {err}");
    assert!(err.contains("rpcbind"), "{err}");
}

#[test]
fn the_rdird_view_shows_handles_in_stateful_mode_and_nothing_in_stateless() {
    let t = TempDir::new("rdir-view");
    let root = t.sub("root");
    fs::create_dir_all(root.join("docs")).unwrap();
    for i in 0..5 {
        fs::File::create(root.join(format!("docs/f{i}"))).unwrap();
    }
    for (mode, n) in [(Mode::Stateful, 80), (Mode::Stateless, 81)] {
        let mut d = rdird(mode, &root, n, &["--http", "127.0.0.1:0"]);
        let line = d.wait_stdout(|l| l.starts_with("view on "));
        assert_eq!(d.stdout_lines()[1], line, "{}", d.dump());
        let view = line["view on ".len()..].to_string();
        let tm = Timeouts::secs(20);
        let kind = if mode == Mode::Stateful {
            "open"
        } else {
            "readdir"
        };
        let counter = format!("peerkit_rdir_requests_total{{kind=\"{kind}\"}}");
        assert_eq!(metric(&view_get(&view, "/metrics").1, &counter), Some(0.0));
        // A stateful client holding a handle; a stateless listing.
        let mut held =
            (mode == Mode::Stateful).then(|| Conn::open(&d.addr, &tm, STATEFUL).unwrap());
        if mode == Mode::Stateful {
            let conn = held.as_mut().unwrap();
            let StatefulResponse::Opened { handle } = stateful_open(conn, b"docs") else {
                panic!("open failed\n{}", d.dump());
            };
            let state: serde_json::Value =
                serde_json::from_str(&view_get(&view, "/state.json").1).unwrap();
            assert_eq!(state["mode"], "stateful");
            let handles = state["handles"].as_array().unwrap();
            assert_eq!(handles.len(), 1, "{state}");
            assert_eq!(handles[0]["handle"], format!("{handle:016x}"));
            assert_eq!(handles[0]["path"], "docs");
            assert_eq!(handles[0]["client"], conn.local_addr().unwrap().to_string());
        } else {
            let (code, _, err) = rls(&d, mode, n, &["docs".as_ref()]);
            assert_eq!(code, Some(0), "{err}");
            let state: serde_json::Value =
                serde_json::from_str(&view_get(&view, "/state.json").1).unwrap();
            assert_eq!(state["mode"], "stateless");
            assert_eq!(state["handles"].as_array().unwrap().len(), 0);
            assert!(!state["requests"].as_array().unwrap().is_empty(), "{state}");
        }
        let (_, metrics) = view_get(&view, "/metrics");
        assert_eq!(metric(&metrics, &counter), Some(1.0), "{metrics}");
        if mode == Mode::Stateful {
            assert_eq!(metric(&metrics, "peerkit_rdir_open_handles"), Some(1.0));
        }
        drop(held);
    }
}

/// A stand-in server of `protocol` answering each request with `answer`
/// (given the request's number), for as many connections as come.
fn fake_rdir<Q, R>(
    protocol: peerkit::frame::Protocol,
    answer: impl Fn(usize, Q) -> R + Send + Sync + 'static,
) -> String
where
    Q: serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize,
{
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let answer = std::sync::Arc::new(answer);
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(stream) = stream else { return };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut conn = Conn::new(stream).unwrap();
                if !conn.server_handshake(protocol).unwrap_or(false) {
                    return;
                }
                let mut n = 0;
                while let Ok(Some(req)) = conn.recv::<Q>() {
                    if conn.send(&answer(n, req)).is_err() {
                        return;
                    }
                    n += 1;
                }
            });
        }
    });
    addr
}

fn rls_at(addr: &str, mode: Mode) -> harness::Output {
    let port = addr.rsplit(':').next().unwrap();
    cmd(bin!("rls"))
        .args([
            "--mode",
            &mode.to_string(),
            "--server",
            "127.0.0.1",
            "--port",
            port,
        ])
        .args(["--timeout", "5", "some/dir"])
        .run()
}

#[test]
fn rls_facing_lying_servers_fails_clearly_and_in_bounded_time() {
    // A listing that never ends, the same names over and over.
    let endless = fake_rdir(STATEFUL, |_, req: StatefulRequest| match req {
        StatefulRequest::Open { .. } => StatefulResponse::Opened { handle: 7 },
        StatefulRequest::Read { .. } => StatefulResponse::Entries {
            names: vec![b"a".to_vec(), b"b".to_vec()],
            eof: false,
        },
        StatefulRequest::Close { .. } => StatefulResponse::Closed,
    });
    rls_at(&endless, Mode::Stateful)
        .code(2)
        .stderr_has(&format!("listing some/dir from {endless}"))
        .stderr_has("the server sent \"a\" twice: the listing goes round");

    // An entry of 1 MiB (names are at most 255 bytes).
    let huge = fake_rdir(STATEFUL, |_, req: StatefulRequest| match req {
        StatefulRequest::Open { .. } => StatefulResponse::Opened { handle: 7 },
        StatefulRequest::Read { .. } => StatefulResponse::Entries {
            names: vec![vec![b'x'; (1 << 20) - 64]],
            eof: true,
        },
        StatefulRequest::Close { .. } => StatefulResponse::Closed,
    });
    rls_at(&huge, Mode::Stateful)
        .code(2)
        .stderr_has("an entry of 1048512 bytes (a name is at most 255)");

    // More entries than the batch asked for.
    let flood = fake_rdir(STATELESS, |_, _: StatelessRequest| {
        StatelessResponse::Batch {
            names: (0..2000).map(|i| format!("n{i}").into_bytes()).collect(),
            cookie: 1,
            eof: true,
        }
    });
    rls_at(&flood, Mode::Stateless)
        .code(2)
        .stderr_has("2000 entries for a batch of 1024");

    // A cookie that goes back: 1, 2, 1, ... never ending otherwise.
    let back = fake_rdir(STATELESS, |n, _: StatelessRequest| {
        StatelessResponse::Batch {
            names: vec![format!("n{n}").into_bytes()],
            cookie: [1, 2, 1][n.min(2)],
            eof: false,
        }
    });
    rls_at(&back, Mode::Stateless)
        .code(2)
        .stderr_has(&format!("listing some/dir from {back}"))
        .stderr_has("the server's cookie went back to 1");
}
