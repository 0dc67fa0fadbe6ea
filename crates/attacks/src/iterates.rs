//! Bookkeeping shared by the iterative attacks (PGD, APGD): seeded random starts, the
//! per-sample worst iterate, the ε = 0 shortcut and the zero-gradient count.

use specreg_tensor::{DType, Device, Rng, Tensor};

use crate::Result;
use crate::classifier::{Classifier, ToVecF64};
use crate::loss::{AttackLoss, loss_values};
use crate::output::AttackOutput;
use crate::perturb::{ClipRange, Norm, RowStore, normalized_rows, scale_rows};

/// One generator per restart; restart 0 uses `seed` itself, restart `r` the seed
/// `seed + r · 0x9E3779B97F4A7C15`. Empty without random start.
pub(crate) fn restart_rngs(random_start: bool, restarts: usize, seed: u64) -> Vec<Rng> {
    if !random_start {
        return Vec::new();
    }
    (0..restarts as u64)
        .map(|r| Rng::new(seed.wrapping_add(r.wrapping_mul(0x9E37_79B9_7F4A_7C15))))
        .collect()
}

/// Random starts in the unit ball (one per generator), to be scaled by ε: uniform in
/// `[−1, 1]^D` for L∞, uniform in the unit L2 ball for L2.
pub(crate) fn draw_unit_starts(
    norm: Norm,
    rngs: &mut [Rng],
    shape: &[usize],
    dtype: DType,
) -> Result<Vec<Tensor>> {
    let dev = Device::Cpu;
    let (b, d) = (shape[0], shape[1]);
    rngs.iter_mut()
        .map(|rng| match norm {
            Norm::Linf => Ok(Tensor::rand_uniform(shape, -1.0, 1.0, dtype, rng, &dev)?),
            Norm::L2 => {
                let z = Tensor::randn(shape, 0.0, 1.0, dtype, rng, &dev)?;
                let radii: Vec<f64> = (0..b)
                    .map(|_| rng.next_f64().powf(1.0 / d as f64))
                    .collect();
                let unit = normalized_rows(&z, 1.0)?;
                scale_rows(&unit, &radii)
            }
        })
        .collect()
}

/// Ranks iterates: misclassified first, then the higher loss.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key {
    pub(crate) fooled: bool,
    pub(crate) loss: f64,
}

impl Key {
    fn beats(&self, other: &Key) -> bool {
        (self.fooled && !other.fooled) || (self.fooled == other.fooled && self.loss > other.loss)
    }
}

/// The per-sample worst iterates of one run (or of several merged).
pub(crate) struct Worst {
    keys: Vec<Option<Key>>,
    step: Vec<usize>,
    pred: Vec<usize>,
    images: RowStore,
}

impl Worst {
    pub(crate) fn new(x: &Tensor) -> Result<Self> {
        let b = x.shape()[0];
        Ok(Self {
            keys: vec![None; b],
            step: vec![0; b],
            pred: vec![0; b],
            images: RowStore::from_tensor(x)?,
        })
    }

    /// Offers iterate `step` of the samples `active` (row `r` of `x` is sample `active[r]`).
    pub(crate) fn offer(
        &mut self,
        x: &Tensor,
        active: &[usize],
        labels: &[usize],
        losses: &[f64],
        preds: &[usize],
        step: usize,
    ) -> Result<()> {
        let mut copies = Vec::new();
        for (r, &i) in active.iter().enumerate() {
            let key = Key {
                fooled: preds[r] != labels[i],
                loss: losses[r],
            };
            if self.keys[i].is_none_or(|k| key.beats(&k)) {
                self.keys[i] = Some(key);
                self.step[i] = step;
                self.pred[i] = preds[r];
                copies.push((r, i));
            }
        }
        self.images.copy_rows(x, &copies)
    }

    /// Takes every sample on which `other` is worse for the model.
    pub(crate) fn merge(&mut self, other: &Worst) -> Result<()> {
        let mut rows = Vec::new();
        for i in 0..self.keys.len() {
            if let Some(k) = other.keys[i]
                && self.keys[i].is_none_or(|mine| k.beats(&mine))
            {
                self.keys[i] = Some(k);
                self.step[i] = other.step[i];
                self.pred[i] = other.pred[i];
                rows.push(i);
            }
        }
        self.images.copy_rows_from(&other.images, &rows)
    }

    /// The attack's output; `violations` are the largest ball and clip violations seen.
    pub(crate) fn into_output(
        self,
        device: &Device,
        violations: (f64, f64),
        zero_gradient_rows: usize,
    ) -> Result<AttackOutput> {
        let losses = self
            .keys
            .iter()
            .map(|k| k.map_or(f64::NAN, |k| k.loss))
            .collect();
        Ok(AttackOutput {
            adversarial: self.images.to_tensor(device)?,
            losses,
            predictions: self.pred,
            found_at_step: self.step,
            max_ball_violation: violations.0,
            max_clip_violation: violations.1,
            zero_gradient_rows,
        })
    }
}

/// The result of an attack with budget 0: the ball is the clean image itself, so every
/// start and every iterate equal `x` and one evaluation gives the exact result of the run.
pub(crate) fn clean_output<C: Classifier + ?Sized>(
    model: &mut C,
    x: &Tensor,
    labels: &[usize],
    loss: AttackLoss,
    clip: ClipRange,
) -> Result<AttackOutput> {
    let logits = model.logits(x)?;
    let (losses, predictions) = loss_values(&logits, labels, loss)?;
    Ok(AttackOutput {
        adversarial: x.clone(),
        losses,
        predictions,
        found_at_step: vec![0; labels.len()],
        max_ball_violation: 0.0,
        max_clip_violation: clip.violation(x)?,
        zero_gradient_rows: 0,
    })
}

/// Rows of a `[B, D]` gradient whose every entry is exactly zero.
pub(crate) fn zero_rows(grad: &Tensor) -> Result<usize> {
    let d = grad.shape().get(1).copied().unwrap_or(1).max(1);
    let v = grad.to_vec_f64()?;
    Ok(v.chunks(d).filter(|r| r.iter().all(|&g| g == 0.0)).count())
}
