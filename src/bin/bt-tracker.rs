//! `bt-tracker`: the swarm tracker (default 0.0.0.0:6969).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use peerkit::cli::{self, DaemonArgs};
use peerkit::swarm::{self, TrackerConfig, TrackerLimits, cmd};

/// Tracker of BitTorrent-like swarms: keeps each swarm's manifest and its
/// members' addresses and pieces (never file data), and evicts members
/// that stop pinging.
///
/// Listens on 0.0.0.0:6969 (every interface) unless --listen says otherwise.
#[derive(Parser)]
#[command(
    version,
    after_help = "Example:\n  bt-tracker --listen 127.0.0.1:6969\n  \
                  bt-peer share movie.mkv --tracker 127.0.0.1:6969"
)]
struct Args {
    #[command(flatten)]
    daemon: DaemonArgs,

    /// Evict members that sent nothing since the previous cleanup, every SECS
    #[arg(long, value_name = "SECS", default_value = "15", value_parser = swarm::parse_secs)]
    cleanup_interval: Duration,

    #[command(flatten)]
    verbosity: cli::Verbosity,
}

fn main() -> ExitCode {
    let a = Args::parse();
    cli::run(env!("CARGO_BIN_NAME"), || {
        let cfg = TrackerConfig {
            cleanup_interval: a.cleanup_interval.max(Duration::from_millis(10)),
            server: a.daemon.limits(),
            limits: TrackerLimits::default(),
            quiet: a.verbosity.level() == cli::Level::Quiet,
        };
        cmd::tracker(&a.daemon.listen_or(cmd::TRACKER_LISTEN), &cfg)
    })
}
