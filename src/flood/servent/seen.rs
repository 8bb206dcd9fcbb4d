//! The queries a servent has already seen, so each is flooded and
//! answered once: remembered for `--seen-secs`, at most a fixed number.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// A query's identity: the client's answer address and its sequence number.
pub(super) type QueryId = (SocketAddrV4, u32);

/// The queries already seen, forgotten after a while or when too many.
#[derive(Debug)]
pub(super) struct Seen {
    set: HashSet<QueryId>,
    order: VecDeque<(Instant, QueryId)>,
    keep: Duration,
    cap: usize,
}

impl Seen {
    pub(super) fn new(keep: Duration, cap: usize) -> Seen {
        Seen {
            set: HashSet::new(),
            order: VecDeque::new(),
            keep,
            cap: cap.max(1),
        }
    }

    /// How many queries are remembered.
    pub(super) fn len(&self) -> usize {
        self.set.len()
    }

    /// Records `id` as seen at `now`; false if it was already seen.
    pub(super) fn insert(&mut self, id: QueryId, now: Instant) -> bool {
        while let Some(&(at, old)) = self.order.front() {
            if now.saturating_duration_since(at) < self.keep && self.order.len() < self.cap {
                break;
            }
            self.order.pop_front();
            self.set.remove(&old);
        }
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back((now, id));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn id(port: u16, seq: u32) -> QueryId {
        (SocketAddrV4::new(Ipv4Addr::LOCALHOST, port), seq)
    }

    #[test]
    fn seen_drops_repeats() {
        let mut s = Seen::new(Duration::from_secs(10), 100);
        let t = Instant::now();
        assert!(s.insert(id(1, 0), t));
        assert!(!s.insert(id(1, 0), t));
        assert!(s.insert(id(1, 1), t));
        assert!(s.insert(id(2, 0), t));
        assert_eq!(s.set.len(), 3);
    }

    #[test]
    fn seen_forgets_after_a_while() {
        let mut s = Seen::new(Duration::from_secs(10), 100);
        let t = Instant::now();
        assert!(s.insert(id(1, 0), t));
        assert!(!s.insert(id(1, 0), t + Duration::from_secs(9)));
        assert!(s.insert(id(1, 0), t + Duration::from_secs(10)));
        assert_eq!(s.set.len(), 1);
    }

    #[test]
    fn seen_stays_under_its_cap() {
        let mut s = Seen::new(Duration::from_secs(3600), 50);
        let t = Instant::now();
        for seq in 0..10_000 {
            assert!(s.insert(id(9, seq), t));
            assert!(s.set.len() <= 50);
        }
        // The oldest were evicted, the newest remembered.
        assert!(!s.insert(id(9, 9_999), t));
        assert!(s.insert(id(9, 0), t));
    }
}
