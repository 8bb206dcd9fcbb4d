//! The supernode DHT: the index's consistent-hash ring, supernodes with
//! their synchronizer, and the `ls` / `get` / `put` clients.
//!
//! - [`proto`]: the index and supernode protocols (requests, responses).
//! - [`ring`]: the consistent-hash ring with virtual nodes.

pub mod proto;
pub mod ring;
