//! What a peer knows: the pieces it holds and fetches, and, per remote peer,
//! what that peer holds and fetches, with the counts the picker ranks by.
//! All of it sits behind `Node::state`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use crate::rng::Rng;

use super::FIRST_PASS_HOLD;
use crate::swarm::manifest::{Bitfield, PieceIndex};
use crate::swarm::picker::Availability;
use crate::swarm::proto::PeerResponse;

/// What this peer knows about another one.
#[derive(Debug)]
pub(super) struct Remote {
    /// Pieces it holds, as last heard (from it, or else from the tracker).
    pub(super) have: Bitfield,
    /// Pieces it is fetching, as last heard from it.
    pub(super) fetching: Bitfield,
    /// Pieces it answered `Busy` for since its last `Have` answer: not
    /// asked for again until then.
    pub(super) busy: Bitfield,
    /// It answered `Full` since its last `Have` answer: asked for nothing
    /// until then.
    pub(super) full: bool,
    /// A download worker is talking to it.
    pub(super) connected: bool,
    /// It served a corrupt piece: never asked again.
    pub(super) banned: bool,
    /// Earliest time to connect again after a failure.
    pub(super) retry_at: Option<Instant>,
    /// Failed connections so far (for the back-off, and to log only the first).
    pub(super) failures: u32,
    /// Why the last connection failed.
    pub(super) last_error: Option<String>,
    /// It was seen without some piece: complete now, it is a fetcher that
    /// finished, not a seed whose upload must be spared.
    pub(super) fetched: bool,
}

impl Remote {
    /// A remote not heard from yet; `empty` is the swarm's empty bitfield.
    pub(super) fn new(empty: Bitfield) -> Remote {
        Remote {
            have: empty.clone(),
            fetching: empty.clone(),
            busy: empty,
            full: false,
            connected: false,
            banned: false,
            retry_at: None,
            failures: 0,
            last_error: None,
            fetched: false,
        }
    }

    /// A seed: complete, and never seen otherwise. Its upload is the
    /// swarm's bottleneck, so it is asked only for what others cannot give.
    pub(super) fn is_seed(&self) -> bool {
        !self.fetched && self.have.is_complete()
    }
}

/// A seed's first pass over its pieces: until every piece has gone out
/// once, a piece that started or finished going out to one peer less than
/// `FIRST_PASS_HOLD` ago is answered `Busy` to the next, who gets it from
/// that peer (the hold covers how late others hear of it); the seed's
/// upload, the swarm's scarcest resource, goes to pieces nobody has yet.
/// Should that peer vanish before passing the piece on, the seed sends it
/// again once the hold is over.
#[derive(Debug)]
pub(super) struct FirstPass {
    /// When an upload of each piece last started.
    started_at: Vec<Option<Instant>>,
    /// When each piece last went out completely.
    sent_at: Vec<Option<Instant>>,
    /// Pieces that never went out.
    unsent: u32,
}

impl FirstPass {
    pub(super) fn new(n: usize) -> FirstPass {
        FirstPass {
            started_at: vec![None; n],
            sent_at: vec![None; n],
            unsent: n as u32,
        }
    }

    /// Whether a request for piece `slot` should be answered `Busy` at
    /// `now`: an upload of it started or ended less than
    /// `FIRST_PASS_HOLD` ago (an upload stuck on a vanished peer defers
    /// no longer than that).
    pub(super) fn defers(&self, slot: usize, now: Instant) -> bool {
        let recent = |at: &[Option<Instant>]| {
            at.get(slot)
                .copied()
                .flatten()
                .is_some_and(|t| now.saturating_duration_since(t) < FIRST_PASS_HOLD)
        };
        self.unsent > 0 && (recent(&self.started_at) || recent(&self.sent_at))
    }

    /// Counts an upload of piece `slot` starting at `now`.
    pub(super) fn start(&mut self, slot: usize, now: Instant) {
        if let Some(t) = self.started_at.get_mut(slot) {
            *t = Some(now);
        }
    }

    /// Counts a complete upload of piece `slot` at `now`.
    pub(super) fn sent(&mut self, slot: usize, now: Instant) {
        if let Some(t) = self.sent_at.get_mut(slot) {
            if t.is_none() {
                self.unsent = self.unsent.saturating_sub(1);
            }
            *t = Some(now);
        }
    }
}

/// The download's shared state, behind `Node::state`.
pub(super) struct State {
    pub(super) have: Bitfield,
    /// Pieces not held yet.
    pub(super) missing: u32,
    /// Requests in flight per piece.
    pub(super) in_flight: Vec<u16>,
    /// Uploads in progress per piece.
    pub(super) sending: Vec<u16>,
    /// A peer that started with every piece (a seed): the pieces it has
    /// uploaded completely at least once, and how many it has not yet.
    /// `None` for a peer that fetched.
    pub(super) first_pass: Option<FirstPass>,
    /// Missing pieces with no request in flight.
    pub(super) unrequested: u32,
    /// Holders per piece among known, unbanned peers.
    pub(super) avail: Availability,
    /// Known, unbanned peers fetching each piece right now.
    pub(super) coming: Availability,
    pub(super) remotes: HashMap<SocketAddr, Remote>,
    /// With a request interval: when the next request may go out.
    pub(super) next_request: Instant,
    /// Download workers running.
    pub(super) workers: usize,
    /// Download workers past their handshake (talking to their remote).
    pub(super) linked: usize,
    /// When this peer last said it cannot reach any peer.
    pub(super) stuck_said: Option<Instant>,
    pub(super) rng: Rng,
    /// Where in the file this peer starts looking for pieces to ask seeds
    /// for (random, so peers spread their seed requests).
    pub(super) seed_offset: u32,
    /// When the last piece was received (or the download started).
    pub(super) last_piece: Instant,
    /// Bytes of verified pieces received.
    pub(super) received: u64,
    /// Last tenth of progress logged (when no bar is drawn).
    pub(super) logged_tenth: u32,
}

