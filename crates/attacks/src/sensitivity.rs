//! Eigenvalue sensitivity maps (eq. 9 of Nassar et al.): `J_n = ∂λ_n/∂x`.
//!
//! For a hidden representation `H` of a [`Network`] (evaluated in [`Mode::Eval`]) over a
//! data set of `M` images, `Σ = 1/(M−1) Σ_i (h_i − μ)(h_i − μ)ᵀ` with eigenvalues
//! `λ_1 ≥ λ_2 ≥ …` (ranks are 1-based, as in the paper) and unit eigenvectors `v_n`.
//! For a simple eigenvalue `dλ_n = v_nᵀ dΣ v_n`, and since `Σ_i (h_i − μ) = 0` the mean's
//! own variation drops out, so
//!
//! `∂λ_n/∂h_i = 2/(M−1) · ((h_i − μ)ᵀ v_n) · v_n`,
//!
//! which is injected at the representation and back-propagated to the input image `x_i`
//! with [`Network::backward_input`] (no parameter gradient is touched). This gives one
//! `D`-pixel map per image; [`RepresentationSpectrum::eigenvalue_input_gradients`] returns
//! them for a batch.
//!
//! # Which map is plotted
//!
//! Eq. 9 writes `∂λ_n/∂x_j` for input pixel `j`: one map per eigenvalue, although `λ_n`
//! depends on every image. The derivative of `λ_n` with respect to pixel `j` moved by the
//! same amount in every image is the sum of the per-image maps, and that is the default
//! ([`SensitivityReduction::SharedPerturbation`]). Its alternative,
//! [`SensitivityReduction::MeanAbsolute`], averages the per-image magnitudes: it does not
//! let positive and negative contributions of different images cancel (for a linear network
//! the shared-perturbation map is exactly zero, because `λ_n` does not move when every image
//! shifts by the same vector).
//!
//! # One covariance, one eigendecomposition
//!
//! The covariance comes from the regularizers crate's shared accumulator
//! ([`specreg_regularizers::representation_statistics`]: shifted Gram sums in `f64`, over
//! the chunks of [`specreg_regularizers::chunk_ranges`]) and its eigenvectors from
//! [`specreg_regularizers::eigen_descending`], the path the spectral regulariser and the
//! spectra use. [`RepresentationSpectrum::from_statistics`] builds a spectrum from
//! statistics computed once for every layer; [`RepresentationSpectrum::compute`] makes the
//! pass itself. The mean and the eigenvectors stay on the network's device; per batch, the
//! maps are summed there, and the maps are read once at the end.

use ndarray::{Array2, ArrayView2};
use specreg_nn::{Mode, Network};
use specreg_regularizers::{
    RepresentationStatistics, chunk_ranges, eigen_descending, representation_statistics,
};
use specreg_tensor::{BinaryOp, DType, Tensor};

use crate::Result;
use crate::error::{AttackError, invalid, invalid_data};
use crate::perturb::batch_tensor;

/// The covariance spectrum of a hidden representation over a data set (accumulated in
/// `f64`).
#[derive(Debug, Clone)]
pub struct RepresentationSpectrum {
    /// The representation's name (e.g. `fc3`).
    pub representation: String,
    /// `M`, the number of images.
    pub num_samples: usize,
    /// `μ`, the mean representation `[N]` in `f64`, on the network's device.
    pub mean: Tensor,
    /// Eigenvalues of the unbiased covariance, descending (read to the host once, when
    /// the spectrum is built).
    pub eigenvalues: Vec<f64>,
    /// Unit eigenvectors as columns `[N, N]` in `f64` on the network's device (column
    /// `n − 1` belongs to rank `n`; the sign of each is immaterial to the maps).
    pub eigenvectors: Tensor,
}

