//! Which statistics the whitening layer uses in each mode ([`WhiteningStatistics`]): batch
//! statistics in `Eval` (the reference) equal `Train` and have the `Train` gradient; running
//! statistics in `Eval` whiten with the running estimates through a cached factor; and
//! `BatchStatistics` mode updates nothing.

mod common;

use common::{
    assert_close, central_diff, fixed_cases, randn, randn_on, richardson_diff, tol, vals,
};
use ndarray::{Array1, Array2};
use proptest::prelude::*;
use specreg_nn::{Layer, Mode, NnError};
use specreg_regularizers::{RegularizerError, Whitening, WhiteningStatistics};
use specreg_tensor::{DType, Device, Result, Rng, Tensor, test_device};

const EPS: f64 = 1e-5;

/// Correlated rows with a non-zero mean (well conditioned): `Z (3I + R/(2√N)) + 1.5`.
fn correlated(dev: &Device, b: usize, n: usize, rng: &mut Rng) -> Tensor {
    let eye = Tensor::from_array(Array2::<f64>::eye(n))
        .to_device(dev)
        .unwrap();
    let a = randn_on(dev, &[n, n], rng)
        .scale(0.5 / (n as f64).sqrt())
        .unwrap()
        .add(&eye.scale(3.0).unwrap())
        .unwrap();
    randn_on(dev, &[b, n], rng)
        .matmul(&a)
        .unwrap()
        .add_scalar(1.5)
        .unwrap()
}

fn layer(dev: &Device, n: usize, statistics: WhiteningStatistics) -> Whitening {
    Whitening::new("fc2", n, EPS)
        .unwrap()
        .on(DType::F64, dev)
        .unwrap()
        .with_statistics(statistics)
}

fn array(t: &Tensor) -> Array2<f64> {
    let (b, n) = t.dims2().unwrap();
    Array2::from_shape_vec((b, n), vals(t)).unwrap()
}

/// `(x − μ) L⁻ᵀ` with `L L ᵀ = Σ + εI`, by a textbook Cholesky and forward substitution.
fn naive_whiten(x: &Array2<f64>, mu: &Array1<f64>, cov: &Array2<f64>) -> Array2<f64> {
    let n = mu.len();
    let mut l = Array2::<f64>::zeros((n, n));
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[[i, k]] * l[[j, k]]).sum();
            let a = cov[[i, j]] + if i == j { EPS } else { 0.0 };
            l[[i, j]] = if i == j {
                (a - s).sqrt()
            } else {
                (a - s) / l[[j, j]]
            };
        }
    }
    let mut y = x - mu;
    for mut row in y.rows_mut() {
        for i in 0..n {
            let s: f64 = (0..i).map(|k| l[[i, k]] * row[k]).sum();
            row[i] = (row[i] - s) / l[[i, i]];
        }
    }
    y
}

/// The buffers' values, for exact comparisons.
fn buffers(w: &Whitening) -> Vec<(String, Vec<f64>)> {
    w.buffers()
        .into_iter()
        .map(|(n, t)| (n, vals(&t)))
        .collect()
}

/// The output and input gradient (upstream `c`) of one forward and backward in `mode`.
fn run(w: &mut Whitening, x: &Tensor, c: &Tensor, mode: Mode) -> (Vec<f64>, Vec<f64>) {
    let y = w.forward(x, mode).unwrap();
    (vals(&y), vals(&w.backward(c).unwrap()))
}

#[test]
fn eval_with_batch_statistics_is_train_on_the_same_batch() {
    let mut rng = Rng::new(21);
    let (b, n) = (40, 5);
    let x = correlated(&Device::Cpu, b, n, &mut rng);
    let c = randn(&[b, n], &mut rng);
    let mut w = layer(&Device::Cpu, n, WhiteningStatistics::Batch);
    assert_eq!(w.statistics(), WhiteningStatistics::Batch);
    let initial = buffers(&w);
    let eval = run(&mut w, &x, &c, Mode::Eval);
    let train = run(&mut w, &x, &c, Mode::Train);
    let batch = run(&mut w, &x, &c, Mode::BatchStatistics);
    assert_eq!(eval, train);
    assert_eq!(batch, train);
    // Nothing is updated with batch statistics, Train included: still μ = 0, Σ = I.
    assert_eq!(buffers(&w), initial);
    // And Eval really whitens the batch.
    let y = w.forward(&x, Mode::Eval).unwrap();
    let cov = array(&y.covariance().unwrap());
    let dev = (&cov - &Array2::<f64>::eye(n))
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(dev < 1e-4, "max |cov − I| = {dev}");
    assert_eq!(WhiteningStatistics::default(), WhiteningStatistics::Batch);
}

