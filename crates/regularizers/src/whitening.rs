//! The whitening layer of eq. 10: `x̃ = L⁻¹(x − μ)`, which "breaks" a representation by
//! flattening its spectrum.
//!
//! In `Train` mode `μ` and `Σ` are the batch mean and unbiased covariance, `L` is the
//! Cholesky factor of `Σ + εI`, and gradients flow through the mean, the covariance, the
//! factorisation and the triangular solve. As the paper says, training is handled like
//! batch normalisation: the layer also keeps running estimates of `μ` and `Σ` (momentum
//! 0.1, PyTorch's convention), and `Eval` mode whitens with those, so an evaluated or
//! attacked network maps each image independently of the rest of its batch.
//!
//! With rows as samples the forward pass is `Y = X_c L⁻ᵀ`. Given `G = ∂ℓ/∂Y`, with
//! `Φ(A)` the lower triangle of `A` with its diagonal halved and `P = Φ(−Gᵀ Y)`, the
//! gradient is `∂ℓ/∂X_c = [G + Y (P + Pᵀ)/(B − 1)] L⁻¹`, centred over the batch (the
//! mean's share). The `P` term is the Cholesky adjoint `Σ̄ = L⁻ᵀ P L⁻¹` (from
//! `dL = L Φ(L⁻¹ dΣ L⁻ᵀ)`) pushed through `Σ = X_cᵀ X_c/(B − 1)`.

use ndarray::{Array1, Array2};
use specreg_nn::{Layer, Mode, NnError, Param, Result};
use specreg_tensor::{BinaryOp, DType, Device, Error as TensorError, Tensor, Triangle};

/// The whitening layer (eq. 10) for width-`N` representations `[B, N]`.
#[derive(Debug)]
pub struct Whitening {
    name: String,
    width: usize,
    eps: f64,
    momentum: f64,
    running_mean: Tensor,
    running_cov: Tensor,
    cache: Option<Cache>,
}

#[derive(Debug)]
struct Cache {
    mode: Mode,
    l: Tensor,
    y: Tensor,
}

impl Whitening {
    /// A whitening layer for representation `name` of width `width`, regularised by
    /// `eps · I` (the paper: `1e-5`). Running statistics start at `μ = 0`, `Σ = I`, in
    /// `f32` on the CPU; [`Whitening::on`] picks another dtype or device.
    ///
    /// # Errors
    /// `width = 0` or `eps` not finite and positive.
    pub fn new(name: impl Into<String>, width: usize, eps: f64) -> Result<Self> {
        let name = name.into();
        if width == 0 || !(eps.is_finite() && eps > 0.0) {
            return Err(NnError::InvalidArgument {
                what: format!("whitening of {name}"),
                reason: format!("width must be ≥ 1 and eps finite and > 0, got {width} and {eps}"),
            });
        }
        let running_mean = Tensor::zeros(&[width], DType::F32, &Device::Cpu)?;
        let running_cov = Tensor::from_array(Array2::<f32>::eye(width));
        Ok(Self {
            name,
            width,
            eps,
            momentum: 0.1,
            running_mean,
            running_cov,
            cache: None,
        })
    }

    /// The same layer with its running statistics in `dtype` on `device` (the network's).
    pub fn on(mut self, dtype: DType, device: &Device) -> Result<Self> {
        self.running_mean = self.running_mean.to_dtype(dtype)?.to_device(device)?;
        self.running_cov = self.running_cov.to_dtype(dtype)?.to_device(device)?;
        Ok(self)
    }

    /// The running-average momentum (default 0.1), in `[0, 1]`.
    pub fn with_momentum(mut self, momentum: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&momentum) {
            return Err(NnError::InvalidArgument {
                what: format!("whitening of {}", self.name),
                reason: format!("momentum must be in [0, 1], got {momentum}"),
            });
        }
        self.momentum = momentum;
        Ok(self)
    }

    /// The `ε` added to the covariance's diagonal.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    fn eye_eps(&self, like: &Tensor) -> Result<Tensor> {
        let eye = Tensor::from_array(Array2::<f64>::eye(self.width) * self.eps);
        Ok(eye.to_dtype(like.dtype())?.to_device(&like.device())?)
    }

    fn cholesky(&self, sigma: &Tensor) -> Result<Tensor> {
        let s = sigma.add(&self.eye_eps(sigma)?)?;
        s.cholesky().map_err(|e| match e {
            TensorError::NotPositiveDefinite { pivot, .. } => NnError::NotPositiveDefinite {
                layer: format!("whitening of {}", self.name),
                pivot,
            },
            other => other.into(),
        })
    }

    fn check(&self, t: &Tensor, pass: &str) -> Result<usize> {
        match *t.shape() {
            [b, n] if n == self.width => Ok(b),
            _ => Err(NnError::ShapeMismatch {
                layer: format!("whitening of {} ({pass})", self.name),
                expected: format!("[B, {}]", self.width),
                got: t.shape().to_vec(),
            }),
        }
    }

    /// `Φ(A)`: the lower triangle of a square `A` with its diagonal halved.
    fn lower_half_diag(&self, a: &Tensor) -> Result<Tensor> {
        let n = self.width;
        let mask = Array2::<f64>::from_shape_fn((n, n), |(i, j)| match i.cmp(&j) {
            std::cmp::Ordering::Greater => 1.0,
            std::cmp::Ordering::Equal => 0.5,
            std::cmp::Ordering::Less => 0.0,
        });
        let mask = Tensor::from_array(mask)
            .to_dtype(a.dtype())?
            .to_device(&a.device())?;
        Ok(a.mul(&mask)?)
    }
}