impl RepresentationSpectrum {
    /// The spectrum of the covariance in `statistics` (one eigendecomposition through
    /// [`eigen_descending`], one host read of the eigenvalues).
    ///
    /// # Errors
    /// Fewer than two samples, a failed eigendecomposition or a non-finite eigenvalue.
    pub fn from_statistics(statistics: &RepresentationStatistics) -> Result<Self> {
        let name = &statistics.name;
        if statistics.count < 2 {
            return Err(invalid_data(
                "RepresentationSpectrum::from_statistics",
                format!(
                    "{} samples of {name}; a covariance needs at least 2",
                    statistics.count
                ),
            ));
        }
        let (values, vectors) = eigen_descending(&statistics.covariance)?;
        let eigenvalues = values.to_dtype(DType::F64)?.to_vec::<f64>()?;
        if let Some(&v) = eigenvalues.iter().find(|v| !v.is_finite()) {
            return Err(AttackError::NonFinite {
                what: format!("eigenvalue of the {name} covariance"),
                value: v,
                sample: None,
            });
        }
        Ok(Self {
            representation: name.clone(),
            num_samples: statistics.count,
            mean: statistics.mean.to_dtype(DType::F64)?,
            eigenvalues,
            eigenvectors: vectors.to_dtype(DType::F64)?,
        })
    }

    /// The spectrum of `representation` over `images: [M, D]` (`M ≥ 2`), from one pass
    /// in [`Mode::Eval`] over the chunks of [`chunk_ranges`]`(M, batch_size)`
    /// ([`representation_statistics`]), then [`RepresentationSpectrum::from_statistics`].
    ///
    /// # Errors
    /// Fewer than two images, a zero batch size, a width that does not fit the network, an
    /// unknown representation (listing the valid names), or a failed eigendecomposition.
    pub fn compute(
        net: &mut Network,
        images: ArrayView2<'_, f32>,
        representation: &str,
        batch_size: usize,
    ) -> Result<Self> {
        let what = "RepresentationSpectrum::compute";
        let m = images.nrows();
        if m < 2 {
            return Err(invalid_data(
                what,
                format!("{m} images; a covariance needs at least 2"),
            ));
        }
        if batch_size == 0 {
            return Err(invalid(what, "batch size must be at least 1"));
        }
        net.hidden_layer_index(representation)?;
        let stats = representation_statistics(net, &[representation], images, batch_size)?;
        let stats = stats
            .first()
            .ok_or_else(|| invalid(what, "no statistics were computed"))?;
        Self::from_statistics(stats)
    }

    /// `λ_n` for 1-based rank `n`.
    pub fn eigenvalue(&self, rank: usize) -> Result<f64> {
        self.check_rank(rank)?;
        Ok(self.eigenvalues[rank - 1])
    }

    fn check_rank(&self, rank: usize) -> Result<()> {
        let n = self.eigenvalues.len();
        if rank == 0 || rank > n {
            return Err(invalid(
                "sensitivity rank",
                format!("rank {rank} is outside 1..={n} (ranks are 1-based)"),
            ));
        }
        Ok(())
    }

