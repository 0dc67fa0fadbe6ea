//! [`SanityFlag`]: what a careful reviewer would distrust in a robustness result, and the
//! checks that raise each flag, on one curve or across the curves of a report.

use crate::Result;
use crate::attack::Attack;
use crate::curve::{CurvePoint, RobustnessCurve};
use crate::error::invalid;
use crate::perturb::rounding_tolerance;

/// How much more accurate (as a share of the images) an attack expected to be stronger may
/// leave a model than one expected to be weaker before [`robustness_report`] raises
/// [`SanityFlag::WeakerAttackStronger`]: one percentage point.
///
/// [`robustness_report`]: crate::robustness_report
pub const ATTACK_ORDER_TOLERANCE: f64 = 0.01;

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
    /// Some images had an exactly zero input gradient at the attack's first gradient
    /// evaluation: a gradient attack cannot move them, which is how gradient masking
    /// (saturated units, a non-differentiable layer) makes a model look robust.
    ZeroGradientRows {
        /// The attack's name.
        attack: String,
        /// The strength.
        strength: f64,
        /// Images with a zero gradient row ([`CurvePoint::zero_gradient_rows`]).
        rows: usize,
        /// Images evaluated.
        num_images: usize,
    },
    /// An attack expected to be weaker left fewer images correct, by more than the
    /// tolerance, than one expected to be stronger, at the same strength (see
    /// [`compare_attack_strength`]): the stronger attack is probably broken or masked.
    WeakerAttackStronger {
        /// The attack expected to be weaker.
        weaker: String,
        /// The attack expected to be stronger.
        stronger: String,
        /// The budget.
        epsilon: f64,
        /// The weaker attack's accuracy.
        weaker_accuracy: f64,
        /// The stronger attack's accuracy.
        stronger_accuracy: f64,
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
            SanityFlag::ZeroGradientRows {
                attack,
                strength,
                rows,
                num_images,
            } => write!(
                f,
                "{attack}: {rows} of {num_images} images have an exactly zero input gradient at \
                 the start of the attack at strength {strength} (possible gradient masking)"
            ),
            SanityFlag::WeakerAttackStronger {
                weaker,
                stronger,
                epsilon,
                weaker_accuracy,
                stronger_accuracy,
            } => write!(
                f,
                "{weaker} (the weaker attack) leaves accuracy {weaker_accuracy:.4}, below \
                 {stronger}'s {stronger_accuracy:.4} at ε = {epsilon}: {stronger} is not as \
                 strong as it should be"
            ),
        }
    }
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

/// [`SanityFlag::WeakerAttackStronger`] for every strength present in both curves where
/// `weaker` leaves fewer images correct than `stronger` by more than `tolerance` (a share
/// of the images: 0.01 is one percentage point, [`ATTACK_ORDER_TOLERANCE`]). None if the
/// curves were evaluated on different numbers of images. The comparison is on image
/// counts, so a difference of exactly the tolerance is not flagged.
///
/// # Errors
/// A negative or non-finite tolerance.
pub fn compare_attack_strength(
    weaker: &RobustnessCurve,
    stronger: &RobustnessCurve,
    tolerance: f64,
) -> Result<Vec<SanityFlag>> {
    if !(tolerance.is_finite() && tolerance >= 0.0) {
        return Err(invalid(
            "compare_attack_strength",
            format!("tolerance {tolerance} must be finite and ≥ 0"),
        ));
    }
    if weaker.num_images != stronger.num_images {
        return Ok(Vec::new());
    }
    let allowed = tolerance * weaker.num_images as f64 * (1.0 + 1e-12);
    let mut flags = Vec::new();
    for w in &weaker.points {
        for s in stronger.points.iter().filter(|s| s.strength == w.strength) {
            if s.correct > w.correct && (s.correct - w.correct) as f64 > allowed {
                flags.push(SanityFlag::WeakerAttackStronger {
                    weaker: weaker.attack.name().to_string(),
                    stronger: stronger.attack.name().to_string(),
                    epsilon: w.strength,
                    weaker_accuracy: w.accuracy,
                    stronger_accuracy: s.accuracy,
                });
            }
        }
    }
    Ok(flags)
}

/// The cross-curve flags of a report: [`compare_pgd_fgsm`] for each cross-entropy L∞ PGD
/// curve against each FGSM curve, and [`compare_attack_strength`] (tolerance
/// [`ATTACK_ORDER_TOLERANCE`]) for every other pair in the order FGSM ≤ PGD-CE ≤
/// {PGD on another loss, APGD}. [`robustness_report`](crate::robustness_report) applies it
/// to its curves; call it on curves evaluated separately, all on the same classifier and
/// images.
///
/// # Errors
/// None in practice (the tolerance is the fixed [`ATTACK_ORDER_TOLERANCE`]).
pub fn cross_curve_flags(curves: &[RobustnessCurve]) -> Result<Vec<SanityFlag>> {
    let mut flags = Vec::new();
    for p in curves.iter().filter(|c| c.attack.linf_tier() == Some(1)) {
        for f in curves.iter().filter(|c| c.attack.linf_tier() == Some(0)) {
            flags.extend(compare_pgd_fgsm(p, f));
        }
    }
    for w in curves {
        for s in curves {
            if let (Some(tw), Some(ts)) = (w.attack.linf_tier(), s.attack.linf_tier())
                && tw < ts
                && !(tw == 0 && ts == 1)
            {
                flags.extend(compare_attack_strength(w, s, ATTACK_ORDER_TOLERANCE)?);
            }
        }
    }
    Ok(flags)
}

/// The checks a single curve can fail on its own.
pub(crate) fn curve_flags(curve: &RobustnessCurve, tolerance: usize) -> Vec<SanityFlag> {
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
        if p.zero_gradient_rows > 0 {
            flags.push(SanityFlag::ZeroGradientRows {
                attack: name.clone(),
                strength: p.strength,
                rows: p.zero_gradient_rows,
                num_images: curve.num_images,
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
