//! What a peer shows of itself: its pieces, its connections with the
//! piece on its way on each and their rates, the pieces lately received
//! and sent; the counters behind its `/metrics`, and the traffic it tells
//! the tracker (`Stats`). The data path adds a few numbers per piece, under
//! a lock of its own, never per chunk.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::events::Events;
use crate::metrics::{Counter, Histogram, Registry};
use crate::swarm::proto::{MAX_STATS_SOURCES, PeerStats};
use crate::view::Site;

use super::Node;

/// Rates are the bytes moved over this long.
const WINDOW: Duration = Duration::from_secs(3);

/// Finished pieces the view remembers.
const RECENT: usize = 60;

/// Buckets for a piece's time from request to verified, in seconds.
const PIECE_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Bytes moved lately, for a rate.
#[derive(Debug, Default)]
struct Meter {
    samples: VecDeque<(Instant, u64)>,
    total: u64,
}

impl Meter {
    fn add(&mut self, now: Instant, n: u64) {
        self.total += n;
        self.samples.push_back((now, n));
        self.trim(now);
    }

    fn trim(&mut self, now: Instant) {
        while let Some((t, _)) = self.samples.front() {
            if now.saturating_duration_since(*t) > WINDOW {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }

    /// Bytes per second over the last `WINDOW`.
    fn rate(&mut self, now: Instant) -> u64 {
        self.trim(now);
        let n: u64 = self.samples.iter().map(|s| s.1).sum();
        (n as f64 / WINDOW.as_secs_f64()) as u64
    }
}

/// Which way a connection carries pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dir {
    /// We fetch from the remote.
    Down,
    /// The remote fetches from us.
    Up,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Dir::Down => "down",
            Dir::Up => "up",
        }
    }
}

/// One connection that moves pieces.
struct Link {
    dir: Dir,
    peer: SocketAddr,
    opened: Instant,
    /// The piece on its way now.
    piece: Option<u32>,
    pieces: u64,
    meter: Meter,
}

#[derive(Default)]
struct Flows {
    next: u64,
    links: BTreeMap<u64, Link>,
    up: Meter,
    down: Meter,
    /// Received per remote (by its listening address), for `Stats`.
    from: HashMap<SocketAddr, Meter>,
    recent: VecDeque<Moved>,
}

/// A piece that went through, as the view lists it.
struct Moved {
    t: u64,
    dir: Dir,
    peer: SocketAddr,
    piece: u32,
    bytes: u32,
}

/// The peer's counters, events and transfers.
pub(crate) struct Watch {
    pub(crate) metrics: Arc<Registry>,
    pub(crate) events: Arc<Events>,
    flows: Mutex<Flows>,
    pieces_in: Arc<Counter>,
    pieces_out: Arc<Counter>,
    bytes_in: Arc<Counter>,
    bytes_out: Arc<Counter>,
    /// `have`, `piece`: requests this peer answered.
    served: [Arc<Counter>; 2],
    /// `busy`, `missing`, `corrupt`, `duplicate`.
    errors: [Arc<Counter>; 4],
    piece_seconds: Arc<Histogram>,
}

/// Requests served, by kind.
#[derive(Debug, Clone, Copy)]
pub(super) enum Served {
    Have = 0,
    Piece = 1,
}

/// Refusals and failures, by kind.
#[derive(Debug, Clone, Copy)]
pub(super) enum Trouble {
    /// This peer answered `Busy`.
    Busy = 0,
    /// This peer answered `Missing`.
    Missing = 1,
    /// A piece received failed its check.
    Corrupt = 2,
    /// A piece received again (the end game).
    Duplicate = 3,
}

