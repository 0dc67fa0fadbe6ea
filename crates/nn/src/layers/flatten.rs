//! Flattening: `[B, d₁, …, d_k] → [B, d₁⋯d_k]` in row-major order.
//!
//! A reshape is linear, so every pass is a reshape: `∂L/∂x = reshape(g)`,
//! `R{y} = reshape(dx)`, `R{∂L/∂x} = reshape(R{g})`.

use specreg_tensor::Tensor;

use crate::{Layer, Mode, NnError, Result};

/// `[B, …] → [B, ∏…]`.
#[derive(Debug, Clone, Default)]
pub struct Flatten {
    in_shape: Option<Vec<usize>>,
    backward_done: bool,
    tangent_done: bool,
}

impl Flatten {
    /// A flattening layer.
    pub fn new() -> Self {
        Self::default()
    }

    fn in_shape(&self, pass: &'static str) -> Result<&[usize]> {
        self.in_shape.as_deref().ok_or_else(|| {
            if pass == "backward" {
                NnError::BackwardBeforeForward {
                    layer: "flatten".into(),
                }
            } else {
                NnError::OutOfOrder {
                    layer: "flatten".into(),
                    pass,
                    needs: "forward",
                }
            }
        })
    }
}

impl Layer for Flatten {
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<Tensor> {
        let y = x.flatten_from_1()?;
        *self = Self {
            in_shape: Some(x.shape().to_vec()),
            backward_done: false,
            tangent_done: false,
        };
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let gx = grad_out.reshape(self.in_shape("backward")?)?;
        self.backward_done = true;
        Ok(gx)
    }

    fn forward_tangent(&mut self, dx: &Tensor) -> Result<Tensor> {
        let shape = self.in_shape("forward_tangent")?;
        if dx.shape() != shape {
            return Err(NnError::ShapeMismatch {
                layer: "flatten".into(),
                expected: format!("{shape:?}"),
                got: dx.shape().to_vec(),
            });
        }
        let dy = dx.flatten_from_1()?;
        self.tangent_done = true;
        Ok(dy)
    }

    fn backward_tangent(&mut self, dgrad_out: &Tensor) -> Result<Tensor> {
        let shape = self.in_shape("backward_tangent")?;
        let order = [
            (self.backward_done, "backward"),
            (self.tangent_done, "forward_tangent"),
        ];
        if let Some((_, needs)) = order.iter().find(|(done, _)| !done) {
            return Err(NnError::OutOfOrder {
                layer: "flatten".into(),
                pass: "backward_tangent",
                needs,
            });
        }
        Ok(dgrad_out.reshape(shape)?)
    }

    fn name(&self) -> &str {
        "flatten"
    }
}
