//! Gnutella-like key-value flooding, byte-compatible with the course protocol.
