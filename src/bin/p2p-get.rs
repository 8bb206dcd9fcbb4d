//! `p2p-get`: downloads a file from the DHT, following redirects.

use std::process::ExitCode;

use clap::Parser;
use peerkit::cli;
use peerkit::dht::cmd::{self, GetArgs};

/// Downloads NAME through a supernode, following redirects to the supernode
/// responsible for it, and checks its BLAKE3 digest. It arrives in `.NAME.part`
/// beside the destination and takes its name only once verified; an
/// existing file is never replaced without --force. An interrupted or cut
/// download keeps `.NAME.part` and prints the command that resumes it
/// (unless --no-keep-partial); one that fails verification leaves nothing.
/// Exits 1 if no supernode has it or the file exists, 130 when interrupted
/// (a second Ctrl-C exits at once).
#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version,
    override_usage = "p2p-get [OPTIONS] HOST:PORT NAME\n       p2p-get [OPTIONS] HOST PORT NAME",
    after_help = "Example:\n  p2p-get 127.0.0.1:7000 notes.txt\n  \
                  p2p-get -o - 127.0.0.1 7000 notes.txt | less\n  \
                  p2p-get --continue 127.0.0.1:7000 big.iso    # after an interrupted download"
)]
struct Args {
    #[command(flatten)]
    get: GetArgs,
}

fn main() -> ExitCode {
    let a: Args = cli::parse();
    cli::run(env!("CARGO_BIN_NAME"), || cmd::get(a.get))
}
