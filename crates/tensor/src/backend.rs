//! The small trait every storage backend implements.
//!
//! The [`Tensor`](crate::Tensor) layer validates shapes, dtypes and devices once, then hands
//! the work to one of these methods; backends may assume valid operands.

use crate::{AdamCoefficients, DType, Result};

/// Elementwise functions of one argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// `-x`
    Neg,
    /// `eˣ`
    Exp,
    /// `ln x`
    Log,
    /// `√x`
    Sqrt,
    /// `x²`
    Sqr,
    /// `|x|`
    Abs,
    /// `1/x`
    Recip,
    /// `tanh x`
    Tanh,
    /// `max(x, 0)`
    Relu,
    /// `1 / (1 + e⁻ˣ)`
    Sigmoid,
    /// `sign x` (−1, 0 or +1; NaN stays NaN)
    Sign,
}

/// Elementwise functions of two arguments of the same shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a − b`
    Sub,
    /// `a · b`
    Mul,
    /// `a / b`
    Div,
    /// `max(a, b)`
    Maximum,
    /// `min(a, b)`
    Minimum,
    /// tanh backward: `a` is the output `y = tanh x`, `b` the upstream gradient: `b (1 − a²)`
    TanhBackward,
    /// sigmoid backward: `a` is the output `y`, `b` the upstream gradient: `b y (1 − y)`
    SigmoidBackward,
    /// ReLU backward: `a` is the input `x`, `b` the upstream gradient: `b · [x > 0]`
    ReluBackward,
    /// `[a > b]`: 1 where `a > b`, else 0 (0 when either is NaN)
    Greater,
    /// `[a = b]`: 1 where `a == b`, else 0 (0 when either is NaN)
    Equal,
}

/// The new parameter and optimiser state of one fused Adam update, on one backend.
#[derive(Debug)]
pub(crate) struct AdamParts<S> {
    pub(crate) param: S,
    pub(crate) exp_avg: S,
    pub(crate) exp_avg_sq: S,
    pub(crate) max_exp_avg_sq: Option<S>,
}

impl<S> AdamParts<S> {
    /// The same parts, each wrapped by `f`.
    pub(crate) fn map<U>(self, f: impl Fn(S) -> U) -> AdamParts<U> {
        AdamParts {
            param: f(self.param),
            exp_avg: f(self.exp_avg),
            exp_avg_sq: f(self.exp_avg_sq),
            max_exp_avg_sq: self.max_exp_avg_sq.map(f),
        }
    }
}

pub(crate) trait BackendStorage: Sized {
    fn dims(&self) -> &[usize];
    fn dtype(&self) -> DType;
    fn to_dtype(&self, dtype: DType) -> Result<Self>;
    fn reshape(&self, dims: &[usize]) -> Result<Self>;
    fn permute(&self, axes: &[usize]) -> Result<Self>;
    fn unary(&self, op: UnaryOp) -> Result<Self>;
    fn affine(&self, mul: f64, add: f64) -> Result<Self>;
    fn clamp(&self, lo: f64, hi: f64) -> Result<Self>;
    fn binary(&self, rhs: &Self, op: BinaryOp) -> Result<Self>;
    /// `self op rhs` where `rhs` is 1-D and runs along `axis` of `self`.
    fn broadcast_along(&self, rhs: &Self, axis: usize, op: BinaryOp) -> Result<Self>;
    fn sum_axis(&self, axis: usize) -> Result<Self>;
    fn sum_all(&self) -> Result<f64>;
    fn max_abs(&self) -> Result<f64>;
    /// Per-row argmax of a `[B, K]` tensor as a `[B]` tensor of indices in `self`'s dtype.
    fn argmax_rows(&self) -> Result<Self>;
    /// Rows `idx` (indices along axis 0, validated) of a tensor of rank ≥ 1.
    fn index_select(&self, idx: &[usize]) -> Result<Self>;
    /// The sum of every element, accumulated in `f64` in a fixed order, as a 0-D `f64`
    /// storage on the same device.
    fn sum_all_f64(&self) -> Result<Self>;
    /// The indices of a 1-D storage sorted by descending value (stable: ties keep index
    /// order; NaN sorts first, as the largest), as whole numbers in `self`'s dtype.
    fn argsort_descending(&self) -> Result<Self>;
    /// `out[k] = self[idx[k]]` for 1-D `self` and `idx` (indices validated by the caller's
    /// contract: whole numbers below `self`'s length; others are an error).
    fn gather(&self, idx: &Self) -> Result<Self>;
    /// `out[idx[k]] = self[k]` into `len` zeros, for 1-D `self` and `idx` (a later `k`
    /// wins on repeated indices).
    fn scatter(&self, idx: &Self, len: usize) -> Result<Self>;
    /// The 1-D storages `parts` one after another.
    fn concat(parts: &[&Self]) -> Result<Self>;
    /// `self ≠ 0 ? on_true : on_false`, where `self` (the mask) has the operands' shape, or
    /// is 1-D and runs along their axis 0 (one choice per row).
    fn where_cond(&self, on_true: &Self, on_false: &Self) -> Result<Self>;
    /// One Adam update of the parameter `self` (see `Tensor::adam_update`); operands share
    /// shape and dtype.
    fn adam_update(
        &self,
        grad: &Self,
        exp_avg: &Self,
        exp_avg_sq: &Self,
        max_exp_avg_sq: Option<&Self>,
        k: &AdamCoefficients,
    ) -> Result<AdamParts<Self>>;
    fn matmul(&self, rhs: &Self, lhs_t: bool, rhs_t: bool) -> Result<Self>;
    /// `selfᵀ · self`, the Gram matrix of a 2-D `self`. By default the general product; a
    /// backend may use the symmetry, with the general product's result.
    fn gram(&self) -> Result<Self> {
        self.matmul(self, true, false)
    }
    fn log_softmax(&self) -> Result<Self>;
    /// Per-sample `−log softmax(x)[y]` (shape `[B]`) and `softmax(x) − onehot(y)` (`[B, C]`).
    fn cross_entropy(&self, labels: &[usize]) -> Result<(Self, Self)>;
    fn conv2d(&self, w: &Self) -> Result<Self>;
    fn conv2d_backward_input(&self, w: &Self) -> Result<Self>;
    fn conv2d_backward_weight(&self, grad_out: &Self, kh: usize, kw: usize) -> Result<Self>;
    fn max_pool2d(&self) -> Result<(Self, Self)>;
    fn max_pool2d_backward(&self, argmax: &Self, in_h: usize, in_w: usize) -> Result<Self>;
    fn max_pool2d_gather(&self, argmax: &Self) -> Result<Self>;
    fn symmetric_eigen(&self) -> Result<(Self, Self)>;
    fn cholesky(&self) -> Result<Self>;
    /// `op(T) X = B` (`left`) or `X op(T) = B` (right), `self = T`.
    fn solve_triangular(&self, b: &Self, lower: bool, transpose: bool, left: bool) -> Result<Self>;
}
