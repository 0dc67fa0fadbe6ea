//! The per-epoch eigenvector refresh of a network with a batch-whitened layer: the `Eval`
//! pass over the data set whitens each (deterministic) chunk with its own statistics, as
//! training does, rather than with the untrained running statistics `μ = 0`, `Σ = I`.

mod common;

use common::{assert_close, randn, vals};
use ndarray::{Array2, s};
use specreg_nn::{Layer, Linear, Mode, Network, Sequential, Tanh};
use specreg_regularizers::{
    CovarianceAccumulator, EigenMode, SpectralLayer, SpectralRegularizer, Whitening,
    WhiteningStatistics, chunk_ranges, representation_statistics,
};
use specreg_tensor::{DType, Device, Rng, Tensor};

const IN: usize = 8;
const WIDTH: usize = 7;

/// `8 → 7, tanh` (`h`), whitening (`w`), `7 → 4, tanh` (`g`), `4 → 3`, in f64.
fn whitened_net(statistics: WhiteningStatistics, seed: u64) -> Network {
    let mut rng = Rng::new(seed);
    let dev = Device::Cpu;
    let whitening = Whitening::new("h", WIDTH, 1e-5)
        .unwrap()
        .on(DType::F64, &dev)
        .unwrap()
        .with_statistics(statistics);
    let seq = Sequential::new()
        .with(Linear::new(IN, WIDTH, DType::F64, &dev, &mut rng).unwrap())
        .with(Tanh::new())
        .with(whitening)
        .with(Linear::new(WIDTH, 4, DType::F64, &dev, &mut rng).unwrap())
        .with(Tanh::new())
        .with(Linear::new(4, 3, DType::F64, &dev, &mut rng).unwrap());
    let reps = vec![("h".into(), 1), ("w".into(), 2), ("g".into(), 4)];
    Network::new(seq, reps, &[IN]).unwrap()
}

fn images(m: usize, rng: &mut Rng) -> Array2<f32> {
    Array2::from_shape_vec((m, IN), vals(&randn(&[m, IN], rng)))
        .unwrap()
        .mapv(|v| (2.0 * v) as f32)
}

/// The covariances of [`representation_statistics`] as arrays.
fn representation_covariances(
    net: &mut Network,
    names: &[&str],
    x: ndarray::ArrayView2<'_, f32>,
    chunk: usize,
) -> Vec<Array2<f64>> {
    representation_statistics(net, names, x, chunk)
        .unwrap()
        .iter()
        .map(|st| {
            let n = st.covariance.shape()[0];
            Array2::from_shape_vec((n, n), vals(&st.covariance)).unwrap()
        })
        .collect()
}

