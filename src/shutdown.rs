//! Clean shutdown: Ctrl-C and SIGTERM set one flag that accept loops, workers
//! and periodic tasks observe; blocked `accept` calls are woken by a
//! loopback connection so a daemon exits promptly with status 0.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use crate::error::{Error, Result};

/// The process-wide "please stop" flag.
#[derive(Debug, Default)]
pub struct Shutdown {
    flag: AtomicBool,
    state: Mutex<Vec<SocketAddr>>,
    changed: Condvar,
}

impl Shutdown {
    /// A flag not tied to any signal (tests, embedded servers).
    pub fn new() -> Arc<Shutdown> {
        Arc::new(Shutdown::default())
    }

    /// A flag set by Ctrl-C (SIGINT), SIGTERM and SIGHUP. Call once per process.
    pub fn install() -> Result<Arc<Shutdown>> {
        let shutdown = Shutdown::new();
        let s = shutdown.clone();
        ctrlc::set_handler(move || s.trigger())
            .map_err(|e| Error::Local(format!("installing the signal handler: {e}")))?;
        Ok(shutdown)
    }

    /// Sets the flag, wakes every waiter and every registered listener.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        let wake: Vec<SocketAddr> = {
            let guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            self.changed.notify_all();
            guard.clone()
        };
        for addr in wake {
            // The connection only unblocks accept(); it is dropped at once.
            let _ = TcpStream::connect_timeout(&loopback_for(addr), Duration::from_secs(1));
        }
    }

    /// True once shutdown has started.
    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Sleeps up to `dur`, returning early (with `true`) if shutdown starts.
    /// Periodic tasks use it instead of `thread::sleep`.
    pub fn wait(&self, dur: Duration) -> bool {
        let guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = self
            .changed
            .wait_timeout_while(guard, dur, |_| !self.is_triggered())
            .unwrap_or_else(PoisonError::into_inner);
        self.is_triggered()
    }

    /// Registers a listening address to poke when shutdown starts, so a
    /// thread blocked in `accept` on it wakes up.
    pub fn wake_on(&self, addr: SocketAddr) {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        guard.push(addr);
        drop(guard);
        if self.is_triggered() {
            let _ = TcpStream::connect_timeout(&loopback_for(addr), Duration::from_secs(1));
        }
    }
}

/// A wildcard listening address is reached through loopback.
fn loopback_for(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_returns_early_on_trigger() {
        let s = Shutdown::new();
        assert!(!s.wait(Duration::from_millis(1)));
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.wait(Duration::from_secs(60)));
        s.trigger();
        assert!(t.join().unwrap());
        assert!(s.is_triggered());
    }
}
