//! Clean shutdown: Ctrl-C and SIGTERM set one flag that accept loops, workers
//! and periodic tasks observe; a thread blocked in `accept` is woken by
//! `shutdown(2)` on the listening socket itself, so a daemon exits promptly
//! with status 0 whatever happened to its address (removed, unreachable).

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use crate::error::{Error, Result};

/// The process-wide "please stop" flag.
#[derive(Debug, Default)]
pub(crate) struct Shutdown {
    flag: AtomicBool,
    /// Listening sockets to wake (descriptors of their own, duplicated).
    state: Mutex<Vec<TcpListener>>,
    changed: Condvar,
}

impl Shutdown {
    /// A flag not tied to any signal (tests, embedded servers).
    pub(crate) fn new() -> Arc<Shutdown> {
        Arc::new(Shutdown::default())
    }

    /// A flag set by Ctrl-C (SIGINT), SIGTERM and SIGHUP. Call once per process.
    pub(crate) fn install() -> Result<Arc<Shutdown>> {
        let shutdown = Shutdown::new();
        let s = shutdown.clone();
        ctrlc::set_handler(move || s.trigger())
            .map_err(|e| Error::Local(format!("installing the signal handler: {e}")))?;
        Ok(shutdown)
    }

    /// Sets the flag, wakes every waiter and every registered listener.
    pub(crate) fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        let guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.changed.notify_all();
        for listener in guard.iter() {
            wake(listener);
        }
    }

    /// True once shutdown has started.
    pub(crate) fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Sleeps up to `dur`, returning early (with `true`) if shutdown starts.
    /// Periodic tasks use it instead of `thread::sleep`.
    pub(crate) fn wait(&self, dur: Duration) -> bool {
        let guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = self
            .changed
            .wait_timeout_while(guard, dur, |_| !self.is_triggered())
            .unwrap_or_else(PoisonError::into_inner);
        self.is_triggered()
    }

    /// Registers a listening socket to wake when shutdown starts, so a
    /// thread blocked in `accept` on it returns. The registration holds a
    /// duplicate descriptor of the same socket.
    pub(crate) fn wake_on(&self, listener: &TcpListener) -> Result<()> {
        let dup = listener.try_clone()?;
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if self.is_triggered() {
            wake(&dup);
        }
        guard.push(dup);
        Ok(())
    }
}

/// Wakes every thread blocked in `accept` on `listener`. On Linux,
/// `shutdown(2)` on a listening socket makes a blocked and every later
/// `accept` fail at once (`EINVAL`), with no packet sent, so it works when
/// the listening address is gone or unreachable. Elsewhere a listening
/// socket may refuse `shutdown`; a connection to it wakes `accept` instead.
fn wake(listener: &TcpListener) {
    let _ = rustix::net::shutdown(listener, rustix::net::Shutdown::Both);
    #[cfg(not(target_os = "linux"))]
    if let Ok(addr) = listener.local_addr() {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
        let ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let to = SocketAddr::new(ip, addr.port());
        let _ = TcpStream::connect_timeout(&to, Duration::from_millis(500));
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

    #[test]
    fn trigger_wakes_a_blocked_accept_without_connecting() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = Shutdown::new();
        s.wake_on(&listener).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let accepted = listener.accept();
            tx.send(accepted.is_err()).unwrap();
        });
        // Whether or not accept has begun blocking, it must return.
        s.trigger();
        let woke_with_error = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(woke_with_error, "accept returned a connection nobody made");
        t.join().unwrap();
    }

    #[test]
    fn a_listener_registered_after_trigger_is_woken_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = Shutdown::new();
        s.trigger();
        s.wake_on(&listener).unwrap();
        assert!(listener.accept().is_err());
    }
}
