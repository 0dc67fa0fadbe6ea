//! Projected gradient descent (eqs. 7–8 of Nassar et al.; Madry et al. 2018).
//!
//! Maximise `L(f(x + δ), y)` over `‖δ‖ ≤ ε` and `x + δ ∈ [lo, hi]` by `steps` ascent steps,
//! each followed by the projection onto both constraints:
//!
//! * L∞: `x ← clamp(x + η · sign(∇ₓL), max(x₀ − ε, lo), min(x₀ + ε, hi))`. Eq. 8 of the
//!   paper writes the raw gradient, but the steepest L∞ ascent step is its sign, which is
//!   what Madry et al., the attack libraries and the PyTorch numbers this project compares
//!   against use. The two constraints are both boxes, so the clamp is the exact projection
//!   onto their intersection.
//! * L2: `x ← clip(Proj_{‖x − x₀‖₂ ≤ ε}(x + η · ∇ₓL / ‖∇ₓL‖₂))`, row by row (a zero
//!   gradient row does not move).
//!
//! # What is reported for each sample
//!
//! Every iterate is evaluated (the gradient call at iterate `t` also gives its loss and
//! prediction; one extra forward pass evaluates the last one), and each sample keeps its
//! **worst iterate**: misclassified beats correctly classified, then the higher loss wins.
//! Plain PGD reports its last iterate, which can in principle be classified correctly again
//! after an earlier iterate fooled the model; keeping the worst iterate is never weaker.
//!
//! This is what makes the options exact:
//!
//! * **restarts** (`restarts > 1`, random start required): each restart runs from its own
//!   random start and each sample keeps its worst iterate over all restarts, so more
//!   restarts never lower the attack's success. Restart 0 draws from the same stream as a
//!   single run, so a run with `k` restarts contains the run with one.
//! * **early exit**: a sample whose current iterate is misclassified is removed from the
//!   batch. Its worst iterate is then already misclassified, and the full run could only
//!   replace it by another misclassified iterate (with a higher loss), so which samples are
//!   fooled — and the robust accuracy — is the same with and without early exit; only the
//!   kept images and their losses differ. Samples are independent in a [`Classifier`], so
//!   removing some does not change the others' iterates (up to the last bits of the matrix
//!   products, whose blocking may depend on the batch size).
//!
//! At ε = 0 the ball is the clean image, so PGD evaluates it once instead of stepping.
//!
//! Random starts are uniform in the L∞ ball (each coordinate in `[−ε, ε]`), or uniform in
//! the L2 ball (a Gaussian direction and radius `ε u^{1/D}`), then clipped to the range.

use specreg_tensor::{DType, Rng, Tensor};

use crate::Result;
use crate::classifier::{Classifier, per_sample_loss};
use crate::error::invalid;
use crate::output::{AttackOutput, check_gradient, prepare};
use crate::perturb::{
    ClipRange, Norm, RowStore, ball_violation, check_epsilon, clamp_box, gather_rows, linf_box,
    normalized_rows, project_l2, scale_rows,
};

/// The PGD step size η.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepSize {
    /// The same η for every ε (the paper: η = 0.01 for L∞).
    Absolute(f64),
    /// `η = c · ε` (e.g. `2.5 / steps`, Madry et al.'s rule for L2).
    RelativeToEpsilon(f64),
}

impl StepSize {
    /// η at budget `epsilon`.
    pub fn at(&self, epsilon: f64) -> f64 {
        match *self {
            StepSize::Absolute(eta) => eta,
            StepSize::RelativeToEpsilon(c) => c * epsilon,
        }
    }
}

/// Every parameter of a PGD attack.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PgdConfig {
    /// The norm of the budget.
    pub norm: Norm,
    /// The budget ε (replaced by each grid value in a robustness curve).
    pub epsilon: f64,
    /// Number of ascent steps (40 in the paper).
    pub steps: usize,
    /// The step size η.
    pub step_size: StepSize,
    /// Start from a uniform random point of the ball instead of the clean image.
    pub random_start: bool,
    /// Independent runs; each sample keeps its worst iterate over all of them. More than
    /// one needs `random_start`.
    pub restarts: usize,
    /// Stop updating a sample once it is misclassified (same robust accuracy, less work;
    /// see the module docs).
    pub early_exit: bool,
    /// The valid pixel range.
    pub clip: ClipRange,
    /// Seed of the random starts.
    pub seed: u64,
}

impl PgdConfig {
    /// The paper's L∞ attack at budget `epsilon`: 40 steps of η = 0.01 from the clean
    /// image, one run, no early exit, pixels in `[0, 1]`, seed 0.
    pub fn linf(epsilon: f64) -> Self {
        Self {
            norm: Norm::Linf,
            epsilon,
            steps: 40,
            step_size: StepSize::Absolute(0.01),
            random_start: false,
            restarts: 1,
            early_exit: false,
            clip: ClipRange::default(),
            seed: 0,
        }
    }

