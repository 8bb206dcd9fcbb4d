//! The client (`kv-query`): one link to a servent for requests, a listening
//! socket for the answers servents send straight back, and the one-shot,
//! interactive and pipeline modes over them.

use std::fmt;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::wire::{self, Message, Text};
use crate::cli::{self, Refused};
use crate::error::Result;
use crate::net::{self, Timeouts};
use crate::server::{Limits, Server, Session};
use crate::shutdown::Shutdown;

/// How long the client waits after a query or its latest answer, unless told.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(4);

/// Answer connections handled at once.
const MAX_ANSWER_CONNS: usize = 64;

/// How a client runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// `IP:PORT` of the servent to ask.
    pub servent: String,
    /// Port to listen on for answers; 0 picks a free one.
    pub local_port: u16,
    /// Quiet time that ends a query.
    pub wait: Duration,
    pub timeouts: Timeouts,
}

/// One shell command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `?key`: look a key up.
    Key(Text),
    /// `T`: ask for the topology.
    Topo,
    /// `Q`: leave the shell.
    Quit,
}

/// A line that is not a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    Unknown,
    BadKey(String),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Unknown => f.write_str("unknown command"),
            CommandError::BadKey(why) => write!(f, "bad key: {why}"),
        }
    }
}

impl std::error::Error for CommandError {}

/// Parses one command line; `Ok(None)` for a blank line.
///
/// `?key` (spaces after `?` allowed), `T`, `Q`; surrounding whitespace is
/// ignored.
pub fn parse_command(line: &str) -> std::result::Result<Option<Command>, CommandError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    if let Some(rest) = line.strip_prefix('?') {
        let key = rest.trim_start();
        if key.is_empty() {
            return Err(CommandError::BadKey("missing after ?".into()));
        }
        return Text::new(key)
            .map(|k| Some(Command::Key(k)))
            .map_err(|e| CommandError::BadKey(e.to_string()));
    }
    match line {
        "T" => Ok(Some(Command::Topo)),
        "Q" => Ok(Some(Command::Quit)),
        _ => Err(CommandError::Unknown),
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
    /// The servent closed our link.
    LinkClosed,
    /// Ctrl-C or SIGTERM came while the client waited for the answers to
    /// the query numbered `waiting` (see [`Client::waiting`]).
    Interrupted { waiting: u64 },
}

/// A client connected to its servent.
pub struct Client {
    link: TcpStream,
    servent: SocketAddr,
    seq: u32,
    wait: Duration,
    events: Receiver<Event>,
    link_closed: bool,
    stop: Arc<Shutdown>,
    /// Feeds `events`; kept for the signal handler.
    tx: Sender<Event>,
    /// While answers to a query are awaited, its `seq + 1`; else 0.
    waiting: Arc<AtomicU64>,
}

