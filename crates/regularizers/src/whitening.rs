//! The whitening layer of eq. 10: `x̃ = L⁻¹(x − μ)`, which "breaks" a representation by
//! flattening its spectrum.
//!
//! With batch statistics, `μ` and `Σ` are the batch mean and unbiased covariance, `L` is the
//! Cholesky factor of `Σ + εI`, and gradients flow through the mean, the covariance, the
//! factorisation and the triangular solve. Which statistics each [`Mode`] uses is set by
//! [`WhiteningStatistics`]:
//!
//! | mode              | `Batch` (default, the reference)   | `Running`                        |
//! |-------------------|------------------------------------|----------------------------------|
//! | `Train`           | batch statistics                   | batch statistics; running update |
//! | `Eval`            | batch statistics                   | running statistics               |
//! | `BatchStatistics` | batch statistics                   | batch statistics                 |
//!
//! The public reference implementation's layer has no running statistics: it whitens every
//! batch, in training and evaluation alike, with that batch's own statistics, so one
//! image's output depends on the rest of its batch. `Running` instead handles the layer
//! like batch normalisation: running estimates of `μ` and `Σ` (momentum 0.1, PyTorch's
//! convention) are updated in `Train` mode and used in `Eval` mode, which then maps each
//! image independently (the factor of the running covariance is cached between batches).
//! Nothing is updated in `Eval` or `BatchStatistics` mode, nor in any mode with `Batch`.
//!
//! **Batch size.** Batch statistics need `B ≥ 2` (an error otherwise). A batch with
//! `B ≤ N` has a covariance of rank at most `B − 1 < N`: the `εI` keeps the Cholesky
//! factorisation alive, but the output is then dominated by `ε` along the missing
//! directions and is meaningless as a whitening. Callers should validate `B ≥ N + 1` up
//! front ([`Whitening::min_batch`], [`Whitening::check_batch_size`]).
//!
//! With rows as samples the forward pass is `Y = X_c L⁻ᵀ`. Given `G = ∂ℓ/∂Y`, with
//! `Φ(A)` the lower triangle of `A` with its diagonal halved and `P = Φ(−Gᵀ Y)`, the
//! gradient with batch statistics is `∂ℓ/∂X_c = [G + Y (P + Pᵀ)/(B − 1)] L⁻¹`, centred
//! over the batch (the mean's share). The `P` term is the Cholesky adjoint
//! `Σ̄ = L⁻ᵀ P L⁻¹` (from `dL = L Φ(L⁻¹ dΣ L⁻ᵀ)`) pushed through `Σ = X_cᵀ X_c/(B − 1)`.
//! With running statistics the layer is affine and `∂ℓ/∂X = G L⁻¹`.

use ndarray::{Array1, Array2};
use specreg_nn::{Layer, Mode, NnError, Param};
use specreg_tensor::{BinaryOp, DType, Device, Error as TensorError, Side, Tensor, Triangle};

use crate::error::{RegularizerError, Result, invalid};

/// The layer passes' result type (the [`Layer`] trait's).
type LayerResult<T> = specreg_nn::Result<T>;

/// Which mean and covariance a [`Whitening`] layer uses outside training (see the module
/// table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WhiteningStatistics {
    /// The current batch's mean and covariance in every mode, gradients through them; no
    /// running estimates are updated (the public reference implementation).
    #[default]
    Batch,
    /// Running estimates, updated in `Train` mode and used in `Eval` mode (like
    /// batch normalisation).
    Running,
}

/// The whitening layer (eq. 10) for width-`N` representations `[B, N]`.
#[derive(Debug)]
pub struct Whitening {
    name: String,
    width: usize,
    eps: f64,
    momentum: f64,
    statistics: WhiteningStatistics,
    running_mean: Tensor,
    running_cov: Tensor,
    /// The Cholesky factor of `running_cov + εI`, computed on the first `Eval` batch with
    /// running statistics and dropped whenever `running_cov` changes.
    running_factor: Option<Tensor>,
    /// `εI` and the mask of `Φ`, built once per dtype and device.
    constants: Option<Constants>,
    cache: Option<Cache>,
}

/// The constant matrices of the forward and backward passes, for one dtype and device.
#[derive(Debug, Clone)]
struct Constants {
    dtype: DType,
    device: Device,
    /// `ε I`.
    eye_eps: Tensor,
    /// 1 below the diagonal, ½ on it, 0 above: `Φ(A) = A ⊙ mask`.
    phi: Tensor,
}

#[derive(Debug)]
struct Cache {
    /// Whether the forward pass used batch statistics (so the backward goes through them).
    batch: bool,
    l: Tensor,
    y: Tensor,
}

