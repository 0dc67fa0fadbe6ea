//! Device memory of one tensor, host transfers, and the helpers every op uses: typed access
//! to the buffer, allocation, launch shapes and the kernel-launch macro.
//!
//! A [`CudaStorage`] is always a dense row-major buffer. The buffer is shared (`Arc`) and
//! never written after the op that made it, so a reshape is a new shape over the same
//! buffer; a permute is materialised by a kernel. Buffers hold at least one element: CUDA
//! cannot allocate zero bytes, so an empty tensor owns one unused element.
//!
//! Compile-checked, not yet run on a GPU.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, ValidAsZeroBits};

use super::device::{self, DeviceState, driver};
use crate::cpu::CpuStorage;
use crate::{DType, Element, Error, Result};

/// Threads per block of every kernel launch (the kernels' `RED_THREADS`).
pub(crate) const THREADS: u32 = 256;

/// Launches `func` on `dev`'s stream with `cfg` and the given arguments (each a reference:
/// `&slice`, `&mut slice`, `&scalar`); every argument is bound to a local first, so each
/// outlives the launch.
macro_rules! launch {
    ($dev:expr, $func:expr, $cfg:expr; $($arg:expr),+ $(,)?) => {{
        use cudarc::driver::PushKernelArg as _;
        let func = &$func;
        let mut builder = $dev.stream.launch_builder(func);
        launch!(@push builder; $($arg),+);
        // SAFETY: every kernel's parameter list is the argument list passed here (types and
        // order are checked by the NVRTC compile test's entry-point list and by review);
        // buffers are sized by the caller for the element counts passed alongside them.
        unsafe { builder.launch($cfg) }
            .map(|_| ())
            .map_err($crate::cuda::device::driver("kernel launch"))
    }};
    (@push $b:ident; $head:expr $(, $tail:expr)*) => {
        let arg = $head;
        $b.arg(arg);
        launch!(@push $b; $($tail),*);
    };
    (@push $b:ident;) => {};
}
pub(crate) use launch;

