//! The tracker: for every swarm, its manifest and each member's address (the
//! IP the tracker sees plus the member's listening port) with the pieces it
//! last reported; evicts members silent for three ping intervals. A member
//! on the tracker's own host (registered over loopback) is handed to askers
//! on other hosts at the address they reached the tracker at. It never
//! holds file data.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Result, Stage};
use crate::events::Events;
use crate::frame::Conn;
use crate::metrics::Registry;
use crate::rng::Rng;
use crate::server::{Limits as ServerLimits, Server, Session};

use super::manifest::{Bitfield, Manifest, SwarmId};
use super::proto::{
    MAX_PEERS_LISTED, MAX_STATS_SOURCES, PeerInfo, Query, TRACKER, TrackerRequest, TrackerResponse,
};
use super::tracker_view::{Traffic, Watch};

/// A member silent for this many ping intervals is evicted.
pub const SILENT_PINGS: u32 = 3;

/// The tracker looks for silent members at least this often (more often
/// with a ping interval below it), so a member is evicted at most
/// `SILENT_PINGS` ping intervals plus this long after its last message.
pub const CLEANUP_EVERY: Duration = Duration::from_secs(1);

/// How the tracker runs.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// The period peers ping at: a member that sent nothing for
    /// `SILENT_PINGS` of them is evicted, within `CLEANUP_EVERY` more.
    pub ping_interval: Duration,
    /// The server core's limits.
    pub server: ServerLimits,
    /// Caps on what the tracker keeps.
    pub limits: Limits,
    /// Quiet: no membership lines (registered, left, evicted) on stdout.
    pub quiet: bool,
    /// Serve a live view at this address (`--http`).
    pub http: Option<String>,
}

/// Caps on what the tracker keeps, so its memory stays bounded whatever
/// peers send. A registration past a cap gets an `Error` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Swarms at once (each holds a manifest of up to about 0.5 MiB).
    pub swarms: usize,
    /// Members of one swarm.
    pub members: usize,
    /// Memberships, across all swarms, of addresses with one IP (many
    /// peers may share a host or a NAT).
    pub per_ip: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            swarms: 1024,
            members: 4096,
            per_ip: 256,
        }
    }
}

/// Where a request came from: the asker's IP, as the tracker sees it, and
/// the tracker's own IP on that connection (its address as the asker sees
/// it, an address of this host the asker can reach).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Link {
    /// The asker's IP.
    pub peer: IpAddr,
    /// The local IP of the asker's connection.
    pub local: IpAddr,
}

impl Link {
    /// A link from `peer` to the tracker's `local` address (IPv4-mapped IPv6
    /// addresses of a dual-stack socket are turned back into IPv4).
    pub(super) fn new(peer: IpAddr, local: IpAddr) -> Link {
        Link {
            peer: peer.to_canonical(),
            local: local.to_canonical(),
        }
    }
}

/// The address to hand the asker on `link` for the member registered as
/// `member`. A member that registered from loopback (or, were it ever seen,
/// an unspecified address) lives on the tracker's own host: an asker on
/// another host could not reach `127.0.0.1`, so it gets the address it
/// reached the tracker at, with the member's port. An asker that came in
/// over loopback itself is on this host and gets the member as registered,
/// so plain 127.0.0.1 setups see 127.0.0.1 (and a member listening on
/// loopback only stays reachable for them).
pub(super) fn reachable(member: SocketAddr, link: Link) -> SocketAddr {
    let ip = member.ip().to_canonical();
    let on_this_host = ip.is_unspecified() || ip.is_loopback();
    if ip.is_unspecified() || (on_this_host && !link.peer.is_loopback()) {
        SocketAddr::new(link.local, member.port())
    } else {
        member
    }
}

/// One member of a swarm.
#[derive(Debug)]
pub(super) struct Member {
    pub(super) have: Bitfield,
    last_seen: Instant,
    /// What the view shows of it beyond its pieces.
    pub(super) traffic: Traffic,
}

