//! Spectrum metrics of a representation: eigenspectrum, power-law exponent, effective
//! dimension and participation ratio, and [`eigen_descending`], the one eigendecomposition
//! of a covariance that the spectral regulariser's refresh, the spectra and the sensitivity
//! maps share.
//!
//! The power-law exponent is the **rank** exponent `α` of `λ_n ∝ n^(−α)` (Stringer et al.
//! 2019's convention, as in the paper), fitted by least squares of `log λ_n` against
//! `log n` with weights `1/n` (so each octave of ranks counts about equally). It is not the
//! exponent of the eigenvalue *density* that tools such as WeightWatcher report; a rank
//! exponent `α` corresponds to a density exponent `1 + 1/α`.

use ndarray::ArrayView2;
use specreg_nn::Network;
use specreg_tensor::{DType, Tensor};

use crate::covariance::representation_statistics;
use crate::error::{RegularizerError, Result, invalid};

/// The eigendecomposition of a symmetric `covariance: [N, N]` (only its lower triangle is
/// read), on its device and in its dtype: the eigenvalues `[N]` in **descending** order and
/// the unit eigenvectors as the columns of `[N, N]` (column `n − 1` belongs to rank `n`),
/// each signed so that its entry of largest magnitude is positive. No host read.
///
/// # Errors
/// A matrix that is not square, or a failed decomposition.
pub fn eigen_descending(covariance: &Tensor) -> Result<(Tensor, Tensor)> {
    match *covariance.shape() {
        [r, c] if r == c => Ok(covariance.symmetric_eigen()?),
        _ => Err(RegularizerError::ShapeMismatch {
            what: "eigen_descending".into(),
            expected: "a square [N, N] matrix".into(),
            got: covariance.shape().to_vec(),
        }),
    }
}

/// The eigenvalues of a covariance, descending, in `f64`.
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrum {
    /// `λ_1 ≥ λ_2 ≥ … ≥ λ_N`.
    pub eigenvalues: Vec<f64>,
}

/// A fitted power law `λ_n ≈ c · n^(−α)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerLaw {
    /// The rank exponent `α`.
    pub alpha: f64,
    /// The fitted `log c`.
    pub log_intercept: f64,
    /// Weighted coefficient of determination of the log-log fit.
    pub r2: f64,
    /// First rank of the fit (1-based, inclusive).
    pub first: usize,
    /// Last rank of the fit (1-based, inclusive).
    pub last: usize,
}

