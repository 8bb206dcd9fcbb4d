//! `p2p-ls`: lists the files of one DHT supernode.

use std::process::ExitCode;

use clap::Parser;
use peerkit::cli::{self, NetArgs, Verbosity};
use peerkit::dht::cmd;

/// Prints the names in a supernode's repository, one per line. On a
/// terminal names are quoted as `ls` quotes them; elsewhere a name is
/// printed as it is unless it holds a newline or another control
/// character, which is shown shell-escaped (`'a'$'\n''b'`). Use --json for
/// the exact names.
#[derive(Parser)]
#[command(
    version,
    override_usage = "p2p-ls [OPTIONS] HOST:PORT\n       p2p-ls [OPTIONS] HOST PORT",
    after_help = "Example:\n  p2p-ls 127.0.0.1:7000\n  p2p-ls --json 127.0.0.1 7000"
)]
struct Args {
    /// HOST:PORT, or HOST PORT
    #[arg(value_name = "ARGS", required = true, num_args = 1..=2)]
    operands: Vec<String>,
    /// Print a JSON array of the exact names instead
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    verbosity: Verbosity,
}

fn main() -> ExitCode {
    let a = Args::parse();
    cli::run(env!("CARGO_BIN_NAME"), || {
        cmd::ls(&a.operands, a.json, a.net.timeouts(), a.verbosity.level())
    })
}
