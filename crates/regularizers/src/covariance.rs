//! Covariance of a representation over a whole data set, streamed in chunks.
//!
//! The projected spectral regulariser needs, once per epoch, the eigenvectors of each
//! regularised layer's covariance over all 60 000 training images; the spectrum metrics need
//! the same matrix. [`CovarianceAccumulator`] builds it from `[b, N]` chunks with memory
//! `O(N²)`: each chunk is shifted by a fixed reference mean (the first chunk's) before its
//! Gram matrix is formed, so the products stay well conditioned even when the activations
//! have a large mean, and the sums are accumulated in `f64`.

use ndarray::{Array1, Array2, ArrayView2, Axis, s};
use specreg_nn::{Mode, Network, NnError, Result};
use specreg_tensor::{BinaryOp, DType, Device, Tensor};

/// Streams `[b, N]` chunks into an `f64` covariance `Σ = Σ_i (h_i − μ)(h_i − μ)ᵀ / (M − 1)`.
#[derive(Debug, Clone)]
pub struct CovarianceAccumulator {
    what: String,
    width: usize,
    shift: Option<Tensor>,
    shift_f64: Array1<f64>,
    sum: Array1<f64>,
    gram: Array2<f64>,
    count: usize,
}

impl CovarianceAccumulator {
    /// An empty accumulator for width-`width` rows; `what` names the representation in
    /// errors.
    pub fn new(what: impl Into<String>, width: usize) -> Self {
        Self {
            what: what.into(),
            width,
            shift: None,
            shift_f64: Array1::zeros(width),
            sum: Array1::zeros(width),
            gram: Array2::zeros((width, width)),
            count: 0,
        }
    }

    /// Rows pushed so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Adds the rows of `h: [b, N]`. The chunk's Gram matrix is formed in `h`'s dtype (one
    /// GEMM) after the shift, then added in `f64`.
    pub fn push(&mut self, h: &Tensor) -> Result<()> {
        let (b, n) = h.dims2()?;
        if n != self.width {
            return Err(NnError::ShapeMismatch {
                layer: format!("covariance of {}", self.what),
                expected: format!("[b, {}]", self.width),
                got: h.shape().to_vec(),
            });
        }
        if b == 0 {
            return Ok(());
        }
        let shift = match &self.shift {
            Some(s) => s.clone(),
            None => {
                let m = h.col_means()?;
                self.shift_f64 = Array1::from(m.to_dtype(DType::F64)?.to_vec::<f64>()?);
                self.shift = Some(m.clone());
                m
            }
        };
        let hs = h.broadcast_along(&shift, 1, BinaryOp::Sub)?;
        let gram = hs.gram()?.to_dtype(DType::F64)?;
        let gram = gram
            .as_array_view::<f64>()?
            .into_dimensionality::<ndarray::Ix2>()
            .map_err(|e| NnError::InvalidArgument {
                what: format!("covariance of {}", self.what),
                reason: e.to_string(),
            })?;
        self.gram += &gram;
        let sums = hs.col_sums()?.to_dtype(DType::F64)?.to_vec::<f64>()?;
        self.sum += &Array1::from(sums);
        self.count += b;
        Ok(())
    }

    /// The unbiased covariance of every row pushed, `[N, N]` in `f64`.
    ///
    /// # Errors
    /// Fewer than two rows, or a non-finite entry (the representation held NaN or ∞).
    pub fn finish(&self) -> Result<Array2<f64>> {
        if self.count < 2 {
            return Err(NnError::InvalidArgument {
                what: format!("covariance of {}", self.what),
                reason: format!("needs at least 2 samples, got {}", self.count),
            });
        }
        let m = self.count as f64;
        let mean = &self.sum / m;
        let outer = mean
            .view()
            .insert_axis(Axis(1))
            .dot(&mean.view().insert_axis(Axis(0)));
        let cov = (&self.gram - &(outer * m)) / (m - 1.0);
        if cov.iter().any(|v| !v.is_finite()) {
            return Err(NnError::InvalidArgument {
                what: format!("covariance of {}", self.what),
                reason: "the representation holds NaN or infinite values".into(),
            });
        }
        Ok(cov)
    }

