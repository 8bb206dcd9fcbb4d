//! `bt-tracker`: the swarm tracker (default 0.0.0.0:6969).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use peerkit::cli::{self, DaemonArgs};
use peerkit::swarm::{self, TrackerConfig, tracker};

/// Tracker of BitTorrent-like swarms: keeps each swarm's manifest and its
/// members' addresses and pieces (never file data), and evicts members
/// that stop pinging.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    daemon: DaemonArgs,

    /// Evict members that sent nothing since the previous cleanup, every SECS
    #[arg(long, value_name = "SECS", default_value = "15", value_parser = swarm::parse_secs)]
    cleanup_interval: Duration,
}

fn main() -> ExitCode {
    let a = Args::parse();
    cli::run(env!("CARGO_BIN_NAME"), || {
        let cfg = TrackerConfig {
            cleanup_interval: a.cleanup_interval.max(Duration::from_millis(10)),
            server: a.daemon.limits(),
            limits: tracker::Limits::default(),
        };
        Ok(tracker::run(
            &a.daemon.listen_or(tracker::DEFAULT_LISTEN),
            &cfg,
        )?)
    })
}
