//! One training step (forward, regulariser, backward, Adam step, and the read of the step's
//! loss) of the paper's three networks at their reference batch sizes, in `f32`: shallow
//! (B = 3500), MLP (B = 1500), CNN (B = 6000), each vanilla and with SpecReg (projected,
//! sorted, β = 2, τ = 10, α = 1, on every hidden layer PyTorch's anchor regularises:
//! `hidden`; `fc1`–`fc3`; `conv1`, `conv2`, `fc1`), and the MLP also with the logit-Jacobian
//! penalty (β_J = 0.01, one projection) and whitened after `fc2`. The ids,
//! `network_regulariser_bBATCH`, are the rows of `cargo xtask bench-vs-pytorch`. Inputs are
//! uniform on `[0, 1]` and labels uniform on `0..10`, as in PyTorch's anchor; the cases
//! ending in `_mnist` take the first `B` real MNIST training images and labels instead
//! (found as the tests find it, e.g. through `SPECREG_DATA`; skipped with a message when
//! it is not found), whose ~81% zero pixels
//! take the first layer's products onto the sparse-operand kernel
//! (`specreg::tensor::linalg::matmul`).
//!
//! The device comes from `SPECREG_BENCH_DEVICE`: `cpu` (the default), `cuda` or `cuda:N`.
//! Every step ends by reading its loss (and the regulariser's scalars) to the host, as the
//! training loop does: on a GPU that read is the device synchronisation, so the timed
//! region covers the work, not its queueing.
//!
//! `cargo bench --bench train_step` (add `--features cuda` and `SPECREG_BENCH_DEVICE=cuda`
//! for a GPU). PyTorch's own timings come from `cargo xtask bench-vs-pytorch`, which runs
//! both in one sitting.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use specreg::nn::loss::softmax_cross_entropy;
use specreg::nn::{Adam, AdamConfig, Mode, Network, NoHook, TrainHook};
use specreg::regularizers::{
    EigenMode, JacobianKind, JacobianRegularizer, SpectralLayer, SpectralRegularizer, Whitening,
};
use specreg::tensor::{DType, Device, Rng, Tensor};

/// Large buffers freed by one step are reused by the next instead of being mapped afresh
/// (see `BufferCache`); the numbers are unchanged.
#[global_allocator]
static ALLOC: specreg::tensor::BufferCache = specreg::tensor::BufferCache::new();

type Builder = fn(&mut Rng, DType, &Device) -> specreg::nn::Result<Network>;

/// The bench device from `SPECREG_BENCH_DEVICE` (default `cpu`); an unusable one stops the
/// bench with the reason.
fn bench_device() -> Device {
    let name = std::env::var("SPECREG_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    Device::parse(&name).unwrap_or_else(|e| {
        panic!("SPECREG_BENCH_DEVICE={name:?} cannot be used: {e} (expected cpu, cuda or cuda:N)")
    })
}

/// The regulariser of a case.
enum Reg {
    None,
    /// SpecReg on these layers.
    Spectral(&'static [&'static str]),
    /// Whitening inserted after this layer of the given width.
    Whitened(&'static str, usize),
    Jacobian,
}

/// One step of the training loop's hook path: forward, cross-entropy, hook, backward with
/// the injected gradients, one read of the loss and the hook's scalars, the hook's
/// `observe`, Adam. Returns the total loss.
fn hook_step(
    net: &mut Network,
    adam: &mut Adam,
    x: &Tensor,
    labels: &[usize],
    hook: &mut dyn TrainHook,
) -> f64 {
    net.zero_grad();
    let pass = net.forward(x, Mode::Train).expect("forward");
    let (ce, gz) = softmax_cross_entropy(&pass.logits, labels).expect("loss");
    let out = hook.regularize(&pass, labels).expect("regulariser");
    net.backward_params(&gz, &out.injections).expect("backward");
    let total = match &out.extra {
        Some(extra) => ce.add(extra).expect("total loss"),
        None => ce,
    };
    let mut read = vec![&total];
    read.extend(out.scalars.iter());
    let values = Tensor::concat(&read)
        .expect("pack scalars")
        .to_vec::<f64>()
        .expect("read loss");
    hook.observe(&values[1..]).expect("observe");
    adam.step(&mut net.params_mut()).expect("adam step");
    values[0]
}