impl Layer for Whitening {
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let b = self.check(x, "forward")?;
        let (xc, l) = match mode {
            Mode::Train => {
                if b < 2 {
                    return Err(NnError::InvalidArgument {
                        what: format!("whitening of {}", self.name),
                        reason: format!("training needs a batch of at least 2 samples, got {b}"),
                    });
                }
                let mu = x.col_means()?;
                let xc = x.broadcast_along(&mu, 1, BinaryOp::Sub)?;
                let sigma = xc.gram()?.scale(1.0 / (b as f64 - 1.0))?;
                let l = self.cholesky(&sigma)?;
                let m = self.momentum;
                self.running_mean = self.running_mean.affine(1.0 - m, 0.0)?.add(&mu.scale(m)?)?;
                self.running_cov = self
                    .running_cov
                    .affine(1.0 - m, 0.0)?
                    .add(&sigma.scale(m)?)?;
                (xc, l)
            }
            Mode::Eval => {
                let xc = x.broadcast_along(&self.running_mean, 1, BinaryOp::Sub)?;
                (xc, self.cholesky(&self.running_cov)?)
            }
        };
        // Y = X_c L⁻ᵀ, i.e. Yᵀ = L⁻¹ X_cᵀ.
        let y = l.solve_triangular(&xc.t()?, Triangle::Lower, false)?.t()?;
        self.cache = Some(Cache {
            mode,
            l,
            y: y.clone(),
        });
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let b = self.check(grad_out, "backward")?;
        let cache = self
            .cache
            .as_ref()
            .ok_or_else(|| NnError::BackwardBeforeForward {
                layer: format!("whitening of {}", self.name),
            })?;
        if grad_out.shape() != cache.y.shape() {
            return Err(NnError::ShapeMismatch {
                layer: format!("whitening of {} (backward)", self.name),
                expected: format!("{:?}", cache.y.shape()),
                got: grad_out.shape().to_vec(),
            });
        }
        // Z L⁻¹ = (L⁻ᵀ Zᵀ)ᵀ.
        let right_solve = |z: &Tensor| -> Result<Tensor> {
            Ok(cache
                .l
                .solve_triangular(&z.t()?, Triangle::Lower, true)?
                .t()?)
        };
        match cache.mode {
            Mode::Eval => right_solve(grad_out),
            Mode::Train => {
                let p = self.lower_half_diag(&grad_out.matmul_tn(&cache.y)?.scale(-1.0)?)?;
                let sym = p.add(&p.t()?)?;
                let z = grad_out.add(&cache.y.matmul(&sym)?.scale(1.0 / (b as f64 - 1.0))?)?;
                let gxc = right_solve(&z)?;
                Ok(gxc.broadcast_along(&gxc.col_means()?, 1, BinaryOp::Sub)?)
            }
        }
    }

    fn forward_tangent(&mut self, _dx: &Tensor) -> Result<Tensor> {
        Err(NnError::Unsupported {
            layer: format!("whitening of {}", self.name),
            pass: "forward_tangent (the Jacobian regulariser through a whitened layer)",
        })
    }

    fn backward_tangent(&mut self, _dgrad_out: &Tensor) -> Result<Tensor> {
        Err(NnError::Unsupported {
            layer: format!("whitening of {}", self.name),
            pass: "backward_tangent (the Jacobian regulariser through a whitened layer)",
        })
    }

    fn params(&self) -> Vec<&Param> {
        Vec::new()
    }

    fn name(&self) -> &str {
        "whitening"
    }

    fn buffers(&self) -> Vec<(String, Tensor)> {
        vec![
            ("running_mean".into(), self.running_mean.clone()),
            ("running_cov".into(), self.running_cov.clone()),
        ]
    }

    fn set_buffer(&mut self, name: &str, value: Tensor) -> Result<()> {
        let (slot, shape) = match name {
            "running_mean" => (&mut self.running_mean, vec![self.width]),
            "running_cov" => (&mut self.running_cov, vec![self.width, self.width]),
            _ => {
                return Err(NnError::InvalidArgument {
                    what: format!("whitening of {}.set_buffer", self.name),
                    reason: format!("no buffer named {name:?} (running_mean, running_cov)"),
                });
            }
        };
        if value.shape() != shape.as_slice() {
            return Err(NnError::TensorShape {
                name: name.into(),
                expected: shape,
                found: value.shape().to_vec(),
            });
        }
        *slot = value.to_dtype(slot.dtype())?.to_device(&slot.device())?;
        Ok(())
    }
}

/// The running mean as an `f64` vector (for reports and tests).
impl Whitening {
    /// The running mean, as `f64`.
    pub fn running_mean(&self) -> Result<Array1<f64>> {
        Ok(Array1::from(
            self.running_mean.to_dtype(DType::F64)?.to_vec::<f64>()?,
        ))
    }
}
