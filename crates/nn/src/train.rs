//! Training primitives: one epoch of Adam on mini-batches, and batched evaluation.
//!
//! The loop is fixed; regularisers plug in through a *hook* called after every forward
//! pass with the [`ForwardPass`] and the batch labels. It returns the extra loss it adds
//! and the gradients `∂R/∂H` to inject at named hidden representations, which
//! [`Network::backward`] adds on its way down. The step minimises
//! `mean cross-entropy + hook loss`.
//!
//! The batches are the caller's (this crate does not depend on the data crate): the
//! reference settings draw a fresh seeded shuffle each epoch with the last partial batch
//! kept, e.g. `specreg_data::batch_indices(60_000, 1500, Some(seed + epoch))`.
//! Nothing here prints; progress reporting is the caller's.
//!
//! ```
//! use ndarray::Array2;
//! use specreg_nn::{Adam, AdamConfig, Network, evaluate, train_epoch};
//! use specreg_tensor::{DType, Device, Rng};
//!
//! # fn main() -> specreg_nn::Result<()> {
//! let mut rng = Rng::new(0);
//! let mut net = Network::mlp(&mut rng, DType::F32, &Device::Cpu)?;
//! let mut adam = Adam::new(AdamConfig::new(1e-4))?;
//! let images = Array2::<f32>::from_shape_fn((6, 784), |(i, j)| ((i * 7 + j) % 13) as f32 / 13.0);
//! let labels = [0u8, 1, 2, 3, 4, 5];
//! let batches = vec![vec![4, 0, 2, 5], vec![1, 3]]; // the last partial batch is kept
//! let stats = train_epoch(
//!     &mut net,
//!     &mut adam,
//!     images.view(),
//!     &labels,
//!     &batches,
//!     0,
//!     &mut |_pass, _labels| Ok((0.0, Vec::new())), // no regulariser
//! )?;
//! assert_eq!((stats.samples, stats.batches), (6, 2));
//! let acc = evaluate(&mut net, images.view(), &labels, 4)?;
//! assert!((0.0..=1.0).contains(&acc));
//! # Ok(())
//! # }
//! ```

use std::time::Instant;

use ndarray::{ArrayView2, Axis, s};
use specreg_tensor::{DType, Device, Tensor};

use crate::loss::softmax_cross_entropy;
use crate::model::{ForwardPass, Network};
use crate::{Adam, Mode, NnError, Result};

/// The regulariser hook of [`train_epoch`]: given the forward pass and the batch labels,
/// the extra loss and the gradients to inject at named hidden representations.
pub type Hook<'a> = dyn FnMut(&ForwardPass, &[usize]) -> Result<(f64, Vec<(String, Tensor)>)> + 'a;

/// What one epoch of [`train_epoch`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochStats {
    /// Mean total loss (cross-entropy + hook loss) per sample, batches weighted by size.
    pub loss: f64,
    /// Mean cross-entropy per sample.
    pub cross_entropy: f64,
    /// Mean hook (regulariser) loss, batches weighted by size.
    pub extra_loss: f64,
    /// Training accuracy of the train-mode logits, before each step.
    pub accuracy: f64,
    /// Wall-clock seconds of the epoch.
    pub seconds: f64,
    /// Samples seen.
    pub samples: usize,
    /// Batches (optimiser steps).
    pub batches: usize,
}

fn check_data(images: &ArrayView2<'_, f32>, labels: &[u8], what: &str) -> Result<()> {
    if images.nrows() != labels.len() {
        return Err(NnError::InvalidArgument {
            what: what.into(),
            reason: format!("{} images but {} labels", images.nrows(), labels.len()),
        });
    }
    Ok(())
}

/// `rows` (images as `f32`, one per row) as an input tensor of `dtype` on `device`: the
/// conversion every loop over a data set does before a forward pass.
///
/// # Errors
/// The tensor crate's dtype conversion and transfer errors.
pub fn to_input(rows: ndarray::Array2<f32>, dtype: DType, device: &Device) -> Result<Tensor> {
    let mut x = Tensor::from_array(rows);
    if dtype != DType::F32 {
        x = x.to_dtype(dtype)?;
    }
    if !device.is_cpu() {
        x = x.to_device(device)?;
    }
    Ok(x)
}

/// What a training step's loss function reports for one batch: [`train_epoch_with`] calls
/// it after zeroing the gradients, and it must leave `∇_θ(cross_entropy + extra)` in every
/// [`Param::grad`](crate::Param).
#[derive(Debug, Clone)]
pub struct StepLoss {
    /// Mean cross-entropy of the batch.
    pub cross_entropy: f64,
    /// The regularisation added to it.
    pub extra: f64,
    /// The batch's logits (train mode), for the training accuracy.
    pub logits: Tensor,
}

/// A training step's loss and gradients for a batch `(x, labels)`: see [`StepLoss`].
pub type Step<'a> = dyn FnMut(&mut Network, &Tensor, &[usize]) -> Result<StepLoss> + 'a;

