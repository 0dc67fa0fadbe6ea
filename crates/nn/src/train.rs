//! Training primitives: one epoch of Adam on mini-batches, and batched evaluation.
//!
//! The loop is fixed; regularisers plug in through a [`TrainHook`] called after every
//! forward pass with the [`ForwardPass`] and the batch labels. It returns the extra loss it
//! adds and the gradients `∂R/∂H` to inject at named hidden representations, which
//! [`Network::backward`] adds on its way down. The step minimises
//! `mean cross-entropy + hook loss`.
//!
//! **Host reads.** Everything a step computes stays on the network's device except one
//! read per step: the cross-entropy, the hook's loss and any further scalars the hook asks
//! for ([`HookOutput::scalars`], handed back to [`TrainHook::observe`]) are packed into one
//! vector and read together, to check them before the optimiser step. The training
//! accuracy is counted on the device and read once per epoch: an epoch of `k` batches
//! makes `k + 1` host reads.
//!
//! **Numerical guards.** The same read carries one probe per parameter gradient (its sum
//! in `f64`, NaN or infinite when an entry is). A step whose loss or a gradient is not
//! finite stops training with [`NnError::NonFinite`] naming the epoch, batch and global
//! step, the quantity and the layer, before the optimiser step; only then are more host
//! reads spent, to name the first layer whose output is not finite. A layer's or the
//! hook's failure inside a step (a whitening Cholesky factorisation, an
//! eigendecomposition, `λ_τ ≤ 0`) comes back as [`NnError::AtStep`]. See the `guards`
//! module for what is checked where.
//!
//! The batches are the caller's (this crate does not depend on the data crate): the
//! reference settings draw a fresh seeded shuffle each epoch with the last partial batch
//! kept, e.g. `specreg_data::batch_indices(60_000, 1500, Some(seed + epoch))`.
//! Nothing here prints; progress reporting is the caller's.
//!
//! ```
//! use ndarray::Array2;
//! use specreg_nn::{Adam, AdamConfig, Network, NoHook, evaluate, train_epoch};
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
//!     &mut NoHook, // no regulariser
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
use crate::{Adam, Mode, NnError, NonFiniteQuantity, Result};

mod guards;

/// What a [`TrainHook`] adds to one training step.
#[derive(Debug, Clone, Default)]
pub struct HookOutput {
    /// The extra loss (a 0-D tensor, read in `f64`), or `None` for none.
    pub extra: Option<Tensor>,
    /// The gradients `∂(extra)/∂H` to inject at named hidden representations.
    pub injections: Vec<(String, Tensor)>,
    /// Further 0-D or 1-D tensors to read in the step's one host read (e.g. quantities the
    /// hook must check before the optimiser step); their values, in `f64` and in order,
    /// go to [`TrainHook::observe`].
    pub scalars: Vec<Tensor>,
}

/// A regulariser's part in [`train_epoch`]: what it adds after each forward pass, and what
/// it does with the values of the scalars it asked for once they are read.
pub trait TrainHook {
    /// The extra loss, injected gradients and scalars for the batch whose forward pass is
    /// `pass` (labels `labels`).
    fn regularize(&mut self, pass: &ForwardPass, labels: &[usize]) -> Result<HookOutput>;

    /// The host values of the last [`HookOutput::scalars`], flattened in order, before the
    /// optimiser step; an error stops training before the step. The default ignores them.
    fn observe(&mut self, values: &[f64]) -> Result<()> {
        let _ = values;
        Ok(())
    }
}

/// Any `FnMut(&ForwardPass, &[usize]) -> Result<HookOutput>` is a hook that observes
/// nothing.
impl<F> TrainHook for F
where
    F: FnMut(&ForwardPass, &[usize]) -> Result<HookOutput>,
{
    fn regularize(&mut self, pass: &ForwardPass, labels: &[usize]) -> Result<HookOutput> {
        self(pass, labels)
    }
}

/// The hook of unregularised training: no extra loss.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHook;

impl TrainHook for NoHook {
    fn regularize(&mut self, _: &ForwardPass, _: &[usize]) -> Result<HookOutput> {
        Ok(HookOutput::default())
    }
}

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
    /// Mean cross-entropy of the batch (a 0-D tensor, read in `f64`).
    pub cross_entropy: Tensor,
    /// The regularisation added to it (a 0-D tensor), or `None` for none.
    pub extra: Option<Tensor>,
    /// The batch's logits (train mode), for the training accuracy.
    pub logits: Tensor,
}

/// A training step's loss and gradients for a batch `(x, labels)`: see [`StepLoss`].
pub type Step<'a> = dyn FnMut(&mut Network, &Tensor, &[usize]) -> Result<StepLoss> + 'a;

