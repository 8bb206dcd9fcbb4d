//! Test harness shared by every system's integration tests: fresh temp
//! folders, spawning the real binaries, waiting on readiness lines under a
//! deadline, killing children on drop, and dumping everything on failure.

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// Path of one of the crate's binaries: `bin!("p2p-get")`.
#[macro_export]
macro_rules! bin {
    ($name:literal) => {
        env!(concat!("CARGO_BIN_EXE_", $name))
    };
}

/// How long any single wait in a test may take before it fails. Generous:
/// tests must pass on a busy two-core machine.
pub const DEADLINE: Duration = Duration::from_secs(60);

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Says visibly that a test, or a part of one, is skipped and why, and
/// appends the line to the skip list that `.ci/run` prints at the end
/// (`$PEERKIT_SKIPPED`, by default `target/tmp/skipped.txt`).
pub fn skip(what: &str, why: &str) {
    eprintln!("SKIPPED {what}: {why}");
    let list = std::env::var_os("PEERKIT_SKIPPED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped.txt"));
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(list) {
        let _ = writeln!(f, "skipped: {what} ({why})");
    }
}

/// True when `program` is on the PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A fresh folder under the target directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Creates (if needed) and returns a sub-folder.
    pub fn sub(&self, name: &str) -> PathBuf {
        let p = self.0.join(name);
        fs::create_dir_all(&p).expect("create sub dir");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        } else {
            eprintln!("keeping {} for inspection", self.0.display());
        }
    }
}

/// Lines a child printed on one stream, with a condition variable so tests
/// can wait for a line to appear.
#[derive(Default)]
struct Lines {
    lines: Mutex<(Vec<String>, bool)>,
    changed: Condvar,
}

