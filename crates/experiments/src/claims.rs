//! The qualitative claims of the paper's section 4, each checked against the numbers of a
//! run of the sweep.
//!
//! Robustness comparisons use a per-seed *score*: the mean accuracy over the attack's grid
//! points with ε > 0 (the normalised area under the curve). "A is more robust than B" holds
//! when `mean(score_A) − mean(score_B) > max(0.01, √(std_A² + std_B²))`; "A is not more
//! robust than B" holds when that difference is at most the same margin. For SpecReg the
//! β with the best mean PGD score stands for the family, as in the paper's main figures.

use crate::report::{Results, VariantResults};
use crate::stats::{mean, std};

/// Whether a run supports a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The numbers agree with the claim.
    Supported,
    /// The numbers contradict it.
    NotSupported,
    /// A variant the claim needs was not run or not evaluated.
    Inconclusive,
}

/// One checked claim.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimResult {
    /// The claim, in the paper's words, with its section.
    pub claim: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The numbers behind the verdict.
    pub numbers: String,
    /// Sanity flags raised on the runs involved.
    pub flags: Vec<String>,
}

/// The smallest difference of scores counted as a real difference.
pub const MIN_MARGIN: f64 = 0.01;

/// A difference of two per-seed score lists and its significance margin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gap {
    /// `mean(a) − mean(b)`.
    pub diff: f64,
    /// `max(MIN_MARGIN, √(std_a² + std_b²))`.
    pub margin: f64,
}

impl Gap {
    /// The gap between per-seed scores `a` and `b` (`None` if either is empty).
    pub fn of(a: &[f64], b: &[f64]) -> Option<Gap> {
        if a.is_empty() || b.is_empty() {
            return None;
        }
        Some(Gap {
            diff: mean(a) - mean(b),
            margin: MIN_MARGIN.max((std(a).powi(2) + std(b).powi(2)).sqrt()),
        })
    }

    /// `a` is clearly above `b`.
    pub fn above(&self) -> bool {
        self.diff > self.margin
    }

    /// `a` is clearly below `b`.
    pub fn below(&self) -> bool {
        self.diff < -self.margin
    }
}

fn best_beta<'a>(results: &'a Results, prefix: &str) -> Option<&'a VariantResults> {
    results
        .variants
        .iter()
        .filter(|(id, _)| id.starts_with(prefix))
        .map(|(_, v)| v)
        .max_by(|a, b| mean(&a.scores("pgd")).total_cmp(&mean(&b.scores("pgd"))))
}

fn flags_of(vs: &[&VariantResults]) -> Vec<String> {
    vs.iter()
        .flat_map(|v| {
            v.flags()
                .into_iter()
                .map(move |f| format!("{}: {f}", v.variant))
        })
        .collect()
}

/// "`a` is more robust than `b` under each of `attacks`" (or, with `expect_more = false`,
/// "`a` is not more robust than `b`").
fn compare(
    claim: &str,
    a: Option<&VariantResults>,
    b: Option<&VariantResults>,
    attacks: &[&str],
    expect_more: bool,
) -> ClaimResult {
    let (Some(a), Some(b)) = (a, b) else {
        return inconclusive(claim);
    };
    let mut numbers = Vec::new();
    let mut all = true;
    for &attack in attacks {
        let Some(gap) = Gap::of(&a.scores(attack), &b.scores(attack)) else {
            return inconclusive(claim);
        };
        let holds = if expect_more {
            gap.above()
        } else {
            !gap.above()
        };
        all &= holds;
        numbers.push(format!(
            "{}: {:.3} vs {:.3}, Δ = {:+.3} (margin {:.3})",
            attack.to_uppercase(),
            mean(&a.scores(attack)),
            mean(&b.scores(attack)),
            gap.diff,
            gap.margin
        ));
    }
    ClaimResult {
        claim: claim.into(),
        verdict: if all {
            Verdict::Supported
        } else {
            Verdict::NotSupported
        },
        numbers: format!("{} vs {}: {}", a.variant, b.variant, numbers.join("; ")),
        flags: flags_of(&[a, b]),
    }
}

