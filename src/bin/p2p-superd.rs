//! `p2p-superd`: a DHT supernode serving one repository folder.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use peerkit::cli::{self, DaemonArgs};
use peerkit::dht::{cmd, superd};

/// A supernode: serves the files of REPO_DIR, joins the index's ring, and
/// copies each file to the supernode responsible for it. On Ctrl-C or
/// SIGTERM it leaves the ring, makes a last sync and exits.
#[derive(Parser)]
#[command(version)]
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
}

fn main() -> ExitCode {
    let a = Args::parse();
    cli::run(env!("CARGO_BIN_NAME"), || {
        cmd::superd(
            a.repo_dir,
            a.index,
            a.daemon.listen_or(superd::DEFAULT_LISTEN),
            a.sync_interval,
            a.heartbeat,
            a.daemon.limits(),
        )
    })
}
