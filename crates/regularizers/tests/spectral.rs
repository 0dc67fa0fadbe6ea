//! The spectral regulariser (eq. 2): closed forms, and value and gradient against `f64`
//! central differences in both modes, with `κ` held fixed as the method prescribes.

mod common;

use common::{
    assert_close, central_diff, covariance, fixed_cases, penalty_with_kappa, randn, randn_on,
    random_orthogonal, tensor, tol, vals,
};
use ndarray::Array2;
use proptest::prelude::*;
use specreg_nn::{ForwardPass, Linear, Mode, Network, Sequential, Tanh, TrainHook};
use specreg_regularizers::{
    EigenMode, RegularizerError, SpectralLayer, SpectralRegularizer, check_alpha_schedule,
    exact_penalty, projected_penalty, spectral_penalty,
};
use specreg_tensor::{DType, Device, Result, Rng, Tensor, linalg::symmetric_eigen, test_device};

test_device!(
    projected_value_and_gradient_match_central_differences,
    exact_value_and_gradient_match_central_differences,
    exact_mode_handles_repeated_eigenvalues
);

fn kappa_of(lambda: &Tensor, alpha: f64, tau: usize) -> f64 {
    vals(lambda)[tau - 1] * (tau as f64).powf(alpha)
}

fn scalar(t: &Tensor) -> f64 {
    t.to_scalar().unwrap()
}

/// The hook as the training loop runs it: the extra loss and the injections, with the
/// scalars read and handed to `observe`.
fn run_hook(spec: &mut SpectralRegularizer, pass: &ForwardPass) -> (f64, Vec<(String, Tensor)>) {
    let out = spec.regularize(pass, &[]).unwrap();
    let values: Vec<f64> = out.scalars.iter().flat_map(vals).collect();
    spec.observe(&values).unwrap();
    (scalar(out.extra.as_ref().unwrap()), out.injections)
}

/// Exact mode's objective with `κ` frozen, by a naive f64 eigendecomposition.
fn exact_reference(h: &Tensor, kappa: f64, alpha: f64, tau: usize) -> f64 {
    let (b, n) = h.dims2().unwrap();
    let (lambda, _) = symmetric_eigen(covariance(&vals(h), b, n).view()).unwrap();
    penalty_with_kappa(lambda.as_slice().unwrap(), kappa, alpha, tau)
}

/// Projected mode's objective with `κ` frozen: `λ̂_n = v_nᵀ Σ v_n`.
fn projected_reference(h: &Tensor, v: &Array2<f64>, kappa: f64, alpha: f64, tau: usize) -> f64 {
    let (b, n) = h.dims2().unwrap();
    let c = covariance(&vals(h), b, n);
    let lambda: Vec<f64> = (0..n)
        .map(|k| v.column(k).dot(&c.dot(&v.column(k))))
        .collect();
    penalty_with_kappa(&lambda, kappa, alpha, tau)
}

#[test]
fn a_spectrum_exactly_on_the_power_law_costs_nothing() {
    for alpha in [0.5, 1.0, 2.0] {
        let lambda: Vec<f64> = (1..=50).map(|n| 3.0 * (n as f64).powf(-alpha)).collect();
        let (value, _) = spectral_penalty(&lambda, alpha, 10).unwrap();
        assert!(value.abs() < 1e-14, "α = {alpha}: value {value}");
        // Just below the law the hinge is off and the gradient 2r/γ/N vanishes with r (on
        // the law itself the hinge's kink makes rounding decide the one-sided slope).
        let below: Vec<f64> = lambda
            .iter()
            .enumerate()
            .map(|(i, l)| if i == 9 { *l } else { l * (1.0 - 1e-9) })
            .collect();
        let (value, grad) = spectral_penalty(&below, alpha, 10).unwrap();
        assert!(value.abs() < 1e-16, "α = {alpha}: value {value}");
        assert!(grad.iter().all(|g| g.abs() < 1e-6), "α = {alpha}: {grad:?}");
    }
}

