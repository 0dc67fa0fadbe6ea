//! Batch normalisation over the features of a `[B, F]` input.
//!
//! `y = γ ⊙ x̂ + β` with `x̂ = (x − μ) / σ`, `σ = √(v + ε)`, `γ, β: [F]`, `y: [B, F]`.
//!
//! * Train: `μ`, `v` are the batch mean and biased variance of each column. The running
//!   statistics move by `r ← (1 − m) r + m s` with momentum `m = 0.1`, using the
//!   *unbiased* variance `v·B/(B−1)` (as PyTorch). With
//!   `P(u) = (u − mean(u) − x̂ ⊙ mean(x̂ ⊙ u)) / σ` (column means):
//!   - backward: `∂L/∂x = P(γ g)`, `∂L/∂γ = Σ_rows g x̂`, `∂L/∂β = Σ_rows g`;
//!   - forward tangent: `R{x̂} = P(dx)`, `R{y} = γ R{x̂}`, and `R{σ} = mean(x̂ ⊙ dx)`;
//!   - backward tangent: `R{∂L/∂x} = P(γ R{g}) − (R{σ}/σ) ∂L/∂x
//!     − (R{x̂} ⊙ mean(x̂ ⊙ γg) + x̂ ⊙ mean(R{x̂} ⊙ γg)) / σ`,
//!     `R{∂L/∂γ} = Σ_rows (R{g} x̂ + g R{x̂})`, `R{∂L/∂β} = Σ_rows R{g}`.
//! * BatchStatistics: as Train (batch statistics, the same four passes), but the running
//!   statistics and `num_batches_tracked` are left untouched.
//! * The big `[B, F]` passes of the forward and of the backward in training (the centred
//!   squares, `x̂` with `y`, the four column sums and `P(γ g)`) are the tensor crate's fused
//!   BatchNorm passes: the same expressions in the same order as the op chains, so the
//!   same bits, in three reads of `[B, F]` operands instead of about a dozen.
//! * Eval: `μ`, `v` are the running statistics, so the layer is affine in `x`:
//!   `∂L/∂x = g γ/σ`, `R{x̂} = dx/σ`, `R{∂L/∂x} = R{g} γ/σ`, and the parameter tangents
//!   are as in training.

use specreg_tensor::{BinaryOp, DType, Device, Tensor};

use crate::layer::need;
use crate::{Layer, Mode, NnError, Param, Result};

/// What the passes after `forward` need.
#[derive(Debug, Clone)]
struct Cache {
    mode: Mode,
    xhat: Tensor,
    inv_std: Tensor,
    g: Option<Tensor>,
    gx: Option<Tensor>,
    rxhat: Option<Tensor>,
    rsigma: Option<Tensor>,
}

/// Batch normalisation of `[B, F]` activations, as PyTorch's `nn.BatchNorm1d` (affine, with
/// running statistics, `ε = 1e-5`, momentum `0.1`).
#[derive(Debug, Clone)]
pub struct BatchNorm1d {
    weight: Param,
    bias: Param,
    running_mean: Tensor,
    running_var: Tensor,
    num_batches_tracked: u64,
    cache: Option<Cache>,
}

/// `t op v` with `v: [F]` broadcast over the rows of `t: [B, F]`.
fn bc(t: &Tensor, v: &Tensor, op: BinaryOp) -> Result<Tensor> {
    Ok(t.broadcast_along(v, 1, op)?)
}

impl BatchNorm1d {
    /// `ε`, added to the variance.
    pub const EPS: f64 = 1e-5;
    /// Momentum of the running statistics.
    pub const MOMENTUM: f64 = 0.1;

    /// `γ = 1`, `β = 0`, running mean 0 and running variance 1.
    pub fn new(num_features: usize, dtype: DType, device: &Device) -> Result<Self> {
        if num_features == 0 {
            return Err(NnError::InvalidArgument {
                what: "BatchNorm1d::new".into(),
                reason: "num_features must be positive".into(),
            });
        }
        let f = [num_features];
        Ok(Self {
            weight: Param::new("weight", Tensor::ones(&f, dtype, device)?),
            bias: Param::new("bias", Tensor::zeros(&f, dtype, device)?),
            running_mean: Tensor::zeros(&f, dtype, device)?,
            running_var: Tensor::ones(&f, dtype, device)?,
            num_batches_tracked: 0,
            cache: None,
        })
    }

    /// The number of features `F`.
    pub fn num_features(&self) -> usize {
        self.weight.value.shape()[0]
    }

    /// The running mean `[F]`.
    pub fn running_mean(&self) -> &Tensor {
        &self.running_mean
    }

    /// The running (unbiased) variance `[F]`.
    pub fn running_var(&self) -> &Tensor {
        &self.running_var
    }

    /// How many training batches updated the running statistics.
    pub fn num_batches_tracked(&self) -> u64 {
        self.num_batches_tracked
    }

