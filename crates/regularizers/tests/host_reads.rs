//! The exact number of device→host reads per training step with each regulariser, per
//! eigenvector refresh, and per dataset-statistics pass.
//!
//! A training step reads once (the cross-entropy, the regulariser's terms and every
//! `λ_τ`, packed together) and an epoch once more (the accuracy, counted on the device); a
//! refresh reads once (the covariances' finiteness). The counts depend on the code path,
//! not on the widths, so the regularisers that need an eigendecomposition per refresh or
//! per step (the spectral ones: `eigh` of a 1000×1000 matrix takes half a minute in a debug
//! build) run on small replicas of the paper's networks with the same layer kinds and
//! representation names; the others run on the paper's networks themselves.

use specreg_nn::{
    Adam, AdamConfig, BatchNorm1d, Conv2d, Flatten, Linear, MaxPool2d, Network, NoHook, Result,
    Sequential, Tanh, train_epoch,
};
use specreg_regularizers::{
    EigenMode, JacobianKind, JacobianRegularizer, SpectralLayer, SpectralRegularizer, Whitening,
    representation_statistics,
};
use specreg_tensor::{DType, Device, HostReads, Rng};

const CPU: Device = Device::Cpu;
const BATCH: usize = 60;
const BATCHES: usize = 2;

type Builder = fn(&mut Rng, DType, &Device) -> Result<Network>;

/// The paper's networks and, for each, where the whitening experiments insert the layer.
fn paper_networks() -> [(&'static str, Builder, &'static str); 3] {
    [
        ("mlp", Network::mlp, "fc2"),
        ("shallow", Network::shallow, "hidden"),
        ("cnn", Network::cnn, "conv2"),
    ]
}

/// `784 → 12 → 12 → 12 → 10` with tanh: the MLP's layers and names (`fc1`, `fc2`, `fc3`).
fn mlp_replica(rng: &mut Rng, dtype: DType, dev: &Device) -> Result<Network> {
    let seq = Sequential::new()
        .with(Linear::new(784, 12, dtype, dev, rng)?)
        .with(Tanh::new())
        .with(Linear::new(12, 12, dtype, dev, rng)?)
        .with(Tanh::new())
        .with(Linear::new(12, 12, dtype, dev, rng)?)
        .with(Tanh::new())
        .with(Linear::new(12, 10, dtype, dev, rng)?);
    let hidden = vec![("fc1".into(), 1), ("fc2".into(), 3), ("fc3".into(), 5)];
    Network::new(seq, hidden, &[784])
}

/// `784 → 24, tanh, BatchNorm1d, 24 → 10`: the shallow net's layers (`hidden` post-BN).
fn shallow_replica(rng: &mut Rng, dtype: DType, dev: &Device) -> Result<Network> {
    let seq = Sequential::new()
        .with(Linear::new(784, 24, dtype, dev, rng)?)
        .with(Tanh::new())
        .with(BatchNorm1d::new(24, dtype, dev)?)
        .with(Linear::new(24, 10, dtype, dev, rng)?);
    Network::new(seq, vec![("hidden".into(), 2)], &[784])
}

/// The CNN's layers with one and two channels: `conv1` (169), `conv2` (50), `fc1` (16).
fn cnn_replica(rng: &mut Rng, dtype: DType, dev: &Device) -> Result<Network> {
    let seq = Sequential::new()
        .with(Conv2d::new(1, 1, (3, 3), dtype, dev, rng)?)
        .with(Tanh::new())
        .with(MaxPool2d::new())
        .with(Conv2d::new(1, 2, (3, 3), dtype, dev, rng)?)
        .with(Tanh::new())
        .with(MaxPool2d::new())
        .with(Flatten::new())
        .with(Linear::new(50, 16, dtype, dev, rng)?)
        .with(Tanh::new())
        .with(Linear::new(16, 10, dtype, dev, rng)?);
    let hidden = vec![("conv1".into(), 2), ("conv2".into(), 6), ("fc1".into(), 8)];
    Network::new(seq, hidden, &[1, 28, 28])
}

fn replicas() -> [(&'static str, Builder, &'static str); 3] {
    [
        ("mlp", mlp_replica, "fc2"),
        ("shallow", shallow_replica, "hidden"),
        ("cnn", cnn_replica, "conv2"),
    ]
}

struct Data {
    images: ndarray::Array2<f32>,
    labels: Vec<u8>,
    batches: Vec<Vec<usize>>,
}

fn data() -> Data {
    let mut rng = Rng::new(3);
    let m = BATCH * BATCHES;
    Data {
        images: ndarray::Array2::from_shape_fn((m, 784), |_| rng.uniform(0.0, 1.0) as f32),
        labels: (0..m).map(|i| (i % 10) as u8).collect(),
        batches: (0..BATCHES)
            .map(|j| (j * BATCH..(j + 1) * BATCH).collect())
            .collect(),
    }
}

/// Every regulariser of the experiments.
#[derive(Debug, Clone, Copy)]
enum Variant {
    None,
    SpectralSorted,
    SpectralExact,
    Whitening,
    JacobianInput,
    JacobianLogit,
}

