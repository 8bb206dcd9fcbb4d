//! The live view a daemon serves with `--http ADDR`, on a listener of its
//! own on the server core (the same deadlines, caps and eviction as every
//! daemon):
//!
//! - `GET /`: the system's page, one HTML document with its script and
//!   styles inline, which asks nothing of any other host (the
//!   Content-Security-Policy says so to the browser too);
//! - `GET /state.json`: the system's state, made when asked;
//! - `GET /events`: Server-Sent Events, one `data:` line of JSON per
//!   protocol step, a comment every 15 s to keep the stream open;
//! - `GET /metrics`: the Prometheus text exposition (version 0.0.4).
//!
//! It is read-only and serves no file contents. The system supplies its
//! page and its state through [`Site`]; its metrics and events live in the
//! [`Registry`] and [`Events`] its data path already updates, so serving a
//! view adds no work there.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Result, ResultExt};
use crate::events::Events;
use crate::http::{self, Handled, Reply};
use crate::metrics::{Counter, Registry};
use crate::net::Timeouts;
use crate::server::{Limits, Server, Session};
use crate::shutdown::Shutdown;

/// What a system shows.
pub(crate) trait Site: Send + Sync + 'static {
    /// The page (an HTML document, compiled in). Where it starts with
    /// `<!-- peerkit: prelude head -->` and its `<style>` and `<script>` say
    /// `/* peerkit: prelude css */` and `/* peerkit: prelude js */`, the view
    /// puts what every page shares (the doctype and head, the base styles,
    /// `el`, `live`, `rate`, `size`).
    fn page(&self) -> &'static str;
    /// The current state, as `state.json` gives it.
    fn state(&self) -> serde_json::Value;
    /// Another JSON document of the site's, at `path` (ending in `.json`)
    /// with the request's `query` string (after `?`, possibly empty);
    /// `None`: there is none (404).
    fn json(&self, _path: &str, _query: &str) -> Option<serde_json::Value> {
        None
    }
}

/// The start of every page's head: doctype, charset, viewport, no icon.
const PRELUDE_HEAD: &str = include_str!("view/prelude-head.html");
/// The styles every page shares.
const PRELUDE_CSS: &str = include_str!("view/prelude.css");
/// The script every page shares: `el`, `live`, `rate` and `size`.
const PRELUDE_JS: &str = include_str!("view/prelude.js");

/// `page` with the shared styles and script in place.
fn assemble(page: &str) -> String {
    page.replacen("<!-- peerkit: prelude head -->", PRELUDE_HEAD.trim_end(), 1)
        .replacen("/* peerkit: prelude css */", PRELUDE_CSS, 1)
        .replacen("/* peerkit: prelude js */", PRELUDE_JS, 1)
}

/// Connections a view serves at once.
const MAX_CONNS: usize = 64;

/// A comment on an event stream at least this often, so proxies and
/// browsers keep it open and a vanished viewer is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The page's policy: its own inline script and styles, requests only to
/// where it came from.
const CSP: &str = "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; \
                   style-src 'unsafe-inline'; img-src data:; connect-src 'self'\r\n";

/// The view's own counters.
struct Counts {
    page: Arc<Counter>,
    state: Arc<Counter>,
    events: Arc<Counter>,
    metrics: Arc<Counter>,
    other: Arc<Counter>,
}

struct Shared {
    site: Arc<dyn Site>,
    /// The site's page with the prelude in place, made once.
    page: String,
    metrics: Arc<Registry>,
    events: Arc<Events>,
    shutdown: Arc<Shutdown>,
    counts: Counts,
}

