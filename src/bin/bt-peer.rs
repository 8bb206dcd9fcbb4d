//! `bt-peer`: shares a file into a swarm, or fetches one from it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};
use peerkit::cli::{self, DaemonArgs, Verbosity, ViewArgs};
use peerkit::swarm::{self, PeerConfig, WhenDone, cmd};

/// A peer of a BitTorrent-like swarm: fetches pieces rarest first from
/// other peers, checks each one, and serves what it holds.
///
/// A peer listens on 0.0.0.0 (every interface) at a free port unless
/// --listen says otherwise; the tracker learns the port and tells others.
#[derive(Parser)]
#[command(
    version,
    after_help = "Example:\n  bt-tracker --listen 127.0.0.1:6969 &\n  \
                  bt-peer share movie.mkv --tracker 127.0.0.1:6969 &\n  \
                  bt-peer fetch movie.mkv --tracker 127.0.0.1:6969 --out downloads --exit-when-done"
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Share FILE: build its manifest, print the swarm id, serve until Ctrl-C
    #[command(
        after_help = "Example:\n  bt-peer share movie.mkv --tracker 127.0.0.1:6969 --upload-limit 4M"
    )]
    Share {
        /// The file to share
        file: PathBuf,
        /// Piece size in bytes, a power of two from 16K to 16M [default: 256K,
        /// larger for files over 1 GiB]
        #[arg(long, value_name = "SIZE", value_parser = piece_size)]
        piece_size: Option<u32>,
        #[command(flatten)]
        common: Common,
    },
    /// Fetch a swarm's file by name or id into --out, then seed it until
    /// Ctrl-C (or exit with --exit-when-done)
    #[command(
        after_help = "Exit status: 0 complete (or seeding stopped by Ctrl-C), 1 no such swarm, \
                      2 error, or interrupted before complete with --exit-when-done.\n\n\
                      Example:\n  bt-peer fetch movie.mkv --tracker 127.0.0.1:6969 --out downloads --exit-when-done"
    )]
    Fetch {
        /// The file name, or the 64-hex-digit swarm id
        what: String,
        /// Folder to download into (a partial download there is resumed)
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// Exit once the file is complete instead of seeding
        #[arg(long)]
        exit_when_done: bool,
        /// Seconds between piece requests (0: as fast as peers answer)
        #[arg(long, value_name = "SECS", default_value = "0", value_parser = swarm::parse_secs)]
        request_interval: Duration,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(ClapArgs)]
struct Common {
    /// The tracker, HOST:PORT
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:6969")]
    tracker: String,
    /// Seconds between pings to the tracker
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = swarm::parse_secs)]
    ping_interval: Duration,
    /// Seconds between piece-list reports to the tracker
    #[arg(long, value_name = "SECS", default_value = "20", value_parser = swarm::parse_secs)]
    report_interval: Duration,
    /// Cap on total upload, bytes per second (K, M, G = 1024 multiples), e.g. 4M
    /// [default: no cap]
    #[arg(long, value_name = "RATE", value_parser = swarm::parse_rate)]
    upload_limit: Option<u64>,
    #[command(flatten)]
    verbosity: Verbosity,
    #[command(flatten)]
    daemon: DaemonArgs,
    #[command(flatten)]
    view: ViewArgs,
}

impl Common {
    fn config(&self, request_interval: Duration) -> PeerConfig {
        let floor = Duration::from_millis(10);
        PeerConfig {
            tracker: self.tracker.clone(),
            limits: self.daemon.limits(),
            ping_interval: self.ping_interval.max(floor),
            report_interval: self.report_interval.max(floor),
            request_interval,
            upload_limit: self.upload_limit,
            level: self.verbosity.level(),
            http: self.view.http.clone(),
        }
    }

    fn listen(&self) -> String {
        self.daemon.listen_or("0.0.0.0:0")
    }
}

fn piece_size(s: &str) -> Result<u32, String> {
    let v = swarm::parse_rate(s)?;
    let v = u32::try_from(v).map_err(|_| format!("{s:?} is too large"))?;
    swarm::check_piece_size(v)?;
    Ok(v)
}

fn main() -> ExitCode {
    let a = Args::parse();
    cli::run(env!("CARGO_BIN_NAME"), || match a.cmd {
        Cmd::Share {
            file,
            piece_size,
            common,
        } => cmd::share(
            &file,
            piece_size,
            &common.listen(),
            common.config(Duration::ZERO),
        ),
        Cmd::Fetch {
            what,
            out,
            exit_when_done,
            request_interval,
            common,
        } => {
            let when_done = if exit_when_done {
                WhenDone::Exit
            } else {
                WhenDone::Seed
            };
            cmd::fetch(
                &what,
                &out,
                when_done,
                &common.listen(),
                common.config(request_interval),
            )
        }
    })
}
