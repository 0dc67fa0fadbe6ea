//! Helpers for the regulariser tests: `f64` tensors and central differences.
//!
//! Gradient checks are written once as `fn case(dev: &Device) -> Result<…>` and stamped out
//! for the CPU and CUDA by `specreg_tensor::test_device!`; the tensors under test live on
//! `dev`, the finite differences are formed on the host in `f64`.
#![allow(dead_code)]

use ndarray::Array2;
use proptest::test_runner::{Config, RngSeed};
use specreg_tensor::{DType, Device, Rng, Tensor, linalg::symmetric_eigen, testing::scaled_tol};

/// How much looser a finite-difference tolerance is on a GPU (other summation orders,
/// libdevice's `exp`, `log`, `sqrt` and `tanh`, cuSOLVER's eigenvectors).
pub const GPU_FACTOR: f64 = 10.0;

/// `rtol` on the CPU, `rtol · GPU_FACTOR` on a GPU.
pub fn tol(dev: &Device, rtol: f64) -> f64 {
    scaled_tol(dev, rtol, GPU_FACTOR)
}

/// A standard-normal `f64` tensor on the CPU.
pub fn randn(shape: &[usize], rng: &mut Rng) -> Tensor {
    randn_on(&Device::Cpu, shape, rng)
}

/// A standard-normal `f64` tensor on `dev` (the same values on every device).
pub fn randn_on(dev: &Device, shape: &[usize], rng: &mut Rng) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, DType::F64, rng, dev).unwrap()
}

/// A uniform `f64` tensor on `[lo, hi)` on the CPU.
pub fn uniform(shape: &[usize], lo: f64, hi: f64, rng: &mut Rng) -> Tensor {
    uniform_on(&Device::Cpu, shape, lo, hi, rng)
}

/// A uniform `f64` tensor on `[lo, hi)` on `dev` (the same values on every device).
pub fn uniform_on(dev: &Device, shape: &[usize], lo: f64, hi: f64, rng: &mut Rng) -> Tensor {
    Tensor::rand_uniform(shape, lo, hi, DType::F64, rng, dev).unwrap()
}

/// Row-major values of an `f64` tensor.
pub fn vals(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().to_vec::<f64>().unwrap()
}

/// An `f64` tensor from row-major values on the CPU.
pub fn tensor(v: Vec<f64>, shape: &[usize]) -> Tensor {
    tensor_on(&Device::Cpu, v, shape)
}

/// An `f64` tensor from row-major values on `dev`.
pub fn tensor_on(dev: &Device, v: Vec<f64>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(v, shape, dev).unwrap()
}

/// Central differences (step `h`) of `f` with respect to every element of `t`; the bumped
/// tensors are on `t`'s device.
pub fn central_diff(t: &Tensor, h: f64, mut f: impl FnMut(&Tensor) -> f64) -> Vec<f64> {
    let dev = t.device();
    let tensor = |v: Vec<f64>, shape: &[usize]| tensor_on(&dev, v, shape);
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

/// A proptest config with a fixed seed and no failure file, so CI runs the same `cases`
/// every time.
pub fn fixed_cases(cases: u32, seed: u64) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    }
}
