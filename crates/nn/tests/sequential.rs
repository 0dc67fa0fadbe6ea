//! Small networks: every pass of the stack, the input gradient of the cross-entropy, and the
//! exact Jacobian-penalty gradient, against f64 central differences.

mod common;

use common::{assert_close, check_layer, fd_grad, randn, tensor, uniform, vals};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use specreg_nn::{BatchNorm1d, Conv2d, Flatten, Layer, Linear, MaxPool2d, Mode, Sequential, Tanh};
use specreg_tensor::{DType, Device, Rng, Tensor};

const F64: DType = DType::F64;

fn config() -> Config {
    Config {
        cases: 12,
        rng_seed: RngSeed::Fixed(2020),
        failure_persistence: None,
        ..Config::default()
    }
}

fn mlp(i: usize, h: usize, k: usize, rng: &mut Rng) -> Sequential {
    let dev = Device::Cpu;
    Sequential::new()
        .with(Linear::new(i, h, F64, &dev, rng).unwrap())
        .with(Tanh::new())
        .with(Linear::new(h, k, F64, &dev, rng).unwrap())
}

fn cnn(c: usize, o: usize, side: usize, k: usize, rng: &mut Rng) -> Sequential {
    let dev = Device::Cpu;
    let pooled = (side - 2) / 2;
    Sequential::new()
        .with(Conv2d::new(c, o, (3, 3), F64, &dev, rng).unwrap())
        .with(Tanh::new())
        .with(MaxPool2d::new())
        .with(Flatten::new())
        .with(Linear::new(o * pooled * pooled, k, F64, &dev, rng).unwrap())
}

fn bn_net(i: usize, h: usize, k: usize, rng: &mut Rng) -> Sequential {
    let dev = Device::Cpu;
    let mut bn = BatchNorm1d::new(h, F64, &dev).unwrap();
    bn.params_mut()[0].value = uniform(&[h], 0.5, 2.0, rng);
    bn.params_mut()[1].value = randn(&[h], rng);
    bn.set_running_stats(
        randn(&[h], rng).scale(0.3).unwrap(),
        uniform(&[h], 0.2, 1.0, rng),
        1,
    )
    .unwrap();
    Sequential::new()
        .with(Linear::new(i, h, F64, &dev, rng).unwrap())
        .with(Tanh::new())
        .with(bn)
        .with(Linear::new(h, k, F64, &dev, rng).unwrap())
}

fn labels(b: usize, k: usize, rng: &mut Rng) -> Vec<usize> {
    (0..b).map(|_| rng.below(k as u64) as usize).collect()
}

/// Checks `input_gradient` and `jacobian_penalty_grad` against central differences of the
/// cross-entropy and of `L̄ + P` (and of `P` alone) over inputs and parameters.
fn check_objectives(net: &mut Sequential, x: &Tensor, y: &[usize], mode: Mode, beta: f64) {
    // Input gradient of the mean loss.
    let (_, gx) = net.input_gradient(x, y, mode).unwrap();
    let fd = fd_grad(x, |xp| net.input_gradient(xp, y, mode).unwrap().0);
    assert_close("∂L̄/∂x", &vals(&gx), &fd);

    // Penalty value against its definition, with each sample's gradient from a batch of
    // one: P = (β/B) Σ_n ‖∂L_n/∂x_n‖².
    let penalty = net.jacobian_penalty(x, y, beta, mode).unwrap();
    let b = y.len() as f64;
    let row = x.elem_count() / y.len();
    let mut one_shape = x.shape().to_vec();
    one_shape[0] = 1;
    let xv = vals(x);
    let per_sample: f64 = (0..y.len())
        .map(|n| {
            let xn = tensor(xv[n * row..(n + 1) * row].to_vec(), &one_shape);
            let (_, gn) = net.input_gradient(&xn, &y[n..=n], mode).unwrap();
            gn.sqr().unwrap().sum_all().unwrap()
        })
        .sum::<f64>()
        * beta
        / b;
    assert!(
        (penalty - per_sample).abs() <= 1e-12 * per_sample.max(1.0),
        "{penalty} vs per-sample {per_sample}"
    );

    // Exact gradient of L̄ + P, and of P alone (total minus the plain loss gradient).
    net.zero_grad();
    let step = net.jacobian_penalty_grad(x, y, beta, mode).unwrap();
    assert!((step.penalty - penalty).abs() <= 1e-12 * penalty.max(1.0));
    let total: Vec<Vec<f64>> = net
        .params()
        .iter()
        .map(|p| vals(p.grad.as_ref().unwrap()))
        .collect();
    assert!(net.params().iter().all(|p| p.grad_tangent.is_none()));
    net.zero_grad();
    let z = net.forward(x, mode).unwrap();
    let (_, gz) = z.softmax_cross_entropy(y).unwrap();
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
            let (loss, gx) = net.input_gradient(x, y, mode).unwrap();
            let p = beta * b * gx.sqr().unwrap().sum_all().unwrap();
            if with_loss { loss + p } else { p }
        };
        let fd_total = fd_grad(&value, |v| objective(v, true));
        let fd_penalty = fd_grad(&value, |v| objective(v, false));
        net.params_mut()[k].value = value;
        let name = net.params()[k].name.clone();
        assert_close(&format!("∇(L̄+P) {k}:{name}"), &total[k], &fd_total);
        let only: Vec<f64> = total[k].iter().zip(&plain[k]).map(|(t, p)| t - p).collect();
        assert_close(&format!("∇P {k}:{name}"), &only, &fd_penalty);
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mlp_passes_and_penalty(b in 1usize..4, i in 1usize..4, h in 1usize..5, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let mut net = mlp(i, h, 3, &mut rng);
        let x = randn(&[b, i], &mut rng);
        check_layer(&mut net, &x, Mode::Train, &mut rng);
        let y = labels(b, 3, &mut rng);
        check_objectives(&mut net, &x, &y, Mode::Train, 0.7);
    }

    #[test]
    fn cnn_passes_and_penalty(b in 1usize..3, c in 1usize..3, o in 1usize..3, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let mut net = cnn(c, o, 6, 3, &mut rng);
        let x = randn(&[b, c, 6, 6], &mut rng);
        check_layer(&mut net, &x, Mode::Train, &mut rng);
        let y = labels(b, 3, &mut rng);
        check_objectives(&mut net, &x, &y, Mode::Eval, 0.5);
    }

    #[test]
    fn batch_norm_net_eval(b in 1usize..4, i in 1usize..4, h in 1usize..4, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let mut net = bn_net(i, h, 3, &mut rng);
        let x = randn(&[b, i], &mut rng);
        check_layer(&mut net, &x, Mode::Eval, &mut rng);
        let y = labels(b, 3, &mut rng);
        check_objectives(&mut net, &x, &y, Mode::Eval, 0.9);
    }

    #[test]
    fn batch_norm_net_train(b in 3usize..6, i in 1usize..4, h in 1usize..4, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let mut net = bn_net(i, h, 3, &mut rng);
        let x = randn(&[b, i], &mut rng).scale(2.0).unwrap();
        check_layer(&mut net, &x, Mode::Train, &mut rng);
        let y = labels(b, 3, &mut rng);
        check_objectives_train_bn(&mut net, &x, &y, 0.9);
    }
}

