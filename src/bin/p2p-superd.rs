//! `p2p-superd`: a DHT supernode serving one repository folder.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use peerkit::cli::{self, DaemonArgs, Verbosity, ViewArgs};
use peerkit::dht::cmd::{self, SuperdArgs};
use peerkit::dht::superd;

/// A supernode: shares the files of REPO_DIR, joins the index's ring, and
/// copies each file to the supernode responsible for it. On Ctrl-C or
/// SIGTERM it leaves the ring, makes a last sync and exits.
#[derive(Parser)]
#[command(
    version,
    after_help = "What is shared: the regular files directly in REPO_DIR (the current \
                  folder if none is given). Hidden files (names starting with `.`), \
                  folders and links are never listed, served, synced or accepted.\n\
                  Where: every interface (0.0.0.0) on a port the system picks, unless \
                  --listen is given; the first line on stdout is `listening on HOST:PORT`.\n\n\
                  Example:\n  p2p-superd ~/shared --index 192.168.1.10:6110 --listen 0.0.0.0:7000"
)]
struct Args {
    /// The repository folder
    #[arg(default_value = ".")]
    repo_dir: PathBuf,

    /// The index server, HOST:PORT
    #[arg(long, value_name = "HOST:PORT", default_value = superd::DEFAULT_INDEX)]
    index: String,

    /// Seconds between synchronizer rounds (fractions allowed)
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    sync_interval: f64,

    /// Seconds between keep-alives on a quiet control connection to the
    /// index (fractions allowed, at most 10)
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    heartbeat: f64,

    #[command(flatten)]
    daemon: DaemonArgs,
    #[command(flatten)]
    view: ViewArgs,
    #[command(flatten)]
    verbosity: Verbosity,
}

fn main() -> ExitCode {
    let a = Args::parse();
    cli::run(env!("CARGO_BIN_NAME"), || {
        cmd::superd(SuperdArgs {
            repo: a.repo_dir,
            index: a.index,
            listen: a.daemon.listen_or(superd::DEFAULT_LISTEN),
            sync_interval_secs: a.sync_interval,
            heartbeat_secs: a.heartbeat,
            limits: a.daemon.limits(),
            level: a.verbosity.level(),
            http: a.view.http,
        })
    })
}
