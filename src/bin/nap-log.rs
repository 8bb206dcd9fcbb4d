//! `nap-log`: the ONC RPC operation log of the Napster-like directory.

use std::process::ExitCode;

use clap::Parser;
use peerkit::cli::{self, DaemonArgs, ViewArgs};
use peerkit::nap::cmd;

/// Serves program 0x20000099 version 1 (operations.x) and prints
/// `USER OPERATION TIMESTAMP` for every LOG_OPERATION call. Registers with
/// the local rpcbind.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    daemon: DaemonArgs,
    #[command(flatten)]
    view: ViewArgs,
}

fn main() -> ExitCode {
    let a = Args::parse();
    cli::run(env!("CARGO_BIN_NAME"), || {
        cmd::log(
            &a.daemon.listen_or("0.0.0.0:0"),
            a.daemon.limits(),
            a.view.http.as_deref(),
        )
    })
}
