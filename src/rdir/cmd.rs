//! The bodies of `rdird` and `rls`.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::client::{self, Endpoint, Options, RemoteDir, StatefulDir};
use super::dir::Root;
use super::rpc::{self, RDIRVERS, RdirProgram};
use super::stateful::{self, Stateful};
use super::stateless::{self, Stateless};
use super::view::RdirSite;
use super::watch::Watch;
use super::{DEFAULT_LISTEN, DEFAULT_PORT, MAX_BATCH, Mode};
use crate::cli::{self, DaemonArgs, Level, NetArgs, Refused, Verbosity, ViewArgs};
use crate::events::Events;
use crate::metrics::Registry;
use crate::net::HostPort;
use crate::oncrpc::portmap::Registration;
use crate::server::{Limits, Server};

/// Largest RPC record `rdird` accepts (a call carries at most a 4 KiB path).
const MAX_RPC_RECORD: usize = 64 * 1024;

/// `rdird`'s flags.
#[derive(Debug, Clone, Args)]
pub struct RdirdArgs {
    /// The design served
    #[arg(long, value_enum, default_value_t = Mode::Stateless)]
    pub mode: Mode,
    /// Folder served; nothing outside it is
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub root: PathBuf,
    /// RPC program number (rpc mode)
    #[arg(long, value_name = "N", default_value_t = rpc::NUMPROG, value_parser = parse_prog)]
    pub prog: u32,
    /// Directories open at once (stateful mode; one connection holds at most an eighth)
    #[arg(long, value_name = "N", default_value_t = stateful::DEFAULT_MAX_OPEN,
          value_parser = cli::parse_count)]
    pub max_open: usize,
    /// Seconds an open directory may go unused before it is closed (stateful mode)
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = cli::parse_period)]
    pub dir_idle: Duration,
    #[command(flatten)]
    pub daemon: DaemonArgs,
    #[command(flatten)]
    pub view: ViewArgs,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

/// `rdird` from its flags.
pub fn rdird_main(a: RdirdArgs) -> Result<()> {
    rdird(
        &a.daemon.listen_or(DEFAULT_LISTEN),
        a.daemon.limits(),
        DaemonOptions {
            mode: a.mode,
            root: a.root,
            prog: a.prog,
            max_open: a.max_open,
            dir_idle: a.dir_idle,
            log: a.verbosity.level() > Level::Quiet,
            http: a.view.http,
        },
    )
}

/// How `rdird` serves.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub mode: Mode,
    pub root: PathBuf,
    pub prog: u32,
    pub max_open: usize,
    pub dir_idle: Duration,
    /// One line per request on stdout.
    pub log: bool,
    /// Serve a live view at this address (`--http`).
    pub http: Option<String>,
}

/// `rdird`: serves the directories under the root in one design.
pub fn rdird(listen: &str, limits: Limits, opts: DaemonOptions) -> Result<()> {
    let root = Root::new(&opts.root)?;
    let server = Server::start(listen, limits)?;
    let port = server.local_addr().port();
    let metrics = Registry::new();
    let events = Events::new();
    server.export_metrics(&metrics);
    let watch = Arc::new(Watch::new(&metrics, events.clone()));
    // The view starts right after the readiness line, and knows the
    // stateful handle table when there is one.
    let view = |server: &Server, stateful: Option<Arc<Stateful>>| {
        crate::view::serve_if(
            opts.http.as_deref(),
            server,
            metrics.clone(),
            events.clone(),
            || {
                Arc::new(RdirSite::new(
                    opts.mode,
                    opts.root.display().to_string(),
                    watch.clone(),
                    stateful,
                ))
            },
        )
    };
    match opts.mode {
        Mode::Stateful => {
            let state = Arc::new(Stateful::new(
                root,
                opts.max_open,
                opts.dir_idle,
                opts.log,
                watch.clone(),
            ));
            {
                let state = state.clone();
                metrics.gauge_fn(
                    "rdir_open_handles",
                    "Directories held open for clients (stateful mode).",
                    &[],
                    move || state.open_count() as f64,
                );
            }
            server.announce()?;
            view(&server, Some(state.clone()))?;
            stateful::serve(server, state)?;
        }
        Mode::Stateless => {
            let state = Arc::new(Stateless {
                root,
                log: opts.log,
                watch: watch.clone(),
            });
            server.announce()?;
            view(&server, None)?;
            stateless::serve(server, state)?;
        }
        Mode::Rpc => {
            // Registered before the readiness line, unregistered on return.
            let registration = Registration::register_or_warn(opts.prog, RDIRVERS, port);
            server.announce()?;
            view(&server, None)?;
            let program = Arc::new(RdirProgram {
                root,
                prog: opts.prog,
                log: opts.log,
                watch: watch.clone(),
            });
            crate::oncrpc::server::serve(server, program, MAX_RPC_RECORD)?;
            drop(registration);
        }
    }
    Ok(())
}

