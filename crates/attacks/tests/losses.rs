//! The attack losses (CW margin, DLR) against closed forms and naive `f64` finite
//! differences, the classifier's vector-Jacobian product on a linear model, and
//! [`NetworkInMode`] in eval and batch-statistics mode.

mod common;

use common::{linear_net, normal, uniform, vals};
use ndarray::Array2;
use specreg_attacks::{
    AttackError, AttackLoss, Classifier, LogitGradient, LossGradient, NetworkInMode, PgdConfig,
    Result, pgd,
};
use specreg_nn::{BatchNorm1d, Linear, Mode, Network, Sequential, Tanh};
use specreg_tensor::{DType, Device, Rng, Tensor, test_device, testing::scaled_tol};

test_device!(
    cw_and_dlr_match_naive_values_and_finite_differences,
    batch_statistics_mode_gives_the_gradient_of_the_summed_loss
);

/// How much looser a tolerance is on a GPU (other summation orders, libdevice's `exp`
/// and `log`).
const GPU_FACTOR: f64 = 10.0;

/// CW margin of one row, the naive way.
fn cw_naive(z: &[f64], y: usize) -> f64 {
    let other = (0..z.len())
        .filter(|&j| j != y)
        .map(|j| z[j])
        .fold(f64::NEG_INFINITY, f64::max);
    other - z[y]
}

/// DLR of one row, the naive way: sort a copy.
fn dlr_naive(z: &[f64], y: usize) -> f64 {
    let other = (0..z.len())
        .filter(|&j| j != y)
        .map(|j| z[j])
        .fold(f64::NEG_INFINITY, f64::max);
    let mut s = z.to_vec();
    s.sort_by(|a, b| b.total_cmp(a));
    -(z[y] - other) / (s[0] - s[2] + 1e-12)
}

fn logits(dev: &Device, rows: &[Vec<f64>]) -> Tensor {
    let k = rows[0].len();
    let v: Vec<f64> = rows.iter().flatten().copied().collect();
    Tensor::from_vec(v, &[rows.len(), k], dev).unwrap()
}

fn cw_and_dlr_match_naive_values_and_finite_differences(dev: &Device) -> Result<()> {
    let mut rng = Rng::new(3);
    let (b, k) = (20, 6);
    let rows: Vec<Vec<f64>> = (0..b)
        .map(|_| (0..k).map(|_| 3.0 * rng.normal()).collect())
        .collect();
    let y: Vec<usize> = (0..b).map(|i| (i * 5 + 1) % k).collect();
    let z = logits(dev, &rows);
    for (loss, naive) in [
        (AttackLoss::CwMargin, cw_naive as fn(&[f64], usize) -> f64),
        (AttackLoss::Dlr, dlr_naive),
    ] {
        let out = loss.evaluate(&z, &y).unwrap();
        assert_eq!(out.losses.dtype(), DType::F64);
        let losses = vals(&out.losses);
        let g = vals(&out.grad_logits);
        assert_eq!(out.grad_logits.shape(), &[b, k]);
        for i in 0..b {
            let want = naive(&rows[i], y[i]);
            assert!(
                (losses[i] - want).abs() < scaled_tol(dev, 1e-12, GPU_FACTOR),
                "{loss} row {i}"
            );
            for j in 0..k {
                let h = 1e-6;
                let (mut up, mut down) = (rows[i].clone(), rows[i].clone());
                up[j] += h;
                down[j] -= h;
                let fd = (naive(&up, y[i]) - naive(&down, y[i])) / (2.0 * h);
                let an = g[i * k + j];
                assert!(
                    (fd - an).abs() < scaled_tol(dev, 1e-6, GPU_FACTOR) * (1.0 + an.abs()),
                    "{loss} row {i} logit {j}: analytic {an}, finite difference {fd}"
                );
            }
        }
    }
    // The margin is positive exactly on misclassified rows; DLR has the same sign.
    let preds = z.argmax_rows().unwrap();
    let cw = vals(&AttackLoss::CwMargin.evaluate(&z, &y).unwrap().losses);
    let dlr = vals(&AttackLoss::Dlr.evaluate(&z, &y).unwrap().losses);
    for i in 0..b {
        assert_eq!(cw[i] > 0.0, preds[i] != y[i]);
        assert_eq!(dlr[i] > 0.0, preds[i] != y[i]);
    }
    // DLR is invariant to shifting and scaling the logits.
    let moved: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| r.iter().map(|v| 2.5 * v + 7.0).collect())
        .collect();
    let dlr2 = vals(
        &AttackLoss::Dlr
            .evaluate(&logits(dev, &moved), &y)
            .unwrap()
            .losses,
    );
    for (a, b) in dlr.iter().zip(&dlr2) {
        assert!((a - b).abs() < scaled_tol(dev, 1e-12, GPU_FACTOR));
    }
    Ok(())
}