/// One epoch of Adam over `batches` (index lists into `images: [N, 784]` / `labels`).
///
/// Per batch: zero the gradients, forward in `Train` mode, mean cross-entropy, call the
/// hook for the extra loss and the injected gradients, back-propagate both, read the
/// step's scalars (once), let the hook [`observe`](TrainHook::observe) its own, check the
/// loss, take one Adam step. `epoch` only labels errors. As in PyTorch, a network with
/// BatchNorm cannot train on a batch of one sample (an error): keep `N mod batch_size ≠ 1`.
///
/// # Errors
/// Before any optimiser step of the failing batch: [`NnError::NonFinite`] when the batch's
/// input, a layer's output, the cross-entropy, the hook's loss or a parameter gradient
/// holds a NaN or an infinity (the first non-finite input or layer output is named when
/// there is one); [`NnError::AtStep`] around anything the network or the hook reports
/// during the step, `observe` included (a hook's error wins over a non-finite loss when no
/// input or layer output is at fault). [`NnError::InvalidArgument`] for mismatched data or
/// an index out of range; anything the optimiser reports.
pub fn train_epoch(
    net: &mut Network,
    adam: &mut Adam,
    images: ArrayView2<'_, f32>,
    labels: &[u8],
    batches: &[Vec<usize>],
    epoch: usize,
    hook: &mut dyn TrainHook,
) -> Result<EpochStats> {
    run_epoch(
        net,
        adam,
        images,
        labels,
        batches,
        epoch,
        &mut HookStep(hook),
    )
}

/// One epoch of Adam over `batches` with a caller-defined loss: per batch, zero the
/// gradients, let `step` compute the loss and accumulate its gradients (see [`StepLoss`]),
/// read the loss (once), check it is finite, take one Adam step. [`train_epoch`] is this
/// with the forward–hook–backward step; regularisers that need more than injected
/// gradients (the Jacobian penalty's second-order pass) supply their own `step`.
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
    run_epoch(net, adam, images, labels, batches, epoch, &mut FnStep(step))
}

/// A step of the loop: its loss and scalars, and what to do with the scalars' values.
trait Stepper {
    fn step(
        &mut self,
        net: &mut Network,
        x: &Tensor,
        y: &[usize],
    ) -> Result<(StepLoss, Vec<Tensor>)>;
    fn observe(&mut self, values: &[f64]) -> Result<()>;
}

struct HookStep<'a>(&'a mut dyn TrainHook);

impl Stepper for HookStep<'_> {
    fn step(
        &mut self,
        net: &mut Network,
        x: &Tensor,
        y: &[usize],
    ) -> Result<(StepLoss, Vec<Tensor>)> {
        let pass = net.forward(x, Mode::Train)?;
        let (ce, gz) = softmax_cross_entropy(&pass.logits, y)?;
        let out = self.0.regularize(&pass, y)?;
        net.backward_params(&gz, &out.injections)?;
        let loss = StepLoss {
            cross_entropy: ce,
            extra: out.extra,
            logits: pass.logits,
        };
        Ok((loss, out.scalars))
    }

    fn observe(&mut self, values: &[f64]) -> Result<()> {
        self.0.observe(values)
    }
}

struct FnStep<'a, 'b>(&'a mut Step<'b>);

impl Stepper for FnStep<'_, '_> {
    fn step(
        &mut self,
        net: &mut Network,
        x: &Tensor,
        y: &[usize],
    ) -> Result<(StepLoss, Vec<Tensor>)> {
        Ok(((self.0)(net, x, y)?, Vec::new()))
    }

    fn observe(&mut self, _: &[f64]) -> Result<()> {
        Ok(())
    }
}

/// The labels as a `[B]` tensor in `like`'s dtype, on its device (to compare with
/// [`Tensor::row_argmax`]).
fn label_tensor(labels: &[usize], like: &Tensor) -> Result<Tensor> {
    let v: Vec<f64> = labels.iter().map(|&y| y as f64).collect();
    let t = Tensor::from_vec(v, &[labels.len()], &Device::Cpu)?.to_dtype(like.dtype())?;
    Ok(if like.device().is_cpu() {
        t
    } else {
        t.to_device(&like.device())?
    })
}

/// How many rows of `logits` have their largest entry at the label, as a 0-D `f64`
/// tensor on the logits' device.
fn correct_count(logits: &Tensor, labels: &[usize]) -> Result<Tensor> {
    let hits = logits.row_argmax()?.equal(&label_tensor(labels, logits)?)?;
    Ok(hits.sum_all_f64()?)
}

/// Checks that a step's loss is one number.
fn check_scalar(t: &Tensor, what: &str) -> Result<()> {
    if t.elem_count() != 1 {
        return Err(NnError::InvalidArgument {
            what: "train_epoch".into(),
            reason: format!("{what} must be a single number, got shape {:?}", t.shape()),
        });
    }
    Ok(())
}

