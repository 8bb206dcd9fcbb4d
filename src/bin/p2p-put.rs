//! `p2p-put`: uploads a local file to a DHT supernode.

use std::process::ExitCode;

use clap::Parser;
use peerkit::cli;
use peerkit::dht::cmd::{self, PutArgs};

/// Uploads PATH under its own file name to a supernode. Exits 1 if a file of
/// that name is already there.
#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version,
    override_usage = "p2p-put [OPTIONS] HOST:PORT PATH\n       p2p-put [OPTIONS] HOST PORT PATH",
    after_help = "Example:\n  p2p-put 127.0.0.1:7000 notes.txt"
)]
struct Args {
    #[command(flatten)]
    put: PutArgs,
}

fn main() -> ExitCode {
    let a: Args = cli::parse();
    cli::run(env!("CARGO_BIN_NAME"), || cmd::put(a.put))
}
