//! The sanity flags fire on the results they are meant to catch. The broken results come
//! from classifiers written here by hand, as a user would bring them.

mod common;

use specreg_attacks::{
    Attack, AttackError, Classifier, EvalOptions, LossGradient, RobustnessCurve, SanityFlag,
    compare_pgd_fgsm, per_sample_loss, robustness_curve, robustness_report,
};
use specreg_tensor::{DType, Device, Tensor};

/// One pixel, two classes: `z₀ = cos(ω (x − c))`, `z₁ = 0`. Class 0 wins exactly where the
/// cosine is positive, so pushing `x` further away can make it correct again: an honest
/// model on which accuracy is *not* monotone in ε.
struct Periodic {
    omega: f64,
    centre: f64,
}

impl Periodic {
    fn z0(&self, x: f64) -> f64 {
        (self.omega * (x - self.centre)).cos()
    }
    fn dz0(&self, x: f64) -> f64 {
        -self.omega * (self.omega * (x - self.centre)).sin()
    }
    fn logits_of(&self, xs: &[f64]) -> Tensor {
        let v: Vec<f64> = xs.iter().flat_map(|&x| [self.z0(x), 0.0]).collect();
        Tensor::from_vec(v, &[xs.len(), 2], &Device::Cpu).unwrap()
    }
}

