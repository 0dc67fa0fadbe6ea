//! Auto-PGD (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness with
//! an ensemble of diverse parameter-free attacks", Algorithm 1), L∞.
//!
//! Maximise `L(f(x + δ), y)` over `‖δ‖_∞ ≤ ε`, `x + δ ∈ [lo, hi]` with `P` the projection
//! onto both constraints (one clamp to the box `[max(x − ε, lo), min(x + ε, hi)]`), from
//! `x⁽⁰⁾` (the clean image, or a uniform random point of the ball), with a step size
//! `η⁽⁰⁾ = 2ε` per sample and momentum `α` (0.75):
//!
//! * `x⁽¹⁾ = P(x⁽⁰⁾ + η sign ∇L(x⁽⁰⁾))`;
//! * for `k ≥ 1`: `z = P(x⁽ᵏ⁾ + η sign ∇L(x⁽ᵏ⁾))`,
//!   `x⁽ᵏ⁺¹⁾ = P(x⁽ᵏ⁾ + α (z − x⁽ᵏ⁾) + (1 − α)(x⁽ᵏ⁾ − x⁽ᵏ⁻¹⁾))`.
//!
//! Checkpoints `w_j = ⌈p_j N⌉` for `N` iterations, `p_0 = 0`, `p_1 = 0.22`,
//! `p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)` ([`apgd_checkpoints`]: 0, 22, 41, 57,
//! 70, 80, 87, 93, 99 for `N = 100`). After iterate `x^(w_j)` (`0 < w_j < N`) has been
//! evaluated, each sample halves its step size if
//!
//! 1. fewer than `ρ (w_j − w_{j−1})` of the steps since the last checkpoint raised its loss
//!    (`L(x⁽ⁱ⁺¹⁾) > L(x⁽ⁱ⁾)`, `ρ` = 0.75), or
//! 2. its step size was not halved at the last checkpoint and its best loss has not risen
//!    since then;
//!
//! and a sample that halves continues from its best (highest-loss) point so far, with that
//! point's gradient (the momentum term then is `x_max − x⁽ᵏ⁻¹⁾`, as in the authors' code).
//! Condition 1 is the paper's strict `<`; the authors' code uses `≤`.
//!
//! The loss is the cross-entropy (APGD-CE) or Croce & Hein's difference of logits ratio
//! (APGD-DLR, [`AttackLoss::Dlr`], at least 3 classes); any [`AttackLoss`] works. Each
//! iterate `x⁽⁰⁾ … x⁽ᴺ⁾` is evaluated (`N` gradients and one last forward pass) and, as in
//! [`pgd`](mod@crate::pgd), each sample reports its worst iterate over every iterate and
//! restart: misclassified first, then the highest loss. So the highest-loss point is kept,
//! and any misclassified point found replaces it.
//!
//! Restarts, seeds and the ε = 0 shortcut follow [`PgdConfig`](crate::PgdConfig): restart
//! `r` draws from `Rng::new(seed + r · 0x9E3779B97F4A7C15)`, uniform in `[−ε, ε]^D` (the
//! authors start on the ball's boundary; a uniform start shares its draws with PGD's).
//! With [`ApgdConfig::early_exit`] a sample leaves the batch at its first misclassified
//! iterate, as in [PGD](mod@crate::pgd): its worst iterate is then misclassified whatever
//! the remaining steps find, and the step-size rule is per sample, so the others' iterates
//! do not change (up to the last bits of the matrix products, whose blocking may depend on
//! the batch size). Which samples are fooled is the same; the losses and kept images of
//! the fooled ones are those of the first fooling iterate.
//!
//! The step-size rule runs on the device (per-sample `[B]` tensors and masks), so a step
//! makes no host read; the results are read once per call, as for PGD.

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
use crate::perturb::{ClipRange, Norm, check_epsilon, clamp_box, linf_box};
use crate::rowops::{ActiveRows, label_tensor};

