//! Gradient-masking checks: zero input-gradient rows counted per curve point and flagged,
//! and the "a weaker attack beats a stronger one" comparison, on hand-made curves and
//! inside a report; plus the new attacks swept over a grid like PGD.

mod common;

use common::{curve, normal, small_mlp, uniform, vals};
use ndarray::Array2;
use specreg_attacks::{
    ApgdConfig, Attack, AttackError, Classifier, ClipRange, EvalOptions, LogitGradient,
    LossGradient, PgdConfig, SanityFlag, StepSize, apgd, compare_attack_strength, fgsm,
    per_sample_loss, pgd, robustness_curve, robustness_report,
};
use specreg_nn::{Linear, Network, Relu, Sequential};
use specreg_tensor::{DType, Device, Rng, Tensor};

const D: usize = 6;
const K: usize = 3;

/// `relu(x − 0.5) → linear`: an image whose pixels all stay below 0.5 has an exactly
/// zero input gradient (every unit is dead). Rows 0–3 are such dark images, rows 4–7
/// bright ones (every unit alive).
fn dead_case() -> (Network, Array2<f64>, Vec<usize>) {
    let mut rng = Rng::new(4);
    let eye = Array2::<f64>::eye(D);
    let first = Linear::from_tensors(
        Tensor::from_array(eye),
        Tensor::from_vec(vec![-0.5; D], &[D], &Device::Cpu).unwrap(),
    )
    .unwrap();
    let second = Linear::from_tensors(
        Tensor::from_array(normal(K, D, &mut rng)),
        Tensor::from_vec(vec![0.1, -0.2, 0.05], &[K], &Device::Cpu).unwrap(),
    )
    .unwrap();
    let seq = Sequential::new().with(first).with(Relu::new()).with(second);
    let net = Network::new(seq, vec![], &[D]).unwrap();
    let x = Array2::from_shape_fn((8, D), |(i, _)| {
        if i < 4 {
            rng.uniform(0.0, 0.3)
        } else {
            rng.uniform(0.6, 1.0)
        }
    });
    let y = (0..8).map(|i| i % K).collect();
    (net, x, y)
}

#[test]
fn dead_gradient_rows_are_counted_by_every_gradient_attack() {
    let (mut net, x, y) = dead_case();
    let xt = Tensor::from_array(x.clone());
    let eps = 0.1;
    let f = fgsm(&mut net, &xt, &y, eps, ClipRange::default()).unwrap();
    assert_eq!(f.zero_gradient_rows, 4);
    // The dark images do not move.
    let adv = vals(&f.adversarial);
    assert_eq!(&adv[..4 * D], &vals(&xt)[..4 * D]);
    let random = PgdConfig {
        random_start: true,
        restarts: 2,
        seed: 3,
        ..PgdConfig::linf(eps)
    };
    for cfg in [PgdConfig::linf(eps), PgdConfig::linf_cw(eps), random] {
        assert_eq!(pgd(&mut net, &xt, &y, &cfg).unwrap().zero_gradient_rows, 4);
    }
    for cfg in [ApgdConfig::ce(eps), ApgdConfig::dlr(eps)] {
        assert_eq!(apgd(&mut net, &xt, &y, &cfg).unwrap().zero_gradient_rows, 4);
    }
    // No gradient is evaluated at ε = 0.
    assert_eq!(
        pgd(&mut net, &xt, &y, &PgdConfig::linf(0.0))
            .unwrap()
            .zero_gradient_rows,
        0
    );

    // Per curve point, summed over batches, and flagged; 0 at strength 0 and for noise.
    let images = x.mapv(|v| v as f32);
    let y8: Vec<u8> = y.iter().map(|&v| v as u8).collect();
    let opts = EvalOptions {
        batch_size: 3,
        ..EvalOptions::default()
    };
    let grid = [0.0, 0.05, 0.1];
    for attack in [
        Attack::fgsm(),
        Attack::pgd(),
        Attack::pgd_cw(),
        Attack::apgd_ce(),
        Attack::apgd_dlr(),
    ] {
        let c = robustness_curve(&mut net, images.view(), &y8, &attack, &grid, &opts).unwrap();
        let zeros: Vec<usize> = c.points.iter().map(|p| p.zero_gradient_rows).collect();
        assert_eq!(zeros, vec![0, 4, 4], "{}", attack.name());
        let flagged: Vec<&SanityFlag> = c
            .flags
            .iter()
            .filter(|f| matches!(f, SanityFlag::ZeroGradientRows { .. }))
            .collect();
        assert_eq!(flagged.len(), 2, "{}: {:?}", attack.name(), c.flags);
        assert_eq!(
            flagged[1],
            &SanityFlag::ZeroGradientRows {
                attack: attack.name().into(),
                strength: 0.1,
                rows: 4,
                num_images: 8,
            }
        );
        let text = flagged[1].to_string();
        assert!(
            text.contains("4 of 8 images have an exactly zero input gradient")
                && text.contains(attack.name())
                && text.contains("strength 0.1"),
            "{text}"
        );
    }
    let noise = robustness_curve(
        &mut net,
        images.view(),
        &y8,
        &Attack::white_noise(1),
        &grid,
        &opts,
    )
    .unwrap();
    assert!(noise.points.iter().all(|p| p.zero_gradient_rows == 0));
}

