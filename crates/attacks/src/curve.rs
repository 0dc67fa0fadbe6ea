//! Robustness curves: accuracy as a function of the attack strength (ε, or σ for noise)
//! over a grid, on a whole test set in batches, with the sanity checks a reviewer would
//! apply returned as data ([`SanityFlag`]).
//!
//! For each batch the clean images are converted once, their clean predictions counted,
//! and every grid value attacked. Random draws are shared across the grid (common random
//! numbers): the noise `z` of an image is the same at every σ, and a PGD random start is the
//! same unit-ball point scaled by each ε. Draws are taken batch after batch from one
//! generator per stream, so each image gets the same draws whatever the batch size.

use ndarray::ArrayView2;
use specreg_tensor::{DType, Device, Rng, Tensor};

use crate::Result;
use crate::classifier::{Classifier, per_sample_loss};
use crate::error::{invalid, invalid_data};
use crate::fgsm::fgsm_prepared;
use crate::noise::{add_noise, check_sigma};
use crate::output::prepare;
use crate::perturb::{ClipRange, Norm, batch_tensor, check_epsilon, rounding_tolerance};
use crate::pgd::{PgdConfig, draw_unit_starts, pgd_prepared, restart_rngs};

/// An attack a curve sweeps, with every parameter except its strength (the grid value).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Attack {
    /// FGSM (eq. 6), L∞ budget ε.
    Fgsm {
        /// The valid pixel range.
        clip: ClipRange,
    },
    /// PGD (eqs. 7–8); the config's `epsilon` is ignored (each grid value replaces it).
    Pgd(PgdConfig),
    /// Additive Gaussian noise of standard deviation σ.
    WhiteNoise {
        /// The valid pixel range.
        clip: ClipRange,
        /// Seed of the noise.
        seed: u64,
    },
}

impl Attack {
    /// FGSM with pixels in `[0, 1]`.
    pub fn fgsm() -> Self {
        Attack::Fgsm {
            clip: ClipRange::default(),
        }
    }

    /// The paper's PGD: L∞, 40 steps of η = 0.01 from the clean image, pixels in `[0, 1]`.
    pub fn pgd() -> Self {
        Attack::Pgd(PgdConfig::linf(0.0))
    }

    /// White noise with pixels in `[0, 1]`.
    pub fn white_noise(seed: u64) -> Self {
        Attack::WhiteNoise {
            clip: ClipRange::default(),
            seed,
        }
    }

    /// A short name: `FGSM`, `PGD-Linf`, `PGD-L2` or `white noise`.
    pub fn name(&self) -> &'static str {
        match self {
            Attack::Fgsm { .. } => "FGSM",
            Attack::Pgd(c) if c.norm == Norm::Linf => "PGD-Linf",
            Attack::Pgd(_) => "PGD-L2",
            Attack::WhiteNoise { .. } => "white noise",
        }
    }

    /// The norm of the budget (`None` for noise, whose strength is a standard deviation).
    pub fn norm(&self) -> Option<Norm> {
        match self {
            Attack::Fgsm { .. } => Some(Norm::Linf),
            Attack::Pgd(c) => Some(c.norm),
            Attack::WhiteNoise { .. } => None,
        }
    }

    /// The valid pixel range.
    pub fn clip(&self) -> ClipRange {
        match self {
            Attack::Fgsm { clip } | Attack::WhiteNoise { clip, .. } => *clip,
            Attack::Pgd(c) => c.clip,
        }
    }

    fn validate_strength(&self, s: f64) -> Result<()> {
        match self {
            Attack::WhiteNoise { .. } => check_sigma(s),
            Attack::Fgsm { .. } => check_epsilon("FGSM", s),
            Attack::Pgd(c) => c.with_epsilon(s).validate(),
        }
    }
}