impl Whitening {
    /// A whitening layer for representation `name` of width `width`, regularised by
    /// `eps · I` (the paper: `1e-5`), with [`WhiteningStatistics::Batch`] (the reference;
    /// [`Whitening::with_statistics`] picks running statistics). Running statistics start
    /// at `μ = 0`, `Σ = I`, in `f32` on the CPU; [`Whitening::on`] picks another dtype or
    /// device.
    ///
    /// # Errors
    /// `width = 0` or `eps` not finite and positive.
    pub fn new(name: impl Into<String>, width: usize, eps: f64) -> Result<Self> {
        let name = name.into();
        if width == 0 || !(eps.is_finite() && eps > 0.0) {
            return Err(invalid(
                format!("whitening of {name}"),
                format!("width must be ≥ 1 and eps finite and > 0, got {width} and {eps}"),
            ));
        }
        let running_mean = Tensor::zeros(&[width], DType::F32, &Device::Cpu)?;
        let running_cov = Tensor::from_array(Array2::<f32>::eye(width));
        Ok(Self {
            name,
            width,
            eps,
            momentum: 0.1,
            statistics: WhiteningStatistics::default(),
            running_mean,
            running_cov,
            running_factor: None,
            constants: None,
            cache: None,
        })
    }

    /// The same layer with its running statistics in `dtype` on `device` (the network's).
    pub fn on(mut self, dtype: DType, device: &Device) -> Result<Self> {
        self.running_mean = self.running_mean.to_dtype(dtype)?.to_device(device)?;
        self.running_cov = self.running_cov.to_dtype(dtype)?.to_device(device)?;
        self.running_factor = None;
        Ok(self)
    }

    /// The same layer with `statistics` (default [`WhiteningStatistics::Batch`]).
    pub fn with_statistics(mut self, statistics: WhiteningStatistics) -> Self {
        self.statistics = statistics;
        self
    }

    /// Which statistics the layer uses in `Eval` mode (and whether `Train` updates the
    /// running estimates).
    pub fn statistics(&self) -> WhiteningStatistics {
        self.statistics
    }

    /// The width `N`.
    pub fn width(&self) -> usize {
        self.width
    }

    /// `N + 1`: the smallest batch whose covariance can have full rank `N`. Smaller batches
    /// (down to 2) are accepted with batch statistics, but whiten meaninglessly (see the
    /// module docs).
    pub fn min_batch(&self) -> usize {
        self.width + 1
    }

    /// Checks that a batch of `batch` samples can be whitened with its own statistics:
    /// `batch ≥ N + 1` ([`Whitening::min_batch`]). For callers to validate batch and chunk
    /// sizes before a run, since the forward pass itself only refuses `B < 2`.
    ///
    /// # Errors
    /// `batch ≤ N`, naming the layer.
    pub fn check_batch_size(&self, batch: usize) -> Result<()> {
        if batch < self.min_batch() {
            return Err(RegularizerError::TooFewSamples {
                what: format!(
                    "whitening of {} (a full-rank covariance of width {})",
                    self.name, self.width
                ),
                needed: self.min_batch(),
                got: batch,
            });
        }
        Ok(())
    }

    /// The running-average momentum (default 0.1), in `[0, 1]`.
    pub fn with_momentum(mut self, momentum: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&momentum) {
            return Err(invalid(
                format!("whitening of {}", self.name),
                format!("momentum must be in [0, 1], got {momentum}"),
            ));
        }
        self.momentum = momentum;
        Ok(self)
    }

    /// The `ε` added to the covariance's diagonal.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// `εI` and the `Φ` mask in `like`'s dtype and on its device, built on the first call
    /// and again only when the dtype or device changes.
    fn constants(&mut self, like: &Tensor) -> LayerResult<Constants> {
        let (dtype, device) = (like.dtype(), like.device());
        if let Some(c) = &self.constants
            && c.dtype == dtype
            && c.device == device
        {
            return Ok(c.clone());
        }
        let n = self.width;
        let c = Constants {
            dtype,
            device,
            eye_eps: Tensor::tril_mask(n, self.eps, 0.0, dtype, &device)?,
            phi: Tensor::tril_mask(n, 0.5, 1.0, dtype, &device)?,
        };
        self.constants = Some(c.clone());
        Ok(c)
    }

    fn cholesky(&mut self, sigma: &Tensor) -> LayerResult<Tensor> {
        let s = sigma.add(&self.constants(sigma)?.eye_eps)?;
        s.cholesky().map_err(|e| match e {
            TensorError::NotPositiveDefinite { pivot, .. } => NnError::NotPositiveDefinite {
                layer: format!("whitening of {}", self.name),
                pivot,
            },
            other => other.into(),
        })
    }

    /// The (cached) Cholesky factor of the running covariance plus `εI`.
    fn running_factor(&mut self) -> LayerResult<Tensor> {
        if let Some(l) = &self.running_factor {
            return Ok(l.clone());
        }
        let cov = self.running_cov.clone();
        let l = self.cholesky(&cov)?;
        self.running_factor = Some(l.clone());
        Ok(l)
    }

    fn check(&self, t: &Tensor, pass: &str) -> LayerResult<usize> {
        match *t.shape() {
            [b, n] if n == self.width => Ok(b),
            _ => Err(NnError::ShapeMismatch {
                layer: format!("whitening of {} ({pass})", self.name),
                expected: format!("[B, {}]", self.width),
                got: t.shape().to_vec(),
            }),
        }
    }
}