fn max_abs(a: &Array2<f64>) -> f64 {
    a.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

#[test]
fn chunks_are_fixed_size_blocks_with_the_remainder_folded_into_the_last() {
    assert_eq!(chunk_ranges(130, 40).unwrap(), [0..40, 40..80, 80..130]);
    assert_eq!(chunk_ranges(120, 40).unwrap(), [0..40, 40..80, 80..120]);
    assert_eq!(chunk_ranges(81, 40).unwrap(), [0..40, 40..81]);
    assert_eq!(
        chunk_ranges(30, 40).unwrap(),
        vec![std::ops::Range { start: 0, end: 30 }]
    );
    assert_eq!(chunk_ranges(60_000, 2000).unwrap().len(), 30);
    assert!(chunk_ranges(0, 40).unwrap().is_empty());
}

#[test]
fn a_refresh_at_initialisation_sees_the_batch_whitened_representations() {
    let mut rng = Rng::new(31);
    let (m, chunk) = (130, 40);
    let x = images(m, &mut rng);
    let mut net = whitened_net(WhiteningStatistics::Batch, 5);
    let covs = representation_covariances(&mut net, &["h", "w", "g"], x.view(), chunk);
    // Every chunk of the whitened layer has mean 0 and covariance I (up to ε), so the
    // pooled covariance over k = 3 chunks (40, 40, 50 rows) is (M − k)/(M − 1) · I.
    let k = chunk_ranges(m, chunk).unwrap().len();
    assert_eq!(k, 3);
    let pooled = Array2::<f64>::eye(WIDTH) * ((m - k) as f64 / (m - 1) as f64);
    let dev = max_abs(&(&covs[1] - &pooled));
    assert!(dev < 1e-3, "max |cov(w) − (M−k)/(M−1) I| = {dev}");
    // Not what the untrained running statistics (μ = 0, Σ = I) would give: h / √(1 + ε).
    let mut running = whitened_net(WhiteningStatistics::Running, 5);
    let rcovs = representation_covariances(&mut running, &["h", "w"], x.view(), chunk);
    assert_close(
        "running: cov(w) = cov(h)/(1 + ε)",
        (&rcovs[1] * (1.0 + 1e-5)).as_slice().unwrap(),
        rcovs[0].as_slice().unwrap(),
        1e-9,
        1e-9,
    );
    assert!(
        max_abs(&(&rcovs[1] - &pooled)) > 0.3,
        "the test must tell them apart"
    );
    assert_close(
        "h does not depend on the setting",
        covs[0].as_slice().unwrap(),
        rcovs[0].as_slice().unwrap(),
        1e-12,
        1e-12,
    );

    // The downstream layer: the covariance of g from training-style (batch-statistics)
    // forward passes over the same chunks.
    let mut acc = CovarianceAccumulator::new("g", 4);
    for range in chunk_ranges(m, chunk).unwrap() {
        let xb = Tensor::from_array(x.slice(s![range, ..]).mapv(f64::from));
        acc.push(
            net.forward(&xb, Mode::BatchStatistics)
                .unwrap()
                .get("g")
                .unwrap(),
        )
        .unwrap();
    }
    let manual = Array2::from_shape_vec((4, 4), vals(&acc.finish().unwrap())).unwrap();
    assert_close(
        "cov(g)",
        covs[2].as_slice().unwrap(),
        manual.as_slice().unwrap(),
        1e-10,
        1e-10,
    );

    // The refresh's eigenvectors diagonalise exactly that covariance.
    let layer = SpectralLayer {
        name: "g".into(),
        alpha: 1.0,
        tau: 1,
        beta: 1.0,
    };
    let mut spec = SpectralRegularizer::new(vec![layer], EigenMode::Projected).unwrap();
    spec.refresh(&mut net, x.view(), chunk).unwrap();
    let v = spec.eigenvectors(0).unwrap();
    let v = Array2::from_shape_vec((4, 4), vals(v)).unwrap();
    let d = v.t().dot(&manual).dot(&v);
    let off = max_abs(&(&d - &Array2::from_diag(&d.diag())));
    assert!(off < 1e-10 * max_abs(&d), "off-diagonal {off}");
    // Neither the refresh nor the covariance pass touched the whitening buffers.
    let whitening = &net.sequential().state_dict();
    let cov_buffer = whitening
        .iter()
        .find(|(n, _)| n.ends_with("running_cov"))
        .unwrap();
    assert_eq!(
        vals(&cov_buffer.1),
        vals(&Tensor::from_array(Array2::<f64>::eye(WIDTH)))
    );
}

#[test]
fn a_remainder_is_never_a_batch_too_small_to_whiten() {
    // 81 = 40 + 41: a short last chunk of one row would fail (B < 2) and one of a few rows
    // would be rank-deficient; it is folded into the previous chunk instead.
    let mut rng = Rng::new(2);
    let x = images(81, &mut rng);
    let mut net = whitened_net(WhiteningStatistics::Batch, 9);
    let covs = representation_covariances(&mut net, &["w"], x.view(), 40);
    let pooled = Array2::<f64>::eye(WIDTH) * (79.0 / 80.0);
    let dev = max_abs(&(&covs[0] - &pooled));
    assert!(dev < 1e-3, "max |cov(w) − 79/80 I| = {dev}");
    // Fewer images than a chunk: one chunk of all of them.
    let covs = representation_covariances(&mut net, &["w"], x.view(), 500);
    let dev = max_abs(&(&covs[0] - &Array2::<f64>::eye(WIDTH)));
    assert!(dev < 1e-3, "one chunk: max |cov(w) − I| = {dev}");
    let mut layer = Whitening::new("h", WIDTH, 1e-5).unwrap();
    assert!(layer.check_batch_size(40).is_ok());
    assert!(
        layer
            .forward(
                &Tensor::zeros(&[1, WIDTH], DType::F32, &Device::Cpu).unwrap(),
                Mode::Eval
            )
            .is_err()
    );
}
