//! The stateless socket server: every `ReadDir` opens the directory,
//! positions it at the client's cookie (seekdir), reads a batch and closes
//! it, so the descriptors held are the same before and after each request
//! and a listing goes on across a server restart.

use std::sync::Arc;
use std::time::Instant;

use super::dir::{self, Root};
use super::proto::{STATELESS, StatelessRequest as Req, StatelessResponse as Resp};
use super::watch::Watch;
use crate::frame::Conn;
use crate::server::{Server, Session};

/// The stateless server's configuration (it has no state).
pub(crate) struct Stateless {
    pub root: Root,
    pub log: bool,
    pub(crate) watch: Arc<Watch>,
}

/// One request line for the log.
pub(crate) fn log_line(
    path: &[u8],
    cookie: u64,
    max: u32,
    outcome: &Result<dir::Batch, dir::Refusal>,
) -> String {
    let what = format!(
        "readdir {} cookie {cookie:#x} max {max}",
        path.escape_ascii()
    );
    match outcome {
        Ok(b) => format!(
            "{what} -> {} entries{}",
            b.names.len(),
            if b.eof { ", end" } else { "" }
        ),
        Err(r) => format!("{what} -> refused ({}): {}", r.status.code(), r.message),
    }
}

impl Stateless {
    fn answer(&self, req: Req) -> (Resp, String) {
        let Req::ReadDir { path, cookie, max } = req;
        let outcome = dir::read_batch(&self.root, &path, cookie, max);
        let line = log_line(&path, cookie, max, &outcome);
        let resp = match outcome {
            Ok(b) => Resp::Batch {
                names: b.names,
                cookie: b.cookie,
                eof: b.eof,
            },
            Err(r) => Resp::Error {
                status: r.status.code(),
                message: r.message,
            },
        };
        (resp, line)
    }

    /// Serves one connection.
    pub(crate) fn serve_connection(&self, session: Session) {
        let peer = session.peer();
        let Some(mut conn) = Conn::accept_logged(session, STATELESS) else {
            return;
        };
        conn.serve_requests::<Req, Resp>(|conn, req| {
            let started = Instant::now();
            let (resp, line) = self.answer(req);
            let ok = !matches!(resp, Resp::Error { .. });
            self.watch.served("readdir", peer, &line, ok, started);
            if self.log {
                crate::event!("{peer}: {line}");
            }
            conn.send(&resp)
        });
    }
}

/// Serves the stateless protocol until shutdown.
pub(crate) fn serve(server: Server, state: Arc<Stateless>) -> crate::Result<()> {
    server.serve(move |session| state.serve_connection(session))
}
