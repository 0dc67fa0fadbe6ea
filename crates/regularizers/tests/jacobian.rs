//! Both Jacobian regularisers: penalty values against naive per-sample computations and
//! exact weight gradients against `f64` central differences.

mod common;

use common::{assert_close, central_diff, randn, randn_on, tol, vals};
use proptest::prelude::*;
use specreg_nn::{
    BatchNorm1d, Linear, Mode, Network, Sequential, Tanh, loss::softmax_cross_entropy,
};
use specreg_regularizers::{JacobianKind, JacobianRegularizer};
use specreg_tensor::{DType, Device, Result, Rng, Tensor, test_device};

test_device!(
    eq11_weight_gradients_are_exact,
    logit_weight_gradients_are_exact
);

fn small_net(dev: &Device, rng: &mut Rng, batchnorm: bool) -> Network {
    let mut seq = Sequential::new()
        .with(Linear::new(4, 6, DType::F64, dev, rng).unwrap())
        .with(Tanh::new());
    if batchnorm {
        seq.push(BatchNorm1d::new(6, DType::F64, dev).unwrap());
    }
    seq.push(Linear::new(6, 3, DType::F64, dev, rng).unwrap());
    Network::new(seq, vec![("h".into(), 1)], &[4]).unwrap()
}

fn row(t: &Tensor, i: usize) -> Tensor {
    let n = t.shape()[1];
    Tensor::from_vec(vals(t)[i * n..(i + 1) * n].to_vec(), &[1, n], &Device::Cpu).unwrap()
}

/// Checks `step`'s parameter gradients against central differences of `CE + P` (with the
/// logit variant's projections replayed from the same seed).
fn check_step(net: &mut Network, reg: &JacobianRegularizer, x: &Tensor, y: &[usize], seed: u64) {
    let dev = x.device();
    net.zero_grad();
    let got = reg.step(net, x, y, &mut Rng::new(seed)).unwrap();
    let pen = reg
        .penalty(net, x, y, Mode::Train, &mut Rng::new(seed))
        .unwrap();
    let (got_penalty, pen) = (got.penalty.to_scalar().unwrap(), pen.to_scalar().unwrap());
    assert_close("penalty", &[got_penalty], &[pen], tol(&dev, 1e-10), 1e-12);
    let grads: Vec<Vec<f64>> = net
        .params()
        .iter()
        .map(|p| vals(p.grad.as_ref().unwrap()))
        .collect();
    for (k, want) in grads.iter().enumerate() {
        let value = net.params()[k].value.clone();
        let fd = central_diff(&value, 1e-6, |v| {
            net.params_mut()[k].value = v.clone();
            let z = net.forward(x, Mode::Train).unwrap().logits;
            let ce = softmax_cross_entropy(&z, y).unwrap().0.to_scalar().unwrap();
            ce + reg
                .penalty(net, x, y, Mode::Train, &mut Rng::new(seed))
                .unwrap()
                .to_scalar()
                .unwrap()
        });
        net.params_mut()[k].value = value;
        assert_close(
            &format!("∂(CE + P)/∂θ[{k}]"),
            want,
            &fd,
            tol(&dev, 1e-5),
            1e-3,
        );
    }
}

/// A fixed seed: the checks are exact up to f64 rounding, and a batch of 2 through
/// BatchNorm (every normalised value ±1) is conditioned badly enough that a random seed
/// occasionally lands 1e-8 past the tolerance; such batches start at 3 below.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 8,
        rng_seed: proptest::test_runner::RngSeed::Fixed(20201206),
        ..ProptestConfig::default()
    }
}

fn eq11_weight_gradients_are_exact(dev: &Device) -> Result<()> {
    proptest!(config(), |(seed in 0u64..10_000, b in 2usize..6)| {
        let mut rng = Rng::new(seed);
        let mut net = small_net(dev, &mut rng, false);
        let x = randn_on(dev, &[b, 4], &mut rng);
        let y: Vec<usize> = (0..b).map(|i| (i + seed as usize) % 3).collect();
        let reg = JacobianRegularizer::new(JacobianKind::InputLoss { beta: 0.3 }).unwrap();
        check_step(&mut net, &reg, &x, &y, seed);
    });
    Ok(())
}

