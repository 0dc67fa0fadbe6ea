//! Every layer's four passes against f64 central differences, over small random shapes.

mod common;

use common::{check_layer, randn_on, tensor, tensor_on, uniform_on};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use specreg_nn::{
    BatchNorm1d, Conv2d, Flatten, Layer, Linear, MaxPool2d, Mode, Relu, Sigmoid, Tanh,
};
use specreg_tensor::{DType, Device, Result, Rng, Tensor, test_device};

fn config() -> Config {
    Config {
        cases: 32,
        rng_seed: RngSeed::Fixed(20201206),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Distinct values spaced by 0.1 in a random order: no pooling window is near a tie.
fn spaced(dev: &Device, shape: &[usize], rng: &mut Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let v = order
        .iter()
        .map(|&r| 0.1 * r as f64 - 0.05 * n as f64)
        .collect();
    tensor_on(dev, v, shape)
}

/// Values bounded away from ReLU's kink at 0.
fn off_zero(dev: &Device, shape: &[usize], rng: &mut Rng) -> Tensor {
    let v = randn_on(dev, shape, rng).to_vec::<f64>().unwrap();
    let v = v.iter().map(|a| a.signum() * (0.1 + a.abs())).collect();
    tensor_on(dev, v, shape)
}

test_device!(
    linear,
    tanh,
    sigmoid,
    relu,
    flatten,
    conv2d,
    max_pool2d,
    batch_norm_train,
    batch_norm_eval
);

fn linear(dev: &Device) -> Result<()> {
    proptest!(config(), |(b in 1usize..4, i in 1usize..5, o in 1usize..4, seed in any::<u64>())| {
        let mut rng = Rng::new(seed);
        let mut l = Linear::new(i, o, DType::F64, dev, &mut rng).unwrap();
        check_layer(&mut l, &randn_on(dev, &[b, i], &mut rng), Mode::Train, &mut rng);
    });
    Ok(())
}

fn tanh(dev: &Device) -> Result<()> {
    proptest!(config(), |(b in 1usize..4, n in 1usize..5, seed in any::<u64>())| {
        let mut rng = Rng::new(seed);
        check_layer(&mut Tanh::new(), &randn_on(dev, &[b, n], &mut rng), Mode::Train, &mut rng);
    });
    Ok(())
}

fn sigmoid(dev: &Device) -> Result<()> {
    proptest!(config(), |(b in 1usize..4, n in 1usize..5, seed in any::<u64>())| {
        let mut rng = Rng::new(seed);
        check_layer(&mut Sigmoid::new(), &randn_on(dev, &[b, n], &mut rng), Mode::Eval, &mut rng);
    });
    Ok(())
}

fn relu(dev: &Device) -> Result<()> {
    proptest!(config(), |(b in 1usize..4, n in 1usize..5, seed in any::<u64>())| {
        let mut rng = Rng::new(seed);
        check_layer(&mut Relu::new(), &off_zero(dev, &[b, n], &mut rng), Mode::Train, &mut rng);
    });
    Ok(())
}

fn flatten(dev: &Device) -> Result<()> {
    proptest!(config(), |(b in 1usize..3, c in 1usize..3, h in 1usize..4, seed in any::<u64>())| {
        let mut rng = Rng::new(seed);
        let x = randn_on(dev, &[b, c, h, 2], &mut rng);
        let mut f = Flatten::new();
        let y = f.forward(&x, Mode::Train).unwrap();
        prop_assert_eq!(y.shape(), &[b, c * h * 2]);
        check_layer(&mut f, &x, Mode::Train, &mut rng);
    });
    Ok(())
}

fn conv2d(dev: &Device) -> Result<()> {
    proptest!(config(), |(b in 1usize..3, c in 1usize..3, o in 1usize..3, kh in 1usize..4, kw in 1usize..4, eh in 0usize..3, ew in 0usize..3, seed in any::<u64>())| {
        let mut rng = Rng::new(seed);
        let mut l = Conv2d::new(c, o, (kh, kw), DType::F64, dev, &mut rng).unwrap();
        let x = randn_on(dev, &[b, c, kh + eh, kw + ew], &mut rng);
        check_layer(&mut l, &x, Mode::Train, &mut rng);
    });
    Ok(())
}

fn max_pool2d(dev: &Device) -> Result<()> {
    proptest!(config(), |(b in 1usize..3, c in 1usize..3, h in 2usize..6, w in 2usize..6, seed in any::<u64>())| {
        let mut rng = Rng::new(seed);
        let x = spaced(dev, &[b, c, h, w], &mut rng);
        let mut p = MaxPool2d::new();
        let y = p.forward(&x, Mode::Train).unwrap();
        prop_assert_eq!(y.shape(), &[b, c, h / 2, w / 2]);
        check_layer(&mut p, &x, Mode::Train, &mut rng);
    });
    Ok(())
}

fn batch_norm_train(dev: &Device) -> Result<()> {
    proptest!(config(), |(b in 2usize..6, f in 1usize..4, seed in any::<u64>())| {
        let mut rng = Rng::new(seed);
        let mut bn = random_batch_norm(dev, f, &mut rng);
        let x = randn_on(dev, &[b, f], &mut rng).affine(1.5, 0.3).unwrap();
        check_layer(&mut bn, &x, Mode::Train, &mut rng);
    });
    Ok(())
}

fn batch_norm_eval(dev: &Device) -> Result<()> {
    proptest!(config(), |(b in 1usize..5, f in 1usize..4, seed in any::<u64>())| {
        let mut rng = Rng::new(seed);
        let mut bn = random_batch_norm(dev, f, &mut rng);
        let x = randn_on(dev, &[b, f], &mut rng);
        check_layer(&mut bn, &x, Mode::Eval, &mut rng);
    });
    Ok(())
}

/// A BatchNorm with random affine parameters and running statistics.
fn random_batch_norm(dev: &Device, f: usize, rng: &mut Rng) -> BatchNorm1d {
    let mut bn = BatchNorm1d::new(f, DType::F64, dev).unwrap();
    bn.params_mut()[0].value = uniform_on(dev, &[f], 0.5, 2.0, rng);
    bn.params_mut()[1].value = randn_on(dev, &[f], rng);
    let (mean, var) = (
        randn_on(dev, &[f], rng),
        uniform_on(dev, &[f], 0.5, 2.0, rng),
    );
    bn.set_running_stats(mean, var, 3).unwrap();
    bn
}

#[test]
fn max_pool_ties_route_to_the_first_maximum() {
    // One 2×4 channel: the first window is all equal, the second has its maximum 5 at
    // offsets 1 and 2 (row-major (0,3) and (1,2)).
    let x = tensor(vec![1.0, 1.0, 0.0, 5.0, 1.0, 1.0, 5.0, 2.0], &[1, 1, 2, 4]);
    let mut p = MaxPool2d::new();
    let y = p.forward(&x, Mode::Train).unwrap();
    assert_eq!(common::vals(&y), [1.0, 5.0]);
    let gx = p.backward(&tensor(vec![3.0, 7.0], &[1, 1, 1, 2])).unwrap();
    assert_eq!(common::vals(&gx), [3.0, 0.0, 0.0, 7.0, 0.0, 0.0, 0.0, 0.0]);
    let dx = tensor(vec![10., 11., 12., 13., 14., 15., 16., 17.], &[1, 1, 2, 4]);
    assert_eq!(common::vals(&p.forward_tangent(&dx).unwrap()), [10.0, 13.0]);
    let rgx = p
        .backward_tangent(&tensor(vec![-1.0, 2.0], &[1, 1, 1, 2]))
        .unwrap();
    assert_eq!(
        common::vals(&rgx),
        [-1.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0]
    );
}

#[test]
fn odd_pool_input_drops_the_last_row_and_column() {
    let mut rng = Rng::new(5);
    let x = spaced(&Device::Cpu, &[1, 1, 3, 3], &mut rng);
    let mut p = MaxPool2d::new();
    let y = p.forward(&x, Mode::Train).unwrap();
    let v = common::vals(&x);
    assert_eq!(common::vals(&y), [v[0].max(v[1]).max(v[3]).max(v[4])]);
    let gx = common::vals(&p.backward(&tensor(vec![1.0], &[1, 1, 1, 1])).unwrap());
    assert_eq!(gx.iter().sum::<f64>(), 1.0);
    assert!([2, 5, 6, 7, 8].iter().all(|&i| gx[i] == 0.0));
}
