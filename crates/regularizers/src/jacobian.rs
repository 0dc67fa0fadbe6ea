//! Jacobian regularisers, with exact second-order weight gradients.
//!
//! - [`JacobianKind::InputLoss`] is the paper's eq. 11: `P = (β/B) Σ_n ‖∂L(f(s_n), y_n)/∂s_n‖²`,
//!   the squared input gradient of each sample's loss (default `β = 0.01`).
//! - [`JacobianKind::Logit`] is the public reference code's variant (Hoffman et al. 2019):
//!   `P = β · ½ · C/(n_proj · B) · Σ_k Σ_n ‖J_nᵀ v_{n,k}‖²`, with `J_n = ∂f(s_n)/∂s_n` the
//!   logit Jacobian, `C` the number of classes and `v_{n,k}` random unit vectors in logit
//!   space (`n_proj` per sample; `C/n_proj · E‖Jᵀv‖²` estimates `‖J‖_F²`).
//!
//! Both weight gradients are mixed second derivatives. With `u = ∂Q/∂x` for a scalar `Q`
//! (the mean loss, or `Σ_n v_nᵀ f(s_n)`), `∇_θ ½‖u‖² = R_u{∇_θ Q}`: one tangent pass of
//! the nn crate's R-operator along `u` gives it exactly.
//!
//! **Eq. 11 on any layer stack.** With `L_n` the loss of sample `n` and `L̄ = (1/B) Σ_n L_n`
//! the mean loss, `P = (β/B) Σ_n ‖∂L_n/∂x_n‖² = β B ‖G‖²` with `G = ∂L̄/∂x: [B, …]`, since
//! `∂L_n/∂x_n = B G_n` when samples do not interact. Its parameter gradient is
//! `∇_θ P = 2βB (∂G/∂θ)ᵀ G = 2βB R_G{∇_θ L̄}` (symmetry of mixed partials), which one
//! tangent pass along `dx = G` gives exactly: [`jacobian_penalty_grad`] does this on any
//! `&mut dyn Layer` whose layers implement the tangent passes.
//!
//! Penalties and losses stay on the device as 0-D `f64` tensors; the training loop reads
//! them with the step's one host read.

use ndarray::ArrayView2;
use specreg_nn::{
    Adam, EpochStats, Layer, Mode, Network, NnError, NonFiniteQuantity, StepLoss,
    loss::{softmax_cross_entropy, softmax_cross_entropy_tangent},
    train_epoch_with,
};
use specreg_tensor::{Rng, Tensor};

use crate::error::{Result, invalid};

/// What [`jacobian_penalty_grad`] returns.
#[derive(Debug, Clone)]
pub struct JacobianStep {
    /// The mean cross-entropy `L̄` (0-D, `f64`).
    pub loss: Tensor,
    /// The penalty `P = (β/B) Σ_n ‖∂L_n/∂x_n‖²` (0-D, `f64`).
    pub penalty: Tensor,
    /// The logits `z: [B, K]`.
    pub logits: Tensor,
    /// `G = ∂L̄/∂x`, the input gradient of the mean loss (`B G_n` is sample `n`'s own).
    pub input_grad: Tensor,
}

/// The penalty `P = (β/B) Σ_n ‖∂L_n/∂x_n‖² = βB ‖∂L̄/∂x‖²` of eq. 11 alone (0-D, `f64`),
/// with the parameter gradients of `model` left as they were.
pub fn jacobian_penalty(
    model: &mut dyn Layer,
    x: &Tensor,
    labels: &[usize],
    beta: f64,
    mode: Mode,
) -> Result<Tensor> {
    let z = model.forward(x, mode)?;
    let (_, gz) = softmax_cross_entropy(&z, labels)?;
    let gx = model.backward_input(&gz)?;
    Ok(gx.sqr()?.sum_all_f64()?.scale(beta * labels.len() as f64)?)
}

/// One training step's gradients of `L̄ + P` (eq. 11) for `model`: adds `∇_θ (L̄ + P)` into
/// every [`Param::grad`](specreg_nn::Param), exactly, with one forward, one input-gradient
/// pass, one tangent forward and one merged backward pass.
///
/// `∇_θ P = 2βB R_G{∇_θ L̄}` is the tangent along `G = ∂L̄/∂x` (through the loss tangent
/// [`softmax_cross_entropy_tangent`]) of the backward pass that gives `∇_θ L̄`; both come
/// from one [`Layer::backward_merged`] pass. [`Param::grad_tangent`](specreg_nn::Param) is
/// left as it was.
///
/// With BatchNorm in `Train` mode, samples interact through the batch statistics; `G` is
/// then the gradient of the mean loss through them (what autograd gives for `∂L̄/∂x`), and
/// `P = βB‖G‖²` with the parameter gradient of that exact quantity.
pub fn jacobian_penalty_grad(
    model: &mut dyn Layer,
    x: &Tensor,
    labels: &[usize],
    beta: f64,
    mode: Mode,
) -> Result<JacobianStep> {
    let b = labels.len() as f64;
    let z = model.forward(x, mode)?;
    let (loss, gz) = softmax_cross_entropy(&z, labels)?;
    // With a penalty, G comes without weight gradients: they come later, from the one
    // backward pass that carries ∇_θ L̄ and s R_G{∇_θ L̄} together (Layer::backward_merged).
    let gx = if beta == 0.0 {
        model.backward(&gz)?
    } else {
        model.backward_input(&gz)?
    };
    let penalty = gx.sqr()?.sum_all_f64()?.scale(beta * b)?;
    if beta != 0.0 {
        let s = 2.0 * beta * b;
        let rz = model.forward_tangent(&gx)?;
        let rgz = softmax_cross_entropy_tangent(&z, &rz)?;
        model.backward_merged_params(&gz.add(&rgz.scale(s)?)?, s)?;
    }
    Ok(JacobianStep {
        loss,
        penalty,
        logits: z,
        input_grad: gx,
    })
}