/// With train-mode BatchNorm the samples interact, so `P = βB‖∂L̄/∂x‖²` is not the sum of
/// per-sample terms; check only the exact gradient of `L̄ + P`.
fn check_objectives_train_bn(net: &mut Sequential, x: &Tensor, y: &[usize], beta: f64) {
    let mode = Mode::Train;
    let b = y.len() as f64;
    net.zero_grad();
    net.jacobian_penalty_grad(x, y, beta, mode).unwrap();
    let total: Vec<Vec<f64>> = net
        .params()
        .iter()
        .map(|p| vals(p.grad.as_ref().unwrap()))
        .collect();
    for (k, got) in total.iter().enumerate() {
        let value = net.params()[k].value.clone();
        let fd = fd_grad(&value, |v| {
            net.params_mut()[k].value = v.clone();
            let (loss, gx) = net.input_gradient(x, y, mode).unwrap();
            loss + beta * b * gx.sqr().unwrap().sum_all().unwrap()
        });
        net.params_mut()[k].value = value;
        assert_close(&format!("train-BN ∇(L̄+P) {k}"), got, &fd);
    }
}

#[test]
fn zero_beta_is_plain_training_and_gradients_accumulate() {
    let mut rng = Rng::new(11);
    let mut net = mlp(3, 4, 2, &mut rng);
    let x = randn(&[4, 3], &mut rng);
    let y = [0, 1, 1, 0];
    net.zero_grad();
    let step = net.jacobian_penalty_grad(&x, &y, 0.0, Mode::Train).unwrap();
    assert_eq!(step.penalty, 0.0);
    assert_eq!(step.logits.shape(), &[4, 2]);
    let once: Vec<Vec<f64>> = net
        .params()
        .iter()
        .map(|p| vals(p.grad.as_ref().unwrap()))
        .collect();
    net.jacobian_penalty_grad(&x, &y, 0.0, Mode::Train).unwrap();
    for (p, g) in net.params().iter().zip(&once) {
        let twice = vals(p.grad.as_ref().unwrap());
        let doubled: Vec<f64> = g.iter().map(|v| 2.0 * v).collect();
        assert_close("accumulated", &twice, &doubled);
    }
    // input_gradient leaves parameter gradients alone.
    net.input_gradient(&x, &y, Mode::Train).unwrap();
    let after: Vec<Vec<f64>> = net
        .params()
        .iter()
        .map(|p| vals(p.grad.as_ref().unwrap()))
        .collect();
    let again: Vec<Vec<f64>> = once
        .iter()
        .map(|g| g.iter().map(|v| 2.0 * v).collect())
        .collect();
    for (a, w) in after.iter().zip(&again) {
        assert_close("untouched", a, w);
    }
    let names: Vec<String> = net.named_params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "0.linear.weight",
            "0.linear.bias",
            "2.linear.weight",
            "2.linear.bias"
        ]
    );
}