/// How a curve is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalOptions {
    /// Images per batch (default 1000).
    pub batch_size: usize,
    /// Evaluate only the first `n` images (default `None`: all of them, e.g. the full
    /// 10 000 test images).
    pub subset: Option<usize>,
    /// How many more correctly classified images a stronger attack may leave before
    /// [`SanityFlag::AccuracyIncreases`] is raised (default 1: one image can flip back by
    /// the luck of a tie-breaking sign or a noise draw; more than that means the
    /// curve is not trustworthy).
    pub monotone_tolerance: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            batch_size: 1000,
            subset: None,
            monotone_tolerance: 1,
        }
    }
}

/// One point of a robustness curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    /// ε (or σ for noise).
    pub strength: f64,
    /// Images still classified correctly.
    pub correct: usize,
    /// `correct / num_images`.
    pub accuracy: f64,
    /// Mean cross-entropy at the attacked images.
    pub mean_loss: f64,
    /// Largest amount any evaluated image lay outside its ε-ball (0 for noise).
    pub max_ball_violation: f64,
    /// Largest amount any evaluated image lay outside the clip range.
    pub max_clip_violation: f64,
}

/// Something about a result that a careful reviewer would distrust.
#[derive(Debug, Clone, PartialEq)]
pub enum SanityFlag {
    /// PGD left more images correct than FGSM at the same ε (PGD, started at the clean
    /// image, should be at least as strong).
    PgdAboveFgsm {
        /// The budget.
        epsilon: f64,
        /// PGD's accuracy.
        pgd_accuracy: f64,
        /// FGSM's accuracy.
        fgsm_accuracy: f64,
    },
    /// Accuracy rose by more than the tolerance from one strength to the next larger one.
    AccuracyIncreases {
        /// The attack's name.
        attack: String,
        /// The smaller strength.
        from: f64,
        /// The larger strength.
        to: f64,
        /// Correct images at `from`.
        correct_from: usize,
        /// Correct images at `to`.
        correct_to: usize,
    },
    /// At strength 0 the accuracy differs from the clean accuracy.
    ZeroStrengthMismatch {
        /// The attack's name.
        attack: String,
        /// Correct images at strength 0.
        correct: usize,
        /// Correct clean images.
        clean_correct: usize,
    },
    /// An evaluated image lay outside its ε-ball by more than rounding.
    OutsideBall {
        /// The attack's name.
        attack: String,
        /// The budget.
        epsilon: f64,
        /// How far outside.
        violation: f64,
    },
    /// An evaluated image lay outside the clip range by more than rounding.
    OutsideClipRange {
        /// The attack's name.
        attack: String,
        /// The strength.
        strength: f64,
        /// How far outside.
        violation: f64,
    },
    /// `steps · η < ε` with no random start: PGD cannot reach the edge of its ball, so it is
    /// weaker than its ε says.
    StepsCannotReachBudget {
        /// The budget.
        epsilon: f64,
        /// `steps · η`, the farthest PGD can move from the clean image.
        reach: f64,
    },
}

impl std::fmt::Display for SanityFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SanityFlag::PgdAboveFgsm {
                epsilon,
                pgd_accuracy,
                fgsm_accuracy,
            } => write!(
                f,
                "PGD accuracy {pgd_accuracy:.4} is above FGSM accuracy {fgsm_accuracy:.4} at ε = {epsilon}"
            ),
            SanityFlag::AccuracyIncreases {
                attack,
                from,
                to,
                correct_from,
                correct_to,
            } => write!(
                f,
                "{attack}: accuracy rises from {correct_from} to {correct_to} correct images between strength {from} and {to}"
            ),
            SanityFlag::ZeroStrengthMismatch {
                attack,
                correct,
                clean_correct,
            } => write!(
                f,
                "{attack}: {correct} images correct at strength 0, but {clean_correct} clean"
            ),
            SanityFlag::OutsideBall {
                attack,
                epsilon,
                violation,
            } => write!(
                f,
                "{attack}: an image lies {violation:e} outside its ε-ball at ε = {epsilon}"
            ),
            SanityFlag::OutsideClipRange {
                attack,
                strength,
                violation,
            } => write!(
                f,
                "{attack}: an image lies {violation:e} outside the clip range at strength {strength}"
            ),
            SanityFlag::StepsCannotReachBudget { epsilon, reach } => write!(
                f,
                "PGD: steps · η = {reach} < ε = {epsilon}, the attack cannot reach its budget"
            ),
        }
    }
}

