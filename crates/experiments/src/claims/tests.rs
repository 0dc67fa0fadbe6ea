//! Tests of the verdict rules and of how claims pick their runs.

mod verdicts {
    use super::super::*;

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

mod selection {
    use std::path::PathBuf;

    use super::super::*;
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
            gradient_evaluations: Vec::new(),
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
                cpu_kernels: "faer x86_64+avx2+fma".into(),
            },
            format: crate::integrity::RESULTS_FORMAT.into(),
            files: Default::default(),
            digest: String::new(),
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
