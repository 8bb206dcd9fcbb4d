//! The Napster-like programs' bodies, called by the thin binaries.

use anyhow::bail;

use crate::nap::peer::{self, Options};
use crate::nap::server::{self, Config};
use crate::nap::time;
use crate::server::Limits;

/// `nap-server`: serves the directory until Ctrl-C or SIGTERM.
pub fn server(config: Config) -> anyhow::Result<()> {
    server::run(config)?;
    Ok(())
}

/// `nap-time`: serves the date-time until Ctrl-C or SIGTERM.
pub fn time(listen: &str, limits: Limits) -> anyhow::Result<()> {
    time::run(listen, limits)?;
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
    peer::run(opts)?;
    Ok(())
}

/// The `--listen` address: given, or any interface on `port`.
pub fn listen_addr(listen: Option<String>, port: u16) -> String {
    listen.unwrap_or_else(|| format!("0.0.0.0:{port}"))
}
