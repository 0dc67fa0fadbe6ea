//! The `Tensor` type: constructors, ndarray interop, shape and device handling.

use ndarray::{ArcArray, Array, ArrayD, ArrayViewD, Dimension, IxDyn};

use crate::cpu::CpuStorage;
use crate::storage::Storage;
use crate::{DType, Device, Element, Error, Result, Rng};

/// An n-dimensional array of `f32` or `f64` on a run-time [`Device`].
///
/// Tensors are immutable values: every op returns a new tensor, and `clone` is cheap (the
/// data is shared). On the CPU the data is an ndarray, possibly strided: [`Tensor::t`] and
/// [`Tensor::permute`] are views, and every op accepts non-contiguous operands.
#[derive(Clone)]
pub struct Tensor {
    pub(crate) storage: Storage,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor[{:?}, {:?}, {}]",
            self.shape(),
            self.dtype(),
            self.device()
        )
    }
}

impl Tensor {
    pub(crate) fn from_storage(storage: Storage) -> Self {
        Self { storage }
    }

    /// Wraps an owned ndarray without copying (the CPU tensor shares its buffer).
    pub fn from_array<T: Element, D: Dimension>(a: Array<T, D>) -> Self {
        Self::from_storage(Storage::Cpu(CpuStorage::from_array(
            a.into_dyn().into_shared(),
        )))
    }

    /// Wraps a shared ndarray without copying.
    pub fn from_shared<T: Element>(a: ArcArray<T, IxDyn>) -> Self {
        Self::from_storage(Storage::Cpu(CpuStorage::from_array(a)))
    }

    /// A row-major tensor of `shape` from a flat buffer, placed on `device`.
    pub fn from_vec<T: Element>(data: Vec<T>, shape: &[usize], device: &Device) -> Result<Self> {
        let expected: usize = shape.iter().product();
        if expected != data.len() {
            return Err(Error::ElementCount {
                shape: shape.to_vec(),
                expected,
                len: data.len(),
            });
        }
        let a = ArrayD::from_shape_vec(IxDyn(shape), data).expect("length checked");
        Self::from_array(a).upload(device)
    }

