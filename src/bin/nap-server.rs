//! `nap-server`: the Napster-like directory server.

use std::process::ExitCode;

use clap::Parser;
use peerkit::cli;
use peerkit::nap::cmd::{self, ServerArgs};

/// Keeps the users, where each is connected and what each has published;
/// answers the course's protocol, one request per connection, on a fixed
/// pool of workers. Prints `s> OPERATION FROM USER` per request.
#[derive(Parser)]
#[command(name = env!("CARGO_BIN_NAME"), version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> ExitCode {
    let a: Args = cli::parse();
    cli::run(env!("CARGO_BIN_NAME"), || cmd::server(a.server))
}
