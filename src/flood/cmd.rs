//! The flooding programs' bodies, called by the thin binaries: `kv-servent`
//! and `kv-query`'s one-shot, shell and pipeline modes (anyhow for context).

use std::io::{self, BufRead, IsTerminal, Write};

use anyhow::Context;

use super::client::{self, Client, Command, HELP, Options};
use super::servent::{self, Config};
use crate::cli::{self, Level, Refused};
use crate::shutdown::Shutdown;

/// `kv-servent`: runs a servent until Ctrl-C or SIGTERM.
pub fn servent(config: Config) -> anyhow::Result<()> {
    servent::run(config, &Shutdown::install()?)?;
    Ok(())
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
    let mut client =
        Client::connect(&opts).with_context(|| format!("connecting to {}", opts.servent))?;
    client.stop_waiting_on_signal()?;
    if let Some(cmd) = one_shot {
        let n = client.query(&cmd, &mut stdout)?;
        if n == 0 {
            return Err(Refused("no response received".into()).into());
        }
        return Ok(());
    }
    let stdin = io::stdin();
    let interactive = stdin.is_terminal();
    let tally = shell(
        &mut client,
        stdin.lock(),
        interactive,
        opts.level,
        &mut stdout,
    )?;
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
}

/// Reads commands from `input` until `Q` or its end, running each query;
/// a prompt and the command list first when `interactive`.
fn shell(
    client: &mut Client,
    mut input: impl BufRead,
    interactive: bool,
    level: Level,
    out: &mut impl Write,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    if interactive && level > Level::Quiet {
        writeln!(out, "{HELP}")?;
    }
    let mut line = String::new();
    loop {
        if interactive {
            write!(out, "kv> ")?;
            out.flush()?;
        }
        line.clear();
        if input.read_line(&mut line)? == 0 {
            if interactive {
                writeln!(out)?;
            }
            return Ok(tally);
        }
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
