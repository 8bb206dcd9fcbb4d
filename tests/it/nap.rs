//! The Napster-like directory: nap-server, nap-peer, nap-time and nap-log,
//! as real processes on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::thread;

use crate::bin;
use crate::harness::{
    Proc, RawClient, SERVED_WITHIN, TempDir, cmd, exhaustion, metric, view_get, write_random_file,
};
use peerkit::digest;

const DT: &str = "21/11/2026 10:00:00";

fn nap_server(extra: &[&str]) -> Proc {
    cmd(bin!("nap-server"))
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .daemon()
}

/// A request: each part followed by a NUL.
fn req(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(p.as_bytes());
        out.push(0);
    }
    out
}

/// Sends `bytes` on a new connection and returns all the answer, under
/// the `SERVED_WITHIN` socket timeouts (a locked-out server fails).
fn ask(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    s.set_read_timeout(Some(SERVED_WITHIN)).unwrap();
    s.set_write_timeout(Some(SERVED_WITHIN)).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("{addr}: no answer to {bytes:?}: {e}"));
    out
}

fn ask_parts(addr: &str, parts: &[&str]) -> Vec<u8> {
    ask(addr, &req(parts))
}

/// An interactive nap-peer whose commands are written one at a time.
struct Shell {
    p: Proc,
    n: usize,
}

impl Shell {
    fn start(server: &Proc, share: &Path, extra: &[&str]) -> Shell {
        let port = server.port().to_string();
        let p = cmd(bin!("nap-peer"))
            .args(["-s", "127.0.0.1", "-p", &port, "--listen-ip", "127.0.0.1"])
            .arg("--share")
            .arg(share)
            .args(extra)
            .stdin_open()
            .start();
        Shell { p, n: 0 }
    }

    fn marker(n: usize) -> String {
        format!("Error: command sync-{n} not valid.")
    }

    /// Runs one command and returns the lines it printed (a marker command
    /// after it shows where its output ends).
    fn run(&mut self, line: &str) -> Vec<String> {
        self.n += 1;
        let n = self.n;
        self.p.send_stdin(format!("{line}\nsync-{n}\n").as_bytes());
        let end_mark = Shell::marker(n);
        self.p.wait_stdout(|l| l == end_mark);
        let lines = self.p.stdout_lines();
        let end = lines.iter().position(|l| *l == end_mark).unwrap();
        let start = if n == 1 {
            0
        } else {
            let prev = Shell::marker(n - 1);
            lines.iter().position(|l| *l == prev).unwrap() + 1
        };
        lines[start..end].to_vec()
    }

    /// Runs a command that prints one line and checks it.
    fn expect(&mut self, line: &str, want: &str) {
        let got = self.run(line);
        assert_eq!(got, [want], "{line}\n{}", self.p.dump());
    }

    /// QUIT: the lines printed after the last command, once it has exited
    /// (1 if an operation failed, as commands from a pipe are).
    fn quit(&mut self) -> Vec<String> {
        self.p.send_stdin(b"QUIT\n");
        let code = self.p.wait_exit().code();
        assert!(matches!(code, Some(0 | 1)), "{}", self.p.dump());
        let lines = self.p.stdout_lines();
        let start = match self.n {
            0 => 0,
            n => lines.iter().position(|l| *l == Shell::marker(n)).unwrap() + 1,
        };
        lines[start..].to_vec()
    }

    /// The listener address of `user`, from LIST_USERS.
    fn address_of(&mut self, user: &str) -> String {
        let lines = self.run("LIST_USERS");
        assert_eq!(lines[0], "LIST_USERS OK", "{}", self.p.dump());
        let prefix = format!("{user} ");
        let l = lines
            .iter()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{user} not listed: {lines:?}"));
        let mut w = l.split(' ').skip(1);
        format!("{}:{}", w.next().unwrap(), w.next().unwrap())
    }
}

/// Runs nap-peer on a script and returns its stdout lines (it exits 0, or
/// 1 if an operation failed).
fn peer_script(server_port: u16, share: &Path, script: &str) -> Vec<String> {
    let out = cmd(bin!("nap-peer"))
        .args(["-s", "127.0.0.1", "-p", &server_port.to_string()])
        .args(["--listen-ip", "127.0.0.1"])
        .arg("--share")
        .arg(share)
        // GET_FILE's local names are relative: they land in the share
        // folder, never in the crate's own.
        .cwd(share)
        .stdin(script)
        .run();
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", out.dump());
    out.stdout_lines()
}