impl Lines {
    fn collect<R: Read + Send + 'static>(stream: R) -> Arc<Lines> {
        let lines = Arc::new(Lines::default());
        let l = lines.clone();
        thread::spawn(move || {
            let mut r = BufReader::new(stream);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf)
                            .trim_end_matches(['\n', '\r'])
                            .to_string();
                        let mut g = l.lines.lock().unwrap();
                        g.0.push(line);
                        l.changed.notify_all();
                    }
                }
            }
            l.lines.lock().unwrap().1 = true;
            l.changed.notify_all();
        });
        lines
    }

    fn snapshot(&self) -> Vec<String> {
        self.lines.lock().unwrap().0.clone()
    }

    /// Waits until the stream has ended (every line read), up to `deadline`.
    fn wait_closed(&self, deadline: Instant) {
        let mut g = self.lines.lock().unwrap();
        while !g.1 {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            g = self.changed.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// Waits until a line at index >= `from` satisfies `pred`; returns its
    /// index and text, or None at the deadline or when the stream ends.
    fn wait(
        &self,
        from: usize,
        deadline: Instant,
        pred: &dyn Fn(&str) -> bool,
    ) -> Option<(usize, String)> {
        let mut g = self.lines.lock().unwrap();
        let mut next = from;
        loop {
            while next < g.0.len() {
                if pred(&g.0[next]) {
                    return Some((next, g.0[next].clone()));
                }
                next += 1;
            }
            let now = Instant::now();
            if g.1 || now >= deadline {
                return None;
            }
            g = self.changed.wait_timeout(g, deadline - now).unwrap().0;
        }
    }
}

/// A running child process. Killed (SIGKILL) and reaped on drop.
pub struct Proc {
    pub name: String,
    cmdline: String,
    child: Child,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
    /// Index of the first stdout line `wait_stdout` has not yet consumed.
    cursor: usize,
    /// The `HOST:PORT` from the readiness line, for daemons.
    pub addr: String,
    status: Option<ExitStatus>,
    /// Stdin, when started with `Spawn::stdin_open`.
    stdin: Option<ChildStdin>,
}

fn command_line(program: &str, args: &[&OsStr]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(&shell_quote(&a.to_string_lossy()));
    }
    s
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A builder for a child process.
pub struct Spawn {
    program: String,
    args: Vec<std::ffi::OsString>,
    cwd: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    keep_stdin: bool,
}

/// Starts describing a run of `program` (use `bin!`).
pub fn cmd(program: &str) -> Spawn {
    Spawn {
        program: program.to_string(),
        args: Vec::new(),
        cwd: None,
        stdin: None,
        keep_stdin: false,
    }
}

impl Spawn {
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Spawn {
        self.args.push(a.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Spawn
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self.args.push(a.as_ref().to_owned());
        }
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Spawn {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Bytes to feed on stdin (then stdin is closed). Without it stdin is null.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Spawn {
        self.stdin = Some(bytes.into());
        self
    }

    /// Keeps stdin open as a pipe: write to it with `Proc::send_stdin`
    /// (for interactive programs that must stay up between commands).
    pub fn stdin_open(mut self) -> Spawn {
        self.keep_stdin = true;
        self
    }

    fn name(&self) -> String {
        Path::new(&self.program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.program.clone())
    }

    /// Starts the process in the background.
    pub fn start(self) -> Proc {
        let mut c = Command::new(&self.program);
        c.args(&self.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if self.stdin.is_some() || self.keep_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        if let Some(d) = &self.cwd {
            c.current_dir(d);
        }
        let args: Vec<&OsStr> = self.args.iter().map(|a| a.as_os_str()).collect();
        let cmdline = command_line(&self.program, &args);
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmdline}: {e}"));
        if let Some(input) = self.stdin.clone() {
            let mut w = child.stdin.take().unwrap();
            thread::spawn(move || {
                let _ = w.write_all(&input);
            });
        }
        let kept = if self.keep_stdin && self.stdin.is_none() {
            child.stdin.take()
        } else {
            None
        };
        let stdout = Lines::collect(child.stdout.take().unwrap());
        let stderr = Lines::collect(child.stderr.take().unwrap());
        Proc {
            name: self.name(),
            cmdline,
            child,
            stdout,
            stderr,
            cursor: 0,
            addr: String::new(),
            status: None,
            stdin: kept,
        }
    }

    /// Starts a daemon and waits for its `listening on HOST:PORT` line.
    pub fn daemon(self) -> Proc {
        let mut p = self.start();
        let line = p.wait_stdout(|l| l.starts_with("listening on "));
        p.addr = line["listening on ".len()..].trim().to_string();
        p
    }

    /// Runs to completion (under the deadline) and returns the outcome.
    pub fn run(self) -> Output {
        let mut p = self.start();
        // Waits for the output to be read to the end as well.
        let status = p.wait_exit();
        Output {
            cmdline: p.cmdline.clone(),
            status,
            stdout: p.stdout.snapshot().join("\n"),
            stderr: p.stderr.snapshot().join("\n"),
        }
    }
}

impl Proc {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The port of `addr`.
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{}: no port in {:?}", self.name, self.addr))
    }

    /// Everything known about the child, for failure messages.
    pub fn dump(&self) -> String {
        format!(
            "--- {} ---\ncommand: {}\nstatus: {:?}\nstdout:\n{}\nstderr:\n{}\n",
            self.name,
            self.cmdline,
            self.status,
            self.stdout.snapshot().join("\n"),
            self.stderr.snapshot().join("\n"),
        )
    }

    /// All stdout lines so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.snapshot()
    }

    /// All stderr lines so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.snapshot()
    }

    /// Waits for the next stdout line (after those already consumed) that
    /// satisfies `pred`; panics with a dump at the deadline.
    pub fn wait_stdout(&mut self, pred: impl Fn(&str) -> bool) -> String {
        match self
            .stdout
            .wait(self.cursor, Instant::now() + DEADLINE, &pred)
        {
            Some((i, line)) => {
                self.cursor = i + 1;
                line
            }
            None => panic!("timed out waiting for a stdout line\n{}", self.dump()),
        }
    }

    /// Waits for any stdout line (from the start) satisfying `pred`,
    /// without moving the cursor.
    pub fn wait_stdout_any(&self, pred: impl Fn(&str) -> bool) -> String {
        match self.stdout.wait(0, Instant::now() + DEADLINE, &pred) {
            Some((_, line)) => line,
            None => panic!("timed out waiting for a stdout line\n{}", self.dump()),
        }
    }

    /// Waits for a stderr line (from the start) satisfying `pred`.
    pub fn wait_stderr(&self, pred: impl Fn(&str) -> bool) -> String {
        match self.stderr.wait(0, Instant::now() + DEADLINE, &pred) {
            Some((_, line)) => line,
            None => panic!("timed out waiting for a stderr line\n{}", self.dump()),
        }
    }

    /// Writes to the stdin kept open by `Spawn::stdin_open`.
    pub fn send_stdin(&mut self, bytes: &[u8]) {
        let w = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("{}: stdin was not kept open", self.name));
        w.write_all(bytes).expect("write to stdin");
        w.flush().expect("flush stdin");
    }

    /// Whether the child has exited (reaped if so).
    pub fn exited(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status.is_some()
    }

    /// Sends SIGTERM (a graceful stop).
    pub fn terminate(&self) {
        signal(self.child.id(), "TERM");
    }

    /// Sends SIGINT (Ctrl-C).
    pub fn interrupt(&self) {
        signal(self.child.id(), "INT");
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
    }

    /// Waits for exit under the deadline; panics with a dump if it does not.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                self.status = Some(st);
                // Every line it printed is read before anyone looks at them
                // (unless a child of its own holds the pipe open).
                self.stdout.wait_closed(deadline);
                self.stderr.wait_closed(deadline);
                return st;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("process did not exit in time\n{}", self.dump());
            }
            // Poll the child's status until the deadline.
            thread::sleep(Duration::from_millis(10)); // poll until the deadline
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{sig} {pid} failed");
}

