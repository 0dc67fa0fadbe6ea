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

use ndarray::ArrayView2;
use specreg_nn::{
    Adam, EpochStats, Layer, Mode, Network, NnError, Result, StepLoss, loss::softmax_cross_entropy,
    train_epoch_with,
};
use specreg_tensor::{Rng, Tensor};

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

/// What one penalised step computed.
#[derive(Debug, Clone)]
pub struct JacobianValue {
    /// Mean cross-entropy of the batch.
    pub cross_entropy: f64,
    /// The penalty `P` (including `β`).
    pub penalty: f64,
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
            return Err(NnError::InvalidArgument {
                what: "Jacobian regulariser".into(),
                reason: format!(
                    "beta must be finite and ≥ 0 and projections ≥ 1, got {beta} and {proj}"
                ),
            });
        }
        Ok(Self { kind })
    }

    /// The kind.
    pub fn kind(&self) -> JacobianKind {
        self.kind
    }

    /// The penalty alone for `(x, labels)` in `mode`; parameter gradients untouched. The
    /// logit variant draws its projections from `rng`.
    pub fn penalty(
        &self,
        net: &mut Network,
        x: &Tensor,
        labels: &[usize],
        mode: Mode,
        rng: &mut Rng,
    ) -> Result<f64> {
        let b = labels.len() as f64;
        match self.kind {
            JacobianKind::InputLoss { beta } => {
                let (_, g) = net.input_gradient(x, labels, mode)?;
                Ok(beta * b * g.sqr()?.sum_all()?)
            }
            JacobianKind::Logit { beta, projections } => {
                let logits = net.forward(x, mode)?.logits;
                let c = logits.shape()[1] as f64;
                let mut sum = 0.0;
                for _ in 0..projections {
                    let v = unit_rows(&logits, rng)?;
                    sum += net.backward_input(&v, &[])?.sqr()?.sum_all()?;
                }
                Ok(beta * 0.5 * c / (projections as f64 * b) * sum)
            }
        }
    }

    /// One step's loss and gradients: adds `∇_θ (mean CE + P)` into every parameter's
    /// `grad`, exactly (one forward, one backward and one tangent pass per projection).
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
                    net.sequential_mut()
                        .jacobian_penalty_grad(&xs, labels, beta, Mode::Train)?;
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
                let mut sum = 0.0;
                for p in net.params_mut() {
                    p.grad_tangent = None;
                }
                for _ in 0..projections {
                    // u = Jᵀv; ∇_θ ½‖u‖² = R_u{∇_θ vᵀf}, and ∂(vᵀf)/∂f = v has no tangent.
                    let v = unit_rows(&logits, rng)?;
                    let u = net.backward_input(&v, &[])?;
                    sum += u.sqr()?.sum_all()?;
                    let du = u.reshape(&tangent_shape(net, &u)?)?;
                    net.sequential_mut().forward_tangent(&du)?;
                    net.sequential_mut().backward_tangent(&zero)?;
                }
                let (ce, gz) = softmax_cross_entropy(&logits, labels)?;
                net.backward(&gz, &[])?;
                for p in net.params_mut() {
                    if let Some(rg) = p.grad_tangent.take() {
                        p.accumulate_grad(rg.scale(scale)?)?;
                    }
                }
                Ok(JacobianValue {
                    cross_entropy: ce,
                    penalty: 0.5 * scale * sum,
                    logits,
                })
            }
        }
    }

    /// One epoch of Adam with this penalty (see [`specreg_nn::train_epoch_with`]); the
    /// epoch's `extra_loss` is the mean penalty.
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
        let mut step = |net: &mut Network, x: &Tensor, y: &[usize]| -> Result<StepLoss> {
            let v = self.step(net, x, y, rng)?;
            Ok(StepLoss {
                cross_entropy: v.cross_entropy,
                extra: v.penalty,
                logits: v.logits,
            })
        };
        train_epoch_with(net, adam, images, labels, batches, epoch, &mut step)
    }
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
