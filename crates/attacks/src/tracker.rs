//! [`Tracker`]: what an attack records on the device while it runs, for the checks of its
//! output — how far any evaluated image lay outside its ε-ball and the clip range, whether
//! each sample's losses and gradients stayed finite, and the zero rows of the first
//! gradient.
//!
//! The extremes are kept elementwise: the largest and the smallest value each pixel of the
//! iterates took (one `maximum` and one `minimum` per step, NaN-propagating). They are
//! reduced only when the rows change (PGD's early exit, a new restart) and at the end, so a
//! step adds no reduction. Both checks follow from them exactly: `x ↦ x − c` rounds
//! monotonically, so over the values a pixel took, `|fl(x − x₀)|` (the L∞ perturbation) and
//! `|fl(x − mid)|` (the distance from the clip range's centre) are largest at the pixel's
//! largest or smallest value. An L2 ball needs each iterate's row norms, which are kept as
//! a running maximum per row. Maxima do not round, so the results equal those of checking
//! every iterate on its own.

use specreg_tensor::{DType, Device, Tensor};

use crate::Result;
use crate::perturb::{ClipRange, Norm};
use crate::rowops::{ActiveRows, max_all_in_dtype, nonfinite_rows};

/// The elementwise extremes of the iterates of one set of rows, with the rows' centres.
struct Extremes {
    centre: Tensor,
    upper: Tensor,
    lower: Tensor,
    /// L2 only: the largest `‖x_i − x₀ᵢ‖₂` of each row (`f64`).
    norms: Option<Tensor>,
}

/// `max(a, b)` of two optional `[1]` tensors.
fn max_opt(a: Option<Tensor>, b: Tensor) -> Result<Tensor> {
    Ok(match a {
        None => b,
        Some(a) => a.maximum(&b)?,
    })
}

/// The device-side record of an attack (see the module docs).
pub(crate) struct Tracker {
    norm: Norm,
    clip: ClipRange,
    /// The extremes of the current rows.
    current: Option<Extremes>,
    /// Reduced extremes of earlier rows, `[1]`: the largest perturbation (in the images'
    /// dtype for L∞, `f64` for L2) and the largest and smallest value.
    ball: Option<Tensor>,
    upper: Option<Tensor>,
    lower: Option<Tensor>,
    /// Per sample, 0 while its losses and gradients were finite, NaN otherwise (`[B]`).
    nonfinite: Tensor,
    zero_rows: Option<Tensor>,
    /// Input gradients evaluated, summed over rows (a host count: the rows are known).
    gradients: u64,
}

/// What a [`Tracker`] recorded, as `[1]`, `[1]`, `[B]` and `[1]` `f64` tensors.
pub(crate) struct Record {
    /// The largest perturbation, in the attack's norm (0 when nothing was tracked).
    pub(crate) ball_reach: Tensor,
    /// The largest distance from the clip range's centre ([`ClipRange::reach`]).
    pub(crate) clip_reach: Tensor,
    /// Per sample, 0 or NaN.
    pub(crate) nonfinite: Tensor,
    /// Zero rows of the first gradient (0 when none was counted).
    pub(crate) zero_rows: Tensor,
    /// Input gradients evaluated, summed over rows.
    pub(crate) gradients: u64,
}

impl Tracker {
    /// A tracker for a batch of `batch` samples on `device`.
    pub(crate) fn new(norm: Norm, clip: ClipRange, batch: usize, device: &Device) -> Result<Self> {
        Ok(Self {
            norm,
            clip,
            current: None,
            ball: None,
            upper: None,
            lower: None,
            nonfinite: Tensor::zeros(&[batch], DType::F64, device)?,
            zero_rows: None,
            gradients: 0,
        })
    }

    /// The clip range the tracker measures against.
    pub(crate) fn clip(&self) -> ClipRange {
        self.clip
    }

