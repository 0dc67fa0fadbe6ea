//! Bookkeeping shared by the iterative attacks (PGD, APGD): seeded random starts, the
//! per-sample worst iterate, the tracked constraint violations and finiteness, the
//! ε = 0 shortcut, the zero-gradient count and early exit's shrinking of the batch.
//!
//! All of it stays on the device: [`Worst`] selects rows with masks, [`Tracker`] keeps
//! running extremes and a per-sample finiteness record, and [`finish`] reads the results of
//! a whole attack in one host read.

use specreg_tensor::{DType, Device, Rng, Tensor};

use crate::Result;
use crate::classifier::Classifier;
use crate::error::{AttackError, invalid, invalid_data};
use crate::loss::{AttackLoss, loss_values};
use crate::output::AttackOutput;
use crate::perturb::{ClipRange, Norm, normalized_rows, violation_beyond};
use crate::rowops::{ActiveRows, differ, f64_vector, label_tensor};
pub(crate) use crate::tracker::Tracker;

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
/// `[−1, 1]^D` for L∞, uniform in the unit L2 ball for L2. Drawn on the host's generator
/// into CPU tensors.
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
                Ok(unit.scale_rows(&f64_vector(&radii, &dev)?)?)
            }
        })
        .collect()
}

/// The per-sample worst iterates of one run (or of several merged), as `[B]` `f64`
/// tensors and the `[B, D]` images. An iterate beats the kept one when it is misclassified
/// and the kept one is not, or when both are alike and its loss is higher.
pub(crate) struct Worst {
    fooled: Tensor,
    loss: Tensor,
    step: Tensor,
    pred: Tensor,
    images: Tensor,
}

impl Worst {
    /// Iterate 0 of every sample: `x` with its `losses` and `preds` (`[B]`, `f64`) against
    /// `labels` (`[B]`, `f64`).
    pub(crate) fn start(
        x: &Tensor,
        labels: &Tensor,
        losses: &Tensor,
        preds: &Tensor,
    ) -> Result<Self> {
        Ok(Self {
            fooled: differ(preds, labels)?,
            loss: losses.clone(),
            step: losses.full_like(0.0, losses.shape())?,
            pred: preds.clone(),
            images: x.clone(),
        })
    }

    /// Offers iterate `step` of the samples `rows` holds (`x`, `losses`, `preds` have one
    /// row per active sample).
    pub(crate) fn offer(
        &mut self,
        x: &Tensor,
        rows: &ActiveRows,
        labels: &Tensor,
        losses: &Tensor,
        preds: &Tensor,
        step: usize,
    ) -> Result<()> {
        let (x, mask) = rows.expand(x)?;
        let (losses, _) = rows.expand(losses)?;
        let (preds, _) = rows.expand(preds)?;
        let fooled = differ(&preds, labels)?;
        let mut wins = self.beaten_by(&fooled, &losses)?;
        if let Some(m) = mask {
            wins = wins.mul(m)?;
        }
        let steps = losses.full_like(step as f64, losses.shape())?;
        self.take(&wins, &fooled, &losses, &steps, &preds, &x)
    }

    /// Takes every sample on which `other` is worse for the model.
    pub(crate) fn merge(&mut self, other: &Worst) -> Result<()> {
        let wins = self.beaten_by(&other.fooled, &other.loss)?;
        self.take(
            &wins,
            &other.fooled,
            &other.loss,
            &other.step,
            &other.pred,
            &other.images,
        )
    }

    /// `[B]` 1/0: whether an iterate with these keys beats the kept one.
    fn beaten_by(&self, fooled: &Tensor, loss: &Tensor) -> Result<Tensor> {
        let newly_fooled = fooled.greater(&self.fooled)?;
        let higher = fooled
            .equal(&self.fooled)?
            .mul(&loss.greater(&self.loss)?)?;
        Ok(newly_fooled.add(&higher)?)
    }

    fn take(
        &mut self,
        wins: &Tensor,
        fooled: &Tensor,
        loss: &Tensor,
        step: &Tensor,
        pred: &Tensor,
        images: &Tensor,
    ) -> Result<()> {
        self.fooled = wins.where_cond(fooled, &self.fooled)?;
        self.loss = wins.where_cond(loss, &self.loss)?;
        self.step = wins.where_cond(step, &self.step)?;
        self.pred = wins.where_cond(pred, &self.pred)?;
        let row_wins = wins.to_dtype(images.dtype())?;
        self.images = row_wins.where_cond(images, &self.images)?;
        Ok(())
    }
}

