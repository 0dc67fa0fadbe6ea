//! Spectrum metrics: power-law fits, effective dimension, participation ratio, and the
//! streamed data-set covariance against a one-shot reference.

mod common;

use common::{assert_close, randn, vals};
use ndarray::{Array2, Axis};
use specreg_nn::{Linear, Mode, Network, Sequential, Tanh};
use specreg_regularizers::{CovarianceAccumulator, RegularizerError, Spectrum, layer_spectrum};
use specreg_tensor::{DType, Device, Rng, Tensor};

#[test]
fn power_law_fits_recover_the_exponent() {
    for alpha in [1.0, 2.0, 0.7] {
        let s = Spectrum::new((1..=800).map(|n| 5.0 * (n as f64).powf(-alpha)).collect()).unwrap();
        let fit = s.default_power_law().unwrap();
        assert_eq!((fit.first, fit.last), (11, 500));
        assert!((fit.alpha - alpha).abs() < 1e-10, "{fit:?}");
        assert!((fit.r2 - 1.0).abs() < 1e-12, "{fit:?}");
        assert!((fit.log_intercept - 5f64.ln()).abs() < 1e-9, "{fit:?}");
    }
    // A narrow representation: the default range ends at N.
    let s = Spectrum::new((1..=100).map(|n| 1.0 / n as f64).collect()).unwrap();
    assert_eq!(s.default_fit_range(), (11, 100));
    // A bent spectrum fits worse.
    let bent = Spectrum::new((1..=600).map(|n| (-(n as f64) / 60.0).exp()).collect()).unwrap();
    assert!(bent.default_power_law().unwrap().r2 < 0.95);
    assert!(
        s.power_law(0, 10).is_err() && s.power_law(5, 5).is_err() && s.power_law(11, 101).is_err()
    );
    let zero = Spectrum::new(vec![1.0, 0.5, 0.0, 0.0]).unwrap();
    assert!(
        zero.power_law(1, 4)
            .unwrap_err()
            .to_string()
            .contains("rank 3")
    );
}

#[test]
fn power_law_fits_any_rank_range_and_rejects_empty_or_out_of_range_ones() {
    // λ_n = n^−2 up to rank 20, then 20^−2 (n/20)^−0.5: the fit sees the exponent of
    // whichever 1-based inclusive range it is given.
    let bend = |n: usize| {
        let n = n as f64;
        if n <= 20.0 {
            n.powi(-2)
        } else {
            (n / 20.0).powf(-0.5) / 400.0
        }
    };
    let s = Spectrum::new((1..=100).map(bend).collect()).unwrap();
    let head = s.power_law(1, 20).unwrap();
    assert_eq!((head.first, head.last), (1, 20));
    assert!((head.alpha - 2.0).abs() < 1e-10, "{head:?}");
    let tail = s.power_law(20, 100).unwrap();
    assert!((tail.alpha - 0.5).abs() < 1e-10, "{tail:?}");
    let two = s.power_law(3, 4).unwrap();
    assert!((two.alpha - 2.0).abs() < 1e-10, "{two:?}");
    for (first, last) in [(0, 10), (10, 10), (10, 5), (50, 101), (101, 120)] {
        match s.power_law(first, last).unwrap_err() {
            RegularizerError::InvalidArgument { what, reason } => {
                assert_eq!(what, "power-law fit");
                assert!(reason.contains(&format!("{first}..={last}")), "{reason}");
                assert!(reason.contains("N = 100"), "{reason}");
            }
            other => panic!("{first}..={last}: expected InvalidArgument, got {other}"),
        }
    }
    // Fewer than 12 eigenvalues: the default range 11..=min(N, 500) is empty, an error.
    let short = Spectrum::new((1..=11).map(bend).collect()).unwrap();
    assert_eq!(short.default_fit_range(), (11, 11));
    assert!(short.default_power_law().is_err());
}

