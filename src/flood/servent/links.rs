//! Neighbour links: each has one writer thread fed by a bounded channel
//! (floods from many readers never interleave on a socket), and a reader:
//! the link's own thread for links this servent opened, the server core's
//! connection thread for links it accepted.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

use super::{Query, Servent, bump, lock, next_request};
use crate::error::Result;
use crate::flood::wire::{self, Message};
use crate::net::{self, SharedStream};
use crate::server::Session;

/// Floods queued for one neighbour before new ones are dropped for it.
const LINK_QUEUE: usize = 1024;

/// Names one neighbour link in the link table.
pub(super) type LinkId = u64;

/// The sending side of one neighbour link.
pub(super) struct LinkTx {
    pub(super) peer: SocketAddr,
    /// Whether this servent opened the link (it was listed as a neighbour).
    pub(super) outgoing: bool,
    /// Our end's IPv4 address on this link, unless it is loopback: an
    /// address of this host the neighbour (and its network) can reach.
    pub(super) local: Option<Ipv4Addr>,
    /// The neighbour's own (listening) address, as the last hop of a
    /// topology path it sent on this link: known at once for an outgoing
    /// link, after a topology query for an incoming one. The overlay view
    /// follows links by it.
    pub(super) heard_as: Option<SocketAddr>,
    pub(super) tx: SyncSender<Arc<[u8]>>,
}

impl Links {
    /// An address of this host its neighbours reach it at, if any link
    /// leaves it on one (the oldest such link's).
    pub(super) fn reachable_ipv4(&self) -> Option<Ipv4Addr> {
        let mut ids: Vec<&LinkId> = self.map.keys().collect();
        ids.sort();
        ids.into_iter().find_map(|id| self.map.get(id)?.local)
    }
}

/// Every neighbour link's sending side, by id.
#[derive(Default)]
pub(super) struct Links {
    next: LinkId,
    pub(super) map: HashMap<LinkId, LinkTx>,
}

/// Waits, with no deadline, for the next message on a link this servent
/// opened, then reads the whole of it under the I/O timeout (a peer that
/// stops half way through a message is cut off; an idle link is not). A
/// read timeout before the first byte has consumed nothing and is simply
/// waited out again.
fn next_message(r: &mut BufReader<SharedStream>) -> Result<Option<Message>> {
    loop {
        match r.fill_buf() {
            Ok([]) => return Ok(None),
            Ok(_) => return wire::read_message(r),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `ip:port` of this servent as seen through `stream`: the socket's local
/// IP and the listening port.
pub(super) fn own_address(stream: &TcpStream, port: u16) -> io::Result<String> {
    let ip = stream.local_addr()?.ip();
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    Ok(net::host_port(&ip.to_string(), port))
}

impl Servent {
    /// Every link: the neighbour, whether we opened it, our end's address,
    /// the neighbour's own address if known.
    pub(super) fn link_list(
        &self,
    ) -> Vec<(SocketAddr, bool, Option<Ipv4Addr>, Option<SocketAddr>)> {
        let links = lock(&self.links);
        let mut ids: Vec<&LinkId> = links.map.keys().collect();
        ids.sort();
        ids.into_iter()
            .filter_map(|id| links.map.get(id))
            .map(|l| (l.peer, l.outgoing, l.local, l.heard_as))
            .collect()
    }

    /// Registers a neighbour link for flooding and starts its writer.
    pub(super) fn open_link(
        self: &Arc<Self>,
        stream: &TcpStream,
        peer: SocketAddr,
        outgoing: bool,
    ) -> Result<LinkId> {
        let writer = stream.try_clone()?;
        let local = match stream.local_addr()?.ip().to_canonical() {
            IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => Some(ip),
            _ => None,
        };
        let (tx, rx) = sync_channel(LINK_QUEUE);
        let id = {
            let mut links = lock(&self.links);
            links.next += 1;
            let id = links.next;
            links.map.insert(
                id,
                LinkTx {
                    peer,
                    outgoing,
                    local,
                    heard_as: outgoing.then_some(peer),
                    tx,
                },
            );
            id
        };
        let s = self.clone();
        let spawned = thread::Builder::new()
            .name(format!("send {peer}"))
            .spawn(move || s.write_link(writer, rx, peer));
        if let Err(e) = spawned {
            lock(&self.links).map.remove(&id);
            return Err(e.into());
        }
        Ok(id)
    }

    /// The writer of one link: sends what the channel brings, batching what
    /// is already queued into one flush, until the link is removed.
    pub(super) fn write_link(&self, stream: TcpStream, rx: Receiver<Arc<[u8]>>, peer: SocketAddr) {
        let mut w = BufWriter::new(&stream);
        while let Ok(first) = rx.recv() {
            let mut n = 1;
            let mut res = w.write_all(&first);
            while res.is_ok() {
                match rx.try_recv() {
                    Ok(more) => {
                        n += 1;
                        res = w.write_all(&more);
                    }
                    Err(_) => break,
                }
            }
            if let Err(e) = res.and_then(|()| w.flush()) {
                crate::diag!(
                    "link {peer}: sending failed: {}; closing it",
                    crate::error::describe_io(&e)
                );
                // The reader notices, logs and unregisters the link.
                net::close(&stream);
                return;
            }
            bump(&self.stats.sent, n);
        }
    }

    /// Reads floods from a neighbour that connected to us until it leaves,
    /// misbehaves or is dropped for a newcomer.
    pub(super) fn link_in(self: &Arc<Self>, session: &Session, r: &mut BufReader<SharedStream>) {
        let peer = session.peer();
        session.join_class(self.links_in);
        let id = match self.open_link(session.stream(), peer, false) {
            Ok(id) => id,
            Err(e) => {
                crate::diag!("link {peer}: cannot start it: {e}");
                return;
            }
        };
        crate::event!("link in {peer}");
        let me = own_address(session.stream(), self.port);
        loop {
            match next_request(session, r) {
                Ok(Some(msg)) => self.on_link_message(msg, id, peer, &me),
                Ok(None) => break,
                Err(e) => {
                    if !session.is_closed() {
                        crate::diag!("link {peer}: {e}; closing it");
                    }
                    break;
                }
            }
        }
        lock(&self.links).map.remove(&id);
        crate::event!("link closed {peer}");
    }

    /// Reads floods from a link this servent opened until it closes.
    pub(super) fn outgoing_link(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr, id: LinkId) {
        let me = own_address(&stream, self.port);
        let mut r = BufReader::new(SharedStream::new(Arc::new(stream)));
        loop {
            match next_message(&mut r) {
                Ok(Some(msg)) => self.on_link_message(msg, id, peer, &me),
                Ok(None) => break,
                Err(e) => {
                    crate::diag!("link {peer}: {e}; closing it");
                    break;
                }
            }
        }
        lock(&self.links).map.remove(&id);
        net::close(r.get_ref().tcp());
        crate::event!("link closed {peer}");
    }

    /// One message from a neighbour.
    pub(super) fn on_link_message(
        self: &Arc<Self>,
        msg: Message,
        id: LinkId,
        peer: SocketAddr,
        me: &io::Result<String>,
    ) {
        match msg {
            Message::KeyFlood(f) => self.on_flood(Query::Key, f, id, peer, me),
            Message::TopoFlood(f) => self.on_flood(Query::Topo, f, id, peer, me),
            other => crate::diag!(
                "link {peer}: unexpected {} from a servent, ignored",
                other.name()
            ),
        }
    }
}
