//! Launchers for the elementwise, reduction and selection kernels (`elementwise.cu`,
//! `reduce.cu`, `select.cu`). The tensor layer has validated shapes; here only dtypes are
//! checked.
//!
//! Compile-checked, not yet run on a GPU.

use cudarc::driver::CudaSlice;

use super::device::{BadIndex, driver};
use super::kernels::{self as k, Kernel};
use super::storage::{CudaElem, CudaStorage, blocks, each, grid, launch, u};
use crate::Element as _;
use crate::{BinaryOp, DType, Error, Result, UnaryOp};

/// The op code `elementwise.cu`'s `unary_apply` switches on.
fn unary_code(op: UnaryOp) -> i32 {
    match op {
        UnaryOp::Neg => 0,
        UnaryOp::Exp => 1,
        UnaryOp::Log => 2,
        UnaryOp::Sqrt => 3,
        UnaryOp::Sqr => 4,
        UnaryOp::Abs => 5,
        UnaryOp::Recip => 6,
        UnaryOp::Tanh => 7,
        UnaryOp::Relu => 8,
        UnaryOp::Sigmoid => 9,
        UnaryOp::Sign => 10,
    }
}

/// The op code `elementwise.cu`'s `binary_apply` switches on.
pub(crate) fn binary_code(op: BinaryOp) -> i32 {
    match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
        BinaryOp::Maximum => 4,
        BinaryOp::Minimum => 5,
        BinaryOp::TanhBackward => 6,
        BinaryOp::SigmoidBackward => 7,
        BinaryOp::ReluBackward => 8,
        BinaryOp::Greater => 9,
        BinaryOp::Equal => 10,
    }
}

/// Rank limit of a materialised permutation (the kernel's `Dims8`).
const MAX_RANK: usize = 8;

impl CudaStorage {
    fn map1<T: CudaElem>(&self, kernel: Kernel, x: &CudaSlice<T>, op: i32) -> Result<CudaStorage> {
        let n = self.len();
        let mut out = self.dev.alloc::<T>(n)?;
        if n > 0 {
            let f = self.dev.function(kernel, T::DTYPE)?;
            launch!(self.dev, f, grid(n); x, &mut out, &u(n), &op)?;
        }
        Ok(self.make(out, self.dims.clone()))
    }

    pub(crate) fn unary_op(&self, op: UnaryOp) -> Result<CudaStorage> {
        each!(self, T, x => self.map1::<T>(k::UNARY, x, unary_code(op)))
    }

    pub(crate) fn binary_op(&self, rhs: &CudaStorage, op: BinaryOp) -> Result<CudaStorage> {
        each!(self, T, a => {
            let b = rhs.typed::<T>("binary")?;
            let n = self.len();
            let mut out = self.dev.alloc::<T>(n)?;
            if n > 0 {
                let f = self.dev.function(k::BINARY, T::DTYPE)?;
                launch!(self.dev, f, grid(n); a, b, &mut out, &u(n), &binary_code(op))?;
            }
            Ok(self.make(out, self.dims.clone()))
        })
    }

    pub(crate) fn broadcast_op(
        &self,
        v: &CudaStorage,
        axis: usize,
        op: BinaryOp,
    ) -> Result<CudaStorage> {
        each!(self, T, a => {
            let vb = v.typed::<T>("broadcast")?;
            let n = self.len();
            let inner: usize = self.dims[axis + 1..].iter().product();
            let mut out = self.dev.alloc::<T>(n)?;
            if n > 0 {
                let f = self.dev.function(k::BROADCAST, T::DTYPE)?;
                launch!(self.dev, f, grid(n);
                    a, vb, &mut out, &u(n), &u(inner.max(1)), &u(v.len()), &binary_code(op))?;
            }
            Ok(self.make(out, self.dims.clone()))
        })
    }

    pub(crate) fn affine_op(&self, mul: f64, add: f64) -> Result<CudaStorage> {
        each!(self, T, x => self.map_pair::<T>(k::AFFINE, x, T::of_f64(mul), T::of_f64(add)))
    }