/// One epoch of Adam over `batches` (index lists into `images: [N, 784]` / `labels`).
///
/// Per batch: zero the gradients, forward in `Train` mode, mean cross-entropy, call `hook`
/// for the extra loss and the injected gradients, back-propagate both, take one Adam step.
/// `epoch` only labels errors. As in PyTorch, a network with BatchNorm cannot train on a
/// batch of one sample (an error): keep `N mod batch_size ≠ 1`.
///
/// # Errors
/// [`NnError::Diverged`] as soon as a batch's loss is NaN or infinite (before the step);
/// [`NnError::InvalidArgument`] for mismatched data or an index out of range; anything the
/// network, the hook or the optimiser reports.
pub fn train_epoch(
    net: &mut Network,
    adam: &mut Adam,
    images: ArrayView2<'_, f32>,
    labels: &[u8],
    batches: &[Vec<usize>],
    epoch: usize,
    hook: &mut Hook<'_>,
) -> Result<EpochStats> {
    let mut step = |net: &mut Network, x: &Tensor, y: &[usize]| -> Result<StepLoss> {
        let pass = net.forward(x, Mode::Train)?;
        let (ce, gz) = softmax_cross_entropy(&pass.logits, y)?;
        let (extra, injections) = hook(&pass, y)?;
        if (ce + extra).is_finite() {
            net.backward(&gz, &injections)?;
        }
        Ok(StepLoss {
            cross_entropy: ce,
            extra,
            logits: pass.logits,
        })
    };
    train_epoch_with(net, adam, images, labels, batches, epoch, &mut step)
}

/// One epoch of Adam over `batches` with a caller-defined loss: per batch, zero the
/// gradients, let `step` compute the loss and accumulate its gradients (see [`StepLoss`]),
/// check the loss is finite, take one Adam step. [`train_epoch`] is this with the
/// forward–hook–backward step; regularisers that need more than injected gradients (the
/// Jacobian penalty's second-order pass) supply their own `step`.
///
/// # Errors
/// As [`train_epoch`].
pub fn train_epoch_with(
    net: &mut Network,
    adam: &mut Adam,
    images: ArrayView2<'_, f32>,
    labels: &[u8],
    batches: &[Vec<usize>],
    epoch: usize,
    step: &mut Step<'_>,
) -> Result<EpochStats> {
    check_data(&images, labels, "train_epoch")?;
    let start = Instant::now();
    let (dtype, device) = net.dtype_device();
    let (mut total, mut ce_total, mut extra_total) = (0.0, 0.0, 0.0);
    let (mut correct, mut samples, mut steps) = (0usize, 0usize, 0usize);
    for (bi, idx) in batches.iter().enumerate() {
        if idx.is_empty() {
            continue;
        }
        if let Some(&bad) = idx.iter().find(|&&i| i >= labels.len()) {
            return Err(NnError::InvalidArgument {
                what: "train_epoch".into(),
                reason: format!(
                    "batch {bi} holds index {bad}, but there are {} samples",
                    labels.len()
                ),
            });
        }
        let x = to_input(images.select(Axis(0), idx), dtype, &device)?;
        let y: Vec<usize> = idx.iter().map(|&i| usize::from(labels[i])).collect();
        net.zero_grad();
        let out = step(net, &x, &y)?;
        let loss = out.cross_entropy + out.extra;
        if !loss.is_finite() {
            return Err(NnError::Diverged {
                epoch,
                batch: bi,
                loss,
            });
        }
        correct += out
            .logits
            .argmax_rows()?
            .iter()
            .zip(&y)
            .filter(|(p, t)| p == t)
            .count();
        adam.step(&mut net.params_mut())?;
        let n = idx.len();
        total += loss * n as f64;
        ce_total += out.cross_entropy * n as f64;
        extra_total += out.extra * n as f64;
        samples += n;
        steps += 1;
    }
    let per = |v: f64| {
        if samples == 0 {
            0.0
        } else {
            v / samples as f64
        }
    };
    Ok(EpochStats {
        loss: per(total),
        cross_entropy: per(ce_total),
        extra_loss: per(extra_total),
        accuracy: per(correct as f64),
        seconds: start.elapsed().as_secs_f64(),
        samples,
        batches: steps,
    })
}

/// Accuracy of `net` in `Eval` mode on `images: [N, 784]`, in consecutive batches of
/// `batch_size` (the last one partial). Parameter gradients are not touched.
///
/// # Errors
/// [`NnError::InvalidArgument`] for a zero batch size, no data, or mismatched lengths.
pub fn evaluate(
    net: &mut Network,
    images: ArrayView2<'_, f32>,
    labels: &[u8],
    batch_size: usize,
) -> Result<f64> {
    check_data(&images, labels, "evaluate")?;
    if batch_size == 0 || labels.is_empty() {
        return Err(NnError::InvalidArgument {
            what: "evaluate".into(),
            reason: format!(
                "batch size {batch_size} and sample count {} must be positive",
                labels.len()
            ),
        });
    }
    let (dtype, device) = net.dtype_device();
    let mut correct = 0usize;
    let mut start = 0;
    while start < labels.len() {
        let end = (start + batch_size).min(labels.len());
        let x = to_input(images.slice(s![start..end, ..]).to_owned(), dtype, &device)?;
        let pass = net.forward(&x, Mode::Eval)?;
        correct += pass
            .logits
            .argmax_rows()?
            .iter()
            .zip(&labels[start..end])
            .filter(|(p, t)| **p == usize::from(**t))
            .count();
        start = end;
    }
    Ok(correct as f64 / labels.len() as f64)
}