/// Binds `listen`, prints `view on http://HOST:PORT/` on stdout (flushed)
/// and serves the view on a thread of its own until `shutdown`. Call it
/// right after the daemon's `listening on` line.
pub(crate) fn start(
    listen: &str,
    io: Timeouts,
    shutdown: Arc<Shutdown>,
    site: Arc<dyn Site>,
    metrics: Arc<Registry>,
    events: Arc<Events>,
) -> Result<SocketAddr> {
    let limits = Limits {
        max_conns: MAX_CONNS,
        io,
        ..Limits::default()
    };
    let server = Server::bind(listen, limits, shutdown.clone())
        .map_err(|e| e.doing("starting the view (--http)"))?;
    let local = server.local_addr();
    let served = |path: &str| {
        metrics.counter(
            "view_requests_total",
            "Requests the live view served, by path.",
            &[("path", path)],
        )
    };
    let counts = Counts {
        page: served("/"),
        state: served("/state.json"),
        events: served("/events"),
        metrics: served("/metrics"),
        other: served("other"),
    };
    for (name, help, read) in [
        (
            "view_events_total",
            "Events handed to viewers (counted while someone watches).",
            Events::published as fn(&Events) -> u64,
        ),
        (
            "view_events_dropped_total",
            "Events a slow viewer lost (its queue was full).",
            Events::dropped,
        ),
    ] {
        let events = events.clone();
        metrics.counter_fn(name, help, &[], move || read(&events));
    }
    let shared = Arc::new(Shared {
        page: assemble(site.page()),
        site,
        metrics,
        events,
        shutdown,
        counts,
    });
    if cfg!(test) {
        // Through the test harness's capture: a passing test prints nothing.
        println!("view on http://{local}/");
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(out, "view on http://{local}/").doing(|| "writing the view line")?;
        out.flush().doing(|| "writing the view line")?;
    }
    thread::Builder::new()
        .name("view".into())
        .spawn(move || {
            let _ = server.serve(move |session| {
                if let Err(e) = serve_conn(&shared, &session)
                    && !e.is_disconnect()
                {
                    crate::diag!("view: {}: {e}", session.peer());
                }
            });
        })
        .doing(|| "starting the view")?;
    Ok(local)
}

/// When `http` names an address, serves `server`'s view there ([`start`]
/// with the server's own timeouts and shutdown flag); `site` is made only
/// then. Call it right after the server's `announce`.
pub(crate) fn serve_if(
    http: Option<&str>,
    server: &Server,
    metrics: Arc<Registry>,
    events: Arc<Events>,
    site: impl FnOnce() -> Arc<dyn Site>,
) -> Result<()> {
    if let Some(addr) = http {
        start(
            addr,
            server.limits().io,
            server.shutdown().clone(),
            site(),
            metrics,
            events,
        )?;
    }
    Ok(())
}

fn serve_conn(shared: &Shared, session: &Session) -> Result<()> {
    // A view takes no bodies.
    http::serve(session, 0, |req| {
        let head_only = req.method == "HEAD";
        if req.method != "GET" && !head_only {
            return Ok(Handled::Reply(Reply::text(
                "405 Method Not Allowed",
                "a view is read-only\n",
            )));
        }
        // The page may be asked for with a query (`/?overlay=1`).
        let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
        let reply = match path {
            "/" | "/index.html" => {
                shared.counts.page.inc();
                let mut reply =
                    Reply::new("200 OK", "text/html; charset=utf-8", shared.page.clone());
                reply.headers = CSP;
                reply
            }
            "/state.json" => {
                shared.counts.state.inc();
                Reply::new(
                    "200 OK",
                    "application/json",
                    shared.site.state().to_string(),
                )
            }
            "/metrics" => {
                shared.counts.metrics.inc();
                Reply::new(
                    "200 OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    shared.metrics.render(),
                )
            }
            "/events" if !head_only => {
                shared.counts.events.inc();
                stream_events(shared, session)?;
                return Ok(Handled::Done);
            }
            other => match other
                .ends_with(".json")
                .then(|| shared.site.json(other, query))
                .flatten()
            {
                Some(doc) => {
                    shared.counts.other.inc();
                    Reply::new("200 OK", "application/json", doc.to_string())
                }
                None => {
                    shared.counts.other.inc();
                    Reply::text("404 Not Found", "not found\n")
                }
            },
        };
        Ok(Handled::Reply(reply))
    })
}

