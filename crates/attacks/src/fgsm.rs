//! The fast gradient sign method (eq. 6 of Nassar et al.; Goodfellow et al. 2015).
//!
//! `x̃ = clip(x + ε · sign(∇ₓ L(f(x), y)))`, one gradient per image, with `sign 0 = 0`.
//! [`AttackOutput::zero_gradient_rows`] counts the images whose gradient is exactly zero:
//! they do not move.

use specreg_tensor::Tensor;

use crate::Result;
use crate::classifier::{Classifier, per_sample_loss};
use crate::iterates::zero_rows;
use crate::output::{AttackOutput, prepare};
use crate::perturb::{ClipRange, Norm, ball_violation, check_epsilon};

/// FGSM on one batch `x: [B, D]` with `labels` (one per row): the adversarial images, their
/// losses and predictions, and how far they reach outside the ε-ball and the clip range
/// (both 0 unless something is wrong).
///
/// `x` is converted to the classifier's dtype and device; its values must lie in `clip`.
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

/// FGSM on an input already validated and converted by [`prepare`].
pub(crate) fn fgsm_prepared<C: Classifier + ?Sized>(
    model: &mut C,
    x: &Tensor,
    labels: &[usize],
    epsilon: f64,
    clip: ClipRange,
) -> Result<AttackOutput> {
    let lg = model.loss_and_input_gradient(x, labels)?;
    crate::output::check_gradient(&lg.grad, "fgsm")?;
    let zero_gradient_rows = zero_rows(&lg.grad)?;
    let adv = x
        .add(&lg.grad.sign()?.scale(epsilon)?)?
        .clamp(clip.lo, clip.hi)?;
    let logits = model.logits(&adv)?;
    let (losses, predictions, _) = per_sample_loss(&logits, labels)?;
    Ok(AttackOutput {
        max_ball_violation: ball_violation(&adv, x, Norm::Linf, epsilon)?,
        max_clip_violation: clip.violation(&adv)?,
        adversarial: adv,
        found_at_step: vec![1; labels.len()],
        losses,
        predictions,
        zero_gradient_rows,
    })
}
