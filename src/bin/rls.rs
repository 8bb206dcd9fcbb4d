//! `rls`: lists remote directories served by `rdird`.

use std::process::ExitCode;

use clap::Parser;
use peerkit::cli;
use peerkit::rdir::cmd::{self, RlsArgs};

/// Lists each remote directory, one entry per line (raw bytes), in the
/// order the server's readdir returns them. The server is --server
/// HOST:PORT (or --server HOST --port PORT); without it $SERVIDOR (HOST or
/// HOST:PORT) and $PUERTO; in rpc mode a port not given comes from the
/// server's rpcbind.
/// Exit 1 if a directory is not there or is refused.
#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version,
    after_help = "Example:\n  rls --server 127.0.0.1:7654 docs music\n  \
                  SERVIDOR=127.0.0.1 PUERTO=7654 rls docs"
)]
struct Args {
    #[command(flatten)]
    rls: RlsArgs,
}

fn main() -> ExitCode {
    let a: Args = cli::parse();
    cli::run(env!("CARGO_BIN_NAME"), || cmd::rls(&a.rls))
}
