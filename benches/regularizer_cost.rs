//! What the spectral regulariser costs per training step: exact mode (an eigendecomposition
//! of the batch covariance, `O(N³)`) against projected mode (eq. 5: two `B × N × N` GEMMs
//! with eigenvectors fixed for the epoch), value + gradient, for `N ∈ {500, 1000, 2000,
//! 2704}` at `B = 1.5 N`; the two pieces PyTorch's anchors time on their own (the 2000 × 2000
//! `eigh`, and the projection alone at `B = 3500`); and the per-epoch eigenvector refresh
//! over 60 000 samples (streamed covariance in `f64` + eigendecomposition).
//!
//! `cargo bench --bench regularizer_cost`; all in `f32` except the refresh's `f64` parts.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use specreg::regularizers::{
    CovarianceAccumulator, exact_penalty, projected_eigenvalues, projected_penalty,
};
use specreg::tensor::{DType, Device, Rng, Tensor};

/// Large buffers freed by one step are reused by the next instead of being mapped afresh
/// (see `BufferCache`); the numbers are unchanged.
#[global_allocator]
static ALLOC: specreg::tensor::BufferCache = specreg::tensor::BufferCache::new();

/// Tanh of correlated Gaussians: a representation with a decaying spectrum like a hidden
/// layer's.
fn representation(b: usize, n: usize, seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let z = Tensor::randn(&[b, n], 0.0, 1.0, DType::F32, &mut rng, &Device::Cpu).unwrap();
    let mix = Tensor::randn(
        &[n, n],
        0.0,
        1.0 / (n as f64).sqrt(),
        DType::F32,
        &mut rng,
        &Device::Cpu,
    )
    .unwrap();
    z.matmul(&mix).unwrap().tanh().unwrap()
}

/// Fixed eigenvectors as projected mode holds them: from the representation's covariance.
fn eigenvectors(h: &Tensor) -> Tensor {
    h.covariance().unwrap().symmetric_eigen().unwrap().1
}

fn step_cost(c: &mut Criterion) {
    let mut g = c.benchmark_group("regularizer_cost/step");
    g.sample_size(10).measurement_time(Duration::from_secs(6));
    for n in [500, 1000, 2000, 2704] {
        let b = n + n / 2;
        let h = representation(b, n, n as u64);
        let v = eigenvectors(&h);
        g.bench_function(BenchmarkId::new("exact", format!("N{n}_B{b}")), |bch| {
            bch.iter(|| exact_penalty(&h, 1.0, 10).unwrap())
        });
        g.bench_function(BenchmarkId::new("projected", format!("N{n}_B{b}")), |bch| {
            bch.iter(|| projected_penalty(&h, &v, 1.0, 10).unwrap())
        });
    }
    g.finish();
}

/// The two operations PyTorch's anchor times separately at B = 3500 (the rows `eigh` and
/// `projection` of `cargo xtask bench-vs-pytorch`): `torch.linalg.eigh` of an N × N
/// covariance, and the projected eigenvalues `((h − mean) @ V)².sum(0)/(B − 1)`.
fn anchors(c: &mut Criterion) {
    let mut g = c.benchmark_group("regularizer_cost/anchor");
    g.sample_size(10).measurement_time(Duration::from_secs(6));
    let b = 3500;
    for n in [1000, 2000] {
        let h = representation(b, n, 7);
        let cov = h.covariance().unwrap();
        let v = eigenvectors(&h);
        g.bench_function(format!("eigh_N{n}_f32"), |bch| {
            bch.iter(|| cov.symmetric_eigen().unwrap())
        });
        g.bench_function(format!("projection_N{n}_B{b}"), |bch| {
            bch.iter(|| projected_eigenvalues(&h, &v).unwrap())
        });
    }
    g.finish();
}

/// The per-epoch refresh of projected mode: covariance of 60 000 rows streamed in chunks of
/// 5000 (chunk Gram in f32, accumulated in f64), then an f64 eigendecomposition.
fn refresh(c: &mut Criterion) {
    let mut g = c.benchmark_group("regularizer_cost/refresh_60000");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    for n in [1000, 2000] {
        let chunk = representation(5000, n, 3);
        g.bench_function(
            BenchmarkId::new("covariance+eigh", format!("N{n}")),
            |bch| {
                bch.iter(|| {
                    let mut acc = CovarianceAccumulator::new("bench", n);
                    for _ in 0..12 {
                        acc.push(&chunk).unwrap();
                    }
                    let cov = acc.finish().unwrap();
                    specreg::regularizers::eigen_descending(&cov).unwrap()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, step_cost, anchors, refresh);
criterion_main!(benches);
