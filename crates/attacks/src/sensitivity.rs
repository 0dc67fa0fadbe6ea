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

use ndarray::{Array1, Array2, ArrayView2, Ix2};
use specreg_nn::{Mode, Network};
use specreg_tensor::{DType, Device, Tensor};

use crate::Result;
use crate::classifier::ToVecF64;
use crate::error::{AttackError, invalid, invalid_data};
use crate::perturb::{batch_tensor, vector};

/// The covariance spectrum of a hidden representation over a data set (accumulated in
/// `f64`).
#[derive(Debug, Clone)]
pub struct RepresentationSpectrum {
    /// The representation's name (e.g. `fc3`).
    pub representation: String,
    /// `M`, the number of images.
    pub num_samples: usize,
    /// `μ`, the mean representation `[N]`.
    pub mean: Array1<f64>,
    /// Eigenvalues of the unbiased covariance, descending `[N]`.
    pub eigenvalues: Array1<f64>,
    /// Unit eigenvectors as columns `[N, N]` (column `n − 1` belongs to rank `n`).
    pub eigenvectors: Array2<f64>,
}

impl RepresentationSpectrum {
    /// The spectrum of `representation` over `images: [M, D]` (`M ≥ 2`), evaluated in
    /// batches of `batch_size` in [`Mode::Eval`]. Batch covariances are merged exactly
    /// (Chan et al.'s pairwise update) in `f64`.
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
        let (dtype, device) = net.dtype_device();
        let mut count = 0usize;
        let mut mean: Option<Array1<f64>> = None;
        let mut scatter: Option<Array2<f64>> = None;
        let mut start = 0;
        while start < m {
            let end = (start + batch_size).min(m);
            let x = batch_tensor(images, start, end, dtype, &device)?;
            let h = hidden(net, &x, representation)?.to_dtype(DType::F64)?;
            let nb = end - start;
            let mean_b = to_array1(&h.col_means()?)?;
            let hc = h.center_rows()?;
            let c_b = to_array2(&hc.matmul_tn(&hc)?)?;
            match (mean.as_mut(), scatter.as_mut()) {
                (Some(mu), Some(c)) => {
                    let na = count as f64;
                    let nbf = nb as f64;
                    let total = na + nbf;
                    let delta = &mean_b - &*mu;
                    let w = na * nbf / total;
                    let col = delta.view().insert_axis(ndarray::Axis(1));
                    let row = delta.view().insert_axis(ndarray::Axis(0));
                    *c += &c_b;
                    *c += &(col.dot(&row) * w);
                    *mu += &(delta * (nbf / total));
                }
                _ => {
                    mean = Some(mean_b);
                    scatter = Some(c_b);
                }
            }
            count += nb;
            start = end;
        }
        let mean = mean.expect("at least one batch");
        let cov = scatter.expect("at least one batch") / (count as f64 - 1.0);
        let (eigenvalues, eigenvectors) = specreg_tensor::linalg::symmetric_eigen(cov.view())?;
        if let Some((i, &v)) = eigenvalues.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(AttackError::NonFinite {
                what: format!("eigenvalue of the {representation} covariance"),
                value: v,
                sample: i,
            });
        }
        Ok(Self {
            representation: representation.to_string(),
            num_samples: count,
            mean,
            eigenvalues,
            eigenvectors,
        })
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
    /// this `λ_n`), one `[b, D]` tensor per rank in `ranks`, in the network's dtype.
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
        if n != self.mean.len() {
            return Err(invalid_data(
                "eigenvalue_input_gradients",
                format!(
                    "representation {} has width {n}, the spectrum {}",
                    self.representation,
                    self.mean.len()
                ),
            ));
        }
        let mu = vector(self.mean.as_slice().expect("contiguous"), dtype, &device)?;
        let hc = h.broadcast_along(&mu, 1, specreg_tensor::BinaryOp::Sub)?;
        let zero_logits = Tensor::zeros(pass.logits.shape(), dtype, &device)?;
        let scale = 2.0 / (self.num_samples as f64 - 1.0);
        let mut out = Vec::with_capacity(ranks.len());
        for &r in ranks {
            let v: Vec<f64> = self.eigenvectors.column(r - 1).to_vec();
            let v_col = column(&v, dtype, &device)?;
            // p_i = (h_i − μ)ᵀ v_n, then ∂λ_n/∂h_i = scale · p_i · v_nᵀ.
            let p = hc.matmul(&v_col)?;
            let inj = p.matmul(&v_col.t()?)?.scale(scale)?;
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
/// covariance over all of `images: [M, D]`, in two passes of batches: the spectrum, then
/// the per-image gradients, reduced as `options.reduction` says.
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
    let spectrum =
        RepresentationSpectrum::compute(net, images, representation, options.batch_size)?;
    let eigenvalues = ranks
        .iter()
        .map(|&r| spectrum.eigenvalue(r))
        .collect::<Result<Vec<_>>>()?;
    let (dtype, device) = net.dtype_device();
    let m = images.nrows();
    let mut sums = vec![vec![0.0f64; images.ncols()]; ranks.len()];
    let mut start = 0;
    while start < m {
        let end = (start + options.batch_size).min(m);
        let x = batch_tensor(images, start, end, dtype, &device)?;
        let grads = spectrum.eigenvalue_input_gradients(net, &x, ranks)?;
        for (acc, g) in sums.iter_mut().zip(&grads) {
            let g = g.to_dtype(DType::F64)?;
            let g = match options.reduction {
                SensitivityReduction::SharedPerturbation => g,
                SensitivityReduction::MeanAbsolute => g.abs()?,
            };
            for (a, v) in acc.iter_mut().zip(g.col_sums()?.to_vec_f64()?) {
                *a += v;
            }
        }
        start = end;
    }
    let norm = match options.reduction {
        SensitivityReduction::SharedPerturbation => 1.0,
        SensitivityReduction::MeanAbsolute => 1.0 / m as f64,
    };
    let maps = sums
        .into_iter()
        .map(|s| {
            Array2::from_shape_vec((hgt, wid), s.into_iter().map(|v| v * norm).collect())
                .expect("shape checked")
        })
        .collect();
    Ok(SensitivityMaps {
        representation: representation.to_string(),
        ranks: ranks.to_vec(),
        eigenvalues,
        maps,
        reduction: options.reduction,
        num_images: m,
    })
}

/// The representation `name` of `x` in eval mode.
fn hidden(net: &mut Network, x: &Tensor, name: &str) -> Result<Tensor> {
    let pass = net.forward(x, Mode::Eval)?;
    pass.get(name)
        .cloned()
        .ok_or_else(|| invalid("sensitivity", format!("no representation {name}")))
}

/// A `[N, 1]` column tensor.
fn column(v: &[f64], dtype: DType, device: &Device) -> Result<Tensor> {
    Ok(vector(v, dtype, device)?.reshape(&[v.len(), 1])?)
}

fn to_array1(t: &Tensor) -> Result<Array1<f64>> {
    Ok(Array1::from(t.to_vec::<f64>()?))
}

fn to_array2(t: &Tensor) -> Result<Array2<f64>> {
    t.to_array::<f64>()?
        .into_dimensionality::<Ix2>()
        .map_err(|e| invalid("covariance", e.to_string()))
}