impl State {
    /// The state of a peer holding `have`, `missing` pieces short, with
    /// `received` bytes of pieces already held.
    pub(super) fn new(have: Bitfield, missing: u32, received: u64) -> State {
        let n = have.len() as usize;
        let mut rng = Rng::new();
        State {
            seed_offset: rng.below(n.max(1)) as u32,
            missing,
            in_flight: vec![0; n],
            sending: vec![0; n],
            first_pass: (missing == 0).then(|| FirstPass::new(n)),
            unrequested: missing,
            avail: Availability::new(n),
            coming: Availability::new(n),
            remotes: HashMap::new(),
            next_request: Instant::now(),
            last_piece: Instant::now(),
            workers: 0,
            linked: 0,
            stuck_said: None,
            rng,
            received,
            logged_tenth: 0,
            have,
        }
    }

    /// Replaces what a remote holds and fetches, keeping the counts in step.
    pub(super) fn set_remote_have(&mut self, addr: SocketAddr, have: Bitfield, fetching: Bitfield) {
        let Some(r) = self.remotes.get_mut(&addr) else {
            return;
        };
        if !r.banned {
            for i in 0..have.len() as usize {
                let (old, new) = (r.have.has(i), have.has(i));
                if old != new {
                    self.avail.adjust(i, new);
                }
                let (old, new) = (r.fetching.has(i), fetching.has(i));
                if old != new {
                    self.coming.adjust(i, new);
                }
            }
        }
        if !have.is_complete() && have.count() > 0 {
            r.fetched = true;
        }
        r.have = have;
        r.fetching = fetching;
    }

    /// Forgets what a remote holds (it left, failed, or was banned).
    pub(super) fn clear_remote(&mut self, addr: SocketAddr) {
        if let Some(r) = self.remotes.get(&addr) {
            let empty = Bitfield::new(r.have.len());
            self.set_remote_have(addr, empty.clone(), empty);
        }
    }

    /// Rarity for the picker: holders plus peers already fetching.
    pub(super) fn rank(&self, i: usize) -> u32 {
        u32::from(self.avail.holders(i)) + u32::from(self.coming.holders(i))
    }

    /// The answer to `Have` and `HaveChange`: what this peer holds,
    /// fetches and sends now.
    pub(super) fn have_answer(&self) -> PeerResponse {
        PeerResponse::Have {
            have: self.have.clone(),
            fetching: self.fetching(),
            sending: self.sending(),
        }
    }

    /// Pieces with requests in flight (the `fetching` part of `Have`).
    pub(super) fn fetching(&self) -> Bitfield {
        let mut b = Bitfield::new(self.have.len());
        for (i, n) in self.in_flight.iter().enumerate() {
            if *n > 0 && !self.have.has(i) {
                b.set_bit(i, true);
            }
        }
        b
    }

    /// Pieces being uploaded (the `sending` part of `Have`).
    pub(super) fn sending(&self) -> Bitfield {
        let mut b = Bitfield::new(self.have.len());
        for (i, n) in self.sending.iter().enumerate() {
            b.set_bit(i, *n > 0);
        }
        b
    }

    /// Gives back one request for piece `i`.
    pub(super) fn release(&mut self, i: PieceIndex) {
        let slot = i.slot();
        if let Some(n) = self.in_flight.get_mut(slot) {
            *n = n.saturating_sub(1);
            if *n == 0 && !self.have.has(slot) {
                self.unrequested += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_seed_holds_a_piece_back_only_for_a_while_and_only_in_its_first_pass() {
        let t0 = Instant::now();
        let mut f = FirstPass::new(2);
        assert!(!f.defers(0, t0));
        f.start(0, t0);
        // Going out (or stuck on a vanished peer): held back for a while.
        assert!(f.defers(0, t0 + FIRST_PASS_HOLD / 2));
        assert!(!f.defers(0, t0 + FIRST_PASS_HOLD));
        assert!(!f.defers(1, t0));
        let t1 = t0 + Duration::from_secs(5);
        f.sent(0, t1);
        assert!(f.defers(0, t1 + FIRST_PASS_HOLD / 2));
        assert!(!f.defers(0, t1 + FIRST_PASS_HOLD));
        // Once every piece went out, nothing is held back.
        f.sent(1, t1);
        assert!(!f.defers(0, t1));
    }

    #[test]
    fn a_complete_remote_once_seen_incomplete_is_no_seed() {
        let mut st = State::new(Bitfield::new(4), 4, 0);
        let (seed, fetcher): (SocketAddr, SocketAddr) = (
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        for a in [seed, fetcher] {
            st.remotes.insert(a, Remote::new(Bitfield::new(4)));
        }
        let mut half = Bitfield::new(4);
        half.set_bit(0, true);
        st.set_remote_have(fetcher, half, Bitfield::new(4));
        st.set_remote_have(fetcher, Bitfield::full(4), Bitfield::new(4));
        st.set_remote_have(seed, Bitfield::full(4), Bitfield::new(4));
        assert!(st.remotes[&seed].is_seed());
        assert!(!st.remotes[&fetcher].is_seed());
        assert_eq!(st.avail.holders(3), 2);
    }
}