/// Streams events until the viewer goes, the daemon stops, or a write
/// fails (a viewer that stopped reading is cut off by the write timeout).
fn stream_events(shared: &Shared, session: &Session) -> Result<()> {
    let Some(sub) = shared.events.subscribe() else {
        let reply = Reply::text(
            "503 Service Unavailable",
            "too many event streams open; close one\n",
        );
        return reply.write(session.stream(), false, false);
    };
    let mut s = session.stream();
    s.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
          X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n: events\n\n",
    )?;
    let mut quiet_since = Instant::now();
    while !shared.shutdown.is_triggered() && !session.is_closed() {
        match sub.rx.recv_timeout(Duration::from_secs(1)) {
            Ok(event) => {
                let mut chunk = Vec::with_capacity(event.len() + 8);
                chunk.extend_from_slice(b"data: ");
                chunk.extend_from_slice(event.as_bytes());
                chunk.extend_from_slice(b"\n\n");
                // Whatever else is queued goes in the same write.
                for more in sub.rx.try_iter().take(64) {
                    chunk.extend_from_slice(b"data: ");
                    chunk.extend_from_slice(more.as_bytes());
                    chunk.extend_from_slice(b"\n\n");
                }
                s.write_all(&chunk)?;
                quiet_since = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) => {
                if quiet_since.elapsed() >= KEEP_ALIVE {
                    s.write_all(b": keep-alive\n\n")?;
                    quiet_since = Instant::now();
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    Ok(())
}

/// What a view lists as in progress (transfers, say), each under a
/// number of its own, in the order they began.
pub(crate) struct InProgress<T> {
    next: u64,
    items: BTreeMap<u64, T>,
}

impl<T> InProgress<T> {
    pub(crate) fn new() -> InProgress<T> {
        InProgress {
            next: 0,
            items: BTreeMap::new(),
        }
    }

    /// Adds `item` under the next number, which it returns.
    pub(crate) fn add(&mut self, item: T) -> u64 {
        self.next += 1;
        self.items.insert(self.next, item);
        self.next
    }

    /// Takes out the item numbered `id`, if it is still there.
    pub(crate) fn remove(&mut self, id: u64) -> Option<T> {
        self.items.remove(&id)
    }

    /// The items, oldest first.
    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.items.values()
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, Read};
    use std::net::TcpStream;

    struct Demo;

    impl Site for Demo {
        fn page(&self) -> &'static str {
            "<!doctype html><title>demo</title>"
        }
        fn state(&self) -> serde_json::Value {
            serde_json::json!({ "name": "</script><img src=x onerror=alert(1)>" })
        }
    }

    fn view() -> (SocketAddr, Arc<Events>, Arc<Shutdown>) {
        let shutdown = Shutdown::new();
        let events = Events::new();
        let addr = start(
            "127.0.0.1:0",
            Timeouts::secs(5),
            shutdown.clone(),
            Arc::new(Demo),
            Registry::new(),
            events.clone(),
        )
        .unwrap();
        (addr, events, shutdown)
    }

    fn get(addr: SocketAddr, raw: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn the_page_state_and_metrics_are_served_and_nothing_else() {
        let (addr, _, shutdown) = view();
        let page = get(addr, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains("Content-Security-Policy: default-src 'none'"));
        assert!(page.ends_with("<title>demo</title>"));
        let state = get(addr, "GET /state.json HTTP/1.0\r\n\r\n");
        let body = state.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["name"], "</script><img src=x onerror=alert(1)>");
        let metrics = get(addr, "GET /metrics HTTP/1.0\r\n\r\n");
        assert!(metrics.contains("text/plain; version=0.0.4"));
        assert!(metrics.contains("peerkit_view_requests_total{path=\"/\"} 1\n"));
        assert!(metrics.contains("peerkit_view_requests_total{path=\"/state.json\"} 1\n"));
        assert!(get(addr, "GET /etc/passwd HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(addr, "POST / HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 405"));
        let head = get(addr, "HEAD / HTTP/1.0\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"));
        assert!(
            get(addr, "GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
                .starts_with("HTTP/1.1 400")
        );
        shutdown.trigger();
    }

    #[test]
    fn the_prelude_goes_where_a_page_asks_for_it() {
        let page = assemble(
            "<style>\n/* peerkit: prelude css */\n</style><script>\n/* peerkit: prelude js */\nlive(draw, 1000);</script>",
        );
        assert!(page.contains("#live.on::before") && page.contains("function live(draw"));
        assert!(!page.contains("peerkit: prelude"));
        assert_eq!(page.matches("<script>").count(), 1);
    }

    #[test]
    fn events_stream_as_server_sent_events() {
        let (addr, events, shutdown) = view();
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /events HTTP/1.1\r\n\r\n").unwrap();
        let mut r = std::io::BufReader::new(s);
        let mut line = String::new();
        // The head, then the opening comment: subscribed by then.
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line == ": events\n" {
                break;
            }
        }
        events.publish("joined", |m| {
            m.insert("addr".into(), "10.0.0.1:7000".into());
        });
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if let Some(data) = line.strip_prefix("data: ") {
                let v: serde_json::Value = serde_json::from_str(data).unwrap();
                assert_eq!(v["kind"], "joined");
                assert_eq!(v["addr"], "10.0.0.1:7000");
                break;
            }
        }
        shutdown.trigger();
    }
}