/// The outcome of a finished command.
pub struct Output {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn dump(&self) -> String {
        format!(
            "command: {}\nstatus: {:?}\nstdout:\n{}\nstderr:\n{}\n",
            self.cmdline, self.status, self.stdout, self.stderr
        )
    }

    /// Asserts exit code `code`; returns self for chaining.
    pub fn code(self, code: i32) -> Output {
        assert_eq!(
            self.status.code(),
            Some(code),
            "unexpected exit status\n{}",
            self.dump()
        );
        self
    }

    /// Asserts success.
    pub fn ok(self) -> Output {
        self.code(0)
    }

    /// Asserts stderr contains `needle`.
    pub fn stderr_has(self, needle: &str) -> Output {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{}",
            self.dump()
        );
        self
    }

    /// Asserts stdout contains `needle`.
    pub fn stdout_has(self, needle: &str) -> Output {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{}",
            self.dump()
        );
        self
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lines().map(str::to_string).collect()
    }
}

/// Waits until `check` returns `Some`, polling every 20 ms up to the
/// deadline; panics with `what` and `context()` if it never does.
pub fn wait_until<T>(
    what: &str,
    mut check: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}\n{}", context());
        }
        // Poll period while waiting for the condition, bounded by the deadline.
        thread::sleep(Duration::from_millis(20)); // poll until the deadline
    }
}

/// Deterministic pseudo-random bytes (for test files without a rand crate).
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes a file of `len` pseudo-random bytes in 1 MiB pieces.
pub fn write_random_file(path: &Path, len: u64, seed: u64) {
    let mut f = std::io::BufWriter::new(fs::File::create(path).expect("create"));
    let mut left = len;
    let mut s = seed;
    while left > 0 {
        let n = left.min(1 << 20) as usize;
        f.write_all(&pseudo_random_bytes(n, s)).expect("write");
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        left -= n as u64;
    }
    f.flush().expect("flush");
}

/// A queue of raw bytes sent to a TCP address, for bad-input tests.
pub struct RawClient {
    pub stream: std::net::TcpStream,
}

impl RawClient {
    pub fn connect(addr: &str) -> RawClient {
        let stream =
            std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.set_write_timeout(Some(DEADLINE)).unwrap();
        RawClient { stream }
    }

    pub fn send(&mut self, bytes: &[u8]) -> &mut Self {
        // The peer may close early on bad input; that is what some tests check.
        let _ = self.stream.write_all(bytes);
        self
    }

    /// Reads until the peer closes (or the deadline); returns what came.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = self.stream.read_to_end(&mut out);
        out
    }
}

/// Descriptors and threads a process holds now, read from /proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub fds: usize,
    pub threads: usize,
}