    pub(crate) fn clamp_op(&self, lo: f64, hi: f64) -> Result<CudaStorage> {
        each!(self, T, x => self.map_pair::<T>(k::CLAMP, x, T::of_f64(lo), T::of_f64(hi)))
    }

    fn map_pair<T: CudaElem>(
        &self,
        kernel: Kernel,
        x: &CudaSlice<T>,
        p: T,
        q: T,
    ) -> Result<CudaStorage> {
        let n = self.len();
        let mut out = self.dev.alloc::<T>(n)?;
        if n > 0 {
            let f = self.dev.function(kernel, T::DTYPE)?;
            launch!(self.dev, f, grid(n); x, &mut out, &u(n), &p, &q)?;
        }
        Ok(self.make(out, self.dims.clone()))
    }

    pub(crate) fn where_op(&self, t: &CudaStorage, f: &CudaStorage) -> Result<CudaStorage> {
        each!(self, T, m => {
            let dtype_error = |other: DType| Error::DTypeMismatch {
                op: "where_cond",
                lhs: T::DTYPE,
                rhs: other,
            };
            let tb = T::cuda_slice(&t.data).ok_or_else(|| dtype_error(t.dtype_of()))?;
            let fb = T::cuda_slice(&f.data).ok_or_else(|| dtype_error(f.dtype_of()))?;
            let n = t.len();
            // One mask entry per element, or per row of the operands.
            let row_len = if self.dims == t.dims { 1 } else { n / self.len().max(1) };
            let mut out = self.dev.alloc::<T>(n)?;
            if n > 0 {
                let func = self.dev.function(k::WHERE, T::DTYPE)?;
                launch!(self.dev, func, grid(n); m, tb, fb, &mut out, &u(n), &u(row_len.max(1)))?;
            }
            Ok(self.make(out, t.dims.clone()))
        })
    }

    /// A new shape over the same buffer.
    pub(crate) fn reshaped(&self, dims: &[usize]) -> CudaStorage {
        CudaStorage {
            data: self.data.clone(),
            dims: dims.to_vec(),
            dev: self.dev.clone(),
        }
    }

    /// Output axis `i` is input axis `axes[i]`, materialised in row-major order.
    pub(crate) fn permuted(&self, axes: &[usize]) -> Result<CudaStorage> {
        let rank = self.dims.len();
        if rank > MAX_RANK {
            return Err(Error::InvalidArgument {
                op: "permute",
                reason: format!("rank {rank} exceeds the CUDA kernel's limit of {MAX_RANK}"),
            });
        }
        let mut in_strides = vec![1usize; rank];
        for d in (0..rank.saturating_sub(1)).rev() {
            in_strides[d] = in_strides[d + 1] * self.dims[d + 1];
        }
        let (mut dims, mut strides) = ([1u64; MAX_RANK], [0u64; MAX_RANK]);
        for (i, &a) in axes.iter().enumerate() {
            dims[i] = u(self.dims[a]);
            strides[i] = u(in_strides[a]);
        }
        let out_dims: Vec<usize> = axes.iter().map(|&a| self.dims[a]).collect();
        each!(self, T, x => {
            let n = self.len();
            let mut out = self.dev.alloc::<T>(n)?;
            if n > 0 {
                let f = self.dev.function(k::PERMUTE, T::DTYPE)?;
                launch!(self.dev, f, grid(n); x, &mut out, &u(n), &(rank as i32), &dims, &strides)?;
            }
            Ok(self.make(out, out_dims))
        })
    }

