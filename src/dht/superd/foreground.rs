//! Downloads being served right now (`Foreground`), so the synchronizer,
//! whose copies are background work, can hold back while a client waits.
//!
//! Lock: `Foreground::active` guards one counter; it is never held across
//! I/O or while logging.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use super::lock;

/// How many downloads are being sent to clients right now.
#[derive(Default)]
pub(super) struct Foreground {
    active: Mutex<usize>,
    quiet: Condvar,
}

/// Counts one download in `Foreground` until dropped.
pub(super) struct Serving<'a>(&'a Foreground);

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        let mut n = lock(&self.0.active);
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.0.quiet.notify_all();
        }
    }
}

impl Foreground {
    /// Counts a download until the returned guard is dropped.
    pub(super) fn serving(&self) -> Serving<'_> {
        *lock(&self.active) += 1;
        Serving(self)
    }

    /// Waits until no download is being served, at most `limit`. True if
    /// it is quiet.
    pub(super) fn wait_quiet(&self, limit: Duration) -> bool {
        let (n, _) = self
            .quiet
            .wait_timeout_while(lock(&self.active), limit, |n| *n > 0)
            .unwrap_or_else(PoisonError::into_inner);
        *n == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn wait_quiet_returns_when_the_last_download_ends_or_at_the_limit() {
        let fg = Arc::new(Foreground::default());
        assert!(fg.wait_quiet(Duration::ZERO));
        let g = fg.serving();
        let g2 = fg.serving();
        assert!(!fg.wait_quiet(Duration::from_millis(10)));
        drop(g);
        assert!(!fg.wait_quiet(Duration::from_millis(10)));
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let fg = fg.clone();
            thread::spawn(move || {
                tx.send(()).unwrap();
                fg.wait_quiet(Duration::from_secs(60))
            })
        };
        rx.recv().unwrap();
        drop(g2);
        assert!(waiter.join().unwrap());
    }
}
