//! The one integration-test binary: every system's tests spawn the real
//! programs on 127.0.0.1 port 0 through the shared harness.

mod harness;

mod conventions;

mod bittorrent;
mod dht;
mod dirops;
mod disk;
mod flood;
mod nap;
mod rdir;
mod shells;
mod swarm;