#[test]
fn the_course_battery_prints_the_course_messages() {
    let dir = TempDir::new("nap-battery");
    let share_a = dir.sub("ana");
    let share_b = dir.sub("bo");
    std::fs::write(share_a.join("notes.txt"), b"hello, bo\n").unwrap();
    let server = nap_server(&[]);
    let mut ana = Shell::start(&server, &share_a, &[]);
    ana.expect(
        "PUBLISH notes.txt my notes",
        "PUBLISH FAIL, USER DOES NOT EXIST",
    );
    ana.expect("REGISTER ana", "REGISTER OK");
    ana.expect("REGISTER ana", "USERNAME IN USE");
    ana.expect(
        "PUBLISH notes.txt my notes",
        "PUBLISH FAIL, USER NOT CONNECTED",
    );
    ana.expect("UNREGISTER nobody", "USER DOES NOT EXIST");
    ana.expect("CONNECT nobody", "CONNECT FAIL, USER DOES NOT EXIST");
    ana.expect("CONNECT ana", "CONNECT OK");
    ana.expect("CONNECT ana", "USER ALREADY CONNECTED");
    ana.expect("PUBLISH notes.txt my notes", "PUBLISH OK");
    ana.expect(
        "PUBLISH notes.txt again",
        "PUBLISH FAIL, CONTENT ALREADY PUBLISHED",
    );
    ana.expect("DELETE nothing.txt", "DELETE FAIL, CONTENT NOT PUBLISHED");
    ana.expect(
        "LIST_CONTENT nobody",
        "LIST_CONTENT FAIL, REMOTE USER DOES NOT EXIST",
    );
    assert_eq!(
        ana.run("LIST_CONTENT ana"),
        ["LIST_CONTENT OK", "notes.txt my notes"]
    );
    let ana_at = ana.address_of("ana");

    let got = share_b.join("got.txt");
    let lines = peer_script(
        server.port(),
        &share_b,
        &format!(
            "REGISTER bo\nCONNECT bo\nLIST_USERS\nGET_FILE ana notes.txt {}\n\
             GET_FILE ana missing.txt {}\nDISCONNECT bo\nDISCONNECT bo\nQUIT\n",
            got.display(),
            share_b.join("missing.txt").display()
        ),
    );
    let (ip, port) = ana_at.split_once(':').unwrap();
    let users: Vec<String> = lines[3..lines.len() - 4].to_vec();
    assert_eq!(lines[..3], ["REGISTER OK", "CONNECT OK", "LIST_USERS OK"]);
    assert!(users.contains(&format!("ana {ip} {port}")), "{lines:?}");
    assert_eq!(users.len(), 2, "{lines:?}");
    assert_eq!(
        lines[lines.len() - 4..],
        [
            "GET_FILE OK",
            "GET_FILE FAIL / FILE NOT EXIST",
            "DISCONNECT OK",
            "DISCONNECT FAIL / USER NOT CONNECTED"
        ]
    );
    assert_eq!(std::fs::read(&got).unwrap(), b"hello, bo\n");
    assert!(!share_b.join("missing.txt").exists());
    assert_eq!(
        std::fs::read_dir(&share_b).unwrap().count(),
        1,
        "no temp files"
    );

    ana.expect("DELETE notes.txt", "DELETE OK");
    ana.expect("DISCONNECT ana", "DISCONNECT OK");
    ana.expect("DISCONNECT ana", "DISCONNECT FAIL / USER NOT CONNECTED");
    ana.expect("DISCONNECT nobody", "DISCONNECT FAIL / USER DOES NOT EXIST");
    ana.expect("LIST_USERS", "LIST_USERS FAIL, USER NOT CONNECTED");
    ana.expect("UNREGISTER ana", "UNREGISTER OK");
    // The listener stopped with DISCONNECT.
    assert!(TcpStream::connect(&ana_at).is_err(), "listener still up");
    assert_eq!(ana.quit(), Vec::<String>::new());

    server.wait_stdout_any(|l| l == "s> PUBLISH FROM ana");

    // Every operation with the server down.
    let port = server.port();
    drop(server);
    let lines = peer_script(
        port,
        &share_b,
        "REGISTER x\nUNREGISTER x\nCONNECT x\nPUBLISH a b\nDELETE a\nLIST_USERS\n\
         LIST_CONTENT x\nDISCONNECT x\nGET_FILE x a b\nQUIT\n",
    );
    assert_eq!(
        lines,
        [
            "REGISTER FAIL",
            "UNREGISTER FAIL",
            "CONNECT FAIL",
            "PUBLISH FAIL",
            "DELETE FAIL",
            "LIST_USERS FAIL",
            "LIST_CONTENT FAIL",
            "DISCONNECT FAIL",
            "GET_FILE FAIL"
        ]
    );
}

#[test]
fn both_result_formats_on_the_wire_and_in_the_peer() {
    let text = nap_server(&[]);
    let byte = nap_server(&["--result-format", "byte"]);
    assert_eq!(ask_parts(&text.addr, &["REGISTER", DT, "ana"]), b"0\0");
    assert_eq!(ask_parts(&text.addr, &["REGISTER", DT, "ana"]), b"1\0");
    assert_eq!(ask_parts(&byte.addr, &["REGISTER", DT, "ana"]), [0]);
    assert_eq!(ask_parts(&byte.addr, &["REGISTER", DT, "ana"]), [1]);
    assert_eq!(
        ask_parts(&byte.addr, &["CONNECT", DT, "ana", "127.0.0.1", "7"]),
        [0]
    );
    assert_eq!(
        ask_parts(&byte.addr, &["LIST_USERS", DT, "ana"]),
        b"\x001\0ana\x00127.0.0.1\x007\0"
    );
    let dir = TempDir::new("nap-formats");
    std::fs::write(dir.path().join("a.txt"), b"a").unwrap();
    let lines = peer_script(
        byte.port(),
        dir.path(),
        "REGISTER bo\nREGISTER bo\nCONNECT bo\nPUBLISH a.txt the a\nLIST_CONTENT bo\n\
         LIST_CONTENT zed\nDISCONNECT bo\n",
    );
    assert_eq!(
        lines,
        [
            "REGISTER OK",
            "USERNAME IN USE",
            "CONNECT OK",
            "PUBLISH OK",
            "LIST_CONTENT OK",
            "a.txt the a",
            "LIST_CONTENT FAIL, REMOTE USER DOES NOT EXIST",
            "DISCONNECT OK"
        ]
    );
}