/// Parses an RPC program number, decimal or 0x-hexadecimal.
pub fn parse_prog(s: &str) -> Result<u32, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| format!("{s:?} is not a program number"))
}

/// Parses a stateful handle, hexadecimal with or without `0x`.
fn parse_handle(s: &str) -> Result<u64, String> {
    let hex = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u64::from_str_radix(hex, 16).map_err(|_| format!("{s:?} is not a hexadecimal handle"))
}

/// `rls`'s operands and flags: how it lists.
#[derive(Debug, Clone, Args)]
pub struct RlsArgs {
    /// The design to use
    #[arg(long, value_enum, default_value_t = Mode::Stateless)]
    pub mode: Mode,
    /// The server, HOST:PORT or HOST (default: $SERVIDOR, else 127.0.0.1)
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// The server's port, when --server has none (default: $PUERTO, else
    /// 7654; rpc: ask rpcbind)
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Entries per request, 1 to 1024
    #[arg(long, value_name = "N", default_value_t = MAX_BATCH,
          value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH as i64))]
    pub batch: u32,
    /// Open every directory and read them alternately, one entry each
    #[arg(long)]
    pub mix: bool,
    /// One JSON object per entry: {"dir":..,"name":..}; a name that is not
    /// UTF-8 comes as "name_bytes":[..] instead
    #[arg(long)]
    pub json: bool,
    /// RPC program number
    #[arg(long, value_name = "N", default_value_t = rpc::NUMPROG, value_parser = parse_prog)]
    pub prog: u32,
    /// Time to wait before each request after the first, e.g. 100ms (demos)
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = cli::parse_secs)]
    pub pause: Duration,
    /// Older form of --pause, in milliseconds
    #[arg(long, value_name = "MS", hide = true, conflicts_with = "pause")]
    pub pause_ms: Option<u64>,
    /// Stateful: read with this handle (hex) instead of opening, to see the
    /// server refuse a handle it did not give (after a restart, made up)
    #[arg(long, value_name = "HEX", value_parser = parse_handle)]
    pub handle: Option<u64>,
    #[command(flatten)]
    pub verbosity: Verbosity,
    #[command(flatten)]
    pub net: NetArgs,
    /// Remote directories (relative to the server's root, or absolute in it)
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<OsString>,
}

