//! The tracker: for every swarm, its manifest and each member's address (the
//! IP the tracker sees plus the member's listening port) with the pieces it
//! last reported; evicts members that stop pinging. It never holds file
//! data.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::frame::Conn;
use crate::rng::Rng;
use crate::server::{Limits as ServerLimits, Server, Session};

use super::manifest::{Bitfield, Manifest, SwarmId};
use super::proto::{MAX_PEERS_LISTED, PeerInfo, Query, TRACKER, TrackerRequest, TrackerResponse};

/// How the tracker runs.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// Every this often, members that sent nothing since the previous
    /// cleanup are evicted.
    pub cleanup_interval: Duration,
    /// The server core's limits.
    pub server: ServerLimits,
    /// Caps on what the tracker keeps.
    pub limits: Limits,
    /// Quiet: no membership lines (registered, left, evicted) on stdout.
    pub quiet: bool,
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

/// One member of a swarm.
#[derive(Debug)]
struct Member {
    have: Bitfield,
    last_seen: Instant,
}

/// One swarm: the manifest its members registered and the members.
#[derive(Debug)]
struct Swarm {
    manifest: Manifest,
    members: HashMap<SocketAddr, Member>,
}

/// Everything behind the tracker's lock.
#[derive(Debug, Default)]
struct Swarms {
    swarms: HashMap<SwarmId, Swarm>,
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

/// The tracker's state. One lock, never held during socket I/O nor while
/// logging: handlers collect their log lines and print them after.
#[derive(Debug, Default)]
pub struct Tracker {
    state: Mutex<Swarms>,
    limits: Limits,
    /// No membership lines on stdout.
    quiet: bool,
}

impl Tracker {
    #[cfg(test)]
    fn new() -> Tracker {
        Tracker::default()
    }

    /// A tracker with the given caps; `quiet`: no membership lines.
    pub fn with_limits(limits: Limits, quiet: bool) -> Tracker {
        Tracker {
            state: Mutex::default(),
            limits,
            quiet,
        }
    }

