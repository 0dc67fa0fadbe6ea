//! Elementwise activations; every shape `[B, …]` is accepted and kept.
//!
//! * `Tanh`: `y = tanh x`, `∂L/∂x = g (1 − y²)`, `R{y} = (1 − y²) dx`,
//!   `R{∂L/∂x} = R{g} (1 − y²) − 2 y R{y} g`.
//! * `Sigmoid`: `y = 1/(1 + e⁻ˣ)`, `∂L/∂x = g y(1 − y)`, `R{y} = y(1 − y) dx`,
//!   `R{∂L/∂x} = R{g} y(1 − y) + g (1 − 2y) R{y}`.
//! * `Relu`: `y = max(x, 0)`, `∂L/∂x = g [x > 0]`, `R{y} = dx [x > 0]`,
//!   `R{∂L/∂x} = R{g} [x > 0]` (piecewise linear: no curvature term).

use specreg_tensor::Tensor;

use crate::layer::need;
use crate::{Layer, Mode, Result};

/// Caches shared by the smooth activations: output, upstream gradient, output tangent.
#[derive(Debug, Clone, Default)]
struct SmoothCache {
    y: Option<Tensor>,
    g: Option<Tensor>,
    ry: Option<Tensor>,
}

impl SmoothCache {
    fn set_y(&mut self, y: &Tensor) {
        *self = Self {
            y: Some(y.clone()),
            g: None,
            ry: None,
        };
    }
}

/// `y = tanh x`.
#[derive(Debug, Clone, Default)]
pub struct Tanh {
    cache: SmoothCache,
}

impl Tanh {
    /// A tanh layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Layer for Tanh {
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        let y = x.tanh()?;
        self.cache.set_y(&y);
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let y = need(&self.cache.y, "tanh", "backward", "forward")?;
        let gx = y.tanh_backward(grad_out)?;
        self.cache.g = Some(grad_out.clone());
        Ok(gx)
    }

    fn forward_tangent(&mut self, dx: &Tensor) -> Result<Tensor> {
        let y = need(&self.cache.y, "tanh", "forward_tangent", "forward")?;
        let ry = y.tanh_backward(dx)?;
        self.cache.ry = Some(ry.clone());
        Ok(ry)
    }

    fn backward_tangent(&mut self, dgrad_out: &Tensor) -> Result<Tensor> {
        let c = &self.cache;
        let y = need(&c.y, "tanh", "backward_tangent", "forward")?;
        let g = need(&c.g, "tanh", "backward_tangent", "backward")?;
        let ry = need(&c.ry, "tanh", "backward_tangent", "forward_tangent")?;
        let curvature = y.mul(ry)?.mul(g)?.scale(2.0)?;
        Ok(y.tanh_backward(dgrad_out)?.sub(&curvature)?)
    }

    fn backward_merged(&mut self, grad_out: &Tensor, tangent_scale: f64) -> Result<Tensor> {
        let c = &self.cache;
        let y = need(&c.y, "tanh", "backward_merged", "forward")?;
        let g = need(&c.g, "tanh", "backward_merged", "backward")?;
        let ry = need(&c.ry, "tanh", "backward_merged", "forward_tangent")?;
        let curvature = y.mul(ry)?.mul(g)?.scale(2.0 * tangent_scale)?;
        let gx = y.tanh_backward(grad_out)?.sub(&curvature)?;
        self.cache.g = Some(grad_out.clone());
        self.cache.ry = None;
        Ok(gx)
    }

    fn name(&self) -> &str {
        "tanh"
    }
}

/// `y = 1 / (1 + e⁻ˣ)`.
#[derive(Debug, Clone, Default)]
pub struct Sigmoid {
    cache: SmoothCache,
}

impl Sigmoid {
    /// A sigmoid layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Layer for Sigmoid {
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        let y = x.sigmoid()?;
        self.cache.set_y(&y);
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let y = need(&self.cache.y, "sigmoid", "backward", "forward")?;
        let gx = y.sigmoid_backward(grad_out)?;
        self.cache.g = Some(grad_out.clone());
        Ok(gx)
    }

    fn forward_tangent(&mut self, dx: &Tensor) -> Result<Tensor> {
        let y = need(&self.cache.y, "sigmoid", "forward_tangent", "forward")?;
        let ry = y.sigmoid_backward(dx)?;
        self.cache.ry = Some(ry.clone());
        Ok(ry)
    }

    fn backward_tangent(&mut self, dgrad_out: &Tensor) -> Result<Tensor> {
        let c = &self.cache;
        let y = need(&c.y, "sigmoid", "backward_tangent", "forward")?;
        let g = need(&c.g, "sigmoid", "backward_tangent", "backward")?;
        let ry = need(&c.ry, "sigmoid", "backward_tangent", "forward_tangent")?;
        let curvature = y.affine(-2.0, 1.0)?.mul(ry)?.mul(g)?;
        Ok(y.sigmoid_backward(dgrad_out)?.add(&curvature)?)
    }

    fn name(&self) -> &str {
        "sigmoid"
    }
}

/// `y = max(x, 0)`; the derivative at `0` is taken as `0`, as PyTorch does.
#[derive(Debug, Clone, Default)]
pub struct Relu {
    x: Option<Tensor>,
    backward_done: bool,
    tangent_done: bool,
}

impl Relu {
    /// A ReLU layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Layer for Relu {
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        let y = x.relu()?;
        *self = Self {
            x: Some(x.clone()),
            backward_done: false,
            tangent_done: false,
        };
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let x = need(&self.x, "relu", "backward", "forward")?;
        let gx = x.relu_backward(grad_out)?;
        self.backward_done = true;
        Ok(gx)
    }

    fn forward_tangent(&mut self, dx: &Tensor) -> Result<Tensor> {
        let x = need(&self.x, "relu", "forward_tangent", "forward")?;
        let ry = x.relu_backward(dx)?;
        self.tangent_done = true;
        Ok(ry)
    }

    fn backward_tangent(&mut self, dgrad_out: &Tensor) -> Result<Tensor> {
        let x = need(&self.x, "relu", "backward_tangent", "forward")?;
        let order = [
            (self.backward_done, "backward"),
            (self.tangent_done, "forward_tangent"),
        ];
        if let Some((_, needs)) = order.iter().find(|(done, _)| !done) {
            return Err(crate::NnError::OutOfOrder {
                layer: "relu".into(),
                pass: "backward_tangent",
                needs,
            });
        }
        Ok(x.relu_backward(dgrad_out)?)
    }

    fn name(&self) -> &str {
        "relu"
    }
}
