//! Downloading: one worker thread per remote peer keeps `PIPELINE` piece
//! requests in flight, asks now and then which pieces the remote holds,
//! checks every piece against the manifest and stores it. Pieces are picked
//! rarest first; a seed is asked only for what nobody else can give; the
//! end game asks a second peer for the last pieces. A piece a remote
//! answers `Busy` for is counted as on its way and not asked of that remote
//! again until its next `Have` answer; a remote that answers `Full` is
//! asked for nothing until then, and the piece goes to another holder.
//!
//! However a worker ends (an error, a ban, a panic), its `Slot` and `Claim`
//! guards give its pieces back to the pool.

use std::collections::VecDeque;
use std::io::{BufRead, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::digest::Digest;
use crate::error::{Error, Result, Stage};
use crate::frame::{self, Conn};
use crate::log::Level;
use crate::net::{self, Timeouts};
use crate::swarm::manifest::PieceIndex;
use crate::swarm::picker;
use crate::swarm::proto::{PEER_WIRE, PeerRequest, PeerResponse};

use super::state::State;
use super::watch::{Dir, Trouble};
use super::{
    ENDGAME, ENDGAME_PATIENCE, FIRST_OVERDUE, HAVE_MIN_GAP, HAVE_POLL_TIMEOUT, HAVE_REFRESH,
    IDLE_HAVE_REFRESH, KEEP_ALIVE, MAX_BACKOFF_DOUBLINGS, MAX_PIPELINE, Node, OVERDUE_FACTOR,
    OVERDUE_GRACE, PIPELINE, PIPELINE_TIME, RETRY_AFTER, SEED_PATIENCE, TICK,
};

/// What a download connection ended with.
enum End {
    /// The download finished or the peer is shutting down.
    Finished,
    /// The remote served a corrupt piece.
    Banned,
}

/// A request this side sent and whose answer has not been read yet.
#[derive(Debug, Clone, Copy)]
enum Pending {
    Have {
        sent: Instant,
    },
    Piece {
        index: PieceIndex,
        holders: u16,
        sent: Instant,
        /// Overdue, and given back to the pool for other holders: a late
        /// answer is still used, but the request no longer counts as in
        /// flight.
        given_back: bool,
    },
}

impl Pending {
    fn sent(&self) -> Instant {
        match *self {
            Pending::Have { sent } | Pending::Piece { sent, .. } => sent,
        }
    }
}

/// What one connection's remote has delivered: how long a piece took it,
/// from which follow the deadline of each answer and how many requests to
/// keep in flight.
#[derive(Debug)]
struct Pace {
    /// Moving average of the time one piece took, from its request (or
    /// the answer before it, if later) to its last byte; `None` until the
    /// remote delivered one.
    per_piece: Option<Duration>,
    /// When the last answer was read completely.
    last_done: Instant,
    /// Piece requests to keep in flight now.
    depth: usize,
}

impl Pace {
    fn new() -> Pace {
        Pace {
            per_piece: None,
            last_done: Instant::now(),
            depth: PIPELINE,
        }
    }

    /// When the wait for `p`, at the head of the pipeline, began: its
    /// request, or the answer before it if that came later.
    fn since(&self, p: &Pending) -> Instant {
        p.sent().max(self.last_done)
    }

    /// When the answer to `p` is overdue: `OVERDUE_FACTOR` times what a
    /// piece took this remote so far plus `OVERDUE_GRACE` (before any
    /// piece came, `FIRST_OVERDUE`), never later than the I/O timeout.
    fn overdue_at(&self, p: &Pending, io: Duration) -> Instant {
        let budget = match self.per_piece {
            Some(t) => t * OVERDUE_FACTOR + OVERDUE_GRACE,
            None => FIRST_OVERDUE,
        };
        self.since(p) + budget.min(io)
    }

    /// Counts an answer read completely now; `piece` if it was a piece.
    fn done(&mut self, p: &Pending, piece: bool) {
        let now = Instant::now();
        if piece {
            let took = now - p.sent().max(self.last_done);
            self.per_piece = Some(match self.per_piece {
                // An average over about four pieces.
                Some(avg) => (avg * 3 + took) / 4,
                None => took,
            });
            self.depth = self.target_depth().min(self.depth + 1);
        }
        self.last_done = now;
    }

    /// Piece requests to keep in flight: enough to cover `PIPELINE_TIME`
    /// at the rate this remote delivers, plus one being read; grown by at
    /// most one per piece delivered, so the first peer to reach a seed
    /// does not fill the seed's link with its own requests before the
    /// others come.
    fn depth(&self) -> usize {
        self.depth
    }

    /// What `depth` aims at.
    fn target_depth(&self) -> usize {
        match self.per_piece {
            None => PIPELINE,
            Some(t) => {
                let ahead = PIPELINE_TIME.as_secs_f64() / t.as_secs_f64().max(1e-4);
                (ahead.ceil() as usize + 1).clamp(PIPELINE, MAX_PIPELINE)
            }
        }
    }
}

/// A piece request taken off the pipeline while its answer is read. Unless
/// the answer settles it, dropping it gives the piece back: an error, a
/// wrong answer or a panic can never leave the piece counted as in flight
/// (it would then never be asked for again outside the end game).
///
/// Dropping a live claim locks `Node::state`: never drop one while holding
/// that lock (`release` and `settle` take care of it).
struct Claim<'a> {
    node: &'a Node,
    index: PieceIndex,
    live: bool,
}

