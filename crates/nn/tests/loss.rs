//! The softmax cross-entropy: value, logit gradient and its tangent.

mod common;

use common::{assert_close, assert_close_tol, axpy, fd_dir, fd_grad, randn_on, tensor, tol, vals};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use specreg_nn::loss::{
    cross_entropy_per_sample, softmax_cross_entropy, softmax_cross_entropy_tangent,
};
use specreg_tensor::{DType, Device, Result, Rng, test_device};

test_device!(gradient_and_tangent_match_finite_differences);

fn config() -> Config {
    Config {
        cases: 24,
        rng_seed: RngSeed::Fixed(7),
        failure_persistence: None,
        ..Config::default()
    }
}

fn labels(b: usize, k: usize, rng: &mut Rng) -> Vec<usize> {
    (0..b).map(|_| rng.below(k as u64) as usize).collect()
}

fn gradient_and_tangent_match_finite_differences(dev: &Device) -> Result<()> {
    proptest!(config(), |(b in 1usize..5, k in 2usize..6, seed in any::<u64>())| {
        let mut rng = Rng::new(seed);
        let z = randn_on(dev, &[b, k], &mut rng).scale(2.0).unwrap();
        let y = labels(b, k, &mut rng);
        let (_, g) = softmax_cross_entropy(&z, &y).unwrap();
        let fd = fd_grad(&z, |zp| {
            softmax_cross_entropy(zp, &y).unwrap().0.to_scalar().unwrap()
        });
        assert_close_tol("∂L/∂z", &vals(&g), &fd, tol(dev));

        let dz = randn_on(dev, &[b, k], &mut rng);
        let rg = softmax_cross_entropy_tangent(&z, &dz).unwrap();
        let fd = fd_dir(|s| vals(&softmax_cross_entropy(&axpy(&z, s, &dz), &y).unwrap().1));
        assert_close_tol("R{∂L/∂z}", &vals(&rg), &fd, tol(dev));
    });
    Ok(())
}

#[test]
fn values_by_hand() {
    // Uniform logits: every sample costs ln K; the mean is ln K too.
    let z = tensor(vec![0.0; 6], &[2, 3]);
    let (loss, g) = softmax_cross_entropy(&z, &[0, 2]).unwrap();
    assert_eq!((loss.shape(), loss.dtype()), (&[][..], DType::F64));
    assert!((loss.to_scalar().unwrap() - 3f64.ln()).abs() < 1e-15);
    let third = 1.0 / 3.0;
    let want = [third - 1.0, third, third, third, third, third - 1.0].map(|v| v / 2.0);
    assert_close("grad", &vals(&g), &want);
    // Logits [0, ln 3]: p = [1/4, 3/4].
    let z = tensor(vec![0.0, 3f64.ln()], &[1, 2]);
    let per = cross_entropy_per_sample(&z, &[0]).unwrap();
    assert!((vals(&per)[0] - 4f64.ln()).abs() < 1e-15);
    // Tangent along dz = [1, 0]: p⊙dz − p(pᵀdz) = [1/4 − 1/16, −3/16].
    let rg = softmax_cross_entropy_tangent(&z, &tensor(vec![1.0, 0.0], &[1, 2])).unwrap();
    assert_close("tangent", &vals(&rg), &[3.0 / 16.0, -3.0 / 16.0]);
}

#[test]
fn tangent_rejects_mismatched_direction() {
    let z = tensor(vec![0.0; 6], &[2, 3]);
    assert!(softmax_cross_entropy_tangent(&z, &tensor(vec![0.0; 4], &[2, 2])).is_err());
}
