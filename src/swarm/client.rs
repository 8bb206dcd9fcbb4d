//! The tracker client peers use: one short connection per request.

use std::net::IpAddr;

use crate::error::{Error, Result, Role};
use crate::frame::Conn;
use crate::net::Timeouts;

use super::proto::{TRACKER, TrackerRequest, TrackerResponse};

/// The peer's side: one short connection per request.
#[derive(Debug, Clone)]
pub(super) struct TrackerClient {
    addr: String,
    timeouts: Timeouts,
}

impl TrackerClient {
    pub(super) fn new(addr: &str, timeouts: Timeouts) -> TrackerClient {
        TrackerClient {
            addr: addr.to_string(),
            timeouts,
        }
    }

    /// The tracker's address as given.
    pub(super) fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one request; an `Error` answer becomes `Error::Remote`.
    pub(super) fn call(&self, req: &TrackerRequest) -> Result<TrackerResponse> {
        self.call_via(req).map(|(resp, _)| resp)
    }

    /// [`call`](Self::call), also giving the local IP the request left
    /// from: the address the tracker sees this peer at.
    pub(super) fn call_via(&self, req: &TrackerRequest) -> Result<(TrackerResponse, IpAddr)> {
        let mut conn = Conn::open(&self.addr, &self.timeouts, TRACKER)?;
        let via = conn.local_addr()?.ip();
        conn.send(req)?;
        match conn.expect::<TrackerResponse>()? {
            TrackerResponse::Error(why) => Err(Error::remote(Role::Tracker, why)),
            other => Ok((other, via)),
        }
    }
}