    /// The mean of every row pushed, in `f64`.
    pub fn mean(&self) -> Array1<f64> {
        if self.count == 0 {
            return Array1::zeros(self.width);
        }
        &self.shift_f64 + &(&self.sum / self.count as f64)
    }
}

/// `rows` (pixels) as a tensor in the network's dtype, on its device.
pub(crate) fn input_tensor(
    rows: ArrayView2<'_, f32>,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let mut x = Tensor::from_array(rows.to_owned());
    if dtype != DType::F32 {
        x = x.to_dtype(dtype)?;
    }
    if !device.is_cpu() {
        x = x.to_device(device)?;
    }
    Ok(x)
}

/// The row ranges of the chunks of [`representation_covariances`]: consecutive blocks of
/// `batch_size` rows in order, the last one also taking the `rows mod batch_size` left over
/// (so every chunk has between `batch_size` and `2·batch_size − 1` rows), or one chunk of
/// every row when `rows < batch_size`. Deterministic, and never a short final chunk.
///
/// # Errors
/// `batch_size = 0`.
pub fn chunk_ranges(rows: usize, batch_size: usize) -> Result<Vec<std::ops::Range<usize>>> {
    if batch_size == 0 {
        return Err(NnError::InvalidArgument {
            what: "chunk_ranges".into(),
            reason: "batch size must be positive".into(),
        });
    }
    let full = (rows / batch_size).max(1);
    Ok((0..full)
        .map(|k| {
            let end = if k + 1 == full {
                rows
            } else {
                (k + 1) * batch_size
            };
            k * batch_size..end
        })
        .filter(|r| !r.is_empty())
        .collect())
}

/// The covariance (`f64`, unbiased) of each named representation of `net` over `images:
/// [M, 784]`, from one `Eval`-mode pass in the chunks of [`chunk_ranges`]`(M, batch_size)`.
///
/// The chunking only matters for layers whose `Eval` output depends on the batch: a
/// [`Whitening`] layer with [`WhiteningStatistics::Batch`] whitens each chunk with that
/// chunk's own mean and covariance, exactly as a training batch of that size is whitened,
/// so the result is the covariance of the batch-whitened representations pooled over the
/// chunks. Such a layer of width `N` needs `batch_size ≥ N + 1`
/// ([`Whitening::check_batch_size`]); with `M ≥ batch_size` every chunk then has at least
/// that many rows. For every other layer (BatchNorm and running-statistics whitening use
/// their running statistics in `Eval` mode) the chunks change only rounding.
///
/// [`Whitening`]: crate::Whitening
/// [`WhiteningStatistics::Batch`]: crate::WhiteningStatistics::Batch
/// [`Whitening::check_batch_size`]: crate::Whitening::check_batch_size
///
/// # Errors
/// Unknown names (listing the valid ones), a zero batch size, fewer than two images, or
/// non-finite activations.
pub fn representation_covariances(
    net: &mut Network,
    names: &[&str],
    images: ArrayView2<'_, f32>,
    batch_size: usize,
) -> Result<Vec<Array2<f64>>> {
    let chunks =
        chunk_ranges(images.nrows(), batch_size).map_err(|_| NnError::InvalidArgument {
            what: "representation_covariances".into(),
            reason: "batch size must be positive".into(),
        })?;
    for name in names {
        net.hidden_layer_index(name)?;
    }
    let (dtype, device) = net.dtype_device();
    let mut accs: Vec<Option<CovarianceAccumulator>> = vec![None; names.len()];
    for range in chunks {
        let x = input_tensor(images.slice(s![range, ..]), dtype, &device)?;
        let pass = net.forward(&x, Mode::Eval)?;
        for (acc, name) in accs.iter_mut().zip(names) {
            let h = pass.get(name).ok_or_else(|| NnError::InvalidArgument {
                what: "representation_covariances".into(),
                reason: format!("the forward pass has no representation {name:?}"),
            })?;
            let acc = acc.get_or_insert_with(|| CovarianceAccumulator::new(*name, h.shape()[1]));
            acc.push(h)?;
        }
    }
    accs.into_iter()
        .zip(names)
        .map(|(acc, name)| match acc {
            Some(acc) => acc.finish(),
            None => Err(NnError::InvalidArgument {
                what: format!("covariance of {name}"),
                reason: "no images given".into(),
            }),
        })
        .collect()
}
