//! Clean shutdown: the one signal handler of a process. Ctrl-C, SIGTERM
//! and SIGHUP set one flag that accept loops, workers and periodic tasks
//! observe; a thread blocked in `accept` is woken by `shutdown(2)` on the
//! listening socket itself, so a daemon exits promptly with status 0
//! whatever happened to its address (removed, unreachable).
//!
//! Parts of a program that must act when it is stopped subscribe
//! ([`Shutdown::subscribe`]: "stop waiting for input", "close my
//! download's connection", "send DISCONNECT"); a part that wants a signal
//! for itself for a while catches it ([`Shutdown::catch`]: "end this wait
//! for answers"). A second signal after the flag is set ends the process
//! at once through the hook `cli::run` installs: exit codes are chosen
//! there, never here.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use crate::error::{Error, Result};

/// What a subscriber or a catcher runs: on the signal thread, so it must be
/// quick and must not wait for the thread it wakes.
type Action = Arc<dyn Fn() + Send + Sync>;

/// The process-wide "please stop" flag, and who hears it.
#[derive(Default)]
pub struct Shutdown {
    flag: AtomicBool,
    /// Listening sockets to wake (descriptors of their own, duplicated).
    state: Mutex<Vec<TcpListener>>,
    changed: Condvar,
    /// Run once when the flag is set, by registration number.
    subscribers: Mutex<Vec<(u64, Action)>>,
    /// While not empty, a signal runs the latest catcher instead of
    /// setting the flag.
    catchers: Mutex<Vec<(u64, Action)>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.is_triggered())
            .finish_non_exhaustive()
    }
}

/// The process's own flag, once a signal handler is installed.
static PROCESS: OnceLock<Arc<Shutdown>> = OnceLock::new();
/// Run on a signal that comes after the flag is set; `cli::run` sets it.
static HARD_EXIT: OnceLock<fn()> = OnceLock::new();

/// Sets what a second signal does (once the first one has set the flag):
/// end the process at once, with the exit code the caller chooses. Only
/// the first call counts.
pub(crate) fn on_second_signal(exit: fn()) {
    let _ = HARD_EXIT.set(exit);
}

impl Shutdown {
    /// A flag not tied to any signal (tests, embedded servers, a listener
    /// of its own).
    pub fn new() -> Arc<Shutdown> {
        Arc::new(Shutdown::default())
    }

    /// The process's flag, set by Ctrl-C (SIGINT), SIGTERM and SIGHUP. The
    /// handler is installed by the first call; every later call returns
    /// the same flag, so a process has exactly one handler.
    pub fn install() -> Result<Arc<Shutdown>> {
        if let Some(s) = PROCESS.get() {
            return Ok(s.clone());
        }
        let shutdown = Shutdown::new();
        if PROCESS.set(shutdown.clone()).is_err() {
            // Another thread installed it meanwhile: use that one.
            return PROCESS
                .get()
                .cloned()
                .ok_or_else(|| Error::start("the signal handler", "installed, then gone"));
        }
        let s = shutdown.clone();
        ctrlc::set_handler(move || s.signal())
            .map_err(|e| Error::start("the signal handler", e))?;
        Ok(shutdown)
    }

    /// What the handler does with one signal: a catcher takes it if there
    /// is one; else the first sets the flag and a later one ends the
    /// process through the `on_second_signal` hook.
    pub fn signal(&self) {
        let catcher = lock(&self.catchers).last().map(|(_, a)| a.clone());
        if let Some(catch) = catcher {
            catch();
            return;
        }
        if self.is_triggered() {
            if let Some(exit) = HARD_EXIT.get() {
                exit();
            }
            return;
        }
        self.trigger();
    }

    /// Sets the flag, wakes every waiter and every registered listener,
    /// then runs each subscriber once.
    pub fn trigger(&self) {
        if self.flag.swap(true, Ordering::SeqCst) {
            return;
        }
        {
            let guard = lock(&self.state);
            self.changed.notify_all();
            for listener in guard.iter() {
                wake(listener);
            }
        }
        let subscribers: Vec<Action> = lock(&self.subscribers)
            .iter()
            .map(|(_, a)| a.clone())
            .collect();
        for action in subscribers {
            action();
        }
    }

