//! `nap-time`: the date-time web service (plain text and SOAP 1.1).

use std::process::ExitCode;

use clap::Parser;
use peerkit::cli::{self, DaemonArgs, ViewArgs};
use peerkit::nap::{cmd, time_service};

/// Gives the date-time (UTC, `DD/MM/YYYY HH:MM:SS`): as text at `GET /`,
/// and as the SOAP operation `get_current_datetime` described at `/?wsdl`.
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
        cmd::time(
            &a.daemon.listen_or(time_service::DEFAULT_LISTEN),
            a.daemon.limits(),
            a.view.http.as_deref(),
        )
    })
}
