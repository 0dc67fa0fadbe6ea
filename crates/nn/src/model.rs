//! The paper's networks, with named hidden representations.
//!
//! A [`Network`] is a [`Sequential`] plus a list of *hidden representations*: a name and the
//! index of the layer whose **output** is that representation. [`Network::forward`] returns
//! the logits and every representation as a `[B, N]` matrix (a 4-D convolutional output is
//! reported flattened, in row-major order), and [`Network::backward`] back-propagates an
//! arbitrary logit gradient while *adding* injected gradients `∂R/∂H` at the named
//! representations: this is how the spectral regulariser contributes to the weight gradient
//! without the network knowing about it.
//!
//! The builders reproduce the reference implementation (PyTorch, josuenassar/power_law):
//!
//! | builder          | layers                                                       | representations (width)              |
//! |------------------|--------------------------------------------------------------|--------------------------------------|
//! | [`Network::shallow`] | 784 → 2000, tanh, BatchNorm1d, 2000 → 10                 | `hidden` (2000, post-BatchNorm)      |
//! | [`Network::mlp`] | 784 → 1000 → 1000 → 1000 → 10, tanh                          | `fc1`, `fc2`, `fc3` (1000, post-tanh)|
//! | [`Network::cnn`] | conv 3×3 1→16, tanh, maxpool, conv 3×3 16→32, tanh, maxpool, flatten, 800 → 1000, tanh, 1000 → 10 | `conv1` (2704), `conv2` (800), `fc1` (1000) |
//!
//! The CNN's `conv2` is the output of the [`Flatten`] layer (the same values as the second
//! pooled block), so a layer inserted after `conv2` sees `[B, 800]`.
//!
//! # Inserting a layer (whitening)
//!
//! [`Network::insert_after`] puts an extra layer right after a named representation. The
//! representation's name then keeps referring to the **inserted layer's input** (the
//! un-whitened activations): the paper whitens a layer and regularises that same layer, so
//! spectra, regularisers and injected gradients all stay on the representation the network
//! computes, not on its whitened copy. A layer inserted after a 4-D representation sees it
//! flattened to `[B, N]` and its output is reshaped back.

use specreg_tensor::{DType, Device, Rng, Tensor};

use crate::loss::softmax_cross_entropy;
use crate::{
    BatchNorm1d, Conv2d, Flatten, Layer, Linear, MaxPool2d, Mode, NnError, Param, Result,
    Sequential, Tanh,
};

mod insert;

/// What [`Network::forward`] returns.
#[derive(Debug, Clone)]
pub struct ForwardPass {
    /// The logits `[B, K]`.
    pub logits: Tensor,
    /// Every hidden representation, in network order, each as a `[B, N]` matrix.
    pub hidden: Vec<(String, Tensor)>,
}

impl ForwardPass {
    /// The representation called `name`, if the network has one.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.hidden.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// A named hidden representation: the output of layer `layer`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rep {
    name: String,
    layer: usize,
}

/// A [`Sequential`] with named hidden representations and a fixed per-sample input shape.
#[derive(Debug)]
pub struct Network {
    seq: Sequential,
    reps: Vec<Rep>,
    input_shape: Vec<usize>,
    /// Shape of the last forward's input, and of each representation's layer output.
    last_input_shape: Option<Vec<usize>>,
    rep_shapes: Vec<Vec<usize>>,
}

/// `[B, …]` as `[B, N]`.
fn as_matrix(t: &Tensor) -> Result<Tensor> {
    Ok(if t.rank() == 2 {
        t.clone()
    } else {
        t.flatten_from_1()?
    })
}

impl Network {
    /// A network from its layers, its representations (`(name, index of the layer whose
    /// output it is)`) and the per-sample input shape (`[784]`, or `[1, 28, 28]` for a CNN).
    ///
    /// # Errors
    /// [`NnError::InvalidArgument`] for an empty input shape, a representation index out of
    /// range, or a repeated name.
    pub fn new(
        seq: Sequential,
        hidden: Vec<(String, usize)>,
        input_shape: &[usize],
    ) -> Result<Self> {
        let invalid = |reason: String| NnError::InvalidArgument {
            what: "Network::new".into(),
            reason,
        };
        if input_shape.is_empty() || input_shape.contains(&0) {
            return Err(invalid(format!(
                "input shape {input_shape:?} must be non-empty and positive"
            )));
        }
        let mut reps: Vec<Rep> = Vec::with_capacity(hidden.len());
        for (name, layer) in hidden {
            if layer >= seq.len() {
                return Err(invalid(format!(
                    "representation {name:?} is the output of layer {layer}, but there are {} layers",
                    seq.len()
                )));
            }
            if reps.iter().any(|r| r.name == name) {
                return Err(invalid(format!("representation {name:?} is named twice")));
            }
            reps.push(Rep { name, layer });
        }
        reps.sort_by_key(|r| r.layer);
        Ok(Self {
            seq,
            reps,
            input_shape: input_shape.to_vec(),
            last_input_shape: None,
            rep_shapes: Vec::new(),
        })
    }

