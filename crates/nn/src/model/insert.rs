//! Inserting a layer after a named representation (e.g. whitening): the wrapper that
//! presents a rank > 2 representation to the inserted layer as `[B, N]`, and
//! [`Network::insert_after`].

use specreg_tensor::Tensor;

use super::Network;
use crate::{Flatten, Layer, Mode, Param, Result, Sequential};

/// An inserted layer: flattens a rank > 2 input to `[B, N]` for the inner layer and
/// reshapes every pass's result back.
#[derive(Debug)]
struct Inserted {
    inner: Box<dyn Layer>,
    /// Whether to present rank > 2 inputs as `[B, N]` (false: plain delegation, used to
    /// carry the original layers over into the rebuilt stack).
    flatten: bool,
    in_shape: Option<Vec<usize>>,
}

impl Inserted {
    fn flat(&self, t: &Tensor) -> Result<Tensor> {
        Ok(if self.flatten && t.rank() > 2 {
            t.flatten_from_1()?
        } else {
            t.clone()
        })
    }

    fn unflat(&self, t: Tensor) -> Result<Tensor> {
        match &self.in_shape {
            Some(s) if self.flatten && s.len() > 2 => Ok(t.reshape(s)?),
            _ => Ok(t),
        }
    }
}

impl Layer for Inserted {
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.in_shape = Some(x.shape().to_vec());
        let y = self.inner.forward(&self.flat(x)?, mode)?;
        self.unflat(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let g = self.inner.backward(&self.flat(grad_out)?)?;
        self.unflat(g)
    }

    fn backward_input(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let g = self.inner.backward_input(&self.flat(grad_out)?)?;
        self.unflat(g)
    }

    fn forward_tangent(&mut self, dx: &Tensor) -> Result<Tensor> {
        let d = self.inner.forward_tangent(&self.flat(dx)?)?;
        self.unflat(d)
    }

    fn backward_tangent(&mut self, dgrad_out: &Tensor) -> Result<Tensor> {
        let r = self.inner.backward_tangent(&self.flat(dgrad_out)?)?;
        self.unflat(r)
    }

    fn params(&self) -> Vec<&Param> {
        self.inner.params()
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        self.inner.params_mut()
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn mixes_samples(&self, mode: Mode) -> bool {
        self.inner.mixes_samples(mode)
    }

    fn zero_grad(&mut self) {
        self.inner.zero_grad();
    }

    fn buffers(&self) -> Vec<(String, Tensor)> {
        self.inner.buffers()
    }

    fn set_buffer(&mut self, name: &str, value: Tensor) -> Result<()> {
        self.inner.set_buffer(name, value)
    }
}

impl Network {
    /// Inserts `layer` right after representation `name` (e.g. a whitening layer after the
    /// MLP's `fc2` or the CNN's `conv2`). The name keeps referring to the inserted layer's
    /// **input**; later representations move one layer down. A layer inserted after a 4-D
    /// representation sees it as `[B, N]`, and its output is reshaped back.
    ///
    /// # Errors
    /// [`NnError::UnknownRepresentation`](crate::NnError::UnknownRepresentation) listing the
    /// valid names for an unknown `name`.
    pub fn insert_after(&mut self, name: &str, layer: Box<dyn Layer>) -> Result<()> {
        let at = self.rep(name)?.layer + 1;
        let mut old = std::mem::take(&mut self.seq);
        let mut seq = Sequential::new();
        let mut inserted = Some(Inserted {
            inner: layer,
            flatten: true,
            in_shape: None,
        });
        for (i, slot) in old.layers_mut().iter_mut().enumerate() {
            if i == at
                && let Some(l) = inserted.take()
            {
                seq.push(l);
            }
            let l = std::mem::replace(slot, Box::new(Flatten::new()));
            seq.push(Inserted {
                inner: l,
                flatten: false,
                in_shape: None,
            });
        }
        if let Some(l) = inserted.take() {
            seq.push(l);
        }
        self.seq = seq;
        for r in &mut self.reps {
            if r.layer >= at {
                r.layer += 1;
            }
        }
        self.last_input_shape = None;
        self.rep_shapes.clear();
        Ok(())
    }
}
