//! The qualitative claims of the paper's section 4 (and its appendix), each checked against
//! the numbers of a sweep with a stated test.
//!
//! Runs are picked by `(experiment, network, role)` from their configs, never by variant
//! name. Robustness comparisons use a per-seed *score*: the mean accuracy over the
//! attack's grid points with strength > 0 (the normalised area under the curve). The tests
//! ([`crate::hypothesis`], every one one-sided at level 0.05, Welch's t for two variants):
//!
//! * **more robust** (`A > B`): supported when the lower bound of `Δ = A − B` is above 0
//!   and `Δ` is above [`MIN_EFFECT`]; not supported when the upper bound is below
//!   `MIN_EFFECT`; inconclusive otherwise.
//! * **not more robust** (`A ≯ B`): a non-superiority test with margin [`EQUIVALENCE_MARGIN`]:
//!   supported when the upper bound of `Δ` is below the margin (a worse `A` also satisfies
//!   the claim, so only this half of TOST applies); not supported when the lower bound is
//!   above it; inconclusive otherwise.
//! * **comparable** (`A ≈ B`): TOST, both one-sided tests with the same margin: supported
//!   when `−margin < lower` and `upper < margin`; not supported when the whole interval lies
//!   outside; inconclusive otherwise.
//!
//! With fewer than [`MIN_SEEDS`] seeds on either side no test is run: the verdict is a
//! *preview* that says which way the point estimates lean.
//!
//! For SpecReg the β with the best mean PGD test score stands for the family, as in the
//! paper's main figures: that is a selection on the test set, and the report says so.

use crate::config::Role;
use crate::hypothesis::{Bounds, welch};
use crate::report::{Results, VariantResults};
use crate::stats::mean;

/// The smallest robustness-score difference counted as an effect (1 point of accuracy).
pub const MIN_EFFECT: f64 = 0.01;

/// The margin of the non-superiority and equivalence tests (2 points of accuracy).
pub const EQUIVALENCE_MARGIN: f64 = 0.02;

/// Seeds each side needs before a test is run.
pub const MIN_SEEDS: usize = 3;

/// Whether a run supports a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The test supports the claim.
    Supported,
    /// The test contradicts it.
    NotSupported,
    /// The test decides neither way, or a variant the claim needs was not evaluated.
    Inconclusive,
    /// Too few seeds for a test; `leans_supported` says where the point estimates point.
    Preview {
        /// Whether the point estimates agree with the claim.
        leans_supported: bool,
    },
}

impl Verdict {
    /// The verdict as the report prints it.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Supported => "**supported**",
            Verdict::NotSupported => "**not supported**",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Preview {
                leans_supported: true,
            } => "preview (leans supported)",
            Verdict::Preview {
                leans_supported: false,
            } => "preview (leans not supported)",
        }
    }

    /// The verdict of several parts that must all hold.
    fn all(parts: &[Verdict]) -> Verdict {
        if parts.contains(&Verdict::Inconclusive) && !parts.contains(&Verdict::NotSupported) {
            return Verdict::Inconclusive;
        }
        if parts.contains(&Verdict::NotSupported) {
            return Verdict::NotSupported;
        }
        if parts.iter().any(|p| matches!(p, Verdict::Preview { .. })) {
            let lean = parts.iter().all(|p| {
                matches!(
                    p,
                    Verdict::Supported
                        | Verdict::Preview {
                            leans_supported: true
                        }
                )
            });
            return Verdict::Preview {
                leans_supported: lean,
            };
        }
        Verdict::Supported
    }
}

/// One checked claim.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimResult {
    /// The claim, in the paper's words, with its section.
    pub claim: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The test, its margin and the number of seeds.
    pub test: String,
    /// The numbers behind the verdict.
    pub numbers: String,
    /// Sanity flags raised on the runs involved.
    pub flags: Vec<String>,
}

/// The kind of two-variant comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `A` is more robust than `B`.
    More,
    /// `A` is not more robust than `B`.
    NotMore,
    /// `A` and `B` are equally robust.
    Comparable,
}

impl Comparison {
    fn test_name(self) -> String {
        match self {
            Comparison::More => {
                format!("one-sided Welch t-test, α = 0.05, Δ > 0 and Δ̄ > {MIN_EFFECT} (1 point)")
            }
            Comparison::NotMore => format!(
                "non-superiority Welch t-test (upper half of TOST), α = 0.05, margin \
                 {EQUIVALENCE_MARGIN}"
            ),
            Comparison::Comparable => {
                format!(
                    "TOST (two one-sided Welch t-tests), α = 0.05, margin ±{EQUIVALENCE_MARGIN}"
                )
            }
        }
    }

    /// The verdict of one difference; `bounds` is `None` below [`MIN_SEEDS`] seeds.
    pub fn decide(self, diff: f64, bounds: Option<Bounds>) -> Verdict {
        let m = EQUIVALENCE_MARGIN;
        let Some(b) = bounds else {
            let leans_supported = match self {
                Comparison::More => diff > MIN_EFFECT,
                Comparison::NotMore => diff < m,
                Comparison::Comparable => diff.abs() < m,
            };
            return Verdict::Preview { leans_supported };
        };
        let (yes, no) = match self {
            Comparison::More => (b.lower > 0.0 && diff > MIN_EFFECT, b.upper < MIN_EFFECT),
            Comparison::NotMore => (b.upper < m, b.lower > m),
            Comparison::Comparable => (b.lower > -m && b.upper < m, b.lower > m || b.upper < -m),
        };
        if yes {
            Verdict::Supported
        } else if no {
            Verdict::NotSupported
        } else {
            Verdict::Inconclusive
        }
    }
}

