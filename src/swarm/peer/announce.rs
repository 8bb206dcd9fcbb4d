//! The tracker loop: registers, pings and reports on their periods,
//! refreshes the peer list while downloading (starting a download worker
//! per new peer), registers again after a tracker restart, and leaves the
//! swarm at shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crate::error::{Error, Result, Stage};
use crate::frame;
use crate::swarm::client::TrackerClient;
use crate::swarm::proto::{MAX_PEERS_LISTED, PeerInfo, TrackerRequest, TrackerResponse};

use super::state::{Remote, State};
use super::{
    MAX_WORKERS, Node, PEERS_REFRESH, SETTLED_ASKS, STARTING_FOR, STARTING_PEERS_REFRESH,
    STATS_EVERY, STUCK_AFTER, STUCK_REPEAT, TICK,
};

impl Node {
    /// Registers with the tracker: the swarm's member count, and this
    /// peer's address as the tracker hands it to others (its listening
    /// port at the address it reached the tracker from, unless it listens
    /// on one address only), which logs name it by.
    pub(crate) fn register(&self, client: &TrackerClient) -> Result<(u32, String)> {
        let req = TrackerRequest::Register {
            manifest: (*self.manifest).clone(),
            port: self.local.port(),
            have: self.have(),
        };
        match client.call_via(&req)? {
            (TrackerResponse::Registered { peers, .. }, via) => {
                let ip = if self.local.ip().is_unspecified() {
                    via
                } else {
                    self.local.ip()
                };
                Ok((
                    peers,
                    crate::net::host_port(&ip.to_string(), self.local.port()),
                ))
            }
            (other, _) => Err(frame::unexpected("Registered", &other)),
        }
    }

