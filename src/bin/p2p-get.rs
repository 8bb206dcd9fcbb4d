//! `p2p-get`: downloads a file from the DHT, following redirects.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use peerkit::cli::{self, NetArgs};
use peerkit::dht::cmd;

/// Downloads NAME through the supernode at HOST PORT, following redirects to
/// the supernode responsible for it. Exits 1 if no supernode has it.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The supernode's host
    host: String,
    /// The supernode's port
    port: u16,
    /// The file name
    name: String,
    /// Where to write it (default: NAME in the current folder; `-` for stdout)
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
    #[command(flatten)]
    net: NetArgs,
}

fn main() -> ExitCode {
    let a = Args::parse();
    cli::run(env!("CARGO_BIN_NAME"), || {
        cmd::get(
            &a.host,
            a.port,
            &a.name,
            a.output.as_deref(),
            a.net.timeouts(),
        )
    })
}
