//! `kv-query [--port LOCALPORT] SERVENT_IP:PORT [QUERY]`: asks the key-value
//! flooding network.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use peerkit::cli::{self, NetArgs, Verbosity};
use peerkit::flood::client::{DEFAULT_WAIT, Options};
use peerkit::flood::cmd;

/// Asks a servent of the key-value flooding network. QUERY is `?KEY` or `T`
/// (topology); without it, commands are read from stdin (`help` lists them,
/// `Q` quits). Each answer is printed as `<value> <ip>:<port>`.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "\
Examples:
  kv-query 127.0.0.1:5001 '?ssh'                   # one query
  kv-query 127.0.0.1:5001 T                        # the topology: one path per servent reached
  kv-query 127.0.0.1:5001                          # shell: ?KEY, T, help, Q
  printf '?ftp\\n?ssh\\n' | kv-query 127.0.0.1:5001   # pipeline

Exit status: 0 answered; 1 a one-shot query, or any query of a pipeline, got no
answer; 2 error (the servent unreachable, an unknown command given as QUERY)."
)]
struct Args {
    /// Port to listen on for answers, on all interfaces (0 picks a free one)
    #[arg(long, value_name = "LOCALPORT", default_value_t = 0)]
    port: u16,
    /// Seconds to wait after the query or its latest answer (fractions allowed)
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_WAIT.as_secs_f64(), value_parser = parse_secs)]
    wait: f64,
    /// The servent to ask
    #[arg(value_name = "SERVENT_IP:PORT")]
    servent: String,
    /// `?KEY`, `T` or `help`; none starts the shell
    query: Option<String>,
    #[command(flatten)]
    verbosity: Verbosity,
    #[command(flatten)]
    net: NetArgs,
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=86_400.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds between 0 and 86400"
        )),
    }
}

fn main() -> ExitCode {
    let a = Args::parse();
    cli::run(env!("CARGO_BIN_NAME"), || {
        let opts = Options {
            servent: a.servent,
            local_port: a.port,
            wait: Duration::from_secs_f64(a.wait),
            timeouts: a.net.timeouts(),
            level: a.verbosity.level(),
        };
        cmd::query(opts, a.query)
    })
}
