//! Seeded shuffling and mini-batching.
//!
//! The generator is SplitMix64 (Steele, Lea & Flood 2014) and the shuffle is Fisher–Yates
//! with unbiased bounded sampling (Lemire 2019), all written here with no dependency, so the
//! order produced for a given seed is fixed: the same on every platform and in every
//! version of this crate (a test pins it).

use super::error::DataError;

/// The SplitMix64 pseudo-random generator: tiny, fast, and good enough for shuffling.
/// Not cryptographic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..bound`, without modulo bias; `0` when `bound == 0`.
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        // Lemire's multiply-and-reject method.
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(bound);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// A uniform `f64` in `[0, 1)` (53 random bits).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Shuffles `items` in place with Fisher–Yates driven by `rng`.
pub fn shuffle<T>(items: &mut [T], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        // `below(i + 1) <= i`, so the conversion and the swap are in range.
        let j = usize::try_from(rng.below(i as u64 + 1)).unwrap_or(i);
        items.swap(i, j);
    }
}

/// `0..n` in the order given by `seed` (identity order when `seed` is `None`).
pub fn permutation(n: usize, seed: Option<u64>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if let Some(seed) = seed {
        shuffle(&mut order, &mut SplitMix64::new(seed));
    }
    order
}

/// Splits `0..n` into mini-batches of `batch_size` indices, shuffled first when
/// `shuffle_seed` is given. Every index appears exactly once; the last batch holds the
/// remainder and is kept even when smaller than `batch_size`. The same seed always gives
/// the same batches; for a new order each epoch, derive the seed from the epoch (e.g.
/// `base_seed + epoch`).
///
/// # Errors
/// [`DataError::ZeroBatchSize`] if `batch_size == 0`.
///
/// ```
/// let b = specreg_data::batch_indices(5, 2, None).unwrap();
/// assert_eq!(b, vec![vec![0, 1], vec![2, 3], vec![4]]);
/// ```
pub fn batch_indices(
    n: usize,
    batch_size: usize,
    shuffle_seed: Option<u64>,
) -> Result<Vec<Vec<usize>>, DataError> {
    Ok(Batches::new(n, batch_size, shuffle_seed)?.collect())
}

/// Iterator form of [`batch_indices`]: yields the same batches, one `Vec<usize>` at a time.
#[derive(Debug, Clone)]
pub struct Batches {
    order: Vec<usize>,
    batch_size: usize,
    next: usize,
}

impl Batches {
    /// Batches of `0..n`; see [`batch_indices`].
    ///
    /// # Errors
    /// [`DataError::ZeroBatchSize`] if `batch_size == 0`.
    pub fn new(n: usize, batch_size: usize, shuffle_seed: Option<u64>) -> Result<Self, DataError> {
        if batch_size == 0 {
            return Err(DataError::ZeroBatchSize);
        }
        Ok(Batches {
            order: permutation(n, shuffle_seed),
            batch_size,
            next: 0,
        })
    }
}

impl Iterator for Batches {
    type Item = Vec<usize>;

    fn next(&mut self) -> Option<Vec<usize>> {
        let rest = self.order.get(self.next..).filter(|r| !r.is_empty())?;
        let batch = &rest[..self.batch_size.min(rest.len())];
        self.next += batch.len();
        Some(batch.to_vec())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.order.len() - self.next).div_ceil(self.batch_size);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_values() {
        // Reference C implementation (Vigna, prng.di.unimi.it/splitmix64.c), seed 1234567.
        let mut g = SplitMix64::new(1234567);
        let got: Vec<u64> = (0..3).map(|_| g.next_u64()).collect();
        assert_eq!(
            got,
            [
                6457827717110365317,
                3203168211198807973,
                9817491932198370423
            ]
        );
    }

    #[test]
    fn below_stays_in_range() {
        let mut g = SplitMix64::new(7);
        for bound in [1u64, 2, 3, 10, 1 << 63, u64::MAX] {
            for _ in 0..100 {
                assert!(g.below(bound) < bound);
            }
        }
        assert_eq!(g.below(0), 0);
        let x = g.next_f64();
        assert!((0.0..1.0).contains(&x));
    }

    #[test]
    fn exact_size() {
        let b = Batches::new(10, 3, Some(1)).unwrap();
        assert_eq!(b.len(), 4);
        assert_eq!(Batches::new(0, 3, None).unwrap().len(), 0);
    }
}
