//! The tensor ops of the hot paths on a CUDA device: GEMM at the paper's layer shapes,
//! symmetric eigendecomposition and Cholesky at the regularised widths, the CNN's
//! convolutions and pooling, softmax cross-entropy, and the spectral penalty's sort.
//!
//! `cargo bench -p specreg-tensor --features cuda --bench cuda_ops` (needs a GPU; without
//! one it says so and exits). Every timed region ends with `Device::synchronize`, so the
//! numbers are work, not queueing; the device is part of every bench id, and GEMM and the
//! convolutions report FLOP/s (criterion's "elem/s": 1 elem = 1 FLOP).
//!
//! Compile-checked, not yet run on a GPU.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use specreg_tensor::{DType, Device, Rng, Tensor};

/// The device to time, or `None` (after saying why) when there is none; with
/// `SPECREG_REQUIRE_CUDA=1` (the GPU bundle's `run.sh`) a missing device is a failure.
fn device() -> Option<Device> {
    match Device::cuda(0) {
        Ok(d) => Some(d),
        Err(e) if std::env::var("SPECREG_REQUIRE_CUDA").is_ok_and(|v| v == "1") => {
            panic!("cuda_ops: SPECREG_REQUIRE_CUDA=1 but: {e}")
        }
        Err(e) => {
            eprintln!("cuda_ops: skipped, no CUDA device ({e})");
            None
        }
    }
}

fn random(shape: &[usize], dtype: DType, seed: u64, dev: &Device) -> Tensor {
    let mut rng = Rng::new(seed);
    Tensor::rand_uniform(shape, -1.0, 1.0, dtype, &mut rng, dev).expect("random tensor")
}

/// Times `iters` calls of `f` with a device sync inside the timed region.
fn timed<T>(iters: u64, dev: Device, mut f: impl FnMut() -> T) -> Duration {
    dev.synchronize().expect("sync");
    let start = Instant::now();
    for _ in 0..iters {
        std::hint::black_box(f());
    }
    dev.synchronize().expect("sync");
    start.elapsed()
}

fn gemm(c: &mut Criterion) {
    let Some(dev) = device() else { return };
    let mut g = c.benchmark_group(format!("gemm/{dev}"));
    g.sample_size(10).measurement_time(Duration::from_secs(2));
    // (m, k, n): the shallow net's first layer, an MLP hidden layer, the CNN's fc layer.
    for (m, k, n) in [(3500, 784, 2000), (1500, 1000, 1000), (6000, 800, 1000)] {
        let a = random(&[m, k], DType::F32, 1, &dev);
        let b = random(&[k, n], DType::F32, 2, &dev);
        g.throughput(Throughput::Elements(2 * (m * k * n) as u64));
        g.bench_function(BenchmarkId::new("f32", format!("{m}x{k}x{n}")), |bch| {
            bch.iter_custom(|iters| timed(iters, dev, || a.matmul(&b).expect("matmul")))
        });
        g.bench_function(BenchmarkId::new("f32 tn", format!("{m}x{k}x{n}")), |bch| {
            let at = random(&[k, m], DType::F32, 3, &dev);
            bch.iter_custom(|iters| timed(iters, dev, || at.matmul_tn(&b).expect("matmul_tn")))
        });
    }
    g.finish();
}

fn spd(n: usize, dtype: DType, dev: &Device) -> Tensor {
    // A covariance of 1.5·n samples: symmetric positive definite like the regulariser's input.
    random(&[n + n / 2, n], dtype, n as u64, dev)
        .covariance()
        .expect("covariance")
}

fn factorisations(c: &mut Criterion) {
    let Some(dev) = device() else { return };
    let mut g = c.benchmark_group(format!("linalg/{dev}"));
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for n in [1000, 2000] {
        for dtype in [DType::F32, DType::F64] {
            let a = spd(n, dtype, &dev);
            let id = format!("{dtype:?}").to_lowercase();
            g.bench_function(BenchmarkId::new(format!("eigh {id}"), n), |bch| {
                bch.iter_custom(|iters| timed(iters, dev, || a.symmetric_eigen().expect("eigh")))
            });
            g.bench_function(BenchmarkId::new(format!("cholesky {id}"), n), |bch| {
                bch.iter_custom(|iters| timed(iters, dev, || a.cholesky().expect("cholesky")))
            });
        }
    }
    g.finish();
}

