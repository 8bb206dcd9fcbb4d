//! `p2p-put`: uploads a local file to a DHT supernode.

use std::process::ExitCode;

use clap::Parser;
use peerkit::cli::{self, NetArgs, Verbosity};
use peerkit::dht::cmd;

/// Uploads PATH under its own file name to a supernode. Exits 1 if a file of
/// that name is already there.
#[derive(Parser)]
#[command(
    version,
    override_usage = "p2p-put [OPTIONS] HOST:PORT PATH\n       p2p-put [OPTIONS] HOST PORT PATH",
    after_help = "Example:\n  p2p-put 127.0.0.1:7000 notes.txt"
)]
struct Args {
    /// HOST:PORT PATH, or HOST PORT PATH
    #[arg(value_name = "ARGS", required = true, num_args = 2..=3)]
    operands: Vec<String>,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    verbosity: Verbosity,
}

fn main() -> ExitCode {
    let a = Args::parse();
    cli::run(env!("CARGO_BIN_NAME"), || {
        cmd::put(&a.operands, a.net.timeouts(), a.verbosity.level())
    })
}
