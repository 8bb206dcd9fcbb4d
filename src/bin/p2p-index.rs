//! `p2p-index`: the DHT's index server, keeper of the supernode ring.

use std::process::ExitCode;

use clap::Parser;
use peerkit::cli::{self, DaemonArgs};
use peerkit::dht::{cmd, index};

/// Keeps the consistent-hash ring of supernodes and tells them which one is
/// responsible for a file name. Logs joins and departures on stdout.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    daemon: DaemonArgs,
}

fn main() -> ExitCode {
    let a = Args::parse();
    cli::run(env!("CARGO_BIN_NAME"), || {
        cmd::index(
            &a.daemon.listen_or(index::DEFAULT_LISTEN),
            a.daemon.limits(),
        )
    })
}
