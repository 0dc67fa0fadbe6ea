//! Helpers shared by the tensor tests: seeded random arrays and naive references.
#![allow(dead_code)]

use ndarray::{Array2, ArrayD, IxDyn};
use specreg_tensor::{DType, Device, Rng, Tensor};

pub fn rand_array(shape: &[usize], seed: u64) -> ArrayD<f64> {
    let mut r = Rng::new(seed);
    ArrayD::from_shape_fn(IxDyn(shape), |_| r.uniform(-1.0, 1.0))
}

pub fn rand_tensor(shape: &[usize], dtype: DType, seed: u64) -> Tensor {
    let mut r = Rng::new(seed);
    Tensor::rand_uniform(shape, -1.0, 1.0, dtype, &mut r, &Device::Cpu).unwrap()
}

pub fn to64(t: &Tensor) -> ArrayD<f64> {
    t.to_dtype(DType::F64).unwrap().to_array::<f64>().unwrap()
}

pub fn naive_matmul(a: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
    let (m, k) = a.dim();
    let n = b.ncols();
    Array2::from_shape_fn((m, n), |(i, j)| (0..k).map(|p| a[[i, p]] * b[[p, j]]).sum())
}

/// Largest elementwise |a − b| relative to max(1, |b|max).
pub fn rel_err(a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    let scale = b.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    a.iter()
        .zip(b.iter())
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

pub fn assert_close(a: &ArrayD<f64>, b: &ArrayD<f64>, tol: f64, what: &str) {
    let e = rel_err(a, b);
    assert!(e <= tol, "{what}: relative error {e:e} > {tol:e}");
}
