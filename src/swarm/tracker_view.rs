//! The tracker's live view and counters: per swarm, the piece map (what
//! each member last reported), each piece's rarity, each member's rates
//! and who sends to whom (from the `Stats` members send), and the swarm's
//! elapsed time against the lower bound of the distribution time,
//! max(F/u_s, N·F/(u_s + Σu_i)), computed from those rates.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::events::Events;
use crate::metrics::{Counter, Histogram, LATENCY_BUCKETS, Registry};
use crate::view::Site;

use super::manifest::Bitfield;
use super::proto::{PeerStats, TrackerRequest, TrackerResponse};
use super::tracker::{Swarm, Tracker};

/// The request kinds, as the metrics label them.
const KINDS: [&str; 7] = [
    "register", "ping", "report", "stats", "peers", "lookup", "leave",
];

fn kind_of(req: &TrackerRequest) -> usize {
    match req {
        TrackerRequest::Register { .. } => 0,
        TrackerRequest::Ping { .. } => 1,
        TrackerRequest::Report { .. } => 2,
        TrackerRequest::Stats { .. } => 3,
        TrackerRequest::Peers { .. } => 4,
        TrackerRequest::Lookup(_) => 5,
        TrackerRequest::Leave { .. } => 6,
    }
}

/// The error kinds, as the metrics label them.
const ERRORS: [&str; 3] = ["refused", "unknown_peer", "not_found"];

/// The tracker's counters and event stream.
pub(super) struct Watch {
    pub(super) events: Arc<Events>,
    requests: Vec<(Arc<Counter>, Arc<Histogram>)>,
    errors: Vec<Arc<Counter>>,
    pub(super) evicted: Arc<Counter>,
}

impl Default for Watch {
    fn default() -> Watch {
        Watch::new(&Registry::default(), Events::new())
    }
}

impl Watch {
    pub(super) fn new(metrics: &Registry, events: Arc<Events>) -> Watch {
        let requests = KINDS
            .iter()
            .map(|k| {
                let labels = [("kind", *k)];
                (
                    metrics.counter(
                        "tracker_requests_total",
                        "Requests the tracker answered, by kind.",
                        &labels,
                    ),
                    metrics.histogram(
                        "tracker_request_seconds",
                        "Time to answer a request, by kind.",
                        &labels,
                        LATENCY_BUCKETS,
                    ),
                )
            })
            .collect();
        let errors = ERRORS
            .iter()
            .map(|k| {
                metrics.counter(
                    "tracker_errors_total",
                    "Requests answered with an error, by kind: refused (malformed or over a cap), \
                     unknown_peer (not a member: register again), not_found (no such swarm).",
                    &[("kind", k)],
                )
            })
            .collect();
        Watch {
            events,
            requests,
            errors,
            evicted: metrics.counter(
                "tracker_evicted_total",
                "Members evicted for staying silent.",
                &[],
            ),
        }
    }

    /// Counts one answered request and how long it took.
    pub(super) fn answered(&self, req_kind: usize, took: Duration, resp: &TrackerResponse) {
        if let Some((n, t)) = self.requests.get(req_kind) {
            n.inc();
            t.observe(took.as_secs_f64());
        }
        let error = match resp {
            TrackerResponse::Error(_) => Some(0),
            TrackerResponse::UnknownPeer => Some(1),
            TrackerResponse::NotFound => Some(2),
            _ => None,
        };
        if let Some(c) = error.and_then(|i| self.errors.get(i)) {
            c.inc();
        }
    }

    /// The request's kind, for [`Watch::answered`].
    pub(super) fn kind(req: &TrackerRequest) -> usize {
        kind_of(req)
    }
}

/// What the view keeps of one member beyond its pieces.
#[derive(Debug, Clone)]
pub(super) struct Traffic {
    /// When it joined the swarm.
    pub(super) joined: Instant,
    /// It joined holding every piece: a seed.
    pub(super) seed: bool,
    /// When it came to hold every piece (a fetcher).
    pub(super) completed: Option<Instant>,
    /// What it last said it moved, with the sources resolved to members.
    pub(super) stats: PeerStats,
    /// The highest upload rate it reported.
    pub(super) peak_up: u64,
}

impl Traffic {
    pub(super) fn new(now: Instant, seed: bool) -> Traffic {
        Traffic {
            joined: now,
            seed,
            completed: None,
            stats: PeerStats::default(),
            peak_up: 0,
        }
    }

    /// Its upload capacity as the bound uses it: the cap it runs under,
    /// else the most it was seen to send.
    fn capacity(&self) -> u64 {
        self.stats.upload_limit.unwrap_or(self.peak_up)
    }
}

/// `1` per piece held, `0` per piece missing.
pub(super) fn bits(b: &Bitfield) -> String {
    (0..b.len() as usize)
        .map(|i| if b.has(i) { '1' } else { '0' })
        .collect()
}

/// The lower bound on the time to give a file of `size` bytes to
/// `fetchers` peers from seeds uploading `seed_up` bytes/s in all, with the
/// fetchers uploading `fetcher_up` in all: max(F/u_s, N·F/(u_s + Σu_i)),
/// as its two terms and the bound; `None` without seed upload.
pub(super) fn lower_bound(
    size: u64,
    fetchers: u64,
    seed_up: u64,
    fetcher_up: u64,
) -> Option<(f64, f64, f64)> {
    if seed_up == 0 || fetchers == 0 {
        return None;
    }
    let f = size as f64;
    let seed = f / seed_up as f64;
    let swarm = fetchers as f64 * f / (seed_up + fetcher_up) as f64;
    Some((seed, swarm, seed.max(swarm)))
}

