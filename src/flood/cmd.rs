//! The flooding programs' bodies, called by the thin binaries: `kv-servent`
//! and `kv-query`'s one-shot, shell and pipeline modes (anyhow for context).

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::client::{self, Client, Command, HELP, Options};
use super::servent::{self, Config, DEFAULT_MAX_CLIENTS, DEFAULT_MAX_LINKS, DEFAULT_TTL};
use crate::cli::{self, Interrupted, Level, LimitArgs, NetArgs, Refused, Verbosity, ViewArgs};
use crate::input::{Input, Line};
use crate::net::HostPort;
use crate::shutdown::Shutdown;

/// `kv-servent`'s operands and flags.
#[derive(Debug, Clone, Args)]
pub struct ServentArgs {
    /// Port to listen on (0 picks a free one)
    pub port: u16,
    /// Key-value file: `KEY VALUE...` per line, `#` comments
    pub kv_file: PathBuf,
    /// Neighbours to connect to, already running
    #[arg(value_name = "HOST:PORT", value_parser = cli::parse_addr)]
    pub neighbours: Vec<HostPort>,
    /// TTL given to the floods this servent starts
    #[arg(long, default_value_t = DEFAULT_TTL, value_parser = clap::value_parser!(u16).range(1..))]
    pub ttl: u16,
    /// Interface address to listen on (all IPv4 interfaces by default)
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Seconds a query is remembered, to drop its duplicates
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = cli::parse_secs)]
    pub seen_secs: Duration,
    /// Client connections open at once; when all are taken, the one idle
    /// longest is dropped for a newcomer
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CLIENTS, value_parser = cli::parse_count)]
    pub max_clients: usize,
    /// Neighbour links accepted at once; when all are taken, the one idle
    /// longest is dropped for a newcomer
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_LINKS, value_parser = cli::parse_count)]
    pub max_links: usize,
    /// Seconds an accepted neighbour link may stay silent before it is closed
    #[arg(long, value_name = "SECS", default_value = "86400", value_parser = cli::parse_period)]
    pub link_idle_timeout: Duration,
    /// Send an ID with this servent's listening port before each answer
    /// (RESP), so kv-query names the answer by the servent's address rather
    /// than the answer connection's source port. Off by default: the course
    /// wire sends the RESP alone, and a course client may not expect the ID
    #[arg(long)]
    pub answer_id: bool,
    #[command(flatten)]
    pub view: ViewArgs,
    #[command(flatten)]
    pub verbosity: Verbosity,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub net: NetArgs,
}

/// `kv-servent`: runs a servent until Ctrl-C or SIGTERM.
pub fn servent(a: ServentArgs) -> anyhow::Result<()> {
    let config = Config {
        bind: a.bind,
        port: a.port,
        kv_file: a.kv_file,
        neighbours: a.neighbours.iter().map(HostPort::to_string).collect(),
        ttl: a.ttl,
        seen_for: a.seen_secs,
        limits: a.limits.limits(&a.net),
        max_clients: a.max_clients,
        max_links: a.max_links,
        link_idle_timeout: a.link_idle_timeout,
        level: a.verbosity.level(),
        http: a.view.http,
        answer_id: a.answer_id,
    };
    servent::run(config, &Shutdown::install()?)?;
    Ok(())
}

/// `kv-query`'s operands and flags.
#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    /// Port to listen on for answers, on all interfaces (0 picks a free one)
    #[arg(long, value_name = "LOCALPORT", default_value_t = 0)]
    pub port: u16,
    /// Seconds to wait after the queries or their latest answer while a
    /// query is still unanswered (e.g. 4, 0.5, 250ms)
    #[arg(long, value_name = "SECS", default_value = "4", value_parser = cli::parse_secs)]
    pub wait: Duration,
    /// Once every query has an answer, seconds without a new one that end
    /// the wait (at most --wait)
    #[arg(long, value_name = "SECS", default_value = "0.5", value_parser = cli::parse_secs)]
    pub settle: Duration,
    /// The servent to ask, HOST:PORT
    #[arg(value_name = "HOST:PORT", value_parser = cli::parse_addr)]
    pub servent: HostPort,
    /// `?KEY`, `T` or `help`; none starts the shell
    pub query: Option<String>,
    #[command(flatten)]
    pub verbosity: Verbosity,
    #[command(flatten)]
    pub net: NetArgs,
}

/// `kv-query` from its flags.
pub fn query_main(a: QueryArgs) -> anyhow::Result<()> {
    let opts = Options {
        servent: a.servent.to_string(),
        local_port: a.port,
        wait: a.wait,
        settle: a.settle,
        timeouts: a.net.timeouts(),
        level: a.verbosity.level(),
    };
    query(opts, a.query)
}

