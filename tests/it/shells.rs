//! The shells as a person uses them: `kv-query` and `nap-peer` on a
//! pseudo-terminal (util-linux `script`), typed at key by key: line editing
//! and history, Ctrl-C at the prompt and in the middle of a command, a
//! second Ctrl-C.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::bin;
use crate::harness::{DEADLINE, Proc, SERVED_WITHIN, TempDir, cmd, wait_until};

const DT: &str = "21/11/2026 10:00:00";
const UP: &str = "\x1b[A";
const CTRL_C: &str = "\x03";

/// Whether util-linux `script` is here to make a pseudo-terminal; when it
/// is not, the test says it is skipped.
fn have_script(test: &str) -> bool {
    let ok = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: {test}: util-linux script not installed");
    }
    ok
}

/// A word quoted for `sh -c`.
fn quoted(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// What rustyline writes as it takes the terminal for a line (bracketed
/// paste on): the n-th time it shows, the n-th prompt is up and keys are
/// read as keys.
const PROMPT_UP: &str = "\x1b[?2004h";
/// What it writes as it gives the terminal back with a line read.
const LINE_TAKEN: &str = "\x1b[?2004l";

/// Everything shown so far, and whether the terminal has closed.
type Screen = (Mutex<(Vec<u8>, bool)>, Condvar);

/// A program on a pseudo-terminal (util-linux `script`), as a person at an
/// xterm would run it, with its history under `data`; everything the
/// terminal shows is kept, escape sequences and all.
struct Terminal {
    child: Child,
    keys: Option<ChildStdin>,
    screen: Arc<Screen>,
    cmdline: String,
}

impl Terminal {
    fn start(program: &str, args: &[&str], data: &Path) -> Terminal {
        let mut line = format!(
            "exec env TERM=xterm XDG_DATA_HOME={} {}",
            quoted(&data.to_string_lossy()),
            quoted(program)
        );
        for a in args {
            line.push(' ');
            line.push_str(&quoted(a));
        }
        let mut child = Command::new("script")
            .args(["-qefc", &line, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start script");
        let keys = child.stdin.take();
        let mut out = child.stdout.take().unwrap();
        let screen: Arc<Screen> = Arc::new((Mutex::new((Vec::new(), false)), Condvar::new()));
        let s = screen.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = out.read(&mut buf).unwrap_or(0);
                let mut g = s.0.lock().unwrap();
                if n == 0 {
                    g.1 = true;
                    s.1.notify_all();
                    return;
                }
                g.0.extend_from_slice(&buf[..n]);
                s.1.notify_all();
            }
        });
        Terminal {
            child,
            keys,
            screen,
            cmdline: line,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.screen.0.lock().unwrap().0).into_owned()
    }

    fn dump(&self) -> String {
        format!(
            "--- terminal ---\ncommand: {}\nscreen:\n{}\n",
            self.cmdline,
            self.text()
        )
    }

    /// Waits until the terminal has shown `needle` at least `times` times.
    fn wait_for(&self, needle: &str, times: usize) {
        let deadline = Instant::now() + DEADLINE;
        let mut g = self.screen.0.lock().unwrap();
        loop {
            if String::from_utf8_lossy(&g.0).matches(needle).count() >= times {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || g.1 {
                drop(g);
                panic!("{needle:?} not shown {times} times\n{}", self.dump());
            }
            g = self.screen.1.wait_timeout(g, left).unwrap().0;
        }
    }

    /// Waits for the n-th prompt (counting from 1), then types `keys`.
    fn at_prompt(&mut self, n: usize, keys: &str) {
        self.wait_for(PROMPT_UP, n);
        self.type_keys(keys);
    }

    fn type_keys(&mut self, keys: &str) {
        let w = self.keys.as_mut().expect("keyboard");
        w.write_all(keys.as_bytes()).unwrap();
        w.flush().unwrap();
    }

    /// Waits for the program to end; its exit status.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("did not exit in time\n{}", self.dump());
            }
            thread::sleep(Duration::from_millis(10)); // poll until the deadline
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn nap_server() -> Proc {
    cmd(bin!("nap-server"))
        .args(["--listen", "127.0.0.1:0"])
        .daemon()
}

/// A request of the course's directory protocol: each part NUL-ended.
fn ask(addr: &str, parts: &[&str]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for p in parts {
        bytes.extend_from_slice(p.as_bytes());
        bytes.push(0);
    }
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(SERVED_WITHIN)).unwrap();
    s.write_all(&bytes).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// The users the server lists as connected, as `LIST_USERS` lines.
fn connected_users(server: &Proc) -> Vec<String> {
    let out = cmd(bin!("nap-peer"))
        .args(["-s", "127.0.0.1", "-p", &server.port().to_string()])
        .stdin("REGISTER lister\nCONNECT lister\nLIST_USERS\nQUIT\n")
        .run()
        .ok();
    let lines = out.stdout_lines();
    let start = lines.iter().position(|l| l == "LIST_USERS OK").unwrap() + 1;
    lines[start..]
        .iter()
        .filter(|l| !l.starts_with("DISCONNECT") && !l.starts_with("lister "))
        .cloned()
        .collect()
}

fn nap_peer(server: &Proc, share: &Path, data: &Path) -> Terminal {
    nap_peer_with(server, share, data, &[])
}

fn nap_peer_with(server: &Proc, share: &Path, data: &Path, extra: &[&str]) -> Terminal {
    let port = server.port().to_string();
    let share = share.to_string_lossy().into_owned();
    let mut args = vec![
        "-s",
        "127.0.0.1",
        "-p",
        &port,
        "--listen-ip",
        "127.0.0.1",
        "--share",
        &share,
    ];
    args.extend_from_slice(extra);
    Terminal::start(bin!("nap-peer"), &args, data)
}

#[test]
fn nap_peer_ctrl_c_at_the_prompt_disconnects_and_exits_130() {
    if !have_script("nap_peer_ctrl_c_at_the_prompt") {
        return;
    }
    let dir = TempDir::new("shell-nap-ctrl-c");
    let server = nap_server();
    let mut p = nap_peer(&server, &dir.sub("share"), &dir.sub("data"));
    p.at_prompt(1, "REGISTER bo\r");
    p.at_prompt(2, "CONNECT bo\r");
    p.at_prompt(3, "LIST_USERS\r");
    // Up-arrow brings LIST_USERS back.
    p.at_prompt(4, &format!("{UP}\r"));
    p.wait_for("LIST_USERS OK", 2);
    p.at_prompt(5, CTRL_C);
    assert_eq!(p.wait_exit().code(), Some(130), "{}", p.dump());
    let screen = p.text();
    assert!(screen.contains("CONNECT OK"), "{}", p.dump());
    assert!(screen.contains("DISCONNECT OK"), "{}", p.dump());
    assert!(!screen.contains("not valid"), "{}", p.dump());
    // The server no longer lists bo, and bo can connect again at once.
    assert!(connected_users(&server).is_empty(), "{}", server.dump());
    let again = cmd(bin!("nap-peer"))
        .args(["-s", "127.0.0.1", "-p", &server.port().to_string()])
        .stdin("CONNECT bo\nQUIT\n")
        .run()
        .ok();
    assert_eq!(again.stdout_lines()[0], "CONNECT OK", "{}", again.dump());
}

/// A fake owner registered as `eve` that sends the start of a file, then
/// holds the connection open until the test is done.
fn stalling_owner(server: &Proc) -> (thread::JoinHandle<()>, std::sync::mpsc::Sender<()>) {
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = fake.local_addr().unwrap().port().to_string();
    assert_eq!(ask(&server.addr, &["REGISTER", DT, "eve"]), b"0\0");
    assert_eq!(
        ask(&server.addr, &["CONNECT", DT, "eve", "127.0.0.1", &port]),
        b"0\0"
    );
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let owner = thread::spawn(move || {
        let (mut s, _) = fake.accept().unwrap();
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
        s.write_all(b"0\0").unwrap();
        s.write_all(&vec![7u8; 1 << 20]).unwrap();
        let _ = wait.recv_timeout(DEADLINE);
    });
    (owner, done)
}

#[test]
fn nap_peer_ctrl_c_mid_get_file_removes_the_temporary_file_and_disconnects() {
    if !have_script("nap_peer_ctrl_c_mid_get_file") {
        return;
    }
    let dir = TempDir::new("shell-nap-get");
    let out = dir.sub("out");
    let server = nap_server();
    let (owner, done) = stalling_owner(&server);
    let mut p = nap_peer(&server, &out, &dir.sub("data"));
    p.at_prompt(1, "REGISTER bo\r");
    p.at_prompt(2, "CONNECT bo\r");
    let dest = out.join("big.bin");
    p.at_prompt(3, &format!("GET_FILE eve big.bin {}\r", dest.display()));
    wait_until(
        "the temporary file to fill",
        || {
            fs::read_dir(&out)
                .ok()?
                .flatten()
                .any(|e| e.metadata().is_ok_and(|m| m.len() >= 1 << 20))
                .then_some(())
        },
        || p.dump(),
    );
    p.type_keys(CTRL_C);
    assert_eq!(p.wait_exit().code(), Some(130), "{}", p.dump());
    drop(done);
    owner.join().unwrap();
    let left: Vec<_> = fs::read_dir(&out).unwrap().flatten().collect();
    assert!(left.is_empty(), "left {left:?}\n{}", p.dump());
    assert!(p.text().contains("DISCONNECT OK"), "{}", p.dump());
    let users = connected_users(&server);
    assert_eq!(users.len(), 1, "only eve: {users:?}");
    assert!(users[0].starts_with("eve "), "{users:?}");
}

#[test]
fn a_second_ctrl_c_exits_at_once_while_the_first_is_tidying_up() {
    if !have_script("a_second_ctrl_c_exits_at_once") {
        return;
    }
    let dir = TempDir::new("shell-nap-twice");
    let server = nap_server();
    let mut p = nap_peer(&server, &dir.sub("share"), &dir.sub("data"));
    p.at_prompt(1, "REGISTER bo\r");
    p.at_prompt(2, "CONNECT bo\r");
    p.wait_for("CONNECT OK", 1);
    // The server stops answering (the kernel still accepts for it).
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &server.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig}");
    };
    signal("-STOP");
    // LIST_USERS waits for an answer; the first Ctrl-C starts the tidy-up
    // (which must wait too), the second ends the program at once, long
    // before the 30 s socket timeout would have.
    p.at_prompt(3, "LIST_USERS\r");
    p.wait_for(LINE_TAKEN, 3);
    p.type_keys(CTRL_C);
    p.wait_for("Ctrl-C again quits at once", 1);
    p.type_keys(CTRL_C);
    let status = p.wait_exit();
    signal("-CONT");
    assert_eq!(status.code(), Some(130), "{}", p.dump());
    let screen = p.text();
    assert!(
        !screen.contains("timed out") && !screen.contains("LIST_USERS FAIL"),
        "{}",
        p.dump()
    );
}