    pub(crate) fn cast(&self, dtype: DType) -> Result<CudaStorage> {
        if dtype == self.dtype_of() {
            return Ok(self.reshaped(&self.dims));
        }
        let n = self.len();
        let f = self.dev.function(k::CAST_TO, dtype)?;
        match &*self.data {
            super::storage::CudaData::F32(x) => {
                let mut out = self.dev.alloc::<f64>(n)?;
                if n > 0 {
                    launch!(self.dev, f, grid(n); x, &mut out, &u(n))?;
                }
                Ok(self.make(out, self.dims.clone()))
            }
            super::storage::CudaData::F64(x) => {
                let mut out = self.dev.alloc::<f32>(n)?;
                if n > 0 {
                    launch!(self.dev, f, grid(n); x, &mut out, &u(n))?;
                }
                Ok(self.make(out, self.dims.clone()))
            }
        }
    }

    /// Two-pass deterministic reduction of every element to one `f64` on the device.
    fn reduce_all(&self, partial: Kernel, finish: Kernel) -> Result<CudaSlice<f64>> {
        let n = self.len();
        // The number of blocks depends on `n` only, so the tree is the same on every run.
        let g = n.div_ceil(super::storage::THREADS as usize).clamp(1, 1024);
        let mut parts = self.dev.alloc::<f64>(g)?;
        let mut out = self.dev.alloc::<f64>(1)?;
        each!(self, T, x => {
            let f = self.dev.function(partial, T::DTYPE)?;
            launch!(self.dev, f, blocks(g); x, &u(n), &mut parts)?;
        });
        let f = self.dev.function(finish, DType::F64)?;
        launch!(self.dev, f, blocks(1); &parts, &u(g), &mut out)?;
        Ok(out)
    }

    pub(crate) fn sum_all_dev(&self) -> Result<CudaStorage> {
        let out = self.reduce_all(k::SUM_PARTIAL, k::SUM_FINAL)?;
        Ok(self.make(out, vec![]))
    }

    pub(crate) fn sum_all_host(&self) -> Result<f64> {
        let out = self.reduce_all(k::SUM_PARTIAL, k::SUM_FINAL)?;
        self.read_scalar(&out)
    }

    pub(crate) fn max_abs_host(&self) -> Result<f64> {
        let out = self.reduce_all(k::MAX_ABS_PARTIAL, k::MAX_ABS_FINAL)?;
        self.read_scalar(&out)
    }

    pub(crate) fn sum_over(&self, axis: usize) -> Result<CudaStorage> {
        let outer: usize = self.dims[..axis].iter().product();
        let len = self.dims[axis];
        let inner: usize = self.dims[axis + 1..].iter().product();
        let mut dims = self.dims.clone();
        dims.remove(axis);
        each!(self, T, x => {
            let out = self.sum_strided::<T>(x, outer, len, inner)?;
            Ok(self.make(out, dims))
        })
    }

    /// Sums `x` viewed as `[outer, len, inner]` over the middle axis: one block per row
    /// when the rows are long and contiguous, else one thread per output.
    pub(crate) fn sum_strided<T: CudaElem>(
        &self,
        x: &CudaSlice<T>,
        outer: usize,
        len: usize,
        inner: usize,
    ) -> Result<CudaSlice<T>> {
        let n = outer * inner;
        let mut out = self.dev.alloc::<T>(n)?;
        if n == 0 {
            return Ok(out);
        }
        if inner == 1 && len >= super::storage::THREADS as usize {
            let f = self.dev.function(k::SUM_ROWS, T::DTYPE)?;
            launch!(self.dev, f, blocks(outer.min(1 << 20)); x, &mut out, &u(outer), &u(len))?;
        } else {
            let f = self.dev.function(k::SUM_AXIS, T::DTYPE)?;
            launch!(self.dev, f, grid(n); x, &mut out, &u(outer), &u(len), &u(inner))?;
        }
        Ok(out)
    }

    pub(crate) fn argmax_of_rows(&self) -> Result<CudaStorage> {
        let (rows, cols) = (self.dims[0], self.dims[1]);
        each!(self, T, x => {
            let mut out = self.dev.alloc::<T>(rows)?;
            if rows > 0 {
                let f = self.dev.function(k::ARGMAX_ROWS, T::DTYPE)?;
                launch!(self.dev, f, grid(rows); x, &mut out, &u(rows), &u(cols))?;
            }
            Ok(self.make(out, vec![rows]))
        })
    }

