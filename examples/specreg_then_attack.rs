//! The library crates without the `specreg` binary: train the shallow network for two
//! epochs with the spectral regulariser (projected mode), fit its hidden layer's power law,
//! and measure its PGD robustness on the first 1 000 test images.
//!
//! `cargo run --release --example specreg_then_attack [MNIST_DIR]`: MNIST is found the way
//! the `specreg` binary finds it: the folder given, else `SPECREG_DATA`, the per-user cache
//! or the system packages, else it is downloaded (md5-checked) into the per-user cache.

use anyhow::Result;
use specreg::attacks::{Attack, EvalOptions, PgdConfig, robustness_curve};
use specreg::data::{DatasetKind, Mnist, batch_indices, load_or_download};
use specreg::nn::{Adam, AdamConfig, Network, evaluate, train_epoch};
use specreg::regularizers::{EigenMode, SpectralLayer, SpectralRegularizer, layer_spectrum};
use specreg::tensor::{DType, Device, Rng};

fn main() -> Result<()> {
    let mnist = match std::env::args_os().nth(1) {
        Some(dir) => Mnist::load(dir)?,
        None => load_or_download(DatasetKind::Mnist, None)?,
    };
    let (images, labels) = (mnist.train.images(), mnist.train.labels());

    let mut rng = Rng::new(0);
    let mut net = Network::shallow(&mut rng, DType::F32, &Device::Cpu)?;
    let mut adam = Adam::new(AdamConfig::new(1e-3))?;
    // Eq. 2 on the hidden layer: α = 1, τ = 10, β = 2.
    let mut spec = SpectralRegularizer::new(
        vec![SpectralLayer::new("hidden", 2.0)],
        EigenMode::Projected,
    )?;
    for epoch in 0..2 {
        spec.refresh(&mut net, images, 5000)?; // eigenvectors over the training set
        let batches = batch_indices(images.nrows(), 3500, Some(epoch as u64))?;
        let stats = train_epoch(
            &mut net, &mut adam, images, labels, &batches, epoch, &mut spec,
        )?;
        println!(
            "epoch {}: cross-entropy {:.4}, spectral term {:.4}",
            epoch + 1,
            stats.cross_entropy,
            spec.take_epoch_terms()[0].1
        );
    }

    let (test_x, test_y) = (mnist.test.images(), mnist.test.labels());
    let fit = layer_spectrum(&mut net, "hidden", test_x, 5000)?.default_power_law()?;
    println!(
        "test accuracy {:.4}; hidden spectrum α = {:.3} (R² {:.3})",
        evaluate(&mut net, test_x, test_y, 5000)?,
        fit.alpha,
        fit.r2
    );

    let pgd = Attack::Pgd(PgdConfig::linf(0.0)); // ε comes from the grid
    let options = EvalOptions {
        subset: Some(1000),
        ..EvalOptions::default()
    };
    let curve = robustness_curve(&mut net, test_x, test_y, &pgd, &[0.0, 0.05, 0.1], &options)?;
    for p in &curve.points {
        println!("PGD-40 ε = {:.2}: accuracy {:.3}", p.strength, p.accuracy);
    }
    for flag in &curve.flags {
        println!("sanity flag: {flag}");
    }
    Ok(())
}
