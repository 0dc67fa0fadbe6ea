//! Tests of the CPU convolution kernels against naive loops, adjoint identities and
//! hand-computed values.

use super::*;
use crate::cpu::test_util::{self, strided, view_of_strided};
use ndarray::{Array, Dimension, s};
use proptest::prelude::*;

/// Deterministic pseudo-random array with entries in [-1, 1).
fn rand4(shape: (usize, usize, usize, usize), seed: u64) -> Array4<f32> {
    test_util::rand4(shape, seed, |st| {
        ((st >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    })
}

/// Flat `f64` copy in logical (row-major) order, for the references' index arithmetic
/// (fast enough in debug builds, unlike 4-D indexing).
fn flat(a: ArrayView4<f32>) -> Vec<f64> {
    a.iter().map(|&v| f64::from(v)).collect()
}

/// `y[b,o,i,j] = Σ_{c,p,q} w[o,c,p,q]·x[b,c,i+p,j+q]`, straight from the definition.
fn naive_conv(x: ArrayView4<f32>, w: ArrayView4<f32>) -> Array4<f64> {
    let (b, c, h, wd) = x.dim();
    let (o, _, kh, kw) = w.dim();
    let (oh, ow) = (h - kh + 1, wd - kw + 1);
    let (xf, wf) = (flat(x), flat(w));
    let mut y = Vec::with_capacity(b * o * oh * ow);
    for bi in 0..b {
        for oi in 0..o {
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = 0.0f64;
                    for ci in 0..c {
                        for p in 0..kh {
                            for q in 0..kw {
                                let wv = wf[((oi * c + ci) * kh + p) * kw + q];
                                acc += wv * xf[((bi * c + ci) * h + i + p) * wd + j + q];
                            }
                        }
                    }
                    y.push(acc);
                }
            }
        }
    }
    Array4::from_shape_vec((b, o, oh, ow), y).unwrap()
}

/// `dx[b,c,i+p,j+q] += w[o,c,p,q]·g[b,o,i,j]` over all `b, o, i, j, c, p, q`.
fn naive_backward_input(g: ArrayView4<f32>, w: ArrayView4<f32>) -> Array4<f64> {
    let (b, o, oh, ow) = g.dim();
    let (_, c, kh, kw) = w.dim();
    let (h, wd) = (oh + kh - 1, ow + kw - 1);
    let (gf, wf) = (flat(g), flat(w));
    let mut dx = vec![0.0f64; b * c * h * wd];
    for bi in 0..b {
        for oi in 0..o {
            for i in 0..oh {
                for j in 0..ow {
                    let gv = gf[((bi * o + oi) * oh + i) * ow + j];
                    for ci in 0..c {
                        for p in 0..kh {
                            for q in 0..kw {
                                let wv = wf[((oi * c + ci) * kh + p) * kw + q];
                                dx[((bi * c + ci) * h + i + p) * wd + j + q] += wv * gv;
                            }
                        }
                    }
                }
            }
        }
    }
    Array4::from_shape_vec((b, c, h, wd), dx).unwrap()
}

/// `dw[o,c,p,q] = Σ_{b,i,j} g[b,o,i,j]·x[b,c,i+p,j+q]`.
fn naive_backward_weight(
    x: ArrayView4<f32>,
    g: ArrayView4<f32>,
    kh: usize,
    kw: usize,
) -> Array4<f64> {
    let (b, c, h, wd) = x.dim();
    let (_, o, oh, ow) = g.dim();
    let (xf, gf) = (flat(x), flat(g));
    let mut dw = Vec::with_capacity(o * c * kh * kw);
    for oi in 0..o {
        for ci in 0..c {
            for p in 0..kh {
                for q in 0..kw {
                    let mut acc = 0.0f64;
                    for bi in 0..b {
                        for i in 0..oh {
                            for j in 0..ow {
                                let gv = gf[((bi * o + oi) * oh + i) * ow + j];
                                acc += gv * xf[((bi * c + ci) * h + i + p) * wd + j + q];
                            }
                        }
                    }
                    dw.push(acc);
                }
            }
        }
    }
    Array4::from_shape_vec((o, c, kh, kw), dw).unwrap()
}

/// Max-norm closeness with a tolerance relative to the reference's magnitude.
fn assert_close<D: Dimension>(got: &Array<f32, D>, want: &Array<f64, D>, rel: f64) {
    assert_eq!(got.shape(), want.shape());
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for ((idx, g), w) in got.indexed_iter().zip(want.iter()) {
        let err = (f64::from(*g) - w).abs();
        assert!(
            err <= rel * scale,
            "at {idx:?}: got {g}, want {w} (scale {scale})"
        );
    }
}