    /// Records the iterate `cur` of the images whose clean versions (ball centres) are
    /// `x0`, the same rows as the last call's unless [`Tracker::new_rows`] came between
    /// (a change of shape is caught, as a safeguard).
    pub(crate) fn track(&mut self, cur: &Tensor, x0: &Tensor) -> Result<()> {
        let norms = match self.norm {
            Norm::Linf => None,
            Norm::L2 => Some(cur.sub(x0)?.row_norms()?),
        };
        self.current = Some(match self.current.take() {
            Some(e) if e.upper.shape() == cur.shape() => Extremes {
                upper: e.upper.maximum(cur)?,
                lower: e.lower.minimum(cur)?,
                norms: match (e.norms, norms) {
                    (Some(a), Some(b)) => Some(a.maximum(&b)?),
                    (_, b) => b,
                },
                centre: e.centre,
            },
            other => {
                if let Some(e) = other {
                    self.fold(e)?;
                }
                Extremes {
                    centre: x0.clone(),
                    upper: cur.clone(),
                    lower: cur.clone(),
                    norms,
                }
            }
        });
        Ok(())
    }

    /// Ends the current set of rows (before PGD's early exit drops some, or a restart
    /// begins): its extremes are reduced, and the next [`Tracker::track`] starts afresh.
    pub(crate) fn new_rows(&mut self) -> Result<()> {
        match self.current.take() {
            Some(e) => self.fold(e),
            None => Ok(()),
        }
    }

    /// Reduces the extremes of a set of rows into the scalars.
    fn fold(&mut self, e: Extremes) -> Result<()> {
        let ball = match e.norms {
            Some(n) => max_all_in_dtype(&n)?,
            None => {
                let up = e.upper.sub(&e.centre)?.abs()?;
                let down = e.lower.sub(&e.centre)?.abs()?;
                max_all_in_dtype(&up.maximum(&down)?)?
            }
        };
        self.ball = Some(max_opt(self.ball.take(), ball)?);
        self.upper = Some(max_opt(self.upper.take(), max_all_in_dtype(&e.upper)?)?);
        let lowest = max_all_in_dtype(&e.lower.neg()?)?.neg()?;
        self.lower = Some(match self.lower.take() {
            None => lowest,
            Some(l) => l.minimum(&lowest)?,
        });
        Ok(())
    }

    /// Records whether the losses and (when given) the input gradients of the samples
    /// `rows` holds are finite. A gradient row counts as finite when its sum is (so a row
    /// of finite values whose sum overflows is reported too).
    pub(crate) fn check(
        &mut self,
        rows: &ActiveRows,
        losses: &Tensor,
        grad: Option<&Tensor>,
    ) -> Result<()> {
        let mut bad = losses.scale(0.0)?;
        if let Some(g) = grad {
            bad = bad.add(&nonfinite_rows(g)?)?;
            self.gradients += losses.elem_count() as u64;
        }
        let (bad, mask) = rows.expand(&bad)?;
        let bad = match mask {
            None => bad,
            Some(m) => m.where_cond(&bad, &bad.full_like(0.0, bad.shape())?)?,
        };
        self.nonfinite = self.nonfinite.add(&bad)?;
        Ok(())
    }

    /// Counts the rows of `grad` whose every entry is exactly zero (a sum of magnitudes is
    /// zero exactly then).
    pub(crate) fn count_zero_rows(&mut self, grad: &Tensor) -> Result<()> {
        let sums = grad.flatten_from_1()?.abs()?.sum_axis(1)?;
        let zero = sums.equal(&sums.full_like(0.0, sums.shape())?)?;
        self.zero_rows = Some(zero.to_dtype(DType::F64)?.sum_all_f64()?.reshape(&[1])?);
        Ok(())
    }

    /// Everything recorded, still on the device.
    pub(crate) fn record(mut self) -> Result<Record> {
        if let Some(e) = self.current.take() {
            self.fold(e)?;
        }
        let zero = self.nonfinite.full_like(0.0, &[1])?;
        let mid = 0.5 * (self.clip.lo + self.clip.hi);
        // max_j |x_j − mid| is reached at the largest or the smallest value, computed in the
        // images' dtype as it would be elementwise.
        let clip_reach = match (&self.upper, &self.lower) {
            (Some(hi), Some(lo)) => hi
                .add_scalar(-mid)?
                .abs()?
                .maximum(&lo.add_scalar(-mid)?.abs()?)?
                .to_dtype(DType::F64)?,
            _ => zero.clone(),
        };
        Ok(Record {
            ball_reach: match self.ball {
                Some(b) => b.to_dtype(DType::F64)?,
                None => zero.clone(),
            },
            clip_reach,
            nonfinite: self.nonfinite,
            zero_rows: self.zero_rows.unwrap_or(zero),
            gradients: self.gradients,
        })
    }
}
