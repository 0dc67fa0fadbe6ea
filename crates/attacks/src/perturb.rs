//! Shared building blocks of the attacks: the clip range, the feasible box of an L∞ ball,
//! steps, projections, constraint violations and row bookkeeping.
//!
//! Everything here works on [`Tensor`]s of either dtype on any device, except the
//! per-row bookkeeping ([`gather_rows`], [`RowStore`]), which goes through host memory.

use ndarray::{Array2, ArrayView2, Axis, Ix2};
use specreg_tensor::{BinaryOp, DType, Device, Element, Tensor};

use crate::Result;
use crate::classifier::ToVecF64;
use crate::error::{AttackError, invalid, invalid_data};

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

    /// How far `x` reaches outside the range: `max(0, max_j dist(x_j, [lo, hi]))`.
    pub(crate) fn violation(&self, x: &Tensor) -> Result<f64> {
        let mid = 0.5 * (self.lo + self.hi);
        let half = 0.5 * (self.hi - self.lo);
        let m = x.add_scalar(-mid)?.max_abs()?;
        if m.is_nan() {
            return Err(AttackError::NonFinite {
                what: "perturbed image".into(),
                value: m,
                sample: 0,
            });
        }
        Ok((m - half).max(0.0))
    }

    /// Errors if any input value lies outside the range (attacks assume clean images are
    /// valid, so that the L∞ ball and the range always intersect).
    pub(crate) fn check_inside(&self, x: &Tensor, what: &str) -> Result<()> {
        let v = self.violation(x)?;
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

/// Per-row Euclidean norms of a `[B, D]` tensor.
pub(crate) fn row_norms(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.sqr()?
        .sum_axis(1)?
        .to_vec_f64()?
        .into_iter()
        .map(f64::sqrt)
        .collect())
}

/// Multiplies row `i` of `t` by `factors[i]`.
pub(crate) fn scale_rows(t: &Tensor, factors: &[f64]) -> Result<Tensor> {
    let f = vector(factors, t.dtype(), &t.device())?;
    Ok(t.broadcast_along(&f, 0, BinaryOp::Mul)?)
}

/// A 1-D tensor of `values` in `dtype`.
pub(crate) fn vector(values: &[f64], dtype: DType, device: &Device) -> Result<Tensor> {
    let t = match dtype {
        DType::F32 => Tensor::from_vec(
            values.iter().map(|&v| v as f32).collect(),
            &[values.len()],
            device,
        )?,
        DType::F64 => Tensor::from_vec(values.to_vec(), &[values.len()], device)?,
    };
    Ok(t)
}

/// `g / ‖g‖₂` row by row (a zero row stays zero), times `scale`.
pub(crate) fn normalized_rows(g: &Tensor, scale: f64) -> Result<Tensor> {
    let norms = row_norms(g)?;
    let factors: Vec<f64> = norms
        .iter()
        .map(|&n| if n > 0.0 { scale / n } else { 0.0 })
        .collect();
    scale_rows(g, &factors)
}

/// Projects `v` onto the L2 ball of radius ε around `x` (row by row), then clips to the
/// range. Clipping after the projection keeps the ball: `x` is inside the range, so
/// clipping only moves coordinates towards `x`.
pub(crate) fn project_l2(v: &Tensor, x: &Tensor, epsilon: f64, clip: ClipRange) -> Result<Tensor> {
    let delta = v.sub(x)?;
    let norms = row_norms(&delta)?;
    let factors: Vec<f64> = norms
        .iter()
        .map(|&n| if n > epsilon { epsilon / n } else { 1.0 })
        .collect();
    let projected = if factors.iter().all(|&f| f == 1.0) {
        v.clone()
    } else {
        x.add(&scale_rows(&delta, &factors)?)?
    };
    Ok(projected.clamp(clip.lo, clip.hi)?)
}

