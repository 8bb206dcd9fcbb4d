//! `bt-tracker`: the swarm tracker (default 0.0.0.0:6969).

use std::process::ExitCode;

use clap::Parser;
use peerkit::cli;
use peerkit::swarm::cmd::{self, TrackerArgs};

/// Tracker of BitTorrent-like swarms: keeps each swarm's manifest and its
/// members' addresses and pieces (never file data), and evicts members
/// that stop pinging.
///
/// Listens on 0.0.0.0:6969 (every interface) unless --listen says otherwise.
/// A member on this host that registered over 127.0.0.1 is handed to peers
/// on other hosts at the address they reached the tracker at.
#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version,
    after_help = "Example:\n  bt-tracker --listen 127.0.0.1:6969\n  \
                  bt-peer share movie.mkv --tracker 127.0.0.1:6969"
)]
struct Args {
    #[command(flatten)]
    tracker: TrackerArgs,
}

fn main() -> ExitCode {
    let a: Args = cli::parse();
    cli::run(env!("CARGO_BIN_NAME"), || cmd::tracker_main(a.tracker))
}
