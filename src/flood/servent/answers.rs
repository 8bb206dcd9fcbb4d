//! Answers: each RESP goes to the query's origin on a new connection from
//! a short-lived thread, within bounds in all and per origin.

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{Servent, bump, lock};
use crate::error::{Result, ResultExt};
use crate::flood::wire::{Message, Text};
use crate::net::Timeouts;

/// Answers being sent at once; beyond this an answer is dropped.
const MAX_ANSWERS_IN_FLIGHT: usize = 64;

/// Answers being sent at once to one origin `IP:PORT`; beyond this an
/// answer to it is dropped. A client waiting for its answers accepts them as
/// fast as they come, so a few at a time is plenty; an origin that does not
/// accept holds no more than these.
const MAX_ANSWERS_PER_ORIGIN: usize = 4;

/// How long one answer may take, connecting and writing together. An answer
/// is a few hundred bytes to a client that is waiting for it; an origin that
/// does not take it this fast is not waiting.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Why an answer was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Busy {
    /// [`MAX_ANSWERS_IN_FLIGHT`] are being sent.
    All,
    /// [`MAX_ANSWERS_PER_ORIGIN`] are being sent to this origin.
    Origin,
}

/// Answers in flight, in all and per origin.
#[derive(Debug, Default)]
pub(super) struct Answers {
    table: Mutex<(usize, HashMap<SocketAddrV4, usize>)>,
}

impl Answers {
    /// Takes a slot for an answer to `origin`; give it back with `done`.
    pub(super) fn take(&self, origin: SocketAddrV4) -> std::result::Result<(), Busy> {
        let mut t = lock(&self.table);
        if t.0 >= MAX_ANSWERS_IN_FLIGHT {
            return Err(Busy::All);
        }
        let n = t.1.entry(origin).or_insert(0);
        if *n >= MAX_ANSWERS_PER_ORIGIN {
            return Err(Busy::Origin);
        }
        *n += 1;
        t.0 += 1;
        Ok(())
    }

    pub(super) fn done(&self, origin: SocketAddrV4) {
        let mut t = lock(&self.table);
        t.0 = t.0.saturating_sub(1);
        if let Some(n) = t.1.get_mut(&origin) {
            *n -= 1;
            if *n == 0 {
                t.1.remove(&origin);
            }
        }
    }
}

/// Connects to `origin` and writes one RESP, all within [`ANSWER_TIMEOUT`]
/// (or the servent's own timeouts, if shorter). With `id`, an ID carrying
/// that port (the servent's listening port) goes first, so the client can
/// name the answer by the servent's address; the course wire sends the
/// RESP alone.
pub(super) fn send_answer(
    origin: SocketAddrV4,
    id: Option<u16>,
    seq: u32,
    value: Text,
    t: &Timeouts,
) -> Result<()> {
    let deadline = Instant::now() + ANSWER_TIMEOUT.min(t.io);
    let connect = t.connect.min(ANSWER_TIMEOUT);
    let stream =
        TcpStream::connect_timeout(&SocketAddr::V4(origin), connect).doing(|| "connecting")?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(10));
    stream.set_write_timeout(Some(left))?;
    let _ = stream.set_nodelay(true);
    let mut bytes = Vec::new();
    if let Some(port) = id {
        bytes.extend(Message::Id { port }.encode());
    }
    bytes.extend(Message::Resp { seq, value }.encode());
    (&stream).write_all(&bytes).doing(|| "sending")?;
    // Half-close so the client sees the end of the answer; it may already
    // have closed its side, which is fine.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

impl Servent {
    /// Sends one RESP to the client on a new connection, from its own
    /// thread, if the answer bounds allow; else drops it with a counted line.
    pub(super) fn answer(self: &Arc<Self>, origin: SocketAddrV4, seq: u32, value: Text) {
        if let Err(busy) = self.answers.take(origin) {
            bump(&self.stats.dropped, 1);
            let why = match busy {
                Busy::All => format!("{MAX_ANSWERS_IN_FLIGHT} answers already in flight"),
                Busy::Origin => {
                    format!("{MAX_ANSWERS_PER_ORIGIN} answers to it already in flight")
                }
            };
            let total = self.stats.dropped.load(Ordering::Relaxed);
            self.drops.diag(|| {
                format!("answer to {origin} seq {seq} dropped: {why} ({total} dropped so far)")
            });
            return;
        }
        let s = self.clone();
        let spawned = thread::Builder::new()
            .name(format!("answer {origin}"))
            .spawn(move || {
                let id = s.answer_id.then_some(s.port);
                let res = send_answer(origin, id, seq, value, &s.timeouts);
                s.answers.done(origin);
                match res {
                    Ok(()) => {
                        bump(&s.stats.answers, 1);
                        s.trace.answered(origin, seq);
                        s.events.publish("answered", |m| {
                            m.insert("origin".into(), origin.to_string().into());
                            m.insert("seq".into(), seq.into());
                        });
                        s.event(format_args!("answered {origin} seq {seq}"));
                    }
                    Err(e) => s
                        .failures
                        .diag(|| format!("answer to {origin} seq {seq}: {e}")),
                }
            });
        if let Err(e) = spawned {
            self.answers.done(origin);
            crate::diag!("answer to {origin} seq {seq}: no thread: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn answers_are_bounded_per_origin_and_in_all() {
        let a = Answers::default();
        let o = |port| SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        for _ in 0..MAX_ANSWERS_PER_ORIGIN {
            assert_eq!(a.take(o(1)), Ok(()));
        }
        assert_eq!(a.take(o(1)), Err(Busy::Origin));
        // Another origin still gets its answers.
        assert_eq!(a.take(o(2)), Ok(()));
        a.done(o(1));
        assert_eq!(a.take(o(1)), Ok(()));
        let mut port = 3;
        while a.take(o(port)).is_ok() {
            port += 1;
        }
        assert_eq!(a.take(o(port + 1)), Err(Busy::All));
        assert_eq!(lock(&a.table).0, MAX_ANSWERS_IN_FLIGHT);
        for p in 3..port {
            a.done(o(p));
        }
        a.done(o(2));
        for _ in 0..MAX_ANSWERS_PER_ORIGIN {
            a.done(o(1));
        }
        let t = lock(&a.table);
        assert_eq!(t.0, 0);
        assert!(t.1.is_empty(), "no origin left behind");
    }
}