#[test]
fn the_penalty_punishes_excess_variance_more_than_a_deficit() {
    // λ = 1/n except one eigenvalue 50% above or below its target.
    let base: Vec<f64> = (1..=40).map(|n| 1.0 / n as f64).collect();
    let mut above = base.clone();
    above[19] *= 1.5;
    let mut below = base.clone();
    below[19] *= 0.5;
    let (va, ga) = spectral_penalty(&above, 1.0, 10).unwrap();
    let (vb, gb) = spectral_penalty(&below, 1.0, 10).unwrap();
    // r = ±0.5: (0.25 + 0.5)/40 above, 0.25/40 below.
    assert!((va - 0.75 / 40.0).abs() < 1e-14, "{va}");
    assert!((vb - 0.25 / 40.0).abs() < 1e-14, "{vb}");
    // ∂/∂λ_20 = (2r + [r > 0]) · 20 / 40 with κ = 1.
    assert!((ga[19] - 2.0 * 20.0 / 40.0).abs() < 1e-12, "{}", ga[19]);
    assert!((gb[19] + 1.0 * 20.0 / 40.0).abs() < 1e-12, "{}", gb[19]);
    assert!(
        ga.iter().take(10).all(|g| *g == 0.0),
        "ranks ≤ τ carry no gradient"
    );
}

#[test]
fn penalty_arguments_are_checked() {
    let lambda = [3.0, 2.0, 1.0, 0.0, 0.0];
    assert!(spectral_penalty(&lambda, 1.0, 5).is_err(), "τ = N");
    assert!(spectral_penalty(&lambda, 1.0, 0).is_err(), "τ = 0");
    let err = spectral_penalty(&lambda, 1.0, 4).unwrap_err();
    assert!(
        matches!(err, RegularizerError::RankBelowTau { tau: 4, lambda_tau, .. } if lambda_tau == 0.0),
        "{err}"
    );
    assert!(err.to_string().contains("rank below τ"), "{err}");
    assert!(SpectralRegularizer::new(vec![], EigenMode::Exact).is_err());
    for (alpha, tau, beta) in [
        (0.0, 10, 1.0),
        (1.0, 0, 1.0),
        (1.0, 10, -1.0),
        (f64::NAN, 10, 1.0),
    ] {
        let layer = SpectralLayer {
            name: "fc1".into(),
            alpha,
            tau,
            beta,
        };
        let err = SpectralRegularizer::new(vec![layer], EigenMode::Exact).unwrap_err();
        assert!(err.to_string().contains("fc1"), "{err}");
    }
    let twice = vec![
        SpectralLayer::new("fc1", 1.0),
        SpectralLayer::new("fc1", 2.0),
    ];
    assert!(SpectralRegularizer::new(twice, EigenMode::Exact).is_err());
}

#[test]
fn alpha_schedules_must_fall_to_one() {
    assert!(check_alpha_schedule(&[2.0, 1.5, 1.0]).is_ok());
    assert!(check_alpha_schedule(&[1.0]).is_ok());
    assert!(check_alpha_schedule(&[1.0, 1.0, 1.0]).is_ok());
    for bad in [
        &[][..],
        &[1.0, 1.5][..],
        &[2.0, 1.2][..],
        &[2.0, -1.0, 1.0][..],
    ] {
        assert!(check_alpha_schedule(bad).is_err(), "{bad:?}");
    }
}

fn check_exact(h: &Tensor, alpha: f64, tau: usize) {
    let dev = h.device();
    let got = exact_penalty(h, alpha, tau).unwrap();
    let kappa = kappa_of(&got.eigenvalues, alpha, tau);
    let want = exact_reference(h, kappa, alpha, tau);
    let value = scalar(&got.value);
    assert_close("exact value", &[value], &[want], tol(&dev, 1e-9), 1e-12);
    let fd = central_diff(h, 1e-6, |hp| exact_reference(hp, kappa, alpha, tau));
    assert_close("exact ∂R/∂H", &vals(&got.grad), &fd, tol(&dev, 2e-5), 1e-3);
}

