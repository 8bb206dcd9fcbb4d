//! `p2p-ls`: lists the files of one DHT supernode.

use std::process::ExitCode;

use clap::Parser;
use peerkit::cli::{self, NetArgs};
use peerkit::dht::cmd;

/// Prints the names in a supernode's repository, one per line.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The supernode's host
    host: String,
    /// The supernode's port
    port: u16,
    /// Print a JSON array of names instead
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    net: NetArgs,
}

fn main() -> ExitCode {
    let a = Args::parse();
    cli::run(env!("CARGO_BIN_NAME"), || {
        cmd::ls(&a.host, a.port, a.json, a.net.timeouts())
    })
}
