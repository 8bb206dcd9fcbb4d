//! Integration tests of the flood system.
