//! The client (`kv-query`): one link to a servent for requests, a listening
//! socket for the answers servents send straight back, and the shell's
//! commands. The program body (one-shot, shell, pipeline) is in `cmd`.

use std::fmt;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread;
use std::time::{Duration, Instant};

use super::wire::{self, Message, Text};
use crate::error::{Error, Result, ResultExt, Stage};
use crate::log::Level;
use crate::net::{self, Timeouts};
use crate::server::{Limits, Server, Session};
use crate::shutdown::Shutdown;

/// Answer connections handled at once.
const MAX_ANSWER_CONNS: usize = 64;

/// The shell's commands, as `help` prints them.
pub(super) const HELP: &str = "\
commands:
  ?KEY    look KEY up; every servent holding it answers (spaces after ? allowed)
  T       ask for the topology; every servent reached answers its path
  help    this list (also: ? alone)
  Q       quit (also: the end of the input)
each answer is printed as `<value> <ip>:<port>`";

/// How a client runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// `IP:PORT` of the servent to ask.
    pub servent: String,
    /// Port to listen on for answers; 0 picks a free one.
    pub local_port: u16,
    /// Quiet time that ends a wait with a query still unanswered.
    pub wait: Duration,
    /// Quiet time that ends a wait once every query has an answer.
    pub settle: Duration,
    pub timeouts: Timeouts,
    /// `-v`: a line on stderr per query sent, per wait ended, per reconnect.
    pub level: Level,
}

/// One shell command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Command {
    /// `?key`: look a key up.
    Key(Text),
    /// `T`: ask for the topology.
    Topo,
    /// `help` or `?` alone: list the commands.
    Help,
    /// `Q`: leave the shell.
    Quit,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Key(k) => write!(f, "?{k}"),
            Command::Topo => f.write_str("T"),
            Command::Help => f.write_str("help"),
            Command::Quit => f.write_str("Q"),
        }
    }
}

/// A line that is not a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CommandError {
    /// Not a command; the line as typed.
    Unknown(String),
    /// `?` followed by a key that cannot be sent.
    BadKey(String),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Unknown(line) => {
                write!(f, "unknown command {line:?} (help lists the commands)")
            }
            CommandError::BadKey(why) => write!(f, "bad key: {why}"),
        }
    }
}

impl std::error::Error for CommandError {}

/// Parses one command line; `Ok(None)` for a blank line.
///
/// `?key` (spaces after `?` allowed), `T`, `help` or `?` alone, `Q`;
/// surrounding whitespace is ignored.
pub(super) fn parse_command(line: &str) -> std::result::Result<Option<Command>, CommandError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    if let Some(rest) = line.strip_prefix('?') {
        let key = rest.trim_start();
        if key.is_empty() {
            return Ok(Some(Command::Help));
        }
        return Text::new(key)
            .map(|k| Some(Command::Key(k)))
            .map_err(|e| CommandError::BadKey(e.to_string()));
    }
    match line {
        "T" => Ok(Some(Command::Topo)),
        "Q" => Ok(Some(Command::Quit)),
        "help" => Ok(Some(Command::Help)),
        _ => Err(CommandError::Unknown(line.to_string())),
    }
}

/// Something that reached the client.
#[derive(Debug)]
enum Event {
    /// A RESP, from the connection whose remote address is `from`.
    Answer {
        seq: u32,
        value: Text,
        from: SocketAddr,
    },
    /// A well-formed message that is not an answer.
    Unexpected { from: SocketAddr, what: String },
    /// Bytes that are not a message.
    Bad { from: SocketAddr, why: String },
    /// The servent closed our link number `link`.
    LinkClosed { link: u64 },
    /// Ctrl-C or SIGTERM came during the wait numbered `waiting`.
    Interrupted { waiting: u64 },
}

/// The link to the servent: requests go out on it, and a servent may
/// answer on it too.
struct Link {
    stream: TcpStream,
    servent: SocketAddr,
    /// Counts the links this client has opened; events name theirs.
    number: u64,
    /// Cleared by the link's reader when the servent closes it.
    open: Arc<AtomicBool>,
    /// The servent's closing was reported.
    reported: bool,
}

