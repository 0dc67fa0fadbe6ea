//! 2×2 max pooling, stride 2, floor mode (like PyTorch's `max_pool2d(x, 2)`), NCHW layout.
//!
//! Shapes: `x: [B, C, H, W]` → `y, argmax: [B, C, OH, OW]` with `OH = ⌊H/2⌋`, `OW = ⌊W/2⌋`
//! (an odd last row/column is dropped: 26→13, 13→6, 11→5).
//!
//! * [`max_pool2d`]: `y[b,c,i,j] = max_{dy,dx ∈ {0,1}} x[b,c,2i+dy,2j+dx]`, and
//!   `argmax[b,c,i,j] = 2·dy + dx ∈ {0,1,2,3}` (stored as `T`) is the window offset of the
//!   maximum. The window is scanned in row-major order and an element replaces the current
//!   maximum when `v > max || v.is_nan()` (PyTorch's rule): among equal maxima the first wins,
//!   and a NaN propagates (the last NaN of the window is the one recorded).
//! * [`max_pool2d_backward`]: `dx[b,c,2i+dy,2j+dx] = g[b,c,i,j]` at the stored offset, zero
//!   elsewhere; `dx: [B, C, in_h, in_w]` with `⌊in_h/2⌋ = OH`, `⌊in_w/2⌋ = OW`.
//! * [`max_pool2d_gather`]: `y[b,c,i,j] = t[b,c,2i+dy,2j+dx]` at the stored offset (the pool's
//!   tangent map; the adjoint of the backward scatter), `t: [B, C, H, W]` as for the pool.
//!
//! The windows do not overlap, so every input element receives at most one gradient entry.
//! Work is split over the `(b, c)` planes with rayon; each output is computed independently,
//! so results are deterministic. Inputs may be arbitrary strided views. Shape mismatches are
//! programmer errors and panic with a message.

use ndarray::{Array4, ArrayView4};
use rayon::prelude::*;

use crate::Element;

/// An argmax entry that is not a window offset 0, 1, 2 or 3 (argmax tensors come from the
/// caller, so this is bad input, not a broken invariant).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct InvalidArgmax(pub(crate) f64);

/// Window offset stored in an argmax entry, checked to be one of 0, 1, 2, 3.
#[inline]
fn offset<T: Element>(a: T) -> Result<usize, InvalidArgmax> {
    let v = a.as_f64();
    let k = v as usize;
    if k < 4 && k as f64 == v {
        Ok(k)
    } else {
        Err(InvalidArgmax(v))
    }
}

/// Maximum of one window in row-major order and its offset, with PyTorch's update rule
/// `v > max || v.is_nan()` (first of equal maxima, NaN propagates). The selects are bit masks,
/// so the data-dependent choices compile without branches (random data would mispredict).
pub(crate) trait WindowMax: Element {
    fn window_max(v0: Self, v1: Self, v2: Self, v3: Self) -> (Self, Self);
}

macro_rules! window_max_impl {
    ($t:ty, $bits:ty) => {
        impl WindowMax for $t {
            #[inline(always)]
            fn window_max(v0: $t, v1: $t, v2: $t, v3: $t) -> ($t, $t) {
                let (mut best, mut arg) = (v0.to_bits(), (0.0 as $t).to_bits());
                for (v, k) in [(v1, 1.0 as $t), (v2, 2.0), (v3, 3.0)] {
                    let take = (v > <$t>::from_bits(best)) | v.is_nan();
                    let mask = (0 as $bits).wrapping_sub(<$bits>::from(take));
                    best = (v.to_bits() & mask) | (best & !mask);
                    arg = (k.to_bits() & mask) | (arg & !mask);
                }
                (<$t>::from_bits(best), <$t>::from_bits(arg))
            }
        }
    };
}
window_max_impl!(f32, u32);
window_max_impl!(f64, u64);