test_device!(batch_statistics_gradients_match_central_differences);

/// The gradient through the batch mean, covariance and Cholesky factor in `Eval` mode
/// (batch statistics) and in `BatchStatistics` mode of a running-statistics layer.
fn batch_statistics_gradients_match_central_differences(dev: &Device) -> Result<()> {
    proptest!(fixed_cases(16, 20201208), |(seed in 0u64..10_000, b in 6usize..14, n in 2usize..6)| {
        let mut rng = Rng::new(seed);
        let x = correlated(dev, b, n, &mut rng);
        let c = randn_on(dev, &[b, n], &mut rng);
        let mut running = layer(dev, n, WhiteningStatistics::Running);
        running.forward(&correlated(dev, b, n, &mut rng), Mode::Train).unwrap();
        let moved = buffers(&running);
        let cases = [
            (layer(dev, n, WhiteningStatistics::Batch), Mode::Eval),
            (running, Mode::BatchStatistics),
        ];
        for (mut w, mode) in cases {
            w.forward(&x, mode).unwrap();
            let got = vals(&w.backward(&c).unwrap());
            // B = N + 1 makes nearly singular batches: a plain 1e-6 step loses digits.
            let fd = richardson_diff(&x, 1e-4, |xp| {
                w.forward(xp, mode).unwrap().mul(&c).unwrap().sum_all().unwrap()
            });
            assert_close(&format!("{mode:?} ∂/∂x"), &got, &fd, tol(dev, 1e-5), 1e-2);
            if mode == Mode::BatchStatistics {
                prop_assert_eq!(buffers(&w), moved.clone());
            }
        }
    });
    Ok(())
}

#[test]
fn running_eval_whitens_with_the_running_statistics_through_a_cached_factor() {
    let mut rng = Rng::new(8);
    let n = 4;
    let mut w = layer(&Device::Cpu, n, WhiteningStatistics::Running);
    let x1 = correlated(&Device::Cpu, 64, n, &mut rng);
    w.forward(&x1, Mode::Train).unwrap();
    // Momentum 0.1 from μ = 0, Σ = I.
    let x1a = array(&x1);
    let mean1 = x1a.mean_axis(ndarray::Axis(0)).unwrap();
    let cov1 = array(&x1.covariance().unwrap());
    let want_cov = Array2::<f64>::eye(n) * 0.9 + &cov1 * 0.1;
    let got_mean = w.running_mean().unwrap();
    let got_cov = w.running_cov().unwrap();
    assert_close(
        "running mean",
        got_mean.as_slice().unwrap(),
        (&mean1 * 0.1).as_slice().unwrap(),
        1e-12,
        1e-12,
    );
    assert_close(
        "running cov",
        got_cov.as_slice().unwrap(),
        want_cov.as_slice().unwrap(),
        1e-12,
        1e-12,
    );

    let probe = correlated(&Device::Cpu, 5, n, &mut rng);
    let check = |w: &mut Whitening, what: &str| {
        let (mu, cov) = (w.running_mean().unwrap(), w.running_cov().unwrap());
        let want = naive_whiten(&array(&probe), &mu, &cov);
        let first = vals(&w.forward(&probe, Mode::Eval).unwrap());
        assert_close(what, &first, want.as_slice().unwrap(), 1e-10, 1e-10);
        // The second batch reuses the cached factor: the same bits.
        assert_eq!(
            vals(&w.forward(&probe, Mode::Eval).unwrap()),
            first,
            "{what}"
        );
        // Each image on its own: one-sample batches are fine with running statistics.
        let one = Tensor::from_array(array(&probe).slice(ndarray::s![2..3, ..]).to_owned());
        let y1 = vals(&w.forward(&one, Mode::Eval).unwrap());
        assert_close(what, &y1, &first[2 * n..3 * n], 1e-12, 1e-12);
        // The affine gradient G L⁻¹: ⟨C, y⟩ is linear in x.
        let c = Tensor::from_array(Array2::from_elem((5, n), 0.5));
        w.forward(&probe, Mode::Eval).unwrap();
        let g = vals(&w.backward(&c).unwrap());
        let fd = central_diff(&probe, 1e-6, |xp| {
            w.forward(xp, Mode::Eval)
                .unwrap()
                .mul(&c)
                .unwrap()
                .sum_all()
                .unwrap()
        });
        assert_close(what, &g, &fd, 1e-6, 1e-2);
    };
    check(&mut w, "after one update");
    // A Train update drops the cached factor...
    w.forward(&correlated(&Device::Cpu, 32, n, &mut rng), Mode::Train)
        .unwrap();
    check(&mut w, "after a second update");
    // ... and so does a loaded buffer.
    let a = randn(&[n, n], &mut rng);
    let spd = array(&a.matmul_tn(&a).unwrap()) + Array2::<f64>::eye(n);
    w.set_buffer("running_cov", Tensor::from_array(spd))
        .unwrap();
    check(&mut w, "after set_buffer");
}