    /// Experiment 1: `784 → 2000, tanh, BatchNorm1d(2000), 2000 → 10`; representation
    /// `hidden` is the post-BatchNorm output.
    pub fn shallow(rng: &mut Rng, dtype: DType, device: &Device) -> Result<Self> {
        let seq = Sequential::new()
            .with(Linear::new(784, 2000, dtype, device, rng)?)
            .with(Tanh::new())
            .with(BatchNorm1d::new(2000, dtype, device)?)
            .with(Linear::new(2000, 10, dtype, device, rng)?);
        Self::new(seq, vec![("hidden".into(), 2)], &[784])
    }

    /// Experiment 1 without BatchNorm, as in the reference implementation's vanilla net and
    /// the paper's appendix: `784 → 2000, tanh, 2000 → 10`; representation `hidden` is the
    /// post-tanh output. Initialised from `rng` in the same order as [`Network::shallow`]
    /// (BatchNorm draws nothing), so the same seed gives the same linear layers.
    pub fn shallow_without_batchnorm(rng: &mut Rng, dtype: DType, device: &Device) -> Result<Self> {
        let seq = Sequential::new()
            .with(Linear::new(784, 2000, dtype, device, rng)?)
            .with(Tanh::new())
            .with(Linear::new(2000, 10, dtype, device, rng)?);
        Self::new(seq, vec![("hidden".into(), 1)], &[784])
    }

    /// Experiments 2 and 3: `784 → 1000 → 1000 → 1000 → 10` with tanh; representations
    /// `fc1`, `fc2`, `fc3` are the post-tanh outputs.
    pub fn mlp(rng: &mut Rng, dtype: DType, device: &Device) -> Result<Self> {
        let seq = Sequential::new()
            .with(Linear::new(784, 1000, dtype, device, rng)?)
            .with(Tanh::new())
            .with(Linear::new(1000, 1000, dtype, device, rng)?)
            .with(Tanh::new())
            .with(Linear::new(1000, 1000, dtype, device, rng)?)
            .with(Tanh::new())
            .with(Linear::new(1000, 10, dtype, device, rng)?);
        let hidden = vec![("fc1".into(), 1), ("fc2".into(), 3), ("fc3".into(), 5)];
        Self::new(seq, hidden, &[784])
    }

    /// Experiments 2 and 3: conv 3×3 1→16, tanh, maxpool 2, conv 3×3 16→32, tanh, maxpool 2,
    /// flatten, 800 → 1000, tanh, 1000 → 10 (no padding: 28 → 26 → 13 → 11 → 5).
    /// Representations: `conv1` (the first pooled block, 16·13·13 = 2704), `conv2` (the
    /// flattened second block, 800), `fc1` (post-tanh, 1000). Inputs `[B, 784]` are viewed
    /// as `[B, 1, 28, 28]`.
    pub fn cnn(rng: &mut Rng, dtype: DType, device: &Device) -> Result<Self> {
        let seq = Sequential::new()
            .with(Conv2d::new(1, 16, (3, 3), dtype, device, rng)?)
            .with(Tanh::new())
            .with(MaxPool2d::new())
            .with(Conv2d::new(16, 32, (3, 3), dtype, device, rng)?)
            .with(Tanh::new())
            .with(MaxPool2d::new())
            .with(Flatten::new())
            .with(Linear::new(800, 1000, dtype, device, rng)?)
            .with(Tanh::new())
            .with(Linear::new(1000, 10, dtype, device, rng)?);
        let hidden = vec![("conv1".into(), 2), ("conv2".into(), 6), ("fc1".into(), 8)];
        Self::new(seq, hidden, &[1, 28, 28])
    }

    /// The representation names, in network order.
    pub fn hidden_names(&self) -> Vec<&str> {
        self.reps.iter().map(|r| r.name.as_str()).collect()
    }

