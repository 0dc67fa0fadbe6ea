//! A stack of layers, and the Jacobian regulariser computed with it.
//!
//! `f = f_L ∘ ⋯ ∘ f_1` maps `x: [B, …]` to logits `z: [B, K]`. Every pass runs through the
//! layers in order (forward, forward tangent) or in reverse (backward, backward tangent).
//!
//! The Jacobian penalty (eq. 11 of Nassar et al.) is, with `L_n` the loss of sample `n` and
//! `L̄ = (1/B) Σ_n L_n` the mean loss,
//!
//! `P = (β/B) Σ_n ‖∂L_n/∂x_n‖² = β B ‖G‖²`, `G = ∂L̄/∂x: [B, …]`,
//!
//! since `∂L_n/∂x_n = B G_n` when samples do not interact. Its parameter gradient is
//! `∇_θ P = 2βB (∂G/∂θ)ᵀ G = 2βB R_G{∇_θ L̄}` (symmetry of mixed partials), which one
//! tangent pass along `dx = G` gives exactly.

use std::collections::{HashMap, HashSet};

use specreg_tensor::Tensor;

use crate::loss::{softmax_cross_entropy, softmax_cross_entropy_tangent};
use crate::{Layer, Mode, NnError, Param, Result};

/// Layers applied in order; itself a [`Layer`].
#[derive(Debug, Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Layer>>,
}

/// What [`Sequential::jacobian_penalty_grad`] returns.
#[derive(Debug, Clone)]
pub struct JacobianStep {
    /// The mean cross-entropy `L̄`.
    pub loss: f64,
    /// The penalty `P = (β/B) Σ_n ‖∂L_n/∂x_n‖²`.
    pub penalty: f64,
    /// The logits `z: [B, K]`.
    pub logits: Tensor,
    /// `G = ∂L̄/∂x`, the input gradient of the mean loss (`B G_n` is sample `n`'s own).
    pub input_grad: Tensor,
}

impl Sequential {
    /// An empty stack (the identity).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer (builder style).
    pub fn with(mut self, layer: impl Layer + 'static) -> Self {
        self.push(layer);
        self
    }

    /// Appends a layer.
    pub fn push(&mut self, layer: impl Layer + 'static) {
        self.layers.push(Box::new(layer));
    }

