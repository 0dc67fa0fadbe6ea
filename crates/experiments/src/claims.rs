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
use crate::hypothesis::{Bounds, one_sample, welch};
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
fn tested(a: &[f64], b: &[f64]) -> Option<Bounds> {
    (a.len() >= MIN_SEEDS && b.len() >= MIN_SEEDS)
        .then(|| welch(a, b))
        .flatten()
}

fn seeds_note(vs: &[&VariantResults]) -> String {
    let counts: Vec<String> = vs
        .iter()
        .map(|v| format!("{} {}", v.variant, v.seeds()))
        .collect();
    format!("seeds: {}", counts.join(", "))
}

fn bounds_text(b: &Option<Bounds>) -> String {
    match b {
        Some(b) => format!(", 95% one-sided bounds [{:+.3}, {:+.3}]", b.lower, b.upper),
        None => String::new(),
    }
}

/// The variant of `(experiment, model, role)`; for several (a β sweep) the one with the
/// best mean PGD score.
fn pick<'a>(
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

fn flags_of(vs: &[&VariantResults]) -> Vec<String> {
    vs.iter()
        .flat_map(|v| {
            v.flags()
                .into_iter()
                .map(move |f| format!("{}: {f}", v.variant))
        })
        .collect()
}

fn inconclusive(claim: &str, why: &str) -> ClaimResult {
    ClaimResult {
        claim: claim.into(),
        verdict: Verdict::Inconclusive,
        test: "—".into(),
        numbers: why.into(),
        flags: Vec::new(),
    }
}

