//! `kv-servent PORT KV_FILE [IP:PORT ...]`: a servent of the key-value
//! flooding network.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use peerkit::cli::{self, LimitArgs, NetArgs, Verbosity, ViewArgs};
use peerkit::flood::cmd;
use peerkit::flood::servent::{
    Config, DEFAULT_LINK_IDLE_TIMEOUT, DEFAULT_MAX_CLIENTS, DEFAULT_MAX_LINKS, DEFAULT_SEEN_FOR,
    DEFAULT_TTL,
};

/// A servent of the key-value flooding network: answers from its key-value
/// file and floods every query to its neighbours with a TTL.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "\
Examples:
  kv-servent 5001 testdata/flood/chain/s1.kv                  # first servent, port 5001
  kv-servent 5002 testdata/flood/chain/s2.kv 127.0.0.1:5001   # linked to a running one
  kv-query 127.0.0.1:5001 '?ssh'                              # ask it

A connection's ID must arrive within --request-timeout. Clients are closed after
--idle-timeout without a request; neighbour links after --link-idle-timeout. When
--max-conns connections, --max-clients clients or --max-links links are open, the
one idle longest is dropped for a newcomer."
)]
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
    /// Interface address to listen on (all IPv4 interfaces by default)
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Seconds a query is remembered, to drop its duplicates
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_SEEN_FOR.as_secs())]
    seen_secs: u64,
    /// Client connections open at once; when all are taken, the one idle
    /// longest is dropped for a newcomer
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CLIENTS, value_parser = cli::parse_count)]
    max_clients: usize,
    /// Neighbour links accepted at once; when all are taken, the one idle
    /// longest is dropped for a newcomer
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_LINKS, value_parser = cli::parse_count)]
    max_links: usize,
    /// Seconds an accepted neighbour link may stay silent before it is closed
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_LINK_IDLE_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    link_idle_timeout: u64,
    #[command(flatten)]
    view: ViewArgs,
    #[command(flatten)]
    verbosity: Verbosity,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    net: NetArgs,
}

fn main() -> ExitCode {
    let a = Args::parse();
    cli::run(env!("CARGO_BIN_NAME"), || {
        cmd::servent(Config {
            bind: a.bind,
            port: a.port,
            kv_file: a.kv_file,
            neighbours: a.neighbours,
            ttl: a.ttl,
            seen_for: Duration::from_secs(a.seen_secs),
            limits: a.limits.limits(&a.net),
            max_clients: a.max_clients,
            max_links: a.max_links,
            link_idle_timeout: Duration::from_secs(a.link_idle_timeout),
            level: a.verbosity.level(),
            http: a.view.http,
        })
    })
}
