//! The [`Layer`] trait, its [`Mode`] and trainable [`Param`]eters.
//!
//! A layer maps `x ↦ y = f(x; θ)` and offers four passes:
//!
//! | pass               | input                | output        | accumulates           |
//! |--------------------|----------------------|---------------|-----------------------|
//! | `forward`          | `x`                  | `y`           | —                     |
//! | `backward`         | `g = ∂L/∂y`          | `∂L/∂x`       | `∂L/∂θ` in `grad`     |
//! | `forward_tangent`  | `dx`                 | `R{y}`        | —                     |
//! | `backward_tangent` | `R{∂L/∂y}`           | `R{∂L/∂x}`    | `R{∂L/∂θ}` in `grad_tangent` |
//!
//! where `R{·}` is Pearlmutter's R-operator along the input direction `dx`:
//! `R{h} = d/dε h(x + ε dx)|₀`, with the parameter direction zero.

use specreg_tensor::Tensor;

use crate::{NnError, Result};

/// Whether a layer is training (BatchNorm normalises with batch statistics and updates its
/// running statistics), evaluating (BatchNorm uses its running statistics), or evaluating
/// with batch statistics (BatchNorm normalises with the current batch's statistics, as in
/// training, but updates nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Training.
    #[default]
    Train,
    /// Evaluation.
    Eval,
    /// Evaluation in which normalisation layers (BatchNorm, whitening) use the current
    /// batch's statistics and gradients flow through them, as in training, while no running
    /// statistic is updated. This is how a PyTorch network left in `train()` mode is
    /// evaluated; the outputs of one sample depend on the rest of its batch.
    BatchStatistics,
}

impl Mode {
    /// Whether normalisation layers use the current batch's statistics (`Train` and
    /// `BatchStatistics`).
    pub fn uses_batch_statistics(self) -> bool {
        matches!(self, Mode::Train | Mode::BatchStatistics)
    }
}

/// A trainable tensor with its gradient and its tangent gradient.
#[derive(Debug, Clone)]
pub struct Param {
    /// The parameter's name within its layer (`weight`, `bias`).
    pub name: String,
    /// The current value.
    pub value: Tensor,
    /// `∂L/∂θ`, summed over every `backward` since the last [`Param::zero_grad`]; `None`
    /// means zero.
    pub grad: Option<Tensor>,
    /// `R{∂L/∂θ}`, summed over every `backward_tangent` since the last
    /// [`Param::zero_grad`]; `None` means zero.
    pub grad_tangent: Option<Tensor>,
}

impl Param {
    /// A parameter with no gradient yet.
    pub fn new(name: impl Into<String>, value: Tensor) -> Self {
        Self {
            name: name.into(),
            value,
            grad: None,
            grad_tangent: None,
        }
    }

    /// Adds `g` into [`Param::grad`].
    pub fn accumulate_grad(&mut self, g: Tensor) -> Result<()> {
        self.grad = Some(Self::add_into(
            self.grad.take(),
            g,
            &self.value,
            &self.name,
        )?);
        Ok(())
    }

    /// Adds `g` into [`Param::grad_tangent`].
    pub fn accumulate_grad_tangent(&mut self, g: Tensor) -> Result<()> {
        let acc = self.grad_tangent.take();
        self.grad_tangent = Some(Self::add_into(acc, g, &self.value, &self.name)?);
        Ok(())
    }

    fn add_into(acc: Option<Tensor>, g: Tensor, value: &Tensor, name: &str) -> Result<Tensor> {
        if g.shape() != value.shape() {
            return Err(NnError::ShapeMismatch {
                layer: format!("gradient of {name}"),
                expected: format!("{:?}", value.shape()),
                got: g.shape().to_vec(),
            });
        }
        Ok(match acc {
            Some(a) => a.add(&g)?,
            None => g,
        })
    }

    /// Clears both the gradient and the tangent gradient.
    pub fn zero_grad(&mut self) {
        self.grad = None;
        self.grad_tangent = None;
    }
}

