//! Helpers for the regulariser tests: `f64` tensors and central differences.
#![allow(dead_code)]

use specreg_tensor::{DType, Device, Rng, Tensor};

/// A standard-normal `f64` tensor.
pub fn randn(shape: &[usize], rng: &mut Rng) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, DType::F64, rng, &Device::Cpu).unwrap()
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