/// Which Jacobian penalty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JacobianKind {
    /// Eq. 11: `(β/B) Σ_n ‖∂L_n/∂s_n‖²`.
    InputLoss {
        /// `β_J` (the paper: 0.01).
        beta: f64,
    },
    /// The logit-Jacobian estimate `β · ½ · C/(n_proj B) · Σ ‖Jᵀv‖²`.
    Logit {
        /// The weight `β` (the reference code: 0.01).
        beta: f64,
        /// Random projections per sample (the reference code: 1).
        projections: usize,
    },
}

impl Default for JacobianKind {
    fn default() -> Self {
        Self::InputLoss { beta: 0.01 }
    }
}

/// What one penalised step computed (on the device).
#[derive(Debug, Clone)]
pub struct JacobianValue {
    /// Mean cross-entropy of the batch (0-D, `f64`).
    pub cross_entropy: Tensor,
    /// The penalty `P` (including `β`; 0-D, `f64`).
    pub penalty: Tensor,
    /// The logits.
    pub logits: Tensor,
}

/// A Jacobian regulariser.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JacobianRegularizer {
    kind: JacobianKind,
}

impl JacobianRegularizer {
    /// A regulariser of the given kind.
    ///
    /// # Errors
    /// A negative or non-finite `β`, or zero projections.
    pub fn new(kind: JacobianKind) -> Result<Self> {
        let (beta, proj) = match kind {
            JacobianKind::InputLoss { beta } => (beta, 1),
            JacobianKind::Logit { beta, projections } => (beta, projections),
        };
        if !(beta.is_finite() && beta >= 0.0) || proj == 0 {
            return Err(invalid(
                "Jacobian regulariser",
                format!("beta must be finite and ≥ 0 and projections ≥ 1, got {beta} and {proj}"),
            ));
        }
        Ok(Self { kind })
    }

    /// The kind.
    pub fn kind(&self) -> JacobianKind {
        self.kind
    }

    /// The penalty alone for `(x, labels)` in `mode` (0-D, `f64`, on the device);
    /// parameter gradients untouched. The logit variant draws its projections from `rng`.
    pub fn penalty(
        &self,
        net: &mut Network,
        x: &Tensor,
        labels: &[usize],
        mode: Mode,
        rng: &mut Rng,
    ) -> Result<Tensor> {
        let b = labels.len() as f64;
        match self.kind {
            JacobianKind::InputLoss { beta } => {
                let (_, g) = net.input_gradient(x, labels, mode)?;
                Ok(g.sqr()?.sum_all_f64()?.scale(beta * b)?)
            }
            JacobianKind::Logit { beta, projections } => {
                let logits = net.forward(x, mode)?.logits;
                let c = logits.shape()[1] as f64;
                let mut sum: Option<Tensor> = None;
                for _ in 0..projections {
                    let v = unit_rows(&logits, rng)?;
                    let s = net.backward_input(&v, &[])?.sqr()?.sum_all_f64()?;
                    sum = Some(add_into(sum, s)?);
                }
                let sum = sum.ok_or_else(|| invalid("Jacobian penalty", "no projections"))?;
                Ok(sum.scale(beta * 0.5 * c / (projections as f64 * b))?)
            }
        }
    }

