//! Robustness curves: accuracy as a function of the attack strength (ε, or σ for noise)
//! over a grid, on a whole test set in batches, with the sanity checks a reviewer would
//! apply returned as data ([`SanityFlag`]).
//!
//! For each batch the clean images are converted once, their clean predictions counted,
//! and every grid value attacked. Random draws are shared across the grid (common random
//! numbers): the noise `z` of an image is the same at every σ, and a PGD random start is the
//! same unit-ball point scaled by each ε (PGD and APGD alike). Draws are taken batch after
//! batch from one generator per stream, so each image gets the same draws whatever the
//! batch size.
//!
//! Gradient attacks also count, per point, the images whose first input gradient is exactly
//! zero ([`CurvePoint::zero_gradient_rows`], flagged as [`SanityFlag::ZeroGradientRows`]),
//! and a report checks that attacks expected to be stronger are
//! ([`SanityFlag::PgdAboveFgsm`], [`SanityFlag::WeakerAttackStronger`]).

use ndarray::ArrayView2;
use specreg_tensor::{DType, Device, Rng, Tensor};

use crate::Result;
use crate::apgd::apgd_prepared;
use crate::attack::Attack;
use crate::classifier::Classifier;
use crate::error::{AttackError, invalid, invalid_data};
use crate::fgsm::fgsm_prepared;
use crate::flags::{SanityFlag, cross_curve_flags, curve_flags};
use crate::iterates::{draw_unit_starts, restart_rngs};
use crate::loss::{AttackLoss, loss_values};
use crate::noise::add_noise;
use crate::output::{AttackOutput, prepare};
use crate::perturb::{ClipRange, Norm, batch_tensor};
use crate::pgd::pgd_prepared;
use crate::rowops::{label_tensor, nonfinite_rows};

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
    /// Mean loss at the attacked images: the cross-entropy, or the attack's own loss for
    /// PGD and APGD on another [`AttackLoss`](crate::AttackLoss).
    pub mean_loss: f64,
    /// Largest amount any evaluated image lay outside its ε-ball (0 for noise).
    pub max_ball_violation: f64,
    /// Largest amount any evaluated image lay outside the clip range.
    pub max_clip_violation: f64,
    /// Images whose input gradient was exactly zero at the attack's first gradient
    /// evaluation ([`AttackOutput::zero_gradient_rows`]); 0 for noise and at strength 0,
    /// where nothing moves.
    pub zero_gradient_rows: usize,
    /// Input gradients the attack evaluated at this point, summed over images
    /// ([`AttackOutput::gradient_evaluations`]); 0 for noise.
    pub gradient_evaluations: u64,
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
    /// The checks this curve fails on its own (see also
    /// [`compare_pgd_fgsm`](crate::compare_pgd_fgsm) and
    /// [`compare_attack_strength`](crate::compare_attack_strength)).
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

    /// The input gradients evaluated at each point, in grid order.
    pub fn gradient_evaluations(&self) -> Vec<u64> {
        self.points.iter().map(|p| p.gradient_evaluations).collect()
    }
}

/// Several curves on the same images, and every flag: each curve's own plus the
/// comparisons across curves of attacks expected to be weaker and stronger (see
/// [`robustness_report`]).
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
    let mut acc = Accumulator::new(grid);
    let mut clean_correct = 0usize;
    let mut noise_rng = match attack {
        Attack::WhiteNoise { seed, .. } => Some(Rng::new(*seed)),
        _ => None,
    };
    let mut start_rngs = match attack {
        Attack::Pgd(c) => restart_rngs(c.random_start, c.restarts, c.seed),
        Attack::Apgd(c) => restart_rngs(c.random_start, c.restarts, c.seed),
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
                    acc.add(j, &fgsm_prepared(model, &x, &y, eps, *clip)?, &y);
                }
            }
            Attack::Pgd(cfg) => {
                let starts = draw_unit_starts(cfg.norm, &mut start_rngs, x.shape(), dtype)?;
                for (j, &eps) in grid.iter().enumerate() {
                    let cfg = cfg.with_epsilon(eps);
                    acc.add(j, &pgd_prepared(model, &x, &y, &cfg, eps, &starts)?, &y);
                }
            }
            Attack::Apgd(cfg) => {
                let starts = draw_unit_starts(Norm::Linf, &mut start_rngs, x.shape(), dtype)?;
                for (j, &eps) in grid.iter().enumerate() {
                    let cfg = cfg.with_epsilon(eps);
                    acc.add(j, &apgd_prepared(model, &x, &y, &cfg, &starts)?, &y);
                }
            }
            Attack::WhiteNoise { clip, .. } => {
                let rng = noise_rng
                    .as_mut()
                    .ok_or_else(|| invalid(what, "no noise generator"))?;
                let z = Tensor::randn(x.shape(), 0.0, 1.0, dtype, rng, &Device::Cpu)?
                    .to_device(&device)?;
                let label_t = label_tensor(&y, &device)?;
                for (j, &sigma) in grid.iter().enumerate() {
                    let noisy = add_noise(&x, &z, sigma, *clip)?;
                    let (correct, loss_sum, reach) =
                        noise_point(model, &noisy, &y, &label_t, *clip)?;
                    let p = &mut acc.points[j];
                    p.correct += correct;
                    acc.loss_sum[j] += loss_sum;
                    p.max_clip_violation = p.max_clip_violation.max(clip.violation_of(reach));
                }
            }
        }
        start = end;
    }
    let mut points = acc.points;
    for (p, loss_sum) in points.iter_mut().zip(&acc.loss_sum) {
        p.accuracy = p.correct as f64 / n as f64;
        p.mean_loss = loss_sum / n as f64;
    }
    debug_assert_eq!(points.len(), k);
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

