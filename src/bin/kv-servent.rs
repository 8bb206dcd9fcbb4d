//! `kv-servent PORT KV_FILE [HOST:PORT ...]`: a servent of the key-value
//! flooding network.

use std::process::ExitCode;

use clap::Parser;
use peerkit::cli;
use peerkit::flood::cmd::{self, ServentArgs};

/// A servent of the key-value flooding network: answers from its key-value
/// file and floods every query to its neighbours with a TTL.
#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version,
    after_help = "\
Examples:
  kv-servent 5001 testdata/flood/chain/s1.kv                  # first servent, port 5001
  kv-servent 5002 testdata/flood/chain/s2.kv 127.0.0.1:5001   # linked to a running one
  kv-query 127.0.0.1:5001 '?ssh'                              # ask it

A connection's ID must arrive within --request-timeout. Clients are closed after
--idle-timeout without a request; neighbour links after --link-idle-timeout. When
--max-conns connections, --max-clients clients or --max-links links are open, the
one idle longest is dropped for a newcomer."
)]
struct Args {
    #[command(flatten)]
    servent: ServentArgs,
}

fn main() -> ExitCode {
    let a: Args = cli::parse();
    cli::run(env!("CARGO_BIN_NAME"), || cmd::servent(a.servent))
}