impl Classifier for Periodic {
    fn input_size(&self) -> usize {
        1
    }
    fn dtype(&self) -> DType {
        DType::F64
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn logits(&mut self, x: &Tensor) -> specreg_attacks::Result<Tensor> {
        Ok(self.logits_of(&x.to_vec::<f64>()?))
    }
    fn loss_and_input_gradient(
        &mut self,
        x: &Tensor,
        labels: &[usize],
    ) -> specreg_attacks::Result<LossGradient> {
        let xs = x.to_vec::<f64>()?;
        let z = self.logits_of(&xs);
        let lg = per_sample_loss(&z, labels)?;
        let gz = lg.grad_logits.to_vec::<f64>()?;
        // ∂L/∂x = ∂L/∂z₀ · dz₀/dx (z₁ is constant).
        let g: Vec<f64> = xs
            .iter()
            .enumerate()
            .map(|(i, &x)| gz[2 * i] * self.dz0(x))
            .collect();
        let grad = Tensor::from_vec(g, &[xs.len(), 1], &Device::Cpu)?;
        LossGradient::new(&z, lg, grad)
    }
}

#[test]
fn a_curve_whose_accuracy_rises_with_epsilon_is_flagged() {
    // Period 0.4 around c = 0.3; images at x = 0.31 (correct, gradient pushes x upwards).
    // ε = 0.1 lands at phase 0.55π (wrong), ε = 0.35 at 1.8π (correct again).
    let mut model = Periodic {
        omega: std::f64::consts::TAU / 0.4,
        centre: 0.3,
    };
    let images = ndarray::Array2::<f32>::from_elem((5, 1), 0.31);
    let labels = [0u8; 5];
    let curve = robustness_curve(
        &mut model,
        images.view(),
        &labels,
        &Attack::fgsm(),
        &[0.0, 0.1, 0.35],
        &EvalOptions::default(),
    )
    .unwrap();
    let correct: Vec<usize> = curve.points.iter().map(|p| p.correct).collect();
    assert_eq!(correct, vec![5, 0, 5]);
    assert_eq!(
        curve.flags,
        vec![SanityFlag::AccuracyIncreases {
            attack: "FGSM".into(),
            from: 0.1,
            to: 0.35,
            correct_from: 0,
            correct_to: 5,
        }]
    );
    // A tolerance of five images lets it pass.
    let lenient = EvalOptions {
        monotone_tolerance: 5,
        ..EvalOptions::default()
    };
    let curve = robustness_curve(
        &mut model,
        images.view(),
        &labels,
        &Attack::fgsm(),
        &[0.0, 0.1, 0.35],
        &lenient,
    )
    .unwrap();
    assert!(curve.flags.is_empty());
}

/// A model whose answers drift from call to call (as one left in training mode with
/// dropout would): its accuracy at ε = 0 need not be its clean accuracy.
struct Drifting {
    calls: usize,
}

impl Classifier for Drifting {
    fn input_size(&self) -> usize {
        1
    }
    fn dtype(&self) -> DType {
        DType::F64
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn logits(&mut self, x: &Tensor) -> specreg_attacks::Result<Tensor> {
        self.calls += 1;
        let b = x.shape()[0];
        // Class 0 on the first call, class 1 afterwards.
        let z0 = if self.calls == 1 { 1.0 } else { -1.0 };
        let v: Vec<f64> = (0..b).flat_map(|_| [z0, 0.0]).collect();
        Ok(Tensor::from_vec(v, &[b, 2], &Device::Cpu)?)
    }
    fn loss_and_input_gradient(
        &mut self,
        x: &Tensor,
        labels: &[usize],
    ) -> specreg_attacks::Result<LossGradient> {
        let z = self.logits(x)?;
        let lg = per_sample_loss(&z, labels)?;
        LossGradient::new(&z, lg, Tensor::zeros(x.shape(), DType::F64, &Device::Cpu)?)
    }
}

#[test]
fn accuracy_at_zero_that_differs_from_clean_accuracy_is_flagged() {
    let mut model = Drifting { calls: 0 };
    let images = ndarray::Array2::<f32>::from_elem((3, 1), 0.5);
    let curve = robustness_curve(
        &mut model,
        images.view(),
        &[0u8; 3],
        &Attack::fgsm(),
        &[0.0],
        &EvalOptions::default(),
    )
    .unwrap();
    assert_eq!(curve.clean_correct, 3);
    assert_eq!(
        curve.flags,
        vec![SanityFlag::ZeroStrengthMismatch {
            attack: "FGSM".into(),
            correct: 0,
            clean_correct: 3,
        }]
    );
}

fn curve(attack: Attack, correct: &[usize]) -> RobustnessCurve {
    common::curve(attack, correct, 10)
}

#[test]
fn pgd_above_fgsm_is_flagged_at_each_such_epsilon() {
    let pgd = curve(Attack::pgd(), &[9, 5, 4]);
    let fgsm = curve(Attack::fgsm(), &[9, 6, 3]);
    assert_eq!(
        compare_pgd_fgsm(&pgd, &fgsm),
        vec![SanityFlag::PgdAboveFgsm {
            epsilon: 0.2,
            pgd_accuracy: 0.4,
            fgsm_accuracy: 0.3,
        }]
    );
    assert!(compare_pgd_fgsm(&fgsm, &fgsm).is_empty());
    // Every flag reads as a sentence.
    let text = compare_pgd_fgsm(&pgd, &fgsm)[0].to_string();
    assert!(
        text.contains("PGD accuracy 0.4000 is above FGSM accuracy 0.3000"),
        "{text}"
    );
}

#[test]
fn a_report_collects_every_curve_and_the_cross_check() {
    // The periodic model: FGSM with ε = 0.35 lands back in a correct region, PGD (which
    // walks in small steps and keeps its worst iterate) does not.
    let mut model = Periodic {
        omega: std::f64::consts::TAU / 0.4,
        centre: 0.3,
    };
    let images = ndarray::Array2::<f32>::from_elem((4, 1), 0.31);
    let grid = vec![0.0, 0.35];
    let report = robustness_report(
        &mut model,
        images.view(),
        &[0u8; 4],
        &[(Attack::fgsm(), grid.clone()), (Attack::pgd(), grid)],
        &EvalOptions::default(),
    )
    .unwrap();
    assert_eq!(report.curves.len(), 2);
    assert_eq!(report.curves[0].points[1].correct, 4);
    assert_eq!(report.curves[1].points[1].correct, 0);
    assert!(report.flags.is_empty(), "{:?}", report.flags);
    let err: AttackError = robustness_report(
        &mut model,
        images.view(),
        &[0u8; 4],
        &[],
        &EvalOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no attacks"));
}