/// Accuracy over a strength grid for one attack, with every parameter used.
#[derive(Debug, Clone, PartialEq)]
pub struct RobustnessCurve {
    /// The attack and all of its parameters.
    pub attack: Attack,
    /// One point per grid value, in the grid's order.
    pub points: Vec<CurvePoint>,
    /// Images evaluated.
    pub num_images: usize,
    /// Clean images classified correctly.
    pub clean_correct: usize,
    /// Clean accuracy.
    pub clean_accuracy: f64,
    /// Images per batch.
    pub batch_size: usize,
    /// The dtype the model and the attack ran in.
    pub dtype: DType,
    /// The checks this curve fails on its own (see also [`compare_pgd_fgsm`]).
    pub flags: Vec<SanityFlag>,
}

impl RobustnessCurve {
    /// The strengths, in grid order.
    pub fn strengths(&self) -> Vec<f64> {
        self.points.iter().map(|p| p.strength).collect()
    }

    /// The accuracies, in grid order.
    pub fn accuracies(&self) -> Vec<f64> {
        self.points.iter().map(|p| p.accuracy).collect()
    }
}

/// Several curves on the same images, and every flag: each curve's own plus the
/// PGD-versus-FGSM comparison of each L∞ PGD curve with each FGSM curve.
#[derive(Debug, Clone, PartialEq)]
pub struct RobustnessReport {
    /// The curves, in the order asked for.
    pub curves: Vec<RobustnessCurve>,
    /// Images evaluated.
    pub num_images: usize,
    /// Clean accuracy.
    pub clean_accuracy: f64,
    /// Every flag raised.
    pub flags: Vec<SanityFlag>,
}

