//! `bt-tracker`: the swarm tracker (default 0.0.0.0:6969).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use peerkit::cli::{self, DaemonArgs, ViewArgs};
use peerkit::swarm::{self, TrackerConfig, TrackerLimits, cmd};

/// Tracker of BitTorrent-like swarms: keeps each swarm's manifest and its
/// members' addresses and pieces (never file data), and evicts members
/// that stop pinging.
///
/// Listens on 0.0.0.0:6969 (every interface) unless --listen says otherwise.
/// A member on this host that registered over 127.0.0.1 is handed to peers
/// on other hosts at the address they reached the tracker at.
#[derive(Parser)]
#[command(
    version,
    after_help = "Example:\n  bt-tracker --listen 127.0.0.1:6969\n  \
                  bt-peer share movie.mkv --tracker 127.0.0.1:6969"
)]
struct Args {
    #[command(flatten)]
    daemon: DaemonArgs,

    /// The period peers ping at (their --ping-interval): a member silent for
    /// 3 of them is evicted, at most 1 s later
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = swarm::parse_secs)]
    ping_interval: Duration,

    /// Older name: evict members silent for 1.5 × SECS (ping interval SECS/2)
    #[arg(long, value_name = "SECS", value_parser = swarm::parse_secs, hide = true,
          conflicts_with = "ping_interval")]
    cleanup_interval: Option<Duration>,

    #[command(flatten)]
    verbosity: cli::Verbosity,

    #[command(flatten)]
    view: ViewArgs,
}

fn main() -> ExitCode {
    let a = Args::parse();
    cli::run(env!("CARGO_BIN_NAME"), || {
        let ping = a.cleanup_interval.map_or(a.ping_interval, |c| c / 2);
        let cfg = TrackerConfig {
            ping_interval: ping.max(Duration::from_millis(10)),
            server: a.daemon.limits(),
            limits: TrackerLimits::default(),
            quiet: a.verbosity.level() == cli::Level::Quiet,
            http: a.view.http.clone(),
        };
        cmd::tracker(&a.daemon.listen_or(cmd::TRACKER_LISTEN), &cfg)
    })
}
