//! Helpers shared by the CPU kernels' unit tests.

use ndarray::{Array4, ArrayView4, s};

/// Deterministic pseudo-random array (xorshift64); `value` maps each 64-bit state to an entry.
pub(crate) fn rand4(
    shape: (usize, usize, usize, usize),
    seed: u64,
    value: impl Fn(u64) -> f32,
) -> Array4<f32> {
    let mut st = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Array4::from_shape_simple_fn(shape, || {
        st ^= st << 13;
        st ^= st >> 7;
        st ^= st << 17;
        value(st)
    })
}

/// The values of `a` held in a non-standard layout: axes stored in reverse order inside a
/// larger buffer, every second entry of the last stored axis used (the rest NaN). Read it
/// back with [`view_of_strided`].
pub(crate) fn strided(a: &Array4<f32>) -> Array4<f32> {
    let (d0, d1, d2, d3) = a.dim();
    let mut big = Array4::<f32>::from_elem((d3, d2, d1, 2 * d0 + 1), f32::NAN);
    big.slice_mut(s![.., .., .., 1..;2])
        .assign(&a.view().reversed_axes());
    big
}

/// The logical view of a buffer made by [`strided`].
pub(crate) fn view_of_strided(big: &Array4<f32>) -> ArrayView4<'_, f32> {
    big.slice(s![.., .., .., 1..;2]).reversed_axes()
}