impl Spectrum {
    /// A spectrum from eigenvalues in any order (sorted descending here).
    ///
    /// # Errors
    /// An empty list or a non-finite value.
    pub fn new(mut eigenvalues: Vec<f64>) -> Result<Self> {
        if eigenvalues.is_empty() {
            return Err(invalid("spectrum", "no eigenvalues"));
        }
        if let Some((i, v)) = eigenvalues.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(invalid("spectrum", format!("eigenvalue {i} is {v}")));
        }
        eigenvalues.sort_by(|a, b| b.total_cmp(a));
        Ok(Self { eigenvalues })
    }

    /// The spectrum of a symmetric matrix (e.g. a covariance from
    /// [`representation_statistics`]), through [`eigen_descending`]; one host read (the
    /// eigenvalues).
    pub fn of_covariance(cov: &Tensor) -> Result<Self> {
        let (lambda, _) = eigen_descending(cov)?;
        Self::new(lambda.to_dtype(DType::F64)?.to_vec::<f64>()?)
    }

    /// The width `N`.
    pub fn len(&self) -> usize {
        self.eigenvalues.len()
    }

    /// Whether there are no eigenvalues (never, for a constructed spectrum).
    pub fn is_empty(&self) -> bool {
        self.eigenvalues.is_empty()
    }

    /// The eigenvalues divided by their sum (fractions of variance).
    pub fn normalized(&self) -> Vec<f64> {
        let total: f64 = self.eigenvalues.iter().sum();
        self.eigenvalues.iter().map(|l| l / total).collect()
    }

    /// The rank range of the default fit: ranks 11 to `min(N, 500)`.
    pub fn default_fit_range(&self) -> (usize, usize) {
        (11, self.len().min(500))
    }

    /// Fits `log λ_n = log c − α log n` over ranks `first..=last` (1-based) by least
    /// squares weighted by `1/n`.
    ///
    /// # Errors
    /// A range with fewer than two ranks or beyond `N`, or a non-positive eigenvalue in it.
    pub fn power_law(&self, first: usize, last: usize) -> Result<PowerLaw> {
        if first == 0 || last <= first || last > self.len() {
            return Err(invalid(
                "power-law fit",
                format!(
                    "rank range {first}..={last} must satisfy 1 ≤ first < last ≤ N = {}",
                    self.len()
                ),
            ));
        }
        let mut pts = Vec::with_capacity(last - first + 1);
        for n in first..=last {
            let l = self.eigenvalues[n - 1];
            if l <= 0.0 {
                return Err(invalid(
                    "power-law fit",
                    format!("eigenvalue at rank {n} is {l}; a log-log fit needs positive values"),
                ));
            }
            pts.push(((n as f64).ln(), l.ln(), 1.0 / n as f64));
        }
        let sw: f64 = pts.iter().map(|p| p.2).sum();
        let mx = pts.iter().map(|p| p.2 * p.0).sum::<f64>() / sw;
        let my = pts.iter().map(|p| p.2 * p.1).sum::<f64>() / sw;
        let sxx: f64 = pts.iter().map(|p| p.2 * (p.0 - mx) * (p.0 - mx)).sum();
        let sxy: f64 = pts.iter().map(|p| p.2 * (p.0 - mx) * (p.1 - my)).sum();
        let syy: f64 = pts.iter().map(|p| p.2 * (p.1 - my) * (p.1 - my)).sum();
        let slope = sxy / sxx;
        let intercept = my - slope * mx;
        let ss_res: f64 = pts
            .iter()
            .map(|p| p.2 * (p.1 - intercept - slope * p.0).powi(2))
            .sum();
        let r2 = if syy > 0.0 { 1.0 - ss_res / syy } else { 1.0 };
        Ok(PowerLaw {
            alpha: -slope,
            log_intercept: intercept,
            r2,
            first,
            last,
        })
    }

    /// [`Spectrum::power_law`] over [`Spectrum::default_fit_range`].
    pub fn default_power_law(&self) -> Result<PowerLaw> {
        let (a, b) = self.default_fit_range();
        self.power_law(a, b)
    }

    /// The smallest `k` whose top-`k` eigenvalues hold at least `fraction` of the total
    /// variance (the paper's effective dimension uses 0.9).
    ///
    /// # Errors
    /// `fraction` outside `(0, 1]`, or a spectrum with no positive variance.
    pub fn effective_dimension(&self, fraction: f64) -> Result<usize> {
        if !(fraction > 0.0 && fraction <= 1.0) {
            return Err(invalid(
                "effective dimension",
                format!("fraction must be in (0, 1], got {fraction}"),
            ));
        }
        let total: f64 = self.eigenvalues.iter().map(|l| l.max(0.0)).sum();
        if total <= 0.0 {
            return Err(invalid(
                "effective dimension",
                "the spectrum has no positive variance",
            ));
        }
        let mut acc = 0.0;
        for (k, l) in self.eigenvalues.iter().enumerate() {
            acc += l.max(0.0);
            // A relative slack keeps an exact boundary (e.g. 9 of 10 equal values at 0.9)
            // from missing by one rounding error.
            if acc >= fraction * total * (1.0 - 1e-12) {
                return Ok(k + 1);
            }
        }
        Ok(self.len())
    }

    /// The participation ratio `(Σ λ)² / Σ λ²`, a continuous dimension between 1 and `N`.
    pub fn participation_ratio(&self) -> f64 {
        let s: f64 = self.eigenvalues.iter().sum();
        let s2: f64 = self.eigenvalues.iter().map(|l| l * l).sum();
        if s2 > 0.0 { s * s / s2 } else { 0.0 }
    }
}

/// The spectrum of representation `name` of `net` over `images: [M, 784]` (`Eval` mode,
/// covariance accumulated in `f64`, chunks of `batch_size`): two host reads (the
/// covariance's finiteness check and the eigenvalues).
pub fn layer_spectrum(
    net: &mut Network,
    name: &str,
    images: ArrayView2<'_, f32>,
    batch_size: usize,
) -> Result<Spectrum> {
    let stats = representation_statistics(net, &[name], images, batch_size)?;
    let cov = &stats
        .first()
        .ok_or_else(|| invalid("layer_spectrum", format!("no statistics of {name}")))?
        .covariance;
    Spectrum::of_covariance(cov)
}