/// The host reads of one epoch of [`BATCHES`] steps with `variant` (after the refresh a
/// projected regulariser needs, not counted here), with the operation of each.
fn epoch_reads(
    mut net: Network,
    after: &str,
    variant: Variant,
    d: &Data,
) -> (u64, Vec<&'static str>) {
    let mut adam = Adam::new(AdamConfig::new(1e-4)).unwrap();
    let names: Vec<String> = net.hidden_names().iter().map(|s| s.to_string()).collect();
    let spectral = |mode| {
        let layers = names
            .iter()
            .map(|n| SpectralLayer {
                tau: 3,
                ..SpectralLayer::new(n.as_str(), 1.0)
            })
            .collect();
        SpectralRegularizer::new(layers, mode).unwrap()
    };
    let (x, y, b) = (d.images.view(), &d.labels[..], &d.batches[..]);
    let jacobian = |kind| JacobianRegularizer::new(kind).unwrap();
    let mut rng = Rng::new(4);
    let reads;
    match variant {
        Variant::None => {
            reads = HostReads::start();
            train_epoch(&mut net, &mut adam, x, y, b, 0, &mut NoHook).unwrap();
        }
        Variant::SpectralSorted | Variant::SpectralExact => {
            let exact = matches!(variant, Variant::SpectralExact);
            let mut spec = spectral(if exact {
                EigenMode::Exact
            } else {
                EigenMode::Projected
            });
            spec.refresh(&mut net, x, BATCH).unwrap();
            assert!(spec.sort_projected());
            reads = HostReads::start();
            train_epoch(&mut net, &mut adam, x, y, b, 0, &mut spec).unwrap();
            assert_eq!(spec.take_epoch_terms().len(), names.len());
            if !exact {
                assert_eq!(spec.take_eigen_errors().len(), names.len(), "diagnosed");
            }
        }
        Variant::Whitening => {
            let (dtype, dev) = net.dtype_device();
            let width = {
                let x0 = specreg_nn::to_input(
                    d.images.slice(ndarray::s![..2, ..]).to_owned(),
                    dtype,
                    &dev,
                );
                net.forward(&x0.unwrap(), specreg_nn::Mode::Eval)
                    .unwrap()
                    .get(after)
                    .unwrap()
                    .shape()[1]
            };
            let w = Whitening::new(after, width, 1e-5)
                .unwrap()
                .on(dtype, &dev)
                .unwrap();
            net.insert_after(after, Box::new(w)).unwrap();
            reads = HostReads::start();
            train_epoch(&mut net, &mut adam, x, y, b, 0, &mut NoHook).unwrap();
        }
        Variant::JacobianInput | Variant::JacobianLogit => {
            let kind = if matches!(variant, Variant::JacobianInput) {
                JacobianKind::InputLoss { beta: 0.01 }
            } else {
                JacobianKind::Logit {
                    beta: 0.01,
                    projections: 1,
                }
            };
            reads = HostReads::start();
            jacobian(kind)
                .train_epoch(&mut net, &mut adam, x, y, b, 0, &mut rng)
                .unwrap();
        }
    }
    (reads.count(), reads.ops())
}

/// One read per step (the packed scalars) and one per epoch (the accuracy).
fn expect_one_per_step(what: &str, (count, ops): (u64, Vec<&'static str>)) {
    let mut want = vec!["to_vec"; BATCHES];
    want.push("to_scalar");
    assert_eq!(count, BATCHES as u64 + 1, "{what}: {ops:?}");
    assert_eq!(ops, want, "{what}");
}

#[test]
fn host_reads_per_training_step_on_replicas_of_the_paper_networks() {
    let d = data();
    for (name, build, after) in replicas() {
        for variant in [
            Variant::None,
            Variant::SpectralSorted,
            Variant::SpectralExact,
            Variant::Whitening,
            Variant::JacobianInput,
            Variant::JacobianLogit,
        ] {
            let net = build(&mut Rng::new(0), DType::F32, &CPU).unwrap();
            let reads = epoch_reads(net, after, variant, &d);
            expect_one_per_step(&format!("{name} replica, {variant:?}"), reads);
        }
    }
}

#[test]
fn host_reads_per_training_step_on_the_paper_networks() {
    let d = data();
    for (name, build, after) in paper_networks() {
        for variant in [
            Variant::None,
            Variant::Whitening,
            Variant::JacobianInput,
            Variant::JacobianLogit,
        ] {
            let net = build(&mut Rng::new(0), DType::F32, &CPU).unwrap();
            let reads = epoch_reads(net, after, variant, &d);
            expect_one_per_step(&format!("{name}, {variant:?}"), reads);
        }
    }
}

#[test]
fn host_reads_per_refresh_and_statistics_pass() {
    let d = data();
    for (name, build, _) in replicas() {
        let mut net = build(&mut Rng::new(0), DType::F32, &CPU).unwrap();
        let names: Vec<String> = net.hidden_names().iter().map(|s| s.to_string()).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let layers = refs
            .iter()
            .map(|n| SpectralLayer {
                tau: 3,
                ..SpectralLayer::new(*n, 1.0)
            })
            .collect();
        let mut spec = SpectralRegularizer::new(layers, EigenMode::Projected).unwrap();
        // Every layer, three chunks: one read in all (the covariances' finiteness).
        let reads = HostReads::start();
        spec.refresh(&mut net, d.images.view(), 40).unwrap();
        assert_eq!(reads.ops(), ["to_vec"], "{name}: refresh");
        drop(reads);
        for i in 0..refs.len() {
            assert!(spec.eigenvectors(i).is_some());
        }
        let reads = HostReads::start();
        let stats = representation_statistics(&mut net, &refs, d.images.view(), 40).unwrap();
        assert_eq!(reads.ops(), ["to_vec"], "{name}: statistics");
        assert_eq!(stats.len(), refs.len());
        assert!(stats.iter().all(|s| s.count == BATCH * BATCHES));
    }
}