#[test]
fn dlr_and_cw_of_hand_computed_rows() {
    // z = [1, 4, 3, 2], y = 0: j* = 1, m = 1 − 4 = −3, π = (1, 2, 3, 0), d = 4 − 2 = 2,
    // DLR = 1.5; ∂/∂z = −(e₀ − e₁)/2 + (−3/4)(e₁ − e₃) = [−0.5, −0.25, 0, 0.75].
    let z = logits(&Device::Cpu, &[vec![1.0, 4.0, 3.0, 2.0]]);
    let out = AttackLoss::Dlr.evaluate(&z, &[0]).unwrap();
    assert!((vals(&out.losses)[0] - 1.5).abs() < 1e-11);
    let want = [-0.5, -0.25, 0.0, 0.75];
    for (a, b) in vals(&out.grad_logits).iter().zip(want) {
        assert!((a - b).abs() < 1e-11);
    }
    // The margin: max_{j≠0} z_j − z_0 = 3, gradient e₁ − e₀.
    let out = AttackLoss::CwMargin.evaluate(&z, &[0]).unwrap();
    assert_eq!(vals(&out.losses), vec![3.0]);
    assert_eq!(vals(&out.grad_logits), vec![-1.0, 1.0, 0.0, 0.0]);
    // With y = π₃ and j* = π₁ the ratio is the constant 1 and its gradient vanishes.
    let z = logits(&Device::Cpu, &[vec![1.0, 4.0, 2.0, 3.0]]);
    let out = AttackLoss::Dlr.evaluate(&z, &[2]).unwrap();
    assert!((vals(&out.losses)[0] - 1.0).abs() < 1e-11);
    assert!(vals(&out.grad_logits).iter().all(|g| g.abs() < 1e-11));
}

#[test]
fn losses_reject_bad_input_with_typed_errors() {
    let two = logits(&Device::Cpu, &[vec![1.0, 2.0], vec![0.0, -1.0]]);
    let err = AttackLoss::Dlr.evaluate(&two, &[0, 1]).unwrap_err();
    assert!(
        matches!(&err, AttackError::InvalidArgument { reason, .. } if reason.contains("at least 3 classes")),
        "{err}"
    );
    assert!(AttackLoss::CwMargin.evaluate(&two, &[0, 1]).is_ok());
    let one = logits(&Device::Cpu, &[vec![1.0]]);
    assert!(matches!(
        AttackLoss::CwMargin.evaluate(&one, &[0]),
        Err(AttackError::InvalidArgument { .. })
    ));
    let three = logits(&Device::Cpu, &[vec![1.0, 2.0, 3.0]]);
    for loss in [AttackLoss::CwMargin, AttackLoss::Dlr] {
        assert!(matches!(
            loss.evaluate(&three, &[3]),
            Err(AttackError::InvalidData { .. })
        ));
        assert!(matches!(
            loss.evaluate(&three, &[0, 1]),
            Err(AttackError::InvalidData { .. })
        ));
        // A NaN logit gives a NaN loss in its row only (the attacks report it when they
        // read their results).
        let nan = logits(
            &Device::Cpu,
            &[vec![1.0, 2.0, 3.0], vec![1.0, f64::NAN, 3.0]],
        );
        let values = vals(&loss.evaluate(&nan, &[0, 0]).unwrap().losses);
        assert!(values[0].is_finite() && values[1].is_nan(), "{values:?}");
    }
    // A DLR attack on a two-class model fails the same way, through the classifier.
    let mut rng = Rng::new(1);
    let mut net = linear_net(&normal(2, 5, &mut rng), &[0.0, 0.0]);
    let x = Tensor::from_array(uniform(3, 5, 0.0, 1.0, &mut rng));
    let cfg = PgdConfig {
        loss: AttackLoss::Dlr,
        ..PgdConfig::linf(0.1)
    };
    let err = pgd(&mut net, &x, &[0, 1, 0], &cfg).unwrap_err();
    assert!(err.to_string().contains("at least 3 classes"), "{err}");
}

