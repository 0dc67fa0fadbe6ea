//! Covariance of a representation over a whole data set, streamed in chunks.
//!
//! The projected spectral regulariser needs, once per epoch, the eigenvectors of each
//! regularised layer's covariance over all 60 000 training images; the spectrum metrics and
//! the sensitivity maps need the same matrix. [`CovarianceAccumulator`] builds it from
//! `[b, N]` chunks with memory `O(N²)`: each chunk is shifted by a fixed reference mean (the
//! first chunk's) before its Gram matrix is formed, so the products stay well conditioned
//! even when the activations have a large mean, and the sums are accumulated in `f64`.
//! Everything stays on the representation's device; [`CovarianceAccumulator::finish`]
//! reads one number back (to check that the covariance is finite).
//!
//! With `M` rows `h_i`, shift `s`, Gram sum `G = Σ_i (h_i − s)(h_i − s)ᵀ` and column sum
//! `c = Σ_i (h_i − s)`: `μ = s + c/M` and `Σ = (G − M (c/M)(c/M)ᵀ)/(M − 1)`.
//! [`representation_statistics`] makes one `Eval`-mode pass over a data set for every
//! representation asked for.

use ndarray::{ArrayView2, s};
use specreg_nn::{Mode, Network, to_input};
use specreg_tensor::{BinaryOp, DType, Tensor};

use crate::error::{RegularizerError, Result, invalid};

/// Streams `[b, N]` chunks into an `f64` covariance `Σ = Σ_i (h_i − μ)(h_i − μ)ᵀ / (M − 1)`.
#[derive(Debug, Clone)]
pub struct CovarianceAccumulator {
    what: String,
    width: usize,
    sums: Option<Sums>,
    count: usize,
}

/// The running sums, on the first chunk's device.
#[derive(Debug, Clone)]
struct Sums {
    /// The first chunk's column means, in the representation's dtype.
    shift: Tensor,
    /// `shift` in `f64`.
    shift_f64: Tensor,
    /// `Σ_i (h_i − shift)`, `[N]` in `f64`.
    sum: Tensor,
    /// `Σ_i (h_i − shift)(h_i − shift)ᵀ`, `[N, N]` in `f64`.
    gram: Tensor,
}

impl CovarianceAccumulator {
    /// An empty accumulator for width-`width` rows; `what` names the representation in
    /// errors.
    pub fn new(what: impl Into<String>, width: usize) -> Self {
        Self {
            what: what.into(),
            width,
            sums: None,
            count: 0,
        }
    }

    /// Rows pushed so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The width `N`.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Adds the rows of `h: [b, N]`. The chunk's Gram matrix is formed in `h`'s dtype (one
    /// GEMM) after the shift, then added in `f64`, on `h`'s device.
    ///
    /// # Errors
    /// A shape other than `[b, N]`, or a chunk on another device or dtype than the first.
    pub fn push(&mut self, h: &Tensor) -> Result<()> {
        let (b, n) = h.dims2()?;
        if n != self.width {
            return Err(RegularizerError::ShapeMismatch {
                what: format!("covariance of {}", self.what),
                expected: format!("[b, {}]", self.width),
                got: h.shape().to_vec(),
            });
        }
        if b == 0 {
            return Ok(());
        }
        let sums = match self.sums.take() {
            Some(s) => s,
            None => {
                let shift = h.col_means()?;
                let shift_f64 = shift.to_dtype(DType::F64)?;
                let device = h.device();
                Sums {
                    sum: Tensor::zeros(&[n], DType::F64, &device)?,
                    gram: Tensor::zeros(&[n, n], DType::F64, &device)?,
                    shift,
                    shift_f64,
                }
            }
        };
        let hs = h.broadcast_along(&sums.shift, 1, BinaryOp::Sub)?;
        let gram = sums.gram.add(&hs.gram()?.to_dtype(DType::F64)?)?;
        let sum = sums.sum.add(&hs.col_sums()?.to_dtype(DType::F64)?)?;
        self.sums = Some(Sums { gram, sum, ..sums });
        self.count += b;
        Ok(())
    }

    /// The unbiased covariance of every row pushed, `[N, N]` in `f64` on the rows' device.
    /// Reads one number back to the host (to check that every entry is finite).
    ///
    /// # Errors
    /// Fewer than two rows, or a non-finite entry (the representation held NaN or ∞).
    pub fn finish(&self) -> Result<Tensor> {
        let cov = self.covariance()?;
        if !finiteness_probe(&cov)?.to_scalar()?.is_finite() {
            return Err(RegularizerError::NonFiniteCovariance {
                representation: self.what.clone(),
            });
        }
        Ok(cov)
    }

    /// [`CovarianceAccumulator::finish`] without the finiteness check (no host read).
    fn covariance(&self) -> Result<Tensor> {
        let sums = match &self.sums {
            Some(s) if self.count >= 2 => s,
            _ => {
                return Err(RegularizerError::TooFewSamples {
                    what: format!("covariance of {}", self.what),
                    needed: 2,
                    got: self.count,
                });
            }
        };
        let n = self.width;
        let m = self.count as f64;
        let mean = sums.sum.div(&sums.sum.full_like(m, &[n])?)?;
        // (μ μᵀ)[i, j] = μ_i μ_j, each a single rounded product.
        let outer = sums
            .gram
            .full_like(1.0, &[n, n])?
            .broadcast_along(&mean, 0, BinaryOp::Mul)?
            .broadcast_along(&mean, 1, BinaryOp::Mul)?;
        let cov = sums
            .gram
            .sub(&outer.scale(m)?)?
            .div(&sums.gram.full_like(m - 1.0, &[n, n])?)?;
        Ok(cov)
    }

