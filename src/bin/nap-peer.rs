//! `nap-peer`: a peer of the Napster-like directory, as a `c> ` shell.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use peerkit::cli::{self, NetArgs, Verbosity, ViewArgs};
use peerkit::nap::cmd;
use peerkit::nap::peer::Options;

/// Registers, connects, publishes, lists and fetches files from other peers
/// through a directory server. Commands come one per line (a prompt `c> `,
/// line editing and history on a terminal): REGISTER user, UNREGISTER user,
/// CONNECT user, PUBLISH file description..., DELETE file, LIST_USERS,
/// LIST_CONTENT user, DISCONNECT user, GET_FILE user remote local, HELP,
/// QUIT. Ctrl-C disconnects, tidies up and exits 130.
#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version,
    after_help = "Examples:\n  nap-peer -s 127.0.0.1:5000 --share music/\n  \
                  nap-peer -s localhost -p 5000\n  \
                  printf 'CONNECT ana\\nLIST_USERS\\n' | nap-peer -s 127.0.0.1:5000\n\n\
                  Exit status: 0; 1 when commands from a pipe failed; 2 error; 130 interrupted."
)]
struct Args {
    /// The directory server, HOST:PORT (or HOST with -p PORT)
    #[arg(short, long, value_name = "HOST:PORT")]
    server: String,
    /// The directory server's port, when -s gives only the host
    #[arg(short, long)]
    port: Option<u16>,
    /// GET_FILE may replace an existing local file (default: refuse)
    #[arg(short, long)]
    force: bool,
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
    #[command(flatten)]
    verbosity: Verbosity,
}

fn main() -> ExitCode {
    let a: Args = cli::parse();
    cli::run(env!("CARGO_BIN_NAME"), || {
        let (server, port) = cmd::server_addr(&a.server, a.port)?;
        if let Some(addr) = &a.view.http {
            peerkit::nap::peer::serve_view(addr, a.net.timeouts())?;
        }
        cmd::peer(Options {
            server,
            port,
            force: a.force,
            level: a.verbosity.level(),
            share: a.share,
            time_url: a.time_url,
            listen_ip: a.listen_ip,
            timeouts: a.net.timeouts(),
        })
    })
}