    /// An L2 attack at budget `epsilon`: 40 steps of η = 2.5 ε / 40 from the clean image,
    /// one run, no early exit, pixels in `[0, 1]`, seed 0.
    pub fn l2(epsilon: f64) -> Self {
        Self {
            norm: Norm::L2,
            step_size: StepSize::RelativeToEpsilon(2.5 / 40.0),
            ..Self::linf(epsilon)
        }
    }

    /// The same configuration at another budget.
    pub fn with_epsilon(self, epsilon: f64) -> Self {
        Self { epsilon, ..self }
    }

    /// Errors naming the first invalid field.
    pub fn validate(&self) -> Result<()> {
        check_epsilon("PgdConfig.epsilon", self.epsilon)?;
        self.clip.validate("PgdConfig.clip")?;
        if self.steps == 0 {
            return Err(invalid("PgdConfig.steps", "must be at least 1"));
        }
        let eta = self.step_size.at(self.epsilon);
        let raw = match self.step_size {
            StepSize::Absolute(v) | StepSize::RelativeToEpsilon(v) => v,
        };
        if !(raw.is_finite() && raw > 0.0 && eta.is_finite()) {
            return Err(invalid(
                "PgdConfig.step_size",
                format!("{:?} must be finite and positive", self.step_size),
            ));
        }
        if self.restarts == 0 {
            return Err(invalid("PgdConfig.restarts", "must be at least 1"));
        }
        if self.restarts > 1 && !self.random_start {
            return Err(invalid(
                "PgdConfig.restarts",
                format!(
                    "{} restarts without random_start would repeat the same deterministic run",
                    self.restarts
                ),
            ));
        }
        Ok(())
    }
}

/// PGD on one batch `x: [B, D]` with `labels`. Random starts are drawn from
/// `Rng::new(seed)` (restart `r`: seed `seed + r · 0x9E3779B97F4A7C15`).
///
/// # Errors
/// An invalid configuration (see [`PgdConfig::validate`]), inputs outside the clip range,
/// mismatched shapes or labels, a non-finite loss or gradient, or what the classifier
/// reports.
pub fn pgd<C: Classifier + ?Sized>(
    model: &mut C,
    x: &Tensor,
    labels: &[usize],
    config: &PgdConfig,
) -> Result<AttackOutput> {
    config.validate()?;
    let x = prepare(model, x, labels, config.clip, "pgd")?;
    let mut rngs = restart_rngs(config);
    let starts = draw_unit_starts(config, &mut rngs, x.shape(), x.dtype())?;
    pgd_prepared(model, &x, labels, config, config.epsilon, &starts)
}