#[test]
fn requests_with_and_without_the_datetime_and_connect_from_0_0_0_0() {
    let s = nap_server(&[]);
    assert_eq!(ask_parts(&s.addr, &["REGISTER", "ana"]), b"0\0");
    assert_eq!(ask_parts(&s.addr, &["REGISTER", DT, "bo"]), b"0\0");
    assert_eq!(ask_parts(&s.addr, &["REGISTER", DT, "ana"]), b"1\0");
    assert_eq!(
        ask_parts(&s.addr, &["CONNECT", "ana", "0.0.0.0", "6000"]),
        b"0\0"
    );
    assert_eq!(
        ask_parts(&s.addr, &["CONNECT", DT, "bo", "", "6001"]),
        b"0\0"
    );
    assert_eq!(
        ask_parts(&s.addr, &["LIST_USERS", "ana"]),
        req(&[
            "0",
            "2",
            "ana",
            "127.0.0.1",
            "6000",
            "bo",
            "127.0.0.1",
            "6001"
        ])
    );
    for bad in ["0", "65536", "-1", "http", ""] {
        assert_eq!(
            ask_parts(&s.addr, &["REGISTER", &format!("p{bad}")]),
            b"0\0"
        );
        assert_eq!(
            ask_parts(&s.addr, &["CONNECT", DT, &format!("p{bad}"), "", bad]),
            b"3\0",
            "port {bad:?}"
        );
    }
    assert_eq!(ask_parts(&s.addr, &["PUBLISH", "ana", "f", "d"]), b"0\0");
    assert_eq!(
        ask_parts(&s.addr, &["LIST_CONTENT", DT, "bo", "ana"]),
        req(&["0", "1", "f", "d"])
    );
}

#[test]
fn fields_of_256_bytes_pass_and_257_are_refused() {
    let s = nap_server(&[]);
    let n256 = "u".repeat(256);
    let n257 = "u".repeat(257);
    assert_eq!(ask_parts(&s.addr, &["REGISTER", DT, &n256]), b"0\0");
    assert_eq!(ask_parts(&s.addr, &["REGISTER", DT, &n257]), b"2\0");
    assert_eq!(
        ask_parts(&s.addr, &["CONNECT", DT, &n256, "127.0.0.1", "9"]),
        b"0\0"
    );
    let f256 = "f".repeat(256);
    let f257 = "f".repeat(257);
    assert_eq!(
        ask_parts(&s.addr, &["PUBLISH", DT, &n256, &f256, &f256]),
        b"0\0"
    );
    assert_eq!(
        ask_parts(&s.addr, &["PUBLISH", DT, &n256, &f257, "d"]),
        b"4\0"
    );
    assert_eq!(
        ask_parts(&s.addr, &["PUBLISH", DT, &n256, "g", &f257]),
        b"4\0"
    );
    assert_eq!(ask_parts(&s.addr, &["DELETE", DT, &n256, &f257]), b"4\0");
    assert_eq!(
        ask_parts(&s.addr, &["LIST_CONTENT", DT, &n256, &n257]),
        b"4\0"
    );
    assert_eq!(ask_parts(&s.addr, &["DISCONNECT", DT, &n257]), b"3\0");
    // Nothing was truncated into a shorter name.
    assert_eq!(
        ask_parts(&s.addr, &["LIST_CONTENT", DT, &n256, &n256]),
        req(&["0", "1", &f256, &f256])
    );
    // A field that never ends: refused as soon as it is too long.
    let mut endless = req(&["REGISTER", DT]);
    endless.extend(std::iter::repeat_n(b'z', 100_000));
    assert_eq!(ask(&s.addr, &endless), b"2\0");
}

#[test]
fn truncated_requests_and_unknown_operations_change_nothing() {
    let s = nap_server(&[]);
    let full = req(&["REGISTER", DT, "ana"]);
    for cut in 1..full.len() {
        let mut c = RawClient::connect(&s.addr);
        c.send(&full[..cut]);
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(c.read_to_close(), b"", "cut at {cut}");
    }
    assert_eq!(ask(&s.addr, &req(&["HELLO", DT, "ana"])), b"");
    // A field with no NUL, then the end of the stream.
    let mut c = RawClient::connect(&s.addr);
    c.send(b"\xff\xfe garbage with no NUL");
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(c.read_to_close(), b"");
    assert_eq!(ask_parts(&s.addr, &["REGISTER", DT, "ana"]), b"0\0");
    // The server logs a request before answering it, so every line of the
    // refused ones would come before this one; the log is read by another
    // thread, so wait for it rather than look at once.
    s.wait_stdout_any(|l| l == "s> REGISTER FROM ana");
    assert_eq!(
        s.stdout_lines()
            .iter()
            .filter(|l| l.starts_with("s> "))
            .count(),
        1,
        "{}",
        s.dump()
    );
}

#[test]
fn two_hundred_concurrent_clients_against_ten_workers() {
    let s = nap_server(&["--workers", "10"]);
    let addr = s.addr.clone();
    let clients: Vec<_> = (0..200)
        .map(|i| {
            let addr = addr.clone();
            thread::spawn(move || {
                let user = format!("user{i}");
                let a = ask_parts(&addr, &["REGISTER", DT, &user]);
                let b = ask_parts(&addr, &["CONNECT", DT, &user, "", "4000"]);
                (a, b)
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), (b"0\0".to_vec(), b"0\0".to_vec()));
    }
    let users = ask_parts(&addr, &["LIST_USERS", DT, "user0"]);
    assert!(users.starts_with(b"0\x00200\x00"), "{users:?}");
    let workers = std::fs::read_dir(format!("/proc/{}/task", s.pid()))
        .unwrap()
        .filter(|t| {
            let comm = t.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm)
                .unwrap_or_default()
                .starts_with("worker")
        })
        .count();
    assert_eq!(workers, 10);
}