    /// One step's loss and gradients: adds `∇_θ (mean CE + P)` into every parameter's
    /// `grad`, exactly: one forward; per projection an input-gradient pass and a tangent
    /// forward; a tangent backward for every projection but the last, whose tangent rides on
    /// the cross-entropy's backward pass ([`Layer::backward_merged`]).
    /// The network runs in `Train` mode.
    pub fn step(
        &self,
        net: &mut Network,
        x: &Tensor,
        labels: &[usize],
        rng: &mut Rng,
    ) -> Result<JacobianValue> {
        match self.kind {
            JacobianKind::InputLoss { beta } => {
                let mut shape = vec![labels.len()];
                shape.extend_from_slice(net.input_shape());
                let xs = if x.shape() == shape.as_slice() {
                    x.clone()
                } else {
                    x.reshape(&shape)?
                };
                let s =
                    jacobian_penalty_grad(net.sequential_mut(), &xs, labels, beta, Mode::Train)?;
                Ok(JacobianValue {
                    cross_entropy: s.loss,
                    penalty: s.penalty,
                    logits: s.logits,
                })
            }
            JacobianKind::Logit { beta, projections } => {
                let b = labels.len() as f64;
                let pass = net.forward(x, Mode::Train)?;
                let logits = pass.logits;
                let c = logits.shape()[1] as f64;
                let scale = beta * c / (projections as f64 * b);
                let zero = logits.scale(0.0)?;
                let mut sum: Option<Tensor> = None;
                for p in net.params_mut() {
                    p.grad_tangent = None;
                }
                for k in 0..projections {
                    // u = Jᵀv; ∇_θ ½‖u‖² = R_u{∇_θ vᵀf}, and ∂(vᵀf)/∂f = v has no tangent.
                    let v = unit_rows(&logits, rng)?;
                    let u = net.backward_input(&v, &[])?;
                    sum = Some(add_into(sum, u.sqr()?.sum_all_f64()?)?);
                    let du = u.reshape(&tangent_shape(net, &u)?)?;
                    net.sequential_mut().forward_tangent(&du)?;
                    if k + 1 < projections {
                        net.sequential_mut().backward_tangent_params(&zero)?;
                    }
                }
                // The last projection's tangent rides on the cross-entropy's backward pass
                // (Layer::backward_merged; the tangent's seed at the logits is zero).
                let (ce, gz) = softmax_cross_entropy(&logits, labels)?;
                net.sequential_mut().backward_merged_params(&gz, scale)?;
                for p in net.params_mut() {
                    if let Some(rg) = p.grad_tangent.take() {
                        p.accumulate_grad(rg.scale(scale)?)?;
                    }
                }
                let sum = sum.ok_or_else(|| invalid("Jacobian penalty", "no projections"))?;
                Ok(JacobianValue {
                    cross_entropy: ce,
                    penalty: sum.scale(0.5 * scale)?,
                    logits,
                })
            }
        }
    }

    /// One epoch of Adam with this penalty (see [`specreg_nn::train_epoch_with`]); the
    /// epoch's `extra_loss` is the mean penalty. One host read per step (the loss and the
    /// penalty together) and one per epoch (the accuracy).
    #[allow(clippy::too_many_arguments)]
    pub fn train_epoch(
        &self,
        net: &mut Network,
        adam: &mut Adam,
        images: ArrayView2<'_, f32>,
        labels: &[u8],
        batches: &[Vec<usize>],
        epoch: usize,
        rng: &mut Rng,
    ) -> Result<EpochStats> {
        let mut step =
            |net: &mut Network, x: &Tensor, y: &[usize]| -> specreg_nn::Result<StepLoss> {
                let v = self.step(net, x, y, rng)?;
                Ok(StepLoss {
                    cross_entropy: v.cross_entropy,
                    extra: Some(v.penalty),
                    logits: v.logits,
                })
            };
        train_epoch_with(net, adam, images, labels, batches, epoch, &mut step)
            .map_err(|e| name_penalty(e).into())
    }
}

/// The training loop's "regulariser loss" under this regulariser's name, in a
/// [`NnError::NonFinite`] that names it.
fn name_penalty(e: NnError) -> NnError {
    const LOOP: &str = "the regulariser loss";
    const OURS: &str = "the Jacobian penalty";
    match e {
        NnError::NonFinite {
            epoch,
            batch,
            step,
            quantity,
            seen,
        } => NnError::NonFinite {
            epoch,
            batch,
            step,
            quantity: match quantity {
                NonFiniteQuantity::Loss { term, value } if term == LOOP => {
                    NonFiniteQuantity::Loss {
                        term: OURS.into(),
                        value,
                    }
                }
                q => q,
            },
            seen: seen.map(|s| s.replacen(LOOP, OURS, 1)),
        },
        e => e,
    }
}

/// `acc + more`, or `more` when there is no `acc` yet.
fn add_into(acc: Option<Tensor>, more: Tensor) -> Result<Tensor> {
    Ok(match acc {
        Some(a) => a.add(&more)?,
        None => more,
    })
}

/// The shape the first layer expects: `[B, …input shape]`.
fn tangent_shape(net: &Network, u: &Tensor) -> Result<Vec<usize>> {
    let mut shape = vec![u.shape()[0]];
    shape.extend_from_slice(net.input_shape());
    Ok(shape)
}

/// Rows of independent standard normals, each scaled to unit length (uniform directions).
fn unit_rows(like: &Tensor, rng: &mut Rng) -> Result<Tensor> {
    let v = Tensor::randn(like.shape(), 0.0, 1.0, like.dtype(), rng, &like.device())?;
    let norms = v.sqr()?.sum_axis(1)?.sqrt()?;
    Ok(v.broadcast_along(&norms, 0, specreg_tensor::BinaryOp::Div)?)
}
