//! Row-major matrix products on cuBLAS (the safe `Gemm` trait of cudarc).
//!
//! cuBLAS is column-major. A row-major `C[m, n] = op(A) · op(B)` is the column-major
//! `Cᵀ[n, m] = op(B)ᵀ · op(A)ᵀ`, and a row-major matrix read column-major is its
//! transpose, so the call passes `(B, A)`, swaps `m` and `n`, and keeps each operand's
//! transpose flag (candle's `gemm_config` does the same). Leading dimensions are the stored
//! row lengths. Batched products (the convolutions) use `gemm_strided_batched`; a stride of
//! 0 reuses one operand (the kernel) for every sample.
//!
//! TF32 tensor cores are off by default and on with `SPECREG_CUDA_TF32=1` when the device
//! is opened (see `device.rs`). cuBLAS gives the same bits on every run for the same shapes
//! on the same GPU (it uses no atomics in these routines).
//!
//! Compile-checked, not yet run on a GPU.

use std::ffi::{c_int, c_longlong};

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::{DevicePtr, DevicePtrMut};

use super::device::{DeviceState, driver, lock};
use super::storage::{CudaElem, CudaStorage, each};
use crate::{Error, Result};

/// The element types cuBLAS multiplies (`sgemm` / `dgemm`).
pub(crate) trait Blas: CudaElem {
    /// # Safety
    /// The operands must hold the elements `cfg` addresses.
    unsafe fn gemm_one<A: DevicePtr<Self>, B: DevicePtr<Self>, C: DevicePtrMut<Self>>(
        blas: &CudaBlas,
        cfg: GemmConfig<Self>,
        a: &A,
        b: &B,
        c: &mut C,
    ) -> Result<()>;
    /// # Safety
    /// The operands must hold the elements `cfg` addresses.
    unsafe fn gemm_batched<A: DevicePtr<Self>, B: DevicePtr<Self>, C: DevicePtrMut<Self>>(
        blas: &CudaBlas,
        cfg: StridedBatchedConfig<Self>,
        a: &A,
        b: &B,
        c: &mut C,
    ) -> Result<()>;
}

fn cublas_error(routine: &'static str) -> impl Fn(cudarc::cublas::result::CublasError) -> Error {
    move |e| Error::Cuda {
        op: routine,
        message: format!("{:?}", e.0),
    }
}

macro_rules! blas_impl {
    ($t:ty, $one:literal, $batched:literal) => {
        impl Blas for $t {
            unsafe fn gemm_one<A: DevicePtr<$t>, B: DevicePtr<$t>, C: DevicePtrMut<$t>>(
                blas: &CudaBlas,
                cfg: GemmConfig<$t>,
                a: &A,
                b: &B,
                c: &mut C,
            ) -> Result<()> {
                // SAFETY: the caller's contract.
                unsafe { <CudaBlas as Gemm<$t>>::gemm(blas, cfg, a, b, c) }
                    .map_err(cublas_error($one))
            }
            unsafe fn gemm_batched<A: DevicePtr<$t>, B: DevicePtr<$t>, C: DevicePtrMut<$t>>(
                blas: &CudaBlas,
                cfg: StridedBatchedConfig<$t>,
                a: &A,
                b: &B,
                c: &mut C,
            ) -> Result<()> {
                // SAFETY: the caller's contract.
                unsafe { <CudaBlas as Gemm<$t>>::gemm_strided_batched(blas, cfg, a, b, c) }
                    .map_err(cublas_error($batched))
            }
        }
    };
}
blas_impl!(f32, "cublasSgemm", "cublasSgemmStridedBatched");
blas_impl!(f64, "cublasDgemm", "cublasDgemmStridedBatched");

/// A row-major product `C[m, n] = op(A)[m, k] · op(B)[k, n]`, repeated over `batch`
/// matrices `stride_*` elements apart. `A` is stored `[m, k]`, or `[k, m]` when `at`;
/// `B` is stored `[k, n]`, or `[n, k]` when `bt`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowMajor {
    pub(crate) m: usize,
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) at: bool,
    pub(crate) bt: bool,
    pub(crate) batch: usize,
    pub(crate) stride_a: usize,
    pub(crate) stride_b: usize,
    pub(crate) stride_c: usize,
}

