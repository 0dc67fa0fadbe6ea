//! [`BackendStorage`] for [`CudaStorage`]: each method hands off to the launcher that
//! implements it (`elementwise.rs`, `gemm.rs`, `conv.rs`, `nn.rs`, `solver.rs`). Nothing
//! falls back to the CPU.
//!
//! Compile-checked, not yet run on a GPU.

use super::storage::CudaStorage;
use crate::backend::{AdamParts, BackendStorage};
use crate::{AdamCoefficients, BinaryOp, DType, Result, UnaryOp};

impl BackendStorage for CudaStorage {
    fn dims(&self) -> &[usize] {
        &self.dims
    }
    fn dtype(&self) -> DType {
        self.dtype_of()
    }
    fn to_dtype(&self, dtype: DType) -> Result<Self> {
        self.cast(dtype)
    }
    fn reshape(&self, dims: &[usize]) -> Result<Self> {
        Ok(self.reshaped(dims))
    }
    fn permute(&self, axes: &[usize]) -> Result<Self> {
        self.permuted(axes)
    }
    fn unary(&self, op: UnaryOp) -> Result<Self> {
        self.unary_op(op)
    }
    fn affine(&self, mul: f64, add: f64) -> Result<Self> {
        self.affine_op(mul, add)
    }
    fn clamp(&self, lo: f64, hi: f64) -> Result<Self> {
        self.clamp_op(lo, hi)
    }
    fn binary(&self, rhs: &Self, op: BinaryOp) -> Result<Self> {
        self.binary_op(rhs, op)
    }
    fn broadcast_along(&self, rhs: &Self, axis: usize, op: BinaryOp) -> Result<Self> {
        self.broadcast_op(rhs, axis, op)
    }
    fn sum_axis(&self, axis: usize) -> Result<Self> {
        self.sum_over(axis)
    }
    fn sum_all(&self) -> Result<f64> {
        self.sum_all_host()
    }
    fn max_abs(&self) -> Result<f64> {
        self.max_abs_host()
    }
    fn argmax_rows(&self) -> Result<Self> {
        self.argmax_of_rows()
    }
    fn index_select(&self, idx: &[usize]) -> Result<Self> {
        self.select_rows(idx)
    }
    fn sum_all_f64(&self) -> Result<Self> {
        self.sum_all_dev()
    }
    fn argsort_descending(&self) -> Result<Self> {
        self.argsort_desc()
    }
    fn gather(&self, idx: &Self) -> Result<Self> {
        self.gather_by(idx)
    }
    fn scatter(&self, idx: &Self, len: usize) -> Result<Self> {
        self.scatter_by(idx, len)
    }
    fn concat(parts: &[&Self]) -> Result<Self> {
        CudaStorage::concat_parts(parts)
    }
    fn where_cond(&self, on_true: &Self, on_false: &Self) -> Result<Self> {
        self.where_op(on_true, on_false)
    }
    fn adam_update(
        &self,
        grad: &Self,
        exp_avg: &Self,
        exp_avg_sq: &Self,
        max_exp_avg_sq: Option<&Self>,
        k: &AdamCoefficients,
    ) -> Result<AdamParts<Self>> {
        CudaStorage::adam_update(self, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, k)
    }
    fn matmul(&self, rhs: &Self, lhs_t: bool, rhs_t: bool) -> Result<Self> {
        self.matmul_op(rhs, lhs_t, rhs_t)
    }
    fn log_softmax(&self) -> Result<Self> {
        self.log_softmax_rows()
    }
    fn cross_entropy(&self, labels: &[usize]) -> Result<(Self, Self)> {
        self.cross_entropy_rows(labels)
    }
    fn conv2d(&self, w: &Self) -> Result<Self> {
        self.conv_forward(w)
    }
    fn conv2d_backward_input(&self, w: &Self) -> Result<Self> {
        self.conv_backward_input(w)
    }
    fn conv2d_backward_weight(&self, grad_out: &Self, kh: usize, kw: usize) -> Result<Self> {
        self.conv_backward_weight(grad_out, kh, kw)
    }
    fn max_pool2d(&self) -> Result<(Self, Self)> {
        self.max_pool()
    }
    fn max_pool2d_backward(&self, argmax: &Self, in_h: usize, in_w: usize) -> Result<Self> {
        self.max_pool_backward(argmax, in_h, in_w)
    }
    fn max_pool2d_gather(&self, argmax: &Self) -> Result<Self> {
        self.max_pool_gather(argmax)
    }
    fn symmetric_eigen(&self) -> Result<(Self, Self)> {
        self.eigh()
    }
    fn cholesky(&self) -> Result<Self> {
        self.cholesky_lower()
    }
    fn solve_triangular(&self, b: &Self, lower: bool, transpose: bool, left: bool) -> Result<Self> {
        self.trsm_solve(b, lower, transpose, left)
    }
}