#[test]
fn kv_query_up_arrow_recalls_the_previous_command_and_history_is_kept() {
    if !have_script("kv_query_up_arrow") {
        return;
    }
    let dir = TempDir::new("shell-kv-history");
    let kv = dir.path().join("s.kv");
    fs::write(&kv, "ssh 22/tcp\n").unwrap();
    let servent = cmd(bin!("kv-servent"))
        .args(["--bind", "127.0.0.1", "0"])
        .arg(&kv)
        .daemon();
    let data = dir.sub("data");
    let kv_query = || Terminal::start(bin!("kv-query"), &["--wait", "0.2", &servent.addr], &data);
    let mut q = kv_query();
    q.at_prompt(1, "?ssh\r");
    q.at_prompt(2, &format!("{UP}\r"));
    q.wait_for("22/tcp ", 2);
    q.at_prompt(3, "\x04");
    assert_eq!(q.wait_exit().code(), Some(0), "{}", q.dump());
    assert!(!q.text().contains("unknown command"), "{}", q.dump());
    let history = fs::read_to_string(data.join("peerkit/kv-query_history")).unwrap();
    assert!(history.lines().any(|l| l == "?ssh"), "{history:?}");
    // A new session: Up-arrow brings back the last one's command.
    let mut q = kv_query();
    q.at_prompt(1, &format!("{UP}\r"));
    q.wait_for("22/tcp ", 1);
    q.at_prompt(2, CTRL_C);
    assert_eq!(q.wait_exit().code(), Some(130), "{}", q.dump());
}