fn lock(m: &Mutex<Flows>) -> MutexGuard<'_, Flows> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Watch {
    pub(super) fn new() -> Watch {
        let metrics = Registry::new();
        let served = ["have", "piece"].map(|k| {
            metrics.counter(
                "peer_requests_total",
                "Requests from other peers this peer answered, by kind.",
                &[("kind", k)],
            )
        });
        let errors = ["busy", "missing", "corrupt", "duplicate"].map(|k| {
            metrics.counter(
                "peer_errors_total",
                "Piece requests refused (busy, missing) and pieces received that failed \
                 their check (corrupt) or came twice (duplicate).",
                &[("kind", k)],
            )
        });
        let [pieces_in, pieces_out] = ["in", "out"].map(|d| {
            metrics.counter(
                "peer_pieces_total",
                "Pieces received (verified) and sent, by direction.",
                &[("direction", d)],
            )
        });
        let [bytes_in, bytes_out] = ["in", "out"].map(|d| {
            metrics.counter(
                "peer_bytes_total",
                "Piece bytes received (verified) and sent, by direction.",
                &[("direction", d)],
            )
        });
        let piece_seconds = metrics.histogram(
            "peer_piece_seconds",
            "Time from asking for a piece to holding it verified.",
            &[],
            PIECE_BUCKETS,
        );
        Watch {
            metrics,
            events: Events::new(),
            flows: Mutex::default(),
            pieces_in,
            pieces_out,
            bytes_in,
            bytes_out,
            served,
            errors,
            piece_seconds,
        }
    }

    pub(super) fn served(&self, kind: Served) {
        self.served[kind as usize].inc();
    }

    pub(super) fn trouble(&self, kind: Trouble) {
        self.errors[kind as usize].inc();
    }

    /// A connection that moves pieces opens; it closes when the guard goes.
    pub(super) fn open(&self, dir: Dir, peer: SocketAddr) -> LinkGuard<'_> {
        let id = {
            let mut f = lock(&self.flows);
            f.next += 1;
            let id = f.next;
            f.links.insert(
                id,
                Link {
                    dir,
                    peer,
                    opened: Instant::now(),
                    piece: None,
                    pieces: 0,
                    meter: Meter::default(),
                },
            );
            id
        };
        self.events.publish("connected", |m| {
            m.insert("peer".into(), peer.to_string().into());
            m.insert("direction".into(), dir.name().into());
        });
        LinkGuard { watch: self, id }
    }
}

/// A connection counted in [`Watch`]; dropping it closes it.
pub(super) struct LinkGuard<'a> {
    watch: &'a Watch,
    id: u64,
}

impl LinkGuard<'_> {
    /// Piece `index` is on its way on this connection.
    pub(super) fn piece(&self, index: u32) {
        if let Some(l) = lock(&self.watch.flows).links.get_mut(&self.id) {
            l.piece = Some(index);
        }
    }

    /// Piece `index`, `len` bytes, went through (verified, when received);
    /// `asked` is how long ago it was requested.
    pub(super) fn moved(&self, index: u32, len: u32, asked: Option<Duration>) {
        let w = self.watch;
        let now = Instant::now();
        let len64 = u64::from(len);
        let (dir, peer) = {
            let mut f = lock(&w.flows);
            let Some(l) = f.links.get_mut(&self.id) else {
                return;
            };
            l.piece = None;
            l.pieces += 1;
            l.meter.add(now, len64);
            let (dir, peer) = (l.dir, l.peer);
            match dir {
                Dir::Down => {
                    f.down.add(now, len64);
                    f.from.entry(peer).or_default().add(now, len64);
                }
                Dir::Up => f.up.add(now, len64),
            }
            if f.recent.len() >= RECENT {
                f.recent.pop_front();
            }
            f.recent.push_back(Moved {
                t: crate::events::now_ms(),
                dir,
                peer,
                piece: index,
                bytes: len,
            });
            (dir, peer)
        };
        match dir {
            Dir::Down => {
                w.pieces_in.inc();
                w.bytes_in.add(len64);
                if let Some(d) = asked {
                    w.piece_seconds.observe(d.as_secs_f64());
                }
            }
            Dir::Up => {
                w.pieces_out.inc();
                w.bytes_out.add(len64);
            }
        }
        let (kind, who) = match dir {
            Dir::Down => ("piece received", "from"),
            Dir::Up => ("piece sent", "to"),
        };
        w.events.publish(kind, |m| {
            m.insert(who.into(), peer.to_string().into());
            m.insert("piece".into(), index.into());
            m.insert("bytes".into(), len.into());
            if let Some(d) = asked {
                m.insert("seconds".into(), d.as_secs_f64().into());
            }
        });
    }
}

