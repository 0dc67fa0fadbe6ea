//! Symmetric eigendecomposition (cuSOLVER `syevd`), Cholesky (`potrf`) and triangular solves
//! (cuBLAS `trsm`) through the raw `sys` bindings (cudarc 0.19 has no safe wrappers).
//!
//! | op | f32 | f64 |
//! |---|---|---|
//! | [`symmetric_eigen`](CudaStorage::eigh) | `cusolverDnSsyevd` | `cusolverDnDsyevd` |
//! | [`cholesky`](CudaStorage::cholesky_lower) | `cusolverDnSpotrf` | `cusolverDnDpotrf` |
//! | [`solve_triangular`](CudaStorage::trsm_solve) | `cublasStrsm_v2` | `cublasDtrsm_v2` |
//!
//! Layout: a row-major matrix read column-major is its transpose, so the row-major lower
//! triangle is the column-major upper one (`FILL_MODE_UPPER`). The eigenvectors come back
//! as columns of a column-major matrix in ascending order; a kernel reverses them to the
//! descending order and signs each so its first largest-magnitude entry is positive, as
//! `linalg::symmetric_eigen` does on the CPU. `potrf` leaves the other triangle as it was;
//! a kernel zeroes it.
//!
//! Errors: every library status other than success is [`Error::Cuda`] naming the routine
//! and the status; `devInfo` is read back after each factorisation (one 4-byte copy, which
//! waits for the device, as PyTorch's `linalg` does by default): `devInfo = i > 0` from
//! `potrf` is [`Error::NotPositiveDefinite`] with `pivot = i − 1` (the leading minor of
//! order `i` is not positive definite), from `syevd` it is [`Error::EigenNoConvergence`],
//! and `devInfo < 0` (a wrong argument) is [`Error::Cuda`].
//!
//! Compile-checked, not yet run on a GPU.

use std::ffi::c_int;

use cudarc::cublas::sys as blas_sys;
use cudarc::cusolver::sys as sol_sys;
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};

use super::device::{DeviceState, driver, lock};
use super::gemm::Blas;
use super::kernels as k;
use super::storage::{CudaStorage, each, grid, launch, u};
use crate::Element as _;
use crate::{Error, Result};

/// A cuBLAS status as a result.
pub(crate) fn cublas_status(routine: &'static str, s: blas_sys::cublasStatus_t) -> Result<()> {
    match s {
        blas_sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS => Ok(()),
        other => Err(Error::Cuda {
            op: routine,
            message: format!("{other:?}"),
        }),
    }
}

/// A cuSOLVER status as a result.
fn cusolver_status(routine: &'static str, s: sol_sys::cusolverStatus_t) -> Result<()> {
    match s {
        sol_sys::cusolverStatus_t::CUSOLVER_STATUS_SUCCESS => Ok(()),
        other => Err(Error::Cuda {
            op: routine,
            message: format!("{other:?}"),
        }),
    }
}

/// The cuSOLVER and cuBLAS routines of one element type, with their names for errors.
pub(crate) trait Lapack: Blas {
    const SYEVD_LWORK: &'static str;
    const SYEVD: &'static str;
    const POTRF_LWORK: &'static str;
    const POTRF: &'static str;
    const TRSM: &'static str;
    /// # Safety
    /// Pointers to device buffers of the sizes cuSOLVER documents for these arguments.
    #[allow(clippy::too_many_arguments)]
    unsafe fn syevd_lwork(
        h: sol_sys::cusolverDnHandle_t,
        n: c_int,
        a: *const Self,
        w: *const Self,
        lwork: *mut c_int,
    ) -> sol_sys::cusolverStatus_t;
    /// # Safety
    /// As for `syevd_lwork`, with `work` of `lwork` elements and `info` one `int`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn syevd(
        h: sol_sys::cusolverDnHandle_t,
        n: c_int,
        a: *mut Self,
        w: *mut Self,
        work: *mut Self,
        lwork: c_int,
        info: *mut c_int,
    ) -> sol_sys::cusolverStatus_t;
    /// # Safety
    /// As for `syevd_lwork`.
    unsafe fn potrf_lwork(
        h: sol_sys::cusolverDnHandle_t,
        n: c_int,
        a: *mut Self,
        lwork: *mut c_int,
    ) -> sol_sys::cusolverStatus_t;
    /// # Safety
    /// As for `syevd`.
    unsafe fn potrf(
        h: sol_sys::cusolverDnHandle_t,
        n: c_int,
        a: *mut Self,
        work: *mut Self,
        lwork: c_int,
        info: *mut c_int,
    ) -> sol_sys::cusolverStatus_t;
    /// # Safety
    /// `a` an `lda × ·` and `b` an `ldb × n` column-major device matrix; `alpha` on the host.
    #[allow(clippy::too_many_arguments)]
    unsafe fn trsm(
        h: blas_sys::cublasHandle_t,
        side: blas_sys::cublasSideMode_t,
        uplo: blas_sys::cublasFillMode_t,
        trans: blas_sys::cublasOperation_t,
        m: c_int,
        n: c_int,
        a: *const Self,
        lda: c_int,
        b: *mut Self,
        ldb: c_int,
    ) -> blas_sys::cublasStatus_t;
}

