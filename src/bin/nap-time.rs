//! `nap-time`: the date-time web service (plain text and SOAP 1.1).

use std::process::ExitCode;

use clap::Parser;
use peerkit::cli;
use peerkit::nap::cmd::{self, PlainDaemonArgs};

/// Gives the date-time (UTC, `DD/MM/YYYY HH:MM:SS`): as text at `GET /`,
/// and as the SOAP operation `get_current_datetime` described at `/?wsdl`.
#[derive(Parser)]
#[command(name = env!("CARGO_BIN_NAME"), version)]
struct Args {
    #[command(flatten)]
    daemon: PlainDaemonArgs,
}

fn main() -> ExitCode {
    let a: Args = cli::parse();
    cli::run(env!("CARGO_BIN_NAME"), || cmd::time(a.daemon))
}
