//! Rarest-first piece choice: among the pieces a caller may ask for, the one
//! with the fewest known holders, ties broken uniformly at random.

use crate::rng::Rng;

/// Holder counts per piece, kept up to date as peers' bitfields change.
#[derive(Debug, Clone, Default)]
pub(super) struct Availability(Vec<u16>);

impl Availability {
    /// `n` pieces, no holders.
    pub(super) fn new(n: usize) -> Availability {
        Availability(vec![0; n])
    }

    /// Holders of piece `i` (0 past the end).
    pub(super) fn holders(&self, i: usize) -> u16 {
        self.0.get(i).copied().unwrap_or(0)
    }

    /// Counts a holder of piece `i` in or out.
    pub(super) fn adjust(&mut self, i: usize, holds: bool) {
        if let Some(c) = self.0.get_mut(i) {
            *c = if holds {
                c.saturating_add(1)
            } else {
                c.saturating_sub(1)
            };
        }
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

/// The rarest piece `i` of `0..n` for which `eligible(i)` holds, rarity
/// given by `count(i)` (lower is rarer, e.g. holders plus peers already
/// fetching the piece), with a uniformly random choice among equally rare
/// ones; `None` if nothing is eligible.
pub(super) fn rarest_by(
    n: usize,
    count: impl Fn(usize) -> u32,
    eligible: impl Fn(usize) -> bool,
    rng: &mut Rng,
) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut best_count = u32::MAX;
    let mut ties = 0usize;
    for i in 0..n {
        if !eligible(i) {
            continue;
        }
        let count = count(i);
        if best.is_none() || count < best_count {
            best = Some(i);
            best_count = count;
            ties = 1;
        } else if count == best_count {
            // Reservoir sampling: the k-th tie replaces the choice with
            // probability 1/k, so every tie is equally likely.
            ties += 1;
            if rng.below(ties) == 0 {
                best = Some(i);
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Availability {
        fn from_counts(counts: Vec<u16>) -> Availability {
            Availability(counts)
        }
    }

    /// The rarest piece `i` for which `eligible(i)` holds, with a uniformly
    /// random choice among equally rare ones; `None` if nothing is eligible.
    fn rarest(
        avail: &Availability,
        eligible: impl Fn(usize) -> bool,
        rng: &mut Rng,
    ) -> Option<usize> {
        rarest_by(avail.len(), |i| u32::from(avail.holders(i)), eligible, rng)
    }

    #[test]
    fn picks_the_rarest_piece() {
        let avail = Availability::from_counts(vec![3, 2, 5, 1, 4]);
        let mut rng = Rng::seeded(1);
        for _ in 0..50 {
            assert_eq!(rarest(&avail, |_| true, &mut rng), Some(3));
        }
        // Piece 3 already held or requested: the next rarest is 1.
        assert_eq!(rarest(&avail, |i| i != 3, &mut rng), Some(1));
        assert_eq!(rarest(&avail, |i| i == 2 || i == 4, &mut rng), Some(4));
        assert_eq!(rarest(&avail, |_| false, &mut rng), None);
        assert_eq!(rarest(&Availability::new(0), |_| true, &mut rng), None);
    }

    #[test]
    fn breaks_ties_at_random_and_fairly() {
        let avail = Availability::from_counts(vec![2, 1, 3, 1, 1, 2, 1]);
        let rarest_set = [1usize, 3, 4, 6];
        let mut seen = [0u32; 7];
        let mut rng = Rng::seeded(7);
        let rounds = 4000;
        for _ in 0..rounds {
            let i = rarest(&avail, |_| true, &mut rng).unwrap();
            seen[i] += 1;
        }
        for (i, &n) in seen.iter().enumerate() {
            if rarest_set.contains(&i) {
                // Each of the 4 ties expects 1000; allow a wide margin.
                assert!((800..1200).contains(&n), "piece {i} chosen {n} times");
            } else {
                assert_eq!(n, 0, "piece {i} is not among the rarest");
            }
        }
    }

    #[test]
    fn rarest_by_ranks_with_the_given_counts() {
        // Holders 1,1,2 but piece 0 is being fetched by two peers already.
        let holders = [1u32, 1, 2];
        let fetching = [2u32, 0, 0];
        let mut rng = Rng::seeded(3);
        for _ in 0..20 {
            let i = rarest_by(3, |i| holders[i] + fetching[i], |_| true, &mut rng);
            assert_eq!(i, Some(1));
        }
    }

    #[test]
    fn availability_adjusts_and_saturates() {
        let mut a = Availability::new(2);
        a.adjust(0, true);
        a.adjust(0, true);
        a.adjust(1, false);
        a.adjust(5, true);
        assert_eq!((a.holders(0), a.holders(1), a.holders(5)), (2, 0, 0));
    }
}
