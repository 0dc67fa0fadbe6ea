//! Eq. 11 on a bare layer stack (`&mut dyn Layer`): the input gradient of the mean loss,
//! the penalty against per-sample input gradients, and the exact second-order weight
//! gradient of `L̄ + P` (and of `P` alone) against `f64` central differences, for MLPs,
//! CNNs and BatchNorm in both modes; f32 against f64.

mod common;

use common::{assert_close, central_diff, randn, randn_on, tensor_on, tol, uniform_on, vals};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use specreg_nn::loss::softmax_cross_entropy;
use specreg_nn::{BatchNorm1d, Conv2d, Flatten, Layer, Linear, MaxPool2d, Mode, Sequential, Tanh};
use specreg_regularizers::{jacobian_penalty, jacobian_penalty_grad};
use specreg_tensor::{DType, Device, Result, Rng, Tensor, test_device};

const F64: DType = DType::F64;

test_device!(
    mlp_penalty,
    cnn_penalty,
    batch_norm_net_eval,
    batch_norm_net_train
);

fn config() -> Config {
    Config {
        cases: 12,
        rng_seed: RngSeed::Fixed(2020),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Central differences at step `1e-6`.
fn fd_grad(t: &Tensor, f: impl FnMut(&Tensor) -> f64) -> Vec<f64> {
    central_diff(t, 1e-6, f)
}

/// `|got − want| ≤ 1e-6 · max(0.01, |want|)`.
fn close(what: &str, got: &[f64], want: &[f64]) {
    close_on(&Device::Cpu, what, got, want);
}

/// [`close`] with the tolerance of `dev`.
fn close_on(dev: &Device, what: &str, got: &[f64], want: &[f64]) {
    assert_close(what, got, want, tol(dev, 1e-6), 1e-2);
}

fn scalar(t: &Tensor) -> f64 {
    t.to_scalar().unwrap()
}

/// The mean cross-entropy and its input gradient, `∂L̄/∂x`.
fn input_gradient(net: &mut Sequential, x: &Tensor, y: &[usize], mode: Mode) -> (f64, Tensor) {
    let z = net.forward(x, mode).unwrap();
    let (loss, gz) = softmax_cross_entropy(&z, y).unwrap();
    (scalar(&loss), net.backward_input(&gz).unwrap())
}

fn mlp(dev: &Device, i: usize, h: usize, k: usize, rng: &mut Rng) -> Sequential {
    Sequential::new()
        .with(Linear::new(i, h, F64, dev, rng).unwrap())
        .with(Tanh::new())
        .with(Linear::new(h, k, F64, dev, rng).unwrap())
}

fn cnn(dev: &Device, c: usize, o: usize, side: usize, k: usize, rng: &mut Rng) -> Sequential {
    let pooled = (side - 2) / 2;
    Sequential::new()
        .with(Conv2d::new(c, o, (3, 3), F64, dev, rng).unwrap())
        .with(Tanh::new())
        .with(MaxPool2d::new())
        .with(Flatten::new())
        .with(Linear::new(o * pooled * pooled, k, F64, dev, rng).unwrap())
}

fn bn_net(dev: &Device, i: usize, h: usize, k: usize, rng: &mut Rng) -> Sequential {
    let mut bn = BatchNorm1d::new(h, F64, dev).unwrap();
    bn.params_mut()[0].value = uniform_on(dev, &[h], 0.5, 2.0, rng);
    bn.params_mut()[1].value = randn_on(dev, &[h], rng);
    bn.set_running_stats(
        randn_on(dev, &[h], rng).scale(0.3).unwrap(),
        uniform_on(dev, &[h], 0.2, 1.0, rng),
        1,
    )
    .unwrap();
    Sequential::new()
        .with(Linear::new(i, h, F64, dev, rng).unwrap())
        .with(Tanh::new())
        .with(bn)
        .with(Linear::new(h, k, F64, dev, rng).unwrap())
}

fn labels(b: usize, k: usize, rng: &mut Rng) -> Vec<usize> {
    (0..b).map(|_| rng.below(k as u64) as usize).collect()
}

/// Checks the input gradient and `jacobian_penalty_grad` against central differences of
/// the cross-entropy and of `L̄ + P` (and of `P` alone) over inputs and parameters.
fn check_objectives(net: &mut Sequential, x: &Tensor, y: &[usize], mode: Mode, beta: f64) {
    let dev = x.device();
    let close = |what: &str, got: &[f64], want: &[f64]| close_on(&dev, what, got, want);
    // Input gradient of the mean loss.
    let (_, gx) = input_gradient(net, x, y, mode);
    let fd = fd_grad(x, |xp| input_gradient(net, xp, y, mode).0);
    close("∂L̄/∂x", &vals(&gx), &fd);

    // Penalty value against its definition, with each sample's gradient from a batch of
    // one: P = (β/B) Σ_n ‖∂L_n/∂x_n‖².
    let penalty = scalar(&jacobian_penalty(net, x, y, beta, mode).unwrap());
    let b = y.len() as f64;
    let row = x.elem_count() / y.len();
    let mut one_shape = x.shape().to_vec();
    one_shape[0] = 1;
    let xv = vals(x);
    let per_sample: f64 = (0..y.len())
        .map(|n| {
            let xn = tensor_on(&dev, xv[n * row..(n + 1) * row].to_vec(), &one_shape);
            let (_, gn) = input_gradient(net, &xn, &y[n..=n], mode);
            gn.sqr().unwrap().sum_all().unwrap()
        })
        .sum::<f64>()
        * beta
        / b;
    assert!(
        (penalty - per_sample).abs() <= tol(&dev, 1e-12) * per_sample.max(1.0),
        "{penalty} vs per-sample {per_sample}"
    );

    // Exact gradient of L̄ + P, and of P alone (total minus the plain loss gradient).
    net.zero_grad();
    let step = jacobian_penalty_grad(net, x, y, beta, mode).unwrap();
    assert!((scalar(&step.penalty) - penalty).abs() <= tol(&dev, 1e-12) * penalty.max(1.0));
    let total: Vec<Vec<f64>> = net
        .params()
        .iter()
        .map(|p| vals(p.grad.as_ref().unwrap()))
        .collect();
    assert!(net.params().iter().all(|p| p.grad_tangent.is_none()));
    net.zero_grad();
    let z = net.forward(x, mode).unwrap();
    let (_, gz) = softmax_cross_entropy(&z, y).unwrap();
    net.backward(&gz).unwrap();
    let plain: Vec<Vec<f64>> = net
        .params()
        .iter()
        .map(|p| vals(p.grad.as_ref().unwrap()))
        .collect();

    for k in 0..total.len() {
        let value = net.params()[k].value.clone();
        let mut objective = |v: &Tensor, with_loss: bool| {
            net.params_mut()[k].value = v.clone();
            let (loss, gx) = input_gradient(net, x, y, mode);
            let p = beta * b * gx.sqr().unwrap().sum_all().unwrap();
            if with_loss { loss + p } else { p }
        };
        let fd_total = fd_grad(&value, |v| objective(v, true));
        let fd_penalty = fd_grad(&value, |v| objective(v, false));
        net.params_mut()[k].value = value;
        let name = net.params()[k].name.clone();
        close(&format!("∇(L̄+P) {k}:{name}"), &total[k], &fd_total);
        let only: Vec<f64> = total[k].iter().zip(&plain[k]).map(|(t, p)| t - p).collect();
        close(&format!("∇P {k}:{name}"), &only, &fd_penalty);
    }
}

/// With train-mode BatchNorm the samples interact, so `P = βB‖∂L̄/∂x‖²` is not the sum of
/// per-sample terms; check only the exact gradient of `L̄ + P`.
fn check_objectives_train_bn(net: &mut Sequential, x: &Tensor, y: &[usize], beta: f64) {
    let dev = x.device();
    let close = |what: &str, got: &[f64], want: &[f64]| close_on(&dev, what, got, want);
    let mode = Mode::Train;
    let b = y.len() as f64;
    net.zero_grad();
    jacobian_penalty_grad(net, x, y, beta, mode).unwrap();
    let total: Vec<Vec<f64>> = net
        .params()
        .iter()
        .map(|p| vals(p.grad.as_ref().unwrap()))
        .collect();
    for (k, got) in total.iter().enumerate() {
        let value = net.params()[k].value.clone();
        let fd = fd_grad(&value, |v| {
            net.params_mut()[k].value = v.clone();
            let (loss, gx) = input_gradient(net, x, y, mode);
            loss + beta * b * gx.sqr().unwrap().sum_all().unwrap()
        });
        net.params_mut()[k].value = value;
        close(&format!("train-BN ∇(L̄+P) {k}"), got, &fd);
    }
}

fn mlp_penalty(dev: &Device) -> Result<()> {
    proptest!(config(), |(b in 1usize..4, i in 1usize..4, h in 1usize..5, seed in any::<u64>())| {
        let mut rng = Rng::new(seed);
        let mut net = mlp(dev, i, h, 3, &mut rng);
        let x = randn_on(dev, &[b, i], &mut rng);
        let y = labels(b, 3, &mut rng);
        check_objectives(&mut net, &x, &y, Mode::Train, 0.7);
    });
    Ok(())
}

fn cnn_penalty(dev: &Device) -> Result<()> {
    proptest!(config(), |(b in 1usize..3, c in 1usize..3, o in 1usize..3, seed in any::<u64>())| {
        let mut rng = Rng::new(seed);
        let mut net = cnn(dev, c, o, 6, 3, &mut rng);
        let x = randn_on(dev, &[b, c, 6, 6], &mut rng);
        let y = labels(b, 3, &mut rng);
        check_objectives(&mut net, &x, &y, Mode::Eval, 0.5);
    });
    Ok(())
}

fn batch_norm_net_eval(dev: &Device) -> Result<()> {
    proptest!(config(), |(b in 1usize..4, i in 1usize..4, h in 1usize..4, seed in any::<u64>())| {
        let mut rng = Rng::new(seed);
        let mut net = bn_net(dev, i, h, 3, &mut rng);
        let x = randn_on(dev, &[b, i], &mut rng);
        let y = labels(b, 3, &mut rng);
        check_objectives(&mut net, &x, &y, Mode::Eval, 0.9);
    });
    Ok(())
}

fn batch_norm_net_train(dev: &Device) -> Result<()> {
    proptest!(config(), |(b in 3usize..6, i in 1usize..4, h in 1usize..4, seed in any::<u64>())| {
        let mut rng = Rng::new(seed);
        let mut net = bn_net(dev, i, h, 3, &mut rng);
        let x = randn_on(dev, &[b, i], &mut rng).scale(2.0).unwrap();
        let y = labels(b, 3, &mut rng);
        check_objectives_train_bn(&mut net, &x, &y, 0.9);
    });
    Ok(())
}

#[test]
fn zero_beta_is_plain_training_and_gradients_accumulate() {
    let mut rng = Rng::new(11);
    let mut net = mlp(&Device::Cpu, 3, 4, 2, &mut rng);
    let x = randn(&[4, 3], &mut rng);
    let y = [0, 1, 1, 0];
    net.zero_grad();
    let step = jacobian_penalty_grad(&mut net, &x, &y, 0.0, Mode::Train).unwrap();
    assert_eq!(scalar(&step.penalty), 0.0);
    assert_eq!(step.logits.shape(), &[4, 2]);
    assert_eq!(step.input_grad.shape(), &[4, 3]);
    let once: Vec<Vec<f64>> = net
        .params()
        .iter()
        .map(|p| vals(p.grad.as_ref().unwrap()))
        .collect();
    jacobian_penalty_grad(&mut net, &x, &y, 0.0, Mode::Train).unwrap();
    for (p, g) in net.params().iter().zip(&once) {
        let twice = vals(p.grad.as_ref().unwrap());
        let doubled: Vec<f64> = g.iter().map(|v| 2.0 * v).collect();
        close("accumulated", &twice, &doubled);
    }
    // The penalty alone leaves parameter gradients alone.
    jacobian_penalty(&mut net, &x, &y, 0.3, Mode::Train).unwrap();
    for (p, g) in net.params().iter().zip(&once) {
        let doubled: Vec<f64> = g.iter().map(|v| 2.0 * v).collect();
        close("untouched", &vals(p.grad.as_ref().unwrap()), &doubled);
    }
}

#[test]
fn f32_matches_f64() {
    let cpu = Device::Cpu;
    let build = |dtype| {
        let mut rng = Rng::new(9);
        let net = Sequential::new()
            .with(Linear::new(5, 6, dtype, &cpu, &mut rng).unwrap())
            .with(Tanh::new())
            .with(BatchNorm1d::new(6, dtype, &cpu).unwrap())
            .with(Linear::new(6, 3, dtype, &cpu, &mut rng).unwrap());
        let x = randn(&[4, 5], &mut rng).to_dtype(dtype).unwrap();
        (net, x)
    };
    let y = [0, 2, 1, 2];
    let mut grads = Vec::new();
    for dtype in [DType::F32, DType::F64] {
        let (mut net, x) = build(dtype);
        let step = jacobian_penalty_grad(&mut net, &x, &y, 0.1, Mode::Train).unwrap();
        assert_eq!(step.input_grad.dtype(), dtype);
        let g: Vec<f64> = net
            .params()
            .iter()
            .flat_map(|p| vals(p.grad.as_ref().unwrap()))
            .collect();
        grads.push((scalar(&step.loss), scalar(&step.penalty), g));
    }
    let (a, b) = (&grads[0], &grads[1]);
    assert!((a.0 - b.0).abs() < 1e-5 && (a.1 - b.1).abs() < 1e-5);
    for (u, v) in a.2.iter().zip(&b.2) {
        assert!((u - v).abs() < 1e-4 * v.abs().max(1.0), "{u} vs {v}");
    }
}
