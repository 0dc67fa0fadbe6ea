//! Helpers shared by the tensor tests: the `test_device!` macro, seeded random arrays,
//! naive references and tolerances.
//!
//! Tests are written once as `fn case(dev: &Device) -> Result<()>` and stamped out by
//! `test_device!(case)` (from `specreg_tensor::testing`, re-exported here) as `case::cpu`
//! and `case::cuda`. Without a CUDA device the CUDA twin prints that it is skipped and
//! passes, unless `SPECREG_REQUIRE_CUDA=1` (set by the GPU bundle's `run.sh`), which makes
//! it fail.
#![allow(dead_code, unused_macros, unused_imports)]

use ndarray::{Array2, ArrayD, IxDyn};
use specreg_tensor::{DType, Device, Result, Rng, Tensor};

pub use specreg_tensor::test_device;
pub use specreg_tensor::testing::{cuda_device, cuda_required, tol_on};

/// The unit roundoff of `dtype`.
pub fn eps(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => f64::from(f32::EPSILON),
        DType::F64 => f64::EPSILON,
    }
}

/// An ndarray as a tensor on `dev`.
pub fn on<D: ndarray::Dimension>(dev: &Device, a: ndarray::Array<f64, D>) -> Tensor {
    Tensor::from_array(a).to_device(dev).unwrap()
}

/// An `f32` ndarray as a tensor on `dev`.
pub fn on32<D: ndarray::Dimension>(dev: &Device, a: ndarray::Array<f32, D>) -> Tensor {
    Tensor::from_array(a).to_device(dev).unwrap()
}

pub fn rand_array(shape: &[usize], seed: u64) -> ArrayD<f64> {
    let mut r = Rng::new(seed);
    ArrayD::from_shape_fn(IxDyn(shape), |_| r.uniform(-1.0, 1.0))
}

pub fn rand_tensor(shape: &[usize], dtype: DType, seed: u64) -> Tensor {
    rand_tensor_on(&Device::Cpu, shape, dtype, seed)
}

/// Seeded uniform entries in [-1, 1), the same values on every device.
pub fn rand_tensor_on(dev: &Device, shape: &[usize], dtype: DType, seed: u64) -> Tensor {
    let mut r = Rng::new(seed);
    Tensor::rand_uniform(shape, -1.0, 1.0, dtype, &mut r, dev).unwrap()
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

/// Runs `f` on the CPU and on `dev` and compares the results: bit for bit on the CPU (the
/// same computation twice: a determinism check), within `gpu_tol` ([`rel_err`]) on a GPU.
pub fn same_as_cpu(
    dev: &Device,
    gpu_tol: f64,
    what: &str,
    f: impl Fn(&Device) -> Result<Tensor>,
) -> Result<()> {
    let want = to64(&f(&Device::Cpu)?);
    let got = to64(&f(dev)?);
    let tol = tol_on(dev, 0.0, gpu_tol);
    assert_close(&got, &want, tol, &format!("{what} on {dev} vs cpu"));
    Ok(())
}
