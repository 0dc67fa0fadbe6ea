//! Shared building blocks of the attacks: the clip range, the feasible box of an L∞ ball,
//! steps, projections and constraint violations.
//!
//! Everything here works on [`Tensor`]s of either dtype on any device and stays there:
//! the only host read is [`ClipRange::check_inside`]'s validation of an attack's input.
//! Violations are measured on the device ([`ClipRange::reach`], the attacks'
//! [`Tracker`](crate::tracker::Tracker)) and turned into numbers once, when an attack reads
//! its results ([`ClipRange::violation_of`], [`violation_beyond`]).

use ndarray::ArrayView2;
use specreg_tensor::{DType, Device, Tensor};

use crate::Result;
use crate::error::{AttackError, invalid, invalid_data};
use crate::rowops::{max_all, nonfinite_rows};

/// The norm of a perturbation budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Norm {
    /// `‖δ‖_∞ = max_j |δ_j| ≤ ε` (the paper's attacks).
    Linf,
    /// `‖δ‖_2 = (Σ_j δ_j²)^½ ≤ ε` (not in the paper).
    L2,
}

impl std::fmt::Display for Norm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Norm::Linf => "Linf",
            Norm::L2 => "L2",
        })
    }
}

/// The valid pixel range `[lo, hi]` every attacked image is clipped to (`[0, 1]` for
/// MNIST as this project loads it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipRange {
    /// Smallest valid value.
    pub lo: f64,
    /// Largest valid value.
    pub hi: f64,
}

impl Default for ClipRange {
    fn default() -> Self {
        Self { lo: 0.0, hi: 1.0 }
    }
}

impl ClipRange {
    /// Errors unless `lo < hi`, both finite.
    pub(crate) fn validate(&self, what: &str) -> Result<()> {
        if !(self.lo.is_finite() && self.hi.is_finite() && self.lo < self.hi) {
            return Err(invalid(
                what,
                format!(
                    "clip range [{}, {}] is not a finite interval",
                    self.lo, self.hi
                ),
            ));
        }
        Ok(())
    }

    /// `max_j |x_j − (lo + hi)/2|` as a `[1]` `f64` tensor on `x`'s device: the half-width
    /// of the smallest range centred like this one that holds `x` (NaNs are not seen; the
    /// attacks check finiteness on their losses and gradients).
    pub(crate) fn reach(&self, x: &Tensor) -> Result<Tensor> {
        let mid = 0.5 * (self.lo + self.hi);
        max_all(&x.add_scalar(-mid)?.abs()?)
    }

    /// How far values of reach `m` ([`ClipRange::reach`]) lie outside the range:
    /// `max(0, m − (hi − lo)/2)`.
    pub(crate) fn violation_of(&self, m: f64) -> f64 {
        let half = 0.5 * (self.hi - self.lo);
        (m - half).max(0.0)
    }

    /// Errors if any input value lies outside the range or is not finite (attacks assume
    /// clean images are valid, so that the L∞ ball and the range always intersect). One
    /// host read.
    pub(crate) fn check_inside(&self, x: &Tensor, what: &str) -> Result<()> {
        let mid = 0.5 * (self.lo + self.hi);
        let m = x.add_scalar(-mid)?.max_abs()?;
        if m.is_nan() {
            // The error path may read more: find the first sample with a NaN.
            let rows = nonfinite_rows(x)?.to_vec::<f64>()?;
            return Err(AttackError::NonFinite {
                what: format!("{what}: input image"),
                value: m,
                sample: rows.iter().position(|v| !v.is_finite()),
            });
        }
        let v = self.violation_of(m);
        if v > 0.0 {
            return Err(invalid_data(
                what,
                format!(
                    "input values lie up to {v} outside the clip range [{}, {}]",
                    self.lo, self.hi
                ),
            ));
        }
        Ok(())
    }
}

/// Checks a perturbation budget.
pub(crate) fn check_epsilon(what: &str, epsilon: f64) -> Result<()> {
    if !(epsilon.is_finite() && epsilon >= 0.0) {
        return Err(invalid(
            what,
            format!("ε = {epsilon} must be finite and ≥ 0"),
        ));
    }
    Ok(())
}

