//! `rls`: lists remote directories served by `rdird`.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use peerkit::cli::{self, NetArgs};
use peerkit::rdir::cmd::{self, LsOptions};
use peerkit::rdir::{MAX_BATCH, Mode, rpc};

/// Lists each remote directory, one entry per line (raw bytes), in the
/// order the server's readdir returns them. The server and port come from
/// $SERVIDOR and $PUERTO when the flags are absent; in rpc mode the port
/// comes from the server's rpcbind unless --port is given.
/// Exit 1 if a directory is not there or is refused.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The design to use
    #[arg(long, value_enum, default_value_t = Mode::Stateless)]
    mode: Mode,
    /// Server host (default: $SERVIDOR, else 127.0.0.1)
    #[arg(long, value_name = "HOST")]
    server: Option<String>,
    /// Server port (default: $PUERTO, else 7654; rpc: ask rpcbind)
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    /// Entries per request, 1 to 1024
    #[arg(long, value_name = "N", default_value_t = MAX_BATCH,
          value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH as i64))]
    batch: u32,
    /// Open every directory and read them alternately, one entry each
    #[arg(long)]
    mix: bool,
    /// One JSON object per entry: {"dir":..,"name":..}; a name that is not
    /// UTF-8 comes as "name_bytes":[..] instead
    #[arg(long)]
    json: bool,
    /// RPC program number
    #[arg(long, value_name = "N", default_value_t = rpc::NUMPROG, value_parser = cmd::parse_prog)]
    prog: u32,
    /// Milliseconds to wait before each request after the first (demos)
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pause_ms: u64,
    /// Stateful: read with this handle (hex) instead of opening, to see the
    /// server refuse a handle it did not give (after a restart, made up)
    #[arg(long, value_name = "HEX", value_parser = parse_handle)]
    handle: Option<u64>,
    #[command(flatten)]
    net: NetArgs,
    /// Remote directories (relative to the server's root, or absolute in it)
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<OsString>,
}

fn parse_handle(s: &str) -> Result<u64, String> {
    let hex = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u64::from_str_radix(hex, 16).map_err(|_| format!("{s:?} is not a hexadecimal handle"))
}

fn main() -> ExitCode {
    let a = Args::parse();
    cli::run(env!("CARGO_BIN_NAME"), || {
        cmd::rls(
            &LsOptions {
                mode: a.mode,
                server: a.server.clone(),
                port: a.port,
                prog: a.prog,
                batch: a.batch,
                mix: a.mix,
                json: a.json,
                pause: Duration::from_millis(a.pause_ms),
                timeouts: a.net.timeouts(),
                handle: a.handle,
            },
            &a.dirs,
        )
    })
}
