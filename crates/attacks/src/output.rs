//! What an attack on one batch returns, and the input checks every attack shares.

use specreg_tensor::Tensor;

use crate::Result;
use crate::classifier::Classifier;
use crate::error::invalid_data;
use crate::perturb::ClipRange;

/// The result of attacking one batch.
#[derive(Debug, Clone)]
pub struct AttackOutput {
    /// The adversarial images `[B, D]`, in the classifier's dtype.
    pub adversarial: Tensor,
    /// Per-sample value of the attack's loss at the adversarial image (the cross-entropy
    /// for FGSM and for PGD and APGD on [`AttackLoss::CrossEntropy`](crate::AttackLoss)).
    pub losses: Vec<f64>,
    /// Per-sample predicted class at the adversarial image.
    pub predictions: Vec<usize>,
    /// For each sample, the iterate that was kept: 0 is the starting point (the clean image,
    /// or the random start), `t` the image after `t` steps. FGSM reports 1.
    pub found_at_step: Vec<usize>,
    /// The largest amount by which any image the attack evaluated lay outside the ε-ball
    /// around its clean image (0 when every constraint held; rounding shows up as ~1e-7
    /// in `f32`).
    pub max_ball_violation: f64,
    /// The largest amount by which any evaluated image lay outside the clip range.
    pub max_clip_violation: f64,
    /// Rows of the attack's first input gradient (FGSM: at the clean image; PGD, APGD:
    /// restart 0's starting point, the clean image unless started at random) that are
    /// exactly zero. Such an image does not move under a sign step: a count above 0 hints at
    /// gradient masking (saturated units, a non-differentiable layer). 0 when no gradient
    /// was evaluated (PGD and APGD at ε = 0).
    pub zero_gradient_rows: usize,
    /// Input gradients the attack evaluated, summed over samples: `B × steps × restarts`
    /// without early exit (FGSM: `B`; 0 at ε = 0), fewer with it.
    pub gradient_evaluations: u64,
}

impl AttackOutput {
    /// Whether each sample is misclassified (`prediction ≠ label`).
    pub fn fooled(&self, labels: &[usize]) -> Vec<bool> {
        self.predictions
            .iter()
            .zip(labels)
            .map(|(p, y)| p != y)
            .collect()
    }

    /// How many samples are still classified correctly.
    pub fn correct(&self, labels: &[usize]) -> usize {
        self.predictions
            .iter()
            .zip(labels)
            .filter(|(p, y)| p == y)
            .count()
    }
}

/// Validates a batch for `model` and returns it in the model's dtype and on its device (one
/// host read: whether the values lie in the clip range).
pub(crate) fn prepare<C: Classifier + ?Sized>(
    model: &C,
    x: &Tensor,
    labels: &[usize],
    clip: ClipRange,
    what: &str,
) -> Result<Tensor> {
    clip.validate(what)?;
    let d = model.input_size();
    match *x.shape() {
        [b, w] if b > 0 && w == d => {
            if labels.len() != b {
                return Err(invalid_data(
                    what,
                    format!("{b} images but {} labels", labels.len()),
                ));
            }
        }
        _ => {
            return Err(invalid_data(
                what,
                format!("images must be [B > 0, {d}], got {:?}", x.shape()),
            ));
        }
    }
    let mut x = x.clone();
    if x.dtype() != model.dtype() {
        x = x.to_dtype(model.dtype())?;
    }
    if x.device() != model.device() {
        x = x.to_device(&model.device())?;
    }
    clip.check_inside(&x, what)?;
    Ok(x)
}