const VECTORS: sol_sys::cusolverEigMode_t = sol_sys::cusolverEigMode_t::CUSOLVER_EIG_MODE_VECTOR;
/// The row-major lower triangle.
const UPPER: sol_sys::cublasFillMode_t = sol_sys::cublasFillMode_t::CUBLAS_FILL_MODE_UPPER;

macro_rules! lapack_impl {
    ($t:ty, $p:literal, $syevd_l:ident, $syevd:ident, $potrf_l:ident, $potrf:ident, $trsm:ident) => {
        impl Lapack for $t {
            const SYEVD_LWORK: &'static str = concat!("cusolverDn", $p, "syevd_bufferSize");
            const SYEVD: &'static str = concat!("cusolverDn", $p, "syevd");
            const POTRF_LWORK: &'static str = concat!("cusolverDn", $p, "potrf_bufferSize");
            const POTRF: &'static str = concat!("cusolverDn", $p, "potrf");
            const TRSM: &'static str = concat!("cublas", $p, "trsm_v2");
            unsafe fn syevd_lwork(
                h: sol_sys::cusolverDnHandle_t,
                n: c_int,
                a: *const $t,
                w: *const $t,
                lwork: *mut c_int,
            ) -> sol_sys::cusolverStatus_t {
                // SAFETY: the caller's contract.
                unsafe { sol_sys::$syevd_l(h, VECTORS, UPPER, n, a, n.max(1), w, lwork) }
            }
            unsafe fn syevd(
                h: sol_sys::cusolverDnHandle_t,
                n: c_int,
                a: *mut $t,
                w: *mut $t,
                work: *mut $t,
                lwork: c_int,
                info: *mut c_int,
            ) -> sol_sys::cusolverStatus_t {
                // SAFETY: the caller's contract.
                unsafe { sol_sys::$syevd(h, VECTORS, UPPER, n, a, n.max(1), w, work, lwork, info) }
            }
            unsafe fn potrf_lwork(
                h: sol_sys::cusolverDnHandle_t,
                n: c_int,
                a: *mut $t,
                lwork: *mut c_int,
            ) -> sol_sys::cusolverStatus_t {
                // SAFETY: the caller's contract.
                unsafe { sol_sys::$potrf_l(h, UPPER, n, a, n.max(1), lwork) }
            }
            unsafe fn potrf(
                h: sol_sys::cusolverDnHandle_t,
                n: c_int,
                a: *mut $t,
                work: *mut $t,
                lwork: c_int,
                info: *mut c_int,
            ) -> sol_sys::cusolverStatus_t {
                // SAFETY: the caller's contract.
                unsafe { sol_sys::$potrf(h, UPPER, n, a, n.max(1), work, lwork, info) }
            }
            unsafe fn trsm(
                h: blas_sys::cublasHandle_t,
                side: blas_sys::cublasSideMode_t,
                uplo: blas_sys::cublasFillMode_t,
                trans: blas_sys::cublasOperation_t,
                m: c_int,
                n: c_int,
                a: *const $t,
                lda: c_int,
                b: *mut $t,
                ldb: c_int,
            ) -> blas_sys::cublasStatus_t {
                let one: $t = 1.0;
                let diag = blas_sys::cublasDiagType_t::CUBLAS_DIAG_NON_UNIT;
                // SAFETY: the caller's contract; `one` outlives the call (host pointer mode).
                unsafe { blas_sys::$trsm(h, side, uplo, trans, diag, m, n, &one, a, lda, b, ldb) }
            }
        }
    };
}
lapack_impl!(
    f32,
    "S",
    cusolverDnSsyevd_bufferSize,
    cusolverDnSsyevd,
    cusolverDnSpotrf_bufferSize,
    cusolverDnSpotrf,
    cublasStrsm_v2
);
lapack_impl!(
    f64,
    "D",
    cusolverDnDsyevd_bufferSize,
    cusolverDnDsyevd,
    cusolverDnDpotrf_bufferSize,
    cusolverDnDpotrf,
    cublasDtrsm_v2
);