/// Accuracy of `model` under `attack` at every strength of `grid`, on `images: [N, D]`
/// (pixels as `f32`, converted to the model's dtype batch by batch) with `labels`.
///
/// # Errors
/// Mismatched or empty data, pixels outside the attack's clip range, an empty grid or an
/// invalid strength, a zero batch size or subset, or anything the attack reports.
pub fn robustness_curve<C: Classifier + ?Sized>(
    model: &mut C,
    images: ArrayView2<'_, f32>,
    labels: &[u8],
    attack: &Attack,
    grid: &[f64],
    options: &EvalOptions,
) -> Result<RobustnessCurve> {
    let what = "robustness_curve";
    if grid.is_empty() {
        return Err(invalid(what, "the strength grid is empty"));
    }
    for &s in grid {
        attack.validate_strength(s)?;
    }
    let n = check_data(model, images, labels, options, what)?;
    let (dtype, device) = (model.dtype(), model.device());
    let clip = attack.clip();
    let k = grid.len();
    let mut correct = vec![0usize; k];
    let mut loss_sum = vec![0.0f64; k];
    let mut ball = vec![0.0f64; k];
    let mut clip_v = vec![0.0f64; k];
    let mut clean_correct = 0usize;
    let mut noise_rng = match attack {
        Attack::WhiteNoise { seed, .. } => Some(Rng::new(*seed)),
        _ => None,
    };
    let mut start_rngs = match attack {
        Attack::Pgd(c) => restart_rngs(c),
        _ => Vec::new(),
    };
    let mut start = 0;
    while start < n {
        let end = (start + options.batch_size).min(n);
        let y: Vec<usize> = labels[start..end].iter().map(|&l| usize::from(l)).collect();
        let x = batch_tensor(images, start, end, dtype, &device)?;
        let x = prepare(model, &x, &y, clip, what)?;
        let clean = model.logits(&x)?;
        clean_correct += count_correct(&clean, &y)?;
        match attack {
            Attack::Fgsm { clip } => {
                for (j, &eps) in grid.iter().enumerate() {
                    let out = fgsm_prepared(model, &x, &y, eps, *clip)?;
                    correct[j] += out.correct(&y);
                    loss_sum[j] += out.losses.iter().sum::<f64>();
                    ball[j] = ball[j].max(out.max_ball_violation);
                    clip_v[j] = clip_v[j].max(out.max_clip_violation);
                }
            }
            Attack::Pgd(cfg) => {
                let starts = draw_unit_starts(cfg, &mut start_rngs, x.shape(), dtype)?;
                for (j, &eps) in grid.iter().enumerate() {
                    let cfg = cfg.with_epsilon(eps);
                    let out = pgd_prepared(model, &x, &y, &cfg, eps, &starts)?;
                    correct[j] += out.correct(&y);
                    loss_sum[j] += out.losses.iter().sum::<f64>();
                    ball[j] = ball[j].max(out.max_ball_violation);
                    clip_v[j] = clip_v[j].max(out.max_clip_violation);
                }
            }
            Attack::WhiteNoise { clip, .. } => {
                let rng = noise_rng.as_mut().expect("noise generator");
                let z = Tensor::randn(x.shape(), 0.0, 1.0, dtype, rng, &Device::Cpu)?
                    .to_device(&device)?;
                for (j, &sigma) in grid.iter().enumerate() {
                    let noisy = add_noise(&x, &z, sigma, *clip)?;
                    let logits = model.logits(&noisy)?;
                    let (losses, preds, _) = per_sample_loss(&logits, &y)?;
                    correct[j] += preds.iter().zip(&y).filter(|(p, t)| p == t).count();
                    loss_sum[j] += losses.iter().sum::<f64>();
                    clip_v[j] = clip_v[j].max(clip.violation(&noisy)?);
                }
            }
        }
        start = end;
    }
    let points: Vec<CurvePoint> = (0..k)
        .map(|j| CurvePoint {
            strength: grid[j],
            correct: correct[j],
            accuracy: correct[j] as f64 / n as f64,
            mean_loss: loss_sum[j] / n as f64,
            max_ball_violation: ball[j],
            max_clip_violation: clip_v[j],
        })
        .collect();
    let mut curve = RobustnessCurve {
        attack: *attack,
        points,
        num_images: n,
        clean_correct,
        clean_accuracy: clean_correct as f64 / n as f64,
        batch_size: options.batch_size,
        dtype,
        flags: Vec::new(),
    };
    curve.flags = curve_flags(&curve, options.monotone_tolerance);
    Ok(curve)
}

/// Runs every `(attack, grid)` on the same images and collects all flags, including the
/// comparison of each L∞ PGD curve with each FGSM curve at their common ε values.
///
/// # Errors
/// As [`robustness_curve`].
pub fn robustness_report<C: Classifier + ?Sized>(
    model: &mut C,
    images: ArrayView2<'_, f32>,
    labels: &[u8],
    attacks: &[(Attack, Vec<f64>)],
    options: &EvalOptions,
) -> Result<RobustnessReport> {
    if attacks.is_empty() {
        return Err(invalid("robustness_report", "no attacks given"));
    }
    let curves = attacks
        .iter()
        .map(|(a, grid)| robustness_curve(model, images, labels, a, grid, options))
        .collect::<Result<Vec<_>>>()?;
    let mut flags: Vec<SanityFlag> = curves.iter().flat_map(|c| c.flags.clone()).collect();
    for p in curves
        .iter()
        .filter(|c| matches!(c.attack, Attack::Pgd(cfg) if cfg.norm == Norm::Linf))
    {
        for f in curves
            .iter()
            .filter(|c| matches!(c.attack, Attack::Fgsm { .. }))
        {
            flags.extend(compare_pgd_fgsm(p, f));
        }
    }
    let first = &curves[0];
    Ok(RobustnessReport {
        num_images: first.num_images,
        clean_accuracy: first.clean_accuracy,
        curves,
        flags,
    })
}

