//! `Mode::BatchStatistics` in BatchNorm1d: the output and every pass of `Train` (batch
//! statistics, gradients through them) against f64 central differences, with no running
//! statistic updated.

mod common;

use common::{check_layer, randn, randn_on, uniform_on, vals};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use specreg_nn::{BatchNorm1d, Layer, Mode, NnError};
use specreg_tensor::{DType, Device, Result, Rng, Tensor, test_device};

test_device!(
    every_pass_matches_central_differences,
    output_and_gradients_equal_train_mode
);

fn config() -> Config {
    Config {
        cases: 32,
        rng_seed: RngSeed::Fixed(20201207),
        failure_persistence: None,
        ..Config::default()
    }
}

/// A BatchNorm with random affine parameters and running statistics away from `(0, 1)`.
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

/// The running mean, running variance and batch count.
fn running(bn: &BatchNorm1d) -> (Vec<f64>, Vec<f64>, u64) {
    (
        vals(bn.running_mean()),
        vals(bn.running_var()),
        bn.num_batches_tracked(),
    )
}

/// Backward, parameter gradients, forward tangent and backward tangent against f64
/// central differences (the finite differences also run in `BatchStatistics` mode).
fn every_pass_matches_central_differences(dev: &Device) -> Result<()> {
    proptest!(config(), |(b in 2usize..6, f in 1usize..4, seed in any::<u64>())| {
        let mut rng = Rng::new(seed);
        let mut bn = random_batch_norm(dev, f, &mut rng);
        let before = running(&bn);
        let x = randn_on(dev, &[b, f], &mut rng).affine(1.5, 0.3).unwrap();
        check_layer(&mut bn, &x, Mode::BatchStatistics, &mut rng);
        // Dozens of forward passes later, nothing has moved.
        prop_assert_eq!(running(&bn), before);
    });
    Ok(())
}

/// The output and the input and parameter gradients are Train's, bit for bit.
fn output_and_gradients_equal_train_mode(dev: &Device) -> Result<()> {
    proptest!(config(), |(b in 2usize..9, f in 1usize..5, seed in any::<u64>())| {
        let mut rng = Rng::new(seed);
        let mut bn = random_batch_norm(dev, f, &mut rng);
        let x = randn_on(dev, &[b, f], &mut rng).affine(2.0, -0.7).unwrap();
        let g = randn_on(dev, &[b, f], &mut rng);
        let run = |bn: &mut BatchNorm1d, mode: Mode| {
            bn.zero_grad();
            let y = bn.forward(&x, mode).unwrap();
            let gx = bn.backward(&g).unwrap();
            let gp: Vec<Vec<f64>> =
                bn.params().iter().map(|p| vals(p.grad.as_ref().unwrap())).collect();
            (vals(&y), vals(&gx), gp)
        };
        let before = running(&bn);
        let batch = run(&mut bn, Mode::BatchStatistics);
        prop_assert_eq!(running(&bn), before.clone());
        let train = run(&mut bn, Mode::Train);
        prop_assert_eq!(batch, train);
        // Train did update the running statistics (the comparison above is not vacuous).
        prop_assert_eq!(bn.num_batches_tracked(), before.2 + 1);
        prop_assert_ne!(vals(bn.running_mean()), before.0);
    });
    Ok(())
}

#[test]
fn batch_statistics_leave_eval_mode_untouched() {
    let mut rng = Rng::new(17);
    let mut bn = random_batch_norm(&Device::Cpu, 3, &mut rng);
    let probe = randn(&[4, 3], &mut rng);
    let eval_before = vals(&bn.forward(&probe, Mode::Eval).unwrap());
    let buffers_before: Vec<(String, Vec<f64>)> = bn
        .buffers()
        .into_iter()
        .map(|(n, t)| (n, vals(&t)))
        .collect();
    for _ in 0..5 {
        let x = randn(&[7, 3], &mut rng).affine(3.0, 1.0).unwrap();
        bn.forward(&x, Mode::BatchStatistics).unwrap();
    }
    let buffers_after: Vec<(String, Vec<f64>)> = bn
        .buffers()
        .into_iter()
        .map(|(n, t)| (n, vals(&t)))
        .collect();
    assert_eq!(buffers_after, buffers_before);
    assert_eq!(bn.num_batches_tracked(), 3);
    assert_eq!(vals(&bn.forward(&probe, Mode::Eval).unwrap()), eval_before);
    // And BatchStatistics really normalises with the batch: zero column means.
    let x = randn(&[50, 3], &mut rng).affine(3.0, 5.0).unwrap();
    let y = bn.forward(&x, Mode::BatchStatistics).unwrap();
    let beta = vals(&bn.params()[1].value);
    let means = vals(&y.col_means().unwrap());
    for (m, b) in means.iter().zip(&beta) {
        assert!((m - b).abs() < 1e-12, "column mean {m} ≠ β = {b}");
    }
}

#[test]
fn a_single_sample_batch_is_an_error_naming_the_layer() {
    let mut rng = Rng::new(3);
    let mut bn = random_batch_norm(&Device::Cpu, 4, &mut rng);
    let before = running(&bn);
    let x = randn(&[1, 4], &mut rng);
    for mode in [Mode::BatchStatistics, Mode::Train] {
        let err = bn.forward(&x, mode).unwrap_err();
        match &err {
            NnError::InvalidArgument { what, reason } => {
                assert!(what.contains("batch_norm1d"), "{err}");
                assert!(reason.contains("got 1"), "{err}");
            }
            other => panic!("{mode:?}: expected InvalidArgument, got {other}"),
        }
    }
    assert_eq!(running(&bn), before);
    // An empty batch too; Eval (running statistics) handles one sample.
    let empty = Tensor::zeros(&[0, 4], DType::F64, &Device::Cpu).unwrap();
    assert!(bn.forward(&empty, Mode::BatchStatistics).is_err());
    assert!(bn.forward(&x, Mode::Eval).is_ok());
    assert!(Mode::BatchStatistics.uses_batch_statistics());
    assert!(Mode::Train.uses_batch_statistics());
    assert!(!Mode::Eval.uses_batch_statistics());
}
