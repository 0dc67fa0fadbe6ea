//! Element types: `f32` for training, `f64` where accuracy needs it (gradient checks,
//! full-data covariances).

use std::fmt::{Debug, Display};

use ndarray::{ArcArray, IxDyn};

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

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn of_f64(v: f64) -> Self {
        v as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
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