    /// The mean of every row pushed, `[N]` in `f64` on the rows' device (zeros on the CPU
    /// before the first row).
    pub fn mean(&self) -> Result<Tensor> {
        match &self.sums {
            Some(s) if self.count > 0 => {
                let per = s
                    .sum
                    .div(&s.sum.full_like(self.count as f64, &[self.width])?)?;
                Ok(s.shift_f64.add(&per)?)
            }
            _ => Ok(Tensor::zeros(
                &[self.width],
                DType::F64,
                &specreg_tensor::Device::Cpu,
            )?),
        }
    }
}

/// A 0-D `f64` tensor that is 0 when every entry of `t` is finite and NaN otherwise
/// (`Σ 0·t_ij`: `0·∞` and `0·NaN` are NaN), computed on the device.
fn finiteness_probe(t: &Tensor) -> Result<Tensor> {
    Ok(t.scale(0.0)?.sum_all_f64()?)
}

/// The row ranges of the chunks of [`representation_statistics`]: consecutive blocks of
/// `batch_size` rows in order, the last one also taking the `rows mod batch_size` left over
/// (so every chunk has between `batch_size` and `2·batch_size − 1` rows), or one chunk of
/// every row when `rows < batch_size`. Deterministic, and never a short final chunk.
///
/// # Errors
/// `batch_size = 0`.
pub fn chunk_ranges(rows: usize, batch_size: usize) -> Result<Vec<std::ops::Range<usize>>> {
    if batch_size == 0 {
        return Err(invalid("chunk_ranges", "batch size must be positive"));
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

/// The statistics of one representation over a data set, from
/// [`representation_statistics`].
#[derive(Debug, Clone)]
pub struct RepresentationStatistics {
    /// The representation's name.
    pub name: String,
    /// `M`, the number of rows (images).
    pub count: usize,
    /// The mean `μ`, `[N]` in `f64`, on the network's device.
    pub mean: Tensor,
    /// The unbiased covariance `Σ`, `[N, N]` in `f64`, on the network's device.
    pub covariance: Tensor,
}

/// The mean and covariance (`f64`, unbiased) of each named representation of `net` over
/// `images: [M, D]`, from one `Eval`-mode pass in the chunks of
/// [`chunk_ranges`]`(M, batch_size)`, in the order of `names`.
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
/// Host reads: one (the finiteness check of every covariance at once).
///
/// [`Whitening`]: crate::Whitening
/// [`WhiteningStatistics::Batch`]: crate::WhiteningStatistics::Batch
/// [`Whitening::check_batch_size`]: crate::Whitening::check_batch_size
///
/// # Errors
/// Unknown names (listing the valid ones), a zero batch size, fewer than two images, or
/// non-finite activations.
pub fn representation_statistics(
    net: &mut Network,
    names: &[&str],
    images: ArrayView2<'_, f32>,
    batch_size: usize,
) -> Result<Vec<RepresentationStatistics>> {
    let chunks = chunk_ranges(images.nrows(), batch_size)?;
    for name in names {
        net.hidden_layer_index(name)?;
    }
    let (dtype, device) = net.dtype_device();
    let mut accs: Vec<Option<CovarianceAccumulator>> = vec![None; names.len()];
    for range in chunks {
        let x = to_input(images.slice(s![range, ..]).to_owned(), dtype, &device)?;
        let pass = net.forward(&x, Mode::Eval)?;
        for (acc, name) in accs.iter_mut().zip(names) {
            let h = pass.get(name).ok_or_else(|| {
                invalid(
                    "representation_statistics",
                    format!("the forward pass has no representation {name:?}"),
                )
            })?;
            let acc = acc.get_or_insert_with(|| CovarianceAccumulator::new(*name, h.shape()[1]));
            acc.push(h)?;
        }
    }
    let mut stats = Vec::with_capacity(names.len());
    let mut probes = Vec::with_capacity(names.len());
    for (acc, name) in accs.into_iter().zip(names) {
        let acc = acc.ok_or_else(|| RegularizerError::TooFewSamples {
            what: format!("covariance of {name}"),
            needed: 2,
            got: 0,
        })?;
        let covariance = acc.covariance()?;
        probes.push(finiteness_probe(&covariance)?);
        stats.push(RepresentationStatistics {
            name: (*name).to_string(),
            count: acc.count(),
            covariance,
            mean: acc.mean()?,
        });
    }
    if probes.is_empty() {
        return Ok(stats);
    }
    // The pass's one host read: every covariance's finiteness at once.
    let refs: Vec<&Tensor> = probes.iter().collect();
    let finite = Tensor::concat(&refs)?.to_vec::<f64>()?;
    if let Some((st, _)) = stats.iter().zip(&finite).find(|(_, p)| !p.is_finite()) {
        return Err(RegularizerError::NonFiniteCovariance {
            representation: st.name.clone(),
        });
    }
    Ok(stats)
}