fn cnn(c: &mut Criterion) {
    let Some(dev) = device() else { return };
    let mut g = c.benchmark_group(format!("cnn/{dev}"));
    g.sample_size(10).measurement_time(Duration::from_secs(2));
    // The CNN's two convolutions (1→16 on 28×28, 16→32 on 13×13) at a batch of 1000.
    for (b, ci, co, hw) in [(1000, 1, 16, 28), (1000, 16, 32, 13)] {
        let x = random(&[b, ci, hw, hw], DType::F32, 4, &dev);
        let w = random(&[co, ci, 3, 3], DType::F32, 5, &dev);
        let y = x.conv2d(&w).expect("conv2d");
        let flops = 2 * (b * co * (hw - 2) * (hw - 2) * ci * 9) as u64;
        let shape = format!("b{b} {ci}to{co} {hw}x{hw}");
        g.throughput(Throughput::Elements(flops));
        g.bench_function(BenchmarkId::new("conv2d", &shape), |bch| {
            bch.iter_custom(|iters| timed(iters, dev, || x.conv2d(&w).expect("conv2d")))
        });
        g.bench_function(BenchmarkId::new("conv2d dx", &shape), |bch| {
            bch.iter_custom(|iters| timed(iters, dev, || y.conv2d_backward_input(&w).expect("dx")))
        });
        g.bench_function(BenchmarkId::new("conv2d dw", &shape), |bch| {
            bch.iter_custom(|iters| {
                timed(iters, dev, || {
                    x.conv2d_backward_weight(&y, 3, 3).expect("dw")
                })
            })
        });
        g.throughput(Throughput::Elements(y.elem_count() as u64));
        g.bench_function(BenchmarkId::new("max_pool2d + backward", &shape), |bch| {
            bch.iter_custom(|iters| {
                timed(iters, dev, || {
                    let (p, arg) = y.max_pool2d().expect("pool");
                    p.max_pool2d_backward(&arg, hw - 2, hw - 2)
                        .expect("pool backward")
                })
            })
        });
    }
    g.finish();
}

fn small_ops(c: &mut Criterion) {
    let Some(dev) = device() else { return };
    let mut g = c.benchmark_group(format!("ops/{dev}"));
    g.sample_size(10).measurement_time(Duration::from_secs(2));
    let logits = random(&[3500, 10], DType::F32, 6, &dev);
    let labels: Vec<usize> = (0..3500).map(|i| i % 10).collect();
    g.bench_function("softmax cross-entropy 3500x10", |bch| {
        bch.iter_custom(|iters| {
            timed(iters, dev, || {
                logits
                    .cross_entropy_per_sample(&labels)
                    .expect("cross entropy")
            })
        })
    });
    let h = random(&[3500, 2000], DType::F32, 7, &dev);
    g.bench_function("tanh + col sums 3500x2000", |bch| {
        bch.iter_custom(|iters| {
            timed(iters, dev, || {
                h.tanh().expect("tanh").sum_axis(0).expect("sum")
            })
        })
    });
    let v = random(&[2000], DType::F32, 8, &dev);
    g.bench_function("argsort + gather 2000", |bch| {
        bch.iter_custom(|iters| {
            timed(iters, dev, || {
                v.gather(&v.argsort_descending().expect("argsort"))
                    .expect("gather")
            })
        })
    });
    g.bench_function("sum_all_f64 3500x2000", |bch| {
        bch.iter_custom(|iters| timed(iters, dev, || h.sum_all_f64().expect("sum")))
    });
    g.finish();
}

criterion_group!(benches, gemm, factorisations, cnn, small_ops);
criterion_main!(benches);