/// One swarm: the manifest its members registered and the members.
#[derive(Debug)]
pub(super) struct Swarm {
    pub(super) manifest: Manifest,
    pub(super) members: HashMap<SocketAddr, Member>,
}

/// Everything behind the tracker's lock.
#[derive(Debug, Default)]
pub(super) struct Swarms {
    pub(super) swarms: HashMap<SwarmId, Swarm>,
    /// Memberships per member IP, across all swarms.
    per_ip: HashMap<IpAddr, usize>,
}

impl Swarms {
    /// Counts a membership of `addr` out.
    fn forget(&mut self, addr: SocketAddr) {
        if let Some(n) = self.per_ip.get_mut(&addr.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&addr.ip());
            }
        }
    }
}

/// A step the view's event stream tells, collected under the lock and
/// published after it.
enum Note {
    Joined(SocketAddr, SwarmId, u32),
    Left(SocketAddr, SwarmId, &'static str),
    Held(SocketAddr, SwarmId, Vec<u32>),
    Complete(SocketAddr, SwarmId, f64),
}

/// What one request changed: log lines and view events.
#[derive(Default)]
struct Told {
    lines: Vec<String>,
    notes: Vec<Note>,
}

/// The tracker's state. One lock, never held during socket I/O nor while
/// logging: handlers collect their log lines and print them after.
#[derive(Default)]
pub(super) struct Tracker {
    state: Mutex<Swarms>,
    limits: Limits,
    /// No membership lines on stdout.
    quiet: bool,
    /// The view's counters and events.
    watch: Watch,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker").finish_non_exhaustive()
    }
}

/// Pieces `new` holds that `old` did not.
fn gained(old: &Bitfield, new: &Bitfield) -> Vec<u32> {
    (0..new.len() as usize)
        .filter(|i| new.has(*i) && !old.has(*i))
        .map(|i| i as u32)
        .collect()
}

/// A member's new piece list: taken, with what it gained told.
fn take_have(
    id: SwarmId,
    addr: SocketAddr,
    m: &mut Member,
    have: Bitfield,
    now: Instant,
    told: &mut Told,
) {
    let new = gained(&m.have, &have);
    if !new.is_empty() {
        told.notes.push(Note::Held(addr, id, new));
    }
    if have.is_complete() && !m.traffic.seed && m.traffic.completed.is_none() {
        m.traffic.completed = Some(now);
        let secs = now
            .saturating_duration_since(m.traffic.joined)
            .as_secs_f64();
        told.notes.push(Note::Complete(addr, id, secs));
    }
    m.have = have;
}

/// The member a `Stats` source names: the address as the tracker handed
/// it out, turned back into the member's own when the tracker gave its own
/// address for a member on its host.
fn resolve(src: SocketAddr, link: Link, members: &HashMap<SocketAddr, Member>) -> SocketAddr {
    if members.contains_key(&src) || src.ip().to_canonical() != link.local {
        return src;
    }
    members
        .keys()
        .find(|a| a.port() == src.port() && (a.ip().is_loopback() || a.ip().is_unspecified()))
        .copied()
        .unwrap_or(src)
}

impl Tracker {
    #[cfg(test)]
    fn new() -> Tracker {
        Tracker::default()
    }

    /// A tracker with the given caps; `quiet`: no membership lines.
    pub(super) fn with_limits(limits: Limits, quiet: bool) -> Tracker {
        Tracker {
            state: Mutex::default(),
            limits,
            quiet,
            watch: Watch::default(),
        }
    }

    /// A tracker whose counters are in `metrics` and whose steps go to
    /// `events`.
    pub(super) fn watched(
        limits: Limits,
        quiet: bool,
        metrics: &Arc<Registry>,
        events: Arc<Events>,
    ) -> Tracker {
        Tracker {
            watch: Watch::new(metrics, events),
            ..Tracker::with_limits(limits, quiet)
        }
    }