/// Every parameter of an APGD attack (L∞).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ApgdConfig {
    /// The budget ε (replaced by each grid value in a robustness curve).
    pub epsilon: f64,
    /// The loss ascended: cross-entropy (APGD-CE) or DLR (APGD-DLR).
    pub loss: AttackLoss,
    /// Iterations `N` (100 in Croce & Hein): `N` gradient evaluations per run.
    pub steps: usize,
    /// Independent runs; each sample keeps its worst iterate over all of them. More than
    /// one needs `random_start`.
    pub restarts: usize,
    /// Start from a uniform random point of the ball instead of the clean image.
    pub random_start: bool,
    /// Momentum `α` in `(0, 1]` (0.75; 1 is no momentum).
    pub momentum: f64,
    /// The share `ρ` in `(0, 1]` of loss-raising steps below which the step size halves
    /// (0.75).
    pub rho: f64,
    /// The valid pixel range.
    pub clip: ClipRange,
    /// Seed of the random starts.
    pub seed: u64,
    /// Stop attacking a sample once an iterate misclassifies it (same robust accuracy,
    /// less work; see the module docs).
    pub early_exit: bool,
}

impl ApgdConfig {
    /// APGD-CE at budget `epsilon`: 100 iterations, one run from the clean image, α = 0.75,
    /// ρ = 0.75, pixels in `[0, 1]`, seed 0, no early exit.
    pub fn ce(epsilon: f64) -> Self {
        Self {
            epsilon,
            loss: AttackLoss::CrossEntropy,
            steps: 100,
            restarts: 1,
            random_start: false,
            momentum: 0.75,
            rho: 0.75,
            clip: ClipRange::default(),
            seed: 0,
            early_exit: false,
        }
    }

    /// APGD-DLR at budget `epsilon`, otherwise as [`ApgdConfig::ce`].
    pub fn dlr(epsilon: f64) -> Self {
        Self {
            loss: AttackLoss::Dlr,
            ..Self::ce(epsilon)
        }
    }

    /// The same configuration at another budget.
    pub fn with_epsilon(self, epsilon: f64) -> Self {
        Self { epsilon, ..self }
    }

    /// The checkpoints of this configuration's `steps` ([`apgd_checkpoints`]).
    pub fn checkpoints(&self) -> Vec<usize> {
        apgd_checkpoints(self.steps)
    }

    /// Errors naming the first invalid field.
    pub fn validate(&self) -> Result<()> {
        check_epsilon("ApgdConfig.epsilon", self.epsilon)?;
        self.clip.validate("ApgdConfig.clip")?;
        if self.steps == 0 {
            return Err(invalid("ApgdConfig.steps", "must be at least 1"));
        }
        if self.restarts == 0 {
            return Err(invalid("ApgdConfig.restarts", "must be at least 1"));
        }
        if self.restarts > 1 && !self.random_start {
            return Err(invalid(
                "ApgdConfig.restarts",
                format!(
                    "{} restarts without random_start would repeat the same deterministic run",
                    self.restarts
                ),
            ));
        }
        for (what, v) in [
            ("ApgdConfig.momentum", self.momentum),
            ("ApgdConfig.rho", self.rho),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return Err(invalid(what, format!("{v} must lie in (0, 1]")));
            }
        }
        Ok(())
    }
}

/// The checkpoints `w_0 = 0 < w_1 < … ≤ steps` of APGD with `steps` iterations:
/// `w_j = ⌈p_j · steps⌉` for every `p_j ≤ 1` of `p_0 = 0`, `p_1 = 0.22`,
/// `p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)`, repeated values dropped. The `p_j`
/// are multiples of 0.01 and computed exactly (in hundredths), so `⌈0.22 · 100⌉` is 22.
pub fn apgd_checkpoints(steps: usize) -> Vec<usize> {
    let mut out = vec![0];
    let mut last = 0;
    let (mut prev, mut cur) = (0usize, 22usize);
    while cur <= 100 {
        let w = (cur * steps).div_ceil(100);
        if w > last {
            out.push(w);
            last = w;
        }
        let next = cur + (cur - prev).saturating_sub(3).max(6);
        (prev, cur) = (cur, next);
    }
    out
}

/// APGD on one batch `x: [B, D]` with `labels`.
///
/// # Errors
/// An invalid configuration (see [`ApgdConfig::validate`]), inputs outside the clip range,
/// mismatched shapes or labels, a non-finite loss or gradient, a loss the classifier
/// cannot differentiate or the model has too few classes for (DLR needs 3), or what the
/// classifier reports.
pub fn apgd<C: Classifier + ?Sized>(
    model: &mut C,
    x: &Tensor,
    labels: &[usize],
    config: &ApgdConfig,
) -> Result<AttackOutput> {
    config.validate()?;
    let x = prepare(model, x, labels, config.clip, "apgd")?;
    let mut rngs = restart_rngs(config.random_start, config.restarts, config.seed);
    let starts = draw_unit_starts(Norm::Linf, &mut rngs, x.shape(), x.dtype())?;
    apgd_prepared(model, &x, labels, config, &starts)
}

