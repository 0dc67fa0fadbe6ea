//! Tensor operations, grouped as the paper's code uses them. Each method validates its
//! operands (shapes here; dtypes and devices in the storage dispatch) and then hands off to
//! the backend.

mod batch_norm;
mod conv;
mod elementwise;
mod linalg;
mod loss;
mod matmul;
mod optim;
mod select;

pub use batch_norm::BatchNormSums;
pub use optim::{AdamCoefficients, AdamUpdate};

use crate::{Error, Result, Tensor};

impl Tensor {
    pub(crate) fn expect_rank(&self, op: &'static str, rank: usize) -> Result<()> {
        if self.rank() != rank {
            return Err(Error::RankMismatch {
                op,
                expected: rank,
                got: self.shape().to_vec(),
            });
        }
        Ok(())
    }

    pub(crate) fn expect_same_shape(&self, op: &'static str, other: &Tensor) -> Result<()> {
        if self.shape() != other.shape() {
            return Err(Error::ShapeMismatch {
                op,
                lhs: self.shape().to_vec(),
                rhs: other.shape().to_vec(),
            });
        }
        Ok(())
    }
}