/// How far `adv` reaches outside the ε-ball around `x`: `max(0, max_i ‖adv_i − x_i‖ − ε)`.
pub(crate) fn ball_violation(adv: &Tensor, x: &Tensor, norm: Norm, epsilon: f64) -> Result<f64> {
    let delta = adv.sub(x)?;
    let size = match norm {
        Norm::Linf => delta.max_abs()?,
        Norm::L2 => row_norms(&delta)?.into_iter().fold(0.0, f64::max),
    };
    if size.is_nan() {
        return Err(AttackError::NonFinite {
            what: "perturbation".into(),
            value: size,
            sample: 0,
        });
    }
    Ok((size - epsilon).max(0.0))
}

/// Rows `idx` of a `[B, D]` tensor, on the tensor's device.
pub(crate) fn gather_rows(t: &Tensor, idx: &[usize]) -> Result<Tensor> {
    fn imp<T: Element>(t: &Tensor, idx: &[usize]) -> Result<Tensor> {
        let out = with_host::<T, _>(t, |a| a.select(Axis(0), idx))?;
        Ok(Tensor::from_array(out).to_device(&t.device())?)
    }
    match t.dtype() {
        DType::F32 => imp::<f32>(t, idx),
        DType::F64 => imp::<f64>(t, idx),
    }
}

/// Runs `f` on a host view of a 2-D tensor (zero-copy on the CPU).
fn with_host<T: Element, R>(t: &Tensor, f: impl FnOnce(ArrayView2<'_, T>) -> R) -> Result<R> {
    let shape_error = || {
        invalid(
            "rows",
            format!("expected a 2-D tensor, got {:?}", t.shape()),
        )
    };
    if t.device().is_cpu() {
        let v = t.as_array_view::<T>()?;
        let v = v.into_dimensionality::<Ix2>().map_err(|_| shape_error())?;
        Ok(f(v))
    } else {
        let a = t.to_array::<T>()?;
        let a = a.into_dimensionality::<Ix2>().map_err(|_| shape_error())?;
        Ok(f(a.view()))
    }
}

/// A host-side `[B, D]` buffer whose rows are overwritten one at a time (the best iterate
/// found so far for each sample).
#[derive(Debug, Clone)]
pub(crate) enum RowStore {
    F32(Array2<f32>),
    F64(Array2<f64>),
}

impl RowStore {
    /// A copy of `t: [B, D]`.
    pub(crate) fn from_tensor(t: &Tensor) -> Result<Self> {
        Ok(match t.dtype() {
            DType::F32 => Self::F32(with_host::<f32, _>(t, |a| a.to_owned())?),
            DType::F64 => Self::F64(with_host::<f64, _>(t, |a| a.to_owned())?),
        })
    }

    /// Copies row `src` of `t` into row `dst`, for every `(src, dst)` pair.
    pub(crate) fn copy_rows(&mut self, t: &Tensor, pairs: &[(usize, usize)]) -> Result<()> {
        fn imp<T: Element>(
            store: &mut Array2<T>,
            t: &Tensor,
            pairs: &[(usize, usize)],
        ) -> Result<()> {
            with_host::<T, _>(t, |a| {
                for &(src, dst) in pairs {
                    store.row_mut(dst).assign(&a.row(src));
                }
            })
        }
        if pairs.is_empty() {
            return Ok(());
        }
        match self {
            Self::F32(s) => imp(s, t, pairs),
            Self::F64(s) => imp(s, t, pairs),
        }
    }

    /// Copies row `i` of `other` into row `i`, for every `i` in `rows`.
    pub(crate) fn copy_rows_from(&mut self, other: &RowStore, rows: &[usize]) -> Result<()> {
        fn imp<T: Element>(store: &mut Array2<T>, other: &Array2<T>, rows: &[usize]) {
            for &i in rows {
                store.row_mut(i).assign(&other.row(i));
            }
        }
        match (self, other) {
            (Self::F32(s), Self::F32(o)) => imp(s, o, rows),
            (Self::F64(s), Self::F64(o)) => imp(s, o, rows),
            _ => return Err(invalid("rows", "row stores of different dtypes")),
        }
        Ok(())
    }

    /// The buffer as a tensor on `device`.
    pub(crate) fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        let t = match self {
            Self::F32(s) => Tensor::from_array(s.clone()),
            Self::F64(s) => Tensor::from_array(s.clone()),
        };
        Ok(t.to_device(device)?)
    }
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
