//! PGD-40 (L∞, ε = 0.1, η = 0.01) on 1000 images with the paper's MLP, as PyTorch's anchor
//! measures it: an untrained `Network::mlp` in eval mode, random inputs in [0, 1], f32.
//! PyTorch 2.15 on the 2-core reference machine: 2964 ms.
//!
//! The device comes from `SPECREG_BENCH_DEVICE`: `cpu` (the default), `cuda` or `cuda:N`
//! (build with `--features specreg-tensor/cuda`). The timed region ends with a host read of
//! the adversarial images' sum, so on a GPU it covers the attack's work, not its queueing.

use criterion::{Criterion, criterion_group, criterion_main};
use specreg_attacks::{PgdConfig, pgd};
use specreg_nn::Network;
use specreg_tensor::{DType, Device, Rng, Tensor};

/// Large buffers freed by one step are reused by the next instead of being mapped afresh
/// (see `BufferCache`); the numbers are unchanged.
#[global_allocator]
static ALLOC: specreg_tensor::BufferCache = specreg_tensor::BufferCache::new();

/// The bench device from `SPECREG_BENCH_DEVICE` (default `cpu`); an unusable one stops the
/// bench with the reason.
fn bench_device() -> Device {
    let name = std::env::var("SPECREG_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    Device::parse(&name).unwrap_or_else(|e| {
        panic!("SPECREG_BENCH_DEVICE={name:?} cannot be used: {e} (expected cpu, cuda or cuda:N)")
    })
}

fn bench_pgd(c: &mut Criterion) {
    let dev = bench_device();
    let mut rng = Rng::new(0);
    let mut net = Network::mlp(&mut rng, DType::F32, &dev).expect("network");
    let x =
        Tensor::rand_uniform(&[1000, 784], 0.0, 1.0, DType::F32, &mut rng, &dev).expect("inputs");
    let labels: Vec<usize> = (0..1000).map(|_| rng.below(10) as usize).collect();
    let cfg = PgdConfig::linf(0.1);
    let mut group = c.benchmark_group("pgd");
    group.sample_size(10);
    // The long default measurement, unless the command line sets one (the GPU bundle's
    // short run): a group's own setting would override the command line's.
    if !std::env::args().any(|a| a == "--measurement-time") {
        group.measurement_time(std::time::Duration::from_secs(30));
    }
    group.bench_function(format!("linf_40_steps_mlp_b1000_{}", dev_tag(&dev)), |b| {
        b.iter(|| {
            let out = pgd(&mut net, &x, &labels, &cfg).expect("pgd");
            out.adversarial.sum_all().expect("read adversarial images")
        })
    });
    group.finish();
}

/// `cpu`, or `cudaN` (criterion ids are also file names).
fn dev_tag(dev: &Device) -> String {
    dev.to_string().replace(':', "")
}

criterion_group!(benches, bench_pgd);
criterion_main!(benches);
