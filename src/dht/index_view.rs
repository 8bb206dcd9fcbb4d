//! The index's live view: the ring as a circle, each supernode's virtual
//! nodes in its colour, each file at its key's position with its owner and
//! the supernodes holding it, and joins, leaves and lookups as they come.
//!
//! The index knows members, not files: for `state.json` it asks each
//! supernode for its list over the supernode protocol (one connection each,
//! short deadlines), at most once a second, on the view's own thread; the
//! index's data path never waits for it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::client;
use super::index::Index;
use super::ring;
use crate::net::Timeouts;
use crate::view::Site;

/// How long one survey of the supernodes' lists is reused.
const SURVEY_FOR: Duration = Duration::from_secs(1);

/// The deadline of each supernode's listing.
const ASK_WITHIN: Duration = Duration::from_secs(1);

/// What the supernodes said they hold, and when they were asked.
struct Survey {
    at: Instant,
    /// Member → its names, or why it could not be asked.
    lists: BTreeMap<String, Result<Vec<String>, String>>,
}

/// The index's page and state.
pub(super) struct IndexSite {
    index: Arc<Index>,
    timeouts: Timeouts,
    last: Mutex<Option<Survey>>,
}

impl IndexSite {
    pub(super) fn new(index: Arc<Index>, io: Timeouts) -> IndexSite {
        IndexSite {
            index,
            timeouts: Timeouts {
                connect: io.connect.min(ASK_WITHIN),
                io: io.io.min(ASK_WITHIN),
            },
            last: Mutex::new(None),
        }
    }

    /// Each member's list, asked anew unless the last survey is recent.
    fn survey(&self, members: &[String]) -> BTreeMap<String, Result<Vec<String>, String>> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = last.as_ref()
            && s.at.elapsed() < SURVEY_FOR
            && members.iter().all(|m| s.lists.contains_key(m))
            && s.lists.len() == members.len()
        {
            return s.lists.clone();
        }
        let lists: BTreeMap<String, Result<Vec<String>, String>> = members
            .iter()
            .map(|m| {
                let list = client::list(m, &self.timeouts)
                    .map(|names| names.iter().map(|n| n.to_string()).collect())
                    .map_err(|e| e.to_string());
                (m.clone(), list)
            })
            .collect();
        *last = Some(Survey {
            at: Instant::now(),
            lists: lists.clone(),
        });
        lists
    }
}

impl Site for IndexSite {
    fn page(&self) -> &'static str {
        include_str!("index.html")
    }

    fn state(&self) -> Value {
        let layout = self.index.layout();
        let members: Vec<String> = layout.iter().map(|(m, _)| m.clone()).collect();
        let lists = self.survey(&members);
        let mut holders: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (member, list) in &lists {
            for name in list.iter().flatten() {
                holders.entry(name).or_default().push(member);
            }
        }
        let owners = self.index.owners(holders.keys().copied());
        let files: Vec<Value> = holders
            .iter()
            .zip(owners)
            .map(|((name, held_by), owner)| {
                json!({
                    "name": name,
                    "key": ring::key_hex(name),
                    "position": ring::position(name),
                    "owner": owner,
                    "holders": held_by,
                })
            })
            .collect();
        let supernodes: Vec<Value> = layout
            .iter()
            .map(|(addr, vnodes)| {
                let list = lists.get(addr);
                json!({
                    "addr": addr,
                    "vnodes": vnodes,
                    "files": list.and_then(|l| l.as_ref().ok()).map(Vec::len),
                    "error": list.and_then(|l| l.as_ref().err()),
                })
            })
            .collect();
        let counts: Vec<usize> = lists
            .values()
            .filter_map(|l| l.as_ref().ok().map(Vec::len))
            .collect();
        let max = counts.iter().copied().max().unwrap_or(0);
        let mean = if counts.is_empty() {
            0.0
        } else {
            counts.iter().sum::<usize>() as f64 / counts.len() as f64
        };
        json!({
            "system": "p2p-index",
            "supernodes": supernodes,
            "files": files,
            "balance": { "max": max, "mean": mean },
        })
    }
}
