//! The device-side penalties, covariance accumulation and diagnostic against the host
//! implementations they replaced, bit for bit: the same floating-point operations in the
//! same order, so CPU results did not change.

mod common;

use common::{randn, random_orthogonal, vals};
use ndarray::{Array1, Array2, Axis};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use specreg_nn::{Linear, Mode, Network, Sequential, Tanh, TrainHook};
use specreg_regularizers::{
    CovarianceAccumulator, EigenMode, SpectralLayer, SpectralRegularizer, SpectralValue,
    exact_penalty, projected_penalty, projected_penalty_sorted, spectral_penalty,
    spectral_penalty_tensor,
};
use specreg_tensor::{BinaryOp, DType, Device, Rng, Tensor};

fn config() -> Config {
    Config {
        cases: 32,
        rng_seed: RngSeed::Fixed(20201212),
        failure_persistence: None,
        ..Config::default()
    }
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn tensor_bits(t: &Tensor) -> Vec<u64> {
    bits(&vals(t))
}

/// The host path the projected and exact penalties took before they moved to the device:
/// value, eigenvalues in the order used, that order, and `∂R/∂H`.
fn host_value_grad(
    hc: &Tensor,
    v: &Tensor,
    lambda: Option<Vec<f64>>,
    alpha: f64,
    tau: usize,
    sort: bool,
) -> (f64, Vec<f64>, Vec<usize>, Tensor) {
    let (b, n) = hc.dims2().unwrap();
    let p = hc.matmul(v).unwrap();
    let scale = 1.0 / (b as f64 - 1.0);
    let (lambda, order): (Vec<f64>, Vec<usize>) = match lambda {
        Some(l) => (l, (0..n).collect()),
        None => {
            let columns: Vec<f64> = vals(&p.sqr().unwrap().col_sums().unwrap())
                .into_iter()
                .map(|s| s * scale)
                .collect();
            if sort {
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by(|&a, &b| columns[b].total_cmp(&columns[a]));
                (order.iter().map(|&j| columns[j]).collect(), order)
            } else {
                (columns, (0..n).collect())
            }
        }
    };
    let (value, dranked) = spectral_penalty(&lambda, alpha, tau).unwrap();
    let mut dcolumn = vec![0.0; n];
    for (&j, d) in order.iter().zip(&dranked) {
        dcolumn[j] = 2.0 * scale * d;
    }
    let w = Tensor::from_array(Array1::from(dcolumn))
        .to_dtype(hc.dtype())
        .unwrap();
    let grad = p
        .broadcast_along(&w, 1, BinaryOp::Mul)
        .unwrap()
        .matmul_nt(v)
        .unwrap();
    (value, lambda, order, grad)
}

fn assert_same(what: &str, got: &SpectralValue, want: &(f64, Vec<f64>, Vec<usize>, Tensor)) {
    assert_eq!(
        got.value.to_scalar().unwrap().to_bits(),
        want.0.to_bits(),
        "{what}: R"
    );
    assert_eq!(tensor_bits(&got.eigenvalues), bits(&want.1), "{what}: λ");
    let order: Vec<usize> = vals(&got.order).iter().map(|&i| i as usize).collect();
    assert_eq!(order, want.2, "{what}: order");
    assert_eq!(
        tensor_bits(&got.grad),
        tensor_bits(&want.3),
        "{what}: ∂R/∂H"
    );
    assert_eq!(got.grad.dtype(), want.3.dtype());
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_device_penalty_is_the_host_reference(
        seed in 0u64..10_000, n in 3usize..40, alpha in 0.3f64..2.5, sorted in any::<bool>(),
    ) {
        let mut rng = Rng::new(seed);
        let tau = 1 + (seed as usize % (n - 1));
        let mut lambda: Vec<f64> = (0..n).map(|_| rng.uniform(0.01, 3.0)).collect();
        if sorted {
            lambda.sort_by(|a, b| b.total_cmp(a));
        }
        let (value, grad) = spectral_penalty(&lambda, alpha, tau).unwrap();
        let t = Tensor::from_vec(lambda.clone(), &[n], &Device::Cpu).unwrap();
        let (v, g, lt) = spectral_penalty_tensor(&t, alpha, tau).unwrap();
        prop_assert_eq!(v.to_scalar().unwrap().to_bits(), value.to_bits());
        prop_assert_eq!(tensor_bits(&g), bits(&grad));
        prop_assert_eq!(vals(&lt), vec![lambda[tau - 1]]);
    }

    #[test]
    fn projected_and_exact_penalties_are_the_host_path(
        seed in 0u64..10_000, b in 6usize..20, n in 3usize..9, f32_input in any::<bool>(),
    ) {
        let mut rng = Rng::new(seed);
        let tau = 1 + (seed as usize % (n - 1));
        let dtype = if f32_input { DType::F32 } else { DType::F64 };
        let h = randn(&[b, n], &mut rng).to_dtype(dtype).unwrap();
        let v = Tensor::from_array(random_orthogonal(n, &mut rng)).to_dtype(dtype).unwrap();
        let hc = h.center_rows().unwrap();
        assert_same(
            "sorted",
            &projected_penalty_sorted(&h, &v, 1.0, tau).unwrap(),
            &host_value_grad(&hc, &v, None, 1.0, tau, true),
        );
        assert_same(
            "unsorted",
            &projected_penalty(&h, &v, 1.3, tau).unwrap(),
            &host_value_grad(&hc, &v, None, 1.3, tau, false),
        );
        let sigma = hc.gram().unwrap().scale(1.0 / (b as f64 - 1.0)).unwrap();
        let (lambda, ve) = sigma.symmetric_eigen().unwrap();
        let lambda = vals(&lambda);
        assert_same(
            "exact",
            &exact_penalty(&h, 0.8, tau).unwrap(),
            &host_value_grad(&hc, &ve, Some(lambda), 0.8, tau, false),
        );
    }
}

/// The accumulator as it was: shift by the first chunk's mean, Gram and sums read back
/// and added on the host in `f64`.
fn host_covariance(chunks: &[Tensor]) -> (Array2<f64>, Array1<f64>) {
    let n = chunks[0].shape()[1];
    let shift = chunks[0].col_means().unwrap();
    let shift_f64 = Array1::from(vals(&shift));
    let (mut gram, mut sum, mut count) = (Array2::<f64>::zeros((n, n)), Array1::zeros(n), 0);
    for h in chunks {
        let hs = h.broadcast_along(&shift, 1, BinaryOp::Sub).unwrap();
        gram += &Array2::from_shape_vec((n, n), vals(&hs.gram().unwrap())).unwrap();
        sum += &Array1::from(vals(&hs.col_sums().unwrap()));
        count += h.shape()[0];
    }
    let m = count as f64;
    let mean = &sum / m;
    let outer = mean
        .view()
        .insert_axis(Axis(1))
        .dot(&mean.view().insert_axis(Axis(0)));
    let cov = (&gram - &(outer * m)) / (m - 1.0);
    (cov, &shift_f64 + &(&sum / m))
}

#[test]
fn the_device_covariance_is_the_host_accumulation() {
    let mut rng = Rng::new(21);
    let n = 9;
    let chunks: Vec<Tensor> = [17, 17, 25]
        .iter()
        .map(|&b| {
            randn(&[b, n], &mut rng)
                .add_scalar(3.0)
                .unwrap()
                .tanh()
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
        })
        .collect();
    let mut acc = CovarianceAccumulator::new("h", n);
    for c in &chunks {
        acc.push(c).unwrap();
    }
    let (cov, mean) = host_covariance(&chunks);
    let got = acc.finish().unwrap();
    assert_eq!(got.dtype(), DType::F64);
    assert_eq!(tensor_bits(&got), bits(cov.as_slice().unwrap()));
    assert_eq!(
        tensor_bits(&acc.mean().unwrap()),
        bits(mean.as_slice().unwrap())
    );
    // A NaN anywhere is caught by the one read of `finish`.
    let mut bad = CovarianceAccumulator::new("h", n);
    bad.push(&chunks[0]).unwrap();
    let nan = Tensor::full(f64::NAN, &[2, n], DType::F32, &Device::Cpu).unwrap();
    bad.push(&nan).unwrap();
    let err = bad.finish().unwrap_err().to_string();
    assert!(err.contains("NaN"), "{err}");
}

#[test]
fn the_diagnostic_is_the_host_relative_error() {
    let mut rng = Rng::new(5);
    let dev = Device::Cpu;
    let seq = Sequential::new()
        .with(Linear::new(5, 7, DType::F32, &dev, &mut rng).unwrap())
        .with(Tanh::new())
        .with(Linear::new(7, 3, DType::F32, &dev, &mut rng).unwrap());
    let mut net = Network::new(seq, vec![("h".into(), 1)], &[5]).unwrap();
    let images = Array2::from_shape_vec((40, 5), vals(&randn(&[40, 5], &mut rng)))
        .unwrap()
        .mapv(|v| v as f32);
    let layer = SpectralLayer {
        tau: 2,
        ..SpectralLayer::new("h", 1.0)
    };
    let mut spec = SpectralRegularizer::new(vec![layer], EigenMode::Projected).unwrap();
    spec.refresh(&mut net, images.view(), 16).unwrap();
    let x = Tensor::from_array(images.slice(ndarray::s![..12, ..]).to_owned());
    let pass = net.forward(&x, Mode::Train).unwrap();
    let out = spec.regularize(&pass, &[]).unwrap();
    let values: Vec<f64> = out.scalars.iter().flat_map(vals).collect();
    spec.observe(&values).unwrap();
    let got = spec.take_eigen_errors()[0].1;
    // The host formula of the diagnostic, on the same eigenvalues.
    let h = pass.get("h").unwrap();
    let used = vals(
        &projected_penalty_sorted(h, spec.eigenvectors(0).unwrap(), 1.0, 2)
            .unwrap()
            .eigenvalues,
    );
    let exact = vals(&exact_penalty(h, 1.0, 2).unwrap().eigenvalues);
    let (a, e) = (&used[1..], &exact[1..]);
    let num: f64 = a.iter().zip(e).map(|(a, e)| (a - e) * (a - e)).sum();
    let den: f64 = e.iter().map(|e| e * e).sum();
    let want = (num / den.max(f64::MIN_POSITIVE)).sqrt();
    assert_eq!(got.to_bits(), want.to_bits(), "{got} vs {want}");
}
