//! Eigenvalue sensitivity maps (eq. 9) against central finite differences of `λ_n`, in f64.

mod common;

use common::{linear_net, normal, small_mlp, small_mlp_on, uniform, vals};
use ndarray::Array2;
use specreg_attacks::{
    RepresentationSpectrum, Result, SensitivityOptions, SensitivityReduction, sensitivity_maps,
};
use specreg_nn::{Linear, Mode, Network, Sequential, Tanh};
use specreg_tensor::{DType, Device, Rng, Tensor, test_device, testing::scaled_tol};

test_device!(
    per_image_gradient_matches_finite_differences,
    shared_perturbation_map_is_the_derivative_of_moving_a_pixel_in_every_image
);

/// How much looser a tolerance is on a GPU (other summation orders, libdevice's `tanh`,
/// cuSOLVER's eigendecomposition).
const GPU_FACTOR: f64 = 10.0;

const M: usize = 9;
const D: usize = 6;
const H: f64 = 1e-6;

fn data(seed: u64) -> Array2<f32> {
    // f32 pixels (the public entry points take f32 images); the network runs in f64.
    uniform(M, D, 0.0, 1.0, &mut Rng::new(seed)).mapv(|v| v as f32)
}

/// λ of `rep` over `images` (on `dev`) with pixel (i, j) moved by `delta` (`i = None`:
/// every image).
fn eigenvalues_moved(
    dev: &Device,
    net: &mut specreg_nn::Network,
    images: &Array2<f32>,
    i: Option<usize>,
    j: usize,
    delta: f64,
) -> Vec<f64> {
    // Work in f64: move the f64 copy, then hand the network exactly those values.
    let x64 = images.mapv(f64::from);
    let mut moved = x64.clone();
    match i {
        Some(i) => moved[[i, j]] += delta,
        None => moved.column_mut(j).mapv_inplace(|v| v + delta),
    }
    let h = net
        .forward(
            &Tensor::from_array(moved).to_device(dev).unwrap(),
            Mode::Eval,
        )
        .unwrap()
        .get("h2")
        .unwrap()
        .clone();
    let cov = h.covariance().unwrap();
    let (l, _) = cov.symmetric_eigen().unwrap();
    l.to_vec::<f64>().unwrap()
}

fn per_image_gradient_matches_finite_differences(dev: &Device) -> Result<()> {
    let images = data(1);
    let mut net = small_mlp_on(dev, D, 5, 3, DType::F64, 2);
    let spec = RepresentationSpectrum::compute(&mut net, images.view(), "h2", 4).unwrap();
    let ranks = [1, 2, 3, 5];
    let x = Tensor::from_array(images.mapv(f64::from)).to_device(dev)?;
    let grads = spec
        .eigenvalue_input_gradients(&mut net, &x, &ranks)
        .unwrap();
    let mut worst: f64 = 0.0;
    for (g, &r) in grads.iter().zip(&ranks) {
        let g = vals(g);
        for i in 0..M {
            for j in 0..D {
                let p = eigenvalues_moved(dev, &mut net, &images, Some(i), j, H)[r - 1];
                let m = eigenvalues_moved(dev, &mut net, &images, Some(i), j, -H)[r - 1];
                let fd = (p - m) / (2.0 * H);
                let got = g[i * D + j];
                let err = (got - fd).abs() / fd.abs().max(1e-3);
                worst = worst.max(err);
                assert!(
                    err < scaled_tol(dev, 1e-5, GPU_FACTOR),
                    "rank {r}, image {i}, pixel {j}: {got} vs {fd}"
                );
            }
        }
    }
    println!("largest relative error against finite differences: {worst:e}");
    Ok(())
}

fn shared_perturbation_map_is_the_derivative_of_moving_a_pixel_in_every_image(
    dev: &Device,
) -> Result<()> {
    let images = data(3);
    let mut net = small_mlp_on(dev, D, 5, 3, DType::F64, 4);
    let ranks = [1, 4];
    let opts = SensitivityOptions {
        batch_size: 4,
        reduction: SensitivityReduction::SharedPerturbation,
        image_shape: (2, 3),
    };
    let maps = sensitivity_maps(&mut net, images.view(), "h2", &ranks, &opts).unwrap();
    assert_eq!(maps.num_images, M);
    for (k, &r) in ranks.iter().enumerate() {
        let lam = eigenvalues_moved(dev, &mut net, &images, None, 0, 0.0)[r - 1];
        assert!(
            (maps.eigenvalues[k] - lam).abs()
                < scaled_tol(dev, 1e-12, GPU_FACTOR) * lam.abs().max(1.0)
        );
        assert_eq!(maps.maps[k].dim(), (2, 3));
        for j in 0..D {
            let p = eigenvalues_moved(dev, &mut net, &images, None, j, H)[r - 1];
            let m = eigenvalues_moved(dev, &mut net, &images, None, j, -H)[r - 1];
            let fd = (p - m) / (2.0 * H);
            let got = maps.maps[k][[j / 3, j % 3]];
            assert!(
                (got - fd).abs() <= scaled_tol(dev, 1e-5, GPU_FACTOR) * fd.abs().max(1e-3),
                "rank {r}, pixel {j}: {got} vs {fd}"
            );
        }
    }
    Ok(())
}