impl Swarm {
    fn json(&self, now: Instant) -> Value {
        let m = &self.manifest;
        let n = m.piece_count() as usize;
        let mut rarity = vec![0u32; n];
        let mut members: Vec<(&SocketAddr, &super::tracker::Member)> =
            self.members.iter().collect();
        members.sort_by_key(|(a, mem)| (!mem.traffic.seed, mem.traffic.joined, **a));
        let mut flows = Vec::new();
        let peers: Vec<Value> = members
            .iter()
            .map(|(addr, mem)| {
                for (i, r) in rarity.iter_mut().enumerate() {
                    if mem.have.has(i) {
                        *r += 1;
                    }
                }
                let t = &mem.traffic;
                for (from, rate) in &t.stats.from {
                    flows.push(json!({
                        "from": from.to_string(),
                        "to": addr.to_string(),
                        "bytes_per_sec": rate,
                    }));
                }
                json!({
                    "addr": addr.to_string(),
                    "pieces": mem.have.count(),
                    "bitfield": bits(&mem.have),
                    "seed": t.seed,
                    "complete": mem.have.is_complete(),
                    "uploaded": t.stats.uploaded,
                    "downloaded": t.stats.downloaded,
                    "up_rate": t.stats.up_rate,
                    "down_rate": t.stats.down_rate,
                    "upload_limit": t.stats.upload_limit,
                    "joined_secs": now.saturating_duration_since(t.joined).as_secs_f64(),
                    "completed_secs": t.completed.map(|c| c.saturating_duration_since(t.joined).as_secs_f64()),
                })
            })
            .collect();
        // The distribution: from the first fetcher's arrival to the last
        // one's completion (or now).
        let fetchers: Vec<&super::tracker::Member> = members
            .iter()
            .map(|(_, m)| *m)
            .filter(|m| !m.traffic.seed)
            .collect();
        let start = fetchers.iter().map(|m| m.traffic.joined).min();
        let done = !fetchers.is_empty() && fetchers.iter().all(|m| m.traffic.completed.is_some());
        let end = if done {
            fetchers.iter().filter_map(|m| m.traffic.completed).max()
        } else {
            Some(now)
        };
        let elapsed = match (start, end) {
            (Some(s), Some(e)) => Some(e.saturating_duration_since(s).as_secs_f64()),
            _ => None,
        };
        let seed_up: u64 = members
            .iter()
            .filter(|(_, m)| m.traffic.seed)
            .map(|(_, m)| m.traffic.capacity())
            .sum();
        let fetcher_up: u64 = fetchers.iter().map(|m| m.traffic.capacity()).sum();
        let bound = lower_bound(m.size(), fetchers.len() as u64, seed_up, fetcher_up);
        json!({
            "id": m.id().to_string(),
            "name": m.name().as_str(),
            "size": m.size(),
            "piece_size": m.piece_size(),
            "piece_count": n,
            "rarity": rarity,
            "peers": peers,
            "flows": flows,
            "timing": {
                "fetchers": fetchers.len(),
                "done": done,
                "elapsed_secs": elapsed,
                "seed_upload": seed_up,
                "fetcher_upload": fetcher_up,
                "bound_seed_secs": bound.map(|b| b.0),
                "bound_swarm_secs": bound.map(|b| b.1),
                "bound_secs": bound.map(|b| b.2),
            },
        })
    }
}

/// The tracker's page and state.
pub(super) struct TrackerSite {
    pub(super) tracker: Arc<Tracker>,
}

impl Site for TrackerSite {
    fn page(&self) -> &'static str {
        include_str!("tracker.html")
    }

    fn state(&self) -> Value {
        let now = Instant::now();
        let state = self.tracker.lock();
        let mut swarms: Vec<&Swarm> = state.swarms.values().collect();
        swarms.sort_by(|a, b| {
            (a.manifest.name(), a.manifest.id()).cmp(&(b.manifest.name(), b.manifest.id()))
        });
        let swarms: Vec<Value> = swarms.iter().map(|s| s.json(now)).collect();
        json!({
            "system": "bt-tracker",
            "swarms": swarms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_the_larger_of_the_seed_and_the_swarm_terms() {
        // 8 MB to 4 fetchers: a 1 MB/s seed alone needs 8 s; with the
        // fetchers' 3 MB/s the swarm needs 4·8/4 = 8 s too.
        let (seed, swarm, bound) = lower_bound(8_000_000, 4, 1_000_000, 3_000_000).unwrap();
        assert_eq!((seed, swarm, bound), (8.0, 8.0, 8.0));
        // Slow fetchers: the swarm term dominates.
        let (_, swarm, bound) = lower_bound(8_000_000, 4, 1_000_000, 1_000_000).unwrap();
        assert_eq!((swarm, bound), (16.0, 16.0));
        assert!(lower_bound(1, 1, 0, 5).is_none());
        assert!(lower_bound(1, 0, 5, 5).is_none());
    }

    #[test]
    fn bitfields_are_strings_of_ones_and_zeros() {
        let mut b = Bitfield::new(5);
        b.set_bit(1, true);
        b.set_bit(4, true);
        assert_eq!(bits(&b), "01001");
    }
}