impl Link {
    /// Connects to the servent, sends ID with our answer port and starts
    /// the reader that reports what comes on the link.
    fn open(opts: &Options, port: u16, number: u64, tx: &Sender<Event>) -> Result<Link> {
        let stream = net::connect(&opts.servent, &opts.timeouts)?;
        let servent = stream.peer_addr()?;
        (&stream)
            .write_all(&Message::Id { port }.encode())
            .doing(|| "sending ID")?;
        // The link may sit idle between commands; no read timeout on it.
        let reader = stream.try_clone()?;
        reader.set_read_timeout(None)?;
        let open = Arc::new(AtomicBool::new(true));
        let (flag, tx) = (open.clone(), tx.clone());
        thread::Builder::new()
            .name("link".into())
            .spawn(move || read_link(reader, servent, number, &flag, &tx))?;
        Ok(Link {
            stream,
            servent,
            number,
            open,
            reported: false,
        })
    }
}

/// Most answers one query may get: far more than servents in any network
/// this toolkit runs, far fewer than a flood.
pub(crate) const MAX_ANSWERS: usize = 10_000;

/// A client connected to its servent.
pub(super) struct Client {
    opts: Options,
    link: Link,
    /// Where answers come to.
    port: u16,
    seq: u32,
    events: Receiver<Event>,
    stop: Arc<Shutdown>,
    /// Feeds `events`; kept for the signal catcher and new links.
    tx: Sender<Event>,
    /// The process's Ctrl-C / SIGTERM flag, caught during each wait.
    signals: Option<Arc<Shutdown>>,
    /// Counts the waits for answers; a signal names the one it ended.
    waits: u64,
}

impl Client {
    /// Listens for answers, connects to the servent and sends ID.
    pub(super) fn connect(opts: &Options) -> Result<Client> {
        let stop = Shutdown::new();
        let limits = Limits {
            max_conns: MAX_ANSWER_CONNS,
            io: opts.timeouts,
            ..Limits::default()
        };
        let answers = Server::bind(
            &format!("0.0.0.0:{}", opts.local_port),
            limits,
            stop.clone(),
        )?;
        let port = answers.local_addr().port();
        let (tx, events) = channel();
        let link = Link::open(opts, port, 1, &tx)?;
        {
            let tx = tx.clone();
            thread::Builder::new()
                .name("answers".into())
                .spawn(move || {
                    let res = answers.serve(move |session| read_answers(session, &tx));
                    if let Err(e) = res {
                        crate::diag!("answer listener: {e}");
                    }
                })?;
        }
        if opts.level == Level::Verbose {
            crate::diag!(
                "asking {} (ID sent); answers come to port {port}",
                link.servent
            );
        }
        Ok(Client {
            opts: opts.clone(),
            link,
            port,
            // A random start: the servents drop a query whose (address,
            // port, seq) they saw lately, and a new client may get a recent
            // one's port; the wire allows any 32-bit number.
            seq: crate::rng::Rng::new().next_u64() as u32,
            events,
            stop,
            tx,
            signals: None,
            waits: 0,
        })
    }

    /// Lets Ctrl-C (SIGINT) and SIGTERM end each wait for answers early,
    /// as if the quiet time had passed: a one-shot query then ends, a shell
    /// goes on with its next command. Outside a wait a signal stops the
    /// program as usual (`signals` is the process's flag).
    pub(super) fn stop_waiting_on_signal(&mut self, signals: Arc<Shutdown>) {
        self.signals = Some(signals);
    }

    /// A new link when the servent has closed ours (it closes clients idle
    /// longer than its idle timeout), so a shell left alone keeps working.
    fn relink(&mut self) -> Result<()> {
        let number = self.link.number + 1;
        net::close(&self.link.stream);
        self.link = Link::open(&self.opts, self.port, number, &self.tx)
            .doing(|| format!("reconnecting to {}", self.opts.servent))?;
        if self.opts.level == Level::Verbose {
            crate::diag!("the servent had closed the link; reconnected");
        }
        Ok(())
    }

    /// Sends one query and prints its answers as `<value> <ip>:<port>` on
    /// `out` as they come (see [`Client::query_all`] for when it stops);
    /// returns how many came.
    pub(super) fn query(&mut self, cmd: &Command, out: &mut impl Write) -> Result<usize> {
        let counts = self.run_queries(std::slice::from_ref(cmd), out, true)?;
        Ok(counts.first().copied().unwrap_or(0))
    }

    /// Sends every query of `cmds` at once and waits once for all their
    /// answers, then prints them grouped by query, in order; returns how
    /// many answers each query got (`Help` and `Quit` get none).
    ///
    /// The wait ends when every query has an answer and none has come for
    /// the settle time, or when nothing has come for the quiet time
    /// (`wait`), or at Ctrl-C / SIGTERM.
    pub(super) fn query_all(
        &mut self,
        cmds: &[Command],
        out: &mut impl Write,
    ) -> Result<Vec<usize>> {
        self.run_queries(cmds, out, false)
    }