const MISSING: &str = "a variant it needs was not evaluated in this run";

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
fn greater(
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

fn alpha_distance(v: &VariantResults) -> Vec<f64> {
    v.alphas().iter().map(|a| (a - 1.0).abs()).collect()
}

/// §4.1's 1/n claim: SpecReg's α within 0.25 of 1 (one-sample bound) and closer to 1 than
/// vanilla's (Welch on |α − 1|).
fn one_over_n(claim: &str, s: Option<&VariantResults>, v: Option<&VariantResults>) -> ClaimResult {
    let (Some(s), Some(v)) = (s, v) else {
        return inconclusive(claim, MISSING);
    };
    let closer = greater(
        claim,
        "|α − 1|",
        (v, alpha_distance(v)),
        (s, alpha_distance(s)),
    );
    let ds = alpha_distance(s);
    if ds.is_empty() {
        return closer;
    }
    let within = match (ds.len() >= MIN_SEEDS).then(|| one_sample(&ds)).flatten() {
        None => Verdict::Preview {
            leans_supported: mean(&ds) <= 0.25,
        },
        Some(b) if b.upper <= 0.25 => Verdict::Supported,
        Some(b) if b.lower > 0.25 => Verdict::NotSupported,
        Some(_) => Verdict::Inconclusive,
    };
    ClaimResult {
        verdict: Verdict::all(&[within, closer.verdict]),
        test: format!(
            "{}; and the one-sided upper bound of SpecReg's mean |α − 1| ≤ 0.25",
            closer.test
        ),
        numbers: format!(
            "α: {} {:.3}, {} {:.3}; {}",
            s.variant,
            mean(&s.alphas()),
            v.variant,
            mean(&v.alphas()),
            closer.numbers
        ),
        ..closer
    }
}

/// §4.3's noise-versus-PGD claim. Raw score gaps under noise (σ up to 1) and PGD (ε up to
/// 0.3) are not on one scale, so each is divided by the Jacobian network's own gain over
/// vanilla under that attack: `r = (J − S)/(J − V)`, the share of Jacobian's advantage that
/// SpecReg misses. Claim: `r_noise < r_PGD`, tested on per-seed `r_PGD − r_noise`
/// (seeds paired by index, one-sample one-sided t-test).
fn noise_vs_pgd(
    claim: &str,
    j: Option<&VariantResults>,
    s: Option<&VariantResults>,
    v: Option<&VariantResults>,
) -> ClaimResult {
    let (Some(j), Some(s), Some(v)) = (j, s, v) else {
        return inconclusive(claim, MISSING);
    };
    let share = |attack: &str| -> Option<Vec<f64>> {
        let (sj, ss, sv) = (j.scores(attack), s.scores(attack), v.scores(attack));
        let n = sj.len().min(ss.len()).min(sv.len());
        if n == 0 || mean(&sj) - mean(&sv) <= MIN_EFFECT {
            return None;
        }
        Some(
            (0..n)
                .map(|k| (sj[k] - ss[k]) / (sj[k] - sv[k]).max(MIN_EFFECT))
                .collect(),
        )
    };
    let (Some(noise), Some(pgd)) = (share("noise"), share("pgd")) else {
        return inconclusive(
            claim,
            &format!(
                "{} is not more robust than {} by {MIN_EFFECT} under both noise and PGD, so the \
                 gaps have no common scale",
                j.variant, v.variant
            ),
        );
    };
    let d: Vec<f64> = pgd.iter().zip(&noise).map(|(p, n)| p - n).collect();
    let bounds = (d.len() >= MIN_SEEDS).then(|| one_sample(&d)).flatten();
    let verdict = match bounds {
        None => Verdict::Preview {
            leans_supported: mean(&d) > 0.0,
        },
        Some(b) if b.lower > 0.0 => Verdict::Supported,
        Some(b) if b.upper < 0.0 => Verdict::NotSupported,
        Some(_) => Verdict::Inconclusive,
    };
    ClaimResult {
        claim: claim.into(),
        verdict,
        test: format!(
            "rule: r = (J − S)/(J − V) per attack, the share of the Jacobian net's gain over \
             vanilla that SpecReg misses; one-sided one-sample t-test of r_PGD − r_noise > 0, \
             α = 0.05, seeds paired by index; {}",
            seeds_note(&[j, s, v])
        ),
        numbers: format!(
            "{} / {} / {}: r_noise = {:.2}, r_PGD = {:.2}{}",
            j.variant,
            s.variant,
            v.variant,
            mean(&noise),
            mean(&pgd),
            bounds_text(&bounds)
        ),
        flags: flags_of(&[j, s, v]),
    }
}

/// Checks every claim against `results`.
pub fn evaluate_claims(results: &Results) -> Vec<ClaimResult> {
    let r = |exp: &str, model: &str, role: Role| pick(results, exp, model, role);
    let mut out = Vec::new();

    // §4.1
    let e1_spec = r("exp1", "shallow", Role::Specreg);
    let e1_van = r("exp1", "shallow", Role::Vanilla);
    out.push(compare(
        "§4.1: SpecReg is more robust than vanilla under FGSM and PGD (shallow net, exp 1)",
        e1_spec,
        e1_van,
        &["fgsm", "pgd"],
        Comparison::More,
    ));
    out.push(one_over_n(
        "§4.1: the regularised spectrum follows 1/n: SpecReg's fitted α is within 0.25 of 1 \
         and closer to 1 than vanilla's",
        e1_spec,
        e1_van,
    ));
    out.push(match (e1_spec, e1_van) {
        (Some(s), Some(v)) => greater(
            "§4.1: SpecReg has a higher effective (90%-variance) dimension than vanilla",
            "d90",
            (s, s.effective_dimensions()),
            (v, v.effective_dimensions()),
        ),
        _ => inconclusive(
            "§4.1: SpecReg has a higher effective dimension than vanilla",
            MISSING,
        ),
    });
    out.push(bn_mode_dependence(e1_spec, e1_van));
    out.push(compare(
        "Appendix: BatchNorm does not affect the vanilla shallow net's robustness (with and \
         without BN comparable under FGSM and PGD)",
        e1_van,
        r("exp1", "shallow", Role::VanillaNoBn),
        &["fgsm", "pgd"],
        Comparison::Comparable,
    ));
    out.push(compare(
        "Appendix: without BatchNorm, SpecReg is still more robust than vanilla (shallow net)",
        r("exp1", "shallow", Role::SpecregNoBn),
        r("exp1", "shallow", Role::VanillaNoBn),
        &["fgsm", "pgd"],
        Comparison::More,
    ));

    // §4.2
    let mlp_van = r("exp2", "mlp", Role::Vanilla);
    let mlp_white = r("exp2", "mlp", Role::Whitened);
    out.push(compare(
        "§4.2: whitening the 2nd layer makes the MLP less robust (vanilla is more robust than \
         whitened under FGSM and PGD)",
        mlp_van,
        mlp_white,
        &["fgsm", "pgd"],
        Comparison::More,
    ));
    out.push(compare(
        "§4.2: SpecReg on the last layer alone does not make the MLP more robust than vanilla",
        r("exp2", "mlp", Role::Specreg),
        mlp_van,
        &["fgsm", "pgd"],
        Comparison::NotMore,
    ));
    out.push(compare(
        "§4.2: SpecReg on the last layer does not rescue the whitened MLP",
        r("exp2", "mlp", Role::SpecregWhitened),
        mlp_white,
        &["fgsm", "pgd"],
        Comparison::NotMore,
    ));
    out.push(compare(
        "§4.2: SpecReg on the last layer makes the CNN more robust than vanilla",
        r("exp2", "cnn", Role::Specreg),
        r("exp2", "cnn", Role::Vanilla),
        &["fgsm", "pgd"],
        Comparison::More,
    ));

    // §4.3
    for net in ["mlp", "cnn"] {
        let vanilla = r("exp3", net, Role::Vanilla).or(r("exp2", net, Role::Vanilla));
        let spec = r("exp3", net, Role::Specreg);
        let up = net.to_uppercase();
        out.push(compare(
            &format!("§4.3: SpecReg on every layer makes the {up} more robust than vanilla"),
            spec,
            vanilla,
            &["fgsm", "pgd"],
            Comparison::More,
        ));
        if net == "cnn" {
            out.push(compare(
                "§4.3: for the CNN, regularising every layer is comparable to regularising the \
                 last one",
                spec,
                r("exp2", "cnn", Role::Specreg),
                &["fgsm", "pgd"],
                Comparison::Comparable,
            ));
        }
        for (role, name) in [
            (
                Role::Jacobian,
                "Jacobian regularisation (logit, as the reference trains it)",
            ),
            (
                Role::JacobianEq11,
                "Jacobian regularisation as eq. 11 writes it",
            ),
        ] {
            out.push(compare(
                &format!("§4.3: {name} is more robust than SpecReg ({up}, FGSM and PGD)"),
                r("exp3", net, role),
                spec,
                &["fgsm", "pgd"],
                Comparison::More,
            ));
        }
        out.push(noise_vs_pgd(
            &format!("§4.3: SpecReg is closer to Jacobian under noise than under PGD ({up})"),
            r("exp3", net, Role::Jacobian),
            spec,
            vanilla,
        ));
    }
    let claim = "§4.3: robust networks need not be 1/n: the Jacobian-regularised MLP's last \
                 layer is farther from α = 1 than SpecReg's";
    out.push(
        match (
            r("exp3", "mlp", Role::Jacobian),
            r("exp3", "mlp", Role::Specreg),
        ) {
            (Some(j), Some(s)) => greater(
                claim,
                "|α − 1|",
                (j, alpha_distance(j)),
                (s, alpha_distance(s)),
            ),
            _ => inconclusive(claim, MISSING),
        },
    );
    out
}

/// The exp-1 SpecReg-over-vanilla gap under the two BatchNorm attack modes: the claim is
/// that the advantage holds with batch statistics too; the numbers give both gaps and how
/// much they differ.
fn bn_mode_dependence(s: Option<&VariantResults>, v: Option<&VariantResults>) -> ClaimResult {
    let claim = "§4.1 (attack-time BatchNorm): SpecReg's advantage over vanilla also holds when \
                 BatchNorm normalises with the attacked batch's statistics";
    let mut result = compare(
        claim,
        s,
        v,
        &["fgsm-bn-batch", "pgd-bn-batch"],
        Comparison::More,
    );
    if let (Some(s), Some(v)) = (s, v) {
        let gap = |a: &str| mean(&s.scores(a)) - mean(&v.scores(a));
        let parts: Vec<String> = ["fgsm", "pgd"]
            .iter()
            .map(|a| {
                let (run, batch) = (gap(a), gap(&format!("{a}-bn-batch")));
                format!(
                    "{} gap: running {run:+.3}, batch {batch:+.3}, batch − running {:+.3}",
                    a.to_uppercase(),
                    batch - run
                )
            })
            .collect();
        result.numbers = format!("{}. Mode dependence: {}", result.numbers, parts.join("; "));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(a: &[f64], b: &[f64]) -> Option<Bounds> {
        tested(a, b)
    }

    #[test]
    fn more_robust_needs_a_significant_effect() {
        let a = [0.30, 0.31, 0.29];
        let b = [0.20, 0.21, 0.19];
        assert_eq!(
            Comparison::More.decide(0.1, bounds(&a, &b)),
            Verdict::Supported
        );
        // Equal means: the upper bound stays above 1 point with this spread.
        let c = [0.28, 0.30, 0.32];
        assert_eq!(
            Comparison::More.decide(0.0, bounds(&c, &[0.30, 0.30, 0.30])),
            Verdict::Inconclusive
        );
        // Tight and equal: not supported.
        let d = [0.300, 0.301, 0.299];
        assert_eq!(
            Comparison::More.decide(0.0, bounds(&d, &d)),
            Verdict::NotSupported
        );
    }

    #[test]
    fn few_seeds_give_previews() {
        assert_eq!(
            Comparison::More.decide(0.05, bounds(&[0.3], &[0.25])),
            Verdict::Preview {
                leans_supported: true
            }
        );
        assert_eq!(
            Comparison::NotMore.decide(0.05, bounds(&[0.3, 0.3], &[0.25, 0.25])),
            Verdict::Preview {
                leans_supported: false
            }
        );
        assert_eq!(
            Verdict::all(&[
                Verdict::Supported,
                Verdict::Preview {
                    leans_supported: true
                }
            ]),
            Verdict::Preview {
                leans_supported: true
            }
        );
    }

    #[test]
    fn equivalence_is_tost() {
        let a = [0.300, 0.302, 0.298];
        let b = [0.301, 0.299, 0.300];
        assert_eq!(
            Comparison::Comparable.decide(0.0, bounds(&a, &b)),
            Verdict::Supported
        );
        let far = [0.400, 0.402, 0.398];
        assert_eq!(
            Comparison::Comparable.decide(0.1, bounds(&far, &b)),
            Verdict::NotSupported
        );
        // Non-superiority: a clearly worse A is "not more robust".
        assert_eq!(
            Comparison::NotMore.decide(-0.1, bounds(&b, &far)),
            Verdict::Supported
        );
        assert_eq!(
            Comparison::NotMore.decide(0.1, bounds(&far, &b)),
            Verdict::NotSupported
        );
    }
}

#[cfg(test)]
mod selection_tests {
    use std::path::PathBuf;

    use super::*;
    use crate::evaluation::{CurveSummary, Summary};
    use crate::outputs::Provenance;
    use crate::reading::Reading;

    /// A run whose FGSM and PGD accuracy is `score` at every ε > 0.
    fn run(experiment: &str, variant: &str, role: Role, seed: u64, score: f64) -> Summary {
        let curve = |attack: &str| CurveSummary {
            attack: attack.into(),
            parameters: String::new(),
            strengths: vec![0.0, 0.1, 0.2],
            accuracies: vec![0.98, score, score],
        };
        Summary {
            experiment: experiment.into(),
            variant: variant.into(),
            description: String::new(),
            model: "shallow".into(),
            role: Some(role),
            reading: Reading::default(),
            train_images: 100,
            training_fingerprint: String::new(),
            eval_fingerprint: String::new(),
            epochs: 1,
            test_images: 100,
            clean_accuracy: 0.98,
            curves: vec![curve("fgsm"), curve("pgd")],
            flags: Vec::new(),
            spectra: Vec::new(),
            sensitivity_layer: "hidden".into(),
            sensitivity_ranks: Vec::new(),
            provenance: Provenance {
                seed,
                commit: "test".into(),
                device: "cpu".into(),
                threads: 1,
            },
        }
    }

    fn results(variants: &[(&str, Role, &[f64])]) -> Results {
        let mut r = Results::default();
        for (name, role, scores) in variants {
            let v = VariantResults {
                experiment: "exp1".into(),
                variant: name.to_string(),
                dirs: scores
                    .iter()
                    .enumerate()
                    .map(|(k, _)| (k as u64, PathBuf::new()))
                    .collect(),
                runs: scores
                    .iter()
                    .enumerate()
                    .map(|(k, s)| run("exp1", name, *role, k as u64, *s))
                    .collect(),
            };
            r.variants.insert(format!("exp1/{name}"), v);
        }
        r
    }

    #[test]
    fn runs_are_picked_by_role_and_best_beta() {
        // The variant names say nothing; the roles decide. The better SpecReg β is chosen.
        let r = results(&[
            ("a", Role::Vanilla, &[0.10, 0.11, 0.09]),
            ("b", Role::Specreg, &[0.30, 0.31, 0.29]),
            ("c", Role::Specreg, &[0.20, 0.21, 0.19]),
            ("d", Role::VanillaNoBn, &[0.10, 0.10, 0.11]),
        ]);
        let claims = evaluate_claims(&r);
        let first = &claims[0];
        assert_eq!(first.verdict, Verdict::Supported, "{first:?}");
        assert!(first.numbers.starts_with("b vs a"), "{}", first.numbers);
        assert!(first.test.contains("seeds: b 3, a 3"), "{}", first.test);
        let bn = claims
            .iter()
            .find(|c| c.claim.starts_with("Appendix: BatchNorm does not affect"))
            .unwrap();
        assert_eq!(bn.verdict, Verdict::Supported, "{bn:?}");
        // Nothing for experiment 2: inconclusive, not a guess.
        assert!(
            claims
                .iter()
                .filter(|c| c.claim.starts_with("§4.2"))
                .all(|c| c.verdict == Verdict::Inconclusive)
        );
    }

    #[test]
    fn one_seed_is_a_preview() {
        let r = results(&[("v", Role::Vanilla, &[0.10]), ("s", Role::Specreg, &[0.30])]);
        let claims = evaluate_claims(&r);
        assert_eq!(
            claims[0].verdict,
            Verdict::Preview {
                leans_supported: true
            }
        );
        assert_eq!(claims[0].verdict.label(), "preview (leans supported)");
    }
}
