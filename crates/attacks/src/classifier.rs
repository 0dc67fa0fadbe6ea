//! The [`Classifier`] trait: what an attack needs from a model.
//!
//! An attack only ever asks two things of a model, for a batch `x: [B, D]` of inputs:
//! its logits, and for given labels the per-sample cross-entropy losses
//! `L_i = −log softmax(f(x_i))[y_i]` together with their input gradients `∂L_i/∂x_i`
//! (row `i` of the returned `[B, D]` tensor). Attacks on another loss of the logits (the
//! Carlini–Wagner margin, DLR) also ask for the vector-Jacobian product
//! [`Classifier::loss_and_input_gradient_with`]: the loss maps the logits `z` to per-sample
//! losses and `∂L_i/∂z_i`, the classifier back-propagates that to `∂L_i/∂x_i`.
//!
//! Samples should be independent: a classifier should not let one sample's output depend
//! on another's (so BatchNorm runs on its running statistics), otherwise an attack on a
//! batch is not an attack on each image. A classifier that breaks this on purpose (see
//! [`NetworkInMode`](crate::NetworkInMode)) says so with
//! [`Classifier::samples_independent`].
//!
//! [`specreg_nn::Network`] implements the trait in [`specreg_nn::Mode::Eval`]: BatchNorm
//! uses (and never updates) its running statistics, and the gradient comes from
//! `Network::backward_input`, which leaves every parameter gradient untouched.

use specreg_tensor::{DType, Device, Tensor};

use crate::Result;
use crate::error::AttackError;
use crate::loss::LogitGradient;

/// Per-sample losses, predictions and input gradients of a batch, from
/// [`Classifier::loss_and_input_gradient`].
#[derive(Debug, Clone)]
pub struct LossGradient {
    /// Per-sample loss, one per row: the cross-entropy `−log softmax(f(x_i))[y_i]` from
    /// [`Classifier::loss_and_input_gradient`], the given loss's values from
    /// [`Classifier::loss_and_input_gradient_with`].
    pub losses: Vec<f64>,
    /// Per-sample predicted class (argmax of the logits, first on ties).
    pub predictions: Vec<usize>,
    /// `∂L_i/∂x_i` stacked as rows, `[B, D]`: the gradient of each sample's own loss (not
    /// of the batch mean).
    pub grad: Tensor,
}

/// A model that attacks can query: logits and per-sample loss gradients of a batch.
///
/// Inputs are `[B, D]` tensors in the classifier's [`dtype`](Classifier::dtype) on its
/// [`device`](Classifier::device), with `D = `[`input_size`](Classifier::input_size).
/// Implement it for your own model to evaluate it with this crate; wrap your model's
/// errors in [`AttackError::Model`].
pub trait Classifier {
    /// Values per sample (`784` for MNIST).
    fn input_size(&self) -> usize;

    /// The element type inputs must have.
    fn dtype(&self) -> DType;

    /// The device inputs must live on.
    fn device(&self) -> Device;

    /// The logits `[B, K]` of `x: [B, D]`.
    fn logits(&mut self, x: &Tensor) -> Result<Tensor>;

    /// Per-sample cross-entropy losses, predictions and input gradients of `x: [B, D]`
    /// against `labels` (one per row).
    fn loss_and_input_gradient(&mut self, x: &Tensor, labels: &[usize]) -> Result<LossGradient>;

    /// Per-sample values and input gradients of any loss of the logits: compute the logits
    /// `z: [B, K]` of `x: [B, D]`, call `loss(&z)` for the per-sample losses and
    /// `∂L_i/∂z_i: [B, K]`, and back-propagate that upstream gradient to the input (a
    /// vector-Jacobian product). [`LossGradient::predictions`] are the argmax of `z`.
    ///
    /// Attacks on the cross-entropy never call this; the Carlini–Wagner and DLR attacks
    /// do. The default implementation returns [`AttackError::Unsupported`].
    fn loss_and_input_gradient_with(
        &mut self,
        x: &Tensor,
        loss: &mut dyn FnMut(&Tensor) -> Result<LogitGradient>,
    ) -> Result<LossGradient> {
        let _ = (x, loss);
        Err(AttackError::Unsupported {
            what: "Classifier::loss_and_input_gradient_with".into(),
            reason: "this classifier only gives cross-entropy gradients; implement the \
                     method to attack it with another loss"
                .into(),
        })
    }

    /// Whether each sample's logits depend on that sample alone (default `true`). Attacks
    /// that change the batch as they go (PGD's early exit) refuse classifiers for which it
    /// is `false`.
    fn samples_independent(&self) -> bool {
        true
    }
}

/// Per-sample losses, predictions and the per-sample logit gradient `p_i − e_{y_i}`.
///
/// A helper for implementors of [`Classifier`]: back-propagate the returned `[B, K]`
/// gradient through the model to get [`LossGradient::grad`].
pub fn per_sample_loss(
    logits: &Tensor,
    labels: &[usize],
) -> Result<(Vec<f64>, Vec<usize>, Tensor)> {
    let (b, _) = logits.dims2()?;
    let losses = logits.cross_entropy_per_sample(labels)?.to_vec_f64()?;
    if let Some((sample, &value)) = losses.iter().enumerate().find(|(_, l)| !l.is_finite()) {
        return Err(AttackError::NonFinite {
            what: "cross-entropy loss".into(),
            value,
            sample,
        });
    }
    let predictions = logits.argmax_rows()?;
    // The tensor crate returns the gradient of the batch *mean*; undo the 1/B.
    let (_, grad_mean) = logits.softmax_cross_entropy(labels)?;
    let grad = grad_mean.scale(b as f64)?;
    Ok((losses, predictions, grad))
}

/// Reads any float tensor as `f64` values.
pub(crate) trait ToVecF64 {
    fn to_vec_f64(&self) -> Result<Vec<f64>>;
}

impl ToVecF64 for Tensor {
    fn to_vec_f64(&self) -> Result<Vec<f64>> {
        Ok(match self.dtype() {
            DType::F32 => self.to_vec::<f32>()?.into_iter().map(f64::from).collect(),
            DType::F64 => self.to_vec::<f64>()?,
        })
    }
}
