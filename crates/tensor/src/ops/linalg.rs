//! Symmetric eigendecomposition, Cholesky and triangular solves on 2-D tensors.

use crate::linalg::{Side, Triangle};
use crate::{Error, Result, Tensor};

impl Tensor {
    fn expect_square(&self, op: &'static str) -> Result<usize> {
        let (r, c) = self.dims2()?;
        if r != c {
            return Err(Error::InvalidArgument {
                op,
                reason: format!("matrix is {r}x{c}, not square"),
            });
        }
        Ok(r)
    }

    /// Eigendecomposition of a symmetric matrix (only its lower triangle is read).
    ///
    /// Returns `(λ, V)`: eigenvalues `[N]` in **descending** order and eigenvectors as the
    /// columns of `V: [N, N]`, each signed so its largest-magnitude entry is positive.
    pub fn symmetric_eigen(&self) -> Result<(Tensor, Tensor)> {
        self.expect_square("symmetric_eigen")?;
        let (v, u) = self.storage.symmetric_eigen()?;
        Ok((Tensor::from_storage(v), Tensor::from_storage(u)))
    }

    /// Lower Cholesky factor `L` with `self = L Lᵀ` (only the lower triangle is read). Fails
    /// with [`Error::NotPositiveDefinite`] naming the pivot.
    pub fn cholesky(&self) -> Result<Tensor> {
        self.expect_square("cholesky")?;
        Ok(Tensor::from_storage(self.storage.cholesky()?))
    }

    /// Solves `op(T) X = B` ([`Side::Left`], `B: [N, K]`) or `X op(T) = B`
    /// ([`Side::Right`], `B: [K, N]`) with `self = T: [N, N]` triangular (`tri` says which
    /// triangle is read) and `op(T) = Tᵀ` when `transpose`.
    pub fn solve_triangular(
        &self,
        b: &Tensor,
        side: Side,
        tri: Triangle,
        transpose: bool,
    ) -> Result<Tensor> {
        let n = self.expect_square("solve_triangular")?;
        let (rows, cols) = b.dims2()?;
        let shared = if side == Side::Left { rows } else { cols };
        if shared != n {
            return Err(Error::ShapeMismatch {
                op: "solve_triangular",
                lhs: self.shape().to_vec(),
                rhs: b.shape().to_vec(),
            });
        }
        let lower = tri == Triangle::Lower;
        Ok(Tensor::from_storage(self.storage.solve_triangular(
            &b.storage,
            lower,
            transpose,
            side == Side::Left,
        )?))
    }
}
