//! Integration tests of the swarm system.
