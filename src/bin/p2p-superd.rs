//! `p2p-superd`: a DHT supernode serving one repository folder.

use std::process::ExitCode;

use clap::Parser;
use peerkit::cli;
use peerkit::dht::cmd::{self, SuperdArgs};

/// A supernode: shares the files of REPO_DIR, joins the index's ring, and
/// copies each file to the supernode responsible for it. On Ctrl-C or
/// SIGTERM it leaves the ring, makes a last sync and exits.
#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version,
    after_help = "What is shared: the regular files directly in REPO_DIR (the current \
                  folder if none is given). Hidden files (names starting with `.`), \
                  folders and links are never listed, served, synced or accepted.\n\
                  Where: every interface (0.0.0.0) on a port the system picks, unless \
                  --listen is given; the first line on stdout is `listening on HOST:PORT`.\n\n\
                  Example:\n  p2p-superd ~/shared --index 192.168.1.10:6110 --listen 0.0.0.0:7000"
)]
struct Args {
    #[command(flatten)]
    superd: SuperdArgs,
}

fn main() -> ExitCode {
    let a: Args = cli::parse();
    cli::run(env!("CARGO_BIN_NAME"), || cmd::superd(a.superd))
}