/// [`SanityFlag::PgdAboveFgsm`] for every ε present in both curves where PGD leaves more
/// images correct than FGSM (none if the curves were evaluated on different numbers of
/// images).
pub fn compare_pgd_fgsm(pgd: &RobustnessCurve, fgsm: &RobustnessCurve) -> Vec<SanityFlag> {
    if pgd.num_images != fgsm.num_images {
        return Vec::new();
    }
    let mut flags = Vec::new();
    for p in &pgd.points {
        for f in fgsm.points.iter().filter(|f| f.strength == p.strength) {
            if p.correct > f.correct {
                flags.push(SanityFlag::PgdAboveFgsm {
                    epsilon: p.strength,
                    pgd_accuracy: p.accuracy,
                    fgsm_accuracy: f.accuracy,
                });
            }
        }
    }
    flags
}

/// The checks a single curve can fail on its own.
fn curve_flags(curve: &RobustnessCurve, tolerance: usize) -> Vec<SanityFlag> {
    let name = curve.attack.name().to_string();
    let tol = rounding_tolerance(curve.dtype);
    let mut flags = Vec::new();
    for p in &curve.points {
        if p.strength == 0.0 && p.correct != curve.clean_correct {
            flags.push(SanityFlag::ZeroStrengthMismatch {
                attack: name.clone(),
                correct: p.correct,
                clean_correct: curve.clean_correct,
            });
        }
        if p.max_ball_violation > tol {
            flags.push(SanityFlag::OutsideBall {
                attack: name.clone(),
                epsilon: p.strength,
                violation: p.max_ball_violation,
            });
        }
        if p.max_clip_violation > tol {
            flags.push(SanityFlag::OutsideClipRange {
                attack: name.clone(),
                strength: p.strength,
                violation: p.max_clip_violation,
            });
        }
        if let Attack::Pgd(cfg) = curve.attack
            && !cfg.random_start
        {
            let reach = cfg.steps as f64 * cfg.step_size.at(p.strength);
            if reach < p.strength * (1.0 - 1e-9) {
                flags.push(SanityFlag::StepsCannotReachBudget {
                    epsilon: p.strength,
                    reach,
                });
            }
        }
    }
    let mut order: Vec<&CurvePoint> = curve.points.iter().collect();
    order.sort_by(|a, b| a.strength.total_cmp(&b.strength));
    for w in order.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b.strength > a.strength && b.correct > a.correct + tolerance {
            flags.push(SanityFlag::AccuracyIncreases {
                attack: name.clone(),
                from: a.strength,
                to: b.strength,
                correct_from: a.correct,
                correct_to: b.correct,
            });
        }
    }
    flags
}

/// Checks the data against the model and the options; returns the number of images to use.
fn check_data<C: Classifier + ?Sized>(
    model: &C,
    images: ArrayView2<'_, f32>,
    labels: &[u8],
    options: &EvalOptions,
    what: &str,
) -> Result<usize> {
    if images.nrows() != labels.len() {
        return Err(invalid_data(
            what,
            format!("{} images but {} labels", images.nrows(), labels.len()),
        ));
    }
    if images.nrows() == 0 {
        return Err(invalid_data(what, "no images"));
    }
    if images.ncols() != model.input_size() {
        return Err(invalid_data(
            what,
            format!(
                "images have {} values each, the model takes {}",
                images.ncols(),
                model.input_size()
            ),
        ));
    }
    if options.batch_size == 0 {
        return Err(invalid("EvalOptions.batch_size", "must be at least 1"));
    }
    match options.subset {
        Some(0) => Err(invalid("EvalOptions.subset", "must be at least 1")),
        Some(s) if s > labels.len() => Err(invalid(
            "EvalOptions.subset",
            format!("{s} images asked for, {} available", labels.len()),
        )),
        Some(s) => Ok(s),
        None => Ok(labels.len()),
    }
}

/// Correctly classified rows of `logits`.
fn count_correct(logits: &Tensor, labels: &[usize]) -> Result<usize> {
    let preds = logits.argmax_rows()?;
    Ok(preds.iter().zip(labels).filter(|(p, y)| p == y).count())
}
