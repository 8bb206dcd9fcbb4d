//! What every binary shares: common flags; one flag vocabulary (lengths of
//! time, sizes, `HOST:PORT`); `parse`, which tells a command-line mistake
//! as one sentence; and `run`, which turns a result into a one-line
//! diagnostic and an exit code (0 success, 1 not there / refused, 2 error,
//! 130 interrupted; a closed stdout is success). `run` is the only place
//! exit codes are chosen, including the immediate exit on a second Ctrl-C.
//! Only binaries and each
//! system's `cmd` use it; the library below speaks through `log` and
//! `output`.

use std::io;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::error::describe_io;
pub use crate::log::Level;
use crate::net::{HostPort, Timeouts};
pub use crate::output::{Stdout, StdoutClosed, byte_bar, progress_enabled, stdout};
use crate::server::{self, Limits};

/// Network flags shared by every program.
#[derive(Debug, Clone, Args)]
pub struct NetArgs {
    /// Seconds a connect, read or write may take before giving up (e.g. 30,
    /// 0.5, 250ms, 2m)
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs,
          global = true)]
    pub timeout: Duration,
}

impl NetArgs {
    pub fn timeouts(&self) -> Timeouts {
        // 0 meant "as short as allowed", one second, and still does.
        let io = if self.timeout.is_zero() {
            Duration::from_secs(1)
        } else {
            self.timeout
        };
        Timeouts {
            connect: io.min(Duration::from_secs(10)),
            io,
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

/// Flags shared by clients: the socket timeouts and how much to say.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

impl ClientArgs {
    /// How much to say, and the socket timeouts.
    pub fn level_and_timeouts(&self) -> (Level, Timeouts) {
        (self.verbosity.level(), self.net.timeouts())
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
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_period)]
    pub request_timeout: Duration,

    /// Seconds a connection may sit idle between requests
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_period)]
    pub idle_timeout: Duration,
}

impl LimitArgs {
    /// The server core's limits from these flags and the socket timeouts.
    pub fn limits(&self, net: &NetArgs) -> Limits {
        Limits {
            max_conns: self.max_conns,
            request_timeout: self.request_timeout,
            idle_timeout: self.idle_timeout,
            io: net.timeouts(),
        }
    }
}

/// Flags shared by every daemon: where to listen, and the server core's limits.
#[derive(Debug, Clone, Args)]
pub struct DaemonArgs {
    /// Address to listen on, HOST:PORT (port 0 picks a free port)
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
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

/// The live view's flag, for the daemons that serve one.
#[derive(Debug, Clone, Default, Args)]
pub struct ViewArgs {
    /// Serve a live view at ADDR, HOST:PORT (port 0 picks one): the page at
    /// /, /state.json, /events (Server-Sent Events) and /metrics
    /// (Prometheus); off unless given
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub http: Option<String>,
}

/// Parses a count from 1 to 65536 (connection caps, worker counts).
pub fn parse_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=65_536).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a number from 1 to 65536")),
    }
}

/// Parses a length of time, as people who use `timeout`, `sleep` or `curl`
/// write it: seconds by default, fractions allowed (`5`, `0.5`), or a number
/// with a unit `ms`, `s`, `m` or `h` (`250ms`, `2m`, `1h`). From 0 to 10^9
/// seconds.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "{s:?} is not a length of time (seconds like 5 or 0.5, or 250ms, 2m, 1h)"
            ));
        }
    };
    let v: f64 = num.trim().parse().map_err(|_| {
        format!("{s:?} is not a length of time (seconds like 5 or 0.5, or 250ms, 2m, 1h)")
    })?;
    let secs = v * scale;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("{s:?}: a length of time is from 0 to 1e9 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// [`parse_secs`] for a period that cannot be zero (timeouts, intervals).
pub fn parse_period(s: &str) -> Result<Duration, String> {
    match parse_secs(s)? {
        d if d.is_zero() => Err(format!("{s:?}: must be more than 0 seconds")),
        d => Ok(d),
    }
}

/// Parses a size in bytes: a number with an optional binary unit, `K`, `M`,
/// `G` or `T` (powers of 1024), written also `KB`, `KiB`, `k`...: `64K`,
/// `1M`, `1MiB`, `1.5G`, `1000000`. At least one byte.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit.strip_suffix("IB").map_or_else(
        || unit.strip_suffix('B').unwrap_or(&unit).to_string(),
        str::to_string,
    );
    let mult: u64 = match unit.as_str() {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit (use K, M, G or T, powers of 1024: 64K, 1M, 1MiB)"
            ));
        }
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 64K, 1M, 1MiB or 1000000"))?;
    let bytes = v * mult as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("{s:?}: a size is at least 1 byte"));
    }
    Ok(bytes as u64)
}