/// The box `[max(x − ε, lo), min(x + ε, hi)]`: the intersection of the L∞ ball around `x`
/// and the clip range, so that projecting onto both is one elementwise clamp.
pub(crate) fn linf_box(x: &Tensor, epsilon: f64, clip: ClipRange) -> Result<(Tensor, Tensor)> {
    // x ≤ hi, so clamping x − ε to [lo, hi] is max(x − ε, lo); likewise for x + ε.
    let lo = x.add_scalar(-epsilon)?.clamp(clip.lo, clip.hi)?;
    let hi = x.add_scalar(epsilon)?.clamp(clip.lo, clip.hi)?;
    Ok((lo, hi))
}

/// `clamp(v, lo, hi)` elementwise against tensors.
pub(crate) fn clamp_box(v: &Tensor, lo: &Tensor, hi: &Tensor) -> Result<Tensor> {
    Ok(v.maximum(lo)?.minimum(hi)?)
}

/// `g / ‖g‖₂` row by row (a zero row stays zero), times `scale`: each row is multiplied by
/// `scale / ‖g_i‖₂` computed in `f64` (or 0 where the norm is not positive).
pub(crate) fn normalized_rows(g: &Tensor, scale: f64) -> Result<Tensor> {
    let norms = g.row_norms()?;
    let zero = norms.full_like(0.0, norms.shape())?;
    let positive = norms.greater(&zero)?;
    let factors =
        positive.where_cond(&norms.full_like(scale, norms.shape())?.div(&norms)?, &zero)?;
    Ok(g.scale_rows(&factors)?)
}

/// Projects `v` onto the L2 ball of radius ε around `x` (row by row), then clips to the
/// range. Clipping after the projection keeps the ball: `x` is inside the range, so
/// clipping only moves coordinates towards `x`.
///
/// A row outside the ball is pulled back to `x + ε δ/‖δ‖`; when no row of the batch is
/// outside, `v` is kept as it is (not recomputed as `x + δ`, which can differ from `v` in
/// the last bit).
pub(crate) fn project_l2(v: &Tensor, x: &Tensor, epsilon: f64, clip: ClipRange) -> Result<Tensor> {
    let delta = v.sub(x)?;
    let norms = delta.row_norms()?;
    let b = norms.elem_count();
    let one = norms.full_like(1.0, &[b])?;
    let outside = norms.greater(&norms.full_like(epsilon, &[b])?)?;
    let factors = outside.where_cond(&norms.full_like(epsilon, &[b])?.div(&norms)?, &one)?;
    let moved = one.sub(&factors.equal(&one)?)?.sum_all_f64()?;
    let any_moved = moved.greater(&moved.full_like(0.0, &[])?)?.reshape(&[1])?;
    let mask = any_moved
        .index_select_rows(&vec![0; b])?
        .to_dtype(v.dtype())?;
    let projected = mask.where_cond(&x.add(&delta.scale_rows(&factors)?)?, v)?;
    Ok(projected.clamp(clip.lo, clip.hi)?)
}

/// How far a perturbation of size `size` (the largest `|δ_j|` for L∞, `‖δ‖₂` for L2) lies
/// outside the ε-ball:
/// `max(0, size − ε)`.
pub(crate) fn violation_beyond(size: f64, epsilon: f64) -> f64 {
    (size - epsilon).max(0.0)
}

/// `images: [N, D]` rows `start..end` as a tensor of `dtype` on `device`.
pub(crate) fn batch_tensor(
    images: ArrayView2<'_, f32>,
    start: usize,
    end: usize,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let rows = images.slice(ndarray::s![start..end, ..]).to_owned();
    Ok(specreg_nn::to_input(rows, dtype, device)?)
}

/// The smallest violation worth flagging for `dtype`: a few units of rounding at 1.
pub(crate) fn rounding_tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 4.0 * f64::from(f32::EPSILON),
        DType::F64 => 4.0 * f64::EPSILON,
    }
}
