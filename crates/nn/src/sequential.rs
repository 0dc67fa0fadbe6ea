//! A stack of layers.
//!
//! `f = f_L ∘ ⋯ ∘ f_1` maps `x: [B, …]` to logits `z: [B, K]`. Every pass runs through the
//! layers in order (forward, forward tangent) or in reverse (backward, backward tangent).
//! The Jacobian regulariser built on the tangent passes lives in the regularizers crate.

use std::collections::{HashMap, HashSet};

use specreg_tensor::Tensor;

use crate::{Layer, Mode, NnError, Param, Result};

/// Layers applied in order; itself a [`Layer`].
#[derive(Debug, Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Layer>>,
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
        let mut take = |name: String| given.remove(&name).ok_or(NnError::MissingTensor { name });
        for (i, l) in self.layers.iter_mut().enumerate() {
            for p in l.params_mut() {
                let t = take(format!("{i}.{}", p.name))?;
                p.value = t.to_device(&p.value.device())?;
            }
            for (name, _) in l.buffers() {
                let t = take(format!("{i}.{name}"))?;
                l.set_buffer(&name, t)?;
            }
        }
        Ok(())
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

    fn backward_params(&mut self, grad_out: &Tensor) -> Result<()> {
        let mut g = grad_out.clone();
        for (i, l) in self.layers.iter_mut().enumerate().rev() {
            if i == 0 {
                return l.backward_params(&g);
            }
            g = l.backward(&g)?;
        }
        Ok(())
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

    fn backward_tangent_params(&mut self, dgrad_out: &Tensor) -> Result<()> {
        let mut r = dgrad_out.clone();
        for (i, l) in self.layers.iter_mut().enumerate().rev() {
            if i == 0 {
                return l.backward_tangent_params(&r);
            }
            r = l.backward_tangent(&r)?;
        }
        Ok(())
    }

    fn backward_merged(&mut self, grad_out: &Tensor, tangent_scale: f64) -> Result<Tensor> {
        let mut m = grad_out.clone();
        for l in self.layers.iter_mut().rev() {
            m = l.backward_merged(&m, tangent_scale)?;
        }
        Ok(m)
    }

    fn backward_merged_params(&mut self, grad_out: &Tensor, tangent_scale: f64) -> Result<()> {
        let mut m = grad_out.clone();
        for (i, l) in self.layers.iter_mut().enumerate().rev() {
            if i == 0 {
                return l.backward_merged_params(&m, tangent_scale);
            }
            m = l.backward_merged(&m, tangent_scale)?;
        }
        Ok(())
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

    fn mixes_samples(&self, mode: Mode) -> bool {
        self.layers.iter().any(|l| l.mixes_samples(mode))
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