/// A differentiable layer with forward, backward and R-operator passes.
///
/// # Call order
///
/// `forward(x)` caches what the other passes need; then `backward(g)` may follow; then
/// `forward_tangent(dx)` (which needs only `forward`); and `backward_tangent(R{g})` needs
/// all three. Calling a pass before what it needs is an [`NnError::BackwardBeforeForward`]
/// or [`NnError::OutOfOrder`] error. A new `forward` clears the caches of the others.
///
/// # Why tangents: the exact gradient of the Jacobian regulariser
///
/// The Jacobian regulariser (eq. 11 of Nassar et al.) penalises `½‖∂L/∂x‖²`. Its weight
/// gradient is a mixed second derivative: with `v = ∂L/∂x` held as a direction,
///
/// `∇_θ ½‖∂L/∂x‖² = (∂²L/∂θ∂x) v = d/dε ∇_θ L(x + ε v; θ)|₀ = R_v{∇_θ L}`
///
/// by the symmetry of mixed partials. So one `forward` + `backward` (giving `v` and
/// `∇_θ L`) followed by one `forward_tangent(v)` + `backward_tangent` (giving `R_v{∇_θ L}`
/// in [`Param::grad_tangent`]) yields the exact gradient, with no finite differences and
/// about twice the cost of a training step. The regularizers crate's Jacobian penalty wires
/// this up on any `&mut dyn Layer`.
pub trait Layer: Send + std::fmt::Debug {
    /// `y = f(x; θ)`, caching what the other passes need.
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor>;

    /// Given `∂L/∂y`, returns `∂L/∂x` and adds `∂L/∂θ` into each [`Param::grad`].
    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor>;

    /// Given `∂L/∂y`, returns `∂L/∂x` only: parameter gradients are left exactly as they
    /// were. Attacks and input-gradient maps need nothing else, and layers with weights
    /// skip their weight-gradient products (a third of a dense backward pass). The default
    /// runs [`Layer::backward`] and puts the parameter gradients back.
    fn backward_input(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let saved: Vec<Option<Tensor>> = self.params().iter().map(|p| p.grad.clone()).collect();
        let result = self.backward(grad_out);
        for (p, g) in self.params_mut().into_iter().zip(saved) {
            p.grad = g;
        }
        result
    }

    /// Given `∂L/∂y`, adds `∂L/∂θ` into each [`Param::grad`] exactly as [`Layer::backward`]
    /// does, but does not compute `∂L/∂x`: what a network's first layer needs in training,
    /// where nothing uses the input gradient (for a dense layer, a third of its backward
    /// pass). The default runs [`Layer::backward`] and drops the input gradient.
    fn backward_params(&mut self, grad_out: &Tensor) -> Result<()> {
        self.backward(grad_out).map(drop)
    }

    /// The directional derivative `R{y} = (∂y/∂x) dx` of the last `forward`'s output along
    /// the input direction `dx` (parameter directions are zero).
    fn forward_tangent(&mut self, dx: &Tensor) -> Result<Tensor>;

    /// Given `R{∂L/∂y}`, returns `R{∂L/∂x}` and adds `R{∂L/∂θ}` into each
    /// [`Param::grad_tangent`]. The tangent is taken along the `dx` of the last
    /// `forward_tangent`, through the upstream gradient of the last `backward`.
    fn backward_tangent(&mut self, dgrad_out: &Tensor) -> Result<Tensor>;

    /// [`Layer::backward_tangent`]'s parameter tangents alone: adds `R{∂L/∂θ}` into each
    /// [`Param::grad_tangent`] exactly as it does, without `R{∂L/∂x}`, which nothing needs
    /// at a network's first layer (for a dense layer, a third of its tangent backward).
    /// The default runs [`Layer::backward_tangent`] and drops `R{∂L/∂x}`.
    fn backward_tangent_params(&mut self, dgrad_out: &Tensor) -> Result<()> {
        self.backward_tangent(dgrad_out).map(drop)
    }