    /// Keeps the tracker informed until shutdown, then leaves the swarm.
    /// While downloading it also refreshes the peer list and starts
    /// download workers.
    pub(crate) fn announce_loop(self: &Arc<Self>, client: &TrackerClient, mut registered: bool) {
        let ping_every = self.cfg.ping_interval;
        let report_every = self.cfg.report_interval;
        let peers_every = ping_every.min(PEERS_REFRESH);
        let now = Instant::now();
        let mut next_ping = if registered { now + ping_every } else { now };
        let mut next_report = now + report_every;
        let mut next_peers = now;
        let started = now;
        let mut starting = true;
        let mut quiet_asks = 0u32;
        let mut reported_complete = self.is_complete();
        let mut tracker_ok = registered;
        // Stats go out while pieces move, and once more after they stop
        // (rates of zero); not at all to a tracker that does not take them.
        let mut next_stats = now + STATS_EVERY;
        let mut stats_taken = true;
        let mut told = (self.watch.moved_total(), self.have().count(), false);
        loop {
            let now = Instant::now();
            let complete = self.is_complete();
            if now >= next_ping {
                next_ping = now + ping_every;
                if registered {
                    let req = TrackerRequest::Ping {
                        swarm: self.id,
                        port: self.local.port(),
                    };
                    match client.call(&req) {
                        Ok(TrackerResponse::UnknownPeer) => registered = false,
                        Ok(_) => {}
                        Err(e) => self.tracker_trouble(&mut tracker_ok, client, &e),
                    }
                }
                if !registered {
                    match self.register(client) {
                        Ok((peers, me)) => {
                            registered = true;
                            tracker_ok = true;
                            reported_complete = complete;
                            self.log(&format!(
                                "registered with {} as {me} (swarm {}, {peers} peers)",
                                client.addr(),
                                self.id.short()
                            ));
                        }
                        Err(e) => self.tracker_trouble(&mut tracker_ok, client, &e),
                    }
                }
            }
            if registered && (now >= next_report || complete != reported_complete) {
                next_report = now + report_every;
                reported_complete = complete;
                let req = TrackerRequest::Report {
                    swarm: self.id,
                    port: self.local.port(),
                    have: self.have(),
                };
                match client.call(&req) {
                    Ok(TrackerResponse::UnknownPeer) => {
                        registered = false;
                        next_ping = now;
                    }
                    Ok(_) => {}
                    Err(e) => self.tracker_trouble(&mut tracker_ok, client, &e),
                }
            }
            if registered && stats_taken && now >= next_stats {
                next_stats = now + STATS_EVERY;
                let moved = (self.watch.moved_total(), self.have().count());
                if (moved.0, moved.1) != (told.0, told.1) || told.2 {
                    let stats = self.watch.stats(self.cfg.upload_limit);
                    told = (moved.0, moved.1, stats.up_rate > 0 || stats.down_rate > 0);
                    let req = TrackerRequest::Stats {
                        swarm: self.id,
                        port: self.local.port(),
                        have: self.have(),
                        stats,
                    };
                    match client.call(&req) {
                        Ok(TrackerResponse::UnknownPeer) => {
                            registered = false;
                            next_ping = now;
                        }
                        Ok(_) => {}
                        // A tracker of another version: it goes without.
                        Err(Error::Remote { .. }) => stats_taken = false,
                        Err(e) => self.tracker_trouble(&mut tracker_ok, client, &e),
                    }
                }
            }
            if !complete && now >= next_peers {
                next_peers = now
                    + if starting && started.elapsed() < STARTING_FOR {
                        STARTING_PEERS_REFRESH.min(peers_every)
                    } else {
                        peers_every
                    };
                let req = TrackerRequest::Peers {
                    swarm: self.id,
                    port: self.local.port(),
                };
                match client.call(&req) {
                    Ok(TrackerResponse::Peers(list)) => {
                        let new = self.update_peers(list);
                        // The fast refresh of the start ends once the list
                        // has stopped growing for a few asks in a row.
                        quiet_asks = if new > 0 { 0 } else { quiet_asks + 1 };
                        if quiet_asks >= SETTLED_ASKS && !self.lock().remotes.is_empty() {
                            starting = false;
                        }
                    }
                    Ok(TrackerResponse::NotFound) => {
                        registered = false;
                        next_ping = now;
                    }
                    Ok(other) => {
                        let e = frame::unexpected("Peers", &other);
                        self.warn(&format!("tracker {}: {e}", client.addr()));
                    }
                    Err(e) => self.tracker_trouble(&mut tracker_ok, client, &e),
                }
            }
            if !complete {
                // Also when the tracker cannot be reached: a peer whose own
                // link is cut hears from nobody, and says so.
                self.say_if_stuck();
            }
            let mut next = next_ping.min(next_report).min(next_stats);
            if !complete {
                next = next.min(next_peers);
            }
            let pause = next.saturating_duration_since(Instant::now()).min(TICK);
            if self.shutdown.wait(pause) {
                break;
            }
        }
        if registered {
            let req = TrackerRequest::Leave {
                swarm: self.id,
                port: self.local.port(),
            };
            let _ = client.call(&req);
        }
    }

    /// Reports a tracker failure once per outage.
    fn tracker_trouble(&self, ok: &mut bool, client: &TrackerClient, e: &Error) {
        if *ok {
            self.warn(&format!(
                "tracker {}: {e} (retrying every {:?})",
                client.addr(),
                self.cfg.ping_interval
            ));
        }
        *ok = false;
    }