    /// A tensor of `shape` filled with `value`.
    pub fn full(value: f64, shape: &[usize], dtype: DType, device: &Device) -> Result<Self> {
        let t = match dtype {
            DType::F32 => Self::from_array(ArrayD::from_elem(IxDyn(shape), value as f32)),
            DType::F64 => Self::from_array(ArrayD::from_elem(IxDyn(shape), value)),
        };
        t.upload(device)
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize], dtype: DType, device: &Device) -> Result<Self> {
        Self::full(0.0, shape, dtype, device)
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize], dtype: DType, device: &Device) -> Result<Self> {
        Self::full(1.0, shape, dtype, device)
    }

    /// Independent draws from `U[lo, hi)`, generated on the host from `rng` (so a seed gives
    /// the same values on every device).
    pub fn rand_uniform(
        shape: &[usize],
        lo: f64,
        hi: f64,
        dtype: DType,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Self> {
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(Error::InvalidArgument {
                op: "rand_uniform",
                reason: format!("bounds [{lo}, {hi}) are not a finite interval"),
            });
        }
        Self::from_host_fn(shape, dtype, device, || rng.uniform(lo, hi))
    }

    /// Independent draws from `N(mean, std²)`, generated on the host from `rng`.
    pub fn randn(
        shape: &[usize],
        mean: f64,
        std: f64,
        dtype: DType,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Self> {
        if !(mean.is_finite() && std.is_finite() && std >= 0.0) {
            return Err(Error::InvalidArgument {
                op: "randn",
                reason: format!("mean {mean} and std {std} must be finite, std ≥ 0"),
            });
        }
        Self::from_host_fn(shape, dtype, device, || mean + std * rng.normal())
    }

    fn from_host_fn(
        shape: &[usize],
        dtype: DType,
        device: &Device,
        mut f: impl FnMut() -> f64,
    ) -> Result<Self> {
        let n: usize = shape.iter().product();
        let t = match dtype {
            DType::F32 => {
                Self::from_vec((0..n).map(|_| f() as f32).collect(), shape, &Device::Cpu)?
            }
            DType::F64 => Self::from_vec((0..n).map(|_| f()).collect(), shape, &Device::Cpu)?,
        };
        t.upload(device)
    }

    /// A zero-copy view of a CPU tensor's data as an ndarray.
    ///
    /// Errors if the tensor is not on the CPU or `T` is not its dtype.
    pub fn as_array_view<T: Element>(&self) -> Result<ArrayViewD<'_, T>> {
        crate::host_reads::count("as_array_view");
        self.host_view()
    }

    /// [`Tensor::as_array_view`] without counting a host read (for the crate's own reads,
    /// counted once by their public entry point).
    fn host_view<T: Element>(&self) -> Result<ArrayViewD<'_, T>> {
        match &self.storage {
            Storage::Cpu(s) => T::unwrap_ref(s)
                .map(|a| a.view())
                .ok_or(Error::DTypeMismatch {
                    op: "as_array_view",
                    lhs: self.dtype(),
                    rhs: T::DTYPE,
                }),
            #[allow(unreachable_patterns)]
            _ => Err(Error::InvalidArgument {
                op: "as_array_view",
                reason: format!("tensor is on {}; move it to the CPU first", self.device()),
            }),
        }
    }

    /// The data as an owned ndarray (copied from the device if needed).
    pub fn to_array<T: Element>(&self) -> Result<ArrayD<T>> {
        crate::host_reads::count("to_array");
        self.host_array()
    }

    fn host_array<T: Element>(&self) -> Result<ArrayD<T>> {
        let cpu = Tensor::from_storage(Storage::Cpu(self.storage.to_cpu()?));
        Ok(cpu.host_view::<T>()?.to_owned())
    }

    /// The data as `f64`, row-major, without counting a host read (the caller counts).
    pub(crate) fn host_array_f64(&self) -> Result<Vec<f64>> {
        Ok(match self.storage.to_cpu()? {
            CpuStorage::F32(a) => a.iter().map(|&x| f64::from(x)).collect(),
            CpuStorage::F64(a) => a.iter().copied().collect(),
        })
    }

    /// The data, row-major, as a flat vector.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        crate::host_reads::count("to_vec");
        let a = self.host_array::<T>()?;
        Ok(a.as_standard_layout().iter().copied().collect())
    }

    /// The single value of a one-element tensor.
    pub fn to_scalar(&self) -> Result<f64> {
        if self.elem_count() != 1 {
            return Err(Error::InvalidArgument {
                op: "to_scalar",
                reason: format!(
                    "tensor of shape {:?} has {} elements",
                    self.shape(),
                    self.elem_count()
                ),
            });
        }
        crate::host_reads::count("to_scalar");
        self.storage.sum_all()
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        self.storage.dims()
    }

    /// The number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape().len()
    }

    /// The number of elements.
    pub fn elem_count(&self) -> usize {
        self.shape().iter().product()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.storage.dtype()
    }

    /// The device holding the data.
    pub fn device(&self) -> Device {
        self.storage.device()
    }

    /// `(rows, cols)` of a 2-D tensor.
    pub fn dims2(&self) -> Result<(usize, usize)> {
        match *self.shape() {
            [a, b] => Ok((a, b)),
            _ => Err(Error::RankMismatch {
                op: "dims2",
                expected: 2,
                got: self.shape().to_vec(),
            }),
        }
    }

    /// `(batch, channels, height, width)` of a 4-D tensor.
    pub fn dims4(&self) -> Result<(usize, usize, usize, usize)> {
        match *self.shape() {
            [a, b, c, d] => Ok((a, b, c, d)),
            _ => Err(Error::RankMismatch {
                op: "dims4",
                expected: 4,
                got: self.shape().to_vec(),
            }),
        }
    }

    /// The same data on `device` (a cheap clone if it is already there).
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        if device.is_cpu() && !self.device().is_cpu() {
            crate::host_reads::count("to_device(cpu)");
        }
        Ok(Self::from_storage(self.storage.to_device(*device)?))
    }

    /// A host-built tensor moved to `device` (an upload, never a host read).
    pub(crate) fn upload(self, device: &Device) -> Result<Self> {
        Ok(Self::from_storage(self.storage.to_device(*device)?))
    }

    /// The same values as `dtype`.
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        Ok(Self::from_storage(self.storage.to_dtype(dtype)?))
    }

    /// The same elements in row-major order with a new shape (zero-copy when contiguous).
    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        let expected: usize = shape.iter().product();
        if expected != self.elem_count() {
            return Err(Error::ShapeMismatch {
                op: "reshape",
                lhs: self.shape().to_vec(),
                rhs: shape.to_vec(),
            });
        }
        Ok(Self::from_storage(self.storage.reshape(shape)?))
    }

    /// Reorders the axes (a view on the CPU): output axis `i` is input axis `axes[i]`.
    pub fn permute(&self, axes: &[usize]) -> Result<Self> {
        let mut seen = vec![false; self.rank()];
        let valid = axes.len() == self.rank()
            && axes
                .iter()
                .all(|&a| a < seen.len() && !std::mem::replace(&mut seen[a], true));
        if !valid {
            return Err(Error::InvalidArgument {
                op: "permute",
                reason: format!(
                    "{axes:?} is not a permutation of the axes of {:?}",
                    self.shape()
                ),
            });
        }
        Ok(Self::from_storage(self.storage.permute(axes)?))
    }

    /// The transpose of a 2-D tensor (a view on the CPU).
    pub fn t(&self) -> Result<Self> {
        self.dims2()?;
        self.permute(&[1, 0])
    }

    /// Flattens every axis after the first: `[B, …] → [B, ∏…]`.
    pub fn flatten_from_1(&self) -> Result<Self> {
        let b = *self.shape().first().ok_or(Error::RankMismatch {
            op: "flatten_from_1",
            expected: 1,
            got: vec![],
        })?;
        let rest: usize = self.shape()[1..].iter().product();
        self.reshape(&[b, rest])
    }
}
