//! The BitTorrent-like swarm: manifest, tracker, peers and piece picking.
