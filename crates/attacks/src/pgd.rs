//! Projected gradient descent (eqs. 7–8 of Nassar et al.; Madry et al. 2018).
//!
//! Maximise `L(f(x + δ), y)` over `‖δ‖ ≤ ε` and `x + δ ∈ [lo, hi]` by `steps` ascent steps,
//! each followed by the projection onto both constraints. `L` is the per-sample
//! cross-entropy (the paper's attack) or another [`AttackLoss`] ([`PgdConfig::loss`]), e.g.
//! the Carlini–Wagner margin `max_{j≠y} z_j − z_y`.
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
//! **worst iterate**: misclassified beats correctly classified, then the higher loss (of the
//! configured [`AttackLoss`]) wins.
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
//! [`AttackOutput::zero_gradient_rows`] counts the rows of the first gradient evaluation
//! (restart 0, step 0: the clean image unless `random_start`) that are exactly zero, a sign
//! of gradient masking.
//!
//! Random starts are uniform in the L∞ ball (each coordinate in `[−ε, ε]`), or uniform in
//! the L2 ball (a Gaussian direction and radius `ε u^{1/D}`), then clipped to the range.
//!
//! # Host reads
//!
//! Every step runs on the device: the worst iterate is selected with masks, the violations
//! and the finiteness of losses and gradients are recorded there. A call to [`pgd`](fn@pgd)
//! reads the device twice (the input check and the results, packed into one read), plus
//! once per step with early exit (which samples are still classified correctly, to shrink
//! the batch). A loss or gradient that is not finite is reported when the results are read.

use specreg_tensor::Tensor;

use crate::Result;
use crate::classifier::Classifier;
use crate::error::invalid;
use crate::iterates::{
    Tracker, Worst, clean_output, draw_unit_starts, finish, keep_correct, refuse_mixed_samples,
    restart_rngs,
};
use crate::loss::{AttackLoss, loss_gradient, loss_values};
use crate::output::{AttackOutput, prepare};
use crate::perturb::{
    ClipRange, Norm, check_epsilon, clamp_box, linf_box, normalized_rows, project_l2,
};
use crate::rowops::{ActiveRows, label_tensor};

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
    /// The loss PGD ascends (default [`AttackLoss::CrossEntropy`], the paper's).
    pub loss: AttackLoss,
}

impl PgdConfig {
    /// The paper's L∞ attack at budget `epsilon`: 40 steps of η = 0.01 on the
    /// cross-entropy from the clean image, one run, no early exit, pixels in `[0, 1]`,
    /// seed 0.
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
            loss: AttackLoss::CrossEntropy,
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

