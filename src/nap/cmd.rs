//! The Napster-like programs' bodies, called by the thin binaries.

use anyhow::bail;

use crate::nap::oplog::{self, Sender, Target};
use crate::nap::peer::{self, Options};
use crate::nap::server::{self, Config};
use crate::nap::time_service;
use crate::server::Limits;

/// `nap-server`: serves the directory until Ctrl-C or SIGTERM.
/// The log server is `--log-rpc HOST`, or else `$LOG_RPC_IP`.
pub fn server(mut config: Config, log_rpc: Option<String>) -> anyhow::Result<()> {
    let target = log_rpc.or_else(|| std::env::var("LOG_RPC_IP").ok().filter(|s| !s.is_empty()));
    if let Some(t) = target {
        config.log = Some(Box::new(Sender::start(Target::new(&t))?));
    }
    server::run(config)?;
    Ok(())
}

/// `nap-time`: serves the date-time until Ctrl-C or SIGTERM.
pub fn time(listen: &str, limits: Limits, http: Option<&str>) -> anyhow::Result<()> {
    time_service::run(listen, limits, http)?;
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
    peer::run(opts, crate::cli::stdout())?;
    Ok(())
}

/// The `--listen` address: given, or any interface on `port`.
pub fn listen_addr(listen: Option<String>, port: u16) -> String {
    listen.unwrap_or_else(|| format!("0.0.0.0:{port}"))
}

/// `nap-log`: prints every logged operation until Ctrl-C or SIGTERM.
pub fn log(listen: &str, limits: Limits, http: Option<&str>) -> anyhow::Result<()> {
    oplog::run(listen, limits, http)?;
    Ok(())
}