#[test]
fn the_vjp_of_a_linear_model_is_w_transposed_times_the_logit_gradient() {
    let (d, k, b) = (7, 4, 9);
    let mut rng = Rng::new(5);
    let w = normal(k, d, &mut rng);
    let bias: Vec<f64> = (0..k).map(|_| rng.normal()).collect();
    let mut net = linear_net(&w, &bias);
    let x = uniform(b, d, 0.0, 1.0, &mut rng);
    let xt = Tensor::from_array(x.clone());
    let y: Vec<usize> = (0..b).map(|i| i % k).collect();
    let lg = net
        .loss_and_input_gradient_with(&xt, &mut |z| AttackLoss::CwMargin.evaluate(z, &y))
        .unwrap();
    let z = x.dot(&w.t()) + &ndarray::Array1::from(bias.clone());
    let g = vals(&lg.grad);
    let losses = vals(&lg.losses);
    for i in 0..b {
        let zi: Vec<f64> = z.row(i).to_vec();
        let j = (0..k)
            .filter(|&j| j != y[i])
            .max_by(|&a, &b| zi[a].total_cmp(&zi[b]))
            .unwrap();
        assert!((losses[i] - (zi[j] - zi[y[i]])).abs() < 1e-12);
        for c in 0..d {
            let want = w[[j, c]] - w[[y[i], c]];
            assert!((g[i * d + c] - want).abs() < 1e-12);
        }
    }
    let want: Vec<f64> = Tensor::from_array(z)
        .argmax_rows()
        .unwrap()
        .into_iter()
        .map(|p| p as f64)
        .collect();
    assert_eq!(vals(&lg.predictions), want);
    // Through the same path the cross-entropy is the plain method's, bit for bit.
    let ce = net
        .loss_and_input_gradient_with(&xt, &mut |z| AttackLoss::CrossEntropy.evaluate(z, &y))
        .unwrap();
    let plain = net.loss_and_input_gradient(&xt, &y).unwrap();
    assert_eq!(vals(&ce.losses), vals(&plain.losses));
    assert_eq!(vals(&ce.grad), vals(&plain.grad));
    // A loss that returns the wrong shapes is refused.
    let err = net
        .loss_and_input_gradient_with(&xt, &mut |z| {
            Ok(LogitGradient {
                losses: Tensor::zeros(&[2], DType::F64, &Device::Cpu)?,
                grad_logits: z.clone(),
            })
        })
        .unwrap_err();
    assert!(matches!(err, AttackError::InvalidData { .. }), "{err}");
}

/// A classifier with only the cross-entropy path.
struct CeOnly(Network);

