//! The whitening layer (eq. 10): identity output covariance, gradients against `f64`
//! central differences in both modes, running statistics, and typed factorisation errors.

mod common;

use common::{
    assert_close, central_diff, fixed_cases, randn, randn_on, richardson_diff, tol, vals,
};
use ndarray::Array2;
use proptest::prelude::*;
use specreg_nn::{Layer, Linear, Mode, Network, NnError, Sequential, Tanh};
use specreg_regularizers::{Whitening, WhiteningStatistics};
use specreg_tensor::{DType, Device, Result, Rng, Tensor, test_device};

test_device!(
    gradients_match_central_differences,
    a_whitened_network_backpropagates_through_the_inserted_layer
);

/// Correlated rows with a non-zero mean: `Z A + m`, `A = 3I + R/(2√N)` (well conditioned, so
/// the `εI` in `Σ + εI` moves the output covariance by far less than 1e-4).
fn correlated(dev: &Device, b: usize, n: usize, rng: &mut Rng) -> Tensor {
    let z = randn_on(dev, &[b, n], rng);
    let eye = Tensor::from_array(Array2::<f64>::eye(n))
        .to_device(dev)
        .unwrap();
    let a = randn_on(dev, &[n, n], rng)
        .scale(0.5 / (n as f64).sqrt())
        .unwrap()
        .add(&eye.scale(3.0).unwrap())
        .unwrap();
    z.matmul(&a).unwrap().add_scalar(1.5).unwrap()
}

fn layer(dev: &Device, n: usize) -> Whitening {
    Whitening::new("fc2", n, 1e-5)
        .unwrap()
        .on(DType::F64, dev)
        .unwrap()
}

/// A layer with running statistics (updated in `Train`, used in `Eval`).
fn running_layer(dev: &Device, n: usize) -> Whitening {
    layer(dev, n).with_statistics(WhiteningStatistics::Running)
}

#[test]
fn whitened_batches_have_identity_covariance() {
    let mut rng = Rng::new(1);
    for (b, n) in [(50, 6), (400, 30)] {
        let x = correlated(&Device::Cpu, b, n, &mut rng);
        let y = layer(&Device::Cpu, n).forward(&x, Mode::Train).unwrap();
        let cov = Array2::from_shape_vec((n, n), vals(&y.covariance().unwrap())).unwrap();
        let mean = vals(&y.col_means().unwrap());
        let dev = (&cov - &Array2::<f64>::eye(n))
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(dev < 1e-4, "B={b}, N={n}: max |cov − I| = {dev}");
        assert!(mean.iter().all(|m| m.abs() < 1e-10), "{mean:?}");
    }
    // In f32 too, at the paper's scale of conditioning.
    let x = correlated(&Device::Cpu, 300, 20, &mut rng)
        .to_dtype(DType::F32)
        .unwrap();
    let mut w = Whitening::new("fc2", 20, 1e-5).unwrap();
    let y = w
        .forward(&x, Mode::Train)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let cov = Array2::from_shape_vec((20, 20), vals(&y.covariance().unwrap())).unwrap();
    let dev = (&cov - &Array2::<f64>::eye(20))
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(dev < 1e-3, "f32: max |cov − I| = {dev}");
}

/// `⟨C, layer(x)⟩` in `mode`, from a fresh copy of the layer's running statistics.
fn objective(w: &Whitening, x: &Tensor, c: &Tensor, mode: Mode) -> f64 {
    let mut fresh = running_layer(&x.device(), x.shape()[1]);
    for (name, value) in w.buffers() {
        fresh.set_buffer(&name, value).unwrap();
    }
    fresh
        .forward(x, mode)
        .unwrap()
        .mul(c)
        .unwrap()
        .sum_all()
        .unwrap()
}

fn gradients_match_central_differences(dev: &Device) -> Result<()> {
    proptest!(fixed_cases(16, 20201210), |(seed in 0u64..10_000, b in 6usize..14, n in 2usize..6)| {
        let mut rng = Rng::new(seed);
        let x = correlated(dev, b, n, &mut rng);
        let c = randn_on(dev, &[b, n], &mut rng);
        let mut w = running_layer(dev, n);
        // Move the running statistics away from (0, I) so Eval mode is not trivial.
        w.forward(&correlated(dev, b, n, &mut rng), Mode::Train).unwrap();
        for mode in [Mode::Train, Mode::Eval] {
            let snapshot = running_layer(dev, n);
            let mut probe = snapshot;
            for (name, value) in w.buffers() {
                probe.set_buffer(&name, value).unwrap();
            }
            probe.forward(&x, mode).unwrap();
            let got = probe.backward(&c).unwrap();
            // B = N + 1 makes nearly singular batches, where a plain 1e-6 step loses digits
            // to rounding: over 4 000 random cases (B ∈ {6, 7, 10, 13}, N ≤ 5) a plain step
            // missed by up to 1.1e-4 (relative), this one by at most 4.9e-7.
            let fd = richardson_diff(&x, 3e-4, |xp| objective(&w, xp, &c, mode));
            assert_close(&format!("{mode:?} ∂/∂x"), &vals(&got), &fd, tol(dev, 1e-5), 1e-2);
        }
    });
    Ok(())
}