fn projected_value_and_gradient_match_central_differences(dev: &Device) -> Result<()> {
    proptest!(fixed_cases(24, 20201211), |(seed in 0u64..10_000, b in 4usize..12, n in 3usize..8, alpha in 0.5f64..2.0)| {
        let mut rng = Rng::new(seed);
        let tau = 1 + (seed as usize % (n - 1));
        let h = randn_on(dev, &[b, n], &mut rng);
        let v = random_orthogonal(n, &mut rng);
        let vt = Tensor::from_array(v.clone()).to_device(dev).unwrap();
        let got = projected_penalty(&h, &vt, alpha, tau).unwrap();
        let kappa = kappa_of(&got.eigenvalues, alpha, tau);
        prop_assume!(kappa > 1e-3);
        let want = projected_reference(&h, &v, kappa, alpha, tau);
        assert_close("projected value", &[scalar(&got.value)], &[want], tol(dev, 1e-9), 1e-12);
        let fd = central_diff(&h, 1e-6, |hp| projected_reference(hp, &v, kappa, alpha, tau));
        assert_close("projected ∂R/∂H", &vals(&got.grad), &fd, tol(dev, 2e-5), 1e-3);
    });
    Ok(())
}

fn exact_value_and_gradient_match_central_differences(dev: &Device) -> Result<()> {
    proptest!(fixed_cases(24, 20201211), |(seed in 0u64..10_000, b in 8usize..14, n in 3usize..7, alpha in 0.5f64..2.0)| {
        let mut rng = Rng::new(seed);
        let tau = 1 + (seed as usize % (n - 1));
        check_exact(&randn_on(dev, &[b, n], &mut rng), alpha, tau);
    });
    Ok(())
}

/// `H = U diag(s) Wᵀ` plus a constant row offset: a batch with chosen singular values.
fn batch_with_singular_values(dev: &Device, b: usize, s: &[f64], rng: &mut Rng) -> Tensor {
    let n = s.len();
    // Orthonormal columns of length b, orthogonal to the all-ones vector (so centring keeps
    // the singular values).
    let mut cols: Vec<Vec<f64>> = vec![vec![1.0 / (b as f64).sqrt(); b]];
    while cols.len() <= n {
        let mut c = vals(&randn(&[b], rng));
        for q in &cols {
            let d: f64 = c.iter().zip(q).map(|(a, b)| a * b).sum();
            c.iter_mut().zip(q).for_each(|(a, b)| *a -= d * b);
        }
        let norm = c.iter().map(|a| a * a).sum::<f64>().sqrt();
        c.iter_mut().for_each(|a| *a /= norm);
        cols.push(c);
    }
    let w = random_orthogonal(n, rng);
    let mut h = Array2::<f64>::from_elem((b, n), 0.7);
    for (k, &sk) in s.iter().enumerate() {
        for i in 0..b {
            for j in 0..n {
                h[[i, j]] += sk * cols[k + 1][i] * w[[j, k]];
            }
        }
    }
    Tensor::from_array(h).to_device(dev).unwrap()
}

fn exact_mode_handles_repeated_eigenvalues(dev: &Device) -> Result<()> {
    let mut rng = Rng::new(7);
    // A triple eigenvalue at the top (ranks below τ) and a nondegenerate tail.
    let h =
        batch_with_singular_values(dev, 12, &[3.0, 3.0, 3.0, 2.0, 1.5, 1.0, 0.7, 0.5], &mut rng);
    let got = vals(&exact_penalty(&h, 1.0, 4).unwrap().eigenvalues);
    assert!((got[0] - got[2]).abs() < tol(dev, 1e-9) * got[0]);
    check_exact(&h, 1.0, 4);
    // A rank-deficient batch (B ≤ N): a cluster of zero eigenvalues in the penalised tail,
    // where the eigenvectors are arbitrary but the gradient is still well defined.
    let h = batch_with_singular_values(dev, 6, &[2.0, 1.2, 0.9, 0.6, 0.4, 0.0, 0.0, 0.0], &mut rng);
    let got = vals(&exact_penalty(&h, 1.0, 2).unwrap().eigenvalues);
    assert!(
        got[5..].iter().all(|l| l.abs() < tol(dev, 1e-12)),
        "{got:?}"
    );
    check_exact(&h, 1.0, 2);
    Ok(())
}