#[test]
fn batch_statistics_mode_updates_nothing() {
    let mut rng = Rng::new(13);
    let n = 3;
    let mut w = layer(&Device::Cpu, n, WhiteningStatistics::Running);
    w.forward(&correlated(&Device::Cpu, 30, n, &mut rng), Mode::Train)
        .unwrap();
    let before = buffers(&w);
    let probe = correlated(&Device::Cpu, 6, n, &mut rng);
    let eval_before = vals(&w.forward(&probe, Mode::Eval).unwrap());
    for b in [2, 7, 50] {
        let x = correlated(&Device::Cpu, b, n, &mut rng);
        let batch = vals(&w.forward(&x, Mode::BatchStatistics).unwrap());
        assert_eq!(buffers(&w), before, "B = {b}");
        // The same output as a training step on that batch (which does update).
        let mut twin = layer(&Device::Cpu, n, WhiteningStatistics::Running);
        assert_eq!(vals(&twin.forward(&x, Mode::Train).unwrap()), batch);
        assert_ne!(
            buffers(&twin),
            buffers(&layer(&Device::Cpu, n, WhiteningStatistics::Running))
        );
    }
    assert_eq!(vals(&w.forward(&probe, Mode::Eval).unwrap()), eval_before);
    // With batch statistics even Train leaves the buffers at their initial values.
    let mut batch = layer(&Device::Cpu, n, WhiteningStatistics::Batch);
    let initial = buffers(&batch);
    for _ in 0..3 {
        batch
            .forward(&correlated(&Device::Cpu, 20, n, &mut rng), Mode::Train)
            .unwrap();
    }
    assert_eq!(buffers(&batch), initial);
}

#[test]
fn checkpoint_buffers_round_trip_between_settings() {
    let mut rng = Rng::new(4);
    let n = 4;
    let mut trained = layer(&Device::Cpu, n, WhiteningStatistics::Running);
    trained
        .forward(&correlated(&Device::Cpu, 40, n, &mut rng), Mode::Train)
        .unwrap();
    let saved = trained.buffers();
    let names: Vec<&str> = saved.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["running_mean", "running_cov"]);
    // An old checkpoint (running_mean, running_cov) loads into a batch-statistics layer.
    let mut fresh = layer(&Device::Cpu, n, WhiteningStatistics::Batch);
    for (name, value) in &saved {
        fresh.set_buffer(name, value.clone()).unwrap();
    }
    assert_eq!(buffers(&fresh), buffers(&trained));
    let x = correlated(&Device::Cpu, 12, n, &mut rng);
    let batch_eval = vals(&fresh.forward(&x, Mode::Eval).unwrap());
    assert_eq!(batch_eval, vals(&fresh.forward(&x, Mode::Train).unwrap()));
    // Switched to running statistics, it evaluates exactly as the trained layer.
    let mut running = fresh.with_statistics(WhiteningStatistics::Running);
    assert_eq!(
        vals(&running.forward(&x, Mode::Eval).unwrap()),
        vals(&trained.forward(&x, Mode::Eval).unwrap())
    );
    assert_ne!(
        batch_eval,
        vals(&running.forward(&x, Mode::Eval).unwrap()),
        "the two settings differ in Eval"
    );
}