/// One generator per restart; restart 0 uses `seed` itself.
pub(crate) fn restart_rngs(config: &PgdConfig) -> Vec<Rng> {
    if !config.random_start {
        return Vec::new();
    }
    (0..config.restarts as u64)
        .map(|r| {
            Rng::new(
                config
                    .seed
                    .wrapping_add(r.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            )
        })
        .collect()
}

/// Random starts in the unit ball (one per restart), to be scaled by ε: uniform in
/// `[−1, 1]^D` for L∞, uniform in the unit L2 ball for L2. Empty without random start.
pub(crate) fn draw_unit_starts(
    config: &PgdConfig,
    rngs: &mut [Rng],
    shape: &[usize],
    dtype: DType,
) -> Result<Vec<Tensor>> {
    let dev = specreg_tensor::Device::Cpu;
    let (b, d) = (shape[0], shape[1]);
    rngs.iter_mut()
        .map(|rng| match config.norm {
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
struct Key {
    fooled: bool,
    loss: f64,
}

impl Key {
    fn beats(&self, other: &Key) -> bool {
        (self.fooled && !other.fooled) || (self.fooled == other.fooled && self.loss > other.loss)
    }
}

/// The per-sample worst iterates of one run (or of several merged).
struct Worst {
    keys: Vec<Option<Key>>,
    step: Vec<usize>,
    pred: Vec<usize>,
    images: RowStore,
}

impl Worst {
    fn new(x: &Tensor) -> Result<Self> {
        let b = x.shape()[0];
        Ok(Self {
            keys: vec![None; b],
            step: vec![0; b],
            pred: vec![0; b],
            images: RowStore::from_tensor(x)?,
        })
    }

    /// Offers iterate `step` of the samples `active` (row `r` of `x` is sample `active[r]`).
    fn offer(
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
    fn merge(&mut self, other: &Worst) -> Result<()> {
        let mut copies = Vec::new();
        for i in 0..self.keys.len() {
            if let Some(k) = other.keys[i]
                && self.keys[i].is_none_or(|mine| k.beats(&mine))
            {
                self.keys[i] = Some(k);
                self.step[i] = other.step[i];
                self.pred[i] = other.pred[i];
                copies.push((i, i));
            }
        }
        if !copies.is_empty() {
            let src = other.images.to_tensor(&specreg_tensor::Device::Cpu)?;
            self.images.copy_rows(&src, &copies)?;
        }
        Ok(())
    }
}

/// PGD at budget `epsilon` on a prepared batch, from the given unit random starts (one
/// per restart, or none for a start at the clean image).
pub(crate) fn pgd_prepared<C: Classifier + ?Sized>(
    model: &mut C,
    x: &Tensor,
    labels: &[usize],
    config: &PgdConfig,
    epsilon: f64,
    unit_starts: &[Tensor],
) -> Result<AttackOutput> {
    if epsilon == 0.0 {
        // The ball is the clean image itself: every start and every iterate equal `x`, so
        // one evaluation gives the exact result of the full run.
        let logits = model.logits(x)?;
        let (losses, predictions, _) = per_sample_loss(&logits, labels)?;
        return Ok(AttackOutput {
            adversarial: x.clone(),
            losses,
            predictions,
            found_at_step: vec![0; labels.len()],
            max_ball_violation: 0.0,
            max_clip_violation: config.clip.violation(x)?,
        });
    }
    let eta = config.step_size.at(epsilon);
    let (lo, hi) = match config.norm {
        Norm::Linf => linf_box(x, epsilon, config.clip)?,
        Norm::L2 => (x.clone(), x.clone()),
    };
    let mut violations = (0.0f64, 0.0f64);
    let mut overall: Option<Worst> = None;
    let runs = unit_starts.len().max(1);
    for r in 0..runs {
        let start = match unit_starts.get(r) {
            None => x.clone(),
            Some(u) => {
                let u = u.to_device(&x.device())?;
                let moved = x.add(&u.scale(epsilon)?)?;
                match config.norm {
                    Norm::Linf => clamp_box(&moved, &lo, &hi)?,
                    Norm::L2 => moved.clamp(config.clip.lo, config.clip.hi)?,
                }
            }
        };
        let run = single_run(
            model,
            x,
            &lo,
            &hi,
            labels,
            config,
            epsilon,
            eta,
            start,
            &mut violations,
        )?;
        match overall.as_mut() {
            None => overall = Some(run),
            Some(o) => o.merge(&run)?,
        }
    }
    let worst = overall.expect("at least one run");
    let losses = worst
        .keys
        .iter()
        .map(|k| k.map_or(f64::NAN, |k| k.loss))
        .collect();
    Ok(AttackOutput {
        adversarial: worst.images.to_tensor(&x.device())?,
        losses,
        predictions: worst.pred,
        found_at_step: worst.step,
        max_ball_violation: violations.0,
        max_clip_violation: violations.1,
    })
}

/// One PGD run from `start`; `violations` accumulates the largest ball and clip violations
/// of every iterate.
#[allow(clippy::too_many_arguments)]
fn single_run<C: Classifier + ?Sized>(
    model: &mut C,
    x: &Tensor,
    lo: &Tensor,
    hi: &Tensor,
    labels: &[usize],
    config: &PgdConfig,
    epsilon: f64,
    eta: f64,
    start: Tensor,
    violations: &mut (f64, f64),
) -> Result<Worst> {
    let mut worst = Worst::new(&start)?;
    let b = labels.len();
    let mut active: Vec<usize> = (0..b).collect();
    let (mut cur, mut x0, mut lo, mut hi) = (start, x.clone(), lo.clone(), hi.clone());
    let mut y: Vec<usize> = labels.to_vec();
    let mut track = |cur: &Tensor, x0: &Tensor| -> Result<()> {
        let ball = ball_violation(cur, x0, config.norm, epsilon)?;
        let clip = config.clip.violation(cur)?;
        violations.0 = violations.0.max(ball);
        violations.1 = violations.1.max(clip);
        Ok(())
    };
    track(&cur, &x0)?;
    for step in 0..config.steps {
        let lg = model.loss_and_input_gradient(&cur, &y)?;
        worst.offer(&cur, &active, labels, &lg.losses, &lg.predictions, step)?;
        let mut grad = lg.grad;
        check_gradient(&grad, "pgd")?;
        if config.early_exit {
            let keep: Vec<usize> = (0..active.len())
                .filter(|&r| lg.predictions[r] == y[r])
                .collect();
            if keep.is_empty() {
                return Ok(worst);
            }
            if keep.len() < active.len() {
                cur = gather_rows(&cur, &keep)?;
                x0 = gather_rows(&x0, &keep)?;
                grad = gather_rows(&grad, &keep)?;
                if config.norm == Norm::Linf {
                    lo = gather_rows(&lo, &keep)?;
                    hi = gather_rows(&hi, &keep)?;
                }
                active = keep.iter().map(|&r| active[r]).collect();
                y = keep.iter().map(|&r| y[r]).collect();
            }
        }
        cur = match config.norm {
            Norm::Linf => clamp_box(&cur.add(&grad.sign()?.scale(eta)?)?, &lo, &hi)?,
            Norm::L2 => project_l2(
                &cur.add(&normalized_rows(&grad, eta)?)?,
                &x0,
                epsilon,
                config.clip,
            )?,
        };
        track(&cur, &x0)?;
    }
    let logits = model.logits(&cur)?;
    let (losses, preds, _) = per_sample_loss(&logits, &y)?;
    worst.offer(&cur, &active, labels, &losses, &preds, config.steps)?;
    Ok(worst)
}
