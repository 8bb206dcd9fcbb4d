//! `nap-peer`: a peer of the Napster-like directory, as a `c> ` shell.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use peerkit::cli::{self, NetArgs, ViewArgs};
use peerkit::nap::cmd;
use peerkit::nap::peer::Options;

/// Registers, connects, publishes, lists and fetches files from other peers
/// through a directory server. Commands come one per line (a prompt `c> `
/// on a terminal): REGISTER user, UNREGISTER user, CONNECT user, PUBLISH
/// file description..., DELETE file, LIST_USERS, LIST_CONTENT user,
/// DISCONNECT user, GET_FILE user remote local, QUIT.
#[derive(Parser)]
#[command(name = env!("CARGO_BIN_NAME"), version)]
struct Args {
    /// The directory server's host
    #[arg(short, long, value_name = "SERVER")]
    server: String,
    /// The directory server's port
    #[arg(short, long)]
    port: u16,
    /// Folder the published files are served from
    #[arg(long, value_name = "DIR", default_value = ".")]
    share: PathBuf,
    /// The date-time service (`http://HOST:PORT/`, nap-time); without it
    /// the local clock stamps the requests
    #[arg(long, value_name = "URL")]
    time_url: Option<String>,
    /// Interface the file listener binds to (and the address given to the
    /// server, unless it is 0.0.0.0)
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    listen_ip: IpAddr,
    #[command(flatten)]
    net: NetArgs,
    // The view shows the files this peer serves and fetches; its `view on
    // URL` line is the first on stdout.
    #[command(flatten)]
    view: ViewArgs,
}

fn main() -> ExitCode {
    let a: Args = cli::parse();
    cli::run(env!("CARGO_BIN_NAME"), || {
        if let Some(addr) = &a.view.http {
            peerkit::nap::peer::serve_view(addr, a.net.timeouts())?;
        }
        cmd::peer(Options {
            server: a.server,
            port: a.port,
            share: a.share,
            time_url: a.time_url,
            listen_ip: a.listen_ip,
            timeouts: a.net.timeouts(),
        })
    })
}