    /// True once shutdown has started.
    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Sleeps up to `dur`, returning early (with `true`) if shutdown starts.
    /// Periodic tasks use it instead of `thread::sleep`.
    pub fn wait(&self, dur: Duration) -> bool {
        let guard = lock(&self.state);
        let _ = self
            .changed
            .wait_timeout_while(guard, dur, |_| !self.is_triggered())
            .unwrap_or_else(PoisonError::into_inner);
        self.is_triggered()
    }

    /// Registers a listening socket to wake when shutdown starts, so a
    /// thread blocked in `accept` on it returns. The registration holds a
    /// duplicate descriptor of the same socket.
    pub fn wake_on(&self, listener: &TcpListener) -> Result<()> {
        let dup = listener.try_clone()?;
        let mut guard = lock(&self.state);
        if self.is_triggered() {
            wake(&dup);
        }
        guard.push(dup);
        Ok(())
    }

    /// Runs `action` once when shutdown starts (at once if it has), until
    /// the returned guard is dropped.
    pub fn subscribe(self: &Arc<Self>, action: impl Fn() + Send + Sync + 'static) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let action: Action = Arc::new(action);
        lock(&self.subscribers).push((id, action.clone()));
        if self.is_triggered() {
            action();
        }
        Subscription {
            shutdown: self.clone(),
            id,
            catcher: false,
        }
    }

    /// While the returned guard lives, a signal runs `action` instead of
    /// starting shutdown (the latest catcher wins): a wait that a signal
    /// should only cut short.
    pub fn catch(self: &Arc<Self>, action: impl Fn() + Send + Sync + 'static) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.catchers).push((id, Arc::new(action)));
        Subscription {
            shutdown: self.clone(),
            id,
            catcher: true,
        }
    }

    /// Closes `stream` (both ways) when shutdown starts, so a thread
    /// blocked reading or writing it returns at once with an error. For as
    /// long as the guard lives.
    pub fn close_on(self: &Arc<Self>, stream: &TcpStream) -> Result<Subscription> {
        let dup = stream.try_clone()?;
        Ok(self.subscribe(move || {
            let _ = dup.shutdown(std::net::Shutdown::Both);
        }))
    }
}

/// A subscription or a catcher; dropping it takes it back.
#[must_use = "dropping the guard at once takes the subscription back"]
pub struct Subscription {
    shutdown: Arc<Shutdown>,
    id: u64,
    catcher: bool,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let list = if self.catcher {
            &self.shutdown.catchers
        } else {
            &self.shutdown.subscribers
        };
        lock(list).retain(|(id, _)| *id != self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
    fn subscribers_run_once_on_trigger_and_not_after_their_guard_drops() {
        use std::sync::atomic::AtomicUsize;
        let s = Shutdown::new();
        let (kept, dropped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let k = kept.clone();
        let _kept = s.subscribe(move || {
            k.fetch_add(1, Ordering::SeqCst);
        });
        let d = dropped.clone();
        drop(s.subscribe(move || {
            d.fetch_add(1, Ordering::SeqCst);
        }));
        s.signal();
        s.trigger();
        assert_eq!(kept.load(Ordering::SeqCst), 1);
        assert_eq!(dropped.load(Ordering::SeqCst), 0);
        // Subscribing after the fact runs at once.
        let late = Arc::new(AtomicUsize::new(0));
        let l = late.clone();
        let _late = s.subscribe(move || {
            l.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(late.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_catcher_takes_the_signal_instead_of_the_flag() {
        use std::sync::atomic::AtomicUsize;
        let s = Shutdown::new();
        let caught = Arc::new(AtomicUsize::new(0));
        let c = caught.clone();
        let guard = s.catch(move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        s.signal();
        s.signal();
        assert_eq!(caught.load(Ordering::SeqCst), 2);
        assert!(!s.is_triggered());
        drop(guard);
        s.signal();
        assert!(s.is_triggered());
        assert_eq!(caught.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn close_on_unblocks_a_reader() {
        use std::io::Read;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let s = Shutdown::new();
        let _guard = s.close_on(&client).unwrap();
        let t = std::thread::spawn(move || client.read(&mut [0u8; 8]).map_or(0, |n| n + 1));
        s.trigger();
        // EOF (Ok(0)) or an error: either way the read returned.
        assert!(t.join().unwrap() <= 1);
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