fn size(v: usize, op: &'static str) -> Result<c_int> {
    c_int::try_from(v).map_err(|_| Error::InvalidArgument {
        op,
        reason: format!("size {v} exceeds the 32-bit sizes of cuSOLVER/cuBLAS"),
    })
}

/// Reads `devInfo` back (waits for the factorisation to finish).
fn read_info(dev: &DeviceState, info: &CudaSlice<c_int>) -> Result<c_int> {
    let v = dev
        .stream
        .clone_dtoh(info)
        .map_err(driver("read devInfo"))?;
    Ok(v.first().copied().unwrap_or(0))
}

fn bad_parameter(routine: &'static str, info: c_int) -> Error {
    Error::Cuda {
        op: routine,
        message: format!("devInfo = {info}: parameter {} is invalid", -info),
    }
}

impl CudaStorage {
    /// `(λ descending [N], V [N, N])` from the lower triangle of `self`.
    pub(crate) fn eigh(&self) -> Result<(CudaStorage, CudaStorage)> {
        let n = self.dims[0];
        each!(self, T, x => {
            if n == 0 {
                return Ok((self.make(self.dev.zeros::<T>(0)?, vec![0]), self.make(self.dev.zeros::<T>(0)?, vec![0, 0])));
            }
            let dev = &self.dev;
            let ni = size(n, "symmetric_eigen")?;
            let mut a = dev.stream.clone_dtod(&x.slice(0..n * n)).map_err(driver("copy matrix"))?;
            let mut w = dev.alloc::<T>(n)?;
            let mut info = dev.stream.alloc_zeros::<c_int>(1).map_err(driver("allocate devInfo"))?;
            dev.ctx.bind_to_thread().map_err(driver("bind context"))?;
            {
                let solver = lock(&dev.solver);
                let h = solver.cu();
                let mut lwork: c_int = 0;
                {
                    let (ap, _ga) = a.device_ptr(&dev.stream);
                    let (wp, _gw) = w.device_ptr(&dev.stream);
                    // SAFETY: `a` holds n×n and `w` n elements; `lwork` is a host out-pointer.
                    let s = unsafe { <T as Lapack>::syevd_lwork(h, ni, ap as *const T, wp as *const T, &mut lwork) };
                    cusolver_status(<T as Lapack>::SYEVD_LWORK, s)?;
                }
                let mut work = dev.alloc::<T>(lwork.max(1) as usize)?;
                let (ap, _ga) = a.device_ptr_mut(&dev.stream);
                let (wp, _gw) = w.device_ptr_mut(&dev.stream);
                let (kp, _gk) = work.device_ptr_mut(&dev.stream);
                let (ip, _gi) = info.device_ptr_mut(&dev.stream);
                // SAFETY: buffers sized as cuSOLVER asked: a n×n, w n, work lwork, info 1.
                let s = unsafe { <T as Lapack>::syevd(h, ni, ap as *mut T, wp as *mut T, kp as *mut T, lwork, ip as *mut c_int) };
                cusolver_status(<T as Lapack>::SYEVD, s)?;
            }
            match read_info(dev, &info)? {
                0 => {}
                i if i > 0 => return Err(Error::EigenNoConvergence { n }),
                i => return Err(bad_parameter(<T as Lapack>::SYEVD, i)),
            }
            let mut sign = dev.alloc::<T>(n)?;
            let f = dev.function(k::EIGEN_SIGNS, T::DTYPE)?;
            launch!(dev, f, grid(n); &a, &mut sign, &u(n))?;
            let mut vecs = dev.alloc::<T>(n * n)?;
            let mut vals = dev.alloc::<T>(n)?;
            let f = dev.function(k::EIGEN_FINISH, T::DTYPE)?;
            launch!(dev, f, grid(n * n); &a, &w, &sign, &mut vecs, &mut vals, &u(n))?;
            Ok((self.make(vals, vec![n]), self.make(vecs, vec![n, n])))
        })
    }