impl RowMajor {
    pub(crate) fn single(m: usize, n: usize, k: usize, at: bool, bt: bool) -> Self {
        Self {
            m,
            n,
            k,
            at,
            bt,
            batch: 1,
            stride_a: 0,
            stride_b: 0,
            stride_c: 0,
        }
    }
}

fn int(v: usize, what: &str) -> Result<c_int> {
    c_int::try_from(v).map_err(|_| Error::InvalidArgument {
        op: "cuBLAS gemm",
        reason: format!("{what} = {v} exceeds cuBLAS's 32-bit sizes"),
    })
}

fn op(t: bool) -> cublasOperation_t {
    if t {
        cublasOperation_t::CUBLAS_OP_T
    } else {
        cublasOperation_t::CUBLAS_OP_N
    }
}

/// `c ← op(a) · op(b)` for every matrix of the batch (`beta = 0`: `c` is overwritten).
/// Callers skip empty products (`m`, `n` or `k` zero).
pub(crate) fn gemm_rm<T: Blas, A: DevicePtr<T>, B: DevicePtr<T>, C: DevicePtrMut<T>>(
    dev: &DeviceState,
    g: RowMajor,
    a: &A,
    b: &B,
    c: &mut C,
) -> Result<()> {
    let lda = if g.at { g.m } else { g.k };
    let ldb = if g.bt { g.k } else { g.n };
    // Column-major: Cᵀ[n, m] = op(B)ᵀ · op(A)ᵀ, so cuBLAS's A is our B and its B our A.
    let cfg = GemmConfig {
        transa: op(g.bt),
        transb: op(g.at),
        m: int(g.n, "n")?,
        n: int(g.m, "m")?,
        k: int(g.k, "k")?,
        alpha: T::one(),
        lda: int(ldb.max(1), "ldb")?,
        ldb: int(lda.max(1), "lda")?,
        beta: T::zero(),
        ldc: int(g.n.max(1), "ldc")?,
    };
    dev.ctx.bind_to_thread().map_err(driver("bind context"))?;
    let blas = lock(&dev.blas);
    if g.batch == 1 {
        // SAFETY: the buffers hold the m×k, k×n and m×n matrices the leading dimensions
        // describe (the callers size them from the same shapes).
        unsafe { T::gemm_one(&blas, cfg, b, a, c) }
    } else {
        let long = |v: usize| c_longlong::try_from(v).unwrap_or(c_longlong::MAX);
        let cfg = StridedBatchedConfig {
            gemm: cfg,
            batch_size: int(g.batch, "batch")?,
            stride_a: long(g.stride_b),
            stride_b: long(g.stride_a),
            stride_c: long(g.stride_c),
        };
        // SAFETY: as above, for each of the `batch` matrices at the given strides.
        unsafe { T::gemm_batched(&blas, cfg, b, a, c) }
    }
}

impl CudaStorage {
    /// `op(self) · op(rhs)` for 2-D operands.
    pub(crate) fn matmul_op(&self, rhs: &CudaStorage, at: bool, bt: bool) -> Result<CudaStorage> {
        let (r0, c0) = (self.dims[0], self.dims[1]);
        let (r1, c1) = (rhs.dims[0], rhs.dims[1]);
        let (m, k) = if at { (c0, r0) } else { (r0, c0) };
        let n = if bt { r1 } else { c1 };
        each!(self, T, a => {
            let b = rhs.typed::<T>("matmul")?;
            if m * n == 0 || k == 0 {
                return Ok(self.make(self.dev.zeros::<T>(m * n)?, vec![m, n]));
            }
            let mut c = self.dev.alloc::<T>(m * n)?;
            gemm_rm::<T, _, _, _>(&self.dev, RowMajor::single(m, n, k, at, bt), a, b, &mut c)?;
            Ok(self.make(c, vec![m, n]))
        })
    }
}
