//! End to end on real MNIST: the data crate feeds the tensor crate, and the pixel covariance
//! spectrum has the well-known shape (the first principal component explains about 10% of
//! the variance; about 87 components reach 90%).
//!
//! MNIST is found when the tests are built (`SPECREG_DATA`, the per-user cache, a download:
//! see `specreg_data::testing`); without it the test is ignored, with the reason.

use specreg::data::{Mnist, batch_indices};
use specreg::tensor::Tensor;

#[test]
#[cfg_attr(
    specreg_no_mnist,
    ignore = "MNIST not found at build time (see the cargo warning): set SPECREG_DATA"
)]
fn pixel_covariance_spectrum_of_real_mnist() -> anyhow::Result<()> {
    let mnist = Mnist::load(specreg::data::test_mnist_dir!())?;
    // A seeded 10 000-image mini-batch of the training set, as the trainer will draw it.
    let batch = &batch_indices(mnist.train.len(), 10_000, Some(0))?[0];
    let (x, labels) = mnist.train.gather(batch)?;
    assert_eq!(x.dim(), (10_000, 784));
    assert!(labels.iter().all(|&y| y <= 9));

    let x = Tensor::from_array(x).to_dtype(specreg::tensor::DType::F64)?;
    let cov = x.covariance()?;
    let (lambda, v) = cov.symmetric_eigen()?;
    let lambda = lambda.to_vec::<f64>()?;
    assert!(
        lambda.windows(2).all(|w| w[0] >= w[1]),
        "eigenvalues must be descending"
    );
    assert!(
        lambda.iter().all(|&l| l > -1e-10),
        "covariance is positive semi-definite"
    );

    // Σλ = tr Σ = total pixel variance.
    let total: f64 = lambda.iter().sum();
    let trace: f64 = (0..784)
        .map(|i| cov.as_array_view::<f64>().unwrap()[[i, i]])
        .sum();
    assert!((total - trace).abs() < 1e-9 * trace, "{total} vs {trace}");

    let first = lambda[0] / total;
    assert!(
        (0.08..0.12).contains(&first),
        "first PC explains {first:.3} of the variance"
    );
    let mut acc = 0.0;
    let dim90 = 1 + lambda
        .iter()
        .position(|&l| {
            acc += l;
            acc >= 0.9 * total
        })
        .expect("reaches 90%");
    assert!(
        (75..100).contains(&dim90),
        "90% of the variance in {dim90} components"
    );

    // The leading eigenvector satisfies Σ v = λ v.
    let v0 = v
        .as_array_view::<f64>()?
        .into_dimensionality::<ndarray::Ix2>()?
        .column(0)
        .to_owned();
    let cov = cov
        .as_array_view::<f64>()?
        .into_dimensionality::<ndarray::Ix2>()?
        .to_owned();
    let resid = (cov.dot(&v0) - &v0 * lambda[0]).mapv(f64::abs).sum();
    assert!(resid < 1e-8 * lambda[0] * 784.0, "residual {resid}");
    Ok(())
}