#[test]
fn mean_absolute_map_averages_per_image_magnitudes() {
    let images = data(5);
    let mut net = small_mlp(D, 5, 3, DType::F64, 6);
    let opts = SensitivityOptions {
        batch_size: 5,
        reduction: SensitivityReduction::MeanAbsolute,
        image_shape: (3, 2),
    };
    let maps = sensitivity_maps(&mut net, images.view(), "h1", &[2], &opts).unwrap();
    let spec = RepresentationSpectrum::compute(&mut net, images.view(), "h1", M).unwrap();
    let g = vals(
        &spec
            .eigenvalue_input_gradients(&mut net, &Tensor::from_array(images.mapv(f64::from)), &[2])
            .unwrap()[0],
    );
    for j in 0..D {
        let want: f64 = (0..M).map(|i| g[i * D + j].abs()).sum::<f64>() / M as f64;
        let got = maps.maps[0][[j / 2, j % 2]];
        assert!((got - want).abs() < 1e-14, "pixel {j}: {got} vs {want}");
    }
}

#[test]
fn spectrum_does_not_depend_on_the_batch_size_and_matches_the_direct_covariance() {
    let images = data(7);
    let mut net = small_mlp(D, 5, 3, DType::F64, 8);
    let whole = RepresentationSpectrum::compute(&mut net, images.view(), "h1", M).unwrap();
    for bs in [1, 2, 4] {
        let s = RepresentationSpectrum::compute(&mut net, images.view(), "h1", bs).unwrap();
        for (a, b) in s.eigenvalues.iter().zip(&whole.eigenvalues) {
            assert!((a - b).abs() < 1e-13, "batch {bs}: {a} vs {b}");
        }
        for (a, b) in vals(&s.mean).iter().zip(&vals(&whole.mean)) {
            assert!((a - b).abs() < 1e-14);
        }
    }
    // Against the tensor crate's unbiased covariance of the whole representation.
    let h = net
        .forward(&Tensor::from_array(images.mapv(f64::from)), Mode::Eval)
        .unwrap()
        .get("h1")
        .unwrap()
        .clone();
    let (l, _) = h.covariance().unwrap().symmetric_eigen().unwrap();
    for (a, b) in whole.eigenvalues.iter().zip(l.to_vec::<f64>().unwrap()) {
        assert!((a - b).abs() < 1e-13, "{a} vs {b}");
    }
    assert_eq!(whole.num_samples, M);
}

#[test]
fn a_linear_network_has_zero_shared_perturbation_maps() {
    // Moving every image by the same vector shifts a linear representation by a constant,
    // which leaves its covariance, and so every eigenvalue, unchanged.
    let mut rng = Rng::new(9);
    let w = normal(4, D, &mut rng);
    let mut net = linear_net(&w, &[0.1, 0.2, -0.3, 0.0]);
    // A linear network with its logits as the representation.
    let seq = std::mem::take(net.sequential_mut());
    let mut net = specreg_nn::Network::new(seq, vec![("z".into(), 0)], &[D]).unwrap();
    let images = data(10);
    let opts = SensitivityOptions {
        image_shape: (1, D),
        ..SensitivityOptions::default()
    };
    let maps = sensitivity_maps(&mut net, images.view(), "z", &[1, 2], &opts).unwrap();
    for m in &maps.maps {
        assert!(m.iter().all(|v| v.abs() < 1e-12), "{m:?}");
    }
    // The per-image maps themselves are not zero.
    let abs = SensitivityOptions {
        reduction: SensitivityReduction::MeanAbsolute,
        ..opts
    };
    let maps = sensitivity_maps(&mut net, images.view(), "z", &[1], &abs).unwrap();
    assert!(maps.maps[0].iter().any(|v| v.abs() > 1e-3));
}