pub fn usage(pid: u32) -> Usage {
    let count = |what: &str| {
        fs::read_dir(format!("/proc/{pid}/{what}"))
            .map(|d| d.count())
            .unwrap_or_else(|e| panic!("/proc/{pid}/{what}: {e}"))
    };
    Usage {
        fds: count("fd"),
        threads: count("task"),
    }
}

/// Waits until the process is back to `baseline` descriptors and threads.
pub fn wait_for_baseline(p: &Proc, baseline: Usage, what: &str) {
    wait_until(
        &format!("{what}: fds and threads back to {baseline:?}"),
        || {
            let now = usage(p.pid());
            (now.fds <= baseline.fds && now.threads <= baseline.threads).then_some(())
        },
        || format!("now {:?}\n{}", usage(p.pid()), p.dump()),
    );
}

/// Number of attackers in each exhaustion attack.
pub const ATTACKERS: usize = 300;

/// How long a real client may wait for an answer while a daemon is under
/// attack. The probe's own socket timeouts are set to it, so a locked-out
/// daemon fails the probe, it does not just slow the test.
pub const SERVED_WITHIN: Duration = Duration::from_secs(2);

/// `n` connections that stay silent until dropped.
pub fn idle_sockets(addr: &str, n: usize) -> Vec<std::net::TcpStream> {
    (0..n)
        .map(|_| std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}")))
        .collect()
}