impl Client {
    /// Listens for answers, connects to the servent and sends ID.
    pub fn connect(opts: &Options) -> Result<Client> {
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
        let link = net::connect(&opts.servent, &opts.timeouts)?;
        let servent = link.peer_addr()?;
        (&link).write_all(&Message::Id { port }.encode())?;

        let (tx, events) = channel();
        let handler_tx = tx.clone();
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
        // The link may sit idle between commands; no read timeout on it.
        let reader = link.try_clone()?;
        reader.set_read_timeout(None)?;
        thread::Builder::new()
            .name("link".into())
            .spawn(move || read_link(reader, servent, &tx))?;
        Ok(Client {
            link,
            servent,
            seq: 0,
            wait: opts.wait,
            events,
            link_closed: false,
            stop,
            tx: handler_tx,
            waiting: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Lets Ctrl-C (SIGINT) and SIGTERM end the wait for answers early, as
    /// if the quiet time had passed: a one-shot query then ends, a shell
    /// goes on with its next command. Outside a wait the signal ends the
    /// program (status 130) as usual. Call at most once per process.
    pub fn stop_waiting_on_signal(&self) -> Result<()> {
        let tx = std::sync::Mutex::new(self.tx.clone());
        let waiting = self.waiting.clone();
        ctrlc::set_handler(move || match waiting.load(Ordering::SeqCst) {
            0 => std::process::exit(130),
            n => {
                let tx = tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let _ = tx.send(Event::Interrupted { waiting: n });
            }
        })
        .map_err(|e| io::Error::other(format!("signal handler: {e}")))?;
        Ok(())
    }

    /// Sends one query and prints its answers as `<value> <ip>:<port>` on
    /// `out` until `wait` passes with nothing new; returns how many came.
    pub fn query(&mut self, cmd: &Command, out: &mut impl Write) -> Result<usize> {
        let seq = self.seq;
        let msg = match cmd {
            Command::Key(key) => Message::KeyReq {
                seq,
                key: key.clone(),
            },
            Command::Topo => Message::TopoReq { seq },
            Command::Quit => return Ok(0),
        };
        self.seq = self.seq.wrapping_add(1);
        // Waiting starts before the request leaves, so a signal sent once
        // the servent has it always ends this wait.
        let waiting = u64::from(seq) + 1;
        self.waiting.store(waiting, Ordering::SeqCst);
        let res = self.collect(seq, waiting, &msg, out);
        self.waiting.store(0, Ordering::SeqCst);
        res
    }

    /// Sends `msg` and prints the answers to `seq` until the quiet time
    /// passes or a signal ends the wait numbered `waiting`.
    fn collect(
        &mut self,
        seq: u32,
        waiting: u64,
        msg: &Message,
        out: &mut impl Write,
    ) -> Result<usize> {
        (&self.link).write_all(&msg.encode())?;
        let mut deadline = Instant::now() + self.wait;
        let mut answers = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.events.recv_timeout(left) {
                Ok(Event::Answer {
                    seq: s,
                    value,
                    from,
                }) if s == seq => {
                    writeln!(out, "{value} {from}")?;
                    out.flush()?;
                    answers += 1;
                    deadline = Instant::now() + self.wait;
                }
                Ok(Event::Answer { seq: s, from, .. }) => {
                    crate::diag!("unexpected message from {from} (RESP seq {s})")
                }
                Ok(Event::Unexpected { from, what }) => {
                    crate::diag!("unexpected message from {from} ({what})")
                }
                Ok(Event::Bad { from, why }) => {
                    crate::diag!("bad message from {from}: {why}")
                }
                Ok(Event::LinkClosed) => {
                    if !self.link_closed {
                        crate::diag!("servent {} closed the connection", self.servent);
                    }
                    self.link_closed = true;
                }
                Ok(Event::Interrupted { waiting: w }) if w == waiting => break,
                // Meant for an earlier wait that had already ended.
                Ok(Event::Interrupted { .. }) => {}
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        Ok(answers)
    }

    /// The sequence number the next query will carry.
    pub fn next_seq(&self) -> u32 {
        self.seq
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.trigger();
        net::close(&self.link);
    }
}

/// One incoming answer connection: an optional ID, then RESPs.
fn read_answers(session: Session, tx: &Sender<Event>) {
    let peer = session.peer();
    let mut r = BufReader::new(session.stream());
    let mut first = true;
    loop {
        session.request();
        let event = match wire::read_message(&mut r) {
            Ok(None) => break,
            Ok(Some(Message::Id { .. })) if first => {
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

/// The servent link: a servent may answer on it too; its end is reported.
fn read_link(stream: TcpStream, servent: SocketAddr, tx: &Sender<Event>) {
    let mut r = BufReader::new(stream);
    loop {
        let event = match wire::read_message(&mut r) {
            Ok(None) => Event::LinkClosed,
            Ok(Some(msg)) => answer_event(msg, servent),
            Err(e) => {
                let _ = tx.send(Event::Bad {
                    from: servent,
                    why: e.to_string(),
                });
                Event::LinkClosed
            }
        };
        let closed = matches!(event, Event::LinkClosed);
        if tx.send(event).is_err() || closed {
            break;
        }
    }
}

/// `kv-query`: one query if `query` is given, else commands from stdin.
pub fn run(opts: Options, query: Option<String>) -> anyhow::Result<()> {
    let one_shot = match query.as_deref().map(parse_command) {
        None => None,
        Some(Ok(Some(cmd @ (Command::Key(_) | Command::Topo)))) => Some(cmd),
        Some(Ok(_)) => anyhow::bail!("nothing to ask: give ?KEY or T"),
        Some(Err(e)) => return Err(e).context(format!("{:?}", query.unwrap_or_default())),
    };
    let mut client =
        Client::connect(&opts).with_context(|| format!("connecting to {}", opts.servent))?;
    client.stop_waiting_on_signal()?;
    let mut stdout = cli::stdout();
    if let Some(cmd) = one_shot {
        let n = client.query(&cmd, &mut stdout)?;
        if n == 0 {
            return Err(Refused("no response received".into()).into());
        }
        return Ok(());
    }
    let stdin = io::stdin();
    let prompt = stdin.is_terminal();
    shell(&mut client, stdin.lock(), prompt, &mut stdout)
}

/// Reads commands from `input` until `Q` or its end, running each query.
pub fn shell(
    client: &mut Client,
    mut input: impl BufRead,
    prompt: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut line = String::new();
    loop {
        if prompt {
            write!(out, "kv> ")?;
            out.flush()?;
        }
        line.clear();
        if input.read_line(&mut line)? == 0 {
            if prompt {
                writeln!(out)?;
            }
            return Ok(());
        }
        match parse_command(&line) {
            Ok(None) => {}
            Ok(Some(Command::Quit)) => return Ok(()),
            Ok(Some(cmd)) => {
                if client.query(&cmd, out)? == 0 {
                    crate::diag!("no response received");
                }
            }
            Err(e) => crate::diag!("{e}"),
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
    }

    #[test]
    fn bad_commands_are_reported() {
        assert_eq!(parse_command("hello"), Err(CommandError::Unknown));
        assert_eq!(parse_command("t"), Err(CommandError::Unknown));
        assert_eq!(parse_command("TQ"), Err(CommandError::Unknown));
        assert!(matches!(parse_command("?"), Err(CommandError::BadKey(_))));
        assert!(matches!(
            parse_command(&format!("?{}", "k".repeat(401))),
            Err(CommandError::BadKey(_))
        ));
        assert_eq!(CommandError::Unknown.to_string(), "unknown command");
    }
}