impl Classifier for CeOnly {
    fn input_size(&self) -> usize {
        self.0.input_size()
    }
    fn dtype(&self) -> DType {
        Classifier::dtype(&self.0)
    }
    fn device(&self) -> Device {
        Classifier::device(&self.0)
    }
    fn logits(&mut self, x: &Tensor) -> specreg_attacks::Result<Tensor> {
        self.0.logits(x)
    }
    fn loss_and_input_gradient(
        &mut self,
        x: &Tensor,
        labels: &[usize],
    ) -> specreg_attacks::Result<LossGradient> {
        self.0.loss_and_input_gradient(x, labels)
    }
}

#[test]
fn a_classifier_without_a_vjp_supports_cross_entropy_attacks_only() {
    let mut rng = Rng::new(2);
    let net = linear_net(&normal(3, 4, &mut rng), &[0.0; 3]);
    let mut model = CeOnly(net);
    let x = Tensor::from_array(uniform(2, 4, 0.0, 1.0, &mut rng));
    assert!(pgd(&mut model, &x, &[0, 1], &PgdConfig::linf(0.1)).is_ok());
    let err = pgd(&mut model, &x, &[0, 1], &PgdConfig::linf_cw(0.1)).unwrap_err();
    assert!(matches!(err, AttackError::Unsupported { .. }), "{err}");
}

/// `D → H → BatchNorm → tanh → K`, `f64`, with non-trivial running statistics.
fn bn_net(dev: &Device, d: usize, h: usize, k: usize, seed: u64) -> Network {
    let mut rng = Rng::new(seed);
    let mut bn = BatchNorm1d::new(h, DType::F64, dev).unwrap();
    let mean: Vec<f64> = (0..h).map(|_| 0.3 * rng.normal()).collect();
    let var: Vec<f64> = (0..h).map(|_| 0.5 + rng.uniform(0.0, 1.0)).collect();
    bn.set_running_stats(
        Tensor::from_vec(mean, &[h], dev).unwrap(),
        Tensor::from_vec(var, &[h], dev).unwrap(),
        10,
    )
    .unwrap();
    let seq = Sequential::new()
        .with(Linear::new(d, h, DType::F64, dev, &mut rng).unwrap())
        .with(bn)
        .with(Tanh::new())
        .with(Linear::new(h, k, DType::F64, dev, &mut rng).unwrap());
    Network::new(seq, vec![], &[d]).unwrap()
}

#[test]
fn network_in_eval_mode_is_the_network_itself() {
    let mut net = bn_net(&Device::Cpu, 6, 8, 3, 1);
    let mut rng = Rng::new(4);
    let x = Tensor::from_array(uniform(5, 6, 0.0, 1.0, &mut rng));
    let y = [0, 1, 2, 0, 1];
    let plain = net.loss_and_input_gradient(&x, &y).unwrap();
    let plain_logits = vals(&net.logits(&x).unwrap());
    let mut wrapped = NetworkInMode::new(&mut net, Mode::Eval).unwrap();
    assert!(wrapped.samples_independent());
    let w = wrapped.loss_and_input_gradient(&x, &y).unwrap();
    assert_eq!(vals(&w.losses), vals(&plain.losses));
    assert_eq!(vals(&w.grad), vals(&plain.grad));
    assert_eq!(vals(&wrapped.logits(&x).unwrap()), plain_logits);
    let err = NetworkInMode::new(&mut net, Mode::Train).unwrap_err();
    assert!(err.to_string().contains("BatchStatistics"), "{err}");
}