    /// Replaces the running statistics (e.g. from a checkpoint).
    pub fn set_running_stats(&mut self, mean: Tensor, var: Tensor, batches: u64) -> Result<()> {
        let f = [self.num_features()];
        for t in [&mean, &var] {
            if t.shape() != f {
                return Err(NnError::ShapeMismatch {
                    layer: "batch_norm1d running stats".into(),
                    expected: format!("{f:?}"),
                    got: t.shape().to_vec(),
                });
            }
        }
        self.running_mean = mean;
        self.running_var = var;
        self.num_batches_tracked = batches;
        Ok(())
    }

    fn cache(&self, pass: &'static str) -> Result<&Cache> {
        self.cache.as_ref().ok_or_else(|| {
            if pass == "backward" {
                NnError::BackwardBeforeForward {
                    layer: "batch_norm1d".into(),
                }
            } else {
                NnError::OutOfOrder {
                    layer: "batch_norm1d".into(),
                    pass,
                    needs: "forward",
                }
            }
        })
    }

    /// `P(u) = (u − mean(u) − x̂ ⊙ mean(x̂ ⊙ u)) / σ`, the Jacobian of `x ↦ x̂` in training.
    fn project(c: &Cache, u: &Tensor) -> Result<Tensor> {
        let centred = bc(u, &u.col_means()?, BinaryOp::Sub)?;
        let along = bc(&c.xhat, &c.xhat.mul(u)?.col_means()?, BinaryOp::Mul)?;
        bc(&centred.sub(&along)?, &c.inv_std, BinaryOp::Mul)
    }

    /// The batch statistics of `x`, and the running-statistics update when `update`.
    fn batch_stats(&mut self, x: &Tensor, update: bool) -> Result<(Tensor, Tensor)> {
        let (b, _) = x.dims2()?;
        if b < 2 {
            return Err(NnError::InvalidArgument {
                what: "batch_norm1d".into(),
                reason: format!("batch statistics need more than one sample per batch, got {b}"),
            });
        }
        let mean = x.col_means()?;
        let var = x.centred_sq_col_sums(&mean)?.scale(1.0 / b as f64)?;
        if !update {
            return Ok((mean, var));
        }
        let m = Self::MOMENTUM;
        let unbiased = var.scale(b as f64 / (b - 1) as f64)?;
        self.running_mean = self.running_mean.scale(1.0 - m)?.add(&mean.scale(m)?)?;
        self.running_var = self.running_var.scale(1.0 - m)?.add(&unbiased.scale(m)?)?;
        self.num_batches_tracked += 1;
        Ok((mean, var))
    }
}