impl<'a> Claim<'a> {
    fn new(node: &'a Node, index: PieceIndex) -> Claim<'a> {
        Claim {
            node,
            index,
            live: true,
        }
    }

    /// Gives the piece back now and returns the state, still locked.
    fn release(mut self) -> MutexGuard<'a, State> {
        self.live = false;
        let mut st = self.node.lock();
        st.release(self.index);
        st
    }

    /// The caller accounts for the request itself.
    fn settle(mut self) {
        self.live = false;
    }

    /// Gives the piece back now (the answer is overdue) but keeps reading
    /// it: if it comes after all, it is used without being counted out a
    /// second time.
    fn give_back(&mut self) {
        if self.live {
            self.live = false;
            self.node.lock().release(self.index);
            self.node.changed.notify_all();
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.live {
            self.node.lock().release(self.index);
            self.node.changed.notify_all();
        }
    }
}

/// Reads one answer (and a piece's bytes) from a connection under two
/// deadlines: at `late` the caller's `on_late` runs once (it gives the
/// connection's pieces back for other holders) and the read goes on; at
/// `hard` (the I/O timeout) the read fails with `Error::TimedOut`.
struct Overdue<'c> {
    conn: &'c mut Conn,
    late: Instant,
    hard: Instant,
    /// `on_late` has run.
    was_late: bool,
    /// When the wait for this answer began.
    since: Instant,
    /// What a piece took this remote on average, if known.
    per_piece: Option<Duration>,
}

