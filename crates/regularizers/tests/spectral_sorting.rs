//! Sorted projected eigenvalues (the reference's per-batch step): value and gradient through
//! the sorting permutation against `f64` central differences, the unsorted path unchanged,
//! and the projected-vs-exact diagnostic comparing what the penalty used.

mod common;

use common::{
    assert_close, central_diff, covariance, penalty_with_kappa, randn, random_orthogonal, vals,
};
use ndarray::{Array1, Array2, s};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use specreg_nn::{Linear, Mode, Network, Sequential, Tanh, TrainHook};
use specreg_regularizers::{
    EigenMode, SpectralLayer, SpectralRegularizer, exact_penalty, projected_penalty,
    projected_penalty_sorted, spectral_penalty,
};
use specreg_tensor::{BinaryOp, DType, Device, Rng, Tensor, linalg::symmetric_eigen};

/// `v_nᵀ Σ v_n` for every column of `v` (naive, f64), in column order.
fn projected(h: &Tensor, v: &Array2<f64>) -> Vec<f64> {
    let (b, n) = h.dims2().unwrap();
    let c = covariance(&vals(h), b, n);
    (0..n)
        .map(|k| v.column(k).dot(&c.dot(&v.column(k))))
        .collect()
}

fn sorted_desc(mut l: Vec<f64>) -> Vec<f64> {
    l.sort_by(|a, b| b.total_cmp(a));
    l
}

/// The sorted projected objective with `κ` frozen.
fn sorted_reference(h: &Tensor, v: &Array2<f64>, kappa: f64, alpha: f64, tau: usize) -> f64 {
    penalty_with_kappa(&sorted_desc(projected(h, v)), kappa, alpha, tau)
}

fn scalar(t: &Tensor) -> f64 {
    t.to_scalar().unwrap()
}

/// A permutation held as whole numbers in a tensor.
fn order(t: &Tensor) -> Vec<usize> {
    vals(t).into_iter().map(|i| i as usize).collect()
}

fn is_descending(l: &[f64]) -> bool {
    l.windows(2).all(|w| w[0] >= w[1])
}

/// Checks value, eigenvalues, permutation and gradient of the sorted penalty at `h`.
fn check_sorted(h: &Tensor, v: &Array2<f64>, alpha: f64, tau: usize) {
    let got = projected_penalty_sorted(h, &Tensor::from_array(v.clone()), alpha, tau).unwrap();
    let columns = projected(h, v);
    let want = sorted_desc(columns.clone());
    let eigenvalues = vals(&got.eigenvalues);
    assert_close("sorted λ̂", &eigenvalues, &want, 1e-10, 1e-12);
    let permuted: Vec<f64> = order(&got.order).iter().map(|&j| columns[j]).collect();
    assert_close("λ̂ through the order", &permuted, &want, 1e-10, 1e-12);
    let kappa = eigenvalues[tau - 1] * (tau as f64).powf(alpha);
    assert_eq!(vals(&got.lambda_tau), [eigenvalues[tau - 1]]);
    let value = sorted_reference(h, v, kappa, alpha, tau);
    assert_close("sorted value", &[scalar(&got.value)], &[value], 1e-9, 1e-12);
    let fd = central_diff(h, 1e-6, |hp| sorted_reference(hp, v, kappa, alpha, tau));
    assert_close("sorted ∂R/∂H", &vals(&got.grad), &fd, 2e-5, 1e-3);
}

