//! The training loop: forward, hook, backward and Adam per batch (against the same steps by
//! hand), divergence and hook errors before the step, device-side accuracy, and the exact
//! number of host reads per step, per epoch and per evaluation.

mod common;

use common::{randn, uniform, vals};
use specreg_nn::loss::softmax_cross_entropy;
use specreg_nn::{
    Adam, AdamConfig, BatchNorm1d, ForwardPass, HookOutput, Layer, Linear, Mode, Network, NnError,
    NoHook, Result, Sequential, Tanh, TrainHook, evaluate, train_epoch,
};
use specreg_tensor::{DType, Device, HostReads, Rng, Tensor};

fn small_mlp(rng: &mut Rng) -> Network {
    let dev = Device::Cpu;
    let mut bn = BatchNorm1d::new(5, DType::F64, &dev).unwrap();
    bn.params_mut()[0].value = uniform(&[5], 0.5, 2.0, rng);
    bn.params_mut()[1].value = randn(&[5], rng);
    let seq = Sequential::new()
        .with(Linear::new(6, 5, DType::F64, &dev, rng).unwrap())
        .with(Tanh::new())
        .with(bn)
        .with(Linear::new(5, 4, DType::F64, &dev, rng).unwrap())
        .with(Tanh::new())
        .with(Linear::new(4, 3, DType::F64, &dev, rng).unwrap());
    Network::new(seq, vec![("h2".into(), 4), ("h1".into(), 2)], &[6]).unwrap()
}

#[test]
fn train_epoch_is_forward_hook_backward_adam_per_batch() {
    let mut rng = Rng::new(10);
    let images = ndarray::Array2::from_shape_fn((7, 6), |_| rng.uniform(0.0, 1.0) as f32);
    let labels: Vec<u8> = (0..7).map(|i| (i % 3) as u8).collect();
    let batches = vec![vec![6, 1, 3, 0], vec![5, 2, 4]];
    let c = randn(&[4, 5], &mut rng);
    let c_last = randn(&[3, 5], &mut rng);

    // The hook adds ⟨C, h1⟩ and injects C at h1.
    let weights = |pass: &ForwardPass| -> (Tensor, Tensor) {
        let h = pass.get("h1").unwrap().clone();
        let c = if h.shape()[0] == 4 {
            c.clone()
        } else {
            c_last.clone()
        };
        (c, h)
    };

    let mut net = small_mlp(&mut Rng::new(11));
    let mut adam = Adam::new(AdamConfig::new(1e-2)).unwrap();
    let stats = train_epoch(
        &mut net,
        &mut adam,
        images.view(),
        &labels,
        &batches,
        0,
        &mut |pass: &ForwardPass, y: &[usize]| -> Result<HookOutput> {
            assert_eq!(y.len(), pass.logits.shape()[0]);
            let (c, h) = weights(pass);
            Ok(HookOutput {
                extra: Some(c.mul(&h)?.sum_all_f64()?),
                injections: vec![("h1".to_string(), c)],
                scalars: Vec::new(),
            })
        },
    )
    .unwrap();
    assert_eq!((stats.samples, stats.batches), (7, 2));

    // The same by hand.
    let mut manual = small_mlp(&mut Rng::new(11));
    let mut adam2 = Adam::new(AdamConfig::new(1e-2)).unwrap();
    let (mut total, mut ce_total, mut correct) = (0.0, 0.0, 0);
    for idx in &batches {
        let rows = images.select(ndarray::Axis(0), idx).mapv(f64::from);
        let x = Tensor::from_array(rows);
        let y: Vec<usize> = idx.iter().map(|&i| labels[i] as usize).collect();
        manual.zero_grad();
        let pass = manual.forward(&x, Mode::Train).unwrap();
        let (ce, gz) = softmax_cross_entropy(&pass.logits, &y).unwrap();
        let ce = ce.to_scalar().unwrap();
        let (c, h) = weights(&pass);
        let extra = c.mul(&h).unwrap().sum_all().unwrap();
        manual.backward(&gz, &[("h1".to_string(), c)]).unwrap();
        correct += pass
            .logits
            .argmax_rows()
            .unwrap()
            .iter()
            .zip(&y)
            .filter(|(p, t)| p == t)
            .count();
        adam2.step(&mut manual.params_mut()).unwrap();
        total += (ce + extra) * idx.len() as f64;
        ce_total += ce * idx.len() as f64;
    }
    assert_eq!(stats.loss, total / 7.0);
    assert_eq!(stats.cross_entropy, ce_total / 7.0);
    assert_eq!(stats.accuracy, correct as f64 / 7.0);
    for (a, b) in net.params().iter().zip(manual.params()) {
        assert_eq!(vals(&a.value), vals(&b.value));
    }

    // Evaluation: Eval-mode argmax accuracy, independent of the batch size.
    let x = Tensor::from_array(images.mapv(f64::from));
    let pred = net
        .forward(&x, Mode::Eval)
        .unwrap()
        .logits
        .argmax_rows()
        .unwrap();
    let want = pred
        .iter()
        .zip(&labels)
        .filter(|(p, t)| **p == **t as usize)
        .count() as f64
        / 7.0;
    for bs in [1, 3, 7, 100] {
        assert_eq!(
            evaluate(&mut net, images.view(), &labels, bs).unwrap(),
            want
        );
    }
    assert!(evaluate(&mut net, images.view(), &labels, 0).is_err());
    assert!(evaluate(&mut net, images.view(), &labels[..3], 2).is_err());
}