/// A fake owner registered as `user` that answers every GET_FILE with
/// `body`, `times` times.
fn owner_sending(
    server: &Proc,
    user: &str,
    body: &'static [u8],
    times: usize,
) -> thread::JoinHandle<()> {
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = fake.local_addr().unwrap().port().to_string();
    assert_eq!(ask(&server.addr, &["REGISTER", DT, user]), b"0\0");
    assert_eq!(
        ask(&server.addr, &["CONNECT", DT, user, "127.0.0.1", &port]),
        b"0\0"
    );
    thread::spawn(move || {
        for _ in 0..times {
            let (mut s, _) = fake.accept().unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf);
            s.write_all(b"0\0").unwrap();
            s.write_all(body).unwrap();
        }
    })
}

#[test]
fn nap_peer_get_file_says_what_it_got_on_a_terminal_unless_quiet() {
    if !have_script("nap_peer_get_file_success_line") {
        return;
    }
    let dir = TempDir::new("shell-nap-success");
    let out = dir.sub("out");
    let server = nap_server();
    let owner = owner_sending(&server, "eve", b"twelve bytes", 2);
    for (quiet, name) in [(false, "a.txt"), (true, "b.txt")] {
        let extra: &[&str] = if quiet { &["-q"] } else { &[] };
        let mut p = nap_peer_with(&server, &out, &dir.sub("data"), extra);
        p.at_prompt(1, "REGISTER bo\r");
        p.at_prompt(2, "CONNECT bo\r");
        let dest = out.join(name);
        p.at_prompt(3, &format!("GET FILE eve f.txt {}\r", dest.display()));
        p.wait_for("GET_FILE OK", 1);
        p.at_prompt(4, "QUIT\r");
        assert_eq!(p.wait_exit().code(), Some(0), "{}", p.dump());
        let said = "got f.txt from eve (127.0.0.1:";
        assert_eq!(p.text().contains(said), !quiet, "{}", p.dump());
        if !quiet {
            assert!(
                p.text()
                    .contains(&format!("into {}: 12 bytes in ", dest.display())),
                "{}",
                p.dump()
            );
        }
        assert_eq!(fs::read(&dest).unwrap(), b"twelve bytes");
    }
    owner.join().unwrap();
}