/// `n` connections that each send `first`, then one byte a second (the
/// byte `fill`) until dropped: never a whole request, always a little
/// progress. The pace is the attack's definition: the thread waits for the
/// stop signal with a one-second timeout between rounds.
pub struct Trickle {
    stop: Option<mpsc::Sender<()>>,
    rounds: Arc<(Mutex<u64>, Condvar)>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Trickle {
    pub fn start(addr: &str, n: usize, fill: u8) -> Trickle {
        Trickle::after(addr, n, &[], fill)
    }

    pub fn after(addr: &str, n: usize, first: &[u8], fill: u8) -> Trickle {
        let socks = idle_sockets(addr, n);
        for mut s in &socks {
            if !first.is_empty() {
                s.write_all(first).unwrap();
            }
            s.set_nonblocking(true).unwrap();
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let rounds = Arc::new((Mutex::new(0u64), Condvar::new()));
        let counter = rounds.clone();
        let thread = thread::spawn(move || {
            let mut socks = socks;
            loop {
                for s in &mut socks {
                    // A full or closed socket is the daemon's business.
                    let _ = s.write(&[fill]);
                }
                let (count, bumped) = &*counter;
                *count.lock().unwrap() += 1;
                bumped.notify_all();
                match stopped.recv_timeout(Duration::from_secs(1)) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            }
        });
        Trickle {
            stop: Some(stop),
            rounds,
            thread: Some(thread),
        }
    }

    /// Waits (under the deadline) until every attacker has sent `k` bytes
    /// after its prefix.
    pub fn wait_rounds(&self, k: u64) {
        let (count, bumped) = &*self.rounds;
        let deadline = Instant::now() + DEADLINE;
        let mut n = count.lock().unwrap();
        while *n < k {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the trickle never made {k} rounds");
            n = bumped.wait_timeout(n, left).unwrap().0;
        }
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a daemon went through in `exhaustion`, printed for the record.
#[derive(Debug)]
pub struct Exhaustion {
    pub idle_wait: Duration,
    pub trickle_wait: Duration,
    pub peak: Usage,
    pub baseline: Usage,
}

/// The server core's exhaustion checks against one daemon: `ATTACKERS`
/// idle connections, then `ATTACKERS` trickling ones (one byte a second of
/// `fill`), and each time a real client (`probe`, which must use
/// `SERVED_WITHIN` as its socket timeouts and panic if not served) is
/// served. After the attackers close, the daemon's descriptors and threads
/// return to what they were before.
pub fn exhaustion(name: &str, p: &Proc, fill: u8, probe: impl Fn()) -> Exhaustion {
    probe();
    let baseline = usage(p.pid());
    let mut peak = baseline;
    let mut note = |u: Usage| {
        peak.fds = peak.fds.max(u.fds);
        peak.threads = peak.threads.max(u.threads);
    };

    let idle = idle_sockets(&p.addr, ATTACKERS);
    note(usage(p.pid()));
    let started = Instant::now();
    probe();
    let idle_wait = started.elapsed();
    note(usage(p.pid()));
    drop(idle);
    wait_for_baseline(p, baseline, &format!("{name} after idle connections"));

    let trickle = Trickle::start(&p.addr, ATTACKERS, fill);
    // Every attacker has sent a few bytes: the attack is under way.
    trickle.wait_rounds(3);
    note(usage(p.pid()));
    let started = Instant::now();
    probe();
    let trickle_wait = started.elapsed();
    note(usage(p.pid()));
    drop(trickle);
    wait_for_baseline(p, baseline, &format!("{name} after trickling connections"));
    probe();

    let report = Exhaustion {
        idle_wait,
        trickle_wait,
        peak,
        baseline,
    };
    eprintln!(
        "exhaustion {name}: real client waited {:?} (idle attack), {:?} (trickle attack); \
         fds {} -> peak {}, threads {} -> peak {}",
        report.idle_wait,
        report.trickle_wait,
        report.baseline.fds,
        report.peak.fds,
        report.baseline.threads,
        report.peak.threads
    );
    report
}

/// The hostile-input battery for a daemon speaking one of our framed
/// protocols: garbage instead of a handshake, then after a good handshake
/// an unknown request variant and an empty frame (each answered with the
/// protocol's typed error, the connection still open), and an oversized
/// length prefix (answered, then closed). `error_text` pulls the message
/// out of an error reply (`None`: not an error reply). Returns the replies
/// in that order: refusal, unknown, empty, oversized.
pub fn framed_battery(
    addr: &str,
    protocol: peerkit::frame::Protocol,
    error_text: impl Fn(&[u8]) -> Option<String>,
) -> Vec<String> {
    use peerkit::frame::{self, Conn, HelloReply};
    let mut replies = Vec::new();

    let mut raw = RawClient::connect(addr);
    raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let reply = raw.read_to_close();
    match frame::read_frame::<_, HelloReply>(&mut &reply[..]) {
        Ok(Some(HelloReply::Refused { reason })) => replies.push(reason),
        other => panic!("{addr}: garbage handshake answered {other:?}"),
    }

    let timeouts = peerkit::net::Timeouts::secs(60);
    let mut conn = Conn::open(addr, &timeouts, protocol).unwrap();
    let next_error = |conn: &mut Conn| {
        let payload = frame::read_payload(conn.reader(), frame::MAX_FRAME_LEN)
            .unwrap_or_else(|e| panic!("{addr}: no reply: {e}"))
            .unwrap_or_else(|| panic!("{addr}: closed instead of replying"));
        error_text(&payload).unwrap_or_else(|| panic!("{addr}: not an error reply: {payload:?}"))
    };
    // An unknown variant, then an empty frame: each a typed error.
    conn.writer().write_all(&[0, 0, 0, 2, 0xfe, 0x7f]).unwrap();
    conn.writer().write_all(&[0, 0, 0, 0]).unwrap();
    conn.flush().unwrap();
    replies.push(next_error(&mut conn));
    replies.push(next_error(&mut conn));
    // Oversized: answered, then the connection ends.
    conn.writer()
        .write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3])
        .unwrap();
    conn.flush().unwrap();
    replies.push(next_error(&mut conn));
    assert!(
        matches!(frame::read_payload(conn.reader(), 16), Ok(None) | Err(_)),
        "{addr}: still open after an oversized frame"
    );
    for r in &replies[1..] {
        assert!(r.starts_with("invalid request"), "{addr}: {replies:?}");
    }
    assert!(replies[3].contains("exceeds"), "{addr}: {replies:?}");
    replies
}

/// GET `path` from a live view at `view` (`http://HOST:PORT/`, as its
/// `view on` line gives it): the status line and the body.
pub fn view_get(view: &str, path: &str) -> (String, String) {
    let addr = view.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the view");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    let (head, body) = all.split_once("\r\n\r\n").expect("an HTTP reply");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The value of the sample `name` (labels included) in a metrics text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