/// The attack's output, read from the device in one host read: the kept iterates of
/// `worst` and what `tracker` recorded, with violations measured against `epsilon`.
///
/// # Errors
/// [`AttackError::NonFinite`] naming the first sample whose loss or gradient was not
/// finite at some evaluation (`what` names the attack).
pub(crate) fn finish(
    worst: Worst,
    tracker: Tracker,
    epsilon: f64,
    what: &str,
) -> Result<AttackOutput> {
    let b = worst.loss.elem_count();
    let clip = tracker.clip();
    let record = tracker.record()?;
    let packed = Tensor::concat(&[
        &worst.loss,
        &worst.pred,
        &worst.step,
        &record.nonfinite,
        &record.ball_reach,
        &record.clip_reach,
        &record.zero_rows,
    ])?
    .to_vec::<f64>()?;
    if packed.len() != 4 * b + 3 {
        return Err(invalid_data(what, "attack results of the wrong length"));
    }
    let (losses, rest) = packed.split_at(b);
    let (pred, rest) = rest.split_at(b);
    let (step, rest) = rest.split_at(b);
    let (nonfinite, rest) = rest.split_at(b);
    if let Some(i) = nonfinite.iter().position(|v| !v.is_finite()) {
        return Err(AttackError::NonFinite {
            what: format!("{what}: loss or input gradient"),
            value: nonfinite[i],
            sample: Some(i),
        });
    }
    let (ball, reach, zeros) = (rest[0], rest[1], rest[2]);
    if !(ball.is_finite() && reach.is_finite()) {
        return Err(AttackError::NonFinite {
            what: format!("{what}: perturbed image"),
            value: if ball.is_finite() { reach } else { ball },
            sample: None,
        });
    }
    Ok(AttackOutput {
        adversarial: worst.images,
        losses: losses.to_vec(),
        predictions: pred.iter().map(|&p| p as usize).collect(),
        found_at_step: step.iter().map(|&s| s as usize).collect(),
        max_ball_violation: violation_beyond(ball, epsilon),
        max_clip_violation: clip.violation_of(reach),
        zero_gradient_rows: zeros as usize,
        gradient_evaluations: record.gradients,
    })
}

/// The result of an attack with budget 0: the ball is the clean image itself, so every
/// start and every iterate equal `x` and one evaluation gives the exact result of the run.
pub(crate) fn clean_output<C: Classifier + ?Sized>(
    model: &mut C,
    x: &Tensor,
    labels: &[usize],
    loss: AttackLoss,
    clip: ClipRange,
    what: &str,
) -> Result<AttackOutput> {
    let logits = model.logits(x)?;
    let (losses, preds) = loss_values(&logits, labels, loss)?;
    let device = x.device();
    let label_t = crate::rowops::label_tensor(labels, &device)?;
    let worst = Worst::start(x, &label_t, &losses, &preds)?;
    let mut tracker = Tracker::new(Norm::Linf, clip, labels.len(), &device)?;
    tracker.track(x, x)?;
    tracker.check(&ActiveRows::all(labels.len()), &losses, None)?;
    finish(worst, tracker, 0.0, what)
}

/// Early exit's precondition: removing samples from a batch must not change the others'
/// outputs, so `model` may not normalise with batch statistics.
pub(crate) fn refuse_mixed_samples<C: Classifier + ?Sized>(model: &C, what: &str) -> Result<()> {
    if model.samples_independent() {
        return Ok(());
    }
    Err(invalid(
        what,
        "removing fooled samples from the batch would change the other samples' outputs: \
         the classifier normalises with batch statistics",
    ))
}

/// Early exit's step (PGD, APGD): only the samples whose `predictions` (at the last
/// evaluated iterate) are still their labels `y` stay in the batch — in `y`, `rows`, the
/// tracker (which starts new rows) and every per-sample tensor of `state`. Reading which
/// samples those are is the step's one host read. `false` when no sample is left.
pub(crate) fn keep_correct(
    predictions: &Tensor,
    y: &mut Vec<usize>,
    rows: &mut ActiveRows,
    tracker: &mut Tracker,
    state: &mut [&mut Tensor],
) -> Result<bool> {
    let device = predictions.device();
    let correct = predictions
        .equal(&label_tensor(y, &device)?)?
        .to_vec::<f64>()?;
    let keep: Vec<usize> = (0..correct.len()).filter(|&r| correct[r] != 0.0).collect();
    if keep.len() < y.len() && !keep.is_empty() {
        tracker.new_rows()?;
        for t in state.iter_mut() {
            **t = t.index_select_rows(&keep)?;
        }
        *y = keep.iter().map(|&r| y[r]).collect();
        rows.keep(&keep, &device)?;
    }
    Ok(!keep.is_empty())
}
