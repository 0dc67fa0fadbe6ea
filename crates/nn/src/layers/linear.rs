//! Fully connected layer.
//!
//! `y = x Wᵀ + b` with `x: [B, in]`, `W: [out, in]`, `b: [out]`, `y: [B, out]`.
//!
//! * backward: `∂L/∂x = g W`, `∂L/∂W = gᵀ x`, `∂L/∂b = Σ_rows g`;
//! * forward tangent: `R{y} = dx Wᵀ`;
//! * backward tangent: `R{∂L/∂x} = R{g} W`, `R{∂L/∂W} = R{g}ᵀ x + gᵀ dx`,
//!   `R{∂L/∂b} = Σ_rows R{g}`.

use specreg_tensor::{DType, Device, Rng, Tensor};

use crate::layer::need;
use crate::{Layer, Mode, NnError, Param, Result};

/// `y = x Wᵀ + b`, initialised as PyTorch's `nn.Linear`: `W, b ~ U(±1/√in)`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Param,
    bias: Param,
    x: Option<Tensor>,
    g: Option<Tensor>,
    dx: Option<Tensor>,
}

impl Linear {
    /// A layer with PyTorch's default initialisation drawn from `rng`.
    pub fn new(
        in_features: usize,
        out_features: usize,
        dtype: DType,
        device: &Device,
        rng: &mut Rng,
    ) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return Err(NnError::InvalidArgument {
                what: "Linear::new".into(),
                reason: format!("sizes {in_features} → {out_features} must be positive"),
            });
        }
        let k = 1.0 / (in_features as f64).sqrt();
        let w = Tensor::rand_uniform(&[out_features, in_features], -k, k, dtype, rng, device)?;
        let b = Tensor::rand_uniform(&[out_features], -k, k, dtype, rng, device)?;
        Self::from_tensors(w, b)
    }

    /// A layer with the given weight `[out, in]` and bias `[out]`.
    pub fn from_tensors(weight: Tensor, bias: Tensor) -> Result<Self> {
        let (out, _) = weight.dims2()?;
        if bias.shape() != [out] {
            return Err(NnError::ShapeMismatch {
                layer: "linear bias".into(),
                expected: format!("[{out}]"),
                got: bias.shape().to_vec(),
            });
        }
        Ok(Self {
            weight: Param::new("weight", weight),
            bias: Param::new("bias", bias),
            x: None,
            g: None,
            dx: None,
        })
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.weight.value.shape()[1]
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.weight.value.shape()[0]
    }

    /// The weight `W: [out, in]`.
    pub fn weight(&self) -> &Param {
        &self.weight
    }

    /// The bias `b: [out]`.
    pub fn bias(&self) -> &Param {
        &self.bias
    }

    fn check(&self, t: &Tensor, width: usize) -> Result<()> {
        match *t.shape() {
            [_, n] if n == width => Ok(()),
            _ => Err(NnError::ShapeMismatch {
                layer: self.name().into(),
                expected: format!("[B, {width}]"),
                got: t.shape().to_vec(),
            }),
        }
    }
}

impl Layer for Linear {
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        self.check(x, self.in_features())?;
        let y = x
            .matmul_nt(&self.weight.value)?
            .broadcast_add_rows(&self.bias.value)?;
        self.x = Some(x.clone());
        self.g = None;
        self.dx = None;
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        self.backward_params(grad_out)?;
        Ok(grad_out.matmul(&self.weight.value)?)
    }

    fn backward_params(&mut self, grad_out: &Tensor) -> Result<()> {
        self.check(grad_out, self.out_features())?;
        let x = need(&self.x, "linear", "backward", "forward")?;
        let gw = grad_out.matmul_tn(x)?;
        let gb = grad_out.col_sums()?;
        self.weight.accumulate_grad(gw)?;
        self.bias.accumulate_grad(gb)?;
        self.g = Some(grad_out.clone());
        Ok(())
    }

    fn backward_input(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        self.check(grad_out, self.out_features())?;
        need(&self.x, "linear", "backward", "forward")?;
        self.g = Some(grad_out.clone());
        Ok(grad_out.matmul(&self.weight.value)?)
    }

    fn forward_tangent(&mut self, dx: &Tensor) -> Result<Tensor> {
        let x = need(&self.x, "linear", "forward_tangent", "forward")?;
        if dx.shape() != x.shape() {
            return Err(NnError::ShapeMismatch {
                layer: self.name().into(),
                expected: format!("{:?}", x.shape()),
                got: dx.shape().to_vec(),
            });
        }
        let dy = dx.matmul_nt(&self.weight.value)?;
        self.dx = Some(dx.clone());
        Ok(dy)
    }

    fn backward_tangent(&mut self, dgrad_out: &Tensor) -> Result<Tensor> {
        self.backward_tangent_params(dgrad_out)?;
        Ok(dgrad_out.matmul(&self.weight.value)?)
    }

    fn backward_tangent_params(&mut self, dgrad_out: &Tensor) -> Result<()> {
        self.check(dgrad_out, self.out_features())?;
        let x = need(&self.x, "linear", "backward_tangent", "forward")?;
        let g = need(&self.g, "linear", "backward_tangent", "backward")?;
        let dx = need(&self.dx, "linear", "backward_tangent", "forward_tangent")?;
        let rgw = dgrad_out.matmul_tn(x)?.add(&g.matmul_tn(dx)?)?;
        let rgb = dgrad_out.col_sums()?;
        self.weight.accumulate_grad_tangent(rgw)?;
        self.bias.accumulate_grad_tangent(rgb)?;
        Ok(())
    }

    fn backward_merged(&mut self, grad_out: &Tensor, tangent_scale: f64) -> Result<Tensor> {
        self.backward_merged_params(grad_out, tangent_scale)?;
        Ok(grad_out.matmul(&self.weight.value)?)
    }

    /// `R{∂L/∂x} = R{g} W` has no term of its own, so only the weight gets `s gᵀR{x}`.
    fn backward_merged_params(&mut self, grad_out: &Tensor, tangent_scale: f64) -> Result<()> {
        let g = need(&self.g, "linear", "backward_merged", "backward")?;
        let dx = need(&self.dx, "linear", "backward_merged", "forward_tangent")?;
        let own = g.matmul_tn(dx)?.scale(tangent_scale)?;
        self.backward_params(grad_out)?;
        self.weight.accumulate_grad(own)?;
        self.dx = None;
        Ok(())
    }

    fn params(&self) -> Vec<&Param> {
        vec![&self.weight, &self.bias]
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        vec![&mut self.weight, &mut self.bias]
    }

    fn name(&self) -> &str {
        "linear"
    }
}
