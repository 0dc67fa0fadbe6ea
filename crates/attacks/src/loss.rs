//! The losses an attacker can maximise, as functions of each sample's logits `z_i ∈ R^K`
//! with label `y_i`, and their logit gradients.
//!
//! * Cross-entropy: `L_i = −log softmax(z_i)[y_i]`, `∂L_i/∂z_i = p_i − e_{y_i}`.
//! * Carlini–Wagner margin (Carlini & Wagner 2017): `L_i = max_{j≠y_i} z_ij − z_{i y_i}`,
//!   positive exactly when sample `i` is misclassified;
//!   `∂L_i/∂z_i = e_{j*} − e_{y_i}` with `j*` the first maximising `j ≠ y_i`. Needs `K ≥ 2`.
//! * Difference of logits ratio (Croce & Hein 2020, eq. 4):
//!   `L_i = −(z_{i y_i} − max_{j≠y_i} z_ij) / (z_{iπ_1} − z_{iπ_3} + 10⁻¹²)` with `π` the
//!   descending order of `z_i` (ties by index). Invariant to shifting and (positively)
//!   scaling the logits. With `m = z_y − z_{j*}` and `d = z_{π_1} − z_{π_3} + 10⁻¹²`,
//!   `∂L_i/∂z_i = −(e_y − e_{j*})/d + m/d² · (e_{π_1} − e_{π_3})`. Needs `K ≥ 3`.
//!
//! The margin and the ratio are piecewise smooth; at a tie the gradient above is that of
//! the piece the tie-breaking rule picks. Both are computed in `f64` on the host (`[B, K]`
//! logits are small), whatever the logits' dtype.

use specreg_tensor::Tensor;

use crate::Result;
use crate::classifier::{Classifier, LossGradient, ToVecF64, per_sample_loss};
use crate::error::{AttackError, invalid, invalid_data};
use crate::perturb::vector;

/// The per-sample loss an attack maximises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AttackLoss {
    /// Softmax cross-entropy (the paper's attacks).
    #[default]
    CrossEntropy,
    /// The Carlini–Wagner margin `max_{j≠y} z_j − z_y`.
    CwMargin,
    /// Croce & Hein's difference of logits ratio (needs at least 3 classes).
    Dlr,
}

impl AttackLoss {
    /// A short name: `CE`, `CW` or `DLR`.
    pub fn name(&self) -> &'static str {
        match self {
            AttackLoss::CrossEntropy => "CE",
            AttackLoss::CwMargin => "CW",
            AttackLoss::Dlr => "DLR",
        }
    }

    /// The fewest classes the loss is defined for.
    pub fn min_classes(&self) -> usize {
        match self {
            AttackLoss::CrossEntropy | AttackLoss::CwMargin => 2,
            AttackLoss::Dlr => 3,
        }
    }

    /// Per-sample losses of `logits: [B, K]` against `labels` and their gradients with
    /// respect to the logits (`[B, K]`, in the logits' dtype and on their device).
    ///
    /// # Errors
    /// Fewer classes than [`min_classes`](AttackLoss::min_classes), a label count other
    /// than `B` or a label `≥ K`, or a non-finite logit or loss.
    pub fn evaluate(&self, logits: &Tensor, labels: &[usize]) -> Result<LogitGradient> {
        if *self == AttackLoss::CrossEntropy {
            let (losses, _, grad_logits) = per_sample_loss(logits, labels)?;
            return Ok(LogitGradient {
                losses,
                grad_logits,
            });
        }
        let (b, k) = logits.dims2()?;
        let z = self.checked_logits(logits, labels, b, k)?;
        let mut losses = Vec::with_capacity(b);
        let mut grad = vec![0.0f64; b * k];
        for (i, &y) in labels.iter().enumerate() {
            let row = &z[i * k..(i + 1) * k];
            let g = &mut grad[i * k..(i + 1) * k];
            let loss = match self {
                AttackLoss::CwMargin => cw_row(row, y, g),
                _ => dlr_row(row, y, g),
            };
            if !loss.is_finite() {
                return Err(AttackError::NonFinite {
                    what: format!("{} loss", self.name()),
                    value: loss,
                    sample: i,
                });
            }
            losses.push(loss);
        }
        let grad_logits = vector(&grad, logits.dtype(), &logits.device())?.reshape(&[b, k])?;
        Ok(LogitGradient {
            losses,
            grad_logits,
        })
    }

    /// The logits as `f64`, after checking the class count, the labels and finiteness.
    fn checked_logits(
        &self,
        logits: &Tensor,
        labels: &[usize],
        b: usize,
        k: usize,
    ) -> Result<Vec<f64>> {
        let what = format!("{} loss", self.name());
        if k < self.min_classes() {
            return Err(invalid(
                &what,
                format!(
                    "needs at least {} classes, the model has {k}",
                    self.min_classes()
                ),
            ));
        }
        if labels.len() != b {
            return Err(invalid_data(
                &what,
                format!("{b} rows of logits but {} labels", labels.len()),
            ));
        }
        if let Some(&y) = labels.iter().find(|&&y| y >= k) {
            return Err(invalid_data(
                &what,
                format!("label {y} is not one of the {k} classes"),
            ));
        }
        let z = logits.to_vec_f64()?;
        if let Some((at, &value)) = z.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(AttackError::NonFinite {
                what: format!("{what}: logit"),
                value,
                sample: at / k,
            });
        }
        Ok(z)
    }
}

