//! The DHT programs' bodies, called by the thin binaries: argument
//! checks, the library call, and what gets printed (anyhow for context).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::{self, Refused};
use crate::dht::client::{self, Dest, Fetched, Put};
use crate::dht::proto::MAX_HEARTBEAT;
use crate::dht::{index, superd};
use crate::name::FileName;
use crate::net::{self, Timeouts};
use crate::server::Limits;

/// `p2p-index`: serves the ring until Ctrl-C or SIGTERM.
pub fn index(listen: &str, limits: Limits) -> anyhow::Result<()> {
    index::run(listen, limits)?;
    Ok(())
}

/// `p2p-superd`: runs a supernode until Ctrl-C or SIGTERM, then leaves.
pub fn superd(
    repo: PathBuf,
    index: String,
    listen: String,
    sync_interval_secs: f64,
    heartbeat_secs: f64,
    limits: Limits,
) -> anyhow::Result<()> {
    if !(sync_interval_secs.is_finite() && sync_interval_secs > 0.0 && sync_interval_secs < 1e6) {
        bail!("--sync-interval must be a positive number of seconds");
    }
    let max_beat = MAX_HEARTBEAT.as_secs_f64();
    if !(heartbeat_secs.is_finite() && heartbeat_secs > 0.0 && heartbeat_secs <= max_beat) {
        bail!("--heartbeat must be a positive number of seconds, at most {max_beat}");
    }
    superd::run(superd::Options {
        repo,
        index,
        listen,
        sync_interval: Duration::from_secs_f64(sync_interval_secs),
        heartbeat: Duration::from_secs_f64(heartbeat_secs),
        limits,
    })?;
    Ok(())
}

/// `p2p-ls`: prints the names of one supernode's repository.
pub fn ls(host: &str, port: u16, json: bool, timeouts: Timeouts) -> anyhow::Result<()> {
    let addr = net::host_port(host, port);
    let names = client::list(&addr, &timeouts).with_context(|| format!("listing {addr}"))?;
    let mut out = cli::stdout();
    if json {
        let items: Vec<String> = names.iter().map(|n| json_string(n.as_str())).collect();
        writeln!(out, "[{}]", items.join(","))?;
    } else {
        for n in &names {
            writeln!(out, "{n}")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `p2p-get`: downloads NAME to the current folder, to PATH, or to stdout (`-`).
pub fn get(
    host: &str,
    port: u16,
    name: &str,
    output: Option<&Path>,
    timeouts: Timeouts,
) -> anyhow::Result<()> {
    let addr = net::host_port(host, port);
    let name = FileName::new(name)?;
    let dest = match output {
        Some(p) if p == Path::new("-") => Dest::Stdout,
        Some(p) => Dest::Path(p.to_path_buf()),
        None => Dest::Path(PathBuf::from(name.as_str())),
    };
    let fetched = client::get(
        &addr,
        &name,
        &dest,
        &timeouts,
        |from, to| eprintln!("{name} not found at {from}, redirecting to {to}"),
        |len| cli::byte_bar(len, name.as_str()),
    )
    .with_context(|| format!("getting {name} from {addr}"))?;
    match fetched {
        Fetched::Got { .. } => Ok(()),
        Fetched::NotAvailable { .. } => {
            Err(Refused(format!("{name} is not available in the network")).into())
        }
    }
}

/// `p2p-put`: uploads a local file under its own name.
pub fn put(host: &str, port: u16, path: &Path, timeouts: Timeouts) -> anyhow::Result<()> {
    let addr = net::host_port(host, port);
    let name = FileName::from_path(path).with_context(|| format!("{}", path.display()))?;
    let put = client::put(&addr, path, &timeouts, |len| {
        cli::byte_bar(len, name.as_str())
    })
    .with_context(|| format!("uploading {} to {addr}", path.display()))?;
    match put {
        Put::Stored { .. } => Ok(()),
        Put::AlreadyExists => Err(Refused(format!("{name} already exists at {addr}")).into()),
    }
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a b"), "\"a b\"");
        assert_eq!(json_string("q\"\\\n\u{1}é"), "\"q\\\"\\\\\\n\\u0001é\"");
    }
}