#[test]
fn batch_sizes_are_checked_and_name_the_layer() {
    let mut rng = Rng::new(6);
    let n = 5;
    let w = layer(&Device::Cpu, n, WhiteningStatistics::Batch);
    assert_eq!(w.width(), n);
    assert_eq!(w.min_batch(), n + 1);
    assert!(w.check_batch_size(n + 1).is_ok() && w.check_batch_size(3000).is_ok());
    match w.check_batch_size(n).unwrap_err() {
        RegularizerError::TooFewSamples { what, needed, got } => {
            assert!(what.contains("fc2"), "{what}");
            assert_eq!((needed, got), (6, 5));
        }
        other => panic!("expected TooFewSamples, got {other}"),
    }
    let one = correlated(&Device::Cpu, 1, n, &mut rng);
    for (statistics, mode) in [
        (WhiteningStatistics::Batch, Mode::Eval),
        (WhiteningStatistics::Batch, Mode::Train),
        (WhiteningStatistics::Running, Mode::BatchStatistics),
        (WhiteningStatistics::Running, Mode::Train),
    ] {
        let err = layer(&Device::Cpu, n, statistics)
            .forward(&one, mode)
            .unwrap_err();
        match &err {
            NnError::InvalidArgument { what, reason } => {
                assert!(what.contains("fc2") && reason.contains("got 1"), "{err}");
            }
            other => panic!("{statistics:?} {mode:?}: expected InvalidArgument, got {other}"),
        }
    }
    assert!(
        layer(&Device::Cpu, n, WhiteningStatistics::Running)
            .forward(&one, Mode::Eval)
            .is_ok()
    );
    // A rank-deficient batch (B ≤ N) is accepted: εI keeps the factorisation alive.
    let small = correlated(&Device::Cpu, 3, n, &mut rng);
    let y = layer(&Device::Cpu, n, WhiteningStatistics::Batch)
        .forward(&small, Mode::Eval)
        .unwrap();
    assert!(vals(&y).iter().all(|v| v.is_finite()));
}

/// `mixes_samples` says what the forward pass does: with batch statistics, changing the
/// other rows of a batch changes row 0's output; with running statistics in `Eval` mode it
/// does not. A network holding the layer reports the same through `samples_independent`.
#[test]
fn mixes_samples_matches_whether_other_rows_move_a_rows_output() {
    let dev = Device::Cpu;
    let mut rng = Rng::new(31);
    let (b, n) = (12, 4);
    let x = correlated(&dev, b, n, &mut rng);
    let moved = {
        let mut v = vals(&x);
        for e in v.iter_mut().skip(n) {
            *e = 2.0 * *e - 0.5;
        }
        Tensor::from_array(Array2::from_shape_vec((b, n), v).unwrap())
    };
    for statistics in [WhiteningStatistics::Batch, WhiteningStatistics::Running] {
        for mode in [Mode::Train, Mode::Eval, Mode::BatchStatistics] {
            let mut w = layer(&dev, n, statistics);
            let mixes = w.mixes_samples(mode);
            let expected = statistics == WhiteningStatistics::Batch || mode != Mode::Eval;
            assert_eq!(mixes, expected, "{statistics:?} {mode:?}");
            let row0 =
                |w: &mut Whitening, x: &Tensor| vals(&w.forward(x, mode).unwrap())[..n].to_vec();
            let (a, c) = (row0(&mut w, &x), row0(&mut w, &moved));
            let differs = a.iter().zip(&c).any(|(u, v)| (u - v).abs() > 1e-9);
            assert_eq!(differs, mixes, "{statistics:?} {mode:?}: {a:?} vs {c:?}");
        }
    }
    for (statistics, independent_in_eval) in [
        (WhiteningStatistics::Batch, false),
        (WhiteningStatistics::Running, true),
    ] {
        let mut net_rng = Rng::new(2);
        let seq = specreg_nn::Sequential::new()
            .with(specreg_nn::Linear::new(n, n, DType::F64, &dev, &mut net_rng).unwrap())
            .with(specreg_nn::Tanh::new())
            .with(specreg_nn::Linear::new(n, 2, DType::F64, &dev, &mut net_rng).unwrap());
        let mut net = specreg_nn::Network::new(seq, vec![("fc1".into(), 1)], &[n]).unwrap();
        assert!(net.samples_independent(Mode::Eval));
        assert!(net.samples_independent(Mode::BatchStatistics));
        net.insert_after("fc1", Box::new(layer(&dev, n, statistics)))
            .unwrap();
        assert_eq!(net.samples_independent(Mode::Eval), independent_in_eval);
        assert!(!net.samples_independent(Mode::BatchStatistics));
    }
}