#[test]
fn a_weaker_attack_beating_a_stronger_one_by_more_than_a_point_is_flagged() {
    let fgsm = curve(Attack::fgsm(), &[90, 60, 40, 20], 100);
    // APGD leaves 2 more images (2 points) at ε = 0.1, exactly 1 point more at 0.2, and
    // fewer at 0.3.
    let apgd = curve(Attack::apgd_ce(), &[90, 62, 41, 10], 100);
    let flags = compare_attack_strength(&fgsm, &apgd, 0.01).unwrap();
    assert_eq!(
        flags,
        vec![SanityFlag::WeakerAttackStronger {
            weaker: "FGSM".into(),
            stronger: "APGD-CE".into(),
            epsilon: 0.1,
            weaker_accuracy: 0.6,
            stronger_accuracy: 0.62,
        }]
    );
    let text = flags[0].to_string();
    assert!(
        text.contains("FGSM (the weaker attack) leaves accuracy 0.6000, below APGD-CE's 0.6200")
            && text.contains("ε = 0.1"),
        "{text}"
    );
    // A zero tolerance flags the one-point difference too; the reverse order flags where
    // FGSM is the less accurate.
    assert_eq!(compare_attack_strength(&fgsm, &apgd, 0.0).unwrap().len(), 2);
    let reverse = compare_attack_strength(&apgd, &fgsm, 0.01).unwrap();
    assert_eq!(reverse.len(), 1);
    assert!(
        matches!(reverse[0], SanityFlag::WeakerAttackStronger { epsilon, .. } if (epsilon - 0.3).abs() < 1e-12)
    );
    // Different image counts are not comparable; bad tolerances are typed errors.
    let other = curve(Attack::apgd_dlr(), &[9, 9, 9, 9], 10);
    assert!(
        compare_attack_strength(&fgsm, &other, 0.01)
            .unwrap()
            .is_empty()
    );
    for tol in [-0.01, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            compare_attack_strength(&fgsm, &apgd, tol),
            Err(AttackError::InvalidArgument { .. })
        ));
    }
}

/// One pixel, two classes: `z₀ = cos(ω (x − c))`, `z₁ = 0` (as in `sanity.rs`), with the
/// vector-Jacobian product as well.
struct Periodic {
    omega: f64,
    centre: f64,
}

impl Periodic {
    fn z(&self, xs: &[f64]) -> Tensor {
        let v: Vec<f64> = xs
            .iter()
            .flat_map(|&x| [(self.omega * (x - self.centre)).cos(), 0.0])
            .collect();
        Tensor::from_vec(v, &[xs.len(), 2], &Device::Cpu).unwrap()
    }
    fn back(&self, xs: &[f64], gz: &Tensor) -> specreg_attacks::Result<Tensor> {
        let gz = gz.to_vec::<f64>()?;
        let g: Vec<f64> = xs
            .iter()
            .enumerate()
            .map(|(i, &x)| -gz[2 * i] * self.omega * (self.omega * (x - self.centre)).sin())
            .collect();
        Ok(Tensor::from_vec(g, &[xs.len(), 1], &Device::Cpu)?)
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
        Ok(self.z(&x.to_vec::<f64>()?))
    }
    fn loss_and_input_gradient(
        &mut self,
        x: &Tensor,
        labels: &[usize],
    ) -> specreg_attacks::Result<LossGradient> {
        let xs = x.to_vec::<f64>()?;
        let z = self.z(&xs);
        let lg = per_sample_loss(&z, labels)?;
        let grad = self.back(&xs, &lg.grad_logits)?;
        LossGradient::new(&z, lg, grad)
    }
    fn loss_and_input_gradient_with(
        &mut self,
        x: &Tensor,
        loss: &mut dyn FnMut(&Tensor) -> specreg_attacks::Result<LogitGradient>,
    ) -> specreg_attacks::Result<LossGradient> {
        let xs = x.to_vec::<f64>()?;
        let z = self.z(&xs);
        let lg = loss(&z)?;
        let grad = self.back(&xs, &lg.grad_logits)?;
        LossGradient::new(&z, lg, grad)
    }
}