    /// A backward pass and a tangent backward merged into one pass. Both are linear in what
    /// flows down, with the same products, except for the tangent's own terms (`−2 y R{y} g`
    /// at a tanh, `gᵀR{x}` at a weight); so with `m = ∂L/∂y + s R{∂L/∂y}` this returns
    /// `∂L/∂x + s R{∂L/∂x}` and adds `∂L/∂θ + s R{∂L/∂θ}` into each [`Param::grad`]
    /// (not [`Param::grad_tangent`]), where the tangent is the one of
    /// [`Layer::backward_tangent`]: along the last `forward_tangent`, through the last
    /// backward's upstream gradient. The Jacobian regularisers' weight gradients need the
    /// loss gradient plus `s` times a tangent; this gets both for about the price of the
    /// tangent backward alone.
    ///
    /// Needs `forward`, a backward pass and `forward_tangent`, like `backward_tangent`;
    /// afterwards the layer's backward caches hold `m`. The default runs
    /// [`Layer::backward_tangent`] with a zero seed and then [`Layer::backward`];
    /// [`Param::grad_tangent`] is left as it was.
    fn backward_merged(&mut self, grad_out: &Tensor, tangent_scale: f64) -> Result<Tensor> {
        let saved: Vec<Option<Tensor>> = self
            .params_mut()
            .into_iter()
            .map(|p| p.grad_tangent.take())
            .collect();
        let zero = Tensor::zeros(grad_out.shape(), grad_out.dtype(), &grad_out.device())?;
        let own_terms = self.backward_tangent(&zero);
        let tangents: Vec<Option<Tensor>> = self
            .params_mut()
            .into_iter()
            .zip(saved)
            .map(|(p, s)| std::mem::replace(&mut p.grad_tangent, s))
            .collect();
        let own_terms = own_terms?;
        let grad_in = self.backward(grad_out)?;
        for (p, t) in self.params_mut().into_iter().zip(tangents) {
            if let Some(t) = t {
                p.accumulate_grad(t.scale(tangent_scale)?)?;
            }
        }
        Ok(grad_in.add(&own_terms.scale(tangent_scale)?)?)
    }

    /// [`Layer::backward_merged`]'s parameter gradients alone, without the input gradient
    /// (a network's first layer). The default runs `backward_merged` and drops it.
    fn backward_merged_params(&mut self, grad_out: &Tensor, tangent_scale: f64) -> Result<()> {
        self.backward_merged(grad_out, tangent_scale).map(drop)
    }

    /// The trainable parameters.
    fn params(&self) -> Vec<&Param> {
        Vec::new()
    }

    /// The trainable parameters, mutably.
    fn params_mut(&mut self) -> Vec<&mut Param> {
        Vec::new()
    }

    /// A short name (`linear`, `tanh`, …) used in errors.
    fn name(&self) -> &str;

    /// Whether, in `mode`, one sample's output depends on the other samples of its batch
    /// (a normalisation by the batch's statistics); `false` by default. Attacks that drop
    /// samples from a batch as they go need every layer to answer `false`.
    fn mixes_samples(&self, mode: Mode) -> bool {
        let _ = mode;
        false
    }

    /// Non-trainable state that a checkpoint must keep (PyTorch's buffers, e.g.
    /// BatchNorm's `running_mean`), by name; none by default.
    fn buffers(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Replaces the buffer `name` (as listed by [`Layer::buffers`]) with `value`, which
    /// must have the buffer's shape. The default (a layer without buffers) is an error
    /// naming the buffer.
    fn set_buffer(&mut self, name: &str, value: Tensor) -> Result<()> {
        let _ = value;
        Err(NnError::InvalidArgument {
            what: format!("{}.set_buffer", self.name()),
            reason: format!("the layer has no buffer named {name:?}"),
        })
    }

    /// Clears every parameter's gradient and tangent gradient.
    fn zero_grad(&mut self) {
        for p in self.params_mut() {
            p.zero_grad();
        }
    }
}

/// The cached tensor, or the error saying which pass must run first.
pub(crate) fn need<'a>(
    cache: &'a Option<Tensor>,
    layer: &str,
    pass: &'static str,
    needs: &'static str,
) -> Result<&'a Tensor> {
    cache.as_ref().ok_or_else(|| {
        if needs == "forward" && pass == "backward" {
            NnError::BackwardBeforeForward {
                layer: layer.to_string(),
            }
        } else {
            NnError::OutOfOrder {
                layer: layer.to_string(),
                pass,
                needs,
            }
        }
    })
}