/// One step of the logit-Jacobian penalty, as its `train_epoch` takes it.
fn jacobian_step(
    net: &mut Network,
    adam: &mut Adam,
    x: &Tensor,
    labels: &[usize],
    jac: &JacobianRegularizer,
    rng: &mut Rng,
) -> f64 {
    net.zero_grad();
    let v = jac.step(net, x, labels, rng).expect("jacobian step");
    let total = v.cross_entropy.add(&v.penalty).expect("total loss");
    let loss = total.to_scalar().expect("read loss");
    adam.step(&mut net.params_mut()).expect("adam step");
    loss
}

fn train_step(c: &mut Criterion) {
    let dev = bench_device();
    let mut g = c.benchmark_group(format!("train_step/{dev}/f32"));
    g.sample_size(10);
    // The long default measurement, unless the command line sets one (the GPU bundle's
    // short run): a group's own setting would override the command line's.
    if !std::env::args().any(|a| a == "--measurement-time") {
        g.measurement_time(Duration::from_secs(16));
    }
    // The cases of `../shared/anchors/pytorch_step_times.py`, named network_regulariser_batch
    // (plus the whitened MLP, which PyTorch's anchor does not time). SpecReg covers the layers
    // the anchor regularises: the shallow net's one hidden layer, every hidden layer of the
    // MLP and of the CNN (the CNN's `conv1` is 2704 wide), each with β = 2.
    let cases: [(&str, Builder, usize, f64, Reg); 11] = [
        (
            "shallow_vanilla_b3500",
            Network::shallow,
            3500,
            1e-3,
            Reg::None,
        ),
        (
            "shallow_spec_b3500",
            Network::shallow,
            3500,
            1e-3,
            Reg::Spectral(&["hidden"]),
        ),
        ("mlp_vanilla_b1500", Network::mlp, 1500, 1e-4, Reg::None),
        (
            "mlp_spec_b1500",
            Network::mlp,
            1500,
            1e-4,
            Reg::Spectral(&["fc1", "fc2", "fc3"]),
        ),
        ("mlp_jac_b1500", Network::mlp, 1500, 1e-4, Reg::Jacobian),
        (
            "mlp_whitened_b1500",
            Network::mlp,
            1500,
            1e-4,
            Reg::Whitened("fc2", 1000),
        ),
        ("cnn_vanilla_b6000", Network::cnn, 6000, 1e-4, Reg::None),
        (
            "cnn_spec_b6000",
            Network::cnn,
            6000,
            1e-4,
            Reg::Spectral(&["conv1", "conv2", "fc1"]),
        ),
        (
            "shallow_vanilla_b3500_mnist",
            Network::shallow,
            3500,
            1e-3,
            Reg::None,
        ),
        (
            "shallow_spec_b3500_mnist",
            Network::shallow,
            3500,
            1e-3,
            Reg::Spectral(&["hidden"]),
        ),
        (
            "mlp_vanilla_b1500_mnist",
            Network::mlp,
            1500,
            1e-4,
            Reg::None,
        ),
    ];
    let mnist = specreg::data::load(specreg::data::DatasetKind::Mnist, None);
    for (name, build, batch, lr, reg) in cases {
        let input = match (name.ends_with("_mnist"), &mnist) {
            (false, _) => Input::Uniform,
            (true, Ok(m)) => Input::Mnist(&m.train),
            (true, Err(e)) => {
                eprintln!("{name}: skipped: {e}");
                continue;
            }
        };
        // Set up on the first call only, so that a filtered-out case costs nothing (the
        // SpecReg refresh eigendecomposes every regularised layer).
        let mut case: Option<Case> = None;
        g.bench_function(name, |b| {
            let c = case.get_or_insert_with(|| Case::new(build, batch, lr, &reg, input, &dev));
            b.iter(|| c.step())
        });
    }
    g.finish();
}

