//! `kv-query [--port LOCALPORT] HOST:PORT [QUERY]`: asks the key-value
//! flooding network.

use std::process::ExitCode;

use clap::Parser;
use peerkit::cli;
use peerkit::flood::cmd::{self, QueryArgs};

/// Asks a servent of the key-value flooding network. QUERY is `?KEY` or `T`
/// (topology); without it, commands are read from stdin (`help` lists them,
/// `Q` quits). Each answer is printed as `<value> <ip>:<port>`.
#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version,
    after_help = "\
Examples:
  kv-query 127.0.0.1:5001 '?ssh'                   # one query
  kv-query 127.0.0.1:5001 T                        # the topology: one path per servent reached
  kv-query 127.0.0.1:5001                          # shell: ?KEY, T, help, Q
  printf '?ftp\\n?ssh\\n' | kv-query 127.0.0.1:5001   # pipeline

A pipeline's queries are sent together and answered in one wait; the answers
are printed grouped by query, in order. A wait ends --settle seconds after the
latest answer once every query has one, or --wait seconds after the latest
answer while one is still unanswered.

Exit status: 0 answered; 1 a one-shot query, or any query of a pipeline, got no
answer; 2 error (the servent unreachable, an unknown command given as QUERY);
130 interrupted."
)]
struct Args {
    #[command(flatten)]
    query: QueryArgs,
}

fn main() -> ExitCode {
    let a: Args = cli::parse();
    cli::run(env!("CARGO_BIN_NAME"), || cmd::query_main(a.query))
}
