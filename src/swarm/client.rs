//! The tracker client peers use: one short connection per request.

use crate::error::{Error, Result};
use crate::frame::Conn;
use crate::net::Timeouts;

use super::proto::{TRACKER, TrackerRequest, TrackerResponse};

/// The peer's side: one short connection per request.
#[derive(Debug, Clone)]
pub struct TrackerClient {
    addr: String,
    timeouts: Timeouts,
}

impl TrackerClient {
    pub fn new(addr: &str, timeouts: Timeouts) -> TrackerClient {
        TrackerClient {
            addr: addr.to_string(),
            timeouts,
        }
    }

    /// The tracker's address as given.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one request; an `Error` answer becomes `Error::Remote`.
    pub fn call(&self, req: &TrackerRequest) -> Result<TrackerResponse> {
        let mut conn = Conn::open(&self.addr, &self.timeouts, TRACKER)?;
        conn.send(req)?;
        match conn.expect::<TrackerResponse>()? {
            TrackerResponse::Error(why) => Err(Error::Remote(format!("tracker: {why}"))),
            other => Ok(other),
        }
    }
}
