//! `p2p-index`: the DHT's index server, keeper of the supernode ring.

use std::process::ExitCode;

use clap::Parser;
use peerkit::cli;
use peerkit::dht::cmd::{self, IndexArgs};

/// Keeps the consistent-hash ring of supernodes and tells them which one is
/// responsible for a file name. Logs joins and departures on stdout.
#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version,
    after_help = "Listens on 0.0.0.0:6110 (every interface) unless --listen is given; \
                  the first line on stdout is `listening on HOST:PORT`.\n\n\
                  Example:\n  p2p-index --listen 127.0.0.1:6110"
)]
struct Args {
    #[command(flatten)]
    index: IndexArgs,
}

fn main() -> ExitCode {
    let a: Args = cli::parse();
    cli::run(env!("CARGO_BIN_NAME"), || cmd::index(a.index))
}
