//! `rdird`'s live view: what the server remembers between requests. In the
//! stateful mode, the open handles, each with the client that holds it, its
//! path and how far it has read; in the stateless and rpc modes nothing
//! but the requests themselves, each carrying its path and cookie. Since
//! when the server runs is on the page, so a restart shows the difference.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Mode;
use super::stateful::Stateful;
use super::watch::Watch;
use crate::view::Site;

/// The server's page and state.
pub(crate) struct RdirSite {
    mode: Mode,
    root: String,
    /// Milliseconds since the epoch when the server started.
    started: u64,
    watch: Arc<Watch>,
    stateful: Option<Arc<Stateful>>,
}

impl RdirSite {
    pub(crate) fn new(
        mode: Mode,
        root: String,
        watch: Arc<Watch>,
        stateful: Option<Arc<Stateful>>,
    ) -> RdirSite {
        RdirSite {
            mode,
            root,
            started: crate::events::now_ms(),
            watch,
            stateful,
        }
    }
}

impl Site for RdirSite {
    fn page(&self) -> &'static str {
        include_str!("rdird.html")
    }

    fn state(&self) -> Value {
        let handles: Vec<Value> = self
            .stateful
            .as_ref()
            .map(|s| s.handles())
            .unwrap_or_default()
            .into_iter()
            .map(|h| {
                json!({
                    "handle": format!("{:016x}", h.handle),
                    "client": h.client.to_string(),
                    "path": String::from_utf8_lossy(&h.path),
                    "read": h.read,
                    "idle_secs": h.idle,
                })
            })
            .collect();
        json!({
            "system": "rdird",
            "mode": self.mode.to_string(),
            "root": self.root,
            "started": self.started,
            "handles": handles,
            "requests": self.watch.requests(),
        })
    }
}