#[test]
fn dimensions_of_known_spectra() {
    let flat = Spectrum::new(vec![2.0; 10]).unwrap();
    assert_eq!(flat.effective_dimension(0.9).unwrap(), 9);
    assert!((flat.participation_ratio() - 10.0).abs() < 1e-12);
    let one = Spectrum::new(vec![0.0, 0.0, 3.0]).unwrap();
    assert_eq!(one.eigenvalues, [3.0, 0.0, 0.0]);
    assert_eq!(one.effective_dimension(0.9).unwrap(), 1);
    assert!((one.participation_ratio() - 1.0).abs() < 1e-12);
    // 1/n over 100 ranks: H_100 = 5.187…; 90% of it is first reached at k = 55.
    let harmonic = Spectrum::new((1..=100).map(|n| 1.0 / n as f64).collect()).unwrap();
    let total: f64 = harmonic.eigenvalues.iter().sum();
    let k = harmonic.effective_dimension(0.9).unwrap();
    let head: f64 = harmonic.eigenvalues[..k].iter().sum();
    let head_less: f64 = harmonic.eigenvalues[..k - 1].iter().sum();
    assert!(head >= 0.9 * total && head_less < 0.9 * total, "k = {k}");
    assert!(flat.effective_dimension(0.0).is_err() && flat.effective_dimension(1.5).is_err());
    assert!(Spectrum::new(vec![]).is_err() && Spectrum::new(vec![1.0, f64::NAN]).is_err());
}

#[test]
fn streamed_covariance_matches_the_one_shot_covariance_despite_a_large_mean() {
    let mut rng = Rng::new(3);
    let x = randn(&[103, 7], &mut rng).add_scalar(1e4).unwrap();
    let mut acc = CovarianceAccumulator::new("test", 7);
    let a = Array2::from_shape_vec((103, 7), vals(&x)).unwrap();
    for chunk in a.axis_chunks_iter(Axis(0), 20) {
        acc.push(&Tensor::from_array(chunk.to_owned())).unwrap();
    }
    assert_eq!(acc.count(), 103);
    let mean = a.mean_axis(Axis(0)).unwrap();
    let c = &a - &mean;
    let want = c.t().dot(&c) / 102.0;
    let got = acc.finish().unwrap();
    assert_eq!(got.dtype(), DType::F64);
    assert_close("Σ", &vals(&got), want.as_slice().unwrap(), 1e-9, 1e-3);
    assert_close(
        "μ",
        &vals(&acc.mean().unwrap()),
        mean.as_slice().unwrap(),
        1e-12,
        1.0,
    );
    assert!(acc.push(&randn(&[3, 6], &mut rng)).is_err());
    assert!(CovarianceAccumulator::new("empty", 3).finish().is_err());
}

#[test]
fn layer_spectrum_is_the_eigenspectrum_of_the_eval_mode_representation() {
    let mut rng = Rng::new(6);
    let dev = Device::Cpu;
    let seq = Sequential::new()
        .with(Linear::new(5, 8, DType::F32, &dev, &mut rng).unwrap())
        .with(Tanh::new())
        .with(Linear::new(8, 3, DType::F32, &dev, &mut rng).unwrap());
    let mut net = Network::new(seq, vec![("h".into(), 1)], &[5]).unwrap();
    let images = Array2::from_shape_vec((90, 5), vals(&randn(&[90, 5], &mut rng)))
        .unwrap()
        .mapv(|v| v as f32);
    let s = layer_spectrum(&mut net, "h", images.view(), 32).unwrap();
    let h = net
        .forward(&Tensor::from_array(images.clone()), Mode::Eval)
        .unwrap()
        .hidden[0]
        .1
        .to_dtype(DType::F64)
        .unwrap();
    let h = Array2::from_shape_vec((90, 8), vals(&h)).unwrap();
    let c = &h - &h.mean_axis(Axis(0)).unwrap();
    let cov = c.t().dot(&c) / 89.0;
    let want = Spectrum::of_covariance(&Tensor::from_array(cov)).unwrap();
    assert_close("λ", &s.eigenvalues, &want.eigenvalues, 1e-5, 1e-3);
    assert!(s.eigenvalues.windows(2).all(|w| w[0] >= w[1]));
    let err = layer_spectrum(&mut net, "fc7", images.view(), 32)
        .unwrap_err()
        .to_string();
    assert!(err.contains("fc7"), "{err}");
}