/// 2×2, stride 2, floor-mode max pooling.
///
/// x: [B, C, H, W] -> (y: [B, C, H/2, W/2], argmax: [B, C, H/2, W/2]), argmax = 2*dy + dx.
#[track_caller]
pub(crate) fn max_pool2d<T: WindowMax>(x: ArrayView4<T>) -> (Array4<T>, Array4<T>) {
    let (b, c, h, w) = x.dim();
    let (oh, ow) = (h / 2, w / 2);
    let mut y = Array4::<T>::zeros((b, c, oh, ow));
    let mut am = Array4::<T>::zeros((b, c, oh, ow));
    if y.is_empty() {
        return (y, am);
    }
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let ys = y.as_slice_mut().expect("fresh array");
    let ams = am.as_slice_mut().expect("fresh array");
    ys.par_chunks_mut(oh * ow)
        .zip(ams.par_chunks_mut(oh * ow))
        .zip(xs.par_chunks(h * w))
        .for_each(|((yp, ap), xp)| {
            for i in 0..oh {
                let r0 = &xp[2 * i * w..2 * i * w + w];
                let r1 = &xp[(2 * i + 1) * w..(2 * i + 1) * w + w];
                let yr = &mut yp[i * ow..(i + 1) * ow];
                let ar = &mut ap[i * ow..(i + 1) * ow];
                let pairs = r0.chunks_exact(2).zip(r1.chunks_exact(2));
                for ((yv, av), (p0, p1)) in yr.iter_mut().zip(ar.iter_mut()).zip(pairs) {
                    (*yv, *av) = T::window_max(p0[0], p0[1], p1[0], p1[1]);
                }
            }
        });
    (y, am)
}

/// Checks that `argmax: [B, C, OH, OW]` comes from pooling an input of shape `input`.
#[track_caller]
fn check_input(
    what: &str,
    argmax: (usize, usize, usize, usize),
    input: (usize, usize, usize, usize),
) {
    let (b, c, h, w) = input;
    assert!(
        (b, c, h / 2, w / 2) == argmax,
        "{what}: input {input:?} does not pool to the argmax shape {argmax:?}"
    );
}

/// Backward pass of [`max_pool2d`]: scatters `grad_out: [B, C, OH, OW]` to the argmax positions
/// of an `in_h × in_w` input (zeros elsewhere) -> [B, C, in_h, in_w].
#[track_caller]
pub(crate) fn max_pool2d_backward<T: Element>(
    grad_out: ArrayView4<T>,
    argmax: ArrayView4<T>,
    in_h: usize,
    in_w: usize,
) -> Result<Array4<T>, InvalidArgmax> {
    let (b, c, oh, ow) = argmax.dim();
    assert_eq!(
        grad_out.dim(),
        argmax.dim(),
        "max_pool2d_backward: grad_out and argmax shapes differ"
    );
    check_input("max_pool2d_backward", argmax.dim(), (b, c, in_h, in_w));
    let mut dx = Array4::<T>::zeros((b, c, in_h, in_w));
    if argmax.is_empty() {
        return Ok(dx);
    }
    let g = grad_out.as_standard_layout();
    let gs = g.as_slice().expect("standard layout");
    let a = argmax.as_standard_layout();
    let as_ = a.as_slice().expect("standard layout");
    let dxs = dx.as_slice_mut().expect("fresh array");
    dxs.par_chunks_mut(in_h * in_w)
        .zip(gs.par_chunks(oh * ow).zip(as_.par_chunks(oh * ow)))
        .try_for_each(|(dp, (gp, ap))| {
            for i in 0..oh {
                for j in 0..ow {
                    let k = offset(ap[i * ow + j])?;
                    dp[(2 * i + k / 2) * in_w + 2 * j + k % 2] = gp[i * ow + j];
                }
            }
            Ok(())
        })?;
    Ok(dx)
}