    /// The index of the layer whose output is representation `name`.
    ///
    /// # Errors
    /// [`NnError::UnknownRepresentation`] listing the valid names when there is none called `name`.
    pub fn hidden_layer_index(&self, name: &str) -> Result<usize> {
        self.rep(name).map(|r| r.layer)
    }

    fn rep(&self, name: &str) -> Result<&Rep> {
        self.rep_index(name).map(|k| &self.reps[k])
    }

    fn rep_index(&self, name: &str) -> Result<usize> {
        self.reps
            .iter()
            .position(|r| r.name == name)
            .ok_or_else(|| NnError::UnknownRepresentation {
                name: name.into(),
                available: self.hidden_names().iter().map(|n| n.to_string()).collect(),
            })
    }

    /// The per-sample input shape (`[784]` or `[1, 28, 28]`).
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// The layers.
    pub fn sequential(&self) -> &Sequential {
        &self.seq
    }

    /// The layers, mutably.
    pub fn sequential_mut(&mut self) -> &mut Sequential {
        &mut self.seq
    }

    /// The trainable parameters.
    pub fn params(&self) -> Vec<&Param> {
        self.seq.params()
    }

    /// The trainable parameters, mutably (what the optimiser steps).
    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        self.seq.params_mut()
    }

    /// Clears every parameter gradient.
    pub fn zero_grad(&mut self) {
        self.seq.zero_grad();
    }

    /// Whether, in `mode`, each sample's outputs depend on that sample alone: no layer
    /// normalises with its batch's statistics (BatchNorm in `Train` or `BatchStatistics`
    /// mode, a whitening layer on batch statistics in any mode).
    pub fn samples_independent(&self, mode: Mode) -> bool {
        !self.seq.mixes_samples(mode)
    }

    /// The parameters' dtype (that of the first parameter; `F32` for a parameter-free
    /// network) and device.
    pub fn dtype_device(&self) -> (DType, Device) {
        self.seq
            .params()
            .first()
            .map(|p| (p.value.dtype(), p.value.device()))
            .unwrap_or((DType::F32, Device::Cpu))
    }

    /// The logits and every hidden representation (as `[B, N]`) of `x: [B, …]`, whose
    /// per-sample size must match the network's input shape (`[B, 784]` is viewed as
    /// `[B, 1, 28, 28]` for the CNN).
    pub fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<ForwardPass> {
        let b = *x.shape().first().unwrap_or(&0);
        let per: usize = self.input_shape.iter().product();
        if x.rank() < 2 || x.elem_count() != b * per || b == 0 {
            return Err(NnError::ShapeMismatch {
                layer: "network input".into(),
                expected: format!("[B > 0, …] with {per} values per sample"),
                got: x.shape().to_vec(),
            });
        }
        let mut shape = vec![b];
        shape.extend_from_slice(&self.input_shape);
        let mut h = if x.shape() == shape.as_slice() {
            x.clone()
        } else {
            x.reshape(&shape)?
        };
        let mut hidden = Vec::with_capacity(self.reps.len());
        let mut rep_shapes = Vec::with_capacity(self.reps.len());
        let mut next = 0;
        for (i, layer) in self.seq.layers_mut().iter_mut().enumerate() {
            h = layer.forward(&h, mode)?;
            while next < self.reps.len() && self.reps[next].layer == i {
                hidden.push((self.reps[next].name.clone(), as_matrix(&h)?));
                rep_shapes.push(h.shape().to_vec());
                next += 1;
            }
        }
        self.last_input_shape = Some(x.shape().to_vec());
        self.rep_shapes = rep_shapes;
        Ok(ForwardPass { logits: h, hidden })
    }

    /// Back-propagates `grad_logits` (any upstream gradient at the logits, e.g. a
    /// logit-Jacobian product), **adding** each injected `(name, ∂R/∂H)` at its
    /// representation when the pass reaches it (an injection is `[B, N]` like the
    /// representation, or the layer output's own shape). Parameter gradients accumulate;
    /// returns the gradient with respect to the input, in the shape given to `forward`.
    ///
    /// # Errors
    /// Unknown names (listing the valid ones), wrong shapes, or no `forward` before.
    pub fn backward(
        &mut self,
        grad_logits: &Tensor,
        injections: &[(String, Tensor)],
    ) -> Result<Tensor> {
        let g = self.backward_to_first(grad_logits, injections, false)?;
        let g = self.first_layer()?.backward(&g)?;
        self.in_input_shape(g)
    }

    /// [`Network::backward`] for training: the same parameter gradients, bit for bit, but
    /// no gradient with respect to the input, which training never reads. The first layer
    /// runs [`Layer::backward_params`], skipping its input-gradient product (for the
    /// shallow net, a third of the step's GEMM work).
    ///
    /// # Errors
    /// As [`Network::backward`].
    pub fn backward_params(
        &mut self,
        grad_logits: &Tensor,
        injections: &[(String, Tensor)],
    ) -> Result<()> {
        let g = self.backward_to_first(grad_logits, injections, false)?;
        self.first_layer()?.backward_params(&g)
    }

    /// [`Network::backward`] without parameter gradients: only `∂/∂x` of the logit gradient
    /// plus the injections, with every [`Param::grad`] left as it was (each layer's
    /// [`Layer::backward_input`]). This is what attacks and sensitivity maps need, at about
    /// two thirds of the cost of a full backward pass.
    pub fn backward_input(
        &mut self,
        grad_logits: &Tensor,
        injections: &[(String, Tensor)],
    ) -> Result<Tensor> {
        let g = self.backward_to_first(grad_logits, injections, true)?;
        let g = self.first_layer()?.backward_input(&g)?;
        self.in_input_shape(g)
    }

    fn first_layer(&mut self) -> Result<&mut Box<dyn Layer>> {
        self.seq
            .layers_mut()
            .first_mut()
            .ok_or_else(|| NnError::InvalidArgument {
                what: "Network::backward".into(),
                reason: "the network has no layers".into(),
            })
    }

    /// An input gradient in the shape the last `forward` was given.
    fn in_input_shape(&self, g: Tensor) -> Result<Tensor> {
        match &self.last_input_shape {
            Some(shape) if g.shape() != shape.as_slice() => Ok(g.reshape(shape)?),
            _ => Ok(g),
        }
    }

    /// The backward pass (with [`Layer::backward_input`] when `input_only`) through every
    /// layer but the first, adding the injections (those at the first layer's output too):
    /// the gradient at the first layer's output.
    fn backward_to_first(
        &mut self,
        grad_logits: &Tensor,
        injections: &[(String, Tensor)],
        input_only: bool,
    ) -> Result<Tensor> {
        if self.last_input_shape.is_none() {
            return Err(NnError::BackwardBeforeForward {
                layer: "network".into(),
            });
        }
        // Resolve every injection to (layer index, reshaped gradient) before touching layers.
        let mut resolved: Vec<(usize, Tensor)> = Vec::with_capacity(injections.len());
        for (name, g) in injections {
            let k = self.rep_index(name)?;
            let shape = &self.rep_shapes[k];
            let count: usize = shape.iter().product();
            if g.elem_count() != count || g.shape().first() != shape.first() {
                return Err(NnError::ShapeMismatch {
                    layer: format!("injection at {name}"),
                    expected: format!("[{}, {}]", shape[0], count / shape[0].max(1)),
                    got: g.shape().to_vec(),
                });
            }
            let g = if g.shape() == shape.as_slice() {
                g.clone()
            } else {
                g.reshape(shape)?
            };
            resolved.push((self.reps[k].layer, g));
        }
        let mut g = grad_logits.clone();
        for (i, layer) in self.seq.layers_mut().iter_mut().enumerate().rev() {
            for (at, inj) in &resolved {
                if *at == i {
                    g = g.add(inj)?;
                }
            }
            if i == 0 {
                break;
            }
            g = if input_only {
                layer.backward_input(&g)?
            } else {
                layer.backward(&g)?
            };
        }
        Ok(g)
    }

    /// The mean cross-entropy `L̄ = (1/B) Σ_n L_n` of `x` against `labels` (a 0-D `f64`
    /// tensor on the device) and its gradient with respect to `x`, `∂L̄/∂x`, in the shape
    /// of `x`: the gradient **of the mean**, so sample `n`'s own `∂L_n/∂x_n` is `B` times
    /// its row (when samples do not interact; with BatchNorm in `Train` mode they do, and
    /// this is the gradient of the mean through the batch statistics). This is the
    /// network's one input-gradient entry point. Parameter gradients are left exactly as
    /// they were (in `Train` mode BatchNorm still updates its running statistics).
    pub fn input_gradient(
        &mut self,
        x: &Tensor,
        labels: &[usize],
        mode: Mode,
    ) -> Result<(Tensor, Tensor)> {
        let pass = self.forward(x, mode)?;
        let (loss, gz) = softmax_cross_entropy(&pass.logits, labels)?;
        let gx = self.backward_input(&gz, &[])?;
        Ok((loss, gx))
    }
}
