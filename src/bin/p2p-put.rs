//! `p2p-put`: uploads a local file to a DHT supernode.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use peerkit::cli::{self, NetArgs};
use peerkit::dht::cmd;

/// Uploads PATH under its own file name to the supernode at HOST PORT.
/// Exits 1 if a file of that name is already there.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The supernode's host
    host: String,
    /// The supernode's port
    port: u16,
    /// The local file to upload
    path: PathBuf,
    #[command(flatten)]
    net: NetArgs,
}

fn main() -> ExitCode {
    let a = Args::parse();
    cli::run(env!("CARGO_BIN_NAME"), || {
        cmd::put(&a.host, a.port, &a.path, a.net.timeouts())
    })
}
