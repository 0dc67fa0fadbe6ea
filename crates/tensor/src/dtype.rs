//! Element types: `f32` for training, `f64` where accuracy needs it (gradient checks,
//! full-data covariances).

use std::fmt::{Debug, Display};

use ndarray::{ArcArray, Array2, ArrayView2, IxDyn};

use crate::cpu::CpuStorage;

/// The element type of a tensor, chosen at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float: the training dtype.
    F32,
    /// 64-bit float: reference computations and gradient checks.
    F64,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }
}

/// A floating-point element type a [`Tensor`](crate::Tensor) can hold (`f32` or `f64`).
///
/// Sealed: the CPU kernels are written once, generically, for exactly these two types.
pub trait Element:
    num_traits::Float
    + faer::traits::RealField
    + ndarray::LinalgScalar
    + ndarray::ScalarOperand
    + Send
    + Sync
    + Debug
    + Display
    + Default
    + std::iter::Sum
    + std::ops::AddAssign
    + 'static
    + private::Sealed
{
    /// The run-time tag of this type.
    const DTYPE: DType;
    /// Converts from `f64` (rounding for `f32`).
    fn of_f64(v: f64) -> Self;
    /// Converts to `f64` (exact).
    fn as_f64(self) -> f64;
    /// `tanh` as the CPU kernels compute it: exact (libm) for `f64`, a vectorisable rational
    /// approximation for `f32` (see [`tanh_f32`]).
    fn tanh_kernel(self) -> Self;
    /// The sparse-operand product behind [`crate::linalg::matmul`], where this type has one.
    #[doc(hidden)]
    fn sparse_matmul(_a: ArrayView2<Self>, _b: ArrayView2<Self>) -> Option<Array2<Self>> {
        None
    }
    #[doc(hidden)]
    fn wrap(a: ArcArray<Self, IxDyn>) -> CpuStorage;
    #[doc(hidden)]
    fn unwrap_ref(s: &CpuStorage) -> Option<&ArcArray<Self, IxDyn>>;
}

mod private {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// `tanh` for `f32` as `x·P(x²)/Q(x²)` on `x` clamped to ±7.9053 (where `tanh` rounds to
/// ±1 in `f32`): a branch-free rational approximation that the compiler vectorises, unlike
/// libm's `tanhf`. The minimax coefficients are the ones Eigen uses for its float `tanh`
/// (`generic_fast_tanh_float`); the absolute error is below 5e-7 over the whole line
/// (checked against `f64::tanh` in the tests), i.e. a few ulp, about what PyTorch's
/// vectorised kernels give.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    const A: [f32; 7] = [
        4.893_524_6e-3,
        6.372_619_3e-4,
        1.485_722_4e-5,
        5.122_297e-8,
        -8.604_672e-11,
        2.000_188e-13,
        -2.760_768_5e-16,
    ];
    const B: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347e-4, 1.198_258_4e-6];
    // `clamp` keeps NaN, and so does the result.
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let p = ((((((A[6] * x2 + A[5]) * x2 + A[4]) * x2 + A[3]) * x2 + A[2]) * x2 + A[1]) * x2
        + A[0])
        * x;
    let q = ((B[3] * x2 + B[2]) * x2 + B[1]) * x2 + B[0];
    p / q
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn tanh_kernel(self) -> Self {
        tanh_f32(self)
    }
    fn of_f64(v: f64) -> Self {
        v as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
    fn sparse_matmul(a: ArrayView2<Self>, b: ArrayView2<Self>) -> Option<Array2<Self>> {
        crate::sparse_matmul::try_matmul(a, b)
    }
    fn wrap(a: ArcArray<Self, IxDyn>) -> CpuStorage {
        CpuStorage::F32(a)
    }
    fn unwrap_ref(s: &CpuStorage) -> Option<&ArcArray<Self, IxDyn>> {
        match s {
            CpuStorage::F32(a) => Some(a),
            CpuStorage::F64(_) => None,
        }
    }
}

impl Element for f64 {
    const DTYPE: DType = DType::F64;
    fn tanh_kernel(self) -> Self {
        self.tanh()
    }
    fn of_f64(v: f64) -> Self {
        v
    }
    fn as_f64(self) -> f64 {
        self
    }
    fn wrap(a: ArcArray<Self, IxDyn>) -> CpuStorage {
        CpuStorage::F64(a)
    }
    fn unwrap_ref(s: &CpuStorage) -> Option<&ArcArray<Self, IxDyn>> {
        match s {
            CpuStorage::F64(a) => Some(a),
            CpuStorage::F32(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tanh_f32_is_within_5e_7_of_the_exact_value() {
        let mut worst = 0.0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-4;
            let e = (super::tanh_f32(x) as f64 - (x as f64).tanh()).abs();
            worst = worst.max(e);
        }
        assert!(worst < 5e-7, "max error {worst:e}");
        assert_eq!(super::tanh_f32(1e30), 1.0f32.min(super::tanh_f32(1e30)));
        assert!(super::tanh_f32(f32::NAN).is_nan());
        assert!((super::tanh_f32(f32::INFINITY) - 1.0).abs() < 5e-7);
        assert!((super::tanh_f32(f32::NEG_INFINITY) + 1.0).abs() < 5e-7);
        assert_eq!(super::tanh_f32(0.0), 0.0);
    }
}
