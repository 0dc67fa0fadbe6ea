//! One vanilla training step (forward + backward + Adam step) of the paper's three networks
//! at their reference batch sizes, in `f32` on the CPU: shallow (B = 3500), MLP (B = 1500),
//! CNN (B = 6000). Inputs are uniform on `[0, 1]`, labels uniform on `0..10`.
//!
//! `cargo bench --bench train_step`. PyTorch 2.15 (CPU, 2 threads) on the reference
//! machine: shallow 397 ms, MLP 153 ms, CNN 2081 ms per step (see `DESIGN.md`).

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use specreg::nn::loss::softmax_cross_entropy;
use specreg::nn::{Adam, AdamConfig, Mode, Network};
use specreg::tensor::{DType, Device, Rng, Tensor};

type Builder = fn(&mut Rng, DType, &Device) -> specreg::nn::Result<Network>;

fn step(net: &mut Network, adam: &mut Adam, x: &Tensor, labels: &[usize]) -> f64 {
    net.zero_grad();
    let pass = net.forward(x, Mode::Train).expect("forward");
    let (loss, gz) = softmax_cross_entropy(&pass.logits, labels).expect("loss");
    net.backward(&gz, &[]).expect("backward");
    adam.step(&mut net.params_mut()).expect("adam step");
    loss.to_scalar().expect("loss")
}

fn train_step(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut g = c.benchmark_group("train_step/cpu/f32");
    g.sample_size(10).measurement_time(Duration::from_secs(16));
    let cases: [(&str, Builder, usize, f64); 3] = [
        ("shallow_b3500", Network::shallow, 3500, 1e-3),
        ("mlp_b1500", Network::mlp, 1500, 1e-4),
        ("cnn_b6000", Network::cnn, 6000, 1e-4),
    ];
    for (name, build, batch, lr) in cases {
        let mut rng = Rng::new(0);
        let mut net = build(&mut rng, DType::F32, &dev).expect("network");
        let mut adam = Adam::new(AdamConfig::new(lr)).expect("adam");
        let x = Tensor::rand_uniform(&[batch, 784], 0.0, 1.0, DType::F32, &mut rng, &dev)
            .expect("inputs");
        let labels: Vec<usize> = (0..batch).map(|_| rng.below(10) as usize).collect();
        g.bench_function(name, |b| {
            b.iter(|| std::hint::black_box(step(&mut net, &mut adam, &x, &labels)))
        });
    }
    g.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