/// A launch of `n` grid-stride threads (at least one block).
pub(crate) fn grid(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(THREADS as usize).clamp(1, 1 << 20);
    LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A launch of exactly `blocks` blocks (for kernels that index by block).
pub(crate) fn blocks(blocks: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks.clamp(1, u32::MAX as usize / 2) as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A buffer of `f32` or `f64`.
#[derive(Debug)]
pub(crate) enum CudaData {
    F32(CudaSlice<f32>),
    F64(CudaSlice<f64>),
}

/// The element types a CUDA buffer holds, with their typed access to [`CudaData`].
pub(crate) trait CudaElem: Element + DeviceRepr + ValidAsZeroBits + Unpin {
    fn cuda_slice(d: &CudaData) -> Option<&CudaSlice<Self>>;
    fn wrap_cuda(s: CudaSlice<Self>) -> CudaData;
}

impl CudaElem for f32 {
    fn cuda_slice(d: &CudaData) -> Option<&CudaSlice<f32>> {
        match d {
            CudaData::F32(s) => Some(s),
            CudaData::F64(_) => None,
        }
    }
    fn wrap_cuda(s: CudaSlice<f32>) -> CudaData {
        CudaData::F32(s)
    }
}

impl CudaElem for f64 {
    fn cuda_slice(d: &CudaData) -> Option<&CudaSlice<f64>> {
        match d {
            CudaData::F64(s) => Some(s),
            CudaData::F32(_) => None,
        }
    }
    fn wrap_cuda(s: CudaSlice<f64>) -> CudaData {
        CudaData::F64(s)
    }
}

/// Device memory of one tensor: a dense row-major buffer shared by reshapes.
#[derive(Debug)]
pub(crate) struct CudaStorage {
    pub(crate) data: Arc<CudaData>,
    pub(crate) dims: Vec<usize>,
    pub(crate) dev: Arc<DeviceState>,
}

/// `n` as the kernels' `u64`.
pub(crate) fn u(n: usize) -> u64 {
    n as u64
}

impl DeviceState {
    /// An uninitialised buffer for `n` elements (at least one), for a kernel that writes
    /// every element it is given.
    pub(crate) fn alloc<T: DeviceRepr>(&self, n: usize) -> Result<CudaSlice<T>> {
        // SAFETY: callers hand the buffer to a kernel that writes all `n` elements before
        // anything reads them; the spare element of an empty buffer is never read.
        unsafe { self.stream.alloc::<T>(n.max(1)) }.map_err(driver("allocate device memory"))
    }

    /// A zeroed buffer for `n` elements (at least one).
    pub(crate) fn zeros<T: DeviceRepr + ValidAsZeroBits>(&self, n: usize) -> Result<CudaSlice<T>> {
        self.stream
            .alloc_zeros::<T>(n.max(1))
            .map_err(driver("allocate device memory"))
    }

    /// Uploads a small host array (indices, labels) for a kernel to read.
    pub(crate) fn upload<T: DeviceRepr>(&self, v: &[T], op: &'static str) -> Result<CudaSlice<T>> {
        if v.is_empty() {
            // cudarc cannot allocate zero elements: an empty upload is one uninitialised
            // element, which kernels never read because their element counts are 0.
            // SAFETY: nothing reads the element.
            return unsafe { self.stream.alloc::<T>(1) }.map_err(driver(op));
        }
        self.stream.clone_htod(v).map_err(driver(op))
    }
}

impl CudaStorage {
    pub(crate) fn ordinal(&self) -> usize {
        self.dev.ordinal
    }

    /// The number of elements.
    pub(crate) fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// The buffer as `T`, or a dtype mismatch naming `op`.
    pub(crate) fn typed<T: CudaElem>(&self, op: &'static str) -> Result<&CudaSlice<T>> {
        T::cuda_slice(&self.data).ok_or(Error::DTypeMismatch {
            op,
            lhs: self.dtype_of(),
            rhs: T::DTYPE,
        })
    }

    pub(crate) fn dtype_of(&self) -> DType {
        match *self.data {
            CudaData::F32(_) => DType::F32,
            CudaData::F64(_) => DType::F64,
        }
    }

    /// A new storage on the same device.
    pub(crate) fn make<T: CudaElem>(&self, s: CudaSlice<T>, dims: Vec<usize>) -> Self {
        Self {
            data: Arc::new(T::wrap_cuda(s)),
            dims,
            dev: self.dev.clone(),
        }
    }

    pub(crate) fn from_cpu(cpu: &CpuStorage, ordinal: usize) -> Result<Self> {
        let dev = device::device(ordinal)?;
        fn up<T: CudaElem>(
            dev: &DeviceState,
            a: &ndarray::ArcArray<T, ndarray::IxDyn>,
        ) -> Result<CudaSlice<T>> {
            match a.as_slice() {
                Some(s) => dev.upload(s, "host to device copy"),
                None => {
                    let v: Vec<T> = a.iter().copied().collect();
                    dev.upload(&v, "host to device copy")
                }
            }
        }
        let (data, dims) = match cpu {
            CpuStorage::F32(a) => (CudaData::F32(up(&dev, a)?), a.shape().to_vec()),
            CpuStorage::F64(a) => (CudaData::F64(up(&dev, a)?), a.shape().to_vec()),
        };
        Ok(Self {
            data: Arc::new(data),
            dims,
            dev,
        })
    }

    /// The logical elements, copied to the host.
    fn download<T: CudaElem>(&self, s: &CudaSlice<T>) -> Result<Vec<T>> {
        let n = self.len();
        let v = if n == 0 {
            Vec::new()
        } else {
            self.dev
                .stream
                .clone_dtoh(&s.slice(0..n))
                .map_err(driver("device to host copy"))?
        };
        self.dev.check_bad_index()?;
        Ok(v)
    }

    pub(crate) fn to_cpu(&self) -> Result<CpuStorage> {
        fn host<T: CudaElem>(
            dims: &[usize],
            v: Vec<T>,
        ) -> Result<ndarray::ArcArray<T, ndarray::IxDyn>> {
            let len = v.len();
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(dims), v)
                .map(|a| a.into_shared())
                .map_err(|_| Error::ElementCount {
                    shape: dims.to_vec(),
                    expected: dims.iter().product(),
                    len,
                })
        }
        Ok(match &*self.data {
            CudaData::F32(s) => CpuStorage::F32(host(&self.dims, self.download(s)?)?),
            CudaData::F64(s) => CpuStorage::F64(host(&self.dims, self.download(s)?)?),
        })
    }

    /// Reads one `f64` computed on the device (a reduction's result).
    pub(crate) fn read_scalar(&self, s: &CudaSlice<f64>) -> Result<f64> {
        let v = self
            .dev
            .stream
            .clone_dtoh(&s.slice(0..1))
            .map_err(driver("device to host copy"))?;
        self.dev.check_bad_index()?;
        v.first().copied().ok_or(Error::Cuda {
            op: "device to host copy",
            message: "empty result".into(),
        })
    }
}

/// Runs a generic body on whichever typed buffer a storage holds: `each!(s, T, x => body)`
/// binds `x: &CudaSlice<T>` with `T` the element type.
macro_rules! each {
    ($s:expr, $t:ident, $x:ident => $body:expr) => {
        match &*$s.data {
            $crate::cuda::storage::CudaData::F32($x) => {
                type $t = f32;
                $body
            }
            $crate::cuda::storage::CudaData::F64($x) => {
                type $t = f64;
                $body
            }
        }
    };
}
pub(crate) use each;
