//! The peer (`nap-peer`): the course's `c> ` shell over the directory
//! protocol, the listener that serves this peer's published files to other
//! peers, and GET_FILE.
//!
//! Commands come one per line from a terminal (with the `c> ` prompt) or a
//! pipe (without it); the first word is the command, in any case. A name
//! with spaces can be written in double quotes; PUBLISH's description is the
//! rest of the line. Each command prints the course's message for its
//! result, or `<OP> FAIL` when the server cannot be reached.
//!
//! The operations that act as "the user" (PUBLISH, DELETE, LIST_USERS,
//! LIST_CONTENT, GET_FILE) use the user connected from this peer, or else
//! the last user named in a REGISTER or CONNECT, so that publishing before
//! connecting gets the server's own answer.
//!
//! CONNECT starts the listener (on the server core, one thread per
//! download) and sends its port with the address of our side of the
//! connection to the server; DISCONNECT and QUIT (or the end of input) stop
//! it. The listener serves any regular, non-hidden file of the share folder
//! by plain name, as the course's client serves its folder; PUBLISH lists
//! only such files.

use std::io::{BufReader, IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod files;
mod view;

pub use files::{Fetch, Fetched, fetch_file};
use files::{Listener, Published};
pub use view::serve_view;

use super::time_service;
use super::wire::{self, Answer, Body, DateTime, Field, GetFile, Op, Refusal, Request};
use crate::error::Result;
use crate::input::{Input, Line};
use crate::log::Level;
use crate::name::FileName;
use crate::net::{self, Timeouts};
use crate::shutdown::Shutdown;

/// How long a listener waits for the date-time field after the file name
/// before answering without it (some clients never send one).
pub const DATETIME_GRACE: Duration = Duration::from_millis(500);

/// What the peer runs with.
#[derive(Debug, Clone)]
pub struct Options {
    /// The directory server's host.
    pub server: String,
    pub port: u16,
    /// The folder published files are served from.
    pub share: PathBuf,
    /// The date-time service (`http://HOST:PORT/`); none: the local clock.
    pub time_url: Option<String>,
    /// The listener's interface address.
    pub listen_ip: IpAddr,
    pub timeouts: Timeouts,
    /// `--force`: GET_FILE may replace an existing local file.
    pub force: bool,
    /// `-q` silences the success line and progress of GET_FILE on a terminal.
    pub level: Level,
}

/// The course's message for `op`'s result `code`.
pub fn message(op: Op, code: u8) -> &'static str {
    use Refusal::*;
    match (op, Refusal::from_code(op, code)) {
        (Op::Register, None) => "REGISTER OK",
        (Op::Register, Some(NameInUse)) => "USERNAME IN USE",
        (Op::Register, _) => "REGISTER FAIL",
        (Op::Unregister, None) => "UNREGISTER OK",
        (Op::Unregister, Some(NoSuchUser)) => "USER DOES NOT EXIST",
        (Op::Unregister, _) => "UNREGISTER FAIL",
        (Op::Connect, None) => "CONNECT OK",
        (Op::Connect, Some(NoSuchUser)) => "CONNECT FAIL, USER DOES NOT EXIST",
        (Op::Connect, Some(AlreadyConnected)) => "USER ALREADY CONNECTED",
        (Op::Connect, _) => "CONNECT FAIL",
        (Op::Publish, None) => "PUBLISH OK",
        (Op::Publish, Some(NoSuchUser)) => "PUBLISH FAIL, USER DOES NOT EXIST",
        (Op::Publish, Some(NotConnected)) => "PUBLISH FAIL, USER NOT CONNECTED",
        (Op::Publish, Some(AlreadyPublished)) => "PUBLISH FAIL, CONTENT ALREADY PUBLISHED",
        (Op::Publish, _) => "PUBLISH FAIL",
        (Op::Delete, None) => "DELETE OK",
        (Op::Delete, Some(NoSuchUser)) => "DELETE FAIL, USER DOES NOT EXIST",
        (Op::Delete, Some(NotConnected)) => "DELETE FAIL, USER NOT CONNECTED",
        (Op::Delete, Some(NotPublished)) => "DELETE FAIL, CONTENT NOT PUBLISHED",
        (Op::Delete, _) => "DELETE FAIL",
        (Op::ListUsers, None) => "LIST_USERS OK",
        (Op::ListUsers, Some(NoSuchUser)) => "LIST_USERS FAIL, USER DOES NOT EXIST",
        (Op::ListUsers, Some(NotConnected)) => "LIST_USERS FAIL, USER NOT CONNECTED",
        (Op::ListUsers, _) => "LIST_USERS FAIL",
        (Op::ListContent, None) => "LIST_CONTENT OK",
        (Op::ListContent, Some(NoSuchUser)) => "LIST_CONTENT FAIL, USER DOES NOT EXIST",
        (Op::ListContent, Some(NotConnected)) => "LIST_CONTENT FAIL, USER NOT CONNECTED",
        (Op::ListContent, Some(NoSuchRemoteUser)) => {
            "LIST_CONTENT FAIL, REMOTE USER DOES NOT EXIST"
        }
        (Op::ListContent, _) => "LIST_CONTENT FAIL",
        (Op::Disconnect, None) => "DISCONNECT OK",
        (Op::Disconnect, Some(NoSuchUser)) => "DISCONNECT FAIL / USER DOES NOT EXIST",
        (Op::Disconnect, Some(NotConnected)) => "DISCONNECT FAIL / USER NOT CONNECTED",
        (Op::Disconnect, _) => "DISCONNECT FAIL",
    }
}