/// A fixed seed: the same cases every run, and no regression files.
fn config() -> Config {
    Config {
        cases: 24,
        rng_seed: RngSeed::Fixed(20201209),
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sorted_value_and_gradient_match_central_differences(
        seed in 0u64..10_000, b in 4usize..12, n in 3usize..8, alpha in 0.5f64..2.0,
    ) {
        let mut rng = Rng::new(seed);
        let tau = 1 + (seed as usize % (n - 1));
        let h = randn(&[b, n], &mut rng);
        let v = random_orthogonal(n, &mut rng);
        let sorted = sorted_desc(projected(&h, &v));
        // Away from ties (where the sort's derivative jumps) and from a vanishing anchor.
        prop_assume!(sorted.windows(2).all(|w| w[0] - w[1] > 1e-4));
        prop_assume!(sorted[tau - 1] > 1e-3);
        check_sorted(&h, &v, alpha, tau);
    }
}

#[test]
fn sorting_undoes_a_permutation_of_the_eigenvectors() {
    let mut rng = Rng::new(12);
    let (b, n) = (25, 6);
    let h = randn(&[b, n], &mut rng);
    // The batch's own eigenvectors with the columns reversed: the projected eigenvalues are
    // the exact ones in ascending order.
    let (_, v) = symmetric_eigen(covariance(&vals(&h), b, n).view()).unwrap();
    let reversed = v.slice(s![.., ..;-1]).to_owned();
    let vt = Tensor::from_array(reversed.clone());
    let unsorted = projected_penalty(&h, &vt, 1.0, 2).unwrap();
    assert!(
        !is_descending(&vals(&unsorted.eigenvalues)),
        "the order changes"
    );
    let sorted = projected_penalty_sorted(&h, &vt, 1.0, 2).unwrap();
    assert_eq!(order(&sorted.order), (0..n).rev().collect::<Vec<_>>());
    let exact = exact_penalty(&h, 1.0, 2).unwrap();
    assert_close(
        "λ",
        &vals(&sorted.eigenvalues),
        &vals(&exact.eigenvalues),
        1e-10,
        1e-12,
    );
    let (sv, ev, uv) = (
        scalar(&sorted.value),
        scalar(&exact.value),
        scalar(&unsorted.value),
    );
    assert_close("R", &[sv], &[ev], 1e-10, 1e-12);
    assert_close("∂R/∂H", &vals(&sorted.grad), &vals(&exact.grad), 1e-8, 1e-6);
    assert!((uv - sv).abs() > 1e-3 * sv);
    check_sorted(&h, &reversed, 1.0, 2);
    // A random rotation reorders the tail too; the gradient still matches.
    let w = random_orthogonal(n, &mut rng);
    let columns = projected(&h, &w);
    assert!(!is_descending(&columns), "{columns:?}");
    check_sorted(&h, &w, 1.3, 3);
}

/// The pre-sorting implementation of the projected penalty, step for step.
fn old_projected(h: &Tensor, v: &Tensor, alpha: f64, tau: usize) -> (f64, Vec<f64>, Tensor) {
    let hc = h.center_rows().unwrap();
    let b = hc.dims2().unwrap().0;
    let p = hc.matmul(v).unwrap();
    let scale = 1.0 / (b as f64 - 1.0);
    let lambda: Vec<f64> = vals(&p.sqr().unwrap().col_sums().unwrap())
        .into_iter()
        .map(|s| s * scale)
        .collect();
    let (value, dlambda) = spectral_penalty(&lambda, alpha, tau).unwrap();
    let w: Vec<f64> = dlambda.iter().map(|d| 2.0 * scale * d).collect();
    let w = Tensor::from_array(Array1::from(w));
    let grad = p
        .broadcast_along(&w, 1, BinaryOp::Mul)
        .unwrap()
        .matmul_nt(v)
        .unwrap();
    (value, lambda, grad)
}

fn tiny_net(rng: &mut Rng) -> Network {
    let dev = Device::Cpu;
    let seq = Sequential::new()
        .with(Linear::new(5, 7, DType::F64, &dev, rng).unwrap())
        .with(Tanh::new())
        .with(Linear::new(7, 3, DType::F64, &dev, rng).unwrap());
    Network::new(seq, vec![("h".into(), 1)], &[5]).unwrap()
}

fn relative_error(approx: &[f64], exact: &[f64]) -> f64 {
    let num: f64 = approx.iter().zip(exact).map(|(a, e)| (a - e).powi(2)).sum();
    let den: f64 = exact.iter().map(|e| e * e).sum();
    (num / den).sqrt()
}

#[test]
fn the_regularizer_sorts_by_default_and_the_diagnostic_compares_what_it_used() {
    let mut rng = Rng::new(11);
    let mut net = tiny_net(&mut rng);
    let images = Array2::from_shape_vec((40, 5), vals(&randn(&[40, 5], &mut rng)))
        .unwrap()
        .mapv(|v| v as f32);
    let layer = SpectralLayer {
        name: "h".into(),
        alpha: 1.0,
        tau: 2,
        beta: 2.5,
    };
    let mut on = SpectralRegularizer::new(vec![layer], EigenMode::Projected).unwrap();
    assert!(on.sort_projected());
    let mut off = on.clone().with_sort_projected(false);
    assert!(!off.sort_projected());
    // A batch unlike the refresh set (columns rescaled), so V no longer orders its
    // projected eigenvalues.
    let scales = Array1::from(vec![3.0, 0.2, 1.0, 2.0, 0.5]);
    let x = Tensor::from_array(images.slice(s![..12, ..]).mapv(f64::from) * &scales);
    let pass = net.forward(&x, Mode::Train).unwrap();
    let h = pass.get("h").unwrap();
    let exact = vals(&exact_penalty(h, 1.0, 2).unwrap().eigenvalues);
    let mut errors = Vec::new();
    for (spec, sort) in [(&mut on, true), (&mut off, false)] {
        spec.refresh(&mut net, images.view(), 16).unwrap();
        let v = spec.eigenvectors(0).unwrap().clone();
        let out = spec.regularize(&pass, &[]).unwrap();
        let values: Vec<f64> = out.scalars.iter().flat_map(vals).collect();
        spec.observe(&values).unwrap();
        let (total, inj) = (scalar(out.extra.as_ref().unwrap()), out.injections);
        let want = if sort {
            projected_penalty_sorted(h, &v, 1.0, 2).unwrap()
        } else {
            let (value, lambda, grad) = old_projected(h, &v, 1.0, 2);
            let free = projected_penalty(h, &v, 1.0, 2).unwrap();
            // Sorting off is the old implementation, bit for bit.
            assert_eq!(scalar(&free.value), value);
            assert_eq!(vals(&free.eigenvalues), lambda);
            assert_eq!(vals(&free.grad), vals(&grad));
            assert_eq!(order(&free.order), (0..7).collect::<Vec<_>>());
            assert!(
                !is_descending(&lambda[1..]),
                "the order changes in the tail"
            );
            free
        };
        assert_eq!(total, 2.5 * scalar(&want.value), "sort = {sort}");
        assert_eq!(vals(&inj[0].1), vals(&want.grad.scale(2.5).unwrap()));
        let e = spec.take_eigen_errors()[0].1;
        let expected = relative_error(&vals(&want.eigenvalues)[1..], &exact[1..]);
        assert!(
            (e - expected).abs() <= 1e-12 * expected,
            "sort = {sort}: {e} vs {expected}"
        );
        errors.push(e);
    }
    // Sorted projected eigenvalues are closer to the exact (sorted) ones.
    assert!(errors[0] < errors[1], "{errors:?}");
}
