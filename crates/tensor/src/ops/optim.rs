//! The fused Adam / AMSGrad update of one parameter tensor.

use crate::{Error, Result, Tensor};

/// The coefficients of one Adam update of one parameter at its step `t` (the optimiser
/// derives them from its hyper-parameters; the bias corrections are computed in `f64`).
///
/// Each is rounded to the tensors' dtype once, at the kernel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamCoefficients {
    /// Decay of the first moment, `β₁`.
    pub beta1: f64,
    /// Decay of the second moment, `β₂`.
    pub beta2: f64,
    /// Added to the denominator, `ε`.
    pub eps: f64,
    /// L2 penalty `wd` added to the gradient as `wd·θ` (0 for none).
    pub weight_decay: f64,
    /// `lr / (1 − β₁ᵗ)`.
    pub step_size: f64,
    /// `1 / √(1 − β₂ᵗ)`.
    pub inv_sqrt_bias2: f64,
    /// Divide by the running maximum of the second moment (AMSGrad).
    pub amsgrad: bool,
}

/// The result of [`Tensor::adam_update`]: the new parameter and the new optimiser state.
#[derive(Debug, Clone)]
pub struct AdamUpdate {
    /// `θ'`.
    pub param: Tensor,
    /// `m'`, the first moment.
    pub exp_avg: Tensor,
    /// `v'`, the second moment.
    pub exp_avg_sq: Tensor,
    /// `v̂' = max(v̂, v')` with AMSGrad, `None` without.
    pub max_exp_avg_sq: Option<Tensor>,
}

impl Tensor {
    /// One Adam update of the parameter `self` with gradient `grad`, in one pass:
    ///
    /// ```text
    /// g  = grad + wd·θ                  (if wd ≠ 0)
    /// m' = β₁ m + (1 − β₁) g
    /// v' = β₂ v + (1 − β₂) g²
    /// v̂' = max(v̂, v')                   (AMSGrad; v̂' = v' on the first step, v̂ = None)
    /// θ' = θ − step_size · m' / (√v̂' · inv_sqrt_bias2 + ε)     (v' for v̂' without AMSGrad)
    /// ```
    ///
    /// Every element goes through the same roundings as that sequence of `scale`, `add`,
    /// `sqr`, `maximum`, `sqrt`, `add_scalar`, `div` and `sub` tensor ops would apply
    /// (including their `+ 0` terms), so the result is bit for bit what the unfused ops
    /// give; it reads each operand and writes each output once instead of a dozen times.
    ///
    /// Errors if a shape, dtype or device differs from the parameter's, if
    /// `max_exp_avg_sq` is given without `amsgrad`, or if a coefficient is not finite.
    pub fn adam_update(
        &self,
        grad: &Tensor,
        exp_avg: &Tensor,
        exp_avg_sq: &Tensor,
        max_exp_avg_sq: Option<&Tensor>,
        k: &AdamCoefficients,
    ) -> Result<AdamUpdate> {
        const OP: &str = "adam_update";
        let operands = [Some(grad), Some(exp_avg), Some(exp_avg_sq), max_exp_avg_sq];
        for t in operands.into_iter().flatten() {
            self.expect_same_shape(OP, t)?;
            if t.dtype() != self.dtype() {
                return Err(Error::DTypeMismatch {
                    op: OP,
                    lhs: self.dtype(),
                    rhs: t.dtype(),
                });
            }
            if t.device() != self.device() {
                return Err(Error::DeviceMismatch {
                    op: OP,
                    lhs: self.device(),
                    rhs: t.device(),
                });
            }
        }
        if max_exp_avg_sq.is_some() && !k.amsgrad {
            return Err(Error::InvalidArgument {
                op: OP,
                reason: "max_exp_avg_sq is given but amsgrad is off".into(),
            });
        }
        let scalars = [
            ("beta1", k.beta1),
            ("beta2", k.beta2),
            ("eps", k.eps),
            ("weight_decay", k.weight_decay),
            ("step_size", k.step_size),
            ("inv_sqrt_bias2", k.inv_sqrt_bias2),
        ];
        if let Some((name, x)) = scalars.iter().find(|(_, x)| !x.is_finite()) {
            return Err(Error::InvalidArgument {
                op: OP,
                reason: format!("coefficient {name} is {x}, not finite"),
            });
        }
        let out = self.storage.adam_update(
            &grad.storage,
            &exp_avg.storage,
            &exp_avg_sq.storage,
            max_exp_avg_sq.map(|t| &t.storage),
            k,
        )?;
        Ok(AdamUpdate {
            param: Tensor::from_storage(out.param),
            exp_avg: Tensor::from_storage(out.exp_avg),
            exp_avg_sq: Tensor::from_storage(out.exp_avg_sq),
            max_exp_avg_sq: out.max_exp_avg_sq.map(Tensor::from_storage),
        })
    }
}