#[test]
fn state_survives_a_restart_with_everyone_disconnected() {
    let dir = TempDir::new("nap-restart");
    let storage = dir.sub("state");
    let st = storage.to_str().unwrap();
    let mut s = nap_server(&["--storage", st]);
    assert_eq!(ask_parts(&s.addr, &["REGISTER", DT, "ana"]), b"0\0");
    assert_eq!(ask_parts(&s.addr, &["CONNECT", DT, "ana", "", "9"]), b"0\0");
    assert_eq!(
        ask_parts(
            &s.addr,
            &["PUBLISH", DT, "ana", "../../etc/passwd", "hostile"]
        ),
        b"0\0"
    );
    s.terminate();
    assert!(s.wait_exit().success(), "{}", s.dump());
    let s = nap_server(&["--storage", st]);
    assert_eq!(ask_parts(&s.addr, &["REGISTER", DT, "ana"]), b"1\0");
    assert_eq!(ask_parts(&s.addr, &["DISCONNECT", DT, "ana"]), b"2\0");
    assert_eq!(ask_parts(&s.addr, &["CONNECT", DT, "ana", "", "9"]), b"0\0");
    assert_eq!(
        ask_parts(&s.addr, &["LIST_CONTENT", DT, "ana", "ana"]),
        req(&["0", "1", "../../etc/passwd", "hostile"])
    );
    // A name is a key, never a path: only the state file is there.
    let names: Vec<_> = std::fs::read_dir(&storage)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["directory.state"]);
}

#[test]
fn hostile_names_in_get_file_and_publish() {
    let dir = TempDir::new("nap-hostile");
    let share = dir.sub("share");
    std::fs::write(share.join("ok.txt"), b"ok").unwrap();
    std::fs::write(share.join("unpublished.txt"), b"shared").unwrap();
    std::fs::write(share.join(".hidden"), b"secret").unwrap();
    std::fs::write(dir.path().join("outside.txt"), b"secret").unwrap();
    std::os::unix::fs::symlink(dir.path().join("outside.txt"), share.join("link.txt")).unwrap();
    std::fs::create_dir(share.join("sub")).unwrap();
    let server = nap_server(&[]);
    let mut ana = Shell::start(&server, &share, &[]);
    ana.expect("REGISTER ana", "REGISTER OK");
    ana.expect("CONNECT ana", "CONNECT OK");
    for bad in [
        "../outside.txt",
        "/etc/passwd",
        "..",
        "a/b",
        ".hidden",
        "link.txt",
        "sub",
        "absent.txt",
    ] {
        ana.expect(&format!("PUBLISH {bad} x"), "PUBLISH FAIL");
    }
    ana.expect("PUBLISH ok.txt fine", "PUBLISH OK");
    let at = ana.address_of("ana");
    let get = |name: &str| ask(&at, &req(&["GET_FILE", name, DT]));
    assert_eq!(get("ok.txt"), b"0\0ok");
    // Any regular, non-hidden file of the folder is served, published or
    // not, as the course's client serves its folder.
    assert_eq!(get("unpublished.txt"), b"0\0shared");
    for bad in [
        "../outside.txt",
        "/etc/passwd",
        "..",
        ".",
        "",
        ".hidden",
        "link.txt",
        "sub",
    ] {
        assert_eq!(get(bad), b"1\0", "{bad:?}");
    }
    // The course's spelling, with a space and no date-time.
    assert_eq!(ask(&at, b"GET_FILE \0ok.txt\0"), b"0\0ok");
    assert_eq!(ask(&at, &req(&["GET_FILE", &"x".repeat(257)])), b"2\0");
    assert_eq!(ask(&at, &req(&["PUT_FILE", "ok.txt"])), b"");
    assert_eq!(ana.quit(), ["DISCONNECT OK"]);
}

#[test]
fn a_binary_100_mb_get_file_is_hash_checked() {
    let dir = TempDir::new("nap-big");
    let share = dir.sub("share");
    let out = dir.sub("out");
    let big = share.join("big.bin");
    write_random_file(&big, 100 << 20, 7);
    let server = nap_server(&[]);
    let mut ana = Shell::start(&server, &share, &[]);
    ana.expect("REGISTER ana", "REGISTER OK");
    ana.expect("CONNECT ana", "CONNECT OK");
    ana.expect("PUBLISH big.bin one hundred megabytes", "PUBLISH OK");
    let dest = out.join("copy.bin");
    let lines = peer_script(
        server.port(),
        &out,
        &format!(
            "REGISTER bo\nCONNECT bo\nGET_FILE ana big.bin {}\nQUIT\n",
            dest.display()
        ),
    );
    assert_eq!(
        lines,
        ["REGISTER OK", "CONNECT OK", "GET_FILE OK", "DISCONNECT OK"]
    );
    assert_eq!(
        digest::hash_file(&dest).unwrap(),
        digest::hash_file(&big).unwrap()
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1, "no temp files");
}

#[test]
fn a_peer_vanishing_mid_transfer_leaves_no_file() {
    let dir = TempDir::new("nap-vanish");
    let out = dir.sub("out");
    let server = nap_server(&[]);
    // A fake owner: answers "0\0", sends a little, then resets.
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = fake.local_addr().unwrap().port().to_string();
    assert_eq!(ask_parts(&server.addr, &["REGISTER", DT, "eve"]), b"0\0");
    assert_eq!(
        ask_parts(&server.addr, &["CONNECT", DT, "eve", "127.0.0.1", &port]),
        b"0\0"
    );
    let owner = thread::spawn(move || {
        let (mut s, _) = fake.accept().unwrap();
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
        s.write_all(b"0\0partial").unwrap();
        // SO_LINGER 0: the close is a reset, not an end of file.
        socket_linger_zero(&s);
        drop(s);
    });
    let dest = out.join("f.bin");
    let lines = peer_script(
        server.port(),
        &out,
        &format!(
            "REGISTER bo\nCONNECT bo\nGET_FILE eve f.bin {}\nQUIT\n",
            dest.display()
        ),
    );
    owner.join().unwrap();
    assert_eq!(lines[2], "GET_FILE FAIL", "{lines:?}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}

/// Sets SO_LINGER to 0 so closing `s` resets the connection.
fn socket_linger_zero(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Linger {
        onoff: i32,
        linger: i32,
    }
    unsafe extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, val: *const Linger, len: u32) -> i32;
    }
    let l = Linger {
        onoff: 1,
        linger: 0,
    };
    // SOL_SOCKET = 1, SO_LINGER = 13 on Linux.
    // SAFETY: a valid descriptor and a properly sized struct.
    let rc = unsafe { setsockopt(s.as_raw_fd(), 1, 13, &l, 8) };
    assert_eq!(rc, 0);
}

