//! 2×2 max-pooling with stride 2.
//!
//! `y[b,c,i,j] = max_{dy,dx ∈ {0,1}} x[b,c,2i+dy,2j+dx]` with `x: [B, C, H, W]`,
//! `y: [B, C, ⌊H/2⌋, ⌊W/2⌋]` (an odd last row/column is dropped, as in PyTorch). Ties go to
//! the first maximum in row-major order.
//!
//! The pool is piecewise linear: with `a` the argmax,
//! * backward: `∂L/∂x = scatter_a(g)` (zero off the argmax);
//! * forward tangent: `R{y} = gather_a(dx)`;
//! * backward tangent: `R{∂L/∂x} = scatter_a(R{g})`.

use specreg_tensor::Tensor;

use crate::layer::need;
use crate::{Layer, Mode, NnError, Result};

/// 2×2 max-pooling, stride 2.
#[derive(Debug, Clone, Default)]
pub struct MaxPool2d {
    argmax: Option<Tensor>,
    in_hw: (usize, usize),
    backward_done: bool,
    tangent_done: bool,
}

impl MaxPool2d {
    /// A 2×2 max-pooling layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Layer for MaxPool2d {
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4().map_err(|_| NnError::ShapeMismatch {
            layer: "max_pool2d".into(),
            expected: "[B, C, H ≥ 2, W ≥ 2]".into(),
            got: x.shape().to_vec(),
        })?;
        let (y, argmax) = x.max_pool2d()?;
        *self = Self {
            argmax: Some(argmax),
            in_hw: (h, w),
            backward_done: false,
            tangent_done: false,
        };
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let a = need(&self.argmax, "max_pool2d", "backward", "forward")?;
        let gx = grad_out.max_pool2d_backward(a, self.in_hw.0, self.in_hw.1)?;
        self.backward_done = true;
        Ok(gx)
    }

    fn forward_tangent(&mut self, dx: &Tensor) -> Result<Tensor> {
        let a = need(&self.argmax, "max_pool2d", "forward_tangent", "forward")?;
        let (_, _, h, w) = dx.dims4()?;
        if (h, w) != self.in_hw {
            return Err(NnError::ShapeMismatch {
                layer: "max_pool2d".into(),
                expected: format!("[B, C, {}, {}]", self.in_hw.0, self.in_hw.1),
                got: dx.shape().to_vec(),
            });
        }
        let dy = dx.max_pool2d_gather(a)?;
        self.tangent_done = true;
        Ok(dy)
    }

    fn backward_tangent(&mut self, dgrad_out: &Tensor) -> Result<Tensor> {
        let a = need(&self.argmax, "max_pool2d", "backward_tangent", "forward")?;
        let order = [
            (self.backward_done, "backward"),
            (self.tangent_done, "forward_tangent"),
        ];
        if let Some((_, needs)) = order.iter().find(|(done, _)| !done) {
            return Err(NnError::OutOfOrder {
                layer: "max_pool2d".into(),
                pass: "backward_tangent",
                needs,
            });
        }
        Ok(dgrad_out.max_pool2d_backward(a, self.in_hw.0, self.in_hw.1)?)
    }

    fn name(&self) -> &str {
        "max_pool2d"
    }
}
