//! Helpers for the regulariser tests: `f64` tensors and central differences.
#![allow(dead_code)]

use ndarray::Array2;
use specreg_tensor::{DType, Device, Rng, Tensor, linalg::symmetric_eigen};

/// A standard-normal `f64` tensor.
pub fn randn(shape: &[usize], rng: &mut Rng) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, DType::F64, rng, &Device::Cpu).unwrap()
}

/// A uniform `f64` tensor on `[lo, hi)`.
pub fn uniform(shape: &[usize], lo: f64, hi: f64, rng: &mut Rng) -> Tensor {
    Tensor::rand_uniform(shape, lo, hi, DType::F64, rng, &Device::Cpu).unwrap()
}

/// Row-major values of an `f64` tensor.
pub fn vals(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().to_vec::<f64>().unwrap()
}

/// An `f64` tensor from row-major values.
pub fn tensor(v: Vec<f64>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Central differences (step `h`) of `f` with respect to every element of `t`.
pub fn central_diff(t: &Tensor, h: f64, mut f: impl FnMut(&Tensor) -> f64) -> Vec<f64> {
    let base = vals(t);
    (0..base.len())
        .map(|i| {
            let mut p = base.clone();
            p[i] += h;
            let mut m = base.clone();
            m[i] -= h;
            (f(&tensor(p, t.shape())) - f(&tensor(m, t.shape()))) / (2.0 * h)
        })
        .collect()
}

/// Asserts `|got − want| ≤ rtol · max(floor, |want|)` elementwise, naming the first miss.
pub fn assert_close(what: &str, got: &[f64], want: &[f64], rtol: f64, floor: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.is_finite() && (g - w).abs() <= rtol * w.abs().max(floor),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

/// The unbiased covariance of `h` in f64 (naive).
pub fn covariance(h: &[f64], b: usize, n: usize) -> Array2<f64> {
    let x = Array2::from_shape_vec((b, n), h.to_vec()).unwrap();
    let mean = x.mean_axis(ndarray::Axis(0)).unwrap();
    let xc = &x - &mean;
    xc.t().dot(&xc) / (b as f64 - 1.0)
}

/// Eq. 2 written out naively with a given `κ`, over ranks `n > τ`: the anchor term at
/// `n = τ` is zero at `κ = λ_τ τ^α` but, with `κ` frozen, sits on the hinge's kink, where a
/// central difference would average the two one-sided slopes.
pub fn penalty_with_kappa(lambda: &[f64], kappa: f64, alpha: f64, tau: usize) -> f64 {
    let n = lambda.len();
    let mut r_sum = 0.0;
    for (i, l) in lambda.iter().enumerate().skip(tau) {
        let gamma = kappa * ((i + 1) as f64).powf(-alpha);
        let r = l / gamma - 1.0;
        r_sum += r * r + r.max(0.0);
    }
    r_sum / n as f64
}

/// A random orthogonal matrix (eigenvectors of a random symmetric matrix).
pub fn random_orthogonal(n: usize, rng: &mut Rng) -> Array2<f64> {
    let a = Array2::from_shape_vec((n, n), vals(&randn(&[n, n], rng))).unwrap();
    let s = &a + &a.t();
    symmetric_eigen(s.view()).unwrap().1
}

/// Richardson-extrapolated central differences, `(4 D(h/2) − D(h))/3` (error `O(h⁴)`): for
/// functions whose curvature makes a tiny step lose digits to rounding, such as whitening a
/// nearly singular batch.
pub fn richardson_diff(t: &Tensor, h: f64, mut f: impl FnMut(&Tensor) -> f64) -> Vec<f64> {
    let coarse = central_diff(t, h, &mut f);
    let fine = central_diff(t, h / 2.0, &mut f);
    fine.iter()
        .zip(&coarse)
        .map(|(f, c)| (4.0 * f - c) / 3.0)
        .collect()
}
