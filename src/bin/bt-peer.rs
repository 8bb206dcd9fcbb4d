//! `bt-peer`: shares a file into a swarm, or fetches one from it.

use std::process::ExitCode;

use clap::Parser;
use peerkit::cli;
use peerkit::swarm::cmd::{self, PeerCmd};

/// A peer of a BitTorrent-like swarm: fetches pieces rarest first from
/// other peers, checks each one, and serves what it holds.
///
/// A peer listens on 0.0.0.0 (every interface) at a free port unless
/// --listen says otherwise; the tracker learns the port and tells others.
#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version,
    after_help = "Example:\n  bt-tracker --listen 127.0.0.1:6969 &\n  \
                  bt-peer share movie.mkv --tracker 127.0.0.1:6969 &\n  \
                  bt-peer fetch movie.mkv --tracker 127.0.0.1:6969 --out downloads --exit-when-done"
)]
struct Args {
    #[command(subcommand)]
    cmd: PeerCmd,
}

fn main() -> ExitCode {
    let a: Args = cli::parse();
    cli::run(env!("CARGO_BIN_NAME"), || cmd::peer(a.cmd))
}