impl Overdue<'_> {
    /// Sets the socket's read timeout to the next deadline, running
    /// `on_late` if the first has passed; fails once the second has.
    fn arm(&mut self, what: &dyn Fn() -> String, on_late: &mut dyn FnMut()) -> Result<()> {
        let now = Instant::now();
        if !self.was_late && now >= self.late {
            self.was_late = true;
            on_late();
        }
        let until = if self.was_late { self.hard } else { self.late };
        let left = until.saturating_duration_since(now);
        if left.is_zero() {
            let waited = self.since.elapsed().as_secs_f64();
            return Err(Error::TimedOut(match self.per_piece {
                Some(t) => format!(
                    "{} not there after {waited:.1} s (its pieces took {:.2} s)",
                    what(),
                    t.as_secs_f64()
                ),
                None => format!("{} not there after {waited:.1} s", what()),
            }));
        }
        self.conn.stream().set_read_timeout(Some(left))?;
        Ok(())
    }

    /// Waits for the first byte of the next answer, which nothing has
    /// consumed yet, so a timeout here loses nothing.
    fn first_byte(&mut self, on_late: &mut dyn FnMut()) -> Result<()> {
        let what = || "an answer".to_string();
        loop {
            if !self.conn.reader().buffer().is_empty() {
                return Ok(());
            }
            self.arm(&what, on_late)?;
            match self.conn.reader().fill_buf() {
                Ok([]) => return Err(Error::Closed),
                Ok(_) => return Ok(()),
                Err(e) if is_timeout(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The answer's frame, whose first byte has come: the rest is read
    /// under the hard deadline alone (a frame is a few bytes).
    fn expect(&mut self, on_late: &mut dyn FnMut()) -> Result<PeerResponse> {
        self.first_byte(on_late)?;
        let left = self.hard.saturating_duration_since(Instant::now());
        self.conn
            .stream()
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        self.conn.expect::<PeerResponse>()
    }

    /// A piece's bytes, read as they come, so a deadline passing between
    /// two reads only runs `on_late`.
    fn read_exact(
        &mut self,
        buf: &mut [u8],
        index: PieceIndex,
        on_late: &mut dyn FnMut(),
    ) -> Result<()> {
        let what = || format!("piece {index}");
        let mut off = 0;
        while off < buf.len() {
            self.arm(&what, on_late)?;
            match self.conn.reader().read(&mut buf[off..]) {
                Ok(0) => return Err(Error::Truncated),
                Ok(n) => off += n,
                Err(e) if is_timeout(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

/// How a download worker ended, as its `Slot` sees it when dropped.
enum Outcome {
    Ended(End),
    Failed(Error),
    /// Still the value when the worker panicked.
    Panicked,
}

/// A running download worker's hold on the shared state. Dropped however
/// the worker ends, it gives back the requests still in the pipeline and
/// stops counting the worker as running and its remote as connected.
struct Slot<'a> {
    node: &'a Node,
    addr: SocketAddr,
    pending: VecDeque<Pending>,
    outcome: Outcome,
    /// Past the handshake: counted in `State::linked`.
    linked: bool,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let addr = self.addr;
        let mut st = self.node.lock();
        for p in self.pending.drain(..) {
            if let Pending::Piece {
                index,
                given_back: false,
                ..
            } = p
            {
                st.release(index);
            }
        }
        st.workers = st.workers.saturating_sub(1);
        if self.linked {
            st.linked = st.linked.saturating_sub(1);
        }
        let mut warning = None;
        match std::mem::replace(&mut self.outcome, Outcome::Panicked) {
            Outcome::Ended(End::Finished) => {
                if let Some(r) = st.remotes.get_mut(&addr) {
                    r.connected = false;
                }
            }
            Outcome::Ended(End::Banned) => {
                st.clear_remote(addr);
                if let Some(r) = st.remotes.get_mut(&addr) {
                    r.connected = false;
                    r.banned = true;
                }
            }
            failed => {
                st.clear_remote(addr);
                let downloading = st.missing > 0;
                if let Some(r) = st.remotes.get_mut(&addr) {
                    r.connected = false;
                    let backoff = RETRY_AFTER * 2u32.pow(r.failures.min(MAX_BACKOFF_DOUBLINGS));
                    r.retry_at = Some(Instant::now() + backoff);
                    let why = match failed {
                        Outcome::Failed(e) => e.to_string(),
                        _ => "the download thread failed".to_string(),
                    };
                    if r.failures == 0 && downloading {
                        warning = Some(format!("{addr}: {why}"));
                    }
                    r.last_error = Some(why);
                    r.failures += 1;
                }
            }
        }
        drop(st);
        self.node.changed.notify_all();
        if let Some(w) = warning.filter(|_| !self.node.shutdown.is_triggered()) {
            self.node.warn(&w);
        }
    }
}

/// The outcome of trying to pick a piece for one remote.
enum Pick {
    Piece(PieceIndex, u16),
    /// Nothing to ask for now; look again after this long at the latest.
    Wait(Duration),
}

impl Node {
    /// A download worker: talks to one remote until the download is done,
    /// the remote fails, or it is banned.
    pub(super) fn worker(self: Arc<Self>, addr: SocketAddr) {
        // Which pieces the remote holds is asked on a connection of its
        // own, so the answer does not queue behind the pieces requested
        // before it (a second or more at a capped remote): a piece the
        // remote just got is heard of, and asked for, a poll period later.
        let polling = AtomicBool::new(false);
        let stop = AtomicBool::new(false);
        thread::scope(|scope| {
            scope.spawn(|| self.poll_have(addr, &polling, &stop));
            let mut slot = Slot {
                node: &self,
                addr,
                pending: VecDeque::new(),
                outcome: Outcome::Panicked,
                linked: false,
            };
            slot.outcome = match self.download_from(&mut slot, &polling) {
                Ok(end) => Outcome::Ended(end),
                Err(e) => Outcome::Failed(e),
            };
            stop.store(true, Ordering::SeqCst);
            // The slot gives its pieces back now, before the poller ends.
            drop(slot);
        });
    }

    /// Asks `addr` which pieces it holds every `HAVE_REFRESH`, on a
    /// connection of its own, until `stop` (or an error: the download
    /// connection then asks itself). Each answer must come within
    /// `HAVE_POLL_TIMEOUT`.
    fn poll_have(&self, addr: SocketAddr, polling: &AtomicBool, stop: &AtomicBool) {
        let timeouts = Timeouts {
            connect: self.cfg.limits.io.connect,
            io: HAVE_POLL_TIMEOUT.min(self.cfg.limits.io.io),
        };
        let Ok(stream) = net::connect_addr(addr, &timeouts) else {
            return;
        };
        let Ok(mut conn) = Conn::new(stream) else {
            return;
        };
        if conn.client_handshake(PEER_WIRE).is_err() {
            return;
        }
        polling.store(true, Ordering::SeqCst);
        // The remote answers once it holds another number of pieces than
        // it did last time (at once the first time), or after
        // `HAVE_REFRESH`: a piece it gets is heard of at once.
        let mut held = u32::MAX;
        let mut last = Instant::now();
        while !stop.load(Ordering::SeqCst) && !self.shutdown.is_triggered() && !self.is_complete() {
            let asked = conn
                .send(&PeerRequest::HaveChange {
                    swarm: self.id,
                    held,
                })
                .and_then(|()| conn.expect::<PeerResponse>())
                .and_then(|resp| {
                    if let PeerResponse::Have { have, .. } = &resp {
                        held = have.count();
                    }
                    self.take_have(addr, resp)
                });
            if asked.is_err() {
                break;
            }
            // A remote taking in pieces faster than this (uncapped) is
            // asked no more often.
            let since = last.elapsed();
            if since < HAVE_MIN_GAP {
                thread::sleep(HAVE_MIN_GAP - since);
            }
            last = Instant::now();
        }
        polling.store(false, Ordering::SeqCst);
    }

    /// Takes in a remote's answer to `Have`.
    fn take_have(&self, addr: SocketAddr, resp: PeerResponse) -> Result<()> {
        match resp {
            PeerResponse::Have {
                have,
                mut fetching,
                sending,
            } => {
                have.check_for(&self.manifest, Stage::Reply)?;
                fetching.check_for(&self.manifest, Stage::Reply)?;
                sending.check_for(&self.manifest, Stage::Reply)?;
                // Either way a copy is on its way somewhere.
                for i in 0..sending.len() as usize {
                    if sending.has(i) {
                        fetching.set_bit(i, true);
                    }
                }
                let mut st = self.lock();
                if let Some(r) = st.remotes.get_mut(&addr) {
                    r.busy = self.manifest.empty_bitfield();
                    r.full = false;
                }
                st.set_remote_have(addr, have, fetching);
                Ok(())
            }
            PeerResponse::UnknownSwarm => Err(Error::invalid(
                Stage::Reply,
                "the peer is not in this swarm",
            )),
            other => Err(frame::unexpected("Have or UnknownSwarm", &other)),
        }
    }

    fn download_from(&self, slot: &mut Slot<'_>, polling: &AtomicBool) -> Result<End> {
        let addr = slot.addr;
        let io = self.cfg.limits.io.io;
        let stream = net::connect_addr(addr, &self.cfg.limits.io)?;
        let mut conn = Conn::new(stream)?;
        conn.client_handshake(PEER_WIRE)?;
        {
            let mut st = self.lock();
            st.linked += 1;
            slot.linked = true;
            if let Some(r) = st.remotes.get_mut(&addr) {
                r.failures = 0;
                r.last_error = None;
            }
        }
        let link = self.watch.open(Dir::Down, addr);
        let pending = &mut slot.pending;
        let mut last_have_ask: Option<Instant> = None;
        let mut buf: Vec<u8> = Vec::new();
        let mut pace = Pace::new();
        // An answer is overdue: this connection's pieces were given back.
        let mut late = false;
        loop {
            if self.shutdown.is_triggered() || self.is_complete() {
                return Ok(End::Finished);
            }
            let asking_have = pending.iter().any(|p| matches!(p, Pending::Have { .. }));
            // With nothing to ask this remote for, ask more often what it
            // holds: a piece it just got is passed on sooner.
            let asking_pieces = pending.iter().any(|p| matches!(p, Pending::Piece { .. }));
            let refresh = if asking_pieces {
                HAVE_REFRESH
            } else {
                IDLE_HAVE_REFRESH
            };
            // The poller asks, unless it failed; a late connection asks
            // too, so an answer tells it the remote is back; and now and
            // then this connection asks anyway, so the remote's idle
            // timeout never closes it while there is nothing to fetch.
            let keep_alive = last_have_ask.is_none_or(|t| t.elapsed() >= KEEP_ALIVE);
            let poller = polling.load(Ordering::SeqCst) && !late && !keep_alive;
            if !poller && !asking_have && last_have_ask.is_none_or(|t| t.elapsed() >= refresh) {
                conn.queue(&PeerRequest::Have { swarm: self.id })?;
                let sent = Instant::now();
                pending.push_back(Pending::Have { sent });
                last_have_ask = Some(sent);
            }
            let mut idle = TICK;
            let depth = if late { 0 } else { pace.depth() };
            while pending
                .iter()
                .filter(|p| matches!(p, Pending::Piece { .. }))
                .count()
                < depth
            {
                match self.pick(addr, pending) {
                    Pick::Piece(index, holders) => {
                        conn.queue(&PeerRequest::Piece {
                            swarm: self.id,
                            index: index.get(),
                        })?;
                        pending.push_back(Pending::Piece {
                            index,
                            holders,
                            sent: Instant::now(),
                            given_back: false,
                        });
                        self.detail(&format!(
                            "request piece {index} from {addr} (holders {holders})"
                        ));
                    }
                    Pick::Wait(d) => {
                        idle = d;
                        break;
                    }
                }
            }
            conn.flush()?;
            let Some(next) = pending.pop_front() else {
                self.wait_change(idle.min(IDLE_HAVE_REFRESH));
                continue;
            };
            // Every answer is read under a deadline from what this remote
            // has delivered so far. Once it passes, this connection's
            // pieces go back to the pool for other holders (a remote that
            // vanished without closing costs a few of its piece times, not
            // the I/O timeout) and it is asked for nothing new until an
            // answer comes; at the I/O timeout the connection is dropped.
            let mut reader = Overdue {
                conn: &mut conn,
                late: pace.overdue_at(&next, io),
                hard: pace.since(&next) + io,
                was_late: false,
                since: pace.since(&next),
                per_piece: pace.per_piece,
            };
            match next {
                Pending::Have { .. } => {
                    let mut on_late = || self.overdue(addr, pending, &mut late, None);
                    let answer = reader.expect(&mut on_late)?;
                    pace.done(&next, false);
                    late = false;
                    self.take_have(addr, answer)?;
                }
                Pending::Piece {
                    index,
                    holders,
                    given_back,
                    sent,
                } => {
                    // From here until the answer settles it, every way out
                    // (`?`, a wrong answer, a panic) gives the piece back.
                    let mut claim = Claim::new(self, index);
                    claim.live = !given_back;
                    let want = self.manifest.piece_len(index);
                    let mut on_late = || self.overdue(addr, pending, &mut late, Some(&mut claim));
                    let answer = reader.expect(&mut on_late)?;
                    match answer {
                        PeerResponse::Piece { index: got, len } if got == index.get() => {
                            if len != want {
                                return Err(Error::invalid(
                                    Stage::Body,
                                    format!(
                                        "piece {index} announced as {len} bytes, it has {want}"
                                    ),
                                ));
                            }
                            link.piece(index.get());
                            buf.resize(want as usize, 0);
                            reader.read_exact(&mut buf, index, &mut on_late)?;
                            pace.done(&next, true);
                            late = false;
                            if Digest::of(&buf) != self.manifest.piece_hash(index) {
                                if claim.live {
                                    drop(claim.release());
                                }
                                self.watch.trouble(Trouble::Corrupt);
                                self.log(&format!(
                                    "piece {index} from {addr} failed its check; not asking {addr} again"
                                ));
                                return Ok(End::Banned);
                            }
                            self.piece_done(claim, &buf, addr, holders)?;
                            link.moved(index.get(), want, Some(sent.elapsed()));
                        }
                        PeerResponse::Missing { index: got } if got == index.get() => {
                            pace.done(&next, false);
                            late = false;
                            claim.give_back();
                            let mut st = self.lock();
                            if let Some(r) = st.remotes.get(&addr) {
                                let mut have = r.have.clone();
                                have.set_bit(index.slot(), false);
                                let fetching = r.fetching.clone();
                                st.set_remote_have(addr, have, fetching);
                            }
                        }
                        PeerResponse::Busy { index: got } if got == index.get() => {
                            pace.done(&next, false);
                            late = false;
                            claim.give_back();
                            // Counted as on its way elsewhere until the
                            // next `Have` answer says otherwise.
                            let mut st = self.lock();
                            if let Some(r) = st.remotes.get_mut(&addr) {
                                r.busy.set_bit(index.slot(), true);
                                let have = r.have.clone();
                                let mut fetching = r.fetching.clone();
                                fetching.set_bit(index.slot(), true);
                                st.set_remote_have(addr, have, fetching);
                            }
                            drop(st);
                            self.detail(&format!(
                                "{addr} is busy with piece {index}; it goes to another holder"
                            ));
                        }
                        PeerResponse::Full { index: got } if got == index.get() => {
                            pace.done(&next, false);
                            late = false;
                            claim.give_back();
                            if let Some(r) = self.lock().remotes.get_mut(&addr) {
                                r.full = true;
                            }
                            self.detail(&format!(
                                "{addr} has a full upload queue; piece {index} goes to another holder"
                            ));
                        }
                        other => {
                            return Err(frame::unexpected("Piece, Busy or Full", &other)
                                .doing(format!("piece {index}")));
                        }
                    }
                }
            }
        }
    }

    /// An answer from `addr` is overdue: gives back the piece being read
    /// (`reading`) and every piece still pipelined, so other holders can
    /// be asked, forgets what `addr` holds until it answers again, and
    /// marks the connection `late` (asked for nothing new).
    fn overdue(
        &self,
        addr: SocketAddr,
        pending: &mut VecDeque<Pending>,
        late: &mut bool,
        reading: Option<&mut Claim<'_>>,
    ) {
        *late = true;
        if let Some(claim) = reading {
            claim.give_back();
        }
        let mut st = self.lock();
        for p in pending.iter_mut() {
            if let Pending::Piece {
                index, given_back, ..
            } = p
                && !*given_back
            {
                *given_back = true;
                st.release(*index);
            }
        }
        st.clear_remote(addr);
        drop(st);
        self.changed.notify_all();
        self.detail(&format!("{addr} is late; its pieces go to other holders"));
    }

    /// Chooses the next piece to ask `addr` for: the rarest piece it holds
    /// that we lack and nobody is fetching; once every missing piece is
    /// being fetched (the end game), one being fetched from someone else.
    fn pick(&self, addr: SocketAddr, pending: &VecDeque<Pending>) -> Pick {
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.missing == 0 {
            return Pick::Wait(TICK);
        }
        let now = Instant::now();
        if !self.cfg.request_interval.is_zero() && now < st.next_request {
            return Pick::Wait((st.next_request - now).min(TICK));
        }
        let Some(remote) = st.remotes.get(&addr) else {
            return Pick::Wait(TICK);
        };
        if remote.full {
            return Pick::Wait(HAVE_REFRESH);
        }
        let n = st.avail.len();
        let (have, in_flight, rhave) = (&st.have, &st.in_flight, &remote.have);
        let busy = &remote.busy;
        let lacks = |i: usize| !have.has(i) && rhave.has(i) && !busy.has(i);
        let mut rng = st.rng.clone();
        let rank = |i: usize| st.rank(i);
        // A seed's upload is the swarm's scarcest resource: ask a seed only
        // for pieces no other peer holds or is fetching; a piece others
        // hold but nobody is fetching also when nothing has been on its
        // way to us for a while.
        let seeds = st
            .remotes
            .values()
            .filter(|r| !r.banned && r.is_seed())
            .count() as u32;
        // Once every piece has reached some other peer, the seeds' first
        // pass is over and their upload is no scarcer than anyone's: they
        // are asked like any peer, and help spread the last pieces.
        let spread = || (0..n).all(|i| have.has(i) || u32::from(st.avail.holders(i)) > seeds);
        let from_seed = remote.is_seed() && !spread();
        let idle = in_flight.iter().all(|&c| c == 0) && st.last_piece.elapsed() >= SEED_PATIENCE;
        // Idle for a while, a peer asks a seed for anything: what others
        // hold or fetch is not coming its way (a holder may have vanished).
        let spare_seed = |i: usize| !from_seed || rank(i) <= seeds || idle;
        let first = |i: usize| lacks(i) && in_flight.get(i) == Some(&0) && spare_seed(i);
        let mut choice = if from_seed {
            // Among equally rare pieces, the first from this peer's own
            // place in the file onward: peers start at random places, so
            // two of them rarely ask a seed for the same piece before they
            // hear of each other's requests (a duplicate costs the seed's
            // upload, the swarm's bottleneck).
            let start = st.seed_offset;
            let n32 = n as u32;
            let order = |i: usize| {
                let dist = (i as u32 + n32 - start % n32.max(1)) % n32.max(1);
                rank(i).saturating_mul(n32).saturating_add(dist)
            };
            picker::rarest_by(n, order, first, &mut rng)
        } else {
            picker::rarest_by(n, rank, first, &mut rng)
        };
        let endgame = st.unrequested == 0
            && st.missing <= ENDGAME
            && st.last_piece.elapsed() >= ENDGAME_PATIENCE;
        if choice.is_none() && endgame && (!from_seed || idle) {
            let mine = |i: usize| {
                pending
                    .iter()
                    .any(|p| matches!(p, Pending::Piece { index, .. } if index.slot() == i))
            };
            // One second request per piece at most.
            let once = |i: usize| in_flight.get(i).is_some_and(|&c| c < 2);
            choice = picker::rarest_by(n, rank, |i| lacks(i) && once(i) && !mine(i), &mut rng);
        }
        st.rng = rng;
        let Some(i) = choice.and_then(|i| self.manifest.index(i as u32)) else {
            return Pick::Wait(TICK);
        };
        let slot = i.slot();
        if st.in_flight[slot] == 0 {
            st.unrequested -= 1;
        }
        st.in_flight[slot] += 1;
        st.next_request = now + self.cfg.request_interval;
        Pick::Piece(i, st.avail.holders(slot))
    }

    /// Stores a verified piece and counts it. If storing fails, the claim
    /// gives the piece back.
    fn piece_done(
        &self,
        claim: Claim<'_>,
        data: &[u8],
        from: SocketAddr,
        holders: u16,
    ) -> Result<()> {
        let i = claim.index;
        let slot = i.slot();
        if self.lock().have.has(slot) {
            // A duplicate from the end game, or a late answer already
            // fetched elsewhere: only the count of requests changes.
            let counted = claim.live;
            claim.settle();
            if counted {
                let mut st = self.lock();
                st.in_flight[slot] = st.in_flight[slot].saturating_sub(1);
            }
            self.watch.trouble(Trouble::Duplicate);
            self.detail(&format!("piece {i} again from {from} (a duplicate)"));
            return Ok(());
        }
        let written = self
            .store
            .write_piece(i, data)
            .map_err(|e| Error::from(e).doing(format!("writing {}", self.store.path().display())));
        if let Err(e) = written {
            // Our disk (full, or failing), not the remote: the download
            // ends, and the claim gives the piece back.
            self.fail_locally(e.to_string());
            return Err(e);
        }
        let counted = claim.live;
        claim.settle();
        let mut st = self.lock();
        if counted {
            st.in_flight[slot] = st.in_flight[slot].saturating_sub(1);
        }
        if st.have.has(slot) {
            // A duplicate from the end game.
            return Ok(());
        }
        if !counted && st.in_flight[slot] == 0 {
            // Given back as overdue and come after all: no longer
            // waiting to be requested.
            st.unrequested = st.unrequested.saturating_sub(1);
        }
        st.have.set(i);
        st.last_piece = Instant::now();
        st.missing -= 1;
        st.received += data.len() as u64;
        let (missing, received, peers) = (st.missing, st.received, st.workers);
        let total = self.manifest.piece_count();
        let tenth = (total - missing) * 10 / total.max(1);
        let log_tenth =
            self.bar.is_none() && self.cfg.level >= Level::Normal && tenth > st.logged_tenth;
        if log_tenth {
            st.logged_tenth = tenth;
        }
        drop(st);
        // Logged before waking the waiters, so that `complete:` comes after
        // the last piece's line.
        self.detail(&format!("piece {i} from {from} (holders {holders})"));
        self.changed.notify_all();
        self.have_changed.notify_all();
        let done = total - missing;
        let peers = format!("{peers} peer{}", if peers == 1 { "" } else { "s" });
        if let Some(bar) = &self.bar {
            bar.set_position(received);
            bar.set_message(format!(
                "{} {done}/{total} pieces, {peers}",
                self.manifest.name()
            ));
        } else if log_tenth {
            self.warn(&format!(
                "{}: {}% ({done}/{total} pieces, {peers})",
                self.manifest.name(),
                tenth * 10
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;
    use crate::swarm::manifest::Bitfield;
    use crate::swarm::peer::state::Remote;

    #[test]
    fn deadlines_and_pipeline_depth_follow_what_a_remote_delivered() {
        let (node, _dir) = super::super::test_node(false, None);
        let io = Duration::from_secs(30);
        let mut pace = Pace::new();
        let t0 = pace.last_done;
        let first = Pending::Piece {
            index: node.manifest.index(0).unwrap(),
            holders: 1,
            sent: t0,
            given_back: false,
        };
        // Nothing delivered yet: the first-piece allowance, two in flight.
        assert_eq!(pace.overdue_at(&first, io), t0 + FIRST_OVERDUE);
        assert_eq!(pace.depth(), PIPELINE);
        // A piece every 100 ms: overdue after 4 x 0.1 s + 1 s, and enough
        // requests in flight for the pipeline time.
        pace.per_piece = Some(Duration::from_millis(100));
        let since = pace.since(&first);
        assert_eq!(
            pace.overdue_at(&first, io),
            since + Duration::from_millis(1400)
        );
        assert_eq!(pace.target_depth(), 3);
        // Faster remotes get deeper pipelines, up to the cap, one more
        // request per piece delivered; the deadline never passes the I/O
        // timeout.
        pace.per_piece = Some(Duration::from_micros(100));
        assert_eq!(pace.target_depth(), MAX_PIPELINE);
        for want in PIPELINE + 1..=MAX_PIPELINE {
            pace.done(&first, true);
            assert_eq!(pace.depth(), want);
        }
        pace.done(&first, true);
        assert_eq!(pace.depth(), MAX_PIPELINE);
        pace.per_piece = Some(Duration::from_secs(60));
        assert_eq!(pace.overdue_at(&first, io), pace.since(&first) + io);
        drop(node);
    }

    #[test]
    fn a_panicking_worker_gives_back_its_pieces_and_its_place() {
        let (node, _dir) = super::super::test_node(false, None);
        let addr: SocketAddr = "127.0.0.1:2".parse().unwrap();
        {
            let mut st = node.lock();
            let full = Bitfield::full(4);
            st.remotes.insert(
                addr,
                Remote {
                    have: Bitfield::new(4),
                    fetching: Bitfield::new(4),
                    busy: Bitfield::new(4),
                    full: false,
                    connected: true,
                    banned: false,
                    retry_at: None,
                    failures: 0,
                    last_error: None,
                    fetched: false,
                },
            );
            st.set_remote_have(addr, full, Bitfield::new(4));
            st.workers = 1;
        }
        let n = node.clone();
        let result = thread::spawn(move || {
            let mut slot = Slot {
                node: &n,
                addr,
                pending: VecDeque::new(),
                outcome: Outcome::Panicked,
                linked: false,
            };
            // One request still pipelined, one whose answer is being read.
            let Pick::Piece(queued, holders) = n.pick(addr, &slot.pending) else {
                panic!("nothing to pick");
            };
            slot.pending.push_back(Pending::Piece {
                index: queued,
                holders,
                sent: Instant::now(),
                given_back: false,
            });
            let Pick::Piece(reading, _) = n.pick(addr, &slot.pending) else {
                panic!("nothing more to pick");
            };
            let _claim = Claim::new(&n, reading);
            {
                let st = n.lock();
                assert_eq!((st.unrequested, st.in_flight.iter().sum::<u16>()), (2, 2));
            }
            panic!("a bug while reading the answer");
        })
        .join();
        assert!(result.is_err());
        let st = node.lock();
        assert_eq!(st.in_flight, vec![0; 4]);
        assert_eq!(st.unrequested, 4);
        assert_eq!(st.workers, 0);
        let r = &st.remotes[&addr];
        assert!(!r.connected && r.retry_at.is_some());
        drop(st);
    }
}
