//! The bodies of `rdird` and `rls`.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::client::{self, Endpoint, Options, RemoteDir, StatefulDir};
use super::dir::Root;
use super::rpc::{RDIRVERS, RdirProgram};
use super::stateful::{self, Stateful};
use super::stateless::{self, Stateless};
use super::view::RdirSite;
use super::watch::Watch;
use super::{DEFAULT_PORT, Mode};
use crate::cli::{self, Refused};
use crate::events::Events;
use crate::metrics::Registry;
use crate::net::Timeouts;
use crate::oncrpc::portmap::Registration;
use crate::server::{Limits, Server};

/// Largest RPC record `rdird` accepts (a call carries at most a 4 KiB path).
const MAX_RPC_RECORD: usize = 64 * 1024;

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

/// How `rls` lists.
#[derive(Debug, Clone)]
pub struct LsOptions {
    pub mode: Mode,
    /// `--server`, else `$SERVIDOR`, else 127.0.0.1.
    pub server: Option<String>,
    /// `--port`, else `$PUERTO` (socket modes), else the default or rpcbind.
    pub port: Option<u16>,
    pub prog: u32,
    pub batch: u32,
    pub mix: bool,
    pub json: bool,
    pub pause: Duration,
    pub timeouts: Timeouts,
    /// Stateful: read with this handle instead of opening (the server must
    /// refuse a handle it did not give this connection).
    pub handle: Option<u64>,
}

fn endpoint(o: &LsOptions) -> Result<Endpoint> {
    let host = match &o.server {
        Some(h) => h.clone(),
        None => std::env::var("SERVIDOR").unwrap_or_else(|_| "127.0.0.1".to_string()),
    };
    let port = match o.port {
        Some(p) => Some(p),
        // The course's RPC clients find the port through rpcbind.
        None if o.mode == Mode::Rpc => None,
        None => match std::env::var("PUERTO") {
            Ok(p) => Some(
                p.trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .with_context(|| format!("PUERTO={p:?} is not a port number"))?,
            ),
            Err(_) => Some(DEFAULT_PORT),
        },
    };
    let mut ep = Endpoint::new(&host, port);
    ep.prog = o.prog;
    ep.timeouts = o.timeouts;
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
pub fn rls(o: &LsOptions, dirs: &[OsString]) -> Result<()> {
    if dirs.is_empty() {
        bail!("no directory given");
    }
    if o.mix && dirs.len() < 2 {
        bail!("--mix needs two directories or more");
    }
    let ep = endpoint(o)?;
    let opts = Options {
        batch: o.batch,
        pause: o.pause,
    };
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
            Err(e.into())
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
            for name in dir.entries() {
                match name {
                    Ok(name) => {
                        entry_line(&mut out, o.json, path, &name)?;
                        if !o.pause.is_zero() {
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
                Ok(()) => dir.close()?,
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
