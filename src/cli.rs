//! What every binary shares: common flags, and `run`, which turns a result
//! into a one-line diagnostic and an exit code (0 success, 1 not there /
//! refused, 2 error; a closed stdout is success). Only binaries and each
//! system's `cmd` use it; the library below speaks through `log` and
//! `output`.

use std::io;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::error::describe_io;
pub use crate::log::Level;
use crate::net::Timeouts;
pub use crate::output::{Stdout, StdoutClosed, byte_bar, progress_enabled, stdout};
use crate::server::{self, Limits};

/// Network flags shared by every program.
#[derive(Debug, Clone, Args)]
pub struct NetArgs {
    /// Seconds a connect, read or write may take before giving up
    #[arg(long, value_name = "SECS", default_value_t = 30, global = true)]
    pub timeout: u64,
}

impl NetArgs {
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(self.timeout.clamp(1, 10)),
            io: Duration::from_secs(self.timeout.max(1)),
        }
    }
}

/// How much a program says: `-q` and `-v` mean the same in every program.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct Verbosity {
    /// Quiet: print only the data asked for, warnings and errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Verbose: also print one line per step (piece, request, message)
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

impl Verbosity {
    pub fn level(&self) -> Level {
        if self.quiet {
            Level::Quiet
        } else if self.verbose {
            Level::Verbose
        } else {
            Level::Normal
        }
    }
}

/// The server core's limits, as flags (every daemon has them).
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Connections served at once; when all are taken, the one idle longest
    /// is dropped for a newcomer
    #[arg(long, value_name = "N", default_value_t = server::DEFAULT_MAX_CONNS,
          value_parser = parse_count)]
    pub max_conns: usize,

    /// Seconds a whole request (handshake, frame, ID) may take to arrive
    #[arg(long, value_name = "SECS", default_value_t = server::DEFAULT_REQUEST_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout: u64,

    /// Seconds a connection may sit idle between requests
    #[arg(long, value_name = "SECS", default_value_t = server::DEFAULT_IDLE_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
}

impl LimitArgs {
    /// The server core's limits from these flags and the socket timeouts.
    pub fn limits(&self, net: &NetArgs) -> Limits {
        Limits {
            max_conns: self.max_conns,
            request_timeout: Duration::from_secs(self.request_timeout),
            idle_timeout: Duration::from_secs(self.idle_timeout),
            io: net.timeouts(),
        }
    }
}

/// Flags shared by every daemon: where to listen, and the server core's limits.
#[derive(Debug, Clone, Args)]
pub struct DaemonArgs {
    /// Address to listen on, HOST:PORT (port 0 picks a free port)
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub net: NetArgs,
}

impl DaemonArgs {
    /// The `--listen` address, or `default` when it was not given.
    pub fn listen_or(&self, default: &str) -> String {
        self.listen.clone().unwrap_or_else(|| default.to_string())
    }

    /// The server core's limits from these flags.
    pub fn limits(&self) -> Limits {
        self.limits.limits(&self.net)
    }
}

/// Parses a count from 1 to 65536 (connection caps, worker counts).
pub fn parse_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=65_536).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a number from 1 to 65536")),
    }
}

/// An error meaning "the thing asked for is not there, or was refused":
/// `run` reports it and exits 1 instead of 2.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Runs a program's body and maps the outcome to an exit code, printing
/// `tool: what failed: why` on stderr for errors.
pub fn run(tool: &str, body: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    crate::log::set_tool(tool);
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("{tool}: {}", describe(&err));
            if err.chain().any(|c| c.downcast_ref::<Refused>().is_some()) {
                ExitCode::from(1)
            } else {
                ExitCode::from(2)
            }
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    let marked = |e: &io::Error| e.get_ref().is_some_and(|inner| inner.is::<StdoutClosed>());
    err.chain().any(|c| {
        c.is::<StdoutClosed>()
            || c.downcast_ref::<io::Error>().is_some_and(marked)
            || matches!(c.downcast_ref::<crate::Error>(), Some(crate::Error::Io(e)) if marked(e))
    })
}

/// The error chain as one line, `context: cause: cause`.
pub fn describe(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = match cause.downcast_ref::<io::Error>() {
            Some(e) => describe_io(e),
            None => cause.to_string(),
        };
        if parts.last() != Some(&text) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::mark_closed;

    #[test]
    fn chain_is_one_line() {
        let err = anyhow::Error::new(io::Error::from_raw_os_error(111))
            .context("connecting to 127.0.0.1:1");
        assert_eq!(
            describe(&err),
            "connecting to 127.0.0.1:1: connection refused"
        );
    }

    #[test]
    fn only_a_closed_stdout_counts_as_success() {
        let stdout = anyhow::Error::new(mark_closed(io::Error::from_raw_os_error(32)));
        assert!(is_broken_pipe(&stdout.context("writing output")));
        let wrapped = crate::Error::from(mark_closed(io::Error::from_raw_os_error(32)));
        assert!(is_broken_pipe(&anyhow::Error::new(wrapped)));
        let socket = anyhow::Error::new(io::Error::from_raw_os_error(32));
        assert!(!is_broken_pipe(&socket));
    }
}