    fn run_queries(
        &mut self,
        cmds: &[Command],
        out: &mut impl Write,
        print_now: bool,
    ) -> Result<Vec<usize>> {
        if self.signals.as_ref().is_some_and(|s| s.is_triggered()) {
            return Err(Error::Stopped("the client".into()));
        }
        // Each query's message and seq, by its place in `cmds`.
        let mut sent: Vec<(usize, u32, Message)> = Vec::new();
        for (i, cmd) in cmds.iter().enumerate() {
            let seq = self.seq;
            let msg = match cmd {
                Command::Key(key) => Message::KeyReq {
                    seq,
                    key: key.clone(),
                },
                Command::Topo => Message::TopoReq { seq },
                Command::Help | Command::Quit => continue,
            };
            self.seq = self.seq.wrapping_add(1);
            sent.push((i, seq, msg));
        }
        let mut counts = vec![0; cmds.len()];
        if sent.is_empty() {
            return Ok(counts);
        }
        if !self.link.open.load(Ordering::SeqCst) {
            self.relink()?;
        }
        // The catcher is in place before the requests leave, so a signal
        // sent once the servent has them always ends this wait.
        self.waits += 1;
        let waiting = self.waits;
        let _catch = self.signals.as_ref().map(|s| {
            let tx = self.tx.clone();
            s.catch(move || {
                let _ = tx.send(Event::Interrupted { waiting });
            })
        });
        let started = Instant::now();
        let mut bytes = Vec::new();
        for (_, _, msg) in &sent {
            bytes.extend_from_slice(&msg.encode());
        }
        if (&self.link.stream).write_all(&bytes).is_err() {
            // Closed under us since the last look: one more try.
            self.relink()?;
            (&self.link.stream)
                .write_all(&bytes)
                .doing(|| format!("sending to {}", self.link.servent))?;
        }
        let seqs: Vec<u32> = sent.iter().map(|(_, seq, _)| *seq).collect();
        let mut answers: Vec<Vec<String>> = vec![Vec::new(); sent.len()];
        self.collect(&seqs, waiting, &mut answers, print_now.then_some(&mut *out))?;
        for (k, (i, seq, _)) in sent.iter().enumerate() {
            counts[*i] = answers[k].len();
            if !print_now {
                for line in &answers[k] {
                    writeln!(out, "{line}")?;
                }
            }
            if self.opts.level == Level::Verbose {
                let n = answers[k].len();
                crate::diag!(
                    "seq {seq}: {}: {n} answer{} in {:.1}s",
                    cmds[*i],
                    if n == 1 { "" } else { "s" },
                    started.elapsed().as_secs_f64()
                );
            }
        }
        out.flush()?;
        Ok(counts)
    }