/// APGD at `config.epsilon` on a prepared batch, from the given unit random starts (one
/// per restart, or none for a start at the clean image).
pub(crate) fn apgd_prepared<C: Classifier + ?Sized>(
    model: &mut C,
    x: &Tensor,
    labels: &[usize],
    config: &ApgdConfig,
    unit_starts: &[Tensor],
) -> Result<AttackOutput> {
    let epsilon = config.epsilon;
    if config.early_exit {
        refuse_mixed_samples(model, "ApgdConfig.early_exit")?;
    }
    if epsilon == 0.0 {
        return clean_output(model, x, labels, config.loss, config.clip, "apgd");
    }
    let (lo, hi) = linf_box(x, epsilon, config.clip)?;
    let device = x.device();
    let label_t = label_tensor(labels, &device)?;
    let mut tracker = Tracker::new(Norm::Linf, config.clip, labels.len(), &device)?;
    let run = Run {
        x,
        lo: &lo,
        hi: &hi,
        labels,
        label_t: &label_t,
        config,
        checkpoints: config.checkpoints(),
    };
    let start_of = |u: Option<&Tensor>| -> Result<Tensor> {
        match u {
            None => Ok(x.clone()),
            Some(u) => {
                let u = u.to_device(&device)?;
                clamp_box(&x.add(&u.scale(epsilon)?)?, &lo, &hi)
            }
        }
    };
    // The zero-gradient count is that of the first run's start.
    let mut overall = run.single(model, start_of(unit_starts.first())?, &mut tracker, true)?;
    for u in unit_starts.iter().skip(1) {
        let worst = run.single(model, start_of(Some(u))?, &mut tracker, false)?;
        overall.merge(&worst)?;
    }
    finish(overall, tracker, epsilon, "apgd")
}

/// What every run of one APGD call shares.
struct Run<'a> {
    x: &'a Tensor,
    lo: &'a Tensor,
    hi: &'a Tensor,
    labels: &'a [usize],
    label_t: &'a Tensor,
    config: &'a ApgdConfig,
    checkpoints: Vec<usize>,
}

/// The per-sample state of the step-size rule, as `[B]` `f64` tensors (counts and flags as
/// whole numbers) and the best point's `[B, D]` image and gradient.
struct StepRule {
    /// Current step size `η` of each sample.
    eta: Tensor,
    /// Loss at the current iterate.
    current: Tensor,
    /// Best loss so far, with its point and gradient.
    best: Tensor,
    best_x: Tensor,
    best_grad: Tensor,
    /// Loss-raising steps since the last checkpoint.
    successes: Tensor,
    /// Best loss at the last checkpoint, and whether the step size halved there (1/0).
    best_at_check: Tensor,
    halved_at_check: Tensor,
}

impl StepRule {
    /// Every per-sample tensor, for early exit to keep the rows of the samples left.
    fn per_sample(&mut self) -> [&mut Tensor; 8] {
        [
            &mut self.eta,
            &mut self.current,
            &mut self.best,
            &mut self.best_x,
            &mut self.best_grad,
            &mut self.successes,
            &mut self.best_at_check,
            &mut self.halved_at_check,
        ]
    }

    /// Records the loss of a new iterate `x` with gradient `grad`.
    fn record(&mut self, x: &Tensor, grad: &Tensor, losses: &Tensor) -> Result<()> {
        self.successes = self.successes.add(&losses.greater(&self.current)?)?;
        self.current = losses.clone();
        let improved = losses.greater(&self.best)?;
        self.best = improved.where_cond(losses, &self.best)?;
        let rows = improved.to_dtype(x.dtype())?;
        self.best_x = rows.where_cond(x, &self.best_x)?;
        self.best_grad = rows.where_cond(grad, &self.best_grad)?;
        Ok(())
    }

