//! `p2p-get`: downloads a file from the DHT, following redirects.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use peerkit::cli::{self, NetArgs, Verbosity};
use peerkit::dht::cmd::{self, GetArgs};

/// Downloads NAME through a supernode, following redirects to the supernode
/// responsible for it, and checks its BLAKE3 digest. It arrives in `.NAME.part`
/// beside the destination and takes its name only once verified; an
/// existing file is never replaced without --force. Exits 1 if no
/// supernode has it or the file exists, 130 when interrupted.
#[derive(Parser)]
#[command(
    version,
    override_usage = "p2p-get [OPTIONS] HOST:PORT NAME\n       p2p-get [OPTIONS] HOST PORT NAME",
    after_help = "Example:\n  p2p-get 127.0.0.1:7000 notes.txt\n  \
                  p2p-get -o - 127.0.0.1 7000 notes.txt | less\n  \
                  p2p-get --continue 127.0.0.1:7000 big.iso    # after an interrupted download"
)]
struct Args {
    /// HOST:PORT NAME, or HOST PORT NAME
    #[arg(value_name = "ARGS", required = true, num_args = 2..=3)]
    operands: Vec<String>,
    /// Where to write it: a file, a folder to put NAME in, or `-` for
    /// stdout (default: NAME in the current folder)
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Replace a file already at the destination (default: refuse, exit 1)
    #[arg(short, long)]
    force: bool,
    /// Resume an interrupted download from its partial file; the whole file's
    /// digest is still checked. Implies --keep-partial
    #[arg(short = 'c', long = "continue")]
    resume: bool,
    /// Keep the partial file when the download fails or is interrupted
    /// (default: remove it)
    #[arg(long)]
    keep_partial: bool,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    verbosity: Verbosity,
}

fn main() -> ExitCode {
    let a = Args::parse();
    cli::run(env!("CARGO_BIN_NAME"), || {
        let args = GetArgs {
            output: a.output,
            force: a.force,
            resume: a.resume,
            keep_partial: a.keep_partial,
        };
        cmd::get(&a.operands, args, a.net.timeouts(), a.verbosity.level())
    })
}