    /// Lower `L` with `self = L Lᵀ`, from the lower triangle of `self`.
    pub(crate) fn cholesky_lower(&self) -> Result<CudaStorage> {
        let n = self.dims[0];
        each!(self, T, x => {
            if n == 0 {
                return Ok(self.make(self.dev.zeros::<T>(0)?, vec![0, 0]));
            }
            let dev = &self.dev;
            let ni = size(n, "cholesky")?;
            let mut a = dev.stream.clone_dtod(&x.slice(0..n * n)).map_err(driver("copy matrix"))?;
            let mut info = dev.stream.alloc_zeros::<c_int>(1).map_err(driver("allocate devInfo"))?;
            dev.ctx.bind_to_thread().map_err(driver("bind context"))?;
            {
                let solver = lock(&dev.solver);
                let h = solver.cu();
                let mut lwork: c_int = 0;
                {
                    let (ap, _ga) = a.device_ptr_mut(&dev.stream);
                    // SAFETY: `a` holds n×n elements; `lwork` is a host out-pointer.
                    let s = unsafe { <T as Lapack>::potrf_lwork(h, ni, ap as *mut T, &mut lwork) };
                    cusolver_status(<T as Lapack>::POTRF_LWORK, s)?;
                }
                let mut work = dev.alloc::<T>(lwork.max(1) as usize)?;
                let (ap, _ga) = a.device_ptr_mut(&dev.stream);
                let (kp, _gk) = work.device_ptr_mut(&dev.stream);
                let (ip, _gi) = info.device_ptr_mut(&dev.stream);
                // SAFETY: buffers sized as cuSOLVER asked: a n×n, work lwork, info 1.
                let s = unsafe { <T as Lapack>::potrf(h, ni, ap as *mut T, kp as *mut T, lwork, ip as *mut c_int) };
                cusolver_status(<T as Lapack>::POTRF, s)?;
            }
            match read_info(dev, &info)? {
                0 => {}
                i if i > 0 => {
                    return Err(Error::NotPositiveDefinite { op: "cholesky", pivot: i as usize - 1 });
                }
                i => return Err(bad_parameter(<T as Lapack>::POTRF, i)),
            }
            let f = dev.function(k::ZERO_UPPER, T::DTYPE)?;
            launch!(dev, f, grid(n * n); &mut a, &u(n))?;
            Ok(self.make(a, vec![n, n]))
        })
    }

    /// `op(T) X = B` (`left`) or `X op(T) = B`, `self = T: [N, N]`.
    pub(crate) fn trsm_solve(
        &self,
        b: &CudaStorage,
        lower: bool,
        transpose: bool,
        left: bool,
    ) -> Result<CudaStorage> {
        let n = self.dims[0];
        let (rows, cols) = (b.dims[0], b.dims[1]);
        each!(self, T, t => {
            let bb = b.typed::<T>("solve_triangular")?;
            if n == 0 || rows * cols == 0 {
                return Ok(b.reshaped(&b.dims));
            }
            let dev = &self.dev;
            let mut x = dev.stream.clone_dtod(&bb.slice(0..rows * cols)).map_err(driver("copy right-hand side"))?;
            // Row-major B is column-major Bᵀ; left: Xᵀ op(T)ᵀ = Bᵀ, right: op(T)ᵀ Xᵀ = Bᵀ,
            // and column-major T is the row-major Tᵀ, whose triangle is the other one.
            let (side, m, nn, ldb) = if left {
                (blas_sys::cublasSideMode_t::CUBLAS_SIDE_RIGHT, cols, n, cols)
            } else {
                (blas_sys::cublasSideMode_t::CUBLAS_SIDE_LEFT, n, rows, n)
            };
            let uplo = if lower {
                blas_sys::cublasFillMode_t::CUBLAS_FILL_MODE_UPPER
            } else {
                blas_sys::cublasFillMode_t::CUBLAS_FILL_MODE_LOWER
            };
            let trans = if transpose {
                blas_sys::cublasOperation_t::CUBLAS_OP_T
            } else {
                blas_sys::cublasOperation_t::CUBLAS_OP_N
            };
            let (mi, ni, ldbi, ldai) = (
                size(m, "solve_triangular")?,
                size(nn, "solve_triangular")?,
                size(ldb, "solve_triangular")?,
                size(n, "solve_triangular")?,
            );
            dev.ctx.bind_to_thread().map_err(driver("bind context"))?;
            {
                let blas = lock(&dev.blas);
                let (tp, _gt) = t.device_ptr(&dev.stream);
                let (xp, _gx) = x.device_ptr_mut(&dev.stream);
                // SAFETY: `t` holds n×n and `x` rows×cols elements, as the leading
                // dimensions describe.
                let s = unsafe {
                    <T as Lapack>::trsm(*blas.handle(), side, uplo, trans, mi, ni, tp as *const T, ldai, xp as *mut T, ldbi)
                };
                cublas_status(<T as Lapack>::TRSM, s)?;
            }
            Ok(self.make(x, b.dims.clone()))
        })
    }
}
