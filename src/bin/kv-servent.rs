//! `kv-servent PORT KV_FILE [IP:PORT ...]`: a servent of the key-value
//! flooding network.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use peerkit::cli::{self, LimitArgs, NetArgs};
use peerkit::flood::KvStore;
use peerkit::flood::servent::{
    self, Config, DEFAULT_MAX_CLIENTS, DEFAULT_MAX_LINKS, DEFAULT_SEEN_FOR, DEFAULT_TTL,
};
use peerkit::shutdown::Shutdown;

/// A servent of the key-value flooding network: answers from its key-value
/// file and floods every query to its neighbours with a TTL.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Port to listen on (0 picks a free one)
    port: u16,
    /// Key-value file: `KEY VALUE...` per line, `#` comments
    kv_file: PathBuf,
    /// Neighbours to connect to, already running
    #[arg(value_name = "IP:PORT")]
    neighbours: Vec<String>,
    /// TTL given to the floods this servent starts
    #[arg(long, default_value_t = DEFAULT_TTL, value_parser = clap::value_parser!(u16).range(1..))]
    ttl: u16,
    /// Interface address to listen on
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Seconds a query is remembered, to drop its duplicates
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_SEEN_FOR.as_secs())]
    seen_secs: u64,
    /// Client connections open at once; more are closed with a line on stderr
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CLIENTS, value_parser = at_least_one)]
    max_clients: usize,
    /// Neighbour links accepted at once; more are closed with a line on stderr
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_LINKS, value_parser = at_least_one)]
    max_links: usize,
    /// Print only link changes and the final stats, not every query
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    net: NetArgs,
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=65_536).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a number from 1 to 65536")),
    }
}

fn main() -> ExitCode {
    let a = Args::parse();
    cli::run(env!("CARGO_BIN_NAME"), || {
        let config = Config {
            bind: a.bind,
            port: a.port,
            kv: KvStore::load(&a.kv_file)?,
            neighbours: a.neighbours,
            ttl: a.ttl,
            seen_for: Duration::from_secs(a.seen_secs),
            limits: a.limits.limits(&a.net),
            max_clients: a.max_clients,
            max_links: a.max_links,
            quiet: a.quiet,
        };
        servent::run(config, &Shutdown::install()?)
    })
}