    /// Per-image input gradients `∂λ_n/∂x_i` for the images `x: [b, D]` (which must be
    /// among those the spectrum was computed on, for the formula to be the derivative of
    /// this `λ_n`), one `[b, D]` tensor per rank in `ranks`, in the network's dtype. No host
    /// read.
    ///
    /// # Errors
    /// A rank outside `1..=N`, an input that does not fit the network, or a representation
    /// of another width than the spectrum's.
    pub fn eigenvalue_input_gradients(
        &self,
        net: &mut Network,
        x: &Tensor,
        ranks: &[usize],
    ) -> Result<Vec<Tensor>> {
        for &r in ranks {
            self.check_rank(r)?;
        }
        let (dtype, device) = net.dtype_device();
        let pass = net.forward(x, Mode::Eval)?;
        let h = pass.get(&self.representation).cloned().ok_or_else(|| {
            invalid(
                "eigenvalue_input_gradients",
                format!("no representation {}", self.representation),
            )
        })?;
        let (b, n) = h.dims2()?;
        if n != self.eigenvalues.len() {
            return Err(invalid_data(
                "eigenvalue_input_gradients",
                format!(
                    "representation {} has width {n}, the spectrum {}",
                    self.representation,
                    self.eigenvalues.len()
                ),
            ));
        }
        let mu = self.mean.to_dtype(dtype)?.to_device(&device)?;
        let hc = h.broadcast_along(&mu, 1, BinaryOp::Sub)?;
        let zero_logits = Tensor::zeros(pass.logits.shape(), dtype, &device)?;
        let scale = 2.0 / (self.num_samples as f64 - 1.0);
        // Row n − 1 of Vᵀ is the eigenvector of rank n.
        let rows = self.eigenvectors.t()?.to_dtype(dtype)?.to_device(&device)?;
        let mut out = Vec::with_capacity(ranks.len());
        for &r in ranks {
            let v_row = rows.index_select_rows(&[r - 1])?;
            let v_col = v_row.reshape(&[n, 1])?;
            // p_i = (h_i − μ)ᵀ v_n, then ∂λ_n/∂h_i = scale · p_i · v_nᵀ.
            let p = hc.matmul(&v_col)?;
            let inj = p.matmul(&v_row)?.scale(scale)?;
            debug_assert_eq!(inj.shape(), &[b, n]);
            let g = net.backward_input(&zero_logits, &[(self.representation.clone(), inj)])?;
            out.push(g);
        }
        Ok(out)
    }
}

/// How per-image maps are combined into one map per eigenvalue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SensitivityReduction {
    /// `Σ_i ∂λ_n/∂x_i`: the derivative of `λ_n` when each pixel moves by the same amount
    /// in every image (the reading of eq. 9 used by default).
    #[default]
    SharedPerturbation,
    /// `1/M Σ_i |∂λ_n/∂x_i|`: the mean magnitude of the per-image maps.
    MeanAbsolute,
}

/// How sensitivity maps are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SensitivityOptions {
    /// Images per batch (default 1000).
    pub batch_size: usize,
    /// How per-image maps are combined (default [`SensitivityReduction::SharedPerturbation`]).
    pub reduction: SensitivityReduction,
    /// `(height, width)` of a map; `height · width` must be the input size (default
    /// `(28, 28)`).
    pub image_shape: (usize, usize),
}

impl Default for SensitivityOptions {
    fn default() -> Self {
        Self {
            batch_size: 1000,
            reduction: SensitivityReduction::SharedPerturbation,
            image_shape: (28, 28),
        }
    }
}

/// One sensitivity map per requested eigenvalue.
#[derive(Debug, Clone, PartialEq)]
pub struct SensitivityMaps {
    /// The representation's name.
    pub representation: String,
    /// The 1-based ranks `n`, as requested.
    pub ranks: Vec<usize>,
    /// `λ_n` for each rank.
    pub eigenvalues: Vec<f64>,
    /// One `(height, width)` map per rank.
    pub maps: Vec<Array2<f64>>,
    /// How per-image maps were combined.
    pub reduction: SensitivityReduction,
    /// Images the covariance and the maps were computed over.
    pub num_images: usize,
}

/// Sensitivity maps `∂λ_n/∂x` of the eigenvalues `ranks` (1-based) of `representation`'s
/// covariance over all of `images: [M, D]`, in two passes over the chunks of
/// [`chunk_ranges`]`(M, options.batch_size)`: the spectrum
/// ([`RepresentationSpectrum::compute`]), then the per-image gradients
/// ([`sensitivity_maps_from`]).
///
/// # Errors
/// As [`RepresentationSpectrum::compute`] and
/// [`RepresentationSpectrum::eigenvalue_input_gradients`]; no ranks, or an image shape that
/// does not match the input size.
pub fn sensitivity_maps(
    net: &mut Network,
    images: ArrayView2<'_, f32>,
    representation: &str,
    ranks: &[usize],
    options: &SensitivityOptions,
) -> Result<SensitivityMaps> {
    check_request(images, ranks, options)?;
    let spectrum =
        RepresentationSpectrum::compute(net, images, representation, options.batch_size)?;
    sensitivity_maps_from(net, images, &spectrum, ranks, options)
}