/// The server's host and port from the flags and the environment: the
/// port in `--server HOST:PORT`, else `--port`, else the one in
/// `$SERVIDOR`, else `$PUERTO`; `None` for the default (or rpcbind).
fn server_of(
    flag: Option<&str>,
    port_flag: Option<u16>,
    env_server: Option<String>,
    env_port: Option<String>,
) -> Result<(String, Option<u16>)> {
    let parse = |s: &str, what: &str| {
        HostPort::parse_opt_port(s).map_err(|e| anyhow::anyhow!("{what}: {e}"))
    };
    // A port written in --server and --port must agree; one in $SERVIDOR
    // gives way to --port.
    let (host, port) = match flag {
        Some(s) => match (parse(s, "--server")?, port_flag) {
            ((_, Some(a)), Some(b)) if a != b => {
                bail!("two ports given: {a} in --server and --port {b}")
            }
            ((host, p), f) => (host, p.or(f)),
        },
        None => match env_server.filter(|s| !s.trim().is_empty()) {
            Some(s) => {
                let (host, p) = parse(&s, "SERVIDOR")?;
                (host, port_flag.or(p))
            }
            None => ("127.0.0.1".to_string(), port_flag),
        },
    };
    let port = match (port, env_port) {
        (Some(p), _) => Some(p),
        (None, Some(p)) => Some(
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .with_context(|| format!("PUERTO={p:?} is not a port number"))?,
        ),
        (None, None) => None,
    };
    Ok((host, port))
}

fn endpoint(o: &RlsArgs) -> Result<Endpoint> {
    let env = |k: &str| std::env::var(k).ok();
    let (host, port) = server_of(o.server.as_deref(), o.port, env("SERVIDOR"), env("PUERTO"))?;
    let port = match port {
        Some(p) => Some(p),
        // The course's RPC clients find the port through rpcbind.
        None if o.mode == Mode::Rpc => None,
        None => Some(DEFAULT_PORT),
    };
    let mut ep = Endpoint::new(&host, port);
    ep.prog = o.prog;
    ep.timeouts = o.net.timeouts();
    Ok(ep)
}

/// Adds `"key":"text"` for UTF-8 bytes, else `"key_bytes":[..]` with
/// every byte: names stay exact either way.
fn json_field(map: &mut serde_json::Map<String, serde_json::Value>, key: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => map.insert(key.to_string(), s.into()),
        Err(_) => map.insert(format!("{key}_bytes"), bytes.into()),
    };
}

/// One output line for an entry of `dir`.
fn entry_line(out: &mut impl Write, json: bool, dir: &[u8], name: &[u8]) -> std::io::Result<()> {
    if json {
        let mut map = serde_json::Map::new();
        json_field(&mut map, "dir", dir);
        json_field(&mut map, "name", name);
        serde_json::to_writer(&mut *out, &map)?;
        out.write_all(b"\n")
    } else {
        out.write_all(name)?;
        out.write_all(b"\n")
    }
}

