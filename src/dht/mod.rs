//! The supernode DHT: index ring, supernodes, synchronizer and clients.