impl Layer for BatchNorm1d {
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let f = self.num_features();
        if !matches!(*x.shape(), [_, n] if n == f) {
            return Err(NnError::ShapeMismatch {
                layer: "batch_norm1d".into(),
                expected: format!("[B, {f}]"),
                got: x.shape().to_vec(),
            });
        }
        let (mean, var) = match mode {
            Mode::Train => self.batch_stats(x, true)?,
            Mode::BatchStatistics => self.batch_stats(x, false)?,
            Mode::Eval => (self.running_mean.clone(), self.running_var.clone()),
        };
        let inv_std = var.add_scalar(Self::EPS)?.sqrt()?.recip()?;
        let (xhat, y) =
            x.batch_norm_normalise(&mean, &inv_std, &self.weight.value, &self.bias.value)?;
        self.cache = Some(Cache {
            mode,
            xhat,
            inv_std,
            g: None,
            gx: None,
            rxhat: None,
            rsigma: None,
        });
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let c = self.cache("backward")?;
        let gamma = &self.weight.value;
        let sums = grad_out.batch_norm_backward_sums(&c.xhat, gamma)?;
        let gx = if c.mode.uses_batch_statistics() {
            // `P(γ g)` in one pass, from the column means of `γ g` and `x̂ γ g`.
            let b = grad_out.shape()[0] as f64;
            let mean_u = sums.grad_gamma.scale(1.0 / b)?;
            let mean_xu = sums.xhat_grad_gamma.scale(1.0 / b)?;
            grad_out.batch_norm_project(gamma, &mean_u, &c.xhat, &mean_xu, &c.inv_std)?
        } else {
            bc(
                &bc(grad_out, gamma, BinaryOp::Mul)?,
                &c.inv_std,
                BinaryOp::Mul,
            )?
        };
        self.weight.accumulate_grad(sums.grad_xhat)?;
        self.bias.accumulate_grad(sums.grad)?;
        let c = self.cache.as_mut().expect("checked above");
        c.g = Some(grad_out.clone());
        c.gx = Some(gx.clone());
        Ok(gx)
    }

    fn forward_tangent(&mut self, dx: &Tensor) -> Result<Tensor> {
        let c = self.cache("forward_tangent")?;
        if dx.shape() != c.xhat.shape() {
            return Err(NnError::ShapeMismatch {
                layer: "batch_norm1d".into(),
                expected: format!("{:?}", c.xhat.shape()),
                got: dx.shape().to_vec(),
            });
        }
        let (rxhat, rsigma) = if c.mode.uses_batch_statistics() {
            (Self::project(c, dx)?, Some(c.xhat.mul(dx)?.col_means()?))
        } else {
            (bc(dx, &c.inv_std, BinaryOp::Mul)?, None)
        };
        let ry = bc(&rxhat, &self.weight.value, BinaryOp::Mul)?;
        let c = self.cache.as_mut().expect("checked above");
        c.rxhat = Some(rxhat);
        c.rsigma = rsigma;
        Ok(ry)
    }

    fn backward_tangent(&mut self, dgrad_out: &Tensor) -> Result<Tensor> {
        let c = self.cache("backward_tangent")?;
        let g = need(&c.g, "batch_norm1d", "backward_tangent", "backward")?;
        let gx = need(&c.gx, "batch_norm1d", "backward_tangent", "backward")?;
        let rxhat = need(
            &c.rxhat,
            "batch_norm1d",
            "backward_tangent",
            "forward_tangent",
        )?;
        let gamma = &self.weight.value;
        let rggamma = bc(dgrad_out, gamma, BinaryOp::Mul)?;
        let rgx = match (c.mode.uses_batch_statistics(), &c.rsigma) {
            (true, Some(rsigma)) => {
                let ggamma = bc(g, gamma, BinaryOp::Mul)?;
                let first = Self::project(c, &rggamma)?;
                let rel = rsigma.mul(&c.inv_std)?;
                let second = bc(gx, &rel, BinaryOp::Mul)?;
                let a = bc(rxhat, &c.xhat.mul(&ggamma)?.col_means()?, BinaryOp::Mul)?;
                let b = bc(&c.xhat, &rxhat.mul(&ggamma)?.col_means()?, BinaryOp::Mul)?;
                let third = bc(&a.add(&b)?, &c.inv_std, BinaryOp::Mul)?;
                first.sub(&second)?.sub(&third)?
            }
            _ => bc(&rggamma, &c.inv_std, BinaryOp::Mul)?,
        };
        let rgw = dgrad_out.mul(&c.xhat)?.add(&g.mul(rxhat)?)?.col_sums()?;
        let rgb = dgrad_out.col_sums()?;
        self.weight.accumulate_grad_tangent(rgw)?;
        self.bias.accumulate_grad_tangent(rgb)?;
        Ok(rgx)
    }

    fn params(&self) -> Vec<&Param> {
        vec![&self.weight, &self.bias]
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        vec![&mut self.weight, &mut self.bias]
    }

    fn name(&self) -> &str {
        "batch_norm1d"
    }

    fn mixes_samples(&self, mode: Mode) -> bool {
        mode.uses_batch_statistics()
    }

    /// `running_mean` and `running_var` (`[F]`, the layer's dtype), and
    /// `num_batches_tracked` as a scalar (shape `[]`) `f64` tensor on the CPU.
    fn buffers(&self) -> Vec<(String, Tensor)> {
        let batches = Tensor::from_vec(vec![self.num_batches_tracked as f64], &[], &Device::Cpu)
            .expect("a one-element scalar tensor");
        vec![
            ("running_mean".to_string(), self.running_mean.clone()),
            ("running_var".to_string(), self.running_var.clone()),
            ("num_batches_tracked".to_string(), batches),
        ]
    }

    /// Sets `running_mean` or `running_var` (shape `[F]`, converted to the layer's dtype
    /// and device) or `num_batches_tracked` (one element holding a non-negative integer).
    fn set_buffer(&mut self, name: &str, value: Tensor) -> Result<()> {
        let shape_err = |expected: String| NnError::ShapeMismatch {
            layer: format!("batch_norm1d buffer {name}"),
            expected,
            got: value.shape().to_vec(),
        };
        match name {
            "running_mean" | "running_var" => {
                let f = self.num_features();
                if value.shape() != [f] {
                    return Err(shape_err(format!("[{f}]")));
                }
                let like = &self.weight.value;
                let v = value.to_dtype(like.dtype())?.to_device(&like.device())?;
                if name == "running_mean" {
                    self.running_mean = v;
                } else {
                    self.running_var = v;
                }
                Ok(())
            }
            "num_batches_tracked" => {
                if value.elem_count() != 1 {
                    return Err(shape_err("[]".into()));
                }
                let n = value.to_scalar()?;
                if !(n >= 0.0 && n.fract() == 0.0 && n < 2f64.powi(63)) {
                    return Err(NnError::InvalidArgument {
                        what: "batch_norm1d.set_buffer".into(),
                        reason: format!("num_batches_tracked = {n} is not a count"),
                    });
                }
                self.num_batches_tracked = n as u64;
                Ok(())
            }
            _ => Err(NnError::InvalidArgument {
                what: "batch_norm1d.set_buffer".into(),
                reason: format!("the layer has no buffer named {name:?}"),
            }),
        }
    }
}