    /// Gathers the answers to `seqs` (into `answers`, by place; printed at
    /// once on `out` if given) until the wait ends or a signal ends the
    /// wait numbered `waiting`.
    fn collect(
        &mut self,
        seqs: &[u32],
        waiting: u64,
        answers: &mut [Vec<String>],
        mut out: Option<&mut impl Write>,
    ) -> Result<()> {
        let mut last = Instant::now();
        let mut unanswered = seqs.len();
        // A flood of garbage or of stray answers is reported a few lines a
        // second, the rest counted.
        let noise = crate::log::Throttle::new(self.opts.level == Level::Verbose);
        loop {
            let quiet = if unanswered == 0 {
                self.opts.settle.min(self.opts.wait)
            } else {
                self.opts.wait
            };
            let left = (last + quiet).saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.events.recv_timeout(left) {
                Ok(Event::Answer {
                    seq: s,
                    value,
                    from,
                }) if seqs.contains(&s) => {
                    let k = seqs.iter().position(|q| *q == s).unwrap_or(0);
                    let line = format!("{value} {from}");
                    if let Some(out) = out.as_mut() {
                        writeln!(out, "{line}")?;
                        out.flush()?;
                    }
                    if answers[k].is_empty() {
                        unanswered -= 1;
                    }
                    answers[k].push(line);
                    last = Instant::now();
                    // Each servent answers a query once: this many is a
                    // flood that would hold the wait open for ever.
                    if answers[k].len() > MAX_ANSWERS {
                        return Err(Error::invalid(
                            Stage::Reply,
                            format!(
                                "over {MAX_ANSWERS} answers to one query, the last from {from}: \
                                 a flood; giving up"
                            ),
                        ));
                    }
                }
                Ok(Event::Answer { seq: s, from, .. }) => {
                    noise.diag(|| format!("unexpected message from {from} (RESP seq {s})"))
                }
                Ok(Event::Unexpected { from, what }) => {
                    noise.diag(|| format!("unexpected message from {from} ({what})"))
                }
                Ok(Event::Bad { from, why }) => {
                    noise.diag(|| format!("bad message from {from}: {why}"))
                }
                Ok(Event::LinkClosed { link }) => {
                    if link == self.link.number && !self.link.reported {
                        crate::diag!("servent {} closed the connection", self.link.servent);
                        self.link.reported = true;
                    }
                }
                Ok(Event::Interrupted { waiting: w }) if w == waiting => break,
                // Meant for an earlier wait that had already ended.
                Ok(Event::Interrupted { .. }) => {}
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        Ok(())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.trigger();
        net::close(&self.link.stream);
    }
}

/// One incoming answer connection: an optional ID, then RESPs. An ID with
/// a port (`kv-servent --answer-id`) names the servent's listening address:
/// the answers are reported from there rather than from the connection's
/// source port.
fn read_answers(session: Session, tx: &Sender<Event>) {
    let mut peer = session.peer();
    let mut r = BufReader::new(session.stream());
    let mut first = true;
    loop {
        session.request();
        let event = match wire::read_message(&mut r) {
            Ok(None) => break,
            Ok(Some(Message::Id { port })) if first => {
                if port != 0 {
                    peer.set_port(port);
                }
                first = false;
                continue;
            }
            Ok(Some(msg)) => answer_event(msg, peer),
            Err(e) => {
                let _ = tx.send(Event::Bad {
                    from: peer,
                    why: e.to_string(),
                });
                break;
            }
        };
        first = false;
        if tx.send(event).is_err() {
            break;
        }
    }
}

/// A message where an answer is expected: a RESP, or something unexpected.
fn answer_event(msg: Message, from: SocketAddr) -> Event {
    match msg {
        Message::Resp { seq, value } => Event::Answer { seq, value, from },
        other => Event::Unexpected {
            from,
            what: other.name().to_string(),
        },
    }
}

/// The servent link number `link`: a servent may answer on it too; its end
/// clears `open` and is reported.
fn read_link(
    stream: TcpStream,
    servent: SocketAddr,
    link: u64,
    open: &AtomicBool,
    tx: &Sender<Event>,
) {
    let mut r = BufReader::new(stream);
    loop {
        let event = match wire::read_message(&mut r) {
            Ok(None) => None,
            Ok(Some(msg)) => Some(answer_event(msg, servent)),
            Err(e) => {
                let _ = tx.send(Event::Bad {
                    from: servent,
                    why: e.to_string(),
                });
                None
            }
        };
        let Some(event) = event else {
            open.store(false, Ordering::SeqCst);
            let _ = tx.send(Event::LinkClosed { link });
            return;
        };
        if tx.send(event).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Command {
        Command::Key(Text::new(k).unwrap())
    }

    #[test]
    fn commands_parse() {
        assert_eq!(parse_command("?ssh"), Ok(Some(key("ssh"))));
        assert_eq!(parse_command("?   ssh  \n"), Ok(Some(key("ssh"))));
        assert_eq!(parse_command("? two words"), Ok(Some(key("two words"))));
        assert_eq!(parse_command("T\n"), Ok(Some(Command::Topo)));
        assert_eq!(parse_command(" Q "), Ok(Some(Command::Quit)));
        assert_eq!(parse_command("  \n"), Ok(None));
        assert_eq!(parse_command("help"), Ok(Some(Command::Help)));
        assert_eq!(parse_command(" ? \n"), Ok(Some(Command::Help)));
        assert_eq!(key("a b").to_string(), "?a b");
    }

    #[test]
    fn bad_commands_are_reported() {
        let unknown = |s: &str| Err(CommandError::Unknown(s.into()));
        assert_eq!(parse_command("hello"), unknown("hello"));
        assert_eq!(parse_command("t\n"), unknown("t"));
        assert_eq!(parse_command("TQ"), unknown("TQ"));
        assert_eq!(parse_command("Help"), unknown("Help"));
        assert!(matches!(
            parse_command(&format!("?{}", "k".repeat(401))),
            Err(CommandError::BadKey(_))
        ));
        assert_eq!(
            parse_command("bogus").unwrap_err().to_string(),
            "unknown command \"bogus\" (help lists the commands)"
        );
    }
}