impl Drop for LinkGuard<'_> {
    fn drop(&mut self) {
        let gone = lock(&self.watch.flows).links.remove(&self.id);
        if let Some(l) = gone {
            self.watch.events.publish("disconnected", |m| {
                m.insert("peer".into(), l.peer.to_string().into());
                m.insert("direction".into(), l.dir.name().into());
                m.insert("pieces".into(), l.pieces.into());
            });
        }
    }
}

impl Watch {
    /// What this peer moved, as `Stats` tells the tracker.
    pub(super) fn stats(&self, upload_limit: Option<u64>) -> PeerStats {
        let now = Instant::now();
        let mut f = lock(&self.flows);
        let mut from: Vec<(SocketAddr, u64)> = f
            .from
            .iter_mut()
            .map(|(a, m)| (*a, m.rate(now)))
            .filter(|(_, r)| *r > 0)
            .collect();
        f.from.retain(|_, m| !m.samples.is_empty());
        from.sort_by_key(|(_, r)| std::cmp::Reverse(*r));
        from.truncate(MAX_STATS_SOURCES);
        PeerStats {
            uploaded: f.up.total,
            downloaded: f.down.total,
            up_rate: f.up.rate(now),
            down_rate: f.down.rate(now),
            upload_limit,
            from,
        }
    }

    /// Total piece bytes moved both ways: `Stats` goes out when it changed.
    pub(super) fn moved_total(&self) -> u64 {
        self.bytes_in.get() + self.bytes_out.get()
    }

    fn json(&self) -> (Vec<Value>, Vec<Value>, u64, u64, u64, u64) {
        let now = Instant::now();
        let mut f = lock(&self.flows);
        let links = f
            .links
            .values_mut()
            .map(|l| {
                json!({
                    "direction": l.dir.name(),
                    "peer": l.peer.to_string(),
                    "piece": l.piece,
                    "pieces": l.pieces,
                    "bytes": l.meter.total,
                    "bytes_per_sec": l.meter.rate(now),
                    "seconds": now.saturating_duration_since(l.opened).as_secs_f64(),
                })
            })
            .collect();
        let recent = f
            .recent
            .iter()
            .map(|m| {
                json!({
                    "t": m.t,
                    "direction": m.dir.name(),
                    "peer": m.peer.to_string(),
                    "piece": m.piece,
                    "bytes": m.bytes,
                })
            })
            .collect();
        let (up, down) = (f.up.rate(now), f.down.rate(now));
        (recent, links, up, down, f.up.total, f.down.total)
    }
}

impl Node {
    /// Registers the peer's gauges and the server's counters, and serves
    /// the view when `--http` was given. Call it right after the
    /// `listening on` line.
    pub(crate) fn serve_view(
        self: &Arc<Self>,
        server: &crate::server::Server,
    ) -> crate::Result<()> {
        let metrics = &self.watch.metrics;
        server.export_metrics(metrics);
        type Read = fn(&Node) -> f64;
        let gauges: [(&str, &str, Read); 4] = [
            ("swarm_pieces", "Pieces in the swarm's file.", |n| {
                f64::from(n.manifest.piece_count())
            }),
            ("swarm_pieces_held", "Pieces this peer holds.", |n| {
                f64::from(n.lock().have.count())
            }),
            (
                "swarm_members",
                "Other members of the swarm this peer knows of.",
                |n| n.lock().remotes.len() as f64,
            ),
            (
                "peer_links",
                "Connections moving pieces now (both directions).",
                |n| lock(&n.watch.flows).links.len() as f64,
            ),
        ];
        for (name, help, read) in gauges {
            let node = Arc::downgrade(self);
            metrics.gauge_fn(name, help, &[], move || {
                node.upgrade().map_or(0.0, |n| read(&n))
            });
        }
        crate::view::serve_if(
            self.cfg.http.as_deref(),
            server,
            metrics.clone(),
            self.watch.events.clone(),
            || Arc::new(PeerSite { node: self.clone() }),
        )
    }
}