fn inconclusive(claim: &str) -> ClaimResult {
    ClaimResult {
        claim: claim.into(),
        verdict: Verdict::Inconclusive,
        numbers: "a variant it needs was not evaluated in this run".into(),
        flags: Vec::new(),
    }
}

/// Checks every claim against `results`.
pub fn evaluate_claims(results: &Results) -> Vec<ClaimResult> {
    let g = |id: &str| results.get(id);
    let mut out = Vec::new();

    // §4.1
    let e1_spec = best_beta(results, "exp1/specreg-");
    out.push(compare(
        "§4.1: SpecReg is more robust than vanilla under FGSM and PGD (shallow net, exp 1)",
        e1_spec,
        g("exp1/vanilla"),
        &["fgsm", "pgd"],
        true,
    ));
    out.push(match (e1_spec, g("exp1/vanilla")) {
        (Some(s), Some(v)) if !s.alphas().is_empty() && !v.alphas().is_empty() => {
            let (a_s, a_v) = (mean(&s.alphas()), mean(&v.alphas()));
            ClaimResult {
                claim: "§4.1: the regularised spectrum follows 1/n: SpecReg's fitted α is \
                        within 0.25 of 1 and closer to 1 than vanilla's"
                    .into(),
                verdict: if (a_s - 1.0).abs() <= 0.25 && (a_s - 1.0).abs() < (a_v - 1.0).abs() {
                    Verdict::Supported
                } else {
                    Verdict::NotSupported
                },
                numbers: format!("α: {} {a_s:.3}, {} {a_v:.3}", s.variant, v.variant),
                flags: Vec::new(),
            }
        }
        _ => inconclusive("§4.1: the regularised spectrum follows 1/n"),
    });
    out.push(match (e1_spec, g("exp1/vanilla")) {
        (Some(s), Some(v)) => {
            let (d_s, d_v) = (
                mean(&s.effective_dimensions()),
                mean(&v.effective_dimensions()),
            );
            ClaimResult {
                claim: "§4.1: SpecReg has a higher effective (90%-variance) dimension than \
                        vanilla"
                    .into(),
                verdict: if d_s > d_v {
                    Verdict::Supported
                } else {
                    Verdict::NotSupported
                },
                numbers: format!("d90: {} {d_s:.1}, {} {d_v:.1}", s.variant, v.variant),
                flags: Vec::new(),
            }
        }
        _ => inconclusive("§4.1: SpecReg has a higher effective dimension than vanilla"),
    });

    // §4.2
    out.push(compare(
        "§4.2: whitening the 2nd layer makes the MLP less robust (vanilla is more robust than \
         whitened under FGSM and PGD)",
        g("exp2/mlp-vanilla"),
        g("exp2/mlp-whitened"),
        &["fgsm", "pgd"],
        true,
    ));
    out.push(compare(
        "§4.2: SpecReg on the last layer alone does not make the MLP more robust than vanilla",
        best_beta(results, "exp2/mlp-specreg-last-b"),
        g("exp2/mlp-vanilla"),
        &["fgsm", "pgd"],
        false,
    ));
    out.push(compare(
        "§4.2: SpecReg on the last layer does not rescue the whitened MLP",
        best_beta(results, "exp2/mlp-specreg-last-whitened-"),
        g("exp2/mlp-whitened"),
        &["fgsm", "pgd"],
        false,
    ));
    out.push(compare(
        "§4.2: SpecReg on the last layer makes the CNN more robust than vanilla",
        best_beta(results, "exp2/cnn-specreg-last-b"),
        g("exp2/cnn-vanilla"),
        &["fgsm", "pgd"],
        true,
    ));

    // §4.3
    for net in ["mlp", "cnn"] {
        out.push(compare(
            &format!(
                "§4.3: SpecReg on every layer makes the {} more robust than vanilla",
                net.to_uppercase()
            ),
            best_beta(results, &format!("exp3/{net}-specreg-all-")),
            // Experiment 3's vanilla network is experiment 2's (same training config).
            g(&format!("exp3/{net}-vanilla")).or(g(&format!("exp2/{net}-vanilla"))),
            &["fgsm", "pgd"],
            true,
        ));
    }
    out.push(
        match (
            best_beta(results, "exp3/cnn-specreg-all-"),
            best_beta(results, "exp2/cnn-specreg-last-b"),
        ) {
            (Some(all), Some(last)) => {
                let gaps: Vec<(String, Gap)> = ["fgsm", "pgd"]
                    .iter()
                    .filter_map(|a| {
                        Some((a.to_string(), Gap::of(&all.scores(a), &last.scores(a))?))
                    })
                    .collect();
                let ok = gaps.len() == 2 && gaps.iter().all(|(_, g)| !g.above() && !g.below());
                ClaimResult {
                    claim: "§4.3: for the CNN, regularising every layer is comparable to \
                        regularising the last one"
                        .into(),
                    verdict: if ok {
                        Verdict::Supported
                    } else {
                        Verdict::NotSupported
                    },
                    numbers: gaps
                        .iter()
                        .map(|(a, g)| {
                            format!(
                                "{} − {} {}: Δ = {:+.3} (margin {:.3})",
                                all.variant,
                                last.variant,
                                a.to_uppercase(),
                                g.diff,
                                g.margin
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                    flags: flags_of(&[all, last]),
                }
            }
            _ => inconclusive("§4.3: for the CNN, every layer is comparable to the last layer"),
        },
    );
    for net in ["mlp", "cnn"] {
        out.push(compare(
            &format!(
                "§4.3: Jacobian regularisation is more robust than SpecReg ({}, FGSM and PGD)",
                net.to_uppercase()
            ),
            g(&format!("exp3/{net}-jacobian")),
            best_beta(results, &format!("exp3/{net}-specreg-all-")),
            &["fgsm", "pgd"],
            true,
        ));
    }
    for net in ["mlp", "cnn"] {
        let claim = format!(
            "§4.3: SpecReg is closer to Jacobian under noise than under PGD ({})",
            net.to_uppercase()
        );
        out.push(
            match (
                g(&format!("exp3/{net}-jacobian")),
                best_beta(results, &format!("exp3/{net}-specreg-all-")),
            ) {
                (Some(j), Some(s)) => {
                    match (
                        Gap::of(&j.scores("noise"), &s.scores("noise")),
                        Gap::of(&j.scores("pgd"), &s.scores("pgd")),
                    ) {
                        (Some(noise), Some(pgd)) => ClaimResult {
                            claim,
                            verdict: if noise.diff < pgd.diff {
                                Verdict::Supported
                            } else {
                                Verdict::NotSupported
                            },
                            numbers: format!(
                                "{} − {}: noise Δ = {:+.3}, PGD Δ = {:+.3}",
                                j.variant, s.variant, noise.diff, pgd.diff
                            ),
                            flags: flags_of(&[j, s]),
                        },
                        _ => inconclusive(&claim),
                    }
                }
                _ => inconclusive(&claim),
            },
        );
    }
    out.push(
        match (
            g("exp3/mlp-jacobian"),
            best_beta(results, "exp3/mlp-specreg-all-"),
        ) {
            (Some(j), Some(s)) if !j.alphas().is_empty() && !s.alphas().is_empty() => {
                let (a_j, a_s) = (mean(&j.alphas()), mean(&s.alphas()));
                ClaimResult {
                    claim: "§4.3: robust networks need not be 1/n: the Jacobian-regularised \
                            MLP's last layer is farther from α = 1 than SpecReg's"
                        .into(),
                    verdict: if (a_j - 1.0).abs() > (a_s - 1.0).abs() {
                        Verdict::Supported
                    } else {
                        Verdict::NotSupported
                    },
                    numbers: format!("α: {} {a_j:.3}, {} {a_s:.3}", j.variant, s.variant),
                    flags: Vec::new(),
                }
            }
            _ => inconclusive("§4.3: the Jacobian-regularised MLP is not 1/n"),
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_margin_uses_seed_spread() {
        let g = Gap::of(&[0.5, 0.6, 0.7], &[0.3]).unwrap();
        assert!((g.diff - 0.3).abs() < 1e-12);
        assert!((g.margin - 0.1).abs() < 1e-12);
        assert!(g.above() && !g.below());
        let small = Gap::of(&[0.305], &[0.3]).unwrap();
        assert_eq!(small.margin, MIN_MARGIN);
        assert!(!small.above() && !small.below());
        assert!(Gap::of(&[], &[0.1]).is_none());
    }
}
