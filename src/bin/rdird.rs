//! `rdird`: serves directories for remote reading, stateful, stateless or
//! as an ONC RPC program.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use peerkit::cli::{self, DaemonArgs, Level, Verbosity, ViewArgs};
use peerkit::rdir::cmd::{self, DaemonOptions};
use peerkit::rdir::{DEFAULT_LISTEN, Mode, rpc, stateful};

/// Serves `opendir`/`readdir`/`closedir` on the folders under --root.
/// Prints `listening on HOST:PORT`, then one line per request (-q: none).
/// Paths outside the root, `..` above it and symlinks leading out are refused.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The design served
    #[arg(long, value_enum, default_value_t = Mode::Stateless)]
    mode: Mode,
    /// Folder served; nothing outside it is
    #[arg(long, value_name = "DIR", default_value = ".")]
    root: PathBuf,
    /// RPC program number (rpc mode)
    #[arg(long, value_name = "N", default_value_t = rpc::NUMPROG, value_parser = cmd::parse_prog)]
    prog: u32,
    /// Directories open at once (stateful mode; one connection holds at most an eighth)
    #[arg(long, value_name = "N", default_value_t = stateful::DEFAULT_MAX_OPEN,
          value_parser = cli::parse_count)]
    max_open: usize,
    /// Seconds an open directory may go unused before it is closed (stateful mode)
    #[arg(long, value_name = "SECS", default_value_t = stateful::DEFAULT_DIR_IDLE.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    dir_idle: u64,
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
        cmd::rdird(
            &a.daemon.listen_or(DEFAULT_LISTEN),
            a.daemon.limits(),
            DaemonOptions {
                mode: a.mode,
                root: a.root.clone(),
                prog: a.prog,
                max_open: a.max_open,
                dir_idle: Duration::from_secs(a.dir_idle),
                log: a.verbosity.level() > Level::Quiet,
                http: a.view.http.clone(),
            },
        )
    })
}
