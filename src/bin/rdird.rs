//! `rdird`: serves directories for remote reading, stateful, stateless or
//! as an ONC RPC program.

use std::process::ExitCode;

use clap::Parser;
use peerkit::cli;
use peerkit::rdir::cmd::{self, RdirdArgs};

/// Serves `opendir`/`readdir`/`closedir` on the folders under --root.
/// Prints `listening on HOST:PORT`, then one line per request (-q: none).
/// Paths outside the root, `..` above it and symlinks leading out are refused.
#[derive(Parser)]
#[command(name = env!("CARGO_BIN_NAME"), version)]
struct Args {
    #[command(flatten)]
    rdird: RdirdArgs,
}

fn main() -> ExitCode {
    let a: Args = cli::parse();
    cli::run(env!("CARGO_BIN_NAME"), || cmd::rdird_main(a.rdird))
}
