//! GEMM at the paper's shapes, symmetric eigendecomposition and Cholesky.
//!
//! `cargo bench --bench linalg` runs the default (faer) path; add `--features openblas` for
//! the OpenBLAS/LAPACK path. The backend is part of every bench id, so the two runs sit side
//! by side in `target/criterion`. GEMM reports throughput in FLOP/s (criterion prints it as
//! "elem/s": 1 elem = 1 FLOP).

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use specreg::tensor::{DType, Device, Rng, Tensor};

/// Large buffers freed by one step are reused by the next instead of being mapped afresh
/// (see `BufferCache`); the numbers are unchanged.
#[global_allocator]
static ALLOC: specreg::tensor::BufferCache = specreg::tensor::BufferCache::new();

use specreg::tensor::linalg::BACKEND;

fn random(shape: &[usize], dtype: DType, seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    Tensor::rand_uniform(shape, -1.0, 1.0, dtype, &mut rng, &Device::Cpu).expect("random tensor")
}

/// Times `f` with a device sync inside the timed region.
fn timed(iters: u64, dev: Device, mut f: impl FnMut() -> Tensor) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        std::hint::black_box(f());
        dev.synchronize().expect("sync");
    }
    start.elapsed()
}

fn gemm(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("gemm/{BACKEND}/cpu"));
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    // (m, k, n): the first layer of the shallow net, an MLP hidden layer, the CNN's fc layer.
    for (m, k, n) in [(3500, 784, 2000), (1500, 1000, 1000), (6000, 800, 1000)] {
        let a = random(&[m, k], DType::F32, 1);
        let b = random(&[k, n], DType::F32, 2);
        g.throughput(Throughput::Elements(2 * (m * k * n) as u64));
        g.bench_function(BenchmarkId::new("f32", format!("{m}x{k}x{n}")), |bch| {
            bch.iter_custom(|iters| timed(iters, Device::Cpu, || a.matmul(&b).expect("matmul")))
        });
    }
    g.finish();
}

/// The two products that are nearly all of a shallow training step's FLOPs, in the operand
/// layouts the step hands to the GEMM: the forward `x·Wᵀ` (weights stored `[out, in]`) and
/// the weight gradient `gᵀ·x` (a transposed batch-major operand), beside the plain `a·b` of
/// the same shape in [`gemm`].
fn gemm_layouts(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("gemm_layouts/{BACKEND}/cpu"));
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    let (batch, inp, out) = (3500, 784, 2000);
    let x = random(&[batch, inp], DType::F32, 1);
    let w = random(&[out, inp], DType::F32, 2);
    let grad = random(&[batch, out], DType::F32, 3);
    g.throughput(Throughput::Elements(2 * (batch * inp * out) as u64));
    g.bench_function("f32/x_wT_3500x784x2000", |bch| {
        bch.iter_custom(|iters| timed(iters, Device::Cpu, || x.matmul_nt(&w).expect("x·wᵀ")))
    });
    g.bench_function("f32/gT_x_2000x3500x784", |bch| {
        bch.iter_custom(|iters| timed(iters, Device::Cpu, || grad.matmul_tn(&x).expect("gᵀ·x")))
    });
    g.finish();
}

fn spd(n: usize, dtype: DType) -> Tensor {
    // A covariance of 1.5·n samples: symmetric positive definite like the regulariser's input.
    random(&[n + n / 2, n], dtype, n as u64)
        .covariance()
        .expect("covariance")
}

fn eigh(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("eigh/{BACKEND}/cpu"));
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    for n in [1000, 2000, 2704] {
        for dtype in [DType::F32, DType::F64] {
            let a = spd(n, dtype);
            g.bench_function(
                BenchmarkId::new(format!("{dtype:?}").to_lowercase(), n),
                |bch| {
                    bch.iter_custom(|iters| {
                        timed(iters, Device::Cpu, || a.symmetric_eigen().expect("eigh").0)
                    })
                },
            );
        }
    }
    g.finish();
}

fn cholesky(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("cholesky/{BACKEND}/cpu"));
    g.sample_size(20);
    for n in [800, 1000] {
        let a = spd(n, DType::F32);
        g.bench_function(BenchmarkId::new("f32", n), |bch| {
            bch.iter_custom(|iters| timed(iters, Device::Cpu, || a.cholesky().expect("cholesky")))
        });
    }
    g.finish();
}

criterion_group!(benches, gemm, gemm_layouts, eigh, cholesky);
criterion_main!(benches);
