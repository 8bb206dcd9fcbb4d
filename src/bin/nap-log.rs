//! `nap-log`: the ONC RPC operation log of the Napster-like directory.

use std::process::ExitCode;

use clap::Parser;
use peerkit::cli;
use peerkit::nap::cmd::{self, PlainDaemonArgs};

/// Serves program 0x20000099 version 1 (operations.x) and prints
/// `USER OPERATION TIMESTAMP` for every LOG_OPERATION call. Registers with
/// the local rpcbind.
#[derive(Parser)]
#[command(name = env!("CARGO_BIN_NAME"), version)]
struct Args {
    #[command(flatten)]
    daemon: PlainDaemonArgs,
}

fn main() -> ExitCode {
    let a: Args = cli::parse();
    cli::run(env!("CARGO_BIN_NAME"), || cmd::log(a.daemon))
}