#[test]
fn bad_requests_are_typed_errors() {
    let images = data(11);
    let mut net = small_mlp(D, 5, 3, DType::F64, 12);
    let opts = SensitivityOptions {
        image_shape: (2, 3),
        ..SensitivityOptions::default()
    };
    let err =
        |r: specreg_attacks::Result<specreg_attacks::SensitivityMaps>| r.unwrap_err().to_string();
    assert!(err(sensitivity_maps(&mut net, images.view(), "h2", &[0], &opts)).contains("1-based"));
    assert!(err(sensitivity_maps(&mut net, images.view(), "h2", &[6], &opts)).contains("1..=5"));
    assert!(
        err(sensitivity_maps(
            &mut net,
            images.view(),
            "fc9",
            &[1],
            &opts
        ))
        .contains("h1, h2")
    );
    assert!(
        err(sensitivity_maps(&mut net, images.view(), "h2", &[], &opts)).contains("no eigenvalue")
    );
    let wrong = SensitivityOptions::default();
    assert!(
        err(sensitivity_maps(
            &mut net,
            images.view(),
            "h2",
            &[1],
            &wrong
        ))
        .contains("28×28")
    );
    let one = images.slice(ndarray::s![0..1, ..]);
    assert!(err(sensitivity_maps(&mut net, one, "h2", &[1], &opts)).contains("at least 2"));
}

/// The covariance of the rows of `h: [M, N]` the naive way, in f64: the mean first, then
/// the centred products.
fn naive_covariance(h: &Array2<f64>) -> (Vec<f64>, Array2<f64>) {
    let (m, n) = h.dim();
    let mean: Vec<f64> = (0..n).map(|j| h.column(j).sum() / m as f64).collect();
    let mut cov = Array2::<f64>::zeros((n, n));
    for i in 0..m {
        for a in 0..n {
            for b in 0..n {
                cov[[a, b]] += (h[[i, a]] - mean[a]) * (h[[i, b]] - mean[b]);
            }
        }
    }
    (mean, cov / (m as f64 - 1.0))
}

#[test]
fn spectrum_from_shared_statistics_matches_a_naive_f64_covariance() {
    // Representations far from zero (a large bias on the first layer), in f32 and f64, in
    // chunks that do not divide the image count.
    let (m, d) = (40, 6);
    let images = uniform(m, d, 0.0, 1.0, &mut Rng::new(21)).mapv(|v| v as f32);
    let dev = specreg_tensor::Device::Cpu;
    for dtype in [DType::F64, DType::F32] {
        // tanh(W x + b) + 30: a representation with a large mean.
        let shift = Linear::from_tensors(
            Tensor::from_array(Array2::<f64>::eye(5))
                .to_dtype(dtype)
                .unwrap(),
            Tensor::from_vec(vec![30.0f64; 5], &[5], &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
        )
        .unwrap();
        let seq = Sequential::new()
            .with(Linear::new(d, 5, dtype, &dev, &mut Rng::new(22)).unwrap())
            .with(Tanh::new())
            .with(shift);
        let mut shifted = Network::new(seq, vec![("h".into(), 2)], &[d]).unwrap();
        let x = Tensor::from_array(images.clone()).to_dtype(dtype).unwrap();
        let h = shifted
            .forward(&x, Mode::Eval)
            .unwrap()
            .get("h")
            .unwrap()
            .clone();
        let h = Array2::from_shape_vec((m, 5), vals(&h)).unwrap();
        let stats =
            specreg_regularizers::representation_statistics(&mut shifted, &["h"], images.view(), 7)
                .unwrap();
        let spec = RepresentationSpectrum::from_statistics(&stats[0]).unwrap();
        assert_eq!(spec.num_samples, m);
        let (mean, cov) = naive_covariance(&h);
        let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
        for (a, b) in vals(&spec.mean).iter().zip(&mean) {
            assert!((a - b).abs() < tol * 30.0, "{dtype:?} mean {a} vs {b}");
        }
        let scale = spec.eigenvalues[0];
        let v = Array2::from_shape_vec((5, 5), vals(&spec.eigenvectors)).unwrap();
        for (k, &lam) in spec.eigenvalues.iter().enumerate() {
            // Σ v = λ v against the naive Σ, and a unit eigenvector.
            let col = v.column(k);
            let resid = (&cov.dot(&col) - &(&col * lam))
                .iter()
                .fold(0.0f64, |a, r| a.max(r.abs()));
            assert!(
                resid < tol * scale,
                "{dtype:?} rank {}: residual {resid:e}",
                k + 1
            );
            assert!((col.dot(&col) - 1.0).abs() < 1e-12);
            if k > 0 {
                assert!(lam <= spec.eigenvalues[k - 1]);
            }
        }
        // The eigenvalues match the naive covariance's (trace and Frobenius norm).
        let trace: f64 = spec.eigenvalues.iter().sum();
        let frob: f64 = spec.eigenvalues.iter().map(|l| l * l).sum();
        assert!((trace - cov.diag().sum()).abs() < tol * scale);
        assert!((frob - cov.iter().map(|c| c * c).sum::<f64>()).abs() < tol * scale * scale);
        // And the convenience entry point gives the same spectrum from its own pass.
        let direct = RepresentationSpectrum::compute(&mut shifted, images.view(), "h", 7).unwrap();
        assert_eq!(direct.eigenvalues, spec.eigenvalues);
    }
}
