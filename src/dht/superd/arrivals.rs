//! Uploads being received right now (`Arrivals`), so two uploads of one
//! name cannot race and the supernode's leave cannot miss one: each upload
//! holds a `Reservation` on its name until it ends.
//!
//! Lock: `Arrivals::state` guards a small set and the leave phase; it is
//! never held across I/O or while logging.

use std::collections::HashSet;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use super::lock;
use crate::name::FileName;

/// Uploads being received right now, so two uploads of one name cannot
/// race, and the supernode's leave cannot miss one.
#[derive(Default)]
pub(super) struct Arrivals {
    state: Mutex<ArrivalState>,
    done: Condvar,
}

#[derive(Default)]
struct ArrivalState {
    names: HashSet<FileName>,
    phase: Phase,
}

/// Where the supernode's leave is, as far as uploads are concerned.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// New uploads are welcome.
    #[default]
    Open,
    /// Leaving: new uploads are refused; those in flight may still finish
    /// and be answered `Stored` (the final sync has not scanned yet).
    Closed,
    /// The final sync is about to scan: an upload finishing now would not be
    /// passed on, so it gets an error reply instead of `Stored`.
    Sealed,
}

/// Why an upload cannot start.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The same name is arriving on another connection.
    Busy,
    /// The supernode is leaving the network.
    Leaving,
}

/// Holds a name in `Arrivals` until dropped.
pub(super) struct Reservation<'a> {
    set: &'a Arrivals,
    name: FileName,
}

impl Reservation<'_> {
    /// Whether the file, now in the repository, may be answered `Stored`:
    /// true unless the final sync has already begun (it will then not be
    /// passed on by us). Call after the file is in place.
    pub(super) fn may_confirm(&self) -> bool {
        lock(&self.set.state).phase != Phase::Sealed
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        lock(&self.set.state).names.remove(&self.name);
        self.set.done.notify_all();
    }
}

impl Arrivals {
    /// Reserves `name` for one upload, unless it is arriving already or the
    /// supernode is leaving (checked under the same lock as `close`).
    pub(super) fn reserve(&self, name: &FileName) -> std::result::Result<Reservation<'_>, Refusal> {
        let mut st = lock(&self.state);
        if st.phase != Phase::Open {
            return Err(Refusal::Leaving);
        }
        if !st.names.insert(name.clone()) {
            return Err(Refusal::Busy);
        }
        Ok(Reservation {
            set: self,
            name: name.clone(),
        })
    }

    /// Refuses new uploads from now on.
    pub(super) fn close(&self) {
        let mut st = lock(&self.state);
        if st.phase == Phase::Open {
            st.phase = Phase::Closed;
        }
    }

    /// Uploads that finish from now on are refused; returns how many are
    /// still in flight. Called just before the final sync scans, so every
    /// upload answered `Stored` is in the repository when it does.
    pub(super) fn seal(&self) -> usize {
        let mut st = lock(&self.state);
        st.phase = Phase::Sealed;
        st.names.len()
    }

    /// Waits until nothing is being received, up to `limit`.
    pub(super) fn wait_idle(&self, limit: Duration) -> bool {
        let (st, _) = self
            .done
            .wait_timeout_while(lock(&self.state), limit, |st| !st.names.is_empty())
            .unwrap_or_else(PoisonError::into_inner);
        st.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, mpsc};
    use std::thread;

    fn name(s: &str) -> FileName {
        FileName::new(s).unwrap()
    }

    #[test]
    fn a_name_arrives_once_at_a_time() {
        let arrivals = Arrivals::default();
        let first = arrivals.reserve(&name("a")).unwrap();
        assert_eq!(arrivals.reserve(&name("a")).err(), Some(Refusal::Busy));
        assert!(arrivals.reserve(&name("b")).is_ok());
        drop(first);
        assert!(arrivals.reserve(&name("a")).is_ok());
    }

    #[test]
    fn leaving_refuses_new_uploads_under_the_same_lock() {
        let arrivals = Arrivals::default();
        let inflight = arrivals.reserve(&name("a")).unwrap();
        arrivals.close();
        assert_eq!(arrivals.reserve(&name("b")).err(), Some(Refusal::Leaving));
        // One already arriving may still be confirmed until the seal.
        assert!(inflight.may_confirm());
        assert!(!arrivals.wait_idle(Duration::from_millis(10)));
        assert_eq!(arrivals.seal(), 1);
        assert!(!inflight.may_confirm());
        drop(inflight);
        assert!(arrivals.wait_idle(Duration::ZERO));
        assert_eq!(arrivals.reserve(&name("c")).err(), Some(Refusal::Leaving));
    }

    #[test]
    fn wait_idle_returns_when_the_last_upload_ends() {
        let arrivals = Arc::new(Arrivals::default());
        let (held, release) = mpsc::channel::<()>();
        let (reserved, is_reserved) = mpsc::channel::<()>();
        let a = arrivals.clone();
        let t = thread::spawn(move || {
            let _r = a.reserve(&name("a")).unwrap();
            reserved.send(()).unwrap();
            let _ = release.recv();
        });
        is_reserved.recv().unwrap();
        drop(held);
        assert!(arrivals.wait_idle(Duration::from_secs(30)));
        t.join().unwrap();
    }
}
