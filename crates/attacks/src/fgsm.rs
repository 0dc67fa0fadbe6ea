//! The fast gradient sign method (eq. 6 of Nassar et al.; Goodfellow et al. 2015).
//!
//! `x̃ = clip(x + ε · sign(∇ₓ L(f(x), y)))`, one gradient per image, with `sign 0 = 0`.
//! [`AttackOutput::zero_gradient_rows`] counts the images whose gradient is exactly zero:
//! they do not move.

use specreg_tensor::Tensor;

use crate::Result;
use crate::classifier::Classifier;
use crate::iterates::{Tracker, Worst, finish};
use crate::loss::{AttackLoss, loss_gradient, loss_values};
use crate::output::{AttackOutput, prepare};
use crate::perturb::{ClipRange, Norm, check_epsilon};
use crate::rowops::{ActiveRows, label_tensor};

/// FGSM on one batch `x: [B, D]` with `labels` (one per row): the adversarial images, their
/// losses and predictions, and how far they reach outside the ε-ball and the clip range
/// (both 0 unless something is wrong).
///
/// `x` is converted to the classifier's dtype and device; its values must lie in `clip`.
/// Two host reads: the input check and the results.
///
/// # Errors
/// A negative or non-finite ε, an invalid clip range, inputs outside it, mismatched
/// shapes or labels, a non-finite gradient or loss, or whatever the classifier reports.
pub fn fgsm<C: Classifier + ?Sized>(
    model: &mut C,
    x: &Tensor,
    labels: &[usize],
    epsilon: f64,
    clip: ClipRange,
) -> Result<AttackOutput> {
    check_epsilon("fgsm", epsilon)?;
    let x = prepare(model, x, labels, clip, "fgsm")?;
    fgsm_prepared(model, &x, labels, epsilon, clip)
}

/// FGSM on an input already validated and converted by [`prepare`]: one host read.
pub(crate) fn fgsm_prepared<C: Classifier + ?Sized>(
    model: &mut C,
    x: &Tensor,
    labels: &[usize],
    epsilon: f64,
    clip: ClipRange,
) -> Result<AttackOutput> {
    let loss = AttackLoss::CrossEntropy;
    let rows = ActiveRows::all(labels.len());
    let mut tracker = Tracker::new(Norm::Linf, clip, labels.len(), &x.device())?;
    let lg = loss_gradient(model, x, labels, loss)?;
    tracker.check(&rows, &lg.losses, Some(&lg.grad))?;
    tracker.count_zero_rows(&lg.grad)?;
    let adv = x
        .add(&lg.grad.sign()?.scale(epsilon)?)?
        .clamp(clip.lo, clip.hi)?;
    tracker.track(&adv, x)?;
    let logits = model.logits(&adv)?;
    let (losses, predictions) = loss_values(&logits, labels, loss)?;
    tracker.check(&rows, &losses, None)?;
    let label_t = label_tensor(labels, &x.device())?;
    let mut out = finish(
        Worst::start(&adv, &label_t, &losses, &predictions)?,
        tracker,
        epsilon,
        "fgsm",
    )?;
    out.found_at_step = vec![1; labels.len()];
    Ok(out)
}