#[test]
fn a_kv_query_shell_left_alone_reconnects_after_the_servent_closes_its_idle_link() {
    if !have_script("kv_query_shell_reconnects") {
        return;
    }
    let dir = TempDir::new("shell-kv-relink");
    let kv = dir.path().join("s.kv");
    fs::write(&kv, "ssh 22/tcp\n").unwrap();
    let mut servent = cmd(bin!("kv-servent"))
        .args(["--bind", "127.0.0.1", "--idle-timeout", "1", "0"])
        .arg(&kv)
        .daemon();
    // Waits that only Ctrl-C ends: a Ctrl-C during a wait ends the wait,
    // not the shell.
    let mut q = Terminal::start(
        bin!("kv-query"),
        &["-v", "--wait", "3600", "--settle", "3600", &servent.addr],
        &dir.sub("data"),
    );
    q.at_prompt(1, "?ssh\r");
    q.wait_for("22/tcp ", 1);
    // The link sits idle: the servent closes it, and the client sees it.
    servent.wait_stdout(|l| l.starts_with("client closed "));
    q.wait_for("closed the connection", 1);
    q.type_keys(CTRL_C);
    // The next query goes out on a new link.
    q.at_prompt(2, "?ssh\r");
    q.wait_for("22/tcp ", 2);
    q.wait_for("reconnected", 1);
    q.type_keys(CTRL_C);
    q.at_prompt(3, "Q\r");
    assert_eq!(q.wait_exit().code(), Some(0), "{}", q.dump());
}
