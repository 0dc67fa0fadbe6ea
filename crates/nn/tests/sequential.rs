//! Small networks: every pass of the stack (forward, backward and the tangent passes)
//! against f64 central differences. The Jacobian penalty built on them is tested in the
//! regularizers crate.

mod common;

use common::{check_layer, randn_on, uniform_on};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use specreg_nn::{BatchNorm1d, Conv2d, Flatten, Layer, Linear, MaxPool2d, Mode, Sequential, Tanh};
use specreg_tensor::{DType, Device, Result, Rng, test_device};

const F64: DType = DType::F64;

test_device!(
    mlp_passes,
    cnn_passes,
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

fn mlp_passes(dev: &Device) -> Result<()> {
    proptest!(config(), |(b in 1usize..4, i in 1usize..4, h in 1usize..5, seed in any::<u64>())| {
        let mut rng = Rng::new(seed);
        let mut net = mlp(dev, i, h, 3, &mut rng);
        let x = randn_on(dev, &[b, i], &mut rng);
        check_layer(&mut net, &x, Mode::Train, &mut rng);
    });
    Ok(())
}

fn cnn_passes(dev: &Device) -> Result<()> {
    proptest!(config(), |(b in 1usize..3, c in 1usize..3, o in 1usize..3, seed in any::<u64>())| {
        let mut rng = Rng::new(seed);
        let mut net = cnn(dev, c, o, 6, 3, &mut rng);
        let x = randn_on(dev, &[b, c, 6, 6], &mut rng);
        check_layer(&mut net, &x, Mode::Train, &mut rng);
    });
    Ok(())
}

fn batch_norm_net_eval(dev: &Device) -> Result<()> {
    proptest!(config(), |(b in 1usize..4, i in 1usize..4, h in 1usize..4, seed in any::<u64>())| {
        let mut rng = Rng::new(seed);
        let mut net = bn_net(dev, i, h, 3, &mut rng);
        let x = randn_on(dev, &[b, i], &mut rng);
        check_layer(&mut net, &x, Mode::Eval, &mut rng);
    });
    Ok(())
}

fn batch_norm_net_train(dev: &Device) -> Result<()> {
    proptest!(config(), |(b in 3usize..6, i in 1usize..4, h in 1usize..4, seed in any::<u64>())| {
        let mut rng = Rng::new(seed);
        let mut net = bn_net(dev, i, h, 3, &mut rng);
        let x = randn_on(dev, &[b, i], &mut rng).scale(2.0).unwrap();
        check_layer(&mut net, &x, Mode::Train, &mut rng);
    });
    Ok(())
}

#[test]
fn parameters_are_named_by_position_layer_and_name() {
    let mut rng = Rng::new(11);
    let net = mlp(&Device::Cpu, 3, 4, 2, &mut rng);
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