    /// The paper's L∞ attack ([`PgdConfig::linf`]) on the Carlini–Wagner margin.
    pub fn linf_cw(epsilon: f64) -> Self {
        Self {
            loss: AttackLoss::CwMargin,
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
/// mismatched shapes or labels, a non-finite loss or gradient, early exit on a classifier
/// whose samples are not independent ([`Classifier::samples_independent`]), a loss the
/// classifier cannot differentiate (the default
/// [`Classifier::loss_and_input_gradient_with`]) or the model has too few classes for, or
/// what the classifier reports.
pub fn pgd<C: Classifier + ?Sized>(
    model: &mut C,
    x: &Tensor,
    labels: &[usize],
    config: &PgdConfig,
) -> Result<AttackOutput> {
    config.validate()?;
    let x = prepare(model, x, labels, config.clip, "pgd")?;
    let mut rngs = restart_rngs(config.random_start, config.restarts, config.seed);
    let starts = draw_unit_starts(config.norm, &mut rngs, x.shape(), x.dtype())?;
    pgd_prepared(model, &x, labels, config, config.epsilon, &starts)
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
    if config.early_exit {
        refuse_mixed_samples(model, "PgdConfig.early_exit")?;
    }
    if epsilon == 0.0 {
        return clean_output(model, x, labels, config.loss, config.clip, "pgd");
    }
    let eta = config.step_size.at(epsilon);
    let (lo, hi) = match config.norm {
        Norm::Linf => linf_box(x, epsilon, config.clip)?,
        Norm::L2 => (x.clone(), x.clone()),
    };
    let device = x.device();
    let label_t = label_tensor(labels, &device)?;
    let mut tracker = Tracker::new(config.norm, config.clip, labels.len(), &device)?;
    let run = Run {
        x,
        lo: &lo,
        hi: &hi,
        labels,
        label_t: &label_t,
        config,
        epsilon,
        eta,
    };
    let mut overall: Option<Worst> = None;
    let runs = unit_starts.len().max(1);
    for r in 0..runs {
        let start = match unit_starts.get(r) {
            None => x.clone(),
            Some(u) => {
                let u = u.to_device(&device)?;
                let moved = x.add(&u.scale(epsilon)?)?;
                match config.norm {
                    Norm::Linf => clamp_box(&moved, &lo, &hi)?,
                    Norm::L2 => moved.clamp(config.clip.lo, config.clip.hi)?,
                }
            }
        };
        let worst = run.single(model, start, &mut tracker, r == 0)?;
        match overall.as_mut() {
            None => overall = Some(worst),
            Some(o) => o.merge(&worst)?,
        }
    }
    let worst = overall.ok_or_else(|| invalid("pgd", "no run"))?;
    finish(worst, tracker, epsilon, "pgd")
}

/// What every run of one PGD call shares.
struct Run<'a> {
    x: &'a Tensor,
    lo: &'a Tensor,
    hi: &'a Tensor,
    labels: &'a [usize],
    label_t: &'a Tensor,
    config: &'a PgdConfig,
    epsilon: f64,
    eta: f64,
}

impl Run<'_> {
    /// One PGD run from `start`; `tracker` records its violations and finiteness, and the
    /// zero rows of its first gradient if `first`.
    fn single<C: Classifier + ?Sized>(
        &self,
        model: &mut C,
        start: Tensor,
        tracker: &mut Tracker,
        first: bool,
    ) -> Result<Worst> {
        let config = self.config;
        let mut rows = ActiveRows::all(self.labels.len());
        let (mut cur, mut x0, mut lo, mut hi) =
            (start, self.x.clone(), self.lo.clone(), self.hi.clone());
        let mut y: Vec<usize> = self.labels.to_vec();
        tracker.new_rows()?;
        tracker.track(&cur, &x0)?;
        let mut worst: Option<Worst> = None;
        for step in 0..config.steps {
            let lg = loss_gradient(model, &cur, &y, config.loss)?;
            tracker.check(&rows, &lg.losses, Some(&lg.grad))?;
            match worst.as_mut() {
                None => {
                    worst = Some(Worst::start(
                        &cur,
                        self.label_t,
                        &lg.losses,
                        &lg.predictions,
                    )?)
                }
                Some(w) => w.offer(&cur, &rows, self.label_t, &lg.losses, &lg.predictions, step)?,
            }
            let mut grad = lg.grad;
            if step == 0 && first {
                tracker.count_zero_rows(&grad)?;
            }
            if config.early_exit {
                let mut state = vec![&mut cur, &mut x0, &mut grad];
                if config.norm == Norm::Linf {
                    state.extend([&mut lo, &mut hi]);
                }
                if !keep_correct(&lg.predictions, &mut y, &mut rows, tracker, &mut state)? {
                    return worst.ok_or_else(|| invalid("pgd", "no iterate"));
                }
            }
            cur = match config.norm {
                Norm::Linf => clamp_box(&cur.add(&grad.sign()?.scale(self.eta)?)?, &lo, &hi)?,
                Norm::L2 => project_l2(
                    &cur.add(&normalized_rows(&grad, self.eta)?)?,
                    &x0,
                    self.epsilon,
                    config.clip,
                )?,
            };
            tracker.track(&cur, &x0)?;
        }
        let logits = model.logits(&cur)?;
        let (losses, preds) = loss_values(&logits, &y, config.loss)?;
        tracker.check(&rows, &losses, None)?;
        let mut worst = worst.ok_or_else(|| invalid("pgd", "no iterate"))?;
        worst.offer(&cur, &rows, self.label_t, &losses, &preds, config.steps)?;
        Ok(worst)
    }
}
