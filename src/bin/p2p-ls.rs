//! `p2p-ls`: lists the files of one DHT supernode.

use std::process::ExitCode;

use clap::Parser;
use peerkit::cli;
use peerkit::dht::cmd::{self, LsArgs};

/// Prints the names in a supernode's repository, one per line. On a
/// terminal names are quoted as `ls` quotes them; elsewhere a name is
/// printed as it is unless it holds a newline or another control
/// character, which is shown shell-escaped (`'a'$'\n''b'`). Use --json for
/// the exact names.
#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version,
    override_usage = "p2p-ls [OPTIONS] HOST:PORT\n       p2p-ls [OPTIONS] HOST PORT",
    after_help = "Example:\n  p2p-ls 127.0.0.1:7000\n  p2p-ls --json 127.0.0.1 7000"
)]
struct Args {
    #[command(flatten)]
    ls: LsArgs,
}

fn main() -> ExitCode {
    let a: Args = cli::parse();
    cli::run(env!("CARGO_BIN_NAME"), || cmd::ls(a.ls))
}