impl Layer for Whitening {
    fn forward(&mut self, x: &Tensor, mode: Mode) -> LayerResult<Tensor> {
        let b = self.check(x, "forward")?;
        let running = self.statistics == WhiteningStatistics::Running;
        let batch = mode.uses_batch_statistics() || !running;
        let (xc, l) = if batch {
            if b < 2 {
                return Err(NnError::InvalidArgument {
                    what: format!("whitening of {}", self.name),
                    reason: format!(
                        "batch statistics ({mode:?} mode) need a batch of at least 2 samples, \
                         got {b}"
                    ),
                });
            }
            let mu = x.col_means()?;
            let xc = x.broadcast_along(&mu, 1, BinaryOp::Sub)?;
            let sigma = xc.gram()?.scale(1.0 / (b as f64 - 1.0))?;
            let l = self.cholesky(&sigma)?;
            if running && mode == Mode::Train {
                let m = self.momentum;
                self.running_mean = self.running_mean.affine(1.0 - m, 0.0)?.add(&mu.scale(m)?)?;
                self.running_cov = self
                    .running_cov
                    .affine(1.0 - m, 0.0)?
                    .add(&sigma.scale(m)?)?;
                self.running_factor = None;
            }
            (xc, l)
        } else {
            let xc = x.broadcast_along(&self.running_mean, 1, BinaryOp::Sub)?;
            (xc, self.running_factor()?)
        };
        // Y = X_c L⁻ᵀ: the right-side solve Y Lᵀ = X_c.
        let y = l.solve_triangular(&xc, Side::Right, Triangle::Lower, true)?;
        self.cache = Some(Cache {
            batch,
            l,
            y: y.clone(),
        });
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> LayerResult<Tensor> {
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
        // Z L⁻¹: the right-side solve X L = Z.
        let right_solve = |z: &Tensor| -> LayerResult<Tensor> {
            Ok(cache
                .l
                .solve_triangular(z, Side::Right, Triangle::Lower, false)?)
        };
        if !cache.batch {
            return right_solve(grad_out);
        }
        let phi = &self
            .constants
            .as_ref()
            .ok_or_else(|| NnError::BackwardBeforeForward {
                layer: format!("whitening of {}", self.name),
            })?
            .phi;
        let p = grad_out.matmul_tn(&cache.y)?.scale(-1.0)?.mul(phi)?;
        let sym = p.add(&p.t()?)?;
        let z = grad_out.add(&cache.y.matmul(&sym)?.scale(1.0 / (b as f64 - 1.0))?)?;
        let gxc = right_solve(&z)?;
        Ok(gxc.broadcast_along(&gxc.col_means()?, 1, BinaryOp::Sub)?)
    }

    fn forward_tangent(&mut self, _dx: &Tensor) -> LayerResult<Tensor> {
        Err(NnError::Unsupported {
            layer: format!("whitening of {}", self.name),
            pass: "forward_tangent (the Jacobian regulariser through a whitened layer)",
        })
    }

    fn backward_tangent(&mut self, _dgrad_out: &Tensor) -> LayerResult<Tensor> {
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

    /// With [`WhiteningStatistics::Batch`] in every mode (evaluation included), with
    /// running statistics only where `mode` uses batch statistics.
    fn mixes_samples(&self, mode: Mode) -> bool {
        match self.statistics {
            WhiteningStatistics::Batch => true,
            WhiteningStatistics::Running => mode.uses_batch_statistics(),
        }
    }

    /// `running_mean` (`[N]`) and `running_cov` (`[N, N]`), kept (and saved in
    /// checkpoints) whatever the [`WhiteningStatistics`], so that checkpoints round-trip
    /// and load into either setting; with `Batch` they keep their initial or loaded values.
    fn buffers(&self) -> Vec<(String, Tensor)> {
        vec![
            ("running_mean".into(), self.running_mean.clone()),
            ("running_cov".into(), self.running_cov.clone()),
        ]
    }

    fn set_buffer(&mut self, name: &str, value: Tensor) -> LayerResult<()> {
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
        self.running_factor = None;
        Ok(())
    }
}

/// The running statistics as `f64` arrays (for reports and tests).
impl Whitening {
    /// The running mean, as `f64`.
    pub fn running_mean(&self) -> Result<Array1<f64>> {
        Ok(Array1::from(
            self.running_mean.to_dtype(DType::F64)?.to_vec::<f64>()?,
        ))
    }

    /// The running covariance, as `f64`.
    pub fn running_cov(&self) -> Result<Array2<f64>> {
        let v = self.running_cov.to_dtype(DType::F64)?.to_vec::<f64>()?;
        Array2::from_shape_vec((self.width, self.width), v)
            .map_err(|e| invalid(format!("whitening of {}", self.name), e.to_string()))
    }
}