/// A peer's page and state.
pub(crate) struct PeerSite {
    pub(crate) node: Arc<Node>,
}

impl Site for PeerSite {
    fn page(&self) -> &'static str {
        include_str!("peer.html")
    }

    fn state(&self) -> Value {
        let n = &self.node;
        let m = &n.manifest;
        let (have, remotes) = {
            let st = n.lock();
            let remotes: Vec<Value> = st
                .remotes
                .iter()
                .map(|(a, r)| {
                    json!({
                        "addr": a.to_string(),
                        "pieces": r.have.count(),
                        "connected": r.connected,
                        "seed": r.is_seed(),
                        "banned": r.banned,
                        "last_error": r.last_error,
                    })
                })
                .collect();
            (st.have.clone(), remotes)
        };
        let (recent, transfers, up_rate, down_rate, uploaded, downloaded) = n.watch.json();
        json!({
            "system": "bt-peer",
            "addr": n.local.to_string(),
            "tracker": n.cfg.tracker,
            "swarm": n.id.to_string(),
            "name": m.name().as_str(),
            "size": m.size(),
            "piece_size": m.piece_size(),
            "piece_count": m.piece_count(),
            "pieces": have.count(),
            "bitfield": crate::swarm::tracker_view::bits(&have),
            "complete": have.is_complete(),
            "upload_limit": n.cfg.upload_limit,
            "uploaded": uploaded,
            "downloaded": downloaded,
            "up_rate": up_rate,
            "down_rate": down_rate,
            "transfers": transfers,
            "remotes": remotes,
            "recent": recent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_counts_the_last_window_only() {
        let mut m = Meter::default();
        let t0 = Instant::now();
        m.add(t0, 3000);
        m.add(t0 + Duration::from_secs(1), 3000);
        assert_eq!(m.rate(t0 + Duration::from_secs(2)), 2000);
        assert_eq!(m.rate(t0 + Duration::from_secs(10)), 0);
        assert_eq!(m.total, 6000);
    }

    #[test]
    fn links_count_pieces_both_ways_and_close_with_their_guard() {
        let w = Watch::new();
        let a: SocketAddr = "127.0.0.1:4001".parse().unwrap();
        {
            let down = w.open(Dir::Down, a);
            down.piece(3);
            assert_eq!(w.json().1[0]["piece"], 3);
            down.moved(3, 1000, Some(Duration::from_millis(5)));
            let up = w.open(Dir::Up, a);
            up.moved(1, 500, None);
            let s = w.stats(Some(9));
            assert_eq!(
                (s.downloaded, s.uploaded, s.upload_limit),
                (1000, 500, Some(9))
            );
            assert_eq!(s.from.len(), 1);
            assert_eq!(s.from[0].0, a);
            assert_eq!(w.json().1.len(), 2);
        }
        assert!(w.json().1.is_empty());
        let text = w.metrics.render();
        assert!(text.contains("peerkit_peer_bytes_total{direction=\"in\"} 1000\n"));
        assert!(text.contains("peerkit_peer_pieces_total{direction=\"out\"} 1\n"));
        assert!(text.contains("peerkit_peer_piece_seconds_count 1\n"));
    }
}
