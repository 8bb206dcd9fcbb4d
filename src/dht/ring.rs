//! The consistent-hash ring: a name's key is the first 64 bits of its
//! SHA-256, each supernode owns `VNODES` points on the ring, and a key
//! belongs to the member owning the first point at or after it (wrapping).

use std::collections::{BTreeMap, BTreeSet};

use crate::digest::Digest;

/// Points each member places on the ring. Enough that, with 10 members and
/// 10,000 names, the busiest member holds well under 1.25x the mean.
const VNODES: u32 = 256;

/// A position on the ring.
type Point = u64;

/// The first 64 bits (big-endian) of the SHA-256 of `bytes`.
fn point_of(bytes: &[u8]) -> Point {
    let d = Digest::of(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&d.0[..8]);
    u64::from_be_bytes(first)
}

/// The ring position of a file name.
fn key_of(name: &str) -> Point {
    point_of(name.as_bytes())
}

/// Where `p` sits on the ring as a fraction of the circle, from 0 up to 1.
fn fraction(p: Point) -> f64 {
    p as f64 / 18_446_744_073_709_551_616.0
}

/// Where a name's key sits on the ring, as a fraction of the circle.
pub fn position(name: &str) -> f64 {
    fraction(key_of(name))
}

/// A name's key, as 16 hex digits.
pub fn key_hex(name: &str) -> String {
    format!("{:016x}", key_of(name))
}

/// Members (identified by their `HOST:PORT`) and their virtual nodes.
#[derive(Debug, Default, Clone)]
pub struct Ring {
    points: BTreeMap<Point, String>,
    members: BTreeSet<String>,
}

impl Ring {
    pub fn new() -> Ring {
        Ring::default()
    }

    /// Virtual-node points of `member`: SHA-256 of `member#i`.
    fn member_points(member: &str) -> impl Iterator<Item = Point> + '_ {
        (0..VNODES).map(move |i| point_of(format!("{member}#{i}").as_bytes()))
    }

    /// Adds a member; false if it was already there.
    pub fn add(&mut self, member: &str) -> bool {
        if !self.members.insert(member.to_string()) {
            return false;
        }
        for p in Ring::member_points(member) {
            // On the (astronomically unlikely) collision of two points, the
            // smaller address keeps it, so the outcome does not depend on
            // the order in which members joined.
            match self.points.get(&p) {
                Some(owner) if owner.as_str() <= member => {}
                _ => {
                    self.points.insert(p, member.to_string());
                }
            }
        }
        true
    }

    /// Removes a member; false if it was not there.
    pub fn remove(&mut self, member: &str) -> bool {
        if !self.members.remove(member) {
            return false;
        }
        self.points.retain(|_, m| m != member);
        // Re-place the points of others that this member had won.
        let others: Vec<String> = self.members.iter().cloned().collect();
        for other in others {
            for p in Ring::member_points(&other) {
                match self.points.get(&p) {
                    Some(owner) if owner.as_str() <= other.as_str() => {}
                    _ => {
                        self.points.insert(p, other.clone());
                    }
                }
            }
        }
        true
    }

    /// Each member with the positions of the virtual nodes it holds, as
    /// fractions of the circle, in ring order.
    pub fn layout(&self) -> Vec<(String, Vec<f64>)> {
        let mut by_member: BTreeMap<&str, Vec<f64>> = self
            .members
            .iter()
            .map(|m| (m.as_str(), Vec::new()))
            .collect();
        for (p, m) in &self.points {
            if let Some(v) = by_member.get_mut(m.as_str()) {
                v.push(fraction(*p));
            }
        }
        by_member
            .into_iter()
            .map(|(m, v)| (m.to_string(), v))
            .collect()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when nobody is in the ring.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The member responsible for `name`, `None` when the ring is empty.
    pub fn owner(&self, name: &str) -> Option<&str> {
        let key = key_of(name);
        self.points
            .range(key..)
            .next()
            .or_else(|| self.points.iter().next())
            .map(|(_, m)| m.as_str())
    }
}

#[cfg(test)]
impl Ring {
    /// Whether `member` is in the ring.
    fn contains(&self, member: &str) -> bool {
        self.members.contains(member)
    }

    /// The members, sorted.
    fn members(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("file-{i:05}.dat")).collect()
    }

    fn ring_of(n: usize) -> Ring {
        let mut r = Ring::new();
        for i in 0..n {
            assert!(r.add(&format!("127.0.0.1:{}", 4000 + i)));
        }
        r
    }

    fn max_over_mean(ring: &Ring, names: &[String]) -> f64 {
        let mut load: HashMap<&str, usize> = HashMap::new();
        for n in names {
            *load.entry(ring.owner(n).unwrap()).or_default() += 1;
        }
        assert_eq!(load.len(), ring.len(), "a member got no names");
        let max = *load.values().max().unwrap() as f64;
        max / (names.len() as f64 / ring.len() as f64)
    }

    #[test]
    fn load_is_balanced_with_3_and_10_members() {
        let names = names(10_000);
        for n in [3, 10] {
            let ratio = max_over_mean(&ring_of(n), &names);
            assert!(ratio <= 1.25, "{n} members: max/mean = {ratio:.3}");
        }
    }

    #[test]
    fn adding_a_member_moves_only_names_it_now_owns() {
        let names = names(10_000);
        for n in [1, 3, 10] {
            let before = ring_of(n);
            let mut after = before.clone();
            let newcomer = "10.0.0.9:7000";
            assert!(after.add(newcomer));
            let mut moved = 0;
            for name in &names {
                let (a, b) = (before.owner(name).unwrap(), after.owner(name).unwrap());
                if a != b {
                    assert_eq!(b, newcomer, "{name} moved from {a} to {b}");
                    moved += 1;
                }
            }
            assert!(moved > 0, "the newcomer got nothing");
        }
    }

    #[test]
    fn removing_a_member_restores_the_previous_ring() {
        let names = names(2_000);
        let before = ring_of(5);
        let mut r = before.clone();
        r.add("10.0.0.9:7000");
        assert!(r.remove("10.0.0.9:7000"));
        assert!(!r.remove("10.0.0.9:7000"));
        for n in &names {
            assert_eq!(before.owner(n), r.owner(n));
        }
    }

    #[test]
    fn empty_ring_and_duplicates() {
        let mut r = Ring::new();
        assert_eq!(r.owner("x"), None);
        assert!(r.is_empty());
        assert!(r.add("a:1"));
        assert!(!r.add("a:1"));
        assert_eq!(r.owner("x"), Some("a:1"));
        assert!(r.contains("a:1"));
        assert_eq!(r.members().collect::<Vec<_>>(), ["a:1"]);
    }

    #[test]
    fn the_layout_gives_every_member_its_points_in_order() {
        let r = ring_of(3);
        let layout = r.layout();
        assert_eq!(layout.len(), 3);
        let total: usize = layout.iter().map(|(_, v)| v.len()).sum();
        assert_eq!(total, 3 * VNODES as usize);
        for (_, points) in &layout {
            assert!(points.windows(2).all(|w| w[0] <= w[1]));
            assert!(points.iter().all(|p| (0.0..1.0).contains(p)));
        }
        assert_eq!(key_hex("x").len(), 16);
        assert!((0.0..1.0).contains(&position("x")));
    }
}
