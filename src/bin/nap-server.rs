//! `nap-server`: the Napster-like directory server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use peerkit::cli::{self, DaemonArgs, Verbosity, ViewArgs};
use peerkit::nap::server::{Config, DEFAULT_PORT, DEFAULT_WORKERS};
use peerkit::nap::{ResultFormat, cmd};

/// Keeps the users, where each is connected and what each has published;
/// answers the course's protocol, one request per connection, on a fixed
/// pool of workers. Prints `s> OPERATION FROM USER` per request.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Port to listen on (all interfaces); --listen overrides it
    #[arg(short, long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Folder holding the directory's state (kept across restarts); without
    /// it the state lives in memory only
    #[arg(long, value_name = "DIR")]
    storage: Option<PathBuf>,
    /// Worker threads carrying out requests
    #[arg(long, value_name = "N", default_value_t = DEFAULT_WORKERS, value_parser = cli::parse_count)]
    workers: usize,
    /// How result codes are sent: `text` ("0\0", the course's) or `byte`
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    result_format: ResultFormat,
    /// The operation log (nap-log): HOST, found through its rpcbind, or
    /// HOST:PORT; LOG_RPC_IP in the environment does the same
    #[arg(long, value_name = "HOST")]
    log_rpc: Option<String>,
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
        cmd::server(
            Config {
                listen: cmd::listen_addr(a.daemon.listen.clone(), a.port),
                limits: a.daemon.limits(),
                workers: a.workers,
                storage: a.storage,
                format: a.result_format,
                quiet: a.verbosity.quiet,
                verbose: a.verbosity.verbose,
                log: None,
                http: a.view.http,
            },
            a.log_rpc,
        )
    })
}