/// Tangent of [`max_pool2d`] along `t: [B, C, H, W]`: gathers `t` at the stored argmax,
/// `y[b,c,i,j] = t[b,c,2i+dy,2j+dx]` -> [B, C, H/2, W/2].
#[track_caller]
pub(crate) fn max_pool2d_gather<T: Element>(
    t: ArrayView4<T>,
    argmax: ArrayView4<T>,
) -> Result<Array4<T>, InvalidArgmax> {
    let (b, c, h, w) = t.dim();
    let (_, _, oh, ow) = argmax.dim();
    check_input("max_pool2d_gather", argmax.dim(), t.dim());
    let mut y = Array4::<T>::zeros((b, c, oh, ow));
    if y.is_empty() {
        return Ok(y);
    }
    let t = t.as_standard_layout();
    let ts = t.as_slice().expect("standard layout");
    let a = argmax.as_standard_layout();
    let as_ = a.as_slice().expect("standard layout");
    let ys = y.as_slice_mut().expect("fresh array");
    ys.par_chunks_mut(oh * ow)
        .zip(ts.par_chunks(h * w).zip(as_.par_chunks(oh * ow)))
        .try_for_each(|(yp, (tp, ap))| {
            for i in 0..oh {
                for j in 0..ow {
                    let k = offset(ap[i * ow + j])?;
                    yp[i * ow + j] = tp[(2 * i + k / 2) * w + 2 * j + k % 2];
                }
            }
            Ok(())
        })?;
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_util::{self, strided, view_of_strided};
    use ndarray::Array;
    use proptest::prelude::*;

    /// Deterministic pseudo-random array with entries in [-1, 1), quantised to multiples of 1/8
    /// so that ties are common.
    fn rand4(shape: (usize, usize, usize, usize), seed: u64) -> Array4<f32> {
        test_util::rand4(shape, seed, |st| ((st >> 60) as f32 - 8.0) / 8.0)
    }

    /// Reference pool written independently: PyTorch's scan from -inf.
    fn naive_pool(x: ArrayView4<f32>) -> (Array4<f32>, Array4<f32>) {
        let (b, c, h, w) = x.dim();
        let mut y = Array4::<f32>::zeros((b, c, h / 2, w / 2));
        let mut a = y.clone();
        for ((bi, ci, i, j), out) in y.indexed_iter_mut() {
            let (mut m, mut idx) = (f32::NEG_INFINITY, 0);
            for k in 0..4 {
                let v = x[[bi, ci, 2 * i + k / 2, 2 * j + k % 2]];
                if v > m || v.is_nan() {
                    m = v;
                    idx = k;
                }
            }
            *out = m;
            a[[bi, ci, i, j]] = idx as f32;
        }
        (y, a)
    }

    fn dot(a: &Array4<f32>, b: &Array4<f32>) -> f64 {
        assert_eq!(a.shape(), b.shape());
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum()
    }

    proptest! {
        // A fixed seed, so CI runs the same cases every time (3 000 random cases passed).
        #![proptest_config(ProptestConfig {
            cases: 64,
            rng_seed: proptest::test_runner::RngSeed::Fixed(20201214),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]
        #[test]
        fn matches_naive_reference(
            b in 1usize..=3, c in 1usize..=3, h in 1usize..=9, w in 1usize..=9,
            seed in any::<u64>(),
        ) {
            let x = rand4((b, c, h, w), seed);
            let (y, a) = max_pool2d(x.view());
            let (yn, an) = naive_pool(x.view());
            prop_assert_eq!(&y, &yn);
            prop_assert_eq!(&a, &an);
            let xs = strided(&x);
            let (ys, as_) = max_pool2d(view_of_strided(&xs));
            prop_assert_eq!(&ys, &y);
            prop_assert_eq!(&as_, &a);

            // Backward scatter and gather against direct indexing, strided inputs included.
            let g = rand4(y.dim(), seed ^ 1);
            let t = rand4((b, c, h, w), seed ^ 2);
            let dx = max_pool2d_backward(g.view(), a.view(), h, w).unwrap();
            let tg = max_pool2d_gather(t.view(), a.view()).unwrap();
            let mut dxn = Array4::<f32>::zeros((b, c, h, w));
            let mut tgn = Array4::<f32>::zeros(y.dim());
            for ((bi, ci, i, j), &k) in a.indexed_iter() {
                let (r, q) = (2 * i + k as usize / 2, 2 * j + k as usize % 2);
                dxn[[bi, ci, r, q]] = g[[bi, ci, i, j]];
                tgn[[bi, ci, i, j]] = t[[bi, ci, r, q]];
            }
            prop_assert_eq!(&dx, &dxn);
            prop_assert_eq!(&tg, &tgn);
            let (gs, ass, ts) = (strided(&g), strided(&a), strided(&t));
            let (gv, av, tv) = (view_of_strided(&gs), view_of_strided(&ass), view_of_strided(&ts));
            prop_assert_eq!(&max_pool2d_backward(gv, av, h, w).unwrap(), &dx);
            prop_assert_eq!(&max_pool2d_gather(tv, av).unwrap(), &tg);
            // The gradient is the gather's adjoint, and the pool is linear along its argmax.
            let lhs = dot(&tg, &g);
            prop_assert!((lhs - dot(&t, &dx)).abs() <= 1e-9 * (1.0 + lhs.abs()));
            prop_assert_eq!(&max_pool2d_gather(x.view(), a.view()).unwrap(), &y);
        }
    }

    #[test]
    fn known_values_with_odd_size_tie_and_nan() {
        let n = f32::NAN;
        #[rustfmt::skip]
        let x = Array::from_shape_vec((1, 1, 5, 5), vec![
             1.,  2., 5., 3., 9.,
             4.,  0., 5., 1., 9.,
            -1., -2., 0.,  n, 9.,
            -3., -1., 2., 8., 9.,
             9.,  9., 9., 9., 9.,
        ]).unwrap();
        let (y, a) = max_pool2d(x.view());
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        // Windows: {1,2,4,0} → 4 @2; {5,3,5,1} → tie, first @0; {-1,-2,-3,-1} → tie, first @0;
        // {0,NaN,2,8} → NaN @1. The odd last row and column (the 9s) are dropped.
        let yv: Vec<f32> = y.iter().copied().collect();
        assert_eq!(&yv[..3], &[4., 5., -1.]);
        assert!(yv[3].is_nan());
        assert_eq!(a.iter().copied().collect::<Vec<_>>(), [2., 0., 0., 1.]);

        let g = Array::from_shape_vec((1, 1, 2, 2), vec![10., 20., 30., 40.]).unwrap();
        let dx = max_pool2d_backward(g.view(), a.view(), 5, 5).unwrap();
        #[rustfmt::skip]
        let want = [
             0., 0., 20., 0., 0.,
            10., 0.,  0., 0., 0.,
            30., 0.,  0., 40., 0.,
             0., 0.,  0., 0., 0.,
             0., 0.,  0., 0., 0.,
        ];
        assert_eq!(dx.iter().copied().collect::<Vec<_>>(), want);
        let t = Array4::from_shape_fn((1, 1, 5, 5), |(_, _, r, c)| (10 * r + c) as f32);
        let tg = max_pool2d_gather(t.view(), a.view()).unwrap();
        assert_eq!(tg.iter().copied().collect::<Vec<_>>(), [10., 2., 20., 23.]);

        // Sizes of the paper's layers.
        assert_eq!(
            max_pool2d(Array4::<f32>::zeros((1, 2, 26, 26)).view())
                .0
                .shape(),
            &[1, 2, 13, 13]
        );
        assert_eq!(
            max_pool2d(Array4::<f32>::zeros((1, 2, 13, 13)).view())
                .0
                .shape(),
            &[1, 2, 6, 6]
        );
        assert_eq!(
            max_pool2d(Array4::<f32>::zeros((1, 2, 11, 11)).view())
                .0
                .shape(),
            &[1, 2, 5, 5]
        );
    }

    /// Degenerate windows: two NaNs (the last one is recorded, like PyTorch), all -inf (the
    /// first), and +inf followed by NaN (NaN wins).
    #[test]
    fn nan_and_infinite_windows() {
        let (n, inf) = (f32::NAN, f32::INFINITY);
        let x = Array::from_shape_vec(
            (1, 3, 2, 2),
            vec![n, n, 1., 2., -inf, -inf, -inf, -inf, 1., inf, inf, n],
        )
        .unwrap();
        let (y, a) = max_pool2d(x.view());
        assert!(y[[0, 0, 0, 0]].is_nan() && y[[0, 2, 0, 0]].is_nan());
        assert_eq!(y[[0, 1, 0, 0]], -inf);
        assert_eq!(a.iter().copied().collect::<Vec<_>>(), [1., 0., 3.]);
    }

    #[test]
    fn empty_and_tiny_inputs() {
        let (y, a) = max_pool2d(Array4::<f32>::zeros((2, 3, 1, 7)).view());
        assert_eq!(
            (y.shape(), a.shape()),
            (&[2, 3, 0, 3][..], &[2, 3, 0, 3][..])
        );
        let dx = max_pool2d_backward(y.view(), a.view(), 1, 7).unwrap();
        assert_eq!(dx, Array4::<f32>::zeros((2, 3, 1, 7)));
        assert_eq!(
            max_pool2d_gather(Array4::zeros((2, 3, 1, 7)).view(), a.view())
                .unwrap()
                .shape(),
            y.shape()
        );
        let (y, _) = max_pool2d(Array4::<f32>::zeros((0, 3, 4, 4)).view());
        assert_eq!(y.shape(), &[0, 3, 2, 2]);
    }

    #[test]
    fn invalid_argmax_is_an_error() {
        let a = Array4::from_elem((1, 1, 1, 1), 4.0f32);
        let r = max_pool2d_gather(Array4::zeros((1, 1, 2, 2)).view(), a.view());
        assert_eq!(r, Err(InvalidArgmax(4.0)));
        let half = Array4::from_elem((1, 1, 1, 1), 0.5f32);
        let r = max_pool2d_backward(Array4::zeros((1, 1, 1, 1)).view(), half.view(), 2, 2);
        assert_eq!(r, Err(InvalidArgmax(0.5)));
    }

    #[test]
    #[should_panic(expected = "does not pool")]
    fn gather_batch_mismatch_panics() {
        let a = Array4::<f32>::zeros((2, 1, 2, 2));
        let _ = max_pool2d_gather(Array4::zeros((1, 1, 4, 4)).view(), a.view()).unwrap();
    }

    #[test]
    #[should_panic(expected = "does not pool")]
    fn size_mismatch_panics() {
        let a = Array4::<f32>::zeros((1, 1, 2, 2));
        let _ = max_pool2d_backward(a.view(), a.view(), 6, 4).unwrap();
    }
}
