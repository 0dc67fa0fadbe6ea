//! Log-softmax and softmax cross-entropy over the rows of a `[B, C]` logit tensor.

use crate::{Error, Result, Tensor};

impl Tensor {
    /// Row-wise `log softmax`, computed stably (the row maximum is subtracted first).
    pub fn log_softmax(&self) -> Result<Tensor> {
        self.expect_rank("log_softmax", 2)?;
        Ok(Tensor::from_storage(self.storage.log_softmax()?))
    }

    /// Row-wise softmax.
    pub fn softmax(&self) -> Result<Tensor> {
        self.log_softmax()?.exp()
    }

    fn check_labels(&self, labels: &[usize]) -> Result<()> {
        let (b, c) = self.dims2()?;
        if labels.len() != b {
            return Err(Error::ShapeMismatch {
                op: "cross_entropy",
                lhs: self.shape().to_vec(),
                rhs: vec![labels.len()],
            });
        }
        if let Some((index, &label)) = labels.iter().enumerate().find(|(_, l)| **l >= c) {
            return Err(Error::LabelOutOfRange {
                index,
                label,
                classes: c,
            });
        }
        Ok(())
    }

    /// Per-sample cross entropy `−log softmax(x_b)[y_b]`, shape `[B]`.
    pub fn cross_entropy_per_sample(&self, labels: &[usize]) -> Result<Tensor> {
        self.check_labels(labels)?;
        Ok(Tensor::from_storage(self.storage.cross_entropy(labels)?.0))
    }

    /// Mean softmax cross entropy over the batch and its gradient with respect to the
    /// logits, `(softmax(x) − onehot(y)) / B`.
    pub fn softmax_cross_entropy(&self, labels: &[usize]) -> Result<(f64, Tensor)> {
        self.check_labels(labels)?;
        let b = labels.len();
        if b == 0 {
            return Err(Error::InvalidArgument {
                op: "cross_entropy",
                reason: "empty batch".into(),
            });
        }
        let (loss, grad) = self.storage.cross_entropy(labels)?;
        let mean = loss.sum_all()? / b as f64;
        Ok((mean, Tensor::from_storage(grad).scale(1.0 / b as f64)?))
    }
}