fn logit_weight_gradients_are_exact(dev: &Device) -> Result<()> {
    proptest!(config(), |(seed in 0u64..10_000, b in 2usize..6, proj in 1usize..3)| {
        let mut rng = Rng::new(seed);
        let with_bn = seed % 2 == 0;
        let b = if with_bn { b.max(3) } else { b };
        let mut net = small_net(dev, &mut rng, with_bn);
        let x = randn_on(dev, &[b, 4], &mut rng);
        let y: Vec<usize> = (0..b).map(|i| (i + seed as usize) % 3).collect();
        let reg = JacobianRegularizer::new(JacobianKind::Logit { beta: 0.5, projections: proj }).unwrap();
        check_step(&mut net, &reg, &x, &y, seed);
    });
    Ok(())
}

#[test]
fn eq11_is_the_mean_squared_per_sample_input_gradient() {
    let mut rng = Rng::new(4);
    let mut net = small_net(&Device::Cpu, &mut rng, false);
    let x = randn(&[5, 4], &mut rng);
    let y = [0, 2, 1, 1, 0];
    let beta = 0.01;
    let reg = JacobianRegularizer::new(JacobianKind::InputLoss { beta }).unwrap();
    let got = reg
        .penalty(&mut net, &x, &y, Mode::Eval, &mut Rng::new(0))
        .unwrap()
        .to_scalar()
        .unwrap();
    // (β/B) Σ_n ‖∂L(f(s_n), y_n)/∂s_n‖², one sample at a time.
    let mut want = 0.0;
    for (i, &yi) in y.iter().enumerate() {
        let (_, g) = net.input_gradient(&row(&x, i), &[yi], Mode::Eval).unwrap();
        want += g.sqr().unwrap().sum_all().unwrap();
    }
    want *= beta / 5.0;
    assert_close("eq. 11", &[got], &[want], 1e-12, 1e-15);
}

#[test]
fn the_logit_penalty_is_an_unbiased_frobenius_estimate() {
    // Σ over many projections of C‖Jᵀv‖²/n_proj → ‖J‖_F² per sample; check the mean over
    // 4000 projections against the Jacobian built column by column.
    let mut rng = Rng::new(8);
    let mut net = small_net(&Device::Cpu, &mut rng, false);
    let x = randn(&[1, 4], &mut rng);
    let reg = JacobianRegularizer::new(JacobianKind::Logit {
        beta: 1.0,
        projections: 4000,
    })
    .unwrap();
    let est = reg
        .penalty(&mut net, &x, &[0], Mode::Eval, &mut Rng::new(1))
        .unwrap()
        .to_scalar()
        .unwrap();
    let mut frob = 0.0;
    for c in 0..3 {
        let mut e = vec![0.0; 3];
        e[c] = 1.0;
        net.forward(&x, Mode::Eval).unwrap();
        let ec = Tensor::from_vec(e, &[1, 3], &Device::Cpu).unwrap();
        frob += net
            .backward_input(&ec, &[])
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
    }
    // P = ½ · C/(n_proj·B) Σ‖Jᵀv‖² ≈ ½ ‖J‖_F².
    assert!(
        (est - 0.5 * frob).abs() < 0.05 * frob,
        "estimate {est}, ½‖J‖² {}",
        0.5 * frob
    );
}

#[test]
fn bad_settings_are_rejected() {
    assert!(JacobianRegularizer::new(JacobianKind::InputLoss { beta: -1.0 }).is_err());
    assert!(
        JacobianRegularizer::new(JacobianKind::Logit {
            beta: 0.01,
            projections: 0
        })
        .is_err()
    );
    assert_eq!(
        JacobianKind::default(),
        JacobianKind::InputLoss { beta: 0.01 }
    );
}