    /// Registers the gauges read from the tracker's state in `metrics`.
    pub(super) fn export_metrics(self: &Arc<Self>, metrics: &Registry) {
        type Read = fn(&Swarms) -> f64;
        let gauges: [(&str, &str, Read); 3] = [
            ("tracker_swarms", "Swarms the tracker keeps.", |s| {
                s.swarms.len() as f64
            }),
            ("swarm_members", "Members of all swarms together.", |s| {
                s.swarms.values().map(|w| w.members.len()).sum::<usize>() as f64
            }),
            (
                "swarm_pieces_held",
                "Pieces held by all members of all swarms together, as last reported.",
                |s| {
                    s.swarms
                        .values()
                        .flat_map(|w| w.members.values())
                        .map(|m| u64::from(m.have.count()))
                        .sum::<u64>() as f64
                },
            ),
        ];
        for (name, help, read) in gauges {
            let t = self.clone();
            metrics.gauge_fn(name, help, &[], move || read(&t.lock()));
        }
    }

    /// Prints membership lines on stdout, unless quiet, and hands the view
    /// its events. Never call it with the lock held.
    fn log(&self, told: Told) {
        if !self.quiet {
            for e in told.lines {
                crate::event!("{e}");
            }
        }
        let events = &self.watch.events;
        for note in told.notes {
            match note {
                Note::Joined(addr, id, pieces) => events.publish("joined", |m| {
                    m.insert("addr".into(), addr.to_string().into());
                    m.insert("swarm".into(), id.to_string().into());
                    m.insert("pieces".into(), pieces.into());
                }),
                Note::Left(addr, id, how) => events.publish(how, |m| {
                    m.insert("addr".into(), addr.to_string().into());
                    m.insert("swarm".into(), id.to_string().into());
                }),
                Note::Held(addr, id, pieces) => events.publish("held", |m| {
                    m.insert("addr".into(), addr.to_string().into());
                    m.insert("swarm".into(), id.to_string().into());
                    m.insert("pieces".into(), pieces.into());
                }),
                Note::Complete(addr, id, secs) => events.publish("complete", |m| {
                    m.insert("addr".into(), addr.to_string().into());
                    m.insert("swarm".into(), id.to_string().into());
                    m.insert("seconds".into(), secs.into());
                }),
            }
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Swarms> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers one request from a peer that came in on `link`. Membership
    /// changes are logged on stdout.
    pub(super) fn handle(&self, req: TrackerRequest, link: Link, now: Instant) -> TrackerResponse {
        let began = Instant::now();
        let kind = Watch::kind(&req);
        let mut told = Told::default();
        let resp = self.answer(&mut self.lock(), req, link, now, &mut told);
        self.log(told);
        self.watch.answered(kind, began.elapsed(), &resp);
        resp
    }

    /// `handle` with the lock held; log lines and view events go to `told`.
    fn answer(
        &self,
        state: &mut Swarms,
        req: TrackerRequest,
        link: Link,
        now: Instant,
        told: &mut Told,
    ) -> TrackerResponse {
        let ip = link.peer;
        let swarms = &mut state.swarms;
        match req {
            TrackerRequest::Register {
                manifest,
                port,
                have,
            } => {
                if let Err(e) = have.check_for(&manifest, Stage::Request) {
                    return TrackerResponse::Error(e.to_string());
                }
                let id = manifest.id();
                let addr = SocketAddr::new(ip, port);
                let known = swarms.get(&id);
                let is_member = known.is_some_and(|s| s.members.contains_key(&addr));
                if !is_member {
                    let limits = &self.limits;
                    let full = match known {
                        None if swarms.len() >= limits.swarms => Some(format!(
                            "tracker full: it keeps at most {} swarms",
                            limits.swarms
                        )),
                        Some(s) if s.members.len() >= limits.members => Some(format!(
                            "swarm full: the tracker keeps at most {} members per swarm",
                            limits.members
                        )),
                        _ if state.per_ip.get(&ip).copied().unwrap_or(0) >= limits.per_ip => {
                            Some(format!(
                                "too many registrations from {ip}: at most {} across all swarms",
                                limits.per_ip
                            ))
                        }
                        _ => None,
                    };
                    if let Some(why) = full {
                        return TrackerResponse::Error(why);
                    }
                    *state.per_ip.entry(ip).or_default() += 1;
                }
                let swarm = state.swarms.entry(id).or_insert_with(|| Swarm {
                    manifest,
                    members: HashMap::new(),
                });
                match swarm.members.get_mut(&addr) {
                    Some(m) => {
                        m.last_seen = now;
                        take_have(id, addr, m, have, now, told);
                    }
                    None => {
                        let seed = have.is_complete();
                        told.notes.push(Note::Joined(addr, id, have.count()));
                        let member = Member {
                            have,
                            last_seen: now,
                            traffic: Traffic::new(now, seed),
                        };
                        swarm.members.insert(addr, member);
                        told.lines.push(format!(
                            "registered {addr} (swarm {} {})",
                            id.short(),
                            swarm.manifest.name()
                        ));
                    }
                }
                TrackerResponse::Registered {
                    swarm: id,
                    peers: swarm.members.len() as u32,
                }
            }
            TrackerRequest::Ping { swarm, port } => {
                match member(swarms, swarm, SocketAddr::new(ip, port)) {
                    Some(m) => {
                        m.last_seen = now;
                        TrackerResponse::Ok
                    }
                    None => TrackerResponse::UnknownPeer,
                }
            }
            TrackerRequest::Report { swarm, port, have } => {
                let Some(s) = swarms.get_mut(&swarm) else {
                    return TrackerResponse::UnknownPeer;
                };
                if let Err(e) = have.check_for(&s.manifest, Stage::Request) {
                    return TrackerResponse::Error(e.to_string());
                }
                let addr = SocketAddr::new(ip, port);
                match s.members.get_mut(&addr) {
                    Some(m) => {
                        take_have(swarm, addr, m, have, now, told);
                        m.last_seen = now;
                        TrackerResponse::Ok
                    }
                    None => TrackerResponse::UnknownPeer,
                }
            }
            TrackerRequest::Stats {
                swarm,
                port,
                have,
                mut stats,
            } => {
                let Some(s) = swarms.get_mut(&swarm) else {
                    return TrackerResponse::UnknownPeer;
                };
                if let Err(e) = have.check_for(&s.manifest, Stage::Request) {
                    return TrackerResponse::Error(e.to_string());
                }
                if stats.from.len() > MAX_STATS_SOURCES {
                    return TrackerResponse::Error(format!(
                        "stats name {} sources; at most {MAX_STATS_SOURCES}",
                        stats.from.len()
                    ));
                }
                for (src, _) in stats.from.iter_mut() {
                    *src = resolve(*src, link, &s.members);
                }
                let addr = SocketAddr::new(ip, port);
                match s.members.get_mut(&addr) {
                    Some(m) => {
                        take_have(swarm, addr, m, have, now, told);
                        m.last_seen = now;
                        m.traffic.peak_up = m.traffic.peak_up.max(stats.up_rate);
                        m.traffic.stats = stats;
                        TrackerResponse::Ok
                    }
                    None => TrackerResponse::UnknownPeer,
                }
            }
            TrackerRequest::Peers { swarm, port } => {
                let me = SocketAddr::new(ip, port);
                let Some(s) = swarms.get_mut(&swarm) else {
                    return TrackerResponse::NotFound;
                };
                if let Some(m) = s.members.get_mut(&me) {
                    m.last_seen = now;
                }
                // Choose first, then copy only the chosen bitfields.
                let mut others: Vec<(&SocketAddr, &Member)> =
                    s.members.iter().filter(|(a, _)| **a != me).collect();
                let chosen = others.len().min(MAX_PEERS_LISTED);
                Rng::new().pick_front(&mut others, chosen);
                let list = others[..chosen]
                    .iter()
                    .map(|(a, m)| PeerInfo {
                        addr: reachable(**a, link),
                        have: m.have.clone(),
                    })
                    .collect();
                TrackerResponse::Peers(list)
            }
            TrackerRequest::Lookup(Query::Id(id)) => match swarms.get(&id) {
                Some(s) => TrackerResponse::Manifest(s.manifest.clone()),
                None => TrackerResponse::NotFound,
            },
            TrackerRequest::Lookup(query) => {
                let mut found: Vec<&Swarm> = swarms
                    .values()
                    .filter(|s| query.matches(&s.manifest.id(), s.manifest.name()))
                    .collect();
                match found.len() {
                    0 => TrackerResponse::NotFound,
                    1 => TrackerResponse::Manifest(found.remove(0).manifest.clone()),
                    _ => {
                        TrackerResponse::Ambiguous(found.iter().map(|s| s.manifest.id()).collect())
                    }
                }
            }
            TrackerRequest::Leave { swarm, port } => {
                let addr = SocketAddr::new(ip, port);
                let Some(s) = swarms.get_mut(&swarm) else {
                    return TrackerResponse::UnknownPeer;
                };
                if s.members.remove(&addr).is_none() {
                    return TrackerResponse::UnknownPeer;
                }
                told.lines
                    .push(format!("left {addr} (swarm {})", swarm.short()));
                told.notes.push(Note::Left(addr, swarm, "left"));
                if s.members.is_empty() {
                    swarms.remove(&swarm);
                    told.lines
                        .push(format!("forgot swarm {} (no members)", swarm.short()));
                }
                state.forget(addr);
                TrackerResponse::Ok
            }
        }
    }

    /// Evicts members not heard from since `since`; drops swarms left
    /// without members. Returns the evicted addresses.
    pub(super) fn cleanup(&self, since: Instant) -> Vec<SocketAddr> {
        let mut evicted = Vec::new();
        let mut told = Told::default();
        {
            let mut state = self.lock();
            state.swarms.retain(|id, s| {
                s.members.retain(|addr, m| {
                    let keep = m.last_seen >= since;
                    if !keep {
                        told.lines
                            .push(format!("evicted {addr} (swarm {})", id.short()));
                        told.notes.push(Note::Left(*addr, *id, "evicted"));
                        evicted.push(*addr);
                    }
                    keep
                });
                if s.members.is_empty() {
                    told.lines
                        .push(format!("forgot swarm {} (no members)", id.short()));
                }
                !s.members.is_empty()
            });
            for a in &evicted {
                state.forget(*a);
            }
        }
        self.watch.evicted.add(evicted.len() as u64);
        self.log(told);
        evicted
    }

    /// Serves peers until shutdown, with a cleanup thread that evicts
    /// members silent for `SILENT_PINGS` ping intervals.
    pub(super) fn serve(self: Arc<Self>, server: Server, cfg: &TrackerConfig) -> Result<()> {
        let cleaner = {
            let tracker = self.clone();
            let shutdown = server.shutdown().clone();
            let silence = cfg.ping_interval * SILENT_PINGS;
            let every = cfg.ping_interval.min(CLEANUP_EVERY);
            thread::Builder::new()
                .name("cleanup".into())
                .spawn(move || {
                    while !shutdown.wait(every) {
                        if let Some(since) = Instant::now().checked_sub(silence) {
                            tracker.cleanup(since);
                        }
                    }
                })?
        };
        let tracker = self;
        server.serve(move |session| serve_conn(&tracker, session))?;
        let _ = cleaner.join();
        Ok(())
    }
}

fn member(
    swarms: &mut HashMap<SwarmId, Swarm>,
    swarm: SwarmId,
    addr: SocketAddr,
) -> Option<&mut Member> {
    swarms.get_mut(&swarm)?.members.get_mut(&addr)
}

/// One peer's connection: handshake, then requests until it closes.
fn serve_conn(tracker: &Tracker, session: Session) {
    let peer = session.peer();
    // The tracker's address as this peer sees it (the socket is connected,
    // so only a vanished peer can make this fail).
    let local = match session.stream().local_addr() {
        Ok(a) => a.ip(),
        Err(_) => return,
    };
    let link = Link::new(peer.ip(), local);
    let Some(mut conn) = Conn::accept_logged(session, TRACKER) else {
        return;
    };
    conn.serve_requests::<TrackerRequest, TrackerResponse>(|conn, req| {
        conn.send(&tracker.handle(req, link, Instant::now()))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::name::FileName;

    fn manifest(name: &str, size: u64) -> Manifest {
        let n = size.div_ceil(16384) as usize;
        Manifest::new(
            FileName::new(name).unwrap(),
            size,
            16384,
            Digest::of(name.as_bytes()),
            vec![Digest::of(b"p"); n],
        )
        .unwrap()
    }

    const LO_IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const LO: Link = Link {
        peer: LO_IP,
        local: LO_IP,
    };

    /// A link from `ip` to the same address (as the tests before links).
    fn from(ip: IpAddr) -> Link {
        Link::new(
            ip,
            if ip.is_loopback() {
                ip
            } else {
                "10.0.0.1".parse().unwrap()
            },
        )
    }

    fn register(t: &Tracker, m: &Manifest, port: u16, now: Instant) {
        let r = t.handle(
            TrackerRequest::Register {
                manifest: m.clone(),
                port,
                have: m.empty_bitfield(),
            },
            LO,
            now,
        );
        assert!(matches!(r, TrackerResponse::Registered { .. }), "{r:?}");
    }

    #[test]
    fn peers_lists_the_others_with_their_pieces() {
        let t = Tracker::new();
        let m = manifest("a", 50_000);
        let now = Instant::now();
        for port in [4001, 4002, 4003] {
            register(&t, &m, port, now);
        }
        let mut have = m.empty_bitfield();
        have.set_bit(1, true);
        let r = t.handle(
            TrackerRequest::Report {
                swarm: m.id(),
                port: 4002,
                have: have.clone(),
            },
            LO,
            now,
        );
        assert_eq!(r, TrackerResponse::Ok);
        let TrackerResponse::Peers(mut list) = t.handle(
            TrackerRequest::Peers {
                swarm: m.id(),
                port: 4001,
            },
            LO,
            now,
        ) else {
            panic!("no peer list")
        };
        list.sort_by_key(|p| p.addr);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].addr, "127.0.0.1:4002".parse().unwrap());
        assert_eq!(list[0].have, have);
        assert_eq!(list[1].addr, "127.0.0.1:4003".parse().unwrap());
    }

    #[test]
    fn lookup_by_name_and_id() {
        let t = Tracker::new();
        let a = manifest("a", 10);
        let a2 = manifest("a", 20);
        let b = manifest("b", 10);
        let now = Instant::now();
        register(&t, &a, 1, now);
        register(&t, &b, 1, now);
        let by_name = |n: &str| {
            t.handle(
                TrackerRequest::Lookup(Query::Name(FileName::new(n).unwrap())),
                LO,
                now,
            )
        };
        assert_eq!(by_name("a"), TrackerResponse::Manifest(a.clone()));
        assert_eq!(by_name("zzz"), TrackerResponse::NotFound);
        register(&t, &a2, 1, now);
        assert!(matches!(by_name("a"), TrackerResponse::Ambiguous(ids) if ids.len() == 2));
        assert_eq!(
            t.handle(TrackerRequest::Lookup(Query::Id(a2.id())), LO, now),
            TrackerResponse::Manifest(a2.clone())
        );
        // The short id of the log lines, or any start of an id, when only
        // one swarm's id begins so.
        let by = |q: &str| t.handle(TrackerRequest::Lookup(Query::parse(q).unwrap()), LO, now);
        let short = a2.id().short();
        assert_eq!(by(&short), TrackerResponse::Manifest(a2.clone()));
        assert_eq!(
            by(&a2.id().to_string()[..20].to_ascii_uppercase()),
            TrackerResponse::Manifest(a2.clone())
        );
        assert_eq!(by("0000000000000000000"), TrackerResponse::NotFound);
        // Four digits shared by every id: ambiguous. Find such a start.
        let (ia, ib) = (a.id().to_string(), b.id().to_string());
        if ia[..4] == ib[..4] {
            assert!(matches!(by(&ia[..4]), TrackerResponse::Ambiguous(_)));
        }
    }

    #[test]
    fn cleanup_evicts_the_silent_and_pings_keep_members() {
        let t = Tracker::new();
        let m = manifest("a", 10);
        let t0 = Instant::now();
        register(&t, &m, 1, t0);
        register(&t, &m, 2, t0);
        let t1 = t0 + Duration::from_secs(15);
        let ping = |port, at| {
            t.handle(
                TrackerRequest::Ping {
                    swarm: m.id(),
                    port,
                },
                LO,
                at,
            )
        };
        assert_eq!(ping(1, t0 + Duration::from_secs(10)), TrackerResponse::Ok);
        // First cleanup at t1 looks back to t0: both were seen since.
        assert!(t.cleanup(t0).is_empty());
        // Second cleanup looks back to t1: peer 1 pinged since, peer 2 did not.
        assert_eq!(ping(1, t1 + Duration::from_secs(5)), TrackerResponse::Ok);
        let evicted = t.cleanup(t1);
        assert_eq!(evicted, vec!["127.0.0.1:2".parse().unwrap()]);
        assert_eq!(ping(2, t1), TrackerResponse::UnknownPeer);
        // Once the last member goes, the swarm is forgotten.
        let evicted = t.cleanup(t1 + Duration::from_secs(30));
        assert_eq!(evicted.len(), 1);
        assert_eq!(
            t.handle(TrackerRequest::Lookup(Query::Id(m.id())), LO, t1),
            TrackerResponse::NotFound
        );
    }

    fn register_from(t: &Tracker, m: &Manifest, ip: IpAddr, port: u16) -> TrackerResponse {
        t.handle(
            TrackerRequest::Register {
                manifest: m.clone(),
                port,
                have: m.empty_bitfield(),
            },
            from(ip),
            Instant::now(),
        )
    }

    fn refused_with(r: TrackerResponse, text: &str) {
        match r {
            TrackerResponse::Error(e) => assert!(e.contains(text), "{e}"),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn swarms_members_and_registrations_per_ip_are_capped() {
        let t = Tracker::with_limits(
            Limits {
                swarms: 2,
                members: 2,
                per_ip: 3,
            },
            false,
        );
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let (a, b, c) = (manifest("a", 10), manifest("b", 10), manifest("c", 10));
        let ok =
            |r: TrackerResponse| assert!(matches!(r, TrackerResponse::Registered { .. }), "{r:?}");
        ok(register_from(&t, &a, LO_IP, 1));
        ok(register_from(&t, &a, LO_IP, 2));
        refused_with(
            register_from(&t, &a, other, 3),
            "at most 2 members per swarm",
        );
        // A member registering again is not a new one.
        ok(register_from(&t, &a, LO_IP, 1));
        ok(register_from(&t, &b, LO_IP, 1));
        refused_with(register_from(&t, &c, other, 1), "at most 2 swarms");
        refused_with(
            register_from(&t, &b, LO_IP, 2),
            "too many registrations from 127.0.0.1",
        );
        ok(register_from(&t, &b, other, 2));
        // Leaving frees a place for the IP.
        let leave = TrackerRequest::Leave {
            swarm: a.id(),
            port: 1,
        };
        assert_eq!(t.handle(leave, LO, Instant::now()), TrackerResponse::Ok);
        ok(register_from(&t, &a, LO_IP, 3));
        // So does eviction: everyone goes, and all places are free again.
        assert_eq!(t.cleanup(Instant::now() + Duration::from_secs(1)).len(), 4);
        assert!(t.lock().per_ip.is_empty());
        ok(register_from(&t, &c, LO_IP, 1));
    }

    #[test]
    fn peers_lists_at_most_the_cap_and_never_the_asker() {
        let t = Tracker::new();
        let m = manifest("a", 10);
        let now = Instant::now();
        for port in 1..=200 {
            register(&t, &m, port, now);
        }
        let TrackerResponse::Peers(list) = t.handle(
            TrackerRequest::Peers {
                swarm: m.id(),
                port: 7,
            },
            LO,
            now,
        ) else {
            panic!("no peer list")
        };
        let mut ports: Vec<u16> = list.iter().map(|p| p.addr.port()).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), MAX_PEERS_LISTED);
        assert!(!ports.contains(&7));
    }

    #[test]
    fn members_on_this_host_are_handed_out_at_an_address_the_asker_reached() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let remote = Link::new(ip("10.78.0.11"), ip("10.78.0.10"));
        // Loopback and unspecified members, to an asker on another host.
        assert_eq!(
            reachable(sa("127.0.0.1:4001"), remote),
            sa("10.78.0.10:4001")
        );
        assert_eq!(reachable(sa("[::1]:4001"), remote), sa("10.78.0.10:4001"));
        assert_eq!(reachable(sa("0.0.0.0:4001"), remote), sa("10.78.0.10:4001"));
        assert_eq!(reachable(sa("[::]:4001"), remote), sa("10.78.0.10:4001"));
        // Members seen at a real address stay as they are.
        assert_eq!(
            reachable(sa("10.78.0.12:4001"), remote),
            sa("10.78.0.12:4001")
        );
        // An asker over loopback is on this host: 127.0.0.1 works for it.
        let local = Link::new(ip("127.0.0.1"), ip("127.0.0.1"));
        assert_eq!(reachable(sa("127.0.0.1:4001"), local), sa("127.0.0.1:4001"));
        assert_eq!(reachable(sa("0.0.0.0:4001"), local), sa("127.0.0.1:4001"));
        // A dual-stack socket's v4-mapped addresses count as IPv4.
        let mapped = Link::new(ip("::ffff:10.78.0.11"), ip("::ffff:10.78.0.10"));
        assert_eq!(mapped, remote);
        assert_eq!(
            reachable(sa("127.0.0.1:4001"), mapped),
            sa("10.78.0.10:4001")
        );
    }

    #[test]
    fn peers_answers_rewrite_loopback_members_for_remote_askers() {
        let t = Tracker::new();
        let m = manifest("a", 10);
        let now = Instant::now();
        register(&t, &m, 4001, now);
        let asker = Link::new("10.78.0.11".parse().unwrap(), "10.78.0.10".parse().unwrap());
        let ask = |link| {
            let req = TrackerRequest::Peers {
                swarm: m.id(),
                port: 5000,
            };
            match t.handle(req, link, now) {
                TrackerResponse::Peers(list) => list.iter().map(|p| p.addr).collect::<Vec<_>>(),
                other => panic!("no peer list: {other:?}"),
            }
        };
        assert_eq!(ask(asker), vec!["10.78.0.10:4001".parse().unwrap()]);
        assert_eq!(ask(LO), vec!["127.0.0.1:4001".parse().unwrap()]);
    }

    #[test]
    fn mismatched_bitfields_are_refused() {
        let t = Tracker::new();
        let m = manifest("a", 50_000);
        let r = t.handle(
            TrackerRequest::Register {
                manifest: m.clone(),
                port: 1,
                have: Bitfield::new(9),
            },
            LO,
            Instant::now(),
        );
        assert!(matches!(r, TrackerResponse::Error(_)));
    }
}