/// Welch bounds when both sides have enough seeds.
pub(crate) fn tested(a: &[f64], b: &[f64]) -> Option<Bounds> {
    (a.len() >= MIN_SEEDS && b.len() >= MIN_SEEDS)
        .then(|| welch(a, b))
        .flatten()
}

pub(crate) fn seeds_note(vs: &[&VariantResults]) -> String {
    let counts: Vec<String> = vs
        .iter()
        .map(|v| format!("{} {}", v.variant, v.seeds()))
        .collect();
    format!("seeds: {}", counts.join(", "))
}

pub(crate) fn bounds_text(b: &Option<Bounds>) -> String {
    match b {
        Some(b) => format!(", 95% one-sided bounds [{:+.3}, {:+.3}]", b.lower, b.upper),
        None => String::new(),
    }
}

/// The variant of `(experiment, model, role)`; for several (a β sweep) the one with the
/// best mean PGD score.
pub(crate) fn pick<'a>(
    results: &'a Results,
    experiment: &str,
    model: &str,
    role: Role,
) -> Option<&'a VariantResults> {
    results
        .with_role(experiment, model, role)
        .into_iter()
        .max_by(|a, b| mean(&a.scores("pgd")).total_cmp(&mean(&b.scores("pgd"))))
}

pub(crate) fn flags_of(vs: &[&VariantResults]) -> Vec<String> {
    vs.iter()
        .flat_map(|v| {
            v.flags()
                .into_iter()
                .map(move |f| format!("{}: {f}", v.variant))
        })
        .collect()
}

pub(crate) fn inconclusive(claim: &str, why: &str) -> ClaimResult {
    ClaimResult {
        claim: claim.into(),
        verdict: Verdict::Inconclusive,
        test: "—".into(),
        numbers: why.into(),
        flags: Vec::new(),
    }
}

pub(crate) const MISSING: &str = "a variant it needs was not evaluated in this run";

/// A two-variant comparison of robustness scores under each of `attacks` (all must hold).
pub fn compare(
    claim: &str,
    a: Option<&VariantResults>,
    b: Option<&VariantResults>,
    attacks: &[&str],
    kind: Comparison,
) -> ClaimResult {
    let (Some(a), Some(b)) = (a, b) else {
        return inconclusive(claim, MISSING);
    };
    let mut numbers = Vec::new();
    let mut verdicts = Vec::new();
    for &attack in attacks {
        let (sa, sb) = (a.scores(attack), b.scores(attack));
        if sa.is_empty() || sb.is_empty() {
            return inconclusive(
                claim,
                &format!("no {attack} curve in {} or {}", a.variant, b.variant),
            );
        }
        let diff = mean(&sa) - mean(&sb);
        let bounds = tested(&sa, &sb);
        verdicts.push(kind.decide(diff, bounds));
        numbers.push(format!(
            "{}: {:.3} vs {:.3}, Δ = {diff:+.3}{}",
            attack.to_uppercase(),
            mean(&sa),
            mean(&sb),
            bounds_text(&bounds)
        ));
    }
    ClaimResult {
        claim: claim.into(),
        verdict: Verdict::all(&verdicts),
        test: format!("{}; {}", kind.test_name(), seeds_note(&[a, b])),
        numbers: format!("{} vs {}: {}", a.variant, b.variant, numbers.join("; ")),
        flags: flags_of(&[a, b]),
    }
}

/// "`a`'s per-seed `values` exceed `b`'s" (α distances, d90), Welch one-sided.
pub(crate) fn greater(
    claim: &str,
    what: &str,
    a: (&VariantResults, Vec<f64>),
    b: (&VariantResults, Vec<f64>),
) -> ClaimResult {
    if a.1.is_empty() || b.1.is_empty() {
        return inconclusive(
            claim,
            &format!("no {what} for {} or {}", a.0.variant, b.0.variant),
        );
    }
    let diff = mean(&a.1) - mean(&b.1);
    let bounds = tested(&a.1, &b.1);
    let verdict = match bounds {
        None => Verdict::Preview {
            leans_supported: diff > 0.0,
        },
        Some(bd) if bd.lower > 0.0 => Verdict::Supported,
        Some(bd) if bd.upper < 0.0 => Verdict::NotSupported,
        Some(_) => Verdict::Inconclusive,
    };
    ClaimResult {
        claim: claim.into(),
        verdict,
        test: format!(
            "one-sided Welch t-test on per-seed {what}, α = 0.05, margin 0; {}",
            seeds_note(&[a.0, b.0])
        ),
        numbers: format!(
            "{what}: {} {:.3}, {} {:.3}, Δ = {diff:+.3}{}",
            a.0.variant,
            mean(&a.1),
            b.0.variant,
            mean(&b.1),
            bounds_text(&bounds)
        ),
        flags: Vec::new(),
    }
}

mod paper;
#[cfg(test)]
mod tests;

pub use paper::evaluate_claims;