/// Where a case's batch comes from.
#[derive(Clone, Copy)]
enum Input<'a> {
    /// Uniform on `[0, 1]`, labels uniform, as in PyTorch's anchor.
    Uniform,
    /// The first `B` images and labels of this split.
    Mnist(&'a specreg::data::Split),
}

/// A set-up case: the network, its optimiser, a batch and its regulariser.
struct Case {
    net: Network,
    adam: Adam,
    x: Tensor,
    labels: Vec<usize>,
    rng: Rng,
    step: CaseStep,
}

enum CaseStep {
    Hook(Box<dyn TrainHook>),
    Jacobian(JacobianRegularizer),
}

impl Case {
    fn new(
        build: Builder,
        batch: usize,
        lr: f64,
        reg: &Reg,
        input: Input<'_>,
        dev: &Device,
    ) -> Self {
        let mut rng = Rng::new(0);
        let mut net = build(&mut rng, DType::F32, dev).expect("network");
        let adam = Adam::new(AdamConfig::new(lr)).expect("adam");
        let (host, labels): (Tensor, Vec<usize>) = match input {
            Input::Uniform => {
                let x = Tensor::rand_uniform(
                    &[batch, 784],
                    0.0,
                    1.0,
                    DType::F32,
                    &mut rng,
                    &Device::Cpu,
                )
                .expect("inputs");
                (x, (0..batch).map(|_| rng.below(10) as usize).collect())
            }
            Input::Mnist(split) => {
                let (x, labels) = split.subset(batch).into_parts();
                (
                    Tensor::from_array(x),
                    labels.into_iter().map(usize::from).collect(),
                )
            }
        };
        let images = host
            .to_array::<f32>()
            .expect("inputs")
            .into_dimensionality()
            .expect("2-D");
        let x = host.to_device(dev).expect("inputs on the device");
        let step = match *reg {
            Reg::None => CaseStep::Hook(Box::new(NoHook)),
            Reg::Whitened(after, width) => {
                let layer = Whitening::new(after, width, 1e-5)
                    .and_then(|w| w.on(DType::F32, dev))
                    .expect("whitening layer");
                net.insert_after(after, Box::new(layer))
                    .expect("insert whitening");
                CaseStep::Hook(Box::new(NoHook))
            }
            Reg::Spectral(names) => {
                let layers = names
                    .iter()
                    .map(|&name| SpectralLayer {
                        name: name.into(),
                        alpha: 1.0,
                        tau: 10,
                        beta: 2.0,
                    })
                    .collect();
                let mut spec = SpectralRegularizer::new(layers, EigenMode::Projected)
                    .expect("spectral regulariser")
                    .with_sort_projected(true);
                // The per-epoch eigenvector refresh is not part of a step.
                spec.refresh(&mut net, images.view(), batch)
                    .expect("refresh");
                CaseStep::Hook(Box::new(spec))
            }
            Reg::Jacobian => CaseStep::Jacobian(
                JacobianRegularizer::new(JacobianKind::Logit {
                    beta: 0.01,
                    projections: 1,
                })
                .expect("jacobian regulariser"),
            ),
        };
        Self {
            net,
            adam,
            x,
            labels,
            rng,
            step,
        }
    }

    fn step(&mut self) -> f64 {
        let (net, adam, x, labels) = (&mut self.net, &mut self.adam, &self.x, &self.labels);
        match &mut self.step {
            CaseStep::Hook(hook) => hook_step(net, adam, x, labels, hook.as_mut()),
            CaseStep::Jacobian(jac) => jacobian_step(net, adam, x, labels, jac, &mut self.rng),
        }
    }
}

criterion_group!(benches, train_step);
criterion_main!(benches);