fn dot<D: Dimension>(a: &Array<f32, D>, b: &Array<f32, D>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

/// Checks all three kernels against the references, for `[B, C, O, H, W, KH, KW]`.
fn check_all([b, c, o, h, wd, kh, kw]: [usize; 7], seed: u64) {
    let x = rand4((b, c, h, wd), seed);
    let w = rand4((o, c, kh, kw), seed ^ 1);
    let g = rand4((b, o, h - kh + 1, wd - kw + 1), seed ^ 2);
    let y = conv2d(x.view(), w.view());
    assert_close(&y, &naive_conv(x.view(), w.view()), 1e-5);
    let dx = conv2d_backward_input(g.view(), w.view());
    assert_close(&dx, &naive_backward_input(g.view(), w.view()), 1e-5);
    let dw = conv2d_backward_weight(x.view(), g.view(), kh, kw);
    assert_close(
        &dw,
        &naive_backward_weight(x.view(), g.view(), kh, kw),
        1e-5,
    );
    // Non-standard layouts give the same bits as the standard ones.
    let (xs, ws, gs) = (strided(&x), strided(&w), strided(&g));
    let (xv, wv, gv) = (
        view_of_strided(&xs),
        view_of_strided(&ws),
        view_of_strided(&gs),
    );
    assert!(x.len() <= 1 || !xv.is_standard_layout());
    assert!(w.len() <= 1 || !wv.is_standard_layout());
    assert_eq!(xv, x.view());
    assert_eq!(conv2d(xv, wv), y);
    assert_eq!(conv2d_backward_input(gv, wv), dx);
    assert_eq!(conv2d_backward_weight(xv, gv, kh, kw), dw);
}

proptest! {
    // A fixed seed, so CI runs the same cases every time (3 000 random cases passed).
    #![proptest_config(ProptestConfig {
        cases: 64,
        rng_seed: proptest::test_runner::RngSeed::Fixed(20201215),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]
    #[test]
    fn matches_naive_reference(
        b in 1usize..=3, c in 1usize..=3, o in 1usize..=3,
        kh in 1usize..=3, kw in 1usize..=3, eh in 0usize..=5, ew in 0usize..=5,
        seed in any::<u64>(),
    ) {
        check_all([b, c, o, kh + eh, kw + ew, kh, kw], seed);
    }

    #[test]
    fn adjoint_identities(
        b in 1usize..=3, c in 1usize..=3, o in 1usize..=3,
        kh in 1usize..=3, kw in 1usize..=3, eh in 0usize..=5, ew in 0usize..=5,
        seed in any::<u64>(),
    ) {
        let (h, wd) = (kh + eh, kw + ew);
        let x = rand4((b, c, h, wd), seed);
        let w = rand4((o, c, kh, kw), seed ^ 0x55);
        let g = rand4((b, o, eh + 1, ew + 1), seed ^ 0xAA);
        let lhs = dot(&conv2d(x.view(), w.view()), &g);
        let via_x = dot(&x, &conv2d_backward_input(g.view(), w.view()));
        let via_w = dot(&w, &conv2d_backward_weight(x.view(), g.view(), kh, kw));
        let tol = 1e-5 * (1.0 + lhs.abs() + (b * c * o * h * wd * kh * kw) as f64 / 100.0);
        prop_assert!((lhs - via_x).abs() <= tol, "{lhs} vs {via_x}");
        prop_assert!((lhs - via_w).abs() <= tol, "{lhs} vs {via_w}");
    }
}

/// Several chunks, partial last chunks, and the paper's layer shapes (scaled down).
#[test]
fn multi_chunk_batches_match_naive_reference() {
    check_all([70, 2, 3, 9, 8, 3, 3], 7);
    check_all([20, 16, 32, 13, 13, 3, 3], 8);
    check_all([33, 1, 16, 28, 28, 3, 3], 9);
}

#[test]
fn known_values() {
    let x = Array4::from_shape_fn((1, 1, 4, 4), |(_, _, r, c)| (4 * r + c) as f32);
    let mut w = Array4::<f32>::zeros((2, 1, 3, 3));
    w.slice_mut(s![0, 0, .., ..]).fill(1.0);
    // Second kernel: y[i,j] = x[i,j+1] + 2 x[i+2,j] = 12 i + 3 j + 17.
    w[[1, 0, 0, 1]] = 1.0;
    w[[1, 0, 2, 0]] = 2.0;
    let y = conv2d(x.view(), w.view());
    assert_eq!(y.shape(), &[1, 2, 2, 2]);
    assert_eq!(
        y.iter().copied().collect::<Vec<_>>(),
        [45., 54., 81., 90., 17., 20., 29., 32.]
    );

    let ones = Array4::<f32>::ones((1, 1, 2, 2));
    let w1 = w.slice(s![0..1, .., .., ..]);
    let dx = conv2d_backward_input(ones.view(), w1);
    let want = [
        1., 2., 2., 1., 2., 4., 4., 2., 2., 4., 4., 2., 1., 2., 2., 1.,
    ];
    assert_eq!(dx.shape(), &[1, 1, 4, 4]);
    assert_eq!(dx.iter().copied().collect::<Vec<_>>(), want);
    // Second kernel scatters g[i,j] to (i, j+1) with weight 1 and (i+2, j) with weight 2.
    let dx2 = conv2d_backward_input(ones.view(), w.slice(s![1..2, .., .., ..]));
    let want2 = [
        0., 1., 1., 0., 0., 1., 1., 0., 2., 2., 0., 0., 2., 2., 0., 0.,
    ];
    assert_eq!(dx2.iter().copied().collect::<Vec<_>>(), want2);

    // dw[p,q] = Σ_{i,j<2} x[i+p, j+q] = 16 p + 4 q + 10.
    let dw = conv2d_backward_weight(x.view(), ones.view(), 3, 3);
    assert_eq!(dw.shape(), &[1, 1, 3, 3]);
    let want: Vec<f32> = (0..9)
        .map(|k| (16 * (k / 3) + 4 * (k % 3) + 10) as f32)
        .collect();
    assert_eq!(dw.iter().copied().collect::<Vec<_>>(), want);
}