#[test]
fn train_epoch_reports_divergence() {
    let mut net = small_mlp(&mut Rng::new(12));
    let mut adam = Adam::new(AdamConfig::new(1e-2)).unwrap();
    let images = ndarray::Array2::<f32>::zeros((4, 6));
    let labels = [0u8, 1, 2, 0];
    let mut calls = 0;
    let err = train_epoch(
        &mut net,
        &mut adam,
        images.view(),
        &labels,
        &[vec![0, 1], vec![2, 3]],
        7,
        &mut |_: &ForwardPass, _: &[usize]| -> Result<HookOutput> {
            calls += 1;
            let v = if calls == 2 { f64::NAN } else { 0.0 };
            Ok(HookOutput {
                extra: Some(Tensor::full(v, &[], DType::F64, &Device::Cpu)?),
                ..HookOutput::default()
            })
        },
    )
    .unwrap_err();
    assert!(
        matches!(&err, NnError::NonFinite {
            epoch: 7,
            batch: 1,
            step: 1,
            quantity: specreg_nn::NonFiniteQuantity::Loss { term, value },
            seen: None,
        } if term == "the regulariser loss" && value.is_nan()),
        "{err}"
    );
    let bad = train_epoch(
        &mut net,
        &mut adam,
        images.view(),
        &labels,
        &[vec![0, 9]],
        0,
        &mut NoHook,
    );
    assert!(matches!(bad, Err(NnError::InvalidArgument { .. })));
}

/// A hook that asks for two scalars and refuses a step when the second is negative.
#[derive(Debug, Default)]
struct Watcher {
    seen: Vec<Vec<f64>>,
}

#[derive(Debug, thiserror::Error)]
#[error("negative watch value {0}")]
struct Negative(f64);

impl TrainHook for Watcher {
    fn regularize(&mut self, pass: &ForwardPass, _: &[usize]) -> Result<HookOutput> {
        let h = pass.get("h1").unwrap();
        let sum = h.sum_all_f64()?;
        Ok(HookOutput {
            extra: None,
            injections: Vec::new(),
            scalars: vec![sum.clone(), Tensor::concat(&[&sum.neg()?, &sum])?],
        })
    }