    /// The checkpoint rule after `interval` steps: the `[B]` 1/0 mask of the samples that
    /// halve their step size (and continue from their best point).
    fn check(&mut self, interval: usize, rho: f64) -> Result<Tensor> {
        let threshold = self
            .successes
            .full_like(rho * interval as f64, self.successes.shape())?;
        let few_successes = threshold.greater(&self.successes)?;
        // best ≤ best_at_check, written as two comparisons (false for NaN, like `<=`).
        let not_raised = self
            .best_at_check
            .greater(&self.best)?
            .add(&self.best.equal(&self.best_at_check)?)?;
        let one = self
            .halved_at_check
            .full_like(1.0, self.halved_at_check.shape())?;
        let stalled = one.sub(&self.halved_at_check)?.mul(&not_raised)?;
        let halve = few_successes.maximum(&stalled)?;
        self.eta = halve.where_cond(&self.eta.scale(0.5)?, &self.eta)?;
        self.current = halve.where_cond(&self.best, &self.current)?;
        self.halved_at_check = halve.clone();
        self.best_at_check = self.best.clone();
        self.successes = self.successes.full_like(0.0, self.successes.shape())?;
        Ok(halve)
    }
}

impl Run<'_> {
    /// One APGD run from `start`; `tracker` records its violations and finiteness, and the
    /// zero rows of its first gradient if `first`.
    fn single<C: Classifier + ?Sized>(
        &self,
        model: &mut C,
        start: Tensor,
        tracker: &mut Tracker,
        first: bool,
    ) -> Result<Worst> {
        let cfg = self.config;
        let b = self.labels.len();
        let mut rows = ActiveRows::all(b);
        let (mut x0, mut lo, mut hi) = (self.x.clone(), self.lo.clone(), self.hi.clone());
        let mut y: Vec<usize> = self.labels.to_vec();
        tracker.new_rows()?;
        tracker.track(&start, &x0)?;
        let lg = loss_gradient(model, &start, &y, cfg.loss)?;
        tracker.check(&rows, &lg.losses, Some(&lg.grad))?;
        if first {
            tracker.count_zero_rows(&lg.grad)?;
        }
        let mut worst = Worst::start(&start, self.label_t, &lg.losses, &lg.predictions)?;
        let zeros = lg.losses.full_like(0.0, &[b])?;
        let mut rule = StepRule {
            eta: lg.losses.full_like(2.0 * cfg.epsilon, &[b])?,
            current: lg.losses.clone(),
            best: lg.losses.clone(),
            best_x: start.clone(),
            best_grad: lg.grad.clone(),
            successes: zeros.clone(),
            best_at_check: lg.losses,
            halved_at_check: zeros,
        };
        let (mut prev, mut cur, mut grad) = (start.clone(), start, lg.grad);
        let mut predictions = lg.predictions;
        let mut last_check = 0;
        for k in 0..cfg.steps {
            if cfg.early_exit {
                // The samples the last evaluated iterate fooled leave the batch.
                let mut state = vec![&mut prev, &mut cur, &mut grad, &mut x0, &mut lo, &mut hi];
                state.extend(rule.per_sample());
                if !keep_correct(&predictions, &mut y, &mut rows, tracker, &mut state)? {
                    return Ok(worst);
                }
            }
            let step = grad.sign()?.scale_rows(&rule.eta)?;
            let z = clamp_box(&cur.add(&step)?, &lo, &hi)?;
            let next = if k == 0 {
                z
            } else {
                let pull = z.sub(&cur)?.scale(cfg.momentum)?;
                let push = cur.sub(&prev)?.scale(1.0 - cfg.momentum)?;
                clamp_box(&cur.add(&pull)?.add(&push)?, &lo, &hi)?
            };
            (prev, cur) = (cur, next);
            tracker.track(&cur, &x0)?;
            let t = k + 1;
            if t < cfg.steps {
                let lg = loss_gradient(model, &cur, &y, cfg.loss)?;
                tracker.check(&rows, &lg.losses, Some(&lg.grad))?;
                worst.offer(&cur, &rows, self.label_t, &lg.losses, &lg.predictions, t)?;
                rule.record(&cur, &lg.grad, &lg.losses)?;
                grad = lg.grad;
                predictions = lg.predictions;
            } else {
                // The last iterate needs no gradient.
                let logits = model.logits(&cur)?;
                let (losses, preds) = loss_values(&logits, &y, cfg.loss)?;
                tracker.check(&rows, &losses, None)?;
                worst.offer(&cur, &rows, self.label_t, &losses, &preds, t)?;
            }
            if t < cfg.steps && self.checkpoints.contains(&t) {
                let halve = rule.check(t - last_check, cfg.rho)?.to_dtype(cur.dtype())?;
                last_check = t;
                cur = halve.where_cond(&rule.best_x, &cur)?;
                grad = halve.where_cond(&rule.best_grad, &grad)?;
            }
        }
        Ok(worst)
    }
}