/// The commands, as HELP prints them.
pub const HELP: &str = "\
commands (case does not matter; quote a name with spaces: \"my file.txt\"):
  REGISTER <userName>          add a user to the directory
  UNREGISTER <userName>        remove a user
  CONNECT <userName>           connect as a user and serve files from --share
  DISCONNECT <userName>        disconnect (stops serving)
  PUBLISH <fileName> <description...>
                               list a file of --share under the connected user
  DELETE <fileName>            unlist a published file
  LIST_USERS                   connected users and their addresses (also: LIST USERS)
  LIST_CONTENT <userName>      a user's published files (also: LIST CONTENT)
  GET_FILE <userName> <remote_fileName> <local_fileName>
                               fetch a file from a user (also: GET FILE)
  HELP                         this list
  QUIT                         disconnect and leave (also: the end of input, Ctrl-C)";

const GET_FILE_OK: &str = "GET_FILE OK";
const GET_FILE_NO_FILE: &str = "GET_FILE FAIL / FILE NOT EXIST";
const GET_FILE_FAIL: &str = "GET_FILE FAIL";

/// One line of input, split into words; `"..."` quotes a word with spaces.
/// Returns the words and, for each, where the rest of the line after it
/// begins.
fn split_words(line: &str) -> Vec<(String, usize)> {
    let mut words = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some(&(_, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        let mut end = line.len();
        if c == '"' {
            chars.next();
            for (i, c) in chars.by_ref() {
                if c == '"' {
                    end = i + 1;
                    break;
                }
                word.push(c);
            }
        } else {
            while let Some(&(i, c)) = chars.peek() {
                if c.is_whitespace() {
                    end = i;
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push((word, end));
    }
    words
}

/// How a shell session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// QUIT or the end of the input.
    Quit,
    /// Ctrl-C at the prompt, or Ctrl-C / SIGTERM at any time: the user was
    /// disconnected and temporary files removed all the same.
    Interrupted,
}

/// The shell's state.
pub struct Peer<W: Write> {
    opts: Options,
    out: W,
    /// The user connected from this peer.
    connected: Option<String>,
    /// The last user named in a REGISTER or CONNECT.
    named: Option<String>,
    listener: Option<Listener>,
    /// What this peer published (the view lists it).
    published: Published,
    /// The date-time service failed once already (said once).
    time_failed: bool,
    /// Ctrl-C / SIGTERM: cuts a GET_FILE short and ends the shell.
    signals: Arc<Shutdown>,
    /// Commands whose operation failed, and all operations run.
    failed: usize,
    ran: usize,
}

impl<W: Write> Peer<W> {
    /// A shell stopped by `signals` (the process's flag, or one of its own).
    pub fn new(opts: Options, out: W, signals: Arc<Shutdown>) -> Peer<W> {
        Peer {
            opts,
            out,
            connected: None,
            named: None,
            listener: None,
            published: Arc::default(),
            time_failed: false,
            signals,
            failed: 0,
            ran: 0,
        }
    }

    /// How many operations ran, and how many of them failed.
    pub fn tally(&self) -> (usize, usize) {
        (self.ran, self.failed)
    }

    /// Runs the shell on `input` until QUIT, its end, or an interruption;
    /// each way out disconnects the connected user first.
    pub fn run(&mut self, input: &mut Input) -> Result<Ended> {
        loop {
            let ended = match input.next("c> ") {
                Line::Text(line) => {
                    if !self.command(&line)? {
                        return Ok(Ended::Quit);
                    }
                    if !self.signals.is_triggered() {
                        continue;
                    }
                    Ended::Interrupted
                }
                Line::End => Ended::Quit,
                Line::Interrupted => Ended::Interrupted,
            };
            if input.is_terminal() {
                writeln!(self.out)?;
            }
            self.quit()?;
            return Ok(ended);
        }
    }

    fn say(&mut self, text: &str) -> Result<()> {
        writeln!(self.out, "{text}")?;
        self.out.flush()?;
        Ok(())
    }

    /// Prints an operation's result message and counts it.
    fn result(&mut self, text: &str) -> Result<()> {
        self.ran += 1;
        if !text.ends_with(" OK") {
            self.failed += 1;
        }
        self.say(text)
    }

    /// The result of `op` as the server answered it (`code`), or as it
    /// failed to (`None`, already explained on stderr). A bare failure
    /// code says on stderr that the server gave no reason.
    fn answered(&mut self, op: Op, code: Option<u8>) -> Result<()> {
        if let Some(code) = code
            && matches!(Refusal::from_code(op, code), Some(Refusal::Failed))
        {
            crate::diag!("{op}: the server answered {code} (a failure, with no reason given)");
        }
        self.result(message(op, code.unwrap_or(u8::MAX)))
    }

    /// Runs one command line; false after QUIT.
    pub fn command(&mut self, line: &str) -> Result<bool> {
        let words = split_words(line);
        let Some((first, _)) = words.first() else {
            return Ok(true);
        };
        let mut cmd = first.to_ascii_uppercase();
        let mut words = &words[..];
        // The course's spaced forms: LIST USERS, LIST CONTENT, GET FILE.
        if let Some((second, _)) = words.get(1) {
            let joined = format!("{cmd}_{}", second.to_ascii_uppercase());
            if matches!(joined.as_str(), "LIST_USERS" | "LIST_CONTENT" | "GET_FILE") {
                cmd = joined;
                words = &words[1..];
            }
        }
        let args: Vec<&str> = words[1..].iter().map(|(w, _)| w.as_str()).collect();
        let usage = match (cmd.as_str(), args.len()) {
            ("HELP", _) => {
                self.say(HELP)?;
                return Ok(true);
            }
            ("REGISTER", 1) => return self.simple(Op::Register, args[0]).map(|()| true),
            ("UNREGISTER", 1) => return self.simple(Op::Unregister, args[0]).map(|()| true),
            ("CONNECT", 1) => return self.connect(args[0]).map(|()| true),
            ("DISCONNECT", 1) => return self.disconnect(args[0]).map(|()| true),
            ("PUBLISH", n) if n >= 2 => {
                let after_name = words[1].1;
                let description = line.get(after_name..).unwrap_or("").trim();
                return self.publish(args[0], description).map(|()| true);
            }
            ("DELETE", 1) => return self.delete(args[0]).map(|()| true),
            ("LIST_USERS", 0) => return self.list_users().map(|()| true),
            ("LIST_CONTENT", 1) => return self.list_content(args[0]).map(|()| true),
            ("GET_FILE", 3) => return self.get_file(args[0], args[1], args[2]).map(|()| true),
            ("QUIT", 0) => {
                self.quit()?;
                return Ok(false);
            }
            ("REGISTER", _) => "REGISTER <userName>",
            ("UNREGISTER", _) => "UNREGISTER <userName>",
            ("CONNECT", _) => "CONNECT <userName>",
            ("DISCONNECT", _) => "DISCONNECT <userName>",
            ("PUBLISH", _) => "PUBLISH <fileName> <description>",
            ("DELETE", _) => "DELETE <fileName>",
            ("LIST_USERS", _) => "LIST_USERS",
            ("LIST_CONTENT", _) => "LIST_CONTENT <userName>",
            ("GET_FILE", _) => "GET_FILE <userName> <remote_fileName> <local_fileName>",
            ("QUIT", _) => "QUIT",
            _ => {
                let text = format!("Error: command {first} not valid.");
                self.say(&text)?;
                if self.opts.level > Level::Quiet {
                    crate::diag!("HELP lists the commands");
                }
                return Ok(true);
            }
        };
        self.say(&format!("Syntax error. Usage: {usage}"))?;
        Ok(true)
    }

    /// The user the user-acting operations speak for.
    fn acting(&self) -> &str {
        self.connected
            .as_deref()
            .or(self.named.as_deref())
            .unwrap_or("")
    }

    fn now(&mut self) -> DateTime {
        let Some(url) = self.opts.time_url.clone() else {
            return DateTime::now();
        };
        match time_service::fetch(&url, &self.opts.timeouts) {
            Ok(dt) => {
                self.time_failed = false;
                dt
            }
            Err(e) => {
                if !self.time_failed {
                    crate::diag!("date-time service: {e}; using the local clock");
                    self.time_failed = true;
                }
                DateTime::now()
            }
        }
    }

    /// Sends `body` as `user` and reads the answer. `None`: the server could
    /// not be reached or answered nonsense (said on stderr).
    fn ask(&mut self, user: &str, body: Body) -> Option<Answer> {
        let op = body.op();
        let user = match Field::new(user) {
            Ok(u) => u,
            Err(e) => {
                crate::diag!("{op}: user name: {e}");
                return None;
            }
        };
        let req = Request {
            datetime: Some(self.now()),
            user,
            body,
        };
        let addr = net::host_port(&self.opts.server, self.opts.port);
        let exchange = || -> Result<Answer> {
            let stream = net::connect(&addr, &self.opts.timeouts)?;
            (&stream).write_all(&req.encode())?;
            wire::read_answer(&mut BufReader::new(&stream), op)
        };
        match exchange() {
            Ok(a) => Some(a),
            Err(e) => {
                crate::diag!("{op}: server {addr}: {e}");
                None
            }
        }
    }

    /// REGISTER and UNREGISTER.
    fn simple(&mut self, op: Op, user: &str) -> Result<()> {
        let body = if op == Op::Register {
            Body::Register
        } else {
            Body::Unregister
        };
        if op == Op::Register {
            self.named = Some(user.to_string());
        }
        let code = self.ask(user, body).map(|a| a.code());
        if op == Op::Unregister && code == Some(0) {
            if self.connected.as_deref() == Some(user) {
                self.connected = None;
                self.stop_listener();
            }
            if self.named.as_deref() == Some(user) {
                self.named = None;
            }
        }
        self.answered(op, code)
    }

    fn connect(&mut self, user: &str) -> Result<()> {
        self.named = Some(user.to_string());
        let started = self.listener.is_none();
        if started {
            match Listener::start(&self.opts, self.published.clone()) {
                Ok(l) => self.listener = Some(l),
                Err(e) => {
                    crate::diag!("CONNECT: {e}");
                    return self.answered(Op::Connect, None);
                }
            }
        }
        let port = self.listener.as_ref().map_or(0, |l| l.port);
        // Our own address towards the server, not 0.0.0.0: other servers
        // of the course's protocol may not read 0.0.0.0 as "this connection's".
        let ip = self.local_ip_towards_server();
        let body = Body::Connect {
            ip: Field::new(ip.to_string()).unwrap_or_default(),
            port: Field::new(port.to_string()).unwrap_or_default(),
        };
        let code = self.ask(user, body).map(|a| a.code());
        if code == Some(0) {
            self.connected = Some(user.to_string());
        } else if started && self.connected.is_none() {
            self.stop_listener();
        }
        self.answered(Op::Connect, code)
    }

    /// The address of our side of a connection to the server (what we
    /// tell the server to give other peers); unspecified if unknown.
    fn local_ip_towards_server(&self) -> IpAddr {
        if !self.opts.listen_ip.is_unspecified() {
            return self.opts.listen_ip;
        }
        route_ip(&self.opts)
    }

    fn disconnect(&mut self, user: &str) -> Result<()> {
        let code = self.ask(user, Body::Disconnect).map(|a| a.code());
        if code == Some(0) && self.connected.as_deref() == Some(user) {
            self.connected = None;
            self.stop_listener();
        }
        self.answered(Op::Disconnect, code)
    }

    fn stop_listener(&mut self) {
        if let Some(l) = self.listener.take() {
            l.stop();
        }
    }

    fn publish(&mut self, file: &str, description: &str) -> Result<()> {
        let Ok(name) = FileName::new(file) else {
            crate::diag!("PUBLISH: {file:?} is not a plain file name");
            return self.answered(Op::Publish, None);
        };
        let (Ok(file_f), Ok(description)) = (Field::new(file), Field::new(description)) else {
            crate::diag!("PUBLISH: a field is over {} bytes", wire::MAX_FIELD);
            return self.answered(Op::Publish, None);
        };
        // Only what this peer can serve: a regular, non-hidden file of --share.
        if let Err(why) = files::servable(&self.opts.share, name.as_str()) {
            crate::diag!("PUBLISH: {file}: {why}");
            return self.answered(Op::Publish, None);
        }
        let user = self.acting().to_string();
        let body = Body::Publish {
            file: file_f,
            description,
        };
        let code = self.ask(&user, body).map(|a| a.code());
        if code == Some(0) {
            lock(&self.published).insert(name);
        }
        self.answered(Op::Publish, code)
    }

    fn delete(&mut self, file: &str) -> Result<()> {
        let Ok(file_f) = Field::new(file) else {
            crate::diag!("DELETE: the name is over {} bytes", wire::MAX_FIELD);
            return self.answered(Op::Delete, None);
        };
        let user = self.acting().to_string();
        let code = self
            .ask(&user, Body::Delete { file: file_f })
            .map(|a| a.code());
        if code == Some(0)
            && let Ok(name) = FileName::new(file)
        {
            lock(&self.published).remove(&name);
        }
        self.answered(Op::Delete, code)
    }

    fn list_users(&mut self) -> Result<()> {
        let user = self.acting().to_string();
        match self.ask(&user, Body::ListUsers) {
            Some(Answer::Users(users)) => {
                self.result(message(Op::ListUsers, 0))?;
                for u in users {
                    self.say(&format!("{} {} {}", u.user, u.ip, u.port))?;
                }
                Ok(())
            }
            other => self.answered(Op::ListUsers, other.map(|a| a.code())),
        }
    }

    fn list_content(&mut self, remote: &str) -> Result<()> {
        let Ok(remote) = Field::new(remote) else {
            crate::diag!(
                "LIST_CONTENT: the user name is over {} bytes",
                wire::MAX_FIELD
            );
            return self.answered(Op::ListContent, None);
        };
        let user = self.acting().to_string();
        match self.ask(&user, Body::ListContent { remote }) {
            Some(Answer::Content(files)) => {
                self.result(message(Op::ListContent, 0))?;
                for f in files {
                    self.say(&format!("{} {}", f.file, f.description))?;
                }
                Ok(())
            }
            other => self.answered(Op::ListContent, other.map(|a| a.code())),
        }
    }

    /// Finds `owner`'s address with LIST_USERS, then fetches `remote` from it
    /// into `local` through a temporary file renamed only when complete.
    /// An existing `local` is replaced only with `--force`.
    fn get_file(&mut self, owner: &str, remote: &str, local: &str) -> Result<()> {
        let Ok(remote) = Field::new(remote) else {
            crate::diag!("GET_FILE: the file name is over {} bytes", wire::MAX_FIELD);
            return self.result(GET_FILE_FAIL);
        };
        let local = Path::new(local);
        if !self.opts.force && std::fs::symlink_metadata(local).is_ok() {
            crate::diag!(
                "GET_FILE: {}: already exists (start nap-peer with --force to replace it)",
                local.display()
            );
            return self.result(GET_FILE_FAIL);
        }
        let user = self.acting().to_string();
        let users = match self.ask(&user, Body::ListUsers) {
            Some(Answer::Users(users)) => users,
            Some(other) => {
                crate::diag!(
                    "GET_FILE: finding {owner}: the server answered {}",
                    message(Op::ListUsers, other.code())
                );
                return self.result(GET_FILE_FAIL);
            }
            None => return self.result(GET_FILE_FAIL),
        };
        let Some(entry) = users.iter().find(|u| u.user.as_str() == owner) else {
            crate::diag!("GET_FILE: {owner} is not connected");
            return self.result(GET_FILE_FAIL);
        };
        let addr = net::host_port(entry.ip.as_str(), entry.port.as_str().parse().unwrap_or(0));
        let req = GetFile {
            file: remote.clone(),
            datetime: Some(self.now()),
        };
        let bar = if self.opts.level > Level::Quiet {
            crate::output::byte_counter(&format!("{remote} from {owner}"))
        } else {
            indicatif::ProgressBar::hidden()
        };
        let started = std::time::Instant::now();
        let how = Fetch {
            timeouts: &self.opts.timeouts,
            stop: &self.signals,
            replace: self.opts.force,
            progress: &bar,
        };
        let fetched = fetch_file(&addr, &req, local, &how);
        bar.finish_and_clear();
        let text = match fetched {
            Ok(Fetched::Done(size)) => {
                if self.opts.level > Level::Quiet && std::io::stderr().is_terminal() {
                    let secs = started.elapsed().as_secs_f64();
                    crate::diag!(
                        "got {remote} from {owner} ({addr}) into {}: {size} bytes in {secs:.1} s",
                        local.display()
                    );
                }
                GET_FILE_OK
            }
            Ok(Fetched::NoFile) => GET_FILE_NO_FILE,
            Ok(Fetched::Failed(code)) => {
                crate::diag!("GET_FILE: {owner} at {addr} answered {code}");
                GET_FILE_FAIL
            }
            Ok(Fetched::Exists) => {
                crate::diag!(
                    "GET_FILE: {}: already exists (start nap-peer with --force to replace it)",
                    local.display()
                );
                GET_FILE_FAIL
            }
            Err(e) => {
                crate::diag!("GET_FILE: {owner} at {addr}: {e}");
                GET_FILE_FAIL
            }
        };
        self.result(text)
    }

    /// QUIT: disconnects the connected user and stops the listener.
    fn quit(&mut self) -> Result<()> {
        if let Some(user) = self.connected.clone() {
            self.disconnect(&user)?;
        }
        self.stop_listener();
        Ok(())
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The address of this host the route to the server leaves from (what the
/// server sees our connections come from); unspecified if unknown.
fn route_ip(opts: &Options) -> IpAddr {
    use std::net::ToSocketAddrs;
    let addr = net::host_port(&opts.server, opts.port);
    let target: Option<SocketAddr> = addr.to_socket_addrs().ok().and_then(|mut a| a.next());
    // A UDP "connection" picks the route without sending anything.
    target
        .and_then(|t| {
            let bind = if t.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let s = std::net::UdpSocket::bind(bind).ok()?;
            s.connect(t).ok()?;
            s.local_addr().ok().map(|a| a.ip())
        })
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// What a shell session came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub ended: Ended,
    /// Operations run, and how many of them failed.
    pub ran: usize,
    pub failed: usize,
    /// The commands came from a terminal.
    pub terminal: bool,
}

/// Runs the shell on stdin (line editing, history and the prompt only on
/// a terminal) until QUIT, the end of input or Ctrl-C / SIGTERM, printing
/// the course's messages on `out`.
pub fn run(opts: Options, out: impl Write) -> Result<Summary> {
    if let Some(why) = net::unreachable_listen(SocketAddr::new(opts.listen_ip, 0), route_ip(&opts))
    {
        crate::diag!("warning: file listener {why} (use --listen-ip 0.0.0.0)");
    }
    let signals = Shutdown::install()?;
    let mut input = Input::stdin("nap-peer", &signals);
    let _say = signals.subscribe(|| {
        crate::diag!("interrupted: disconnecting and tidying up (Ctrl-C again quits at once)")
    });
    let mut peer = Peer::new(opts, out, signals.clone());
    let ended = peer.run(&mut input)?;
    let (ran, failed) = peer.tally();
    Ok(Summary {
        ended,
        ran,
        failed,
        terminal: input.is_terminal(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_on_spaces_and_quotes() {
        let w: Vec<String> = split_words(r#"  GET_FILE ana "my notes.txt" out"#)
            .into_iter()
            .map(|(w, _)| w)
            .collect();
        assert_eq!(w, ["GET_FILE", "ana", "my notes.txt", "out"]);
        let line = "PUBLISH a.txt  the  description ";
        let words = split_words(line);
        assert_eq!(line[words[1].1..].trim(), "the  description");
    }

    #[test]
    fn every_result_has_the_course_message() {
        assert_eq!(message(Op::Register, 1), "USERNAME IN USE");
        assert_eq!(message(Op::Connect, 1), "CONNECT FAIL, USER DOES NOT EXIST");
        assert_eq!(
            message(Op::Disconnect, 2),
            "DISCONNECT FAIL / USER NOT CONNECTED"
        );
        for op in Op::ALL {
            assert_eq!(message(op, 0), format!("{op} OK"));
            assert_eq!(message(op, op.fail_code()), format!("{op} FAIL"));
            assert_eq!(message(op, u8::MAX), format!("{op} FAIL"));
        }
    }

    fn peer_to_nowhere() -> Peer<Vec<u8>> {
        // A port nothing listens on: bind, note it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Peer::new(
            Options {
                server: "127.0.0.1".into(),
                port,
                share: PathBuf::from("."),
                time_url: None,
                listen_ip: "127.0.0.1".parse().unwrap(),
                timeouts: Timeouts::secs(2),
                force: false,
                level: Level::Normal,
            },
            Vec::new(),
            Shutdown::new(),
        )
    }

    #[test]
    fn every_operation_fails_plainly_with_the_server_down() {
        let mut p = peer_to_nowhere();
        let input = "REGISTER ana\nUNREGISTER ana\nCONNECT ana\nPUBLISH a.txt d\nDELETE a.txt\n\
                     LIST_USERS\nLIST_CONTENT ana\nDISCONNECT ana\nGET_FILE ana a b\nbogus\nQUIT\n";
        let mut input = Input::reader(std::io::Cursor::new(input), &Shutdown::new());
        assert_eq!(p.run(&mut input).unwrap(), Ended::Quit);
        let out = String::from_utf8(p.out.clone()).unwrap();
        assert_eq!(
            out,
            "REGISTER FAIL\nUNREGISTER FAIL\nCONNECT FAIL\nPUBLISH FAIL\nDELETE FAIL\n\
             LIST_USERS FAIL\nLIST_CONTENT FAIL\nDISCONNECT FAIL\nGET_FILE FAIL\n\
             Error: command bogus not valid.\n"
        );
        assert!(p.listener.is_none(), "a failed CONNECT stops its listener");
    }
}