/// Same NaN / infinity pattern as the reference, finite entries close. Summation order
/// does not change which sums are NaN or ±inf (no overflow at these magnitudes).
fn assert_same_non_finite(got: &Array4<f32>, want: &Array4<f64>) {
    assert_eq!(got.shape(), want.shape());
    for ((idx, g), w) in got.indexed_iter().zip(want.iter()) {
        let (g, w) = (f64::from(*g), *w);
        let same = if w.is_finite() {
            (g - w).abs() <= 1e-4 * (1.0 + w.abs())
        } else {
            (g.is_nan() && w.is_nan()) || g == w
        };
        assert!(same, "at {idx:?}: got {g}, want {w}");
    }
}

/// The padding columns of the row-padded layout must not leak `0 · inf = NaN` into
/// entries whose true value is finite.
#[test]
fn non_finite_values_propagate_like_the_reference() {
    let (b, c, o, h, wd) = (2, 2, 3, 6, 7);
    let mut x = rand4((b, c, h, wd), 21);
    x[[0, 1, 2, wd - 1]] = f32::INFINITY; // last column: inside the gaps of shift q = 0
    x[[1, 0, 4, 0]] = f32::NEG_INFINITY; // first column: gaps of shift q = KW-1
    x[[1, 1, 3, 5]] = f32::NAN;
    let mut w = rand4((o, c, 3, 3), 22);
    w[[1, 0, 0, 0]] = f32::INFINITY;
    w[[2, 1, 2, 2]] = f32::NAN;
    let g = rand4((b, o, h - 2, wd - 2), 23);
    let wf = rand4((o, c, 3, 3), 24);
    let y = conv2d(x.view(), wf.view());
    assert_same_non_finite(&y, &naive_conv(x.view(), wf.view()));
    let dx = conv2d_backward_input(g.view(), w.view());
    assert_same_non_finite(&dx, &naive_backward_input(g.view(), w.view()));
    let dw = conv2d_backward_weight(x.view(), g.view(), 3, 3);
    assert_same_non_finite(&dw, &naive_backward_weight(x.view(), g.view(), 3, 3));
    assert!(dw.iter().any(|v| v.is_finite()) && dx.iter().any(|v| v.is_finite()));
}

#[test]
fn empty_extents() {
    let x = Array4::<f32>::zeros((0, 2, 5, 5));
    let w = rand4((3, 2, 3, 3), 1);
    assert_eq!(conv2d(x.view(), w.view()).shape(), &[0, 3, 3, 3]);
    let g = Array4::<f32>::zeros((0, 3, 3, 3));
    assert_eq!(
        conv2d_backward_input(g.view(), w.view()).shape(),
        &[0, 2, 5, 5]
    );
    let dw = conv2d_backward_weight(x.view(), g.view(), 3, 3);
    assert_eq!(dw, Array4::<f32>::zeros((3, 2, 3, 3)));
    let x0 = Array4::<f32>::zeros((2, 0, 5, 5));
    let w0 = Array4::<f32>::zeros((3, 0, 3, 3));
    assert_eq!(
        conv2d(x0.view(), w0.view()),
        Array4::<f32>::zeros((2, 3, 3, 3))
    );
}

#[test]
#[should_panic(expected = "channels")]
fn channel_mismatch_panics() {
    let _ = conv2d(rand4((1, 2, 5, 5), 1).view(), rand4((1, 3, 3, 3), 2).view());
}

#[test]
fn weight_gradient_is_deterministic_across_thread_counts() {
    let x = rand4((200, 4, 9, 9), 11);
    let g = rand4((200, 5, 7, 7), 12);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| conv2d_backward_weight(x.view(), g.view(), 3, 3))
    };
    let bits = |a: &Array4<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let reference = bits(&run(1));
    assert_eq!(
        bits(&conv2d_backward_weight(x.view(), g.view(), 3, 3)),
        reference
    );
    for threads in [2, 3, 1, 2] {
        assert_eq!(bits(&run(threads)), reference, "{threads} threads");
    }
    let w = rand4((5, 4, 3, 3), 13);
    let run_all = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            (
                conv2d(x.view(), w.view()),
                conv2d_backward_input(g.view(), w.view()),
            )
        })
    };
    let (y1, dx1) = run_all(1);
    let (y2, dx2) = run_all(2);
    assert_eq!(bits(&y1), bits(&y2));
    assert_eq!(bits(&dx1), bits(&dx2));
}
