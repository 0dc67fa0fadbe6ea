//! Real MNIST, reference settings, 5 epochs: the vanilla MLP and the shallow BatchNorm
//! network must reach ≥ 91% test accuracy (PyTorch: 92.5% and 92.7% after 5 epochs).
//!
//! MNIST is found when the tests are built (`SPECREG_DATA`, the per-user cache, a download:
//! see `specreg_data::testing`); without it the tests are ignored, with the reason.
//! Meant for release mode (`cargo test --workspace --release`): each test trains for
//! about a minute there.

use specreg_data::{Mnist, batch_indices};
use specreg_nn::{Adam, AdamConfig, Network, NoHook, evaluate, train_epoch};
use specreg_tensor::{DType, Device, Rng};

type Builder = fn(&mut Rng, DType, &Device) -> specreg_nn::Result<Network>;

fn load() -> Mnist {
    let dir = specreg_data::test_mnist_dir!();
    Mnist::load(&dir).unwrap_or_else(|e| panic!("{e}"))
}

/// Trains `build`'s network for `epochs` epochs with Adam (amsgrad) and returns the test
/// accuracy after each epoch.
fn train(mnist: &Mnist, build: Builder, lr: f64, batch: usize, epochs: usize) -> Vec<f64> {
    let mut rng = Rng::new(0);
    let mut net = build(&mut rng, DType::F32, &Device::Cpu).unwrap();
    let mut adam = Adam::new(AdamConfig::new(lr)).unwrap();
    assert!(adam.config().amsgrad);
    let mut accs = Vec::with_capacity(epochs);
    for epoch in 0..epochs {
        let batches = batch_indices(mnist.train.len(), batch, Some(1000 + epoch as u64)).unwrap();
        assert_eq!(batches.len(), 60_000_usize.div_ceil(batch));
        let stats = train_epoch(
            &mut net,
            &mut adam,
            mnist.train.images(),
            mnist.train.labels(),
            &batches,
            epoch,
            &mut NoHook,
        )
        .unwrap();
        assert_eq!(stats.samples, 60_000);
        assert!(stats.loss.is_finite() && stats.loss > 0.0);
        let acc = evaluate(&mut net, mnist.test.images(), mnist.test.labels(), 5000).unwrap();
        eprintln!(
            "epoch {}: train loss {:.4}, train acc {:.4}, test acc {:.4}, {:.1} s",
            epoch + 1,
            stats.loss,
            stats.accuracy,
            acc,
            stats.seconds
        );
        accs.push(acc);
    }
    accs
}

#[test]
#[cfg_attr(
    specreg_no_mnist,
    ignore = "MNIST not found at build time (see the cargo warning): set SPECREG_DATA"
)]
fn mlp_reaches_91_percent_in_5_epochs() {
    let mnist = load();
    let accs = train(&mnist, Network::mlp, 1e-4, 1500, 5);
    let last = *accs.last().unwrap();
    println!("MLP (Adam amsgrad, lr 1e-4, batch 1500), 5 epochs: test accuracy {last:.4}");
    assert!(last >= 0.91, "MLP test accuracy {last} < 0.91: {accs:?}");
}

#[test]
#[cfg_attr(
    specreg_no_mnist,
    ignore = "MNIST not found at build time (see the cargo warning): set SPECREG_DATA"
)]
fn shallow_batchnorm_reaches_91_percent_in_5_epochs() {
    let mnist = load();
    let accs = train(&mnist, Network::shallow, 1e-3, 3500, 5);
    let last = *accs.last().unwrap();
    println!(
        "shallow + BatchNorm (Adam amsgrad, lr 1e-3, batch 3500), 5 epochs: test accuracy {last:.4}"
    );
    assert!(
        last >= 0.91,
        "shallow test accuracy {last} < 0.91: {accs:?}"
    );
}
