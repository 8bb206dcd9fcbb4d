//! Serving other peers: `Have` (what this peer holds, fetches and sends;
//! with `HaveChange`, once it holds another number of pieces, or after
//! `HAVE_REFRESH`) and `Piece` (a header, then the bytes straight from the
//! file with sendfile, in chunks paced by the upload bucket if capped,
//! whole piece by whole piece). A capped peer answers `Busy` for a piece
//! it is already sending to someone else; so does a seed, in its first
//! pass, for a piece it is sending or sent a moment ago. A capped peer
//! with `UPLOAD_QUEUE` uploads already waiting answers `Full` unless the
//! piece asked for is rarer than all of them.

use std::sync::{Arc, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::frame::Conn;
use crate::server::{Server, Session};
use crate::swarm::manifest::PieceIndex;
use crate::swarm::proto::{PEER_WIRE, PeerRequest, PeerResponse};

use super::watch::{Dir, LinkGuard, Served, Trouble};
use super::{HAVE_REFRESH, Node, SEND_STALL, TICK, UPLOAD_QUEUE};
use crate::swarm::bucket::{Reservation, TokenBucket};

/// Bytes a piece is sent in per sendfile call; a capped peer sends
/// `CAPPED_CHUNK` per step of the upload bucket.
const CHUNK: u64 = 64 * 1024;
const CAPPED_CHUNK: u64 = 16 * 1024;

impl Node {
    /// Serves other peers until shutdown, on its own thread.
    pub(crate) fn spawn_server(self: &Arc<Self>, server: Server) -> Result<JoinHandle<()>> {
        let node = self.clone();
        let handle = thread::Builder::new().name("serve".into()).spawn(move || {
            let n = node.clone();
            if let Err(e) = server.serve(move |session| n.serve_conn(session)) {
                node.warn(&format!("serving: {e}"));
            }
        })?;
        Ok(handle)
    }

    /// One downloader's connection: handshake, then requests until it
    /// closes. A failure other than the downloader going away is logged
    /// with its address by the framed server's loop.
    fn serve_conn(&self, session: Session) {
        let peer = session.peer();
        let Some(mut conn) = Conn::accept_logged(session, PEER_WIRE) else {
            return;
        };
        // A downloader that stops reading (it vanished without closing)
        // fails our write after `SEND_STALL` instead of the I/O timeout, so
        // the pieces counted as on their way to it are free again soon.
        let stall = SEND_STALL.min(self.cfg.limits.io.io);
        if let Err(e) = conn.stream().set_write_timeout(Some(stall)) {
            self.warn(&format!("{peer}: {e}"));
            return;
        }
        // Counted as a transfer once it asks for a piece (a connection
        // that only polls `Have` moves none).
        let mut link: Option<LinkGuard<'_>> = None;
        conn.serve_requests::<PeerRequest, PeerResponse>(|conn, req| {
            self.answer(conn, req, &mut link, peer)
        });
    }

    /// Answers one request: what this peer holds, or a piece (its header
    /// and bytes, or why not).
    fn answer<'a>(
        &'a self,
        conn: &mut Conn,
        req: PeerRequest,
        link: &mut Option<LinkGuard<'a>>,
        peer: std::net::SocketAddr,
    ) -> Result<()> {
        let resp = match req {
            PeerRequest::Have { swarm } if swarm == self.id => {
                self.watch.served(Served::Have);
                self.lock().have_answer()
            }
            PeerRequest::HaveChange { swarm, held } if swarm == self.id => {
                self.watch.served(Served::Have);
                // Every piece stored wakes `have_changed` (no socket I/O
                // is done with the state locked: the wait releases it).
                let until = Instant::now() + HAVE_REFRESH;
                let total = self.manifest.piece_count();
                let mut st = self.lock();
                while total - st.missing == held && !self.shutdown.is_triggered() {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    st = self
                        .have_changed
                        .wait_timeout(st, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                st.have_answer()
            }
            PeerRequest::Piece { swarm, index } if swarm == self.id => {
                self.watch.served(Served::Piece);
                match self.manifest.index(index) {
                    None => PeerResponse::Error(format!(
                        "no piece {index}: the swarm has {} pieces",
                        self.manifest.piece_count()
                    )),
                    Some(i) => match self.start_upload(i) {
                        Err(refusal) => {
                            self.watch.trouble(match refusal {
                                PeerResponse::Busy { .. } | PeerResponse::Full { .. } => {
                                    Trouble::Busy
                                }
                                _ => Trouble::Missing,
                            });
                            refusal
                        }
                        Ok(()) => {
                            let link = link.get_or_insert_with(|| self.watch.open(Dir::Up, peer));
                            return self
                                .send_piece(conn, i, link)
                                .map_err(|e| e.doing(format!("sending piece {i}")));
                        }
                    },
                }
            }
            _ => PeerResponse::UnknownSwarm,
        };
        conn.send(&resp)
    }

    /// Counts an upload of piece `i` in, or says why there is none: the
    /// piece is not held, or (upload capped) it is already on its way to
    /// another peer, who can pass it on; the cap is better spent on a piece
    /// nobody else is getting. Capped, it also refuses (`Full`) while
    /// `UPLOAD_QUEUE` uploads already wait for their turn, unless this
    /// piece would go before all of them.
    fn start_upload(&self, i: PieceIndex) -> std::result::Result<(), PeerResponse> {
        let index = i.get();
        // The gate is never taken with the state locked.
        let queued = self.bucket.is_some().then(|| {
            let gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
            let first = gate.waiting.iter().map(|w| w.0).min();
            (gate.waiting.len(), first.unwrap_or(u32::MAX))
        });
        let mut st = self.lock();
        let slot = i.slot();
        if !st.have.has(slot) {
            return Err(PeerResponse::Missing { index });
        }
        if self.bucket.is_some() && st.sending[slot] > 0 {
            return Err(PeerResponse::Busy { index });
        }
        // A piece rarer than every waiting one goes next anyway (see
        // `turn`): it is never refused.
        let rank = st.rank(slot);
        if queued.is_some_and(|(n, first)| n >= UPLOAD_QUEUE && rank >= first) {
            return Err(PeerResponse::Full { index });
        }
        let now = Instant::now();
        if let Some(f) = st.first_pass.as_mut() {
            if f.defers(slot, now) {
                return Err(PeerResponse::Busy { index });
            }
            f.start(slot, now);
        }
        st.sending[slot] += 1;
        Ok(())
    }

    /// Waits for piece `i`'s turn at the upload bucket, then reserves it.
    /// The bucket is kept at most about half a piece ahead, and among
    /// uploads waiting, the piece fewest peers hold (as this peer knows)
    /// goes first, then the oldest request: a piece that just came from
    /// the seed is passed on before ones many peers can serve, instead of
    /// queueing behind a second of them. `None` on shutdown.
    fn turn(&self, bucket: &TokenBucket, i: PieceIndex) -> Option<Reservation> {
        let rank = self.lock().rank(i.slot());
        let ahead = bucket.time_for(self.manifest.piece_len(i) as usize) / 2;
        let lock = || self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        let mut gate = lock();
        let ticket = gate.next_ticket;
        gate.next_ticket += 1;
        gate.waiting.push((rank, ticket));
        loop {
            if self.shutdown.is_triggered() {
                gate.waiting.retain(|w| w.1 != ticket);
                drop(gate);
                self.gate_turn.notify_all();
                return None;
            }
            let first = gate.waiting.iter().min().map(|w| w.1) == Some(ticket);
            let backlog = bucket.backlog_at(Instant::now());
            if first && backlog <= ahead {
                gate.waiting.retain(|w| w.1 != ticket);
                let paid = bucket.reserve(self.manifest.piece_len(i) as usize);
                drop(gate);
                self.gate_turn.notify_all();
                return Some(paid);
            }
            let pause = if first {
                (backlog - ahead).max(Duration::from_millis(1))
            } else {
                TICK
            };
            gate = self
                .gate_turn
                .wait_timeout(gate, pause)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Sends piece `i` (counted in by `start_upload`), then counts it out.
    fn send_piece(&self, conn: &mut Conn, i: PieceIndex, link: &LinkGuard<'_>) -> Result<()> {
        link.piece(i.get());
        let sent = self.send_piece_body(conn, i);
        if sent.is_ok() {
            link.moved(i.get(), self.manifest.piece_len(i), None);
        }
        let mut st = self.lock();
        st.sending[i.slot()] = st.sending[i.slot()].saturating_sub(1);
        if sent.is_ok()
            && let Some(f) = st.first_pass.as_mut()
        {
            f.sent(i.slot(), Instant::now());
        }
        sent
    }

    /// The piece's header, then its bytes straight from the file to the
    /// socket (sendfile), `CHUNK` bytes at a time; a capped peer sends
    /// `CAPPED_CHUNK` bytes at a time, each when the bucket allows.
    fn send_piece_body(&self, conn: &mut Conn, i: PieceIndex) -> Result<()> {
        let len = self.manifest.piece_len(i);
        conn.queue(&PeerResponse::Piece {
            index: i.get(),
            len,
        })?;
        let mut off = self.manifest.offset(i);
        let mut left = u64::from(len);
        // The whole piece is paid for at once, behind the pieces reserved
        // before it, so a capped peer completes its uploads one after
        // another: each piece can be passed on as soon as possible. Which
        // piece goes next is decided late (see `turn`), rarest first.
        let paid = match &self.bucket {
            Some(b) => match self.turn(b, i) {
                Some(paid) => Some(paid),
                None => return Err(Error::Closed),
            },
            None => None,
        };
        let chunk = if paid.is_some() { CAPPED_CHUNK } else { CHUNK };
        while left > 0 {
            let n = left.min(chunk);
            if let Some(paid) = &paid {
                paid.wait((left - n) as usize, &self.shutdown);
                if self.shutdown.is_triggered() {
                    return Err(Error::Closed);
                }
            }
            // No lock: a send blocked on a downloader that vanished
            // holds up nothing else (the final rename included).
            self.store.send_at(off, n, conn.writer())?;
            off += n;
            left -= n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::manifest::Bitfield;
    use crate::swarm::peer::state::Remote;
    use std::io::{ErrorKind, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::mpsc;

    #[test]
    fn the_download_finishes_while_an_upload_is_blocked_on_a_peer_that_stopped_reading() {
        // A fetcher holding its pieces, uploading piece 0 to a downloader
        // that never reads (it vanished without closing).
        let (node, dir) = super::super::test_node(false, None);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let reader = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (upload, _) = listener.accept().unwrap();
        // The socket's buffers are filled first, so the piece's send blocks:
        // until a write has taken nothing for half a second (the kernel has
        // moved all it can into the reader's buffer).
        upload
            .set_write_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut filler = &upload;
        let block = [0u8; 64 * 1024];
        loop {
            match filler.write(&block) {
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => panic!("filling the socket: {e}"),
            }
        }
        upload.set_write_timeout(None).unwrap();
        let mut conn = Conn::new(upload).unwrap();
        let piece = node.manifest.index(0).unwrap();
        let (tid_tx, tid_rx) = mpsc::channel();
        let sender = {
            let node = node.clone();
            thread::spawn(move || {
                let _ = tid_tx.send(rustix::thread::gettid().as_raw_nonzero().get());
                node.send_piece_body(&mut conn, piece)
            })
        };
        // Waits (with a deadline) until the sender is blocked writing to
        // the socket (the piece's header, or its bytes).
        let tid = tid_rx.recv().unwrap();
        let writing = [
            libc::SYS_write,
            libc::SYS_sendto,
            libc::SYS_sendmsg,
            libc::SYS_sendfile,
        ]
        .map(|n| n.to_string());
        let blocked = || {
            std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
                .is_ok_and(|s| writing.iter().any(|w| s.split(' ').next() == Some(w)))
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !blocked() {
            assert!(
                Instant::now() < deadline,
                "the upload never blocked on the socket"
            );
            thread::sleep(Duration::from_millis(5));
        }
        // The download's end (the rename into place) must not wait for
        // that upload: it is done on a thread of its own, with a deadline
        // far longer than it takes, so a regression fails instead of hanging.
        let (done_tx, done_rx) = mpsc::channel();
        {
            let node = node.clone();
            thread::spawn(move || done_tx.send(node.finish().map_err(|e| e.to_string())));
        }
        let finished = done_rx.recv_timeout(Duration::from_secs(30));
        // Ends the upload (whichever way): the downloader goes away.
        reader.shutdown(Shutdown::Both).unwrap();
        drop(reader);
        let _ = sender.join().unwrap();
        assert_eq!(
            finished.expect("the download's end waited for a blocked upload"),
            Ok(())
        );
        assert!(dir.path().join("out/f.bin").exists());
    }

    #[test]
    fn a_full_upload_queue_refuses_all_but_a_piece_rarer_than_every_waiting_one() {
        let (node, _dir) = super::super::test_node(true, Some(64 * 1024));
        // One remote holds piece 1 (rank 1); the others are held by none.
        {
            let mut st = node.lock();
            let addr = "127.0.0.1:2".parse().unwrap();
            st.remotes.insert(addr, Remote::new(Bitfield::new(4)));
            let mut one = Bitfield::new(4);
            one.set_bit(1, true);
            st.set_remote_have(addr, one, Bitfield::new(4));
        }
        let piece = |i| node.manifest.index(i).unwrap();
        // Two uploads wait for their turn, ranked 1 and 1.
        node.gate.lock().unwrap().waiting = vec![(1, 0), (1, 1)];
        assert_eq!(
            node.start_upload(piece(1)),
            Err(PeerResponse::Full { index: 1 })
        );
        // Piece 2 (rank 0) would go before both: taken.
        assert_eq!(node.start_upload(piece(2)), Ok(()));
        // One waiting: there is room.
        node.gate.lock().unwrap().waiting = vec![(0, 2)];
        assert_eq!(node.start_upload(piece(3)), Ok(()));
        drop(node);
    }
}
