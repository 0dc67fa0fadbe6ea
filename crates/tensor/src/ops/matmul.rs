//! Matrix products and the covariance of a representation.

use crate::{BinaryOp, Error, Result, Tensor};

impl Tensor {
    fn matmul_imp(&self, rhs: &Tensor, lt: bool, rt: bool, op: &'static str) -> Result<Tensor> {
        let (m0, k0) = self.dims2()?;
        let (k1, n1) = rhs.dims2()?;
        let k_lhs = if lt { m0 } else { k0 };
        let k_rhs = if rt { n1 } else { k1 };
        if k_lhs != k_rhs {
            return Err(Error::ShapeMismatch {
                op,
                lhs: self.shape().to_vec(),
                rhs: rhs.shape().to_vec(),
            });
        }
        Ok(Tensor::from_storage(self.storage.matmul(
            &rhs.storage,
            lt,
            rt,
        )?))
    }

    /// `A · B` for `A: [m, k]`, `B: [k, n]`.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.matmul_imp(rhs, false, false, "matmul")
    }

    /// `Aᵀ · B` for `A: [k, m]`, `B: [k, n]` (weight gradients), without materialising `Aᵀ`.
    pub fn matmul_tn(&self, rhs: &Tensor) -> Result<Tensor> {
        self.matmul_imp(rhs, true, false, "matmul_tn")
    }

    /// `A · Bᵀ` for `A: [m, k]`, `B: [n, k]` (a linear layer's forward), without
    /// materialising `Bᵀ`.
    pub fn matmul_nt(&self, rhs: &Tensor) -> Result<Tensor> {
        self.matmul_imp(rhs, false, true, "matmul_nt")
    }

    /// The Gram matrix `Aᵀ · A` of a 2-D tensor, with the bits of `self.matmul_tn(self)`
    /// (on the CPU only the lower triangle is multiplied: see [`crate::linalg::gram`]).
    pub fn gram(&self) -> Result<Tensor> {
        self.dims2()?;
        Ok(Tensor::from_storage(self.storage.gram()?))
    }

    /// The rows minus their column means: `X_c = X − 1 μᵀ`.
    pub fn center_rows(&self) -> Result<Tensor> {
        let mean = self.col_means()?;
        self.broadcast_along(&mean, 1, BinaryOp::Sub)
    }

    /// Unbiased covariance of the rows of `X: [B, N]`: `Σ = X_cᵀ X_c / (B − 1)`, `[N, N]`.
    pub fn covariance(&self) -> Result<Tensor> {
        let (b, _) = self.dims2()?;
        if b < 2 {
            return Err(Error::InvalidArgument {
                op: "covariance",
                reason: format!("needs at least 2 rows, got {b}"),
            });
        }
        self.center_rows()?.gram()?.scale(1.0 / (b - 1) as f64)
    }
}
