//! The Napster-like programs' bodies, called by the thin binaries.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use crate::cli::{self, DaemonArgs, Verbosity, ViewArgs};
use crate::nap::ResultFormat;
use crate::nap::oplog::{self, Sender, Target};
use crate::nap::peer::{self, Options};
use crate::nap::server::{self, Config, DEFAULT_PORT, DEFAULT_WORKERS};
use crate::nap::time_service;

/// `nap-server`'s flags.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Port to listen on (all interfaces); --listen overrides it
    #[arg(short, long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Folder holding the directory's state (kept across restarts); without
    /// it the state lives in memory only
    #[arg(long, value_name = "DIR")]
    pub storage: Option<PathBuf>,
    /// Worker threads carrying out requests
    #[arg(long, value_name = "N", default_value_t = DEFAULT_WORKERS, value_parser = cli::parse_count)]
    pub workers: usize,
    /// How result codes are sent: `text` ("0\0", the course's) or `byte`
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub result_format: ResultFormat,
    /// The operation log (nap-log): HOST, found through its rpcbind, or
    /// HOST:PORT; LOG_RPC_IP in the environment does the same
    #[arg(long, value_name = "HOST")]
    pub log_rpc: Option<String>,
    #[command(flatten)]
    pub daemon: DaemonArgs,
    #[command(flatten)]
    pub view: ViewArgs,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

/// `nap-server`: serves the directory until Ctrl-C or SIGTERM.
/// The log server is `--log-rpc HOST`, or else `$LOG_RPC_IP`.
pub fn server(a: ServerArgs) -> anyhow::Result<()> {
    let mut config = Config {
        listen: listen_addr(a.daemon.listen.clone(), a.port),
        limits: a.daemon.limits(),
        workers: a.workers,
        storage: a.storage,
        format: a.result_format,
        quiet: a.verbosity.quiet,
        verbose: a.verbosity.verbose,
        log: None,
        http: a.view.http,
    };
    let target = a
        .log_rpc
        .or_else(|| std::env::var("LOG_RPC_IP").ok().filter(|s| !s.is_empty()));
    if let Some(t) = target {
        config.log = Some(Box::new(Sender::start(Target::new(&t))?));
    }
    server::run(config)?;
    Ok(())
}

/// The flags of the daemons that take nothing but the common ones
/// (`nap-time`, `nap-log`).
#[derive(Debug, Clone, Args)]
pub struct PlainDaemonArgs {
    #[command(flatten)]
    pub daemon: DaemonArgs,
    #[command(flatten)]
    pub view: ViewArgs,
}

/// The whole binary of a daemon that takes only [`PlainDaemonArgs`]: its
/// doc comment (the help's description) and the `cmd` function it runs,
/// as uutils' `bin!` does for its tools:
///
/// ```ignore
/// peerkit::plain_daemon_main! {
///     /// Gives the date-time.
///     peerkit::nap::cmd::time
/// }
/// ```
#[macro_export]
macro_rules! plain_daemon_main {
    ($(#[doc = $doc:literal])* $run:path) => {
        $(#[doc = $doc])*
        #[derive(clap::Parser)]
        #[command(name = env!("CARGO_BIN_NAME"), version)]
        struct Args {
            #[command(flatten)]
            daemon: $crate::nap::cmd::PlainDaemonArgs,
        }

        fn main() -> std::process::ExitCode {
            let a: Args = $crate::cli::parse();
            $crate::cli::run(env!("CARGO_BIN_NAME"), || $run(a.daemon))
        }
    };
}

/// `nap-time`: serves the date-time until Ctrl-C or SIGTERM.
pub fn time(a: PlainDaemonArgs) -> anyhow::Result<()> {
    time_service::run(
        &a.daemon.listen_or(time_service::DEFAULT_LISTEN),
        a.daemon.limits(),
        a.view.http.as_deref(),
    )?;
    Ok(())
}

/// `nap-peer`: the shell, until QUIT or the end of input.
pub fn peer(opts: Options) -> anyhow::Result<()> {
    if !opts.share.is_dir() {
        bail!("--share {}: not a folder", opts.share.display());
    }
    if let Some(url) = &opts.time_url
        && !url.starts_with("http://")
    {
        bail!("--time-url {url}: only http:// URLs are supported");
    }
    let summary = peer::run(opts, crate::cli::stdout())?;
    if summary.ended == peer::Ended::Interrupted {
        return Err(crate::cli::Interrupted("interrupted".into()).into());
    }
    // As kv-query: commands from a pipe whose operation failed make the
    // exit status 1 (a person at a terminal saw each message).
    if !summary.terminal && summary.failed > 0 {
        return Err(crate::cli::Refused(format!(
            "{} of {} commands failed",
            summary.failed, summary.ran
        ))
        .into());
    }
    Ok(())
}

/// The directory server's address from `-s` and `-p`: `-s HOST:PORT`, or
/// `-s HOST -p PORT` (the course's form).
pub fn server_addr(server: &str, port: Option<u16>) -> anyhow::Result<(String, u16)> {
    if let Some(port) = port {
        return Ok((server.to_string(), port));
    }
    match split_host_port(server) {
        Some((host, port)) => Ok((host.to_string(), port)),
        None => bail!("missing port in {server:?} (expected HOST:PORT, or -s HOST -p PORT)"),
    }
}

/// `HOST:PORT` or `[IPv6]:PORT` split in two.
fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    (!host.is_empty()).then_some((host, port))
}

/// The `--listen` address: given, or any interface on `port`.
pub fn listen_addr(listen: Option<String>, port: u16) -> String {
    listen.unwrap_or_else(|| format!("0.0.0.0:{port}"))
}

/// `nap-log`: prints every logged operation until Ctrl-C or SIGTERM.
pub fn log(a: PlainDaemonArgs) -> anyhow::Result<()> {
    oplog::run(
        &a.daemon.listen_or("0.0.0.0:0"),
        a.daemon.limits(),
        a.view.http.as_deref(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_is_host_port_or_host_and_port() {
        assert_eq!(server_addr("h:5000", None).unwrap(), ("h".into(), 5000));
        assert_eq!(server_addr("[::1]:7", None).unwrap(), ("::1".into(), 7));
        assert_eq!(server_addr("h", Some(5)).unwrap(), ("h".into(), 5));
        let err = server_addr("127.0.0.1", None).unwrap_err().to_string();
        assert!(err.starts_with("missing port in \"127.0.0.1\""), "{err}");
        assert!(server_addr("::1", None).is_err());
        assert!(server_addr(":80", None).is_err());
    }
}