#[test]
fn running_statistics_follow_the_batches_and_round_trip() {
    let mut rng = Rng::new(5);
    let mut w = running_layer(&Device::Cpu, 4).with_momentum(1.0).unwrap();
    let x = correlated(&Device::Cpu, 64, 4, &mut rng);
    w.forward(&x, Mode::Train).unwrap();
    // With momentum 1 the running statistics are the last batch's, so Eval = Train.
    let train = w.forward(&x, Mode::Train).unwrap();
    let eval = w.forward(&x, Mode::Eval).unwrap();
    assert_close("eval = train", &vals(&eval), &vals(&train), 1e-9, 1e-9);
    let names: Vec<String> = w.buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["running_mean", "running_cov"]);
    let err = w
        .set_buffer("running_cov", randn(&[3, 3], &mut rng))
        .unwrap_err();
    assert!(matches!(err, NnError::TensorShape { .. }), "{err}");
    assert!(w.set_buffer("running_var", randn(&[4], &mut rng)).is_err());
}

#[test]
fn a_failed_factorisation_names_the_layer_and_pivot() {
    let mut rng = Rng::new(9);
    let mut w = running_layer(&Device::Cpu, 3);
    let mut cov = Array2::<f64>::eye(3);
    cov[[1, 1]] = -1.0;
    w.set_buffer("running_cov", Tensor::from_array(cov))
        .unwrap();
    let err = w
        .forward(&randn(&[4, 3], &mut rng), Mode::Eval)
        .unwrap_err();
    match &err {
        NnError::NotPositiveDefinite { layer, pivot } => {
            assert!(layer.contains("fc2"), "{err}");
            assert_eq!(*pivot, 1);
        }
        other => panic!("expected NotPositiveDefinite, got {other}"),
    }
    // NaN input: an error, never NaNs flowing on.
    let nan = Tensor::from_array(Array2::from_elem((5, 3), f64::NAN));
    assert!(w.forward(&nan, Mode::Train).is_err());
    assert!(Whitening::new("x", 0, 1e-5).is_err());
    assert!(Whitening::new("x", 3, 0.0).is_err());
    assert!(
        layer(&Device::Cpu, 3)
            .forward(&randn(&[1, 3], &mut rng), Mode::Train)
            .is_err()
    );
    assert!(
        layer(&Device::Cpu, 3)
            .forward(&randn(&[4, 2], &mut rng), Mode::Train)
            .is_err()
    );
}

fn a_whitened_network_backpropagates_through_the_inserted_layer(dev: &Device) -> Result<()> {
    let mut rng = Rng::new(2);
    let seq = Sequential::new()
        .with(Linear::new(4, 5, DType::F64, dev, &mut rng).unwrap())
        .with(Tanh::new())
        .with(Linear::new(5, 3, DType::F64, dev, &mut rng).unwrap());
    let mut net = Network::new(seq, vec![("h".into(), 1)], &[4]).unwrap();
    net.insert_after("h", Box::new(layer(dev, 5))).unwrap();
    let x = randn_on(dev, &[9, 4], &mut rng);
    let labels = [0, 1, 2, 0, 1, 2, 0, 1, 2];
    // Train mode uses batch statistics, so the loss is a function of x alone.
    let loss = |net: &mut Network, x: &Tensor| {
        let pass = net.forward(x, Mode::Train).unwrap();
        specreg_nn::loss::softmax_cross_entropy(&pass.logits, &labels)
            .unwrap()
            .0
            .to_scalar()
            .unwrap()
    };
    let pass = net.forward(&x, Mode::Train).unwrap();
    let (_, gz) = specreg_nn::loss::softmax_cross_entropy(&pass.logits, &labels).unwrap();
    let gx = net.backward(&gz, &[]).unwrap();
    let fd = central_diff(&x, 1e-6, |xp| loss(&mut net, xp));
    assert_close("∂L/∂x", &vals(&gx), &fd, tol(dev, 1e-5), 1e-2);
    // The whitening buffers are part of the state dict.
    let names: Vec<String> = net
        .sequential()
        .state_dict()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with("running_cov")),
        "{names:?}"
    );
    Ok(())
}
