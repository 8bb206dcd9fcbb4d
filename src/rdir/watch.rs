//! What `rdird` shows of itself: every request in the order it was
//! served (for the view's request stream and its events) and the metrics,
//! whatever the mode. The stateful mode adds its handle table.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde_json::{Value, json};

use crate::events::Events;
use crate::metrics::{Counter, Histogram, LATENCY_BUCKETS, Registry};

/// Requests the view remembers.
const RECENT: usize = 200;

/// The request kinds counted: stateful open/read/close, stateless and rpc
/// readdir.
pub(crate) const KINDS: [&str; 4] = ["open", "read", "close", "readdir"];

/// One request served.
#[derive(Debug, Clone)]
struct Record {
    /// Milliseconds since the epoch.
    t: u64,
    client: SocketAddr,
    /// What was asked and what came of it, as the log line says it.
    line: String,
    ok: bool,
}

/// The requests served and the counters, shared by every connection.
pub(crate) struct Watch {
    pub(crate) events: Arc<Events>,
    recent: Mutex<VecDeque<Record>>,
    served: Vec<(Arc<Counter>, Arc<Histogram>)>,
    refused: Arc<Counter>,
}

impl Watch {
    pub(crate) fn new(metrics: &Registry, events: Arc<Events>) -> Watch {
        let served = KINDS
            .iter()
            .map(|kind| {
                (
                    metrics.counter(
                        "rdir_requests_total",
                        "Requests served, by kind.",
                        &[("kind", kind)],
                    ),
                    metrics.histogram(
                        "rdir_request_seconds",
                        "Time to work out a request's answer, by kind.",
                        &[("kind", kind)],
                        LATENCY_BUCKETS,
                    ),
                )
            })
            .collect();
        Watch {
            events,
            recent: Mutex::new(VecDeque::new()),
            served,
            refused: metrics.counter(
                "rdir_errors_total",
                "Requests refused with a status (outside the root, not there, bad handle, ...).",
                &[("kind", "refused")],
            ),
        }
    }

    /// Counts one request of `kind` begun at `started` and remembers it.
    /// Call it before the answer leaves, so a client that reads the metrics
    /// after its answer sees its request counted.
    pub(crate) fn served(
        &self,
        kind: &str,
        client: SocketAddr,
        line: &str,
        ok: bool,
        started: Instant,
    ) {
        if let Some((n, t)) = KINDS
            .iter()
            .position(|k| *k == kind)
            .and_then(|i| self.served.get(i))
        {
            n.inc();
            t.observe(started.elapsed().as_secs_f64());
        }
        if !ok {
            self.refused.inc();
        }
        let record = Record {
            t: crate::events::now_ms(),
            client,
            line: line.to_string(),
            ok,
        };
        self.events.publish("request", |m| {
            m.insert("request".into(), kind.into());
            m.insert("client".into(), client.to_string().into());
            m.insert("line".into(), line.into());
            m.insert("ok".into(), ok.into());
        });
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() >= RECENT {
            recent.pop_front();
        }
        recent.push_back(record);
    }

    /// The remembered requests, oldest first, as `state.json` gives them.
    pub(crate) fn requests(&self) -> Vec<Value> {
        self.recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|r| json!({"t": r.t, "client": r.client.to_string(), "line": r.line, "ok": r.ok}))
            .collect()
    }
}