#[test]
fn projected_mode_with_the_batch_eigenvectors_is_exact_mode() {
    let mut rng = Rng::new(3);
    let h = randn(&[20, 6], &mut rng);
    let exact = exact_penalty(&h, 1.0, 2).unwrap();
    let c = covariance(&vals(&h), 20, 6);
    let v = Tensor::from_array(symmetric_eigen(c.view()).unwrap().1);
    let proj = projected_penalty(&h, &v, 1.0, 2).unwrap();
    assert_close(
        "value",
        &[scalar(&proj.value)],
        &[scalar(&exact.value)],
        1e-10,
        1e-12,
    );
    assert_close(
        "eigenvalues",
        &vals(&proj.eigenvalues),
        &vals(&exact.eigenvalues),
        1e-10,
        1e-12,
    );
    assert_close("grad", &vals(&proj.grad), &vals(&exact.grad), 1e-8, 1e-6);
}

fn tiny_net(rng: &mut Rng) -> Network {
    let dev = Device::Cpu;
    let seq = Sequential::new()
        .with(Linear::new(5, 7, DType::F64, &dev, rng).unwrap())
        .with(Tanh::new())
        .with(Linear::new(7, 3, DType::F64, &dev, rng).unwrap());
    Network::new(seq, vec![("h".into(), 1)], &[5]).unwrap()
}

#[test]
fn the_regularizer_hooks_weighted_penalties_and_measures_the_projection_error() {
    let mut rng = Rng::new(11);
    let mut net = tiny_net(&mut rng);
    let images = ndarray::Array2::from_shape_vec((40, 5), vals(&randn(&[40, 5], &mut rng)))
        .unwrap()
        .mapv(|v| v as f32);
    let layer = SpectralLayer {
        name: "h".into(),
        alpha: 1.0,
        tau: 2,
        beta: 2.5,
    };
    let mut spec = SpectralRegularizer::new(vec![layer.clone()], EigenMode::Projected).unwrap();
    let x = Tensor::from_array(images.clone())
        .to_dtype(DType::F64)
        .unwrap();
    let pass = net.forward(&x, Mode::Train).unwrap();
    let err = spec.regularize(&pass, &[]).unwrap_err();
    assert!(
        matches!(&err, specreg_nn::NnError::Hook(e)
            if matches!(e.downcast_ref(), Some(RegularizerError::RefreshRequired { layer }) if layer == "h")),
        "{err}"
    );

    // Eigenvectors over the same 40 images: the whole data set is the batch, so the
    // projected eigenvalues are the exact ones and the diagnostic reads ~0.
    spec.refresh(&mut net, images.view(), 16).unwrap();
    let (total, inj) = run_hook(&mut spec, &pass);
    let h = pass.get("h").unwrap();
    let exact = exact_penalty(h, 1.0, 2).unwrap();
    assert_close("β R", &[total], &[2.5 * scalar(&exact.value)], 1e-8, 1e-12);
    assert_eq!(inj.len(), 1);
    assert_close(
        "β ∂R/∂H",
        &vals(&inj[0].1),
        &vals(&exact.grad.scale(2.5).unwrap()),
        1e-6,
        1e-6,
    );
    let errors = spec.take_eigen_errors();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].1 < 1e-6, "{errors:?}");
    assert!(
        spec.take_eigen_errors().is_empty(),
        "measured once per refresh"
    );
    let terms = spec.take_epoch_terms();
    assert_close(
        "epoch term",
        &[terms[0].1],
        &[scalar(&exact.value)],
        1e-8,
        1e-12,
    );

    // A different batch: the fixed eigenvectors no longer diagonalise its covariance.
    spec.refresh(&mut net, images.view(), 16).unwrap();
    let x2 = Tensor::from_array(images.slice(ndarray::s![..12, ..]).to_owned())
        .to_dtype(DType::F64)
        .unwrap();
    let pass2 = net.forward(&x2, Mode::Train).unwrap();
    run_hook(&mut spec, &pass2);
    let e = spec.take_eigen_errors()[0].1;
    assert!(e > 1e-4 && e.is_finite(), "{e}");

    // τ must be below the width, named in the error.
    let wide = SpectralLayer {
        name: "h".into(),
        alpha: 1.0,
        tau: 7,
        beta: 1.0,
    };
    let mut bad = SpectralRegularizer::new(vec![wide], EigenMode::Exact).unwrap();
    let err = bad.regularize(&pass, &[]).unwrap_err().to_string();
    assert!(err.contains("tau (7)") && err.contains("h"), "{err}");
    let mut missing =
        SpectralRegularizer::new(vec![SpectralLayer::new("fc9", 1.0)], EigenMode::Exact).unwrap();
    let err = missing.regularize(&pass, &[]).unwrap_err().to_string();
    assert!(err.contains("fc9"), "{err}");
    let _ = tensor(vec![0.0], &[1]);
}