/// Parses a rate in bytes per second: a size ([`parse_size`]) optionally
/// followed by `/s`: `500K`, `4M`, `1.5MB/s`, `1000000`.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    parse_size(t.strip_suffix("/s").unwrap_or(t))
        .map_err(|e| e.replace("size", "rate").replace("byte", "byte per second"))
}

/// Checks an address to listen on, `HOST:PORT` (port 0 picks a free one).
pub fn parse_listen(s: &str) -> Result<String, String> {
    HostPort::parse_listen(s)
}

/// Parses a server's address, `HOST:PORT` (see [`HostPort`]).
pub fn parse_addr(s: &str) -> Result<HostPort, String> {
    HostPort::parse(s)
}

/// Parses the command line into `T`. `--help` and `--version` print and
/// exit 0 as clap does; a mistake is told as a sentence that starts with
/// the program's name, then the usage and where to read more, exit 2:
///
/// ```text
/// p2p-get: missing NAME
/// Usage: p2p-get [OPTIONS] HOST:PORT NAME
/// Try 'p2p-get --help' for more information.
/// ```
pub fn parse<T: clap::Parser>() -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(err) => {
            use clap::error::ErrorKind;
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                err.exit();
            }
            let cmd = T::command();
            let tool = cmd.get_bin_name().unwrap_or(cmd.get_name()).to_string();
            let rendered = err.render().to_string();
            eprintln!("{tool}: {}", usage_sentence(&err, &rendered));
            let usage: Vec<&str> = rendered
                .lines()
                .skip_while(|l| !l.starts_with("Usage:"))
                .take_while(|l| !l.trim().is_empty())
                .collect();
            for line in &usage {
                eprintln!("{line}");
            }
            // The help to read is the subcommand's, when the usage names one
            // (`bt-peer fetch --help`).
            let command = usage
                .first()
                .and_then(|l| l.strip_prefix("Usage:"))
                .map(|l| {
                    l.split_whitespace()
                        .take_while(|w| !w.starts_with(['<', '[', '-']))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .filter(|c| c.starts_with(&tool))
                .unwrap_or_else(|| tool.clone());
            eprintln!("Try '{command} --help' for more information.");
            std::process::exit(2);
        }
    }
}

/// One plain sentence for a command-line mistake clap found.
fn usage_sentence(err: &clap::Error, rendered: &str) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let text = |kind: ContextKind| match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => Some(v.join(", ")),
        _ => None,
    };
    // `<NAME>` and `--timeout <SECS>` read as NAME and --timeout.
    let arg_name = |a: &str| {
        if a.starts_with('-') {
            a.split([' ', '=']).next().unwrap_or(a).to_string()
        } else {
            a.replace(['<', '>', '[', ']'], "").replace("...", "")
        }
    };
    let arg = text(ContextKind::InvalidArg).map(|a| arg_name(&a));
    let sentence = match (err.kind(), &arg) {
        (ErrorKind::MissingRequiredArgument, _) => match err.get(ContextKind::InvalidArg) {
            Some(ContextValue::Strings(v)) => {
                let names: Vec<String> = v.iter().map(|a| arg_name(a)).collect();
                Some(format!("missing {}", names.join(" and ")))
            }
            _ => None,
        },
        (ErrorKind::ValueValidation, Some(arg)) => {
            use std::error::Error as _;
            err.source().map(|why| {
                let why = why.to_string();
                // An operand's own message may name it already
                // (`... (expected HOST:PORT)`).
                if !arg.starts_with('-') && why.contains(arg.as_str()) {
                    why
                } else {
                    format!("{arg}: {why}")
                }
            })
        }
        (ErrorKind::InvalidValue, Some(arg)) => {
            let value = text(ContextKind::InvalidValue).unwrap_or_default();
            let valid = text(ContextKind::ValidValue).filter(|v| !v.is_empty());
            Some(match valid {
                _ if value.is_empty() => format!("{arg} needs a value"),
                Some(valid) => format!("{value:?} is not one of {valid} ({arg})"),
                None => format!("{value:?} is not a valid {arg}"),
            })
        }
        (ErrorKind::UnknownArgument, Some(arg)) => Some(if arg.starts_with('-') {
            let hint = text(ContextKind::SuggestedArg)
                .map(|s| format!(" (did you mean {s}?)"))
                .unwrap_or_default();
            format!("unknown option {arg}{hint}")
        } else {
            format!("unexpected argument {arg:?}")
        }),
        (ErrorKind::ArgumentConflict, Some(arg)) => text(ContextKind::PriorArg)
            .map(|other| format!("{arg} cannot be used with {}", arg_name(&other))),
        _ => None,
    };
    sentence.unwrap_or_else(|| {
        // Clap's own first line, without its `error: ` label.
        let first = rendered.lines().next().unwrap_or("invalid arguments");
        first.strip_prefix("error: ").unwrap_or(first).to_string()
    })
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