/// Adds `more` into the device accumulator `acc`.
fn accumulate(acc: Option<Tensor>, more: Tensor) -> Result<Option<Tensor>> {
    Ok(Some(match acc {
        Some(a) => a.add(&more)?,
        None => more,
    }))
}

/// Reads a 0-D accumulator (0 when there is none): one host read.
fn read_count(acc: Option<Tensor>) -> Result<f64> {
    match acc {
        Some(t) => Ok(t.to_scalar()?),
        None => Ok(0.0),
    }
}

#[allow(clippy::too_many_arguments)]
fn run_epoch(
    net: &mut Network,
    adam: &mut Adam,
    images: ArrayView2<'_, f32>,
    labels: &[u8],
    batches: &[Vec<usize>],
    epoch: usize,
    stepper: &mut dyn Stepper,
) -> Result<EpochStats> {
    check_data(&images, labels, "train_epoch")?;
    let start = Instant::now();
    let (dtype, device) = net.dtype_device();
    let (mut total, mut ce_total, mut extra_total) = (0.0, 0.0, 0.0);
    let (mut samples, mut steps) = (0usize, 0usize);
    let mut correct: Option<Tensor> = None;
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
        let step = adam.steps_taken();
        net.zero_grad();
        let (out, scalars) = stepper
            .step(net, &x, &y)
            .map_err(|e| e.at_step(epoch, bi, step))?;
        check_scalar(&out.cross_entropy, "the cross-entropy")?;
        if let Some(e) = &out.extra {
            check_scalar(e, "the extra loss")?;
        }
        let mut parts = vec![out.cross_entropy.to_dtype(DType::F64)?];
        if let Some(e) = &out.extra {
            parts.push(e.to_dtype(DType::F64)?);
        }
        let head = parts.len();
        for t in &scalars {
            parts.push(t.to_dtype(DType::F64)?);
        }
        let probes = guards::gradient_probes(net)?;
        parts.extend(probes.iter().map(|(_, p)| p.clone()));
        let refs: Vec<&Tensor> = parts.iter().collect();
        // The step's one host read: the losses, the hook's scalars and the gradient probes.
        let values = Tensor::concat(&refs)?.to_vec::<f64>()?;
        let (scalar_end, probe_values) = values.split_at(values.len() - probes.len());
        let ce = values[0];
        let extra = if out.extra.is_some() { values[1] } else { 0.0 };
        let observed = stepper.observe(&scalar_end[head..]);
        let found = if !ce.is_finite() {
            Some(NonFiniteQuantity::Loss {
                term: "the cross-entropy".into(),
                value: ce,
            })
        } else if !extra.is_finite() {
            Some(NonFiniteQuantity::Loss {
                term: "the regulariser loss".into(),
                value: extra,
            })
        } else if !(ce + extra).is_finite() {
            Some(NonFiniteQuantity::Loss {
                term: "the total loss (cross-entropy + regulariser)".into(),
                value: ce + extra,
            })
        } else {
            guards::non_finite_gradient(net, &probes, probe_values)?
        };
        let stop = |quantity, seen| NnError::NonFinite {
            epoch,
            batch: bi,
            step,
            quantity,
            seen,
        };
        if found.is_some() || observed.is_err() {
            // Failure path only: name the first input or layer output that is not finite.
            if let Some(q) = guards::first_non_finite_activation(net, &x) {
                return Err(stop(q, found.map(|f| f.to_string())));
            }
        }
        observed.map_err(|e| e.at_step(epoch, bi, step))?;
        if let Some(q) = found {
            return Err(stop(q, None));
        }
        let loss = ce + extra;
        correct = accumulate(correct, correct_count(&out.logits, &y)?)?;
        adam.step(&mut net.params_mut())?;
        let n = idx.len();
        total += loss * n as f64;
        ce_total += ce * n as f64;
        extra_total += extra * n as f64;
        samples += n;
        steps += 1;
    }
    let correct = read_count(correct)?;
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
        accuracy: per(correct),
        seconds: start.elapsed().as_secs_f64(),
        samples,
        batches: steps,
    })
}

/// Accuracy of `net` in `Eval` mode on `images: [N, 784]`, in consecutive batches of
/// `batch_size` (the last one partial). Parameter gradients are not touched. The correct
/// predictions are counted on the device and read once.
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
    let mut correct: Option<Tensor> = None;
    let mut start = 0;
    while start < labels.len() {
        let end = (start + batch_size).min(labels.len());
        let x = to_input(images.slice(s![start..end, ..]).to_owned(), dtype, &device)?;
        let pass = net.forward(&x, Mode::Eval)?;
        let y: Vec<usize> = labels[start..end].iter().map(|&l| usize::from(l)).collect();
        correct = accumulate(correct, correct_count(&pass.logits, &y)?)?;
        start = end;
    }
    Ok(read_count(correct)? / labels.len() as f64)
}
