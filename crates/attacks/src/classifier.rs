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
//!
//! Everything a classifier returns stays on its device as tensors (losses, predictions and
//! gradients alike), so that an attack step needs no device → host read; attacks compare
//! and select with tensor ops and read their results once per batch.

use specreg_tensor::{DType, Device, Tensor};

use crate::Result;
use crate::error::AttackError;
use crate::loss::{AttackLoss, LogitGradient};

/// Per-sample losses, predictions and input gradients of a batch, from
/// [`Classifier::loss_and_input_gradient`], all on the classifier's device.
#[derive(Debug, Clone)]
pub struct LossGradient {
    /// Per-sample loss `[B]`: the cross-entropy `−log softmax(f(x_i))[y_i]` from
    /// [`Classifier::loss_and_input_gradient`], the given loss's values from
    /// [`Classifier::loss_and_input_gradient_with`]. Any float dtype (attacks compare in
    /// `f64`).
    pub losses: Tensor,
    /// Per-sample predicted class `[B]`: the argmax of the logits, first on ties, as whole
    /// numbers in any float dtype ([`Tensor::row_argmax`]).
    pub predictions: Tensor,
    /// `∂L_i/∂x_i` stacked as rows, `[B, D]`: the gradient of each sample's own loss (not
    /// of the batch mean).
    pub grad: Tensor,
}

impl LossGradient {
    /// The losses of `loss` at `logits`, the predictions `logits.row_argmax()`, and the input
    /// gradient `grad` a classifier back-propagated from `loss.grad_logits`.
    pub fn new(logits: &Tensor, loss: LogitGradient, grad: Tensor) -> Result<Self> {
        Ok(Self {
            losses: loss.losses,
            predictions: logits.row_argmax()?,
            grad,
        })
    }
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

/// Per-sample cross-entropy losses (`[B]`, `f64`) of `logits: [B, K]` and the per-sample
/// logit gradient `p_i − e_{y_i}` (`[B, K]`): [`AttackLoss::CrossEntropy`]'s
/// [`evaluate`](AttackLoss::evaluate).
///
/// A helper for implementors of [`Classifier`]: back-propagate the returned gradient
/// through the model to get [`LossGradient::grad`], then build the result with
/// [`LossGradient::new`].
///
/// # Errors
/// A label count other than `B`, a label `≥ K`, or no rows.
pub fn per_sample_loss(logits: &Tensor, labels: &[usize]) -> Result<LogitGradient> {
    AttackLoss::CrossEntropy.evaluate(logits, labels)
}