    fn observe(&mut self, values: &[f64]) -> Result<()> {
        self.seen.push(values.to_vec());
        if values[1] < 0.0 {
            return Err(NnError::Hook(Box::new(Negative(values[1]))));
        }
        Ok(())
    }
}

#[test]
fn observe_gets_the_scalars_and_its_error_stops_the_step() {
    let mut net = small_mlp(&mut Rng::new(13));
    let mut rng = Rng::new(14);
    let images = ndarray::Array2::from_shape_fn((4, 6), |_| rng.uniform(0.0, 1.0) as f32);
    let labels = [0u8, 1, 2, 0];
    let before: Vec<Vec<f64>> = net.params().iter().map(|p| vals(&p.value)).collect();
    let mut adam = Adam::new(AdamConfig::new(1e-2)).unwrap();
    let mut hook = Watcher::default();
    let x = Tensor::from_array(images.mapv(f64::from));
    let sum = net
        .forward(&x, Mode::Train)
        .unwrap()
        .get("h1")
        .unwrap()
        .sum_all()
        .unwrap();
    let result = train_epoch(
        &mut net,
        &mut adam,
        images.view(),
        &labels,
        &[vec![0, 1, 2, 3]],
        0,
        &mut hook,
    );
    assert_eq!(hook.seen, vec![vec![sum, -sum, sum]]);
    let after: Vec<Vec<f64>> = net.params().iter().map(|p| vals(&p.value)).collect();
    if sum > 0.0 {
        let err = result.unwrap_err();
        let NnError::Hook(inner) = err.innermost() else {
            panic!("not a hook error: {err}");
        };
        assert_eq!(inner.downcast_ref::<Negative>().map(|n| n.0), Some(-sum));
        assert_eq!(before, after, "no step after a failed observe");
        assert_eq!(adam.steps_taken(), 0);
    } else {
        assert_eq!(result.unwrap().batches, 1);
    }
}

/// Host reads of one epoch of `k` batches of `b` images and of one evaluation, for a paper
/// network without a regulariser.
fn epoch_reads(net: &mut Network, b: usize, k: usize) -> (u64, Vec<&'static str>, u64) {
    let mut rng = Rng::new(5);
    let images = ndarray::Array2::from_shape_fn((b * k, 784), |_| rng.uniform(0.0, 1.0) as f32);
    let labels: Vec<u8> = (0..b * k).map(|i| (i % 10) as u8).collect();
    let batches: Vec<Vec<usize>> = (0..k).map(|j| (j * b..(j + 1) * b).collect()).collect();
    let mut adam = Adam::new(AdamConfig::new(1e-4)).unwrap();
    let reads = HostReads::start();
    train_epoch(
        net,
        &mut adam,
        images.view(),
        &labels,
        &batches,
        0,
        &mut NoHook,
    )
    .unwrap();
    let (count, ops) = (reads.count(), reads.ops());
    let eval = HostReads::start();
    evaluate(net, images.view(), &labels, b).unwrap();
    (count, ops, eval.count())
}

#[test]
fn host_reads_per_training_step_without_a_regularizer() {
    type Builder = fn(&mut Rng, DType, &Device) -> Result<Network>;
    let builders: [(&str, Builder); 3] = [
        ("mlp", Network::mlp),
        ("shallow", Network::shallow),
        ("cnn", Network::cnn),
    ];
    for (name, build) in builders {
        let mut net = build(&mut Rng::new(0), DType::F32, &Device::Cpu).unwrap();
        // Two steps: one read each (the packed losses), one for the epoch's accuracy.
        let (count, ops, eval) = epoch_reads(&mut net, 6, 2);
        assert_eq!(count, 3, "{name}: {ops:?}");
        assert_eq!(ops, ["to_vec", "to_vec", "to_scalar"], "{name}");
        // Evaluation over two batches: one read of the count of correct predictions.
        assert_eq!(eval, 1, "{name}");
    }
}