#[test]
fn a_report_compares_every_pair_in_the_expected_order() {
    // FGSM with ε = 0.1 lands where the model is wrong; a PGD of one step of 0.001 cannot
    // get there, whatever its loss.
    let mut model = Periodic {
        omega: std::f64::consts::TAU / 0.4,
        centre: 0.3,
    };
    let images = Array2::<f32>::from_elem((4, 1), 0.31);
    let grid = vec![0.0, 0.1];
    let weak = PgdConfig {
        steps: 1,
        step_size: StepSize::Absolute(0.001),
        ..PgdConfig::linf(0.0)
    };
    let weak_cw = PgdConfig {
        steps: 1,
        step_size: StepSize::Absolute(0.001),
        ..PgdConfig::linf_cw(0.0)
    };
    let report = robustness_report(
        &mut model,
        images.view(),
        &[0u8; 4],
        &[
            (Attack::fgsm(), grid.clone()),
            (Attack::Pgd(weak), grid.clone()),
            (Attack::Pgd(weak_cw), grid.clone()),
            (Attack::apgd_ce(), grid),
        ],
        &EvalOptions::default(),
    )
    .unwrap();
    let correct: Vec<usize> = report.curves.iter().map(|c| c.points[1].correct).collect();
    assert_eq!(correct, vec![0, 4, 4, 0]);
    let cross: Vec<&SanityFlag> = report
        .flags
        .iter()
        .filter(|f| {
            matches!(
                f,
                SanityFlag::PgdAboveFgsm { .. } | SanityFlag::WeakerAttackStronger { .. }
            )
        })
        .collect();
    // FGSM vs the cross-entropy PGD keeps its own flag (no duplicate); FGSM vs PGD-CW gets
    // the new one; the weak cross-entropy PGD is not compared with the weak PGD-CW (equal)
    // and loses to nothing it should beat.
    assert_eq!(
        cross,
        vec![
            &SanityFlag::PgdAboveFgsm {
                epsilon: 0.1,
                pgd_accuracy: 1.0,
                fgsm_accuracy: 0.0,
            },
            &SanityFlag::WeakerAttackStronger {
                weaker: "FGSM".into(),
                stronger: "PGD-CW-Linf".into(),
                epsilon: 0.1,
                weaker_accuracy: 0.0,
                stronger_accuracy: 1.0,
            },
        ]
    );
}

#[test]
fn new_attacks_sweep_a_grid_with_common_random_numbers() {
    let (n, d) = (12, 8);
    let mut net = small_mlp(d, 10, 4, DType::F64, 6);
    let mut rng = Rng::new(6);
    let x = uniform(n, d, 0.0, 1.0, &mut rng);
    let images = x.mapv(|v| v as f32);
    let y8: Vec<u8> = (0..n).map(|i| (i % 4) as u8).collect();
    let yl: Vec<usize> = y8.iter().map(|&v| usize::from(v)).collect();
    let grid = [0.0, 0.1, 0.3];
    let cfg = ApgdConfig {
        steps: 10,
        random_start: true,
        restarts: 2,
        seed: 9,
        ..ApgdConfig::dlr(0.0)
    };
    let names: Vec<&str> = [
        Attack::pgd_cw(),
        Attack::Pgd(PgdConfig::l2(0.0)),
        Attack::Pgd(PgdConfig {
            loss: specreg_attacks::AttackLoss::CwMargin,
            ..PgdConfig::l2(0.0)
        }),
        Attack::apgd_ce(),
        Attack::Apgd(cfg),
    ]
    .iter()
    .map(|a| a.name())
    .collect();
    assert_eq!(
        names,
        vec!["PGD-CW-Linf", "PGD-L2", "PGD-CW-L2", "APGD-CE", "APGD-DLR"]
    );
    let mut by_batch = Vec::new();
    for batch_size in [n, 5] {
        let opts = EvalOptions {
            batch_size,
            ..EvalOptions::default()
        };
        let c = robustness_curve(
            &mut net,
            images.view(),
            &y8,
            &Attack::Apgd(cfg),
            &grid,
            &opts,
        )
        .unwrap();
        assert_eq!(c.points[0].correct, c.clean_correct);
        assert!(c.flags.is_empty(), "{:?}", c.flags);
        by_batch.push(c.points.iter().map(|p| p.correct).collect::<Vec<_>>());
    }
    // The curve is the single-batch attack at each ε, whatever the batch size.
    assert_eq!(by_batch[0], by_batch[1]);
    let xt = Tensor::from_array(x.mapv(|v| f64::from(v as f32)));
    for (j, &eps) in grid.iter().enumerate() {
        let out = apgd(&mut net, &xt, &yl, &cfg.with_epsilon(eps)).unwrap();
        assert_eq!(out.correct(&yl), by_batch[0][j], "ε = {eps}");
    }
}
