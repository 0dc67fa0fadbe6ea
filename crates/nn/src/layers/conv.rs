//! 2-D convolution (cross-correlation), stride 1, no padding.
//!
//! `y[b,o,i,j] = bias[o] + Σ_{c,p,q} W[o,c,p,q] x[b,c,i+p,j+q]` with `x: [B, C, H, W]`,
//! `W: [O, C, KH, KW]`, `bias: [O]`, `y: [B, O, H−KH+1, W−KW+1]`.
//!
//! `y` is bilinear in `(x, W)`, exactly like a linear layer:
//! * backward: `∂L/∂x = conv_inputᵀ(g, W)`, `∂L/∂W = conv_weightᵀ(x, g)`,
//!   `∂L/∂bias[o] = Σ_{b,i,j} g[b,o,i,j]`;
//! * forward tangent: `R{y} = conv(dx, W)`;
//! * backward tangent: `R{∂L/∂x} = conv_inputᵀ(R{g}, W)`,
//!   `R{∂L/∂W} = conv_weightᵀ(x, R{g}) + conv_weightᵀ(dx, g)`, `R{∂L/∂bias} = Σ R{g}`.

use specreg_tensor::{BinaryOp, DType, Device, Rng, Tensor};

use crate::layer::need;
use crate::{Layer, Mode, NnError, Param, Result};

/// A stride-1, unpadded convolution initialised as PyTorch's `nn.Conv2d`:
/// `W, bias ~ U(±1/√(C·KH·KW))`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Param,
    bias: Param,
    x: Option<Tensor>,
    g: Option<Tensor>,
    dx: Option<Tensor>,
}

/// Sums a `[B, O, H, W]` tensor to `[O]`.
fn channel_sums(t: &Tensor) -> Result<Tensor> {
    Ok(t.sum_axis(3)?.sum_axis(2)?.sum_axis(0)?)
}

impl Conv2d {
    /// A `k_h × k_w` convolution from `in_channels` to `out_channels`, drawn from `rng`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        dtype: DType,
        device: &Device,
        rng: &mut Rng,
    ) -> Result<Self> {
        let (kh, kw) = kernel;
        if [in_channels, out_channels, kh, kw].contains(&0) {
            return Err(NnError::InvalidArgument {
                what: "Conv2d::new".into(),
                reason: format!(
                    "channels {in_channels} → {out_channels} and kernel {kh}x{kw} must be positive"
                ),
            });
        }
        let k = 1.0 / ((in_channels * kh * kw) as f64).sqrt();
        let shape = [out_channels, in_channels, kh, kw];
        let w = Tensor::rand_uniform(&shape, -k, k, dtype, rng, device)?;
        let b = Tensor::rand_uniform(&[out_channels], -k, k, dtype, rng, device)?;
        Self::from_tensors(w, b)
    }

    /// A layer with the given weight `[O, C, KH, KW]` and bias `[O]`.
    pub fn from_tensors(weight: Tensor, bias: Tensor) -> Result<Self> {
        let (o, _, _, _) = weight.dims4()?;
        if bias.shape() != [o] {
            return Err(NnError::ShapeMismatch {
                layer: "conv2d bias".into(),
                expected: format!("[{o}]"),
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

    /// The weight `[O, C, KH, KW]`.
    pub fn weight(&self) -> &Param {
        &self.weight
    }

    /// The bias `[O]`.
    pub fn bias(&self) -> &Param {
        &self.bias
    }

    fn kernel(&self) -> (usize, usize) {
        let s = self.weight.value.shape();
        (s[2], s[3])
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        let s = self.weight.value.shape();
        let (c, kh, kw) = (s[1], s[2], s[3]);
        match *x.shape() {
            [_, xc, h, w] if xc == c && h >= kh && w >= kw => Ok(()),
            _ => Err(NnError::ShapeMismatch {
                layer: "conv2d".into(),
                expected: format!("[B, {c}, H ≥ {kh}, W ≥ {kw}]"),
                got: x.shape().to_vec(),
            }),
        }
    }
}

impl Layer for Conv2d {
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        self.check_input(x)?;
        let y =
            x.conv2d(&self.weight.value)?
                .broadcast_along(&self.bias.value, 1, BinaryOp::Add)?;
        self.x = Some(x.clone());
        self.g = None;
        self.dx = None;
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        self.backward_params(grad_out)?;
        Ok(grad_out.conv2d_backward_input(&self.weight.value)?)
    }

    fn backward_params(&mut self, grad_out: &Tensor) -> Result<()> {
        let x = need(&self.x, "conv2d", "backward", "forward")?;
        let (kh, kw) = self.kernel();
        let gw = x.conv2d_backward_weight(grad_out, kh, kw)?;
        let gb = channel_sums(grad_out)?;
        self.weight.accumulate_grad(gw)?;
        self.bias.accumulate_grad(gb)?;
        self.g = Some(grad_out.clone());
        Ok(())
    }

    fn backward_input(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        need(&self.x, "conv2d", "backward", "forward")?;
        let gx = grad_out.conv2d_backward_input(&self.weight.value)?;
        self.g = Some(grad_out.clone());
        Ok(gx)
    }

    fn forward_tangent(&mut self, dx: &Tensor) -> Result<Tensor> {
        let x = need(&self.x, "conv2d", "forward_tangent", "forward")?;
        if dx.shape() != x.shape() {
            return Err(NnError::ShapeMismatch {
                layer: "conv2d".into(),
                expected: format!("{:?}", x.shape()),
                got: dx.shape().to_vec(),
            });
        }
        let dy = dx.conv2d(&self.weight.value)?;
        self.dx = Some(dx.clone());
        Ok(dy)
    }

    fn backward_tangent(&mut self, dgrad_out: &Tensor) -> Result<Tensor> {
        self.backward_tangent_params(dgrad_out)?;
        Ok(dgrad_out.conv2d_backward_input(&self.weight.value)?)
    }

    fn backward_tangent_params(&mut self, dgrad_out: &Tensor) -> Result<()> {
        let x = need(&self.x, "conv2d", "backward_tangent", "forward")?;
        let g = need(&self.g, "conv2d", "backward_tangent", "backward")?;
        let dx = need(&self.dx, "conv2d", "backward_tangent", "forward_tangent")?;
        let (kh, kw) = self.kernel();
        let rgw = x
            .conv2d_backward_weight(dgrad_out, kh, kw)?
            .add(&dx.conv2d_backward_weight(g, kh, kw)?)?;
        let rgb = channel_sums(dgrad_out)?;
        self.weight.accumulate_grad_tangent(rgw)?;
        self.bias.accumulate_grad_tangent(rgb)?;
        Ok(())
    }

    fn backward_merged(&mut self, grad_out: &Tensor, tangent_scale: f64) -> Result<Tensor> {
        self.backward_merged_params(grad_out, tangent_scale)?;
        Ok(grad_out.conv2d_backward_input(&self.weight.value)?)
    }

    /// As for a dense layer, only the weight gets a term of its own, `s` times the weight
    /// gradient of `(R{x}, g)`.
    fn backward_merged_params(&mut self, grad_out: &Tensor, tangent_scale: f64) -> Result<()> {
        let g = need(&self.g, "conv2d", "backward_merged", "backward")?;
        let dx = need(&self.dx, "conv2d", "backward_merged", "forward_tangent")?;
        let (kh, kw) = self.kernel();
        let own = dx.conv2d_backward_weight(g, kh, kw)?.scale(tangent_scale)?;
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
        "conv2d"
    }
}