#[test]
fn zeep_calls_nap_time_through_its_wsdl() {
    let t = cmd(bin!("nap-time"))
        .args(["--listen", "127.0.0.1:0"])
        .daemon();
    // Plain GET first.
    let body = ask(&t.addr, b"GET / HTTP/1.0\r\n\r\n");
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(peerkit::nap::DateTime::parse(text.rsplit("\r\n").next().unwrap().trim()).is_some());
    let python = "/usr/bin/python3";
    let has_zeep = Command::new(python)
        .args(["-c", "import zeep"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_zeep {
        return crate::harness::skip(
            "zeep calls nap-time",
            "zeep not installed for /usr/bin/python3 (scripts/install-deps.sh nap installs python3-zeep)",
        );
    }
    let script = format!(
        "import zeep\nc = zeep.Client(wsdl='http://{}/?wsdl')\n\
         print(c.service.get_current_datetime())\nprint(c.service.get_current_datetime())\n",
        t.addr
    );
    let out = cmd(python).args(["-c", &script]).run().ok();
    let lines = out.stdout_lines();
    assert_eq!(lines.len(), 2, "{}", out.dump());
    for l in &lines {
        assert!(peerkit::nap::DateTime::parse(l).is_some(), "{}", out.dump());
    }
    eprintln!("zeep: get_current_datetime() = {}", lines[0]);
}

#[test]
fn an_rpcgen_client_calls_nap_log() {
    let have = |c: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !(have("rpcgen") && have("cc") && Path::new("/usr/include/tirpc/rpc/rpc.h").exists()) {
        return crate::harness::skip(
            "rpcgen client calls nap-log",
            "rpcgen, cc or libtirpc-dev missing (scripts/install-deps.sh rpc)",
        );
    }
    if !Path::new("/run/rpcbind.sock").exists() {
        return crate::harness::skip(
            "rpcgen client calls nap-log",
            "no rpcbind running (scripts/install-deps.sh rpc starts one)",
        );
    }
    let dir = TempDir::new("nap-rpcgen");
    let x = Path::new(env!("CARGO_MANIFEST_DIR")).join("operations.x");
    std::fs::copy(&x, dir.path().join("operations.x")).unwrap();
    std::fs::write(
        dir.path().join("client.c"),
        r#"#include "operations.h"
#include <stdio.h>
int main(int argc, char **argv) {
    if (argc != 5) return 2;
    CLIENT *c = clnt_create(argv[1], NAP_LOG, NAP_LOG_V1, "tcp");
    if (!c) { clnt_pcreateerror(argv[1]); return 2; }
    operation_entry e = { argv[2], argv[3], argv[4] };
    if (!log_operation_1(&e, c)) { clnt_perror(c, "LOG_OPERATION"); return 1; }
    clnt_destroy(c);
    return 0;
}
"#,
    )
    .unwrap();
    cmd("rpcgen")
        .args(["-C", "operations.x"])
        .cwd(dir.path())
        .run()
        .ok();
    cmd("cc")
        .args([
            "-I/usr/include/tirpc",
            "-o",
            "client",
            "client.c",
            "operations_clnt.c",
            "operations_xdr.c",
            "-ltirpc",
        ])
        .cwd(dir.path())
        .run()
        .ok();
    let mut log = cmd(bin!("nap-log"))
        .args(["--listen", "127.0.0.1:0"])
        .daemon();
    cmd(dir.path().join("client").to_str().unwrap())
        .args(["127.0.0.1", "ana", "PUBLISH notes.txt", DT])
        .run()
        .ok();
    log.wait_stdout(|l| l == format!("ana PUBLISH notes.txt {DT}"));
    eprintln!("rpcgen client: nap-log printed `ana PUBLISH notes.txt {DT}`");
}

#[test]
fn nap_server_logs_every_operation_to_nap_log() {
    let mut log = cmd(bin!("nap-log"))
        .args(["--listen", "127.0.0.1:0"])
        .daemon();
    let s = nap_server(&["--log-rpc", &log.addr]);
    assert_eq!(ask_parts(&s.addr, &["REGISTER", DT, "ana"]), b"0\0");
    assert_eq!(ask_parts(&s.addr, &["CONNECT", DT, "ana", "", "9"]), b"0\0");
    assert_eq!(
        ask_parts(&s.addr, &["PUBLISH", DT, "ana", "notes.txt", "my notes"]),
        b"0\0"
    );
    assert_eq!(
        ask_parts(&s.addr, &["DELETE", DT, "ana", "notes.txt"]),
        b"0\0"
    );
    for want in [
        format!("ana REGISTER {DT}"),
        format!("ana CONNECT {DT}"),
        format!("ana PUBLISH notes.txt {DT}"),
        format!("ana DELETE notes.txt {DT}"),
    ] {
        log.wait_stdout(|l| l == want);
    }
}

#[test]
fn nap_server_keeps_serving_while_nap_log_is_down_or_stalled() {
    // Down: nothing listens there (set through the environment).
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let down = closed.local_addr().unwrap().to_string();
    drop(closed);
    let s = cmd("env")
        .arg(format!("LOG_RPC_IP={down}"))
        .arg(bin!("nap-server"))
        .args(["--listen", "127.0.0.1:0"])
        .daemon();
    for i in 0..50 {
        let user = format!("u{i}");
        assert_eq!(ask_parts(&s.addr, &["REGISTER", DT, &user]), b"0\0");
    }
    s.wait_stderr(|l| l.contains("operation log:"));

    // Stalled: accepts, never reads nor answers.
    let stall = TcpListener::bind("127.0.0.1:0").unwrap();
    let stall_at = stall.local_addr().unwrap().to_string();
    let held = thread::spawn(move || {
        let mut held = Vec::new();
        for c in stall.incoming().take(3) {
            held.push(c);
        }
        held
    });
    let s = nap_server(&["--log-rpc", &stall_at]);
    for i in 0..300 {
        let user = format!("u{i}");
        assert_eq!(ask_parts(&s.addr, &["REGISTER", DT, &user]), b"0\0");
    }
    s.wait_stderr(|l| l.contains("operation log:"));
    drop(s);
    drop(held);
}

#[test]
fn every_daemon_serves_real_clients_through_idle_and_trickling_floods() {
    let server = nap_server(&[]);
    let n = std::sync::atomic::AtomicU64::new(0);
    let probe = || {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let a = ask_parts(&server.addr, &["REGISTER", DT, &format!("probe{i}")]);
        assert_eq!(a, b"0\0", "a real client was not served");
    };
    exhaustion("nap-server", &server, 0x41, probe);

    let time = cmd(bin!("nap-time"))
        .args(["--listen", "127.0.0.1:0"])
        .daemon();
    let probe = || {
        let a = ask(
            &time.addr,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(a.starts_with(b"HTTP/1.1 200 OK"), "not served: {a:?}");
    };
    exhaustion("nap-time", &time, 0x41, probe);

    let log = cmd(bin!("nap-log"))
        .args(["--listen", "127.0.0.1:0"])
        .daemon();
    let probe = || {
        let t = peerkit::net::Timeouts {
            connect: SERVED_WITHIN,
            io: SERVED_WITHIN,
        };
        let mut c = peerkit::oncrpc::Client::connect(&log.addr, &t, 0x2000_0099, 1)
            .unwrap_or_else(|e| panic!("a real client was not served: {e}"));
        c.null()
            .unwrap_or_else(|e| panic!("a real client was not served: {e}"));
    };
    exhaustion("nap-log", &log, 0x41, probe);

    let dir = TempDir::new("nap-exhaust");
    let share = dir.sub("share");
    std::fs::write(share.join("ok.txt"), b"ok").unwrap();
    let mut ana = Shell::start(&server, &share, &[]);
    ana.expect("REGISTER ana", "REGISTER OK");
    ana.expect("CONNECT ana", "CONNECT OK");
    ana.expect("PUBLISH ok.txt fine", "PUBLISH OK");
    ana.p.addr = ana.address_of("ana");
    let at = ana.p.addr.clone();
    let probe = || assert_eq!(ask(&at, &req(&["GET_FILE", "ok.txt", DT])), b"0\0ok");
    exhaustion("nap-peer listener", &ana.p, 0x41, probe);
}

#[test]
fn nap_time_answers_soap_faults_and_names_the_callers_host_in_its_wsdl() {
    let t = cmd(bin!("nap-time"))
        .args(["--listen", "127.0.0.1:0"])
        .daemon();
    let wsdl = ask(
        &t.addr,
        b"GET /?wsdl HTTP/1.1\r\nHost: nap.example:8123\r\nConnection: close\r\n\r\n",
    );
    let wsdl = String::from_utf8_lossy(&wsdl);
    assert!(
        wsdl.contains("<soap:address location=\"http://nap.example:8123/\"/>"),
        "{wsdl}"
    );
    assert!(wsdl.contains("<wsdl:service name=\"DateTimeService\">"));
    let envelope = |op: &str| {
        let body = format!(
            "<?xml version='1.0'?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\">\
             <s:Body><t:{op} xmlns:t=\"spyne.examples.datetime\"/></s:Body></s:Envelope>"
        );
        let req = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        String::from_utf8_lossy(&ask(&t.addr, req.as_bytes())).into_owned()
    };
    let ok = envelope("get_current_datetime");
    assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
    let result = ok
        .split("<tns:get_current_datetimeResult>")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap_or_default();
    assert!(peerkit::nap::DateTime::parse(result).is_some(), "{ok}");
    let fault = envelope("format_disk");
    assert!(fault.starts_with("HTTP/1.1 500"), "{fault}");
    assert!(
        fault.contains("<faultcode>soap11env:Client</faultcode>"),
        "{fault}"
    );
    let bad = ask(
        &t.addr,
        b"POST / HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n",
    );
    assert!(
        bad.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&bad)
    );
    // Framing a proxy could read another way (RFC 9112): two lengths that
    // differ, or Transfer-Encoding beside Content-Length, get a 400.
    for smuggle in [
        &b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nbody"[..],
        b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\nbody",
        // The same in other spellings: names in any case, a list, the
        // encoding first, an encoding named identity.
        b"POST / HTTP/1.1\r\ncontent-length: 4\r\nCONTENT-LENGTH: 5\r\n\r\nbody!",
        b"POST / HTTP/1.1\r\nContent-Length: 4, 5\r\n\r\nbody!",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\nbody",
        b"POST / HTTP/1.1\r\ntransfer-encoding: identity\r\nContent-Length: 4\r\n\r\nbody",
        b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length:\r\n\r\nbody",
    ] {
        let bad = ask(&t.addr, smuggle);
        assert!(
            bad.starts_with(b"HTTP/1.1 400"),
            "{}",
            String::from_utf8_lossy(&bad)
        );
    }
    // Still serving.
    assert!(ask(&t.addr, b"GET / HTTP/1.0\r\n\r\n").starts_with(b"HTTP/1.1 200 OK"));
}

#[test]
fn the_server_view_lists_users_operations_and_counts_exactly() {
    let mut s = nap_server(&["--http", "127.0.0.1:0"]);
    let line = s.wait_stdout(|l| l.starts_with("view on "));
    assert_eq!(s.stdout_lines()[1], line, "{}", s.dump());
    let view = line["view on ".len()..].to_string();
    let (_, before) = view_get(&view, "/metrics");
    let registers = "peerkit_nap_requests_total{op=\"REGISTER\"}";
    assert_eq!(metric(&before, registers), Some(0.0));
    let hostile = "<img src=x onerror=alert(1)>";
    for user in ["ana", hostile, "ana"] {
        ask_parts(&s.addr, &["REGISTER", DT, user]);
    }
    assert_eq!(
        ask_parts(&s.addr, &["CONNECT", DT, "ana", "10.1.2.3", "4000"]),
        b"0\0"
    );
    let (_, after) = view_get(&view, "/metrics");
    assert_eq!(metric(&after, registers), Some(3.0));
    assert_eq!(metric(&after, "peerkit_nap_users_registered"), Some(2.0));
    assert_eq!(metric(&after, "peerkit_nap_users_connected"), Some(1.0));
    let (status, body) = view_get(&view, "/state.json");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    let users: Vec<(&str, bool)> = state["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["name"].as_str().unwrap(),
                u["connected"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(users, [(hostile, false), ("ana", true)]);
    assert_eq!(state["users"][1]["ip"], "10.1.2.3");
    let ops: Vec<(&str, &str, u64)> = state["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["user"].as_str().unwrap(),
                o["op"].as_str().unwrap(),
                o["code"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("ana", "REGISTER", 0),
            (hostile, "REGISTER", 0),
            ("ana", "REGISTER", 1),
            ("ana", "CONNECT", 0)
        ]
    );
    assert_eq!(state["operations"][2]["result"], "NameInUse");
}

#[test]
fn nap_time_and_nap_log_views_count_what_they_served() {
    let mut t = cmd(bin!("nap-time"))
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .daemon();
    let line = t.wait_stdout(|l| l.starts_with("view on "));
    let view = line["view on ".len()..].to_string();
    for _ in 0..2 {
        assert!(ask(&t.addr, b"GET / HTTP/1.0\r\n\r\n").starts_with(b"HTTP/1.1 200 OK"));
    }
    assert!(ask(&t.addr, b"GET /nothing HTTP/1.0\r\n\r\n").starts_with(b"HTTP/1.1 404"));
    let (_, m) = view_get(&view, "/metrics");
    assert_eq!(
        metric(&m, "peerkit_time_requests_total{kind=\"text\"}"),
        Some(2.0)
    );
    assert_eq!(
        metric(&m, "peerkit_time_requests_total{kind=\"refused\"}"),
        Some(1.0)
    );
    let state: serde_json::Value = serde_json::from_str(&view_get(&view, "/state.json").1).unwrap();
    let records = state["records"].as_array().unwrap();
    assert_eq!(records.len(), 3);
    assert!(
        records[0]["datetime"]
            .as_str()
            .is_some_and(|d| peerkit::nap::DateTime::parse(d).is_some()),
        "{state}"
    );

    let mut log = cmd(bin!("nap-log"))
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .daemon();
    let line = log.wait_stdout(|l| l.starts_with("view on "));
    let log_view = line["view on ".len()..].to_string();
    let s = nap_server(&["--log-rpc", &log.addr]);
    for user in ["ana", "bo"] {
        assert_eq!(ask_parts(&s.addr, &["REGISTER", DT, user]), b"0\0");
    }
    log.wait_stdout(|l| l.starts_with("bo REGISTER"));
    let (_, m) = view_get(&log_view, "/metrics");
    assert_eq!(
        metric(&m, "peerkit_oplog_calls_total{kind=\"logged\"}"),
        Some(2.0)
    );
    let state: serde_json::Value =
        serde_json::from_str(&view_get(&log_view, "/state.json").1).unwrap();
    let users: Vec<&str> = state["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["ana", "bo"]);
}

#[test]
fn the_peer_view_shows_what_it_serves_and_counts_exactly() {
    let dir = TempDir::new("nap-peer-view");
    let share_a = dir.sub("ana");
    let share_b = dir.sub("bo");
    let name = "<img src=x onerror=alert(1)>.txt";
    let size = 3 << 20;
    write_random_file(&share_a.join(name), size, 9);
    let server = nap_server(&[]);
    let mut ana = Shell::start(&server, &share_a, &["--http", "127.0.0.1:0"]);
    let line = ana.p.wait_stdout(|l| l.starts_with("view on "));
    assert_eq!(ana.p.stdout_lines()[0], line, "the first line");
    let view = line["view on ".len()..].to_string();
    for cmd in [
        "REGISTER ana".to_string(),
        "CONNECT ana".to_string(),
        format!("PUBLISH \"{name}\" a file"),
    ] {
        ana.run(&cmd);
    }
    let (_, before) = view_get(&view, "/metrics");
    let ok = "peerkit_nap_peer_requests_total{result=\"ok\"}";
    assert_eq!(metric(&before, ok), Some(0.0));
    assert_eq!(metric(&before, "peerkit_nap_peer_files"), Some(1.0));
    let got = peer_script(
        server.port(),
        &share_b,
        &format!(
            "REGISTER bo\nCONNECT bo\nGET_FILE ana \"{name}\" one\nGET_FILE ana \"{name}\" two\n\
             GET_FILE ana missing.txt three\nQUIT\n"
        ),
    );
    assert_eq!(
        got.iter().filter(|l| *l == "GET_FILE OK").count(),
        2,
        "{got:?}"
    );
    let (_, after) = view_get(&view, "/metrics");
    assert_eq!(metric(&after, ok), Some(2.0));
    assert_eq!(
        metric(
            &after,
            "peerkit_nap_peer_requests_total{result=\"no_file\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&after, "peerkit_nap_peer_bytes_total{direction=\"out\"}"),
        Some(2.0 * size as f64)
    );
    assert_eq!(
        metric(
            &after,
            "peerkit_nap_peer_transfer_seconds_count{direction=\"out\"}"
        ),
        Some(2.0)
    );
    let (status, body) = view_get(&view, "/state.json");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(state["system"], "nap-peer");
    assert_eq!(state["files"], serde_json::json!([name]));
    assert_eq!(state["transfers"], serde_json::json!([]));
    let finished = state["finished"].as_array().unwrap();
    assert_eq!(finished.len(), 2, "{state}");
    for t in finished {
        assert_eq!(t["name"], name);
        assert_eq!(t["direction"], "out");
        assert_eq!(t["ok"], true);
        assert_eq!(t["bytes"], size);
    }
    ana.quit();
}

/// Runs nap-peer on `script` with `-s HOST:PORT` and `extra` flags.
fn peer_run(server: &Proc, share: &Path, extra: &[&str], script: &str) -> crate::harness::Output {
    cmd(bin!("nap-peer"))
        .args(["-s", &server.addr, "--listen-ip", "127.0.0.1"])
        .arg("--share")
        .arg(share)
        .args(extra)
        .stdin(script)
        .run()
}

#[test]
fn nap_peer_help_spaced_forms_overwrite_refusal_reasons_and_exit_status() {
    let dir = TempDir::new("nap-everyday");
    let share_a = dir.sub("ana");
    let share_b = dir.sub("bo");
    std::fs::write(share_a.join("notes.txt"), b"hello\n").unwrap();
    let server = nap_server(&[]);

    // -s HOST:PORT; the old -s HOST -p PORT still works (the tests above);
    // a host alone says what is missing.
    cmd(bin!("nap-peer"))
        .args(["-s", "127.0.0.1"])
        .stdin("QUIT\n")
        .run()
        .code(2)
        .stderr_has("missing port in \"127.0.0.1\" (expected HOST:PORT");

    // HELP lists every command with its arguments.
    let out = peer_run(&server, &share_b, &[], "HELP\n").ok();
    for usage in [
        "REGISTER <userName>",
        "PUBLISH <fileName> <description...>",
        "GET_FILE <userName> <remote_fileName> <local_fileName>",
        "LIST USERS",
        "QUIT",
    ] {
        assert!(out.stdout.contains(usage), "{usage}\n{}", out.dump());
    }

    // ana publishes; PUBLISH of a file that is not in --share is refused
    // with the reason.
    let mut ana = Shell::start(&server, &share_a, &[]);
    ana.expect("REGISTER ana", "REGISTER OK");
    ana.expect("CONNECT ana", "CONNECT OK");
    ana.expect("PUBLISH notes.txt n", "PUBLISH OK");
    ana.expect("PUBLISH ghost.txt n", "PUBLISH FAIL");
    ana.p
        .wait_stderr(|l| l.contains("PUBLISH: ghost.txt: no such file in"));

    // The course's spaced forms; every operation OK: exit 0.
    let got = share_b.join("got.txt");
    let script = format!(
        "REGISTER bo\nCONNECT bo\nlist users\nLIST CONTENT ana\nGET FILE ana notes.txt {}\nQUIT\n",
        got.display()
    );
    let out = peer_run(&server, &share_b, &[], &script).ok();
    let lines = out.stdout_lines();
    assert!(
        lines.contains(&"LIST_USERS OK".to_string()),
        "{}",
        out.dump()
    );
    assert!(lines.contains(&"notes.txt n".to_string()), "{}", out.dump());
    assert!(lines.contains(&"GET_FILE OK".to_string()), "{}", out.dump());
    assert!(!out.stdout.contains("not valid"), "{}", out.dump());
    assert_eq!(std::fs::read(&got).unwrap(), b"hello\n");
    // Off a terminal, no success line on stderr.
    assert!(!out.stderr.contains("got notes.txt"), "{}", out.dump());

    // An existing local file is not replaced without --force; the pipeline
    // then exits 1 saying how many commands failed.
    std::fs::write(&got, b"mine").unwrap();
    let script = format!(
        "CONNECT bo\nGET_FILE ana notes.txt {}\nQUIT\n",
        got.display()
    );
    peer_run(&server, &share_b, &[], &script)
        .code(1)
        .stdout_has("GET_FILE FAIL")
        .stderr_has("already exists (start nap-peer with --force to replace it)")
        .stderr_has("1 of 3 commands failed");
    assert_eq!(std::fs::read(&got).unwrap(), b"mine");
    peer_run(&server, &share_b, &["--force"], &script)
        .ok()
        .stdout_has("GET_FILE OK");
    assert_eq!(std::fs::read(&got).unwrap(), b"hello\n");
    assert_eq!(
        std::fs::read_dir(&share_b).unwrap().count(),
        1,
        "no temp files"
    );

    // After a server restart nobody is connected: GET_FILE says why.
    let port = server.port();
    drop(server);
    let server = cmd(bin!("nap-server"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .daemon();
    let out = peer_run(
        &server,
        &share_b,
        &[],
        &format!("GET_FILE ana notes.txt {}\n", share_b.join("x").display()),
    )
    .code(1)
    .stdout_has("GET_FILE FAIL");
    assert!(
        out.stderr
            .contains("GET_FILE: finding ana: the server answered LIST_USERS FAIL"),
        "{}",
        out.dump()
    );
    drop(ana);
}
