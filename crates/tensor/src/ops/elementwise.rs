//! Elementwise maps, activations and their derivatives, broadcasts and reductions.

use crate::{BinaryOp, Error, Result, Tensor, UnaryOp};

macro_rules! unary_methods {
    ($($(#[$doc:meta])* $name:ident => $op:ident,)*) => {
        $( $(#[$doc])* pub fn $name(&self) -> Result<Tensor> { self.unary(UnaryOp::$op) } )*
    };
}

macro_rules! binary_methods {
    ($($(#[$doc:meta])* $name:ident => $op:ident,)*) => {
        $( $(#[$doc])* pub fn $name(&self, rhs: &Tensor) -> Result<Tensor> {
            self.binary(rhs, BinaryOp::$op)
        } )*
    };
}

impl Tensor {
    /// Applies `op` to every element.
    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        Ok(Tensor::from_storage(self.storage.unary(op)?))
    }

    unary_methods! {
        /// `-x`
        neg => Neg,
        /// `eˣ`
        exp => Exp,
        /// `ln x`
        log => Log,
        /// `√x`
        sqrt => Sqrt,
        /// `x²`
        sqr => Sqr,
        /// `|x|`
        abs => Abs,
        /// `1/x`
        recip => Recip,
        /// `tanh x`
        tanh => Tanh,
        /// `max(x, 0)`
        relu => Relu,
        /// logistic sigmoid
        sigmoid => Sigmoid,
        /// `sign x` ∈ {−1, 0, +1} (FGSM's step direction)
        sign => Sign,
    }

    /// Combines two tensors of the same shape elementwise.
    pub fn binary(&self, rhs: &Tensor, op: BinaryOp) -> Result<Tensor> {
        self.expect_same_shape("binary", rhs)?;
        Ok(Tensor::from_storage(self.storage.binary(&rhs.storage, op)?))
    }

    binary_methods! {
        /// `a + b`
        add => Add,
        /// `a − b`
        sub => Sub,
        /// `a ⊙ b`
        mul => Mul,
        /// `a / b`
        div => Div,
        /// elementwise maximum
        maximum => Maximum,
        /// elementwise minimum
        minimum => Minimum,
        /// `[a > b]` elementwise: 1 or 0, in the operands' dtype (0 where either is NaN)
        greater => Greater,
        /// `[a = b]` elementwise: 1 or 0, in the operands' dtype (0 where either is NaN)
        equal => Equal,
    }

    /// Gradient through `y = tanh x` given the output `self = y`: `grad ⊙ (1 − y²)`.
    pub fn tanh_backward(&self, grad: &Tensor) -> Result<Tensor> {
        self.binary(grad, BinaryOp::TanhBackward)
    }

    /// Gradient through the sigmoid given its output `self = y`: `grad ⊙ y ⊙ (1 − y)`.
    pub fn sigmoid_backward(&self, grad: &Tensor) -> Result<Tensor> {
        self.binary(grad, BinaryOp::SigmoidBackward)
    }

    /// Gradient through ReLU given its input `self = x`: `grad ⊙ [x > 0]`.
    pub fn relu_backward(&self, grad: &Tensor) -> Result<Tensor> {
        self.binary(grad, BinaryOp::ReluBackward)
    }

    /// `mul · x + add`.
    pub fn affine(&self, mul: f64, add: f64) -> Result<Tensor> {
        Ok(Tensor::from_storage(self.storage.affine(mul, add)?))
    }

    /// `s · x`.
    pub fn scale(&self, s: f64) -> Result<Tensor> {
        self.affine(s, 0.0)
    }

    /// `x + c`.
    pub fn add_scalar(&self, c: f64) -> Result<Tensor> {
        self.affine(1.0, c)
    }

    /// Clamps every element to `[lo, hi]` (NaN stays NaN).
    pub fn clamp(&self, lo: f64, hi: f64) -> Result<Tensor> {
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return Err(Error::InvalidArgument {
                op: "clamp",
                reason: format!("[{lo}, {hi}] is not an interval"),
            });
        }
        Ok(Tensor::from_storage(self.storage.clamp(lo, hi)?))
    }

    /// `self op v` with the 1-D `v` running along `axis` (e.g. a bias per column with
    /// `axis = 1` of a `[B, N]` tensor, or per channel with `axis = 1` of `[B, C, H, W]`).
    pub fn broadcast_along(&self, v: &Tensor, axis: usize, op: BinaryOp) -> Result<Tensor> {
        let fits = axis < self.rank() && v.rank() == 1 && v.shape()[0] == self.shape()[axis];
        if !fits {
            return Err(Error::ShapeMismatch {
                op: "broadcast_along",
                lhs: self.shape().to_vec(),
                rhs: v.shape().to_vec(),
            });
        }
        Ok(Tensor::from_storage(
            self.storage.broadcast_along(&v.storage, axis, op)?,
        ))
    }

    /// Row-broadcast add: `x[b, n] + v[n]` for a 2-D `x` (a bias).
    pub fn broadcast_add_rows(&self, v: &Tensor) -> Result<Tensor> {
        self.expect_rank("broadcast_add_rows", 2)?;
        self.broadcast_along(v, 1, BinaryOp::Add)
    }

    /// Sum over `axis`, which is removed.
    pub fn sum_axis(&self, axis: usize) -> Result<Tensor> {
        if axis >= self.rank() {
            return Err(Error::InvalidArgument {
                op: "sum_axis",
                reason: format!("axis {axis} out of range for shape {:?}", self.shape()),
            });
        }
        Ok(Tensor::from_storage(self.storage.sum_axis(axis)?))
    }

    /// Mean over `axis`, which is removed.
    pub fn mean_axis(&self, axis: usize) -> Result<Tensor> {
        let n = *self.shape().get(axis).unwrap_or(&0);
        if n == 0 {
            return Err(Error::InvalidArgument {
                op: "mean_axis",
                reason: format!("axis {axis} of shape {:?} is empty or absent", self.shape()),
            });
        }
        self.sum_axis(axis)?.scale(1.0 / n as f64)
    }

    /// Column sums of a 2-D tensor: `Σ_b x[b, n]`.
    pub fn col_sums(&self) -> Result<Tensor> {
        self.expect_rank("col_sums", 2)?;
        self.sum_axis(0)
    }

    /// Column means of a 2-D tensor.
    pub fn col_means(&self) -> Result<Tensor> {
        self.expect_rank("col_means", 2)?;
        self.mean_axis(0)
    }

    /// Sum of all elements, accumulated in `f64` in a fixed order.
    pub fn sum_all(&self) -> Result<f64> {
        crate::host_reads::count("sum_all");
        self.storage.sum_all()
    }

    /// Mean of all elements.
    pub fn mean_all(&self) -> Result<f64> {
        if self.elem_count() == 0 {
            return Err(Error::InvalidArgument {
                op: "mean_all",
                reason: "empty tensor".into(),
            });
        }
        crate::host_reads::count("mean_all");
        Ok(self.storage.sum_all()? / self.elem_count() as f64)
    }

    /// Largest absolute value (NaN if any element is NaN; 0 for an empty tensor).
    pub fn max_abs(&self) -> Result<f64> {
        crate::host_reads::count("max_abs");
        self.storage.max_abs()
    }

    /// Index of the largest element of each row of a 2-D tensor (first one on ties), read
    /// back to the host. [`Tensor::row_argmax`] keeps them on the device.
    pub fn argmax_rows(&self) -> Result<Vec<usize>> {
        let idx = self.row_argmax()?;
        crate::host_reads::count("argmax_rows");
        Ok(idx.host_array_f64()?.iter().map(|&i| i as usize).collect())
    }

    /// Index of the largest element of each row of a 2-D tensor `[B, K]` (first one on
    /// ties), as a `[B]` tensor of whole numbers in this tensor's dtype, on its device.
    /// Exact for `K ≤ 2²⁴` in `f32`.
    pub fn row_argmax(&self) -> Result<Tensor> {
        self.expect_rank("row_argmax", 2)?;
        Ok(Tensor::from_storage(self.storage.argmax_rows()?))
    }
}