/// `rls`: lists each remote directory, or with `mix` reads them in turn.
pub fn rls(o: &RlsArgs) -> Result<()> {
    let dirs = &o.dirs;
    if dirs.is_empty() {
        bail!("no directory given");
    }
    if o.mix && dirs.len() < 2 {
        bail!("--mix needs two directories or more");
    }
    let ep = endpoint(o)?;
    let pause = o.pause_ms.map_or(o.pause, Duration::from_millis);
    let opts = Options {
        batch: o.batch,
        pause,
    };
    let verbose = o.verbosity.level() == Level::Verbose;
    let server = ep.describe();
    if verbose {
        crate::diag!(
            "{server}: listing {} directories ({:?} mode)",
            dirs.len(),
            o.mode
        );
    }
    if o.handle.is_some() && o.mode != Mode::Stateful {
        bail!("--handle is for --mode stateful");
    }
    let open_dir = |path: &[u8]| -> crate::Result<Box<dyn RemoteDir>> {
        match o.handle {
            Some(h) => Ok(Box::new(StatefulDir::adopt(&ep, path, h, opts)?)),
            None => client::open(&ep, o.mode, path, opts),
        }
    };
    let mut out = cli::stdout();
    let mut failed = 0usize;
    let report = |e: crate::Error, failed: &mut usize| -> Result<()> {
        if client::is_refusal(&e) {
            crate::diag!("{e}");
            *failed += 1;
            Ok(())
        } else {
            // Not an answer from the server: say which server.
            Err(anyhow::Error::new(e).context(server.clone()))
        }
    };
    if o.mix {
        let mut open: Vec<Box<dyn RemoteDir>> = Vec::new();
        for d in dirs {
            match open_dir(d.as_bytes()) {
                Ok(dir) => open.push(dir),
                Err(e) => report(e, &mut failed)?,
            }
        }
        // One entry from each in turn until all are finished.
        while !open.is_empty() {
            let mut i = 0;
            while i < open.len() {
                match open[i].next_name() {
                    Ok(Some(name)) => {
                        entry_line(&mut out, o.json, open[i].path(), &name)?;
                        i += 1;
                    }
                    Ok(None) => {
                        let mut d = open.remove(i);
                        d.close()?;
                    }
                    Err(e) => {
                        open.remove(i);
                        report(e, &mut failed)?;
                    }
                }
            }
        }
    } else {
        let headers = dirs.len() > 1 && !o.json;
        for (n, d) in dirs.iter().enumerate() {
            let path = d.as_bytes();
            let mut dir = match open_dir(path) {
                Ok(dir) => dir,
                Err(e) => {
                    report(e, &mut failed)?;
                    continue;
                }
            };
            if headers {
                if n > 0 {
                    out.write_all(b"\n")?;
                }
                out.write_all(path)?;
                out.write_all(b":\n")?;
            }
            let mut result = Ok(());
            let mut listed = 0usize;
            for name in dir.entries() {
                match name {
                    Ok(name) => {
                        listed += 1;
                        entry_line(&mut out, o.json, path, &name)?;
                        if !pause.is_zero() {
                            // A slowed listing shows its progress.
                            out.flush()?;
                        }
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            match result {
                Ok(()) => {
                    dir.close()?;
                    if verbose {
                        out.flush()?;
                        crate::diag!(
                            "{server}: {}: {listed} entries",
                            String::from_utf8_lossy(path)
                        );
                    }
                }
                Err(e) => {
                    out.flush()?;
                    report(e, &mut failed)?;
                }
            }
        }
    }
    out.flush()?;
    if failed > 0 {
        return Err(Refused(format!(
            "{failed} of {} directories could not be listed",
            dirs.len()
        ))
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_comes_as_host_port_or_in_the_older_forms() {
        let of = |f: Option<&str>, p: Option<u16>, es: Option<&str>, ep: Option<&str>| {
            server_of(f, p, es.map(String::from), ep.map(String::from)).map_err(|e| e.to_string())
        };
        let hp = |h: &str, p: Option<u16>| Ok((h.to_string(), p));
        assert_eq!(of(Some("h:1"), None, None, None), hp("h", Some(1)));
        assert_eq!(of(Some("h"), Some(2), None, None), hp("h", Some(2)));
        assert_eq!(of(Some("h"), None, None, Some("3")), hp("h", Some(3)));
        assert_eq!(of(None, None, Some("e:4"), Some("5")), hp("e", Some(4)));
        assert_eq!(of(None, None, Some("e"), Some("5")), hp("e", Some(5)));
        assert_eq!(of(None, Some(6), Some("e:4"), None), hp("e", Some(6)));
        assert_eq!(of(None, None, None, None), hp("127.0.0.1", None));
        assert_eq!(of(Some("[::1]:7"), None, None, None), hp("::1", Some(7)));
        assert_eq!(of(Some("h:1"), Some(1), None, None), hp("h", Some(1)));
        assert!(of(Some("h:1"), Some(2), None, None).is_err());
        assert!(of(Some("h:x"), None, None, None).is_err());
        assert!(of(None, None, None, Some("x")).is_err());
    }

    #[test]
    fn json_keeps_names_exact() {
        let mut out = Vec::new();
        entry_line(&mut out, true, b"d", b"a \"b\"\n").unwrap();
        entry_line(&mut out, true, b"d", b"\xff\x00").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"dir\":\"d\",\"name\":\"a \\\"b\\\"\\n\"}\n{\"dir\":\"d\",\"name_bytes\":[255,0]}\n"
        );
    }
}
