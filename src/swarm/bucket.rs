//! A token bucket that caps a peer's total upload rate (`--upload-limit`),
//! shared by every connection the peer serves, and the rate parser.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::shutdown::Shutdown;

/// Upload cap in bytes per second, refilled continuously. Takers reserve
/// tokens under the lock and sleep outside it, so a taker that goes into
/// debt waits exactly as long as the rate demands and others queue behind.
#[derive(Debug)]
pub(super) struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A bucket of `rate` bytes per second holding at most a tenth of a
    /// second of tokens (16 KiB to 1 MiB).
    pub(super) fn new(rate: u64) -> TokenBucket {
        let rate = rate.max(1) as f64;
        let burst = (rate / 10.0).clamp(16.0 * 1024.0, 1024.0 * 1024.0);
        TokenBucket {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Reserves `n` bytes at time `now`; returns how long the caller must
    /// wait before sending them.
    pub(super) fn reserve_at(&self, n: usize, now: Instant) -> Duration {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, last) = *st;
        let elapsed = now.saturating_duration_since(last).as_secs_f64();
        let tokens = (tokens + elapsed * self.rate).min(self.burst) - n as f64;
        *st = (tokens, now.max(last));
        if tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-tokens / self.rate)
        }
    }

    /// How long, at `now`, until everything reserved so far is paid for.
    pub(super) fn backlog_at(&self, now: Instant) -> Duration {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, last) = *st;
        let elapsed = now.saturating_duration_since(last).as_secs_f64();
        let tokens = tokens + elapsed * self.rate;
        if tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-tokens / self.rate)
        }
    }

    /// How long `n` bytes take at this rate.
    pub(super) fn time_for(&self, n: usize) -> Duration {
        Duration::from_secs_f64(n as f64 / self.rate)
    }

    /// Reserves `n` bytes to be sent as one run, after everything reserved
    /// before: the run gets the whole rate until it is paid for, so runs
    /// (pieces) complete one after another instead of all together.
    pub(super) fn reserve(&self, n: usize) -> Reservation {
        let now = Instant::now();
        Reservation {
            end: now + self.reserve_at(n, now),
            rate: self.rate,
        }
    }
}

/// A run of bytes paid for by `TokenBucket::reserve`, sent in chunks each
/// at its due time.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reservation {
    /// When the last byte is paid for.
    end: Instant,
    rate: f64,
}

impl Reservation {
    /// When the run may have sent all but `left` of its bytes.
    pub(super) fn due(&self, left: usize) -> Instant {
        let ahead = Duration::from_secs_f64(left as f64 / self.rate);
        self.end.checked_sub(ahead).unwrap_or(self.end)
    }

    /// Blocks until the run may have sent all but `left` of its bytes (or
    /// shutdown starts).
    pub(super) fn wait(&self, left: usize, shutdown: &Shutdown) {
        let wait = self.due(left).saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            shutdown.wait(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_is_what_reservations_left_unpaid() {
        let b = TokenBucket::new(1 << 20);
        let t0 = Instant::now();
        assert_eq!(b.backlog_at(t0), Duration::ZERO);
        // The burst (a tenth of a second) is free; a second more is owed.
        b.reserve_at((1 << 20) + (1 << 20) / 10, t0);
        let owed = b.backlog_at(t0).as_secs_f64();
        assert!((owed - 1.0).abs() < 0.01, "{owed}");
        let later = b.backlog_at(t0 + Duration::from_millis(600)).as_secs_f64();
        assert!((later - 0.4).abs() < 0.01, "{later}");
        assert_eq!(b.time_for(1 << 19), Duration::from_millis(500));
    }

    #[test]
    fn the_burst_is_free_then_the_rate_holds() {
        let b = TokenBucket::new(1 << 20); // 1 MiB/s, burst 104857.6 bytes
        let t0 = Instant::now();
        assert_eq!(b.reserve_at(100_000, t0), Duration::ZERO);
        // 4857.6 tokens left; 1 MiB more puts us 1043718.4 bytes in debt.
        let wait = b.reserve_at(1 << 20, t0);
        let expect = (1_048_576.0 - 4857.6) / 1_048_576.0;
        assert!((wait.as_secs_f64() - expect).abs() < 1e-6, "{wait:?}");
        // Sending 10 MiB from an empty bucket takes 10 s of reservations.
        let b = TokenBucket::new(1 << 20);
        let mut last = Duration::ZERO;
        for _ in 0..640 {
            last = b.reserve_at(16 * 1024, t0);
        }
        let expect = 10.0 - 104_857.6 / 1_048_576.0;
        assert!((last.as_secs_f64() - expect).abs() < 1e-6, "{last:?}");
    }

    #[test]
    fn tokens_refill_over_time_up_to_the_burst() {
        let b = TokenBucket::new(100 * 1024); // burst clamps to 16 KiB
        let t0 = Instant::now();
        assert_eq!(b.reserve_at(16 * 1024, t0), Duration::ZERO);
        let later = t0 + Duration::from_secs(100);
        // A long idle period refills only the burst.
        assert_eq!(b.reserve_at(16 * 1024, later), Duration::ZERO);
        let wait = b.reserve_at(1024, later);
        assert!((wait.as_secs_f64() - 0.01).abs() < 1e-6, "{wait:?}");
    }

    #[test]
    fn runs_reserved_one_after_another_complete_in_turn() {
        // 1 MiB/s, so a burst of 100 KiB; two runs of 1 MiB.
        let b = TokenBucket::new(1 << 20);
        let first = b.reserve(1 << 20);
        let second = b.reserve(1 << 20);
        let ms = |r: &Reservation, left: usize| r.due(left).duration_since(Instant::now());
        // The first run's last byte is due after ~0.9 s, the second's
        // after ~1.9 s, and the second may not start before the first ends.
        assert!(
            ms(&first, 0) > Duration::from_millis(800),
            "{:?}",
            ms(&first, 0)
        );
        assert!(ms(&first, 0) < Duration::from_millis(1000));
        assert!(second.due(1 << 20) >= first.due(0) - Duration::from_millis(5));
        assert!(ms(&second, 0) > Duration::from_millis(1800));
        // Halfway through a run is due halfway through its time.
        let half = first.due(1 << 19);
        assert!(first.due(0) - half >= Duration::from_millis(490));
    }
}