fn batch_statistics_mode_gives_the_gradient_of_the_summed_loss(dev: &Device) -> Result<()> {
    let (d, b) = (5, 6);
    let mut net = bn_net(dev, d, 7, 3, 2);
    let on = |a: Array2<f64>| Tensor::from_array(a).to_device(dev).unwrap();
    let mut rng = Rng::new(8);
    let x = uniform(b, d, 0.0, 1.0, &mut rng);
    let y = [0, 1, 2, 2, 1, 0];
    let before = vals(&net.logits(&on(x.clone())).unwrap());
    let mut m = NetworkInMode::new(&mut net, Mode::BatchStatistics).unwrap();
    assert!(!m.samples_independent());
    assert_eq!(m.mode(), Mode::BatchStatistics);
    let total = |m: &mut NetworkInMode<'_>, x: &Array2<f64>, loss: AttackLoss| -> f64 {
        let z = m.logits(&on(x.clone())).unwrap();
        vals(&loss.evaluate(&z, &y).unwrap().losses).iter().sum()
    };
    for loss in [AttackLoss::CrossEntropy, AttackLoss::CwMargin] {
        let lg = match loss {
            AttackLoss::CrossEntropy => m.loss_and_input_gradient(&on(x.clone()), &y),
            _ => m.loss_and_input_gradient_with(&on(x.clone()), &mut |z| loss.evaluate(z, &y)),
        }
        .unwrap();
        let g = vals(&lg.grad);
        let h = 1e-6;
        for i in 0..b {
            for c in 0..d {
                let (mut up, mut down) = (x.clone(), x.clone());
                up[[i, c]] += h;
                down[[i, c]] -= h;
                let fd = (total(&mut m, &up, loss) - total(&mut m, &down, loss)) / (2.0 * h);
                let an = g[i * d + c];
                assert!(
                    (fd - an).abs() < scaled_tol(dev, 1e-6, GPU_FACTOR) * (1.0 + an.abs()),
                    "{loss} ({i}, {c}): analytic {an}, finite difference {fd}"
                );
            }
        }
    }
    // Early exit would change the batch, so it is refused; a plain PGD runs.
    let xt = on(x.clone());
    let early = PgdConfig {
        early_exit: true,
        ..PgdConfig::linf(0.05)
    };
    let err = pgd(&mut m, &xt, &y, &early).unwrap_err();
    assert!(matches!(err, AttackError::InvalidArgument { .. }), "{err}");
    pgd(&mut m, &xt, &y, &PgdConfig::linf_cw(0.05)).unwrap();
    // No running statistic moved: eval-mode logits are unchanged.
    let after = vals(&net.logits(&on(x)).unwrap());
    assert_eq!(before, after);
    Ok(())
}

/// A network whose input gradient of sample 1 is NaN.
struct PoisonedRow(Network);

impl Classifier for PoisonedRow {
    fn input_size(&self) -> usize {
        self.0.input_size()
    }
    fn dtype(&self) -> DType {
        Classifier::dtype(&self.0)
    }
    fn device(&self) -> Device {
        Classifier::device(&self.0)
    }
    fn logits(&mut self, x: &Tensor) -> specreg_attacks::Result<Tensor> {
        self.0.logits(x)
    }
    fn loss_and_input_gradient(
        &mut self,
        x: &Tensor,
        labels: &[usize],
    ) -> specreg_attacks::Result<LossGradient> {
        let mut lg = self.0.loss_and_input_gradient(x, labels)?;
        let b = labels.len();
        let mask: Vec<f64> = (0..b).map(|i| if i == 1 { 1.0 } else { 0.0 }).collect();
        let mask = Tensor::from_vec(mask, &[b], &Device::Cpu)?;
        let nan = lg.grad.full_like(f64::NAN, lg.grad.shape())?;
        lg.grad = mask.where_cond(&nan, &lg.grad)?;
        Ok(lg)
    }
}

#[test]
fn a_non_finite_gradient_is_reported_with_its_sample() {
    let mut rng = Rng::new(4);
    let net = linear_net(&normal(3, 4, &mut rng), &[0.0; 3]);
    let mut model = PoisonedRow(net);
    let x = Tensor::from_array(uniform(3, 4, 0.0, 1.0, &mut rng));
    for err in [
        pgd(&mut model, &x, &[0, 1, 2], &PgdConfig::linf(0.1)).unwrap_err(),
        specreg_attacks::fgsm(&mut model, &x, &[0, 1, 2], 0.1, Default::default()).unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                AttackError::NonFinite {
                    sample: Some(1),
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("(sample 1)"), "{err}");
    }
}