/// One epoch of one batch over `images` with `spec`, the error it stops with, and whether
/// the parameters are unchanged.
fn failing_epoch(
    net: &mut Network,
    spec: &mut SpectralRegularizer,
    images: &ndarray::Array2<f32>,
) -> (specreg_nn::NnError, bool) {
    let labels: Vec<u8> = (0..images.nrows()).map(|i| (i % 3) as u8).collect();
    let before: Vec<Vec<f64>> = net.params().iter().map(|p| vals(&p.value)).collect();
    let mut adam = specreg_nn::Adam::new(specreg_nn::AdamConfig::new(1e-2)).unwrap();
    let batches = vec![(0..images.nrows()).collect::<Vec<_>>()];
    let err = specreg_nn::train_epoch(net, &mut adam, images.view(), &labels, &batches, 0, spec)
        .unwrap_err();
    let after: Vec<Vec<f64>> = net.params().iter().map(|p| vals(&p.value)).collect();
    (err, before == after && adam.steps_taken() == 0)
}

#[test]
fn rank_below_tau_and_nan_representations_stop_training_with_their_own_errors() {
    let mut rng = Rng::new(17);
    let images = ndarray::Array2::from_shape_vec((20, 5), vals(&randn(&[20, 5], &mut rng)))
        .unwrap()
        .mapv(|v| v as f32);
    let layer = SpectralLayer {
        tau: 2,
        ..SpectralLayer::new("h", 1.0)
    };
    // A zero representation (zero weights and biases): every eigenvalue is 0, so λ_τ = 0.
    for mode in [EigenMode::Projected, EigenMode::Exact] {
        let mut net = tiny_net(&mut rng);
        net.params_mut()[0].value = Tensor::zeros(&[7, 5], DType::F64, &Device::Cpu).unwrap();
        net.params_mut()[1].value = Tensor::zeros(&[7], DType::F64, &Device::Cpu).unwrap();
        let mut spec = SpectralRegularizer::new(vec![layer.clone()], mode).unwrap();
        spec.refresh(&mut net, images.view(), 20).unwrap();
        let (err, untouched) = failing_epoch(&mut net, &mut spec, &images);
        let specreg_nn::NnError::Hook(inner) = err.innermost() else {
            panic!("{mode:?}: not a hook error: {err}");
        };
        assert!(
            matches!(
                inner.downcast_ref::<RegularizerError>(),
                Some(RegularizerError::RankBelowTau { layer, tau: 2, lambda_tau })
                    if layer == "h" && *lambda_tau == 0.0
            ),
            "{mode:?}: {err}"
        );
        assert!(untouched, "{mode:?}: no step after the error");
    }
    // NaN inputs: the guard traces the non-finite representation back to the input
    // itself, before any step.
    let mut net = tiny_net(&mut rng);
    let mut spec = SpectralRegularizer::new(vec![layer], EigenMode::Projected).unwrap();
    spec.refresh(&mut net, images.view(), 20).unwrap();
    let mut bad = images.clone();
    bad[[3, 1]] = f32::NAN;
    let (err, untouched) = failing_epoch(&mut net, &mut spec, &bad);
    assert!(
        matches!(
            &err,
            specreg_nn::NnError::NonFinite {
                epoch: 0,
                batch: 0,
                step: 0,
                quantity: specreg_nn::NonFiniteQuantity::Input { count: 1, of: 100 },
                ..
            }
        ),
        "{err}"
    );
    assert!(untouched);
}