    /// Merges the tracker's peer list and starts workers for new peers;
    /// how many peers it did not know.
    fn update_peers(self: &Arc<Self>, mut list: Vec<PeerInfo>) -> usize {
        // A tracker lists at most MAX_PEERS_LISTED; one that sends more (a
        // liar, or 100,000 made-up peers) is sampled down to that many.
        if list.len() > MAX_PEERS_LISTED {
            self.warn(&format!(
                "tracker: {} peers listed, at most {MAX_PEERS_LISTED} expected; using {MAX_PEERS_LISTED} at random",
                list.len()
            ));
            crate::rng::Rng::new().pick_front(&mut list, MAX_PEERS_LISTED);
            list.truncate(MAX_PEERS_LISTED);
        }
        let mut new = 0;
        let mut st = self.lock();
        let listed: std::collections::HashSet<SocketAddr> = list.iter().map(|p| p.addr).collect();
        for p in list {
            if p.have.check_for(&self.manifest, Stage::Reply).is_err() || self.is_me(p.addr) {
                continue;
            }
            match st.remotes.get(&p.addr) {
                // A connected remote's own answers are fresher.
                Some(r) if r.connected || r.banned => {}
                Some(_) => {
                    let fetching = self.manifest.empty_bitfield();
                    st.set_remote_have(p.addr, p.have, fetching);
                }
                None => {
                    new += 1;
                    st.remotes
                        .insert(p.addr, Remote::new(self.manifest.empty_bitfield()));
                    let fetching = self.manifest.empty_bitfield();
                    st.set_remote_have(p.addr, p.have, fetching);
                }
            }
        }
        // Forget idle peers the tracker no longer lists (banned ones stay banned).
        let gone: Vec<SocketAddr> = st
            .remotes
            .iter()
            .filter(|(a, r)| !r.connected && !r.banned && !listed.contains(a))
            .map(|(a, _)| *a)
            .collect();
        for a in gone {
            st.clear_remote(a);
            st.remotes.remove(&a);
        }
        if st.missing == 0 {
            return new;
        }
        let now = Instant::now();
        let mut start = Vec::new();
        let running = st.workers;
        for (addr, r) in st.remotes.iter_mut() {
            if r.connected || r.banned || r.retry_at.is_some_and(|t| now < t) {
                continue;
            }
            if start.len() + running >= MAX_WORKERS {
                break;
            }
            r.connected = true;
            start.push(*addr);
        }
        st.workers += start.len();
        let stuck = self.stuck_message(&mut st, now);
        drop(st);
        if let Some(line) = stuck {
            self.warn(&line);
        }
        for addr in start {
            let node = self.clone();
            let spawned = thread::Builder::new()
                .name(format!("fetch {addr}"))
                .spawn(move || node.worker(addr));
            if let Err(e) = spawned {
                self.warn(&format!("cannot start a download thread: {e}"));
                let mut st = self.lock();
                st.workers -= 1;
                if let Some(r) = st.remotes.get_mut(&addr) {
                    r.connected = false;
                }
            }
        }
        new
    }

    /// Says, at most every `STUCK_REPEAT`, that no peer can be reached, if
    /// none can.
    fn say_if_stuck(&self) {
        let mut st = self.lock();
        let line = self.stuck_message(&mut st, Instant::now());
        drop(st);
        if let Some(line) = line {
            self.warn(&line);
        }
    }

    /// With no peer connected and no piece received for `STUCK_AFTER`, the
    /// line saying so (at most every `STUCK_REPEAT`): which peers were
    /// tried and why they failed, or that the tracker lists none.
    fn stuck_message(&self, st: &mut State, now: Instant) -> Option<String> {
        let stuck = st.missing > 0
            && st.linked == 0
            && st.last_piece.elapsed() >= STUCK_AFTER
            && st.stuck_said.is_none_or(|t| now >= t + STUCK_REPEAT);
        if !stuck {
            return None;
        }
        st.stuck_said = Some(now);
        let total = self.manifest.piece_count();
        let held = total - st.missing;
        let known: Vec<String> = st
            .remotes
            .iter()
            .filter(|(_, r)| !r.banned)
            .map(|(a, r)| match &r.last_error {
                Some(why) => format!("{a}: {why}"),
                None => format!("{a}: connecting"),
            })
            .collect();
        Some(if known.is_empty() {
            format!(
                "no other peer in swarm {} yet; {held} of {total} pieces, asking the tracker again",
                self.id.short()
            )
        } else {
            format!(
                "cannot reach any peer ({}); {held} of {total} pieces, retrying with fresh peer lists",
                known.join("; ")
            )
        })
    }

    /// Whether the tracker listed this very peer. The tracker leaves the
    /// asker out of its answer by the address it sees, so this is only a
    /// second check for an exact match: a peer elsewhere that happens to use
    /// the same port is someone else, whatever address this one listens on.
    fn is_me(&self, addr: SocketAddr) -> bool {
        addr == self.local
    }
}
