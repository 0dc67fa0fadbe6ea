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
//! the piece the tie-breaking rule picks (the first index among equal logits). All three
//! are computed with tensor ops on the logits' device, the margin and the ratio in `f64`
//! whatever the logits' dtype; nothing is read back to the host. A non-finite logit gives a
//! non-finite loss, which the attacks report as [`AttackError::NonFinite`](crate::AttackError)
//! when they read their results.

use specreg_tensor::{DType, Tensor};

use crate::Result;
use crate::classifier::{Classifier, LossGradient};
use crate::error::{invalid, invalid_data};
use crate::rowops::{nonfinite_rows, one_hot, one_hot_at, pick, row_offsets};

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

    /// Per-sample losses of `logits: [B, K]` against `labels` (`[B]`, `f64`) and their
    /// gradients with respect to the logits (`[B, K]`, in the logits' dtype and on their
    /// device).
    ///
    /// # Errors
    /// Fewer classes than [`min_classes`](AttackLoss::min_classes) for the margin and the
    /// ratio, a label count other than `B`, a label `≥ K`, or no rows.
    pub fn evaluate(&self, logits: &Tensor, labels: &[usize]) -> Result<LogitGradient> {
        let what = format!("{} loss", self.name());
        let (b, k) = logits.dims2()?;
        if *self != AttackLoss::CrossEntropy && k < self.min_classes() {
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
        if b == 0 {
            return Err(invalid_data(&what, "no samples"));
        }
        match self {
            AttackLoss::CrossEntropy => cross_entropy(logits, labels, b, k),
            AttackLoss::CwMargin | AttackLoss::Dlr => margin_loss(*self, logits, labels, b, k),
        }
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
    /// `L_i`, one per row of the logits: `[B]` on the logits' device, in `f64` as this
    /// crate's losses give it (any float dtype is accepted from a user's loss).
    pub losses: Tensor,
    /// `∂L_i/∂z_i` stacked as rows, `[B, K]` like the logits (the gradient of each sample's
    /// own loss, not of the batch mean).
    pub grad_logits: Tensor,
}

/// `L_i = −log softmax(z_i)[y_i]` and `p_i − e_{y_i}`.
///
/// The gradient is scaled by `1/B` and back by `B`, as the cross-entropy path this crate
/// used before did (the tensor crate's mean-loss gradient, rescaled to per-sample), so that
/// attack results keep their bits.
fn cross_entropy(logits: &Tensor, labels: &[usize], b: usize, k: usize) -> Result<LogitGradient> {
    let losses = logits
        .cross_entropy_per_sample(labels)?
        .to_dtype(DType::F64)?;
    let targets = one_hot(labels, k, logits.dtype(), &logits.device())?;
    let grad_logits = logits
        .softmax()?
        .sub(&targets)?
        .scale(1.0 / b as f64)?
        .scale(b as f64)?;
    Ok(LogitGradient {
        losses,
        grad_logits,
    })
}

/// The CW margin or the DLR loss, in `f64`.
///
/// `j*` is the first maximiser of the logits with `z_y` set to `−∞`; `π_1, π_2, π_3` are
/// the first maximisers of the logits with the earlier ones set to `−∞` (the descending
/// order with ties broken by index). The gradients are assembled in the order
/// `0 − r e_y + r e_{j*} + s e_{π_1} − s e_{π_3}` (`r = 1/d`, `s = m/d²`), term by term
/// as a row-by-row loop would add them.
fn margin_loss(
    loss: AttackLoss,
    logits: &Tensor,
    labels: &[usize],
    b: usize,
    k: usize,
) -> Result<LogitGradient> {
    let dev = logits.device();
    let z = logits.to_dtype(DType::F64)?;
    let offsets = row_offsets(b, k, &dev)?;
    let y_hot = one_hot(labels, k, DType::F64, &dev)?;
    let y_idx = crate::rowops::label_tensor(labels, &dev)?;
    let neg_inf = z.full_like(f64::NEG_INFINITY, &[b, k])?;
    let z_y = pick(&z, &y_idx, &offsets)?;
    let j_idx = y_hot.where_cond(&neg_inf, &z)?.row_argmax()?;
    let j_hot = one_hot_at(&j_idx, &offsets, b, k)?;
    let z_j = pick(&z, &j_idx, &offsets)?;
    let (losses, grad) = match loss {
        AttackLoss::CwMargin => (z_j.sub(&z_y)?, j_hot.sub(&y_hot)?),
        _ => {
            let p1 = z.row_argmax()?;
            let p1_hot = one_hot_at(&p1, &offsets, b, k)?;
            let without_p1 = p1_hot.where_cond(&neg_inf, &z)?;
            let p2 = without_p1.row_argmax()?;
            let p2_hot = one_hot_at(&p2, &offsets, b, k)?;
            let p3 = p2_hot.where_cond(&neg_inf, &without_p1)?.row_argmax()?;
            let p3_hot = one_hot_at(&p3, &offsets, b, k)?;
            let m = z_y.sub(&z_j)?;
            let d = pick(&z, &p1, &offsets)?
                .sub(&pick(&z, &p3, &offsets)?)?
                .add_scalar(1e-12)?;
            let r = d.recip()?;
            let s = m.div(&d.mul(&d)?)?;
            let grad = z
                .full_like(0.0, &[b, k])?
                .sub(&y_hot.scale_rows(&r)?)?
                .add(&j_hot.scale_rows(&r)?)?
                .add(&p1_hot.scale_rows(&s)?)?
                .sub(&p3_hot.scale_rows(&s)?)?;
            (m.neg()?.div(&d)?, grad)
        }
    };
    // The argmaxes skip NaN logits: make such a row's loss NaN, so that it is reported.
    let finite = nonfinite_rows(&z)?.equal(&losses.full_like(0.0, &[b])?)?;
    let losses = finite.where_cond(&losses, &losses.full_like(f64::NAN, &[b])?)?;
    Ok(LogitGradient {
        losses,
        grad_logits: grad.to_dtype(logits.dtype())?,
    })
}

/// Per-sample values and input gradients of `loss` for `model` at `x: [B, D]`: the
/// classifier's own cross-entropy path for [`AttackLoss::CrossEntropy`] (so the paper's
/// attacks need nothing more of a classifier), its vector-Jacobian product for the others.
/// The losses and predictions come back as `[B]` `f64` tensors.
///
/// # Errors
/// What the classifier reports, or a result of the wrong shape.
pub(crate) fn loss_gradient<C: Classifier + ?Sized>(
    model: &mut C,
    x: &Tensor,
    labels: &[usize],
    loss: AttackLoss,
) -> Result<LossGradient> {
    let lg = match loss {
        AttackLoss::CrossEntropy => model.loss_and_input_gradient(x, labels)?,
        _ => model.loss_and_input_gradient_with(x, &mut |z: &Tensor| loss.evaluate(z, labels))?,
    };
    let b = labels.len();
    let what = "Classifier::loss_and_input_gradient";
    if lg.losses.shape() != [b] || lg.predictions.shape() != [b] {
        return Err(invalid_data(
            what,
            format!(
                "losses {:?} and predictions {:?} must both be [{b}]",
                lg.losses.shape(),
                lg.predictions.shape()
            ),
        ));
    }
    if lg.grad.shape() != x.shape() {
        return Err(invalid_data(
            what,
            format!(
                "the input gradient is {:?}, the inputs {:?}",
                lg.grad.shape(),
                x.shape()
            ),
        ));
    }
    Ok(LossGradient {
        losses: lg.losses.to_dtype(DType::F64)?,
        predictions: lg.predictions.to_dtype(DType::F64)?,
        grad: lg.grad,
    })
}

/// Per-sample values of `loss` and predictions at `logits` (no input gradient), as `[B]`
/// `f64` tensors.
pub(crate) fn loss_values(
    logits: &Tensor,
    labels: &[usize],
    loss: AttackLoss,
) -> Result<(Tensor, Tensor)> {
    let values = loss.evaluate(logits, labels)?;
    Ok((
        values.losses.to_dtype(DType::F64)?,
        logits.row_argmax()?.to_dtype(DType::F64)?,
    ))
}
