//! The live view of `nap-log` and `nap-time`: both are a stream of things
//! served (operations logged, date-times answered), so one page lists the
//! latest, newest first, with counters by kind, and each daemon says which
//! columns it has.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Map, Value, json};

use crate::events::Events;
use crate::metrics::{Counter, Registry};
use crate::view::Site;

/// Records the view remembers.
const RECENT: usize = 200;

/// The latest records served and a counter per kind.
pub(crate) struct Records {
    title: &'static str,
    /// The record fields the page shows, in order, with their headings.
    columns: &'static [(&'static str, &'static str)],
    events: Arc<Events>,
    recent: Mutex<VecDeque<Value>>,
    kinds: Vec<(&'static str, Arc<Counter>)>,
}

impl Records {
    /// Records with `kinds` counted as `peerkit_{metric}_total{kind}`.
    pub(crate) fn new(
        title: &'static str,
        columns: &'static [(&'static str, &'static str)],
        metrics: &Registry,
        metric: &str,
        help: &str,
        kinds: &[&'static str],
        events: Arc<Events>,
    ) -> Records {
        let name = format!("{metric}_total");
        Records {
            title,
            columns,
            events,
            recent: Mutex::new(VecDeque::new()),
            kinds: kinds
                .iter()
                .map(|k| (*k, metrics.counter(&name, help, &[("kind", k)])))
                .collect(),
        }
    }

    /// Counts one record of `kind`, remembers it and publishes it as an
    /// event of that kind. `fields` are the record's own.
    pub(crate) fn add(&self, kind: &'static str, fields: impl FnOnce(&mut Map<String, Value>)) {
        if let Some((_, c)) = self.kinds.iter().find(|(k, _)| *k == kind) {
            c.inc();
        }
        let mut m = Map::new();
        m.insert("t".into(), crate::events::now_ms().into());
        m.insert("kind".into(), kind.into());
        fields(&mut m);
        let record = Value::Object(m);
        self.events.publish(kind, |e| {
            if let Value::Object(fields) = &record {
                for (k, v) in fields {
                    if k != "t" && k != "kind" {
                        e.insert(k.clone(), v.clone());
                    }
                }
            }
        });
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() >= RECENT {
            recent.pop_front();
        }
        recent.push_back(record);
    }
}

impl Site for Records {
    fn page(&self) -> &'static str {
        include_str!("records.html")
    }

    fn state(&self) -> Value {
        let records: Vec<Value> = self
            .recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        let counts: Map<String, Value> = self
            .kinds
            .iter()
            .map(|(k, c)| (k.to_string(), c.get().into()))
            .collect();
        json!({
            "system": self.title,
            "columns": self.columns.iter().map(|(k, h)| json!({"field": k, "heading": h})).collect::<Vec<_>>(),
            "counts": counts,
            "records": records,
        })
    }
}
