//! Integration tests of the dht system.