/// Runs every `(attack, grid)` on the same images and collects all flags: each curve's own,
/// [`compare_pgd_fgsm`](crate::compare_pgd_fgsm) for each cross-entropy L∞ PGD curve
/// against each FGSM curve, and
/// [`compare_attack_strength`](crate::compare_attack_strength) (tolerance
/// [`ATTACK_ORDER_TOLERANCE`](crate::ATTACK_ORDER_TOLERANCE), one percentage point) for
/// every other pair of curves in the order FGSM ≤ PGD-CE ≤ {PGD-CW, PGD-DLR, APGD}, at
/// their common ε values.
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
    flags.extend(cross_curve_flags(&curves)?);
    let first = &curves[0];
    Ok(RobustnessReport {
        num_images: first.num_images,
        clean_accuracy: first.clean_accuracy,
        curves,
        flags,
    })
}

/// Per-point sums over the batches of a curve.
struct Accumulator {
    points: Vec<CurvePoint>,
    loss_sum: Vec<f64>,
}

impl Accumulator {
    fn new(grid: &[f64]) -> Self {
        let points = grid
            .iter()
            .map(|&strength| CurvePoint {
                strength,
                correct: 0,
                accuracy: 0.0,
                mean_loss: 0.0,
                max_ball_violation: 0.0,
                max_clip_violation: 0.0,
                zero_gradient_rows: 0,
                gradient_evaluations: 0,
            })
            .collect();
        Self {
            points,
            loss_sum: vec![0.0; grid.len()],
        }
    }

    /// Adds one batch's attack output at grid point `j`.
    fn add(&mut self, j: usize, out: &AttackOutput, labels: &[usize]) {
        let p = &mut self.points[j];
        p.correct += out.correct(labels);
        p.gradient_evaluations += out.gradient_evaluations;
        self.loss_sum[j] += out.losses.iter().sum::<f64>();
        p.max_ball_violation = p.max_ball_violation.max(out.max_ball_violation);
        p.max_clip_violation = p.max_clip_violation.max(out.max_clip_violation);
        if p.strength > 0.0 {
            p.zero_gradient_rows += out.zero_gradient_rows;
        }
    }
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

/// The correct count, the loss sum (in `f64`, in sample order) and the clip-range reach
/// ([`ClipRange::reach`]) of one batch of noisy images, in one host read.
fn noise_point<C: Classifier + ?Sized>(
    model: &mut C,
    noisy: &Tensor,
    labels: &[usize],
    label_t: &Tensor,
    clip: ClipRange,
) -> Result<(usize, f64, f64)> {
    let logits = model.logits(noisy)?;
    let (losses, preds) = loss_values(&logits, labels, AttackLoss::CrossEntropy)?;
    let correct = preds.equal(label_t)?.sum_all_f64()?;
    let nonfinite = losses.scale(0.0)?.sum_all_f64()?;
    let packed = Tensor::concat(&[
        &correct,
        &losses.sum_all_f64()?,
        &clip.reach(noisy)?,
        &nonfinite,
    ])?
    .to_vec::<f64>()?;
    if !packed[3].is_finite() {
        // The error path may read more: find the sample.
        let rows = nonfinite_rows(&losses.reshape(&[labels.len(), 1])?)?.to_vec::<f64>()?;
        return Err(AttackError::NonFinite {
            what: "white noise: cross-entropy loss".into(),
            value: packed[3],
            sample: rows.iter().position(|v| !v.is_finite()),
        });
    }
    Ok((packed[0] as usize, packed[1], packed[2]))
}