/// `kv-query`: one query if `query` is given, else commands from stdin.
/// Exit 1 when a one-shot query, or any query of a pipeline, got no answer.
pub fn query(opts: Options, query: Option<String>) -> anyhow::Result<()> {
    let mut stdout = cli::stdout();
    let one_shot = match query.as_deref().map(client::parse_command) {
        None => None,
        Some(Ok(Some(Command::Help))) => {
            writeln!(stdout, "{HELP}")?;
            stdout.flush()?;
            return Ok(());
        }
        Some(Ok(Some(cmd @ (Command::Key(_) | Command::Topo)))) => Some(cmd),
        Some(Ok(_)) => anyhow::bail!("nothing to ask: give ?KEY or T (help lists the commands)"),
        Some(Err(e)) => return Err(e.into()),
    };
    let signals = Shutdown::install()?;
    let mut client = Client::connect(&opts).with_context(|| opts.servent.clone())?;
    client.stop_waiting_on_signal(signals.clone());
    let interrupted = || Interrupted("interrupted".into());
    if let Some(cmd) = one_shot {
        let n = match client.query(&cmd, &mut stdout) {
            Err(_) if signals.is_triggered() => return Err(interrupted().into()),
            res => res?,
        };
        if n == 0 {
            return Err(Refused("no response received".into()).into());
        }
        return Ok(());
    }
    let mut input = Input::stdin("kv-query", &signals);
    let interactive = input.is_terminal();
    let tally = match shell(
        &mut client,
        &mut input,
        interactive,
        opts.level,
        &mut stdout,
    ) {
        Err(_) if signals.is_triggered() => return Err(interrupted().into()),
        res => res?,
    };
    drop(input);
    if tally.interrupted {
        return Err(interrupted().into());
    }
    if !interactive && tally.unanswered > 0 {
        return Err(Refused(format!(
            "{} of {} queries got no response",
            tally.unanswered, tally.asked
        ))
        .into());
    }
    Ok(())
}

/// What a shell session asked and how much went unanswered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    asked: usize,
    unanswered: usize,
    /// Ended by Ctrl-C at the prompt or a signal between commands.
    interrupted: bool,
}

/// Reads commands from `input` until `Q`, its end or an interruption,
/// running each query; a prompt and the command list first when
/// `interactive`.
fn shell(
    client: &mut Client,
    input: &mut Input,
    interactive: bool,
    level: Level,
    out: &mut impl Write,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    if !interactive {
        return pipeline(client, input, level, out);
    }
    if level > Level::Quiet {
        writeln!(out, "{HELP}")?;
        out.flush()?;
    }
    loop {
        let line = match input.next("kv> ") {
            Line::Text(line) => line,
            ended => {
                if interactive {
                    writeln!(out)?;
                    out.flush()?;
                }
                tally.interrupted = ended == Line::Interrupted;
                return Ok(tally);
            }
        };
        match client::parse_command(&line) {
            Ok(None) => {}
            Ok(Some(Command::Quit)) => return Ok(tally),
            Ok(Some(Command::Help)) => {
                writeln!(out, "{HELP}")?;
                out.flush()?;
            }
            Ok(Some(cmd)) => {
                tally.asked += 1;
                if client.query(&cmd, out)? == 0 {
                    tally.unanswered += 1;
                    if level > Level::Quiet {
                        crate::diag!("{cmd}: no response received");
                    }
                }
            }
            Err(e) => crate::diag!("{e}"),
        }
    }
}

/// Commands from a pipe: reads them all (to `Q` or the end), sends every
/// query at once, waits once for all the answers and prints them grouped
/// by query, in order.
fn pipeline(
    client: &mut Client,
    input: &mut Input,
    level: Level,
    out: &mut impl Write,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let mut queries = Vec::new();
    loop {
        let line = match input.next("") {
            Line::Text(line) => line,
            Line::End => break,
            Line::Interrupted => {
                tally.interrupted = true;
                return Ok(tally);
            }
        };
        match client::parse_command(&line) {
            Ok(None) => {}
            Ok(Some(Command::Quit)) => break,
            Ok(Some(Command::Help)) => {
                writeln!(out, "{HELP}")?;
                out.flush()?;
            }
            Ok(Some(cmd)) => queries.push(cmd),
            Err(e) => crate::diag!("{e}"),
        }
    }
    let counts = client.query_all(&queries, out)?;
    for (cmd, n) in queries.iter().zip(counts) {
        tally.asked += 1;
        if n == 0 {
            tally.unanswered += 1;
            if level > Level::Quiet {
                crate::diag!("{cmd}: no response received");
            }
        }
    }
    Ok(tally)
}