/// Sensitivity maps of the eigenvalues `ranks` (1-based) of `spectrum`, which must have
/// been computed over exactly `images: [M, D]` (e.g. from statistics shared with other
/// layers, [`RepresentationSpectrum::from_statistics`]): one pass over the chunks of
/// [`chunk_ranges`]`(M, options.batch_size)` — the chunks of the statistics, so that a
/// layer normalising with its chunk's statistics is differentiated as it was measured —
/// summing the per-image gradients (or their magnitudes) on the device, and one host read
/// of the maps at the end.
///
/// # Errors
/// As [`RepresentationSpectrum::eigenvalue_input_gradients`]; no ranks, an image shape that
/// does not match the input size, or a spectrum over another number of images.
pub fn sensitivity_maps_from(
    net: &mut Network,
    images: ArrayView2<'_, f32>,
    spectrum: &RepresentationSpectrum,
    ranks: &[usize],
    options: &SensitivityOptions,
) -> Result<SensitivityMaps> {
    check_request(images, ranks, options)?;
    let (hgt, wid) = options.image_shape;
    let m = images.nrows();
    if spectrum.num_samples != m {
        return Err(invalid_data(
            "sensitivity_maps_from",
            format!(
                "the spectrum of {} is over {} images, the maps over {m}",
                spectrum.representation, spectrum.num_samples
            ),
        ));
    }
    let eigenvalues = ranks
        .iter()
        .map(|&r| spectrum.eigenvalue(r))
        .collect::<Result<Vec<_>>>()?;
    let (dtype, device) = net.dtype_device();
    let mut sums: Vec<Option<Tensor>> = vec![None; ranks.len()];
    for range in chunk_ranges(m, options.batch_size)? {
        let x = batch_tensor(images, range.start, range.end, dtype, &device)?;
        let grads = spectrum.eigenvalue_input_gradients(net, &x, ranks)?;
        for (acc, g) in sums.iter_mut().zip(&grads) {
            let g = g.to_dtype(DType::F64)?;
            let g = match options.reduction {
                SensitivityReduction::SharedPerturbation => g,
                SensitivityReduction::MeanAbsolute => g.abs()?,
            };
            let col = g.col_sums()?;
            *acc = Some(match acc.take() {
                None => col.full_like(0.0, col.shape())?.add(&col)?,
                Some(a) => a.add(&col)?,
            });
        }
    }
    let sums: Vec<Tensor> = sums
        .into_iter()
        .map(|s| s.ok_or_else(|| invalid_data("sensitivity_maps", "no images")))
        .collect::<Result<_>>()?;
    let parts: Vec<&Tensor> = sums.iter().collect();
    let values = Tensor::concat(&parts)?.to_vec::<f64>()?;
    let norm = match options.reduction {
        SensitivityReduction::SharedPerturbation => 1.0,
        SensitivityReduction::MeanAbsolute => 1.0 / m as f64,
    };
    let d = images.ncols();
    let maps = values
        .chunks(d)
        .map(|s| {
            Array2::from_shape_vec((hgt, wid), s.iter().map(|v| v * norm).collect())
                .map_err(|e| invalid("sensitivity_maps", e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SensitivityMaps {
        representation: spectrum.representation.clone(),
        ranks: ranks.to_vec(),
        eigenvalues,
        maps,
        reduction: options.reduction,
        num_images: m,
    })
}

/// Errors for no ranks, or an image shape that does not hold an image's values.
fn check_request(
    images: ArrayView2<'_, f32>,
    ranks: &[usize],
    options: &SensitivityOptions,
) -> Result<()> {
    let what = "sensitivity_maps";
    if ranks.is_empty() {
        return Err(invalid(what, "no eigenvalue ranks given"));
    }
    let (hgt, wid) = options.image_shape;
    if hgt * wid != images.ncols() {
        return Err(invalid(
            what,
            format!(
                "image shape {hgt}×{wid} does not hold the {} values of an image",
                images.ncols()
            ),
        ));
    }
    Ok(())
}