    /// Prints membership lines on stdout, unless quiet. Never call it with
    /// the lock held.
    fn log(&self, events: Vec<String>) {
        if !self.quiet {
            for e in events {
                crate::event!("{e}");
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Swarms> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers one request from a peer whose connection comes from `ip`.
    /// Membership changes are logged on stdout.
    pub fn handle(&self, req: TrackerRequest, ip: IpAddr, now: Instant) -> TrackerResponse {
        let mut events = Vec::new();
        let resp = self.answer(&mut self.lock(), req, ip, now, &mut events);
        self.log(events);
        resp
    }

    /// `handle` with the lock held; log lines go to `events`.
    fn answer(
        &self,
        state: &mut Swarms,
        req: TrackerRequest,
        ip: IpAddr,
        now: Instant,
        events: &mut Vec<String>,
    ) -> TrackerResponse {
        let swarms = &mut state.swarms;
        match req {
            TrackerRequest::Register {
                manifest,
                port,
                have,
            } => {
                if let Err(e) = have.check_for(&manifest) {
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
                let member = Member {
                    have,
                    last_seen: now,
                };
                if swarm.members.insert(addr, member).is_none() {
                    events.push(format!(
                        "registered {addr} (swarm {} {})",
                        id.short(),
                        swarm.manifest.name()
                    ));
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
                if let Err(e) = have.check_for(&s.manifest) {
                    return TrackerResponse::Error(e.to_string());
                }
                match s.members.get_mut(&SocketAddr::new(ip, port)) {
                    Some(m) => {
                        m.have = have;
                        m.last_seen = now;
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
                let mut rng = Rng::new();
                for k in 0..chosen {
                    let j = k + rng.below(others.len() - k);
                    others.swap(k, j);
                }
                let list = others[..chosen]
                    .iter()
                    .map(|(a, m)| PeerInfo {
                        addr: **a,
                        have: m.have.clone(),
                    })
                    .collect();
                TrackerResponse::Peers(list)
            }
            TrackerRequest::Lookup(Query::Id(id)) => match swarms.get(&id) {
                Some(s) => TrackerResponse::Manifest(s.manifest.clone()),
                None => TrackerResponse::NotFound,
            },
            TrackerRequest::Lookup(Query::Name(name)) => {
                let mut found: Vec<&Swarm> = swarms
                    .values()
                    .filter(|s| *s.manifest.name() == name)
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
                events.push(format!("left {addr} (swarm {})", swarm.short()));
                if s.members.is_empty() {
                    swarms.remove(&swarm);
                    events.push(format!("forgot swarm {} (no members)", swarm.short()));
                }
                state.forget(addr);
                TrackerResponse::Ok
            }
        }
    }

    /// Evicts members not heard from since `since` (the previous cleanup);
    /// drops swarms left without members. Returns the evicted addresses.
    pub fn cleanup(&self, since: Instant) -> Vec<SocketAddr> {
        let mut evicted = Vec::new();
        let mut events = Vec::new();
        {
            let mut state = self.lock();
            state.swarms.retain(|id, s| {
                s.members.retain(|addr, m| {
                    let keep = m.last_seen >= since;
                    if !keep {
                        events.push(format!("evicted {addr} (swarm {})", id.short()));
                        evicted.push(*addr);
                    }
                    keep
                });
                if s.members.is_empty() {
                    events.push(format!("forgot swarm {} (no members)", id.short()));
                }
                !s.members.is_empty()
            });
            for a in &evicted {
                state.forget(*a);
            }
        }
        self.log(events);
        evicted
    }

    /// Serves peers until shutdown, with a cleanup thread.
    pub fn serve(self: Arc<Self>, server: Server, cfg: &TrackerConfig) -> Result<()> {
        let cleaner = {
            let tracker = self.clone();
            let shutdown = server.shutdown().clone();
            let every = cfg.cleanup_interval;
            thread::Builder::new()
                .name("cleanup".into())
                .spawn(move || {
                    let mut previous = Instant::now();
                    while !shutdown.wait(every) {
                        let now = Instant::now();
                        tracker.cleanup(previous);
                        previous = now;
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
    let Some(mut conn) = Conn::accept_logged(session, TRACKER) else {
        return;
    };
    conn.serve_requests::<TrackerRequest, TrackerResponse>(|conn, req| {
        conn.send(&tracker.handle(req, peer.ip(), Instant::now()))
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

    const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

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
            TrackerResponse::Manifest(a2)
        );
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
            ip,
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
        let other: IpAddr = "10.0.0.1".parse().unwrap();
        let (a, b, c) = (manifest("a", 10), manifest("b", 10), manifest("c", 10));
        let ok =
            |r: TrackerResponse| assert!(matches!(r, TrackerResponse::Registered { .. }), "{r:?}");
        ok(register_from(&t, &a, LO, 1));
        ok(register_from(&t, &a, LO, 2));
        refused_with(
            register_from(&t, &a, other, 3),
            "at most 2 members per swarm",
        );
        // A member registering again is not a new one.
        ok(register_from(&t, &a, LO, 1));
        ok(register_from(&t, &b, LO, 1));
        refused_with(register_from(&t, &c, other, 1), "at most 2 swarms");
        refused_with(
            register_from(&t, &b, LO, 2),
            "too many registrations from 127.0.0.1",
        );
        ok(register_from(&t, &b, other, 2));
        // Leaving frees a place for the IP.
        let leave = TrackerRequest::Leave {
            swarm: a.id(),
            port: 1,
        };
        assert_eq!(t.handle(leave, LO, Instant::now()), TrackerResponse::Ok);
        ok(register_from(&t, &a, LO, 3));
        // So does eviction: everyone goes, and all places are free again.
        assert_eq!(t.cleanup(Instant::now() + Duration::from_secs(1)).len(), 4);
        assert!(t.lock().per_ip.is_empty());
        ok(register_from(&t, &c, LO, 1));
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