/// An error meaning "stopped by Ctrl-C or SIGTERM before it was done":
/// `run` reports it and exits 130, as a shell does for a program ended by
/// SIGINT.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

/// The exit status of an interrupted program (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Runs a program's body and maps the outcome to an exit code, printing
/// `tool: what failed: why` on stderr for errors. A second Ctrl-C or
/// SIGTERM, once the first has started shutting down, exits 130 at once.
pub fn run(tool: &str, body: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    crate::log::set_tool(tool);
    crate::shutdown::on_second_signal(|| std::process::exit(i32::from(EXIT_INTERRUPTED)));
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("{tool}: {}", describe(&err));
            if err.chain().any(|c| c.is::<Interrupted>()) {
                ExitCode::from(EXIT_INTERRUPTED)
            } else if err.chain().any(|c| c.downcast_ref::<Refused>().is_some()) {
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
            || matches!(
                c.downcast_ref::<crate::Error>().map(crate::Error::root),
                Some(crate::Error::Io(e)) if marked(e)
            )
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

    #[derive(Debug, clap::Parser)]
    #[command(name = "tool")]
    struct Toy {
        #[arg(value_name = "NAME")]
        name: String,
        #[arg(value_name = "HOST:PORT", value_parser = parse_addr)]
        peers: Vec<HostPort>,
        #[arg(long, value_name = "SECS", value_parser = parse_secs)]
        wait: Option<Duration>,
        #[arg(long, value_name = "N")]
        count: Option<u8>,
    }

    fn sentence(args: &[&str]) -> String {
        use clap::Parser;
        let err =
            Toy::try_parse_from(std::iter::once("tool").chain(args.iter().copied())).unwrap_err();
        usage_sentence(&err, &err.render().to_string())
    }

    #[test]
    fn argument_mistakes_are_one_sentence_each() {
        assert_eq!(sentence(&[]), "missing NAME");
        assert_eq!(
            sentence(&["n", "127.0.0.1"]),
            "missing port in \"127.0.0.1\" (expected HOST:PORT)"
        );
        assert_eq!(
            sentence(&["n", "--wait", "soon"]),
            "--wait: \"soon\" is not a length of time (seconds like 5 or 0.5, or 250ms, 2m, 1h)"
        );
        assert_eq!(
            sentence(&["n", "--count", "300"]),
            "--count: 300 is not in 0..=255"
        );
        assert_eq!(sentence(&["n", "--frob"]), "unknown option --frob");
        assert_eq!(sentence(&["n", "--wait"]), "--wait needs a value");
    }

    #[test]
    fn times_read_as_seconds_or_with_a_unit() {
        let ms = |s: &str| parse_secs(s).map(|d| d.as_millis());
        assert_eq!(ms("5"), Ok(5000));
        assert_eq!(ms("0.5"), Ok(500));
        assert_eq!(ms("0"), Ok(0));
        assert_eq!(ms("250ms"), Ok(250));
        assert_eq!(ms("2m"), Ok(120_000));
        assert_eq!(ms("1h"), Ok(3_600_000));
        assert_eq!(ms("1.5s"), Ok(1500));
        assert_eq!(ms(" 10 "), Ok(10_000));
        for bad in ["-1", "soon", "inf", "NaN", "5x", "", "m", "1e10"] {
            assert!(parse_secs(bad).is_err(), "{bad:?}");
        }
        assert!(parse_period("0").is_err());
        assert!(parse_period("0ms").is_err());
        assert_eq!(parse_period("1ms"), Ok(Duration::from_millis(1)));
    }

    #[test]
    fn defaults_written_as_text_match_the_constants() {
        assert_eq!(parse_period("10"), Ok(server::DEFAULT_REQUEST_TIMEOUT));
        assert_eq!(parse_period("60"), Ok(server::DEFAULT_IDLE_TIMEOUT));
    }

    #[test]
    fn sizes_and_rates_take_binary_units() {
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1mb"), Ok(1 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("1000000"), Ok(1_000_000));
        assert_eq!(parse_size("16k"), Ok(16 << 10));
        for bad in ["0", "-1", "4Q", "lots", "", "0.1"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_rate("500K"), Ok(500 << 10));
        assert_eq!(parse_rate("1.5MB/s"), Ok(3 << 19));
        assert_eq!(parse_rate("4M/s"), Ok(4 << 20));
        assert!(parse_rate("0").unwrap_err().contains("rate"));
    }

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
        // Under the library's own context (`writing standard output: ...`).
        let deep = crate::Error::from(mark_closed(io::Error::from_raw_os_error(32)))
            .doing("writing standard output");
        assert!(is_broken_pipe(&anyhow::Error::new(deep)));
        let socket = anyhow::Error::new(io::Error::from_raw_os_error(32));
        assert!(!is_broken_pipe(&socket));
    }
}
