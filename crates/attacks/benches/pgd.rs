//! PGD-40 (L∞, ε = 0.1, η = 0.01) on 1000 images with the paper's MLP, as PyTorch's anchor
//! measures it: an untrained `Network::mlp` in eval mode, random inputs in [0, 1], f32.
//! PyTorch 2.15 on the 2-core reference machine: 2964 ms.

use criterion::{Criterion, criterion_group, criterion_main};
use specreg_attacks::{PgdConfig, pgd};
use specreg_nn::Network;
use specreg_tensor::{DType, Device, Rng, Tensor};

fn bench_pgd(c: &mut Criterion) {
    let mut rng = Rng::new(0);
    let mut net = Network::mlp(&mut rng, DType::F32, &Device::Cpu).unwrap();
    let x =
        Tensor::rand_uniform(&[1000, 784], 0.0, 1.0, DType::F32, &mut rng, &Device::Cpu).unwrap();
    let labels: Vec<usize> = (0..1000).map(|_| rng.below(10) as usize).collect();
    let cfg = PgdConfig::linf(0.1);
    let mut group = c.benchmark_group("pgd");
    group.sample_size(10);
    group.measurement_time(std::time::Duration::from_secs(30));
    group.bench_function("linf_40_steps_mlp_b1000_cpu", |b| {
        b.iter(|| pgd(&mut net, &x, &labels, &cfg).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_pgd);
criterion_main!(benches);