    /// The layers.
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }

    /// The layers, mutably.
    pub fn layers_mut(&mut self) -> &mut [Box<dyn Layer>] {
        &mut self.layers
    }

    /// The number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Parameters with qualified names `"{index}.{layer}.{param}"`.
    pub fn named_params(&self) -> Vec<(String, &Param)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            for p in l.params() {
                out.push((format!("{i}.{}.{}", l.name(), p.name), p));
            }
        }
        out
    }

    /// Every parameter and buffer under PyTorch's `nn.Sequential` names:
    /// `"{layer_index}.{name}"` (`0.weight`, `0.bias`, `1.running_mean`, …), each layer's
    /// parameters before its buffers. Layers without state still take an index, so the
    /// names match the PyTorch model built from the same layers in the same order. Tensors
    /// keep their layouts (Linear `[out, in]`, Conv2d `[O, C, KH, KW]`, which are
    /// PyTorch's); a BatchNorm's `num_batches_tracked` is a scalar `f64` tensor.
    ///
    /// A nested `Sequential` contributes its parameters under their bare names and its
    /// buffers under `"{index}.{inner name}"`, so nesting is not PyTorch-compatible.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            for p in l.params() {
                out.push((format!("{i}.{}", p.name), p.value.clone()));
            }
            for (name, b) in l.buffers() {
                out.push((format!("{i}.{name}"), b));
            }
        }
        out
    }

    /// Loads what [`Sequential::state_dict`] lists, by name, onto the devices the model's
    /// tensors are on.
    ///
    /// Every tensor is checked before anything changes: a missing name is
    /// [`NnError::MissingTensor`], a name the model does not have (or a repeated one)
    /// [`NnError::UnexpectedTensor`], a wrong shape [`NnError::TensorShape`] and a wrong
    /// dtype [`NnError::TensorDType`], each naming the tensor. On error the model is
    /// unchanged.
    pub fn load_state_dict(&mut self, tensors: Vec<(String, Tensor)>) -> Result<()> {
        let mut given: HashMap<String, Tensor> = HashMap::with_capacity(tensors.len());
        for (name, t) in tensors {
            if given.contains_key(&name) {
                return Err(NnError::UnexpectedTensor { name });
            }
            given.insert(name, t);
        }
        let expected = self.state_dict();
        for (name, want) in &expected {
            let got = given
                .get(name)
                .ok_or_else(|| NnError::MissingTensor { name: name.clone() })?;
            if got.shape() != want.shape() {
                return Err(NnError::TensorShape {
                    name: name.clone(),
                    expected: want.shape().to_vec(),
                    found: got.shape().to_vec(),
                });
            }
            if got.dtype() != want.dtype() {
                return Err(NnError::TensorDType {
                    name: name.clone(),
                    expected: format!("{:?}", want.dtype()),
                    found: format!("{:?}", got.dtype()),
                });
            }
        }
        if given.len() != expected.len() {
            let known: HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
            let mut extra: Vec<&String> = given
                .keys()
                .filter(|n| !known.contains(n.as_str()))
                .collect();
            extra.sort();
            if let Some(name) = extra.first() {
                return Err(NnError::UnexpectedTensor {
                    name: (*name).clone(),
                });
            }
        }
        for (i, l) in self.layers.iter_mut().enumerate() {
            for p in l.params_mut() {
                let t = given
                    .remove(&format!("{i}.{}", p.name))
                    .expect("checked above");
                p.value = t.to_device(&p.value.device())?;
            }
            for (name, _) in l.buffers() {
                let t = given.remove(&format!("{i}.{name}")).expect("checked above");
                l.set_buffer(&name, t)?;
            }
        }
        Ok(())
    }

    /// Mean cross-entropy `L̄` and its input gradient `∂L̄/∂x`, for adversarial attacks and
    /// input-gradient norms. Parameter gradients are left as they were (in `Train` mode
    /// BatchNorm still updates its running statistics).
    pub fn input_gradient(
        &mut self,
        x: &Tensor,
        labels: &[usize],
        mode: Mode,
    ) -> Result<(f64, Tensor)> {
        let z = self.forward(x, mode)?;
        let (loss, gz) = softmax_cross_entropy(&z, labels)?;
        Ok((loss, self.backward_input(&gz)?))
    }

    /// The penalty `P = (β/B) Σ_n ‖∂L_n/∂x_n‖² = βB ‖∂L̄/∂x‖²` alone, with parameter
    /// gradients left as they were.
    pub fn jacobian_penalty(
        &mut self,
        x: &Tensor,
        labels: &[usize],
        beta: f64,
        mode: Mode,
    ) -> Result<f64> {
        let (_, gx) = self.input_gradient(x, labels, mode)?;
        Ok(beta * labels.len() as f64 * gx.sqr()?.sum_all()?)
    }

    /// One regularised training step's gradients: adds `∇_θ (L̄ + P)` into every
    /// [`Param::grad`], exactly, with one forward, one backward and one tangent pass.
    ///
    /// `∇_θ L̄` comes from the backward pass; `∇_θ P = 2βB R_G{∇_θ L̄}` from the tangent
    /// pass along `G = ∂L̄/∂x`, through the loss tangent
    /// [`softmax_cross_entropy_tangent`]. Tangent gradients are consumed (left `None`).
    ///
    /// With BatchNorm in `Train` mode, samples interact through the batch statistics;
    /// `G` is then the gradient of the mean loss through them (what autograd gives for
    /// `∂L̄/∂x`), and `P = βB‖G‖²` with the parameter gradient of that exact quantity.
    pub fn jacobian_penalty_grad(
        &mut self,
        x: &Tensor,
        labels: &[usize],
        beta: f64,
        mode: Mode,
    ) -> Result<JacobianStep> {
        let b = labels.len() as f64;
        let z = self.forward(x, mode)?;
        let (loss, gz) = softmax_cross_entropy(&z, labels)?;
        let gx = self.backward(&gz)?;
        let penalty = beta * b * gx.sqr()?.sum_all()?;
        if beta != 0.0 {
            for p in self.params_mut() {
                p.grad_tangent = None;
            }
            let rz = self.forward_tangent(&gx)?;
            let rgz = softmax_cross_entropy_tangent(&z, &rz)?;
            self.backward_tangent(&rgz)?;
            for p in self.params_mut() {
                if let Some(rg) = p.grad_tangent.take() {
                    p.accumulate_grad(rg.scale(2.0 * beta * b)?)?;
                }
            }
        }
        Ok(JacobianStep {
            loss,
            penalty,
            logits: z,
            input_grad: gx,
        })
    }
}

impl Layer for Sequential {
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut h = x.clone();
        for l in &mut self.layers {
            h = l.forward(&h, mode)?;
        }
        Ok(h)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let mut g = grad_out.clone();
        for l in self.layers.iter_mut().rev() {
            g = l.backward(&g)?;
        }
        Ok(g)
    }

    fn backward_input(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let mut g = grad_out.clone();
        for l in self.layers.iter_mut().rev() {
            g = l.backward_input(&g)?;
        }
        Ok(g)
    }

    fn forward_tangent(&mut self, dx: &Tensor) -> Result<Tensor> {
        let mut d = dx.clone();
        for l in &mut self.layers {
            d = l.forward_tangent(&d)?;
        }
        Ok(d)
    }

    fn backward_tangent(&mut self, dgrad_out: &Tensor) -> Result<Tensor> {
        let mut r = dgrad_out.clone();
        for l in self.layers.iter_mut().rev() {
            r = l.backward_tangent(&r)?;
        }
        Ok(r)
    }

    fn params(&self) -> Vec<&Param> {
        self.layers.iter().flat_map(|l| l.params()).collect()
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        self.layers
            .iter_mut()
            .flat_map(|l| l.params_mut())
            .collect()
    }

    fn name(&self) -> &str {
        "sequential"
    }

    /// The layers' buffers as `"{layer_index}.{name}"`.
    fn buffers(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            for (name, b) in l.buffers() {
                out.push((format!("{i}.{name}"), b));
            }
        }
        out
    }

    /// Sets the buffer `"{layer_index}.{name}"` of that layer.
    fn set_buffer(&mut self, name: &str, value: Tensor) -> Result<()> {
        let layer = name
            .split_once('.')
            .and_then(|(i, rest)| Some((i.parse::<usize>().ok()?, rest)));
        match layer {
            Some((i, rest)) if i < self.layers.len() => self.layers[i].set_buffer(rest, value),
            _ => Err(NnError::InvalidArgument {
                what: "sequential.set_buffer".into(),
                reason: format!("no buffer named {name:?}"),
            }),
        }
    }
}