    pub(crate) fn select_rows(&self, idx: &[usize]) -> Result<CudaStorage> {
        let row_len: usize = self.dims[1..].iter().product();
        let mut dims = self.dims.clone();
        dims[0] = idx.len();
        let n = idx.len() * row_len;
        let rows: Vec<u64> = idx.iter().map(|&i| u(i)).collect();
        let rows = self.dev.upload(&rows, "upload row indices")?;
        each!(self, T, x => {
            let mut out = self.dev.alloc::<T>(n)?;
            if n > 0 {
                let f = self.dev.function(k::INDEX_SELECT, T::DTYPE)?;
                launch!(self.dev, f, grid(n); x, &rows, &mut out, &u(n), &u(row_len))?;
            }
            Ok(self.make(out, dims))
        })
    }

    pub(crate) fn gather_by(&self, idx: &CudaStorage) -> Result<CudaStorage> {
        each!(self, T, x => {
            let ib = idx.typed::<T>("gather")?;
            let n = idx.len();
            let mut out = self.dev.alloc::<T>(n)?;
            if n > 0 {
                let f = self.dev.function(k::GATHER, T::DTYPE)?;
                let code = BadIndex::Gather as u64;
                self.dev.with_flag(|flag| {
                    launch!(self.dev, f, grid(n); x, ib, &mut out, &u(n), &u(self.len()), flag, &code)
                })?;
            }
            Ok(self.make(out, vec![n]))
        })
    }

    pub(crate) fn scatter_by(&self, idx: &CudaStorage, len: usize) -> Result<CudaStorage> {
        each!(self, T, x => {
            let ib = idx.typed::<T>("scatter")?;
            let n = self.len();
            let mut out = self.dev.zeros::<T>(len)?;
            if n > 0 {
                let mut winner = self.dev.zeros::<u64>(len)?;
                let claim = self.dev.function(k::SCATTER_CLAIM, T::DTYPE)?;
                let code = BadIndex::Scatter as u64;
                self.dev.with_flag(|flag| {
                    launch!(self.dev, claim, grid(n); ib, &u(n), &u(len), &mut winner, flag, &code)
                })?;
                let write = self.dev.function(k::SCATTER_WRITE, T::DTYPE)?;
                launch!(self.dev, write, grid(n); x, ib, &mut out, &u(n), &u(len), &winner)?;
            }
            Ok(self.make(out, vec![len]))
        })
    }

    pub(crate) fn argsort_desc(&self) -> Result<CudaStorage> {
        let n = self.len();
        each!(self, T, x => {
            let mut out = self.dev.alloc::<T>(n)?;
            if n > 0 {
                let f = self.dev.function(k::ARGSORT_DESC, T::DTYPE)?;
                let b = n.div_ceil(super::storage::THREADS as usize);
                launch!(self.dev, f, blocks(b); x, &mut out, &u(n))?;
            }
            Ok(self.make(out, vec![n]))
        })
    }

    /// The 1-D storages `parts` one after another (device-to-device copies).
    pub(crate) fn concat_parts(parts: &[&CudaStorage]) -> Result<CudaStorage> {
        let first = parts.first().ok_or(Error::InvalidArgument {
            op: "concat",
            reason: "no parts".into(),
        })?;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        each!(first, T, _x => {
            let mut out = first.dev.alloc::<T>(total)?;
            let mut at = 0;
            for p in parts {
                let src = p.typed::<T>("concat")?;
                let n = p.len();
                if n > 0 {
                    let mut dst = out.slice_mut(at..at + n);
                    first
                        .dev
                        .stream
                        .memcpy_dtod(&src.slice(0..n), &mut dst)
                        .map_err(driver("device to device copy"))?;
                }
                at += n;
            }
            Ok(first.make(out, vec![total]))
        })
    }
}