impl std::fmt::Display for AttackLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Per-sample losses of a batch of logits and their gradients with respect to the logits:
/// what a loss hands to [`Classifier::loss_and_input_gradient_with`].
#[derive(Debug, Clone)]
pub struct LogitGradient {
    /// `L_i`, one per row of the logits.
    pub losses: Vec<f64>,
    /// `∂L_i/∂z_i` stacked as rows, `[B, K]` like the logits (the gradient of each sample's
    /// own loss, not of the batch mean).
    pub grad_logits: Tensor,
}

/// The first `j ≠ y` with the largest `z_j`.
fn best_other(z: &[f64], y: usize) -> usize {
    let mut best = usize::from(y == 0);
    for (j, &v) in z.iter().enumerate() {
        if j != y && v > z[best] {
            best = j;
        }
    }
    best
}

/// The CW margin of one row, writing its gradient into `g` (zeroed).
fn cw_row(z: &[f64], y: usize, g: &mut [f64]) -> f64 {
    let j = best_other(z, y);
    g[j] += 1.0;
    g[y] -= 1.0;
    z[j] - z[y]
}

/// The DLR loss of one row, writing its gradient into `g` (zeroed).
fn dlr_row(z: &[f64], y: usize, g: &mut [f64]) -> f64 {
    let j = best_other(z, y);
    // The three largest logits, in descending order with ties broken by index.
    let mut order: Vec<usize> = (0..z.len()).collect();
    order.sort_by(|&a, &b| z[b].total_cmp(&z[a]).then(a.cmp(&b)));
    let (p1, p3) = (order[0], order[2]);
    let m = z[y] - z[j];
    let d = z[p1] - z[p3] + 1e-12;
    g[y] -= 1.0 / d;
    g[j] += 1.0 / d;
    g[p1] += m / (d * d);
    g[p3] -= m / (d * d);
    -m / d
}

/// Per-sample values and input gradients of `loss` for `model`: the classifier's own
/// cross-entropy path for [`AttackLoss::CrossEntropy`] (so the paper's attacks need nothing
/// more of a classifier), its vector-Jacobian product for the others.
pub(crate) fn loss_gradient<C: Classifier + ?Sized>(
    model: &mut C,
    x: &Tensor,
    labels: &[usize],
    loss: AttackLoss,
) -> Result<LossGradient> {
    match loss {
        AttackLoss::CrossEntropy => model.loss_and_input_gradient(x, labels),
        _ => model.loss_and_input_gradient_with(x, &mut |z: &Tensor| loss.evaluate(z, labels)),
    }
}

/// Per-sample values of `loss` and predictions at `logits` (no input gradient).
pub(crate) fn loss_values(
    logits: &Tensor,
    labels: &[usize],
    loss: AttackLoss,
) -> Result<(Vec<f64>, Vec<usize>)> {
    match loss {
        AttackLoss::CrossEntropy => {
            let (losses, predictions, _) = per_sample_loss(logits, labels)?;
            Ok((losses, predictions))
        }
        _ => {
            let values = loss.evaluate(logits, labels)?;
            Ok((values.losses, logits.argmax_rows()?))
        }
    }
}
